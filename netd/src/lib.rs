//! Container networks. Its own crate because networking is a part of its own, between the
//! runtime (which gives each container its namespace) and the API: issue #6 brings bridges,
//! IPAM, NAT and DNS here, done with netlink and nftables.
//!
//! For now it keeps the network records: the predefined `host` and `none` networks, as
//! dockerd has them when it runs without a bridge (`--bridge=none`), each with an ID kept
//! across restarts in `<data-root>/network/networks.json`.

pub mod store;

pub use store::{Network, NetworkError, NetworkStore};
