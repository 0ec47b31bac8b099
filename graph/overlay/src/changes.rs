//! Native diff: an overlay upper directory is exactly a layer's changes.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use strata_graph::archive::apply::OVERLAY_OPAQUE_XATTR;
use strata_graph::archive::walk::walk;
use strata_graph::archive::{Change, ChangeKind, TreeArchiver};
use strata_graph::sys;

fn is_whiteout(st: &libc::stat) -> bool {
    sys::file_type(st.st_mode) == libc::S_IFCHR && st.st_rdev == 0
}

fn is_opaque(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
    Ok(sys::get_xattr_at(dir, name, OVERLAY_OPAQUE_XATTR)?.as_deref() == Some(b"y"))
}

/// Writes the upper directory as a layer tar: whiteout devices become `.wh.<name>`, opaque
/// directories get `.wh..wh..opq`.
pub fn export_upper(upper: &Path, out: &mut dyn Write) -> io::Result<()> {
    let root = sys::open(upper, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let mut a = TreeArchiver::new(upper, out)?;
    walk(root.as_fd(), b"", &mut |dir, name, rel, st| {
        if is_whiteout(st) {
            let parent = &rel[..rel.len() - name.len()]
                .strip_suffix(b"/")
                .unwrap_or(&[]);
            a.add_whiteout(parent, name)?;
            return Ok(false);
        }
        a.add_path(rel)?;
        if sys::is_dir(st) && is_opaque(dir, name)? {
            a.add_opaque(rel)?;
        }
        Ok(true)
    })?;
    a.finish()?;
    Ok(())
}

/// Whether `rel` is visible in the stack of lower directories (nearest first).
fn in_lowers(lowers: &[OwnedFd], rel: &[u8]) -> io::Result<Option<libc::stat>> {
    let comps: Vec<&[u8]> = rel.split(|c| *c == b'/').collect();
    'layers: for l in lowers {
        let mut cur: Option<OwnedFd> = None;
        for (i, comp) in comps.iter().enumerate() {
            let dir = cur.as_ref().map(|c| c.as_fd()).unwrap_or(l.as_fd());
            let st = match sys::lstat_at(dir, comp)? {
                None => {
                    // Nothing here; an opaque ancestor in this layer hides the layers below.
                    continue 'layers;
                }
                Some(st) => st,
            };
            if is_whiteout(&st) {
                return Ok(None);
            }
            if i + 1 == comps.len() {
                return Ok(Some(st));
            }
            if !sys::is_dir(&st) {
                return Ok(None);
            }
            let opaque = is_opaque(dir, comp)?;
            cur = Some(sys::openat(
                dir,
                comp,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )?);
            if opaque && i + 1 < comps.len() {
                // Entries below an opaque directory exist only if this layer has them.
                let rest = comps[i + 1..].join(&b'/');
                let below = cur
                    .as_ref()
                    .map(|c| sys::fstatat(c.as_fd(), &rest, libc::AT_SYMLINK_NOFOLLOW));
                return match below {
                    Some(Ok(st)) if !is_whiteout(&st) => Ok(Some(st)),
                    _ => Ok(None),
                };
            }
        }
    }
    Ok(None)
}

/// Changes recorded in the upper directory, judged against the lower layers.
pub fn upper_changes(upper: &Path, lowers: &[PathBuf]) -> io::Result<Vec<Change>> {
    let lfds = lowers
        .iter()
        .map(|l| sys::open(l, libc::O_PATH | libc::O_DIRECTORY, 0))
        .collect::<io::Result<Vec<_>>>()?;
    let root = sys::open(upper, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let mut out = Vec::new();
    walk(root.as_fd(), b"", &mut |_dir, _name, rel, st| {
        let path = format!("/{}", String::from_utf8_lossy(rel));
        if is_whiteout(st) {
            out.push(Change {
                path,
                kind: ChangeKind::Delete,
            });
            return Ok(false);
        }
        let kind = match in_lowers(&lfds, rel)? {
            None => ChangeKind::Add,
            Some(_) => ChangeKind::Modify,
        };
        out.push(Change { path, kind });
        Ok(true)
    })?;
    Ok(out)
}
