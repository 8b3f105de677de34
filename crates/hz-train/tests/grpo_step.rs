//! One GRPO step end to end on a template gym with a tiny model the test writes: episodes
//! come back with policy-only masks and the gym's itemised rewards, and an update moves the
//! adapter when a group has reward spread; a step whose groups are all flat is skipped, and
//! flat groups in a step that runs still carry their KL term.

use candle_core::{DType, Device};
use hz_chat::{Builtin, ChatTokenizer};
use hz_llm::tiny::{train_tokenizer, write_model, TinySpec};
use hz_llm::{Family, LoraConfig};
use hz_train::grpo::{self, GrpoConfig};
use hz_train::optim::{AdamW, AdamWConfig};
use hz_train::rollout::GymFace;
use std::path::PathBuf;

fn gym_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../gym-templates/email-triage/email-triage.gym.json")
}

#[test]
fn a_grpo_step_rolls_out_masks_policy_tokens_and_updates_the_adapter() {
    let gym = hz_gym::Gym::load(&gym_path()).expect("template gym");
    let face = GymFace::new(gym, hz_gym::RuntimeConfig::default()).unwrap();
    let corpus: Vec<String> = (0..20)
        .map(|i| format!("category: billing; priority: high; team: finance {i} Triage this email. Reply with one line"))
        .collect();
    let tok = train_tokenizer(&corpus, 400).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &TinySpec::new(Family::Qwen2, 0), &tok, 1).unwrap();
    let mut model = hz_llm::load::load_model(dir.path(), &Device::Cpu, DType::F32).unwrap();
    model.add_lora(&LoraConfig::new(4, 8.0, &["q_proj", "v_proj"]), 2).unwrap();
    let chat = ChatTokenizer::from_model_dir(dir.path(), Some(Builtin::ChatMl)).unwrap();

    let mut cfg = GrpoConfig { group_size: 4, prompts_per_step: 2, max_turns: 2, seed: 7, ..GrpoConfig::default() };
    cfg.sampling.max_new_tokens = 12;
    let episodes = grpo::collect(&model, &chat, &face, &cfg, 0).unwrap();
    assert_eq!(episodes.len(), 8);
    for e in &episodes {
        assert_eq!(e.tokens.len(), e.mask.len());
        let policy = e.mask.iter().filter(|&&m| m).count();
        assert!(policy > 0 && policy <= e.completion_tokens + e.turns, "policy tokens {policy}");
        assert!(!e.mask[0], "the prompt is never trained on");
        // A random model breaks the one-line format: the gym's own constraint penalises it.
        assert!(!e.items.is_empty(), "itemised rewards from the gym");
        assert!((e.items.values().sum::<f64>() - e.reward).abs() < 1e-9);
    }

    let vars: Vec<_> = model.lora_vars().into_iter().flat_map(|(_, a, b)| [a, b]).collect();
    let snapshot = || -> Vec<f32> { vars[1].as_tensor().flatten_all().unwrap().to_vec1().unwrap() };
    let mut opt = AdamW::new(vars.clone(), AdamWConfig { lr: 1e-2, ..AdamWConfig::default() }).unwrap();

    // Equal rewards in every group at the reference: no signal and no KL to pull back, so
    // the adapter stays put (and nothing is divided by zero).
    let flat = |eps: &[hz_train::rollout::Episode]| -> Vec<hz_train::rollout::Episode> {
        eps.iter().cloned().map(|e| hz_train::rollout::Episode { reward: -0.6, ..e }).collect()
    };
    let before = snapshot();
    let m = grpo::update(&model, &mut opt, &cfg, &flat(&episodes), 0).unwrap();
    assert_eq!(m.flat_groups, 2);
    assert!(m.kl.abs() < 1e-6, "at the reference: KL {}", m.kl);
    assert_eq!(snapshot(), before, "flat groups at the reference must leave the adapter alone");

    // Spread within the groups: the adapter moves, starting from the reference (KL 0).
    let mut spread = episodes.clone();
    for (i, e) in spread.iter_mut().enumerate() {
        e.reward = if i % 2 == 0 { 1.0 } else { 0.0 };
    }
    let m = grpo::update(&model, &mut opt, &cfg, &spread, 0).unwrap();
    assert_eq!(m.flat_groups, 0);
    assert!(m.grad_norm > 0.0 && m.grad_norm.is_finite(), "{m:?}");
    assert!(m.kl.abs() < 1e-6, "the first update starts at the reference: KL {}", m.kl);
    assert!(m.trained_tokens > 0);
    assert_ne!(snapshot(), before, "an update with reward spread must move the adapter");
    grpo::update(&model, &mut opt, &cfg, &spread, 1).unwrap();

    // Now the policy has drifted, and every group is flat: the step has no learning signal
    // and is skipped whole, with β > 0 too (the KL term alone is not worth an Adam step).
    let drifted = snapshot();
    let m = grpo::update(&model, &mut opt, &cfg, &flat(&episodes), 2).unwrap();
    assert_eq!(m.flat_groups, 2);
    assert_eq!((m.trained_tokens, snapshot() == drifted), (0, true), "no signal, no update: {m:?}");
    // One group with spread is enough for the step to run, the flat one carrying its KL term.
    let mut half = flat(&episodes);
    half[0].reward = 1.0;
    let m = grpo::update(&model, &mut opt, &cfg, &half, 3).unwrap();
    assert_eq!(m.flat_groups, 1);
    assert!(m.kl > 1e-6 && m.grad_norm > 0.0, "a drifted policy has KL and a gradient: {m:?}");
    assert_eq!(m.trained_tokens, episodes.iter().map(|e| e.tokens.len()).sum::<usize>(), "all 8 episodes train");
    assert_ne!(snapshot(), drifted);
}
