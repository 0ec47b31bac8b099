//! `images`, `image ...`, `rmi`, `tag`, `history`, `load`, `save`, `import`.

use super::{confirm, each, filters_json, out, output, pretty};
use crate::format::{ago, ellipsis, go_time, human_size, print_rows, short_id};
use crate::CliError;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::Read;
use strata_api::client::{escape, Body, Client};

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only images of this repository[:tag].
    pub repository: Option<String>,
    /// Show all images (default hides intermediate images).
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Filter output based on conditions provided (dangling, label, reference, before, since).
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a Go template, `table`, or `json`.
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Force removal of the image.
    #[arg(short, long)]
    pub force: bool,
    /// Do not delete untagged parents.
    #[arg(long)]
    pub no_prune: bool,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    pub image: String,
    /// Print sizes and dates in human readable format.
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub human: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output using a Go template, `table`, or `json`.
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from a tar archive file, instead of STDIN.
    #[arg(short, long)]
    pub input: Option<String>,
    /// Suppress the load output.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Write to a file, instead of STDOUT.
    #[arg(short, long)]
    pub output: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// A tarball file, or - for STDIN.
    pub file: String,
    /// Repository[:tag] for the image.
    pub reference: Option<String>,
    /// Set a commit message for the imported image.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Apply Dockerfile instructions to the image.
    #[arg(short, long)]
    pub change: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. `until=<timestamp>`).
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Format output using a Go template.
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List images.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more images.
    Inspect(InspectArgs),
    /// Show the history of an image.
    History(HistoryArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(TagArgs),
    /// Remove one or more images.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused images.
    Prune(PruneArgs),
    /// Import the contents from a tarball to create a filesystem image.
    Import(ImportArgs),
    /// Load an image from a tar archive or STDIN.
    Load(LoadArgs),
    /// Save one or more images to a tar archive.
    Save(SaveArgs),
}

pub fn image(c: &Client, cmd: ImageCommand) -> Result<(), CliError> {
    match cmd {
        ImageCommand::Ls(a) => ls(c, a),
        ImageCommand::Inspect(a) => inspect(c, a),
        ImageCommand::History(a) => history(c, a),
        ImageCommand::Tag(a) => tag(c, a),
        ImageCommand::Rm(a) => rm(c, a),
        ImageCommand::Prune(a) => prune(c, a),
        ImageCommand::Import(a) => import(c, a),
        ImageCommand::Load(a) => load(c, a),
        ImageCommand::Save(a) => save(c, a),
    }
}

const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Digest", "DIGEST"),
    ("Containers", "CONTAINERS"),
];

pub fn ls(c: &Client, a: LsArgs) -> Result<(), CliError> {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.repository {
        filters.push(format!("reference={r}"));
    }
    let mut q = vec![];
    if let Some(f) = filters_json(&filters)? {
        q.push(("filters", f));
    }
    if a.all {
        q.push(("all", "1".into()));
    }
    let list = c.json("GET", "/images/json", &q, Body::None)?;
    let list = list.as_array().cloned().unwrap_or_default();
    let id = |v: &Value| {
        let id = v["Id"].as_str().unwrap_or("");
        if a.no_trunc {
            id.to_string()
        } else {
            short_id(id)
        }
    };
    if a.quiet {
        let mut seen = Vec::new();
        for v in &list {
            let i = id(v);
            if !seen.contains(&i) {
                seen.push(i);
            }
        }
        return out(&seen.iter().map(|s| format!("{s}\n")).collect::<String>());
    }
    let mut rows = Vec::new();
    for v in &list {
        let tags: Vec<String> = v["RepoTags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let pairs: Vec<(String, String)> = if tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            tags.iter()
                .map(|t| match t.rsplit_once(':') {
                    Some((r, tg)) if !tg.contains('/') => (r.to_string(), tg.to_string()),
                    _ => (t.clone(), "<none>".into()),
                })
                .collect()
        };
        let created = v["Created"].as_i64().unwrap_or(0);
        for (repo, tag) in pairs {
            rows.push(json!({
                "Repository": repo,
                "Tag": tag,
                "ID": id(v),
                "CreatedSince": ago(created),
                "CreatedAt": go_time(created),
                "Size": human_size(v["Size"].as_f64().unwrap_or(0.0)),
                "Digest": "<none>",
                "Containers": match v["Containers"].as_i64() { Some(n) if n >= 0 => n.to_string(), _ => "N/A".into() },
            }));
        }
    }
    let default = if a.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    print_rows(a.format.as_deref(), default, IMAGE_HEADERS, &rows)
}

pub(crate) fn path_of(name: &str) -> String {
    escape(name)
}

pub fn inspect(c: &Client, a: InspectArgs) -> Result<(), CliError> {
    let mut found = Vec::new();
    let mut failed = false;
    for n in &a.images {
        match c.json(
            "GET",
            &format!("/images/{}/json", path_of(n)),
            &[],
            Body::None,
        ) {
            Ok(v) => found.push(v),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    print_inspect(&found, a.format.as_deref())?;
    if failed {
        return Err(CliError::Usage(String::new()));
    }
    Ok(())
}

/// Prints inspect results: a JSON array, or each object through `--format`.
pub fn print_inspect(objs: &[Value], format: Option<&str>) -> Result<(), CliError> {
    match format.filter(|f| !f.is_empty()) {
        None => out(&format!("{}\n", pretty(&Value::Array(objs.to_vec())))),
        Some("json") => {
            for o in objs {
                out(&format!("{o}\n"))?;
            }
            Ok(())
        }
        Some(f) => {
            let t = crate::format::Tmpl::parse(f)?;
            for o in objs {
                out(&format!("{}\n", t.render(o)?))?;
            }
            Ok(())
        }
    }
}

pub fn rm(c: &Client, a: RmArgs) -> Result<(), CliError> {
    each(&a.images, |n| {
        let mut q = vec![];
        if a.force {
            q.push(("force", "1".into()));
        }
        if a.no_prune {
            q.push(("noprune", "1".into()));
        }
        let v = c.json("DELETE", &format!("/images/{}", path_of(n)), &q, Body::None)?;
        for r in v.as_array().into_iter().flatten() {
            if let Some(u) = r["Untagged"].as_str() {
                out(&format!("Untagged: {u}\n"))?;
            }
            if let Some(d) = r["Deleted"].as_str() {
                out(&format!("Deleted: {d}\n"))?;
            }
        }
        Ok(())
    })
}

/// Splits `repo:tag` (a `:` in a registry's host:port is not a tag).
pub fn split_tag(r: &str) -> (String, String) {
    match r.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (r.to_string(), "latest".into()),
    }
}

pub fn tag(c: &Client, a: TagArgs) -> Result<(), CliError> {
    let (repo, tag) = split_tag(&a.target);
    c.call(
        "POST",
        &format!("/images/{}/tag", path_of(&a.source)),
        &[("repo", repo), ("tag", tag)],
        Body::None,
    )?;
    Ok(())
}

pub fn history(c: &Client, a: HistoryArgs) -> Result<(), CliError> {
    let v = c.json(
        "GET",
        &format!("/images/{}/history", path_of(&a.image)),
        &[],
        Body::None,
    )?;
    let rows: Vec<Value> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let id = h["Id"].as_str().unwrap_or("<missing>");
            let id = if id == "<missing>" || a.no_trunc {
                id.to_string()
            } else {
                short_id(id)
            };
            let created = h["Created"].as_i64().unwrap_or(0);
            let by = h["CreatedBy"].as_str().unwrap_or("").replace('\t', " ");
            let size = h["Size"].as_i64().unwrap_or(0);
            json!({
                "ID": id,
                "CreatedSince": if a.human { ago(created) } else { go_time(created) },
                "CreatedAt": go_time(created),
                "CreatedBy": if a.no_trunc { by } else { ellipsis(&by, 45) },
                "Size": if a.human { human_size(size as f64) } else { size.to_string() },
                "Comment": h["Comment"].as_str().unwrap_or(""),
            })
        })
        .collect();
    if a.quiet {
        return out(&rows
            .iter()
            .map(|r| format!("{}\n", r["ID"].as_str().unwrap_or("")))
            .collect::<String>());
    }
    print_rows(
        a.format.as_deref(),
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
        &[
            ("ID", "IMAGE"),
            ("CreatedSince", "CREATED"),
            ("CreatedAt", "CREATED AT"),
            ("CreatedBy", "CREATED BY"),
            ("Size", "SIZE"),
            ("Comment", "COMMENT"),
        ],
        &rows,
    )
}

fn open_input(path: Option<&str>) -> Result<Box<dyn Read>, CliError> {
    match path {
        None | Some("-") => Ok(Box::new(std::io::stdin().lock())),
        Some(p) => Ok(Box::new(std::fs::File::open(p).map_err(|e| {
            CliError::Io {
                context: format!("opening {p}"),
                source: e,
            }
        })?)),
    }
}

/// Reads a JSON message stream (load, import): prints `stream` and `status` lines, fails on
/// an `error`.
fn json_messages(r: &mut dyn Read, quiet: bool) -> Result<Vec<Value>, CliError> {
    let mut all = Vec::new();
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(2) } == 1;
    let mut progress_shown = false;
    for v in super::json_lines(r) {
        let v = v?;
        if let Some(e) = v["error"].as_str() {
            return Err(CliError::Usage(e.to_string()));
        }
        if !quiet {
            if let Some(s) = v["stream"].as_str() {
                if progress_shown {
                    eprintln!();
                    progress_shown = false;
                }
                out(s)?;
            } else if let (Some(st), Some(p)) = (v["status"].as_str(), v["progress"].as_str()) {
                // Progress on a terminal, as docker shows it: one line per layer, rewritten.
                if tty {
                    eprint!("\r{}: {st} {p}", v["id"].as_str().unwrap_or(""));
                    progress_shown = true;
                }
            }
        }
        all.push(v);
    }
    Ok(all)
}

pub fn load(c: &Client, a: LoadArgs) -> Result<(), CliError> {
    let mut input = open_input(a.input.as_deref())?;
    let mut q = vec![];
    if a.quiet {
        q.push(("quiet", "1".into()));
    }
    let mut resp = c.call(
        "POST",
        "/images/load",
        &q,
        Body::Stream {
            content_type: "application/x-tar",
            reader: &mut input,
        },
    )?;
    // With -q the daemon sends no progress; the "Loaded image" lines still print, as with
    // docker.
    json_messages(resp.reader(), false)?;
    Ok(())
}

pub fn save(c: &Client, a: SaveArgs) -> Result<(), CliError> {
    let mut w = output(&a.output, "the image")?;
    let q: Vec<(&str, String)> = a.images.iter().map(|n| ("names", n.clone())).collect();
    let mut resp = c.call("GET", "/images/get", &q, Body::None)?;
    std::io::copy(resp.reader(), &mut w).map_err(|e| CliError::Io {
        context: "saving the image".into(),
        source: e,
    })?;
    w.flush().map_err(CliError::Stdout)?;
    Ok(())
}

use std::io::Write as _;

pub fn import(c: &Client, a: ImportArgs) -> Result<(), CliError> {
    let mut input = open_input(Some(&a.file))?;
    let mut q = vec![("fromSrc", "-".to_string())];
    if let Some(r) = &a.reference {
        let (repo, tag) = split_tag(r);
        q.push(("repo", repo));
        q.push(("tag", tag));
    }
    if let Some(m) = &a.message {
        q.push(("message", m.clone()));
    }
    for ch in &a.change {
        q.push(("changes", ch.clone()));
    }
    let mut resp = c.call(
        "POST",
        "/images/create",
        &q,
        Body::Stream {
            content_type: "application/x-tar",
            reader: &mut input,
        },
    )?;
    for m in json_messages(resp.reader(), false)? {
        if let Some(s) = m["status"].as_str() {
            out(&format!("{s}\n"))?;
        }
    }
    Ok(())
}

pub fn prune(c: &Client, a: PruneArgs) -> Result<(), CliError> {
    if !a.force {
        let what = if a.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        if !confirm(&format!("{what}\nAre you sure you want to continue?")) {
            return Ok(());
        }
    }
    let mut filters = a.filter.clone();
    if a.all {
        filters.push("dangling=false".into());
    }
    let mut q = vec![];
    if let Some(f) = filters_json(&filters)? {
        q.push(("filters", f));
    }
    let v = c.json("POST", "/images/prune", &q, Body::None)?;
    let mut text = String::new();
    if let Some(recs) = v["ImagesDeleted"].as_array().filter(|r| !r.is_empty()) {
        text.push_str("Deleted Images:\n");
        for r in recs {
            if let Some(u) = r["Untagged"].as_str() {
                text.push_str(&format!("untagged: {u}\n"));
            }
            if let Some(d) = r["Deleted"].as_str() {
                text.push_str(&format!("deleted: {d}\n"));
            }
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    ));
    out(&text)
}

/// Whether an image exists (for `inspect` without `--type`).
pub fn image_json(c: &Client, name: &str) -> Result<Value, CliError> {
    Ok(c.json(
        "GET",
        &format!("/images/{}/json", path_of(name)),
        &[],
        Body::None,
    )?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tags_split_after_the_registry_port() {
        assert_eq!(
            super::split_tag("localhost:5000/app"),
            ("localhost:5000/app".into(), "latest".into())
        );
        assert_eq!(super::split_tag("app:1"), ("app".into(), "1".into()));
    }
}
