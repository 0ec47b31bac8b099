//! A container's mount points: what `-v`, `--mount`, `--volumes-from` and the image's
//! `VOLUME`s resolve to at create, kept in its record (inspect's `Mounts`), and turned into
//! OCI spec mounts at each start.
//!
//! Precedence, as dockerd's: `--volumes-from` first, then `-v` and `--mount` (which may not
//! name one destination twice) replace it, then the config's `Volumes` become anonymous
//! volumes where nothing else is mounted.

use super::{VolumeError, VolumeSpec, VolumeStore, ANONYMOUS_LABEL};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Errors resolving mount points; all the user's (400) except the store's I/O.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

fn invalid(s: impl Into<String>) -> MountError {
    MountError::Invalid(s.into())
}

/// One mount of a container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The volume's name (volumes only).
    #[serde(rename = "Name", default)]
    pub name: String,
    /// The host path bound (for a volume, its data directory).
    #[serde(rename = "Source", default)]
    pub source: String,
    #[serde(rename = "Destination")]
    pub destination: String,
    #[serde(rename = "Driver", default)]
    pub driver: String,
    /// The mode as given (`ro`, `z`, ...).
    #[serde(rename = "Mode", default)]
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    #[serde(rename = "Propagation", default)]
    pub propagation: String,
    /// A volume filled from the image's content at that path while it is empty.
    #[serde(default)]
    pub copy_data: bool,
    /// tmpfs mount options (size, mode).
    #[serde(default)]
    pub tmpfs_options: Vec<String>,
    /// A `-v` bind whose missing source is created (dockerd does so; `--mount` refuses).
    #[serde(default)]
    pub create_source: bool,
}

impl MountPoint {
    /// As inspect's `Mounts` shows it.
    pub fn inspect(&self) -> Value {
        let mut v = json!({
            "Type": self.kind, "Source": self.source, "Destination": self.destination,
            "Mode": self.mode, "RW": self.rw, "Propagation": self.propagation,
        });
        if self.kind == "volume" {
            v["Name"] = json!(self.name);
            v["Driver"] = json!(self.driver);
        }
        v
    }

    /// The OCI spec mount; a missing `-v` source is created here.
    pub fn spec(&self) -> Result<Value, MountError> {
        if self.kind == "tmpfs" {
            let mut o: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
            o.extend(self.tmpfs_options.iter().cloned());
            if !self.rw {
                o.push("ro".into());
            }
            return Ok(json!({ "destination": self.destination, "type": "tmpfs",
                "source": "tmpfs", "options": o }));
        }
        let src = std::path::Path::new(&self.source);
        if !src.exists() {
            if self.create_source {
                std::fs::create_dir_all(src).map_err(|e| {
                    invalid(format!(
                        "error while creating mount source path '{}': {e}",
                        self.source
                    ))
                })?;
            } else {
                return Err(invalid(format!(
                    "invalid mount config for type \"{}\": bind source path does not exist: {}",
                    self.kind, self.source
                )));
            }
        }
        let prop = if self.propagation.is_empty() {
            "rprivate"
        } else {
            &self.propagation
        };
        let mut o = vec!["rbind".to_string(), prop.to_string()];
        if !self.rw {
            o.push("ro".into());
        }
        Ok(json!({ "destination": self.destination, "type": "bind",
            "source": self.source, "options": o }))
    }
}

/// A mount point still to be made: a volume to acquire, or a ready mount.
#[derive(Debug, Clone)]
struct Planned {
    mount: MountPoint,
    volume: Option<VolumeSpec>,
}

/// Cleans a destination as Go's `filepath.Clean` would for an absolute path.
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn destination(kind: &str, d: &str, spec: &str) -> Result<String, MountError> {
    if !d.starts_with('/') {
        return Err(invalid(format!(
            "invalid volume specification: '{spec}': invalid mount config for type \"{kind}\": invalid mount path: '{d}' mount path must be absolute"
        )));
    }
    let d = clean(d);
    if d == "/" {
        return Err(invalid(format!(
            "invalid volume specification: '{spec}': invalid mount config for type \"{kind}\": destination can't be '/'"
        )));
    }
    Ok(d)
}

fn anonymous_spec(labels: BTreeMap<String, String>) -> VolumeSpec {
    let mut labels = labels;
    labels.insert(ANONYMOUS_LABEL.into(), String::new());
    VolumeSpec {
        labels,
        ..Default::default()
    }
}

/// Parses one `-v` (`Binds`) entry: `SRC:DST[:OPTS]`, a host path or a volume name.
fn parse_bind(spec: &str) -> Result<Planned, MountError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => return Err(invalid(format!("invalid volume specification: '{spec}'"))),
    };
    if src.is_empty() {
        return Err(invalid(format!("invalid volume specification: '{spec}'")));
    }
    let is_bind = src.starts_with('/');
    let kind = if is_bind { "bind" } else { "volume" };
    let mut m = MountPoint {
        kind: kind.into(),
        destination: destination(kind, dst, spec)?,
        rw: true,
        mode: opts.to_string(),
        copy_data: !is_bind,
        create_source: is_bind,
        ..Default::default()
    };
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => m.rw = false,
            "rw" => m.rw = true,
            "nocopy" if !is_bind => m.copy_data = false,
            "z" | "Z" | "consistent" | "cached" | "delegated" => {}
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" if is_bind => {
                m.propagation = o.to_string()
            }
            _ => return Err(invalid(format!("invalid mode: {opts}"))),
        }
    }
    if is_bind {
        m.source = src.to_string();
        if m.propagation.is_empty() {
            m.propagation = "rprivate".into();
        }
        return Ok(Planned {
            mount: m,
            volume: None,
        });
    }
    super::check_name(src)?;
    m.mode = if opts.is_empty() {
        "z".into()
    } else {
        opts.to_string()
    };
    Ok(Planned {
        mount: m,
        volume: Some(VolumeSpec {
            name: src.to_string(),
            ..Default::default()
        }),
    })
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect()
}

/// Parses one `--mount` (`Mounts`) entry.
fn parse_mount(m: &Value) -> Result<Planned, MountError> {
    let kind = m["Type"].as_str().unwrap_or("volume");
    let target = m["Target"].as_str().unwrap_or_default();
    if !target.starts_with('/') {
        return Err(invalid(format!(
            "invalid mount config for type \"{kind}\": invalid mount path: '{target}' mount path must be absolute"
        )));
    }
    let rw = m["ReadOnly"].as_bool() != Some(true);
    let src = m["Source"].as_str().unwrap_or_default();
    let mut mp = MountPoint {
        kind: kind.into(),
        destination: clean(target),
        rw,
        ..Default::default()
    };
    match kind {
        "bind" => {
            if src.is_empty() {
                return Err(invalid(
                    "invalid mount config for type \"bind\": field Source must not be empty",
                ));
            }
            if !std::path::Path::new(src).exists() {
                return Err(invalid(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {src}"
                )));
            }
            mp.source = src.to_string();
            mp.propagation = m["BindOptions"]["Propagation"]
                .as_str()
                .filter(|p| !p.is_empty())
                .unwrap_or("rprivate")
                .to_string();
            Ok(Planned {
                mount: mp,
                volume: None,
            })
        }
        "tmpfs" => {
            if !src.is_empty() {
                return Err(invalid(
                    "invalid mount config for type \"tmpfs\": field Source must not be specified",
                ));
            }
            if let Some(s) = m["TmpfsOptions"]["SizeBytes"].as_i64().filter(|s| *s > 0) {
                mp.tmpfs_options.push(format!("size={s}"));
            }
            if let Some(mode) = m["TmpfsOptions"]["Mode"].as_u64() {
                mp.tmpfs_options.push(format!("mode={mode:o}"));
            }
            Ok(Planned {
                mount: mp,
                volume: None,
            })
        }
        "volume" => {
            let vo = &m["VolumeOptions"];
            mp.copy_data = vo["NoCopy"].as_bool() != Some(true);
            let labels = string_map(&vo["Labels"]);
            let spec = if src.is_empty() {
                anonymous_spec(labels)
            } else {
                super::check_name(src)?;
                VolumeSpec {
                    name: src.to_string(),
                    labels,
                    driver: vo["DriverConfig"]["Name"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    options: string_map(&vo["DriverConfig"]["Options"]),
                }
            };
            Ok(Planned {
                mount: mp,
                volume: Some(spec),
            })
        }
        other => Err(invalid(format!(
            "mount type \"{other}\" is not supported (bind, volume, tmpfs)"
        ))),
    }
}

/// Parses a `--volumes-from` entry: `CONTAINER[:ro|:rw]`.
pub fn parse_volumes_from(s: &str) -> Result<(String, Option<bool>), MountError> {
    match s.split_once(':') {
        None => Ok((s.to_string(), None)),
        Some((c, "rw")) => Ok((c.to_string(), Some(true))),
        Some((c, "ro")) => Ok((c.to_string(), Some(false))),
        Some((_, m)) => Err(invalid(format!("invalid mode: {m}"))),
    }
}

/// Checks `Binds`, `Mounts` and `VolumesFrom` without making anything (for early 400s).
pub fn check(hc: &Value) -> Result<(), MountError> {
    plan(hc, &Value::Null, &|_| Ok(Vec::new())).map(drop)
}

fn plan(
    hc: &Value,
    config_volumes: &Value,
    volumes_from: &dyn Fn(&str) -> Result<Vec<MountPoint>, MountError>,
) -> Result<Vec<Planned>, MountError> {
    let mut out: Vec<Planned> = Vec::new();
    for f in hc["VolumesFrom"].as_array().into_iter().flatten() {
        let f = f
            .as_str()
            .ok_or_else(|| invalid("VolumesFrom must be a list of strings"))?;
        let (name, rw) = parse_volumes_from(f)?;
        for mut m in volumes_from(&name)? {
            if let Some(rw) = rw {
                m.rw = rw;
            }
            m.copy_data = false;
            let volume = (m.kind == "volume").then(|| VolumeSpec {
                name: m.name.clone(),
                ..Default::default()
            });
            out.retain(|p| p.mount.destination != m.destination);
            out.push(Planned { mount: m, volume });
        }
    }
    let mut user: Vec<Planned> = Vec::new();
    for b in hc["Binds"].as_array().into_iter().flatten() {
        user.push(parse_bind(
            b.as_str()
                .ok_or_else(|| invalid("Binds must be a list of strings"))?,
        )?);
    }
    for m in hc["Mounts"].as_array().into_iter().flatten() {
        user.push(parse_mount(m)?);
    }
    for (i, p) in user.iter().enumerate() {
        if user[..i]
            .iter()
            .any(|q| q.mount.destination == p.mount.destination)
        {
            return Err(invalid(format!(
                "Duplicate mount point: {}",
                p.mount.destination
            )));
        }
    }
    out.retain(|p| {
        !user
            .iter()
            .any(|u| u.mount.destination == p.mount.destination)
    });
    out.extend(user);
    for (dest, _) in config_volumes.as_object().into_iter().flatten() {
        let d = destination("volume", dest, dest)?;
        let tmpfs = hc["Tmpfs"]
            .as_object()
            .is_some_and(|t| t.keys().any(|k| clean(k) == d));
        if tmpfs || out.iter().any(|p| p.mount.destination == d) {
            continue;
        }
        out.push(Planned {
            mount: MountPoint {
                kind: "volume".into(),
                destination: d,
                rw: true,
                copy_data: true,
                ..Default::default()
            },
            volume: Some(anonymous_spec(BTreeMap::new())),
        });
    }
    Ok(out)
}

/// What [`resolve`] made.
#[derive(Debug, Default)]
pub struct Resolved {
    pub mounts: Vec<MountPoint>,
    /// Volumes created for the container (for `volume create` events).
    pub created: Vec<String>,
}

/// Resolves a new container's mount points, creating the volumes it names and recording
/// its references to them. On error nothing is left referenced; volumes made for it are
/// removed again.
pub fn resolve(
    hc: &Value,
    config_volumes: &Value,
    store: &VolumeStore,
    container: &str,
    volumes_from: &dyn Fn(&str) -> Result<Vec<MountPoint>, MountError>,
) -> Result<Resolved, MountError> {
    let planned = plan(hc, config_volumes, volumes_from)?;
    let mut out = Resolved::default();
    for p in planned {
        let mut m = p.mount;
        if let Some(spec) = p.volume {
            match store.acquire(&spec, container) {
                Ok((v, created)) => {
                    m.name = v.name.clone();
                    m.driver = v.driver.clone();
                    m.source = store.data_path(&v.name).display().to_string();
                    if created {
                        out.created.push(v.name);
                    }
                }
                Err(e) => {
                    undo(store, container, &out.created);
                    return Err(e.into());
                }
            }
        }
        out.mounts.push(m);
    }
    Ok(out)
}

/// Drops a container's references and removes the volumes made for it.
pub fn undo(store: &VolumeStore, container: &str, created: &[String]) {
    store.release(container);
    for v in created {
        if let Err(e) = store.remove(v) {
            tracing::warn!(volume = %v, "removing a volume made for a failed create: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_and_volumes() {
        let b = parse_bind("/srv/data:/data:ro,rshared").unwrap();
        assert!(!b.mount.rw);
        assert_eq!(b.mount.propagation, "rshared");
        assert!(b.volume.is_none());
        let v = parse_bind("cache:/var/cache/:nocopy").unwrap();
        assert_eq!(v.volume.unwrap().name, "cache");
        assert_eq!(v.mount.destination, "/var/cache");
        assert!(!v.mount.copy_data);
        assert!(parse_bind("/a:rel").is_err());
        assert!(parse_bind("/a:/b:bogus").is_err());
        assert!(parse_bind("/a:/")
            .unwrap_err()
            .to_string()
            .contains("can't be '/'"));
        assert!(parse_bind("a:/b")
            .unwrap_err()
            .to_string()
            .contains("too short"));
        assert!(parse_volumes_from("web:ro").unwrap().1 == Some(false));
        assert!(parse_volumes_from("web:xx").is_err());
    }

    #[test]
    fn precedence_and_duplicates() {
        let hc = json!({ "Binds": ["/h:/a", "/h2:/a/"] });
        assert_eq!(
            check(&hc).unwrap_err().to_string(),
            "Duplicate mount point: /a"
        );
        let t = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(t.path()).unwrap();
        let hc = json!({
            "Binds": ["/host:/data", "named:/named"],
            "Mounts": [{"Type": "tmpfs", "Target": "/t"}],
            "VolumesFrom": ["other:ro"],
        });
        let from = |n: &str| -> Result<Vec<MountPoint>, MountError> {
            assert_eq!(n, "other");
            Ok(vec![
                MountPoint {
                    kind: "bind".into(),
                    source: "/x".into(),
                    destination: "/data".into(),
                    rw: true,
                    ..Default::default()
                },
                MountPoint {
                    kind: "bind".into(),
                    source: "/y".into(),
                    destination: "/shared".into(),
                    rw: true,
                    ..Default::default()
                },
            ])
        };
        let r = resolve(&hc, &json!({"/data": {}, "/anon": {}}), &store, "c1", &from).unwrap();
        let dests: Vec<_> = r
            .mounts
            .iter()
            .map(|m| (m.destination.as_str(), m.rw))
            .collect();
        assert_eq!(
            dests,
            [
                ("/shared", false),
                ("/data", true),
                ("/named", true),
                ("/t", true),
                ("/anon", true)
            ]
        );
        assert_eq!(r.created.len(), 2, "named and the anonymous one");
        let anon = &r.mounts[4];
        assert!(store.get(&anon.name).unwrap().is_anonymous());
        assert_eq!(store.users("named"), ["c1"]);
        undo(&store, "c1", &r.created);
        assert!(store.list().is_empty());
    }
}
