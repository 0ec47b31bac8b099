//! A sorted depth-first walk of a layer directory, for drivers whose layer directory holds
//! exactly the layer's changes (overlay2's upper, aufs' read-write branch).

use crate::fsutil::list_dir;
use crate::sys;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

/// `a/b` from `a` and `b` (`b` alone when `a` is empty).
pub fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut v = a.to_vec();
    if !v.is_empty() {
        v.push(b'/');
    }
    v.extend_from_slice(b);
    v
}

/// Called for each entry with (parent directory, name, path from the root, stat); returns
/// whether to descend into it.
pub type Visit<'a> = dyn FnMut(BorrowedFd<'_>, &[u8], &[u8], &libc::stat) -> io::Result<bool> + 'a;

/// Walks `dir` depth first in name order.
pub fn walk(dir: BorrowedFd<'_>, rel: &[u8], f: &mut Visit<'_>) -> io::Result<()> {
    let mut names = list_dir(dir)?;
    names.sort();
    for name in names {
        let st = sys::fstatat(dir, &name, libc::AT_SYMLINK_NOFOLLOW)?;
        let child = join(rel, &name);
        let descend = f(dir, &name, &child, &st)?;
        if descend && sys::is_dir(&st) {
            let sub = sys::openat(
                dir,
                &name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )?;
            walk(sub.as_fd(), &child, f)?;
        }
    }
    Ok(())
}
