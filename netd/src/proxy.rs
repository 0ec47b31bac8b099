//! The userland proxy (`--userland-proxy`, on by default as in dockerd): a published port's
//! host socket, held by the daemon, forwarding to the container. It is what makes
//! `127.0.0.1:<port>` and hairpin access work without `route_localnet`, and its socket is the
//! port's reservation on the host.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Forwards each connection accepted on `listener` to `target`.
pub fn tcp(rt: &Handle, listener: std::net::TcpListener, target: SocketAddr) -> JoinHandle<()> {
    rt.spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            tracing::error!(%target, "the proxy's socket cannot be used");
            return;
        };
        loop {
            let (mut inbound, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%target, "proxy accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            tokio::spawn(async move {
                match tokio::net::TcpStream::connect(target).await {
                    Ok(mut out) => {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                    Err(e) => tracing::debug!(%target, "proxy connect: {e}"),
                }
            });
        }
    })
}

/// Forwards datagrams on `socket` to `target`, one outbound socket per client, answers
/// back; a client's flow ends after 90 s without traffic.
pub fn udp(rt: &Handle, socket: std::net::UdpSocket, target: SocketAddr) -> JoinHandle<()> {
    rt.spawn(async move {
        let Ok(socket) = tokio::net::UdpSocket::from_std(socket) else {
            tracing::error!(%target, "the proxy's socket cannot be used");
            return;
        };
        let socket = Arc::new(socket);
        let flows: Arc<tokio::sync::Mutex<HashMap<SocketAddr, Arc<tokio::net::UdpSocket>>>> =
            Arc::default();
        let mut buf = vec![0u8; 65535];
        loop {
            let Ok((n, client)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let out = {
                let mut f = flows.lock().await;
                match f.get(&client) {
                    Some(o) => o.clone(),
                    None => {
                        let Ok(o) = tokio::net::UdpSocket::bind("0.0.0.0:0").await else {
                            continue;
                        };
                        if o.connect(target).await.is_err() {
                            continue;
                        }
                        let o = Arc::new(o);
                        f.insert(client, o.clone());
                        let (back, o2, flows2) = (socket.clone(), o.clone(), flows.clone());
                        tokio::spawn(async move {
                            let mut b = vec![0u8; 65535];
                            while let Ok(Ok(n)) =
                                tokio::time::timeout(Duration::from_secs(90), o2.recv(&mut b)).await
                            {
                                let _ = back.send_to(&b[..n], client).await;
                            }
                            flows2.lock().await.remove(&client);
                        });
                        o
                    }
                }
            };
            let _ = out.send(&buf[..n]).await;
        }
    })
}
