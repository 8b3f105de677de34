//! Built-in policies used by `hz gym check`, `hz gym run --random`, benchmarks and tests:
//! a seeded random policy (valid and malformed actions) and the tasks' reference solutions.

use crate::action::ActionParser;
use crate::spec::ActionMode;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

const WORDS: &[&str] = &[
    "select",
    "*",
    "from",
    "orders",
    "west",
    "42",
    "refund",
    "ls",
    "cat",
    "README.md",
    "yes",
    "no",
    "high",
    "billing",
    "escalate",
    "hello",
    "3.5",
    "logs",
    "drop",
    "table",
    "category:",
    "priority:",
    "done",
    "rm",
    "-r",
    "src",
];

/// A seeded random agent: mostly well-formed actions with random content, some malformed.
pub struct RandomPolicy {
    rng: ChaCha8Rng,
    /// Share of deliberately malformed actions, in `[0, 1]`.
    pub invalid_share: f64,
}

impl RandomPolicy {
    pub fn new(seed: u64) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed ^ 0x005E_ED0F_A6E7), invalid_share: 0.15 }
    }

    pub fn action(&mut self, parser: &ActionParser) -> Value {
        if self.rng.random_bool(self.invalid_share.clamp(0.0, 1.0)) {
            return self.malformed(parser);
        }
        match parser.mode() {
            ActionMode::Text | ActionMode::Code => Value::String(self.words(1..12)),
            ActionMode::ToolCall => {
                let tools: Vec<_> = parser.tools().collect();
                let Some(tool) = tools.choose(&mut self.rng) else {
                    return json!({});
                };
                let args = self.value_for(&tool.parameters, 0);
                json!({"name": tool.name, "arguments": args})
            }
        }
    }

    fn malformed(&mut self, parser: &ActionParser) -> Value {
        match self.rng.random_range(0..4) {
            0 => Value::String(format!("{{\"name\": {}", self.words(1..3))),
            1 => json!({"name": "no_such_tool", "arguments": {}}),
            2 => match parser.tools().next() {
                Some(t) => json!({"name": t.name, "arguments": {"unexpected": [1, 2, 3]}}),
                None => json!(""),
            },
            _ => json!(12345),
        }
    }

    fn words(&mut self, n: std::ops::Range<usize>) -> String {
        let k = self.rng.random_range(n);
        (0..k).map(|_| *WORDS.choose(&mut self.rng).unwrap_or(&"x")).collect::<Vec<_>>().join(" ")
    }

    /// A random value roughly matching a JSON Schema (enough for tool arguments).
    fn value_for(&mut self, schema: &Value, depth: usize) -> Value {
        if let Some(options) = schema.get("enum").and_then(Value::as_array) {
            if let Some(v) = options.choose(&mut self.rng) {
                return v.clone();
            }
        }
        let ty = schema.get("type").and_then(Value::as_str).unwrap_or("string");
        match ty {
            "object" if depth < 3 => {
                let mut out = Map::new();
                if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                    let required: Vec<&str> = schema
                        .get("required")
                        .and_then(Value::as_array)
                        .map(|r| r.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    for (k, sub) in props {
                        if required.contains(&k.as_str()) || self.rng.random_bool(0.5) {
                            out.insert(k.clone(), self.value_for(sub, depth + 1));
                        }
                    }
                }
                Value::Object(out)
            }
            "integer" => {
                let lo = schema.get("minimum").and_then(Value::as_i64).unwrap_or(0);
                let hi = schema.get("maximum").and_then(Value::as_i64).unwrap_or(lo.saturating_add(1000)).max(lo);
                json!(self.rng.random_range(lo..=hi))
            }
            "number" => json!((self.rng.random_range(0.0..1000.0f64) * 100.0).round() / 100.0),
            "boolean" => json!(self.rng.random_bool(0.5)),
            "array" if depth < 3 => {
                let item = schema.get("items").cloned().unwrap_or(json!({"type": "string"}));
                let n = self.rng.random_range(0..3);
                Value::Array((0..n).map(|_| self.value_for(&item, depth + 1)).collect())
            }
            _ => Value::String(self.words(1..5)),
        }
    }
}
