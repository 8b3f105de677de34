//! A loopback judge speaking OpenAI's `/v1/chat/completions`, recording each request's
//! `Authorization` header.

use serde_json::json;
use std::sync::{Arc, Mutex};

pub struct Judge {
    pub url: String,
    pub auth: Arc<Mutex<Vec<Option<String>>>>,
}

impl Judge {
    pub fn start() -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", server.server_addr().to_ip().unwrap());
        let auth = Arc::new(Mutex::new(Vec::new()));
        let seen = auth.clone();
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let key = req.headers().iter().find(|h| h.field.equiv("Authorization")).map(|h| h.value.to_string());
                seen.lock().unwrap().push(key);
                let content = json!({"score": 0.5, "rationale": "a reason is given"}).to_string();
                let reply = json!({"id": "x", "object": "chat.completion", "model": "judge",
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]});
                let resp = tiny_http::Response::from_string(reply.to_string())
                    .with_header(tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap());
                let _ = req.respond(resp);
            }
        });
        Self { url, auth }
    }

    pub fn requests(&self) -> Vec<Option<String>> {
        self.auth.lock().unwrap().clone()
    }
}
