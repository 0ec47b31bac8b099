//! Container networking through the docker CLI: the default bridge, user-defined networks
//! with DNS, published ports, `--icc=false`, `--iptables=false`, and live-restore of ports.
//! Every test daemon runs in a network namespace of its own (see `common::Daemon::start_with`): the
//! "host" of these tests is that namespace, and an HTTP client entering it plays the host's
//! client. The test process's own (real) host links and ruleset are checked untouched.

mod common;
use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const IMG: &str = "test/busybox:1";

fn loaded(extra: &[&str]) -> Daemon {
    let d = Daemon::start_with("overlay2", extra);
    d.load_busybox();
    d
}

/// The links of the caller's network namespace, sorted.
fn link_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// What `program args` prints (in the caller's namespace); empty when it cannot run.
fn output_of(program: &str, args: &[String]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// What `program args` prints inside the namespace at `ns`.
fn output_in(ns: &std::path::Path, program: &'static str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    in_netns(ns, move || output_of(program, &args))
}

/// The host's links and firewall rules, to compare before and after.
fn host_state() -> (String, String) {
    let rules = output_of("nft", &["list".into(), "ruleset".into()]);
    (link_names().join(" "), rules)
}

/// An HTTP GET from inside the daemon's namespace: the body, or the error.
fn http_get(d: &Daemon, addr: &str) -> Result<String, String> {
    let addr = addr.to_string();
    in_netns(&d.netns(), move || {
        let mut s = std::net::TcpStream::connect_timeout(
            &addr.parse().map_err(|e| format!("{e}"))?,
            Duration::from_secs(5),
        )
        .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        write!(s, "GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    })
}

fn nft_in(d: &Daemon) -> String {
    output_in(&d.netns(), "nft", &["list", "ruleset"])
}

/// One ping from a new container of the default network: (answered, output).
fn ping_from_new_container(d: &Daemon, target: &str) -> (bool, String) {
    let (ok, out, err) = d.try_docker(&[
        "run", "--rm", IMG, "busybox", "ping", "-c", "1", "-W", "2", target,
    ]);
    (ok, out + &err)
}

/// A web server container with `index.html` saying `text`, publishing `publish`.
fn web(d: &Daemon, name: &str, text: &str, publish: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(publish);
    let script = format!(
        "mkdir -p /www && echo {text} > /www/index.html && exec busybox httpd -f -p 80 -h /www"
    );
    args.extend_from_slice(&[IMG, "sh", "-c", &script]);
    d.ok(&args);
}

/// An A query for `name` to 127.0.0.11:53 over TCP (in the caller's namespace): the answer's
/// bytes (empty on failure).
fn dns_over_tcp(name: &str) -> Vec<u8> {
    let mut q = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let ask = || -> std::io::Result<Vec<u8>> {
        let mut s = std::net::TcpStream::connect("127.0.0.11:53")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(&(q.len() as u16).to_be_bytes())?;
        s.write_all(&q)?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len)?;
        let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut r)?;
        Ok(r)
    };
    ask().unwrap_or_default()
}

/// The links of the daemon's namespace (its host), sorted.
fn links_in(d: &Daemon) -> Vec<String> {
    in_netns(&d.netns(), link_names)
}

/// A network's `IPAM.Config` as JSON.
fn ipam_of(d: &Daemon, network: &str) -> String {
    d.ok(&["network", "inspect", "-f", "{{json .IPAM.Config}}", network])
}

/// Retries `f` for a few seconds (servers take a moment to listen).
fn eventually(mut f: impl FnMut() -> Result<String, String>) -> Result<String, String> {
    let t = Instant::now();
    loop {
        match f() {
            Ok(s) => return Ok(s),
            Err(e) if t.elapsed() > Duration::from_secs(10) => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[test]
fn default_bridge_addresses_and_ping() {
    if !can_run_containers() {
        return;
    }
    let before = host_state();
    let d = loaded(&[]);
    // info: the network drivers, and forwarding as the daemon turned it on.
    let info = d.ok(&[
        "info",
        "-f",
        "{{json .Plugins.Network}} {{.IPv4Forwarding}}",
    ]);
    assert_eq!(info.trim(), r#"["bridge","host","null"] true"#);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "one",
        "--hostname",
        "first",
        IMG,
        "sleep",
        "60",
    ]);
    d.ok(&["run", "-d", "--name", "two", IMG, "sleep", "60"]);
    let ip = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "one"]);
    let ip = ip.trim();
    assert!(ip.starts_with("172.17.0."), "{ip}");
    let info = d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Gateway}} {{.NetworkSettings.IPPrefixLen}} {{.NetworkSettings.MacAddress}} {{.NetworkSettings.Networks.bridge.IPAddress}}",
        "one",
    ]);
    let last: u8 = ip
        .rsplit('.')
        .next()
        .and_then(|o| o.parse().ok())
        .expect("octet");
    assert_eq!(
        info.trim(),
        format!("172.17.0.1 16 02:42:ac:11:00:{last:02x} {ip}")
    );
    // Two containers on the default bridge reach each other by address.
    let out = d.ok(&["exec", "two", "busybox", "ping", "-c", "1", "-W", "3", ip]);
    assert!(out.contains("1 packets received"), "{out}");
    // Their /etc/hosts names them; resolv.conf has no loopback server.
    let hosts = d.ok(&["exec", "one", "cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("{ip}\tfirst")), "{hosts}");
    let resolv = d.ok(&["exec", "one", "cat", "/etc/resolv.conf"]);
    assert!(!resolv.contains("nameserver 127."), "{resolv}");
    // --add-host and --dns.
    let out = d.ok(&[
        "run",
        "--rm",
        "--add-host",
        "db.local:10.9.8.7",
        "--dns",
        "10.0.0.53",
        IMG,
        "sh",
        "-c",
        "cat /etc/hosts /etc/resolv.conf",
    ]);
    assert!(
        out.contains("10.9.8.7\tdb.local") && out.contains("nameserver 10.0.0.53"),
        "{out}"
    );
    // The network lists its containers; masquerade is in Strata's table.
    let members = d.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}} {{end}}",
        "bridge",
    ]);
    assert!(
        members.contains("one") && members.contains("two"),
        "{members}"
    );
    assert!(nft_in(&d).contains("ip saddr 172.17.0.0/16 oifname != \"strata0\" masquerade"));
    // Removing a container frees its address: the next container may get it back later,
    // never while it is in use.
    d.ok(&["rm", "-f", "one", "two"]);
    assert_eq!(
        d.ok(&["network", "inspect", "-f", "{{len .Containers}}", "bridge"])
            .trim(),
        "0"
    );
    drop(d);
    assert_eq!(
        host_state(),
        before,
        "the host's links and ruleset are as before"
    );
}

#[test]
fn user_defined_networks_resolve_names() {
    if !can_run_containers() {
        return;
    }
    let d = loaded(&[]);
    d.ok(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/24",
        "--gateway",
        "10.77.0.254",
        "--label",
        "k=v",
        "appnet",
    ]);
    let (ok, _, err) = d.try_docker(&["network", "create", "--subnet", "10.77.0.128/25", "other"]);
    assert!(
        !ok && err.contains("Pool overlaps with other one on this address space"),
        "{err}"
    );
    let (ok, _, err) = d.try_docker(&["network", "create", "appnet"]);
    assert!(
        !ok && err.contains("network with name appnet already exists"),
        "{err}"
    );
    web(
        &d,
        "srv",
        "from-srv",
        &[
            "--network",
            "appnet",
            "--network-alias",
            "api",
            "--ip",
            "10.77.0.10",
        ],
    );
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.appnet.IPAddress}} {{.NetworkSettings.Networks.appnet.Gateway}}", "srv"]).trim(),
        "10.77.0.10 10.77.0.254"
    );
    // By name and by alias, through the embedded DNS server.
    for name in ["srv", "api"] {
        let url = format!("http://{name}/index.html");
        let out = eventually(|| {
            let (ok, out, err) = d.try_docker(&[
                "run",
                "--rm",
                "--network",
                "appnet",
                IMG,
                "busybox",
                "wget",
                "-qO-",
                &url,
            ]);
            if ok {
                Ok(out)
            } else {
                Err(err)
            }
        });
        assert_eq!(out.as_deref().map(str::trim), Ok("from-srv"), "{name}");
    }
    let resolv = d.ok(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        IMG,
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");
    // An address in use, or outside the subnet; an unknown network.
    let (ok, _, err) = d.try_docker(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "--ip",
        "10.77.0.10",
        IMG,
        "true",
    ]);
    assert!(!ok && err.contains("Address already in use"), "{err}");
    let (ok, _, err) = d.try_docker(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "--ip",
        "10.1.1.1",
        IMG,
        "true",
    ]);
    assert!(!ok && err.contains("10.1.1.1"), "{err}");
    let (ok, _, err) = d.try_docker(&["run", "--rm", "--network", "nonet", IMG, "true"]);
    assert!(!ok && err.contains("network nonet not found"), "{err}");
    // connect (with an alias) and disconnect a running container of another user-defined
    // network (as with dockerd, one started on the default bridge has no embedded DNS).
    d.ok(&["network", "create", "side"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "client",
        "--network",
        "side",
        IMG,
        "sleep",
        "60",
    ]);
    d.ok(&["network", "connect", "--alias", "cli", "appnet", "client"]);
    let out = d.ok(&[
        "exec",
        "client",
        "busybox",
        "wget",
        "-qO-",
        "http://api/index.html",
    ]);
    assert_eq!(out.trim(), "from-srv");
    let out = d.ok(&["exec", "srv", "busybox", "nslookup", "cli", "127.0.0.11"]);
    assert!(out.contains("10.77.0."), "{out}");
    // Removing a network in use is refused and changes nothing.
    let (ok, _, err) = d.try_docker(&["network", "rm", "appnet"]);
    assert!(!ok && err.contains("has active endpoints"), "{err}");
    d.ok(&["network", "disconnect", "appnet", "client"]);
    let dev = d.ok(&["exec", "client", "cat", "/proc/net/dev"]);
    assert!(!dev.contains("eth1"), "{dev}");
    d.ok(&["rm", "-f", "srv", "client"]);
    let bridge = d.ok(&[
        "network",
        "inspect",
        "-f",
        "{{index .Options \"com.docker.network.bridge.name\"}}",
        "appnet",
    ]);
    let bridge = bridge.trim().to_string();
    let bridge_name = if bridge.is_empty() {
        let id = d.ok(&["network", "inspect", "-f", "{{.Id}}", "appnet"]);
        format!("br-{}", &id.trim()[..12])
    } else {
        bridge
    };
    let b2 = bridge_name.clone();
    assert!(in_netns(&d.netns(), move || strata_netd::link::exists(&b2)
        .unwrap_or(false)));
    d.ok(&["network", "rm", "appnet"]);
    let b2 = bridge_name.clone();
    assert!(
        !in_netns(&d.netns(), move || strata_netd::link::exists(&b2)
            .unwrap_or(true)),
        "its bridge went with it"
    );
    // prune removes unused user-defined networks only.
    d.ok(&["network", "create", "spare"]);
    let out = d.ok(&["network", "prune", "-f"]);
    assert!(out.contains("spare") && out.contains("side"), "{out}");
    let left = d.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(left, "bridge\nhost\nnone\n");
}

#[test]
fn published_ports_and_live_restore() {
    if !can_run_containers() {
        return;
    }
    let mut d = loaded(&["--live-restore"]);
    web(
        &d,
        "site",
        "hello-port",
        &["-p", "127.0.0.1:18080:80", "--expose", "7000", "-P"],
    );
    let got = eventually(|| http_get(&d, "127.0.0.1:18080"));
    assert!(
        got.as_deref().is_ok_and(|s| s.contains("hello-port")),
        "{got:?}"
    );
    let ports = d.ok(&["port", "site"]);
    assert!(ports.contains("80/tcp -> 127.0.0.1:18080"), "{ports}");
    assert!(
        ports.contains("7000/tcp -> 0.0.0.0:"),
        "-P published the exposed port: {ports}"
    );
    assert!(
        nft_in(&d).contains("tcp dport 18080 dnat to 172.17.0."),
        "{}",
        nft_in(&d)
    );
    // A port in use: dockerd's words, and nothing left behind.
    let links_before = links_in(&d);
    let (ok, _, err) = d.try_docker(&["run", "--rm", "-p", "127.0.0.1:18080:80", IMG, "true"]);
    assert!(!ok && err.contains("port is already allocated"), "{err}");
    assert_eq!(
        links_in(&d),
        links_before,
        "the failed start left no link behind"
    );
    assert_eq!(d.ok(&["ps", "-q"]).lines().count(), 1);
    // The daemon restarts; the live container's port works again.
    d.restart();
    let got = eventually(|| http_get(&d, "127.0.0.1:18080"));
    assert!(
        got.as_deref().is_ok_and(|s| s.contains("hello-port")),
        "{got:?}"
    );
    assert!(nft_in(&d).contains("tcp dport 18080 dnat"));
    // Its rules and port go with it.
    d.ok(&["rm", "-f", "site"]);
    assert!(!nft_in(&d).contains("dport 18080"));
    assert!(http_get(&d, "127.0.0.1:18080").is_err());
}

#[test]
fn without_the_userland_proxy_ports_are_nat_only() {
    if !can_run_containers() {
        return;
    }
    let d = loaded(&["--userland-proxy=false"]);
    web(&d, "site", "via-nat", &["-p", "18081:80"]);
    let got = eventually(|| http_get(&d, "127.0.0.1:18081"));
    assert!(
        got.as_deref().is_ok_and(|s| s.contains("via-nat")),
        "{got:?}"
    );
    let rules = nft_in(&d);
    assert!(rules.contains("fib saddr type local masquerade"), "{rules}");
    // The held port is the reservation: a narrower address on the same port is refused.
    let (ok, _, err) = d.try_docker(&["run", "--rm", "-p", "127.0.0.1:18081:80", IMG, "true"]);
    assert!(!ok && err.contains("port is already allocated"), "{err}");
    d.ok(&["rm", "-f", "site"]);
}

#[test]
fn icc_false_blocks_and_iptables_false_writes_nothing() {
    if !can_run_containers() {
        return;
    }
    let d = loaded(&["--icc=false"]);
    d.ok(&["run", "-d", "--name", "one", IMG, "sleep", "60"]);
    let ip = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "one"]);
    let (ok, out) = ping_from_new_container(&d, ip.trim());
    assert!(!ok, "--icc=false: no traffic between containers: {out}");
    // The gateway (the host) is still reachable.
    let (ok, out) = ping_from_new_container(&d, "172.17.0.1");
    assert!(ok, "{out}");
    assert!(out.contains("1 packets received"), "{out}");
    d.ok(&["rm", "-f", "one"]);
    drop(d);
    let d = loaded(&["--iptables=false", "--default-gateway", "172.17.0.254"]);
    let routes = d.ok(&["run", "--rm", IMG, "busybox", "ip", "route"]);
    assert!(
        routes.contains("default via 172.17.0.254 dev eth0"),
        "--default-gateway: {routes}"
    );
    assert_eq!(nft_in(&d).trim(), "", "--iptables=false: no rules at all");
}

/// The strata CLI's own networking flags: `network create` with IPAM and driver options,
/// `run` with --ip, --network-alias, --mac-address, --dns*, --add-host and a host port
/// range, `port`, `network connect --ip --alias` and `disconnect`.
#[test]
fn strata_cli_network_flags() {
    if !can_run_containers() {
        return;
    }
    let d = loaded(&[]);
    let strata = |args: &[&str]| {
        let o = d.strata(args);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "strata {args:?}: {text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        text
    };
    strata(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/24",
        "--gateway",
        "10.77.0.254",
        "--ip-range",
        "10.77.0.128/25",
        "--aux-address",
        "router=10.77.0.128",
        "-o",
        "com.docker.network.bridge.name=strbr7",
        "--label",
        "team=net",
        "lab",
    ]);
    let ipam = d.ok(&[
        "network",
        "inspect",
        "-f",
        "{{json .IPAM.Config}} {{.Labels.team}}",
        "lab",
    ]);
    assert_eq!(
        ipam.trim(),
        r#"[{"Subnet":"10.77.0.0/24","IPRange":"10.77.0.128/25","Gateway":"10.77.0.254","AuxiliaryAddresses":{"router":"10.77.0.128"}}] net"#
    );
    // The auxiliary address is kept from containers: the first one gets the next.
    let first = d.ok(&[
        "run",
        "--rm",
        "--network",
        "lab",
        IMG,
        "busybox",
        "ip",
        "-4",
        "-o",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(first.contains("10.77.0.129/24"), "{first}");
    let bridge = output_in(&d.netns(), "ip", &["-br", "addr", "show", "strbr7"]);
    assert!(
        bridge.contains("10.77.0.254/24"),
        "-o bridge name: {bridge}"
    );
    let o = d.strata(&["network", "create", "--gateway", "10.0.0.1", "bad"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("must have a corresponding subnet"),
        "{o:?}"
    );
    let script =
        "mkdir -p /www && echo via-range > /www/index.html && exec busybox httpd -f -p 80 -h /www";
    strata(&[
        "run",
        "-d",
        "--name",
        "w1",
        "--network",
        "lab",
        "--ip",
        "10.77.0.200",
        "--network-alias",
        "webby",
        "--mac-address",
        "02:42:aa:bb:cc:dd",
        "--dns",
        "10.77.0.254",
        "--dns-search",
        "example.test",
        "--dns-option",
        "ndots:3",
        "--add-host",
        "foo.test:1.2.3.4",
        "-p",
        "127.0.0.1:18100-18105:80",
        IMG,
        "sh",
        "-c",
        script,
    ]);
    let seen = d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.lab.IPAddress}} {{.NetworkSettings.Networks.lab.MacAddress}} {{.NetworkSettings.Networks.lab.Aliases}}",
        "w1",
    ]);
    assert!(
        seen.starts_with("10.77.0.200 02:42:aa:bb:cc:dd [webby"),
        "{seen}"
    );
    // The embedded DNS server answers over TCP too.
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", "w1"]);
    let ns = std::path::PathBuf::from(format!("/proc/{}/ns/net", pid.trim()));
    let over_tcp = in_netns(&ns, || dns_over_tcp("webby"));
    assert!(over_tcp.ends_with(&[10, 77, 0, 200]), "{over_tcp:?}");
    let link = d.ok(&["exec", "w1", "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(link.trim(), "02:42:aa:bb:cc:dd");
    let resolv = d.ok(&["exec", "w1", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains("nameserver 127.0.0.11")
            && resolv.contains("search example.test")
            && resolv.contains("ndots:3"),
        "{resolv}"
    );
    let hosts = d.ok(&["exec", "w1", "cat", "/etc/hosts"]);
    assert!(hosts.contains("1.2.3.4\tfoo.test"), "{hosts}");
    // A second server on the same host port range takes the next free port.
    strata(&[
        "run",
        "-d",
        "--name",
        "w2",
        "-p",
        "127.0.0.1:18100-18105:80",
        IMG,
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(strata(&["port", "w1"]), "80/tcp -> 127.0.0.1:18100\n");
    assert_eq!(strata(&["port", "w2", "80"]), "127.0.0.1:18101\n");
    let o = d.strata(&["port", "w2", "81"]);
    assert!(
        !o.status.success()
            && String::from_utf8_lossy(&o.stderr).contains("No public port '81/tcp' published"),
        "{o:?}"
    );
    let got = eventually(|| http_get(&d, "127.0.0.1:18101"));
    assert!(
        got.as_deref().is_ok_and(|s| s.contains("via-range")),
        "{got:?}"
    );
    // connect with an address and an alias, then disconnect.
    strata(&[
        "network",
        "connect",
        "--ip",
        "10.77.0.150",
        "--alias",
        "second",
        "lab",
        "w2",
    ]);
    let addrs = d.ok(&["exec", "w2", "busybox", "ip", "-4", "-o", "addr"]);
    assert!(
        addrs.contains("eth1") && addrs.contains("10.77.0.150/24"),
        "{addrs}"
    );
    let found = d.ok(&["exec", "w1", "busybox", "nslookup", "second", "127.0.0.11"]);
    assert!(found.contains("10.77.0.150"), "{found}");
    strata(&["network", "disconnect", "lab", "w2"]);
    let addrs = d.ok(&["exec", "w2", "busybox", "ip", "-4", "-o", "addr"]);
    assert!(!addrs.contains("eth1"), "{addrs}");
    strata(&["rm", "-f", "w1", "w2"]);
    strata(&["network", "rm", "lab"]);
}

/// IPv6: the default bridge with `--ipv6 --fixed-cidr-v6`, a user-defined network with an
/// IPv6 subnet (AAAA names through the embedded DNS), published ports on `[::]` beside
/// `0.0.0.0` as dockerd 20.10 binds them, and dockerd's errors.
#[test]
fn ipv6_networks_and_ports() {
    if !can_run_containers() {
        return;
    }
    let d = loaded(&["--ipv6", "--fixed-cidr-v6", "fd00:17::/64"]);
    d.ok(&["run", "-d", "--name", "one", IMG, "sleep", "60"]);
    let got = d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.GlobalIPv6Address}}/{{.NetworkSettings.GlobalIPv6PrefixLen}} {{.NetworkSettings.IPv6Gateway}}",
        "one",
    ]);
    assert_eq!(got.trim(), "fd00:17::2/64 fd00:17::1");
    let ping = d.try_docker(&["exec", "one", "busybox", "ping", "-c1", "-W2", "fd00:17::1"]);
    assert!(ping.0, "the IPv6 gateway answers: {ping:?}");
    let routes = d.ok(&["exec", "one", "busybox", "ip", "-6", "route"]);
    assert!(routes.contains("default via fd00:17::1"), "{routes}");
    let hosts = d.ok(&["exec", "one", "cat", "/etc/hosts"]);
    assert!(hosts.contains("fd00:17::2\t"), "{hosts}");
    // A user-defined network with IPv6: names resolve to both families.
    d.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd00:77::/64",
        "--subnet",
        "10.78.0.0/24",
        "v6net",
    ]);
    let inspect = d.ok(&[
        "network",
        "inspect",
        "-f",
        "{{.EnableIPv6}} {{json .IPAM.Config}}",
        "v6net",
    ]);
    assert!(
        inspect.starts_with("true ")
            && inspect.contains(r#"{"Subnet":"fd00:77::/64","Gateway":"fd00:77::1"}"#),
        "{inspect}"
    );
    d.ok(&[
        "run",
        "-d",
        "--name",
        "six",
        "--network",
        "v6net",
        "--ip6",
        "fd00:77::66",
        IMG,
        "sleep",
        "60",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "seven",
        "--network",
        "v6net",
        IMG,
        "sleep",
        "60",
    ]);
    let found = d.ok(&[
        "exec",
        "seven",
        "busybox",
        "nslookup",
        "-type=AAAA",
        "six",
        "127.0.0.11",
    ]);
    assert!(found.contains("fd00:77::66"), "{found}");
    let ping = d.try_docker(&[
        "exec",
        "seven",
        "busybox",
        "ping",
        "-c1",
        "-W2",
        "fd00:77::66",
    ]);
    assert!(ping.0, "{ping:?}");
    let members = d.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.IPv6Address}} {{end}}",
        "v6net",
    ]);
    assert!(members.contains("fd00:77::66/64"), "{members}");
    // dockerd 20.10's answers: --ipv6 without an IPv6 subnet is a 404 of its own words, and
    // a taken --ip6 is 403.
    let (ok, _, err) = d.try_docker(&["network", "create", "--ipv6", "nosub"]);
    assert!(
        !ok && err.contains("could not find an available, non-overlapping IPv6 address pool"),
        "{err}"
    );
    let (ok, _, err) = d.try_docker(&[
        "run",
        "--rm",
        "--network",
        "v6net",
        "--ip6",
        "fd00:77::66",
        IMG,
        "true",
    ]);
    assert!(!ok && err.contains("Address already in use"), "{err}");
    // Published without a host address: 0.0.0.0 and [::], each reaching the server.
    web(&d, "site", "hello-six", &["-p", "18200:80"]);
    let ports = d.ok(&["port", "site"]);
    assert!(
        ports.contains("80/tcp -> 0.0.0.0:18200") && ports.contains("80/tcp -> [::]:18200"),
        "{ports}"
    );
    for addr in ["127.0.0.1:18200", "[::1]:18200"] {
        let got = eventually(|| http_get(&d, addr));
        assert!(
            got.as_deref().is_ok_and(|s| s.contains("hello-six")),
            "{addr}: {got:?}"
        );
    }
    d.ok(&["rm", "-f", "one", "six", "seven", "site"]);
    d.ok(&["network", "rm", "v6net"]);
}

/// One HTTP request to the daemon's socket: (status, body).
fn call(d: &Daemon, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// Status codes and words measured against dockerd 20.10 (Debian's docker.io, on its own
/// socket, data root and network namespace) for the same requests.
#[test]
fn errors_match_dockerd() {
    if !can_run_containers() {
        return;
    }
    let d = loaded(&[]);
    let post = |path: &str, body: &str| call(&d, "POST", path, body);
    d.ok(&["network", "create", "--subnet", "10.88.0.0/24", "lab"]);
    let create =
        |name: &str, body: &str| post(&format!("/v1.41/containers/create?name={name}"), body);
    // --ip outside the subnet: created, the start is a 500.
    let (code, _) = create(
        "c1",
        r#"{"Image":"test/busybox:1","Cmd":["sleep","30"],"HostConfig":{"NetworkMode":"lab"},"NetworkingConfig":{"EndpointsConfig":{"lab":{"IPAMConfig":{"IPv4Address":"10.99.0.5"}}}}}"#,
    );
    assert_eq!(code, 201);
    let (code, text) = post("/v1.41/containers/c1/start", "");
    assert!(
        code == 500
            && text.contains(
                "Invalid address 10.99.0.5: It does not belong to any of this network's subnets"
            ),
        "{text}"
    );
    // --ip or an alias on the default bridge: 400.
    create(
        "c2",
        r#"{"Image":"test/busybox:1","Cmd":["sleep","30"],"NetworkingConfig":{"EndpointsConfig":{"bridge":{"IPAMConfig":{"IPv4Address":"172.17.0.50"}}}}}"#,
    );
    let (code, text) = post("/v1.41/containers/c2/start", "");
    assert!(
        code == 400
            && text
                .contains("user specified IP address is supported on user defined networks only"),
        "{text}"
    );
    create(
        "c3",
        r#"{"Image":"test/busybox:1","Cmd":["sleep","30"],"NetworkingConfig":{"EndpointsConfig":{"bridge":{"Aliases":["zz"]}}}}"#,
    );
    let (code, text) = post("/v1.41/containers/c3/start", "");
    assert!(
        code == 400
            && text.contains(
                "network-scoped alias is supported only for containers in user defined networks"
            ),
        "{text}"
    );
    // A bad MAC address: created, the start is a 500.
    let (code, _) = create(
        "m1",
        r#"{"Image":"test/busybox:1","MacAddress":"zz:zz","Cmd":["sleep","30"]}"#,
    );
    assert_eq!(code, 201);
    let (code, text) = post("/v1.41/containers/m1/start", "");
    assert!(
        code == 500 && text.contains("address zz:zz: invalid MAC address"),
        "{text}"
    );
    // Bad port bindings are refused at create.
    let (code, text) = create(
        "hp",
        r#"{"Image":"test/busybox:1","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"abc"}]}}}"#,
    );
    assert!(
        code == 400 && text.contains(r#"invalid port specification: \"abc\""#),
        "{text}"
    );
    let (code, text) = create(
        "hk",
        r#"{"Image":"test/busybox:1","HostConfig":{"PortBindings":{"x/tcp":[{"HostPort":"81"}]}}}"#,
    );
    assert!(
        code == 400 && text.contains(r#"invalid port specification: \"x\""#),
        "{text}"
    );
    // A binding of a port that is not exposed publishes nothing (as dockerd).
    create(
        "nx",
        r#"{"Image":"test/busybox:1","Cmd":["sleep","30"],"HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"18300"}]}}}"#,
    );
    let (code, _) = post("/v1.41/containers/nx/start", "");
    assert_eq!(code, 204);
    assert_eq!(d.ok(&["port", "nx"]).trim(), "");
    // disconnect of a container not on the network: 500; connect twice: 403.
    let (code, text) = post("/v1.41/networks/lab/disconnect", r#"{"Container":"nx"}"#);
    assert!(
        code == 500 && text.contains("is not connected to network lab"),
        "{text}"
    );
    let (code, _) = post("/v1.41/networks/lab/connect", r#"{"Container":"nx"}"#);
    assert_eq!(code, 200);
    let (code, text) = post("/v1.41/networks/lab/connect", r#"{"Container":"nx"}"#);
    assert!(
        code == 403 && text.contains("endpoint with name nx already exists in network lab"),
        "{text}"
    );
    // A taken --ip on connect: 403.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "t1",
        "--network",
        "lab",
        "--ip",
        "10.88.0.77",
        IMG,
        "sleep",
        "30",
    ]);
    d.ok(&["run", "-d", "--name", "t3", IMG, "sleep", "30"]);
    let (code, text) = post(
        "/v1.41/networks/lab/connect",
        r#"{"Container":"t3","EndpointConfig":{"IPAMConfig":{"IPv4Address":"10.88.0.77"}}}"#,
    );
    assert!(
        code == 403 && text.contains("Address already in use"),
        "{text}"
    );
    // A port taken: 500 in dockerd's words.
    let bind = r#"{"Image":"test/busybox:1","Cmd":["sleep","30"],"ExposedPorts":{"80/tcp":{}},"HostConfig":{"PortBindings":{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"18080"}]}}}"#;
    create("p1", bind);
    create("p2", bind);
    assert_eq!(post("/v1.41/containers/p1/start", "").0, 204);
    let (code, text) = post("/v1.41/containers/p2/start", "");
    assert!(
        code == 500 && text.contains("Bind for 127.0.0.1:18080 failed: port is already allocated"),
        "{text}"
    );
    d.ok(&[
        "rm", "-f", "c1", "c2", "c3", "m1", "nx", "t1", "t3", "p1", "p2",
    ]);
}

/// `-b` naming an existing bridge: the default network takes the bridge's own address as
/// its gateway and subnet, as dockerd does, and adds none of its own to it.
#[test]
fn an_existing_bridge_named_with_b() {
    if !can_run_containers() {
        return;
    }
    let mut d = loaded(&[]);
    let ns = d.netns();
    let ip = |args: &[&str]| output_in(&ns, "ip", args);
    ip(&["link", "add", "extbr", "type", "bridge"]);
    ip(&["addr", "add", "10.66.0.1/24", "dev", "extbr"]);
    ip(&["link", "set", "extbr", "up"]);
    d.restart_with(&["-b", "extbr"]);
    let ipam = ipam_of(&d, "bridge");
    assert_eq!(
        ipam.trim(),
        r#"[{"Subnet":"10.66.0.0/24","Gateway":"10.66.0.1"}]"#
    );
    let got = d.ok(&[
        "run", "--rm", IMG, "busybox", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert!(got.contains("10.66.0.2/24"), "{got}");
    let (ok, out) = ping_from_new_container(&d, "10.66.0.1");
    assert!(ok, "{out}");
    let addrs = ip(&["-4", "-o", "addr", "show", "extbr"]);
    assert_eq!(addrs.matches("inet ").count(), 1, "{addrs}");
}

/// The default bridge as the daemon's flags and daemon.json keys shape it: `--bip`,
/// `--fixed-cidr`, `--mtu`, `--ip` (the default host address of published ports),
/// `--ip-masq=false`; a UDP port through the proxy both ways; then `bip`, `ip-forward` and
/// `dns` from daemon.json.
#[test]
fn daemon_flags_shape_the_default_bridge() {
    if !can_run_containers() {
        return;
    }
    let d = loaded(&[
        "--bip",
        "10.55.0.1/24",
        "--fixed-cidr",
        "10.55.0.128/25",
        "--mtu",
        "1400",
        "--ip",
        "127.0.0.1",
        "--ip-masq=false",
    ]);
    let ipam = ipam_of(&d, "bridge");
    assert_eq!(
        ipam.trim(),
        r#"[{"Subnet":"10.55.0.0/24","IPRange":"10.55.0.128/25","Gateway":"10.55.0.1"}]"#
    );
    d.ok(&[
        "run",
        "-d",
        "--name",
        "udp",
        "-p",
        "18401:5353/udp",
        IMG,
        "sleep",
        "60",
    ]);
    assert_eq!(d.ok(&["port", "udp"]).trim(), "5353/udp -> 127.0.0.1:18401");
    let addr = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "udp"]);
    assert_eq!(addr.trim(), "10.55.0.128", "the first of --fixed-cidr");
    let mtu = d.ok(&["exec", "udp", "cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(mtu.trim(), "1400");
    let rules = nft_in(&d);
    assert!(
        !rules.contains("ip saddr 10.55.0.0/24 oifname"),
        "--ip-masq=false: {rules}"
    );
    // UDP: a socket inside the container's namespace gets the datagram sent to the host's
    // published port, and its answer comes back to the sender.
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", "udp"]);
    let ctr_ns = std::path::PathBuf::from(format!("/proc/{}/ns/net", pid.trim()));
    let server = in_netns(&ctr_ns, || std::net::UdpSocket::bind("0.0.0.0:5353"))
        .expect("bind in the container");
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let (n, from) = server.recv_from(&mut buf).map_err(|e| e.to_string())?;
        server.send_to(&buf[..n], from).map_err(|e| e.to_string())?;
        Ok::<_, String>(String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    let answer = in_netns(&d.netns(), || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        s.send_to(b"over-udp", "127.0.0.1:18401")
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let (n, _) = s.recv_from(&mut buf).map_err(|e| e.to_string())?;
        Ok::<_, String>(String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    let got = echo.join().expect("echo thread");
    assert_eq!(got.as_deref(), Ok("over-udp"));
    assert_eq!(answer.as_deref(), Ok("over-udp"));
    d.ok(&["rm", "-f", "udp"]);
    drop(d);
    // daemon.json keys.
    let cfg = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        cfg.path(),
        r#"{"bip": "10.56.0.1/24", "ip-forward": false, "dns": ["10.56.0.53"]}"#,
    )
    .expect("write config");
    let path = cfg.path().to_string_lossy().into_owned();
    let mut d = loaded(&["--config-file", &path]);
    // A new namespace inherits the host's IPv4 forwarding: turn it off, then see that the
    // restarted daemon leaves it so.
    let off = in_netns(&d.netns(), || {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").map_err(|e| e.to_string())
    });
    assert_eq!(off, Ok(()));
    d.restart();
    let ipam = ipam_of(&d, "bridge");
    assert_eq!(
        ipam.trim(),
        r#"[{"Subnet":"10.56.0.0/24","Gateway":"10.56.0.1"}]"#
    );
    let forwarding = d.ok(&["info", "-f", "{{.IPv4Forwarding}}"]);
    assert_eq!(forwarding.trim(), "false", "ip-forward false: left off");
    let resolv = d.ok(&["run", "--rm", IMG, "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.56.0.53"), "{resolv}");
}

/// A restart with another `--bip` moves strata0 to the new address: the old one goes.
#[test]
fn a_changed_bip_replaces_the_bridge_address() {
    if !can_run_containers() {
        return;
    }
    let mut d = loaded(&[]);
    d.ok(&["run", "--rm", IMG, "true"]);
    d.stop();
    d.restart_with(&["--bip", "10.59.0.1/24"]);
    let addrs = output_in(&d.netns(), "ip", &["-4", "-o", "addr", "show", "strata0"]);
    assert!(
        addrs.contains("10.59.0.1/24") && addrs.matches("inet ").count() == 1,
        "{addrs}"
    );
    let got = d.ok(&[
        "run", "--rm", IMG, "busybox", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert!(got.contains("10.59.0.2/24"), "{got}");
}

/// Containers started at the same time never share an address.
#[test]
fn concurrent_starts_get_distinct_addresses() {
    if !can_run_containers() {
        return;
    }
    let d = loaded(&[]);
    d.ok(&["network", "create", "--subnet", "10.60.0.0/24", "busy"]);
    let names: Vec<String> = (0..8).map(|i| format!("par{i}")).collect();
    std::thread::scope(|s| {
        for (i, n) in names.iter().enumerate() {
            let d = &d;
            s.spawn(move || {
                let net = if i % 2 == 0 { "bridge" } else { "busy" };
                d.ok(&[
                    "run",
                    "-d",
                    "--name",
                    n,
                    "--network",
                    net,
                    IMG,
                    "sleep",
                    "60",
                ]);
            });
        }
    });
    let mut ips: Vec<String> = names
        .iter()
        .map(|n| {
            d.ok(&[
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                n,
            ])
            .trim()
            .to_string()
        })
        .collect();
    assert!(ips.iter().all(|ip| !ip.is_empty()), "{ips:?}");
    ips.sort();
    let all = ips.len();
    ips.dedup();
    assert_eq!(ips.len(), all, "an address handed out twice: {ips:?}");
    let mut args = vec!["rm", "-f"];
    args.extend(names.iter().map(String::as_str));
    d.ok(&args);
    d.ok(&["network", "rm", "busy"]);
}
