//! What changed between two trees (Docker's "naive diff"), and how much it weighs.

use crate::fsutil::list_dir;
use crate::sys;
use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// The kind of a change, numbered as the Docker API numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChangeKind {
    Modify = 0,
    Add = 1,
    Delete = 2,
}

/// One changed path, absolute within the container (`/etc/hosts`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

impl Change {
    /// The path relative to the root, as bytes.
    pub fn rel(&self) -> &[u8] {
        self.path.trim_start_matches('/').as_bytes()
    }
}

fn cap(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    sys::get_xattr_at(dir, name, b"security.capability")
}

fn differs(n: &libc::stat, o: &libc::stat) -> bool {
    if n.st_mode != o.st_mode
        || n.st_uid != o.st_uid
        || n.st_gid != o.st_gid
        || n.st_rdev != o.st_rdev
    {
        return true;
    }
    // Size and mtime say nothing useful about directories (moby#9874).
    !sys::is_dir(n)
        && (n.st_size != o.st_size
            || n.st_mtime != o.st_mtime
            || n.st_mtime_nsec != o.st_mtime_nsec)
}

fn path_of(rel: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(rel))
}

/// Which directories (relative paths, `b""` the root) may hold changes. A directory it rejects
/// is skipped only where both trees have the same inode number at that path (a snapshot keeps
/// inode numbers): a directory moved there from elsewhere is always read.
pub type Descend<'a> = &'a dyn Fn(&[u8]) -> bool;

fn walk(
    new: BorrowedFd<'_>,
    old: Option<BorrowedFd<'_>>,
    rel: &[u8],
    out: &mut Vec<Change>,
    descend: Descend<'_>,
) -> io::Result<()> {
    if let Some(o) = old {
        if !descend(rel) {
            let n = sys::fstatat(new, b"", libc::AT_EMPTY_PATH)?;
            let o = sys::fstatat(o, b"", libc::AT_EMPTY_PATH)?;
            if n.st_ino == o.st_ino {
                return Ok(());
            }
        }
    }
    let mut names: Vec<Vec<u8>> = list_dir(new)?;
    if let Some(o) = old {
        let seen: HashSet<Vec<u8>> = names.iter().cloned().collect();
        names.extend(list_dir(o)?.into_iter().filter(|n| !seen.contains(n)));
    }
    names.sort();
    for name in names {
        let mut child = rel.to_vec();
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(&name);
        let n = sys::lstat_at(new, &name)?;
        let o = match old {
            Some(o) => sys::lstat_at(o, &name)?,
            None => None,
        };
        match (n, o) {
            (None, None) => {}
            (None, Some(_)) => out.push(Change {
                path: path_of(&child),
                kind: ChangeKind::Delete,
            }),
            (Some(n), o) => {
                let changed = match &o {
                    None => Some(ChangeKind::Add),
                    Some(o) if differs(&n, o) => Some(ChangeKind::Modify),
                    Some(_)
                        if !sys::is_dir(&n)
                            && cap(new, &name)? != cap(old.unwrap_or(new), &name)? =>
                    {
                        Some(ChangeKind::Modify)
                    }
                    Some(_) => None,
                };
                let mark = out.len();
                if let Some(k) = changed {
                    out.push(Change {
                        path: path_of(&child),
                        kind: k,
                    });
                }
                if sys::is_dir(&n) {
                    let nfd = sys::openat(
                        new,
                        &name,
                        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                        0,
                    )?;
                    let ofd: Option<OwnedFd> = match (&o, old) {
                        (Some(o), Some(od)) if sys::is_dir(o) => Some(sys::openat(
                            od,
                            &name,
                            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                            0,
                        )?),
                        _ => None,
                    };
                    walk(
                        nfd.as_fd(),
                        ofd.as_ref().map(|f| f.as_fd()),
                        &child,
                        out,
                        descend,
                    )?;
                    // A directory with changes inside is part of the diff, so its metadata is kept.
                    if changed.is_none() && out.len() > mark {
                        out.insert(
                            mark,
                            Change {
                                path: path_of(&child),
                                kind: ChangeKind::Modify,
                            },
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// Changes that turn `old` (or an empty tree) into `new`, parents before children.
pub fn changes_dirs(new: &Path, old: Option<&Path>) -> io::Result<Vec<Change>> {
    changes_dirs_pruned(new, old, &|_| true)
}

/// As [`changes_dirs`], reading only the directories `descend` names (see [`Descend`]): a
/// driver that knows which subtrees did not change (btrfs generation numbers) skips them. The
/// result is what the full comparison gives when `descend` is true for every directory whose
/// entries changed and every ancestor of one.
pub fn changes_dirs_pruned(
    new: &Path,
    old: Option<&Path>,
    descend: Descend<'_>,
) -> io::Result<Vec<Change>> {
    let n = sys::open(new, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let o = old
        .map(|p| sys::open(p, libc::O_RDONLY | libc::O_DIRECTORY, 0))
        .transpose()?;
    let mut out = Vec::new();
    walk(
        n.as_fd(),
        o.as_ref().map(|f| f.as_fd()),
        b"",
        &mut out,
        descend,
    )?;
    Ok(out)
}

/// Records in `dirty` (the set a [`Descend`] reads from) that `path` (relative, `b""` the root)
/// changed: its directory and every ancestor of it may differ, and the path itself when it is
/// a directory.
pub fn mark_dirty(dirty: &mut HashSet<Vec<u8>>, path: &[u8], is_dir: bool) {
    if is_dir {
        dirty.insert(path.to_vec());
    }
    let mut cut = path;
    while !cut.is_empty() {
        cut = match cut.iter().rposition(|b| *b == b'/') {
            Some(i) => &cut[..i],
            None => b"",
        };
        dirty.insert(cut.to_vec());
    }
}

/// Bytes of the regular files added or modified (hard links counted once).
pub fn changes_size(root: &Path, changes: &[Change]) -> io::Result<u64> {
    let rfd = sys::open(root, libc::O_PATH | libc::O_DIRECTORY, 0)?;
    let mut seen = HashSet::new();
    let mut total = 0u64;
    for c in changes.iter().filter(|c| c.kind != ChangeKind::Delete) {
        let st = sys::fstatat(rfd.as_fd(), c.rel(), libc::AT_SYMLINK_NOFOLLOW)?;
        if sys::file_type(st.st_mode) == libc::S_IFREG && seen.insert((st.st_dev, st.st_ino)) {
            total += st.st_size as u64;
        }
    }
    Ok(total)
}

/// Bytes used by the regular files of a tree (hard links counted once).
pub fn tree_size(root: &Path) -> io::Result<u64> {
    fn rec(dir: BorrowedFd<'_>, seen: &mut HashSet<(u64, u64)>) -> io::Result<u64> {
        let mut total = 0;
        for name in list_dir(dir)? {
            let st = sys::fstatat(dir, &name, libc::AT_SYMLINK_NOFOLLOW)?;
            match sys::file_type(st.st_mode) {
                libc::S_IFREG if seen.insert((st.st_dev, st.st_ino)) => total += st.st_size as u64,
                libc::S_IFDIR => {
                    let d = sys::openat(
                        dir,
                        &name,
                        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                        0,
                    )?;
                    total += rec(d.as_fd(), seen)?;
                }
                _ => {}
            }
        }
        Ok(total)
    }
    let fd = sys::open(root, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    rec(fd.as_fd(), &mut HashSet::new())
}

#[cfg(test)]
mod dirty_tests {
    use super::mark_dirty;
    use std::collections::HashSet;

    #[test]
    fn marks_ancestors_and_directories() {
        let mut d = HashSet::new();
        mark_dirty(&mut d, b"a/b/c", false);
        let want: HashSet<Vec<u8>> = [&b""[..], b"a", b"a/b"]
            .iter()
            .map(|p| p.to_vec())
            .collect();
        assert_eq!(d, want);
        mark_dirty(&mut d, b"x", true);
        assert!(d.contains(b"x".as_slice()));
        let mut r = HashSet::new();
        mark_dirty(&mut r, b"", true);
        assert_eq!(r, HashSet::from([Vec::new()]));
    }
}
