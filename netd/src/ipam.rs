//! Address management for a network, IPv4 or IPv6: a subnet, an optional narrower range to
//! hand out from, a gateway, and the addresses in use with their owners. Every change is
//! written (atomically) before it is answered, so an address is never handed out twice,
//! across threads or daemon restarts; freed addresses are reused last (the next search starts
//! after the last address handed out), as libnetwork does, so a removed container's address
//! does not go at once to the next one.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Errors of address management; dockerd's words where it has them.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IpamError {
    #[error("invalid subnet {0}")]
    BadSubnet(String),
    #[error("no available IPv{family} addresses on this network's address pools: {subnet}")]
    Exhausted { family: u8, subnet: String },
    #[error("Address already in use")]
    InUse(IpAddr),
    #[error("Invalid address {0}: It does not belong to any of this network's subnets")]
    Outside(IpAddr),
    #[error("{0}")]
    Io(String),
}

/// An address family's address type: IPv4 or IPv6, as bits.
pub trait Family:
    Copy
    + Ord
    + std::fmt::Debug
    + std::fmt::Display
    + std::str::FromStr
    + Serialize
    + DeserializeOwned
    + Into<IpAddr>
{
    /// The address width: 32 or 128.
    const BITS: u8;
    /// 4 or 6.
    const VERSION: u8;
    fn to_bits(self) -> u128;
    fn from_bits(b: u128) -> Self;
}

impl Family for Ipv4Addr {
    const BITS: u8 = 32;
    const VERSION: u8 = 4;
    fn to_bits(self) -> u128 {
        u128::from(u32::from(self))
    }
    fn from_bits(b: u128) -> Self {
        Ipv4Addr::from(b as u32)
    }
}

impl Family for Ipv6Addr {
    const BITS: u8 = 128;
    const VERSION: u8 = 6;
    fn to_bits(self) -> u128 {
        u128::from(self)
    }
    fn from_bits(b: u128) -> Self {
        Ipv6Addr::from(b)
    }
}

/// A subnet (`172.17.0.0/16`, `fd00:1::/64`); IPv4 unless said otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Subnet<A: Family = Ipv4Addr> {
    pub addr: A,
    pub prefix: u8,
}

impl<A: Family> Subnet<A> {
    /// Parses `ADDR/LEN`; the address is masked to the network's.
    pub fn parse(s: &str) -> Result<Subnet<A>, IpamError> {
        let bad = || IpamError::BadSubnet(s.to_string());
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: A = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > A::BITS {
            return Err(bad());
        }
        let net = Subnet { addr, prefix };
        Ok(Subnet {
            addr: A::from_bits(addr.to_bits() & net.mask()),
            prefix,
        })
    }

    fn all_ones() -> u128 {
        if A::BITS == 128 {
            u128::MAX
        } else {
            (1u128 << A::BITS) - 1
        }
    }

    fn mask(&self) -> u128 {
        if self.prefix == 0 {
            0
        } else {
            (u128::MAX << (A::BITS - self.prefix)) & Self::all_ones()
        }
    }

    /// The first and last addresses of the subnet, as bits.
    pub fn bounds(&self) -> (u128, u128) {
        let first = self.addr.to_bits();
        (first, first | (!self.mask() & Self::all_ones()))
    }

    /// The subnet's first host address (the default gateway).
    pub fn first_host(&self) -> A {
        A::from_bits(self.bounds().0 + 1)
    }

    pub fn contains(&self, ip: A) -> bool {
        ip.to_bits() & self.mask() == self.addr.to_bits()
    }

    /// Whether two subnets share an address.
    pub fn overlaps(&self, other: &Subnet<A>) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

impl<A: Family> std::fmt::Display for Subnet<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(bound = "")]
struct State<A: Family> {
    subnet: Subnet<A>,
    range: Subnet<A>,
    gateway: A,
    /// Address → owner (a container's endpoint).
    allocated: BTreeMap<A, String>,
    /// Where the next search starts.
    next: u128,
}

/// The addresses of one network's subnet of one family, kept in a file.
pub struct Pool<A: Family = Ipv4Addr> {
    file: PathBuf,
    state: Mutex<State<A>>,
}

impl<A: Family> Pool<A> {
    /// Opens the pool kept at `file`, or makes it with `subnet`, `range` (default: the
    /// subnet) and `gateway` (default: the subnet's first host address).
    pub fn open(
        file: &Path,
        subnet: Subnet<A>,
        range: Option<Subnet<A>>,
        gateway: Option<A>,
    ) -> Result<Pool<A>, IpamError> {
        if let Ok(data) = std::fs::read(file) {
            let state: State<A> = serde_json::from_slice(&data)
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
        let gateway = gateway.unwrap_or(subnet.first_host());
        if !subnet.contains(gateway) {
            return Err(IpamError::Outside(gateway.into()));
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State<A>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, s: &State<A>) -> Result<(), IpamError> {
        let data = serde_json::to_vec(s).map_err(|e| IpamError::Io(e.to_string()))?;
        strata_graph::fsutil::atomic_write(&self.file, &data)
            .map_err(|e| IpamError::Io(format!("writing {}: {e}", self.file.display())))
    }

    /// The gateway's address.
    pub fn gateway(&self) -> A {
        self.lock().gateway
    }

    /// The subnet.
    pub fn subnet(&self) -> Subnet<A> {
        self.lock().subnet
    }

    /// Hands out an address to `owner`: the one asked for, or the next free one in the range
    /// (never the network's, IPv4 broadcast or gateway address).
    pub fn allocate(&self, owner: &str, want: Option<A>) -> Result<A, IpamError> {
        let mut s = self.lock();
        let (sub_first, sub_last) = s.subnet.bounds();
        let usable = |ip: u128, s: &State<A>| {
            ip != sub_first
                && (ip != sub_last || A::BITS == 128 || s.subnet.prefix >= 31)
                && ip != s.gateway.to_bits()
                && !s.allocated.contains_key(&A::from_bits(ip))
        };
        let ip = match want {
            Some(ip) => {
                if !s.subnet.contains(ip) {
                    return Err(IpamError::Outside(ip.into()));
                }
                if !usable(ip.to_bits(), &s) {
                    return Err(IpamError::InUse(ip.into()));
                }
                ip
            }
            None => {
                let (first, last) = s.range.bounds();
                let start = if (first..=last).contains(&s.next) {
                    s.next
                } else {
                    first
                };
                // From `start` to the range's end, then from its start: (a /64 is never
                // walked whole: the first free address is near).
                let found = (start..=last)
                    .chain(first..start)
                    .find(|ip| usable(*ip, &s))
                    .ok_or_else(|| IpamError::Exhausted {
                        family: A::VERSION,
                        subnet: s.subnet.to_string(),
                    })?;
                s.next = if found == last { first } else { found + 1 };
                A::from_bits(found)
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
    pub fn allocated(&self) -> BTreeMap<A, String> {
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
        assert!(Subnet::<Ipv4Addr>::parse("172.17.0.0").is_err());
        assert!(Subnet::<Ipv4Addr>::parse("172.17.0.0/33").is_err());
        assert!(Subnet::<Ipv4Addr>::parse("300.1.1.1/8").is_err());
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
            Err(IpamError::Exhausted { family: 4, .. })
        ));
        p.release("c1").unwrap();
        // A restart sees the same allocations and hands out only the freed address.
        drop(p);
        let p = Pool::open(&f, Subnet::parse("192.168.0.0/24").unwrap(), None, None).unwrap();
        assert_eq!(p.subnet().to_string(), "10.9.0.0/29", "the kept state wins");
        assert_eq!(p.allocate("c6", None).unwrap(), ip("10.9.0.3"));
        assert_eq!(
            p.allocate("c7", Some(ip("10.9.0.2"))),
            Err(IpamError::InUse(ip("10.9.0.2").into()))
        );
        assert_eq!(
            p.allocate("c7", Some(ip("10.9.0.1"))),
            Err(IpamError::InUse(ip("10.9.0.1").into())),
            "the gateway"
        );
        assert_eq!(
            p.allocate("c7", Some(ip("10.8.0.9"))),
            Err(IpamError::Outside(ip("10.8.0.9").into()))
        );
    }

    #[test]
    fn ipv6_pools_hand_out_from_the_first_host() {
        let t = tempfile::tempdir().unwrap();
        let s: Subnet<Ipv6Addr> = Subnet::parse("fd00:5::9/64").unwrap();
        assert_eq!(s.to_string(), "fd00:5::/64");
        assert!(s.contains("fd00:5::ffff:1".parse().unwrap()));
        assert!(!s.contains("fd00:6::1".parse().unwrap()));
        assert!(Subnet::<Ipv6Addr>::parse("fd00::/129").is_err());
        let f = t.path().join("p6.json");
        let p: Pool<Ipv6Addr> = Pool::open(&f, s, None, None).unwrap();
        assert_eq!(p.gateway().to_string(), "fd00:5::1");
        assert_eq!(p.allocate("a", None).unwrap().to_string(), "fd00:5::2");
        assert_eq!(p.allocate("b", None).unwrap().to_string(), "fd00:5::3");
        let want: Ipv6Addr = "fd00:5::abcd".parse().unwrap();
        assert_eq!(p.allocate("c", Some(want)).unwrap(), want);
        assert_eq!(
            p.allocate("d", Some(want)),
            Err(IpamError::InUse(want.into()))
        );
        drop(p);
        let p: Pool<Ipv6Addr> = Pool::open(&f, s, None, None).unwrap();
        assert_eq!(p.allocated().len(), 3, "kept across a restart");
        let small: Pool<Ipv6Addr> = Pool::open(
            &t.path().join("small.json"),
            Subnet::parse("fd00:7::/126").unwrap(),
            None,
            None,
        )
        .unwrap();
        // ::0 is the subnet's, ::1 the gateway; ::2 and ::3 (no broadcast in IPv6).
        assert_eq!(small.allocate("a", None).unwrap().to_string(), "fd00:7::2");
        assert_eq!(small.allocate("b", None).unwrap().to_string(), "fd00:7::3");
        assert!(matches!(
            small.allocate("c", None),
            Err(IpamError::Exhausted { family: 6, .. })
        ));
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
        let p: Pool = Pool::open(
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
