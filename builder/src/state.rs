//! What each instruction does to a stage's state: the image config being built (Docker's
//! `config` object: `Env`, `Cmd`, `Entrypoint`, `WorkingDir`, `User`, `Labels`,
//! `ExposedPorts`, `Volumes`, `StopSignal`, `Healthcheck`, `Shell`, `OnBuild`) and the build
//! args in scope. Config-only instructions change the config and nothing else; `RUN`,
//! `COPY` and `ADD` come back as work for the daemon with their words expanded. Also the
//! image config a step leaves (its layer, if any, and history entry), as dockerd writes it.

use crate::instructions::{Command, Instruction, Step};
use crate::words::{self, WordsError};
use serde_json::{json, Map, Value};

/// A stage being built.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The image config's `config` object.
    pub config: Value,
    /// Build args in scope (declared by ARG in this stage, or before the first FROM and
    /// re-declared), with their values.
    pub args: Vec<(String, String)>,
    pub escape: char,
}

/// Work for the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// The config changed; no layer.
    Config,
    /// Run `argv` with `env` (the config's plus the build args), in a container of the
    /// current image.
    Run { argv: Vec<String>, env: Vec<String> },
    /// Copy `sources` (from the context, a stage or an image) to `dest` (absolute).
    Copy {
        sources: Vec<String>,
        dest: String,
        from: Option<String>,
        chown: Option<String>,
        chmod: Option<String>,
        /// ADD: local tar archives are unpacked, URLs fetched.
        add: bool,
    },
}

fn werr(line: usize, e: WordsError) -> crate::parser::ParseError {
    crate::parser::ParseError {
        line,
        message: e.to_string(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

impl State {
    /// A stage from its base image's config (`Null` for scratch) and the ARGs before the
    /// first FROM.
    pub fn new(base_config: &Value, escape: char) -> State {
        let config = match base_config {
            Value::Object(_) => base_config.clone(),
            _ => json!({}),
        };
        State {
            config,
            args: Vec::new(),
            escape,
        }
    }

    /// `Env` as pairs.
    pub fn env(&self) -> Vec<(String, String)> {
        strings(&self.config["Env"])
            .into_iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e, String::new()),
            })
            .collect()
    }

    /// What variables expand to: build args, then ENV over them (ENV wins, as in Docker).
    fn vars(&self) -> Vec<(String, String)> {
        let mut v = self.args.clone();
        v.extend(self.env());
        v
    }

    fn expand(&self, s: &str, line: usize) -> Result<String, crate::parser::ParseError> {
        words::expand(s, self.escape, &self.vars()).map_err(|e| werr(line, e))
    }

    fn set_env(&mut self, k: &str, v: &str) {
        let mut env = strings(&self.config["Env"]);
        env.retain(|e| e.split_once('=').map(|(n, _)| n) != Some(k) && e != k);
        env.push(format!("{k}={v}"));
        self.config["Env"] = json!(env);
    }

    fn shell(&self) -> Vec<String> {
        let s = strings(&self.config["Shell"]);
        if s.is_empty() {
            vec!["/bin/sh".into(), "-c".into()]
        } else {
            s
        }
    }

    fn map_entry(&mut self, key: &str, name: &str, value: Value) {
        if !self.config[key].is_object() {
            self.config[key] = Value::Object(Map::new());
        }
        if let Some(m) = self.config[key].as_object_mut() {
            m.insert(name.to_string(), value);
        }
    }

    /// Applies `step`; `meta` are the ARGs before the first FROM (an ARG re-declaring one
    /// without a default takes its value), `build_args` the `--build-arg` values.
    pub fn apply(
        &mut self,
        step: &Step,
        meta: &[(String, String)],
        build_args: &std::collections::BTreeMap<String, Option<String>>,
    ) -> Result<Work, crate::parser::ParseError> {
        let line = step.line;
        Ok(match &step.instruction {
            Instruction::From { .. } => Work::Config,
            Instruction::Run(c) => {
                let argv = c.argv(&self.shell());
                let mut env: Vec<String> = strings(&self.config["Env"]);
                for (k, v) in &self.args {
                    if !self.env().iter().any(|(n, _)| n == k) {
                        env.push(format!("{k}={v}"));
                    }
                }
                Work::Run { argv, env }
            }
            Instruction::Cmd(c) => {
                self.config["Cmd"] = json!(c.argv(&self.shell()));
                Work::Config
            }
            Instruction::Entrypoint(c) => {
                self.config["Entrypoint"] = match c {
                    Command::Shell(s) if s.trim().is_empty() => Value::Null,
                    c => json!(c.argv(&self.shell())),
                };
                // As Docker: a new ENTRYPOINT drops an inherited CMD.
                self.config["Cmd"] = Value::Null;
                Work::Config
            }
            Instruction::Env(pairs) => {
                for (k, raw) in pairs {
                    let v = self.expand(raw, line)?;
                    self.set_env(k, &v);
                }
                Work::Config
            }
            Instruction::Label(pairs) => {
                for (k, raw) in pairs {
                    let k = self.expand(k, line)?;
                    let v = self.expand(raw, line)?;
                    self.map_entry("Labels", &k, json!(v));
                }
                Work::Config
            }
            Instruction::Arg(args) => {
                for (name, default) in args {
                    let value = match build_args.get(name) {
                        Some(Some(v)) => Some(v.clone()),
                        _ => match default {
                            Some(d) => Some(self.expand(d, line)?),
                            None => meta
                                .iter()
                                .rev()
                                .find(|(k, _)| k == name)
                                .map(|(_, v)| v.clone()),
                        },
                    };
                    self.args.retain(|(k, _)| k != name);
                    if let Some(v) = value {
                        self.args.push((name.clone(), v));
                    }
                }
                Work::Config
            }
            Instruction::Workdir(w) => {
                let w = self.expand(w, line)?;
                let cur = self.config["WorkingDir"]
                    .as_str()
                    .unwrap_or("/")
                    .to_string();
                let joined = if w.starts_with('/') {
                    w
                } else {
                    format!("{}/{w}", cur.trim_end_matches('/'))
                };
                self.config["WorkingDir"] = json!(clean_abs(&joined));
                Work::Config
            }
            Instruction::User(u) => {
                self.config["User"] = json!(self.expand(u, line)?);
                Work::Config
            }
            Instruction::Expose(ports) => {
                for p in ports {
                    for p in words::expand_words(p, self.escape, &self.vars())
                        .map_err(|e| werr(line, e))?
                    {
                        let p = if p.contains('/') {
                            p
                        } else {
                            format!("{p}/tcp")
                        };
                        self.map_entry("ExposedPorts", &p, json!({}));
                    }
                }
                Work::Config
            }
            Instruction::Volume(vols) => {
                for v in vols {
                    let v = self.expand(v, line)?;
                    self.map_entry("Volumes", &v, json!({}));
                }
                Work::Config
            }
            Instruction::StopSignal(s) => {
                self.config["StopSignal"] = json!(self.expand(s, line)?);
                Work::Config
            }
            Instruction::Healthcheck(h) => {
                self.config["Healthcheck"] = match h {
                    None => json!({ "Test": ["NONE"] }),
                    Some(h) => {
                        let test = match &h.test {
                            Command::Exec(v) => {
                                let mut t = vec!["CMD".to_string()];
                                t.extend(v.iter().cloned());
                                t
                            }
                            Command::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                        };
                        let mut o = json!({ "Test": test });
                        for (k, v) in [
                            ("Interval", &h.interval),
                            ("Timeout", &h.timeout),
                            ("StartPeriod", &h.start_period),
                        ] {
                            if let Some(v) = v {
                                let ns =
                                    duration_ns(v).ok_or_else(|| crate::parser::ParseError {
                                        line,
                                        message: format!("invalid duration {v}"),
                                    })?;
                                o[k] = json!(ns);
                            }
                        }
                        if let Some(r) = &h.retries {
                            o["Retries"] =
                                json!(r.parse::<i64>().map_err(|_| crate::parser::ParseError {
                                    line,
                                    message: format!("invalid retries {r}"),
                                })?);
                        }
                        o
                    }
                };
                Work::Config
            }
            Instruction::Shell(s) => {
                self.config["Shell"] = json!(s);
                Work::Config
            }
            Instruction::Onbuild(t) => {
                let mut v = strings(&self.config["OnBuild"]);
                v.push(t.clone());
                self.config["OnBuild"] = json!(v);
                Work::Config
            }
            Instruction::Maintainer(_) => Work::Config,
            Instruction::Copy(c) | Instruction::Add(c) => {
                let add = matches!(step.instruction, Instruction::Add(_));
                let mut sources = Vec::new();
                for s in &c.sources {
                    sources.push(self.expand(s, line)?);
                }
                let dest = self.expand(&c.dest, line)?;
                let wd = self.config["WorkingDir"]
                    .as_str()
                    .unwrap_or("/")
                    .to_string();
                let abs = if dest.starts_with('/') {
                    dest.clone()
                } else {
                    format!("{}/{dest}", wd.trim_end_matches('/'))
                };
                // A trailing slash (or `.`) says "into this directory".
                let into = dest.ends_with('/') || dest == "." || dest.ends_with("/.");
                let cleaned = clean_abs(&abs);
                let dest = if into && cleaned != "/" {
                    format!("{cleaned}/")
                } else {
                    cleaned
                };
                let opt =
                    |o: &Option<String>| -> Result<Option<String>, crate::parser::ParseError> {
                        o.as_ref().map(|x| self.expand(x, line)).transpose()
                    };
                Work::Copy {
                    sources,
                    dest,
                    from: opt(&c.from)?,
                    chown: opt(&c.chown)?,
                    chmod: opt(&c.chmod)?,
                    add,
                }
            }
        })
    }
}

/// `/a/./b/../c` as `/a/c`.
fn clean_abs(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    format!("/{}", out.join("/"))
}

/// A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds.
pub fn duration_ns(s: &str) -> Option<i64> {
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let (unit, len) = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .find(|u| rest.starts_with(*u))
            .map(|u| (*u, u.len()))?;
        rest = &rest[len..];
        let mult = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            _ => 3600e9,
        };
        total += value * mult;
    }
    Some(total as i64)
}

/// The image config a step leaves: the parent's (or a new one for scratch), with the
/// stage's `config`, the new layer's diffID if any, and a history entry.
pub fn next_image(
    parent: &Value,
    config: &Value,
    diff_id: Option<&str>,
    created_by: &str,
    created: &str,
    arch: &str,
) -> Value {
    let mut out = match parent {
        Value::Object(_) => parent.clone(),
        _ => {
            json!({ "architecture": arch, "os": "linux", "rootfs": { "type": "layers", "diff_ids": [] } })
        }
    };
    out["config"] = config.clone();
    out["created"] = json!(created);
    if let Some(o) = out.as_object_mut() {
        o.remove("container");
        o.remove("container_config");
    }
    let mut diff_ids = out["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(d) = diff_id {
        diff_ids.push(json!(d));
    }
    out["rootfs"] = json!({ "type": "layers", "diff_ids": diff_ids });
    let mut history = out["history"].as_array().cloned().unwrap_or_default();
    let mut h = json!({ "created": created, "created_by": created_by });
    if diff_id.is_none() {
        h["empty_layer"] = json!(true);
    }
    history.push(h);
    out["history"] = Value::Array(history);
    out
}

/// The history line of a step, as dockerd's classic builder writes it.
pub fn created_by(step: &Step, work: &Work) -> String {
    match work {
        Work::Run { argv, .. } => argv.join(" "),
        _ => {
            let text = step
                .original
                .split_once(char::is_whitespace)
                .map(|(_, t)| t.trim())
                .unwrap_or("");
            let kw = step
                .original
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_uppercase();
            format!("/bin/sh -c #(nop) {kw} {text}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instructions::steps;
    use crate::parser::parse;
    use std::collections::BTreeMap;

    fn run(df: &str, args: &[(&str, &str)]) -> (State, Vec<Work>) {
        let d = parse(df).expect("parse");
        let st = steps(&d).expect("steps");
        let ba: BTreeMap<String, Option<String>> = args
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect();
        let mut s = State::new(&json!({ "Env": ["PATH=/bin"], "Cmd": ["sh"] }), d.escape);
        let meta = vec![("V".to_string(), "meta".to_string())];
        let mut work = Vec::new();
        for step in &st[1..] {
            work.push(s.apply(step, &meta, &ba).expect("apply"));
        }
        (s, work)
    }

    #[test]
    fn config_steps() {
        let (s, w) = run(
            "FROM x\nARG V\nARG W=w1\nENV A=$V B=\"${W}-x\" PATH=/usr/bin:$PATH\nWORKDIR /app\nWORKDIR sub/../lib\nLABEL l=$A\nEXPOSE 80 53/udp\nVOLUME /data\nUSER nobody\nSTOPSIGNAL SIGINT\nHEALTHCHECK --interval=1m30s CMD curl x\nSHELL [\"/bin/bash\", \"-c\"]\nCMD echo hi\nONBUILD RUN echo later\n",
            &[("W", "given")],
        );
        assert!(w.iter().all(|w| *w == Work::Config));
        let c = &s.config;
        assert_eq!(
            c["Env"],
            json!(["A=meta", "B=given-x", "PATH=/usr/bin:/bin"])
        );
        assert_eq!(c["WorkingDir"], "/app/lib");
        assert_eq!(c["Labels"]["l"], "meta");
        assert_eq!(c["ExposedPorts"], json!({ "80/tcp": {}, "53/udp": {} }));
        assert_eq!(c["Volumes"], json!({ "/data": {} }));
        assert_eq!(c["User"], "nobody");
        assert_eq!(c["StopSignal"], "SIGINT");
        assert_eq!(c["Healthcheck"]["Test"], json!(["CMD-SHELL", "curl x"]));
        assert_eq!(c["Healthcheck"]["Interval"], json!(90_000_000_000i64));
        assert_eq!(c["Cmd"], json!(["/bin/bash", "-c", "echo hi"]));
        assert_eq!(c["OnBuild"], json!(["RUN echo later"]));
    }

    #[test]
    fn run_and_copy_work() {
        let (s, w) = run(
            "FROM x\nARG TOKEN\nENV HOME=/root\nWORKDIR /w\nRUN echo $TOKEN\nRUN [\"ls\", \"-l\"]\nCOPY --chown=1:1 a b ./\nADD x.tar /opt/\nENTRYPOINT [\"/init\"]\n",
            &[("TOKEN", "t0k")],
        );
        assert_eq!(
            w[3],
            Work::Run {
                argv: vec!["/bin/sh".into(), "-c".into(), "echo $TOKEN".into()],
                env: vec!["PATH=/bin".into(), "HOME=/root".into(), "TOKEN=t0k".into()]
            }
        );
        assert!(
            matches!(&w[4], Work::Run { argv, .. } if argv == &vec!["ls".to_string(), "-l".to_string()])
        );
        assert_eq!(
            w[5],
            Work::Copy {
                sources: vec!["a".into(), "b".into()],
                dest: "/w/".into(),
                from: None,
                chown: Some("1:1".into()),
                chmod: None,
                add: false
            }
        );
        assert!(matches!(&w[6], Work::Copy { add: true, dest, .. } if dest == "/opt/"));
        assert_eq!(s.config["Entrypoint"], json!(["/init"]));
        assert_eq!(
            s.config["Cmd"],
            Value::Null,
            "ENTRYPOINT drops the inherited CMD"
        );
        assert!(
            !s.config["Env"].to_string().contains("TOKEN"),
            "build args are not kept"
        );
    }

    #[test]
    fn image_configs_and_history() {
        let base = json!({ "architecture": "amd64", "os": "linux", "config": {}, "rootfs": { "type": "layers", "diff_ids": ["sha256:a"] }, "history": [{ "created_by": "base" }] });
        let img = next_image(
            &base,
            &json!({ "Cmd": ["x"] }),
            Some("sha256:b"),
            "/bin/sh -c make",
            "2026-01-01T00:00:00Z",
            "amd64",
        );
        assert_eq!(img["rootfs"]["diff_ids"], json!(["sha256:a", "sha256:b"]));
        assert_eq!(img["history"].as_array().map(|h| h.len()), Some(2));
        assert_eq!(img["config"]["Cmd"], json!(["x"]));
        let nop = next_image(&Value::Null, &json!({}), None, "nop", "t", "amd64");
        assert_eq!(nop["history"][0]["empty_layer"], true);
        assert_eq!(nop["rootfs"]["diff_ids"], json!([]));
        assert_eq!(duration_ns("500ms"), Some(500_000_000));
        assert_eq!(duration_ns("x"), None);
    }
}
