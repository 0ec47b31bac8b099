//! A container's `/etc/hosts` and `/etc/resolv.conf`, as dockerd writes them.

use std::net::Ipv4Addr;

/// What goes into a container's `/etc/hosts`.
pub struct HostsInput<'a> {
    pub hostname: &'a str,
    /// `--domainname`: the hostname's entry is then `host.domain host`.
    pub domainname: &'a str,
    /// Its addresses on its first network (IPv4, and IPv6 where the network has it).
    pub ips: &'a [std::net::IpAddr],
    /// `--add-host name:ip` entries.
    pub extra: &'a [(String, String)],
}

/// dockerd's hosts file: the loopback entries, the extra hosts, then the container's own.
pub fn hosts(i: &HostsInput) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (name, ip) in i.extra {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    for ip in i.ips {
        if i.domainname.is_empty() {
            s.push_str(&format!("{ip}\t{}\n", i.hostname));
        } else {
            s.push_str(&format!(
                "{ip}\t{}.{} {}\n",
                i.hostname, i.domainname, i.hostname
            ));
        }
    }
    s
}

/// Parses `--add-host` entries (`name:ip`, and `host-gateway` as the given gateway).
pub fn parse_extra_hosts(
    entries: &[String],
    host_gateway: Option<Ipv4Addr>,
) -> Result<Vec<(String, String)>, String> {
    entries
        .iter()
        .map(|e| {
            let (name, ip) = e
                .split_once(':')
                .ok_or_else(|| format!("invalid argument \"{e}\" for \"--add-host\" flag"))?;
            let ip = if ip == "host-gateway" {
                host_gateway
                    .map(|g| g.to_string())
                    .ok_or_else(|| "no host-gateway address on this network".to_string())?
            } else {
                ip.parse::<std::net::IpAddr>()
                    .map_err(|_| format!("invalid IP address in add-host: \"{ip}\""))?
                    .to_string()
            };
            Ok((name.to_string(), ip))
        })
        .collect()
}

/// The parts of a resolv.conf.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Resolv {
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl Resolv {
    /// Reads the host's (or any) resolv.conf text.
    pub fn parse(text: &str) -> Resolv {
        let mut r = Resolv::default();
        for l in text.lines() {
            let mut f = l.split_whitespace();
            match f.next() {
                Some("nameserver") => r.nameservers.extend(f.next().map(String::from)),
                Some("search") | Some("domain") => r.search = f.map(String::from).collect(),
                Some("options") => r.options.extend(f.map(String::from)),
                _ => {}
            }
        }
        r
    }

    /// As a file.
    pub fn text(&self) -> String {
        let mut s = String::new();
        if !self.search.is_empty() {
            s.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        for n in &self.nameservers {
            s.push_str(&format!("nameserver {n}\n"));
        }
        if !self.options.is_empty() {
            s.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        s
    }
}

/// A container's resolv.conf: `dns`/`search`/`options` where given (the container's, else
/// the daemon's), else the host's. The host's loopback nameservers do not work from a
/// container's own namespace and are dropped; with none left, dockerd's fallback (Google's
/// public servers). With `embedded` (a user-defined network), the nameserver is the
/// embedded server at 127.0.0.11 and the others are what it forwards to.
pub fn resolv_conf(
    host: &Resolv,
    dns: &[String],
    search: &[String],
    options: &[String],
    embedded: bool,
) -> (String, Vec<String>) {
    let mut r = host.clone();
    if !dns.is_empty() {
        r.nameservers = dns.to_vec();
    }
    if !search.is_empty() {
        r.search = search
            .iter()
            .filter(|s| s.as_str() != ".")
            .cloned()
            .collect();
    }
    if !options.is_empty() {
        r.options = options.to_vec();
    }
    let upstream = r.nameservers.clone();
    if embedded {
        r.nameservers = vec!["127.0.0.11".into()];
        if !r.options.iter().any(|o| o.starts_with("ndots:")) {
            r.options.push("ndots:0".into());
        }
    } else {
        r.nameservers.retain(|n| !is_loopback(n));
        if r.nameservers.is_empty() {
            r.nameservers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
        }
    }
    (r.text(), upstream)
}

/// Whether a nameserver address is on the loopback.
pub fn is_loopback(n: &str) -> bool {
    n.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_files() {
        let extra = parse_extra_hosts(&["db:10.0.0.9".into()], None).unwrap();
        let h = hosts(&HostsInput {
            hostname: "abc",
            domainname: "",
            ips: &["172.17.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
            extra: &extra,
        });
        assert!(h.ends_with("172.17.0.2\tabc\nfd00::2\tabc\n"), "{h}");
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.0.0.9\tdb\n"));
        assert!(parse_extra_hosts(&["nocolon".into()], None).is_err());
        assert!(parse_extra_hosts(&["x:notanip".into()], None).is_err());
        let g = parse_extra_hosts(
            &["gw:host-gateway".into()],
            Some("172.17.0.1".parse().unwrap()),
        );
        assert_eq!(g.unwrap(), [("gw".to_string(), "172.17.0.1".to_string())]);
    }

    #[test]
    fn resolv_files() {
        let host = Resolv::parse(
            "# x\nnameserver 127.0.0.53\nnameserver 10.1.1.1\nsearch corp\noptions edns0\n",
        );
        let (text, up) = resolv_conf(&host, &[], &[], &[], false);
        assert_eq!(text, "search corp\nnameserver 10.1.1.1\noptions edns0\n");
        assert_eq!(up, ["127.0.0.53", "10.1.1.1"]);
        let (text, _) = resolv_conf(
            &Resolv::parse("nameserver 127.0.0.1\n"),
            &[],
            &[],
            &[],
            false,
        );
        assert!(text.contains("nameserver 8.8.8.8"));
        let (text, up) = resolv_conf(&host, &["9.9.9.9".into()], &["a.b".into()], &[], true);
        assert_eq!(
            text,
            "search a.b\nnameserver 127.0.0.11\noptions edns0 ndots:0\n"
        );
        assert_eq!(up, ["9.9.9.9"]);
    }
}
