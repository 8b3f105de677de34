//! Learning, not just running: GRPO on the email-triage template gym raises a small model's
//! mean episode reward well above where it started, within a bounded number of steps, with a
//! fixed seed.
//!
//! The model is one the test makes: a tiny Qwen2 with a tokenizer trained on the gym's own
//! text, given a brief supervised warm-up on replies that follow the gym's one-line format
//! but with fields drawn at random (so it learns the shape of an answer, never which answer
//! is right), then merged into the base weights, as a pretrained model's instruction tuning
//! would be. From there, GRPO runs through the same `Run` loop `hz train` uses, with a fresh
//! adapter and the KL measured against that warmed base. The reward is only the gym's: 0.4 /
//! 0.3 / 0.3 for the right category / priority / team, -0.3 for a malformed reply (one attempt
//! per task). Sampled at temperature 0.7 / top-p 0.9, about a quarter of the warmed policy's
//! replies are well formed, so it starts near -0.2; a mean of 0 or more needs most replies
//! well formed (a well-formed reply with random fields is worth about 0.16).

use candle_core::{DType, Device};
use hz_chat::{Builtin, ChatTokenizer, Message};
use hz_llm::tiny::{train_tokenizer, write_model, TinySpec};
use hz_llm::{Family, LoraConfig, Model};
use hz_train::grpo::{self, derive_seed};
use hz_train::loss::Scored;
use hz_train::optim::{AdamW, AdamWConfig};
use hz_train::rollout::GymFace;
use hz_train::run::{JsonlSink, Run, RunIdentity, TrainConfig};
use std::path::{Path, PathBuf};

// The allocator `hz train` runs with (hz-cli's).
#[global_allocator]
static GLOBAL: hz_alloc::HzAlloc = hz_alloc::HzAlloc::new();

const CATEGORIES: [&str; 8] = ["billing", "technical", "account", "sales", "security", "legal", "feedback", "spam"];
const PRIORITIES: [&str; 4] = ["low", "medium", "high", "urgent"];
const TEAMS: [&str; 8] = ["finance", "engineering", "support", "sales", "security", "legal", "product", "none"];

/// An untrained-for-this-gym policy stays below this mean episode reward; GRPO must end above.
const THRESHOLD: f64 = 0.0;

fn gym_face() -> GymFace {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../gym-templates/email-triage/email-triage.gym.json");
    GymFace::new(hz_gym::Gym::load(&path).unwrap(), hz_gym::RuntimeConfig::default()).unwrap()
}

/// The first observation of the task that `seed` picks.
fn observation(face: &GymFace, seed: u64) -> String {
    let mut env = hz_gym::Env::new(face.gym.clone(), face.runtime.clone());
    env.reset(seed, &hz_gym::ResetOptions::default()).unwrap().0
}

/// A well-formed reply with every field drawn at random.
fn random_answer(seed: u64) -> String {
    let pick = |k: u64, n: usize| (derive_seed(seed, k, 0) % n as u64) as usize;
    format!("category: {}; priority: {}; team: {}", CATEGORIES[pick(1, 8)], PRIORITIES[pick(2, 4)], TEAMS[pick(3, 8)])
}

/// Mean episode reward over a fixed set of tasks and samples (the same for every call).
fn evaluate(model: &Model, chat: &ChatTokenizer, face: &GymFace, cfg: &TrainConfig) -> f64 {
    let mut eval = cfg.grpo();
    eval.seed = 0xE7A1;
    eval.prompts_per_step = 16;
    eval.group_size = 4;
    let t0 = std::time::Instant::now();
    let episodes = grpo::collect(model, chat, face, &eval, 0).unwrap();
    for e in episodes.iter().take(3) {
        eprintln!("eval sample: {:+.2} {:?}", e.reward, e.completions);
    }
    eprintln!("eval took {:.1}s", t0.elapsed().as_secs_f64());
    episodes.iter().map(|e| e.reward).sum::<f64>() / episodes.len() as f64
}

/// Writes the tiny base, warms it up on the format and merges that into `out`.
fn warmed_model(dir: &Path, face: &GymFace) -> PathBuf {
    let observations: Vec<String> = (0..64).map(|s| observation(face, s)).collect();
    let mut corpus = observations.clone();
    corpus.extend((0..300).map(random_answer));
    corpus.push(
        "Your reply must be exactly one line: category: <category>; priority: <priority>; team: <team>, using only \
         the values listed in the policy. Try again (step 1/2). No attempts left. Triage recorded:"
            .into(),
    );
    let tok = train_tokenizer(&corpus, 2000).unwrap();
    let base = dir.join("base");
    // Weights larger than the default let the tied embeddings give sharp logits: LoRA cannot
    // change the embeddings, and at 0.08 no next token can get much more than 5% of the mass.
    let spec = TinySpec { init_std: 0.25, ..TinySpec::new(Family::Qwen2, 0) };
    write_model(&base, &spec, &tok, 11).unwrap();

    let mut model = hz_llm::load::load_model(&base, &Device::Cpu, DType::F32).unwrap();
    let targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
    model.add_lora(&LoraConfig::new(16, 32.0, &targets), 3).unwrap();
    let chat = ChatTokenizer::from_model_dir(&base, Some(Builtin::ChatMl)).unwrap();
    let rows: Vec<(Vec<u32>, Vec<bool>)> = (0..48u64)
        .map(|i| {
            let msgs = vec![
                Message::user(observations[i as usize % observations.len()].clone()),
                Message::assistant(random_answer(1000 + i)),
            ];
            let e = chat.encode_conversation(&msgs, &face.tools).unwrap();
            (e.ids, e.mask.iter().map(|&m| m != 0).collect())
        })
        .collect();
    if let Some((ids, _)) = rows.first() {
        eprintln!("warm-up rows are {} tokens", ids.len());
    }
    let vars: Vec<_> = model.lora_vars().into_iter().flat_map(|(_, a, b)| [a, b]).collect();
    let t0 = std::time::Instant::now();
    let mut opt = AdamW::new(vars, AdamWConfig { lr: WARMUP_LR, ..AdamWConfig::default() }).unwrap();
    for step in 0..WARMUP_STEPS {
        let batch: Vec<Scored> = (0..8)
            .map(|j| {
                let (ids, mask) = &rows[(step * 8 + j) % rows.len()];
                Scored { tokens: ids, mask }
            })
            .collect();
        let loss = hz_train::sft_step(&model, &mut opt, &batch).unwrap();
        eprintln!("warm-up step {step}: loss {loss:.3} at {:.1}s", t0.elapsed().as_secs_f64());
    }
    let warm = dir.join("warm");
    hz_peft::merge_into(&base, &model.adapter("tiny").unwrap(), &warm).unwrap();
    warm
}

const WARMUP_STEPS: usize = 45;
const WARMUP_LR: f64 = 1.5e-2;
/// GRPO steps, learning rate and KL weight: at 16 episodes a step the reward climbs slowly
/// but steadily. The path is seeded but rides on float rounding, which the CPU's SIMD kernels
/// (AVX2 or AVX-512) and the build move, so the settings are the ones that held up across such
/// changes: at lr 5e-3 the path reached +0.07 on one attention kernel and -0.06 on the next,
/// with whole steps of malformed replies on the way. With a KL weight of 0.01 the policy could
/// drift away from the warmed base and collapse into malformed replies after climbing (on an
/// AVX2 machine: KL 1.2-1.7 from step 90, the last 20 steps back at -0.15); at 0.05 it climbs
/// without a collapse: -0.23 to +0.10 (seed 7), -0.25 to +0.14 (seed 8) and -0.19 to +0.02
/// (seed 9) on that machine. So the assertions read the training curve over many episodes,
/// and the evaluation's rise.
const STEPS: u64 = 130;
const WINDOW: usize = 20;
const LR: f64 = 3e-3;
const KL_BETA: f64 = 0.05;

#[test]
fn grpo_raises_the_mean_episode_reward_on_email_triage() {
    let dir = tempfile::tempdir().unwrap();
    let face = gym_face();
    let warm = warmed_model(dir.path(), &face);
    let model = hz_llm::load::load_model(&warm, &Device::Cpu, DType::F32).unwrap();
    let chat = ChatTokenizer::from_model_dir(&warm, Some(Builtin::ChatMl)).unwrap();

    let cfg = TrainConfig {
        steps: STEPS,
        seed: 7,
        lr: LR,
        lora_r: 8,
        lora_alpha: 16.0,
        lora_targets: ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"].map(String::from).to_vec(),
        group_size: 8,
        prompts_per_step: 2,
        micro_batch: 16,
        kl_beta: KL_BETA,
        max_new_tokens: 24,
        temperature: 0.7,
        top_p: 0.9,
        // One attempt per task: a malformed reply ends the episode at -0.3.
        max_turns: 1,
        checkpoint_every: 100,
        ..TrainConfig::default()
    };
    let start = evaluate(&model, &chat, &face, &cfg);
    eprintln!("mean episode reward before GRPO: {start:.3}");
    assert!(start < THRESHOLD, "the warmed-up policy already meets the threshold: {start:.3}");

    let identity = RunIdentity { gym: face.gym.id().to_hex(), model: "tiny-warm".into() };
    let run_dir = dir.path().join("run");
    let mut run = Run::open(
        &run_dir,
        cfg.clone(),
        identity,
        model,
        ChatTokenizer::from_model_dir(&warm, Some(Builtin::ChatMl)).unwrap(),
        gym_face(),
    )
    .unwrap();
    let mut sink = JsonlSink::new(run.metrics_path());
    let summary = run.run(&mut [&mut sink], None).unwrap();
    assert_eq!(summary.steps_done, cfg.steps);
    let steps = JsonlSink::read(&run.metrics_path()).unwrap();
    for m in &steps {
        eprintln!(
            "step {:2}: reward {:+.3} ± {:.3}  kl {:.4}  flat groups {}  len {:.1}",
            m.step, m.reward_mean, m.reward_std, m.kl, m.flat_groups, m.completion_len
        );
    }
    // The episodes of the first and the last WINDOW steps (320 each): the training curve,
    // averaged over enough episodes that one lucky or unlucky step does not decide.
    let mean = |ms: &[hz_train::grpo::StepMetrics]| ms.iter().map(|m| m.reward_mean).sum::<f64>() / ms.len() as f64;
    let (first, last) = (mean(&steps[..WINDOW]), mean(&steps[steps.len() - WINDOW..]));
    let end = evaluate(run.model(), &chat, &face, &cfg);
    eprintln!("training reward: first {WINDOW} steps {first:.3}, last {WINDOW} {last:.3}");
    eprintln!("mean episode reward after {} GRPO steps: {end:.3} (from {start:.3})", cfg.steps);
    assert!(last >= THRESHOLD, "after GRPO the policy should meet the threshold: last steps at {last:.3}");
    assert!(last - first >= 0.2, "GRPO should raise the training reward by at least 0.2: {first:.3} -> {last:.3}");
    // The held-out evaluation (64 episodes, its own seed) moves the same way.
    assert!(end - start >= 0.15, "the evaluation should rise by at least 0.15: {start:.3} -> {end:.3}");
}
