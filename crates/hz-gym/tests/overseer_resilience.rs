//! The overseer against a real HTTP server on 127.0.0.1 speaking OpenAI's
//! `/v1/chat/completions`: retries (and where they stop), `Retry-After`, nonsense, timeouts
//! and the judgement cache, each observed by counting the requests the server saw.

use hz_core::OverseerConfig;
use hz_gym::overseer::{
    CachedProvider, JudgeRequest, OpenAiCompatible, OverseerError, RewardProvider, SqliteJudgementStore,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One scripted answer: status, content of the assistant message (or a raw body), headers,
/// and a delay before answering.
#[derive(Clone)]
struct Reply {
    status: u16,
    body: String,
    headers: Vec<(&'static str, String)>,
    delay: Duration,
}

fn verdict(score: f64, rationale: &str) -> Reply {
    let content = json!({"score": score, "rationale": rationale}).to_string();
    Reply { status: 200, body: completion(&content), headers: vec![], delay: Duration::ZERO }
}

fn says(content: &str) -> Reply {
    Reply { status: 200, body: completion(content), headers: vec![], delay: Duration::ZERO }
}

fn status(code: u16, body: &str) -> Reply {
    Reply { status: code, body: body.into(), headers: vec![], delay: Duration::ZERO }
}

fn completion(content: &str) -> String {
    json!({"id": "x", "object": "chat.completion", "model": "judge-small",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]})
    .to_string()
}

/// A loopback chat-completions server answering with `script` in order (the last reply
/// repeats). Each request's body is kept, so tests count and read them.
struct Judge {
    url: String,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl Judge {
    fn start(script: Vec<Reply>) -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", server.server_addr().to_ip().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        // One thread per request, so a slow reply does not hold up concurrent ones.
        thread::spawn(move || {
            for mut req in server.incoming_requests() {
                assert_eq!(req.url(), "/v1/chat/completions");
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let reply = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(serde_json::from_str(&body).unwrap_or(Value::Null));
                    script[(seen.len() - 1).min(script.len() - 1)].clone()
                };
                thread::spawn(move || {
                    thread::sleep(reply.delay);
                    let mut resp = tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
                    resp.add_header(tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap());
                    for (k, v) in reply.headers {
                        resp.add_header(tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap());
                    }
                    let _ = req.respond(resp);
                });
            }
        });
        Self { url, requests }
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    fn config(&self) -> OverseerConfig {
        OverseerConfig {
            timeout_ms: 5_000,
            retry_base_ms: 1,
            max_attempts: 3,
            ..OverseerConfig::new(&self.url, "judge-small")
        }
    }

    fn provider(&self) -> OpenAiCompatible {
        OpenAiCompatible::new(self.config(), None)
    }
}

fn req(subject: &str) -> JudgeRequest {
    JudgeRequest { rubric: "give a reason".into(), subject: subject.into(), task: json!({"id": "t"}) }
}

/// Records the waits between attempts instead of sleeping through them.
fn recorder() -> (Arc<Mutex<Vec<Duration>>>, impl Fn(Duration) + Send + Sync + 'static) {
    let waits = Arc::new(Mutex::new(Vec::new()));
    let w = waits.clone();
    (waits, move |d| w.lock().unwrap().push(d))
}

#[test]
fn server_errors_are_retried_until_an_answer_comes() {
    let judge = Judge::start(vec![status(503, "busy"), status(502, "bad gateway"), verdict(0.8, "fine")]);
    let (waits, sleep) = recorder();
    let j = judge.provider().with_sleep(sleep).judge(&req("a")).unwrap();
    assert_eq!(j.score, 0.8);
    assert_eq!(judge.count(), 3);
    // Backoff grows: base 1 ms, jitter in the upper half of 1 ms then 2 ms.
    let waits = waits.lock().unwrap().clone();
    assert_eq!(waits.len(), 2);
    assert!(waits[0] <= Duration::from_millis(1) && waits[1] >= Duration::from_millis(1), "{waits:?}");
}

#[test]
fn retries_stop_at_max_attempts_with_an_error_naming_the_endpoint() {
    let judge = Judge::start(vec![status(500, "boom")]);
    let err = judge.provider().judge(&req("a")).unwrap_err();
    assert_eq!(judge.count(), 3);
    match &err {
        OverseerError::Status { status: 500, attempts: 3, body, endpoint, .. } => {
            assert_eq!(body, "boom");
            assert_eq!(endpoint, &format!("{}/chat/completions", judge.url));
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&judge.url) && msg.contains("HTTP 500") && msg.contains("3 attempt(s)"), "{msg}");
}

#[test]
fn other_client_errors_are_not_retried() {
    for code in [400, 401, 404, 422] {
        let judge = Judge::start(vec![status(code, "no"), verdict(1.0, "never reached")]);
        let err = judge.provider().judge(&req("a")).unwrap_err();
        assert_eq!(judge.count(), 1, "HTTP {code}");
        assert!(matches!(err, OverseerError::Status { status, attempts: 1, .. } if status == code), "{err:?}");
    }
}

#[test]
fn retry_after_seconds_is_honoured() {
    let mut busy = status(429, "slow down");
    busy.headers.push(("Retry-After", "7".into()));
    let judge = Judge::start(vec![busy, verdict(0.5, "ok")]);
    let (waits, sleep) = recorder();
    let cfg = OverseerConfig { retry_base_ms: 1, ..judge.config() };
    let j = OpenAiCompatible::new(cfg, None).with_sleep(sleep).judge(&req("a")).unwrap();
    assert_eq!(j.score, 0.5);
    assert_eq!(judge.count(), 2);
    assert_eq!(*waits.lock().unwrap(), vec![Duration::from_secs(7)]);
}

#[test]
fn retry_after_ms_is_waited_for_real() {
    let mut busy = status(429, "slow down");
    busy.headers.push(("retry-after-ms", "120".into()));
    let judge = Judge::start(vec![busy, verdict(0.5, "ok")]);
    let started = Instant::now();
    assert_eq!(judge.provider().judge(&req("a")).unwrap().score, 0.5);
    assert!(started.elapsed() >= Duration::from_millis(120), "{:?}", started.elapsed());
    assert_eq!(judge.count(), 2);
}

#[test]
fn a_retry_after_longer_than_allowed_ends_the_retries() {
    let mut busy = status(429, "quota");
    busy.headers.push(("Retry-After", "3600".into()));
    let judge = Judge::start(vec![busy]);
    let (waits, sleep) = recorder();
    let err = judge.provider().with_sleep(sleep).judge(&req("a")).unwrap_err();
    assert_eq!(judge.count(), 1);
    assert!(waits.lock().unwrap().is_empty());
    assert!(matches!(err, OverseerError::Status { status: 429, retry_after_ms: Some(3_600_000), .. }), "{err:?}");
    assert!(err.to_string().contains("retry after 3600000 ms"), "{err}");
}

#[test]
fn dropped_connections_are_retried_then_reported() {
    // Accepts and closes at once: a transport error on every attempt.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    thread::spawn(move || {
        for s in listener.incoming() {
            a.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    let cfg = OverseerConfig { retry_base_ms: 1, max_attempts: 3, ..OverseerConfig::new(&url, "judge-small") };
    let err = OpenAiCompatible::new(cfg, None).judge(&req("a")).unwrap_err();
    assert!(matches!(&err, OverseerError::Transport { attempts: 3, .. }), "{err:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    assert!(err.to_string().contains(&url), "{err}");
}

#[test]
fn nonsense_is_re_asked_once_then_reported_with_judge_problem_and_snippet() {
    let judge = Judge::start(vec![says("I'd rather not say.")]);
    let err = judge.provider().judge(&req("a")).unwrap_err();
    // One re-ask, counted in the attempts (3 allowed, 2 used: nonsense is not retried further).
    assert_eq!(judge.count(), 2);
    match &err {
        OverseerError::Nonsense { judge: name, attempts: 2, problem, snippet } => {
            assert_eq!(name, &format!("openai:judge-small at {}", judge.url));
            assert_eq!(problem, "no JSON object");
            assert_eq!(snippet, "I'd rather not say.");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "judge openai:judge-small at {} answered nonsense after 2 attempt(s): no JSON object; \
             the reply began \"I'd rather not say.\"",
            judge.url
        )
    );
    // The re-ask shows the judge its reply and what was wrong with it.
    let second = judge.requests.lock().unwrap()[1].clone();
    let msgs = second["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 4);
    assert_eq!(msgs[2]["content"], "I'd rather not say.");
    assert!(msgs[3]["content"].as_str().unwrap().contains("no JSON object"));
}

#[test]
fn a_re_ask_can_rescue_the_judgement_and_can_be_turned_off() {
    let judge = Judge::start(vec![says("{\"score\": 9}"), verdict(0.9, "better")]);
    assert_eq!(judge.provider().judge(&req("a")).unwrap().score, 0.9);
    assert_eq!(judge.count(), 2);

    let judge = Judge::start(vec![says("{\"score\": 9}"), verdict(0.9, "better")]);
    let cfg = OverseerConfig { reask_on_nonsense: false, ..judge.config() };
    let err = OpenAiCompatible::new(cfg, None).judge(&req("a")).unwrap_err();
    assert_eq!(judge.count(), 1);
    assert!(
        matches!(&err, OverseerError::Nonsense { problem, .. } if problem == "`score` 9 is outside [0, 1]"),
        "{err:?}"
    );

    // A body that is not a chat completion at all is nonsense too, with the body quoted.
    let judge = Judge::start(vec![status(200, "<html>gateway</html>")]);
    let cfg = OverseerConfig { max_attempts: 1, ..judge.config() };
    let err = OpenAiCompatible::new(cfg, None).judge(&req("a")).unwrap_err();
    assert!(matches!(&err, OverseerError::Nonsense { snippet, .. } if snippet == "<html>gateway</html>"), "{err:?}");
}

#[test]
fn a_slow_judge_hits_the_overall_timeout() {
    let mut slow = verdict(1.0, "late");
    slow.delay = Duration::from_millis(400);
    let judge = Judge::start(vec![slow]);
    let cfg = OverseerConfig { timeout_ms: 80, connect_timeout_ms: 50, max_attempts: 2, ..judge.config() };
    let started = Instant::now();
    let err = OpenAiCompatible::new(cfg, None).judge(&req("a")).unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(350), "{:?}", started.elapsed());
    // Timeouts are retried like other transport failures.
    assert_eq!(judge.count(), 2);
    match &err {
        OverseerError::Timeout { phase: "overall", limit_ms: 80, attempts: 2, endpoint } => {
            assert!(endpoint.starts_with(&judge.url))
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&judge.url) && msg.contains("overall timeout of 80 ms"), "{msg}");
}

#[test]
fn identical_judgements_are_asked_once() {
    let judge = Judge::start(vec![verdict(0.7, "first"), verdict(0.1, "second")]);
    let cached = CachedProvider::new(judge.provider());
    let a = cached.judge(&req("same")).unwrap();
    let b = cached.judge(&req("same")).unwrap();
    assert_eq!((a.score, b.score), (0.7, 0.7));
    assert_eq!(judge.count(), 1);
    // Anything else in the request is another judgement.
    assert_eq!(cached.judge(&req("different")).unwrap().score, 0.1);
    assert_eq!(judge.count(), 2);
    let other_task = JudgeRequest { task: json!({"id": "u"}), ..req("same") };
    cached.judge(&other_task).unwrap();
    assert_eq!(judge.count(), 3);
    assert_eq!((cached.stats().hits, cached.stats().misses), (1, 3));
}

#[test]
fn errors_are_not_cached() {
    let judge = Judge::start(vec![status(400, "bad"), verdict(0.6, "ok")]);
    let cached = CachedProvider::new(judge.provider());
    assert!(cached.judge(&req("x")).is_err());
    assert_eq!(cached.judge(&req("x")).unwrap().score, 0.6);
    assert_eq!(cached.judge(&req("x")).unwrap().score, 0.6);
    assert_eq!(judge.count(), 2);
}

#[test]
fn identical_requests_in_flight_share_one_call() {
    let mut slow = verdict(0.4, "slow");
    slow.delay = Duration::from_millis(150);
    let judge = Judge::start(vec![slow]);
    let cached = Arc::new(CachedProvider::new(judge.provider()));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let c = cached.clone();
            thread::spawn(move || c.judge(&req("group member")).unwrap().score)
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 0.4);
    }
    assert_eq!(judge.count(), 1);
}

#[test]
fn the_sqlite_cache_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("judgements.sqlite");
    let judge = Judge::start(vec![verdict(0.25, "from the server")]);
    {
        let cached = CachedProvider::new(judge.provider()).with_store(SqliteJudgementStore::open(&path).unwrap());
        assert_eq!(cached.judge(&req("kept")).unwrap().score, 0.25);
    }
    assert_eq!(judge.count(), 1);
    let store = SqliteJudgementStore::open(&path).unwrap();
    assert_eq!(store.len().unwrap(), 1);
    let cached = CachedProvider::new(judge.provider()).with_store(store);
    let j = cached.judge(&req("kept")).unwrap();
    assert_eq!((j.score, j.rationale.as_str()), (0.25, "from the server"));
    assert_eq!(judge.count(), 1, "answered from SQLite without a request");

    // Another model behind the same endpoint is another judge.
    let cfg = OverseerConfig { model: "judge-large".into(), ..judge.config() };
    let other =
        CachedProvider::new(OpenAiCompatible::new(cfg, None)).with_store(SqliteJudgementStore::open(&path).unwrap());
    other.judge(&req("kept")).unwrap();
    assert_eq!(judge.count(), 2);
}

#[test]
fn a_key_no_header_can_carry_is_refused_before_any_request() {
    let judge = Judge::start(vec![verdict(1.0, "never reached")]);
    let err = OpenAiCompatible::new(judge.config(), Some("sk-kéy".into())).judge(&req("a")).unwrap_err();
    assert!(matches!(&err, OverseerError::Config { reason, .. } if reason.contains("API key")), "{err:?}");
    assert_eq!(judge.count(), 0);
}
