//! Gymnasium-style checks of a gym: determinism under a seed, observations in space,
//! finite rewards, termination rules, and that every reference solution solves its task.

use crate::policy::RandomPolicy;
use crate::runtime::{Env, Gym, ResetOptions, RuntimeConfig, StepResult};
use crate::GymError;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The outcome of one named check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub ok: bool,
    /// What was found, one line per problem (empty when fine).
    pub problems: Vec<String>,
}

/// All checks for one gym.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub gym: String,
    pub gym_id: String,
    pub checks: Vec<CheckResult>,
    /// Mean episode return of the reference solutions and of the random policy.
    pub solution_return: Option<f64>,
    pub random_return: f64,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// One recorded episode.
#[derive(Debug, Clone, Serialize)]
pub struct Episode {
    pub seed: u64,
    pub task_id: String,
    pub reset_observation: String,
    pub steps: Vec<StepResult>,
    pub total_reward: f64,
}

/// Run one episode with the random policy seeded by `seed`.
pub fn random_episode(gym: &Arc<Gym>, cfg: &RuntimeConfig, seed: u64) -> Result<Episode, GymError> {
    let mut policy = RandomPolicy::new(seed);
    run_episode(gym, cfg, seed, &ResetOptions::default(), |_, env| policy.action(&env.gym().compiled().actions))
}

/// Run a task's reference solution (an episode that stops when the solution runs out).
pub fn solution_episode(
    gym: &Arc<Gym>,
    cfg: &RuntimeConfig,
    task_index: usize,
    seed: u64,
) -> Result<Episode, GymError> {
    let solution = gym
        .spec()
        .tasks
        .get(task_index)
        .ok_or_else(|| GymError::UnknownTask(format!("index {task_index}")))?
        .solution
        .clone();
    let opts = ResetOptions { task_index: Some(task_index), ..Default::default() };
    let mut it = solution.into_iter();
    run_episode_until(gym, cfg, seed, &opts, |_, _| it.next())
}

/// Run until the episode ends, asking `next` for each action.
pub fn run_episode(
    gym: &Arc<Gym>,
    cfg: &RuntimeConfig,
    seed: u64,
    opts: &ResetOptions,
    mut next: impl FnMut(usize, &Env) -> Value,
) -> Result<Episode, GymError> {
    run_episode_until(gym, cfg, seed, opts, |i, env| Some(next(i, env)))
}

fn run_episode_until(
    gym: &Arc<Gym>,
    cfg: &RuntimeConfig,
    seed: u64,
    opts: &ResetOptions,
    mut next: impl FnMut(usize, &Env) -> Option<Value>,
) -> Result<Episode, GymError> {
    let mut env = Env::new(gym.clone(), cfg.clone());
    let (obs, info) = env.reset(seed, opts)?;
    let mut ep = Episode {
        seed,
        task_id: info["task_id"].as_str().unwrap_or_default().to_string(),
        reset_observation: obs,
        steps: Vec::new(),
        total_reward: 0.0,
    };
    let mut i = 0;
    while !env.done() {
        let Some(action) = next(i, &env) else { break };
        let r = env.step(&action)?;
        ep.total_reward += r.reward;
        ep.steps.push(r);
        i += 1;
    }
    Ok(ep)
}

/// Run every check with `episodes` random episodes.
pub fn check(gym: &Arc<Gym>, cfg: &RuntimeConfig, episodes: u64) -> CheckReport {
    let spec = gym.spec();
    let mut checks = Vec::new();
    let max_chars = spec.limits.max_observation_chars as usize;

    // Random episodes, each run twice for determinism.
    let mut det = Vec::new();
    let mut errors = Vec::new();
    let mut space = Vec::new();
    let mut finite = Vec::new();
    let mut term = Vec::new();
    let mut random_returns = Vec::new();
    let mut tasks_seen = std::collections::BTreeSet::new();
    for seed in 0..episodes {
        let a = random_episode(gym, cfg, seed);
        let b = random_episode(gym, cfg, seed);
        let (a, b) = match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                errors.push(format!("seed {seed}: {e}"));
                continue;
            }
        };
        if serde_json::to_string(&a).ok() != serde_json::to_string(&b).ok() {
            det.push(format!("seed {seed}: two runs with the same seed and actions differ"));
        }
        tasks_seen.insert(a.task_id.clone());
        random_returns.push(a.total_reward);
        for obs in std::iter::once(&a.reset_observation).chain(a.steps.iter().map(|s| &s.observation)) {
            if obs.chars().count() > max_chars {
                space.push(format!("seed {seed}: observation of {} chars exceeds {max_chars}", obs.chars().count()));
            }
        }
        for (i, s) in a.steps.iter().enumerate() {
            if !s.reward.is_finite() {
                finite.push(format!("seed {seed} step {}: reward {}", i + 1, s.reward));
            }
            if s.terminated && s.truncated {
                term.push(format!("seed {seed} step {}: both terminated and truncated", i + 1));
            }
        }
        if a.steps.len() > spec.max_steps as usize {
            term.push(format!("seed {seed}: episode ran {} steps, past max_steps {}", a.steps.len(), spec.max_steps));
        }
        if a.steps.last().is_some_and(|s| !s.terminated && !s.truncated) {
            term.push(format!("seed {seed}: episode stopped without terminated or truncated"));
        }
    }
    if spec.tasks.len() > 1 && episodes >= 8 && tasks_seen.len() < 2 {
        det.push("different seeds always sample the same task".to_string());
    }
    checks.push(CheckResult {
        name: "no runtime errors under random actions",
        ok: errors.is_empty(),
        problems: errors,
    });
    checks.push(CheckResult { name: "seed determinism", ok: det.is_empty(), problems: det });
    checks.push(CheckResult { name: "observations in space", ok: space.is_empty(), problems: space });
    checks.push(CheckResult { name: "finite rewards", ok: finite.is_empty(), problems: finite });
    checks.push(CheckResult { name: "termination and truncation", ok: term.is_empty(), problems: term });

    // Stepping a finished episode is refused, not undefined.
    let mut after = Vec::new();
    let mut env = Env::new(gym.clone(), cfg.clone());
    match env.reset(0, &ResetOptions::default()) {
        Ok(_) => {
            let mut policy = RandomPolicy::new(0);
            let mut n = 0;
            while !env.done() && n <= spec.max_steps {
                if let Err(e) = env.step(&policy.action(&gym.compiled().actions)) {
                    after.push(format!("step failed: {e}"));
                    break;
                }
                n += 1;
            }
            if env.done() && !matches!(env.step(&json!("x")), Err(GymError::EpisodeOver)) {
                after.push("a step after the end was accepted".into());
            }
        }
        Err(e) => after.push(format!("reset failed: {e}")),
    }
    checks.push(CheckResult { name: "step after the end is refused", ok: after.is_empty(), problems: after });

    // Reference solutions.
    let mean_random =
        if random_returns.is_empty() { 0.0 } else { random_returns.iter().sum::<f64>() / random_returns.len() as f64 };
    let mut sol = Vec::new();
    let mut sol_returns = Vec::new();
    for (ti, t) in spec.tasks.iter().enumerate() {
        if t.solution.is_empty() {
            continue;
        }
        match solution_episode(gym, cfg, ti, 0) {
            Ok(ep) => {
                sol_returns.push(ep.total_reward);
                let ended = ep.steps.last().is_some_and(|s| s.terminated);
                if !ended {
                    sol.push(format!("task {}: the solution does not end the episode (terminated)", t.id));
                }
                if ep.steps.len() < t.solution.len() {
                    sol.push(format!(
                        "task {}: the episode ended after {} of {} solution steps",
                        t.id,
                        ep.steps.len(),
                        t.solution.len()
                    ));
                }
                if ep.total_reward <= mean_random {
                    sol.push(format!(
                        "task {}: the solution returns {:.3}, not above the random policy's mean {:.3}",
                        t.id, ep.total_reward, mean_random
                    ));
                }
                if let Some((i, s)) = ep.steps.iter().enumerate().find(|(_, s)| s.info.get("invalid_action").is_some())
                {
                    sol.push(format!(
                        "task {}: solution step {} is invalid: {}",
                        t.id,
                        i + 1,
                        s.info["invalid_action"]
                    ));
                }
            }
            Err(e) => sol.push(format!("task {}: {e}", t.id)),
        }
    }
    checks.push(CheckResult { name: "reference solutions solve their tasks", ok: sol.is_empty(), problems: sol });
    let solution_return = (!sol_returns.is_empty()).then(|| sol_returns.iter().sum::<f64>() / sol_returns.len() as f64);

    CheckReport {
        gym: spec.name.clone(),
        gym_id: gym.id().to_hex(),
        checks,
        solution_return,
        random_return: mean_random,
    }
}
