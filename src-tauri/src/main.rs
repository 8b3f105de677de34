//! The 440hz desktop app: a Tauri 2 shell around the Leptos UI (`ui/`, compiled to wasm).
//!
//! This crate only wires things together: it opens one [`hz_studio::Studio`] at startup,
//! exposes it to the webview as commands of a few lines each ([`commands`]), builds the
//! native menu ([`menu`]) and installs the single-instance and window-state plugins. It must
//! not hold domain logic: everything a command does is a call into a library crate, so that
//! tests reach it without a window.
//!
//! Security choices: `withGlobalTauri` off, a strict CSP (no `unsafe-eval`, no wildcards),
//! one permission per command granted to the main window only (`capabilities/default.json`),
//! and every input checked here before it reaches the studio.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

#[cfg(test)]
mod command_names;
mod commands;
mod menu;
mod rendering;

use hz_studio::Studio;
use std::path::PathBuf;
use std::sync::Arc;
use tauri::Manager;

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HZ_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    rendering::configure();

    let context = tauri::generate_context!("../tauri.conf.json");
    let single_instance = tauri_plugin_single_instance::Builder::new()
        .dbus_id(dbus_id(&context.config().identifier))
        .callback(|app, _args, _cwd| {
            if let Some(window) = app.get_webview_window("main") {
                let _ = window.unminimize();
                let _ = window.show();
                let _ = window.set_focus();
            }
        })
        .build();
    let result = tauri::Builder::default()
        // First, so a second launch only focuses the running window.
        .plugin(single_instance)
        .plugin(tauri_plugin_window_state::Builder::default().build())
        // Native Open / Save dialogs, used from Rust commands only (no JavaScript API granted).
        .plugin(tauri_plugin_dialog::init())
        .menu(menu::build)
        .on_menu_event(menu::on_event)
        .setup(|app| {
            let studio = open_studio(app.handle())?;
            app.manage(Arc::new(studio));
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            commands::catalog,
            commands::templates,
            commands::open_template,
            commands::new_gym,
            commands::open_gym,
            commands::analyze,
            commands::save_gym,
            commands::play_reset,
            commands::play_step,
            commands::commit,
            commands::log,
            commands::diff,
            commands::checkout,
            commands::pick_open_path,
            commands::pick_save_path,
        ])
        .run(context);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("440hz stopped: {e}");
            eprintln!("440hz: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The app identifier as a D-Bus name (used by the single-instance plugin on Linux): an
/// element may not start with a digit (`dev.440hz.app` → `dev._440hz.app`) nor hold `-`.
fn dbus_id(identifier: &str) -> String {
    identifier
        .split('.')
        .map(|e| {
            let e = e.replace('-', "_");
            if e.starts_with(|c: char| c.is_ascii_digit()) {
                format!("_{e}")
            } else {
                e
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The studio over the user's data directory (`$HZ_DATA_DIR`, else `~/.local/share/440hz`,
/// the same rule as the `hz` command) and the templates folder.
fn open_studio(app: &tauri::AppHandle) -> Result<Studio, Box<dyn std::error::Error>> {
    let data_dir = hz_studio::versions::data_dir()?;
    let templates = templates_dir(app);
    if templates.is_none() {
        tracing::warn!("no gym templates found; set HZ_TEMPLATES_DIR to a folder like gym-templates/");
    }
    Ok(Studio::open(&data_dir, templates)?)
}

/// `$HZ_TEMPLATES_DIR`, else the bundled `gym-templates` resource, else (debug builds) the
/// repository's `gym-templates/`.
fn templates_dir(app: &tauri::AppHandle) -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("HZ_TEMPLATES_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = app.path().resource_dir().ok().map(|r| r.join("gym-templates")).filter(|d| d.is_dir()) {
        return Some(d);
    }
    if cfg!(debug_assertions) {
        let repo = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../gym-templates"));
        if repo.is_dir() {
            return Some(repo);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn read_json(rel: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn the_main_window_gets_one_permission_per_command_and_nothing_else() {
        let cap = read_json("capabilities/default.json");
        assert_eq!(cap["windows"], serde_json::json!(["main"]));
        let granted: BTreeSet<String> =
            cap["permissions"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
        let mut expected: BTreeSet<String> =
            crate::command_names::COMMANDS.iter().map(|c| format!("allow-{}", c.replace('_', "-"))).collect();
        expected.insert("core:event:allow-listen".into());
        expected.insert("core:event:allow-unlisten".into());
        assert_eq!(granted, expected);
    }

    #[test]
    fn the_identifier_becomes_a_valid_dbus_name() {
        assert_eq!(crate::dbus_id("dev.440hz.app"), "dev._440hz.app");
        assert_eq!(crate::dbus_id("com.my-co.app"), "com.my_co.app");
    }

    #[test]
    fn the_config_keeps_the_security_choices() {
        let conf = read_json("../tauri.conf.json");
        assert_eq!(conf["identifier"], "dev.440hz.app");
        assert_eq!(conf["app"]["withGlobalTauri"], false);
        assert_eq!(conf["build"]["frontendDist"], "ui/dist");
        assert!(conf["build"].get("devUrl").is_none());
        let csp = conf["app"]["security"]["csp"].as_str().unwrap();
        assert!(!csp.contains("'unsafe-eval'"), "no eval: {csp}");
        assert!(!csp.contains('*'), "no wildcards: {csp}");
        // The UI fetches its own wasm (connect-src 'self'), Monaco runs workers from blob URLs
        // and sets inline styles, and IPC goes through the ipc: scheme.
        for directive in [
            "default-src 'self'",
            "script-src 'self' 'wasm-unsafe-eval'",
            "style-src 'self' 'unsafe-inline'",
            "worker-src 'self' blob:",
            "connect-src 'self' ipc: http://ipc.localhost",
        ] {
            assert!(csp.contains(directive), "{directive}: {csp}");
        }
        // Tauri would add nonces to style-src, which turns 'unsafe-inline' off.
        assert_eq!(conf["app"]["security"]["dangerousDisableAssetCspModification"], serde_json::json!(["style-src"]));
        let windows = conf["app"]["windows"].as_array().unwrap();
        assert_eq!((windows[0]["label"].as_str(), windows[0]["title"].as_str()), (Some("main"), Some("440hz")));
        for icon in conf["bundle"]["icon"].as_array().unwrap() {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(icon.as_str().unwrap());
            assert!(path.is_file(), "{}", path.display());
        }
    }
}
