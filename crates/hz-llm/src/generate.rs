//! Batched generation with a KV cache: temperature, top-p, stop strings and end-of-sequence
//! tokens, one seeded generator per row so a row's sample does not depend on its neighbours.

use crate::model::{Fwd, Input, Model};
use crate::LlmError;
use candle_core::DType;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone)]
pub struct Sampling {
    /// 0 means greedy.
    pub temperature: f64,
    /// Nucleus mass in `(0, 1]`.
    pub top_p: f64,
    pub max_new_tokens: usize,
    /// Generation stops when the decoded completion contains one of these.
    pub stop: Vec<String>,
    /// Extra end tokens beside the model's own.
    pub eos_token_ids: Vec<u32>,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self { temperature: 1.0, top_p: 1.0, max_new_tokens: 128, stop: Vec::new(), eos_token_ids: Vec::new(), seed: 0 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Eos,
    Stop(String),
    Length,
}

#[derive(Debug, Clone)]
pub struct Completion {
    /// Every generated token, including the end token or the one that completed a stop string.
    pub tokens: Vec<u32>,
    /// The decoded text, cut before the stop string (end tokens not included).
    pub text: String,
    pub finish: Finish,
}

/// Generate one completion per prompt, all in one batch.
pub fn generate(
    model: &Model,
    tokenizer: &tokenizers::Tokenizer,
    prompts: &[Vec<u32>],
    sampling: &Sampling,
    fwd: Fwd,
) -> Result<Vec<Completion>, LlmError> {
    if !(sampling.top_p > 0.0 && sampling.top_p <= 1.0) {
        return Err(LlmError::Input(format!("top_p {} must be in (0, 1]", sampling.top_p)));
    }
    if sampling.temperature < 0.0 || !sampling.temperature.is_finite() {
        return Err(LlmError::Input(format!("temperature {} must be a finite value ≥ 0", sampling.temperature)));
    }
    if prompts.iter().any(Vec::is_empty) {
        return Err(LlmError::Input("a prompt is empty".into()));
    }
    let b = prompts.len();
    let mut eos: Vec<u32> = model.config.eos_token_ids.clone();
    eos.extend(&sampling.eos_token_ids);
    let pad = eos.first().copied().unwrap_or(0);
    let fwd = Fwd { last_only: true, train: false, ..fwd };
    let mut rngs: Vec<ChaCha8Rng> = (0..b)
        .map(|i| ChaCha8Rng::seed_from_u64(sampling.seed.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))))
        .collect();
    let mut out: Vec<Option<Completion>> = vec![None; b];
    let mut generated: Vec<Vec<u32>> = vec![Vec::new(); b];
    // A group sampled from one prompt (GRPO's first turn) is prefilled once: identical
    // prompts give identical caches, so one row is computed and copied to the others.
    let shared = b > 1 && prompts[1..].iter().all(|p| *p == prompts[0]);
    let mut cache = model.new_cache(if shared { 1 } else { b });
    let mut input = Input::left_padded(if shared { &prompts[..1] } else { prompts }, pad);
    for step in 0..sampling.max_new_tokens {
        let logits = model.forward(&input, &mut cache, fwd)?;
        let logits = logits.squeeze(1)?.to_dtype(DType::F32)?;
        let mut logits: Vec<Vec<f32>> = logits.to_vec2()?;
        if shared && step == 0 {
            cache.select_rows(&vec![0; b])?;
            logits = vec![logits.swap_remove(0); b];
        }
        let mut next = vec![pad; b];
        let mut valid = vec![false; b];
        for row in 0..b {
            if out[row].is_some() {
                continue;
            }
            let tok = sample(&logits[row], sampling, &mut rngs[row]);
            generated[row].push(tok);
            if eos.contains(&tok) {
                let text = decode(tokenizer, &generated[row][..generated[row].len() - 1])?;
                out[row] = Some(Completion { tokens: generated[row].clone(), text, finish: Finish::Eos });
                continue;
            }
            if !sampling.stop.is_empty() {
                let text = decode(tokenizer, &generated[row])?;
                if let Some((at, s)) = sampling.stop.iter().filter_map(|s| text.find(s.as_str()).map(|i| (i, s))).min()
                {
                    out[row] = Some(Completion {
                        tokens: generated[row].clone(),
                        text: text[..at].to_string(),
                        finish: Finish::Stop(s.clone()),
                    });
                    continue;
                }
            }
            next[row] = tok;
            valid[row] = true;
        }
        if out.iter().all(Option::is_some) {
            break;
        }
        // Finished rows keep a slot in the batch but feed padding that nothing attends to.
        input = Input { tokens: next, valid, batch: b, len: 1 };
    }
    let mut done = Vec::with_capacity(b);
    for (row, c) in out.into_iter().enumerate() {
        done.push(match c {
            Some(c) => c,
            None => Completion {
                text: decode(tokenizer, &generated[row])?,
                tokens: std::mem::take(&mut generated[row]),
                finish: Finish::Length,
            },
        });
    }
    Ok(done)
}

fn decode(tokenizer: &tokenizers::Tokenizer, ids: &[u32]) -> Result<String, LlmError> {
    tokenizer.decode(ids, false).map_err(|e| LlmError::Tokenizer(e.to_string()))
}

/// Draw one token: greedy at temperature 0, else from the top-p nucleus of the tempered
/// distribution.
pub fn sample(logits: &[f32], s: &Sampling, rng: &mut ChaCha8Rng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best })
            .0 as u32
    };
    if s.temperature == 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(usize, f64)> =
        logits.iter().enumerate().map(|(i, &v)| (i, (((v - max) as f64) / s.temperature).exp())).collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    if !(total.is_finite() && total > 0.0) {
        return argmax();
    }
    if s.top_p < 1.0 {
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            acc += p.1 / total;
            if acc >= s.top_p {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
    }
    let mass: f64 = probs.iter().map(|p| p.1).sum();
    let mut u = rng.random::<f64>() * mass;
    for &(i, p) in &probs {
        if u < p {
            return i as u32;
        }
        u -= p;
    }
    probs.last().map_or_else(argmax, |p| p.0 as u32)
}
