//! The driver conformance suite, run against overlay2.

use std::sync::Arc;

fn make(home: &std::path::Path) -> Arc<dyn strata_graph::Driver> {
    Arc::new(
        strata_overlay::OverlayDriver::new(home, &Default::default()).expect("overlay2 driver"),
    )
}

strata_graph::graphtest_suite!(make);
