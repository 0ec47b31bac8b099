//! The layers a workload made and the mounts it holds, undone in reverse order when the
//! workload ends, also when it fails half-way.

use crate::error::{BenchResult, Context};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use strata_graph::{CreateOpts, Driver};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A workload's layers on one driver.
pub struct Scope<'a> {
    pub d: &'a dyn Driver,
    tag: String,
    /// Layers made and not yet removed, in order of creation.
    made: Vec<String>,
    /// Outstanding gets, one entry per get.
    mounted: Vec<String>,
    opts: CreateOpts,
}

impl<'a> Scope<'a> {
    /// A scope whose layer ids start with `tag`.
    pub fn new(d: &'a dyn Driver, tag: &str) -> Scope<'a> {
        Scope {
            d,
            tag: tag.to_string(),
            made: Vec::new(),
            mounted: Vec::new(),
            opts: CreateOpts::default(),
        }
    }

    /// A fresh layer id.
    pub fn id(&self, name: &str) -> String {
        format!(
            "{}-{name}-{}",
            self.tag,
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Creates an image layer.
    pub fn create(&mut self, name: &str, parent: Option<&str>) -> BenchResult<String> {
        let id = self.id(name);
        self.d
            .create(&id, parent, &self.opts)
            .ctx(|| format!("creating layer {id}"))?;
        self.made.push(id.clone());
        Ok(id)
    }

    /// Creates a container layer.
    pub fn create_rw(&mut self, name: &str, parent: Option<&str>) -> BenchResult<String> {
        let id = self.id(name);
        self.d
            .create_rw(&id, parent, &self.opts)
            .ctx(|| format!("creating container layer {id}"))?;
        self.made.push(id.clone());
        Ok(id)
    }

    /// Creates an image layer and unpacks `tar` (uncompressed) into it.
    pub fn layer(&mut self, name: &str, parent: Option<&str>, tar: &[u8]) -> BenchResult<String> {
        let id = self.create(name, parent)?;
        self.apply(&id, parent, &mut &tar[..])?;
        Ok(id)
    }

    /// Unpacks an uncompressed tar into `id`.
    pub fn apply(
        &mut self,
        id: &str,
        parent: Option<&str>,
        tar: &mut (dyn std::io::Read + Send),
    ) -> BenchResult<u64> {
        self.d
            .apply_diff(id, parent, tar)
            .ctx(|| format!("applying a layer to {id}"))
    }

    /// Mounts a layer.
    pub fn get(&mut self, id: &str) -> BenchResult<PathBuf> {
        let p = self.d.get(id, "").ctx(|| format!("mounting {id}"))?;
        self.mounted.push(id.to_string());
        Ok(p)
    }

    /// Releases one get.
    pub fn put(&mut self, id: &str) -> BenchResult<()> {
        if let Some(i) = self.mounted.iter().rposition(|m| m == id) {
            self.mounted.remove(i);
        }
        self.d.put(id).ctx(|| format!("unmounting {id}"))
    }

    /// Removes a layer.
    pub fn remove(&mut self, id: &str) -> BenchResult<()> {
        self.d.remove(id).ctx(|| format!("removing {id}"))?;
        self.made.retain(|m| m != id);
        Ok(())
    }

    /// Layers made and not removed.
    pub fn layers(&self) -> &[String] {
        &self.made
    }

    /// Puts every outstanding get and removes every layer, newest first; the first error.
    pub fn finish(mut self) -> BenchResult<()> {
        self.unwind()
    }

    fn unwind(&mut self) -> BenchResult<()> {
        let mut first = Ok(());
        while let Some(id) = self.mounted.pop() {
            if let Err(e) = self.d.put(&id).ctx(|| format!("unmounting {id}")) {
                first = first.and(Err(e));
            }
        }
        while let Some(id) = self.made.pop() {
            if let Err(e) = self.d.remove(&id).ctx(|| format!("removing {id}")) {
                first = first.and(Err(e));
            }
        }
        first
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.unwind() {
            tracing::warn!("cleaning up after a workload: {e}");
        }
    }
}
