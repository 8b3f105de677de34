//! The command log. Every change to a [`Graph`] is a [`Command`] made of primitive [`Op`]s;
//! applying one records its inverse, so any change (paste, layout, a JSON edit, an AI
//! proposal) is one undo step, and "unsaved" is exact: undoing back to the saved state
//! makes the document clean again.

use crate::model::{Annotation, Edge, Graph, Node, Pos};
use crate::rules::{WireError, WireRules};

/// A primitive change. Each has an exact inverse.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Insert a node at a drawing-order index (clamped).
    InsertNode {
        index: usize,
        node: Node,
    },
    RemoveNode {
        id: String,
    },
    /// Replace a node (same id) wholesale: data, ports, title, position.
    SetNode {
        node: Node,
    },
    MoveNode {
        id: String,
        to: Pos,
    },
    /// Insert a wire at an index (clamped).
    InsertEdge {
        index: usize,
        edge: Edge,
    },
    RemoveEdge {
        edge: Edge,
    },
    /// Insert an annotation at a drawing-order index (clamped).
    InsertAnnotation {
        index: usize,
        annotation: Annotation,
    },
    RemoveAnnotation {
        id: String,
    },
    /// Replace an annotation (same id): text, place, size.
    SetAnnotation {
        annotation: Annotation,
    },
    MoveAnnotation {
        id: String,
        to: Pos,
    },
    /// Replace the whole document (a JSON edit, a template opened into the same editor).
    ReplaceAll {
        graph: Box<Graph>,
    },
}

/// Why a command could not be applied. The document is unchanged when this is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EditError {
    #[error("no node `{0}`")]
    UnknownNode(String),
    #[error("no annotation `{0}`")]
    UnknownAnnotation(String),
    #[error("an annotation `{0}` already exists")]
    DuplicateAnnotation(String),
    #[error("a node `{0}` already exists")]
    DuplicateNode(String),
    #[error("no such wire {0}")]
    UnknownEdge(String),
    #[error("a wire between {from} and {to} names a node that is not there")]
    DanglingEdge { from: String, to: String },
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl Op {
    /// Apply to the graph and return the inverse op.
    fn apply(self, g: &mut Graph) -> Result<Op, EditError> {
        match self {
            Op::InsertNode { index, node } => {
                if g.nodes.contains_key(&node.id) {
                    return Err(EditError::DuplicateNode(node.id));
                }
                let id = node.id.clone();
                let index = index.min(g.nodes.len());
                g.nodes.shift_insert(index, id.clone(), node);
                Ok(Op::RemoveNode { id })
            }
            Op::RemoveNode { id } => {
                if let Some((_, e)) = g.edges_of(&id).first() {
                    // Commands remove wires first; refusing here keeps the document whole.
                    return Err(EditError::DanglingEdge { from: e.from.to_string(), to: e.to.to_string() });
                }
                let index = g.nodes.get_index_of(&id).ok_or_else(|| EditError::UnknownNode(id.clone()))?;
                let node = g.nodes.shift_remove(&id).ok_or(EditError::UnknownNode(id))?;
                Ok(Op::InsertNode { index, node })
            }
            Op::SetNode { node } => {
                let slot = g.nodes.get_mut(&node.id).ok_or_else(|| EditError::UnknownNode(node.id.clone()))?;
                let before = std::mem::replace(slot, node);
                Ok(Op::SetNode { node: before })
            }
            Op::MoveNode { id, to } => {
                let slot = g.nodes.get_mut(&id).ok_or_else(|| EditError::UnknownNode(id.clone()))?;
                let before = slot.pos;
                slot.pos = to;
                Ok(Op::MoveNode { id, to: before })
            }
            Op::InsertEdge { index, edge } => {
                if !g.nodes.contains_key(&edge.from.node) || !g.nodes.contains_key(&edge.to.node) {
                    return Err(EditError::DanglingEdge { from: edge.from.to_string(), to: edge.to.to_string() });
                }
                let index = index.min(g.edges.len());
                g.edges.insert(index, edge.clone());
                Ok(Op::RemoveEdge { edge })
            }
            Op::RemoveEdge { edge } => {
                let index =
                    g.edges.iter().position(|e| e == &edge).ok_or_else(|| EditError::UnknownEdge(edge.key()))?;
                g.edges.remove(index);
                Ok(Op::InsertEdge { index, edge })
            }
            Op::InsertAnnotation { index, annotation } => {
                if g.annotations.contains_key(&annotation.id) {
                    return Err(EditError::DuplicateAnnotation(annotation.id));
                }
                let id = annotation.id.clone();
                let index = index.min(g.annotations.len());
                g.annotations.shift_insert(index, id.clone(), annotation);
                Ok(Op::RemoveAnnotation { id })
            }
            Op::RemoveAnnotation { id } => {
                let index = g.annotations.get_index_of(&id).ok_or_else(|| EditError::UnknownAnnotation(id.clone()))?;
                let annotation = g.annotations.shift_remove(&id).ok_or(EditError::UnknownAnnotation(id))?;
                Ok(Op::InsertAnnotation { index, annotation })
            }
            Op::SetAnnotation { annotation } => {
                let slot = g
                    .annotations
                    .get_mut(&annotation.id)
                    .ok_or_else(|| EditError::UnknownAnnotation(annotation.id.clone()))?;
                let before = std::mem::replace(slot, annotation);
                Ok(Op::SetAnnotation { annotation: before })
            }
            Op::MoveAnnotation { id, to } => {
                let slot = g.annotations.get_mut(&id).ok_or_else(|| EditError::UnknownAnnotation(id.clone()))?;
                let before = slot.pos;
                slot.pos = to;
                Ok(Op::MoveAnnotation { id, to: before })
            }
            Op::ReplaceAll { graph } => {
                let before = std::mem::replace(g, *graph);
                Ok(Op::ReplaceAll { graph: Box::new(before) })
            }
        }
    }
}

/// A named, undoable change.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub label: String,
    pub ops: Vec<Op>,
}

impl Command {
    pub fn new(label: impl Into<String>, ops: Vec<Op>) -> Self {
        Command { label: label.into(), ops }
    }

    /// Add nodes (and wires among them or to existing nodes).
    pub fn add(label: &str, nodes: Vec<Node>, edges: Vec<Edge>) -> Self {
        let mut ops: Vec<Op> = nodes.into_iter().map(|node| Op::InsertNode { index: usize::MAX, node }).collect();
        ops.extend(edges.into_iter().map(|edge| Op::InsertEdge { index: usize::MAX, edge }));
        Command::new(label, ops)
    }

    /// Delete nodes and every wire touching them, plus the given wires and annotations
    /// (deleting a group leaves what it held).
    pub fn delete(g: &Graph, ids: &[String], edges: &[Edge], annotations: &[String]) -> Self {
        let mut gone: Vec<Edge> =
            g.edges.iter().filter(|e| ids.contains(&e.from.node) || ids.contains(&e.to.node)).cloned().collect();
        for e in edges {
            if !gone.contains(e) && g.contains_edge(e) {
                gone.push(e.clone());
            }
        }
        let mut ops: Vec<Op> = gone.into_iter().map(|edge| Op::RemoveEdge { edge }).collect();
        ops.extend(ids.iter().filter(|id| g.nodes.contains_key(*id)).map(|id| Op::RemoveNode { id: id.clone() }));
        let notes: Vec<&String> = annotations.iter().filter(|id| g.annotations.contains_key(*id)).collect();
        ops.extend(notes.iter().map(|id| Op::RemoveAnnotation { id: (*id).clone() }));
        let label = match (ids.len(), notes.len()) {
            (0, 0) => "Delete wires".to_string(),
            (1, 0) => "Delete node".to_string(),
            (n, 0) => format!("Delete {n} nodes"),
            (0, 1) => "Delete annotation".to_string(),
            (0, m) => format!("Delete {m} annotations"),
            (n, m) => format!("Delete {n} nodes and {m} annotations"),
        };
        Command::new(label, ops)
    }

    /// Move nodes to new positions (one undo step for a whole drag).
    pub fn moves(moves: Vec<(String, Pos)>) -> Self {
        Command::move_items(moves, Vec::new())
    }

    /// Move nodes and annotations (a group dragged with what it holds) as one step.
    pub fn move_items(nodes: Vec<(String, Pos)>, annotations: Vec<(String, Pos)>) -> Self {
        let label = match (nodes.len(), annotations.len()) {
            (1, 0) => "Move node".to_string(),
            (n, 0) => format!("Move {n} nodes"),
            (0, 1) => "Move annotation".to_string(),
            (n, m) => format!("Move {} items", n + m),
        };
        let mut ops: Vec<Op> = nodes.into_iter().map(|(id, to)| Op::MoveNode { id, to }).collect();
        ops.extend(annotations.into_iter().map(|(id, to)| Op::MoveAnnotation { id, to }));
        Command::new(label, ops)
    }

    /// Add an annotation on top of the others.
    pub fn annotate(annotation: Annotation) -> Self {
        let label = format!("Add {}", annotation.kind.noun());
        Command::new(label, vec![Op::InsertAnnotation { index: usize::MAX, annotation }])
    }

    /// A group around the given nodes (and annotations), titled `title`; `None` when there is
    /// nothing to group. Groups go behind the annotations they may hold.
    pub fn group(g: &Graph, nodes: &[String], annotations: &[String], title: &str) -> Option<(Self, String)> {
        let inner = g.annotations.values().filter(|a| annotations.contains(&a.id)).map(Annotation::rect);
        let r = crate::geometry::bounds(g, Some(nodes)).into_iter().chain(inner).reduce(|a, b| a.union(&b))?;
        let r = crate::geometry::group_rect(&r);
        let id = g.fresh_annotation_id("group");
        let group = Annotation::new(&id, crate::AnnotationKind::Group, title, Pos::new(r.x, r.y), r.w, r.h);
        Some((Command::new("Group", vec![Op::InsertAnnotation { index: 0, annotation: group }]), id))
    }

    /// Replace one annotation (its text edited, or resized).
    pub fn set_annotation(g: &Graph, annotation: Annotation, label: &str) -> Result<Self, EditError> {
        if !g.annotations.contains_key(&annotation.id) {
            return Err(EditError::UnknownAnnotation(annotation.id));
        }
        Ok(Command::new(label, vec![Op::SetAnnotation { annotation }]))
    }

    /// Connect two ports, replacing wires the rules say the new one replaces.
    pub fn connect(
        rules: &WireRules,
        g: &Graph,
        from: &crate::Endpoint,
        to: &crate::Endpoint,
    ) -> Result<Self, EditError> {
        let c = rules.check(g, from, to)?;
        let mut ops: Vec<Op> = c.replaces.into_iter().map(|edge| Op::RemoveEdge { edge }).collect();
        ops.push(Op::InsertEdge { index: usize::MAX, edge: c.edge });
        Ok(Command::new("Connect", ops))
    }

    /// Replace one node (a properties edit), dropping wires to ports it no longer has.
    pub fn set_node(g: &Graph, node: Node) -> Result<Self, EditError> {
        if !g.nodes.contains_key(&node.id) {
            return Err(EditError::UnknownNode(node.id));
        }
        let mut ops: Vec<Op> = g
            .edges
            .iter()
            .filter(|e| {
                (e.from.node == node.id && node.output(&e.from.port).is_none())
                    || (e.to.node == node.id && node.input(&e.to.port).is_none())
            })
            .cloned()
            .map(|edge| Op::RemoveEdge { edge })
            .collect();
        ops.push(Op::SetNode { node });
        Ok(Command::new("Edit node", ops))
    }

    /// Replace the document wholesale.
    pub fn replace_all(label: &str, graph: Graph) -> Self {
        Command::new(label, vec![Op::ReplaceAll { graph: Box::new(graph) }])
    }
}

#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    label: String,
    /// Ops that undo the command, in the order to apply them.
    undo: Vec<Op>,
    /// Ops that redo it.
    redo: Vec<Op>,
}

/// The document plus its undo/redo log and the saved marker.
#[derive(Debug, Clone, Default)]
pub struct History {
    graph: Graph,
    done: Vec<Entry>,
    undone: Vec<Entry>,
    next_seq: u64,
    /// Sequence number of the entry on top of `done` when last saved (0: the initial state).
    saved: u64,
    /// Bumped on every change, for views that redraw on change.
    revision: u64,
}

impl History {
    pub fn new(graph: Graph) -> Self {
        History { graph, next_seq: 1, ..Default::default() }
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn top(&self) -> u64 {
        self.done.last().map(|e| e.seq).unwrap_or(0)
    }

    /// Whether the document differs from what was last saved.
    pub fn is_dirty(&self) -> bool {
        self.top() != self.saved
    }

    pub fn mark_saved(&mut self) {
        self.saved = self.top();
    }

    pub fn can_undo(&self) -> bool {
        !self.done.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.undone.is_empty()
    }

    pub fn undo_label(&self) -> Option<&str> {
        self.done.last().map(|e| e.label.as_str())
    }

    pub fn redo_label(&self) -> Option<&str> {
        self.undone.last().map(|e| e.label.as_str())
    }

    /// Apply ops in order; on failure roll back what was applied and leave the graph as it was.
    fn run(graph: &mut Graph, ops: Vec<Op>) -> Result<Vec<Op>, EditError> {
        let mut inverse = Vec::with_capacity(ops.len());
        for op in ops {
            match op.apply(graph) {
                Ok(inv) => inverse.push(inv),
                Err(e) => {
                    for inv in inverse.into_iter().rev() {
                        // Inverses of ops that just applied cannot fail.
                        let _ = inv.apply(graph);
                    }
                    return Err(e);
                }
            }
        }
        inverse.reverse();
        Ok(inverse)
    }

    /// Apply a command. An empty command is not recorded. On error nothing changes.
    pub fn apply(&mut self, cmd: Command) -> Result<(), EditError> {
        if cmd.ops.is_empty() {
            return Ok(());
        }
        let redo = cmd.ops.clone();
        let undo = Self::run(&mut self.graph, cmd.ops)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.done.push(Entry { seq, label: cmd.label, undo, redo });
        self.undone.clear();
        self.revision += 1;
        Ok(())
    }

    /// Undo the last command; returns its label.
    pub fn undo(&mut self) -> Option<String> {
        let entry = self.done.pop()?;
        match Self::run(&mut self.graph, entry.undo.clone()) {
            Ok(_) => {
                self.revision += 1;
                let label = entry.label.clone();
                self.undone.push(entry);
                Some(label)
            }
            Err(_) => {
                self.done.push(entry);
                None
            }
        }
    }

    /// Redo the last undone command; returns its label.
    pub fn redo(&mut self) -> Option<String> {
        let entry = self.undone.pop()?;
        match Self::run(&mut self.graph, entry.redo.clone()) {
            Ok(_) => {
                self.revision += 1;
                let label = entry.label.clone();
                self.done.push(entry);
                Some(label)
            }
            Err(_) => {
                self.undone.push(entry);
                None
            }
        }
    }

    /// Change a node's validation badges without recording an undo step (they are derived
    /// from the document, not part of it).
    pub fn set_errors(&mut self, id: &str, errors: Vec<String>) {
        if let Some(n) = self.graph.nodes.get_mut(id) {
            if n.errors != errors {
                n.errors = errors;
                self.revision += 1;
            }
        }
    }

    /// Change a node's ports without an undo step, when they are derived from its data by the
    /// application (and drop wires to ports that are gone).
    pub fn set_ports(&mut self, id: &str, inputs: Vec<crate::Port>, outputs: Vec<crate::Port>) {
        if let Some(n) = self.graph.nodes.get_mut(id) {
            if n.inputs != inputs || n.outputs != outputs {
                n.inputs = inputs;
                n.outputs = outputs;
                self.revision += 1;
            }
        }
    }
}
