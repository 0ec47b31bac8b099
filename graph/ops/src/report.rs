//! What `strata storage check` finds, as people and machines read it.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The kinds of problem a check can find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An image config whose sha256 is not its name.
    ImageDigest,
    /// An image config that is not a valid config.
    ImageConfig,
    /// An image whose layers are not all in the layer store.
    ImageLayerMissing,
    /// A reference (tag) naming an image that does not exist.
    DanglingReference,
    /// A layer record that cannot be read, or sits under another name.
    LayerRecord,
    /// A layer whose chainID does not follow from its parent and diffID.
    ChainId,
    /// A layer or container layer whose parent layer is missing.
    ParentMissing,
    /// A layer or container layer whose driver data is missing.
    DriverDataMissing,
    /// A layer without the tar-split record its exact re-export needs.
    TarSplitMissing,
    /// A layer whose re-export does not give its recorded diffID.
    ContentMismatch,
    /// A layer whose recorded reference count is not the number of images using it.
    ReferenceCount,
    /// Driver data that no layer owns.
    OrphanDriverData,
    /// A container layer without a container.
    ContainerLayerOrphan,
    /// A container whose layer is missing.
    ContainerLayerMissing,
    /// A mount under the driver's home that no layer in use owns.
    StrayMount,
    /// A loop device on a file under the data root that the driver does not use.
    StrayLoopDevice,
    /// A kernel object of the driver (e.g. a device-mapper device) that no layer uses.
    StrayDevice,
    /// What an interrupted registration, removal, load or write left behind.
    Interrupted,
    /// A storage migration that has not finished.
    MigrationPending,
    /// A container layer's counted size (`system df`) that is unreadable, or (with `--full`)
    /// not what the layer holds.
    SizeCount,
}

impl Kind {
    /// What `strata storage repair` does about it.
    pub fn repair(self) -> &'static str {
        match self {
            Kind::ImageDigest | Kind::ImageConfig => "the config is quarantined",
            Kind::ImageLayerMissing => "the image is quarantined and listed to be pulled again",
            Kind::DanglingReference => "the reference is dropped",
            Kind::LayerRecord
            | Kind::ChainId
            | Kind::ParentMissing
            | Kind::DriverDataMissing
            | Kind::TarSplitMissing
            | Kind::ContentMismatch => {
                "the layer (and what is built on it) is quarantined; the images using it are listed"
            }
            Kind::ReferenceCount => "reference counts are rebuilt from the images",
            Kind::OrphanDriverData => "the driver data is removed",
            Kind::ContainerLayerOrphan => "the container layer is removed",
            Kind::ContainerLayerMissing => "nothing: remove the container (docker rm)",
            Kind::StrayMount => "it is unmounted",
            Kind::StrayLoopDevice => "it is detached",
            Kind::StrayDevice => "it is removed",
            Kind::Interrupted => "the operation is finished or undone",
            Kind::SizeCount => "the count is dropped; the layer is measured again",
            Kind::MigrationPending => {
                "nothing: resume it with `strata storage migrate --to DRIVER` or undo it with `--abort`"
            }
        }
    }
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: Kind,
    /// What it is about: a layer's chainID, an image ID, a path, a device.
    pub subject: String,
    /// What is wrong with it.
    pub detail: String,
}

/// What a check looked at and found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub data_root: String,
    pub driver: String,
    /// "offline" (the daemon stopped) or "daemon" (through the running daemon).
    pub mode: String,
    pub images: usize,
    pub layers: usize,
    pub container_layers: usize,
    /// Layers whose re-export was compared with their diffID.
    pub verified: usize,
    /// Whether every layer was re-exported (`--full`), rather than a sample.
    pub full: bool,
    pub problems: Vec<Finding>,
    /// Facts that are not problems (records in quarantine, mounts of running containers).
    pub notes: Vec<String>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Problems of one kind.
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &Finding> {
        self.problems.iter().filter(move |f| f.kind == kind)
    }

    pub(crate) fn problem(
        &mut self,
        kind: Kind,
        subject: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.problems.push(Finding {
            kind,
            subject: subject.into(),
            detail: detail.into(),
        });
    }

    /// The report as `strata storage check` prints it.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Checked {} ({}, {}): {} images, {} layers, {} container layers; {} layers re-exported{}",
            self.data_root,
            self.driver,
            self.mode,
            self.images,
            self.layers,
            self.container_layers,
            self.verified,
            if self.full { " (all)" } else { " (a sample; --full for all)" }
        );
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        if self.problems.is_empty() {
            let _ = writeln!(s, "No problems found.");
            return s;
        }
        let _ = writeln!(s, "{} problem(s):", self.problems.len());
        for f in &self.problems {
            let _ = writeln!(
                s,
                "  [{}] {}: {}\n      repair: {}",
                serde_json::to_value(f.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                f.subject,
                f.detail,
                f.kind.repair()
            );
        }
        let _ = writeln!(
            s,
            "Run `strata storage repair` (daemon stopped) to fix them."
        );
        s
    }
}
