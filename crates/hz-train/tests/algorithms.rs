//! DPO and PPO by behaviour on a tiny model the test writes: DPO makes the policy prefer the
//! chosen answers over the rejected ones on prompts it never saw (starting from the reference,
//! where the loss is exactly ln 2); PPO raises the likelihood of rewarded episodes over
//! unrewarded ones and fits its value head; GAE credits turn rewards as hand-computed; bad
//! pair files are refused naming the line and the field.

use candle_core::{DType, Device};
use hz_chat::{Builtin, ChatTokenizer};
use hz_llm::tiny::{train_tokenizer, write_model, TinySpec};
use hz_llm::{Family, Fwd, LoraConfig, Model};
use hz_train::dpo::{self, Pair};
use hz_train::loss::{score, Scored};
use hz_train::optim::{AdamW, AdamWConfig};
use hz_train::ppo::{self, gae, ValueHead};
use hz_train::rollout::GymFace;
use hz_train::run::{Algo, TrainConfig};
use hz_train::TrainError;
use std::io::Write;
use std::path::PathBuf;

fn gym_face() -> GymFace {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../gym-templates/email-triage/email-triage.gym.json");
    GymFace::new(hz_gym::Gym::load(&path).unwrap(), hz_gym::RuntimeConfig::default()).unwrap()
}

fn tiny(dir: &std::path::Path) -> (Model, ChatTokenizer) {
    // The gym's own observations in the corpus keep its long policy text to few tokens.
    let face = gym_face();
    let mut corpus: Vec<String> = (0..8)
        .map(|seed| {
            let mut env = hz_gym::Env::new(face.gym.clone(), face.runtime.clone());
            env.reset(seed, &hz_gym::ResetOptions::default()).unwrap().0
        })
        .collect();
    corpus.extend((0..40).map(|i| {
        format!("Email {i}: my invoice is wrong. category: billing category: spam team: finance team: support")
    }));
    let tok = train_tokenizer(&corpus, 1200).unwrap();
    write_model(dir, &TinySpec::new(Family::Qwen2, 0), &tok, 5).unwrap();
    let mut model = hz_llm::load::load_model(dir, &Device::Cpu, DType::F32).unwrap();
    model.add_lora(&LoraConfig::new(8, 16.0, &["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"]), 9).unwrap();
    let chat = ChatTokenizer::from_model_dir(dir, Some(Builtin::ChatMl)).unwrap();
    (model, chat)
}

fn opt(model: &Model, extra: Vec<candle_core::Var>, lr: f64) -> AdamW {
    let mut vars: Vec<_> = model.lora_vars().into_iter().flat_map(|(_, a, b)| [a, b]).collect();
    vars.extend(extra);
    AdamW::new(vars, AdamWConfig { lr, ..AdamWConfig::default() }).unwrap()
}

fn write_pairs(path: &std::path::Path, range: std::ops::Range<usize>) {
    let mut f = std::fs::File::create(path).unwrap();
    for i in range {
        let line = serde_json::json!({
            "prompt": format!("Email {i}: my invoice is wrong."),
            "chosen": "category: billing team: finance",
            "rejected": "category: spam team: support",
        });
        writeln!(f, "{line}").unwrap();
    }
}

/// β·((π_c - ref_c) - (π_r - ref_r)) for each pair: the implicit reward margin.
fn margins(model: &Model, pairs: &[Pair], beta: f64) -> Vec<f64> {
    let seq = |fwd: Fwd, rows: &[Scored]| -> Vec<f64> {
        let s = score(model, rows, fwd, false, false).unwrap();
        s.lp.mul(&s.mask).unwrap().sum(1).unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
    };
    let rows: Vec<Scored> = pairs
        .iter()
        .flat_map(|p| {
            [Scored { tokens: &p.chosen.0, mask: &p.chosen.1 }, Scored { tokens: &p.rejected.0, mask: &p.rejected.1 }]
        })
        .collect();
    let (pol, reference) = (seq(Fwd::POLICY, &rows), seq(Fwd::REFERENCE, &rows));
    (0..pairs.len())
        .map(|i| beta * ((pol[2 * i] - reference[2 * i]) - (pol[2 * i + 1] - reference[2 * i + 1])))
        .collect()
}

#[test]
fn dpo_prefers_the_chosen_answers_on_unseen_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let (model, chat) = tiny(&dir.path().join("model"));
    let (train_path, test_path) = (dir.path().join("train.jsonl"), dir.path().join("test.jsonl"));
    write_pairs(&train_path, 0..12);
    write_pairs(&test_path, 100..106);
    let train = dpo::load_pairs(&train_path, &chat).unwrap();
    let held_out = dpo::load_pairs(&test_path, &chat).unwrap();
    assert_eq!((train.len(), held_out.len()), (12, 6));
    for p in &train {
        // Only the answer is trained on, never the prompt.
        let n = p.chosen.1.iter().filter(|&&m| m).count();
        assert!(n > 0 && n < p.chosen.0.len() / 2, "{n} of {} tokens masked in", p.chosen.0.len());
        assert!(!p.chosen.1[0]);
    }
    let before = margins(&model, &held_out, 0.1);
    assert!(before.iter().all(|m| m.abs() < 1e-6), "a fresh adapter is the reference: {before:?}");

    let mut opt = opt(&model, Vec::new(), 5e-3);
    let mut losses = Vec::new();
    for step in 0..12u64 {
        let batch: Vec<Pair> = (0..6).map(|j| train[(step as usize * 6 + j) % train.len()].clone()).collect();
        let st = dpo::update(&model, &mut opt, &batch, 0.1, (4, 4096), step).unwrap();
        eprintln!(
            "dpo step {step}: loss {:.4} accuracy {:.2} margin {:.3}",
            st.loss, st.extra["accuracy"], st.extra["margin"]
        );
        losses.push(st.loss);
    }
    assert!((losses[0] - std::f64::consts::LN_2).abs() < 1e-4, "loss at the reference is ln 2: {}", losses[0]);
    assert!(*losses.last().unwrap() < 0.4, "{losses:?}");
    let after = margins(&model, &held_out, 0.1);
    assert!(after.iter().all(|&m| m > 0.5), "held-out margins {after:?}");
}

#[test]
fn bad_pair_files_name_the_line_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (_, chat) = tiny(&dir.path().join("model"));
    let path = dir.path().join("pairs.jsonl");
    let cases = [
        ("{\"prompt\": \"a\", \"chosen\": \"x\"}", "missing `rejected`"),
        ("{\"prompt\": 3, \"chosen\": \"x\", \"rejected\": \"y\"}", "`prompt`"),
        ("{\"prompt\": \"a\", \"chosen\": \"x\", \"rejected\": \"x\"}", "the same answer"),
        ("not json", "not JSON"),
    ];
    for (bad, expect) in cases {
        let good = "{\"prompt\": \"a\", \"chosen\": \"x\", \"rejected\": \"y\"}";
        std::fs::write(&path, format!("{good}\n\n{bad}\n")).unwrap();
        let err = dpo::load_pairs(&path, &chat).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, TrainError::Data { line: 3, .. }), "{msg}");
        assert!(msg.contains(expect), "{msg} lacks {expect}");
    }
    std::fs::write(&path, "\n").unwrap();
    assert!(dpo::load_pairs(&path, &chat).unwrap_err().to_string().contains("no pairs"));
}

#[test]
fn dpo_from_rollouts_pairs_the_best_with_the_worst() {
    let dir = tempfile::tempdir().unwrap();
    let (model, chat) = tiny(&dir.path().join("model"));
    let face = gym_face();
    let cfg = TrainConfig {
        algo: Algo::Dpo,
        group_size: 4,
        prompts_per_step: 3,
        max_new_tokens: 10,
        max_turns: 1,
        ..TrainConfig::default()
    };
    let (pairs, episodes, ties) = dpo::pairs_from_rollouts(&model, &chat, &face, &cfg, 0).unwrap();
    assert_eq!(episodes.len(), 12);
    assert_eq!(pairs.len() + ties, 3);
    for (k, p) in pairs.iter().enumerate() {
        let group = &episodes[..];
        let reward_of = |tokens: &[u32]| group.iter().find(|e| e.tokens == tokens).map(|e| e.reward).unwrap();
        assert!(reward_of(&p.chosen.0) > reward_of(&p.rejected.0), "pair {k}");
    }
}

#[test]
fn gae_credits_turn_rewards_to_the_turns_last_tokens() {
    // Positions 1-2 are the first turn, 4 the second; 3 is the environment's.
    let mask = [false, true, true, false, true];
    let values = [9.0, 0.5, 0.25, 9.0, 1.0];
    let (adv, ret) = gae(&values, &[0.0; 5], &mask, &[1.0, 2.0], 1.0, 1.0);
    // γ = λ = 1: returns are rewards to go, advantages returns minus values.
    assert_eq!(ret, [0.0, 3.0, 3.0, 0.0, 2.0]);
    assert_eq!(adv, [0.0, 2.5, 2.75, 0.0, 1.0]);
    // Discounting per policy token, and the per-token KL rewards.
    let (adv, _) = gae(&[0.0; 5], &[0.0, -0.1, 0.0, 0.0, 0.0], &mask, &[1.0, 2.0], 0.5, 1.0);
    assert_eq!(adv[4], 2.0);
    assert!((adv[2] - (1.0 + 0.5 * 2.0)).abs() < 1e-6);
    assert!((adv[1] - (-0.1 + 0.5 * adv[2])).abs() < 1e-6);
    // When runs and turns disagree, the whole reward goes to the last policy token.
    let (adv, _) = gae(&[0.0; 5], &[0.0; 5], &mask, &[1.0], 1.0, 1.0);
    assert_eq!(adv, [0.0, 1.0, 1.0, 0.0, 1.0]);
}

#[test]
fn ppo_raises_rewarded_episodes_and_fits_its_values() {
    let dir = tempfile::tempdir().unwrap();
    let (model, chat) = tiny(&dir.path().join("model"));
    let face = gym_face();
    let cfg = TrainConfig {
        algo: Algo::Ppo,
        group_size: 4,
        prompts_per_step: 2,
        max_new_tokens: 10,
        max_turns: 1,
        kl_beta: 0.0,
        micro_batch: 4,
        ..TrainConfig::default()
    };
    let mut episodes = hz_train::grpo::collect(&model, &chat, &face, &cfg.grpo(), 0).unwrap();
    // Synthetic rewards: the first half of each group is good.
    for (i, e) in episodes.iter_mut().enumerate() {
        let r = if i % 4 < 2 { 1.0 } else { 0.0 };
        e.turn_rewards = vec![r];
        e.reward = r;
    }
    let head = ValueHead::new(&model).unwrap();
    let mut opt = opt(&model, vec![head.w.clone(), head.b.clone()], 3e-3);
    let logp = |good: bool| -> f64 {
        let rows: Vec<Scored> = episodes
            .iter()
            .enumerate()
            .filter(|(i, _)| (i % 4 < 2) == good)
            .map(|(_, e)| Scored { tokens: &e.tokens, mask: &e.mask })
            .collect();
        let s = score(&model, &rows, Fwd::POLICY, false, false).unwrap();
        hz_train::loss::masked_mean(&s.lp, &s.mask).unwrap()
    };
    let (good0, bad0) = (logp(true), logp(false));
    let mut vloss = Vec::new();
    for step in 0..8 {
        let m = ppo::update(&model, &mut opt, &head, &cfg, &episodes, step).unwrap();
        vloss.push(m.extra["value_loss"]);
        assert!(m.loss.is_finite() && m.grad_norm > 0.0, "{m:?}");
    }
    let (good1, bad1) = (logp(true), logp(false));
    eprintln!("good {good0:.3} -> {good1:.3}, bad {bad0:.3} -> {bad1:.3}, value loss {vloss:?}");
    assert!(good1 - good0 > (bad1 - bad0) + 0.1, "rewarded tokens gain more log-probability");
    assert!(vloss.last().unwrap() < &(vloss[0] * 0.7), "the value head fits the returns: {vloss:?}");
    let w: Vec<f32> = head.w.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    assert!(w.iter().any(|&x| x != 0.0));
}

/// Scoring skips the positions before the first policy token of any row, and what it keeps
/// equals the full forward pass's log-probabilities and entropies position for position.
#[test]
fn scoring_starts_at_the_first_policy_token_and_matches_the_full_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = tiny(dir.path());
    let a: Vec<u32> = (5..25).collect();
    let b: Vec<u32> = (30..44).collect();
    // Row a trains on tokens 12.., row b on 9..11 and 13 (two turns); padding covers b's tail.
    let ma: Vec<bool> = (0..a.len()).map(|t| t >= 12).collect();
    let mb: Vec<bool> = (0..b.len()).map(|t| (9..11).contains(&t) || t == 13).collect();
    let rows = [Scored { tokens: &a, mask: &ma }, Scored { tokens: &b, mask: &mb }];
    let sc = hz_train::loss::score_at(&model, &rows, Fwd::POLICY, 0.7, true, true).unwrap();
    // Target t + 1 = 9 is b's first policy token, so the first scored position is 8.
    assert_eq!(sc.start, 8);
    let n = a.len() - 1 - sc.start;
    assert_eq!(sc.lp.dims(), [2, n]);
    assert_eq!(sc.hidden.as_ref().unwrap().dims()[..2], [2, n]);

    let inputs = vec![a[..a.len() - 1].to_vec(), b[..b.len() - 1].to_vec()];
    let input = hz_llm::Input::right_padded(&inputs, 0);
    let logits = model.forward(&input, &mut model.new_cache(2), Fwd::POLICY).unwrap();
    let s = input.len;
    let targets: Vec<u32> = [&a, &b].iter().flat_map(|r| (0..s).map(|t| r.get(t + 1).copied().unwrap_or(0))).collect();
    let targets = candle_core::Tensor::from_vec(targets, (2, s), &Device::Cpu).unwrap();
    let full = hz_llm::ops::token_logprobs_at(&logits, &targets, 0.7).unwrap().narrow(1, sc.start, n).unwrap();
    let ent = hz_llm::ops::entropy_at(&logits, 0.7).unwrap().narrow(1, sc.start, n).unwrap();
    let diff = |x: &candle_core::Tensor, y: &candle_core::Tensor| {
        (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    };
    assert!(diff(&sc.lp, &full) < 1e-5, "log-probs differ by {}", diff(&sc.lp, &full));
    assert!(diff(sc.entropy.as_ref().unwrap(), &ent) < 1e-5);
    let mask: Vec<Vec<f32>> = sc.mask.to_vec2().unwrap();
    let want_a: Vec<f32> = (sc.start..a.len() - 1).map(|t| if ma[t + 1] { 1.0 } else { 0.0 }).collect();
    let want_b: Vec<f32> =
        (sc.start..a.len() - 1).map(|t| if mb.get(t + 1).copied().unwrap_or(false) { 1.0 } else { 0.0 }).collect();
    assert_eq!(mask, vec![want_a, want_b]);
}

/// Micro-batches are bounded by items and by padded tokens; an item larger than the token
/// bound goes alone, and nothing is dropped or reordered.
#[test]
fn micro_batches_bound_items_and_padded_tokens() {
    use hz_train::loss::micro_batches;
    assert_eq!(micro_batches(&[10, 10, 10, 10], 1, 8, 25), [0..2, 2..4]);
    assert_eq!(micro_batches(&[1, 1, 1, 1, 1], 1, 2, 4096), [0..2, 2..4, 4..5]);
    // Padding counts: the second row makes the pair 2 × 20 tokens.
    assert_eq!(micro_batches(&[5, 20, 3], 1, 8, 30), [0..1, 1..2, 2..3]);
    // A DPO pair is two sequences.
    assert_eq!(micro_batches(&[10, 10, 10], 2, 8, 40), [0..2, 2..3]);
    assert_eq!(micro_batches(&[7, 100, 7], 1, 8, 25), [0..1, 1..2, 2..3]);
    assert!(micro_batches(&[], 1, 8, 25).is_empty());
}
