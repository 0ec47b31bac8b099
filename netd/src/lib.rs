//! Container networks. Its own crate because networking is a part of its own, between the
//! runtime (which gives each container its namespace) and the API: issue #6 brings bridges,
//! NAT and DNS here, done with netlink and nftables.
//!
//! So far: the network records (`store`: the predefined `host` and `none` networks, as
//! dockerd has them when it runs without a bridge, `--bridge=none`, each with an ID kept
//! across restarts in `<data-root>/network/networks.json`), and IPv4 address management
//! (`ipam`), which no network uses yet.

pub mod ipam;
pub mod store;

pub use store::{Network, NetworkError, NetworkStore};
pub mod link;
pub mod netns;
pub mod firewall;

/// Where `nft` is, if installed (Debian `nftables`).
pub fn lookup_nft() -> Option<std::path::PathBuf> {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
}
pub mod config;
pub mod dns;
pub mod etc;
pub mod manager;
pub mod proxy;
pub mod sandbox;

pub use config::NetConfig;
pub use manager::{EndpointRequest, Manager, NetError, PortRequest, Prepared, SandboxRequest};
