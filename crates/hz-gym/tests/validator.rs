//! The validator reports every problem at once, naming node, field and reason, and never
//! panics on arbitrary input.

mod support;

use hz_gym::{validate, GymBundle, Severity};
use serde_json::{json, Value};

fn errors(spec: Value) -> Vec<String> {
    let bundle = GymBundle::from_value(spec, None).expect("parses");
    validate(&bundle).into_iter().filter(|d| d.severity == Severity::Error).map(|d| d.to_string()).collect()
}

#[test]
fn the_counter_gym_is_valid() {
    assert_eq!(errors(support::counter_gym()), Vec::<String>::new());
}

#[test]
fn many_problems_are_reported_together() {
    let mut g = support::counter_gym();
    let nodes = g["nodes"].as_array_mut().unwrap();
    // Unknown state variable in an expression, unknown task field in a template.
    nodes[5]["expr"] = json!("state.totl + 1");
    nodes[3]["observation"] = json!("Reach {{ task.goal }}.");
    // Bad CEL syntax.
    nodes[6]["condition"] = json!("state.total <=");
    // A text output into a bool input: wrong wire type.
    nodes.push(json!({"id": "doc", "kind": "documentation", "text": "hi"}));
    let edges = g["edges"].as_array_mut().unwrap();
    edges.push(json!({"from": {"node": "doc", "port": "text"}, "to": {"node": "out", "port": "terminated"}}));
    // A flow cycle.
    edges.push(json!({"from": {"node": "hit", "port": "out"}, "to": {"node": "route", "port": "in"}}));
    // Wire to a port that does not exist.
    edges.push(json!({"from": {"node": "inc", "port": "nope"}, "to": {"node": "out", "port": "in"}}));
    let errs = errors(g);
    let has =
        |node: &str, needle: &str| errs.iter().any(|e| e.contains(&format!("node `{node}`")) && e.contains(needle));
    assert!(has("inc", "state.totl"), "{errs:#?}");
    assert!(has("obs0", "task.goal"), "{errs:#?}");
    assert!(has("cap", "CEL syntax error"), "{errs:#?}");
    assert!(has("out", "cannot connect a text output to a bool input"), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("loops back")), "{errs:#?}");
    assert!(has("hit", "can feed only one node"), "{errs:#?}");
    assert!(has("inc", "no output port \"nope\""), "{errs:#?}");
    assert!(errs.len() >= 7, "{errs:#?}");
}

#[test]
fn structural_problems_are_named() {
    let mut g = support::counter_gym();
    // Remove the wire into `cap` so it dangles and `inc.out` goes nowhere.
    g["edges"].as_array_mut().unwrap().retain(|e| e["to"]["node"] != "cap");
    g["variables"][0]["initial"] = json!("zero");
    g["tasks"][1]["id"] = json!("t3");
    g["tasks"][0]["solution"][0] = json!({"name": "teleport", "arguments": {}});
    g["nodes"].as_array_mut().unwrap().push(json!({"id": "x", "kind": "extract", "path": "$["}));
    let errs = errors(g);
    let any = |needle: &str| errs.iter().any(|e| e.contains(needle));
    assert!(any("node `cap`, field `in`: nothing flows into this node"), "{errs:#?}");
    assert!(any("node `inc`, field `out`: flow output goes nowhere"), "{errs:#?}");
    assert!(any("`variables[0].initial`"), "{errs:#?}");
    assert!(any("duplicate task id"), "{errs:#?}");
    assert!(any("`tasks[0].solution[0]`") && any("unknown tool \"teleport\""), "{errs:#?}");
    assert!(any("node `x`, field `value`: required json input `value` is not wired"), "{errs:#?}");
    assert!(any("node `x`, field `path`: bad JSONPath"), "{errs:#?}");
}

#[test]
fn annotations_are_checked_but_change_no_behaviour() {
    let mut g = support::counter_gym();
    let note = |id: &str, w: f64| json!({"id": id, "kind": "note", "text": "why", "position": {"x": 0, "y": 0}, "size": {"width": w, "height": 80}});
    g["annotations"] = json!([note("n1", 200.0), {"id": "g1", "kind": "group", "position": {"x": -40, "y": -60}, "size": {"width": 500, "height": 300}, "color": "purple"}]);
    assert_eq!(errors(g.clone()), Vec::<String>::new());
    let plain = GymBundle::from_value(support::counter_gym(), None).expect("parses");
    let annotated = GymBundle::from_value(g.clone(), None).expect("parses");
    assert_ne!(plain.id().unwrap(), annotated.id().unwrap(), "annotations are part of what a version holds");
    g["annotations"] = json!([note("n1", 200.0), note("n1", -5.0)]);
    let errs = errors(g.clone());
    assert!(
        errs.iter().any(|e| e.contains("`annotations[1].id`") && e.contains("duplicate annotation id")),
        "{errs:#?}"
    );
    assert!(errs.iter().any(|e| e.contains("`annotations[1].size.width`") && e.contains("positive")), "{errs:#?}");
    g["annotations"] =
        json!([{"id": "n", "kind": "sticker", "position": {"x": 0, "y": 0}, "size": {"width": 1, "height": 1}}]);
    let err = GymBundle::from_value(g.clone(), None).expect_err("an unknown kind is refused").to_string();
    assert!(err.contains("sticker"), "{err}");
    g["annotations"] = json!([{"id": "n", "kind": "note", "position": {"x": 0, "y": 0}, "size": {"width": 1, "height": 1}, "color": "mauve"}]);
    let err = GymBundle::from_value(g, None).expect_err("an unknown colour is refused").to_string();
    assert!(err.contains("mauve"), "{err}");
}

#[test]
fn missing_entry_points_are_reported() {
    let mut g = support::counter_gym();
    g["nodes"].as_array_mut().unwrap().retain(|n| n["kind"] != "on_reset" && n["kind"] != "action_space");
    g["edges"].as_array_mut().unwrap().retain(|e| e["from"]["node"] != "reset");
    let errs = errors(g);
    assert!(errs.iter().any(|e| e.contains("needs a `on_reset` node")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("needs a `action_space` node")), "{errs:#?}");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-z_ {}.$*()'=<>!|&]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Paths into the counter gym to overwrite with arbitrary JSON.
    const PATHS: &[&str] = &[
        "/nodes/4/cases",
        "/nodes/5/expr",
        "/nodes/3/observation",
        "/edges/0/from",
        "/edges/2",
        "/tasks/0",
        "/variables/0/initial",
        "/nodes/2/tools/0/parameters",
        "/max_steps",
        "/nodes/6",
        "/limits",
        "/fixtures",
        "/nodes/1/kind",
        "/tasks/1/solution",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn validator_never_panics_on_arbitrary_json(v in arb_json()) {
            if let Ok(b) = GymBundle::from_value(v, None) {
                let _ = validate(&b);
            }
        }

        #[test]
        fn validator_never_panics_on_mutated_gyms(which in 0..PATHS.len(), v in arb_json()) {
            let mut g = support::counter_gym();
            if let Some(slot) = g.pointer_mut(PATHS[which]) {
                *slot = v;
            }
            if let Ok(b) = GymBundle::from_value(g, None) {
                let _ = validate(&b);
                if let Ok(gym) = hz_gym::Gym::new(b) {
                    let mut env = hz_gym::Env::new(gym, Default::default());
                    if env.reset(1, &Default::default()).is_ok() {
                        let _ = env.step(&json!({"name": "add", "arguments": {"n": 2}}));
                    }
                }
            }
        }
    }
}
