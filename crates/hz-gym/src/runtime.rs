//! The gym runtime: `reset(seed, options)` and `step(action)` with Gymnasium semantics.
//! Same gym, seed and actions → byte-identical trajectory.

use crate::action::ParsedAction;
use crate::bundle::GymBundle;
use crate::expr::{Scope, Shared};
use crate::graph::{compile, CompiledGym, NodeRt};
use crate::net::NetGuard;
use crate::overseer::{JudgeRequest, RewardProvider};
use crate::ports::Role;
use crate::spec::{FixtureKind, NodeKind, TaskInstance};
use crate::sql::{result_text, Sandbox, Seed};
use crate::vfs::{CmdOutput, Vfs};
use crate::GymError;
use hz_core::{ContentId, NetworkPolicy};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// A loaded, validated gym shared by any number of environments.
pub struct Gym {
    compiled: CompiledGym,
    id: ContentId,
    seeds: HashMap<String, Seed>,
    /// `text` and `json` fixtures as visible to expressions, converted once.
    fixtures: Arc<Shared>,
}

impl std::fmt::Debug for Gym {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gym").field("name", &self.compiled.spec().name).field("id", &self.id).finish()
    }
}

impl Gym {
    /// Validate and compile a bundle; seed databases are built once here.
    pub fn new(bundle: GymBundle) -> Result<Arc<Self>, GymError> {
        let id = bundle.id()?;
        let compiled = compile(bundle).map_err(GymError::Invalid)?;
        let mut seeds = HashMap::new();
        let mut fx_scope = Map::new();
        for (name, fx) in &compiled.spec().fixtures {
            let content = &compiled.bundle.fixtures[name];
            match fx.kind {
                FixtureKind::Sql => {
                    let seed = Seed::build(content.as_str().unwrap_or_default())
                        .map_err(|reason| GymError::Fixture { name: name.clone(), reason })?;
                    seeds.insert(name.clone(), seed);
                }
                FixtureKind::Text | FixtureKind::Json => {
                    fx_scope.insert(name.clone(), content.clone());
                }
                FixtureKind::Files => {}
            }
        }
        Ok(Arc::new(Self { compiled, id, seeds, fixtures: Shared::new(Value::Object(fx_scope)) }))
    }

    /// Load from a `*.gym.json` path.
    pub fn load(path: &std::path::Path) -> Result<Arc<Self>, GymError> {
        Self::new(GymBundle::load(path)?)
    }

    pub fn id(&self) -> ContentId {
        self.id
    }

    pub fn compiled(&self) -> &CompiledGym {
        &self.compiled
    }

    pub fn spec(&self) -> &crate::spec::GymSpec {
        self.compiled.spec()
    }
}

/// What the node operator decides for every environment it runs.
#[derive(Clone, Default)]
pub struct RuntimeConfig {
    pub network: NetworkPolicy,
    pub overseer: Option<Arc<dyn RewardProvider>>,
    /// Timeout of HTTP and MCP nodes.
    pub net_timeout: Option<Duration>,
}

/// Result of `step`, in Gymnasium's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub observation: String,
    pub reward: f64,
    pub terminated: bool,
    pub truncated: bool,
    pub info: Value,
}

/// Options for `reset`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResetOptions {
    /// Pick this task instead of sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Pick the task at this index instead of sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_index: Option<usize>,
}

/// One reward term, itemised in `info.rewards`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardItem {
    /// Node id, or `invalid_action`.
    pub source: String,
    /// `reward`, `constraint`, `overseer`, `invalid_action`.
    pub kind: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

struct Episode {
    task: TaskInstance,
    task_json: Arc<Shared>,
    /// State variables in declaration order, each shared with the scopes that read it, so
    /// a `set_state` converts only the variable it writes.
    state: Vec<(String, Arc<Shared>)>,
    step: u32,
    done: bool,
    rng_seed: u64,
    trees: HashMap<String, Vfs>,
}

/// One environment: an episode at a time over a shared [`Gym`].
pub struct Env {
    gym: Arc<Gym>,
    cfg: RuntimeConfig,
    episode: Option<Episode>,
    /// Sandbox databases by fixture name. They outlive an episode when nothing wrote to
    /// them (read-only nodes cannot), which keeps their prepared statements warm.
    dbs: HashMap<String, Sandbox>,
}

/// Mutable state of one walk.
struct Walk {
    outputs: HashMap<usize, BTreeMap<String, Arc<Shared>>>,
    rewards: Vec<RewardItem>,
    violations: Vec<String>,
    terminated: bool,
    evals: u32,
    /// The parsed action, shared by every node that reads it (`action` or `on_step.action`).
    action: Arc<Shared>,
}

enum Next {
    Port(&'static str),
    Named(String),
    Done { observation: String, terminated: bool },
}

impl Env {
    pub fn new(gym: Arc<Gym>, cfg: RuntimeConfig) -> Self {
        Self { gym, cfg, episode: None, dbs: HashMap::new() }
    }

    pub fn gym(&self) -> &Arc<Gym> {
        &self.gym
    }

    /// Start an episode. Returns the first observation and info.
    pub fn reset(&mut self, seed: u64, options: &ResetOptions) -> Result<(String, Value), GymError> {
        let spec = self.gym.spec();
        let task = match (&options.task_id, options.task_index) {
            (Some(id), _) => {
                spec.tasks.iter().find(|t| &t.id == id).ok_or_else(|| GymError::UnknownTask(id.clone()))?
            }
            (None, Some(i)) => spec.tasks.get(i).ok_or_else(|| GymError::UnknownTask(format!("index {i}")))?,
            (None, None) => &spec.tasks[(seed_draw(seed, "task") % spec.tasks.len() as u64) as usize],
        }
        .clone();
        let mut task_json = Map::new();
        task_json.insert("id".into(), Value::String(task.id.clone()));
        for (k, v) in &task.fields {
            task_json.insert(k.clone(), v.clone());
        }
        let state = spec.variables.iter().map(|v| (v.name.clone(), Shared::new(v.initial.clone()))).collect();
        let rng_seed = seed_draw(seed, "sql-random");
        self.dbs.retain(|_, db| !db.dirty());
        for db in self.dbs.values_mut() {
            db.reseed(rng_seed);
        }
        self.episode = Some(Episode {
            task,
            task_json: Shared::new(Value::Object(task_json)),
            state,
            step: 0,
            done: false,
            rng_seed,
            trees: HashMap::new(),
        });
        let start = self.gym.compiled.on_reset;
        let (observation, _walk) = self.walk(start, ParsedAction::none().to_json())?;
        let ep = self.episode.as_ref().ok_or(GymError::NotReset)?;
        Ok((observation, json!({"task_id": ep.task.id, "seed": seed, "step": 0})))
    }

    /// Take one step.
    pub fn step(&mut self, action: &Value) -> Result<StepResult, GymError> {
        let spec = self.gym.spec();
        let ep = self.episode.as_mut().ok_or(GymError::NotReset)?;
        if ep.done {
            return Err(GymError::EpisodeOver);
        }
        ep.step += 1;
        let step = ep.step;
        let truncate_at = spec.max_steps;
        let task_id = ep.task.id.clone();
        let parsed = match self.gym.compiled.actions.parse(action) {
            Ok(p) => p,
            Err(reason) => {
                let truncated = step >= truncate_at;
                ep.done = truncated;
                let item = RewardItem {
                    source: "invalid_action".into(),
                    kind: "invalid_action".into(),
                    value: spec.invalid_action_penalty,
                    message: Some(reason.clone()),
                    rationale: None,
                    skipped: false,
                };
                let observation = self.clip(format!("Invalid action: {reason}"));
                return Ok(StepResult {
                    observation,
                    reward: spec.invalid_action_penalty,
                    terminated: false,
                    truncated,
                    info: json!({"step": step, "task_id": task_id, "rewards": [item], "violations": [], "action": null, "invalid_action": reason}),
                });
            }
        };
        let action_json = parsed.to_json();
        let start = self.gym.compiled.on_step;
        let (observation, walk) = self.walk(start, action_json.clone())?;
        let reward = total(&walk.rewards);
        if !reward.is_finite() {
            return Err(GymError::Eval { node: "return_step".into(), reason: "total reward is not finite".into() });
        }
        let terminated = walk.terminated;
        let truncated = !terminated && step >= truncate_at;
        if let Some(ep) = self.episode.as_mut() {
            ep.done = terminated || truncated;
        }
        Ok(StepResult {
            observation,
            reward,
            terminated,
            truncated,
            info: json!({
                "step": step, "task_id": task_id, "rewards": walk.rewards,
                "violations": walk.violations, "action": action_json,
            }),
        })
    }

    /// Whether the current episode has ended.
    pub fn done(&self) -> bool {
        self.episode.as_ref().is_none_or(|e| e.done)
    }

    /// The current task instance (including its reference solution).
    pub fn task(&self) -> Option<&TaskInstance> {
        self.episode.as_ref().map(|e| &e.task)
    }

    fn clip(&self, mut s: String) -> String {
        let c = &self.gym.compiled;
        let mut max = c.spec().limits.max_observation_chars as usize;
        if let Some(n) = c.nodes.iter().find_map(|n| match &n.kind {
            NodeKind::ObservationSpace { max_length: Some(m) } => Some(*m as usize),
            _ => None,
        }) {
            max = max.min(n);
        }
        if let Some((idx, _)) = s.char_indices().nth(max) {
            s.truncate(idx);
        }
        s
    }

    fn walk(&mut self, start: usize, action: Value) -> Result<(String, Walk), GymError> {
        let gym = self.gym.clone();
        let nodes = &gym.compiled.nodes;
        let mut w = Walk {
            outputs: HashMap::new(),
            rewards: Vec::new(),
            violations: Vec::new(),
            terminated: false,
            evals: 0,
            action: Shared::new(action),
        };
        w.outputs.insert(start, BTreeMap::from([("action".to_string(), w.action.clone())]));
        let max = gym.spec().limits.max_node_evals;
        let mut cur = *nodes[start].flow_out.get("out").ok_or_else(|| GymError::Eval {
            node: nodes[start].id.clone(),
            reason: "trigger has no outgoing flow".into(),
        })?;
        loop {
            w.evals += 1;
            if w.evals > max {
                return Err(GymError::Limit(format!("more than {max} node evaluations in one walk")));
            }
            let node = &nodes[cur];
            let next =
                self.run_node(&gym, cur, &mut w).map_err(|reason| GymError::Eval { node: node.id.clone(), reason })?;
            let port = match next {
                Next::Done { observation, terminated } => {
                    w.terminated |= terminated;
                    return Ok((self.clip(observation), w));
                }
                Next::Port(p) => p.to_string(),
                Next::Named(p) => p,
            };
            cur = *node.flow_out.get(&port).ok_or_else(|| GymError::Eval {
                node: node.id.clone(),
                reason: format!("flow output `{port}` goes nowhere"),
            })?;
        }
    }

    /// Values of a node's wired data inputs.
    fn inputs(&mut self, gym: &Gym, idx: usize, w: &mut Walk) -> Result<Inputs, String> {
        let node = &gym.compiled.nodes[idx];
        let mut out = Vec::with_capacity(node.data_in.len());
        for (port, (src, src_port)) in &node.data_in {
            let v = self.output_of(gym, *src, src_port, w)?;
            out.push((port.clone(), v));
        }
        Ok(Inputs(out))
    }

    fn output_of(&mut self, gym: &Gym, src: usize, port: &str, w: &mut Walk) -> Result<Arc<Shared>, String> {
        if let Some(v) = w.outputs.get(&src).and_then(|o| o.get(port)) {
            return Ok(v.clone());
        }
        let node = &gym.compiled.nodes[src];
        if node.role != Role::Pure {
            return Err(format!("reads `{}.{port}` before node `{}` has run in this walk", node.id, node.id));
        }
        w.evals += 1;
        if w.evals > gym.spec().limits.max_node_evals {
            return Err("node evaluation limit reached".into());
        }
        let outs = self.eval_pure(gym, src, w).map_err(|e| format!("in `{}`: {e}", node.id))?;
        let outs: BTreeMap<String, Arc<Shared>> = outs.into_iter().map(|(k, v)| (k, Shared::new(v))).collect();
        let v = outs.get(port).cloned().unwrap_or_else(|| Shared::new(Value::Null));
        w.outputs.insert(src, outs);
        Ok(v)
    }

    /// The names a node reads, and only those.
    fn scope(&self, gym: &Gym, node: &NodeRt, inputs: &Inputs, w: &Walk) -> Scope {
        let mut s = Scope::new();
        for root in &node.roots {
            match root.as_str() {
                "task" => match self.episode.as_ref() {
                    Some(e) => s.set_shared("task", e.task_json.clone()),
                    None => s.set("task", &Value::Null),
                },
                "state" => match self.episode.as_ref() {
                    Some(e) => s.set_map("state", e.state.clone()),
                    None => s.set("state", &Value::Null),
                },
                "action" => s.set_shared("action", w.action.clone()),
                "step" => s.set("step", &json!(self.episode.as_ref().map_or(0, |e| e.step))),
                "max_steps" => s.set("max_steps", &json!(gym.spec().max_steps)),
                "input" => s.set_map("input", inputs.0.clone()),
                "fixtures" => s.set_shared("fixtures", gym.fixtures.clone()),
                "rewards" => s.set("rewards", &serde_json::to_value(&w.rewards).unwrap_or(Value::Null)),
                "reward" => s.set("reward", &json!(total(&w.rewards))),
                "violations" => s.set("violations", &json!(w.violations)),
                "terminated" => s.set("terminated", &json!(w.terminated)),
                _ => {}
            }
        }
        s
    }

    fn render(gym: &Gym, node: &NodeRt, field: &str, scope: &Scope) -> Result<String, String> {
        gym.compiled.templates.render(&node.tkey(field), scope)
    }

    fn eval_pure(&mut self, gym: &Gym, idx: usize, w: &mut Walk) -> Result<BTreeMap<String, Value>, String> {
        let node = &gym.compiled.nodes[idx];
        let inputs = self.inputs(gym, idx, w)?;
        let mut out = BTreeMap::new();
        match &node.kind {
            NodeKind::Documentation { .. } | NodeKind::Persona { .. } => {
                let scope = self.scope(gym, node, &inputs, w);
                out.insert("text".into(), Value::String(Self::render(gym, node, "text", &scope)?));
            }
            NodeKind::Template { .. } => {
                let scope = self.scope(gym, node, &inputs, w);
                out.insert("text".into(), Value::String(Self::render(gym, node, "template", &scope)?));
            }
            NodeKind::GetState { variable } => {
                let v = self
                    .episode
                    .as_ref()
                    .and_then(|e| e.state.iter().find(|(k, _)| k == variable))
                    .map_or(Value::Null, |(_, v)| v.json().clone());
                out.insert("value".into(), v);
            }
            NodeKind::Extract { .. } => {
                let value = inputs.get("value").cloned().unwrap_or(Value::Null);
                let found = match &node.path {
                    Some(p) => {
                        let nodes = p.query(&value).all();
                        match nodes.as_slice() {
                            [] => Value::Null,
                            [one] => (*one).clone(),
                            many => Value::Array(many.iter().map(|v| (*v).clone()).collect()),
                        }
                    }
                    None => Value::Null,
                };
                out.insert("text".into(), Value::String(as_text(&found)));
                out.insert("value".into(), found);
            }
            _ => return Err("not a pure node".into()),
        }
        Ok(out)
    }

    fn run_node(&mut self, gym: &Gym, idx: usize, w: &mut Walk) -> Result<Next, String> {
        let node = &gym.compiled.nodes[idx];
        let inputs = self.inputs(gym, idx, w)?;
        let scope = self.scope(gym, node, &inputs, w);
        let expr = |field: &str| node.exprs.get(field);
        let mut outs = BTreeMap::new();
        let next = match &node.kind {
            NodeKind::SetState { variable, .. } => {
                let value = match (inputs.get("value"), expr("expr")) {
                    (Some(v), _) => v.clone(),
                    (None, Some(e)) => e.eval(&scope)?,
                    (None, None) => return Err("no value to set".into()),
                };
                let decl = gym.spec().variables.iter().find(|v| &v.name == variable).ok_or("undeclared variable")?;
                if !decl.ty.accepts(&value) {
                    return Err(format!("cannot set `{variable}` ({:?}) to {value}", decl.ty));
                }
                if let Some(ep) = self.episode.as_mut() {
                    if let Some(slot) = ep.state.iter_mut().find(|(k, _)| k == variable) {
                        slot.1 = Shared::new(value);
                    }
                }
                Next::Port("out")
            }
            NodeKind::SqlQuery { database, read_only, .. } => {
                let sql = match inputs.get("query") {
                    Some(v) => as_text(v),
                    None => Self::render(gym, node, "query", &scope)?,
                };
                let params = match expr("params") {
                    Some(e) => match e.eval(&scope)? {
                        Value::Array(a) => a,
                        other => return Err(format!("`params` must give a list, gave {other}")),
                    },
                    None => Vec::new(),
                };
                let limits = &gym.spec().limits;
                let ep = self.episode.as_ref().ok_or("no episode")?;
                let db = match self.dbs.entry(database.clone()) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let seed = gym.seeds.get(database).ok_or("database fixture missing")?;
                        v.insert(Sandbox::new(seed, ep.rng_seed)?)
                    }
                };
                let result =
                    db.run(&sql, &params, *read_only, limits.sql_max_rows as usize, limits.sql_max_instructions);
                outs.insert("text".into(), Value::String(result_text(&result)));
                outs.insert("ok".into(), result["ok"].clone());
                outs.insert("result".into(), result);
                Next::Port("out")
            }
            NodeKind::MockCli { files, scripts, .. } => {
                let command = match inputs.get("command") {
                    Some(v) => as_text(v),
                    None => Self::render(gym, node, "command", &scope)?,
                };
                let key = files.clone().unwrap_or_default();
                let ep = self.episode.as_mut().ok_or("no episode")?;
                let tree = ep.trees.entry(key.clone()).or_insert_with(|| {
                    gym.compiled
                        .bundle
                        .fixtures
                        .get(&key)
                        .and_then(Value::as_object)
                        .map(Vfs::from_fixture)
                        .unwrap_or_default()
                });
                let line = command.trim();
                let mut output = None;
                for (i, (script, re)) in scripts.iter().zip(&node.scripts).enumerate() {
                    if let Some(caps) = re.captures(line) {
                        let groups: Vec<Value> =
                            caps.iter().map(|m| Value::String(m.map_or("", |m| m.as_str()).to_string())).collect();
                        let mut s = scope.clone();
                        s.set("match", &Value::Array(groups));
                        let key = node.tkey(&format!("scripts[{i}].output"));
                        let stdout = gym.compiled.templates.render(&key, &s)?;
                        output = Some(CmdOutput { stdout, exit_code: script.exit_code });
                        break;
                    }
                }
                let out = match output {
                    Some(o) => o,
                    None => tree.run(line),
                };
                outs.insert("result".into(), tree.result_json(&out));
                outs.insert("stdout".into(), Value::String(out.stdout));
                outs.insert("exit_code".into(), json!(out.exit_code));
                Next::Port("out")
            }
            NodeKind::HttpRequest { method, headers, .. } => {
                let url = Self::render(gym, node, "url", &scope)?;
                let body = match inputs.get("body") {
                    Some(v) => Some(as_text(v)),
                    None if gym.compiled.templates.has(&node.tkey("body")) => {
                        Some(Self::render(gym, node, "body", &scope)?)
                    }
                    None => None,
                };
                let hdrs: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                let guard = self.guard(gym);
                let resp = guard.http(method, &url, &hdrs, body.as_deref());
                let text = if resp["ok"] == json!(true) {
                    resp["text"].as_str().unwrap_or_default().to_string()
                } else {
                    format!(
                        "error: {}",
                        resp["error"].as_str().map_or_else(|| format!("HTTP {}", resp["status"]), str::to_string)
                    )
                };
                outs.insert("ok".into(), resp["ok"].clone());
                outs.insert("text".into(), Value::String(text));
                outs.insert("response".into(), resp);
                Next::Port("out")
            }
            NodeKind::McpCall { .. } => {
                let endpoint = Self::render(gym, node, "endpoint", &scope)?;
                let tool = Self::render(gym, node, "tool", &scope)?;
                let args = match (inputs.get("arguments"), expr("arguments")) {
                    (Some(v), _) => v.clone(),
                    (None, Some(e)) => e.eval(&scope)?,
                    (None, None) => json!({}),
                };
                let res = self.guard(gym).mcp_call(&endpoint, &tool, &args);
                let text = if res["ok"] == json!(true) {
                    res["text"].as_str().unwrap_or_default().to_string()
                } else {
                    format!("error: {}", res["error"].as_str().unwrap_or("tool failed"))
                };
                outs.insert("ok".into(), res["ok"].clone());
                outs.insert("text".into(), Value::String(text));
                outs.insert("result".into(), res);
                Next::Port("out")
            }
            NodeKind::Switch { cases } => {
                let mut chosen = None;
                for c in cases {
                    let e = expr(&format!("cases.{}", c.name)).ok_or("case not compiled")?;
                    if e.eval_bool(&scope)? {
                        chosen = Some(c.name.clone());
                        break;
                    }
                }
                Next::Named(chosen.unwrap_or_else(|| "default".into()))
            }
            NodeKind::Constraint { penalty, terminate, .. } => {
                let holds = expr("condition").ok_or("condition not compiled")?.eval_bool(&scope)?;
                if !holds {
                    let message = Self::render(gym, node, "message", &scope)?;
                    let message =
                        if message.is_empty() { format!("constraint `{}` violated", node.id) } else { message };
                    w.rewards.push(RewardItem {
                        source: node.id.clone(),
                        kind: "constraint".into(),
                        value: -penalty,
                        message: Some(message.clone()),
                        rationale: None,
                        skipped: false,
                    });
                    w.violations.push(message);
                    w.terminated |= *terminate;
                }
                outs.insert("violated".into(), Value::Bool(!holds));
                Next::Port("out")
            }
            NodeKind::Reward { value, .. } => {
                let give = match expr("when") {
                    Some(e) => e.eval_bool(&scope)?,
                    None => true,
                };
                let amount = if !give {
                    0.0
                } else {
                    match (value, expr("expr")) {
                        (Some(v), _) => *v,
                        (None, Some(e)) => e.eval_number(&scope)?,
                        (None, None) => 0.0,
                    }
                };
                if give {
                    w.rewards.push(RewardItem {
                        source: node.id.clone(),
                        kind: "reward".into(),
                        value: amount,
                        message: None,
                        rationale: None,
                        skipped: false,
                    });
                }
                outs.insert("reward".into(), json!(amount));
                Next::Port("out")
            }
            NodeKind::Overseer { weight, .. } => {
                let ask = match expr("when") {
                    Some(e) => e.eval_bool(&scope)?,
                    None => true,
                };
                if ask {
                    let subject = match inputs.get("subject") {
                        Some(v) => as_text(v),
                        None => w.action.json().get("text").and_then(Value::as_str).unwrap_or_default().to_string(),
                    };
                    let rubric = Self::render(gym, node, "rubric", &scope)?;
                    let task = self.episode.as_ref().map(|e| e.task_json.json().clone()).unwrap_or(Value::Null);
                    let mut item = RewardItem {
                        source: node.id.clone(),
                        kind: "overseer".into(),
                        value: 0.0,
                        message: None,
                        rationale: None,
                        skipped: false,
                    };
                    match &self.cfg.overseer {
                        None => {
                            item.skipped = true;
                            item.message = Some("no overseer configured".into());
                        }
                        Some(p) => match p.judge(&JudgeRequest { rubric, subject, task }) {
                            Ok(j) => {
                                item.value = weight * j.score;
                                item.rationale = Some(j.rationale.clone());
                                item.message = Some(p.name());
                                outs.insert("score".into(), json!(j.score));
                                outs.insert("rationale".into(), Value::String(j.rationale));
                            }
                            Err(e) => {
                                tracing::warn!(node = %node.id, error = %e, "overseer failed; scoring 0");
                                item.skipped = true;
                                item.message = Some(e.to_string());
                            }
                        },
                    }
                    w.rewards.push(item);
                }
                Next::Port("out")
            }
            NodeKind::ReturnReset { .. } => {
                Next::Done { observation: self.observation(gym, node, &inputs, &scope)?, terminated: false }
            }
            NodeKind::ReturnStep { .. } => {
                let observation = self.observation(gym, node, &inputs, &scope)?;
                let terminated = match (inputs.get("terminated"), expr("terminated")) {
                    (Some(v), _) => v.as_bool().ok_or("`terminated` input is not a bool")?,
                    (None, Some(e)) => e.eval_bool(&scope)?,
                    (None, None) => false,
                };
                Next::Done { observation, terminated }
            }
            other => return Err(format!("{} nodes do not run on flow", other.name())),
        };
        w.outputs.insert(idx, outs.into_iter().map(|(k, v)| (k, Shared::new(v))).collect());
        Ok(next)
    }

    fn observation(&self, gym: &Gym, node: &NodeRt, inputs: &Inputs, scope: &Scope) -> Result<String, String> {
        match inputs.get("observation") {
            Some(v) => Ok(as_text(v)),
            None => Self::render(gym, node, "observation", scope),
        }
    }

    fn guard<'a>(&'a self, gym: &'a Gym) -> NetGuard<'a> {
        NetGuard {
            declared: &gym.spec().network.allowed_hosts,
            policy: &self.cfg.network,
            timeout: self.cfg.net_timeout.unwrap_or(Duration::from_secs(10)),
        }
    }
}

/// A number drawn from the episode seed for one purpose: the first 8 bytes (little endian)
/// of SHA-256(`"440hz:<purpose>:<seed>"`). Simple to reproduce in any language, which keeps
/// every face of a gym on the same trajectory.
pub fn seed_draw(seed: u64, purpose: &str) -> u64 {
    let digest = Sha256::digest(format!("440hz:{purpose}:{seed}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// Sum of reward items from +0.0 (an empty step is worth 0, not -0).
fn total(items: &[RewardItem]) -> f64 {
    items.iter().fold(0.0, |acc, r| acc + r.value)
}

/// A node's wired inputs, shared with the nodes that produced them.
struct Inputs(Vec<(String, Arc<Shared>)>);

impl Inputs {
    fn get(&self, port: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == port).map(|(_, v)| v.json())
    }
}

/// A value as text: strings as they are, everything else as compact JSON.
pub fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
