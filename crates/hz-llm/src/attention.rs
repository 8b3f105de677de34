//! Causal self-attention of one layer as a single CPU op (rotary embedding, grouped-query
//! heads, masked softmax and both products) with a hand-written backward.
//!
//! Composed, a layer's attention is about fifteen graph nodes: reshapes and transposes that
//! copy, the K/V expansion for grouped heads, two batched products that candle runs as one
//! small thread-pool gemm per head, and the softmax; and candle zero-fills and sums a gradient
//! buffer for every node. Here it is one node. Each pool task takes one (sequence, key/value
//! head) pair and the query heads that share it, so the key and value gradients of a group
//! are summed by one thread without locks.
//!
//! Queries go in blocks of [`ROWS`]: a block attends only to the keys up to its last query
//! (later keys are masked by causality), and its scores live in a scratch buffer of the task.
//! The forward keeps the rotated queries and keys and each row's softmax maximum and sum, not
//! the `s × s` probabilities, and the backward recomputes them block by block, bit for bit.
//! Memory per layer is then linear in the sequence length: on a 3000-token prompt with four
//! heads the probabilities alone were 288 MB a layer for a pair of sequences.

use crate::fused::{f32s, masked_softmax_row, rotate_pairs, softmax_grad_row, softmax_row_again, tensor_f32s, Out};
use crate::matmul::{gemm_serial, View};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use std::sync::Mutex;

/// Query rows per block.
const ROWS: usize = 64;

/// What the forward keeps for the backward.
struct Saved {
    /// Rotated queries `[b, heads, s, d]` and keys `[b, kv_heads, s, d]`.
    q: Vec<f32>,
    k: Vec<f32>,
    /// Each query row's softmax maximum and reciprocal sum, `[b, heads, s, 2]`.
    stats: Vec<f32>,
}

/// The query blocks of a sequence of `s`: `(first row, rows, keys it sees)`.
fn blocks(s: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    (0..s).step_by(ROWS).map(move |r0| {
        let rows = ROWS.min(s - r0);
        (r0, rows, r0 + rows)
    })
}

/// Attention over `(q [b, s, heads·d], k [b, s, kv_heads·d], v [b, s, kv_heads·d])`, the
/// projections as they come out, to `[b, s, heads·d]`. No past keys: every query attends
/// to the same `s` positions it was given with (a scoring or training pass).
pub struct CausalAttention {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// On the scores before the mask.
    pub scale: f32,
    pub interleaved: bool,
    /// Rotary tables `[b, 1, s, d/2]` and the additive mask `[b, 1, s, s]`: constants.
    pub cos: Tensor,
    pub sin: Tensor,
    pub mask: Tensor,
    /// Whether the forward keeps what the backward reads (off for passes without gradients).
    pub keep: bool,
    saved: Mutex<Option<Saved>>,
}

/// `(b, s, d, heads, kv_heads)`.
type Dims = (usize, usize, usize, usize, usize);

impl CausalAttention {
    pub fn new(
        (heads, kv_heads, head_dim): (usize, usize, usize),
        scale: f32,
        interleaved: bool,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor,
        keep: bool,
    ) -> Self {
        CausalAttention { heads, kv_heads, head_dim, scale, interleaved, cos, sin, mask, keep, saved: Mutex::new(None) }
    }

    fn dims(&self, q: &[usize], k: &[usize], v: &[usize]) -> Result<Dims> {
        let (h, hk, d) = (self.heads, self.kv_heads, self.head_dim);
        if hk == 0 || h % hk != 0 || d == 0 || d % 2 != 0 {
            bail!("attention: {h} heads over {hk} key/value heads of width {d}");
        }
        let (b, s) = match q {
            [b, s, w] if *w == h * d => (*b, *s),
            _ => bail!("attention: queries {q:?}, want [batch, seq, {}]", h * d),
        };
        if k != [b, s, hk * d] || v != [b, s, hk * d] {
            bail!("attention: keys {k:?} and values {v:?} for queries {q:?}");
        }
        let (cd, sd, md) = (self.cos.dims(), self.sin.dims(), self.mask.dims());
        if cd != [b, 1, s, d / 2] || sd != cd || md != [b, 1, s, s] {
            bail!("attention: rotary tables {cd:?} {sd:?} and mask {md:?} for queries {q:?}");
        }
        Ok((b, s, d, h, hk))
    }

    /// `out[b, head, i, :] = rot(x[b, i, head, :])` for every head (or the inverse rotation,
    /// back from `[b, heads, s, d]` to `[b, s, heads·d]`, with `inverse`).
    fn rotate(&self, x: &[f32], heads: usize, (b, s, d): (usize, usize, usize), inverse: bool) -> Result<Vec<f32>> {
        let (cs, cl) = self.cos.storage_and_layout();
        let (ss, sl) = self.sin.storage_and_layout();
        let (cos, sin) = (tensor_f32s(&cs, cl, "attention")?, tensor_f32s(&ss, sl, "attention")?);
        let half = d / 2;
        let mut out = vec![0f32; b * heads * s * d];
        let o = Out::new(&mut out);
        let sign = if inverse { -1.0f32 } else { 1.0 };
        let row = |r: usize| {
            let (bi, i) = (r / s, r % s);
            let (c, sn) = (&cos[r * half..][..half], &sin[r * half..][..half]);
            for h in 0..heads {
                let flat = r * heads * d + h * d;
                let split = ((bi * heads + h) * s + i) * d;
                let (src, dst) = if inverse { (split, flat) } else { (flat, split) };
                // SAFETY: each (row, head) pair owns its own `d` values of `out`.
                let oi = unsafe { o.part(dst..dst + d) };
                rotate_pairs(&x[src..][..d], c, sn, sign, self.interleaved, oi);
            }
        };
        candle_core::utils::barrier_pool().execute_chunked(b * s, |rows| rows.for_each(row));
        Ok(out)
    }
}

/// One task per (sequence, key/value head): `f(b, kv head)`.
fn per_group(b: usize, hk: usize, f: impl Fn(usize, usize) -> Result<()> + Sync) -> Result<()> {
    let err = Mutex::new(None);
    candle_core::utils::barrier_pool().execute_chunked(b * hk, |tasks| {
        for t in tasks {
            if let Err(e) = f(t / hk, t % hk) {
                if let Ok(mut slot) = err.lock() {
                    slot.get_or_insert(e);
                }
            }
        }
    });
    match err.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, s, d, h, hk) = self.dims(ql.dims(), kl.dims(), vl.dims())?;
        let name = self.name();
        let (q, k, v) = (f32s(qs, ql, name)?, f32s(ks, kl, name)?, f32s(vs, vl, name)?);
        let (ms, ml) = self.mask.storage_and_layout();
        let mask = tensor_f32s(&ms, ml, name)?;
        let qr = self.rotate(q, h, (b, s, d), false)?;
        let kr = self.rotate(k, hk, (b, s, d), false)?;
        let mut stats = vec![0f32; b * h * s * 2];
        let mut out = vec![0f32; b * s * h * d];
        let (so, oo) = (Out::new(&mut stats), Out::new(&mut out));
        let groups = h / hk;
        per_group(b, hk, |bi, g| {
            let kv = View { data: &kr[(bi * hk + g) * s * d..][..s * d], rs: 1, cs: d };
            let vv = View { data: &v[bi * s * hk * d + g * d..], rs: hk * d, cs: 1 };
            let mut scores = vec![0f32; ROWS * s];
            for head in g * groups..(g + 1) * groups {
                let qblock = (bi * h + head) * s * d;
                for (r0, rows, keys) in blocks(s) {
                    let qv = View { data: &qr[qblock + r0 * d..][..rows * d], rs: d, cs: 1 };
                    let sc = &mut scores[..rows * keys];
                    // SAFETY: `scores` is this task's own; the rows' statistics and their
                    // columns of the output belong to heads of group `g` in sequence `bi`,
                    // which this task alone computes.
                    unsafe {
                        gemm_serial((rows, keys, d), sc.as_mut_ptr(), keys, false, qv, kv)?;
                        let at = ((bi * h + head) * s + r0) * 2;
                        let st = so.part(at..at + rows * 2);
                        for (i, (row, slot)) in sc.chunks_exact_mut(keys).zip(st.chunks_exact_mut(2)).enumerate() {
                            let mrow = &mask[(bi * s + r0 + i) * s..][..keys];
                            (slot[0], slot[1]) = masked_softmax_row(row, mrow, self.scale);
                        }
                        let pv = View { data: sc, rs: keys, cs: 1 };
                        let at = bi * s * h * d + r0 * h * d + head * d;
                        gemm_serial((rows, d, keys), oo.ptr(at), h * d, false, pv, vv)?;
                    }
                }
            }
            Ok(())
        })?;
        if self.keep {
            if let Ok(mut saved) = self.saved.lock() {
                *saved = Some(Saved { q: qr, k: kr, stats });
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, s, h * d))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, s, d, h, hk) = self.dims(q.dims(), k.dims(), v.dims())?;
        let saved = self.saved.lock().map_err(|_| candle_core::Error::Msg("attention: saved state poisoned".into()))?;
        let Some(sv) = saved.as_ref() else {
            bail!("attention: backward of a forward that kept nothing (it ran without gradients)")
        };
        let go = grad.contiguous()?;
        let (gs, gl) = go.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (g, vv) = (tensor_f32s(&gs, gl, self.name())?, tensor_f32s(&vs, vl, self.name())?);
        let mut dqr = vec![0f32; b * h * s * d];
        let mut dkr = vec![0f32; b * hk * s * d];
        let mut dv = vec![0f32; b * s * hk * d];
        let (dq_o, dk_o, dv_o) = (Out::new(&mut dqr), Out::new(&mut dkr), Out::new(&mut dv));
        let (ms, ml) = self.mask.storage_and_layout();
        let mask = tensor_f32s(&ms, ml, self.name())?;
        let groups = h / hk;
        per_group(b, hk, |bi, gi| {
            let kblock = (bi * hk + gi) * s * d;
            let kr = View { data: &sv.k[kblock..][..s * d], rs: d, cs: 1 };
            let kt = View { data: &sv.k[kblock..][..s * d], rs: 1, cs: d };
            // Vᵀ: element (c, t) is V[t, c].
            let vt = View { data: &vv[bi * s * hk * d + gi * d..], rs: 1, cs: hk * d };
            let (mut p, mut ds) = (vec![0f32; ROWS * s], vec![0f32; ROWS * s]);
            for head in gi * groups..(gi + 1) * groups {
                let qblock = (bi * h + head) * s * d;
                for (r0, rows, keys) in blocks(s) {
                    let qv = View { data: &sv.q[qblock + r0 * d..][..rows * d], rs: d, cs: 1 };
                    let dout = View { data: &g[bi * s * h * d + r0 * h * d + head * d..], rs: h * d, cs: 1 };
                    let (pb, db) = (&mut p[..rows * keys], &mut ds[..rows * keys]);
                    let st = &sv.stats[((bi * h + head) * s + r0) * 2..][..rows * 2];
                    // SAFETY: `p` and `ds` are this task's own; the dq rows of `head`, the dk
                    // block of group `gi` and its value columns in sequence `bi` belong to
                    // this task alone.
                    unsafe {
                        // P again, from the scores and the forward's row statistics.
                        gemm_serial((rows, keys, d), pb.as_mut_ptr(), keys, false, qv, kt)?;
                        for (i, (row, stat)) in pb.chunks_exact_mut(keys).zip(st.chunks_exact(2)).enumerate() {
                            let mrow = &mask[(bi * s + r0 + i) * s..][..keys];
                            softmax_row_again(row, mrow, self.scale, (stat[0], stat[1]));
                        }
                        // dP = dO · Vᵀ, then dS = scale · P ⊙ (dP − Σ dP ⊙ P), row by row.
                        gemm_serial((rows, keys, d), db.as_mut_ptr(), keys, false, dout, vt)?;
                        for (dr, pr) in db.chunks_exact_mut(keys).zip(pb.chunks_exact(keys)) {
                            softmax_grad_row(dr, pr, self.scale);
                        }
                        // dV += Pᵀ · dO, dQ = dS · K, dK += dSᵀ · Q.
                        let pt = View { data: pb, rs: 1, cs: keys };
                        gemm_serial((keys, d, rows), dv_o.ptr(bi * s * hk * d + gi * d), hk * d, true, pt, dout)?;
                        let dsv = View { data: db, rs: keys, cs: 1 };
                        gemm_serial((rows, d, keys), dq_o.ptr(qblock + r0 * d), d, false, dsv, kr)?;
                        let dst = View { data: db, rs: 1, cs: keys };
                        gemm_serial((keys, d, rows), dk_o.ptr(kblock), d, true, dst, qv)?;
                    }
                }
            }
            Ok(())
        })?;
        let dq = self.rotate(&dqr, h, (b, s, d), true)?;
        let dk = self.rotate(&dkr, hk, (b, s, d), true)?;
        let dev = q.device();
        Ok((
            Some(Tensor::from_vec(dq, (b, s, h * d), dev)?),
            Some(Tensor::from_vec(dk, (b, s, hk * d), dev)?),
            Some(Tensor::from_vec(dv, (b, s, hk * d), dev)?),
        ))
    }
}
