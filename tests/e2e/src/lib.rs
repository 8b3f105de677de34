//! Harness for end-to-end tests of the desktop app: starts a virtual display (Xvfb) and
//! tauri-driver (which starts WebKitGTK's WebDriver, which starts the app), and hands out a
//! WebDriver client plus helpers for pointer drags and screenshots. Every process it starts
//! is ended by its id when the harness is dropped.

use anyhow::{bail, Context, Result};
use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..").canonicalize().unwrap_or_default()
}

/// The cargo target directory: `$CARGO_TARGET_DIR`, else `target/` in the repository.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("target"))
}

/// The app binary: `$HZ_APP_BIN`, else the debug build in the cargo target directory.
pub fn app_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HZ_APP_BIN") {
        return PathBuf::from(p);
    }
    target_dir().join("debug").join("440hz")
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program} >/dev/null 2>&1"))
        .status()
        .is_ok_and(|s| s.success())
}

/// Why the end-to-end tests cannot run here, if they cannot. `cargo xtask ci` builds the app
/// and sets `HZ_E2E_REQUIRED=1`, so there a missing piece fails the run instead.
pub fn missing() -> Option<String> {
    let bin = app_binary();
    let mut gone = Vec::new();
    if !bin.exists() {
        gone.push(format!("the app binary {} (build it: cargo xtask app)", bin.display()));
    }
    for tool in ["Xvfb", "tauri-driver", "WebKitWebDriver", "xdotool"] {
        if !have(tool) {
            gone.push(format!("`{tool}` (cargo xtask setup installs it)"));
        }
    }
    if gone.is_empty() {
        None
    } else {
        Some(gone.join(", "))
    }
}

/// Skip (with a message) or fail, depending on whether CI requires these tests.
pub fn require_or_skip() -> bool {
    match missing() {
        None => true,
        Some(m) if std::env::var_os("HZ_E2E_REQUIRED").is_some() => panic!("end-to-end tests need {m}"),
        Some(m) => {
            eprintln!("skipping end-to-end test: missing {m}");
            false
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_display() -> Result<u32> {
    (90..140).find(|n| !display_taken(*n)).context("no free X display number between :90 and :139")
}

/// Whether an X server holds display `n`: its lock file names a process that is running.
/// A lock (and socket) left by a server that was killed is stale, and Xvfb replaces it, so
/// killed runs do not use up the display numbers.
fn display_taken(n: u32) -> bool {
    match std::fs::read_to_string(format!("/tmp/.X{n}-lock")) {
        Ok(text) => text.trim().parse::<u32>().ok().is_none_or(|pid| Path::new(&format!("/proc/{pid}")).exists()),
        Err(_) => Path::new(&format!("/tmp/.X11-unix/X{n}")).exists(),
    }
}

/// A running app under test.
pub struct App {
    pub client: Client,
    children: Vec<Child>,
    pub data_dir: tempfile::TempDir,
    /// The X display the app runs on.
    pub display: u32,
    shots: PathBuf,
    shot_no: usize,
    /// WebKit's compositing mode is on (WebDriver screenshots need it).
    compositing: bool,
}

impl App {
    /// Start the app with a fresh data directory; screenshots go to `e2e-artifacts/<name>/`.
    /// WebKit's compositing stays on, since WebDriver screenshots never return without it.
    pub async fn start(name: &str) -> Result<App> {
        Self::start_with(name, true).await
    }

    /// Start the app with compositing on, or as the app decides for this machine (off
    /// without a GPU: see `src-tauri/src/rendering.rs`); screenshots are skipped then.
    pub async fn start_with(name: &str, compositing: bool) -> Result<App> {
        let data_dir = tempfile::tempdir()?;
        let display = free_display()?;
        let mut children = Vec::new();
        let xvfb = Command::new("Xvfb")
            .arg(format!(":{display}"))
            .args(["-screen", "0", "1600x1000x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting Xvfb")?;
        children.push(xvfb);
        let started = Instant::now();
        while !Path::new(&format!("/tmp/.X11-unix/X{display}")).exists() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("Xvfb :{display} did not come up in 10 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let port = free_port()?;
        let native = free_port()?;
        let log = std::fs::File::create(data_dir.path().join("tauri-driver.log"))?;
        let driver = Command::new("tauri-driver")
            .args(["--port", &port.to_string(), "--native-port", &native.to_string()])
            .env("DISPLAY", format!(":{display}"))
            .env("HZ_DATA_DIR", data_dir.path())
            .env("HZ_TEMPLATES_DIR", repo().join("gym-templates"))
            .env("GDK_BACKEND", "x11")
            // Software rendering: Xvfb has no GPU.
            .env("LIBGL_ALWAYS_SOFTWARE", "1")
            .env("HZ_WEBVIEW_COMPOSITING", if compositing { "on" } else { "auto" })
            .env_remove("WEBKIT_DISABLE_COMPOSITING_MODE")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting tauri-driver")?;
        children.push(driver);
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("wry"));
        caps.insert("tauri:options".into(), json!({"application": app_binary()}));
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            match ClientBuilder::native().capabilities(caps.clone()).connect(&url).await {
                Ok(c) => break c,
                Err(e) if started.elapsed() < Duration::from_secs(30) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => {
                    let log = std::fs::read_to_string(data_dir.path().join("tauri-driver.log")).unwrap_or_default();
                    bail!("no WebDriver session with the app: {e}\ntauri-driver log:\n{log}");
                }
            }
        };
        eprintln!("e2e: WebDriver session with {} on :{display}", app_binary().display());
        let shots = repo().join("e2e-artifacts").join(name);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots)?;
        Ok(App { client, children, data_dir, display, shots, shot_no: 0, compositing })
    }

    /// Resident memory (KiB) of every process started under tauri-driver except the
    /// WebDriver server itself: the app and its web processes.
    pub fn app_rss_kib(&self) -> u64 {
        let Some(driver) = self.children.get(1).map(Child::id) else { return 0 };
        descendants(driver)
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim() != "WebKitWebDriver"
            })
            .map(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .unwrap_or_default()
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("VmRSS:").and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                    })
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Save a numbered screenshot of the window.
    /// Without compositing there is none (WebDriver cannot take it): the path is empty.
    pub async fn shot(&mut self, label: &str) -> Result<PathBuf> {
        self.shot_no += 1;
        if !self.compositing {
            return Ok(PathBuf::new());
        }
        // Two animation frames first, so the picture shows what the DOM already holds (a
        // check can pass on the DOM before WebKit has painted it).
        let settle = "const done = arguments[arguments.length - 1]; \
                      requestAnimationFrame(() => requestAnimationFrame(() => done()));";
        let _ = self.client.execute_async(settle, vec![]).await;
        let png = self.client.screenshot().await?;
        let path = self.shots.join(format!("{:02}-{label}.png", self.shot_no));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    pub async fn wait(&self, css: &str) -> Result<Element> {
        eprintln!("e2e: waiting for {css}");
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("waiting for `{css}`"))
    }

    pub async fn count(&self, css: &str) -> Result<usize> {
        Ok(self.client.find_all(Locator::Css(css)).await?.len())
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        self.wait(css).await?.click().await.with_context(|| format!("clicking `{css}`"))?;
        Ok(())
    }

    pub async fn text(&self, css: &str) -> Result<String> {
        Ok(self.wait(css).await?.text().await?)
    }

    /// Replace an input's value as typing would (and fire `change`).
    pub async fn fill(&self, css: &str, value: &str) -> Result<()> {
        let el = self.wait(css).await?;
        el.clear().await?;
        if !value.is_empty() {
            el.send_keys(value).await?;
        }
        // `change` fires on blur; send Tab.
        el.send_keys("\u{E004}").await?;
        Ok(())
    }

    /// Press keys in the app's window as the X server sees them (native menu accelerators
    /// are handled by GTK, outside the webview WebDriver drives).
    pub fn x_keys(&self, keys: &str) -> Result<()> {
        self.x_window("^440hz$", &["key", "--clearmodifiers", keys])
    }

    /// Run xdotool on the app's X display (at most 60 s).
    fn xdotool(&self, args: &[&str]) -> Result<std::process::Output> {
        Command::new("timeout")
            .arg("60")
            .arg("xdotool")
            .args(args)
            .env("DISPLAY", format!(":{}", self.display))
            .output()
            .context("running xdotool")
    }

    /// Whether a visible X window's title matches `title` (a regex).
    pub fn x_window_shown(&self, title: &str) -> Result<bool> {
        let out = self.xdotool(&["search", "--onlyvisible", "--name", title])?;
        Ok(out.status.success() && !out.stdout.is_empty())
    }

    /// Press Enter in a dialog until it closes (a GTK file chooser ignores Enter until it has
    /// checked what was typed), at most 10 times, 0.5 s apart.
    pub async fn x_confirm(&self, title: &str) -> Result<()> {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            // Only to a dialog still there: an earlier Enter may have closed it by now.
            if !self.x_keys_to(title, &["key", "--clearmodifiers", "Return"], false)? && !self.x_window_shown(title)? {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if self.x_window_shown(title)? {
            bail!("the window {title:?} is still open after pressing Enter 10 times");
        }
        Ok(())
    }

    /// Wait (up to 60 s: the first GTK file chooser of a session can be slow to map on a busy
    /// machine) for a visible X window whose title matches `title` (a regex), give it the
    /// keyboard, then run xdotool `actions` (`key ctrl+l`, `type TEXT`, ...): how a test
    /// reaches native windows the WebDriver cannot see, such as file dialogs.
    pub fn x_window(&self, title: &str, actions: &[&str]) -> Result<()> {
        self.x_keys_to(title, actions, true).map(|_| ())
    }

    /// `x_window`, waiting for the window when `wait`, else returning `false` when there is
    /// none.
    fn x_keys_to(&self, title: &str, actions: &[&str], wait: bool) -> Result<bool> {
        let search: &[&str] = if wait {
            &["search", "--sync", "--onlyvisible", "--name", title]
        } else {
            &["search", "--onlyvisible", "--name", title]
        };
        let found = self.xdotool(search)?;
        let id = String::from_utf8_lossy(&found.stdout).lines().next().map(str::trim).unwrap_or_default().to_string();
        if !found.status.success() || id.is_empty() {
            if !wait {
                return Ok(false);
            }
            bail!("no visible window titled {title:?} within 60 s");
        }
        // No window manager here: focus it directly, and check that the focus took (a window
        // mapped a moment ago can lose it again), rather than `windowfocus --sync`, which
        // waits for ever when it does not.
        let mut focused = false;
        for _ in 0..20 {
            self.xdotool(&["windowfocus", &id])?;
            std::thread::sleep(Duration::from_millis(250));
            let now = self.xdotool(&["getwindowfocus"])?;
            if String::from_utf8_lossy(&now.stdout).trim() == id {
                focused = true;
                break;
            }
        }
        if !focused && !wait {
            // Gone while we tried: the keys must not land in another window.
            return Ok(false);
        }
        if !focused {
            // Type anyway: what the keys did is checked by the test through the app.
            eprintln!("e2e: the window {title:?} ({id}) did not report the keyboard focus");
        }
        let done = self.xdotool(actions)?;
        if !done.status.success() {
            bail!(
                "xdotool in the window {title:?} ({actions:?}) failed ({}): {}",
                done.status,
                String::from_utf8_lossy(&done.stderr).trim()
            );
        }
        Ok(true)
    }

    pub async fn js(&self, script: &str) -> Result<Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    /// The text of the gym JSON editor (Monaco).
    pub async fn code_text(&self) -> Result<String> {
        let v = self.js("return window.hzMonaco.getValue('json')").await?;
        v.as_str().map(str::to_string).context("the gym JSON editor is not there")
    }

    /// Select the first occurrence of `text` in the gym JSON editor (Monaco) and focus it, so
    /// that keys sent to the focused element replace it as typing would.
    pub async fn code_select(&self, text: &str) -> Result<()> {
        let found = self
            .client
            .execute(
                &format!(
                    "{JSON_EDITOR} const m = ed.getModel().findMatches(arguments[0], false, false, true, null, false);
                     if (!m.length) return false;
                     ed.setSelection(m[0].range); ed.revealRangeInCenter(m[0].range); ed.focus(); return true;"
                ),
                vec![json!(text)],
            )
            .await?;
        if found != json!(true) {
            bail!("{text:?} is not in the gym JSON editor");
        }
        Ok(())
    }

    /// Type into the focused element (keys as WebDriver sends them).
    pub async fn type_keys(&self, keys: &str) -> Result<()> {
        self.client.active_element().await?.send_keys(keys).await.context("typing")?;
        Ok(())
    }

    /// Insert `text` after the first occurrence of `after` in the gym JSON editor, as one
    /// edit operation through the editor (what a paste does).
    pub async fn code_insert_after(&self, after: &str, text: &str) -> Result<()> {
        let done = self
            .client
            .execute(
                &format!(
                    "{JSON_EDITOR} const m = ed.getModel().findMatches(arguments[0], false, false, true, null, false);
                     if (!m.length) return false;
                     const e = m[0].range.getEndPosition();
                     const at = new monaco.Range(e.lineNumber, e.column, e.lineNumber, e.column);
                     ed.pushUndoStop();
                     return ed.executeEdits('e2e', [{{range: at, text: arguments[1], forceMoveMarkers: true}}]);"
                ),
                vec![json!(after), json!(text)],
            )
            .await?;
        if done != json!(true) {
            bail!("could not insert after {after:?} in the gym JSON editor");
        }
        Ok(())
    }

    /// The markers the app put on the gym JSON (Monaco's `getModelMarkers`, owner `hz`):
    /// `{line, column, message, severity}` each (severity 8 is an error).
    pub async fn code_markers(&self) -> Result<Vec<Value>> {
        let v = self
            .js(&format!(
                "{JSON_EDITOR} return monaco.editor.getModelMarkers({{owner: 'hz', resource: ed.getModel().uri}})
                   .map(m => ({{line: m.startLineNumber, column: m.startColumn, message: m.message, severity: m.severity}}));"
            ))
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Poll a condition for up to 20 s.
    pub async fn until<F, Fut>(&self, what: &str, mut check: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let started = Instant::now();
        loop {
            if check().await.unwrap_or(false) {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!("timed out waiting until {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Press on `from`, move in steps, release at `to` offset by (dx, dy) from its centre.
    pub async fn drag(&self, from: &Element, to: &Element, dx: f64, dy: f64) -> Result<()> {
        let mouse = MouseActions::new("mouse".to_string())
            .then(PointerAction::MoveToElement { element: from.clone(), duration: None, x: 0.0, y: 0.0 })
            .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
            .then(PointerAction::MoveBy { duration: Some(Duration::from_millis(50)), x: 10.0, y: 5.0 })
            .then(PointerAction::MoveToElement {
                element: to.clone(),
                duration: Some(Duration::from_millis(150)),
                x: dx,
                y: dy,
            })
            .then(PointerAction::Pause { duration: Duration::from_millis(50) })
            .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
        self.client.perform_actions(mouse).await.context("pointer drag")?;
        self.client.release_actions().await?;
        Ok(())
    }

    pub async fn close(mut self) -> Result<()> {
        let client = self.client.clone();
        client.close().await?;
        self.stop();
        Ok(())
    }

    fn stop(&mut self) {
        // What tauri-driver started (WebKitWebDriver, the app, its web processes) goes first:
        // tauri-driver does not end them when it is itself ended.
        if let Some(driver) = self.children.get(1).map(Child::id) {
            let pids = descendants(driver);
            for sig in ["-TERM", "-KILL"] {
                for pid in &pids {
                    signal(sig, *pid);
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        // Then tauri-driver and Xvfb, newest first; asked to end first, so Xvfb removes its
        // lock and socket.
        for child in self.children.iter_mut().rev() {
            signal("-TERM", child.id());
            let ended = (0..20).any(|_| {
                std::thread::sleep(Duration::from_millis(25));
                matches!(child.try_wait(), Ok(Some(_)))
            });
            if !ended {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        self.children.clear();
    }
}

/// Script prelude: `ed` is the Monaco editor of the gym JSON (its model's language is json).
const JSON_EDITOR: &str =
    "const ed = monaco.editor.getEditors().find(e => e.getModel() && e.getModel().getLanguageId() === 'json');
    if (!ed) throw new Error('no Monaco editor for the gym JSON');";

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised command name: the state, then the parent id.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Send a signal (`-TERM`, `-KILL`) to a process; one already gone is no error.
fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill").arg(sig).arg(pid.to_string()).stderr(Stdio::null()).status();
}

/// Every live process below `root` (bounded walk up from each process).
pub fn descendants(root: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let mut p = pid;
        for _ in 0..8 {
            match parent_of(p) {
                Some(pp) if pp == root => {
                    out.push(pid);
                    break;
                }
                Some(pp) if pp > 1 => p = pp,
                _ => break,
            }
        }
    }
    out
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock naming a running process holds its display; one left by a process that is gone
    /// does not.
    #[test]
    fn stale_x_locks_do_not_hold_a_display() {
        let n = 139;
        let lock = format!("/tmp/.X{n}-lock");
        if Path::new(&lock).exists() || Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
            eprintln!("display :{n} is in use here; nothing to check");
            return;
        }
        let mut gone = Command::new("true").spawn().expect("spawn true");
        let dead = gone.id();
        let _ = gone.wait();
        std::fs::write(&lock, format!("{dead:>10}\n")).expect("write lock");
        let stale = display_taken(n);
        std::fs::write(&lock, format!("{:>10}\n", std::process::id())).expect("write lock");
        let live = display_taken(n);
        std::fs::remove_file(&lock).expect("remove lock");
        assert!(!stale, "a dead server's lock is stale");
        assert!(live, "a running process's lock holds the display");
        assert!(!display_taken(n));
    }
}
