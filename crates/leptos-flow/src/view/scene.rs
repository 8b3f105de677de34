//! The scene layer: one `<canvas>` behind the node layer that paints every wire, and every
//! node when zoomed out. A webview without a GPU (WebKitGTK under Xvfb, many Linux desktops)
//! paints a DOM of hundreds of boxes and SVG paths on the CPU on every frame of a drag or a
//! pan; one bitmap drawn in a few batched paths is a fraction of that. Hit tests for what is
//! painted here (wires, zoomed-out nodes) are geometry in world coordinates, not DOM events.

use super::state::{FlowState, WireDrag};
use crate::geometry::{self, node_height, port_at, Rect, Viewport, HEADER_HEIGHT, NODE_WIDTH};
use crate::model::{Edge, Pos};
use leptos::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

/// Zoom below which nodes are painted on the scene instead of being DOM elements.
pub(crate) const SCENE_ZOOM: f64 = 0.5;
/// Zoom below which painted nodes have no title (too small to read).
const TITLE_ZOOM: f64 = 0.3;
/// A painted port's radius (world units), as the HTML port dot.
const PORT_RADIUS: f64 = 5.0;
/// Screen pixels around a wire that still count as a press on it.
pub(crate) const WIRE_HIT_PX: f64 = 6.0;

/// What a frame drew, for the `data-*` counters tests and benchmarks read.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Drawn {
    pub nodes: usize,
    pub wires: usize,
}

/// Colours, read once from the canvas's CSS custom properties (with the stylesheet's
/// defaults), so an application themes the scene as it themes the DOM.
#[derive(Clone)]
pub(crate) struct Colours {
    node: String,
    header: String,
    border: String,
    selected: String,
    invalid: String,
    title: String,
    wire: String,
    drag: String,
    bad: String,
    types: HashMap<String, String>,
    style: Option<web_sys::CssStyleDeclaration>,
}

/// A CSS custom property's value from a computed style, or a default.
pub(crate) fn css_var(style: Option<&web_sys::CssStyleDeclaration>, name: &str, default: &str) -> String {
    style
        .and_then(|s| s.get_property_value(name).ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// An element's computed style.
pub(crate) fn computed_style(el: &web_sys::Element) -> Option<web_sys::CssStyleDeclaration> {
    web_sys::window().and_then(|w| w.get_computed_style(el).ok().flatten())
}

impl Colours {
    pub fn read(el: &web_sys::Element) -> Colours {
        let style = computed_style(el);
        let var = |name: &str, default: &str| css_var(style.as_ref(), name, default);
        Colours {
            node: var("--lf-node", "#232733"),
            header: var("--lf-header", "#2b3040"),
            border: var("--lf-border", "#394050"),
            selected: "#ffb84c".into(),
            invalid: "#ff5c5c".into(),
            title: var("--lf-fg", "#e6e8ee"),
            wire: var("--lf-wire", "#8a93a6"),
            drag: "#4c7dff".into(),
            bad: "#ff5c5c".into(),
            types: HashMap::new(),
            style,
        }
    }

    /// A wire's colour: its type's `--lf-type-<name>`, else the stylesheet's default for the
    /// built-in names, else the plain wire colour.
    fn of_type(&mut self, ty: &str) -> String {
        if let Some(c) = self.types.get(ty) {
            return c.clone();
        }
        let default = match ty {
            "flow" => "#e6e8ee",
            "text" => "#6fcf97",
            "number" => "#56ccf2",
            "bool" => "#f2c94c",
            "json" => "#bb6bd9",
            "action" => "#f2994a",
            _ => &self.wire,
        };
        let c = css_var(self.style.as_ref(), &format!("--lf-type-{ty}"), default);
        self.types.insert(ty.to_string(), c.clone());
        c
    }
}

/// The 2D context of the scene canvas, its backing store sized to `w` × `h` CSS pixels at the
/// device pixel ratio.
pub(crate) fn context(canvas: &HtmlCanvasElement, w: f64, h: f64) -> Option<CanvasRenderingContext2d> {
    let dpr = web_sys::window().map(|w| w.device_pixel_ratio()).unwrap_or(1.0).max(1.0);
    let (bw, bh) = ((w * dpr).round() as u32, (h * dpr).round() as u32);
    // Setting the size clears and reallocates the bitmap: only when it changed.
    if canvas.width() != bw || canvas.height() != bh {
        canvas.set_width(bw);
        canvas.set_height(bh);
        let _ = web_sys::HtmlElement::style(canvas).set_property("width", &format!("{w}px"));
        let _ = web_sys::HtmlElement::style(canvas).set_property("height", &format!("{h}px"));
    }
    let ctx = canvas.get_context("2d").ok().flatten()?.dyn_into::<CanvasRenderingContext2d>().ok()?;
    let _ = ctx.set_transform(dpr, 0.0, 0.0, dpr, 0.0, 0.0);
    Some(ctx)
}

/// The world rectangle worth drawing: the visible one plus a margin.
pub(crate) fn visible_rect(vp: &Viewport, (w, h): (f64, f64)) -> Rect {
    let r = vp.visible(w, h);
    let m = 100.0;
    Rect { x: r.x - m, y: r.y - m, w: r.w + 2.0 * m, h: r.h + 2.0 * m }
}

/// A wire's end points in world coordinates, if both nodes and ports exist.
fn wire_ends(state: &FlowState, e: &Edge) -> Option<(Pos, Pos, String)> {
    state.nodes.with(|nodes| {
        let (a, b) = (nodes.get(&e.from.node)?, nodes.get(&e.to.node)?);
        let (ia, ty) = a
            .node
            .with(|n| n.outputs.iter().position(|p| p.name == e.from.port).map(|i| (i, n.outputs[i].ty.clone())))?;
        let ib = b.node.with(|n| n.inputs.iter().position(|p| p.name == e.to.port))?;
        Some((port_at(a.pos.get(), true, ia), port_at(b.pos.get(), false, ib), ty))
    })
}

/// Paint one frame: every wire, and every visible node that is not an HTML node (`html`:
/// all of them when zoomed out; while the view moves, those that came into view since it
/// last settled). Reads every signal it draws from, so run inside an effect it redraws on
/// exactly the changes that matter.
pub(crate) fn draw(ctx: &CanvasRenderingContext2d, state: &FlowState, colours: &mut Colours, html: &[String]) -> Drawn {
    let html: HashSet<&str> = html.iter().map(String::as_str).collect();
    let size = state.size.get();
    let vp = state.viewport.get();
    let zoom = vp.zoom;
    let r = visible_rect(&vp, size);
    ctx.clear_rect(0.0, 0.0, size.0, size.1);
    ctx.save();
    let _ = ctx.translate(vp.x, vp.y);
    let _ = ctx.scale(zoom, zoom);
    let mut drawn = Drawn::default();

    // Wires, batched into one path per colour (a stroke per colour, not per wire); the
    // selected ones on top. Widths never fall under a screen pixel.
    let selected_edges = state.selected_edges.get();
    let mut by_colour: BTreeMap<(String, bool), Vec<(Pos, Pos)>> = BTreeMap::new();
    let mut selected = Vec::new();
    state.edges.with(|edges| {
        for e in edges {
            let Some((a, b, ty)) = wire_ends(state, e) else { continue };
            if !geometry::wire_bounds(a, b).intersects(&r) {
                continue;
            }
            drawn.wires += 1;
            if selected_edges.contains(&e.key()) {
                selected.push((a, b));
            } else {
                by_colour.entry((colours.of_type(&ty), ty == "flow")).or_default().push((a, b));
            }
        }
    });
    for ((colour, flow), wires) in &by_colour {
        let width = if *flow { (3.0f64).max(1.5 / zoom) } else { (2.0f64).max(1.0 / zoom) };
        stroke_wires(ctx, wires, colour, width);
    }
    stroke_wires(ctx, &selected, &colours.selected, (4.0f64).max(2.5 / zoom));

    // Nodes not in the DOM: fills and borders batched the same way.
    let selection = state.selection.get();
    state.nodes.with(|nodes| {
        struct Box_ {
            at: Pos,
            h: f64,
            title: String,
            errors: usize,
            selected: bool,
            ports: [Vec<String>; 2],
        }
        let ports = zoom >= SCENE_ZOOM;
        let mut boxes = Vec::new();
        for (id, s) in nodes.iter() {
            let at = s.pos.get();
            let (h, title, errors) = s.node.with(|n| (node_height(n), n.display_title().to_string(), n.errors.len()));
            if !(Rect { x: at.x, y: at.y, w: NODE_WIDTH, h }).intersects(&r) {
                continue;
            }
            drawn.nodes += 1;
            if !html.contains(id.as_str()) {
                // Close enough to see ports, a painted node shows them too.
                let ports = if ports {
                    s.node.with(|n| [&n.inputs, &n.outputs].map(|ps| ps.iter().map(|p| p.ty.clone()).collect()))
                } else {
                    Default::default()
                };
                boxes.push(Box_ { at, h, title, errors, selected: selection.contains(id), ports });
            }
        }
        if boxes.is_empty() {
            return;
        }
        let fill = |colour: &str, rects: &mut dyn Iterator<Item = (f64, f64, f64, f64)>| {
            ctx.begin_path();
            for (x, y, w, h) in rects {
                ctx.rect(x, y, w, h);
            }
            ctx.set_fill_style_str(colour);
            ctx.fill();
        };
        fill(&colours.node, &mut boxes.iter().map(|b| (b.at.x, b.at.y, NODE_WIDTH, b.h)));
        fill(&colours.header, &mut boxes.iter().map(|b| (b.at.x, b.at.y, NODE_WIDTH, HEADER_HEIGHT)));
        let outline = |colour: &str, width: f64, pick: &dyn Fn(&Box_) -> bool| {
            ctx.begin_path();
            for b in boxes.iter().filter(|b| pick(b)) {
                ctx.rect(b.at.x, b.at.y, NODE_WIDTH, b.h);
            }
            ctx.set_stroke_style_str(colour);
            ctx.set_line_width(width);
            ctx.stroke();
        };
        outline(&colours.border, 1.0 / zoom, &|b| !b.selected && b.errors == 0);
        outline(&colours.invalid, 2.0 / zoom, &|b| !b.selected && b.errors > 0);
        outline(&colours.selected, 3.0 / zoom, &|b| b.selected);
        // Error badges: a dot at the header's right end, at least a few screen pixels wide.
        let radius = (9.0f64).max(4.0 / zoom);
        ctx.begin_path();
        for b in boxes.iter().filter(|b| b.errors > 0) {
            let (cx, cy) = (b.at.x + NODE_WIDTH - 14.0, b.at.y + HEADER_HEIGHT / 2.0);
            ctx.move_to(cx + radius, cy);
            let _ = ctx.arc(cx, cy, radius, 0.0, std::f64::consts::TAU);
        }
        ctx.set_fill_style_str(&colours.invalid);
        ctx.fill();
        if ports {
            let mut by_type: BTreeMap<&str, Vec<Pos>> = BTreeMap::new();
            for b in &boxes {
                for (side, tys) in b.ports.iter().enumerate() {
                    for (i, ty) in tys.iter().enumerate() {
                        by_type.entry(ty).or_default().push(port_at(b.at, side == 1, i));
                    }
                }
            }
            for (ty, dots) in by_type {
                ctx.begin_path();
                for p in dots {
                    ctx.move_to(p.x + PORT_RADIUS, p.y);
                    let _ = ctx.arc(p.x, p.y, PORT_RADIUS, 0.0, std::f64::consts::TAU);
                }
                ctx.set_fill_style_str(&colours.of_type(ty));
                ctx.fill();
            }
        }
        if zoom >= TITLE_ZOOM {
            ctx.set_fill_style_str(&colours.title);
            ctx.set_font("600 12px system-ui, sans-serif");
            ctx.set_text_baseline("middle");
            for b in &boxes {
                let room = NODE_WIDTH - 16.0 - if b.errors > 0 { 28.0 } else { 0.0 };
                let _ = ctx.fill_text_with_max_width(&b.title, b.at.x + 8.0, b.at.y + HEADER_HEIGHT / 2.0, room);
            }
        }
    });

    // The wire being dragged from a port, dashed: blue, or red over a port that refuses it.
    if let Some(w) = state.wire.get() {
        if let Some((a, b, bad)) = drag_ends(state, &w) {
            let dash = js_sys::Array::of2(&JsValue::from(6.0), &JsValue::from(4.0));
            let _ = ctx.set_line_dash(&dash);
            stroke_wires(ctx, &[(a, b)], if bad { &colours.bad } else { &colours.drag }, (2.0f64).max(1.0 / zoom));
            let _ = ctx.set_line_dash(&js_sys::Array::new());
        }
    }
    ctx.restore();
    drawn
}

fn stroke_wires(ctx: &CanvasRenderingContext2d, wires: &[(Pos, Pos)], colour: &str, width: f64) {
    if wires.is_empty() {
        return;
    }
    ctx.begin_path();
    for (a, b) in wires {
        let [p0, p1, p2, p3] = geometry::wire_curve(*a, *b);
        ctx.move_to(p0.x, p0.y);
        ctx.bezier_curve_to(p1.x, p1.y, p2.x, p2.y, p3.x, p3.y);
    }
    ctx.set_stroke_style_str(colour);
    ctx.set_line_width(width);
    ctx.stroke();
}

/// Output end first; the loose end follows the pointer or snaps to the target port.
fn drag_ends(state: &FlowState, w: &WireDrag) -> Option<(Pos, Pos, bool)> {
    let sig = state.nodes.with(|m| m.get(&w.anchor.node).copied())?;
    let a = sig.node.with(|n| geometry::port_pos_by_name(n, w.from_output, &w.anchor.port))?;
    let end = w
        .target
        .as_ref()
        .and_then(|(t, _)| {
            let s = state.nodes.with(|m| m.get(&t.node).copied())?;
            s.node.with(|n| geometry::port_pos_by_name(n, !w.from_output, &t.port))
        })
        .unwrap_or(w.pointer);
    let bad = matches!(w.target, Some((_, Err(_))));
    Some(if w.from_output { (a, end, bad) } else { (end, a, bad) })
}

/// The topmost painted node under a world point (later nodes are drawn on top); `html`
/// nodes are not painted (they take their own presses).
pub(crate) fn node_at(state: &FlowState, p: Pos, html: &[String]) -> Option<String> {
    state.nodes.with_untracked(|nodes| {
        nodes.iter().rev().filter(|(id, _)| !html.contains(id)).find_map(|(id, s)| {
            let at = s.pos.get_untracked();
            let h = s.node.with_untracked(node_height);
            Rect { x: at.x, y: at.y, w: NODE_WIDTH, h }.contains(p).then(|| id.clone())
        })
    })
}

/// The wire nearest a world point within `tolerance` world units, by its key.
pub(crate) fn wire_at(state: &FlowState, p: Pos, tolerance: f64) -> Option<String> {
    let probe = Rect { x: p.x - tolerance, y: p.y - tolerance, w: 2.0 * tolerance, h: 2.0 * tolerance };
    let mut best: Option<(f64, String)> = None;
    state.edges.with_untracked(|edges| {
        for e in edges {
            let Some((a, b, _)) = untrack(|| wire_ends(state, e)) else { continue };
            if !geometry::wire_bounds(a, b).intersects(&probe) {
                continue;
            }
            let d = geometry::wire_distance(a, b, p);
            if d <= tolerance && best.as_ref().is_none_or(|(bd, _)| d < *bd) {
                best = Some((d, e.key()));
            }
        }
    });
    best.map(|(_, k)| k)
}
