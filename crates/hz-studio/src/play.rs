//! Play-testing a gym by hand: one episode at a time over the same runtime that trains on
//! it, with the rewards itemised as the agent would receive them.

use hz_gym::{RewardItem, StepResult};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One reward term of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardView {
    /// Node id, or `invalid_action`.
    pub source: String,
    /// `reward`, `constraint`, `overseer` or `invalid_action`.
    pub kind: String,
    pub value: f64,
    /// Constraint message, or why an action was invalid.
    pub message: Option<String>,
    /// The overseer's rationale.
    pub rationale: Option<String>,
    /// The overseer was not asked (none configured); `value` is 0.
    pub skipped: bool,
}

impl From<RewardItem> for RewardView {
    fn from(r: RewardItem) -> Self {
        Self {
            source: r.source,
            kind: r.kind,
            value: r.value,
            message: r.message,
            rationale: r.rationale,
            skipped: r.skipped,
        }
    }
}

/// What the play-test pane shows after a reset or a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayView {
    pub observation: String,
    /// Sum of `rewards` (0 at reset).
    pub reward: f64,
    pub rewards: Vec<RewardView>,
    pub terminated: bool,
    pub truncated: bool,
    /// 0 at reset, 1 after the first step.
    pub step: u32,
    pub max_steps: u32,
    pub task_id: String,
    pub gym_id: String,
    /// Messages of constraints violated in this step.
    pub violations: Vec<String>,
    /// Why the action was refused before reaching the graph, if it was.
    pub invalid_action: Option<String>,
    /// The runtime's `info` as the agent gets it.
    pub info: Value,
}

impl PlayView {
    pub(crate) fn reset(observation: String, info: Value, gym_id: String, max_steps: u32) -> Self {
        Self {
            observation,
            reward: 0.0,
            rewards: Vec::new(),
            terminated: false,
            truncated: false,
            step: 0,
            max_steps,
            task_id: info.get("task_id").and_then(Value::as_str).unwrap_or_default().to_string(),
            gym_id,
            violations: Vec::new(),
            invalid_action: None,
            info,
        }
    }

    pub(crate) fn step(r: StepResult, gym_id: String, max_steps: u32) -> Self {
        let rewards = r
            .info
            .get("rewards")
            .cloned()
            .and_then(|v| serde_json::from_value::<Vec<RewardItem>>(v).ok())
            .unwrap_or_default()
            .into_iter()
            .map(RewardView::from)
            .collect();
        let violations = r
            .info
            .get("violations")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        Self {
            observation: r.observation,
            reward: r.reward,
            rewards,
            terminated: r.terminated,
            truncated: r.truncated,
            step: r.info.get("step").and_then(Value::as_u64).and_then(|s| u32::try_from(s).ok()).unwrap_or(0),
            max_steps,
            task_id: r.info.get("task_id").and_then(Value::as_str).unwrap_or_default().to_string(),
            gym_id,
            violations,
            invalid_action: r.info.get("invalid_action").and_then(Value::as_str).map(str::to_string),
            info: r.info,
        }
    }
}
