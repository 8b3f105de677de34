//! CPU f32 kernels, each with a hand-written backward pass, for the ops where a training step
//! spends its time outside matrix products. Composed from basic ops (see `ops`), each of these
//! costs four to eight passes over memory and as many fresh allocations forward, and as many
//! again backward; the log-softmax over the vocabulary alone is a dozen passes over a
//! `[tokens, vocab]` tensor. Here each is one pass forward and one backward.
//!
//! The functions in `ops` pick these kernels for contiguous f32 CPU tensors whose constant
//! inputs (norm weight, mask, rotary tables) carry no gradient, and fall back to the composed
//! versions everywhere else (CUDA, half precision), so both always give the same values.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use std::ops::Range;

/// The contiguous f32 data `layout` describes.
pub(crate) fn f32s<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { bail!("{op}: f32 only, got {:?}", s.dtype()) };
    let Some((a, b)) = l.contiguous_offsets() else { bail!("{op}: input is not contiguous") };
    Ok(&v[a..b])
}

/// The same for a tensor's storage, which must be on the CPU.
pub(crate) fn tensor_f32s<'a>(s: &'a candle_core::Storage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let candle_core::Storage::Cpu(s) = s else { bail!("{op}: tensor is not on the CPU") };
    f32s(s, l, op)
}

fn last_dim(l: &Layout, op: &str) -> Result<usize> {
    match l.dims().last() {
        Some(&d) if d > 0 => Ok(d),
        _ => bail!("{op}: needs a non-empty last dimension, got {:?}", l.dims()),
    }
}

/// An output buffer that threads of candle's pool fill in disjoint parts.
pub(crate) struct Out(*mut f32, usize);

// SAFETY: every user hands each thread its own disjoint part (`par`, the attention tasks,
// the matmul blocks),
// so no two threads write the same element; the buffer outlives the pool call.
unsafe impl Sync for Out {}

impl Out {
    pub(crate) fn new(buf: &mut [f32]) -> Self {
        Out(buf.as_mut_ptr(), buf.len())
    }

    /// Over the spare capacity of `v`, for kernels that write every value before `set_len`.
    pub(crate) fn spare(v: &mut Vec<f32>) -> Self {
        Out(v.as_mut_ptr(), v.capacity())
    }

    pub(crate) fn ptr(&self, at: usize) -> *mut f32 {
        debug_assert!(at <= self.1);
        self.0.wrapping_add(at)
    }

    /// # Safety
    /// The caller writes only inside `range`, which no other thread is given.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn part(&self, range: Range<usize>) -> &mut [f32] {
        debug_assert!(range.end <= self.1);
        std::slice::from_raw_parts_mut(self.0.add(range.start), range.end - range.start)
    }
}

/// Fills `out` (`items × width` values) by calling `f(item, part)` for every item, spread
/// over candle's CPU thread pool; `cost` is how many input values one item reads, which is
/// what decides whether the pool is worth waking.
fn par(out: &mut [f32], width: usize, cost: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let items = out.len().checked_div(width).unwrap_or(0);
    if items.saturating_mul(cost) < SERIAL {
        for (i, part) in out.chunks_exact_mut(width.max(1)).enumerate().take(items) {
            f(i, part);
        }
        return;
    }
    let o = Out(out.as_mut_ptr(), out.len());
    candle_core::utils::barrier_pool().execute_chunked(items, |range| {
        for i in range {
            // SAFETY: `execute_chunked` hands each item to exactly one thread.
            let part = unsafe { o.part(i * width..(i + 1) * width) };
            f(i, part);
        }
    });
}

/// Elementwise ops run over chunks of this many values.
const CHUNK: usize = 4096;

/// Below this many values read the work is done on the calling thread: waking the pool costs
/// more than it saves (token-by-token generation is all such small ops).
const SERIAL: usize = 16 * 1024;

/// `f(range)` over `0..n` in chunks, on the pool; `f` writes only its own range.
fn par_elems(n: usize, f: impl Fn(Range<usize>) + Sync) {
    if n < SERIAL {
        f(0..n);
        return;
    }
    candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(CHUNK), |chunks| {
        for c in chunks {
            f(c * CHUNK..((c + 1) * CHUNK).min(n));
        }
    });
}

fn max(x: &[f32]) -> f32 {
    x.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// `f(row index, row)` for every row of the last dimension, one value each: the result has
/// the input's shape without its last dimension.
fn reduce_rows(
    s: &CpuStorage,
    l: &Layout,
    op: &str,
    f: impl Fn(usize, &[f32]) -> f32 + Sync,
) -> Result<(CpuStorage, Shape)> {
    let x = f32s(s, l, op)?;
    let v = last_dim(l, op)?;
    let mut out = vec![0f32; x.len() / v];
    par(&mut out, 1, v, |r, o| o[0] = f(r, &x[r * v..(r + 1) * v]));
    let dims = l.dims();
    Ok((CpuStorage::F32(out), Shape::from(&dims[..dims.len() - 1])))
}

// ---------------------------------------------------------------------------------------------
// Log-probability of a target token, and the entropy, at a temperature.

/// `log softmax(x / T)[target]` per row of `x: [.., vocab]`; `targets` has one id per row.
pub struct TokenLogprobs {
    pub targets: Vec<u32>,
    /// `1 / T`.
    pub inv_t: f32,
}

impl TokenLogprobs {
    fn check(&self, rows: usize, vocab: usize) -> Result<()> {
        if self.targets.len() != rows {
            bail!("token-logprobs: {} targets for {rows} rows", self.targets.len());
        }
        if let Some(&t) = self.targets.iter().find(|&&t| t as usize >= vocab) {
            bail!("token-logprobs: target id {t} is outside the vocabulary ({vocab})");
        }
        Ok(())
    }
}

impl CustomOp1 for TokenLogprobs {
    fn name(&self) -> &'static str {
        "token-logprobs"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let v = last_dim(l, self.name())?;
        self.check(l.shape().elem_count() / v, v)?;
        let k = self.inv_t;
        reduce_rows(s, l, self.name(), |r, x| {
            let m = max(x) * k;
            let sum: f32 = x.iter().map(|&xi| (xi * k - m).exp()).sum();
            x[self.targets[r] as usize] * k - m - sum.ln()
        })
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = TokenLogprobsBwd { targets: self.targets.clone(), inv_t: self.inv_t };
        Ok(Some(arg.apply_op3_no_bwd(res, &grad.contiguous()?, &op)?))
    }
}

/// `d lp / d x = g / T · (onehot(target) - softmax(x / T))`; the log-sum-exp comes back from
/// the forward result as `x[target] / T - lp`, so no second reduction is needed.
struct TokenLogprobsBwd {
    targets: Vec<u32>,
    inv_t: f32,
}

impl CustomOp3 for TokenLogprobsBwd {
    fn name(&self) -> &'static str {
        "token-logprobs-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let lp = f32s(s2, l2, self.name())?;
        let g = f32s(s3, l3, self.name())?;
        let v = last_dim(l1, self.name())?;
        let rows = x.len() / v;
        if lp.len() != rows || g.len() != rows || self.targets.len() != rows {
            bail!("{}: {rows} rows, {} log-probs, {} gradients", self.name(), lp.len(), g.len());
        }
        let k = self.inv_t;
        let mut out = vec![0f32; x.len()];
        par(&mut out, v, v, |r, o| {
            let x = &x[r * v..(r + 1) * v];
            let t = self.targets[r] as usize;
            let lse = x[t] * k - lp[r];
            let gk = g[r] * k;
            for (oj, &xj) in o.iter_mut().zip(x) {
                *oj = -gk * (xj * k - lse).exp();
            }
            o[t] += gk;
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Entropy of `softmax(x / T)` per row; no gradient (a metric).
pub struct Entropy {
    pub inv_t: f32,
}

impl CustomOp1 for Entropy {
    fn name(&self) -> &'static str {
        "entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let k = self.inv_t;
        reduce_rows(s, l, self.name(), |_, x| {
            let m = max(x) * k;
            // H = log Σe^z - Σ p z with z = x/T - max (shift-invariant, so exact).
            let (mut sum, mut ez) = (0f32, 0f32);
            for &xi in x {
                let z = xi * k - m;
                let e = z.exp();
                sum += e;
                ez += e * z;
            }
            sum.ln() - ez / sum
        })
    }
}

// ---------------------------------------------------------------------------------------------
// RMS norm.

/// `x / sqrt(mean(x²) + eps) * (w + offset)` over the last dimension; the weight gets no
/// gradient (base weights are frozen).
pub struct RmsNorm {
    pub eps: f32,
    pub offset: f32,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let w = f32s(s2, l2, self.name())?;
        let d = last_dim(l1, self.name())?;
        if w.len() != d {
            bail!("{}: weight of {} for a last dimension of {d}", self.name(), w.len());
        }
        let w: Vec<f32> = w.iter().map(|&wi| wi + self.offset).collect();
        let mut out = vec![0f32; x.len()];
        par(&mut out, d, d, |r, o| {
            let x = &x[r * d..(r + 1) * d];
            let ms = x.iter().map(|&xi| xi * xi).sum::<f32>() / d as f32;
            let inv = 1.0 / (ms + self.eps).sqrt();
            for ((oj, &xj), &wj) in o.iter_mut().zip(x).zip(&w) {
                *oj = xj * inv * wj;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = RmsNormBwd { eps: self.eps, offset: self.offset };
        Ok((Some(x.apply_op3_no_bwd(w, &grad.contiguous()?, &op)?), None))
    }
}

/// `dx_j = r·w_j·g_j - x_j·r³/d · Σ_i g_i·w_i·x_i` with `r = 1/sqrt(mean(x²) + eps)`.
struct RmsNormBwd {
    eps: f32,
    offset: f32,
}

impl CustomOp3 for RmsNormBwd {
    fn name(&self) -> &'static str {
        "rms-norm-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let w = f32s(s2, l2, self.name())?;
        let g = f32s(s3, l3, self.name())?;
        let d = last_dim(l1, self.name())?;
        if w.len() != d || g.len() != x.len() {
            bail!("{}: shapes {:?} {:?} {:?}", self.name(), l1.dims(), l2.dims(), l3.dims());
        }
        let w: Vec<f32> = w.iter().map(|&wi| wi + self.offset).collect();
        let mut out = vec![0f32; x.len()];
        par(&mut out, d, d, |r, o| {
            let x = &x[r * d..(r + 1) * d];
            let g = &g[r * d..(r + 1) * d];
            let ms = x.iter().map(|&xi| xi * xi).sum::<f32>() / d as f32;
            let inv = 1.0 / (ms + self.eps).sqrt();
            let dot: f32 = x.iter().zip(g).zip(&w).map(|((&xi, &gi), &wi)| xi * gi * wi).sum();
            let c = inv * inv * inv * dot / d as f32;
            for (((oj, &xj), &gj), &wj) in o.iter_mut().zip(x).zip(g).zip(&w) {
                *oj = inv * wj * gj - xj * c;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

// ---------------------------------------------------------------------------------------------
// Attention softmax.

/// `softmax(x · scale + mask)` over the last dimension, `x: [b, h, s, t]` and an additive
/// `mask: [b, 1, s, t]` shared by the heads; the mask gets no gradient.
pub struct MaskedSoftmax {
    pub scale: f32,
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let m = f32s(s2, l2, self.name())?;
        let (b, h, s, t) = l1.shape().dims4()?;
        if l2.dims() != [b, 1, s, t] {
            bail!("{}: mask {:?} for scores {:?}", self.name(), l2.dims(), l1.dims());
        }
        let k = self.scale;
        let mut out = vec![0f32; x.len()];
        par(&mut out, t, t, |r, o| {
            let (bi, si) = (r / (h * s), r % s);
            o.copy_from_slice(&x[r * t..(r + 1) * t]);
            masked_softmax_row(o, &m[(bi * s + si) * t..(bi * s + si + 1) * t], k);
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _m: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = SoftmaxBwd { scale: self.scale };
        Ok((Some(res.apply_op2_no_bwd(&grad.contiguous()?, &op)?), None))
    }
}

/// `row = softmax(row · scale + mask)` in place; a row whose keys are all masked comes out
/// uniform, not NaN (the mask is large and finite). Returns the row's maximum and the
/// reciprocal of its sum, from which [`softmax_row_again`] recomputes the same values.
pub(crate) fn masked_softmax_row(row: &mut [f32], mask: &[f32], scale: f32) -> (f32, f32) {
    let mut mx = f32::NEG_INFINITY;
    for (x, &m) in row.iter_mut().zip(mask) {
        *x = *x * scale + m;
        mx = mx.max(*x);
    }
    let mut sum = 0f32;
    for x in row.iter_mut() {
        *x = (*x - mx).exp();
        sum += *x;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|x| *x *= inv);
    (mx, inv)
}

/// [`masked_softmax_row`] again from the raw scores and its `(max, 1/sum)`: the same float
/// operations in the same order, so the same values bit for bit.
pub(crate) fn softmax_row_again(row: &mut [f32], mask: &[f32], scale: f32, (mx, inv): (f32, f32)) {
    for (x, &m) in row.iter_mut().zip(mask) {
        *x = (*x * scale + m - mx).exp() * inv;
    }
}

/// The softmax backward in place: `g ← scale · y ⊙ (g − Σ g⊙y)` from the output `y`.
pub(crate) fn softmax_grad_row(g: &mut [f32], y: &[f32], scale: f32) {
    let dot: f32 = y.iter().zip(g.iter()).map(|(&a, &b)| a * b).sum();
    g.iter_mut().zip(y).for_each(|(gj, &yj)| *gj = scale * yj * (*gj - dot));
}

/// `dx = scale · y ⊙ (g - Σ g⊙y)` from the softmax output `y`.
struct SoftmaxBwd {
    scale: f32,
}

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "masked-softmax-bwd"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = f32s(s1, l1, self.name())?;
        let g = f32s(s2, l2, self.name())?;
        let t = last_dim(l1, self.name())?;
        if g.len() != y.len() {
            bail!("{}: shapes {:?} {:?}", self.name(), l1.dims(), l2.dims());
        }
        let mut out = vec![0f32; y.len()];
        par(&mut out, t, t, |r, o| {
            o.copy_from_slice(&g[r * t..(r + 1) * t]);
            softmax_grad_row(o, &y[r * t..(r + 1) * t], self.scale);
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

// ---------------------------------------------------------------------------------------------
// Rotary embedding.

/// One head's `d` values rotated pair by pair by the angles whose cosines and sines are `c`,
/// `s` (`sign` -1 rotates back): pairs `(i, i + d/2)`, or `(2i, 2i + 1)` when `interleaved`.
pub(crate) fn rotate_pairs(x: &[f32], c: &[f32], s: &[f32], sign: f32, interleaved: bool, out: &mut [f32]) {
    let half = x.len() / 2;
    for i in 0..half {
        let (ia, ib) = if interleaved { (2 * i, 2 * i + 1) } else { (i, i + half) };
        let (a, b, ci, si) = (x[ia], x[ib], c[i], sign * s[i]);
        out[ia] = a * ci - b * si;
        out[ib] = a * si + b * ci;
    }
}

/// Rotary embedding of `x: [b, h, s, d]` by `cos, sin: [b, 1, s, d/2]`. The backward pass is
/// the inverse rotation (the same op with `sin` negated); the tables get no gradient.
#[derive(Clone, Copy)]
pub struct Rope {
    pub interleaved: bool,
    pub inverse: bool,
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let cos = f32s(s2, l2, self.name())?;
        let sin = f32s(s3, l3, self.name())?;
        let (b, h, s, d) = l1.shape().dims4()?;
        let half = d / 2;
        if d % 2 != 0 || l2.dims() != [b, 1, s, half] || l3.dims() != [b, 1, s, half] {
            bail!("{}: tables {:?} {:?} for {:?}", self.name(), l2.dims(), l3.dims(), l1.dims());
        }
        let sign = if self.inverse { -1.0f32 } else { 1.0 };
        let mut out = vec![0f32; x.len()];
        par(&mut out, d, d, |r, o| {
            let (bi, si) = (r / (h * s), r % s);
            let x = &x[r * d..(r + 1) * d];
            let c = &cos[(bi * s + si) * half..(bi * s + si + 1) * half];
            let sn = &sin[(bi * s + si) * half..(bi * s + si + 1) * half];
            rotate_pairs(x, c, sn, sign, self.interleaved, o);
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let inv = Rope { inverse: !self.inverse, ..*self };
        Ok((Some(grad.contiguous()?.apply_op3_no_bwd(cos, sin, &inv)?), None, None))
    }
}

// ---------------------------------------------------------------------------------------------
// Gated MLP activations: SwiGLU (Llama, Qwen2) and GeGLU with tanh GELU (Gemma).

/// The gate's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Silu,
    /// GELU, tanh approximation.
    GeluTanh,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// √(2/π).
const GELU_C: f32 = 0.797_884_6;
const GELU_K: f32 = 0.044_715;

impl Gate {
    fn value(self, x: f32) -> f32 {
        match self {
            Gate::Silu => x * sigmoid(x),
            Gate::GeluTanh => 0.5 * x * (1.0 + (GELU_C * (x + GELU_K * x * x * x)).tanh()),
        }
    }

    /// `(act(x), act'(x))`.
    fn value_and_slope(self, x: f32) -> (f32, f32) {
        match self {
            Gate::Silu => {
                let s = sigmoid(x);
                (x * s, s * (1.0 + x * (1.0 - s)))
            }
            Gate::GeluTanh => {
                let t = (GELU_C * (x + GELU_K * x * x * x)).tanh();
                let slope = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_K * x * x);
                (0.5 * x * (1.0 + t), slope)
            }
        }
    }
}

/// `act(g) ⊙ u`, the gated MLP's activation, with gradients to both: one pass over memory
/// each way where the composed ops take three (SiLU) to eight (tanh GELU).
pub struct GateMul(pub Gate);

impl CustomOp2 for GateMul {
    fn name(&self) -> &'static str {
        match self.0 {
            Gate::Silu => "silu-mul",
            Gate::GeluTanh => "gelu-tanh-mul",
        }
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = f32s(s1, l1, self.name())?;
        let u = f32s(s2, l2, self.name())?;
        if l1.dims() != l2.dims() {
            bail!("{}: shapes {:?} {:?}", self.name(), l1.dims(), l2.dims());
        }
        let gate = self.0;
        let mut out = vec![0f32; g.len()];
        let o = Out(out.as_mut_ptr(), out.len());
        par_elems(g.len(), |range| {
            // SAFETY: `par_elems` gives each range to one thread.
            let part = unsafe { o.part(range.clone()) };
            for ((oj, &gj), &uj) in part.iter_mut().zip(&g[range.clone()]).zip(&u[range]) {
                *oj = gate.value(gj) * uj;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(&self, g: &Tensor, u: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // One pass writes both gradients, stacked: [2, ..shape].
        let both = g.apply_op3_no_bwd(u, &grad.contiguous()?, &GateMulBwd(self.0))?;
        Ok((Some(both.get(0)?), Some(both.get(1)?)))
    }
}

/// `dg = grad ⊙ u ⊙ act'(g)`, `du = grad ⊙ act(g)`, stacked.
struct GateMulBwd(Gate);

impl CustomOp3 for GateMulBwd {
    fn name(&self) -> &'static str {
        "gate-mul-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = f32s(s1, l1, self.name())?;
        let u = f32s(s2, l2, self.name())?;
        let dy = f32s(s3, l3, self.name())?;
        if l1.dims() != l2.dims() || l1.dims() != l3.dims() {
            bail!("{}: shapes {:?} {:?} {:?}", self.name(), l1.dims(), l2.dims(), l3.dims());
        }
        let gate = self.0;
        let n = g.len();
        let mut out = vec![0f32; 2 * n];
        let o = Out(out.as_mut_ptr(), out.len());
        par_elems(n, |range| {
            // SAFETY: each range (and its copy shifted by n) belongs to one thread.
            let (dg, du) = unsafe { (o.part(range.clone()), o.part(n + range.start..n + range.end)) };
            for (j, i) in range.enumerate() {
                let (a, slope) = gate.value_and_slope(g[i]);
                dg[j] = dy[i] * u[i] * slope;
                du[j] = dy[i] * a;
            }
        });
        let mut dims = vec![2];
        dims.extend_from_slice(l1.dims());
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}
