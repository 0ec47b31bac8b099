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

const WAIT_SYNC: u64 = ioc(W, 22, 8);
const START_SYNC: u64 = ioc(R, 24, 8);
const TREE_SEARCH: u64 = ioc(W | R, 17, 4096);
const INO_PATHS: u64 = ioc(W | R, 35, std::mem::size_of::<InoPathArgs>());

const GET_SUBVOL_INFO: u64 = ioc(R, 60, std::mem::size_of::<SubvolInfoArgs>());

/// `struct btrfs_ioctl_timespec`.
#[repr(C)]
struct Timespec {
    sec: u64,
    nsec: u32,
}

/// `struct btrfs_ioctl_get_subvol_info_args`.
#[repr(C)]
struct SubvolInfoArgs {
    treeid: u64,
    name: [u8; 256],
    parent_id: u64,
    dirid: u64,
    generation: u64,
    flags: u64,
    uuid: [u8; 16],
    parent_uuid: [u8; 16],
    received_uuid: [u8; 16],
    ctransid: u64,
    otransid: u64,
    stransid: u64,
    rtransid: u64,
    ctime: Timespec,
    otime: Timespec,
    stime: Timespec,
    rtime: Timespec,
    reserved: [u64; 8],
}

/// `struct btrfs_ioctl_search_key`.
#[repr(C)]
struct SearchKey {
    tree_id: u64,
    min_objectid: u64,
    max_objectid: u64,
    min_offset: u64,
    max_offset: u64,
    min_transid: u64,
    max_transid: u64,
    min_type: u32,
    max_type: u32,
    nr_items: u32,
    unused: u32,
    unused1: u64,
    unused2: u64,
    unused3: u64,
    unused4: u64,
}

/// `struct btrfs_ioctl_search_args`.
#[repr(C)]
struct SearchArgs {
    key: SearchKey,
    buf: [u8; 4096 - std::mem::size_of::<SearchKey>()],
}

/// `struct btrfs_ioctl_ino_path_args`.
#[repr(C)]
struct InoPathArgs {
    inum: u64,
    size: u64,
    reserved: [u64; 4],
    fspath: u64,
}

/// `BTRFS_INODE_ITEM_KEY`.
const INODE_ITEM_KEY: u32 = 1;

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

/// The transaction that created the subvolume holding `fd` (its `otransid`). A snapshot is
/// made while that transaction commits and its ioctl returns once it is committed, so every
/// later write into the snapshot belongs to a later transaction. Kernel 4.18 or later.
pub fn created_transid(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut a = zeroed::<SubvolInfoArgs>();
    call(fd, GET_SUBVOL_INFO, &mut *a)?;
    Ok(a.otransid)
}

/// Starts committing the running transaction of the filesystem of `fd`; returns its ID.
pub fn start_sync(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut t: u64 = 0;
    call(fd, START_SYNC, &mut t)?;
    Ok(t)
}

/// Waits until transaction `transid` is committed.
pub fn wait_sync(fd: BorrowedFd<'_>, transid: u64) -> io::Result<()> {
    let mut t = transid;
    call(fd, WAIT_SYNC, &mut t)
}

/// An inode of a subvolume that changed after a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangedInode {
    pub ino: u64,
    /// The transaction that last changed it.
    pub transid: u64,
    pub mode: u32,
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

/// The inodes of subvolume `tree_id` (searched through `fd`, any directory of the
/// filesystem) changed in a transaction after `after`, as `btrfs subvolume find-new` finds
/// them: the kernel only returns tree leaves written after `after`, so unchanged parts of a
/// snapshot are never read.
pub fn changed_inodes(
    fd: BorrowedFd<'_>,
    tree_id: u64,
    after: u64,
) -> io::Result<Vec<ChangedInode>> {
    let mut out = Vec::new();
    // The search range is a range of (objectid, type, offset) keys: items of other types
    // between two inode items come back too, and the next search starts after the last key.
    let mut min_objectid = FIRST_FREE_OBJECTID;
    let mut min_type = INODE_ITEM_KEY;
    let mut min_offset = 0u64;
    loop {
        let mut a = zeroed::<SearchArgs>();
        a.key = SearchKey {
            tree_id,
            min_objectid,
            max_objectid: u64::MAX,
            min_offset,
            max_offset: u64::MAX,
            min_transid: after + 1,
            max_transid: u64::MAX,
            min_type,
            max_type: INODE_ITEM_KEY,
            nr_items: 4096,
            unused: 0,
            unused1: 0,
            unused2: 0,
            unused3: 0,
            unused4: 0,
        };
        call(fd, TREE_SEARCH, &mut *a)?;
        let n = a.key.nr_items;
        if n == 0 {
            break;
        }
        let mut pos = 0usize;
        let mut last = (0u64, 0u32, 0u64);
        for _ in 0..n {
            if pos + 32 > a.buf.len() {
                break;
            }
            let h = &a.buf[pos..pos + 32];
            let objectid = u64_at(h, 8);
            let offset = u64_at(h, 16);
            let typ = u32_at(h, 24);
            let len = u32_at(h, 28) as usize;
            let item = &a.buf[pos + 32..(pos + 32 + len).min(a.buf.len())];
            // An inode item: generation @0, transid @8, ..., mode @52.
            if typ == INODE_ITEM_KEY && item.len() >= 56 {
                let transid = u64_at(item, 8);
                if transid > after {
                    out.push(ChangedInode {
                        ino: objectid,
                        transid,
                        mode: u32_at(item, 52),
                    });
                }
            }
            last = (objectid, typ, offset);
            pos += 32 + len;
        }
        // Continue after the last key returned.
        let (objectid, typ, offset) = last;
        if offset < u64::MAX {
            (min_objectid, min_type, min_offset) = (objectid, typ, offset + 1);
        } else if typ < u32::from(u8::MAX) {
            (min_objectid, min_type, min_offset) = (objectid, typ + 1, 0);
        } else if objectid < u64::MAX {
            (min_objectid, min_type, min_offset) = (objectid + 1, 0, 0);
        } else {
            break;
        }
    }
    Ok(out)
}

/// The paths (relative to the subvolume's root) of inode `ino` of the subvolume holding
/// `fd`: one per hard link.
pub fn ino_paths(fd: BorrowedFd<'_>, ino: u64) -> io::Result<Vec<Vec<u8>>> {
    let mut size = 4096usize;
    loop {
        let mut container = vec![0u8; size];
        let mut a = InoPathArgs {
            inum: ino,
            size: size as u64,
            reserved: [0; 4],
            fspath: container.as_mut_ptr() as u64,
        };
        call(fd, INO_PATHS, &mut a)?;
        // struct btrfs_data_container: bytes_left, bytes_missing, elem_cnt, elem_missed
        // (u32 each), then elem_cnt u64 offsets (from the offsets' start) of C strings.
        let missing = u32_at(&container, 4);
        let count = u32_at(&container, 8) as usize;
        if missing > 0 && size < 16 << 20 {
            size *= 4;
            continue;
        }
        let base = 16usize;
        let mut out = Vec::new();
        for i in 0..count {
            let off = u64_at(&container, base + i * 8) as usize + base;
            if off >= container.len() {
                continue;
            }
            let end = container[off..]
                .iter()
                .position(|b| *b == 0)
                .map(|e| off + e)
                .unwrap_or(container.len());
            out.push(container[off..end].to_vec());
        }
        return Ok(out);
    }
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
        assert_eq!(std::mem::size_of::<SearchKey>(), 104);
        assert_eq!(std::mem::size_of::<SubvolInfoArgs>(), 504);
        assert_eq!(GET_SUBVOL_INFO, 0x81F8_943C);
        assert_eq!(std::mem::size_of::<SearchArgs>(), 4096);
        assert_eq!(TREE_SEARCH, 0xD000_9411);
        assert_eq!(INO_PATHS, 0xC038_9423);
        assert_eq!(START_SYNC, 0x8008_9418);
        assert_eq!(WAIT_SYNC, 0x4008_9416);
        let mut b = [0u8; 8];
        assert!(name_into(&mut b, "a/b").is_err());
        assert!(name_into(&mut b, "").is_err());
        assert!(name_into(&mut b, "12345678").is_err());
        name_into(&mut b, "abc").expect("fits");
        assert_eq!(&b[..4], b"abc\0");
    }
}
