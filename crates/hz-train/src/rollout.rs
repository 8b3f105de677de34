//! Multi-turn episodes of the policy against the `hz-gym` runtime. The policy's completions
//! and the environment's observations become one token row with a mask that is true only on
//! tokens the policy generated; gym state never leaves this process.

use crate::TrainError;
use hz_chat::{ChatTokenizer, Message, Tool};
use hz_gym::{Env, Gym, ResetOptions, RuntimeConfig};
use hz_llm::generate::{generate, Sampling};
use hz_llm::{Fwd, Model};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One finished episode.
#[derive(Debug, Clone)]
pub struct Episode {
    pub tokens: Vec<u32>,
    pub mask: Vec<bool>,
    /// Sum of the step rewards.
    pub reward: f64,
    /// The reward of each turn, in order (PPO credits it to the turn's last policy token).
    pub turn_rewards: Vec<f64>,
    /// Reward per source (`r_category`, `invalid_action`, `overseer`...), summed over steps.
    pub items: BTreeMap<String, f64>,
    pub turns: usize,
    pub completion_tokens: usize,
    pub task_id: String,
    /// The completions as text, for logs.
    pub completions: Vec<String>,
}

/// What the policy sees of a gym: its tools and how it takes actions.
pub struct GymFace {
    pub gym: Arc<Gym>,
    pub tools: Vec<Tool>,
    pub mode: hz_chat::ActionMode,
    pub runtime: RuntimeConfig,
}

impl GymFace {
    pub fn new(gym: Arc<Gym>, runtime: RuntimeConfig) -> Result<Self, TrainError> {
        let parser = &gym.compiled().actions;
        let mode = serde_json::to_value(parser.mode())
            .and_then(serde_json::from_value)
            .map_err(|e| TrainError::Gym(format!("action mode: {e}")))?;
        let tools = parser
            .tools()
            .map(|t| serde_json::to_value(t).and_then(serde_json::from_value))
            .collect::<Result<Vec<Tool>, _>>()
            .map_err(|e| TrainError::Gym(format!("tools: {e}")))?;
        Ok(Self { gym, tools, mode, runtime })
    }
}

/// Play `n` episodes of the same task (`seed` picks it), batched: every turn generates the
/// next completion of all unfinished episodes at once.
pub fn rollout_group(
    model: &Model,
    chat: &ChatTokenizer,
    face: &GymFace,
    seed: u64,
    n: usize,
    sampling: &Sampling,
    max_turns: usize,
) -> Result<Vec<Episode>, TrainError> {
    let mut envs = Vec::with_capacity(n);
    let mut eps = Vec::with_capacity(n);
    let mut out: Vec<Episode> = Vec::with_capacity(n);
    for _ in 0..n {
        let mut env = Env::new(face.gym.clone(), face.runtime.clone());
        let (obs, _info) = env.reset(seed, &ResetOptions::default()).map_err(|e| TrainError::Gym(e.to_string()))?;
        let task_id = env.task().map(|t| t.id.clone()).unwrap_or_default();
        eps.push(chat.episode(vec![Message::user(obs)], face.tools.clone())?);
        envs.push(env);
        out.push(Episode {
            tokens: Vec::new(),
            mask: Vec::new(),
            reward: 0.0,
            turn_rewards: Vec::new(),
            items: BTreeMap::new(),
            turns: 0,
            completion_tokens: 0,
            task_id,
            completions: Vec::new(),
        });
    }
    let stops = chat.stop_strings();
    let stop_refs: Vec<&str> = stops.iter().map(String::as_str).collect();
    let mut sampling = sampling.clone();
    sampling.eos_token_ids.extend(chat.stop_ids());
    let mut done = vec![false; n];
    for turn in 0..max_turns {
        let active: Vec<usize> = (0..n).filter(|&i| !done[i]).collect();
        if active.is_empty() {
            break;
        }
        let prompts: Vec<Vec<u32>> = active.iter().map(|&i| eps[i].ids().to_vec()).collect();
        let mut s = sampling.clone();
        s.seed = sampling.seed.wrapping_add(turn as u64 * 7919);
        let completions = generate(model, chat.tokenizer(), &prompts, &s, Fwd::POLICY)?;
        for (k, &i) in active.iter().enumerate() {
            let c = &completions[k];
            let text = eps[i].push_completion(&c.tokens)?;
            out[i].completion_tokens += c.tokens.len();
            out[i].turns += 1;
            let action = match hz_chat::to_action(&text, face.mode, &stop_refs) {
                Ok(a) => a,
                // A malformed completion goes to the gym as is: it applies its own penalty.
                Err(e) => e.gym_action(),
            };
            out[i].completions.push(text);
            let r = envs[i].step(&action).map_err(|e| TrainError::Gym(e.to_string()))?;
            out[i].reward += r.reward;
            out[i].turn_rewards.push(r.reward);
            if let Some(items) = r.info.get("rewards").and_then(|v| v.as_array()) {
                for it in items {
                    let src = it.get("source").and_then(|v| v.as_str()).unwrap_or("?").to_string();
                    let v = it.get("value").and_then(|v| v.as_f64()).unwrap_or(0.0);
                    *out[i].items.entry(src).or_default() += v;
                }
            }
            if r.terminated || r.truncated || turn + 1 == max_turns {
                done[i] = true;
            } else {
                eps[i].push_env(vec![Message::user(r.observation)])?;
            }
        }
    }
    for (i, ep) in eps.into_iter().enumerate() {
        let enc = ep.into_encoded();
        out[i].mask = enc.mask.iter().map(|&m| m != 0).collect();
        out[i].tokens = enc.ids;
    }
    Ok(out)
}
