//! The NAT and filter rules of Strata's networks, as one nftables table of its own
//! (`ip strata`), written whole from the daemon's state and applied in one transaction
//! through Debian's `nft`: the table is always exactly what the state says, rebuilt the same
//! way at daemon start, and never half-applied. Other tables (the host's own, or dockerd's)
//! are not touched.
//!
//! What it holds, after dockerd's iptables rules:
//! - `prerouting`/`output` (nat): traffic to a local address jumps to `ports`, where each
//!   published port is a DNAT to its container. With the userland proxy on, local traffic to
//!   127.0.0.0/8 is left to the proxy, and traffic from the network's own bridge is not
//!   NATed (the proxy handles hairpin); with it off, loopback traffic is NATed too (the
//!   bridge then needs `route_localnet`) and hairpin traffic is masqueraded.
//! - `postrouting` (nat): masquerade of each network's subnet leaving by another link
//!   (`--ip-masq`), of local sources into a bridge (proxy off), and of hairpin flows.
//! - `forward` (filter): `--icc=false` drops traffic between containers of the same bridge;
//!   internal networks reach nothing outside their bridge; distinct networks are isolated.

use crate::ipam::Subnet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Errors applying rules.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("running nft: {0}")]
    Spawn(std::io::Error),
    #[error("nft refused the rules: {0}")]
    Refused(String),
}

/// One bridge network's part of the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRules {
    pub bridge: String,
    pub subnet: Subnet,
    /// Masquerade traffic leaving the subnet (`--ip-masq`, the network's
    /// `com.docker.network.bridge.enable_ip_masquerade`).
    pub masquerade: bool,
    /// Containers of the bridge may talk to each other (`--icc`).
    pub icc: bool,
    /// No traffic in or out of the bridge (`network create --internal`).
    pub internal: bool,
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn parse(s: &str) -> Option<Proto> {
        match s {
            "tcp" | "" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    pub proto: Proto,
    /// `None`: every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
    /// The bridge the container is reached through.
    pub bridge: String,
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The table's name (`strata`).
    pub table: String,
    pub bridges: Vec<BridgeRules>,
    pub ports: Vec<PortRule>,
    /// `--userland-proxy`.
    pub userland_proxy: bool,
}

impl Ruleset {
    /// The nft script that replaces the table with this one.
    pub fn script(&self) -> String {
        let mut ports = Vec::new();
        let mut post = Vec::new();
        let mut fwd = Vec::new();
        for p in &self.ports {
            let proto = p.proto.name();
            let mut rule = String::new();
            if self.userland_proxy {
                rule.push_str(&format!("iifname != \"{}\" ", p.bridge));
            }
            if let Some(ip) = p.host_ip.filter(|ip| !ip.is_unspecified()) {
                rule.push_str(&format!("ip daddr {ip} "));
            }
            rule.push_str(&format!(
                "{proto} dport {} dnat to {}:{}",
                p.host_port, p.container_ip, p.container_port
            ));
            ports.push(rule);
            if !self.userland_proxy {
                post.push(format!(
                    "ip saddr {c} ip daddr {c} {proto} dport {} masquerade",
                    p.container_port,
                    c = p.container_ip
                ));
            }
        }
        for b in &self.bridges {
            if b.masquerade && !b.internal {
                post.push(format!(
                    "ip saddr {} oifname != \"{}\" masquerade",
                    b.subnet, b.bridge
                ));
            }
            if !self.userland_proxy {
                post.push(format!(
                    "oifname \"{}\" fib saddr type local masquerade",
                    b.bridge
                ));
            }
            if !b.icc {
                fwd.push(format!(
                    "iifname \"{b}\" oifname \"{b}\" drop",
                    b = b.bridge
                ));
            }
            if b.internal {
                fwd.push(format!(
                    "iifname \"{b}\" oifname != \"{b}\" drop",
                    b = b.bridge
                ));
                fwd.push(format!(
                    "oifname \"{b}\" iifname != \"{b}\" drop",
                    b = b.bridge
                ));
            }
            for other in &self.bridges {
                if other.bridge != b.bridge {
                    fwd.push(format!(
                        "iifname \"{}\" oifname \"{}\" drop",
                        b.bridge, other.bridge
                    ));
                }
            }
        }
        let output_match = if self.userland_proxy {
            "ip daddr != 127.0.0.0/8 fib daddr type local jump ports"
        } else {
            "fib daddr type local jump ports"
        };
        let mut s = String::new();
        let t = &self.table;
        s.push_str(&format!(
            "table ip {t}\ndelete table ip {t}\ntable ip {t} {{\n"
        ));
        let chain = |s: &mut String, name: &str, head: Option<&str>, rules: &[String]| {
            s.push_str(&format!("  chain {name} {{\n"));
            if let Some(h) = head {
                s.push_str(&format!("    {h}\n"));
            }
            for r in rules {
                s.push_str(&format!("    {r}\n"));
            }
            s.push_str("  }\n");
        };
        chain(&mut s, "ports", None, &ports);
        chain(
            &mut s,
            "prerouting",
            Some("type nat hook prerouting priority dstnat; policy accept;"),
            &["fib daddr type local jump ports".to_string()],
        );
        chain(
            &mut s,
            "output",
            Some("type nat hook output priority -100; policy accept;"),
            &[output_match.to_string()],
        );
        chain(
            &mut s,
            "postrouting",
            Some("type nat hook postrouting priority srcnat; policy accept;"),
            &post,
        );
        chain(
            &mut s,
            "forward",
            Some("type filter hook forward priority filter; policy accept;"),
            &fwd,
        );
        s.push_str("}\n");
        s
    }

    /// Replaces the table with this one, in one transaction.
    pub fn apply(&self) -> Result<(), FirewallError> {
        apply_script(&self.script())
    }
}

/// Runs a ruleset script made by [`Ruleset::script`] (one transaction).
pub fn apply_script(script: &str) -> Result<(), FirewallError> {
    run_nft(script)
}

/// Removes the table `table` (`--iptables=false` after a run with rules, or a test's
/// cleanup); a missing table is not an error.
pub fn remove(table: &str) -> Result<(), FirewallError> {
    run_nft(&format!("table ip {table}\ndelete table ip {table}\n"))
}

fn run_nft(script: &str) -> Result<(), FirewallError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(FirewallError::Spawn)?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(script.as_bytes())
            .map_err(FirewallError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(FirewallError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FirewallError::Refused(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Writes a sysctl under `/proc/sys` (e.g. `net/ipv4/ip_forward`); what the kernel lacks is
/// reported, not fatal to the caller unless it chooses.
pub fn sysctl(key: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(format!("/proc/sys/{key}"), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(proxy: bool) -> Ruleset {
        Ruleset {
            table: "strata".into(),
            bridges: vec![
                BridgeRules {
                    bridge: "strata0".into(),
                    subnet: Subnet::parse("172.17.0.0/16").unwrap(),
                    masquerade: true,
                    icc: false,
                    internal: false,
                },
                BridgeRules {
                    bridge: "br-1".into(),
                    subnet: Subnet::parse("172.18.0.0/16").unwrap(),
                    masquerade: true,
                    icc: true,
                    internal: true,
                },
            ],
            ports: vec![PortRule {
                proto: Proto::Udp,
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: 8080,
                container_ip: "172.17.0.2".parse().unwrap(),
                container_port: 80,
                bridge: "strata0".into(),
            }],
            userland_proxy: proxy,
        }
    }

    #[test]
    fn the_script_says_what_the_state_says() {
        let s = sample(true).script();
        assert!(
            s.starts_with("table ip strata\ndelete table ip strata\n"),
            "{s}"
        );
        assert!(
            s.contains(
                "iifname != \"strata0\" ip daddr 127.0.0.1 udp dport 8080 dnat to 172.17.0.2:80"
            ),
            "{s}"
        );
        assert!(
            s.contains("ip saddr 172.17.0.0/16 oifname != \"strata0\" masquerade"),
            "{s}"
        );
        assert!(
            !s.contains("ip saddr 172.18.0.0/16"),
            "internal: no masquerade: {s}"
        );
        assert!(
            s.contains("iifname \"strata0\" oifname \"strata0\" drop"),
            "{s}"
        );
        assert!(
            s.contains("iifname \"br-1\" oifname != \"br-1\" drop"),
            "{s}"
        );
        assert!(
            s.contains("iifname \"strata0\" oifname \"br-1\" drop"),
            "{s}"
        );
        assert!(
            s.contains("ip daddr != 127.0.0.0/8 fib daddr type local jump ports"),
            "{s}"
        );
        let s = sample(false).script();
        assert!(
            s.contains("    ip daddr 127.0.0.1 udp dport 8080 dnat"),
            "{s}"
        );
        assert!(
            s.contains("ip saddr 172.17.0.2 ip daddr 172.17.0.2 udp dport 80 masquerade"),
            "{s}"
        );
        assert!(
            s.contains("oifname \"strata0\" fib saddr type local masquerade"),
            "{s}"
        );
    }

    #[test]
    fn nft_takes_the_script_in_a_scratch_namespace() {
        // SAFETY: plain syscall.
        if unsafe { libc::geteuid() } != 0 || crate::lookup_nft().is_none() {
            eprintln!("skipped: needs root and nft (Debian nftables)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let ns = t.path().join("ns");
        crate::netns::create(&ns).unwrap();
        let listed = crate::netns::run_in(Some(&ns), || {
            sample(true).apply()?;
            sample(false).apply()?;
            let out = Command::new("nft")
                .args(["list", "table", "ip", "strata"])
                .output()
                .map_err(FirewallError::Spawn)?;
            remove("strata")?;
            remove("strata")?;
            let gone = Command::new("nft")
                .args(["list", "ruleset"])
                .output()
                .map_err(FirewallError::Spawn)?;
            Ok::<_, FirewallError>((
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&gone.stdout).into_owned(),
            ))
        });
        crate::netns::remove(&ns);
        let (table, after) = listed.unwrap().unwrap();
        assert!(table.contains("dnat to 172.17.0.2:80"), "{table}");
        assert!(
            table.contains("fib saddr type local masquerade"),
            "the second script replaced the first: {table}"
        );
        assert!(!after.contains("strata"), "{after}");
    }
}
