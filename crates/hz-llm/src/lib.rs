//! Local LLMs for training on a provider node: Llama, Qwen2 and Gemma 3 decoders loaded from a
//! Hugging Face folder or GGUF, LoRA on chosen projections with gradients that really flow,
//! and batched KV-cache generation.

pub mod attention;
pub mod config;
pub mod fused;
pub mod generate;
pub mod gguf;
pub mod load;
pub mod matmul;
pub mod model;
pub mod ops;
pub mod tiny;

pub use config::{Activation, Family, ModelConfig, RopeStyle};
pub use load::{load_hf, HfModel};
pub use model::{token_logprobs, Fwd, Input, KvCache, LoraConfig, Model};

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("config.json: `{field}`: {reason}")]
    Config { field: String, reason: String },
    #[error("weights: `{name}`: {reason}")]
    Weights { name: String, reason: String },
    #[error("GGUF metadata: `{key}`: {reason}")]
    Gguf { key: String, reason: String },
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("LoRA: {0}")]
    Lora(String),
    #[error("input: {0}")]
    Input(String),
    #[error(transparent)]
    Peft(#[from] hz_peft::PeftError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
