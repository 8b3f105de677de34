//! File plumbing shared by adapters and merge: atomic writes, tensor bytes, dtypes.

use crate::{PeftError, Result};
use candle_core::{DType, Device, Tensor};
use std::borrow::Cow;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PeftError + '_ {
    move |source| PeftError::Io { path: path.to_path_buf(), source }
}

/// A sibling of `path` for building it before the rename (same folder, so the rename stays
/// on one filesystem and is atomic). Hidden, and tagged with the process id so two writers
/// never share one.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Flush a folder's entry list, so a rename into it survives a power cut.
pub fn sync_dir(dir: &Path) -> Result<()> {
    // An empty parent means the current directory.
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    File::open(dir).and_then(|f| f.sync_all()).map_err(io_err(dir))
}

/// Write a file whole or not at all: temp file, fsync, rename over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_sibling(path);
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(source) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(PeftError::Io { path: path.to_path_buf(), source });
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// The safetensors dtype of a float dtype this crate reads and writes.
pub(crate) fn st_dtype(dtype: DType) -> Option<safetensors::Dtype> {
    match dtype {
        DType::F32 => Some(safetensors::Dtype::F32),
        DType::F16 => Some(safetensors::Dtype::F16),
        DType::BF16 => Some(safetensors::Dtype::BF16),
        _ => None,
    }
}

/// The candle dtype of a safetensors float dtype this crate handles (F32, F16, BF16).
pub(crate) fn candle_dtype(dtype: safetensors::Dtype) -> Option<DType> {
    match dtype {
        safetensors::Dtype::F32 => Some(DType::F32),
        safetensors::Dtype::F16 => Some(DType::F16),
        safetensors::Dtype::BF16 => Some(DType::BF16),
        _ => None,
    }
}

/// Little-endian bytes of a tensor (any device, any layout) in its own dtype; None for a
/// dtype other than F32 / F16 / BF16.
pub(crate) fn tensor_bytes(t: &Tensor) -> Result<Option<Vec<u8>>> {
    let flat = t.flatten_all()?;
    Ok(match t.dtype() {
        DType::F32 => Some(flat.to_vec1::<f32>()?.iter().flat_map(|x| x.to_le_bytes()).collect()),
        DType::F16 => Some(flat.to_vec1::<half::f16>()?.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect()),
        DType::BF16 => Some(flat.to_vec1::<half::bf16>()?.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect()),
        _ => None,
    })
}

/// A tensor from safetensors bytes (dtype already checked to be a float one we handle).
pub(crate) fn tensor_from(data: &[u8], dtype: DType, shape: &[usize], device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_raw_buffer(data, dtype, shape, device)?)
}

/// Owned bytes that the safetensors serializer takes as a tensor.
pub(crate) struct Owned {
    pub dtype: safetensors::Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl safetensors::View for Owned {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// A read-only memory map of a file. Other processes must not truncate it while it is
/// mapped; model folders are treated as immutable inputs, as every safetensors reader does.
pub(crate) fn mmap(path: &Path) -> Result<memmap2::Mmap> {
    let file = File::open(path).map_err(io_err(path))?;
    // SAFETY: read-only map of a file opened for reading; see the note above on truncation.
    unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(path))
}
