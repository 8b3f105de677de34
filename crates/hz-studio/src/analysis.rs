//! Analysis of a gym's text as it is being edited: every problem at once (JSON syntax with
//! line and column, unknown fields named by node, validation findings), the typed ports of
//! every node whose kind parses (also while the gym has errors), and the Python preview.

use hz_gym::bundle::migrate;
use hz_gym::ports::{ports, PortDef};
use hz_gym::spec::{GymSpec, Node, NodeKind, TaskInstance, VarType};
use hz_gym::{GymBundle, GymError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding, placed for the editor: which node (if any), which field, why, and where in
/// the text (1-based line and column, when it can be found).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticView {
    pub severity: Severity,
    pub node: Option<String>,
    /// Field or port concerned (`condition`, `edges[3]`, `tasks[0].solution[1]`); empty when
    /// the finding is about the text as a whole.
    pub field: String,
    pub message: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

impl fmt::Display for DiagnosticView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.node, self.field.is_empty()) {
            (Some(n), false) => write!(f, "node `{n}`, field `{}`: {}", self.field, self.message)?,
            (Some(n), true) => write!(f, "node `{n}`: {}", self.message)?,
            (None, false) => write!(f, "`{}`: {}", self.field, self.message)?,
            (None, true) => f.write_str(&self.message)?,
        }
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, " (line {l}, column {c})")?;
        }
        Ok(())
    }
}

/// Typed ports of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePorts {
    pub inputs: Vec<PortDef>,
    pub outputs: Vec<PortDef>,
}

/// What the editor shows about the current text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// No errors (warnings allowed): the gym can be played and committed as it is.
    pub ok: bool,
    /// Content id (hex) when the gym parses and its fixtures resolve.
    pub gym_id: Option<String>,
    pub name: Option<String>,
    /// Errors first, then warnings.
    pub diagnostics: Vec<DiagnosticView>,
    /// Node id → ports, for every node whose kind parses.
    pub ports: BTreeMap<String, NodePorts>,
    /// Read-only Python preview of the compiled package, when the gym parses.
    pub python: Option<String>,
}

impl DiagnosticView {
    pub(crate) fn error(node: Option<String>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { severity: Severity::Error, node, field: field.into(), message: message.into(), line: None, column: None }
    }
}

/// Analyze `text`; fixture files resolve against `base` (the gym file's folder).
pub fn analyze(text: &str, base: Option<&Path>) -> Analysis {
    let mut out =
        Analysis { ok: false, gym_id: None, name: None, diagnostics: Vec::new(), ports: BTreeMap::new(), python: None };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let mut d = DiagnosticView::error(None, "", format!("invalid JSON: {e}"));
            d.line = u32::try_from(e.line()).ok();
            d.column = u32::try_from(e.column().max(1)).ok();
            out.diagnostics.push(d);
            return out;
        }
    };
    out.name = value.get("name").and_then(Value::as_str).map(str::to_string);
    out.ports = node_ports(&value);
    let mut diags = match parse_spec(value) {
        Err(diags) => diags,
        Ok((_, migrated)) => match GymBundle::from_value(migrated, base) {
            Err(e) => vec![gym_error_diagnostic(&e)],
            Ok(bundle) => {
                out.gym_id = bundle.id().ok().map(|id| id.to_hex());
                out.python = Some(hz_gym_compile::python::python_preview(&bundle));
                hz_gym::validate(&bundle).into_iter().map(from_gym_diagnostic).collect()
            }
        },
    };
    diags.sort_by_key(|d| d.severity != Severity::Error);
    for d in &mut diags {
        if d.line.is_none() {
            if let Some((l, c)) = locate(text, d) {
                d.line = Some(l);
                d.column = Some(c);
            }
        }
    }
    out.ok = !diags.iter().any(|d| d.severity == Severity::Error);
    out.diagnostics = diags;
    out
}

/// Parse a gym value (migrating older spec versions): the spec and the migrated value, or
/// every node and task that fails to parse, each named.
pub(crate) fn parse_spec(value: Value) -> Result<(GymSpec, Value), Vec<DiagnosticView>> {
    let value = migrate(value).map_err(|e| vec![gym_error_diagnostic(&e)])?;
    match serde_json::from_value::<GymSpec>(value.clone()) {
        Ok(spec) => Ok((spec, value)),
        Err(whole) => {
            let mut diags = Vec::new();
            if let Some(nodes) = value.get("nodes").and_then(Value::as_array) {
                for (i, n) in nodes.iter().enumerate() {
                    if let Err(e) = serde_json::from_value::<Node>(n.clone()) {
                        let id = n.get("id").and_then(Value::as_str).map(str::to_string);
                        let field = serde_field(&e.to_string()).unwrap_or_else(|| {
                            if id.is_some() {
                                String::new()
                            } else {
                                format!("nodes[{i}]")
                            }
                        });
                        diags.push(DiagnosticView::error(id, field, e.to_string()));
                    }
                }
            }
            if let Some(tasks) = value.get("tasks").and_then(Value::as_array) {
                for (i, t) in tasks.iter().enumerate() {
                    if let Err(e) = serde_json::from_value::<TaskInstance>(t.clone()) {
                        diags.push(DiagnosticView::error(None, format!("tasks[{i}]"), e.to_string()));
                    }
                }
            }
            if diags.is_empty() {
                let field = serde_field(&whole.to_string()).unwrap_or_default();
                diags.push(DiagnosticView::error(None, field, whole.to_string()));
            }
            Err(diags)
        }
    }
}

/// The field a serde message names (``unknown field `x` ``, ``missing field `x` ``), or
/// `kind` for an unknown node kind.
fn serde_field(msg: &str) -> Option<String> {
    if msg.contains("unknown variant") || msg.contains("missing field `kind`") {
        return Some("kind".into());
    }
    let rest = msg.split_once("field `")?.1;
    Some(rest.split('`').next()?.to_string())
}

fn gym_error_diagnostic(e: &GymError) -> DiagnosticView {
    match e {
        GymError::Parse { path, reason } => DiagnosticView::error(None, path.clone(), reason.clone()),
        GymError::UnsupportedVersion { .. } => DiagnosticView::error(None, "spec_version", e.to_string()),
        GymError::Fixture { name, reason } => DiagnosticView::error(None, format!("fixtures.{name}"), reason.clone()),
        other => DiagnosticView::error(None, "", other.to_string()),
    }
}

pub(crate) fn from_gym_diagnostic(d: hz_gym::Diagnostic) -> DiagnosticView {
    DiagnosticView {
        severity: match d.severity {
            hz_gym::Severity::Error => Severity::Error,
            hz_gym::Severity::Warning => Severity::Warning,
        },
        node: d.node,
        field: d.field,
        message: d.reason,
        line: None,
        column: None,
    }
}

/// Ports of every node whose kind parses, read from the raw value so that they are known
/// while other parts of the gym are broken. `get_state` takes its variable's declared type.
fn node_ports(value: &Value) -> BTreeMap<String, NodePorts> {
    let var_types: BTreeMap<&str, VarType> = value
        .get("variables")
        .and_then(Value::as_array)
        .map(|vars| {
            vars.iter()
                .filter_map(|v| {
                    let name = v.get("name")?.as_str()?;
                    let ty = serde_json::from_value::<VarType>(v.get("type")?.clone()).ok()?;
                    Some((name, ty))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for n in value.get("nodes").and_then(Value::as_array).into_iter().flatten() {
        let Some(obj) = n.as_object() else { continue };
        let Some(id) = obj.get("id").and_then(Value::as_str) else { continue };
        let mut params = obj.clone();
        for editor_only in ["id", "label", "position"] {
            params.remove(editor_only);
        }
        let Ok(kind) = serde_json::from_value::<NodeKind>(Value::Object(params)) else { continue };
        let vt = match &kind {
            NodeKind::GetState { variable } => var_types.get(variable.as_str()).copied(),
            _ => None,
        };
        let (inputs, outputs) = ports(&kind, vt);
        out.insert(id.to_string(), NodePorts { inputs, outputs });
    }
    out
}

/// Where a finding is in the text: the node's `"id": "<id>"` (or the field inside that node
/// object), else the first top-level key the field names. 1-based line and column.
fn locate(text: &str, d: &DiagnosticView) -> Option<(u32, u32)> {
    let at = match &d.node {
        Some(id) => {
            let node_at = find_pair(text, "id", id)?;
            // The field inside the same node object, when it is there before the next node.
            let key = field_key(&d.field);
            let field_at = (!key.is_empty())
                .then(|| {
                    let obj_start = text[..node_at].rfind('{').unwrap_or(0);
                    let obj_end = object_end(text, obj_start).unwrap_or(text.len());
                    text[obj_start..obj_end].find(&format!("\"{key}\"")).map(|off| obj_start + off)
                })
                .flatten();
            field_at.unwrap_or(node_at)
        }
        None => {
            let key = field_key(&d.field);
            if key.is_empty() {
                return None;
            }
            text.find(&format!("\"{key}\""))?
        }
    };
    Some(line_col(text, at))
}

/// The leading key of a field path: `tasks[2].solution[0]` → `tasks`, `cases.ok` → `cases`.
fn field_key(field: &str) -> &str {
    let end = field.find(['[', '.', ' ']).unwrap_or(field.len());
    &field[..end]
}

/// Byte offset of `"key"` followed by `:` and the JSON string `value`.
fn find_pair(text: &str, key: &str, value: &str) -> Option<usize> {
    let needle_key = format!("\"{key}\"");
    let needle_value = serde_json::to_string(value).ok()?;
    let mut from = 0;
    while let Some(off) = text[from..].find(&needle_key) {
        let start = from + off;
        let rest = text[start + needle_key.len()..].trim_start();
        if let Some(after_colon) = rest.strip_prefix(':') {
            if after_colon.trim_start().starts_with(&needle_value) {
                return Some(start);
            }
        }
        from = start + needle_key.len();
    }
    None
}

/// Offset just past the object that opens at `start` (a `{`), skipping strings.
fn object_end(text: &str, start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for (i, c) in text[start..].char_indices() {
        if in_str {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(start + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(col).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_serde_messages() {
        assert_eq!(serde_field("unknown field `vlaue`, expected one of `value`").as_deref(), Some("vlaue"));
        assert_eq!(serde_field("missing field `condition`").as_deref(), Some("condition"));
        assert_eq!(serde_field("unknown variant `teleport`, expected one of").as_deref(), Some("kind"));
        assert_eq!(serde_field("invalid type: string, expected f64"), None);
    }

    #[test]
    fn locations_are_one_based() {
        let text =
            "{\n  \"nodes\": [\n    {\"id\": \"a\", \"kind\": \"reward\"},\n    {\"id\" : \"b\", \"x\": 1}\n  ]\n}";
        let d = |node: Option<&str>, field: &str| DiagnosticView::error(node.map(str::to_string), field, "m");
        assert_eq!(locate(text, &d(Some("b"), "")), Some((4, 6)));
        assert_eq!(locate(text, &d(Some("b"), "x")), Some((4, 18)));
        assert_eq!(locate(text, &d(Some("a"), "x")), Some((3, 6)), "a field outside the node falls back to the node");
        assert_eq!(locate(text, &d(None, "nodes")), Some((2, 3)));
        assert_eq!(locate(text, &d(None, "")), None);
    }
}
