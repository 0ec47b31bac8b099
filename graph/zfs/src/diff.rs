//! `zfs diff -H -F ORIGIN@SNAP CLONE`: which paths of a clone changed since the snapshot it
//! was cloned from. The driver uses it to read only those directories of both trees (the
//! comparison itself stays the generic one, so the answer is exactly the full comparison's).

use std::collections::HashSet;

/// One line of `zfs diff -H -F`: `CHANGE\tTYPE\tPATH[\tNEWPATH]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    /// `+` added, `-` removed, `M` modified, `R` renamed.
    pub change: u8,
    /// The file type letter (`/` a directory, `F` a regular file, `@` a symlink, ...).
    pub kind: u8,
    /// The path, relative to the mount point (`b""` the root).
    pub path: Vec<u8>,
    /// For a rename, where it went.
    pub new_path: Option<Vec<u8>>,
}

/// Errors reading `zfs diff` output.
#[derive(Debug, thiserror::Error)]
#[error("zfs diff: unexpected line {line:?}: {why}")]
pub struct DiffParseError {
    pub line: String,
    pub why: &'static str,
}

/// Undoes `zfs diff`'s escapes: a backslash and four octal digits for a byte that is not
/// printable ASCII, a space or a backslash.
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let digits = b.get(i + 1..i + 5);
        match digits {
            Some(d) if b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 5;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// `path` relative to `mount` (both as printed: absolute), or `None` when outside it.
fn relative(path: &[u8], mount: &[u8]) -> Option<Vec<u8>> {
    let rest = path.strip_prefix(mount)?;
    match rest {
        [] => Some(Vec::new()),
        [b'/', r @ ..] => Some(r.to_vec()),
        _ => None,
    }
}

/// Parses `zfs diff -H -F` output of a filesystem mounted at `mount`.
pub fn parse(text: &str, mount: &[u8]) -> Result<Vec<DiffLine>, DiffParseError> {
    let err = |line: &str, why| DiffParseError {
        line: line.to_string(),
        why,
    };
    let mount = mount.strip_suffix(b"/").unwrap_or(mount);
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let (change, kind) = match (f.first(), f.get(1)) {
            (Some(c), Some(k)) if c.len() == 1 && k.len() == 1 => {
                (c.as_bytes()[0], k.as_bytes()[0])
            }
            _ => return Err(err(line, "no change and type columns")),
        };
        // A link count change adds `(+N)`/`(-N)` after the path of a modified file.
        let link_count = |c: &&str| c.starts_with('(') && c.ends_with(')');
        let want = if change == b'R' { 4 } else { 3 };
        let fields = if change != b'R' && f.len() == 4 && f.get(3).is_some_and(link_count) {
            3
        } else {
            f.len()
        };
        if fields != want || !b"+-MR".contains(&change) {
            return Err(err(line, "not CHANGE TYPE PATH [NEWPATH]"));
        }
        let path =
            relative(&unescape(f[2]), mount).ok_or_else(|| err(line, "path outside the mount"))?;
        let new_path = match f.get(3).filter(|_| change == b'R') {
            Some(p) => Some(
                relative(&unescape(p), mount).ok_or_else(|| err(line, "path outside the mount"))?,
            ),
            None => None,
        };
        out.push(DiffLine {
            change,
            kind,
            path,
            new_path,
        });
    }
    Ok(out)
}

/// The directories (relative, `b""` the root) a tree comparison must read to find every
/// change the lines name: each changed path's directory and its ancestors, and changed
/// directories themselves (a renamed one at both places).
pub fn dirty_dirs(lines: &[DiffLine]) -> HashSet<Vec<u8>> {
    let removed: HashSet<&[u8]> = lines
        .iter()
        .filter(|l| l.change == b'-' && l.kind == b'/')
        .map(|l| l.path.as_slice())
        .collect();
    let under_removed = |path: &[u8]| {
        path.iter()
            .enumerate()
            .any(|(i, b)| *b == b'/' && removed.contains(&path[..i]))
    };
    let mut dirty = HashSet::new();
    for l in lines {
        // What went with a removed directory: its contents need no reading.
        if l.change == b'-' && under_removed(&l.path) {
            continue;
        }
        // A removed directory's contents need no reading; its parent does.
        let is_dir = l.kind == b'/' && l.change != b'-';
        strata_graph::archive::mark_dirty(&mut dirty, &l.path, is_dir);
        if let Some(n) = &l.new_path {
            strata_graph::archive::mark_dirty(&mut dirty, n, is_dir);
        }
    }
    dirty
}

#[cfg(test)]
mod tests {
    use super::*;

    const MNT: &[u8] = b"/var/lib/strata/zfs/graph/abc";

    #[test]
    fn parses_every_change_kind() {
        let text = "M\t/\t/var/lib/strata/zfs/graph/abc/\n\
                    +\tF\t/var/lib/strata/zfs/graph/abc/etc/new\\0040file\n\
                    -\t@\t/var/lib/strata/zfs/graph/abc/bin/link\n\
                    M\tF\t/var/lib/strata/zfs/graph/abc/d/f\t(+1)\n\
                    R\t/\t/var/lib/strata/zfs/graph/abc/a/old\t/var/lib/strata/zfs/graph/abc/b/new\n";
        let l = parse(text, MNT).unwrap();
        assert_eq!(l.len(), 5);
        assert_eq!(
            (l[0].change, l[0].kind, l[0].path.as_slice()),
            (b'M', b'/', &b""[..])
        );
        assert_eq!(l[1].path, b"etc/new file");
        assert_eq!((l[2].change, l[2].kind), (b'-', b'@'));
        assert_eq!(
            (l[3].path.as_slice(), l[3].new_path.as_deref()),
            (&b"d/f"[..], None)
        );
        assert_eq!(l[4].path, b"a/old");
        assert_eq!(l[4].new_path.as_deref(), Some(&b"b/new"[..]));
        let d = dirty_dirs(&l);
        for want in [
            &b""[..],
            b"etc",
            b"bin",
            b"d",
            b"a",
            b"a/old",
            b"b",
            b"b/new",
        ] {
            assert!(
                d.contains(want),
                "{:?} missing",
                String::from_utf8_lossy(want)
            );
        }
        assert!(
            !d.contains(b"etc/new file".as_slice()),
            "a file is not a directory to read"
        );
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        for bad in [
            "X\tF\t/var/lib/strata/zfs/graph/abc/x",
            "M\tF",
            "M\tF\t/var/lib/strata/zfs/graph/abc/x\t/var/lib/strata/zfs/graph/abc/y",
            "R\tF\t/var/lib/strata/zfs/graph/abc/x",
            "M\tF\t/elsewhere/x",
            "M\tF\t/var/lib/strata/zfs/graph/abcd/x",
        ] {
            assert!(parse(bad, MNT).is_err(), "{bad}");
        }
    }

    #[test]
    fn unescapes_octal_bytes_only() {
        assert_eq!(unescape("a\\0134b\\0303\\0251"), b"a\\b\xc3\xa9");
        assert_eq!(unescape("tail\\01"), b"tail\\01");
    }
}
