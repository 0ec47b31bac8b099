//! `disk-space` and `density`: what layers and containers cost in space and memory.

use super::commit::drop_caches;
use super::{timed, Ctx};
use crate::data::{one_file_tar, SEED};
use crate::error::{BenchResult, Context};
use crate::scope::Scope;
use crate::series::{Metric, Samples};

pub fn disk_space(ctx: &Ctx, out: &mut Samples) -> BenchResult<()> {
    let sz = &ctx.data.sizes;
    let layer = ctx.data.small_files()?;
    let mut s = Scope::new(ctx.driver, "space");
    let before = ctx.used_bytes()?;
    let mut parent = s.layer("base", None, &layer.tar)?;
    let after_base = ctx.used_bytes()?;
    out.push(
        Metric::lower("base layer", "× content"),
        after_base.saturating_sub(before) as f64 / layer.content as f64,
    );
    for i in 0..sz.space_children {
        let tar = one_file_tar(
            SEED + 100 + i as u64,
            &format!("child{i}"),
            sz.space_child_bytes,
        )?;
        let was = ctx.used_bytes()?;
        parent = s.layer("child", Some(&parent), &tar)?;
        let now = ctx.used_bytes()?;
        out.push(
            Metric::lower("child layer", "× content"),
            now.saturating_sub(was) as f64 / sz.space_child_bytes as f64,
        );
    }
    s.finish()
}

/// Bytes of kernel slab memory (dentries, inodes, mount and filesystem structures): what
/// mounted containers cost the kernel, without the page cache's ups and downs.
fn memory_used() -> BenchResult<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ctx(|| "reading /proc/meminfo".into())?;
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(kib * 1024)
}

pub fn density(ctx: &Ctx, out: &mut Samples) -> BenchResult<()> {
    let n = ctx.data.sizes.density;
    let mut s = Scope::new(ctx.driver, "density");
    let image = s.layer("image", None, &ctx.data.small_files()?.tar)?;
    drop_caches();
    let (space0, mem0) = (ctx.used_bytes()?, memory_used()?);
    for _ in 0..n {
        let (_, took) = timed(|| {
            let c = s.create_rw("c", Some(&image))?;
            s.get(&c).map(drop)
        })?;
        out.ms("create+mount", took);
    }
    let space1 = ctx.used_bytes()?;
    // Reclaimable caches the creates filled are not what a container keeps.
    drop_caches();
    let mem1 = memory_used()?;
    out.push(
        Metric::lower("space per container", "KiB"),
        space1.saturating_sub(space0) as f64 / 1024.0 / n as f64,
    );
    out.push(
        Metric::lower("memory per container", "KiB"),
        mem1.saturating_sub(mem0) as f64 / 1024.0 / n as f64,
    );
    s.finish()
}
