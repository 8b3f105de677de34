//! Small gyms written inline for tests.
#![allow(dead_code)]

use serde_json::{json, Value};

/// A tiny counter gym: tools `add {n}` and `done {}`; reward for reaching the target.
pub fn counter_gym() -> Value {
    json!({
        "spec_version": 1, "name": "counter", "max_steps": 5, "invalid_action_penalty": -0.5,
        "variables": [{"name": "total", "type": "int", "initial": 0}],
        "tasks": [
            {"id": "t3", "target": 3, "solution": [{"name": "add", "arguments": {"n": 3}}, {"name": "done", "arguments": {}}]},
            {"id": "t5", "target": 5, "solution": [{"name": "add", "arguments": {"n": 5}}, {"name": "done", "arguments": {}}]}
        ],
        "nodes": [
            {"id": "reset", "kind": "on_reset"},
            {"id": "step", "kind": "on_step"},
            {"id": "space", "kind": "action_space", "mode": "tool_call", "tools": [
                {"name": "add", "parameters": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 10}}, "required": ["n"]}},
                {"name": "done", "parameters": {"type": "object", "properties": {}}}
            ]},
            {"id": "obs0", "kind": "return_reset", "observation": "Reach {{ task.target }}."},
            {"id": "route", "kind": "switch", "cases": [{"name": "add", "when": "action.tool == 'add'"}]},
            {"id": "inc", "kind": "set_state", "variable": "total", "expr": "state.total + action.arguments.n"},
            {"id": "cap", "kind": "constraint", "condition": "state.total <= 10", "penalty": 1.0, "terminate": true, "message": "over ten"},
            {"id": "cost", "kind": "reward", "value": -0.1},
            {"id": "hit", "kind": "reward", "value": 1.0, "when": "action.tool == 'done' && state.total == task.target"},
            {"id": "out", "kind": "return_step", "observation": "total={{ state.total }}", "terminated": "action.tool == 'done'"}
        ],
        "edges": [
            {"from": {"node": "reset", "port": "out"}, "to": {"node": "obs0", "port": "in"}},
            {"from": {"node": "step", "port": "out"}, "to": {"node": "route", "port": "in"}},
            {"from": {"node": "route", "port": "add"}, "to": {"node": "inc", "port": "in"}},
            {"from": {"node": "inc", "port": "out"}, "to": {"node": "cap", "port": "in"}},
            {"from": {"node": "cap", "port": "out"}, "to": {"node": "cost", "port": "in"}},
            {"from": {"node": "route", "port": "default"}, "to": {"node": "hit", "port": "in"}},
            {"from": {"node": "hit", "port": "out"}, "to": {"node": "out", "port": "in"}},
            {"from": {"node": "cost", "port": "out"}, "to": {"node": "out", "port": "in"}}
        ]
    })
}

/// Every template file in the repository.
pub fn templates() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../gym-templates");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&root).expect("gym-templates/ exists") {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.to_string_lossy().ends_with(".gym.json") {
                    out.push(f);
                }
            }
        }
    }
    out.sort();
    out
}
