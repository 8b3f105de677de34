//! Configuration chosen by the person operating a node. Gyms declare what they need; the
//! operator decides what is allowed. Nothing here reads files or the environment.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which network hosts gym nodes (HTTP request, MCP endpoint) may reach. Off by default:
/// a host is reachable only when the gym declares it *and* the operator allows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkPolicy {
    /// Host names (optionally `host:port`) the operator allows.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl NetworkPolicy {
    /// Deny everything.
    pub fn deny_all() -> Self {
        Self::default()
    }

    /// Whether `host` (and `port`) is allowed. An entry without a port allows every port.
    pub fn allows(&self, host: &str, port: Option<u16>) -> bool {
        host_allowed(&self.allowed_hosts, host, port)
    }
}

/// Shared rule for host lists: `example.com` matches every port, `example.com:8080` one port.
pub fn host_allowed(list: &[String], host: &str, port: Option<u16>) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    list.iter().any(|entry| {
        let (h, p) = split_host_port(entry);
        h.eq_ignore_ascii_case(host) && (p.is_none() || p == port)
    })
}

fn split_host_port(entry: &str) -> (&str, Option<u16>) {
    // IPv6 literals come bracketed: [::1]:8080
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (h, port);
        }
    }
    match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

/// Where the AI overseer's judgements come from: any OpenAI-compatible chat endpoint, and how
/// patiently it is asked. Every field but the endpoint has a default, so older config files
/// stay valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OverseerConfig {
    /// Base URL up to and including the version, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Model name passed to the endpoint.
    pub model: String,
    /// Overall limit for one request (connect, send, wait, read the body), in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Limit for setting up the connection (DNS, TCP, TLS), in milliseconds; never more
    /// than `timeout_ms`.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Requests per judgement, the first included: transport errors, HTTP 429 and 5xx are
    /// retried, other answers are not. At least 1.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay in milliseconds; it doubles per retry (with jitter) up to
    /// `retry_max_delay_ms`.
    #[serde(default = "default_retry_base_ms")]
    pub retry_base_ms: u64,
    /// Longest wait between two attempts. A `Retry-After` longer than this ends the retries.
    #[serde(default = "default_retry_max_delay_ms")]
    pub retry_max_delay_ms: u64,
    /// Ask once more, quoting the problem, when the judge answers something that is not a
    /// verdict. The re-ask counts as one of `max_attempts`.
    #[serde(default = "default_true")]
    pub reask_on_nonsense: bool,
    /// Name of the API key, looked up in the environment and then in the OS keychain (e.g.
    /// `OPENROUTER_API_KEY`). Default: chosen from the endpoint's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
}

impl OverseerConfig {
    /// An endpoint and model with every other setting at its default.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            timeout_ms: default_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            max_attempts: default_max_attempts(),
            retry_base_ms: default_retry_base_ms(),
            retry_max_delay_ms: default_retry_max_delay_ms(),
            reask_on_nonsense: true,
            key_name: None,
        }
    }
}

fn default_timeout_ms() -> u64 {
    30_000
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

fn default_max_attempts() -> u32 {
    4
}

fn default_retry_base_ms() -> u64 {
    500
}

fn default_retry_max_delay_ms() -> u64 {
    30_000
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_need_an_explicit_entry() {
        let p = NetworkPolicy {
            allowed_hosts: vec!["api.example.com".into(), "127.0.0.1:9000".into(), "[::1]:7000".into()],
        };
        assert!(p.allows("api.example.com", Some(443)));
        assert!(p.allows("API.example.com", None));
        assert!(p.allows("127.0.0.1", Some(9000)));
        assert!(!p.allows("127.0.0.1", Some(9001)));
        assert!(p.allows("::1", Some(7000)));
        assert!(!p.allows("evil.example.com", Some(443)));
        assert!(!NetworkPolicy::deny_all().allows("127.0.0.1", Some(80)));
    }

    #[test]
    fn old_overseer_configs_still_parse() {
        let old: OverseerConfig =
            serde_json::from_str(r#"{"base_url": "http://127.0.0.1:8080/v1", "model": "m", "timeout_ms": 9000}"#)
                .unwrap();
        assert_eq!(old, OverseerConfig { timeout_ms: 9000, ..OverseerConfig::new("http://127.0.0.1:8080/v1", "m") });
    }
}
