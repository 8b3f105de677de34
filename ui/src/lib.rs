//! 440hz desktop UI: the Gym Builder (canvas, properties, code view, play-test, versions,
//! templates). View state only: validation, compilation, play sessions and version history
//! run in Rust behind the shell's commands (`hz-studio`), reached through [`ipc`].

pub mod api;
mod app;
pub mod gymdoc;
pub mod ipc;
mod monaco;
mod panels;

pub use app::App;

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    leptos::mount::mount_to_body(App);
}
