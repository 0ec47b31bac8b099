//! Which snapshot of a parent layer new clones may share. Cloning is one `zfs` command where
//! snapshot + clone + deferred destroy are three, and many containers start from the same
//! image: so a parent's snapshot is reused for its next children as long as the parent has
//! not been mounted since (a mount may have written to it). ZFS destroys a shared snapshot
//! itself when its last clone goes (it is marked for deferred destruction), and this record
//! forgets it then. Kept in memory only: after a restart the first child of each parent takes
//! a new snapshot, which is always right.

use std::collections::HashMap;

/// The shared-snapshot bookkeeping of one driver.
#[derive(Debug, Default)]
pub struct SharedSnapshots {
    /// parent layer → the snapshot its next child may be cloned from.
    latest: HashMap<String, String>,
    /// snapshot → clones made from it this run and not yet removed.
    users: HashMap<String, u32>,
    /// child layer → the snapshot it was cloned from this run.
    origin: HashMap<String, String>,
}

impl SharedSnapshots {
    /// The snapshot a new child of `parent` may be cloned from, if any.
    pub fn reusable(&self, parent: &str) -> Option<String> {
        self.latest.get(parent).cloned()
    }

    /// `child` was cloned from `snapshot` of `parent`.
    pub fn cloned(&mut self, parent: &str, snapshot: &str, child: &str) {
        self.latest.insert(parent.into(), snapshot.into());
        *self.users.entry(snapshot.into()).or_default() += 1;
        self.origin.insert(child.into(), snapshot.into());
    }

    /// The snapshot `child` was cloned from, when it was cloned this run.
    pub fn origin(&self, child: &str) -> Option<&str> {
        self.origin.get(child).map(String::as_str)
    }

    /// `parent` was mounted (or a clone of its snapshot failed): its next child takes a new
    /// snapshot.
    pub fn parent_touched(&mut self, parent: &str) {
        self.latest.remove(parent);
    }

    /// `child` was destroyed. When it was the last clone of its snapshot, ZFS has destroyed
    /// the snapshot (deferred destruction), so nothing may be cloned from it any more.
    pub fn child_removed(&mut self, child: &str) {
        let Some(snap) = self.origin.remove(child) else {
            return;
        };
        let n = self.users.entry(snap.clone()).or_default();
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.users.remove(&snap);
            self.latest.retain(|_, s| *s != snap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_shared_until_its_parent_is_mounted_or_its_clones_are_gone() {
        let mut s = SharedSnapshots::default();
        assert_eq!(s.reusable("img"), None);
        s.cloned("img", "fs/img@c1", "c1");
        assert_eq!(s.reusable("img").as_deref(), Some("fs/img@c1"));
        s.cloned("img", "fs/img@c1", "c2");
        assert_eq!(s.origin("c2"), Some("fs/img@c1"));
        s.child_removed("c1");
        assert_eq!(
            s.reusable("img").as_deref(),
            Some("fs/img@c1"),
            "c2 still holds it"
        );
        s.child_removed("c2");
        assert_eq!(
            s.reusable("img"),
            None,
            "ZFS destroyed it with its last clone"
        );
        s.cloned("img", "fs/img@c3", "c3");
        s.parent_touched("img");
        assert_eq!(s.reusable("img"), None, "the parent may have changed");
        s.cloned("img", "fs/img@c4", "c4");
        s.child_removed("c3");
        assert_eq!(s.reusable("img").as_deref(), Some("fs/img@c4"));
        s.child_removed("unknown");
        s.child_removed("c4");
        assert_eq!(s.reusable("img"), None);
    }
}
