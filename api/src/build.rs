//! `POST /build`: dockerd's classic builder over the `strata-builder` crate. The context
//! (a tar, plain or compressed) is unpacked under the data root, `.dockerignore` applied, the
//! Dockerfile parsed and planned before anything runs (an error then is the request's 400);
//! then each needed stage runs step by step with the JSON stream the docker CLI prints:
//! config-only steps make images without layers, RUN runs a container of the current image
//! and commits what it changed, COPY/ADD unpack into a container's layer and commit it. A
//! step whose cache key (parent image, expanded instruction, sources' checksum or build
//! args) is known reuses the image it made.

use crate::body::{stream, BodyReader, Query, Resp};
use crate::{ApiError, Daemon};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_builder::cache::{self, Cache};
use strata_builder::context::Context;
use strata_builder::copy::{copy_tar, parse_mode, CopyOpts};
use strata_builder::instructions::Instruction;
use strata_builder::plan::{copy_source, Base, Plan, Source};
use strata_builder::state::{created_by, next_image, State, Work};
use strata_graph::image::Reference;

/// The request's options.
#[derive(Debug, Clone)]
struct Opts {
    dockerfile: String,
    tags: Vec<String>,
    build_args: BTreeMap<String, Option<String>>,
    labels: BTreeMap<String, String>,
    target: Option<String>,
    nocache: bool,
    pull: bool,
    rm: bool,
    forcerm: bool,
    quiet: bool,
    network: String,
    /// `cachefrom`: images whose history may serve as cache.
    cache_from: Vec<String>,
    /// `platform`: the base images' platform (FROM --platform overrides it).
    platform: Option<strata_registry::platform::Platform>,
}

fn json_map<T: serde::de::DeserializeOwned + Default>(q: &Query, k: &str) -> Result<T, ApiError> {
    match q.get(k).filter(|v| !v.is_empty()) {
        None => Ok(T::default()),
        Some(v) => {
            serde_json::from_str(v).map_err(|e| ApiError::bad_request(format!("invalid {k}: {e}")))
        }
    }
}

impl Opts {
    fn parse(q: &Query) -> Result<Opts, ApiError> {
        let tags = q.all("t");
        for t in &tags {
            Reference::parse_tagged(t).map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
        let flag = |k: &str, default: bool| match q.get(k) {
            None | Some("") => default,
            Some(v) => v == "1" || v.eq_ignore_ascii_case("true"),
        };
        Ok(Opts {
            dockerfile: q
                .get("dockerfile")
                .filter(|d| !d.is_empty())
                .unwrap_or("Dockerfile")
                .to_string(),
            tags,
            build_args: json_map(q, "buildargs")?,
            labels: json_map(q, "labels")?,
            target: q.get("target").filter(|t| !t.is_empty()).map(String::from),
            nocache: flag("nocache", false),
            pull: flag("pull", false),
            rm: flag("rm", true),
            forcerm: flag("forcerm", false),
            quiet: flag("q", false),
            cache_from: json_map(q, "cachefrom")?,
            platform: match q.get("platform").filter(|p| !p.is_empty()) {
                None => None,
                Some(p) => Some(
                    strata_registry::platform::Platform::parse(p)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?,
                ),
            },
            network: match q.get("networkmode").filter(|n| !n.is_empty()) {
                None | Some("default") => "bridge".to_string(),
                Some(n) => n.to_string(),
            },
        })
    }
}

/// Removes what `.dockerignore` excludes from the unpacked context (the docker CLI does it
/// before sending; a context sent otherwise gets the same treatment).
fn apply_dockerignore(dir: &Path) -> Result<(), ApiError> {
    let text = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(t) => t,
        Err(_) => return Ok(()),
    };
    let ig = strata_builder::ignore::Ignore::parse(&text)
        .map_err(|e| ApiError::bad_request(format!("invalid .dockerignore: {e}")))?;
    fn walk(root: &Path, rel: &str, ig: &strata_builder::ignore::Ignore) -> std::io::Result<()> {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            // Docker keeps the Dockerfile and .dockerignore for the builder itself.
            if r == ".dockerignore" {
                continue;
            }
            let is_dir = e.file_type()?.is_dir();
            if ig.excludes(&r) {
                if is_dir && ig.has_exceptions() {
                    walk(root, &r, ig)?;
                    continue;
                }
                if is_dir {
                    strata_graph::fsutil::remove_tree(&e.path())?;
                } else {
                    std::fs::remove_file(e.path())?;
                }
            } else if is_dir {
                walk(root, &r, ig)?;
            }
        }
        Ok(())
    }
    walk(dir, "", &ig).map_err(|e| ApiError::internal(format!("applying .dockerignore: {e}")))
}

/// The build's output stream.
struct Out {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    quiet: bool,
}

impl Out {
    async fn json(&self, v: Value) {
        let _ = self.tx.send(Ok(Bytes::from(format!("{v}\n")))).await;
    }
    async fn line(&self, s: impl Into<String>) {
        if !self.quiet {
            self.json(json!({ "stream": s.into() })).await;
        }
    }
}

/// A build error for the stream (a RUN's exit code goes with it).
struct Failed {
    message: String,
    code: Option<i64>,
}

impl From<ApiError> for Failed {
    fn from(e: ApiError) -> Self {
        Failed {
            message: e.message,
            code: None,
        }
    }
}

fn failed(m: impl Into<String>) -> Failed {
    Failed {
        message: m.into(),
        code: None,
    }
}

fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// `POST /build`.
pub async fn build(d: &Arc<Daemon>, req: Request<Incoming>, q: &Query) -> Result<Resp, ApiError> {
    let opts = Opts::parse(q)?;
    let auths: BTreeMap<String, strata_registry::credentials::AuthConfig> = req
        .headers()
        .get("X-Registry-Config")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE
                .decode(v.trim())
                .or_else(|_| base64::engine::general_purpose::STANDARD.decode(v.trim()))
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let dir = d
        .data_root
        .join("builder/contexts")
        .join(strata_graph::fsutil::random_id(8));
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::internal(format!("creating the build context directory: {e}")))?;
    let reader = BodyReader::new(req.into_body());
    let ctx_dir = dir.clone();
    let dockerfile = opts.dockerfile.clone();
    let prepared = tokio::task::spawn_blocking(move || -> Result<(strata_builder::parser::Dockerfile, Vec<strata_builder::instructions::Step>), ApiError> {
        strata_runtime::copy::extract_local(&ctx_dir, reader).map_err(|e| {
            ApiError::bad_request(format!("failed to read the build context: {e}"))
        })?;
        let ctx = Context::open(&ctx_dir).map_err(|e| ApiError::internal(e.to_string()))?;
        let rel = strata_builder::context::inside(&dockerfile)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let entry = ctx
            .entry(&rel)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Cannot locate specified Dockerfile: {}",
                    rel.display()
                ))
            })?;
        let text = std::fs::read_to_string(entry.proc_path())
            .map_err(|e| ApiError::bad_request(format!("reading the Dockerfile: {e}")))?;
        // The Dockerfile is read before `.dockerignore` applies: excluding it keeps it out of
        // COPY, not out of the build (as Docker).
        drop(entry);
        drop(ctx);
        apply_dockerignore(&ctx_dir)?;
        let df = strata_builder::parser::parse(&text)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let steps = strata_builder::instructions::steps(&df)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok((df, steps))
    });
    let (df, steps) = match prepared.await? {
        Ok(v) => v,
        Err(e) => {
            let _ = strata_graph::fsutil::remove_tree(&dir);
            return Err(e);
        }
    };
    let plan = match strata_builder::plan::plan(
        &steps,
        &opts.build_args,
        opts.target.as_deref(),
        df.escape,
    ) {
        Ok(p) => p,
        Err(e) => {
            let _ = strata_graph::fsutil::remove_tree(&dir);
            return Err(ApiError::bad_request(e.to_string()));
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let daemon = d.clone();
    tokio::spawn(async move {
        let out = Out {
            tx,
            quiet: opts.quiet,
        };
        for w in &df.warnings {
            out.line(format!("[Warning] {w}\n")).await;
        }
        let res = run_build(&daemon, &dir, &plan, &opts, &auths, df.escape, &out).await;
        match res {
            Ok(id) => {
                out.json(json!({ "aux": { "ID": id } })).await;
                if opts.quiet {
                    out.json(json!({ "stream": format!("{id}\n") })).await;
                }
                out.line(format!("Successfully built {}\n", short(&id)))
                    .await;
                for t in &opts.tags {
                    let name = Reference::parse_tagged(t)
                        .map(|r| r.familiar())
                        .unwrap_or(t.clone());
                    out.line(format!("Successfully tagged {name}\n")).await;
                }
            }
            Err(f) => {
                tracing::warn!("build: {}", f.message);
                let mut detail = json!({ "message": f.message });
                if let Some(c) = f.code {
                    detail["code"] = json!(c);
                }
                out.json(json!({ "errorDetail": detail, "error": f.message }))
                    .await;
            }
        }
        let _ = tokio::task::spawn_blocking(move || strata_graph::fsutil::remove_tree(&dir)).await;
    });
    Ok(stream(StatusCode::OK, "application/json", rx))
}

/// The image of a stage's base: local, else pulled (always pulled with `pull`).
async fn base_image(
    d: &Arc<Daemon>,
    name: &str,
    platform: Option<&strata_registry::platform::Platform>,
    opts: &Opts,
    auths: &BTreeMap<String, strata_registry::credentials::AuthConfig>,
    out: &Out,
) -> Result<strata_graph::image::Image, Failed> {
    if !opts.pull {
        if let Ok(img) = d.images.get(name) {
            // A local image of another platform than asked for is pulled for that one.
            let fits = platform.is_none_or(|p| {
                let actual = strata_registry::platform::Platform {
                    os: img.head.os.clone().unwrap_or_else(|| "linux".into()),
                    architecture: img.head.architecture.clone().unwrap_or_default(),
                    variant: None,
                };
                p.rank(&actual).is_some()
            });
            if fits {
                return Ok(img);
            }
        }
    }
    let r = Reference::parse_tagged(name).map_err(|e| failed(e.to_string()))?;
    let auth = auths
        .get(&r.domain)
        .or_else(|| auths.get(&strata_registry::service::login_domain(&r.domain)))
        .cloned()
        .unwrap_or_default();
    let dist = d.distribution.clone();
    let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let r2 = r.clone();
    let platform2 = platform.cloned();
    let pulling = tokio::task::spawn_blocking(move || {
        let sink = |p: strata_registry::progress::Progress| {
            let _ = ptx.send(crate::distribution::progress_json(&p));
        };
        dist.pull(&r2, platform2.as_ref(), &auth, &sink)
    });
    while let Some(v) = prx.recv().await {
        if !out.quiet {
            out.json(v).await;
        }
    }
    let pulled = pulling
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(e.to_string()))?;
    d.images
        .get(&pulled.id.to_string())
        .map_err(|e| failed(e.to_string()))
}

/// A scratch stage's starting image: no layers, an empty config.
fn scratch_image(d: &Daemon) -> Result<strata_graph::image::Image, Failed> {
    let cfg = json!({
        "architecture": strata_runtime::commit::go_arch(),
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [] },
    });
    let bytes = serde_json::to_vec(&cfg).map_err(|e| failed(e.to_string()))?;
    d.images.create(&bytes).map_err(|e| failed(e.to_string()))
}

fn full_config(img: &strata_graph::image::Image) -> Value {
    serde_json::from_slice(&img.config).unwrap_or(Value::Null)
}

async fn run_build(
    d: &Arc<Daemon>,
    ctx_dir: &Path,
    plan: &Plan,
    opts: &Opts,
    auths: &BTreeMap<String, strata_registry::credentials::AuthConfig>,
    escape: char,
    out: &Out,
) -> Result<String, Failed> {
    let cache = Caches {
        local: Cache::open(&d.data_root.join("builder/cache.json")),
        from: opts
            .cache_from
            .iter()
            .filter_map(|n| d.images.get(n).ok())
            .map(|i| full_config(&i))
            .collect(),
    };
    let total: usize = plan
        .needed
        .iter()
        .map(|i| plan.stages[*i].steps.len() + 1)
        .sum();
    let mut n = 0;
    let mut results: BTreeMap<usize, strata_graph::image::Image> = BTreeMap::new();
    for &si in &plan.needed {
        let stage = &plan.stages[si];
        n += 1;
        out.line(format!("Step {n}/{total} : {}\n", stage.from.original))
            .await;
        let mut img = match &stage.base {
            Base::Scratch => scratch_image(d)?,
            Base::Stage(j) => results
                .get(j)
                .cloned()
                .ok_or_else(|| failed(format!("stage {j} was not built")))?,
            Base::Image(name) => {
                let platform = match &stage.platform {
                    Some(p) => Some(
                        strata_registry::platform::Platform::parse(p)
                            .map_err(|e| failed(e.to_string()))?,
                    ),
                    None => opts.platform.clone(),
                };
                base_image(d, name, platform.as_ref(), opts, auths, out).await?
            }
        };
        out.line(format!(" ---> {}\n", short(&img.id.to_string())))
            .await;
        let mut state = State::new(&full_config(&img)["config"], escape);
        let last_stage = Some(&si) == plan.needed.last();
        // The base image's ONBUILD triggers run first, and are not inherited.
        let triggers: Vec<String> = state.config["OnBuild"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut todo: Vec<(strata_builder::instructions::Step, bool)> = Vec::new();
        if !triggers.is_empty() {
            state.config["OnBuild"] = Value::Null;
            out.line(format!(
                "# Executing {} build trigger{}\n",
                triggers.len(),
                if triggers.len() == 1 { "" } else { "s" }
            ))
            .await;
            for t in &triggers {
                let step = strata_builder::parser::node(t, stage.from.line)
                    .and_then(|node| strata_builder::instructions::step(&node, escape))
                    .map_err(|e| failed(format!("ONBUILD trigger {t:?}: {e}")))?;
                todo.push((step, true));
            }
        }
        todo.extend(stage.steps.iter().map(|s| (s.clone(), false)));
        let n_steps = todo.len();
        for (k, (step, trigger)) in todo.iter().enumerate() {
            if !trigger {
                n += 1;
                out.line(format!("Step {n}/{total} : {}\n", step.original))
                    .await;
            }
            let work = state
                .apply(step, &plan.meta_args, &opts.build_args)
                .map_err(|e| failed(e.to_string()))?;
            // Labels of the request go on the final image with its last step.
            if last_stage && k + 1 == n_steps && !opts.labels.is_empty() {
                for (lk, lv) in &opts.labels {
                    if !state.config["Labels"].is_object() {
                        state.config["Labels"] = json!({});
                    }
                    state.config["Labels"][lk] = json!(lv);
                }
            }
            if matches!(step.instruction, Instruction::Arg(_)) {
                out.line(format!(" ---> {}\n", short(&img.id.to_string())))
                    .await;
                continue;
            }
            let by = created_by(step, &work);
            let parent_id = img.id.to_string();
            img = match work {
                Work::Config => {
                    let key = cache::key(&parent_id, &by, &[&state.config.to_string()]);
                    match cached(d, &cache, &key, &img, &state.config, &by, opts, out).await {
                        Some(i) => i,
                        None => {
                            let new = if matches!(step.instruction, Instruction::Workdir(_)) {
                                // WORKDIR makes its directory in the image when missing.
                                workdir_step(d, &img, &state, &by).await?
                            } else {
                                let cfg = next_image(
                                    &full_config(&img),
                                    &state.config,
                                    None,
                                    &by,
                                    &strata_graph::time::rfc3339_now(),
                                    strata_runtime::commit::go_arch(),
                                );
                                create_image(d, &cfg)?
                            };
                            let _ = cache.local.put(&key, &new.id.to_string());
                            new
                        }
                    }
                }
                Work::Run { argv, env } => {
                    let args: Vec<String> =
                        state.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let key = cache::key(
                        &parent_id,
                        &by,
                        &[&args.join("\n"), &state.config.to_string()],
                    );
                    match cached(d, &cache, &key, &img, &state.config, &by, opts, out).await {
                        Some(i) => i,
                        None => {
                            let new =
                                run_step(d, &img, &state, &argv, &env, &by, opts, out).await?;
                            let _ = cache.local.put(&key, &new.id.to_string());
                            new
                        }
                    }
                }
                Work::Copy {
                    sources,
                    dest,
                    from,
                    chown,
                    chmod,
                    add,
                } => {
                    let src_root = match &from {
                        None => SourceRoot::Context(ctx_dir.to_path_buf()),
                        Some(f) => match copy_source(&plan.stages, f, si) {
                            Source::Stage(j) => SourceRoot::Image(
                                results
                                    .get(&j)
                                    .cloned()
                                    .ok_or_else(|| failed(format!("stage {f} was not built")))?,
                            ),
                            Source::Image(name) => SourceRoot::Image(
                                base_image(d, &name, opts.platform.as_ref(), opts, auths, out)
                                    .await?,
                            ),
                        },
                    };
                    let w = CopyWork {
                        sources: &sources,
                        dest: &dest,
                        chown: chown.as_deref(),
                        chmod: chmod.as_deref(),
                        add,
                    };
                    copy_step(d, &cache, &img, &state, src_root, &w, opts, out).await?
                }
            };
            out.line(format!(" ---> {}\n", short(&img.id.to_string())))
                .await;
        }
        results.insert(si, img);
    }
    let last = plan
        .needed
        .last()
        .and_then(|i| results.get(i))
        .ok_or_else(|| failed("nothing was built"))?;
    for t in &opts.tags {
        d.images
            .tag(&last.id, t)
            .map_err(|e| failed(e.to_string()))?;
        let name = Reference::parse_tagged(t)
            .map(|r| r.familiar())
            .unwrap_or(t.clone());
        d.events.emit(
            "image",
            "tag",
            &last.id.to_string(),
            json!({ "name": name }),
        );
    }
    Ok(last.id.to_string())
}

fn create_image(d: &Daemon, cfg: &Value) -> Result<strata_graph::image::Image, Failed> {
    let bytes = serde_json::to_vec(cfg).map_err(|e| failed(e.to_string()))?;
    d.images.create(&bytes).map_err(|e| failed(e.to_string()))
}

/// The caches a build looks in: its own keys, and the history of `--cache-from` images.
struct Caches {
    local: Cache,
    /// The full configs of the `--cache-from` images found locally.
    from: Vec<Value>,
}

fn created_bys(cfg: &Value) -> Vec<(String, bool, String)> {
    cfg["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|e| {
                    (
                        e["created_by"].as_str().unwrap_or("").to_string(),
                        e["empty_layer"].as_bool().unwrap_or(false),
                        e["created"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn diff_ids(cfg: &Value) -> Vec<String> {
    cfg["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A `--cache-from` hit, as the classic builder finds one: an image whose history begins
/// with the parent's (same steps, same layers) and goes on with this step. The step's image
/// is made again from that history entry (its layer, its time), so a whole matching chain
/// gives the same image IDs as the build it came from.
fn from_history(
    d: &Daemon,
    from: &[Value],
    parent: &strata_graph::image::Image,
    config: &Value,
    by: &str,
) -> Option<strata_graph::image::Image> {
    let pcfg = full_config(parent);
    let ph = created_bys(&pcfg);
    let pd = diff_ids(&pcfg);
    for cf in from {
        let h = created_bys(cf);
        let dd = diff_ids(cf);
        if h.len() <= ph.len() || dd.len() < pd.len() || dd[..pd.len()] != pd[..] {
            continue;
        }
        if h[..ph.len()].iter().zip(&ph).any(|(a, b)| a.0 != b.0) {
            continue;
        }
        let (entry_by, empty, created) = &h[ph.len()];
        if entry_by != by {
            continue;
        }
        let diff = if *empty {
            None
        } else {
            match dd.get(pd.len()) {
                Some(x) => Some(x.clone()),
                None => continue,
            }
        };
        let cfg = next_image(
            &pcfg,
            config,
            diff.as_deref(),
            by,
            created,
            strata_runtime::commit::go_arch(),
        );
        if let Ok(img) = create_image(d, &cfg) {
            return Some(img);
        }
    }
    None
}

/// The cached image of a step, unless `--no-cache`: by its key, else from `--cache-from`.
#[allow(clippy::too_many_arguments)]
async fn cached(
    d: &Daemon,
    caches: &Caches,
    key: &str,
    parent: &strata_graph::image::Image,
    config: &Value,
    by: &str,
    opts: &Opts,
    out: &Out,
) -> Option<strata_graph::image::Image> {
    if opts.nocache {
        return None;
    }
    let img = match caches.local.get(key).and_then(|id| d.images.get(&id).ok()) {
        Some(i) => i,
        None => {
            let i = from_history(d, &caches.from, parent, config, by)?;
            let _ = caches.local.put(key, &i.id.to_string());
            i
        }
    };
    out.line(" ---> Using cache\n").await;
    Some(img)
}

/// One COPY/ADD step's operands, its variables expanded.
struct CopyWork<'a> {
    sources: &'a [String],
    dest: &'a str,
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
    add: bool,
}

/// Where COPY takes its files from.
enum SourceRoot {
    Context(PathBuf),
    Image(strata_graph::image::Image),
}

/// A container of `img` that is never started: its layer is where files go (or come from).
async fn scratch_container(
    d: &Arc<Daemon>,
    img: &strata_graph::image::Image,
    state: &State,
) -> Result<strata_runtime::Container, Failed> {
    let body = json!({
        "Image": img.id.to_string(),
        "Cmd": ["/bin/sh", "-c", "#(nop)"],
        "Entrypoint": [],
        "WorkingDir": state.config["WorkingDir"].as_str().unwrap_or(""),
        "Labels": { "com.strata.build": "intermediate" },
        "HostConfig": { "NetworkMode": "none" },
    });
    let Value::Object(m) = body else {
        return Err(failed("internal: a container body"));
    };
    let (id, _) = crate::containers::create_from(d, m, None).await?;
    crate::containers::find(d, &id).map_err(Failed::from)
}

async fn remove(d: &Arc<Daemon>, c: &strata_runtime::Container) {
    if let Err(e) = crate::containers::remove_container(d, c, true).await {
        tracing::warn!(container = %c.id, "removing a build container: {}", e.message);
    }
}

/// Commits what container `c` changed on top of `img` with the stage's config.
async fn commit(
    d: &Arc<Daemon>,
    c: &strata_runtime::Container,
    img: &strata_graph::image::Image,
    state: &State,
    by: &str,
) -> Result<strata_graph::image::Image, Failed> {
    let daemon = d.clone();
    let c2 = c.clone();
    let parent = full_config(img);
    let config = state.config.clone();
    let by = by.to_string();
    tokio::task::spawn_blocking(move || -> Result<strata_graph::image::Image, Failed> {
        let layer = crate::containers::diff_layer(&daemon.layers, &c2)?;
        let diff = layer.as_ref().map(|l| l.diff_id.to_string());
        let cfg = next_image(
            &parent,
            &config,
            diff.as_deref(),
            &by,
            &strata_graph::time::rfc3339_now(),
            strata_runtime::commit::go_arch(),
        );
        let created = create_image(&daemon, &cfg);
        if let Some(l) = &layer {
            let _ = daemon.layers.release(&l.chain_id);
        }
        created
    })
    .await
    .map_err(|e| failed(e.to_string()))?
}

#[allow(clippy::too_many_arguments)]
async fn run_step(
    d: &Arc<Daemon>,
    img: &strata_graph::image::Image,
    state: &State,
    argv: &[String],
    env: &[String],
    by: &str,
    opts: &Opts,
    out: &Out,
) -> Result<strata_graph::image::Image, Failed> {
    let body = json!({
        "Image": img.id.to_string(),
        "Cmd": argv,
        "Entrypoint": [],
        "Env": env,
        "WorkingDir": state.config["WorkingDir"].as_str().unwrap_or(""),
        "User": state.config["User"].as_str().unwrap_or(""),
        "Labels": { "com.strata.build": "intermediate" },
        "HostConfig": { "NetworkMode": opts.network },
    });
    let Value::Object(m) = body else {
        return Err(failed("internal: a container body"));
    };
    let (id, _) = crate::containers::create_from(d, m, None).await?;
    let c = crate::containers::find(d, &id)?;
    out.line(format!(" ---> Running in {}\n", &id[..12])).await;
    let mut changes = d.changes.subscribe();
    // The output, live: attached before the start, so nothing is missed.
    let attached = crate::attach::connect_or_wait(
        d,
        &id,
        strata_runtime::lifecycle::attach_flags(false, true, true),
    );
    let started = crate::run::start_with(d, &id, false).await;
    if let Err(e) = started {
        remove(d, &c).await;
        return Err(e.into());
    }
    let (otx, mut orx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let reader = match attached {
        Ok(rx) => Some(tokio::spawn(async move {
            let Ok(stream) = rx.await else { return };
            let _ = tokio::task::spawn_blocking(move || {
                let mut s = std::io::BufReader::new(stream);
                while let Ok(Some((kind, payload))) = strata_runtime::shim::frame::read(&mut s) {
                    if kind == strata_runtime::shim::frame::EXIT {
                        break;
                    }
                    if otx.blocking_send(payload).is_err() {
                        break;
                    }
                }
            })
            .await;
        })),
        Err(e) => {
            drop(otx); // no output will come: end the loop below at once
            tracing::warn!(container = %id, "attaching to a build step: {}", e.message);
            None
        }
    };
    while let Some(chunk) = orx.recv().await {
        out.line(String::from_utf8_lossy(&chunk).into_owned()).await;
    }
    if let Some(r) = reader {
        let _ = r.await;
    }
    let code = loop {
        match changes.recv().await {
            Ok(ch) if ch.id == id && ch.what == "die" => break ch.code,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                if let Ok(c) = crate::containers::find(d, &id) {
                    if !c.state.running {
                        break c.state.exit_code;
                    }
                }
            }
            Err(_) => break -1,
        }
    };
    let c = crate::containers::find(d, &id)?;
    if code != 0 {
        if opts.rm || opts.forcerm {
            remove(d, &c).await;
        }
        return Err(Failed {
            message: format!(
                "The command '{}' returned a non-zero code: {code}",
                argv.join(" ")
            ),
            code: Some(code),
        });
    }
    let res = commit(d, &c, img, state, by).await;
    if opts.rm || opts.forcerm {
        out.line(format!("Removing intermediate container {}\n", &id[..12]))
            .await;
        remove(d, &c).await;
    }
    res
}

#[allow(clippy::too_many_arguments)]
async fn copy_step(
    d: &Arc<Daemon>,
    cache: &Caches,
    img: &strata_graph::image::Image,
    state: &State,
    src: SourceRoot,
    w: &CopyWork<'_>,
    opts: &Opts,
    out: &Out,
) -> Result<strata_graph::image::Image, Failed> {
    // Files from an image come out of a container of it, mounted.
    let src_container = match &src {
        SourceRoot::Context(_) => None,
        SourceRoot::Image(i) => Some(scratch_container(d, i, state).await?),
    };
    let src_dir = match (&src, &src_container) {
        (SourceRoot::Context(p), _) => p.clone(),
        (_, Some(c)) => d
            .layers
            .mount_rw(c.layer_name(), "")
            .map_err(|e| failed(e.to_string()))?,
        _ => return Err(failed("internal: no copy source")),
    };
    let result = copy_into(d, cache, img, state, &src_dir, w, opts, out).await;
    if let Some(c) = &src_container {
        let _ = d.layers.unmount_rw(c.layer_name());
        remove(d, c).await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn copy_into(
    d: &Arc<Daemon>,
    cache: &Caches,
    img: &strata_graph::image::Image,
    state: &State,
    src_dir: &Path,
    w: &CopyWork<'_>,
    opts: &Opts,
    out: &Out,
) -> Result<strata_graph::image::Image, Failed> {
    let CopyWork {
        sources,
        dest,
        chown,
        chmod,
        add,
    } = *w;
    let mode = chmod
        .map(parse_mode)
        .transpose()
        .map_err(|e| failed(e.to_string()))?;
    // ADD of URLs: each is downloaded into the context first (mode 0600, as Docker), then
    // copied like a file of it (never unpacked).
    let is_url = |s: &String| s.starts_with("http://") || s.starts_with("https://");
    let mut sources: Vec<String> = sources.to_vec();
    let mut fetched: Vec<String> = Vec::new();
    if add && sources.iter().any(is_url) {
        let dist = d.distribution.clone();
        let dir = src_dir.to_path_buf();
        let srcs = sources.clone();
        let (new, got) =
            tokio::task::spawn_blocking(move || -> Result<(Vec<String>, Vec<String>), Failed> {
                let mut out = Vec::new();
                let mut got = Vec::new();
                for (i, s) in srcs.iter().enumerate() {
                    if !(s.starts_with("http://") || s.starts_with("https://")) {
                        out.push(s.clone());
                        continue;
                    }
                    let name = s
                        .split(['?', '#'])
                        .next()
                        .and_then(|p| p.rsplit('/').next())
                        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
                        .unwrap_or("download")
                        .to_string();
                    let rel = format!(".strata-add-{i}/{name}");
                    let path = dir.join(&rel);
                    if let Some(p) = path.parent() {
                        std::fs::create_dir_all(p).map_err(|e| failed(e.to_string()))?;
                    }
                    let mut f = std::fs::File::create(&path).map_err(|e| failed(e.to_string()))?;
                    dist.fetch_url(s, &mut f)
                        .map_err(|e| failed(e.to_string()))?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| failed(e.to_string()))?;
                    got.push(rel.clone());
                    out.push(rel);
                }
                Ok((out, got))
            })
            .await
            .map_err(|e| failed(e.to_string()))??;
        sources = new;
        fetched = got;
    }
    let (resolved, sum) = {
        let dir = src_dir.to_path_buf();
        let srcs = sources.clone();
        tokio::task::spawn_blocking(move || -> Result<(Vec<PathBuf>, String), Failed> {
            let ctx = Context::open(&dir).map_err(|e| failed(e.to_string()))?;
            let mut all = Vec::new();
            for s in &srcs {
                all.extend(
                    strata_builder::context::resolve(&ctx, s).map_err(|e| failed(e.to_string()))?,
                );
            }
            let sum = strata_builder::context::checksum(&ctx, &srcs)
                .map_err(|e| failed(e.to_string()))?;
            Ok((all, sum))
        })
        .await
        .map_err(|e| failed(e.to_string()))??
    };
    // As dockerd's history: what was copied is named by its checksum.
    let kind = if resolved.len() == 1 && !src_dir.join(&resolved[0]).is_dir() {
        "file"
    } else if resolved.len() == 1 {
        "dir"
    } else {
        "multi"
    };
    let by = format!(
        "/bin/sh -c #(nop) {} {kind}:{} in {dest}",
        if add { "ADD" } else { "COPY" },
        sum.trim_start_matches("sha256:")
    );
    let by = by.as_str();
    let key = cache::key(
        &img.id.to_string(),
        by,
        &[
            &sum,
            chown.unwrap_or(""),
            chmod.unwrap_or(""),
            dest,
            &state.config.to_string(),
        ],
    );
    if let Some(i) = cached(d, cache, &key, img, &state.config, by, opts, out).await {
        return Ok(i);
    }
    let c = scratch_container(d, img, state).await?;
    let rootfs = match d.layers.mount_rw(c.layer_name(), "") {
        Ok(p) => p,
        Err(e) => {
            remove(d, &c).await;
            return Err(failed(e.to_string()));
        }
    };
    let several = sources.len() > 1
        || resolved.len() > 1
        || sources.iter().any(|s| s.contains(['*', '?', '[']));
    let copied = {
        let (src_dir, rootfs, dest, cid) = (
            src_dir.to_path_buf(),
            rootfs.clone(),
            dest.to_string(),
            c.id.clone(),
        );
        let chown = chown.map(String::from);
        let fetched: Vec<PathBuf> = fetched.iter().map(PathBuf::from).collect();
        tokio::task::spawn_blocking(move || -> Result<(), Failed> {
            let owner = match &chown {
                None => None,
                Some(spec) => {
                    let spec = if spec.contains(':') {
                        spec.clone()
                    } else {
                        format!("{spec}:{spec}")
                    };
                    let u =
                        strata_runtime::spec::user::resolve_user(&rootfs, &spec).map_err(|e| {
                            failed(format!(
                                "unable to convert uid/gid chown string to host mapping: {e}"
                            ))
                        })?;
                    Some((u.uid, u.gid))
                }
            };
            let ctx = Context::open(&src_dir).map_err(|e| failed(e.to_string()))?;
            let image_ctx = Context::open(&rootfs).map_err(|e| failed(e.to_string()))?;
            let exists_dir = |p: &str| {
                image_ctx
                    .entry(Path::new(p.trim_start_matches('/')))
                    .ok()
                    .flatten()
                    .is_some_and(|e| e.is_dir())
            };
            if add {
                // ADD unpacks local archives into the destination directory.
                for r in &resolved {
                    if let Some(e) = ctx.entry(r).map_err(|e| failed(e.to_string()))? {
                        let downloaded = fetched.contains(r);
                        if !downloaded
                            && !e.is_dir()
                            && !e.is_symlink()
                            && is_archive(&e.proc_path())
                        {
                            let f = std::fs::File::open(e.proc_path())
                                .map_err(|e| failed(e.to_string()))?;
                            let d = dest.trim_end_matches('/');
                            mkdir_in(&rootfs, d)?;
                            strata_runtime::copy::extract(
                                &rootfs,
                                if d.is_empty() { "/" } else { d },
                                &cid,
                                f,
                                false,
                            )
                            .map_err(|e| failed(e.to_string()))?;
                            continue;
                        }
                    }
                    write_copy(
                        &ctx,
                        std::slice::from_ref(r),
                        several,
                        &dest,
                        &CopyOpts { owner, mode },
                        &exists_dir,
                        &rootfs,
                        &cid,
                    )?;
                }
                return Ok(());
            }
            write_copy(
                &ctx,
                &resolved,
                several,
                &dest,
                &CopyOpts { owner, mode },
                &exists_dir,
                &rootfs,
                &cid,
            )
        })
        .await
        .map_err(|e| failed(e.to_string()))?
    };
    let _ = d.layers.unmount_rw(c.layer_name());
    let res = match copied {
        Ok(()) => commit(d, &c, img, state, by).await,
        Err(e) => Err(e),
    };
    remove(d, &c).await;
    if let Ok(i) = &res {
        let _ = cache.local.put(&key, &i.id.to_string());
    }
    res
}

/// WORKDIR: the directory is made in a container of `img` if missing, and committed (no
/// layer when it was there).
async fn workdir_step(
    d: &Arc<Daemon>,
    img: &strata_graph::image::Image,
    state: &State,
    by: &str,
) -> Result<strata_graph::image::Image, Failed> {
    let wd = state.config["WorkingDir"]
        .as_str()
        .unwrap_or("/")
        .to_string();
    let c = scratch_container(d, img, state).await?;
    let made = match d.layers.mount_rw(c.layer_name(), "") {
        Ok(rootfs) => {
            let res = tokio::task::spawn_blocking(move || mkdir_in(&rootfs, &wd))
                .await
                .map_err(|e| failed(e.to_string()))
                .and_then(|r| r);
            let _ = d.layers.unmount_rw(c.layer_name());
            res
        }
        Err(e) => Err(failed(e.to_string())),
    };
    let res = match made {
        Ok(()) => commit(d, &c, img, state, by).await,
        Err(e) => Err(e),
    };
    remove(d, &c).await;
    res
}

/// Creates the directory `dir` (absolute) in the root if missing (root-owned, 0755).
fn mkdir_in(rootfs: &Path, dir: &str) -> Result<(), Failed> {
    let mut tar = strata_graph::archive::tar::TarWriter::new(Vec::new());
    let mut cur = String::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        if !cur.is_empty() {
            cur.push('/');
        }
        cur.push_str(part);
        if !rootfs.join(&cur).is_dir() {
            let h = strata_graph::archive::tar::Header::new(
                cur.clone().into_bytes(),
                strata_graph::archive::tar::Kind::Dir,
                0,
            );
            tar.append(&h, None).map_err(|e| failed(e.to_string()))?;
        }
    }
    let data = tar.finish().map_err(|e| failed(e.to_string()))?;
    strata_runtime::copy::extract(rootfs, "/", "build", &data[..], false)
        .map_err(|e| failed(e.to_string()))
}

/// Whether a file starts as a tar archive does (plain, or compressed in a way the layer
/// code reads).
fn is_archive(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 512];
    let Ok(mut f) = std::fs::File::open(p) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    if n >= 262 && &head[257..262] == b"ustar" {
        return true;
    }
    !matches!(
        strata_graph::archive::Compression::detect(&head[..n]),
        strata_graph::archive::Compression::None
    )
}

#[allow(clippy::too_many_arguments)]
fn write_copy(
    ctx: &Context,
    sources: &[PathBuf],
    several: bool,
    dest: &str,
    opts: &CopyOpts,
    exists_dir: &dyn Fn(&str) -> bool,
    rootfs: &Path,
    cid: &str,
) -> Result<(), Failed> {
    let (mut rd, wr) = std::io::pipe().map_err(|e| failed(e.to_string()))?;
    let extract = {
        let rootfs = rootfs.to_path_buf();
        let cid = cid.to_string();
        std::thread::spawn(move || {
            strata_runtime::copy::extract(&rootfs, "/", &cid, &mut rd, false)
        })
    };
    let written = copy_tar(
        ctx,
        sources,
        several,
        dest,
        opts,
        exists_dir,
        std::io::BufWriter::new(wr),
    )
    .and_then(|w| w.into_inner().map_err(|e| e.into_error().into()).map(drop));
    let extracted = extract
        .join()
        .map_err(|_| failed("the copy's extraction panicked"))?;
    written.map_err(|e| failed(e.to_string()))?;
    extracted.map_err(|e| failed(e.to_string()))
}
