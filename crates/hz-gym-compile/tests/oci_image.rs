//! The container face end to end: compile a template with the real `hz` binary, check the
//! layout with `skopeo inspect`, unpack it with `umoci`, start the server from the unpacked
//! root filesystem inside `bwrap` (which sees only that rootfs) and ask it for `/healthz`;
//! then run umoci's runtime bundle with `runc` and ask again.
//!
//! Needs the `hz` binary (`cargo build -p hz-cli`, or `HZ_BIN=/path/to/hz`) and the apt
//! packages `skopeo umoci bubblewrap runc`. A missing tool fails the test, naming the package.

use hz_gym::GymBundle;
use hz_gym_compile::oci::{oci_layout, OciImage};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn hz_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HZ_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"));
    let hz = target.join("debug/hz");
    assert!(hz.is_file(), "no hz binary at {}: run `cargo build -p hz-cli` first or set HZ_BIN", hz.display());
    hz
}

/// Run a tool; a tool that is not installed fails the test with the apt package to install.
fn run(tool: &str, package: &str, args: &[&str]) -> Output {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{tool}` ({e}): install it with `apt-get install -y {package}`"));
    assert!(
        out.status.success(),
        "`{tool} {}` failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn require(tool: &str, package: &str) {
    if let Err(e) = Command::new(tool).arg("--version").output() {
        panic!("`{tool}` is needed ({e}): install it with `apt-get install -y {package}`");
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).map(|a| a.port()).unwrap()
}

/// GET `path` on 127.0.0.1:`port`, retrying while the server starts; the raw response.
fn get(port: u16, path: &str, server: &mut Killed) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = server.0.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = server.0.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("the server from the image exited with {status}:\n{err}");
        }
        if let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).unwrap();
            let mut resp = String::new();
            s.read_to_string(&mut resp).unwrap();
            return resp;
        }
        assert!(Instant::now() < deadline, "the server from the image did not listen on port {port} in 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn compiled_image_inspects_unpacks_and_serves() {
    for (tool, package) in [("skopeo", "skopeo"), ("umoci", "umoci"), ("bwrap", "bubblewrap"), ("runc", "runc")] {
        require(tool, package);
    }
    let hz = hz_binary();
    let template = workspace().join("gym-templates/sql-analyst/sql-analyst.gym.json");
    let bundle = GymBundle::load(&template).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("image");

    let started = Instant::now();
    let image: OciImage = oci_layout(&bundle, &hz, &layout).unwrap();
    eprintln!("compiled {} in {:?}: manifest {}", image.ref_name, started.elapsed(), image.manifest.digest);
    assert_eq!(image.ref_name, format!("sql-analyst-v{}", bundle.spec.version));

    // skopeo reads the layout and shows the labels.
    let layout_s = layout.to_str().unwrap();
    let out = run("skopeo", "skopeo", &["inspect", &format!("oci:{layout_s}:{}", image.ref_name)]);
    let inspect: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspect["Digest"], Value::from(image.manifest.digest.clone()), "{inspect:#}");
    assert_eq!(inspect["Labels"]["dev.440hz.gym.id"], Value::from(bundle.id().unwrap().to_hex()), "{inspect:#}");
    assert_eq!(inspect["Labels"]["org.opencontainers.image.title"], Value::from("sql-analyst"), "{inspect:#}");
    let layers: Vec<&str> = inspect["Layers"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let want: Vec<&str> = image.layers.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(layers, want);
    // Without a reference too: the index holds one image.
    run("skopeo", "skopeo", &["inspect", &format!("oci:{layout_s}")]);

    // umoci unpacks it into a runtime bundle.
    let unpacked = tmp.path().join("bundle");
    let unpacked_s = unpacked.to_str().unwrap();
    run("umoci", "umoci", &["unpack", "--rootless", "--image", &format!("{layout_s}:{}", image.ref_name), unpacked_s]);
    let rootfs = unpacked.join("rootfs");
    assert!(rootfs.join("usr/local/bin/hz").is_file());
    assert!(rootfs.join("gym/sql-analyst.gym.json").is_file());
    let runtime: Value = serde_json::from_slice(&std::fs::read(unpacked.join("config.json")).unwrap()).unwrap();
    let mut args: Vec<String> =
        runtime["process"]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    assert_eq!(args[..4], ["/usr/local/bin/hz", "gym", "serve", "/gym/sql-analyst.gym.json"]);
    // Same entrypoint, but on a free port: the sandbox shares the host's network.
    let port = free_port();
    let at = args.iter().position(|a| a == "--port").unwrap();
    args[at + 1] = port.to_string();

    // Start it with only the unpacked rootfs visible: it must run on what the image holds.
    let child = Command::new("bwrap")
        .args(["--bind", rootfs.to_str().unwrap(), "/", "--dev", "/dev", "--proc", "/proc"])
        .args([
            "--unshare-pid",
            "--die-with-parent",
            "--chdir",
            "/",
            "--clearenv",
            "--setenv",
            "PATH",
            "/usr/local/bin",
        ])
        .arg("--")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start bwrap ({e}): install it with `apt-get install -y bubblewrap`"));
    let mut server = Killed(child);
    let resp = get(port, "/healthz", &mut server);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("sql-analyst"), "{resp}");
    let spec = get(port, "/spec", &mut server);
    assert!(spec.starts_with("HTTP/1.1 200"), "{spec}");
    drop(server);

    // And as a container: runc runs umoci's (rootless) runtime bundle as it is, but for the
    // port and no terminal. The rootless config has no network namespace, so the host
    // reaches the server on loopback.
    let port = free_port();
    let mut config = runtime.clone();
    config["process"]["terminal"] = Value::Bool(false);
    config["process"]["args"][at + 1] = Value::from(port.to_string());
    std::fs::write(unpacked.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let state = tmp.path().join("runc-state");
    let state_s = state.to_str().unwrap();
    let id = format!("hz-oci-test-{}", std::process::id());
    let container = Command::new("runc")
        .args(["--root", state_s, "run", "--bundle", unpacked_s, &id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start runc ({e}): install it with `apt-get install -y runc`"));
    let mut container = Killed(container);
    let resp = get(port, "/healthz", &mut container);
    let _ = Command::new("runc").args(["--root", state_s, "kill", &id, "KILL"]).output();
    drop(container);
    let _ = Command::new("runc").args(["--root", state_s, "delete", "--force", &id]).output();
    assert!(resp.starts_with("HTTP/1.1 200"), "runc: {resp}");

    // Same input, same image: compiling again gives the same digests.
    let again = oci_layout(&bundle, &hz, &tmp.path().join("again")).unwrap();
    assert_eq!(again, image);
}
