//! `layer-create`, `container-cycle` and `mount-depth`: the driver's layer operations.

use super::{timed, Ctx};
use crate::data::{small_files_tar, TarMaker, SEED};
use crate::error::BenchResult;
use crate::scope::Scope;
use crate::series::{Metric, Samples};

pub fn create(ctx: &Ctx, out: &mut Samples) -> BenchResult<()> {
    let sz = &ctx.data.sizes;
    let (tar, _) = small_files_tar(SEED, "etc", sz.parent_files, 2_048)?;
    let mut s = Scope::new(ctx.driver, "create");
    let parent = s.layer("parent", None, &tar)?;
    for _ in 0..sz.creates {
        let (_, took) = timed(|| s.create("child", Some(&parent)))?;
        out.ms("create", took);
    }
    s.finish()
}

/// A layer of one small file `name`.
fn tiny(name: &str) -> BenchResult<Vec<u8>> {
    let mut t = TarMaker::default();
    t.file(name, name.as_bytes())?;
    t.finish()
}

pub fn cycle(ctx: &Ctx, out: &mut Samples) -> BenchResult<()> {
    let mut s = Scope::new(ctx.driver, "cycle");
    let mut parent: Option<String> = None;
    for i in 0..10 {
        let id = s.layer("image", parent.as_deref(), &tiny(&format!("l{i}"))?)?;
        parent = Some(id);
    }
    for _ in 0..ctx.data.sizes.cycles {
        let (id, create) = timed(|| s.create_rw("c", parent.as_deref()))?;
        let (_, mount) = timed(|| s.get(&id).map(drop))?;
        let (_, unmount) = timed(|| s.put(&id))?;
        let (_, remove) = timed(|| s.remove(&id))?;
        out.ms("create", create);
        out.ms("mount", mount);
        out.ms("unmount", unmount);
        out.ms("remove", remove);
        out.ms("cycle", create + mount + unmount + remove);
    }
    s.finish()
}

pub fn depth(ctx: &Ctx, out: &mut Samples) -> BenchResult<()> {
    let sz = &ctx.data.sizes;
    let mut s = Scope::new(ctx.driver, "depth");
    let mut top: Option<String> = None;
    let mut depth = 0;
    for &want in &sz.depths {
        while depth < want {
            let id = s.layer("l", top.as_deref(), &tiny(&format!("f{depth}"))?)?;
            top = Some(id);
            depth += 1;
        }
        let c = s.create_rw("c", top.as_deref())?;
        for _ in 0..sz.mounts_per_depth {
            // A driver that cannot mount this deep ends the sweep with its error.
            let (_, mount) = timed(|| s.get(&c).map(drop))?;
            let (_, unmount) = timed(|| s.put(&c))?;
            out.push(
                Metric::ms("mount").at("depth", want as f64),
                mount.as_secs_f64() * 1e3,
            );
            out.push(
                Metric::ms("mount+unmount").at("depth", want as f64),
                (mount + unmount).as_secs_f64() * 1e3,
            );
        }
        s.remove(&c)?;
    }
    s.finish()
}
