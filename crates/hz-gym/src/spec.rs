//! The gym spec: a typed node graph plus task set and fixtures, saved as `*.gym.json`.
//!
//! The JSON Schema the editor and the AI chat use is generated from these types
//! ([`json_schema`]), so the types are the single source of truth.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The spec version this runtime reads and writes. Older files are migrated on load.
pub const SPEC_VERSION: u32 = 1;

/// A gym: what the agent sees and can do, and how its actions are rewarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GymSpec {
    /// Version of this file format. Always present; see [`SPEC_VERSION`].
    pub spec_version: u32,
    /// Machine name: lowercase letters, digits and dashes (`sql-analyst`).
    pub name: String,
    /// Version of this gym (a positive integer, as in Gymnasium ids `440hz/name-v3`).
    #[serde(default = "one")]
    pub version: u32,
    /// Human title shown in the library.
    #[serde(default)]
    pub title: String,
    /// What the gym trains, for people browsing the library.
    #[serde(default)]
    pub description: String,
    /// Episodes are truncated after this many steps.
    pub max_steps: u32,
    /// Reward given (usually negative) when the agent's action cannot be parsed or does
    /// not match the action space.
    #[serde(default = "default_invalid_penalty")]
    pub invalid_action_penalty: f64,
    /// Bounds that keep every step cheap and finite.
    #[serde(default)]
    pub limits: Limits,
    /// Network hosts the gym's HTTP and MCP nodes may call. Empty: no network.
    #[serde(default)]
    pub network: NetworkDecl,
    /// Typed state variables, reset at the start of each episode.
    #[serde(default)]
    pub variables: Vec<VariableDecl>,
    /// Task instances; `reset(seed)` samples one with the episode's seeded generator.
    pub tasks: Vec<TaskInstance>,
    /// Named fixtures: SQL seed scripts, documents, files for the mock CLI.
    #[serde(default)]
    pub fixtures: BTreeMap<String, Fixture>,
    /// The graph's nodes.
    pub nodes: Vec<Node>,
    /// Wires between node ports.
    #[serde(default)]
    pub edges: Vec<Edge>,
    /// Groups and sticky notes on the canvas (editor only; no effect on behaviour).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<Annotation>,
}

fn one() -> u32 {
    1
}

fn default_invalid_penalty() -> f64 {
    -0.1
}

/// Per-step bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most node evaluations in one reset or step.
    pub max_node_evals: u32,
    /// Most rows an SQL node returns; the rest are cut and flagged `truncated`.
    pub sql_max_rows: u32,
    /// SQLite virtual-machine instructions one statement may run (a deterministic time limit).
    pub sql_max_instructions: u64,
    /// Longest observation, in characters; longer ones are cut.
    pub max_observation_chars: u32,
    /// Longest accepted action, in bytes.
    pub max_action_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_node_evals: 256,
            sql_max_rows: 50,
            sql_max_instructions: 5_000_000,
            max_observation_chars: 16_000,
            max_action_bytes: 16_384,
        }
    }
}

/// Hosts the gym declares it needs. The node operator must also allow each one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkDecl {
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// A typed state variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    /// Identifier used as `state.<name>` in expressions and templates.
    pub name: String,
    #[serde(rename = "type")]
    pub ty: VarType,
    /// Value at reset; must match `type`.
    pub initial: Value,
    #[serde(default)]
    pub description: String,
}

/// Types of state variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VarType {
    Bool,
    Int,
    Float,
    String,
    List,
    Object,
}

impl VarType {
    /// Whether a JSON value is of this type.
    pub fn accepts(self, v: &Value) -> bool {
        match self {
            VarType::Bool => v.is_boolean(),
            VarType::Int => v.is_i64() || v.is_u64(),
            VarType::Float => v.is_number(),
            VarType::String => v.is_string(),
            VarType::List => v.is_array(),
            VarType::Object => v.is_object(),
        }
    }
}

/// One task instance: an id plus free-form fields (`question`, `expected`, ...) that
/// expressions and templates read as `task.<field>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskInstance {
    pub id: String,
    /// A reference solution: actions that solve the task. Never shown to the agent; used by
    /// `hz gym check` to prove the task is solvable and by tests as the scripted good policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub solution: Vec<Value>,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// A fixture: inline content or a file next to the gym (relative path, inside the gym's
/// folder). Files are read at load time and become part of the gym id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub kind: FixtureKind,
    /// Relative path of the file holding the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The content itself (text; for `files`, a JSON object of path → content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<Value>,
}

/// What a fixture holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FixtureKind {
    /// An SQL script that seeds a sandbox SQLite database.
    Sql,
    /// A text document (documentation, policy).
    Text,
    /// A JSON value.
    Json,
    /// A virtual file tree for the mock CLI: JSON object of path → file content.
    Files,
}

/// A node on the canvas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Node {
    /// Unique within the gym.
    pub id: String,
    /// Optional display label.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    /// Canvas position (editor only; no effect on behaviour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    #[serde(flatten)]
    pub kind: NodeKind,
}

/// A group (a titled frame that moves the nodes inside it) or a sticky note, for people
/// reading the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Annotation {
    /// Unique among the annotations.
    pub id: String,
    pub kind: AnnotationKind,
    /// A group's title or a note's text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// Top-left corner, in canvas coordinates.
    pub position: Position,
    pub size: Size,
    /// Its colour; absent: the kind's own (blue groups, yellow notes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<AnnotationColor>,
}

/// The colours an annotation can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnnotationColor {
    Grey,
    Blue,
    Green,
    Yellow,
    Red,
    Purple,
}

/// What an annotation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnnotationKind {
    Group,
    Note,
}

/// Width and height on the canvas.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Size {
    pub width: f64,
    pub height: f64,
}

/// Canvas coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Position {
    pub x: f64,
    pub y: f64,
}

/// Every node kind and its parameters. Expressions are CEL; templates are Jinja.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NodeKind {
    // --- triggers
    /// Entry point of `reset`.
    OnReset {},
    /// Entry point of `step`; its `action` port carries the parsed action.
    OnStep {},

    // --- config
    /// What the agent may send.
    ActionSpace {
        mode: ActionMode,
        /// Tools for `tool_call` mode (OpenAI function style).
        #[serde(default)]
        tools: Vec<ToolDef>,
    },
    /// What the agent receives.
    ObservationSpace {
        /// Longest observation in characters (also cut to `limits.max_observation_chars`).
        #[serde(default)]
        max_length: Option<u32>,
    },

    // --- context
    /// Documentation shown to the agent (a template).
    Documentation { text: String },
    /// The agent's persona / system prompt (a template).
    Persona { text: String },

    // --- state
    /// Read a state variable.
    GetState { variable: String },
    /// Write a state variable from the `value` input or, when not wired, from `expr`.
    SetState {
        variable: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expr: Option<String>,
    },

    // --- execution
    /// Run SQL against a sandbox SQLite database seeded from an `sql` fixture.
    SqlQuery {
        /// Name of the `sql` fixture that seeds the database.
        database: String,
        /// SQL template used when the `query` input is not wired. Never splice agent text
        /// into SQL here: bind it with `params`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
        /// CEL expression giving a list of values bound to `?1, ?2, ...`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        params: Option<String>,
        /// Refuse statements that write (the default).
        #[serde(default = "yes")]
        read_only: bool,
    },
    /// A scripted command line over a virtual file tree.
    MockCli {
        /// Name of the `files` fixture giving the initial tree (optional).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        files: Option<String>,
        /// Command template used when the `command` input is not wired.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<String>,
        /// Scripted responses, tried in order before the built-in commands.
        #[serde(default)]
        scripts: Vec<CliScript>,
    },
    /// An HTTP request to a host the gym declares and the operator allows.
    HttpRequest {
        #[serde(default = "get")]
        method: String,
        /// URL template.
        url: String,
        /// Body template (sent when the `body` input is not wired).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    /// Call a tool on an MCP server (streamable HTTP transport).
    McpCall {
        /// Endpoint URL (e.g. `http://127.0.0.1:7000/mcp`).
        endpoint: String,
        /// Tool name template.
        tool: String,
        /// CEL expression giving the tool's arguments when the `arguments` input is not wired.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arguments: Option<String>,
    },

    // --- routing
    /// Route the flow to the first case whose condition holds, else to `default`.
    Switch { cases: Vec<SwitchCase> },
    /// Pull a value out of JSON with a JSONPath (RFC 9535) query.
    Extract { path: String },
    /// Render a Jinja template to text.
    Template { template: String },

    // --- evaluation
    /// A rule that must hold; when it does not, add `penalty` and optionally end the episode.
    Constraint {
        /// CEL condition that must be true.
        condition: String,
        penalty: f64,
        #[serde(default)]
        terminate: bool,
        /// Shown to the agent when violated (a template).
        #[serde(default)]
        message: String,
    },
    /// A reward term: a fixed `value`, or a CEL `expr`, given when `when` holds.
    Reward {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expr: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        when: Option<String>,
    },
    /// Ask the AI overseer to score the `subject` against a rubric.
    Overseer {
        /// Rubric template given to the judge.
        rubric: String,
        /// The reward is `weight * score`, with score in `[0, 1]`.
        #[serde(default = "one_f")]
        weight: f64,
        /// CEL condition; the judge is only asked when it holds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        when: Option<String>,
    },

    // --- terminus
    /// End of `reset`: renders the first observation.
    ReturnReset {
        /// Observation template used when the `observation` input is not wired.
        #[serde(default)]
        observation: String,
    },
    /// End of `step`: renders the next observation and decides termination.
    ReturnStep {
        #[serde(default)]
        observation: String,
        /// CEL condition that ends the episode (success or failure).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        terminated: Option<String>,
    },
}

fn yes() -> bool {
    true
}

fn get() -> String {
    "GET".to_string()
}

fn one_f() -> f64 {
    1.0
}

/// How actions are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionMode {
    /// Free text.
    Text,
    /// An OpenAI-style tool call `{"name": ..., "arguments": {...}}`.
    ToolCall,
    /// Source code as text (the gym decides what to do with it).
    Code,
}

/// A tool the agent may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the arguments object.
    #[serde(default = "empty_object_schema")]
    pub parameters: Value,
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// One branch of a switch: flow leaves through the port named `name` when `when` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchCase {
    pub name: String,
    pub when: String,
}

/// A scripted mock-CLI response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CliScript {
    /// Regular expression matched against the whole command line.
    pub pattern: String,
    /// Output printed (a template; `match` holds the capture groups).
    pub output: String,
    #[serde(default)]
    pub exit_code: i32,
}

/// A wire from an output port to an input port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub from: PortRef,
    pub to: PortRef,
}

/// `node.port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortRef {
    pub node: String,
    pub port: String,
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.node, self.port)
    }
}

impl NodeKind {
    /// The snake_case name used in JSON (`sql_query`).
    pub fn name(&self) -> &'static str {
        match self {
            NodeKind::OnReset {} => "on_reset",
            NodeKind::OnStep {} => "on_step",
            NodeKind::ActionSpace { .. } => "action_space",
            NodeKind::ObservationSpace { .. } => "observation_space",
            NodeKind::Documentation { .. } => "documentation",
            NodeKind::Persona { .. } => "persona",
            NodeKind::GetState { .. } => "get_state",
            NodeKind::SetState { .. } => "set_state",
            NodeKind::SqlQuery { .. } => "sql_query",
            NodeKind::MockCli { .. } => "mock_cli",
            NodeKind::HttpRequest { .. } => "http_request",
            NodeKind::McpCall { .. } => "mcp_call",
            NodeKind::Switch { .. } => "switch",
            NodeKind::Extract { .. } => "extract",
            NodeKind::Template { .. } => "template",
            NodeKind::Constraint { .. } => "constraint",
            NodeKind::Reward { .. } => "reward",
            NodeKind::Overseer { .. } => "overseer",
            NodeKind::ReturnReset { .. } => "return_reset",
            NodeKind::ReturnStep { .. } => "return_step",
        }
    }
}

/// The JSON Schema of `*.gym.json`, generated from these types.
pub fn json_schema() -> Value {
    let schema = schemars::schema_for!(GymSpec);
    serde_json::to_value(schema).unwrap_or(Value::Null)
}

impl GymSpec {
    /// The title, or the name when there is none.
    pub fn title_or_name(&self) -> &str {
        if self.title.is_empty() {
            &self.name
        } else {
            &self.title
        }
    }
}
