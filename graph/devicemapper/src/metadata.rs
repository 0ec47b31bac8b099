//! What the driver keeps beside the pool, under `<home>/metadata`: one record per thin device
//! (its pool device ID, size, and the pool transaction that made it), the device set (next
//! device ID, the base filesystem), and a journal of the one pool operation under way. The
//! pool's own transaction ID moves in step (`set_transaction_id`), so after a crash the
//! journal says whether the operation reached the pool: it is rolled forward or back.

use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use strata_graph::fsutil::atomic_write;

/// One thin device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The pool's 24-bit device ID.
    pub device_id: u32,
    /// Virtual size in bytes.
    pub size: u64,
    /// The pool transaction that created it.
    pub transaction_id: u64,
    /// Its filesystem is made (the base device) or its content is in.
    pub initialized: bool,
    /// Removed by the user but still busy in the kernel: deleted by a later pass.
    #[serde(default)]
    pub deleted: bool,
}

/// The device set: what is common to all devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSet {
    pub next_device_id: u32,
    /// The base device's filesystem, fixed when it was made.
    pub base_fs: String,
}

/// The pool operation under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Create,
    Delete,
}

/// The journal of one pool operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The pool transaction ID the operation commits as.
    pub transaction_id: u64,
    pub op: Op,
    /// The device's name in the driver (a layer ID, or `.base`).
    pub hash: String,
    pub device_id: u32,
}

/// The metadata directory.
pub struct Metadata {
    dir: PathBuf,
}

fn read_json<T: for<'de> Deserialize<'de>>(p: &Path) -> io::Result<Option<T>> {
    match std::fs::read(p) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display()))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_json<T: Serialize>(p: &Path, v: &T) -> io::Result<()> {
    let b = serde_json::to_vec(v).map_err(io::Error::other)?;
    atomic_write(p, &b)
}

const DEVICESET: &str = "deviceset-metadata";
const JOURNAL: &str = "transaction-metadata";

impl Metadata {
    pub fn open(dir: &Path) -> io::Result<Self> {
        strata_graph::fsutil::mkdir_all(&dir.join("devices"), 0o700)?;
        Ok(Metadata {
            dir: dir.to_path_buf(),
        })
    }

    fn device_path(&self, hash: &str) -> PathBuf {
        self.dir.join("devices").join(hash)
    }

    pub fn device(&self, hash: &str) -> io::Result<Option<DeviceRecord>> {
        read_json(&self.device_path(hash))
    }

    pub fn save_device(&self, hash: &str, r: &DeviceRecord) -> io::Result<()> {
        write_json(&self.device_path(hash), r)
    }

    pub fn remove_device(&self, hash: &str) -> io::Result<()> {
        match std::fs::remove_file(self.device_path(hash)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => strata_graph::fsutil::fsync_dir(&self.dir.join("devices")),
        }
    }

    /// Every record, by name (temp files of interrupted writes are removed).
    pub fn devices(&self) -> io::Result<Vec<(String, DeviceRecord)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.dir.join("devices"))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".") && name.contains(".tmp-") {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            if let Some(r) = read_json::<DeviceRecord>(&e.path())? {
                out.push((name, r));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    pub fn device_set(&self) -> io::Result<Option<DeviceSet>> {
        read_json(&self.dir.join(DEVICESET))
    }

    pub fn save_device_set(&self, s: &DeviceSet) -> io::Result<()> {
        write_json(&self.dir.join(DEVICESET), s)
    }

    pub fn journal(&self) -> io::Result<Option<Journal>> {
        read_json(&self.dir.join(JOURNAL))
    }

    pub fn open_journal(&self, j: &Journal) -> io::Result<()> {
        write_json(&self.dir.join(JOURNAL), j)
    }

    pub fn close_journal(&self) -> io::Result<()> {
        match std::fs::remove_file(self.dir.join(JOURNAL)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => strata_graph::fsutil::fsync_dir(&self.dir),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_the_journal_closes() {
        let d = tempfile::tempdir().expect("tempdir");
        let m = Metadata::open(d.path()).expect("open");
        let r = DeviceRecord {
            device_id: 3,
            size: 1 << 30,
            transaction_id: 4,
            initialized: true,
            deleted: false,
        };
        m.save_device("abc", &r).expect("save");
        assert_eq!(m.device("abc").expect("read"), Some(r.clone()));
        assert_eq!(m.devices().expect("list"), vec![("abc".to_string(), r)]);
        let j = Journal {
            transaction_id: 5,
            op: Op::Delete,
            hash: "abc".into(),
            device_id: 3,
        };
        m.open_journal(&j).expect("journal");
        assert_eq!(m.journal().expect("read"), Some(j));
        m.close_journal().expect("close");
        assert_eq!(m.journal().expect("read"), None);
        m.remove_device("abc").expect("rm");
        m.remove_device("abc").expect("rm twice");
        assert!(m.devices().expect("list").is_empty());
        std::fs::write(d.path().join("devices/bad"), "{").expect("write");
        assert!(
            m.devices().is_err(),
            "a damaged record is an error, not skipped"
        );
    }
}
