//! The commands the webview may invoke, one per permission in `capabilities/default.json`.
//! Each checks its inputs, then runs one [`Studio`] call on a blocking thread (file and
//! SQLite work must not stall the window) and returns its result, or the error's message.
//!
//! Arguments are snake_case in JavaScript too: `invoke("diff", {path, from, to, working_text})`.

use hz_studio::{
    Analysis, Catalog, CommitView, DiffView, OpenedGym, PlayView, SavedGym, Studio, StudioError, TemplateInfo,
    VersionInfo,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tauri::State;
use tauri_plugin_dialog::DialogExt;

type StudioState<'a> = State<'a, Arc<Studio>>;

/// Longest gym text accepted (bytes).
const MAX_TEXT: usize = 16 << 20;
/// Longest action accepted (bytes); the gym's own limit is usually far lower.
const MAX_ACTION: usize = 1 << 20;
/// Longest path, revision, task id, name or commit message accepted (bytes).
const MAX_SHORT: usize = 4096;

/// Run a studio call off the main thread.
async fn blocking<T: Send + 'static>(
    studio: &Arc<Studio>,
    call: impl FnOnce(&Studio) -> Result<T, StudioError> + Send + 'static,
) -> Result<T, String> {
    let studio = studio.clone();
    tauri::async_runtime::spawn_blocking(move || call(&studio))
        .await
        .map_err(|e| format!("the call did not finish: {e}"))?
        .map_err(|e| e.to_string())
}

/// A gym file path: absolute and ending in `.gym.json`.
pub fn gym_path(what: &str, path: &str) -> Result<PathBuf, String> {
    if path.is_empty() || path.len() > MAX_SHORT || path.contains('\0') {
        return Err(format!("{what}: give the path of a gym file (at most {MAX_SHORT} bytes)"));
    }
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("{what}: {path:?} is not an absolute path"));
    }
    if !path.ends_with(".gym.json") || p.file_name().is_none_or(|n| n == ".gym.json") {
        return Err(format!("{what}: {path:?} is not a gym file (name it <gym>.gym.json)"));
    }
    Ok(p.to_path_buf())
}

fn text_arg(what: &str, text: &str, max: usize) -> Result<(), String> {
    if text.len() > max {
        return Err(format!("{what} is {} bytes; the limit is {max}", text.len()));
    }
    Ok(())
}

fn short_arg(what: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    text_arg(what, value, MAX_SHORT)
}

#[tauri::command(rename_all = "snake_case")]
pub async fn catalog() -> Result<Catalog, String> {
    Ok(Studio::catalog())
}

#[tauri::command(rename_all = "snake_case")]
pub async fn templates(studio: StudioState<'_>) -> Result<Vec<TemplateInfo>, String> {
    blocking(&studio, |s| s.templates()).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn open_template(studio: StudioState<'_>, name: String) -> Result<OpenedGym, String> {
    short_arg("template name", &name)?;
    blocking(&studio, move |s| s.open_template(&name)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn new_gym(studio: StudioState<'_>, name: String) -> Result<OpenedGym, String> {
    short_arg("gym name", &name)?;
    blocking(&studio, move |s| s.new_gym(&name)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn open_gym(studio: StudioState<'_>, path: String) -> Result<OpenedGym, String> {
    let path = gym_path("open", &path)?;
    blocking(&studio, move |s| s.open_gym(&path)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn analyze(studio: StudioState<'_>, text: String, path: Option<String>) -> Result<Analysis, String> {
    text_arg("gym text", &text, MAX_TEXT)?;
    let path = path.map(|p| gym_path("analyze", &p)).transpose()?;
    blocking(&studio, move |s| Ok(s.analyze(&text, path.as_deref()))).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn save_gym(studio: StudioState<'_>, path: String, text: String) -> Result<SavedGym, String> {
    let path = gym_path("save", &path)?;
    text_arg("gym text", &text, MAX_TEXT)?;
    blocking(&studio, move |s| s.save_gym(&path, &text)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn play_reset(
    studio: StudioState<'_>,
    text: String,
    path: Option<String>,
    seed: u64,
    task: Option<String>,
) -> Result<PlayView, String> {
    text_arg("gym text", &text, MAX_TEXT)?;
    let path = path.map(|p| gym_path("play", &p)).transpose()?;
    if let Some(t) = &task {
        short_arg("task id", t)?;
    }
    blocking(&studio, move |s| s.play_reset(&text, path.as_deref(), seed, task.as_deref())).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn play_step(studio: StudioState<'_>, action: String) -> Result<PlayView, String> {
    text_arg("action", &action, MAX_ACTION)?;
    blocking(&studio, move |s| s.play_step(&action)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn commit(
    studio: StudioState<'_>,
    path: String,
    text: String,
    message: String,
) -> Result<CommitView, String> {
    let path = gym_path("commit", &path)?;
    text_arg("gym text", &text, MAX_TEXT)?;
    short_arg("commit message", &message)?;
    blocking(&studio, move |s| s.commit(&path, &text, &message)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn log(studio: StudioState<'_>, path: String) -> Result<Vec<VersionInfo>, String> {
    let path = gym_path("log", &path)?;
    blocking(&studio, move |s| s.log(&path)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn diff(
    studio: StudioState<'_>,
    path: String,
    from: String,
    to: Option<String>,
    working_text: Option<String>,
) -> Result<DiffView, String> {
    let path = gym_path("diff", &path)?;
    short_arg("revision", &from)?;
    if let Some(t) = &to {
        short_arg("revision", t)?;
    }
    if let Some(t) = &working_text {
        text_arg("gym text", t, MAX_TEXT)?;
    }
    blocking(&studio, move |s| s.diff(&path, &from, to.as_deref(), working_text.as_deref())).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn checkout(
    studio: StudioState<'_>,
    path: String,
    rev: String,
    working_text: String,
    force: bool,
) -> Result<OpenedGym, String> {
    let path = gym_path("checkout", &path)?;
    short_arg("revision", &rev)?;
    text_arg("gym text", &working_text, MAX_TEXT)?;
    blocking(&studio, move |s| s.checkout(&path, &rev, &working_text, force)).await
}

/// A picked file as a gym path: the name gets `.gym.json` if the user typed it without
/// (`shop` or `shop.json` become `shop.gym.json`).
pub fn as_gym_file(picked: &Path) -> PathBuf {
    let name = picked.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.ends_with(".gym.json") {
        return picked.to_path_buf();
    }
    let stem = name.strip_suffix(".json").unwrap_or(&name);
    picked.with_file_name(format!("{stem}.gym.json"))
}

/// A gym file dialog over `window`, starting at the folder and file name of `current` when
/// it is a path.
fn gym_dialog(
    window: &tauri::WebviewWindow,
    title: &str,
    current: Option<&str>,
) -> tauri_plugin_dialog::FileDialogBuilder<tauri::Wry> {
    let dialog = window.dialog().file().set_title(title).add_filter("Gym", &["gym.json"]).set_parent(window);
    let Some(p) = current.filter(|c| !c.is_empty() && c.len() <= MAX_SHORT).map(Path::new) else { return dialog };
    let dialog = match p.parent().filter(|d| d.is_dir()) {
        Some(dir) => dialog.set_directory(dir),
        None => dialog,
    };
    match p.file_name() {
        Some(name) => dialog.set_file_name(name.to_string_lossy()),
        None => dialog,
    }
}

/// Run a native dialog off the main thread (GTK runs it on the main loop) and turn its answer
/// into a checked gym path; `None` when the user cancelled.
async fn pick(
    what: &'static str,
    show: impl FnOnce() -> Option<tauri_plugin_dialog::FilePath> + Send + 'static,
) -> Result<Option<String>, String> {
    let picked =
        tauri::async_runtime::spawn_blocking(show).await.map_err(|e| format!("the dialog did not finish: {e}"))?;
    let Some(picked) = picked else { return Ok(None) };
    let path = picked.into_path().map_err(|e| format!("{what}: {e}"))?;
    let path = as_gym_file(&path);
    let text = path.to_str().ok_or_else(|| format!("{what}: {} is not valid UTF-8", path.display()))?;
    gym_path(what, text).map(|p| Some(p.to_string_lossy().into_owned()))
}

/// The system's Open dialog for a gym file, over the main window.
#[tauri::command(rename_all = "snake_case")]
pub async fn pick_open_path(window: tauri::WebviewWindow, current: Option<String>) -> Result<Option<String>, String> {
    let dialog = gym_dialog(&window, "Open a gym", current.as_deref());
    pick("open", move || dialog.blocking_pick_file()).await
}

/// The system's Save dialog for a gym file, starting at the current file.
#[tauri::command(rename_all = "snake_case")]
pub async fn pick_save_path(window: tauri::WebviewWindow, current: Option<String>) -> Result<Option<String>, String> {
    let dialog = gym_dialog(&window, "Save the gym as", current.as_deref());
    pick("save as", move || dialog.blocking_save_file()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_files_become_gym_files() {
        for (picked, want) in [
            ("/home/me/shop.gym.json", "/home/me/shop.gym.json"),
            ("/home/me/shop", "/home/me/shop.gym.json"),
            ("/home/me/shop.json", "/home/me/shop.gym.json"),
            ("/home/me/shop.v2", "/home/me/shop.v2.gym.json"),
        ] {
            assert_eq!(as_gym_file(Path::new(picked)), PathBuf::from(want), "{picked}");
        }
    }

    #[test]
    fn gym_paths_are_absolute_gym_files() {
        assert!(gym_path("open", "/home/me/gyms/a/a.gym.json").is_ok());
        for (bad, want) in [
            ("a.gym.json", "not an absolute path"),
            ("../a.gym.json", "not an absolute path"),
            ("/etc/passwd", "not a gym file"),
            ("/tmp/.gym.json", "not a gym file"),
            ("/tmp/a.json", "not a gym file"),
            ("", "give the path"),
            ("/tmp/a\0.gym.json", "give the path"),
        ] {
            let err = gym_path("open", bad).unwrap_err();
            assert!(err.contains(want), "{bad:?}: {err}");
        }
    }

    #[test]
    fn sizes_and_empty_values_are_refused() {
        assert!(short_arg("revision", " ").unwrap_err().contains("empty"));
        assert!(text_arg("action", &"x".repeat(MAX_ACTION + 1), MAX_ACTION).unwrap_err().contains("limit"));
        assert!(short_arg("revision", "v1").is_ok());
    }
}
