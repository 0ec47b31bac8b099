//! Response bodies, query strings, and the bridges between async bodies and blocking readers
//! and writers.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Response, StatusCode};
use std::io;

/// Every response's type.
pub type Resp = Response<BoxBody<Bytes, io::Error>>;

fn full(b: impl Into<Bytes>) -> BoxBody<Bytes, io::Error> {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A JSON response.
pub fn json(status: StatusCode, v: &serde_json::Value) -> Resp {
    let mut r = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "Content-Type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// A response with a plain body.
pub fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "Content-Type",
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// A streamed response fed from a channel.
pub fn stream(
    status: StatusCode,
    content_type: &'static str,
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
) -> Resp {
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(Frame::data), rx))
    });
    let mut r = Response::new(StreamBody::new(s).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        "Content-Type",
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// Query parameters, repeatable.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    pub fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
    /// A boolean as dockerd reads one: "1"/"true" (any case) are true.
    pub fn bool(&self, k: &str) -> bool {
        self.get(k)
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(v) => {
                    out.push(v);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a query string.
pub fn query(q: Option<&str>) -> Query {
    Query(
        q.unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (unescape(k), unescape(v)),
                None => (unescape(p), String::new()),
            })
            .collect(),
    )
}

/// Percent-decodes a path segment (image names arrive escaped).
pub fn decode_path(s: &str) -> String {
    unescape(&s.replace('+', "%2B"))
}

/// A blocking reader over a request body.
pub struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl BodyReader {
    /// Starts pumping `body` into a reader for a blocking task.
    pub fn new(mut body: Incoming) -> BodyReader {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(frame) = body.frame().await {
                let item = match frame {
                    Ok(f) => match f.into_data() {
                        Ok(d) => Ok(d),
                        Err(_) => continue,
                    },
                    Err(e) => Err(io::Error::other(e)),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        BodyReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = self.cur.len().min(buf.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Reads a whole JSON request body (at most `limit` bytes); `None` when the body is empty.
/// Malformed JSON is a 400 naming line and column, as dockerd reports it.
pub async fn read_json(
    body: Incoming,
    limit: usize,
) -> Result<Option<serde_json::Value>, crate::ApiError> {
    let limited = http_body_util::Limited::new(body, limit);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| crate::ApiError::bad_request(format!("reading the request body: {e}")))?
        .to_bytes();
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| crate::ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// A blocking writer into a streamed response.
pub struct ChannelWriter(pub tokio::sync::mpsc::Sender<io::Result<Bytes>>);

impl io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn queries() {
        let q = super::query(Some("names=a%2Fb%3A1&names=c&quiet=1&x"));
        assert_eq!(q.all("names"), vec!["a/b:1", "c"]);
        assert!(q.bool("quiet"));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(
            super::decode_path("localhost%3A5000%2Fapp"),
            "localhost:5000/app"
        );
    }
}
