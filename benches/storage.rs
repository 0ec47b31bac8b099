//! The workloads of `strata bench storage` (strata-bench) as criterion benches, for
//! developers: one benchmark per driver and workload, each iteration one run of the
//! workload, timed as the sum of its timed sections (setting up is left out, as in the
//! harness). The harness's own table gives the per-metric figures; this gives criterion's
//! statistics and its comparison against a saved baseline.
//!
//! `cargo bench --bench storage [-- FILTER]` (root, for mounts). `STRATA_BENCH_SIZE=normal`
//! takes the harness's normal sizes (default: small); `STRATA_BENCH_DRIVERS=vfs,overlay2,btrfs`
//! picks the drivers (default: every one this host runs, each on the backing store the
//! harness would make for it).

use criterion::Criterion;
use std::time::Duration;
use strata_bench::backing::{probe, Backing};
use strata_bench::data::{DataSet, Sizes};
use strata_bench::series::Samples;
use strata_bench::workloads::{Ctx, ALL};
use strata_graph::StorageOpts;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        for w in ALL {
            println!("storage/<driver>/{}: bench", w.name);
        }
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: the storage benches need root (mounts)");
        return;
    }
    let sizes = match std::env::var("STRATA_BENCH_SIZE").as_deref() {
        Ok("normal") => Sizes::normal(),
        _ => Sizes::small(),
    };
    let data = DataSet::new(sizes);
    let drivers: Vec<String> = match std::env::var("STRATA_BENCH_DRIVERS") {
        Ok(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
        Err(_) => strata_drivers::KNOWN
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500));
    for name in &drivers {
        if let Some(why) = probe(name) {
            eprintln!("SKIPPED {name}: {why}");
            continue;
        }
        // No driver is set up for a filter that names none of its benchmarks.
        if let Some(f) = &filter {
            if !ALL
                .iter()
                .any(|w| format!("storage/{name}/{}", w.name).contains(f.as_str()))
            {
                continue;
            }
        }
        let backing = Backing::make(name, None, data.sizes.backing_bytes).expect("backing store");
        let driver = match strata_drivers::open(name, &backing.root, &StorageOpts::default()) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("SKIPPED {name}: {e}");
                continue;
            }
        };
        let ctx = Ctx {
            driver: &*driver,
            data: &data,
            fs: backing.fs_path(),
        };
        let mut g = c.benchmark_group(format!("storage/{name}"));
        for w in ALL {
            g.bench_function(w.name, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            w.run(&ctx, &mut Samples::default())
                                .unwrap_or_else(|e| panic!("{name} {}: {e}", w.name))
                        })
                        .sum()
                })
            });
        }
        g.finish();
        driver.cleanup().expect("cleanup");
        drop(driver);
        backing.teardown().expect("teardown");
    }
    c.final_summary();
}
