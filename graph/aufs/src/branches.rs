//! aufs mount data: the branch list `br:<rw>=rw:<ro>=ro+wh:...` and the options. Mount data
//! must fit in one page, so a long chain (a many-layer image) is mounted with the branches
//! that fit, and the rest are appended one remount at a time with `append:<ro>=ro+wh`, as
//! dockerd did.

use std::path::{Path, PathBuf};

/// The external inode number table aufs keeps (in tmpfs).
pub const XINO: &str = "/dev/shm/aufs.xino";

/// How to mount one union: the first mount's data, then one remount per `appends` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    pub data: String,
    pub appends: Vec<String>,
}

/// Errors planning a mount.
#[derive(Debug, thiserror::Error)]
pub enum BranchError {
    #[error("aufs branch {0:?} holds ':', ',' or '=', which the branch syntax cannot carry")]
    BadPath(PathBuf),
    #[error("aufs branch {0:?} does not fit in one page of mount data")]
    TooLong(PathBuf),
}

fn branch(p: &Path) -> Result<&str, BranchError> {
    match p.to_str() {
        Some(s) if !s.contains([':', ',', '=']) && !s.is_empty() => Ok(s),
        _ => Err(BranchError::BadPath(p.to_path_buf())),
    }
}

/// The options after the branches: `dio`, the xino file, `dirperm1` where the kernel has it,
/// and the SELinux context when there is a label.
pub fn options(dirperm1: bool, mount_label: &str) -> String {
    let mut o = format!("dio,xino={XINO}");
    if dirperm1 {
        o.push_str(",dirperm1");
    }
    o.push_str(&label(mount_label));
    o
}

fn label(mount_label: &str) -> String {
    if mount_label.is_empty() {
        String::new()
    } else {
        format!(",context=\"{mount_label}\"")
    }
}

/// Plans the mount of `rw` over `ro` (nearest layer first), every piece of data shorter than
/// `page_size` (it is copied into one page with its terminating NUL).
pub fn plan(
    rw: &Path,
    ro: &[PathBuf],
    dirperm1: bool,
    mount_label: &str,
    page_size: usize,
) -> Result<MountPlan, BranchError> {
    let tail = options(dirperm1, mount_label);
    let mut br = format!("br:{}=rw", branch(rw)?);
    if br.len() + 1 + tail.len() >= page_size {
        return Err(BranchError::TooLong(rw.to_path_buf()));
    }
    let mut rest = ro.iter();
    let mut appends = Vec::new();
    for p in rest.by_ref() {
        let b = format!(":{}=ro+wh", branch(p)?);
        if br.len() + b.len() + 1 + tail.len() >= page_size {
            appends.push(append(p, mount_label, page_size)?);
            break;
        }
        br.push_str(&b);
    }
    for p in rest {
        appends.push(append(p, mount_label, page_size)?);
    }
    Ok(MountPlan {
        data: format!("{br},{tail}"),
        appends,
    })
}

fn append(p: &Path, mount_label: &str, page_size: usize) -> Result<String, BranchError> {
    let a = format!("append:{}=ro+wh{}", branch(p)?, label(mount_label));
    if a.len() >= page_size {
        return Err(BranchError::TooLong(p.to_path_buf()));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| PathBuf::from(format!("/var/lib/strata/aufs/diff/{i:064x}")))
            .collect()
    }

    #[test]
    fn a_short_chain_is_one_mount() {
        let ro = chain(2);
        let p = plan(Path::new("/h/diff/c"), &ro, true, "", 4096).unwrap();
        assert_eq!(
            p.data,
            format!(
                "br:/h/diff/c=rw:{}=ro+wh:{}=ro+wh,dio,xino=/dev/shm/aufs.xino,dirperm1",
                ro[0].display(),
                ro[1].display()
            )
        );
        assert!(p.appends.is_empty());
        let p = plan(
            Path::new("/h/diff/c"),
            &[],
            false,
            "system_u:object_r:x:s0",
            4096,
        )
        .unwrap();
        assert_eq!(
            p.data,
            "br:/h/diff/c=rw,dio,xino=/dev/shm/aufs.xino,context=\"system_u:object_r:x:s0\""
        );
    }

    #[test]
    fn a_200_layer_image_is_split_into_page_sized_pieces_in_order() {
        let ro = chain(200);
        let rw = Path::new("/var/lib/strata/aufs/diff/container");
        for (dirperm1, label) in [
            (true, ""),
            (false, "system_u:object_r:svirt_sandbox_file_t:s0:c1,c2"),
        ] {
            let p = plan(rw, &ro, dirperm1, label, 4096).unwrap();
            assert!(p.data.len() < 4096, "{}", p.data.len());
            assert!(!p.appends.is_empty() && p.appends.len() < 200);
            // Every branch once, nearest first: in the first mount, then appended.
            let mut seen: Vec<String> = p
                .data
                .strip_prefix("br:")
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .split(':')
                .map(|b| b.to_string())
                .collect();
            assert_eq!(seen.remove(0), format!("{}=rw", rw.display()));
            for a in &p.appends {
                assert!(a.len() < 4096);
                let b = a.strip_prefix("append:").unwrap();
                seen.push(b.split(',').next().unwrap().to_string());
                assert_eq!(a.contains("context="), !label.is_empty());
            }
            let want: Vec<String> = ro
                .iter()
                .map(|r| format!("{}=ro+wh", r.display()))
                .collect();
            assert_eq!(seen, want);
            // The first mount is filled as far as a page allows.
            let next = format!(":{}=ro+wh", ro[200 - p.appends.len()].display());
            assert!(p.data.len() + next.len() >= 4096);
        }
    }

    #[test]
    fn paths_the_syntax_cannot_carry_are_refused() {
        for bad in ["/a:b", "/a,b", "/a=b"] {
            let e = plan(Path::new("/rw"), &[PathBuf::from(bad)], false, "", 4096).unwrap_err();
            assert!(matches!(e, BranchError::BadPath(_)), "{e}");
        }
        let long = PathBuf::from(format!("/{}", "x".repeat(5000)));
        assert!(matches!(
            plan(&long, &[], false, "", 4096),
            Err(BranchError::TooLong(_))
        ));
        assert!(matches!(
            plan(Path::new("/rw"), &[long], false, "", 4096),
            Err(BranchError::TooLong(_))
        ));
    }
}
