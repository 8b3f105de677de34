//! The gym file ↔ the editor's graph. The graph holds nodes, wires and annotations (groups,
//! notes); every other field of the gym (tasks, fixtures, limits, …) stays in the JSON and
//! passes through untouched.

use crate::api::{Catalog, NodePorts, PortDef};
use leptos_flow::view::PaletteItem;
use leptos_flow::{Annotation, AnnotationKind, Edge, Endpoint, Graph, Node, Port, Pos, WireRules};
use serde_json::{json, Map, Value};

/// Keys of a node object the editor owns; the rest is the node's parameters.
const OWN_KEYS: &[&str] = &["id", "kind", "label", "position"];

fn port(p: &PortDef) -> Port {
    Port { name: p.name.clone(), ty: p.ty.clone(), required: p.required }
}

pub fn ports(p: &NodePorts) -> (Vec<Port>, Vec<Port>) {
    (p.inputs.iter().map(port).collect(), p.outputs.iter().map(port).collect())
}

/// The ports to draw for the nodes of `spec` before it is analysed: the last analysis's,
/// else those already on the canvas for a node of the same id and kind (so a JSON edit
/// after a parse error does not redraw every node with its kind's default ports).
pub fn known_ports(
    spec: &Value,
    current: &Graph,
    analysed: &std::collections::BTreeMap<String, NodePorts>,
) -> std::collections::BTreeMap<String, NodePorts> {
    let def = |p: &Port| PortDef { name: p.name.clone(), ty: p.ty.clone(), required: p.required };
    let mut out = analysed.clone();
    for n in spec.get("nodes").and_then(Value::as_array).into_iter().flatten() {
        let (Some(id), Some(kind)) = (n.get("id").and_then(Value::as_str), n.get("kind").and_then(Value::as_str))
        else {
            continue;
        };
        if out.contains_key(id) {
            continue;
        }
        if let Some(c) = current.node(id).filter(|c| c.kind == kind) {
            out.insert(
                id.to_string(),
                NodePorts { inputs: c.inputs.iter().map(def).collect(), outputs: c.outputs.iter().map(def).collect() },
            );
        }
    }
    out
}

/// Wire rules from the catalog's port-type table. Flow inputs take many wires, flow outputs
/// feed one, and cycles are refused, as the validator requires.
pub fn rules(catalog: &Catalog) -> WireRules {
    let mut r = WireRules { acyclic: true, ..Default::default() };
    r.compat = catalog.compat.iter().cloned().collect();
    r.multi_input.insert("flow".to_string());
    r.single_output.insert("flow".to_string());
    r
}

pub fn palette(catalog: &Catalog) -> Vec<PaletteItem> {
    catalog
        .kinds
        .iter()
        .map(|k| PaletteItem {
            kind: k.kind.clone(),
            title: k.title.clone(),
            category: k.category.clone(),
            description: k.description.clone(),
            inputs: k.inputs.iter().map(port).collect(),
            outputs: k.outputs.iter().map(port).collect(),
            data: k.defaults.clone(),
        })
        .collect()
}

/// The graph of a gym. Ports come from the last analysis when it has them, else from the
/// catalog's defaults for the kind. Nodes without a position are laid out in a column.
pub fn to_graph(spec: &Value, catalog: &Catalog, analysed: &std::collections::BTreeMap<String, NodePorts>) -> Graph {
    let mut g = Graph::new();
    let nodes = spec.get("nodes").and_then(Value::as_array).cloned().unwrap_or_default();
    for (i, n) in nodes.iter().enumerate() {
        let Some(obj) = n.as_object() else { continue };
        let id = obj.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        if id.is_empty() || g.nodes.contains_key(&id) {
            continue;
        }
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        let pos = obj
            .get("position")
            .map(|p| Pos::new(p["x"].as_f64().unwrap_or(0.0), p["y"].as_f64().unwrap_or(0.0)))
            .unwrap_or(Pos::new(0.0, i as f64 * 120.0));
        let mut node = Node::new(&id, &kind, pos);
        node.title = obj.get("label").and_then(Value::as_str).unwrap_or_default().to_string();
        let data: Map<String, Value> =
            obj.iter().filter(|(k, _)| !OWN_KEYS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
        node.data = Value::Object(data);
        let (inputs, outputs) = match analysed.get(&id) {
            Some(p) => ports(p),
            None => catalog
                .kind(&kind)
                .map(|k| (k.inputs.iter().map(port).collect(), k.outputs.iter().map(port).collect()))
                .unwrap_or_default(),
        };
        node.inputs = inputs;
        node.outputs = outputs;
        g.nodes.insert(id, node);
    }
    for e in spec.get("edges").and_then(Value::as_array).cloned().unwrap_or_default() {
        let get = |end: &str, k: &str| e.get(end).and_then(|v| v.get(k)).and_then(Value::as_str).map(str::to_string);
        if let (Some(a), Some(ap), Some(b), Some(bp)) =
            (get("from", "node"), get("from", "port"), get("to", "node"), get("to", "port"))
        {
            if g.nodes.contains_key(&a) && g.nodes.contains_key(&b) {
                g.edges.push(Edge::new(Endpoint::new(&a, &ap), Endpoint::new(&b, &bp)));
            }
        }
    }
    // Annotations the editor cannot draw (no id, an unknown kind) are left out here; the
    // validator names them in the JSON.
    for a in spec.get("annotations").and_then(Value::as_array).into_iter().flatten() {
        let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let Ok(kind) = serde_json::from_value::<AnnotationKind>(a["kind"].clone()) else { continue };
        let Some(id) =
            a.get("id").and_then(Value::as_str).filter(|id| !id.is_empty() && !g.annotations.contains_key(*id))
        else {
            continue;
        };
        let (pos, size) = (&a["position"], &a["size"]);
        let text = a.get("text").and_then(Value::as_str).unwrap_or_default();
        let w = num(size, "width").max(Annotation::MIN_WIDTH);
        let h = num(size, "height").max(Annotation::MIN_HEIGHT);
        let mut note = Annotation::new(id, kind, text, Pos::new(num(pos, "x"), num(pos, "y")), w, h);
        note.tint =
            a.get("color").and_then(Value::as_str).filter(|c| Annotation::TINTS.contains(c)).map(str::to_string);
        g.annotations.insert(id.to_string(), note);
    }
    g
}

/// Write the graph back into the gym JSON, keeping every other field as it was.
pub fn to_spec(base: &Value, g: &Graph) -> Value {
    let mut spec = match base {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let nodes: Vec<Value> = g
        .nodes
        .values()
        .map(|n| {
            let mut o = Map::new();
            o.insert("id".into(), json!(n.id));
            o.insert("kind".into(), json!(n.kind));
            if !n.title.is_empty() {
                o.insert("label".into(), json!(n.title));
            }
            // Whole numbers, as gym files write them.
            o.insert("position".into(), json!({"x": n.pos.x.round() as i64, "y": n.pos.y.round() as i64}));
            if let Value::Object(d) = &n.data {
                for (k, v) in d {
                    if !OWN_KEYS.contains(&k.as_str()) {
                        o.insert(k.clone(), v.clone());
                    }
                }
            }
            Value::Object(o)
        })
        .collect();
    let edges: Vec<Value> = g
        .edges
        .iter()
        .map(|e| json!({"from": {"node": e.from.node, "port": e.from.port}, "to": {"node": e.to.node, "port": e.to.port}}))
        .collect();
    spec.insert("nodes".into(), Value::Array(nodes));
    spec.insert("edges".into(), Value::Array(edges));
    let annotations: Vec<Value> = g
        .annotations
        .values()
        .map(|a| {
            let mut o = Map::new();
            o.insert("id".into(), json!(a.id));
            o.insert("kind".into(), json!(a.kind));
            if !a.text.is_empty() {
                o.insert("text".into(), json!(a.text));
            }
            let round = |v: f64| v.round() as i64;
            o.insert("position".into(), json!({"x": round(a.pos.x), "y": round(a.pos.y)}));
            o.insert("size".into(), json!({"width": round(a.width), "height": round(a.height)}));
            if let Some(tint) = &a.tint {
                o.insert("color".into(), json!(tint));
            }
            Value::Object(o)
        })
        .collect();
    if annotations.is_empty() {
        spec.remove("annotations");
    } else {
        spec.insert("annotations".into(), Value::Array(annotations));
    }
    Value::Object(spec)
}

/// Pretty JSON as saved on disk.
pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        serde_json::from_value(json!({
            "kinds": [{"kind": "on_reset", "category": "trigger", "title": "On reset", "outputs": [{"name": "out", "type": "flow"}]},
                      {"kind": "return_reset", "category": "terminus", "title": "Return reset", "inputs": [{"name": "in", "type": "flow", "required": true}]}],
            "compat": [["flow", "flow"]]
        }))
        .unwrap()
    }

    #[test]
    fn round_trip_keeps_other_fields_and_params() {
        let spec = json!({
            "spec_version": 1, "name": "x", "tasks": [{"id": "t"}],
            "nodes": [
                {"id": "r", "kind": "on_reset", "position": {"x": 10, "y": 20}},
                {"id": "e", "kind": "return_reset", "label": "End", "observation": "hi {{ task.id }}"}
            ],
            "edges": [{"from": {"node": "r", "port": "out"}, "to": {"node": "e", "port": "in"}},
                      {"from": {"node": "gone", "port": "out"}, "to": {"node": "e", "port": "in"}}]
        });
        let g = to_graph(&spec, &catalog(), &Default::default());
        assert_eq!(g.nodes.len(), 2);
        assert_eq!(g.edges.len(), 1, "a wire to a missing node is dropped");
        assert_eq!(g.nodes["e"].title, "End");
        assert_eq!(g.nodes["e"].inputs[0].name, "in");
        let back = to_spec(&spec, &g);
        assert_eq!(back["tasks"], spec["tasks"]);
        assert_eq!(back["nodes"][1]["observation"], "hi {{ task.id }}");
        assert_eq!(back["nodes"][1]["label"], "End");
        assert_eq!(back["nodes"][0]["position"], json!({"x": 10, "y": 20}));
        assert_eq!(to_graph(&back, &catalog(), &Default::default()), g);
    }

    #[test]
    fn annotations_round_trip_and_bad_ones_are_left_out() {
        let spec = json!({
            "nodes": [{"id": "r", "kind": "on_reset", "position": {"x": 0, "y": 0}}],
            "annotations": [
                {"id": "g", "kind": "group", "text": "Reset", "position": {"x": -30, "y": -60}, "size": {"width": 260, "height": 150}, "color": "green"},
                {"id": "n", "kind": "note", "position": {"x": 300, "y": 0}, "size": {"width": 220, "height": 120}},
                {"id": "n", "kind": "note", "position": {"x": 0, "y": 0}, "size": {"width": 1, "height": 1}},
                {"id": "s", "kind": "sticker", "position": {"x": 0, "y": 0}, "size": {"width": 1, "height": 1}}
            ]
        });
        let g = to_graph(&spec, &catalog(), &Default::default());
        assert_eq!(
            g.annotations.keys().collect::<Vec<_>>(),
            ["g", "n"],
            "a repeated id and an unknown kind are left out"
        );
        assert_eq!(g.annotations["g"].kind, AnnotationKind::Group);
        assert_eq!(g.annotations["g"].text, "Reset");
        assert_eq!(g.annotations["g"].tint.as_deref(), Some("green"));
        assert_eq!(g.annotations["n"].tint, None);
        assert_eq!((g.annotations["n"].width, g.annotations["n"].height), (220.0, 120.0));
        let back = to_spec(&spec, &g);
        assert_eq!(back["annotations"][0], spec["annotations"][0]);
        assert_eq!(back["annotations"][1], spec["annotations"][1], "an empty text is not written");
        assert_eq!(to_graph(&back, &catalog(), &Default::default()), g);
        let mut bare = g.clone();
        bare.annotations.clear();
        assert!(to_spec(&back, &bare).get("annotations").is_none(), "no annotations, no key");
    }

    #[test]
    fn ports_on_the_canvas_stand_in_until_an_analysis_has_them() {
        let spec = json!({"nodes": [{"id": "r", "kind": "on_reset"}, {"id": "e", "kind": "on_reset"}]});
        let mut current = to_graph(&spec, &catalog(), &Default::default());
        current.nodes.get_mut("r").unwrap().outputs.push(Port {
            name: "extra".into(),
            ty: "text".into(),
            required: false,
        });
        // `e` changes kind in the new JSON: its old ports do not carry over.
        let edited = json!({"nodes": [{"id": "r", "kind": "on_reset"}, {"id": "e", "kind": "return_reset"}]});
        let known = known_ports(&edited, &current, &Default::default());
        assert_eq!(known["r"].outputs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["out", "extra"]);
        assert!(!known.contains_key("e"));
        let g = to_graph(&edited, &catalog(), &known);
        assert_eq!(g.nodes["r"].outputs, current.nodes["r"].outputs);
        assert_eq!(g.nodes["e"].inputs[0].name, "in", "the new kind's ports");
        // An analysis wins over the canvas.
        let analysed: std::collections::BTreeMap<String, NodePorts> =
            [("r".to_string(), NodePorts::default())].into_iter().collect();
        assert!(known_ports(&edited, &current, &analysed)["r"].outputs.is_empty());
    }

    #[test]
    fn rules_follow_the_catalog() {
        let r = rules(&catalog());
        assert!(r.can_feed("flow", "flow"));
        assert!(!r.can_feed("text", "flow"));
    }
}
