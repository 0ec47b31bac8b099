//! Daemon configuration: flags and `daemon.json`, merged as dockerd merges them. A setting given
//! both as a flag and in the file is an error, as is an unknown key or malformed JSON.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Keys of daemon.json that Strata reads (dockerd's names).
const KEYS: &[&str] = &[
    "hosts",
    "data-root",
    "storage-driver",
    "storage-opts",
    "labels",
    "debug",
    "log-level",
    "pidfile",
    "tls",
    "tlsverify",
    "tlscacert",
    "tlscert",
    "tlskey",
    "exec-root",
    "group",
    "live-restore",
    "log-driver",
    "log-opts",
    "runtimes",
    "default-runtime",
    "default-ulimits",
    "insecure-registries",
    "registry-mirrors",
    "max-concurrent-downloads",
    "max-concurrent-uploads",
];

/// Whether daemon.json may hold `key`.
pub fn known_key(key: &str) -> bool {
    KEYS.contains(&key) || crate::netflags::KEYS.contains(&key)
}

/// Settings from the command line; `None`/empty means not given.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub hosts: Vec<String>,
    pub data_root: Option<PathBuf>,
    pub storage_driver: Option<String>,
    pub storage_opts: Vec<String>,
    pub labels: Vec<String>,
    pub debug: bool,
    pub log_level: Option<String>,
    pub pidfile: Option<PathBuf>,
    pub tls: bool,
    pub tlsverify: bool,
    pub tlscacert: Option<PathBuf>,
    pub tlscert: Option<PathBuf>,
    pub tlskey: Option<PathBuf>,
    pub exec_root: Option<PathBuf>,
    pub group: Option<String>,
    pub live_restore: bool,
    pub log_driver: Option<String>,
    /// `--log-opt KEY=VALUE`.
    pub log_opts: Vec<String>,
    /// `--add-runtime NAME=PATH`.
    pub add_runtimes: Vec<String>,
    pub default_runtime: Option<String>,
    /// `--default-ulimit NAME=SOFT[:HARD]`.
    pub default_ulimits: Vec<String>,
    /// `--insecure-registry`.
    pub insecure_registries: Vec<String>,
    /// `--registry-mirror`.
    pub registry_mirrors: Vec<String>,
    pub max_concurrent_downloads: Option<usize>,
    pub max_concurrent_uploads: Option<usize>,
    /// Where per-registry certificates are (`/etc/strata/certs.d`).
    pub registry_certs_dir: Option<PathBuf>,
    /// `-b`, `--bip`, `--icc`, ...
    pub net: crate::netflags::NetFlags,
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub hosts: Vec<String>,
    pub data_root: PathBuf,
    pub storage_driver: Option<String>,
    pub storage_opts: Vec<String>,
    pub labels: Vec<String>,
    pub debug: bool,
    pub log_level: String,
    pub pidfile: PathBuf,
    /// TLS on TCP sockets (`--tlsverify` implies it).
    pub tls: bool,
    pub tlsverify: bool,
    pub tlscacert: PathBuf,
    pub tlscert: PathBuf,
    pub tlskey: PathBuf,
    pub exec_root: PathBuf,
    /// Group owning unix sockets; `None`: dockerd's default ("docker") if it exists.
    pub group: Option<String>,
    /// Containers keep running when the daemon stops (reloadable).
    pub live_restore: bool,
    /// Log driver of containers that name none (reloadable).
    pub log_driver: String,
    /// Its options (reloadable).
    pub log_opts: serde_json::Map<String, serde_json::Value>,
    /// OCI runtimes besides runc (reloadable).
    pub runtimes: std::collections::BTreeMap<String, strata_api::runtimes::RuntimeSpec>,
    /// Empty: runc (reloadable).
    pub default_runtime: String,
    /// HostConfig `Ulimits` entries (reloadable).
    pub default_ulimits: Vec<serde_json::Value>,
    /// Registries: insecure ones, mirrors, certs.d; download and upload limits (reloadable).
    pub distribution: strata_registry::service::Settings,
    /// The network settings.
    pub net: strata_netd::NetConfig,
}

/// Where dockerd looks for TLS files by default: `$DOCKER_CERT_PATH`, else `~/.docker`.
fn cert_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("DOCKER_CERT_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".docker")
}

fn boolean(v: &serde_json::Value, key: &str) -> anyhow::Result<bool> {
    v.as_bool()
        .with_context(|| format!("daemon.json: {key} must be true or false"))
}

fn strings(v: &serde_json::Value, key: &str) -> anyhow::Result<Vec<String>> {
    v.as_array()
        .and_then(|a| {
            a.iter()
                .map(|x| x.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
        })
        .with_context(|| format!("daemon.json: {key} must be an array of strings"))
}

fn string(v: &serde_json::Value, key: &str) -> anyhow::Result<String> {
    v.as_str()
        .map(String::from)
        .with_context(|| format!("daemon.json: {key} must be a string"))
}

/// The registry settings of flags or file (dockerd's defaults: 3 downloads, 5 uploads).
fn distribution(
    flags: &Flags,
    file: &serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<strata_registry::service::Settings> {
    let list = |k: &str, flag: &Vec<String>| -> anyhow::Result<Vec<String>> {
        match file.get(k) {
            Some(v) => strings(v, k),
            None => Ok(flag.clone()),
        }
    };
    let count = |k: &str, flag: Option<usize>, default: usize| -> anyhow::Result<usize> {
        let n = match file.get(k) {
            Some(v) => v
                .as_u64()
                .with_context(|| format!("daemon.json: {k} must be a positive integer"))?
                as usize,
            None => flag.unwrap_or(default),
        };
        if n == 0 {
            bail!("invalid {}: 0 (it must be at least 1)", k.replace('-', " "));
        }
        Ok(n)
    };
    let certs = flags
        .registry_certs_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/strata/certs.d"));
    let registries = strata_registry::endpoints::RegistryConfig::new(
        &list("insecure-registries", &flags.insecure_registries)?,
        &list("registry-mirrors", &flags.registry_mirrors)?,
        &certs,
    )?;
    Ok(strata_registry::service::Settings {
        registries,
        max_downloads: count(
            "max-concurrent-downloads",
            flags.max_concurrent_downloads,
            3,
        )?,
        max_uploads: count("max-concurrent-uploads", flags.max_concurrent_uploads, 5)?,
    })
}

/// Where daemon.json is unless `--config-file` says otherwise.
pub const DEFAULT_FILE: &str = "/etc/strata/daemon.json";

/// Reads daemon.json; a missing file is an empty one unless `required`.
pub fn read_file(
    path: &Path,
    required: bool,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(Default::default())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if text.trim().is_empty() {
        return Ok(Default::default());
    }
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("invalid JSON in {}: {e}", path.display()))?;
    let map = match v {
        serde_json::Value::Object(m) => m,
        _ => bail!(
            "{}: the configuration must be a JSON object",
            path.display()
        ),
    };
    let unknown: Vec<&String> = map.keys().filter(|k| !known_key(k)).collect();
    if !unknown.is_empty() {
        bail!(
            "{}: the following directives don't match any configuration option: {}",
            path.display(),
            unknown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(map)
}

/// Merges flags and file; refuses a setting given in both.
pub fn merge(
    flags: &Flags,
    file: &serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<Config> {
    let given: &[(&str, bool, String)] = &[
        (
            "log-driver",
            flags.log_driver.is_some(),
            format!("{:?}", flags.log_driver),
        ),
        (
            "log-opts",
            !flags.log_opts.is_empty(),
            format!("{:?}", flags.log_opts),
        ),
        ("live-restore", flags.live_restore, "true".into()),
        (
            "runtimes",
            !flags.add_runtimes.is_empty(),
            format!("{:?}", flags.add_runtimes),
        ),
        (
            "default-runtime",
            flags.default_runtime.is_some(),
            format!("{:?}", flags.default_runtime),
        ),
        (
            "default-ulimits",
            !flags.default_ulimits.is_empty(),
            format!("{:?}", flags.default_ulimits),
        ),
        (
            "insecure-registries",
            !flags.insecure_registries.is_empty(),
            format!("{:?}", flags.insecure_registries),
        ),
        (
            "registry-mirrors",
            !flags.registry_mirrors.is_empty(),
            format!("{:?}", flags.registry_mirrors),
        ),
        (
            "max-concurrent-downloads",
            flags.max_concurrent_downloads.is_some(),
            format!("{:?}", flags.max_concurrent_downloads),
        ),
        (
            "max-concurrent-uploads",
            flags.max_concurrent_uploads.is_some(),
            format!("{:?}", flags.max_concurrent_uploads),
        ),
        ("tls", flags.tls, "true".into()),
        ("tlsverify", flags.tlsverify, "true".into()),
        (
            "tlscacert",
            flags.tlscacert.is_some(),
            format!("{:?}", flags.tlscacert),
        ),
        (
            "tlscert",
            flags.tlscert.is_some(),
            format!("{:?}", flags.tlscert),
        ),
        (
            "tlskey",
            flags.tlskey.is_some(),
            format!("{:?}", flags.tlskey),
        ),
        (
            "exec-root",
            flags.exec_root.is_some(),
            format!("{:?}", flags.exec_root),
        ),
        ("group", flags.group.is_some(), format!("{:?}", flags.group)),
        (
            "hosts",
            !flags.hosts.is_empty(),
            format!("{:?}", flags.hosts),
        ),
        (
            "data-root",
            flags.data_root.is_some(),
            format!("{:?}", flags.data_root),
        ),
        (
            "storage-driver",
            flags.storage_driver.is_some(),
            format!("{:?}", flags.storage_driver),
        ),
        (
            "storage-opts",
            !flags.storage_opts.is_empty(),
            format!("{:?}", flags.storage_opts),
        ),
        (
            "labels",
            !flags.labels.is_empty(),
            format!("{:?}", flags.labels),
        ),
        ("debug", flags.debug, "true".into()),
        (
            "log-level",
            flags.log_level.is_some(),
            format!("{:?}", flags.log_level),
        ),
        (
            "pidfile",
            flags.pidfile.is_some(),
            format!("{:?}", flags.pidfile),
        ),
    ];
    let conflicts: Vec<String> = given
        .iter()
        .filter(|(k, g, _)| *g && file.contains_key(*k))
        .map(|(k, _, f)| format!("{k}: (from flag: {f}, from file: {})", file[*k]))
        .collect();
    if !conflicts.is_empty() {
        bail!("the following directives are specified both as a flag and in the configuration file: {}", conflicts.join(", "));
    }
    let get = |k: &str| file.get(k);
    let path_of = |k: &str, flag: &Option<PathBuf>, default: &str| -> anyhow::Result<PathBuf> {
        Ok(match get(k) {
            Some(v) => PathBuf::from(string(v, k)?),
            None => flag.clone().unwrap_or_else(|| cert_dir().join(default)),
        })
    };
    let tlsverify = match get("tlsverify") {
        Some(v) => boolean(v, "tlsverify")?,
        None => flags.tlsverify,
    };
    Ok(Config {
        tls: tlsverify
            || match get("tls") {
                Some(v) => boolean(v, "tls")?,
                None => flags.tls,
            },
        tlsverify,
        tlscacert: path_of("tlscacert", &flags.tlscacert, "ca.pem")?,
        tlscert: path_of("tlscert", &flags.tlscert, "cert.pem")?,
        tlskey: path_of("tlskey", &flags.tlskey, "key.pem")?,
        exec_root: match get("exec-root") {
            Some(v) => PathBuf::from(string(v, "exec-root")?),
            None => flags
                .exec_root
                .clone()
                .unwrap_or_else(|| PathBuf::from("/run/strata")),
        },
        group: match get("group") {
            Some(v) => Some(string(v, "group")?),
            None => flags.group.clone(),
        },
        log_driver: match get("log-driver") {
            Some(v) => string(v, "log-driver")?,
            None => flags
                .log_driver
                .clone()
                .unwrap_or_else(|| "json-file".into()),
        },
        log_opts: match get("log-opts") {
            Some(serde_json::Value::Object(m)) if m.values().all(|v| v.is_string()) => m.clone(),
            Some(_) => bail!("daemon.json: log-opts must be an object of strings"),
            None => {
                let mut m = serde_json::Map::new();
                for kv in &flags.log_opts {
                    let (k, v) = kv
                        .split_once('=')
                        .with_context(|| format!("--log-opt {kv}: expected KEY=VALUE"))?;
                    m.insert(k.to_string(), serde_json::Value::String(v.to_string()));
                }
                m
            }
        },
        runtimes: match get("runtimes") {
            Some(serde_json::Value::Object(m)) => {
                let mut out = std::collections::BTreeMap::new();
                for (name, v) in m {
                    let path = v["path"].as_str().with_context(|| {
                        format!("daemon.json: runtimes.{name}.path must be a string")
                    })?;
                    let args = match &v["runtimeArgs"] {
                        serde_json::Value::Null => Vec::new(),
                        a => strings(a, &format!("runtimes.{name}.runtimeArgs"))?,
                    };
                    out.insert(
                        name.clone(),
                        strata_api::runtimes::RuntimeSpec {
                            path: path.to_string(),
                            args,
                        },
                    );
                }
                out
            }
            Some(_) => bail!("daemon.json: runtimes must be an object"),
            None => {
                let mut out = std::collections::BTreeMap::new();
                for kv in &flags.add_runtimes {
                    let (k, v) = kv
                        .split_once('=')
                        .with_context(|| format!("--add-runtime {kv}: expected NAME=PATH"))?;
                    out.insert(
                        k.to_string(),
                        strata_api::runtimes::RuntimeSpec {
                            path: v.to_string(),
                            args: Vec::new(),
                        },
                    );
                }
                out
            }
        },
        default_runtime: match get("default-runtime") {
            Some(v) => string(v, "default-runtime")?,
            None => flags.default_runtime.clone().unwrap_or_default(),
        },
        default_ulimits: match get("default-ulimits") {
            Some(serde_json::Value::Object(m)) => {
                let mut out = Vec::new();
                for (name, v) in m {
                    let (soft, hard) = (v["Soft"].as_i64(), v["Hard"].as_i64());
                    let (Some(soft), Some(hard)) = (soft, hard) else {
                        bail!("daemon.json: default-ulimits.{name} needs integer Soft and Hard");
                    };
                    let u = strata_runtime::spec::ulimit::parse(&format!("{name}={soft}:{hard}"))
                        .map_err(|e| anyhow::anyhow!("daemon.json: default-ulimits: {e}"))?;
                    out.push(u);
                }
                out
            }
            Some(_) => bail!("daemon.json: default-ulimits must be an object"),
            None => flags
                .default_ulimits
                .iter()
                .map(|u| {
                    strata_runtime::spec::ulimit::parse(u)
                        .map_err(|e| anyhow::anyhow!("--default-ulimit: {e}"))
                })
                .collect::<anyhow::Result<_>>()?,
        },
        live_restore: match get("live-restore") {
            Some(v) => boolean(v, "live-restore")?,
            None => flags.live_restore,
        },
        distribution: distribution(flags, file)?,
        net: crate::netflags::merge(&flags.net, file)?,
        hosts: match get("hosts") {
            Some(v) => strings(v, "hosts")?,
            None => flags.hosts.clone(),
        },
        data_root: match get("data-root") {
            Some(v) => PathBuf::from(string(v, "data-root")?),
            None => flags
                .data_root
                .clone()
                .unwrap_or_else(|| PathBuf::from("/var/lib/strata")),
        },
        storage_driver: match get("storage-driver") {
            Some(v) => Some(string(v, "storage-driver")?),
            None => flags.storage_driver.clone(),
        },
        storage_opts: match get("storage-opts") {
            Some(v) => strings(v, "storage-opts")?,
            None => flags.storage_opts.clone(),
        },
        labels: match get("labels") {
            Some(v) => strings(v, "labels")?,
            None => flags.labels.clone(),
        },
        debug: match get("debug") {
            Some(v) => v
                .as_bool()
                .context("daemon.json: debug must be true or false")?,
            None => flags.debug,
        },
        log_level: match get("log-level") {
            Some(v) => string(v, "log-level")?,
            None => flags.log_level.clone().unwrap_or_else(|| "info".into()),
        },
        pidfile: match get("pidfile") {
            Some(v) => PathBuf::from(string(v, "pidfile")?),
            None => flags
                .pidfile
                .clone()
                .unwrap_or_else(|| PathBuf::from("/run/strata.pid")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(s: &str) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn flags_and_file_merge_and_conflict() {
        let f = Flags {
            labels: vec!["a=1".into()],
            ..Default::default()
        };
        let c = merge(&f, &file(r#"{"debug": true, "storage-driver": "vfs"}"#)).unwrap();
        assert!(c.debug && c.labels == vec!["a=1"] && c.storage_driver.as_deref() == Some("vfs"));
        assert_eq!(c.data_root, PathBuf::from("/var/lib/strata"));
        let e = merge(&f, &file(r#"{"labels": ["b=2"]}"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("specified both as a flag and in the configuration file")
                && e.contains("labels"),
            "{e}"
        );
        assert!(merge(&Flags::default(), &file(r#"{"labels": "x"}"#)).is_err());
        let c = merge(
            &Flags::default(),
            &file(r#"{"live-restore": true, "tlsverify": true}"#),
        )
        .unwrap();
        assert!(
            c.live_restore && c.tls && c.tlsverify,
            "tlsverify implies tls"
        );
        assert!(merge(&Flags::default(), &file(r#"{"live-restore": "yes"}"#)).is_err());
    }

    #[test]
    fn bad_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("daemon.json");
        std::fs::write(&p, "{\n  \"debug\": true,\n}").unwrap();
        let e = read_file(&p, true).unwrap_err().to_string();
        assert!(e.contains("at line 3 column 1"), "{e}");
        std::fs::write(&p, r#"{"bogus": 1}"#).unwrap();
        assert!(read_file(&p, true)
            .unwrap_err()
            .to_string()
            .contains("don't match any configuration option: bogus"));
        assert!(read_file(&d.path().join("none.json"), false)
            .unwrap()
            .is_empty());
        assert!(read_file(&d.path().join("none.json"), true).is_err());
    }
}
