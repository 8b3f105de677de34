//! The pooled CPU matmul against a plain f64 triple loop, on every path it takes (serial,
//! split over columns, split over rows, the few-row dot kernel, strided views), and the frozen
//! base-weight product against candle's matmul, values and input gradients.

use candle_core::{Device, Tensor, Var};
use hz_llm::matmul::{matmul, View};
use hz_llm::ops::BaseWeight;

fn values(n: usize, seed: u64) -> Vec<f32> {
    // A small LCG: deterministic, no dependency, values in [-1, 1).
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn reference(m: usize, n: usize, k: usize, a: View, b: View) -> Vec<f64> {
    let mut out = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] =
                (0..k).map(|p| a.data[i * a.rs + p * a.cs] as f64 * b.data[p * b.rs + j * b.cs] as f64).sum();
        }
    }
    out
}

fn check(m: usize, n: usize, k: usize, a_t: bool, b_t: bool) {
    let a = values(m * k, (m * 31 + k) as u64);
    let b = values(k * n, (n * 17 + k) as u64);
    // Row-major, or the transpose stored row-major (so the view's column stride is 1 or not).
    let av = if a_t { View { data: &a, rs: 1, cs: m } } else { View { data: &a, rs: k, cs: 1 } };
    let bv = if b_t { View { data: &b, rs: 1, cs: k } } else { View { data: &b, rs: n, cs: 1 } };
    let got = matmul(m, n, k, av, bv).unwrap();
    let want = reference(m, n, k, av, bv);
    assert_eq!(got.len(), m * n);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let tol = 1e-4 * (k as f64).sqrt() * (1.0 + w.abs());
        assert!((*g as f64 - w).abs() <= tol, "{m}x{k}·{k}x{n} (a_t {a_t}, b_t {b_t}) at {i}: {g} vs {w}");
    }
}

#[test]
fn matches_the_reference_on_every_path() {
    for &(m, n, k) in &[
        (1, 1, 1),
        (3, 5, 7),       // serial gemm
        (4, 700, 300),   // few rows, pooled dot kernel
        (2, 33, 17),     // few rows, serial dot kernel (tail lanes)
        (96, 640, 130),  // split over columns
        (600, 72, 200),  // split over rows
        (257, 255, 129), // ragged shares
    ] {
        for a_t in [false, true] {
            for b_t in [false, true] {
                check(m, n, k, a_t, b_t);
            }
        }
    }
}

#[test]
fn empty_and_zero_depth_products() {
    let none: [f32; 0] = [];
    let v = View { data: &none, rs: 0, cs: 0 };
    assert!(matmul(0, 5, 3, v, View { data: &[0.0; 15], rs: 5, cs: 1 }).unwrap().is_empty());
    assert_eq!(matmul(2, 3, 0, v, v).unwrap(), vec![0.0; 6]);
}

#[test]
fn refuses_views_shorter_than_their_shape() {
    let a = [1.0f32; 11];
    let b = [1.0f32; 12];
    let err = matmul(3, 3, 4, View { data: &a, rs: 4, cs: 1 }, View { data: &b, rs: 3, cs: 1 }).unwrap_err();
    assert!(err.to_string().contains("left side of 3x4"), "{err}");
}

#[test]
fn frozen_weight_product_and_gradient_match_candle() {
    let dev = Device::Cpu;
    for &(rows, out, inp) in &[(2usize, 300usize, 64usize), (160, 96, 64), (70, 520, 48)] {
        let x = Var::from_vec(values(rows * inp, 1), (1, rows, inp), &dev).unwrap();
        let w = Tensor::from_vec(values(out * inp, 2), (out, inp), &dev).unwrap();
        let upstream = Tensor::from_vec(values(rows * out, 3), (1, rows, out), &dev).unwrap();

        let y = BaseWeight::Dense(w.clone()).matmul_t(x.as_tensor()).unwrap();
        let want = x.as_tensor().broadcast_matmul(&w.t().unwrap()).unwrap();
        let gy = (&y * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let gw = (&want * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
        };
        assert!(diff(&y, &want) < 1e-4, "{rows}x{inp}·{out}: value");
        let (a, b) = (gy.get(x.as_tensor()).unwrap(), gw.get(x.as_tensor()).unwrap());
        assert!(diff(a, b) < 1e-4, "{rows}x{inp}·{out}: gradient");
        // Without a gradient (generation) the same product.
        let plain = BaseWeight::Dense(w).matmul_t(&x.as_tensor().detach()).unwrap();
        assert!(diff(&plain, &want) < 1e-4, "{rows}x{inp}·{out}: no-grad value");
    }
}

#[test]
fn lora_projection_matches_composed_ops_in_value_and_all_three_gradients() {
    let dev = Device::Cpu;
    let max_diff = |a: &Tensor, b: &Tensor| {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    };
    for &(rows, out, inp, r, with_bias) in
        &[(3usize, 40usize, 24usize, 4usize, true), (130, 96, 64, 8, false), (70, 200, 48, 2, true)]
    {
        let x = Var::from_vec(values(rows * inp, 11), (1, rows, inp), &dev).unwrap();
        let a = Var::from_vec(values(r * inp, 12), (r, inp), &dev).unwrap();
        let b = Var::from_vec(values(out * r, 13), (out, r), &dev).unwrap();
        let w = Tensor::from_vec(values(out * inp, 14), (out, inp), &dev).unwrap();
        let bias = with_bias.then(|| Tensor::from_vec(values(out, 15), out, &dev).unwrap());
        let upstream = Tensor::from_vec(values(rows * out, 16), (1, rows, out), &dev).unwrap();
        let scale = 1.75;

        let fused = BaseWeight::Dense(w.clone())
            .lora_matmul_t(x.as_tensor(), None, bias.as_ref(), (a.as_tensor(), b.as_tensor()), scale)
            .unwrap();
        let mut composed = x.as_tensor().broadcast_matmul(&w.t().unwrap()).unwrap();
        if let Some(bias) = &bias {
            composed = composed.broadcast_add(bias).unwrap();
        }
        let low = (x.as_tensor().broadcast_matmul(&a.as_tensor().t().unwrap()).unwrap() * scale).unwrap();
        let composed = (composed + low.broadcast_matmul(&b.as_tensor().t().unwrap()).unwrap()).unwrap();
        let what = format!("{rows}x{inp}·{out}, rank {r}, bias {with_bias}");
        assert!(max_diff(&fused, &composed) < 1e-4, "{what}: value");

        let gf = (&fused * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        let gc = (&composed * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("x", &x), ("A", &a), ("B", &b)] {
            let (f, c) = (gf.get(v.as_tensor()).unwrap(), gc.get(v.as_tensor()).unwrap());
            assert!(max_diff(f, c) < 1e-3, "{what}: gradient of {name}");
        }
    }
}

#[test]
fn lora_projection_refuses_adapter_matrices_of_the_wrong_shape() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 8), candle_core::DType::F32, &dev).unwrap();
    let w = Tensor::zeros((6, 8), candle_core::DType::F32, &dev).unwrap();
    let a = Var::zeros((4, 8), candle_core::DType::F32, &dev).unwrap();
    let b = Var::zeros((6, 3), candle_core::DType::F32, &dev).unwrap();
    let err = BaseWeight::Dense(w).lora_matmul_t(&x, None, None, (a.as_tensor(), b.as_tensor()), 1.0).unwrap_err();
    assert!(err.to_string().contains("do not fit together"), "{err}");
}
