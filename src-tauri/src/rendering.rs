//! How the Linux webview paints when the machine has no GPU.
//!
//! WebKitGTK's compositing mode draws every layer into tiles and composites them per frame;
//! without a GPU it does both on the CPU. Measured on a 500-node graph under Xvfb (2 cores,
//! `bench-ui`): dragging a node or panning takes 30–50 ms a frame composited, and one
//! display frame (16–17 ms) painted directly, which is what WebKit does with compositing
//! off. So with no GPU render node, or with software GL forced, the app turns compositing
//! off. `HZ_WEBVIEW_COMPOSITING=on|off|auto` overrides the choice, and a
//! `WEBKIT_DISABLE_COMPOSITING_MODE` the user set is never touched.

use std::path::Path;

/// What the machine and the environment say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts<'a> {
    /// `HZ_WEBVIEW_COMPOSITING`, if set.
    pub setting: Option<&'a str>,
    /// `WEBKIT_DISABLE_COMPOSITING_MODE` is already set (by the user).
    pub webkit_var_set: bool,
    /// A DRM render node (`/dev/dri/renderD*`) exists.
    pub render_node: bool,
    /// `LIBGL_ALWAYS_SOFTWARE` asks for software GL.
    pub software_gl: bool,
}

/// The decision: turn WebKit's compositing mode off or leave WebKit's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Set `WEBKIT_DISABLE_COMPOSITING_MODE=1`; the reason, for the log.
    Disable(&'static str),
    /// Leave WebKit alone; the reason.
    Keep(&'static str),
}

pub fn decide(f: Facts) -> Result<Choice, String> {
    if f.webkit_var_set {
        return Ok(Choice::Keep("WEBKIT_DISABLE_COMPOSITING_MODE is set"));
    }
    match f.setting.map(str::trim) {
        Some("on") => Ok(Choice::Keep("HZ_WEBVIEW_COMPOSITING=on")),
        Some("off") => Ok(Choice::Disable("HZ_WEBVIEW_COMPOSITING=off")),
        None | Some("auto") | Some("") => Ok(if f.software_gl {
            Choice::Disable("software GL (LIBGL_ALWAYS_SOFTWARE)")
        } else if !f.render_node {
            Choice::Disable("no GPU render node in /dev/dri")
        } else {
            Choice::Keep("a GPU render node is present")
        }),
        Some(other) => Err(format!("HZ_WEBVIEW_COMPOSITING must be on, off or auto, not {other:?}")),
    }
}

fn has_render_node(dri: &Path) -> bool {
    std::fs::read_dir(dri)
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("renderD")))
        .unwrap_or(false)
}

/// Decide from this process's environment and apply. Call first thing in `main`, before any
/// thread exists (it may set an environment variable the web process inherits).
pub fn configure() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let setting = std::env::var("HZ_WEBVIEW_COMPOSITING").ok();
    let facts = Facts {
        setting: setting.as_deref(),
        webkit_var_set: std::env::var_os("WEBKIT_DISABLE_COMPOSITING_MODE").is_some(),
        render_node: has_render_node(Path::new("/dev/dri")),
        software_gl: std::env::var("LIBGL_ALWAYS_SOFTWARE").is_ok_and(|v| v.trim() == "1" || v.trim() == "true"),
    };
    match decide(facts) {
        Ok(Choice::Disable(why)) => {
            tracing::info!("webview compositing off: {why}");
            std::env::set_var("WEBKIT_DISABLE_COMPOSITING_MODE", "1");
        }
        Ok(Choice::Keep(why)) => tracing::info!("webview compositing left to WebKit: {why}"),
        Err(e) => tracing::warn!("{e}; leaving WebKit's default"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts<'static> {
        Facts { setting: None, webkit_var_set: false, render_node: true, software_gl: false }
    }

    #[test]
    fn compositing_goes_off_only_without_a_gpu_unless_told() {
        assert_eq!(decide(facts()), Ok(Choice::Keep("a GPU render node is present")));
        assert!(matches!(decide(Facts { render_node: false, ..facts() }), Ok(Choice::Disable(_))));
        assert!(matches!(decide(Facts { software_gl: true, ..facts() }), Ok(Choice::Disable(_))));
        // The user's own WebKit variable wins over everything.
        let user = Facts { webkit_var_set: true, render_node: false, setting: Some("off"), ..facts() };
        assert!(matches!(decide(user), Ok(Choice::Keep(_))));
        // The app's setting wins over the machine.
        assert!(matches!(decide(Facts { setting: Some("on"), render_node: false, ..facts() }), Ok(Choice::Keep(_))));
        assert!(matches!(decide(Facts { setting: Some("off"), ..facts() }), Ok(Choice::Disable(_))));
        assert!(matches!(
            decide(Facts { setting: Some("auto"), render_node: false, ..facts() }),
            Ok(Choice::Disable(_))
        ));
        let bad = decide(Facts { setting: Some("yes"), ..facts() }).unwrap_err();
        assert!(bad.contains("HZ_WEBVIEW_COMPOSITING") && bad.contains("\"yes\""), "{bad}");
    }

    #[test]
    fn render_nodes_are_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_render_node(dir.path()));
        assert!(!has_render_node(&dir.path().join("missing")));
        std::fs::write(dir.path().join("card0"), b"").unwrap();
        assert!(!has_render_node(dir.path()));
        std::fs::write(dir.path().join("renderD128"), b"").unwrap();
        assert!(has_render_node(dir.path()));
    }
}
