//! Writing a tree (or a list of changes in it) as a layer tar.

use super::apply::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
use super::changes::{Change, ChangeKind};
use super::tar::{Header, Kind, TarWriter};
use crate::sys;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// Which xattrs go into a layer: file capabilities (as Docker keeps them) and user xattrs.
fn keep_xattr(name: &[u8]) -> bool {
    name == b"security.capability" || name.starts_with(b"user.")
}

/// Archives entries of a tree one by one, in the order given; hard links within the archive
/// become link entries.
pub struct TreeArchiver<W: Write> {
    tar: TarWriter<W>,
    root: OwnedFd,
    links: HashMap<(u64, u64), Vec<u8>>,
    /// Entries under `.0` are named under `.1` in the archive.
    rebase: Option<(Vec<u8>, Vec<u8>)>,
}

impl<W: Write> TreeArchiver<W> {
    pub fn new(root: &Path, out: W) -> io::Result<Self> {
        Ok(TreeArchiver {
            tar: TarWriter::new(out),
            root: sys::open(root, libc::O_PATH | libc::O_DIRECTORY, 0)?,
            links: HashMap::new(),
            rebase: None,
        })
    }

    /// Names the entry `from` (and everything beneath it) `to` in the archive
    /// (`docker cp a.txt c:/b.txt`).
    pub fn rebase(mut self, from: &[u8], to: &[u8]) -> Self {
        self.rebase = Some((from.to_vec(), to.to_vec()));
        self
    }

    fn archive_name(&self, rel: &[u8]) -> Vec<u8> {
        match &self.rebase {
            Some((from, to)) if rel == from.as_slice() => to.clone(),
            Some((from, to)) if rel.starts_with(from) && rel.get(from.len()) == Some(&b'/') => {
                [to.as_slice(), &rel[from.len()..]].concat()
            }
            _ => rel.to_vec(),
        }
    }

    /// Adds the entry at `rel` (relative to the root) with its metadata and content.
    pub fn add_path(&mut self, rel: &[u8]) -> io::Result<()> {
        let res = sys::resolve::BENEATH | sys::resolve::NO_SYMLINKS | sys::resolve::NO_MAGICLINKS;
        let (parent, name) = match rel.iter().rposition(|c| *c == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&rel[..0], rel),
        };
        let pfd = sys::openat2(
            self.root.as_fd(),
            parent,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            res,
        )?;
        let st = sys::fstatat(pfd.as_fd(), name, libc::AT_SYMLINK_NOFOLLOW)?;
        let mut xattrs = Vec::new();
        if sys::file_type(st.st_mode) != libc::S_IFLNK {
            for n in sys::list_xattr_at(pfd.as_fd(), name)? {
                if keep_xattr(&n) {
                    if let Some(v) = sys::get_xattr_at(pfd.as_fd(), name, &n)? {
                        xattrs.push((n, v));
                    }
                }
            }
            xattrs.sort();
        }
        let kind = match sys::file_type(st.st_mode) {
            libc::S_IFREG => Kind::Regular,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFCHR => Kind::Char,
            libc::S_IFBLK => Kind::Block,
            libc::S_IFIFO => Kind::Fifo,
            // Sockets cannot be archived (as with Docker); skip them.
            _ => return Ok(()),
        };
        let mut h = Header {
            path: self.archive_name(rel),
            link: Vec::new(),
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid as u64,
            gid: st.st_gid as u64,
            mtime: st.st_mtime,
            size: if kind == Kind::Regular {
                st.st_size as u64
            } else {
                0
            },
            devmajor: sys::major(st.st_rdev),
            devminor: sys::minor(st.st_rdev),
            xattrs,
        };
        match kind {
            Kind::Symlink => h.link = sys::readlinkat(pfd.as_fd(), name)?,
            Kind::Regular if st.st_nlink > 1 => {
                if let Some(first) = self.links.get(&(st.st_dev, st.st_ino)) {
                    h.kind = Kind::Hardlink;
                    h.link = first.clone();
                    h.size = 0;
                    return self.tar.append(&h, None);
                }
                self.links
                    .insert((st.st_dev, st.st_ino), self.archive_name(rel));
            }
            _ => {}
        }
        if h.kind == Kind::Regular && h.size > 0 {
            let f = File::from(sys::openat(
                pfd.as_fd(),
                name,
                libc::O_RDONLY | libc::O_NOFOLLOW,
                0,
            )?);
            let mut r = io::BufReader::with_capacity(1 << 20, f);
            self.tar.append(&h, Some(&mut r))
        } else {
            self.tar.append(&h, None)
        }
    }

    /// Adds a whiteout for `parent/name`.
    pub fn add_whiteout(&mut self, parent: &[u8], name: &[u8]) -> io::Result<()> {
        let mut p = parent.to_vec();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(WHITEOUT_PREFIX);
        p.extend_from_slice(name);
        self.tar.append(&marker(p), None)
    }

    /// Marks the directory `dir` opaque.
    pub fn add_opaque(&mut self, dir: &[u8]) -> io::Result<()> {
        let mut p = dir.to_vec();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(OPAQUE_WHITEOUT);
        self.tar.append(&marker(p), None)
    }

    pub fn finish(self) -> io::Result<W> {
        self.tar.finish()
    }
}

/// Whiteout markers carry fixed metadata so that diffs are reproducible.
fn marker(path: Vec<u8>) -> Header {
    Header {
        path,
        link: Vec::new(),
        kind: Kind::Regular,
        mode: 0,
        uid: 0,
        gid: 0,
        mtime: 0,
        size: 0,
        devmajor: 0,
        devminor: 0,
        xattrs: Vec::new(),
    }
}

/// Writes the changes of `root` as a layer tar (deletions as whiteouts).
pub fn export_changes<W: Write>(root: &Path, changes: &[Change], out: W) -> io::Result<W> {
    let mut a = TreeArchiver::new(root, out)?;
    for c in changes {
        let rel = c.rel();
        match c.kind {
            ChangeKind::Delete => {
                let (parent, name) = match rel.iter().rposition(|b| *b == b'/') {
                    Some(i) => (&rel[..i], &rel[i + 1..]),
                    None => (&rel[..0], rel),
                };
                a.add_whiteout(parent, name)?;
            }
            _ => a.add_path(rel)?,
        }
    }
    a.finish()
}
