//! The filesystems on thin devices: made with Debian's `mkfs.ext4`/`mkfs.xfs`, grown online
//! (`resize2fs`, `xfs_growfs`) when a device grows, mounted with the options dockerd uses.

use std::io;
use std::path::Path;
use std::process::Command;

use crate::options::Fs;

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{:?} {:?} failed ({}): {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Makes filesystem `fs` on `dev`, with the extra `args`.
pub fn mkfs(fs: Fs, dev: &Path, args: &[String]) -> io::Result<()> {
    match fs {
        Fs::Ext4 => run(Command::new("mkfs.ext4")
            .args([
                "-q",
                "-F",
                "-E",
                "nodiscard,lazy_itable_init=0,lazy_journal_init=0",
            ])
            .args(args)
            .arg(dev)),
        Fs::Xfs => run(Command::new("mkfs.xfs")
            .args(["-q", "-f", "-K"])
            .args(args)
            .arg(dev)),
    }
}

/// The mount data for `fs`: xfs snapshots share their filesystem UUID, so `nouuid`.
pub fn mount_data(fs: Fs, extra: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if fs == Fs::Xfs {
        parts.push("nouuid");
    }
    if !extra.is_empty() {
        parts.push(extra);
    }
    parts.join(",")
}

/// Mounts `dev` at `target`.
pub fn mount(fs: Fs, dev: &Path, target: &Path, extra: &str) -> io::Result<()> {
    let data = mount_data(fs, extra);
    strata_graph::sys::mount(
        dev.as_os_str().as_encoded_bytes(),
        target,
        fs.name().as_bytes(),
        0,
        (!data.is_empty()).then_some(data.as_bytes()),
    )
    .map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "mounting {} ({}) at {}: {e}",
                dev.display(),
                fs.name(),
                target.display()
            ),
        )
    })
}

/// Grows the mounted filesystem on `dev` (mounted at `mnt`) to fill the device.
pub fn grow(fs: Fs, dev: &Path, mnt: &Path) -> io::Result<()> {
    match fs {
        Fs::Ext4 => run(Command::new("resize2fs").arg(dev)),
        Fs::Xfs => run(Command::new("xfs_growfs").arg(mnt)),
    }
}

/// The filesystem type name on a device, as `blkid` reports it (to check a base device).
pub fn probe(dev: &Path) -> Option<String> {
    let out = Command::new("blkid")
        .args(["-p", "-s", "TYPE", "-o", "value"])
        .arg(dev)
        .output()
        .ok()?;
    let t = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!t.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfs_mounts_carry_nouuid() {
        assert_eq!(mount_data(Fs::Xfs, ""), "nouuid");
        assert_eq!(mount_data(Fs::Xfs, "discard"), "nouuid,discard");
        assert_eq!(mount_data(Fs::Ext4, ""), "");
        assert_eq!(mount_data(Fs::Ext4, "discard"), "discard");
    }
}
