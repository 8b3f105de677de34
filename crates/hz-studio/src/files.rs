//! File helpers: name checks, atomic writes, folder copies.

use crate::error::StudioError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Gym and template names: lowercase letters, digits and dashes, not starting or ending
/// with a dash, at most 64 characters (they become folder and package names).
pub fn check_name(what: &'static str, name: &str) -> Result<(), StudioError> {
    let bad = |reason: &str| Err(StudioError::InvalidName { what, name: name.to_string(), reason: reason.into() });
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 64 {
        return bad("it is longer than 64 characters");
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return bad("use lowercase letters a-z, digits and dashes only");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return bad("it must not start or end with a dash");
    }
    Ok(())
}

/// Write `bytes` to `path` atomically: a temporary file in the same folder, synced, then
/// renamed over `path`. A crash leaves the old file or the new one, never half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StudioError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(StudioError::io("create the folder", dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".440hz-save-")
        .tempfile_in(dir)
        .map_err(StudioError::io("create a temporary file in", dir))?;
    tmp.write_all(bytes).map_err(StudioError::io("write", path))?;
    tmp.as_file().sync_all().map_err(StudioError::io("sync", path))?;
    tmp.persist(path).map_err(|e| StudioError::Io {
        action: "replace",
        path: path.display().to_string(),
        source: e.error,
    })?;
    Ok(())
}

/// Copy the regular files and folders of `from` into `to` (created). Symbolic links and
/// other special files are skipped, so a template cannot point outside itself.
pub fn copy_dir(from: &Path, to: &Path) -> Result<usize, StudioError> {
    std::fs::create_dir_all(to).map_err(StudioError::io("create the folder", to))?;
    let mut copied = 0;
    let entries = std::fs::read_dir(from).map_err(StudioError::io("read the folder", from))?;
    for entry in entries {
        let entry = entry.map_err(StudioError::io("read the folder", from))?;
        let ty = entry.file_type().map_err(StudioError::io("inspect", &entry.path()))?;
        let target = to.join(entry.file_name());
        if ty.is_dir() {
            copied += copy_dir(&entry.path(), &target)?;
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &target).map_err(StudioError::io("copy", &entry.path()))?;
            copied += 1;
        } else {
            tracing::warn!(path = %entry.path().display(), "skipped: not a regular file or folder");
        }
    }
    Ok(copied)
}

/// The first of `<dir>/<name>`, `<dir>/<name>-2`, `<dir>/<name>-3`, ... that does not exist.
pub fn free_name(dir: &Path, name: &str) -> (String, PathBuf) {
    let mut n = 1u32;
    loop {
        let candidate = if n == 1 { name.to_string() } else { format!("{name}-{n}") };
        let path = dir.join(&candidate);
        if !path.exists() {
            return (candidate, path);
        }
        n += 1;
    }
}

/// The `*.gym.json` of a gym folder: `<name>.gym.json` when present, else the only one.
pub fn gym_file_in(dir: &Path, name: &str) -> Result<PathBuf, StudioError> {
    let preferred = dir.join(format!("{name}.gym.json"));
    if preferred.is_file() {
        return Ok(preferred);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(StudioError::io("read the folder", dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(".gym.json"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(StudioError::NotFound { what: "gym file (*.gym.json)", path: dir.display().to_string() }),
        n => Err(StudioError::Refused(format!(
            "{} holds {n} gym files and none is named {name}.gym.json; keep one gym per folder",
            dir.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "sql-analyst", "g2", "a-b-c"] {
            assert!(check_name("gym", ok).is_ok(), "{ok}");
        }
        for bad in ["", "A", "a_b", "-a", "a-", "a b", "ä", "../x", &"x".repeat(65)] {
            let err = check_name("gym", bad).unwrap_err().to_string();
            assert!(err.contains("not a valid name"), "{bad}: {err}");
        }
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.gym.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn free_names_count_up() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(free_name(dir.path(), "g").0, "g");
        std::fs::create_dir(dir.path().join("g")).unwrap();
        std::fs::create_dir(dir.path().join("g-2")).unwrap();
        assert_eq!(free_name(dir.path(), "g").0, "g-3");
    }
}
