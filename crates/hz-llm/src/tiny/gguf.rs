//! A tiny Hugging Face folder converted to GGUF the way llama.cpp's converter lays it out:
//! its tensor names, the Llama Q/K row permutation and Gemma's norms stored with +1 (by the
//! loader's own name mapping, `gguf::counterpart`), and a byte-level BPE vocabulary in the
//! metadata. Tests use it to get a quantized base
//! without downloading one.

use crate::config::Family;
use crate::LlmError;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::path::Path;

/// How [`write_gguf`] stores the model.
#[derive(Debug, Clone)]
pub struct GgufOptions {
    /// The type of 2-D matrices (projections and the embedding); vectors stay F32.
    pub matrices: GgmlDType,
    /// Store the matrices as F32 after a round trip through `matrices`: the weights a
    /// quantized file holds, as a dense base.
    pub dequantized: bool,
    pub chat_template: Option<String>,
    /// Metadata keys to leave out (to test what a loader says about incomplete files).
    pub drop: Vec<String>,
}

impl GgufOptions {
    pub fn new(matrices: GgmlDType) -> Self {
        Self { matrices, dequantized: false, chat_template: None, drop: Vec::new() }
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, LlmError> {
    let file = |reason: String| LlmError::File { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| file(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| file(e.to_string()))
}

fn config_u32(cfg: &serde_json::Value, key: &str) -> Result<u32, LlmError> {
    cfg[key]
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| LlmError::Config { field: key.into(), reason: "missing or not a small integer".into() })
}

fn config_f32(cfg: &serde_json::Value, key: &str) -> Result<f32, LlmError> {
    cfg[key]
        .as_f64()
        .map(|v| v as f32)
        .ok_or_else(|| LlmError::Config { field: key.into(), reason: "missing or not a number".into() })
}

/// llama.cpp's Llama Q/K layout: within each head, rows of the first and second half
/// interleave (GGUF row 2i + j is Hugging Face row j·d/2 + i).
fn permute_rows(t: &Tensor, heads: usize) -> Result<Tensor, LlmError> {
    let rows = t.dims()[0];
    let d = rows / heads.max(1);
    let order: Vec<u32> = (0..rows).map(|g| (g / d * d + (g % d % 2) * (d / 2) + (g % d) / 2) as u32).collect();
    Ok(t.index_select(&Tensor::from_vec(order, rows, &Device::Cpu)?, 0)?)
}

/// The vocabulary of `tokenizer.json` as llama.cpp stores a byte-level BPE tokenizer.
fn tokenizer_meta(tj: &serde_json::Value) -> Result<Vec<(String, Value)>, LlmError> {
    let bad = |what: &str| LlmError::Tokenizer(format!("tokenizer.json: {what}"));
    let mut vocab: Vec<(String, u32)> = tj["model"]["vocab"]
        .as_object()
        .ok_or_else(|| bad("no model.vocab object"))?
        .iter()
        .map(|(k, v)| v.as_u64().map(|i| (k.clone(), i as u32)).ok_or_else(|| bad(&format!("vocab entry {k:?}"))))
        .collect::<Result<_, _>>()?;
    vocab.sort_by_key(|(_, i)| *i);
    let specials: Vec<u32> = tj["added_tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["special"].as_bool() == Some(true))
        .filter_map(|t| t["id"].as_u64().map(|i| i as u32))
        .collect();
    let merges: Vec<Value> = tj["model"]["merges"]
        .as_array()
        .ok_or_else(|| bad("no model.merges array"))?
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Ok(Value::String(s.clone())),
            serde_json::Value::Array(p) => {
                match (p.first().and_then(|a| a.as_str()), p.get(1).and_then(|b| b.as_str())) {
                    (Some(a), Some(b)) => Ok(Value::String(format!("{a} {b}"))),
                    _ => Err(bad(&format!("merge {m}"))),
                }
            }
            other => Err(bad(&format!("merge {other}"))),
        })
        .collect::<Result<_, _>>()?;
    Ok(vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("default".into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(vocab.iter().map(|(t, _)| Value::String(t.clone())).collect())),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(vocab.iter().map(|(_, i)| Value::I32(if specials.contains(i) { 3 } else { 1 })).collect()),
        ),
        ("tokenizer.ggml.merges".into(), Value::Array(merges)),
    ])
}

/// Convert the Hugging Face folder `dir` (as [`super::write_model`] writes it: one
/// `model.safetensors`) into the GGUF file `out`.
pub fn write_gguf(dir: &Path, out: &Path, opts: &GgufOptions) -> Result<(), LlmError> {
    let cfg = read_json(&dir.join("config.json"))?;
    let family = match cfg["model_type"].as_str() {
        Some("llama") => Family::Llama,
        Some("qwen2") => Family::Qwen2,
        Some("gemma3_text" | "gemma3") => Family::Gemma3,
        other => {
            return Err(LlmError::Config { field: "model_type".into(), reason: format!("{other:?} is not supported") })
        }
    };
    let a = family.name();
    let u = |k: &str| config_u32(&cfg, k).map(Value::U32);
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        (format!("{a}.block_count"), u("num_hidden_layers")?),
        (format!("{a}.context_length"), u("max_position_embeddings")?),
        (format!("{a}.embedding_length"), u("hidden_size")?),
        (format!("{a}.feed_forward_length"), u("intermediate_size")?),
        (format!("{a}.attention.head_count"), u("num_attention_heads")?),
        (format!("{a}.attention.head_count_kv"), u("num_key_value_heads")?),
        (format!("{a}.attention.key_length"), u("head_dim")?),
        (format!("{a}.attention.value_length"), u("head_dim")?),
        (format!("{a}.rope.dimension_count"), u("head_dim")?),
        (format!("{a}.rope.freq_base"), Value::F32(config_f32(&cfg, "rope_theta")?)),
        (format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(config_f32(&cfg, "rms_norm_eps")?)),
    ];
    if family == Family::Gemma3 {
        meta.push((format!("{a}.attention.sliding_window"), u("sliding_window")?));
        meta.push((format!("{a}.attention.sliding_window_pattern"), u("sliding_window_pattern")?));
        meta.push((format!("{a}.rope.freq_base_swa"), Value::F32(config_f32(&cfg, "rope_local_base_freq")?)));
    }
    meta.extend(tokenizer_meta(&read_json(&dir.join("tokenizer.json"))?)?);
    meta.push(("tokenizer.ggml.bos_token_id".into(), u("bos_token_id")?));
    meta.push(("tokenizer.ggml.eos_token_id".into(), u("eos_token_id")?));
    if let Some(t) = &opts.chat_template {
        meta.push(("tokenizer.chat_template".into(), Value::String(t.clone())));
    }
    meta.retain(|(k, _)| !opts.drop.contains(k));

    let weights = dir.join("model.safetensors");
    let w = candle_core::safetensors::load(&weights, &Device::Cpu)
        .map_err(|e| LlmError::File { path: weights.display().to_string(), reason: e.to_string() })?;
    let (heads, kv_heads) =
        (config_u32(&cfg, "num_attention_heads")? as usize, config_u32(&cfg, "num_key_value_heads")? as usize);
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(w.len());
    for (hf, t) in &w {
        let m = crate::gguf::counterpart(hf, family, (heads, kv_heads))
            .ok_or_else(|| LlmError::Weights { name: hf.clone(), reason: "no GGUF name for this tensor".into() })?;
        let mut t = t.clone();
        if let Some(h) = m.unpermute_heads {
            t = permute_rows(&t, h)?;
        }
        if m.norm_shift {
            t = (t + 1.0)?;
        }
        let dtype = if t.rank() == 2 { opts.matrices } else { GgmlDType::F32 };
        let mut q = QTensor::quantize(&t, dtype)?;
        if opts.dequantized {
            q = QTensor::quantize(&q.dequantize(&Device::Cpu)?, GgmlDType::F32)?;
        }
        tensors.push((m.name, q));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let file = |reason: String| LlmError::File { path: out.display().to_string(), reason };
    let mut f = std::io::BufWriter::new(std::fs::File::create(out).map_err(|e| file(e.to_string()))?);
    gguf_file::write(&mut f, &meta_refs, &tensor_refs)?;
    std::io::Write::flush(&mut f).map_err(|e| file(e.to_string()))?;
    Ok(())
}
