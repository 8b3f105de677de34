//! Build script of the desktop shell.
//!
//! The Tauri configuration lives at the repository root (`tauri.conf.json`), next to `ui/`
//! and `icons/`, so paths in it are relative to the root. `tauri-build` is pointed at it
//! with `Attributes::config_path`; two things still resolve against this crate's folder
//! and are handled here:
//!
//! - `bundle > resources` are copied next to the binary relative to the build script's
//!   working directory (this crate), so their sources are re-rooted through the
//!   `TAURI_CONFIG` merge patch that `tauri-build` applies;
//! - `tauri::generate_context!` refuses a missing `frontendDist`, so when `ui/dist` does not
//!   exist yet (the UI is built separately) a placeholder page is written there. An existing
//!   folder is never touched.

use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

include!("src/command_names.rs");

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = crate_dir.parent().expect("src-tauri lives inside the repository").to_path_buf();
    let config_path = root.join("tauri.conf.json");
    let text =
        std::fs::read_to_string(&config_path).unwrap_or_else(|e| panic!("cannot read {}: {e}", config_path.display()));
    let config: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", config_path.display()));

    if let Some(dist) = config.pointer("/build/frontendDist").and_then(Value::as_str) {
        let dist = root.join(dist);
        placeholder_frontend(&dist);
        println!("cargo:rerun-if-changed={}", dist.display());
    }
    reroot_resources(&config, &root, &crate_dir);

    let attributes = tauri_build::Attributes::new()
        .config_path(&config_path)
        .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS));
    if let Err(e) = tauri_build::try_build(attributes) {
        panic!("tauri-build failed: {e:#}");
    }
}

/// Write `index.html` into `dist` when the folder does not exist (the UI is not built yet).
fn placeholder_frontend(dist: &Path) {
    if dist.exists() {
        return;
    }
    std::fs::create_dir_all(dist).unwrap_or_else(|e| panic!("cannot create {}: {e}", dist.display()));
    let page = "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>440hz</title></head>\n\
                <body><h1>440hz</h1><p>The user interface is not built yet: build <code>ui/</code> \
                (it writes <code>ui/dist</code>) and rebuild the desktop app.</p></body>\n</html>\n";
    std::fs::write(dist.join("index.html"), page)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", dist.join("index.html").display()));
}

/// Re-root `bundle > resources` (relative to the config file) onto this crate's folder,
/// where `tauri-build` resolves them, by merging a patch into `TAURI_CONFIG`.
fn reroot_resources(config: &Value, root: &Path, crate_dir: &Path) {
    let Some(resources) = config.pointer("/bundle/resources") else { return };
    let rel = pathdiff(root, crate_dir);
    let mut map = Map::new();
    match resources {
        Value::Object(o) => {
            for (src, dest) in o {
                map.insert(src.clone(), Value::Null);
                map.insert(format!("{rel}{src}"), dest.clone());
            }
        }
        Value::Array(a) => {
            for src in a.iter().filter_map(Value::as_str) {
                map.insert(format!("{rel}{src}"), Value::String(src.to_string()));
            }
        }
        _ => return,
    }
    let mut patch = match std::env::var("TAURI_CONFIG") {
        Ok(s) if !s.trim().is_empty() => serde_json::from_str(&s).expect("TAURI_CONFIG must be JSON"),
        _ => json!({}),
    };
    // A list cannot be patched key by key: replace it with the equivalent map.
    patch["bundle"]["resources"] = Value::Object(map);
    // Read by tauri-build in this same process.
    std::env::set_var("TAURI_CONFIG", patch.to_string());
}

/// `../` repeated for each level `crate_dir` sits below `root`.
fn pathdiff(root: &Path, crate_dir: &Path) -> String {
    let depth = crate_dir.strip_prefix(root).map(|p| p.components().count()).unwrap_or(1);
    "../".repeat(depth)
}
