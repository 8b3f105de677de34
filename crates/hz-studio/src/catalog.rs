//! The node palette: every node kind with its category, a title, the description and the
//! parameter schema taken from the generated spec schema (so it cannot drift from the Rust
//! types), starting parameters for a new node, and its ports; plus the table of port types
//! that may be wired together.

use hz_gym::ports::{ports, PortDef, PortType};
use hz_gym::spec::NodeKind;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// One node kind as the palette shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindInfo {
    /// The `kind` value in JSON (`sql_query`).
    pub kind: String,
    /// `trigger`, `config`, `context`, `state`, `execution`, `routing`, `evaluation` or
    /// `terminus`.
    pub category: String,
    pub title: String,
    pub description: String,
    /// Parameters of a new node (without `id`, `kind`, `label`, `position`). They pass
    /// validation where the kind allows it without knowing the gym (a `get_state` still
    /// needs a declared variable, an `sql_query` a database fixture).
    pub defaults: Value,
    /// Ports of a node with the default parameters.
    pub inputs: Vec<PortDef>,
    pub outputs: Vec<PortDef>,
    /// JSON Schema of the parameters: an object schema with the variant's `properties` and
    /// `required` (without `kind`), references to shared definitions inlined.
    pub schema: Value,
}

/// Everything the editor needs to know about node kinds and wires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub kinds: Vec<KindInfo>,
    /// Every (output type, input type) pair that may be wired.
    pub compat: Vec<(PortType, PortType)>,
    /// The JSON Schema of `*.gym.json` ([`hz_gym::json_schema`]).
    pub spec_schema: Value,
}

/// Every port type, in the order the editor lists them.
pub const PORT_TYPES: [PortType; 6] =
    [PortType::Flow, PortType::Text, PortType::Number, PortType::Bool, PortType::Json, PortType::Action];

// A new port type must be added to PORT_TYPES: this match stops compiling until it is.
const _: fn(PortType) = |t| match t {
    PortType::Flow | PortType::Text | PortType::Number | PortType::Bool | PortType::Json | PortType::Action => {}
};

/// The catalog, built once from the spec schema.
pub fn catalog() -> Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(build).clone()
}

fn build() -> Catalog {
    let spec_schema = hz_gym::json_schema();
    let defs = spec_schema.get("$defs").cloned().unwrap_or(Value::Null);
    let variants = spec_schema.pointer("/$defs/Node/oneOf").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut kinds = Vec::new();
    for variant in &variants {
        let Some(kind) = variant.pointer("/properties/kind/const").and_then(Value::as_str) else {
            tracing::warn!("a NodeKind variant of the spec schema has no `kind` constant; skipped");
            continue;
        };
        let (category, title) = category_and_title(kind);
        let defaults = defaults(kind);
        let mut tagged = defaults.as_object().cloned().unwrap_or_default();
        tagged.insert("kind".into(), Value::String(kind.to_string()));
        let (inputs, outputs) = match serde_json::from_value::<NodeKind>(Value::Object(tagged)) {
            Ok(k) => ports(&k, None),
            Err(e) => {
                tracing::warn!(kind, error = %e, "the catalog defaults do not parse");
                (Vec::new(), Vec::new())
            }
        };
        let description = variant.get("description").and_then(Value::as_str).unwrap_or_default().to_string();
        kinds.push(KindInfo {
            kind: kind.to_string(),
            category: category.to_string(),
            title: title.to_string(),
            description,
            defaults,
            inputs,
            outputs,
            schema: params_schema(variant, &defs),
        });
    }
    let compat = PORT_TYPES
        .iter()
        .flat_map(|&from| PORT_TYPES.iter().filter(move |&&to| from.can_feed(to)).map(move |&to| (from, to)))
        .collect();
    Catalog { kinds, compat, spec_schema }
}

fn category_and_title(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "on_reset" => ("trigger", "On reset"),
        "on_step" => ("trigger", "On step"),
        "action_space" => ("config", "Action space"),
        "observation_space" => ("config", "Observation space"),
        "documentation" => ("context", "Documentation"),
        "persona" => ("context", "Persona"),
        "get_state" => ("state", "Get state"),
        "set_state" => ("state", "Set state"),
        "sql_query" => ("execution", "SQL query"),
        "mock_cli" => ("execution", "Mock CLI"),
        "http_request" => ("execution", "HTTP request"),
        "mcp_call" => ("execution", "MCP call"),
        "switch" => ("routing", "Switch"),
        "extract" => ("routing", "Extract (JSONPath)"),
        "template" => ("routing", "Template"),
        "constraint" => ("evaluation", "Constraint"),
        "reward" => ("evaluation", "Reward"),
        "overseer" => ("evaluation", "AI overseer"),
        "return_reset" => ("terminus", "Return reset"),
        "return_step" => ("terminus", "Return step"),
        other => {
            tracing::warn!(kind = other, "node kind without a catalog category");
            ("execution", "Node")
        }
    }
}

/// Parameters of a new node of `kind`.
fn defaults(kind: &str) -> Value {
    match kind {
        "action_space" => json!({"mode": "text", "tools": []}),
        "observation_space" => json!({"max_length": 8000}),
        "documentation" => json!({"text": "Describe the tools and the data the agent can use."}),
        "persona" => json!({"text": "You are a careful assistant."}),
        "get_state" => json!({"variable": ""}),
        "set_state" => json!({"variable": "", "expr": "0"}),
        "sql_query" => json!({"database": "", "query": "SELECT 1", "read_only": true}),
        "mock_cli" => json!({"command": "{{ action.arguments.command }}", "scripts": []}),
        "http_request" => json!({"method": "GET", "url": "https://example.com/", "headers": {}}),
        "mcp_call" => json!({"endpoint": "http://127.0.0.1:7000/mcp", "tool": "tool_name"}),
        "switch" => json!({"cases": [{"name": "case_1", "when": "action.tool == \"tool_name\""}]}),
        "extract" => json!({"path": "$"}),
        "template" => json!({"template": "{{ input.value }}"}),
        "constraint" => {
            json!({"condition": "true", "penalty": 0.1, "terminate": false, "message": "This rule was broken."})
        }
        "reward" => json!({"value": 1.0}),
        "overseer" => json!({"rubric": "Score 1 when the answer is correct and explained, else 0.", "weight": 1.0}),
        "return_reset" => json!({"observation": "Task {{ task.id }}"}),
        "return_step" => json!({"observation": "{{ action.text }}", "terminated": "false"}),
        _ => json!({}),
    }
}

/// The variant's properties and required list without `kind`, references inlined.
fn params_schema(variant: &Value, defs: &Value) -> Value {
    let mut properties = variant.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    properties.remove("kind");
    let properties: Map<String, Value> = properties.into_iter().map(|(k, v)| (k, inline_refs(&v, defs, 0))).collect();
    let required: Vec<Value> = variant
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter(|x| x.as_str() != Some("kind")).cloned().collect())
        .unwrap_or_default();
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// Replace `{"$ref": "#/$defs/X"}` by the definition (bounded depth: the spec has no
/// recursive parameter types, the bound only guards against one appearing).
fn inline_refs(v: &Value, defs: &Value, depth: usize) -> Value {
    match v {
        Value::Object(o) => {
            if let Some(name) = o.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
                if depth < 8 {
                    if let Some(def) = defs.get(name) {
                        let mut merged = inline_refs(def, defs, depth + 1);
                        // Keep a description given at the place of use.
                        if let (Some(m), Some(d)) = (merged.as_object_mut(), o.get("description")) {
                            m.insert("description".into(), d.clone());
                        }
                        return merged;
                    }
                }
            }
            Value::Object(o.iter().map(|(k, x)| (k.clone(), inline_refs(x, defs, depth))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| inline_refs(x, defs, depth)).collect()),
        other => other.clone(),
    }
}
