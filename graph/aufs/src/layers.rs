//! aufs layers on disk, which need no aufs in the kernel: each layer's own files in
//! `diff/<id>` (a branch, with aufs' whiteouts, which are the layer tar format's: `.wh.<name>`
//! for a deleted name, `.wh..wh..opq` in an opaque directory), its parent chain in
//! `layers/<id>` (one id per line, nearest first), as dockerd's aufs kept them. The native
//! diff reads only the layer's branch.

use std::collections::HashSet;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use strata_graph::archive::walk::walk;
use strata_graph::archive::{Change, ChangeKind, TreeArchiver};
use strata_graph::fsutil::{atomic_write, mkdir_all, remove_tree};
use strata_graph::sys;

/// The prefix of a whiteout.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The prefix of aufs' own bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`, `.wh..wh.orph`), never
/// part of a diff but for the opaque marker.
pub const META_PREFIX: &[u8] = b".wh..wh.";
/// The opaque directory marker.
pub const OPAQUE: &[u8] = b".wh..wh..opq";

/// What an entry of a branch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A file, directory, link... of the layer.
    Plain,
    /// A deleted name (the name it hides).
    Whiteout(&'a [u8]),
    /// This directory hides what lower layers hold in it.
    Opaque,
    /// aufs' own bookkeeping: skipped.
    Meta,
}

/// Classifies an entry name of a branch.
pub fn classify(name: &[u8]) -> Entry<'_> {
    if name == OPAQUE {
        Entry::Opaque
    } else if name.starts_with(META_PREFIX) {
        Entry::Meta
    } else if let Some(n) = name.strip_prefix(WHITEOUT_PREFIX) {
        Entry::Whiteout(n)
    } else {
        Entry::Plain
    }
}

fn whiteout_name(name: &[u8]) -> Vec<u8> {
    [WHITEOUT_PREFIX, name].concat()
}

/// The layer directories under a driver home.
#[derive(Debug, Clone)]
pub struct LayerDirs {
    home: PathBuf,
}

impl LayerDirs {
    /// The layout under `home` (made if missing).
    pub fn open(home: &Path) -> io::Result<LayerDirs> {
        for d in ["diff", "layers", "mnt"] {
            mkdir_all(&home.join(d), 0o700)?;
        }
        Ok(LayerDirs {
            home: home.to_path_buf(),
        })
    }

    /// Layer `id`'s branch.
    pub fn diff(&self, id: &str) -> PathBuf {
        self.home.join("diff").join(id)
    }

    /// Layer `id`'s mount point.
    pub fn mnt(&self, id: &str) -> PathBuf {
        self.home.join("mnt").join(id)
    }

    fn chain_file(&self, id: &str) -> PathBuf {
        self.home.join("layers").join(id)
    }

    /// Whether layer `id` exists (its branch and its chain record).
    pub fn exists(&self, id: &str) -> bool {
        self.diff(id).is_dir() && self.chain_file(id).is_file()
    }

    /// Creates layer `id` on `parent`: the chain record is written last, so a layer without
    /// one is an interrupted create.
    pub fn create(&self, id: &str, parent: Option<&str>) -> io::Result<()> {
        let mut chain = String::new();
        if let Some(p) = parent {
            chain.push_str(p);
            chain.push('\n');
            chain.push_str(&std::fs::read_to_string(self.chain_file(p))?);
        }
        mkdir_all(&self.diff(id), 0o755)?;
        mkdir_all(&self.mnt(id), 0o755)?;
        atomic_write(&self.chain_file(id), chain.as_bytes())
    }

    /// The parents of `id`, nearest first.
    pub fn parents(&self, id: &str) -> io::Result<Vec<String>> {
        Ok(std::fs::read_to_string(self.chain_file(id))?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Removes layer `id`: the record first (so a crash leaves an interrupted remove that
    /// [`Self::list`] no longer shows), then the branch, renamed aside before it is emptied.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        match std::fs::remove_file(self.chain_file(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let aside = self.home.join("diff").join(format!("{id}-removing"));
        match std::fs::rename(self.diff(id), &aside) {
            Ok(()) => remove_tree(&aside)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let _ = std::fs::remove_dir(self.mnt(id));
        Ok(())
    }

    /// The layers, and clean-up of interrupted creates and removes.
    pub fn list(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.home.join("diff"))? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if self.chain_file(&name).is_file() {
                out.push(name);
            } else {
                tracing::info!(layer = name, "removing an interrupted create or remove");
                let p = self.home.join("diff").join(&name);
                remove_tree(&p)?;
                let _ = std::fs::remove_dir(self.mnt(&name));
            }
        }
        Ok(out)
    }

    /// Branches of `id`'s parents, nearest first.
    pub fn lower_dirs(&self, id: &str) -> io::Result<Vec<PathBuf>> {
        Ok(self.parents(id)?.iter().map(|p| self.diff(p)).collect())
    }

    /// Writes layer `id`'s branch as a layer tar: whiteouts and opaque markers as the tar
    /// format has them, aufs' bookkeeping left out.
    pub fn export(&self, id: &str, out: &mut dyn Write) -> io::Result<()> {
        let root_path = self.diff(id);
        let root = sys::open(&root_path, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let mut a = TreeArchiver::new(&root_path, out)?;
        walk(root.as_fd(), b"", &mut |_dir, name, rel, _st| {
            let parent = rel[..rel.len() - name.len()]
                .strip_suffix(b"/")
                .unwrap_or(&[]);
            match classify(name) {
                Entry::Meta => Ok(false),
                Entry::Opaque => a.add_opaque(parent).map(|_| false),
                Entry::Whiteout(n) => a.add_whiteout(parent, n).map(|_| false),
                Entry::Plain => a.add_path(rel).map(|_| true),
            }
        })?;
        a.finish()?;
        Ok(())
    }

    /// Changes of layer `id` against its parents, from its branch alone.
    pub fn changes(&self, id: &str) -> io::Result<Vec<Change>> {
        let lowers = self
            .lower_dirs(id)?
            .iter()
            .map(|l| sys::open(l, libc::O_PATH | libc::O_DIRECTORY, 0))
            .collect::<io::Result<Vec<_>>>()?;
        let root = sys::open(&self.diff(id), libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let mut out = Vec::new();
        let path_of = |rel: &[u8]| format!("/{}", String::from_utf8_lossy(rel));
        walk(root.as_fd(), b"", &mut |_dir, name, rel, _st| {
            let parent = &rel[..rel.len() - name.len()];
            match classify(name) {
                Entry::Meta | Entry::Opaque => Ok(false),
                Entry::Whiteout(n) => {
                    out.push(Change {
                        path: path_of(&[parent, n].concat()),
                        kind: ChangeKind::Delete,
                    });
                    Ok(false)
                }
                Entry::Plain => {
                    let kind = if visible_below(&lowers, rel)? {
                        ChangeKind::Modify
                    } else {
                        ChangeKind::Add
                    };
                    out.push(Change {
                        path: path_of(rel),
                        kind,
                    });
                    Ok(true)
                }
            }
        })?;
        Ok(out)
    }

    /// Bytes of the regular files of `id`'s branch (hard links once), whiteouts left out.
    pub fn size(&self, id: &str) -> io::Result<u64> {
        let root = sys::open(&self.diff(id), libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let mut seen = HashSet::new();
        let mut total = 0;
        walk(root.as_fd(), b"", &mut |_dir, name, _rel, st| {
            if classify(name) != Entry::Plain {
                return Ok(false);
            }
            if sys::file_type(st.st_mode) == libc::S_IFREG && seen.insert(st.st_ino) {
                total += st.st_size as u64;
            }
            Ok(true)
        })?;
        Ok(total)
    }
}

/// Whether `rel` is visible through the branches `lowers` (nearest first), aufs' way: the
/// first branch that has it shows it; a whiteout of it, or an opaque directory above it, in a
/// nearer branch hides the farther ones.
pub fn visible_below(lowers: &[OwnedFd], rel: &[u8]) -> io::Result<bool> {
    let comps: Vec<&[u8]> = rel.split(|c| *c == b'/').collect();
    // For each branch, the directory reached so far (None: the path ends in this branch).
    let mut dirs: Vec<Option<OwnedFd>> = lowers
        .iter()
        .map(|l| sys::openat(l.as_fd(), b".", libc::O_PATH | libc::O_DIRECTORY, 0).map(Some))
        .collect::<io::Result<_>>()?;
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let mut hidden = false;
        let mut found = false;
        for d in dirs.iter_mut() {
            let Some(dir) = d.take() else { continue };
            if hidden {
                continue;
            }
            let here = dir.as_fd();
            match sys::lstat_at(here, comp)? {
                Some(st) => {
                    found = true;
                    if last {
                        return Ok(true);
                    }
                    if sys::is_dir(&st) {
                        let sub = open_path(here, comp)?;
                        // An opaque directory hides the same directory of farther branches.
                        hidden = sys::lstat_at(sub.as_fd(), OPAQUE)?.is_some();
                        *d = Some(sub);
                    } else {
                        hidden = true; // a file here hides directories below
                    }
                }
                None => {
                    if sys::lstat_at(here, &whiteout_name(comp))?.is_some() {
                        hidden = true;
                    }
                }
            }
        }
        if !found {
            return Ok(false);
        }
    }
    Ok(false)
}

fn open_path(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    sys::openat(
        dir,
        name,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_graph::archive::tar::TarReader;
    use strata_graph::archive::{apply_layer, ApplyOptions, WhiteoutFormat};
    use strata_graph::graphtest::tars::TarBuilder;

    fn apply(l: &LayerDirs, id: &str, tar: Vec<u8>) {
        let mut o = ApplyOptions::new(WhiteoutFormat::None);
        o.lowers = l.lower_dirs(id).unwrap();
        apply_layer(&l.diff(id), &tar[..], o).unwrap();
    }

    fn names(tar: &[u8]) -> Vec<String> {
        let mut r = TarReader::new(tar, false);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            out.push(e.display());
        }
        out
    }

    fn kinds(c: &[Change]) -> Vec<(String, ChangeKind)> {
        c.iter().map(|c| (c.path.clone(), c.kind)).collect()
    }

    #[test]
    fn names_are_classified_as_aufs_reads_them() {
        assert_eq!(classify(b"file"), Entry::Plain);
        assert_eq!(classify(b".wh.file"), Entry::Whiteout(b"file"));
        assert_eq!(classify(b".wh..wh..opq"), Entry::Opaque);
        for meta in [&b".wh..wh.plnk"[..], b".wh..wh.aufs", b".wh..wh.orph"] {
            assert_eq!(classify(meta), Entry::Meta);
        }
        assert_eq!(classify(b".whx"), Entry::Plain);
    }

    /// Three layers: a base, one that deletes and makes a directory opaque, and a container
    /// layer on top; whiteouts stay files in the branches, as aufs wants them.
    fn three_layers(l: &LayerDirs) {
        l.create("base", None).unwrap();
        apply(
            l,
            "base",
            TarBuilder::new()
                .dir("etc")
                .file("etc/passwd", b"root")
                .file("etc/gone", b"x")
                .dir("opt")
                .file("opt/old", b"o")
                .dir("var")
                .file("var/keep", b"k")
                .build(),
        );
        l.create("mid", Some("base")).unwrap();
        apply(
            l,
            "mid",
            TarBuilder::new()
                .dir("etc")
                .whiteout("etc/gone")
                .dir("opt")
                .opaque("opt")
                .file("opt/new", b"n")
                .build(),
        );
        l.create("top", Some("mid")).unwrap();
    }

    #[test]
    fn branches_hold_the_tar_whiteouts_and_chains_their_parents() {
        let d = tempfile::tempdir().unwrap();
        let l = LayerDirs::open(d.path()).unwrap();
        three_layers(&l);
        assert_eq!(l.parents("top").unwrap(), vec!["mid", "base"]);
        assert_eq!(
            l.lower_dirs("top").unwrap(),
            vec![l.diff("mid"), l.diff("base")]
        );
        assert!(l.diff("mid").join("etc/.wh.gone").is_file());
        assert!(l.diff("mid").join("opt/.wh..wh..opq").is_file());
        let mut list = l.list().unwrap();
        list.sort();
        assert_eq!(list, vec!["base", "mid", "top"]);
    }

    #[test]
    fn changes_are_judged_through_the_lower_branches() {
        let d = tempfile::tempdir().unwrap();
        let l = LayerDirs::open(d.path()).unwrap();
        three_layers(&l);
        let top = l.diff("top");
        // What a container does through the union, as aufs records it in the branch.
        std::fs::create_dir_all(top.join("etc")).unwrap();
        std::fs::write(top.join("etc/passwd"), "changed").unwrap(); // copied up, modified
        std::fs::write(top.join("etc/gone"), "back").unwrap(); // whited out below: new again
        std::fs::create_dir_all(top.join("opt")).unwrap();
        std::fs::write(top.join("opt/old"), "hidden below").unwrap(); // under an opaque dir
        std::fs::write(top.join("opt/new"), "n2").unwrap();
        std::fs::create_dir_all(top.join("var")).unwrap();
        std::fs::write(top.join("var/.wh.keep"), "").unwrap(); // rm /var/keep
        std::fs::create_dir_all(top.join(".wh..wh.plnk")).unwrap(); // aufs bookkeeping
        std::fs::write(top.join(".wh..wh.plnk/123.456"), "x").unwrap();
        let c = kinds(&l.changes("top").unwrap());
        let want = [
            ("/etc", ChangeKind::Modify),
            ("/etc/gone", ChangeKind::Add),
            ("/etc/passwd", ChangeKind::Modify),
            ("/opt", ChangeKind::Modify),
            ("/opt/new", ChangeKind::Modify),
            ("/opt/old", ChangeKind::Add),
            ("/var", ChangeKind::Modify),
            ("/var/keep", ChangeKind::Delete),
        ];
        let want: Vec<(String, ChangeKind)> =
            want.iter().map(|(p, k)| (p.to_string(), *k)).collect();
        assert_eq!(c, want);
        // The middle layer against the base: a deletion; the opaque directory is a change.
        let c = kinds(&l.changes("mid").unwrap());
        assert!(
            c.contains(&("/etc/gone".into(), ChangeKind::Delete)),
            "{c:?}"
        );
        assert!(c.contains(&("/opt/new".into(), ChangeKind::Add)), "{c:?}");
        assert_eq!(l.size("top").unwrap(), 7 + 4 + 12 + 2);
    }

    #[test]
    fn export_writes_whiteouts_and_opaque_markers_and_leaves_bookkeeping_out() {
        let d = tempfile::tempdir().unwrap();
        let l = LayerDirs::open(d.path()).unwrap();
        three_layers(&l);
        std::fs::create_dir_all(l.diff("mid").join(".wh..wh.plnk")).unwrap();
        std::fs::write(l.diff("mid").join(".wh..wh.aufs"), "").unwrap();
        let mut out = Vec::new();
        l.export("mid", &mut out).unwrap();
        let n = names(&out);
        assert_eq!(
            n,
            vec![
                "etc/",
                "etc/.wh.gone",
                "opt/",
                "opt/.wh..wh..opq",
                "opt/new"
            ],
            "{n:?}"
        );
        // Applied on the base elsewhere (as a copying driver would), it deletes and hides.
        let other = tempfile::tempdir().unwrap();
        let o = LayerDirs::open(other.path()).unwrap();
        o.create("base", None).unwrap();
        let mut base = Vec::new();
        l.export("base", &mut base).unwrap();
        apply_layer(
            &o.diff("base"),
            &base[..],
            ApplyOptions::new(WhiteoutFormat::Delete),
        )
        .unwrap();
        apply_layer(
            &o.diff("base"),
            &out[..],
            ApplyOptions::new(WhiteoutFormat::Delete),
        )
        .unwrap();
        assert!(!o.diff("base").join("etc/gone").exists());
        assert!(!o.diff("base").join("opt/old").exists());
        assert!(
            o.diff("base").join("opt/new").exists() && o.diff("base").join("var/keep").exists()
        );
    }

    #[test]
    fn visibility_follows_whiteouts_opaque_dirs_and_files_over_dirs() {
        let d = tempfile::tempdir().unwrap();
        let l = LayerDirs::open(d.path()).unwrap();
        three_layers(&l);
        let fds: Vec<OwnedFd> = l
            .lower_dirs("top")
            .unwrap()
            .iter()
            .map(|p| sys::open(p, libc::O_PATH | libc::O_DIRECTORY, 0).unwrap())
            .collect();
        let vis = |p: &str| visible_below(&fds, p.as_bytes()).unwrap();
        assert!(vis("etc") && vis("etc/passwd") && vis("var/keep") && vis("opt/new"));
        assert!(!vis("etc/gone"), "whited out in mid");
        assert!(!vis("opt/old"), "under an opaque directory in mid");
        assert!(!vis("nothing") && !vis("etc/passwd/below"));
    }

    #[test]
    fn interrupted_creates_and_removes_are_cleaned_up_by_list() {
        let d = tempfile::tempdir().unwrap();
        let l = LayerDirs::open(d.path()).unwrap();
        three_layers(&l);
        // Killed before the chain record was written; killed while emptying a removed branch.
        std::fs::create_dir_all(l.diff("half")).unwrap();
        std::fs::create_dir_all(d.path().join("diff/old-removing/x")).unwrap();
        l.remove("top").unwrap();
        let mut list = l.list().unwrap();
        list.sort();
        assert_eq!(list, vec!["base", "mid"]);
        assert!(!l.diff("half").exists() && !d.path().join("diff/old-removing").exists());
        assert!(!l.diff("top").exists() && !l.mnt("top").exists());
    }
}
