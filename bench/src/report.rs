//! The JSON report: every sample, the summaries, the drivers (measured, skipped and why) and
//! the host's facts. Written after each driver, so that an interrupted or failed run still
//! leaves what it measured.

use crate::error::{BenchResult, Context};
use crate::host::HostFacts;
use crate::series::Series;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// What happened to one driver.
#[derive(Debug, Clone, Serialize)]
pub struct DriverReport {
    pub name: String,
    /// `measured`, `skipped` (this host cannot run it) or `failed`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The filesystem it ran on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backing: Option<String>,
    pub storage_opts: BTreeMap<String, String>,
    /// The driver's status (`docker info`'s Driver Status) as it ran.
    pub status: Vec<(String, String)>,
}

/// A workload's definition, kept with the figures.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadInfo {
    pub name: &'static str,
    pub definition: &'static str,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Bumped when the layout changes.
    pub schema: u32,
    pub started_unix: u64,
    pub finished_unix: Option<u64>,
    /// False while running, or when the run was cut short.
    pub complete: bool,
    pub host: HostFacts,
    pub runs: usize,
    pub sizes: crate::data::Sizes,
    pub seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare: Option<String>,
    pub drivers: Vec<DriverReport>,
    pub workloads: Vec<WorkloadInfo>,
    pub results: Vec<Series>,
    pub errors: Vec<String>,
}

/// Seconds since the epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Report {
    /// Writes the report to `path` (a temporary file renamed over it).
    pub fn write(&self, path: &Path) -> BenchResult<()> {
        let text = serde_json::to_vec_pretty(self)
            .map_err(std::io::Error::other)
            .ctx(|| "encoding the report".into())?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).ctx(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).ctx(|| format!("writing {}", path.display()))
    }
}
