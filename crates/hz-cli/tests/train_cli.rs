//! `hz train` end to end on a template gym with a tiny model the test writes: a run killed
//! with SIGKILL mid-way and resumed ends with the same adapter, byte for byte, as an
//! uninterrupted run with the same seed; Ctrl-C stops after the step with a checkpoint and the
//! run resumes; metrics land in metrics.jsonl and the SQLite index;
//! a resume with other settings is refused, naming them.

use hz_llm::tiny::{train_tokenizer, write_model, TinySpec};
use hz_llm::Family;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn hz() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hz"))
}

fn template(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../gym-templates/{name}/{name}.gym.json"))
}

fn gym() -> PathBuf {
    template("email-triage")
}

fn tiny_model(dir: &Path) {
    let corpus: Vec<String> = (0..30)
        .map(|i| format!("category: billing; priority: high; team: finance {i} Triage this email. Reply with one line"))
        .collect();
    let tok = train_tokenizer(&corpus, 400).unwrap();
    write_model(dir, &TinySpec::new(Family::Qwen2, 0), &tok, 3).unwrap();
}

fn train(model: &Path, out: &Path, data: &Path, steps: u64, extra: &[&str]) -> Command {
    train_on(&gym(), model, out, data, steps, extra)
}

fn train_on(gym: &Path, model: &Path, out: &Path, data: &Path, steps: u64, extra: &[&str]) -> Command {
    let mut c = hz();
    c.args(["train", "--gym"]).arg(gym).arg("--model").arg(model).arg("--out").arg(out);
    c.args(["--seed", "11", "--lr", "0.01", "--group-size", "2", "--prompts-per-step", "1"]);
    c.args(["--max-new-tokens", "8", "--max-turns", "1", "--checkpoint-every", "1", "--quiet"]);
    c.args(["--steps", &steps.to_string()]).args(extra);
    if !extra.contains(&"--algo") {
        c.args(["--algo", "grpo"]);
    }
    c.env("HZ_DATA_DIR", data).env_remove("HZ_OVERSEER_URL");
    c
}

fn ok(mut c: Command) -> String {
    let out = c.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "hz train failed: {text}");
    text
}

/// metrics.jsonl without the wall-clock field.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("tokens_per_s");
            v
        })
        .collect()
}

#[test]
fn a_killed_run_resumes_to_the_same_adapter_as_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (tmp.path().join("model"), tmp.path().join("data"));
    tiny_model(&model);
    const STEPS: u64 = 4;

    let whole = tmp.path().join("whole");
    let text = ok(train(&model, &whole, &data, STEPS, &["--no-index"]));
    assert!(text.contains("adapter:"), "{text}");

    // The same run, killed once its second checkpoint is on disk.
    let cut = tmp.path().join("cut");
    let mut child =
        train(&model, &cut, &data, STEPS, &["--no-index"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let second = cut.join("checkpoints").join("step-00000002");
    let started = Instant::now();
    while !second.is_dir() {
        assert!(started.elapsed() < Duration::from_secs(600), "no second checkpoint within 10 minutes");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!cut.join("adapter").exists(), "killed before the end");
    let before: Vec<_> = metrics(&cut);
    assert!(before.len() >= 2 && before.len() < STEPS as usize, "{} metric lines at the kill", before.len());

    let text = ok(train(&model, &cut, &data, STEPS, &["--no-index"]));
    assert!(text.contains("resuming"), "{text}");
    let weights = |run: &Path| std::fs::read(run.join("adapter").join("adapter_model.safetensors")).unwrap();
    assert_eq!(weights(&whole), weights(&cut), "resumed adapter differs from the uninterrupted one");
    assert_eq!(metrics(&whole), metrics(&cut), "every step once, with the same numbers");
    assert_eq!(metrics(&cut).iter().map(|m| m["step"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3]);
    // The adapter is PEFT's layout and moved away from its zero start.
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cut.join("adapter").join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    // Old checkpoints are pruned to the newest two.
    let kept = std::fs::read_dir(cut.join("checkpoints")).unwrap().count();
    assert_eq!(kept, 2);
}

/// Ctrl-C ends a run cleanly: the step in progress finishes, a checkpoint of it is written,
/// the command says how far it got and exits 0, and running it again resumes to the end.
#[test]
fn ctrl_c_stops_after_the_step_with_a_checkpoint_and_the_run_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (tmp.path().join("model"), tmp.path().join("data"));
    tiny_model(&model);
    const STEPS: u64 = 12;
    let run = tmp.path().join("run");
    let child =
        train(&model, &run, &data, STEPS, &["--no-index"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut child = child.unwrap();
    let first = run.join("checkpoints").join("step-00000001");
    let started = Instant::now();
    while !first.is_dir() {
        assert!(started.elapsed() < Duration::from_secs(600), "no first checkpoint within 10 minutes");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success(), "kill -INT failed");
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "a stopped run exits 0: {text}");
    let done = metrics(&run).len() as u64;
    assert!(
        text.contains(&format!("stopped after {done} of {STEPS} steps; run again to resume")),
        "{done} steps in metrics.jsonl: {text}"
    );
    assert!((1..STEPS).contains(&done), "stopped after {done} steps");
    assert!(run.join("checkpoints").join(format!("step-{done:08}")).is_dir(), "no checkpoint of the last step");
    assert!(!run.join("adapter").exists(), "a stopped run has no final adapter");

    let text = ok(train(&model, &run, &data, STEPS, &["--no-index"]));
    assert!(text.contains("resuming"), "{text}");
    let steps: Vec<u64> = metrics(&run).iter().map(|m| m["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (0..STEPS).collect::<Vec<_>>(), "every step once");
    assert!(run.join("adapter").join("adapter_model.safetensors").is_file());
}

#[test]
fn metrics_go_to_the_index_and_a_changed_resume_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (tmp.path().join("model"), tmp.path().join("data"));
    tiny_model(&model);
    let run = tmp.path().join("run");
    ok(train(&model, &run, &data, 2, &[]));
    let lines = metrics(&run);
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert!(l["reward_items"].as_object().is_some_and(|o| !o.is_empty()), "itemised rewards: {l}");
        for k in ["reward_mean", "reward_std", "kl", "loss", "clip_fraction", "entropy", "completion_len"] {
            assert!(l[k].as_f64().is_some_and(f64::is_finite), "{k} in {l}");
        }
    }
    let db = hz_db::Db::open(&data.join("index.sqlite")).unwrap();
    let key = std::path::absolute(&run).unwrap().display().to_string();
    let row = db.train_run(&key).unwrap().expect("the run is in the index");
    assert_eq!(row.algo, "grpo");
    let steps = db.train_steps(&key).unwrap();
    assert_eq!(steps.len(), 2);
    for (s, l) in steps.iter().zip(&lines) {
        assert_eq!(s.reward_mean, l["reward_mean"].as_f64().unwrap());
        assert_eq!(s.rewards.len(), l["reward_items"].as_object().unwrap().len());
    }

    // Another KL weight on the same folder: refused, naming the setting; nothing lost.
    let out = train(&model, &run, &data, 3, &["--kl-beta", "0.5"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("kl_beta: 0.04 -> 0.5"), "{err}");
    assert_eq!(metrics(&run).len(), 2);
    // More steps with the same settings extend the run.
    ok(train(&model, &run, &data, 3, &[]));
    assert_eq!(metrics(&run).len(), 3);
    assert_eq!(db.train_steps(&key).unwrap().len(), 3);

    // Bad settings name the field.
    let out = train(&model, &tmp.path().join("bad"), &data, 2, &["--lora-r", "0"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("lora_r"), "{err}");
}

#[test]
fn ppo_and_dpo_runs_resume_exactly_from_their_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (tmp.path().join("model"), tmp.path().join("data"));
    tiny_model(&model);
    let pairs = tmp.path().join("pairs.jsonl");
    let lines: String = (0..5)
        .map(|i| {
            serde_json::json!({"prompt": format!("email {i}"), "chosen": "category: billing", "rejected": "team: finance"})
                .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(&pairs, lines).unwrap();
    let pairs = pairs.display().to_string();
    for algo in [vec!["--algo", "ppo"], vec!["--algo", "dpo", "--pairs", &pairs]] {
        let name = algo[1];
        let mut args = algo.clone();
        args.push("--no-index");
        let whole = tmp.path().join(format!("{name}-whole"));
        ok(train(&model, &whole, &data, 3, &args));
        // One step, then the same run extended to three: the rest runs from the checkpoint
        // (adapter, AdamW moments and, for PPO, the value head).
        let split = tmp.path().join(format!("{name}-split"));
        ok(train(&model, &split, &data, 1, &args));
        let text = ok(train(&model, &split, &data, 3, &args));
        assert!(text.contains("resuming"), "{text}");
        let weights = |run: &Path| std::fs::read(run.join("adapter").join("adapter_model.safetensors")).unwrap();
        assert_eq!(weights(&whole), weights(&split), "{name}: resumed adapter differs");
        assert_eq!(metrics(&whole), metrics(&split), "{name}");
        let last = metrics(&whole).pop().unwrap();
        if name == "ppo" {
            assert!(last["extra"]["value_loss"].as_f64().is_some(), "{last}");
            let opt = candle_core::safetensors::load(
                whole.join("checkpoints").join("step-00000003").join("optimizer.safetensors"),
                &candle_core::Device::Cpu,
            )
            .unwrap();
            assert!(opt.contains_key("extra.value.w"), "the value head is checkpointed");
        } else {
            assert!(last["extra"]["accuracy"].as_f64().is_some(), "{last}");
            // Other pairs under the same path: the resume is refused, and the run is intact.
            let path = Path::new(&pairs);
            let kept = std::fs::read(path).unwrap();
            let edited = String::from_utf8(kept.clone()).unwrap().replace("email 4", "email four");
            std::fs::write(path, edited).unwrap();
            let out = train(&model, &split, &data, 4, &args).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success() && err.contains("has changed since it began"), "{err}");
            assert_eq!(metrics(&split).len(), 3);
            std::fs::write(path, kept).unwrap();
        }
    }
}

/// `--model FILE.gguf`: a quantized base trains from the command line as a folder does. The
/// default overseer serves the same file, the run resumes from its checkpoint, the adapter
/// moved off its zero start, and a resume on another model file is refused with nothing lost.
#[test]
fn a_gguf_model_trains_and_resumes_from_the_command_line() {
    use candle_core::quantized::GgmlDType;
    use hz_llm::tiny::{write_gguf, GgufOptions};
    let tmp = tempfile::tempdir().unwrap();
    let (hf, data) = (tmp.path().join("hf"), tmp.path().join("data"));
    tiny_model(&hf);
    let gguf = tmp.path().join("tiny-q8.gguf");
    write_gguf(&hf, &gguf, &GgufOptions::new(GgmlDType::Q8_0)).unwrap();
    // A gym with an overseer node, so the default judge is the GGUF file served on loopback.
    let gym = template("customer-support");
    let run = tmp.path().join("run");
    let text = ok(train_on(&gym, &gguf, &run, &data, 1, &["--no-index"]));
    assert!(text.contains("overseer: the base model at http://127.0.0.1:"), "{text}");
    let text = ok(train_on(&gym, &gguf, &run, &data, 2, &["--no-index"]));
    assert!(text.contains("resuming") && text.contains("adapter:"), "{text}");
    assert_eq!(metrics(&run).iter().map(|m| m["step"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1]);

    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("adapter").join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");

    // A random policy's rollouts all score alike, so GRPO has nothing to push on at first;
    // DPO does from its first step: gradients reach the adapter through the quantized base.
    let pairs = tmp.path().join("pairs.jsonl");
    std::fs::write(
        &pairs,
        serde_json::json!({"prompt": "Where is order 7?", "chosen": "lookup_order 7", "rejected": "no idea"})
            .to_string(),
    )
    .unwrap();
    let dpo = tmp.path().join("dpo");
    let pairs = pairs.display().to_string();
    ok(train_on(&gym, &gguf, &dpo, &data, 1, &["--no-index", "--algo", "dpo", "--pairs", &pairs]));
    let w = candle_core::safetensors::load(
        dpo.join("adapter").join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let moved = w
        .iter()
        .filter(|(k, _)| k.contains("lora_B"))
        .map(|(_, t)| t.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap())
        .fold(0.0f32, f32::max);
    assert!(moved > 0.0, "no LoRA B matrix moved from zero in a DPO step on the GGUF base");

    // The same weights in another file type are another model: the resume is refused.
    let other = tmp.path().join("tiny-f32.gguf");
    write_gguf(&hf, &other, &GgufOptions::new(GgmlDType::F32)).unwrap();
    let out = train_on(&gym, &other, &run, &data, 3, &["--no-index"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("tiny-q8@") && err.contains("tiny-f32@"), "{err}");
    assert_eq!(metrics(&run).len(), 2, "the refused resume changed nothing");
}
