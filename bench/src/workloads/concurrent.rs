//! `concurrent-starts`: container layers prepared at once.

use super::{timed, Ctx};
use crate::error::{BenchResult, Context};
use crate::scope::Scope;
use crate::series::Samples;
use std::time::{Duration, Instant};
use strata_graph::CreateOpts;

pub fn starts(ctx: &Ctx, out: &mut Samples) -> BenchResult<()> {
    let n = ctx.data.sizes.concurrent;
    let mut s = Scope::new(ctx.driver, "conc");
    let image = s.layer("image", None, &ctx.data.small_files()?.tar)?;
    let ids: Vec<String> = (0..n).map(|_| s.id("c")).collect();
    let d = ctx.driver;
    let (results, wall) = timed(|| -> BenchResult<Vec<BenchResult<Duration>>> {
        Ok(std::thread::scope(|sc| {
            let handles: Vec<_> = ids
                .iter()
                .map(|id| {
                    let image = &image;
                    sc.spawn(move || {
                        let t = Instant::now();
                        d.create_rw(id, Some(image), &CreateOpts::default())
                            .ctx(|| format!("creating container layer {id}"))?;
                        d.get(id, "").ctx(|| format!("mounting {id}"))?;
                        Ok(t.elapsed())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(crate::BenchError::Engine("a start thread panicked".into()))
                    })
                })
                .collect()
        }))
    })?;
    // Undo whatever each thread got done, also when one failed.
    let mut first_err = None;
    for (id, r) in ids.iter().zip(&results) {
        if r.is_ok() {
            d.put(id).ctx(|| format!("unmounting {id}"))?;
        }
        if d.exists(id) {
            d.remove(id).ctx(|| format!("removing {id}"))?;
        }
    }
    for r in results {
        match r {
            Ok(took) => out.ms("each", took),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    out.ms("all", wall);
    s.finish()
}
