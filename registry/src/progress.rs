//! Progress of pulls and pushes, as dockerd's JSON message stream carries it: a status per
//! id (a layer's short digest, a tag) or without one, byte counts, and push's aux record.
//! The daemon writes them as JSON lines; the CLI draws them.

/// One progress message.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A status line, with the id it is about (`Pulling fs layer`, `Pull complete`) or none
    /// (`Digest: sha256:…`).
    Status { id: Option<String>, status: String },
    /// Bytes done of an id (`Downloading`, `Extracting`, `Pushing`).
    Bytes {
        id: String,
        status: String,
        current: u64,
        total: u64,
    },
    /// Push's record of what it pushed: `{"Tag", "Digest", "Size"}`.
    Aux(serde_json::Value),
}

impl Progress {
    /// A status of `id`.
    pub fn of(id: &str, status: impl Into<String>) -> Progress {
        Progress::Status {
            id: Some(id.to_string()),
            status: status.into(),
        }
    }

    /// A status without an id.
    pub fn line(status: impl Into<String>) -> Progress {
        Progress::Status {
            id: None,
            status: status.into(),
        }
    }
}

/// Where progress goes (called from several threads).
pub type Sink<'a> = &'a (dyn Fn(Progress) + Sync);

/// The id dockerd shows for a digest: its first 12 hex digits.
pub fn short(d: &strata_graph::Digest) -> String {
    d.hex()[..12].to_string()
}
