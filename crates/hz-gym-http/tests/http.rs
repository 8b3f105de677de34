//! The HTTP face on loopback: same trajectories as in-process, JSON errors for bad input,
//! idle expiry, session limits, concurrency.

use hz_gym::policy::RandomPolicy;
use hz_gym::{Env, Gym, ResetOptions};
use hz_gym_http::{AppState, ServerConfig};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn template(name: &str) -> Arc<Gym> {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../gym-templates/{name}/{name}.gym.json"));
    Gym::load(&p).unwrap()
}

/// Start a server on a free loopback port; it stops when the returned sender drops.
async fn start(gym: Arc<Gym>, config: ServerConfig) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = AppState::new(gym, Default::default(), config);
    tokio::spawn(hz_gym_http::serve(listener, app, async move {
        let _ = rx.await;
    }));
    (format!("http://{addr}"), tx)
}

async fn post(c: &reqwest::Client, url: String, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let r = c.post(url).header("content-type", "application/json").body(body).send().await.unwrap();
    let status = r.status().as_u16();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trajectories_match_the_in_process_runtime() {
    let gym = template("sql-analyst");
    let (base, _stop) = start(gym.clone(), ServerConfig::default()).await;
    let c = reqwest::Client::new();
    for seed in 0..5u64 {
        let mut env = Env::new(gym.clone(), Default::default());
        let (obs, info) = env.reset(seed, &ResetOptions::default()).unwrap();
        let (s, r) = post(&c, format!("{base}/reset"), json!({"seed": seed}).to_string()).await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["observation"], obs);
        assert_eq!(r["info"], info);
        let sid = r["session_id"].as_str().unwrap().to_string();
        let mut policy = RandomPolicy::new(seed);
        while !env.done() {
            let action = policy.action(&gym.compiled().actions);
            let want = env.step(&action).unwrap();
            let (s, got) =
                post(&c, format!("{base}/step"), json!({"session_id": sid, "action": action}).to_string()).await;
            assert_eq!(s, 200, "{got}");
            assert_eq!(got["observation"], want.observation);
            assert_eq!(got["reward"].as_f64().unwrap(), want.reward);
            assert_eq!(
                (got["terminated"].as_bool(), got["truncated"].as_bool()),
                (Some(want.terminated), Some(want.truncated))
            );
            assert_eq!(got["info"], want.info);
        }
        // The episode is over: another step is a conflict, not a crash.
        let (s, r) = post(&c, format!("{base}/step"), json!({"session_id": sid, "action": "x"}).to_string()).await;
        assert_eq!((s, r["error"]["code"].as_str()), (409, Some("episode_over")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors() {
    let (base, _stop) = start(template("email-triage"), ServerConfig { max_body: 4096, ..Default::default() }).await;
    let c = reqwest::Client::new();
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("/reset", "{not json".into(), 400, "request body"),
        ("/reset", json!({"seed": -1}).to_string(), 400, "seed"),
        ("/reset", json!({"sede": 1}).to_string(), 400, "unknown field `sede`"),
        ("/reset", json!({"options": {"task_id": "nope"}}).to_string(), 400, "no task \"nope\""),
        ("/step", json!({"action": "x"}).to_string(), 400, "missing field `session_id`"),
        ("/step", json!({"session_id": "abc", "action": "x"}).to_string(), 404, "no session"),
        ("/close", json!({"session_id": "abc"}).to_string(), 404, "no session"),
        ("/reset", "x".repeat(10_000), 413, ""),
        ("/teleport", "{}".into(), 404, "no such endpoint"),
    ];
    for (path, body, status, needle) in cases {
        let (s, v) = post(&c, format!("{base}{path}"), body).await;
        assert_eq!(s, status, "{path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap_or("").contains(needle), "{path}: {v}");
    }
    let r = c.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let spec: Value = c.get(format!("{base}/spec")).send().await.unwrap().json().await.unwrap();
    assert_eq!(spec["name"], "email-triage");
    assert_eq!(spec["action_space"]["mode"], "text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_and_limits_hold() {
    let config = ServerConfig { idle_timeout: Duration::from_millis(300), max_sessions: 3, ..Default::default() };
    let (base, _stop) = start(template("email-triage"), config).await;
    let c = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (s, r) = post(&c, format!("{base}/reset"), "{}").await;
        assert_eq!(s, 200);
        ids.push(r["session_id"].as_str().unwrap().to_string());
    }
    let (s, r) = post(&c, format!("{base}/reset"), "{}").await;
    assert_eq!((s, r["error"]["code"].as_str()), (503, Some("too_many_sessions")));
    // Closing frees a slot.
    let (s, _) = post(&c, format!("{base}/close"), json!({"session_id": ids[0]}).to_string()).await;
    assert_eq!(s, 200);
    let (s, _) = post(&c, format!("{base}/reset"), "{}").await;
    assert_eq!(s, 200);
    // Wait past the idle timeout (the reaper runs every 75 ms): all sessions are gone.
    let mut gone = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let h: Value = c.get(format!("{base}/healthz")).send().await.unwrap().json().await.unwrap();
        if h["sessions"] == 0 {
            gone = true;
            break;
        }
    }
    assert!(gone, "idle sessions were not dropped");
    let (s, r) = post(&c, format!("{base}/step"), json!({"session_id": ids[1], "action": "x"}).to_string()).await;
    assert_eq!((s, r["error"]["code"].as_str()), (404, Some("unknown_session")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_at_once() {
    let gym = template("customer-support");
    let (base, _stop) = start(gym.clone(), ServerConfig::default()).await;
    let c = reqwest::Client::new();
    let mut tasks = Vec::new();
    for seed in 0..64u64 {
        let (c, base, gym) = (c.clone(), base.clone(), gym.clone());
        tasks.push(tokio::spawn(async move {
            let (_, r) = post(&c, format!("{base}/reset"), json!({"seed": seed}).to_string()).await;
            let sid = r["session_id"].as_str().unwrap().to_string();
            let mut policy = RandomPolicy::new(seed);
            let mut total = 0.0;
            for _ in 0..gym.spec().max_steps {
                let a = policy.action(&gym.compiled().actions);
                let (s, r) =
                    post(&c, format!("{base}/step"), json!({"session_id": sid, "action": a}).to_string()).await;
                assert_eq!(s, 200, "{r}");
                total += r["reward"].as_f64().unwrap();
                if r["terminated"] == true || r["truncated"] == true {
                    break;
                }
            }
            (seed, total)
        }));
    }
    for t in tasks {
        let (seed, total) = t.await.unwrap();
        // Each session's return equals the same episode run in-process.
        let ep = hz_gym::check::random_episode(&gym, &Default::default(), seed).unwrap();
        assert!((ep.total_reward - total).abs() < 1e-9, "seed {seed}: {total} vs {}", ep.total_reward);
    }
}
