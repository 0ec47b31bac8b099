//! Reading `/proc/self/mountinfo`.

use std::io;
use std::path::{Path, PathBuf};

/// Undoes the octal escapes mountinfo uses for spaces and other characters.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or below `dir`, deepest first (the order to unmount them in).
pub fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    Ok(out)
}

/// True when `path` is itself a mount point.
pub fn is_mountpoint(path: &Path) -> io::Result<bool> {
    Ok(mounts_under(path)?.iter().any(|m| m == path))
}

/// Unmounts everything at or below `dir` (lazily if busy); returns what was unmounted.
pub fn unmount_all_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut done = Vec::new();
    for m in mounts_under(dir)? {
        match crate::sys::umount2(&m, 0) {
            Ok(()) => done.push(m),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                tracing::warn!(mount = %m.display(), "busy; detaching lazily");
                crate::sys::umount2(&m, libc::MNT_DETACH)?;
                done.push(m);
            }
            Err(e)
                if e.raw_os_error() == Some(libc::EINVAL)
                    || e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescapes_spaces() {
        assert_eq!(super::unescape("/a\\040b"), "/a b");
    }
}
