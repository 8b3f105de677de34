//! `hz`: the 440hz command line. A thin layer over the library crates: parse arguments,
//! call a library, print the result.

// The runtime allocates many small, short-lived values per step (mimalloc is markedly
// faster than glibc's allocator at that) and training reuses large tensor buffers
// (hz-alloc keeps them instead of faulting fresh pages in each step).
#[global_allocator]
static GLOBAL: hz_alloc::HzAlloc = hz_alloc::HzAlloc::new();

mod bench;
mod gym;
mod key;
mod model;
mod serve;
mod train;
mod versions;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use hz_core::{NetworkPolicy, OverseerConfig};
use hz_gym::overseer::{CachedProvider, OpenAiCompatible, RewardProvider, SqliteJudgementStore};
use hz_gym::RuntimeConfig;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "hz", version, about = "440hz: federated RL gyms for LLM agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with gyms: check, run, play, print the schema.
    #[command(subcommand)]
    Gym(gym::GymCmd),
    /// Benchmarks that print a table and write JSON.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Work with local model folders: merge a LoRA adapter into its base.
    #[command(subcommand)]
    Model(model::ModelCmd),
    /// API keys in the OS keychain (read from standard input, never from arguments).
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// Serve a local model (folder or GGUF file) as an OpenAI-compatible chat endpoint on loopback.
    Serve(serve::ServeArgs),
    /// Train a LoRA adapter on a gym (GRPO, DPO or PPO); rerun to resume a stopped run.
    Train(Box<train::TrainArgs>),
}

/// What the node operator allows and which overseer judges.
#[derive(Args, Clone, Debug, Default)]
pub struct RuntimeArgs {
    /// Allow gym network nodes to reach this host (repeatable; `host` or `host:port`).
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// OpenAI-compatible endpoint for the AI overseer, e.g. http://127.0.0.1:8080/v1
    #[arg(long, env = "HZ_OVERSEER_URL")]
    overseer_url: Option<String>,
    /// Model name for the overseer endpoint.
    #[arg(long, env = "HZ_OVERSEER_MODEL", default_value = "overseer")]
    overseer_model: String,
    /// Name of the overseer's API key in the environment or the keychain (default: from the
    /// endpoint's host, e.g. OPENROUTER_API_KEY, then HZ_OVERSEER_API_KEY).
    #[arg(long, env = "HZ_OVERSEER_KEY_NAME", value_name = "NAME")]
    overseer_key_name: Option<String>,
    /// Keep overseer judgements in this SQLite file too, so identical ones are not asked
    /// again after a restart (they are always cached in memory).
    #[arg(long, env = "HZ_OVERSEER_CACHE", value_name = "PATH")]
    overseer_cache: Option<std::path::PathBuf>,
    /// Overall limit for one overseer request, in milliseconds (default 30000).
    #[arg(long, env = "HZ_OVERSEER_TIMEOUT_MS", value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..))]
    overseer_timeout_ms: Option<u64>,
    /// Requests per judgement, the first included; transport errors, 429 and 5xx are retried
    /// with backoff (default 4).
    #[arg(long, env = "HZ_OVERSEER_ATTEMPTS", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    overseer_attempts: Option<u32>,
}

impl RuntimeArgs {
    pub fn config(&self) -> RuntimeConfig {
        let overseer = self.overseer_url.as_ref().map(|url| {
            let mut cfg = OverseerConfig {
                key_name: self.overseer_key_name.clone(),
                ..OverseerConfig::new(url.clone(), self.overseer_model.clone())
            };
            if let Some(ms) = self.overseer_timeout_ms {
                cfg.timeout_ms = ms;
            }
            if let Some(n) = self.overseer_attempts {
                cfg.max_attempts = n;
            }
            let key = key::resolve_api_key(&cfg);
            let cached = CachedProvider::new(OpenAiCompatible::new(cfg, key));
            let cached = match &self.overseer_cache {
                None => cached,
                Some(path) => match SqliteJudgementStore::open(path) {
                    Ok(store) => cached.with_store(store),
                    // Judging still works without the file, only slower on re-runs.
                    Err(e) => {
                        tracing::warn!(error = %e, "overseer cache unavailable; caching in memory only");
                        cached
                    }
                },
            };
            Arc::new(cached) as Arc<dyn RewardProvider>
        });
        RuntimeConfig {
            network: NetworkPolicy { allowed_hosts: self.allow_hosts.clone() },
            overseer,
            net_timeout: None,
        }
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("HZ_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    // The CEL parser panics on some malformed expressions; hz-gym turns that into a syntax
    // error, so keep its internal message off the terminal.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.location().is_some_and(|l| l.file().contains("antlr4rust")) {
            default_hook(info);
        }
    }));
    let cli = Cli::parse();
    let result: Result<bool> = match cli.command {
        Command::Gym(cmd) => gym::run(cmd),
        Command::Bench(cmd) => bench::run(cmd).map(|()| true),
        Command::Model(cmd) => model::run(cmd),
        Command::Key(cmd) => key::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::Train(args) => train::run(*args),
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Every `*.gym.json` under `gym-templates/` (searched from the current directory up).
pub fn gym_templates() -> Result<Vec<std::path::PathBuf>> {
    let mut dir = std::env::current_dir()?;
    loop {
        let candidate = dir.join("gym-templates");
        if candidate.is_dir() {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(&candidate)? {
                let sub = entry?.path();
                if sub.is_dir() {
                    for f in std::fs::read_dir(&sub)? {
                        let f = f?.path();
                        if f.to_string_lossy().ends_with(".gym.json") {
                            found.push(f);
                        }
                    }
                }
            }
            found.sort();
            return Ok(found);
        }
        if !dir.pop() {
            anyhow::bail!("no gym-templates/ folder here or above; pass gym paths explicitly");
        }
    }
}
