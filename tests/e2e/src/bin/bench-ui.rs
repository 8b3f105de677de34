//! `cargo run -p hz-e2e --bin bench-ui`: the desktop app in WebKitGTK under Xvfb.
//! Measures launch to interactive, idle memory, and frame times while dragging a node and
//! panning on a 500-node / 800-edge graph; prints a table and writes `bench-results/ui.json`.
//! It runs the app twice: as it runs on this machine (no GPU, so WebKit's compositing is
//! off: `src-tauri/src/rendering.rs`), then with compositing forced on, and prints the ratio.
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

/// A scripted pointer gesture in the page: press at a point, move `frames` times (one move
/// per animation frame), release; returns frame intervals and per-move work in ms. The point
/// is a world point (on a node, HTML or painted on the scene) or an offset into an element.
const GESTURE: &str = r#"
const [target, frames, dx, dy, useRaf, done] = arguments;
// Animation frames when the page gets them; else a 0 ms timer (then "frame" is the time
// from one move to the next callback, which includes the style, layout and paint between).
const next = useRaf ? (f) => requestAnimationFrame(f) : (f) => setTimeout(() => f(performance.now()), 0);
const canvas = document.querySelector('.lf-canvas');
let x, y;
let probe = null;
if (target.probe) {
  // The smallest change a frame can have: one 10 px box moves (no editor work at all).
  probe = document.createElement('div');
  probe.style.cssText = 'position:fixed;left:0;top:0;width:10px;height:10px;background:#f0f;z-index:99';
  document.body.appendChild(probe);
  x = 0; y = 0;
} else if (target.world) {
  const m = /translate\(([-\d.e]+)px, ([-\d.e]+)px\) scale\(([-\d.e]+)\)/.exec(document.querySelector('.lf-world').style.transform);
  if (!m) { done({error: 'no viewport transform'}); return; }
  const c = canvas.getBoundingClientRect();
  x = c.left + Number(m[1]) + target.world[0] * Number(m[3]);
  y = c.top + Number(m[2]) + target.world[1] * Number(m[3]);
} else {
  const r = document.querySelector(target.selector).getBoundingClientRect();
  x = r.left + target.offset[0]; y = r.top + target.offset[1];
}
const el = probe || document.elementFromPoint(x, y);
if (!el) { done({error: 'nothing at ' + x + ',' + y}); return; }
const ev = (t, x, y) => new MouseEvent(t, {bubbles: true, cancelable: true, clientX: x, clientY: y, button: 0});
if (!probe && (dx !== 0 || dy !== 0)) el.dispatchEvent(ev('mousedown', x, y));
const intervals = [], work = [];
let last = null, i = 0;
function frame(ts) {
  try { step(ts); } catch (e) { done({error: String(e) + ' at frame ' + i}); }
}
function step(ts) {
  if (last !== null) intervals.push(ts - last);
  last = ts;
  if (i++ >= frames) {
    if (probe) probe.remove(); else window.dispatchEvent(ev('mouseup', x, y));
    const d = canvas.dataset;
    done({intervals, work, pressed: el.className, html_nodes: document.querySelectorAll('.lf-node').length,
          nodes: Number(d.nodesDrawn), wires: Number(d.wiresDrawn)});
    return;
  }
  x += dx; y += dy;
  const t0 = performance.now();
  if (probe) probe.style.transform = `translate(${x}px, ${y}px)`;
  else window.dispatchEvent(ev('mousemove', x, y));
  canvas.getBoundingClientRect();
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

/// One gesture's measurements: name, frame intervals, per-move work, nodes and wires drawn,
/// HTML nodes.
type Row = (String, Vec<f64>, Vec<f64>, u64, u64, u64);

/// What one launch of the app measured.
struct Run {
    rows: Vec<Row>,
    raf: bool,
    cold_start: Duration,
    idle_rss: u64,
    loaded_rss: u64,
    graph: (usize, usize),
}

/// Launch the app (WebKit compositing on, or as the app decides here) and run every gesture.
async fn run(compositing: bool, frames: usize) -> Result<Run> {
    let launched = Instant::now();
    let mut app = App::start_with(if compositing { "bench-ui-composited" } else { "bench-ui" }, compositing).await?;
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
    // Fitted to the view, every node is painted on the scene (none is HTML).
    app.until("the 500-node gym is drawn", || async {
        app.js("document.querySelector('#fit').click()").await?;
        let drawn = app.js("return Number(document.querySelector('.lf-canvas').dataset.nodesDrawn || 0)").await?;
        Ok(drawn.as_u64() == Some(n_nodes as u64))
    })
    .await?;
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
    // A press on node r0 (HTML when zoomed in, painted on the scene at fit view) drags it; a
    // press on the canvas's empty top-left corner pans. "idle" moves nothing: the webview's
    // own frame interval, the floor every gesture is compared with.
    let node = json!({"world": [40.0, 12.0]});
    let corner = json!({"selector": ".lf-canvas", "offset": [40.0, 12.0]});
    let probe = json!({"probe": true});
    let mut plan = vec![
        ("idle (fit view)", false, &corner, 0.0, 0.0, ""),
        ("floor: a 10 px box moves", false, &probe, 3.0, 2.0, ""),
        ("drag node (fit view)", false, &node, 3.0, 2.0, ""),
        ("pan (fit view)", false, &corner, -4.0, -2.0, ""),
        ("drag node (zoom ~1)", true, &node, 3.0, 2.0, ""),
        ("pan (zoom ~1)", false, &corner, -4.0, -2.0, ""),
    ];
    // HZ_BENCH_UI_PARTS=1: the same gestures with one part of the editor hidden at a time,
    // to see which part a frame's time goes to.
    if std::env::var_os("HZ_BENCH_UI_PARTS").is_some() {
        for hide in [".lf-minimap", ".lf-scene", ".lf-world", ".hz-side, .hz-palette, .hz-header, .hz-footer"] {
            plan.push(("  drag node (zoom ~1) w/o", true, &node, 3.0, 2.0, hide));
            plan.push(("  pan (zoom ~1) w/o", false, &corner, -4.0, -2.0, hide));
        }
    }
    for (name, zoom_in, target, dx, dy, hide) in plan {
        let name = if hide.is_empty() { name.to_string() } else { format!("{name} {hide}") };
        app.js(&format!(
            "let s = document.getElementById('bench-hide'); if (!s) {{ s = document.createElement('style'); s.id = 'bench-hide'; document.head.appendChild(s); }} s.textContent = {};",
            serde_json::to_string(&if hide.is_empty() { String::new() } else { format!("{hide} {{ visibility: hidden !important }}") })?
        ))
        .await?;
        if zoom_in {
            // Back to the fitted view, then wheel in at the first node until nodes are HTML.
            app.js("document.querySelector('#fit').click()").await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            app.js("const c = document.querySelector('.lf-canvas'); const m = /translate\\(([-\\d.e]+)px, ([-\\d.e]+)px\\)/.exec(document.querySelector('.lf-world').style.transform); const r = c.getBoundingClientRect();
                    for (let i = 0; i < 3; i++) c.dispatchEvent(new WheelEvent('wheel', {deltaY: -450, clientX: r.left + Number(m[1]), clientY: r.top + Number(m[2]), bubbles: true, cancelable: true}));").await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            app.shot("zoomed-in").await?;
        }
        let out = app
            .client
            .execute_async(GESTURE, vec![target.clone(), json!(frames), json!(dx), json!(dy), json!(raf)])
            .await
            .with_context(|| format!("gesture {name}"))?;
        if let Some(e) = out.get("error") {
            anyhow::bail!("{name}: {e}");
        }
        println!("{name}: pressed {}", out["pressed"]);
        if name.starts_with("drag") {
            // Put r0 back where the next gestures expect it.
            app.js("document.querySelector('#undo').click()").await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        rows.push((
            name.clone(),
            series(&out, "intervals"),
            series(&out, "work"),
            out["nodes"].as_u64().unwrap_or(0),
            out["wires"].as_u64().unwrap_or(0),
            out["html_nodes"].as_u64().unwrap_or(0),
        ));
    }
    app.shot("after-gestures").await?;
    app.close().await?;
    Ok(Run { rows, raf, cold_start, idle_rss, loaded_rss, graph: (n_nodes, n_edges) })
}

/// A frame that took longer than 1.5 display frames missed the display's refresh.
fn late_share(intervals: &[f64], period: f64) -> f64 {
    if intervals.is_empty() {
        return f64::NAN;
    }
    intervals.iter().filter(|&&v| v > 1.5 * period).count() as f64 / intervals.len() as f64
}

fn table(title: &str, run: &Run) -> Vec<Value> {
    println!("\n{title}");
    println!(
        "{:<28} {:>10} {:>10} {:>6} {:>10} {:>10} {:>8} {:>8} {:>6}",
        "gesture", "frame p50", "frame p95", "late", "work p50", "work p95", "nodes", "wires", "html"
    );
    // The display period: the idle frame interval.
    let period = run.rows.first().map(|r| pct(&r.1, 50.0)).unwrap_or(16.7);
    let mut gestures = Vec::new();
    for (name, iv, wk, nodes, wires, html) in &run.rows {
        println!(
            "{:<28} {:>8.1}ms {:>8.1}ms {:>5.0}% {:>8.2}ms {:>8.2}ms {:>8} {:>8} {:>6}",
            name,
            pct(iv, 50.0),
            pct(iv, 95.0),
            100.0 * late_share(iv, period),
            pct(wk, 50.0),
            pct(wk, 95.0),
            nodes,
            wires,
            html
        );
        gestures.push(json!({"gesture": name, "frame_ms_p50": pct(iv, 50.0), "frame_ms_p95": pct(iv, 95.0),
            "late_share": late_share(iv, period), "work_ms_p50": pct(wk, 50.0), "work_ms_p95": pct(wk, 95.0),
            "nodes_drawn": nodes, "wires_drawn": wires, "html_nodes": html}));
    }
    println!(
        "launch to interactive: {:.2} s (WebDriver session + app start + templates listed)",
        run.cold_start.as_secs_f64()
    );
    println!(
        "idle memory (app + web processes, RSS): {:.1} MiB; with the 500-node gym open: {:.1} MiB",
        run.idle_rss as f64 / 1024.0,
        run.loaded_rss as f64 / 1024.0
    );
    gestures
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    if let Some(m) = hz_e2e::missing() {
        anyhow::bail!("bench-ui needs {m}");
    }
    let frames: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(120);
    // The app as it runs on this machine (no GPU: compositing off), then with WebKit's
    // software compositing forced on, in the same run, for the ratio.
    let direct = run(false, frames).await?;
    let composited = run(true, frames).await?;
    let (n_nodes, n_edges) = direct.graph;
    println!("\nbench-ui: WebKitGTK under Xvfb, {n_nodes} nodes / {n_edges} edges, {frames} frames per gesture");
    let direct_rows = table("as the app runs here (no GPU: WebKit compositing off)", &direct);
    let composited_rows = table("WebKit compositing forced on (software)", &composited);
    println!("\nframe p95, composited / as run:");
    for (a, b) in direct.rows.iter().zip(&composited.rows) {
        println!("  {:<28} {:>5.2}x", a.0, pct(&b.1, 95.0) / pct(&a.1, 95.0));
    }
    let bin = hz_e2e::app_binary();
    let bin_size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    println!("binary: {} ({:.1} MiB)", bin.display(), bin_size as f64 / 1048576.0);
    let (release_bin, deb) = release_artifacts();
    let mib = |a: &Artifact| match a {
        Some((p, n)) => format!("{} ({:.1} MiB)", p.display(), *n as f64 / 1048576.0),
        None => "not built (cargo xtask deb)".to_string(),
    };
    println!("release binary: {}; .deb: {}", mib(&release_bin), mib(&deb));
    let report = json!({
        "graph": {"nodes": n_nodes, "edges": n_edges}, "frames": frames, "animation_frames": direct.raf,
        "gestures": direct_rows, "gestures_composited": composited_rows,
        "launch_to_interactive_s": direct.cold_start.as_secs_f64(), "idle_rss_mib": direct.idle_rss as f64 / 1024.0,
        "loaded_rss_mib": direct.loaded_rss as f64 / 1024.0,
        "composited": {"launch_to_interactive_s": composited.cold_start.as_secs_f64(),
            "idle_rss_mib": composited.idle_rss as f64 / 1024.0, "loaded_rss_mib": composited.loaded_rss as f64 / 1024.0},
        "binary": bin.display().to_string(), "binary_bytes": bin_size,
        "release_binary_bytes": release_bin.map(|a| a.1), "deb": deb.as_ref().map(|a| a.0.display().to_string()),
        "deb_bytes": deb.map(|a| a.1),
    });
    let out = hz_e2e::repo().join("bench-results");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("ui.json"), serde_json::to_string_pretty(&report)?)?;
    println!("wrote bench-results/ui.json");
    Ok(())
}
