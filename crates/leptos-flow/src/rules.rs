//! Which wires are allowed. Checked while dragging (the port under the pointer turns red and
//! says why) and again when the wire is dropped, so a refused wire never enters the document.

use crate::model::{Edge, Endpoint, Graph};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Why a wire was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("no node `{0}`")]
    UnknownNode(String),
    #[error("`{node}` has no output `{port}`")]
    UnknownOutput { node: String, port: String },
    #[error("`{node}` has no input `{port}`")]
    UnknownInput { node: String, port: String },
    #[error("a node cannot be wired to itself")]
    SelfLoop,
    #[error("this wire already exists")]
    Duplicate,
    #[error("a `{from}` output cannot feed a `{to}` input")]
    Incompatible { from: String, to: String },
    #[error("this wire would close a cycle ({to} already leads back to {from})")]
    Cycle { from: String, to: String },
}

/// Port-type rules of an application.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WireRules {
    /// `(output type, input type)` pairs that may be wired.
    pub compat: HashSet<(String, String)>,
    /// Input types that take several wires (others take one; a new wire replaces the old).
    pub multi_input: HashSet<String>,
    /// Output types that feed exactly one input (a new wire replaces the old).
    pub single_output: HashSet<String>,
    /// Refuse wires that close a cycle.
    pub acyclic: bool,
}

/// The outcome of a successful check: the wire, and the wires it replaces.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub edge: Edge,
    pub replaces: Vec<Edge>,
}

impl WireRules {
    /// Rules where a type feeds only itself.
    pub fn same_type_only(types: &[&str]) -> Self {
        WireRules {
            compat: types.iter().map(|t| (t.to_string(), t.to_string())).collect(),
            acyclic: true,
            ..Default::default()
        }
    }

    pub fn can_feed(&self, from: &str, to: &str) -> bool {
        self.compat.contains(&(from.to_string(), to.to_string()))
    }

    /// Check a wire from an output to an input against the graph.
    pub fn check(&self, graph: &Graph, from: &Endpoint, to: &Endpoint) -> Result<Connection, WireError> {
        let a = graph.node(&from.node).ok_or_else(|| WireError::UnknownNode(from.node.clone()))?;
        let b = graph.node(&to.node).ok_or_else(|| WireError::UnknownNode(to.node.clone()))?;
        let out = a
            .output(&from.port)
            .ok_or_else(|| WireError::UnknownOutput { node: from.node.clone(), port: from.port.clone() })?;
        let inp = b
            .input(&to.port)
            .ok_or_else(|| WireError::UnknownInput { node: to.node.clone(), port: to.port.clone() })?;
        if from.node == to.node {
            return Err(WireError::SelfLoop);
        }
        let edge = Edge::new(from.clone(), to.clone());
        if graph.contains_edge(&edge) {
            return Err(WireError::Duplicate);
        }
        if !self.can_feed(&out.ty, &inp.ty) {
            return Err(WireError::Incompatible { from: out.ty.clone(), to: inp.ty.clone() });
        }
        let mut replaces = Vec::new();
        if !self.multi_input.contains(&inp.ty) {
            replaces.extend(graph.edges_into(to).into_iter().map(|(_, e)| e.clone()));
        }
        if self.single_output.contains(&out.ty) {
            replaces.extend(graph.edges_out_of(from).into_iter().map(|(_, e)| e.clone()));
        }
        if self.acyclic {
            // Replaced wires are gone once this one is in; check the graph without them.
            let mut probe = graph.clone();
            probe.edges.retain(|e| !replaces.contains(e));
            if probe.reaches(&to.node, &from.node) {
                return Err(WireError::Cycle { from: from.node.clone(), to: to.node.clone() });
            }
        }
        replaces.dedup();
        Ok(Connection { edge, replaces })
    }

    /// Whether an output of type `ty` could feed any input of `inputs` (for filtering the
    /// node search when a wire is dropped on empty canvas).
    pub fn accepts_any(&self, ty: &str, inputs: &[crate::model::Port]) -> bool {
        inputs.iter().any(|p| self.can_feed(ty, &p.ty))
    }
}
