//! Filesystem helpers shared by the store and the drivers: crash-safe writes, tree copy and
//! removal, mount table look-ups.

mod atomic;
mod copy;
mod mountinfo;
mod remove;

pub use atomic::{atomic_write, fsync_dir, rename_durable};
pub use copy::{copy_file_contents, copy_tree, CopyMode};
pub use mountinfo::{
    entries_under, is_mountpoint, mount_of, mounts_under, unmount, unmount_all_under, MountEntry,
};
pub use remove::{empty_dir, list_dir, remove_tree, remove_tree_at};

use std::io;
use std::path::Path;

/// A random hex identifier of `bytes` random bytes (cache ids, temp names).
pub fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

/// Creates a directory and its parents, ignoring "already exists".
pub fn mkdir_all(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
}

/// `syncfs` of the filesystem holding `path`.
pub fn syncfs_path(path: &Path) -> io::Result<()> {
    use std::os::fd::AsFd;
    let f = std::fs::File::open(path)?;
    crate::sys::syncfs(f.as_fd())
}
