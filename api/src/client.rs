//! A small blocking HTTP/1.1 client for the Engine API over unix sockets, TCP and TLS: what
//! the `strata` CLI speaks. One connection per request, bodies streamed both ways.

use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Cannot connect to the Strata daemon at {addr}. Is the daemon running? ({source})")]
    Connect { addr: String, source: io::Error },
    #[error("{0}: unsupported host (unix://PATH, tcp://HOST:PORT)")]
    BadHost(String),
    #[error("talking to the daemon at {addr}: {source}")]
    Io { addr: String, source: io::Error },
    #[error("the daemon at {addr} sent a malformed response: {what}")]
    Protocol { addr: String, what: String },
    /// An error response: the daemon's `message` and the status.
    #[error("Error response from daemon: {message}")]
    Daemon { status: u16, message: String },
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A connection and, apart, its writing side.
type Connection = (Box<dyn Stream>, Option<Box<dyn Input>>);

/// The writing side of a connection, when it is wanted apart (`split`) and can be had.
fn input_half<S: Input + 'static>(
    split: bool,
    clone: impl FnOnce() -> io::Result<S>,
) -> Option<Box<dyn Input>> {
    if !split {
        return None;
    }
    clone().ok().map(|w| Box::new(w) as Box<dyn Input>)
}

/// The writing side of a taken-over connection (attach, exec start): the client's input.
pub trait Input: Write + Send {
    /// Ends the input (a half-close: the output keeps coming).
    fn close_write(&mut self);
}

impl Input for UnixStream {
    fn close_write(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl Input for TcpStream {
    fn close_write(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

/// Where the daemon is and how to reach it.
#[derive(Clone)]
pub struct Client {
    addr: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Sent with every request (`X-Registry-Auth`).
    headers: Vec<(String, String)>,
}

/// A request body.
pub enum Body<'a> {
    None,
    Json(serde_json::Value),
    /// Streamed with chunked encoding.
    Stream {
        content_type: &'static str,
        reader: &'a mut dyn Read,
    },
}

/// A response: status, headers, and the body as a reader.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    body: Box<dyn Read + Send>,
    /// A taken-over connection's writing side (not over TLS).
    input: Option<Box<dyn Input>>,
}

impl Response {
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The body as a reader.
    pub fn reader(&mut self) -> &mut (dyn Read + Send) {
        &mut *self.body
    }
    /// The writing side of a taken-over connection, once; `None` over TLS.
    pub fn take_input(&mut self) -> Option<Box<dyn Input>> {
        self.input.take()
    }
    /// The whole body.
    pub fn bytes(mut self) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.body.read_to_end(&mut v)?;
        Ok(v)
    }
}

use strata_registry::http1;
pub use strata_registry::url::escape;

impl Client {
    /// A client for `unix://PATH` or `tcp://HOST:PORT`; TLS over TCP when `tls` is given.
    pub fn new(host: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Client, ClientError> {
        if !(host.starts_with("unix://") || host.starts_with("tcp://")) {
            return Err(ClientError::BadHost(host.into()));
        }
        Ok(Client {
            addr: host.to_string(),
            tls,
            headers: Vec::new(),
        })
    }

    /// The same client, sending `name: value` with each request.
    pub fn with_header(&self, name: &str, value: &str) -> Client {
        let mut c = self.clone();
        c.headers.push((name.to_string(), value.to_string()));
        c
    }

    /// The address this client talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn io(&self) -> impl Fn(io::Error) -> ClientError + '_ {
        move |source| ClientError::Io {
            addr: self.addr.clone(),
            source,
        }
    }

    /// A connection, and its writing side apart when `split` (not over TLS).
    fn connect(&self, split: bool) -> Result<Connection, ClientError> {
        let connect_err = |source| ClientError::Connect {
            addr: self.addr.clone(),
            source,
        };
        if let Some(path) = self.addr.strip_prefix("unix://") {
            let s = UnixStream::connect(path).map_err(connect_err)?;
            let input = input_half(split, || s.try_clone());
            return Ok((Box::new(s), input));
        }
        let hp = self.addr.trim_start_matches("tcp://").trim_end_matches('/');
        let hp = if hp
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            hp.to_string()
        } else {
            format!("{hp}:{}", if self.tls.is_some() { 2376 } else { 2375 })
        };
        let tcp = TcpStream::connect(&hp).map_err(connect_err)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => {
                let input = input_half(split, || tcp.try_clone());
                Ok((Box::new(tcp), input))
            }
            Some(cfg) => {
                let host = hp.rsplit_once(':').map(|(h, _)| h).unwrap_or(&hp);
                // The handshake is done here: certificate errors read as connect errors.
                let s = http1::tls_stream(cfg.clone(), host, tcp).map_err(connect_err)?;
                Ok((Box::new(s), None))
            }
        }
    }

    /// Sends a request; error statuses come back as `Ok` (see `call` for the usual path).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<Response, ClientError> {
        self.send_with(method, path, query, body, false)
    }

    /// Asks for the connection to be taken over (`attach`): the answer is `101 Switching
    /// Protocols` and the body is the raw stream until the daemon closes it.
    pub fn upgrade(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<Response, ClientError> {
        let resp = self.send_with(method, path, query, body, true)?;
        self.checked(resp)
    }

    fn send_with(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Body<'_>,
        upgrade: bool,
    ) -> Result<Response, ClientError> {
        let (mut stream, input) = self.connect(upgrade)?;
        let mut target = path.to_string();
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{k}={}", escape(v)))
                .collect();
            target.push('?');
            target.push_str(&q.join("&"));
        }
        let host = if self.addr.starts_with("unix://") {
            "api.strata"
        } else {
            self.addr.trim_start_matches("tcp://")
        };
        let connection = if upgrade {
            "Connection: Upgrade\r\nUpgrade: tcp"
        } else {
            "Connection: close"
        };
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: strata-cli/{}\r\n{connection}\r\n",
            env!("CARGO_PKG_VERSION")
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let io = self.io();
        match body {
            Body::None => {
                head.push_str("\r\n");
                stream.write_all(head.as_bytes()).map_err(&io)?;
            }
            Body::Json(v) => {
                let data = serde_json::to_vec(&v).unwrap_or_default();
                head.push_str(&format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    data.len()
                ));
                stream.write_all(head.as_bytes()).map_err(&io)?;
                stream.write_all(&data).map_err(&io)?;
            }
            Body::Stream {
                content_type,
                reader,
            } => {
                head.push_str(&format!(
                    "Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
                ));
                stream.write_all(head.as_bytes()).map_err(&io)?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = reader.read(&mut buf).map_err(|e| ClientError::Io {
                        addr: "the local input".into(),
                        source: e,
                    })?;
                    if n == 0 {
                        break;
                    }
                    stream
                        .write_all(format!("{n:x}\r\n").as_bytes())
                        .map_err(&io)?;
                    stream.write_all(&buf[..n]).map_err(&io)?;
                    stream.write_all(b"\r\n").map_err(&io)?;
                }
                stream.write_all(b"0\r\n\r\n").map_err(&io)?;
            }
        }
        stream.flush().map_err(&io)?;
        let mut resp =
            self.read_response(BufReader::with_capacity(1 << 16, stream), method == "HEAD")?;
        resp.input = input;
        Ok(resp)
    }

    fn read_response(
        &self,
        mut r: BufReader<Box<dyn Stream>>,
        head_only: bool,
    ) -> Result<Response, ClientError> {
        let head = http1::read_head(&mut r).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                ClientError::Protocol {
                    addr: self.addr.clone(),
                    what: e.to_string(),
                }
            } else {
                self.io()(e)
            }
        })?;
        let body = http1::body(r, &head, head_only);
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body,
            input: None,
        })
    }

    /// Sends a request and turns an error status into `ClientError::Daemon`.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<Response, ClientError> {
        let resp = self.send(method, path, query, body)?;
        self.checked(resp)
    }

    /// The response, or its error status as `ClientError::Daemon`.
    fn checked(&self, resp: Response) -> Result<Response, ClientError> {
        if resp.status < 400 {
            return Ok(resp);
        }
        Err(self.daemon_error(resp))
    }

    /// An error response as `ClientError::Daemon` with the daemon's `message`.
    fn daemon_error(&self, resp: Response) -> ClientError {
        let status = resp.status;
        let data = match resp.bytes() {
            Ok(d) => d,
            Err(e) => return self.io()(e),
        };
        let message = serde_json::from_slice::<serde_json::Value>(&data)
            .ok()
            .and_then(|v| v["message"].as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&data).trim().to_string());
        ClientError::Daemon { status, message }
    }

    /// A request whose answer is JSON.
    pub fn json(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<serde_json::Value, ClientError> {
        let data = self
            .call(method, path, query, body)?
            .bytes()
            .map_err(self.io())?;
        if data.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&data).map_err(|e| ClientError::Protocol {
            addr: self.addr.clone(),
            what: format!("invalid JSON: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(escape("a/b:c d"), "a%2Fb%3Ac%20d");
        assert!(matches!(
            Client::new("ssh://x", None),
            Err(ClientError::BadHost(_))
        ));
    }
}
