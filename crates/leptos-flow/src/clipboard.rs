//! Copy and paste. A copied fragment carries the selected nodes and annotations and only the
//! wires between those nodes; pasting gives every item a fresh id, so a fragment pastes into
//! any graph (another gym too) without collisions or dangling wires.

use crate::history::{Command, Op};
use crate::model::{Annotation, Edge, Endpoint, Graph, Node, Pos};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What the clipboard holds. Serialised as JSON so it survives the system clipboard.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Fragment {
    /// Marks the JSON as ours when read back from the system clipboard.
    pub leptos_flow_fragment: u32,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<Annotation>,
}

impl Fragment {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.annotations.is_empty()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parse clipboard text; `None` when it is not a fragment.
    pub fn from_json(text: &str) -> Option<Fragment> {
        let f: Fragment = serde_json::from_str(text).ok()?;
        (f.leptos_flow_fragment == 1).then_some(f)
    }
}

/// Copy the given nodes, the wires among them, and the given annotations.
pub fn copy(g: &Graph, ids: &[String], annotations: &[String]) -> Fragment {
    let nodes: Vec<Node> = g.nodes.values().filter(|n| ids.contains(&n.id)).cloned().collect();
    let edges = g.edges.iter().filter(|e| ids.contains(&e.from.node) && ids.contains(&e.to.node)).cloned().collect();
    let annotations = g.annotations.values().filter(|a| annotations.contains(&a.id)).cloned().collect();
    Fragment { leptos_flow_fragment: 1, nodes, edges, annotations }
}

/// What a paste added: the new nodes' ids and the new annotations' ids.
pub type Pasted = (Vec<String>, Vec<String>);

/// A command that pastes the fragment with fresh ids, its top-left corner at `at` (or
/// offset from the original by `at` when `relative`). Returns the command and the new ids.
pub fn paste(g: &Graph, f: &Fragment, at: Pos, relative: bool) -> (Command, Pasted) {
    let corners = || f.nodes.iter().map(|n| n.pos).chain(f.annotations.iter().map(|a| a.pos));
    let min_x = corners().map(|p| p.x).fold(f64::INFINITY, f64::min);
    let min_y = corners().map(|p| p.y).fold(f64::INFINITY, f64::min);
    let (dx, dy) = if relative || !min_x.is_finite() { (at.x, at.y) } else { (at.x - min_x, at.y - min_y) };
    let mut probe = g.clone();
    let mut renamed = HashMap::new();
    let mut nodes = Vec::new();
    for n in &f.nodes {
        let id = probe.fresh_id(&n.id);
        // Reserve the id so the next node of the fragment does not take it too.
        probe.nodes.insert(id.clone(), Node::new(&id, &n.kind, n.pos));
        renamed.insert(n.id.clone(), id.clone());
        let mut copy = n.clone();
        copy.id = id;
        copy.pos = Pos::new(n.pos.x + dx, n.pos.y + dy);
        nodes.push(copy);
    }
    let edges = f
        .edges
        .iter()
        .filter_map(|e| {
            Some(Edge::new(
                Endpoint::new(renamed.get(&e.from.node)?, &e.from.port),
                Endpoint::new(renamed.get(&e.to.node)?, &e.to.port),
            ))
        })
        .collect();
    let ids = nodes.iter().map(|n| n.id.clone()).collect();
    let mut notes = Vec::new();
    for a in &f.annotations {
        let id = probe.fresh_annotation_id(&a.id);
        let mut copy = a.clone();
        copy.id = id.clone();
        copy.pos = Pos::new(a.pos.x + dx, a.pos.y + dy);
        probe.annotations.insert(id, copy.clone());
        notes.push(copy);
    }
    let note_ids = notes.iter().map(|a| a.id.clone()).collect();
    let label = match (f.nodes.len(), notes.len()) {
        (1, 0) => "Paste node".to_string(),
        (n, 0) => format!("Paste {n} nodes"),
        (n, m) => format!("Paste {} items", n + m),
    };
    let mut cmd = Command::add(&label, nodes, edges);
    cmd.ops.extend(notes.into_iter().map(|annotation| Op::InsertAnnotation { index: usize::MAX, annotation }));
    (cmd, (ids, note_ids))
}
