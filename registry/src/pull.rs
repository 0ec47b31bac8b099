//! Pulling an image: the manifest (from an index, the entry for the platform), the config,
//! then the layers. Layers the store has are taken as they are; the others are downloaded in
//! parallel through the shared [`Transfers`](crate::transfers::Transfers) and unpacked in
//! layer order while they download. The image exists only once every layer is in; a failure
//! releases what the pull took, so the store is as before (partial downloads stay, to be
//! resumed).

use crate::client::{RegistryClient, RegistryError};
use crate::credentials::AuthConfig;
use crate::manifest::{Fetched, Manifest};
use crate::metadata::BlobRecord;
use crate::platform::Platform;
use crate::progress::{short, Progress, Sink};
use crate::service::{Distribution, DistributionError};
use crate::transfers::{BlobSource, FetchError, Handle, Phase, Snapshot};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_graph::image::{ConfigHead, Reference};
use strata_graph::{chain_id, ChainId, Digest, RegisterOpts};

/// The largest image config read.
const MAX_CONFIG_BYTES: u64 = 32 << 20;
/// Progress lines of one id come at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// What a pull did.
#[derive(Debug, Clone, PartialEq)]
pub struct Pulled {
    /// The image ID.
    pub id: Digest,
    /// The digest of the manifest (or index) the reference named.
    pub digest: Digest,
    /// The reference now pointing at the image (`name:tag` or `name@digest`).
    pub reference: Reference,
    /// Whether the image or the tag is new (`Downloaded newer image`) or not (`Image is up
    /// to date`).
    pub changed: bool,
}

/// Blobs of one repository of one registry.
struct RegistrySource {
    client: Arc<RegistryClient>,
    repository: String,
}

impl BlobSource for RegistrySource {
    fn fetch(&self, digest: &Digest, offset: u64, out: &mut dyn Write) -> Result<u64, FetchError> {
        self.client
            .blob_to(&self.repository, digest, offset, out)
            .map_err(|e| FetchError {
                retryable: matches!(e, RegistryError::Io { .. } | RegistryError::Connect { .. }),
                message: e.to_string(),
            })
    }
}

/// References the pull holds on layers; released at the end, whatever happens.
struct Held<'a> {
    d: &'a Distribution,
    chains: Vec<ChainId>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        for c in self.chains.drain(..).rev() {
            if let Err(e) = self.d.images.layers().release(&c) {
                tracing::error!(layer = %c, "releasing a pull's layer: {e}");
            }
        }
    }
}

impl Distribution {
    /// Pulls `reference` (a tag or a digest; `latest` when neither) for `platform` (this
    /// host's when `None`).
    pub fn pull(
        &self,
        reference: &Reference,
        platform: Option<&Platform>,
        auth: &AuthConfig,
        progress: Sink<'_>,
    ) -> Result<Pulled, DistributionError> {
        let mut r = reference.clone();
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".into());
        }
        let tag_or_digest = match (&r.digest, &r.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        };
        self.with_endpoint(&r.domain, false, auth, |ep, client| {
            tracing::info!(reference = %r, endpoint = ?ep, "pulling");
            self.pull_from(&client, &r, &tag_or_digest, platform, progress)
        })
    }

    /// Pulls every tag of `reference`'s repository.
    pub fn pull_all_tags(
        &self,
        reference: &Reference,
        platform: Option<&Platform>,
        auth: &AuthConfig,
        progress: Sink<'_>,
    ) -> Result<Vec<Pulled>, DistributionError> {
        let mut tags = self.with_endpoint(&reference.domain, false, auth, |_, client| {
            client.tags(&reference.path).map_err(|e| match e {
                RegistryError::ManifestUnknown(_) => {
                    DistributionError::NotFound(reference.familiar_name())
                }
                other => other.into(),
            })
        })?;
        tags.sort();
        let mut out = Vec::new();
        for t in tags {
            let mut r = reference.clone();
            r.tag = Some(t);
            r.digest = None;
            out.push(self.pull(&r, platform, auth, progress)?);
        }
        Ok(out)
    }

    fn pull_from(
        &self,
        client: &Arc<RegistryClient>,
        r: &Reference,
        tag_or_digest: &str,
        platform: Option<&Platform>,
        progress: Sink<'_>,
    ) -> Result<Pulled, DistributionError> {
        let (fetched, digest, _) =
            client
                .manifest(&r.path, tag_or_digest)
                .map_err(|e| match e {
                    RegistryError::ManifestUnknown(_) => DistributionError::NotFound(r.familiar()),
                    RegistryError::Unauthorized => DistributionError::PullDenied(r.familiar_name()),
                    other => other.into(),
                })?;
        let want = platform.cloned().unwrap_or_else(Platform::host);
        let manifest: Manifest = match fetched {
            Fetched::Manifest(m) => m,
            Fetched::Index(idx) => {
                let entry = idx
                    .entry_for(&want)
                    .ok_or_else(|| DistributionError::NoPlatform(want.text()))?;
                tracing::info!(platform = %want.text(), manifest = %entry.digest, "chose the index entry");
                match client.manifest(&r.path, &entry.digest.to_string())?.0 {
                    Fetched::Manifest(m) => m,
                    Fetched::Index(_) => {
                        return Err(DistributionError::Invalid(
                            "an index entry is another index".into(),
                        ))
                    }
                }
            }
        };
        progress(Progress::of(
            tag_or_digest,
            format!("Pulling from {}", r.familiar_name()),
        ));
        let config = self.fetch_config(client, &r.path, &manifest)?;
        let head = ConfigHead::parse(&config)?;
        if let Some(p) = platform {
            let actual = Platform {
                os: head.os.clone().unwrap_or_default(),
                architecture: head.architecture.clone().unwrap_or_default(),
                variant: serde_json::from_slice::<serde_json::Value>(&config)
                    .ok()
                    .and_then(|v| v["variant"].as_str().map(String::from)),
            };
            if p.rank(&actual).is_none() {
                return Err(DistributionError::WrongPlatform {
                    reference: r.familiar(),
                    wanted: p.text(),
                    actual: actual.text(),
                });
            }
        }
        if head.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(DistributionError::Invalid(format!(
                "layers from manifest don't match image configuration: the manifest lists {}, the config {}",
                manifest.layers.len(),
                head.rootfs.diff_ids.len()
            )));
        }
        for l in &manifest.layers {
            l.compression()?;
        }
        let id = Digest::of(&config);
        let existed = self.images.get(&id.to_string()).is_ok();
        // The layers stay held until the image holds them.
        let mut held = Held {
            d: self,
            chains: Vec::new(),
        };
        self.pull_layers(client, r, &manifest, &head, &mut held, progress)?;
        let img = self.images.create(&config)?;
        drop(held);
        // The reference the user named, and the digest it resolved to.
        let digest_ref = format!("{}@{}", r.name(), digest);
        let mut changed = !existed;
        let named = match &r.tag {
            Some(t) if r.digest.is_none() => {
                let tagged = format!("{}:{t}", r.name());
                let before = self.images.get(&tagged).ok().map(|i| i.id);
                self.images.tag(&img.id, &tagged)?;
                changed |= before != Some(img.id);
                tagged
            }
            _ => digest_ref.clone(),
        };
        self.images.tag(&img.id, &digest_ref)?;
        progress(Progress::line(format!("Digest: {digest}")));
        let reference = Reference::parse(&named).map_err(strata_graph::image::ImageError::from)?;
        progress(Progress::line(if changed {
            format!(
                "Status: Downloaded newer image for {}",
                reference.familiar()
            )
        } else {
            format!("Status: Image is up to date for {}", reference.familiar())
        }));
        Ok(Pulled {
            id: img.id,
            digest,
            reference,
            changed,
        })
    }

    /// The image config blob, checked against its digest.
    fn fetch_config(
        &self,
        client: &RegistryClient,
        repository: &str,
        m: &Manifest,
    ) -> Result<Vec<u8>, DistributionError> {
        if m.config.size > MAX_CONFIG_BYTES {
            return Err(DistributionError::Invalid(format!(
                "image config of {} bytes is larger than {MAX_CONFIG_BYTES}",
                m.config.size
            )));
        }
        let mut buf = Vec::new();
        client
            .blob_to(repository, &m.config.digest, 0, &mut buf)
            .map_err(|e| match e {
                RegistryError::BlobUnknown(d) => {
                    DistributionError::Blob(format!("image config {d} is not in the registry"))
                }
                other => other.into(),
            })?;
        if Digest::of(&buf) != m.config.digest {
            return Err(DistributionError::Blob(format!(
                "image config verification failed for digest {}",
                m.config.digest
            )));
        }
        Ok(buf)
    }

    /// Brings every layer of `m` into the layer store.
    fn pull_layers(
        &self,
        client: &Arc<RegistryClient>,
        r: &Reference,
        m: &Manifest,
        head: &ConfigHead,
        held: &mut Held<'_>,
        progress: Sink<'_>,
    ) -> Result<(), DistributionError> {
        let layers = self.images.layers();
        let source: Arc<dyn BlobSource> = Arc::new(RegistrySource {
            client: client.clone(),
            repository: r.path.clone(),
        });
        // Layers the store has are held now so that nothing removes them meanwhile; the
        // others are joined to (or start) their downloads.
        let mut parent: Option<ChainId> = None;
        let mut plan: Vec<(ChainId, Option<Handle>)> = Vec::new();
        let mut missing_from = None;
        for (i, (desc, diff)) in m.layers.iter().zip(&head.rootfs.diff_ids).enumerate() {
            let chain = chain_id(parent.as_ref(), diff);
            parent = Some(chain);
            if missing_from.is_none() {
                if layers.retain(&chain).is_ok() {
                    held.chains.push(chain);
                    progress(Progress::of(&short(&desc.digest), "Already exists"));
                    plan.push((chain, None));
                    continue;
                }
                missing_from = Some(i);
            }
            progress(Progress::of(&short(&desc.digest), "Pulling fs layer"));
            let (h, _) = self.transfers.join(&desc.digest, desc.size, source.clone());
            plan.push((chain, Some(h)));
        }
        let stop = AtomicBool::new(false);
        let res = std::thread::scope(|scope| {
            for (i, (_, h)) in plan.iter().enumerate() {
                if let Some(h) = h {
                    let stop = &stop;
                    let id = short(&m.layers[i].digest);
                    scope.spawn(move || watch(h, &id, stop, progress));
                }
            }
            let res = self.apply_in_order(r, m, head, &plan, held, progress);
            stop.store(true, Ordering::Relaxed);
            res
        });
        drop(plan);
        res
    }

    /// Unpacks the downloaded layers bottom up as their bytes come.
    fn apply_in_order(
        &self,
        r: &Reference,
        m: &Manifest,
        head: &ConfigHead,
        plan: &[(ChainId, Option<Handle>)],
        held: &mut Held<'_>,
        progress: Sink<'_>,
    ) -> Result<(), DistributionError> {
        let layers = self.images.layers();
        let mut parent: Option<ChainId> = None;
        for (i, (chain, h)) in plan.iter().enumerate() {
            let Some(h) = h else {
                parent = Some(*chain);
                continue;
            };
            let desc = &m.layers[i];
            let id = short(&desc.digest);
            let last = Mutex::new(Instant::now());
            let on_read = move |pos: u64| {
                let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
                if l.elapsed() >= PROGRESS_EVERY && h.snapshot().phase == Phase::Done {
                    *l = Instant::now();
                    progress(Progress::Bytes {
                        id: id.clone(),
                        status: "Extracting".into(),
                        current: pos,
                        total: desc.size,
                    });
                }
            };
            let reader = h
                .reader(Some(Box::new(on_read)))
                .map_err(|e| DistributionError::Blob(e.to_string()))?;
            let layer = layers
                .register(
                    parent.as_ref(),
                    reader,
                    RegisterOpts {
                        expected: Some(head.rootfs.diff_ids[i]),
                        progress: None,
                    },
                )
                .map_err(|e| blob_error(h, e))?;
            held.chains.push(layer.chain_id);
            // The blob's digest is checked when its last byte is in: the layer counts only
            // then (a tar may end before its compressed stream does).
            h.wait().map_err(DistributionError::Blob)?;
            if let Err(e) = self.metadata.add(
                &head.rootfs.diff_ids[i],
                BlobRecord {
                    digest: desc.digest,
                    media_type: desc.media_type.clone(),
                    size: desc.size,
                    registry: r.domain.clone(),
                    repository: r.path.clone(),
                },
            ) {
                tracing::warn!("recording layer metadata: {e}");
            }
            progress(Progress::Bytes {
                id: short(&desc.digest),
                status: "Extracting".into(),
                current: desc.size,
                total: desc.size,
            });
            progress(Progress::of(&short(&desc.digest), "Pull complete"));
            parent = Some(layer.chain_id);
        }
        Ok(())
    }
}

/// A layer error, or the download's own error when that is why the layer failed (a
/// corrupt blob fails to decompress before its digest can be checked: wait for the check,
/// which says what was wrong).
fn blob_error(h: &Handle, e: strata_graph::LayerError) -> DistributionError {
    match h.wait() {
        Err(m) => DistributionError::Blob(m),
        Ok(()) => e.into(),
    }
}

/// Shows a download's progress until it ends or the pull stops.
fn watch(h: &Handle, id: &str, stop: &AtomicBool, progress: Sink<'_>) {
    let mut last = Snapshot {
        phase: Phase::Waiting,
        written: u64::MAX,
        resumed_from: 0,
    };
    let mut shown = Instant::now() - PROGRESS_EVERY;
    let mut waiting_shown = false;
    loop {
        let now = h.wait_change(&last, Duration::from_millis(200));
        if stop.load(Ordering::Relaxed) && !matches!(now.phase, Phase::Done) {
            return;
        }
        match &now.phase {
            Phase::Waiting => {
                if !waiting_shown {
                    progress(Progress::of(id, "Waiting"));
                    waiting_shown = true;
                }
            }
            Phase::Downloading => {
                if shown.elapsed() >= PROGRESS_EVERY && now.written != last.written {
                    shown = Instant::now();
                    progress(Progress::Bytes {
                        id: id.to_string(),
                        status: "Downloading".into(),
                        current: now.written,
                        total: h.size(),
                    });
                }
            }
            Phase::Done => {
                progress(Progress::of(id, "Verifying Checksum"));
                progress(Progress::of(id, "Download complete"));
                return;
            }
            Phase::Failed(_) => return,
        }
        last = now;
    }
}
