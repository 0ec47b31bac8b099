//! `apply` and `apply-size`: unpacking layer tars.

use super::{timed, Ctx};
use crate::data::{one_file_tar, Layer, SEED};
use crate::error::{BenchResult, Context};
use crate::scope::Scope;
use crate::series::{Metric, Samples};
use std::io::Read;

/// How a layer is compressed.
#[derive(Clone, Copy)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

/// A reader of the uncompressed tar.
fn decoder(comp: Comp, input: &[u8]) -> BenchResult<Box<dyn Read + Send + '_>> {
    Ok(match comp {
        Comp::None => Box::new(input),
        Comp::Gzip => Box::new(flate2::read::GzDecoder::new(input)),
        Comp::Zstd => Box::new(zstd::Decoder::new(input).ctx(|| "a zstd decoder".into())?),
    })
}

/// Decompresses and unpacks `input` into a new layer, with a syncfs.
fn apply_one(ctx: &Ctx, comp: Comp, input: &[u8]) -> BenchResult<std::time::Duration> {
    let mut s = Scope::new(ctx.driver, "apply");
    let id = s.create("layer", None)?;
    // Earlier writes to the filesystem are not this apply's to flush.
    ctx.sync()?;
    let (_, took) = timed(|| {
        let mut r = decoder(comp, input)?;
        s.apply(&id, None, &mut r)?;
        ctx.sync()
    })?;
    s.finish()?;
    ctx.sync()?;
    Ok(took)
}

pub fn run(ctx: &Ctx, out: &mut Samples) -> BenchResult<()> {
    let layers: [(&str, &Layer); 2] = [
        ("small-files", ctx.data.small_files()?),
        ("large-files", ctx.data.large_files()?),
    ];
    for (kind, layer) in layers {
        for (comp, c, input) in [
            ("none", Comp::None, &layer.tar),
            ("gzip", Comp::Gzip, &layer.gzip),
            ("zstd", Comp::Zstd, &layer.zstd),
        ] {
            let took = apply_one(ctx, c, input)?.as_secs_f64();
            out.push(
                Metric::rate(format!("{kind}/{comp}"), "MB/s"),
                layer.tar.len() as f64 / 1e6 / took,
            );
            out.push(
                Metric::rate(format!("{kind}/{comp}"), "files/s"),
                layer.files as f64 / took,
            );
        }
    }
    Ok(())
}

pub fn run_sizes(ctx: &Ctx, out: &mut Samples) -> BenchResult<()> {
    for &size in &ctx.data.sizes.apply_sizes {
        let tar = one_file_tar(SEED + size as u64, "blob", size)?;
        let took = apply_one(ctx, Comp::None, &tar)?;
        let mib = size as f64 / (1 << 20) as f64;
        out.push(
            Metric::ms("one file").at("MiB", mib),
            took.as_secs_f64() * 1e3,
        );
    }
    Ok(())
}
