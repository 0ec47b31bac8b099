//! The container store: one directory per container with its record, names unique, IDs
//! resolved by full ID, name, or unique prefix.
//!
//! ```text
//! <root>/<id>/config.v2.json          the record
//! <root>/<id>.removing/               a removal in progress (finished at open)
//! ```
//!
//! A container is created in two steps around its layer: `reserve` takes an ID and a name,
//! the caller creates the layer, `commit` writes the record. A crash in between leaves a layer
//! without a record, which the daemon removes at start (`orphan_layers`).

use super::names;
use super::record::Container;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use strata_graph::fsutil::{atomic_write, random_id, remove_tree, rename_durable};

/// Errors of the container store; texts follow dockerd's.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("multiple IDs found with provided prefix: {0}")]
    Ambiguous(String),
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    BadName(String),
    #[error("container store: {context}: {source}")]
    Io { context: String, source: io::Error },
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> ContainerError {
    let context = context.into();
    move |source| ContainerError::Io { context, source }
}

/// An ID and a name held for a container being created.
#[derive(Debug)]
pub struct Reservation {
    pub id: String,
    pub name: String,
}

#[derive(Default)]
struct State {
    containers: HashMap<String, Container>,
    /// name → ID, reservations included.
    names: HashMap<String, String>,
}

/// Containers on disk and in memory.
pub struct ContainerStore {
    root: PathBuf,
    state: Mutex<State>,
}

const RECORD: &str = "config.v2.json";

impl ContainerStore {
    /// Opens (creating) the store at `root`: finishes interrupted removals and loads every
    /// record. A record that cannot be read is reported and left where it is.
    pub fn open(root: &Path) -> Result<ContainerStore, ContainerError> {
        std::fs::create_dir_all(root).map_err(io_ctx(format!("creating {}", root.display())))?;
        let mut st = State::default();
        let entries =
            std::fs::read_dir(root).map_err(io_ctx(format!("reading {}", root.display())))?;
        for e in entries {
            let e = e.map_err(io_ctx("reading the container directory"))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.ends_with(".removing") || name.starts_with(".tmp") {
                remove_tree(&path).map_err(io_ctx(format!("removing {}", path.display())))?;
                continue;
            }
            let rec = path.join(RECORD);
            let c: Container = match std::fs::read(&rec)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(c) => c,
                Err(e) if !rec.exists() => {
                    tracing::warn!(dir = %path.display(), "container directory without a record ({e}); removing it");
                    remove_tree(&path).map_err(io_ctx(format!("removing {}", path.display())))?;
                    continue;
                }
                Err(e) => {
                    tracing::error!(record = %rec.display(), "unreadable container record, skipped: {e}");
                    continue;
                }
            };
            st.names.insert(c.name.clone(), c.id.clone());
            st.containers.insert(c.id.clone(), c);
        }
        Ok(ContainerStore {
            root: root.to_path_buf(),
            state: Mutex::new(st),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The directory of a container (for files the runtime keeps beside the record).
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Takes a fresh ID and the name (`None`: a generated one).
    pub fn reserve(&self, name: Option<&str>) -> Result<Reservation, ContainerError> {
        let mut st = self.state();
        let name = match name {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(n);
                if !names::valid(n) {
                    return Err(ContainerError::BadName(n.into()));
                }
                if let Some(id) = st.names.get(n) {
                    return Err(ContainerError::NameInUse {
                        name: n.into(),
                        id: id.clone(),
                    });
                }
                n.to_string()
            }
            None => {
                let mut retry = 0;
                loop {
                    let n = names::generate(retry);
                    if !st.names.contains_key(&n) {
                        break n;
                    }
                    retry += 1;
                }
            }
        };
        let id = loop {
            let id = random_id(32);
            // An ID must never look like a prefix-free name clash or a number.
            if !st.containers.contains_key(&id) && !id.bytes().all(|b| b.is_ascii_digit()) {
                break id;
            }
        };
        st.names.insert(name.clone(), id.clone());
        Ok(Reservation { id, name })
    }

    /// Gives a reservation back (the creation failed).
    pub fn cancel(&self, r: Reservation) {
        let mut st = self.state();
        if st.names.get(&r.name) == Some(&r.id) {
            st.names.remove(&r.name);
        }
    }

    /// Writes a new container's record; the container becomes visible.
    pub fn commit(&self, r: Reservation, c: Container) -> Result<(), ContainerError> {
        debug_assert_eq!(r.id, c.id);
        let res = self.write(&c);
        let mut st = self.state();
        match res {
            Ok(()) => {
                st.containers.insert(c.id.clone(), c);
                Ok(())
            }
            Err(e) => {
                st.names.remove(&r.name);
                let _ = remove_tree(&self.dir(&r.id));
                Err(e)
            }
        }
    }

    fn write(&self, c: &Container) -> Result<(), ContainerError> {
        let dir = self.dir(&c.id);
        std::fs::create_dir_all(&dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
        let data = serde_json::to_vec_pretty(c)
            .map_err(|e| io_ctx("encoding a container record")(io::Error::other(e)))?;
        atomic_write(&dir.join(RECORD), &data).map_err(io_ctx("writing a container record"))
    }

    /// Resolves a full ID, a name (with or without `/`), or a unique ID prefix.
    pub fn get(&self, key: &str) -> Result<Container, ContainerError> {
        let st = self.state();
        if let Some(c) = st.containers.get(key) {
            return Ok(c.clone());
        }
        let name = key.strip_prefix('/').unwrap_or(key);
        if let Some(c) = st.names.get(name).and_then(|id| st.containers.get(id)) {
            return Ok(c.clone());
        }
        if key.is_empty() {
            return Err(ContainerError::NotFound(key.into()));
        }
        let mut found = st.containers.values().filter(|c| c.id.starts_with(key));
        match (found.next(), found.next()) {
            (Some(c), None) => Ok(c.clone()),
            (Some(_), Some(_)) => Err(ContainerError::Ambiguous(key.into())),
            _ => Err(ContainerError::NotFound(key.into())),
        }
    }

    /// Every container, newest first.
    pub fn list(&self) -> Vec<Container> {
        let mut v: Vec<Container> = self.state().containers.values().cloned().collect();
        v.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        v
    }

    /// Whether a container exists with this exact ID.
    pub fn contains(&self, id: &str) -> bool {
        self.state().containers.contains_key(id)
    }

    /// Changes a stored container (under the store's lock) and writes its record.
    pub fn update<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Container) -> T,
    ) -> Result<T, ContainerError> {
        let mut st = self.state();
        let c = st
            .containers
            .get_mut(id)
            .ok_or_else(|| ContainerError::NotFound(id.into()))?;
        let mut next = c.clone();
        let out = f(&mut next);
        self.write(&next)?;
        *c = next;
        Ok(out)
    }

    /// Renames a container; returns the old name.
    pub fn rename(&self, id: &str, new: &str) -> Result<String, ContainerError> {
        let new = new.strip_prefix('/').unwrap_or(new);
        if !names::valid(new) {
            return Err(ContainerError::BadName(new.into()));
        }
        let mut st = self.state();
        let c = st
            .containers
            .get(id)
            .ok_or_else(|| ContainerError::NotFound(id.into()))?;
        if let Some(other) = st.names.get(new) {
            return Err(ContainerError::NameInUse {
                name: new.into(),
                id: other.clone(),
            });
        }
        let mut next = c.clone();
        let old = std::mem::replace(&mut next.name, new.to_string());
        self.write(&next)?;
        st.names.remove(&old);
        st.names.insert(new.to_string(), id.to_string());
        st.containers.insert(id.to_string(), next);
        Ok(old)
    }

    /// Removes a container's record and directory (its layer is the caller's).
    pub fn remove(&self, id: &str) -> Result<Container, ContainerError> {
        let mut st = self.state();
        let c = st
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| ContainerError::NotFound(id.into()))?;
        let dir = self.dir(id);
        let gone = self.root.join(format!("{id}.removing"));
        rename_durable(&dir, &gone).map_err(io_ctx("starting a container removal"))?;
        st.containers.remove(id);
        st.names.remove(&c.name);
        drop(st);
        if let Err(e) = remove_tree(&gone) {
            tracing::warn!(
                "removing {}: {e} (finished at the next start)",
                gone.display()
            );
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{ContainerConfig, State as CState};

    fn container(r: &Reservation) -> Container {
        Container {
            id: r.id.clone(),
            name: r.name.clone(),
            created: strata_graph::time::rfc3339_now(),
            image: "sha256:00".into(),
            path: "sh".into(),
            args: vec![],
            config: ContainerConfig::default(),
            host_config: serde_json::json!({}),
            networking_config: serde_json::Value::Null,
            driver: "vfs".into(),
            state: CState::created(),
            restart_count: 0,
            manually_stopped: false,
            mount_points: Vec::new(),
        }
    }

    #[test]
    fn names_ids_prefixes_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = ContainerStore::open(dir.path()).unwrap();
        let r = s.reserve(Some("/web")).unwrap();
        let id = r.id.clone();
        assert!(matches!(
            s.reserve(Some("web")),
            Err(ContainerError::NameInUse { .. })
        ));
        s.commit(
            r,
            container(&Reservation {
                id: id.clone(),
                name: "web".into(),
            }),
        )
        .unwrap();
        let r2 = s.reserve(None).unwrap();
        let id2 = r2.id.clone();
        let c2 = container(&r2);
        s.commit(r2, c2).unwrap();
        assert_eq!(s.get("web").unwrap().id, id);
        assert_eq!(s.get("/web").unwrap().id, id);
        assert_eq!(s.get(&id[..12]).unwrap().id, id);
        let common = id
            .bytes()
            .zip(id2.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        if common > 0 {
            assert!(matches!(
                s.get(&id[..common]),
                Err(ContainerError::Ambiguous(_))
            ));
        }
        assert!(matches!(s.get("nosuch"), Err(ContainerError::NotFound(_))));
        assert!(matches!(
            s.rename(&id, "bad name"),
            Err(ContainerError::BadName(_))
        ));
        assert_eq!(s.rename(&id, "api").unwrap(), "web");
        let r3 = s.reserve(Some("web")).unwrap();
        s.cancel(r3);
        drop(s);
        let s = ContainerStore::open(dir.path()).unwrap();
        assert_eq!(s.get("api").unwrap().id, id);
        assert_eq!(s.list().len(), 2);
        s.remove(&id).unwrap();
        assert!(s.get("api").is_err());
        assert!(!dir.path().join(&id).exists());
        // A reservation never committed leaves nothing; an unfinished removal is finished.
        std::fs::create_dir(dir.path().join("abc.removing")).unwrap();
        drop(s);
        let s = ContainerStore::open(dir.path()).unwrap();
        assert_eq!(s.list().len(), 1);
        assert!(!dir.path().join("abc.removing").exists());
    }
}
