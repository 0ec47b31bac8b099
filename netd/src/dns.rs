//! The embedded DNS server of user-defined networks, as dockerd's: it listens inside each
//! such container's namespace at 127.0.0.11:53 (UDP and TCP), answers A and AAAA queries
//! for the names of the containers sharing a network with it (names, aliases, short IDs),
//! and forwards every other query to the upstream servers (the host's, or `--dns`) from
//! the daemon's own namespace, so a host resolver on the loopback (systemd-resolved) still
//! works.
//!
//! Unlike dockerd it binds port 53 itself rather than redirecting with firewall rules inside
//! the container, so a container of a user-defined network cannot bind 127.0.0.11:53.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Answers a name (lower case, no trailing dot) with addresses, or `None` when unknown.
pub type Resolver = Arc<dyn Fn(&str) -> Option<Vec<IpAddr>> + Send + Sync>;

/// The question of a query: (name, qtype, end offset of the question section).
fn question(q: &[u8]) -> Option<(String, u16, usize)> {
    if q.len() < 12 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    Some((labels.join("."), qtype, i + 4))
}

/// The answer to `query` of type `qtype` with those of `ips` it asks for (A or AAAA
/// records, TTL 600), or an empty NOERROR answer.
fn answer(query: &[u8], end: usize, qtype: u16, ips: &[IpAddr]) -> Vec<u8> {
    let records: Vec<Vec<u8>> = ips
        .iter()
        .filter_map(|ip| match (qtype, ip) {
            (1, IpAddr::V4(a)) => Some(a.octets().to_vec()),
            (28, IpAddr::V6(a)) => Some(a.octets().to_vec()),
            _ => None,
        })
        .collect();
    let mut r = query[..end].to_vec();
    r[2] = 0x80 | (query[2] & 0x01) | 0x04; // response, RD copied, authoritative
    r[3] = 0x80; // recursion available, NOERROR
    r[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    r[8..12].copy_from_slice(&[0, 0, 0, 0]);
    for data in records {
        r.extend_from_slice(&[0xc0, 0x0c]);
        r.extend_from_slice(&qtype.to_be_bytes());
        r.extend_from_slice(&[0, 1, 0, 0, 0x02, 0x58]);
        r.extend_from_slice(&(data.len() as u16).to_be_bytes());
        r.extend_from_slice(&data);
    }
    r
}

/// The answer to `q` when it asks for a name `resolve` knows.
fn local_answer(q: &[u8], resolve: &Resolver) -> Option<Vec<u8>> {
    let (name, qtype, end) = question(q)?;
    let ips = resolve(&name)?;
    Some(answer(q, end, qtype, &ips))
}

/// Starts the server inside the namespace at `netns`.
pub fn serve(
    rt: &Handle,
    netns: &Path,
    resolve: Resolver,
    upstream: Vec<SocketAddr>,
) -> Result<JoinHandle<()>, crate::netns::NetnsError> {
    let (udp, tcp) = crate::netns::run_in(Some(netns), || {
        let u = std::net::UdpSocket::bind("127.0.0.11:53")?;
        u.set_nonblocking(true)?;
        let t = std::net::TcpListener::bind("127.0.0.11:53")?;
        t.set_nonblocking(true)?;
        Ok::<_, std::io::Error>((u, t))
    })?
    .map_err(|source| crate::netns::NetnsError::Io {
        context: "binding 127.0.0.11:53 in the container's namespace".into(),
        source,
    })?;
    let (resolve_tcp, upstream_tcp) = (resolve.clone(), upstream.clone());
    Ok(rt.spawn(async move {
        let udp_loop = async move {
            let Ok(socket) = tokio::net::UdpSocket::from_std(udp) else {
                return;
            };
            let socket = Arc::new(socket);
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, client)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let q = buf[..n].to_vec();
                if let Some(r) = local_answer(&q, &resolve) {
                    let _ = socket.send_to(&r, client).await;
                    continue;
                }
                let (back, upstream) = (socket.clone(), upstream.clone());
                tokio::spawn(async move {
                    if let Some(r) = forward(&q, &upstream).await {
                        let _ = back.send_to(&r, client).await;
                    }
                });
            }
        };
        let tcp_loop = async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(tcp) else {
                return;
            };
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let (resolve, upstream) = (resolve_tcp.clone(), upstream_tcp.clone());
                tokio::spawn(async move {
                    let served = serve_tcp(conn, resolve, upstream);
                    let _ = tokio::time::timeout(Duration::from_secs(10), served).await;
                });
            }
        };
        tokio::join!(udp_loop, tcp_loop);
    }))
}

/// One TCP client: length-prefixed queries, each answered here or by an upstream server
/// over TCP, until the client closes.
async fn serve_tcp(
    mut c: tokio::net::TcpStream,
    resolve: Resolver,
    upstream: Vec<SocketAddr>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let mut len = [0u8; 2];
        if c.read_exact(&mut len).await.is_err() {
            return Ok(());
        }
        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
        c.read_exact(&mut q).await?;
        let reply = match local_answer(&q, &resolve) {
            Some(r) => Some(r),
            None => forward_tcp(&q, &upstream).await,
        };
        let Some(r) = reply else {
            return Ok(());
        };
        let len = u16::try_from(r.len()).unwrap_or(u16::MAX);
        c.write_all(&len.to_be_bytes()).await?;
        c.write_all(&r[..usize::from(len)]).await?;
    }
}

/// Asks the upstream servers over TCP in turn; the first answer wins.
async fn forward_tcp(q: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let len = u16::try_from(q.len()).ok()?;
    for server in upstream {
        let ask = async {
            let mut s = tokio::net::TcpStream::connect(server).await?;
            s.write_all(&len.to_be_bytes()).await?;
            s.write_all(q).await?;
            let mut l = [0u8; 2];
            s.read_exact(&mut l).await?;
            let mut r = vec![0u8; usize::from(u16::from_be_bytes(l))];
            s.read_exact(&mut r).await?;
            Ok::<_, std::io::Error>(r)
        };
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(3), ask).await {
            return Some(r);
        }
    }
    None
}

/// Asks the upstream servers in turn; the first answer wins.
async fn forward(q: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    for server in upstream {
        let Ok(s) = tokio::net::UdpSocket::bind("0.0.0.0:0").await else {
            continue;
        };
        if s.send_to(q, server).await.is_err() {
            continue;
        }
        let mut b = vec![0u8; 4096];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(3), s.recv_from(&mut b)).await
        {
            b.truncate(n);
            return Some(b);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[test]
    fn questions_and_answers() {
        let q = query("Web.Local", 1);
        let (name, t, end) = question(&q).unwrap();
        assert_eq!((name.as_str(), t, end), ("web.local", 1, q.len()));
        let ips: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
        let a = answer(&q, end, 1, &ips);
        assert_eq!(&a[0..2], &[0x12, 0x34]);
        assert_eq!(a[2] & 0x80, 0x80);
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1);
        assert_eq!(&a[a.len() - 4..], &[10, 0, 0, 2]);
        let q6 = query("web", 28);
        let (_, t, end) = question(&q6).unwrap();
        let a = answer(&q6, end, t, &ips);
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1, "one AAAA record");
        assert_eq!(&a[a.len() - 18..a.len() - 16], &[0, 16]);
        assert_eq!(a[a.len() - 1], 2);
        assert_eq!(
            u16::from_be_bytes([answer(&q6, end, 16, &ips)[6], 0]),
            0,
            "TXT: none"
        );
        assert!(question(&q[..10]).is_none());
        let mut bad = q.clone();
        bad[12] = 200;
        assert!(question(&bad).is_none());
    }
}
