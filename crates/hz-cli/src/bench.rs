//! `hz bench gym`: steps per second of the runtime on each template, as a table and JSON.

use anyhow::{Context, Result};
use clap::Subcommand;
use hz_gym::policy::RandomPolicy;
use hz_gym::{Env, ResetOptions};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Steps per second per gym (random policy, resets included), written as JSON.
    Gym {
        /// Gym files; default: every template under gym-templates/.
        paths: Vec<PathBuf>,
        /// Steps to time per gym.
        #[arg(long, default_value_t = 20_000)]
        steps: u64,
        /// Where to write the JSON results.
        #[arg(long, default_value = "bench-results/gym.json")]
        out: PathBuf,
    },
    /// Steps/s of the Rust runtime against the compiled Python package on the same episodes.
    Python {
        /// Gym files; default: every template under gym-templates/.
        paths: Vec<PathBuf>,
        /// Episodes per gym (random valid and invalid actions, seeded).
        #[arg(long, default_value_t = 200)]
        episodes: u64,
        /// Python with the packages of scripts/setup-python-venv.sh.
        #[arg(long, env = "HZ_PYTHON", default_value = "python3")]
        python: PathBuf,
        #[arg(long, default_value = "bench-results/python.json")]
        out: PathBuf,
    },
    /// Load-test `hz gym serve` on loopback: many concurrent sessions for a bounded time;
    /// reports requests/s and step latency percentiles.
    Serve {
        /// Gym file; default: the sql-analyst template.
        path: Option<PathBuf>,
        /// Concurrent sessions.
        #[arg(long, default_value_t = 1000)]
        sessions: u32,
        /// How long to run, in seconds (the load stops by itself).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Mean pause of each session between steps, as an agent thinking (0: closed loop).
        #[arg(long, default_value_t = 500)]
        think_ms: u64,
        #[arg(long, default_value = "bench-results/serve.json")]
        out: PathBuf,
    },
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Gym { paths, steps, out } => gym(paths, steps, out),
        BenchCmd::Serve { path, sessions, seconds, think_ms, out } => serve(path, sessions, seconds, think_ms, out),
        BenchCmd::Python { paths, episodes, python, out } => python_vs_rust(paths, episodes, python, out),
    }
}

fn write_json(out: &std::path::Path, doc: &serde_json::Value) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, serde_json::to_string_pretty(doc)?).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

fn serve(path: Option<PathBuf>, sessions: u32, seconds: u64, think_ms: u64, out: PathBuf) -> Result<()> {
    use hz_gym_http::{AppState, ServerConfig};
    use std::time::Duration;
    let path = match path {
        Some(p) => p,
        None => crate::gym_templates()?
            .into_iter()
            .find(|p| p.ends_with("sql-analyst/sql-analyst.gym.json"))
            .context("sql-analyst template not found")?,
    };
    let gym = crate::gym::load(&path)?;
    // Client and server sockets share this process: lift the open-file limit.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if nofile < u64::from(sessions) * 2 + 64 {
        anyhow::bail!("open-file limit {nofile} is too low for {sessions} sessions (need ~{})", sessions * 2 + 64);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let config = ServerConfig { max_sessions: sessions as usize + 16, ..Default::default() };
        let app = AppState::new(gym.clone(), Default::default(), config);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(hz_gym_http::serve(listener, app, async move {
            let _ = stop_rx.await;
        }));
        let client = reqwest::Client::builder().pool_max_idle_per_host(sessions as usize).build()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for i in 0..sessions {
            let (client, base, gym) = (client.clone(), base.clone(), gym.clone());
            tasks.push(tokio::spawn(async move {
                let mut policy = RandomPolicy::new(u64::from(i));
                let mut lat_us: Vec<u64> = Vec::new();
                let (mut resets, mut errors) = (0u64, 0u64);
                let mut session: Option<String> = None;
                // Agents are not synchronised: stagger the starts across one think time and
                // draw each pause uniformly from [0.5, 1.5] × think.
                let mut jitter = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(i);
                let mut next_pause = move || {
                    jitter ^= jitter << 13;
                    jitter ^= jitter >> 7;
                    jitter ^= jitter << 17;
                    Duration::from_micros(think_ms * 1000 / 2 + jitter % (think_ms * 1000 + 1))
                };
                if think_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(think_ms * u64::from(i) / u64::from(sessions.max(1))))
                        .await;
                }
                while tokio::time::Instant::now() < deadline {
                    let Some(sid) = session.clone() else {
                        let body = json!({"seed": u64::from(i) + resets * u64::from(sessions)}).to_string();
                        match client.post(format!("{base}/reset")).body(body).send().await {
                            Ok(r) if r.status().is_success() => {
                                let v: serde_json::Value = r.json().await.unwrap_or_default();
                                session = v["session_id"].as_str().map(str::to_string);
                                resets += 1;
                            }
                            _ => errors += 1,
                        }
                        continue;
                    };
                    let action = policy.action(&gym.compiled().actions);
                    let body = json!({"session_id": sid, "action": action}).to_string();
                    let t = Instant::now();
                    match client.post(format!("{base}/step")).body(body).send().await {
                        Ok(r) if r.status().is_success() => {
                            let v: serde_json::Value = r.json().await.unwrap_or_default();
                            lat_us.push(t.elapsed().as_micros() as u64);
                            if v["terminated"] == true || v["truncated"] == true {
                                // Keep the session: the next reset reuses it.
                                let body =
                                    json!({"session_id": sid, "seed": u64::from(i) + resets * u64::from(sessions)})
                                        .to_string();
                                if client.post(format!("{base}/reset")).body(body).send().await.is_err() {
                                    errors += 1;
                                }
                                resets += 1;
                            }
                        }
                        _ => errors += 1,
                    }
                    if think_ms > 0 {
                        tokio::time::sleep(next_pause()).await;
                    }
                }
                (lat_us, resets, errors)
            }));
        }
        let started = Instant::now();
        let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
        let (mut resets, mut errors) = (0u64, 0u64);
        for t in tasks {
            let (lat, r, e) = t.await?;
            for l in lat {
                hist.record(l.max(1))?;
            }
            resets += r;
            errors += e;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let _ = stop_tx.send(());
        let _ = server.await;
        let steps = hist.len();
        let rps = (steps + resets) as f64 / elapsed;
        let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{:<16} {:>9} {:>8} {:>10} {:>10} {:>8} {:>8} {:>8} {:>7}",
            "gym", "sessions", "think", "steps", "req/s", "p50 ms", "p99 ms", "max ms", "errors"
        );
        println!(
            "{:<16} {:>9} {:>8} {:>10} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>7}",
            gym.spec().name,
            sessions,
            think_ms,
            steps,
            rps,
            ms(0.5),
            ms(0.99),
            hist.max() as f64 / 1000.0,
            errors
        );
        let doc = json!({
            "benchmark": "gym-serve", "gym": gym.spec().name, "sessions": sessions, "think_ms": think_ms,
            "seconds": elapsed, "steps": steps, "resets": resets, "errors": errors, "requests_per_second": rps,
            "step_latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": hist.max() as f64 / 1000.0},
            "note": "client and server share this machine's cores",
        });
        write_json(&out, &doc)
    })
}

fn python_vs_rust(mut paths: Vec<PathBuf>, episodes: u64, python: PathBuf, out: PathBuf) -> Result<()> {
    if paths.is_empty() {
        paths = crate::gym_templates()?;
    }
    let work = tempfile::tempdir()?;
    let driver = work.path().join("bench_driver.py");
    std::fs::write(&driver, hz_gym_compile::python::BENCH_DRIVER)?;
    println!("{:<20} {:>8} {:>8} {:>12} {:>12} {:>8}", "gym", "episodes", "steps", "rust st/s", "python st/s", "ratio");
    let mut rows = Vec::new();
    for path in &paths {
        let gym = crate::gym::load(path)?;
        let name = gym.spec().name.clone();
        // The episodes: random actions until each episode ends, recorded by playing in Rust.
        let mut eps = Vec::new();
        for seed in 0..episodes {
            let mut env = Env::new(gym.clone(), Default::default());
            env.reset(seed, &ResetOptions::default())?;
            let mut policy = RandomPolicy::new(seed);
            let mut actions = Vec::new();
            while !env.done() {
                let a = policy.action(&gym.compiled().actions);
                env.step(&a)?;
                actions.push(a);
            }
            eps.push(json!({"seed": seed, "actions": actions}));
        }
        // Rust: replay them, timed (one untimed warm-up episode, as on the Python side).
        let mut env = Env::new(gym.clone(), Default::default());
        let replay = |env: &mut Env, ep: &serde_json::Value| -> Result<u64> {
            env.reset(ep["seed"].as_u64().unwrap_or(0), &ResetOptions::default())?;
            let mut n = 0;
            for a in ep["actions"].as_array().map(Vec::as_slice).unwrap_or_default() {
                env.step(a)?;
                n += 1;
            }
            Ok(n)
        };
        if let Some(first) = eps.first() {
            replay(&mut env, first)?;
        }
        let start = Instant::now();
        let mut steps = 0;
        for ep in &eps {
            steps += replay(&mut env, ep)?;
        }
        let rust_secs = start.elapsed().as_secs_f64();
        // Python: the compiled package on the same episodes.
        let pkg_dir = work.path().join(&name);
        let pkg = hz_gym_compile::python::python_package(&gym.compiled().bundle, &pkg_dir)?;
        let eps_file = work.path().join(format!("{name}-episodes.json"));
        std::fs::write(&eps_file, json!({"episodes": eps}).to_string())?;
        let gym_id = format!("440hz/{}-v{}", name, gym.spec().version);
        let output = std::process::Command::new(&python)
            .arg(&driver)
            .arg(pkg_dir.join("src"))
            .arg(&gym_id)
            .arg(&pkg.module)
            .arg(&eps_file)
            .output()
            .with_context(|| format!("running {}", python.display()))?;
        if !output.status.success() {
            anyhow::bail!(
                "the Python side failed (is {} the venv of scripts/setup-python-venv.sh?):\n{}",
                python.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let py: serde_json::Value = serde_json::from_slice(&output.stdout).context("reading the Python timing")?;
        let py_steps = py["steps"].as_u64().unwrap_or(0);
        anyhow::ensure!(py_steps == steps, "Python replayed {py_steps} steps, Rust {steps}");
        let py_secs = py["seconds"].as_f64().unwrap_or(f64::NAN);
        let (rust_sps, py_sps) = (steps as f64 / rust_secs, steps as f64 / py_secs);
        let ratio = rust_sps / py_sps;
        println!("{name:<20} {episodes:>8} {steps:>8} {rust_sps:>12.0} {py_sps:>12.0} {ratio:>7.1}x");
        rows.push(json!({"gym": name, "episodes": episodes, "steps": steps, "rust_seconds": rust_secs,
                         "python_seconds": py_secs, "rust_steps_per_second": rust_sps,
                         "python_steps_per_second": py_sps, "ratio": ratio}));
    }
    write_json(&out, &json!({"benchmark": "rust-vs-python", "goal_ratio": 50, "results": rows}))
}

fn gym(mut paths: Vec<PathBuf>, steps: u64, out: PathBuf) -> Result<()> {
    if paths.is_empty() {
        paths = crate::gym_templates()?;
    }
    let mut rows = Vec::new();
    println!("{:<28} {:>10} {:>12} {:>14} {:>12}", "gym", "steps", "episodes", "steps/s", "µs/step");
    for path in &paths {
        let gym = crate::gym::load(path)?;
        let mut env = Env::new(gym.clone(), Default::default());
        let mut policy = RandomPolicy::new(1);
        // Pre-generate actions so the policy's cost is not timed.
        let actions: Vec<_> = (0..steps.min(4096)).map(|_| policy.action(&gym.compiled().actions)).collect();
        let mut episodes = 0u64;
        let mut seed = 0u64;
        env.reset(seed, &ResetOptions::default())?;
        let start = Instant::now();
        for i in 0..steps {
            if env.done() {
                seed += 1;
                episodes += 1;
                env.reset(seed, &ResetOptions::default())?;
            }
            env.step(&actions[(i as usize) % actions.len()])?;
        }
        let secs = start.elapsed().as_secs_f64();
        let sps = steps as f64 / secs;
        println!("{:<28} {:>10} {:>12} {:>14.0} {:>12.1}", gym.spec().name, steps, episodes, sps, 1e6 / sps);
        rows.push(json!({"gym": gym.spec().name, "path": path, "steps": steps, "episodes": episodes,
                         "seconds": secs, "steps_per_second": sps, "us_per_step": 1e6 / sps}));
    }
    let doc = json!({"benchmark": "gym-steps", "runtime_version": env!("CARGO_PKG_VERSION"), "results": rows});
    write_json(&out, &doc)
}
