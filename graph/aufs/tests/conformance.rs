//! The driver conformance suite on aufs. It runs only where the kernel has aufs (listed in
//! `/proc/filesystems`): no Debian kernel does, and the aufs-patched kernel it needs cannot be
//! part of this repository. Elsewhere every test says SKIPPED, with that reason. What needs no
//! kernel support (branch strings, page splitting, whiteouts, changes, export) is unit-tested
//! in the crate everywhere.

use std::path::Path;
use std::sync::Arc;
use strata_aufs::AufsDriver;
use strata_graph::StorageOpts;

fn make(home: &Path) -> Arc<dyn strata_graph::Driver> {
    Arc::new(AufsDriver::new(home, &StorageOpts::default()).expect("aufs driver"))
}

fn no_aufs() -> Option<String> {
    strata_aufs::unavailable().map(|why| {
        format!("{why}; boot a kernel with aufs (VM_KERNEL= of shared/vm/run-in-vm.sh) to run it")
    })
}

strata_graph::graphtest_suite!(make, guard = no_aufs);
