//! 440hz gym engine: the gym spec (`*.gym.json`), its validator, and the deterministic
//! runtime behind every face of a gym (in-process for training, HTTP, Python, OCI).
//!
//! A gym is data, not code: expressions are CEL and templates are Jinja, both side-effect
//! free and bounded. This crate must not know about chains, storage backends or windows,
//! and must never let a gym reach the host (files, network) beyond what the operator allows.

pub mod action;
pub mod bundle;
pub mod check;
pub mod expr;
pub mod graph;
pub mod net;
pub mod overseer;
pub mod policy;
pub mod ports;
pub mod runtime;
pub mod spec;
pub mod sql;
pub mod vfs;

pub use bundle::GymBundle;
pub use graph::{compile, validate, CompiledGym, Diagnostic, Severity};
pub use runtime::{Env, Gym, ResetOptions, RewardItem, RuntimeConfig, StepResult};
pub use spec::{json_schema, GymSpec, SPEC_VERSION};

/// Everything that can go wrong loading or running a gym.
#[derive(Debug, thiserror::Error)]
pub enum GymError {
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("invalid gym spec at {path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("this file has spec_version {found}; this runtime supports {supported} (and migrates older versions). Upgrade 440hz to open it.")]
    UnsupportedVersion { found: u64, supported: u32 },
    #[error("fixture `{name}`: {reason}")]
    Fixture { name: String, reason: String },
    #[error("the gym has {} problem(s):\n{}", .0.iter().filter(|d| d.severity == Severity::Error).count(), .0.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
    #[error("node `{node}` failed: {reason}")]
    Eval { node: String, reason: String },
    #[error("limit reached: {0}")]
    Limit(String),
    #[error("call reset() before step()")]
    NotReset,
    #[error("the episode is over (terminated or truncated); call reset()")]
    EpisodeOver,
    #[error("no task {0:?} in this gym")]
    UnknownTask(String),
}
