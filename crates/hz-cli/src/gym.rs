//! `hz gym ...`

use crate::RuntimeArgs;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use hz_gym::check::check;
use hz_gym::policy::RandomPolicy;
use hz_gym::{Env, Gym, GymBundle, GymError, ResetOptions, Severity};
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Subcommand)]
pub enum GymCmd {
    /// Validate gyms and run Gymnasium-style checks (determinism, spaces, finite rewards,
    /// solvable tasks). Exits non-zero with itemised errors on failure.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Random episodes per gym (each is run twice to test determinism).
        #[arg(long, default_value_t = 20)]
        episodes: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        rt: RuntimeArgs,
    },
    /// Run one episode and print the trajectory as JSON lines.
    Run {
        path: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// JSON-lines file of actions, one per line (`-` for stdin).
        #[arg(long, conflicts_with = "random")]
        actions: Option<PathBuf>,
        /// Play this many random actions (seeded by --seed).
        #[arg(long)]
        random: Option<u32>,
        /// Play the task's reference solution.
        #[arg(long, conflicts_with_all = ["random", "actions"])]
        solution: bool,
        /// Pick the task by id instead of sampling it from the seed.
        #[arg(long)]
        task: Option<String>,
        #[command(flatten)]
        rt: RuntimeArgs,
    },
    /// Play a gym by hand in the terminal.
    Play {
        path: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        task: Option<String>,
        #[command(flatten)]
        rt: RuntimeArgs,
    },
    /// Serve a gym over HTTP: POST /reset, POST /step, POST /close, GET /spec, GET /healthz.
    Serve {
        path: PathBuf,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Drop sessions idle for this many seconds.
        #[arg(long, default_value_t = 600)]
        idle_timeout: u64,
        /// Most concurrent sessions.
        #[arg(long, default_value_t = 10_000)]
        max_sessions: usize,
        #[command(flatten)]
        rt: RuntimeArgs,
    },
    /// Compile a gym to another face: an OCI image layout (`oci`) or a pip-installable Python
    /// Gymnasium package (`python`).
    Compile {
        path: PathBuf,
        #[arg(long, value_enum)]
        target: CompileTarget,
        #[arg(long)]
        out: PathBuf,
    },
    /// Commit the gym's current content to its version history (a no-op when unchanged).
    Commit {
        path: PathBuf,
        #[arg(short, long)]
        message: String,
    },
    /// List the gym's committed versions, newest first (`*` marks the working copy).
    Log { path: PathBuf },
    /// Node-level diff between two versions, or between a version and the working copy.
    Diff {
        path: PathBuf,
        /// A version: `3`, `v3`, `HEAD`, `HEAD~1` or a manifest id prefix.
        a: String,
        /// Another version (default: the working copy).
        b: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Restore a version's files over the working copy.
    Checkout {
        path: PathBuf,
        rev: String,
        /// Discard uncommitted changes in the working copy.
        #[arg(long)]
        force: bool,
    },
    /// Print the JSON Schema of `*.gym.json`.
    Schema,
    /// Print a gym's content id (SHA-256 of its canonical JSON with fixtures).
    Id { path: PathBuf },
}

/// Faces a gym compiles to.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum CompileTarget {
    Oci,
    Python,
}

fn compile(path: &Path, target: CompileTarget, out: &Path) -> Result<()> {
    // Compile only valid gyms: a face of a broken gym would fail later, farther from the cause.
    let gym = load(path)?;
    let bundle = &gym.compiled().bundle;
    match target {
        CompileTarget::Oci => {
            let exe = std::env::current_exe().context("locating the hz binary to embed")?;
            let img = hz_gym_compile::oci::oci_layout(bundle, &exe, out)?;
            println!("wrote OCI image layout {} ({})", out.display(), img.ref_name);
            println!("  manifest {}", img.manifest.digest);
            println!(
                "  run it: skopeo copy oci:{}:{} containers-storage:{}",
                out.display(),
                img.ref_name,
                img.ref_name
            );
        }
        CompileTarget::Python => {
            let pkg = hz_gym_compile::python::python_package(bundle, out)?;
            println!("wrote Python package {} {} in {}", pkg.distribution, pkg.version, out.display());
            println!("  pip install {}", out.display());
            println!(
                "  python -c 'import gymnasium, {}; env = gymnasium.make(\"440hz/{}-v{}\")'",
                pkg.module, bundle.spec.name, bundle.spec.version
            );
        }
    }
    Ok(())
}

pub fn load(path: &Path) -> Result<Arc<Gym>> {
    let bundle = GymBundle::load(path).with_context(|| format!("loading {}", path.display()))?;
    match Gym::new(bundle) {
        Ok(g) => Ok(g),
        Err(GymError::Invalid(diags)) => {
            let mut msg = format!("{} is not a valid gym:", path.display());
            for d in &diags {
                msg.push_str(&format!("\n  {d}"));
            }
            bail!(msg)
        }
        Err(e) => Err(e).with_context(|| format!("loading {}", path.display())),
    }
}

pub fn run(cmd: GymCmd) -> Result<bool> {
    match cmd {
        GymCmd::Schema => {
            println!("{}", serde_json::to_string_pretty(&hz_gym::json_schema())?);
            Ok(true)
        }
        GymCmd::Id { path } => {
            let bundle = GymBundle::load(&path)?;
            println!("{}", bundle.id()?);
            Ok(true)
        }
        GymCmd::Check { paths, episodes, json: as_json, rt } => {
            let cfg = rt.config();
            let mut all_ok = true;
            for path in &paths {
                let ok = check_one(path, episodes, as_json, &cfg)?;
                all_ok &= ok;
            }
            Ok(all_ok)
        }
        GymCmd::Run { path, seed, actions, random, solution, task, rt } => {
            let gym = load(&path)?;
            let mut env = Env::new(gym.clone(), rt.config());
            let opts = ResetOptions { task_id: task, task_index: None };
            let (obs, info) = env.reset(seed, &opts)?;
            let out = std::io::stdout();
            let mut out = out.lock();
            writeln!(out, "{}", json!({"event": "reset", "seed": seed, "observation": obs, "info": info}))?;
            let list: Vec<Value> = if let Some(file) = actions {
                read_actions(&file)?
            } else if solution {
                env.task().map(|t| t.solution.clone()).unwrap_or_default()
            } else {
                let n = random.unwrap_or(gym.spec().max_steps);
                let mut p = RandomPolicy::new(seed);
                (0..n).map(|_| p.action(&gym.compiled().actions)).collect()
            };
            let mut total = 0.0;
            for (i, a) in list.iter().enumerate() {
                if env.done() {
                    eprintln!("episode ended after {i} actions; {} left unused", list.len() - i);
                    break;
                }
                let r = env.step(a)?;
                total += r.reward;
                writeln!(
                    out,
                    "{}",
                    json!({"event": "step", "action": a, "observation": r.observation, "reward": r.reward,
                           "terminated": r.terminated, "truncated": r.truncated, "info": r.info})
                )?;
            }
            writeln!(out, "{}", json!({"event": "end", "total_reward": total, "done": env.done()}))?;
            Ok(true)
        }
        GymCmd::Play { path, seed, task, rt } => play(&path, seed, task, &rt),
        GymCmd::Compile { path, target, out } => compile(&path, target, &out).map(|()| true),
        GymCmd::Commit { path, message } => crate::versions::commit(&path, &message).map(|()| true),
        GymCmd::Log { path } => crate::versions::log(&path).map(|()| true),
        GymCmd::Diff { path, a, b, json } => crate::versions::diff(&path, &a, b.as_deref(), json).map(|()| true),
        GymCmd::Checkout { path, rev, force } => crate::versions::checkout(&path, &rev, force).map(|()| true),
        GymCmd::Serve { path, host, port, idle_timeout, max_sessions, rt } => {
            let gym = load(&path)?;
            let config = hz_gym_http::ServerConfig {
                idle_timeout: std::time::Duration::from_secs(idle_timeout.max(1)),
                max_sessions,
                ..Default::default()
            };
            let app = hz_gym_http::AppState::new(gym.clone(), rt.config(), config);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind((host.as_str(), port))
                    .await
                    .with_context(|| format!("binding {host}:{port}"))?;
                let addr = listener.local_addr()?;
                eprintln!("serving {} (id {}) on http://{addr}", gym.spec().name, gym.id().short());
                // Ctrl-C in a terminal, SIGTERM from a container runtime.
                let shutdown = async {
                    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
                    }
                };
                hz_gym_http::serve(listener, app, shutdown).await?;
                anyhow::Ok(())
            })?;
            Ok(true)
        }
    }
}

fn read_actions(file: &Path) -> Result<Vec<Value>> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).with_context(|| {
            format!("{} line {}: not a JSON value (quote text actions as JSON strings)", file.display(), i + 1)
        })?;
        out.push(v);
    }
    Ok(out)
}

fn check_one(path: &Path, episodes: u64, as_json: bool, cfg: &hz_gym::RuntimeConfig) -> Result<bool> {
    let bundle = match GymBundle::load(path) {
        Ok(b) => b,
        Err(e) => {
            println!("✗ {}\n  {e}", path.display());
            return Ok(false);
        }
    };
    // One compile: it either yields the gym (with warnings) or every finding.
    let gym = match Gym::new(bundle) {
        Ok(g) => g,
        Err(GymError::Invalid(diags)) => {
            let errors = diags.iter().filter(|d| d.severity == Severity::Error).count();
            if as_json {
                println!("{}", json!({"path": path, "ok": false, "diagnostics": diags}));
            } else {
                println!("✗ {}: {errors} error(s)", path.display());
                for d in &diags {
                    println!("  {d}");
                }
            }
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    let diags = &gym.compiled().warnings;
    let report = check(&gym, cfg, episodes);
    if as_json {
        println!("{}", json!({"path": path, "ok": report.ok(), "diagnostics": diags, "report": report}));
        return Ok(report.ok());
    }
    let mark = if report.ok() { "✓" } else { "✗" };
    println!("{mark} {} ({} v{}, id {})", path.display(), report.gym, gym.spec().version, &report.gym_id[..12]);
    for d in diags {
        println!("  {d}");
    }
    for c in &report.checks {
        println!("  {} {}", if c.ok { "ok  " } else { "FAIL" }, c.name);
        for p in c.problems.iter().take(20) {
            println!("       - {p}");
        }
        if c.problems.len() > 20 {
            println!("       … and {} more", c.problems.len() - 20);
        }
    }
    let sol = report.solution_return.map_or("n/a".to_string(), |r| format!("{r:.3}"));
    println!("  mean return: reference solutions {sol}, random policy {:.3}", report.random_return);
    Ok(report.ok())
}

fn play(path: &Path, seed: u64, task: Option<String>, rt: &RuntimeArgs) -> Result<bool> {
    let gym = load(path)?;
    let mut env = Env::new(gym.clone(), rt.config());
    let mut seed = seed;
    let opts = ResetOptions { task_id: task, task_index: None };
    let help = "Type an action and press Enter:\n  tool_name {\"arg\": ...}   a tool call (arguments as JSON)\n  {...}                    a raw JSON action\n  any other text           a text action\n  :reset  :tools  :help  :quit";
    let (obs, info) = env.reset(seed, &opts)?;
    println!(
        "── {} · task {} · seed {seed}\n{obs}\n",
        gym.spec().title_or_name(),
        info["task_id"].as_str().unwrap_or("")
    );
    println!("{help}");
    let stdin = std::io::stdin();
    let mut total = 0.0;
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim();
        match line {
            "" => continue,
            ":quit" | ":q" => break,
            ":help" => {
                println!("{help}");
                continue;
            }
            ":tools" => {
                for t in gym.compiled().actions.tools() {
                    println!("  {}({})\n      {}", t.name, describe_params(&t.parameters), t.description);
                }
                continue;
            }
            ":reset" => {
                seed += 1;
                total = 0.0;
                let (obs, info) = env.reset(seed, &ResetOptions::default())?;
                println!("── task {} · seed {seed}\n{obs}\n", info["task_id"].as_str().unwrap_or(""));
                continue;
            }
            _ => {}
        }
        let action = parse_play_action(line, gym.compiled().actions.mode());
        match env.step(&action) {
            Ok(r) => {
                total += r.reward;
                println!("\n{}\n", r.observation);
                if let Some(items) = r.info["rewards"].as_array() {
                    for it in items {
                        let note = it.get("message").and_then(Value::as_str).unwrap_or("");
                        println!(
                            "  {:+.3}  {} ({}) {note}",
                            it["value"].as_f64().unwrap_or(0.0),
                            it["source"].as_str().unwrap_or(""),
                            it["kind"].as_str().unwrap_or("")
                        );
                    }
                }
                println!(
                    "  reward {:+.3} · total {total:+.3} · terminated {} · truncated {}",
                    r.reward, r.terminated, r.truncated
                );
                if r.terminated || r.truncated {
                    println!("Episode over. :reset for a new one, :quit to leave.");
                }
            }
            Err(e) => println!("  {e}"),
        }
    }
    Ok(true)
}

/// `order_id: integer, note?: string` from a JSON Schema object.
fn describe_params(schema: &Value) -> String {
    let required: Vec<&str> =
        schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    schema["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .map(|(k, v)| {
                    let opt = if required.contains(&k.as_str()) { "" } else { "?" };
                    format!("{k}{opt}: {}", v["type"].as_str().unwrap_or("any"))
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// `tool {"a": 1}` → tool call; `{...}` → raw JSON; anything else → text.
fn parse_play_action(line: &str, mode: hz_gym::spec::ActionMode) -> Value {
    if line.starts_with('{') {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            return v;
        }
    }
    if mode == hz_gym::spec::ActionMode::ToolCall {
        let (name, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let args = if rest.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(rest.trim()).unwrap_or(Value::String(rest.to_string()))
        };
        return json!({"name": name, "arguments": args});
    }
    Value::String(line.to_string())
}
