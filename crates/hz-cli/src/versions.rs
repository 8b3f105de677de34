//! `hz gym commit | log | diff | checkout`: version history in the user's data directory.
//! The logic is `hz_studio::versions`, shared with the desktop builder; this module prints.

use anyhow::{bail, Context, Result};
use hz_storage::history::CommitOutcome;
use hz_studio::versions::{data_dir, diff_lines, format_time, Versions, WorkingCopy};
use hz_studio::StudioError;
use std::path::Path;

fn open() -> Result<Versions> {
    let dir = data_dir()?;
    Versions::open(&dir).with_context(|| format!("opening the version store in {}", dir.display()))
}

fn read(path: &Path) -> Result<WorkingCopy> {
    WorkingCopy::read(path).with_context(|| format!("loading {}", path.display()))
}

pub fn commit(path: &Path, message: &str) -> Result<()> {
    let wc = read(path)?;
    let problems = wc.error_count();
    match open()?.commit(&wc, message)? {
        CommitOutcome::Committed(row) => {
            println!("committed {} v{} ({}) {}", row.gym, row.seq, &row.manifest[..12], row.message);
            if problems > 0 {
                println!("note: this version has {problems} validation error(s); `hz gym check` lists them");
            }
        }
        CommitOutcome::Unchanged(row) => {
            println!("nothing to commit: {} is unchanged since v{} ({})", row.gym, row.seq, &row.manifest[..12])
        }
    }
    Ok(())
}

pub fn log(path: &Path) -> Result<()> {
    let wc = read(path)?;
    let rows = open()?.log(wc.gym())?;
    if rows.is_empty() {
        println!("{} has no committed versions; `hz gym commit {} -m MESSAGE`", wc.gym(), path.display());
        return Ok(());
    }
    for r in &rows {
        let mark = if r.gym_id == wc.gym_id() { "*" } else { " " };
        println!("{mark} v{:<4} {}  {}  {}", r.seq, &r.manifest[..12], format_time(r.created_at), r.message);
    }
    if !rows.iter().any(|r| r.gym_id == wc.gym_id()) {
        println!("  (working copy has uncommitted changes)");
    }
    Ok(())
}

pub fn diff(path: &Path, a: &str, b: Option<&str>, as_json: bool) -> Result<()> {
    let wc = read(path)?;
    let versions = open()?;
    let d = match b {
        Some(b) => versions.diff_versions(wc.gym(), a, b)?,
        None => versions.diff_working(a, &wc)?,
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else if d.is_empty() {
        println!("no differences");
    } else {
        for line in diff_lines(&d) {
            println!("{line}");
        }
    }
    Ok(())
}

pub fn checkout(path: &Path, rev: &str, force: bool) -> Result<()> {
    let wc = match WorkingCopy::read(path) {
        Ok(wc) => wc,
        Err(e) => bail!("cannot read the working copy to know which gym it is: {e:#}"),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    match open()?.checkout(wc.gym(), rev, dir, Some(&wc), path, force) {
        Ok(done) => {
            println!(
                "checked out {} v{} ({}): {} file(s) written",
                wc.gym(),
                done.row.seq,
                &done.row.manifest[..12],
                done.written.len()
            );
            Ok(())
        }
        Err(StudioError::Dirty { .. }) => bail!(
            "{} has uncommitted changes (gym id {}); commit them first (`hz gym commit {} -m ...`) or pass --force to discard them",
            path.display(),
            &wc.gym_id()[..12],
            path.display()
        ),
        Err(e) => Err(e.into()),
    }
}
