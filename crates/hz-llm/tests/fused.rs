//! The fused CPU kernels against the same ops composed from candle's basic ops: forward values
//! and the gradients candle's own backward gives the composed versions, on random inputs with
//! awkward shapes (odd widths, masked rows, a fully masked row, a temperature).

use candle_core::{DType, Device, Tensor, Var};
use hz_llm::fused;
use hz_llm::ops::{self, composed};
use hz_llm::RopeStyle;

fn randn(shape: &[usize], seed: u64, std: f32) -> Tensor {
    // A small xorshift so the inputs do not depend on candle's generator.
    let n: usize = shape.iter().product();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * std * 1.7
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Largest |a - b| relative to max(1, |b|).
fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    a.iter().zip(&b).map(|(x, y)| (x - y).abs() / y.abs().max(1.0)).fold(0.0, f32::max)
}

/// Value and input gradients of `f` at `inputs`, under a random weighting of the output so
/// every output element's gradient matters.
fn value_and_grads(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Tensor) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts);
    let w = randn(y.dims(), 99, 1.0);
    let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let g = vars.iter().map(|v| grads.get(v.as_tensor()).expect("a gradient for every input").clone()).collect();
    (y.detach(), g)
}

fn assert_same(name: &str, fused: (Tensor, Vec<Tensor>), composed: (Tensor, Vec<Tensor>), tol: f32) {
    let dv = max_rel(&fused.0, &composed.0);
    assert!(dv < tol, "{name}: forward differs by {dv}");
    for (i, (a, b)) in fused.1.iter().zip(&composed.1).enumerate() {
        let dg = max_rel(a, b);
        assert!(dg < tol, "{name}: gradient of input {i} differs by {dg}");
        let norm = b.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(norm > 0.0, "{name}: gradient {i} is zero, the check proves nothing");
    }
}

#[test]
fn rms_norm_matches_composed() {
    for (offset, d) in [(0.0, 48), (1.0, 37)] {
        let x = randn(&[3, 5, d], 1, 2.0);
        let w = randn(&[d], 2, 0.5);
        let f = value_and_grads(std::slice::from_ref(&x), |t| {
            t[0].apply_op2(&w, fused::RmsNorm { eps: 1e-6, offset: offset as f32 }).unwrap()
        });
        let c = value_and_grads(&[x], |t| composed::rms_norm(&t[0], &w, 1e-6, offset).unwrap());
        assert_same(&format!("rms_norm offset {offset}"), f, c, 2e-5);
    }
}

#[test]
fn masked_softmax_matches_composed() {
    let (b, h, s, t) = (2, 3, 5, 7);
    let x = randn(&[b, h, s, t], 3, 3.0);
    // Causal with a left-padded second row; its first query sees no key at all.
    let mut m = vec![-1e30f32; b * s * t];
    for bi in 0..b {
        for i in 0..s {
            for j in 0..t {
                let causal = j <= i + (t - s);
                let padded = bi == 1 && j < 3;
                if causal && !padded {
                    m[(bi * s + i) * t + j] = 0.0;
                }
            }
        }
    }
    let mask = Tensor::from_vec(m, (b, 1, s, t), &Device::Cpu).unwrap();
    let scale = 0.125;
    let f = value_and_grads(std::slice::from_ref(&x), |v| {
        v[0].apply_op2(&mask, fused::MaskedSoftmax { scale: scale as f32 }).unwrap()
    });
    let c = value_and_grads(&[x], |v| {
        composed::softmax_last_dim(&(&v[0] * scale).unwrap().broadcast_add(&mask).unwrap()).unwrap()
    });
    assert_same("masked softmax", f, c, 1e-5);
}

#[test]
fn rope_matches_composed_in_both_styles() {
    let (b, h, s, d) = (2, 3, 4, 8);
    let x = randn(&[b, h, s, d], 4, 1.0);
    let ang = randn(&[b, 1, s, d / 2], 5, 3.0);
    let (cos, sin) = (ang.cos().unwrap(), ang.sin().unwrap());
    for style in [RopeStyle::Half, RopeStyle::Interleaved] {
        let op = fused::Rope { interleaved: style == RopeStyle::Interleaved, inverse: false };
        let f = value_and_grads(std::slice::from_ref(&x), |t| t[0].apply_op3(&cos, &sin, op).unwrap());
        let c = value_and_grads(std::slice::from_ref(&x), |t| composed::rope(&t[0], &cos, &sin, style).unwrap());
        assert_same(&format!("rope {style:?}"), f, c, 1e-5);
    }
}

#[test]
fn gated_activations_match_composed_for_both_inputs() {
    use fused::{Gate, GateMul};
    let g = randn(&[4, 4099], 6, 4.0);
    let u = randn(&[4, 4099], 7, 1.0);
    let f = value_and_grads(&[g.clone(), u.clone()], |t| t[0].apply_op2(&t[1], GateMul(Gate::Silu)).unwrap());
    let c = value_and_grads(&[g.clone(), u.clone()], |t| (candle_nn::ops::silu(&t[0]).unwrap() * &t[1]).unwrap());
    assert_same("silu·u", f, c, 1e-5);
    // GELU against the composed form in f64 (tanh of large arguments saturates either way).
    let f = value_and_grads(&[g.clone(), u.clone()], |t| t[0].apply_op2(&t[1], GateMul(Gate::GeluTanh)).unwrap());
    let c = value_and_grads(&[g, u], |t| {
        let (g, u) = (t[0].to_dtype(DType::F64).unwrap(), t[1].to_dtype(DType::F64).unwrap());
        (ops::gelu_tanh(&g).unwrap() * u).unwrap().to_dtype(DType::F32).unwrap()
    });
    assert_same("gelu_tanh·u", f, c, 1e-5);
}

#[test]
fn token_logprobs_and_entropy_match_composed_at_a_temperature() {
    let (rows, vocab) = (6, 1001);
    let logits = randn(&[2, rows / 2, vocab], 8, 6.0);
    let targets: Vec<u32> = (0..rows as u32).map(|i| (i * 379) % vocab as u32).collect();
    let tt = Tensor::from_vec(targets.clone(), (2, rows / 2), &Device::Cpu).unwrap();
    for temp in [1.0, 0.7] {
        let f = value_and_grads(std::slice::from_ref(&logits), |t| {
            t[0].apply_op1(fused::TokenLogprobs { targets: targets.clone(), inv_t: 1.0 / temp as f32 }).unwrap()
        });
        let c = value_and_grads(std::slice::from_ref(&logits), |t| {
            let lp = composed::log_softmax_last_dim(&(&t[0] / temp).unwrap()).unwrap();
            lp.gather(&tt.unsqueeze(2).unwrap(), 2).unwrap().squeeze(2).unwrap()
        });
        assert_same(&format!("token log-probs T={temp}"), f, c, 2e-5);

        let fe = logits.apply_op1_no_bwd(&fused::Entropy { inv_t: 1.0 / temp as f32 }).unwrap();
        let a = composed::log_softmax_last_dim(&(&logits / temp).unwrap()).unwrap();
        let ce = (a.exp().unwrap() * &a).unwrap().sum(2).unwrap().neg().unwrap();
        let d = max_rel(&fe, &ce);
        assert!(d < 2e-5, "entropy T={temp} differs by {d}");
    }
}

#[test]
fn token_logprobs_refuses_a_target_outside_the_vocabulary() {
    let logits = randn(&[2, 10], 9, 1.0);
    let err = logits.apply_op1(fused::TokenLogprobs { targets: vec![3, 10], inv_t: 1.0 }).unwrap_err();
    assert!(err.to_string().contains("target id 10 is outside the vocabulary (10)"), "{err}");
}

/// The dispatching functions in `ops` agree with the composed ones whichever path they take:
/// f32 (fused) and f64 (composed), on non-contiguous input too.
#[test]
fn ops_dispatch_gives_the_composed_values_in_f32_and_f64() {
    let x = randn(&[2, 3, 4, 8], 10, 1.0);
    let xt = x.transpose(1, 2).unwrap(); // [2, 4, 3, 8], not contiguous
    let w = randn(&[8], 11, 1.0);
    let ang = randn(&[2, 1, 4, 4], 12, 2.0);
    let (cos, sin) = (ang.cos().unwrap(), ang.sin().unwrap());
    for dt in [DType::F32, DType::F64] {
        let (x, w, cos, sin) =
            (xt.to_dtype(dt).unwrap(), w.to_dtype(dt).unwrap(), cos.to_dtype(dt).unwrap(), sin.to_dtype(dt).unwrap());
        let back = |t: Tensor| t.to_dtype(DType::F32).unwrap();
        let a = back(ops::rms_norm(&x, &w, 1e-5, 0.0).unwrap());
        let b = back(composed::rms_norm(&x, &w, 1e-5, 0.0).unwrap());
        assert!(max_rel(&a, &b) < 1e-5, "rms_norm {dt:?}");
        let x4 = x.transpose(1, 2).unwrap();
        let a = back(ops::rope(&x4, &cos, &sin, RopeStyle::Half).unwrap());
        let b = back(composed::rope(&x4.contiguous().unwrap(), &cos, &sin, RopeStyle::Half).unwrap());
        assert!(max_rel(&a, &b) < 1e-5, "rope {dt:?}");
        let targets: Vec<u32> = (0..24).map(|i| (i * 5) % 8).collect();
        let targets = Tensor::from_vec(targets, (2, 4, 3), &Device::Cpu).unwrap();
        let a = back(ops::token_logprobs_at(&x, &targets, 0.5).unwrap());
        let lp = composed::log_softmax_last_dim(&(&x / 0.5).unwrap()).unwrap();
        let b = back(lp.gather(&targets.unsqueeze(3).unwrap(), 3).unwrap().squeeze(3).unwrap());
        assert!(max_rel(&a, &b) < 1e-5, "token_logprobs {dt:?}");
    }
}

/// Short sequences (one block of queries) and longer ones (several blocks, the last one
/// partial), so the blocked forward and the recomputing backward are both checked.
#[test]
fn fused_causal_attention_matches_the_composed_layer_in_f64() {
    for s in [7, 150] {
        attention_matches_composed(2, s);
    }
}

fn attention_matches_composed(b: usize, s: usize) {
    // Row 1 starts with two padding positions: no query sees them, and their own queries see
    // nothing. Their outputs must stay finite; they are never used, so the check leaves them
    // out of the value and the gradients (multiplied by `used`).
    let mut m = vec![-1e30f32; b * s * s];
    let mut used = vec![1f32; b * s];
    for row in 0..b {
        for i in 0..s {
            for j in 0..=i {
                if !(row == 1 && j < 2) {
                    m[(row * s + i) * s + j] = 0.0;
                }
            }
            if row == 1 && i < 2 {
                used[row * s + i] = 0.0;
            }
        }
    }
    let mask = Tensor::from_vec(m, (b, 1, s, s), &Device::Cpu).unwrap();
    let used = Tensor::from_vec(used, (b, s, 1), &Device::Cpu).unwrap();
    for (heads, style) in
        [((6, 2, 8), RopeStyle::Half), ((3, 3, 4), RopeStyle::Interleaved), ((4, 1, 6), RopeStyle::Half)]
    {
        let (h, hk, d) = heads;
        let ang = randn(&[b, 1, s, d / 2], 21, 3.0);
        let (cos, sin) = (ang.cos().unwrap(), ang.sin().unwrap());
        let q = randn(&[b, s, h * d], 22, 1.0);
        let k = randn(&[b, s, hk * d], 23, 1.0);
        let v = randn(&[b, s, hk * d], 24, 1.0);
        let scale = 1.0 / (d as f64).sqrt();
        let f = value_and_grads(&[q.clone(), k.clone(), v.clone()], |t| {
            let y = ops::causal_attention(&t[0], &t[1], &t[2], (&cos, &sin, &mask), heads, scale, style).unwrap();
            y.broadcast_mul(&used).unwrap()
        });
        let wide = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        let (cos64, sin64, mask64) = (wide(&cos), wide(&sin), wide(&mask));
        let c = value_and_grads(&[q, k, v], |t| {
            let (q, k, v) = (wide(&t[0]), wide(&t[1]), wide(&t[2]));
            ops::causal_attention(&q, &k, &v, (&cos64, &sin64, &mask64), heads, scale, style)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .broadcast_mul(&used)
                .unwrap()
        });
        assert_same(&format!("attention s {s} {heads:?} {style:?}"), f, c, 1e-4);
    }
}

#[test]
fn fused_causal_attention_refuses_tables_that_do_not_fit() {
    let (b, s, h, d) = (1, 4, 2, 4);
    let q = randn(&[b, s, h * d], 1, 1.0);
    let cos = randn(&[b, 1, s + 1, d / 2], 2, 1.0);
    let mask = randn(&[b, 1, s, s], 3, 1.0);
    let err = ops::causal_attention(&q, &q, &q, (&cos, &cos, &mask), (h, h, d), 1.0, RopeStyle::Half).unwrap_err();
    assert!(err.to_string().contains("rotary tables"), "{err}");
}
