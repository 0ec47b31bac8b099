//! direct-lvm: a thin pool that Strata makes with LVM on a block device the user names
//! (`dm.directlvm_device`), as dockerd does: a physical volume on the device, a volume group
//! `strata`, data and metadata volumes of `dm.thinp_percent` and `dm.thinp_metapercent` of it
//! converted into the thin pool `strata/thinpool` (512K chunks, no zeroing), and an LVM
//! metadata profile that has dmeventd extend the pool into the rest of the group
//! (`dm.thinp_autoextend_threshold`, `dm.thinp_autoextend_percent`).
//!
//! What was set up is recorded under the driver's home; a later start with the same options
//! only activates the pool, other options are refused (the pool cannot be remade under
//! existing layers). A device that holds a filesystem, partition table or LVM label is
//! refused unless `dm.directlvm_device_force=true`.
//!
//! LVM runs through its commands (`lvm2`). Where udev does not run (containers, the test
//! VM), they are told to make device nodes themselves. `LVM_SYSTEM_DIR`, when set, moves
//! LVM's configuration, and so the profile written here, away from `/etc/lvm`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::options::DirectLvm;

/// The volume group made on the device.
pub const VG: &str = "strata";
/// The thin pool's logical volume in [`VG`].
pub const POOL_LV: &str = "thinpool";
/// The metadata profile attached to the pool.
pub const PROFILE: &str = "strata-thinpool";
/// The pool's chunk size, dockerd's for direct-lvm.
pub const CHUNK: &str = "512K";

/// Errors of direct-lvm setup.
#[derive(Debug, thiserror::Error)]
pub enum LvmError {
    #[error("dm.directlvm_device needs LVM's commands (the lvm2 package): {0}")]
    Missing(std::io::Error),
    #[error("{cmd} failed: {stderr}")]
    Tool { cmd: String, stderr: String },
    #[error("{0}")]
    Refused(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, LvmError>;

/// The settings a direct-lvm pool was made with, kept in `<home>/directlvm.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setup {
    pub device: String,
    pub percent: u64,
    pub metapercent: u64,
    pub autoextend_threshold: u64,
    pub autoextend_percent: u64,
}

impl From<&DirectLvm> for Setup {
    fn from(d: &DirectLvm) -> Self {
        Setup {
            device: d.device.clone(),
            percent: d.percent,
            metapercent: d.metapercent,
            autoextend_threshold: d.autoextend_threshold,
            autoextend_percent: d.autoextend_percent,
        }
    }
}

/// The device-mapper name of the pool LVM makes (`<vg>-<lv>`).
pub fn pool_name() -> String {
    format!("{VG}-{POOL_LV}")
}

/// LVM's configuration directory: `$LVM_SYSTEM_DIR`, else `/etc/lvm`.
pub fn system_dir() -> PathBuf {
    std::env::var_os("LVM_SYSTEM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/lvm"))
}

/// The profile file that carries the autoextend settings.
pub fn profile_path() -> PathBuf {
    system_dir()
        .join("profile")
        .join(format!("{PROFILE}.profile"))
}

/// The profile's text: dmeventd extends the pool by `percent` once it is `threshold` full.
pub fn profile_text(threshold: u64, percent: u64) -> String {
    format!(
        "activation {{\n\tthin_pool_autoextend_threshold={threshold}\n\tthin_pool_autoextend_percent={percent}\n}}\n"
    )
}

/// `--config` for LVM's commands where udev does not run: LVM then makes and removes device
/// nodes itself instead of waiting for udev.
fn no_udev_config() -> Option<&'static str> {
    (!Path::new("/run/udev/control").exists()).then_some(
        "activation { udev_sync = 0 udev_rules = 0 } devices { obtain_device_list_from_udev = 0 }",
    )
}

/// Runs LVM command `tool` with `args`; its stdout.
fn lvm(tool: &str, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(tool);
    if let Some(c) = no_udev_config() {
        cmd.args(["--config", c]);
    }
    let out = cmd.args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LvmError::Missing(e)
        } else {
            LvmError::Io {
                what: format!("running {tool}"),
                source: e,
            }
        }
    })?;
    if !out.status.success() {
        return Err(LvmError::Tool {
            cmd: format!("{tool} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What `blkid -p` finds on `device` (a filesystem, partition table or LVM label), if anything.
fn signature(device: &str) -> Result<Option<String>> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "export", device])
        .output()
        .map_err(|e| LvmError::Io {
            what: "running blkid".into(),
            source: e,
        })?;
    match out.status.code() {
        // 2: nothing found.
        Some(2) => Ok(None),
        Some(0) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let kind = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("TYPE=")
                        .or_else(|| l.strip_prefix("PTTYPE="))
                })
                .unwrap_or("data")
                .to_string();
            Ok(Some(kind))
        }
        _ => Err(LvmError::Tool {
            cmd: format!("blkid -p {device}"),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
    }
}

fn vg_exists() -> Result<bool> {
    match lvm("vgs", &["--noheadings", "-o", "vg_name", VG]) {
        Ok(_) => Ok(true),
        Err(LvmError::Tool { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes the pool on `d.device`, or activates the one made before with the same settings;
/// returns the pool's device-mapper name. `active(name)` says whether a device exists.
pub fn ensure(home: &Path, d: &DirectLvm, active: impl Fn(&str) -> bool) -> Result<String> {
    let record = home.join("directlvm.json");
    let want = Setup::from(d);
    let pool = pool_name();
    match std::fs::read(&record) {
        Ok(bytes) => {
            let had: Setup = serde_json::from_slice(&bytes).map_err(|e| {
                LvmError::Refused(format!("{} is unreadable: {e}", record.display()))
            })?;
            if had != want {
                return Err(LvmError::Refused(format!(
                    "the direct-lvm pool was set up with {had:?}; changing the dm.directlvm_device or dm.thinp_* options is not supported (use a new data root, or set the pool up by hand and pass it as dm.thinpooldev)"
                )));
            }
            if !active(&pool) {
                lvm("lvchange", &["-ay", &format!("{VG}/{POOL_LV}")])?;
            }
            return Ok(pool);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(LvmError::Io {
                what: format!("reading {}", record.display()),
                source: e,
            })
        }
    }
    setup(&want, d.force)?;
    let tmp = record.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(&want).map_err(|e| LvmError::Io {
        what: "encoding the direct-lvm record".into(),
        source: e.into(),
    })?;
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &record))
        .map_err(|e| LvmError::Io {
            what: format!("writing {}", record.display()),
            source: e,
        })?;
    Ok(pool)
}

fn setup(s: &Setup, force: bool) -> Result<()> {
    let dev = s.device.as_str();
    let is_block = std::fs::metadata(dev)
        .map(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()))
        .unwrap_or(false);
    if !is_block {
        return Err(LvmError::Refused(format!(
            "dm.directlvm_device={dev} is not a block device"
        )));
    }
    if vg_exists()? {
        return Err(LvmError::Refused(format!(
            "a volume group named {VG} already exists and this data root did not make it; remove it or pass its pool as dm.thinpooldev"
        )));
    }
    if !force {
        if let Some(kind) = signature(dev)? {
            return Err(LvmError::Refused(format!(
                "dm.directlvm_device={dev} holds {kind}; set dm.directlvm_device_force=true to wipe it"
            )));
        }
    }
    tracing::info!(
        device = dev,
        "devicemapper: setting up a direct-lvm thin pool"
    );
    let vg_lv = format!("{VG}/{POOL_LV}");
    let meta_lv = format!("{POOL_LV}meta");
    let vg_meta = format!("{VG}/{meta_lv}");
    let percent = format!("{}%VG", s.percent);
    let metapercent = format!("{}%VG", s.metapercent);
    if force {
        lvm("pvcreate", &["-ff", "-y", dev])?;
    } else {
        lvm("pvcreate", &[dev])?;
    }
    lvm("vgcreate", &[VG, dev])?;
    let r = (|| {
        lvm(
            "lvcreate",
            &["--wipesignatures", "y", "-n", POOL_LV, VG, "-l", &percent],
        )?;
        lvm(
            "lvcreate",
            &[
                "--wipesignatures",
                "y",
                "-n",
                &meta_lv,
                VG,
                "-l",
                &metapercent,
            ],
        )?;
        lvm(
            "lvconvert",
            &[
                "-y",
                "--zero",
                "n",
                "-c",
                CHUNK,
                "--thinpool",
                &vg_lv,
                "--poolmetadata",
                &vg_meta,
            ],
        )?;
        let profile = profile_path();
        if let Some(dir) = profile.parent() {
            std::fs::create_dir_all(dir).map_err(|e| LvmError::Io {
                what: format!("creating {}", dir.display()),
                source: e,
            })?;
        }
        std::fs::write(
            &profile,
            profile_text(s.autoextend_threshold, s.autoextend_percent),
        )
        .map_err(|e| LvmError::Io {
            what: format!("writing {}", profile.display()),
            source: e,
        })?;
        lvm("lvchange", &["--metadataprofile", PROFILE, &vg_lv])?;
        Ok(())
    })();
    if let Err(e) = r {
        // Leave the device as it was found, apart from the wiped label.
        let _ = lvm("vgremove", &["-f", VG]);
        let _ = lvm("pvremove", &["-y", dev]);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_carries_the_autoextend_options() {
        let t = profile_text(80, 20);
        assert!(t.contains("thin_pool_autoextend_threshold=80"), "{t}");
        assert!(t.contains("thin_pool_autoextend_percent=20"), "{t}");
        assert!(t.starts_with("activation {"));
        assert_eq!(pool_name(), "strata-thinpool");
    }

    #[test]
    fn a_changed_setup_is_refused_before_lvm_runs() {
        let home = tempfile::tempdir().expect("tempdir");
        let d = DirectLvm {
            device: "/dev/nonexistent-strata".into(),
            force: false,
            percent: 95,
            metapercent: 1,
            autoextend_threshold: 80,
            autoextend_percent: 20,
        };
        let mut had = Setup::from(&d);
        had.percent = 60;
        std::fs::write(
            home.path().join("directlvm.json"),
            serde_json::to_vec(&had).expect("json"),
        )
        .expect("record");
        let e = ensure(home.path(), &d, |_| true)
            .expect_err("changed")
            .to_string();
        assert!(e.contains("not supported"), "{e}");
    }

    #[test]
    fn a_device_that_is_not_a_block_device_is_refused() {
        let home = tempfile::tempdir().expect("tempdir");
        let d = DirectLvm {
            device: home.path().join("file").display().to_string(),
            force: false,
            percent: 95,
            metapercent: 1,
            autoextend_threshold: 80,
            autoextend_percent: 20,
        };
        std::fs::write(&d.device, b"x").expect("file");
        let e = ensure(home.path(), &d, |_| false)
            .expect_err("a file")
            .to_string();
        assert!(e.contains("not a block device"), "{e}");
        assert!(!home.path().join("directlvm.json").exists());
    }
}
