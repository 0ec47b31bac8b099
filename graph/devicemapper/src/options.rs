//! The `dm.*` storage options, parsed and checked as dockerd's devicemapper driver does. An
//! unknown key or a malformed value is an error naming the key.

use strata_graph::options::parse_size;
use strata_graph::{OptionError, OptionSpec, StorageOpts};

use crate::NAME;

/// Every key the driver accepts at daemon level.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "dm.thinpooldev",
        help: "an existing thin pool to use (direct-lvm)",
    },
    OptionSpec {
        key: "dm.directlvm_device",
        help: "a block device to build a thin pool on with LVM",
    },
    OptionSpec {
        key: "dm.directlvm_device_force",
        help: "wipe the direct-lvm device even if it holds data",
    },
    OptionSpec {
        key: "dm.thinp_percent",
        help: "share of the volume group for the pool's data (95)",
    },
    OptionSpec {
        key: "dm.thinp_metapercent",
        help: "share of the volume group for the pool's metadata (1)",
    },
    OptionSpec {
        key: "dm.thinp_autoextend_threshold",
        help: "pool use in percent that triggers an extension (80)",
    },
    OptionSpec {
        key: "dm.thinp_autoextend_percent",
        help: "growth in percent of an extension (20)",
    },
    OptionSpec {
        key: "dm.basesize",
        help: "size of the base device and so of every container filesystem (10G)",
    },
    OptionSpec {
        key: "dm.loopdatasize",
        help: "size of the loop-lvm data file (100G)",
    },
    OptionSpec {
        key: "dm.loopmetadatasize",
        help: "size of the loop-lvm metadata file (2G)",
    },
    OptionSpec {
        key: "dm.datadev",
        help: "a block device for the pool's data",
    },
    OptionSpec {
        key: "dm.metadatadev",
        help: "a block device for the pool's metadata",
    },
    OptionSpec {
        key: "dm.fs",
        help: "filesystem of the base device: ext4 or xfs",
    },
    OptionSpec {
        key: "dm.mkfsarg",
        help: "an extra argument to mkfs (repeatable)",
    },
    OptionSpec {
        key: "dm.mountopt",
        help: "extra mount options for layer filesystems",
    },
    OptionSpec {
        key: "dm.blocksize",
        help: "the pool's block size (64K)",
    },
    OptionSpec {
        key: "dm.blkdiscard",
        help: "discard a device's blocks before deleting it",
    },
    OptionSpec {
        key: "dm.override_udev_sync_check",
        help: "run even without udev synchronisation",
    },
    OptionSpec {
        key: "dm.use_deferred_removal",
        help: "remove busy devices later instead of failing",
    },
    OptionSpec {
        key: "dm.use_deferred_deletion",
        help: "delete busy devices later instead of failing",
    },
    OptionSpec {
        key: "dm.min_free_space",
        help: "free pool space in percent below which new devices are refused (10%)",
    },
    OptionSpec {
        key: "dm.xfs_nospace_max_retries",
        help: "xfs retries on ENOSPC before failing (max_retries of xfs' error config)",
    },
    OptionSpec {
        key: "dm.libdm_log_level",
        help: "verbosity of device-mapper logging, 2 (fatal) to 7 (debug)",
    },
];

/// The filesystem of the base device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fs {
    Ext4,
    Xfs,
}

impl Fs {
    pub fn name(self) -> &'static str {
        match self {
            Fs::Ext4 => "ext4",
            Fs::Xfs => "xfs",
        }
    }
}

/// Where the pool comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolSource {
    /// Sparse files under the home attached to loop devices (loop-lvm; tests, small hosts).
    Loop { data_size: u64, metadata_size: u64 },
    /// Given data and metadata block devices; the pool is created on them.
    Devices { data: String, metadata: String },
    /// An existing thin pool, by its device-mapper name.
    ThinPool(String),
    /// A block device on which a volume group and thin pool are made with LVM.
    DirectLvm(DirectLvm),
}

/// `dm.directlvm_device` and its tuning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectLvm {
    pub device: String,
    pub force: bool,
    pub percent: u64,
    pub metapercent: u64,
    pub autoextend_threshold: u64,
    pub autoextend_percent: u64,
}

/// The driver's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmOptions {
    pub pool: PoolSource,
    pub base_size: u64,
    /// `None`: xfs when `mkfs.xfs` is installed, else ext4, as dockerd picks.
    pub fs: Option<Fs>,
    pub mkfs_args: Vec<String>,
    pub mount_opts: String,
    pub block_size: u64,
    pub blkdiscard: bool,
    pub override_udev_sync_check: bool,
    pub deferred_removal: bool,
    pub deferred_deletion: bool,
    /// Percent, 0 to 99.
    pub min_free_space: u64,
    pub xfs_nospace_max_retries: Option<u64>,
    pub log_level: u8,
}

fn bad(key: &str, value: &str, reason: impl Into<String>) -> OptionError {
    OptionError::BadValue {
        driver: NAME.into(),
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

fn percent(opts: &StorageOpts, key: &str, default: u64, max: u64) -> Result<u64, OptionError> {
    match opts.get(key) {
        None => Ok(default),
        Some(v) => {
            let n: u64 = v
                .trim_end_matches('%')
                .parse()
                .map_err(|_| bad(key, v, "expected a whole percentage"))?;
            if n > max {
                return Err(bad(key, v, format!("must be at most {max}")));
            }
            Ok(n)
        }
    }
}

impl DmOptions {
    /// Parses the daemon's `--storage-opt` list. `mkfsarg` repeats in dockerd; here several
    /// arguments are separated by spaces in one value.
    pub fn parse(opts: &StorageOpts) -> Result<Self, OptionError> {
        opts.validate(NAME, OPTIONS)?;
        let size = |key: &str, default: u64| -> Result<u64, OptionError> {
            Ok(opts.size(NAME, key)?.unwrap_or(default))
        };
        let flag = |key: &str, default: bool| -> Result<bool, OptionError> {
            Ok(opts.bool(NAME, key)?.unwrap_or(default))
        };
        let base_size = size("dm.basesize", 10 << 30)?;
        if base_size < 16 << 20 {
            return Err(bad(
                "dm.basesize",
                opts.get("dm.basesize").unwrap_or(""),
                "must be at least 16M",
            ));
        }
        let fs = match opts.get("dm.fs") {
            None => None,
            Some("ext4") => Some(Fs::Ext4),
            Some("xfs") => Some(Fs::Xfs),
            Some(v) => return Err(bad("dm.fs", v, "supported filesystems are ext4 and xfs")),
        };
        let block_size = size("dm.blocksize", 64 << 10)?;
        if !(64 << 10..=1 << 30).contains(&block_size) || block_size % (64 << 10) != 0 {
            return Err(bad(
                "dm.blocksize",
                opts.get("dm.blocksize").unwrap_or(""),
                "must be a multiple of 64K between 64K and 1G",
            ));
        }
        let thinpool = opts.get("dm.thinpooldev").map(str::to_string);
        let direct = opts.get("dm.directlvm_device").map(str::to_string);
        let datadev = opts.get("dm.datadev").map(str::to_string);
        let metadev = opts.get("dm.metadatadev").map(str::to_string);
        let pool = match (thinpool, direct, datadev, metadev) {
            (Some(p), None, None, None) => {
                let p = p.trim_start_matches("/dev/mapper/").to_string();
                if p.is_empty() {
                    return Err(bad("dm.thinpooldev", "", "names no pool"));
                }
                PoolSource::ThinPool(p)
            }
            (None, Some(d), None, None) => PoolSource::DirectLvm(DirectLvm {
                device: d,
                force: flag("dm.directlvm_device_force", false)?,
                percent: percent(opts, "dm.thinp_percent", 95, 100)?,
                metapercent: percent(opts, "dm.thinp_metapercent", 1, 100)?,
                autoextend_threshold: percent(opts, "dm.thinp_autoextend_threshold", 80, 100)?,
                autoextend_percent: percent(opts, "dm.thinp_autoextend_percent", 20, 100)?,
            }),
            (None, None, Some(data), Some(metadata)) => PoolSource::Devices { data, metadata },
            (None, None, None, None) => PoolSource::Loop {
                data_size: size("dm.loopdatasize", 100 << 30)?,
                metadata_size: size("dm.loopmetadatasize", 2 << 30)?,
            },
            (None, None, Some(_), None) | (None, None, None, Some(_)) => {
                return Err(bad(
                    if opts.get("dm.datadev").is_some() { "dm.datadev" } else { "dm.metadatadev" },
                    "",
                    "dm.datadev and dm.metadatadev go together",
                ))
            }
            _ => {
                return Err(bad(
                    "dm.thinpooldev",
                    opts.get("dm.thinpooldev").unwrap_or(""),
                    "dm.thinpooldev, dm.directlvm_device and dm.datadev/dm.metadatadev exclude each other",
                ))
            }
        };
        if !matches!(pool, PoolSource::DirectLvm(_)) {
            for k in [
                "dm.directlvm_device_force",
                "dm.thinp_percent",
                "dm.thinp_metapercent",
                "dm.thinp_autoextend_threshold",
                "dm.thinp_autoextend_percent",
            ] {
                if let Some(v) = opts.get(k) {
                    return Err(bad(k, v, "only applies with dm.directlvm_device"));
                }
            }
        }
        if let PoolSource::DirectLvm(d) = &pool {
            if d.percent + d.metapercent > 100 {
                return Err(bad(
                    "dm.thinp_percent",
                    &d.percent.to_string(),
                    "with dm.thinp_metapercent it exceeds 100%",
                ));
            }
        }
        let is_loop = matches!(pool, PoolSource::Loop { .. });
        let log_level = match opts.get("dm.libdm_log_level") {
            None => 3,
            Some(v) => match v.parse::<u8>() {
                Ok(n @ 2..=7) => n,
                _ => {
                    return Err(bad(
                        "dm.libdm_log_level",
                        v,
                        "must be 2 (fatal) to 7 (debug)",
                    ))
                }
            },
        };
        let xfs_nospace_max_retries = match opts.get("dm.xfs_nospace_max_retries") {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| bad("dm.xfs_nospace_max_retries", v, "expected a whole number"))?,
            ),
        };
        Ok(DmOptions {
            pool,
            base_size,
            fs,
            mkfs_args: opts
                .get("dm.mkfsarg")
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            mount_opts: opts.get("dm.mountopt").unwrap_or("").to_string(),
            block_size,
            blkdiscard: flag("dm.blkdiscard", is_loop)?,
            override_udev_sync_check: flag("dm.override_udev_sync_check", false)?,
            deferred_removal: flag("dm.use_deferred_removal", false)?,
            deferred_deletion: flag("dm.use_deferred_deletion", false)?,
            min_free_space: percent(opts, "dm.min_free_space", 10, 99)?,
            xfs_nospace_max_retries,
            log_level,
        })
    }
}

/// A size given as `size=` for one container: at least the base size.
pub fn container_size(value: &str, base: u64) -> Result<u64, OptionError> {
    let n = parse_size(value).map_err(|r| bad("size", value, r))?;
    if n < base {
        return Err(bad(
            "size",
            value,
            format!(
                "a container's filesystem cannot be smaller than the base device ({base} bytes)"
            ),
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(items: &[&str]) -> Result<DmOptions, OptionError> {
        DmOptions::parse(&StorageOpts::parse(items).expect("key=value"))
    }

    #[test]
    fn defaults_are_dockerds() {
        let o = p(&[]).expect("defaults");
        assert_eq!(
            o.pool,
            PoolSource::Loop {
                data_size: 100 << 30,
                metadata_size: 2 << 30
            }
        );
        assert_eq!(o.base_size, 10 << 30);
        assert_eq!(o.block_size, 64 << 10);
        assert!(o.blkdiscard, "on for loop-lvm");
        assert_eq!(o.min_free_space, 10);
        assert!(!o.deferred_removal && !o.deferred_deletion);
        let o = p(&["dm.thinpooldev=/dev/mapper/vg-pool"]).expect("pool");
        assert_eq!(o.pool, PoolSource::ThinPool("vg-pool".into()));
        assert!(!o.blkdiscard, "off for a given pool");
    }

    #[test]
    fn every_key_is_read() {
        let o = p(&[
            "dm.basesize=20G",
            "dm.loopdatasize=1G",
            "dm.loopmetadatasize=64M",
            "dm.fs=xfs",
            "dm.mkfsarg=-m 0",
            "dm.mountopt=nodiscard",
            "dm.blocksize=512K",
            "dm.blkdiscard=false",
            "dm.override_udev_sync_check=true",
            "dm.use_deferred_removal=true",
            "dm.use_deferred_deletion=true",
            "dm.min_free_space=5%",
            "dm.xfs_nospace_max_retries=0",
            "dm.libdm_log_level=7",
        ])
        .expect("all");
        assert_eq!(o.base_size, 20 << 30);
        assert_eq!(
            o.pool,
            PoolSource::Loop {
                data_size: 1 << 30,
                metadata_size: 64 << 20
            }
        );
        assert_eq!(o.fs, Some(Fs::Xfs));
        assert_eq!(o.mkfs_args, ["-m", "0"]);
        assert_eq!(o.mount_opts, "nodiscard");
        assert_eq!(o.block_size, 512 << 10);
        assert!(
            !o.blkdiscard
                && o.override_udev_sync_check
                && o.deferred_removal
                && o.deferred_deletion
        );
        assert_eq!(o.min_free_space, 5);
        assert_eq!(o.xfs_nospace_max_retries, Some(0));
        assert_eq!(o.log_level, 7);
        let o = p(&[
            "dm.directlvm_device=/dev/vdb",
            "dm.thinp_percent=90",
            "dm.thinp_metapercent=2",
            "dm.thinp_autoextend_threshold=70",
            "dm.thinp_autoextend_percent=30",
            "dm.directlvm_device_force=true",
        ])
        .expect("direct-lvm");
        assert_eq!(
            o.pool,
            PoolSource::DirectLvm(DirectLvm {
                device: "/dev/vdb".into(),
                force: true,
                percent: 90,
                metapercent: 2,
                autoextend_threshold: 70,
                autoextend_percent: 30
            })
        );
        let o = p(&["dm.datadev=/dev/vdb", "dm.metadatadev=/dev/vdc"]).expect("devices");
        assert_eq!(
            o.pool,
            PoolSource::Devices {
                data: "/dev/vdb".into(),
                metadata: "/dev/vdc".into()
            }
        );
    }

    #[test]
    fn bad_keys_and_values_name_the_key() {
        for (items, key) in [
            (&["dm.nosuch=1"][..], "dm.nosuch"),
            (&["dm.fs=btrfs"], "dm.fs"),
            (&["dm.basesize=ten"], "dm.basesize"),
            (&["dm.basesize=1M"], "dm.basesize"),
            (&["dm.blocksize=65"], "dm.blocksize"),
            (&["dm.blocksize=96K"], "dm.blocksize"),
            (&["dm.blkdiscard=maybe"], "dm.blkdiscard"),
            (&["dm.min_free_space=100%"], "dm.min_free_space"),
            (&["dm.min_free_space=x"], "dm.min_free_space"),
            (&["dm.libdm_log_level=9"], "dm.libdm_log_level"),
            (&["dm.thinp_percent=50"], "dm.thinp_percent"),
            (&["dm.datadev=/dev/vdb"], "dm.datadev"),
            (
                &["dm.thinpooldev=p", "dm.directlvm_device=/dev/vdb"],
                "dm.thinpooldev",
            ),
            (
                &[
                    "dm.directlvm_device=/dev/vdb",
                    "dm.thinp_percent=99",
                    "dm.thinp_metapercent=5",
                ],
                "dm.thinp_percent",
            ),
            (
                &["dm.xfs_nospace_max_retries=-1"],
                "dm.xfs_nospace_max_retries",
            ),
        ] {
            let e = p(items).expect_err(key).to_string();
            assert!(e.contains(key), "{items:?}: {e}");
        }
        assert!(container_size("5G", 10 << 30)
            .expect_err("smaller")
            .to_string()
            .contains("base device"));
        assert_eq!(container_size("20G", 10 << 30).expect("bigger"), 20 << 30);
    }
}
