//! The daemon's networking: the network records, their bridges and address pools, each
//! container's sandbox (namespace, interfaces, published ports, DNS), and the firewall table
//! rebuilt from all of them. The API calls it; it calls netlink, nft and the kernel.

use crate::config::NetConfig;
use crate::firewall::{self, BridgeRules, PortRule, Proto, Ruleset};
use crate::ipam::{Family, IpamError, Pool, Subnet};
use crate::link::{self, BridgeSpec, Interface};
use crate::sandbox::{Endpoint, Port, Sandbox};
use crate::store::{IpamConfig, Network, NetworkError, NetworkStore, BRIDGE_NAME};
use crate::{dns, etc, netns, proxy};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Errors of network operations, each with its dockerd status class.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Store(#[from] NetworkError),
    #[error("{0}")]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Link(#[from] link::LinkError),
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error(transparent)]
    Firewall(#[from] firewall::FirewallError),
    /// `--ipv6` without an IPv6 subnet (dockerd's words and status, 404).
    #[error("could not find an available, non-overlapping IPv6 address pool among the defaults to assign to the network")]
    NoIpv6Pool,
    /// A MAC address that is not one (dockerd's words).
    #[error("address {0}: invalid MAC address")]
    BadMac(String),
    /// A port taken on the host (dockerd's words).
    #[error("driver failed programming external connectivity on endpoint {endpoint}: Bind for {addr} failed: port is already allocated")]
    PortTaken { endpoint: String, addr: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// One network a container asks to be on.
#[derive(Debug, Clone, Default)]
pub struct EndpointRequest {
    /// Name or ID.
    pub network: String,
    pub ip: Option<Ipv4Addr>,
    pub ip6: Option<Ipv6Addr>,
    pub aliases: Vec<String>,
    pub mac: Option<String>,
}

/// One port a container asks to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRequest {
    pub proto: Proto,
    pub container_port: u16,
    pub host_ip: Option<IpAddr>,
    /// `None`: an ephemeral port.
    pub host_port: Option<u16>,
    /// With `host_port`, a range (`8000-8010`): the first free port of it is taken.
    pub host_port_last: Option<u16>,
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NetworkSpec {
    pub name: String,
    /// Only `bridge`.
    pub driver: String,
    /// At most one IPv4 pool; none: a free default pool.
    pub ipam: Vec<IpamConfig>,
    pub internal: bool,
    pub enable_ipv6: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// What a container starts with.
#[derive(Debug, Clone, Default)]
pub struct SandboxRequest {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub domainname: String,
    pub endpoints: Vec<EndpointRequest>,
    pub ports: Vec<PortRequest>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_opt: Vec<String>,
    pub extra_hosts: Vec<String>,
}

/// A set-up sandbox: the namespace to run in and the `/etc` files to give it.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub netns: PathBuf,
    pub hosts: String,
    pub resolv: String,
}

/// What lives in the daemon for a running sandbox: proxies, the DNS server, port
/// reservations.
#[derive(Default)]
struct Live {
    tasks: Vec<JoinHandle<()>>,
    /// Sockets that only hold ports (no proxy).
    held: Vec<socket2::Socket>,
}

impl Drop for Live {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The daemon's networking.
pub struct Manager {
    dir: PathBuf,
    netns_dir: PathBuf,
    cfg: RwLock<NetConfig>,
    store: RwLock<NetworkStore>,
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    pools6: Mutex<HashMap<String, Arc<Pool<Ipv6Addr>>>>,
    /// Shared with the DNS servers, which look names up in it.
    sandboxes: Arc<Mutex<BTreeMap<String, Sandbox>>>,
    live: Mutex<HashMap<String, Live>>,
    /// The ruleset last written (none yet at start): an unchanged one is not written again,
    /// so containers without published ports cost no `nft` run.
    firewall: Mutex<Option<String>>,
    rt: Handle,
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let context = context.into();
    move |source| NetError::Io { context, source }
}

/// Opens (or makes) the address pool kept at `file` for the IPAM entry `c`.
fn open_pool<A: Family>(file: &Path, c: &IpamConfig) -> Result<Pool<A>, NetError> {
    let subnet = Subnet::parse(&c.subnet)?;
    let range = (!c.ip_range.is_empty())
        .then(|| Subnet::parse(&c.ip_range))
        .transpose()?;
    let gw = (!c.gateway.is_empty())
        .then(|| c.gateway.parse::<A>())
        .transpose()
        .map_err(|_| NetError::Invalid(format!("invalid gateway {}", c.gateway)))?;
    if let Some(d) = file.parent() {
        std::fs::create_dir_all(d).map_err(io_ctx(format!("creating {}", d.display())))?;
    }
    Ok(Pool::open(file, subnet, range, gw)?)
}

/// Removes the pool file at `file` unless it holds the pool of `c`'s subnet and gateway
/// (`None`: the network has no such pool).
fn drop_stale_pool<A: Family>(file: &Path, c: Option<&IpamConfig>) {
    let keep = c.is_some_and(|c| {
        let gateway = c.gateway.parse::<A>().ok();
        open_pool::<A>(file, c).is_ok_and(|p| {
            Subnet::parse(&c.subnet).ok() == Some(p.subnet())
                && gateway.is_none_or(|g| g == p.gateway())
        })
    });
    if !keep {
        let _ = std::fs::remove_file(file);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The subnets of the host's routes (other than the default route and our own bridges).
fn host_routes(skip: &[String]) -> Vec<Subnet> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 || skip.iter().any(|s| s == f[0]) {
                return None;
            }
            let dest = u32::from_str_radix(f[1], 16).ok()?;
            let mask = u32::from_str_radix(f[7], 16).ok()?;
            if mask == 0 {
                return None;
            }
            Some(Subnet {
                addr: Ipv4Addr::from(u32::from_be(dest)),
                prefix: u32::from_be(mask).count_ones() as u8,
            })
        })
        .collect()
}

/// dockerd's default pools: 172.17-31.0.0/16, then 192.168.0-240.0/20.
fn candidates() -> impl Iterator<Item = Subnet> {
    (17..=31u8)
        .map(|b| Subnet {
            addr: Ipv4Addr::new(172, b, 0, 0),
            prefix: 16,
        })
        .chain((0..16u8).map(|i| Subnet {
            addr: Ipv4Addr::new(192, 168, i * 16, 0),
            prefix: 20,
        }))
}

fn random_veth() -> String {
    format!("veth{}", &strata_graph::fsutil::random_id(8)[..7])
}

impl Manager {
    /// Opens the networking of a data root (`dir`: `<data-root>/network`) with namespace
    /// files under `netns_dir`, sets up the default bridge as `cfg` says, and reads the
    /// sandboxes of the last run (see [`Manager::restore`]).
    pub fn open(
        dir: &Path,
        netns_dir: &Path,
        cfg: NetConfig,
        rt: Handle,
    ) -> Result<Manager, NetError> {
        let store = NetworkStore::open(dir)?;
        let sb_dir = dir.join("sandboxes");
        std::fs::create_dir_all(&sb_dir)
            .map_err(io_ctx(format!("creating {}", sb_dir.display())))?;
        let mut sandboxes = BTreeMap::new();
        for e in std::fs::read_dir(&sb_dir)
            .map_err(io_ctx("reading the sandboxes"))?
            .flatten()
        {
            match std::fs::read(e.path()).map(|d| serde_json::from_slice::<Sandbox>(&d)) {
                Ok(Ok(s)) => {
                    sandboxes.insert(s.id.clone(), s);
                }
                other => {
                    tracing::warn!(path = %e.path().display(), "unreadable sandbox record: {other:?}")
                }
            }
        }
        let m = Manager {
            pools6: Mutex::new(HashMap::new()),
            dir: dir.to_path_buf(),
            netns_dir: netns_dir.to_path_buf(),
            cfg: RwLock::new(cfg),
            store: RwLock::new(store),
            pools: Mutex::new(HashMap::new()),
            sandboxes: Arc::new(Mutex::new(sandboxes)),
            live: Mutex::new(HashMap::new()),
            firewall: Mutex::new(None),
            rt,
        };
        m.setup_default_bridge()?;
        // User-defined bridges come back after a host reboot.
        for n in m.networks() {
            if n.predefined() {
                continue;
            }
            if let Err(e) = m.ensure_link(&n, false) {
                tracing::warn!(network = %n.name, "bringing up its bridge: {e}");
            }
        }
        Ok(m)
    }

    /// The daemon's network settings.
    pub fn config(&self) -> NetConfig {
        self.cfg.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every network.
    pub fn networks(&self) -> Vec<Network> {
        self.store.read().unwrap_or_else(|p| p.into_inner()).list()
    }

    /// A network by name, ID or ID prefix.
    pub fn network(&self, key: &str) -> Result<Network, NetError> {
        Ok(self
            .store
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)?)
    }

    fn setup_default_bridge(&self) -> Result<(), NetError> {
        let cfg = self.config();
        if !cfg.has_bridge() {
            self.store
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .set_default_bridge(None)?;
            return Ok(());
        }
        if cfg.ip_forward {
            if let Err(e) = firewall::sysctl("net/ipv4/ip_forward", "1") {
                tracing::warn!("enabling IPv4 forwarding: {e}");
            }
        }
        let existing = if cfg.bridge != "strata0" {
            link::ipv4_of(&cfg.bridge)?
        } else {
            None
        };
        let (gateway, subnet) = match (&cfg.bip, existing) {
            (Some(bip), _) => {
                let (ip, _) = bip.split_once('/').ok_or_else(|| {
                    NetError::Invalid(format!("invalid --bip {bip}: want ADDRESS/PREFIX"))
                })?;
                let ip: Ipv4Addr = ip
                    .parse()
                    .map_err(|_| NetError::Invalid(format!("invalid --bip {bip}")))?;
                (
                    ip,
                    Subnet::parse(bip)
                        .map_err(|_| NetError::Invalid(format!("invalid --bip {bip}")))?,
                )
            }
            (None, Some((ip, prefix))) => {
                // An existing bridge named with -b: its own address, as dockerd takes it.
                (ip, Subnet::parse(&format!("{ip}/{prefix}"))?)
            }
            (None, None) => {
                // The subnet it had, if any, else the first default pool free on this host.
                let old = self
                    .network("bridge")
                    .ok()
                    .and_then(|n| n.ipam_v4().cloned())
                    .and_then(|c| Some((c.gateway.parse().ok()?, Subnet::parse(&c.subnet).ok()?)));
                match old {
                    Some(o) => o,
                    None => {
                        let subnet = self
                            .free_pool(std::slice::from_ref(&cfg.bridge))
                            .ok_or_else(|| {
                                NetError::Invalid(
                                    "no free address pool for the default bridge".into(),
                                )
                            })?;
                        (subnet.first_host(), subnet)
                    }
                }
            }
        };
        let range = match &cfg.fixed_cidr {
            Some(c) => {
                let r = Subnet::parse(c)
                    .map_err(|_| NetError::Invalid(format!("invalid --fixed-cidr {c}")))?;
                if !subnet.contains(r.addr) || r.prefix < subnet.prefix {
                    return Err(NetError::Invalid(format!(
                        "--fixed-cidr {c} is not inside {subnet}"
                    )));
                }
                Some(r)
            }
            None => None,
        };
        let v6 = match (&cfg.fixed_cidr_v6, cfg.ipv6) {
            (Some(c), true) => {
                let s: Subnet<Ipv6Addr> = Subnet::parse(c)
                    .map_err(|_| NetError::Invalid(format!("invalid --fixed-cidr-v6 {c}")))?;
                Some(IpamConfig {
                    subnet: s.to_string(),
                    gateway: s.first_host().to_string(),
                    ip_range: String::new(),
                    aux: BTreeMap::new(),
                })
            }
            _ => None,
        };
        if cfg.ipv6 && cfg.ip_forward {
            if let Err(e) = firewall::sysctl("net/ipv6/conf/all/forwarding", "1") {
                tracing::warn!("enabling IPv6 forwarding: {e}");
            }
        }
        let mut options = BTreeMap::new();
        options.insert(
            "com.docker.network.bridge.default_bridge".into(),
            "true".into(),
        );
        options.insert(
            "com.docker.network.bridge.enable_icc".into(),
            cfg.icc.to_string(),
        );
        options.insert(
            "com.docker.network.bridge.enable_ip_masquerade".into(),
            cfg.ip_masq.to_string(),
        );
        options.insert(
            "com.docker.network.bridge.host_binding_ipv4".into(),
            cfg.ip.to_string(),
        );
        options.insert(BRIDGE_NAME.into(), cfg.bridge.clone());
        options.insert(
            "com.docker.network.driver.mtu".into(),
            cfg.mtu.unwrap_or(1500).to_string(),
        );
        let net = Network {
            id: strata_graph::fsutil::random_id(32),
            name: "bridge".into(),
            driver: "bridge".into(),
            created: strata_graph::time::rfc3339_now(),
            labels: BTreeMap::new(),
            options,
            ipam: std::iter::once(IpamConfig {
                subnet: subnet.to_string(),
                gateway: gateway.to_string(),
                ip_range: range.map(|r| r.to_string()).unwrap_or_default(),
                aux: BTreeMap::new(),
            })
            .chain(v6.clone())
            .collect(),
            internal: false,
            enable_ipv6: cfg.ipv6,
            attachable: false,
        };
        self.store
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .set_default_bridge(Some(net))?;
        let net = self.network("bridge")?;
        // A changed subnet starts its pool anew.
        drop_stale_pool::<Ipv4Addr>(&self.pool_file(&net.id), net.ipam_v4());
        drop_stale_pool::<Ipv6Addr>(&self.pool6_file(&net.id), net.ipam_v6());
        lock(&self.pools).remove(&net.id);
        lock(&self.pools6).remove(&net.id);
        if cfg.bridge != "strata0" && !link::exists(&cfg.bridge)? {
            return Err(NetError::Invalid(format!(
                "bridge device with non default name {} must be created manually",
                cfg.bridge
            )));
        }
        // A `-b` bridge is the host's: its other addresses stay.
        self.ensure_link(&net, cfg.bridge == "strata0")?;
        if !cfg.userland_proxy {
            let _ = firewall::sysctl(&format!("net/ipv4/conf/{}/route_localnet", cfg.bridge), "1");
        }
        if !cfg.icc {
            let _ = firewall::sysctl("net/bridge/bridge-nf-call-iptables", "1");
        }
        Ok(())
    }

    fn pool_file(&self, net_id: &str) -> PathBuf {
        self.dir.join("ipam").join(format!("{net_id}.json"))
    }

    /// The address pool of a bridge network.
    fn pool(&self, n: &Network) -> Result<Arc<Pool>, NetError> {
        // Opened under the lock: two starts at once must share one pool, or each would
        // hand out addresses from a state of its own.
        let mut pools = lock(&self.pools);
        if let Some(p) = pools.get(&n.id) {
            return Ok(p.clone());
        }
        let c = n
            .ipam_v4()
            .ok_or_else(|| NetError::Invalid(format!("network {} has no address pool", n.name)))?;
        let p = Arc::new(open_pool(&self.pool_file(&n.id), c)?);
        pools.insert(n.id.clone(), p.clone());
        Ok(p)
    }

    fn pool6_file(&self, net_id: &str) -> PathBuf {
        self.dir.join("ipam").join(format!("{net_id}-v6.json"))
    }

    /// The IPv6 address pool of a bridge network with IPv6 and an IPv6 subnet.
    fn pool6(&self, n: &Network) -> Result<Option<Arc<Pool<Ipv6Addr>>>, NetError> {
        let Some(c) = n.ipam_v6() else {
            return Ok(None);
        };
        let mut pools = lock(&self.pools6);
        if let Some(p) = pools.get(&n.id) {
            return Ok(Some(p.clone()));
        }
        let p = Arc::new(open_pool(&self.pool6_file(&n.id), c)?);
        pools.insert(n.id.clone(), p.clone());
        Ok(Some(p))
    }

    /// Frees `id`'s addresses on network `n`, both families.
    fn release_on(&self, n: &Network, id: &str) -> Result<(), NetError> {
        self.pool(n)?.release(id)?;
        if let Some(p) = self.pool6(n)? {
            p.release(id)?;
        }
        Ok(())
    }

    /// Makes (or brings up) a bridge network's link with its gateway address. `replace`:
    /// other addresses it has go (the default bridge at start, after a changed `--bip` or
    /// `--fixed-cidr-v6`; a network's own addresses never change after that).
    fn ensure_link(&self, n: &Network, replace: bool) -> Result<(), NetError> {
        let Some(name) = n.bridge_name() else {
            return Ok(());
        };
        let addr = n.ipam_v4().and_then(|c| {
            let gw: Ipv4Addr = c.gateway.parse().ok()?;
            Some((gw, Subnet::<Ipv4Addr>::parse(&c.subnet).ok()?.prefix))
        });
        let addr6 = n.ipam_v6().and_then(|c| {
            let s: Subnet<Ipv6Addr> = Subnet::parse(&c.subnet).ok()?;
            let gw = match c.gateway.as_str() {
                "" => s.first_host(),
                g => g.parse().ok()?,
            };
            Some((gw, s.prefix))
        });
        let mtu = n
            .options
            .get("com.docker.network.driver.mtu")
            .and_then(|m| m.parse().ok())
            .filter(|m| *m != 1500);
        link::ensure_bridge(&BridgeSpec {
            name,
            addr,
            addr6,
            mtu,
            replace_addresses: replace,
        })?;
        Ok(())
    }

    /// The first default pool that overlaps neither a network nor a host route (other than
    /// the routes of the links in `skip`: our own bridges).
    fn free_pool(&self, skip: &[String]) -> Option<Subnet> {
        let taken = host_routes(skip);
        candidates().find(|c| !taken.iter().any(|t| t.overlaps(c)) && !self.overlaps_any(c))
    }

    /// Whether `s` overlaps a pool of its family of any network.
    fn overlaps_any<A: Family>(&self, s: &Subnet<A>) -> bool {
        self.networks().iter().any(|n| {
            n.ipam
                .iter()
                .filter_map(|c| Subnet::<A>::parse(&c.subnet).ok())
                .any(|o| o.overlaps(s))
        })
    }

    /// `network create`: checks, makes the bridge, keeps the record.
    pub fn create_network(&self, spec: NetworkSpec) -> Result<Network, NetError> {
        let NetworkSpec {
            name,
            driver,
            ipam,
            internal,
            enable_ipv6,
            attachable,
            labels,
            options,
        } = spec;
        let (name, driver) = (name.as_str(), driver.as_str());
        if driver != "bridge" {
            return Err(NetError::Invalid(format!(
                "plugin \"{driver}\" not found (Strata has the bridge driver only)"
            )));
        }
        if self.network(name).is_ok_and(|n| n.name == name) {
            return Err(NetworkError::NameTaken(name.to_string()).into());
        }
        let (v6, v4): (Vec<IpamConfig>, Vec<IpamConfig>) =
            ipam.into_iter().partition(|c| c.subnet.contains(':'));
        if v4.len() > 1 || v6.len() > 1 {
            return Err(NetError::Invalid(
                "only one IPv4 and one IPv6 address pool per network are supported".into(),
            ));
        }
        let v6 = match v6.into_iter().next() {
            Some(c) => Some(self.check_v6_pool(c)?),
            None if enable_ipv6 => return Err(NetError::NoIpv6Pool),
            None => None,
        };
        let mut config = v4.into_iter().next().unwrap_or_default();
        let subnet = if config.subnet.is_empty() {
            let bridges: Vec<String> = self
                .networks()
                .iter()
                .filter_map(|n| n.bridge_name())
                .collect();
            let s = self.free_pool(&bridges).ok_or_else(|| NetError::Invalid("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into()))?;
            config.subnet = s.to_string();
            s
        } else {
            let s = Subnet::parse(&config.subnet).map_err(|_| {
                NetError::Invalid(format!("invalid CIDR address: {}", config.subnet))
            })?;
            if self.overlaps_any(&s) {
                return Err(NetworkError::Forbidden(
                    "Pool overlaps with other one on this address space".into(),
                )
                .into());
            }
            config.subnet = s.to_string();
            s
        };
        if !config.ip_range.is_empty() {
            let r = Subnet::parse(&config.ip_range).map_err(|_| {
                NetError::Invalid(format!("invalid CIDR address: {}", config.ip_range))
            })?;
            if !subnet.contains(r.addr) || r.prefix < subnet.prefix {
                return Err(NetError::Invalid(format!(
                    "ip-range {} is not inside subnet {subnet}",
                    config.ip_range
                )));
            }
        }
        if config.gateway.is_empty() {
            config.gateway = subnet.first_host().to_string();
        } else {
            let gw: Ipv4Addr = config.gateway.parse().map_err(|_| {
                NetError::Invalid(format!("invalid gateway address {}", config.gateway))
            })?;
            if !subnet.contains(gw) {
                return Err(NetError::Invalid(format!(
                    "no matching subnet for gateway {gw}"
                )));
            }
        }
        let n = Network {
            id: strata_graph::fsutil::random_id(32),
            name: name.to_string(),
            driver: driver.to_string(),
            created: strata_graph::time::rfc3339_now(),
            labels,
            options,
            ipam: std::iter::once(config).chain(v6).collect(),
            internal,
            enable_ipv6,
            attachable,
        };
        if let Some(b) = n.bridge_name() {
            if b.len() > 15 {
                return Err(NetError::Invalid(format!(
                    "bridge name {b} is longer than 15 characters"
                )));
            }
            if self
                .networks()
                .iter()
                .any(|o| o.bridge_name().as_deref() == Some(&b))
            {
                return Err(NetworkError::Forbidden(format!(
                    "bridge name {b} is already in use by another network"
                ))
                .into());
            }
        }
        self.ensure_link(&n, false)?;
        if let Err(e) = self
            .store
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .add(n.clone())
        {
            if let Some(b) = n.bridge_name() {
                let _ = link::delete(&b);
            }
            return Err(e.into());
        }
        if let Err(e) = self.reserve_aux(&n) {
            let _ = self.remove_network(&n.id);
            return Err(e);
        }
        self.rebuild_firewall();
        Ok(n)
    }

    /// Keeps a new network's auxiliary addresses (`--aux-address`) from containers: each is
    /// allocated in its pool to `aux:NAME`. One outside its subnet, or the gateway, is an error.
    fn reserve_aux(&self, n: &Network) -> Result<(), NetError> {
        for c in &n.ipam {
            for (name, ip) in &c.aux {
                let owner = format!("aux:{name}");
                let bad = || NetError::Invalid(format!("invalid auxiliary address {name}={ip}"));
                if c.subnet.contains(':') {
                    let ip: Ipv6Addr = ip.parse().map_err(|_| bad())?;
                    // Without --ipv6 the IPv6 pool is not used: nothing to keep.
                    if let Some(p) = self.pool6(n)? {
                        p.allocate(&owner, Some(ip))?;
                    }
                } else {
                    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
                    self.pool(n)?.allocate(&owner, Some(ip))?;
                }
            }
        }
        Ok(())
    }

    /// An IPv6 pool of `network create`, checked (a subnet, not overlapping another
    /// network's; a range and gateway inside it) and completed with its default gateway.
    fn check_v6_pool(&self, mut c: IpamConfig) -> Result<IpamConfig, NetError> {
        let bad = |what: &str| NetError::Invalid(format!("invalid CIDR address: {what}"));
        let s: Subnet<Ipv6Addr> = Subnet::parse(&c.subnet).map_err(|_| bad(&c.subnet))?;
        if self.overlaps_any(&s) {
            return Err(NetworkError::Forbidden(
                "Pool overlaps with other one on this address space".into(),
            )
            .into());
        }
        if !c.ip_range.is_empty() {
            let r: Subnet<Ipv6Addr> = Subnet::parse(&c.ip_range).map_err(|_| bad(&c.ip_range))?;
            if !s.contains(r.addr) || r.prefix < s.prefix {
                return Err(NetError::Invalid(format!(
                    "ip-range {} is not inside subnet {s}",
                    c.ip_range
                )));
            }
        }
        if c.gateway.is_empty() {
            c.gateway = s.first_host().to_string();
        } else {
            let gw: Ipv6Addr = c
                .gateway
                .parse()
                .map_err(|_| NetError::Invalid(format!("invalid gateway address {}", c.gateway)))?;
            if !s.contains(gw) {
                return Err(NetError::Invalid(format!(
                    "no matching subnet for gateway {gw}"
                )));
            }
        }
        c.subnet = s.to_string();
        Ok(c)
    }

    /// `network rm`: refused while a running container is on it.
    pub fn remove_network(&self, key: &str) -> Result<Network, NetError> {
        let n = self.network(key)?;
        if n.predefined() {
            return Err(NetworkError::Predefined(n.name).into());
        }
        if self
            .endpoints_on(&n.id)
            .into_iter()
            .any(|(_, _, running)| running)
        {
            return Err(NetworkError::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            ))
            .into());
        }
        let n = self
            .store
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&n.id)?;
        // Stopped containers' addresses on it go with it.
        let mut sbs = lock(&self.sandboxes);
        for s in sbs.values_mut() {
            let before = s.endpoints.len();
            s.endpoints.retain(|e| e.network_id != n.id);
            if s.endpoints.len() != before {
                let _ = self.save(s);
            }
        }
        drop(sbs);
        lock(&self.pools).remove(&n.id);
        lock(&self.pools6).remove(&n.id);
        let _ = std::fs::remove_file(self.pool_file(&n.id));
        let _ = std::fs::remove_file(self.pool6_file(&n.id));
        if let Some(b) = n.bridge_name() {
            link::delete(&b)?;
        }
        self.rebuild_firewall();
        Ok(n)
    }

    /// The endpoints on a network: (container ID, endpoint, running).
    pub fn endpoints_on(&self, net_id: &str) -> Vec<(String, Endpoint, bool)> {
        lock(&self.sandboxes)
            .values()
            .flat_map(|s| {
                s.endpoints
                    .iter()
                    .filter(|e| e.network_id == net_id)
                    .map(|e| (s.id.clone(), e.clone(), s.running))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A container's sandbox record, if it has one.
    pub fn sandbox(&self, id: &str) -> Option<Sandbox> {
        lock(&self.sandboxes).get(id).cloned()
    }

    fn sandbox_file(&self, id: &str) -> PathBuf {
        self.dir.join("sandboxes").join(format!("{id}.json"))
    }

    fn save(&self, s: &Sandbox) -> Result<(), NetError> {
        let data = serde_json::to_vec(s)
            .map_err(|e| io_ctx("encoding a sandbox")(std::io::Error::other(e)))?;
        strata_graph::fsutil::atomic_write(&self.sandbox_file(&s.id), &data)
            .map_err(io_ctx("writing a sandbox record"))
    }

    /// The endpoint of `req` for container `id`: its address kept from before if it still
    /// fits, else a new one.
    fn endpoint_for(
        &self,
        id: &str,
        req: &EndpointRequest,
        old: Option<&Endpoint>,
        ifname: String,
    ) -> Result<Endpoint, NetError> {
        let n = self.network(&req.network)?;
        if n.driver != "bridge" {
            return Err(NetError::Invalid(format!(
                "container cannot be connected to network {} (driver {})",
                n.name, n.driver
            )));
        }
        if (req.ip.is_some() || req.ip6.is_some()) && n.predefined() {
            return Err(NetError::Invalid(
                "user specified IP address is supported on user defined networks only".into(),
            ));
        }
        if !req.aliases.is_empty() && n.predefined() {
            return Err(NetError::Invalid(
                "network-scoped alias is supported only for containers in user defined networks"
                    .into(),
            ));
        }
        if let Some(m) = &req.mac {
            if link::parse_mac(m).is_none() {
                return Err(NetError::BadMac(m.clone()));
            }
        }
        let pool = self.pool(&n)?;
        let ip = match old
            .filter(|o| o.network_id == n.id && (req.ip.is_none() || req.ip == Some(o.ip)))
        {
            Some(o) if pool.allocated().get(&o.ip).map(String::as_str) == Some(id) => o.ip,
            _ => {
                pool.release(id)?;
                pool.allocate(id, req.ip)?
            }
        };
        let pool6 = self.pool6(&n)?;
        let ip6 = match &pool6 {
            Some(p6) => Some(
                match old.and_then(|o| o.ip6.filter(|_| o.network_id == n.id)).filter(|o6| {
                    (req.ip6.is_none() || req.ip6 == Some(*o6))
                        && p6.allocated().get(o6).map(String::as_str) == Some(id)
                }) {
                    Some(o6) => o6,
                    None => {
                        p6.release(id)?;
                        p6.allocate(id, req.ip6)?
                    }
                },
            ),
            None if req.ip6.is_some() => {
                return Err(NetError::Invalid(format!(
                    "network {} has no IPv6 address pool: --ip6 needs a network created with --ipv6 and an IPv6 subnet",
                    n.name
                )))
            }
            None => None,
        };
        let subnet = pool.subnet();
        let cfg = self.config();
        let gateway = if n.internal {
            None
        } else if n.name == "bridge" {
            Some(cfg.default_gateway.unwrap_or(pool.gateway()))
        } else {
            Some(pool.gateway())
        };
        let mac = match &req.mac {
            Some(m) => m.to_ascii_lowercase(),
            None => link::mac_text(&link::mac_for(ip)),
        };
        Ok(Endpoint {
            network_id: n.id.clone(),
            network: n.name.clone(),
            endpoint_id: old
                .filter(|o| o.network_id == n.id)
                .map(|o| o.endpoint_id.clone())
                .unwrap_or_else(|| strata_graph::fsutil::random_id(32)),
            ip,
            prefix: subnet.prefix,
            gateway,
            mac,
            requested_ip: req.ip,
            ip6,
            prefix6: pool6.as_ref().map(|p| p.subnet().prefix).unwrap_or(0),
            gateway6: pool6
                .as_ref()
                .filter(|_| !n.internal && ip6.is_some())
                .map(|p| p.gateway()),
            requested_ip6: req.ip6,
            aliases: req.aliases.clone(),
            ifname,
            host_ifname: random_veth(),
            bridge: n.bridge_name().unwrap_or_default(),
            user_defined: !n.predefined(),
        })
    }

    fn interface(&self, sb: &Sandbox, e: &Endpoint) -> Interface {
        let mtu = self.network(&e.network_id).ok().and_then(|n| {
            n.options
                .get("com.docker.network.driver.mtu")
                .and_then(|m| m.parse().ok())
        });
        Interface {
            bridge: e.bridge.clone(),
            host_name: e.host_ifname.clone(),
            netns: sb.netns.clone(),
            ifname: e.ifname.clone(),
            mac: link::parse_mac(&e.mac).unwrap_or_else(|| link::mac_for(e.ip)),
            ip: e.ip,
            prefix: e.prefix,
            gateway: if e.ifname == "eth0" { e.gateway } else { None },
            ip6: e.ip6.map(|ip| (ip, e.prefix6)),
            gateway6: if e.ifname == "eth0" { e.gateway6 } else { None },
            mtu: mtu.filter(|m| *m != 1500),
        }
    }

    /// Sets up a container's networking before it starts: addresses, namespace, interfaces,
    /// ports, rules, DNS, and its `/etc` files. On failure nothing of it is left running
    /// (addresses stay the container's until it is removed).
    pub fn setup(&self, req: &SandboxRequest) -> Result<Prepared, NetError> {
        let old = self.sandbox(&req.id);
        if old.as_ref().is_some_and(|o| o.running) {
            self.teardown(&req.id);
        }
        let netns_path = self.netns_dir.join(&req.id);
        let mut sb = Sandbox {
            id: req.id.clone(),
            name: req.name.clone(),
            hostname: req.hostname.clone(),
            netns: netns_path.clone(),
            endpoints: Vec::new(),
            ports: Vec::new(),
            upstream_dns: Vec::new(),
            running: false,
        };
        for r in &req.endpoints {
            let net = self.network(&r.network)?;
            if sb.endpoints.iter().any(|e| e.network_id == net.id) {
                continue;
            }
            let prev = old
                .as_ref()
                .and_then(|o| o.endpoints.iter().find(|e| e.network_id == net.id));
            let e = self.endpoint_for(&req.id, r, prev, sb.next_ifname())?;
            sb.endpoints.push(e);
        }
        // Addresses it no longer asks for are freed.
        if let Some(o) = &old {
            for e in &o.endpoints {
                if !sb.endpoints.iter().any(|x| x.network_id == e.network_id) {
                    if let Ok(n) = self.network(&e.network_id) {
                        let _ = self.release_on(&n, &req.id);
                    }
                }
            }
        }
        self.save(&sb)?;
        netns::create(&netns_path)?;
        let undo = |e: NetError| {
            for ep in &sb.endpoints {
                let _ = link::delete(&ep.host_ifname);
            }
            netns::remove(&netns_path);
            e
        };
        if sb.endpoints.is_empty() {
            link::loopback_up(&netns_path).map_err(|e| undo(e.into()))?;
        }
        for e in &sb.endpoints {
            if let Ok(n) = self.network(&e.network_id) {
                self.ensure_link(&n, false).map_err(&undo)?;
            }
            link::add_interface(&self.interface(&sb, e)).map_err(|e| undo(e.into()))?;
        }
        let cfg = self.config();
        let mut live = Live::default();
        if let Some(primary) = sb.primary().cloned() {
            for p in &req.ports {
                let port = self
                    .publish(&cfg, p, &primary, &sb, &mut live)
                    .map_err(&undo)?;
                sb.ports.push(port);
                // No host address asked for: `[::]` gets the same port too, as dockerd
                // binds it, where the host has IPv6.
                if p.host_ip.is_none() && cfg.ip.is_unspecified() && cfg.userland_proxy {
                    let v6 = PortRequest {
                        host_ip: Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
                        host_port: Some(port.host_port),
                        host_port_last: None,
                        ..*p
                    };
                    match self.publish(&cfg, &v6, &primary, &sb, &mut live) {
                        Ok(port6) => sb.ports.push(port6),
                        Err(e) => {
                            tracing::debug!("no [::] binding for port {}: {e}", port.host_port)
                        }
                    }
                }
            }
        }
        let host =
            etc::Resolv::parse(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
        // The container's own --dns* settings, else the daemon's.
        let own_or_daemon =
            |own: &[String], daemon: &[String]| if own.is_empty() { daemon } else { own }.to_vec();
        let dns = own_or_daemon(&req.dns, &cfg.dns);
        let search = own_or_daemon(&req.dns_search, &cfg.dns_search);
        let opts = own_or_daemon(&req.dns_opt, &cfg.dns_opt);
        let embedded = sb.endpoints.iter().any(|e| e.user_defined);
        let (resolv, upstream) = etc::resolv_conf(&host, &dns, &search, &opts, embedded);
        sb.upstream_dns = upstream;
        if embedded {
            live.tasks.push(self.start_dns(&sb).map_err(&undo)?);
        }
        let gw = sb.primary().and_then(|e| e.gateway);
        let extra =
            etc::parse_extra_hosts(&req.extra_hosts, gw).map_err(|e| undo(NetError::Invalid(e)))?;
        let own = sb.primary().map(Endpoint::addresses).unwrap_or_default();
        let hosts = etc::hosts(&etc::HostsInput {
            hostname: &req.hostname,
            domainname: &req.domainname,
            ips: &own,
            extra: &extra,
        });
        sb.running = true;
        self.save(&sb).map_err(&undo)?;
        lock(&self.sandboxes).insert(sb.id.clone(), sb);
        lock(&self.live).insert(req.id.clone(), live);
        self.rebuild_firewall();
        Ok(Prepared {
            netns: netns_path,
            hosts,
            resolv,
        })
    }

    /// Binds a published port on the host (the proxy, or a socket that only holds it).
    fn publish(
        &self,
        cfg: &NetConfig,
        p: &PortRequest,
        to: &Endpoint,
        sb: &Sandbox,
        live: &mut Live,
    ) -> Result<Port, NetError> {
        let host_ip = p.host_ip.unwrap_or(IpAddr::V4(cfg.ip));
        if host_ip.is_ipv6() && !cfg.userland_proxy {
            return Err(NetError::Invalid(format!(
                "publishing on IPv6 address {host_ip} needs the userland proxy (Strata's NAT rules are IPv4)"
            )));
        }
        let first = p.host_port.unwrap_or(0);
        let last = p.host_port_last.filter(|l| *l > first).unwrap_or(first);
        let mut port = first;
        loop {
            match self.bind_one(cfg, p, host_ip, port, to, live) {
                Ok(host_port) => {
                    return Ok(Port {
                        proto: p.proto,
                        container_port: p.container_port,
                        host_ip,
                        host_port,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && port < last => {
                    port += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    let ports = if last > first {
                        format!("{first}-{last}")
                    } else {
                        first.to_string()
                    };
                    return Err(NetError::PortTaken {
                        endpoint: sb.name.clone(),
                        addr: format!("{host_ip}:{ports}"),
                    });
                }
                Err(e) => {
                    return Err(NetError::Io {
                        context: format!("binding {host_ip}:{port}"),
                        source: e,
                    })
                }
            }
        }
    }

    /// Binds `host_ip:port` (0: ephemeral) for `p` and starts its proxy, or holds the
    /// port when there is no proxy; returns the port bound.
    fn bind_one(
        &self,
        cfg: &NetConfig,
        p: &PortRequest,
        host_ip: IpAddr,
        port: u16,
        to: &Endpoint,
        live: &mut Live,
    ) -> std::io::Result<u16> {
        let s = host_socket::bind(p.proto, SocketAddr::new(host_ip, port), cfg.userland_proxy)?;
        let port = host_socket::port(&s)?;
        let target = SocketAddr::from((to.ip, p.container_port));
        match (p.proto, cfg.userland_proxy) {
            (Proto::Tcp, true) => {
                s.listen(1024)?;
                s.set_nonblocking(true)?;
                live.tasks
                    .push(proxy::tcp(&self.rt, std::net::TcpListener::from(s), target));
            }
            (Proto::Udp, true) => {
                s.set_nonblocking(true)?;
                live.tasks
                    .push(proxy::udp(&self.rt, std::net::UdpSocket::from(s), target));
            }
            (_, false) => live.held.push(s),
        }
        Ok(port)
    }

    fn start_dns(&self, sb: &Sandbox) -> Result<JoinHandle<()>, NetError> {
        let upstream: Vec<SocketAddr> = sb
            .upstream_dns
            .iter()
            .filter_map(|n| n.parse::<std::net::IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        let me = sb.id.clone();
        let view = self.dns_view();
        let resolver: dns::Resolver = Arc::new(move |name: &str| view.resolve(&me, name));
        Ok(dns::serve(&self.rt, &sb.netns, resolver, upstream)?)
    }

    /// What the DNS servers resolve through: the sandboxes, shared.
    fn dns_view(&self) -> DnsView {
        DnsView {
            sandboxes: Arc::clone(&self.sandboxes),
        }
    }

    /// Tears down a container's running networking (after it stopped): proxies, DNS,
    /// interfaces, namespace, rules. Its addresses stay its own.
    pub fn teardown(&self, id: &str) {
        lock(&self.live).remove(id);
        let sb = {
            let mut sbs = lock(&self.sandboxes);
            let Some(sb) = sbs.get_mut(id) else { return };
            if !sb.running {
                return;
            }
            sb.running = false;
            sb.ports.clear();
            sb.clone()
        };
        for e in &sb.endpoints {
            if let Err(err) = link::delete(&e.host_ifname) {
                tracing::warn!(container = %id, "deleting {}: {err}", e.host_ifname);
            }
        }
        netns::remove(&sb.netns);
        if let Err(e) = self.save(&sb) {
            tracing::warn!(container = %id, "{e}");
        }
        self.rebuild_firewall();
    }

    /// Frees everything of a removed container.
    pub fn release(&self, id: &str) {
        self.teardown(id);
        netns::remove(&self.netns_dir.join(id));
        let Some(sb) = lock(&self.sandboxes).remove(id) else {
            return;
        };
        for e in &sb.endpoints {
            if let Ok(n) = self.network(&e.network_id) {
                if let Err(err) = self.release_on(&n, id) {
                    tracing::warn!(container = %id, "freeing {}: {err}", e.ip);
                }
            }
        }
        let _ = std::fs::remove_file(self.sandbox_file(id));
    }

    /// After a daemon restart: a container still running keeps its links; its proxies and
    /// DNS server come back. Call [`Manager::restored`] after the last one.
    pub fn restore(&self, id: &str, running: bool) {
        let Some(sb) = self.sandbox(id) else { return };
        if !sb.running {
            return;
        }
        if !running || !netns::exists(&sb.netns) {
            self.teardown(id);
            return;
        }
        let cfg = self.config();
        let mut live = Live::default();
        if let Some(primary) = sb.primary().cloned() {
            for p in &sb.ports {
                let req = PortRequest {
                    proto: p.proto,
                    container_port: p.container_port,
                    host_ip: Some(p.host_ip),
                    host_port: Some(p.host_port),
                    host_port_last: None,
                };
                if let Err(e) = self.publish(&cfg, &req, &primary, &sb, &mut live) {
                    tracing::error!(container = %id, "re-publishing a port: {e}");
                }
            }
        }
        if sb.endpoints.iter().any(|e| e.user_defined) {
            match self.start_dns(&sb) {
                Ok(t) => live.tasks.push(t),
                Err(e) => tracing::error!(container = %id, "restarting its DNS server: {e}"),
            }
        }
        lock(&self.live).insert(id.to_string(), live);
    }

    /// Ends a restore: sandboxes of containers that are gone are torn down, and the rules
    /// are rebuilt once.
    pub fn restored(&self, known: &dyn Fn(&str) -> bool) {
        let ids: Vec<String> = lock(&self.sandboxes).keys().cloned().collect();
        for id in ids {
            if !known(&id) {
                self.release(&id);
            }
        }
        self.rebuild_firewall();
    }

    /// Connects a running container to one more network.
    pub fn connect(&self, id: &str, req: &EndpointRequest) -> Result<Endpoint, NetError> {
        let sb = self
            .sandbox(id)
            .filter(|s| s.running)
            .ok_or_else(|| NetError::Invalid(format!("container {id} has no network sandbox")))?;
        let n = self.network(&req.network)?;
        if sb.endpoints.iter().any(|e| e.network_id == n.id) {
            return Err(NetworkError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                sb.name, n.name
            ))
            .into());
        }
        let e = self.endpoint_for(id, req, None, sb.next_ifname())?;
        self.ensure_link(&n, false)?;
        let mut with = sb.clone();
        with.endpoints.push(e.clone());
        link::add_interface(&self.interface(&with, &e))?;
        let had_dns = sb.endpoints.iter().any(|e| e.user_defined);
        self.save(&with)?;
        lock(&self.sandboxes).insert(id.to_string(), with.clone());
        if e.user_defined && !had_dns {
            match self.start_dns(&with) {
                Ok(t) => lock(&self.live)
                    .entry(id.to_string())
                    .or_default()
                    .tasks
                    .push(t),
                Err(err) => tracing::warn!(container = %id, "starting its DNS server: {err}"),
            }
        }
        self.rebuild_firewall();
        Ok(e)
    }

    /// Disconnects a container from a network (its address is freed).
    pub fn disconnect(&self, id: &str, network_id: &str) -> Result<(), NetError> {
        let Some(mut sb) = self.sandbox(id) else {
            return Ok(());
        };
        let Some(pos) = sb.endpoints.iter().position(|e| e.network_id == network_id) else {
            return Ok(());
        };
        let e = sb.endpoints.remove(pos);
        if sb.running {
            link::delete(&e.host_ifname)?;
        }
        if let Ok(n) = self.network(network_id) {
            self.release_on(&n, id)?;
        }
        self.save(&sb)?;
        lock(&self.sandboxes).insert(id.to_string(), sb);
        self.rebuild_firewall();
        Ok(())
    }

    /// Writes the firewall table from the networks and running sandboxes (not at all with
    /// `--iptables=false`). A failure is logged: containers run on without the rules.
    pub fn rebuild_firewall(&self) {
        let cfg = self.config();
        if !cfg.iptables {
            return;
        }
        let mut last = lock(&self.firewall);
        let mut bridges = Vec::new();
        for n in self.networks() {
            let (Some(bridge), Some(c)) = (n.bridge_name(), n.ipam_v4()) else {
                continue;
            };
            let Ok(subnet) = Subnet::parse(&c.subnet) else {
                continue;
            };
            let opt = |k: &str, def: bool| n.options.get(k).map_or(def, |v| v == "true");
            bridges.push(BridgeRules {
                bridge,
                subnet,
                masquerade: opt("com.docker.network.bridge.enable_ip_masquerade", true),
                icc: opt("com.docker.network.bridge.enable_icc", true),
                internal: n.internal,
            });
        }
        let mut ports = Vec::new();
        for s in lock(&self.sandboxes).values().filter(|s| s.running) {
            let Some(e) = s.primary() else { continue };
            for p in &s.ports {
                // IPv6 host addresses are served by the proxy only (`ip` table).
                let IpAddr::V4(host_ip) = p.host_ip else {
                    continue;
                };
                ports.push(PortRule {
                    proto: p.proto,
                    host_ip: Some(host_ip),
                    host_port: p.host_port,
                    container_ip: e.ip,
                    container_port: p.container_port,
                    bridge: e.bridge.clone(),
                });
            }
        }
        let rules = Ruleset {
            table: cfg.table.clone(),
            bridges,
            ports,
            userland_proxy: cfg.userland_proxy,
        };
        let script = rules.script();
        if last.as_deref() == Some(script.as_str()) {
            return;
        }
        match firewall::apply_script(&script) {
            Ok(()) => *last = Some(script),
            Err(e) => {
                *last = None;
                tracing::error!("writing the firewall rules: {e}");
            }
        }
    }
}

/// What the DNS servers look names up in: the manager's sandboxes, in memory.
struct DnsView {
    sandboxes: Arc<Mutex<BTreeMap<String, Sandbox>>>,
}

impl DnsView {
    /// The addresses of `name` on the user-defined networks container `me` is on.
    fn resolve(&self, me: &str, name: &str) -> Option<Vec<IpAddr>> {
        let all = lock(&self.sandboxes);
        let mine: Vec<String> = all
            .get(me)?
            .endpoints
            .iter()
            .filter(|e| e.user_defined)
            .map(|e| e.network_id.clone())
            .collect();
        let mut ips = Vec::new();
        for s in all.values().filter(|s| s.running) {
            for e in s.endpoints.iter().filter(|e| mine.contains(&e.network_id)) {
                let hit = s.name.eq_ignore_ascii_case(name)
                    || s.id.get(..12).is_some_and(|short| short == name)
                    || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(name));
                if hit {
                    for ip in e.addresses() {
                        if !ips.contains(&ip) {
                            ips.push(ip);
                        }
                    }
                }
            }
        }
        (!ips.is_empty()).then_some(ips)
    }
}

/// Host sockets of published ports: IPv6 ones with `IPV6_V6ONLY`, so that `0.0.0.0:P` and
/// `[::]:P` are two bindings, as dockerd makes them.
mod host_socket {
    use crate::firewall::Proto;
    use socket2::{Domain, Socket, Type};
    use std::net::SocketAddr;

    /// A socket bound to `addr` (port 0: an ephemeral one). `listening`: a proxy's TCP
    /// listener, with `SO_REUSEADDR` as std's listeners have it. A socket that only holds
    /// the port (no proxy) has none: two such sockets with it could share a port.
    pub fn bind(proto: Proto, addr: SocketAddr, listening: bool) -> std::io::Result<Socket> {
        let ty = match proto {
            Proto::Tcp => Type::STREAM,
            Proto::Udp => Type::DGRAM,
        };
        let s = Socket::new(Domain::for_address(addr), ty.cloexec(), None)?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        if proto == Proto::Tcp && listening {
            s.set_reuse_address(true)?;
        }
        s.bind(&addr.into())?;
        Ok(s)
    }

    /// The port a socket is bound to.
    pub fn port(s: &Socket) -> std::io::Result<u16> {
        s.local_addr()?
            .as_socket()
            .map(|a| a.port())
            .ok_or_else(|| std::io::Error::other("not an IP socket"))
    }
}
