//! `-u user[:group]` resolved as dockerd resolves it: names from the container's own
//! `/etc/passwd` and `/etc/group` (read inside its root), numbers as they are, and the user's
//! supplementary groups.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;
use strata_graph::sys::{self, resolve};

/// A user as the runtime needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The home directory from passwd (for `HOME`), `/` when unknown.
    pub home: String,
}

/// Errors resolving a user, worded as dockerd's.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
}

/// Reads a file of the container (`etc/passwd`), never leaving its root; `None` when absent.
fn read_in_root(root: &Path, rel: &str) -> Option<String> {
    let rfd = sys::open(root, libc::O_PATH | libc::O_DIRECTORY, 0).ok()?;
    let fd = sys::openat2(
        rfd.as_fd(),
        rel.as_bytes(),
        libc::O_RDONLY,
        0,
        resolve::IN_ROOT | resolve::NO_MAGICLINKS,
    )
    .ok()?;
    let mut s = String::new();
    std::fs::File::from(fd)
        .take(4 << 20)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Passwd {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn groups(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Group {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|x| !x.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...) in the root.
pub fn resolve_user(root: &Path, spec: &str) -> Result<ResolvedUser, UserError> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users = passwd(&read_in_root(root, "etc/passwd").unwrap_or_default());
    let grps = groups(&read_in_root(root, "etc/group").unwrap_or_default());
    let u = if u.is_empty() { "0" } else { u };
    let (uid, mut gid, home, name) =
        match users.iter().find(|p| p.name == u || p.uid.to_string() == u) {
            Some(p) => (p.uid, p.gid, p.home.clone(), Some(p.name.clone())),
            None => match u.parse::<u32>() {
                Ok(n) => (n, 0, "/".to_string(), None),
                Err(_) => return Err(UserError::NoUser(u.to_string())),
            },
        };
    if let Some(g) = g.filter(|g| !g.is_empty()) {
        gid = match grps.iter().find(|x| x.name == g || x.gid.to_string() == g) {
            Some(x) => x.gid,
            None => g
                .parse::<u32>()
                .map_err(|_| UserError::NoGroup(g.to_string()))?,
        };
    }
    let additional_gids = match (&name, g) {
        // With an explicit group, dockerd adds no supplementary groups.
        (Some(n), None) => grps
            .iter()
            .filter(|x| x.members.iter().any(|m| m == n) && x.gid != gid)
            .map(|x| x.gid)
            .collect(),
        _ => Vec::new(),
    };
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups_from_the_image() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nstaff:x:50:www,other\n",
        )
        .unwrap();
        let r = resolve_user(d.path(), "").unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (0, 0, "/root"));
        let r = resolve_user(d.path(), "www").unwrap();
        assert_eq!((r.uid, r.gid), (33, 33));
        assert_eq!(r.additional_gids, [50]);
        let r = resolve_user(d.path(), "www:staff").unwrap();
        assert_eq!((r.uid, r.gid), (33, 50));
        assert!(r.additional_gids.is_empty());
        let r = resolve_user(d.path(), "1234:5678").unwrap();
        assert_eq!((r.uid, r.gid), (1234, 5678));
        assert_eq!(
            resolve_user(d.path(), "nobody").unwrap_err().to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert!(matches!(
            resolve_user(d.path(), "www:nogroup"),
            Err(UserError::NoGroup(_))
        ));
        // /etc/passwd as a symlink out of the root is read inside it (here: absent).
        let e = tempfile::tempdir().unwrap();
        std::fs::create_dir(e.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", e.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/group", e.path().join("etc/group")).unwrap();
        assert!(resolve_user(e.path(), "root").is_err());
    }
}
