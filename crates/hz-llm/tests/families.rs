//! The decoder against candle-transformers' own implementation of each family (on random
//! weights the test writes in Hugging Face layout), and gradients that really reach LoRA.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use hz_llm::tiny::{train_tokenizer, write_model, TinySpec};
use hz_llm::{Family, Fwd, Input, LoraConfig, Model};
use std::path::Path;

const TOKENS: [u32; 9] = [5, 17, 42, 99, 3, 77, 12, 64, 8];

fn corpus() -> Vec<String> {
    (0..40)
        .map(|i| format!("SELECT name, total FROM orders WHERE id = {i} ORDER BY total; the answer is {}", i * 7))
        .collect()
}

fn make(dir: &Path, family: Family, seed: u64) -> TinySpec {
    let tok = train_tokenizer(&corpus(), 160).expect("tokenizer");
    let mut spec = TinySpec::new(family, 0);
    // candle's Llama derives head_dim from hidden / heads.
    if family == Family::Llama {
        spec.head_dim = spec.hidden_size / spec.num_heads;
    }
    write_model(dir, &spec, &tok, seed).expect("write model")
}

fn reference_logits(dir: &Path, family: Family, tokens: &[u32]) -> Vec<Vec<f32>> {
    use candle_transformers::models::{gemma3, llama, qwen2};
    let dev = Device::Cpu;
    let cfg_text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let files = vec![dir.join("model.safetensors")];
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &dev) }.unwrap();
    // One token at a time through the reference's KV cache: its forward returns only the last
    // position, so this gives every position (and exercises both caches).
    let mut out = Vec::new();
    match family {
        Family::Llama => {
            let c: llama::LlamaConfig = serde_json::from_str(&cfg_text).unwrap();
            let c = c.into_config(false);
            let m = llama::Llama::load(vb, &c).unwrap();
            let mut cache = llama::Cache::new(true, DType::F32, &c, &dev).unwrap();
            for (i, &t) in tokens.iter().enumerate() {
                let x = Tensor::new(&[[t]], &dev).unwrap();
                out.push(m.forward(&x, i, &mut cache).unwrap().squeeze(0).unwrap().to_vec1().unwrap());
            }
        }
        Family::Qwen2 => {
            let c: qwen2::Config = serde_json::from_str(&cfg_text).unwrap();
            let mut m = qwen2::ModelForCausalLM::new(&c, vb).unwrap();
            for (i, &t) in tokens.iter().enumerate() {
                let x = Tensor::new(&[[t]], &dev).unwrap();
                let l = m.forward(&x, i).unwrap();
                out.push(l.flatten_all().unwrap().to_vec1().unwrap());
            }
        }
        Family::Gemma3 => {
            let c: gemma3::Config = serde_json::from_str(&cfg_text).unwrap();
            let mut m = gemma3::Model::new(false, &c, vb).unwrap();
            for (i, &t) in tokens.iter().enumerate() {
                let x = Tensor::new(&[[t]], &dev).unwrap();
                let l = m.forward(&x, i).unwrap();
                out.push(l.flatten_all().unwrap().to_vec1().unwrap());
            }
        }
    }
    out
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn check_family(family: Family) {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), family, 11);
    let reference = reference_logits(dir.path(), family, &TOKENS);
    let model = hz_llm::load::load_model(dir.path(), &Device::Cpu, DType::F32).unwrap();

    // Whole sequence at once.
    let input = Input::right_padded(&[TOKENS.to_vec()], 0);
    let mut cache = model.new_cache(1);
    let logits: Vec<Vec<f32>> =
        model.forward(&input, &mut cache, Fwd::POLICY).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
    let spread = reference.iter().flatten().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(spread > 0.05, "{family:?}: reference logits are all near zero ({spread}): a vacuous comparison");
    for (i, (ours, theirs)) in logits.iter().zip(&reference).enumerate() {
        let d = max_diff(ours, theirs);
        assert!(d < 1e-4, "{family:?} position {i}: max |Δlogit| = {d}");
    }

    // A single-pass cache (the fused attention op on the CPU) gives them too.
    let mut once = model.single_pass_cache(1);
    let fused: Vec<Vec<f32>> =
        model.forward(&input, &mut once, Fwd::POLICY).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
    for (i, (ours, theirs)) in fused.iter().zip(&reference).enumerate() {
        let d = max_diff(ours, theirs);
        assert!(d < 1e-4, "{family:?} position {i}, single pass: max |Δlogit| = {d}");
    }
    let again = model.forward(&input, &mut once, Fwd::POLICY).unwrap_err();
    assert!(again.to_string().contains("single-pass"), "{again}");

    // Incremental decoding through our cache, and a left-padded batch, give the same logits.
    let mut cache = model.new_cache(2);
    let short = TOKENS[..4].to_vec();
    let batch = Input::left_padded(&[short.clone(), TOKENS[..6].to_vec()], 0);
    let first = model.forward(&batch, &mut cache, Fwd { last_only: true, ..Fwd::POLICY }).unwrap();
    let first: Vec<Vec<f32>> = first.squeeze(1).unwrap().to_vec2().unwrap();
    assert!(max_diff(&first[0], &reference[3]) < 1e-4, "{family:?}: padded row 0");
    assert!(max_diff(&first[1], &reference[5]) < 1e-4, "{family:?}: row 1");
    let step = Input { tokens: vec![TOKENS[4], TOKENS[6]], valid: vec![true, true], batch: 2, len: 1 };
    let next: Vec<Vec<f32>> =
        model.forward(&step, &mut cache, Fwd::POLICY).unwrap().squeeze(1).unwrap().to_vec2().unwrap();
    assert!(max_diff(&next[0], &reference[4]) < 1e-4, "{family:?}: cached step row 0");
    assert!(max_diff(&next[1], &reference[6]) < 1e-4, "{family:?}: cached step row 1");
}

#[test]
fn llama_matches_candle_transformers() {
    check_family(Family::Llama);
}

#[test]
fn qwen2_matches_candle_transformers() {
    check_family(Family::Qwen2);
}

#[test]
fn gemma3_matches_candle_transformers() {
    check_family(Family::Gemma3);
}

fn lora_all() -> LoraConfig {
    LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
            .map(String::from)
            .to_vec(),
        use_rslora: false,
    }
}

/// Give every B a random value: with B = 0 (the initial adapter) no gradient reaches A.
fn randomise_b(model: &Model, seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for (_, _, b) in model.lora_vars() {
        let v: Vec<f32> = (0..b.elem_count()).map(|_| rng.random_range(-0.05f32..0.05)).collect();
        let t = Tensor::from_vec(v, b.shape(), &Device::Cpu).unwrap().to_dtype(b.dtype()).unwrap();
        b.set(&t).unwrap();
    }
}

fn nll(model: &Model, rows: &[Vec<u32>], fwd: Fwd) -> Tensor {
    nll_with(model, rows, fwd, false)
}

/// The summed NLL, through a single-pass cache (fused attention) when `single`.
fn nll_with(model: &Model, rows: &[Vec<u32>], fwd: Fwd, single: bool) -> Tensor {
    let input = Input::right_padded(&rows.iter().map(|r| r[..r.len() - 1].to_vec()).collect::<Vec<_>>(), 0);
    let targets: Vec<u32> = rows.iter().flat_map(|r| r[1..].to_vec()).collect();
    let targets = Tensor::from_vec(targets, (rows.len(), rows[0].len() - 1), &Device::Cpu).unwrap();
    let mut cache = if single { model.single_pass_cache(rows.len()) } else { model.new_cache(rows.len()) };
    let logits = model.forward(&input, &mut cache, fwd).unwrap();
    hz_llm::token_logprobs(&logits, &targets).unwrap().sum_all().unwrap().neg().unwrap()
}

#[test]
fn every_lora_parameter_gets_a_gradient() {
    for family in [Family::Llama, Family::Qwen2, Family::Gemma3] {
        let dir = tempfile::tempdir().unwrap();
        make(dir.path(), family, 3);
        let mut model = hz_llm::load::load_model(dir.path(), &Device::Cpu, DType::F32).unwrap();
        let n = model.add_lora(&lora_all(), 1).unwrap();
        assert_eq!(n, 7 * 2, "{family:?}: adapted projections");
        randomise_b(&model, 5);
        let loss = nll(&model, &[TOKENS.to_vec(), TOKENS.iter().rev().copied().collect()], Fwd::TRAIN);
        let grads = loss.backward().unwrap();
        for (name, a, b) in model.lora_vars() {
            for (which, v) in [("A", &a), ("B", &b)] {
                let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{family:?} {name}.{which}: no gradient"));
                let m = g.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(m > 0.0, "{family:?} {name}.{which}: zero gradient");
            }
        }
    }
}

#[test]
fn fused_attention_gives_the_composed_loss_and_lora_gradients() {
    for family in [Family::Llama, Family::Qwen2, Family::Gemma3] {
        let dir = tempfile::tempdir().unwrap();
        make(dir.path(), family, 6);
        let mut model = hz_llm::load::load_model(dir.path(), &Device::Cpu, DType::F32).unwrap();
        model.add_lora(&lora_all(), 1).unwrap();
        randomise_b(&model, 7);
        let rows = [TOKENS.to_vec(), TOKENS.iter().rev().copied().collect()];
        let composed = nll_with(&model, &rows, Fwd::TRAIN, false);
        let fused = nll_with(&model, &rows, Fwd::TRAIN, true);
        let (c, f) = (composed.to_scalar::<f32>().unwrap(), fused.to_scalar::<f32>().unwrap());
        assert!((c - f).abs() < 1e-4 * c.abs().max(1.0), "{family:?}: loss {f} fused vs {c} composed");
        let (gc, gf) = (composed.backward().unwrap(), fused.backward().unwrap());
        for (name, a, b) in model.lora_vars() {
            for (which, v) in [("A", &a), ("B", &b)] {
                let (x, y) = (gf.get(v.as_tensor()).unwrap(), gc.get(v.as_tensor()).unwrap());
                let scale = y.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-3);
                let d = (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(d < 1e-3 * scale, "{family:?} {name}.{which}: gradients differ by {d} (scale {scale})");
            }
        }
    }
}

#[test]
fn adapter_off_is_the_base_and_on_changes_logits() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), Family::Qwen2, 4);
    let base = hz_llm::load::load_model(dir.path(), &Device::Cpu, DType::F32).unwrap();
    let mut model = hz_llm::load::load_model(dir.path(), &Device::Cpu, DType::F32).unwrap();
    model.add_lora(&lora_all(), 2).unwrap();
    let rows = [TOKENS.to_vec()];
    let l0 = nll(&base, &rows, Fwd::POLICY).to_scalar::<f32>().unwrap();
    let fresh = nll(&model, &rows, Fwd::POLICY).to_scalar::<f32>().unwrap();
    assert!((l0 - fresh).abs() < 1e-5, "a fresh adapter (B = 0) must not change the model");
    randomise_b(&model, 9);
    let on = nll(&model, &rows, Fwd::POLICY).to_scalar::<f32>().unwrap();
    let off = nll(&model, &rows, Fwd::REFERENCE).to_scalar::<f32>().unwrap();
    assert!((off - l0).abs() < 1e-5, "reference (adapter off) must equal the base: {off} vs {l0}");
    assert!((on - l0).abs() > 1e-3, "adapter on must change the loss: {on} vs {l0}");
    // Only a training pass builds a backward graph: generation and scoring passes keep no
    // intermediates alive (a tracked 1200-token prefill of Gemma 3 270M held 4 GB).
    let input = Input::left_padded(&rows, 0);
    for (fwd, tracked) in [(Fwd::TRAIN, true), (Fwd::POLICY, false), (Fwd::REFERENCE, false)] {
        let out = model.forward(&input, &mut model.new_cache(1), fwd).unwrap();
        assert_eq!(out.track_op(), tracked, "{fwd:?}");
    }
    // The base copy (the default judge's model) shares the weights, not a copy of them, and
    // is the base whatever the adapter does, with or without `Fwd::adapter`.
    let copy = model.base_copy();
    assert!(copy.shares_base_with(&model), "base_copy must share the weight tensors");
    assert!(!base.shares_base_with(&model), "a second load holds its own tensors");
    assert!(copy.lora_vars().is_empty());
    for fwd in [Fwd::POLICY, Fwd::REFERENCE] {
        let c = nll(&copy, &rows, fwd).to_scalar::<f32>().unwrap();
        assert!((c - l0).abs() < 1e-5, "base copy {c} vs base {l0}");
    }
}

/// Finite differences against backprop, in f64 on a small model, for entries of A and B in
/// the first and last layer (so the gradient crosses every composed op: norms, rope, softmax,
/// GQA, the frozen matmul).
#[test]
fn gradient_matches_finite_differences() {
    for family in [Family::Llama, Family::Gemma3] {
        let dir = tempfile::tempdir().unwrap();
        make(dir.path(), family, 8);
        let mut model = hz_llm::load::load_model(dir.path(), &Device::Cpu, DType::F64).unwrap();
        model.add_lora(&lora_all(), 3).unwrap();
        randomise_b(&model, 1);
        let rows = [TOKENS.to_vec()];
        let loss = nll(&model, &rows, Fwd::TRAIN);
        let grads = loss.backward().unwrap();
        let vars = model.lora_vars();
        let picks = [0usize, 3, 6, vars.len() - 1];
        for &vi in &picks {
            let (name, a, b) = &vars[vi];
            for (which, v) in [("A", a), ("B", b)] {
                let g: Vec<f64> = grads.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                for &k in &[0usize, g.len() / 2, g.len() - 1] {
                    let fd = central_difference(&model, &rows, v, k);
                    let tol = 1e-6 + 1e-4 * fd.abs().max(g[k].abs());
                    assert!(
                        (fd - g[k]).abs() < tol,
                        "{family:?} {name}.{which}[{k}]: backprop {} vs finite difference {fd}",
                        g[k]
                    );
                }
            }
        }
    }
}

fn central_difference(model: &Model, rows: &[Vec<u32>], v: &Var, k: usize) -> f64 {
    let orig = v.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let h = 1e-5;
    let at = |delta: f64| {
        let mut w = orig.clone();
        w[k] += delta;
        v.set(&Tensor::from_vec(w, v.shape(), &Device::Cpu).unwrap()).unwrap();
        nll(model, rows, Fwd::TRAIN).to_scalar::<f64>().unwrap()
    };
    let d = (at(h) - at(-h)) / (2.0 * h);
    v.set(&Tensor::from_vec(orig, v.shape(), &Device::Cpu).unwrap()).unwrap();
    d
}
