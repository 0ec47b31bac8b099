//! The client commands, one module per area.

pub mod build;
pub mod containers;
pub mod cp;
pub mod exec;
pub mod images;
pub mod networks;
pub mod ports;
pub mod registry;
pub mod run;
pub mod session;
pub mod system;
pub mod volumes;

use crate::CliError;
use std::io::Write;

/// The messages of a JSON message stream (load, import, pull, push), one per non-empty line;
/// a line that is not JSON reads as `null`.
pub fn json_lines(
    r: &mut dyn std::io::Read,
) -> impl Iterator<Item = Result<serde_json::Value, CliError>> + '_ {
    use std::io::BufRead;
    std::io::BufReader::new(r)
        .lines()
        .filter_map(|line| match line {
            Err(e) => Some(Err(CliError::Io {
                context: "reading the daemon's answer".into(),
                source: e,
            })),
            Ok(l) if l.trim().is_empty() => None,
            Ok(l) => Some(Ok(
                serde_json::from_str(&l).unwrap_or(serde_json::Value::Null)
            )),
        })
}

/// `--filter k=v` flags as the API's `filters` JSON (`{"k": {"v": true}}`).
pub fn filters_json(filters: &[String]) -> Result<Option<String>, CliError> {
    if filters.is_empty() {
        return Ok(None);
    }
    let mut m = serde_json::Map::new();
    for f in filters {
        let (k, v) = f.split_once('=').ok_or_else(|| {
            CliError::Usage(format!("bad format of filter (expected name=value): {f}"))
        })?;
        let e = m
            .entry(k.to_lowercase())
            .or_insert_with(|| serde_json::json!({}));
        e[v] = serde_json::Value::Bool(true);
    }
    Ok(Some(serde_json::Value::Object(m).to_string()))
}

/// Prints a prune's answer as docker does: the removed names under `title`, then the space.
pub fn print_pruned(v: &serde_json::Value, key: &str, title: &str) -> Result<(), CliError> {
    let mut text = String::new();
    if let Some(names) = v[key].as_array().filter(|i| !i.is_empty()) {
        text.push_str(&format!("{title}:\n"));
        for n in names {
            text.push_str(&format!("{}\n", n.as_str().unwrap_or("")));
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "Total reclaimed space: {}\n",
        crate::format::human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    ));
    out(&text)
}

/// `inspect` of named objects under `prefix` (`/volumes`, `/networks`): each fetched, all
/// printed, a missing one reported and the exit code 1, as docker does.
pub fn inspect_each(
    c: &strata_api::client::Client,
    prefix: &str,
    names: &[String],
    format: Option<&str>,
) -> Result<(), CliError> {
    let mut objs = Vec::new();
    let mut failed = false;
    for n in names {
        let path = format!("{prefix}/{}", strata_api::client::escape(n));
        match c.json("GET", &path, &[], strata_api::client::Body::None) {
            Ok(v) => objs.push(v),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    images::print_inspect(&objs, format)?;
    if failed {
        return Err(CliError::Exit(1));
    }
    Ok(())
}

/// Writes text to stdout.
pub fn out(s: &str) -> Result<(), CliError> {
    let mut o = std::io::stdout().lock();
    o.write_all(s.as_bytes()).map_err(CliError::Stdout)?;
    o.flush().map_err(CliError::Stdout)
}

/// Asks `question [y/N]` on the terminal; true for y/yes.
pub fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    matches!(line.trim().to_lowercase().as_str(), "y" | "yes")
}

/// Prints JSON as docker's inspect does (4-space indentation).
pub fn pretty(v: &serde_json::Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    let _ = serde::Serialize::serialize(v, &mut ser);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Runs each item; reports failures on stderr and fails at the end if any did, as docker's
/// multi-argument commands do.
pub fn each<T>(items: &[T], mut f: impl FnMut(&T) -> Result<(), CliError>) -> Result<(), CliError> {
    let mut failed = 0;
    for i in items {
        if let Err(e) = f(i) {
            eprintln!("{e}");
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(CliError::Usage(String::new()));
    }
    Ok(())
}

/// Opens the output of `-o FILE`, or stdout (refused when it is a terminal).
pub fn output(path: &Option<String>, what: &str) -> Result<Box<dyn Write>, CliError> {
    match path.as_deref() {
        Some(p) if p != "-" => Ok(Box::new(std::fs::File::create(p).map_err(|e| {
            CliError::Io {
                context: format!("creating {p}"),
                source: e,
            }
        })?)),
        _ => {
            // SAFETY: isatty only inspects the descriptor.
            if unsafe { libc::isatty(1) } == 1 {
                return Err(CliError::Usage(format!(
                    "cowardly refusing to save {what} to a terminal. Use the -o flag or redirect"
                )));
            }
            Ok(Box::new(std::io::stdout().lock()))
        }
    }
}
