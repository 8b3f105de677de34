//! The Monaco code view, bound through wasm-bindgen to the small `hzMonaco` API that
//! `monaco-boot.js` defines over the bundled editor (and over a plain text area when Monaco
//! is not there, as in component tests).

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_namespace = hzMonaco, js_name = create)]
    fn create_js(
        id: &str,
        el: &web_sys::HtmlElement,
        value: &str,
        language: &str,
        read_only: bool,
    ) -> Result<(), JsValue>;
    #[wasm_bindgen(catch, js_namespace = hzMonaco, js_name = setValue)]
    fn set_value_js(id: &str, value: &str) -> Result<(), JsValue>;
    #[wasm_bindgen(catch, js_namespace = hzMonaco, js_name = onChange)]
    fn on_change_js(id: &str, cb: &Closure<dyn FnMut(String)>) -> Result<(), JsValue>;
    #[wasm_bindgen(catch, js_namespace = hzMonaco, js_name = setMarkers)]
    fn set_markers_js(id: &str, markers: &str) -> Result<(), JsValue>;
    #[wasm_bindgen(catch, js_namespace = hzMonaco, js_name = layout)]
    fn layout_js(id: &str) -> Result<(), JsValue>;
}

pub fn create(id: &str, el: &web_sys::HtmlElement, value: &str, language: &str, read_only: bool) {
    if let Err(e) = create_js(id, el, value, language, read_only) {
        web_sys::console::warn_2(&"code view unavailable:".into(), &e);
    }
}

/// Replace the text without firing the change callback.
pub fn set_value(id: &str, value: &str) {
    let _ = set_value_js(id, value);
}

pub fn on_change(id: &str, cb: impl FnMut(String) + 'static) {
    let closure = Closure::<dyn FnMut(String)>::new(cb);
    let _ = on_change_js(id, &closure);
    // The editor lives as long as the page.
    closure.forget();
}

/// A marker: 1-based line and column, message, error or warning.
pub struct Marker {
    pub line: u32,
    pub column: u32,
    pub message: String,
    pub error: bool,
}

pub fn set_markers(id: &str, markers: &[Marker]) {
    let list: Vec<serde_json::Value> = markers
        .iter()
        .map(|m| {
            serde_json::json!({
                "startLineNumber": m.line, "startColumn": m.column,
                "endLineNumber": m.line, "endColumn": m.column + 200,
                "message": m.message, "severity": if m.error { 8 } else { 4 },
            })
        })
        .collect();
    let _ = set_markers_js(id, &serde_json::Value::Array(list).to_string());
}

pub fn layout(id: &str) {
    let _ = layout_js(id);
}
