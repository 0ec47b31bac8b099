//! `WWW-Authenticate` challenges of a registry's 401 (RFC 7235 syntax): Basic, or Bearer
//! with the token server's `realm`, `service` and `scope`, and the token request they ask
//! for.

use crate::url::escape;

/// One challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: String,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Splits `k="v", k2=v2` parameters (quoted values may hold commas and escapes).
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let mut value = String::new();
        if let Some(q) = rest.strip_prefix('"') {
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &q[end.min(q.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        out.push((key, value));
    }
    out
}

/// The challenges of one `WWW-Authenticate` value; unknown schemes are left out.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    // Schemes start a challenge: split before each `Basic ` / `Bearer ` token outside
    // quotes.
    let lower = header.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut outside = vec![true; bytes.len()];
    let (mut quoted, mut escaped) = (false, false);
    for (i, b) in bytes.iter().enumerate() {
        match (*b, escaped) {
            (_, true) => escaped = false,
            (b'\\', false) if quoted => escaped = true,
            (b'"', false) => quoted = !quoted,
            _ => {}
        }
        outside[i] = !quoted && *b != b'"';
    }
    let mut starts: Vec<usize> = ["basic ", "bearer "]
        .iter()
        .flat_map(|s| lower.match_indices(s).map(|(i, _)| i))
        .filter(|i| outside[*i])
        .filter(|i| *i == 0 || matches!(bytes[i - 1], b' ' | b','))
        .collect();
    starts.sort_unstable();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(header.len());
        let part = &header[start..end];
        let (scheme, rest) = part.split_once(' ').unwrap_or((part, ""));
        let p = params(rest);
        let get = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => out.push(Challenge::Basic {
                realm: get("realm").unwrap_or_default(),
            }),
            "bearer" => out.push(Challenge::Bearer {
                realm: get("realm").unwrap_or_default(),
                service: get("service"),
                scope: get("scope"),
            }),
            _ => {}
        }
    }
    out
}

/// The scope of `repository` for `actions` (`repository:library/busybox:pull,push`).
pub fn scope(repository: &str, actions: &[&str]) -> String {
    format!("repository:{repository}:{}", actions.join(","))
}

/// The token request of a Bearer challenge: its realm with `service` and each scope (the
/// challenge's, and those given) as query parameters.
pub fn token_url(realm: &str, service: Option<&str>, scopes: &[String]) -> String {
    let mut q: Vec<String> = Vec::new();
    if let Some(s) = service {
        q.push(format!("service={}", escape(s)));
    }
    for s in scopes {
        q.push(format!("scope={}", escape(s)));
    }
    if q.is_empty() {
        return realm.to_string();
    }
    let sep = if realm.contains('?') { '&' } else { '?' };
    format!("{realm}{sep}{}", q.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_as_registries_send_them() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        assert_eq!(
            parse(h),
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }]
        );
        assert_eq!(
            parse(r#"Basic realm="basic-realm""#),
            vec![Challenge::Basic {
                realm: "basic-realm".into()
            }]
        );
        // Two challenges in one value; a scope with a comma inside quotes; an escape.
        let two = r#"Basic realm="r\"1", Bearer realm="https://t/token", scope="repository:a/b:pull,push""#;
        assert_eq!(
            parse(two),
            vec![
                Challenge::Basic {
                    realm: "r\"1".into()
                },
                Challenge::Bearer {
                    realm: "https://t/token".into(),
                    service: None,
                    scope: Some("repository:a/b:pull,push".into()),
                }
            ]
        );
        assert_eq!(
            parse(r#"Bearer realm="a basic realm", service="s""#),
            vec![Challenge::Bearer {
                realm: "a basic realm".into(),
                service: Some("s".into()),
                scope: None,
            }],
            "a scheme word inside quotes starts nothing"
        );
        assert_eq!(parse("Negotiate abc"), vec![]);
        assert_eq!(parse(""), vec![]);
    }

    #[test]
    fn token_requests() {
        let s = scope("library/busybox", &["pull", "push"]);
        assert_eq!(s, "repository:library/busybox:pull,push");
        assert_eq!(
            token_url("https://auth.docker.io/token", Some("registry.docker.io"), &[s]),
            "https://auth.docker.io/token?service=registry.docker.io&scope=repository%3Alibrary%2Fbusybox%3Apull%2Cpush"
        );
        assert_eq!(
            token_url("https://t/token?x=1", None, &["a".into()]),
            "https://t/token?x=1&scope=a"
        );
        assert_eq!(token_url("https://t/token", None, &[]), "https://t/token");
    }
}
