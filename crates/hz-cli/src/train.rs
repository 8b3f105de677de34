//! `hz train`: train a LoRA adapter on a gym with GRPO, DPO or PPO. The run lives in its
//! output folder (config, checkpoints, metrics.jsonl, the final adapter); running the same
//! command again resumes it from its newest checkpoint. Metrics also go to the local SQLite
//! index, and a progress bar shows the reward as it trains.

use crate::RuntimeArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use hz_core::ContentId;
use hz_db::{Db, TrainRunRow, TrainStepRow};
use hz_train::grpo::StepMetrics;
use hz_train::rollout::GymFace;
use hz_train::run::{Algo, JsonlSink, MetricsSink, Run, RunIdentity, TrainConfig};
use hz_train::TrainError;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Args)]
pub struct TrainArgs {
    /// The gym (`*.gym.json`).
    #[arg(long, value_name = "PATH")]
    gym: PathBuf,
    /// The base model: a Hugging Face folder (config.json, *.safetensors, tokenizer.json) or a
    /// GGUF file (quantized base; vocabulary and chat template from its metadata).
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// grpo, dpo or ppo [default: grpo, or the --config file's `algo`].
    #[arg(long)]
    algo: Option<Algo>,
    /// The run's folder (default: runs/<gym>-<algo>). An existing run there is resumed.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// A JSON file of training settings (the fields of `run.json`'s `config`); flags win.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long)]
    steps: Option<u64>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    lr: Option<f64>,
    /// Episodes per task.
    #[arg(long)]
    group_size: Option<usize>,
    /// Tasks per step.
    #[arg(long)]
    prompts_per_step: Option<usize>,
    #[arg(long)]
    max_new_tokens: Option<usize>,
    #[arg(long)]
    max_turns: Option<usize>,
    #[arg(long)]
    temperature: Option<f64>,
    #[arg(long)]
    kl_beta: Option<f64>,
    #[arg(long)]
    lora_r: Option<usize>,
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// DPO preference pairs (JSON lines of prompt, chosen, rejected); without it DPO
    /// compares rollouts of the gym.
    #[arg(long, value_name = "FILE")]
    pairs: Option<PathBuf>,
    /// Do not record metrics in the local SQLite index (metrics.jsonl is always written).
    #[arg(long)]
    no_index: bool,
    /// No progress bar (one log line per step instead).
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

impl TrainArgs {
    fn train_config(&self) -> Result<TrainConfig> {
        let mut cfg = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                serde_json::from_str(&text).with_context(|| format!("{}: not a training config", p.display()))?
            }
            None => TrainConfig::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $(if let Some(v) = self.$f { cfg.$f = v; })* };
        }
        set!(
            algo,
            steps,
            seed,
            lr,
            group_size,
            prompts_per_step,
            max_new_tokens,
            max_turns,
            temperature,
            kl_beta,
            lora_r,
            checkpoint_every
        );
        if let Some(p) = &self.pairs {
            cfg.dpo.pairs = Some(std::path::absolute(p).with_context(|| format!("{}", p.display()))?);
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The model's name and a fingerprint of its config and weights' sizes: a resume on another
/// model is refused.
fn model_identity(dir: &Path) -> Result<String> {
    if hz_llm::gguf::is_gguf(dir) {
        // A GGUF file: its size and header (metadata and tensor table) stand for it.
        use std::io::Read;
        let len = std::fs::metadata(dir).map(|m| m.len()).unwrap_or(0);
        let mut head = Vec::new();
        std::fs::File::open(dir)
            .and_then(|f| f.take(1 << 20).read_to_end(&mut head))
            .with_context(|| format!("{}", dir.display()))?;
        head.extend(format!(";{len}").as_bytes());
        let name = dir.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        return Ok(format!("{name}@{}", &ContentId::of_bytes(&head).to_hex()[..12]));
    }
    let config =
        std::fs::read(dir.join("config.json")).with_context(|| format!("{}: no config.json", dir.display()))?;
    let mut fp = config;
    for f in hz_llm::load::safetensors_files(dir)? {
        let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        fp.extend(format!("{}:{len};", f.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()).as_bytes());
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    Ok(format!("{name}@{}", &ContentId::of_bytes(&fp).to_hex()[..12]))
}

fn to_row(m: &StepMetrics) -> TrainStepRow {
    TrainStepRow {
        step: m.step as i64,
        reward_mean: m.reward_mean,
        reward_std: m.reward_std,
        kl: m.kl,
        loss: m.loss,
        clip_fraction: m.clip_fraction,
        entropy: m.entropy,
        completion_len: m.completion_len,
        tokens_per_s: m.tokens_per_s,
        rewards: m.reward_items.iter().map(|(k, (mean, std))| (k.clone(), *mean, *std)).collect(),
        metrics: serde_json::to_string(m).unwrap_or_default(),
    }
}

struct IndexSink {
    db: Db,
    run: String,
}

impl MetricsSink for IndexSink {
    fn record(&mut self, m: &StepMetrics) -> Result<(), TrainError> {
        self.db.record_train_step(&self.run, &to_row(m)).map_err(|e| TrainError::Run(format!("index: {e}")))
    }
    fn rewind(&mut self, from: u64) -> Result<(), TrainError> {
        self.db.truncate_train_steps(&self.run, from as i64).map_err(|e| TrainError::Run(format!("index: {e}")))
    }
}

struct Progress {
    bar: Option<ProgressBar>,
}

impl MetricsSink for Progress {
    fn record(&mut self, m: &StepMetrics) -> Result<(), TrainError> {
        let extra: String = m.extra.iter().map(|(k, v)| format!(" {k} {v:.3}")).collect();
        let line = format!(
            "reward {:+.3} ±{:.3}  kl {:.4}  loss {:+.4}  len {:.0}  {:.0} tok/s{extra}",
            m.reward_mean, m.reward_std, m.kl, m.loss, m.completion_len, m.tokens_per_s
        );
        match &self.bar {
            Some(bar) => {
                bar.set_message(line);
                bar.inc(1);
            }
            None => eprintln!("step {}: {line}", m.step + 1),
        }
        Ok(())
    }
    fn rewind(&mut self, from: u64) -> Result<(), TrainError> {
        if let Some(bar) = &self.bar {
            bar.set_position(from);
        }
        Ok(())
    }
}

pub fn run(args: TrainArgs) -> Result<bool> {
    let cfg = args.train_config()?;
    let gym = hz_gym::Gym::load(&args.gym).map_err(|e| anyhow::anyhow!("{}: {e}", args.gym.display()))?;
    let gym_name = gym.spec().name.clone();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("{gym_name}-{:?}", cfg.algo).to_lowercase()));
    if !args.model.join("config.json").is_file() && !hz_llm::gguf::is_gguf(&args.model) {
        bail!("--model {}: neither a model folder (no config.json) nor a GGUF file", args.model.display());
    }
    let identity = RunIdentity { gym: gym.id().to_hex(), model: model_identity(&args.model)? };

    let (model, chat) = hz_serve::Engine::load(&args.model)?.into_parts();
    // The overseer: the given endpoint, or by default the base model itself served on
    // loopback when the gym asks for judgements. It shares the policy's base weights (the
    // adapter is attached to the policy only), so the model sits in memory once.
    let mut runtime = args.runtime.clone();
    let _judge = if runtime.overseer_url.is_none() && uses_overseer(&gym) {
        let engine = hz_serve::Engine::new(model.base_copy(), chat.clone());
        let server = hz_serve::Server::start(engine, "127.0.0.1:0", hz_serve::ServeConfig::new("overseer"))?;
        eprintln!("overseer: the base model at {}", server.base_url());
        runtime.overseer_url = Some(server.base_url());
        runtime.overseer_model = "overseer".into();
        Some(server)
    } else {
        None
    };
    let face = GymFace::new(gym, runtime.config())?;
    let mut run = Run::open(&out, cfg.clone(), identity.clone(), model, chat, face)?;
    if let Some(s) = run.resumed_from() {
        eprintln!("resuming {} from step {s} of {}", out.display(), cfg.steps);
    }
    let mut jsonl = JsonlSink::new(run.metrics_path());
    let mut index = if args.no_index {
        None
    } else {
        let dir = hz_studio::versions::data_dir()?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut db = Db::open(&dir.join("index.sqlite"))?;
        let key = std::path::absolute(&out)?.display().to_string();
        db.add_train_run(&TrainRunRow {
            run: key.clone(),
            algo: format!("{:?}", cfg.algo).to_lowercase(),
            gym: identity.gym.clone(),
            model: identity.model.clone(),
            config: serde_json::to_string(&cfg)?,
            started_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        })?;
        Some(IndexSink { db, run: key })
    };
    let bar = (!args.quiet).then(|| {
        let bar = ProgressBar::new(cfg.steps);
        bar.set_style(
            ProgressStyle::with_template("{spinner} step {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(run.next_step());
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
        bar
    });
    let mut progress = Progress { bar };
    let mut sinks: Vec<&mut dyn MetricsSink> = vec![&mut jsonl, &mut progress];
    if let Some(ix) = index.as_mut() {
        sinks.push(ix);
    }
    let stop = stop_on_signals()?;
    let summary = run.run(&mut sinks, Some(&stop))?;
    if let Some(bar) = &progress.bar {
        bar.finish();
    }
    match summary.adapter {
        Some(dir) => println!(
            "adapter: {} ({} steps; metrics in {})",
            dir.display(),
            summary.steps_done,
            run.metrics_path().display()
        ),
        None => println!("stopped after {} of {} steps; run again to resume", summary.steps_done, cfg.steps),
    }
    Ok(true)
}

/// A flag that Ctrl-C (SIGINT) or SIGTERM sets: the run finishes the step in progress, writes
/// a checkpoint and stops, resumable. A second signal, while that step finishes, ends the
/// process at once (exit 130); the last checkpoint on disk is still whole.
fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // In this order: a signal that finds the flag already set exits before setting it.
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop))
            .context("installing the signal handler")?;
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing the signal handler")?;
    }
    Ok(stop)
}

fn uses_overseer(gym: &hz_gym::Gym) -> bool {
    gym.spec().nodes.iter().any(|n| matches!(n.kind, hz_gym::spec::NodeKind::Overseer { .. }))
}
