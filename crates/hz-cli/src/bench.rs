//! `hz bench gym`: steps per second of the runtime on each template, as a table and JSON.

use anyhow::{Context, Result};
use clap::Subcommand;
use hz_gym::policy::RandomPolicy;
use hz_gym::{Env, ResetOptions};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Steps per second per gym (random policy, resets included), written as JSON.
    Gym {
        /// Gym files; default: every template under gym-templates/.
        paths: Vec<PathBuf>,
        /// Steps to time per gym.
        #[arg(long, default_value_t = 20_000)]
        steps: u64,
        /// Where to write the JSON results.
        #[arg(long, default_value = "bench-results/gym.json")]
        out: PathBuf,
    },
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    let BenchCmd::Gym { mut paths, steps, out } = cmd;
    if paths.is_empty() {
        paths = crate::gym_templates()?;
    }
    let mut rows = Vec::new();
    println!("{:<28} {:>10} {:>12} {:>14} {:>12}", "gym", "steps", "episodes", "steps/s", "µs/step");
    for path in &paths {
        let gym = crate::gym::load(path)?;
        let mut env = Env::new(gym.clone(), Default::default());
        let mut policy = RandomPolicy::new(1);
        // Pre-generate actions so the policy's cost is not timed.
        let actions: Vec<_> = (0..steps.min(4096)).map(|_| policy.action(&gym.compiled().actions)).collect();
        let mut episodes = 0u64;
        let mut seed = 0u64;
        env.reset(seed, &ResetOptions::default())?;
        let start = Instant::now();
        for i in 0..steps {
            if env.done() {
                seed += 1;
                episodes += 1;
                env.reset(seed, &ResetOptions::default())?;
            }
            env.step(&actions[(i as usize) % actions.len()])?;
        }
        let secs = start.elapsed().as_secs_f64();
        let sps = steps as f64 / secs;
        println!("{:<28} {:>10} {:>12} {:>14.0} {:>12.1}", gym.spec().name, steps, episodes, sps, 1e6 / sps);
        rows.push(json!({"gym": gym.spec().name, "path": path, "steps": steps, "episodes": episodes,
                         "seconds": secs, "steps_per_second": sps, "us_per_step": 1e6 / sps}));
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let doc = json!({"benchmark": "gym-steps", "runtime_version": env!("CARGO_PKG_VERSION"), "results": rows});
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}
