//! What Strata knows of a layer's compressed forms (dockerd's "v2 metadata"): for each diffID,
//! the blobs it was pulled as or pushed as, with their media type, size, and the registry
//! and repository that hold them. A push uses it to skip a layer the registry has, or to
//! mount it from another repository there, instead of compressing it again.

use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use strata_graph::fsutil::{atomic_write, mkdir_all};
use strata_graph::{DiffId, Digest};

/// One compressed form of a layer, and where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    pub digest: Digest,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
    /// `127.0.0.1:5000`, `docker.io`.
    pub registry: String,
    /// `library/busybox`.
    pub repository: String,
}

/// The records, one JSON file per diffID.
pub struct Metadata {
    dir: PathBuf,
    lock: Mutex<()>,
}

/// At most this many records are kept per layer (the newest).
const MAX_RECORDS: usize = 50;

impl Metadata {
    /// The records under `dir`.
    pub fn open(dir: &Path) -> io::Result<Metadata> {
        mkdir_all(dir, 0o700)?;
        Ok(Metadata {
            dir: dir.to_path_buf(),
            lock: Mutex::new(()),
        })
    }

    fn path(&self, diff: &DiffId) -> PathBuf {
        self.dir.join(format!("{}.json", diff.hex()))
    }

    /// The blobs known for a layer, newest first; unreadable records are none.
    pub fn get(&self, diff: &DiffId) -> Vec<BlobRecord> {
        std::fs::read(self.path(diff))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Records that `diff` is available as `rec` (moved to the front if known).
    pub fn add(&self, diff: &DiffId, rec: BlobRecord) -> io::Result<()> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut v = self.get(diff);
        v.retain(|r| r != &rec);
        v.insert(0, rec);
        v.truncate(MAX_RECORDS);
        let data = serde_json::to_vec(&v).map_err(io::Error::other)?;
        atomic_write(&self.path(diff), &data)
    }

    /// The layer a blob digest is known to uncompress to.
    pub fn diff_of(&self, blob: &Digest) -> Option<DiffId> {
        let rd = std::fs::read_dir(&self.dir).ok()?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(diff) = Digest::from_hex(hex) else {
                continue;
            };
            if self.get(&diff).iter().any(|r| &r.digest == blob) {
                return Some(diff);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_kept_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = Metadata::open(dir.path()).expect("open");
        let diff = Digest::of(b"layer");
        let rec = |repo: &str| BlobRecord {
            digest: Digest::of(b"blob"),
            media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
            size: 4,
            registry: "127.0.0.1:5000".into(),
            repository: repo.into(),
        };
        assert!(m.get(&diff).is_empty());
        m.add(&diff, rec("a")).expect("add");
        m.add(&diff, rec("b")).expect("add");
        m.add(&diff, rec("a")).expect("add");
        let got = m.get(&diff);
        assert_eq!(got, vec![rec("a"), rec("b")]);
        assert_eq!(m.diff_of(&Digest::of(b"blob")), Some(diff));
        assert_eq!(m.diff_of(&Digest::of(b"other")), None);
        let reopened = Metadata::open(dir.path()).expect("open");
        assert_eq!(reopened.get(&diff).len(), 2);
    }
}
