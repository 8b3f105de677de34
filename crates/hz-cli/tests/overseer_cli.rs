//! The overseer as `hz gym run` uses it: the key from the environment, judgements cached in
//! SQLite across runs.

mod judge;

use std::path::PathBuf;
use std::process::{Command, Output};

fn hz(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    Command::new(env!("CARGO_BIN_EXE_hz"))
        .args(args)
        .current_dir(root)
        .env_remove("HZ_OVERSEER_API_KEY")
        .envs(envs.iter().copied())
        .output()
        .expect("hz runs")
}

#[test]
fn the_key_comes_from_the_environment_and_judgements_survive_a_restart() {
    let judge = judge::Judge::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("judgements.sqlite");
    let args = [
        "gym",
        "run",
        "gym-templates/sql-analyst/sql-analyst.gym.json",
        "--solution",
        "--overseer-url",
        &judge.url,
        "--overseer-cache",
        cache.to_str().unwrap(),
    ];
    let first = hz(&args, &[("HZ_OVERSEER_API_KEY", "sk-env")]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("a reason is given"), "{stdout}");
    assert_eq!(judge.requests(), vec![Some("Bearer sk-env".to_string())]);

    // Same gym, seed and solution: the judgement comes from the file, no request is made.
    let second = hz(&args, &[("HZ_OVERSEER_API_KEY", "sk-env")]);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(String::from_utf8_lossy(&second.stdout), stdout);
    assert_eq!(judge.requests().len(), 1);
}

/// `--overseer-timeout-ms` and `--overseer-attempts` reach the client: against an endpoint that
/// accepts connections and never answers, the error names both limits.
#[test]
fn timeout_and_attempts_come_from_the_flags() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    // Hold each connection open without a reply; a bounded number, so the thread ends.
    let silent = std::thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..2 {
            match listener.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => break,
            }
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    });
    let args = [
        "gym",
        "run",
        "gym-templates/sql-analyst/sql-analyst.gym.json",
        "--solution",
        "--overseer-url",
        &url,
        "--overseer-timeout-ms",
        "300",
        "--overseer-attempts",
        "2",
    ];
    let out = hz(&args, &[("HZ_OVERSEER_API_KEY", "sk-env")]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("timed out after 2 attempt(s): the overall timeout of 300 ms passed"), "{text}");
    silent.join().unwrap();

    let bad = hz(&["gym", "run", "gym-templates/sql-analyst/sql-analyst.gym.json", "--overseer-attempts", "0"], &[]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--overseer-attempts"), "names the flag");
}
