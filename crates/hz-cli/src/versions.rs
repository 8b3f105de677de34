//! `hz gym commit | log | diff | checkout`: version history in the user's data directory.

use anyhow::{bail, Context, Result};
use hz_gym::GymBundle;
use hz_storage::history::{diff_specs, CommitInput, CommitOutcome, GymDiff, History};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `$HZ_DATA_DIR`, else the platform data directory + `440hz`.
pub fn data_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("HZ_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    Ok(dirs::data_dir().context("no data directory for this user; set HZ_DATA_DIR")?.join("440hz"))
}

fn open() -> Result<History> {
    let dir = data_dir()?;
    History::open(&dir).with_context(|| format!("opening the version store in {}", dir.display()))
}

/// Read a gym and the files it is made of.
fn read(path: &Path) -> Result<(GymBundle, CommitInput)> {
    let bundle = GymBundle::load(path).with_context(|| format!("loading {}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let main = path.file_name().context("gym path has no file name")?.to_string_lossy().into_owned();
    let mut files = BTreeMap::new();
    files.insert(main.clone(), std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
    for fx in bundle.spec.fixtures.values() {
        if let Some(rel) = &fx.path {
            let full = dir.join(rel);
            files.insert(rel.clone(), std::fs::read(&full).with_context(|| format!("reading {}", full.display()))?);
        }
    }
    let input = CommitInput {
        gym: bundle.spec.name.clone(),
        gym_id: bundle.id()?.to_hex(),
        spec_version: bundle.spec.spec_version,
        runtime_version: env!("CARGO_PKG_VERSION").to_string(),
        spec: serde_json::to_value(&bundle.spec)?,
        files,
        main,
    };
    Ok((bundle, input))
}

pub fn commit(path: &Path, message: &str) -> Result<()> {
    let (bundle, input) = read(path)?;
    let problems = hz_gym::validate(&bundle).into_iter().filter(|d| d.severity == hz_gym::Severity::Error).count();
    let mut history = open()?;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    match history.commit(&input, message, now)? {
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
    let (bundle, input) = read(path)?;
    let history = open()?;
    let rows = history.log(&bundle.spec.name)?;
    if rows.is_empty() {
        println!("{} has no committed versions; `hz gym commit {} -m MESSAGE`", bundle.spec.name, path.display());
        return Ok(());
    }
    for r in &rows {
        let mark = if r.gym_id == input.gym_id { "*" } else { " " };
        println!("{mark} v{:<4} {}  {}  {}", r.seq, &r.manifest[..12], format_time(r.created_at), r.message);
    }
    if !rows.iter().any(|r| r.gym_id == input.gym_id) {
        println!("  (working copy has uncommitted changes)");
    }
    Ok(())
}

pub fn diff(path: &Path, a: &str, b: Option<&str>, as_json: bool) -> Result<()> {
    let (bundle, input) = read(path)?;
    let history = open()?;
    let ma = history.manifest(&history.find(&bundle.spec.name, a)?)?;
    let d = match b {
        Some(b) => {
            let mb = history.manifest(&history.find(&bundle.spec.name, b)?)?;
            history.diff(&ma, &mb)?
        }
        None => diff_specs(&history.spec(&ma)?, &input.spec),
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print_diff(&d);
    }
    Ok(())
}

fn print_diff(d: &GymDiff) {
    if d.is_empty() {
        println!("no differences");
        return;
    }
    let short = |v: &serde_json::Value| {
        let s = v.to_string();
        if s.chars().count() > 80 {
            format!("{}…", s.chars().take(80).collect::<String>())
        } else {
            s
        }
    };
    for f in &d.fields {
        println!("~ {}: {} → {}", f.field, short(&f.before), short(&f.after));
    }
    for n in &d.nodes_added {
        println!("+ node {n}");
    }
    for n in &d.nodes_removed {
        println!("- node {n}");
    }
    for (n, changes) in &d.nodes_changed {
        println!("~ node {n}");
        for f in changes {
            println!("    {}: {} → {}", f.field, short(&f.before), short(&f.after));
        }
    }
    for e in &d.edges_added {
        println!("+ wire {e}");
    }
    for e in &d.edges_removed {
        println!("- wire {e}");
    }
    for t in &d.tasks_added {
        println!("+ task {t}");
    }
    for t in &d.tasks_removed {
        println!("- task {t}");
    }
    for t in &d.tasks_changed {
        println!("~ task {t}");
    }
    for f in &d.files_changed {
        println!("~ file {f}");
    }
}

pub fn checkout(path: &Path, rev: &str, force: bool) -> Result<()> {
    let history = open()?;
    let current = read(path);
    let gym = match &current {
        Ok((bundle, _)) => bundle.spec.name.clone(),
        Err(e) => bail!("cannot read the working copy to know which gym it is: {e:#}"),
    };
    let row = history.find(&gym, rev)?;
    if let Ok((_, input)) = &current {
        let committed = history.log(&gym)?.iter().any(|r| r.gym_id == input.gym_id);
        if !committed && !force {
            bail!(
                "{} has uncommitted changes (gym id {}); commit them first (`hz gym commit {} -m ...`) or pass --force to discard them",
                path.display(),
                &input.gym_id[..12],
                path.display()
            );
        }
    }
    let manifest = history.manifest(&row)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let written = history.restore(&manifest, dir, hz_gym::SPEC_VERSION)?;
    println!("checked out {} v{} ({}): {} file(s) written", gym, row.seq, &row.manifest[..12], written.len());
    Ok(())
}

fn format_time(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
