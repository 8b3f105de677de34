//! Loading a model from a local Hugging Face folder (`config.json`, `*.safetensors` in one file
//! or sharded with an index, `tokenizer.json`) or from a GGUF file (see [`crate::gguf`]).

use crate::config::ModelConfig;
use crate::model::{Model, WeightSource};
use crate::ops::BaseWeight;
use crate::LlmError;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

/// A model with its tokenizer, as loaded from a folder or a GGUF file.
pub struct HfModel {
    pub model: Model,
    pub tokenizer: tokenizers::Tokenizer,
    /// The folder, or the GGUF file.
    pub dir: PathBuf,
}

struct SafetensorsSource {
    st: MmapedSafetensors,
    /// `language_model.` for Gemma 3 multimodal checkpoints, else empty.
    prefix: String,
    device: Device,
    dtype: DType,
}

impl SafetensorsSource {
    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

impl WeightSource for SafetensorsSource {
    fn get(&self, name: &str) -> Result<BaseWeight, LlmError> {
        Ok(BaseWeight::Dense(self.get_dense(name)?))
    }

    fn get_dense(&self, name: &str) -> Result<Tensor, LlmError> {
        let t = self.st.load(&self.full(name), &self.device).map_err(|e| LlmError::Weights {
            name: name.to_string(),
            reason: if self.contains(name) { e.to_string() } else { "missing from the safetensors files".into() },
        })?;
        Ok(t.to_dtype(self.dtype)?)
    }

    fn contains(&self, name: &str) -> bool {
        self.st.get(&self.full(name)).is_ok()
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn dtype(&self) -> DType {
        self.dtype
    }
}

pub(crate) fn file_err(path: &Path, reason: impl std::fmt::Display) -> LlmError {
    LlmError::File { path: path.display().to_string(), reason: reason.to_string() }
}

/// The safetensors files of a folder: those named by `model.safetensors.index.json`, else
/// every `*.safetensors` file in name order.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, LlmError> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| file_err(&index, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| file_err(&index, e))?;
        let map =
            v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| file_err(&index, "no weight_map object"))?;
        let mut files: Vec<PathBuf> = map.values().filter_map(|f| f.as_str()).map(|f| dir.join(f)).collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| file_err(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(file_err(dir, "no *.safetensors file"));
    }
    Ok(files)
}

pub fn read_config(dir: &Path) -> Result<ModelConfig, LlmError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| file_err(&path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| file_err(&path, e))?;
    ModelConfig::from_hf_json(&v)
}

/// Load the model weights from a Hugging Face folder or a GGUF file, computing in `dtype` (f32
/// normally; a GGUF file's quantized projections stay quantized only in f32).
pub fn load_model(dir: &Path, device: &Device, dtype: DType) -> Result<Model, LlmError> {
    if crate::gguf::is_gguf(dir) {
        return crate::gguf::load_model(dir, device, dtype);
    }
    let config = read_config(dir)?;
    let files = safetensors_files(dir)?;
    // SAFETY: the files are memory-mapped read-only; the folder is the user's model and is
    // not modified while we hold it (the same contract as every safetensors loader).
    let st = unsafe { MmapedSafetensors::multi(&files) }.map_err(|e| file_err(dir, e))?;
    let prefix =
        if st.get("model.embed_tokens.weight").is_err() && st.get("language_model.model.embed_tokens.weight").is_ok() {
            "language_model.".to_string()
        } else {
            String::new()
        };
    let src = SafetensorsSource { st, prefix, device: device.clone(), dtype };
    Model::new(config, &src)
}

/// Load model and tokenizer from a Hugging Face folder, or from a GGUF file (its tokenizer
/// built from the vocabulary in its metadata).
pub fn load_hf(dir: &Path, device: &Device) -> Result<HfModel, LlmError> {
    if crate::gguf::is_gguf(dir) {
        let g = crate::gguf::Gguf::open(dir)?;
        let model = g.load_model(device, DType::F32)?;
        let tokenizer = g.tokenizer()?;
        return Ok(HfModel { model, tokenizer, dir: dir.to_path_buf() });
    }
    let model = load_model(dir, device, DType::F32)?;
    let tok_path = dir.join("tokenizer.json");
    let tokenizer = tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| file_err(&tok_path, e))?;
    Ok(HfModel { model, tokenizer, dir: dir.to_path_buf() })
}
