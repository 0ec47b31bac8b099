//! The devicemapper driver against overlay2 and btrfs (issue #10), in one run of the VM of
//! `tests/vm/run.sh` (this kernel has no device-mapper): the same workloads as the btrfs
//! benchmark (`driver_figures::measure`: layer create, which for devicemapper is a thin
//! snapshot; apply; container layer create + mount, and the whole create/mount/unmount/remove
//! cycle; first write into a 1 GB lower file, block copy-on-write vs copy-up; changes).
//!
//! Each driver has a filesystem of its own on the VM's scratch disk: overlay2 on a loop ext4,
//! btrfs on a loop btrfs, devicemapper on loop-lvm (sparse files on the scratch ext4) with a
//! 2 GB ext4 base. The VM runs under software emulation: absolute times are several times the
//! host's; compare ratios within the run.
//!
//! `cargo bench --bench devicemapper` (root). Results print as a Markdown table for
//! benches/README.md.

#[path = "support/driver_figures.rs"]
mod driver_figures;
#[path = "engines.rs"]
mod engines;

use driver_figures::{measure, Figures};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use strata_graph::graphtest::loopfs::{LoopFs, LoopFsError};
use strata_graph::graphtest::vm;
use strata_graph::{Driver, StorageOpts};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("devicemapper: bench");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: the devicemapper benchmark needs root (loop devices, mounts)");
        return;
    }
    if !Path::new("/dev/mapper/control").exists() {
        if vm::inside() {
            panic!("inside the VM without device-mapper");
        }
        in_the_vm();
        return;
    }
    let scratch = std::env::var_os("STRATA_TEST_DIR").unwrap_or_else(|| "/var/tmp".into());
    let dir = tempfile::Builder::new()
        .prefix("strata-bench-dm-")
        .tempdir_in(scratch)
        .expect("tempdir");
    let mk = |name: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(&p).expect("dir");
        p
    };
    let (bdir, edir, ddir) = (mk("b"), mk("e"), mk("d"));
    let loopfs = |dir: &Path, mkfs: &str| match LoopFs::new(dir, &[mkfs, "-q"], 3 << 30, "") {
        Ok(fs) => fs,
        Err(LoopFsError::NoTool(t)) => panic!("{t} is needed (btrfs-progs, e2fsprogs)"),
        Err(LoopFsError::Mount(why)) => panic!("mounting the {mkfs} filesystem: {why}"),
    };
    let bfs = loopfs(&bdir, "mkfs.btrfs");
    let efs = loopfs(&edir, "mkfs.ext4");
    let dm_opts = StorageOpts::parse(&[
        "dm.loopdatasize=4G".to_string(),
        "dm.loopmetadatasize=64M".to_string(),
        "dm.basesize=2G".to_string(),
        "dm.fs=ext4".to_string(),
    ])
    .expect("options");
    let run = |name: &str, d: Arc<dyn Driver>| -> Figures {
        eprintln!("measuring {name}");
        let f = measure(&d);
        if let Err(e) = d.cleanup() {
            eprintln!("{name} cleanup: {e}");
        }
        f
    };
    let o = run(
        "overlay2",
        Arc::new(
            strata_overlay::OverlayDriver::new(&efs.mnt.join("home"), &StorageOpts::default())
                .expect("overlay2"),
        ),
    );
    let b = run(
        "btrfs",
        Arc::new(
            strata_btrfs::BtrfsDriver::new(&bfs.mnt.join("home"), &StorageOpts::default())
                .expect("btrfs"),
        ),
    );
    let dm = run(
        "devicemapper",
        strata_devicemapper::DevmapperDriver::start(&ddir.join("home"), &dm_opts)
            .expect("devicemapper"),
    );
    print_table(&o, &b, &dm);
    drop((bfs, efs));
}

fn print_table(o: &Figures, b: &Figures, dm: &Figures) {
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    let row = |what: &str, f: fn(&Figures) -> Duration| {
        println!(
            "| {what} | {} | {} | {} | {:.2} |",
            ms(f(o)),
            ms(f(b)),
            ms(f(dm)),
            ratio(f(dm).as_secs_f64() / f(o).as_secs_f64())
        )
    };
    println!(
        "\n| what (in the VM) | overlay2 (ext4) | btrfs | devicemapper (loop-lvm, ext4) | devicemapper ÷ overlay2 |\n|---|---|---|---|---|"
    );
    row(
        "layer create (a snapshot for devicemapper), child of a 1,000-file parent (median of 30)",
        |f| f.create,
    );
    println!(
        "| apply of a 64 MB, 2,000-file layer (median of 3), throughput | {:.0} MB/s | {:.0} MB/s | {:.0} MB/s | {} (time) |",
        o.apply_mb_s,
        b.apply_mb_s,
        dm.apply_mb_s,
        ratio(o.apply_mb_s / dm.apply_mb_s)
    );
    row(
        "container layer create + mount on a 10-layer chain (median of 20)",
        |f| f.rw,
    );
    row(
        "container layer create + mount + unmount + remove (median of 20)",
        |f| f.cycle,
    );
    row(
        "first 4 KiB write + fsync into a 1 GB lower file (median of 3)",
        |f| f.first_write,
    );
    row(
        "changes: 100 files written in 5 of 100 directories of 10,000 files (median of 5)",
        |f| f.diff,
    );
    row(
        "the same by full tree comparison (reference; devicemapper has no other way)",
        |f| f.full_diff,
    );
}

/// A ratio with two decimals, or four below 0.1 (copy-up against block CoW is ~1/1000).
fn ratio(x: f64) -> String {
    if x < 0.1 {
        format!("{x:.4}")
    } else {
        format!("{x:.2}")
    }
}

/// Runs this benchmark binary in the VM and prints what it printed there.
fn in_the_vm() {
    eprintln!("no device-mapper in this kernel: running in the VM");
    if !vm::rerun_bench(&[("VM_DISK", "16G"), ("VM_PRELOAD", "btrfs")], &[]) {
        eprintln!("SKIPPED: no device-mapper here and no VM runner (../shared/vm/run-in-vm.sh)");
    }
}
