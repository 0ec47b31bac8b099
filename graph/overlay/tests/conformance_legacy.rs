//! The driver conformance suite, run against overlay2 forced onto classic mount(2), the path
//! kernels without `lowerdir+` (before 6.8) take. There, the 200-layer chain must fail with a
//! clear error rather than mount.

use std::sync::Arc;

fn make(home: &std::path::Path) -> Arc<dyn strata_graph::Driver> {
    let opts = strata_graph::StorageOpts::parse(&["overlay2.mount_api=legacy"]).expect("options");
    Arc::new(strata_overlay::OverlayDriver::new(home, &opts).expect("overlay2 driver"))
}

strata_graph::graphtest_suite!(make);
