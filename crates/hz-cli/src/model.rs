//! `hz model ...`: work on local model folders.

use anyhow::{Context, Result};
use clap::Subcommand;
use hz_peft::Adapter;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ModelCmd {
    /// Bake a LoRA adapter (PEFT layout) into a base model's safetensors: W + scale·B·A per
    /// adapted weight, in the weight's own dtype; everything else copied as it is.
    Merge {
        /// The base model folder (`model.safetensors` or shards with their index, config.json,
        /// tokenizer files).
        #[arg(long, value_name = "DIR")]
        base: PathBuf,
        /// The adapter folder (`adapter_config.json` + `adapter_model.safetensors`).
        #[arg(long, value_name = "DIR")]
        adapter: PathBuf,
        /// Where the merged model goes; must not exist yet (or be empty).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

pub fn run(cmd: ModelCmd) -> Result<bool> {
    match cmd {
        ModelCmd::Merge { base, adapter, out } => merge(base, adapter, out),
    }
}

fn merge(base: PathBuf, adapter_dir: PathBuf, out: PathBuf) -> Result<bool> {
    let adapter = Adapter::load(&adapter_dir, &candle_core::Device::Cpu)
        .with_context(|| format!("reading the adapter in {}", adapter_dir.display()))?;
    // The bar's length is known at the first tensor; indicatif hides it when stderr is not
    // a terminal.
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template("{bar:40} {pos}/{len} tensors {msg}")?;
    bar.set_style(style);
    let report = hz_peft::merge_into_with(&base, &adapter, &out, |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        if p.merged {
            bar.set_message(p.tensor.to_string());
        }
    });
    bar.finish_and_clear();
    let report = report.with_context(|| format!("merging into {}", out.display()))?;
    println!(
        "merged {} of {} tensors (scale {}) into {} ({} weight file{}; copied {})",
        report.merged,
        report.tensors,
        adapter.config.scale(),
        out.display(),
        report.files,
        if report.files == 1 { "" } else { "s" },
        if report.copied.is_empty() { "nothing else".to_string() } else { report.copied.join(", ") },
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use clap::Parser;
    use hz_peft::{LoraConfig, LoraPair};
    use std::collections::{BTreeMap, HashMap};

    #[test]
    fn merge_command_writes_the_merged_model_and_refuses_to_overwrite() -> Result<()> {
        let root = tempfile::tempdir()?;
        let (base, adapter, out) = (root.path().join("base"), root.path().join("adapter"), root.path().join("out"));
        std::fs::create_dir(&base)?;
        let w = Tensor::ones((4, 3), candle_core::DType::F32, &Device::Cpu)?;
        let norm = Tensor::ones(4, candle_core::DType::F32, &Device::Cpu)?;
        let tensors = HashMap::from([("model.q_proj.weight".to_string(), w), ("model.norm.weight".to_string(), norm)]);
        candle_core::safetensors::save(&tensors, base.join("model.safetensors"))?;
        std::fs::write(base.join("config.json"), "{}")?;
        let pair = LoraPair {
            a: Tensor::ones((2, 3), candle_core::DType::F32, &Device::Cpu)?,
            b: Tensor::ones((4, 2), candle_core::DType::F32, &Device::Cpu)?,
        };
        let modules = BTreeMap::from([("model.q_proj".to_string(), pair)]);
        Adapter::new(LoraConfig::new(2, 4.0, &["q_proj"]), "base", modules).save(&adapter)?;

        let args = |out: &std::path::Path| {
            let mut v = vec!["hz", "model", "merge", "--base"];
            v.extend(
                [base.to_str(), Some("--adapter"), adapter.to_str(), Some("--out"), out.to_str()]
                    .map(|s| s.unwrap_or("")),
            );
            crate::Cli::try_parse_from(v)
        };
        let crate::Command::Model(cmd) = args(&out)?.command else { panic!("not `hz model`") };
        assert!(run(cmd)?);
        let merged = candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu)?;
        // 1 + (alpha/r = 2) · (B·A = 2 everywhere) = 5.
        assert_eq!(merged["model.q_proj.weight"].flatten_all()?.to_vec1::<f32>()?, vec![5.0; 12]);
        assert_eq!(merged["model.norm.weight"].to_vec1::<f32>()?, vec![1.0; 4]);
        assert!(out.join("config.json").is_file());

        let crate::Command::Model(cmd) = args(&out)?.command else { panic!("not `hz model`") };
        let err = format!("{:#}", run(cmd).err().context("a second merge into the same folder must fail")?);
        assert!(err.contains("already exists"), "{err}");
        Ok(())
    }
}
