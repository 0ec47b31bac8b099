//! The mounts and devices a container asks for: `Binds` (`-v /host:/ctr[:ro]`), `Mounts`
//! (`--mount type=bind|tmpfs`), `Devices` (`--device`), and the init (`--init`), as OCI spec
//! entries. Named volumes come with the volume store.

use super::builder::SpecError;
use serde_json::{json, Value};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

fn invalid(field: &'static str, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// One `-v` entry: `SRC:DST[:OPTS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    /// rprivate, rshared, ...
    pub propagation: String,
}

/// Parses a `Binds` entry as dockerd does; sources must be absolute host paths here.
pub fn parse_bind(spec: &str) -> Result<Bind, SpecError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => {
            return Err(invalid(
                "Binds",
                format!("invalid volume specification: '{spec}'"),
            ))
        }
    };
    if !dst.starts_with('/') {
        return Err(invalid(
            "Binds",
            format!("invalid volume specification: '{spec}': invalid mount config for type \"bind\": invalid mount path: '{dst}' mount path must be absolute"),
        ));
    }
    if !src.starts_with('/') {
        return Err(invalid(
            "Binds",
            format!("named volumes are not supported yet: '{src}' (issue #5)"),
        ));
    }
    let mut b = Bind {
        source: src.to_string(),
        destination: dst.to_string(),
        read_only: false,
        propagation: "rprivate".into(),
    };
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => b.read_only = true,
            "rw" => b.read_only = false,
            "z" | "Z" | "nocopy" | "consistent" | "cached" | "delegated" => {}
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {
                b.propagation = o.to_string()
            }
            other => return Err(invalid("Binds", format!("invalid mode: {other}"))),
        }
    }
    Ok(b)
}

fn bind_mount(source: &str, destination: &str, ro: bool, propagation: &str) -> Value {
    let mut o = vec!["rbind".to_string(), propagation.to_string()];
    if ro {
        o.push("ro".into());
    }
    json!({ "destination": destination, "type": "bind", "source": source, "options": o })
}

/// The spec mounts of `Binds` and `Mounts`. `-v` sources that do not exist are created as
/// directories (dockerd does so); `--mount` bind sources must exist.
pub fn user_mounts(hc: &Value, create_sources: bool) -> Result<Vec<Value>, SpecError> {
    let mut out = Vec::new();
    for b in hc["Binds"].as_array().into_iter().flatten() {
        let b = parse_bind(
            b.as_str()
                .ok_or_else(|| invalid("Binds", "must be strings"))?,
        )?;
        if create_sources && !Path::new(&b.source).exists() {
            std::fs::create_dir_all(&b.source).map_err(|e| {
                invalid(
                    "Binds",
                    format!("error while creating mount source path '{}': {e}", b.source),
                )
            })?;
        }
        out.push(bind_mount(
            &b.source,
            &b.destination,
            b.read_only,
            &b.propagation,
        ));
    }
    for m in hc["Mounts"].as_array().into_iter().flatten() {
        let typ = m["Type"].as_str().unwrap_or("volume");
        let target = m["Target"].as_str().unwrap_or_default();
        if !target.starts_with('/') {
            return Err(invalid(
                "Mounts",
                format!("invalid mount config for type \"{typ}\": invalid mount path: '{target}' mount path must be absolute"),
            ));
        }
        let ro = m["ReadOnly"].as_bool().unwrap_or(false);
        match typ {
            "bind" => {
                let src = m["Source"].as_str().unwrap_or_default();
                if !Path::new(src).exists() {
                    return Err(invalid(
                        "Mounts",
                        format!("invalid mount config for type \"bind\": bind source path does not exist: {src}"),
                    ));
                }
                let prop = m["BindOptions"]["Propagation"]
                    .as_str()
                    .unwrap_or("rprivate");
                out.push(bind_mount(src, target, ro, prop));
            }
            "tmpfs" => {
                let mut o = vec![
                    "nosuid".to_string(),
                    "nodev".to_string(),
                    "noexec".to_string(),
                ];
                if let Some(s) = m["TmpfsOptions"]["SizeBytes"].as_i64().filter(|s| *s > 0) {
                    o.push(format!("size={s}"));
                }
                if let Some(mode) = m["TmpfsOptions"]["Mode"].as_u64() {
                    o.push(format!("mode={mode:o}"));
                }
                if ro {
                    o.push("ro".into());
                }
                out.push(json!({ "destination": target, "type": "tmpfs", "source": "tmpfs", "options": o }));
            }
            other => {
                return Err(invalid(
                    "Mounts",
                    format!("mount type \"{other}\" is not supported yet (volumes: issue #5)"),
                ))
            }
        }
    }
    Ok(out)
}

/// `linux.devices` entries and their cgroup rules for `Devices`.
pub fn devices(hc: &Value) -> Result<(Vec<Value>, Vec<Value>), SpecError> {
    let (mut devs, mut rules) = (Vec::new(), Vec::new());
    for d in hc["Devices"].as_array().into_iter().flatten() {
        let host = d["PathOnHost"].as_str().unwrap_or_default();
        let ctr = d["PathInContainer"]
            .as_str()
            .filter(|p| !p.is_empty())
            .unwrap_or(host);
        let perms = d["CgroupPermissions"]
            .as_str()
            .filter(|p| !p.is_empty())
            .unwrap_or("rwm");
        if perms.chars().any(|c| !"rwm".contains(c)) {
            return Err(invalid("Devices", format!("invalid device mode: {perms}")));
        }
        let md = std::fs::metadata(host).map_err(|e| {
            invalid(
                "Devices",
                format!(
                    "error gathering device information while adding custom device \"{host}\": {e}"
                ),
            )
        })?;
        let ft = md.file_type();
        let typ = if ft.is_char_device() {
            "c"
        } else if ft.is_block_device() {
            "b"
        } else {
            return Err(invalid(
                "Devices",
                format!("error gathering device information while adding custom device \"{host}\": not a device node"),
            ));
        };
        let rdev = md.rdev();
        let (major, minor) = (libc::major(rdev), libc::minor(rdev));
        devs.push(
            json!({ "path": ctr, "type": typ, "major": major, "minor": minor,
            "fileMode": md.mode() & 0o7777, "uid": md.uid(), "gid": md.gid() }),
        );
        rules.push(
            json!({ "allow": true, "type": typ, "major": major, "minor": minor, "access": perms }),
        );
    }
    Ok((devs, rules))
}

/// Where the init for `--init` is found: dockerd's `docker-init`, else Debian's tini.
pub fn find_init() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    for name in ["docker-init", "tini-static", "tini"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Where the init is mounted in the container.
pub const INIT_PATH: &str = "/sbin/docker-init";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds() {
        let b = parse_bind("/srv/data:/data:ro,rshared").unwrap();
        assert!(b.read_only);
        assert_eq!(b.propagation, "rshared");
        assert!(parse_bind("/a:rel").is_err());
        assert!(parse_bind("/a:/b:bogus").is_err());
        assert!(parse_bind("name:/b")
            .unwrap_err()
            .to_string()
            .contains("named volumes"));
    }

    #[test]
    fn mounts_and_devices() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("new");
        let hc = json!({
            "Binds": [format!("{}:/x", src.display())],
            "Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1024}}],
        });
        let m = user_mounts(&hc, true).unwrap();
        assert!(src.is_dir(), "a -v source is created");
        assert_eq!(m.len(), 2);
        assert!(m[1]["options"].to_string().contains("size=1024"));
        let missing =
            json!({"Mounts": [{"Type": "bind", "Source": "/nonexistent/x", "Target": "/x"}]});
        assert!(user_mounts(&missing, true)
            .unwrap_err()
            .to_string()
            .contains("bind source path does not exist"));
        let (d, r) = devices(
            &json!({"Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/n2"}]}),
        )
        .unwrap();
        assert_eq!(d[0]["major"], 1);
        assert_eq!(d[0]["minor"], 3);
        assert_eq!(r[0]["access"], "rwm");
        assert!(devices(&json!({"Devices": [{"PathOnHost": "/nonexistent"}]})).is_err());
    }
}
