//! The Python face runs the same gym as the Rust runtime: for every template, the compiled
//! package passes Gymnasium's `check_env`, and 50 seeded episodes of random valid and
//! invalid actions give the same observations, rewards, terminated and truncated flags (and
//! the same `info`), step by step.
//!
//! Needs a Python with the pinned packages, named by `HZ_PYTHON`:
//!
//! ```sh
//! scripts/setup-python-venv.sh            # creates ~/.cache/440hz/py-venv
//! HZ_PYTHON=~/.cache/440hz/py-venv/bin/python cargo test -p hz-gym-compile --test python_equivalence
//! ```

use hz_gym::policy::RandomPolicy;
use hz_gym::{Env, Gym, GymBundle, ResetOptions, RuntimeConfig};
use hz_gym_compile::python::python_package;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const EPISODES: u64 = 50;

fn python() -> String {
    match std::env::var("HZ_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!(
            "HZ_PYTHON is not set. The Python equivalence test needs a Python (3.11+) with the pinned \
             packages. Set it up with `scripts/setup-python-venv.sh` (creates ~/.cache/440hz/py-venv), then run \
             `HZ_PYTHON=$HOME/.cache/440hz/py-venv/bin/python cargo test -p hz-gym-compile --test python_equivalence`."
        ),
    }
}

fn template(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../gym-templates").join(name).join(format!("{name}.gym.json"))
}

/// What one Rust step gave: observation, reward, terminated, truncated, info.
type StepOutcome = Result<(String, f64, bool, bool, Value), String>;

/// One Rust episode: the actions taken and what the runtime answered.
struct Episode {
    seed: u64,
    /// Set for the reference-solution episodes (reset with `task_index`).
    task_index: Option<usize>,
    actions: Vec<Value>,
    reset: Result<(String, Value), String>,
    steps: Vec<StepOutcome>,
}

fn rust_episodes(bundle: &GymBundle) -> Vec<Episode> {
    let gym = Gym::new(bundle.clone()).expect("template compiles");
    let mut env = Env::new(gym.clone(), RuntimeConfig::default());
    let parser = &gym.compiled().actions;
    let mut out = Vec::new();
    for i in 0..EPISODES {
        let seed = 7_000 + i * 31;
        let mut policy = RandomPolicy::new(seed);
        // More malformed actions than the default, so every invalid shape shows up.
        policy.invalid_share = 0.25;
        out.push(play(&mut env, seed, None, |_| Some(policy.action(parser))));
    }
    // The tasks' reference solutions reach the deep paths (query results, refunds, file
    // operations) that random actions seldom do.
    for (i, task) in gym.spec().tasks.iter().enumerate() {
        let solution = task.solution.clone();
        out.push(play(&mut env, 100 + i as u64, Some(i), |j| solution.get(j).cloned()));
    }
    out
}

fn play(env: &mut Env, seed: u64, task_index: Option<usize>, mut next: impl FnMut(usize) -> Option<Value>) -> Episode {
    let mut ep =
        Episode { seed, task_index, actions: Vec::new(), reset: Ok((String::new(), Value::Null)), steps: Vec::new() };
    let options = ResetOptions { task_id: None, task_index };
    ep.reset = env.reset(seed, &options).map_err(|e| e.to_string());
    if ep.reset.is_ok() {
        while !env.done() {
            let Some(action) = next(ep.actions.len()) else { break };
            ep.actions.push(action.clone());
            match env.step(&action) {
                Ok(r) => ep.steps.push(Ok((r.observation, r.reward, r.terminated, r.truncated, r.info))),
                Err(e) => {
                    ep.steps.push(Err(e.to_string()));
                    break;
                }
            }
        }
    }
    ep
}

fn check_template(name: &str) {
    let py = python();
    let bundle = GymBundle::load(&template(name)).expect("template loads");
    let dir = tempfile::tempdir().expect("temp dir");
    let pkg = python_package(&bundle, &dir.path().join("pkg")).expect("package written");
    let episodes = rust_episodes(&bundle);
    let input = json!({"episodes": episodes.iter().map(|e| json!({"seed": e.seed, "task_index": e.task_index, "actions": e.actions})).collect::<Vec<_>>()});
    let input_path = dir.path().join("episodes.json");
    std::fs::write(&input_path, serde_json::to_string(&input).unwrap()).unwrap();
    let out_path = dir.path().join("python.json");
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/equivalence_driver.py");
    let run = Command::new(&py)
        .arg(&driver)
        .arg(pkg.root.join("src"))
        .arg(&pkg.gym_id)
        .arg(&pkg.module)
        .arg(&input_path)
        .arg(&out_path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run HZ_PYTHON={py}: {e}"));
    assert!(
        run.status.success(),
        "the Python driver failed for {name}:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let got: Value = serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    let mut problems = Vec::new();
    if got["check_env"] != "ok" {
        problems.push(format!("check_env failed:\n{}", got["check_env"].as_str().unwrap_or_default()));
    }
    let py_eps = got["episodes"].as_array().cloned().unwrap_or_default();
    let mut steps_compared = 0;
    for (i, (rust, py)) in episodes.iter().zip(&py_eps).enumerate() {
        if let Some(diff) = compare_episode(rust, py, &mut steps_compared) {
            problems.push(format!("{name} episode {i} (seed {}, task_index {:?}): {diff}", rust.seed, rust.task_index));
            if problems.len() > 5 {
                break;
            }
        }
    }
    if py_eps.len() != episodes.len() {
        problems.push(format!("Python ran {} episodes, Rust {}", py_eps.len(), episodes.len()));
    }
    assert!(problems.is_empty(), "{name}: Python face differs from the Rust runtime:\n\n{}", problems.join("\n\n"));
    eprintln!(
        "{name}: check_env ok ({} warnings), {} episodes ({EPISODES} random, the rest reference solutions) and \
         {steps_compared} steps identical",
        got["check_env_warnings"].as_array().map_or(0, Vec::len),
        episodes.len()
    );
}

fn compare_episode(rust: &Episode, py: &Value, steps_compared: &mut usize) -> Option<String> {
    match &rust.reset {
        Ok((obs, info)) => {
            if let Some(e) = py["reset"].get("error") {
                return Some(format!("reset: Rust gave an observation, Python failed: {e}"));
            }
            if py["reset"]["observation"] != json!(obs) {
                return Some(format!(
                    "reset observation differs:\n{}",
                    text_diff(obs, py["reset"]["observation"].as_str().unwrap_or_default())
                ));
            }
            if &py["reset"]["info"] != info {
                return Some(format!("reset info differs:\n  rust:   {info}\n  python: {}", py["reset"]["info"]));
            }
        }
        Err(e) => {
            return match py["reset"].get("error") {
                Some(_) => None,
                None => Some(format!("reset: Rust failed ({e}), Python did not")),
            }
        }
    }
    let py_steps = py["steps"].as_array().cloned().unwrap_or_default();
    for (j, r) in rust.steps.iter().enumerate() {
        let action = &rust.actions[j];
        let Some(p) = py_steps.get(j) else {
            return Some(format!("step {}: Python stopped early (action {action})", j + 1));
        };
        match r {
            Err(e) => {
                if p.get("error").is_none() {
                    return Some(format!("step {} (action {action}): Rust failed ({e}), Python did not", j + 1));
                }
            }
            Ok((obs, reward, terminated, truncated, info)) => {
                if let Some(e) = p.get("error") {
                    return Some(format!("step {} (action {action}): Python failed: {e}", j + 1));
                }
                let mut d = Vec::new();
                if p["observation"] != json!(obs) {
                    d.push(format!(
                        "observation differs:\n{}",
                        text_diff(obs, p["observation"].as_str().unwrap_or_default())
                    ));
                }
                let pr = p["reward"].as_f64().unwrap_or(f64::NAN);
                if (pr - reward).abs() > 1e-9 || pr.is_nan() {
                    d.push(format!("reward: rust {reward}, python {}", p["reward"]));
                }
                if p["terminated"] != json!(terminated) {
                    d.push(format!("terminated: rust {terminated}, python {}", p["terminated"]));
                }
                if p["truncated"] != json!(truncated) {
                    d.push(format!("truncated: rust {truncated}, python {}", p["truncated"]));
                }
                if &p["info"] != info {
                    d.push(format!("info differs:\n  rust:   {info}\n  python: {}", p["info"]));
                }
                if !d.is_empty() {
                    return Some(format!("step {} (action {action}):\n{}", j + 1, d.join("\n")));
                }
                *steps_compared += 1;
            }
        }
    }
    if py_steps.len() > rust.steps.len() {
        return Some(format!("Python took {} steps, Rust {}", py_steps.len(), rust.steps.len()));
    }
    None
}

/// The first differing line of two texts, with both versions.
fn text_diff(rust: &str, python: &str) -> String {
    let (r, p): (Vec<&str>, Vec<&str>) = (rust.lines().collect(), python.lines().collect());
    for i in 0..r.len().max(p.len()) {
        if r.get(i) != p.get(i) {
            return format!(
                "  first difference at line {}:\n  rust:   {:?}\n  python: {:?}",
                i + 1,
                r.get(i).unwrap_or(&"<none>"),
                p.get(i).unwrap_or(&"<none>")
            );
        }
    }
    format!("  same lines, different bytes:\n  rust:   {rust:?}\n  python: {python:?}")
}

#[test]
fn sql_analyst_matches_rust() {
    check_template("sql-analyst");
}

#[test]
fn customer_support_matches_rust() {
    check_template("customer-support");
}

#[test]
fn email_triage_matches_rust() {
    check_template("email-triage");
}

#[test]
fn shell_ops_matches_rust() {
    check_template("shell-ops");
}

/// The compiled package installs with pip (a real build through its pyproject.toml) and the
/// installed copy registers the environment, which resets like the Rust runtime.
#[test]
fn package_installs_with_pip_and_registers() {
    let py = python();
    let bundle = GymBundle::load(&template("email-triage")).expect("template loads");
    let dir = tempfile::tempdir().expect("temp dir");
    let pkg = python_package(&bundle, &dir.path().join("pkg")).expect("package written");
    let site = dir.path().join("site");
    let install = Command::new(&py)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--target"])
        .arg(&site)
        .arg(&pkg.root)
        .output()
        .expect("pip runs");
    assert!(install.status.success(), "pip install failed:\n{}", String::from_utf8_lossy(&install.stderr));
    let script = format!(
        "import json, sys\nsys.path.insert(0, {site:?})\nimport gymnasium, {module}\n\
         env = gymnasium.make('440hz/email-triage-v{version}')\nobs, info = env.reset(seed=3)\n\
         print(json.dumps({{'observation': obs, 'info': info}}))",
        site = site.display().to_string(),
        module = pkg.module,
        version = bundle.spec.version,
    );
    let run = Command::new(&py).arg("-c").arg(&script).output().expect("python runs");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let got: Value = serde_json::from_slice(&run.stdout).expect("JSON from the installed package");
    let mut env = Env::new(Gym::new(bundle).expect("valid"), RuntimeConfig::default());
    let (obs, info) = env.reset(3, &ResetOptions::default()).expect("reset");
    assert_eq!(got["observation"], Value::String(obs));
    assert_eq!(got["info"], info);
}
