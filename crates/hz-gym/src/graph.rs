//! Validation and compilation of a gym graph. One pass does both: it collects every problem
//! (not only the first) and, when there are none, yields a [`CompiledGym`] ready to run.

use crate::action::ActionParser;
use crate::bundle::GymBundle;
use crate::expr::{Expr, Templates, EXTRA_FUNCTIONS, ROOT_NAMES};
use crate::ports::{ports, role, PortDef, PortType, Role};
use crate::spec::{FixtureKind, GymSpec, Node, NodeKind, VarType};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding: where (node id or top-level path), which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Node id, or `None` for gym-level findings.
    pub node: Option<String>,
    /// Field (or port) concerned, e.g. `condition`, `edges[3]`, `tasks[2].solution[0]`.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match &self.node {
            Some(n) => write!(f, "{sev}: node `{n}`, field `{}`: {}", self.field, self.reason),
            None => write!(f, "{sev}: `{}`: {}", self.field, self.reason),
        }
    }
}

/// A node ready to run: its spec plus wiring and compiled expressions.
#[derive(Debug)]
pub struct NodeRt {
    pub id: String,
    pub kind: NodeKind,
    pub role: Role,
    /// Data input port → source output.
    pub data_in: BTreeMap<String, (usize, String)>,
    /// Flow output port → target node index.
    pub flow_out: BTreeMap<String, usize>,
    /// Compiled CEL expressions by field name (`condition`, `cases.ok`, ...).
    pub exprs: BTreeMap<String, Expr>,
    /// Compiled regexes of mock-CLI scripts.
    pub scripts: Vec<regex::Regex>,
    /// Compiled JSONPath of an extract node.
    pub path: Option<serde_json_path::JsonPath>,
    /// Root names its expressions and templates read: only these are bound when it runs.
    pub roots: BTreeSet<String>,
}

impl NodeRt {
    /// Template key of a field of this node.
    pub fn tkey(&self, field: &str) -> String {
        format!("{}/{}", self.id, field)
    }
}

/// A validated gym, compiled for execution.
#[derive(Debug)]
pub struct CompiledGym {
    pub bundle: GymBundle,
    pub nodes: Vec<NodeRt>,
    pub templates: Templates,
    pub actions: ActionParser,
    pub on_reset: usize,
    pub on_step: usize,
    pub warnings: Vec<Diagnostic>,
}

impl CompiledGym {
    pub fn spec(&self) -> &GymSpec {
        &self.bundle.spec
    }
}

struct V<'a> {
    spec: &'a GymSpec,
    diags: Vec<Diagnostic>,
}

impl V<'_> {
    fn err(&mut self, node: Option<&str>, field: impl Into<String>, reason: impl Into<String>) {
        self.diags.push(Diagnostic {
            severity: Severity::Error,
            node: node.map(str::to_string),
            field: field.into(),
            reason: reason.into(),
        });
    }
    fn warn(&mut self, node: Option<&str>, field: impl Into<String>, reason: impl Into<String>) {
        self.diags.push(Diagnostic {
            severity: Severity::Warning,
            node: node.map(str::to_string),
            field: field.into(),
            reason: reason.into(),
        });
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Validate a bundle; on success return the compiled gym (with warnings), else every finding.
pub fn compile(bundle: GymBundle) -> Result<CompiledGym, Vec<Diagnostic>> {
    let spec = &bundle.spec;
    let mut v = V { spec, diags: Vec::new() };

    // ---------------------------------------------------------------- gym level
    if spec.name.is_empty()
        || !spec.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || spec.name.starts_with('-')
    {
        v.err(None, "name", format!("{:?} must be lowercase letters, digits and dashes", spec.name));
    }
    if spec.version == 0 {
        v.err(None, "version", "must be 1 or more");
    }
    if spec.max_steps == 0 {
        v.err(None, "max_steps", "must be 1 or more");
    }
    if !spec.invalid_action_penalty.is_finite() {
        v.err(None, "invalid_action_penalty", "must be a finite number");
    }
    if spec.limits.max_node_evals == 0 {
        v.err(None, "limits.max_node_evals", "must be 1 or more");
    }
    if spec.tasks.is_empty() {
        v.err(None, "tasks", "a gym needs at least one task instance");
    }
    let mut task_ids = BTreeSet::new();
    for (i, t) in spec.tasks.iter().enumerate() {
        if t.id.is_empty() {
            v.err(None, format!("tasks[{i}].id"), "must not be empty");
        }
        if !task_ids.insert(t.id.as_str()) {
            v.err(None, format!("tasks[{i}].id"), format!("duplicate task id {:?}", t.id));
        }
    }
    let task_fields: BTreeSet<&str> =
        spec.tasks.iter().flat_map(|t| t.fields.keys().map(String::as_str)).chain(["id"]).collect();
    let mut var_types: HashMap<&str, VarType> = HashMap::new();
    for (i, var) in spec.variables.iter().enumerate() {
        let field = format!("variables[{i}]");
        if !is_ident(&var.name) {
            v.err(None, format!("{field}.name"), format!("{:?} is not an identifier", var.name));
        }
        if var_types.insert(&var.name, var.ty).is_some() {
            v.err(None, format!("{field}.name"), format!("duplicate variable {:?}", var.name));
        }
        if !var.ty.accepts(&var.initial) {
            v.err(None, format!("{field}.initial"), format!("{} does not match type {:?}", var.initial, var.ty));
        }
    }

    // The editor's groups and notes: no behaviour, but a file the editor could not show
    // (two with one id, a size it cannot draw) is named here rather than half-drawn.
    let mut annotation_ids = BTreeSet::new();
    for (i, a) in spec.annotations.iter().enumerate() {
        if a.id.is_empty() {
            v.err(None, format!("annotations[{i}].id"), "must not be empty");
        } else if !annotation_ids.insert(a.id.as_str()) {
            v.err(None, format!("annotations[{i}].id"), format!("duplicate annotation id {:?}", a.id));
        }
        for (name, x) in [("width", a.size.width), ("height", a.size.height)] {
            if !(x.is_finite() && x > 0.0) {
                v.err(None, format!("annotations[{i}].size.{name}"), format!("must be a positive number, not {x}"));
            }
        }
    }

    // ---------------------------------------------------------------- nodes
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, n) in spec.nodes.iter().enumerate() {
        if n.id.is_empty() {
            v.err(None, format!("nodes[{i}].id"), "must not be empty");
        } else if index.insert(n.id.as_str(), i).is_some() {
            v.err(Some(&n.id), "id", "duplicate node id");
        }
    }
    let count = |pred: fn(&NodeKind) -> bool| spec.nodes.iter().filter(|n| pred(&n.kind)).count();
    for (name, pred, exact) in [
        ("on_reset", (|k: &NodeKind| matches!(k, NodeKind::OnReset {})) as fn(&NodeKind) -> bool, true),
        ("on_step", |k: &NodeKind| matches!(k, NodeKind::OnStep {}), true),
        ("action_space", |k: &NodeKind| matches!(k, NodeKind::ActionSpace { .. }), true),
        ("return_reset", |k: &NodeKind| matches!(k, NodeKind::ReturnReset { .. }), false),
        ("return_step", |k: &NodeKind| matches!(k, NodeKind::ReturnStep { .. }), false),
    ] {
        let c = count(pred);
        if c == 0 {
            v.err(None, "nodes", format!("the gym needs a `{name}` node"));
        } else if exact && c > 1 {
            v.err(None, "nodes", format!("the gym has {c} `{name}` nodes; it needs exactly one"));
        }
    }
    if count(|k| matches!(k, NodeKind::ObservationSpace { .. })) > 1 {
        v.err(None, "nodes", "at most one `observation_space` node");
    }

    let port_table: Vec<(Vec<PortDef>, Vec<PortDef>)> = spec
        .nodes
        .iter()
        .map(|n| {
            let vt = match &n.kind {
                NodeKind::GetState { variable } => var_types.get(variable.as_str()).copied(),
                _ => None,
            };
            ports(&n.kind, vt)
        })
        .collect();

    // ---------------------------------------------------------------- edges
    let mut data_in: Vec<BTreeMap<String, (usize, String)>> = vec![BTreeMap::new(); spec.nodes.len()];
    let mut flow_out: Vec<BTreeMap<String, usize>> = vec![BTreeMap::new(); spec.nodes.len()];
    for (ei, e) in spec.edges.iter().enumerate() {
        let field = format!("edges[{ei}]");
        let (Some(&fi), Some(&ti)) = (index.get(e.from.node.as_str()), index.get(e.to.node.as_str())) else {
            for end in [&e.from, &e.to] {
                if !index.contains_key(end.node.as_str()) {
                    v.err(None, field.clone(), format!("wire {} → {} names unknown node {:?}", e.from, e.to, end.node));
                }
            }
            continue;
        };
        let from_port = port_table[fi].1.iter().find(|p| p.name == e.from.port);
        let to_port = port_table[ti].0.iter().find(|p| p.name == e.to.port);
        let Some(fp) = from_port else {
            let names: Vec<_> = port_table[fi].1.iter().map(|p| p.name.as_str()).collect();
            v.err(
                Some(&e.from.node),
                field,
                format!("has no output port {:?} (outputs: {})", e.from.port, list(&names)),
            );
            continue;
        };
        let Some(tp) = to_port else {
            let names: Vec<_> = port_table[ti].0.iter().map(|p| p.name.as_str()).collect();
            v.err(Some(&e.to.node), field, format!("has no input port {:?} (inputs: {})", e.to.port, list(&names)));
            continue;
        };
        if !fp.ty.can_feed(tp.ty) {
            v.err(
                Some(&e.to.node),
                format!("{field} ({} → {})", e.from, e.to),
                format!("cannot connect a {} output to a {} input", fp.ty, tp.ty),
            );
            continue;
        }
        if fp.ty == PortType::Flow {
            if flow_out[fi].insert(e.from.port.clone(), ti).is_some() {
                v.err(Some(&e.from.node), format!("{field} ({})", e.from), "a flow output can feed only one node");
            }
        } else if data_in[ti].insert(e.to.port.clone(), (fi, e.from.port.clone())).is_some() {
            v.err(Some(&e.to.node), format!("{field} ({})", e.to), "input is wired more than once");
        }
    }
    // Flow inputs: count wires into `in` per node.
    let mut flow_in_count = vec![0usize; spec.nodes.len()];
    for outs in &flow_out {
        for &t in outs.values() {
            flow_in_count[t] += 1;
        }
    }

    // Required inputs and unwired flow outputs.
    for (i, n) in spec.nodes.iter().enumerate() {
        for p in &port_table[i].0 {
            if !p.required {
                continue;
            }
            let wired = if p.ty == PortType::Flow { flow_in_count[i] > 0 } else { data_in[i].contains_key(&p.name) };
            if !wired {
                let reason = if p.ty == PortType::Flow {
                    "nothing flows into this node: wire a flow output to `in`".to_string()
                } else {
                    format!("required {} input `{}` is not wired", p.ty, p.name)
                };
                v.err(Some(&n.id), p.name.clone(), reason);
            }
        }
        for p in &port_table[i].1 {
            if p.ty == PortType::Flow && !flow_out[i].contains_key(&p.name) {
                v.err(Some(&n.id), p.name.clone(), "flow output goes nowhere: wire it to the next node");
            }
        }
    }

    // Cycles in flow and in data.
    for cyc in find_cycle(spec.nodes.len(), |i| flow_out[i].values().copied().collect()) {
        v.err(Some(&spec.nodes[cyc].id), "out", "flow loops back to this node: a step must be a walk without loops");
    }
    for cyc in find_cycle(spec.nodes.len(), |i| data_in[i].values().map(|(s, _)| *s).collect()) {
        v.err(Some(&spec.nodes[cyc].id), "inputs", "data wires form a cycle through this node");
    }

    // Reachability from triggers.
    let reach = |start: usize| -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            if seen.insert(i) {
                stack.extend(flow_out[i].values().copied());
            }
        }
        seen
    };
    let find = |pred: fn(&NodeKind) -> bool| spec.nodes.iter().position(|n| pred(&n.kind));
    let on_reset = find(|k| matches!(k, NodeKind::OnReset {}));
    let on_step = find(|k| matches!(k, NodeKind::OnStep {}));
    let from_reset = on_reset.map(reach).unwrap_or_default();
    let from_step = on_step.map(reach).unwrap_or_default();
    for (i, n) in spec.nodes.iter().enumerate() {
        match (&n.kind, from_reset.contains(&i), from_step.contains(&i)) {
            (NodeKind::ReturnStep { .. }, true, _) => {
                v.err(Some(&n.id), "in", "reached from `on_reset`: the reset walk must end at `return_reset`")
            }
            (NodeKind::ReturnReset { .. }, _, true) => {
                v.err(Some(&n.id), "in", "reached from `on_step`: the step walk must end at `return_step`")
            }
            (NodeKind::OnStep {}, true, _) | (NodeKind::OnReset {}, _, true) => {}
            _ => {}
        }
        if matches!(role(&n.kind), Role::Flow | Role::Terminus) && !from_reset.contains(&i) && !from_step.contains(&i) {
            v.warn(Some(&n.id), "in", "unreachable: no walk from `on_reset` or `on_step` gets here");
        }
    }
    // A flow node's data may be read only by nodes that run after it.
    for (i, n) in spec.nodes.iter().enumerate() {
        if role(&n.kind) == Role::Pure {
            continue;
        }
        for (port, (src, _)) in &data_in[i] {
            if matches!(role(&spec.nodes[*src].kind), Role::Flow) && !reach(*src).contains(&i) {
                v.err(
                    Some(&n.id),
                    port.clone(),
                    format!("reads `{}`, which does not run before this node on any flow path", spec.nodes[*src].id),
                );
            }
        }
    }

    // ---------------------------------------------------------------- fields
    let mut templates = Templates::new();
    type NodeParts = (BTreeMap<String, Expr>, Vec<regex::Regex>, Option<serde_json_path::JsonPath>);
    let mut compiled: Vec<NodeParts> = Vec::new();
    for (i, n) in spec.nodes.iter().enumerate() {
        let input_ports: BTreeSet<String> = port_table[i].0.iter().map(|p| p.name.clone()).collect();
        let mut ctx = FieldCtx { v: &mut v, node: n, input_ports, task_fields: &task_fields, var_types: &var_types };
        let mut exprs = BTreeMap::new();
        let mut scripts = Vec::new();
        let mut path = None;
        let mut expr = |ctx: &mut FieldCtx, field: &str, src: &str| {
            if let Some(e) = ctx.expr(field, src, &[]) {
                exprs.insert(field.to_string(), e);
            }
        };
        match &n.kind {
            NodeKind::ActionSpace { .. }
            | NodeKind::ObservationSpace { .. }
            | NodeKind::OnReset {}
            | NodeKind::OnStep {} => {}
            NodeKind::Documentation { text } | NodeKind::Persona { text } => {
                ctx.template(&mut templates, "text", text, &[])
            }
            NodeKind::Template { template } => ctx.template(&mut templates, "template", template, &[]),
            NodeKind::GetState { variable } => ctx.variable(variable),
            NodeKind::SetState { variable, expr: e } => {
                ctx.variable(variable);
                match (e, data_in[i].contains_key("value")) {
                    (Some(src), false) => expr(&mut ctx, "expr", src),
                    (None, false) => ctx.v.err(Some(&n.id), "expr", "give an `expr` or wire the `value` input"),
                    (Some(_), true) => ctx.v.warn(Some(&n.id), "expr", "ignored: the `value` input is wired"),
                    (None, true) => {}
                }
            }
            NodeKind::SqlQuery { database, query, params, .. } => {
                ctx.fixture("database", database, FixtureKind::Sql);
                match (query, data_in[i].contains_key("query")) {
                    (Some(q), _) => ctx.template(&mut templates, "query", q, &[]),
                    (None, false) => {
                        ctx.v.err(Some(&n.id), "query", "give a `query` template or wire the `query` input")
                    }
                    (None, true) => {}
                }
                if let Some(p) = params {
                    expr(&mut ctx, "params", p);
                }
            }
            NodeKind::MockCli { files, command, scripts: s } => {
                if let Some(f) = files {
                    ctx.fixture("files", f, FixtureKind::Files);
                }
                match (command, data_in[i].contains_key("command")) {
                    (Some(c), _) => ctx.template(&mut templates, "command", c, &[]),
                    (None, false) => {
                        ctx.v.err(Some(&n.id), "command", "give a `command` template or wire the `command` input")
                    }
                    (None, true) => {}
                }
                for (si, script) in s.iter().enumerate() {
                    match regex::RegexBuilder::new(&format!("^(?:{})$", script.pattern)).size_limit(1 << 20).build() {
                        Ok(re) => scripts.push(re),
                        Err(e) => ctx.v.err(Some(&n.id), format!("scripts[{si}].pattern"), format!("bad regex: {e}")),
                    }
                    ctx.template(&mut templates, &format!("scripts[{si}].output"), &script.output, &["match"]);
                }
            }
            NodeKind::HttpRequest { method, url, body, .. } => {
                if !matches!(method.to_ascii_uppercase().as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD")
                {
                    ctx.v.err(Some(&n.id), "method", format!("unsupported HTTP method {method:?}"));
                }
                ctx.template(&mut templates, "url", url, &[]);
                ctx.literal_host("url", url);
                if let Some(b) = body {
                    ctx.template(&mut templates, "body", b, &[]);
                }
            }
            NodeKind::McpCall { endpoint, tool, arguments } => {
                ctx.template(&mut templates, "endpoint", endpoint, &[]);
                ctx.literal_host("endpoint", endpoint);
                ctx.template(&mut templates, "tool", tool, &[]);
                if let Some(a) = arguments {
                    expr(&mut ctx, "arguments", a);
                }
            }
            NodeKind::Switch { cases } => {
                let mut names = BTreeSet::new();
                for (ci, c) in cases.iter().enumerate() {
                    if c.name == "default" || c.name == "in" || !is_ident(&c.name) || !names.insert(c.name.clone()) {
                        ctx.v.err(
                            Some(&n.id),
                            format!("cases[{ci}].name"),
                            format!("{:?} must be a unique identifier other than `default`/`in`", c.name),
                        );
                    }
                    expr(&mut ctx, &format!("cases.{}", c.name), &c.when);
                }
                if cases.is_empty() {
                    ctx.v.warn(Some(&n.id), "cases", "a switch without cases always takes `default`");
                }
            }
            NodeKind::Extract { path: p } if p.len() > 1024 => {
                ctx.v.err(Some(&n.id), "path", "JSONPath longer than 1024 bytes")
            }
            NodeKind::Extract { path: p } => match serde_json_path::JsonPath::parse(p) {
                Ok(jp) => path = Some(jp),
                Err(e) => ctx.v.err(Some(&n.id), "path", format!("bad JSONPath: {e}")),
            },
            NodeKind::Constraint { condition, penalty, message, .. } => {
                expr(&mut ctx, "condition", condition);
                if !penalty.is_finite() || *penalty < 0.0 {
                    ctx.v.err(Some(&n.id), "penalty", "must be a finite number ≥ 0 (it is subtracted)");
                }
                ctx.template(&mut templates, "message", message, &[]);
            }
            NodeKind::Reward { value, expr: e, when } => {
                match (value, e) {
                    (Some(x), None) if !x.is_finite() => ctx.v.err(Some(&n.id), "value", "must be finite"),
                    (Some(_), None) => {}
                    (None, Some(src)) => expr(&mut ctx, "expr", src),
                    _ => ctx.v.err(Some(&n.id), "value", "give exactly one of `value` (static) or `expr` (CEL)"),
                }
                if let Some(w) = when {
                    expr(&mut ctx, "when", w);
                }
            }
            NodeKind::Overseer { rubric, weight, when } => {
                ctx.template(&mut templates, "rubric", rubric, &[]);
                if !weight.is_finite() {
                    ctx.v.err(Some(&n.id), "weight", "must be finite");
                }
                if let Some(w) = when {
                    expr(&mut ctx, "when", w);
                }
            }
            NodeKind::ReturnReset { observation } | NodeKind::ReturnStep { observation, .. } => {
                if observation.is_empty() && !data_in[i].contains_key("observation") {
                    ctx.v.err(
                        Some(&n.id),
                        "observation",
                        "give an `observation` template or wire the `observation` input",
                    );
                }
                ctx.template(&mut templates, "observation", observation, &[]);
                if let NodeKind::ReturnStep { terminated: Some(t), .. } = &n.kind {
                    expr(&mut ctx, "terminated", t);
                }
            }
        }
        compiled.push((exprs, scripts, path));
    }

    // Action space and reference solutions.
    let action_node = spec.nodes.iter().find(|n| matches!(n.kind, NodeKind::ActionSpace { .. }));
    let actions = match action_node.map(|n| (n, ActionParser::new(&n.kind, spec.limits.max_action_bytes))) {
        Some((n, Err(errs))) => {
            for (field, reason) in errs {
                v.err(Some(&n.id), field, reason);
            }
            None
        }
        Some((_, Ok(p))) => Some(p),
        None => None,
    };
    if let Some(parser) = &actions {
        for (ti, t) in spec.tasks.iter().enumerate() {
            for (ai, a) in t.solution.iter().enumerate() {
                if let Err(reason) = parser.parse(a) {
                    v.err(None, format!("tasks[{ti}].solution[{ai}]"), format!("task {:?}: {reason}", t.id));
                }
            }
        }
    }

    let (errors, warnings): (Vec<_>, Vec<_>) = v.diags.into_iter().partition(|d| d.severity == Severity::Error);
    if !errors.is_empty() {
        let mut all = errors;
        all.extend(warnings);
        return Err(all);
    }
    let (Some(on_reset), Some(on_step), Some(actions)) = (on_reset, on_step, actions) else {
        return Err(vec![Diagnostic {
            severity: Severity::Error,
            node: None,
            field: "nodes".into(),
            reason: "incomplete graph".into(),
        }]);
    };
    let nodes = spec
        .nodes
        .iter()
        .zip(compiled)
        .zip(data_in.into_iter().zip(flow_out))
        .map(|((n, (exprs, scripts, path)), (din, fout))| NodeRt {
            roots: node_roots(&n.id, &exprs, &templates),
            id: n.id.clone(),
            kind: n.kind.clone(),
            role: role(&n.kind),
            data_in: din,
            flow_out: fout,
            exprs,
            scripts,
            path,
        })
        .collect();
    Ok(CompiledGym { bundle, nodes, templates, actions, on_reset, on_step, warnings })
}

fn node_roots(id: &str, exprs: &BTreeMap<String, Expr>, templates: &Templates) -> BTreeSet<String> {
    let mut roots: BTreeSet<String> = exprs.values().flat_map(|e| e.references().0).collect();
    let prefix = format!("{id}/");
    for key in templates.keys() {
        if key.starts_with(&prefix) {
            roots.extend(templates.roots_of(key).iter().cloned());
        }
    }
    roots
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

struct FieldCtx<'a, 'b> {
    v: &'a mut V<'b>,
    node: &'a Node,
    input_ports: BTreeSet<String>,
    task_fields: &'a BTreeSet<&'a str>,
    var_types: &'a HashMap<&'a str, VarType>,
}

impl FieldCtx<'_, '_> {
    fn check_refs(&mut self, field: &str, roots: &[String], members: &[(String, String)], extra: &[&str]) {
        let id = self.node.id.clone();
        for r in roots {
            if !ROOT_NAMES.contains(&r.as_str())
                && !extra.contains(&r.as_str())
                && !EXTRA_FUNCTIONS.contains(&r.as_str())
            {
                self.v.err(Some(&id), field, format!("unknown name `{r}` (known: {})", ROOT_NAMES.join(", ")));
            }
        }
        for (root, m) in members {
            let ok = match root.as_str() {
                "state" => self.var_types.contains_key(m.as_str()),
                "task" => self.task_fields.contains(m.as_str()),
                "input" => self.input_ports.contains(m),
                _ => true,
            };
            if !ok {
                let what = match root.as_str() {
                    "state" => "undeclared state variable".to_string(),
                    "task" => "no task has the field".to_string(),
                    _ => format!("not an input port of a {} node", self.node.kind.name()),
                };
                self.v.err(Some(&id), field, format!("`{root}.{m}`: {what}"));
            }
        }
    }

    fn expr(&mut self, field: &str, src: &str, extra: &[&str]) -> Option<Expr> {
        match Expr::compile(src) {
            Ok(e) => {
                let (roots, members) = e.references();
                self.check_refs(field, &roots, &members, extra);
                Some(e)
            }
            Err(reason) => {
                self.v.err(Some(&self.node.id.clone()), field, reason);
                None
            }
        }
    }

    fn template(&mut self, templates: &mut Templates, field: &str, src: &str, extra: &[&str]) {
        let key = format!("{}/{}", self.node.id, field);
        if let Err(reason) = templates.add(&key, src) {
            self.v.err(Some(&self.node.id.clone()), field, reason);
            return;
        }
        match templates.references(&key) {
            Ok((roots, members)) => self.check_refs(field, &roots, &members, extra),
            Err(reason) => self.v.err(Some(&self.node.id.clone()), field, reason),
        }
    }

    fn variable(&mut self, name: &str) {
        if !self.var_types.contains_key(name) {
            let id = self.node.id.clone();
            self.v.err(Some(&id), "variable", format!("undeclared state variable {name:?}"));
        }
    }

    fn fixture(&mut self, field: &str, name: &str, kind: FixtureKind) {
        let id = self.node.id.clone();
        match self.v.spec.fixtures.get(name) {
            None => self.v.err(Some(&id), field, format!("no fixture named {name:?}")),
            Some(f) if f.kind != kind => {
                self.v.err(Some(&id), field, format!("fixture {name:?} is {:?}, this needs {:?}", f.kind, kind))
            }
            Some(_) => {}
        }
    }

    /// A URL whose host is literal must name a host the gym declares.
    fn literal_host(&mut self, field: &str, url: &str) {
        let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
            if !url.contains("{{") {
                let id = self.node.id.clone();
                self.v.err(Some(&id), field, format!("{url:?} is not an absolute http(s) URL"));
            }
            return;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains("{{") {
            return;
        }
        let (host, port) = crate::net::split_authority(authority);
        if !hz_core::config::host_allowed(&self.v.spec.network.allowed_hosts, &host, port) {
            let id = self.node.id.clone();
            self.v.err(Some(&id), field, format!("host {host:?} is not declared in `network.allowed_hosts`"));
        }
    }
}

/// Nodes on a cycle of the directed graph given by `succ` (one per cycle found).
fn find_cycle(n: usize, succ: impl Fn(usize) -> Vec<usize>) -> Vec<usize> {
    // Iterative three-colour DFS.
    let mut colour = vec![0u8; n];
    let mut found = Vec::new();
    for start in 0..n {
        if colour[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, Vec<usize>)> = vec![(start, succ(start))];
        colour[start] = 1;
        while let Some((node, next)) = stack.last_mut() {
            if let Some(m) = next.pop() {
                match colour[m] {
                    0 => {
                        colour[m] = 1;
                        let s = succ(m);
                        stack.push((m, s));
                    }
                    1 => found.push(m),
                    _ => {}
                }
            } else {
                colour[*node] = 2;
                stack.pop();
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// Validate without keeping the compiled form: every finding, errors first.
pub fn validate(bundle: &GymBundle) -> Vec<Diagnostic> {
    match compile(bundle.clone()) {
        Ok(c) => c.warnings,
        Err(d) => d,
    }
}
