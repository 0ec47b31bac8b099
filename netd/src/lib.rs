//! Container networks. Its own crate because networking is a part of its own, between the
//! runtime (which runs each container in the namespace made here) and the API: bridges and
//! veth pairs through rtnetlink (`link`), namespace files (`netns`), address management
//! (`ipam`), NAT and filter rules as one nftables table (`firewall`), the userland proxy
//! (`proxy`), the embedded DNS server (`dns`), `/etc/hosts` and `resolv.conf` (`etc`), the
//! network records (`store`), each container's endpoints and ports (`sandbox`), and the
//! `manager` that ties them together for the daemon.

pub mod ipam;
pub mod store;

pub use store::{Network, NetworkError, NetworkStore};
pub mod firewall;
pub mod link;
pub mod netns;

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
pub use manager::{
    EndpointRequest, Manager, NetError, NetworkSpec, PortRequest, Prepared, SandboxRequest,
};
