//! The workloads: each has a name, a definition (printed by `--list-workloads`, kept in the
//! JSON and in benches/README.md) and a function that runs it once on a driver and records
//! its samples. Setting up (base layers, lower files) is never timed; every layer a
//! workload makes is removed when it ends, also on failure ([`crate::scope::Scope`]).

mod apply;
pub(crate) mod commit;
mod concurrent;
mod layers;
mod space;
mod writes;

use crate::data::DataSet;
use crate::error::{BenchError, BenchResult, Context};
use crate::series::Samples;
use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};
use strata_graph::Driver;

/// What a workload runs against.
pub struct Ctx<'a> {
    pub driver: &'a dyn Driver,
    pub data: &'a DataSet,
    /// A path on the filesystem the driver stores its data on: `syncfs` and space figures.
    pub fs: &'a Path,
}

impl Ctx<'_> {
    /// Flushes the driver's filesystem.
    pub fn sync(&self) -> BenchResult<()> {
        strata_graph::fsutil::syncfs_path(self.fs).ctx(|| format!("syncfs {}", self.fs.display()))
    }

    /// Bytes in use on the driver's filesystem, after a flush.
    pub fn used_bytes(&self) -> BenchResult<u64> {
        self.sync()?;
        used_bytes(self.fs).ctx(|| format!("statvfs {}", self.fs.display()))
    }
}

/// Bytes in use on the filesystem holding `path` (`statvfs`: blocks less free blocks). On
/// ZFS, where `statvfs` counts the dataset's own blocks only and a layer is a dataset of its
/// own, the `used` property of the dataset, which counts its descendants too.
pub fn used_bytes(path: &Path) -> std::io::Result<u64> {
    if let Some(m) = strata_graph::fsutil::mount_of(path)?.filter(|m| m.fstype == "zfs") {
        let out = std::process::Command::new("zfs")
            .args(["list", "-H", "-p", "-o", "used", &m.source])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        return text.trim().parse().map_err(|_| {
            std::io::Error::other(format!(
                "zfs list -o used {}: {}{}",
                m.source,
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        });
    }
    let st = strata_graph::sys::statvfs(path)?;
    Ok((st.f_blocks - st.f_bfree) as u64 * st.f_frsize as u64)
}

/// A workload.
#[derive(Debug)]
pub struct Workload {
    pub name: &'static str,
    /// What it does and measures, exactly.
    pub definition: &'static str,
    /// Whether it runs through the Docker API (`--compare`) rather than on a driver.
    pub api: bool,
    run: fn(&Ctx, &mut Samples) -> BenchResult<()>,
}

impl Workload {
    /// Runs the workload once; returns the sum of its timed sections (what the criterion
    /// benches count: setting up is left out).
    pub fn run(&self, ctx: &Ctx, out: &mut Samples) -> BenchResult<Duration> {
        TIMED.with(|c| c.set(Duration::ZERO));
        (self.run)(ctx, out)?;
        Ok(TIMED.with(|c| c.get()))
    }
}

/// Every driver workload, in the order they run.
pub const ALL: &[Workload] = &[
    Workload {
        name: "apply",
        definition: "Unpack the small-files layer and the large-files layer, each uncompressed, gzip'd and zstd'd, into a new layer: decompression, unpacking and a syncfs of the driver's filesystem are timed. MB/s of uncompressed tar and files/s.",
        api: false,
        run: apply::run,
    },
    Workload {
        name: "apply-size",
        definition: "Unpack a layer of one file of random bytes, at each size of the sweep (1, 8, 64, 256 MiB), into a new layer, with syncfs: milliseconds against layer size.",
        api: false,
        run: apply::run_sizes,
    },
    Workload {
        name: "layer-create",
        definition: "Create image layers (snapshots) on top of a parent holding the small-files layer's first files (1,000): the create call alone, per layer.",
        api: false,
        run: layers::create,
    },
    Workload {
        name: "container-cycle",
        definition: "On a 10-layer image: create a container layer, mount it (get), unmount it (put), remove it; each step and the whole cycle in milliseconds.",
        api: false,
        run: layers::cycle,
    },
    Workload {
        name: "mount-depth",
        definition: "Chains of 1, 10, 100 and 400 image layers (one small file each; as deep as the driver allows): mount and unmount a container layer on top of each depth, milliseconds against depth.",
        api: false,
        run: layers::depth,
    },
    Workload {
        name: "first-write",
        definition: "A 1 GiB file in an image layer; in a container layer above it, open it, write 4 KiB in its middle and fsync: copy-up (overlay2, aufs, vfs has it copied already) against block copy-on-write (btrfs, zfs, devicemapper).",
        api: false,
        run: writes::first_write,
    },
    Workload {
        name: "metadata-churn",
        definition: "In a container layer over the small-files layer: create 2,000 empty files, stat them, unlink them (operations per second each), and unlink 500 files of the image layer (whiteouts).",
        api: false,
        run: writes::churn,
    },
    Workload {
        name: "diff-commit",
        definition: "A container over the small-files layer rewrites 5,000 files (a new 64-byte content each, new files where the layer has fewer). Timed: listing the changes, writing the diff tar, and a commit (the diff applied as a new image layer).",
        api: false,
        run: commit::diff_commit,
    },
    Workload {
        name: "export",
        definition: "Mount a container over the small-files and large-files layers and write its whole tree as a tar (docker export) to /dev/null: MB/s of tar.",
        api: false,
        run: commit::export,
    },
    Workload {
        name: "disk-space",
        definition: "Space used on the driver's filesystem (statvfs after syncfs; on ZFS the data root dataset's used property) by the small-files layer and by 10 child layers that add 1 MiB each, divided by the content they add (1.0 = no overhead).",
        api: false,
        run: space::disk_space,
    },
    Workload {
        name: "density",
        definition: "Create and mount 100 container layers from one image (small-files layer): milliseconds per container, and per container the space used (statvfs; on ZFS the used property) and the kernel memory kept (slab, with clean caches dropped before and after).",
        api: false,
        run: space::density,
    },
    Workload {
        name: "concurrent-starts",
        definition: "Prepare 8 container layers at once from one image (create + mount, one thread each): the wall time for all of them and each one's latency.",
        api: false,
        run: concurrent::starts,
    },
];

/// Every workload name, the driver ones and the API ones.
pub fn names() -> Vec<&'static str> {
    ALL.iter()
        .map(|w| w.name)
        .chain(crate::compare::WORKLOADS.iter().map(|w| w.name))
        .collect()
}

/// The workloads named, in their fixed order; all of them when none is named.
pub fn select(named: &[String]) -> BenchResult<Vec<&'static Workload>> {
    for n in named {
        if !names().contains(&n.as_str()) {
            return Err(BenchError::Usage(format!(
                "unknown workload {n:?}; known workloads: {}",
                names().join(", ")
            )));
        }
    }
    Ok(ALL
        .iter()
        .filter(|w| named.is_empty() || named.iter().any(|n| n == w.name))
        .collect())
}

thread_local! {
    /// The time spent in [`timed`] sections since the workload began.
    static TIMED: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Runs `f` and returns its result and how long it took; the time counts towards the
/// workload's total. Timed sections do not nest.
pub fn timed<T>(f: impl FnOnce() -> BenchResult<T>) -> BenchResult<(T, Duration)> {
    let t = Instant::now();
    let v = f()?;
    let took = t.elapsed();
    TIMED.with(|c| c.set(c.get() + took));
    Ok((v, took))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_checked() {
        let mut n = names();
        let len = n.len();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), len);
        let e = select(&["apply".into(), "nope".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown workload \"nope\"") && e.contains("mount-depth"),
            "{e}"
        );
        assert_eq!(select(&[]).unwrap().len(), ALL.len());
        assert_eq!(select(&["export".into()]).unwrap()[0].name, "export");
    }
}
