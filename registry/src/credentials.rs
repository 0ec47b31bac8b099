//! Registry credentials as the Engine API carries them: the `X-Registry-Auth` header of
//! pull and push (base64url JSON of an auth config) and the body of `POST /auth`.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Errors of credentials.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CredentialsError {
    #[error("invalid auth field: {0}")]
    BadAuthField(String),
}

/// An auth config (dockerd's `AuthConfig`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// base64 of `user:password`, as config.json keeps it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    #[serde(
        default,
        rename = "serveraddress",
        skip_serializing_if = "String::is_empty"
    )]
    pub server_address: String,
    /// An OAuth refresh token, in place of a password.
    #[serde(
        default,
        rename = "identitytoken",
        skip_serializing_if = "String::is_empty"
    )]
    pub identity_token: String,
    /// A bearer token to send to the registry as is.
    #[serde(
        default,
        rename = "registrytoken",
        skip_serializing_if = "String::is_empty"
    )]
    pub registry_token: String,
}

impl AuthConfig {
    /// Reads an `X-Registry-Auth` value. As dockerd does for a pull, a value that does not
    /// decode is taken as no credentials (anonymous), never as an error; both the URL-safe
    /// and the standard alphabet, padded or not, are read.
    pub fn from_header(value: &str) -> AuthConfig {
        let v = value.trim();
        if v.is_empty() {
            return AuthConfig::default();
        }
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        let decoded = [URL_SAFE, URL_SAFE_NO_PAD, STANDARD, STANDARD_NO_PAD]
            .iter()
            .find_map(|e| e.decode(v).ok());
        decoded
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// The header value for this config (base64url of its JSON).
    pub fn to_header(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE.encode(json)
    }

    /// The user name and password to send: the fields, or the `auth` field decoded.
    pub fn basic(&self) -> Result<Option<(String, String)>, CredentialsError> {
        if !self.username.is_empty() || !self.password.is_empty() {
            return Ok(Some((self.username.clone(), self.password.clone())));
        }
        if self.auth.is_empty() {
            return Ok(None);
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(self.auth.trim())
            .map_err(|e| CredentialsError::BadAuthField(e.to_string()))?;
        let text = String::from_utf8(raw)
            .map_err(|_| CredentialsError::BadAuthField("not UTF-8".into()))?;
        let (u, p) = text.split_once(':').ok_or_else(|| {
            CredentialsError::BadAuthField("no ':' between user and password".into())
        })?;
        Ok(Some((u.to_string(), p.to_string())))
    }

    /// Whether no credentials are given at all (an anonymous request).
    pub fn is_anonymous(&self) -> bool {
        self.username.is_empty()
            && self.password.is_empty()
            && self.auth.is_empty()
            && self.identity_token.is_empty()
            && self.registry_token.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_as_the_docker_cli_sends_them() {
        let c = AuthConfig {
            username: "ann".into(),
            password: "s3cr3t?>".into(),
            server_address: "127.0.0.1:5000".into(),
            ..Default::default()
        };
        let h = c.to_header();
        assert!(!h.contains('+') && !h.contains('/'), "URL-safe: {h}");
        assert_eq!(AuthConfig::from_header(&h), c);
        assert_eq!(
            AuthConfig::from_header(h.trim_end_matches('=')),
            c,
            "unpadded"
        );
        let std = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&c).unwrap());
        assert_eq!(AuthConfig::from_header(&std), c, "standard alphabet");
        // What docker sends with no login: "{}" encoded; garbage is anonymous too.
        assert!(AuthConfig::from_header("e30=").is_anonymous());
        assert!(AuthConfig::from_header("!!not base64").is_anonymous());
        assert!(AuthConfig::from_header("").is_anonymous());
        assert_eq!(c.basic(), Ok(Some(("ann".into(), "s3cr3t?>".into()))));
    }

    #[test]
    fn the_auth_field_holds_user_and_password() {
        let c = AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("bob:pa:ss"),
            ..Default::default()
        };
        assert_eq!(c.basic(), Ok(Some(("bob".into(), "pa:ss".into()))));
        assert!(!c.is_anonymous());
        let bad = AuthConfig {
            auth: "%%%".into(),
            ..Default::default()
        };
        assert!(matches!(
            bad.basic(),
            Err(CredentialsError::BadAuthField(_))
        ));
        let no_colon = AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("bob"),
            ..Default::default()
        };
        assert!(matches!(
            no_colon.basic(),
            Err(CredentialsError::BadAuthField(_))
        ));
        assert_eq!(AuthConfig::default().basic(), Ok(None));
    }
}
