//! Generation by behaviour, on a small random model the test writes in Hugging Face layout:
//! the KV cache against full forwards, left-padded batches against rows alone, stop strings,
//! end tokens, the length limit, seeds, top-p and refused input.

use candle_core::{DType, Device};
use hz_llm::generate::{generate, Completion, Finish, Sampling};
use hz_llm::tiny::{train_tokenizer, write_model, TinySpec};
use hz_llm::{Family, Fwd, Input, LlmError, Model};

fn corpus() -> Vec<String> {
    (0..40)
        .map(|i| format!("SELECT name, total FROM orders WHERE id = {i} ORDER BY total; the answer is {}", i * 7))
        .collect()
}

struct Tiny {
    model: Model,
    tokenizer: tokenizers::Tokenizer,
    _dir: tempfile::TempDir,
}

fn tiny(family: Family, seed: u64) -> Tiny {
    tiny_std(family, seed, 0.3)
}

fn tiny_std(family: Family, seed: u64, init_std: f64) -> Tiny {
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = train_tokenizer(&corpus(), 160).expect("tokenizer");
    // A larger init spreads the logits, so greedy choices are far from ties; the default
    // one keeps the distribution flat enough for samples to differ.
    let spec = TinySpec { init_std, ..TinySpec::new(family, 0) };
    write_model(dir.path(), &spec, &tok, seed).expect("write model");
    let hf = hz_llm::load_hf(dir.path(), &Device::Cpu).expect("load");
    assert_eq!(hf.model.dtype(), DType::F32);
    Tiny { model: hf.model, tokenizer: hf.tokenizer, _dir: dir }
}

fn prompt(t: &Tiny, text: &str) -> Vec<u32> {
    t.tokenizer.encode(text, false).expect("encode").get_ids().to_vec()
}

fn greedy(max_new_tokens: usize) -> Sampling {
    Sampling { temperature: 0.0, max_new_tokens, ..Sampling::default() }
}

fn one(t: &Tiny, p: &[u32], s: &Sampling) -> Completion {
    let mut out = generate(&t.model, &t.tokenizer, &[p.to_vec()], s, Fwd::POLICY).expect("generate");
    assert_eq!(out.len(), 1);
    out.remove(0)
}

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0 as u32
}

fn eos(t: &Tiny) -> Vec<u32> {
    t.model.config.eos_token_ids.clone()
}

/// A greedy run of `n` tokens in which the model's end token does not come up (so stop
/// strings, extra end tokens and the length limit can be tested against it).
fn long_greedy(t: &Tiny, p: &[u32], n: usize) -> Completion {
    let c = one(t, p, &greedy(n));
    assert_eq!(c.finish, Finish::Length, "the tiny model ended early: {:?}", c.tokens);
    assert_eq!(c.tokens.len(), n);
    assert!(!c.tokens.iter().any(|x| eos(t).contains(x)));
    c
}

#[test]
fn greedy_with_the_cache_equals_argmax_of_full_forwards() {
    for family in [Family::Llama, Family::Qwen2, Family::Gemma3] {
        let t = tiny(family, 3);
        let p = prompt(&t, "SELECT name FROM orders WHERE id = 4");
        let c = one(&t, &p, &greedy(16));
        assert!(!c.tokens.is_empty());
        let mut seq = p.clone();
        for (step, &tok) in c.tokens.iter().enumerate() {
            // No cache carried over: the whole sequence so far, every position computed.
            let mut cache = t.model.new_cache(1);
            let logits = t.model.forward(&Input::left_padded(&[seq.clone()], 0), &mut cache, Fwd::POLICY).unwrap();
            let rows: Vec<Vec<Vec<f32>>> = logits.to_vec3().unwrap();
            let last = &rows[0][seq.len() - 1];
            assert_eq!(argmax(last), tok, "{family:?}: step {step} differs from the full forward");
            seq.push(tok);
        }
        if c.finish == Finish::Eos {
            assert!(eos(&t).contains(c.tokens.last().unwrap()));
        }
    }
}

#[test]
fn a_left_padded_batch_gives_each_row_its_own_greedy_completion() {
    for family in [Family::Llama, Family::Gemma3] {
        let t = tiny(family, 5);
        let prompts: Vec<Vec<u32>> =
            ["id", "SELECT name, total FROM orders WHERE id = 12 ORDER BY total", "the answer is"]
                .iter()
                .map(|s| prompt(&t, s))
                .collect();
        let lens: Vec<usize> = prompts.iter().map(Vec::len).collect();
        assert!(lens[0] < lens[2] && lens[2] < lens[1], "prompts of different lengths: {lens:?}");
        let s = greedy(12);
        let batch = generate(&t.model, &t.tokenizer, &prompts, &s, Fwd::POLICY).unwrap();
        assert_eq!(batch.len(), prompts.len());
        for (row, p) in prompts.iter().enumerate() {
            let alone = one(&t, p, &s);
            assert_eq!(batch[row].tokens, alone.tokens, "{family:?} row {row}");
            assert_eq!(batch[row].text, alone.text);
            assert_eq!(batch[row].finish, alone.finish);
        }
    }
}

#[test]
fn stop_strings_cut_the_text_and_say_which_stopped_it() {
    let t = tiny(Family::Llama, 9);
    let p = prompt(&t, "SELECT total FROM orders");
    let full = long_greedy(&t, &p, 16);
    // A stop string from the middle of the completion: two characters (no replacement
    // character, which a partial UTF-8 sequence decodes to) that first occur after its start.
    let chars: Vec<(usize, char)> = full.text.char_indices().collect();
    let (at, stop) = chars
        .windows(2)
        .skip(2)
        .map(|w| (w[0].0, format!("{}{}", w[0].1, w[1].1)))
        .find(|(i, s)| !s.contains(char::REPLACEMENT_CHARACTER) && full.text.find(s.as_str()) == Some(*i))
        .unwrap_or_else(|| panic!("no usable stop string in {:?}", full.text));
    let s = Sampling { stop: vec!["never-generated-zzz".into(), stop.clone()], ..greedy(16) };
    let c = one(&t, &p, &s);
    assert_eq!(c.finish, Finish::Stop(stop.clone()));
    assert_eq!(c.text, full.text[..at], "text is cut before the stop string");
    assert!(!c.text.contains(&stop));
    assert!(c.tokens.len() < full.tokens.len(), "generation stopped early");
    assert_eq!(c.tokens[..], full.tokens[..c.tokens.len()], "the tokens are the greedy ones up to the stop");
}

#[test]
fn an_end_token_ends_with_eos_and_is_left_out_of_the_text() {
    let t = tiny(Family::Llama, 9);
    let p = prompt(&t, "the answer is");
    let full = long_greedy(&t, &p, 16);
    let end = full.tokens[3];
    let first = full.tokens.iter().position(|&x| x == end).unwrap();
    let s = Sampling { eos_token_ids: vec![end], ..greedy(16) };
    let c = one(&t, &p, &s);
    assert_eq!(c.finish, Finish::Eos);
    assert_eq!(c.tokens, full.tokens[..=first], "ends at the end token, which is kept in the tokens");
    assert_eq!(c.text, t.tokenizer.decode(&full.tokens[..first], false).unwrap());
}

#[test]
fn max_new_tokens_ends_with_length() {
    let t = tiny(Family::Llama, 9);
    let p = prompt(&t, "the answer is");
    let full = long_greedy(&t, &p, 16);
    let c = one(&t, &p, &greedy(5));
    assert_eq!(c.finish, Finish::Length);
    assert_eq!(c.tokens, full.tokens[..5]);
    assert_eq!(c.text, t.tokenizer.decode(&full.tokens[..5], false).unwrap());
    let none = one(&t, &p, &greedy(0));
    assert_eq!((none.tokens.len(), none.finish), (0, Finish::Length));
}

#[test]
fn seeds_fix_samples_and_top_p_tiny_is_greedy() {
    let t = tiny_std(Family::Gemma3, 11, 0.08);
    let p = prompt(&t, "SELECT name");
    let at = |seed: u64| Sampling { temperature: 1.0, top_p: 1.0, max_new_tokens: 24, seed, ..Sampling::default() };
    let a = one(&t, &p, &at(1));
    let b = one(&t, &p, &at(1));
    let c = one(&t, &p, &at(2));
    assert_eq!(a.tokens, b.tokens, "same seed, same sample");
    assert_ne!(a.tokens, c.tokens, "different seed, different sample");
    let g = one(&t, &p, &greedy(24));
    assert_ne!(a.tokens, g.tokens, "temperature 1 samples, it is not greedy");
    let nucleus = Sampling { top_p: 1e-9, ..at(3) };
    let n = one(&t, &p, &nucleus);
    assert_eq!(n.tokens, g.tokens, "a tiny nucleus holds only the top token");
    assert_eq!(n.finish, g.finish);
}

#[test]
fn bad_input_is_refused_as_input_errors() {
    let t = tiny(Family::Llama, 1);
    let p = prompt(&t, "id");
    let cases = [
        ("top_p 0", Sampling { top_p: 0.0, ..greedy(4) }, vec![p.clone()]),
        ("top_p above 1", Sampling { top_p: 1.5, ..greedy(4) }, vec![p.clone()]),
        ("negative temperature", Sampling { temperature: -0.5, ..greedy(4) }, vec![p.clone()]),
        ("NaN temperature", Sampling { temperature: f64::NAN, ..greedy(4) }, vec![p.clone()]),
        ("empty prompt", greedy(4), vec![p.clone(), Vec::new()]),
        ("token outside the vocabulary", greedy(4), vec![vec![u32::MAX]]),
    ];
    for (what, s, prompts) in cases {
        match generate(&t.model, &t.tokenizer, &prompts, &s, Fwd::POLICY) {
            Err(LlmError::Input(msg)) => assert!(!msg.is_empty(), "{what}"),
            Err(e) => panic!("{what}: expected an input error, got {e}"),
            Ok(c) => panic!("{what}: expected an input error, got {c:?}"),
        }
    }
}

#[test]
fn a_group_of_one_prompt_is_prefilled_once_and_samples_as_rows_alone_would() {
    // The shared prefill copies one row's cache to the group; each row must still sample from
    // its own seed exactly as if it had been generated by itself.
    let t = tiny_std(Family::Qwen2, 21, 0.08);
    let p = prompt(&t, "SELECT name, total FROM orders WHERE id = 3");
    let s = Sampling { temperature: 1.0, max_new_tokens: 10, seed: 77, ..Sampling::default() };
    let group = generate(&t.model, &t.tokenizer, &vec![p.clone(); 4], &s, Fwd::POLICY).unwrap();
    for (row, c) in group.iter().enumerate() {
        let seed = s.seed.wrapping_add((row as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let alone = one(&t, &p, &Sampling { seed, ..s.clone() });
        assert_eq!(c.tokens, alone.tokens, "row {row}");
        assert_eq!(c.text, alone.text, "row {row}");
    }
    let distinct: std::collections::BTreeSet<&Vec<u32>> = group.iter().map(|c| &c.tokens).collect();
    assert!(distinct.len() > 1, "the rows' seeds should give different samples: {group:?}");
}
