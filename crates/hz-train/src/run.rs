//! A training run on disk, resumable after a crash or `kill -9` with the same result as an
//! uninterrupted run:
//!
//! ```text
//! OUT/run.json                 config, gym id and base model (a resume must match them)
//! OUT/metrics.jsonl            one StepMetrics per line
//! OUT/checkpoints/step-N/      after N steps: the PEFT adapter, optimizer.safetensors
//!                              (AdamW moments, extra variables such as PPO's value head)
//!                              and state.json; each built beside and renamed into place
//! OUT/adapter/                 the final adapter (PEFT layout)
//! ```
//!
//! Every step draws its randomness from `(seed, step)` only, so redoing the steps after the
//! last checkpoint reproduces them bit for bit.

use crate::dpo::{self, DpoConfig, Pair};
use crate::grpo::{self, derive_seed, GrpoConfig, StepMetrics};
use crate::loss::PgConfig;
use crate::optim::{AdamW, AdamWConfig};
use crate::ppo::{self, PpoConfig, ValueHead};
use crate::rollout::GymFace;
use crate::TrainError;
use candle_core::{Tensor, Var};
use hz_chat::ChatTokenizer;
use hz_llm::generate::Sampling;
use hz_llm::{LoraConfig, Model};
use hz_peft::fsio::{sync_dir, temp_sibling, write_atomic};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    Grpo,
    Dpo,
    Ppo,
}

impl std::str::FromStr for Algo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "grpo" => Ok(Algo::Grpo),
            "dpo" => Ok(Algo::Dpo),
            "ppo" => Ok(Algo::Ppo),
            other => Err(format!("unknown algorithm {other:?}: use grpo, dpo or ppo")),
        }
    }
}

/// Everything that decides what a run computes. Stored in `run.json`; a resume with a
/// different config is refused, except for `steps` (a run may be extended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub algo: Algo,
    /// Optimiser steps in the whole run.
    pub steps: u64,
    pub seed: u64,
    /// Write a checkpoint after every N steps (and after the last).
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (the newest).
    pub keep_checkpoints: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub lora_r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub lora_targets: Vec<String>,
    /// Episodes per task (GRPO's group; PPO's rollouts per task; DPO compares the best and
    /// the worst of a group).
    pub group_size: usize,
    /// Tasks per step.
    pub prompts_per_step: usize,
    /// Passes over each step's batch.
    pub epochs: usize,
    /// Sequences per forward/backward pass, at most.
    pub micro_batch: usize,
    /// Padded tokens per pass, at most (a longer single sequence goes alone).
    pub micro_batch_tokens: usize,
    pub clip_eps: f64,
    /// KL weight to the reference (GRPO's loss term; PPO's per-token reward penalty).
    pub kl_beta: f64,
    pub temperature: f64,
    pub top_p: f64,
    pub max_new_tokens: usize,
    pub max_turns: usize,
    pub dpo: DpoConfig,
    pub ppo: PpoConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            algo: Algo::Grpo,
            steps: 50,
            seed: 0,
            checkpoint_every: 10,
            keep_checkpoints: 2,
            lr: 1e-4,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            lora_r: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            lora_targets: ["q_proj", "k_proj", "v_proj", "o_proj"].map(String::from).to_vec(),
            group_size: 8,
            prompts_per_step: 2,
            epochs: 1,
            micro_batch: 8,
            micro_batch_tokens: 4096,
            clip_eps: 0.2,
            kl_beta: 0.04,
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 128,
            max_turns: 4,
            dpo: DpoConfig::default(),
            ppo: PpoConfig::default(),
        }
    }
}

impl TrainConfig {
    /// Refuse settings that cannot train, naming the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field: &str, reason: &str| Err(TrainError::Config { field: field.into(), reason: reason.into() });
        let positive = [
            ("steps", self.steps as f64),
            ("checkpoint_every", self.checkpoint_every as f64),
            ("keep_checkpoints", self.keep_checkpoints as f64),
            ("lora_r", self.lora_r as f64),
            ("group_size", self.group_size as f64),
            ("prompts_per_step", self.prompts_per_step as f64),
            ("epochs", self.epochs as f64),
            ("micro_batch", self.micro_batch as f64),
            ("micro_batch_tokens", self.micro_batch_tokens as f64),
            ("max_new_tokens", self.max_new_tokens as f64),
            ("max_turns", self.max_turns as f64),
        ];
        for (field, v) in positive {
            if v < 1.0 {
                return bad(field, "must be at least 1");
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", "must be a positive number");
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return bad("lora_dropout", "must be in [0, 1)");
        }
        if self.lora_targets.is_empty() {
            return bad("lora_targets", "name at least one projection (q_proj, v_proj, ...)");
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad("temperature", "must be 0 (greedy) or more");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "must be in (0, 1]");
        }
        if !(self.clip_eps > 0.0 && self.clip_eps < 1.0) {
            return bad("clip_eps", "must be in (0, 1)");
        }
        if !(self.kl_beta.is_finite() && self.kl_beta >= 0.0) {
            return bad("kl_beta", "must be 0 or more");
        }
        if self.algo == Algo::Grpo && self.group_size < 2 {
            return bad("group_size", "GRPO needs at least 2 episodes per task to compare");
        }
        if self.algo == Algo::Dpo {
            self.dpo.validate(self.group_size)?;
        }
        if self.algo == Algo::Ppo {
            self.ppo.validate()?;
        }
        Ok(())
    }

    pub fn lora(&self) -> LoraConfig {
        let targets: Vec<&str> = self.lora_targets.iter().map(String::as_str).collect();
        LoraConfig { dropout: self.lora_dropout, ..LoraConfig::new(self.lora_r, self.lora_alpha, &targets) }
    }

    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            lr: self.lr,
            weight_decay: self.weight_decay,
            max_grad_norm: self.max_grad_norm,
            ..AdamWConfig::default()
        }
    }

    pub fn grpo(&self) -> GrpoConfig {
        GrpoConfig {
            group_size: self.group_size,
            prompts_per_step: self.prompts_per_step,
            epochs: self.epochs,
            micro_batch: self.micro_batch,
            micro_batch_tokens: self.micro_batch_tokens,
            pg: PgConfig { clip_eps: self.clip_eps, kl_beta: self.kl_beta },
            sampling: Sampling {
                temperature: self.temperature,
                top_p: self.top_p,
                max_new_tokens: self.max_new_tokens,
                ..Sampling::default()
            },
            max_turns: self.max_turns,
            seed: self.seed,
        }
    }
}

/// What the run trains on, recorded so a resume on something else is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// The gym's content id.
    pub gym: String,
    /// The base model (its folder or file name and a fingerprint of its config).
    pub model: String,
}

#[derive(Serialize, Deserialize)]
struct RunFile {
    format: u32,
    identity: RunIdentity,
    config: TrainConfig,
    /// SHA-256 of the DPO pairs file: the config holds only its path, and a resume on other
    /// pairs would continue a run on data it never started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pairs_sha256: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    format: u32,
    /// Steps completed.
    step: u64,
    /// AdamW's step counter.
    t: u64,
    /// Names of the extra variables, in optimiser order after the LoRA ones.
    extra: Vec<String>,
}

const FORMAT: u32 = 1;
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "state.json";

/// Where a step's metrics go: the JSON-lines file, the SQLite index, a progress bar.
pub trait MetricsSink {
    fn record(&mut self, m: &StepMetrics) -> Result<(), TrainError>;
    /// Drop what was recorded for steps `from` and later: a resumed run redoes them.
    fn rewind(&mut self, from: u64) -> Result<(), TrainError>;
}

/// `metrics.jsonl`: one line per step, flushed and synced as it is written.
pub struct JsonlSink {
    path: PathBuf,
}

impl JsonlSink {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Every step recorded so far (a torn last line from a kill is skipped).
    pub fn read(path: &Path) -> Result<Vec<StepMetrics>, TrainError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TrainError::io(path, e)),
        };
        Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
    }
}

impl MetricsSink for JsonlSink {
    fn record(&mut self, m: &StepMetrics) -> Result<(), TrainError> {
        let mut line = serde_json::to_string(m).map_err(|e| TrainError::Run(format!("metrics: {e}")))?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| TrainError::io(&self.path, e))?;
        f.write_all(line.as_bytes()).and_then(|()| f.sync_data()).map_err(|e| TrainError::io(&self.path, e))
    }

    fn rewind(&mut self, from: u64) -> Result<(), TrainError> {
        if !self.path.exists() {
            return Ok(());
        }
        let kept: String = Self::read(&self.path)?
            .into_iter()
            .filter(|m| m.step < from)
            .filter_map(|m| serde_json::to_string(&m).ok())
            .map(|l| l + "\n")
            .collect();
        write_atomic(&self.path, kept.as_bytes())?;
        Ok(())
    }
}

/// What a finished (or stopped) run left.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub steps_done: u64,
    /// The step the run resumed from, if it did.
    pub resumed_from: Option<u64>,
    /// The final adapter, when all steps are done.
    pub adapter: Option<PathBuf>,
    pub last: Option<StepMetrics>,
}

/// A run being trained.
pub struct Run {
    dir: PathBuf,
    cfg: TrainConfig,
    identity: RunIdentity,
    model: Model,
    chat: ChatTokenizer,
    face: GymFace,
    opt: AdamW,
    head: Option<ValueHead>,
    pairs: Vec<Pair>,
    next_step: u64,
    resumed_from: Option<u64>,
}

impl Run {
    /// Open `dir` for this config: a new run, or the resume of the run already there from
    /// its newest checkpoint. `model` is the base (no adapter yet).
    pub fn open(
        dir: &Path,
        cfg: TrainConfig,
        identity: RunIdentity,
        mut model: Model,
        chat: ChatTokenizer,
        face: GymFace,
    ) -> Result<Self, TrainError> {
        cfg.validate()?;
        std::fs::create_dir_all(dir.join("checkpoints")).map_err(|e| TrainError::io(dir, e))?;
        let run_path = dir.join("run.json");
        // Read once: fingerprinted for the resume check, then parsed.
        let pairs_text = match (&cfg.algo, &cfg.dpo.pairs) {
            (Algo::Dpo, Some(p)) => Some((p, std::fs::read_to_string(p).map_err(|e| TrainError::io(p, e))?)),
            _ => None,
        };
        let pairs_sha256 = pairs_text.as_ref().map(|(_, text)| hex::encode(Sha256::digest(text.as_bytes())));
        if run_path.exists() {
            check_same_run(&run_path, &cfg, &identity, pairs_sha256.as_deref())?;
        }
        // Written every time: `steps` may have grown.
        let file = RunFile { format: FORMAT, identity: identity.clone(), config: cfg.clone(), pairs_sha256 };
        let text = serde_json::to_string_pretty(&file).map_err(|e| TrainError::Run(format!("run.json: {e}")))?;
        write_atomic(&run_path, text.as_bytes())?;

        let pairs = match &pairs_text {
            Some((path, text)) => dpo::parse_pairs(text, path, &chat)?,
            None => Vec::new(),
        };
        let latest = latest_checkpoint(dir)?;
        let (head, opt, next_step) = match &latest {
            None => {
                model.add_lora(&cfg.lora(), derive_seed(cfg.seed, u64::MAX, 1))?;
                let head = (cfg.algo == Algo::Ppo).then(|| ValueHead::new(&model)).transpose()?;
                let opt = AdamW::new(trainable(&model, head.as_ref()), cfg.adamw())?;
                (head, opt, 0)
            }
            Some((step, ck)) => {
                let adapter = hz_peft::Adapter::load(ck, model.device())?;
                if adapter.config != cfg.lora() {
                    return Err(TrainError::Run(format!(
                        "{}: the checkpoint's LoRA config differs from the run's",
                        ck.display()
                    )));
                }
                model.set_adapter(&adapter)?;
                let (head, opt) = load_optimizer(ck, &model, &cfg)?;
                (head, opt, *step)
            }
        };
        tracing::info!(dir = %dir.display(), start = next_step, steps = cfg.steps, "training run");
        Ok(Self {
            dir: dir.to_path_buf(),
            cfg,
            identity,
            model,
            chat,
            face,
            opt,
            head,
            pairs,
            next_step,
            resumed_from: latest.map(|(s, _)| s),
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    pub fn next_step(&self) -> u64 {
        self.next_step
    }

    pub fn resumed_from(&self) -> Option<u64> {
        self.resumed_from
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }

    pub fn adapter_dir(&self) -> PathBuf {
        self.dir.join("adapter")
    }

    /// Train the remaining steps, checkpointing as configured, until done or `stop` is set
    /// (checked between steps; a stopped run checkpoints where it is).
    pub fn run(
        &mut self,
        sinks: &mut [&mut dyn MetricsSink],
        stop: Option<&AtomicBool>,
    ) -> Result<RunSummary, TrainError> {
        for s in sinks.iter_mut() {
            s.rewind(self.next_step)?;
        }
        let mut last = None;
        while self.next_step < self.cfg.steps {
            if stop.is_some_and(|f| f.load(Ordering::Relaxed)) {
                self.checkpoint()?;
                break;
            }
            let m = self.step_once()?;
            for s in sinks.iter_mut() {
                s.record(&m)?;
            }
            last = Some(m);
            self.next_step += 1;
            if self.next_step % self.cfg.checkpoint_every == 0 || self.next_step == self.cfg.steps {
                self.checkpoint()?;
            }
        }
        let adapter = if self.next_step >= self.cfg.steps { Some(self.finish()?) } else { None };
        Ok(RunSummary { steps_done: self.next_step, resumed_from: self.resumed_from, adapter, last })
    }

    /// One optimiser step of the configured algorithm (does not advance the run).
    pub fn step_once(&mut self) -> Result<StepMetrics, TrainError> {
        let step = self.next_step;
        match self.cfg.algo {
            Algo::Grpo => grpo::step(&self.model, &self.chat, &self.face, &mut self.opt, &self.cfg.grpo(), step),
            Algo::Dpo => dpo::step(&self.model, &self.chat, &self.face, &mut self.opt, &self.cfg, &self.pairs, step),
            Algo::Ppo => {
                let head = self.head.as_ref().ok_or_else(|| TrainError::Run("PPO run without a value head".into()))?;
                ppo::step(&self.model, &self.chat, &self.face, &mut self.opt, head, &self.cfg, step)
            }
        }
    }

    /// Write `checkpoints/step-N/` for the steps done so far, whole or not at all, then drop
    /// the oldest beyond `keep_checkpoints`.
    pub fn checkpoint(&self) -> Result<PathBuf, TrainError> {
        let root = self.dir.join("checkpoints");
        let dir = root.join(format!("step-{:08}", self.next_step));
        if dir.is_dir() {
            return Ok(dir);
        }
        let tmp = temp_sibling(&dir);
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        // Into an existing folder the adapter's files are written (and synced) in place.
        self.model.adapter(&self.identity.model)?.save(&tmp)?;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (i, (m, v)) in self.opt.m.iter().zip(&self.opt.v).enumerate() {
            tensors.insert(format!("m.{i}"), m.clone());
            tensors.insert(format!("v.{i}"), v.clone());
        }
        let mut extra = Vec::new();
        if let Some(h) = &self.head {
            for (name, var) in h.named() {
                tensors.insert(format!("extra.{name}"), var.as_tensor().clone());
                extra.push(name.to_string());
            }
        }
        let opt_path = tmp.join(OPTIMIZER_FILE);
        candle_core::safetensors::save(&tensors, &opt_path)?;
        std::fs::File::open(&opt_path).and_then(|f| f.sync_all()).map_err(|e| TrainError::io(&opt_path, e))?;
        let state = StateFile { format: FORMAT, step: self.next_step, t: self.opt.t, extra };
        let text = serde_json::to_string_pretty(&state).map_err(|e| TrainError::Run(format!("state.json: {e}")))?;
        write_atomic(&tmp.join(STATE_FILE), text.as_bytes())?;
        std::fs::rename(&tmp, &dir).map_err(|e| TrainError::io(&dir, e))?;
        sync_dir(&root)?;
        tracing::info!(step = self.next_step, dir = %dir.display(), "checkpoint");
        let mut all = checkpoints(&self.dir)?;
        while all.len() > self.cfg.keep_checkpoints {
            let (_, old) = all.remove(0);
            let _ = std::fs::remove_dir_all(old);
        }
        Ok(dir)
    }

    /// Write the adapter as it stands to `adapter/` (PEFT layout).
    pub fn finish(&self) -> Result<PathBuf, TrainError> {
        let dir = self.adapter_dir();
        self.model.adapter(&self.identity.model)?.save(&dir)?;
        Ok(dir)
    }
}

/// The LoRA variables (A, B per projection, in the model's fixed order), then the value
/// head's: the optimiser's order, which checkpoints rely on.
fn trainable(model: &Model, head: Option<&ValueHead>) -> Vec<Var> {
    let mut vars: Vec<Var> = model.lora_vars().into_iter().flat_map(|(_, a, b)| [a, b]).collect();
    if let Some(h) = head {
        vars.extend(h.named().into_iter().map(|(_, v)| v.clone()));
    }
    vars
}

fn load_optimizer(ck: &Path, model: &Model, cfg: &TrainConfig) -> Result<(Option<ValueHead>, AdamW), TrainError> {
    let state_path = ck.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| TrainError::io(&state_path, e))?;
    let state: StateFile =
        serde_json::from_str(&text).map_err(|e| TrainError::Run(format!("{}: {e}", state_path.display())))?;
    let opt_path = ck.join(OPTIMIZER_FILE);
    let tensors = candle_core::safetensors::load(&opt_path, model.device())
        .map_err(|e| TrainError::Run(format!("{}: {e}", opt_path.display())))?;
    let head = if cfg.algo == Algo::Ppo {
        let get = |n: &str| {
            tensors
                .get(&format!("extra.{n}"))
                .cloned()
                .ok_or_else(|| TrainError::Run(format!("{}: no `extra.{n}`", opt_path.display())))
        };
        Some(ValueHead::from_tensors(get("value.w")?, get("value.b")?)?)
    } else {
        None
    };
    let mut opt = AdamW::new(trainable(model, head.as_ref()), cfg.adamw())?;
    for i in 0..opt.m.len() {
        let get = |k: String| {
            tensors.get(&k).cloned().ok_or_else(|| TrainError::Run(format!("{}: no `{k}`", opt_path.display())))
        };
        let (m, v) = (get(format!("m.{i}"))?, get(format!("v.{i}"))?);
        if m.dims() != opt.m[i].dims() || v.dims() != opt.v[i].dims() {
            return Err(TrainError::Run(format!(
                "{}: moment {i} has shape {:?}, the model needs {:?}",
                opt_path.display(),
                m.dims(),
                opt.m[i].dims()
            )));
        }
        opt.m[i] = m.to_dtype(model.dtype())?;
        opt.v[i] = v.to_dtype(model.dtype())?;
    }
    opt.t = state.t;
    Ok((head, opt))
}

/// Checkpoints on disk, oldest first: (steps done, folder). Half-built ones (hidden temp
/// folders) are not checkpoints.
fn checkpoints(dir: &Path) -> Result<Vec<(u64, PathBuf)>, TrainError> {
    let root = dir.join("checkpoints");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(TrainError::io(&root, e)),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix("step-").and_then(|n| n.parse::<u64>().ok()) {
            if e.path().join(STATE_FILE).is_file() {
                out.push((n, e.path()));
            }
        } else if name.starts_with('.') && name.contains(".tmp-") {
            // Left by a killed writer.
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    out.sort();
    Ok(out)
}

fn latest_checkpoint(dir: &Path) -> Result<Option<(u64, PathBuf)>, TrainError> {
    Ok(checkpoints(dir)?.pop())
}

fn check_same_run(
    path: &Path,
    cfg: &TrainConfig,
    identity: &RunIdentity,
    pairs_sha256: Option<&str>,
) -> Result<(), TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let old: RunFile =
        serde_json::from_str(&text).map_err(|e| TrainError::Run(format!("{}: not a run file: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new(".")).display();
    if old.identity.gym != identity.gym {
        return Err(TrainError::Run(format!(
            "{dir} holds a run on gym {}, not {}: give another --out",
            old.identity.gym, identity.gym
        )));
    }
    if old.identity.model != identity.model {
        return Err(TrainError::Run(format!(
            "{dir} holds a run on model {}, not {}: give another --out",
            old.identity.model, identity.model
        )));
    }
    // Run files from before the pairs were fingerprinted carry none: nothing to compare.
    if let (Some(was), Some(now)) = (old.pairs_sha256.as_deref(), pairs_sha256) {
        if was != now {
            let file = cfg.dpo.pairs.as_deref().unwrap_or(Path::new("?")).display();
            return Err(TrainError::Run(format!(
                "{dir} holds a DPO run on other pairs: {file} has changed since it began \
                 (SHA-256 {was}, now {now}): restore the file or give another --out"
            )));
        }
    }
    let as_map = |c: &TrainConfig| match serde_json::to_value(c) {
        Ok(Value::Object(mut m)) => {
            m.remove("steps");
            m
        }
        _ => Default::default(),
    };
    let (a, b) = (as_map(&old.config), as_map(cfg));
    let differ: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: {v} -> {}", b.get(k).cloned().unwrap_or(Value::Null)))
        .collect();
    if !differ.is_empty() {
        return Err(TrainError::Run(format!(
            "{dir} holds a run with other settings ({}); resume with the same ones or give another --out",
            differ.join(", ")
        )));
    }
    Ok(())
}
