//! The build context on disk: `COPY`/`ADD` sources resolved inside it (wildcards as Go's
//! `filepath.Match`; `..` past its root is refused, and every path is opened with
//! `openat2(RESOLVE_IN_ROOT)`, so a symlink in the context resolves inside it as it would in
//! a chroot and never reaches the host's files), and a checksum of what a source holds (paths, modes, owners, symlink
//! targets, file contents) that the build cache keys COPY and ADD steps with.

use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use strata_graph::sys::{self, resolve as how};

/// A context directory, every path inside it resolved in its root.
pub struct Context {
    root: OwnedFd,
}

/// What a path in the context is.
pub struct Entry {
    pub st: libc::stat,
    fd: OwnedFd,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.st.st_mode & libc::S_IFMT == libc::S_IFDIR
    }

    pub fn is_symlink(&self) -> bool {
        self.st.st_mode & libc::S_IFMT == libc::S_IFLNK
    }

    /// The entry's `O_PATH` descriptor.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `/proc/self/fd/N`: the entry reopened (files, directories).
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

impl Context {
    /// The context at `dir`.
    pub fn open(dir: &Path) -> Result<Context, ContextError> {
        let root = sys::open(dir, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(io_err(dir))?;
        Ok(Context { root })
    }

    /// The entry at `rel` (the last element not followed), or `None` when missing.
    pub fn entry(&self, rel: &Path) -> Result<Option<Entry>, ContextError> {
        let bytes = rel.as_os_str().as_bytes();
        match sys::openat2(
            self.root.as_fd(),
            bytes,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
            how::IN_ROOT | how::NO_MAGICLINKS,
        ) {
            Ok(fd) => {
                let st = sys::fstatat(fd.as_fd(), b"", 0).map_err(io_err(rel))?;
                Ok(Some(Entry { st, fd }))
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => Ok(None),
            Err(e) => Err(io_err(rel)(e)),
        }
    }

    /// The names in directory `rel`, sorted.
    pub fn names(&self, rel: &Path) -> Result<Vec<String>, ContextError> {
        let Some(e) = self.entry(rel)? else {
            return Ok(Vec::new());
        };
        if !e.is_dir() {
            return Ok(Vec::new());
        }
        let mut v: Vec<String> = fs::read_dir(e.proc_path())
            .map_err(io_err(rel))?
            .filter_map(|x| x.ok().map(|x| x.file_name().to_string_lossy().into_owned()))
            .collect();
        v.sort();
        Ok(v)
    }
}

/// Errors of context paths.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("forbidden path outside the build context: {0}")]
    Outside(String),
    #[error("COPY failed: file not found in build context or excluded by .dockerignore: stat {0}: file does not exist")]
    NotFound(String),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Cleans `src` as a path relative to the context root; refuses one that leaves it.
pub fn inside(src: &str) -> Result<PathBuf, ContextError> {
    let mut out = PathBuf::new();
    for c in Path::new(src).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(ContextError::Outside(src.to_string()));
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Go's `filepath.Match` for one path element (no `/` in either).
fn element_matches(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => (0..=name.len()).any(|k| element_matches(rest, &name[k..])),
        Some(('?', rest)) => !name.is_empty() && element_matches(rest, &name[1..]),
        Some(('[', rest)) => {
            let Some(end) = rest.iter().skip(1).position(|c| *c == ']').map(|p| p + 1) else {
                return false;
            };
            let (class, after) = (&rest[..end], &rest[end + 1..]);
            let Some(c) = name.first() else { return false };
            let (neg, class) = match class.first() {
                Some('^') | Some('!') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut i = 0;
            let mut hit = false;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    hit |= class[i] <= *c && *c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == *c;
                    i += 1;
                }
            }
            hit != neg && element_matches(after, &name[1..])
        }
        Some(('\\', rest)) => match (rest.split_first(), name.split_first()) {
            (Some((p, r)), Some((n, nr))) => p == n && element_matches(r, nr),
            _ => false,
        },
        Some((p, rest)) => name.first() == Some(p) && element_matches(rest, &name[1..]),
    }
}

/// The context paths (relative) a source names: itself, or what its wildcards match,
/// sorted. A source naming nothing is an error.
pub fn resolve(ctx: &Context, src: &str) -> Result<Vec<PathBuf>, ContextError> {
    let rel = inside(src)?;
    if !has_wildcard(src) {
        if ctx.entry(&rel)?.is_none() {
            return Err(ContextError::NotFound(src.to_string()));
        }
        return Ok(vec![rel]);
    }
    // Walk element by element, expanding wildcards.
    let mut found = vec![PathBuf::new()];
    for part in rel.components() {
        let part = part.as_os_str().to_string_lossy().into_owned();
        let mut next = Vec::new();
        for base in &found {
            if has_wildcard(&part) {
                let pat: Vec<char> = part.chars().collect();
                for n in ctx.names(base)? {
                    let chars: Vec<char> = n.chars().collect();
                    if element_matches(&pat, &chars) {
                        next.push(base.join(&n));
                    }
                }
            } else if ctx.entry(&base.join(&part))?.is_some() {
                next.push(base.join(&part));
            }
        }
        found = next;
    }
    if found.is_empty() {
        return Err(ContextError::NotFound(src.to_string()));
    }
    Ok(found)
}

/// Feeds one entry and, for a directory, everything below it (sorted) into the hash.
fn hash_entry(ctx: &Context, rel: &Path, h: &mut Sha256) -> Result<(), ContextError> {
    let Some(e) = ctx.entry(rel)? else {
        return Err(ContextError::NotFound(rel.display().to_string()));
    };
    let kind = if e.is_dir() {
        'd'
    } else if e.is_symlink() {
        'l'
    } else {
        'f'
    };
    h.update(format!(
        "{kind} {} {:o} {}:{}\0",
        rel.display(),
        e.st.st_mode & 0o7777,
        e.st.st_uid,
        e.st.st_gid
    ));
    match kind {
        'l' => {
            let t = sys::readlinkat(e.fd.as_fd(), b"").map_err(io_err(rel))?;
            h.update(&t);
        }
        'f' => {
            h.update((e.st.st_size as u64).to_le_bytes());
            let mut f = fs::File::open(e.proc_path()).map_err(io_err(rel))?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf).map_err(io_err(rel))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
        _ => {
            for n in ctx.names(rel)? {
                hash_entry(ctx, &rel.join(n), h)?;
            }
        }
    }
    h.update([0u8]);
    Ok(())
}

/// The checksum of the sources of one COPY/ADD (`sha256:` hex): what the cache compares.
pub fn checksum(ctx: &Context, sources: &[String]) -> Result<String, ContextError> {
    let mut h = Sha256::new();
    for s in sources {
        for rel in resolve(ctx, s)? {
            hash_entry(ctx, &rel, &mut h)?;
        }
    }
    Ok(format!("sha256:{}", hex(&h.finalize())))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(d.path().join("src/sub")).expect("dirs");
        fs::write(d.path().join("src/a.rs"), "a").expect("write");
        fs::write(d.path().join("src/b.rs"), "b").expect("write");
        fs::write(d.path().join("src/sub/c.txt"), "c").expect("write");
        fs::write(d.path().join("README"), "r").expect("write");
        d
    }

    #[test]
    fn sources_resolve_inside_the_context() {
        let d = ctx();
        let c = Context::open(d.path()).expect("open");
        assert_eq!(
            resolve(&c, "src/*.rs").expect("glob"),
            vec![PathBuf::from("src/a.rs"), PathBuf::from("src/b.rs")]
        );
        assert_eq!(
            resolve(&c, "/src/../README").expect("cleaned"),
            vec![PathBuf::from("README")]
        );
        assert_eq!(resolve(&c, "s?c/[a-b].rs").expect("classes").len(), 2);
        assert!(matches!(
            resolve(&c, "../etc/passwd"),
            Err(ContextError::Outside(_))
        ));
        assert!(matches!(
            resolve(&c, "nope*"),
            Err(ContextError::NotFound(_))
        ));
        assert!(matches!(
            resolve(&c, "missing"),
            Err(ContextError::NotFound(_))
        ));
    }

    #[test]
    fn checksums_follow_content_and_metadata() {
        let d = ctx();
        let c = Context::open(d.path()).expect("open");
        let all = vec!["src".to_string()];
        let c1 = checksum(&c, &all).expect("sum");
        assert_eq!(c1, checksum(&c, &all).expect("sum"), "stable");
        fs::write(d.path().join("src/sub/c.txt"), "C").expect("write");
        let c2 = checksum(&c, &all).expect("sum");
        assert_ne!(c1, c2, "content");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(d.path().join("src/a.rs"), fs::Permissions::from_mode(0o600))
            .expect("chmod");
        assert_ne!(c2, checksum(&c, &all).expect("sum"), "mode");
        let readme = checksum(&c, &["README".to_string()]).expect("sum");
        fs::write(d.path().join("src/a.rs"), "changed").expect("write");
        assert_eq!(
            readme,
            checksum(&c, &["README".to_string()]).expect("sum"),
            "other files do not count"
        );
    }

    #[test]
    fn symlinks_resolve_inside_the_context() {
        let d = ctx();
        std::os::unix::fs::symlink("/etc", d.path().join("etc-link")).expect("symlink");
        std::os::unix::fs::symlink("/src", d.path().join("abs-src")).expect("symlink");
        let c = Context::open(d.path()).expect("open");
        // /etc of the host is not reached: inside the context there is no etc/passwd.
        assert!(matches!(
            resolve(&c, "etc-link/passwd"),
            Err(ContextError::NotFound(_))
        ));
        // An absolute link means the context's root.
        assert_eq!(
            resolve(&c, "abs-src/a.rs").expect("in the context"),
            vec![PathBuf::from("abs-src/a.rs")]
        );
        let sum = checksum(&c, &["abs-src/a.rs".to_string()]).expect("sum");
        assert_eq!(
            sum,
            checksum(&c, &["abs-src/a.rs".to_string()]).expect("sum")
        );
    }
}
