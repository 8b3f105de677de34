//! Typed ports of each node kind. The editor and the validator both read this table, so a
//! wire the validator refuses is also refused while dragging.

use crate::spec::{NodeKind, VarType};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What travels on a wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PortType {
    /// Control flow: which node runs next.
    Flow,
    Text,
    Number,
    Bool,
    /// Any JSON value.
    Json,
    /// A parsed action.
    Action,
}

impl PortType {
    /// Whether an output of type `self` may feed an input of type `to`.
    /// Flow only meets flow; `json` inputs take any data; `text` inputs also take numbers
    /// and booleans (rendered as text).
    pub fn can_feed(self, to: PortType) -> bool {
        use PortType::*;
        match (self, to) {
            (Flow, Flow) => true,
            (Flow, _) | (_, Flow) => false,
            (a, b) if a == b => true,
            (_, Json) => true,
            (Number | Bool, Text) => true,
            _ => false,
        }
    }

    pub fn from_var(ty: VarType) -> Self {
        match ty {
            VarType::Bool => PortType::Bool,
            VarType::Int | VarType::Float => PortType::Number,
            VarType::String => PortType::Text,
            VarType::List | VarType::Object => PortType::Json,
        }
    }
}

impl std::fmt::Display for PortType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            PortType::Flow => "flow",
            PortType::Text => "text",
            PortType::Number => "number",
            PortType::Bool => "bool",
            PortType::Json => "json",
            PortType::Action => "action",
        };
        f.write_str(s)
    }
}

/// One port of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PortDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: PortType,
    /// Inputs only: must be wired.
    pub required: bool,
}

fn p(name: &str, ty: PortType, required: bool) -> PortDef {
    PortDef { name: name.to_string(), ty, required }
}

/// The role of a node in evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Starts a walk (on reset / on step).
    Trigger,
    /// Configuration only: no ports, never runs.
    Config,
    /// Computed on demand when an output is read; no flow ports.
    Pure,
    /// Runs when flow reaches it.
    Flow,
    /// Ends a walk.
    Terminus,
}

/// Inputs and outputs of a node. `var_type` is the declared type of the variable a
/// `get_state` node reads, when known.
pub fn ports(kind: &NodeKind, var_type: Option<VarType>) -> (Vec<PortDef>, Vec<PortDef>) {
    use PortType::*;
    let flow_in = || p("in", Flow, true);
    let flow_out = || p("out", Flow, false);
    match kind {
        NodeKind::OnReset {} => (vec![], vec![flow_out()]),
        NodeKind::OnStep {} => (vec![], vec![flow_out(), p("action", Action, false)]),
        NodeKind::ActionSpace { .. } | NodeKind::ObservationSpace { .. } => (vec![], vec![]),
        NodeKind::Documentation { .. } | NodeKind::Persona { .. } => (vec![], vec![p("text", Text, false)]),
        NodeKind::GetState { .. } => {
            let ty = var_type.map(PortType::from_var).unwrap_or(Json);
            (vec![], vec![p("value", ty, false)])
        }
        NodeKind::SetState { .. } => (vec![flow_in(), p("value", Json, false)], vec![flow_out()]),
        NodeKind::SqlQuery { .. } => (
            vec![flow_in(), p("query", Text, false)],
            vec![flow_out(), p("result", Json, false), p("text", Text, false), p("ok", Bool, false)],
        ),
        NodeKind::MockCli { .. } => (
            vec![flow_in(), p("command", Text, false)],
            vec![flow_out(), p("stdout", Text, false), p("exit_code", Number, false), p("result", Json, false)],
        ),
        NodeKind::HttpRequest { .. } => (
            vec![flow_in(), p("body", Json, false)],
            vec![flow_out(), p("response", Json, false), p("text", Text, false), p("ok", Bool, false)],
        ),
        NodeKind::McpCall { .. } => (
            vec![flow_in(), p("arguments", Json, false)],
            vec![flow_out(), p("result", Json, false), p("text", Text, false), p("ok", Bool, false)],
        ),
        NodeKind::Switch { cases } => {
            let mut outs: Vec<PortDef> = cases.iter().map(|c| p(&c.name, Flow, false)).collect();
            outs.push(p("default", Flow, false));
            (vec![flow_in(), p("value", Json, false)], outs)
        }
        NodeKind::Extract { .. } => {
            (vec![p("value", Json, true)], vec![p("value", Json, false), p("text", Text, false)])
        }
        NodeKind::Template { .. } => (vec![p("value", Json, false)], vec![p("text", Text, false)]),
        NodeKind::Constraint { .. } => {
            (vec![flow_in(), p("value", Json, false)], vec![flow_out(), p("violated", Bool, false)])
        }
        NodeKind::Reward { .. } => {
            (vec![flow_in(), p("value", Json, false)], vec![flow_out(), p("reward", Number, false)])
        }
        NodeKind::Overseer { .. } => (
            vec![flow_in(), p("subject", Text, false)],
            vec![flow_out(), p("score", Number, false), p("rationale", Text, false)],
        ),
        NodeKind::ReturnReset { .. } => (vec![flow_in(), p("observation", Text, false)], vec![]),
        NodeKind::ReturnStep { .. } => {
            (vec![flow_in(), p("observation", Text, false), p("terminated", Bool, false)], vec![])
        }
    }
}

/// How a node takes part in evaluation.
pub fn role(kind: &NodeKind) -> Role {
    match kind {
        NodeKind::OnReset {} | NodeKind::OnStep {} => Role::Trigger,
        NodeKind::ActionSpace { .. } | NodeKind::ObservationSpace { .. } => Role::Config,
        NodeKind::Documentation { .. }
        | NodeKind::Persona { .. }
        | NodeKind::GetState { .. }
        | NodeKind::Extract { .. }
        | NodeKind::Template { .. } => Role::Pure,
        NodeKind::ReturnReset { .. } | NodeKind::ReturnStep { .. } => Role::Terminus,
        _ => Role::Flow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_never_meets_data() {
        for t in [PortType::Text, PortType::Number, PortType::Bool, PortType::Json, PortType::Action] {
            assert!(!PortType::Flow.can_feed(t));
            assert!(!t.can_feed(PortType::Flow));
            assert!(t.can_feed(PortType::Json));
        }
        assert!(!PortType::Text.can_feed(PortType::Number));
        assert!(!PortType::Json.can_feed(PortType::Text));
        assert!(PortType::Number.can_feed(PortType::Text));
    }
}
