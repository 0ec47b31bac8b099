//! The daemon's network settings: dockerd's flags and daemon.json keys for the default
//! bridge, NAT and DNS.

use std::net::Ipv4Addr;

/// What `-b`, `--bip`, `--icc`, ... say.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    /// `-b/--bridge`: the default bridge's link name; `none`: no default bridge network
    /// (containers of the default network get only `lo`). Default `strata0`.
    pub bridge: String,
    /// `--bip`: the default bridge's address and prefix (`172.17.0.1/16`).
    pub bip: Option<String>,
    /// `--fixed-cidr`: the part of the subnet containers get addresses from.
    pub fixed_cidr: Option<String>,
    /// `--ipv6`: the default bridge has IPv6.
    pub ipv6: bool,
    /// `--fixed-cidr-v6`: the default bridge's IPv6 subnet (containers get addresses of it).
    pub fixed_cidr_v6: Option<String>,
    /// `--mtu`.
    pub mtu: Option<u32>,
    /// `--icc`: containers of the default bridge may talk to each other.
    pub icc: bool,
    /// `--ip`: the default host address of published ports.
    pub ip: Ipv4Addr,
    /// `--ip-forward`: enable IPv4 forwarding.
    pub ip_forward: bool,
    /// `--ip-masq`: masquerade the default bridge's outbound traffic.
    pub ip_masq: bool,
    /// `--iptables`: write firewall rules at all.
    pub iptables: bool,
    /// `--userland-proxy`.
    pub userland_proxy: bool,
    /// `--default-gateway`: the default bridge's containers' gateway.
    pub default_gateway: Option<Ipv4Addr>,
    /// `--dns`, `--dns-search`, `--dns-opt`.
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_opt: Vec<String>,
    /// The name of the nftables table (`strata`).
    pub table: String,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            bridge: "strata0".into(),
            bip: None,
            fixed_cidr: None,
            ipv6: false,
            fixed_cidr_v6: None,
            mtu: None,
            icc: true,
            ip: Ipv4Addr::UNSPECIFIED,
            ip_forward: true,
            ip_masq: true,
            iptables: true,
            userland_proxy: true,
            default_gateway: None,
            dns: Vec::new(),
            dns_search: Vec::new(),
            dns_opt: Vec::new(),
            table: "strata".into(),
        }
    }
}

impl NetConfig {
    /// Whether there is a default bridge network.
    pub fn has_bridge(&self) -> bool {
        self.bridge != "none"
    }
}
