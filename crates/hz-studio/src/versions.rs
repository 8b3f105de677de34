//! Version history of gyms in the user's data directory, shared by the builder and the `hz`
//! command: what a gym's working copy is made of, commit, log, node-level diff (also
//! against unsaved text) and checkout that refuses to drop uncommitted work.

use crate::error::StudioError;
use hz_core::ContentId;
use hz_db::VersionRow;
use hz_gym::GymBundle;
use hz_storage::history::{diff_specs, CommitInput, CommitOutcome, GymDiff, History, VersionManifest};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `$HZ_DATA_DIR`, else the platform's data directory + `440hz` (`~/.local/share/440hz`).
pub fn data_dir() -> Result<PathBuf, StudioError> {
    if let Some(d) = std::env::var_os("HZ_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    dirs::data_dir()
        .map(|d| d.join("440hz"))
        .ok_or_else(|| StudioError::Refused("no data directory for this user; set HZ_DATA_DIR".into()))
}

/// A gym as it stands: its parsed bundle and the files a commit records (the main file and
/// every fixture file, by path relative to the gym's folder).
#[derive(Debug, Clone)]
pub struct WorkingCopy {
    pub path: PathBuf,
    pub bundle: GymBundle,
    pub input: CommitInput,
}

impl WorkingCopy {
    /// Read the gym at `path` and its fixture files from disk.
    pub fn read(path: &Path) -> Result<Self, StudioError> {
        let text = std::fs::read_to_string(path).map_err(StudioError::io("read", path))?;
        Self::from_text(path, &text)
    }

    /// The gym at `path` with the main file's content given as `text` (unsaved edits);
    /// fixture files are read from the gym's folder.
    pub fn from_text(path: &Path, text: &str) -> Result<Self, StudioError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let value: Value = serde_json::from_str(text).map_err(|e| StudioError::NotAGym {
            file: path.display().to_string(),
            problems: vec![crate::analysis::DiagnosticView::error(None, "", format!("invalid JSON: {e}"))],
        })?;
        let (_, migrated) = crate::analysis::parse_spec(value)
            .map_err(|problems| StudioError::NotAGym { file: path.display().to_string(), problems })?;
        let bundle = GymBundle::from_value(migrated, Some(dir))?;
        let main = path
            .file_name()
            .ok_or_else(|| StudioError::Refused(format!("{} has no file name", path.display())))?
            .to_string_lossy()
            .into_owned();
        let mut files = BTreeMap::new();
        files.insert(main.clone(), text.as_bytes().to_vec());
        for fx in bundle.spec.fixtures.values() {
            if let Some(rel) = &fx.path {
                let full = dir.join(rel);
                files.insert(rel.clone(), std::fs::read(&full).map_err(StudioError::io("read", &full))?);
            }
        }
        let input = CommitInput {
            gym: bundle.spec.name.clone(),
            gym_id: bundle.id()?.to_hex(),
            spec_version: bundle.spec.spec_version,
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
            spec: serde_json::to_value(&bundle.spec)
                .map_err(|e| StudioError::Refused(format!("cannot serialize the gym: {e}")))?,
            files,
            main,
        };
        Ok(Self { path: path.to_path_buf(), bundle, input })
    }

    pub fn gym(&self) -> &str {
        &self.input.gym
    }

    pub fn gym_id(&self) -> &str {
        &self.input.gym_id
    }

    /// Number of validation errors (a commit records them, it does not refuse them).
    pub fn error_count(&self) -> usize {
        hz_gym::validate(&self.bundle).iter().filter(|d| d.severity == hz_gym::Severity::Error).count()
    }
}

/// What a checkout wrote.
#[derive(Debug, Clone)]
pub struct CheckedOut {
    pub row: VersionRow,
    pub manifest: VersionManifest,
    /// Files written, relative to the gym's folder.
    pub written: Vec<String>,
    /// The restored main file.
    pub main: PathBuf,
}

/// The version store of one data directory.
pub struct Versions {
    history: History,
}

impl Versions {
    /// Open (creating) the store and index under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StudioError> {
        let history = History::open(data_dir)?;
        Ok(Self { history })
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Commit the working copy, unless its content equals the newest version.
    pub fn commit(&mut self, wc: &WorkingCopy, message: &str) -> Result<CommitOutcome, StudioError> {
        let outcome = self.history.commit(&wc.input, message, now())?;
        match &outcome {
            CommitOutcome::Committed(r) => tracing::info!(gym = %r.gym, seq = r.seq, "committed"),
            CommitOutcome::Unchanged(r) => tracing::info!(gym = %r.gym, seq = r.seq, "nothing to commit"),
        }
        Ok(outcome)
    }

    /// Every version of `gym`, newest first.
    pub fn log(&self, gym: &str) -> Result<Vec<VersionRow>, StudioError> {
        Ok(self.history.log(gym)?)
    }

    /// A version by `3`, `v3`, `HEAD`, `HEAD~1` or a prefix of its manifest id.
    pub fn find(&self, gym: &str, rev: &str) -> Result<VersionRow, StudioError> {
        Ok(self.history.find(gym, rev)?)
    }

    /// Whether some committed version has exactly the working copy's content.
    pub fn is_committed(&self, wc: &WorkingCopy) -> Result<bool, StudioError> {
        Ok(self.log(wc.gym())?.iter().any(|r| r.gym_id == wc.gym_id()))
    }

    /// Node-level diff of two versions.
    pub fn diff_versions(&self, gym: &str, from: &str, to: &str) -> Result<GymDiff, StudioError> {
        let a = self.history.manifest(&self.find(gym, from)?)?;
        let b = self.history.manifest(&self.find(gym, to)?)?;
        Ok(self.history.diff(&a, &b)?)
    }

    /// Node-level diff of a version and the working copy (files compared by content).
    pub fn diff_working(&self, from: &str, wc: &WorkingCopy) -> Result<GymDiff, StudioError> {
        let a = self.history.manifest(&self.find(wc.gym(), from)?)?;
        // Compare in the form a commit stores (canonical JSON, where `1.0` is `1`), so that
        // numbers do not show as changed by their spelling alone.
        let working_spec: Value = hz_core::canonical_json(&wc.input.spec)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| wc.input.spec.clone());
        let mut d = diff_specs(&self.history.spec(&a)?, &working_spec);
        let working: BTreeMap<&String, ContentId> =
            wc.input.files.iter().map(|(p, bytes)| (p, ContentId::of_bytes(bytes))).collect();
        let paths: BTreeSet<&String> = a.files.keys().chain(working.keys().copied()).collect();
        d.files_changed = paths.into_iter().filter(|p| a.files.get(*p) != working.get(*p)).cloned().collect();
        Ok(d)
    }

    /// Restore version `rev` of `gym` into `dir`. `working` is the current working copy, or
    /// `None` when it cannot be read as a gym; unless `force`, a working copy that no
    /// version holds is refused as uncommitted changes.
    pub fn checkout(
        &self,
        gym: &str,
        rev: &str,
        dir: &Path,
        working: Option<&WorkingCopy>,
        path: &Path,
        force: bool,
    ) -> Result<CheckedOut, StudioError> {
        let row = self.find(gym, rev)?;
        if !force {
            let clean = match working {
                Some(wc) => self.is_committed(wc)?,
                None => false,
            };
            if !clean {
                return Err(StudioError::Dirty {
                    path: path.display().to_string(),
                    gym_id: working.map(|wc| wc.gym_id().to_string()),
                });
            }
        }
        let manifest = self.history.manifest(&row)?;
        let written = self.history.restore(&manifest, dir, hz_gym::SPEC_VERSION)?;
        tracing::info!(gym, seq = row.seq, files = written.len(), "checked out");
        let main = dir.join(&manifest.main);
        Ok(CheckedOut { row, manifest, written, main })
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// RFC 3339 (UTC, seconds) of a Unix time.
pub fn format_time(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A diff as lines for people: `~ max_steps: 2 → 3`, `+ node x`, `- wire a.out → b.in`.
pub fn diff_lines(d: &GymDiff) -> Vec<String> {
    let short = |v: &Value| {
        let s = v.to_string();
        if s.chars().count() > 80 {
            format!("{}…", s.chars().take(80).collect::<String>())
        } else {
            s
        }
    };
    let mut out = Vec::new();
    for f in &d.fields {
        out.push(format!("~ {}: {} → {}", f.field, short(&f.before), short(&f.after)));
    }
    out.extend(d.nodes_added.iter().map(|n| format!("+ node {n}")));
    out.extend(d.nodes_removed.iter().map(|n| format!("- node {n}")));
    for (n, changes) in &d.nodes_changed {
        out.push(format!("~ node {n}"));
        for f in changes {
            out.push(format!("    {}: {} → {}", f.field, short(&f.before), short(&f.after)));
        }
    }
    out.extend(d.edges_added.iter().map(|e| format!("+ wire {e}")));
    out.extend(d.edges_removed.iter().map(|e| format!("- wire {e}")));
    out.extend(d.tasks_added.iter().map(|t| format!("+ task {t}")));
    out.extend(d.tasks_removed.iter().map(|t| format!("- task {t}")));
    out.extend(d.tasks_changed.iter().map(|t| format!("~ task {t}")));
    out.extend(d.files_changed.iter().map(|f| format!("~ file {f}")));
    out
}
