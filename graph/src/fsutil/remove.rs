//! Recursive removal that never follows symlinks and never leaves the tree it was given.

use crate::sys;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

/// Removes the entry `name` inside `dir`, recursively if it is a directory. Missing is fine.
pub fn remove_tree_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let st = match sys::lstat_at(dir, name)? {
        None => return Ok(()),
        Some(st) => st,
    };
    if !sys::is_dir(&st) {
        return match sys::unlinkat(dir, name, 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        };
    }
    let sub = sys::openat(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )?;
    empty_dir(sub.as_fd())?;
    drop(sub);
    match sys::unlinkat(dir, name, libc::AT_REMOVEDIR) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// Removes every entry inside the open directory `dir`.
pub fn empty_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    for name in list_dir(dir)? {
        remove_tree_at(dir, &name)?;
    }
    Ok(())
}

/// Names in an open directory, without `.` and `..`.
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    // Reopen through /proc so that read_dir gets its own descriptor and position.
    let path = sys::proc_path(dir, b"");
    let rd = std::fs::read_dir(std::ffi::OsStr::from_bytes(&path))?;
    let mut names = Vec::new();
    for e in rd {
        names.push(e?.file_name().as_bytes().to_vec());
    }
    Ok(names)
}

/// Removes a path recursively. Missing is fine.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = match path.file_name() {
        Some(n) => n.as_bytes().to_vec(),
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "refusing to remove a path without a name",
            ))
        }
    };
    let pfd = match sys::open(parent, libc::O_PATH | libc::O_DIRECTORY, 0) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    remove_tree_at(pfd.as_fd(), &name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn removes_tree_without_following_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"x").unwrap();
        let t = d.path().join("tree");
        std::fs::create_dir_all(t.join("a/b")).unwrap();
        std::fs::write(t.join("a/b/f"), b"x").unwrap();
        symlink(&outside, t.join("a/link")).unwrap();
        remove_tree(&t).unwrap();
        assert!(!t.exists());
        assert!(outside.join("keep").exists());
        remove_tree(&t).unwrap();
    }
}
