//! Storage core benchmarks (criterion). See benches/README.md for what each measures and the
//! latest figures.
//!
//! - apply: a synthetic layer of about 200 MB in 20,000 files (fixed seed), uncompressed, gzip
//!   and zstd, unpacked by Strata and by GNU tar onto the same filesystem in the same run.
//! - mount: overlay2 container layer get + put (mount + unmount) over chains of 1, 10, 100 layers.
//! - diff: a container layer holding the same 20,000 files, diffed to a tar (overlay2 native,
//!   vfs tree comparison).
//!
//! `STRATA_BENCH_DIR` picks the directory (default /var/tmp); `STRATA_BENCH_FILES` shrinks the
//! layer for a quick run.

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use strata_graph::archive::tar::{Header, Kind, TarWriter};
use strata_graph::archive::tarsplit::TarSplitWriter;
use strata_graph::archive::{apply_layer, ApplyOptions, TarSplitSink, WhiteoutFormat};
use strata_graph::{CreateOpts, Driver, StorageOpts};

struct Fixture {
    dir: tempfile::TempDir,
    files: usize,
    tar: PathBuf,
    gz: PathBuf,
    zst: PathBuf,
    tar_len: u64,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let base = std::env::var_os("STRATA_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp"));
        let dir = tempfile::Builder::new()
            .prefix("strata-bench-")
            .tempdir_in(base)
            .expect("bench dir");
        let files: usize = std::env::var("STRATA_BENCH_FILES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        let tar = dir.path().join("layer.tar");
        let mut w = TarWriter::new(std::io::BufWriter::new(File::create(&tar).expect("tar")));
        let mut seed: u64 = 0x5eed_1234_abcd_9876;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let dirs = files.div_ceil(100);
        for d in 0..dirs {
            let h = Header {
                mtime: 1_700_000_000,
                ..Header::new(format!("usr/share/d{d:03}"), Kind::Dir, 0)
            };
            w.append(&h, None).expect("dir");
            for i in 0..100.min(files - d * 100) {
                // 512 B .. 19.5 KB, mean 10 KB; text-like content that compresses about 2:1.
                let size = 512 + (next() % 19_456) as usize;
                let data: Vec<u8> = (0..size)
                    .map(|j| {
                        if j % 7 == 0 {
                            b'\n'
                        } else {
                            b'a' + (next() % 16) as u8
                        }
                    })
                    .collect();
                let mut fh = h.clone();
                fh.path = format!("usr/share/d{d:03}/file-{i:03}.txt").into_bytes();
                fh.kind = Kind::Regular;
                fh.mode = 0o644;
                fh.size = size as u64;
                w.append(&fh, Some(&mut &data[..])).expect("file");
            }
        }
        w.finish().expect("finish").flush().expect("flush");
        let tar_len = std::fs::metadata(&tar).expect("stat").len();
        let raw = std::fs::read(&tar).expect("read");
        let gz = dir.path().join("layer.tar.gz");
        let mut e = flate2::write::GzEncoder::new(
            File::create(&gz).expect("gz"),
            flate2::Compression::default(),
        );
        e.write_all(&raw).expect("gz");
        e.finish().expect("gz");
        let zst = dir.path().join("layer.tar.zst");
        zstd::stream::copy_encode(&raw[..], File::create(&zst).expect("zst"), 3).expect("zst");
        eprintln!("fixture: {files} files, {tar_len} bytes uncompressed");
        Fixture {
            dir,
            files,
            tar,
            gz,
            zst,
            tar_len,
        }
    })
}

/// A fresh extraction directory, removed when dropped (outside the measured time).
struct Scratch(PathBuf);

impl Scratch {
    fn new(f: &Fixture) -> Scratch {
        // Flush what earlier iterations left (writeback, and the discards of their removal on a
        // filesystem mounted with `discard`) outside the measured time.
        strata_graph::fsutil::syncfs_path(f.dir.path()).expect("syncfs");
        let p = f
            .dir
            .path()
            .join(format!("x-{}", strata_graph::fsutil::random_id(6)));
        std::fs::create_dir(&p).expect("scratch");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = strata_graph::fsutil::remove_tree(&self.0);
    }
}

fn strata_apply(src: &Path, dest: &Path, tarsplit: bool) {
    let mut o = ApplyOptions::new(WhiteoutFormat::Delete);
    if tarsplit {
        let ts = File::create(dest.with_extension("ts")).expect("ts");
        let shadow = File::options()
            .create(true)
            .append(true)
            .read(true)
            .open(dest.with_extension("shadow"))
            .expect("shadow");
        o.tarsplit = Some(TarSplitSink {
            writer: TarSplitWriter::new(ts).expect("ts"),
            shadow,
        });
    }
    apply_layer(dest, File::open(src).expect("open"), o).expect("apply");
    if tarsplit {
        let _ = std::fs::remove_file(dest.with_extension("ts"));
        let _ = std::fs::remove_file(dest.with_extension("shadow"));
    }
}

fn gnu_tar(args: &[&str], src: &Path, dest: &Path) {
    let st = Command::new("tar")
        .args(args)
        .arg(src)
        .arg("-C")
        .arg(dest)
        .status()
        .expect("tar");
    assert!(st.success());
}

fn apply(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group(format!("apply/{}files", f.files));
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Bytes(f.tar_len));
    let cases: [(&str, &Path, &[&str]); 3] = [
        ("uncompressed", &f.tar, &["-xf"]),
        ("gzip", &f.gz, &["-xzf"]),
        ("zstd", &f.zst, &["--zstd", "-xf"]),
    ];
    for (name, src, tar_args) in cases {
        g.bench_function(format!("gnu-tar/{name}"), |b| {
            b.iter_batched(
                || Scratch::new(f),
                |s| {
                    gnu_tar(tar_args, src, &s.0);
                    s
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function(format!("strata/{name}"), |b| {
            b.iter_batched(
                || Scratch::new(f),
                |s| {
                    strata_apply(src, &s.0, false);
                    s
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function(format!("strata+tarsplit/{name}"), |b| {
            b.iter_batched(
                || Scratch::new(f),
                |s| {
                    strata_apply(src, &s.0, true);
                    s
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn overlay(home: &Path) -> Arc<dyn Driver> {
    Arc::new(strata_overlay::OverlayDriver::new(home, &StorageOpts::default()).expect("overlay2"))
}

fn mount(c: &mut Criterion) {
    let f = fixture();
    let home = f.dir.path().join("mount-home");
    let d = overlay(&home);
    let mut g = c.benchmark_group("mount");
    g.sample_size(50).measurement_time(Duration::from_secs(5));
    let mut made = 0usize;
    for depth in [1usize, 10, 100] {
        while made < depth {
            let parent = if made == 0 {
                None
            } else {
                Some(format!("l{}", made - 1))
            };
            let id = format!("l{made}");
            d.create(&id, parent.as_deref(), &CreateOpts::default())
                .expect("create");
            let tar = strata_graph::graphtest::tars::TarBuilder::new()
                .file(&format!("f{made}"), b"x")
                .build();
            d.apply_diff(&id, parent.as_deref(), &mut &tar[..])
                .expect("apply");
            made += 1;
        }
        let rw = format!("rw{depth}");
        d.create_rw(
            &rw,
            Some(&format!("l{}", depth - 1)),
            &CreateOpts::default(),
        )
        .expect("rw");
        g.bench_function(format!("overlay2/get+put/{depth}-layers"), |b| {
            b.iter(|| {
                d.get(&rw, "").expect("get");
                d.put(&rw).expect("put");
            })
        });
    }
    g.finish();
    d.cleanup().expect("cleanup");
}

fn diff(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group(format!("diff/{}files", f.files));
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Bytes(f.tar_len));
    let drivers: [(&str, Arc<dyn Driver>); 2] = [
        ("overlay2", overlay(&f.dir.path().join("diff-overlay"))),
        (
            "vfs",
            Arc::new(
                strata_vfs::VfsDriver::new(&f.dir.path().join("diff-vfs"), &StorageOpts::default())
                    .expect("vfs"),
            ),
        ),
    ];
    for (name, d) in drivers {
        d.create("base", None, &CreateOpts::default())
            .expect("base");
        d.create_rw("ctr", Some("base"), &CreateOpts::default())
            .expect("rw");
        let root = d.get("ctr", "").expect("get");
        strata_apply(&f.tar, &root, false);
        d.put("ctr").expect("put");
        g.bench_function(format!("{name}/diff"), |b| {
            b.iter(|| {
                let mut sink = std::io::sink();
                d.diff("ctr", Some("base"), &mut sink).expect("diff");
            })
        });
        d.cleanup().expect("cleanup");
    }
    g.finish();
}

criterion_group!(benches, apply, mount, diff);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if let Some(f) = FIXTURE.get() {
        let _ = strata_graph::fsutil::unmount_all_under(f.dir.path());
        // The static is never dropped; remove the fixture by hand.
        let _ = strata_graph::fsutil::remove_tree(f.dir.path());
    }
}
