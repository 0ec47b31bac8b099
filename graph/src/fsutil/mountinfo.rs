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

/// One mount of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The filesystem type (`zfs`, `ext4`, ...).
    pub fstype: String,
    /// The mount source (a device, or for zfs the dataset name).
    pub source: String,
}

/// Parses one mountinfo line: fields 5 (mount point), then after the ` - ` separator the
/// filesystem type and source.
fn parse_entry(line: &str) -> Option<MountEntry> {
    let (head, tail) = line.split_once(" - ")?;
    let mount_point = head.split(' ').nth(4)?;
    let mut t = tail.split(' ');
    Some(MountEntry {
        mount_point: PathBuf::from(unescape(mount_point)),
        fstype: unescape(t.next()?),
        source: unescape(t.next()?),
    })
}

/// Mounts strictly below `dir`, with their types and sources, deepest first.
pub fn entries_under(dir: &Path) -> io::Result<Vec<MountEntry>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut out: Vec<MountEntry> = text
        .lines()
        .filter_map(parse_entry)
        .filter(|e| e.mount_point.starts_with(dir) && e.mount_point != dir)
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.mount_point.components().count()));
    out.dedup_by(|a, b| a.mount_point == b.mount_point);
    Ok(out)
}

/// The mount that holds `path` (which must be absolute): the one with the longest mount point
/// above it, the last mounted where several share it.
pub fn mount_of(path: &Path) -> io::Result<Option<MountEntry>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mount_of_in(&text, path))
}

fn mount_of_in(text: &str, path: &Path) -> Option<MountEntry> {
    let mut best: Option<MountEntry> = None;
    for e in text.lines().filter_map(parse_entry) {
        if path.starts_with(&e.mount_point)
            && best.as_ref().is_none_or(|b| {
                e.mount_point.components().count() >= b.mount_point.components().count()
            })
        {
            best = Some(e);
        }
    }
    best
}

/// True when `path` is itself a mount point.
pub fn is_mountpoint(path: &Path) -> io::Result<bool> {
    Ok(mounts_under(path)?.iter().any(|m| m == path))
}

/// Unmounts `path`, detaching it lazily when it is busy (held open, a working directory);
/// a path that is not a mount point (EINVAL) is left alone. Returns whether it unmounted.
pub fn unmount(path: &Path) -> io::Result<bool> {
    match crate::sys::umount2(path, 0) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            tracing::warn!(mount = %path.display(), "busy; detaching lazily");
            crate::sys::umount2(path, libc::MNT_DETACH)?;
            Ok(true)
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Unmounts everything at or below `dir` (lazily if busy); returns what was unmounted.
pub fn unmount_all_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut done = Vec::new();
    for m in mounts_under(dir)? {
        match unmount(&m) {
            Ok(true) => done.push(m),
            Ok(false) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn finds_the_mount_holding_a_path() {
        let text = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    40 22 0:50 / /tank rw - zfs tank rw\n\
                    41 40 0:51 / /tank/docker\\040root rw - zfs tank/docker rw\n\
                    42 40 0:52 / /tank/docker\\040root rw shared:1 - zfs tank/other rw\n";
        let m = super::mount_of_in(text, Path::new("/tank/docker root/zfs")).unwrap();
        assert_eq!(m.fstype, "zfs");
        assert_eq!(m.source, "tank/other", "the last mount on a point wins");
        assert_eq!(m.mount_point, Path::new("/tank/docker root"));
        let m = super::mount_of_in(text, Path::new("/tankx/a")).unwrap();
        assert_eq!(
            (m.fstype.as_str(), m.source.as_str()),
            ("ext4", "/dev/sda1")
        );
        assert_eq!(super::mount_of_in("", Path::new("/a")), None);
    }

    #[test]
    fn unescapes_spaces() {
        assert_eq!(super::unescape("/a\\040b"), "/a b");
    }
}
