//! `pull`, `push`, `login`, `logout`, `search`. Credentials are kept as the docker CLI keeps
//! them (`{"auths": {"HOST": {"auth": base64("user:password")}}}`), in `config.json` of
//! `--config DIR` or `$STRATA_CONFIG`, else `~/.strata/config.json`, and sent to the daemon as
//! `X-Registry-Auth` for the registry an image names. Pull and push progress is drawn with
//! one bar per layer on a terminal, and as status lines otherwise.

use crate::CliError;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use strata_api::client::{Body, Client};
use strata_graph::image::Reference;
use strata_registry::credentials::AuthConfig;

/// Docker Hub's key in the credentials file.
const HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Download all tagged images in the repository.
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Set platform if server is multi-platform capable (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
    pub name: String,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Push all tags of an image to the repository.
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output.
    #[arg(short, long)]
    pub quiet: bool,
    pub name: String,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    #[arg(short, long)]
    pub username: Option<String>,
    #[arg(short, long)]
    pub password: Option<String>,
    /// Take the password from stdin.
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// The registry (Docker Hub when omitted).
    pub server: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    pub server: Option<String>,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Max number of search results.
    #[arg(long, default_value_t = 25)]
    pub limit: usize,
    /// Filter output based on conditions provided.
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Don't truncate output.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Pretty-print search using a Go template.
    #[arg(long)]
    pub format: Option<String>,
    pub term: String,
}

/// The credentials file.
fn config_path() -> PathBuf {
    if let Some(d) = std::env::var_os("STRATA_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".strata/config.json")
}

fn read_config() -> Result<Value, CliError> {
    let p = config_path();
    match std::fs::read(&p) {
        Ok(b) => {
            serde_json::from_slice(&b).map_err(|e| CliError::Usage(format!("{}: {e}", p.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(e) => Err(CliError::Io {
            context: format!("reading {}", p.display()),
            source: e,
        }),
    }
}

fn write_config(v: &Value) -> Result<(), CliError> {
    let p = config_path();
    let io = |e| CliError::Io {
        context: format!("writing {}", p.display()),
        source: e,
    };
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = p.with_extension("json.tmp");
    let data = serde_json::to_vec_pretty(v).unwrap_or_default();
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        std::io::Write::write_all(&mut f, &data).map_err(io)?;
    }
    std::fs::rename(&tmp, &p).map_err(io)
}

/// The key of a registry in the credentials file (`docker.io` is Docker Hub's URL).
fn key_of(domain: &str) -> String {
    match strata_registry::service::login_domain(domain).as_str() {
        "docker.io" => HUB_KEY.to_string(),
        d => d.to_string(),
    }
}

/// The stored credentials for a registry.
fn stored_auth(domain: &str) -> Result<AuthConfig, CliError> {
    let cfg = read_config()?;
    let key = key_of(domain);
    let entry = &cfg["auths"][&key];
    if entry.is_null() {
        return Ok(AuthConfig::default());
    }
    let mut a: AuthConfig = serde_json::from_value(entry.clone()).unwrap_or_default();
    a.server_address = key;
    Ok(a)
}

/// The client with the credentials for `reference`'s registry.
fn with_auth(c: &Client, r: &Reference) -> Result<Client, CliError> {
    Ok(c.with_header("X-Registry-Auth", &stored_auth(&r.domain)?.to_header()))
}

fn parse_ref(name: &str) -> Result<Reference, CliError> {
    Reference::parse(name).map_err(|e| CliError::Usage(format!("invalid reference format: {e}")))
}

/// Draws a pull's or push's JSON message stream; fails on an `error`.
fn show_progress(r: &mut dyn Read, quiet: bool) -> Result<Vec<Value>, CliError> {
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(1) } == 1;
    let multi = MultiProgress::with_draw_target(if tty && !quiet {
        ProgressDrawTarget::stdout()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style =
        ProgressStyle::with_template("{prefix}: {msg:<16} [{bar:40}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let plain = ProgressStyle::with_template("{prefix}: {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let mut all = Vec::new();
    for v in super::json_lines(r) {
        let v = v?;
        if let Some(e) = v["error"].as_str() {
            for b in bars.values() {
                b.abandon();
            }
            return Err(CliError::Usage(e.to_string()));
        }
        let status = v["status"].as_str().unwrap_or("");
        let id = v["id"].as_str().unwrap_or("");
        if !quiet {
            let layer = !id.is_empty() && !status.starts_with("Pulling from");
            if layer && tty {
                let bar = bars.entry(id.to_string()).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new(0));
                    b.set_style(plain.clone());
                    b.set_prefix(id.to_string());
                    b
                });
                let total = v["progressDetail"]["total"].as_u64();
                let current = v["progressDetail"]["current"].as_u64();
                match (current, total) {
                    (Some(c), Some(t)) if t > 0 => {
                        bar.set_style(style.clone());
                        bar.set_length(t);
                        bar.set_position(c);
                    }
                    _ => bar.set_style(plain.clone()),
                }
                bar.set_message(status.to_string());
            } else if !status.is_empty() && v["progressDetail"]["total"].is_null() {
                let text = if id.is_empty() {
                    status.to_string()
                } else {
                    format!("{id}: {status}")
                };
                if tty {
                    let _ = multi.println(&text);
                } else {
                    super::out(&format!("{text}\n"))?;
                }
            }
        }
        all.push(v);
    }
    for b in bars.values() {
        b.finish();
    }
    Ok(all)
}

pub fn pull(c: &Client, a: PullArgs) -> Result<(), CliError> {
    let r = parse_ref(&a.name)?;
    let mut q = vec![("fromImage", r.familiar_name())];
    match (&r.digest, &r.tag) {
        (Some(d), _) => q.push(("tag", d.to_string())),
        (None, Some(t)) => q.push(("tag", t.clone())),
        (None, None) if a.all_tags => {}
        (None, None) => q.push(("tag", "latest".into())),
    }
    if a.all_tags && (r.tag.is_some() || r.digest.is_some()) {
        return Err(CliError::Usage(
            "tag can't be used with --all-tags/-a".into(),
        ));
    }
    if let Some(p) = &a.platform {
        q.push(("platform", p.clone()));
    }
    let c = with_auth(c, &r)?;
    let mut resp = c.call("POST", "/images/create", &q, Body::None)?;
    show_progress(resp.reader(), a.quiet)?;
    if a.quiet {
        let name = if a.all_tags {
            r.familiar_name()
        } else {
            let mut x = r.clone();
            if x.tag.is_none() && x.digest.is_none() {
                x.tag = Some("latest".into());
            }
            x.familiar()
        };
        super::out(&format!("{}\n", full_name(&name, &r)))?;
    }
    Ok(())
}

/// docker prints the full name (`docker.io/library/busybox:latest`) after a quiet pull.
fn full_name(familiar: &str, r: &Reference) -> String {
    if familiar.starts_with(&r.domain) {
        familiar.to_string()
    } else {
        match familiar.strip_prefix(&r.familiar_name()) {
            Some(rest) => format!("{}{rest}", r.name()),
            None => familiar.to_string(),
        }
    }
}

pub fn push(c: &Client, a: PushArgs) -> Result<(), CliError> {
    let r = parse_ref(&a.name)?;
    let mut q = Vec::new();
    match (&r.tag, a.all_tags) {
        (Some(_), true) => {
            return Err(CliError::Usage(
                "tag can't be used with --all-tags/-a".into(),
            ))
        }
        (Some(t), false) => q.push(("tag", t.clone())),
        (None, true) => {}
        (None, false) => q.push(("tag", "latest".into())),
    }
    let c = with_auth(c, &r)?;
    let mut resp = c.call(
        "POST",
        &format!(
            "/images/{}/push",
            crate::commands::images::path_of(&r.familiar_name())
        ),
        &q,
        Body::None,
    )?;
    show_progress(resp.reader(), a.quiet)?;
    if a.quiet {
        super::out(&format!("{}\n", r.familiar()))?;
    }
    Ok(())
}

pub fn login(c: &Client, a: LoginArgs) -> Result<(), CliError> {
    let server = a.server.clone().unwrap_or_else(|| HUB_KEY.to_string());
    let key = key_of(&server);
    let stored = stored_auth(&server)?;
    let username = match a.username.clone() {
        Some(u) => u,
        None => stored
            .basic()
            .ok()
            .flatten()
            .map(|(u, _)| u)
            .ok_or_else(|| CliError::Usage("Username is required (-u)".into()))?,
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::Io {
                context: "reading the password from stdin".into(),
                source: e,
            })?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else {
        match a.password.clone() {
            Some(p) => p,
            None => stored
                .basic()
                .ok()
                .flatten()
                .filter(|(u, _)| *u == username)
                .map(|(_, p)| p)
                .ok_or_else(|| {
                    CliError::Usage("Password is required (-p or --password-stdin)".into())
                })?,
        }
    };
    let auth = AuthConfig {
        username: username.clone(),
        password: password.clone(),
        server_address: key.clone(),
        ..Default::default()
    };
    let body = serde_json::to_value(&auth).unwrap_or_default();
    let v = c.json("POST", "/auth", &[], Body::Json(body))?;
    let mut cfg = read_config()?;
    if !cfg["auths"].is_object() {
        cfg["auths"] = serde_json::json!({});
    }
    use base64::Engine as _;
    cfg["auths"][&key] = serde_json::json!({
        "auth": base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    });
    write_config(&cfg)?;
    super::out(&format!(
        "{}\n",
        v["Status"].as_str().unwrap_or("Login Succeeded")
    ))
}

pub fn logout(a: LogoutArgs) -> Result<(), CliError> {
    let server = a.server.unwrap_or_else(|| HUB_KEY.to_string());
    let key = key_of(&server);
    let mut cfg = read_config()?;
    let removed = cfg["auths"]
        .as_object_mut()
        .and_then(|m| m.remove(&key))
        .is_some();
    if removed {
        write_config(&cfg)?;
        super::out(&format!("Removing login credentials for {key}\n"))
    } else {
        super::out(&format!("Not logged in to {key}\n"))
    }
}

pub fn search(c: &Client, a: SearchArgs) -> Result<(), CliError> {
    let mut q = vec![("term", a.term.clone()), ("limit", a.limit.to_string())];
    if let Some(f) = super::filters_json(&a.filter)? {
        q.push(("filters", f));
    }
    let (domain, _) = strata_registry::search::split_term(&a.term);
    let c = c.with_header("X-Registry-Auth", &stored_auth(&domain)?.to_header());
    let v = c.json("GET", "/images/search", &q, Body::None)?;
    let rows: Vec<Value> = v
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let mut desc = r["description"].as_str().unwrap_or("").to_string();
            if !a.no_trunc && desc.chars().count() > 45 {
                desc = desc.chars().take(44).collect::<String>() + "…";
            }
            let flag = |k: &str| {
                if r[k].as_bool() == Some(true) {
                    "[OK]"
                } else {
                    ""
                }
            };
            serde_json::json!({
                "Name": r["name"], "Description": desc, "StarCount": r["star_count"],
                "IsOfficial": flag("is_official"), "IsAutomated": flag("is_automated"),
            })
        })
        .collect();
    crate::format::print_rows(
        a.format.as_deref(),
        "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}\t{{.IsAutomated}}",
        &[
            ("Name", "NAME"),
            ("Description", "DESCRIPTION"),
            ("StarCount", "STARS"),
            ("IsOfficial", "OFFICIAL"),
            ("IsAutomated", "AUTOMATED"),
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_keys_as_docker_stores_them() {
        assert_eq!(key_of("docker.io"), HUB_KEY);
        assert_eq!(key_of(HUB_KEY), HUB_KEY);
        assert_eq!(key_of("127.0.0.1:5000"), "127.0.0.1:5000");
        let r = Reference::parse("busybox").expect("ref");
        assert_eq!(
            full_name("busybox:latest", &r),
            "docker.io/library/busybox:latest"
        );
        let r = Reference::parse("127.0.0.1:5000/x").expect("ref");
        assert_eq!(full_name("127.0.0.1:5000/x:1", &r), "127.0.0.1:5000/x:1");
    }
}
