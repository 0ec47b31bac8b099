//! Image distribution (issue #7): what Strata needs to talk to registries, apart from the
//! daemon and the store so that it can be tested against a registry on its own.
//!
//! Its own crate because the distribution protocol (manifests and indexes, platform
//! selection, auth challenges, the Engine API's registry credentials) is independent of the
//! image store and of the HTTP server, and the transport that comes next (blob streams with
//! ranges, TLS per registry) should not pull their dependencies in.
//!
//! So far: [`client`], a blocking client of one registry (ping, manifests, blobs from an
//! offset, Basic and Bearer auth, redirects), and the parsing and selection parts:
//! - [`manifest`]: Docker schema2 and OCI manifests and indexes, by media type;
//! - [`platform`]: `--platform` values and the index entry that matches this host or them;
//! - [`challenge`]: `WWW-Authenticate` challenges (Basic, Bearer with realm/service/scope);
//! - [`credentials`]: the Engine API's `X-Registry-Auth` header and `/auth` body;
//! - [`url`]: percent-encoding, and [`http1`]: reading HTTP/1.1 responses, both shared with
//!   the Engine API client.

pub mod challenge;
pub mod client;
pub mod credentials;
pub mod endpoints;
pub mod http1;
pub mod manifest;
pub mod metadata;
pub mod platform;
pub mod progress;
pub mod proxy;
pub mod pull;
pub mod push;
pub mod search;
pub mod service;
pub mod tls;
pub mod transfers;
pub mod url;
