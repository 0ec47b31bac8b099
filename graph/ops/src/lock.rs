//! The data root's lock: the daemon holds it while it runs, and `strata storage repair` and
//! `migrate` take it, so that no two writers share a store.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Errors taking a lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{what} {path} is locked by process {holder}: is a strata daemon running?")]
    Held {
        what: String,
        path: PathBuf,
        holder: String,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: String,
        path: PathBuf,
        source: io::Error,
    },
}

/// A file locked with `flock` that holds the locker's PID; removed when dropped.
#[derive(Debug)]
pub struct PidLock {
    path: PathBuf,
    _file: File,
}

impl PidLock {
    /// Locks `path` (creating it and its directory) and writes our PID into it; `what` names
    /// the lock in errors.
    pub fn acquire(path: &Path, what: &str) -> Result<PidLock, LockError> {
        let io = |source| LockError::Io {
            what: what.into(),
            path: path.to_path_buf(),
            source,
        };
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(io)?;
        }
        let mut f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut s = String::new();
            let _ = f.read_to_string(&mut s);
            let holder = s.trim();
            return Err(LockError::Held {
                what: what.into(),
                path: path.to_path_buf(),
                holder: if holder.is_empty() {
                    "?".into()
                } else {
                    holder.into()
                },
            });
        }
        f.set_len(0).map_err(io)?;
        f.rewind().map_err(io)?;
        writeln!(f, "{}", std::process::id()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(PidLock {
            path: path.to_path_buf(),
            _file: f,
        })
    }

    /// Locks a data root, as the daemon does.
    pub fn data_root(data_root: &Path) -> Result<PidLock, LockError> {
        Self::acquire(&strata_graph::layout::lock(data_root), "data root lock")
    }

    /// Whether someone holds the lock at `path` now.
    pub fn is_held(path: &Path) -> bool {
        let Ok(f) = File::open(path) else {
            return false;
        };
        // SAFETY: flock on a descriptor we own; a shared probe released when `f` closes.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_locker_is_refused_with_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let l = PidLock::data_root(d.path()).unwrap();
        assert!(PidLock::is_held(&strata_graph::layout::lock(d.path())));
        let e = PidLock::data_root(d.path()).unwrap_err().to_string();
        assert!(e.contains(&std::process::id().to_string()), "{e}");
        drop(l);
        assert!(!PidLock::is_held(&strata_graph::layout::lock(d.path())));
        PidLock::data_root(d.path()).unwrap();
    }
}
