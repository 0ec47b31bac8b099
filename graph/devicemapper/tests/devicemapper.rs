//! What is particular to devicemapper, on loop-lvm pools made per test: a daemon killed at
//! every step of a pool operation leaves, after the next start, the pool's thin devices and
//! the driver's records the same set; discard frees pool blocks; `dm.min_free_space` refuses
//! a device on a full pool, saying how full; `dm.basesize`, `dm.fs` and `size=` shape the
//! filesystems; deferred removal and deletion turn a busy device into a later success.
//!
//! Runs where device-mapper is (the VM, through `in_the_vm`); here each test says SKIPPED.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use strata_devicemapper::DevmapperDriver;
use strata_graph::graphtest::vm;
use strata_graph::{CreateOpts, Driver, StorageOpts};

fn no_dm() -> Option<String> {
    (!Path::new("/dev/mapper/control").exists()).then(|| {
        "this kernel has no device-mapper; `in_the_vm` runs these tests in the VM".to_string()
    })
}

macro_rules! need_dm {
    () => {
        if let Some(why) = no_dm() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

fn tempdir() -> tempfile::TempDir {
    strata_graph::graphtest::scratch_dir("strata-dm-")
}

fn opts(extra: &[&str]) -> StorageOpts {
    opts_over(&["dm.loopdatasize=1G", "dm.loopmetadatasize=32M"], extra)
}

/// A 64 MB ext4 base, then `base`, with `extra` overriding keys of either.
fn opts_over(base: &[&str], extra: &[&str]) -> StorageOpts {
    let mut v: Vec<String> = ["dm.basesize=64M", "dm.fs=ext4"]
        .iter()
        .chain(base)
        .map(|s| s.to_string())
        .collect();
    for e in extra {
        let key = e.split('=').next().unwrap_or("");
        v.retain(|o| !o.starts_with(&format!("{key}=")));
        v.push(e.to_string());
    }
    StorageOpts::parse(&v).expect("options")
}

/// A driver that is cleaned up (devices and pool removed) when dropped.
struct Drv(Arc<DevmapperDriver>);

impl Drop for Drv {
    fn drop(&mut self) {
        if let Err(e) = self.0.cleanup() {
            eprintln!("cleanup: {e}");
        }
    }
}

fn open(home: &Path, extra: &[&str]) -> Drv {
    Drv(DevmapperDriver::start(home, &opts(extra)).expect("driver"))
}

/// The error of a start that must fail (`why` says why it must).
fn refused_start(home: &Path, opts: &StorageOpts, why: &str) -> String {
    match DevmapperDriver::new(home, opts) {
        Ok(_) => panic!("the driver started: {why}"),
        Err(e) => e.to_string(),
    }
}

fn status(d: &DevmapperDriver, key: &str) -> String {
    d.status()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in status"))
}

/// The thin device IDs the pool itself holds, read from a metadata snapshot with `thin_dump`.
fn pool_device_ids(d: &DevmapperDriver) -> Vec<u32> {
    let pool = d.pool_name().to_string();
    // The metadata device from the pool's table (`<start> <len> thin-pool <meta> <data> ..`),
    // through sysfs to its devtmpfs node.
    let table = Command::new("dmsetup")
        .args(["table", &pool])
        .output()
        .expect("dmsetup table");
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let devno = table.split_whitespace().nth(3).expect("metadata device");
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{devno}")).expect("sysfs");
    let meta = format!("/dev/{}", sys.file_name().expect("name").to_string_lossy());
    let msg = |m: &str| {
        let s = Command::new("dmsetup")
            .args(["message", &pool, "0", m])
            .status()
            .expect("dmsetup");
        assert!(s.success(), "dmsetup message {m}");
    };
    msg("reserve_metadata_snap");
    let out = Command::new("thin_dump")
        .args(["-m", &meta])
        .output()
        .expect("thin_dump (thin-provisioning-tools)");
    msg("release_metadata_snap");
    assert!(out.status.success(), "thin_dump: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut ids: Vec<u32> = text
        .split("<device dev_id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect();
    ids.sort();
    ids
}

const CRASH_POINTS: &[&str] = &[
    "create:journaled",
    "create:in-pool",
    "create:recorded",
    "create:committed",
    "delete:journaled",
    "delete:in-pool",
    "delete:unrecorded",
    "delete:committed",
];

/// Run in a child process by `a_kill_inside_a_pool_operation_is_rolled_forward_or_back`.
#[test]
#[ignore = "helper: run in a child process"]
fn crash_child() {
    let home = PathBuf::from(std::env::var("STRATA_DM_HOME").expect("home"));
    let point = std::env::var("STRATA_DM_POINT").expect("point");
    let d = DevmapperDriver::new(&home, &opts(&[])).expect("driver");
    d.create("keep", None, &CreateOpts::default())
        .expect("keep");
    // SAFETY: no other thread reads the environment now.
    unsafe { std::env::set_var("STRATA_DM_CRASH_AT", &point) };
    if point.starts_with("create") {
        let _ = d.create("new", Some("keep"), &CreateOpts::default());
    } else {
        let _ = d.remove("keep");
    }
    println!("NOT CRASHED at {point}");
}

#[test]
fn a_kill_inside_a_pool_operation_is_rolled_forward_or_back() {
    need_dm!();
    for point in CRASH_POINTS {
        let t = tempdir();
        let home = t.path().join("home");
        let out = Command::new(std::env::current_exe().expect("exe"))
            .args(["--ignored", "--exact", "crash_child", "--nocapture"])
            .env("STRATA_DM_HOME", &home)
            .env("STRATA_DM_POINT", point)
            .output()
            .expect("child");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && !text.contains("NOT CRASHED"),
            "{point}: {text}"
        );
        // The next start.
        let d = open(&home, &[]);
        assert_eq!(
            pool_device_ids(&d.0),
            d.0.recorded_device_ids(),
            "{point}: the pool and the records differ"
        );
        let committed = point.ends_with("committed");
        if point.starts_with("create") {
            assert_eq!(d.0.exists("new"), committed, "{point}");
            assert!(d.0.exists("keep"));
        } else {
            // A deletion the journal names is finished, wherever it stopped.
            assert!(!d.0.exists("keep"), "{point}");
        }
        // Whatever survived works, and everything can go.
        for id in d.0.list().expect("list") {
            let root = d.0.get(&id, "").expect("get");
            assert!(root.is_dir());
            d.0.put(&id).expect("put");
        }
        let mut ids = d.0.list().expect("list");
        ids.sort_by_key(|i| i != "new"); // children first
        for id in ids {
            d.0.remove(&id).expect("remove");
        }
        assert_eq!(pool_device_ids(&d.0), d.0.recorded_device_ids());
    }
}

#[test]
fn removal_frees_pool_blocks_and_min_free_space_refuses_with_the_fill_level() {
    need_dm!();
    let t = tempdir();
    let d = open(&t.path().join("home"), &["dm.min_free_space=60%"]);
    let d = &d.0;
    d.create_rw("c", None, &CreateOpts::default()).expect("rw");
    let root = d.get("c", "").expect("get");
    let before = d.pool().expect("status").data_used;
    std::fs::write(root.join("big"), vec![7u8; 32 << 20]).expect("write");
    strata_graph::fsutil::syncfs_path(&root).expect("sync");
    let written = d.pool().expect("status").data_used;
    assert!(
        written > before + 400,
        "{before} -> {written} blocks of 64K"
    );
    d.put("c").expect("put");
    d.remove("c").expect("remove");
    let after = d.pool().expect("status").data_used;
    assert!(
        after < before + 50,
        "the removal gave the pool its blocks back: {before} {written} {after}"
    );
    // Fill the pool beyond half: a new device is refused, naming the fill level.
    d.create_rw("fill", None, &sized("600M"))
        .expect("big container");
    let root = d.get("fill", "").expect("get");
    std::fs::write(root.join("fill"), vec![1u8; 450 << 20]).expect("fill");
    strata_graph::fsutil::syncfs_path(&root).expect("sync");
    let e = d
        .create("refused", None, &CreateOpts::default())
        .expect_err("below min_free_space")
        .to_string();
    assert!(
        e.contains("dm.min_free_space") && e.contains("% used"),
        "{e}"
    );
    d.put("fill").expect("put");
    d.remove("fill").expect("remove");
    d.create("accepted", None, &CreateOpts::default())
        .expect("space is back");
}

#[test]
fn blkdiscard_gives_the_data_file_its_disk_space_back() {
    need_dm!();
    use std::os::unix::fs::MetadataExt;
    for discard in [true, false] {
        let t = tempdir();
        let flag = format!("dm.blkdiscard={discard}");
        let d = open(&t.path().join("home"), &[&flag]);
        let d = &d.0;
        let data_file = PathBuf::from(status(d, "Data loop file"));
        let allocated = || std::fs::metadata(&data_file).expect("data file").blocks() * 512;
        d.create_rw("c", None, &CreateOpts::default()).expect("rw");
        let root = d.get("c", "").expect("get");
        std::fs::write(root.join("big"), vec![9u8; 48 << 20]).expect("write");
        strata_graph::fsutil::syncfs_path(&root).expect("sync");
        d.put("c").expect("put");
        let written = allocated();
        d.remove("c").expect("remove");
        let after = allocated();
        // Deleting a thin device frees its pool blocks either way; only the discard before
        // it reaches the loop file, which punches holes where the blocks were.
        if discard {
            assert!(
                after + (40 << 20) < written,
                "dm.blkdiscard=true: the data file keeps {written} -> {after} bytes"
            );
        } else {
            assert!(
                after + (8 << 20) > written,
                "dm.blkdiscard=false: {written} -> {after} bytes"
            );
        }
    }
}

fn sized(s: &str) -> CreateOpts {
    CreateOpts {
        storage_opt: StorageOpts::parse(&[format!("size={s}")]).expect("size"),
        ..Default::default()
    }
}

fn df_bytes(p: &Path) -> (u64, String) {
    let out = Command::new("df")
        .args(["-B1", "--output=size,fstype"])
        .arg(p)
        .output()
        .expect("df");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1).expect("df line");
    let mut f = line.split_whitespace();
    (
        f.next().and_then(|s| s.parse().ok()).expect("size"),
        f.next().unwrap_or("").to_string(),
    )
}

#[test]
fn basesize_fs_and_size_shape_the_filesystems() {
    need_dm!();
    let t = tempdir();
    let home = t.path().join("home");
    {
        let d = open(&home, &["dm.basesize=400M", "dm.fs=xfs"]);
        let d = &d.0;
        assert_eq!(status(d, "Backing Filesystem"), "xfs");
        d.create_rw("c", None, &CreateOpts::default()).expect("rw");
        let (size, fs) = df_bytes(&d.get("c", "").expect("get"));
        assert_eq!(fs, "xfs");
        assert!((300 << 20..=400 << 20).contains(&size), "{size}");
        d.put("c").expect("put");
        d.create_rw("big", None, &sized("800M")).expect("size=");
        let (size, _) = df_bytes(&d.get("big", "").expect("get"));
        assert!(size > 600 << 20, "size=800M grew the filesystem: {size}");
        d.put("big").expect("put");
        let e = d
            .create_rw("small", None, &sized("100M"))
            .expect_err("smaller")
            .to_string();
        assert!(e.contains("base device"), "{e}");
        d.remove("big").expect("rm");
    }
    // A larger dm.basesize on restart grows new containers' filesystems.
    // dm.fs names another filesystem now: ignored with a warning, as dockerd does.
    let d = open(&home, &["dm.basesize=600M"]);
    let d = &d.0;
    d.create_rw("after", None, &CreateOpts::default())
        .expect("rw");
    let (size, fs) = df_bytes(&d.get("after", "").expect("get"));
    assert_eq!(fs, "xfs", "the base filesystem stays");
    assert!(size > 500 << 20, "{size}");
    d.put("after").expect("put");
    let e = refused_start(&home, &opts(&["dm.basesize=100M"]), "shrinking refused");
    assert!(e.contains("only grow"), "{e}");
}

#[test]
fn deferred_removal_and_deletion_turn_busy_into_later_success() {
    need_dm!();
    for deferred in [false, true] {
        let t = tempdir();
        let flags: &[&str] = if deferred {
            &[
                "dm.use_deferred_removal=true",
                "dm.use_deferred_deletion=true",
            ]
        } else {
            &[]
        };
        let d = open(&t.path().join("home"), flags);
        let d = &d.0;
        d.create_rw("c", None, &CreateOpts::default()).expect("rw");
        d.get("c", "").expect("get");
        // Someone else holds the device open (a leaked mount elsewhere, a backup tool).
        let name = d.metadata("c").expect("meta")["DeviceName"].clone();
        let node = std::fs::read_dir("/sys/block")
            .expect("sysfs")
            .flatten()
            .find(|e| {
                std::fs::read_to_string(e.path().join("dm/name"))
                    .map(|n| n.trim() == name)
                    .unwrap_or(false)
            })
            .map(|e| PathBuf::from("/dev").join(e.file_name()))
            .expect("the device node");
        let holder = std::fs::File::open(&node).expect("open the device");
        d.put("c").expect("put");
        let r = d.remove("c");
        if !deferred {
            let e = r.expect_err("busy").to_string();
            assert!(e.contains("busy"), "{e}");
            drop(holder);
            d.remove("c").expect("removed once free");
        } else {
            r.expect("deferred: the remove succeeds");
            assert!(!d.exists("c"));
            assert_eq!(status(d, "Deferred Deleted Device Count"), "1");
            drop(holder);
            // The kernel removes the device on last close; the background pass deletes it
            // with nothing else asked of the driver.
            let waited = std::time::Instant::now();
            while status(d, "Deferred Deleted Device Count") != "0" {
                assert!(
                    waited.elapsed() < strata_devicemapper::DEFERRED_PASS_EVERY * 3,
                    "the background pass did not delete the device"
                );
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        }
        assert_eq!(pool_device_ids(d), d.recorded_device_ids());
    }
}

/// A sparse file `name` of `size` bytes under `dir` on a loop device (autoclear: detached once
/// the returned handle and every other holder, such as a pool, are gone).
fn loop_device(dir: &Path, name: &str, size: u64) -> (String, std::fs::File) {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .and_then(|f| f.set_len(size))
        .expect("backing file");
    let (dev, handle) = strata_devicemapper::loopback::attach(&p).expect("loop device");
    (dev.display().to_string(), handle)
}

fn dm_names() -> Vec<String> {
    let out = Command::new("dmsetup")
        .args(["ls"])
        .output()
        .expect("dmsetup ls");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn given_data_and_metadata_devices_keep_the_layers_across_restarts() {
    need_dm!();
    let t = tempdir();
    let (data, _data) = loop_device(t.path(), "data", 1 << 30);
    let (meta, _meta) = loop_device(t.path(), "meta", 32 << 20);
    let devs = [
        format!("dm.datadev={data}"),
        format!("dm.metadatadev={meta}"),
    ];
    let devs: Vec<&str> = devs.iter().map(String::as_str).collect();
    let home = t.path().join("home");
    let open_given = || {
        Drv(DevmapperDriver::start(&home, &opts_over(&devs, &[])).expect("driver on given devices"))
    };
    let pool = {
        let d = open_given();
        let d = &d.0;
        assert_eq!(status(d, "Data file"), data);
        assert_eq!(status(d, "Metadata file"), meta);
        d.create("img", None, &CreateOpts::default()).expect("img");
        let root = d.get("img", "").expect("get");
        std::fs::write(root.join("hello"), "from the first start").expect("write");
        d.put("img").expect("put");
        d.create_rw("c", Some("img"), &CreateOpts::default())
            .expect("container");
        d.pool_name().to_string()
    };
    // Shutdown removed the pool this driver made (the devices stay, as given).
    assert!(!dm_names().contains(&pool), "{pool} still active");
    let d = open_given();
    let d = &d.0;
    let root = d.get("c", "").expect("get after restart");
    assert_eq!(
        std::fs::read_to_string(root.join("hello")).expect("read"),
        "from the first start"
    );
    d.put("c").expect("put");
    assert_eq!(pool_device_ids(d), d.recorded_device_ids());
}

#[test]
fn a_given_thin_pool_is_used_and_kept_and_a_used_one_refused() {
    need_dm!();
    let t = tempdir();
    let (data, _data) = loop_device(t.path(), "data", 1 << 30);
    let (meta, _meta) = loop_device(t.path(), "meta", 32 << 20);
    let pool = format!("strata-test-pool-{}", std::process::id());
    let sectors = (1u64 << 30) / 512;
    let made = Command::new("dmsetup")
        .args(["create", &pool, "--table"])
        .arg(format!(
            "0 {sectors} thin-pool {meta} {data} 128 32768 1 skip_block_zeroing"
        ))
        .status()
        .expect("dmsetup create");
    assert!(made.success(), "dmsetup create {pool}");
    /// Removes the test's pool, also when an assertion fails.
    struct Pool(String);
    impl Drop for Pool {
        fn drop(&mut self) {
            let _ = Command::new("dmsetup").args(["remove", &self.0]).status();
        }
    }
    let _pool = Pool(pool.clone());
    let given = format!("dm.thinpooldev=/dev/mapper/{pool}");
    {
        let d = Drv(
            DevmapperDriver::start(&t.path().join("home"), &opts_over(&[&given], &[]))
                .expect("driver on the given pool"),
        );
        let d = &d.0;
        assert_eq!(status(d, "Pool Name"), pool);
        d.create("img", None, &CreateOpts::default()).expect("img");
        d.create_rw("c", Some("img"), &CreateOpts::default())
            .expect("container");
        let root = d.get("c", "").expect("get");
        std::fs::write(root.join("f"), "x").expect("write");
        d.put("c").expect("put");
        d.remove("c").expect("rm");
    }
    assert!(
        dm_names().contains(&pool),
        "a given pool is kept at shutdown"
    );
    // Another data root cannot take over a pool that holds someone's devices.
    let e = refused_start(
        &t.path().join("other"),
        &opts_over(&[&given], &[]),
        "a used pool is refused",
    );
    assert!(e.contains("unable to take ownership"), "{e}");
}

#[test]
fn a_pool_out_of_data_space_fails_writes_and_recovers_once_space_is_freed() {
    need_dm!();
    let t = tempdir();
    // A 512 MB filesystem over a 256 MB pool: thin provisioning lets it overcommit.
    let d = open(
        &t.path().join("home"),
        &[
            "dm.loopdatasize=256M",
            "dm.basesize=512M",
            "dm.min_free_space=0",
        ],
    );
    let d = &d.0;
    d.create_rw("c", None, &CreateOpts::default()).expect("rw");
    let root = d.get("c", "").expect("get");
    let chunk = vec![0x5au8; 8 << 20];
    let mut written = 0u64;
    let err = (|| -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(root.join("big"))?;
        for _ in 0..48 {
            f.write_all(&chunk)?;
            f.sync_data()?;
            written += chunk.len() as u64;
        }
        Ok(())
    })()
    .expect_err("writing 384 MB into a 256 MB pool fails");
    eprintln!("the write failed after {} MB: {err}", written >> 20);
    assert!(written < 256 << 20, "{written}");
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::ENOSPC) | Some(libc::EIO) | Some(libc::EROFS)
        ),
        "{err:?}"
    );
    let s = d.pool().expect("status");
    assert!(s.out_of_space, "the pool reports out of data space: {s:?}");
    // The write only says EIO: `docker info` says why.
    assert_eq!(status(d, "Pool Mode"), "out_of_data_space");
    let e = d
        .create("refused", None, &CreateOpts::default())
        .expect_err("no new device on a full pool")
        .to_string();
    assert!(e.contains("out of data space"), "{e}");
    // Removing the container frees its blocks; the pool goes back to writing.
    d.put("c").expect("put");
    d.remove("c").expect("remove");
    assert_eq!(status(d, "Pool Mode"), "rw");
    d.create_rw("after", None, &CreateOpts::default())
        .expect("space is back");
    let root = d.get("after", "").expect("get");
    std::fs::write(root.join("f"), vec![1u8; 32 << 20]).expect("write after recovery");
    strata_graph::fsutil::syncfs_path(&root).expect("sync");
    d.put("after").expect("put");
    assert_eq!(pool_device_ids(d), d.recorded_device_ids());
}

/// Runs LVM command `args[0]`; its stdout, or a panic with its stderr.
fn lvm(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{} (lvm2): {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn pool_lv_bytes() -> u64 {
    lvm(&[
        "lvs",
        "--noheadings",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        "lv_size",
        "strata/thinpool",
    ])
    .parse()
    .expect("lv size")
}

#[test]
fn direct_lvm_makes_the_pool_with_its_options_and_keeps_it() {
    need_dm!();
    let t = tempdir();
    // LVM's configuration, backups and the driver's profile go under the test's directory,
    // not the host's /etc/lvm. dmeventd, started by LVM for monitoring, inherits it.
    let lvm_dir = t.path().join("lvm");
    std::fs::create_dir_all(&lvm_dir).expect("lvm dir");
    std::fs::write(
        lvm_dir.join("lvm.conf"),
        "activation {\n udev_sync = 0\n udev_rules = 0\n monitoring = 1\n}\ndevices {\n obtain_device_list_from_udev = 0\n}\n",
    )
    .expect("lvm.conf");
    // SAFETY: the suite runs with one test thread; nothing else reads the environment now.
    unsafe { std::env::set_var("LVM_SYSTEM_DIR", &lvm_dir) };
    let (dev, _held) = loop_device(t.path(), "pv", 1 << 30);
    /// Removes the volume group and the label, also when an assertion fails.
    struct Teardown(String);
    impl Drop for Teardown {
        fn drop(&mut self) {
            let _ = Command::new("vgremove").args(["-f", "strata"]).status();
            let _ = Command::new("pvremove").args(["-y", &self.0]).status();
            // SAFETY: as above.
            unsafe { std::env::remove_var("LVM_SYSTEM_DIR") };
        }
    }
    let _teardown = Teardown(dev.clone());
    let home = t.path().join("home");
    let device = format!("dm.directlvm_device={dev}");
    let with = |extra: &[&str]| opts_over(&[&device, "dm.basesize=512M"], extra);
    let tuned = [
        "dm.thinp_percent=40",
        "dm.thinp_metapercent=2",
        "dm.thinp_autoextend_threshold=60",
        "dm.thinp_autoextend_percent=50",
    ];

    // A device that holds a filesystem is not wiped unless told to.
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F", &dev])
        .status()
        .expect("mkfs");
    assert!(mkfs.success());
    let e = refused_start(&home, &with(&tuned), "a device with ext4 is refused");
    assert!(
        e.contains("ext4") && e.contains("dm.directlvm_device_force"),
        "{e}"
    );

    let mut forced = tuned.to_vec();
    forced.push("dm.directlvm_device_force=true");
    let grown = {
        let d = Drv(DevmapperDriver::start(&home, &with(&forced)).expect("direct-lvm"));
        let d = &d.0;
        assert_eq!(status(d, "Pool Name"), "strata-thinpool");
        let vg: u64 = lvm(&[
            "vgs",
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "vg_size",
            "strata",
        ])
        .parse()
        .expect("vg size");
        let before = pool_lv_bytes();
        assert!(
            (vg * 38 / 100..=vg * 42 / 100).contains(&before),
            "dm.thinp_percent=40: {before} of {vg}"
        );
        assert_eq!(
            lvm(&["lvs", "--noheadings", "-o", "lv_profile", "strata/thinpool"]),
            "strata-thinpool"
        );
        let profile = std::fs::read_to_string(lvm_dir.join("profile/strata-thinpool.profile"))
            .expect("profile");
        assert!(
            profile.contains("thin_pool_autoextend_threshold=60")
                && profile.contains("thin_pool_autoextend_percent=50"),
            "{profile}"
        );
        // Fill the pool beyond 60%: dmeventd extends it by half into the rest of the group.
        d.create_rw("c", None, &CreateOpts::default()).expect("rw");
        let root = d.get("c", "").expect("get");
        std::fs::write(root.join("fill"), vec![3u8; (before * 66 / 100) as usize]).expect("fill");
        strata_graph::fsutil::syncfs_path(&root).expect("sync");
        let waited = std::time::Instant::now();
        let mut now = pool_lv_bytes();
        while now <= before && waited.elapsed() < std::time::Duration::from_secs(90) {
            std::thread::sleep(std::time::Duration::from_secs(2));
            now = pool_lv_bytes();
        }
        assert!(now > before, "the pool was not extended: {before} -> {now}");
        d.put("c").expect("put");
        now
    };
    // Shutdown keeps LVM's pool; a start with the same options uses it again.
    assert!(dm_names().contains(&"strata-thinpool".to_string()));
    {
        let d = Drv(DevmapperDriver::start(&home, &with(&forced)).expect("again"));
        assert!(d.0.exists("c"));
        assert_eq!(pool_lv_bytes(), grown);
        assert_eq!(pool_device_ids(&d.0), d.0.recorded_device_ids());
        d.0.remove("c").expect("rm");
    }
    // Other settings would need a new pool under existing layers: refused.
    let e = refused_start(&home, &with(&["dm.thinp_percent=50"]), "changed options");
    assert!(e.contains("not supported"), "{e}");
}

#[test]
fn in_the_vm() {
    if no_dm().is_none() {
        println!("device-mapper is here: the tests ran directly");
        return;
    }
    assert!(!vm::inside(), "inside the VM without device-mapper");
    if vm::run_suite("in_the_vm", 9, &[("VM_PRELOAD", "xfs")]).is_none() {
        eprintln!("SKIPPED: no device-mapper here and no VM runner (../shared/vm/run-in-vm.sh)");
    }
}
