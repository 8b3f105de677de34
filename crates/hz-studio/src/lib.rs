//! 440hz studio: the backend of the desktop Gym Builder. It opens gyms (from a file, from a
//! template copied into the user's workspace, or blank), analyzes the text being edited
//! (every problem placed on its node and line, typed ports, a Python preview), saves
//! atomically, plays a gym by hand on the real runtime, and versions it (commit, log,
//! node-level diff, checkout) in the user's data directory.
//!
//! The Tauri shell calls it through plain Rust calls on one [`Studio`], and every value it
//! returns is serde data for the webview. It must not contain window, webview or IPC code,
//! and it must not parse or run gyms any other way than `hz-gym` does: the builder shows
//! exactly what training will see.
//!
//! Layout of the data directory: `store/` and `index.sqlite` (version history, shared with
//! the `hz` command), `gyms/<name>/` (the user's gyms, one folder each).

pub mod analysis;
pub mod catalog;
pub mod error;
pub mod files;
pub mod play;
pub mod versions;

pub use analysis::{Analysis, DiagnosticView, NodePorts, Severity};
pub use catalog::{Catalog, KindInfo};
pub use error::StudioError;
pub use hz_storage::history::{FieldChange, GymDiff};
pub use play::{PlayView, RewardView};

use hz_db::VersionRow;
use hz_gym::{Env, Gym, GymBundle, GymError, ResetOptions, RuntimeConfig};
use hz_storage::history::CommitOutcome;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use versions::{Versions, WorkingCopy};

/// A template the builder offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateInfo {
    /// Folder name, passed to [`Studio::open_template`].
    pub name: String,
    pub title: String,
    pub description: String,
    pub node_count: usize,
    pub task_count: usize,
    /// The template's `*.gym.json`.
    pub path: String,
}

/// A gym opened in the editor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenedGym {
    pub path: String,
    pub text: String,
    pub analysis: Analysis,
}

/// A gym written to disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedGym {
    pub path: String,
    pub name: String,
    /// Content id (hex); `None` when a fixture file cannot be read yet.
    pub gym_id: Option<String>,
}

/// One committed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub gym: String,
    /// 1, 2, 3, ... within the gym.
    pub seq: i64,
    /// `v<seq>`, accepted wherever a revision is.
    pub rev: String,
    /// Manifest id (hex SHA-256).
    pub id: String,
    /// First 12 characters of `id`.
    pub short_id: String,
    pub message: String,
    /// Unix seconds.
    pub created_at: i64,
    /// RFC 3339 (UTC).
    pub time: String,
    pub gym_id: String,
    pub parent: Option<String>,
    /// The newest version.
    pub head: bool,
    /// Its content equals the gym file on disk.
    pub current: bool,
}

/// Result of a commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitView {
    /// `false` when nothing changed since the newest version (then `version` is that one).
    pub committed: bool,
    pub version: VersionInfo,
    pub saved: SavedGym,
    /// Validation errors the committed content has (a commit records work in progress).
    pub errors: usize,
    /// One line for the status bar.
    pub summary: String,
}

/// A node-level diff, `to: None` meaning the working text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffView {
    pub from: VersionInfo,
    pub to: Option<VersionInfo>,
    pub empty: bool,
    #[serde(flatten)]
    pub changes: GymDiff,
    /// The same diff as lines for people (`~ node x`, `+ wire a.out → b.in`).
    pub lines: Vec<String>,
}

struct Session {
    env: Env,
    gym_id: String,
    max_steps: u32,
}

/// The builder's backend. `Send + Sync`: one instance serves every window and command.
pub struct Studio {
    data_dir: PathBuf,
    gyms_dir: PathBuf,
    templates_dir: Option<PathBuf>,
    versions: Mutex<Versions>,
    session: Mutex<Option<Session>>,
    /// The last gym compiled for play, reused while its content id stays the same.
    compiled: Mutex<Option<Arc<Gym>>>,
}

const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Studio>();
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another call cannot leave these values half-updated in a way that matters
    // more than refusing every later call would.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Studio {
    /// Open the studio on `data_dir` (version store + `gyms/` workspace, created when
    /// missing); `templates_dir` is a folder of template gyms like `gym-templates/`.
    pub fn open(data_dir: &Path, templates_dir: Option<PathBuf>) -> Result<Self, StudioError> {
        let gyms_dir = data_dir.join("gyms");
        std::fs::create_dir_all(&gyms_dir).map_err(StudioError::io("create the folder", &gyms_dir))?;
        let versions = Versions::open(data_dir)?;
        tracing::info!(data_dir = %data_dir.display(), templates = ?templates_dir, "studio opened");
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            gyms_dir,
            templates_dir,
            versions: Mutex::new(versions),
            session: Mutex::new(None),
            compiled: Mutex::new(None),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where new gyms and template copies go: `<data_dir>/gyms`.
    pub fn gyms_dir(&self) -> &Path {
        &self.gyms_dir
    }

    /// Node kinds, wire compatibility and the spec schema.
    pub fn catalog() -> Catalog {
        catalog::catalog()
    }

    /// The templates in the templates folder, by name (none when no folder is configured).
    pub fn templates(&self) -> Result<Vec<TemplateInfo>, StudioError> {
        let Some(dir) = &self.templates_dir else { return Ok(Vec::new()) };
        if !dir.is_dir() {
            return Err(StudioError::NotFound { what: "templates folder", path: dir.display().to_string() });
        }
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(StudioError::io("read the folder", dir))?
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| files::check_name("template", n).is_ok())
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let folder = dir.join(&name);
            let gym = match files::gym_file_in(&folder, &name) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(template = %name, error = %e, "skipped");
                    continue;
                }
            };
            let value: Value = match std::fs::read_to_string(&gym).map(|t| serde_json::from_str(&t)) {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    tracing::warn!(path = %gym.display(), error = %e, "template is not valid JSON; skipped");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(path = %gym.display(), error = %e, "cannot read template; skipped");
                    continue;
                }
            };
            let text = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let count = |k: &str| value.get(k).and_then(Value::as_array).map_or(0, Vec::len);
            let title = text("title");
            out.push(TemplateInfo {
                title: if title.is_empty() { name.clone() } else { title },
                description: text("description"),
                node_count: count("nodes"),
                task_count: count("tasks"),
                path: gym.display().to_string(),
                name,
            });
        }
        Ok(out)
    }

    /// Copy template `name` (gym and fixtures) into `<data_dir>/gyms/<name>/` — or
    /// `<name>-2`, `<name>-3`, ... when taken, renaming the gym to match so that each copy
    /// has its own history — and open the copy.
    pub fn open_template(&self, name: &str) -> Result<OpenedGym, StudioError> {
        files::check_name("template", name)?;
        let dir = self.templates_dir.as_ref().ok_or(StudioError::NoTemplates)?;
        let src = dir.join(name);
        if !src.is_dir() {
            let available = self.templates().map(|t| t.into_iter().map(|t| t.name).collect::<Vec<_>>().join(", "));
            return Err(StudioError::UnknownTemplate {
                name: name.to_string(),
                dir: dir.display().to_string(),
                available: available.unwrap_or_default(),
            });
        }
        let src_gym = files::gym_file_in(&src, name)?;
        let (new_name, dest) = files::free_name(&self.gyms_dir, name);
        let tmp = tempfile::Builder::new()
            .prefix(".440hz-copy-")
            .tempdir_in(&self.gyms_dir)
            .map_err(StudioError::io("create a temporary folder in", &self.gyms_dir))?;
        let copied = files::copy_dir(&src, tmp.path())?;
        let main_name = src_gym.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let main = if new_name == name {
            main_name
        } else {
            let old = tmp.path().join(&main_name);
            let text = std::fs::read_to_string(&old).map_err(StudioError::io("read", &old))?;
            let mut value: Value = serde_json::from_str(&text).map_err(|e| StudioError::NotAGym {
                file: src_gym.display().to_string(),
                problems: vec![DiagnosticView::error(None, "", format!("invalid JSON: {e}"))],
            })?;
            if let Some(obj) = value.as_object_mut() {
                obj.insert("name".into(), Value::String(new_name.clone()));
            }
            let renamed = format!("{new_name}.gym.json");
            files::write_atomic(&tmp.path().join(&renamed), pretty(&value).as_bytes())?;
            if renamed != main_name {
                std::fs::remove_file(&old).map_err(StudioError::io("remove", &old))?;
            }
            renamed
        };
        let staged = tmp.keep();
        if let Err(e) = std::fs::rename(&staged, &dest) {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(StudioError::Io { action: "create", path: dest.display().to_string(), source: e });
        }
        tracing::info!(template = name, gym = %new_name, files = copied, dest = %dest.display(), "template copied");
        self.open_gym(&dest.join(main))
    }

    /// Write a minimal valid gym `<data_dir>/gyms/<name>/<name>.gym.json` and open it: a
    /// text action space, one task, `on_reset → return_reset` and `on_step → return_step`.
    pub fn new_gym(&self, name: &str) -> Result<OpenedGym, StudioError> {
        files::check_name("gym", name)?;
        let dir = self.gyms_dir.join(name);
        if dir.exists() {
            return Err(StudioError::Exists { path: dir.display().to_string() });
        }
        let path = dir.join(format!("{name}.gym.json"));
        files::write_atomic(&path, pretty(&blank_gym(name)).as_bytes())?;
        tracing::info!(gym = name, path = %path.display(), "new gym");
        self.open_gym(&path)
    }

    /// Read a gym file and analyze it.
    pub fn open_gym(&self, path: &Path) -> Result<OpenedGym, StudioError> {
        if !path.is_file() {
            return Err(StudioError::NotFound { what: "gym file", path: path.display().to_string() });
        }
        let text = std::fs::read_to_string(path).map_err(StudioError::io("read", path))?;
        let analysis = self.analyze(&text, Some(path));
        Ok(OpenedGym { path: path.display().to_string(), text, analysis })
    }

    /// Analyze text being edited; fixture files resolve against `path`'s folder. Never fails:
    /// every problem is a diagnostic.
    pub fn analyze(&self, text: &str, path: Option<&Path>) -> Analysis {
        let a = analysis::analyze(text, path.and_then(Path::parent));
        tracing::debug!(ok = a.ok, diagnostics = a.diagnostics.len(), "analyzed");
        a
    }

    /// Save `text` to `path` when it parses as a gym (validation errors are allowed: work in
    /// progress is saved), as pretty JSON with the keys in the order given, atomically.
    /// Otherwise the file is left untouched and the error names every problem.
    pub fn save_gym(&self, path: &Path, text: &str) -> Result<SavedGym, StudioError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| StudioError::NotAGym { file: path.display().to_string(), problems: vec![json_error(&e)] })?;
        let (spec, migrated) = analysis::parse_spec(value)
            .map_err(|problems| StudioError::NotAGym { file: path.display().to_string(), problems })?;
        files::write_atomic(path, pretty(&migrated).as_bytes())?;
        let gym_id =
            GymBundle::from_value(migrated, path.parent()).ok().and_then(|b| b.id().ok()).map(|id| id.to_hex());
        tracing::info!(path = %path.display(), gym = %spec.name, "saved");
        Ok(SavedGym { path: path.display().to_string(), name: spec.name, gym_id })
    }

    /// Start a play-test episode of the gym in `text` (fixtures from `path`'s folder) with
    /// `seed`, on task `task` (an id) or the one the seed draws. No network, no overseer
    /// (overseer items are recorded as skipped).
    pub fn play_reset(
        &self,
        text: &str,
        path: Option<&Path>,
        seed: u64,
        task: Option<&str>,
    ) -> Result<PlayView, StudioError> {
        let source = path.map_or_else(|| "the gym".to_string(), |p| p.display().to_string());
        let value: Value = serde_json::from_str(text)
            .map_err(|e| StudioError::NotAGym { file: source.clone(), problems: vec![json_error(&e)] })?;
        let (_, migrated) =
            analysis::parse_spec(value).map_err(|problems| StudioError::NotAGym { file: source, problems })?;
        let bundle = GymBundle::from_value(migrated, path.and_then(Path::parent))?;
        let id = bundle.id()?;
        let gym = {
            let mut cache = lock(&self.compiled);
            match cache.as_ref().filter(|g| g.id() == id) {
                Some(g) => g.clone(),
                None => {
                    let g = Gym::new(bundle).map_err(|e| match e {
                        GymError::Invalid(diags) => StudioError::Invalid {
                            problems: diags.into_iter().map(analysis::from_gym_diagnostic).collect(),
                        },
                        other => StudioError::Gym(other),
                    })?;
                    *cache = Some(g.clone());
                    g
                }
            }
        };
        let max_steps = gym.spec().max_steps;
        let mut env = Env::new(gym, RuntimeConfig::default());
        let opts = ResetOptions { task_id: task.map(str::to_string), task_index: None };
        let (observation, info) = env.reset(seed, &opts)?;
        let gym_id = id.to_hex();
        tracing::info!(seed, task = ?task, gym_id = %gym_id, "play reset");
        let view = PlayView::reset(observation, info, gym_id.clone(), max_steps);
        *lock(&self.session) = Some(Session { env, gym_id, max_steps });
        Ok(view)
    }

    /// Take one step of the play-test episode with `action` exactly as an agent would send
    /// it: a tool call as JSON text (`{"name": "run_sql", "arguments": {...}}`, also the
    /// `tool`, OpenAI `function` and `tool_calls` shapes) or plain text, per the gym's
    /// action space. A malformed action is answered as the agent would see it.
    pub fn play_step(&self, action: &str) -> Result<PlayView, StudioError> {
        let mut session = lock(&self.session);
        let s = session.as_mut().ok_or(StudioError::NoEpisode)?;
        let result = s.env.step(&Value::String(action.to_string()))?;
        tracing::debug!(reward = result.reward, terminated = result.terminated, "play step");
        Ok(PlayView::step(result, s.gym_id.clone(), s.max_steps))
    }

    /// Save `text` to `path`, then commit the gym with `message`. Unchanged content is
    /// reported (`committed: false`), not committed again.
    pub fn commit(&self, path: &Path, text: &str, message: &str) -> Result<CommitView, StudioError> {
        let message = message.trim();
        if message.is_empty() {
            return Err(StudioError::Refused("a commit needs a message: say what changed".into()));
        }
        let saved = self.save_gym(path, text)?;
        let wc = WorkingCopy::read(path)?;
        let errors = wc.error_count();
        let outcome = lock(&self.versions).commit(&wc, message)?;
        let (committed, row) = match outcome {
            CommitOutcome::Committed(r) => (true, r),
            CommitOutcome::Unchanged(r) => (false, r),
        };
        let version = version_info(&row, true, Some(wc.gym_id()));
        let summary = if committed {
            let mut s = format!("committed {} {} ({}) {}", row.gym, version.rev, version.short_id, row.message);
            if errors > 0 {
                s.push_str(&format!(" — note: this version has {errors} validation error(s)"));
            }
            s
        } else {
            format!("nothing to commit: {} is unchanged since {} ({})", row.gym, version.rev, version.short_id)
        };
        Ok(CommitView { committed, version, saved, errors, summary })
    }

    /// The versions of the gym at `path`, newest first.
    pub fn log(&self, path: &Path) -> Result<Vec<VersionInfo>, StudioError> {
        let current = WorkingCopy::read(path).ok();
        let gym = match &current {
            Some(wc) => wc.gym().to_string(),
            None => gym_name(path, None)?,
        };
        let rows = lock(&self.versions).log(&gym)?;
        let current_id = current.as_ref().map(WorkingCopy::gym_id);
        Ok(rows.iter().enumerate().map(|(i, r)| version_info(r, i == 0, current_id)).collect())
    }

    /// Node-level diff from version `from` to version `to`, or to the working copy when `to`
    /// is `None` (`working_text` when given, else the file at `path`).
    pub fn diff(
        &self,
        path: &Path,
        from: &str,
        to: Option<&str>,
        working_text: Option<&str>,
    ) -> Result<DiffView, StudioError> {
        let versions = lock(&self.versions);
        let (from_row, to_row, changes) = match to {
            Some(to) => {
                let gym = gym_name(path, working_text)?;
                let changes = versions.diff_versions(&gym, from, to)?;
                (versions.find(&gym, from)?, Some(versions.find(&gym, to)?), changes)
            }
            None => {
                let wc = match working_text {
                    Some(t) => WorkingCopy::from_text(path, t)?,
                    None => WorkingCopy::read(path)?,
                };
                let changes = versions.diff_working(from, &wc)?;
                (versions.find(wc.gym(), from)?, None, changes)
            }
        };
        let head = versions.log(&from_row.gym)?.first().map(|r| r.seq);
        let current = WorkingCopy::read(path).ok();
        let current_id = current.as_ref().map(WorkingCopy::gym_id);
        let info = |r: &VersionRow| version_info(r, Some(r.seq) == head, current_id);
        Ok(DiffView {
            from: info(&from_row),
            to: to_row.as_ref().map(info),
            empty: changes.is_empty(),
            lines: versions::diff_lines(&changes),
            changes,
        })
    }

    /// Restore version `rev` of the gym at `path` (its files are written into the gym's
    /// folder) and open it. Refuses when `working_text` holds changes no version has, unless
    /// `force`.
    pub fn checkout(&self, path: &Path, rev: &str, working_text: &str, force: bool) -> Result<OpenedGym, StudioError> {
        let working = WorkingCopy::from_text(path, working_text).ok();
        let gym = match &working {
            Some(wc) => wc.gym().to_string(),
            None => gym_name(path, Some(working_text))?,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let done = lock(&self.versions).checkout(&gym, rev, dir, working.as_ref(), path, force)?;
        tracing::info!(gym = %gym, rev, seq = done.row.seq, forced = force, "checkout");
        self.open_gym(&done.main)
    }
}

/// The gym's name: from `text` when it has one, else from the file at `path`.
fn gym_name(path: &Path, text: Option<&str>) -> Result<String, StudioError> {
    let from = |t: &str| {
        serde_json::from_str::<Value>(t).ok().and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
    };
    if let Some(name) = text.and_then(from) {
        return Ok(name);
    }
    let disk = std::fs::read_to_string(path).map_err(StudioError::io("read", path))?;
    from(&disk).ok_or_else(|| {
        StudioError::Refused(format!("{} has no gym `name`, so its history cannot be found", path.display()))
    })
}

fn version_info(r: &VersionRow, head: bool, current_id: Option<&str>) -> VersionInfo {
    VersionInfo {
        gym: r.gym.clone(),
        seq: r.seq,
        rev: format!("v{}", r.seq),
        id: r.manifest.clone(),
        short_id: r.manifest.chars().take(12).collect(),
        message: r.message.clone(),
        created_at: r.created_at,
        time: versions::format_time(r.created_at),
        gym_id: r.gym_id.clone(),
        parent: r.parent.clone(),
        head,
        current: current_id == Some(r.gym_id.as_str()),
    }
}

fn json_error(e: &serde_json::Error) -> DiagnosticView {
    let mut d = DiagnosticView::error(None, "", format!("invalid JSON: {e}"));
    d.line = u32::try_from(e.line()).ok();
    d.column = u32::try_from(e.column().max(1)).ok();
    d
}

/// Pretty JSON (2-space indent, keys in their order) with a final newline.
fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

/// The smallest gym that validates: text actions, one task, two walks.
fn blank_gym(name: &str) -> Value {
    json!({
        "spec_version": hz_gym::SPEC_VERSION,
        "name": name,
        "version": 1,
        "title": name,
        "description": "",
        "max_steps": 8,
        "tasks": [{"id": "task-1", "question": "What should the agent do?"}],
        "nodes": [
            {"id": "on_reset", "kind": "on_reset", "position": {"x": 0.0, "y": 0.0}},
            {"id": "return_reset", "kind": "return_reset", "observation": "{{ task.question }}", "position": {"x": 320.0, "y": 0.0}},
            {"id": "on_step", "kind": "on_step", "position": {"x": 0.0, "y": 200.0}},
            {"id": "return_step", "kind": "return_step", "observation": "You said: {{ action.text }}", "terminated": "false", "position": {"x": 320.0, "y": 200.0}},
            {"id": "action_space", "kind": "action_space", "mode": "text", "position": {"x": 0.0, "y": 400.0}}
        ],
        "edges": [
            {"from": {"node": "on_reset", "port": "out"}, "to": {"node": "return_reset", "port": "in"}},
            {"from": {"node": "on_step", "port": "out"}, "to": {"node": "return_step", "port": "in"}}
        ]
    })
}
