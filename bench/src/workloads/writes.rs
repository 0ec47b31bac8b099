//! `first-write` and `metadata-churn`: writing in a container layer.

use super::{timed, Ctx};
use crate::data::{large_content, Rng, SEED};
use crate::error::{BenchResult, Context};
use crate::scope::Scope;
use crate::series::{Metric, Samples};
use std::io::{Seek, SeekFrom, Write};

pub fn first_write(ctx: &Ctx, out: &mut Samples) -> BenchResult<()> {
    let sz = &ctx.data.sizes;
    let mut s = Scope::new(ctx.driver, "fwrite");
    // The lower file is written through a mounted layer, not a tar: no copy of it in memory.
    let base = s.create("base", None)?;
    let dir = s.get(&base)?;
    {
        let path = dir.join("big");
        let mut f = std::fs::File::create(&path).ctx(|| format!("creating {}", path.display()))?;
        let mut rng = Rng::new(SEED + 3);
        let chunk = large_content(&mut rng, 8 << 20);
        let mut left = sz.lower_file_bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n])
                .ctx(|| format!("writing {}", path.display()))?;
            left -= n as u64;
        }
        f.sync_all().ctx(|| format!("fsync {}", path.display()))?;
    }
    s.put(&base)?;
    ctx.driver.release_apply_target(&base).ok();
    for _ in 0..sz.first_writes {
        let c = s.create_rw("c", Some(&base))?;
        let root = s.get(&c)?;
        ctx.sync()?;
        let path = root.join("big");
        let (_, took) = timed(|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .ctx(|| format!("opening {}", path.display()))?;
            f.seek(SeekFrom::Start(sz.lower_file_bytes / 2))
                .ctx(|| "seek".into())?;
            f.write_all(&[7u8; 4096]).ctx(|| "write".into())?;
            f.sync_all().ctx(|| "fsync".into())
        })?;
        out.ms("4 KiB write + fsync", took);
        s.put(&c)?;
        s.remove(&c)?;
    }
    s.finish()
}

pub fn churn(ctx: &Ctx, out: &mut Samples) -> BenchResult<()> {
    let sz = &ctx.data.sizes;
    let layer = ctx.data.small_files()?;
    let mut s = Scope::new(ctx.driver, "churn");
    let image = s.layer("image", None, &layer.tar)?;
    let c = s.create_rw("c", Some(&image))?;
    let root = s.get(&c)?;
    let dir = root.join("churn");
    std::fs::create_dir(&dir).ctx(|| format!("mkdir {}", dir.display()))?;
    let n = sz.churn_files;
    let names: Vec<_> = (0..n).map(|i| dir.join(format!("n{i:05}"))).collect();
    let per_s = |d: std::time::Duration| n as f64 / d.as_secs_f64();
    let (_, create) = timed(|| {
        for p in &names {
            std::fs::File::create(p).ctx(|| format!("creating {}", p.display()))?;
        }
        Ok(())
    })?;
    let (_, stat) = timed(|| {
        for p in &names {
            std::fs::symlink_metadata(p).ctx(|| format!("stat {}", p.display()))?;
        }
        Ok(())
    })?;
    let (_, unlink) = timed(|| {
        for p in &names {
            std::fs::remove_file(p).ctx(|| format!("unlink {}", p.display()))?;
        }
        Ok(())
    })?;
    out.push(Metric::rate("create", "ops/s"), per_s(create));
    out.push(Metric::rate("stat", "ops/s"), per_s(stat));
    out.push(Metric::rate("unlink", "ops/s"), per_s(unlink));
    // Unlinking files of the image layer: whiteouts on union drivers.
    let lower: Vec<_> = (0..n.min(sz.small_files).min(500))
        .map(|i| root.join(format!("usr/d{:03}/f{i:05}", i / 100)))
        .collect();
    let (_, took) = timed(|| {
        for p in &lower {
            std::fs::remove_file(p).ctx(|| format!("unlink {}", p.display()))?;
        }
        Ok(())
    })?;
    out.push(
        Metric::rate("unlink lower", "ops/s"),
        lower.len() as f64 / took.as_secs_f64(),
    );
    s.finish()
}
