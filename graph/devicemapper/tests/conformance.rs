//! The driver conformance suite on devicemapper loop-lvm: each test's home gets its own thin
//! pool on sparse files (2 GB data, 64 MB metadata) with a 64 MB ext4 base device.
//!
//! This kernel has no device-mapper: here every test says SKIPPED and `in_the_vm` runs the
//! whole binary inside the VM (`tests/vm/run.sh`, Debian's kernel with dm-thin), where the
//! suite runs for real; without the VM runner it says SKIPPED too.

use std::path::Path;
use std::sync::Arc;
use strata_devicemapper::DevmapperDriver;
use strata_graph::graphtest::vm;
use strata_graph::StorageOpts;

/// Why the suite cannot run on this host, if it cannot.
fn no_dm() -> Option<String> {
    (!Path::new("/dev/mapper/control").exists()).then(|| {
        "this kernel has no device-mapper; `in_the_vm` runs the suite in the VM".to_string()
    })
}

fn make(home: &Path) -> Arc<dyn strata_graph::Driver> {
    let opts = StorageOpts::parse(&[
        "dm.loopdatasize=2G",
        "dm.loopmetadatasize=64M",
        "dm.basesize=64M",
        "dm.fs=ext4",
    ])
    .expect("options");
    Arc::new(DevmapperDriver::new(home, &opts).expect("devicemapper driver"))
}

strata_graph::graphtest_suite!(make, guard = no_dm);

#[test]
fn in_the_vm() {
    if no_dm().is_none() {
        println!("device-mapper is here: the suite ran directly");
        return;
    }
    if vm::inside() {
        panic!("inside the VM without device-mapper");
    }
    if vm::run_suite("in_the_vm", 20, &[]).is_none() {
        eprintln!("SKIPPED: no device-mapper here and no VM runner (../shared/vm/run-in-vm.sh)");
    }
}
