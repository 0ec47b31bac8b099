//! Filesystems on loop devices for driver tests (xfs with quotas, btrfs, ...).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a loop filesystem could not be had.
#[derive(Debug)]
pub enum LoopFsError {
    /// The mkfs tool is not installed.
    NoTool(String),
    /// mkfs worked but the mount failed (e.g. an option the kernel lacks).
    Mount(String),
}

/// A filesystem image mounted through a loop device; unmounted when dropped, which releases
/// the loop device too (`mount -o loop` sets autoclear).
pub struct LoopFs {
    pub mnt: PathBuf,
    pub image: PathBuf,
}

impl LoopFs {
    /// Makes a sparse image of `size` bytes in `dir`, formats it with `mkfs` (the tool and its
    /// arguments), and mounts it at `dir/mnt` with `-o loop[,opts]`.
    pub fn new(dir: &Path, mkfs: &[&str], size: u64, opts: &str) -> Result<LoopFs, LoopFsError> {
        let tool = mkfs[0];
        if Command::new(tool).arg("-V").output().is_err() {
            return Err(LoopFsError::NoTool(tool.to_string()));
        }
        let image = dir.join(format!("{tool}.img"));
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(size))
            .expect("image file");
        let out = Command::new(tool)
            .args(&mkfs[1..])
            .arg(&image)
            .output()
            .expect("mkfs");
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).expect("mount point");
        Self::mount(image, mnt, opts)
    }

    fn mount(image: PathBuf, mnt: PathBuf, opts: &str) -> Result<LoopFs, LoopFsError> {
        let o = if opts.is_empty() {
            "loop".to_string()
        } else {
            format!("loop,{opts}")
        };
        let out = Command::new("mount")
            .args(["-o", &o])
            .arg(&image)
            .arg(&mnt)
            .output()
            .expect("mount");
        if !out.status.success() {
            return Err(LoopFsError::Mount(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        Ok(LoopFs { mnt, image })
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = crate::fsutil::unmount_all_under(&self.mnt);
    }
}
