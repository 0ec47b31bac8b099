//! Attaching a client to a process's stdio through the container's shim: `POST
//! /containers/{id}/attach` (HTTP upgrade), `resize`, and the bridge that exec start uses
//! too. Attachers that arrive before the container runs wait in [`Pending`] and are connected
//! by `start` between the runtime's create and start, so they see all of the output.

use crate::body::{text, Query, Resp};
use crate::containers::{find, require_running};
use crate::{ApiError, Daemon};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use strata_runtime::lifecycle::attach_flags;
use strata_runtime::shim::frame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

/// An attacher waiting for its container to be created.
pub struct Waiting {
    flags: String,
    tx: oneshot::Sender<UnixStream>,
}

/// Attachers waiting for their containers, by container ID.
#[derive(Default)]
pub struct Pending(Mutex<HashMap<String, Vec<Waiting>>>);

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Waiting>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connects the attachers waiting for `id` to its (created) shim; blocking.
    pub fn connect(&self, d: &Daemon, id: &str) {
        let waiting = self.lock().remove(id).unwrap_or_default();
        for w in waiting {
            match d.runtime.attach(id, "-", &w.flags) {
                Ok(s) => {
                    let _ = w.tx.send(s);
                }
                Err(e) => tracing::warn!(container = %id, "attaching: {e}"),
            }
        }
    }

    /// Drops the attachers of a container that goes away (their connections end).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// A connection to the container's shim: now when the shim runs, or once `start` created it.
pub(crate) fn connect_or_wait(
    d: &Arc<Daemon>,
    id: &str,
    flags: String,
) -> Result<oneshot::Receiver<UnixStream>, ApiError> {
    let (tx, rx) = oneshot::channel();
    let mut pending = d.attach.lock();
    if d.runtime.alive(id) {
        drop(pending);
        let s = d.runtime.attach(id, "-", &flags)?;
        let _ = tx.send(s);
    } else {
        pending
            .entry(id.to_string())
            .or_default()
            .push(Waiting { flags, tx });
    }
    Ok(rx)
}

/// Joins a client's connection to a shim stream until the process ends: frames out (the
/// payload alone on a terminal), the client's input in when `input`. Returns the exit code
/// (when the process ended rather than either side going away) and the client's write half,
/// still open.
pub async fn bridge<IO>(
    io: IO,
    shim: UnixStream,
    tty: bool,
    input: bool,
    detach_keys: &[u8],
) -> (Option<i64>, tokio::io::WriteHalf<IO>)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut cr, mut cw) = tokio::io::split(io);
    let shim = shim
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(shim));
    let Ok(shim) = shim else { return (None, cw) };
    let (mut sr, mut sw) = shim.into_split();
    let (detached_tx, detached) = tokio::sync::oneshot::channel::<()>();
    // Resolves only on a detach: a pump that ends otherwise (or none at all) drops the
    // sender, which must not end the output.
    let detached = async move {
        if detached.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(detached);
    let keys = detach_keys.to_vec();
    let pump = input.then(|| {
        tokio::spawn(async move {
            let mut scan = DetachScan::new(keys);
            let mut buf = vec![0u8; 8192];
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let (out, hit) = scan.feed(&buf[..n]);
                if sw.write_all(&out).await.is_err() {
                    return;
                }
                if hit {
                    // Detached: the connection ends, the container's input stays open.
                    let _ = detached_tx.send(());
                    return;
                }
            }
            // The end of the client's input ends the process's (with StdinOnce).
            let _ = sw.shutdown().await;
        })
    });
    let mut code = None;
    loop {
        let mut h = [0u8; frame::HEADER];
        let got = tokio::select! {
            r = sr.read_exact(&mut h) => r.is_ok(),
            _ = &mut detached => false,
        };
        if !got {
            break;
        }
        let (stream, n) = frame::header(&h);
        let mut p = vec![0u8; n];
        if sr.read_exact(&mut p).await.is_err() {
            break;
        }
        if stream == frame::EXIT {
            code = String::from_utf8_lossy(&p).trim().parse().ok();
            break;
        }
        let sent = if tty {
            cw.write_all(&p).await
        } else {
            match cw.write_all(&h).await {
                Ok(()) => cw.write_all(&p).await,
                Err(e) => Err(e),
            }
        };
        if sent.is_err() {
            break;
        }
        let _ = cw.flush().await;
    }
    if let Some(p) = pump {
        p.abort();
    }
    (code, cw)
}

/// Finds the detach sequence in a client's input: bytes that may begin it are held back
/// until it is complete (then dropped) or broken (then passed on), as dockerd's escape proxy.
pub struct DetachScan {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScan {
    pub fn new(keys: Vec<u8>) -> Self {
        DetachScan { keys, matched: 0 }
    }

    /// The bytes to pass on, and whether the sequence is complete.
    pub fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(data.len());
        if self.keys.is_empty() {
            out.extend_from_slice(data);
            return (out, false);
        }
        for &b in data {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            if self.matched > 0 {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                    continue;
                }
            }
            out.push(b);
        }
        (out, false)
    }
}

/// Parses detach keys as Docker writes them (`ctrl-p,ctrl-q`, `a,ctrl-@`).
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, ApiError> {
    let bad = || ApiError::bad_request(format!("Invalid detach keys ({s}) provided"));
    let mut out = Vec::new();
    for k in s.split(',') {
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b @ b'a'..=b'z'] => b - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(bad()),
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(bad());
        }
    }
    Ok(out)
}

/// Docker's default detach keys: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: &[u8] = &[0x10, 0x11];

/// The content type of a process's stream.
pub fn stream_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// A 101 answer taking over the connection.
pub fn switching(tty: bool) -> Resp {
    let mut r = text(StatusCode::SWITCHING_PROTOCOLS, stream_type(tty), "");
    r.headers_mut().insert(
        "Connection",
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    r.headers_mut()
        .insert("Upgrade", hyper::header::HeaderValue::from_static("tcp"));
    r
}

/// `POST /containers/{id}/attach`: the log first when `logs`, then the live streams when
/// `stream`, with the client's input going to the container's stdin when `stdin` and the
/// container keeps it open.
pub async fn attach(
    d: &Arc<Daemon>,
    key: &str,
    mut req: Request<Incoming>,
    q: &Query,
) -> Result<Resp, ApiError> {
    let c = find(d, key)?;
    let (stdin, stdout, stderr) = (q.bool("stdin"), q.bool("stdout"), q.bool("stderr"));
    let input = stdin && c.config.open_stdin;
    let keys = match q.get("detachKeys").filter(|k| !k.is_empty()) {
        Some(k) => parse_detach_keys(k)?,
        None => DEFAULT_DETACH_KEYS.to_vec(),
    };
    let replay = if q.bool("logs") {
        Some(crate::run::log_reader(d, &c, q)?)
    } else {
        None
    };
    // Registered before answering: `docker run` starts the container once it has the 101.
    let shim = if q.bool("stream") {
        Some(connect_or_wait(
            d,
            &c.id,
            attach_flags(input, stdout, stderr),
        )?)
    } else {
        None
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let tty = c.config.tty;
    tokio::spawn(async move {
        let Ok(io) = upgrade.await else { return };
        let mut io = hyper_util::rt::TokioIo::new(io);
        if let Some(mut rx) = replay {
            while let Some(b) = rx.recv().await {
                if io.write_all(&b).await.is_err() {
                    return;
                }
            }
        }
        if let Some(rx) = shim {
            if let Ok(s) = rx.await {
                let (_, mut w) = bridge(io, s, tty, input, &keys).await;
                let _ = w.shutdown().await;
                return;
            }
        }
        let _ = io.shutdown().await;
    });
    Ok(switching(tty))
}

/// The `h` and `w` of a resize request.
pub fn size(q: &Query) -> Result<(u16, u16), ApiError> {
    let get = |k: &str| -> Result<u16, ApiError> {
        let v = q.get(k).unwrap_or("0");
        v.parse()
            .map_err(|_| ApiError::bad_request(format!("invalid {k}: {v:?}")))
    };
    Ok((get("w")?, get("h")?))
}

/// `POST /containers/{id}/resize`.
pub async fn resize(d: &Arc<Daemon>, key: &str, q: &Query) -> Result<Resp, ApiError> {
    let c = find(d, key)?;
    let (w, h) = size(q)?;
    require_running(&c)?;
    let rt = d.runtime.clone();
    let id = c.id.clone();
    let r = tokio::task::spawn_blocking(move || rt.resize(&id, "-", w, h)).await?;
    match r {
        // A container without a terminal has nothing to resize; dockerd ignores it too.
        Err(strata_runtime::lifecycle::RunError::Runtime(m)) if m.contains("no terminal") => {}
        other => other?,
    }
    Ok(text(StatusCode::OK, "text/plain", ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_sequence() {
        assert_eq!(
            parse_detach_keys("ctrl-p,ctrl-q").unwrap(),
            DEFAULT_DETACH_KEYS
        );
        assert_eq!(
            parse_detach_keys("a,ctrl-@,ctrl-\\").unwrap(),
            [b'a', 0, 28]
        );
        assert_eq!(
            parse_detach_keys("ctrl-1").unwrap_err().message,
            "Invalid detach keys (ctrl-1) provided"
        );
        let mut s = DetachScan::new(DEFAULT_DETACH_KEYS.to_vec());
        assert_eq!(
            s.feed(b"ab\x10"),
            (b"ab".to_vec(), false),
            "a possible start is held"
        );
        assert_eq!(
            s.feed(b"c"),
            (b"\x10c".to_vec(), false),
            "then passed on when broken"
        );
        assert_eq!(s.feed(b"x\x10\x10"), (b"x\x10".to_vec(), false));
        assert_eq!(s.feed(b"\x11rest"), (Vec::new(), true));
        let mut none = DetachScan::new(Vec::new());
        assert_eq!(none.feed(b"\x10\x11"), (b"\x10\x11".to_vec(), false));
    }
}
