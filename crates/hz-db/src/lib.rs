//! 440hz's local SQLite index. It records *where things are* (which manifest is which
//! version of which gym); the content itself lives in the content-addressed store. Every
//! write is a transaction, so a crash or kill loses no committed row.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

mod train;
pub use train::{TrainRunRow, TrainStepRow};

/// Errors of the index.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the database at {path} has schema version {found}; this 440hz knows up to {known}. Upgrade 440hz.")]
    TooNew { path: String, found: i64, known: i64 },
    #[error("{0}")]
    NotFound(String),
    #[error("revision {rev:?} of {gym} is ambiguous: it matches {count} versions; give more characters")]
    Ambiguous { gym: String, rev: String, count: usize },
}

/// One committed version of a gym.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    /// Sequence number within the gym, from 1.
    pub seq: i64,
    pub gym: String,
    /// Content id (hex SHA-256) of the version manifest in the store.
    pub manifest: String,
    /// Gym id (hex SHA-256 of spec + fixtures).
    pub gym_id: String,
    pub parent: Option<String>,
    pub message: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE gym_versions (
        gym TEXT NOT NULL,
        seq INTEGER NOT NULL,
        manifest TEXT NOT NULL,
        gym_id TEXT NOT NULL,
        parent TEXT,
        message TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (gym, seq)
    );
    CREATE INDEX gym_versions_manifest ON gym_versions (manifest);",
    // Training runs and their per-step metrics (the JSON line as written, and the main
    // numbers as columns for dashboards), with one row per reward source and step.
    "CREATE TABLE train_runs (
        run TEXT PRIMARY KEY,
        algo TEXT NOT NULL,
        gym TEXT NOT NULL,
        model TEXT NOT NULL,
        config TEXT NOT NULL,
        started_at INTEGER NOT NULL
    );
    CREATE TABLE train_steps (
        run TEXT NOT NULL REFERENCES train_runs (run),
        step INTEGER NOT NULL,
        reward_mean REAL NOT NULL,
        reward_std REAL NOT NULL,
        kl REAL NOT NULL,
        loss REAL NOT NULL,
        clip_fraction REAL NOT NULL,
        entropy REAL NOT NULL,
        completion_len REAL NOT NULL,
        tokens_per_s REAL NOT NULL,
        metrics TEXT NOT NULL,
        PRIMARY KEY (run, step)
    );
    CREATE TABLE train_step_rewards (
        run TEXT NOT NULL,
        step INTEGER NOT NULL,
        source TEXT NOT NULL,
        mean REAL NOT NULL,
        std REAL NOT NULL,
        PRIMARY KEY (run, step, source)
    );",
];

/// The index database.
pub struct Db {
    conn: Connection,
}

impl Db {
    /// Open (creating and migrating as needed).
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let conn =
            Connection::open(path).map_err(|source| DbError::Open { path: path.display().to_string(), source })?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut db = Self { conn };
        db.migrate(path)?;
        Ok(db)
    }

    fn migrate(&mut self, path: &Path) -> Result<(), DbError> {
        let version: i64 = self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(DbError::TooNew { path: path.display().to_string(), found: version, known });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Append a version; its `seq` is assigned here (the given one is ignored).
    pub fn add_version(&mut self, row: &VersionRow) -> Result<VersionRow, DbError> {
        let tx = self.conn.transaction()?;
        let seq: i64 =
            tx.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM gym_versions WHERE gym = ?1", [&row.gym], |r| {
                r.get(0)
            })?;
        tx.execute(
            "INSERT INTO gym_versions (gym, seq, manifest, gym_id, parent, message, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![row.gym, seq, row.manifest, row.gym_id, row.parent, row.message, row.created_at],
        )?;
        tx.commit()?;
        Ok(VersionRow { seq, ..row.clone() })
    }

    /// Newest version of a gym.
    pub fn head(&self, gym: &str) -> Result<Option<VersionRow>, DbError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seq, gym, manifest, gym_id, parent, message, created_at FROM gym_versions WHERE gym = ?1 ORDER BY seq DESC LIMIT 1",
                [gym],
                row,
            )
            .optional()?)
    }

    /// Every version of a gym, newest first.
    pub fn log(&self, gym: &str) -> Result<Vec<VersionRow>, DbError> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, gym, manifest, gym_id, parent, message, created_at FROM gym_versions WHERE gym = ?1 ORDER BY seq DESC",
        )?;
        let rows = stmt.query_map([gym], row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Find a version by `seq` (`3`, `v3`), `HEAD`, `HEAD~N`, or a prefix of its manifest id.
    pub fn find(&self, gym: &str, rev: &str) -> Result<VersionRow, DbError> {
        let log = self.log(gym)?;
        if log.is_empty() {
            return Err(DbError::NotFound(format!("gym {gym} has no committed versions")));
        }
        let not_found = || DbError::NotFound(format!("no version {rev:?} of {gym} (see `hz gym log`)"));
        let rev_t = rev.trim();
        if rev_t.eq_ignore_ascii_case("head") {
            return Ok(log[0].clone());
        }
        if let Some(n) = rev_t.strip_prefix("HEAD~").or_else(|| rev_t.strip_prefix("head~")) {
            let n: usize = n.parse().map_err(|_| not_found())?;
            return log.get(n).cloned().ok_or_else(not_found);
        }
        if let Ok(seq) = rev_t.trim_start_matches(['v', 'V']).parse::<i64>() {
            if rev_t.len() < 8 {
                return log.into_iter().find(|r| r.seq == seq).ok_or_else(not_found);
            }
        }
        let hits: Vec<_> = log.into_iter().filter(|r| r.manifest.starts_with(&rev_t.to_ascii_lowercase())).collect();
        match hits.len() {
            0 => Err(not_found()),
            1 => Ok(hits.into_iter().next().ok_or_else(not_found)?),
            count => Err(DbError::Ambiguous { gym: gym.to_string(), rev: rev.to_string(), count }),
        }
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRow> {
    Ok(VersionRow {
        seq: r.get(0)?,
        gym: r.get(1)?,
        manifest: r.get(2)?,
        gym_id: r.get(3)?,
        parent: r.get(4)?,
        message: r.get(5)?,
        created_at: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(gym: &str, manifest: &str) -> VersionRow {
        VersionRow {
            seq: 0,
            gym: gym.into(),
            manifest: manifest.into(),
            gym_id: "g".into(),
            parent: None,
            message: "m".into(),
            created_at: 1,
        }
    }

    #[test]
    fn versions_are_sequenced_and_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        {
            let mut db = Db::open(&path).unwrap();
            assert_eq!(db.add_version(&v("a", "aaaa1111")).unwrap().seq, 1);
            assert_eq!(db.add_version(&v("a", "bbbb2222")).unwrap().seq, 2);
            assert_eq!(db.add_version(&v("b", "aaaa3333")).unwrap().seq, 1);
        }
        // Reopen: committed rows survive.
        let db = Db::open(&path).unwrap();
        assert_eq!(db.head("a").unwrap().unwrap().manifest, "bbbb2222");
        assert_eq!(db.log("a").unwrap().len(), 2);
        assert_eq!(db.find("a", "1").unwrap().manifest, "aaaa1111");
        assert_eq!(db.find("a", "v2").unwrap().manifest, "bbbb2222");
        assert_eq!(db.find("a", "HEAD~1").unwrap().manifest, "aaaa1111");
        assert_eq!(db.find("a", "bbbb").unwrap().seq, 2);
        assert!(matches!(db.find("a", "cccc"), Err(DbError::NotFound(_))));
        assert!(matches!(db.find("zzz", "1"), Err(DbError::NotFound(_))));
    }

    #[test]
    fn newer_schemas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        drop(Db::open(&path).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(Db::open(&path), Err(DbError::TooNew { found: 99, .. })));
    }
}
