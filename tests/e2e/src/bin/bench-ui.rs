//! `cargo run -p hz-e2e --bin bench-ui`: the desktop app in WebKitGTK under Xvfb.
//! Measures launch to interactive, idle memory, and frame times while dragging a node and
//! panning on a 500-node / 800-edge graph; prints a table and writes `bench-results/ui.json`.
//!
//! Frame time is measured two ways, both from inside the page: the interval between
//! animation frames while the drag runs (vsync-bound: ~16.7 ms on a 60 Hz display is on
//! time), and the script + layout work each pointer move causes (event dispatch through the
//! forced layout that follows it).

use anyhow::{Context, Result};
use hz_e2e::App;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn big_gym(nodes: usize, edges: usize) -> Value {
    let cols = 25;
    let mut ns = vec![
        json!({"id": "on_reset", "kind": "on_reset", "position": {"x": -600, "y": 0}}),
        json!({"id": "return_reset", "kind": "return_reset", "observation": "hi", "position": {"x": -300, "y": 0}}),
        json!({"id": "on_step", "kind": "on_step", "position": {"x": -600, "y": 200}}),
        json!({"id": "actions", "kind": "action_space", "mode": "text", "position": {"x": -600, "y": 400}}),
    ];
    let mut es =
        vec![json!({"from": {"node": "on_reset", "port": "out"}, "to": {"node": "return_reset", "port": "in"}})];
    let n = nodes - ns.len() - 1;
    for i in 0..n {
        let (x, y) = ((i % cols) as f64 * 260.0, (i / cols) as f64 * 130.0);
        ns.push(json!({"id": format!("r{i}"), "kind": "reward", "value": 0.01, "position": {"x": x, "y": y}}));
    }
    ns.push(json!({"id": "return_step", "kind": "return_step", "observation": "ok", "position": {"x": 26.0 * 260.0, "y": 0}}));
    es.push(json!({"from": {"node": "on_step", "port": "out"}, "to": {"node": "r0", "port": "in"}}));
    for i in 0..n - 1 {
        es.push(json!({"from": {"node": format!("r{i}"), "port": "out"}, "to": {"node": format!("r{}", i + 1), "port": "in"}}));
    }
    es.push(
        json!({"from": {"node": format!("r{}", n - 1), "port": "out"}, "to": {"node": "return_step", "port": "in"}}),
    );
    // Data wires: reward → a later node's value input (one per input).
    let mut i = 0;
    while es.len() < edges && i + 7 < n {
        es.push(json!({"from": {"node": format!("r{i}"), "port": "reward"}, "to": {"node": format!("r{}", i + 7), "port": "value"}}));
        i += 1;
    }
    json!({
        "spec_version": 1, "name": "bench-500", "version": 1, "title": "500 nodes", "max_steps": 4,
        "tasks": [{"id": "t", "question": "q"}], "nodes": ns, "edges": es
    })
}

/// A scripted pointer gesture in the page: press on `selector`, move `frames` times (one
/// move per animation frame), release; returns frame intervals and per-move work in ms.
const GESTURE: &str = r#"
const [selector, frames, dx, dy, useRaf, done] = arguments;
// Animation frames when the page gets them; else a 0 ms timer (then "frame" is the time
// from one move to the next callback, which includes the style, layout and paint between).
const next = useRaf ? (f) => requestAnimationFrame(f) : (f) => setTimeout(() => f(performance.now()), 0);
const el = document.querySelector(selector);
if (!el) { done({error: 'no ' + selector}); return; }
const r = el.getBoundingClientRect();
let x = r.left + Math.min(40, r.width / 2), y = r.top + Math.min(12, r.height / 2);
const ev = (t, x, y) => new MouseEvent(t, {bubbles: true, cancelable: true, clientX: x, clientY: y, button: 0});
el.dispatchEvent(ev('mousedown', x, y));
const intervals = [], work = [];
let last = null, i = 0;
function frame(ts) {
  try { step(ts); } catch (e) { done({error: String(e) + ' at frame ' + i}); }
}
function step(ts) {
  if (last !== null) intervals.push(ts - last);
  last = ts;
  if (i++ >= frames) {
    window.dispatchEvent(ev('mouseup', x, y));
    done({intervals, work, nodes: document.querySelectorAll('.lf-node').length, wires: document.querySelectorAll('.lf-edge').length});
    return;
  }
  x += dx; y += dy;
  const t0 = performance.now();
  window.dispatchEvent(ev('mousemove', x, y));
  document.querySelector('.lf-canvas').getBoundingClientRect();
  document.body.offsetHeight;
  work.push(performance.now() - t0);
  next(frame);
}
next(frame);
"#;

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((p / 100.0) * (s.len() - 1) as f64).round() as usize]
}

fn series(v: &Value, key: &str) -> Vec<f64> {
    v[key].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
}

/// A file and its size in bytes.
type Artifact = Option<(PathBuf, u64)>;

/// The release binary and the .deb `cargo xtask deb` builds (`tauri build --bundles deb`),
/// with their sizes, when they are there.
fn release_artifacts() -> (Artifact, Artifact) {
    let release = hz_e2e::target_dir().join("release");
    let sized = |p: PathBuf| std::fs::metadata(&p).ok().filter(|m| m.is_file()).map(|m| (p, m.len()));
    let deb = std::fs::read_dir(release.join("bundle").join("deb"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .filter_map(sized)
        .max_by_key(|(p, _)| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    (sized(release.join("440hz")), deb)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    if let Some(m) = hz_e2e::missing() {
        anyhow::bail!("bench-ui needs {m}");
    }
    let frames: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(120);
    let launched = Instant::now();
    let mut app = App::start("bench-ui").await?;
    app.wait(".hz-card").await?;
    let cold_start = launched.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = app.app_rss_kib();

    let dir = app.data_dir.path().join("gyms").join("bench-500");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench-500.gym.json");
    let gym = big_gym(500, 800);
    let (n_nodes, n_edges) = (gym["nodes"].as_array().map_or(0, Vec::len), gym["edges"].as_array().map_or(0, Vec::len));
    std::fs::write(&path, serde_json::to_string_pretty(&gym)?)?;
    app.fill("#open-path", &path.to_string_lossy()).await?;
    app.click("#open-path-go").await?;
    app.wait("[data-node-id='r0']").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded_rss = app.app_rss_kib();
    app.js("document.querySelector('#fit').click()").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.shot("fit-500").await?;

    let mut rows = Vec::new();
    // Does this webview run animation frames (headless ones may not)?
    let raf = app
        .client
        .execute_async(
            "const d = arguments[0]; let n = 0; setTimeout(() => d(n), 1500); (function f() { n++; requestAnimationFrame(f); })();",
            vec![],
        )
        .await?
        .as_u64()
        .unwrap_or(0)
        > 10;
    println!("animation frames in this webview: {}", if raf { "yes" } else { "no (timer-stepped)" });
    // A press on a node header drags the node; a press on the canvas itself pans.
    for (name, zoom_in, selector, dx, dy) in [
        ("drag node (fit view)", false, "[data-node-id='r0'] .lf-node-header", 3.0, 2.0),
        ("pan (fit view)", false, ".lf-canvas", -4.0, -2.0),
        ("drag node (zoom ~1)", true, "[data-node-id='r0'] .lf-node-header", 3.0, 2.0),
        ("pan (zoom ~1)", false, ".lf-canvas", -4.0, -2.0),
        // The same at fit view with the wire layer hidden: how much of a frame is wires.
        ("drag node (fit, no wires)", false, "[data-node-id='r0'] .lf-node-header", 3.0, 2.0),
        ("pan (fit, no wires)", false, ".lf-canvas", -4.0, -2.0),
    ] {
        if name.ends_with("no wires)") && name.starts_with("drag") {
            app.js(
                "document.querySelector('#fit').click(); document.querySelector('.lf-wires').style.display = 'none'",
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if zoom_in {
            // Wheel in at the first node until nodes are drawn in full.
            app.js("const c = document.querySelector('.lf-canvas'); const r = document.querySelector(\"[data-node-id='r0']\").getBoundingClientRect();
                    for (let i = 0; i < 3; i++) c.dispatchEvent(new WheelEvent('wheel', {deltaY: -450, clientX: r.left, clientY: r.top, bubbles: true, cancelable: true}));").await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            app.shot("zoomed-in").await?;
        }
        let out = app
            .client
            .execute_async(GESTURE, vec![json!(selector), json!(frames), json!(dx), json!(dy), json!(raf)])
            .await
            .with_context(|| format!("gesture {name}"))?;
        if let Some(e) = out.get("error") {
            anyhow::bail!("{name}: {e}");
        }
        rows.push((
            name.to_string(),
            series(&out, "intervals"),
            series(&out, "work"),
            out["nodes"].as_u64().unwrap_or(0),
            out["wires"].as_u64().unwrap_or(0),
        ));
    }
    app.shot("after-gestures").await?;
    let bin = hz_e2e::app_binary();
    let bin_size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    app.close().await?;

    println!("\nbench-ui: WebKitGTK under Xvfb, {n_nodes} nodes / {n_edges} edges, {frames} frames per gesture");
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "gesture", "frame p50", "frame p95", "work p50", "work p95", "nodes", "wires"
    );
    let mut gestures = Vec::new();
    for (name, iv, wk, nodes, wires) in &rows {
        println!(
            "{:<24} {:>8.1}ms {:>8.1}ms {:>8.2}ms {:>8.2}ms {:>8} {:>8}",
            name,
            pct(iv, 50.0),
            pct(iv, 95.0),
            pct(wk, 50.0),
            pct(wk, 95.0),
            nodes,
            wires
        );
        gestures.push(json!({"gesture": name, "frame_ms_p50": pct(iv, 50.0), "frame_ms_p95": pct(iv, 95.0),
            "work_ms_p50": pct(wk, 50.0), "work_ms_p95": pct(wk, 95.0), "nodes_in_dom": nodes, "wires_in_dom": wires}));
    }
    println!(
        "launch to interactive: {:.2} s (WebDriver session + app start + templates listed)",
        cold_start.as_secs_f64()
    );
    println!(
        "idle memory (app + web processes, RSS): {:.1} MiB; with the 500-node gym open: {:.1} MiB",
        idle_rss as f64 / 1024.0,
        loaded_rss as f64 / 1024.0
    );
    println!("binary: {} ({:.1} MiB)", bin.display(), bin_size as f64 / 1048576.0);
    let (release_bin, deb) = release_artifacts();
    let mib = |a: &Artifact| match a {
        Some((p, n)) => format!("{} ({:.1} MiB)", p.display(), *n as f64 / 1048576.0),
        None => "not built (cargo xtask deb)".to_string(),
    };
    println!("release binary: {}; .deb: {}", mib(&release_bin), mib(&deb));
    let report = json!({
        "graph": {"nodes": n_nodes, "edges": n_edges}, "frames": frames, "animation_frames": raf, "gestures": gestures,
        "launch_to_interactive_s": cold_start.as_secs_f64(), "idle_rss_mib": idle_rss as f64 / 1024.0,
        "loaded_rss_mib": loaded_rss as f64 / 1024.0, "binary": bin.display().to_string(), "binary_bytes": bin_size,
        "release_binary_bytes": release_bin.map(|a| a.1), "deb": deb.as_ref().map(|a| a.0.display().to_string()),
        "deb_bytes": deb.map(|a| a.1),
    });
    let out = hz_e2e::repo().join("bench-results");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("ui.json"), serde_json::to_string_pretty(&report)?)?;
    println!("wrote bench-results/ui.json");
    Ok(())
}
