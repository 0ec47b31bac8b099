//! Pushing images: for each tag, its layers (at most `--max-concurrent-uploads` at once),
//! its config, then its manifest. A layer whose compressed blob the registry already has
//! (known from the pull or an earlier push) is not sent again; one held by another
//! repository of the same registry is mounted from there; only the others are compressed
//! (gzip) and streamed up, their digests computed on the way.

use crate::client::{Mount, RegistryClient};
use crate::credentials::AuthConfig;
use crate::manifest::{DOCKER_MANIFEST, OCI_MANIFEST};
use crate::metadata::BlobRecord;
use crate::progress::{short, Progress, Sink};
use crate::service::{Distribution, DistributionError};
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_graph::digest::DigestReader;
use strata_graph::image::{Image, Reference};
use strata_graph::{chain_id, ChainId, DiffId, Digest};

const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// What one tag's push did.
#[derive(Debug, Clone, PartialEq)]
pub struct Pushed {
    pub tag: String,
    pub digest: Digest,
    pub size: usize,
    /// Layers sent (compressed here), as opposed to found or mounted.
    pub uploaded: usize,
}

/// How a layer got into the registry.
enum Placed {
    Existed(BlobRecord),
    Mounted(BlobRecord),
    Uploaded(BlobRecord),
}

impl Placed {
    fn record(&self) -> &BlobRecord {
        match self {
            Placed::Existed(r) | Placed::Mounted(r) | Placed::Uploaded(r) => r,
        }
    }
}

/// Counts bytes read through it and reports them now and then.
struct Counting<'a, R> {
    inner: R,
    n: u64,
    last: Instant,
    report: &'a dyn Fn(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        if self.last.elapsed() >= Duration::from_millis(100) {
            self.last = Instant::now();
            (self.report)(self.n);
        }
        Ok(n)
    }
}

impl Distribution {
    /// Pushes `reference`'s tag, or every tag of its repository when it has none.
    pub fn push(
        &self,
        reference: &Reference,
        auth: &AuthConfig,
        progress: Sink<'_>,
    ) -> Result<Vec<Pushed>, DistributionError> {
        let name = reference.name();
        let mut tags: Vec<(String, Image)> = Vec::new();
        match &reference.tag {
            Some(t) => {
                let full = format!("{name}:{t}");
                let img = self
                    .images
                    .get(&full)
                    .map_err(|_| DistributionError::NoLocalImage(reference.familiar_name()))?;
                tags.push((t.clone(), img));
            }
            None => {
                for img in self.images.list() {
                    for r in self.images.references(&img.id) {
                        if r.name() == name {
                            if let Some(t) = &r.tag {
                                tags.push((t.clone(), img.clone()));
                            }
                        }
                    }
                }
                tags.sort_by(|a, b| a.0.cmp(&b.0));
                if tags.is_empty() {
                    return Err(DistributionError::NoLocalImage(reference.familiar_name()));
                }
            }
        }
        progress(Progress::line(format!(
            "The push refers to repository [{}]",
            reference.familiar_name()
        )));
        self.with_endpoint(&reference.domain, true, auth, |_, client| {
            let mut out = Vec::new();
            for (tag, img) in &tags {
                out.push(self.push_tag(&client, reference, tag, img, progress)?);
            }
            Ok(out)
        })
    }

    fn push_tag(
        &self,
        client: &Arc<RegistryClient>,
        r: &Reference,
        tag: &str,
        img: &Image,
        progress: Sink<'_>,
    ) -> Result<Pushed, DistributionError> {
        let diffs = &img.head.rootfs.diff_ids;
        let mut chains: Vec<ChainId> = Vec::new();
        for d in diffs {
            chains.push(chain_id(chains.last(), d));
        }
        // Top layer first, as dockerd lists them.
        for d in diffs.iter().rev() {
            progress(Progress::of(&short(d), "Preparing"));
        }
        // Authorize once before the uploads run side by side.
        client.ping()?;
        let placed: Vec<Mutex<Option<Result<Placed, DistributionError>>>> =
            diffs.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let workers = self.max_uploads().min(diffs.len().max(1));
        if diffs.len() > workers {
            for d in diffs.iter().rev().skip(workers) {
                progress(Progress::of(&short(d), "Waiting"));
            }
        }
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    // Top layer first.
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    if k >= diffs.len() {
                        break;
                    }
                    let i = diffs.len() - 1 - k;
                    let res = self.place_layer(client, r, &diffs[i], &chains[i], progress);
                    let failed = res.is_err();
                    *placed[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(res);
                    if failed {
                        next.store(diffs.len(), Ordering::SeqCst);
                    }
                });
            }
        });
        let mut records = Vec::new();
        let mut uploaded = 0;
        for (i, p) in placed.into_iter().enumerate() {
            let p = p
                .into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(|| {
                    Err(DistributionError::Blob(format!(
                        "layer {} was not pushed",
                        diffs[i]
                    )))
                })?;
            if matches!(p, Placed::Uploaded(_)) {
                uploaded += 1;
            }
            records.push(p.record().clone());
        }
        // The config, as stored (its digest is the image ID).
        let oci = records
            .iter()
            .any(|b| b.media_type.starts_with("application/vnd.oci."));
        if !client.blob_exists(&r.path, &img.id)? {
            client.upload_bytes(&r.path, &img.id, &img.config)?;
        }
        let layers: Vec<serde_json::Value> = records
            .iter()
            .map(|b| {
                let mt = if oci && b.media_type == DOCKER_LAYER {
                    OCI_GZIP_LAYER
                } else {
                    b.media_type.as_str()
                };
                serde_json::json!({ "mediaType": mt, "size": b.size, "digest": b.digest.to_string() })
            })
            .collect();
        let (mt, config_mt) = if oci {
            (OCI_MANIFEST, OCI_CONFIG)
        } else {
            (DOCKER_MANIFEST, DOCKER_CONFIG)
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": mt,
            "config": { "mediaType": config_mt, "size": img.config.len(), "digest": img.id.to_string() },
            "layers": layers,
        });
        let bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| DistributionError::Invalid(e.to_string()))?;
        let digest = client.put_manifest(&r.path, tag, mt, &bytes)?;
        self.images
            .tag(&img.id, &format!("{}@{digest}", r.name()))?;
        progress(Progress::line(format!(
            "{tag}: digest: {digest} size: {}",
            bytes.len()
        )));
        progress(Progress::Aux(serde_json::json!({
            "Tag": tag, "Digest": digest.to_string(), "Size": bytes.len()
        })));
        Ok(Pushed {
            tag: tag.to_string(),
            digest,
            size: bytes.len(),
            uploaded,
        })
    }

    /// Gets one layer into the repository: found, mounted, or compressed and uploaded.
    fn place_layer(
        &self,
        client: &RegistryClient,
        r: &Reference,
        diff: &DiffId,
        chain: &ChainId,
        progress: Sink<'_>,
    ) -> Result<Placed, DistributionError> {
        let id = short(diff);
        let known: Vec<BlobRecord> = self
            .metadata
            .get(diff)
            .into_iter()
            .filter(|b| b.registry == r.domain)
            .collect();
        for b in known.iter().filter(|b| b.repository == r.path) {
            if client.blob_exists(&r.path, &b.digest)? {
                progress(Progress::of(&id, "Layer already exists"));
                return Ok(Placed::Existed(b.clone()));
            }
        }
        for b in known.iter().filter(|b| b.repository != r.path) {
            match client.mount_blob(&r.path, &b.digest, &b.repository)? {
                Mount::Mounted => {
                    let rec = BlobRecord {
                        repository: r.path.clone(),
                        ..b.clone()
                    };
                    self.remember(diff, &rec);
                    progress(Progress::of(&id, format!("Mounted from {}", b.repository)));
                    return Ok(Placed::Mounted(rec));
                }
                Mount::Upload(loc) => {
                    // Not mounted: the upload it opened is not used.
                    let _ = client.send("DELETE", &loc, &[], crate::client::Body::Empty);
                }
            }
        }
        let rec = self.upload_layer(client, r, diff, chain, &id, progress)?;
        self.remember(diff, &rec);
        progress(Progress::of(&id, "Pushed"));
        Ok(Placed::Uploaded(rec))
    }

    fn remember(&self, diff: &DiffId, rec: &BlobRecord) {
        if let Err(e) = self.metadata.add(diff, rec.clone()) {
            tracing::warn!("recording layer metadata: {e}");
        }
    }

    /// Compresses a layer while uploading it.
    fn upload_layer(
        &self,
        client: &RegistryClient,
        r: &Reference,
        diff: &DiffId,
        chain: &ChainId,
        id: &str,
        progress: Sink<'_>,
    ) -> Result<BlobRecord, DistributionError> {
        let layers = self.images.layers();
        let total = layers.get(chain).map(|l| l.tar_bytes).unwrap_or(0);
        let export = layers.export(chain)?;
        let report = |n: u64| {
            progress(Progress::Bytes {
                id: id.to_string(),
                status: "Pushing".into(),
                current: n.min(total),
                total,
            })
        };
        let counted = Counting {
            inner: export,
            n: 0,
            last: Instant::now(),
            report: &report,
        };
        let gz = flate2::read::GzEncoder::new(counted, flate2::Compression::fast());
        let mut hashed = DigestReader::new(gz);
        let loc = client.start_upload(&r.path)?;
        let loc = client.upload_stream(&loc, &mut hashed)?;
        let digest = hashed.digest();
        let size = hashed.count();
        let export_digest = hashed.get_ref().get_ref().inner.digest();
        if export_digest != *diff {
            let _ = client.send("DELETE", &loc, &[], crate::client::Body::Empty);
            return Err(DistributionError::Blob(format!(
                "layer {diff} does not match its content (exported {export_digest}); the store may be damaged"
            )));
        }
        client.finish_upload(&loc, &digest, &[])?;
        report(total);
        Ok(BlobRecord {
            digest,
            media_type: DOCKER_LAYER.into(),
            size,
            registry: r.domain.clone(),
            repository: r.path.clone(),
        })
    }
}
