//! The canvas: the scene (wires, and nodes when zoomed out, painted on one `<canvas>`), the
//! node layer (HTML nodes with ports, only those near the visible area), pointer
//! interactions, keyboard shortcuts, node search, minimap.

use super::scene::{self, Colours, Drawn, SCENE_ZOOM, WIRE_HIT_PX};
use super::state::{Drag, FlowState, NodeSig, SearchPopup, WireDrag, GRID};
use super::{SHORTCUTS, STYLE};
use crate::geometry::{self, node_height, port_pos, Rect, Viewport, NODE_WIDTH};
use crate::model::{Annotation, AnnotationKind, Endpoint, Pos};
use leptos::ev;
use leptos::html;
use leptos::prelude::*;
use wasm_bindgen::JsCast;

/// How close (screen px) the pointer must be to a port for a wire to snap to it.
const SNAP_PX: f64 = 18.0;
/// How long the view must stay still after a pan or wheel zoom before the HTML node layer
/// is rebuilt for it.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(150);

fn local_pos(canvas: &web_sys::HtmlElement, x: i32, y: i32) -> Pos {
    let r = canvas.get_bounding_client_rect();
    Pos::new(x as f64 - r.left(), y as f64 - r.top())
}

/// The canvas element an event happened in (nodes and ports stop propagation, so they find
/// it themselves).
fn canvas_of(ev: &web_sys::Event) -> Option<web_sys::HtmlElement> {
    ev.current_target()?
        .dyn_into::<web_sys::Element>()
        .ok()?
        .closest(".lf-canvas")
        .ok()
        .flatten()?
        .dyn_into::<web_sys::HtmlElement>()
        .ok()
}

fn in_rect(canvas: &web_sys::HtmlElement, x: i32, y: i32) -> bool {
    let r = canvas.get_bounding_client_rect();
    let (x, y) = (x as f64, y as f64);
    x >= r.left() && x <= r.right() && y >= r.top() && y <= r.bottom()
}

/// Whether a key event comes from a text field (shortcuts must not fire while typing).
fn typing(ev: &web_sys::KeyboardEvent) -> bool {
    ev.target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        .map(|el| {
            let tag = el.tag_name().to_lowercase();
            tag == "input"
                || tag == "textarea"
                || tag == "select"
                || el.closest(".monaco-editor").ok().flatten().is_some()
        })
        .unwrap_or(false)
}

/// The nearest port on the opposite side of a wire drag, within snapping distance.
fn snap_target(state: &FlowState, w: &WireDrag, zoom: f64) -> Option<(Endpoint, String)> {
    let limit = SNAP_PX / zoom;
    let mut best: Option<(f64, Endpoint, String)> = None;
    state.with_graph(|g| {
        for n in g.nodes.values() {
            let r = geometry::node_rect(n);
            if w.pointer.x < r.x - limit
                || w.pointer.x > r.x + r.w + limit
                || w.pointer.y < r.y - limit
                || w.pointer.y > r.y + r.h + limit
            {
                continue;
            }
            let ports = if w.from_output { &n.inputs } else { &n.outputs };
            for (i, p) in ports.iter().enumerate() {
                let at = port_pos(n, !w.from_output, i);
                let d = ((at.x - w.pointer.x).powi(2) + (at.y - w.pointer.y).powi(2)).sqrt();
                if d <= limit && best.as_ref().is_none_or(|b| d < b.0) {
                    best = Some((d, Endpoint::new(&n.id, &p.name), p.ty.clone()));
                }
            }
        }
    });
    best.map(|(_, e, t)| (e, t))
}

/// Output end first.
fn oriented(w: &WireDrag, target: &Endpoint) -> (Endpoint, Endpoint) {
    if w.from_output {
        (w.anchor.clone(), target.clone())
    } else {
        (target.clone(), w.anchor.clone())
    }
}

/// A press on a node (its HTML header or its painted box): select it (Shift/Ctrl toggle) and
/// start moving the selection.
fn press_node(state: FlowState, id: &str, ev: &web_sys::MouseEvent, canvas: Option<web_sys::HtmlElement>) {
    press_item(state, id, false, ev, canvas);
}

/// A press on a group's title or on a note: as on a node, a group moving what it holds.
fn press_annotation(state: FlowState, id: &str, ev: &web_sys::MouseEvent, canvas: Option<web_sys::HtmlElement>) {
    press_item(state, id, true, ev, canvas);
}

/// Select the pressed node or annotation (Shift/Ctrl toggle it) and start moving what the
/// selection moves (see [`FlowState::move_set`]).
fn press_item(
    state: FlowState,
    id: &str,
    annotation: bool,
    ev: &web_sys::MouseEvent,
    canvas: Option<web_sys::HtmlElement>,
) {
    ev.prevent_default();
    if let Some(c) = &canvas {
        let _ = c.focus();
    }
    state.search.set(None);
    let set = if annotation { state.selected_annotations } else { state.selection };
    if ev.shift_key() || ev.ctrl_key() || ev.meta_key() {
        set.update(|s| {
            if !s.remove(id) {
                s.insert(id.to_string());
            }
        });
    } else if !set.with_untracked(|s| s.contains(id)) {
        state.select_only([]);
        set.set([id.to_string()].into_iter().collect());
    }
    if state.readonly.get_untracked() {
        return;
    }
    let Some(canvas) = canvas else { return };
    let start = state.to_world(local_pos(&canvas, ev.client_x(), ev.client_y()));
    let (nodes, annotations) = state.move_set();
    state.drag.set_value(Some(Drag::Move { start, nodes, annotations, moved: false }));
}

/// A left press that starts an editing gesture on a part of the canvas (a wire from a port,
/// a resize): the canvas below does not also take it, the canvas gets the keyboard focus,
/// and the pointer comes back in world coordinates. `None` for other buttons, or read-only.
fn edit_press(state: FlowState, ev: &web_sys::MouseEvent) -> Option<Pos> {
    if ev.button() != 0 || state.readonly.get_untracked() {
        return None;
    }
    ev.stop_propagation();
    ev.prevent_default();
    let canvas = canvas_of(ev)?;
    let _ = canvas.focus();
    Some(state.to_world(local_pos(&canvas, ev.client_x(), ev.client_y())))
}

/// A press on a wire selects it (Shift adds it to the selected wires).
fn press_wire(state: FlowState, key: String, additive: bool) {
    state.search.set(None);
    if additive {
        state.selected_edges.update(|s| {
            s.insert(key);
        });
    } else {
        state.selection.set(Default::default());
        state.selected_edges.set([key].into_iter().collect());
    }
}

#[component]
pub fn FlowCanvas(state: FlowState) -> impl IntoView {
    let canvas: NodeRef<html::Div> = NodeRef::new();
    let drag = state.drag;

    // The view the HTML node layer was last built for (see `visible_nodes`), and the timer
    // that brings it up to date once a gesture stops moving the view.
    let settled = RwSignal::new(state.viewport.get_untracked());
    let settle_timer: StoredValue<Option<TimeoutHandle>> = StoredValue::new(None);
    let cancel_settle = move || {
        if let Some(t) = settle_timer.try_update_value(Option::take).flatten() {
            t.clear();
        }
    };
    let settle_now = move || {
        cancel_settle();
        let v = state.viewport.get_untracked();
        if settled.try_get_untracked().is_some_and(|s| s != v) {
            settled.set(v);
        }
    };
    // Called as a gesture moves the view: the layer catches up SETTLE after the last move.
    let moving = move || {
        cancel_settle();
        settle_timer.set_value(set_timeout_with_handle(settle_now, SETTLE).ok());
    };
    // Any other change of the view (fit, zoom to a node, the minimap) rebuilds it at once.
    Effect::new(move |_| {
        state.viewport.track();
        if settle_timer.with_value(Option::is_none) {
            settle_now();
        }
    });
    on_cleanup(cancel_settle);

    // HTML nodes only when zoomed in far enough to read them; the scene paints the rest.
    // Which nodes are HTML follows the view once it settles: while it moves (a pan, a wheel
    // zoom) the set stays, the layer moves under its transform, and the scene paints the
    // nodes that come into view. Building nodes' DOM in the middle of a gesture is what made
    // its frames late; painting a few more boxes is not.
    let scene_nodes = Memo::new(move |_| settled.get().zoom < SCENE_ZOOM);
    let visible_nodes = Memo::new(move |_| {
        if scene_nodes.get() {
            return Vec::new();
        }
        let r = scene::visible_rect(&settled.get(), state.size.get());
        state
            .nodes
            .with(|m| m.iter().filter(|(_, s)| s.rect().intersects(&r)).map(|(k, _)| k.clone()).collect::<Vec<_>>())
    });

    let measure = move || {
        if let Some(el) = canvas.get_untracked() {
            let r = el.get_bounding_client_rect();
            let size = (r.width().max(1.0), r.height().max(1.0));
            if state.size.get_untracked() != size {
                state.size.set(size);
            }
        }
    };
    canvas.on_load(move |_| {
        measure();
        request_animation_frame(move || {
            measure();
            state.fit_view();
        });
    });
    let resize = window_event_listener(ev::resize, move |_| measure());
    on_cleanup(move || resize.remove());

    // Pointer moves and releases are tracked on the window so a drag survives leaving the canvas.
    let moves = window_event_listener(ev::mousemove, move |ev| {
        let Some(el) = canvas.get_untracked() else { return };
        let el: &web_sys::HtmlElement = &el;
        if let Some((item, _)) = state.palette_drag.get_untracked() {
            state.palette_drag.set(Some((item, Pos::new(ev.client_x() as f64, ev.client_y() as f64))));
            return;
        }
        let p = local_pos(el, ev.client_x(), ev.client_y());
        let vp = state.viewport.get_untracked();
        let world = vp.to_world(p);
        let mut current = drag.get_value();
        match &mut current {
            Some(Drag::Pan { start, vp, moved }) => {
                *moved |= (p.x - start.x).abs() + (p.y - start.y).abs() > 2.0;
                moving();
                state.viewport.set(Viewport { x: vp.x + p.x - start.x, y: vp.y + p.y - start.y, zoom: vp.zoom });
            }
            Some(Drag::Move { start, nodes, annotations, moved }) => {
                let (dx, dy) = (world.x - start.x, world.y - start.y);
                *moved |= dx.abs() + dy.abs() > 1.0 / vp.zoom;
                state.nodes.with_untracked(|m| {
                    for (id, s) in nodes.iter() {
                        if let Some(sig) = m.get(id) {
                            sig.pos.set(Pos::new(s.x + dx, s.y + dy));
                        }
                    }
                });
                state.annotations.with_untracked(|m| {
                    for (id, s) in annotations.iter() {
                        if let Some(sig) = m.get(id) {
                            sig.update(|a| a.pos = Pos::new(s.x + dx, s.y + dy));
                        }
                    }
                });
            }
            Some(Drag::Resize { id, start, size, moved }) => {
                let (dx, dy) = (world.x - start.x, world.y - start.y);
                *moved |= dx.abs() + dy.abs() > 1.0 / vp.zoom;
                if let Some(sig) = state.annotations.with_untracked(|m| m.get(id).copied()) {
                    sig.update(|a| {
                        a.width = (size.0 + dx).max(Annotation::MIN_WIDTH);
                        a.height = (size.1 + dy).max(Annotation::MIN_HEIGHT);
                    });
                }
            }
            Some(Drag::Wire) => {
                if let Some(mut w) = state.wire.get_untracked() {
                    w.pointer = world;
                    w.target = snap_target(&state, &w, vp.zoom).map(|(t, _)| {
                        let (a, b) = oriented(&w, &t);
                        let rules = state.rules();
                        let ok = state.with_graph(|g| rules.check(g, &a, &b).map(|_| ()).map_err(|e| e.to_string()));
                        (t, ok)
                    });
                    state.wire.set(Some(w));
                }
            }
            Some(Drag::Box { start, .. }) => state.box_select.set(Some(Rect::from_corners(*start, world))),
            None => return,
        }
        drag.set_value(current);
    });
    let ups = window_event_listener(ev::mouseup, move |ev| {
        let Some(el) = canvas.get_untracked() else { return };
        let el: &web_sys::HtmlElement = &el;
        if let Some((item, _)) = state.palette_drag.get_untracked() {
            state.palette_drag.set(None);
            if in_rect(el, ev.client_x(), ev.client_y()) {
                let p = local_pos(el, ev.client_x(), ev.client_y());
                let world = state.to_world(p);
                state.add_from_palette(&item, Pos::new(world.x - NODE_WIDTH / 2.0, world.y - 15.0));
                let _ = el.focus();
            }
            return;
        }
        let p = local_pos(el, ev.client_x(), ev.client_y());
        match drag.get_value() {
            // A click on empty canvas (no pan) clears the selection.
            Some(Drag::Pan { moved: false, .. }) => {
                state.select_only([]);
                state.search.set(None);
            }
            Some(Drag::Pan { moved: true, .. }) => settle_now(),
            Some(Drag::Move { nodes, annotations, moved: true, .. }) => {
                let nodes: Vec<(String, Pos)> = state.nodes.with_untracked(|m| {
                    nodes.iter().filter_map(|(id, _)| m.get(id).map(|s| (id.clone(), s.pos.get_untracked()))).collect()
                });
                let annotations: Vec<(String, Pos)> = state.annotations.with_untracked(|m| {
                    annotations
                        .iter()
                        .filter_map(|(id, _)| m.get(id).map(|s| (id.clone(), s.with_untracked(|a| a.pos))))
                        .collect()
                });
                let _ = state.apply(crate::Command::move_items(nodes, annotations));
            }
            Some(Drag::Resize { id, moved: true, .. }) => {
                if let Some(a) = state.annotations.with_untracked(|m| m.get(&id).map(|s| s.get_untracked())) {
                    state.edit_annotation(&id, &format!("Resize {}", a.kind.noun()), |b| {
                        (b.width, b.height) = (a.width, a.height);
                    });
                }
            }
            Some(Drag::Wire) => {
                if let Some(w) = state.wire.get_untracked() {
                    match &w.target {
                        Some((t, _)) => {
                            let (a, b) = oriented(&w, t);
                            let _ = state.connect(&a, &b);
                        }
                        None => state.search.set(Some(SearchPopup {
                            world: w.pointer,
                            screen: p,
                            wire: Some((w.anchor.clone(), w.from_output, w.anchor_type.clone())),
                        })),
                    }
                }
                state.wire.set(None);
            }
            Some(Drag::Box { additive, .. }) => {
                if let Some(r) = state.box_select.get_untracked() {
                    let (hit, notes) =
                        state.with_graph(|g| (geometry::nodes_in(g, &r), geometry::annotations_in(g, &r)));
                    if additive {
                        state.selection.update(|s| s.extend(hit));
                        state.selected_annotations.update(|s| s.extend(notes));
                    } else {
                        state.select_items(hit, notes);
                    }
                }
                state.box_select.set(None);
            }
            _ => {}
        }
        drag.set_value(None);
    });
    on_cleanup(move || {
        moves.remove();
        ups.remove();
    });

    let on_canvas_down = move |ev: ev::MouseEvent| {
        let Some(el) = canvas.get_untracked() else { return };
        let _ = el.focus();
        let p = local_pos(&el, ev.client_x(), ev.client_y());
        // What the scene paints is hit-tested here: a zoomed-out node, then a wire.
        if ev.button() == 0 {
            let vp = state.viewport.get_untracked();
            let world = vp.to_world(p);
            if let Some(id) = visible_nodes.with_untracked(|html| scene::node_at(&state, world, html)) {
                press_node(state, &id, &ev, Some(web_sys::HtmlElement::clone(&el)));
                return;
            }
            if let Some(key) = scene::wire_at(&state, world, WIRE_HIT_PX / vp.zoom) {
                ev.prevent_default();
                press_wire(state, key, ev.shift_key());
                return;
            }
        }
        if ev.button() == 1 || (ev.button() == 0 && !ev.shift_key()) {
            ev.prevent_default();
            drag.set_value(Some(Drag::Pan { start: p, vp: state.viewport.get_untracked(), moved: false }));
        } else if ev.button() == 0 {
            ev.prevent_default();
            let w = state.to_world(p);
            drag.set_value(Some(Drag::Box { start: w, additive: true }));
            state.box_select.set(Some(Rect::from_corners(w, w)));
        }
    };
    let on_wheel = move |ev: ev::WheelEvent| {
        let Some(el) = canvas.get_untracked() else { return };
        ev.prevent_default();
        let p = local_pos(&el, ev.client_x(), ev.client_y());
        let factor = (-ev.delta_y() * if ev.delta_mode() == 1 { 0.05 } else { 0.0015 }).exp();
        moving();
        state.viewport.update(|v| *v = v.zoom_at(p, factor));
    };
    let on_dblclick = move |ev: ev::MouseEvent| {
        let Some(el) = canvas.get_untracked() else { return };
        let is_bg = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .map(|t| t.class_list().contains("lf-canvas") || t.class_list().contains("lf-scene"))
            .unwrap_or(false);
        if is_bg {
            let p = local_pos(&el, ev.client_x(), ev.client_y());
            let vp = state.viewport.get_untracked();
            // A double-click on a painted node zooms in to it.
            if let Some(id) = visible_nodes.with_untracked(|html| scene::node_at(&state, vp.to_world(p), html)) {
                state.select_only([id]);
                state.fit_selection();
                return;
            }
            state.search.set(Some(SearchPopup { world: vp.to_world(p), screen: p, wire: None }));
        }
    };
    let on_key = move |ev: ev::KeyboardEvent| {
        if typing(&ev) {
            return;
        }
        let ctrl = ev.ctrl_key() || ev.meta_key();
        let key = ev.key();
        let step = if ev.shift_key() { 1.0 } else { GRID };
        let handled = match (ctrl, key.as_str()) {
            (false, "Delete") | (false, "Backspace") => {
                state.delete_selection();
                true
            }
            (true, "z") | (true, "Z") if ev.shift_key() => {
                state.redo();
                true
            }
            (true, "z") => {
                state.undo();
                true
            }
            (true, "y") => {
                state.redo();
                true
            }
            (true, "c") => {
                state.copy_selection();
                true
            }
            (true, "x") => {
                state.cut_selection();
                true
            }
            (true, "v") => {
                state.paste(None, None);
                true
            }
            (true, "d") => {
                state.duplicate();
                true
            }
            (true, "a") => {
                state.select_all();
                true
            }
            (true, "g") => {
                state.group_selection();
                true
            }
            (false, "n") => {
                state.add_note_in_view();
                true
            }
            (true, "L") | (true, "l") if ev.shift_key() => {
                state.tidy();
                true
            }
            (false, "ArrowLeft") => {
                state.nudge(-step, 0.0);
                true
            }
            (false, "ArrowRight") => {
                state.nudge(step, 0.0);
                true
            }
            (false, "ArrowUp") => {
                state.nudge(0.0, -step);
                true
            }
            (false, "ArrowDown") => {
                state.nudge(0.0, step);
                true
            }
            (false, "f") => {
                state.fit_view();
                true
            }
            (false, "F") => {
                state.fit_selection();
                true
            }
            (false, "Escape") => {
                state.search.set(None);
                state.show_shortcuts.set(false);
                state.wire.set(None);
                state.editing.set(None);
                drag.set_value(None);
                state.select_only([]);
                true
            }
            (false, "?") => {
                state.show_shortcuts.update(|s| *s = !*s);
                true
            }
            (false, " ") => {
                let (w, h) = state.size.get_untracked();
                let screen = Pos::new(w / 2.0 - 120.0, h / 3.0);
                state.search.set(Some(SearchPopup { world: state.to_world(screen), screen, wire: None }));
                true
            }
            _ => false,
        };
        if handled {
            ev.prevent_default();
            ev.stop_propagation();
        }
    };

    let world_style = move || {
        let v = state.viewport.get();
        format!("transform: translate({:.2}px, {:.2}px) scale({:.4});", v.x, v.y, v.zoom)
    };

    // The scene redraws whenever something it paints changes (the effect tracks every signal
    // `scene::draw` reads), and says what it drew on the canvas element for tests.
    let scene_el: NodeRef<html::Canvas> = NodeRef::new();
    let colours: StoredValue<Option<Colours>> = StoredValue::new(None);
    let last_drawn: StoredValue<Option<Drawn>> = StoredValue::new(None);
    Effect::new(move |_| {
        let Some(cv) = scene_el.get() else { return };
        let (w, h) = state.size.get();
        let Some(ctx) = scene::context(&cv, w, h) else { return };
        let mut drawn = Drawn::default();
        colours.update_value(|c| {
            let c = c.get_or_insert_with(|| Colours::read(&cv));
            visible_nodes.with(|html| drawn = scene::draw(&ctx, &state, c, html));
        });
        if last_drawn.get_value() != Some(drawn) {
            last_drawn.set_value(Some(drawn));
            if let Some(root) = canvas.get_untracked() {
                let _ = root.set_attribute("data-nodes-drawn", &drawn.nodes.to_string());
                let _ = root.set_attribute("data-wires-drawn", &drawn.wires.to_string());
            }
        }
    });

    view! {
        <div
            class="lf-canvas"
            class:lf-readonly=move || state.readonly.get()
            tabindex="0"
            node_ref=canvas
            on:mousedown=on_canvas_down
            on:wheel=on_wheel
            on:dblclick=on_dblclick
            on:keydown=on_key
        >
            <style>{STYLE}</style>
            <canvas class="lf-scene" node_ref=scene_el></canvas>
            <div class="lf-world" style=world_style>
                <For
                    each=move || state.annotations.with(|m| m.keys().cloned().collect::<Vec<_>>())
                    key=|id: &String| id.clone()
                    children=move |id: String| view! { <AnnotationView state id /> }
                />
                <For
                    each=move || visible_nodes.get()
                    key=|id: &String| id.clone()
                    children=move |id: String| view! { <NodeView state id /> }
                />
                {move || {
                    state.box_select.get().map(|r| {
                        view! {
                            <div
                                class="lf-box-select"
                                style=format!("left:{}px;top:{}px;width:{}px;height:{}px", r.x, r.y, r.w, r.h)
                            ></div>
                        }
                    })
                }}
            </div>
            {move || {
                state.wire.get().and_then(|w| w.target).and_then(|(_, ok)| ok.err()).map(|why| {
                    view! { <div class="lf-wire-reason">{format!("✕ {why}")}</div> }
                })
            }}
            {move || {
                state.notice.get().map(|n| {
                    view! {
                        <div class="lf-notice" class:lf-notice-error=n.error role="status">
                            {n.text}
                        </div>
                    }
                })
            }}
            {move || state.search.get().map(|popup| view! { <NodeSearch state popup /> })}
            {move || {
                state.show_shortcuts.get().then(|| {
                    view! {
                        <div class="lf-shortcuts" on:mousedown=|ev| ev.stop_propagation()>
                            <h3>"Keyboard shortcuts"</h3>
                            <table>
                                {SHORTCUTS
                                    .iter()
                                    .map(|(k, d)| view! { <tr><td class="lf-key">{*k}</td><td>{*d}</td></tr> })
                                    .collect_view()}
                            </table>
                        </div>
                    }
                })
            }}
            {move || {
                state.palette_drag.get().map(|(item, p)| {
                    let local = canvas.get_untracked().map(|el| local_pos(&el, p.x as i32, p.y as i32)).unwrap_or(p);
                    view! {
                        <div class="lf-ghost" style=format!("left:{}px;top:{}px", local.x - 60.0, local.y - 12.0)>
                            {item.title}
                        </div>
                    }
                })
            }}
            <Minimap state />
        </div>
    }
}

#[component]
fn NodeView(state: FlowState, id: String) -> impl IntoView {
    let Some(sig): Option<NodeSig> = state.nodes.with_untracked(|m| m.get(&id).copied()) else {
        return ().into_any();
    };
    let id_sel = id.clone();
    let selected = Memo::new(move |_| state.selection.with(|s| s.contains(&id_sel)));
    let style = move || {
        let p = sig.pos.get();
        let h = sig.node.with(node_height);
        format!("transform: translate({:.1}px, {:.1}px); width: {NODE_WIDTH}px; height: {h}px;", p.x, p.y)
    };
    let id_down = id.clone();
    let on_down = move |ev: ev::MouseEvent| {
        if ev.button() != 0 {
            return;
        }
        ev.stop_propagation();
        press_node(state, &id_down, &ev, canvas_of(&ev));
    };
    let id_attr = id.clone();
    let kind = move || sig.node.with(|n| n.kind.clone());
    let title = move || sig.node.with(|n| n.display_title().to_string());
    let errors = move || sig.node.with(|n| n.errors.clone());
    let invalid = move || sig.node.with(|n| !n.errors.is_empty());
    view! {
        <div
            class="lf-node"
            class:lf-selected=move || selected.get()
            class:lf-invalid=invalid
            data-node-id=id_attr
            data-kind=kind
            style=style
            on:mousedown=on_down
        >
            <div class="lf-node-header">
                <span class="lf-node-title">{title}</span>
                <span class="lf-node-kind">{kind}</span>
                {move || {
                    let errs = errors();
                    (!errs.is_empty()).then(|| {
                        view! {
                            <span class="lf-badge" title=errs.join("\n")>
                                {errs.len()}
                            </span>
                        }
                    })
                }}
            </div>
            {move || {
                let n = sig.node.get();
                let rows = n.inputs.len().max(n.outputs.len());
                (0..rows)
                    .map(|i| {
                        let input = n.inputs.get(i).cloned();
                        let output = n.outputs.get(i).cloned();
                        view! {
                            <div class="lf-row">
                                {input.map(|p| view! { <PortView state node=n.id.clone() port=p.name.clone() ty=p.ty.clone() required=p.required output=false /> })}
                                {output.map(|p| view! { <PortView state node=n.id.clone() port=p.name.clone() ty=p.ty.clone() required=false output=true /> })}
                            </div>
                        }
                    })
                    .collect_view()
            }}
        </div>
    }
    .into_any()
}

/// A group (a frame with a title bar; presses in its body go through to the canvas) or a
/// sticky note, with a resize handle; a double-click edits its text in place.
#[component]
fn AnnotationView(state: FlowState, id: String) -> impl IntoView {
    let Some(sig) = state.annotations.with_untracked(|m| m.get(&id).copied()) else {
        return ().into_any();
    };
    let kind = sig.with_untracked(|a| a.kind);
    let (id_sel, id_edit) = (id.clone(), id.clone());
    let selected = Memo::new(move |_| state.selected_annotations.with(|s| s.contains(&id_sel)));
    let editing = Memo::new(move |_| state.editing.with(|e| e.as_deref() == Some(id_edit.as_str())));
    let style = move || {
        sig.with(|a| {
            format!(
                "transform: translate({:.1}px, {:.1}px); width: {:.1}px; height: {:.1}px;",
                a.pos.x, a.pos.y, a.width, a.height
            )
        })
    };
    let id_down = id.clone();
    let on_down = move |ev: ev::MouseEvent| {
        if ev.button() != 0 {
            return;
        }
        ev.stop_propagation();
        press_annotation(state, &id_down, &ev, canvas_of(&ev));
    };
    let id_dbl = id.clone();
    let on_dblclick = move |ev: ev::MouseEvent| {
        ev.stop_propagation();
        if !state.readonly.get_untracked() {
            state.editing.set(Some(id_dbl.clone()));
        }
    };
    let id_resize = id.clone();
    let on_resize = move |ev: ev::MouseEvent| {
        let Some(start) = edit_press(state, &ev) else { return };
        let size = sig.with_untracked(|a| (a.width, a.height));
        state.drag.set_value(Some(Drag::Resize { id: id_resize.clone(), start, size, moved: false }));
    };
    let text = move || sig.with(|a| a.text.clone());
    let id_attr = id.clone();
    let group = kind == AnnotationKind::Group;
    let (note_down, note_dbl) = (on_down.clone(), on_dblclick.clone());
    let body = move || {
        if editing.get() {
            return view! { <AnnotationEditor state id=id.clone() text=sig.get_untracked().text multiline=!group /> }
                .into_any();
        }
        if group {
            let title = move || Some(text()).filter(|t| !t.is_empty()).unwrap_or_else(|| "Group".to_string());
            view! { <div class="lf-group-title" on:mousedown=on_down.clone() on:dblclick=on_dblclick.clone()>{title}</div> }
                .into_any()
        } else {
            view! { <div class="lf-note-text">{text}</div> }.into_any()
        }
    };
    let class = move || {
        let tint = sig.with(|a| a.tint.as_ref().map(|t| format!(" lf-tint-{t}")).unwrap_or_default());
        format!("lf-annotation {}{tint}", if group { "lf-group" } else { "lf-note" })
    };
    // The colour swatches of a selected group or note (not while its text is edited).
    let id_tint = id_attr.clone();
    let swatches = move || {
        (selected.get() && !editing.get() && !state.readonly.get()).then(|| {
            let id = id_tint.clone();
            view! {
                <div class="lf-tints" on:mousedown=|ev| ev.stop_propagation() on:dblclick=|ev| ev.stop_propagation()>
                    {std::iter::once(None)
                        .chain(Annotation::TINTS.iter().map(|t| Some(*t)))
                        .map(|tint| {
                            let id = id.clone();
                            let name = tint.unwrap_or("default");
                            view! {
                                <span
                                    class=format!("lf-tint lf-tint-{name}")
                                    data-tint=name
                                    title=name
                                    on:click=move |_| state.set_annotation_tint(&id, tint)
                                ></span>
                            }
                        })
                        .collect_view()}
                </div>
            }
        })
    };
    view! {
        <div
            class=class
            class:lf-selected=move || selected.get()
            data-annotation-id=id_attr
            style=style
            on:mousedown=move |ev| if !group { note_down(ev) }
            on:dblclick=move |ev| if !group { note_dbl(ev) }
        >
            {body}
            {swatches}
            <div class="lf-resize" on:mousedown=on_resize></div>
        </div>
    }
    .into_any()
}

/// The in-place text field of an annotation: Enter (a note: Ctrl+Enter) or leaving the field
/// keeps the text as one undo step, Escape drops it. A group's title is one line: a line
/// break pasted into it is dropped, as a text input drops it.
#[component]
fn AnnotationEditor(state: FlowState, id: String, text: String, multiline: bool) -> impl IntoView {
    let field: NodeRef<html::Textarea> = NodeRef::new();
    let commit = move || {
        // Only while still editing this one: a blur after Enter or Escape is no second commit.
        if state.editing.get_untracked().as_deref() == Some(id.as_str()) {
            state.editing.set(None);
            let mut value = field.get_untracked().map(|f| f.value()).unwrap_or_default();
            if !multiline {
                value.retain(|c| c != '\n' && c != '\r');
            }
            state.set_annotation_text(&id, &value);
        }
    };
    field.on_load(move |el| {
        el.select();
        request_animation_frame(move || {
            let _ = el.focus();
        });
    });
    let refocus_canvas = |ev: &web_sys::Event| {
        if let Some(c) = canvas_of(ev) {
            let _ = c.focus();
        }
    };
    let commit_key = commit.clone();
    let on_key = move |ev: ev::KeyboardEvent| {
        ev.stop_propagation();
        match ev.key().as_str() {
            "Escape" => {
                state.editing.set(None);
                refocus_canvas(&ev);
            }
            "Enter" if !multiline || ev.ctrl_key() || ev.meta_key() => {
                ev.prevent_default();
                commit_key();
                refocus_canvas(&ev);
            }
            _ => {}
        }
    };
    let stop = |ev: ev::MouseEvent| ev.stop_propagation();
    view! {
        <textarea
            class="lf-annotation-edit"
            node_ref=field
            prop:value=text
            rows=if multiline { None } else { Some("1") }
            wrap=if multiline { "soft" } else { "off" }
            placeholder=if multiline { "Write a note…" } else { "Group title" }
            on:keydown=on_key
            on:blur=move |_| commit()
            on:mousedown=stop
            on:dblclick=stop
        ></textarea>
    }
}

#[component]
fn PortView(state: FlowState, node: String, port: String, ty: String, required: bool, output: bool) -> impl IntoView {
    let ep = Endpoint::new(&node, &port);
    let ep_hover = ep.clone();
    let status = move || {
        state.wire.with(|w| match w {
            Some(WireDrag { target: Some((t, ok)), .. }) if *t == ep_hover => {
                if ok.is_ok() {
                    "lf-port-ok"
                } else {
                    "lf-port-bad"
                }
            }
            _ => "",
        })
    };
    let ep_down = ep.clone();
    let ty_down = ty.clone();
    let on_down = move |ev: ev::MouseEvent| {
        let Some(pointer) = edit_press(state, &ev) else { return };
        state.wire.set(Some(WireDrag {
            anchor: ep_down.clone(),
            from_output: output,
            anchor_type: ty_down.clone(),
            pointer,
            target: None,
        }));
        state.drag.set_value(Some(Drag::Wire));
    };
    let side = if output { "lf-port-out" } else { "lf-port-in" };
    let ty_attr = ty.clone();
    view! {
        <div class=format!("lf-port {side}") data-port=port.clone() data-dir=if output { "out" } else { "in" } data-type=ty_attr>
            <span
                class=move || format!("lf-dot lf-type-{} {}", ty, status())
                class:lf-required=required
                on:mousedown=on_down
            ></span>
            <span class="lf-port-name">{port.clone()}</span>
        </div>
    }
}

#[component]
fn NodeSearch(state: FlowState, popup: SearchPopup) -> impl IntoView {
    let query = RwSignal::new(String::new());
    let input: NodeRef<html::Input> = NodeRef::new();
    input.on_load(|el| {
        let _ = el.focus();
    });
    let wire = popup.wire.clone();
    let items = Memo::new(move |_| {
        let q = query.get();
        let rules = state.rules();
        state.palette.with(|items| {
            items
                .iter()
                .filter(|i| i.matches(&q))
                .filter(|i| match &wire {
                    None => true,
                    Some((_, true, ty)) => rules.accepts_any(ty, &i.inputs),
                    Some((_, false, ty)) => i.outputs.iter().any(|o| rules.can_feed(&o.ty, ty)),
                })
                .cloned()
                .collect::<Vec<_>>()
        })
    });
    let popup2 = popup.clone();
    let add = move |item: &super::PaletteItem| {
        let at = popup2.world;
        state.search.set(None);
        let Some(id) = state.add_from_palette(item, at) else { return };
        if let Some((anchor, from_output, ty)) = &popup2.wire {
            let rules = state.rules();
            let port = if *from_output {
                item.inputs.iter().find(|p| rules.can_feed(ty, &p.ty)).map(|p| p.name.clone())
            } else {
                item.outputs.iter().find(|p| rules.can_feed(&p.ty, ty)).map(|p| p.name.clone())
            };
            if let Some(port) = port {
                let other = Endpoint::new(&id, &port);
                let (a, b) = if *from_output { (anchor.clone(), other) } else { (other, anchor.clone()) };
                let _ = state.connect(&a, &b);
            }
        }
    };
    let add2 = add.clone();
    let title = match &popup.wire {
        Some((_, true, ty)) => format!("Add a node that takes {ty}"),
        Some((_, false, ty)) => format!("Add a node that gives {ty}"),
        None => "Add a node".to_string(),
    };
    view! {
        <div
            class="lf-search"
            style=format!("left:{}px;top:{}px", popup.screen.x, popup.screen.y)
            on:mousedown=|ev| ev.stop_propagation()
            on:dblclick=|ev| ev.stop_propagation()
        >
            <div class="lf-search-title">{title}</div>
            <input
                node_ref=input
                type="search"
                placeholder="Search…"
                prop:value=move || query.get()
                on:input=move |ev| query.set(event_target_value(&ev))
                on:keydown=move |ev| {
                    match ev.key().as_str() {
                        "Enter" => {
                            if let Some(first) = items.get_untracked().first() {
                                add2(first);
                            }
                        }
                        "Escape" => state.search.set(None),
                        _ => {}
                    }
                }
            />
            <div class="lf-search-list">
                {move || {
                    items
                        .get()
                        .into_iter()
                        .take(40)
                        .map(|item| {
                            let add = add.clone();
                            let it = item.clone();
                            view! {
                                <div class="lf-search-item" data-kind=item.kind.clone() on:click=move |_| add(&it)>
                                    <span>{item.title.clone()}</span>
                                    <span class="lf-palette-kind">{item.category.clone()}</span>
                                </div>
                            }
                        })
                        .collect_view()
                }}
            </div>
        </div>
    }
}

#[component]
fn Minimap(state: FlowState) -> impl IntoView {
    const W: f64 = 180.0;
    const H: f64 = 120.0;
    // The graph's bounds (nodes, groups, notes) change only when one moves past the edge.
    let bounds = Memo::new(move |_| {
        let nodes: Vec<Rect> = state.nodes.with(|nodes| nodes.values().map(NodeSig::rect).collect());
        let notes: Vec<Rect> = state.annotations.with(|m| m.values().map(|s| s.with(Annotation::rect)).collect());
        nodes.into_iter().chain(notes).reduce(|a, b| a.union(&b))
    });
    let visible = Memo::new(move |_| {
        let (w, h) = state.size.get();
        state.viewport.get().visible(w, h)
    });
    // The world rectangle the minimap shows (the graph and the view) and its scale: a memo,
    // so a pan inside the graph's bounds moves the view box and repaints nothing else.
    let frame = Memo::new(move |_| {
        let vis = visible.get();
        let r = match bounds.get() {
            Some(b) => {
                let x = vis.x.min(b.x);
                let y = vis.y.min(b.y);
                Rect { x, y, w: (vis.x + vis.w).max(b.x + b.w) - x, h: (vis.y + vis.h).max(b.y + b.h) - y }
            }
            None => vis,
        };
        (r, (W / r.w.max(1.0)).min(H / r.h.max(1.0)))
    });
    // Nodes are painted on a canvas in two batched paths (valid, invalid): a few hundred SVG
    // rects under a transform that changes on every frame of a pan cost a frame on their own.
    let el: NodeRef<html::Canvas> = NodeRef::new();
    let colours: StoredValue<Option<[String; 4]>> = StoredValue::new(None);
    Effect::new(move |_| {
        let Some(cv) = el.get() else { return };
        let (r, scale) = frame.get();
        let Some(ctx) = scene::context(&cv, W, H) else { return };
        let [node, invalid, group, note] = colours.with_value(Clone::clone).unwrap_or_else(|| {
            let style = scene::computed_style(&cv);
            let var = |name: &str, default: &str| scene::css_var(style.as_ref(), name, default);
            let c = [
                var("--lf-mini-node", "#5a6378"),
                var("--lf-mini-invalid", "#ff5c5c"),
                var("--lf-mini-group", "#4c7dff40"),
                var("--lf-mini-note", "#f2d36b99"),
            ];
            colours.set_value(Some(c.clone()));
            c
        });
        ctx.clear_rect(0.0, 0.0, W, H);
        let scaled = |q: Rect| Rect { x: (q.x - r.x) * scale, y: (q.y - r.y) * scale, w: q.w * scale, h: q.h * scale };
        // One path per colour; every box at least a pixel, so nothing vanishes from a large
        // graph's overview.
        let fill = |colour: &str, boxes: &mut dyn Iterator<Item = Rect>| {
            ctx.begin_path();
            for q in boxes {
                ctx.rect(q.x, q.y, q.w.max(1.0), q.h.max(1.0));
            }
            ctx.set_fill_style_str(colour);
            ctx.fill();
        };
        // Groups and notes first, behind the nodes as on the canvas.
        let notes: Vec<(Rect, AnnotationKind)> =
            state.annotations.with(|m| m.values().map(|s| s.with(|a| (scaled(a.rect()), a.kind))).collect());
        for (kind, colour) in [(AnnotationKind::Group, &group), (AnnotationKind::Note, &note)] {
            fill(colour, &mut notes.iter().filter(|(_, k)| *k == kind).map(|(q, _)| *q));
        }
        let _ = cv.set_attribute("data-annotations", &notes.len().to_string());
        let rects: Vec<(Rect, bool)> = state
            .nodes
            .with(|nodes| nodes.values().map(|s| (scaled(s.rect()), s.node.with(|n| !n.errors.is_empty()))).collect());
        for (colour, bad) in [(&node, false), (&invalid, true)] {
            fill(colour, &mut rects.iter().filter(|(_, b)| *b == bad).map(|(q, _)| *q));
        }
        let _ = cv.set_attribute("data-nodes", &rects.len().to_string());
    });
    let on_down = move |ev: ev::MouseEvent| {
        ev.stop_propagation();
        ev.prevent_default();
        let Some(cv) = el.get_untracked() else { return };
        let b = cv.get_bounding_client_rect();
        let (r, scale) = frame.get_untracked();
        let world =
            Pos::new(r.x + (ev.client_x() as f64 - b.left()) / scale, r.y + (ev.client_y() as f64 - b.top()) / scale);
        let (w, h) = state.size.get_untracked();
        state.viewport.update(|v| {
            v.x = w / 2.0 - world.x * v.zoom;
            v.y = h / 2.0 - world.y * v.zoom;
        });
    };
    // The view box is one small element moved by its style: a pan repaints its old and new
    // place, not the overview under it.
    let view_style = move || {
        let (r, scale) = frame.get();
        let v = visible.get();
        format!(
            "left:{:.1}px;top:{:.1}px;width:{:.1}px;height:{:.1}px",
            (v.x - r.x) * scale,
            (v.y - r.y) * scale,
            v.w * scale,
            v.h * scale
        )
    };
    view! {
        <div class="lf-minimap" style=format!("width:{W}px;height:{H}px") on:mousedown=on_down>
            <canvas node_ref=el></canvas>
            <div class="lf-mini-view" style=view_style></div>
        </div>
    }
}
