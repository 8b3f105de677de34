//! Operations composed from candle's basic ops so that gradients flow through them. candle's
//! fused `softmax_last_dim`, `rms_norm` and `rope*` kernels (and `QMatMul`) have no backward
//! pass: a model built on them trains silently wrong.

use candle_core::quantized::QTensor;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, D};
use std::sync::Arc;

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
                BaseWeight::Dense(w) => x.broadcast_matmul(&w.t()?),
                BaseWeight::Quant(q) => x.apply_op1_no_bwd(q.as_ref()),
            };
        }
        x.contiguous()?.apply_op1(FrozenMatmul(self.clone()))
    }
}

struct FrozenMatmul(BaseWeight);

impl FrozenMatmul {
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
        let x = Tensor::from_storage(
            candle_core::Storage::Cpu(copy_cpu(storage, layout)?),
            layout.shape().clone(),
            candle_core::op::BackpropOp::none(),
            false,
        );
        let y = self.forward_tensor(&x)?.contiguous()?;
        let shape = y.shape().clone();
        let (s, _) = y.storage_and_layout();
        match &*s {
            candle_core::Storage::Cpu(c) => Ok((c.clone(), shape)),
            _ => candle_core::bail!("frozen-matmul: result left the CPU"),
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
        let w = self.0.dequantize(grad_res.device())?.to_dtype(grad_res.dtype())?;
        Ok(Some(grad_res.broadcast_matmul(&w)?))
    }
}

/// The contiguous part of a CPU storage that `layout` describes.
fn copy_cpu(storage: &CpuStorage, layout: &Layout) -> candle_core::Result<CpuStorage> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("frozen-matmul: input is not contiguous")
    };
    Ok(match storage {
        CpuStorage::F32(v) => CpuStorage::F32(v[start..end].to_vec()),
        CpuStorage::F16(v) => CpuStorage::F16(v[start..end].to_vec()),
        CpuStorage::BF16(v) => CpuStorage::BF16(v[start..end].to_vec()),
        CpuStorage::F64(v) => CpuStorage::F64(v[start..end].to_vec()),
        _ => candle_core::bail!("frozen-matmul: unsupported dtype"),
    })
}
