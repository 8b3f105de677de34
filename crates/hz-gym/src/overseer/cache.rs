//! Identical judgements are asked for once. The key is the SHA-256 of the canonical JSON of
//! the judge's identity (provider, endpoint, model, prompt version) and the request (rubric,
//! subject, task); GRPO groups often hold identical completions, and re-runs with the same
//! seed ask the same questions again.

use super::{JudgeIdentity, JudgeRequest, Judgement, OverseerError, RewardProvider};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Errors of a persistent judgement store.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("judgement cache {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("judgement cache {path}: {source}")]
    Sql { path: String, source: rusqlite::Error },
}

/// Where judgements outlive the process.
pub trait JudgementStore: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<Judgement>, CacheError>;
    fn put(&self, key: &str, judge: &JudgeIdentity, judgement: &Judgement) -> Result<(), CacheError>;
}

/// The cache key of a request to a judge: hex SHA-256 of canonical JSON (RFC 8785).
pub fn cache_key(judge: &JudgeIdentity, req: &JudgeRequest) -> Result<String, OverseerError> {
    let doc = json!({
        "provider": judge.provider,
        "base_url": judge.base_url,
        "model": judge.model,
        "prompt_version": judge.prompt_version,
        "rubric": req.rubric,
        "subject": req.subject,
        "task": req.task,
    });
    hz_core::ContentId::of_json(&doc).map(|id| id.to_hex()).map_err(|e| OverseerError::Cache(e.to_string()))
}

/// Judgements in a SQLite file of their own (one table, `overseer_judgements`).
pub struct SqliteJudgementStore {
    // rusqlite's Connection is Send but not Sync; judgements are small and rare next to the
    // HTTP call they save, so one lock is enough.
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteJudgementStore {
    /// Open (creating as needed).
    pub fn open(path: &Path) -> Result<Self, CacheError> {
        let open_err = |source| CacheError::Open { path: path.display().to_string(), source };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS overseer_judgements (
                key TEXT PRIMARY KEY,
                provider TEXT NOT NULL,
                base_url TEXT NOT NULL,
                model TEXT NOT NULL,
                prompt_version INTEGER NOT NULL,
                score REAL NOT NULL,
                rationale TEXT NOT NULL,
                created_at INTEGER NOT NULL
            ) WITHOUT ROWID;",
        )
        .map_err(open_err)?;
        Ok(Self { conn: Mutex::new(conn), path: path.to_path_buf() })
    }

    /// How many judgements are stored.
    pub fn len(&self) -> Result<usize, CacheError> {
        let n: i64 = lock(&self.conn)
            .query_row("SELECT count(*) FROM overseer_judgements", [], |r| r.get(0))
            .map_err(|e| self.sql(e))?;
        Ok(n as usize)
    }

    pub fn is_empty(&self) -> Result<bool, CacheError> {
        self.len().map(|n| n == 0)
    }

    fn sql(&self, source: rusqlite::Error) -> CacheError {
        CacheError::Sql { path: self.path.display().to_string(), source }
    }
}

impl JudgementStore for SqliteJudgementStore {
    fn get(&self, key: &str) -> Result<Option<Judgement>, CacheError> {
        lock(&self.conn)
            .query_row("SELECT score, rationale FROM overseer_judgements WHERE key = ?1", [key], |r| {
                Ok(Judgement { score: r.get(0)?, rationale: r.get(1)? })
            })
            .optional()
            .map_err(|e| self.sql(e))
    }

    fn put(&self, key: &str, judge: &JudgeIdentity, j: &Judgement) -> Result<(), CacheError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        lock(&self.conn)
            .execute(
                "INSERT OR REPLACE INTO overseer_judgements
                 (key, provider, base_url, model, prompt_version, score, rationale, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    key,
                    judge.provider,
                    judge.base_url,
                    judge.model,
                    judge.prompt_version,
                    j.score,
                    j.rationale,
                    now
                ],
            )
            .map(|_| ())
            .map_err(|e| self.sql(e))
    }
}

/// Counters of a [`CachedProvider`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Answered from memory or the store (waiting on an identical request in flight included).
    pub hits: u64,
    /// Passed to the inner provider.
    pub misses: u64,
}

/// A provider that asks its inner provider once per distinct request: later identical
/// requests are answered from memory, or from the store after a restart. Identical requests
/// made at the same time wait for the first one instead of all going out. Errors are not
/// cached.
pub struct CachedProvider<P> {
    inner: P,
    store: Option<Box<dyn JudgementStore>>,
    state: Mutex<State>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct State {
    ready: HashMap<String, Judgement>,
    /// Insertion order of `ready`, oldest first, for eviction.
    order: VecDeque<String>,
    pending: HashMap<String, Arc<Flight>>,
}

#[derive(Default)]
struct Flight {
    result: Mutex<Option<Result<Judgement, OverseerError>>>,
    done: Condvar,
}

impl Flight {
    fn finish(&self, result: Result<Judgement, OverseerError>) {
        *lock(&self.result) = Some(result);
        self.done.notify_all();
    }

    fn wait(&self) -> Result<Judgement, OverseerError> {
        let mut slot = lock(&self.result);
        loop {
            if let Some(r) = slot.as_ref() {
                return r.clone();
            }
            slot = self.done.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Default number of judgements kept in memory.
pub const DEFAULT_CAPACITY: usize = 10_000;

impl<P: RewardProvider> CachedProvider<P> {
    /// An in-memory cache in front of `inner`.
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            store: None,
            state: Mutex::new(State::default()),
            capacity: DEFAULT_CAPACITY,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Also keep judgements in `store`, and look there before asking.
    pub fn with_store(mut self, store: impl JudgementStore + 'static) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// Keep at most `n` judgements in memory (the oldest go first; the store keeps all).
    pub fn with_capacity(mut self, n: usize) -> Self {
        self.capacity = n.max(1);
        self
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats { hits: self.hits.load(Ordering::Relaxed), misses: self.misses.load(Ordering::Relaxed) }
    }

    pub fn inner(&self) -> &P {
        &self.inner
    }

    fn remember(&self, key: &str, j: &Judgement) {
        let mut st = lock(&self.state);
        if st.ready.insert(key.to_string(), j.clone()).is_none() {
            st.order.push_back(key.to_string());
        }
        while st.ready.len() > self.capacity {
            match st.order.pop_front() {
                Some(old) => {
                    st.ready.remove(&old);
                }
                None => break,
            }
        }
    }

    /// The store's answer, or the inner provider's (then written to the store). A broken
    /// store costs a warning, not the judgement.
    fn fetch(&self, key: &str, req: &JudgeRequest) -> Result<Judgement, OverseerError> {
        if let Some(store) = &self.store {
            match store.get(key) {
                Ok(Some(j)) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(j);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "reading the judgement cache failed; asking the judge"),
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let j = self.inner.judge(req)?;
        if let Some(store) = &self.store {
            if let Err(e) = store.put(key, &self.inner.identity(), &j) {
                tracing::warn!(error = %e, "writing the judgement cache failed");
            }
        }
        Ok(j)
    }
}

/// Ends a flight even when the inner provider panics, so waiters never hang.
struct Leader<'a, P: RewardProvider> {
    cache: &'a CachedProvider<P>,
    key: &'a str,
    flight: Arc<Flight>,
    finished: bool,
}

impl<P: RewardProvider> Leader<'_, P> {
    fn finish(mut self, result: Result<Judgement, OverseerError>) -> Result<Judgement, OverseerError> {
        if let Ok(j) = &result {
            self.cache.remember(self.key, j);
        }
        lock(&self.cache.state).pending.remove(self.key);
        self.flight.finish(result.clone());
        self.finished = true;
        result
    }
}

impl<P: RewardProvider> Drop for Leader<'_, P> {
    fn drop(&mut self) {
        if !self.finished {
            lock(&self.cache.state).pending.remove(self.key);
            self.flight.finish(Err(OverseerError::Cache("the judging thread panicked".into())));
        }
    }
}

impl<P: RewardProvider> RewardProvider for CachedProvider<P> {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn identity(&self) -> JudgeIdentity {
        self.inner.identity()
    }

    fn judge(&self, req: &JudgeRequest) -> Result<Judgement, OverseerError> {
        let key = cache_key(&self.inner.identity(), req)?;
        let flight = {
            let mut st = lock(&self.state);
            if let Some(j) = st.ready.get(&key) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(j.clone());
            }
            if let Some(f) = st.pending.get(&key).cloned() {
                drop(st);
                self.hits.fetch_add(1, Ordering::Relaxed);
                return f.wait();
            }
            let f = Arc::new(Flight::default());
            st.pending.insert(key.clone(), f.clone());
            f
        };
        let leader = Leader { cache: self, key: &key, flight, finished: false };
        let result = self.fetch(&key, req);
        leader.finish(result)
    }
}

/// A poisoned lock only means another thread panicked mid-update of plain maps; the data
/// is still consistent enough for a cache.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
