//! The layers the workloads apply, generated from fixed seeds so that every run and every
//! host unpacks the same bytes.
//!
//! - **small-files**: `small_files` files in directories of 100, each 512 B to
//!   `small_file_max` bytes (uniform), of text drawn from a 64-word vocabulary (compresses
//!   about 3:1, like source trees and package contents);
//! - **large-files**: `large_files` files of `large_file_bytes` each, alternating 64 KiB of
//!   random bytes and 64 KiB of the same text (compresses about 2:1, like binaries and
//!   libraries);
//! - **one file** of a given size (random bytes), for the layer-size sweep.
//!
//! Every layer is held uncompressed, gzip'd (level 6, what `docker push` writes) and zstd'd
//! (level 3).

use crate::error::{BenchResult, Context};
use std::io::Write;
use std::sync::OnceLock;
use strata_graph::archive::tar::{Header, Kind, TarWriter};

/// The seed every generated layer starts from.
pub const SEED: u64 = 0x5eed_57a7_a000_0001;

/// splitmix64: a small generator whose output is fixed by its seed on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    /// Random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    /// `len` bytes of text from a 64-word vocabulary.
    pub fn text(&mut self, len: usize) -> Vec<u8> {
        const WORDS: [&str; 64] = [
            "layer",
            "image",
            "driver",
            "mount",
            "overlay",
            "snapshot",
            "thin",
            "pool",
            "block",
            "file",
            "directory",
            "whiteout",
            "opaque",
            "chain",
            "digest",
            "sha256",
            "config",
            "manifest",
            "index",
            "blob",
            "tar",
            "gzip",
            "zstd",
            "export",
            "commit",
            "diff",
            "change",
            "container",
            "runtime",
            "shim",
            "cgroup",
            "namespace",
            "bridge",
            "veth",
            "route",
            "address",
            "volume",
            "bind",
            "tmpfs",
            "proc",
            "sys",
            "dev",
            "etc",
            "usr",
            "lib",
            "bin",
            "share",
            "doc",
            "man",
            "include",
            "static",
            "shared",
            "object",
            "symbol",
            "section",
            "header",
            "payload",
            "checksum",
            "quota",
            "project",
            "subvolume",
            "dataset",
            "clone",
            "origin",
        ];
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            let w = WORDS[(self.next_u64() % 64) as usize];
            out.extend_from_slice(w.as_bytes());
            out.push(if self.next_u64().is_multiple_of(12) {
                b'\n'
            } else {
                b' '
            });
        }
        out.truncate(len);
        out
    }
}

/// A layer tar with what it holds.
pub struct Layer {
    /// The uncompressed tar.
    pub tar: Vec<u8>,
    pub gzip: Vec<u8>,
    pub zstd: Vec<u8>,
    /// Regular files in it.
    pub files: u64,
    /// Bytes of file content in it.
    pub content: u64,
}

impl Layer {
    fn new(tar: Vec<u8>, files: u64, content: u64) -> BenchResult<Layer> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(&tar).ctx(|| "gzip of a layer".into())?;
        let gzip = gz.finish().ctx(|| "gzip of a layer".into())?;
        let zstd = zstd::encode_all(&tar[..], 3).ctx(|| "zstd of a layer".into())?;
        Ok(Layer {
            tar,
            gzip,
            zstd,
            files,
            content,
        })
    }
}

/// Builds a tar entry by entry.
pub struct TarMaker(TarWriter<Vec<u8>>);

impl Default for TarMaker {
    fn default() -> Self {
        TarMaker(TarWriter::new(Vec::new()))
    }
}

impl TarMaker {
    fn header(path: &str, kind: Kind, size: u64, mode: u32) -> Header {
        Header {
            mtime: 1_600_000_000,
            mode,
            ..Header::new(path, kind, size)
        }
    }
    pub fn dir(&mut self, path: &str) -> BenchResult<()> {
        let h = Self::header(path, Kind::Dir, 0, 0o755);
        self.0.append(&h, None).ctx(|| format!("tar entry {path}"))
    }
    pub fn file(&mut self, path: &str, data: &[u8]) -> BenchResult<()> {
        self.file_mode(path, data, 0o644)
    }
    pub fn file_mode(&mut self, path: &str, data: &[u8], mode: u32) -> BenchResult<()> {
        let h = Self::header(path, Kind::Regular, data.len() as u64, mode);
        let mut r = data;
        self.0
            .append(&h, Some(&mut r))
            .ctx(|| format!("tar entry {path}"))
    }
    pub fn symlink(&mut self, path: &str, target: &str) -> BenchResult<()> {
        let mut h = Self::header(path, Kind::Symlink, 0, 0o777);
        h.link = target.as_bytes().to_vec();
        self.0.append(&h, None).ctx(|| format!("tar entry {path}"))
    }
    pub fn finish(self) -> BenchResult<Vec<u8>> {
        self.0.finish().ctx(|| "end of a tar".into())
    }
}

/// `n` small text files under `prefix/dNNN/`, 512 B to `max` bytes each.
pub fn small_files_tar(
    seed: u64,
    prefix: &str,
    n: usize,
    max: usize,
) -> BenchResult<(Vec<u8>, u64)> {
    let mut rng = Rng::new(seed);
    let mut t = TarMaker::default();
    let mut content = 0;
    t.dir(prefix)?;
    for i in 0..n {
        if i % 100 == 0 {
            t.dir(&format!("{prefix}/d{:03}", i / 100))?;
        }
        let len = rng.range(512, max.max(512) as u64) as usize;
        content += len as u64;
        t.file(&format!("{prefix}/d{:03}/f{i:05}", i / 100), &rng.text(len))?;
    }
    Ok((t.finish()?, content))
}

/// Contents of a large file: 64 KiB of random bytes, then 64 KiB of text, and so on.
pub fn large_content(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    for (k, chunk) in data.chunks_mut(64 << 10).enumerate() {
        if k % 2 == 0 {
            rng.fill(chunk);
        } else {
            let t = rng.text(chunk.len());
            chunk.copy_from_slice(&t);
        }
    }
    data
}

/// `n` files of `size` bytes under `prefix/`.
pub fn large_files_tar(seed: u64, prefix: &str, n: usize, size: usize) -> BenchResult<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut t = TarMaker::default();
    t.dir(prefix)?;
    for i in 0..n {
        t.file(&format!("{prefix}/big{i}"), &large_content(&mut rng, size))?;
    }
    t.finish()
}

/// One file `name` of `size` random bytes.
pub fn one_file_tar(seed: u64, name: &str, size: usize) -> BenchResult<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut data = vec![0u8; size];
    rng.fill(&mut data);
    let mut t = TarMaker::default();
    t.file(name, &data)?;
    t.finish()
}

/// How big the workloads are: `normal` for figures, `small` for a quick check of the
/// harness itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub name: &'static str,
    /// Files in the small-files layer, and the largest of them.
    pub small_files: usize,
    pub small_file_max: usize,
    /// Files in the large-files layer, and the size of each.
    pub large_files: usize,
    pub large_file_bytes: usize,
    /// Layer sizes of the apply-size sweep (one file each).
    pub apply_sizes: Vec<usize>,
    /// Files in the parent of layer-create; layers created per run.
    pub parent_files: usize,
    pub creates: usize,
    /// Container layer cycles per run.
    pub cycles: usize,
    /// Chain depths of mount-depth, and mounts per depth per run.
    pub depths: Vec<usize>,
    pub mounts_per_depth: usize,
    /// The lower file of first-write, and writes per run.
    pub lower_file_bytes: u64,
    pub first_writes: usize,
    /// Files created, statted and unlinked by metadata-churn.
    pub churn_files: usize,
    /// Files the container of diff-commit changes.
    pub changed_files: usize,
    /// Child layers of disk-space, and what each adds.
    pub space_children: usize,
    pub space_child_bytes: usize,
    /// Containers of density.
    pub density: usize,
    /// Containers started at once by concurrent-starts.
    pub concurrent: usize,
    /// The size (sparse) of the filesystems made for a driver to run these on.
    pub backing_bytes: u64,
}

impl Sizes {
    /// The sizes the figures are taken with.
    pub fn normal() -> Sizes {
        Sizes {
            name: "normal",
            small_files: 5_000,
            small_file_max: 8_192,
            large_files: 4,
            large_file_bytes: 32 << 20,
            apply_sizes: vec![1 << 20, 8 << 20, 64 << 20, 256 << 20],
            parent_files: 1_000,
            creates: 20,
            cycles: 20,
            depths: vec![1, 10, 100, 400],
            mounts_per_depth: 5,
            lower_file_bytes: 1 << 30,
            first_writes: 3,
            churn_files: 2_000,
            changed_files: 5_000,
            space_children: 10,
            space_child_bytes: 1 << 20,
            density: 100,
            concurrent: 8,
            backing_bytes: 16 << 30,
        }
    }

    /// Small sizes: every workload runs, in seconds.
    pub fn small() -> Sizes {
        Sizes {
            name: "small",
            small_files: 300,
            small_file_max: 4_096,
            large_files: 2,
            large_file_bytes: 1 << 20,
            apply_sizes: vec![64 << 10, 1 << 20],
            parent_files: 100,
            creates: 3,
            cycles: 3,
            depths: vec![1, 10],
            mounts_per_depth: 2,
            lower_file_bytes: 8 << 20,
            first_writes: 1,
            churn_files: 100,
            changed_files: 200,
            space_children: 2,
            space_child_bytes: 64 << 10,
            density: 4,
            concurrent: 3,
            backing_bytes: 2 << 30,
        }
    }
}

/// The layers of one benchmark, made on first use and shared by every driver.
pub struct DataSet {
    pub sizes: Sizes,
    small: OnceLock<Layer>,
    large: OnceLock<Layer>,
}

impl DataSet {
    pub fn new(sizes: Sizes) -> DataSet {
        DataSet {
            sizes,
            small: OnceLock::new(),
            large: OnceLock::new(),
        }
    }

    fn cached(
        cell: &OnceLock<Layer>,
        make: impl FnOnce() -> BenchResult<Layer>,
    ) -> BenchResult<&Layer> {
        if let Some(l) = cell.get() {
            return Ok(l);
        }
        let l = make()?;
        Ok(cell.get_or_init(|| l))
    }

    /// The small-files layer (under `usr/`).
    pub fn small_files(&self) -> BenchResult<&Layer> {
        let s = &self.sizes;
        Self::cached(&self.small, || {
            let (tar, content) = small_files_tar(SEED, "usr", s.small_files, s.small_file_max)?;
            Layer::new(tar, s.small_files as u64, content)
        })
    }

    /// The large-files layer (under `opt/`).
    pub fn large_files(&self) -> BenchResult<&Layer> {
        let s = &self.sizes;
        Self::cached(&self.large, || {
            let tar = large_files_tar(SEED + 1, "opt", s.large_files, s.large_file_bytes)?;
            Layer::new(
                tar,
                s.large_files as u64,
                (s.large_files * s.large_file_bytes) as u64,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_fixed_by_their_seed_and_compress() {
        let (a, ca) = small_files_tar(SEED, "usr", 150, 4096).unwrap();
        let (b, cb) = small_files_tar(SEED, "usr", 150, 4096).unwrap();
        assert_eq!(a, b);
        assert_eq!(ca, cb);
        let (c, _) = small_files_tar(SEED + 7, "usr", 150, 4096).unwrap();
        assert_ne!(a, c);
        let l = Layer::new(a, 150, ca).unwrap();
        assert!(
            l.gzip.len() * 2 < l.tar.len(),
            "{} {}",
            l.gzip.len(),
            l.tar.len()
        );
        assert!(l.zstd.len() * 2 < l.tar.len());
        let big = large_files_tar(SEED, "opt", 1, 1 << 20).unwrap();
        let z = zstd::encode_all(&big[..], 3).unwrap();
        // Half random: it compresses, but not below about half.
        assert!(
            z.len() > big.len() / 3 && z.len() < big.len() * 9 / 10,
            "{}",
            z.len()
        );
    }

    #[test]
    fn small_sizes_are_smaller_everywhere() {
        let (n, s) = (Sizes::normal(), Sizes::small());
        assert!(s.small_files < n.small_files && s.changed_files < n.changed_files);
        assert!(s.depths.len() <= n.depths.len() && s.lower_file_bytes < n.lower_file_bytes);
        assert_eq!(n.changed_files, 5_000);
        assert_eq!(n.depths, vec![1, 10, 100, 400]);
    }
}
