//! Set-up and build helper for 440hz (`cargo xtask ...`).
//!
//! `demo` installs what is missing and runs the main job on embedded defaults; `ci` installs
//! what is missing and runs every check and test. Both work on a fresh Debian machine with
//! only the Rust toolchain: missing system packages are installed when running as root, and
//! the exact command is printed otherwise.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Set up and run the main job: check every template gym, then play one.
    Demo {
        /// Template to play (folder name under gym-templates/).
        #[arg(long, default_value = "sql-analyst")]
        gym: String,
    },
    /// Set up and run every check: fmt, clippy, tests, template checks, bounded fuzzing,
    /// and a short benchmark run.
    Ci {
        /// Seconds of fuzzing for the spec parser (0 skips it).
        #[arg(long, default_value_t = 60)]
        fuzz_seconds: u64,
    },
    /// Install what is missing, run nothing else.
    Setup,
    /// Run the spec-parser fuzz target for a bounded time.
    Fuzz {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = root()?;
    std::env::set_current_dir(&root)?;
    match cli.cmd {
        Cmd::Setup => setup(true),
        Cmd::Demo { gym } => demo(&gym),
        Cmd::Ci { fuzz_seconds } => ci(fuzz_seconds),
        Cmd::Fuzz { seconds } => {
            setup(true)?;
            fuzz(seconds)
        }
    }
}

fn root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest.parent().context("xtask lives in the workspace")?.to_path_buf())
}

fn step(name: &str) {
    println!("\n==> {name}");
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let started = Instant::now();
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    println!("    ({:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Debian packages needed to build (a C compiler for bundled SQLite, pkg-config).
const APT_PACKAGES: &[&str] = &["build-essential", "pkg-config"];

/// More for the tests: the OCI image checks (skopeo, umoci, bubblewrap, runc) and the
/// Python face (a Python with venv).
const APT_TEST_PACKAGES: &[&str] = &["skopeo", "umoci", "bubblewrap", "runc", "python3", "python3-venv"];

fn setup(for_tests: bool) -> Result<()> {
    step("setup: system packages");
    let wanted: Vec<&str> =
        APT_PACKAGES.iter().chain(if for_tests { APT_TEST_PACKAGES } else { &[] }).copied().collect();
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg")
                .args(["-s", p])
                .output()
                .map(|o| {
                    o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Status: install ok installed")
                })
                .unwrap_or(false)
        })
        .collect();
    if missing.is_empty() || !have("dpkg") {
        println!("    nothing missing");
    } else if is_root() {
        run(Command::new("apt-get").arg("update").arg("-qq"))?;
        run(Command::new("apt-get").args(["install", "-y", "-qq", "--no-install-recommends"]).args(&missing))?;
    } else {
        bail!("missing Debian packages; run:\n    sudo apt-get install -y {}", missing.join(" "));
    }
    if for_tests {
        step("setup: cargo-fuzz");
        if have("cargo-fuzz") {
            println!("    cargo-fuzz present");
        } else {
            run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
        }
    }
    Ok(())
}

fn hz() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    target.join("release").join("hz")
}

fn templates() -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir("gym-templates")? {
        let dir = dir?.path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir)? {
                let f = f?.path();
                if f.to_string_lossy().ends_with(".gym.json") {
                    out.push(f);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

fn demo(gym: &str) -> Result<()> {
    setup(false)?;
    step("build hz (release)");
    run(Command::new("cargo").args(["build", "--release", "-p", "hz-cli"]))?;
    step("check every template gym");
    run(Command::new(hz()).args(["gym", "check"]).args(templates()?))?;
    let path = Path::new("gym-templates").join(gym).join(format!("{gym}.gym.json"));
    if std::io::stdin().is_terminal() {
        step(&format!("play {gym} (type :help for help, :quit to leave)"));
        run(Command::new(hz()).args(["gym", "play"]).arg(&path))?;
    } else {
        step(&format!("play {gym} with its reference solution (no terminal: not interactive)"));
        run(Command::new(hz()).args(["gym", "run", "--seed", "7", "--solution"]).arg(&path))?;
    }
    Ok(())
}

fn ci(fuzz_seconds: u64) -> Result<()> {
    let started = Instant::now();
    setup(true)?;
    step("cargo fmt --check");
    run(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))?;
    step("cargo clippy --all-targets -D warnings");
    run(Command::new("cargo").args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    step("setup: Python venv for the Python face (pinned packages)");
    let venv = python_venv()?;
    step("cargo test");
    run(Command::new("cargo").args(["test", "--workspace"]).env("HZ_PYTHON", venv.join("bin").join("python")))?;
    step("hz gym check on every template");
    run(Command::new("cargo").args(["build", "--release", "-p", "hz-cli"]))?;
    run(Command::new(hz()).args(["gym", "check"]).args(templates()?))?;
    step("benchmark smoke run");
    run(Command::new(hz()).args(["bench", "gym", "--steps", "2000", "--out"]).arg(bench_out("gym")))?;
    run(Command::new(hz())
        .args(["bench", "serve", "--sessions", "200", "--seconds", "3", "--out"])
        .arg(bench_out("serve")))?;
    run(Command::new(hz())
        .args(["bench", "python", "--episodes", "20", "--out"])
        .arg(bench_out("python"))
        .env("HZ_PYTHON", venv.join("bin").join("python")))?;
    if fuzz_seconds > 0 {
        fuzz(fuzz_seconds)?;
    }
    println!("\nall checks passed in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Create (or update) the venv the Python-face tests use, under the user's cache.
fn python_venv() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).context("HOME is not set")?;
    let venv = home.join(".cache").join("440hz").join("py-venv");
    run(Command::new("bash").arg("scripts/setup-python-venv.sh").arg(&venv))?;
    Ok(venv)
}

fn bench_out(name: &str) -> PathBuf {
    PathBuf::from("bench-results").join(format!("{name}-smoke.json"))
}

fn fuzz(seconds: u64) -> Result<()> {
    step(&format!("fuzz the spec parser for {seconds} s"));
    // cargo-fuzz needs nightly flags; use nightly when installed, else let stable accept them.
    let nightly = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.starts_with("nightly")))
        .unwrap_or(false);
    let corpus = std::env::temp_dir().join("hz-fuzz-corpus");
    std::fs::create_dir_all(&corpus)?;
    let mut cmd = Command::new("cargo");
    if nightly {
        cmd.arg("+nightly");
    } else {
        cmd.env("RUSTC_BOOTSTRAP", "1");
    }
    cmd.current_dir("fuzz")
        .args(["fuzz", "run", "--sanitizer", "none", "spec_parser"])
        .arg(&corpus)
        .arg("seeds/spec_parser")
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-max_len=65536")
        .arg("-rss_limit_mb=2048");
    run(&mut cmd)
}
