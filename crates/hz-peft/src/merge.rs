//! Bake an adapter into a base model's safetensors: `W' = W + scale · B · A`.

use crate::io::{self, io_err};
use crate::{Adapter, PeftError, Result, WEIGHTS_FILE};
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The index of a sharded Hugging Face checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// What a merge did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeReport {
    /// Weight files written (1, or the number of shards).
    pub files: usize,
    /// Tensors written in all.
    pub tensors: usize,
    /// Of those, the ones the adapter changed.
    pub merged: usize,
    /// Other files copied (config.json, tokenizer files, ...).
    pub copied: Vec<String>,
}

/// One tensor written, for a progress display.
#[derive(Clone, Copy, Debug)]
pub struct Progress<'a> {
    pub tensor: &'a str,
    /// Tensors written so far, this one included.
    pub done: usize,
    pub total: usize,
    /// Whether the adapter changed it.
    pub merged: bool,
}

/// Files a model folder may hold that are weights in another format: not copied, since a
/// loader that prefers them would get the unmerged base.
const OTHER_WEIGHTS: &[&str] = &[".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx", ".index.json"];

/// Merge `adapter` into the model in `base_dir` (`model.safetensors`, or shards listed in
/// `model.safetensors.index.json`) and write the result to `out_dir`, which must not exist
/// yet (an empty folder is fine). Files keep their names, tensor order, header and dtypes;
/// unchanged tensors are copied byte for byte. Built in a hidden sibling folder and renamed
/// into place, so `out_dir` appears whole or not at all.
pub fn merge_into(base_dir: impl AsRef<Path>, adapter: &Adapter, out_dir: impl AsRef<Path>) -> Result<MergeReport> {
    merge_into_with(base_dir, adapter, out_dir, |_| {})
}

/// [`merge_into`], calling `progress` after each tensor written.
pub fn merge_into_with(
    base_dir: impl AsRef<Path>,
    adapter: &Adapter,
    out_dir: impl AsRef<Path>,
    progress: impl FnMut(Progress<'_>),
) -> Result<MergeReport> {
    let (base_dir, out_dir) = (base_dir.as_ref(), out_dir.as_ref());
    let out_is_empty_dir = out_dir.is_dir() && std::fs::read_dir(out_dir).map_err(io_err(out_dir))?.next().is_none();
    if out_dir.exists() && !out_is_empty_dir {
        return Err(PeftError::Exists { path: out_dir.to_path_buf() });
    }
    let plan = Plan::new(base_dir, adapter)?;
    let tmp = io::temp_sibling(out_dir);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let written = plan.write(base_dir, &tmp, progress).and_then(|report| {
        if out_is_empty_dir {
            std::fs::remove_dir(out_dir).map_err(io_err(out_dir))?;
        }
        std::fs::rename(&tmp, out_dir).map_err(io_err(out_dir))?;
        io::sync_dir(out_dir.parent().unwrap_or(Path::new(".")))?;
        Ok(report)
    });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written
}

/// One base weight file, mapped, with its parsed header.
struct Shard {
    name: String,
    path: PathBuf,
    map: memmap2::Mmap,
    header_len: usize,
    meta: safetensors::tensor::Metadata,
}

/// One adapted module, checked against its base weight and ready to apply.
struct Update {
    /// `scale · B · A` needs B [out, r] and A [r, in] in f32 on the CPU.
    a: Tensor,
    b: Tensor,
    dtype: DType,
}

/// Everything checked before the first byte is written.
struct Plan {
    shards: Vec<Shard>,
    index: Option<Vec<u8>>,
    updates: BTreeMap<String, Update>,
    scale: f64,
}

fn format_err(path: &Path, reason: String) -> PeftError {
    PeftError::Format { path: path.to_path_buf(), reason }
}

impl Plan {
    fn new(base_dir: &Path, adapter: &Adapter) -> Result<Self> {
        let index_path = base_dir.join(INDEX_FILE);
        let (names, index, weight_map) = if index_path.is_file() {
            let bytes = std::fs::read(&index_path).map_err(io_err(&index_path))?;
            let map = weight_map(&index_path, &bytes)?;
            let names: BTreeSet<String> = map.values().cloned().collect();
            (names.into_iter().collect::<Vec<_>>(), Some(bytes), Some(map))
        } else {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(base_dir).map_err(io_err(base_dir))? {
                let name = entry.map_err(io_err(base_dir))?.file_name().to_string_lossy().into_owned();
                if name.ends_with(".safetensors") && name != WEIGHTS_FILE && !name.starts_with('.') {
                    names.push(name);
                }
            }
            names.sort();
            (names, None, None)
        };
        if names.is_empty() {
            return Err(format_err(base_dir, "no *.safetensors weights here".into()));
        }
        let mut shards = Vec::with_capacity(names.len());
        // tensor name -> shard number
        let mut owner: BTreeMap<String, usize> = BTreeMap::new();
        for name in names {
            let path = base_dir.join(&name);
            let map = io::mmap(&path)?;
            let (header_len, meta) = safetensors::SafeTensors::read_metadata(&map)
                .map_err(|e| format_err(&path, format!("not a safetensors file: {e}")))?;
            for tensor in meta.tensors().into_keys() {
                if let Some(&other) = owner.get(&tensor) {
                    let first: &Shard = &shards[other];
                    return Err(PeftError::Tensor {
                        path: path.clone(),
                        key: tensor,
                        reason: format!("also in {}", first.name),
                    });
                }
                if let Some(wm) = &weight_map {
                    if wm.get(&tensor) != Some(&name) {
                        return Err(PeftError::Tensor {
                            path: index_path.clone(),
                            key: tensor,
                            reason: format!("is in {name} but the index does not say so"),
                        });
                    }
                }
                owner.insert(tensor, shards.len());
            }
            shards.push(Shard { name, path, map, header_len, meta });
        }
        if let Some(wm) = &weight_map {
            if let Some((tensor, file)) = wm.iter().find(|(t, _)| !owner.contains_key(*t)) {
                return Err(PeftError::Tensor {
                    path: base_dir.join(file),
                    key: tensor.clone(),
                    reason: format!("listed in {INDEX_FILE} but not in the file"),
                });
            }
        }
        let r = adapter.config.r;
        let mut updates = BTreeMap::new();
        for (module, pair) in &adapter.modules {
            let key = format!("{module}.weight");
            let Some(&at) = owner.get(&key) else {
                return Err(PeftError::Tensor {
                    path: base_dir.to_path_buf(),
                    key,
                    reason: format!("the adapter changes module `{module}` but the base model has no such weight"),
                });
            };
            let shard = &shards[at];
            let tensor_err = |reason: String| PeftError::Tensor { path: shard.path.clone(), key: key.clone(), reason };
            let info = shard.meta.info(&key).ok_or_else(|| tensor_err("missing from the header".into()))?;
            let dtype = io::candle_dtype(info.dtype).ok_or_else(|| {
                tensor_err(format!("dtype {:?}: only F32, F16 and BF16 weights are merged", info.dtype))
            })?;
            let (a, b) = (pair.a.dims(), pair.b.dims());
            let ok = matches!((info.shape.as_slice(), a, b),
                ([out, inp], [ra, ia], [ob, rb]) if ra == &r && rb == &r && ia == inp && ob == out);
            if !ok {
                return Err(tensor_err(format!(
                    "base weight {:?} does not fit the adapter: lora_A {a:?} must be [{r}, in], lora_B {b:?} \
                     [out, {r}], for [out, in]",
                    info.shape
                )));
            }
            let cpu = |t: &Tensor| t.to_device(&Device::Cpu).and_then(|t| t.to_dtype(DType::F32));
            updates.insert(key, Update { a: cpu(&pair.a)?, b: cpu(&pair.b)?, dtype });
        }
        Ok(Plan { shards, index, updates, scale: adapter.config.scale() })
    }

    fn write(&self, base_dir: &Path, out: &Path, mut progress: impl FnMut(Progress<'_>)) -> Result<MergeReport> {
        let total: usize = self.shards.iter().map(|s| s.meta.tensors().len()).sum();
        let (mut done, mut merged) = (0, 0);
        for shard in &self.shards {
            let path = out.join(&shard.name);
            let file = std::fs::File::create(&path).map_err(io_err(&path))?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let data_start = 8 + shard.header_len;
            // Same header, same offsets: a merged tensor keeps its dtype and shape.
            w.write_all(&shard.map[..data_start]).map_err(io_err(&path))?;
            for name in shard.meta.offset_keys() {
                let info =
                    shard.meta.info(&name).ok_or_else(|| format_err(&shard.path, format!("`{name}` vanished")))?;
                let (s, e) = info.data_offsets;
                let bytes = &shard.map[data_start + s..data_start + e];
                let update = self.updates.get(&name);
                match update {
                    Some(u) => {
                        let new = self.apply(u, bytes, &info.shape)?;
                        // Never shift the offsets the copied header promises.
                        let new = new.filter(|n| n.len() == bytes.len()).ok_or_else(|| PeftError::Tensor {
                            path: shard.path.clone(),
                            key: name.clone(),
                            reason: "the merged tensor does not have the original size".into(),
                        })?;
                        w.write_all(&new).map_err(io_err(&path))?;
                        merged += 1;
                    }
                    None => w.write_all(bytes).map_err(io_err(&path))?,
                }
                done += 1;
                progress(Progress { tensor: &name, done, total, merged: update.is_some() });
            }
            let file = w.into_inner().map_err(|e| PeftError::Io { path: path.clone(), source: e.into_error() })?;
            file.sync_all().map_err(io_err(&path))?;
        }
        if let Some(index) = &self.index {
            io::write_atomic(&out.join(INDEX_FILE), index)?;
        }
        let copied = copy_companions(base_dir, out)?;
        tracing::info!(files = self.shards.len(), tensors = total, merged, "merged adapter into base");
        Ok(MergeReport { files: self.shards.len(), tensors: total, merged, copied })
    }

    /// `W + scale · B · A` in f32, back in W's dtype.
    fn apply(&self, u: &Update, bytes: &[u8], shape: &[usize]) -> Result<Option<Vec<u8>>> {
        let w = io::tensor_from(bytes, u.dtype, shape, &Device::Cpu)?.to_dtype(DType::F32)?;
        let delta = u.b.matmul(&u.a)?.affine(self.scale, 0.0)?;
        let merged = (w + delta)?.to_dtype(u.dtype)?;
        io::tensor_bytes(&merged)
    }
}

/// `weight_map` of an index: tensor -> file name (a plain name in the same folder).
fn weight_map(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, String>> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format_err(path, format!("not JSON: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| format_err(path, "no `weight_map` object".into()))?;
    let mut out = BTreeMap::new();
    for (tensor, file) in map {
        let file =
            file.as_str().ok_or_else(|| format_err(path, format!("`weight_map.{tensor}` is not a file name")))?;
        // The output is written under the same names: refuse anything that leaves the folder.
        let plain = !file.is_empty() && !file.contains(['/', '\\']) && file != "." && file != "..";
        if !plain || !file.ends_with(".safetensors") {
            return Err(format_err(path, format!("`weight_map.{tensor}`: {file:?} is not a .safetensors file name")));
        }
        out.insert(tensor.clone(), file.to_string());
    }
    Ok(out)
}

/// Copy the folder's other top-level files (config.json, generation_config.json, tokenizer
/// files, licence, ...) but no weights and no adapter files.
fn copy_companions(base_dir: &Path, out: &Path) -> Result<Vec<String>> {
    let mut copied = Vec::new();
    for entry in std::fs::read_dir(base_dir).map_err(io_err(base_dir))? {
        let entry = entry.map_err(io_err(base_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let skip = name.starts_with('.')
            || name.ends_with(".safetensors")
            || name == INDEX_FILE
            || name == crate::CONFIG_FILE
            || OTHER_WEIGHTS.iter().any(|ext| name.ends_with(ext));
        // metadata() follows links: a Hugging Face cache folder is links to blobs.
        if skip || !std::fs::metadata(entry.path()).map_err(io_err(&entry.path()))?.is_file() {
            continue;
        }
        let to = out.join(&name);
        std::fs::copy(entry.path(), &to).map_err(io_err(&to))?;
        std::fs::File::open(&to).and_then(|f| f.sync_all()).map_err(io_err(&to))?;
        copied.push(name);
    }
    copied.sort();
    Ok(copied)
}
