//! `Adapter::save` / `Adapter::load`: the two files PEFT's `save_pretrained` writes.

use crate::io::{self, io_err, Owned};
use crate::{Adapter, LoraConfig, LoraPair, PeftError, Result, CONFIG_FILE, WEIGHTS_FILE};
use candle_core::{DType, Device};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// PEFT's state-dict prefix: `PeftModel` wraps `LoraModel`, which wraps the base model.
pub const KEY_PREFIX: &str = "base_model.model.";

/// The config keys this crate reads into [`LoraConfig`] / [`Adapter::base_model`]; the rest
/// go to [`Adapter::extra`].
const MODELLED: &[&str] =
    &["peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora", "base_model_name_or_path"];

/// The key of a module's A or B in `adapter_model.safetensors`, as PEFT writes it (the
/// adapter name, `default`, is stripped on save).
pub fn peft_key(module: &str, which: Which) -> String {
    format!("{KEY_PREFIX}{module}.{}.weight", which.name())
}

/// One of the two LoRA matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    A,
    B,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::A => "lora_A",
            Which::B => "lora_B",
        }
    }
}

/// The other keys PEFT's `LoraConfig` writes, with its defaults. Only keys that PEFT has
/// accepted for several releases: older PEFT rejects keys it does not know.
fn peft_defaults() -> BTreeMap<String, Value> {
    let d = json!({
        "alpha_pattern": {},
        "auto_mapping": null,
        "bias": "none",
        "fan_in_fan_out": false,
        "init_lora_weights": true,
        "layer_replication": null,
        "layers_pattern": null,
        "layers_to_transform": null,
        "loftq_config": {},
        "megatron_config": null,
        "megatron_core": "megatron.core",
        "modules_to_save": null,
        "rank_pattern": {},
        "revision": null,
        "task_type": "CAUSAL_LM",
        "use_dora": false,
    });
    match d {
        Value::Object(m) => m.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

/// A number as PEFT writes it: `16`, not `16.0`, when it is whole.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// PEFT reads a string `target_modules` as a regex (or `all-linear`), a list as names; write
/// back a single entry that is not a plain module name as the string it came from.
fn targets_value(targets: &[String]) -> Value {
    let plain = |t: &String| t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    match targets {
        [one] if !plain(one) => json!(one),
        _ => json!(targets),
    }
}

impl Adapter {
    /// The `adapter_config.json` text: PEFT's keys, sorted as PEFT's `json.dumps(...,
    /// sort_keys=True)` writes them; extra keys from a loaded file are kept.
    pub fn config_json(&self) -> String {
        let mut out = peft_defaults();
        for (k, v) in &self.extra {
            out.insert(k.clone(), v.clone());
        }
        let c = &self.config;
        out.insert("peft_type".into(), json!("LORA"));
        out.insert("r".into(), json!(c.r));
        out.insert("lora_alpha".into(), number(c.alpha));
        out.insert("lora_dropout".into(), json!(c.dropout));
        out.insert("target_modules".into(), targets_value(&c.target_modules));
        out.insert("use_rslora".into(), json!(c.use_rslora));
        out.insert("base_model_name_or_path".into(), json!(self.base_model));
        // PEFT's save_pretrained marks the saved config as for inference.
        out.insert("inference_mode".into(), json!(true));
        let map: Map<String, Value> = out.into_iter().collect();
        // A map of JSON values always serializes.
        serde_json::to_string_pretty(&Value::Object(map)).unwrap_or_default()
    }

    /// Write `adapter_config.json` and `adapter_model.safetensors` into `dir`. Into a new
    /// folder: built beside it and renamed into place, so it appears whole or not at all.
    /// Into an existing folder: each file is replaced atomically, weights first.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let weights = self.weights_bytes(&dir.join(WEIGHTS_FILE))?;
        let config = self.config_json();
        if dir.is_dir() {
            io::write_atomic(&dir.join(WEIGHTS_FILE), &weights)?;
            return io::write_atomic(&dir.join(CONFIG_FILE), config.as_bytes());
        }
        let tmp = io::temp_sibling(dir);
        let built = (|| {
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
            io::write_atomic(&tmp.join(WEIGHTS_FILE), &weights)?;
            io::write_atomic(&tmp.join(CONFIG_FILE), config.as_bytes())?;
            std::fs::rename(&tmp, dir).map_err(io_err(dir))?;
            io::sync_dir(dir.parent().unwrap_or(Path::new(".")))
        })();
        if built.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        built
    }

    /// The safetensors bytes of the weights, with PEFT's keys and metadata.
    fn weights_bytes(&self, path: &Path) -> Result<Vec<u8>> {
        let mut views = Vec::with_capacity(self.modules.len() * 2);
        for (module, pair) in &self.modules {
            for (which, t) in [(Which::A, &pair.a), (Which::B, &pair.b)] {
                let key = peft_key(module, which);
                let tensor_err =
                    |reason: String| PeftError::Tensor { path: path.to_path_buf(), key: key.clone(), reason };
                if t.rank() != 2 {
                    return Err(tensor_err(format!("must be 2-D, is {:?}", t.dims())));
                }
                let (Some(dtype), Some(data)) = (io::st_dtype(t.dtype()), io::tensor_bytes(t)?) else {
                    return Err(tensor_err(format!("dtype {:?}: only F32, F16 and BF16 are written", t.dtype())));
                };
                views.push((key, Owned { dtype, shape: t.dims().to_vec(), data }));
            }
        }
        // PEFT saves with metadata {"format": "pt"}; transformers checks it when loading.
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize(views, Some(meta))
            .map_err(|e| PeftError::Format { path: path.to_path_buf(), reason: e.to_string() })
    }

    /// Read an adapter folder as PEFT writes it. Keys may carry the adapter name
    /// (`lora_A.default.weight`) or not; weights may be F32, F16 or BF16 and are returned
    /// as F32 on `device` (training and merging both work in f32).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
        let (config, base_model, extra) = parse_config(&config_path, &text)?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let modules = read_weights(&weights_path, config.r, device)?;
        Ok(Adapter { config, base_model, modules, extra })
    }
}

fn parse_config(path: &Path, text: &str) -> Result<(LoraConfig, String, Map<String, Value>)> {
    let format = |reason: String| PeftError::Format { path: path.to_path_buf(), reason };
    let unsupported =
        |key: &str, reason: String| PeftError::Unsupported { path: path.to_path_buf(), key: key.into(), reason };
    let value: Value = serde_json::from_str(text).map_err(|e| format(format!("not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(format("not a JSON object".into()));
    };
    let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
    match get("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        other => return Err(unsupported("peft_type", format!("{other:?}: only \"LORA\" adapters are read"))),
    }
    let r = match get("r") {
        Some(v) => {
            v.as_u64().filter(|&r| r > 0).ok_or_else(|| format(format!("`r`: {v} is not a positive integer")))?
        }
        // PEFT's default rank.
        None => 8,
    } as usize;
    let float = |k: &str, default: f64| match get(k) {
        Some(v) => v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| format(format!("`{k}`: {v} is not a number"))),
        None => Ok(default),
    };
    let alpha = float("lora_alpha", 8.0)?;
    let dropout = float("lora_dropout", 0.0)?;
    let flag = |k: &str| match get(k) {
        Some(v) => v.as_bool().ok_or_else(|| format(format!("`{k}`: {v} is not true or false"))),
        None => Ok(false),
    };
    let use_rslora = flag("use_rslora")?;
    let target_modules = match get("target_modules") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| format(format!("`target_modules`: {v} is not a string")))
            })
            .collect::<Result<_>>()?,
        Some(v) => return Err(format(format!("`target_modules`: {v} is not a list or a string"))),
    };
    // Settings that change what the weights mean; refuse them rather than merge wrongly.
    if flag("use_dora")? {
        return Err(unsupported("use_dora", "DoRA adapters are not supported".into()));
    }
    if flag("fan_in_fan_out")? {
        return Err(unsupported("fan_in_fan_out", "transposed (Conv1D) base weights are not supported".into()));
    }
    if let Some(b) = get("bias").and_then(Value::as_str).filter(|b| *b != "none") {
        return Err(unsupported("bias", format!("{b:?}: only \"none\" is supported")));
    }
    for k in ["rank_pattern", "alpha_pattern"] {
        if get(k).is_some_and(|v| v.as_object().is_none_or(|m| !m.is_empty())) {
            return Err(unsupported(k, "per-module rank or alpha is not supported".into()));
        }
    }
    if get("modules_to_save").is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty())) {
        return Err(unsupported("modules_to_save", "fully trained extra modules are not supported".into()));
    }
    let base_model = match get("base_model_name_or_path") {
        None => String::new(),
        Some(v) => v.as_str().map(str::to_string).ok_or_else(|| format(format!("`base_model_name_or_path`: {v}")))?,
    };
    let extra = obj.into_iter().filter(|(k, _)| !MODELLED.contains(&k.as_str())).collect();
    Ok((LoraConfig { r, alpha, dropout, target_modules, use_rslora }, base_model, extra))
}

/// Split a state-dict key into (module path, A or B); None for a key that is not a LoRA
/// matrix. Accepts PEFT's saved form and the in-memory form with the `default` adapter name.
fn split_key(key: &str) -> Option<(&str, Which)> {
    let key = key.strip_prefix(KEY_PREFIX).unwrap_or(key);
    for which in [Which::A, Which::B] {
        for suffix in [format!(".{}.weight", which.name()), format!(".{}.default.weight", which.name())] {
            if let Some(module) = key.strip_suffix(suffix.as_str()).filter(|m| !m.is_empty()) {
                return Some((module, which));
            }
        }
    }
    None
}

fn read_weights(path: &Path, r: usize, device: &Device) -> Result<BTreeMap<String, LoraPair>> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| PeftError::Format { path: path.to_path_buf(), reason: format!("not a safetensors file: {e}") })?;
    let tensor_err =
        |key: &str, reason: String| PeftError::Tensor { path: path.to_path_buf(), key: key.into(), reason };
    // (A, B) with the key each came from, for messages.
    let mut found: BTreeMap<String, [Option<(String, candle_core::Tensor)>; 2]> = BTreeMap::new();
    let mut names = st.names();
    names.sort();
    for key in names {
        let view = st.tensor(key).map_err(|e| tensor_err(key, e.to_string()))?;
        let Some((module, which)) = split_key(key) else {
            let reason = if key.contains("lora_magnitude_vector") {
                "a DoRA magnitude vector: DoRA adapters are not supported"
            } else if key.contains("lora_embedding_") {
                "an embedding LoRA matrix: LoRA on embeddings is not supported"
            } else {
                "not a LoRA matrix (`<module>.lora_A.weight` or `.lora_B.weight`)"
            };
            return Err(tensor_err(key, reason.into()));
        };
        let dtype = io::candle_dtype(view.dtype())
            .ok_or_else(|| tensor_err(key, format!("dtype {:?}: only F32, F16 and BF16 are read", view.dtype())))?;
        let shape = view.shape();
        let [rows, cols] = shape else {
            return Err(tensor_err(key, format!("must be 2-D, is {shape:?}")));
        };
        // A is [r, in], B is [out, r].
        let rank = if which == Which::A { *rows } else { *cols };
        if rank != r {
            return Err(tensor_err(key, format!("shape {shape:?} does not have rank r = {r} from {CONFIG_FILE}")));
        }
        let t = io::tensor_from(view.data(), dtype, shape, device)?.to_dtype(DType::F32)?;
        let slot = &mut found.entry(module.to_string()).or_default()[which as usize];
        if let Some((other, _)) = slot {
            return Err(tensor_err(key, format!("the same matrix as `{other}`")));
        }
        *slot = Some((key.to_string(), t));
    }
    let mut modules = BTreeMap::new();
    for (module, [a, b]) in found {
        let missing = |which| tensor_err(&peft_key(&module, which), "missing (its pair is there)".into());
        let (_, a) = a.ok_or_else(|| missing(Which::A))?;
        let (_, b) = b.ok_or_else(|| missing(Which::B))?;
        modules.insert(module, LoraPair { a, b });
    }
    Ok(modules)
}
