//! `hz`: the 440hz command line. A thin layer over the library crates: parse arguments,
//! call a library, print the result.

// The runtime allocates many small, short-lived values per step; mimalloc handles that
// pattern markedly faster than glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod gym;
mod model;
mod versions;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use hz_core::{NetworkPolicy, OverseerConfig};
use hz_gym::overseer::OpenAiCompatible;
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
}

impl RuntimeArgs {
    pub fn config(&self) -> RuntimeConfig {
        let overseer = self.overseer_url.as_ref().map(|url| {
            let cfg = OverseerConfig::new(url.clone(), self.overseer_model.clone());
            // The API key comes from the environment here; the desktop app keeps it in the
            // OS keychain.
            let key = std::env::var("HZ_OVERSEER_API_KEY").ok().filter(|k| !k.is_empty());
            Arc::new(OpenAiCompatible::new(cfg, key)) as Arc<dyn hz_gym::overseer::RewardProvider>
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
