//! Sizes of container layers, counted so that `system df`, `ps -s` and `inspect --size` need
//! not walk the layers' trees.
//!
//! A container layer's content changes only while it is mounted (or while a diff is applied
//! to it). Each layer has a counter that holds its size as last measured while nothing had it
//! mounted, also kept in `mounts/<name>.size`:
//!
//! - a new layer holds no changes: its size is 0 (a driver's `create_rw` copies or snapshots
//!   its parent, which is no change);
//! - mounting forgets the size, and the file goes **before** the driver mounts: a size on disk
//!   is never older than the layer's last mount. The unlink is not fsynced; the journal of
//!   the filesystem orders it before any later write into the layer's tree;
//! - the last unmount queues the layer to be measured again. The daemon's worker measures it
//!   in the background once it has settled for a moment (a `run --rm` removes its layer right
//!   after the exit: it is never measured); without a worker, the next reader measures it;
//! - each mount bumps a generation number: a measurement that raced with a mount is dropped.
//!
//! A size file is a decimal number of bytes, written to a temporary name and renamed (not
//! fsynced: a lost one is measured again, never wrong).

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The suffix of a size file in `mounts/`.
pub const SIZE_SUFFIX: &str = ".size";

/// One container layer's counter.
#[derive(Debug, Default, Clone)]
struct Counter {
    /// Mounts (and diffs being applied) not yet released.
    mounts: u32,
    /// Bumped at each mount.
    generation: u64,
    /// Bytes, as measured while unmounted; `None` when not known.
    size: Option<u64>,
    /// Whether `<name>.size` may exist.
    on_disk: bool,
}

#[derive(Default)]
struct Sizes {
    layers: HashMap<String, Counter>,
    /// Layers to measure, oldest first, with when they were queued.
    queue: VecDeque<(String, Instant)>,
}

/// The counters of every container layer in a store.
pub(crate) struct RwSizes {
    dir: PathBuf,
    state: Mutex<Sizes>,
    wake: Condvar,
}

/// What a measurement needs to know before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    /// The counter's value.
    Size(u64),
    /// Not known; mounted or not, and the generation to record a measurement against.
    Unknown { mounted: bool, generation: u64 },
}

/// Reads a size file; `None` when it is missing or not a number.
pub fn read_size_file(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl RwSizes {
    /// The counters of the layers `names`, read from their size files in `dir`; layers
    /// without one are queued to be measured.
    pub fn load(dir: &Path, names: impl IntoIterator<Item = String>) -> RwSizes {
        let mut s = Sizes::default();
        for name in names {
            let path = size_path(dir, &name);
            let size = read_size_file(&path);
            if size.is_none() {
                s.queue.push_back((name.clone(), Instant::now()));
            }
            s.layers.insert(
                name,
                Counter {
                    size,
                    on_disk: size.is_some(),
                    ..Counter::default()
                },
            );
        }
        RwSizes {
            dir: dir.to_path_buf(),
            state: Mutex::new(s),
            wake: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, Sizes> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, name: &str) -> PathBuf {
        size_path(&self.dir, name)
    }

    /// A new, empty layer.
    pub fn created(&self, name: &str) {
        self.state().layers.insert(
            name.to_string(),
            Counter {
                size: Some(0),
                ..Counter::default()
            },
        );
    }

    /// The layer is about to be mounted (or written to): its size is forgotten.
    pub fn mounting(&self, name: &str) -> io::Result<()> {
        let mut st = self.state();
        let c = st.layers.entry(name.to_string()).or_default();
        c.mounts += 1;
        c.generation += 1;
        c.size = None;
        if let Err(e) = self.unlink(name, c) {
            c.mounts -= 1;
            return Err(e);
        }
        Ok(())
    }

    /// Removes `<name>.size` if it may exist; on failure the counter still says it may, so
    /// the next attempt tries again.
    fn unlink(&self, name: &str, c: &mut Counter) -> io::Result<()> {
        if !c.on_disk {
            return Ok(());
        }
        match fs::remove_file(self.path(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => {
                c.on_disk = false;
                Ok(())
            }
        }
    }

    /// One mount (or write) is over; after the last, the layer is queued to be measured.
    pub fn unmounted(&self, name: &str) {
        let mut st = self.state();
        let Some(c) = st.layers.get_mut(name) else {
            return;
        };
        c.mounts = c.mounts.saturating_sub(1);
        if c.mounts == 0 && c.size.is_none() {
            st.queue.push_back((name.to_string(), Instant::now()));
            self.wake.notify_one();
        }
    }

    /// The layer is gone.
    pub fn removed(&self, name: &str) {
        let mut st = self.state();
        if st.layers.remove(name).is_some_and(|c| c.on_disk) {
            let _ = fs::remove_file(self.path(name));
        }
    }

    /// What is known of the layer's size.
    pub fn known(&self, name: &str) -> Known {
        let st = self.state();
        match st.layers.get(name) {
            Some(Counter {
                mounts: 0,
                size: Some(s),
                ..
            }) => Known::Size(*s),
            Some(c) => Known::Unknown {
                mounted: c.mounts > 0,
                generation: c.generation,
            },
            None => Known::Unknown {
                mounted: false,
                generation: 0,
            },
        }
    }

    /// Records `size`, measured from generation `generation`, unless the layer has been
    /// mounted or removed since. Returns whether it was recorded.
    pub fn record(&self, name: &str, generation: u64, size: u64) -> io::Result<bool> {
        let mut st = self.state();
        let Some(c) = st.layers.get_mut(name) else {
            return Ok(false);
        };
        if c.mounts > 0 || c.generation != generation {
            return Ok(false);
        }
        if c.size.is_none() {
            write_size_file(&self.path(name), size)?;
            c.on_disk = true;
            c.size = Some(size);
        }
        Ok(true)
    }

    /// Forgets a recorded size (it will be measured again).
    pub fn forget(&self, name: &str) -> io::Result<()> {
        let mut st = self.state();
        let Some(c) = st.layers.get_mut(name) else {
            return Ok(());
        };
        c.size = None;
        self.unlink(name, c)?;
        if c.mounts == 0 {
            st.queue.push_back((name.to_string(), Instant::now()));
            self.wake.notify_one();
        }
        Ok(())
    }

    /// The next layer to measure that has waited at least `settle` since it was queued,
    /// waiting up to `timeout` for one.
    pub fn next(&self, timeout: Duration, settle: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state();
        loop {
            let now = Instant::now();
            let wait = match st.queue.front() {
                Some((_, at)) if now.duration_since(*at) >= settle => {
                    return st.queue.pop_front().map(|(name, _)| name);
                }
                Some((_, at)) => (*at + settle).saturating_duration_since(now),
                None => Duration::MAX,
            };
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                return None;
            }
            st = self
                .wake
                .wait_timeout(st, wait.min(left))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Layers waiting to be measured.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.state().queue.len()
    }
}

/// `mounts/<name>.size`.
pub fn size_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{SIZE_SUFFIX}"))
}

fn write_size_file(path: &Path, size: u64) -> io::Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        crate::fsutil::random_id(4)
    ));
    let res = fs::write(&tmp, size.to_string()).and_then(|()| fs::rename(&tmp, path));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(names: &[&str]) -> (tempfile::TempDir, RwSizes) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = RwSizes::load(dir.path(), names.iter().map(|n| n.to_string()));
        (dir, s)
    }

    #[test]
    fn a_new_layer_is_empty_and_a_mount_forgets_its_size() {
        let (dir, s) = sizes(&[]);
        s.created("c");
        assert_eq!(s.known("c"), Known::Size(0));
        s.mounting("c").expect("mount");
        assert_eq!(
            s.known("c"),
            Known::Unknown {
                mounted: true,
                generation: 1
            }
        );
        // Mounted: a measurement is not recorded.
        assert!(!s.record("c", 1, 5).expect("record"));
        s.unmounted("c");
        assert_eq!(s.pending(), 1);
        assert_eq!(s.next(Duration::ZERO, Duration::ZERO).as_deref(), Some("c"));
        assert!(s.record("c", 1, 5).expect("record"));
        assert_eq!(s.known("c"), Known::Size(5));
        assert_eq!(read_size_file(&size_path(dir.path(), "c")), Some(5));
        // The next mount removes the file before anything is written.
        s.mounting("c").expect("mount");
        assert!(!size_path(dir.path(), "c").exists());
    }

    #[test]
    fn a_measurement_that_raced_with_a_mount_is_dropped() {
        let (_dir, s) = sizes(&[]);
        s.created("c");
        s.mounting("c").expect("mount");
        s.unmounted("c");
        let Known::Unknown { generation, .. } = s.known("c") else {
            panic!("size should be unknown after a mount");
        };
        // Mounted and released again while the measurement ran.
        s.mounting("c").expect("mount");
        s.unmounted("c");
        assert!(!s.record("c", generation, 7).expect("record"));
        assert!(matches!(s.known("c"), Known::Unknown { .. }));
    }

    #[test]
    fn sizes_survive_a_reload_and_unknown_ones_are_queued() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = RwSizes::load(dir.path(), ["a".to_string()]);
            let _ = s.next(Duration::ZERO, Duration::ZERO);
            assert!(s.record("a", 0, 42).expect("record"));
        }
        std::fs::write(size_path(dir.path(), "b"), "not a number").expect("write");
        let s = RwSizes::load(dir.path(), ["a".to_string(), "b".to_string()]);
        assert_eq!(s.known("a"), Known::Size(42));
        assert!(matches!(s.known("b"), Known::Unknown { .. }));
        assert_eq!(s.next(Duration::ZERO, Duration::ZERO).as_deref(), Some("b"));
        s.removed("a");
        assert!(!size_path(dir.path(), "a").exists());
        assert!(!s.record("a", 0, 1).expect("record"));
    }

    #[test]
    fn the_worker_waits_for_a_layer_to_settle() {
        let (_dir, s) = sizes(&[]);
        s.created("c");
        s.mounting("c").expect("mount");
        s.unmounted("c");
        let settle = Duration::from_millis(200);
        assert_eq!(s.next(Duration::ZERO, settle), None, "not settled yet");
        let t = Instant::now();
        assert_eq!(s.next(Duration::from_secs(5), settle).as_deref(), Some("c"));
        assert!(
            t.elapsed() >= Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(
            s.next(Duration::from_millis(10), settle),
            None,
            "queue empty"
        );
    }

    #[test]
    fn forgetting_queues_a_measurement() {
        let (dir, s) = sizes(&[]);
        s.created("c");
        s.mounting("c").expect("mount");
        s.unmounted("c");
        let _ = s.next(Duration::ZERO, Duration::ZERO);
        assert!(s.record("c", 1, 3).expect("record"));
        s.forget("c").expect("forget");
        assert!(!size_path(dir.path(), "c").exists());
        assert_eq!(s.next(Duration::ZERO, Duration::ZERO).as_deref(), Some("c"));
    }
}
