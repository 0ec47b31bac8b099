//! `-p/--publish` specs as the docker CLI reads them, and the `port` command.

use super::out;
use crate::CliError;
use clap::Args;
use serde_json::{json, Map, Value};
use strata_api::client::{escape, Body, Client};

/// `port CONTAINER [PRIVATE_PORT[/PROTO]]`.
#[derive(Args, Debug)]
pub struct PortArgs {
    pub container: String,
    /// A private port, with its protocol (`80/tcp`) or without (tcp).
    pub port: Option<String>,
}

/// One `-p` flag's bindings: `"80/tcp"` → `{"HostIp": ..., "HostPort": ...}`, one per
/// container port of the spec (a range gives several).
pub type Bindings = Vec<(String, Value)>;

/// `a-b` or `a` as an inclusive range; `what` names the part in errors.
fn port_range(s: &str, what: &str) -> Result<(u16, u16), CliError> {
    let bad = || CliError::Usage(format!("invalid {what}: {s}"));
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// Parses one `-p` value: `[ip:][hostPort[-end]:]containerPort[-end][/proto]`, the IP in
/// brackets when it is IPv6. The shapes and error texts are the docker CLI's.
pub fn parse_publish(spec: &str) -> Result<Bindings, CliError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let n = parts.len();
    let (ip, host, container) = match n {
        1 => ("".to_string(), "", parts[0]),
        2 => ("".to_string(), parts[0], parts[1]),
        _ => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
    };
    let (container, proto) = match container.split_once('/') {
        Some((p, "")) => (p, "tcp"),
        Some((p, proto)) => (p, proto),
        None => (container, "tcp"),
    };
    let raw_ip = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(&ip)
        .to_string();
    if !ip.is_empty() && raw_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(CliError::Usage(format!("invalid IP address: {ip}")));
    }
    if container.is_empty() {
        return Err(CliError::Usage(format!("no port specified: {spec}<empty>")));
    }
    let (c0, c1) = port_range(container, "containerPort")?;
    let hosts = if host.is_empty() {
        None
    } else {
        Some(port_range(host, "hostPort")?)
    };
    if let Some((h0, h1)) = hosts {
        if h1 - h0 != c1 - c0 && c0 != c1 {
            return Err(CliError::Usage(format!(
                "invalid ranges specified for container and host Ports: {container} and {host}"
            )));
        }
    }
    let proto = proto.to_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(CliError::Usage(format!("invalid proto: {proto}")));
    }
    let mut out = Vec::new();
    for i in 0..=(c1 - c0) {
        let host_port = match hosts {
            None => String::new(),
            // One container port and a host range: the daemon picks a free one of it.
            Some((h0, h1)) if c0 == c1 && h0 != h1 => format!("{h0}-{h1}"),
            Some((h0, _)) => (h0 + i).to_string(),
        };
        out.push((
            format!("{}/{proto}", c0 + i),
            json!({ "HostIp": raw_ip, "HostPort": host_port }),
        ));
    }
    Ok(out)
}

/// Every `-p` flag into `PortBindings`; each published port is exposed too, as docker does.
pub fn apply_publish(
    specs: &[String],
    cfg: &mut Value,
    host_config: &mut Value,
) -> Result<(), CliError> {
    if specs.is_empty() {
        return Ok(());
    }
    let mut bindings = Map::new();
    let mut exposed = cfg["ExposedPorts"].as_object().cloned().unwrap_or_default();
    for s in specs {
        for (key, b) in parse_publish(s)? {
            exposed.insert(key.clone(), json!({}));
            if let Some(Value::Array(list)) = bindings.get_mut(&key) {
                list.push(b);
            } else {
                bindings.insert(key, json!([b]));
            }
        }
    }
    cfg["ExposedPorts"] = Value::Object(exposed);
    host_config["PortBindings"] = Value::Object(bindings);
    Ok(())
}

/// `IP:PORT` as docker prints a binding: IPv6 in brackets.
fn host_addr(ip: &str, port: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// `port`: a container's published ports (`80/tcp -> 0.0.0.0:8080`), or one port's host
/// addresses; a port not published is an error, as with docker.
pub fn port(c: &Client, a: PortArgs) -> Result<(), CliError> {
    let v = c.json(
        "GET",
        &format!("/containers/{}/json", escape(&a.container)),
        &[],
        Body::None,
    )?;
    let ports = v["NetworkSettings"]["Ports"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort_by_key(|k| {
        let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
        (p.parse::<u32>().unwrap_or(0), proto.to_string())
    });
    let mut text = String::new();
    if let Some(want) = &a.port {
        let key = if want.contains('/') {
            want.clone()
        } else {
            format!("{want}/tcp")
        };
        let list = ports
            .get(&key)
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty());
        let Some(list) = list else {
            return Err(CliError::Usage(format!(
                "No public port '{key}' published for {}",
                a.container
            )));
        };
        for b in list {
            text.push_str(&host_addr(
                b["HostIp"].as_str().unwrap_or(""),
                b["HostPort"].as_str().unwrap_or(""),
            ));
            text.push('\n');
        }
        return out(&text);
    }
    for k in keys {
        for b in ports[k].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "{k} -> {}\n",
                host_addr(
                    b["HostIp"].as_str().unwrap_or(""),
                    b["HostPort"].as_str().unwrap_or("")
                )
            ));
        }
    }
    out(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> (String, String, String) {
        let b = parse_publish(spec).expect(spec);
        assert_eq!(b.len(), 1, "{spec}");
        let (k, v) = &b[0];
        (
            k.clone(),
            v["HostIp"].as_str().unwrap_or("?").to_string(),
            v["HostPort"].as_str().unwrap_or("?").to_string(),
        )
    }

    #[test]
    fn publish_specs_read_as_docker_reads_them() {
        assert_eq!(one("80"), ("80/tcp".into(), "".into(), "".into()));
        assert_eq!(one("8080:80"), ("80/tcp".into(), "".into(), "8080".into()));
        assert_eq!(
            one("127.0.0.1:8080:80/udp"),
            ("80/udp".into(), "127.0.0.1".into(), "8080".into())
        );
        assert_eq!(
            one("127.0.0.1::80"),
            ("80/tcp".into(), "127.0.0.1".into(), "".into())
        );
        assert_eq!(
            one("[::1]:8080:80"),
            ("80/tcp".into(), "::1".into(), "8080".into())
        );
        assert_eq!(
            one("8000-8010:80"),
            ("80/tcp".into(), "".into(), "8000-8010".into())
        );
        assert_eq!(one("80/"), ("80/tcp".into(), "".into(), "".into()));
        let r = parse_publish("7000-7002:8000-8002").expect("ranges");
        let got: Vec<(String, String)> = r
            .iter()
            .map(|(k, v)| (k.clone(), v["HostPort"].as_str().unwrap_or("").into()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("8000/tcp".into(), "7000".into()),
                ("8001/tcp".into(), "7001".into()),
                ("8002/tcp".into(), "7002".into())
            ]
        );
    }

    #[test]
    fn bad_publish_specs_say_what_is_wrong() {
        let err = |s: &str| parse_publish(s).expect_err(s).to_string();
        assert!(err("1.2.3:80:80").contains("invalid IP address: 1.2.3"));
        assert!(err("8080:").contains("no port specified"));
        assert!(err("8080:http").contains("invalid containerPort: http"));
        assert!(err("x:80").contains("invalid hostPort: x"));
        assert!(err("1-3:4-5").contains("invalid ranges"));
        assert!(err("80/icmp").contains("invalid proto: icmp"));
        assert!(err("70000").contains("invalid containerPort"));
    }
}
