//! The HTTP face of a gym: the protocol of the original 440hz and OpenEnv.
//!
//! - `POST /reset` `{seed?, options?, session_id?}` → `{session_id, observation, info}`
//! - `POST /step` `{session_id, action}` → `{observation, reward, terminated, truncated, info}`
//! - `POST /close` `{session_id}` → `{closed: true}`
//! - `GET /spec` → the gym's spec, id and spaces; `GET /healthz` → `{status: "ok", ...}`
//!
//! Many sessions run at once, each its own [`hz_gym::Env`]; idle sessions expire. Every bad
//! request gets a 4xx with a JSON body that says what is wrong; nothing a client sends can
//! panic the server. This crate owns the bytes that cross the socket and nothing else: the
//! gym semantics are all in `hz-gym`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hz_gym::{Env, Gym, GymError, ResetOptions, RuntimeConfig};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Limits of one server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Sessions untouched this long are dropped.
    pub idle_timeout: Duration,
    /// Most live sessions; more get 503 until some expire or close.
    pub max_sessions: usize,
    /// Largest request body in bytes.
    pub max_body: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { idle_timeout: Duration::from_secs(600), max_sessions: 10_000, max_body: 256 * 1024 }
    }
}

struct Session {
    env: Env,
    last_used: Instant,
}

/// Shared state of a server.
pub struct AppState {
    gym: Arc<Gym>,
    runtime: RuntimeConfig,
    config: ServerConfig,
    sessions: Mutex<HashMap<String, Arc<Mutex<Session>>>>,
    spec: Value,
}

impl AppState {
    pub fn new(gym: Arc<Gym>, runtime: RuntimeConfig, config: ServerConfig) -> Arc<Self> {
        let actions = &gym.compiled().actions;
        let spec = json!({
            "name": gym.spec().name,
            "version": gym.spec().version,
            "title": gym.spec().title_or_name(),
            "gym_id": gym.id().to_hex(),
            "runtime_version": env!("CARGO_PKG_VERSION"),
            "max_steps": gym.spec().max_steps,
            "action_space": {"mode": actions.mode(), "tools": actions.tools().collect::<Vec<_>>()},
            "observation_space": {"type": "text", "max_length": gym.spec().limits.max_observation_chars},
            "spec": gym.spec(),
        });
        Arc::new(Self { gym, runtime, config, sessions: Mutex::new(HashMap::new()), spec })
    }

    /// Live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Drop sessions idle past the timeout; returns how many were dropped.
    pub fn expire_idle(&self) -> usize {
        let now = Instant::now();
        let Ok(mut sessions) = self.sessions.lock() else { return 0 };
        let before = sessions.len();
        sessions.retain(|_, s| {
            // A session busy in a step is in use, not idle.
            s.try_lock().map(|s| now.duration_since(s.last_used) < self.config.idle_timeout).unwrap_or(true)
        });
        before - sessions.len()
    }
}

/// A JSON error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": {"code": self.code, "message": self.message}}))).into_response()
    }
}

fn gym_error(e: GymError) -> ApiError {
    match e {
        GymError::EpisodeOver => ApiError::new(StatusCode::CONFLICT, "episode_over", e.to_string()),
        GymError::NotReset => ApiError::new(StatusCode::CONFLICT, "not_reset", e.to_string()),
        GymError::UnknownTask(_) => ApiError::bad(e.to_string()),
        other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "gym_error", other.to_string()),
    }
}

/// Parse a JSON body into `T`, with errors that say what is wrong.
fn parse<T: for<'de> Deserialize<'de>>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), "bad_body", e.body_text()))?;
    let text = if body.is_empty() { "{}".as_bytes() } else { &body[..] };
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        if at == "." || at.is_empty() {
            ApiError::bad(format!("request body: {}", e.inner()))
        } else {
            ApiError::bad(format!("request body, field `{at}`: {}", e.inner()))
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetReq {
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    options: Option<ResetOptions>,
    #[serde(default)]
    session_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepReq {
    session_id: String,
    action: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseReq {
    session_id: String,
}

fn new_session_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

impl AppState {
    fn session(&self, id: &str) -> Result<Arc<Mutex<Session>>, ApiError> {
        let sessions = self
            .sessions
            .lock()
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "session table poisoned"))?;
        sessions.get(id).cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_session",
                format!(
                    "no session {id:?} (it may have expired after {} s idle); call /reset",
                    self.config.idle_timeout.as_secs()
                ),
            )
        })
    }
}

async fn reset(State(app): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let req: ResetReq = parse(body)?;
    let seed = req.seed.unwrap_or_else(rand::random);
    let options = req.options.unwrap_or_default();
    let (id, session) = match req.session_id {
        Some(id) => {
            let s = app.session(&id)?;
            (id, s)
        }
        None => {
            let mut sessions = app
                .sessions
                .lock()
                .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "session table poisoned"))?;
            if sessions.len() >= app.config.max_sessions {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_sessions",
                    format!("{} sessions are open; close some or wait for idle ones to expire", sessions.len()),
                ));
            }
            let id = new_session_id();
            let s = Arc::new(Mutex::new(Session {
                env: Env::new(app.gym.clone(), app.runtime.clone()),
                last_used: Instant::now(),
            }));
            sessions.insert(id.clone(), s.clone());
            (id, s)
        }
    };
    let result = tokio::task::spawn_blocking(move || {
        let mut s = session
            .lock()
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "session poisoned"))?;
        s.last_used = Instant::now();
        s.env.reset(seed, &options).map_err(gym_error)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    let (observation, info) = result;
    Ok(Json(json!({"session_id": id, "observation": observation, "info": info})))
}

async fn step(State(app): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let req: StepReq = parse(body)?;
    let session = app.session(&req.session_id)?;
    let r = tokio::task::spawn_blocking(move || {
        let mut s = session
            .lock()
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "session poisoned"))?;
        s.last_used = Instant::now();
        s.env.step(&req.action).map_err(gym_error)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok(Json(
        json!({"observation": r.observation, "reward": r.reward, "terminated": r.terminated, "truncated": r.truncated, "info": r.info}),
    ))
}

async fn close(State(app): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let req: CloseReq = parse(body)?;
    let removed = app.sessions.lock().map(|mut s| s.remove(&req.session_id).is_some()).unwrap_or(false);
    if !removed {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_session",
            format!("no session {:?}", req.session_id),
        ));
    }
    Ok(Json(json!({"closed": true})))
}

async fn spec(State(app): State<Arc<AppState>>) -> Json<Value> {
    Json(app.spec.clone())
}

async fn healthz(State(app): State<Arc<AppState>>) -> Json<Value> {
    Json(
        json!({"status": "ok", "gym": app.gym.spec().name, "gym_id": app.gym.id().to_hex(), "sessions": app.session_count()}),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see POST /reset, POST /step, POST /close, GET /spec, GET /healthz",
    )
}

/// The router, for embedding or testing.
pub fn router(app: Arc<AppState>) -> Router {
    let limit = app.config.max_body;
    Router::new()
        .route("/reset", post(reset))
        .route("/step", post(step))
        .route("/close", post(close))
        .route("/spec", get(spec))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// Serve until `shutdown` resolves, expiring idle sessions in the background.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let reaper_app = app.clone();
    let period = (app.config.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
    let reaper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let n = reaper_app.expire_idle();
            if n > 0 {
                tracing::info!(expired = n, "idle sessions dropped");
            }
        }
    });
    let result = axum::serve(listener, router(app)).with_graceful_shutdown(shutdown).await;
    reaper.abort();
    result
}
