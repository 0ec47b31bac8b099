//! The build cache: which image a step made from which parent. A step is reused when its
//! key matches: the parent image, the instruction with its variables expanded, and what else
//! decides its result (the sources' checksum for COPY/ADD, the build args a RUN sees), as the
//! classic builder decides. Kept in one JSON file, written atomically; an entry whose image
//! is gone is simply a miss.

use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The cache of one daemon.
pub struct Cache {
    path: PathBuf,
    map: Mutex<BTreeMap<String, String>>,
}

/// The key of a step.
pub fn key(parent: &str, instruction: &str, extra: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(parent.as_bytes());
    h.update([0u8]);
    h.update(instruction.as_bytes());
    for e in extra {
        h.update([0u8]);
        h.update(e.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Cache {
    /// The cache kept at `path` (a missing or unreadable file is an empty cache).
    pub fn open(path: &Path) -> Cache {
        let map = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Cache {
            path: path.to_path_buf(),
            map: Mutex::new(map),
        }
    }

    /// The image a step with `key` made, if any.
    pub fn get(&self, key: &str) -> Option<String> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Records that the step with `key` made `image`.
    pub fn put(&self, key: &str, image: &str) -> io::Result<()> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(key.to_string(), image.to_string());
        let data = serde_json::to_vec(&*m).map_err(io::Error::other)?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        strata_graph::fsutil::atomic_write(&self.path, &data)
    }

    /// Drops the entries whose image `exists` says is gone; returns how many.
    pub fn prune(&self, exists: impl Fn(&str) -> bool) -> io::Result<usize> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let before = m.len();
        m.retain(|_, img| exists(img));
        let n = before - m.len();
        if n > 0 {
            let data = serde_json::to_vec(&*m).map_err(io::Error::other)?;
            strata_graph::fsutil::atomic_write(&self.path, &data)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_persistence() {
        let k1 = key("sha256:p", "RUN echo hi", &[]);
        assert_eq!(k1, key("sha256:p", "RUN echo hi", &[]));
        assert_ne!(k1, key("sha256:q", "RUN echo hi", &[]));
        assert_ne!(k1, key("sha256:p", "RUN echo ho", &[]));
        assert_ne!(
            key("sha256:p", "COPY a /", &["sha256:1"]),
            key("sha256:p", "COPY a /", &["sha256:2"])
        );
        assert_ne!(key("p", "ab", &[]), key("p", "a", &["b"]), "no ambiguity");
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join("builder/cache.json");
        let c = Cache::open(&path);
        assert_eq!(c.get(&k1), None);
        c.put(&k1, "sha256:img").expect("put");
        let c = Cache::open(&path);
        assert_eq!(c.get(&k1).as_deref(), Some("sha256:img"));
        assert_eq!(c.prune(|_| false).expect("prune"), 1);
        assert_eq!(Cache::open(&path).get(&k1), None);
    }
}
