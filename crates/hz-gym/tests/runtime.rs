//! Runtime behaviour on a small inline gym: Gymnasium semantics, itemised rewards,
//! malformed actions, determinism.

mod support;

use hz_gym::{Env, Gym, GymBundle, GymError, ResetOptions};
use serde_json::json;

fn env() -> Env {
    let gym = Gym::new(GymBundle::from_value(support::counter_gym(), None).unwrap()).unwrap();
    Env::new(gym, Default::default())
}

#[test]
fn good_play_terminates_with_itemised_reward() {
    let mut env = env();
    let (obs, info) = env.reset(0, &ResetOptions { task_id: Some("t3".into()), ..Default::default() }).unwrap();
    assert_eq!(obs, "Reach 3.");
    assert_eq!(info["task_id"], "t3");
    let r = env.step(&json!({"name": "add", "arguments": {"n": 3}})).unwrap();
    assert_eq!((r.observation.as_str(), r.reward, r.terminated, r.truncated), ("total=3", -0.1, false, false));
    let r = env.step(&json!({"name": "done", "arguments": {}})).unwrap();
    assert!(r.terminated && !r.truncated);
    assert_eq!(r.reward, 1.0);
    assert_eq!(r.info["rewards"], json!([{"source": "hit", "kind": "reward", "value": 1.0}]));
    assert!(matches!(env.step(&json!({"name": "done", "arguments": {}})), Err(GymError::EpisodeOver)));
}

#[test]
fn max_steps_truncates_not_terminates() {
    let mut env = env();
    env.reset(1, &ResetOptions::default()).unwrap();
    let mut last = None;
    for _ in 0..5 {
        last = Some(env.step(&json!({"name": "add", "arguments": {"n": 0}})).unwrap());
    }
    let last = last.unwrap();
    assert!(last.truncated && !last.terminated);
    assert!(env.done());
}

#[test]
fn constraint_violation_penalises_and_terminates() {
    let mut env = env();
    env.reset(0, &ResetOptions::default()).unwrap();
    env.step(&json!({"name": "add", "arguments": {"n": 10}})).unwrap();
    let r = env.step(&json!({"name": "add", "arguments": {"n": 1}})).unwrap();
    assert!(r.terminated);
    assert_eq!(r.info["violations"], json!(["over ten"]));
    assert!((r.reward - (-1.1)).abs() < 1e-9, "{}", r.reward);
}

#[test]
fn malformed_actions_are_observations_not_crashes() {
    let mut env = env();
    env.reset(0, &ResetOptions::default()).unwrap();
    for bad in [
        json!("{not json"),
        json!({"name": "fly"}),
        json!({"name": "add", "arguments": {"n": -4}}),
        json!(null),
        json!([1, 2]),
    ] {
        let r = env.step(&bad).unwrap();
        assert!(r.observation.starts_with("Invalid action:"), "{bad}: {}", r.observation);
        assert_eq!(r.reward, -0.5);
        assert_eq!(r.info["rewards"][0]["source"], "invalid_action");
        if r.truncated {
            break;
        }
    }
}

#[test]
fn step_before_reset_is_an_error() {
    let mut env = env();
    assert!(matches!(env.step(&json!({"name": "done"})), Err(GymError::NotReset)));
}

#[test]
fn seeds_pick_tasks_deterministically() {
    let ids = |seed| {
        let mut e = env();
        e.reset(seed, &ResetOptions::default()).unwrap().1["task_id"].clone()
    };
    for seed in 0..20 {
        assert_eq!(ids(seed), ids(seed));
    }
    let distinct: std::collections::BTreeSet<String> = (0..20).map(|s| ids(s).to_string()).collect();
    assert_eq!(distinct.len(), 2, "both tasks get sampled");
}

mod props {
    use super::*;
    use hz_gym::check::random_episode;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Same gym, seed and actions → byte-identical trajectory, for every template.
        #[test]
        fn trajectories_are_deterministic(seed in any::<u64>(), which in 0usize..16) {
            let paths = support::templates();
            let path = &paths[which % paths.len()];
            let gym = Gym::load(path).unwrap();
            let cfg = Default::default();
            let a = serde_json::to_string(&random_episode(&gym, &cfg, seed).unwrap()).unwrap();
            let b = serde_json::to_string(&random_episode(&gym, &cfg, seed).unwrap()).unwrap();
            prop_assert_eq!(a, b);
        }
    }
}

/// A text gym whose action is run as SQL on a writable sandbox.
fn sql_gym(read_only: bool) -> serde_json::Value {
    json!({
        "spec_version": 1, "name": "sqlw", "max_steps": 3,
        "tasks": [{"id": "a"}],
        "fixtures": {"db": {"kind": "sql", "inline": "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);"}},
        "nodes": [
            {"id": "reset", "kind": "on_reset"},
            {"id": "step", "kind": "on_step"},
            {"id": "space", "kind": "action_space", "mode": "text"},
            {"id": "obs0", "kind": "return_reset", "observation": "go"},
            {"id": "q", "kind": "sql_query", "database": "db", "query": "{{ action.text }}", "read_only": read_only},
            {"id": "out", "kind": "return_step", "observation": "x"}
        ],
        "edges": [
            {"from": {"node": "reset", "port": "out"}, "to": {"node": "obs0", "port": "in"}},
            {"from": {"node": "step", "port": "out"}, "to": {"node": "q", "port": "in"}},
            {"from": {"node": "q", "port": "out"}, "to": {"node": "out", "port": "in"}},
            {"from": {"node": "q", "port": "text"}, "to": {"node": "out", "port": "observation"}}
        ]
    })
}

#[test]
fn every_episode_starts_from_the_fixture_database() {
    let gym = Gym::new(GymBundle::from_value(sql_gym(false), None).unwrap()).unwrap();
    let mut env = Env::new(gym, Default::default());
    for _ in 0..3 {
        env.reset(0, &ResetOptions::default()).unwrap();
        let r = env.step(&json!("SELECT count(*) FROM t")).unwrap();
        assert!(r.observation.starts_with("count(*)\n2\n"), "{}", r.observation);
        env.step(&json!("INSERT INTO t VALUES (3)")).unwrap();
        let r = env.step(&json!("SELECT count(*) FROM t")).unwrap();
        assert!(r.observation.starts_with("count(*)\n3\n"), "{}", r.observation);
    }
    // Read-only: the write is refused, and random() restarts from the seed each episode.
    let gym = Gym::new(GymBundle::from_value(sql_gym(true), None).unwrap()).unwrap();
    let mut env = Env::new(gym, Default::default());
    let mut firsts = Vec::new();
    for _ in 0..2 {
        env.reset(9, &ResetOptions::default()).unwrap();
        firsts.push(env.step(&json!("SELECT random()")).unwrap().observation);
        let r = env.step(&json!("DELETE FROM t")).unwrap();
        assert!(r.observation.contains("read-only"), "{}", r.observation);
    }
    assert_eq!(firsts[0], firsts[1]);
}
