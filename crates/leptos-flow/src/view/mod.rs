//! The Leptos canvas over the document: [`FlowCanvas`] (nodes, wires, pan/zoom, selection,
//! shortcuts, minimap, node search) and [`Palette`] (node kinds to drag onto the canvas).
//! Positions are world coordinates. Wires, and nodes when zoomed out, are painted on one
//! `<canvas>` (the scene); nodes close enough to read are HTML under one CSS transform.

mod canvas;
mod palette;
mod scene;
mod state;

pub use canvas::FlowCanvas;
pub use palette::Palette;
pub use state::{FlowState, NodeSig, Notice, PaletteItem, SearchPopup, WireDrag, GRID};

/// The editor's stylesheet, injected by [`FlowCanvas`]. Colours of port types come from
/// `--lf-type-<name>` custom properties the application may set.
pub const STYLE: &str = include_str!("style.css");

/// Keyboard shortcuts, as shown in the shortcut sheet (`?`).
pub const SHORTCUTS: &[(&str, &str)] = &[
    ("Double-click canvas / Space", "add a node by search"),
    ("Double-click a zoomed-out node", "zoom to it"),
    ("Click a wire", "select it (Delete removes it)"),
    ("Drag from a port", "wire; drop on empty canvas to add a matching node"),
    ("Drag empty canvas / middle button", "pan"),
    ("Wheel", "zoom at the pointer"),
    ("Shift + drag", "box select"),
    ("Shift / Ctrl + click", "add to selection"),
    ("Ctrl+A", "select all"),
    ("Ctrl+G", "group the selection (drag a group's title to move what it holds)"),
    ("N", "add a sticky note"),
    ("Double-click a group's title or a note", "edit its text (Enter / Ctrl+Enter keeps it)"),
    ("Delete / Backspace", "delete selection"),
    ("Ctrl+C / Ctrl+X / Ctrl+V", "copy / cut / paste"),
    ("Ctrl+D", "duplicate"),
    ("Ctrl+Z / Ctrl+Shift+Z, Ctrl+Y", "undo / redo"),
    ("Arrow keys (Shift: 1 px)", "nudge selection"),
    ("F / Shift+F", "fit to view / fit selection"),
    ("Ctrl+Shift+L", "tidy up"),
    ("Escape", "cancel, clear selection"),
    ("?", "this sheet"),
];
