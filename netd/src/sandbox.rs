//! A container's network records: its endpoints (one per network, with the address handed
//! out to it) and its published ports, kept at `<data-root>/network/sandboxes/<id>.json` so
//! that addresses stay the container's until it is removed, and a restarted daemon knows
//! what to rebuild.

use crate::firewall::Proto;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// One network a container is on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    pub network_id: String,
    pub network: String,
    pub endpoint_id: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: String,
    /// Asked for with `--ip` (IPAMConfig).
    #[serde(default)]
    pub requested_ip: Option<Ipv4Addr>,
    /// The IPv6 address, on a network with IPv6.
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default)]
    pub prefix6: u8,
    #[serde(default)]
    pub gateway6: Option<Ipv6Addr>,
    /// Asked for with `--ip6`.
    #[serde(default)]
    pub requested_ip6: Option<Ipv6Addr>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Inside the container (`eth0`, ...).
    pub ifname: String,
    /// The host end of its veth pair.
    pub host_ifname: String,
    pub bridge: String,
    /// A user-defined network: names resolve through the embedded DNS server.
    #[serde(default)]
    pub user_defined: bool,
}

/// One published port.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    pub proto: Proto,
    pub container_port: u16,
    pub host_ip: IpAddr,
    pub host_port: u16,
}

/// A container's networking.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Sandbox {
    pub id: String,
    pub name: String,
    pub hostname: String,
    /// Its namespace file while it runs.
    pub netns: PathBuf,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<Port>,
    /// Where the embedded DNS server forwards to.
    #[serde(default)]
    pub upstream_dns: Vec<String>,
    /// Set up (links, rules) and not yet torn down.
    pub running: bool,
}

impl Endpoint {
    /// Its addresses: IPv4, then IPv6 where the network has it.
    pub fn addresses(&self) -> Vec<IpAddr> {
        std::iter::once(IpAddr::V4(self.ip))
            .chain(self.ip6.map(IpAddr::V6))
            .collect()
    }
}

impl Sandbox {
    /// The address ports are forwarded to: the first endpoint's.
    pub fn primary(&self) -> Option<&Endpoint> {
        self.endpoints.first()
    }

    /// The next free interface name.
    pub fn next_ifname(&self) -> String {
        (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !self.endpoints.iter().any(|e| &e.ifname == n))
            .unwrap_or_else(|| "eth0".into())
    }
}

impl Serialize for Proto {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Proto {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Proto::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("bad protocol {s}")))
    }
}
