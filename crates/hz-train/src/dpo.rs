//! DPO (Rafailov et al.): from pairs of a preferred and a rejected answer to the same prompt,
//! `loss = -log σ(β·((π_c - ref_c) - (π_r - ref_r)))` with sequence log-probabilities summed
//! over the answer's tokens and the reference the base with the adapter off.
//!
//! Pairs come from a JSON-lines file, or from the gym: two or more rollouts of one task,
//! ranked by their total reward (the gym's items plus the AI overseer's judgement), the best
//! against the worst; ties carry no preference and are dropped.

use crate::grpo::{self, derive_seed, StepMetrics};
use crate::loss::{micro_batches, score, Scored};
use crate::optim::{accumulate, AdamW};
use crate::rollout::{rollout_group, GymFace};
use crate::run::TrainConfig;
use crate::TrainError;
use candle_core::{DType, Tensor, D};
use hz_chat::{ChatTokenizer, Message};
use hz_llm::Fwd;
use hz_llm::Model;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DpoConfig {
    /// Temperature β of the implicit reward.
    pub beta: f64,
    /// A JSON-lines file of `{"prompt", "chosen", "rejected"}`; without it pairs come from
    /// rollouts of the gym.
    pub pairs: Option<PathBuf>,
    /// Pairs per step when they come from the file.
    pub pairs_per_step: usize,
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self { beta: 0.1, pairs: None, pairs_per_step: 8 }
    }
}

impl DpoConfig {
    pub fn validate(&self, group_size: usize) -> Result<(), TrainError> {
        let bad = |field: &str, reason: &str| Err(TrainError::Config { field: field.into(), reason: reason.into() });
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return bad("dpo.beta", "must be a positive number");
        }
        if self.pairs.is_some() && self.pairs_per_step == 0 {
            return bad("dpo.pairs_per_step", "must be at least 1");
        }
        if self.pairs.is_none() && group_size < 2 {
            return bad("group_size", "DPO from rollouts compares at least 2 episodes per task");
        }
        Ok(())
    }
}

/// A preference pair, tokenized: full rows (prompt + answer) with the answer's tokens masked in.
#[derive(Debug, Clone)]
pub struct Pair {
    pub chosen: (Vec<u32>, Vec<bool>),
    pub rejected: (Vec<u32>, Vec<bool>),
}

/// Read preference pairs: one JSON object per line with `prompt` (a string, or a list of
/// `{"role", "content"}` messages), `chosen` and `rejected` (the assistant's answers).
/// Errors name the file, the line and the field.
pub fn load_pairs(path: &Path, chat: &ChatTokenizer) -> Result<Vec<Pair>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    parse_pairs(&text, path, chat)
}

/// The pairs in `text`, the contents of the file at `path` (named in errors).
pub fn parse_pairs(text: &str, path: &Path, chat: &ChatTokenizer) -> Result<Vec<Pair>, TrainError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| TrainError::Data { path: path.display().to_string(), line: i + 1, reason };
        let v: Value = serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let prompt: Vec<Message> = match v.get("prompt") {
            Some(Value::String(s)) => vec![Message::user(s.clone())],
            Some(m @ Value::Array(_)) => serde_json::from_value(m.clone())
                .map_err(|e| bad(format!("`prompt`: not a list of {{role, content}} messages: {e}")))?,
            Some(_) => return Err(bad("`prompt`: must be a string or a list of messages".into())),
            None => return Err(bad("missing `prompt`".into())),
        };
        let answer = |k: &str| -> Result<String, TrainError> {
            match v.get(k) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                Some(Value::String(_)) => Err(bad(format!("`{k}` is empty"))),
                Some(_) => Err(bad(format!("`{k}` must be a string"))),
                None => Err(bad(format!("missing `{k}`"))),
            }
        };
        let (chosen, rejected) = (answer("chosen")?, answer("rejected")?);
        if chosen == rejected {
            return Err(bad("`chosen` and `rejected` are the same answer".into()));
        }
        let encode = |a: String| -> Result<(Vec<u32>, Vec<bool>), TrainError> {
            let mut msgs = prompt.clone();
            msgs.push(Message::assistant(a));
            let e = chat.encode_conversation(&msgs, &[]).map_err(|e| bad(e.to_string()))?;
            Ok((e.ids, e.mask.iter().map(|&m| m != 0).collect()))
        };
        out.push(Pair { chosen: encode(chosen)?, rejected: encode(rejected)? });
    }
    if out.is_empty() {
        return Err(TrainError::Data {
            path: path.display().to_string(),
            line: 0,
            reason: "no pairs in the file".into(),
        });
    }
    Ok(out)
}

/// One DPO step: this step's pairs (from the file in order, wrapping; or from rollouts), then
/// the update.
pub fn step(
    model: &Model,
    chat: &ChatTokenizer,
    face: &GymFace,
    opt: &mut AdamW,
    cfg: &TrainConfig,
    file_pairs: &[Pair],
    step: u64,
) -> Result<StepMetrics, TrainError> {
    let started = Instant::now();
    let (pairs, mut m, generated) = if file_pairs.is_empty() {
        let (pairs, episodes, ties) = pairs_from_rollouts(model, chat, face, cfg, step)?;
        let mut m = grpo::summarize(step, &episodes);
        m.extra.insert("ties".into(), ties as f64);
        let generated = episodes.iter().map(|e| e.completion_tokens).sum();
        (pairs, m, generated)
    } else {
        let n = file_pairs.len();
        let k = cfg.dpo.pairs_per_step;
        let start = (step as usize).wrapping_mul(k) % n;
        let pairs = (0..k).map(|j| file_pairs[(start + j) % n].clone()).collect();
        (pairs, StepMetrics { step, ..StepMetrics::default() }, 0)
    };
    let mb = (cfg.micro_batch, cfg.micro_batch_tokens);
    let u = update(model, opt, &pairs, cfg.dpo.beta, mb, derive_seed(cfg.seed ^ 0xD0, step, 0))?;
    m.loss = u.loss;
    m.kl = u.kl;
    m.grad_norm = u.grad_norm;
    m.trained_tokens = u.trained_tokens;
    m.extra.extend(u.extra);
    m.tokens_per_s = (generated + m.trained_tokens) as f64 / started.elapsed().as_secs_f64().max(1e-9);
    Ok(m)
}

/// For each of the step's tasks a group of rollouts; the best and the worst by total reward
/// make a pair, unless they tie. Returns the pairs, all episodes and the number of ties.
pub fn pairs_from_rollouts(
    model: &Model,
    chat: &ChatTokenizer,
    face: &GymFace,
    cfg: &TrainConfig,
    step: u64,
) -> Result<(Vec<Pair>, Vec<crate::rollout::Episode>, usize), TrainError> {
    let g = cfg.grpo();
    let mut pairs = Vec::new();
    let mut all = Vec::new();
    let mut ties = 0;
    for p in 0..g.prompts_per_step {
        let mut s = g.sampling.clone();
        s.seed = derive_seed(g.seed ^ 0x5A5A, step, p as u64);
        let eps = rollout_group(model, chat, face, derive_seed(g.seed, step, p as u64), g.group_size, &s, g.max_turns)?;
        let by = |a: &&crate::rollout::Episode, b: &&crate::rollout::Episode| a.reward.total_cmp(&b.reward);
        let (best, worst) = (eps.iter().max_by(by), eps.iter().min_by(by));
        match (best, worst) {
            (Some(b), Some(w)) if b.reward > w.reward => pairs.push(Pair {
                chosen: (b.tokens.clone(), b.mask.clone()),
                rejected: (w.tokens.clone(), w.mask.clone()),
            }),
            _ => ties += 1,
        }
        all.extend(eps);
    }
    Ok((pairs, all, ties))
}

/// What [`update`] measured.
#[derive(Debug, Clone, Default)]
pub struct DpoStats {
    pub loss: f64,
    pub kl: f64,
    pub grad_norm: f64,
    pub trained_tokens: usize,
    /// `accuracy` (share of pairs whose implicit reward prefers the chosen answer), `margin`,
    /// `chosen_reward`, `rejected_reward`, `pairs`.
    pub extra: std::collections::BTreeMap<String, f64>,
}

/// `softplus(x) = log(1 + eˣ)`, stable for large |x|: `max(x, 0) + log(1 + e^-|x|)`.
fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// Sequence log-probabilities `[b]`: the masked sum over each row.
fn seq_logp(lp: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    lp.mul(mask)?.sum(D::Minus1)
}

/// The DPO update on `pairs`, micro-batched by `(pairs, padded tokens)` at most (chosen and
/// rejected of a pair in the same pass), the loss averaged over pairs.
pub fn update(
    model: &Model,
    opt: &mut AdamW,
    pairs: &[Pair],
    beta: f64,
    (micro_batch, micro_batch_tokens): (usize, usize),
    dropout_seed: u64,
) -> Result<DpoStats, TrainError> {
    let mut st = DpoStats::default();
    st.extra.insert("pairs".into(), pairs.len() as f64);
    if pairs.is_empty() {
        return Ok(st);
    }
    let n = pairs.len() as f64;
    let mut grads = Vec::new();
    let (mut acc, mut margin, mut rc, mut rr, mut kl_sum, mut kl_tokens) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let lens: Vec<usize> = pairs.iter().map(|p| p.chosen.0.len().max(p.rejected.0.len())).collect();
    for (bi, range) in micro_batches(&lens, 2, micro_batch, micro_batch_tokens).into_iter().enumerate() {
        let chunk = &pairs[range];
        let rows: Vec<Scored> = chunk
            .iter()
            .map(|p| Scored { tokens: &p.chosen.0, mask: &p.chosen.1 })
            .chain(chunk.iter().map(|p| Scored { tokens: &p.rejected.0, mask: &p.rejected.1 }))
            .collect();
        let k = chunk.len();
        let reference = score(model, &rows, Fwd::REFERENCE, false, false)?;
        let ref_seq = seq_logp(&reference.lp, &reference.mask)?.detach();
        model.seed_dropout(derive_seed(dropout_seed, bi as u64, 1));
        let sc = score(model, &rows, Fwd::TRAIN, false, false)?;
        let pol_seq = seq_logp(&sc.lp, &sc.mask)?;
        let d = (pol_seq - &ref_seq)?;
        let (dc, dr) = (d.narrow(0, 0, k)?, d.narrow(0, k, k)?);
        let logits = ((dc.clone() - &dr)? * beta)?;
        let loss = (softplus(&logits.neg()?)?.sum_all()? / n)?;
        let g = loss.backward()?;
        accumulate(&mut grads, opt.collect(&g))?;
        st.loss += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let l: Vec<f64> = logits.to_dtype(DType::F64)?.to_vec1()?;
        acc += l.iter().filter(|&&x| x > 0.0).count() as f64;
        margin += l.iter().sum::<f64>() / beta;
        rc += (dc * beta)?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        rr += (dr * beta)?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        // k3 KL to the reference over the answers' tokens (what the implicit reward pays for).
        let diff = (reference.lp.detach() - sc.lp.detach())?;
        let kl = ((diff.exp()? - &diff)? - 1.0)?.mul(&sc.mask)?;
        kl_sum += kl.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        kl_tokens += sc.mask.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        st.trained_tokens += rows.iter().map(|r| r.tokens.len()).sum::<usize>();
    }
    st.grad_norm = opt.step(&grads)?;
    st.kl = if kl_tokens > 0.0 { kl_sum / kl_tokens } else { 0.0 };
    st.extra.insert("accuracy".into(), acc / n);
    st.extra.insert("margin".into(), margin / n);
    st.extra.insert("chosen_reward".into(), rc / n);
    st.extra.insert("rejected_reward".into(), rr / n);
    Ok(st)
}
