//! The driver conformance suite, run against vfs.

use std::sync::Arc;

fn make(home: &std::path::Path) -> Arc<dyn strata_graph::Driver> {
    Arc::new(strata_vfs::VfsDriver::new(home, &Default::default()).expect("vfs driver"))
}

strata_graph::graphtest_suite!(make);
