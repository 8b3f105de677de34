//! Network nodes (HTTP request, MCP call). Off unless the gym declares the host and the
//! node operator allows it; every call has a timeout and a response-size cap.

use hz_core::NetworkPolicy;
use serde_json::{json, Value};
use std::io::Read;
use std::time::Duration;

const MAX_BODY: u64 = 256 * 1024;

/// Split `host:port` / `[v6]:port` into its parts.
pub fn split_authority(authority: &str) -> (String, Option<u16>) {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(rest) = authority.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').unwrap_or((rest, ""));
        return (h.to_string(), tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().ok()),
        None => (authority.to_string(), None),
    }
}

/// Host and port of an http(s) URL, or why it is not one.
pub fn url_host(url: &str) -> Result<(String, Option<u16>), String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("{url:?} is not an absolute URL"))?;
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return Err(format!("scheme {scheme:?} is not allowed (http or https only)"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = split_authority(authority);
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok((host, port))
}

/// Checks a URL against the gym's declared hosts and the operator's policy.
pub struct NetGuard<'a> {
    pub declared: &'a [String],
    pub policy: &'a NetworkPolicy,
    pub timeout: Duration,
}

impl NetGuard<'_> {
    pub fn check(&self, url: &str) -> Result<(), String> {
        let (host, port) = url_host(url)?;
        if !hz_core::config::host_allowed(self.declared, &host, port) {
            return Err(format!("host {host} is not declared by this gym"));
        }
        if !self.policy.allows(&host, port) {
            return Err(format!("host {host} is not allowed by this node's operator (network is off by default)"));
        }
        Ok(())
    }

    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into()
    }

    /// An HTTP request. Never fails: errors come back as `{ok: false, error}`.
    pub fn http(&self, method: &str, url: &str, headers: &[(String, String)], body: Option<&str>) -> Value {
        if let Err(e) = self.check(url) {
            return json!({"ok": false, "status": 0, "error": e, "body": null, "text": ""});
        }
        let agent = self.agent();
        let method = method.to_ascii_uppercase();
        let result = match (method.as_str(), body) {
            ("GET" | "HEAD" | "DELETE", _) => {
                let mut req = match method.as_str() {
                    "GET" => agent.get(url),
                    "HEAD" => agent.head(url),
                    _ => agent.delete(url),
                };
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                req.call()
            }
            (_, body) => {
                let mut req = match method.as_str() {
                    "PUT" => agent.put(url),
                    "PATCH" => agent.patch(url),
                    _ => agent.post(url),
                };
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                req.send(body.unwrap_or_default())
            }
        };
        match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let mut text = String::new();
                let read = resp.body_mut().as_reader().take(MAX_BODY).read_to_string(&mut text);
                if let Err(e) = read {
                    return json!({"ok": false, "status": status, "error": format!("reading body: {e}"), "body": null, "text": ""});
                }
                let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
                json!({"ok": (200..300).contains(&status), "status": status, "error": null, "body": body, "text": text})
            }
            Err(e) => {
                json!({"ok": false, "status": 0, "error": e.to_string(), "body": null, "text": ""})
            }
        }
    }

    /// Call an MCP tool over the streamable HTTP transport: initialize, then `tools/call`.
    pub fn mcp_call(&self, endpoint: &str, tool: &str, arguments: &Value) -> Value {
        let fail = |e: String| json!({"ok": false, "error": e, "content": [], "text": ""});
        if let Err(e) = self.check(endpoint) {
            return fail(e);
        }
        let agent = self.agent();
        let post = |body: Value, session: Option<&str>| -> Result<(Option<String>, Value), String> {
            let mut req = agent
                .post(endpoint)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json, text/event-stream");
            if let Some(s) = session {
                req = req.header("Mcp-Session-Id", s);
            }
            let mut resp = req.send(body.to_string()).map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let session = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
            let is_sse = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("text/event-stream"));
            let mut text = String::new();
            resp.body_mut().as_reader().take(MAX_BODY).read_to_string(&mut text).map_err(|e| e.to_string())?;
            if !(200..300).contains(&status) {
                return Err(format!("MCP server answered HTTP {status}"));
            }
            if text.trim().is_empty() {
                return Ok((session, Value::Null));
            }
            let payload = if is_sse {
                // The JSON-RPC response is the last `data:` event.
                text.lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim)
                    .next_back()
                    .unwrap_or("")
                    .to_string()
            } else {
                text
            };
            let v: Value = serde_json::from_str(&payload).map_err(|e| format!("MCP reply is not JSON-RPC: {e}"))?;
            Ok((session, v))
        };
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "440hz-gym", "version": env!("CARGO_PKG_VERSION")}}});
        let (session, init_reply) = match post(init, None) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        if let Some(err) = init_reply.get("error") {
            return fail(format!("MCP initialize failed: {err}"));
        }
        let _ = post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}), session.as_deref());
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments}});
        match post(call, session.as_deref()) {
            Ok((_, reply)) => {
                if let Some(err) = reply.get("error") {
                    return fail(format!("MCP error: {err}"));
                }
                let result = reply.get("result").cloned().unwrap_or(Value::Null);
                let content = result.get("content").cloned().unwrap_or(json!([]));
                let text = content
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|c| c.get("text").and_then(Value::as_str))
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                let is_error = result.get("isError").and_then(Value::as_bool).unwrap_or(false);
                json!({"ok": !is_error, "error": null, "content": content, "text": text, "structured": result.get("structuredContent").cloned().unwrap_or(Value::Null)})
            }
            Err(e) => fail(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_against_both_lists() {
        let policy = NetworkPolicy { allowed_hosts: vec!["127.0.0.1".into()] };
        let declared = vec!["127.0.0.1".to_string(), "api.example.com".to_string()];
        let g = NetGuard { declared: &declared, policy: &policy, timeout: Duration::from_secs(1) };
        assert!(g.check("http://127.0.0.1:8080/x").is_ok());
        assert!(g.check("https://api.example.com/").unwrap_err().contains("operator"));
        assert!(g.check("http://10.0.0.1/").unwrap_err().contains("not declared"));
        assert!(g.check("file:///etc/passwd").unwrap_err().contains("scheme"));
        assert!(g.check("http://user@127.0.0.1/").is_ok());
    }
}
