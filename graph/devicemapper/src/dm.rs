//! Device-mapper calls the driver makes, typed: the thin pool's messages and status, thin
//! device activation, suspend/resume, resize, removal (deferred or not), discard. Through the
//! Stratis `devicemapper` crate's ioctls; no libdevmapper.

use devicemapper::{DevId, DmError, DmFlags, DmName, DmOptions, DM};
use std::io;
use std::path::{Path, PathBuf};

/// 512-byte sectors.
pub use devicemapper::Sectors;

/// Errors of device-mapper calls.
#[derive(Debug, thiserror::Error)]
pub enum DmCallError {
    #[error("device-mapper is not available ({0}); the kernel needs dm-thin-pool")]
    Unavailable(String),
    #[error("{op}: {message}")]
    Call {
        op: String,
        message: String,
        errno: Option<i32>,
    },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl DmCallError {
    /// The kernel's errno, when the call reached the kernel.
    pub fn errno(&self) -> Option<i32> {
        match self {
            DmCallError::Call { errno, .. } => *errno,
            DmCallError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

pub type DmCallResult<T> = Result<T, DmCallError>;

fn call_err(op: impl Into<String>) -> impl FnOnce(DmError) -> DmCallError {
    let op = op.into();
    move |e| {
        let errno = match &e {
            DmError::Core(devicemapper::errors::Error::Ioctl(_, _, _, n)) => Some(**n as i32),
            _ => None,
        };
        let message = match errno {
            Some(n) => io::Error::from_raw_os_error(n).to_string(),
            None => e.to_string(),
        };
        DmCallError::Call { op, message, errno }
    }
}

fn name(n: &str) -> DmCallResult<&DmName> {
    DmName::new(n).map_err(|e| DmCallError::Invalid(format!("device name {n:?}: {e}")))
}

/// The control device, opened once.
pub struct Control {
    dm: DM,
    /// `dm.libdm_log_level`: which calls are logged, see [`log_level_for`].
    log_level: u8,
}

/// What a call to device-mapper is, for its log line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CallKind {
    /// Creates, loads, suspends, resumes, removes or messages a device.
    Change,
    /// Reads a table, a status or device info.
    Query,
}

/// The `tracing` level a call's outcome is logged at under `dm.libdm_log_level=configured`,
/// read as libdm's syslog levels (3 errors, 4 warnings, 6 info, 7 debug): a failed call is a
/// warning, a change made is info, a query is debug; `None` when the configured level leaves
/// it out. The default, 3, logs none of them (the caller reports what failed).
pub fn log_level_for(kind: CallKind, failed: bool, configured: u8) -> Option<tracing::Level> {
    let (needs, level) = match (failed, kind) {
        (true, _) => (4, tracing::Level::WARN),
        (false, CallKind::Change) => (6, tracing::Level::INFO),
        (false, CallKind::Query) => (7, tracing::Level::DEBUG),
    };
    (configured >= needs).then_some(level)
}

/// The state of a thin pool, from its status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub transaction_id: u64,
    pub metadata_used: u64,
    pub metadata_total: u64,
    pub data_used: u64,
    pub data_total: u64,
    /// `out_of_data_space`.
    pub out_of_space: bool,
    pub read_only: bool,
}

/// Parses a thin-pool status line: `<transaction id> <used meta>/<total meta> <used
/// data>/<total data> <held root> rw|ro|out_of_data_space ...`.
pub fn parse_pool_status(s: &str) -> Option<PoolStatus> {
    let mut f = s.split_whitespace();
    let transaction_id = f.next()?.parse().ok()?;
    let (mu, mt) = f.next()?.split_once('/')?;
    let (du, dt) = f.next()?.split_once('/')?;
    let _held = f.next();
    let mode = f.next().unwrap_or("rw");
    Some(PoolStatus {
        transaction_id,
        metadata_used: mu.parse().ok()?,
        metadata_total: mt.parse().ok()?,
        data_used: du.parse().ok()?,
        data_total: dt.parse().ok()?,
        out_of_space: mode == "out_of_data_space",
        read_only: mode == "ro",
    })
}

impl Control {
    /// Opens `/dev/mapper/control`; `log_level` is `dm.libdm_log_level`.
    pub fn open(log_level: u8) -> DmCallResult<Self> {
        if !Path::new("/dev/mapper/control").exists() {
            return Err(DmCallError::Unavailable(
                "/dev/mapper/control does not exist".into(),
            ));
        }
        DM::new()
            .map(|dm| Control { dm, log_level })
            .map_err(|e| DmCallError::Unavailable(e.to_string()))
    }

    /// Logs `r`, the outcome of call `op`, as [`log_level_for`] says, and returns it.
    fn logged<T>(&self, kind: CallKind, op: &str, r: DmCallResult<T>) -> DmCallResult<T> {
        let failed = r.as_ref().err();
        match log_level_for(kind, failed.is_some(), self.log_level) {
            Some(tracing::Level::WARN) => {
                tracing::warn!(
                    "device-mapper: {op}: {}",
                    failed.map(|e| e.to_string()).unwrap_or_default()
                )
            }
            Some(tracing::Level::INFO) => tracing::info!("device-mapper: {op}"),
            Some(_) => tracing::debug!("device-mapper: {op}"),
            None => {}
        }
        r
    }

    /// The driver version of device-mapper, `major.minor.patch`.
    pub fn version(&self) -> String {
        self.dm
            .version()
            .map(|(a, b, c)| format!("{a}.{b}.{c}"))
            .unwrap_or_else(|_| "unknown".into())
    }

    /// Whether a device of that name exists.
    pub fn exists(&self, n: &str) -> bool {
        DmName::new(n)
            .ok()
            .and_then(|nm| self.dm.device_info(&DevId::Name(nm)).ok())
            .is_some()
    }

    /// Device names starting with `prefix`.
    pub fn list(&self, prefix: &str) -> DmCallResult<Vec<String>> {
        Ok(self
            .dm
            .list_devices()
            .map_err(call_err("listing devices"))?
            .into_iter()
            .map(|(n, _, _)| n.to_string())
            .filter(|n| n.starts_with(prefix))
            .collect())
    }

    /// The number of openers of a device (mounts, open file descriptors).
    pub fn open_count(&self, n: &str) -> DmCallResult<i32> {
        let info = self
            .dm
            .device_info(&DevId::Name(name(n)?))
            .map_err(call_err(format!("info of {n}")))?;
        Ok(info.open_count())
    }

    /// The first target line of a device's table (`type`, `params`, length).
    pub fn table(&self, n: &str) -> DmCallResult<(String, String, Sectors)> {
        let op = format!("table of {n}");
        let r = (|| {
            let (_, lines) = self
                .dm
                .table_status(
                    &DevId::Name(name(n)?),
                    DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE),
                )
                .map_err(call_err(format!("table of {n}")))?;
            lines
                .into_iter()
                .next()
                .map(|(_, len, t, p)| (t, p, Sectors(len)))
                .ok_or_else(|| DmCallError::Invalid(format!("{n} has no table")))
        })();
        self.logged(CallKind::Query, &op, r)
    }

    /// The status line of a device's first target.
    pub fn status(&self, n: &str) -> DmCallResult<String> {
        let op = format!("status of {n}");
        let r = (|| {
            let (_, lines) = self
                .dm
                .table_status(&DevId::Name(name(n)?), DmOptions::default())
                .map_err(call_err(format!("status of {n}")))?;
            Ok(lines.into_iter().next().map(|l| l.3).unwrap_or_default())
        })();
        self.logged(CallKind::Query, &op, r)
    }

    /// Creates device `n` with one target and activates it.
    pub fn create(&self, n: &str, len: Sectors, target: &str, params: &str) -> DmCallResult<()> {
        let op = format!("create {n}: {target} {params} ({} sectors)", *len);
        let r = (|| {
            let id = DevId::Name(name(n)?);
            self.dm
                .device_create(name(n)?, None, DmOptions::default())
                .map_err(call_err(format!("creating {n}")))?;
            let load = self
                .dm
                .table_load(
                    &id,
                    &[(0, *len, target.to_string(), params.to_string())],
                    DmOptions::default(),
                )
                .map_err(call_err(format!(
                    "loading the table of {n} ({target} {params})"
                )));
            if let Err(e) = load {
                let _ = self.dm.device_remove(&id, DmOptions::default());
                return Err(e);
            }
            if let Err(e) = self
                .dm
                .device_suspend(&id, DmOptions::default())
                .map_err(call_err(format!("activating {n}")))
            {
                let _ = self.dm.device_remove(&id, DmOptions::default());
                return Err(e);
            }
            Ok(())
        })();
        self.logged(CallKind::Change, &op, r)
    }

    /// Replaces the table of an active device (suspends it meanwhile), e.g. to grow it.
    pub fn reload(&self, n: &str, len: Sectors, target: &str, params: &str) -> DmCallResult<()> {
        let op = format!("reload {n}: {target} {params} ({} sectors)", *len);
        let r = (|| {
            let id = DevId::Name(name(n)?);
            self.dm
                .table_load(
                    &id,
                    &[(0, *len, target.to_string(), params.to_string())],
                    DmOptions::default(),
                )
                .map_err(call_err(format!("loading a new table into {n}")))?;
            self.suspend(n)?;
            self.resume(n)
        })();
        self.logged(CallKind::Change, &op, r)
    }

    pub fn suspend(&self, n: &str) -> DmCallResult<()> {
        let op = format!("suspend {n}");
        let r = (|| {
            self.dm
                .device_suspend(
                    &DevId::Name(name(n)?),
                    DmOptions::default().set_flags(DmFlags::DM_SUSPEND),
                )
                .map(|_| ())
                .map_err(call_err(format!("suspending {n}")))
        })();
        self.logged(CallKind::Change, &op, r)
    }

    pub fn resume(&self, n: &str) -> DmCallResult<()> {
        let op = format!("resume {n}");
        let r = (|| {
            self.dm
                .device_suspend(&DevId::Name(name(n)?), DmOptions::default())
                .map(|_| ())
                .map_err(call_err(format!("resuming {n}")))
        })();
        self.logged(CallKind::Change, &op, r)
    }

    /// Removes device `n`. With `deferred`, a device still open is removed by the kernel
    /// once its last opener closes it (and the call succeeds).
    pub fn remove(&self, n: &str, deferred: bool) -> DmCallResult<()> {
        let op = format!("remove {n} (deferred: {deferred})");
        let r = (|| {
            let flags = if deferred {
                DmFlags::DM_DEFERRED_REMOVE
            } else {
                DmFlags::empty()
            };
            self.dm
                .device_remove(
                    &DevId::Name(name(n)?),
                    DmOptions::default().set_flags(flags),
                )
                .map(|_| ())
                .map_err(call_err(format!("removing {n}")))
        })();
        self.logged(CallKind::Change, &op, r)
    }

    /// Sends a message to sector 0 of device `n` (a thin pool's commands).
    pub fn message(&self, n: &str, msg: &str) -> DmCallResult<()> {
        let op = format!("message {msg:?} to {n}");
        let r = (|| {
            self.dm
                .target_msg(&DevId::Name(name(n)?), None, msg)
                .map(|_| ())
                .map_err(call_err(format!("pool message {msg:?} to {n}")))
        })();
        self.logged(CallKind::Change, &op, r)
    }

    /// `major:minor` of device `n`.
    pub fn devno(&self, n: &str) -> DmCallResult<(u32, u32)> {
        let info = self
            .dm
            .device_info(&DevId::Name(name(n)?))
            .map_err(call_err(format!("info of {n}")))?;
        let d = info.device();
        Ok((d.major, d.minor))
    }

    /// A block device node for device `n`: `/dev/mapper/<n>` when udev made it, else
    /// devtmpfs' `/dev/dm-<minor>`, else one made here.
    pub fn node(&self, n: &str) -> DmCallResult<PathBuf> {
        let (maj, min) = self.devno(n)?;
        let want = libc::makedev(maj, min);
        let is_it = |p: &Path| {
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            std::fs::metadata(p)
                .map(|m| m.file_type().is_block_device() && m.rdev() == want)
                .unwrap_or(false)
        };
        for p in [
            PathBuf::from("/dev/mapper").join(n),
            PathBuf::from(format!("/dev/dm-{min}")),
        ] {
            if is_it(&p) {
                return Ok(p);
            }
        }
        let p = PathBuf::from("/dev/mapper").join(n);
        let _ = std::fs::remove_file(&p);
        let c = strata_graph::sys::cpath(&p).map_err(|e| DmCallError::Io {
            op: format!("node of {n}"),
            source: e,
        })?;
        // SAFETY: a valid C string.
        if unsafe { libc::mknod(c.as_ptr(), libc::S_IFBLK | 0o600, want) } != 0 {
            return Err(DmCallError::Io {
                op: format!("making the device node {}", p.display()),
                source: io::Error::last_os_error(),
            });
        }
        Ok(p)
    }
}

/// `BLKDISCARD` over the whole device at `node`.
pub fn discard(node: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    const BLKDISCARD: libc::c_ulong = 0x1277;
    let f = std::fs::OpenOptions::new().write(true).open(node)?;
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes a u64.
    if unsafe { libc::ioctl(f.as_raw_fd(), BLKGETSIZE64 as _, &mut size) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let range: [u64; 2] = [0, size];
    // SAFETY: BLKDISCARD reads two u64s.
    if unsafe { libc::ioctl(f.as_raw_fd(), BLKDISCARD as _, &range) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Size in bytes of the block device or file at `p`.
pub fn size_of(p: &Path) -> io::Result<u64> {
    use std::io::Seek;
    let mut f = std::fs::File::open(p)?;
    f.seek(io::SeekFrom::End(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_status_lines_parse() {
        let s = parse_pool_status(
            "7 120/32768 40/32768 - rw discard_passdown queue_if_no_space - 1024",
        )
        .expect("parses");
        assert_eq!(
            s,
            PoolStatus {
                transaction_id: 7,
                metadata_used: 120,
                metadata_total: 32768,
                data_used: 40,
                data_total: 32768,
                out_of_space: false,
                read_only: false
            }
        );
        assert!(
            parse_pool_status(
                "3 1/2 2/2 - out_of_data_space discard_passdown error_if_no_space - 1"
            )
            .expect("parses")
            .out_of_space
        );
        assert!(parse_pool_status("Fail").is_none());
    }

    #[test]
    fn libdm_log_level_picks_what_is_logged() {
        use tracing::Level;
        // The default, 3: nothing (callers report failures themselves).
        assert_eq!(log_level_for(CallKind::Change, true, 3), None);
        assert_eq!(log_level_for(CallKind::Change, false, 3), None);
        // 4 and 5: failed calls only.
        assert_eq!(log_level_for(CallKind::Query, true, 4), Some(Level::WARN));
        assert_eq!(log_level_for(CallKind::Change, false, 5), None);
        // 6: changes made too; 7: queries as well.
        assert_eq!(log_level_for(CallKind::Change, false, 6), Some(Level::INFO));
        assert_eq!(log_level_for(CallKind::Query, false, 6), None);
        assert_eq!(log_level_for(CallKind::Query, false, 7), Some(Level::DEBUG));
        assert_eq!(log_level_for(CallKind::Change, true, 7), Some(Level::WARN));
    }
}
