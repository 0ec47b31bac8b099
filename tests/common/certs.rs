//! Test certificates made with openssl, and running a command as a test step. Shared with
//! the registry crate's live test (`#[path]`), so it needs nothing else of `common`.

use std::path::Path;
use std::process::Command;

/// Runs a command; fails the test with its error output.
pub fn run(cmd: &str, args: &[&str], dir: &Path) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for `ip` signed by it (`ca.crt`, `srv.crt`,
/// `srv.key`), and a client certificate signed by it (`client.cert`, `client.key`), made
/// with openssl in `dir`.
pub fn make_certs(dir: &Path, ip: &str) {
    std::fs::write(dir.join("san.ext"), format!("subjectAltName=IP:{ip}\n")).expect("ext");
    // A v3 certificate (webpki refuses v1 ones).
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
    let days = ["-days", "1"];
    run(
        "openssl",
        &[
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            ][..],
            &["-out", "ca.crt", "-subj", "/CN=strata-test-ca"],
            &days,
        ]
        .concat(),
        dir,
    );
    for (name, subj, ext) in [
        ("srv", "/CN=strata-test-registry", Some("san.ext")),
        ("client", "/CN=strata-test-client", Some("client.ext")),
    ] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        run(
            "openssl",
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                subj,
            ],
            dir,
        );
        let out = if name == "srv" {
            "srv.crt".to_string()
        } else {
            "client.cert".to_string()
        };
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &out,
            "-days",
            "1",
        ];
        if let Some(e) = ext {
            args.extend(["-extfile", e]);
        }
        run("openssl", &args, dir);
    }
}
