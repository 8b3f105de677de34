//! The AI overseer: a reward provider that judges an agent's output against a rubric.
//! This module has the trait and a provider for OpenAI-compatible chat endpoints
//! (OpenRouter, Groq, the 0G compute broker, a local `hz serve`) with timeouts, bounded
//! retries and one re-ask when the judge's reply is not a verdict; [`CachedProvider`] answers
//! identical judgements from memory or SQLite.

mod cache;

pub use cache::{
    cache_key, CacheError, CacheStats, CachedProvider, JudgementStore, SqliteJudgementStore, DEFAULT_CAPACITY,
};

use hz_core::OverseerConfig;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Version of the prompt [`OpenAiCompatible`] sends. Part of the cache key: bump it whenever
/// the system prompt or the message layout changes, so old judgements are not reused.
pub const PROMPT_VERSION: u32 = 1;

/// Environment variable (and keychain entry) of the API key when nothing more specific applies.
pub const GENERIC_KEY_NAME: &str = "HZ_OVERSEER_API_KEY";

/// What the judge is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeRequest {
    /// The rubric, already rendered.
    pub rubric: String,
    /// What is being judged (the agent's answer, explanation, reply...).
    pub subject: String,
    /// The task the agent was given, for context.
    pub task: Value,
}

/// The judge's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// In `[0, 1]`.
    pub score: f64,
    pub rationale: String,
}

/// What makes two judges the same judge: equal identities given equal requests are expected
/// to give equal judgements, which is what lets [`CachedProvider`] reuse them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeIdentity {
    pub provider: String,
    pub base_url: String,
    pub model: String,
    pub prompt_version: u32,
}

/// Why a judge's reply is not a verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}; the reply began {snippet:?}")]
pub struct Nonsense {
    /// What was wrong, e.g. "no numeric `score`".
    pub problem: String,
    /// The start of the reply (at most 200 characters).
    pub snippet: String,
}

impl Nonsense {
    fn new(problem: impl Into<String>, reply: &str) -> Self {
        Self { problem: problem.into(), snippet: truncate(reply) }
    }
}

/// Why a judgement could not be had. Every variant names the endpoint or the judge, and how
/// many requests were made, so a log line says which overseer to look at.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OverseerError {
    #[error("overseer endpoint {endpoint} unreachable after {attempts} attempt(s): {reason}")]
    Transport { endpoint: String, attempts: u32, reason: String },
    #[error("overseer endpoint {endpoint} timed out after {attempts} attempt(s): the {phase} timeout of {limit_ms} ms passed")]
    Timeout {
        endpoint: String,
        attempts: u32,
        /// `connect` (DNS, TCP, TLS) or `overall` (the whole request).
        phase: &'static str,
        limit_ms: u64,
    },
    #[error("overseer endpoint {endpoint} answered HTTP {status} after {attempts} attempt(s){}: {body}",
        retry_after_ms.map(|ms| format!(" (it asked to retry after {ms} ms, more than the configured retry_max_delay_ms)")).unwrap_or_default())]
    Status {
        endpoint: String,
        attempts: u32,
        status: u16,
        /// The start of the response body.
        body: String,
        /// Set when the retries stopped because `Retry-After` asked for a longer wait than allowed.
        retry_after_ms: Option<u64>,
    },
    #[error("judge {judge} answered nonsense after {attempts} attempt(s): {problem}; the reply began {snippet:?}")]
    Nonsense { judge: String, attempts: u32, problem: String, snippet: String },
    #[error("overseer endpoint {endpoint}: {reason}")]
    Config { endpoint: String, reason: String },
    #[error("overseer cache: {0}")]
    Cache(String),
}

/// Anything that turns a rubric and a subject into a score.
pub trait RewardProvider: Send + Sync {
    /// A short name recorded in `info.rewards` (`openai:<model>`).
    fn name(&self) -> String;
    fn judge(&self, req: &JudgeRequest) -> Result<Judgement, OverseerError>;
    /// What identifies this judge for caching. The default is the name alone; providers with
    /// an endpoint and a model should say so.
    fn identity(&self) -> JudgeIdentity {
        JudgeIdentity { provider: self.name(), base_url: String::new(), model: String::new(), prompt_version: 0 }
    }
}

impl<P: RewardProvider + ?Sized> RewardProvider for Arc<P> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn judge(&self, req: &JudgeRequest) -> Result<Judgement, OverseerError> {
        (**self).judge(req)
    }
    fn identity(&self) -> JudgeIdentity {
        (**self).identity()
    }
}

/// The names to look the API key up under, in order, in the environment and then in the OS
/// keychain: the configured `key_name`, or else the provider's usual variable chosen by the
/// endpoint's host (`OPENROUTER_API_KEY`, `GROQ_API_KEY`) followed by [`GENERIC_KEY_NAME`].
pub fn api_key_names(config: &OverseerConfig) -> Vec<String> {
    if let Some(name) = config.key_name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        return vec![name.to_string()];
    }
    let host = url_host(&config.base_url).to_ascii_lowercase();
    let is = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    let specific = if is("openrouter.ai") {
        Some("OPENROUTER_API_KEY")
    } else if is("groq.com") {
        Some("GROQ_API_KEY")
    } else {
        None
    };
    specific.into_iter().chain([GENERIC_KEY_NAME]).map(String::from).collect()
}

/// Whether the endpoint is on this machine (a local `hz serve` needs no key).
pub fn is_loopback(base_url: &str) -> bool {
    let host = url_host(base_url);
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    authority.split(':').next().unwrap_or_default()
}

type Sleep = Arc<dyn Fn(Duration) + Send + Sync>;

/// A provider for any endpoint speaking OpenAI's `POST /chat/completions`.
pub struct OpenAiCompatible {
    config: OverseerConfig,
    api_key: Option<String>,
    agent: ureq::Agent,
    endpoint: String,
    sleep: Sleep,
}

/// One failed request, before the attempt count is known.
enum Failure {
    Config(String),
    Transport { reason: String, retry: bool },
    Timeout { phase: &'static str, limit_ms: u64 },
    Status { status: u16, body: String, retry_after: Option<Duration> },
    Nonsense { nonsense: Nonsense, content: Option<String> },
}

impl OpenAiCompatible {
    pub fn new(config: OverseerConfig, api_key: Option<String>) -> Self {
        let overall = Duration::from_millis(config.timeout_ms.max(1));
        let connect = Duration::from_millis(config.connect_timeout_ms.clamp(1, config.timeout_ms.max(1)));
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(overall))
            .timeout_connect(Some(connect))
            .http_status_as_error(false)
            .build()
            .into();
        let endpoint = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Self { config, api_key, agent, endpoint, sleep: Arc::new(std::thread::sleep) }
    }

    /// Replace how the provider waits between attempts (tests record the waits instead of
    /// sleeping through them).
    pub fn with_sleep(mut self, sleep: impl Fn(Duration) + Send + Sync + 'static) -> Self {
        self.sleep = Arc::new(sleep);
        self
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn messages(req: &JudgeRequest) -> Vec<Value> {
        let system = "You are a strict, fair judge of an AI agent's work. Score the SUBJECT \
                      against the RUBRIC. Reply with only a JSON object: \
                      {\"score\": <number from 0 to 1>, \"rationale\": \"<one or two sentences>\"}.";
        let user = format!(
            "RUBRIC:\n{}\n\nTASK:\n{}\n\nSUBJECT:\n{}",
            req.rubric,
            serde_json::to_string_pretty(&req.task).unwrap_or_default(),
            req.subject
        );
        vec![json!({"role": "system", "content": system}), json!({"role": "user", "content": user})]
    }

    fn judge_label(&self) -> String {
        format!("{} at {}", self.name(), self.config.base_url)
    }

    /// One request; on success, the assistant message's content.
    fn call_once(&self, messages: &[Value]) -> Result<String, Failure> {
        let body = json!({
            "model": self.config.model,
            "messages": messages,
            "temperature": 0,
            "response_format": {"type": "json_object"},
        });
        let mut call = self.agent.post(&self.endpoint).header("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            // Said here, or the HTTP layer refuses the header with a message about headers.
            if !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Failure::Config(
                    "the API key holds characters an HTTP header cannot carry (only visible ASCII, no spaces)".into(),
                ));
            }
            call = call.header("Authorization", &format!("Bearer {key}"));
        }
        let mut resp = call.send(body.to_string()).map_err(|e| self.transport_failure(e))?;
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers(), SystemTime::now());
        let text =
            resp.body_mut().with_config().limit(1 << 20).read_to_string().map_err(|e| self.transport_failure(e))?;
        if !(200..300).contains(&status) {
            return Err(Failure::Status { status, body: truncate(&text), retry_after });
        }
        let reply: Value = serde_json::from_str(&text).map_err(|e| Failure::Nonsense {
            nonsense: Nonsense::new(format!("the response is not JSON ({e})"), &text),
            content: None,
        })?;
        let content =
            reply.pointer("/choices/0/message/content").and_then(Value::as_str).ok_or_else(|| Failure::Nonsense {
                nonsense: Nonsense::new("the response has no choices[0].message.content", &text),
                content: None,
            })?;
        Ok(content.to_string())
    }

    fn transport_failure(&self, e: ureq::Error) -> Failure {
        match e {
            ureq::Error::Timeout(t) => match t {
                ureq::Timeout::Connect | ureq::Timeout::Resolve => Failure::Timeout {
                    phase: "connect",
                    limit_ms: self.config.connect_timeout_ms.min(self.config.timeout_ms),
                },
                _ => Failure::Timeout { phase: "overall", limit_ms: self.config.timeout_ms },
            },
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                Failure::Timeout { phase: "overall", limit_ms: self.config.timeout_ms }
            }
            // Failures of the network or the peer may pass; a bad URL or a refused TLS
            // setting will not.
            ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled => Failure::Transport { reason: e.to_string(), retry: true },
            other => Failure::Transport { reason: other.to_string(), retry: false },
        }
    }

    /// The wait before attempt `attempt + 1`: the server's `Retry-After` when it gave one,
    /// else exponential backoff with jitter (uniform in the upper half, so retries from many
    /// workers spread out but never shrink to nothing). `Err` carries a `Retry-After` that is
    /// longer than allowed.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Result<Duration, Duration> {
        let max = Duration::from_millis(self.config.retry_max_delay_ms);
        if let Some(wait) = retry_after {
            return if wait > max { Err(wait) } else { Ok(wait) };
        }
        let exp = self.config.retry_base_ms.saturating_mul(1u64 << (attempt - 1).min(30));
        let ceiling = exp.min(self.config.retry_max_delay_ms);
        let ms = if ceiling == 0 { 0 } else { rand::rng().random_range(ceiling / 2..=ceiling) };
        Ok(Duration::from_millis(ms))
    }

    fn error(&self, failure: Failure, attempts: u32, retry_refused: Option<Duration>) -> OverseerError {
        let endpoint = self.endpoint.clone();
        match failure {
            Failure::Config(reason) => OverseerError::Config { endpoint, reason },
            Failure::Transport { reason, .. } => OverseerError::Transport { endpoint, attempts, reason },
            Failure::Timeout { phase, limit_ms } => OverseerError::Timeout { endpoint, attempts, phase, limit_ms },
            Failure::Status { status, body, .. } => OverseerError::Status {
                endpoint,
                attempts,
                status,
                body,
                retry_after_ms: retry_refused.map(|d| d.as_millis() as u64),
            },
            Failure::Nonsense { nonsense, .. } => OverseerError::Nonsense {
                judge: self.judge_label(),
                attempts,
                problem: nonsense.problem,
                snippet: nonsense.snippet,
            },
        }
    }
}

impl RewardProvider for OpenAiCompatible {
    fn name(&self) -> String {
        format!("openai:{}", self.config.model)
    }

    fn identity(&self) -> JudgeIdentity {
        JudgeIdentity {
            provider: "openai".into(),
            base_url: self.config.base_url.trim_end_matches('/').to_string(),
            model: self.config.model.clone(),
            prompt_version: PROMPT_VERSION,
        }
    }

    fn judge(&self, req: &JudgeRequest) -> Result<Judgement, OverseerError> {
        let max_attempts = self.config.max_attempts.max(1);
        let mut messages = Self::messages(req);
        let mut reasked = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.call_once(&messages).and_then(|content| {
                parse_verdict(&content).map_err(|nonsense| Failure::Nonsense { nonsense, content: Some(content) })
            }) {
                Ok(judgement) => return Ok(judgement),
                Err(f) => f,
            };
            if attempt >= max_attempts {
                return Err(self.error(failure, attempt, None));
            }
            match &failure {
                Failure::Nonsense { nonsense, content } if self.config.reask_on_nonsense && !reasked => {
                    tracing::warn!(judge = %self.judge_label(), problem = %nonsense, "judge answered nonsense; asking once more");
                    reasked = true;
                    // Show the judge its own reply and what was wrong with it: a plain repeat
                    // at temperature 0 would most likely get the same reply.
                    if let Some(content) = content {
                        messages.push(json!({"role": "assistant", "content": content}));
                        messages.push(json!({"role": "user", "content": format!(
                            "That reply cannot be used: {}. Reply with only the JSON object \
                             {{\"score\": <number from 0 to 1>, \"rationale\": \"<one or two sentences>\"}}.",
                            nonsense.problem)}));
                    }
                }
                Failure::Transport { retry: true, .. } | Failure::Timeout { .. } => {
                    let wait = self.delay(attempt, None).unwrap_or_default();
                    tracing::warn!(endpoint = %self.endpoint, attempt, wait_ms = wait.as_millis() as u64, "overseer request failed; retrying");
                    (self.sleep)(wait);
                }
                Failure::Status { status, retry_after, .. } if *status == 429 || *status >= 500 => {
                    match self.delay(attempt, *retry_after) {
                        Ok(wait) => {
                            tracing::warn!(endpoint = %self.endpoint, status, attempt, wait_ms = wait.as_millis() as u64, "overseer busy; retrying");
                            (self.sleep)(wait);
                        }
                        Err(too_long) => return Err(self.error(failure, attempt, Some(too_long))),
                    }
                }
                _ => return Err(self.error(failure, attempt, None)),
            }
        }
    }
}

/// The wait a response asks for: `retry-after-ms` (OpenAI's, milliseconds), else
/// `Retry-After` as seconds or as an HTTP date (a date in the past means now).
fn retry_after(headers: &ureq::http::HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) =
        get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()).filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    parse_retry_after(get("retry-after")?, now)
}

/// `Retry-After: <seconds>` or `Retry-After: <HTTP-date>`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// Pull `{score, rationale}` out of a judge's message, tolerating code fences and prose
/// around the JSON object, but not a missing or out-of-range score.
pub fn parse_verdict(content: &str) -> Result<Judgement, Nonsense> {
    let (Some(s), Some(e)) = (content.find('{'), content.rfind('}')) else {
        return Err(Nonsense::new("no JSON object", content));
    };
    if e < s {
        return Err(Nonsense::new("no JSON object", content));
    }
    let v: Value = serde_json::from_str(&content[s..=e])
        .map_err(|err| Nonsense::new(format!("the JSON object does not parse ({err})"), content))?;
    let score = match v.get("score") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(f64::NAN),
        _ => return Err(Nonsense::new("no numeric `score`", content)),
    };
    if !(0.0..=1.0).contains(&score) {
        return Err(Nonsense::new(format!("`score` {score} is outside [0, 1]"), content));
    }
    let rationale = v.get("rationale").and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(Judgement { score, rationale })
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_parse_or_fail_clearly() {
        let j = parse_verdict("```json\n{\"score\": 0.75, \"rationale\": \"ok\"}\n```").unwrap();
        assert_eq!(j.score, 0.75);
        assert_eq!(parse_verdict("{\"score\": \"1\"}").unwrap().score, 1.0);
        for bad in ["I think it's fine", "{\"score\": 7}", "{\"rationale\": \"x\"}", "{score: 1}", "}{"] {
            let err = parse_verdict(bad).unwrap_err();
            assert_eq!(err.snippet, bad);
        }
        assert_eq!(parse_verdict("{\"score\": 7}").unwrap_err().problem, "`score` 7 is outside [0, 1]");
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0.25 ", now), Some(Duration::from_millis(250)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn key_names_follow_the_host_unless_configured() {
        let names = |url: &str| api_key_names(&OverseerConfig::new(url, "m"));
        assert_eq!(names("https://openrouter.ai/api/v1"), ["OPENROUTER_API_KEY", GENERIC_KEY_NAME]);
        assert_eq!(names("https://api.groq.com/openai/v1"), ["GROQ_API_KEY", GENERIC_KEY_NAME]);
        assert_eq!(names("http://127.0.0.1:8080/v1"), [GENERIC_KEY_NAME]);
        assert_eq!(names("https://notopenrouter.ai/v1"), [GENERIC_KEY_NAME]);
        let cfg = OverseerConfig { key_name: Some("ZG_BROKER_KEY".into()), ..OverseerConfig::new("https://x/v1", "m") };
        assert_eq!(api_key_names(&cfg), ["ZG_BROKER_KEY"]);
        assert!(is_loopback("http://127.0.0.1:8080/v1") && is_loopback("http://[::1]:1/v1"));
        assert!(is_loopback("http://localhost/v1") && !is_loopback("https://openrouter.ai/api/v1"));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let cfg =
            OverseerConfig { retry_base_ms: 100, retry_max_delay_ms: 300, ..OverseerConfig::new("http://x/v1", "m") };
        let p = OpenAiCompatible::new(cfg, None);
        for _ in 0..50 {
            let d = |n| p.delay(n, None).unwrap().as_millis();
            assert!((50..=100).contains(&d(1)));
            assert!((100..=200).contains(&d(2)));
            assert!((150..=300).contains(&d(3)));
            assert!((150..=300).contains(&d(40)));
        }
        assert_eq!(p.delay(1, Some(Duration::from_millis(250))), Ok(Duration::from_millis(250)));
        assert_eq!(p.delay(1, Some(Duration::from_secs(2))), Err(Duration::from_secs(2)));
    }
}
