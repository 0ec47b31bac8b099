//! A container's network mode (`--network`), and the network namespace it gives: its own
//! (`bridge`, `none`: only a loopback until container networking lands), the host's (`host`),
//! or another running container's (`container:<name|id>`).

use std::path::PathBuf;

/// `HostConfig.NetworkMode`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// `bridge` (and `default`, empty).
    Bridge,
    None,
    Host,
    /// `container:<name|id>`.
    Container(String),
    /// A user-defined network's name.
    Named(String),
}

impl NetworkMode {
    pub fn parse(s: &str) -> NetworkMode {
        match s {
            "" | "default" | "bridge" => NetworkMode::Bridge,
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            other => match other.strip_prefix("container:") {
                Some(c) => NetworkMode::Container(c.to_string()),
                None => NetworkMode::Named(other.to_string()),
            },
        }
    }
}

/// The network namespace of the spec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NetworkNs {
    /// A new one.
    #[default]
    New,
    /// The runtime's own: the host's.
    Host,
    /// An existing one (`/proc/PID/ns/net` of another container's init).
    Join(PathBuf),
}

/// The host's name (`--network host` containers take it, as with dockerd).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(NetworkMode::parse(""), NetworkMode::Bridge);
        assert_eq!(NetworkMode::parse("default"), NetworkMode::Bridge);
        assert_eq!(NetworkMode::parse("none"), NetworkMode::None);
        assert_eq!(NetworkMode::parse("host"), NetworkMode::Host);
        assert_eq!(
            NetworkMode::parse("container:web"),
            NetworkMode::Container("web".into())
        );
        assert_eq!(
            NetworkMode::parse("mynet"),
            NetworkMode::Named("mynet".into())
        );
        assert!(!host_name().is_empty());
    }
}
