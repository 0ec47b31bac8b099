//! The devices a container asks for (`--device`) and the init (`--init`), as OCI spec
//! entries. Binds, volumes and `--mount` are the volume module's mount points.

use super::builder::SpecError;
use serde_json::{json, Value};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

fn invalid(field: &'static str, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field,
        reason: reason.into(),
    }
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

/// Every device node of the host's `/dev` (`--privileged`), as dockerd gives them: not those
/// under `/dev/pts`, `/dev/shm` and `/dev/mqueue`, nor the console.
pub fn host_devices() -> Vec<Value> {
    fn walk(dir: &std::path::Path, out: &mut Vec<Value>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let ft = md.file_type();
            if ft.is_dir() {
                let skip = [
                    "/dev/pts",
                    "/dev/shm",
                    "/dev/mqueue",
                    "/dev/.lxc",
                    "/dev/.udev",
                ];
                if !skip.iter().any(|s| p == std::path::Path::new(s)) {
                    walk(&p, out);
                }
                continue;
            }
            let typ = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            if p == std::path::Path::new("/dev/console") {
                continue;
            }
            let rdev = md.rdev();
            out.push(json!({ "path": p.display().to_string(), "type": typ,
                "major": libc::major(rdev), "minor": libc::minor(rdev),
                "fileMode": md.mode() & 0o7777, "uid": md.uid(), "gid": md.gid() }));
        }
    }
    let mut out = Vec::new();
    walk(std::path::Path::new("/dev"), &mut out);
    out
}

/// Where the init for `--init` is found: dockerd's `docker-init`, else Debian's tini.
pub fn find_init() -> Option<std::path::PathBuf> {
    ["docker-init", "tini-static", "tini"]
        .iter()
        .find_map(|n| crate::lifecycle::find_in_path(n))
}

/// Where the init is mounted in the container.
pub const INIT_PATH: &str = "/sbin/docker-init";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_from_host_nodes() {
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
