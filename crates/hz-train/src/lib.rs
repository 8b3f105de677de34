//! Training LoRA adapters on gyms, locally on a provider node: GRPO over multi-turn episodes
//! against the `hz-gym` runtime, with the gym's itemised rewards (and its AI overseer) as the
//! signal; DPO from preference pairs; PPO with a value head and GAE; resumable runs with
//! checkpoints and metrics ([`run`]). Raw data and gym state stay in this process.

pub mod dpo;
pub mod grpo;
pub mod loss;
pub mod optim;
pub mod ppo;
pub mod rollout;
pub mod run;

use candle_core::Tensor;
use hz_llm::{Fwd, Model};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("gym: {0}")]
    Gym(String),
    #[error(transparent)]
    Chat(#[from] hz_chat::ChatError),
    #[error(transparent)]
    Llm(#[from] hz_llm::LlmError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Peft(#[from] hz_peft::PeftError),
    #[error("training config: `{field}`: {reason}")]
    Config { field: String, reason: String },
    #[error("{path}: line {line}: {reason}")]
    Data { path: String, line: usize, reason: String },
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("run: {0}")]
    Run(String),
}

impl TrainError {
    pub fn io(path: &std::path::Path, e: std::io::Error) -> Self {
        TrainError::Io { path: path.display().to_string(), reason: e.to_string() }
    }
}

/// One supervised step on masked sequences (negative log-likelihood of the policy tokens):
/// the brief warm-up that teaches a small model a gym's answer format. Returns the loss.
pub fn sft_step(model: &Model, opt: &mut optim::AdamW, rows: &[loss::Scored]) -> Result<f64, TrainError> {
    let loss = sft_loss(model, rows)?;
    let grads = loss.backward()?;
    let g = opt.collect(&grads);
    opt.step(&g)?;
    Ok(loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
}

/// The supervised loss: token-mean negative log-likelihood of the policy tokens.
pub fn sft_loss(model: &Model, rows: &[loss::Scored]) -> Result<Tensor, TrainError> {
    let sc = loss::score(model, rows, Fwd::TRAIN, false, false)?;
    let n = sc.mask.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?.max(1.0);
    Ok((sc.lp.mul(&sc.mask)?.sum_all()?.neg()? / n)?)
}
