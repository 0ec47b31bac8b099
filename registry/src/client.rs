//! A blocking client of one registry (the distribution API v2): the ping, manifests by tag
//! or digest, and blobs streamed into a writer from an offset (`Range`, so an interrupted
//! download resumes), following redirects. A 401 is answered once, as its challenge asks:
//! Basic credentials, or a Bearer token fetched from the token server with them.
//!
//! One connection per request, over TCP or TLS (the caller's rustls config: certs.d CAs and
//! client certificates come from there). Callers check blob digests while writing.

use crate::challenge::{self, Challenge};
use crate::credentials::AuthConfig;
use crate::http1::{self, Head};
use crate::manifest::{self, Fetched, ManifestError};
use base64::Engine as _;
use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_graph::Digest;

/// Errors of registry requests, worded as dockerd words them where it has words.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Get \"{url}\": {source}")]
    Connect { url: String, source: io::Error },
    #[error("{url}: {source}")]
    Io { url: String, source: io::Error },
    #[error("unauthorized: authentication required")]
    Unauthorized,
    #[error("no basic auth credentials")]
    NoBasicCredentials,
    /// As dockerd words it: `Get "URL": no basic auth credentials`.
    #[error("{method} \"{url}\": no basic auth credentials")]
    NoBasicCredentialsFor { method: String, url: String },
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    #[error("blob unknown: {0}")]
    BlobUnknown(Digest),
    #[error("{url}: unexpected status {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("manifest digest mismatch: asked for {want}, got {got}")]
    ManifestDigest { want: Digest, got: Digest },
    #[error("invalid URL {0}")]
    Url(String),
    #[error("too many redirects from {0}")]
    Redirects(String),
    #[error("login attempt to {0} failed with status: 401 Unauthorized")]
    LoginFailed(String),
    #[error("proxy {proxy}: {reason}")]
    Proxy { proxy: String, reason: String },
}

/// A request body.
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// Sent chunked, as it is read.
    Chunked(&'a mut dyn Read),
}

/// `http` or `https` with its TLS settings.
#[derive(Clone)]
pub enum Scheme {
    Http,
    Https(Arc<rustls::ClientConfig>),
}

/// A parsed `scheme://host[:port]/path?query`.
struct Url {
    tls: bool,
    host: String,
    port: u16,
    target: String,
}

fn parse_url(u: &str) -> Option<Url> {
    let (tls, rest) = if let Some(r) = u.strip_prefix("https://") {
        (true, r)
    } else {
        (false, u.strip_prefix("http://")?)
    };
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse::<u16>() {
            Ok(p) => (h.to_string(), p),
            Err(_) => (authority.to_string(), if tls { 443 } else { 80 }),
        },
        _ => (authority.to_string(), if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return None;
    }
    Some(Url {
        tls,
        host,
        port,
        target,
    })
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A connection, and whether requests on it name absolute URLs (plain HTTP through a
/// proxy), with the proxy's authorization if it has one.
type Connection = (Box<dyn Stream>, Option<Option<String>>);

/// A response: its head and its body as a reader.
pub struct Response {
    pub head: Head,
    pub body: Box<dyn Read + Send>,
}

/// A client of one registry for one repository's scope.
pub struct RegistryClient {
    /// `host[:port]`.
    host: String,
    scheme: Scheme,
    auth: AuthConfig,
    /// The Bearer token (or Basic header) that last worked.
    authorization: Mutex<Option<String>>,
    timeout: Duration,
    proxy: crate::proxy::Proxy,
}

impl RegistryClient {
    /// A client of the registry at `host` (`127.0.0.1:5000`, `registry-1.docker.io`).
    pub fn new(host: &str, scheme: Scheme, auth: AuthConfig) -> RegistryClient {
        RegistryClient {
            host: host.to_string(),
            scheme,
            auth,
            authorization: Mutex::new(None),
            timeout: Duration::from_secs(60),
            proxy: Default::default(),
        }
    }

    /// The same client, its requests going through `proxy` where it applies.
    pub fn with_proxy(mut self, proxy: crate::proxy::Proxy) -> RegistryClient {
        self.proxy = proxy;
        self
    }

    /// `host[:port]` of the registry.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn base(&self) -> String {
        match self.scheme {
            Scheme::Http => format!("http://{}", self.host),
            Scheme::Https(_) => format!("https://{}", self.host),
        }
    }

    /// A connection for `url`: direct, or through the proxy (a `CONNECT` tunnel for TLS;
    /// for plain HTTP the request then names the absolute URL, which the second value says,
    /// with the proxy's authorization).
    fn connect(&self, url: &Url, full: &str) -> Result<Connection, RegistryError> {
        let err = |source| RegistryError::Connect {
            url: full.to_string(),
            source,
        };
        let proxy = self.proxy.for_target(url.tls, &url.host, url.port);
        let tcp = match proxy {
            Some(p) => {
                TcpStream::connect((p.host.as_str(), p.port)).map_err(|e| RegistryError::Proxy {
                    proxy: format!("{}:{}", p.host, p.port),
                    reason: e.to_string(),
                })?
            }
            None => {
                TcpStream::connect((url.host.trim_matches(['[', ']']), url.port)).map_err(err)?
            }
        };
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(self.timeout)).map_err(err)?;
        if !url.tls {
            let absolute = proxy.map(|p| p.authorization.clone());
            return Ok((Box::new(tcp), absolute));
        }
        let mut tcp = tcp;
        if let Some(p) = proxy {
            let target = format!("{}:{}", url.host, url.port);
            let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
            if let Some(a) = &p.authorization {
                req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
            }
            req.push_str("\r\n");
            let perr = |reason: String| RegistryError::Proxy {
                proxy: format!("{}:{}", p.host, p.port),
                reason,
            };
            tcp.write_all(req.as_bytes())
                .map_err(|e| perr(e.to_string()))?;
            // Read the answer's head byte by byte: what follows belongs to TLS.
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if head.len() > 16 * 1024 || tcp.read(&mut b).map_err(|e| perr(e.to_string()))? == 0
                {
                    return Err(perr("the proxy closed the connection".into()));
                }
                head.push(b[0]);
            }
            let h = http1::read_head(&mut &head[..]).map_err(|e| perr(e.to_string()))?;
            if h.status != 200 {
                return Err(perr(format!("CONNECT {target}: status {}", h.status)));
            }
        }
        let cfg = match &self.scheme {
            Scheme::Https(c) => c.clone(),
            Scheme::Http => {
                return Err(err(io::Error::other(
                    "a redirect to https, but no TLS settings for it",
                )))
            }
        };
        Ok((
            Box::new(http1::tls_stream(cfg, &url.host, tcp).map_err(err)?),
            None,
        ))
    }

    /// One request to an absolute URL, no retries.
    fn once(
        &self,
        method: &str,
        full: &str,
        headers: &[(&str, String)],
        body: &mut Body<'_>,
    ) -> Result<Response, RegistryError> {
        let url = parse_url(full).ok_or_else(|| RegistryError::Url(full.to_string()))?;
        let (mut s, absolute) = self.connect(&url, full)?;
        let io_err = |source| RegistryError::Io {
            url: full.to_string(),
            source,
        };
        let host = if (url.tls && url.port == 443) || (!url.tls && url.port == 80) {
            url.host.clone()
        } else {
            format!("{}:{}", url.host, url.port)
        };
        let target = match &absolute {
            Some(_) => full.to_string(),
            None => url.target.clone(),
        };
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: strata/{}\r\nConnection: close\r\n",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(Some(a)) = &absolute {
            req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        match body {
            Body::Empty if matches!(method, "PUT" | "POST" | "PATCH") => {
                req.push_str("Content-Length: 0\r\n")
            }
            Body::Empty => {}
            Body::Bytes(b) => req.push_str(&format!("Content-Length: {}\r\n", b.len())),
            Body::Chunked(_) => req.push_str("Transfer-Encoding: chunked\r\n"),
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).map_err(io_err)?;
        match body {
            Body::Empty => {}
            Body::Bytes(b) => s.write_all(b).map_err(io_err)?,
            Body::Chunked(r) => {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = match r.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(io_err(e)),
                    };
                    s.write_all(format!("{n:x}\r\n").as_bytes())
                        .and_then(|_| s.write_all(&buf[..n]))
                        .and_then(|_| s.write_all(b"\r\n"))
                        .map_err(io_err)?;
                }
                s.write_all(b"0\r\n\r\n").map_err(io_err)?;
            }
        }
        s.flush().map_err(io_err)?;
        let mut r = BufReader::with_capacity(1 << 16, s);
        let head = http1::read_head(&mut r).map_err(io_err)?;
        let body = http1::body(r, &head, method == "HEAD");
        Ok(Response { head, body })
    }

    /// A request to `path` on the registry: authorized as its 401 asks (once), redirects
    /// followed (without the registry's authorization, as they lead elsewhere).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
    ) -> Result<Response, RegistryError> {
        self.send(method, path, headers, Body::Empty)
    }

    /// A request with a body to `path` on the registry (or to an absolute URL it gave, such
    /// as an upload's `Location`). A body read as it is sent cannot be sent again: send a
    /// bodiless request first so that the authorization is known.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        mut body: Body<'_>,
    ) -> Result<Response, RegistryError> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base())
        };
        let mut all: Vec<(&str, String)> = headers.to_vec();
        let known = self
            .authorization
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(a) = &known {
            all.push(("Authorization", a.clone()));
        }
        let mut resp = self.once(method, &url, &all, &mut body)?;
        if resp.head.status == 401 && !matches!(body, Body::Chunked(_)) {
            let challenges = resp
                .head
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("WWW-Authenticate"))
                .flat_map(|(_, v)| challenge::parse(v))
                .collect::<Vec<_>>();
            let a = self.authorize(&challenges).map_err(|e| match e {
                RegistryError::NoBasicCredentials => RegistryError::NoBasicCredentialsFor {
                    method: go_method(method),
                    url: url.clone(),
                },
                other => other,
            })?;
            *self.authorization.lock().unwrap_or_else(|p| p.into_inner()) = Some(a.clone());
            let mut retry: Vec<(&str, String)> = headers.to_vec();
            retry.push(("Authorization", a));
            resp = self.once(method, &url, &retry, &mut body)?;
            if resp.head.status == 401 {
                return Err(RegistryError::Unauthorized);
            }
        }
        let mut hops = 0;
        while matches!(method, "GET" | "HEAD")
            && matches!(resp.head.status, 301 | 302 | 303 | 307 | 308)
        {
            hops += 1;
            if hops > 5 {
                return Err(RegistryError::Redirects(url));
            }
            let Some(loc) = resp.head.header("Location").map(String::from) else {
                break;
            };
            let next = if loc.starts_with('/') {
                format!("{}{loc}", self.base())
            } else {
                loc
            };
            resp = self.once(method, &next, headers, &mut Body::Empty)?;
        }
        Ok(resp)
    }

    /// The `Authorization` value a set of challenges asks for.
    fn authorize(&self, challenges: &[Challenge]) -> Result<String, RegistryError> {
        let basic = self.auth.basic().ok().flatten().map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        if !self.auth.registry_token.is_empty() {
            return Ok(format!("Bearer {}", self.auth.registry_token));
        }
        // The first challenge the registry gives is the one answered.
        match challenges.first() {
            None => Err(RegistryError::Unauthorized),
            Some(c) => match c {
                Challenge::Bearer {
                    realm,
                    service,
                    scope,
                } => {
                    let scopes: Vec<String> = scope.iter().cloned().collect();
                    let url = challenge::token_url(realm, service.as_deref(), &scopes);
                    let headers: Vec<(&str, String)> =
                        basic.iter().map(|b| ("Authorization", b.clone())).collect();
                    let resp = self.once("GET", &url, &headers, &mut Body::Empty)?;
                    if resp.head.status != 200 {
                        return Err(RegistryError::Unauthorized);
                    }
                    let body = read_all(resp.body, &url, 1 << 20)?;
                    let v: serde_json::Value =
                        serde_json::from_slice(&body).map_err(|_| RegistryError::Unauthorized)?;
                    let token = v["token"]
                        .as_str()
                        .or_else(|| v["access_token"].as_str())
                        .ok_or(RegistryError::Unauthorized)?;
                    Ok(format!("Bearer {token}"))
                }
                Challenge::Basic { .. } => basic.ok_or(RegistryError::NoBasicCredentials),
            },
        }
    }

    /// `GET /v2/`: whether the registry answers (authorized as it asks).
    pub fn ping(&self) -> Result<(), RegistryError> {
        let resp = self.request("GET", "/v2/", &[])?;
        expect_ok(resp, "/v2/").map(|_| ())
    }

    /// The manifest or index of `repository` at `reference` (a tag or a digest), with its
    /// digest and bytes; a digest reference is checked against the bytes.
    pub fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(Fetched, Digest, Vec<u8>), RegistryError> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let resp = self.request("GET", &path, &[("Accept", manifest::ACCEPT.join(", "))])?;
        if resp.head.status == 404 {
            return Err(RegistryError::ManifestUnknown(format!(
                "{repository}:{reference}"
            )));
        }
        let resp = expect_ok(resp, &path)?;
        let ct = resp.head.header("Content-Type").unwrap_or("").to_string();
        let body = read_all(resp.body, &path, manifest::MAX_MANIFEST_BYTES as u64 + 1)?;
        if body.len() > manifest::MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge.into());
        }
        let got = Digest::of(&body);
        if let Ok(want) = reference.parse::<Digest>() {
            if want != got {
                return Err(RegistryError::ManifestDigest { want, got });
            }
        }
        Ok((manifest::parse(&ct, &body)?, got, body))
    }

    /// Streams blob `digest` of `repository` into `out` from byte `offset` on (a resumed
    /// download); returns the bytes written. A registry that ignores the range starts over
    /// and is read past the first `offset` bytes.
    pub fn blob_to(
        &self,
        repository: &str,
        digest: &Digest,
        offset: u64,
        out: &mut dyn Write,
    ) -> Result<u64, RegistryError> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let headers: Vec<(&str, String)> = if offset > 0 {
            vec![("Range", format!("bytes={offset}-"))]
        } else {
            vec![]
        };
        let resp = self.request("GET", &path, &headers)?;
        if resp.head.status == 404 {
            return Err(RegistryError::BlobUnknown(*digest));
        }
        let partial = resp.head.status == 206;
        let mut resp = expect_ok(resp, &path)?;
        let io_err = |source| RegistryError::Io {
            url: path.clone(),
            source,
        };
        if offset > 0 && !partial {
            io::copy(&mut (&mut resp.body).take(offset), &mut io::sink()).map_err(io_err)?;
        }
        io::copy(&mut resp.body, out).map_err(io_err)
    }
}

/// A method as Go's HTTP client names it in errors (`Get`, `Head`).
fn go_method(m: &str) -> String {
    let mut c = m.chars();
    match c.next() {
        Some(f) => f
            .to_uppercase()
            .chain(c.flat_map(|x| x.to_lowercase()))
            .collect(),
        None => String::new(),
    }
}

/// What a cross-repository mount request got.
pub enum Mount {
    /// The blob is now in the repository.
    Mounted,
    /// The registry did not mount it and opened an upload instead, at this location.
    Upload(String),
}

impl RegistryClient {
    /// The tags of `repository` (following `Link` pages).
    pub fn tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        let mut out = Vec::new();
        let mut path = format!("/v2/{repository}/tags/list");
        for _ in 0..1000 {
            let resp = self.request("GET", &path, &[])?;
            if resp.head.status == 404 {
                return Err(RegistryError::ManifestUnknown(repository.to_string()));
            }
            let resp = expect_ok(resp, &path)?;
            let next = resp
                .head
                .header("Link")
                .and_then(|l| l.split(';').next())
                .map(|l| l.trim().trim_matches(['<', '>']).to_string());
            let body = read_all(resp.body, &path, 16 << 20)?;
            let v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Status {
                    url: path.clone(),
                    status: 200,
                    body: format!("invalid tag list: {e}"),
                })?;
            out.extend(
                v["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(String::from)),
            );
            match next {
                Some(n) if !n.is_empty() => path = n,
                _ => break,
            }
        }
        Ok(out)
    }

    /// Whether `repository` has blob `digest`.
    pub fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let resp = self.request("HEAD", &path, &[])?;
        match resp.head.status {
            404 => Ok(false),
            _ => expect_ok(resp, &path).map(|_| true),
        }
    }

    /// The absolute or registry-relative `Location` of an upload answer.
    fn location(resp: &Response, path: &str) -> Result<String, RegistryError> {
        resp.head
            .header("Location")
            .map(String::from)
            .ok_or_else(|| RegistryError::Status {
                url: path.to_string(),
                status: resp.head.status,
                body: "no Location in the upload answer".into(),
            })
    }

    /// Asks the registry to mount blob `digest` of repository `from` into `repository`.
    pub fn mount_blob(
        &self,
        repository: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<Mount, RegistryError> {
        let path = format!(
            "/v2/{repository}/blobs/uploads/?mount={}&from={}",
            crate::url::escape(&digest.to_string()),
            crate::url::escape(from)
        );
        let resp = self.send("POST", &path, &[], Body::Empty)?;
        match resp.head.status {
            201 => Ok(Mount::Mounted),
            202 => Ok(Mount::Upload(Self::location(&resp, &path)?)),
            _ => expect_ok(resp, &path).map(|_| Mount::Mounted),
        }
    }

    /// Opens an upload in `repository`; returns its location.
    pub fn start_upload(&self, repository: &str) -> Result<String, RegistryError> {
        let path = format!("/v2/{repository}/blobs/uploads/");
        let resp = expect_ok(self.send("POST", &path, &[], Body::Empty)?, &path)?;
        Self::location(&resp, &path)
    }

    /// Sends the content of an upload as one chunked `PATCH`; returns the next location.
    pub fn upload_stream(
        &self,
        location: &str,
        data: &mut dyn Read,
    ) -> Result<String, RegistryError> {
        let resp = self.send(
            "PATCH",
            location,
            &[("Content-Type", "application/octet-stream".into())],
            Body::Chunked(data),
        )?;
        let resp = expect_ok(resp, location)?;
        Self::location(&resp, location)
    }

    /// Ends an upload as blob `digest`, with `last` as its final bytes (may be empty).
    pub fn finish_upload(
        &self,
        location: &str,
        digest: &Digest,
        last: &[u8],
    ) -> Result<(), RegistryError> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!(
            "{location}{sep}digest={}",
            crate::url::escape(&digest.to_string())
        );
        let headers = [("Content-Type", "application/octet-stream".to_string())];
        let resp = self.send("PUT", &url, &headers, Body::Bytes(last))?;
        expect_ok(resp, location).map(|_| ())
    }

    /// Uploads a small blob in one request.
    pub fn upload_bytes(
        &self,
        repository: &str,
        digest: &Digest,
        data: &[u8],
    ) -> Result<(), RegistryError> {
        let loc = self.start_upload(repository)?;
        self.finish_upload(&loc, digest, data)
    }

    /// Puts a manifest under `reference` (a tag or its digest); returns its digest.
    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let resp = self.send(
            "PUT",
            &path,
            &[("Content-Type", media_type.to_string())],
            Body::Bytes(bytes),
        )?;
        expect_ok(resp, &path)?;
        Ok(Digest::of(bytes))
    }
}

/// A 2xx response, or its status and body as an error (401 as dockerd's words).
fn expect_ok(resp: Response, path: &str) -> Result<Response, RegistryError> {
    match resp.head.status {
        200..=299 => Ok(resp),
        401 => Err(RegistryError::Unauthorized),
        status => {
            let body = read_all(resp.body, path, 4096).unwrap_or_default();
            Err(RegistryError::Status {
                url: path.to_string(),
                status,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            })
        }
    }
}

/// A body's first `limit` bytes (callers that must refuse more read one byte past their
/// limit and check).
fn read_all(body: Box<dyn Read + Send>, what: &str, limit: u64) -> Result<Vec<u8>, RegistryError> {
    let mut v = Vec::new();
    body.take(limit)
        .read_to_end(&mut v)
        .map_err(|source| RegistryError::Io {
            url: what.to_string(),
            source,
        })?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("https://registry-1.docker.io/v2/").expect("url");
        assert!(u.tls && u.host == "registry-1.docker.io" && u.port == 443 && u.target == "/v2/");
        let u = parse_url("http://127.0.0.1:5000").expect("url");
        assert!(!u.tls && u.host == "127.0.0.1" && u.port == 5000 && u.target == "/");
        let u = parse_url("http://[::1]:5000/v2/x?y=1").expect("url");
        assert!(u.host == "[::1]" && u.port == 5000 && u.target == "/v2/x?y=1");
        assert!(parse_url("ftp://x").is_none());
        assert!(parse_url("http:///x").is_none());
    }
}
