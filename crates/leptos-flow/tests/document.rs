//! The document without a browser: commands, undo/redo, the saved marker, wire rules,
//! copy/paste and geometry.
#![cfg(not(target_arch = "wasm32"))]

use leptos_flow::clipboard::{copy, paste};
use leptos_flow::geometry::{
    annotations_in, bounds, free_spot, node_rect, nodes_in, port_pos_by_name, tidy, wire_bounds, wire_curve,
    wire_distance, Rect, Viewport,
};
use leptos_flow::{
    Annotation, AnnotationKind, Command, Edge, EditError, Endpoint, Fragment, Graph, History, Node, Port, Pos,
    WireError, WireRules,
};
use proptest::prelude::*;

fn rules() -> WireRules {
    let mut r = WireRules::same_type_only(&["flow", "text", "number", "json"]);
    for t in ["text", "number"] {
        r.compat.insert((t.to_string(), "json".to_string()));
    }
    r.compat.insert(("number".into(), "text".into()));
    r.multi_input.insert("flow".into());
    r.single_output.insert("flow".into());
    r
}

fn node(id: &str, x: f64) -> Node {
    Node::new(id, "step", Pos::new(x, 0.0)).with_ports(
        vec![Port::new("in", "flow"), Port::new("value", "json"), Port::new("name", "text")],
        vec![Port::new("out", "flow"), Port::new("n", "number"), Port::new("flag", "bool")],
    )
}

fn ep(n: &str, p: &str) -> Endpoint {
    Endpoint::new(n, p)
}

fn three() -> History {
    let mut h = History::new(Graph::new());
    h.apply(Command::add("add", vec![node("a", 0.0), node("b", 300.0), node("c", 600.0)], vec![])).unwrap();
    h.mark_saved();
    h
}

#[test]
fn connect_undo_redo_and_saved_marker() {
    let mut h = three();
    assert!(!h.is_dirty());
    let cmd = Command::connect(&rules(), h.graph(), &ep("a", "out"), &ep("b", "in")).unwrap();
    h.apply(cmd).unwrap();
    assert!(h.is_dirty());
    assert_eq!(h.graph().edges.len(), 1);
    assert_eq!(h.undo().as_deref(), Some("Connect"));
    assert!(h.graph().edges.is_empty());
    assert!(!h.is_dirty(), "undoing back to the saved state makes the document clean");
    assert_eq!(h.redo().as_deref(), Some("Connect"));
    assert!(h.is_dirty());
    h.mark_saved();
    h.undo();
    assert!(h.is_dirty(), "undoing past the save makes it dirty again");
}

#[test]
fn refused_wires_say_why_and_change_nothing() {
    let h = three();
    let r = rules();
    let g = h.graph();
    assert_eq!(
        r.check(g, &ep("a", "flag"), &ep("b", "name")).unwrap_err(),
        WireError::Incompatible { from: "bool".into(), to: "text".into() }
    );
    assert_eq!(
        r.check(g, &ep("a", "n"), &ep("b", "in")).unwrap_err().to_string(),
        "a `number` output cannot feed a `flow` input"
    );
    assert_eq!(r.check(g, &ep("a", "out"), &ep("a", "in")).unwrap_err(), WireError::SelfLoop);
    assert!(matches!(r.check(g, &ep("a", "nope"), &ep("b", "in")), Err(WireError::UnknownOutput { .. })));
    assert!(matches!(r.check(g, &ep("a", "out"), &ep("zz", "in")), Err(WireError::UnknownNode(_))));
    // number feeds text and json
    assert!(r.check(g, &ep("a", "n"), &ep("b", "name")).is_ok());
    assert!(r.check(g, &ep("a", "n"), &ep("b", "value")).is_ok());
    let mut h = h.clone();
    let err = Command::connect(&r, h.graph(), &ep("a", "flag"), &ep("b", "name")).unwrap_err();
    assert!(matches!(err, EditError::Wire(WireError::Incompatible { .. })));
    assert!(!h.can_undo() || h.undo_label() == Some("add"));
    h.apply(Command::connect(&r, h.graph(), &ep("a", "out"), &ep("b", "in")).unwrap()).unwrap();
    assert_eq!(
        Command::connect(&r, h.graph(), &ep("a", "out"), &ep("b", "in")).unwrap_err(),
        EditError::Wire(WireError::Duplicate)
    );
}

#[test]
fn cycles_are_refused() {
    let mut h = three();
    let r = rules();
    h.apply(Command::connect(&r, h.graph(), &ep("a", "out"), &ep("b", "in")).unwrap()).unwrap();
    h.apply(Command::connect(&r, h.graph(), &ep("b", "out"), &ep("c", "in")).unwrap()).unwrap();
    let e = r.check(h.graph(), &ep("c", "n"), &ep("a", "value")).unwrap_err();
    assert!(matches!(e, WireError::Cycle { .. }), "{e}");
    // Replacing a.out's single flow wire with a.out → c is fine (no cycle either way).
    assert!(r.check(h.graph(), &ep("a", "out"), &ep("c", "in")).is_ok());
}

#[test]
fn single_inputs_and_flow_outputs_replace_their_old_wire_in_one_step() {
    let mut h = three();
    let r = rules();
    h.apply(Command::connect(&r, h.graph(), &ep("a", "n"), &ep("c", "name")).unwrap()).unwrap();
    h.apply(Command::connect(&r, h.graph(), &ep("b", "n"), &ep("c", "name")).unwrap()).unwrap();
    assert_eq!(h.graph().edges, vec![Edge::new(ep("b", "n"), ep("c", "name"))]);
    h.undo();
    assert_eq!(h.graph().edges, vec![Edge::new(ep("a", "n"), ep("c", "name"))]);
    h.redo();
    // flow outputs feed one input; flow inputs take many
    h.apply(Command::connect(&r, h.graph(), &ep("a", "out"), &ep("c", "in")).unwrap()).unwrap();
    h.apply(Command::connect(&r, h.graph(), &ep("b", "out"), &ep("c", "in")).unwrap()).unwrap();
    assert_eq!(h.graph().edges_into(&ep("c", "in")).len(), 2);
    h.apply(Command::connect(&r, h.graph(), &ep("a", "out"), &ep("b", "in")).unwrap()).unwrap();
    assert_eq!(h.graph().edges_out_of(&ep("a", "out")).len(), 1);
    assert_eq!(h.graph().edges_out_of(&ep("a", "out"))[0].1.to, ep("b", "in"));
}

#[test]
fn delete_takes_wires_along_and_undo_restores_order() {
    let mut h = three();
    let r = rules();
    h.apply(Command::connect(&r, h.graph(), &ep("a", "out"), &ep("b", "in")).unwrap()).unwrap();
    h.apply(Command::connect(&r, h.graph(), &ep("b", "out"), &ep("c", "in")).unwrap()).unwrap();
    let before = h.graph().clone();
    h.apply(Command::delete(h.graph(), &["b".to_string()], &[], &[])).unwrap();
    assert_eq!(h.graph().nodes.len(), 2);
    assert!(h.graph().edges.is_empty());
    h.undo();
    assert_eq!(h.graph(), &before, "node order and wire order come back exactly");
}

#[test]
fn a_failing_command_leaves_the_document_whole() {
    let mut h = three();
    let before = h.graph().clone();
    let cmd = Command::add("bad", vec![node("d", 0.0), node("a", 0.0)], vec![]);
    assert_eq!(h.apply(cmd), Err(EditError::DuplicateNode("a".into())));
    assert_eq!(h.graph(), &before);
    assert_eq!(h.undo_label(), Some("add"));
    let dangling = Command::add("bad", vec![], vec![Edge::new(ep("a", "out"), ep("zz", "in"))]);
    assert!(matches!(h.apply(dangling), Err(EditError::DanglingEdge { .. })));
    assert_eq!(h.graph(), &before);
}

#[test]
fn a_drag_is_one_undo_step() {
    let mut h = three();
    h.apply(Command::moves(vec![("a".into(), Pos::new(10.0, 20.0)), ("b".into(), Pos::new(30.0, 40.0))])).unwrap();
    assert_eq!(h.graph().nodes["a"].pos, Pos::new(10.0, 20.0));
    h.undo();
    assert_eq!(h.graph().nodes["a"].pos, Pos::new(0.0, 0.0));
    assert_eq!(h.graph().nodes["b"].pos, Pos::new(300.0, 0.0));
}

#[test]
fn editing_a_node_drops_wires_to_ports_it_lost() {
    let mut h = three();
    let r = rules();
    h.apply(Command::connect(&r, h.graph(), &ep("a", "n"), &ep("b", "name")).unwrap()).unwrap();
    let mut b = h.graph().nodes["b"].clone();
    b.inputs.retain(|p| p.name != "name");
    h.apply(Command::set_node(h.graph(), b).unwrap()).unwrap();
    assert!(h.graph().edges.is_empty());
    h.undo();
    assert_eq!(h.graph().edges.len(), 1);
    assert!(h.graph().nodes["b"].input("name").is_some());
}

#[test]
fn paste_gives_fresh_ids_and_keeps_only_inner_wires() {
    let mut h = three();
    let r = rules();
    h.apply(Command::connect(&r, h.graph(), &ep("a", "out"), &ep("b", "in")).unwrap()).unwrap();
    h.apply(Command::connect(&r, h.graph(), &ep("b", "out"), &ep("c", "in")).unwrap()).unwrap();
    let frag = copy(h.graph(), &["a".to_string(), "b".to_string()], &[]);
    assert_eq!(frag.nodes.len(), 2);
    assert_eq!(frag.edges.len(), 1, "b → c leaves the selection and is not copied");
    let text = frag.to_json();
    let back = Fragment::from_json(&text).unwrap();
    assert_eq!(back, frag);
    assert!(Fragment::from_json("{\"nodes\": []}").is_none());
    assert!(Fragment::from_json("not json").is_none());
    let (cmd, (ids, _)) = paste(h.graph(), &back, Pos::new(40.0, 40.0), true);
    h.apply(cmd).unwrap();
    assert_eq!(ids, vec!["a_2".to_string(), "b_2".to_string()]);
    assert_eq!(h.graph().nodes.len(), 5);
    assert!(h.graph().contains_edge(&Edge::new(ep("a_2", "out"), ep("b_2", "in"))));
    assert_eq!(h.graph().nodes["a_2"].pos, Pos::new(40.0, 40.0));
    // Paste again: ids keep counting, into another graph too.
    let (cmd, (ids, _)) = paste(h.graph(), &back, Pos::new(0.0, 0.0), true);
    h.apply(cmd).unwrap();
    assert_eq!(ids, vec!["a_3".to_string(), "b_3".to_string()]);
    let mut other = History::new(Graph::new());
    let (cmd, (ids, _)) = paste(other.graph(), &back, Pos::new(500.0, 500.0), false);
    other.apply(cmd).unwrap();
    assert_eq!(ids, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(other.graph().nodes["a"].pos, Pos::new(500.0, 500.0));
    assert_eq!(h.undo_label(), Some("Paste 2 nodes"));
}

#[test]
fn viewport_maths() {
    let v = Viewport { x: 100.0, y: 50.0, zoom: 2.0 };
    let w = Pos::new(10.0, 20.0);
    assert_eq!(v.to_world(v.to_screen(w)), w);
    let z = v.zoom_at(Pos::new(300.0, 200.0), 0.5);
    assert_eq!(z.zoom, 1.0);
    assert_eq!(z.to_world(Pos::new(300.0, 200.0)), v.to_world(Pos::new(300.0, 200.0)));
    assert_eq!(v.zoom_at(Pos::new(0.0, 0.0), 100.0).zoom, leptos_flow::geometry::MAX_ZOOM);
    let h = three();
    let b = bounds(h.graph(), None).unwrap();
    assert_eq!(b.x, 0.0);
    assert_eq!(b.w, 800.0);
    let fit = Viewport::fit(b, 1000.0, 600.0, 20.0);
    let vis = fit.visible(1000.0, 600.0);
    assert!(vis.x <= b.x && vis.x + vis.w >= b.x + b.w && vis.y <= b.y && vis.y + vis.h >= b.y + b.h);
    let sel = nodes_in(h.graph(), &Rect::from_corners(Pos::new(250.0, -10.0), Pos::new(650.0, 10.0)));
    assert_eq!(sel, vec!["b".to_string(), "c".to_string()]);
    let p = port_pos_by_name(&h.graph().nodes["b"], true, "n").unwrap();
    assert_eq!(p.x, 500.0);
}

#[test]
fn wire_hit_tests_follow_the_drawn_curve() {
    let (a, b) = (Pos::new(0.0, 0.0), Pos::new(300.0, 200.0));
    // The curve's midpoint (t = 1/2 of the cubic) is on the wire.
    let c = wire_curve(a, b);
    let mid = Pos::new(
        (c[0].x + 3.0 * c[1].x + 3.0 * c[2].x + c[3].x) / 8.0,
        (c[0].y + 3.0 * c[1].y + 3.0 * c[2].y + c[3].y) / 8.0,
    );
    assert!(wire_distance(a, b, mid) < 0.5, "{}", wire_distance(a, b, mid));
    assert!(wire_distance(a, b, a) < 1e-9 && wire_distance(a, b, b) < 1e-9);
    // The straight chord is not the wire: an S-curve bows away from it.
    let chord = Pos::new(75.0, 50.0);
    assert!(wire_distance(a, b, chord) > 10.0, "{}", wire_distance(a, b, chord));
    // 6 px beside the midpoint, 6 px away.
    let off = Pos::new(mid.x + 6.0, mid.y);
    let d = wire_distance(a, b, off);
    assert!(d > 1.0 && d <= 6.0 + 1e-9, "{d}");
    // The box holds every point of the curve, backwards wires too (they loop out and back).
    for (a, b) in [(a, b), (Pos::new(300.0, 0.0), Pos::new(0.0, 120.0))] {
        let r = wire_bounds(a, b);
        let c = wire_curve(a, b);
        for i in 0..=50 {
            let t = i as f64 / 50.0;
            let u = 1.0 - t;
            let p = Pos::new(
                u * u * u * c[0].x + 3.0 * u * u * t * c[1].x + 3.0 * u * t * t * c[2].x + t * t * t * c[3].x,
                u * u * u * c[0].y + 3.0 * u * u * t * c[1].y + 3.0 * u * t * t * c[2].y + t * t * t * c[3].y,
            );
            assert!(r.contains(p), "{p:?} outside {r:?}");
        }
    }
}

#[test]
fn tidy_layers_by_wire_depth_in_one_step() {
    let mut h = three();
    let r = rules();
    // c → a → b
    h.apply(Command::connect(&r, h.graph(), &ep("c", "out"), &ep("a", "in")).unwrap()).unwrap();
    h.apply(Command::connect(&r, h.graph(), &ep("a", "out"), &ep("b", "in")).unwrap()).unwrap();
    h.apply(tidy(h.graph())).unwrap();
    let g = h.graph();
    assert!(g.nodes["c"].pos.x < g.nodes["a"].pos.x && g.nodes["a"].pos.x < g.nodes["b"].pos.x);
    assert_eq!(h.undo_label(), Some("Tidy up"));
    h.undo();
    assert_eq!(h.graph().nodes["a"].pos, Pos::new(0.0, 0.0));
}

#[test]
fn fresh_ids() {
    let h = three();
    assert_eq!(h.graph().fresh_id("d"), "d");
    assert_eq!(h.graph().fresh_id("a"), "a_2");
    assert_eq!(h.graph().fresh_id(""), "node");
}

/// Three nodes in a row, a group around `a` and `b`, and a note inside the group.
fn grouped() -> (History, String, String) {
    let mut h = three();
    let (cmd, group) = Command::group(h.graph(), &["a".to_string(), "b".to_string()], &[], "Lookup").unwrap();
    h.apply(cmd).unwrap();
    let r = h.graph().annotations[&group].rect();
    let id = h.graph().fresh_annotation_id("note");
    let note = Annotation::new(&id, AnnotationKind::Note, "why", Pos::new(r.x + 10.0, r.y + r.h - 70.0), 150.0, 60.0);
    h.apply(Command::annotate(note)).unwrap();
    (h, group, id)
}

#[test]
fn a_group_wraps_the_nodes_it_is_made_for_and_moves_what_it_holds() {
    let (mut h, group, note) = grouped();
    let g = h.graph();
    let r = g.annotations[&group].rect();
    assert_eq!(g.annotations[&group].text, "Lookup");
    assert!(r.contains_rect(&node_rect(&g.nodes["a"])) && r.contains_rect(&node_rect(&g.nodes["b"])));
    assert!(!r.intersects(&node_rect(&g.nodes["c"])), "c at x=600 stays outside: {r:?}");
    let (nodes, notes) = g.group_contents(&group);
    assert_eq!(nodes, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(notes, vec![note.clone()]);
    assert_eq!(g.group_contents(&note), (vec![], vec![]), "a note holds nothing");
    assert_eq!(annotations_in(g, &Rect { x: r.x - 1.0, y: r.y - 1.0, w: r.w + 2.0, h: r.h + 2.0 }).len(), 2);
    assert_eq!(g.annotations.get_index_of(&group), Some(0), "groups go behind notes");

    // A group and its contents move as one undo step.
    let before = h.graph().clone();
    let shift = |p: Pos| Pos::new(p.x + 50.0, p.y + 20.0);
    let nodes = nodes.iter().map(|id| (id.clone(), shift(before.nodes[id].pos))).collect();
    let notes = [&group, &note].iter().map(|id| ((*id).clone(), shift(before.annotations[*id].pos))).collect();
    h.apply(Command::move_items(nodes, notes)).unwrap();
    assert_eq!(h.undo_label(), Some("Move 4 items"));
    assert_eq!(h.graph().annotations[&group].pos, shift(before.annotations[&group].pos));
    assert_eq!(h.graph().nodes["b"].pos, shift(before.nodes["b"].pos));
    assert_eq!(h.graph().nodes["c"].pos, before.nodes["c"].pos);
    h.undo();
    assert_eq!(h.graph(), &before);

    // Deleting the group leaves what it held; undo brings it back in its place.
    h.apply(Command::delete(h.graph(), &[], &[], std::slice::from_ref(&group))).unwrap();
    assert_eq!(h.undo_label(), Some("Delete annotation"));
    assert!(!h.graph().annotations.contains_key(&group));
    assert_eq!(h.graph().nodes.len(), 3);
    assert!(h.graph().annotations.contains_key(&note));
    h.undo();
    assert_eq!(h.graph(), &before);

    // Renaming and resizing are one step each; an unknown id is refused with its name.
    let mut renamed = before.annotations[&group].clone();
    renamed.text = "SQL lookup".into();
    renamed.width += 40.0;
    h.apply(Command::set_annotation(h.graph(), renamed.clone(), "Rename group").unwrap()).unwrap();
    assert_eq!(h.graph().annotations[&group], renamed);
    renamed.id = "nope".into();
    assert_eq!(Command::set_annotation(h.graph(), renamed, "x"), Err(EditError::UnknownAnnotation("nope".into())));
    let dup = Annotation::new(&note, AnnotationKind::Note, "", Pos::default(), 10.0, 10.0);
    assert_eq!(h.apply(Command::annotate(dup)), Err(EditError::DuplicateAnnotation(note.clone())));
    assert!(Command::group(h.graph(), &[], &[], "empty").is_none(), "nothing selected, no group");
}

#[test]
fn tidy_refits_each_group_around_the_nodes_it_held() {
    let (mut h, group, _) = grouped();
    h.apply(Command::moves(vec![("b".into(), Pos::new(260.0, 300.0))])).unwrap();
    // Grow the group to hold b where it went, then tidy.
    let mut grown = h.graph().annotations[&group].clone();
    grown.height += 400.0;
    h.apply(Command::set_annotation(h.graph(), grown, "Resize group").unwrap()).unwrap();
    h.apply(tidy(h.graph())).unwrap();
    let g = h.graph();
    let r = g.annotations[&group].rect();
    let members = bounds(g, Some(&["a".to_string(), "b".to_string()])).unwrap();
    assert!(r.contains_rect(&members), "{r:?} around {members:?}");
    assert!(r.w < members.w + 100.0 && r.h < members.h + 150.0, "refitted, not left grown: {r:?}");
    // Tidying again changes nothing: the group's margin does not shift the layout.
    let again = tidy(h.graph());
    assert!(again.ops.is_empty(), "{:?}", again.ops);
}

#[test]
fn a_free_spot_covers_no_node_and_no_note() {
    let (h, group, note) = grouped();
    let g = h.graph();
    let clear = |p: Pos| {
        let r = Rect { x: p.x, y: p.y, w: 220.0, h: 120.0 };
        !g.nodes.values().any(|n| node_rect(n).intersects(&r)) && !g.annotations[&note].rect().intersects(&r)
    };
    // Asked for a place on top of `b`: it moves off, but not far.
    let want = g.nodes["b"].pos;
    let p = free_spot(g, want, 220.0, 120.0);
    assert!(clear(p), "{p:?}");
    assert!((p.x - want.x).abs() + (p.y - want.y).abs() < 400.0, "{p:?} is far from {want:?}");
    // A free place is kept as asked; a group does not block it.
    assert_eq!(free_spot(g, Pos::new(1000.0, 1000.0), 220.0, 120.0), Pos::new(1000.0, 1000.0));
    let mut big = h.clone();
    let mut grown = g.annotations[&group].clone();
    grown.height += 2000.0;
    big.apply(Command::set_annotation(g, grown, "Resize group").unwrap()).unwrap();
    let below = Pos::new(0.0, 800.0);
    assert_eq!(free_spot(big.graph(), below, 220.0, 120.0), below);
}

#[test]
fn copy_paste_carries_annotations_with_fresh_ids() {
    let (mut h, group, note) = grouped();
    let frag = copy(h.graph(), &["a".to_string()], &[group.clone(), note.clone()]);
    assert_eq!(frag.annotations.len(), 2);
    let back = Fragment::from_json(&frag.to_json()).unwrap();
    assert_eq!(back, frag);
    let (cmd, (ids, notes)) = paste(h.graph(), &back, Pos::new(40.0, 40.0), true);
    h.apply(cmd).unwrap();
    assert_eq!(ids, vec!["a_2".to_string()]);
    assert_eq!(notes, vec![format!("{group}_2"), format!("{note}_2")]);
    assert_eq!(h.undo_label(), Some("Paste 3 items"));
    let g = h.graph();
    let (a, b) = (&g.annotations[&group], &g.annotations[&notes[0]]);
    assert_eq!((b.pos.x - a.pos.x, b.pos.y - a.pos.y, b.text.as_str()), (40.0, 40.0, "Lookup"));
    // A fragment of nodes only (older clipboards) still reads.
    let old = r#"{"leptos_flow_fragment":1,"nodes":[],"edges":[]}"#;
    assert!(Fragment::from_json(old).is_some_and(|f| f.annotations.is_empty()));
}

#[test]
fn a_graph_without_annotations_serialises_as_before() {
    let h = three();
    let text = serde_json::to_string(h.graph()).unwrap();
    assert!(!text.contains("annotations"));
    let (h, _, _) = grouped();
    let text = serde_json::to_string(h.graph()).unwrap();
    let back: Graph = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, h.graph());
}

proptest! {
    /// Any sequence of commands, undone all the way, gives back the first document; redone
    /// all the way, the last.
    #[test]
    fn undo_all_then_redo_all_round_trips(script in proptest::collection::vec((0u8..8, 0usize..6, 0usize..6, 0usize..3), 1..30)) {
        let mut h = three();
        let r = rules();
        let start = h.graph().clone();
        let names = ["a", "b", "c", "d", "e", "f"];
        let outs = ["out", "n", "flag"];
        let mut steps = 0;
        let ins = ["in", "value", "name"];
        for (op, i, j, p) in script {
            let g = h.graph().clone();
            let cmd = match op {
                0 => Some(Command::add("add", vec![node(&g.fresh_id(names[i]), j as f64 * 10.0)], vec![])),
                1 => Command::connect(&r, &g, &ep(names[i], outs[p]), &ep(names[j], ins[p])).ok(),
                2 => Some(Command::delete(&g, &[names[i].to_string()], &[], &[])),
                3 => Some(Command::moves(vec![(names[i].to_string(), Pos::new(j as f64, p as f64))])),
                4 => {
                    let notes: Vec<String> = g.annotations.keys().cloned().collect();
                    let (c, _) = paste(&g, &copy(&g, &[names[i].to_string(), names[j].to_string()], &notes), Pos::new(5.0, 5.0), true);
                    Some(c)
                }
                5 => Command::group(&g, &[names[i].to_string(), names[j].to_string()], &[], "G").map(|(c, _)| c),
                6 => g.annotations.keys().nth(i).map(|id| Command::delete(&g, &[], &[], std::slice::from_ref(id))),
                _ => g.annotations.keys().nth(i).map(|id| {
                    Command::move_items(vec![(names[j].to_string(), Pos::new(1.0, 2.0))], vec![(id.clone(), Pos::new(j as f64, p as f64))])
                }),
            };
            if let Some(cmd) = cmd {
                let rev = h.revision();
                if h.apply(cmd).is_ok() && h.revision() != rev {
                    steps += 1;
                }
            }
            // Invariant: no wire names a missing node.
            for e in &h.graph().edges {
                prop_assert!(h.graph().nodes.contains_key(&e.from.node) && h.graph().nodes.contains_key(&e.to.node));
            }
        }
        let end = h.graph().clone();
        for _ in 0..steps {
            prop_assert!(h.undo().is_some());
        }
        prop_assert_eq!(h.graph(), &start);
        prop_assert!(!h.is_dirty());
        while h.can_redo() {
            prop_assert!(h.redo().is_some());
        }
        prop_assert_eq!(h.graph(), &end);
    }
}
