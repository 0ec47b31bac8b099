//! Container logs: the driver and its options (`--log-driver`, `--log-opt`), and the writer
//! the shim uses. `json-file` is Docker's format (one JSON object per line: log, stream,
//! time) with `max-size`/`max-file` rotation; `local` keeps the same lines under
//! `local-logs/container.log` with Docker's `local` defaults (20 MB, 5 files; the rotated files
//! are not compressed here); `none` keeps nothing.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors in a log configuration (the user's: 400).
#[derive(Debug, thiserror::Error)]
pub enum LogConfigError {
    #[error("logger: no log driver named '{0}' is registered")]
    UnknownDriver(String),
    #[error("unknown log opt '{opt}' for {driver} log driver")]
    UnknownOpt { opt: String, driver: String },
    #[error("invalid value for log opt '{opt}': {value:?}")]
    BadValue { opt: String, value: String },
}

/// Where and how a container's output is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// `json-file`, `local` or `none`.
    pub driver: String,
    /// The current file (rotated files add `.1`, `.2`, ...).
    pub path: PathBuf,
    /// Rotate when the current file reaches this size.
    pub max_size: Option<u64>,
    /// How many files to keep, the current one included (at least 1).
    pub max_file: u32,
}

/// A size as Docker's `max-size` takes it: `10k`, `20m`, `1g` (powers of 1024), or bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n > 0.0).then_some((n * mult as f64) as u64)
}

impl LogConfig {
    /// The configuration of container `id` whose directory is `dir`, from its HostConfig's
    /// `LogConfig` (`Type`, `Config`); an empty type takes the daemon's default.
    pub fn new(
        driver: &str,
        opts: &serde_json::Map<String, serde_json::Value>,
        dir: &Path,
        id: &str,
    ) -> Result<LogConfig, LogConfigError> {
        let (path, known, mut max_size, mut max_file): (PathBuf, &[&str], Option<u64>, u32) =
            match driver {
                "json-file" => (
                    dir.join(format!("{id}-json.log")),
                    &["max-size", "max-file", "compress", "labels", "env", "tag"],
                    None,
                    1,
                ),
                "local" => (
                    dir.join("local-logs").join("container.log"),
                    &["max-size", "max-file", "compress"],
                    Some(20 << 20),
                    5,
                ),
                "none" => (PathBuf::new(), &[], None, 1),
                other => return Err(LogConfigError::UnknownDriver(other.to_string())),
            };
        for (k, v) in opts {
            let value = v.as_str().unwrap_or_default();
            let bad = || LogConfigError::BadValue {
                opt: k.clone(),
                value: value.to_string(),
            };
            if !known.contains(&k.as_str()) {
                return Err(LogConfigError::UnknownOpt {
                    opt: k.clone(),
                    driver: driver.to_string(),
                });
            }
            match k.as_str() {
                "max-size" => max_size = Some(parse_size(value).ok_or_else(bad)?),
                "max-file" => {
                    max_file = value.parse().ok().filter(|n| *n >= 1).ok_or_else(bad)?;
                }
                "compress" => {
                    value.parse::<bool>().map_err(|_| bad())?;
                }
                _ => {}
            }
        }
        if max_file > 1 && max_size.is_none() {
            return Err(LogConfigError::BadValue {
                opt: "max-file".into(),
                value: "max-file can only be used together with max-size".into(),
            });
        }
        Ok(LogConfig {
            driver: driver.to_string(),
            path,
            max_size,
            max_file,
        })
    }

    /// Whether `logs` can read this driver.
    pub fn readable(&self) -> bool {
        self.driver != "none"
    }

    /// The files that exist, oldest first.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for i in (1..self.max_file).rev() {
            let p = rotated(&self.path, i);
            if p.exists() {
                v.push(p);
            }
        }
        v.push(self.path.clone());
        v
    }
}

fn rotated(p: &Path, i: u32) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// Writes a container's output as log records, line by line, rotating as configured.
pub struct LogWriter {
    cfg: LogConfig,
    file: Option<std::fs::File>,
    size: u64,
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (appends to) the current file; `none` writes nothing.
    pub fn open(cfg: LogConfig) -> std::io::Result<LogWriter> {
        let file = if cfg.driver == "none" {
            None
        } else {
            if let Some(parent) = cfg.path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&cfg.path)?,
            )
        };
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Ok(LogWriter {
            cfg,
            file,
            size,
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Output of stream 0 (stdout) or 1 (stderr); complete lines become records.
    pub fn write(&mut self, stream: usize, data: &[u8]) {
        if self.file.is_none() {
            return;
        }
        self.partial[stream].extend_from_slice(data);
        while let Some(i) = self.partial[stream].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial[stream].drain(..=i).collect();
            self.emit(stream, &line);
        }
        if self.partial[stream].len() >= 16 * 1024 {
            let line = std::mem::take(&mut self.partial[stream]);
            self.emit(stream, &line);
        }
    }

    /// Writes what is left of unfinished lines.
    pub fn flush(&mut self) {
        for s in 0..2 {
            if !self.partial[s].is_empty() {
                let line = std::mem::take(&mut self.partial[s]);
                self.emit(s, &line);
            }
        }
    }

    fn emit(&mut self, stream: usize, line: &[u8]) {
        let rec = serde_json::json!({
            "log": String::from_utf8_lossy(line),
            "stream": if stream == 0 { "stdout" } else { "stderr" },
            "time": strata_graph::time::rfc3339_now(),
        });
        let mut text = rec.to_string();
        text.push('\n');
        let Some(f) = self.file.as_mut() else { return };
        if f.write_all(text.as_bytes()).is_ok() {
            self.size += text.len() as u64;
        }
        if self.cfg.max_size.is_some_and(|m| self.size >= m) {
            self.rotate();
        }
    }

    fn rotate(&mut self) {
        let p = self.cfg.path.clone();
        if self.cfg.max_file <= 1 {
            if let Some(f) = self.file.as_ref() {
                let _ = f.set_len(0);
            }
            self.size = 0;
            return;
        }
        let _ = std::fs::remove_file(rotated(&p, self.cfg.max_file - 1));
        for i in (1..self.cfg.max_file - 1).rev() {
            let _ = std::fs::rename(rotated(&p, i), rotated(&p, i + 1));
        }
        let _ = std::fs::rename(&p, rotated(&p, 1));
        if let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
        {
            self.file = Some(f);
            self.size = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn options() {
        let d = Path::new("/c");
        let c = LogConfig::new("json-file", &opts(json!({})), d, "ab").unwrap();
        assert_eq!(c.path, Path::new("/c/ab-json.log"));
        assert_eq!((c.max_size, c.max_file), (None, 1));
        let c = LogConfig::new(
            "json-file",
            &opts(json!({"max-size": "10k", "max-file": "3"})),
            d,
            "ab",
        )
        .unwrap();
        assert_eq!((c.max_size, c.max_file), (Some(10240), 3));
        let c = LogConfig::new("local", &opts(json!({})), d, "ab").unwrap();
        assert_eq!((c.max_size, c.max_file), (Some(20 << 20), 5));
        assert!(LogConfig::new("syslogx", &opts(json!({})), d, "ab")
            .unwrap_err()
            .to_string()
            .contains("no log driver named 'syslogx'"));
        assert!(
            LogConfig::new("json-file", &opts(json!({"bogus": "1"})), d, "ab")
                .unwrap_err()
                .to_string()
                .contains("unknown log opt 'bogus' for json-file log driver")
        );
        assert!(LogConfig::new("json-file", &opts(json!({"max-size": "lots"})), d, "ab").is_err());
        assert!(LogConfig::new("json-file", &opts(json!({"max-file": "2"})), d, "ab").is_err());
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("-1"), None);
    }

    #[test]
    fn rotation_keeps_max_file_files() {
        let t = tempfile::tempdir().unwrap();
        let cfg = LogConfig::new(
            "json-file",
            &opts(json!({"max-size": "1k", "max-file": "3"})),
            t.path(),
            "x",
        )
        .unwrap();
        let mut w = LogWriter::open(cfg.clone()).unwrap();
        for i in 0..200 {
            w.write(0, format!("line {i}\n").as_bytes());
        }
        w.flush();
        let files = cfg.files();
        assert_eq!(files.len(), 3, "{files:?}");
        let mut lines = Vec::new();
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() < 1024 + 200);
            for l in std::fs::read_to_string(f).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                lines.push(v["log"].as_str().unwrap().to_string());
            }
        }
        // Oldest first, newest last, nothing reordered.
        assert_eq!(lines.last().unwrap(), "line 199\n");
        let nums: Vec<i32> = lines
            .iter()
            .map(|l| l.trim()[5..].parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        assert!(nums[0] > 0, "the oldest lines were rotated away");
    }

    #[test]
    fn none_keeps_nothing() {
        let cfg = LogConfig::new("none", &opts(json!({})), Path::new("/nonexistent"), "x").unwrap();
        let mut w = LogWriter::open(cfg.clone()).unwrap();
        w.write(0, b"hello\n");
        w.flush();
        assert!(!cfg.readable());
    }
}
