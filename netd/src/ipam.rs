//! IPv4 address management for a network: a subnet, an optional narrower range to hand out
//! from, a gateway, and the addresses in use with their owners. Every change is written
//! (atomically) before it is answered, so an address is never handed out twice, across
//! threads or daemon restarts; freed addresses are reused last (the next search starts after
//! the last address handed out), as libnetwork does, so a removed container's address does
//! not go at once to the next one.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Errors of address management; dockerd's words where it has them.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IpamError {
    #[error("invalid subnet {0}")]
    BadSubnet(String),
    #[error("no available IPv4 addresses on this network's address pools: {0}")]
    Exhausted(String),
    #[error("Address already in use")]
    InUse(Ipv4Addr),
    #[error("no configured subnet or ip-range contain the IP address {0}")]
    Outside(Ipv4Addr),
    #[error("{0}")]
    Io(String),
}

/// An IPv4 subnet (`172.17.0.0/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// Parses `a.b.c.d/n`; the address is masked to the network's.
    pub fn parse(s: &str) -> Result<Subnet, IpamError> {
        let bad = || IpamError::BadSubnet(s.to_string());
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let net = Subnet { addr, prefix };
        Ok(Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & net.mask()),
            prefix,
        })
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// The first and last addresses of the subnet.
    pub fn bounds(&self) -> (u32, u32) {
        let first = u32::from(self.addr);
        (first, first | !self.mask())
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// Whether two subnets share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct State {
    subnet: Subnet,
    range: Subnet,
    gateway: Ipv4Addr,
    /// Address → owner (a container's endpoint).
    allocated: BTreeMap<Ipv4Addr, String>,
    /// Where the next search starts.
    next: u32,
}

/// The addresses of one network, kept in a file.
pub struct Pool {
    file: PathBuf,
    state: Mutex<State>,
}

impl Pool {
    /// Opens the pool kept at `file`, or makes it with `subnet`, `range` (default: the
    /// subnet) and `gateway` (default: the subnet's first host address).
    pub fn open(
        file: &Path,
        subnet: Subnet,
        range: Option<Subnet>,
        gateway: Option<Ipv4Addr>,
    ) -> Result<Pool, IpamError> {
        if let Ok(data) = std::fs::read(file) {
            let state: State = serde_json::from_slice(&data)
                .map_err(|e| IpamError::Io(format!("reading {}: {e}", file.display())))?;
            return Ok(Pool {
                file: file.to_path_buf(),
                state: Mutex::new(state),
            });
        }
        let range = range.unwrap_or(subnet);
        if !subnet.contains(range.addr) || range.prefix < subnet.prefix {
            return Err(IpamError::BadSubnet(format!(
                "{range} (the ip-range is not inside {subnet})"
            )));
        }
        let (first, _) = subnet.bounds();
        let gateway = gateway.unwrap_or(Ipv4Addr::from(first + 1));
        if !subnet.contains(gateway) {
            return Err(IpamError::Outside(gateway));
        }
        let pool = Pool {
            file: file.to_path_buf(),
            state: Mutex::new(State {
                subnet,
                range,
                gateway,
                allocated: BTreeMap::new(),
                next: range.bounds().0,
            }),
        };
        let state = pool.lock().clone();
        pool.save(&state)?;
        Ok(pool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, s: &State) -> Result<(), IpamError> {
        let data = serde_json::to_vec(s).map_err(|e| IpamError::Io(e.to_string()))?;
        strata_graph::fsutil::atomic_write(&self.file, &data)
            .map_err(|e| IpamError::Io(format!("writing {}: {e}", self.file.display())))
    }

    /// The gateway's address.
    pub fn gateway(&self) -> Ipv4Addr {
        self.lock().gateway
    }

    /// The subnet.
    pub fn subnet(&self) -> Subnet {
        self.lock().subnet
    }

    /// Hands out an address to `owner`: the one asked for, or the next free one in the range
    /// (never the network's, broadcast or gateway address).
    pub fn allocate(&self, owner: &str, want: Option<Ipv4Addr>) -> Result<Ipv4Addr, IpamError> {
        let mut s = self.lock();
        let (sub_first, sub_last) = s.subnet.bounds();
        let usable = |ip: u32, s: &State| {
            ip != sub_first
                && (ip != sub_last || s.subnet.prefix >= 31)
                && ip != u32::from(s.gateway)
                && !s.allocated.contains_key(&Ipv4Addr::from(ip))
        };
        let ip = match want {
            Some(ip) => {
                if !s.subnet.contains(ip) {
                    return Err(IpamError::Outside(ip));
                }
                if !usable(u32::from(ip), &s) {
                    return Err(IpamError::InUse(ip));
                }
                ip
            }
            None => {
                let (first, last) = s.range.bounds();
                let size = u64::from(last - first) + 1;
                let start = if (first..=last).contains(&s.next) {
                    s.next
                } else {
                    first
                };
                let found = (0..size)
                    .map(|i| first + ((u64::from(start - first) + i) % size) as u32)
                    .find(|ip| usable(*ip, &s))
                    .ok_or_else(|| IpamError::Exhausted(s.subnet.to_string()))?;
                s.next = if found == last { first } else { found + 1 };
                Ipv4Addr::from(found)
            }
        };
        s.allocated.insert(ip, owner.to_string());
        if let Err(e) = self.save(&s) {
            s.allocated.remove(&ip);
            return Err(e);
        }
        Ok(ip)
    }

    /// Frees every address of `owner`.
    pub fn release(&self, owner: &str) -> Result<(), IpamError> {
        let mut s = self.lock();
        let before = s.allocated.len();
        s.allocated.retain(|_, o| o != owner);
        if s.allocated.len() != before {
            self.save(&s)?;
        }
        Ok(())
    }

    /// The addresses in use and their owners.
    pub fn allocated(&self) -> BTreeMap<Ipv4Addr, String> {
        self.lock().allocated.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn subnets() {
        let s = Subnet::parse("172.17.3.4/16").unwrap();
        assert_eq!(s.to_string(), "172.17.0.0/16");
        assert!(s.contains(ip("172.17.255.255")) && !s.contains(ip("172.18.0.1")));
        assert!(s.overlaps(&Subnet::parse("172.17.5.0/24").unwrap()));
        assert!(!s.overlaps(&Subnet::parse("172.18.0.0/16").unwrap()));
        assert!(Subnet::parse("172.17.0.0").is_err());
        assert!(Subnet::parse("172.17.0.0/33").is_err());
        assert!(Subnet::parse("300.1.1.1/8").is_err());
    }

    #[test]
    fn allocation_exhaustion_release_and_restart() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("pool.json");
        let p = Pool::open(&f, Subnet::parse("10.9.0.0/29").unwrap(), None, None).unwrap();
        assert_eq!(p.gateway(), ip("10.9.0.1"));
        let got: Vec<Ipv4Addr> = (0..5)
            .map(|i| p.allocate(&format!("c{i}"), None).unwrap())
            .collect();
        assert_eq!(
            got,
            ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"].map(ip)
        );
        assert!(matches!(
            p.allocate("c5", None),
            Err(IpamError::Exhausted(_))
        ));
        p.release("c1").unwrap();
        // A restart sees the same allocations and hands out only the freed address.
        drop(p);
        let p = Pool::open(&f, Subnet::parse("192.168.0.0/24").unwrap(), None, None).unwrap();
        assert_eq!(p.subnet().to_string(), "10.9.0.0/29", "the kept state wins");
        assert_eq!(p.allocate("c6", None).unwrap(), ip("10.9.0.3"));
        assert_eq!(
            p.allocate("c7", Some(ip("10.9.0.2"))),
            Err(IpamError::InUse(ip("10.9.0.2")))
        );
        assert_eq!(
            p.allocate("c7", Some(ip("10.9.0.1"))),
            Err(IpamError::InUse(ip("10.9.0.1"))),
            "the gateway"
        );
        assert_eq!(
            p.allocate("c7", Some(ip("10.8.0.9"))),
            Err(IpamError::Outside(ip("10.8.0.9")))
        );
    }

    #[test]
    fn freed_addresses_come_back_last_and_ranges_hold() {
        let t = tempfile::tempdir().unwrap();
        let p = Pool::open(
            &t.path().join("p.json"),
            Subnet::parse("10.1.0.0/16").unwrap(),
            Some(Subnet::parse("10.1.5.0/30").unwrap()),
            Some(ip("10.1.0.254")),
        )
        .unwrap();
        assert_eq!(p.allocate("a", None).unwrap(), ip("10.1.5.0"));
        p.release("a").unwrap();
        assert_eq!(
            p.allocate("b", None).unwrap(),
            ip("10.1.5.1"),
            "not the one just freed"
        );
        assert_eq!(
            p.allocate("c", Some(ip("10.1.9.9"))).unwrap(),
            ip("10.1.9.9"),
            "the subnet, outside the range"
        );
    }

    #[test]
    fn concurrent_allocations_never_collide() {
        let t = tempfile::tempdir().unwrap();
        let p = Pool::open(
            &t.path().join("p.json"),
            Subnet::parse("10.2.0.0/24").unwrap(),
            None,
            None,
        )
        .unwrap();
        let got = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for th in 0..4 {
                let (p, got) = (&p, &got);
                s.spawn(move || {
                    for i in 0..20 {
                        let a = p.allocate(&format!("t{th}-{i}"), None).unwrap();
                        got.lock().unwrap().push(a);
                    }
                });
            }
        });
        let mut v = got.into_inner().unwrap();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), 80);
        assert_eq!(p.allocated().len(), 80);
    }
}
