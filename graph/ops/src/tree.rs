//! A digest of a whole directory tree (names, types, modes, owners, sizes, contents, link
//! targets), to show that a container's files are the same after a migration.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use strata_graph::digest::Digest;

/// One entry of a tree: everything about it a container sees, in one line.
pub type TreeEntries = BTreeMap<String, String>;

/// Every entry below `root` (not following symlinks, not crossing into other mounts).
pub fn entries(root: &Path) -> io::Result<TreeEntries> {
    let mut out = BTreeMap::new();
    let dev = std::fs::symlink_metadata(root)?.dev();
    walk(root, root, dev, &mut out)?;
    Ok(out)
}

fn walk(root: &Path, dir: &Path, dev: u64, out: &mut TreeEntries) -> io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let p = e.path();
        let m = std::fs::symlink_metadata(&p)?;
        let rel = p
            .strip_prefix(root)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ft = m.file_type();
        let what = if ft.is_file() {
            format!("file {}", Digest::of(&std::fs::read(&p)?))
        } else if ft.is_symlink() {
            format!("link {}", std::fs::read_link(&p)?.display())
        } else if ft.is_dir() {
            "dir".to_string()
        } else {
            format!("special {:x}", m.rdev())
        };
        out.insert(
            rel,
            format!(
                "{what} mode {:o} owner {}:{} size {}",
                m.mode(),
                m.uid(),
                m.gid(),
                if ft.is_dir() { 0 } else { m.len() }
            ),
        );
        if ft.is_dir() && m.dev() == dev {
            walk(root, &p, dev, out)?;
        }
    }
    Ok(())
}

/// The differences between two trees, at most `limit` of them, one line each.
pub fn differences(a: &TreeEntries, b: &TreeEntries, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("{k}: only before ({v})")),
            Some(w) if w != v => out.push(format!("{k}: {v} became {w}")),
            _ => {}
        }
    }
    for (k, w) in b {
        if !a.contains_key(k) {
            out.push(format!("{k}: only after ({w})"));
        }
    }
    out.truncate(limit);
    out
}
