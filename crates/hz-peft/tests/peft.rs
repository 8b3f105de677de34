//! Adapters and merges by behaviour: files as PEFT writes them, values as the math says.

use candle_core::{DType, Device, Tensor};
use hz_peft::{merge_into, merge_into_with, peft_key, Adapter, LoraConfig, LoraPair, PeftError, Which};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::SafeTensors;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

fn random(rng: &mut ChaCha8Rng, shape: &[usize]) -> Vec<f32> {
    (0..shape.iter().product::<usize>()).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn tensor(rng: &mut ChaCha8Rng, shape: &[usize], dtype: DType) -> Tensor {
    let t = Tensor::from_vec(random(rng, shape), shape, &Device::Cpu).expect("tensor");
    t.to_dtype(dtype).expect("dtype")
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1()).expect("values")
}

/// An adapter on q_proj and v_proj of layer 0 (q: 8 -> 8, v: 8 -> 4).
fn adapter(rng: &mut ChaCha8Rng, r: usize) -> Adapter {
    let mut modules = BTreeMap::new();
    for (module, out) in [("model.layers.0.self_attn.q_proj", 8), ("model.layers.0.self_attn.v_proj", 4)] {
        let pair = LoraPair { a: tensor(rng, &[r, 8], DType::F32), b: tensor(rng, &[out, r], DType::F32) };
        modules.insert(module.to_string(), pair);
    }
    let mut config = LoraConfig::new(r, 16.0, &["q_proj", "v_proj"]);
    config.dropout = 0.05;
    Adapter::new(config, "tiny-base", modules)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

#[test]
fn scale_is_alpha_over_r_or_over_sqrt_r() {
    let mut c = LoraConfig::new(16, 32.0, &["q_proj"]);
    assert_eq!(c.scale(), 2.0);
    c.use_rslora = true;
    assert_eq!(c.scale(), 8.0);
    assert!(c.targets("model.layers.3.self_attn.q_proj"));
    assert!(c.targets("q_proj"));
    assert!(!c.targets("model.layers.3.self_attn.qq_proj"));
    assert!(!c.targets("model.layers.3.self_attn.k_proj"));
}

#[test]
fn save_then_load_gives_the_same_adapter() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut a = adapter(&mut rng, 4);
    a.config.use_rslora = true;
    a.extra.insert("peft_version".into(), json!("0.17.1"));
    a.extra.insert("layers_to_transform".into(), json!([0]));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("adapter");
    a.save(&path).expect("save");
    let b = Adapter::load(&path, &Device::Cpu).expect("load");
    assert_eq!(b.config, a.config);
    assert_eq!(b.base_model, "tiny-base");
    assert_eq!(b.modules.keys().collect::<Vec<_>>(), a.modules.keys().collect::<Vec<_>>());
    for (m, pair) in &a.modules {
        assert_eq!(values(&b.modules[m].a), values(&pair.a), "{m} A");
        assert_eq!(values(&b.modules[m].b), values(&pair.b), "{m} B");
        assert_eq!(b.modules[m].a.dims(), pair.a.dims());
        assert_eq!(b.modules[m].b.dims(), pair.b.dims());
    }
    assert_eq!(b.extra["peft_version"], json!("0.17.1"));
    // A second save over the first (the checkpoint case) keeps it all, files whole.
    b.save(&path).expect("save again");
    let c = Adapter::load(&path, &Device::Cpu).expect("load again");
    assert_eq!(c.config, a.config);
    assert_eq!(read_json(&path.join("adapter_config.json"))["layers_to_transform"], json!([0]));
    let names: Vec<String> =
        std::fs::read_dir(&path).expect("ls").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect();
    assert_eq!(names.len(), 2, "only the two files, no temp files left: {names:?}");
    let siblings = std::fs::read_dir(dir.path()).expect("ls").count();
    assert_eq!(siblings, 1, "no temp folder left beside the adapter");
}

#[test]
fn files_use_peft_key_names_and_config_fields() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let a = adapter(&mut rng, 4);
    let dir = tempfile::tempdir().expect("tempdir");
    a.save(dir.path()).expect("save");
    let bytes = std::fs::read(dir.path().join("adapter_model.safetensors")).expect("read");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut names = st.names();
    names.sort();
    assert_eq!(
        names,
        [
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
            "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight",
            "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight",
        ]
    );
    assert_eq!(peft_key("model.layers.0.self_attn.v_proj", Which::B), names[3]);
    assert_eq!(st.tensor(names[2]).expect("A").shape(), [4, 8]);
    assert_eq!(st.tensor(names[3]).expect("B").shape(), [4, 4]);
    let (_, meta) = SafeTensors::read_metadata(&bytes).expect("header");
    assert_eq!(meta.metadata().as_ref().and_then(|m| m.get("format")).map(String::as_str), Some("pt"));

    let text = std::fs::read_to_string(dir.path().join("adapter_config.json")).expect("config");
    let c: Value = serde_json::from_str(&text).expect("json");
    for (key, want) in [
        ("peft_type", json!("LORA")),
        ("task_type", json!("CAUSAL_LM")),
        ("r", json!(4)),
        ("lora_alpha", json!(16)),
        ("lora_dropout", json!(0.05)),
        ("target_modules", json!(["q_proj", "v_proj"])),
        ("bias", json!("none")),
        ("fan_in_fan_out", json!(false)),
        ("inference_mode", json!(true)),
        ("use_rslora", json!(false)),
        ("use_dora", json!(false)),
        ("modules_to_save", Value::Null),
        ("base_model_name_or_path", json!("tiny-base")),
        ("revision", Value::Null),
        ("rank_pattern", json!({})),
        ("alpha_pattern", json!({})),
        ("init_lora_weights", json!(true)),
    ] {
        assert_eq!(c.get(key), Some(&want), "adapter_config.json `{key}`");
    }
    // `"lora_alpha": 16`, as PEFT writes it, not 16.0; keys sorted as PEFT's json.dumps.
    assert!(text.contains("\"lora_alpha\": 16,"), "{text}");
    let keys: Vec<&String> = c.as_object().expect("object").keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

/// An adapter folder written the way PEFT's in-memory state dict names keys
/// (`.default`), in half precision, with a minimal config.
fn write_peft_style(dir: &Path, a: (&[usize], DType), b: (&[usize], DType), config: Value) {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let ta = tensor(&mut rng, a.0, a.1);
    let tb = tensor(&mut rng, b.0, b.1);
    let data = [
        ("base_model.model.model.layers.0.mlp.down_proj.lora_A.default.weight", &ta),
        ("base_model.model.model.layers.0.mlp.down_proj.lora_B.default.weight", &tb),
    ];
    let bytes = safetensors::serialize(data, None).expect("serialize");
    std::fs::write(dir.join("adapter_model.safetensors"), bytes).expect("write");
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).expect("write");
}

#[test]
fn loads_default_adapter_names_and_half_precision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = json!({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["down_proj"],
                        "task_type": "CAUSAL_LM", "peft_version": "0.17.1", "base_model_name_or_path": null});
    write_peft_style(dir.path(), (&[2, 12], DType::BF16), (&[8, 2], DType::F16), config);
    let a = Adapter::load(dir.path(), &Device::Cpu).expect("load");
    let pair = &a.modules["model.layers.0.mlp.down_proj"];
    assert_eq!((pair.a.dims(), pair.b.dims()), (&[2, 12][..], &[8, 2][..]));
    assert_eq!(pair.a.dtype(), DType::F32);
    assert_eq!(a.config.scale(), 2.0);
    assert_eq!(a.base_model, "");
    assert_eq!(a.extra["task_type"], json!("CAUSAL_LM"));
    // Saved back without the adapter name, in the dtype held (F32).
    let out = dir.path().join("again");
    a.save(&out).expect("save");
    let bytes = std::fs::read(out.join("adapter_model.safetensors")).expect("read");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    assert!(st.tensor("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight").is_ok());
    assert_eq!(read_json(&out.join("adapter_config.json"))["peft_version"], json!("0.17.1"));
}

fn load_err(config: Value, a: (&[usize], DType), b: (&[usize], DType)) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    write_peft_style(dir.path(), a, b, config);
    match Adapter::load(dir.path(), &Device::Cpu) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn load_errors_name_the_file_and_key() {
    let ok = json!({"peft_type": "LORA", "r": 2, "lora_alpha": 4});
    let f32 = DType::F32;
    let e = load_err(ok.clone(), (&[3, 12], f32), (&[8, 3], f32));
    assert!(
        e.contains("adapter_model.safetensors") && e.contains("lora_A.default.weight") && e.contains("r = 2"),
        "{e}"
    );
    let e = load_err(ok.clone(), (&[2, 12], f32), (&[8, 3], f32));
    assert!(e.contains("lora_B.default.weight") && e.contains("[8, 3]"), "{e}");
    let e = load_err(json!({"peft_type": "IA3"}), (&[2, 12], f32), (&[8, 2], f32));
    assert!(e.contains("adapter_config.json") && e.contains("peft_type") && e.contains("IA3"), "{e}");
    let e = load_err(json!({"peft_type": "LORA", "r": 2, "use_dora": true}), (&[2, 12], f32), (&[8, 2], f32));
    assert!(e.contains("use_dora"), "{e}");
    let e = load_err(json!({"peft_type": "LORA", "r": "two"}), (&[2, 12], f32), (&[8, 2], f32));
    assert!(e.contains("adapter_config.json") && e.contains("`r`"), "{e}");

    // A lone A: the message names the missing B's key.
    let dir = tempfile::tempdir().expect("tempdir");
    write_peft_style(dir.path(), (&[2, 12], f32), (&[8, 2], f32), ok.clone());
    let t = Tensor::zeros((2, 4), f32, &Device::Cpu).expect("zeros");
    let bytes = safetensors::serialize([("base_model.model.lm_head.lora_A.weight", &t)], None).expect("serialize");
    std::fs::write(dir.path().join("adapter_model.safetensors"), bytes).expect("write");
    let e = Adapter::load(dir.path(), &Device::Cpu).map(|_| ()).expect_err("lone A").to_string();
    assert!(e.contains("adapter_model.safetensors") && e.contains("base_model.model.lm_head.lora_B.weight"), "{e}");

    // Keys that are not LoRA matrices.
    let bytes = safetensors::serialize([("base_model.model.lm_head.lora_magnitude_vector", &t)], None).expect("ser");
    std::fs::write(dir.path().join("adapter_model.safetensors"), bytes).expect("write");
    let e = Adapter::load(dir.path(), &Device::Cpu).map(|_| ()).expect_err("dora").to_string();
    assert!(e.contains("lora_magnitude_vector") && e.contains("DoRA"), "{e}");

    std::fs::write(dir.path().join("adapter_model.safetensors"), b"not safetensors").expect("write");
    let e = Adapter::load(dir.path(), &Device::Cpu).map(|_| ()).expect_err("garbage").to_string();
    assert!(e.contains("adapter_model.safetensors"), "{e}");
    std::fs::remove_file(dir.path().join("adapter_config.json")).expect("rm");
    let e = Adapter::load(dir.path(), &Device::Cpu).map(|_| ()).expect_err("no config");
    assert!(matches!(e, PeftError::Io { .. }) && e.to_string().contains("adapter_config.json"), "{e}");
}

/// The base model of the merge tests, as tensors by name.
struct Base {
    tensors: BTreeMap<String, Tensor>,
}

const SHARD_1: &str = "model-00001-of-00002.safetensors";
const SHARD_2: &str = "model-00002-of-00002.safetensors";

/// A tiny model folder in HF naming, sharded across two files with an index: shard 1
/// holds bf16 tensors (q_proj adapted), shard 2 f32 ones (v_proj adapted).
fn write_base(dir: &Path, rng: &mut ChaCha8Rng) -> Base {
    let specs: [(&str, &[usize], DType, &str); 6] = [
        ("model.embed_tokens.weight", &[16, 8], DType::BF16, SHARD_1),
        ("model.layers.0.self_attn.q_proj.weight", &[8, 8], DType::BF16, SHARD_1),
        ("model.layers.0.input_layernorm.weight", &[8], DType::BF16, SHARD_1),
        ("model.layers.0.self_attn.v_proj.weight", &[4, 8], DType::F32, SHARD_2),
        ("model.layers.0.mlp.down_proj.weight", &[8, 12], DType::F32, SHARD_2),
        ("model.norm.weight", &[8], DType::F32, SHARD_2),
    ];
    let mut tensors = BTreeMap::new();
    let mut shards: BTreeMap<&str, Vec<(String, Tensor)>> = BTreeMap::new();
    let mut weight_map = serde_json::Map::new();
    for (name, shape, dtype, file) in specs {
        let t = tensor(rng, shape, dtype);
        tensors.insert(name.to_string(), t.clone());
        shards.entry(file).or_default().push((name.to_string(), t));
        weight_map.insert(name.into(), json!(file));
    }
    for (file, list) in shards {
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        let bytes = safetensors::serialize(list.iter().map(|(n, t)| (n.as_str(), t)), Some(meta)).expect("ser");
        std::fs::write(dir.join(file), bytes).expect("write");
    }
    let index = json!({"metadata": {"total_size": 1234}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), serde_json::to_string_pretty(&index).expect("json"))
        .expect("write");
    std::fs::write(dir.join("config.json"), r#"{"architectures": ["LlamaForCausalLM"]}"#).expect("write");
    std::fs::write(dir.join("generation_config.json"), r#"{"eos_token_id": 2}"#).expect("write");
    std::fs::write(dir.join("tokenizer.json"), r#"{"model": {}}"#).expect("write");
    std::fs::write(dir.join("tokenizer_config.json"), "{}").expect("write");
    // Unmerged weights in another format must not travel along.
    std::fs::write(dir.join("pytorch_model.bin"), b"old weights").expect("write");
    Base { tensors }
}

/// `W + scale · B · A` in f64.
fn expected(w: &Tensor, pair: &LoraPair, scale: f64) -> Vec<f64> {
    let (out, inp) = w.dims2().expect("2-D");
    let r = pair.a.dims()[0];
    let (w, a, b) = (values(w), values(&pair.a), values(&pair.b));
    let mut e = vec![0.0; out * inp];
    for i in 0..out {
        for j in 0..inp {
            let d: f64 = (0..r).map(|k| b[i * r + k] as f64 * a[k * inp + j] as f64).sum();
            e[i * inp + j] = w[i * inp + j] as f64 + scale * d;
        }
    }
    e
}

fn merged_setup() -> (tempfile::TempDir, Base, Adapter) {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(root.path().join("base")).expect("mkdir");
    let base = write_base(&root.path().join("base"), &mut rng);
    // Through the files, as `hz model merge` reads it.
    adapter(&mut rng, 4).save(root.path().join("adapter")).expect("save");
    let a = Adapter::load(root.path().join("adapter"), &Device::Cpu).expect("load");
    (root, base, a)
}

#[test]
fn merge_adds_scaled_b_a_and_copies_the_rest_byte_for_byte() {
    let (root, base, adapter) = merged_setup();
    let (base_dir, out) = (root.path().join("base"), root.path().join("merged"));
    let mut seen = Vec::new();
    let report = merge_into_with(&base_dir, &adapter, &out, |p| seen.push((p.tensor.to_string(), p.merged, p.total)))
        .expect("merge");
    assert_eq!((report.files, report.tensors, report.merged), (2, 6, 2));
    assert_eq!(report.copied, ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]);
    assert_eq!(seen.len(), 6);
    assert_eq!(seen.iter().filter(|s| s.1).count(), 2);
    assert!(!out.join("pytorch_model.bin").exists());
    for f in ["model.safetensors.index.json", "config.json", "tokenizer.json", "generation_config.json"] {
        assert_eq!(std::fs::read(out.join(f)).expect("out"), std::fs::read(base_dir.join(f)).expect("in"), "{f}");
    }

    let scale = adapter.config.scale();
    assert_eq!(scale, 4.0);
    for file in [SHARD_1, SHARD_2] {
        let (before, after) =
            (std::fs::read(base_dir.join(file)).expect("in"), std::fs::read(out.join(file)).expect("out"));
        assert_eq!(before.len(), after.len());
        let (n, _) = SafeTensors::read_metadata(&before).expect("header");
        assert_eq!(before[..8 + n], after[..8 + n], "{file}: the header is kept as it was");
        let (b, a) = (SafeTensors::deserialize(&before).expect("in"), SafeTensors::deserialize(&after).expect("out"));
        for name in b.names() {
            let (tb, ta) = (b.tensor(name).expect("in"), a.tensor(name).expect("out"));
            assert_eq!((tb.dtype(), tb.shape()), (ta.dtype(), ta.shape()), "{name}");
            let module = name.strip_suffix(".weight").unwrap_or(name);
            let Some(pair) = adapter.modules.get(module) else {
                assert_eq!(tb.data(), ta.data(), "{name} untouched, byte-identical");
                continue;
            };
            let got = values(
                &Tensor::from_raw_buffer(ta.data(), base.tensors[name].dtype(), ta.shape(), &Device::Cpu).expect("t"),
            );
            let want = expected(&base.tensors[name], pair, scale);
            // bf16 keeps 8 significant bits: allow one rounding of the result.
            let rel = if tb.dtype() == safetensors::Dtype::BF16 { 1.0 / 256.0 } else { 1e-6 };
            let mut changed = 0;
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((*g as f64 - w).abs() <= w.abs() * rel + 1e-5, "{name}[{i}]: {g} vs {w}");
                changed += usize::from(*g != values(&base.tensors[name])[i]);
            }
            assert!(changed > got.len() / 2, "{name}: the update is visible");
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(root.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temp folders left: {leftovers:?}");
}

#[test]
fn merge_of_a_single_file_model_writes_a_single_file() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let root = tempfile::tempdir().expect("tempdir");
    let w = tensor(&mut rng, &[8, 8], DType::F16);
    let bytes = safetensors::serialize([("model.layers.0.self_attn.q_proj.weight", &w)], None).expect("ser");
    let base_dir = root.path().join("base");
    std::fs::create_dir(&base_dir).expect("mkdir");
    std::fs::write(base_dir.join("model.safetensors"), bytes).expect("write");
    let mut a = adapter(&mut rng, 2);
    a.modules.remove("model.layers.0.self_attn.v_proj");
    // An empty output folder is fine (a mount point, a folder made by the caller).
    let out = root.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let report = merge_into(&base_dir, &a, &out).expect("merge");
    assert_eq!((report.files, report.tensors, report.merged), (1, 1, 1));
    let names: Vec<_> = std::fs::read_dir(&out).expect("ls").map(|e| e.expect("e").file_name()).collect();
    assert_eq!(names, ["model.safetensors"]);
    let bytes = std::fs::read(out.join("model.safetensors")).expect("read");
    let st = SafeTensors::deserialize(&bytes).expect("st");
    let t = st.tensor("model.layers.0.self_attn.q_proj.weight").expect("t");
    assert_eq!(t.dtype(), safetensors::Dtype::F16);
    let got = values(&Tensor::from_raw_buffer(t.data(), DType::F16, t.shape(), &Device::Cpu).expect("t"));
    let want = expected(&w, &a.modules["model.layers.0.self_attn.q_proj"], a.config.scale());
    for (g, w) in got.iter().zip(&want) {
        assert!((*g as f64 - w).abs() <= w.abs() / 1024.0 + 1e-4, "{g} vs {w}");
    }
}

#[test]
fn merge_refuses_what_does_not_fit_and_leaves_nothing_behind() {
    let (root, _, adapter) = merged_setup();
    let base_dir = root.path().join("base");
    let out = root.path().join("merged");

    let mut extra = adapter.clone();
    let pair = extra.modules["model.layers.0.self_attn.q_proj"].clone();
    extra.modules.insert("model.layers.0.self_attn.k_proj".into(), pair.clone());
    let e = merge_into(&base_dir, &extra, &out).expect_err("no k_proj").to_string();
    assert!(e.contains("model.layers.0.self_attn.k_proj.weight") && e.contains("no such weight"), "{e}");

    let mut wrong = adapter.clone();
    wrong.modules.insert("model.layers.0.mlp.down_proj".into(), pair);
    let e = merge_into(&base_dir, &wrong, &out).expect_err("shape").to_string();
    assert!(e.contains(SHARD_2) && e.contains("model.layers.0.mlp.down_proj.weight") && e.contains("[8, 12]"), "{e}");

    // A stale index (a tensor it does not list) is an error, not a silent skip.
    let index_path = base_dir.join("model.safetensors.index.json");
    let good_index = std::fs::read(&index_path).expect("read");
    let mut index = read_json(&index_path);
    index["weight_map"].as_object_mut().expect("map").remove("model.norm.weight");
    std::fs::write(&index_path, index.to_string()).expect("write");
    let e = merge_into(&base_dir, &adapter, &out).expect_err("stale").to_string();
    assert!(e.contains("model.norm.weight") && e.contains("index"), "{e}");
    index["weight_map"]["model.norm.weight"] = json!("../escape.safetensors");
    std::fs::write(&index_path, index.to_string()).expect("write");
    let e = merge_into(&base_dir, &adapter, &out).expect_err("escape").to_string();
    assert!(e.contains("escape.safetensors"), "{e}");
    std::fs::write(&index_path, good_index).expect("write");

    assert!(!out.exists());
    let names: Vec<_> = std::fs::read_dir(root.path()).expect("ls").map(|e| e.expect("e").file_name()).collect();
    assert_eq!(names.len(), 2, "only base/ and adapter/: {names:?}");

    merge_into(&base_dir, &adapter, &out).expect("merge");
    let e = merge_into(&base_dir, &adapter, &out).expect_err("exists");
    assert!(matches!(e, PeftError::Exists { .. }), "{e}");
}

/// The files read by the `safetensors` Python package (numpy), an independent reader:
/// keys, dtypes, shapes and values of the adapter and the merged shards.
#[test]
fn python_safetensors_reads_our_files() {
    let Some(py) = std::env::var("HZ_PYTHON").ok().filter(|p| !p.is_empty()) else {
        eprintln!(
            "skipped: HZ_PYTHON is not set (a Python with the packages of scripts/setup-python-venv.sh, \
             which include safetensors and numpy)"
        );
        return;
    };
    let (root, base, adapter) = merged_setup();
    let out = root.path().join("merged");
    merge_into(root.path().join("base"), &adapter, &out).expect("merge");
    let scale = adapter.config.scale();
    // What Python must find: name -> (dtype, shape, values as f64).
    let mut want_adapter = serde_json::Map::new();
    for (m, p) in &adapter.modules {
        for (which, t) in [(Which::A, &p.a), (Which::B, &p.b)] {
            want_adapter.insert(peft_key(m, which), json!({"shape": t.dims(), "values": values(t)}));
        }
    }
    let mut want_merged = serde_json::Map::new();
    for (name, t) in &base.tensors {
        let module = name.strip_suffix(".weight").unwrap_or(name);
        let vals: Vec<f64> = match adapter.modules.get(module) {
            Some(pair) => expected(t, pair, scale),
            None => values(t).into_iter().map(f64::from).collect(),
        };
        let dtype = if t.dtype() == DType::BF16 { "BF16" } else { "F32" };
        want_merged.insert(name.clone(), json!({"dtype": dtype, "shape": t.dims(), "values": vals}));
    }
    let want = json!({"adapter": want_adapter, "merged": want_merged});
    let want_path = root.path().join("want.json");
    std::fs::write(&want_path, want.to_string()).expect("write");
    let script = r#"
import json, struct, sys
import numpy as np
from safetensors.numpy import load_file

adapter_dir, merged_dir, want_path = sys.argv[1:4]
want = json.load(open(want_path))

got = load_file(adapter_dir + "/adapter_model.safetensors")
assert sorted(got) == sorted(want["adapter"]), (sorted(got), sorted(want["adapter"]))
for k, w in want["adapter"].items():
    assert got[k].dtype == np.float32, (k, got[k].dtype)
    assert list(got[k].shape) == w["shape"], (k, got[k].shape)
    assert np.array_equal(got[k].ravel(), np.array(w["values"], dtype=np.float32)), k
cfg = json.load(open(adapter_dir + "/adapter_config.json"))
assert cfg["peft_type"] == "LORA" and cfg["r"] == 4 and cfg["target_modules"] == ["q_proj", "v_proj"], cfg

def read_bf16(path):
    # numpy has no bfloat16: read the header and widen the raw bits to float32.
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        assert v["dtype"] == "BF16", (k, v["dtype"])
        bits = np.frombuffer(raw[8 + n + s:8 + n + e], dtype="<u2").astype(np.uint32) << 16
        out[k] = bits.view(np.float32).reshape(v["shape"])
    return out

index = json.load(open(merged_dir + "/model.safetensors.index.json"))
tensors = {}
for f in sorted(set(index["weight_map"].values())):
    path = merged_dir + "/" + f
    try:
        part = load_file(path)
    except Exception:
        part = read_bf16(path)
    for k in part:
        assert index["weight_map"][k] == f, (k, f)
    tensors.update(part)
assert sorted(tensors) == sorted(want["merged"]), sorted(tensors)
for k, w in want["merged"].items():
    t = tensors[k].astype(np.float64).ravel()
    assert list(tensors[k].shape) == w["shape"], (k, tensors[k].shape)
    exp = np.array(w["values"])
    tol = np.abs(exp) / 256 + 1e-5 if w["dtype"] == "BF16" else np.abs(exp) * 1e-6 + 1e-5
    assert np.all(np.abs(t - exp) <= tol), (k, np.max(np.abs(t - exp)))
print("python: adapter", len(got), "tensors, merged", len(tensors), "tensors ok")
"#;
    let output = std::process::Command::new(&py)
        .arg("-c")
        .arg(script)
        .arg(root.path().join("adapter"))
        .arg(&out)
        .arg(&want_path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run HZ_PYTHON={py}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the Python reader disagrees:\n{text}");
    eprintln!("{text}");
}
