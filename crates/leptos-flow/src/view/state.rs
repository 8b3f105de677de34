//! The editor's reactive state: the document (a [`History`]) plus one signal per node, so
//! that dragging one node re-renders that node and its wires only.

use crate::clipboard::{self, Fragment};
use crate::geometry::{self, Rect, Viewport};
use crate::history::{Command, EditError, History};
use crate::model::{Annotation, AnnotationKind, Edge, Endpoint, Graph, Node, Port, Pos};
use crate::rules::WireRules;
use indexmap::IndexMap;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;

/// One entry of the palette: what a new node of this kind looks like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaletteItem {
    pub kind: String,
    pub title: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub inputs: Vec<Port>,
    #[serde(default)]
    pub outputs: Vec<Port>,
    #[serde(default)]
    pub data: Value,
}

impl PaletteItem {
    /// Whether the item matches a search query (kind, title, category or description).
    pub fn matches(&self, query: &str) -> bool {
        let q = query.trim().to_lowercase();
        q.is_empty()
            || [&self.kind, &self.title, &self.category, &self.description]
                .iter()
                .any(|s| s.to_lowercase().contains(&q))
    }
}

/// Signals of one node.
#[derive(Clone, Copy)]
pub struct NodeSig {
    pub pos: RwSignal<Pos>,
    pub node: RwSignal<Node>,
}

impl NodeSig {
    /// The node's rectangle in world coordinates (tracks its place and ports).
    pub fn rect(&self) -> Rect {
        let p = self.pos.get();
        Rect { x: p.x, y: p.y, w: geometry::NODE_WIDTH, h: self.node.with(geometry::node_height) }
    }
}

/// A wire being dragged from a port.
#[derive(Debug, Clone, PartialEq)]
pub struct WireDrag {
    /// The port the drag started from, and whether it is an output.
    pub anchor: Endpoint,
    pub from_output: bool,
    pub anchor_type: String,
    /// Pointer in world coordinates.
    pub pointer: Pos,
    /// The port the wire would snap to, and why it would be refused (if it would).
    pub target: Option<(Endpoint, Result<(), String>)>,
}

/// A message on the canvas (a refused wire, an undo label).
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub text: String,
    pub error: bool,
    pub serial: u64,
}

/// The node search popup (double-click on the canvas, or a wire dropped on empty space).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPopup {
    /// Where the new node goes, in world and screen coordinates.
    pub world: Pos,
    pub screen: Pos,
    /// A wire to complete: its anchor, whether that is an output, and its type.
    pub wire: Option<(Endpoint, bool, String)>,
}

/// Items (nodes or annotations) with a place each.
pub(crate) type Places = Vec<(String, Pos)>;

/// What a pointer drag is doing.
#[derive(Debug, Clone)]
pub(crate) enum Drag {
    Pan {
        start: Pos,
        vp: Viewport,
        moved: bool,
    },
    /// Nodes and annotations moving together, from where each started.
    Move {
        start: Pos,
        nodes: Places,
        annotations: Places,
        moved: bool,
    },
    /// An annotation's bottom-right corner, from its size at the press.
    Resize {
        id: String,
        start: Pos,
        size: (f64, f64),
        moved: bool,
    },
    Wire,
    Box {
        start: Pos,
        additive: bool,
    },
}

/// Everything the canvas, palette and application share. `Copy`: it is a bundle of handles.
#[derive(Clone, Copy)]
pub struct FlowState {
    doc: StoredValue<History>,
    rules: StoredValue<WireRules>,
    pub nodes: RwSignal<IndexMap<String, NodeSig>>,
    pub edges: RwSignal<Vec<Edge>>,
    /// Groups and notes, one signal each (drawing order).
    pub annotations: RwSignal<IndexMap<String, RwSignal<Annotation>>>,
    pub selection: RwSignal<BTreeSet<String>>,
    pub selected_annotations: RwSignal<BTreeSet<String>>,
    /// The annotation whose text is being edited in place.
    pub editing: RwSignal<Option<String>>,
    pub selected_edges: RwSignal<BTreeSet<String>>,
    pub viewport: RwSignal<Viewport>,
    /// Canvas size in screen pixels.
    pub size: RwSignal<(f64, f64)>,
    /// Bumped on every document change (not on selection or viewport changes).
    pub revision: RwSignal<u64>,
    pub dirty: RwSignal<bool>,
    pub can_undo: RwSignal<bool>,
    pub can_redo: RwSignal<bool>,
    pub notice: RwSignal<Option<Notice>>,
    pub wire: RwSignal<Option<WireDrag>>,
    pub box_select: RwSignal<Option<Rect>>,
    pub palette: RwSignal<Vec<PaletteItem>>,
    pub search: RwSignal<Option<SearchPopup>>,
    pub show_shortcuts: RwSignal<bool>,
    pub readonly: RwSignal<bool>,
    /// A palette item being dragged onto the canvas, and the pointer in screen coordinates
    /// of the page.
    pub palette_drag: RwSignal<Option<(PaletteItem, Pos)>>,
    clipboard: StoredValue<Option<Fragment>>,
    pub(crate) drag: StoredValue<Option<Drag>>,
    notices: StoredValue<u64>,
}

/// Grid used by nudging and snapping.
pub const GRID: f64 = 10.0;

impl FlowState {
    pub fn new(graph: Graph, rules: WireRules) -> Self {
        let s = FlowState {
            doc: StoredValue::new(History::new(Graph::new())),
            rules: StoredValue::new(rules),
            nodes: RwSignal::new(IndexMap::new()),
            edges: RwSignal::new(Vec::new()),
            annotations: RwSignal::new(IndexMap::new()),
            selection: RwSignal::new(BTreeSet::new()),
            selected_annotations: RwSignal::new(BTreeSet::new()),
            editing: RwSignal::new(None),
            selected_edges: RwSignal::new(BTreeSet::new()),
            viewport: RwSignal::new(Viewport::default()),
            size: RwSignal::new((800.0, 600.0)),
            revision: RwSignal::new(0),
            dirty: RwSignal::new(false),
            can_undo: RwSignal::new(false),
            can_redo: RwSignal::new(false),
            notice: RwSignal::new(None),
            wire: RwSignal::new(None),
            box_select: RwSignal::new(None),
            palette: RwSignal::new(Vec::new()),
            search: RwSignal::new(None),
            show_shortcuts: RwSignal::new(false),
            readonly: RwSignal::new(false),
            palette_drag: RwSignal::new(None),
            clipboard: StoredValue::new(None),
            drag: StoredValue::new(None),
            notices: StoredValue::new(0),
        };
        s.load(graph);
        s
    }

    /// Open a new document: history cleared, clean.
    pub fn load(&self, graph: Graph) {
        self.doc.set_value(History::new(graph));
        self.selection.set(BTreeSet::new());
        self.selected_edges.set(BTreeSet::new());
        self.selected_annotations.set(BTreeSet::new());
        self.editing.set(None);
        self.sync();
    }

    pub fn rules(&self) -> WireRules {
        self.rules.get_value()
    }

    pub fn set_rules(&self, rules: WireRules) {
        self.rules.set_value(rules);
    }

    /// A copy of the document.
    pub fn graph(&self) -> Graph {
        self.doc.with_value(|h| h.graph().clone())
    }

    pub fn with_graph<R>(&self, f: impl FnOnce(&Graph) -> R) -> R {
        self.doc.with_value(|h| f(h.graph()))
    }

    pub fn undo_label(&self) -> Option<String> {
        self.doc.with_value(|h| h.undo_label().map(str::to_string))
    }

    pub fn redo_label(&self) -> Option<String> {
        self.doc.with_value(|h| h.redo_label().map(str::to_string))
    }

    /// Bring the signals in line with the document, touching only what changed. A document
    /// change bumps `revision`; derived data (badges, ports) does not.
    fn sync(&self) {
        self.sync_signals(true);
    }

    fn sync_signals(&self, bump_revision: bool) {
        let (graph, dirty, can_undo, can_redo) =
            self.doc.with_value(|h| (h.graph().clone(), h.is_dirty(), h.can_undo(), h.can_redo()));
        let mut added = false;
        let mut removed = false;
        self.nodes.with_untracked(|map| {
            removed = map.keys().any(|k| !graph.nodes.contains_key(k));
            added = graph.nodes.keys().any(|k| !map.contains_key(k));
            for (id, n) in &graph.nodes {
                if let Some(sig) = map.get(id) {
                    if sig.pos.get_untracked() != n.pos {
                        sig.pos.set(n.pos);
                    }
                    if sig.node.with_untracked(|old| old != n) {
                        sig.node.set(n.clone());
                    }
                }
            }
        });
        let order_changed = self.nodes.with_untracked(|map| !map.keys().eq(graph.nodes.keys()));
        if added || removed || order_changed {
            let old = self.nodes.get_untracked();
            let map: IndexMap<String, NodeSig> = graph
                .nodes
                .iter()
                .map(|(id, n)| {
                    let sig = old
                        .get(id)
                        .copied()
                        .unwrap_or_else(|| NodeSig { pos: RwSignal::new(n.pos), node: RwSignal::new(n.clone()) });
                    (id.clone(), sig)
                })
                .collect();
            self.nodes.set(map);
            self.selection.update(|s| s.retain(|id| graph.nodes.contains_key(id)));
        }
        self.sync_annotations(&graph);
        if self.edges.with_untracked(|e| e != &graph.edges) {
            let keys: BTreeSet<String> = graph.edges.iter().map(Edge::key).collect();
            self.selected_edges.update(|s| s.retain(|k| keys.contains(k)));
            self.edges.set(graph.edges.clone());
        }
        if bump_revision {
            self.revision.update(|r| *r += 1);
        }
        self.dirty.set(dirty);
        self.can_undo.set(can_undo);
        self.can_redo.set(can_redo);
    }

    /// Annotation signals in line with the document: changed ones set, the map rebuilt only
    /// when one came, went or changed places.
    fn sync_annotations(&self, graph: &Graph) {
        let same_keys = self.annotations.with_untracked(|map| {
            for (id, a) in &graph.annotations {
                if let Some(sig) = map.get(id) {
                    if sig.with_untracked(|old| old != a) {
                        sig.set(a.clone());
                    }
                }
            }
            map.keys().eq(graph.annotations.keys())
        });
        if !same_keys {
            let old = self.annotations.get_untracked();
            let map = graph
                .annotations
                .iter()
                .map(|(id, a)| (id.clone(), old.get(id).copied().unwrap_or_else(|| RwSignal::new(a.clone()))))
                .collect();
            self.annotations.set(map);
            self.selected_annotations.update(|s| s.retain(|id| graph.annotations.contains_key(id)));
            if self.editing.with_untracked(|e| e.as_ref().is_some_and(|id| !graph.annotations.contains_key(id))) {
                self.editing.set(None);
            }
        }
    }

    /// Apply a command (one undo step). Refused while read-only.
    pub fn apply(&self, cmd: Command) -> Result<(), EditError> {
        if self.readonly.get_untracked() {
            return Ok(());
        }
        let mut out = Ok(());
        self.doc.update_value(|h| out = h.apply(cmd));
        if let Err(e) = &out {
            self.notify(e.to_string(), true);
        }
        self.sync();
        out
    }

    pub fn undo(&self) {
        let mut label = None;
        self.doc.update_value(|h| label = h.undo());
        if let Some(l) = label {
            self.notify(format!("Undo: {l}"), false);
        }
        self.sync();
    }

    pub fn redo(&self) {
        let mut label = None;
        self.doc.update_value(|h| label = h.redo());
        if let Some(l) = label {
            self.notify(format!("Redo: {l}"), false);
        }
        self.sync();
    }

    pub fn mark_saved(&self) {
        self.doc.update_value(|h| h.mark_saved());
        self.dirty.set(false);
    }

    /// Replace the whole document as one undo step (a JSON edit, an AI proposal).
    pub fn replace(&self, label: &str, graph: Graph) {
        if self.with_graph(|g| g == &graph) {
            return;
        }
        let _ = self.apply(Command::replace_all(label, graph));
    }

    /// Set validation badges (not an undo step).
    pub fn set_errors(&self, errors: &std::collections::HashMap<String, Vec<String>>) {
        self.doc.update_value(|h| {
            let ids: Vec<String> = h.graph().nodes.keys().cloned().collect();
            for id in ids {
                h.set_errors(&id, errors.get(&id).cloned().unwrap_or_default());
            }
        });
        self.sync_signals(false);
    }

    /// Set ports derived from node data (not an undo step).
    pub fn set_ports(&self, id: &str, inputs: Vec<Port>, outputs: Vec<Port>) {
        self.doc.update_value(|h| h.set_ports(id, inputs, outputs));
        self.sync_signals(false);
    }

    pub fn notify(&self, text: String, error: bool) {
        let mut serial = 0;
        self.notices.update_value(|n| {
            *n += 1;
            serial = *n;
        });
        self.notice.set(Some(Notice { text, error, serial }));
        let notice = self.notice;
        set_timeout(
            move || {
                if notice.get_untracked().is_some_and(|n| n.serial == serial) {
                    notice.set(None);
                }
            },
            std::time::Duration::from_millis(if error { 6000 } else { 2500 }),
        );
    }

    pub fn select_only(&self, ids: impl IntoIterator<Item = String>) {
        self.selection.set(ids.into_iter().collect());
        self.selected_edges.set(BTreeSet::new());
        self.selected_annotations.set(BTreeSet::new());
    }

    /// Select these nodes and annotations, nothing else.
    pub fn select_items(&self, ids: impl IntoIterator<Item = String>, annotations: impl IntoIterator<Item = String>) {
        self.select_only(ids);
        self.selected_annotations.set(annotations.into_iter().collect());
    }

    pub fn selected_annotation_ids(&self) -> Vec<String> {
        self.selected_annotations.get_untracked().into_iter().collect()
    }

    /// What moves when the selection is dragged or nudged: the selected nodes and
    /// annotations, and what the selected groups hold, each with its current place.
    pub(crate) fn move_set(&self) -> (Places, Places) {
        let mut nodes = self.selection.get_untracked();
        let mut notes = self.selected_annotations.get_untracked();
        self.with_graph(|g| {
            for id in notes.clone() {
                let (n, a) = g.group_contents(&id);
                nodes.extend(n);
                notes.extend(a);
            }
            (
                nodes.iter().filter_map(|id| g.node(id).map(|n| (id.clone(), n.pos))).collect(),
                notes.iter().filter_map(|id| g.annotations.get(id).map(|a| (id.clone(), a.pos))).collect(),
            )
        })
    }

    pub fn selected(&self) -> Vec<String> {
        self.selection.get_untracked().into_iter().collect()
    }

    /// The screen → world mapping at the current viewport.
    pub fn to_world(&self, screen: Pos) -> Pos {
        self.viewport.get_untracked().to_world(screen)
    }

    pub fn fit_view(&self) {
        self.fit(self.with_graph(|g| geometry::bounds(g, None)));
    }

    /// Fit the selected nodes and annotations (or everything when nothing is selected).
    pub fn fit_selection(&self) {
        let (ids, notes) = (self.selected(), self.selected_annotation_ids());
        if ids.is_empty() && notes.is_empty() {
            return self.fit_view();
        }
        self.fit(self.with_graph(|g| {
            let boxes = g.annotations.values().filter(|a| notes.contains(&a.id)).map(Annotation::rect);
            geometry::bounds(g, Some(&ids)).into_iter().chain(boxes).reduce(|a, b| a.union(&b))
        }));
    }

    fn fit(&self, r: Option<Rect>) {
        let (w, h) = self.size.get_untracked();
        if let Some(r) = r {
            self.viewport.set(Viewport::fit(r, w, h, 40.0));
        }
    }

    /// Add a node from the palette with its top-left corner at `at` (world).
    pub fn add_from_palette(&self, item: &PaletteItem, at: Pos) -> Option<String> {
        let id = self.with_graph(|g| g.fresh_id(&item.kind));
        let mut node = Node::new(&id, &item.kind, Pos::new(geometry::snap(at.x, GRID), geometry::snap(at.y, GRID)))
            .with_ports(item.inputs.clone(), item.outputs.clone());
        node.title = item.title.clone();
        node.data = item.data.clone();
        let label = format!("Add {}", if item.title.is_empty() { &item.kind } else { &item.title });
        self.apply(Command::add(&label, vec![node], vec![])).ok()?;
        self.select_only([id.clone()]);
        Some(id)
    }

    /// Connect two ports (in either order: output → input is worked out).
    pub fn connect(&self, from: &Endpoint, to: &Endpoint) -> Result<(), EditError> {
        let rules = self.rules();
        let cmd = self.with_graph(|g| Command::connect(&rules, g, from, to));
        match cmd {
            Ok(cmd) => self.apply(cmd),
            Err(e) => {
                self.notify(format!("Wire refused: {e}"), true);
                Err(e)
            }
        }
    }

    pub fn delete_selection(&self) {
        let ids = self.selected();
        let notes = self.selected_annotation_ids();
        let keys = self.selected_edges.get_untracked();
        let cmd = self.with_graph(|g| {
            let edges: Vec<Edge> = g.edges.iter().filter(|e| keys.contains(&e.key())).cloned().collect();
            Command::delete(g, &ids, &edges, &notes)
        });
        let _ = self.apply(cmd);
    }

    pub fn copy_selection(&self) -> Option<Fragment> {
        let ids = self.selected();
        let notes = self.selected_annotation_ids();
        if ids.is_empty() && notes.is_empty() {
            return None;
        }
        let f = self.with_graph(|g| clipboard::copy(g, &ids, &notes));
        self.clipboard.set_value(Some(f.clone()));
        Some(f)
    }

    pub fn cut_selection(&self) {
        if self.copy_selection().is_some() {
            self.delete_selection();
        }
    }

    /// Paste a fragment (the editor's own clipboard when `None`) offset from where it was
    /// copied, or at a world point.
    pub fn paste(&self, fragment: Option<Fragment>, at: Option<Pos>) {
        let Some(f) = fragment.or_else(|| self.clipboard.get_value()) else {
            return;
        };
        let (cmd, ids) = self.with_graph(|g| match at {
            Some(p) => clipboard::paste(g, &f, p, false),
            None => clipboard::paste(g, &f, Pos::new(4.0 * GRID, 4.0 * GRID), true),
        });
        if self.apply(cmd).is_ok() {
            self.select_items(ids.0, ids.1);
        }
        // Successive pastes cascade instead of stacking.
        if at.is_none() {
            let mut moved = f;
            for p in moved.nodes.iter_mut().map(|n| &mut n.pos).chain(moved.annotations.iter_mut().map(|a| &mut a.pos))
            {
                p.x += 4.0 * GRID;
                p.y += 4.0 * GRID;
            }
            self.clipboard.set_value(Some(moved));
        }
    }

    pub fn duplicate(&self) {
        let ids = self.selected();
        let notes = self.selected_annotation_ids();
        if ids.is_empty() && notes.is_empty() {
            return;
        }
        let f = self.with_graph(|g| clipboard::copy(g, &ids, &notes));
        self.paste(Some(f), None);
    }

    /// Move the selection (and what selected groups hold) by a step.
    pub fn nudge(&self, dx: f64, dy: f64) {
        let by = |v: Places| -> Places { v.into_iter().map(|(id, p)| (id, Pos::new(p.x + dx, p.y + dy))).collect() };
        let (nodes, notes) = self.move_set();
        if !nodes.is_empty() || !notes.is_empty() {
            let _ = self.apply(Command::move_items(by(nodes), by(notes)));
        }
    }

    /// Put a group around the selection, then edit its title. Nothing when nothing is selected.
    pub fn group_selection(&self) -> Option<String> {
        if self.readonly.get_untracked() {
            return None;
        }
        let (ids, notes) = (self.selected(), self.selected_annotation_ids());
        // Untitled until the user types one (it shows as "Group" meanwhile).
        let (cmd, id) = self.with_graph(|g| Command::group(g, &ids, &notes, ""))?;
        self.add_and_edit(cmd, id)
    }

    /// Add an empty sticky note with its top-left corner at `at` (world), then edit it.
    pub fn add_note(&self, at: Pos) -> Option<String> {
        if self.readonly.get_untracked() {
            return None;
        }
        let id = self.with_graph(|g| g.fresh_annotation_id("note"));
        let at = Pos::new(geometry::snap(at.x, GRID), geometry::snap(at.y, GRID));
        let (w, h) = Annotation::NOTE_SIZE;
        self.add_and_edit(Command::annotate(Annotation::new(&id, AnnotationKind::Note, "", at, w, h)), id)
    }

    /// Apply a command that adds annotation `id`, select it and open its text for editing.
    fn add_and_edit(&self, cmd: Command, id: String) -> Option<String> {
        self.apply(cmd).ok()?;
        self.select_items([], [id.clone()]);
        self.editing.set(Some(id.clone()));
        Some(id)
    }

    /// Add a note near the middle of the view, where it covers no node and no other note.
    pub fn add_note_in_view(&self) -> Option<String> {
        let (w, h) = self.size.get_untracked();
        let c = self.to_world(Pos::new(w / 2.0, h / 2.0));
        let (nw, nh) = Annotation::NOTE_SIZE;
        let at = self.with_graph(|g| geometry::free_spot(g, Pos::new(c.x - nw / 2.0, c.y - nh / 2.0), nw, nh));
        self.add_note(at)
    }

    /// Change one annotation as one undo step named `label`; nothing when it is gone or the
    /// change changes nothing.
    pub fn edit_annotation(&self, id: &str, label: &str, change: impl FnOnce(&mut Annotation)) {
        let Some(before) = self.with_graph(|g| g.annotations.get(id).cloned()) else { return };
        let mut after = before.clone();
        change(&mut after);
        if after != before {
            if let Ok(cmd) = self.with_graph(|g| Command::set_annotation(g, after, label)) {
                let _ = self.apply(cmd);
            }
        }
    }

    /// Colour an annotation with one of [`Annotation::TINTS`] (`None`: its kind's colour).
    pub fn set_annotation_tint(&self, id: &str, tint: Option<&str>) {
        let tint = tint.filter(|t| Annotation::TINTS.contains(t)).map(str::to_string);
        self.edit_annotation(id, "Colour", |a| a.tint = tint);
    }

    /// Set an annotation's text.
    pub fn set_annotation_text(&self, id: &str, text: &str) {
        let Some(kind) = self.with_graph(|g| g.annotations.get(id).map(|a| a.kind)) else { return };
        let label = match kind {
            AnnotationKind::Group => "Rename group",
            AnnotationKind::Note => "Edit note",
        };
        self.edit_annotation(id, label, |a| a.text = text.to_string());
    }

    pub fn tidy(&self) {
        let cmd = self.with_graph(geometry::tidy);
        let _ = self.apply(cmd);
    }

    pub fn select_all(&self) {
        let (ids, notes): (Vec<String>, Vec<String>) =
            self.with_graph(|g| (g.nodes.keys().cloned().collect(), g.annotations.keys().cloned().collect()));
        self.select_items(ids, notes);
    }

    /// Nodes matching a graph search: text in id/title/kind, or `invalid` (has errors) or
    /// `unused` (no wires).
    pub fn find(&self, query: &str) -> Vec<String> {
        let q = query.trim().to_lowercase();
        self.with_graph(|g| {
            let unwired = g.unwired();
            g.nodes
                .values()
                .filter(|n| match q.as_str() {
                    "" => false,
                    "invalid" => !n.errors.is_empty(),
                    "unused" => unwired.contains(&n.id.as_str()),
                    _ => [&n.id, &n.title, &n.kind].iter().any(|s| s.to_lowercase().contains(&q)),
                })
                .map(|n| n.id.clone())
                .collect()
        })
    }
}
