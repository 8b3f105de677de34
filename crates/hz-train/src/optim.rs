//! AdamW with its state in plain tensors, so a checkpoint holds everything needed to resume
//! bit for bit (candle-nn's optimiser keeps its moments private).

use candle_core::{Tensor, Var};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 = off).
    pub max_grad_norm: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, max_grad_norm: 1.0 }
    }
}

pub struct AdamW {
    pub config: AdamWConfig,
    vars: Vec<Var>,
    /// First and second moments, one pair per variable.
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// Steps taken (bias correction).
    pub t: u64,
}

impl AdamW {
    pub fn new(vars: Vec<Var>, config: AdamWConfig) -> candle_core::Result<Self> {
        let m = vars.iter().map(|v| v.as_tensor().zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self { config, vars, m, v, t: 0 })
    }

    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// Gradients of the variables, in order, from one backward pass.
    pub fn collect(&self, grads: &candle_core::backprop::GradStore) -> Vec<Option<Tensor>> {
        self.vars.iter().map(|v| grads.get(v.as_tensor()).cloned()).collect()
    }

    /// One update from `grads` (aligned with the variables); returns the gradient norm before
    /// clipping. Variables without a gradient (not on the loss path) are left alone.
    pub fn step(&mut self, grads: &[Option<Tensor>]) -> candle_core::Result<f64> {
        let c = self.config;
        let mut sq = 0.0f64;
        for g in grads.iter().flatten() {
            sq += g.to_dtype(candle_core::DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
        }
        let norm = sq.sqrt();
        let clip = if c.max_grad_norm > 0.0 && norm > c.max_grad_norm { c.max_grad_norm / (norm + 1e-12) } else { 1.0 };
        self.t += 1;
        let t = self.t as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        for (i, var) in self.vars.iter().enumerate() {
            let Some(Some(g)) = grads.get(i) else { continue };
            let g = (g * clip)?;
            let m = ((&self.m[i] * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let update = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + c.eps)?)?;
            let w = var.as_tensor();
            let decayed = if c.weight_decay > 0.0 { (w * (1.0 - c.lr * c.weight_decay))? } else { w.clone() };
            var.set(&(decayed - (update * c.lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(norm)
    }
}

/// Add `more` into `acc` (gradient accumulation over micro-batches).
pub fn accumulate(acc: &mut Vec<Option<Tensor>>, more: Vec<Option<Tensor>>) -> candle_core::Result<()> {
    if acc.is_empty() {
        *acc = more;
        return Ok(());
    }
    for (a, m) in acc.iter_mut().zip(more) {
        *a = match (a.take(), m) {
            (Some(x), Some(y)) => Some((x + y)?),
            (x, None) => x,
            (None, y) => y,
        };
    }
    Ok(())
}
