//! The benchmark run: pick the drivers, give each a backing store, run every workload on
//! it, clean up, and report. A driver this host cannot run is skipped with the reason; a
//! failure (a full disk, a driver error) ends that driver's workloads, keeps what was
//! measured and moves on; SIGINT/SIGTERM stop the run after the current step, cleaned up.

use crate::args::{Size, StorageArgs};
use crate::backing::{probe, Backing};
use crate::compare::{self, Engine, StrataDaemon};
use crate::data::{DataSet, Sizes, SEED};
use crate::error::{BenchError, BenchResult};
use crate::host::HostFacts;
use crate::progress::Progress;
use crate::report::{now_unix, DriverReport, Report, WorkloadInfo};
use crate::series::{Results, Samples};
use crate::workloads::{self, Ctx, Workload};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use strata_graph::StorageOpts;

/// Driver option prefixes: `<prefix>.key` goes to that driver only.
const PREFIXES: &[(&str, &str)] = &[
    ("overlay2", "overlay2."),
    ("btrfs", "btrfs."),
    ("devicemapper", "dm."),
    ("zfs", "zfs."),
    ("vfs", "vfs."),
    ("aufs", "aufs."),
];

/// The options of `all` that apply to `driver`.
pub fn opts_for(driver: &str, all: &[String]) -> Vec<String> {
    all.iter()
        .filter(|o| {
            let key = o
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match PREFIXES.iter().find(|(_, p)| key.starts_with(p)) {
                Some((d, _)) => *d == driver,
                None => true,
            }
        })
        .cloned()
        .collect()
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

/// What a run ended with.
pub struct Outcome {
    pub report: Report,
    /// Plot files written.
    pub plots: Vec<PathBuf>,
    /// The table printed.
    pub table: String,
}

impl Outcome {
    /// 0 when every requested driver was measured without error, else 1.
    pub fn exit_code(&self) -> i32 {
        if self.report.errors.is_empty() && self.report.complete {
            0
        } else {
            1
        }
    }
}

/// Prints the workloads' definitions.
pub fn list_workloads() -> String {
    let mut out = String::new();
    for w in workloads::ALL {
        out.push_str(&format!("{}\n    {}\n", w.name, w.definition));
    }
    for w in compare::WORKLOADS {
        out.push_str(&format!(
            "{} (with --compare)\n    {}\n",
            w.name, w.definition
        ));
    }
    out
}

struct Plan {
    /// The strata binary, for the daemons of `--compare`.
    exe: PathBuf,
    drivers: Vec<&'static str>,
    explicit: bool,
    workloads: Vec<&'static Workload>,
    api: bool,
}

fn plan(args: &StorageArgs, exe: &Path) -> BenchResult<Plan> {
    if args.runs == 0 {
        return Err(BenchError::Usage("--runs must be at least 1".into()));
    }
    let mut drivers = Vec::new();
    for d in &args.drivers {
        let name = strata_drivers::canonical(d).map_err(|e| BenchError::Usage(e.to_string()))?;
        if !drivers.contains(&name) {
            drivers.push(name);
        }
    }
    let explicit = !drivers.is_empty();
    if !explicit {
        drivers = strata_drivers::KNOWN.to_vec();
    }
    StorageOpts::parse(&args.storage_opts).map_err(|e| BenchError::Usage(e.to_string()))?;
    let workloads = workloads::select(&args.workloads)?;
    let api_named = args
        .workloads
        .iter()
        .any(|w| compare::WORKLOADS.iter().any(|a| a.name == w));
    let api = args.compare.is_some() && (args.workloads.is_empty() || api_named);
    if api_named && args.compare.is_none() {
        return Err(BenchError::Usage(
            "the api-* workloads run through the Engine API: give --compare DOCKER_HOST".into(),
        ));
    }
    Ok(Plan {
        exe: exe.to_path_buf(),
        drivers,
        explicit,
        workloads,
        api,
    })
}

/// Runs the benchmark `args` describe; `exe` is the strata binary (for the daemons of
/// `--compare`). Usage errors come back as `Err` before anything is made.
pub fn run(args: &StorageArgs, exe: &Path) -> BenchResult<Outcome> {
    let plan = plan(args, exe)?;
    // Fail before measuring anything when the other engine cannot be reached.
    let other = match &args.compare {
        Some(host) => Some(Engine::connect(host, None)?),
        None => None,
    };
    catch_signals();
    let sizes = match args.size {
        Size::Normal => Sizes::normal(),
        Size::Small => Sizes::small(),
    };
    let data = DataSet::new(sizes.clone());
    let mut report = Report {
        schema: 1,
        started_unix: now_unix(),
        finished_unix: None,
        complete: false,
        host: HostFacts::gather(),
        runs: args.runs,
        sizes,
        seed: SEED,
        compare: args.compare.clone(),
        drivers: Vec::new(),
        workloads: plan
            .workloads
            .iter()
            .map(|w| WorkloadInfo {
                name: w.name,
                definition: w.definition,
            })
            .chain(
                compare::WORKLOADS
                    .iter()
                    .filter(|_| plan.api)
                    .map(|w| WorkloadInfo {
                        name: w.name,
                        definition: w.definition,
                    }),
            )
            .collect(),
        results: Vec::new(),
        errors: Vec::new(),
    };
    let mut results = Results::default();
    let api_steps = if plan.api { args.runs } else { 0 };
    let progress = Progress::new(
        (plan.drivers.len() * (plan.workloads.len() * args.runs + api_steps) + api_steps) as u64,
    );
    let save = |report: &mut Report, results: &Results| -> BenchResult<()> {
        report.results = results.series.clone();
        match &args.json {
            Some(p) => report.write(p),
            None => Ok(()),
        }
    };
    for driver in &plan.drivers {
        if STOP.load(Ordering::SeqCst) {
            break;
        }
        let opts = opts_for(driver, &args.storage_opts);
        let mut dr = DriverReport {
            name: driver.to_string(),
            state: "measured",
            reason: None,
            backing: None,
            storage_opts: Default::default(),
            status: Vec::new(),
        };
        match bench_driver(
            args,
            &plan,
            driver,
            &opts,
            &data,
            &mut results,
            &mut dr,
            &progress,
        ) {
            Ok(errors) => report.errors.extend(errors),
            Err(e) => {
                let text = format!("{driver}: {e}");
                if dr.state == "skipped" && !plan.explicit {
                    progress.note(&format!("skipped {text}"));
                } else {
                    dr.state = if dr.state == "skipped" {
                        "skipped"
                    } else {
                        "failed"
                    };
                    progress.note(&format!("error: {text}"));
                    report.errors.push(text.clone());
                }
                dr.reason = Some(e.to_string());
            }
        }
        report.drivers.push(dr);
        save(&mut report, &results)?;
    }
    if let (Some(engine), false) = (&other, STOP.load(Ordering::SeqCst)) {
        match compare::image_archive(&data) {
            Ok(archive) => {
                for run in 0..args.runs {
                    progress.step(&format!(
                        "{} · api-lifecycle · run {}/{}",
                        engine.label,
                        run + 1,
                        args.runs
                    ));
                    let mut s = Samples::default();
                    let r = compare::lifecycle(engine, &archive, &mut s);
                    results.add_run(&engine.label, &engine.driver, "api-lifecycle", run, s);
                    progress.done();
                    if let Err(e) = r {
                        progress.note(&format!("error: {e}"));
                        report.errors.push(e.to_string());
                        break;
                    }
                }
            }
            Err(e) => report.errors.push(format!("api-lifecycle: {e}")),
        }
    }
    progress.finish();
    let interrupted = STOP.load(Ordering::SeqCst);
    if interrupted {
        report
            .errors
            .push("interrupted: the run stopped early".into());
    }
    report.complete = !interrupted;
    report.finished_unix = Some(now_unix());
    save(&mut report, &results)?;
    let plots = match &args.plot {
        Some(dir) => crate::plots::write_all(dir, &results.series)?,
        None => Vec::new(),
    };
    let table = crate::table::render(&results.series);
    Ok(Outcome {
        report,
        plots,
        table,
    })
}

/// Benchmarks one driver. `Err` when it could not run at all (then `dr.state` says whether
/// it was skipped); `Ok` with the errors of workloads that failed part-way.
#[allow(clippy::too_many_arguments)]
fn bench_driver(
    args: &StorageArgs,
    plan: &Plan,
    driver: &'static str,
    opts: &[String],
    data: &DataSet,
    results: &mut Results,
    dr: &mut DriverReport,
    progress: &Progress,
) -> BenchResult<Vec<String>> {
    let steps = plan.workloads.len() * args.runs + if plan.api { args.runs } else { 0 };
    let skip_steps = |p: &Progress, n: usize| (0..n).for_each(|_| p.done());
    // The options are known good: `plan` parsed them all.
    let storage = StorageOpts::parse(opts).map_err(|e| BenchError::Usage(e.to_string()))?;
    dr.storage_opts = storage.0.clone();
    if let Some(why) = probe(driver) {
        dr.state = "skipped";
        skip_steps(progress, steps);
        return Err(BenchError::Backing(why));
    }
    let backing = match Backing::make(driver, args.root.as_deref(), data.sizes.backing_bytes) {
        Ok(b) => b,
        Err(e) => {
            skip_steps(progress, steps);
            return Err(e);
        }
    };
    dr.backing = Some(backing.description.clone());
    let d = match strata_drivers::open(driver, &backing.root, &storage) {
        Ok(d) => d,
        Err(e) => {
            skip_steps(progress, steps);
            // Not supported here (e.g. the root's filesystem): a skip when not asked for.
            if matches!(
                e,
                strata_drivers::RegistryError::Driver(
                    strata_graph::DriverError::NotSupported { .. }
                )
            ) && args.root.is_none()
            {
                dr.state = "skipped";
            }
            let msg = match &args.root {
                Some(r) => format!(
                    "cannot run on --root {} ({}): {e}",
                    r.display(),
                    backing.description
                ),
                None => e.to_string(),
            };
            backing.teardown()?;
            return Err(BenchError::Backing(msg));
        }
    };
    dr.status = d.status();
    let mut errors = Vec::new();
    let ctx = Ctx {
        driver: &*d,
        data,
        fs: backing.fs_path(),
    };
    let mut full = false;
    'workloads: for w in &plan.workloads {
        for run in 0..args.runs {
            if STOP.load(Ordering::SeqCst) || full {
                progress.done();
                continue;
            }
            progress.step(&format!(
                "{driver} · {} · run {}/{}",
                w.name,
                run + 1,
                args.runs
            ));
            let mut s = Samples::default();
            let r = w.run(&ctx, &mut s).map(drop);
            results.add_run("strata", driver, w.name, run, s);
            progress.done();
            if let Err(e) = r {
                let mut text = format!("{driver}: {} run {}: {e}", w.name, run + 1);
                if e.is_no_space() {
                    text.push_str(&format!(
                        " (the backing store {} is full: give --root on a larger filesystem, or --size small; the remaining workloads of {driver} are skipped)",
                        backing.description
                    ));
                    full = true;
                }
                progress.note(&format!("error: {text}"));
                errors.push(text);
                // The remaining runs of this workload are skipped.
                for _ in run + 1..args.runs {
                    progress.done();
                }
                continue 'workloads;
            }
        }
    }
    if let Err(e) = d.cleanup() {
        errors.push(format!("{driver}: cleanup: {e}"));
    }
    drop(d);
    if plan.api && !STOP.load(Ordering::SeqCst) && !full {
        if let Err(e) = api_on_strata(
            args, &plan.exe, driver, opts, data, &backing, results, progress,
        ) {
            let text = format!("{driver}: api-lifecycle: {e}");
            progress.note(&format!("error: {text}"));
            errors.push(text);
        }
    } else if plan.api {
        skip_steps(progress, args.runs);
    }
    if let Err(e) = backing.teardown() {
        errors.push(format!("{driver}: removing the backing store: {e}"));
    }
    Ok(errors)
}

/// `api-lifecycle` against a Strata daemon on the driver's backing store.
#[allow(clippy::too_many_arguments)]
fn api_on_strata(
    args: &StorageArgs,
    exe: &Path,
    driver: &'static str,
    opts: &[String],
    data: &DataSet,
    backing: &Backing,
    results: &mut Results,
    progress: &Progress,
) -> BenchResult<()> {
    let archive = compare::image_archive(data)?;
    let daemon = StrataDaemon::start(exe, &backing.root.join("daemon"), driver, opts)?;
    let engine = Engine::connect(&daemon.host, Some("strata"))?;
    let mut res = Ok(());
    for run in 0..args.runs {
        if res.is_err() || STOP.load(Ordering::SeqCst) {
            progress.done();
            continue;
        }
        progress.step(&format!(
            "{driver} · api-lifecycle · run {}/{}",
            run + 1,
            args.runs
        ));
        let mut s = Samples::default();
        res = compare::lifecycle(&engine, &archive, &mut s);
        results.add_run("strata", driver, "api-lifecycle", run, s);
        progress.done();
    }
    drop(daemon);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_go_to_their_driver() {
        let all = vec![
            "overlay2.size=1G".to_string(),
            "dm.basesize=20G".to_string(),
            "size=5G".to_string(),
        ];
        assert_eq!(
            opts_for("overlay2", &all),
            vec!["overlay2.size=1G", "size=5G"]
        );
        assert_eq!(
            opts_for("devicemapper", &all),
            vec!["dm.basesize=20G", "size=5G"]
        );
        assert_eq!(opts_for("vfs", &all), vec!["size=5G"]);
    }
}
