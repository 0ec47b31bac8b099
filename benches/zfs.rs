//! The zfs driver against overlay2 (issue #11), in one run of the VM of `tests/vm/run.sh`
//! (this kernel has no ZFS; the OpenZFS modules come from `shared/vm/build-zfs-module.sh` and
//! the pool from `tests/vm/with-zfs.sh`, lz4 on, on a loop device): the workloads of the
//! btrfs and devicemapper benchmarks (`driver_figures::measure`), plus when `zfs diff` pays:
//! the changes of a small layer (200 files) and of a large one (10,000 files), by `zfs diff`
//! narrowing the comparison and by the full comparison.
//!
//! The VM runs under software emulation, where starting any `zfs` command costs ~0.3 s (a
//! real machine: a few ms): absolute times are far above the host's; compare ratios.
//!
//! `cargo bench --bench zfs` (root). Results print as a Markdown table for
//! benches/README.md.

#[path = "support/driver_figures.rs"]
mod driver_figures;
#[path = "engines.rs"]
mod engines;

use driver_figures::{measure, Figures};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_graph::graphtest::loopfs::{LoopFs, LoopFsError};
use strata_graph::graphtest::tars::TarBuilder;
use strata_graph::graphtest::vm;
use strata_graph::{CreateOpts, Driver, StorageOpts};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("zfs: bench");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: the zfs benchmark needs root (loop devices, mounts)");
        return;
    }
    let Ok(pool) = std::env::var("STRATA_ZFS_POOL") else {
        if vm::inside() {
            panic!("inside the VM without a pool (run under tests/vm/with-zfs.sh)");
        }
        in_the_vm();
        return;
    };
    let scratch = std::env::var_os("STRATA_TEST_DIR").unwrap_or_else(|| "/var/tmp".into());
    let dir = tempfile::Builder::new()
        .prefix("strata-bench-zfs-")
        .tempdir_in(scratch)
        .expect("tempdir");
    let edir = dir.path().join("e");
    std::fs::create_dir_all(&edir).expect("dir");
    let efs = match LoopFs::new(&edir, &["mkfs.ext4", "-q"], 3 << 30, "") {
        Ok(fs) => fs,
        Err(LoopFsError::NoTool(t)) => panic!("{t} is needed (e2fsprogs)"),
        Err(LoopFsError::Mount(why)) => panic!("mounting ext4: {why}"),
    };
    let fsname = format!("{pool}/bench");
    let st = std::process::Command::new("zfs")
        .args(["create", "-o", "mountpoint=none", &fsname])
        .status()
        .expect("zfs create");
    assert!(st.success());
    let run = |name: &str, d: Arc<dyn Driver>| -> (Figures, DiffCost) {
        eprintln!("measuring {name}");
        let f = measure(&d);
        let c = diff_cost(&d);
        if let Err(e) = d.cleanup() {
            eprintln!("{name} cleanup: {e}");
        }
        (f, c)
    };
    let o = run(
        "overlay2",
        Arc::new(
            strata_overlay::OverlayDriver::new(&efs.mnt.join("home"), &StorageOpts::default())
                .expect("overlay2"),
        ),
    );
    let z = run(
        "zfs",
        Arc::new(
            strata_zfs::ZfsDriver::new(
                &dir.path().join("zhome"),
                &StorageOpts::parse(&[format!("zfs.fsname={fsname}")]).expect("opts"),
            )
            .expect("zfs"),
        ),
    );
    print_table(&o, &z);
    drop(efs);
}

/// The changes of a container layer that changed 10 files, on a small and a large parent,
/// the driver's way and by the full comparison (medians of 5).
struct DiffCost {
    small: Duration,
    small_full: Duration,
    large: Duration,
    large_full: Duration,
}

fn diff_cost(d: &Arc<dyn Driver>) -> DiffCost {
    let o = CreateOpts::default();
    let one = |name: &str, dirs: usize, files: usize| -> (Duration, Duration) {
        let mut t = TarBuilder::new();
        for dir in 0..dirs {
            t = t.dir(&format!("d{dir}"));
            for f in 0..files {
                t = t.file_mode(&format!("d{dir}/f{f}"), &[b'y'; 128], 0o644, 0, 0);
            }
        }
        d.create(name, None, &o).expect("create");
        d.apply_diff(name, None, &mut &t.build()[..])
            .expect("apply");
        let rw = format!("{name}-rw");
        d.create_rw(&rw, Some(name), &o).expect("rw");
        let root = d.get(&rw, "").expect("get");
        for i in 0..10 {
            std::fs::write(root.join(format!("d{}/f{i}", i % dirs)), "changed").expect("write");
        }
        d.put(&rw).expect("put");
        let time = |f: &dyn Fn() -> usize| {
            let mut v = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                assert!(f() >= 10);
                v.push(t.elapsed());
            }
            engines::median(v)
        };
        let native = time(&|| d.changes(&rw, Some(name)).expect("changes").len());
        let full = time(&|| {
            strata_graph::driver::naive::changes(&**d, &rw, Some(name))
                .expect("changes")
                .len()
        });
        d.remove(&rw).expect("remove");
        d.remove(name).expect("remove");
        (native, full)
    };
    let (small, small_full) = one("small", 10, 20);
    let (large, large_full) = one("large", 100, 100);
    DiffCost {
        small,
        small_full,
        large,
        large_full,
    }
}

fn print_table(o: &(Figures, DiffCost), z: &(Figures, DiffCost)) {
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    let row = |what: &str, f: &dyn Fn(&(Figures, DiffCost)) -> Duration| {
        println!(
            "| {what} | {} | {} | {} |",
            ms(f(o)),
            ms(f(z)),
            ratio(f(z).as_secs_f64() / f(o).as_secs_f64())
        )
    };
    println!(
        "\n| what (in the VM) | overlay2 (ext4) | zfs (lz4) | zfs ÷ overlay2 |\n|---|---|---|---|"
    );
    row(
        "layer create (a snapshot + clone for zfs), child of a 1,000-file parent (median of 30)",
        &|f| f.0.create,
    );
    println!(
        "| apply of a 64 MB, 2,000-file layer (median of 3), throughput | {:.0} MB/s | {:.0} MB/s | {} (time) |",
        o.0.apply_mb_s,
        z.0.apply_mb_s,
        ratio(o.0.apply_mb_s / z.0.apply_mb_s)
    );
    row(
        "container layer create + mount on a 10-layer chain (median of 20)",
        &|f| f.0.rw,
    );
    row(
        "container layer create + mount + unmount + remove (median of 20)",
        &|f| f.0.cycle,
    );
    row(
        "first 4 KiB write + fsync into a 1 GB lower file (median of 3)",
        &|f| f.0.first_write,
    );
    row(
        "changes: 100 files written in 5 of 100 directories of 10,000 files (median of 5)",
        &|f| f.0.diff,
    );
    row("the same by full tree comparison", &|f| f.0.full_diff);
    row(
        "changes: 10 files of a 200-file layer, the driver's way (median of 5)",
        &|f| f.1.small,
    );
    row("the same by full tree comparison", &|f| f.1.small_full);
    row(
        "changes: 10 files of a 10,000-file layer, the driver's way (median of 5)",
        &|f| f.1.large,
    );
    row("the same by full tree comparison", &|f| f.1.large_full);
}

/// A ratio with two decimals, or four below 0.1.
fn ratio(x: f64) -> String {
    if x < 0.1 {
        format!("{x:.4}")
    } else {
        format!("{x:.2}")
    }
}

/// Runs this benchmark binary in the VM, with the zfs modules and a pool, and prints what it
/// printed there.
fn in_the_vm() {
    let Some(modules) = vm::zfs_modules() else {
        eprintln!("SKIPPED: no ZFS here and no VM runner (../shared/vm/run-in-vm.sh)");
        return;
    };
    eprintln!("no ZFS in this kernel: running in the VM");
    let modules = modules.display().to_string();
    let env = [
        ("STRATA_ZFS_MODULES", modules.as_str()),
        ("STRATA_ZFS_POOL_SIZE", "8G"),
        ("VM_DISK", "16G"),
    ];
    assert!(
        vm::rerun_bench(&env, &["with-zfs.sh"]),
        "the VM runner went away"
    );
}
