//! `hz serve`: a local model folder behind an OpenAI-compatible HTTP API on loopback, so the
//! AI overseer (or anything speaking OpenAI's chat API) can use a local candle model.
//!
//! - `POST /v1/chat/completions`: messages → the folder's chat template (ChatML for the
//!   project's own models, which have none) → batched KV-cache generation → a
//!   `chat.completion`. Honours `temperature`, `top_p`, `max_tokens` (or
//!   `max_completion_tokens`), `stop`, `seed` and `n`; `tools` go to the template.
//!   `response_format` is accepted and not enforced; any `model` name is served by the
//!   one model, and the reply names it. Generation ends on the template's end-of-turn token.
//! - `GET /v1/models`, `GET /healthz`.
//!
//! Errors use OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`; a bad request
//! is HTTP 400 and names the field in `param` and in the message.
//!
//! A fixed number of worker threads take requests; generation holds the model's lock, so
//! requests are served one at a time on the model.

use hz_chat::{Builtin, ChatTokenizer, Message, Role, Tool};
use hz_llm::generate::{generate, Finish, Sampling};
use hz_llm::{Fwd, LlmError, Model};
use serde_json::{json, Map, Value};
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest request body read.
pub const MAX_BODY_BYTES: usize = 4 << 20;
/// Most stop strings a request may give (OpenAI's limit).
pub const MAX_STOP: usize = 4;
/// Most choices a request may ask for.
pub const MAX_N: usize = 16;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    // The causes are in the messages, not chained as sources, so `{:#}` says them once.
    #[error("loading the model: {0}")]
    Model(LlmError),
    #[error("loading the chat template: {0}")]
    Chat(hz_chat::ChatError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error("{0}")]
    Config(String),
}

impl From<LlmError> for ServeError {
    fn from(e: LlmError) -> Self {
        Self::Model(e)
    }
}

impl From<hz_chat::ChatError> for ServeError {
    fn from(e: hz_chat::ChatError) -> Self {
        Self::Chat(e)
    }
}

/// How the server serves.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The name `GET /v1/models` lists and completions report.
    pub model_name: String,
    /// `max_tokens` when a request gives none.
    pub default_max_tokens: usize,
    /// Largest `max_tokens` accepted.
    pub max_tokens_limit: usize,
    /// Worker threads taking requests (at least 1).
    pub workers: usize,
}

impl ServeConfig {
    pub fn new(model_name: impl Into<String>) -> Self {
        Self { model_name: model_name.into(), default_max_tokens: 512, max_tokens_limit: 4096, workers: 2 }
    }
}

/// The model and its chat template.
pub struct Engine {
    model: Model,
    chat: ChatTokenizer,
}

impl Engine {
    /// Load a Hugging Face folder or a GGUF file on the CPU (f32); see [`load_chat`] for the
    /// chat template.
    pub fn load(dir: &Path) -> Result<Self, ServeError> {
        let (cpu, f32) = (&candle_core::Device::Cpu, candle_core::DType::F32);
        if hz_llm::gguf::is_gguf(dir) {
            // One read of the file's header serves the weights, the vocabulary and the template.
            let g = hz_llm::gguf::Gguf::open(dir)?;
            return Ok(Self { model: g.load_model(cpu, f32)?, chat: gguf_chat(&g)? });
        }
        let model = hz_llm::load::load_model(dir, cpu, f32)?;
        Ok(Self { model, chat: load_chat(dir)? })
    }

    /// The model and chat tokenizer, for a caller that trains rather than serves.
    pub fn into_parts(self) -> (Model, ChatTokenizer) {
        (self.model, self.chat)
    }

    pub fn new(model: Model, chat: ChatTokenizer) -> Self {
        Self { model, chat }
    }
}

/// The tokenizer and chat template of a model. A Hugging Face folder: its files, ChatML when
/// it has no template. A GGUF file: its vocabulary and `tokenizer.chat_template`, else the
/// family's built-in template.
pub fn load_chat(path: &Path) -> Result<ChatTokenizer, ServeError> {
    if !hz_llm::gguf::is_gguf(path) {
        return Ok(ChatTokenizer::from_model_dir(path, Some(Builtin::ChatMl))?);
    }
    gguf_chat(&hz_llm::gguf::Gguf::open(path)?)
}

fn gguf_chat(g: &hz_llm::gguf::Gguf) -> Result<ChatTokenizer, ServeError> {
    let fallback = match g.family()? {
        hz_llm::Family::Llama => Builtin::Llama3,
        hz_llm::Family::Qwen2 => Builtin::ChatMl,
        hz_llm::Family::Gemma3 => Builtin::Gemma3,
    };
    Ok(ChatTokenizer::from_embedded(
        g.tokenizer()?,
        g.chat_template(),
        g.special_token("bos"),
        g.special_token("eos"),
        Some(fallback),
    )?)
}

/// A running server. Dropping it stops the workers.
pub struct Server {
    http: Arc<tiny_http::Server>,
    addr: SocketAddr,
    workers: Vec<JoinHandle<()>>,
}

impl Server {
    /// Listen on `addr` (`127.0.0.1:0` picks a free port) and serve `engine`.
    pub fn start(engine: Engine, addr: &str, config: ServeConfig) -> Result<Self, ServeError> {
        if config.default_max_tokens == 0 || config.default_max_tokens > config.max_tokens_limit {
            return Err(ServeError::Config(format!(
                "default max_tokens {} must be in 1..={}",
                config.default_max_tokens, config.max_tokens_limit
            )));
        }
        let http = tiny_http::Server::http(addr)
            .map_err(|e| ServeError::Bind { addr: addr.to_string(), reason: e.to_string() })?;
        let bound = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| ServeError::Bind { addr: addr.to_string(), reason: "not an IP socket".into() })?;
        let http = Arc::new(http);
        let state = Arc::new(State { engine: Mutex::new(engine), config, counter: AtomicU64::new(0) });
        let workers = (0..state.config.workers.max(1))
            .map(|_| {
                let (http, state) = (Arc::clone(&http), Arc::clone(&state));
                std::thread::spawn(move || worker(&http, &state))
            })
            .collect();
        Ok(Self { http, addr: bound, workers })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL an OpenAI client is given (`http://ADDR/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Serve until the process ends.
    pub fn wait(mut self) {
        for w in std::mem::take(&mut self.workers) {
            let _ = w.join();
        }
    }

    /// Stop taking requests and wait for the workers.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        for _ in 0..self.workers.len() {
            self.http.unblock();
        }
        for w in std::mem::take(&mut self.workers) {
            let _ = w.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct State {
    engine: Mutex<Engine>,
    config: ServeConfig,
    counter: AtomicU64,
}

fn worker(http: &tiny_http::Server, state: &State) {
    // `recv` fails once the server is unblocked or its socket is gone.
    while let Ok(mut req) = http.recv() {
        let (status, body) = handle(state, &mut req);
        let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]);
        let mut resp = tiny_http::Response::from_string(body.to_string()).with_status_code(status);
        if let Ok(h) = header {
            resp = resp.with_header(h);
        }
        if let Err(e) = req.respond(resp) {
            tracing::debug!("hz serve: writing a response failed: {e}");
        }
    }
}

/// An error answer: HTTP status and OpenAI's error object.
#[derive(Debug)]
struct ApiError {
    status: u16,
    kind: &'static str,
    param: Option<String>,
    message: String,
}

impl ApiError {
    fn bad(param: impl Into<String>, message: impl Into<String>) -> Self {
        let param = param.into();
        Self {
            status: 400,
            kind: "invalid_request_error",
            message: format!("`{param}`: {}", message.into()),
            param: Some(param),
        }
    }

    fn status(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, param: None, message: message.into() }
    }

    fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": null}})
    }
}

fn handle(state: &State, req: &mut tiny_http::Request) -> (u16, Value) {
    let path = req.url().split('?').next().unwrap_or_default().trim_end_matches('/').to_string();
    let method = req.method().clone();
    let result = match (path.as_str(), &method) {
        ("/healthz", tiny_http::Method::Get) => Ok(json!({"status": "ok", "model": state.config.model_name})),
        ("/v1/models", tiny_http::Method::Get) => Ok(json!({
            "object": "list",
            "data": [{"id": state.config.model_name, "object": "model", "created": now(), "owned_by": "440hz"}],
        })),
        ("/v1/chat/completions", tiny_http::Method::Post) => read_json(req).and_then(|v| chat_completion(state, &v)),
        ("/healthz" | "/v1/models" | "/v1/chat/completions", m) => {
            Err(ApiError::status(405, "invalid_request_error", format!("{m} is not allowed on {path}")))
        }
        _ => Err(ApiError::status(404, "invalid_request_error", format!("no route {method} {path}"))),
    };
    match result {
        Ok(v) => (200, v),
        Err(e) => {
            tracing::debug!("hz serve: {} {path}: {}", e.status, e.message);
            (e.status, e.body())
        }
    }
}

fn read_json(req: &mut tiny_http::Request) -> Result<Value, ApiError> {
    let mut body = Vec::new();
    let read = req.as_reader().take(MAX_BODY_BYTES as u64 + 1).read_to_end(&mut body);
    if let Err(e) = read {
        return Err(ApiError::status(400, "invalid_request_error", format!("reading the request body: {e}")));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::status(413, "invalid_request_error", format!("the body is over {MAX_BODY_BYTES} bytes")));
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::status(400, "invalid_request_error", format!("the body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::status(400, "invalid_request_error", "the body must be a JSON object"));
    }
    Ok(v)
}

/// A chat completion request, checked.
#[derive(Debug)]
struct ChatRequest {
    messages: Vec<Message>,
    tools: Vec<Tool>,
    sampling: Sampling,
    n: usize,
}

fn parse_request(v: &Map<String, Value>, config: &ServeConfig) -> Result<ChatRequest, ApiError> {
    let messages = match v.get("messages") {
        None | Some(Value::Null) => return Err(ApiError::bad("messages", "is required")),
        Some(Value::Array(a)) if a.is_empty() => return Err(ApiError::bad("messages", "must not be empty")),
        Some(Value::Array(a)) => {
            a.iter().enumerate().map(|(i, m)| parse_message(i, m)).collect::<Result<Vec<_>, _>>()?
        }
        Some(_) => return Err(ApiError::bad("messages", "must be an array of message objects")),
    };
    if v.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::bad("stream", "streaming is not supported; send false or leave it out"));
    }
    let temperature = number(v, "temperature", 1.0)?;
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::bad("temperature", format!("{temperature} is not in [0, 2]")));
    }
    let top_p = number(v, "top_p", 1.0)?;
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::bad("top_p", format!("{top_p} is not in (0, 1]")));
    }
    let max_tokens = match (integer(v, "max_completion_tokens")?, integer(v, "max_tokens")?) {
        (Some(m), _) => ("max_completion_tokens", m),
        (None, Some(m)) => ("max_tokens", m),
        (None, None) => ("max_tokens", config.default_max_tokens as u64),
    };
    if max_tokens.1 == 0 || max_tokens.1 > config.max_tokens_limit as u64 {
        return Err(ApiError::bad(max_tokens.0, format!("{} is not in 1..={}", max_tokens.1, config.max_tokens_limit)));
    }
    let stop = match v.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_str().map(String::from).ok_or_else(|| ApiError::bad(format!("stop[{i}]"), "must be a string"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(ApiError::bad("stop", "must be a string or an array of strings")),
    };
    if stop.len() > MAX_STOP {
        return Err(ApiError::bad("stop", format!("at most {MAX_STOP} stop strings")));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::bad("stop", "a stop string is empty"));
    }
    let seed = match v.get("seed") {
        None | Some(Value::Null) => {
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or_default()
        }
        Some(s) => match (s.as_u64(), s.as_i64()) {
            (Some(u), _) => u,
            (None, Some(i)) => i as u64,
            _ => return Err(ApiError::bad("seed", "must be an integer")),
        },
    };
    let n = integer(v, "n")?.unwrap_or(1);
    if n == 0 || n > MAX_N as u64 {
        return Err(ApiError::bad("n", format!("{n} is not in 1..={MAX_N}")));
    }
    let tools = match v.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().enumerate().map(|(i, t)| parse_tool(i, t)).collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(ApiError::bad("tools", "must be an array of tool objects")),
    };
    let sampling =
        Sampling { temperature, top_p, max_new_tokens: max_tokens.1 as usize, stop, eos_token_ids: Vec::new(), seed };
    Ok(ChatRequest { messages, tools, sampling, n: n as usize })
}

fn number(v: &Map<String, Value>, key: &str, default: f64) -> Result<f64, ApiError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x.as_f64().ok_or_else(|| ApiError::bad(key, "must be a number")),
    }
}

fn integer(v: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x.as_u64().map(Some).ok_or_else(|| ApiError::bad(key, "must be a non-negative integer")),
    }
}

fn parse_message(i: usize, m: &Value) -> Result<Message, ApiError> {
    let field = |f: &str| format!("messages[{i}].{f}");
    let Some(m) = m.as_object() else {
        return Err(ApiError::bad(format!("messages[{i}]"), "must be an object with `role` and `content`"));
    };
    let role = match m.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool") => Role::Tool,
        Some(other) => {
            return Err(ApiError::bad(
                field("role"),
                format!("{other:?} is not one of system, developer, user, assistant, tool"),
            ))
        }
        None => return Err(ApiError::bad(field("role"), "is required and must be a string")),
    };
    let content = match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        // An assistant turn that only calls tools has no content.
        None | Some(Value::Null) if role == Role::Assistant => String::new(),
        None | Some(Value::Null) => return Err(ApiError::bad(field("content"), "is required")),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => {
                        return Err(ApiError::bad(
                            format!("messages[{i}].content[{j}]"),
                            "only {\"type\": \"text\", \"text\": ...} parts are supported",
                        ))
                    }
                }
            }
            text
        }
        Some(_) => return Err(ApiError::bad(field("content"), "must be a string or an array of text parts")),
    };
    let mut msg = Message::new(role, content);
    if let Some(name) = m.get("name").and_then(Value::as_str) {
        msg.name = Some(name.to_string());
    }
    if let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null()) {
        let Some(calls) = calls.as_array() else {
            return Err(ApiError::bad(field("tool_calls"), "must be an array"));
        };
        for (j, c) in calls.iter().enumerate() {
            let f = c.get("function");
            let name = f.and_then(|f| f.get("name")).and_then(Value::as_str);
            let Some(name) = name else {
                return Err(ApiError::bad(format!("messages[{i}].tool_calls[{j}].function.name"), "is required"));
            };
            // OpenAI sends arguments as a JSON string; templates want the object.
            let arguments = match f.and_then(|f| f.get("arguments")) {
                Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
                Some(v) => v.clone(),
                None => json!({}),
            };
            msg.tool_calls.push(hz_chat::ToolCall { name: name.to_string(), arguments });
        }
    }
    Ok(msg)
}

fn parse_tool(i: usize, t: &Value) -> Result<Tool, ApiError> {
    let f = t.get("function");
    let Some(name) = f.and_then(|f| f.get("name")).and_then(Value::as_str) else {
        return Err(ApiError::bad(format!("tools[{i}].function.name"), "is required and must be a string"));
    };
    let description = f.and_then(|f| f.get("description")).and_then(Value::as_str).unwrap_or_default();
    let parameters = f.and_then(|f| f.get("parameters")).cloned().unwrap_or_else(|| json!({"type": "object"}));
    Ok(Tool::new(name, description, parameters))
}

fn chat_completion(state: &State, body: &Value) -> Result<Value, ApiError> {
    let empty = Map::new();
    let obj = body.as_object().unwrap_or(&empty);
    if let Some(m) = obj.get("model").filter(|m| !m.is_null() && !m.is_string()) {
        return Err(ApiError::bad("model", format!("must be a string, not {m}")));
    }
    let req = parse_request(obj, &state.config)?;
    let engine =
        state.engine.lock().map_err(|_| ApiError::status(500, "server_error", "the model lock is poisoned"))?;
    let prompt = engine.chat.prompt_ids(&req.messages, &req.tools).map_err(|e| match e {
        hz_chat::ChatError::Raised(_) | hz_chat::ChatError::Conversation(_) => {
            ApiError::bad("messages", format!("the chat template refused them: {e}"))
        }
        other => ApiError::status(500, "server_error", format!("rendering the chat template: {other}")),
    })?;
    let mut sampling = req.sampling.clone();
    sampling.eos_token_ids = engine.chat.stop_ids();
    let prompts = vec![prompt.clone(); req.n];
    let completions =
        generate(&engine.model, engine.chat.tokenizer(), &prompts, &sampling, Fwd::POLICY).map_err(|e| match e {
            LlmError::Input(m) => ApiError::bad("messages", m),
            other => ApiError::status(500, "server_error", format!("generation failed: {other}")),
        })?;
    drop(engine);
    let completion_tokens: usize = completions.iter().map(|c| c.tokens.len()).sum();
    let choices: Vec<Value> = completions
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let finish = match c.finish {
                Finish::Eos | Finish::Stop(_) => "stop",
                Finish::Length => "length",
            };
            json!({
                "index": i,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": null,
                "finish_reason": finish,
            })
        })
        .collect();
    let model = &state.config.model_name;
    let n = state.counter.fetch_add(1, Ordering::Relaxed);
    Ok(json!({
        "id": format!("chatcmpl-{:x}{n:06x}", now()),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt.len(),
            "completion_tokens": completion_tokens,
            "total_tokens": prompt.len() + completion_tokens,
        },
        "system_fingerprint": format!("hz-serve-{}", env!("CARGO_PKG_VERSION")),
    }))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}
