//! The harness's errors: each says what was being done when it happened.

use std::io;
use strata_graph::DriverError;

/// An error of the storage benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A wrong command line (unknown driver or workload, a malformed option).
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Driver {
        what: String,
        #[source]
        source: DriverError,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The backing store for a driver could not be made.
    #[error("{0}")]
    Backing(String),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: strata_api::client::ClientError,
    },
    /// An engine answered something the workload did not expect.
    #[error("{0}")]
    Engine(String),
}

/// The harness's result type.
pub type BenchResult<T> = Result<T, BenchError>;

impl BenchError {
    /// True when the error comes from a full filesystem or quota (ENOSPC, EDQUOT).
    pub fn is_no_space(&self) -> bool {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<io::Error>() {
                if matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
                    return true;
                }
            }
            let text = e.to_string();
            if text.contains("No space left on device") || text.contains("Disk quota exceeded") {
                return true;
            }
            cur = e.source();
        }
        false
    }
}

/// Adds what was being done to a driver or I/O error.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> BenchResult<T>;
}

impl<T> Context<T> for Result<T, DriverError> {
    fn ctx(self, what: impl FnOnce() -> String) -> BenchResult<T> {
        self.map_err(|source| BenchError::Driver {
            what: what(),
            source,
        })
    }
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> BenchResult<T> {
        self.map_err(|source| BenchError::Io {
            what: what(),
            source,
        })
    }
}

impl<T> Context<T> for Result<T, strata_api::client::ClientError> {
    fn ctx(self, what: impl FnOnce() -> String) -> BenchResult<T> {
        self.map_err(|source| BenchError::Api {
            what: what(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_space_is_recognised_through_the_chain() {
        let e: BenchResult<()> =
            Err(io::Error::from_raw_os_error(libc::ENOSPC)).ctx(|| "writing".into());
        assert!(e.unwrap_err().is_no_space());
        let e: BenchResult<()> =
            Err(io::Error::from_raw_os_error(libc::EIO)).ctx(|| "writing".into());
        assert!(!e.unwrap_err().is_no_space());
        let d = DriverError::Io {
            driver: "vfs",
            context: "copy".into(),
            source: io::Error::from_raw_os_error(libc::EDQUOT),
        };
        let e: BenchResult<()> = Err(d).ctx(|| "create".into());
        assert!(e.unwrap_err().is_no_space());
    }
}
