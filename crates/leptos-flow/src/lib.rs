//! leptos-flow: a node-graph editor for Leptos.
//!
//! Two halves. The document ([`model`], [`history`], [`rules`], [`clipboard`], [`geometry`])
//! is plain Rust with no browser types: a graph of nodes with typed ports (and groups and
//! sticky notes around them), a command log
//! where every change is one undoable step, wire rules that refuse a bad wire with a reason,
//! copy/paste with fresh ids, viewport maths and tidy-up. The [`view`] (feature `view`) is
//! the Leptos canvas over that document: palette, drag and drop, wiring, pan/zoom, selection,
//! keyboard shortcuts, minimap and culling of what is off screen.
//!
//! The crate knows nothing about what the nodes mean: ports carry application-named types
//! and node `data` is opaque JSON. It must not grow application logic.

pub mod clipboard;
pub mod geometry;
pub mod history;
pub mod model;
pub mod rules;
#[cfg(feature = "view")]
pub mod view;

pub use clipboard::Fragment;
pub use geometry::{Rect, Viewport};
pub use history::{Command, EditError, History, Op};
pub use model::{Annotation, AnnotationKind, Edge, Endpoint, Graph, Node, Port, Pos};
pub use rules::{Connection, WireError, WireRules};
