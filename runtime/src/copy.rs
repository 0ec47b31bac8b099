//! Files in and out of a container's root (`docker cp`, `docker export`): paths are resolved
//! as the container would see them (symlinks stay inside the root, `..` stops at it), so no
//! request can read or write outside.

use serde::Serialize;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use strata_graph::archive::{apply_layer, ApplyError, ApplyOptions, TreeArchiver, WhiteoutFormat};
use strata_graph::fsutil::list_dir;
use strata_graph::sys::{self, resolve};

/// Errors of copying to and from a container.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("Could not find the file {0} in container {1}")]
    NotFound(String, String),
    #[error("extraction point is not a directory")]
    NotADirectory,
    #[error("{0}")]
    Apply(#[from] ApplyError),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> CopyError {
    let context = context.into();
    move |source| CopyError::Io { context, source }
}

/// What `HEAD /containers/{id}/archive` reports of a path (`X-Docker-Container-Path-Stat`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// A Go `os.FileMode`: permission bits plus Go's type and special bits.
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// A Unix mode as a Go `os.FileMode`.
pub fn go_file_mode(mode: u32) -> u32 {
    let mut m = mode & 0o777;
    m |= match mode & libc::S_IFMT {
        libc::S_IFDIR => 1 << 31,
        libc::S_IFLNK => 1 << 27,
        libc::S_IFBLK => 1 << 26,
        libc::S_IFIFO => 1 << 25,
        libc::S_IFSOCK => 1 << 24,
        libc::S_IFCHR => (1 << 26) | (1 << 21),
        _ => 0,
    };
    if mode & libc::S_ISUID != 0 {
        m |= 1 << 23;
    }
    if mode & libc::S_ISGID != 0 {
        m |= 1 << 22;
    }
    if mode & libc::S_ISVTX != 0 {
        m |= 1 << 20;
    }
    m
}

/// A container path split for resolution: the directory to resolve (following symlinks inside
/// the root), and the last name (not followed), or `None` when the path names a directory
/// itself (`/`, `dir/`, `dir/.`).
struct Target {
    dir: Vec<u8>,
    base: Option<Vec<u8>>,
}

fn split_target(path: &str) -> Target {
    let trimmed = path.trim_start_matches('/');
    let follow = trimmed.is_empty() || path.ends_with('/') || path.ends_with("/.") || path == ".";
    if follow {
        return Target {
            dir: trimmed.as_bytes().to_vec(),
            base: None,
        };
    }
    match trimmed.rsplit_once('/') {
        Some((d, b)) => Target {
            dir: d.as_bytes().to_vec(),
            base: Some(b.as_bytes().to_vec()),
        },
        None => Target {
            dir: Vec::new(),
            base: Some(trimmed.as_bytes().to_vec()),
        },
    }
}

fn open_in_root(root: BorrowedFd<'_>, rel: &[u8]) -> io::Result<OwnedFd> {
    let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
    sys::openat2(
        root,
        rel,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        resolve::IN_ROOT | resolve::NO_MAGICLINKS,
    )
}

/// A resolved path: the directory holding it and the name in it (`.` for a directory named
/// itself).
struct Resolved {
    dir: OwnedFd,
    name: Vec<u8>,
    st: libc::stat,
}

fn resolve_path(root: &Path, path: &str, container: &str) -> Result<Resolved, CopyError> {
    let not_found = || CopyError::NotFound(path.to_string(), container.to_string());
    let rfd = sys::open(root, libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(io_ctx(format!("opening {}", root.display())))?;
    let t = split_target(path);
    let dir = match open_in_root(rfd.as_fd(), &t.dir) {
        Ok(d) => d,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
            return Err(not_found())
        }
        Err(e) => return Err(io_ctx(format!("resolving {path}"))(e)),
    };
    let name = t.base.unwrap_or_else(|| b".".to_vec());
    if name == b".." {
        // `a/..` names a directory: resolve it whole.
        let whole = [t.dir.as_slice(), b"/.."].concat();
        let d = open_in_root(rfd.as_fd(), &whole).map_err(|_| not_found())?;
        let st = sys::fstatat(d.as_fd(), b"", libc::AT_EMPTY_PATH)
            .map_err(io_ctx(format!("stat {path}")))?;
        return Ok(Resolved {
            dir: d,
            name: b".".to_vec(),
            st,
        });
    }
    let st = sys::lstat_at(dir.as_fd(), &name)
        .map_err(io_ctx(format!("stat {path}")))?
        .ok_or_else(not_found)?;
    Ok(Resolved { dir, name, st })
}

fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Stat of a path in the container, as `docker cp` needs it.
pub fn stat(root: &Path, path: &str, container: &str) -> Result<PathStat, CopyError> {
    let r = resolve_path(root, path, container)?;
    let link_target = if sys::file_type(r.st.st_mode) == libc::S_IFLNK {
        let t =
            sys::readlinkat(r.dir.as_fd(), &r.name).map_err(io_ctx(format!("readlink {path}")))?;
        let t = String::from_utf8_lossy(&t).into_owned();
        if t.starts_with('/') {
            t
        } else {
            let parent = Path::new(path).parent().unwrap_or(Path::new("/"));
            parent.join(t).to_string_lossy().into_owned()
        }
    } else {
        String::new()
    };
    let base = Path::new(path.trim_end_matches("/."))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    let mtime = std::time::UNIX_EPOCH
        + std::time::Duration::new(r.st.st_mtime.max(0) as u64, r.st.st_mtime_nsec as u32);
    Ok(PathStat {
        name: base,
        size: r.st.st_size,
        mode: go_file_mode(r.st.st_mode),
        mtime: strata_graph::time::rfc3339(mtime),
        link_target,
    })
}

/// Adds `rel` and, for a directory, everything beneath it.
fn add_tree<W: Write>(a: &mut TreeArchiver<W>, base: BorrowedFd<'_>, rel: &[u8]) -> io::Result<()> {
    if !rel.is_empty() {
        a.add_path(rel)?;
    }
    let open_rel: &[u8] = if rel.is_empty() { b"." } else { rel };
    let st = sys::fstatat(base, open_rel, libc::AT_SYMLINK_NOFOLLOW)?;
    if !sys::is_dir(&st) {
        return Ok(());
    }
    let dfd = sys::openat2(
        base,
        open_rel,
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
        resolve::BENEATH | resolve::NO_SYMLINKS | resolve::NO_MAGICLINKS,
    )?;
    let mut names = list_dir(dfd.as_fd())?;
    names.sort();
    for n in names {
        let child = if rel.is_empty() {
            n
        } else {
            [rel, b"/", &n].concat()
        };
        add_tree(a, base, &child)?;
    }
    Ok(())
}

/// Writes a tar of `path` in the container: entries named from its last component, as
/// dockerd's archive endpoint does (`/etc` → `etc`, `etc/hosts`, ...).
pub fn archive<W: Write>(
    root: &Path,
    path: &str,
    container: &str,
    out: W,
) -> Result<(PathStat, W), CopyError> {
    let st = stat(root, path, container)?;
    let r = resolve_path(root, path, container)?;
    let mut a = TreeArchiver::new(&fd_path(r.dir.as_fd()), out)
        .map_err(io_ctx(format!("archiving {path}")))?;
    let base = sys::open(&fd_path(r.dir.as_fd()), libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(io_ctx(format!("archiving {path}")))?;
    add_tree(&mut a, base.as_fd(), &r.name).map_err(io_ctx(format!("archiving {path}")))?;
    let out = a.finish().map_err(io_ctx(format!("archiving {path}")))?;
    Ok((st, out))
}

/// Writes a tar of `name` in the local directory `dir` and everything beneath it, named `as_name`
/// in the archive (the client's side of `docker cp` into a container).
pub fn archive_local<W: Write>(
    dir: &Path,
    name: &[u8],
    as_name: &[u8],
    out: W,
) -> Result<W, CopyError> {
    let ctx = || {
        format!(
            "archiving {}",
            dir.join(String::from_utf8_lossy(name).as_ref()).display()
        )
    };
    let mut a = TreeArchiver::new(dir, out)
        .map_err(io_ctx(ctx()))?
        .rebase(name, as_name);
    let base = sys::open(dir, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(io_ctx(ctx()))?;
    add_tree(&mut a, base.as_fd(), name).map_err(io_ctx(ctx()))?;
    a.finish().map_err(io_ctx(ctx()))
}

/// Unpacks a plain tar into a local directory (the client's side of `docker cp` out of a
/// container): entries stay beneath `dir`, `.wh.` names are ordinary files.
pub fn extract_local<R: Read + Send>(dir: &Path, input: R) -> Result<(), CopyError> {
    let mut opts = ApplyOptions::new(WhiteoutFormat::None);
    opts.no_overwrite_dir_non_dir = true;
    apply_layer(dir, input, opts)?;
    Ok(())
}

/// Writes the whole tree at `root` as a tar (`docker export`).
pub fn export_tree<W: Write>(root: &Path, out: W) -> Result<W, CopyError> {
    let mut a = TreeArchiver::new(root, out).map_err(io_ctx("exporting"))?;
    let base = sys::open(root, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(io_ctx("exporting"))?;
    add_tree(&mut a, base.as_fd(), b"").map_err(io_ctx("exporting"))?;
    a.finish().map_err(io_ctx("exporting"))
}

/// Unpacks a tar into the directory `path` of the container (`PUT .../archive`). `.wh.` names
/// are ordinary files here, and every entry stays beneath the directory.
pub fn extract<R: Read + Send>(
    root: &Path,
    path: &str,
    container: &str,
    input: R,
    no_overwrite_dir_non_dir: bool,
) -> Result<(), CopyError> {
    let rfd = sys::open(root, libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(io_ctx(format!("opening {}", root.display())))?;
    let rel = path.trim_start_matches('/').as_bytes();
    let dir = match open_in_root(rfd.as_fd(), rel) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Err(CopyError::NotADirectory),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(CopyError::NotFound(path.to_string(), container.to_string()))
        }
        Err(e) => return Err(io_ctx(format!("resolving {path}"))(e)),
    };
    let mut opts = ApplyOptions::new(WhiteoutFormat::None);
    opts.no_overwrite_dir_non_dir = no_overwrite_dir_non_dir;
    apply_layer(&fd_path(dir.as_fd()), input, opts)?;
    Ok(())
}

/// Copies what the directory `path` of the container holds into the local directory `dst`
/// (an image's content into a new, empty volume), with owners, modes and times; `dst` itself
/// takes the source directory's owner and mode. `Ok(false)` when `path` is missing or not a
/// directory: there is nothing to copy.
pub fn copy_dir_out(
    root: &Path,
    path: &str,
    container: &str,
    dst: &Path,
) -> Result<bool, CopyError> {
    let r = match resolve_path(root, path, container) {
        Ok(r) => r,
        Err(CopyError::NotFound(..)) => return Ok(false),
        Err(e) => return Err(e),
    };
    if !sys::is_dir(&r.st) {
        return Ok(false);
    }
    let src = sys::openat2(
        r.dir.as_fd(),
        &r.name,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        resolve::BENEATH | resolve::NO_SYMLINKS | resolve::NO_MAGICLINKS,
    )
    .map_err(io_ctx(format!("opening {path}")))?;
    let (reader, writer) = io::pipe().map_err(io_ctx("making a pipe"))?;
    let src_path = fd_path(src.as_fd());
    std::thread::scope(|s| -> Result<(), CopyError> {
        let out = s.spawn(move || export_tree(&src_path, writer).map(drop));
        let applied = extract_local(dst, reader);
        let exported = out
            .join()
            .unwrap_or_else(|_| Err(io_ctx("copying")(io::Error::other("the copier panicked"))));
        applied.and(exported)
    })?;
    let owner = || -> io::Result<()> {
        let d = sys::open(
            dst,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )?;
        sys::lchownat(d.as_fd(), b"", r.st.st_uid, r.st.st_gid)?;
        sys::fchmod(d.as_fd(), r.st.st_mode & 0o7777)
    };
    owner().map_err(io_ctx(format!(
        "setting the owner and mode of {}",
        dst.display()
    )))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_graph::archive::tar::{Header, Kind, TarReader, TarWriter};

    fn names(tar: &[u8]) -> Vec<String> {
        let mut r = TarReader::new(tar, false);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            out.push(e.display());
        }
        out
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/sub")).unwrap();
        std::fs::write(d.path().join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
        std::fs::write(d.path().join("etc/sub/x"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("link")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/hosts", d.path().join("escape")).unwrap();
        d
    }

    #[test]
    fn stat_and_archive_stay_in_the_root() {
        let d = tree();
        let s = stat(d.path(), "/etc/hosts", "c").unwrap();
        assert_eq!((s.name.as_str(), s.size), ("hosts", 20));
        assert_eq!(s.mode & (1 << 31), 0);
        assert_ne!(stat(d.path(), "/etc", "c").unwrap().mode & (1 << 31), 0);
        let l = stat(d.path(), "/link", "c").unwrap();
        assert_eq!(l.link_target, "/etc");
        // Through a symlink, inside the root.
        assert_eq!(stat(d.path(), "/link/hosts", "c").unwrap().size, 20);
        // `..` stops at the root; a relative escape resolves inside it.
        assert_eq!(stat(d.path(), "/../../etc/hosts", "c").unwrap().size, 20);
        assert!(matches!(
            stat(d.path(), "/nosuch/x", "c"),
            Err(CopyError::NotFound(..))
        ));
        let (_, tar) = archive(d.path(), "/etc", "c", Vec::new()).unwrap();
        assert_eq!(names(&tar), ["etc/", "etc/hosts", "etc/sub/", "etc/sub/x"]);
        let (_, tar) = archive(d.path(), "/link/sub/", "c", Vec::new()).unwrap();
        assert_eq!(names(&tar), ["./", "./x"]);
        let tar = export_tree(d.path(), Vec::new()).unwrap();
        assert_eq!(
            names(&tar),
            [
                "escape",
                "etc/",
                "etc/hosts",
                "etc/sub/",
                "etc/sub/x",
                "link"
            ]
        );
    }

    #[test]
    fn extract_stays_in_the_root() {
        let d = tree();
        let outside = tempfile::tempdir().unwrap();
        let mut w = TarWriter::new(Vec::new());
        let mut f = Header::new("new.txt", Kind::Regular, 2);
        f.mode = 0o644;
        w.append(&f, Some(&mut &b"hi"[..])).unwrap();
        w.append(&Header::new(".wh.kept", Kind::Regular, 0), None)
            .unwrap();
        let tar = w.finish().unwrap();
        // Into a directory named through a symlink that points outside: lands inside.
        std::os::unix::fs::symlink(outside.path(), d.path().join("out")).unwrap();
        let err = extract(d.path(), "/out", "c", &tar[..], true);
        assert!(matches!(err, Err(CopyError::NotFound(..))), "{err:?}");
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        extract(d.path(), "/link/sub", "c", &tar[..], true).unwrap();
        assert_eq!(
            std::fs::read(d.path().join("etc/sub/new.txt")).unwrap(),
            b"hi"
        );
        assert!(d.path().join("etc/sub/.wh.kept").exists());
        assert!(matches!(
            extract(d.path(), "/etc/hosts", "c", &tar[..], true),
            Err(CopyError::NotADirectory)
        ));
        // A file over a directory is refused with noOverwriteDirNonDir.
        let mut w = TarWriter::new(Vec::new());
        w.append(&Header::new("sub", Kind::Regular, 0), None)
            .unwrap();
        let tar = w.finish().unwrap();
        let e = extract(d.path(), "/etc", "c", &tar[..], true).unwrap_err();
        assert!(
            e.to_string().contains("cannot overwrite a directory"),
            "{e}"
        );
        assert!(d.path().join("etc/sub/x").exists());
        // A hostile entry is refused.
        let mut w = TarWriter::new(Vec::new());
        w.append(&Header::new("../../evil", Kind::Regular, 0), None)
            .unwrap();
        let tar = w.finish().unwrap();
        assert!(extract(d.path(), "/etc", "c", &tar[..], true).is_err());
        assert!(!d.path().parent().unwrap().join("evil").exists());
    }
}
