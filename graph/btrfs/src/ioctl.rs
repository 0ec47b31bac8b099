//! The btrfs ioctls the driver uses, as thin typed wrappers (magic 0x94): subvolume create,
//! snapshot (read-only or writable), destroy, the read-only flag, the subvolume ID of an
//! open directory, quota enabling, qgroup creation and limits. Raw `libc::ioctl` on argument
//! structs laid out as `linux/btrfs.h` lays them out; no C library.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

const MAGIC: u64 = 0x94;
const NAME_MAX_V1: usize = 4087; // 4088 with the NUL
const NAME_MAX_V2: usize = 4039; // 4040 with the NUL

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (MAGIC << 8) | nr
}
const W: u64 = 1;
const R: u64 = 2;

/// `struct btrfs_ioctl_vol_args`.
#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; NAME_MAX_V1 + 1],
}

/// `struct btrfs_ioctl_vol_args_v2`.
#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; NAME_MAX_V2 + 1],
}

/// `struct btrfs_ioctl_ino_lookup_args`.
#[repr(C)]
struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [u8; 4080],
}

/// `struct btrfs_ioctl_quota_ctl_args`.
#[repr(C)]
struct QuotaCtlArgs {
    cmd: u64,
    status: u64,
}

/// `struct btrfs_ioctl_qgroup_create_args`.
#[repr(C)]
struct QgroupCreateArgs {
    create: u64,
    qgroupid: u64,
}

/// `struct btrfs_ioctl_qgroup_limit_args`.
#[repr(C)]
struct QgroupLimitArgs {
    qgroupid: u64,
    flags: u64,
    max_rfer: u64,
    max_excl: u64,
    rsv_rfer: u64,
    rsv_excl: u64,
}

const SUBVOL_CREATE: u64 = ioc(W, 14, std::mem::size_of::<VolArgs>());
const SNAP_DESTROY: u64 = ioc(W, 15, std::mem::size_of::<VolArgs>());
const INO_LOOKUP: u64 = ioc(W | R, 18, std::mem::size_of::<InoLookupArgs>());
const SNAP_CREATE_V2: u64 = ioc(W, 23, std::mem::size_of::<VolArgsV2>());
const SUBVOL_GETFLAGS: u64 = ioc(R, 25, 8);
const SUBVOL_SETFLAGS: u64 = ioc(W, 26, 8);
const QUOTA_CTL: u64 = ioc(W | R, 40, std::mem::size_of::<QuotaCtlArgs>());
const QGROUP_CREATE: u64 = ioc(W, 42, std::mem::size_of::<QgroupCreateArgs>());
// The kernel declares this one _IOR although it reads the argument.
const QGROUP_LIMIT: u64 = ioc(R, 43, std::mem::size_of::<QgroupLimitArgs>());

/// `BTRFS_SUBVOL_RDONLY`.
const SUBVOL_RDONLY: u64 = 1 << 1;
/// `BTRFS_FIRST_FREE_OBJECTID`: the inode number of every subvolume's root directory.
pub const FIRST_FREE_OBJECTID: u64 = 256;
/// `BTRFS_SUPER_MAGIC`, as `statfs` reports it.
pub const SUPER_MAGIC: i64 = 0x9123_683E;
/// `BTRFS_QGROUP_LIMIT_MAX_RFER`.
const LIMIT_MAX_RFER: u64 = 1;

fn name_into(buf: &mut [u8], name: &str) -> io::Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= buf.len() || b.contains(&0) || b.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid subvolume name {name:?}"),
        ));
    }
    buf[..b.len()].copy_from_slice(b);
    buf[b.len()] = 0;
    Ok(())
}

fn call<T>(fd: BorrowedFd<'_>, req: u64, arg: *mut T) -> io::Result<()> {
    loop {
        // SAFETY: `arg` points to a live, properly laid out argument struct of the size the
        // request number encodes.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

fn zeroed<T>() -> Box<T> {
    // SAFETY: every argument struct here is plain integers and byte arrays, for which all
    // zeroes is a valid value.
    unsafe { Box::new(std::mem::zeroed()) }
}

/// Creates subvolume `name` in the directory `dir`.
pub fn subvol_create(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let mut a = zeroed::<VolArgs>();
    name_into(&mut a.name, name)?;
    call(dir, SUBVOL_CREATE, &mut *a)
}

/// Snapshots the subvolume open at `src` as `name` in `dir`, read-only or writable.
pub fn snapshot(
    src: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    name: &str,
    readonly: bool,
) -> io::Result<()> {
    let mut a = zeroed::<VolArgsV2>();
    a.fd = src.as_raw_fd() as i64;
    if readonly {
        a.flags = SUBVOL_RDONLY;
    }
    name_into(&mut a.name, name)?;
    call(dir, SNAP_CREATE_V2, &mut *a)
}

/// Deletes subvolume `name` of `dir` (it must hold no other subvolume).
pub fn subvol_destroy(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let mut a = zeroed::<VolArgs>();
    name_into(&mut a.name, name)?;
    call(dir, SNAP_DESTROY, &mut *a)
}

/// Whether the subvolume open at `fd` is read-only.
pub fn is_readonly(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut flags: u64 = 0;
    call(fd, SUBVOL_GETFLAGS, &mut flags)?;
    Ok(flags & SUBVOL_RDONLY != 0)
}

/// Makes the subvolume open at `fd` read-only or writable.
pub fn set_readonly(fd: BorrowedFd<'_>, readonly: bool) -> io::Result<()> {
    let mut flags: u64 = 0;
    call(fd, SUBVOL_GETFLAGS, &mut flags)?;
    let mut new = if readonly {
        flags | SUBVOL_RDONLY
    } else {
        flags & !SUBVOL_RDONLY
    };
    if new == flags {
        return Ok(());
    }
    call(fd, SUBVOL_SETFLAGS, &mut new)
}

/// The ID of the subvolume holding the directory open at `fd`.
pub fn subvol_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut a = zeroed::<InoLookupArgs>();
    a.objectid = FIRST_FREE_OBJECTID;
    call(fd, INO_LOOKUP, &mut *a)?;
    Ok(a.treeid)
}

/// Turns quotas on for the filesystem of `fd` (`BTRFS_QUOTA_CTL_ENABLE`); already on is fine.
pub fn quota_enable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut a = QuotaCtlArgs { cmd: 1, status: 0 };
    call(fd, QUOTA_CTL, &mut a)
}

/// Creates (`create`) or removes the level-0 qgroup of subvolume `id`.
pub fn qgroup_create(fd: BorrowedFd<'_>, id: u64, create: bool) -> io::Result<()> {
    let mut a = QgroupCreateArgs {
        create: create as u64,
        qgroupid: id,
    };
    call(fd, QGROUP_CREATE, &mut a)
}

/// Limits the referenced bytes of the qgroup of subvolume `id` (0: no limit).
pub fn qgroup_limit(fd: BorrowedFd<'_>, id: u64, bytes: u64) -> io::Result<()> {
    let mut a = QgroupLimitArgs {
        qgroupid: id,
        flags: LIMIT_MAX_RFER,
        max_rfer: if bytes == 0 { u64::MAX } else { bytes },
        max_excl: 0,
        rsv_rfer: 0,
        rsv_excl: 0,
    };
    call(fd, QGROUP_LIMIT, &mut a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<VolArgs>(), 4096);
        assert_eq!(std::mem::size_of::<VolArgsV2>(), 4096);
        assert_eq!(std::mem::size_of::<InoLookupArgs>(), 4096);
        assert_eq!(std::mem::size_of::<QgroupLimitArgs>(), 48);
        // Request numbers as linux/btrfs.h computes them.
        assert_eq!(SUBVOL_CREATE, 0x5000_940E);
        assert_eq!(SNAP_DESTROY, 0x5000_940F);
        assert_eq!(SNAP_CREATE_V2, 0x5000_9417);
        assert_eq!(SUBVOL_GETFLAGS, 0x8008_9419);
        assert_eq!(SUBVOL_SETFLAGS, 0x4008_941A);
        assert_eq!(INO_LOOKUP, 0xD000_9412);
        assert_eq!(QUOTA_CTL, 0xC010_9428);
        assert_eq!(QGROUP_CREATE, 0x4010_942A);
        assert_eq!(QGROUP_LIMIT, 0x8030_942B);
        let mut b = [0u8; 8];
        assert!(name_into(&mut b, "a/b").is_err());
        assert!(name_into(&mut b, "").is_err());
        assert!(name_into(&mut b, "12345678").is_err());
        name_into(&mut b, "abc").expect("fits");
        assert_eq!(&b[..4], b"abc\0");
    }
}
