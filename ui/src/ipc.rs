//! Calls into the Tauri shell. `withGlobalTauri` is off, so `invoke` is bound here through
//! wasm-bindgen to the IPC entry point Tauri injects into its own webview.

use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_namespace = ["window", "__TAURI_INTERNALS__"], js_name = invoke)]
    async fn tauri_invoke(cmd: &str, args: JsValue) -> Result<JsValue, JsValue>;
}

#[wasm_bindgen]
extern "C" {
    /// Registers a callback with the IPC layer and returns its id (how Tauri's own event API
    /// hands a listener to `plugin:event|listen`).
    #[wasm_bindgen(catch, js_namespace = ["window", "__TAURI_INTERNALS__"], js_name = transformCallback)]
    fn transform_callback(cb: &Closure<dyn FnMut(JsValue)>, once: bool) -> Result<u32, JsValue>;
}

/// Listen for an app event from the shell (menu clicks); `cb` gets the event's payload.
pub async fn listen(event: &str, mut cb: impl FnMut(serde_json::Value) + 'static) -> Result<(), String> {
    if !in_tauri() {
        return Err("not running inside the 440hz app (no Tauri IPC)".to_string());
    }
    let closure = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
        let text = js_sys::JSON::stringify(&e).ok().and_then(|s| s.as_string()).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        cb(v.get("payload").cloned().unwrap_or_default());
    });
    let id = transform_callback(&closure, false).map_err(error_text)?;
    // The listener lives as long as the page.
    closure.forget();
    invoke::<_, serde_json::Value>(
        "plugin:event|listen",
        &serde_json::json!({"event": event, "target": {"kind": "Any"}, "handler": id}),
    )
    .await
    .map(|_| ())
}

/// Whether the page runs inside the Tauri shell (a plain browser has no IPC).
pub fn in_tauri() -> bool {
    let Some(w) = web_sys::window() else { return false };
    js_sys::Reflect::get(&w, &JsValue::from_str("__TAURI_INTERNALS__")).map(|v| !v.is_undefined()).unwrap_or(false)
}

fn to_js<A: Serialize>(args: &A) -> Result<JsValue, String> {
    let text = serde_json::to_string(args).map_err(|e| e.to_string())?;
    js_sys::JSON::parse(&text).map_err(|e| format!("{e:?}"))
}

fn error_text(e: JsValue) -> String {
    e.as_string()
        .or_else(|| js_sys::JSON::stringify(&e).ok().and_then(|s| s.as_string()))
        .unwrap_or_else(|| "unknown error".to_string())
}

/// Invoke a command; the error is the shell's message.
pub async fn invoke<A: Serialize, R: DeserializeOwned>(cmd: &str, args: &A) -> Result<R, String> {
    if !in_tauri() {
        return Err("not running inside the 440hz app (no Tauri IPC)".to_string());
    }
    let out = tauri_invoke(cmd, to_js(args)?).await.map_err(error_text)?;
    let text = js_sys::JSON::stringify(&out).ok().and_then(|s| s.as_string()).unwrap_or_else(|| "null".to_string());
    serde_json::from_str(&text).map_err(|e| format!("{cmd}: unexpected answer: {e}"))
}
