//! Behaviour of the studio on real files: templates from `gym-templates/`, gyms written
//! under temporary data directories, history in real SQLite.

use hz_gym::{Env, Gym, ResetOptions, RuntimeConfig};
use hz_studio::{Severity, Studio, StudioError};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../gym-templates")
}

fn studio() -> (tempfile::TempDir, Studio) {
    let data = tempfile::tempdir().unwrap();
    let s = Studio::open(data.path(), Some(templates_dir())).unwrap();
    (data, s)
}

fn with_node(text: &str, node: Value) -> String {
    let mut v: Value = serde_json::from_str(text).unwrap();
    v["nodes"].as_array_mut().unwrap().push(node);
    serde_json::to_string_pretty(&v).unwrap()
}

#[test]
fn catalog_has_every_node_kind_with_defaults_that_parse() {
    let schema = hz_gym::json_schema();
    let kinds: BTreeSet<String> = schema
        .pointer("/$defs/Node/oneOf")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .map(|v| v.pointer("/properties/kind/const").and_then(Value::as_str).unwrap().to_string())
        .collect();
    assert_eq!(kinds.len(), 20, "every NodeKind variant: {kinds:?}");
    let catalog = Studio::catalog();
    let listed: BTreeSet<String> = catalog.kinds.iter().map(|k| k.kind.clone()).collect();
    assert_eq!(listed, kinds);

    let (_data, s) = studio();
    let blank = s.new_gym("palette").unwrap();
    let categories = ["trigger", "config", "context", "state", "execution", "routing", "evaluation", "terminus"];
    for k in &catalog.kinds {
        assert!(categories.contains(&k.category.as_str()), "{}: {}", k.kind, k.category);
        assert!(!k.title.is_empty() && !k.description.is_empty(), "{}", k.kind);
        let defaults = k.defaults.as_object().unwrap();
        for editor_only in ["id", "kind", "label", "position"] {
            assert!(!defaults.contains_key(editor_only), "{}: {editor_only}", k.kind);
        }
        // The defaults parse as a node of that kind, and every default is a known field.
        let mut node = k.defaults.clone();
        node["id"] = json!("fresh");
        node["kind"] = json!(k.kind);
        serde_json::from_value::<hz_gym::spec::Node>(node.clone()).unwrap_or_else(|e| panic!("{}: {e}", k.kind));
        for field in defaults.keys() {
            assert!(k.schema["properties"].get(field).is_some(), "{}: {field} not in the schema", k.kind);
        }
        assert_eq!(k.schema["type"], "object");
        assert!(k.schema["properties"].get("kind").is_none());
        // In a gym, a new node has no unknown-field or parse problems.
        let a = s.analyze(&with_node(&blank.text, node), Some(Path::new(&blank.path)));
        for d in a.diagnostics.iter().filter(|d| d.node.as_deref() == Some("fresh")) {
            assert!(!d.message.contains("unknown field"), "{}: {d}", k.kind);
        }
        assert!(a.ports.contains_key("fresh"), "{}: ports of a new node", k.kind);
        assert_eq!(a.ports["fresh"].inputs, k.inputs, "{}", k.kind);
    }
    // Kinds that need nothing from the gym validate as they come.
    for kind in
        ["reward", "constraint", "template", "extract", "persona", "documentation", "overseer", "observation_space"]
    {
        let k = catalog.kinds.iter().find(|k| k.kind == kind).unwrap();
        let mut node = k.defaults.clone();
        node["id"] = json!("fresh");
        node["kind"] = json!(kind);
        let a = s.analyze(&with_node(&blank.text, node), Some(Path::new(&blank.path)));
        // Only wiring is missing (the node is not connected yet).
        let errors: Vec<_> = a
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error && !["in", "out", "value"].contains(&d.field.as_str()))
            .collect();
        assert!(errors.is_empty(), "{kind}: {errors:?}");
    }
    // The action-space schema has its mode's values inlined, not a dangling reference.
    let action = catalog.kinds.iter().find(|k| k.kind == "action_space").unwrap();
    assert!(action.schema.to_string().contains("tool_call") && !action.schema.to_string().contains("$ref"));

    use hz_gym::ports::PortType::*;
    assert!(catalog.compat.contains(&(Flow, Flow)) && catalog.compat.contains(&(Number, Text)));
    assert!(!catalog.compat.contains(&(Text, Number)) && !catalog.compat.contains(&(Flow, Json)));
    assert_eq!(catalog.compat.len(), 12, "flow→flow, each data type to itself and to json, number and bool to text");
    assert!(catalog.spec_schema.pointer("/$defs/Node").is_some());
    // It is data for the webview: it goes through JSON and back.
    let back: hz_studio::Catalog = serde_json::from_str(&serde_json::to_string(&catalog).unwrap()).unwrap();
    assert_eq!(back, catalog);
}

#[test]
fn open_template_copies_the_gym_and_its_fixtures() {
    let (data, s) = studio();
    let templates = s.templates().unwrap();
    let names: Vec<&str> = templates.iter().map(|t| t.name.as_str()).collect();
    assert!(names.contains(&"sql-analyst") && names.contains(&"shell-ops"), "{names:?}");
    let sql = templates.iter().find(|t| t.name == "sql-analyst").unwrap();
    assert!(sql.node_count > 5 && sql.task_count > 0 && sql.title == "SQL analyst", "{sql:?}");

    let opened = s.open_template("sql-analyst").unwrap();
    let copy = data.path().join("gyms/sql-analyst");
    assert_eq!(Path::new(&opened.path), copy.join("sql-analyst.gym.json"));
    assert_eq!(
        std::fs::read(copy.join("fixtures/shop.sql")).unwrap(),
        std::fs::read(templates_dir().join("sql-analyst/fixtures/shop.sql")).unwrap()
    );
    assert_eq!(opened.text, std::fs::read_to_string(templates_dir().join("sql-analyst/sql-analyst.gym.json")).unwrap());
    assert!(opened.analysis.ok, "{:?}", opened.analysis.diagnostics);
    assert_eq!(opened.analysis.name.as_deref(), Some("sql-analyst"));
    let python = opened.analysis.python.as_deref().unwrap();
    assert!(python.contains("GYM_ID = \"440hz/sql-analyst-v1\"") && python.contains("SPEC = {"), "{python}");

    // A second copy gets its own folder and name (so its own history), and still works.
    let second = s.open_template("sql-analyst").unwrap();
    assert_eq!(Path::new(&second.path), data.path().join("gyms/sql-analyst-2/sql-analyst-2.gym.json"));
    assert!(data.path().join("gyms/sql-analyst-2/fixtures/shop.sql").is_file());
    assert!(!data.path().join("gyms/sql-analyst-2/sql-analyst.gym.json").exists());
    assert_eq!(second.analysis.name.as_deref(), Some("sql-analyst-2"));
    assert!(second.analysis.ok, "{:?}", second.analysis.diagnostics);
    assert_ne!(second.analysis.gym_id, opened.analysis.gym_id);
    // No staging folders are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(data.path().join("gyms"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let err = s.open_template("no-such").unwrap_err().to_string();
    assert!(err.contains("no template \"no-such\"") && err.contains("sql-analyst"), "{err}");
    let err = s.open_template("../sql-analyst").unwrap_err().to_string();
    assert!(err.contains("not a valid name"), "{err}");
}

#[test]
fn new_gym_is_valid_and_names_are_checked() {
    let (data, s) = studio();
    let g = s.new_gym("my-gym").unwrap();
    assert_eq!(Path::new(&g.path), data.path().join("gyms/my-gym/my-gym.gym.json"));
    assert!(g.analysis.ok && g.analysis.diagnostics.iter().all(|d| d.severity != Severity::Error), "{:?}", g.analysis);
    assert!(g.analysis.gym_id.is_some() && g.analysis.python.is_some());
    let v: Value = serde_json::from_str(&g.text).unwrap();
    assert_eq!(v["name"], "my-gym");
    // It plays.
    let r = s.play_reset(&g.text, Some(Path::new(&g.path)), 3, None).unwrap();
    assert_eq!(r.observation, "What should the agent do?");
    let step = s.play_step("hello").unwrap();
    assert_eq!((step.observation.as_str(), step.step), ("You said: hello", 1));

    for bad in ["My Gym", "a_b", "-x", ""] {
        let err = s.new_gym(bad).unwrap_err().to_string();
        assert!(err.contains("not a valid name"), "{bad}: {err}");
    }
    let err = s.new_gym("my-gym").unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn analyze_places_json_syntax_errors() {
    let (_data, s) = studio();
    let text = "{\n  \"spec_version\": 1,\n  \"name\": \"x\" \"oops\"\n}";
    let a = s.analyze(text, None);
    assert!(!a.ok && a.gym_id.is_none() && a.python.is_none());
    let d = &a.diagnostics[0];
    assert_eq!(d.severity, Severity::Error);
    assert_eq!((d.line, d.column.is_some()), (Some(3), true), "{d:?}");
    assert!(d.message.contains("invalid JSON"), "{d:?}");
}

#[test]
fn analyze_names_the_node_of_each_problem() {
    let (_data, s) = studio();
    let g = s.new_gym("g").unwrap();
    let path = Path::new(&g.path);

    // A validation problem: an expression over an undeclared variable.
    let text = with_node(&g.text, json!({"id": "bonus", "kind": "reward", "expr": "state.nope * 2"}));
    let a = s.analyze(&text, Some(path));
    assert!(!a.ok && a.python.is_some(), "parses, does not validate");
    let d = a.diagnostics.iter().find(|d| d.node.as_deref() == Some("bonus") && d.field == "expr").unwrap();
    assert!(d.message.contains("state.nope"), "{d}");
    let line = d.line.unwrap() as usize;
    assert!(text.lines().nth(line - 1).unwrap().contains("\"expr\""), "line {line} of\n{text}");
    assert!(a.diagnostics.iter().any(|d| d.node.as_deref() == Some("bonus") && d.field == "in"), "unwired flow input");

    // A parse problem (unknown field) names the node and the field; other ports still come.
    let text = with_node(&g.text, json!({"id": "typo", "kind": "reward", "vlaue": 1}));
    let a = s.analyze(&text, Some(path));
    let d = a.diagnostics.iter().find(|d| d.node.as_deref() == Some("typo")).unwrap();
    assert_eq!(d.field, "vlaue");
    assert!(d.message.contains("unknown field") && d.line.is_some(), "{d}");
    assert!(a.python.is_none() && a.ports.contains_key("on_step") && !a.ports.contains_key("typo"));
}

#[test]
fn analyze_gives_ports_of_a_switch_and_typed_state() {
    let (_data, s) = studio();
    let g = s.new_gym("g").unwrap();
    let mut v: Value = serde_json::from_str(&g.text).unwrap();
    v["variables"] = json!([{"name": "count", "type": "int", "initial": 0}]);
    v["nodes"].as_array_mut().unwrap().extend([
        json!({"id": "route", "kind": "switch", "cases": [{"name": "ask", "when": "true"}, {"name": "answer", "when": "false"}]}),
        json!({"id": "count", "kind": "get_state", "variable": "count"}),
        json!({"id": "broken", "kind": "constraint"}),
    ]);
    let a = s.analyze(&serde_json::to_string(&v).unwrap(), Some(Path::new(&g.path)));
    assert!(!a.ok, "the switch is unwired and `broken` lacks fields");
    let sw = &a.ports["route"];
    let outs: Vec<&str> = sw.outputs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(outs, ["ask", "answer", "default"]);
    assert!(sw.outputs.iter().all(|p| p.ty == hz_gym::ports::PortType::Flow));
    let ins: Vec<&str> = sw.inputs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(ins, ["in", "value"]);
    assert_eq!(a.ports["count"].outputs[0].ty, hz_gym::ports::PortType::Number);
    assert!(!a.ports.contains_key("broken"));
}

#[test]
fn save_refuses_what_is_not_a_gym_and_leaves_the_file_untouched() {
    let (_data, s) = studio();
    let g = s.new_gym("g").unwrap();
    let path = PathBuf::from(&g.path);
    let dir = path.parent().unwrap().to_path_buf();

    // Saved text: pretty, 2-space, keys in the order given.
    let mut v: Value = serde_json::from_str(&g.text).unwrap();
    let name = v.as_object_mut().unwrap().shift_remove("name").unwrap();
    let mut reordered = serde_json::Map::new();
    reordered.insert("name".into(), name);
    reordered.extend(v.as_object().unwrap().clone());
    let saved = s.save_gym(&path, &serde_json::to_string(&Value::Object(reordered)).unwrap()).unwrap();
    assert_eq!(saved.name, "g");
    assert!(saved.gym_id.is_some());
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert!(on_disk.starts_with("{\n  \"name\": \"g\",\n  \"spec_version\": 1,"), "{on_disk}");
    assert!(on_disk.ends_with("}\n"));

    for (bad, want) in [
        ("{\"spec_version\": 1, \"name\": ", "invalid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (&with_node(&g.text, json!({"id": "typo", "kind": "reward", "vlaue": 1})) as &str, "node `typo`"),
    ] {
        let err = s.save_gym(&path, bad).unwrap_err();
        assert!(matches!(err, StudioError::NotAGym { .. }), "{err}");
        assert!(err.to_string().contains(want) && err.to_string().contains("not a valid gym"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), on_disk, "file untouched");
    }
    // Work in progress (a validation error) is saved.
    let wip = with_node(&on_disk, json!({"id": "todo", "kind": "reward", "value": 1.0}));
    s.save_gym(&path, &wip).unwrap();
    assert!(std::fs::read_to_string(&path).unwrap().contains("\"todo\""));
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["g.gym.json"], "no temporary files are left");
}

#[test]
fn play_gives_the_same_rewards_as_the_runtime() {
    let (_data, s) = studio();
    assert!(matches!(s.play_step("x"), Err(StudioError::NoEpisode)));
    let g = s.open_template("sql-analyst").unwrap();
    let path = PathBuf::from(&g.path);
    let gym = Gym::load(&path).unwrap();
    for (ti, task) in gym.spec().tasks.iter().enumerate().take(2) {
        let seed = 7 + ti as u64;
        let view = s.play_reset(&g.text, Some(&path), seed, Some(&task.id)).unwrap();
        let mut env = Env::new(gym.clone(), RuntimeConfig::default());
        let (obs, info) = env.reset(seed, &ResetOptions { task_id: Some(task.id.clone()), task_index: None }).unwrap();
        assert_eq!((view.observation.as_str(), view.task_id.as_str(), view.step), (obs.as_str(), task.id.as_str(), 0));
        assert_eq!(view.info, info);
        assert!(task.solution.len() >= 2, "{}", task.id);
        for action in &task.solution {
            // The studio gets the action as the text an agent sends.
            let played = s.play_step(&action.to_string()).unwrap();
            let direct = env.step(action).unwrap();
            assert_eq!(played.observation, direct.observation);
            assert_eq!(played.reward, direct.reward);
            assert_eq!((played.terminated, played.truncated), (direct.terminated, direct.truncated));
            let direct_items: Vec<hz_gym::RewardItem> = serde_json::from_value(direct.info["rewards"].clone()).unwrap();
            assert_eq!(played.rewards.len(), direct_items.len());
            for (p, d) in played.rewards.iter().zip(&direct_items) {
                assert_eq!((&p.source, &p.kind, p.value, p.skipped), (&d.source, &d.kind, d.value, d.skipped));
            }
            assert!(played.rewards.iter().any(|r| r.kind == "reward"), "{:?}", played.rewards);
        }
        assert!(env.done());
        let over = s.play_step("{}").unwrap_err().to_string();
        assert!(over.contains("episode is over"), "{over}");
    }
    // A malformed action is answered as the agent sees it, with the penalty.
    s.play_reset(&g.text, Some(&path), 0, None).unwrap();
    let bad = s.play_step("not json").unwrap();
    assert_eq!(bad.reward, gym.spec().invalid_action_penalty);
    assert!(bad.invalid_action.is_some() && bad.observation.starts_with("Invalid action"), "{bad:?}");
    // A gym that does not validate cannot be played; the error names the problem.
    let broken = with_node(&g.text, json!({"id": "loose", "kind": "reward", "value": 1.0}));
    let err = s.play_reset(&broken, Some(&path), 0, None).unwrap_err();
    assert!(matches!(err, StudioError::Invalid { .. }) && err.to_string().contains("loose"), "{err}");
}

#[test]
fn commit_log_diff_checkout() {
    let (_data, s) = studio();
    let g = s.new_gym("versioned").unwrap();
    let path = PathBuf::from(&g.path);
    let v1_text = g.text.clone();

    let c1 = s.commit(&path, &v1_text, "first").unwrap();
    assert!(c1.committed && c1.version.seq == 1 && c1.version.rev == "v1", "{c1:?}");
    assert!(c1.summary.contains("committed versioned v1"), "{}", c1.summary);
    let again = s.commit(&path, &v1_text, "again").unwrap();
    assert!(!again.committed && again.version.seq == 1, "{again:?}");
    assert!(again.summary.contains("nothing to commit"), "{}", again.summary);
    assert!(s.commit(&path, &v1_text, "  ").unwrap_err().to_string().contains("needs a message"));

    let mut v: Value = serde_json::from_str(&v1_text).unwrap();
    v["nodes"][3]["observation"] = json!("Echo: {{ action.text }}");
    assert_eq!(v["nodes"][3]["id"], "return_step");
    let v2_text = serde_json::to_string_pretty(&v).unwrap();
    let c2 = s.commit(&path, &v2_text, "echo").unwrap();
    assert!(c2.committed && c2.version.seq == 2, "{c2:?}");

    let log = s.log(&path).unwrap();
    let seqs: Vec<i64> = log.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, [2, 1], "newest first");
    assert!(log[0].head && log[0].current && !log[1].head && !log[1].current);
    assert_eq!((log[0].message.as_str(), log[0].short_id.len()), ("echo", 12));
    assert!(log[0].time.ends_with('Z'), "{}", log[0].time);

    let d = s.diff(&path, "v1", Some("v2"), None).unwrap();
    assert!(!d.empty && d.changes.nodes_changed.contains_key("return_step"), "{d:?}");
    assert_eq!(d.changes.nodes_changed["return_step"][0].field, "observation");
    assert!(d.lines.iter().any(|l| l == "~ node return_step"), "{:?}", d.lines);
    assert_eq!((d.from.seq, d.to.as_ref().map(|t| t.seq)), (1, Some(2)));

    // Unsaved edits: diff against the working text names the node; checkout refuses them.
    let mut w: Value = serde_json::from_str(&v2_text).unwrap();
    w["nodes"][1]["observation"] = json!("Changed: {{ task.question }}");
    let dirty = serde_json::to_string_pretty(&w).unwrap();
    let d = s.diff(&path, "v2", None, Some(&dirty)).unwrap();
    assert!(d.to.is_none() && d.changes.nodes_changed.contains_key("return_reset"), "{d:?}");
    assert!(s.diff(&path, "HEAD", None, Some(&v2_text)).unwrap().changes.nodes_changed.is_empty());

    let err = s.checkout(&path, "v1", &dirty, false).unwrap_err();
    assert!(matches!(err, StudioError::Dirty { .. }) && err.to_string().contains("uncommitted changes"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), serde_json::to_string_pretty(&v).unwrap() + "\n");
    // Unparseable text is also work that would be lost.
    assert!(matches!(s.checkout(&path, "v1", "{ not json", false), Err(StudioError::Dirty { .. })));

    let restored = s.checkout(&path, "v1", &dirty, true).unwrap();
    assert_eq!(restored.text, v1_text);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), v1_text);
    assert!(restored.analysis.ok);
    assert!(s.log(&path).unwrap().iter().find(|l| l.seq == 1).unwrap().current);
    // Clean text (equal to a version) checks out without force.
    let back = s.checkout(&path, "v2", &restored.text, false).unwrap();
    assert_eq!(back.text, serde_json::to_string_pretty(&v).unwrap() + "\n");
    let err = s.checkout(&path, "v9", &back.text, false).unwrap_err().to_string();
    assert!(err.contains("no version \"v9\""), "{err}");
}
