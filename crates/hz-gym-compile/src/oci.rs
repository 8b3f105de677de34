//! The container face of a gym: an OCI image layout written straight to a folder, no
//! container engine involved.
//!
//! The image has two layers:
//!
//! 1. the `hz` gym server at `/usr/local/bin/hz`, plus the shared libraries and dynamic
//!    loader it links against (found with `ldd`), at the paths the loader looks for them,
//!    so the root filesystem runs on its own;
//! 2. the gym at `/gym/<name>.gym.json`: the spec with every fixture inlined, one
//!    self-contained file, as canonical JSON.
//!
//! The config's entrypoint is `hz gym serve /gym/<name>.gym.json --host 0.0.0.0 --port 8080`.
//!
//! Everything is deterministic, so the same gym and the same `hz` binary give the same
//! digests: tar entries sorted by path with mtime 0, uid/gid 0, fixed modes and no
//! user/group names; gzip with mtime 0, OS byte 255 and a fixed level; config, manifest and
//! index as RFC 8785 canonical JSON; the creation time is the Unix epoch.

use flate2::{Compression, GzBuilder};
use hz_gym::GymBundle;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// Where the server lives in the image.
pub const HZ_IMAGE_PATH: &str = "/usr/local/bin/hz";
/// The port the entrypoint listens on.
pub const PORT: u16 = 8080;
/// The gzip level of every layer: fixed, because the compressed bytes are part of the digest.
const GZIP_LEVEL: u32 = 6;
/// The creation time written into the config and the labels.
const EPOCH: &str = "1970-01-01T00:00:00Z";

const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("gym name {0:?} is not usable in an image (expected [a-z0-9-]+)")]
    BadName(String),
    #[error("gym bundle cannot be serialised: {0}")]
    Gym(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot list the shared libraries of {binary} with `ldd` (apt package libc-bin): {reason}")]
    Ldd { binary: String, reason: String },
    #[error("{binary} needs {library}, which the loader cannot find")]
    MissingLibrary { binary: String, library: String },
    #[error("image path {0:?} must be absolute and must not contain `..`")]
    BadImagePath(String),
    #[error("{0} exists and is neither empty nor an OCI image layout; refusing to write into it")]
    OutNotEmpty(String),
    #[error("JSON cannot be canonicalised: {0}")]
    Json(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OciError + '_ {
    move |source| OciError::Io { path: path.display().to_string(), source }
}

/// A blob in the layout: `sha256:<hex>` and its size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
}

/// What [`oci_layout`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciImage {
    /// `<name>-v<version>`: the `org.opencontainers.image.ref.name` in `index.json`, so
    /// `oci:DIR:<ref_name>` (skopeo) and `DIR:<ref_name>` (umoci) name the image.
    pub ref_name: String,
    pub manifest: Blob,
    pub config: Blob,
    /// Compressed layers, bottom first: the server, then the gym.
    pub layers: Vec<Blob>,
    /// SHA-256 of each uncompressed layer tar (`rootfs.diff_ids`), in layer order.
    pub diff_ids: Vec<String>,
    /// Where the gym file lives in the image.
    pub gym_path: String,
}

/// A host file to put into the image at `image_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsFile {
    pub image_path: String,
    pub source: PathBuf,
}

/// The server binary and the files it needs at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HzRuntime {
    pub binary: PathBuf,
    /// Shared libraries and the dynamic loader, at the paths the binary asks for them.
    pub libraries: Vec<RootfsFile>,
}

impl HzRuntime {
    /// The binary and its shared libraries as `ldd` resolves them on this machine. A static
    /// binary needs none.
    pub fn discover(binary: &Path) -> Result<Self, OciError> {
        let shown = binary.display().to_string();
        let out = Command::new("ldd")
            .arg(binary)
            .output()
            .map_err(|e| OciError::Ldd { binary: shown.clone(), reason: e.to_string() })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let text = format!("{stdout}\n{stderr}");
        if text.contains("not a dynamic executable") || text.contains("statically linked") {
            return Ok(Self { binary: binary.to_path_buf(), libraries: Vec::new() });
        }
        if !out.status.success() {
            return Err(OciError::Ldd { binary: shown, reason: format!("{}: {}", out.status, stderr.trim()) });
        }
        let libraries = parse_ldd(&stdout)
            .map_err(|library| OciError::MissingLibrary { binary: shown.clone(), library })?
            .into_iter()
            .map(|p| RootfsFile { image_path: p.clone(), source: PathBuf::from(p) })
            .collect();
        Ok(Self { binary: binary.to_path_buf(), libraries })
    }

    /// Only the binary, no libraries: for a statically linked `hz`.
    pub fn standalone(binary: &Path) -> Self {
        Self { binary: binary.to_path_buf(), libraries: Vec::new() }
    }
}

/// The absolute library paths in `ldd` output, sorted and deduplicated; `Err(name)` for a
/// library the loader cannot find. The vDSO (no path) is skipped.
pub fn parse_ldd(text: &str) -> Result<Vec<String>, String> {
    let mut paths = std::collections::BTreeSet::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let target = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    return Err(name.trim().to_string());
                }
                rest
            }
            None => line,
        };
        let path = target.split_whitespace().next().unwrap_or("");
        if path.starts_with('/') {
            paths.insert(path.to_string());
        }
    }
    Ok(paths.into_iter().collect())
}

/// Write the gym and the `hz` server at `hz_binary` (with the shared libraries `ldd` finds
/// for it) as an OCI image layout in `out`.
pub fn oci_layout(bundle: &GymBundle, hz_binary: &Path, out: &Path) -> Result<OciImage, OciError> {
    oci_layout_with(bundle, &HzRuntime::discover(hz_binary)?, out)
}

/// [`oci_layout`] with the runtime files given.
pub fn oci_layout_with(bundle: &GymBundle, runtime: &HzRuntime, out: &Path) -> Result<OciImage, OciError> {
    let name = bundle.spec.name.as_str();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(OciError::BadName(name.to_string()));
    }
    let version = bundle.spec.version;
    let ref_name = format!("{name}-v{version}");
    let gym_id = bundle.id().map_err(|e| OciError::Gym(e.to_string()))?.to_hex();
    let gym_path = format!("/gym/{name}.gym.json");
    let gym_text = self_contained_gym(bundle)?;

    // Layer 1: the server and what it links against.
    let mut server = Tree::default();
    server.file(HZ_IMAGE_PATH, Source::Path(runtime.binary.clone()), 0o755)?;
    for lib in &runtime.libraries {
        server.file(&lib.image_path, Source::Path(lib.source.clone()), 0o755)?;
    }
    server.dir("/tmp", 0o1777)?;
    // Layer 2: the gym.
    let mut gym = Tree::default();
    gym.file(&gym_path, Source::Bytes(gym_text.into_bytes()), 0o644)?;

    // Everything is checked; now write. `index.json` comes last, so a layout cut short has
    // none and is not mistaken for a whole one.
    prepare_out(out)?;
    write_file(&out.join("oci-layout"), canonical(&json!({ "imageLayoutVersion": "1.0.0" }))?.as_bytes())?;
    let blobs = out.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;

    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for tree in [&server, &gym] {
        let (layer, diff_id) = write_layer(tree, &blobs)?;
        layers.push(layer);
        diff_ids.push(diff_id);
    }

    let mut labels = BTreeMap::new();
    labels.insert("org.opencontainers.image.title", bundle.spec.name.clone());
    labels.insert("org.opencontainers.image.version", version.to_string());
    labels.insert("org.opencontainers.image.created", EPOCH.to_string());
    if !bundle.spec.description.is_empty() {
        labels.insert("org.opencontainers.image.description", bundle.spec.description.clone());
    } else if !bundle.spec.title.is_empty() {
        labels.insert("org.opencontainers.image.description", bundle.spec.title.clone());
    }
    labels.insert("dev.440hz.gym.id", gym_id.clone());
    labels.insert("dev.440hz.gym.name", bundle.spec.name.clone());
    labels.insert("dev.440hz.gym.version", version.to_string());
    labels.insert("dev.440hz.gym.path", gym_path.clone());

    let port = PORT.to_string();
    let config = json!({
        "created": EPOCH,
        "architecture": oci_arch(),
        "os": "linux",
        "config": {
            "Entrypoint": [HZ_IMAGE_PATH, "gym", "serve", gym_path, "--host", "0.0.0.0", "--port", port],
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "WorkingDir": "/",
            "ExposedPorts": { format!("{PORT}/tcp"): {} },
            "Labels": labels,
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": [
            { "created": EPOCH, "created_by": "hz gym compile: hz gym server" },
            { "created": EPOCH, "created_by": format!("hz gym compile: gym {ref_name} ({gym_id})") },
        ],
    });
    let config_blob = write_json_blob(&config, &blobs)?;

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": descriptor(MEDIA_CONFIG, &config_blob),
        "layers": layers.iter().map(|l| descriptor(MEDIA_LAYER, l)).collect::<Vec<_>>(),
        "annotations": {
            "org.opencontainers.image.title": bundle.spec.name,
            "org.opencontainers.image.version": version.to_string(),
            "org.opencontainers.image.created": EPOCH,
            "dev.440hz.gym.id": gym_id,
        },
    });
    let manifest_blob = write_json_blob(&manifest, &blobs)?;

    let mut manifest_desc = descriptor(MEDIA_MANIFEST, &manifest_blob);
    manifest_desc["annotations"] = json!({ "org.opencontainers.image.ref.name": ref_name });
    manifest_desc["platform"] = json!({ "architecture": oci_arch(), "os": "linux" });
    let index = json!({ "schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [manifest_desc] });
    write_file(&out.join("index.json"), canonical(&index)?.as_bytes())?;

    Ok(OciImage { ref_name, manifest: manifest_blob, config: config_blob, layers, diff_ids, gym_path })
}

/// The spec with every fixture's content inlined (and no `path`), as canonical JSON: loads
/// on its own and has the same gym id as the bundle.
pub fn self_contained_gym(bundle: &GymBundle) -> Result<String, OciError> {
    let mut spec = serde_json::to_value(&bundle.spec).map_err(|e| OciError::Gym(e.to_string()))?;
    if let Some(fixtures) = spec.get_mut("fixtures").and_then(Value::as_object_mut) {
        for (name, fx) in fixtures.iter_mut() {
            let (Some(obj), Some(content)) = (fx.as_object_mut(), bundle.fixtures.get(name)) else {
                return Err(OciError::Gym(format!("fixture {name} has no resolved content")));
            };
            obj.remove("path");
            obj.insert("inline".into(), content.clone());
        }
    }
    canonical(&spec)
}

fn canonical(value: &Value) -> Result<String, OciError> {
    hz_core::canonical_json(value).map_err(|e| OciError::Json(e.to_string()))
}

fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn descriptor(media_type: &str, blob: &Blob) -> Value {
    json!({ "mediaType": media_type, "digest": blob.digest, "size": blob.size })
}

/// Make `out` ready: create it, or clear the layout written there before. Any other
/// non-empty folder is refused.
fn prepare_out(out: &Path) -> Result<(), OciError> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(io_err(out))?;
        let empty = entries.next().is_none();
        if !empty {
            if !out.join("oci-layout").is_file() {
                return Err(OciError::OutNotEmpty(out.display().to_string()));
            }
            let index = out.join("index.json");
            if index.exists() {
                std::fs::remove_file(&index).map_err(io_err(&index))?;
            }
            let blobs = out.join("blobs");
            if blobs.exists() {
                std::fs::remove_dir_all(&blobs).map_err(io_err(&blobs))?;
            }
        }
    }
    std::fs::create_dir_all(out).map_err(io_err(out))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    std::fs::write(path, bytes).map_err(io_err(path))
}

fn write_json_blob(value: &Value, blobs: &Path) -> Result<Blob, OciError> {
    let text = canonical(value)?;
    let hex = hex::encode(Sha256::digest(text.as_bytes()));
    write_file(&blobs.join(&hex), text.as_bytes())?;
    Ok(Blob { digest: format!("sha256:{hex}"), size: text.len() as u64 })
}

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
enum Source {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
enum Entry {
    Dir { mode: u32 },
    File { source: Source, mode: u32 },
}

/// A layer's contents, keyed by relative path: iteration order is tar order, so parents come
/// before children (`a` < `a/b` < `a0`).
#[derive(Debug, Default)]
struct Tree(BTreeMap<String, Entry>);

impl Tree {
    fn file(&mut self, image_path: &str, source: Source, mode: u32) -> Result<(), OciError> {
        let rel = relative(image_path)?;
        self.parents(&rel);
        self.0.insert(rel, Entry::File { source, mode });
        Ok(())
    }

    fn dir(&mut self, image_path: &str, mode: u32) -> Result<(), OciError> {
        let rel = relative(image_path)?;
        self.parents(&rel);
        self.0.insert(rel, Entry::Dir { mode });
        Ok(())
    }

    fn parents(&mut self, rel: &str) {
        let mut at = 0;
        while let Some(i) = rel[at..].find('/') {
            let parent = &rel[..at + i];
            self.0.entry(parent.to_string()).or_insert(Entry::Dir { mode: 0o755 });
            at += i + 1;
        }
    }
}

/// `/a/b` → `a/b`, refusing relative paths and `..`.
fn relative(image_path: &str) -> Result<String, OciError> {
    let path = Path::new(image_path);
    let bad = || OciError::BadImagePath(image_path.to_string());
    if !path.is_absolute() {
        return Err(bad());
    }
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(bad)?),
            Component::ParentDir | Component::Prefix(_) => return Err(bad()),
        }
    }
    if parts.is_empty() {
        return Err(bad());
    }
    Ok(parts.join("/"))
}

/// A writer that hashes and counts what passes through it.
struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), count: 0 }
    }

    fn finish(self) -> (W, Blob) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, Blob { digest, size: self.count })
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Stream `tree` as a gzip-compressed tar into `blobs`; returns the compressed blob and the
/// digest of the uncompressed tar (the diff id).
fn write_layer(tree: &Tree, blobs: &Path) -> Result<(Blob, String), OciError> {
    let tmp = blobs.join(".layer.tmp");
    let file = File::create(&tmp).map_err(io_err(&tmp))?;
    let compressed = HashWriter::new(io::BufWriter::new(file));
    let gz = GzBuilder::new().mtime(0).operating_system(255).write(compressed, Compression::new(GZIP_LEVEL));
    let mut builder = tar::Builder::new(HashWriter::new(gz));
    for (rel, entry) in &tree.0 {
        append(&mut builder, rel, entry)?;
    }
    let uncompressed = builder.into_inner().map_err(io_err(&tmp))?;
    let (gz, diff) = uncompressed.finish();
    let compressed = gz.finish().map_err(io_err(&tmp))?;
    let (file, blob) = compressed.finish();
    let file =
        file.into_inner().map_err(|e| OciError::Io { path: tmp.display().to_string(), source: e.into_error() })?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    let hex = blob.digest.trim_start_matches("sha256:");
    let dest = blobs.join(hex);
    std::fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
    Ok((blob, diff.digest))
}

fn append<W: Write>(builder: &mut tar::Builder<W>, rel: &str, entry: &Entry) -> Result<(), OciError> {
    let mut header = tar::Header::new_ustar();
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    let at = Path::new(rel);
    match entry {
        Entry::Dir { mode } => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(*mode);
            header.set_size(0);
            builder.append_data(&mut header, format!("{rel}/"), io::empty()).map_err(io_err(at))
        }
        Entry::File { source, mode } => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(*mode);
            match source {
                Source::Bytes(bytes) => {
                    header.set_size(bytes.len() as u64);
                    builder.append_data(&mut header, rel, bytes.as_slice()).map_err(io_err(at))
                }
                Source::Path(path) => {
                    // Follow symlinks: the image gets the file's bytes at the asked-for path.
                    let file = File::open(path).map_err(io_err(path))?;
                    let len = file.metadata().map_err(io_err(path))?.len();
                    header.set_size(len);
                    builder.append_data(&mut header, rel, io::Read::take(file, len)).map_err(io_err(path))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(fixture: &str) -> GymBundle {
        GymBundle::from_value(
            json!({
                "spec_version": 1, "name": "tiny", "version": 3, "title": "Tiny", "max_steps": 2,
                "description": "a tiny gym",
                "tasks": [{"id": "a", "q": 1}],
                "fixtures": {"doc": {"kind": "text", "inline": fixture}},
                "nodes": [], "edges": []
            }),
            None,
        )
        .unwrap()
    }

    fn fake_runtime(dir: &Path) -> HzRuntime {
        let bin = dir.join("hz");
        std::fs::write(&bin, b"#!/bin/sh\necho fake hz\n").unwrap();
        let lib = dir.join("libfake.so.1");
        std::fs::write(&lib, b"not really a library").unwrap();
        HzRuntime {
            binary: bin,
            libraries: vec![RootfsFile { image_path: "/lib/x86_64-linux-gnu/libfake.so.1".into(), source: lib }],
        }
    }

    fn all_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.insert(p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap());
                }
            }
        }
        out
    }

    fn blob_path(out: &Path, blob: &Blob) -> PathBuf {
        out.join("blobs/sha256").join(blob.digest.trim_start_matches("sha256:"))
    }

    /// (path, mode, uid, gid, mtime, username) of every entry of a gzipped tar layer.
    fn layer_entries(out: &Path, blob: &Blob) -> Vec<(String, u32, u64, u64, u64, Option<String>)> {
        let bytes = std::fs::read(blob_path(out, blob)).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                    h.username().unwrap().map(str::to_string),
                )
            })
            .collect()
    }

    #[test]
    fn same_input_gives_identical_bytes_and_digests() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = fake_runtime(tmp.path());
        let a = oci_layout_with(&bundle("hello"), &rt, &tmp.path().join("a")).unwrap();
        let b = oci_layout_with(&bundle("hello"), &rt, &tmp.path().join("b")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.ref_name, "tiny-v3");
        assert_eq!(a.layers.len(), 2);
        let (fa, fb) = (all_files(&tmp.path().join("a")), all_files(&tmp.path().join("b")));
        assert_eq!(fa, fb);
        // Rewriting into an existing layout replaces it and leaves no stale blobs.
        let again = oci_layout_with(&bundle("hello"), &rt, &tmp.path().join("a")).unwrap();
        assert_eq!(again, a);
        assert_eq!(all_files(&tmp.path().join("a")), fa);
        // Every blob is named by its digest and has the recorded size.
        for blob in a.layers.iter().chain([&a.config, &a.manifest]) {
            let bytes = std::fs::read(blob_path(&tmp.path().join("a"), blob)).unwrap();
            assert_eq!(format!("sha256:{}", hex::encode(Sha256::digest(&bytes))), blob.digest);
            assert_eq!(bytes.len() as u64, blob.size);
        }
    }

    #[test]
    fn a_changed_fixture_changes_the_gym_layer_and_the_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = fake_runtime(tmp.path());
        let a = oci_layout_with(&bundle("hello"), &rt, &tmp.path().join("a")).unwrap();
        let b = oci_layout_with(&bundle("hello!"), &rt, &tmp.path().join("b")).unwrap();
        assert_eq!(a.layers[0], b.layers[0], "the server layer does not depend on the gym");
        assert_ne!(a.layers[1], b.layers[1]);
        assert_ne!(a.diff_ids[1], b.diff_ids[1]);
        assert_ne!(a.config, b.config);
        assert_ne!(a.manifest, b.manifest);
    }

    #[test]
    fn layers_hold_the_expected_paths_with_fixed_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("img");
        let img = oci_layout_with(&bundle("hello"), &fake_runtime(tmp.path()), &out).unwrap();
        let server = layer_entries(&out, &img.layers[0]);
        let paths: Vec<&str> = server.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "lib/",
                "lib/x86_64-linux-gnu/",
                "lib/x86_64-linux-gnu/libfake.so.1",
                "tmp/",
                "usr/",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/hz"
            ]
        );
        let gym = layer_entries(&out, &img.layers[1]);
        let paths: Vec<&str> = gym.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(paths, ["gym/", "gym/tiny.gym.json"]);
        for (path, mode, uid, gid, mtime, user) in server.iter().chain(&gym) {
            assert_eq!((*uid, *gid, *mtime), (0, 0, 0), "{path}");
            assert_eq!(user.as_deref().unwrap_or(""), "", "{path}");
            let want = match path.as_str() {
                "tmp/" => 0o1777,
                "gym/tiny.gym.json" => 0o644,
                _ => 0o755,
            };
            assert_eq!(*mode, want, "{path}");
        }
        // The gzip header carries no time and no name.
        let gz = std::fs::read(blob_path(&out, &img.layers[0])).unwrap();
        assert_eq!(&gz[4..8], &[0, 0, 0, 0]);
        assert_eq!(gz[3] & 0x08, 0, "no FNAME");
    }

    #[test]
    fn the_gym_file_is_self_contained_and_keeps_the_id() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("doc.txt"), "from a file").unwrap();
        let mut v = json!({
            "spec_version": 1, "name": "tiny", "max_steps": 2, "tasks": [{"id": "a"}],
            "fixtures": {"doc": {"kind": "text", "path": "doc.txt"}}, "nodes": [], "edges": []
        });
        let from_file = GymBundle::from_value(v.clone(), Some(dir.path())).unwrap();
        let text = self_contained_gym(&from_file).unwrap();
        assert!(!text.contains("doc.txt"), "{text}");
        let reloaded = GymBundle::from_json_str(&text, None).unwrap();
        assert_eq!(reloaded.id().unwrap(), from_file.id().unwrap());
        v["fixtures"]["doc"] = json!({"kind": "text", "inline": "from a file"});
        assert_eq!(text, self_contained_gym(&GymBundle::from_value(v, None).unwrap()).unwrap());
    }

    #[test]
    fn config_manifest_and_index_say_what_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("img");
        let b = bundle("hello");
        let img = oci_layout_with(&b, &fake_runtime(tmp.path()), &out).unwrap();
        let read = |p: PathBuf| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
        let config = read(blob_path(&out, &img.config));
        assert_eq!(
            config["config"]["Entrypoint"],
            json!(["/usr/local/bin/hz", "gym", "serve", "/gym/tiny.gym.json", "--host", "0.0.0.0", "--port", "8080"])
        );
        assert_eq!(config["config"]["ExposedPorts"], json!({"8080/tcp": {}}));
        assert_eq!(config["config"]["Labels"]["dev.440hz.gym.id"], json!(b.id().unwrap().to_hex()));
        assert_eq!(config["config"]["Labels"]["org.opencontainers.image.version"], json!("3"));
        assert_eq!(config["created"], json!(EPOCH));
        assert_eq!(config["rootfs"]["diff_ids"], json!(img.diff_ids));
        let manifest = read(blob_path(&out, &img.manifest));
        assert_eq!(manifest["config"]["digest"], json!(img.config.digest));
        assert_eq!(manifest["layers"][1]["digest"], json!(img.layers[1].digest));
        let index = read(out.join("index.json"));
        assert_eq!(index["manifests"][0]["digest"], json!(img.manifest.digest));
        assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], json!("tiny-v3"));
        assert_eq!(read(out.join("oci-layout")), json!({"imageLayoutVersion": "1.0.0"}));
        // Canonical JSON: what is on disk is exactly the RFC 8785 text.
        let raw = std::fs::read_to_string(out.join("index.json")).unwrap();
        assert_eq!(raw, hz_core::canonical_json(&index).unwrap());
    }

    #[test]
    fn refuses_bad_names_paths_and_foreign_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = fake_runtime(tmp.path());
        let mut b = bundle("x");
        b.spec.name = "../evil".into();
        assert!(matches!(oci_layout_with(&b, &rt, &tmp.path().join("o")), Err(OciError::BadName(_))));
        let foreign = tmp.path().join("foreign");
        std::fs::create_dir_all(&foreign).unwrap();
        std::fs::write(foreign.join("precious.txt"), "keep me").unwrap();
        let err = oci_layout_with(&bundle("x"), &rt, &foreign).unwrap_err();
        assert!(matches!(err, OciError::OutNotEmpty(_)), "{err}");
        assert!(foreign.join("precious.txt").exists());
        for bad in ["relative/lib.so", "/lib/../etc/x", "/"] {
            let mut rt = rt.clone();
            rt.libraries[0].image_path = bad.into();
            let err = oci_layout_with(&bundle("x"), &rt, &tmp.path().join("p")).unwrap_err();
            assert!(matches!(err, OciError::BadImagePath(_)), "{bad}: {err}");
        }
    }

    /// The layer format is pinned: tar and gzip bytes for a fixed tree never change unless
    /// on purpose (a new flate2 backend or level, a tar header change). If this fails, every
    /// published image digest changes with it.
    #[test]
    fn layer_bytes_are_pinned() {
        let tmp = tempfile::tempdir().unwrap();
        let mut tree = Tree::default();
        tree.file("/gym/pinned.gym.json", Source::Bytes(b"{\"name\":\"pinned\"}".to_vec()), 0o644).unwrap();
        tree.dir("/tmp", 0o1777).unwrap();
        let (blob, diff_id) = write_layer(&tree, tmp.path()).unwrap();
        assert_eq!(
            (blob.digest.as_str(), blob.size, diff_id.as_str()),
            (
                "sha256:047cd85c3ad053a7d456bff6623a6d835b5d21b3d6509bee50389ab620c00420",
                148,
                "sha256:38080b01f4dadfe754991371936b42f5c20cd94a8290ddc691cc1319f8f028d4"
            ),
        );
    }

    #[test]
    fn ldd_output_is_parsed() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f47)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f47)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f47)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libgcc_s.so.1", "/lib64/ld-linux-x86-64.so.2"]
        );
        assert_eq!(parse_ldd("\tlibnope.so.3 => not found\n").unwrap_err(), "libnope.so.3");
    }

    #[test]
    fn discover_finds_the_loader_of_a_dynamic_binary() {
        // The shell is on every machine; on a glibc system it is dynamically linked, and the
        // loader is among what it needs. (`ldd` itself is a script.)
        let rt = HzRuntime::discover(Path::new("/bin/sh")).unwrap();
        assert_eq!(rt.binary, Path::new("/bin/sh"));
        assert!(rt.libraries.is_empty() || rt.libraries.iter().any(|l| l.image_path.contains("ld-")), "{rt:?}");
        assert!(rt.libraries.iter().all(|l| l.image_path.starts_with('/') && l.source.is_file()), "{rt:?}");
    }
}
