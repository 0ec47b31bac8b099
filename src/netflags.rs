//! The daemon's network flags and their daemon.json keys (dockerd's names), merged into the
//! network manager's settings. A setting given both ways is an error, as for the others.

use anyhow::{bail, Context};
use serde_json::{Map, Value};
use strata_netd::NetConfig;

/// daemon.json keys read here.
pub const KEYS: &[&str] = &[
    "bridge",
    "bip",
    "fixed-cidr",
    "ipv6",
    "fixed-cidr-v6",
    "mtu",
    "icc",
    "ip",
    "ip-forward",
    "ip-masq",
    "iptables",
    "userland-proxy",
    "default-gateway",
    "dns",
    "dns-search",
    "dns-opts",
];

/// The network flags of `strata daemon`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct NetFlags {
    /// Attach containers to this network bridge; `none`: no default bridge [default: strata0].
    #[arg(long = "bridge", short = 'b')]
    pub bridge: Option<String>,
    /// The default bridge's IP address and prefix (e.g. 172.17.0.1/16).
    #[arg(long)]
    pub bip: Option<String>,
    /// The IPv4 subnet containers of the default bridge get addresses from.
    #[arg(long = "fixed-cidr")]
    pub fixed_cidr: Option<String>,
    /// Enable IPv6 on the default bridge (with --fixed-cidr-v6 for its subnet).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub ipv6: Option<bool>,
    /// The IPv6 subnet of the default bridge (e.g. fd00:1::/64).
    #[arg(long = "fixed-cidr-v6")]
    pub fixed_cidr_v6: Option<String>,
    /// MTU of the default bridge and its containers' interfaces.
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Allow traffic between containers of the default bridge [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub icc: Option<bool>,
    /// Default host address of published ports [default: 0.0.0.0].
    #[arg(long)]
    pub ip: Option<std::net::Ipv4Addr>,
    /// Enable IPv4 forwarding [default: true].
    #[arg(long = "ip-forward", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub ip_forward: Option<bool>,
    /// Masquerade the default bridge's outbound traffic [default: true].
    #[arg(long = "ip-masq", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub ip_masq: Option<bool>,
    /// Write NAT and filter rules (nftables table `strata`) [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub iptables: Option<bool>,
    /// Forward published ports through the daemon (loopback and hairpin access) [default: true].
    #[arg(long = "userland-proxy", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub userland_proxy: Option<bool>,
    /// Gateway of the default bridge's containers.
    #[arg(long = "default-gateway")]
    pub default_gateway: Option<std::net::Ipv4Addr>,
    /// DNS server of containers (repeatable).
    #[arg(long)]
    pub dns: Vec<String>,
    /// DNS search domain of containers (repeatable).
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// DNS option of containers (repeatable).
    #[arg(long = "dns-opt")]
    pub dns_opt: Vec<String>,
}

fn strs(v: &Value, k: &str) -> anyhow::Result<Vec<String>> {
    v.as_array()
        .and_then(|a| a.iter().map(|s| s.as_str().map(String::from)).collect())
        .with_context(|| format!("daemon.json: {k} must be a list of strings"))
}

/// Merges the flags with the file's keys.
pub fn merge(f: &NetFlags, file: &Map<String, Value>) -> anyhow::Result<NetConfig> {
    let given = [
        ("bridge", f.bridge.is_some()),
        ("bip", f.bip.is_some()),
        ("fixed-cidr", f.fixed_cidr.is_some()),
        ("ipv6", f.ipv6.is_some()),
        ("fixed-cidr-v6", f.fixed_cidr_v6.is_some()),
        ("mtu", f.mtu.is_some()),
        ("icc", f.icc.is_some()),
        ("ip", f.ip.is_some()),
        ("ip-forward", f.ip_forward.is_some()),
        ("ip-masq", f.ip_masq.is_some()),
        ("iptables", f.iptables.is_some()),
        ("userland-proxy", f.userland_proxy.is_some()),
        ("default-gateway", f.default_gateway.is_some()),
        ("dns", !f.dns.is_empty()),
        ("dns-search", !f.dns_search.is_empty()),
        ("dns-opts", !f.dns_opt.is_empty()),
    ];
    let both: Vec<&str> = given
        .iter()
        .filter(|(k, g)| *g && file.contains_key(*k))
        .map(|(k, _)| *k)
        .collect();
    if !both.is_empty() {
        bail!(
            "the following directives are specified both as a flag and in the configuration file: {}",
            both.join(", ")
        );
    }
    let d = NetConfig::default();
    let b = |k: &str, flag: Option<bool>, def: bool| -> anyhow::Result<bool> {
        match file.get(k) {
            Some(v) => v
                .as_bool()
                .with_context(|| format!("daemon.json: {k} must be a boolean")),
            None => Ok(flag.unwrap_or(def)),
        }
    };
    let s = |k: &str, flag: &Option<String>| -> anyhow::Result<Option<String>> {
        match file.get(k) {
            Some(v) => Ok(Some(
                v.as_str()
                    .with_context(|| format!("daemon.json: {k} must be a string"))?
                    .to_string(),
            )),
            None => Ok(flag.clone()),
        }
    };
    let ip =
        |k: &str, flag: Option<std::net::Ipv4Addr>| -> anyhow::Result<Option<std::net::Ipv4Addr>> {
            match s(k, &None)? {
                Some(t) => Ok(Some(t.parse().with_context(|| {
                    format!("daemon.json: {k}: invalid IPv4 address {t}")
                })?)),
                None => Ok(flag),
            }
        };
    let cfg = NetConfig {
        bridge: s("bridge", &f.bridge)?
            .filter(|b| !b.is_empty())
            .unwrap_or(d.bridge),
        bip: s("bip", &f.bip)?,
        fixed_cidr: s("fixed-cidr", &f.fixed_cidr)?,
        ipv6: b("ipv6", f.ipv6, d.ipv6)?,
        fixed_cidr_v6: s("fixed-cidr-v6", &f.fixed_cidr_v6)?,
        mtu: match file.get("mtu") {
            Some(v) => Some(
                v.as_u64()
                    .and_then(|m| u32::try_from(m).ok())
                    .context("daemon.json: mtu must be a number")?,
            ),
            None => f.mtu,
        },
        icc: b("icc", f.icc, d.icc)?,
        ip: ip("ip", f.ip)?.unwrap_or(d.ip),
        ip_forward: b("ip-forward", f.ip_forward, d.ip_forward)?,
        ip_masq: b("ip-masq", f.ip_masq, d.ip_masq)?,
        iptables: b("iptables", f.iptables, d.iptables)?,
        userland_proxy: b("userland-proxy", f.userland_proxy, d.userland_proxy)?,
        default_gateway: ip("default-gateway", f.default_gateway)?,
        dns: match file.get("dns") {
            Some(v) => strs(v, "dns")?,
            None => f.dns.clone(),
        },
        dns_search: match file.get("dns-search") {
            Some(v) => strs(v, "dns-search")?,
            None => f.dns_search.clone(),
        },
        dns_opt: match file.get("dns-opts") {
            Some(v) => strs(v, "dns-opts")?,
            None => f.dns_opt.clone(),
        },
        table: d.table,
    };
    if let Some(m) = cfg.mtu {
        if !(68..=65535).contains(&m) {
            bail!("invalid MTU {m}");
        }
    }
    if let Some(c) = &cfg.fixed_cidr_v6 {
        if strata_netd::ipam::Subnet::<std::net::Ipv6Addr>::parse(c).is_err() {
            bail!("invalid --fixed-cidr-v6 {c}: want an IPv6 subnet such as fd00:1::/64");
        }
    }
    if cfg.bridge != "strata0" && cfg.bip.is_some() && cfg.has_bridge() {
        // dockerd: -b and --bip are exclusive.
        bail!("You specified -b & --bip, mutually exclusive options. Please specify only one");
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(s: &str) -> Map<String, Value> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn flags_file_and_defaults() {
        let c = merge(&NetFlags::default(), &Map::new()).unwrap();
        assert_eq!(c, NetConfig::default());
        let f = NetFlags {
            icc: Some(false),
            bip: Some("10.5.0.1/24".into()),
            ..Default::default()
        };
        let c = merge(
            &f,
            &file(r#"{"userland-proxy": false, "dns": ["1.1.1.1"], "mtu": 1400}"#),
        )
        .unwrap();
        assert!(!c.icc && !c.userland_proxy && c.iptables);
        assert_eq!(c.bip.as_deref(), Some("10.5.0.1/24"));
        assert_eq!(c.dns, ["1.1.1.1"]);
        assert_eq!(c.mtu, Some(1400));
        let e = merge(&f, &file(r#"{"icc": true}"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("both as a flag and in the configuration file: icc"),
            "{e}"
        );
        assert!(merge(&NetFlags::default(), &file(r#"{"iptables": "no"}"#)).is_err());
        let f = NetFlags {
            bridge: Some("br9".into()),
            bip: Some("10.5.0.1/24".into()),
            ..Default::default()
        };
        assert!(merge(&f, &Map::new()).is_err());
    }
}
