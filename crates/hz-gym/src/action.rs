//! Parsing agent actions against the action space. Anything the agent sends either becomes
//! a [`ParsedAction`] or a clear reason why not; nothing here panics on input.

use crate::spec::{ActionMode, NodeKind, ToolDef};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// An action the graph can run on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParsedAction {
    /// `tool_call`, `text` or `code`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Tool name (`""` for text and code).
    pub tool: String,
    /// Tool arguments (`{}` for text and code).
    pub arguments: Value,
    /// The raw text, or the tool call as compact JSON.
    pub text: String,
}

impl ParsedAction {
    pub fn none() -> Self {
        Self { kind: "none", tool: String::new(), arguments: json!({}), text: String::new() }
    }

    pub fn to_json(&self) -> Value {
        json!({"type": self.kind, "tool": self.tool, "arguments": self.arguments, "text": self.text})
    }
}

/// Validates actions for one action space.
pub struct ActionParser {
    mode: ActionMode,
    tools: Vec<(ToolDef, jsonschema::Validator)>,
    max_bytes: usize,
}

impl std::fmt::Debug for ActionParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionParser").field("mode", &self.mode).field("tools", &self.tools.len()).finish()
    }
}

impl ActionParser {
    /// Build from an `action_space` node; errors are `(field, reason)` pairs.
    pub fn new(kind: &NodeKind, max_bytes: u32) -> Result<Self, Vec<(String, String)>> {
        let NodeKind::ActionSpace { mode, tools } = kind else {
            return Err(vec![("kind".into(), "not an action_space node".into())]);
        };
        let mut errs = Vec::new();
        let mut compiled = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, t) in tools.iter().enumerate() {
            if t.name.is_empty() || !t.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                errs.push((format!("tools[{i}].name"), format!("{:?} must be letters, digits, `_` or `-`", t.name)));
            }
            if !names.insert(t.name.as_str()) {
                errs.push((format!("tools[{i}].name"), format!("duplicate tool {:?}", t.name)));
            }
            if t.parameters.get("type").and_then(Value::as_str) != Some("object") {
                errs.push((format!("tools[{i}].parameters"), "must be a JSON Schema with \"type\": \"object\"".into()));
                continue;
            }
            match jsonschema::validator_for(&t.parameters) {
                Ok(v) => compiled.push((t.clone(), v)),
                Err(e) => errs.push((format!("tools[{i}].parameters"), format!("invalid JSON Schema: {e}"))),
            }
        }
        match mode {
            ActionMode::ToolCall if tools.is_empty() => {
                errs.push(("tools".into(), "tool_call mode needs at least one tool".into()))
            }
            ActionMode::Text | ActionMode::Code if !tools.is_empty() => {
                errs.push(("tools".into(), format!("{mode:?} mode takes no tools; use tool_call")))
            }
            _ => {}
        }
        if errs.is_empty() {
            Ok(Self { mode: *mode, tools: compiled, max_bytes: max_bytes as usize })
        } else {
            Err(errs)
        }
    }

    pub fn mode(&self) -> ActionMode {
        self.mode
    }

    pub fn tools(&self) -> impl Iterator<Item = &ToolDef> {
        self.tools.iter().map(|(t, _)| t)
    }

    /// Parse an action. `Err` carries the message shown to the agent.
    pub fn parse(&self, action: &Value) -> Result<ParsedAction, String> {
        let size = match action {
            Value::String(s) => s.len(),
            other => other.to_string().len(),
        };
        if size > self.max_bytes {
            return Err(format!("action is {size} bytes; the limit is {}", self.max_bytes));
        }
        match self.mode {
            ActionMode::Text | ActionMode::Code => {
                let text = match action {
                    Value::String(s) => s.clone(),
                    Value::Object(o) => match o.get("text").or_else(|| o.get("code")).and_then(Value::as_str) {
                        Some(s) => s.to_string(),
                        None => return Err("expected text (a JSON string, or {\"text\": ...})".into()),
                    },
                    _ => return Err("expected text (a JSON string)".into()),
                };
                let kind = if self.mode == ActionMode::Text { "text" } else { "code" };
                if text.trim().is_empty() {
                    return Err(format!("empty {kind} action"));
                }
                Ok(ParsedAction { kind, tool: String::new(), arguments: json!({}), text })
            }
            ActionMode::ToolCall => {
                let (name, args) = tool_call_parts(action)?;
                let Some((_, validator)) = self.tools.iter().find(|(t, _)| t.name == name) else {
                    let known: Vec<_> = self.tools.iter().map(|(t, _)| t.name.as_str()).collect();
                    return Err(format!("unknown tool {name:?}; available tools: {}", known.join(", ")));
                };
                // Name the failing place and JSON Schema keyword, not a library's wording, so
                // every face of the gym (Rust, Python) says the same thing: the first failure
                // in (path, keyword) order.
                let first = validator
                    .iter_errors(&args)
                    .map(|e| (e.instance_path().to_string(), e.kind().keyword().to_string()))
                    .min();
                if let Some((path, keyword)) = first {
                    let at = if path.is_empty() { "/".to_string() } else { path };
                    return Err(format!("invalid arguments for {name}: {at} fails `{keyword}`"));
                }
                let text = json!({"name": name, "arguments": args}).to_string();
                Ok(ParsedAction { kind: "tool_call", tool: name, arguments: args, text })
            }
        }
    }
}

/// Accepts `{"name", "arguments"}`, `{"tool", "arguments"}`, OpenAI's
/// `{"type": "function", "function": {...}}`, `{"tool_calls": [one]}`, or any of these as a
/// JSON string. Arguments may be an object or a JSON string holding one.
fn tool_call_parts(action: &Value) -> Result<(String, Value), String> {
    let owned;
    let v = match action {
        Value::String(s) => {
            owned =
                serde_json::from_str::<Value>(s.trim()).map_err(|_| "action is not a JSON tool call".to_string())?;
            &owned
        }
        other => other,
    };
    let obj = v.as_object().ok_or("a tool call must be a JSON object like {\"name\": ..., \"arguments\": {...}}")?;
    if let Some(calls) = obj.get("tool_calls") {
        let calls = calls.as_array().ok_or("`tool_calls` must be a list")?;
        return match calls.as_slice() {
            [one] => tool_call_parts(one),
            [] => Err("`tool_calls` is empty".into()),
            _ => Err(format!("one tool call per step, got {}", calls.len())),
        };
    }
    let inner: &Map<String, Value> = match obj.get("function") {
        Some(Value::Object(f)) => f,
        Some(_) => return Err("`function` must be an object".into()),
        None => obj,
    };
    let name = inner
        .get("name")
        .or_else(|| inner.get("tool"))
        .and_then(Value::as_str)
        .ok_or("tool call has no `name`")?
        .to_string();
    let args = match inner.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(s)) => {
            serde_json::from_str(s).map_err(|_| format!("`arguments` of {name} is not valid JSON"))?
        }
        Some(a) => a.clone(),
    };
    if !args.is_object() {
        return Err(format!("`arguments` of {name} must be a JSON object"));
    }
    Ok((name, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> ActionParser {
        let kind: NodeKind = serde_json::from_value(json!({
            "kind": "action_space", "mode": "tool_call",
            "tools": [{"name": "run_sql", "parameters": {"type": "object", "properties": {"sql": {"type": "string"}}, "required": ["sql"]}}]
        }))
        .unwrap();
        ActionParser::new(&kind, 1000).unwrap()
    }

    #[test]
    fn accepts_the_common_shapes() {
        let p = parser();
        for a in [
            json!({"name": "run_sql", "arguments": {"sql": "select 1"}}),
            json!({"tool": "run_sql", "arguments": "{\"sql\": \"select 1\"}"}),
            json!({"type": "function", "function": {"name": "run_sql", "arguments": {"sql": "select 1"}}}),
            json!({"tool_calls": [{"name": "run_sql", "arguments": {"sql": "select 1"}}]}),
            json!("{\"name\": \"run_sql\", \"arguments\": {\"sql\": \"select 1\"}}"),
        ] {
            let parsed = p.parse(&a).unwrap_or_else(|e| panic!("{a}: {e}"));
            assert_eq!(parsed.tool, "run_sql");
            assert_eq!(parsed.arguments, json!({"sql": "select 1"}));
        }
    }

    #[test]
    fn rejects_with_reasons() {
        let p = parser();
        let cases = [
            (json!("not json"), "not a JSON tool call"),
            (json!({"name": "drop_db"}), "unknown tool"),
            (json!({"name": "run_sql", "arguments": {}}), "invalid arguments for run_sql: / fails `required`"),
            (json!({"name": "run_sql", "arguments": {"sql": 3}}), "invalid arguments for run_sql: /sql fails `type`"),
            (json!({"tool_calls": []}), "empty"),
            (json!(42), "JSON object"),
            (json!({"name": "run_sql", "arguments": "x".repeat(2000)}), "limit"),
        ];
        for (a, want) in cases {
            let err = p.parse(&a).unwrap_err();
            assert!(err.contains(want), "{a} → {err}");
        }
    }
}
