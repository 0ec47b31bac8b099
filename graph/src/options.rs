//! `--storage-opt key=value` parsing. Each driver declares the keys it accepts; anything else is
//! an error that names the key and lists what the driver does accept.

use std::collections::BTreeMap;

/// Errors in storage options.
#[derive(Debug, thiserror::Error)]
pub enum OptionError {
    #[error("storage option {0:?} is not of the form key=value")]
    Malformed(String),
    #[error("{driver}: unknown storage option {key:?}; {driver} accepts: {accepted}")]
    Unknown {
        driver: String,
        key: String,
        accepted: String,
    },
    #[error("{driver}: invalid value {value:?} for storage option {key:?}: {reason}")]
    BadValue {
        driver: String,
        key: String,
        value: String,
        reason: String,
    },
}

/// One accepted option: its key and a short description for error messages and docs.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    pub key: &'static str,
    pub help: &'static str,
}

/// Parsed options, keys lower-cased as dockerd does, and what opening the driver may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageOpts(pub BTreeMap<String, String>, pub Opening);

/// What a driver may do about a previous run's leftovers when it is opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Opening {
    /// Clean up after a killed daemon (release the mounts it left), as the daemon needs.
    #[default]
    Recover,
    /// Leave them for `strata storage check` to report (and `repair` to remove).
    Inspect,
}

impl StorageOpts {
    /// Parses `key=value` strings; keys are case-insensitive.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, OptionError> {
        let mut map = BTreeMap::new();
        for item in items {
            let item = item.as_ref();
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| OptionError::Malformed(item.to_string()))?;
            let k = k.trim().to_ascii_lowercase();
            if k.is_empty() {
                return Err(OptionError::Malformed(item.to_string()));
            }
            map.insert(k, v.trim().to_string());
        }
        Ok(StorageOpts(map, Opening::Recover))
    }

    /// The same options, for opening the driver to inspect a data root: leftovers of a
    /// previous run are left in place.
    pub fn inspecting(mut self) -> Self {
        self.1 = Opening::Inspect;
        self
    }

    /// Whether the driver may clean up after a previous run.
    pub fn recovers(&self) -> bool {
        self.1 == Opening::Recover
    }

    /// Checks every key against the driver's list.
    pub fn validate(&self, driver: &str, accepted: &[OptionSpec]) -> Result<(), OptionError> {
        for key in self.0.keys() {
            if !accepted.iter().any(|s| s.key == key) {
                let list = if accepted.is_empty() {
                    "no options".to_string()
                } else {
                    accepted
                        .iter()
                        .map(|s| format!("{} ({})", s.key, s.help))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(OptionError::Unknown {
                    driver: driver.into(),
                    key: key.clone(),
                    accepted: list,
                });
            }
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|s| s.as_str())
    }

    /// A size option (`10G`, `512m`, `1048576`), `None` when absent.
    pub fn size(&self, driver: &str, key: &str) -> Result<Option<u64>, OptionError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse_size(v)
                .map(Some)
                .map_err(|reason| OptionError::BadValue {
                    driver: driver.into(),
                    key: key.into(),
                    value: v.into(),
                    reason,
                }),
        }
    }

    /// A boolean option (`true`/`false`/`1`/`0`), `None` when absent.
    pub fn bool(&self, driver: &str, key: &str) -> Result<Option<bool>, OptionError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => Ok(Some(true)),
                "0" | "false" | "no" => Ok(Some(false)),
                _ => Err(OptionError::BadValue {
                    driver: driver.into(),
                    key: key.into(),
                    value: v.into(),
                    reason: "expected true or false".into(),
                }),
            },
        }
    }
}

/// A size as Docker's `units.HumanSizeWithPrecision` prints it: decimal units (`kB`, `MB`,
/// ...) and `precision` significant digits, trailing zeros dropped (`4.87MB`, `65.54kB`,
/// `0B`). The CLI prints 3 digits, the daemon's driver status 4.
pub fn human_size(bytes: f64, precision: usize) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    // Digits before the point: 1 below 10, 2 below 100, ...
    let mut int_digits = 1;
    let mut bound = 10.0;
    while v >= bound {
        int_digits += 1;
        bound *= 10.0;
    }
    let decimals = precision.saturating_sub(int_digits);
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    // Rounding can carry into one more digit (999.5 → "1000"): fine for display.
    format!("{s}{}", UNITS[i])
}

/// Parses a size as Docker's `units.RAMInBytes` does: binary multiples, optional `b`/`ib` suffix.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        Some('p') => (&t[..t.len() - 1], 1 << 50),
        _ => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 10G, 512M)"))?;
    if v.is_nan() || v < 0.0 || !v.is_finite() {
        return Err(format!("{s:?} is not a size"));
    }
    Ok((v * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("20MiB").unwrap(), 20 << 20);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn unknown_key_names_key_and_accepted() {
        let o = StorageOpts::parse(&["Overlay2.Bogus=1"]).unwrap();
        let err = o
            .validate(
                "overlay2",
                &[OptionSpec {
                    key: "overlay2.size",
                    help: "quota",
                }],
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("overlay2.bogus"), "{err}");
        assert!(err.contains("overlay2.size"), "{err}");
        assert!(StorageOpts::parse(&["novalue"]).is_err());
    }
}
