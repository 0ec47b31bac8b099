//! Copying a tree with every piece of metadata a layer carries: owners, modes, nanosecond
//! times, xattrs, hard links, devices and FIFOs. File data is shared with `FICLONE` (reflink)
//! where the filesystem allows it, else copied in the kernel with `copy_file_range`.

use super::remove::list_dir;
use crate::sys::{self, Timespec};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

/// How file contents are copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMode {
    /// Reflink where possible, else an in-kernel copy.
    Auto,
    /// Always copy the bytes.
    Copy,
}

/// 0 = unknown, 1 = reflink works, 2 = reflink unsupported here (remembered per process).
static REFLINK: AtomicU8 = AtomicU8::new(0);

/// Copies the contents of `src` (file) to `dst` (file).
pub fn copy_file_contents(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    len: u64,
    mode: CopyMode,
) -> io::Result<()> {
    if mode == CopyMode::Auto && REFLINK.load(Ordering::Relaxed) != 2 && len > 0 {
        match sys::ficlone(dst, src) {
            Ok(()) => {
                REFLINK.store(1, Ordering::Relaxed);
                return Ok(());
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP)
                        | Some(libc::EXDEV)
                        | Some(libc::EINVAL)
                        | Some(libc::ENOTTY)
                ) =>
            {
                if e.raw_os_error() != Some(libc::EXDEV) {
                    REFLINK.store(2, Ordering::Relaxed);
                }
            }
            Err(e) => return Err(e),
        }
    }
    let n = match sys::copy_file_range_all(src, dst, len) {
        Ok(n) => n,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EXDEV) | Some(libc::EINVAL) | Some(libc::ENOSYS)
            ) =>
        {
            copy_with_read_write(src, dst, len)?
        }
        Err(e) => return Err(e),
    };
    if n != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while it was copied",
        ));
    }
    Ok(())
}

fn copy_with_read_write(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, len: u64) -> io::Result<u64> {
    use std::io::Read;
    let mut s = std::fs::File::from(src.try_clone_to_owned()?);
    let mut d = std::fs::File::from(dst.try_clone_to_owned()?);
    io::copy(&mut (&mut s).take(len), &mut d)
}

struct Copier {
    mode: CopyMode,
    /// (dev, ino) of multiply-linked files already copied → their path relative to dst root.
    links: HashMap<(u64, u64), Vec<u8>>,
    dst_root: std::os::fd::OwnedFd,
    dir_times: Vec<(Vec<u8>, Timespec, Timespec)>,
}

/// Copies the tree `src` into the existing, empty directory `dst`, including the metadata of
/// `src` itself.
pub fn copy_tree(src: &Path, dst: &Path, mode: CopyMode) -> io::Result<()> {
    let s = sys::open(src, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let d = sys::open(dst, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let mut c = Copier {
        mode,
        links: HashMap::new(),
        dst_root: d.try_clone()?,
        dir_times: Vec::new(),
    };
    c.copy_dir(s.as_fd(), d.as_fd(), &[])?;
    let st = sys::fstatat(s.as_fd(), b"", 0)?;
    copy_meta(s.as_fd(), b"", &st, d.as_fd(), b"")?;
    sys::lchownat(d.as_fd(), b"", st.st_uid, st.st_gid)?;
    sys::fchmod(d.as_fd(), st.st_mode & 0o7777)?;
    // Directory times last, deepest first, since creating entries changes them.
    for (rel, at, mt) in c.dir_times.iter().rev() {
        let fd = sys::openat(
            c.dst_root.as_fd(),
            rel,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )?;
        sys::lutimensat(fd.as_fd(), b"", *at, *mt)?;
    }
    sys::lutimensat(
        d.as_fd(),
        b"",
        Timespec::atime_of(&st),
        Timespec::mtime_of(&st),
    )
}

impl Copier {
    fn copy_dir(&mut self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>, rel: &[u8]) -> io::Result<()> {
        let mut names = list_dir(src)?;
        names.sort();
        for name in names {
            let st = sys::fstatat(src, &name, libc::AT_SYMLINK_NOFOLLOW)?;
            let mut child_rel = rel.to_vec();
            if !child_rel.is_empty() {
                child_rel.push(b'/');
            }
            child_rel.extend_from_slice(&name);
            self.copy_entry(src, dst, &name, &st, &child_rel)?;
        }
        Ok(())
    }

    fn copy_entry(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &[u8],
        st: &libc::stat,
        rel: &[u8],
    ) -> io::Result<()> {
        let perm = st.st_mode & 0o7777;
        match sys::file_type(st.st_mode) {
            libc::S_IFDIR => {
                sys::mkdirat(dst, name, 0o700)?;
                let s = sys::openat(
                    src,
                    name,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )?;
                let d = sys::openat(
                    dst,
                    name,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )?;
                self.copy_dir(s.as_fd(), d.as_fd(), rel)?;
                copy_meta(s.as_fd(), b"", st, d.as_fd(), b"")?;
                sys::lchownat(d.as_fd(), b"", st.st_uid, st.st_gid)?;
                sys::fchmod(d.as_fd(), perm)?;
                self.dir_times
                    .push((rel.to_vec(), Timespec::atime_of(st), Timespec::mtime_of(st)));
                return Ok(());
            }
            libc::S_IFREG => {
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&(st.st_dev, st.st_ino)) {
                        return sys::linkat(self.dst_root.as_fd(), first, dst, name);
                    }
                    self.links.insert((st.st_dev, st.st_ino), rel.to_vec());
                }
                let s = sys::openat(src, name, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?;
                let d = sys::openat(
                    dst,
                    name,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                    0o600,
                )?;
                copy_file_contents(s.as_fd(), d.as_fd(), st.st_size as u64, self.mode)?;
                copy_meta(s.as_fd(), b"", st, d.as_fd(), b"")?;
                sys::lchownat(d.as_fd(), b"", st.st_uid, st.st_gid)?;
                sys::fchmod(d.as_fd(), perm)?;
                return sys::lutimensat(
                    d.as_fd(),
                    b"",
                    Timespec::atime_of(st),
                    Timespec::mtime_of(st),
                );
            }
            libc::S_IFLNK => {
                let target = sys::readlinkat(src, name)?;
                sys::symlinkat(&target, dst, name)?;
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO | libc::S_IFSOCK => {
                sys::mknodat(dst, name, sys::file_type(st.st_mode) | perm, st.st_rdev)?;
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unknown file type",
                ))
            }
        }
        copy_meta(src, name, st, dst, name)?;
        sys::lchownat(dst, name, st.st_uid, st.st_gid)?;
        if sys::file_type(st.st_mode) != libc::S_IFLNK {
            sys::fchmodat(dst, name, perm)?;
        }
        sys::lutimensat(dst, name, Timespec::atime_of(st), Timespec::mtime_of(st))
    }
}

/// Copies all xattrs of `src_dir/src_name` to `dst_dir/dst_name`.
fn copy_meta(
    src_dir: BorrowedFd<'_>,
    src_name: &[u8],
    _st: &libc::stat,
    dst_dir: BorrowedFd<'_>,
    dst_name: &[u8],
) -> io::Result<()> {
    for name in sys::list_xattr_at(src_dir, src_name)? {
        if let Some(v) = sys::get_xattr_at(src_dir, src_name, &name)? {
            match sys::set_xattr_at(dst_dir, dst_name, &name, &v) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) => {
                    tracing::debug!(xattr = %String::from_utf8_lossy(&name), "xattr not copied: {e}");
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn copies_metadata_links_and_devices() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("s");
        std::fs::create_dir_all(s.join("sub")).unwrap();
        std::fs::write(s.join("sub/f"), b"data").unwrap();
        std::fs::hard_link(s.join("sub/f"), s.join("hl")).unwrap();
        std::os::unix::fs::symlink("sub/f", s.join("ln")).unwrap();
        std::fs::set_permissions(s.join("sub/f"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        let sf = sys::open(&s, libc::O_PATH | libc::O_DIRECTORY, 0).unwrap();
        sys::mknodat(sf.as_fd(), b"fifo", libc::S_IFIFO | 0o644, 0).unwrap();
        sys::lutimensat(
            sf.as_fd(),
            b"sub",
            Timespec { sec: 1000, nsec: 5 },
            Timespec { sec: 2000, nsec: 7 },
        )
        .unwrap();
        let t = d.path().join("t");
        std::fs::create_dir(&t).unwrap();
        copy_tree(&s, &t, CopyMode::Auto).unwrap();
        assert_eq!(std::fs::read(t.join("hl")).unwrap(), b"data");
        assert_eq!(
            std::fs::metadata(t.join("hl")).unwrap().ino(),
            std::fs::metadata(t.join("sub/f")).unwrap().ino()
        );
        assert_eq!(
            std::fs::metadata(t.join("sub/f")).unwrap().mode() & 0o7777,
            0o4755
        );
        assert_eq!(
            std::fs::read_link(t.join("ln")).unwrap(),
            Path::new("sub/f")
        );
        let m = std::fs::metadata(t.join("sub")).unwrap();
        assert_eq!((m.mtime(), m.mtime_nsec()), (2000, 7));
        assert_eq!(
            std::fs::symlink_metadata(t.join("fifo")).unwrap().mode() & libc::S_IFMT,
            libc::S_IFIFO
        );
    }
}
