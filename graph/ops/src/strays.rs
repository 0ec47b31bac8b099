//! Mounts and loop devices under a data root that may have been left behind.

use std::io;
use std::path::{Path, PathBuf};

/// The layer data (cache id) a mount below `home` belongs to: the first component of its path
/// below `home` that `known` recognises (`<home>/<id>/merged`, `<home>/mnt/<id>`, ...).
pub fn owner(home: &Path, mount_point: &Path, known: impl Fn(&str) -> bool) -> Option<String> {
    let rel = mount_point.strip_prefix(home).ok()?;
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .find(|c| known(c))
}

/// Loop devices whose backing file is below `root`: (device, backing file).
pub fn loop_devices_under(root: &Path) -> Vec<(PathBuf, PathBuf)> {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(file) = std::fs::read_to_string(e.path().join("loop/backing_file")) else {
            continue;
        };
        let file = PathBuf::from(file.trim_end_matches('\n').trim_end_matches(" (deleted)"));
        if file.starts_with(&root) {
            out.push((PathBuf::from("/dev").join(&name), file));
        }
    }
    out.sort();
    out
}

/// Detaches a loop device (it goes once nothing holds it open).
pub fn detach_loop(dev: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
    let f = std::fs::File::open(dev)?;
    // SAFETY: an ioctl without arguments on a descriptor we own.
    if unsafe { libc::ioctl(f.as_raw_fd(), LOOP_CLR_FD as _, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_belongs_to_the_first_known_component() {
        let home = Path::new("/var/lib/strata/overlay2");
        let known = |c: &str| c == "abc" || c == "def";
        assert_eq!(
            owner(
                home,
                Path::new("/var/lib/strata/overlay2/abc/merged"),
                known
            )
            .as_deref(),
            Some("abc")
        );
        assert_eq!(
            owner(home, Path::new("/var/lib/strata/overlay2/mnt/def"), known).as_deref(),
            Some("def")
        );
        assert_eq!(
            owner(
                home,
                Path::new("/var/lib/strata/overlay2/zzz/merged"),
                known
            ),
            None
        );
        assert_eq!(owner(home, Path::new("/elsewhere/abc"), known), None);
    }
}
