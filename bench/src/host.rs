//! The facts about the host that a figure depends on, kept in the JSON.

use serde::Serialize;

/// What the host is.
#[derive(Debug, Clone, Serialize)]
pub struct HostFacts {
    pub strata_version: &'static str,
    pub kernel: String,
    pub os: String,
    pub cpu: String,
    pub cpus: usize,
    pub memory_bytes: u64,
    /// Whether the harness runs under a hypervisor (the `hypervisor` CPU flag).
    pub virtualized: bool,
    pub hostname: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl HostFacts {
    /// Reads the facts from /proc and /etc.
    pub fn gather() -> HostFacts {
        let cpuinfo = read("/proc/cpuinfo");
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default();
        HostFacts {
            strata_version: env!("CARGO_PKG_VERSION"),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            os,
            cpu: field("model name"),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_bytes: strata_runtime::cgroups::host_memory(),
            virtualized: field("flags").split_whitespace().any(|f| f == "hypervisor"),
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn facts_are_read() {
        let h = super::HostFacts::gather();
        assert!(
            h.kernel.chars().next().is_some_and(|c| c.is_ascii_digit()),
            "{h:?}"
        );
        assert!(h.cpus >= 1 && h.memory_bytes > 0, "{h:?}");
    }
}
