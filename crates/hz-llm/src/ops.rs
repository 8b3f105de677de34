//! The model's operations, with gradients that flow. candle's fused `softmax_last_dim`,
//! `rms_norm` and `rope*` kernels (and `QMatMul`) have no backward pass: a model built on them
//! trains silently wrong. Each function here takes this crate's fused CPU kernel (`fused`, with
//! a hand-written backward) for f32 on the CPU, and otherwise the same op composed from
//! candle's basic ops (`composed`), whose backward candle derives.

use crate::fused;
use crate::matmul::{self, View};
use candle_core::quantized::QTensor;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, D};
use std::sync::Arc;

/// Whether the fused CPU kernels (`fused`) serve these tensors: contiguous-able f32 on the
/// CPU, with the constant operands (`consts`) carrying no gradient.
fn fusable(x: &Tensor, consts: &[&Tensor]) -> bool {
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    cpu_f32(x) && consts.iter().all(|c| cpu_f32(c) && !c.track_op())
}

/// `x / sqrt(mean(x²) + eps) * (w + offset)`, computed in f32 (or f64). The weight is a
/// constant (it gets no gradient on the fused path).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64, offset: f64) -> candle_core::Result<Tensor> {
    if fusable(x, &[w]) {
        let op = fused::RmsNorm { eps: eps as f32, offset: offset as f32 };
        return x.contiguous()?.apply_op2(&w.contiguous()?, op);
    }
    composed::rms_norm(x, w, eps, offset)
}

/// Attention probabilities `softmax(scores · scale + mask)`, `scores: [b, h, s, t]`,
/// `mask: [b, 1, s, t]` (additive, a constant).
pub fn attention_probs(scores: &Tensor, mask: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
    if fusable(scores, &[mask]) {
        return scores.contiguous()?.apply_op2(&mask.contiguous()?, fused::MaskedSoftmax { scale: scale as f32 });
    }
    composed::softmax_last_dim(&(scores * scale)?.broadcast_add(mask)?)
}

/// Rotary embedding of `x: [b, h, s, d]` with `cos, sin: [b, 1, s, d/2]` (per-row positions,
/// so left-padded batches rotate each row by its own positions).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, style: crate::RopeStyle) -> candle_core::Result<Tensor> {
    if fusable(x, &[cos, sin]) {
        let op = fused::Rope { interleaved: style == crate::RopeStyle::Interleaved, inverse: false };
        return x.contiguous()?.apply_op3(&cos.contiguous()?, &sin.contiguous()?, op);
    }
    composed::rope(x, cos, sin, style)
}

/// `silu(g) ⊙ u`, the gated MLP's activation (Llama, Qwen2).
pub fn silu_mul(g: &Tensor, u: &Tensor) -> candle_core::Result<Tensor> {
    if fusable(g, &[]) && fusable(u, &[]) && g.dims() == u.dims() {
        return g.contiguous()?.apply_op2(&u.contiguous()?, fused::GateMul(fused::Gate::Silu));
    }
    candle_nn::ops::silu(g)? * u
}

/// `gelu_tanh(g) ⊙ u`, Gemma's gated MLP activation.
pub fn gelu_tanh_mul(g: &Tensor, u: &Tensor) -> candle_core::Result<Tensor> {
    if fusable(g, &[]) && fusable(u, &[]) && g.dims() == u.dims() {
        return g.contiguous()?.apply_op2(&u.contiguous()?, fused::GateMul(fused::Gate::GeluTanh));
    }
    gelu_tanh(g)? * u
}

/// `log softmax(logits / T)` gathered at `targets` (`logits: [.., vocab]`, `targets: [..]`
/// u32). A temperature of 0 (greedy) or 1 is the plain distribution.
pub fn token_logprobs_at(logits: &Tensor, targets: &Tensor, temperature: f64) -> candle_core::Result<Tensor> {
    let t = if temperature > 0.0 { temperature } else { 1.0 };
    if fusable(logits, &[]) && targets.device().is_cpu() {
        let op = fused::TokenLogprobs { targets: targets.flatten_all()?.to_vec1::<u32>()?, inv_t: (1.0 / t) as f32 };
        return logits.contiguous()?.apply_op1(op);
    }
    let logits = if t != 1.0 { (logits / t)? } else { logits.clone() };
    let lp = composed::log_softmax_last_dim(&logits)?;
    lp.gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?.squeeze(D::Minus1)
}

/// Entropy of `softmax(logits / T)` over the last dimension, detached (a metric).
pub fn entropy_at(logits: &Tensor, temperature: f64) -> candle_core::Result<Tensor> {
    let t = if temperature > 0.0 { temperature } else { 1.0 };
    let logits = logits.detach();
    if fusable(&logits, &[]) {
        return logits.contiguous()?.apply_op1_no_bwd(&fused::Entropy { inv_t: (1.0 / t) as f32 });
    }
    let logits = if t != 1.0 { (logits / t)? } else { logits };
    let a = composed::log_softmax_last_dim(&logits)?;
    (a.exp()? * &a)?.sum(D::Minus1)?.neg()
}

/// Heads of an attention layer: `(query heads, key/value heads, head width)`.
pub type Heads = (usize, usize, usize);

/// Causal self-attention of a layer with no past keys (a scoring or training pass):
/// `q: [b, s, heads·d]`, `k, v: [b, s, kv_heads·d]` as the projections give them, rotary
/// tables `cos, sin: [b, 1, s, d/2]`, additive `mask: [b, 1, s, s]` (constants). Returns
/// `[b, s, heads·d]`. One fused op (`attention`) for f32 on the CPU.
pub fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    (cos, sin, mask): (&Tensor, &Tensor, &Tensor),
    heads: Heads,
    scale: f64,
    style: crate::RopeStyle,
) -> candle_core::Result<Tensor> {
    let (h, hk, d) = heads;
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    if cpu_f32(k) && cpu_f32(v) && fusable(q, &[cos, sin, mask]) {
        let keep = q.track_op() || k.track_op() || v.track_op();
        let op = crate::attention::CausalAttention::new(
            heads,
            scale as f32,
            style == crate::RopeStyle::Interleaved,
            cos.contiguous()?,
            sin.contiguous()?,
            mask.contiguous()?,
            keep,
        );
        return q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op);
    }
    let (b, s, _) = q.dims3()?;
    let split = |t: &Tensor, n: usize| t.reshape((b, s, n, d))?.transpose(1, 2)?.contiguous();
    let q = rope(&split(q, h)?, cos, sin, style)?;
    let k = rope(&split(k, hk)?, cos, sin, style)?;
    attend(&q, &k, &split(v, hk)?, mask, scale, None)
}

/// `softmax(q kᵀ · scale + mask) v` over rotated `q: [b, heads, s, d]` and `k, v:
/// [b, kv_heads, t, d]` (grouped heads expanded here), optionally with logits soft-capped at
/// `softcap`; returns `[b, s, heads·d]`. Composed from candle ops and the fused softmax.
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
    softcap: Option<f64>,
) -> candle_core::Result<Tensor> {
    let (b, h, s, d) = q.dims4()?;
    let (_, hk, t, _) = k.dims4()?;
    let groups = h / hk.max(1);
    let (k, v) = if groups > 1 {
        let rep = |x: &Tensor| x.unsqueeze(2)?.expand((b, hk, groups, t, d))?.reshape((b, h, t, d));
        (rep(k)?, rep(v)?)
    } else {
        (k.clone(), v.clone())
    };
    let scores = q.matmul(&k.t()?)?;
    let probs = match softcap {
        Some(cap) => attention_probs(&((((scores * scale)? / cap)?.tanh()? * cap)?), mask, 1.0)?,
        None => attention_probs(&scores, mask, scale)?,
    };
    probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, h * d))
}

/// The same ops composed from candle's basic ops, each with candle's own backward: what the
/// fused kernels fall back to off the CPU or in half precision, and what tests check them
/// against.
pub mod composed {
    use candle_core::{DType, Tensor, D};

    /// `x / sqrt(mean(x²) + eps) * (w + offset)`, computed in f32 (or f64).
    pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64, offset: f64) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        let inner = if dtype == DType::F64 { DType::F64 } else { DType::F32 };
        let x = x.to_dtype(inner)?;
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = x.broadcast_div(&(ms + eps)?.sqrt()?)?;
        let w = if offset != 0.0 { (w + offset)? } else { w.clone() };
        normed.broadcast_mul(&w.to_dtype(inner)?)?.to_dtype(dtype)
    }

    /// Softmax over the last dimension; the max is detached (it cancels out of the gradient).
    pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
        let max = x.max_keepdim(D::Minus1)?.detach();
        let e = x.broadcast_sub(&max)?.exp()?;
        e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
    }

    /// Log-softmax over the last dimension.
    pub fn log_softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
        let max = x.max_keepdim(D::Minus1)?.detach();
        let shifted = x.broadcast_sub(&max)?;
        let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
        shifted.broadcast_sub(&lse)
    }

    /// Rotary embedding of `x: [b, h, s, d]` with `cos, sin: [b, 1, s, d/2]` (per-row positions,
    /// so left-padded batches rotate each row by its own positions).
    pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, style: crate::RopeStyle) -> candle_core::Result<Tensor> {
        let (b, h, s, d) = x.dims4()?;
        let half = d / 2;
        match style {
            crate::RopeStyle::Half => {
                let x1 = x.narrow(D::Minus1, 0, half)?;
                let x2 = x.narrow(D::Minus1, half, half)?;
                let o1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
                let o2 = (x1.broadcast_mul(sin)? + x2.broadcast_mul(cos)?)?;
                Tensor::cat(&[o1, o2], D::Minus1)
            }
            crate::RopeStyle::Interleaved => {
                let x = x.reshape((b, h, s, half, 2))?;
                let x1 = x.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?;
                let x2 = x.narrow(D::Minus1, 1, 1)?.squeeze(D::Minus1)?;
                let o1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
                let o2 = (x1.broadcast_mul(sin)? + x2.broadcast_mul(cos)?)?;
                Tensor::stack(&[o1, o2], D::Minus1)?.reshape((b, h, s, d))
            }
        }
    }
}

/// GELU, tanh approximation, from basic ops.
pub fn gelu_tanh(x: &Tensor) -> candle_core::Result<Tensor> {
    let c = (2.0f64 / std::f64::consts::PI).sqrt();
    let inner = ((x + (x.powf(3.0)? * 0.044715)?)? * c)?;
    (x * 0.5)?.mul(&(inner.tanh()? + 1.0)?)
}

/// A frozen base weight: dense, or quantized (GGUF).
#[derive(Debug, Clone)]
pub enum BaseWeight {
    /// `[out, in]`.
    Dense(Tensor),
    Quant(Arc<QTensor>),
}

impl BaseWeight {
    pub fn out_in(&self) -> (usize, usize) {
        let dims = match self {
            BaseWeight::Dense(t) => t.dims().to_vec(),
            BaseWeight::Quant(q) => q.shape().dims().to_vec(),
        };
        (dims.first().copied().unwrap_or(0), dims.get(1).copied().unwrap_or(0))
    }

    pub fn dequantize(&self, device: &candle_core::Device) -> candle_core::Result<Tensor> {
        match self {
            BaseWeight::Dense(t) => Ok(t.clone()),
            BaseWeight::Quant(q) => q.dequantize(device),
        }
    }

    /// `x @ W^T` where only `x` receives a gradient: the frozen weight's gradient, which
    /// plain matmul backward computes and throws away, is never formed.
    pub fn matmul_t(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if !x.track_op() {
            return match self {
                BaseWeight::Dense(w) if pooled(x, w) => x.contiguous()?.apply_op1_no_bwd(&FrozenMatmul(self.clone())),
                BaseWeight::Dense(w) => x.broadcast_matmul(&w.t()?),
                BaseWeight::Quant(_) if x.device().is_cpu() && x.dtype() == DType::F32 => {
                    x.contiguous()?.apply_op1_no_bwd(&FrozenMatmul(self.clone()))
                }
                BaseWeight::Quant(q) => x.apply_op1_no_bwd(q.as_ref()),
            };
        }
        x.contiguous()?.apply_op1(FrozenMatmul(self.clone()))
    }
}

/// Whether `x · Wᵀ` and its backward go through `matmul` (f32 on the CPU, weight contiguous).
fn pooled(x: &Tensor, w: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32 && w.is_contiguous()
}

/// `(rows, width)` of a tensor read as a matrix over its last dimension.
fn rows_width(dims: &[usize], op: &str) -> candle_core::Result<(usize, usize)> {
    match dims.split_last() {
        Some((&w, rest)) => Ok((rest.iter().product(), w)),
        None => candle_core::bail!("{op}: scalar input"),
    }
}

impl BaseWeight {
    /// A LoRA-adapted projection, `x Wᵀ (+ bias) + scale · (x' Aᵀ) Bᵀ`, with gradients for `x`,
    /// `A` and `B`; `x'` is `adapter_input` (`x` after LoRA dropout) or `x` itself. Without
    /// dropout, on the CPU in f32 over a dense base, it is one op with a hand-written
    /// backward: composed it is five graph nodes, and candle zero-fills and sums a gradient
    /// buffer for each of them.
    pub fn lora_matmul_t(
        &self,
        x: &Tensor,
        adapter_input: Option<&Tensor>,
        bias: Option<&Tensor>,
        (a, b): (&Tensor, &Tensor),
        scale: f64,
    ) -> candle_core::Result<Tensor> {
        if let (BaseWeight::Dense(w), None) = (self, adapter_input) {
            let consts_ok = bias.is_none_or(|t| pooled(x, t) && !t.track_op());
            if pooled(x, w) && pooled(x, a) && pooled(x, b) && consts_ok {
                let op =
                    LoraMatmul { w: w.clone(), bias: bias.map(|t| t.contiguous()).transpose()?, scale: scale as f32 };
                return x.contiguous()?.apply_op3(&a.contiguous()?, &b.contiguous()?, op);
            }
        }
        let mut y = self.matmul_t(x)?;
        if let Some(bias) = bias {
            y = y.broadcast_add(bias)?;
        }
        // The scale goes on the rank-r intermediate, r/out of the work of scaling the output.
        let low = (adapter_input.unwrap_or(x).broadcast_matmul(&a.t()?)? * scale)?;
        y + low.broadcast_matmul(&b.t()?)?
    }
}

/// `x Wᵀ + bias + scale · (x Aᵀ) Bᵀ` over (x, A, B), for `lora_matmul_t`.
struct LoraMatmul {
    w: Tensor,
    bias: Option<Tensor>,
    scale: f32,
}

impl LoraMatmul {
    /// `(m, n, k, r)`: rows, outputs, inputs, rank, checked against the weight and A, B dims.
    fn dims(&self, x: &[usize], a: &[usize], b: &[usize]) -> candle_core::Result<(usize, usize, usize, usize)> {
        let (m, k) = rows_width(x, "lora-matmul")?;
        let (n, wk) = self.w.dims2()?;
        match (a, b) {
            ([r, ak], [bn, br]) if wk == k && *ak == k && *bn == n && br == r => Ok((m, n, k, *r)),
            _ => candle_core::bail!(
                "lora-matmul: input width {k}, weight {:?}, A {a:?}, B {b:?} do not fit together",
                self.w.dims()
            ),
        }
    }

    /// `scale · x Aᵀ`, `m × r`.
    fn low(&self, x: &[f32], a: &[f32], (m, k, r): (usize, usize, usize)) -> candle_core::Result<Vec<f32>> {
        let mut low = matmul::matmul(m, r, k, View { data: x, rs: k, cs: 1 }, View { data: a, rs: 1, cs: k })?;
        low.iter_mut().for_each(|v| *v *= self.scale);
        Ok(low)
    }
}

impl candle_core::CustomOp3 for LoraMatmul {
    fn name(&self) -> &'static str {
        "lora-matmul"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        as_: &CpuStorage,
        al: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, n, k, r) = self.dims(xl.dims(), al.dims(), bl.dims())?;
        let x = fused::f32s(xs, xl, "lora-matmul")?;
        let a = fused::f32s(as_, al, "lora-matmul")?;
        let b = fused::f32s(bs, bl, "lora-matmul")?;
        let (ws, wl) = self.w.storage_and_layout();
        let w = fused::tensor_f32s(&ws, wl, "lora-matmul")?;
        let mut y = matmul::matmul(m, n, k, View { data: x, rs: k, cs: 1 }, View { data: w, rs: 1, cs: k })?;
        if let Some(bias) = &self.bias {
            let (bs, bl) = bias.storage_and_layout();
            let bias = fused::tensor_f32s(&bs, bl, "lora-matmul")?;
            if bias.len() != n {
                candle_core::bail!("lora-matmul: bias of {} values for {n} outputs", bias.len());
            }
            for row in y.chunks_exact_mut(n) {
                row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
            }
        }
        let low = self.low(x, a, (m, k, r))?;
        matmul::matmul_add(&mut y, m, n, r, View { data: &low, rs: r, cs: 1 }, View { data: b, rs: 1, cs: r })?;
        let mut shape = xl.dims().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = n;
        }
        Ok((CpuStorage::F32(y), Shape::from(shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (m, n, k, r) = self.dims(x.dims(), a.dims(), b.dims())?;
        let dy = dy.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (as_, al) = a.storage_and_layout();
        let (bs, bl) = b.storage_and_layout();
        let (gs, gl) = dy.storage_and_layout();
        let (ws, wl) = self.w.storage_and_layout();
        let op = "lora-matmul";
        let (xv, av, bv) =
            (fused::tensor_f32s(&xs, xl, op)?, fused::tensor_f32s(&as_, al, op)?, fused::tensor_f32s(&bs, bl, op)?);
        let (g, w) = (fused::tensor_f32s(&gs, gl, op)?, fused::tensor_f32s(&ws, wl, op)?);
        if g.len() != m * n {
            candle_core::bail!("lora-matmul: gradient of {} values for {m}x{n}", g.len());
        }
        let dev = x.device();
        let low = self.low(xv, av, (m, k, r))?;
        // dB = dyᵀ · low (n × r).
        let db = matmul::matmul(n, r, m, View { data: g, rs: 1, cs: n }, View { data: &low, rs: r, cs: 1 })?;
        // dlow = scale · dy · B (m × r), the gradient at x Aᵀ.
        let mut dlow = matmul::matmul(m, r, n, View { data: g, rs: n, cs: 1 }, View { data: bv, rs: r, cs: 1 })?;
        dlow.iter_mut().for_each(|v| *v *= self.scale);
        // dA = dlowᵀ · x (r × k).
        let da = matmul::matmul(r, k, m, View { data: &dlow, rs: 1, cs: r }, View { data: xv, rs: k, cs: 1 })?;
        // dx = dy · W + dlow · A, skipped where x needs none (the first layer's input).
        let dx = if x.track_op() {
            let mut dx = matmul::matmul(m, k, n, View { data: g, rs: n, cs: 1 }, View { data: w, rs: k, cs: 1 })?;
            matmul::matmul_add(&mut dx, m, k, r, View { data: &dlow, rs: r, cs: 1 }, View { data: av, rs: k, cs: 1 })?;
            Some(Tensor::from_vec(dx, x.shape(), dev)?)
        } else {
            None
        };
        Ok((dx, Some(Tensor::from_vec(da, (r, k), dev)?), Some(Tensor::from_vec(db, (n, r), dev)?)))
    }
}

/// Products with at least this many input rows run on a dequantized copy of a quantized
/// weight (see `FrozenMatmul::cpu_fwd`).
const DEQUANTIZED_ROWS: usize = 32;

/// `x Wᵀ` straight on the storage for a dense CPU weight.
fn frozen_dense_fwd(w: &Tensor, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
    use candle_core::backend::BackendStorage;
    let dims = layout.dims();
    let Some((&k, rest)) = dims.split_last() else { candle_core::bail!("frozen-matmul: scalar input") };
    let m: usize = rest.iter().product();
    let (ws, wl) = w.storage_and_layout();
    let candle_core::Storage::Cpu(ws) = &*ws else { candle_core::bail!("frozen-matmul: weight is not on the CPU") };
    let (n, wk) = w.dims2()?;
    if wk != k {
        candle_core::bail!("frozen-matmul: input width {k}, weight {:?}", w.dims());
    }
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("frozen-matmul: input is not contiguous")
    };
    let mut shape = rest.to_vec();
    shape.push(n);
    let out = match (storage, ws, wl.contiguous_offsets()) {
        (CpuStorage::F32(x), CpuStorage::F32(wv), Some((w0, w1))) => {
            let x = View { data: &x[start..end], rs: k, cs: 1 };
            // Column j of Wᵀ is row j of W.
            let wt = View { data: &wv[w0..w1], rs: 1, cs: k };
            CpuStorage::F32(matmul::matmul(m, n, k, x, wt)?)
        }
        _ => {
            let lhs = Layout::contiguous_with_offset((m, k), start);
            storage.matmul(ws, (1, m, n, k), &lhs, &wl.transpose(0, 1)?)?
        }
    };
    Ok((out, Shape::from(shape)))
}

struct FrozenMatmul(BaseWeight);

impl FrozenMatmul {
    #[cfg(feature = "cuda")]
    fn forward_tensor(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.0 {
            BaseWeight::Dense(w) => x.broadcast_matmul(&w.t()?),
            BaseWeight::Quant(q) => x.apply_op1_no_bwd(q.as_ref()),
        }
    }
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        // Straight on the storage: going through a Tensor would copy the input in and the
        // output out (for the LM head, a [tokens, vocab] copy every pass).
        let m = layout.dims().split_last().map_or(0, |(_, rest)| rest.iter().product::<usize>());
        match &self.0 {
            // Many rows (a prefill, a scoring pass): dequantize the weight once and run the
            // f32 gemm, as llama.cpp does for batches. candle's quantized kernel quantizes
            // every input row and runs block dot products at a third of gemm's rate; the
            // dequantization costs one pass over the weight, 1/m of the product.
            BaseWeight::Quant(q) if m >= DEQUANTIZED_ROWS && matches!(storage, CpuStorage::F32(_)) => {
                frozen_dense_fwd(&q.dequantize(&candle_core::Device::Cpu)?, storage, layout)
            }
            BaseWeight::Quant(q) => q.cpu_fwd(storage, layout),
            BaseWeight::Dense(w) => frozen_dense_fwd(w, storage, layout),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        let copy = storage.try_clone(layout)?;
        let x = Tensor::from_storage(
            candle_core::Storage::Cuda(copy),
            layout.shape().clone(),
            candle_core::op::BackpropOp::none(),
            false,
        );
        let x = if layout.is_contiguous() && layout.start_offset() == 0 { x } else { x.contiguous()? };
        let y = self.forward_tensor(&x)?.contiguous()?;
        let shape = y.shape().clone();
        let (s, l) = y.storage_and_layout();
        match &*s {
            candle_core::Storage::Cuda(c) => Ok((c.try_clone(l)?, shape)),
            _ => candle_core::bail!("frozen-matmul: result left the GPU"),
        }
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        // y = x W^T, so dx = dy W (W dequantized on the fly for a quantized base).
        if let BaseWeight::Dense(w) = &self.0 {
            if pooled(grad_res, w) {
                let dy = grad_res.contiguous()?;
                let (n, k) = w.dims2()?;
                let (m, dn) = rows_width(dy.dims(), "frozen-matmul")?;
                if dn != n {
                    candle_core::bail!("frozen-matmul: gradient width {dn}, weight {:?}", w.dims());
                }
                let mut shape = dy.dims().to_vec();
                if let Some(last) = shape.last_mut() {
                    *last = k;
                }
                let dx = {
                    let (gs, gl) = dy.storage_and_layout();
                    let (ws, wl) = w.storage_and_layout();
                    let g = View { data: fused::tensor_f32s(&gs, gl, "frozen-matmul")?, rs: n, cs: 1 };
                    let wv = View { data: fused::tensor_f32s(&ws, wl, "frozen-matmul")?, rs: k, cs: 1 };
                    matmul::matmul(m, k, n, g, wv)?
                };
                return Ok(Some(Tensor::from_vec(dx, shape, grad_res.device())?));
            }
        }
        let w = self.0.dequantize(grad_res.device())?.to_dtype(grad_res.dtype())?;
        Ok(Some(grad_res.broadcast_matmul(&w)?))
    }
}
