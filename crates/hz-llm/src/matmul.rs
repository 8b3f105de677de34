//! CPU f32 matrix products against the frozen base weights, spread over candle's barrier pool.
//!
//! candle's own CPU matmul hands every product to gemm's rayon parallelism while candle's
//! barrier-pool workers, which run every elementwise op, spin for a while after each one:
//! on a machine with few cores the two pools fight over them. Here each pool thread runs
//! gemm single-threaded on its own block of the output, so one set of threads does all the
//! work. Products with only a few rows (generation: one new token per sequence) skip gemm,
//! whose packing of the whole weight on every call costs as much as the arithmetic, for
//! dot products straight off the weight rows.

use crate::fused::Out;
use candle_core::{bail, Result};

/// A matrix view: element `(r, c)` is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl View<'_> {
    fn check(&self, rows: usize, cols: usize, what: &str) -> Result<()> {
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        let last = (rows - 1)
            .checked_mul(self.rs)
            .and_then(|a| (cols - 1).checked_mul(self.cs).and_then(|b| a.checked_add(b)));
        match last {
            Some(i) if i < self.data.len() => Ok(()),
            _ => bail!(
                "matmul: {what} of {rows}x{cols} with strides ({}, {}) needs more than its {} values",
                self.rs,
                self.cs,
                self.data.len()
            ),
        }
    }
}

/// Below this many multiply-adds a product runs on the calling thread.
const SERIAL_FLOPS: usize = 1 << 18;

/// Products with at most this many rows use the dot-product kernel when the right-hand side's
/// columns are contiguous (a weight used as `x · Wᵀ`).
const SKINNY_ROWS: usize = 8;

/// `lhs (m × k) · rhs (k × n)` as a fresh row-major `m × n` buffer.
pub fn matmul(m: usize, n: usize, k: usize, lhs: View, rhs: View) -> Result<Vec<f32>> {
    lhs.check(m, k, "left side")?;
    rhs.check(k, n, "right side")?;
    let len = m.checked_mul(n).ok_or_else(|| candle_core::Error::Msg(format!("matmul: {m}x{n} output")))?;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    if k == 0 {
        out.resize(len, 0.0);
        return Ok(out);
    }
    product(m, n, k, lhs, rhs, &Out::spare(&mut out), false);
    // SAFETY: `product` without accumulation wrote every one of the `len` values.
    unsafe { out.set_len(len) };
    Ok(out)
}

/// `out += lhs (m × k) · rhs (k × n)`, `out` row-major `m × n`.
pub fn matmul_add(out: &mut [f32], m: usize, n: usize, k: usize, lhs: View, rhs: View) -> Result<()> {
    lhs.check(m, k, "left side")?;
    rhs.check(k, n, "right side")?;
    if m.checked_mul(n) != Some(out.len()) {
        bail!("matmul: output of {} values for {m}x{n}", out.len());
    }
    if k > 0 {
        product(m, n, k, lhs, rhs, &Out::new(out), true);
    }
    Ok(())
}

/// The product into `dst` (`m × n`, row-major, bounds checked by the caller), adding to what
/// is there when `acc`, else overwriting it.
fn product(m: usize, n: usize, k: usize, lhs: View, rhs: View, dst: &Out, acc: bool) {
    if m == 0 || n == 0 {
        return;
    }
    let flops = m.saturating_mul(n).saturating_mul(k);
    let pool = candle_core::utils::barrier_pool();
    let threads = pool.n_workers() + 1;
    if m <= SKINNY_ROWS && lhs.cs == 1 && rhs.rs == 1 {
        let cols = |c: std::ops::Range<usize>| skinny(Skinny { m, n, k, lhs, rhs, acc }, dst, c);
        if flops < SERIAL_FLOPS || threads == 1 {
            cols(0..n);
        } else {
            const UNIT: usize = 64;
            pool.execute_chunked(n.div_ceil(UNIT), |units| cols(units.start * UNIT..(units.end * UNIT).min(n)));
        }
        return;
    }
    // SAFETY (all uses): the views were checked by the caller, and each call writes rows `r`
    // × columns `c` of the output only; the blocks of different calls do not overlap.
    let block = |r: std::ops::Range<usize>, c: std::ops::Range<usize>| unsafe {
        let lhs = View { data: &lhs.data[r.start * lhs.rs..], ..lhs };
        let rhs = View { data: &rhs.data[c.start * rhs.cs..], ..rhs };
        gemm_raw((r.len(), c.len(), k), dst.ptr(r.start * n + c.start), n, acc, lhs, rhs)
    };
    if flops < SERIAL_FLOPS || threads == 1 {
        block(0..m, 0..n);
        return;
    }
    // One contiguous share of the longer side per thread. Split over columns, each packs only
    // its own part of rhs (a share of the LM head, say) and all of the smaller lhs.
    let by_cols = n >= m;
    let (len, align) = if by_cols { (n, 16) } else { (m, 8) };
    let share = len.div_ceil(threads).next_multiple_of(align);
    pool.execute_chunked(threads, |ts| {
        for t in ts {
            let part = (t * share).min(len)..((t + 1) * share).min(len);
            match (part.is_empty(), by_cols) {
                (true, _) => {}
                (false, true) => block(0..m, part),
                (false, false) => block(part, 0..n),
            }
        }
    });
}

/// A few-row product (see `skinny`).
#[derive(Clone, Copy)]
struct Skinny<'a> {
    m: usize,
    n: usize,
    k: usize,
    lhs: View<'a>,
    rhs: View<'a>,
    acc: bool,
}

/// Columns `c` of a product with few rows: one dot product per output value, each weight row
/// read once for all rows of `lhs`. The caller has checked `lhs.cs == 1`, `rhs.rs == 1` and
/// the bounds, and gives no two threads the same columns.
fn skinny(p: Skinny, dst: &Out, c: std::ops::Range<usize>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { skinny_avx512(p, dst, c) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { skinny_avx2(p, dst, c) };
        }
    }
    skinny_body::<false>(p, dst, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn skinny_avx512(p: Skinny, dst: &Out, c: std::ops::Range<usize>) {
    skinny_body::<true>(p, dst, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn skinny_avx2(p: Skinny, dst: &Out, c: std::ops::Range<usize>) {
    skinny_body::<true>(p, dst, c)
}

#[inline(always)]
fn skinny_body<const FMA: bool>(p: Skinny, dst: &Out, c: std::ops::Range<usize>) {
    for j in c {
        let w = &p.rhs.data[j * p.rhs.cs..][..p.k];
        for i in 0..p.m {
            let x = &p.lhs.data[i * p.lhs.rs..][..p.k];
            let d = dot::<FMA>(x, w);
            // SAFETY: (i, j) is inside the m × n buffer and only this thread has column j.
            unsafe {
                let o = dst.ptr(i * p.n + j);
                *o = if p.acc { *o + d } else { d };
            }
        }
    }
}
/// Sixteen independent partial sums, so the compiler can keep them in vector registers
/// without reordering any single sum.
#[inline(always)]
fn dot<const FMA: bool>(x: &[f32], w: &[f32]) -> f32 {
    const L: usize = 16;
    let mut acc = [0f32; L];
    let xc = x.chunks_exact(L);
    let wc = w.chunks_exact(L);
    let tail: f32 = xc.remainder().iter().zip(wc.remainder()).map(|(a, b)| a * b).sum();
    for (a, b) in xc.zip(wc) {
        for l in 0..L {
            acc[l] = if FMA { a[l].mul_add(b[l], acc[l]) } else { acc[l] + a[l] * b[l] };
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `dst (+)= lhs (m × k) · rhs (k × n)` on the calling thread, row `i` of `dst` starting at
/// `dst + i · dst_rs`: for kernels that already run one task per pool thread.
///
/// # Safety
/// `dst` is valid for reads and writes at `i · dst_rs + j` for every `i < m`, `j < n`, and no
/// other thread touches those values during the call.
pub unsafe fn gemm_serial(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    acc: bool,
    lhs: View,
    rhs: View,
) -> Result<()> {
    lhs.check(m, k, "left side")?;
    rhs.check(k, n, "right side")?;
    gemm_raw((m, n, k), dst, dst_rs, acc, lhs, rhs);
    Ok(())
}

/// `gemm_serial` without the checks: the caller has checked both views for these sizes.
unsafe fn gemm_raw((m, n, k): (usize, usize, usize), dst: *mut f32, dst_rs: usize, acc: bool, lhs: View, rhs: View) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !acc {
            for i in 0..m {
                std::slice::from_raw_parts_mut(dst.add(i * dst_rs), n).fill(0.0);
            }
        }
        return;
    }
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        acc,
        lhs.data.as_ptr(),
        lhs.cs as isize,
        lhs.rs as isize,
        rhs.data.as_ptr(),
        rhs.cs as isize,
        rhs.rs as isize,
        if acc { 1.0 } else { 0.0 },
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}
