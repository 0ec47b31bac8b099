//! `run`, `start`, `stop`, `restart`, `kill`, `wait`, `logs`.

use super::containers::{create_container, CreateArgs};
use super::session::{demux, session};
use super::{each, out};
use crate::CliError;
use clap::Args;
use strata_api::client::{escape, Body, Client};

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run container in background and print container ID.
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub create: CreateArgs,
}

#[derive(Args, Debug)]
pub struct ContainersArg {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Seconds to wait before killing the container.
    #[arg(short, long)]
    pub time: Option<i64>,
    /// Signal to send to the container.
    #[arg(short, long)]
    pub signal: Option<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Signal to send to the container.
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    pub container: String,
    /// Follow log output.
    #[arg(short, long)]
    pub follow: bool,
    /// Show timestamps.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Number of lines to show from the end of the logs.
    #[arg(short = 'n', long)]
    pub tail: Option<String>,
    /// Show logs since timestamp or relative (e.g. 42m).
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative (e.g. 42m).
    #[arg(long)]
    pub until: Option<String>,
}

fn cpath(n: &str) -> String {
    escape(n)
}

fn start_one(c: &Client, id: &str) -> Result<(), CliError> {
    c.call(
        "POST",
        &format!("/containers/{}/start", cpath(id)),
        &[],
        Body::None,
    )?;
    Ok(())
}

/// The exit code a failed start gives `docker run`: 127/126 for a command that cannot run,
/// else 125 (an error of the engine).
fn start_failure_code(msg: &str) -> i32 {
    strata_runtime::lifecycle::command_failure_code(msg).unwrap_or(125)
}

pub fn run(c: &Client, a: RunArgs) -> Result<(), CliError> {
    let auto_remove = a.create.rm;
    let tty = a.create.tty;
    let interactive = a.create.interactive;
    let id = create_container(c, a.create)?;
    if a.detach {
        if let Err(e) = start_one(c, &id) {
            let code = start_failure_code(&e.to_string());
            eprintln!("{e}");
            return Err(CliError::Exit(code));
        }
        return out(&format!("{id}\n"));
    }
    let mut attach = c.upgrade(
        "POST",
        &format!("/containers/{}/attach", cpath(&id)),
        &[
            ("stream", "1".into()),
            ("stdin", if interactive { "1" } else { "0" }.into()),
            ("stdout", "1".into()),
            ("stderr", "1".into()),
        ],
        Body::None,
    )?;
    let waiter = {
        let c = c.clone();
        let id = id.clone();
        let cond = if auto_remove { "removed" } else { "next-exit" };
        std::thread::spawn(move || {
            c.json(
                "POST",
                &format!("/containers/{}/wait", cpath(&id)),
                &[("condition", cond.to_string())],
                Body::None,
            )
        })
    };
    if let Err(e) = start_one(c, &id) {
        let code = start_failure_code(&e.to_string());
        eprintln!("{e}");
        return Err(CliError::Exit(code));
    }
    let resizer = super::session::resizer(c, format!("/containers/{}/resize", cpath(&id)));
    if session(&mut attach, tty, interactive, Some(resizer), true)? {
        // Detached: the container runs on; nothing to wait for.
        return Ok(());
    }
    let status = waiter
        .join()
        .map_err(|_| CliError::Usage("the wait request failed".into()))??;
    let code = status["StatusCode"].as_i64().unwrap_or(0) as i32;
    if code != 0 {
        return Err(CliError::Exit(code));
    }
    Ok(())
}

pub fn start(c: &Client, a: ContainersArg) -> Result<(), CliError> {
    each(&a.containers, |n| {
        start_one(c, n)?;
        out(&format!("{n}\n"))
    })
}

pub fn stop(c: &Client, a: StopArgs, action: &str) -> Result<(), CliError> {
    each(&a.containers, |n| {
        let mut q = vec![];
        if let Some(t) = a.time {
            q.push(("t", t.to_string()));
        }
        if let Some(s) = &a.signal {
            q.push(("signal", s.clone()));
        }
        c.call(
            "POST",
            &format!("/containers/{}/{action}", cpath(n)),
            &q,
            Body::None,
        )?;
        out(&format!("{n}\n"))
    })
}

pub fn kill(c: &Client, a: KillArgs) -> Result<(), CliError> {
    each(&a.containers, |n| {
        c.call(
            "POST",
            &format!("/containers/{}/kill", cpath(n)),
            &[("signal", a.signal.clone())],
            Body::None,
        )?;
        out(&format!("{n}\n"))
    })
}

pub fn wait(c: &Client, a: ContainersArg) -> Result<(), CliError> {
    each(&a.containers, |n| {
        let v = c.json(
            "POST",
            &format!("/containers/{}/wait", cpath(n)),
            &[],
            Body::None,
        )?;
        out(&format!("{}\n", v["StatusCode"].as_i64().unwrap_or(0)))
    })
}

pub fn logs(c: &Client, a: LogsArgs) -> Result<(), CliError> {
    let info = c.json(
        "GET",
        &format!("/containers/{}/json", cpath(&a.container)),
        &[],
        Body::None,
    )?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let mut q = vec![("stdout", "1".to_string()), ("stderr", "1".to_string())];
    if a.follow {
        q.push(("follow", "1".into()));
    }
    if a.timestamps {
        q.push(("timestamps", "1".into()));
    }
    if let Some(t) = &a.tail {
        q.push(("tail", t.clone()));
    }
    let now = crate::format::now();
    for (k, v) in [("since", &a.since), ("until", &a.until)] {
        if let Some(v) = v {
            let t = strata_graph::time::parse_time_arg(v, now)
                .ok_or_else(|| CliError::Usage(format!("invalid {k} {v:?}")))?;
            q.push((k, t.to_string()));
        }
    }
    let mut resp = c.call(
        "GET",
        &format!("/containers/{}/logs", cpath(&a.container)),
        &q,
        Body::None,
    )?;
    demux(resp.reader(), tty)
}
