//! The driver conformance suite, run against btrfs on a loop-mounted filesystem: each test's
//! scratch directory gets its own btrfs (a sparse image, `mkfs.btrfs`), mounted under that
//! directory so that the suite's clean-up unmounts it; the loop device goes with it
//! (autoclear). Skipped, saying so, without `mkfs.btrfs`.

use std::path::Path;
use std::sync::Arc;
use strata_graph::graphtest::loopfs::{LoopFs, LoopFsError};

/// The driver for `home` (`<test dir>/home`): its home is moved onto a btrfs mounted at
/// `<test dir>/btrfs/mnt`, made on first use and found again by a reopen or a crash child.
fn make(home: &Path) -> Arc<dyn strata_graph::Driver> {
    let dir = home.parent().expect("a test directory").join("btrfs");
    let mnt = dir.join("mnt");
    let mounted = strata_graph::fsutil::is_mountpoint(&mnt).unwrap_or(false);
    if !mounted {
        std::fs::create_dir_all(&dir).expect("dir");
        match LoopFs::new(&dir, &["mkfs.btrfs", "-q"], 512 << 20, "") {
            // The suite unmounts everything under its directory when it ends.
            Ok(fs) => std::mem::forget(fs),
            Err(LoopFsError::NoTool(t)) => panic!("{t} is needed (Debian package btrfs-progs)"),
            Err(LoopFsError::Mount(why)) => panic!("mounting btrfs: {why}"),
        }
    }
    Arc::new(
        strata_btrfs::BtrfsDriver::new(&mnt.join("home"), &Default::default())
            .expect("btrfs driver"),
    )
}

strata_graph::graphtest_suite!(make);
