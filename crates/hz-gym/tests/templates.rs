//! Every template passes the checks, and a scripted good policy (the reference solutions)
//! scores clearly above a random one on every template.

mod support;

use hz_gym::check::{check, random_episode, solution_episode};
use hz_gym::Gym;

#[test]
fn there_are_at_least_four_templates_with_twenty_tasks() {
    let paths = support::templates();
    assert!(paths.len() >= 4, "{paths:?}");
    for p in &paths {
        let gym = Gym::load(p).unwrap();
        assert!(gym.spec().tasks.len() >= 20, "{}: {} tasks", p.display(), gym.spec().tasks.len());
        assert!(gym.spec().tasks.iter().all(|t| !t.solution.is_empty()), "{}: every task has a solution", p.display());
    }
}

#[test]
fn every_template_passes_check() {
    for p in support::templates() {
        let gym = Gym::load(&p).unwrap();
        let report = check(&gym, &Default::default(), 12);
        let failed: Vec<_> = report.checks.iter().filter(|c| !c.ok).collect();
        assert!(failed.is_empty(), "{}: {failed:#?}", p.display());
    }
}

#[test]
fn good_policy_beats_random_on_every_template() {
    for p in support::templates() {
        let gym = Gym::load(&p).unwrap();
        let cfg = Default::default();
        let n = gym.spec().tasks.len();
        let good: f64 =
            (0..n).map(|i| solution_episode(&gym, &cfg, i, i as u64).unwrap().total_reward).sum::<f64>() / n as f64;
        let episodes = 60;
        let random: f64 =
            (0..episodes).map(|s| random_episode(&gym, &cfg, 1000 + s).unwrap().total_reward).sum::<f64>()
                / episodes as f64;
        println!("{}: good {good:.3}, random {random:.3}", gym.spec().name);
        assert!(good - random >= 0.5, "{}: good {good:.3} is not clearly above random {random:.3}", p.display());
        assert!(good > 0.5, "{}: good policy mean {good:.3}", p.display());
    }
}
