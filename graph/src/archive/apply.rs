//! Unpacking a layer tar into a directory, safely.
//!
//! Every path is resolved with `openat2(RESOLVE_BENEATH)` relative to the layer root, so no
//! entry, symlink or hard link can make the unpacker touch anything outside it: such entries
//! are refused with an error naming them. Whiteouts are translated into the driver's form.
//! Optionally a tar-split record is written so that the layer can be re-exported byte for byte.

use super::compression::{decompress, Compression};
use super::tar::{Entry, Kind, TarError, TarReader};
use super::tarsplit::{Override, TarSplitWriter};
use crate::digest::DiffId;
use crate::fsutil::{copy_file_contents, remove_tree_at, CopyMode};
use crate::sys::{self, resolve, Timespec};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The prefix marking a whiteout entry in a layer tar.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The name of the entry that makes its directory opaque.
pub const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";
/// The xattr overlayfs reads to treat a directory as opaque.
pub const OVERLAY_OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

/// How a driver represents deletions of lower-layer files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutFormat {
    /// overlayfs: a 0/0 character device per deleted name, an xattr on opaque directories.
    Overlay,
    /// Copying drivers (vfs, btrfs, ...): the layer starts as a copy of its parent, so a
    /// whiteout simply deletes.
    Delete,
    /// A plain archive (`docker cp`): `.wh.` names are ordinary files.
    None,
}

/// Errors applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Tar(#[from] TarError),
    #[error("refusing layer: entry {entry:?} {reason}")]
    Hostile { entry: String, reason: String },
    #[error("applying entry {entry:?}: {source}")]
    Entry { entry: String, source: io::Error },
    #[error("applying layer: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    TarSplit(#[from] super::tarsplit::TarSplitError),
}

/// Where the tar-split record of an apply goes.
pub struct TarSplitSink {
    pub writer: TarSplitWriter,
    /// Content that the tar itself overwrote or deleted is stashed here.
    pub shadow: File,
}

/// Options of one apply.
pub struct ApplyOptions<'a> {
    pub whiteouts: WhiteoutFormat,
    /// Lower layers' own directories, top first: where hard links to files of lower layers are
    /// found (overlay applies into the layer's own diff directory only).
    pub lowers: Vec<PathBuf>,
    pub tarsplit: Option<TarSplitSink>,
    /// Called now and then with the number of uncompressed bytes read so far.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
    /// Refuse to replace a directory with a non-directory or the reverse (`docker cp`'s
    /// `noOverwriteDirNonDir`) instead of making room.
    pub no_overwrite_dir_non_dir: bool,
}

impl<'a> ApplyOptions<'a> {
    pub fn new(whiteouts: WhiteoutFormat) -> Self {
        ApplyOptions {
            whiteouts,
            lowers: Vec::new(),
            tarsplit: None,
            progress: None,
            no_overwrite_dir_non_dir: false,
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct ApplyResult {
    /// sha256 of the whole uncompressed stream.
    pub diff_id: DiffId,
    /// Sum of the regular files' sizes (what Docker reports as the layer's size).
    pub size: u64,
    pub entries: u64,
    pub compression: Compression,
    /// Length of the uncompressed stream.
    pub tar_bytes: u64,
    /// File references whose content went to the shadow file.
    pub overrides: Vec<Override>,
}

/// Unpacks the (possibly compressed) layer `input` into `root`.
///
/// The input is read, decompressed and hashed on a thread of its own and handed over in
/// chunks, so that decompression and hashing overlap with unpacking.
pub fn apply_layer<R: Read + Send>(
    root: &Path,
    input: R,
    opts: ApplyOptions<'_>,
) -> Result<ApplyResult, ApplyError> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(4);
        let producer = scope.spawn(move || read_ahead(input, tx));
        let res = unpack(
            root,
            ChunkReader {
                rx,
                cur: Vec::new(),
                pos: 0,
            },
            opts,
        );
        // The consumer is done (or failed): a producer blocked on sending now stops.
        let produced = producer
            .join()
            .map_err(|_| io::Error::other("layer reader thread panicked"))?;
        let mut res = res?;
        let (compression, digest, total) = produced?;
        if total != res.tar_bytes {
            return Err(io::Error::other(format!(
                "read {total} bytes but unpacked {}",
                res.tar_bytes
            ))
            .into());
        }
        res.diff_id = digest;
        res.compression = compression;
        Ok(res)
    })
}

/// The reading side: decompresses, hashes and counts the whole stream.
fn read_ahead<R: Read>(
    input: R,
    tx: std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>,
) -> io::Result<(Compression, DiffId, u64)> {
    use sha2::Digest as _;
    let fail = |tx: &std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>, e: io::Error| {
        let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
        e
    };
    let (compression, mut dec) = decompress(input).map_err(|e| fail(&tx, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut total = 0u64;
    loop {
        let mut buf = vec![0u8; 1 << 20];
        let mut filled = 0;
        while filled < buf.len() {
            match dec.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(fail(&tx, e)),
            }
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        hasher.update(&buf);
        total += filled as u64;
        if tx.send(Ok(buf)).is_err() {
            break; // the unpacker stopped; its error is what counts
        }
    }
    Ok((
        compression,
        crate::digest::Digest::from_bytes(hasher.finalize().into()),
        total,
    ))
}

/// Reads the chunks the reading thread sends.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = (self.cur.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn unpack(
    root: &Path,
    input: ChunkReader,
    opts: ApplyOptions<'_>,
) -> Result<ApplyResult, ApplyError> {
    let mut reader = TarReader::new(
        BufReader::with_capacity(256 * 1024, input),
        opts.tarsplit.is_some(),
    );
    let root_fd = sys::open(root, libc::O_PATH | libc::O_DIRECTORY, 0)?;
    let lowers = opts
        .lowers
        .iter()
        .map(|l| sys::open(l, libc::O_PATH | libc::O_DIRECTORY, 0))
        .collect::<io::Result<Vec<_>>>()?;
    let mut a = Applier {
        root: root_fd,
        lowers,
        whiteouts: opts.whiteouts,
        no_overwrite_dir_non_dir: opts.no_overwrite_dir_non_dir,
        sink: opts.tarsplit,
        overrides: Vec::new(),
        shadow_len: 0,
        written: HashMap::new(),
        sparse_maps: HashMap::new(),
        dir_times: Vec::new(),
        cache: None,
        size: 0,
        entries: 0,
        buf: vec![0u8; 1 << 20],
    };
    let mut last_progress = 0u64;
    while let Some(entry) = reader.next_entry()? {
        let raw = reader.take_raw();
        if let Some(s) = a.sink.as_mut() {
            s.writer.raw(&raw)?;
        }
        a.entries += 1;
        a.apply_entry(&entry, &mut reader)?;
        if reader.payload_remaining() != 0 {
            return Err(ApplyError::Entry {
                entry: entry.display(),
                source: io::Error::other("content not consumed"),
            });
        }
        if let Some(p) = opts.progress {
            if reader.offset() - last_progress >= 4 << 20 {
                last_progress = reader.offset();
                p(last_progress);
            }
        }
    }
    let trailer = reader.take_raw();
    a.finish_dir_times()?;
    let tar_bytes = reader.offset();
    if let Some(p) = opts.progress {
        p(tar_bytes);
    }
    if let Some(mut s) = a.sink.take() {
        s.writer.raw(&trailer)?;
        s.writer.finish()?;
        s.shadow.sync_all()?;
    }
    Ok(ApplyResult {
        diff_id: crate::digest::Digest::from_bytes([0; 32]),
        size: a.size,
        entries: a.entries,
        compression: Compression::None,
        tar_bytes,
        overrides: a.overrides,
    })
}

/// An entry's owner as the kernel takes it.
fn owner(e: &Entry) -> Result<(u32, u32), ApplyError> {
    let too_big = |what: &str| ApplyError::Hostile {
        entry: e.display(),
        reason: format!("has a {what} beyond 32 bits"),
    };
    Ok((
        u32::try_from(e.uid).map_err(|_| too_big("uid"))?,
        u32::try_from(e.gid).map_err(|_| too_big("gid"))?,
    ))
}

/// Splits a normalised path into (parent, name).
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|c| *c == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut v = a.to_vec();
    if !v.is_empty() {
        v.push(b'/');
    }
    v.extend_from_slice(b);
    v
}

/// Cleans a tar path: drops `.` and empty components and a leading `./`; refuses absolute
/// paths and `..`.
pub fn normalize(p: &[u8], entry: &str) -> Result<Vec<u8>, ApplyError> {
    if p.starts_with(b"/") {
        return Err(ApplyError::Hostile {
            entry: entry.into(),
            reason: "has an absolute path".into(),
        });
    }
    let mut out = Vec::with_capacity(p.len());
    for comp in p.split(|c| *c == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                return Err(ApplyError::Hostile {
                    entry: entry.into(),
                    reason: "has a '..' path component".into(),
                })
            }
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

fn is_prefix_path(prefix: &[u8], path: &[u8]) -> bool {
    path == prefix
        || (path.len() > prefix.len() && path.starts_with(prefix) && path[prefix.len()] == b'/')
}

struct Applier {
    root: OwnedFd,
    lowers: Vec<OwnedFd>,
    whiteouts: WhiteoutFormat,
    no_overwrite_dir_non_dir: bool,
    sink: Option<TarSplitSink>,
    overrides: Vec<Override>,
    shadow_len: u64,
    /// Paths this layer created, with the tar-split file index of regular files.
    written: HashMap<Vec<u8>, Option<u64>>,
    sparse_maps: HashMap<u64, Vec<(u64, u64)>>,
    dir_times: Vec<(Vec<u8>, Timespec, Timespec)>,
    /// The last parent directory resolved.
    cache: Option<(Vec<u8>, OwnedFd)>,
    size: u64,
    entries: u64,
    buf: Vec<u8>,
}

const BENEATH: u64 = resolve::BENEATH | resolve::NO_MAGICLINKS;

/// Files at least this large have their writeback started as soon as they are written.
const WRITEBACK_FROM: u64 = 1 << 20;

impl Applier {
    fn io_err(entry: &Entry, e: io::Error) -> ApplyError {
        ApplyError::Entry {
            entry: entry.display(),
            source: e,
        }
    }

    fn open_beneath(
        &self,
        entry: &Entry,
        path: &[u8],
        flags: i32,
    ) -> Result<Option<OwnedFd>, ApplyError> {
        match sys::openat2(self.root.as_fd(), path, flags, 0, BENEATH) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => Err(ApplyError::Hostile {
                entry: entry.display(),
                reason: format!(
                    "leads outside the layer through a symlink in {:?}",
                    String::from_utf8_lossy(path)
                ),
            }),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(ApplyError::Hostile {
                entry: entry.display(),
                reason: format!(
                    "passes through a symlink loop in {:?}",
                    String::from_utf8_lossy(path)
                ),
            }),
            Err(e) => Err(Self::io_err(entry, e)),
        }
    }

    /// The directory `dir` (relative to the root), created with its parents when missing.
    fn dir_fd(
        &mut self,
        entry: &Entry,
        dir: &[u8],
        create: bool,
    ) -> Result<Option<BorrowedFd<'_>>, ApplyError> {
        if dir.is_empty() {
            return Ok(Some(self.root.as_fd()));
        }
        if self.cache.as_ref().is_some_and(|(p, _)| p == dir) {
            return Ok(self.cache.as_ref().map(|(_, fd)| fd.as_fd()));
        }
        let flags = libc::O_PATH | libc::O_DIRECTORY;
        let fd = match self.open_beneath(entry, dir, flags)? {
            Some(fd) => fd,
            None if !create => return Ok(None),
            None => {
                // Create missing components one by one, each resolved beneath the root.
                let comps: Vec<&[u8]> = dir.split(|c| *c == b'/').collect();
                let mut cur: Option<OwnedFd> = None;
                for i in 0..comps.len() {
                    let prefix = comps[..=i].join(&b'/');
                    match self.open_beneath(entry, &prefix, flags)? {
                        Some(fd) => cur = Some(fd),
                        None => {
                            let parent =
                                cur.as_ref().map(|f| f.as_fd()).unwrap_or(self.root.as_fd());
                            match sys::mkdirat(parent, comps[i], 0o755) {
                                Ok(()) => {}
                                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                                Err(e) => return Err(Self::io_err(entry, e)),
                            }
                            self.written.entry(prefix.clone()).or_insert(None);
                            cur = Some(self.open_beneath(entry, &prefix, flags)?.ok_or_else(
                                || {
                                    Self::io_err(
                                        entry,
                                        io::Error::new(
                                            io::ErrorKind::NotFound,
                                            "directory vanished",
                                        ),
                                    )
                                },
                            )?);
                        }
                    }
                }
                cur.ok_or_else(|| Self::io_err(entry, io::Error::other("empty directory path")))?
            }
        };
        self.cache = Some((dir.to_vec(), fd));
        Ok(self.cache.as_ref().map(|(_, fd)| fd.as_fd()))
    }

    /// Saves the content of files this layer wrote under `path` before they are removed, so
    /// that re-export can still produce them.
    fn stash(&mut self, path: &[u8], is_dir: bool) -> Result<(), ApplyError> {
        if self.sink.is_none() || self.written.is_empty() {
            return Ok(());
        }
        let mut victims: Vec<(Vec<u8>, u64)> = Vec::new();
        if let Some(Some(i)) = self.written.get(path) {
            victims.push((path.to_vec(), *i));
        }
        if is_dir {
            victims.extend(
                self.written
                    .iter()
                    .filter(|(p, i)| i.is_some() && is_prefix_path(path, p) && p.as_slice() != path)
                    .map(|(p, i)| (p.clone(), i.unwrap_or(0))),
            );
        }
        for (p, index) in victims {
            let fd = sys::openat2(
                self.root.as_fd(),
                &p,
                libc::O_RDONLY | libc::O_NOFOLLOW,
                0,
                BENEATH | resolve::NO_SYMLINKS,
            )?;
            let file = File::from(fd);
            let chunks = match self.sparse_maps.get(&index) {
                Some(m) => m.clone(),
                None => vec![(0, file.metadata()?.len())],
            };
            let start = self.shadow_len;
            let sink = self
                .sink
                .as_mut()
                .ok_or_else(|| io::Error::other("no sink"))?;
            for (off, len) in chunks {
                let mut done = 0u64;
                while done < len {
                    let want = (len - done).min(self.buf.len() as u64) as usize;
                    let n = file.read_at(&mut self.buf[..want], off + done)?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file shrank while stashed",
                        )
                        .into());
                    }
                    sink.shadow.write_all(&self.buf[..n])?;
                    done += n as u64;
                }
            }
            self.shadow_len = std::io::Seek::stream_position(&mut sink.shadow)?;
            self.overrides.push(Override {
                file_index: index,
                offset: start,
                len: self.shadow_len - start,
            });
            self.written.insert(p, None);
        }
        Ok(())
    }

    /// Removes `parent/name` (whose full path is `path`), recursively, after stashing.
    fn remove_existing(
        &mut self,
        entry: &Entry,
        parent: &[u8],
        name: &[u8],
        path: &[u8],
        st: &libc::stat,
    ) -> Result<(), ApplyError> {
        let is_dir = sys::is_dir(st);
        self.stash(path, is_dir)?;
        if self
            .cache
            .as_ref()
            .is_some_and(|(p, _)| is_prefix_path(path, p))
        {
            self.cache = None;
        }
        let pfd = self
            .dir_fd(entry, parent, false)?
            .ok_or_else(|| Self::io_err(entry, io::Error::other("parent vanished")))?;
        remove_tree_at(pfd, name).map_err(|e| Self::io_err(entry, e))
    }

    fn apply_entry<R: Read>(
        &mut self,
        e: &Entry,
        reader: &mut TarReader<R>,
    ) -> Result<(), ApplyError> {
        let path = normalize(&e.path, &e.display())?;
        let (parent, name) = split(&path);
        let (parent, name) = (parent.to_vec(), name.to_vec());
        if name.starts_with(WHITEOUT_PREFIX) && self.whiteouts != WhiteoutFormat::None {
            self.inline_payload(reader)?;
            return self.whiteout(e, &parent, &name);
        }
        if path.is_empty() {
            if e.kind != Kind::Dir {
                return Err(ApplyError::Hostile {
                    entry: e.display(),
                    reason: "would replace the layer root".into(),
                });
            }
            let root = sys::openat(
                self.root.as_fd(),
                b".",
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )?;
            self.set_owner_mode_xattrs(e, root.as_fd(), true)?;
            self.dir_times
                .push((Vec::new(), e.atime.unwrap_or(e.mtime), e.mtime));
            return Ok(());
        }
        let link_target = if e.kind == Kind::Hardlink {
            Some(normalize(&e.link, &e.display())?)
        } else {
            None
        };
        if link_target.as_deref() == Some(&b""[..]) {
            return Err(ApplyError::Hostile {
                entry: e.display(),
                reason: "hard-links to the layer root".into(),
            });
        }
        match e.kind {
            Kind::Regular => self.regular(e, reader, &parent, &name, &path)?,
            Kind::Dir => {
                self.create_at(e, &parent, &name, &path, |pfd| {
                    match sys::mkdirat(pfd, &name, 0o700) {
                        Err(x)
                            if x.raw_os_error() == Some(libc::EEXIST)
                                && sys::lstat_at(pfd, &name)?
                                    .is_some_and(|st| sys::is_dir(&st)) =>
                        {
                            Ok(())
                        }
                        other => other,
                    }
                })?;
                let pfd = self
                    .dir_fd(e, &parent, false)?
                    .ok_or_else(|| Self::io_err(e, io::Error::other("no parent")))?;
                let d = sys::openat(
                    pfd,
                    &name,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )
                .map_err(|x| Self::io_err(e, x))?;
                self.set_owner_mode_xattrs(e, d.as_fd(), true)?;
                self.dir_times
                    .push((path.clone(), e.atime.unwrap_or(e.mtime), e.mtime));
                self.written.insert(path, None);
            }
            Kind::Symlink => {
                self.create_at(e, &parent, &name, &path, |pfd| {
                    sys::symlinkat(&e.link, pfd, &name)
                })?;
                self.finish_node(e, &parent, &name, false)?;
                self.written.insert(path, None);
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                let t = match e.kind {
                    Kind::Char => libc::S_IFCHR,
                    Kind::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let dev = sys::makedev(e.devmajor, e.devminor);
                self.create_at(e, &parent, &name, &path, |pfd| {
                    sys::mknodat(pfd, &name, t | (e.mode & 0o7777), dev)
                })?;
                self.finish_node(e, &parent, &name, true)?;
                self.written.insert(path, None);
            }
            Kind::Hardlink => {
                let target = link_target.unwrap_or_default();
                self.hardlink(e, &parent, &name, &path, &target)?;
                self.written.insert(path, None);
            }
        }
        Ok(())
    }

    fn inline_payload<R: Read>(&mut self, reader: &mut TarReader<R>) -> Result<(), ApplyError> {
        if reader.payload_remaining() > 0 {
            let data = reader.read_payload_to_vec()?;
            if let Some(s) = self.sink.as_mut() {
                s.writer.inline(&data)?;
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, e: &Entry, parent: &[u8], name: &[u8]) -> Result<(), ApplyError> {
        let format = self.whiteouts;
        if name == OPAQUE_WHITEOUT {
            let create = format == WhiteoutFormat::Overlay;
            let Some(dfd) = self.dir_fd(e, parent, create)? else {
                return Ok(());
            };
            match format {
                WhiteoutFormat::Overlay => {
                    sys::set_xattr_at(dfd, b"", OVERLAY_OPAQUE_XATTR, b"y")
                        .map_err(|x| Self::io_err(e, x))?;
                }
                WhiteoutFormat::Delete | WhiteoutFormat::None => {
                    let names = crate::fsutil::list_dir(dfd).map_err(|x| Self::io_err(e, x))?;
                    for child in names {
                        let cpath = join(parent, &child);
                        if self.written.contains_key(&cpath) {
                            continue;
                        }
                        let dfd = self
                            .dir_fd(e, parent, false)?
                            .ok_or_else(|| Self::io_err(e, io::Error::other("dir vanished")))?;
                        if let Some(st) =
                            sys::lstat_at(dfd, &child).map_err(|x| Self::io_err(e, x))?
                        {
                            self.remove_existing(e, parent, &child, &cpath, &st)?;
                        }
                    }
                }
            }
            return Ok(());
        }
        if name.starts_with(b".wh..wh.") {
            // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not content.
            return Ok(());
        }
        let victim = &name[WHITEOUT_PREFIX.len()..];
        if victim.is_empty() || victim == b"." || victim == b".." {
            return Err(ApplyError::Hostile {
                entry: e.display(),
                reason: "is a whiteout without a valid name".into(),
            });
        }
        let vpath = join(parent, victim);
        let create = self.whiteouts == WhiteoutFormat::Overlay;
        let Some(pfd) = self.dir_fd(e, parent, create)? else {
            return Ok(());
        };
        if let Some(st) = sys::lstat_at(pfd, victim).map_err(|x| Self::io_err(e, x))? {
            self.remove_existing(e, parent, victim, &vpath, &st)?;
        }
        if self.whiteouts == WhiteoutFormat::Overlay {
            let pfd = self
                .dir_fd(e, parent, true)?
                .ok_or_else(|| Self::io_err(e, io::Error::other("no parent")))?;
            sys::mknodat(pfd, victim, libc::S_IFCHR, 0).map_err(|x| Self::io_err(e, x))?;
        }
        self.written.remove(&vpath);
        Ok(())
    }

    /// Runs `create` in the parent directory; if the name is taken, makes room (whatever is
    /// there goes, except a directory that stays a directory) and tries once more.
    fn create_at<T>(
        &mut self,
        e: &Entry,
        parent: &[u8],
        name: &[u8],
        path: &[u8],
        mut create: impl FnMut(BorrowedFd<'_>) -> io::Result<T>,
    ) -> Result<T, ApplyError> {
        let pfd = self
            .dir_fd(e, parent, true)?
            .ok_or_else(|| Self::io_err(e, io::Error::other("no parent")))?;
        match create(pfd) {
            Err(x) if x.raw_os_error() == Some(libc::EEXIST) => {}
            other => return other.map_err(|x| Self::io_err(e, x)),
        }
        let pfd = self
            .dir_fd(e, parent, true)?
            .ok_or_else(|| Self::io_err(e, io::Error::other("no parent")))?;
        if let Some(st) = sys::lstat_at(pfd, name).map_err(|x| Self::io_err(e, x))? {
            let (new_dir, old_dir) = (e.kind == Kind::Dir, sys::is_dir(&st));
            if self.no_overwrite_dir_non_dir && new_dir != old_dir {
                let what = if old_dir {
                    "cannot overwrite a directory with a non-directory"
                } else {
                    "cannot overwrite a non-directory with a directory"
                };
                return Err(Self::io_err(e, io::Error::other(what)));
            }
            if !(new_dir && old_dir) {
                self.remove_existing(e, parent, name, path, &st)?;
            }
        }
        let pfd = self
            .dir_fd(e, parent, true)?
            .ok_or_else(|| Self::io_err(e, io::Error::other("no parent")))?;
        create(pfd).map_err(|x| Self::io_err(e, x))
    }

    fn regular<R: Read>(
        &mut self,
        e: &Entry,
        reader: &mut TarReader<R>,
        parent: &[u8],
        name: &[u8],
        path: &[u8],
    ) -> Result<(), ApplyError> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let fd = self.create_at(e, parent, name, path, |pfd| {
            sys::openat(pfd, name, flags, 0o600)
        })?;
        let file = File::from(fd);
        match &e.sparse {
            None => {
                let mut w = &file;
                loop {
                    let n = reader.read_payload(&mut self.buf)?;
                    if n == 0 {
                        break;
                    }
                    w.write_all(&self.buf[..n])
                        .map_err(|x| Self::io_err(e, x))?;
                }
            }
            Some(map) => {
                for (off, len) in map {
                    let mut done = 0u64;
                    while done < *len {
                        let want = (*len - done).min(self.buf.len() as u64) as usize;
                        let n = reader.read_payload(&mut self.buf[..want])?;
                        if n == 0 {
                            return Err(TarError::Truncated { entry: e.display() }.into());
                        }
                        file.write_all_at(&self.buf[..n], off + done)
                            .map_err(|x| Self::io_err(e, x))?;
                        done += n as u64;
                    }
                }
                sys::ftruncate(file.as_fd(), e.size).map_err(|x| Self::io_err(e, x))?;
            }
        }
        if e.size >= WRITEBACK_FROM {
            // Start writing this file back now, so that the sync before the layer's commit
            // waits only for what was written last (a hint; failure changes nothing).
            // SAFETY: a valid descriptor; the call only schedules writeback.
            unsafe {
                libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
        self.set_owner_mode_xattrs(e, file.as_fd(), true)?;
        sys::lutimensat(file.as_fd(), b"", e.atime.unwrap_or(e.mtime), e.mtime)
            .map_err(|x| Self::io_err(e, x))?;
        self.size += e.size;
        let index = match self.sink.as_mut() {
            Some(s) => {
                let i = s.writer.file(path, e.payload, e.sparse.as_deref())?;
                if let Some(m) = &e.sparse {
                    self.sparse_maps.insert(i, m.clone());
                }
                Some(i)
            }
            None => None,
        };
        self.written.insert(path.to_vec(), index);
        Ok(())
    }

    fn hardlink(
        &mut self,
        e: &Entry,
        parent: &[u8],
        name: &[u8],
        path: &[u8],
        target: &[u8],
    ) -> Result<(), ApplyError> {
        if target == path {
            return Err(ApplyError::Entry {
                entry: e.display(),
                source: io::Error::other("hard link to itself"),
            });
        }
        let (tparent, tname) = split(target);
        let present = match self.open_beneath(e, tparent, libc::O_PATH | libc::O_DIRECTORY)? {
            Some(tfd) => sys::lstat_at(tfd.as_fd(), tname)
                .map_err(|x| Self::io_err(e, x))?
                .is_some(),
            None => false,
        };
        if !present {
            self.copy_up(e, target)?;
        }
        let tfd = self
            .open_beneath(e, tparent, libc::O_PATH | libc::O_DIRECTORY)?
            .ok_or_else(|| {
                Self::io_err(
                    e,
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        "hard link target directory missing",
                    ),
                )
            })?;
        self.create_at(e, parent, name, path, |pfd| {
            sys::linkat(tfd.as_fd(), tname, pfd, name)
        })
        .map_err(|x| match x {
            ApplyError::Entry { entry, source } => ApplyError::Entry {
                entry,
                source: io::Error::new(
                    source.kind(),
                    format!(
                        "hard link to {:?}: {source}",
                        String::from_utf8_lossy(target)
                    ),
                ),
            },
            other => other,
        })
    }

    /// Brings a lower layer's file into this layer so that a hard link can point at it.
    fn copy_up(&mut self, e: &Entry, target: &[u8]) -> Result<(), ApplyError> {
        let (tparent, tname) = split(target);
        let not_found = || {
            Self::io_err(
                e,
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "hard link target {:?} does not exist",
                        String::from_utf8_lossy(target)
                    ),
                ),
            )
        };
        let mut found: Option<(OwnedFd, libc::stat)> = None;
        for lower in &self.lowers {
            let dir = match sys::openat2(
                lower.as_fd(),
                tparent,
                libc::O_PATH | libc::O_DIRECTORY,
                0,
                BENEATH,
            ) {
                Ok(d) => d,
                Err(x) if x.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(x) if x.raw_os_error() == Some(libc::EXDEV) => {
                    return Err(ApplyError::Hostile {
                        entry: e.display(),
                        reason: "hard-links through a symlink that leaves the layer".into(),
                    })
                }
                Err(x) => return Err(Self::io_err(e, x)),
            };
            match sys::lstat_at(dir.as_fd(), tname).map_err(|x| Self::io_err(e, x))? {
                None => continue,
                Some(st) if sys::file_type(st.st_mode) == libc::S_IFCHR && st.st_rdev == 0 => break,
                Some(st) => {
                    found = Some((dir, st));
                    break;
                }
            }
        }
        let (ldir, st) = found.ok_or_else(not_found)?;
        if sys::file_type(st.st_mode) != libc::S_IFREG {
            return Err(Self::io_err(
                e,
                io::Error::other("hard link target in a lower layer is not a regular file"),
            ));
        }
        let src = sys::openat(ldir.as_fd(), tname, libc::O_RDONLY | libc::O_NOFOLLOW, 0)
            .map_err(|x| Self::io_err(e, x))?;
        let pfd = self
            .dir_fd(e, tparent, true)?
            .ok_or_else(|| Self::io_err(e, io::Error::other("no parent")))?;
        let dst = sys::openat(
            pfd,
            tname,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o600,
        )
        .map_err(|x| Self::io_err(e, x))?;
        copy_file_contents(src.as_fd(), dst.as_fd(), st.st_size as u64, CopyMode::Auto)
            .map_err(|x| Self::io_err(e, x))?;
        sys::lchownat(dst.as_fd(), b"", st.st_uid, st.st_gid).map_err(|x| Self::io_err(e, x))?;
        sys::fchmod(dst.as_fd(), st.st_mode & 0o7777).map_err(|x| Self::io_err(e, x))?;
        for n in sys::list_xattr_at(src.as_fd(), b"")? {
            if let Some(v) = sys::get_xattr_at(src.as_fd(), b"", &n)? {
                let _ = sys::set_xattr_at(dst.as_fd(), b"", &n, &v);
            }
        }
        sys::lutimensat(
            dst.as_fd(),
            b"",
            Timespec::atime_of(&st),
            Timespec::mtime_of(&st),
        )
        .map_err(|x| Self::io_err(e, x))?;
        Ok(())
    }

    /// Owner, mode and xattrs of an open file or directory (in that order: chown clears setuid
    /// bits and file capabilities).
    fn set_owner_mode_xattrs(
        &self,
        e: &Entry,
        fd: BorrowedFd<'_>,
        chmod: bool,
    ) -> Result<(), ApplyError> {
        let (uid, gid) = owner(e)?;
        sys::lchownat(fd, b"", uid, gid).map_err(|x| Self::io_err(e, x))?;
        if chmod {
            sys::fchmod(fd, e.mode & 0o7777).map_err(|x| Self::io_err(e, x))?;
        }
        Self::set_xattrs(e, fd, b"")
    }

    fn set_xattrs(e: &Entry, dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), ApplyError> {
        for (k, v) in &e.xattrs {
            match sys::set_xattr_at(dir, name, k, v) {
                Ok(()) => {}
                Err(x) if matches!(x.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) => {
                    tracing::warn!(entry = %e.display(), xattr = %String::from_utf8_lossy(k), "xattr not applied: {x}");
                }
                Err(x) => return Err(Self::io_err(e, x)),
            }
        }
        Ok(())
    }

    /// Owner, mode, xattrs and times of a symlink, device or FIFO just created.
    fn finish_node(
        &mut self,
        e: &Entry,
        parent: &[u8],
        name: &[u8],
        chmod: bool,
    ) -> Result<(), ApplyError> {
        let (uid, gid) = owner(e)?;
        let pfd = self
            .dir_fd(e, parent, false)?
            .ok_or_else(|| Self::io_err(e, io::Error::other("no parent")))?;
        sys::lchownat(pfd, name, uid, gid).map_err(|x| Self::io_err(e, x))?;
        if chmod {
            sys::fchmodat(pfd, name, e.mode & 0o7777).map_err(|x| Self::io_err(e, x))?;
        }
        sys::lutimensat(pfd, name, e.atime.unwrap_or(e.mtime), e.mtime)
            .map_err(|x| Self::io_err(e, x))?;
        let pfd = self
            .dir_fd(e, parent, false)?
            .ok_or_else(|| Self::io_err(e, io::Error::other("no parent")))?;
        Self::set_xattrs(e, pfd, name)
    }

    /// Directory times go last, deepest first: creating entries inside changes them.
    fn finish_dir_times(&mut self) -> Result<(), ApplyError> {
        self.cache = None;
        let times = std::mem::take(&mut self.dir_times);
        for (path, at, mt) in times.iter().rev() {
            let fd = match sys::openat2(
                self.root.as_fd(),
                path,
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
                BENEATH | resolve::NO_SYMLINKS,
            ) {
                Ok(fd) => fd,
                Err(x)
                    if matches!(
                        x.raw_os_error(),
                        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP)
                    ) =>
                {
                    continue
                }
                Err(x) => return Err(x.into()),
            };
            sys::lutimensat(fd.as_fd(), b"", *at, *mt)?;
        }
        Ok(())
    }
}
