//! Model output → gym action.
//!
//! Tool calls are found in a completion in the formats chat models write them, in this
//! order: Hermes/Qwen `<tool_call>{...}</tool_call>` tags, Llama 3.1 `<|python_tag|>` JSON,
//! fenced ```` ```tool_call ```` / ```` ```json ```` blocks (Gemma style), then a bare JSON
//! object in the text. The first format present decides; a malformed call in it is an
//! error, not a reason to try the next format.
//!
//! What reaches the gym: [`to_action`] gives the JSON value `hz_gym::Env::step` accepts —
//! `{"name", "arguments"}` for `tool_call` mode, the text as a JSON string for `text` and
//! `code`. Names and arguments are not checked against the tools here: the gym's
//! `ActionParser` does that, with the messages every face of the gym shows.
//!
//! On a malformed completion the trainer still steps the gym, with
//! [`ActionError::gym_action`]: the raw text (or, for several calls, the list of them),
//! which the gym rejects itself, so the penalty is the gym's `invalid_action_penalty`, the
//! step counts, and the observation the policy reads next is the gym's own wording (the
//! same the Python and HTTP faces give). The [`ActionError`] itself, with its byte offset
//! and snippet, is for logs and the completions table.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// How a gym takes actions (the `mode` of its `action_space` node; same JSON names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionMode {
    Text,
    ToolCall,
    Code,
}

/// Where a tool call was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallFormat {
    /// `<tool_call>{...}</tool_call>` (Hermes, Qwen).
    Hermes,
    /// `<|python_tag|>{...}` (Llama 3.1).
    PythonTag,
    /// A fenced ```` ```tool_call ```` or ```` ```json ```` block.
    Fenced,
    /// A JSON object in plain text (Llama 3.1 custom tools).
    Bare,
}

/// One tool call parsed from a completion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParsedCall {
    pub name: String,
    /// A JSON object (a JSON string holding one is decoded).
    pub arguments: Value,
    pub format: CallFormat,
    /// Byte range of the call's JSON in the completion.
    pub start: usize,
    pub end: usize,
}

impl ParsedCall {
    /// The action `Env::step` accepts.
    pub fn to_action(&self) -> Value {
        json!({"name": self.name, "arguments": self.arguments})
    }
}

/// What was wrong with a completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionErrorKind {
    /// Nothing is left once end tokens and whitespace are stripped.
    Empty,
    /// `tool_call` mode, and no tool call in any known format.
    NoToolCall,
    /// A `<tool_call>` tag or a fence was opened and never closed, with no JSON after it.
    Unclosed(&'static str),
    /// The call's text is not JSON (serde_json's reason).
    BadJson(String),
    /// The call is JSON but not an object.
    NotAnObject,
    /// No string `name` (or `tool`, or `function.name`).
    MissingName,
    /// `arguments` / `parameters` is not an object, or a string that is not a JSON object.
    BadArguments(String),
    /// The gym takes one call per step.
    TooManyCalls(usize),
}

/// A completion that is not a valid action, with where and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} at byte {offset}: {snippet:?}", describe(.kind))]
pub struct ActionError {
    pub kind: ActionErrorKind,
    /// Byte offset into the completion where the problem is.
    pub offset: usize,
    /// Up to 60 characters of the completion from `offset`.
    pub snippet: String,
    // Boxed: a JSON value is large, and errors travel by value.
    fallback: Box<Value>,
}

fn describe(kind: &ActionErrorKind) -> String {
    match kind {
        ActionErrorKind::Empty => "empty completion".into(),
        ActionErrorKind::NoToolCall => {
            "no tool call found (expected <tool_call>{...}</tool_call>, a ```tool_call block or a JSON object)".into()
        }
        ActionErrorKind::Unclosed(what) => format!("{what} is never closed"),
        ActionErrorKind::BadJson(e) => format!("tool call is not valid JSON ({e})"),
        ActionErrorKind::NotAnObject => "tool call must be a JSON object {\"name\": ..., \"arguments\": {...}}".into(),
        ActionErrorKind::MissingName => "tool call has no string `name`".into(),
        ActionErrorKind::BadArguments(e) => format!("tool call arguments {e}"),
        ActionErrorKind::TooManyCalls(n) => format!("one tool call per step, got {n}"),
    }
}

impl ActionError {
    fn new(kind: ActionErrorKind, text: &str, offset: usize, fallback: Value) -> Self {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let snippet: String = text[offset..].chars().take(60).collect();
        Self { kind, offset, snippet, fallback: Box::new(fallback) }
    }

    /// What to send to `Env::step` so the gym records an invalid action in its own words.
    pub fn gym_action(&self) -> Value {
        (*self.fallback).clone()
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Cut end-of-turn / end-of-sequence markers (and whitespace) off the end of a completion.
pub fn strip_end_tokens<'a>(completion: &'a str, end_tokens: &[&str]) -> &'a str {
    let mut s = completion.trim_end();
    loop {
        let before = s.len();
        for t in end_tokens.iter().filter(|t| !t.is_empty()) {
            if let Some(rest) = s.strip_suffix(t) {
                s = rest.trim_end();
            }
        }
        if s.len() == before {
            return s;
        }
    }
}

/// The gym action for a completion. `end_tokens` are stripped from the end first (pass
/// the template's stop strings, e.g. `<|im_end|>`).
pub fn to_action(completion: &str, mode: ActionMode, end_tokens: &[&str]) -> Result<Value, ActionError> {
    let text = strip_end_tokens(completion, end_tokens);
    match mode {
        // The gym trims nothing off text actions, so neither does this beyond end tokens.
        ActionMode::Text | ActionMode::Code => {
            if text.trim().is_empty() {
                return Err(ActionError::new(ActionErrorKind::Empty, text, 0, json!(text)));
            }
            Ok(json!(text))
        }
        ActionMode::ToolCall => {
            let calls = parse_tool_calls(text)?;
            match calls.as_slice() {
                [one] => Ok(one.to_action()),
                [] => Err(ActionError::new(ActionErrorKind::NoToolCall, text, 0, json!(text))),
                [_, second, ..] => {
                    let list: Vec<Value> = calls.iter().map(ParsedCall::to_action).collect();
                    Err(ActionError::new(
                        ActionErrorKind::TooManyCalls(calls.len()),
                        text,
                        second.start,
                        json!({"tool_calls": list}),
                    ))
                }
            }
        }
    }
}

/// Every tool call in a completion (empty when there is none). Errors name the first
/// malformed call.
pub fn parse_tool_calls(text: &str) -> Result<Vec<ParsedCall>, ActionError> {
    if text.trim().is_empty() {
        return Err(ActionError::new(ActionErrorKind::Empty, text, 0, json!(text)));
    }
    if text.contains("<tool_call>") {
        return hermes(text);
    }
    if let Some(i) = text.find("<|python_tag|>") {
        let start = i + "<|python_tag|>".len();
        let body = strip_end_tokens(&text[start..], &["<|eom_id|>", "<|eot_id|>"]);
        let lead = body.len() - body.trim_start().len();
        return Ok(vec![call_from_json(text, start + lead, start + body.len(), CallFormat::PythonTag)?]);
    }
    if let Some(calls) = fenced(text)? {
        return Ok(calls);
    }
    Ok(bare(text)?.into_iter().collect())
}

fn hermes(text: &str) -> Result<Vec<ParsedCall>, ActionError> {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let mut calls = Vec::new();
    let mut at = 0;
    while let Some(i) = text[at..].find(OPEN) {
        let body_start = at + i + OPEN.len();
        let body_end = match text[body_start..].find(CLOSE) {
            Some(j) => body_start + j,
            // A stop string of `</tool_call>` leaves the tag out of the completion; the JSON
            // before the end is still the call.
            None if text[body_start..].trim().is_empty() => {
                return Err(ActionError::new(ActionErrorKind::Unclosed("<tool_call>"), text, at + i, json!(text)))
            }
            None => text.len(),
        };
        let (s, e) = trim_range(text, body_start, body_end);
        calls.push(call_from_json(text, s, e, CallFormat::Hermes)?);
        at = (body_end + CLOSE.len()).min(text.len());
    }
    Ok(calls)
}

/// ```` ```tool_call ```` and ```` ```json ```` blocks. `None` when there are none.
fn fenced(text: &str) -> Result<Option<Vec<ParsedCall>>, ActionError> {
    let mut calls = Vec::new();
    let mut at = 0;
    let mut found = false;
    while let Some(i) = text[at..].find("```") {
        let fence = at + i;
        let info_start = fence + 3;
        let line_end = text[info_start..].find('\n').map_or(text.len(), |j| info_start + j);
        let info = text[info_start..line_end].trim();
        let Some(close) = text[line_end..].find("```").map(|j| line_end + j) else {
            if matches!(info, "tool_call" | "json") {
                return Err(ActionError::new(
                    ActionErrorKind::Unclosed("```tool_call block"),
                    text,
                    fence,
                    json!(text),
                ));
            }
            break;
        };
        if matches!(info, "tool_call" | "json") {
            found = true;
            let (s, e) = trim_range(text, line_end, close);
            calls.push(call_from_json(text, s, e, CallFormat::Fenced)?);
        }
        at = close + 3;
    }
    Ok(found.then_some(calls))
}

/// The first `{` in the text that starts a JSON object shaped like a tool call.
fn bare(text: &str) -> Result<Option<ParsedCall>, ActionError> {
    let trimmed = text.trim();
    // The whole completion being JSON is the plain case: its errors are worth reporting.
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let lead = text.len() - text.trim_start().len();
        return call_from_json(text, lead, lead + trimmed.len(), CallFormat::Bare).map(Some);
    }
    for (i, _) in text.match_indices('{') {
        let mut stream = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
        if let Some(Ok(v)) = stream.next() {
            let end = i + stream.byte_offset();
            if v.as_object()
                .is_some_and(|o| ["name", "tool", "function", "tool_calls"].iter().any(|k| o.contains_key(*k)))
            {
                return call_from_json(text, i, end, CallFormat::Bare).map(Some);
            }
        }
    }
    Ok(None)
}

fn trim_range(text: &str, start: usize, end: usize) -> (usize, usize) {
    let body = &text[start..end];
    let s = start + (body.len() - body.trim_start().len());
    (s, s + body.trim().len())
}

fn call_from_json(text: &str, start: usize, end: usize, format: CallFormat) -> Result<ParsedCall, ActionError> {
    let raw = json!(text);
    let v: Value = serde_json::from_str(&text[start..end]).map_err(|e| {
        let at = start + line_col_offset(&text[start..end], e.line(), e.column());
        ActionError::new(ActionErrorKind::BadJson(e.to_string()), text, at, raw.clone())
    })?;
    let (name, arguments) = call_parts(&v).map_err(|kind| ActionError::new(kind, text, start, raw.clone()))?;
    Ok(ParsedCall { name, arguments, format, start, end })
}

/// The shapes hz-gym accepts too: `{"name"|"tool", "arguments"|"parameters"}`, OpenAI's
/// `{"type": "function", "function": {...}}`, and `{"tool_calls": [one]}`.
fn call_parts(v: &Value) -> Result<(String, Value), ActionErrorKind> {
    let obj = v.as_object().ok_or(ActionErrorKind::NotAnObject)?;
    if let Some(calls) = obj.get("tool_calls") {
        return match calls.as_array().map(Vec::as_slice) {
            Some([one]) => call_parts(one),
            Some(list) => Err(ActionErrorKind::TooManyCalls(list.len())),
            None => Err(ActionErrorKind::NotAnObject),
        };
    }
    let inner: &Map<String, Value> = match obj.get("function") {
        Some(Value::Object(f)) => f,
        _ => obj,
    };
    let name = inner
        .get("name")
        .or_else(|| inner.get("tool"))
        .and_then(Value::as_str)
        .ok_or(ActionErrorKind::MissingName)?
        .to_string();
    let args = match inner.get("arguments").or_else(|| inner.get("parameters")) {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(s)) => serde_json::from_str(s)
            .map_err(|e| ActionErrorKind::BadArguments(format!("are a string that is not JSON ({e})")))?,
        Some(a) => a.clone(),
    };
    if !args.is_object() {
        return Err(ActionErrorKind::BadArguments("must be a JSON object".into()));
    }
    Ok((name, args))
}

/// serde_json reports 1-based line and column (column 0 when at a line's start).
fn line_col_offset(s: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in s.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return (offset + column.saturating_sub(1)).min(s.len());
        }
        offset += l.len();
    }
    s.len()
}
