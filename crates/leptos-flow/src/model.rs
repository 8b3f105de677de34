//! The graph document: nodes with typed ports, and wires between them. Plain data; every
//! change goes through [`crate::history::History`] so it can be undone.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A point in graph (world) coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Pos {
    pub x: f64,
    pub y: f64,
}

impl Pos {
    pub fn new(x: f64, y: f64) -> Self {
        Pos { x, y }
    }
}

/// One port of a node. `ty` is an application-defined type name; which types may be wired
/// together is decided by [`crate::rules::WireRules`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default)]
    pub required: bool,
}

impl Port {
    pub fn new(name: &str, ty: &str) -> Self {
        Port { name: name.to_string(), ty: ty.to_string(), required: false }
    }
}

/// A node on the canvas. `data` is the application's payload (for a gym: the node's
/// parameters); the editor never interprets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub kind: String,
    #[serde(default)]
    pub title: String,
    pub pos: Pos,
    #[serde(default)]
    pub inputs: Vec<Port>,
    #[serde(default)]
    pub outputs: Vec<Port>,
    #[serde(default)]
    pub data: Value,
    /// Validation messages shown as a badge on the node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Node {
    pub fn new(id: &str, kind: &str, pos: Pos) -> Self {
        Node {
            id: id.to_string(),
            kind: kind.to_string(),
            title: String::new(),
            pos,
            inputs: Vec::new(),
            outputs: Vec::new(),
            data: Value::Null,
            errors: Vec::new(),
        }
    }

    pub fn with_ports(mut self, inputs: Vec<Port>, outputs: Vec<Port>) -> Self {
        self.inputs = inputs;
        self.outputs = outputs;
        self
    }

    pub fn input(&self, name: &str) -> Option<&Port> {
        self.inputs.iter().find(|p| p.name == name)
    }

    pub fn output(&self, name: &str) -> Option<&Port> {
        self.outputs.iter().find(|p| p.name == name)
    }

    /// The title to show: the explicit title, else the id.
    pub fn display_title(&self) -> &str {
        if self.title.is_empty() {
            &self.id
        } else {
            &self.title
        }
    }
}

/// One end of a wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    pub node: String,
    pub port: String,
}

impl Endpoint {
    pub fn new(node: &str, port: &str) -> Self {
        Endpoint { node: node.to_string(), port: port.to_string() }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.node, self.port)
    }
}

/// A wire from an output port to an input port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Edge {
    pub from: Endpoint,
    pub to: Endpoint,
}

impl Edge {
    pub fn new(from: Endpoint, to: Endpoint) -> Self {
        Edge { from, to }
    }

    /// A stable key for keyed rendering.
    pub fn key(&self) -> String {
        format!("{}>{}", self.from, self.to)
    }
}

/// The whole document. Node order is drawing order (later nodes on top).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Graph {
    pub nodes: IndexMap<String, Node>,
    pub edges: Vec<Edge>,
}

impl Graph {
    pub fn new() -> Self {
        Graph::default()
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id)
    }

    pub fn contains_edge(&self, edge: &Edge) -> bool {
        self.edges.iter().any(|e| e == edge)
    }

    /// Wires touching a node, with their indexes.
    pub fn edges_of(&self, id: &str) -> Vec<(usize, &Edge)> {
        self.edges.iter().enumerate().filter(|(_, e)| e.from.node == id || e.to.node == id).collect()
    }

    pub fn edges_into(&self, to: &Endpoint) -> Vec<(usize, &Edge)> {
        self.edges.iter().enumerate().filter(|(_, e)| &e.to == to).collect()
    }

    pub fn edges_out_of(&self, from: &Endpoint) -> Vec<(usize, &Edge)> {
        self.edges.iter().enumerate().filter(|(_, e)| &e.from == from).collect()
    }

    /// Whether `to` can reach `from` along wires, i.e. a wire `from → to` closes a cycle.
    pub fn reaches(&self, start: &str, goal: &str) -> bool {
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![start.to_string()];
        while let Some(n) = stack.pop() {
            if n == goal {
                return true;
            }
            if !seen.insert(n.clone()) {
                continue;
            }
            for e in &self.edges {
                if e.from.node == n && !seen.contains(&e.to.node) {
                    stack.push(e.to.node.clone());
                }
            }
        }
        false
    }

    /// An id not used by any node, built from `base` (`base`, `base_2`, `base_3`, …).
    pub fn fresh_id(&self, base: &str) -> String {
        let base = if base.is_empty() { "node" } else { base };
        if !self.nodes.contains_key(base) {
            return base.to_string();
        }
        let stem = match base.rsplit_once('_') {
            Some((stem, n)) if !stem.is_empty() && n.parse::<u64>().is_ok() => stem,
            _ => base,
        };
        (2..).map(|i| format!("{stem}_{i}")).find(|id| !self.nodes.contains_key(id)).unwrap_or_default()
    }

    /// Nodes no wire touches.
    pub fn unwired(&self) -> Vec<&str> {
        self.nodes
            .keys()
            .filter(|id| !self.edges.iter().any(|e| &e.from.node == *id || &e.to.node == *id))
            .map(String::as_str)
            .collect()
    }
}
