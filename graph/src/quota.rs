//! Per-directory size limits with XFS project quotas (what `overlay2.size` uses).
//!
//! A directory gets its own project id (inherited by everything created inside it) and a hard
//! block limit for that project. Works on XFS mounted with `pquota`/`prjquota`.

use crate::sys;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Errors setting up or applying quotas.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error(
        "{path} is on {fs}, which has no project quota support here (use xfs mounted with pquota)"
    )]
    Unsupported { path: String, fs: String },
    #[error("project quota on {path}: {source}")]
    Io { path: String, source: io::Error },
}

#[repr(C)]
#[derive(Default)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

#[repr(C)]
#[derive(Default)]
struct FsDiskQuota {
    version: i8,
    flags: i8,
    fieldmask: u16,
    id: u32,
    blk_hardlimit: u64,
    blk_softlimit: u64,
    ino_hardlimit: u64,
    ino_softlimit: u64,
    bcount: u64,
    icount: u64,
    itimer: i32,
    btimer: i32,
    iwarns: u16,
    bwarns: u16,
    itimer_hi: i8,
    btimer_hi: i8,
    rtbtimer_hi: i8,
    padding2: i8,
    rtb_hardlimit: u64,
    rtb_softlimit: u64,
    rtbcount: u64,
    rtbtimer: i32,
    rtbwarns: u16,
    padding3: i16,
    padding4: [u8; 8],
}

const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c581f;
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c5820;
const FS_XFLAG_PROJINHERIT: u32 = 0x200;
const Q_XSETQLIM: u32 = (b'X' as u32) << 8 | 4;
const PRJQUOTA: u32 = 2;
const FS_DQUOT_VERSION: i8 = 1;
const FS_PROJ_QUOTA: i8 = 2;
const FS_DQ_BSOFT: u16 = 1 << 2;
const FS_DQ_BHARD: u16 = 1 << 3;

fn qcmd(cmd: u32, typ: u32) -> libc::c_int {
    ((cmd << 8) | (typ & 0xff)) as libc::c_int
}

/// Project quotas under one base directory.
pub struct ProjectQuota {
    base: PathBuf,
    /// A block device node for the filesystem, as `quotactl` wants one.
    device: PathBuf,
    next_id: Mutex<u32>,
}

fn get_projid(path: &Path) -> io::Result<(u32, FsXattr)> {
    let f = std::fs::File::open(path)?;
    let mut x = FsXattr::default();
    // SAFETY: ioctl filling a properly sized struct.
    if unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FSGETXATTR as _, &mut x) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((x.projid, x))
}

fn set_projid(path: &Path, id: u32) -> io::Result<()> {
    let f = std::fs::File::open(path)?;
    let (_, mut x) = get_projid(path)?;
    x.projid = id;
    x.xflags |= FS_XFLAG_PROJINHERIT;
    // SAFETY: ioctl reading a properly sized struct.
    if unsafe { libc::ioctl(f.as_fd().as_raw_fd(), FS_IOC_FSSETXATTR as _, &x) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl ProjectQuota {
    /// Sets up quotas under `base` (the driver's home), checking that they work.
    pub fn new(base: &Path) -> Result<Self, QuotaError> {
        let err = |source| QuotaError::Io {
            path: base.display().to_string(),
            source,
        };
        let magic = sys::statfs_type(base).map_err(err)?;
        let unsupported = || QuotaError::Unsupported {
            path: base.display().to_string(),
            fs: sys::fs_name(magic).to_string(),
        };
        if magic != 0x58465342 {
            return Err(unsupported());
        }
        let st = sys::lstat(base).map_err(err)?;
        let device = base.join("backingFsBlockDev");
        let _ = std::fs::remove_file(&device);
        let dirfd = sys::open(base, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(err)?;
        sys::mknodat(
            dirfd.as_fd(),
            b"backingFsBlockDev",
            libc::S_IFBLK | 0o600,
            st.st_dev,
        )
        .map_err(err)?;
        let (base_id, _) = get_projid(base).map_err(err)?;
        let q = ProjectQuota {
            base: base.to_path_buf(),
            device,
            next_id: Mutex::new(base_id + 1),
        };
        // Probe: setting a limit of zero (none) fails where quotas are off.
        q.set_limit(base_id + 1, 0).map_err(|_| unsupported())?;
        Ok(q)
    }

    /// Whether project quotas work under `base` (sets up the device node as a side effect).
    pub fn probe(base: &Path) -> bool {
        sys::statfs_type(base)
            .map(|m| m == 0x58465342)
            .unwrap_or(false)
            && ProjectQuota::new(base).is_ok()
    }

    /// Notes the project id of an existing directory so that it is not handed out again.
    pub fn reserve_existing(&self, dir: &Path) {
        if let Ok((id, _)) = get_projid(dir) {
            let mut next = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
            if id >= *next {
                *next = id + 1;
            }
        }
    }

    fn set_limit(&self, id: u32, bytes: u64) -> io::Result<()> {
        let blocks = bytes.div_ceil(512);
        let d = FsDiskQuota {
            version: FS_DQUOT_VERSION,
            flags: FS_PROJ_QUOTA,
            fieldmask: FS_DQ_BSOFT | FS_DQ_BHARD,
            id,
            blk_hardlimit: blocks,
            blk_softlimit: blocks,
            ..Default::default()
        };
        let dev = sys::cpath(&self.device)?;
        // SAFETY: quotactl with a properly sized fs_disk_quota.
        let r = unsafe {
            libc::quotactl(
                qcmd(Q_XSETQLIM, PRJQUOTA),
                dev.as_ptr(),
                id as libc::c_int,
                &d as *const FsDiskQuota as *mut libc::c_char,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Limits `dir` (below the base) and everything created in it to `bytes`.
    pub fn set_quota(&self, dir: &Path, bytes: u64) -> Result<(), QuotaError> {
        let err = |source| QuotaError::Io {
            path: dir.display().to_string(),
            source,
        };
        let (cur, _) = get_projid(dir).map_err(err)?;
        let (base_id, _) = get_projid(&self.base).map_err(err)?;
        let id = if cur != 0 && cur != base_id {
            cur
        } else {
            let mut next = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
            let id = *next;
            *next += 1;
            set_projid(dir, id).map_err(err)?;
            id
        };
        self.set_limit(id, bytes).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn struct_sizes_match_the_kernel() {
        assert_eq!(std::mem::size_of::<super::FsXattr>(), 28);
        assert_eq!(std::mem::size_of::<super::FsDiskQuota>(), 112);
    }
}
