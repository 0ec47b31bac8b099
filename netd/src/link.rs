//! Links through rtnetlink: bridges, veth pairs with one end inside a container's namespace,
//! addresses and routes. Each call opens its own netlink socket on a thread of its own (in
//! the namespace it works in) with a small single-threaded runtime, so callers stay
//! synchronous and no daemon thread changes namespace.

use crate::netns;
use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Errors of link handling.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{context}: {message}")]
    Netlink { context: String, message: String },
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn nl(context: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let context = context.into();
    move |e| LinkError::Netlink {
        context,
        message: e.to_string(),
    }
}

fn exists_already(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::EEXIST)
}

/// Runs `f` with a netlink handle inside the namespace at `ns` (`None`: the caller's).
fn with_handle<T, F, Fut>(ns: Option<&Path>, f: F) -> Result<T, LinkError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, LinkError>>,
{
    netns::run_in(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|source| LinkError::Io {
                context: "starting a netlink runtime".into(),
                source,
            })?;
        rt.block_on(async move {
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|source| LinkError::Io {
                    context: "opening a netlink socket".into(),
                    source,
                })?;
            let task = tokio::spawn(conn);
            let out = f(handle).await;
            task.abort();
            out
        })
    })?
}

/// The index of the link named `name`, if there is one.
async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>, LinkError> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl(format!("looking up link {name}"))(e)),
    }
}

fn mtu_of(l: &LinkMessage) -> Option<u32> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

/// Whether a link named `name` exists in the caller's namespace.
pub fn exists(name: &str) -> Result<bool, LinkError> {
    let name = name.to_string();
    with_handle(None, move |h| async move {
        Ok(index_of(&h, &name).await?.is_some())
    })
}

/// The first IPv4 address (and prefix) of the link `name`, if it exists and has one (`-b`
/// names an existing bridge: its address is the default network's gateway and subnet).
pub fn ipv4_of(name: &str) -> Result<Option<(Ipv4Addr, u8)>, LinkError> {
    let name = name.to_string();
    with_handle(None, move |h| async move {
        let Some(idx) = index_of(&h, &name).await? else {
            return Ok(None);
        };
        Ok(global_addresses(&h, idx)
            .await?
            .into_iter()
            .find_map(|(ip, prefix, _)| match ip {
                IpAddr::V4(ip) => Some((ip, prefix)),
                IpAddr::V6(_) => None,
            }))
    })
}

/// A bridge's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    pub name: String,
    /// Its address and prefix (the network's gateway); none for an internal network without
    /// one.
    pub addr: Option<(Ipv4Addr, u8)>,
    /// Its IPv6 gateway address, on a network with IPv6.
    pub addr6: Option<(Ipv6Addr, u8)>,
    pub mtu: Option<u32>,
    /// Other (global) addresses it has are removed, so that a changed `--bip` or
    /// `--fixed-cidr-v6` replaces the old address. Never for a `-b` bridge (the host's).
    pub replace_addresses: bool,
}

/// The global addresses of link `idx` (link-local IPv6 ones left out), with their messages.
async fn global_addresses(
    h: &Handle,
    idx: u32,
) -> Result<Vec<(IpAddr, u8, rtnetlink::packet_route::address::AddressMessage)>, LinkError> {
    let mut out = Vec::new();
    let mut addrs = h.address().get().set_link_index_filter(idx).execute();
    while let Some(m) = addrs.try_next().await.map_err(nl("listing addresses"))? {
        let ip = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        });
        let link_local = matches!(ip, Some(IpAddr::V6(v)) if (v.segments()[0] & 0xffc0) == 0xfe80);
        if let (Some(ip), false) = (ip, link_local) {
            out.push((ip, m.header.prefix_len, m));
        }
    }
    Ok(out)
}

/// Adds `ip/prefix` to link `idx`; an IPv6 address skips duplicate address detection (it
/// is usable at once; the pool guarantees it unique), as dockerd adds it.
async fn add_address(h: &Handle, idx: u32, ip: IpAddr, prefix: u8) -> Result<(), rtnetlink::Error> {
    let mut req = h.address().add(idx, ip, prefix);
    if ip.is_ipv6() {
        let m = req.message_mut();
        m.header.flags |= AddressHeaderFlags::Nodad;
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    req.execute().await
}

/// Adds a default `route` via `gw`; one already there is not an error.
async fn add_route(
    h: &Handle,
    route: rtnetlink::packet_route::route::RouteMessage,
    gw: &dyn std::fmt::Display,
) -> Result<(), LinkError> {
    match h.route().add(route).execute().await {
        Err(e) if !exists_already(&e) => Err(nl(format!("adding the default route via {gw}"))(e)),
        _ => Ok(()),
    }
}

/// Makes the bridge unless it exists, gives it its address unless it has it, and brings it
/// up. Returns whether it was made here (so that a failed setup removes only what it made).
pub fn ensure_bridge(spec: &BridgeSpec) -> Result<bool, LinkError> {
    let spec = spec.clone();
    with_handle(None, move |h| async move {
        let mut made = false;
        let idx = match index_of(&h, &spec.name).await? {
            Some(i) => i,
            None => {
                let mut b = LinkBridge::new(&spec.name);
                if let Some(m) = spec.mtu {
                    b = b.mtu(m);
                }
                h.link()
                    .add(b.build())
                    .execute()
                    .await
                    .map_err(nl(format!("creating bridge {}", spec.name)))?;
                made = true;
                index_of(&h, &spec.name)
                    .await?
                    .ok_or_else(|| LinkError::Netlink {
                        context: format!("creating bridge {}", spec.name),
                        message: "it vanished".into(),
                    })?
            }
        };
        let v4 = spec.addr.map(|(ip, p)| (IpAddr::V4(ip), p));
        let v6 = spec.addr6.map(|(ip, p)| (IpAddr::V6(ip), p));
        let wanted: Vec<(IpAddr, u8)> = v4.into_iter().chain(v6).collect();
        if spec.replace_addresses {
            for (ip, prefix, m) in global_addresses(&h, idx).await? {
                if !wanted.contains(&(ip, prefix)) {
                    h.address()
                        .del(m)
                        .execute()
                        .await
                        .map_err(nl(format!("removing {ip}/{prefix} from {}", spec.name)))?;
                }
            }
        }
        for (ip, prefix) in wanted {
            if let Err(e) = add_address(&h, idx, ip, prefix).await {
                if !exists_already(&e) {
                    return Err(nl(format!("adding {ip}/{prefix} to {}", spec.name))(e));
                }
            }
        }
        bring_up(&h, idx, &spec.name).await?;
        Ok(made)
    })
}

/// Deletes the link `name` (a bridge, or a veth with its peer); a missing one is not an
/// error.
pub fn delete(name: &str) -> Result<(), LinkError> {
    delete_in(None, name)
}

/// Deletes the link `name` in the namespace at `ns` (`None`: the caller's), if it exists.
fn delete_in(ns: Option<&Path>, name: &str) -> Result<(), LinkError> {
    let name = name.to_string();
    with_handle(ns, move |h| async move {
        if let Some(idx) = index_of(&h, &name).await? {
            h.link()
                .del(idx)
                .execute()
                .await
                .map_err(nl(format!("deleting link {name}")))?;
        }
        Ok(())
    })
}

/// Brings the link `idx` up.
async fn bring_up(h: &Handle, idx: u32, what: &str) -> Result<(), LinkError> {
    h.link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(nl(format!("bringing up {what}")))
}

/// The MTU of a link, if it exists.
pub fn mtu(name: &str) -> Result<Option<u32>, LinkError> {
    let name = name.to_string();
    with_handle(None, move |h| async move {
        let mut links = h.link().get().match_name(name.clone()).execute();
        match links.try_next().await {
            Ok(l) => Ok(l.as_ref().and_then(mtu_of)),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => Ok(None),
            Err(e) => Err(nl(format!("looking up link {name}"))(e)),
        }
    })
}

/// One container interface: a veth pair with `host_name` on `bridge` and its peer named
/// `ifname` inside the namespace at `netns`.
#[derive(Debug, Clone)]
pub struct Interface {
    pub bridge: String,
    pub host_name: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// The default route's gateway; `None` for an internal network (no route out).
    pub gateway: Option<Ipv4Addr>,
    /// The IPv6 address and prefix, on a network with IPv6.
    pub ip6: Option<(Ipv6Addr, u8)>,
    /// The IPv6 default route's gateway.
    pub gateway6: Option<Ipv6Addr>,
    pub mtu: Option<u32>,
}

/// Makes the interface: the pair (its peer made inside the namespace already), the host end
/// on the bridge and up, then inside the namespace the address, `lo` and the interface up,
/// and the default route. On failure the pair is deleted again.
pub fn add_interface(i: &Interface) -> Result<(), LinkError> {
    let ns = std::fs::File::open(&i.netns).map_err(|source| LinkError::Io {
        context: format!("opening {}", i.netns.display()),
        source,
    })?;
    let outside = i.clone();
    with_handle(None, move |h| async move {
        let bridge = index_of(&h, &outside.bridge)
            .await?
            .ok_or_else(|| LinkError::Netlink {
                context: format!("attaching to bridge {}", outside.bridge),
                message: "no such bridge".into(),
            })?;
        let mut peer = LinkUnspec::new_with_name(&outside.ifname)
            .setns_by_fd(ns.as_raw_fd())
            .address(outside.mac.to_vec());
        let mut host = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(outside.host_name.clone());
        if let Some(m) = outside.mtu {
            peer = peer.mtu(m);
            host = host.mtu(m);
        }
        let msg = host
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        h.link()
            .add(msg)
            .execute()
            .await
            .map_err(nl(format!("creating veth {}", outside.host_name)))?;
        drop(ns);
        let idx = index_of(&h, &outside.host_name)
            .await?
            .ok_or_else(|| LinkError::Netlink {
                context: format!("creating veth {}", outside.host_name),
                message: "it vanished".into(),
            })?;
        h.link()
            .set(
                LinkUnspec::new_with_index(idx)
                    .controller(bridge)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(nl(format!(
                "attaching {} to {}",
                outside.host_name, outside.bridge
            )))?;
        Ok(())
    })?;
    let inside = i.clone();
    let configured = with_handle(Some(&i.netns), move |h| async move {
        if let Some(lo) = index_of(&h, "lo").await? {
            bring_up(&h, lo, "lo").await?;
        }
        let idx = index_of(&h, &inside.ifname)
            .await?
            .ok_or_else(|| LinkError::Netlink {
                context: format!("configuring {}", inside.ifname),
                message: "not in the container's namespace".into(),
            })?;
        add_address(&h, idx, IpAddr::V4(inside.ip), inside.prefix)
            .await
            .map_err(nl(format!("adding {}/{}", inside.ip, inside.prefix)))?;
        if let Some((ip6, p6)) = inside.ip6 {
            add_address(&h, idx, IpAddr::V6(ip6), p6)
                .await
                .map_err(nl(format!("adding {ip6}/{p6}")))?;
        }
        bring_up(&h, idx, &inside.ifname).await?;
        if let Some(gw) = inside.gateway6 {
            let route = RouteMessageBuilder::<Ipv6Addr>::new().gateway(gw);
            add_route(&h, route.output_interface(idx).build(), &gw).await?;
        }
        if let Some(gw) = inside.gateway {
            let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw);
            add_route(&h, route.output_interface(idx).build(), &gw).await?;
        }
        Ok(())
    });
    if let Err(e) = configured {
        let _ = delete(&i.host_name);
        return Err(e);
    }
    Ok(())
}

/// Brings up `lo` inside the namespace at `netns` (a container without other interfaces).
pub fn loopback_up(netns: &Path) -> Result<(), LinkError> {
    with_handle(Some(netns), move |h| async move {
        if let Some(lo) = index_of(&h, "lo").await? {
            bring_up(&h, lo, "lo").await?;
        }
        Ok(())
    })
}

/// Deletes the interface `ifname` inside the namespace at `netns` (its host end goes with
/// it); a missing one is not an error.
pub fn remove_interface(netns: &Path, ifname: &str) -> Result<(), LinkError> {
    delete_in(Some(netns), ifname)
}

/// dockerd's MAC for an IPv4 address: `02:42` and the address's four bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `aa:bb:...` text of a MAC.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *m = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        let m = mac_for("172.17.0.2".parse().unwrap());
        assert_eq!(mac_text(&m), "02:42:ac:11:00:02");
        assert_eq!(parse_mac("02:42:ac:11:00:02"), Some(m));
        assert_eq!(parse_mac("02:42:ac:11:00"), None);
        assert_eq!(parse_mac("02:42:ac:11:00:zz"), None);
    }

    #[test]
    fn a_bridge_and_an_interface_in_a_namespace_of_their_own() {
        // SAFETY: plain syscall.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        // Everything happens inside a scratch namespace: the host's links are not touched.
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("host");
        let ctr = t.path().join("ctr");
        netns::create(&host).unwrap();
        netns::create(&ctr).unwrap();
        let (h2, c2) = (host.clone(), ctr.clone());
        let res = netns::run_in(Some(&host), move || -> Result<String, LinkError> {
            let spec = BridgeSpec {
                name: "tbr0".into(),
                addr: Some(("10.99.0.1".parse().unwrap(), 24)),
                addr6: Some(("fd00:99::1".parse().unwrap(), 64)),
                mtu: Some(1400),
                replace_addresses: true,
            };
            assert!(ensure_bridge(&spec)?);
            assert!(!ensure_bridge(&spec)?, "second time: exists");
            assert_eq!(mtu("tbr0")?, Some(1400));
            add_interface(&Interface {
                bridge: "tbr0".into(),
                host_name: "vethtest0".into(),
                netns: c2.clone(),
                ifname: "eth0".into(),
                mac: mac_for("10.99.0.2".parse().unwrap()),
                ip: "10.99.0.2".parse().unwrap(),
                prefix: 24,
                gateway: Some("10.99.0.1".parse().unwrap()),
                ip6: Some(("fd00:99::2".parse().unwrap(), 64)),
                gateway6: Some("fd00:99::1".parse().unwrap()),
                mtu: Some(1400),
            })?;
            assert!(exists("vethtest0")?);
            let out = std::process::Command::new("nsenter")
                .arg(format!("--net={}", c2.display()))
                .args(["busybox", "ip", "addr", "show", "eth0"])
                .output()
                .map_err(|source| LinkError::Io {
                    context: "nsenter".into(),
                    source,
                })?;
            let ping = std::process::Command::new("nsenter")
                .arg(format!("--net={}", c2.display()))
                .args(["busybox", "ping", "-c1", "-W2", "10.99.0.1"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            // IPv6 without duplicate address detection: usable at once.
            let ping6 = std::process::Command::new("nsenter")
                .arg(format!("--net={}", c2.display()))
                .args(["busybox", "ping", "-c1", "-W2", "fd00:99::1"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            // A changed address replaces the old one on a bridge of ours.
            ensure_bridge(&BridgeSpec {
                addr: Some(("10.98.0.1".parse().unwrap(), 24)),
                addr6: None,
                ..spec.clone()
            })?;
            let now = std::process::Command::new("ip")
                .args(["-o", "addr", "show", "tbr0"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            assert!(
                now.contains("10.98.0.1/24")
                    && !now.contains("10.99.0.1")
                    && !now.contains("fd00:99::1"),
                "{now}"
            );
            remove_interface(&c2, "eth0")?;
            assert!(!exists("vethtest0")?, "the host end went with it");
            delete("tbr0")?;
            assert!(!exists("tbr0")?);
            let _ = &h2;
            Ok(format!(
                "{}{}{}",
                String::from_utf8_lossy(&out.stdout),
                if ping { "ping ok" } else { "" },
                if ping6 { " ping6 ok" } else { "" }
            ))
        });
        netns::remove(&ctr);
        netns::remove(&host);
        let out = res.unwrap().unwrap();
        assert!(out.contains("10.99.0.2/24"), "{out}");
        assert!(out.contains("fd00:99::2/64"), "{out}");
        let global6 = out
            .lines()
            .find(|l| l.contains("fd00:99::2/64"))
            .unwrap_or("");
        assert!(!global6.contains("tentative"), "no DAD: {out}");
        assert!(out.contains("ping ok") && out.contains("ping6 ok"), "{out}");
    }
}
