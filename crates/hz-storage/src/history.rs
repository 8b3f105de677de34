//! Gym version history: each commit stores the gym's files as blobs and a manifest that
//! lists them (plus spec and runtime versions); the SQLite index orders manifests per gym.

use crate::{BlobStore, StorageError};
use hz_core::{canonical_json, ContentId};
use hz_db::{Db, VersionRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};

const MANIFEST_KIND: &str = "440hz.gym-version/1";

/// What a commit records about one version of a gym.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionManifest {
    pub kind: String,
    pub gym: String,
    /// Gym id: SHA-256 of the canonical spec + fixtures.
    pub gym_id: String,
    /// Spec format version the files are written in.
    pub spec_version: u32,
    /// Version of the 440hz runtime that committed it.
    pub runtime_version: String,
    /// Blob of the canonical JSON of the parsed spec (what diffs read).
    pub spec: ContentId,
    /// The gym's files (the `*.gym.json` and fixture files) by path relative to its folder.
    pub files: BTreeMap<String, ContentId>,
    /// Which file is the gym itself.
    pub main: String,
    pub parent: Option<ContentId>,
    pub message: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A gym to commit, as the caller read it from disk.
#[derive(Debug, Clone)]
pub struct CommitInput {
    pub gym: String,
    pub gym_id: String,
    pub spec_version: u32,
    pub runtime_version: String,
    /// The parsed spec as JSON.
    pub spec: Value,
    /// Files by relative path (the main file and every fixture file).
    pub files: BTreeMap<String, Vec<u8>>,
    pub main: String,
}

/// Result of a commit.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitOutcome {
    Committed(VersionRow),
    /// The gym's content equals the newest version: nothing was written.
    Unchanged(VersionRow),
}

/// A changed field: where, before, after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

/// Node-level difference between two versions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GymDiff {
    pub fields: Vec<FieldChange>,
    pub nodes_added: Vec<String>,
    pub nodes_removed: Vec<String>,
    pub nodes_changed: BTreeMap<String, Vec<FieldChange>>,
    pub edges_added: Vec<String>,
    pub edges_removed: Vec<String>,
    pub tasks_added: Vec<String>,
    pub tasks_removed: Vec<String>,
    pub tasks_changed: Vec<String>,
    pub files_changed: Vec<String>,
}

impl GymDiff {
    pub fn is_empty(&self) -> bool {
        *self == GymDiff::default()
    }
}

/// The store and index of one user's data directory.
pub struct History {
    blobs: BlobStore,
    db: Db,
}

impl History {
    /// Open `<data_dir>/store` and `<data_dir>/index.sqlite`.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(data_dir).map_err(crate::io(data_dir))?;
        let blobs = BlobStore::open(&data_dir.join("store"))?;
        let db = Db::open(&data_dir.join("index.sqlite"))?;
        Ok(Self { blobs, db })
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Commit a version, unless its content equals the newest one.
    pub fn commit(&mut self, input: &CommitInput, message: &str, now: i64) -> Result<CommitOutcome, StorageError> {
        let head = self.db.head(&input.gym)?;
        if let Some(h) = &head {
            if h.gym_id == input.gym_id {
                return Ok(CommitOutcome::Unchanged(h.clone()));
            }
        }
        let spec_text = canonical_json(&input.spec).map_err(|e| StorageError::Refused(e.to_string()))?;
        let spec = self.blobs.put(spec_text.as_bytes())?;
        let mut files = BTreeMap::new();
        for (path, bytes) in &input.files {
            check_rel(path)?;
            files.insert(path.clone(), self.blobs.put(bytes)?);
        }
        let parent = match &head {
            Some(h) => Some(h.manifest.parse().map_err(|e: hz_core::IdError| StorageError::Refused(e.to_string()))?),
            None => None,
        };
        let manifest = VersionManifest {
            kind: MANIFEST_KIND.into(),
            gym: input.gym.clone(),
            gym_id: input.gym_id.clone(),
            spec_version: input.spec_version,
            runtime_version: input.runtime_version.clone(),
            spec,
            files,
            main: input.main.clone(),
            parent,
            message: message.to_string(),
            created_at: now,
        };
        let text = canonical_json(&manifest).map_err(|e| StorageError::Refused(e.to_string()))?;
        // Blobs first, index last: a crash in between leaves unreferenced blobs, never an
        // index row pointing at nothing.
        let id = self.blobs.put(text.as_bytes())?;
        let row = self.db.add_version(&VersionRow {
            seq: 0,
            gym: input.gym.clone(),
            manifest: id.to_hex(),
            gym_id: input.gym_id.clone(),
            parent: head.map(|h| h.manifest),
            message: message.to_string(),
            created_at: now,
        })?;
        Ok(CommitOutcome::Committed(row))
    }

    pub fn log(&self, gym: &str) -> Result<Vec<VersionRow>, StorageError> {
        Ok(self.db.log(gym)?)
    }

    pub fn find(&self, gym: &str, rev: &str) -> Result<VersionRow, StorageError> {
        Ok(self.db.find(gym, rev)?)
    }

    /// Read and verify a version's manifest.
    pub fn manifest(&self, row: &VersionRow) -> Result<VersionManifest, StorageError> {
        let id: ContentId = row.manifest.parse().map_err(|e: hz_core::IdError| StorageError::Refused(e.to_string()))?;
        let bytes = self.blobs.get(&id)?;
        let m: VersionManifest =
            serde_json::from_slice(&bytes).map_err(|e| StorageError::BadManifest { id, reason: e.to_string() })?;
        if m.kind != MANIFEST_KIND {
            return Err(StorageError::BadManifest { id, reason: format!("unknown kind {:?}", m.kind) });
        }
        Ok(m)
    }

    /// The parsed spec of a version.
    pub fn spec(&self, m: &VersionManifest) -> Result<Value, StorageError> {
        let bytes = self.blobs.get(&m.spec)?;
        serde_json::from_slice(&bytes).map_err(|e| StorageError::BadManifest { id: m.spec, reason: e.to_string() })
    }

    /// Write a version's files into `dir` (every blob verified before anything is written).
    /// Refuses versions written in a newer spec format than `supported_spec_version`.
    pub fn restore(
        &self,
        m: &VersionManifest,
        dir: &Path,
        supported_spec_version: u32,
    ) -> Result<Vec<String>, StorageError> {
        if m.spec_version > supported_spec_version {
            return Err(StorageError::Refused(format!(
                "version was written with spec_version {} by 440hz {}; this runtime reads up to spec_version {}. Upgrade 440hz to restore it.",
                m.spec_version, m.runtime_version, supported_spec_version
            )));
        }
        let mut contents = Vec::new();
        for (path, id) in &m.files {
            check_rel(path)?;
            contents.push((path.clone(), self.blobs.get(id)?));
        }
        let mut written = Vec::new();
        for (path, bytes) in contents {
            let full = dir.join(&path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).map_err(crate::io(parent))?;
            }
            let mut tmp = tempfile::NamedTempFile::new_in(full.parent().unwrap_or(dir)).map_err(crate::io(&full))?;
            std::io::Write::write_all(&mut tmp, &bytes).map_err(crate::io(&full))?;
            tmp.as_file().sync_all().map_err(crate::io(&full))?;
            tmp.persist(&full).map_err(|e| StorageError::Io { path: full.display().to_string(), source: e.error })?;
            written.push(path);
        }
        Ok(written)
    }

    /// Node-level diff of two versions.
    pub fn diff(&self, a: &VersionManifest, b: &VersionManifest) -> Result<GymDiff, StorageError> {
        let mut d = diff_specs(&self.spec(a)?, &self.spec(b)?);
        let paths: BTreeSet<&String> = a.files.keys().chain(b.files.keys()).collect();
        d.files_changed = paths.into_iter().filter(|p| a.files.get(*p) != b.files.get(*p)).cloned().collect();
        Ok(d)
    }
}

fn check_rel(path: &str) -> Result<(), StorageError> {
    let p = Path::new(path);
    if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(StorageError::Refused(format!(
            "file path {path:?} must be relative and stay inside the gym's folder"
        )));
    }
    Ok(())
}

fn by_id(list: &Value) -> BTreeMap<String, &Value> {
    list.as_array()
        .map(|a| a.iter().filter_map(|n| Some((n.get("id")?.as_str()?.to_string(), n))).collect())
        .unwrap_or_default()
}

fn field_changes(prefix: &str, a: &Value, b: &Value, skip: &[&str]) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let (ao, bo) = (a.as_object().unwrap_or(&empty), b.as_object().unwrap_or(&empty));
    let keys: BTreeSet<&String> = ao.keys().chain(bo.keys()).collect();
    keys.into_iter()
        .filter(|k| !skip.contains(&k.as_str()))
        .filter_map(|k| {
            let (x, y) = (ao.get(k).cloned().unwrap_or(Value::Null), bo.get(k).cloned().unwrap_or(Value::Null));
            (x != y).then(|| FieldChange { field: format!("{prefix}{k}"), before: x, after: y })
        })
        .collect()
}

fn edge_key(e: &Value) -> String {
    let end = |v: &Value| format!("{}.{}", v["node"].as_str().unwrap_or("?"), v["port"].as_str().unwrap_or("?"));
    format!("{} → {}", end(&e["from"]), end(&e["to"]))
}

/// Compare two specs node by node (by id), wire by wire, task by task.
pub fn diff_specs(a: &Value, b: &Value) -> GymDiff {
    let mut d = GymDiff { fields: field_changes("", a, b, &["nodes", "edges", "tasks"]), ..Default::default() };
    let (an, bn) = (by_id(&a["nodes"]), by_id(&b["nodes"]));
    d.nodes_added = bn.keys().filter(|k| !an.contains_key(*k)).cloned().collect();
    d.nodes_removed = an.keys().filter(|k| !bn.contains_key(*k)).cloned().collect();
    for (id, na) in &an {
        if let Some(nb) = bn.get(id) {
            let ch = field_changes("", na, nb, &["id"]);
            if !ch.is_empty() {
                d.nodes_changed.insert(id.clone(), ch);
            }
        }
    }
    let edges =
        |v: &Value| -> BTreeSet<String> { v.as_array().map(|a| a.iter().map(edge_key).collect()).unwrap_or_default() };
    let (ae, be) = (edges(&a["edges"]), edges(&b["edges"]));
    d.edges_added = be.difference(&ae).cloned().collect();
    d.edges_removed = ae.difference(&be).cloned().collect();
    let (at, bt) = (by_id(&a["tasks"]), by_id(&b["tasks"]));
    d.tasks_added = bt.keys().filter(|k| !at.contains_key(*k)).cloned().collect();
    d.tasks_removed = at.keys().filter(|k| !bt.contains_key(*k)).cloned().collect();
    d.tasks_changed = at.iter().filter(|(k, v)| bt.get(*k).is_some_and(|w| w != *v)).map(|(k, _)| k.clone()).collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(spec: Value, gym_id: &str, fixture: &str) -> CommitInput {
        let mut files = BTreeMap::new();
        files.insert("g.gym.json".to_string(), serde_json::to_vec_pretty(&spec).unwrap());
        files.insert("fixtures/a.sql".to_string(), fixture.as_bytes().to_vec());
        CommitInput {
            gym: "g".into(),
            gym_id: gym_id.into(),
            spec_version: 1,
            runtime_version: "0.1.0".into(),
            spec,
            files,
            main: "g.gym.json".into(),
        }
    }

    fn spec(reward: f64) -> Value {
        json!({"name": "g", "max_steps": 3, "nodes": [{"id": "a", "kind": "on_reset"}, {"id": "r", "kind": "reward", "value": reward}],
               "edges": [{"from": {"node": "a", "port": "out"}, "to": {"node": "r", "port": "in"}}], "tasks": [{"id": "t1"}]})
    }

    #[test]
    fn commit_log_diff_restore() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::open(&dir.path().join("data")).unwrap();
        let CommitOutcome::Committed(v1) = h.commit(&input(spec(1.0), "id1", "x"), "first", 10).unwrap() else {
            panic!()
        };
        assert!(matches!(h.commit(&input(spec(1.0), "id1", "x"), "again", 11).unwrap(), CommitOutcome::Unchanged(_)));
        let mut s2 = spec(2.0);
        s2["nodes"].as_array_mut().unwrap().push(json!({"id": "z", "kind": "on_step"}));
        s2["max_steps"] = json!(4);
        let CommitOutcome::Committed(v2) = h.commit(&input(s2, "id2", "y"), "second", 12).unwrap() else { panic!() };
        assert_eq!((v1.seq, v2.seq), (1, 2));
        assert_eq!(v2.parent.as_deref(), Some(v1.manifest.as_str()));
        let (m1, m2) = (h.manifest(&v1).unwrap(), h.manifest(&v2).unwrap());
        let d = h.diff(&m1, &m2).unwrap();
        assert_eq!(d.nodes_added, vec!["z"]);
        assert_eq!(
            d.nodes_changed["r"],
            vec![FieldChange { field: "value".into(), before: json!(1), after: json!(2) }]
        );
        assert_eq!(d.fields[0].field, "max_steps");
        assert_eq!(d.files_changed, vec!["fixtures/a.sql", "g.gym.json"]);
        let out = tempfile::tempdir().unwrap();
        h.restore(&m1, out.path(), 1).unwrap();
        assert_eq!(std::fs::read_to_string(out.path().join("fixtures/a.sql")).unwrap(), "x");
        assert!(h.restore(&m1, out.path(), 0).unwrap_err().to_string().contains("Upgrade 440hz"));
    }

    #[test]
    fn corrupted_blobs_stop_a_restore_before_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::open(dir.path()).unwrap();
        let CommitOutcome::Committed(v1) = h.commit(&input(spec(1.0), "id1", "x"), "m", 1).unwrap() else { panic!() };
        let m = h.manifest(&v1).unwrap();
        let fixture = m.files["fixtures/a.sql"];
        std::fs::write(h.blobs().path_of(&fixture), "tampered").unwrap();
        let out = tempfile::tempdir().unwrap();
        let err = h.restore(&m, out.path(), 1).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(!out.path().join("g.gym.json").exists(), "nothing written");
    }
}
