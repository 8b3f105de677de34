//! One configuration for the three decoder families, read from a Hugging Face `config.json`.
//! The families differ in a handful of switches (norm offset, extra norms, biases, activation,
//! embedding scale, sliding windows), so one decoder with flags beats three copies.

use crate::LlmError;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Llama,
    Qwen2,
    Gemma3,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Gemma3 => "gemma3",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`).
    GeluTanh,
}

/// How rotary embeddings pair the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// First half with second half (Hugging Face `rotate_half`).
    Half,
    /// Adjacent pairs (GGUF Llama, whose Q/K rows are permuted for it).
    Interleaved,
}

/// Llama 3.x frequency scaling (`rope_scaling.rope_type == "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Rope {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// Gemma 3's sliding-window layers use their own base.
    pub rope_local_theta: Option<f64>,
    pub rope_scaling: Option<Llama3Rope>,
    /// Per-frequency divisors (GGUF's `rope_freqs` tensor: Llama 3 scaling precomputed).
    pub rope_freq_factors: Option<Vec<f64>>,
    pub rope_style: RopeStyle,
    /// Per layer: `Some(window)` for a sliding-window layer.
    pub layer_windows: Vec<Option<usize>>,
    pub attention_bias: bool,
    pub tie_word_embeddings: bool,
    pub activation: Activation,
    /// Attention scores are scaled by `1/sqrt(query_pre_attn_scalar)`.
    pub query_pre_attn_scalar: f64,
    pub attn_logit_softcapping: Option<f64>,
    pub final_logit_softcapping: Option<f64>,
    pub max_position_embeddings: usize,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    /// Norm weights are stored as `w` (Llama, Qwen2) or `w - 1` (Gemma).
    pub fn norm_offset(&self) -> f64 {
        match self.family {
            Family::Gemma3 => 1.0,
            _ => 0.0,
        }
    }

    /// Gemma scales embeddings by `sqrt(hidden_size)`.
    pub fn embed_scale(&self) -> Option<f64> {
        match self.family {
            Family::Gemma3 => Some((self.hidden_size as f64).sqrt()),
            _ => None,
        }
    }

    pub fn has_qk_norm(&self) -> bool {
        self.family == Family::Gemma3
    }

    /// Gemma 3 has a norm after attention and around the MLP as well.
    pub fn has_sandwich_norms(&self) -> bool {
        self.family == Family::Gemma3
    }

    /// Read a Hugging Face `config.json` (text models; Gemma 3's multimodal config is read
    /// through its `text_config`).
    pub fn from_hf_json(v: &Value) -> Result<Self, LlmError> {
        let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("");
        let (family, v) = match model_type {
            "llama" => (Family::Llama, v),
            "qwen2" => (Family::Qwen2, v),
            "gemma3_text" => (Family::Gemma3, v),
            "gemma3" => (
                Family::Gemma3,
                v.get("text_config").ok_or_else(|| cfg_err("text_config", "gemma3 config without text_config"))?,
            ),
            other => {
                return Err(cfg_err(
                    "model_type",
                    &format!("{other:?} is not supported (llama, qwen2, gemma3_text, gemma3)"),
                ))
            }
        };
        let get_usize = |k: &str| -> Result<usize, LlmError> {
            v.get(k)
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| cfg_err(k, "missing or not a non-negative integer"))
        };
        let opt_f64 = |k: &str| v.get(k).and_then(Value::as_f64);
        let hidden_size = get_usize("hidden_size")?;
        let num_heads = get_usize("num_attention_heads")?;
        let num_layers = get_usize("num_hidden_layers")?;
        let num_kv_heads =
            v.get("num_key_value_heads").and_then(Value::as_u64).map(|x| x as usize).unwrap_or(num_heads);
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(cfg_err(
                "num_key_value_heads",
                &format!("{num_kv_heads} must divide num_attention_heads {num_heads}"),
            ));
        }
        let head_dim = match v.get("head_dim").and_then(Value::as_u64) {
            Some(h) => h as usize,
            None => {
                if hidden_size % num_heads != 0 {
                    return Err(cfg_err("hidden_size", "not divisible by num_attention_heads and no head_dim"));
                }
                hidden_size / num_heads
            }
        };
        if head_dim % 2 != 0 {
            return Err(cfg_err("head_dim", &format!("{head_dim} must be even for rotary embeddings")));
        }
        let activation = match v.get("hidden_act").or_else(|| v.get("hidden_activation")).and_then(Value::as_str) {
            None | Some("silu") | Some("swish") => Activation::Silu,
            Some("gelu_pytorch_tanh") | Some("gelu_tanh") | Some("gelu") => Activation::GeluTanh,
            Some(other) => return Err(cfg_err("hidden_act", &format!("{other:?} is not supported"))),
        };
        let rope_scaling = match v.get("rope_scaling") {
            Some(Value::Object(m)) => {
                let kind = m.get("rope_type").or_else(|| m.get("type")).and_then(Value::as_str).unwrap_or("");
                match kind {
                    "llama3" => {
                        let f = |k: &str| {
                            m.get(k)
                                .and_then(Value::as_f64)
                                .ok_or_else(|| cfg_err(&format!("rope_scaling.{k}"), "missing"))
                        };
                        Some(Llama3Rope {
                            factor: f("factor")?,
                            low_freq_factor: f("low_freq_factor")?,
                            high_freq_factor: f("high_freq_factor")?,
                            original_max_position_embeddings: f("original_max_position_embeddings")?,
                        })
                    }
                    // Linear scaling at factor 1 and "default" change nothing.
                    "default" | "" => None,
                    "linear" if m.get("factor").and_then(Value::as_f64) == Some(1.0) => None,
                    other => return Err(cfg_err("rope_scaling", &format!("rope type {other:?} is not supported"))),
                }
            }
            _ => None,
        };
        let max_position_embeddings = v.get("max_position_embeddings").and_then(Value::as_u64).unwrap_or(4096) as usize;
        let layer_windows = match family {
            Family::Gemma3 => {
                let window = v.get("sliding_window").and_then(Value::as_u64).unwrap_or(4096) as usize;
                if let Some(types) = v.get("layer_types").and_then(Value::as_array) {
                    if types.len() != num_layers {
                        return Err(cfg_err("layer_types", "length differs from num_hidden_layers"));
                    }
                    types.iter().map(|t| (t.as_str() == Some("sliding_attention")).then_some(window)).collect()
                } else {
                    let pattern = v.get("sliding_window_pattern").and_then(Value::as_u64).unwrap_or(6) as usize;
                    (0..num_layers).map(|i| (pattern == 0 || (i + 1) % pattern > 0).then_some(window)).collect()
                }
            }
            Family::Qwen2 => {
                let on = v.get("use_sliding_window").and_then(Value::as_bool).unwrap_or(false);
                let window = v.get("sliding_window").and_then(Value::as_u64).map(|w| w as usize);
                let max_window_layers = v.get("max_window_layers").and_then(Value::as_u64).unwrap_or(0) as usize;
                (0..num_layers).map(|i| if on && i >= max_window_layers { window } else { None }).collect()
            }
            Family::Llama => vec![None; num_layers],
        };
        let token_ids = |k: &str| -> Vec<u32> {
            match v.get(k) {
                Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).map(|x| x as u32).collect(),
                _ => Vec::new(),
            }
        };
        let cfg = ModelConfig {
            family,
            vocab_size: get_usize("vocab_size")?,
            hidden_size,
            intermediate_size: get_usize("intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: opt_f64("rms_norm_eps").unwrap_or(1e-6),
            rope_theta: opt_f64("rope_theta").unwrap_or(match family {
                Family::Gemma3 => 1_000_000.0,
                _ => 10_000.0,
            }),
            rope_local_theta: match family {
                Family::Gemma3 => Some(opt_f64("rope_local_base_freq").unwrap_or(10_000.0)),
                _ => None,
            },
            rope_scaling,
            rope_freq_factors: None,
            rope_style: RopeStyle::Half,
            layer_windows,
            attention_bias: v.get("attention_bias").and_then(Value::as_bool).unwrap_or(family == Family::Qwen2),
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(family == Family::Gemma3),
            activation,
            query_pre_attn_scalar: opt_f64("query_pre_attn_scalar").unwrap_or(head_dim as f64),
            attn_logit_softcapping: opt_f64("attn_logit_softcapping"),
            final_logit_softcapping: opt_f64("final_logit_softcapping"),
            max_position_embeddings,
            bos_token_id: token_ids("bos_token_id").first().copied(),
            eos_token_ids: token_ids("eos_token_id"),
        };
        Ok(cfg)
    }

    /// Rotary inverse frequencies for one layer.
    pub fn inv_freq(&self, layer: usize) -> Vec<f64> {
        let base = match (self.layer_windows.get(layer).copied().flatten(), self.rope_local_theta) {
            (Some(_), Some(local)) => local,
            _ => self.rope_theta,
        };
        let d = self.head_dim;
        let mut freqs: Vec<f64> = (0..d / 2).map(|i| 1.0 / base.powf((2 * i) as f64 / d as f64)).collect();
        if let Some(s) = self.rope_scaling {
            let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
            let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
            for f in freqs.iter_mut() {
                let wavelen = 2.0 * std::f64::consts::PI / *f;
                *f = if wavelen < high_wavelen {
                    *f
                } else if wavelen > low_wavelen {
                    *f / s.factor
                } else {
                    let smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    (1.0 - smooth) * *f / s.factor + smooth * *f
                };
            }
        }
        if let Some(factors) = &self.rope_freq_factors {
            for (f, d) in freqs.iter_mut().zip(factors) {
                *f /= d;
            }
        }
        freqs
    }
}

fn cfg_err(field: &str, reason: &str) -> LlmError {
    LlmError::Config { field: field.to_string(), reason: reason.to_string() }
}
