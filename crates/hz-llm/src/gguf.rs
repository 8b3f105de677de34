//! Loading a model from one GGUF file (llama.cpp's format): the configuration from its
//! metadata, the weights under Hugging Face names with the projections kept quantized, and a
//! tokenizer built from the vocabulary the file carries (no `tokenizer.json` ships with it).
//!
//! Two conversions llama.cpp makes are undone so that the model is the Hugging Face one and a
//! LoRA adapter trained on it loads in PEFT: Llama-architecture Q/K rows are permuted for
//! interleaved rotary pairs (put back, so rotary pairs halves again), and Gemma norm weights
//! are stored with the `+1` added (taken off, the decoder adds it).

use crate::config::{Activation, Family, ModelConfig, RopeStyle};
use crate::load::file_err;
use crate::model::{Model, WeightSource};
use crate::ops::BaseWeight;
use crate::LlmError;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokenizers::models::bpe::BPE;
use tokenizers::{AddedToken, Tokenizer};

const MAGIC: &[u8; 4] = b"GGUF";

/// Whether `path` is a GGUF file (by its magic bytes, so the extension does not matter).
pub fn is_gguf(path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    let mut head = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == MAGIC
}

fn meta_err(key: &str, reason: impl std::fmt::Display) -> LlmError {
    LlmError::Gguf { key: key.to_string(), reason: reason.to_string() }
}

/// An integer of any GGUF integer type.
fn int_of(v: &Value) -> Option<i64> {
    Some(match v {
        Value::U8(x) => *x as i64,
        Value::I8(x) => *x as i64,
        Value::U16(x) => *x as i64,
        Value::I16(x) => *x as i64,
        Value::U32(x) => *x as i64,
        Value::I32(x) => *x as i64,
        Value::U64(x) => i64::try_from(*x).ok()?,
        Value::I64(x) => *x,
        _ => return None,
    })
}

fn float_of(v: &Value) -> Option<f64> {
    match v {
        Value::F32(x) => Some(*x as f64),
        Value::F64(x) => Some(*x),
        other => int_of(other).map(|x| x as f64),
    }
}

/// An open GGUF file: its parsed header and a handle to read tensors from.
pub struct Gguf {
    path: PathBuf,
    content: Content,
    file: Mutex<std::fs::File>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("metadata_keys", &self.content.metadata.len())
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Self, LlmError> {
        let mut file = std::fs::File::open(path).map_err(|e| file_err(path, e))?;
        let content = Content::read(&mut file).map_err(|e| file_err(path, format!("not a readable GGUF file: {e}")))?;
        Ok(Self { path: path.to_path_buf(), content, file: Mutex::new(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn get(&self, key: &str) -> Result<&Value, LlmError> {
        self.content.metadata.get(key).ok_or_else(|| meta_err(key, "missing from the GGUF metadata"))
    }

    fn string(&self, key: &str) -> Result<&str, LlmError> {
        match self.get(key)? {
            Value::String(s) => Ok(s),
            other => Err(meta_err(key, format!("expected a string, found {:?}", other.value_type()))),
        }
    }

    fn opt_string(&self, key: &str) -> Option<&str> {
        match self.content.metadata.get(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// A non-negative integer; per-layer arrays (some converters write them) must agree.
    fn usize_opt(&self, key: &str) -> Result<Option<usize>, LlmError> {
        let Some(v) = self.content.metadata.get(key) else { return Ok(None) };
        let one = |v: &Value| {
            int_of(v)
                .and_then(|x| usize::try_from(x).ok())
                .ok_or_else(|| meta_err(key, format!("expected a non-negative integer, found {v:?}")))
        };
        match v {
            Value::Array(items) => {
                let vals = items.iter().map(one).collect::<Result<Vec<_>, _>>()?;
                match vals.split_first() {
                    Some((first, rest)) if rest.iter().all(|x| x == first) => Ok(Some(*first)),
                    Some(_) => Err(meta_err(key, "differs between layers, which is not supported")),
                    None => Err(meta_err(key, "is an empty array")),
                }
            }
            v => one(v).map(Some),
        }
    }

    fn usize(&self, key: &str) -> Result<usize, LlmError> {
        self.usize_opt(key)?.ok_or_else(|| meta_err(key, "missing from the GGUF metadata"))
    }

    fn f64_opt(&self, key: &str) -> Result<Option<f64>, LlmError> {
        match self.content.metadata.get(key) {
            None => Ok(None),
            Some(v) => float_of(v).map(Some).ok_or_else(|| meta_err(key, format!("expected a number, found {v:?}"))),
        }
    }

    fn u32_opt(&self, key: &str) -> Option<u32> {
        self.content.metadata.get(key).and_then(int_of).and_then(|x| u32::try_from(x).ok())
    }

    fn bool_opt(&self, key: &str) -> Option<bool> {
        match self.content.metadata.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            Some(v) => int_of(v).map(|x| x != 0),
            None => None,
        }
    }

    pub fn family(&self) -> Result<Family, LlmError> {
        let key = "general.architecture";
        match self.string(key)? {
            "llama" => Ok(Family::Llama),
            "qwen2" => Ok(Family::Qwen2),
            "gemma3" => Ok(Family::Gemma3),
            other => Err(meta_err(key, format!("{other:?} is not supported (llama, qwen2, gemma3)"))),
        }
    }

    /// The model configuration from the metadata (`<arch>.*` keys, as llama.cpp writes them).
    pub fn config(&self) -> Result<ModelConfig, LlmError> {
        let family = self.family()?;
        let arch = family.name();
        let k = |s: &str| format!("{arch}.{s}");
        let hidden_size = self.usize(&k("embedding_length"))?;
        let num_layers = self.usize(&k("block_count"))?;
        let intermediate_size = self.usize(&k("feed_forward_length"))?;
        let num_heads = self.usize(&k("attention.head_count"))?;
        let num_kv_heads = self.usize_opt(&k("attention.head_count_kv"))?.unwrap_or(num_heads);
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(meta_err(
                &k("attention.head_count_kv"),
                format!("{num_kv_heads} must divide attention.head_count {num_heads}"),
            ));
        }
        let head_dim = match self.usize_opt(&k("attention.key_length"))? {
            Some(d) => d,
            None if hidden_size % num_heads == 0 => hidden_size / num_heads,
            None => return Err(meta_err(&k("attention.key_length"), "missing, and heads do not divide the width")),
        };
        if head_dim % 2 != 0 {
            return Err(meta_err(&k("attention.key_length"), format!("{head_dim} must be even for rotary embeddings")));
        }
        if let Some(v) = self.usize_opt(&k("attention.value_length"))? {
            if v != head_dim {
                return Err(meta_err(&k("attention.value_length"), format!("{v} differs from key_length {head_dim}")));
            }
        }
        if let Some(r) = self.usize_opt(&k("rope.dimension_count"))? {
            if r != head_dim {
                return Err(meta_err(&k("rope.dimension_count"), format!("partial rotary ({r} of {head_dim})")));
            }
        }
        let rms_norm_eps = self
            .f64_opt(&k("attention.layer_norm_rms_epsilon"))?
            .ok_or_else(|| meta_err(&k("attention.layer_norm_rms_epsilon"), "missing from the GGUF metadata"))?;
        let rope_theta = self.f64_opt(&k("rope.freq_base"))?.unwrap_or(match family {
            Family::Llama => 10_000.0,
            _ => 1_000_000.0,
        });
        match self.opt_string(&k("rope.scaling.type")) {
            None | Some("none") => {}
            Some("linear") if self.f64_opt(&k("rope.scaling.factor"))?.unwrap_or(1.0) == 1.0 => {}
            Some(other) => {
                return Err(meta_err(&k("rope.scaling.type"), format!("rope scaling {other:?} is not supported")))
            }
        }
        let embed = self.content.tensor_infos.get("token_embd.weight").ok_or_else(|| LlmError::Weights {
            name: "token_embd.weight".into(),
            reason: "missing from the GGUF file".into(),
        })?;
        let vocab_size = embed.shape.dims().first().copied().unwrap_or(0);
        if let Some(v) = self.usize_opt(&k("vocab_size"))? {
            if v != vocab_size {
                return Err(meta_err(&k("vocab_size"), format!("{v}, but token_embd has {vocab_size} rows")));
            }
        }
        // Llama 3 frequency scaling travels as a tensor of per-frequency divisors.
        let rope_freq_factors = if self.has_tensor("rope_freqs.weight") {
            let t = self.read("rope_freqs.weight", &Device::Cpu)?.dequantize(&Device::Cpu)?;
            let f: Vec<f64> = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
            if f.len() != head_dim / 2 {
                return Err(LlmError::Weights {
                    name: "rope_freqs.weight".into(),
                    reason: format!("{} factors for head_dim {head_dim}", f.len()),
                });
            }
            Some(f)
        } else {
            None
        };
        let (layer_windows, rope_local_theta, query_pre_attn_scalar) = match family {
            Family::Gemma3 => {
                let window = self.usize_opt(&k("attention.sliding_window"))?.unwrap_or(4096);
                // llama.cpp's Gemma 3: every 6th layer is global unless the file says otherwise
                // (a period, or one flag per layer).
                let mut pattern_key = k("attention.sliding_window_pattern");
                if !self.content.metadata.contains_key(&pattern_key) {
                    // candle's name for the same period.
                    pattern_key = k("attention.sliding_window_type");
                }
                let windows: Vec<Option<usize>> = match self.content.metadata.get(&pattern_key) {
                    Some(Value::Array(flags)) => {
                        if flags.len() != num_layers {
                            return Err(meta_err(&pattern_key, "length differs from block_count"));
                        }
                        flags
                            .iter()
                            .map(|f| matches!(f, Value::Bool(true)) || int_of(f).is_some_and(|x| x != 0))
                            .map(|swa| swa.then_some(window))
                            .collect()
                    }
                    _ => {
                        let p = self.usize_opt(&pattern_key)?.unwrap_or(6);
                        (0..num_layers).map(|i| (p == 0 || (i + 1) % p > 0).then_some(window)).collect()
                    }
                };
                let local = match self.f64_opt(&k("rope.freq_base_swa"))? {
                    Some(f) => f,
                    None => self.f64_opt(&k("rope.local_freq_base"))?.unwrap_or(10_000.0),
                };
                // Gemma 3 27B (62 layers) scales queries by width / heads, the others by head_dim.
                let scalar = if num_layers == 62 { (hidden_size / num_heads) as f64 } else { head_dim as f64 };
                (windows, Some(local), scalar)
            }
            _ => (vec![None; num_layers], None, head_dim as f64),
        };
        let bos_token_id = self.u32_opt("tokenizer.ggml.bos_token_id");
        let mut eos_token_ids: Vec<u32> = Vec::new();
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
            if let Some(id) = self.u32_opt(key) {
                if !eos_token_ids.contains(&id) {
                    eos_token_ids.push(id);
                }
            }
        }
        Ok(ModelConfig {
            family,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps,
            rope_theta,
            rope_local_theta,
            rope_scaling: None,
            rope_freq_factors,
            rope_style: RopeStyle::Half,
            layer_windows,
            attention_bias: self.has_tensor("blk.0.attn_q.bias"),
            tie_word_embeddings: !self.has_tensor("output.weight"),
            activation: match family {
                Family::Gemma3 => Activation::GeluTanh,
                _ => Activation::Silu,
            },
            query_pre_attn_scalar,
            attn_logit_softcapping: self.f64_opt(&k("attn_logit_softcapping"))?,
            final_logit_softcapping: self.f64_opt(&k("final_logit_softcapping"))?,
            max_position_embeddings: self.usize_opt(&k("context_length"))?.unwrap_or(4096),
            bos_token_id,
            eos_token_ids,
        })
    }

    /// One tensor as stored.
    pub fn read(&self, name: &str, device: &Device) -> Result<QTensor, LlmError> {
        let mut f = self.file.lock().map_err(|_| file_err(&self.path, "file handle poisoned"))?;
        self.content
            .tensor(&mut *f, name, device)
            .map_err(|e| LlmError::Weights { name: name.to_string(), reason: e.to_string() })
    }

    /// Load the model, computing in `dtype`. Quantized projections stay quantized when
    /// `dtype` is f32 (candle's quantized kernels take f32); otherwise they are dequantized.
    pub fn load_model(&self, device: &Device, dtype: DType) -> Result<Model, LlmError> {
        let config = self.config()?;
        let src = GgufSource { gguf: self, config: config.clone(), device: device.clone(), dtype };
        Model::new(config, &src)
    }

    /// The chat template the file carries (`tokenizer.chat_template`).
    pub fn chat_template(&self) -> Option<&str> {
        self.opt_string("tokenizer.chat_template")
    }

    fn tokens(&self) -> Result<Vec<&str>, LlmError> {
        let key = "tokenizer.ggml.tokens";
        match self.get(key)? {
            Value::Array(a) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.as_str()),
                    _ => Err(meta_err(key, "holds a non-string")),
                })
                .collect(),
            _ => Err(meta_err(key, "expected an array of strings")),
        }
    }

    /// The text of the token `tokenizer.ggml.<which>_token_id` (`bos`, `eos`, ...).
    pub fn special_token(&self, which: &str) -> Option<String> {
        let id = self.u32_opt(&format!("tokenizer.ggml.{which}_token_id"))? as usize;
        match self.content.metadata.get("tokenizer.ggml.tokens")? {
            Value::Array(a) => match a.get(id)? {
                Value::String(s) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    /// A tokenizer built from the vocabulary in the metadata: `gpt2` files are byte-level BPE
    /// with their merges, `llama` files SentencePiece pieces with scores (turned into BPE
    /// merges ranked by the merged piece's score, which is how SentencePiece picks merges).
    pub fn tokenizer(&self) -> Result<Tokenizer, LlmError> {
        let model_key = "tokenizer.ggml.model";
        let kind = self.string(model_key)?;
        let tokens = self.tokens()?;
        let types_key = "tokenizer.ggml.token_type";
        let mut types: Vec<i64> = match self.content.metadata.get(types_key) {
            Some(Value::Array(a)) => a.iter().map(|v| int_of(v).unwrap_or(TYPE_NORMAL)).collect(),
            Some(_) => return Err(meta_err(types_key, "expected an array of integers")),
            None => vec![TYPE_NORMAL; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(meta_err(types_key, format!("{} types for {} tokens", types.len(), tokens.len())));
        }
        // Files without types still name their specials by id.
        for key in ["bos", "eos", "eot", "pad"] {
            if let Some(id) = self.u32_opt(&format!("tokenizer.ggml.{key}_token_id")) {
                if let Some(t) = types.get_mut(id as usize) {
                    if *t == TYPE_NORMAL {
                        *t = TYPE_CONTROL;
                    }
                }
            }
        }
        let mut tokenizer = match kind {
            "gpt2" => self.byte_level_bpe(&tokens)?,
            "llama" => self.sentencepiece_bpe(&tokens, &types)?,
            other => {
                return Err(meta_err(
                    model_key,
                    format!("tokenizer {other:?} is not supported (gpt2 byte-level BPE, llama SentencePiece)"),
                ))
            }
        };
        // Control tokens are special. User-defined ones (Gemma's runs of newlines and spaces,
        // Qwen's `<tool_call>`) are matched whole in the raw text before the model runs, as
        // llama.cpp does; special when they look like markup, so a template's turn markers
        // count as special tokens.
        let mut specials = Vec::new();
        let mut added = Vec::new();
        for (t, ty) in tokens.iter().zip(&types) {
            let markup = t.starts_with('<') && t.ends_with('>') && t.len() > 2;
            match *ty {
                TYPE_CONTROL => specials.push(AddedToken::from(t.to_string(), true)),
                TYPE_USER_DEFINED if markup => specials.push(AddedToken::from(t.to_string(), true)),
                TYPE_USER_DEFINED => added.push(AddedToken::from(t.to_string(), false).normalized(false)),
                _ => {}
            }
        }
        tokenizer.add_special_tokens(&specials);
        tokenizer.add_tokens(&added);
        Ok(tokenizer)
    }

    fn byte_level_bpe(&self, tokens: &[&str]) -> Result<Tokenizer, LlmError> {
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        use tokenizers::pre_tokenizers::sequence::Sequence;
        use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
        use tokenizers::pre_tokenizers::PreTokenizerWrapper;
        use tokenizers::SplitDelimiterBehavior;
        let merges_key = "tokenizer.ggml.merges";
        let merges: Vec<(String, String)> = match self.get(merges_key)? {
            Value::Array(a) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => s
                        .split_once(' ')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .ok_or_else(|| meta_err(merges_key, format!("merge {s:?} is not two tokens"))),
                    _ => Err(meta_err(merges_key, "holds a non-string")),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(meta_err(merges_key, "expected an array of strings")),
        };
        let vocab: tokenizers::models::bpe::Vocab =
            tokens.iter().enumerate().map(|(i, t)| (t.to_string(), i as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| LlmError::Tokenizer(format!("byte-level BPE from GGUF: {e}")))?;
        let mut tokenizer = Tokenizer::new(bpe);
        // The pre-tokenizer regex is named by `tokenizer.ggml.pre`; unknown names get GPT-2's.
        let pre = self.opt_string("tokenizer.ggml.pre").unwrap_or("default");
        let split = match pre {
            "qwen2" => Some(QWEN2_SPLIT),
            "llama3" | "llama-bpe" | "llama-v3" | "smaug-bpe" => Some(LLAMA3_SPLIT),
            "default" | "gpt2" | "gpt-2" => None,
            other => {
                tracing::warn!(pre = other, "unknown GGUF pre-tokenizer, using GPT-2's split");
                None
            }
        };
        match split {
            Some(re) => {
                let split = Split::new(SplitPattern::Regex(re.to_string()), SplitDelimiterBehavior::Isolated, false)
                    .map_err(|e| LlmError::Tokenizer(format!("pre-tokenizer {pre}: {e}")))?;
                tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
                    PreTokenizerWrapper::Split(split),
                    PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
                ])));
            }
            None => {
                tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
            }
        }
        tokenizer.with_decoder(Some(ByteLevel::default()));
        Ok(tokenizer)
    }

    fn sentencepiece_bpe(&self, tokens: &[&str], types: &[i64]) -> Result<Tokenizer, LlmError> {
        use tokenizers::decoders::byte_fallback::ByteFallback;
        use tokenizers::decoders::fuse::Fuse;
        use tokenizers::decoders::sequence::Sequence as DecSeq;
        use tokenizers::decoders::strip::Strip;
        use tokenizers::decoders::DecoderWrapper;
        use tokenizers::normalizers::{Prepend, Replace, Sequence as NormSeq};
        use tokenizers::NormalizerWrapper;
        let scores_key = "tokenizer.ggml.scores";
        let scores: Vec<f64> = match self.get(scores_key)? {
            Value::Array(a) => a.iter().map(|v| float_of(v).unwrap_or(0.0)).collect(),
            _ => return Err(meta_err(scores_key, "expected an array of numbers")),
        };
        if scores.len() != tokens.len() {
            return Err(meta_err(scores_key, format!("{} scores for {} tokens", scores.len(), tokens.len())));
        }
        // Only normal pieces take part in merges (bytes, controls and user-defined pieces are
        // produced otherwise).
        let mergeable: HashMap<&str, usize> =
            tokens.iter().enumerate().filter(|(i, _)| types[*i] == TYPE_NORMAL).map(|(i, t)| (*t, i)).collect();
        let mut ranked: Vec<(f64, usize, usize, usize)> = Vec::new();
        for (&piece, &id) in &mergeable {
            for (cut, _) in piece.char_indices().skip(1) {
                let (a, b) = piece.split_at(cut);
                if let (Some(&ia), Some(&ib)) = (mergeable.get(a), mergeable.get(b)) {
                    ranked.push((scores[id], id, ia, ib));
                }
            }
        }
        // Highest score merges first; ties by id, so the order is reproducible.
        ranked.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
        let merges: Vec<(String, String)> =
            ranked.iter().map(|&(_, _, a, b)| (tokens[a].to_string(), tokens[b].to_string())).collect();
        let vocab: tokenizers::models::bpe::Vocab =
            tokens.iter().enumerate().map(|(i, t)| (t.to_string(), i as u32)).collect();
        let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true).fuse_unk(true);
        if let Some(unk) = types.iter().position(|&t| t == TYPE_UNKNOWN) {
            builder = builder.unk_token(tokens[unk].to_string());
        }
        let bpe = builder.build().map_err(|e| LlmError::Tokenizer(format!("SentencePiece BPE from GGUF: {e}")))?;
        let mut tokenizer = Tokenizer::new(bpe);
        let prefix = self.bool_opt("tokenizer.ggml.add_space_prefix").unwrap_or(true);
        let replace = Replace::new(" ", "▁").map_err(|e| LlmError::Tokenizer(e.to_string()))?;
        let mut norms = Vec::new();
        if prefix {
            norms.push(NormalizerWrapper::Prepend(Prepend::new("▁".into())));
        }
        norms.push(NormalizerWrapper::Replace(replace));
        tokenizer.with_normalizer(Some(NormSeq::new(norms)));
        let unspace = Replace::new("▁", " ").map_err(|e| LlmError::Tokenizer(e.to_string()))?;
        let mut decoders = vec![
            DecoderWrapper::Replace(unspace),
            DecoderWrapper::ByteFallback(ByteFallback::new()),
            DecoderWrapper::Fuse(Fuse::new()),
        ];
        if prefix {
            decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
        }
        tokenizer.with_decoder(Some(DecSeq::new(decoders)));
        Ok(tokenizer)
    }
}

// llama.cpp's token types.
const TYPE_NORMAL: i64 = 1;
const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

/// Qwen2's pre-tokenizer split (the regex in its `tokenizer.json`).
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's: as Qwen2's with digits in runs of up to three.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF tensors under Hugging Face names.
struct GgufSource<'a> {
    gguf: &'a Gguf,
    config: ModelConfig,
    device: Device,
    dtype: DType,
}

/// What a Hugging Face name is stored as.
pub(crate) struct Mapped {
    pub(crate) name: String,
    /// Llama Q/K rows to put back in Hugging Face order, with this many heads.
    pub(crate) unpermute_heads: Option<usize>,
    /// A Gemma norm stored with `+1`.
    pub(crate) norm_shift: bool,
}

/// The GGUF counterpart (llama.cpp's layout) of the Hugging Face tensor `hf` of a model of
/// `family` with `(heads, kv_heads)` attention heads; the loader reads by it and
/// `tiny::write_gguf` writes by it.
pub(crate) fn counterpart(hf: &str, family: Family, (heads, kv_heads): (usize, usize)) -> Option<Mapped> {
    let gemma = family == Family::Gemma3;
    let plain = |name: String| Mapped { name, unpermute_heads: None, norm_shift: false };
    let norm = |name: String| Mapped { name, unpermute_heads: None, norm_shift: gemma };
    match hf {
        "model.embed_tokens.weight" => return Some(plain("token_embd.weight".into())),
        "model.norm.weight" => return Some(norm("output_norm.weight".into())),
        "lm_head.weight" => return Some(plain("output.weight".into())),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = rest.rsplit_once('.')?;
    let blk = |s: &str| format!("blk.{layer}.{s}.{kind}");
    let llama = family == Family::Llama;
    Some(match module {
        "self_attn.q_proj" => {
            Mapped { name: blk("attn_q"), unpermute_heads: llama.then_some(heads), norm_shift: false }
        }
        "self_attn.k_proj" => {
            Mapped { name: blk("attn_k"), unpermute_heads: llama.then_some(kv_heads), norm_shift: false }
        }
        "self_attn.v_proj" => plain(blk("attn_v")),
        "self_attn.o_proj" => plain(blk("attn_output")),
        "mlp.gate_proj" => plain(blk("ffn_gate")),
        "mlp.up_proj" => plain(blk("ffn_up")),
        "mlp.down_proj" => plain(blk("ffn_down")),
        "input_layernorm" => norm(blk("attn_norm")),
        "post_attention_layernorm" if gemma => norm(blk("post_attention_norm")),
        "post_attention_layernorm" => norm(blk("ffn_norm")),
        "pre_feedforward_layernorm" => norm(blk("ffn_norm")),
        "post_feedforward_layernorm" => norm(blk("post_ffw_norm")),
        "self_attn.q_norm" => norm(blk("attn_q_norm")),
        "self_attn.k_norm" => norm(blk("attn_k_norm")),
        _ => return None,
    })
}

impl GgufSource<'_> {
    fn map(&self, hf: &str) -> Option<Mapped> {
        let c = &self.config;
        counterpart(hf, c.family, (c.num_heads, c.num_kv_heads))
    }

    fn mapped(&self, hf: &str) -> Result<Mapped, LlmError> {
        self.map(hf).ok_or_else(|| LlmError::Weights { name: hf.to_string(), reason: "no GGUF counterpart".into() })
    }

    fn dense(&self, q: &QTensor, m: &Mapped) -> Result<Tensor, LlmError> {
        let mut t = q.dequantize(&self.device)?.to_dtype(self.dtype)?;
        if let Some(heads) = m.unpermute_heads {
            let rows = t.dims().first().copied().unwrap_or(0);
            let order: Vec<u32> = unpermute_rows(rows, heads)?.into_iter().map(|r| r as u32).collect();
            let idx = Tensor::from_vec(order, rows, &self.device)?;
            t = t.index_select(&idx, 0)?;
        }
        if m.norm_shift {
            t = (t - 1.0)?;
        }
        Ok(t)
    }
}

/// Hugging Face row order from llama.cpp's: within each head of `d` rows, GGUF row `2i + j`
/// holds Hugging Face row `j·d/2 + i`. Returns, per Hugging Face row, its GGUF row.
fn unpermute_rows(rows: usize, heads: usize) -> Result<Vec<usize>, LlmError> {
    if heads == 0 || rows % heads != 0 || (rows / heads) % 2 != 0 {
        return Err(LlmError::Weights {
            name: "attn_q/attn_k".into(),
            reason: format!("{rows} rows do not split into {heads} heads of even size"),
        });
    }
    let d = rows / heads;
    let half = d / 2;
    Ok((0..rows)
        .map(|r| {
            let (h, within) = (r / d, r % d);
            let (j, i) = (within / half, within % half);
            h * d + 2 * i + j
        })
        .collect())
}

/// Reorder the rows of a quantized matrix (rows are whole blocks, so no precision is lost).
fn reorder_qrows(q: &QTensor, order: &[usize]) -> Result<QTensor, LlmError> {
    let (rows, cols) = q.shape().dims2()?;
    let dt = q.dtype();
    let row_bytes = cols / dt.block_size() * dt.type_size();
    let data = q.data()?;
    if data.len() != rows * row_bytes || order.len() != rows {
        return Err(LlmError::Weights {
            name: "attn_q/attn_k".into(),
            reason: format!("{} bytes for {rows} rows of {row_bytes}", data.len()),
        });
    }
    let mut out = Vec::with_capacity(data.len());
    for &src in order {
        out.extend_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
    }
    let storage = QStorage::from_data(Cow::Owned(out), &q.device(), dt)?;
    Ok(QTensor::new(storage, (rows, cols))?)
}

impl WeightSource for GgufSource<'_> {
    fn get(&self, name: &str) -> Result<BaseWeight, LlmError> {
        let m = self.mapped(name)?;
        let mut q = self.gguf.read(&m.name, &self.device)?;
        let dense_kind = matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        if dense_kind || self.dtype != DType::F32 || q.rank() != 2 {
            return Ok(BaseWeight::Dense(self.dense(&q, &m)?));
        }
        // candle has no SIMD kernel for Q5_0/Q5_1; as Q8_0 they give the same output, faster.
        if matches!(q.dtype(), GgmlDType::Q5_0 | GgmlDType::Q5_1) {
            q = QTensor::quantize(&q.dequantize(&self.device)?, GgmlDType::Q8_0)?;
        }
        if let Some(heads) = m.unpermute_heads {
            let rows = q.shape().dims2()?.0;
            q = reorder_qrows(&q, &unpermute_rows(rows, heads)?)?;
        }
        Ok(BaseWeight::Quant(Arc::new(q)))
    }

    fn get_dense(&self, name: &str) -> Result<Tensor, LlmError> {
        let m = self.mapped(name)?;
        let q = self.gguf.read(&m.name, &self.device)?;
        self.dense(&q, &m)
    }

    fn contains(&self, name: &str) -> bool {
        self.map(name).is_some_and(|m| self.gguf.has_tensor(&m.name))
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn dtype(&self) -> DType {
        self.dtype
    }
}

/// Load the model of a GGUF file.
pub fn load_model(path: &Path, device: &Device, dtype: DType) -> Result<Model, LlmError> {
    Gguf::open(path)?.load_model(device, dtype)
}
