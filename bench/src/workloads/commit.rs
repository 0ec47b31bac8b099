//! `diff-commit` and `export`: reading a container's changes and tree back as tars.

use super::{timed, Ctx};
use crate::error::{BenchResult, Context};
use crate::scope::Scope;
use crate::series::{Metric, Samples};
use std::io::Write;

pub fn diff_commit(ctx: &Ctx, out: &mut Samples) -> BenchResult<()> {
    let sz = &ctx.data.sizes;
    let layer = ctx.data.small_files()?;
    let mut s = Scope::new(ctx.driver, "commit");
    let image = s.layer("image", None, &layer.tar)?;
    let c = s.create_rw("c", Some(&image))?;
    let root = s.get(&c)?;
    for i in 0..sz.changed_files {
        let dir = root.join(format!("usr/d{:03}", i / 100));
        std::fs::create_dir_all(&dir).ctx(|| format!("mkdir {}", dir.display()))?;
        let p = dir.join(format!("f{i:05}"));
        std::fs::write(&p, format!("changed {i:>56}\n"))
            .ctx(|| format!("writing {}", p.display()))?;
    }
    s.put(&c)?;
    ctx.sync()?;
    let d = ctx.driver;
    let (changes, took) = timed(|| {
        d.changes(&c, Some(&image))
            .ctx(|| format!("changes of {c}"))
    })?;
    out.ms("changes", took);
    out.push(
        Metric::lower("changed paths", "paths"),
        changes.len() as f64,
    );
    let (tar, took) = timed(|| {
        let mut buf = Vec::new();
        d.diff(&c, Some(&image), &mut buf)
            .ctx(|| format!("diff of {c}"))?;
        Ok(buf)
    })?;
    out.ms("diff", took);
    let (_, took) = timed(|| {
        let id = s.create("committed", Some(&image))?;
        s.apply(&id, Some(&image), &mut &tar[..])?;
        ctx.sync()
    })?;
    out.ms("commit", took);
    s.finish()
}

/// Counts what passes through.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn export(ctx: &Ctx, out: &mut Samples) -> BenchResult<()> {
    let mut s = Scope::new(ctx.driver, "export");
    let base = s.layer("small", None, &ctx.data.small_files()?.tar)?;
    let top = s.layer("large", Some(&base), &ctx.data.large_files()?.tar)?;
    let c = s.create_rw("c", Some(&top))?;
    let root = s.get(&c)?;
    // From disk, not from the page cache the applies left.
    ctx.sync()?;
    drop_caches();
    let (bytes, took) = timed(|| {
        strata_runtime::copy::export_tree(&root, Counter(0))
            .map(|c| c.0)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .ctx(|| format!("exporting {c}"))
    })?;
    out.push(
        Metric::rate("tree", "MB/s"),
        bytes as f64 / 1e6 / took.as_secs_f64(),
    );
    out.ms("tree", took);
    s.finish()
}

/// Drops clean page cache, dentries and inodes (`/proc/sys/vm/drop_caches`), so that reads
/// come from the filesystem; silently nothing where it cannot be written.
pub fn drop_caches() {
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}
