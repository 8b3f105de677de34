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

/// Where the AI overseer's judgements come from: any OpenAI-compatible chat endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OverseerConfig {
    /// Base URL up to and including the version, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Model name passed to the endpoint.
    pub model: String,
    /// Request timeout in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    30_000
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
}
