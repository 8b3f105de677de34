//! The AI overseer against a local server speaking OpenAI's chat-completions protocol, and
//! the network nodes (HTTP, MCP) against local servers, gated by the operator's policy.

mod support;

use hz_core::{NetworkPolicy, OverseerConfig};
use hz_gym::overseer::{JudgeRequest, OpenAiCompatible, OverseerError, RewardProvider};
use hz_gym::{Env, Gym, GymBundle, ResetOptions, RuntimeConfig};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::thread;

/// A loopback HTTP server answering each request with `reply(path, headers, body)`.
/// Serves until the test ends (the thread is detached; the socket closes with the process).
fn serve(
    reply: impl Fn(&str, &[(String, String)], &str) -> (u16, String, Vec<(String, String)>) + Send + 'static,
) -> String {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let addr = server.server_addr().to_ip().unwrap();
    thread::spawn(move || {
        for mut req in server.incoming_requests() {
            let mut body = String::new();
            let _ = req.as_reader().read_to_string(&mut body);
            let headers: Vec<(String, String)> =
                req.headers().iter().map(|h| (h.field.to_string().to_lowercase(), h.value.to_string())).collect();
            let (status, text, extra) = reply(req.url(), &headers, &body);
            let mut resp = tiny_http::Response::from_string(text).with_status_code(status);
            resp.add_header(tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap());
            for (k, v) in extra {
                resp.add_header(tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap());
            }
            let _ = req.respond(resp);
        }
    });
    format!("http://{addr}")
}

/// A judge that gives 0.9 when the subject mentions "because", else 0.1.
fn judge_server(seen_auth: Arc<Mutex<Vec<String>>>) -> String {
    serve(move |path, headers, body| {
        assert_eq!(path, "/v1/chat/completions");
        if let Some((_, v)) = headers.iter().find(|(k, _)| k == "authorization") {
            seen_auth.lock().unwrap().push(v.clone());
        }
        let req: Value = serde_json::from_str(body).unwrap();
        let user = req["messages"][1]["content"].as_str().unwrap_or_default();
        let content = if user.contains("NONSENSE") {
            "I'd rather not say.".to_string()
        } else {
            let score = if user.contains("because") { 0.9 } else { 0.1 };
            json!({"score": score, "rationale": format!("model {}", req["model"].as_str().unwrap_or("?"))}).to_string()
        };
        let resp = json!({"id": "x", "object": "chat.completion", "model": req["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]});
        (200, resp.to_string(), vec![])
    })
}

fn overseer_gym() -> Value {
    let mut g = support::counter_gym();
    let nodes = g["nodes"].as_array_mut().unwrap();
    nodes.push(
        json!({"id": "judge", "kind": "overseer", "rubric": "Reward explanations that give a reason.", "weight": 0.5,
                      "when": "action.tool == 'done'"}),
    );
    nodes[2]["tools"][1]["parameters"] = json!({"type": "object", "properties": {"why": {"type": "string"}}});
    let edges = g["edges"].as_array_mut().unwrap();
    // route.default → judge → hit
    for e in edges.iter_mut() {
        if e["from"]["node"] == "route" && e["from"]["port"] == "default" {
            e["to"]["node"] = json!("judge");
        }
    }
    edges.push(json!({"from": {"node": "judge", "port": "out"}, "to": {"node": "hit", "port": "in"}}));
    g
}

fn provider(url: &str) -> OpenAiCompatible {
    OpenAiCompatible::new(
        OverseerConfig {
            timeout_ms: 5_000,
            retry_base_ms: 1,
            ..OverseerConfig::new(format!("{url}/v1"), "judge-small")
        },
        Some("sk-test".into()),
    )
}

#[test]
fn openai_compatible_provider_scores_and_sends_the_key() {
    let auth = Arc::new(Mutex::new(Vec::new()));
    let url = judge_server(auth.clone());
    let p = provider(&url);
    let req = |s: &str| JudgeRequest { rubric: "give a reason".into(), subject: s.into(), task: json!({"id": "t"}) };
    let good = p.judge(&req("done because total is 3")).unwrap();
    assert_eq!(good.score, 0.9);
    assert_eq!(good.rationale, "model judge-small");
    assert_eq!(p.judge(&req("done")).unwrap().score, 0.1);
    assert!(matches!(p.judge(&req("NONSENSE")), Err(OverseerError::Nonsense { .. })));
    assert_eq!(auth.lock().unwrap()[0], "Bearer sk-test");
}

#[test]
fn unreachable_or_failing_endpoints_are_clear_errors() {
    let url = serve(|_, _, _| (503, "overloaded".into(), vec![]));
    match provider(&url).judge(&JudgeRequest { rubric: "r".into(), subject: "s".into(), task: json!({}) }) {
        Err(OverseerError::Status { status: 503, body, .. }) => assert_eq!(body, "overloaded"),
        other => panic!("{other:?}"),
    }
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let p = provider(&format!("http://127.0.0.1:{closed}"));
    assert!(matches!(
        p.judge(&JudgeRequest { rubric: "r".into(), subject: "s".into(), task: json!({}) }),
        Err(OverseerError::Transport { .. })
    ));
}

#[test]
fn overseer_node_adds_weighted_score_to_the_itemised_reward() {
    let url = judge_server(Arc::new(Mutex::new(Vec::new())));
    let gym = Gym::new(GymBundle::from_value(overseer_gym(), None).unwrap()).unwrap();
    let cfg = RuntimeConfig { overseer: Some(Arc::new(provider(&url))), ..Default::default() };
    let mut env = Env::new(gym.clone(), cfg);
    env.reset(0, &ResetOptions { task_id: Some("t3".into()), ..Default::default() }).unwrap();
    env.step(&json!({"name": "add", "arguments": {"n": 3}})).unwrap();
    let r = env.step(&json!({"name": "done", "arguments": {"why": "because 3 is the target"}})).unwrap();
    let judge = r.info["rewards"].as_array().unwrap().iter().find(|i| i["source"] == "judge").unwrap().clone();
    assert_eq!(judge["value"], 0.45);
    assert_eq!(judge["rationale"], "model judge-small");
    assert!((r.reward - 1.45).abs() < 1e-9);

    // Without an overseer the item is recorded as skipped, worth nothing.
    let mut env = Env::new(gym, RuntimeConfig::default());
    env.reset(0, &ResetOptions { task_id: Some("t3".into()), ..Default::default() }).unwrap();
    let r = env.step(&json!({"name": "done", "arguments": {}})).unwrap();
    let judge = r.info["rewards"].as_array().unwrap().iter().find(|i| i["source"] == "judge").unwrap().clone();
    assert_eq!(judge["skipped"], true);
    assert_eq!(judge["value"], 0.0);
}

/// A gym whose step calls an HTTP endpoint and an MCP tool on `host`.
fn network_gym(base: &str, host: &str) -> Value {
    json!({
        "spec_version": 1, "name": "net", "max_steps": 2,
        "network": {"allowed_hosts": [host]},
        "tasks": [{"id": "a", "city": "Oslo"}],
        "nodes": [
            {"id": "reset", "kind": "on_reset"},
            {"id": "step", "kind": "on_step"},
            {"id": "space", "kind": "action_space", "mode": "text"},
            {"id": "obs0", "kind": "return_reset", "observation": "go"},
            {"id": "get", "kind": "http_request", "method": "POST", "url": format!("{base}/weather?city={{{{ task.city }}}}"), "body": "{{ action.text }}"},
            {"id": "mcp", "kind": "mcp_call", "endpoint": format!("{base}/mcp"), "tool": "echo", "arguments": "{'said': action.text}"},
            {"id": "temp", "kind": "extract", "path": "$.body.temp"},
            {"id": "out", "kind": "return_step", "observation": "{{ input.observation }}", "terminated": "true"}
        ],
        "edges": [
            {"from": {"node": "reset", "port": "out"}, "to": {"node": "obs0", "port": "in"}},
            {"from": {"node": "step", "port": "out"}, "to": {"node": "get", "port": "in"}},
            {"from": {"node": "get", "port": "out"}, "to": {"node": "mcp", "port": "in"}},
            {"from": {"node": "mcp", "port": "out"}, "to": {"node": "out", "port": "in"}},
            {"from": {"node": "get", "port": "response"}, "to": {"node": "temp", "port": "value"}},
            {"from": {"node": "mcp", "port": "text"}, "to": {"node": "out", "port": "observation"}}
        ]
    })
}

fn net_server() -> String {
    serve(|path, headers, body| {
        if path.starts_with("/weather") {
            assert!(path.ends_with("city=Oslo"), "{path}");
            return (200, json!({"temp": 4, "echo": body}).to_string(), vec![]);
        }
        assert_eq!(path, "/mcp");
        let req: Value = serde_json::from_str(body).unwrap();
        let session = headers.iter().find(|(k, _)| k == "mcp-session-id").map(|(_, v)| v.clone());
        match req["method"].as_str().unwrap_or_default() {
            "initialize" => (
                200,
                json!({"jsonrpc": "2.0", "id": req["id"], "result": {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "t", "version": "1"}}}).to_string(),
                vec![("Mcp-Session-Id".into(), "s-1".into())],
            ),
            "notifications/initialized" => (202, String::new(), vec![]),
            "tools/call" => {
                assert_eq!(session.as_deref(), Some("s-1"));
                let said = req["params"]["arguments"]["said"].as_str().unwrap_or_default().to_string();
                (200, json!({"jsonrpc": "2.0", "id": req["id"], "result": {"content": [{"type": "text", "text": format!("echo: {said}")}]}}).to_string(), vec![])
            }
            other => (400, format!("unexpected {other}"), vec![]),
        }
    })
}

#[test]
fn network_nodes_work_when_declared_and_allowed() {
    let base = net_server();
    let gym = Gym::new(GymBundle::from_value(network_gym(&base, "127.0.0.1"), None).unwrap()).unwrap();
    let cfg =
        RuntimeConfig { network: NetworkPolicy { allowed_hosts: vec!["127.0.0.1".into()] }, ..Default::default() };
    let mut env = Env::new(gym, cfg);
    env.reset(0, &ResetOptions::default()).unwrap();
    let r = env.step(&json!("hello")).unwrap();
    assert_eq!(r.observation, "echo: hello");
}

#[test]
fn network_is_off_unless_the_operator_allows_it() {
    let base = net_server();
    let gym = Gym::new(GymBundle::from_value(network_gym(&base, "127.0.0.1"), None).unwrap()).unwrap();
    let mut env = Env::new(gym, RuntimeConfig::default());
    env.reset(0, &ResetOptions::default()).unwrap();
    let r = env.step(&json!("hello")).unwrap();
    assert!(r.observation.contains("not allowed by this node's operator"), "{}", r.observation);
}

#[test]
fn undeclared_hosts_are_refused_by_the_validator() {
    let base = net_server();
    let spec = network_gym(&base, "api.example.com");
    let err = Gym::new(GymBundle::from_value(spec, None).unwrap()).unwrap_err().to_string();
    assert!(err.contains("node `get`") && err.contains("not declared in `network.allowed_hosts`"), "{err}");
}
