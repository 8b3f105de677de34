//! Loading a gym: parse, migrate old spec versions, resolve fixtures, compute the gym id.

use crate::spec::{FixtureKind, GymSpec, SPEC_VERSION};
use crate::GymError;
use hz_core::ContentId;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Component, Path};

/// A spec with every fixture's content resolved: everything needed to run the gym.
#[derive(Debug, Clone, PartialEq)]
pub struct GymBundle {
    pub spec: GymSpec,
    /// Fixture name → content (text for `sql`/`text`, JSON for `json`/`files`).
    pub fixtures: BTreeMap<String, Value>,
}

impl GymBundle {
    /// The gym id: SHA-256 of the canonical JSON of `{spec, fixtures}`, where fixtures are
    /// given by content, so where a fixture lives does not change the id.
    pub fn id(&self) -> Result<ContentId, GymError> {
        let mut spec = serde_json::to_value(&self.spec)
            .map_err(|e| GymError::Parse { path: "spec".into(), reason: e.to_string() })?;
        // Fixture locations are not content: drop `path`/`inline`, keep the kind.
        if let Some(fx) = spec.get_mut("fixtures").and_then(Value::as_object_mut) {
            for v in fx.values_mut() {
                if let Some(o) = v.as_object_mut() {
                    o.remove("path");
                    o.remove("inline");
                }
            }
        }
        // Canvas positions and labels do not change behaviour, but they are part of what a
        // person made and versions; they stay in the id so moving a node is a new version.
        let doc = serde_json::json!({ "spec": spec, "fixtures": self.fixtures });
        ContentId::of_json(&doc).map_err(|e| GymError::Parse { path: "spec".into(), reason: e.to_string() })
    }

    /// Load `*.gym.json` from disk; fixture paths resolve against its folder.
    pub fn load(path: &Path) -> Result<Self, GymError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| GymError::Io { path: path.display().to_string(), reason: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_json_str(&text, Some(base))
    }

    /// Parse a spec from JSON text. With `base`, fixture `path`s are read from that folder;
    /// without it, only inline fixtures are allowed.
    pub fn from_json_str(text: &str, base: Option<&Path>) -> Result<Self, GymError> {
        let value: Value = serde_json::from_str(text).map_err(|e| GymError::Parse {
            path: format!("line {}, column {}", e.line(), e.column()),
            reason: e.to_string(),
        })?;
        Self::from_value(value, base)
    }

    pub fn from_value(value: Value, base: Option<&Path>) -> Result<Self, GymError> {
        let value = migrate(value)?;
        let spec: GymSpec = serde_path_to_error(value)?;
        let mut fixtures = BTreeMap::new();
        for (name, fx) in &spec.fixtures {
            let at = format!("fixtures.{name}");
            let content = match (&fx.inline, &fx.path) {
                (Some(v), None) => v.clone(),
                (None, Some(rel)) => {
                    let Some(base) = base else {
                        return Err(GymError::Fixture {
                            name: name.clone(),
                            reason: "file fixtures need the gym's folder; inline the content".into(),
                        });
                    };
                    let rel_path = Path::new(rel);
                    if rel_path.is_absolute()
                        || rel_path.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
                    {
                        return Err(GymError::Fixture {
                            name: name.clone(),
                            reason: format!("path {rel:?} must be relative and stay inside the gym's folder"),
                        });
                    }
                    let full = base.join(rel_path);
                    let text = std::fs::read_to_string(&full).map_err(|e| GymError::Fixture {
                        name: name.clone(),
                        reason: format!("cannot read {}: {e}", full.display()),
                    })?;
                    match fx.kind {
                        FixtureKind::Sql | FixtureKind::Text => Value::String(text),
                        FixtureKind::Json | FixtureKind::Files => {
                            serde_json::from_str(&text).map_err(|e| GymError::Fixture {
                                name: name.clone(),
                                reason: format!("{} is not valid JSON: {e}", full.display()),
                            })?
                        }
                    }
                }
                (Some(_), Some(_)) => {
                    return Err(GymError::Fixture {
                        name: name.clone(),
                        reason: "give either `path` or `inline`, not both".into(),
                    })
                }
                (None, None) => {
                    return Err(GymError::Fixture { name: name.clone(), reason: "needs `path` or `inline`".into() })
                }
            };
            let ok = match fx.kind {
                FixtureKind::Sql | FixtureKind::Text => content.is_string(),
                FixtureKind::Json => true,
                FixtureKind::Files => content.as_object().is_some_and(|o| o.values().all(Value::is_string)),
            };
            if !ok {
                return Err(GymError::Fixture {
                    name: name.clone(),
                    reason: format!(
                        "{at}: content does not match kind {:?} (sql/text: a string; files: an object of path → text)",
                        fx.kind
                    ),
                });
            }
            fixtures.insert(name.clone(), content);
        }
        Ok(Self { spec, fixtures })
    }
}

/// Deserialize with the JSON path of the first error in the message.
fn serde_path_to_error(value: Value) -> Result<GymSpec, GymError> {
    // serde's message names the field; add where it is by walking nodes when possible.
    match serde_json::from_value::<GymSpec>(value.clone()) {
        Ok(spec) => Ok(spec),
        Err(e) => {
            // Find which node fails, so the message names its id.
            if let Some(nodes) = value.get("nodes").and_then(Value::as_array) {
                for (i, n) in nodes.iter().enumerate() {
                    if let Err(ne) = serde_json::from_value::<crate::spec::Node>(n.clone()) {
                        let id =
                            n.get("id").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("#{i}"));
                        return Err(GymError::Parse { path: format!("nodes[{i}] (id {id})"), reason: ne.to_string() });
                    }
                }
            }
            if let Some(tasks) = value.get("tasks").and_then(Value::as_array) {
                for (i, t) in tasks.iter().enumerate() {
                    if let Err(te) = serde_json::from_value::<crate::spec::TaskInstance>(t.clone()) {
                        return Err(GymError::Parse { path: format!("tasks[{i}]"), reason: te.to_string() });
                    }
                }
            }
            Err(GymError::Parse { path: "spec".into(), reason: e.to_string() })
        }
    }
}

/// Bring an older spec up to [`SPEC_VERSION`], or refuse clearly.
pub fn migrate(mut value: Value) -> Result<Value, GymError> {
    let Some(obj) = value.as_object_mut() else {
        return Err(GymError::Parse { path: "spec".into(), reason: "a gym spec must be a JSON object".into() });
    };
    let version = match obj.get("spec_version") {
        None => {
            return Err(GymError::Parse {
                path: "spec_version".into(),
                reason: "missing: every gym file states its spec_version".into(),
            })
        }
        Some(v) => v.as_u64().ok_or_else(|| GymError::Parse {
            path: "spec_version".into(),
            reason: format!("must be a positive integer, got {v}"),
        })?,
    };
    match version {
        0 => {
            // Version 0 (pre-release drafts) named the task list `task_set` and had no
            // `version`; rename and default.
            if let Some(ts) = obj.remove("task_set") {
                obj.insert("tasks".into(), ts);
            }
            obj.entry("version").or_insert(Value::from(1));
            obj.insert("spec_version".into(), Value::from(SPEC_VERSION));
            Ok(value)
        }
        v if v == u64::from(SPEC_VERSION) => Ok(value),
        v => Err(GymError::UnsupportedVersion { found: v, supported: SPEC_VERSION }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Value {
        serde_json::json!({
            "spec_version": 1, "name": "t", "max_steps": 2,
            "tasks": [{"id": "a", "q": 1}],
            "fixtures": {"doc": {"kind": "text", "inline": "hello"}},
            "nodes": [], "edges": []
        })
    }

    #[test]
    fn id_ignores_formatting_and_fixture_location() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("doc.txt"), "hello").unwrap();
        let inline = GymBundle::from_value(minimal(), None).unwrap();
        let mut v = minimal();
        v["fixtures"]["doc"] = serde_json::json!({"kind": "text", "path": "doc.txt"});
        let from_file = GymBundle::from_value(v, Some(dir.path())).unwrap();
        assert_eq!(inline.id().unwrap(), from_file.id().unwrap());
        let pretty = serde_json::to_string_pretty(&minimal()).unwrap();
        assert_eq!(GymBundle::from_json_str(&pretty, None).unwrap().id().unwrap(), inline.id().unwrap());
        let mut changed = minimal();
        changed["max_steps"] = 3.into();
        assert_ne!(GymBundle::from_value(changed, None).unwrap().id().unwrap(), inline.id().unwrap());
    }

    #[test]
    fn fixture_paths_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x.sql", "/etc/passwd", "a/../../b"] {
            let mut v = minimal();
            v["fixtures"]["doc"] = serde_json::json!({"kind": "text", "path": bad});
            let err = GymBundle::from_value(v, Some(dir.path())).unwrap_err().to_string();
            assert!(err.contains("inside the gym's folder"), "{bad}: {err}");
        }
    }

    #[test]
    fn versions_are_migrated_or_refused() {
        let mut v0 = minimal();
        v0["spec_version"] = 0.into();
        let tasks = v0.as_object_mut().unwrap().remove("tasks").unwrap();
        v0["task_set"] = tasks;
        assert_eq!(GymBundle::from_value(v0, None).unwrap().spec.tasks.len(), 1);
        let mut v9 = minimal();
        v9["spec_version"] = 9.into();
        let err = GymBundle::from_value(v9, None).unwrap_err().to_string();
        assert!(err.contains("spec_version 9") && err.contains("supports 1"), "{err}");
        let mut none = minimal();
        none.as_object_mut().unwrap().remove("spec_version");
        assert!(GymBundle::from_value(none, None).unwrap_err().to_string().contains("spec_version"));
    }

    #[test]
    fn bad_nodes_are_named() {
        let mut v = minimal();
        v["nodes"] =
            serde_json::json!([{"id": "ok", "kind": "on_reset"}, {"id": "bad1", "kind": "reward", "vlaue": 1}]);
        let err = GymBundle::from_value(v, None).unwrap_err().to_string();
        assert!(err.contains("bad1") && err.contains("vlaue"), "{err}");
        let mut v = minimal();
        v["nodes"] = serde_json::json!([{"id": "k", "kind": "teleport"}]);
        let err = GymBundle::from_value(v, None).unwrap_err().to_string();
        assert!(err.contains("teleport") && err.contains("(id k)"), "{err}");
    }
}
