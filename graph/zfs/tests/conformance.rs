//! The driver conformance suite on zfs: each test's driver gets a dataset of its own under
//! the test pool (`zfs.fsname`).
//!
//! This kernel has no ZFS: here every test says SKIPPED and `in_the_vm` runs the whole binary
//! inside the VM (`tests/vm/run.sh`, Debian's kernel with the OpenZFS modules built by
//! `shared/vm/build-zfs-module.sh`, a pool made by `tests/vm/with-zfs.sh`).

mod support;

use std::path::Path;
use std::sync::Arc;
use strata_graph::StorageOpts;
use strata_zfs::ZfsDriver;

fn make(home: &Path) -> Arc<dyn strata_graph::Driver> {
    let fs = support::dataset_for(home);
    let opts = StorageOpts::parse(&[format!("zfs.fsname={fs}")]).expect("options");
    Arc::new(ZfsDriver::new(home, &opts).expect("zfs driver"))
}

strata_graph::graphtest_suite!(make, guard = support::no_zfs);

#[test]
fn in_the_vm() {
    support::in_the_vm(20);
}
