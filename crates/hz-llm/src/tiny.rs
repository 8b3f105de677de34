//! Small models the project makes itself, written in Hugging Face layout (`config.json`,
//! `model.safetensors`, `tokenizer.json`): for tests, benchmarks and the offline demo. No
//! model is ever downloaded.

use crate::config::Family;
use crate::LlmError;
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

mod gguf;
pub use gguf::{write_gguf, GgufOptions};

/// The shape of a small model.
#[derive(Debug, Clone)]
pub struct TinySpec {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub tie_word_embeddings: bool,
    /// Standard deviation of the random weights.
    pub init_std: f64,
}

impl TinySpec {
    pub fn new(family: Family, vocab_size: usize) -> Self {
        Self {
            family,
            vocab_size,
            hidden_size: 64,
            intermediate_size: 128,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 16,
            tie_word_embeddings: family != Family::Llama,
            init_std: 0.08,
        }
    }

    /// `config.json` readable by Hugging Face transformers and by candle-transformers' own
    /// config structs for the family.
    pub fn config_json(&self, bos: u32, eos: u32) -> serde_json::Value {
        let common = json!({
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 2048,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "torch_dtype": "float32",
        });
        let extra = match self.family {
            Family::Llama => json!({
                "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu",
                "rope_theta": 10000.0, "attention_bias": false,
            }),
            Family::Qwen2 => json!({
                "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_act": "silu",
                "rope_theta": 1000000.0, "sliding_window": 4096, "max_window_layers": self.num_layers,
                "use_sliding_window": false,
            }),
            Family::Gemma3 => json!({
                "model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"],
                "hidden_activation": "gelu_pytorch_tanh", "attention_bias": false,
                "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
                "query_pre_attn_scalar": self.head_dim, "sliding_window": 512,
                "sliding_window_pattern": 2, "final_logit_softcapping": null,
                "attn_logit_softcapping": null,
            }),
        };
        let mut v = common;
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                m.insert(k.clone(), x.clone());
            }
        }
        v
    }

    /// Random weights in Hugging Face naming.
    pub fn random_weights(&self, seed: u64) -> Result<HashMap<String, Tensor>, LlmError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dev = Device::Cpu;
        let normal = Normal::new(0.0f32, self.init_std as f32)
            .map_err(|e| LlmError::Input(format!("init_std {}: {e}", self.init_std)))?;
        let mut w = HashMap::new();
        let mut put = |name: String, dims: &[usize], mean: f32, rng: &mut ChaCha8Rng| -> Result<(), LlmError> {
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n).map(|_| mean + normal.sample(rng)).collect();
            w.insert(name, Tensor::from_vec(v, dims, &dev)?);
            Ok(())
        };
        let (h, i, q, kv) = (
            self.hidden_size,
            self.intermediate_size,
            self.num_heads * self.head_dim,
            self.num_kv_heads * self.head_dim,
        );
        // Norm weights are near 1 (stored as w - 1 for Gemma).
        let norm_mean = if self.family == Family::Gemma3 { 0.0 } else { 1.0 };
        put("model.embed_tokens.weight".into(), &[self.vocab_size, h], 0.0, &mut rng)?;
        for l in 0..self.num_layers {
            let p = format!("model.layers.{l}");
            put(format!("{p}.self_attn.q_proj.weight"), &[q, h], 0.0, &mut rng)?;
            put(format!("{p}.self_attn.k_proj.weight"), &[kv, h], 0.0, &mut rng)?;
            put(format!("{p}.self_attn.v_proj.weight"), &[kv, h], 0.0, &mut rng)?;
            put(format!("{p}.self_attn.o_proj.weight"), &[h, q], 0.0, &mut rng)?;
            if self.family == Family::Qwen2 {
                put(format!("{p}.self_attn.q_proj.bias"), &[q], 0.0, &mut rng)?;
                put(format!("{p}.self_attn.k_proj.bias"), &[kv], 0.0, &mut rng)?;
                put(format!("{p}.self_attn.v_proj.bias"), &[kv], 0.0, &mut rng)?;
            }
            put(format!("{p}.mlp.gate_proj.weight"), &[i, h], 0.0, &mut rng)?;
            put(format!("{p}.mlp.up_proj.weight"), &[i, h], 0.0, &mut rng)?;
            put(format!("{p}.mlp.down_proj.weight"), &[h, i], 0.0, &mut rng)?;
            put(format!("{p}.input_layernorm.weight"), &[h], norm_mean, &mut rng)?;
            put(format!("{p}.post_attention_layernorm.weight"), &[h], norm_mean, &mut rng)?;
            if self.family == Family::Gemma3 {
                put(format!("{p}.pre_feedforward_layernorm.weight"), &[h], norm_mean, &mut rng)?;
                put(format!("{p}.post_feedforward_layernorm.weight"), &[h], norm_mean, &mut rng)?;
                put(format!("{p}.self_attn.q_norm.weight"), &[self.head_dim], norm_mean, &mut rng)?;
                put(format!("{p}.self_attn.k_norm.weight"), &[self.head_dim], norm_mean, &mut rng)?;
            }
        }
        put("model.norm.weight".into(), &[h], norm_mean, &mut rng)?;
        if !self.tie_word_embeddings {
            put("lm_head.weight".into(), &[self.vocab_size, h], 0.0, &mut rng)?;
        }
        Ok(w)
    }
}

/// Special tokens every tiny tokenizer has, in id order from 0.
pub const SPECIALS: [&str; 5] = ["<|pad|>", "<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>"];

/// A byte-level BPE tokenizer trained on `corpus` (any text encodes: the 256 bytes are in the
/// alphabet), with [`SPECIALS`] as ids 0.. .
pub fn train_tokenizer(corpus: &[String], vocab_size: usize) -> Result<Tokenizer, LlmError> {
    let tok_err = |e: tokenizers::Error| LlmError::Tokenizer(e.to_string());
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    let specials: Vec<AddedToken> = SPECIALS.iter().map(|s| AddedToken::from(s.to_string(), true)).collect();
    let mut trainer: tokenizers::models::TrainerWrapper = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(2)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tokenizer.train(&mut trainer, corpus.iter()).map_err(tok_err)?;
    Ok(tokenizer)
}

/// Write a random model of `spec` with `tokenizer` into `dir` (created). The vocabulary size
/// is taken from the tokenizer.
pub fn write_model(dir: &Path, spec: &TinySpec, tokenizer: &Tokenizer, seed: u64) -> Result<TinySpec, LlmError> {
    let io = |e: std::io::Error| LlmError::File { path: dir.display().to_string(), reason: e.to_string() };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut spec = spec.clone();
    spec.vocab_size = tokenizer.get_vocab_size(true);
    let id = |s: &str| tokenizer.token_to_id(s).unwrap_or(0);
    let (bos, eos) = (id("<|bos|>"), id("<|im_end|>"));
    let cfg = spec.config_json(bos, eos);
    let text = serde_json::to_string_pretty(&cfg).map_err(|e| LlmError::Input(e.to_string()))?;
    std::fs::write(dir.join("config.json"), text).map_err(io)?;
    let weights = spec.random_weights(seed)?;
    candle_core::safetensors::save(&weights, dir.join("model.safetensors"))?;
    tokenizer
        .save(dir.join("tokenizer.json"), false)
        .map_err(|e| LlmError::Tokenizer(format!("saving tokenizer.json: {e}")))?;
    let tcfg = json!({
        "bos_token": "<|bos|>", "eos_token": "<|im_end|>", "pad_token": "<|pad|>",
        "model_max_length": 2048, "tokenizer_class": "PreTrainedTokenizerFast",
    });
    std::fs::write(dir.join("tokenizer_config.json"), tcfg.to_string()).map_err(io)?;
    Ok(spec)
}

/// Cast every tensor of a weight map (used to write bf16 checkpoints in tests).
pub fn cast_all(w: &HashMap<String, Tensor>, dtype: DType) -> Result<HashMap<String, Tensor>, LlmError> {
    w.iter().map(|(k, t)| Ok((k.clone(), t.to_dtype(dtype)?))).collect()
}
