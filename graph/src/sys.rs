//! Thin wrappers over the `*at` family of system calls, `openat2`, xattrs, mounts and the new
//! mount API. Every call returns `io::Result` and takes names as byte strings, because tar paths
//! are bytes, not UTF-8.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Turns a byte string into a C string, refusing interior NULs.
pub fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

/// A path as a C string.
pub fn cpath(path: &Path) -> io::Result<CString> {
    cstr(path.as_os_str().as_bytes())
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn check_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: the kernel just returned this descriptor to us and nobody else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
    }
}

/// `RESOLVE_*` flags of `openat2(2)`.
pub mod resolve {
    pub const NO_XDEV: u64 = 0x01;
    pub const NO_MAGICLINKS: u64 = 0x02;
    pub const NO_SYMLINKS: u64 = 0x04;
    pub const BENEATH: u64 = 0x08;
    pub const IN_ROOT: u64 = 0x10;
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(2)`: open `path` relative to `dir` with `resolve` restrictions.
pub fn openat2(
    dir: BorrowedFd<'_>,
    path: &[u8],
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c = cstr(if path.is_empty() { b"." } else { path })?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve,
    };
    loop {
        // SAFETY: valid C string, a properly sized open_how struct.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match check_fd(ret) {
            Err(e)
                if e.raw_os_error() == Some(libc::EAGAIN)
                    || e.raw_os_error() == Some(libc::EINTR) =>
            {
                continue
            }
            other => return other,
        }
    }
}

/// `openat(2)` relative to a directory descriptor.
pub fn openat(dir: BorrowedFd<'_>, name: &[u8], flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    let ret = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    check_fd(ret as libc::c_long)
}

/// Opens a path (absolute, or relative to the working directory).
pub fn open(path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: valid C string.
    let ret = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
    check_fd(ret as libc::c_long)
}

/// `fstatat(2)`; `name` empty means the descriptor itself.
pub fn fstatat(dir: BorrowedFd<'_>, name: &[u8], flags: i32) -> io::Result<libc::stat> {
    let (c, flags) = if name.is_empty() {
        (cstr(b"")?, flags | libc::AT_EMPTY_PATH)
    } else {
        (cstr(name)?, flags)
    };
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    check(unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

/// `lstat` of the entry `name` in `dir`, `None` when it does not exist.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<libc::stat>> {
    match fstatat(dir, name, libc::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `lstat(2)` of a path.
pub fn lstat(path: &Path) -> io::Result<libc::stat> {
    let c = cpath(path)?;
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    check(unsafe { libc::lstat(c.as_ptr(), &mut st) })?;
    Ok(st)
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) })
}

pub fn mknodat(dir: BorrowedFd<'_>, name: &[u8], mode: u32, dev: u64) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), mode, dev) })
}

pub fn symlinkat(target: &[u8], dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let t = cstr(target)?;
    let c = cstr(name)?;
    // SAFETY: valid C strings.
    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) })
}

pub fn readlinkat(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<u8>> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: buffer is valid for its length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// `linkat(2)` without following a symlink at the source.
pub fn linkat(
    old_dir: BorrowedFd<'_>,
    old: &[u8],
    new_dir: BorrowedFd<'_>,
    new: &[u8],
) -> io::Result<()> {
    let o = cstr(old)?;
    let n = cstr(new)?;
    // SAFETY: valid C strings.
    check(unsafe {
        libc::linkat(
            old_dir.as_raw_fd(),
            o.as_ptr(),
            new_dir.as_raw_fd(),
            n.as_ptr(),
            0,
        )
    })
}

pub fn unlinkat(dir: BorrowedFd<'_>, name: &[u8], flags: i32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) })
}

pub fn renameat(
    old_dir: BorrowedFd<'_>,
    old: &[u8],
    new_dir: BorrowedFd<'_>,
    new: &[u8],
) -> io::Result<()> {
    let o = cstr(old)?;
    let n = cstr(new)?;
    // SAFETY: valid C strings.
    check(unsafe {
        libc::renameat(
            old_dir.as_raw_fd(),
            o.as_ptr(),
            new_dir.as_raw_fd(),
            n.as_ptr(),
        )
    })
}

/// `fchownat` without following symlinks.
pub fn lchownat(dir: BorrowedFd<'_>, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
    let (c, flags) = if name.is_empty() {
        (cstr(b"")?, libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH)
    } else {
        (cstr(name)?, libc::AT_SYMLINK_NOFOLLOW)
    };
    // SAFETY: valid C string.
    check(unsafe { libc::fchownat(dir.as_raw_fd(), c.as_ptr(), uid, gid, flags) })
}

pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })
}

/// `fchmodat` on a name that is known not to be a symlink.
pub fn fchmodat(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid C string.
    check(unsafe { libc::fchmodat(dir.as_raw_fd(), c.as_ptr(), mode, 0) })
}

/// A timestamp with nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

impl Timespec {
    fn to_libc(self) -> libc::timespec {
        libc::timespec {
            tv_sec: self.sec as libc::time_t,
            tv_nsec: self.nsec as libc::c_long,
        }
    }
    pub fn mtime_of(st: &libc::stat) -> Self {
        Timespec {
            sec: st.st_mtime,
            nsec: st.st_mtime_nsec as u32,
        }
    }
    pub fn atime_of(st: &libc::stat) -> Self {
        Timespec {
            sec: st.st_atime,
            nsec: st.st_atime_nsec as u32,
        }
    }
}

/// `utimensat(2)` without following symlinks; `name` empty means the descriptor itself.
pub fn lutimensat(
    dir: BorrowedFd<'_>,
    name: &[u8],
    atime: Timespec,
    mtime: Timespec,
) -> io::Result<()> {
    let times = [atime.to_libc(), mtime.to_libc()];
    if name.is_empty() {
        // SAFETY: valid pointer to two timespecs.
        return check(unsafe { libc::futimens(dir.as_raw_fd(), times.as_ptr()) });
    }
    let c = cstr(name)?;
    // SAFETY: valid C string and pointer.
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Path through `/proc/self/fd` naming `name` inside the directory `dir`, for calls that have no
/// `*at` form (xattrs on symlinks and devices). The final component is not followed by `l*` calls.
pub fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> Vec<u8> {
    let mut p = format!("/proc/self/fd/{}", dir.as_raw_fd()).into_bytes();
    if !name.is_empty() {
        p.push(b'/');
        p.extend_from_slice(name);
    }
    p
}

/// Sets an xattr on `name` in `dir` (or on `dir` itself when `name` is empty), never following
/// a final symlink.
pub fn set_xattr_at(dir: BorrowedFd<'_>, name: &[u8], key: &[u8], value: &[u8]) -> io::Result<()> {
    let p = proc_path(dir, name);
    if name.is_empty() {
        let p = cstr(&p)?;
        let k = cstr(key)?;
        // SAFETY: valid pointers and lengths; following the /proc magic link reaches `dir`.
        return check(unsafe {
            libc::setxattr(
                p.as_ptr(),
                k.as_ptr(),
                value.as_ptr() as *const libc::c_void,
                value.len(),
                0,
            )
        });
    }
    lsetxattr(&p, key, value)
}

/// Xattr names of `name` in `dir` (or of `dir` itself when `name` is empty).
pub fn list_xattr_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    xattr_list(&proc_path(dir, name), name.is_empty())
}

/// One xattr of `name` in `dir` (or of `dir` itself when `name` is empty); `None` when absent.
pub fn get_xattr_at(dir: BorrowedFd<'_>, name: &[u8], key: &[u8]) -> io::Result<Option<Vec<u8>>> {
    xattr_get(&proc_path(dir, name), key, name.is_empty())
}

pub fn fsetxattr(fd: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> io::Result<()> {
    let n = cstr(name)?;
    // SAFETY: valid pointers and lengths.
    check(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            0,
        )
    })
}

pub fn lsetxattr(path: &[u8], name: &[u8], value: &[u8]) -> io::Result<()> {
    let p = cstr(path)?;
    let n = cstr(name)?;
    // SAFETY: valid pointers and lengths.
    check(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            0,
        )
    })
}

/// All xattr names of `path` (not following a final symlink).
pub fn llistxattr(path: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    xattr_list(path, false)
}

fn xattr_list(path: &[u8], follow: bool) -> io::Result<Vec<Vec<u8>>> {
    let p = cstr(path)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: buffer valid for its length.
        let n = unsafe {
            if follow {
                libc::listxattr(p.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len())
            } else {
                libc::llistxattr(p.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len())
            }
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) => {
                    buf.resize(buf.len() * 4, 0);
                    continue;
                }
                Some(libc::ENOTSUP) => return Ok(Vec::new()),
                _ => return Err(e),
            }
        }
        buf.truncate(n as usize);
        return Ok(buf
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| s.to_vec())
            .collect());
    }
}

/// The value of one xattr of `path` (not following a final symlink); `None` when absent.
pub fn lgetxattr(path: &[u8], name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    xattr_get(path, name, false)
}

fn xattr_get(path: &[u8], name: &[u8], follow: bool) -> io::Result<Option<Vec<u8>>> {
    let p = cstr(path)?;
    let n = cstr(name)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: buffer valid for its length.
        let r = unsafe {
            if follow {
                libc::getxattr(
                    p.as_ptr(),
                    n.as_ptr(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            } else {
                libc::lgetxattr(
                    p.as_ptr(),
                    n.as_ptr(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            }
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) => {
                    buf.resize(buf.len() * 4, 0);
                    continue;
                }
                Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
                _ => return Err(e),
            }
        }
        buf.truncate(r as usize);
        return Ok(Some(buf));
    }
}

pub fn fsync(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::fsync(fd.as_raw_fd()) })
}

/// `syncfs(2)`: flush the whole filesystem holding `fd`.
pub fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::syncfs(fd.as_raw_fd()) })
}

pub fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) })
}

/// `FICLONE`: make `dst` share `src`'s extents (reflink).
pub fn ficlone(dst: BorrowedFd<'_>, src: BorrowedFd<'_>) -> io::Result<()> {
    const FICLONE: libc::c_ulong = 0x40049409;
    // SAFETY: ioctl with an fd argument.
    check(unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) })
}

/// Copies `len` bytes with `copy_file_range(2)`, returning how many were copied (less at EOF).
pub fn copy_file_range_all(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, len: u64) -> io::Result<u64> {
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(1 << 30) as usize;
        // SAFETY: null offsets use and advance the file positions.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                std::ptr::null_mut(),
                dst.as_raw_fd(),
                std::ptr::null_mut(),
                want,
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            break;
        }
        done += n as u64;
    }
    Ok(done)
}

/// `statvfs(2)` of the filesystem holding `path`: its block and inode counts.
pub fn statvfs(path: &Path) -> io::Result<libc::statvfs> {
    let c = cpath(path)?;
    // SAFETY: a zeroed statvfs is a valid out-buffer.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    check(unsafe { libc::statvfs(c.as_ptr(), &mut st) })?;
    Ok(st)
}

/// Filesystem magic of the filesystem holding `path`.
pub fn statfs_type(path: &Path) -> io::Result<i64> {
    let c = cpath(path)?;
    // SAFETY: zeroed statfs is a valid out-buffer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    check(unsafe { libc::statfs(c.as_ptr(), &mut st) })?;
    Ok(st.f_type as i64)
}

/// A human name for a filesystem magic, as Docker's "Backing Filesystem" shows it.
pub fn fs_name(magic: i64) -> &'static str {
    match magic {
        0xEF53 => "extfs",
        0x58465342 => "xfs",
        0x9123683E => "btrfs",
        0x01021994 => "tmpfs",
        0x794c7630 => "overlayfs",
        0x2fc12fc1 => "zfs",
        0x61756673 => "aufs",
        0xf15f => "ecryptfs",
        0x6969 => "nfs",
        0x65735546 => "fuse",
        0x5346414f => "openafs",
        0x3153464a => "jfs",
        0x52654973 => "reiserfs",
        0xF2F52010 => "f2fs",
        _ => "unknown",
    }
}

pub fn mount(
    source: &[u8],
    target: &Path,
    fstype: &[u8],
    flags: libc::c_ulong,
    data: Option<&[u8]>,
) -> io::Result<()> {
    let s = cstr(source)?;
    let t = cpath(target)?;
    let f = cstr(fstype)?;
    let d = data.map(cstr).transpose()?;
    // SAFETY: valid C strings or null.
    check(unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            f.as_ptr(),
            flags,
            d.as_ref()
                .map(|d| d.as_ptr() as *const libc::c_void)
                .unwrap_or(std::ptr::null()),
        )
    })
}

pub fn umount2(target: &Path, flags: i32) -> io::Result<()> {
    let t = cpath(target)?;
    // SAFETY: valid C string.
    check(unsafe { libc::umount2(t.as_ptr(), flags) })
}

/// The new mount API (`fsopen`, `fsconfig`, `fsmount`, `move_mount`), Linux 5.2+.
pub mod newmount {
    use super::*;

    const FSCONFIG_SET_STRING: u32 = 1;
    const FSCONFIG_CMD_CREATE: u32 = 6;
    const FSMOUNT_CLOEXEC: u32 = 1;
    const MOVE_MOUNT_F_EMPTY_PATH: u32 = 4;

    /// A filesystem context being configured.
    pub struct FsContext(OwnedFd);

    impl FsContext {
        pub fn open(fstype: &str) -> io::Result<Self> {
            let t = cstr(fstype.as_bytes())?;
            // SAFETY: valid C string.
            let ret = unsafe {
                libc::syscall(libc::SYS_fsopen, t.as_ptr(), 1u32 /* FSOPEN_CLOEXEC */)
            };
            Ok(FsContext(check_fd(ret)?))
        }

        /// Sets a string parameter, e.g. `lowerdir+`.
        pub fn set_string(&self, key: &str, value: &[u8]) -> io::Result<()> {
            let k = cstr(key.as_bytes())?;
            let v = cstr(value)?;
            // SAFETY: valid C strings.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    self.0.as_raw_fd(),
                    FSCONFIG_SET_STRING,
                    k.as_ptr(),
                    v.as_ptr(),
                    0,
                )
            };
            check(ret as libc::c_int).map_err(|e| self.annotate(e))
        }

        /// Creates the superblock and attaches it at `target`.
        pub fn mount_at(self, target: &Path, attr_flags: u32) -> io::Result<()> {
            // SAFETY: plain syscalls with valid arguments.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    self.0.as_raw_fd(),
                    FSCONFIG_CMD_CREATE,
                    std::ptr::null::<libc::c_char>(),
                    std::ptr::null::<libc::c_void>(),
                    0,
                )
            };
            check(ret as libc::c_int).map_err(|e| self.annotate(e))?;
            // SAFETY: plain syscall.
            let mnt = check_fd(unsafe {
                libc::syscall(
                    libc::SYS_fsmount,
                    self.0.as_raw_fd(),
                    FSMOUNT_CLOEXEC,
                    attr_flags,
                )
            })?;
            let t = cpath(target)?;
            let empty = cstr(b"")?;
            // SAFETY: valid C strings.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    mnt.as_raw_fd(),
                    empty.as_ptr(),
                    libc::AT_FDCWD,
                    t.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                )
            };
            check(ret as libc::c_int)
        }

        /// Appends the kernel's own message (read from the context) to an error.
        fn annotate(&self, e: io::Error) -> io::Error {
            let mut buf = [0u8; 512];
            // SAFETY: reading into a valid buffer.
            let n = unsafe {
                libc::read(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            };
            if n > 0 {
                let msg = String::from_utf8_lossy(&buf[..n as usize])
                    .trim()
                    .to_string();
                io::Error::new(e.kind(), format!("{e} ({msg})"))
            } else {
                e
            }
        }
    }
}

/// Major/minor device numbers packed as the kernel does.
pub fn makedev(major: u32, minor: u32) -> u64 {
    libc::makedev(major, minor)
}

pub fn major(dev: u64) -> u32 {
    libc::major(dev)
}

pub fn minor(dev: u64) -> u32 {
    libc::minor(dev)
}

/// `S_IFMT` bits of a mode.
pub fn file_type(mode: u32) -> u32 {
    mode & libc::S_IFMT
}

/// True if the stat describes a directory.
pub fn is_dir(st: &libc::stat) -> bool {
    file_type(st.st_mode) == libc::S_IFDIR
}

/// Reads a C string out of a fixed buffer.
pub fn c_bytes(buf: &[u8]) -> &[u8] {
    match CStr::from_bytes_until_nul(buf) {
        Ok(c) => c.to_bytes(),
        Err(_) => buf,
    }
}
