//! Blocking HTTP/1.1 client pieces shared by registry requests and the Engine API client
//! (which write their requests themselves): a TLS stream with its handshake done, and the
//! reading side of responses: the status line and headers, then the body as a reader
//! (chunked, sized or to the end).

use std::io::{self, BufRead, Read};
use std::net::TcpStream;
use std::sync::Arc;

/// A TLS client stream over `tcp` to `host` (a name or an address, brackets allowed), its
/// handshake finished, so that certificate errors show here rather than at the first read.
pub fn tls_stream(
    cfg: Arc<rustls::ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .map_err(|e| io::Error::other(e.to_string()))?;
    let conn =
        rustls::ClientConnection::new(cfg, name).map_err(|e| io::Error::other(e.to_string()))?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .map_err(|e| io::Error::other(e.to_string()))?;
    }
    Ok(s)
}

/// A response's status and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the status line and the headers; `Err` with `InvalidData` for a malformed status
/// line.
pub fn read_head(r: &mut impl BufRead) -> io::Result<Head> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("status line {line:?}"))
        })?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Head { status, headers })
}

/// The body of a response with `head` read from `r`: none for `HEAD` requests (`head_only`),
/// 204 and 304; chunked, sized, or until the connection ends.
pub fn body<R: BufRead + Send + 'static>(
    r: R,
    head: &Head,
    head_only: bool,
) -> Box<dyn Read + Send> {
    if head_only || head.status == 204 || head.status == 304 {
        Box::new(io::empty())
    } else if head
        .header("Transfer-Encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        Box::new(Chunked {
            inner: r,
            left: 0,
            done: false,
        })
    } else if let Some(len) = head
        .header("Content-Length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        Box::new(Sized {
            inner: r,
            left: len,
        })
    } else {
        Box::new(r)
    }
}

/// A body of `Content-Length` bytes: ending before them is an error, not a short body.
struct Sized<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Sized<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.left) as usize;
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the response ended {} bytes early", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A chunked transfer-encoded body.
struct Chunked<R: BufRead> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line.trim().is_empty() {
                // The CRLF after the previous chunk.
                line.clear();
                self.inner.read_line(&mut line)?;
            }
            let size = line.trim().split(';').next().unwrap_or("");
            if size.is_empty() {
                // The connection ended without the last chunk.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the response ended early",
                ));
            }
            self.left = u64::from_str_radix(size, 16)
                .map_err(|_| io::Error::other(format!("bad chunk size {size:?}")))?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = (buf.len() as u64).min(self.left) as usize;
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the response ended early",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &'static [u8], head_only: bool) -> (Head, io::Result<String>) {
        let mut r = io::BufReader::new(text);
        let head = read_head(&mut r).expect("head");
        let mut s = String::new();
        let res = body(r, &head, head_only).read_to_string(&mut s).map(|_| s);
        (head, res)
    }

    #[test]
    fn bodies_chunked_sized_and_to_the_end() {
        let (h, b) = read_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
            false,
        );
        assert_eq!(h.status, 200);
        assert_eq!(b.expect("chunked"), "hello, world");
        let (h, b) = read_all(
            b"HTTP/1.1 206 Partial\r\ncontent-length: 3\r\n\r\nabcdef",
            false,
        );
        assert_eq!((h.status, h.header("Content-Length")), (206, Some("3")));
        assert_eq!(b.expect("sized"), "abc");
        let (_, b) = read_all(b"HTTP/1.0 200 OK\r\n\r\nall of it", false);
        assert_eq!(b.expect("to the end"), "all of it");
        let (_, b) = read_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true);
        assert_eq!(b.expect("HEAD"), "");
        let (_, b) = read_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            false,
        );
        assert!(b.is_err(), "a cut chunk is an error");
        let (_, b) = read_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", false);
        assert!(b.is_err(), "a cut sized body is an error");
        let mut bad = io::BufReader::new(&b"garbage\r\n\r\n"[..]);
        assert_eq!(
            read_head(&mut bad).map_err(|e| e.kind()),
            Err(io::ErrorKind::InvalidData)
        );
    }
}
