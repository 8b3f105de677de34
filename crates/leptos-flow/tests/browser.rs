//! Component tests of the canvas in a real browser (headless Chromium through
//! wasm-bindgen-test-runner and chromedriver): events go through the DOM the way a user's
//! pointer and keyboard do, and the document is checked afterwards.
#![cfg(target_arch = "wasm32")]

use leptos::prelude::*;
use leptos_flow::view::{FlowCanvas, FlowState, Palette, PaletteItem};
use leptos_flow::{Graph, Node, Port, Pos, WireRules};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn rules() -> WireRules {
    let mut r = WireRules::same_type_only(&["flow", "text", "number"]);
    r.compat.insert(("number".into(), "text".into()));
    r.multi_input.insert("flow".into());
    r.single_output.insert("flow".into());
    r
}

fn node(id: &str, x: f64, y: f64) -> Node {
    Node::new(id, "step", Pos::new(x, y)).with_ports(
        vec![Port::new("in", "flow"), Port::new("name", "text")],
        vec![Port::new("out", "flow"), Port::new("n", "number"), Port::new("flag", "bool")],
    )
}

fn graph(nodes: Vec<Node>) -> Graph {
    let mut g = Graph::new();
    for n in nodes {
        g.nodes.insert(n.id.clone(), n);
    }
    g
}

fn document() -> web_sys::Document {
    web_sys::window().unwrap().document().unwrap()
}

/// Mount a canvas (and a palette) in a fixed-size box; returns the state and the box.
fn mount(g: Graph) -> (FlowState, web_sys::HtmlElement) {
    let doc = document();
    let host: web_sys::HtmlElement = doc.create_element("div").unwrap().dyn_into().unwrap();
    host.set_attribute("style", "position:fixed;left:0;top:0;width:1000px;height:700px;display:flex").unwrap();
    doc.body().unwrap().append_child(&host).unwrap();
    let state = FlowState::new(g, rules());
    state.palette.set(vec![PaletteItem {
        kind: "sink".into(),
        title: "Sink".into(),
        category: "test".into(),
        description: "takes text".into(),
        inputs: vec![Port::new("in", "flow"), Port::new("name", "text")],
        outputs: vec![],
        data: serde_json::json!({"k": 1}),
    }]);
    let handle = leptos::mount::mount_to(host.clone(), move || {
        view! {
            <div style="width:200px;height:700px"><Palette state /></div>
            <div style="width:800px;height:700px"><FlowCanvas state /></div>
        }
    });
    handle.forget();
    (state, host)
}

async fn tick() {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        web_sys::window().unwrap().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 30).unwrap();
    });
    wasm_bindgen_futures::JsFuture::from(p).await.unwrap();
}

fn q(host: &web_sys::HtmlElement, sel: &str) -> web_sys::HtmlElement {
    host.query_selector(sel).unwrap().unwrap_or_else(|| panic!("no element {sel}")).dyn_into().unwrap()
}

fn count(host: &web_sys::HtmlElement, sel: &str) -> u32 {
    host.query_selector_all(sel).unwrap().length()
}

/// Nodes and wires the canvas drew in its last frame (HTML nodes or painted ones).
fn drawn(host: &web_sys::HtmlElement) -> (u32, u32) {
    let c = q(host, ".lf-canvas");
    let n = |a: &str| c.get_attribute(a).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {a}"));
    (n("data-nodes-drawn"), n("data-wires-drawn"))
}

/// The scene's pixel under a world point (RGBA).
fn pixel(state: &FlowState, host: &web_sys::HtmlElement, world: Pos) -> [u8; 4] {
    let cv: web_sys::HtmlCanvasElement = q(host, ".lf-scene").dyn_into().unwrap();
    let ctx: web_sys::CanvasRenderingContext2d = cv.get_context("2d").unwrap().unwrap().dyn_into().unwrap();
    let s = state.viewport.get_untracked().to_screen(world);
    let dpr = web_sys::window().unwrap().device_pixel_ratio();
    let d = ctx.get_image_data((s.x * dpr).round(), (s.y * dpr).round(), 1.0, 1.0).unwrap().data();
    [d[0], d[1], d[2], d[3]]
}

/// Client coordinates of a world point on the canvas.
fn client(state: &FlowState, host: &web_sys::HtmlElement, world: Pos) -> (i32, i32) {
    let r = q(host, ".lf-canvas").get_bounding_client_rect();
    let s = state.viewport.get_untracked().to_screen(world);
    ((r.left() + s.x).round() as i32, (r.top() + s.y).round() as i32)
}

/// The point halfway along the wire from `a` to `b` (t = 1/2 of its Bézier).
fn wire_middle(a: Pos, b: Pos) -> Pos {
    let c = leptos_flow::geometry::wire_curve(a, b);
    Pos::new(
        (c[0].x + 3.0 * c[1].x + 3.0 * c[2].x + c[3].x) / 8.0,
        (c[0].y + 3.0 * c[1].y + 3.0 * c[2].y + c[3].y) / 8.0,
    )
}

fn centre(el: &web_sys::Element) -> (i32, i32) {
    let r = el.get_bounding_client_rect();
    ((r.left() + r.width() / 2.0) as i32, (r.top() + r.height() / 2.0) as i32)
}

fn mouse(kind: &str, x: i32, y: i32, shift: bool) -> web_sys::MouseEvent {
    let init = web_sys::MouseEventInit::new();
    init.set_bubbles(true);
    init.set_cancelable(true);
    init.set_client_x(x);
    init.set_client_y(y);
    init.set_button(0);
    init.set_shift_key(shift);
    web_sys::MouseEvent::new_with_mouse_event_init_dict(kind, &init).unwrap()
}

/// Press on `el`, move the pointer to (x, y) in steps, release.
async fn drag(el: &web_sys::Element, x: i32, y: i32, shift: bool) {
    let (sx, sy) = centre(el);
    el.dispatch_event(&mouse("mousedown", sx, sy, shift)).unwrap();
    tick().await;
    let w = web_sys::window().unwrap();
    for i in 1..=4 {
        let (px, py) = (sx + (x - sx) * i / 4, sy + (y - sy) * i / 4);
        w.dispatch_event(&mouse("mousemove", px, py, shift)).unwrap();
    }
    tick().await;
    w.dispatch_event(&mouse("mouseup", x, y, shift)).unwrap();
    tick().await;
}

fn port(host: &web_sys::HtmlElement, node: &str, dir: &str, name: &str) -> web_sys::Element {
    host.query_selector(&format!("[data-node-id='{node}'] [data-dir='{dir}'][data-port='{name}'] .lf-dot"))
        .unwrap()
        .unwrap_or_else(|| panic!("no port {node}.{name}"))
}

fn key(host: &web_sys::HtmlElement, k: &str, ctrl: bool, shift: bool) {
    let init = web_sys::KeyboardEventInit::new();
    init.set_bubbles(true);
    init.set_cancelable(true);
    init.set_key(k);
    init.set_ctrl_key(ctrl);
    init.set_shift_key(shift);
    let ev = web_sys::KeyboardEvent::new_with_keyboard_event_init_dict("keydown", &init).unwrap();
    q(host, ".lf-canvas").dispatch_event(&ev).unwrap();
}

#[wasm_bindgen_test]
async fn renders_nodes_and_ports() {
    let (_state, host) = mount(graph(vec![node("a", 0.0, 0.0), node("b", 320.0, 0.0)]));
    tick().await;
    assert_eq!(count(&host, ".lf-node"), 2);
    assert_eq!(count(&host, "[data-node-id='a'] .lf-dot"), 5);
    host.remove();
}

#[wasm_bindgen_test]
async fn a_wrong_wire_is_refused_with_a_reason_and_a_right_one_connects() {
    let (state, host) = mount(graph(vec![node("a", 0.0, 0.0), node("b", 320.0, 0.0)]));
    tick().await;
    // bool → text is not allowed
    let (tx, ty) = centre(&port(&host, "b", "in", "name"));
    drag(&port(&host, "a", "out", "flag"), tx, ty, false).await;
    assert!(state.graph().edges.is_empty());
    let notice = q(&host, ".lf-notice").text_content().unwrap_or_default();
    assert!(notice.contains("a `bool` output cannot feed a `text` input"), "{notice}");
    // number → text is
    drag(&port(&host, "a", "out", "n"), tx, ty, false).await;
    assert_eq!(state.graph().edges.len(), 1);
    assert_eq!(drawn(&host).1, 1);
    // Ctrl+Z takes it back; Ctrl+Shift+Z redoes it.
    key(&host, "z", true, false);
    tick().await;
    assert_eq!(drawn(&host).1, 0);
    key(&host, "Z", true, true);
    tick().await;
    assert_eq!(drawn(&host).1, 1);
    host.remove();
}

#[wasm_bindgen_test]
async fn a_wire_snaps_to_a_port_near_the_pointer() {
    let (state, host) = mount(graph(vec![node("a", 0.0, 0.0), node("b", 320.0, 0.0)]));
    tick().await;
    let (tx, ty) = centre(&port(&host, "b", "in", "in"));
    drag(&port(&host, "a", "out", "out"), tx + 8, ty + 6, false).await;
    assert_eq!(state.graph().edges.len(), 1, "dropped 10 px off the port, still wired");
    host.remove();
}

#[wasm_bindgen_test]
async fn dragging_a_node_moves_it_in_one_undo_step() {
    let (state, host) = mount(graph(vec![node("a", 0.0, 0.0), node("b", 320.0, 0.0)]));
    tick().await;
    let zoom = state.viewport.get_untracked().zoom;
    let header = q(&host, "[data-node-id='a'] .lf-node-header");
    let (x, y) = centre(&header);
    drag(&header, x + 100, y + 50, false).await;
    let p = state.graph().nodes["a"].pos;
    assert!((p.x - 100.0 / zoom).abs() < 2.0 && (p.y - 50.0 / zoom).abs() < 2.0, "{p:?} at zoom {zoom}");
    assert_eq!(state.undo_label().as_deref(), Some("Move node"));
    state.undo();
    assert_eq!(state.graph().nodes["a"].pos, Pos::new(0.0, 0.0));
    assert!(!state.dirty.get_untracked());
    host.remove();
}

#[wasm_bindgen_test]
async fn palette_items_drop_onto_the_canvas() {
    let (state, host) = mount(graph(vec![node("a", 0.0, 0.0)]));
    tick().await;
    let item = host.query_selector(".lf-palette-item[data-kind='sink']").unwrap().unwrap();
    let canvas = q(&host, ".lf-canvas");
    let (cx, cy) = centre(&canvas);
    drag(&item, cx, cy, false).await;
    let g = state.graph();
    assert_eq!(g.nodes.len(), 2);
    let sink = &g.nodes["sink"];
    assert_eq!(sink.data, serde_json::json!({"k": 1}));
    assert_eq!(state.selected(), vec!["sink".to_string()]);
    // Delete removes the selection.
    key(&host, "Delete", false, false);
    tick().await;
    assert_eq!(state.graph().nodes.len(), 1);
    host.remove();
}

#[wasm_bindgen_test]
async fn box_select_copy_paste_and_select_all() {
    let (state, host) = mount(graph(vec![node("a", 0.0, 0.0), node("b", 320.0, 0.0), node("c", 0.0, 300.0)]));
    tick().await;
    state.connect(&leptos_flow::Endpoint::new("a", "out"), &leptos_flow::Endpoint::new("b", "in")).unwrap();
    let vp = state.viewport.get_untracked();
    let canvas = q(&host, ".lf-canvas");
    let r = canvas.get_bounding_client_rect();
    // Shift-drag a box around a and b (world y -20..120), not c (y 300).
    let s = vp.to_screen(Pos::new(-30.0, -30.0));
    let e = vp.to_screen(Pos::new(560.0, 120.0));
    let start = web_sys::window().unwrap();
    let (sx, sy) = (r.left() as i32 + s.x as i32, r.top() as i32 + s.y as i32);
    canvas.dispatch_event(&mouse("mousedown", sx, sy, true)).unwrap();
    start.dispatch_event(&mouse("mousemove", r.left() as i32 + e.x as i32, r.top() as i32 + e.y as i32, true)).unwrap();
    tick().await;
    start.dispatch_event(&mouse("mouseup", r.left() as i32 + e.x as i32, r.top() as i32 + e.y as i32, true)).unwrap();
    tick().await;
    assert_eq!(state.selected(), vec!["a".to_string(), "b".to_string()]);
    key(&host, "c", true, false);
    key(&host, "v", true, false);
    tick().await;
    let g = state.graph();
    assert_eq!(g.nodes.len(), 5);
    assert!(g.nodes.contains_key("a_2") && g.nodes.contains_key("b_2"));
    assert_eq!(g.edges.len(), 2, "the wire between the copies came along");
    assert_eq!(state.selected(), vec!["a_2".to_string(), "b_2".to_string()]);
    key(&host, "a", true, false);
    assert_eq!(state.selected().len(), 5);
    host.remove();
}

#[wasm_bindgen_test]
async fn only_what_is_on_screen_is_in_the_dom() {
    let nodes: Vec<Node> =
        (0..500).map(|i| node(&format!("n{i}"), (i % 25) as f64 * 260.0, (i / 25) as f64 * 160.0)).collect();
    let (state, host) = mount(graph(nodes));
    tick().await;
    // Zoom in on the top-left corner: a handful of nodes are drawn, not 500.
    state.viewport.set(leptos_flow::Viewport { x: 0.0, y: 0.0, zoom: 1.0 });
    tick().await;
    let drawn_html = count(&host, ".lf-node");
    assert!(drawn_html > 0 && drawn_html < 60, "{drawn_html} nodes in the DOM");
    assert_eq!(drawn(&host).0, drawn_html);
    // Zoomed out to fit, all 500 are painted on the scene and none is HTML.
    state.fit_view();
    tick().await;
    assert!(state.viewport.get_untracked().zoom < 0.5);
    assert_eq!(count(&host, ".lf-node"), 0);
    assert_eq!(count(&host, ".lf-dot"), 0, "no ports drawn when zoomed out");
    assert_eq!(drawn(&host).0, 500);
    host.remove();
}

#[wasm_bindgen_test]
async fn wires_are_painted_and_a_click_selects_one() {
    let (state, host) = mount(graph(vec![node("a", 0.0, 0.0), node("b", 320.0, 120.0)]));
    tick().await;
    state.connect(&leptos_flow::Endpoint::new("a", "out"), &leptos_flow::Endpoint::new("b", "in")).unwrap();
    tick().await;
    assert_eq!(drawn(&host), (2, 1));
    let g = state.graph();
    let a = leptos_flow::geometry::port_pos_by_name(&g.nodes["a"], true, "out").unwrap();
    let b = leptos_flow::geometry::port_pos_by_name(&g.nodes["b"], false, "in").unwrap();
    let mid = wire_middle(a, b);
    assert!(pixel(&state, &host, mid)[3] > 0, "the wire is painted");
    let beside = Pos::new(mid.x + 40.0, mid.y);
    assert_eq!(pixel(&state, &host, beside)[3], 0, "and nothing beside it");
    let scene = q(&host, ".lf-scene");
    // A press 40 px off the wire selects nothing.
    let (x, y) = client(&state, &host, beside);
    scene.dispatch_event(&mouse("mousedown", x, y, false)).unwrap();
    web_sys::window().unwrap().dispatch_event(&mouse("mouseup", x, y, false)).unwrap();
    tick().await;
    assert!(state.selected_edges.get_untracked().is_empty());
    // A press 3 px off its middle selects it; it is painted in the selection colour.
    let (x, y) = client(&state, &host, mid);
    scene.dispatch_event(&mouse("mousedown", x, y + 3, false)).unwrap();
    web_sys::window().unwrap().dispatch_event(&mouse("mouseup", x, y + 3, false)).unwrap();
    tick().await;
    let edge = state.graph().edges[0].key();
    assert_eq!(state.selected_edges.get_untracked().into_iter().collect::<Vec<_>>(), vec![edge]);
    let [r, _, b, _] = pixel(&state, &host, mid);
    assert!(r > 200 && b < 140, "selected wire colour {r} {b}");
    // Delete removes it, and the scene no longer paints it.
    key(&host, "Delete", false, false);
    tick().await;
    assert!(state.graph().edges.is_empty());
    assert_eq!(drawn(&host), (2, 0));
    assert_eq!(pixel(&state, &host, mid)[3], 0);
    host.remove();
}

#[wasm_bindgen_test]
async fn zoomed_out_nodes_are_painted_and_can_be_dragged_and_opened() {
    let nodes: Vec<Node> =
        (0..200).map(|i| node(&format!("n{i}"), (i % 20) as f64 * 260.0, (i / 20) as f64 * 160.0)).collect();
    let (state, host) = mount(graph(nodes));
    tick().await;
    state.fit_view();
    tick().await;
    let zoom = state.viewport.get_untracked().zoom;
    assert!(zoom < 0.5, "{zoom}");
    assert_eq!(count(&host, ".lf-node"), 0);
    let inside = Pos::new(100.0, 15.0);
    assert!(pixel(&state, &host, inside)[3] > 0, "n0 is painted");
    // Press on n0's painted box and drag it 50 × 40 screen px: it moves, selected, one undo step.
    let scene = q(&host, ".lf-scene");
    let (x, y) = client(&state, &host, inside);
    scene.dispatch_event(&mouse("mousedown", x, y, false)).unwrap();
    let w = web_sys::window().unwrap();
    for i in 1..=5 {
        w.dispatch_event(&mouse("mousemove", x + 10 * i, y + 8 * i, false)).unwrap();
    }
    tick().await;
    w.dispatch_event(&mouse("mouseup", x + 50, y + 40, false)).unwrap();
    tick().await;
    let p = state.graph().nodes["n0"].pos;
    assert!((p.x - 50.0 / zoom).abs() < 2.0 / zoom && (p.y - 40.0 / zoom).abs() < 2.0 / zoom, "{p:?} at {zoom}");
    assert_eq!(state.selected(), vec!["n0".to_string()]);
    assert_eq!(state.undo_label().as_deref(), Some("Move node"));
    assert!(pixel(&state, &host, Pos::new(p.x + 100.0, p.y + 15.0))[3] > 0, "painted where it went");
    // A double-click on a painted node zooms in to it: it is HTML again, with its ports.
    let (x, y) = client(&state, &host, Pos::new(260.0 + 100.0, 15.0));
    scene.dispatch_event(&mouse("dblclick", x, y, false)).unwrap();
    tick().await;
    assert!(state.viewport.get_untracked().zoom >= 0.5);
    assert_eq!(state.selected(), vec!["n1".to_string()]);
    assert_eq!(count(&host, "[data-node-id='n1'] .lf-dot"), 5);
    host.remove();
}

#[wasm_bindgen_test]
async fn graph_search_finds_invalid_and_unused_nodes() {
    let (state, host) = mount(graph(vec![node("a", 0.0, 0.0), node("b", 320.0, 0.0), node("c", 0.0, 300.0)]));
    tick().await;
    state.connect(&leptos_flow::Endpoint::new("a", "out"), &leptos_flow::Endpoint::new("b", "in")).unwrap();
    let mut errors = std::collections::HashMap::new();
    errors.insert("b".to_string(), vec!["value: bad".to_string()]);
    state.set_errors(&errors);
    tick().await;
    assert_eq!(state.find("invalid"), vec!["b".to_string()]);
    assert_eq!(state.find("unused"), vec!["c".to_string()]);
    assert_eq!(state.find("B"), vec!["b".to_string()]);
    assert!(state.find("").is_empty());
    assert_eq!(count(&host, ".lf-node.lf-invalid"), 1);
    assert_eq!(q(&host, "[data-node-id='b'] .lf-badge").get_attribute("title").as_deref(), Some("value: bad"));
    host.remove();
}

#[wasm_bindgen_test]
async fn read_only_refuses_moves_and_wires() {
    let (state, host) = mount(graph(vec![node("a", 0.0, 0.0), node("b", 320.0, 0.0)]));
    tick().await;
    state.readonly.set(true);
    tick().await;
    let header = q(&host, "[data-node-id='a'] .lf-node-header");
    let (x, y) = centre(&header);
    drag(&header, x + 100, y + 50, false).await;
    assert_eq!(state.graph().nodes["a"].pos, Pos::new(0.0, 0.0));
    let (tx, ty) = centre(&port(&host, "b", "in", "in"));
    drag(&port(&host, "a", "out", "out"), tx, ty, false).await;
    assert!(state.graph().edges.is_empty());
    key(&host, "Delete", false, false);
    tick().await;
    assert_eq!(state.graph().nodes.len(), 2);
    assert!(!state.can_undo.get_untracked());
    host.remove();
}

fn html_ids(host: &web_sys::HtmlElement) -> Vec<String> {
    let list = host.query_selector_all(".lf-node").unwrap();
    let mut ids: Vec<String> = (0..list.length())
        .filter_map(|i| list.item(i)?.dyn_into::<web_sys::Element>().ok()?.get_attribute("data-node-id"))
        .collect();
    ids.sort();
    ids
}

async fn sleep(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        web_sys::window().unwrap().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms).unwrap();
    });
    wasm_bindgen_futures::JsFuture::from(p).await.unwrap();
}

fn grid(n: usize) -> Graph {
    graph((0..n).map(|i| node(&format!("n{i}"), (i % 25) as f64 * 260.0, (i / 25) as f64 * 160.0)).collect())
}

#[wasm_bindgen_test]
async fn nodes_that_come_into_view_during_a_pan_are_painted_until_it_ends() {
    let (state, host) = mount(grid(500));
    tick().await;
    state.viewport.set(leptos_flow::Viewport { x: 0.0, y: 0.0, zoom: 1.0 });
    tick().await;
    let before = html_ids(&host);
    assert!(before.contains(&"n3".to_string()) && !before.contains(&"n4".to_string()), "{before:?}");
    // Press on empty canvas between two columns and pan 600 px to the left, not released.
    let scene = q(&host, ".lf-scene");
    let (x, y) = client(&state, &host, Pos::new(230.0, 10.0));
    scene.dispatch_event(&mouse("mousedown", x, y, false)).unwrap();
    let w = web_sys::window().unwrap();
    for i in 1..=6 {
        w.dispatch_event(&mouse("mousemove", x - 100 * i, y, false)).unwrap();
    }
    tick().await;
    assert_eq!(state.viewport.get_untracked().x, -600.0);
    // Mid-gesture the HTML layer is as it was; n4 (world x 1040, now on screen) is painted.
    assert_eq!(html_ids(&host), before);
    let in_n4 = Pos::new(1040.0 + 100.0, 15.0);
    assert!(pixel(&state, &host, in_n4)[3] > 0, "n4 is painted while the view moves");
    let n4_port = leptos_flow::geometry::port_at(Pos::new(1040.0, 0.0), true, 1);
    let [_, g, b, a] = pixel(&state, &host, n4_port);
    assert!(a > 0 && b > 200 && g > 150, "its number port is painted in the number colour: {g} {b}");
    // Released, the layer is rebuilt for the new view: n4 is HTML and no longer painted.
    w.dispatch_event(&mouse("mouseup", x - 600, y, false)).unwrap();
    tick().await;
    let after = html_ids(&host);
    assert!(after.contains(&"n4".to_string()) && !after.contains(&"n0".to_string()), "{after:?}");
    assert_eq!(pixel(&state, &host, in_n4)[3], 0, "n4 is no longer painted");
    assert_eq!(drawn(&host).0 as usize, after.len());
    host.remove();
}

#[wasm_bindgen_test]
async fn after_a_wheel_zoom_the_node_layer_catches_up_once_the_view_is_still() {
    let (state, host) = mount(grid(500));
    tick().await;
    state.viewport.set(leptos_flow::Viewport { x: 0.0, y: 0.0, zoom: 1.0 });
    tick().await;
    let before = html_ids(&host);
    assert!(!before.is_empty());
    // Wheel out past the zoom where nodes stop being HTML.
    let (x, y) = client(&state, &host, Pos::new(0.0, 0.0));
    let init = web_sys::WheelEventInit::new();
    init.set_bubbles(true);
    init.set_cancelable(true);
    init.set_client_x(x + 10);
    init.set_client_y(y + 10);
    init.set_delta_y(600.0);
    let wheel = web_sys::WheelEvent::new_with_event_init_dict("wheel", &init).unwrap();
    q(&host, ".lf-canvas").dispatch_event(&wheel).unwrap();
    tick().await;
    assert!(state.viewport.get_untracked().zoom < 0.5);
    assert_eq!(html_ids(&host), before, "the layer waits while the view may still move");
    sleep(250).await;
    assert!(html_ids(&host).is_empty(), "then every node is painted");
    assert!(drawn(&host).0 > before.len() as u32);
    host.remove();
}

#[wasm_bindgen_test]
async fn the_minimap_paints_every_node_and_a_press_centres_the_view_there() {
    let (state, host) = mount(grid(500));
    tick().await;
    let errors: std::collections::HashMap<String, Vec<String>> =
        [("n0".to_string(), vec!["bad".to_string()])].into_iter().collect();
    state.set_errors(&errors);
    state.viewport.set(leptos_flow::Viewport { x: 0.0, y: 0.0, zoom: 1.0 });
    tick().await;
    let mini: web_sys::HtmlCanvasElement = q(&host, ".lf-minimap canvas").dyn_into().unwrap();
    assert_eq!(mini.get_attribute("data-nodes").as_deref(), Some("500"));
    let ctx: web_sys::CanvasRenderingContext2d = mini.get_context("2d").unwrap().unwrap().dyn_into().unwrap();
    let data = ctx.get_image_data(0.0, 0.0, mini.width() as f64, mini.height() as f64).unwrap().data();
    let (mut grey, mut red) = (0, 0);
    for px in data.chunks(4) {
        match px {
            [0x5a, 0x63, 0x78, 255] => grey += 1,
            [0xff, 0x5c, 0x5c, 255] => red += 1,
            _ => {}
        }
    }
    assert!(grey > 1000 && red > 0, "nodes painted: {grey} grey, {red} red");
    // The view box sits where the view is: the graph's top-left corner.
    let view = q(&host, ".lf-mini-view").get_bounding_client_rect();
    let m = q(&host, ".lf-minimap").get_bounding_client_rect();
    assert!((view.left() - m.left()).abs() < 3.0 && (view.top() - m.top()).abs() < 3.0);
    // A press where the minimap shows the middle of the graph (it fills the width, top
    // aligned) centres the view there.
    let (gw, gh) = (24.0 * 260.0 + 200.0, 19.0 * 160.0 + 104.0);
    let c = mini.get_bounding_client_rect();
    let (cx, cy) = ((c.left() + c.width() / 2.0) as i32, (c.top() + c.width() / gw * gh / 2.0) as i32);
    q(&host, ".lf-minimap").dispatch_event(&mouse("mousedown", cx, cy, false)).unwrap();
    tick().await;
    let (w, h) = state.size.get_untracked();
    let centre = state.viewport.get_untracked().to_world(Pos::new(w / 2.0, h / 2.0));
    assert!((centre.x - gw / 2.0).abs() < gw / 50.0 && (centre.y - gh / 2.0).abs() < gh / 50.0, "{centre:?}");
    let view = q(&host, ".lf-mini-view").get_bounding_client_rect();
    let (vx, vy) = (view.left() + view.width() / 2.0, view.top() + view.height() / 2.0);
    assert!((vx - cx as f64).abs() < 2.0 && (vy - cy as f64).abs() < 2.0, "view box centred at {vx},{vy}");
    host.remove();
}

/// Type into an in-place editor and press a key there (as a user's keyboard does).
fn type_in(field: &web_sys::Element, text: &str, k: &str, ctrl: bool) {
    if let Some(t) = field.dyn_ref::<web_sys::HtmlTextAreaElement>() {
        t.set_value(text);
    } else if let Some(i) = field.dyn_ref::<web_sys::HtmlInputElement>() {
        i.set_value(text);
    }
    let init = web_sys::KeyboardEventInit::new();
    init.set_bubbles(true);
    init.set_cancelable(true);
    init.set_key(k);
    init.set_ctrl_key(ctrl);
    field
        .dispatch_event(&web_sys::KeyboardEvent::new_with_keyboard_event_init_dict("keydown", &init).unwrap())
        .unwrap();
}

fn active_class() -> String {
    document().active_element().map(|e| e.class_name()).unwrap_or_default()
}

#[wasm_bindgen_test]
async fn a_group_made_from_the_selection_moves_what_it_holds_in_one_undo_step() {
    let (state, host) = mount(graph(vec![node("a", 0.0, 0.0), node("b", 250.0, 0.0), node("c", 0.0, 300.0)]));
    tick().await;
    let zoom = state.viewport.get_untracked().zoom;
    state.select_only(["a".to_string(), "b".to_string()]);
    key(&host, "g", true, false);
    tick().await;
    assert_eq!(count(&host, ".lf-group"), 1);
    assert_eq!(q(&host, ".lf-minimap canvas").get_attribute("data-annotations").as_deref(), Some("1"));
    // Its title is ready to type, and Enter keeps it as one undo step.
    let field = q(&host, ".lf-group .lf-annotation-edit");
    assert_eq!(active_class(), "lf-annotation-edit", "the title field has the focus");
    type_in(&field, "Lookup", "Enter", false);
    tick().await;
    assert_eq!(q(&host, ".lf-group-title").text_content().as_deref(), Some("Lookup"));
    assert_eq!(state.undo_label().as_deref(), Some("Rename group"));
    let id = state.graph().annotations.keys().next().cloned().unwrap();
    assert_eq!(state.graph().annotations[&id].text, "Lookup");

    // The group's body lets presses through to the canvas (pan, box select); its title does not.
    let r = state.graph().annotations[&id].rect();
    let (bx, by) = client(&state, &host, Pos::new(r.x + 10.0, r.y + r.h - 10.0));
    let under = document().element_from_point(bx as f32, by as f32).unwrap();
    assert!(!under.class_list().contains("lf-group"), "the body is not a target: {}", under.class_name());

    // Dragging the title moves a and b (inside) but not c, all in one step.
    let before = state.graph();
    let title = q(&host, ".lf-group-title");
    let (x, y) = centre(&title);
    drag(&title, x + 100, y + 50, false).await;
    let g = state.graph();
    for id in ["a", "b"] {
        let (p, q0) = (g.nodes[id].pos, before.nodes[id].pos);
        assert!((p.x - q0.x - 100.0 / zoom).abs() < 2.0 && (p.y - q0.y - 50.0 / zoom).abs() < 2.0, "{id}: {p:?}");
    }
    assert_eq!(g.nodes["c"].pos, before.nodes["c"].pos);
    assert_eq!(state.undo_label().as_deref(), Some("Move 3 items"));
    key(&host, "z", true, false);
    tick().await;
    assert_eq!(state.graph(), before);

    // A selected group shows colour swatches; one click colours it, one undo step.
    state.select_items([], [id.clone()]);
    tick().await;
    q(&host, ".lf-tints [data-tint='green']").click();
    tick().await;
    assert!(q(&host, ".lf-group").class_list().contains("lf-tint-green"));
    assert_eq!(state.graph().annotations[&id].tint.as_deref(), Some("green"));
    assert_eq!(state.undo_label().as_deref(), Some("Colour"));
    q(&host, ".lf-tints [data-tint='default']").click();
    tick().await;
    assert_eq!(state.graph().annotations[&id].tint, None);

    // Deleting the group leaves its nodes.
    key(&host, "Delete", false, false);
    tick().await;
    assert_eq!(count(&host, ".lf-group"), 0);
    assert_eq!(state.graph().nodes.len(), 3);
    host.remove();
}

#[wasm_bindgen_test]
async fn a_sticky_note_is_written_in_place_resized_and_deleted() {
    let (state, host) = mount(graph(vec![node("a", 0.0, 0.0)]));
    tick().await;
    key(&host, "n", false, false);
    tick().await;
    assert_eq!(count(&host, ".lf-note"), 1);
    let placed = state.graph().annotations.values().next().unwrap().rect();
    assert!(!placed.intersects(&leptos_flow::geometry::node_rect(&state.graph().nodes["a"])), "{placed:?} covers a");
    let field = q(&host, ".lf-note textarea");
    assert_eq!(active_class(), "lf-annotation-edit", "the new note is ready to write");
    // Enter makes a new line; Ctrl+Enter keeps the text.
    type_in(&field, "Seeds 7-9\nreward > 0.1", "Enter", false);
    tick().await;
    assert_eq!(count(&host, ".lf-note textarea"), 1, "plain Enter is a line break");
    type_in(&field, "Seeds 7-9\nreward > 0.1", "Enter", true);
    tick().await;
    let text = q(&host, ".lf-note-text").text_content().unwrap_or_default();
    assert_eq!(text, "Seeds 7-9\nreward > 0.1");
    assert_eq!(state.undo_label().as_deref(), Some("Edit note"));
    // Shift+F fits the selection, the new note: its middle comes to the canvas's middle.
    key(&host, "F", false, true);
    tick().await;
    let r = state.graph().annotations.values().next().unwrap().rect();
    let mid = state.viewport.get_untracked().to_screen(Pos::new(r.x + r.w / 2.0, r.y + r.h / 2.0));
    assert!((mid.x - 400.0).abs() < 2.0 && (mid.y - 350.0).abs() < 2.0, "{mid:?}");

    // A double-click edits it again; Escape drops the change.
    let note = q(&host, ".lf-note");
    let (x, y) = centre(&note);
    note.dispatch_event(&mouse("dblclick", x, y, false)).unwrap();
    tick().await;
    type_in(&q(&host, ".lf-note textarea"), "scribble", "Escape", false);
    tick().await;
    assert_eq!(q(&host, ".lf-note-text").text_content().unwrap_or_default(), text);

    // The corner handle resizes it, one step.
    let id = state.graph().annotations.keys().next().cloned().unwrap();
    let w0 = state.graph().annotations[&id].width;
    let zoom = state.viewport.get_untracked().zoom;
    let handle = q(&host, ".lf-note .lf-resize");
    let (hx, hy) = centre(&handle);
    drag(&handle, hx + 80, hy + 40, false).await;
    let w1 = state.graph().annotations[&id].width;
    assert!((w1 - w0 - 80.0 / zoom).abs() < 2.0, "{w0} -> {w1} at zoom {zoom}");
    assert_eq!(state.undo_label().as_deref(), Some("Resize note"));

    // Selected, Delete removes it; undo brings it back with its text.
    note.dispatch_event(&mouse("mousedown", x, y, false)).unwrap();
    web_sys::window().unwrap().dispatch_event(&mouse("mouseup", x, y, false)).unwrap();
    assert_eq!(state.selected_annotation_ids(), vec![id.clone()]);
    key(&host, "Delete", false, false);
    tick().await;
    assert_eq!(count(&host, ".lf-note"), 0);
    key(&host, "z", true, false);
    tick().await;
    assert_eq!(q(&host, ".lf-note-text").text_content().unwrap_or_default(), text);
    host.remove();
}
