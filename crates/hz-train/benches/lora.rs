//! LoRA training and generation throughput on the CPU, per CPU-second (the machine is shared,
//! so wall time is reported beside but not compared), against PyTorch + PEFT on the same
//! model folder, batch and thread count.
//!
//! `cargo bench -p hz-train --bench lora` measures candle; with `HZ_BENCH_TORCH=1` it also
//! makes (once) a virtual environment with torch, peft, transformers and safetensors under
//! `~/.cache/440hz/bench-venv` (or uses the Python in `HZ_BENCH_PYTHON`), runs
//! `bench/torch_lora.py` on the same folder and prints the ratio. Writes
//! `bench-results/train-cpu.json`.
//!
//! Knobs: `HZ_BENCH_STEPS` (timed training steps, default 3), `HZ_BENCH_GEN_REPS` (timed
//! generations, default 2), `RAYON_NUM_THREADS` (threads of both sides; default: candle's,
//! one per core).

use candle_core::Device;
use hz_llm::generate::{generate, Finish, Sampling};
use hz_llm::tiny::{write_model, TinySpec, SPECIALS};
use hz_llm::{Family, Fwd, LoraConfig};
use hz_train::loss::Scored;
use hz_train::optim::{AdamW, AdamWConfig};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

// The allocator `hz train` runs with (hz-cli's), so both measure the same thing.
#[global_allocator]
static GLOBAL: hz_alloc::HzAlloc = hz_alloc::HzAlloc::new();

/// The model: Qwen2-like (q/k/v biases, tied embeddings, grouped-query attention, SiLU MLP).
const VOCAB: usize = 16_384;
const HIDDEN: usize = 384;
const INTERMEDIATE: usize = 1_024;
const LAYERS: usize = 6;
const HEADS: usize = 6;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 64;
/// LoRA on the attention projections.
const RANK: usize = 8;
const ALPHA: f64 = 16.0;
const TARGETS: [&str; 4] = ["q_proj", "k_proj", "v_proj", "o_proj"];
/// Training batch: rows of `SEQ + 1` tokens give `SEQ` next-token targets each.
const BATCH: usize = 4;
const SEQ: usize = 128;
/// Generation: `GEN_BATCH` prompts of `PROMPT` tokens, `NEW_TOKENS` greedy tokens each.
const GEN_BATCH: usize = 4;
const PROMPT: usize = 32;
const NEW_TOKENS: usize = 64;

/// User + system CPU time of this process (all threads), in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass and reads nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage failed");
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU and wall seconds of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (c0, w0) = (cpu_seconds(), Instant::now());
    let out = f();
    (out, cpu_seconds() - c0, w0.elapsed().as_secs_f64())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(default)
}

/// A word-level tokenizer with `VOCAB` entries ([`SPECIALS`] first): the benchmark feeds token
/// ids, the tokenizer only has to exist and cover the vocabulary.
fn tokenizer() -> tokenizers::Tokenizer {
    let mut vocab = serde_json::Map::new();
    for (i, s) in SPECIALS.iter().enumerate() {
        vocab.insert(s.to_string(), json!(i));
    }
    for i in SPECIALS.len()..VOCAB {
        vocab.insert(format!("w{i}"), json!(i));
    }
    let added: Vec<Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": i, "content": s, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let doc = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": null,
        "decoder": null, "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<|pad|>"},
    });
    doc.to_string().parse().expect("word-level tokenizer")
}

/// Deterministic token rows that avoid the special ids.
fn rows(n: usize, len: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (SPECIALS.len() as u64 + x % (VOCAB - SPECIALS.len()) as u64) as u32
                })
                .collect()
        })
        .collect()
}

fn main() {
    let threads = candle_core::utils::get_num_threads();
    let steps = env_usize("HZ_BENCH_STEPS", 3);
    let gen_reps = env_usize("HZ_BENCH_GEN_REPS", 2);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().join("model");

    let spec = TinySpec {
        family: Family::Qwen2,
        vocab_size: VOCAB,
        hidden_size: HIDDEN,
        intermediate_size: INTERMEDIATE,
        num_layers: LAYERS,
        num_heads: HEADS,
        num_kv_heads: KV_HEADS,
        head_dim: HEAD_DIM,
        tie_word_embeddings: true,
        init_std: 0.02,
    };
    let spec = write_model(&dir, &spec, &tokenizer(), 7).expect("writing the model");
    assert_eq!(spec.vocab_size, VOCAB);
    let train_rows = rows(BATCH, SEQ + 1, 1);
    let prompts = rows(GEN_BATCH, PROMPT, 2);
    let shape = format!(
        "Qwen2-like: hidden {HIDDEN}, {LAYERS} layers, {HEADS} heads × {HEAD_DIM} ({KV_HEADS} KV), MLP {INTERMEDIATE}, \
         vocab {VOCAB}, tied embeddings, f32; LoRA r={RANK} alpha={ALPHA} on {}",
        TARGETS.join(",")
    );
    eprintln!("{shape}");
    eprintln!("train: batch {BATCH}×{SEQ}, {steps} timed steps; generate: batch {GEN_BATCH}, prompt {PROMPT}, {NEW_TOKENS} new tokens greedy, {gen_reps} timed runs; {threads} threads");

    let candle = run_candle(&dir, &train_rows, &prompts, steps, gen_reps);
    let torch = if std::env::var("HZ_BENCH_TORCH").is_ok_and(|v| v == "1") {
        run_torch(&root, &dir, &train_rows, &prompts, steps, gen_reps, threads)
    } else {
        Err("not run (set HZ_BENCH_TORCH=1)".to_string())
    };
    report(&root, &shape, threads, &candle, &torch);
}

/// One side's measurements, in the shape the Python script prints too.
fn run_candle(dir: &Path, train_rows: &[Vec<u32>], prompts: &[Vec<u32>], steps: usize, gen_reps: usize) -> Value {
    let mut hf = hz_llm::load_hf(dir, &Device::Cpu).expect("loading the model");
    let lora = LoraConfig::new(RANK, ALPHA, &TARGETS);
    let n = hf.model.add_lora(&lora, 0).expect("adding LoRA");
    assert_eq!(n, LAYERS * TARGETS.len());

    // Generation first, while B = 0: the adapted model equals the base, so the greedy tokens
    // can be compared with PyTorch's token for token.
    let sampling = Sampling { temperature: 0.0, max_new_tokens: NEW_TOKENS, ..Sampling::default() };
    let warm = Sampling { max_new_tokens: 4, ..sampling.clone() };
    generate(&hf.model, &hf.tokenizer, prompts, &warm, Fwd::POLICY).expect("generation warm-up");
    let (mut gen_cpu, mut gen_wall, mut gen_tokens) = (0.0, 0.0, 0usize);
    let mut gen_runs_cpu = Vec::new();
    let mut first_tokens: Vec<Vec<u32>> = Vec::new();
    for _ in 0..gen_reps {
        let (out, cpu, wall) = timed(|| generate(&hf.model, &hf.tokenizer, prompts, &sampling, Fwd::POLICY));
        let out = out.expect("generation");
        let early = out.iter().filter(|c| c.finish != Finish::Length).count();
        if early > 0 {
            eprintln!("note: {early} rows ended before {NEW_TOKENS} tokens (an end token); counted as generated");
        }
        gen_tokens += out.iter().map(|c| c.tokens.len()).sum::<usize>();
        if first_tokens.is_empty() {
            first_tokens = out.into_iter().map(|c| c.tokens).collect();
        }
        eprintln!("candle: generate {cpu:.2} CPU-s {wall:.2} s");
        gen_runs_cpu.push(cpu);
        gen_cpu += cpu;
        gen_wall += wall;
    }

    // Training: token-mean NLL over every target of the batch, backward, AdamW step.
    let vars: Vec<_> = hf.model.lora_vars().into_iter().flat_map(|(_, a, b)| [a, b]).collect();
    let mut opt = AdamW::new(vars, AdamWConfig::default()).expect("AdamW");
    let mask = vec![true; SEQ + 1];
    let scored: Vec<Scored> = train_rows.iter().map(|r| Scored { tokens: r, mask: &mask }).collect();
    let ((first_loss, _), warm_cpu, _) = timed(|| train_step(&hf.model, &mut opt, &scored));
    eprintln!("candle: warm-up step {warm_cpu:.2} CPU-s, loss {first_loss:.5}");
    let (mut train_cpu, mut train_wall) = (0.0, 0.0);
    let mut steps_cpu = Vec::new();
    let mut phases = [0.0f64; 3];
    let mut last_loss = first_loss;
    for i in 0..steps {
        let ((loss, ph), cpu, wall) = timed(|| train_step(&hf.model, &mut opt, &scored));
        eprintln!(
            "candle: step {} {cpu:.2} CPU-s {wall:.2} s (forward {:.2}, backward {:.2}, optimizer {:.2}), loss {loss:.5}",
            i + 1,
            ph[0],
            ph[1],
            ph[2]
        );
        for (acc, x) in phases.iter_mut().zip(ph) {
            *acc += x;
        }
        steps_cpu.push(cpu);
        train_cpu += cpu;
        train_wall += wall;
        last_loss = loss;
    }
    let train_tokens = steps * BATCH * SEQ;
    json!({
        "train": {"steps": steps, "tokens": train_tokens, "cpu_s": train_cpu, "wall_s": train_wall,
                  "steps_cpu_s": steps_cpu,
                  "phases_cpu_s": {"forward": phases[0], "backward": phases[1], "optimizer": phases[2]},
                  "first_loss": first_loss, "last_loss": last_loss},
        "generate": {"runs": gen_reps, "tokens": gen_tokens, "cpu_s": gen_cpu, "wall_s": gen_wall,
                     "runs_cpu_s": gen_runs_cpu,
                     "first_run_tokens": first_tokens},
    })
}

/// `hz_train::sft_step` with every row fully trained on, split into its three phases so their
/// CPU seconds can be reported: forward + token-mean NLL, backward, AdamW (with the clip).
fn train_step(model: &hz_llm::Model, opt: &mut AdamW, rows: &[Scored]) -> (f64, [f64; 3]) {
    let (loss, fwd, _) = timed(|| hz_train::sft_loss(model, rows).expect("forward"));
    let (grads, bwd, _) = timed(|| loss.backward().expect("backward"));
    let (_, step, _) = timed(|| {
        let g = opt.collect(&grads);
        opt.step(&g).expect("AdamW step")
    });
    let loss = loss.to_dtype(candle_core::DType::F64).and_then(|l| l.to_scalar::<f64>()).expect("loss value");
    (loss, [fwd, bwd, step])
}

/// The Python to use: `HZ_BENCH_PYTHON`, else the benchmark venv, made on first use.
fn torch_python() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("HZ_BENCH_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var("HOME").map_err(|_| "HOME is not set".to_string())?;
    let venv = PathBuf::from(home).join(".cache/440hz/bench-venv");
    let python = venv.join("bin/python");
    let ready = |p: &Path| {
        Command::new(p)
            .args(["-c", "import torch, peft, transformers, safetensors"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if python.exists() && ready(&python) {
        return Ok(python);
    }
    eprintln!("making {} (torch, peft, transformers, safetensors: several GB, once)", venv.display());
    let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
    if !python.exists() && !ok(Command::new("python3").args(["-m", "venv"]).arg(&venv)) {
        return Err(format!("python3 -m venv {} failed", venv.display()));
    }
    let pip = venv.join("bin/pip");
    if !ok(Command::new(&pip).args([
        "install",
        "--disable-pip-version-check",
        "torch",
        "peft",
        "transformers",
        "safetensors",
    ])) {
        return Err("pip install torch peft transformers safetensors failed".into());
    }
    if !ready(&python) {
        return Err("torch, peft or transformers does not import after installing".into());
    }
    Ok(python)
}

fn run_torch(
    root: &Path,
    dir: &Path,
    train_rows: &[Vec<u32>],
    prompts: &[Vec<u32>],
    steps: usize,
    gen_reps: usize,
    threads: usize,
) -> Result<Value, String> {
    let python = torch_python()?;
    let job = dir.with_file_name("job.json");
    let doc = json!({
        "model_dir": dir, "threads": threads, "steps": steps, "gen_reps": gen_reps,
        "rank": RANK, "alpha": ALPHA, "targets": TARGETS, "train_rows": train_rows,
        "prompts": prompts, "new_tokens": NEW_TOKENS, "adamw": {"lr": 1e-3, "betas": [0.9, 0.999],
        "eps": 1e-8, "weight_decay": 0.0, "max_grad_norm": 1.0},
    });
    std::fs::write(&job, doc.to_string()).map_err(|e| format!("writing {}: {e}", job.display()))?;
    let script = root.join("bench/torch_lora.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&job)
        .env("OMP_NUM_THREADS", threads.to_string())
        .env("MKL_NUM_THREADS", threads.to_string())
        .env("CUDA_VISIBLE_DEVICES", "")
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!("{} exited with {}", script.display(), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or("");
    serde_json::from_str(last).map_err(|e| format!("reading the PyTorch result: {e}"))
}

fn report(root: &Path, shape: &str, threads: usize, candle: &Value, torch: &Result<Value, String>) {
    // `time` names a total (seconds) or a list of per-step seconds, whose median is used: on a
    // shared machine one step slowed by a neighbour should not move the whole result.
    let rate = |v: &Value, part: &str, time: &str| {
        let tokens = v[part]["tokens"].as_f64().unwrap_or(f64::NAN);
        match &v[part][time] {
            Value::Array(xs) => {
                let mut xs: Vec<f64> = xs.iter().filter_map(Value::as_f64).collect();
                if xs.is_empty() {
                    return f64::NAN;
                }
                xs.sort_by(f64::total_cmp);
                let mid = xs.len() / 2;
                let median = if xs.len() % 2 == 1 { xs[mid] } else { (xs[mid - 1] + xs[mid]) / 2.0 };
                tokens / xs.len() as f64 / median
            }
            t => tokens / t.as_f64().unwrap_or(f64::NAN),
        }
    };
    let metrics = [
        ("train tokens / CPU-s", "train", "cpu_s"),
        ("  (median step)", "train", "steps_cpu_s"),
        ("train tokens / s (wall)", "train", "wall_s"),
        ("generated tokens / CPU-s", "generate", "cpu_s"),
        ("  (median run)", "generate", "runs_cpu_s"),
        ("generated tokens / s (wall)", "generate", "wall_s"),
    ];
    println!();
    println!("{:<30} {:>12} {:>12} {:>8}", "metric (CPU)", "candle", "PyTorch", "ratio");
    let mut rows = Vec::new();
    for (name, part, time) in metrics {
        let c = rate(candle, part, time);
        let (t, ratio) = match torch {
            Ok(t) => (Some(rate(t, part, time)), Some(c / rate(t, part, time))),
            Err(_) => (None, None),
        };
        let cell = |x: Option<f64>, w: usize| x.map_or(format!("{:>w$}", "—"), |x| format!("{x:>w$.1}"));
        let ratio_cell = ratio.map_or(format!("{:>8}", "—"), |r| format!("{r:>7.2}x"));
        println!("{name:<30} {:>12.1} {} {ratio_cell}", c, cell(t, 12));
        rows.push(json!({"metric": name, "candle": c, "pytorch": t, "ratio": ratio}));
    }
    let mut notes = Vec::new();
    // Where a training step's CPU time goes, per step, on each side.
    let phases = |v: &Value| {
        let steps = v["train"]["steps"].as_f64().unwrap_or(f64::NAN);
        let p = &v["train"]["phases_cpu_s"];
        let f = |k: &str| p[k].as_f64().unwrap_or(f64::NAN) / steps;
        format!("forward {:.2}, backward {:.2}, optimizer {:.2}", f("forward"), f("backward"), f("optimizer"))
    };
    let mut line = format!("train CPU-s per step: candle {}", phases(candle));
    if let Ok(t) = torch {
        line += &format!("; PyTorch {}", phases(t));
    }
    println!("{line}");
    notes.push(line);
    match torch {
        Err(why) => {
            println!("PyTorch: {why}");
            notes.push(format!("PyTorch: {why}"));
        }
        Ok(t) => {
            let cl = candle["train"]["first_loss"].as_f64().unwrap_or(f64::NAN);
            let tl = t["train"]["first_loss"].as_f64().unwrap_or(f64::NAN);
            println!("first-step loss (base model, B = 0): candle {cl:.5}, PyTorch {tl:.5}");
            let a = candle["generate"]["first_run_tokens"].as_array().cloned().unwrap_or_default();
            let b = t["generate"]["first_run_tokens"].as_array().cloned().unwrap_or_default();
            let (mut same, mut total) = (0usize, 0usize);
            for (x, y) in a.iter().zip(&b) {
                let (x, y) = (x.as_array().cloned().unwrap_or_default(), y.as_array().cloned().unwrap_or_default());
                // Count the agreeing prefix of each row: after one differing token the
                // continuations are no longer comparable.
                same += x.iter().zip(&y).take_while(|(p, q)| p == q).count();
                total += x.len().max(y.len());
            }
            println!("greedy tokens agreeing (common prefix per row): {same}/{total}");
            notes.push(format!(
                "first-step loss candle {cl:.6} PyTorch {tl:.6}; greedy prefix agreement {same}/{total}"
            ));
            if let Some(v) = t["versions"].as_object() {
                notes.push(format!("PyTorch side: {}", serde_json::to_string(v).unwrap_or_default()));
            }
        }
    }
    println!("CUDA: not measured (no GPU on this machine; build with --features hz-llm/cuda where one is)");
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(g) = v["generate"].as_object_mut() {
            g.remove("first_run_tokens");
        }
        v
    };
    let doc = json!({
        "benchmark": "lora-train-generate-cpu",
        "model": shape, "threads": threads,
        "train": {"batch": BATCH, "seq": SEQ, "loss": "token-mean NLL", "optimizer": "AdamW lr 1e-3, clip 1.0"},
        "generate": {"batch": GEN_BATCH, "prompt": PROMPT, "new_tokens": NEW_TOKENS, "sampling": "greedy, KV cache"},
        "goal_ratio": 1.0,
        "results": rows,
        "candle": strip(candle),
        "pytorch": torch.as_ref().map(strip).ok(),
        "cuda": null,
        "notes": notes,
    });
    let out = root.join("bench-results/train-cpu.json");
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d).expect("bench-results/");
    }
    std::fs::write(&out, serde_json::to_string_pretty(&doc).expect("json")).expect("writing the results");
    println!("wrote bench-results/train-cpu.json");
}
