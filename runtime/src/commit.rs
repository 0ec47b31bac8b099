//! Commit: the config of an image made from a container (`docker commit`), with the
//! Dockerfile-style `--change` instructions dockerd accepts there.

use crate::container::{Container, ContainerConfig};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use strata_graph::DiffId;

/// Errors of a commit's inputs.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("{0} is not a valid change command")]
    NotAllowed(String),
    #[error("{instruction} requires {what}")]
    Malformed {
        instruction: String,
        what: &'static str,
    },
    #[error("invalid image config: {0}")]
    BadImageConfig(String),
}

/// Splits `a=b c="d e"` into pairs (quotes removed).
fn pairs(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut words = Vec::new();
    let (mut cur, mut quote, mut started) = (String::new(), None::<char>, false);
    for ch in s.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => {
                quote = Some(ch);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            (_, c) => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(cur);
    }
    for w in words {
        match w.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), v.to_string())),
            None => out.push((w, String::new())),
        }
    }
    out
}

/// `["a", "b"]` (exec form) or a shell command line.
fn command(args: &str, shell: &Option<Vec<String>>) -> Vec<String> {
    if let Ok(v) = serde_json::from_str::<Vec<String>>(args.trim()) {
        return v;
    }
    let mut sh = shell
        .clone()
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
    sh.push(args.trim().to_string());
    sh
}

/// A `HEALTHCHECK` instruction's arguments (`[--interval=D ...] CMD ...` or `NONE`) as a
/// config's `Healthcheck`, as dockerd's builder reads them.
pub fn healthcheck(rest: &str) -> Result<Value, CommitError> {
    let bad = |what| CommitError::Malformed {
        instruction: "HEALTHCHECK".into(),
        what,
    };
    let mut h = json!({});
    let mut rest = rest.trim();
    while let Some(flag) = rest.strip_prefix("--") {
        let (f, after) = flag.split_once(char::is_whitespace).unwrap_or((flag, ""));
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| bad("flags of the form --name=value"))?;
        let key = match k {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => "Retries",
            _ => {
                return Err(bad(
                    "known flags (interval, timeout, start-period, start-interval, retries)",
                ))
            }
        };
        let n = if key == "Retries" {
            v.parse::<i64>().ok()
        } else {
            strata_graph::time::go_duration_nanos(v)
        };
        h[key] = json!(n.ok_or_else(|| bad("valid flag values"))?);
        rest = after.trim_start();
    }
    let (kind, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    match kind.to_ascii_uppercase().as_str() {
        "NONE" if args.trim().is_empty() => Ok(json!({ "Test": ["NONE"] })),
        "CMD" if !args.trim().is_empty() => {
            let test = match serde_json::from_str::<Vec<String>>(args.trim()) {
                Ok(v) => [vec!["CMD".to_string()], v].concat(),
                Err(_) => vec!["CMD-SHELL".to_string(), args.trim().to_string()],
            };
            h["Test"] = json!(test);
            Ok(h)
        }
        _ => Err(bad("CMD followed by a command, or NONE")),
    }
}

/// Applies `--change` instructions (each may hold several lines) to a config.
pub fn apply_changes(cfg: &mut ContainerConfig, changes: &[String]) -> Result<(), CommitError> {
    for line in changes.iter().flat_map(|c| c.lines()) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (instr, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let upper = instr.to_ascii_uppercase();
        let need = |what| CommitError::Malformed {
            instruction: upper.clone(),
            what,
        };
        match upper.as_str() {
            "CMD" => cfg.cmd = Some(command(rest, &cfg.shell)),
            "ENTRYPOINT" => cfg.entrypoint = Some(command(rest, &cfg.shell)),
            "ENV" => {
                let kv = if rest.contains('=') {
                    pairs(rest)
                } else {
                    let (k, v) = rest
                        .split_once(char::is_whitespace)
                        .ok_or_else(|| need("a name and a value"))?;
                    vec![(k.to_string(), v.trim().to_string())]
                };
                if kv.is_empty() || kv.iter().any(|(k, _)| k.is_empty()) {
                    return Err(need("a name and a value"));
                }
                let env = cfg.env.get_or_insert_with(Vec::new);
                for (k, v) in kv {
                    env.retain(|e| e.split_once('=').map(|(x, _)| x).unwrap_or(e) != k);
                    env.push(format!("{k}={v}"));
                }
            }
            "LABEL" => {
                let kv = pairs(rest);
                if kv.is_empty() || kv.iter().any(|(k, _)| k.is_empty()) {
                    return Err(need("at least one name=value pair"));
                }
                let labels = cfg.labels.get_or_insert_with(BTreeMap::new);
                labels.extend(kv);
            }
            "EXPOSE" => {
                if rest.is_empty() {
                    return Err(need("at least one port"));
                }
                let ports = cfg.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    };
                    ports.insert(p, json!({}));
                }
            }
            "VOLUME" => {
                let list = serde_json::from_str::<Vec<String>>(rest)
                    .unwrap_or_else(|_| rest.split_whitespace().map(String::from).collect());
                if list.is_empty() {
                    return Err(need("at least one path"));
                }
                let vols = cfg.volumes.get_or_insert_with(BTreeMap::new);
                for v in list {
                    vols.insert(v, json!({}));
                }
            }
            "HEALTHCHECK" => cfg.healthcheck = Some(healthcheck(rest)?),
            "USER" if !rest.is_empty() => cfg.user = rest.to_string(),
            "WORKDIR" if !rest.is_empty() => cfg.working_dir = rest.to_string(),
            "STOPSIGNAL" if !rest.is_empty() => cfg.stop_signal = Some(rest.to_string()),
            "ONBUILD" if !rest.is_empty() => {
                cfg.on_build
                    .get_or_insert_with(Vec::new)
                    .push(rest.to_string());
            }
            "USER" | "WORKDIR" | "STOPSIGNAL" | "ONBUILD" => return Err(need("an argument")),
            _ => return Err(CommitError::NotAllowed(instr.to_string())),
        }
    }
    Ok(())
}

/// What a commit writes into the image besides the layer.
pub struct CommitSpec<'a> {
    pub container: &'a Container,
    /// The config sent with the request (`None`: the container's own).
    pub config: Option<ContainerConfig>,
    pub changes: &'a [String],
    pub author: &'a str,
    pub comment: &'a str,
    /// The new layer, `None` when the container changed nothing.
    pub diff_id: Option<DiffId>,
    pub created: String,
}

/// The config of the committed image: the parent image's config (`Null` when the image is
/// gone) with the container's config, the new layer and a history entry.
pub fn image_config(parent: &Value, spec: CommitSpec<'_>) -> Result<Value, CommitError> {
    let mut cfg = spec
        .config
        .clone()
        .unwrap_or_else(|| spec.container.config.clone());
    apply_changes(&mut cfg, spec.changes)?;
    cfg.merge_image(&spec.container.config);
    let mut out = match parent {
        Value::Object(o) => Value::Object(o.clone()),
        Value::Null => json!({ "architecture": go_arch(), "os": "linux" }),
        _ => return Err(CommitError::BadImageConfig("not an object".into())),
    };
    let container_cfg = serde_json::to_value(&spec.container.config)
        .map_err(|e| CommitError::BadImageConfig(e.to_string()))?;
    out["config"] =
        serde_json::to_value(&cfg).map_err(|e| CommitError::BadImageConfig(e.to_string()))?;
    out["container_config"] = container_cfg;
    out["container"] = json!(spec.container.id);
    out["created"] = json!(spec.created);
    if !spec.author.is_empty() {
        out["author"] = json!(spec.author);
    } else if let Some(o) = out.as_object_mut() {
        o.remove("author");
    }
    if !spec.comment.is_empty() {
        out["comment"] = json!(spec.comment);
    } else if let Some(o) = out.as_object_mut() {
        o.remove("comment");
    }
    let mut diff_ids = out["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(d) = &spec.diff_id {
        diff_ids.push(json!(d.to_string()));
    }
    out["rootfs"] = json!({ "type": "layers", "diff_ids": diff_ids });
    let mut history = out["history"].as_array().cloned().unwrap_or_default();
    let mut h = json!({
        "created": spec.created,
        "created_by": spec.container.command(),
    });
    if !spec.author.is_empty() {
        h["author"] = json!(spec.author);
    }
    if !spec.comment.is_empty() {
        h["comment"] = json!(spec.comment);
    }
    if spec.diff_id.is_none() {
        h["empty_layer"] = json!(true);
    }
    history.push(h);
    out["history"] = Value::Array(history);
    Ok(out)
}

/// The Go name of this machine's architecture, as image configs carry it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        a => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthcheck_instructions() {
        let h = healthcheck("--interval=1s --retries=2 CMD [\"true\"]").unwrap();
        assert_eq!(h["Test"], json!(["CMD", "true"]));
        assert_eq!(h["Interval"], json!(1_000_000_000i64));
        assert_eq!(h["Retries"], json!(2));
        assert_eq!(
            healthcheck("CMD curl -f x").unwrap()["Test"],
            json!(["CMD-SHELL", "curl -f x"])
        );
        assert_eq!(healthcheck("NONE").unwrap()["Test"], json!(["NONE"]));
        assert!(healthcheck("--bogus=1 CMD true").is_err());
        assert!(healthcheck("--interval=x CMD true").is_err());
        assert!(healthcheck("CMD").is_err());
    }

    #[test]
    fn changes_as_dockerd_reads_them() {
        let mut c = ContainerConfig::default();
        apply_changes(
            &mut c,
            &[
                "CMD [\"/bin/echo\", \"hi\"]\nENV A=1 B=\"two words\"".into(),
                "ENV C three".into(),
                "ENTRYPOINT top -b".into(),
                "LABEL x=y".into(),
                "EXPOSE 80 53/udp".into(),
                "WORKDIR /srv".into(),
                "USER nobody".into(),
                "VOLUME /data".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.cmd.unwrap(), ["/bin/echo", "hi"]);
        assert_eq!(c.env.unwrap(), ["A=1", "B=two words", "C=three"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "top -b"]);
        assert_eq!(c.labels.unwrap()["x"], "y");
        let ports = c.exposed_ports.unwrap();
        assert!(ports.contains_key("80/tcp") && ports.contains_key("53/udp"));
        assert_eq!(c.working_dir, "/srv");
        assert_eq!(c.user, "nobody");
        assert!(c.volumes.unwrap().contains_key("/data"));
        let mut c = ContainerConfig::default();
        assert_eq!(
            apply_changes(&mut c, &["RUN rm -rf /".into()])
                .unwrap_err()
                .to_string(),
            "RUN is not a valid change command"
        );
        assert!(apply_changes(&mut c, &["ENV".into()]).is_err());
    }
}
