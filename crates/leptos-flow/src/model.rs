//! The graph document: nodes with typed ports, wires between them, and annotations (groups
//! and sticky notes) for the people reading it. Plain data; every change goes through
//! [`crate::history::History`] so it can be undone.

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

/// What an annotation is: a titled frame around nodes that moves what it holds, or a sticky
/// note of free text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnotationKind {
    Group,
    Note,
}

impl AnnotationKind {
    /// The word for it in undo labels ("Add note", "Resize group").
    pub fn noun(self) -> &'static str {
        match self {
            AnnotationKind::Group => "group",
            AnnotationKind::Note => "note",
        }
    }
}

/// A group or a note: a rectangle with text, behind the nodes. It has no ports and takes no
/// part in what the graph means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub id: String,
    pub kind: AnnotationKind,
    /// A group's title or a note's text.
    #[serde(default)]
    pub text: String,
    /// Top-left corner.
    pub pos: Pos,
    pub width: f64,
    pub height: f64,
    /// One of [`Annotation::TINTS`]; `None` is the kind's own colour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tint: Option<String>,
}

impl Annotation {
    /// The smallest size the editor resizes to (room for a title and a handle).
    pub const MIN_WIDTH: f64 = 120.0;
    pub const MIN_HEIGHT: f64 = 60.0;
    /// The size of a new note.
    pub const NOTE_SIZE: (f64, f64) = (220.0, 120.0);
    /// Colours a group or note can take (the stylesheet's `lf-tint-<name>` classes).
    pub const TINTS: &'static [&'static str] = &["grey", "blue", "green", "yellow", "red", "purple"];

    pub fn new(id: &str, kind: AnnotationKind, text: &str, pos: Pos, width: f64, height: f64) -> Self {
        Annotation { id: id.to_string(), kind, text: text.to_string(), pos, width, height, tint: None }
    }

    pub fn rect(&self) -> crate::geometry::Rect {
        crate::geometry::Rect { x: self.pos.x, y: self.pos.y, w: self.width, h: self.height }
    }
}

/// The whole document. Node order is drawing order (later nodes on top); annotations are
/// drawn behind every node, in their own order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Graph {
    pub nodes: IndexMap<String, Node>,
    pub edges: Vec<Edge>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub annotations: IndexMap<String, Annotation>,
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
        fresh(base, "node", |id| self.nodes.contains_key(id))
    }

    /// An annotation id not used yet, built from `base` as [`Graph::fresh_id`] does.
    pub fn fresh_annotation_id(&self, base: &str) -> String {
        fresh(base, "note", |id| self.annotations.contains_key(id))
    }

    /// What moves with a group: the nodes and the other annotations wholly inside it.
    pub fn group_contents(&self, id: &str) -> (Vec<String>, Vec<String>) {
        let Some(group) = self.annotations.get(id).filter(|a| a.kind == AnnotationKind::Group) else {
            return Default::default();
        };
        let r = group.rect();
        let nodes =
            self.nodes.values().filter(|n| r.contains_rect(&crate::geometry::node_rect(n))).map(|n| n.id.clone());
        let notes =
            self.annotations.values().filter(|a| a.id != id && r.contains_rect(&a.rect())).map(|a| a.id.clone());
        (nodes.collect(), notes.collect())
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

/// `base` (or `empty` when it is empty) if not `taken`, else the first free `stem_N` from 2,
/// where a `base` already ending in `_N` keeps its stem.
fn fresh(base: &str, empty: &str, taken: impl Fn(&str) -> bool) -> String {
    let base = if base.is_empty() { empty } else { base };
    if !taken(base) {
        return base.to_string();
    }
    let stem = match base.rsplit_once('_') {
        Some((stem, n)) if !stem.is_empty() && n.parse::<u64>().is_ok() => stem,
        _ => base,
    };
    (2..).map(|i| format!("{stem}_{i}")).find(|id| !taken(id)).unwrap_or_default()
}
