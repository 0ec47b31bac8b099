//! Locks that keep a second daemon off the same pidfile or data root.

use anyhow::{bail, Context};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A file locked with `flock` holding our PID; removed when dropped.
pub struct PidLock {
    path: PathBuf,
    _file: File,
}

impl PidLock {
    /// Locks `path` (creating it) and writes our PID into it; `what` names it in errors.
    pub fn acquire(path: &Path, what: &str) -> anyhow::Result<PidLock> {
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
        }
        let mut f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut s = String::new();
            let _ = f.read_to_string(&mut s);
            let holder = s.trim();
            bail!(
                "{what} {} is locked by process {}: is another strata daemon running?",
                path.display(),
                if holder.is_empty() { "?" } else { holder }
            );
        }
        f.set_len(0).context("truncating the pidfile")?;
        f.rewind().context("rewinding the pidfile")?;
        writeln!(f, "{}", std::process::id()).context("writing the pidfile")?;
        f.sync_all().context("syncing the pidfile")?;
        Ok(PidLock {
            path: path.to_path_buf(),
            _file: f,
        })
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
