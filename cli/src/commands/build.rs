//! `strata build`: the context directory sent as a tar without what `.dockerignore` excludes
//! (the Dockerfile and `.dockerignore` always go), the daemon's classic-builder stream
//! printed as the docker CLI prints it, and a failing RUN's exit code as the command's.

use crate::CliError;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use strata_api::client::{Body, Client};

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Name and optionally a tag (name:tag); repeatable.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: PATH/Dockerfile).
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Set build-time variables (KEY=VALUE, or KEY to take it from the environment).
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Set metadata for an image (KEY=VALUE).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Set the target build stage to build.
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use cache when building the image.
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the image.
    #[arg(long)]
    pub pull: bool,
    /// Suppress the build output and print image ID on success.
    #[arg(short, long)]
    pub quiet: bool,
    /// Always remove intermediate containers.
    #[arg(long = "force-rm")]
    pub force_rm: bool,
    /// Remove intermediate containers after a successful build.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub rm: bool,
    /// Networking mode for the RUN instructions.
    #[arg(long = "network")]
    pub network: Option<String>,
    /// Set platform if server is multi-platform capable (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
    /// The context directory.
    pub path: String,
}

/// Writes the context as a tar: every entry not excluded, parents of re-included entries,
/// the Dockerfile and `.dockerignore`.
fn context_tar<W: Write>(dir: &Path, dockerfile: &str, out: W) -> Result<W, CliError> {
    let io = |e: std::io::Error| CliError::Io {
        context: format!("archiving the context {}", dir.display()),
        source: e,
    };
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(t) => strata_builder::ignore::Ignore::parse(&t)
            .map_err(|e| CliError::Usage(format!(".dockerignore: {e}")))?,
        Err(_) => Default::default(),
    };
    let mut a = strata_graph::archive::TreeArchiver::new(dir, out).map_err(io)?;
    let mut added: std::collections::BTreeSet<String> = Default::default();
    fn walk<W: Write>(
        dir: &Path,
        rel: &str,
        ignore: &strata_builder::ignore::Ignore,
        keep: &[&str],
        a: &mut strata_graph::archive::TreeArchiver<W>,
        added: &mut std::collections::BTreeSet<String>,
    ) -> std::io::Result<()> {
        let here = if rel.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(rel)
        };
        let mut names: Vec<(String, bool)> = std::fs::read_dir(&here)?
            .filter_map(|e| e.ok())
            .map(|e| {
                let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
                (e.file_name().to_string_lossy().into_owned(), is_dir)
            })
            .collect();
        names.sort();
        for (n, is_dir) in names {
            let r = if rel.is_empty() {
                n
            } else {
                format!("{rel}/{n}")
            };
            let excluded = ignore.excludes(&r) && !keep.contains(&r.as_str());
            if !excluded {
                // Parents first (those skipped because excluded).
                let mut p = String::new();
                for part in r.split('/').take(r.split('/').count() - 1) {
                    if !p.is_empty() {
                        p.push('/');
                    }
                    p.push_str(part);
                    if added.insert(p.clone()) {
                        a.add_path(p.as_bytes())?;
                    }
                }
                if added.insert(r.clone()) {
                    a.add_path(r.as_bytes())?;
                }
            }
            if is_dir && (!excluded || ignore.has_exceptions()) {
                walk(dir, &r, ignore, keep, a, added)?;
            }
        }
        Ok(())
    }
    walk(
        dir,
        "",
        &ignore,
        &[dockerfile, ".dockerignore"],
        &mut a,
        &mut added,
    )
    .map_err(io)?;
    a.finish().map_err(io)
}

pub fn build(c: &Client, a: BuildArgs) -> Result<(), CliError> {
    let dir = PathBuf::from(&a.path);
    if !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "unable to prepare context: path {:?} not found",
            a.path
        )));
    }
    let dockerfile = a.file.clone().unwrap_or_else(|| "Dockerfile".into());
    let mut q: Vec<(&str, String)> = Vec::new();
    for t in &a.tags {
        q.push(("t", t.clone()));
    }
    q.push(("dockerfile", dockerfile.clone()));
    let mut args = serde_json::Map::new();
    for b in &a.build_args {
        match b.split_once('=') {
            Some((k, v)) => {
                args.insert(k.to_string(), serde_json::json!(v));
            }
            None => {
                let v = std::env::var(b).ok();
                args.insert(b.clone(), serde_json::json!(v));
            }
        }
    }
    if !args.is_empty() {
        q.push(("buildargs", serde_json::Value::Object(args).to_string()));
    }
    let mut labels = serde_json::Map::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), serde_json::json!(v));
    }
    if !labels.is_empty() {
        q.push(("labels", serde_json::Value::Object(labels).to_string()));
    }
    if let Some(t) = &a.target {
        q.push(("target", t.clone()));
    }
    if a.no_cache {
        q.push(("nocache", "1".into()));
    }
    if a.pull {
        q.push(("pull", "1".into()));
    }
    if a.quiet {
        q.push(("q", "1".into()));
    }
    if a.force_rm {
        q.push(("forcerm", "1".into()));
    }
    q.push(("rm", if a.rm { "1" } else { "0" }.into()));
    if let Some(n) = &a.network {
        q.push(("networkmode", n.clone()));
    }
    if let Some(p) = &a.platform {
        q.push(("platform", p.clone()));
    }
    let (mut rd, wr) = std::io::pipe().map_err(|e| CliError::Io {
        context: "creating a pipe".into(),
        source: e,
    })?;
    let ctx = dir.clone();
    let df = dockerfile.clone();
    let writer = std::thread::spawn(move || {
        context_tar(&ctx, &df, std::io::BufWriter::with_capacity(1 << 20, wr)).and_then(|w| {
            w.into_inner().map(drop).map_err(|e| CliError::Io {
                context: "sending the context".into(),
                source: e.into_error(),
            })
        })
    });
    let resp = c.call(
        "POST",
        "/build",
        &q,
        Body::Stream {
            content_type: "application/x-tar",
            reader: &mut rd,
        },
    );
    drop(rd);
    let wres = writer
        .join()
        .map_err(|_| CliError::Usage("the context writer panicked".into()))?;
    let mut resp = resp?;
    wres?;
    let mut code = None;
    let mut error = None;
    for v in super::json_lines(resp.reader()) {
        let v = v?;
        if let Some(e) = v["error"].as_str() {
            error = Some(e.to_string());
            code = v["errorDetail"]["code"].as_i64();
            continue;
        }
        if let Some(s) = v["stream"].as_str() {
            super::out(s)?;
        } else if let Some(st) = v["status"].as_str() {
            // A base image being pulled.
            if !a.quiet && v["progressDetail"]["total"].is_null() {
                match v["id"].as_str() {
                    Some(id) => super::out(&format!("{id}: {st}\n"))?,
                    None => super::out(&format!("{st}\n"))?,
                }
            }
        }
    }
    match error {
        None => Ok(()),
        Some(e) => {
            eprintln!("{e}");
            Err(CliError::Exit(code.filter(|c| *c > 0).unwrap_or(1) as i32))
        }
    }
}
