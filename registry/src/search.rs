//! `GET /images/search`: the registry's search API (`/v1/search`, what Docker Hub serves);
//! a registry without one (the distribution registry) is searched through its catalog
//! (`/v2/_catalog`), the repositories whose name contains the term.

use crate::client::RegistryError;
use crate::credentials::AuthConfig;
use crate::endpoints::DOCKER_HUB;
use crate::service::{Distribution, DistributionError};
use std::io::Read;

/// One search result, as the Engine API answers it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SearchResult {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub star_count: u64,
    #[serde(default)]
    pub is_official: bool,
    #[serde(default)]
    pub is_automated: bool,
}

/// Splits a search term into registry and query: `127.0.0.1:5000/app` → (that host, `app`);
/// anything without a registry part searches Docker Hub.
pub fn split_term(term: &str) -> (String, String) {
    match term.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            let domain = if first == "index.docker.io" {
                DOCKER_HUB.to_string()
            } else {
                first.to_string()
            };
            (domain, rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), term.to_string()),
    }
}

/// A JSON answer of at most 16 MiB.
fn json_body(
    resp: crate::client::Response,
    url: &str,
    what: &str,
) -> Result<serde_json::Value, DistributionError> {
    let mut body = Vec::new();
    resp.body
        .take(16 << 20)
        .read_to_end(&mut body)
        .map_err(|source| RegistryError::Io {
            url: url.to_string(),
            source,
        })?;
    serde_json::from_slice(&body).map_err(|e| DistributionError::Invalid(format!("{what}: {e}")))
}

impl Distribution {
    /// Searches the registry the term names for at most `limit` repositories.
    pub fn search(
        &self,
        term: &str,
        limit: usize,
        auth: &AuthConfig,
    ) -> Result<Vec<SearchResult>, DistributionError> {
        let (domain, query) = split_term(term);
        if query.is_empty() {
            return Err(DistributionError::Invalid("no search term given".into()));
        }
        self.with_endpoint(&domain, true, auth, |_, client| {
            let path = format!("/v1/search?q={}&n={limit}", crate::url::escape(&query));
            let resp = client.request("GET", &path, &[])?;
            if resp.head.status == 200 {
                let v = json_body(resp, &path, "search answer")?;
                let mut out: Vec<SearchResult> =
                    serde_json::from_value(v["results"].clone()).unwrap_or_default();
                out.truncate(limit);
                return Ok(out);
            }
            // No search API: the catalog.
            let mut out = Vec::new();
            let mut next = Some(format!("/v2/_catalog?n={}", 1000));
            while let Some(p) = next.take() {
                let resp = client.request("GET", &p, &[])?;
                if resp.head.status != 200 {
                    return Err(DistributionError::Invalid(format!(
                        "the registry {domain} offers neither search nor a catalog (status {})",
                        resp.head.status
                    )));
                }
                next = resp
                    .head
                    .header("Link")
                    .and_then(|l| l.split(';').next())
                    .map(|l| l.trim().trim_matches(['<', '>']).to_string())
                    .filter(|l| !l.is_empty());
                let v = json_body(resp, &p, "catalog answer")?;
                for name in v["repositories"].as_array().into_iter().flatten() {
                    let Some(name) = name.as_str() else { continue };
                    if name.contains(query.as_str()) && out.len() < limit {
                        out.push(SearchResult {
                            name: name.to_string(),
                            description: String::new(),
                            star_count: 0,
                            is_official: false,
                            is_automated: false,
                        });
                    }
                }
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn terms() {
        assert_eq!(
            super::split_term("busybox"),
            ("docker.io".into(), "busybox".into())
        );
        assert_eq!(
            super::split_term("127.0.0.1:5000/app"),
            ("127.0.0.1:5000".into(), "app".into())
        );
        assert_eq!(
            super::split_term("user/app"),
            ("docker.io".into(), "user/app".into())
        );
    }
}
