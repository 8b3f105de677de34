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
    /// Build the desktop UI (Leptos → wasm, bound with wasm-bindgen, Monaco bundled) into ui/dist.
    Ui {
        /// Optimised wasm (slower to build, smaller and faster to run).
        #[arg(long)]
        release: bool,
    },
    /// Build the UI and the desktop app, then launch it (the Gym Builder on embedded defaults).
    App {
        #[arg(long)]
        release: bool,
    },
    /// Build a .deb of the desktop app offline with Tauri's CLI (`tauri build --bundles deb`,
    /// release UI and app), check its contents and print the binary and package sizes.
    Deb {
        /// Bundle the debug build instead (`cargo build -p hz-desktop`, reused as it is).
        #[arg(long)]
        debug: bool,
    },
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
        Cmd::Ui { release } => {
            setup(false)?;
            build_ui(release)
        }
        Cmd::App { release } => {
            setup(false)?;
            launch_app(release)
        }
        Cmd::Deb { debug } => {
            setup(false)?;
            deb(debug)
        }
        Cmd::Fuzz { seconds } => {
            setup(true)?;
            fuzz(seconds)
        }
    }
}

fn root() -> Result<PathBuf> {
    // `cargo run` sets the variable for the process too; prefer it, since a build reused from
    // a target directory shared with another checkout has that checkout's path compiled in.
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
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

/// A program's full path, from PATH.
fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(program)).find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Debian packages needed to build: a C compiler for bundled SQLite, pkg-config, the
/// system libraries of the Tauri shell (WebKitGTK 4.1 and friends), and Node/npm for the
/// bundled Monaco editor package.
const APT_PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    "libwebkit2gtk-4.1-dev",
    "libgtk-3-dev",
    "libayatana-appindicator3-dev",
    "librsvg2-dev",
    "libssl-dev",
    "libxdo-dev",
    "libsoup-3.0-dev",
    "libjavascriptcoregtk-4.1-dev",
    // libdbus for the keychain (the keyring crate's Secret Service backend).
    "libdbus-1-dev",
    "nodejs",
    "npm",
];

/// More for the tests: the OCI image checks (skopeo, umoci, bubblewrap, runc) and the
/// Python face (a Python with venv).
/// Python face (a Python with venv), and the desktop end-to-end and component tests (a
/// virtual display, WebKitGTK's WebDriver, headless Chromium and its driver, xdotool for
/// native menu accelerators).
const APT_TEST_PACKAGES: &[&str] = &[
    "skopeo",
    "umoci",
    "bubblewrap",
    "runc",
    "python3",
    "python3-venv",
    "xvfb",
    "xauth",
    "webkit2gtk-driver",
    "chromium",
    "chromium-driver",
    "xdotool",
    // A private Secret Service for the keychain test: session bus, gnome-keyring, secret-tool.
    "dbus",
    "dbus-x11",
    "gnome-keyring",
    "libsecret-tools",
];

fn setup(for_tests: bool) -> Result<()> {
    step("setup: system packages");
    let wanted: Vec<&str> =
        APT_PACKAGES.iter().chain(if for_tests { APT_TEST_PACKAGES } else { &[] }).copied().collect();
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        // Node and npm may come from elsewhere than Debian's packages: a working command is enough.
        .filter(|p| !((*p == "nodejs" && have("node")) || (*p == "npm" && have("npm"))))
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
    ensure_wasm_tools()?;
    if for_tests {
        step("setup: tauri-driver");
        if have("tauri-driver") {
            println!("    tauri-driver present");
        } else {
            // crates.io also serves 3.0 alphas: stay on 2.x.
            run(Command::new("cargo").args(["install", "tauri-driver", "--version", "^2", "--locked"]))?;
        }
        step("setup: cargo-fuzz");
        if have("cargo-fuzz") {
            println!("    cargo-fuzz present");
        } else {
            run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
        }
    }
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"))
}

fn hz() -> PathBuf {
    target_dir().join("release").join("hz")
}

fn cache_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).context("HOME is not set")?;
    Ok(home.join(".cache").join("440hz"))
}

/// The version of a package in Cargo.lock (the wasm-bindgen CLI must match the library).
fn locked_version(name: &str) -> Result<String> {
    let lock = std::fs::read_to_string("Cargo.lock").context("reading Cargo.lock")?;
    let needle = format!("name = \"{name}\"\nversion = \"");
    let at = lock.find(&needle).with_context(|| format!("{name} is not in Cargo.lock"))? + needle.len();
    Ok(lock[at..].split('"').next().unwrap_or_default().to_string())
}

/// The wasm32 target and the wasm-bindgen CLI of exactly the locked version.
fn ensure_wasm_tools() -> Result<()> {
    step("setup: wasm32 target and wasm-bindgen CLI");
    let targets = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match targets {
        Ok(o) if !String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown") => {
            run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
        }
        Ok(_) => println!("    wasm32-unknown-unknown present"),
        Err(_) => println!("    no rustup: assuming the toolchain has wasm32-unknown-unknown"),
    }
    let want = locked_version("wasm-bindgen")?;
    let have_version = Command::new("wasm-bindgen")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if have_version.ends_with(&want) {
        println!("    {have_version}");
    } else {
        // Not --locked: the CLI's own lock names crate versions the registry may lack.
        run(Command::new("cargo").args(["install", "wasm-bindgen-cli", "--version", &want]))?;
    }
    Ok(())
}

/// The npm packages the UI bundles (Monaco) or the build uses (Tauri's CLI for the .deb),
/// installed once under the cache.
const NPM_PACKAGES: &[&str] = &["monaco-editor@0.57.0", "@tauri-apps/cli@2.12.5"];

fn npm_dir() -> Result<PathBuf> {
    let dir = cache_dir()?.join("npm");
    let marker = dir.join(".installed");
    let want = NPM_PACKAGES.join(" ");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(want.as_str()) {
        step("setup: npm packages (Monaco editor, Tauri CLI)");
        std::fs::create_dir_all(&dir)?;
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--no-save", "--prefix"])
            .arg(&dir)
            .args(NPM_PACKAGES))?;
        std::fs::write(&marker, &want)?;
    }
    Ok(dir)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest).with_context(|| format!("copying to {}", dest.display()))?;
        }
    }
    Ok(())
}

/// Build ui/ to wasm, bind it, and assemble ui/dist with the page, styles and Monaco.
fn build_ui(release: bool) -> Result<()> {
    let npm = npm_dir()?;
    step("build the UI (wasm)");
    let mut cargo = Command::new("cargo");
    cargo.args(["build", "-p", "hz-ui", "--lib", "--target", "wasm32-unknown-unknown"]);
    if release {
        cargo.arg("--release");
    }
    run(&mut cargo)?;
    let wasm =
        target_dir().join("wasm32-unknown-unknown").join(if release { "release" } else { "debug" }).join("hz_ui.wasm");
    let dist = PathBuf::from("ui").join("dist");
    if dist.exists() {
        std::fs::remove_dir_all(&dist)?;
    }
    std::fs::create_dir_all(&dist)?;
    run(Command::new("wasm-bindgen")
        .args(["--target", "web", "--no-typescript", "--out-name", "hz_ui", "--out-dir"])
        .arg(&dist)
        .arg(&wasm))?;
    std::fs::copy("ui/index.html", dist.join("index.html"))?;
    std::fs::copy("ui/style.css", dist.join("style.css"))?;
    copy_tree(Path::new("ui/public"), &dist)?;
    let vs = npm.join("node_modules").join("monaco-editor").join("min").join("vs");
    copy_tree(&vs, &dist.join("monaco").join("vs"))?;
    // Monaco's workers are hashed file names: map its worker labels to them, so the editor
    // starts its workers from this origin (the CSP allows no remote or inline script).
    let mut workers = Vec::new();
    for entry in std::fs::read_dir(vs.join("assets"))? {
        let name = entry?.file_name().to_string_lossy().to_string();
        if let Some((label, _)) = name.split_once(".worker-") {
            workers.push(format!("{label:?}: \"monaco/vs/assets/{name}\""));
        }
    }
    workers.sort();
    let env = format!(
        "// Generated by cargo xtask ui: where Monaco finds its workers.\n\
         self.MonacoEnvironment = {{\n  workers: {{ {} }},\n  getWorker: function (_id, label) {{\n    \
         var w = this.workers;\n    var url = w[label] || (label === 'typescript' || label === 'javascript' ? w.ts : null) || w.editor;\n    \
         return new Worker(url, {{ type: 'module', name: label }});\n  }}\n}};\n",
        workers.join(", ")
    );
    std::fs::write(dist.join("monaco-env.js"), env)?;
    println!("    ui/dist ready");
    Ok(())
}

fn app_binary(release: bool) -> PathBuf {
    target_dir().join(if release { "release" } else { "debug" }).join("440hz")
}

/// Build the UI, then the desktop app (which embeds ui/dist).
fn build_app(release: bool) -> Result<PathBuf> {
    build_ui(release)?;
    step("build the desktop app");
    let mut cargo = Command::new("cargo");
    cargo.args(["build", "-p", "hz-desktop"]);
    if release {
        cargo.arg("--release");
    }
    run(&mut cargo)?;
    Ok(app_binary(release))
}

fn launch_app(release: bool) -> Result<()> {
    let bin = build_app(release)?;
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        bail!(
            "no display to open the window on (DISPLAY and WAYLAND_DISPLAY are unset); \
             run it under a virtual one: xvfb-run -a {}",
            bin.display()
        );
    }
    step("launch 440hz");
    run(&mut Command::new(bin))
}

/// Re-roots the paths in `tauri.conf.json` (relative to the repository root, where the
/// config lives) to absolute ones, for Tauri's CLI: the CLI resolves paths against the
/// folder of the Rust crate (`src-tauri/`), the app's build against the config's folder.
/// Absolute paths mean the same to both. Node runs it: the CLI is a Node package anyway.
const REROOT_CONFIG_JS: &str = r#"
const fs = require('fs'), path = require('path');
const [src, out] = process.argv.slice(1);
const base = path.dirname(path.resolve(src));
const abs = (p) => (path.isAbsolute(p) ? p : path.join(base, p));
const c = JSON.parse(fs.readFileSync(src, 'utf8'));
if (c.build && typeof c.build.frontendDist === 'string') c.build.frontendDist = abs(c.build.frontendDist);
const b = c.bundle || {};
if (Array.isArray(b.icon)) b.icon = b.icon.map(abs);
if (Array.isArray(b.resources)) b.resources = Object.fromEntries(b.resources.map((p) => [abs(p), p]));
else if (b.resources && typeof b.resources === 'object')
  b.resources = Object.fromEntries(Object.entries(b.resources).map(([k, v]) => [abs(k), v]));
fs.writeFileSync(out, JSON.stringify(c, null, 2));
"#;

/// Tauri's CLI from the npm cache, and the `--config` it is given: the root
/// `tauri.conf.json` with its paths made absolute (written under the target directory).
/// The CLI finds the crate by `src-tauri/Tauri.toml`, which holds no settings.
fn tauri_cli() -> Result<(PathBuf, PathBuf)> {
    let cli = npm_dir()?.join("node_modules").join(".bin").join("tauri");
    if !cli.is_file() {
        bail!("Tauri's CLI is missing at {} (remove the .installed marker next to it to reinstall)", cli.display());
    }
    let target = std::env::current_dir()?.join(target_dir());
    std::fs::create_dir_all(&target)?;
    let config = target.join("tauri-bundle.conf.json");
    run(Command::new("node").arg("-e").arg(REROOT_CONFIG_JS).arg("tauri.conf.json").arg(&config))?;
    Ok((cli, config))
}

/// Build the .deb: `tauri build --bundles deb` (release UI, release app with Tauri's
/// `custom-protocol`), or with `debug` the debug build bundled as it is.
fn deb(debug: bool) -> Result<()> {
    if debug {
        build_app(false)?;
    } else {
        build_ui(true)?;
    }
    package_deb(debug)
}

/// Run Tauri's CLI for the .deb — `tauri build` (release), or `tauri bundle --debug` over the
/// debug binary as cargo built it (no rebuild: what CI does after the tests) — then check
/// the package and report its size and the binary's in `bench-results/deb-<profile>.json`.
fn package_deb(debug: bool) -> Result<()> {
    let started = Instant::now();
    let (cli, config) = tauri_cli()?;
    let profile = if debug { "debug" } else { "release" };
    let bundle_dir = target_dir().join(profile).join("bundle").join("deb");
    if bundle_dir.exists() {
        std::fs::remove_dir_all(&bundle_dir)?;
    }
    let mut tauri = Command::new(cli);
    if debug {
        step("tauri bundle --debug --bundles deb");
        // The debug binary stays exactly as cargo built it (the tests run it).
        tauri.args(["bundle", "--debug", "--no-binary-patching"]);
    } else {
        step("tauri build --bundles deb");
        tauri.arg("build");
    }
    tauri.args(["--bundles", "deb", "--ci", "--config"]).arg(config).current_dir("src-tauri");
    run(&mut tauri)?;
    let debs: Vec<PathBuf> = std::fs::read_dir(&bundle_dir)
        .with_context(|| format!("reading {}", bundle_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    let [deb] = debs.as_slice() else {
        bail!("expected one .deb in {}, found {}", bundle_dir.display(), debs.len());
    };
    let binary = app_binary(!debug);
    let sizes = check_deb(deb, &binary)?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "    {}: {:.1} MiB; binary {}: {:.1} MiB ({seconds:.0} s)",
        deb.display(),
        sizes.0 as f64 / 1048576.0,
        binary.display(),
        sizes.1 as f64 / 1048576.0
    );
    std::fs::create_dir_all("bench-results")?;
    let out = PathBuf::from("bench-results").join(format!("deb-{profile}.json"));
    std::fs::write(
        &out,
        format!(
            "{{\n  \"profile\": \"{profile}\",\n  \"deb_bytes\": {},\n  \"binary_bytes\": {},\n  \"seconds\": {seconds:.1}\n}}\n",
            sizes.0, sizes.1
        ),
    )?;
    println!("    wrote {}", out.display());
    Ok(())
}

/// What the .deb must hold, relative to `/`.
const DEB_FILES: &[&str] = &[
    "usr/bin/440hz",
    "usr/share/applications/440hz.desktop",
    "usr/share/icons/hicolor/32x32/apps/440hz.png",
    "usr/share/icons/hicolor/128x128/apps/440hz.png",
    "usr/share/icons/hicolor/512x512/apps/440hz.png",
    "usr/lib/440hz/gym-templates/sql-analyst/sql-analyst.gym.json",
];

/// Check a .deb with `dpkg-deb`: control fields, the files it installs, the desktop entry,
/// and that its binary is the one built. Returns (package bytes, binary bytes).
fn check_deb(deb: &Path, binary: &Path) -> Result<(u64, u64)> {
    step(&format!("check {}", deb.display()));
    let info = output(Command::new("dpkg-deb").arg("-I").arg(deb))?;
    for field in ["Package: 440hz", "Architecture: amd64", "Depends: libwebkit2gtk-4.1-0, libgtk-3-0"] {
        if !info.lines().any(|l| l.trim() == field) {
            bail!("dpkg-deb -I {}: no `{field}` in\n{info}", deb.display());
        }
    }
    let listing = output(Command::new("dpkg-deb").arg("-c").arg(deb))?;
    // Each line ends in the path (`./usr/bin/440hz` or `usr/bin/440hz`).
    let paths: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches("./").trim_end_matches('/'))
        .collect();
    for want in DEB_FILES {
        if !paths.contains(want) {
            bail!("{} does not install /{want}; it holds:\n{listing}", deb.display());
        }
    }
    let templates = paths.iter().filter(|p| p.starts_with("usr/lib/440hz/gym-templates/") && p.ends_with(".gym.json"));
    let unpacked = std::env::temp_dir().join(format!("hz-deb-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&unpacked);
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&unpacked))?;
    let desktop = std::fs::read_to_string(unpacked.join("usr/share/applications/440hz.desktop"))?;
    let packed = std::fs::read(unpacked.join("usr/bin/440hz"))?;
    let built = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let _ = std::fs::remove_dir_all(&unpacked);
    for line in ["Exec=440hz", "Icon=440hz", "Type=Application"] {
        if !desktop.lines().any(|l| l.trim() == line) {
            bail!("the desktop entry lacks `{line}`:\n{desktop}");
        }
    }
    // The packed binary is the built one, but for the package type Tauri's CLI stamps into
    // the copy it packs (a few bytes of its `__TAURI_BUNDLE_TYPE` marker).
    let differing = packed.iter().zip(&built).filter(|(a, b)| a != b).count();
    if packed.len() != built.len() || differing > 16 {
        bail!(
            "the packed binary ({} bytes, {differing} differ) is not the built {} ({} bytes)",
            packed.len(),
            binary.display(),
            built.len()
        );
    }
    println!(
        "    control fields, {} files ({} template gyms), desktop entry and binary as expected",
        DEB_FILES.len(),
        templates.count()
    );
    Ok((std::fs::metadata(deb)?.len(), packed.len() as u64))
}

/// A command's standard output; fails with its standard error.
fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("starting {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
    let has_display = std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if has_display {
        // The main job: the desktop app (Gym Builder) on embedded defaults.
        return launch_app(false);
    }
    println!(
        "\n    no display (DISPLAY and WAYLAND_DISPLAY are unset): the desktop app needs one \
         (xvfb-run -a cargo xtask app); playing a gym in the terminal instead"
    );
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
    // The shell embeds ui/dist at build time: build the UI first, so clippy and the tests
    // see the real one.
    build_ui(false)?;
    step("cargo clippy --all-targets -D warnings");
    run(Command::new("cargo").args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    step("cargo clippy (wasm: the UI and the editor canvas)");
    run(Command::new("cargo").args([
        "clippy",
        "-p",
        "hz-ui",
        "-p",
        "leptos-flow",
        "--all-targets",
        "--target",
        "wasm32-unknown-unknown",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Built with every target so features unify exactly as in `cargo test --workspace`:
    // the test run then reuses this build instead of compiling the Tauri stack again.
    step("build the desktop app (for the end-to-end tests) and every test target");
    run(Command::new("cargo").args(["build", "--workspace", "--all-targets"]))?;
    let app = app_binary(false);
    step("setup: Python venv for the Python face (pinned packages)");
    let venv = python_venv()?;
    step("cargo test");
    run(Command::new("cargo")
        .args(["test", "--workspace"])
        .env("HZ_PYTHON", venv.join("bin").join("python"))
        .env("HZ_APP_BIN", std::fs::canonicalize(&app)?)
        .env("HZ_E2E_REQUIRED", "1"))?;
    step("keychain test (a private D-Bus session with gnome-keyring)");
    run(Command::new("bash").arg("crates/hz-cli/tests/keychain-session.sh"))?;
    // The .deb bundling (config, icons, desktop entry, resources) over the debug build the
    // tests ran: seconds, no rebuild. `cargo xtask deb` makes the release package.
    package_deb(true)?;
    step("component tests of the editor canvas in headless Chromium");
    run(Command::new("cargo")
        .args(["test", "-p", "leptos-flow", "--target", "wasm32-unknown-unknown", "--test", "browser"])
        .env("CHROMEDRIVER", which("chromedriver").context("chromedriver is not on PATH (Debian: chromium-driver)")?))?;
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
