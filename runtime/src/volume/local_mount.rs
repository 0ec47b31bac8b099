//! The local driver's own mounts: `--opt type=tmpfs --opt device=tmpfs --opt o=size=64m`,
//! or `type=none,device=/srv/x,o=bind`, mounted on the volume's `_data` as `mount(8)` would.

use super::VolumeError;
use std::collections::BTreeMap;
use std::path::Path;
use strata_graph::{fsutil, sys};

/// Checks options as dockerd's local driver does (`type`, `device` and `o`, each needing
/// the others it goes with).
pub fn check_options(opts: &BTreeMap<String, String>) -> Result<(), VolumeError> {
    for k in opts.keys() {
        match k.as_str() {
            "type" | "device" | "o" => {}
            "size" => {
                return Err(VolumeError::Invalid(
                    "quota size requested but no quota support".into(),
                ))
            }
            _ => return Err(VolumeError::Invalid(format!("invalid option: {k:?}"))),
        }
    }
    let needs: [(&str, &[&str]); 3] = [
        ("device", &["type"]),
        ("type", &["device"]),
        ("o", &["device", "type"]),
    ];
    for (k, req) in needs {
        if opts.contains_key(k) {
            for r in req {
                if !opts.contains_key(*r) {
                    return Err(VolumeError::Invalid(format!(
                        "missing required option: {r:?}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Splits `mount -o` options into mount flags and the filesystem's data.
pub fn parse_o(o: &str) -> (libc::c_ulong, String) {
    let mut flags: libc::c_ulong = 0;
    let mut data = Vec::new();
    for opt in o.split(',').filter(|x| !x.is_empty()) {
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match opt {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "bind" => (libc::MS_BIND, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "noatime" => (libc::MS_NOATIME, 0),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "defaults" => (0, 0),
            other => {
                data.push(other);
                (0, 0)
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, data.join(","))
}

/// Mounts the volume's filesystem on `target`.
pub fn mount(opts: &BTreeMap<String, String>, target: &Path) -> Result<(), VolumeError> {
    if let Some(v) = opts.values().find(|v| v.contains('\0')) {
        return Err(VolumeError::Invalid(format!("option {v:?} contains a NUL")));
    }
    let get = |k: &str| opts.get(k).map(String::as_str).unwrap_or("");
    let (flags, data) = parse_o(get("o"));
    sys::mount(
        get("device").as_bytes(),
        target,
        get("type").as_bytes(),
        flags,
        Some(data.as_bytes()),
    )
    .map_err(|e| {
        VolumeError::Invalid(format!(
            "error while mounting volume '{}': failed to mount local volume: mount {}:{}, flags: {flags:#x}, data: {}: {e}",
            target.display(),
            get("device"),
            target.display(),
            get("o"),
        ))
    })
}

/// Whether something is mounted exactly on `path`.
pub fn is_mounted(path: &Path) -> bool {
    fsutil::is_mountpoint(path).unwrap_or(false)
}

/// Unmounts what is mounted on `path` (and below it).
pub fn unmount_if_mounted(path: &Path) -> std::io::Result<()> {
    fsutil::unmount_all_under(path).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options() {
        assert!(check_options(&opts(&[])).is_ok());
        assert!(check_options(&opts(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=1m")
        ]))
        .is_ok());
        assert_eq!(
            check_options(&opts(&[("type", "tmpfs")]))
                .unwrap_err()
                .to_string(),
            "missing required option: \"device\""
        );
        assert_eq!(
            check_options(&opts(&[("bogus", "1")]))
                .unwrap_err()
                .to_string(),
            "invalid option: \"bogus\""
        );
        let (f, d) = parse_o("ro,size=1m,noexec,uid=1000");
        assert_eq!(f, libc::MS_RDONLY | libc::MS_NOEXEC);
        assert_eq!(d, "size=1m,uid=1000");
    }

    #[test]
    fn tmpfs_volume_mounts_and_unmounts() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let o = opts(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")]);
        mount(&o, t.path()).unwrap();
        assert!(is_mounted(t.path()));
        let big = vec![0u8; 2 << 20];
        assert!(
            std::fs::write(t.path().join("big"), big).is_err(),
            "size=1m holds"
        );
        unmount_if_mounted(t.path()).unwrap();
        assert!(!is_mounted(t.path()));
    }
}
