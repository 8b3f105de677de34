//! The native menu. Clicks on app items are sent to the webview as the event `menu` with
//! the item id as payload (`new_gym`, `open_template`, `save`, `commit`, `undo`, `redo`,
//! `fit_view`); the UI decides what they do. Quit closes the app. Cut, Copy, Paste and
//! Select all are the platform's own items and act on the focused text field or editor.
//!
//! Undo and Redo are app items (the graph's command log, not text undo) and carry no
//! accelerator, so Ctrl+Z keeps working natively in text fields and the code editor; the UI
//! binds the keys on the canvas itself.

use tauri::menu::{Menu, MenuEvent, MenuItemBuilder, SubmenuBuilder};
use tauri::{AppHandle, Emitter, Runtime};

/// Ids of the items that are forwarded to the webview.
pub const FORWARDED: &[&str] = &["new_gym", "open_template", "save", "commit", "undo", "redo", "fit_view"];

pub fn build<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<Menu<R>> {
    let item = |id: &str, text: &str, accelerator: Option<&str>| {
        let mut b = MenuItemBuilder::with_id(id, text);
        if let Some(a) = accelerator {
            b = b.accelerator(a);
        }
        b.build(app)
    };
    let file = SubmenuBuilder::new(app, "File")
        .item(&item("new_gym", "New gym", Some("CmdOrCtrl+N"))?)
        .item(&item("open_template", "Open template…", Some("CmdOrCtrl+O"))?)
        .separator()
        .item(&item("save", "Save", Some("CmdOrCtrl+S"))?)
        .item(&item("commit", "Commit…", None)?)
        .separator()
        .item(&item("quit", "Quit", Some("CmdOrCtrl+Q"))?)
        .build()?;
    let edit = SubmenuBuilder::new(app, "Edit")
        .item(&item("undo", "Undo", None)?)
        .item(&item("redo", "Redo", None)?)
        .separator()
        .cut()
        .copy()
        .paste()
        .select_all()
        .build()?;
    let view = SubmenuBuilder::new(app, "View").item(&item("fit_view", "Fit to view", Some("CmdOrCtrl+0"))?).build()?;
    Menu::with_items(app, &[&file, &edit, &view])
}

pub fn on_event<R: Runtime>(app: &AppHandle<R>, event: MenuEvent) {
    let id = event.id().0.as_str();
    if id == "quit" {
        app.exit(0);
    } else if FORWARDED.contains(&id) {
        if let Err(e) = app.emit_to("main", "menu", id) {
            tracing::warn!(item = id, error = %e, "cannot send the menu click to the window");
        }
    }
}
