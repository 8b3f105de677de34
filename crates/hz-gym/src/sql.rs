//! The SQL sandbox: an in-memory SQLite database per episode, seeded from a fixture script.
//! No file can be opened (ATTACH and extensions are refused), statements run under a
//! deterministic instruction budget, results are row-limited, and read-only nodes refuse
//! every write.

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A sandbox database for one episode.
pub struct Sandbox {
    conn: Connection,
    /// Set by the authorizer when the running statement tried to write.
    write_attempt: Arc<AtomicBool>,
    /// Whether writes are currently allowed (toggled per statement).
    allow_write: Arc<AtomicBool>,
    /// State of the seeded `random()`.
    rng: Arc<AtomicU64>,
    /// Whether any statement ran with writes allowed: only then can the content differ
    /// from the seed, and only then must the next episode get a fresh copy.
    dirty: bool,
}

/// The seeded state of a database, captured once per gym so each reset is a memory copy.
pub struct Seed {
    image: Vec<u8>,
}

impl Seed {
    /// Run the fixture script in a fresh database and keep its bytes.
    pub fn build(script: &str) -> Result<Self, String> {
        let conn = open_memory()?;
        conn.execute_batch(script).map_err(|e| format!("fixture SQL failed: {e}"))?;
        let data = conn.serialize(rusqlite::MAIN_DB).map_err(|e| format!("cannot snapshot fixture database: {e}"))?;
        Ok(Self { image: data.to_vec() })
    }
}

fn open_memory() -> Result<Connection, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_MEMORY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(":memory:", flags).map_err(|e| format!("cannot open sandbox: {e}"))?;
    // No second database may be attached: nothing on the host filesystem is reachable.
    let _ = conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0);
    let _ = conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, 1_000_000);
    let _ = conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, 100_000);
    Ok(conn)
}

impl Sandbox {
    /// A fresh database holding the seed's content, locked down.
    pub fn new(seed: &Seed, rng_seed: u64) -> Result<Self, String> {
        let mut conn = open_memory()?;
        conn.deserialize_read_exact(rusqlite::MAIN_DB, &seed.image[..], seed.image.len(), false)
            .map_err(|e| format!("cannot load fixture database: {e}"))?;
        // Deterministic replacements for SQLite's random functions.
        let rng = Arc::new(AtomicU64::new(rng_seed | 1));
        let state = rng.clone();
        let next = move || {
            // xorshift64*: tiny, deterministic, good enough for SQL random().
            let mut x = state.load(Ordering::Relaxed);
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            state.store(x, Ordering::Relaxed);
            x.wrapping_mul(0x2545_F491_4F6C_DD1D) as i64
        };
        let flags = rusqlite::functions::FunctionFlags::SQLITE_UTF8;
        conn.create_scalar_function("random", 0, flags, move |_| Ok(next())).map_err(|e| e.to_string())?;
        let write_attempt = Arc::new(AtomicBool::new(false));
        let allow_write = Arc::new(AtomicBool::new(false));
        let (wa, aw) = (write_attempt.clone(), allow_write.clone());
        conn.authorizer(Some(move |ctx: AuthContext<'_>| authorize(ctx, &wa, &aw)));
        Ok(Self { conn, write_attempt, allow_write, rng, dirty: false })
    }

    /// Whether this database may differ from its seed (a write was allowed).
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// Start a new episode on an untouched database: only `random()` is re-seeded, and
    /// cached statements stay prepared.
    pub fn reseed(&mut self, rng_seed: u64) {
        self.rng.store(rng_seed | 1, Ordering::Relaxed);
    }

    /// Run one statement. Never fails: errors come back in the result object.
    pub fn run(
        &mut self,
        sql: &str,
        params: &[Value],
        read_only: bool,
        max_rows: usize,
        max_instructions: u64,
    ) -> Value {
        self.write_attempt.store(false, Ordering::Relaxed);
        self.allow_write.store(!read_only, Ordering::Relaxed);
        self.dirty |= !read_only;
        // The progress handler fires every 1,000 VM instructions; stop past the budget.
        let budget = (max_instructions / 1_000).max(1);
        let ticks = Arc::new(AtomicU64::new(0));
        let t2 = ticks.clone();
        self.conn.progress_handler(1_000, Some(move || t2.fetch_add(1, Ordering::Relaxed) + 1 > budget));
        let out = self.run_inner(sql, params, read_only, max_rows);
        self.conn.progress_handler(1_000, None::<fn() -> bool>);
        let refused_write = self.write_attempt.load(Ordering::Relaxed);
        match out {
            Ok((columns, rows, truncated)) => json!({
                "ok": true, "columns": columns, "rows": rows, "row_count": rows_len(&rows),
                "truncated": truncated, "error": null, "refused_write": false,
            }),
            Err(e) => {
                let error = if refused_write {
                    "refused: this database is read-only".to_string()
                } else if ticks.load(Ordering::Relaxed) > budget {
                    "statement stopped: it exceeded the instruction budget".to_string()
                } else {
                    e
                };
                json!({
                    "ok": false, "columns": [], "rows": [], "row_count": 0, "truncated": false,
                    "error": error, "refused_write": refused_write,
                })
            }
        }
    }

    fn run_inner(
        &mut self,
        sql: &str,
        params: &[Value],
        read_only: bool,
        max_rows: usize,
    ) -> Result<(Vec<String>, Value, bool), String> {
        let sql = sql.trim();
        if sql.is_empty() {
            return Err("empty SQL statement".into());
        }
        // `prepare` refuses trailing statements ("multiple statements") rather than ignoring
        // them. Statements are cached only in read-only mode: a cached statement skips the
        // authorizer, so one prepared with writes allowed must never be reused read-only.
        if read_only {
            let mut stmt = self.conn.prepare_cached(sql).map_err(|e| e.to_string())?;
            collect(&mut stmt, params, max_rows)
        } else {
            let mut stmt = self.conn.prepare(sql).map_err(|e| e.to_string())?;
            collect(&mut stmt, params, max_rows)
        }
    }
}

fn collect(
    stmt: &mut rusqlite::Statement<'_>,
    params: &[Value],
    max_rows: usize,
) -> Result<(Vec<String>, Value, bool), String> {
    let columns: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let bound: Vec<rusqlite::types::Value> = params.iter().map(to_sql).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(bound.iter())).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut truncated = false;
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        if out.len() == max_rows {
            truncated = true;
            break;
        }
        let mut vals = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            vals.push(match row.get_ref(i).map_err(|e| e.to_string())? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => json!(n),
                ValueRef::Real(f) => serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null),
                ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::String(format!("<blob {} bytes>", b.len())),
            });
        }
        out.push(Value::Array(vals));
    }
    Ok((columns, Value::Array(out), truncated))
}

fn rows_len(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

fn to_sql(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    match v {
        Value::Null => S::Null,
        Value::Bool(b) => S::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => S::Integer(i),
            None => S::Real(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => S::Text(s.clone()),
        other => S::Text(other.to_string()),
    }
}

fn authorize(ctx: AuthContext<'_>, write_attempt: &AtomicBool, allow_write: &AtomicBool) -> Authorization {
    match ctx.action {
        // Never: these reach outside the in-memory database or change its safety settings.
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        AuthAction::Pragma { pragma_name, .. } => {
            let safe = ["table_info", "table_list", "index_list", "index_info", "foreign_key_list", "table_xinfo"];
            if safe.contains(&pragma_name.to_ascii_lowercase().as_str()) {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }
        AuthAction::Read { .. } | AuthAction::Select | AuthAction::Function { .. } | AuthAction::Recursive => {
            Authorization::Allow
        }
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => Authorization::Deny,
        _ => {
            if allow_write.load(Ordering::Relaxed) {
                Authorization::Allow
            } else {
                write_attempt.store(true, Ordering::Relaxed);
                Authorization::Deny
            }
        }
    }
}

/// Render a result as a readable table for the agent.
pub fn result_text(result: &Value) -> String {
    if result["ok"] != Value::Bool(true) {
        return format!("error: {}", result["error"].as_str().unwrap_or("unknown"));
    }
    let cols: Vec<&str> =
        result["columns"].as_array().map(|c| c.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let rows = result["rows"].as_array().cloned().unwrap_or_default();
    if cols.is_empty() {
        return "ok".to_string();
    }
    let mut out = cols.join(" | ");
    out.push('\n');
    for r in &rows {
        let cells: Vec<String> = r
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        Value::Null => "NULL".into(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push_str(&cells.join(" | "));
        out.push('\n');
    }
    let n = rows.len();
    if result["truncated"] == Value::Bool(true) {
        out.push_str(&format!("({n} rows shown; more were cut)"));
    } else {
        out.push_str(&format!("({n} row{})", if n == 1 { "" } else { "s" }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> Sandbox {
        let seed =
            Seed::build("CREATE TABLE t(a INTEGER, b TEXT); INSERT INTO t VALUES (1,'x'),(2,'y'),(3,'z');").unwrap();
        Sandbox::new(&seed, 7).unwrap()
    }

    #[test]
    fn reads_and_limits_rows() {
        let mut s = sandbox();
        let r = s.run("SELECT a, b FROM t ORDER BY a", &[], true, 2, 1_000_000);
        assert_eq!(r["ok"], true);
        assert_eq!(r["rows"], json!([[1, "x"], [2, "y"]]));
        assert_eq!(r["truncated"], true);
        let r = s.run("SELECT b FROM t WHERE a = ?1", &[json!(3)], true, 10, 1_000_000);
        assert_eq!(r["rows"], json!([["z"]]));
    }

    #[test]
    fn read_only_refuses_writes_and_keeps_data() {
        let mut s = sandbox();
        for sql in
            ["DELETE FROM t", "DROP TABLE t", "INSERT INTO t VALUES (9,'q')", "UPDATE t SET a = 0", "CREATE TABLE u(x)"]
        {
            let r = s.run(sql, &[], true, 10, 1_000_000);
            assert_eq!(r["ok"], false, "{sql}");
            assert_eq!(r["refused_write"], true, "{sql}");
        }
        assert_eq!(s.run("SELECT count(*) FROM t", &[], true, 10, 1_000_000)["rows"], json!([[3]]));
        let r = s.run("DELETE FROM t WHERE a = 1", &[], false, 10, 1_000_000);
        assert_eq!(r["ok"], true);
        // The same write, now read-only, is refused again (no cached statement slips through).
        let r = s.run("DELETE FROM t WHERE a = 1", &[], true, 10, 1_000_000);
        assert_eq!(r["refused_write"], true);
        let r = s.run("SELECT count(*) FROM t", &[], true, 10, 1_000_000);
        assert_eq!(r["ok"], true);
        assert_eq!(s.run("DELETE FROM t WHERE a = 1", &[], true, 10, 1_000_000)["refused_write"], true);
        assert_eq!(s.run("SELECT count(*) FROM t", &[], true, 10, 1_000_000)["rows"], json!([[2]]));
    }

    #[test]
    fn host_filesystem_is_unreachable() {
        let mut s = sandbox();
        for sql in [
            "ATTACH DATABASE '/tmp/x.db' AS x",
            "SELECT load_extension('/tmp/x')",
            "PRAGMA writable_schema = 1",
            "VACUUM INTO '/tmp/y.db'",
        ] {
            let r = s.run(sql, &[], false, 10, 1_000_000);
            assert_eq!(r["ok"], false, "{sql}: {r}");
        }
        assert!(!std::path::Path::new("/tmp/y.db").exists());
    }

    #[test]
    fn runaway_queries_stop() {
        let mut s = sandbox();
        let r = s.run(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c",
            &[],
            true,
            10,
            100_000,
        );
        assert_eq!(r["ok"], false);
        assert!(r["error"].as_str().unwrap().contains("budget"), "{r}");
    }

    #[test]
    fn random_is_seeded() {
        let seed = Seed::build("CREATE TABLE t(a);").unwrap();
        let mut a = Sandbox::new(&seed, 1).unwrap();
        let mut b = Sandbox::new(&seed, 1).unwrap();
        let q = "SELECT random()";
        assert_eq!(a.run(q, &[], true, 1, 1_000_000), b.run(q, &[], true, 1, 1_000_000));
    }
}
