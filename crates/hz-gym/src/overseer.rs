//! The AI overseer: a reward provider that judges an agent's output against a rubric.
//! This module has the trait and a provider for OpenAI-compatible chat endpoints
//! (OpenRouter, Groq, the 0G compute broker, a local `hz serve`).

use hz_core::OverseerConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;

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

/// Why a judgement could not be had.
#[derive(Debug, thiserror::Error)]
pub enum OverseerError {
    #[error("overseer endpoint unreachable: {0}")]
    Transport(String),
    #[error("overseer endpoint answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("overseer answered nonsense: {0}")]
    Nonsense(String),
}

/// Anything that turns a rubric and a subject into a score.
pub trait RewardProvider: Send + Sync {
    /// A short name recorded in `info.rewards` (`openai:<model>`).
    fn name(&self) -> String;
    fn judge(&self, req: &JudgeRequest) -> Result<Judgement, OverseerError>;
}

/// A provider for any endpoint speaking OpenAI's `POST /chat/completions`.
pub struct OpenAiCompatible {
    config: OverseerConfig,
    api_key: Option<String>,
    agent: ureq::Agent,
}

impl OpenAiCompatible {
    pub fn new(config: OverseerConfig, api_key: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
            .http_status_as_error(false)
            .build()
            .into();
        Self { config, api_key, agent }
    }

    fn messages(req: &JudgeRequest) -> Value {
        let system = "You are a strict, fair judge of an AI agent's work. Score the SUBJECT \
                      against the RUBRIC. Reply with only a JSON object: \
                      {\"score\": <number from 0 to 1>, \"rationale\": \"<one or two sentences>\"}.";
        let user = format!(
            "RUBRIC:\n{}\n\nTASK:\n{}\n\nSUBJECT:\n{}",
            req.rubric,
            serde_json::to_string_pretty(&req.task).unwrap_or_default(),
            req.subject
        );
        json!([{"role": "system", "content": system}, {"role": "user", "content": user}])
    }
}

impl RewardProvider for OpenAiCompatible {
    fn name(&self) -> String {
        format!("openai:{}", self.config.model)
    }

    fn judge(&self, req: &JudgeRequest) -> Result<Judgement, OverseerError> {
        let url = format!("{}/chat/completions", self.config.base_url.trim_end_matches('/'));
        let body = json!({
            "model": self.config.model,
            "messages": Self::messages(req),
            "temperature": 0,
            "response_format": {"type": "json_object"},
        });
        let mut call = self.agent.post(&url).header("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            call = call.header("Authorization", &format!("Bearer {key}"));
        }
        let mut resp = call.send(body.to_string()).map_err(|e| OverseerError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .map_err(|e| OverseerError::Transport(e.to_string()))?;
        if !(200..300).contains(&status) {
            return Err(OverseerError::Status { status, body: text.chars().take(300).collect() });
        }
        let reply: Value =
            serde_json::from_str(&text).map_err(|e| OverseerError::Nonsense(format!("response is not JSON: {e}")))?;
        let content = reply
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| OverseerError::Nonsense("no choices[0].message.content in the response".into()))?;
        parse_verdict(content)
    }
}

/// Pull `{score, rationale}` out of a judge's message, tolerating code fences and prose
/// around the JSON object, but not a missing or out-of-range score.
pub fn parse_verdict(content: &str) -> Result<Judgement, OverseerError> {
    let start = content.find('{');
    let end = content.rfind('}');
    let (Some(s), Some(e)) = (start, end) else {
        return Err(OverseerError::Nonsense(format!("no JSON object in {:?}", truncate(content))));
    };
    if e < s {
        return Err(OverseerError::Nonsense(format!("no JSON object in {:?}", truncate(content))));
    }
    let v: Value = serde_json::from_str(&content[s..=e])
        .map_err(|err| OverseerError::Nonsense(format!("bad JSON ({err}) in {:?}", truncate(content))))?;
    let score = match v.get("score") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(f64::NAN),
        _ => return Err(OverseerError::Nonsense(format!("no numeric `score` in {:?}", truncate(content)))),
    };
    if !(0.0..=1.0).contains(&score) {
        return Err(OverseerError::Nonsense(format!("score {score} is outside [0, 1]")));
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
            assert!(matches!(parse_verdict(bad), Err(OverseerError::Nonsense(_))), "{bad}");
        }
    }
}
