//! The `hz` binary as a user runs it.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn hz(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hz")).args(args).current_dir(root()).output().expect("hz runs")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const SQL: &str = "gym-templates/sql-analyst/sql-analyst.gym.json";

#[test]
fn check_passes_on_a_template() {
    let out = hz(&["gym", "check", SQL, "--episodes", "4"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok   seed determinism"), "{stdout}");
}

#[test]
fn check_fails_with_itemised_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec: Value = serde_json::from_str(&std::fs::read_to_string(root().join(SQL)).unwrap()).unwrap();
    // Break two things: an unknown state variable and a missing fixture file.
    let nodes = spec["nodes"].as_array_mut().unwrap();
    let reward = nodes.iter_mut().find(|n| n["kind"] == "reward" && n.get("when").is_some()).unwrap();
    reward["when"] = Value::String("state.no_such_var > 0".into());
    let node_id = reward["id"].as_str().unwrap().to_string();
    let path = dir.path().join("broken.gym.json");
    std::fs::create_dir_all(dir.path().join("fixtures")).unwrap();
    std::fs::copy(root().join("gym-templates/sql-analyst/fixtures/shop.sql"), dir.path().join("fixtures/shop.sql"))
        .unwrap();
    std::fs::write(&path, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
    let out = hz(&["gym", "check", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("node `{node_id}`, field `when`: `state.no_such_var`: undeclared state variable")),
        "{stdout}"
    );

    std::fs::remove_file(dir.path().join("fixtures/shop.sql")).unwrap();
    let out = hz(&["gym", "check", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("fixture `shop`") && stdout.contains("cannot read"), "{stdout}");
}

#[test]
fn run_prints_a_trajectory_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let actions = dir.path().join("a.jsonl");
    std::fs::write(
        &actions,
        "{\"name\": \"run_sql\", \"arguments\": {\"sql\": \"SELECT count(*) FROM customers\"}}\n\"not a tool call\"\n",
    )
    .unwrap();
    let out = hz(&["gym", "run", SQL, "--seed", "5", "--actions", actions.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["event"], "reset");
    assert_eq!(lines[1]["event"], "step");
    assert!(lines[1]["observation"].as_str().unwrap().contains("(1 row)"));
    assert!(lines[2]["info"]["invalid_action"].is_string());
    assert_eq!(lines[3]["event"], "end");
    // Same seed and actions: byte-identical output.
    let again = hz(&["gym", "run", SQL, "--seed", "5", "--actions", actions.to_str().unwrap()]);
    assert_eq!(out.stdout, again.stdout);
}

#[test]
fn schema_is_json_schema_of_the_spec() {
    let out = hz(&["gym", "schema"]);
    assert!(out.status.success());
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["title"], "GymSpec");
    assert!(schema["required"].as_array().unwrap().iter().any(|r| r == "spec_version"));
    let text = String::from_utf8_lossy(&out.stdout);
    for kind in ["sql_query", "mock_cli", "overseer", "return_step", "switch", "extract"] {
        assert!(text.contains(kind), "{kind} missing from schema");
    }
}

#[test]
fn play_reads_actions_from_the_terminal() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hz"))
        .args(["gym", "play", "gym-templates/email-triage/email-triage.gym.json", "--seed", "2"])
        .current_dir(root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.as_mut().unwrap().write_all(b"category: billing; priority: low; team: finance\n:quit\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("reward") && stdout.contains("terminated"), "{stdout}");
}

#[test]
fn bench_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("b.json");
    let out = hz(&["bench", "gym", SQL, "--steps", "200", "--out", out_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(out_file).unwrap()).unwrap();
    assert!(doc["results"][0]["steps_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn serve_answers_healthz_and_stops_on_kill() {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_hz"))
        .args(["gym", "serve", SQL, "--port", "0"])
        .current_dir(root())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"status\":\"ok\"") && resp.contains("sql-analyst"), "{resp}");
}

/// Run hz with a private data directory.
fn hz_in(data: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hz")).args(args).env("HZ_DATA_DIR", data).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn commit_log_diff_checkout_round_trip() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = root().join("gym-templates/email-triage");
    std::fs::create_dir_all(work.path().join("fixtures")).unwrap();
    std::fs::copy(src.join("email-triage.gym.json"), work.path().join("email-triage.gym.json")).unwrap();
    std::fs::copy(src.join("fixtures/policy.md"), work.path().join("fixtures/policy.md")).unwrap();
    let gym = work.path().join("email-triage.gym.json");
    let g = gym.to_str().unwrap();
    let original = std::fs::read(&gym).unwrap();

    let (ok, out) = hz_in(data.path(), &["gym", "commit", g, "-m", "first"]);
    assert!(ok && out.contains("committed email-triage v1"), "{out}");
    let (ok, out) = hz_in(data.path(), &["gym", "commit", g, "-m", "again"]);
    assert!(ok && out.contains("nothing to commit"), "{out}");

    // Change a node field and the policy fixture.
    let mut spec: Value = serde_json::from_slice(&original).unwrap();
    spec["max_steps"] = Value::from(3);
    std::fs::write(&gym, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
    std::fs::write(work.path().join("fixtures/policy.md"), "new policy").unwrap();
    let (ok, out) = hz_in(data.path(), &["gym", "checkout", g, "v1"]);
    assert!(!ok && out.contains("uncommitted changes"), "{out}");
    let (ok, out) = hz_in(data.path(), &["gym", "diff", g, "v1"]);
    assert!(ok && out.contains("~ max_steps: 2 → 3"), "{out}");
    let (ok, out) = hz_in(data.path(), &["gym", "commit", g, "-m", "longer episodes"]);
    assert!(ok && out.contains("v2"), "{out}");
    let (ok, out) = hz_in(data.path(), &["gym", "diff", g, "v1", "v2"]);
    assert!(ok && out.contains("~ file fixtures/policy.md") && out.contains("~ max_steps"), "{out}");
    let (ok, out) = hz_in(data.path(), &["gym", "log", g]);
    assert!(ok && out.contains("* v2") && out.contains("  v1"), "{out}");

    // Roll back: files are byte-identical to v1.
    let (ok, out) = hz_in(data.path(), &["gym", "checkout", g, "v1"]);
    assert!(ok, "{out}");
    assert_eq!(std::fs::read(&gym).unwrap(), original);
    assert_eq!(
        std::fs::read(work.path().join("fixtures/policy.md")).unwrap(),
        std::fs::read(src.join("fixtures/policy.md")).unwrap()
    );

    // A corrupted blob is reported, not used.
    let store = data.path().join("store/blobs/sha256");
    let mut corrupted = 0;
    for d in std::fs::read_dir(&store).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let f = f.unwrap().path();
            if std::fs::read(&f).unwrap() == b"new policy" {
                std::fs::write(&f, b"evil policy").unwrap();
                corrupted += 1;
            }
        }
    }
    assert_eq!(corrupted, 1);
    let (ok, out) = hz_in(data.path(), &["gym", "checkout", g, "v2"]);
    assert!(!ok && out.contains("corrupted"), "{out}");
}
