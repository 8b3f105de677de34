//! The shapes the shell's commands answer with (mirrors `hz-studio`; lenient, so an added
//! field on the Rust side does not break an older UI).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PortDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KindInfo {
    pub kind: String,
    pub category: String,
    pub title: String,
    pub description: String,
    pub defaults: Value,
    pub inputs: Vec<PortDef>,
    pub outputs: Vec<PortDef>,
    pub schema: Value,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Catalog {
    pub kinds: Vec<KindInfo>,
    pub compat: Vec<(String, String)>,
    pub spec_schema: Value,
}

impl Catalog {
    pub fn kind(&self, kind: &str) -> Option<&KindInfo> {
        self.kinds.iter().find(|k| k.kind == kind)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DiagnosticView {
    pub severity: String,
    pub node: Option<String>,
    pub field: String,
    pub message: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NodePorts {
    pub inputs: Vec<PortDef>,
    pub outputs: Vec<PortDef>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Analysis {
    pub ok: bool,
    pub gym_id: Option<String>,
    pub name: Option<String>,
    pub diagnostics: Vec<DiagnosticView>,
    pub ports: BTreeMap<String, NodePorts>,
    pub python: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OpenedGym {
    pub path: String,
    pub text: String,
    pub analysis: Analysis,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TemplateInfo {
    pub name: String,
    pub title: String,
    pub description: String,
    pub node_count: usize,
    pub task_count: usize,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedGym {
    pub path: String,
    pub name: String,
    pub gym_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RewardView {
    pub source: String,
    pub kind: String,
    pub value: f64,
    pub message: Option<String>,
    pub rationale: Option<String>,
    pub skipped: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PlayView {
    pub observation: String,
    pub reward: f64,
    pub rewards: Vec<RewardView>,
    pub terminated: bool,
    pub truncated: bool,
    pub step: u32,
    pub max_steps: u32,
    pub task_id: String,
    pub violations: Vec<String>,
    pub invalid_action: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionInfo {
    pub seq: i64,
    pub rev: String,
    pub id: String,
    pub short_id: String,
    pub message: String,
    pub time: String,
    pub gym_id: String,
    pub head: bool,
    pub current: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CommitView {
    pub committed: bool,
    pub version: VersionInfo,
    pub saved: SavedGym,
    pub errors: usize,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DiffView {
    pub empty: bool,
    pub lines: Vec<String>,
}
