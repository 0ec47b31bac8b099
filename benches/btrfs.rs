//! The btrfs driver against overlay2 (issue #9), each on a loop-mounted filesystem of its own
//! made for the run: btrfs for `btrfs`, ext4 for `overlay2` (its usual home; on btrfs overlay's
//! copy-up would reflink). Medians of repeated runs:
//! - layer create: a child layer of a 1,000-file parent (a snapshot vs a directory);
//! - apply throughput: a 64 MB, 2,000-file layer tar unpacked into a new layer;
//! - container layer creation (create_rw + get) on a 10-layer chain;
//! - first write into a 1 GB file of a lower layer: 4 KiB written and fsynced in a container
//!   layer (block-level copy-on-write vs overlay's whole-file copy-up);
//! - changes of a container layer that wrote 100 files in 5 of 100 directories (10,000
//!   files), the driver's own way and by the generic full comparison.
//!
//! `cargo bench --bench btrfs` (root; btrfs-progs and e2fsprogs from Debian). Results print as
//! a Markdown table for benches/README.md.

#[path = "support/driver_figures.rs"]
mod driver_figures;
#[path = "engines.rs"]
mod engines;

use driver_figures::measure;
use std::sync::Arc;
use std::time::Duration;
use strata_graph::graphtest::loopfs::LoopFs;
use strata_graph::{Driver, StorageOpts};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("btrfs: bench");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: the btrfs benchmark needs root (loop mounts)");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("strata-bench-btrfs-")
        .tempdir_in("/var/tmp")
        .expect("tempdir");
    let bdir = dir.path().join("b");
    let edir = dir.path().join("e");
    std::fs::create_dir_all(&bdir).expect("dir");
    std::fs::create_dir_all(&edir).expect("dir");
    let (Ok(bfs), Ok(efs)) = (
        LoopFs::new(&bdir, &["mkfs.btrfs", "-q"], 6 << 30, ""),
        LoopFs::new(&edir, &["mkfs.ext4", "-q"], 6 << 30, ""),
    ) else {
        eprintln!("SKIPPED: mkfs.btrfs and mkfs.ext4 are needed");
        return;
    };
    let btrfs: Arc<dyn Driver> = Arc::new(
        strata_btrfs::BtrfsDriver::new(&bfs.mnt.join("home"), &StorageOpts::default())
            .expect("btrfs"),
    );
    let overlay: Arc<dyn Driver> = Arc::new(
        strata_overlay::OverlayDriver::new(&efs.mnt.join("home"), &StorageOpts::default())
            .expect("overlay2"),
    );
    let b = measure(&btrfs);
    let o = measure(&overlay);
    let _ = btrfs.cleanup();
    let _ = overlay.cleanup();
    drop((btrfs, overlay));
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    // One table row of a time: overlay2, btrfs, btrfs ÷ overlay2.
    let row = |what: &str, o: Duration, b: Duration| {
        println!(
            "| {what} | {} | {} | {:.2} |",
            ms(o),
            ms(b),
            b.as_secs_f64() / o.as_secs_f64()
        )
    };
    println!("\n| what | overlay2 (ext4) | btrfs | btrfs ÷ overlay2 |\n|---|---|---|---|");
    row(
        "layer create, child of a 1,000-file parent (median of 30)",
        o.create,
        b.create,
    );
    println!(
        "| apply of a 64 MB, 2,000-file layer (median of 3) | {:.0} MB/s | {:.0} MB/s | {:.2} |",
        o.apply_mb_s,
        b.apply_mb_s,
        o.apply_mb_s / b.apply_mb_s
    );
    row(
        "container layer create + get on a 10-layer chain (median of 20)",
        o.rw,
        b.rw,
    );
    row(
        "container layer create + get + put + remove (median of 20)",
        o.cycle,
        b.cycle,
    );
    row(
        "first 4 KiB write + fsync into a 1 GB lower file (median of 3)",
        o.first_write,
        b.first_write,
    );
    row(
        "changes: 100 files written in 5 of 100 directories of 10,000 files (median of 5)",
        o.diff,
        b.diff,
    );
    row(
        "the same by full tree comparison (reference)",
        o.full_diff,
        b.full_diff,
    );
    drop((bfs, efs));
}
