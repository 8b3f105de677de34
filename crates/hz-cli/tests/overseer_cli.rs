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
