//! Blob downloads shared by every pull of the daemon: one download per blob digest however
//! many pulls want it, a bounded number running at once (`--max-concurrent-downloads`),
//! each streamed to a `.partial` file with its digest computed while writing, and read by
//! extractors while it grows ([`TailReader`]): a layer is unpacked as its bytes arrive.
//!
//! A failed or interrupted download keeps its partial file; the next download of that blob
//! rehashes it and asks the registry only for the rest (`Range`). A blob whose digest does
//! not match is deleted, never resumed from. A download nobody waits for any more stops.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use strata_graph::digest::DigestWriter;
use strata_graph::Digest;

/// How many times a download is tried before its error is final.
const ATTEMPTS: u32 = 3;
/// Partial downloads older than this are removed when the daemon starts.
const PARTIAL_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where a blob comes from.
pub trait BlobSource: Send + Sync {
    /// Writes the blob from byte `offset` on into `out`.
    fn fetch(&self, digest: &Digest, offset: u64, out: &mut dyn Write) -> Result<u64, FetchError>;
}

/// A failed fetch: whether trying again may help (a connection cut), and what happened.
#[derive(Debug)]
pub struct FetchError {
    pub retryable: bool,
    pub message: String,
}

/// Where a download is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a download slot.
    Waiting,
    Downloading,
    /// All bytes are in and the digest matched.
    Done,
    Failed(String),
}

struct State {
    phase: Phase,
    /// Bytes in the file (including those kept from an earlier attempt).
    written: u64,
    /// Where this download started (more than 0: resumed).
    resumed_from: u64,
}

/// One blob's download.
pub struct Transfer {
    pub digest: Digest,
    /// The size the manifest gives.
    pub size: u64,
    path: PathBuf,
    st: Mutex<State>,
    cv: Condvar,
    /// Pulls holding a [`Handle`].
    users: AtomicUsize,
}

/// A snapshot of a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub phase: Phase,
    pub written: u64,
    pub resumed_from: u64,
}

impl Transfer {
    fn state(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state());
        self.cv.notify_all();
    }

    fn snapshot(st: &State) -> Snapshot {
        Snapshot {
            phase: st.phase.clone(),
            written: st.written,
            resumed_from: st.resumed_from,
        }
    }
}

/// Download slots: at most `limit` downloads run at once; the limit can change (SIGHUP).
struct Slots {
    st: Mutex<(usize, usize)>,
    cv: Condvar,
}

impl Slots {
    fn acquire(&self, cancelled: impl Fn() -> bool) -> bool {
        let mut g = self.st.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if cancelled() {
                return false;
            }
            if g.0 < g.1.max(1) {
                g.0 += 1;
                return true;
            }
            g = self
                .cv
                .wait_timeout(g, Duration::from_millis(200))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn release(&self) {
        let mut g = self.st.lock().unwrap_or_else(|p| p.into_inner());
        g.0 = g.0.saturating_sub(1);
        self.cv.notify_all();
    }
}

/// Every download of the daemon.
pub struct Transfers {
    dir: PathBuf,
    active: Mutex<HashMap<Digest, Arc<Transfer>>>,
    slots: Slots,
}

impl Transfers {
    /// Downloads under `dir`, at most `limit` at once; removes partial files older than a
    /// week.
    pub fn open(dir: &Path, limit: usize) -> io::Result<Transfers> {
        strata_graph::fsutil::mkdir_all(dir, 0o700)?;
        for e in fs::read_dir(dir)? {
            let e = e?;
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > PARTIAL_MAX_AGE);
            let name = e.file_name().to_string_lossy().into_owned();
            if old || !name.ends_with(".partial") {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(Transfers {
            dir: dir.to_path_buf(),
            active: Mutex::new(HashMap::new()),
            slots: Slots {
                st: Mutex::new((0, limit)),
                cv: Condvar::new(),
            },
        })
    }

    /// Changes how many downloads run at once.
    pub fn set_limit(&self, limit: usize) {
        let mut g = self.slots.st.lock().unwrap_or_else(|p| p.into_inner());
        g.1 = limit;
        self.slots.cv.notify_all();
    }

    fn active(&self) -> MutexGuard<'_, HashMap<Digest, Arc<Transfer>>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A handle on the download of `digest`: the one running, or a new one fetching from
    /// `source`. Returns whether this call started it.
    pub fn join(
        self: &Arc<Self>,
        digest: &Digest,
        size: u64,
        source: Arc<dyn BlobSource>,
    ) -> (Handle, bool) {
        let mut map = self.active();
        if let Some(t) = map.get(digest) {
            if !matches!(t.state().phase, Phase::Failed(_)) {
                t.users.fetch_add(1, Ordering::SeqCst);
                return (
                    Handle {
                        t: t.clone(),
                        owner: self.clone(),
                    },
                    false,
                );
            }
        }
        let t = Arc::new(Transfer {
            digest: *digest,
            size,
            path: self.dir.join(format!("{}.partial", digest.hex())),
            st: Mutex::new(State {
                phase: Phase::Waiting,
                written: 0,
                resumed_from: 0,
            }),
            cv: Condvar::new(),
            users: AtomicUsize::new(1),
        });
        map.insert(*digest, t.clone());
        drop(map);
        tracing::info!(blob = %digest, size, "starting a download");
        let me = self.clone();
        let tt = t.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("download-{}", &digest.hex()[..12]))
            .spawn(move || me.download(&tt, source.as_ref()));
        if let Err(e) = spawned {
            t.set(|s| s.phase = Phase::Failed(format!("starting a download thread: {e}")));
        }
        (
            Handle {
                t,
                owner: self.clone(),
            },
            true,
        )
    }

    /// Whether nobody waits for `t` any more.
    fn cancelled(&self, t: &Arc<Transfer>) -> bool {
        t.users.load(Ordering::SeqCst) == 0
    }

    fn download(&self, t: &Arc<Transfer>, source: &dyn BlobSource) {
        let res = if self.slots.acquire(|| self.cancelled(t)) {
            let r = self.fetch(t, source);
            self.slots.release();
            r
        } else {
            Err("cancelled".to_string())
        };
        match res {
            Ok(()) => t.set(|s| s.phase = Phase::Done),
            Err(m) => {
                tracing::warn!(blob = %t.digest, "download failed: {m}");
                t.set(|s| s.phase = Phase::Failed(m));
            }
        }
        self.finish(t);
    }

    fn fetch(&self, t: &Arc<Transfer>, source: &dyn BlobSource) -> Result<(), String> {
        let path_err = |e: io::Error| format!("{}: {e}", t.path.display());
        let file = File::options()
            .create(true)
            .read(true)
            .append(true)
            .open(&t.path)
            .map_err(path_err)?;
        let kept = File::open(&t.path).map_err(path_err)?;
        let mut w = DigestWriter::resume(file, kept).map_err(path_err)?;
        if w.count() > t.size {
            // More than the blob: not a prefix of it.
            drop(w);
            let _ = fs::remove_file(&t.path);
            return Err(format!(
                "{}: a partial download longer than the blob",
                t.digest
            ));
        }
        let start = w.count();
        if start > 0 {
            tracing::info!(blob = %t.digest, offset = start, "resuming a download");
        }
        t.set(|s| {
            s.phase = Phase::Downloading;
            s.written = start;
            s.resumed_from = start;
        });
        let mut attempt = 0;
        loop {
            attempt += 1;
            let offset = w.count();
            if offset == t.size {
                break;
            }
            let mut out = Progressing {
                w: &mut w,
                t,
                owner: self,
            };
            match source.fetch(&t.digest, offset, &mut out) {
                Ok(_) => break,
                Err(e) if e.retryable && attempt < ATTEMPTS && !self.cancelled(t) => {
                    tracing::warn!(blob = %t.digest, attempt, "download interrupted, retrying: {}", e.message);
                    std::thread::sleep(Duration::from_secs(attempt as u64));
                }
                Err(e) => return Err(e.message),
            }
        }
        w.flush().map_err(path_err)?;
        let got = w.digest();
        let n = w.count();
        if n != t.size || got != t.digest {
            drop(w);
            let _ = fs::remove_file(&t.path);
            if n < t.size {
                return Err(format!(
                    "unexpected EOF: blob {} ended after {n} of {} bytes",
                    t.digest, t.size
                ));
            }
            if n > t.size {
                return Err(format!(
                    "blob {} is larger than the {} bytes its manifest gives",
                    t.digest, t.size
                ));
            }
            return Err(format!(
                "filesystem layer verification failed for digest {}",
                t.digest
            ));
        }
        Ok(())
    }

    /// A download ended: nobody left waiting means it leaves the table (and a finished blob
    /// its file: the pulls that wanted it are done with it).
    fn finish(&self, t: &Arc<Transfer>) {
        let mut map = self.active();
        if t.users.load(Ordering::SeqCst) == 0 {
            self.forget(&mut map, t);
        }
    }

    fn forget(&self, map: &mut HashMap<Digest, Arc<Transfer>>, t: &Arc<Transfer>) {
        if map.get(&t.digest).is_some_and(|x| Arc::ptr_eq(x, t)) {
            map.remove(&t.digest);
        }
        if t.state().phase == Phase::Done {
            let _ = fs::remove_file(&t.path);
        }
    }

    /// The number of downloads in the table (for tests).
    pub fn len(&self) -> usize {
        self.active().len()
    }

    /// Whether no download is in the table.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes into the file, publishing progress; stops when nobody waits any more.
struct Progressing<'a> {
    w: &'a mut DigestWriter<File>,
    t: &'a Arc<Transfer>,
    owner: &'a Transfers,
}

impl Write for Progressing<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.owner.cancelled(self.t) {
            return Err(io::Error::other("cancelled"));
        }
        if self.w.count() + buf.len() as u64 > self.t.size {
            return Err(io::Error::other(format!(
                "blob {} is larger than the {} bytes its manifest gives",
                self.t.digest, self.t.size
            )));
        }
        self.w.write_all(buf)?;
        let n = self.w.count();
        self.t.set(|s| s.written = n);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// A pull's hold on a download; dropping it lets the download go when nobody else holds it.
pub struct Handle {
    t: Arc<Transfer>,
    owner: Arc<Transfers>,
}

impl Handle {
    pub fn digest(&self) -> &Digest {
        &self.t.digest
    }

    pub fn size(&self) -> u64 {
        self.t.size
    }

    /// The download now.
    pub fn snapshot(&self) -> Snapshot {
        Transfer::snapshot(&self.t.state())
    }

    /// Waits until the download differs from `last` (or `timeout` passes).
    pub fn wait_change(&self, last: &Snapshot, timeout: Duration) -> Snapshot {
        let g = self.t.state();
        let (g, _) = self
            .t
            .cv
            .wait_timeout_while(g, timeout, |s| Transfer::snapshot(s) == *last)
            .unwrap_or_else(|p| p.into_inner());
        Transfer::snapshot(&g)
    }

    /// Waits for the end: `Ok` once all bytes are in and checked.
    pub fn wait(&self) -> Result<(), String> {
        let g = self.t.state();
        let g = self
            .t
            .cv
            .wait_while(g, |s| !matches!(s.phase, Phase::Done | Phase::Failed(_)))
            .unwrap_or_else(|p| p.into_inner());
        match &g.phase {
            Phase::Failed(m) => Err(m.clone()),
            _ => Ok(()),
        }
    }

    /// A reader of the blob from its start, following the download: it blocks for bytes not
    /// yet written, ends only once the digest is checked, and fails if the download fails.
    pub fn reader<'a>(
        &'a self,
        on_read: Option<Box<dyn Fn(u64) + Send + 'a>>,
    ) -> io::Result<TailReader<'a>> {
        // The file exists once the download thread opened it; wait for that.
        let g = self.t.state();
        let g = self
            .t
            .cv
            .wait_while(g, |s| s.phase == Phase::Waiting)
            .unwrap_or_else(|p| p.into_inner());
        if let Phase::Failed(m) = &g.phase {
            return Err(io::Error::other(m.clone()));
        }
        drop(g);
        let file = match File::open(&self.t.path) {
            Ok(f) => f,
            Err(e) => {
                // A finished download may have been removed; then its phase says why.
                if let Phase::Failed(m) = self.snapshot().phase {
                    return Err(io::Error::other(m));
                }
                return Err(e);
            }
        };
        Ok(TailReader {
            file,
            pos: 0,
            t: &self.t,
            on_read,
        })
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut map = self.owner.active();
        if self.t.users.fetch_sub(1, Ordering::SeqCst) == 1 {
            let ended = matches!(self.t.state().phase, Phase::Done | Phase::Failed(_));
            if ended {
                self.owner.forget(&mut map, &self.t);
            }
            // A running download sees no users and stops; it then removes itself.
        }
        self.t.cv.notify_all();
    }
}

/// Reads a blob while it downloads.
pub struct TailReader<'a> {
    file: File,
    pos: u64,
    t: &'a Transfer,
    on_read: Option<Box<dyn Fn(u64) + Send + 'a>>,
}

impl Read for TailReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let g = self.t.state();
        let g = self
            .t
            .cv
            .wait_while(g, |s| {
                s.written <= self.pos && !matches!(s.phase, Phase::Done | Phase::Failed(_))
            })
            .unwrap_or_else(|p| p.into_inner());
        if let Phase::Failed(m) = &g.phase {
            return Err(io::Error::other(m.clone()));
        }
        let avail = g.written.saturating_sub(self.pos);
        drop(g);
        if avail == 0 {
            return Ok(0); // done and all read
        }
        let want = (buf.len() as u64).min(avail) as usize;
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the download's file is shorter than reported",
            ));
        }
        self.pos += n as u64;
        if let Some(f) = &self.on_read {
            f(self.pos);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `data`, optionally failing once after `cut` bytes, counting calls and offsets.
    struct Memory {
        data: Vec<u8>,
        cut: Mutex<Option<usize>>,
        offsets: Mutex<Vec<u64>>,
        gate: Mutex<bool>,
    }

    impl BlobSource for Memory {
        fn fetch(&self, _: &Digest, offset: u64, out: &mut dyn Write) -> Result<u64, FetchError> {
            self.offsets.lock().expect("lock").push(offset);
            while !*self.gate.lock().expect("lock") {
                std::thread::sleep(Duration::from_millis(5));
            }
            let rest = &self.data[offset as usize..];
            let cut = self.cut.lock().expect("lock").take();
            let n = cut.map(|c| c.min(rest.len())).unwrap_or(rest.len());
            for chunk in rest[..n].chunks(1000) {
                out.write_all(chunk).map_err(|e| FetchError {
                    retryable: false,
                    message: e.to_string(),
                })?;
            }
            if cut.is_some() {
                return Err(FetchError {
                    retryable: false,
                    message: "connection reset".into(),
                });
            }
            Ok(n as u64)
        }
    }

    fn memory(data: Vec<u8>, cut: Option<usize>) -> Arc<Memory> {
        Arc::new(Memory {
            data,
            cut: Mutex::new(cut),
            offsets: Mutex::new(Vec::new()),
            gate: Mutex::new(true),
        })
    }

    #[test]
    fn shared_download_is_read_while_it_grows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ts = Arc::new(Transfers::open(dir.path(), 2).expect("open"));
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let d = Digest::of(&data);
        let src = memory(data.clone(), None);
        *src.gate.lock().expect("lock") = false;
        let (a, started_a) = ts.join(&d, data.len() as u64, src.clone());
        let (b, started_b) = ts.join(&d, data.len() as u64, src.clone());
        assert!(
            started_a && !started_b,
            "the second pull joins the first download"
        );
        let reader_b = std::thread::spawn(move || {
            let mut v = Vec::new();
            b.reader(None)
                .expect("reader")
                .read_to_end(&mut v)
                .expect("read");
            v
        });
        *src.gate.lock().expect("lock") = true;
        let mut v = Vec::new();
        a.reader(None)
            .expect("reader")
            .read_to_end(&mut v)
            .expect("read");
        assert_eq!(v, data);
        assert_eq!(reader_b.join().expect("join"), data);
        assert_eq!(
            src.offsets.lock().expect("lock").len(),
            1,
            "downloaded once"
        );
        drop(a);
        assert!(ts.is_empty());
        assert!(!dir.path().join(format!("{}.partial", d.hex())).exists());
    }

    #[test]
    fn an_interrupted_download_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ts = Arc::new(Transfers::open(dir.path(), 1).expect("open"));
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let d = Digest::of(&data);
        let src = memory(data.clone(), Some(20_000));
        let (h, _) = ts.join(&d, data.len() as u64, src.clone());
        let mut v = Vec::new();
        let err = h
            .reader(None)
            .and_then(|mut r| r.read_to_end(&mut v))
            .expect_err("cut");
        assert!(err.to_string().contains("connection reset"), "{err}");
        drop(h);
        let (h, _) = ts.join(&d, data.len() as u64, src.clone());
        h.wait().expect("resumed download");
        assert_eq!(*src.offsets.lock().expect("lock"), vec![0, 20_000]);
        assert_eq!(h.snapshot().resumed_from, 20_000);
        let mut v = Vec::new();
        h.reader(None)
            .expect("reader")
            .read_to_end(&mut v)
            .expect("read");
        assert_eq!(v, data);
    }

    #[test]
    fn a_wrong_digest_fails_and_is_not_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ts = Arc::new(Transfers::open(dir.path(), 1).expect("open"));
        let data = vec![1u8; 10_000];
        let d = Digest::of(b"something else");
        let (h, _) = ts.join(&d, data.len() as u64, memory(data.clone(), None));
        let err = h.wait().expect_err("mismatch");
        assert!(err.contains("verification failed"), "{err}");
        let mut v = Vec::new();
        assert!(h
            .reader(None)
            .and_then(|mut r| r.read_to_end(&mut v))
            .is_err());
        drop(h);
        assert!(!dir.path().join(format!("{}.partial", d.hex())).exists());
        // A blob longer than its manifest says is refused too.
        let d = Digest::of(&data);
        let (h, _) = ts.join(&d, 5_000, memory(data, None));
        assert!(h.wait().expect_err("too long").contains("larger than"));
    }
}
