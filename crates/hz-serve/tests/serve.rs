//! The server in-process on a tiny random model the test writes: called by the overseer's
//! own OpenAI client and by raw HTTP.

use hz_core::OverseerConfig;
use hz_gym::overseer::{JudgeRequest, OpenAiCompatible, OverseerError, RewardProvider};
use hz_llm::tiny::{train_tokenizer, write_model, TinySpec};
use hz_llm::Family;
use hz_serve::{Engine, ServeConfig, Server};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

fn start() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus: Vec<String> = (0..40)
        .map(|i| format!("<|im_start|>user\nscore answer {i}<|im_end|>\n<|im_start|>assistant\n{{\"score\": 0.{i}}}"))
        .collect();
    let tok = train_tokenizer(&corpus, 200).expect("tokenizer");
    write_model(dir.path(), &TinySpec::new(Family::Qwen2, 0), &tok, 21).expect("write model");
    let engine = Engine::load(dir.path()).expect("engine");
    let config = ServeConfig { default_max_tokens: 24, max_tokens_limit: 256, ..ServeConfig::new("tiny") };
    let server = Server::start(engine, "127.0.0.1:0", config).expect("start");
    (server, dir)
}

/// One HTTP/1.1 request over a plain socket; the status and the JSON body.
fn raw(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("a header block");
    let status: u16 = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status line");
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {body:?}")))
}

fn post(addr: SocketAddr, body: &Value) -> (u16, Value) {
    raw(addr, "POST", "/v1/chat/completions", &body.to_string())
}

fn assert_completion(v: &Value, n: usize, max_tokens: u64) {
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(v["model"], "tiny");
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("chatcmpl-")), "{v}");
    assert!(v["created"].as_u64().is_some_and(|t| t > 1_600_000_000), "{v}");
    let choices = v["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), n);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["message"]["role"], "assistant");
        assert!(c["message"]["content"].is_string(), "{c}");
        assert!(matches!(c["finish_reason"].as_str(), Some("stop" | "length")), "{c}");
    }
    let u = &v["usage"];
    let (p, c, t) = (u["prompt_tokens"].as_u64(), u["completion_tokens"].as_u64(), u["total_tokens"].as_u64());
    let (p, c, t) = (p.expect("prompt_tokens"), c.expect("completion_tokens"), t.expect("total_tokens"));
    assert!(p > 0);
    assert!(c >= 1 && c <= max_tokens * n as u64, "{u}");
    assert_eq!(p + c, t);
}

#[test]
fn the_overseer_client_gets_a_verdict_or_names_the_judge_that_answered_nonsense() {
    let (server, _dir) = start();
    let mut cfg = OverseerConfig::new(server.base_url(), "tiny");
    cfg.timeout_ms = 120_000;
    let judge = OpenAiCompatible::new(cfg, None).with_sleep(|_| {});
    let req = JudgeRequest {
        rubric: "Score 1 if the answer is 42, else 0.".into(),
        subject: "The answer is 42.".into(),
        task: json!({"question": "What is six times seven?"}),
    };
    match judge.judge(&req) {
        Ok(j) => assert!((0.0..=1.0).contains(&j.score), "{j:?}"),
        Err(OverseerError::Nonsense { judge, attempts, .. }) => {
            assert!(judge.contains("openai:tiny") && judge.contains(&server.base_url()), "{judge}");
            assert_eq!(attempts, 2, "asked once more after the first nonsense");
        }
        Err(e) => panic!("the judge client should reach the server: {e}"),
    }
}

#[test]
fn a_raw_post_gets_a_well_formed_chat_completion() {
    let (server, _dir) = start();
    let addr = server.addr();
    let body = json!({
        "model": "anything",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "score answer 3"}],
        "temperature": 0,
        "max_tokens": 6,
        "seed": 1,
    });
    let (status, v) = post(addr, &body);
    assert_eq!(status, 200, "{v}");
    assert_completion(&v, 1, 6);
    // Greedy is greedy: the same request, the same answer.
    let (_, again) = post(addr, &body);
    assert_eq!(again["choices"][0]["message"], v["choices"][0]["message"]);

    // Sampling with a seed is reproducible; n gives that many choices.
    let sampled = json!({
        "messages": [{"role": "user", "content": [{"type": "text", "text": "score answer 5"}]}],
        "temperature": 1.0, "top_p": 0.9, "max_tokens": 8, "seed": 7, "n": 3, "stop": ["\n\n"],
    });
    let (status, a) = post(addr, &sampled);
    assert_eq!(status, 200, "{a}");
    assert_completion(&a, 3, 8);
    let (_, b) = post(addr, &sampled);
    assert_eq!(a["choices"], b["choices"]);
    for c in a["choices"].as_array().unwrap() {
        assert!(!c["message"]["content"].as_str().unwrap().contains("\n\n"));
    }

    // max_tokens bounds the completion; "length" says it was cut.
    let (_, one) = post(addr, &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}));
    assert_eq!(one["usage"]["completion_tokens"], 1, "{one}");
    let finish = one["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(finish == "length" || finish == "stop");

    let (status, models) = raw(addr, "GET", "/v1/models", "");
    assert_eq!(status, 200);
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "tiny");
    let (status, health) = raw(addr, "GET", "/healthz", "");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    server.stop();
}

#[test]
fn bad_requests_get_400_naming_the_field() {
    let (server, _dir) = start();
    let addr = server.addr();
    let user = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (json!({"model": "tiny"}), "messages"),
        (json!({"messages": "hi"}), "messages"),
        (json!({"messages": []}), "messages"),
        (json!({"messages": [{"content": "hi"}]}), "messages[0].role"),
        (json!({"messages": [{"role": "wizard", "content": "hi"}]}), "messages[0].role"),
        (json!({"messages": [{"role": "user", "content": 5}]}), "messages[0].content"),
        (json!({"messages": user, "temperature": "hot"}), "temperature"),
        (json!({"messages": user, "temperature": -1}), "temperature"),
        (json!({"messages": user, "top_p": 0}), "top_p"),
        (json!({"messages": user, "max_tokens": "many"}), "max_tokens"),
        (json!({"messages": user, "max_tokens": 0}), "max_tokens"),
        (json!({"messages": user, "max_tokens": 100_000}), "max_tokens"),
        (json!({"messages": user, "stop": 3}), "stop"),
        (json!({"messages": user, "stop": ["a", 1]}), "stop[1]"),
        (json!({"messages": user, "seed": "x"}), "seed"),
        (json!({"messages": user, "n": 0}), "n"),
        (json!({"messages": user, "stream": true}), "stream"),
        (json!({"messages": user, "model": 3}), "model"),
    ];
    for (body, field) in cases {
        let (status, v) = post(addr, &body);
        assert_eq!(status, 400, "{body} → {v}");
        let e = &v["error"];
        assert_eq!(e["type"], "invalid_request_error", "{v}");
        assert_eq!(e["param"], field, "{body} → {v}");
        assert!(e["message"].as_str().is_some_and(|m| m.contains(field)), "{v}");
        assert!(e.get("code").is_some(), "{v}");
    }
    let (status, v) = raw(addr, "POST", "/v1/chat/completions", "{not json");
    assert_eq!(status, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("not JSON"), "{v}");
    let (status, v) = raw(addr, "GET", "/v1/chat/completions", "");
    assert_eq!(status, 405, "{v}");
    let (status, v) = raw(addr, "GET", "/v2/nothing", "");
    assert_eq!(status, 404, "{v}");
    assert!(v["error"]["message"].is_string());
}
