//! GRPO: for each prompt a group of episodes, advantages normalised within the group, the
//! clipped surrogate on policy tokens only, and a KL penalty to the reference (the base with the
//! adapter off).

use crate::loss::{clipped_pg_loss, group_advantages, micro_batches, per_sequence, score_at, PgConfig, Scored};
use crate::optim::{accumulate, AdamW};
use crate::rollout::{rollout_group, Episode, GymFace};
use crate::TrainError;
use hz_chat::ChatTokenizer;
use hz_llm::generate::Sampling;
use hz_llm::{Fwd, Model};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct GrpoConfig {
    /// Episodes per prompt.
    pub group_size: usize,
    /// Prompts (tasks) per optimiser step.
    pub prompts_per_step: usize,
    /// Passes over each batch of episodes (μ); the ratio departs from 1 from the second on.
    pub epochs: usize,
    pub micro_batch: usize,
    pub micro_batch_tokens: usize,
    pub pg: PgConfig,
    pub sampling: Sampling,
    pub max_turns: usize,
    pub seed: u64,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        Self {
            group_size: 8,
            prompts_per_step: 2,
            epochs: 1,
            micro_batch: 8,
            micro_batch_tokens: 4096,
            pg: PgConfig { clip_eps: 0.2, kl_beta: 0.04 },
            sampling: Sampling { temperature: 1.0, top_p: 1.0, max_new_tokens: 64, ..Sampling::default() },
            max_turns: 4,
            seed: 0,
        }
    }
}

/// What one step did (one JSON line in `metrics.jsonl`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepMetrics {
    pub step: u64,
    pub reward_mean: f64,
    pub reward_std: f64,
    /// Per reward source: (mean, std) over the step's episodes.
    pub reward_items: BTreeMap<String, (f64, f64)>,
    pub kl: f64,
    pub loss: f64,
    pub clip_fraction: f64,
    pub entropy: f64,
    pub completion_len: f64,
    pub tokens_per_s: f64,
    /// Tokens run through the training forward passes.
    pub trained_tokens: usize,
    pub grad_norm: f64,
    /// Groups whose rewards were all equal (no signal).
    pub flat_groups: usize,
    pub episodes: usize,
    /// What only some algorithms measure (DPO accuracy and margin, PPO value loss...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, f64>,
}

/// A seed for (run, step, index) that does not depend on anything else.
pub fn derive_seed(seed: u64, step: u64, index: u64) -> u64 {
    let mut x = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^ (x >> 33)
}

/// Play the step's groups.
pub fn collect(
    model: &Model,
    chat: &ChatTokenizer,
    face: &GymFace,
    cfg: &GrpoConfig,
    step: u64,
) -> Result<Vec<Episode>, TrainError> {
    let mut all = Vec::new();
    for p in 0..cfg.prompts_per_step {
        let task_seed = derive_seed(cfg.seed, step, p as u64);
        let mut s = cfg.sampling.clone();
        s.seed = derive_seed(cfg.seed ^ 0x5A5A, step, p as u64);
        all.extend(rollout_group(model, chat, face, task_seed, cfg.group_size, &s, cfg.max_turns)?);
    }
    Ok(all)
}

/// One GRPO step: roll out, score, update the adapter.
pub fn step(
    model: &Model,
    chat: &ChatTokenizer,
    face: &GymFace,
    opt: &mut AdamW,
    cfg: &GrpoConfig,
    step: u64,
) -> Result<StepMetrics, TrainError> {
    let started = Instant::now();
    let episodes = collect(model, chat, face, cfg, step)?;
    let mut m = update(model, opt, cfg, &episodes, step)?;
    let generated: usize = episodes.iter().map(|e| e.completion_tokens).sum();
    m.tokens_per_s = (generated + m.trained_tokens) as f64 / started.elapsed().as_secs_f64().max(1e-9);
    Ok(m)
}

/// The learning half of a step: advantages within each group of `cfg.group_size` episodes,
/// then the clipped, KL-penalised update of the adapter.
pub fn update(
    model: &Model,
    opt: &mut AdamW,
    cfg: &GrpoConfig,
    episodes: &[Episode],
    step: u64,
) -> Result<StepMetrics, TrainError> {
    let rewards: Vec<f64> = episodes.iter().map(|e| e.reward).collect();
    let (adv, flat_groups) = group_advantages(&rewards, cfg.group_size, 1e-6);
    let mut m = summarize(step, episodes);
    m.flat_groups = flat_groups;
    // Episodes with zero advantage carry only the KL term; with β = 0 they are skipped. A
    // step whose groups are all flat is skipped whole, as DAPO's dynamic sampling drops such
    // groups: it has no learning signal, and an Adam step on the KL gradient alone is
    // normalised up to a full-size step of sampling noise (tried: on the learning test it
    // drove the policy into a degenerate answer that the KL term never pulled back).
    let chosen: Vec<usize> = (0..episodes.len())
        .filter(|&i| (adv[i] != 0.0 || cfg.pg.kl_beta > 0.0) && episodes[i].mask.iter().any(|&b| b))
        .collect();
    let scored: Vec<Scored> =
        chosen.iter().map(|&i| Scored { tokens: &episodes[i].tokens, mask: &episodes[i].mask }).collect();
    let total_tokens: f64 = scored.iter().map(|s| s.mask.iter().skip(1).filter(|&&b| b).count() as f64).sum();
    let mut trained_tokens = 0usize;
    if !scored.is_empty() && total_tokens > 0.0 && chosen.iter().any(|&i| adv[i] != 0.0) {
        let temp = cfg.sampling.temperature;
        let lens: Vec<usize> = scored.iter().map(|s| s.tokens.len()).collect();
        let batches = micro_batches(&lens, 1, cfg.micro_batch, cfg.micro_batch_tokens);
        // Old-policy and reference log-probabilities, fixed for the whole step. With a single
        // pass the old policy is the one being trained, so its log-probabilities are the
        // training pass's own, detached: one forward pass fewer per step.
        let mut fixed = Vec::with_capacity(batches.len());
        for b in &batches {
            let rows = &scored[b.clone()];
            let old = if cfg.epochs > 1 {
                Some(score_at(model, rows, Fwd::POLICY, temp, false, false)?.lp.detach())
            } else {
                None
            };
            let reference = if cfg.pg.kl_beta > 0.0 {
                Some(score_at(model, rows, Fwd::REFERENCE, temp, false, false)?.lp.detach())
            } else {
                None
            };
            fixed.push((old, reference));
        }
        let mut stats = (0.0, 0.0, 0.0, 0.0);
        for epoch in 0..cfg.epochs.max(1) {
            let mut grads = Vec::new();
            for (bi, b) in batches.iter().enumerate() {
                model.seed_dropout(derive_seed(cfg.seed ^ 0xD0, step, (epoch * batches.len() + bi) as u64));
                let rows = &scored[b.clone()];
                let sc = score_at(model, rows, Fwd::TRAIN, temp, true, false)?;
                let (lp, mask) = (&sc.lp, &sc.mask);
                let a: Vec<f64> = chosen[b.clone()].iter().map(|&i| adv[i]).collect();
                let a = per_sequence(&a, lp.dtype(), lp.device())?;
                let (old, reference) = &fixed[bi];
                let old = old.clone().unwrap_or_else(|| lp.detach());
                let (loss, st) = clipped_pg_loss(lp, &old, reference.as_ref(), &a, mask, sc.entropy.as_ref(), cfg.pg)?;
                // Token mean over the whole step, not per micro-batch.
                let w = st.tokens / total_tokens;
                let g = (loss * w)?.backward()?;
                accumulate(&mut grads, opt.collect(&g))?;
                stats.0 += st.loss * w;
                stats.1 += st.kl * w;
                stats.2 += st.clip_fraction * w;
                stats.3 += st.entropy * w;
                trained_tokens += rows.iter().map(|r| r.tokens.len()).sum::<usize>();
            }
            m.grad_norm = opt.step(&grads)?;
        }
        let e = cfg.epochs.max(1) as f64;
        m.loss = stats.0 / e;
        m.kl = stats.1 / e;
        m.clip_fraction = stats.2 / e;
        m.entropy = stats.3 / e;
    }
    m.trained_tokens = trained_tokens;
    Ok(m)
}

/// Reward statistics of a set of episodes.
pub fn summarize(step: u64, episodes: &[Episode]) -> StepMetrics {
    let n = episodes.len().max(1) as f64;
    let mean_std = |xs: &[f64]| {
        let mean = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len().max(1) as f64;
        (mean, var.sqrt())
    };
    let rewards: Vec<f64> = episodes.iter().map(|e| e.reward).collect();
    let (reward_mean, reward_std) = mean_std(&rewards);
    let mut sources: Vec<String> = episodes.iter().flat_map(|e| e.items.keys().cloned()).collect();
    sources.sort();
    sources.dedup();
    let reward_items = sources
        .into_iter()
        .map(|s| {
            let xs: Vec<f64> = episodes.iter().map(|e| e.items.get(&s).copied().unwrap_or(0.0)).collect();
            (s, mean_std(&xs))
        })
        .collect();
    StepMetrics {
        step,
        reward_mean,
        reward_std,
        reward_items,
        completion_len: episodes.iter().map(|e| e.completion_tokens as f64).sum::<f64>() / n,
        episodes: episodes.len(),
        ..StepMetrics::default()
    }
}
