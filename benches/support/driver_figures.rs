//! The driver workloads the storage benchmarks share (issues #9, #10): one `measure` run
//! against any graph driver, so each driver's figures come from the same code. Under
//! `support/` so that cargo does not take it for a benchmark target of its own.

use crate::engines::median;
use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_graph::graphtest::tars::TarBuilder;
use strata_graph::{CreateOpts, Driver};

pub fn tar_of(files: usize, size: usize, prefix: &str) -> Vec<u8> {
    let mut t = TarBuilder::new().dir(prefix);
    for i in 0..files {
        let data: Vec<u8> = (0..size).map(|k| ((k * 13 + i) % 251) as u8).collect();
        t = t.file_mode(&format!("{prefix}/f{i}"), &data, 0o644, 0, 0);
    }
    t.build()
}

/// Medians of one driver's runs.
pub struct Figures {
    pub create: Duration,
    pub apply_mb_s: f64,
    pub rw: Duration,
    /// create_rw + get + put + remove.
    pub cycle: Duration,
    pub first_write: Duration,
    pub diff: Duration,
    /// The generic full-tree comparison, for reference.
    pub full_diff: Duration,
}

/// Runs every workload on `d` (an empty store) and returns the medians:
/// - layer create: a child layer of a 1,000-file parent (30 times);
/// - apply throughput: a 64 MB, 2,000-file layer tar unpacked into a new layer (3 times);
/// - container layer create + get on a 10-layer chain (20 times), and the whole cycle
///   create + get + put + remove (20 times);
/// - first write into a 1 GB file of a lower layer: 4 KiB written and fsynced in a container
///   layer (3 times);
/// - changes of a container layer that wrote 100 files in 5 of 100 directories (10,000
///   files), the driver's own way and by the generic full comparison (5 times each).
pub fn measure(d: &Arc<dyn Driver>) -> Figures {
    let o = CreateOpts::default();
    // A 1,000-file parent.
    d.create("p", None, &o).expect("parent");
    d.apply_diff("p", None, &mut &tar_of(1000, 1024, "etc")[..])
        .expect("apply");
    let mut create = Vec::new();
    for i in 0..30 {
        let id = format!("c{i}");
        let t = Instant::now();
        d.create(&id, Some("p"), &o).expect("create");
        create.push(t.elapsed());
    }
    for i in 0..30 {
        d.remove(&format!("c{i}")).expect("remove");
    }
    // Apply throughput.
    let big = tar_of(2000, 32 << 10, "data");
    let mut mbs = Vec::new();
    for i in 0..3 {
        let id = format!("a{i}");
        d.create(&id, Some("p"), &o).expect("create");
        let t = Instant::now();
        d.apply_diff(&id, Some("p"), &mut &big[..]).expect("apply");
        mbs.push(big.len() as f64 / 1e6 / t.elapsed().as_secs_f64());
    }
    mbs.sort_by(|a, b| a.total_cmp(b));
    // A 10-layer chain, then container layers on it.
    let mut parent = "p".to_string();
    for i in 0..10 {
        let id = format!("l{i}");
        d.create(&id, Some(&parent), &o).expect("create");
        d.apply_diff(
            &id,
            Some(&parent),
            &mut &tar_of(10, 100, &format!("l{i}"))[..],
        )
        .expect("apply");
        parent = id;
    }
    let mut rw = Vec::new();
    for i in 0..20 {
        let id = format!("rw{i}");
        let t = Instant::now();
        d.create_rw(&id, Some(&parent), &o).expect("rw");
        d.get(&id, "").expect("get");
        rw.push(t.elapsed());
        d.put(&id).expect("put");
        d.remove(&id).expect("remove");
    }
    let mut cycle = Vec::new();
    for i in 0..20 {
        let id = format!("cy{i}");
        let t = Instant::now();
        d.create_rw(&id, Some(&parent), &o).expect("rw");
        d.get(&id, "").expect("get");
        d.put(&id).expect("put");
        d.remove(&id).expect("remove");
        cycle.push(t.elapsed());
    }
    // First write into a 1 GB file of a lower layer.
    d.create("g", None, &o).expect("create");
    let gdir = d.get("g", "").expect("get");
    {
        let mut f = std::fs::File::create(gdir.join("big")).expect("big");
        let chunk = vec![0x42u8; 8 << 20];
        for _ in 0..128 {
            f.write_all(&chunk).expect("write");
        }
        f.sync_all().expect("sync");
    }
    d.put("g").expect("put");
    d.release_apply_target("g").ok();
    let mut first = Vec::new();
    for i in 0..3 {
        let id = format!("w{i}");
        d.create_rw(&id, Some("g"), &o).expect("rw");
        let dir = d.get(&id, "").expect("get");
        let t = Instant::now();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("big"))
            .expect("open");
        f.seek(SeekFrom::Start(512 << 20)).expect("seek");
        f.write_all(&[7u8; 4096]).expect("write");
        f.sync_all().expect("sync");
        first.push(t.elapsed());
        drop(f);
        d.put(&id).expect("put");
        d.remove(&id).expect("remove");
    }
    // Changes of a container that wrote 100 files in 5 of 100 directories of 10,000 files.
    // The files are written again before each call, so a commit they need is counted.
    let mut t = TarBuilder::new();
    for dir in 0..100 {
        t = t.dir(&format!("d{dir}"));
        for f in 0..100 {
            t = t.file_mode(&format!("d{dir}/f{f}"), &[b'x'; 256], 0o644, 0, 0);
        }
    }
    d.create("many", None, &o).expect("create");
    d.apply_diff("many", None, &mut &t.build()[..])
        .expect("apply");
    d.create_rw("mrw", Some("many"), &o).expect("rw");
    let timed = |f: &dyn Fn() -> usize| {
        let mut v = Vec::new();
        for round in 0..5 {
            let dir = d.get("mrw", "").expect("get");
            for i in 0..100 {
                let p = dir.join(format!("d{}/f{}", (i % 5) * 20, i));
                std::fs::write(p, format!("changed {round}")).expect("change");
            }
            d.put("mrw").expect("put");
            let t = Instant::now();
            let n = f();
            v.push(t.elapsed());
            assert_eq!(n, 100);
        }
        median(v)
    };
    let files = |c: Vec<strata_graph::archive::Change>| {
        c.iter()
            .filter(|c| c.path.matches('/').count() == 2)
            .count()
    };
    let diff = timed(&|| files(d.changes("mrw", Some("many")).expect("changes")));
    let full_diff = timed(&|| {
        files(strata_graph::driver::naive::changes(&**d, "mrw", Some("many")).expect("changes"))
    });
    Figures {
        create: median(create),
        apply_mb_s: mbs[mbs.len() / 2],
        rw: median(rw),
        cycle: median(cycle),
        first_write: median(first),
        diff,
        full_diff,
    }
}
