//! The filesystem each driver is benchmarked on, made for the run and removed afterwards:
//!
//! | driver | made here | with `--root DIR` |
//! |---|---|---|
//! | overlay2, vfs, aufs | xfs with project quota (`pquota`) on a loop-mounted sparse file, so `size=` works (without `pquota` where the kernel refuses it); a directory when `mkfs.xfs` is missing | a directory in DIR |
//! | btrfs | btrfs on a loop-mounted sparse file | a directory in DIR (which must be on btrfs) |
//! | zfs | a pool on a sparse file (`cachefile=none`) | a directory in DIR (which must be on a ZFS dataset) |
//! | devicemapper | a directory: the driver makes its loop-backed thin pool there | a directory in DIR |
//!
//! Made files and directories go in `$TMPDIR`, else /var/tmp ([`default_parent`]).
//!
//! Before anything is made, [`probe`] says whether the kernel has what the driver needs.

use crate::error::{BenchError, BenchResult, Context};
use std::path::{Path, PathBuf};
use std::process::Command;
use strata_graph::fsutil;

/// Why a driver cannot run on this host at all, or `None` when it may.
pub fn probe(driver: &str) -> Option<String> {
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let has_fs = |name: &str| {
        fs.lines()
            .any(|l| l.split_whitespace().last() == Some(name))
    };
    match driver {
        "overlay2" if !has_fs("overlay") => Some("no overlay filesystem in this kernel".into()),
        "btrfs" if !has_fs("btrfs") => Some("no btrfs in this kernel".into()),
        "btrfs" if !tool("mkfs.btrfs") => {
            Some("mkfs.btrfs is not installed (Debian: btrfs-progs)".into())
        }
        "devicemapper" if !Path::new("/dev/mapper/control").exists() => {
            Some("no device-mapper in this kernel (/dev/mapper/control is missing)".into())
        }
        "zfs" if !Path::new("/dev/zfs").exists() => {
            Some("no ZFS in this kernel (/dev/zfs is missing; the zfs module is not loaded)".into())
        }
        "zfs" if !tool("zpool") => Some("zpool is not installed (Debian: zfsutils-linux)".into()),
        "aufs" if !has_fs("aufs") => {
            Some("aufs is not in /proc/filesystems (no Debian kernel has the aufs patches)".into())
        }
        _ => None,
    }
}

/// Where backing stores made for a run go: `$TMPDIR` when set, else /var/tmp (on disk,
/// where /tmp is often tmpfs).
pub fn default_parent() -> PathBuf {
    std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("/var/tmp"))
}

/// Whether a program is on PATH.
fn tool(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// Runs a command; its standard output, or an error with `what` and its standard error.
fn run(cmd: &mut Command, what: &str) -> BenchResult<String> {
    tracing::debug!(?cmd, "backing store");
    let out = cmd
        .output()
        .map_err(|e| BenchError::Backing(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(BenchError::Backing(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A driver's data root for one benchmark and what was made to hold it.
pub struct Backing {
    /// The directory to open the driver in.
    pub root: PathBuf,
    /// What it is, for the report (e.g. "xfs (pquota) on a 8 GiB loop file").
    pub description: String,
    /// The directory made for this run; removed at teardown.
    dir: PathBuf,
    /// The mount point of a filesystem mounted for the run (on a loop device, or the ZFS
    /// root dataset).
    loop_mnt: Option<PathBuf>,
    /// A ZFS pool made for this run.
    zpool: Option<String>,
    /// The loop device under that pool (detached by hand: `losetup` sets no autoclear).
    loop_dev: Option<String>,
    done: bool,
}

impl Backing {
    /// Makes the backing store for `driver`: in `user_root` when given, else its own.
    /// `size` is the size of made filesystems (sparse).
    pub fn make(driver: &str, user_root: Option<&Path>, size: u64) -> BenchResult<Backing> {
        let tmp = default_parent();
        let parent = user_root.unwrap_or(&tmp);
        if user_root.is_some() && !parent.is_dir() {
            return Err(BenchError::Usage(format!(
                "--root {}: not a directory",
                parent.display()
            )));
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("strata-bench-{driver}-"))
            .tempdir_in(parent)
            .ctx(|| format!("making a directory in {}", parent.display()))?
            .keep();
        let mut b = Backing {
            root: dir.join("root"),
            description: String::new(),
            dir: dir.clone(),
            loop_mnt: None,
            zpool: None,
            loop_dev: None,
            done: false,
        };
        let gib = size as f64 / (1u64 << 30) as f64;
        let made = match (driver, user_root) {
            (_, Some(r)) => {
                let fs = strata_graph::sys::statfs_type(r)
                    .map(strata_graph::sys::fs_name)
                    .unwrap_or("unknown");
                b.description = format!("{} ({fs})", r.display());
                Ok(())
            }
            ("overlay2" | "vfs" | "aufs", None) if tool("mkfs.xfs") => {
                b.description = format!("xfs (pquota) on a {gib} GiB loop file");
                b.loop_fs(&["mkfs.xfs", "-q", "-f"], "pquota", size)
            }
            ("btrfs", None) => {
                b.description = format!("btrfs on a {gib} GiB loop file");
                b.loop_fs(&["mkfs.btrfs", "-q", "-f"], "", size)
            }
            ("zfs", None) => {
                b.description = format!("a ZFS pool on a {gib} GiB loop file");
                b.zfs_pool(size)
            }
            (_, None) => {
                let fs = strata_graph::sys::statfs_type(&dir)
                    .map(strata_graph::sys::fs_name)
                    .unwrap_or("unknown");
                b.description = format!("{} ({fs})", dir.display());
                Ok(())
            }
        };
        // A failure half-way undoes what was made (through Drop).
        made?;
        std::fs::create_dir_all(&b.root).ctx(|| format!("mkdir {}", b.root.display()))?;
        Ok(b)
    }

    fn loop_fs(&mut self, mkfs: &[&str], opts: &str, size: u64) -> BenchResult<()> {
        let image = self.dir.join("fs.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(size))
            .ctx(|| format!("making {}", image.display()))?;
        run(Command::new(mkfs[0]).args(&mkfs[1..]).arg(&image), mkfs[0])?;
        let mnt = self.dir.join("mnt");
        std::fs::create_dir(&mnt).ctx(|| format!("mkdir {}", mnt.display()))?;
        let o = if opts.is_empty() {
            "loop".to_string()
        } else {
            format!("loop,{opts}")
        };
        let mounted = run(
            Command::new("mount").args(["-o", &o]).arg(&image).arg(&mnt),
            &format!("mounting {}", image.display()),
        );
        if let (Err(e), false) = (&mounted, opts.is_empty()) {
            // E.g. XFS quotas, which some kernels are built without: the filesystem still
            // serves, without what the option gave.
            tracing::info!("{e}; mounting without {opts}");
            run(
                Command::new("mount")
                    .args(["-o", "loop"])
                    .arg(&image)
                    .arg(&mnt),
                &format!("mounting {}", image.display()),
            )?;
            self.description = format!(
                "{} (without {opts}: the mount refused it, see dmesg)",
                self.description.replace(&format!(" ({opts})"), "")
            );
        } else {
            mounted?;
        }
        self.loop_mnt = Some(mnt.clone());
        self.root = mnt.join("root");
        Ok(())
    }

    fn zfs_pool(&mut self, size: u64) -> BenchResult<()> {
        let image = self.dir.join("zpool.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(size))
            .ctx(|| format!("making {}", image.display()))?;
        // On a loop device: a file vdev is refused by some builds ("no such pool or
        // dataset").
        let dev = run(
            Command::new("losetup")
                .args(["--find", "--show"])
                .arg(&image),
            "losetup",
        )?;
        self.loop_dev = Some(dev.clone());
        let name = format!("strata-bench-{}", std::process::id());
        run(
            Command::new("zpool")
                .args([
                    "create",
                    "-f",
                    "-o",
                    "cachefile=none",
                    "-O",
                    "mountpoint=none",
                ])
                .arg(&name)
                .arg(&dev),
            "zpool create",
        )?;
        self.zpool = Some(name.clone());
        // The data root is a dataset the harness mounts itself (no zfs-mount service, no
        // automatic mount points): the driver takes it as its parent dataset.
        let dataset = format!("{name}/root");
        run(
            Command::new("zfs").args(["create", "-o", "mountpoint=legacy", &dataset]),
            "zfs create",
        )?;
        let mnt = self.dir.join("mnt");
        std::fs::create_dir(&mnt).ctx(|| format!("mkdir {}", mnt.display()))?;
        run(
            Command::new("mount")
                .args(["-t", "zfs", &dataset])
                .arg(&mnt),
            &format!("mounting {dataset}"),
        )?;
        self.loop_mnt = Some(mnt.clone());
        self.root = mnt.join("root");
        Ok(())
    }

    /// The filesystem path for space figures and syncfs.
    pub fn fs_path(&self) -> &Path {
        &self.root
    }

    /// Unmounts and removes everything made for this run; checks the mounts are gone before
    /// any file is removed.
    pub fn teardown(mut self) -> BenchResult<()> {
        self.undo()
    }

    fn undo(&mut self) -> BenchResult<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        // Whatever the driver left mounted beneath the root.
        fsutil::unmount_all_under(&self.dir)
            .ctx(|| format!("unmounting under {}", self.dir.display()))?;
        if let Some(pool) = self.zpool.take() {
            run(
                Command::new("zpool").args(["destroy", "-f", &pool]),
                "zpool destroy",
            )?;
        }
        if let Some(dev) = self.loop_dev.take() {
            run(Command::new("losetup").args(["-d", &dev]), "losetup -d")?;
            // ZFS closes the vdev a moment after the destroy; until then the detach is
            // only scheduled (autoclear).
            let backing = Path::new("/sys/block")
                .join(dev.trim_start_matches("/dev/"))
                .join("loop/backing_file");
            let t = std::time::Instant::now();
            while backing.exists() && t.elapsed() < std::time::Duration::from_secs(10) {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            if backing.exists() {
                return Err(BenchError::Backing(format!("{dev} is still attached")));
            }
        }
        if let Some(mnt) = self.loop_mnt.take() {
            fsutil::unmount(&mnt).ctx(|| format!("unmounting {}", mnt.display()))?;
        }
        if !fsutil::mounts_under(&self.dir)
            .ctx(|| "reading mountinfo".into())?
            .is_empty()
        {
            return Err(BenchError::Backing(format!(
                "{} is still mounted; left in place",
                self.dir.display()
            )));
        }
        fsutil::remove_tree(&self.dir).ctx(|| format!("removing {}", self.dir.display()))
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        if let Err(e) = self.undo() {
            tracing::warn!("cleaning up a backing store: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_names_the_missing_piece() {
        assert_eq!(probe("vfs"), None);
        if !Path::new("/dev/mapper/control").exists() {
            let why = probe("devicemapper").unwrap();
            assert!(why.contains("no device-mapper in this kernel"), "{why}");
        }
    }

    #[test]
    fn a_directory_in_the_users_root_is_made_and_removed() {
        let user = tempfile::tempdir().unwrap();
        let b = Backing::make("vfs", Some(user.path()), 0).unwrap();
        assert!(b.root.starts_with(user.path()) && b.root.is_dir());
        std::fs::write(b.root.join("x"), b"x").unwrap();
        b.teardown().unwrap();
        assert_eq!(std::fs::read_dir(user.path()).unwrap().count(), 0);
        let e = Backing::make("vfs", Some(Path::new("/nonexistent/x")), 0)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a directory"), "{e}");
    }
}
