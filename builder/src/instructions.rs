//! Parsed nodes into typed instructions, checked as dockerd checks them before anything runs
//! (argument counts, known flags, JSON form where required). Words that take build-time
//! variables are kept raw here and expanded when the step runs.

use crate::parser::{name_values, Args, Node, ParseError};

/// A command: exec form or shell form.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

impl Command {
    /// The argv, the shell form run through `shell` (`["/bin/sh", "-c"]` by default).
    pub fn argv(&self, shell: &[String]) -> Vec<String> {
        match self {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let mut v = shell.to_vec();
                v.push(s.clone());
                v
            }
        }
    }
}

/// `COPY`/`ADD` operands.
#[derive(Debug, Clone, PartialEq)]
pub struct CopySpec {
    pub sources: Vec<String>,
    pub dest: String,
    /// `--from=<stage|image>` (COPY only).
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
}

/// `HEALTHCHECK` settings; durations as written (`30s`).
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub test: Command,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub retries: Option<String>,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq)]
pub enum Instruction {
    From {
        image: String,
        name: Option<String>,
        platform: Option<String>,
    },
    Run(Command),
    Cmd(Command),
    Entrypoint(Command),
    Copy(CopySpec),
    Add(CopySpec),
    Env(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Workdir(String),
    User(String),
    Label(Vec<(String, String)>),
    Expose(Vec<String>),
    Volume(Vec<String>),
    StopSignal(String),
    /// `None`: `HEALTHCHECK NONE`.
    Healthcheck(Option<Health>),
    Shell(Vec<String>),
    /// The trigger, as written after `ONBUILD`.
    Onbuild(String),
    Maintainer(String),
}

/// An instruction with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub instruction: Instruction,
    pub line: usize,
    /// The instruction as written (`RUN echo hi`), for history and progress.
    pub original: String,
}

fn err(line: usize, m: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: m.into(),
    }
}

fn text(n: &Node) -> String {
    match &n.args {
        Args::Shell(s) => s.clone(),
        Args::Json(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}

/// Checks the flags against those allowed; returns a lookup.
fn flags<'a>(
    n: &'a Node,
    allowed: &[&str],
) -> Result<impl Fn(&str) -> Option<String> + 'a, ParseError> {
    for (name, value) in &n.flags {
        if !allowed.contains(&name.as_str()) {
            return Err(err(n.line, format!("Unknown flag: {name}")));
        }
        if value.is_none() {
            return Err(err(n.line, format!("Missing a value on flag: --{name}")));
        }
    }
    Ok(move |k: &str| {
        n.flags
            .iter()
            .rev()
            .find(|(name, _)| name == k)
            .and_then(|(_, v)| v.clone())
    })
}

fn command(n: &Node) -> Command {
    match &n.args {
        Args::Json(v) => Command::Exec(v.clone()),
        Args::Shell(s) => Command::Shell(s.clone()),
    }
}

fn words(n: &Node) -> Vec<String> {
    match &n.args {
        Args::Json(v) => v.clone(),
        Args::Shell(s) => s.split_whitespace().map(String::from).collect(),
    }
}

fn exactly_one(n: &Node, kw: &str) -> Result<String, ParseError> {
    let t = text(n);
    if t.trim().is_empty() || words(n).len() != 1 {
        return Err(err(n.line, format!("{kw} requires exactly one argument")));
    }
    Ok(t.trim().to_string())
}

/// A node into a step; `escape` is the file's escape character.
pub fn step(n: &Node, escape: char) -> Result<Step, ParseError> {
    let line = n.line;
    let kw = n.keyword.to_uppercase();
    let none = |allowed: &[&str]| flags(n, allowed).map(|_| ());
    let instruction = match n.keyword.as_str() {
        "from" => {
            let f = flags(n, &["platform"])?;
            let w = words(n);
            let (image, name) = match w.as_slice() {
                [image] => (image.clone(), None),
                [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    (image.clone(), Some(name.to_lowercase()))
                }
                _ => {
                    return Err(err(line, "FROM requires either one or three arguments"));
                }
            };
            Instruction::From {
                image,
                name,
                platform: f("platform"),
            }
        }
        "run" | "cmd" | "entrypoint" => {
            if n.keyword == "run" {
                none(&[])?;
                if text(n).trim().is_empty() {
                    return Err(err(line, "RUN requires at least one argument"));
                }
            } else {
                none(&[])?;
            }
            let c = command(n);
            match n.keyword.as_str() {
                "run" => Instruction::Run(c),
                "cmd" => Instruction::Cmd(c),
                _ => Instruction::Entrypoint(c),
            }
        }
        "copy" | "add" => {
            let allowed: &[&str] = if n.keyword == "copy" {
                &["from", "chown", "chmod"]
            } else {
                &["chown", "chmod"]
            };
            let f = flags(n, allowed)?;
            let w = match &n.args {
                Args::Json(v) => v.clone(),
                Args::Shell(s) => {
                    crate::words::split_raw(s, escape).map_err(|e| err(line, e.to_string()))?
                }
            };
            if w.len() < 2 {
                return Err(err(line, format!("{kw} requires at least two arguments")));
            }
            let spec = CopySpec {
                sources: w[..w.len() - 1].to_vec(),
                dest: w[w.len() - 1].clone(),
                from: f("from"),
                chown: f("chown"),
                chmod: f("chmod"),
            };
            if n.keyword == "copy" {
                Instruction::Copy(spec)
            } else {
                Instruction::Add(spec)
            }
        }
        "env" | "label" => {
            none(&[])?;
            let pairs = name_values(&n.keyword, &text(n), escape, line)?;
            if n.keyword == "env" {
                Instruction::Env(pairs)
            } else {
                Instruction::Label(pairs)
            }
        }
        "arg" => {
            none(&[])?;
            let w =
                crate::words::split_raw(&text(n), escape).map_err(|e| err(line, e.to_string()))?;
            if w.is_empty() {
                return Err(err(line, "ARG requires exactly one argument"));
            }
            let mut out = Vec::new();
            for a in w {
                let (name, default) = match a.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (a, None),
                };
                if name.is_empty() {
                    return Err(err(line, "ARG names can not be blank"));
                }
                out.push((name, default));
            }
            Instruction::Arg(out)
        }
        "workdir" => {
            none(&[])?;
            let t = text(n);
            if t.trim().is_empty() {
                return Err(err(line, "WORKDIR requires exactly one argument"));
            }
            Instruction::Workdir(t.trim().to_string())
        }
        "user" => {
            none(&[])?;
            Instruction::User(exactly_one(n, "USER")?)
        }
        "stopsignal" => {
            none(&[])?;
            Instruction::StopSignal(exactly_one(n, "STOPSIGNAL")?)
        }
        "maintainer" => {
            none(&[])?;
            Instruction::Maintainer(text(n).trim().to_string())
        }
        "expose" | "volume" => {
            none(&[])?;
            let w = words(n);
            if w.is_empty() {
                return Err(err(line, format!("{kw} requires at least one argument")));
            }
            if n.keyword == "expose" {
                Instruction::Expose(w)
            } else {
                Instruction::Volume(w)
            }
        }
        "shell" => {
            none(&[])?;
            match &n.args {
                Args::Json(v) if !v.is_empty() => Instruction::Shell(v.clone()),
                _ => return Err(err(line, "SHELL requires the arguments to be in JSON form")),
            }
        }
        "healthcheck" => {
            let f = flags(n, &["interval", "timeout", "start-period", "retries"])?;
            let t = text(n);
            let t = t.trim();
            let (first, rest) = match t.find(char::is_whitespace) {
                Some(k) => (&t[..k], t[k..].trim_start()),
                None => (t, ""),
            };
            if first.eq_ignore_ascii_case("none") {
                if !rest.is_empty() || !n.flags.is_empty() {
                    return Err(err(line, "HEALTHCHECK NONE takes no arguments"));
                }
                Instruction::Healthcheck(None)
            } else if first.eq_ignore_ascii_case("cmd") {
                if rest.is_empty() {
                    return Err(err(line, "Missing command after HEALTHCHECK CMD"));
                }
                let test = match serde_json::from_str::<Vec<String>>(rest) {
                    Ok(v) if rest.starts_with('[') => Command::Exec(v),
                    _ => Command::Shell(rest.to_string()),
                };
                Instruction::Healthcheck(Some(Health {
                    test,
                    interval: f("interval"),
                    timeout: f("timeout"),
                    start_period: f("start-period"),
                    retries: f("retries"),
                }))
            } else {
                return Err(err(
                    line,
                    format!(
                        "Unknown type \"{}\" in HEALTHCHECK (try CMD)",
                        first.to_uppercase()
                    ),
                ));
            }
        }
        "onbuild" => {
            none(&[])?;
            let t = text(n).trim().to_string();
            let inner = t
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            match inner.as_str() {
                "" => return Err(err(line, "ONBUILD requires at least one argument")),
                "onbuild" => {
                    return Err(err(
                        line,
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    ))
                }
                "from" | "maintainer" => {
                    return Err(err(
                        line,
                        format!(
                            "{} isn't allowed as an ONBUILD trigger",
                            inner.to_uppercase()
                        ),
                    ))
                }
                _ => {}
            }
            // The trigger must parse on its own.
            step(&crate::parser::node(&t, line)?, escape)?;
            Instruction::Onbuild(t)
        }
        other => {
            return Err(err(
                line,
                format!("unknown instruction: {}", other.to_uppercase()),
            ))
        }
    };
    Ok(Step {
        instruction,
        line,
        original: n.original.clone(),
    })
}

/// Every node of a Dockerfile into steps; the first must be `FROM` (only `ARG` may come
/// before it).
pub fn steps(df: &crate::parser::Dockerfile) -> Result<Vec<Step>, ParseError> {
    let mut out = Vec::new();
    for n in &df.nodes {
        out.push(step(n, df.escape)?);
    }
    if let Some(first) = out
        .iter()
        .find(|s| !matches!(s.instruction, Instruction::Arg(_)))
    {
        if !matches!(first.instruction, Instruction::From { .. }) {
            return Err(err(
                first.line,
                "no build stage in current context: the first instruction must be FROM",
            ));
        }
    } else {
        return Err(err(1, "the Dockerfile has no FROM instruction"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn one(text: &str) -> Result<Instruction, ParseError> {
        let df = parse(text)?;
        step(&df.nodes[0], df.escape).map(|s| s.instruction)
    }

    #[test]
    fn typed_instructions() {
        assert_eq!(
            one("FROM --platform=linux/arm64 busybox:1 AS Build").expect("from"),
            Instruction::From {
                image: "busybox:1".into(),
                name: Some("build".into()),
                platform: Some("linux/arm64".into())
            }
        );
        assert_eq!(
            one("COPY --from=build --chown=1:2 a \"b c\" /dst/").expect("copy"),
            Instruction::Copy(CopySpec {
                sources: vec!["a".into(), "\"b c\"".into()],
                dest: "/dst/".into(),
                from: Some("build".into()),
                chown: Some("1:2".into()),
                chmod: None
            })
        );
        assert_eq!(
            one("ARG A=1 B").expect("arg"),
            Instruction::Arg(vec![("A".into(), Some("1".into())), ("B".into(), None)])
        );
        assert_eq!(
            one("HEALTHCHECK --interval=5s --retries=3 CMD [\"true\"]").expect("health"),
            Instruction::Healthcheck(Some(Health {
                test: Command::Exec(vec!["true".into()]),
                interval: Some("5s".into()),
                timeout: None,
                start_period: None,
                retries: Some("3".into())
            }))
        );
        assert_eq!(
            one("healthcheck none").expect("none"),
            Instruction::Healthcheck(None)
        );
        assert_eq!(
            one("ONBUILD RUN echo hi").expect("onbuild"),
            Instruction::Onbuild("RUN echo hi".into())
        );
        assert_eq!(
            Command::Shell("echo hi".into()).argv(&["/bin/sh".into(), "-c".into()]),
            vec!["/bin/sh", "-c", "echo hi"]
        );
    }

    #[test]
    fn refused_before_anything_runs() {
        let e = |t: &str| one(t).expect_err(t).to_string();
        assert_eq!(
            e("FROM a b"),
            "dockerfile parse error line 1: FROM requires either one or three arguments"
        );
        assert!(e("COPY onlyone").contains("COPY requires at least two arguments"));
        assert!(e("ADD --from=x a b").contains("Unknown flag: from"));
        assert!(e("SHELL /bin/sh -c").contains("SHELL requires the arguments to be in JSON form"));
        assert!(e("WORKDIR").contains("WORKDIR requires exactly one argument"));
        assert!(e("ONBUILD ONBUILD RUN x").contains("isn't allowed"));
        assert!(e("ONBUILD FROM x").contains("FROM isn't allowed as an ONBUILD trigger"));
        assert!(e("RUN").contains("RUN requires at least one argument"));
        assert!(e("HEALTHCHECK FOO").contains("Unknown type"));
        let df = parse("ARG V=1\nRUN echo\n").expect("parse");
        assert!(steps(&df)
            .expect_err("no FROM")
            .to_string()
            .contains("line 2"));
        let df = parse("ARG V=1\nFROM busybox:$V\nRUN echo\n").expect("parse");
        assert_eq!(steps(&df).expect("steps").len(), 3);
    }
}
