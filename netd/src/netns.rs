//! Network namespaces kept as files: a container's namespace is made before its runtime
//! runs (bind-mounted at `<exec-root>/netns/<id>`), configured from here, and joined by the
//! runtime through the spec. It lives as long as that file or a process in it.
//!
//! Namespace changes are per thread: each call here runs on a thread of its own, so the
//! daemon's other threads never change namespace.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Errors of namespace handling.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("a namespace thread failed: {0}")]
    Thread(String),
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetnsError {
    let context = context.into();
    move |source| NetnsError::Io { context, source }
}

fn last_error(context: &str) -> NetnsError {
    io_ctx(context)(std::io::Error::last_os_error())
}

/// Makes a new network namespace, kept at `path` (a file; its directory is made).
pub fn create(path: &Path) -> Result<(), NetnsError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
    }
    File::create(path).map_err(io_ctx(format!("creating {}", path.display())))?;
    let target = path.to_path_buf();
    let made = std::thread::spawn(move || -> Result<(), NetnsError> {
        // SAFETY: plain syscall; only this thread's namespace changes, and the thread ends
        // right after.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(last_error("unshare(CLONE_NEWNET)"));
        }
        strata_graph::sys::mount(
            b"/proc/thread-self/ns/net",
            &target,
            b"none",
            libc::MS_BIND,
            None,
        )
        .map_err(io_ctx(format!(
            "bind-mounting a namespace at {}",
            target.display()
        )))
    })
    .join()
    .map_err(|_| NetnsError::Thread("creating a namespace".into()))?;
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Removes a namespace file made by [`create`]; the namespace ends with its last process.
/// A missing file is not an error.
pub fn remove(path: &Path) {
    let _ = strata_graph::sys::umount2(path, libc::MNT_DETACH);
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), "removing a namespace file: {e}"),
    }
}

/// Whether `path` is a mounted namespace file.
pub fn exists(path: &Path) -> bool {
    // An nsfs file has inode numbers of the nsfs filesystem; a plain file left behind is not
    // one. Comparing with our own namespace's device is the portable test.
    let dev = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
    };
    match (dev(path), dev(Path::new("/proc/self/ns/net"))) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Runs `f` on a new thread inside the namespace at `path` (`None`: the caller's), and
/// returns what it returns.
pub fn run_in<T: Send + 'static>(
    path: Option<&Path>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    let ns = match path {
        Some(p) => Some(File::open(p).map_err(io_ctx(format!("opening {}", p.display())))?),
        None => None,
    };
    let where_: PathBuf = path.map(Path::to_path_buf).unwrap_or_default();
    std::thread::spawn(move || -> Result<T, NetnsError> {
        if let Some(ns) = ns {
            // SAFETY: a valid namespace fd; only this thread moves, and it ends after `f`.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(last_error(&format!("entering {}", where_.display())));
            }
        }
        Ok(f())
    })
    .join()
    .map_err(|_| NetnsError::Thread("running in a namespace".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        // SAFETY: plain syscall.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn a_namespace_file_lives_and_goes() {
        if !root() {
            eprintln!("skipped: needs root to make namespaces");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("ns/one");
        create(&p).unwrap();
        assert!(exists(&p));
        let inside = run_in(Some(&p), || {
            std::fs::read_link("/proc/thread-self/ns/net").unwrap()
        })
        .unwrap();
        let outside = std::fs::read_link("/proc/self/ns/net").unwrap();
        assert_ne!(inside, outside, "the thread ran in the new namespace");
        remove(&p);
        assert!(!p.exists());
        assert!(!exists(&p));
        remove(&p);
    }
}
