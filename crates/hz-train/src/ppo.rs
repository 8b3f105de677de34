//! PPO with a value head and GAE over multi-turn episodes. The value head is a linear map of
//! the policy's last hidden state (shared trunk, its LoRA included), read at every position
//! that predicts a policy token. Rewards per policy token: `-kl_beta·(log π_old - log π_ref)`
//! (the KL penalty as reward, as in RLHF PPO), plus each turn's gym reward on the turn's last
//! policy token. GAE runs over policy tokens only: environment tokens are not actions, so the
//! next state after a turn's last token is the first token of the next turn.

use crate::grpo::{self, derive_seed, StepMetrics};
use crate::loss::{clipped_pg_loss, micro_batches, score_at, PgConfig, Scored};
use crate::optim::{accumulate, AdamW};
use crate::rollout::{Episode, GymFace};
use crate::run::TrainConfig;
use crate::TrainError;
use candle_core::{DType, Tensor, Var, D};
use hz_chat::ChatTokenizer;
use hz_llm::{Fwd, Model};
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PpoConfig {
    /// Discount γ per policy token.
    pub gamma: f64,
    /// GAE's λ.
    pub lam: f64,
    /// Weight of the value loss.
    pub vf_coef: f64,
    /// Clip range of the value update around the rollout's values.
    pub value_clip: f64,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self { gamma: 1.0, lam: 0.95, vf_coef: 0.1, value_clip: 0.2 }
    }
}

impl PpoConfig {
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field: &str, reason: &str| Err(TrainError::Config { field: field.into(), reason: reason.into() });
        if !(0.0..=1.0).contains(&self.gamma) {
            return bad("ppo.gamma", "must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.lam) {
            return bad("ppo.lam", "must be in [0, 1]");
        }
        if !(self.vf_coef.is_finite() && self.vf_coef >= 0.0) {
            return bad("ppo.vf_coef", "must be 0 or more");
        }
        if !(self.value_clip.is_finite() && self.value_clip > 0.0) {
            return bad("ppo.value_clip", "must be a positive number");
        }
        Ok(())
    }
}

/// `V(h) = h·w + b`, zero-initialised (every state starts valued at 0).
pub struct ValueHead {
    pub w: Var,
    pub b: Var,
}

impl ValueHead {
    pub fn new(model: &Model) -> Result<Self, TrainError> {
        let h = model.config.hidden_size;
        let w = Var::from_tensor(&Tensor::zeros((h, 1), model.dtype(), model.device())?)?;
        let b = Var::from_tensor(&Tensor::zeros(1, model.dtype(), model.device())?)?;
        Ok(Self { w, b })
    }

    pub fn from_tensors(w: Tensor, b: Tensor) -> Result<Self, TrainError> {
        Ok(Self { w: Var::from_tensor(&w)?, b: Var::from_tensor(&b)? })
    }

    /// Named variables, in the optimiser's order.
    pub fn named(&self) -> Vec<(&'static str, &Var)> {
        vec![("value.w", &self.w), ("value.b", &self.b)]
    }

    /// Values `[b, s]` of hidden states `[b, s, hidden]`.
    pub fn values(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        hidden.broadcast_matmul(self.w.as_tensor())?.squeeze(D::Minus1)?.broadcast_add(self.b.as_tensor())
    }
}

/// Advantages and returns of one row by GAE over its policy positions. `mask[t]` marks the
/// positions that predict a policy token; `turn_rewards[k]` goes to the last position of the
/// k-th run of policy positions (the turn's last token). When the runs and the turns do not
/// line up, the whole reward goes to the last policy position.
pub fn gae(
    values: &[f32],
    token_rewards: &[f32],
    mask: &[bool],
    turn_rewards: &[f64],
    gamma: f64,
    lam: f64,
) -> (Vec<f32>, Vec<f32>) {
    let n = mask.len();
    let positions: Vec<usize> = (0..n).filter(|&t| mask[t]).collect();
    let mut r: Vec<f64> = (0..n).map(|t| token_rewards.get(t).copied().unwrap_or(0.0) as f64).collect();
    let ends: Vec<usize> = positions.iter().copied().filter(|&t| t + 1 >= n || !mask[t + 1]).collect();
    if ends.len() == turn_rewards.len() {
        for (&t, &tr) in ends.iter().zip(turn_rewards) {
            r[t] += tr;
        }
    } else if let Some(&last) = positions.last() {
        r[last] += turn_rewards.iter().sum::<f64>();
    }
    let mut adv = vec![0f32; n];
    let mut ret = vec![0f32; n];
    let mut next_value = 0.0;
    let mut running = 0.0;
    for &t in positions.iter().rev() {
        let v = values[t] as f64;
        let delta = r[t] + gamma * next_value - v;
        running = delta + gamma * lam * running;
        adv[t] = running as f32;
        ret[t] = (running + v) as f32;
        next_value = v;
    }
    (adv, ret)
}

/// One PPO step: rollouts, values and reference log-probabilities, GAE, then `epochs` passes
/// of the clipped policy loss plus the clipped value loss.
pub fn step(
    model: &Model,
    chat: &ChatTokenizer,
    face: &GymFace,
    opt: &mut AdamW,
    head: &ValueHead,
    cfg: &TrainConfig,
    step: u64,
) -> Result<StepMetrics, TrainError> {
    let started = Instant::now();
    let g = cfg.grpo();
    let episodes = grpo::collect(model, chat, face, &g, step)?;
    let mut m = update(model, opt, head, cfg, &episodes, step)?;
    let generated: usize = episodes.iter().map(|e| e.completion_tokens).sum();
    m.tokens_per_s = (generated + m.trained_tokens) as f64 / started.elapsed().as_secs_f64().max(1e-9);
    Ok(m)
}

struct Fixed {
    old_lp: Tensor,
    old_v: Tensor,
    adv: Vec<Vec<f32>>,
    /// Which positions predict a policy token, per row.
    policy: Vec<Vec<bool>>,
    ret: Tensor,
}

/// The learning half of a PPO step on `episodes`.
pub fn update(
    model: &Model,
    opt: &mut AdamW,
    head: &ValueHead,
    cfg: &TrainConfig,
    episodes: &[Episode],
    step: u64,
) -> Result<StepMetrics, TrainError> {
    let mut m = grpo::summarize(step, episodes);
    let chosen: Vec<&Episode> = episodes.iter().filter(|e| e.mask.iter().skip(1).any(|&b| b)).collect();
    if chosen.is_empty() {
        return Ok(m);
    }
    let dev = model.device().clone();
    let dtype = model.dtype();
    let lens: Vec<usize> = chosen.iter().map(|e| e.tokens.len()).collect();
    let batches: Vec<&[&Episode]> =
        micro_batches(&lens, 1, cfg.micro_batch, cfg.micro_batch_tokens).into_iter().map(|r| &chosen[r]).collect();
    let (pp, kl_beta) = (&cfg.ppo, cfg.kl_beta);
    let temp = cfg.temperature;
    // Rollout-time quantities, fixed for the step.
    let mut fixed = Vec::with_capacity(batches.len());
    let (mut kl_sum, mut n_tok) = (0.0f64, 0.0f64);
    for b in &batches {
        let rows: Vec<Scored> = b.iter().map(|e| Scored { tokens: &e.tokens, mask: &e.mask }).collect();
        let pol = score_at(model, &rows, Fwd::POLICY, temp, false, true)?;
        let reference = score_at(model, &rows, Fwd::REFERENCE, temp, false, false)?;
        let hidden = pol.hidden.as_ref().ok_or_else(|| TrainError::Run("no hidden states".into()))?;
        let old_v = head.values(&hidden.detach())?.detach();
        let old_lp = pol.lp.detach();
        let log_ratio = (&old_lp - &reference.lp.detach())?;
        let k3 = {
            let d = log_ratio.neg()?;
            ((d.exp()? - &d)? - 1.0)?
        };
        kl_sum += k3.mul(&pol.mask)?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        n_tok += pol.mask.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        let tok_r: Vec<Vec<f32>> = (log_ratio * (-kl_beta))?.to_dtype(DType::F32)?.to_vec2()?;
        let vals: Vec<Vec<f32>> = old_v.to_dtype(DType::F32)?.to_vec2()?;
        let masks: Vec<Vec<f32>> = pol.mask.to_dtype(DType::F32)?.to_vec2()?;
        let (mut advs, mut rets, mut policy) = (Vec::new(), Vec::new(), Vec::new());
        for (i, e) in b.iter().enumerate() {
            let mask: Vec<bool> = masks[i].iter().map(|&x| x > 0.5).collect();
            let (a, r) = gae(&vals[i], &tok_r[i], &mask, &e.turn_rewards, pp.gamma, pp.lam);
            advs.push(a);
            rets.push(r);
            policy.push(mask);
        }
        let s = rets.first().map_or(0, Vec::len);
        let ret = Tensor::from_vec(rets.concat(), (b.len(), s), &dev)?.to_dtype(dtype)?;
        fixed.push(Fixed { old_lp, old_v, adv: advs, policy, ret });
    }
    // Whiten the advantages over every policy token of the step.
    let all: Vec<f64> = fixed
        .iter()
        .flat_map(|f| f.adv.iter().zip(&f.policy))
        .flat_map(|(a, p)| a.iter().zip(p).filter(|(_, &on)| on).map(|(&x, _)| x as f64))
        .collect();
    let mean = all.iter().sum::<f64>() / all.len().max(1) as f64;
    let std = (all.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / all.len().max(1) as f64).sqrt();
    let total_tokens = n_tok.max(1.0);
    let pg = PgConfig { clip_eps: cfg.clip_eps, kl_beta: 0.0 };
    let (mut loss_sum, mut vloss_sum, mut clip_sum, mut ent_sum) = (0.0, 0.0, 0.0, 0.0);
    let mut trained_tokens = 0;
    let epochs = cfg.epochs.max(1);
    for epoch in 0..epochs {
        let mut grads = Vec::new();
        for (bi, b) in batches.iter().enumerate() {
            let f = &fixed[bi];
            let s = f.adv.first().map_or(0, Vec::len);
            let adv: Vec<f32> = f.adv.iter().flatten().map(|&a| ((a as f64 - mean) / (std + 1e-8)) as f32).collect();
            let adv = Tensor::from_vec(adv, (b.len(), s), &dev)?.to_dtype(dtype)?;
            model.seed_dropout(derive_seed(cfg.seed ^ 0xD0, step, (epoch * batches.len() + bi) as u64));
            let rows: Vec<Scored> = b.iter().map(|e| Scored { tokens: &e.tokens, mask: &e.mask }).collect();
            let sc = score_at(model, &rows, Fwd::TRAIN, temp, true, true)?;
            let hidden = sc.hidden.as_ref().ok_or_else(|| TrainError::Run("no hidden states".into()))?;
            let (pl, st) = clipped_pg_loss(&sc.lp, &f.old_lp, None, &adv, &sc.mask, sc.entropy.as_ref(), pg)?;
            // Clipped value loss: ½·max((V - R)², (V_old + clip(V - V_old) - R)²).
            let v = head.values(hidden)?;
            let c = pp.value_clip;
            let v_clipped = (&f.old_v + (&v - &f.old_v)?.clamp(-c, c)?)?;
            let l1 = (&v - &f.ret)?.sqr()?;
            let l2 = (v_clipped - &f.ret)?.sqr()?;
            let vl = (l1.maximum(&l2)?.mul(&sc.mask)?.sum_all()? * (0.5 / total_tokens))?;
            let w = st.tokens / total_tokens;
            let loss = ((pl * w)? + (&vl * pp.vf_coef)?)?;
            let gr = loss.backward()?;
            accumulate(&mut grads, opt.collect(&gr))?;
            loss_sum += st.loss * w;
            vloss_sum += vl.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            clip_sum += st.clip_fraction * w;
            ent_sum += st.entropy * w;
            trained_tokens += rows.iter().map(|r| r.tokens.len()).sum::<usize>();
        }
        m.grad_norm = opt.step(&grads)?;
    }
    let e = epochs as f64;
    m.loss = loss_sum / e;
    m.kl = kl_sum / n_tok.max(1.0);
    m.clip_fraction = clip_sum / e;
    m.entropy = ent_sum / e;
    m.trained_tokens = trained_tokens;
    m.extra.insert("value_loss".into(), vloss_sum / e);
    m.extra.insert("advantage_std".into(), std);
    Ok(m)
}
