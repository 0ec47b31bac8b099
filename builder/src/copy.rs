//! `COPY` from the context as a tar stream of what lands in the image, named from the image's
//! root: a directory source gives its contents, a file goes to `dest` (or into it when
//! `dest` ends with `/`, names a directory, or several sources are copied); everything is
//! owned by root unless `--chown` says otherwise, and `--chmod` sets the modes. Missing
//! parent directories of the destination come first (root, 0755). The daemon unpacks the
//! stream into the step's container with the same safe extraction `docker cp` uses.

use crate::context::{Context, ContextError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use strata_graph::archive::tar::{Header, Kind, TarWriter};

/// Options of one copy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CopyOpts {
    /// `--chown` resolved to numbers.
    pub owner: Option<(u32, u32)>,
    /// `--chmod` as octal.
    pub mode: Option<u32>,
}

/// Errors of a copy.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("When using COPY with more than one source file, the destination must be a directory and end with a /")]
    NeedsDirectory,
    #[error("writing the copy: {0}")]
    Io(#[from] io::Error),
    #[error("invalid --chmod {0}: an octal mode is expected")]
    BadMode(String),
}

/// Parses `--chmod` (octal).
pub fn parse_mode(s: &str) -> Result<u32, CopyError> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| CopyError::BadMode(s.to_string()))
}

/// `a/b/c` → `a`, `a/b`, `a/b/c`.
fn prefixes(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for part in p.split('/').filter(|x| !x.is_empty()) {
        if !cur.is_empty() {
            cur.push('/');
        }
        cur.push_str(part);
        out.push(cur.clone());
    }
    out
}

struct Writer<'a, W: Write> {
    ctx: &'a Context,
    tar: TarWriter<W>,
    opts: &'a CopyOpts,
}

impl<W: Write> Writer<'_, W> {
    fn header(&self, name: &str, kind: Kind, st: &libc::stat, size: u64) -> Header {
        let mut h = Header::new(name.as_bytes().to_vec(), kind, size);
        h.mode = self.opts.mode.unwrap_or(st.st_mode & 0o7777);
        let (uid, gid) = self.opts.owner.unwrap_or((0, 0));
        h.uid = uid as u64;
        h.gid = gid as u64;
        h.mtime = st.st_mtime;
        h
    }

    /// Adds the context entry `rel` as `name`, and for a directory what is beneath it (a
    /// `top` directory gives only its contents: the destination stands for it).
    fn add(&mut self, rel: &Path, name: &str, top: bool) -> Result<(), CopyError> {
        let Some(e) = self.ctx.entry(rel)? else {
            return Err(ContextError::NotFound(rel.display().to_string()).into());
        };
        if e.is_dir() {
            if !name.is_empty() && !top {
                let h = self.header(name, Kind::Dir, &e.st, 0);
                self.tar.append(&h, None)?;
            }
            for n in self.ctx.names(rel)? {
                let child = if name.is_empty() {
                    n.clone()
                } else {
                    format!("{name}/{n}")
                };
                self.add(&rel.join(&n), &child, false)?;
            }
        } else if e.is_symlink() {
            let target = strata_graph::sys::readlinkat(e.fd(), b"")?;
            let mut h = self.header(name, Kind::Symlink, &e.st, 0);
            h.mode = e.st.st_mode & 0o7777;
            h.link = target;
            self.tar.append(&h, None)?;
        } else if e.st.st_mode & libc::S_IFMT == libc::S_IFREG {
            let mut f = std::fs::File::open(e.proc_path())?;
            let h = self.header(name, Kind::Regular, &e.st, e.st.st_size as u64);
            self.tar.append(&h, Some(&mut f))?;
        }
        // Devices, fifos and sockets in a context are not copied (as Docker skips sockets).
        Ok(())
    }
}

/// Writes the tar of one COPY into `out`. `dest` is absolute (a trailing `/`: a directory);
/// `exists_dir(path)` says whether the image has a directory at an absolute path already
/// (for the destination's parents and for "copy into it").
pub fn copy_tar<W: Write>(
    ctx: &Context,
    sources: &[PathBuf],
    several: bool,
    dest: &str,
    opts: &CopyOpts,
    exists_dir: &dyn Fn(&str) -> bool,
    out: W,
) -> Result<W, CopyError> {
    let dest_trim = dest.trim_end_matches('/');
    let into_dir = dest.ends_with('/') || dest_trim.is_empty() || exists_dir(dest_trim);
    if several && !dest.ends_with('/') && !exists_dir(dest_trim) {
        return Err(CopyError::NeedsDirectory);
    }
    let mut w = Writer {
        ctx,
        tar: TarWriter::new(out),
        opts,
    };
    let base = dest_trim.trim_start_matches('/');
    // Missing parents (and the directory itself when copying into it).
    let mut parents = prefixes(base);
    let file_dest =
        sources.len() == 1 && !into_dir && ctx.entry(&sources[0])?.is_some_and(|e| !e.is_dir());
    if file_dest {
        parents.pop(); // the last element is the file
    }
    for p in parents {
        if !exists_dir(&format!("/{p}")) {
            let mut h = Header::new(p.into_bytes(), Kind::Dir, 0);
            if let Some((u, g)) = opts.owner {
                h.uid = u as u64;
                h.gid = g as u64;
            }
            w.tar.append(&h, None)?;
        }
    }
    for src in sources {
        let Some(e) = ctx.entry(src)? else {
            return Err(ContextError::NotFound(src.display().to_string()).into());
        };
        let name = if e.is_dir() {
            base.to_string()
        } else if into_dir || several {
            let file = src
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            if base.is_empty() {
                file
            } else {
                format!("{base}/{file}")
            }
        } else {
            base.to_string()
        };
        w.add(src, &name, true)?;
    }
    Ok(w.tar.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_graph::archive::tar::TarReader;

    fn names(data: &[u8]) -> Vec<(String, u64, u32)> {
        let mut r = TarReader::new(data, false);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry().expect("entry") {
            out.push((String::from_utf8_lossy(&e.path).into_owned(), e.uid, e.mode));
        }
        out
    }

    fn ctx() -> (tempfile::TempDir, Context) {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("dir/sub")).expect("dirs");
        std::fs::write(d.path().join("dir/a"), "a").expect("write");
        std::fs::write(d.path().join("dir/sub/b"), "b").expect("write");
        std::fs::write(d.path().join("f.txt"), "f").expect("write");
        let c = Context::open(d.path()).expect("open");
        (d, c)
    }

    #[test]
    fn directories_give_their_contents_files_their_names() {
        let (_d, c) = ctx();
        let none = |_: &str| false;
        let t = copy_tar(
            &c,
            &[PathBuf::from("dir")],
            false,
            "/app/",
            &CopyOpts::default(),
            &none,
            Vec::new(),
        )
        .expect("copy");
        let n: Vec<String> = names(&t).into_iter().map(|x| x.0).collect();
        assert_eq!(n, vec!["app/", "app/a", "app/sub/", "app/sub/b"]);
        let t = copy_tar(
            &c,
            &[PathBuf::from("f.txt")],
            false,
            "/etc/renamed",
            &CopyOpts::default(),
            &none,
            Vec::new(),
        )
        .expect("copy");
        let n: Vec<String> = names(&t).into_iter().map(|x| x.0).collect();
        assert_eq!(n, vec!["etc/", "etc/renamed"]);
        // /etc exists: not written again; into an existing directory keeps the name.
        let etc = |p: &str| p == "/etc";
        let t = copy_tar(
            &c,
            &[PathBuf::from("f.txt")],
            false,
            "/etc",
            &CopyOpts::default(),
            &etc,
            Vec::new(),
        )
        .expect("copy");
        let n: Vec<String> = names(&t).into_iter().map(|x| x.0).collect();
        assert_eq!(n, vec!["etc/f.txt"]);
    }

    #[test]
    fn owners_modes_and_several_sources() {
        let (_d, c) = ctx();
        let none = |_: &str| false;
        let o = CopyOpts {
            owner: Some((1000, 1000)),
            mode: Some(parse_mode("0640").expect("mode")),
        };
        let t = copy_tar(
            &c,
            &[PathBuf::from("f.txt"), PathBuf::from("dir/a")],
            true,
            "/x/",
            &o,
            &none,
            Vec::new(),
        )
        .expect("copy");
        let n = names(&t);
        assert_eq!(n[1], ("x/f.txt".into(), 1000, 0o640));
        assert_eq!(n[2], ("x/a".into(), 1000, 0o640));
        let e = copy_tar(
            &c,
            &[PathBuf::from("f.txt"), PathBuf::from("dir/a")],
            true,
            "/x",
            &o,
            &none,
            Vec::new(),
        )
        .expect_err("needs a directory");
        assert!(matches!(e, CopyError::NeedsDirectory));
        assert!(parse_mode("999").is_err());
        let t = copy_tar(
            &c,
            &[PathBuf::from("f.txt")],
            false,
            "/f",
            &CopyOpts::default(),
            &none,
            Vec::new(),
        )
        .expect("copy");
        assert_eq!(names(&t)[0].1, 0, "root by default");
    }
}
