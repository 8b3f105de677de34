//! LoRA adapters in PEFT layout: `adapter_config.json` + `adapter_model.safetensors` with the
//! key names Hugging Face PEFT writes, so an adapter trained here loads in PEFT and back; and
//! [`merge_into`], which bakes an adapter into a base model's safetensors.

mod adapter;
mod io;
mod merge;

/// Whole-or-nothing file writes (also used for training checkpoints).
pub mod fsio {
    pub use crate::io::{sync_dir, temp_sibling, write_atomic};
}

pub use adapter::{peft_key, Which, KEY_PREFIX};
pub use merge::{merge_into, merge_into_with, MergeReport, Progress, INDEX_FILE};

use candle_core::Tensor;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The adapter's file of settings, as PEFT names it.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The adapter's weights, as PEFT names them.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// LoRA hyper-parameters (PEFT's `LoraConfig`, the part that changes the math).
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank: A is `[r, in_features]`, B is `[out_features, r]`.
    pub r: usize,
    /// `lora_alpha`.
    pub alpha: f64,
    /// `lora_dropout` (training only; no effect on merge).
    pub dropout: f64,
    /// Module names (last path component), e.g. `["q_proj", "v_proj"]`.
    pub target_modules: Vec<String>,
    /// Rank-stabilised scaling: alpha/sqrt(r) instead of alpha/r.
    pub use_rslora: bool,
}

impl LoraConfig {
    /// A config with PEFT's defaults for what is not given (no dropout, plain scaling).
    pub fn new(r: usize, alpha: f64, target_modules: &[&str]) -> Self {
        Self {
            r,
            alpha,
            dropout: 0.0,
            target_modules: target_modules.iter().map(|s| s.to_string()).collect(),
            use_rslora: false,
        }
    }

    /// The factor on B·A: alpha/r, or alpha/sqrt(r) with rsLoRA (PEFT's `scaling`).
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// Whether a module path (`model.layers.0.self_attn.q_proj`) is targeted: PEFT's rule
    /// for a list, the path equals an entry or ends with `.entry`.
    pub fn targets(&self, module_path: &str) -> bool {
        self.target_modules.iter().any(|t| {
            module_path == t
                || (module_path.len() > t.len()
                    && module_path.ends_with(t.as_str())
                    && module_path.as_bytes()[module_path.len() - t.len() - 1] == b'.')
        })
    }
}

/// One adapted linear layer: the update is `scale · B · A`.
#[derive(Clone, Debug)]
pub struct LoraPair {
    /// `lora_A`, `[r, in_features]`.
    pub a: Tensor,
    /// `lora_B`, `[out_features, r]`.
    pub b: Tensor,
}

/// A LoRA adapter: settings, the base it was trained on, and one pair per adapted module.
#[derive(Clone, Debug)]
pub struct Adapter {
    pub config: LoraConfig,
    /// `base_model_name_or_path`.
    pub base_model: String,
    /// Keyed by module path in Hugging Face naming, e.g. `model.layers.0.self_attn.q_proj`.
    pub modules: BTreeMap<String, LoraPair>,
    /// Other `adapter_config.json` keys as read (`task_type`, `peft_version`, ...), written
    /// back on save so a round trip keeps them.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Adapter {
    /// An adapter with no extra config keys (save writes PEFT's defaults for them).
    pub fn new(config: LoraConfig, base_model: impl Into<String>, modules: BTreeMap<String, LoraPair>) -> Self {
        Self { config, base_model: base_model.into(), modules, extra: serde_json::Map::new() }
    }
}

/// Why an adapter or a model folder could not be read, written or merged. Each names the
/// file, and the key or tensor where there is one.
#[derive(Debug, thiserror::Error)]
pub enum PeftError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The file is not what PEFT or safetensors writes (bad JSON, bad header, ...).
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    /// A config value this crate does not handle (another peft_type, DoRA, ...).
    #[error("{}: `{key}`: {reason}", path.display())]
    Unsupported { path: PathBuf, key: String, reason: String },
    /// A tensor is missing, extra, of the wrong shape or dtype.
    #[error("{}: `{key}`: {reason}", path.display())]
    Tensor { path: PathBuf, key: String, reason: String },
    /// The output folder is already there (merge never overwrites).
    #[error("{}: already exists", path.display())]
    Exists { path: PathBuf },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = PeftError> = std::result::Result<T, E>;
