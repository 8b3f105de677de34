/// The app commands the webview may invoke. `build.rs` generates one `allow-<command>`
/// permission for each (Tauri's app manifest), and `capabilities/default.json` grants
/// each of them to the main window; a test checks the three lists agree.
pub const COMMANDS: &[&str] = &[
    "catalog",
    "templates",
    "open_template",
    "new_gym",
    "open_gym",
    "analyze",
    "save_gym",
    "play_reset",
    "play_step",
    "commit",
    "log",
    "diff",
    "checkout",
    "pick_open_path",
    "pick_save_path",
];
