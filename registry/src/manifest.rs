//! Manifests and indexes as registries serve them: Docker schema2 manifests and manifest
//! lists, OCI image manifests and indexes. Told apart by the `Content-Type` when it names
//! one, else by the body's `mediaType`, else by its shape; schema1 is refused with the reason.

use crate::platform::Platform;
use serde::Deserialize;
use strata_graph::Digest;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";

/// The `Accept` list of a manifest request: every kind Strata reads.
pub const ACCEPT: &[&str] = &[DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX];

/// The largest manifest read (as containerd's limit): a bigger answer is refused.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// Errors of manifest parsing.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ManifestError {
    #[error("unsupported manifest media type {0}")]
    MediaType(String),
    #[error("schema 1 manifests are not supported (the registry serves only the old format; push the image again with a current client)")]
    Schema1,
    #[error("invalid manifest: {0}")]
    Invalid(String),
    #[error("unsupported layer media type {0}")]
    LayerType(String),
    #[error("manifest is larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    /// Foreign layers: where they are served instead of the registry.
    #[serde(default)]
    pub urls: Vec<String>,
}

impl Descriptor {
    /// A layer's compression, from its media type; unknown types are refused.
    pub fn compression(&self) -> Result<Compression, ManifestError> {
        let t = self.media_type.as_str();
        Ok(match t {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => Compression::Gzip,
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Compression::Zstd,
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
            other => return Err(ManifestError::LayerType(other.to_string())),
        })
    }
}

/// An image manifest: its config and layers, bottom first.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A manifest list or OCI index: manifests per platform.
#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

impl Index {
    /// The entry for `want` (see [`crate::platform::select`]); entries without a platform
    /// (attestations and the like) are never chosen.
    pub fn entry_for(&self, want: &Platform) -> Option<&Descriptor> {
        let with: Vec<(&Descriptor, &Platform)> = self
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref().map(|p| (d, p)))
            .collect();
        crate::platform::select(want, with.iter().map(|(_, p)| *p)).map(|i| with[i].0)
    }
}

/// What a manifest request returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    Manifest(Manifest),
    Index(Index),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// Parses a manifest answer given its `Content-Type` (possibly empty or generic).
pub fn parse(content_type: &str, body: &[u8]) -> Result<Fetched, ManifestError> {
    if body.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge);
    }
    let ct = content_type.split(';').next().unwrap_or("").trim();
    if ct.starts_with(DOCKER_SCHEMA1) {
        return Err(ManifestError::Schema1);
    }
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| ManifestError::Invalid(e.to_string()))?;
    if raw.schema_version == Some(1) {
        return Err(ManifestError::Schema1);
    }
    let named = match ct {
        DOCKER_MANIFEST | DOCKER_LIST | OCI_MANIFEST | OCI_INDEX => ct.to_string(),
        "" | "application/json" | "text/plain" | "application/octet-stream" => {
            match (&raw.media_type, &raw.manifests, &raw.layers) {
                (Some(t), _, _) => t.clone(),
                (None, Some(_), _) => OCI_INDEX.to_string(),
                (None, None, Some(_)) => OCI_MANIFEST.to_string(),
                _ => {
                    return Err(ManifestError::Invalid(
                        "neither layers nor manifests".into(),
                    ))
                }
            }
        }
        other => return Err(ManifestError::MediaType(other.to_string())),
    };
    match named.as_str() {
        DOCKER_MANIFEST | OCI_MANIFEST => {
            let config = raw
                .config
                .ok_or_else(|| ManifestError::Invalid("no config".into()))?;
            let layers = raw.layers.unwrap_or_default();
            for l in &layers {
                l.compression()?;
            }
            Ok(Fetched::Manifest(Manifest {
                media_type: named,
                config,
                layers,
            }))
        }
        DOCKER_LIST | OCI_INDEX => Ok(Fetched::Index(Index {
            media_type: named,
            manifests: raw
                .manifests
                .ok_or_else(|| ManifestError::Invalid("an index without manifests".into()))?,
        })),
        other if other.starts_with(DOCKER_SCHEMA1) => Err(ManifestError::Schema1),
        other => Err(ManifestError::MediaType(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn docker_manifest(layer_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":7,"digest":"{D1}"}},
            "layers":[{{"mediaType":"{layer_type}","size":32,"digest":"{D2}"}}]}}"#
        )
    }

    #[test]
    fn manifests_by_content_type_media_type_or_shape() {
        let body = docker_manifest("application/vnd.docker.image.rootfs.diff.tar.gzip");
        for ct in [DOCKER_MANIFEST, "application/json", ""] {
            let Ok(Fetched::Manifest(m)) = parse(ct, body.as_bytes()) else {
                panic!("{ct}: not a manifest");
            };
            assert_eq!(m.media_type, DOCKER_MANIFEST);
            assert_eq!(m.config.digest.to_string(), D1);
            assert_eq!(m.layers[0].size, 32);
            assert_eq!(m.layers[0].compression(), Ok(Compression::Gzip));
        }
        let zstd = docker_manifest("application/vnd.oci.image.layer.v1.tar+zstd")
            .replace(DOCKER_MANIFEST, OCI_MANIFEST);
        let Ok(Fetched::Manifest(m)) = parse(OCI_MANIFEST, zstd.as_bytes()) else {
            panic!("an OCI manifest");
        };
        assert_eq!(m.layers[0].compression(), Ok(Compression::Zstd));
        let shapeless = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","size":3,"digest":"{D1}","platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#
        );
        let Ok(Fetched::Index(i)) = parse("", shapeless.as_bytes()) else {
            panic!("an index by its shape");
        };
        assert_eq!(i.media_type, OCI_INDEX);
    }

    #[test]
    fn bad_manifests_say_why() {
        let odd = docker_manifest("application/x-rar");
        assert_eq!(
            parse(DOCKER_MANIFEST, odd.as_bytes()),
            Err(ManifestError::LayerType("application/x-rar".into()))
        );
        assert_eq!(
            parse(
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                b"{}"
            ),
            Err(ManifestError::Schema1)
        );
        assert_eq!(
            parse("", br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#),
            Err(ManifestError::Schema1)
        );
        assert!(matches!(
            parse("", b"{not json"),
            Err(ManifestError::Invalid(_))
        ));
        assert!(matches!(
            parse("application/vnd.example+json", b"{}"),
            Err(ManifestError::MediaType(_))
        ));
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert_eq!(parse("", &big), Err(ManifestError::TooLarge));
        let bad_digest = docker_manifest("application/vnd.docker.image.rootfs.diff.tar.gzip")
            .replace(D2, "sha256:nothex");
        assert!(matches!(
            parse(DOCKER_MANIFEST, bad_digest.as_bytes()),
            Err(ManifestError::Invalid(_))
        ));
    }

    #[test]
    fn an_index_picks_the_platform_and_skips_attestations() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
              {{"mediaType":"{OCI_MANIFEST}","size":1,"digest":"{D1}","platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
              {{"mediaType":"{OCI_MANIFEST}","size":2,"digest":"{D2}","platform":{{"os":"linux","architecture":"amd64"}}}},
              {{"mediaType":"{OCI_MANIFEST}","size":3,"digest":"{D2}","annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}}]}}"#
        );
        let Ok(Fetched::Index(i)) = parse(OCI_INDEX, body.as_bytes()) else {
            panic!("an index");
        };
        let amd = Platform::parse("linux/amd64").expect("platform");
        assert_eq!(i.entry_for(&amd).map(|d| d.size), Some(2));
        let arm = Platform::parse("linux/arm64").expect("platform");
        assert_eq!(i.entry_for(&arm).map(|d| d.size), Some(1));
        let s390 = Platform::parse("linux/s390x").expect("platform");
        assert_eq!(i.entry_for(&s390), None);
    }
}
