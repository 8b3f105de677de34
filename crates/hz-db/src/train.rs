//! Training runs and their metrics, step by step. A resumed run redoes the steps after its
//! last checkpoint, so steps are written with "insert or replace" and can be truncated.

use crate::{Db, DbError};
use rusqlite::{params, OptionalExtension};

/// A training run (keyed by its output folder).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainRunRow {
    pub run: String,
    pub algo: String,
    pub gym: String,
    pub model: String,
    /// The run's config as JSON.
    pub config: String,
    pub started_at: i64,
}

/// One step's metrics.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainStepRow {
    pub step: i64,
    pub reward_mean: f64,
    pub reward_std: f64,
    pub kl: f64,
    pub loss: f64,
    pub clip_fraction: f64,
    pub entropy: f64,
    pub completion_len: f64,
    pub tokens_per_s: f64,
    /// Per reward source: (source, mean, std).
    pub rewards: Vec<(String, f64, f64)>,
    /// The whole metrics line as JSON.
    pub metrics: String,
}

impl Db {
    /// Record a run; an existing row for the same folder is kept (its start time stays).
    pub fn add_train_run(&mut self, row: &TrainRunRow) -> Result<(), DbError> {
        self.conn.execute(
            "INSERT INTO train_runs (run, algo, gym, model, config, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (run) DO UPDATE SET config = excluded.config",
            params![row.run, row.algo, row.gym, row.model, row.config, row.started_at],
        )?;
        Ok(())
    }

    pub fn train_run(&self, run: &str) -> Result<Option<TrainRunRow>, DbError> {
        Ok(self
            .conn
            .query_row("SELECT run, algo, gym, model, config, started_at FROM train_runs WHERE run = ?1", [run], |r| {
                Ok(TrainRunRow {
                    run: r.get(0)?,
                    algo: r.get(1)?,
                    gym: r.get(2)?,
                    model: r.get(3)?,
                    config: r.get(4)?,
                    started_at: r.get(5)?,
                })
            })
            .optional()?)
    }

    /// Write a step (replacing what a killed run had written for it), in one transaction.
    pub fn record_train_step(&mut self, run: &str, s: &TrainStepRow) -> Result<(), DbError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO train_steps (run, step, reward_mean, reward_std, kl, loss, clip_fraction, entropy,
             completion_len, tokens_per_s, metrics) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                run,
                s.step,
                s.reward_mean,
                s.reward_std,
                s.kl,
                s.loss,
                s.clip_fraction,
                s.entropy,
                s.completion_len,
                s.tokens_per_s,
                s.metrics
            ],
        )?;
        tx.execute("DELETE FROM train_step_rewards WHERE run = ?1 AND step = ?2", params![run, s.step])?;
        for (source, mean, std) in &s.rewards {
            tx.execute(
                "INSERT INTO train_step_rewards (run, step, source, mean, std) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run, s.step, source, mean, std],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Forget steps `from` and later of a run.
    pub fn truncate_train_steps(&mut self, run: &str, from: i64) -> Result<(), DbError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM train_steps WHERE run = ?1 AND step >= ?2", params![run, from])?;
        tx.execute("DELETE FROM train_step_rewards WHERE run = ?1 AND step >= ?2", params![run, from])?;
        tx.commit()?;
        Ok(())
    }

    /// A run's steps in order.
    pub fn train_steps(&self, run: &str) -> Result<Vec<TrainStepRow>, DbError> {
        let mut stmt = self.conn.prepare(
            "SELECT step, reward_mean, reward_std, kl, loss, clip_fraction, entropy, completion_len, tokens_per_s, metrics
             FROM train_steps WHERE run = ?1 ORDER BY step",
        )?;
        let mut rows = stmt
            .query_map([run], |r| {
                Ok(TrainStepRow {
                    step: r.get(0)?,
                    reward_mean: r.get(1)?,
                    reward_std: r.get(2)?,
                    kl: r.get(3)?,
                    loss: r.get(4)?,
                    clip_fraction: r.get(5)?,
                    entropy: r.get(6)?,
                    completion_len: r.get(7)?,
                    tokens_per_s: r.get(8)?,
                    rewards: Vec::new(),
                    metrics: r.get(9)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut stmt = self
            .conn
            .prepare("SELECT source, mean, std FROM train_step_rewards WHERE run = ?1 AND step = ?2 ORDER BY source")?;
        for row in rows.iter_mut() {
            row.rewards = stmt
                .query_map(params![run, row.step], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(n: i64, reward: f64) -> TrainStepRow {
        TrainStepRow {
            step: n,
            reward_mean: reward,
            rewards: vec![("r_category".into(), reward, 0.1), ("invalid_action".into(), -0.3, 0.0)],
            metrics: format!("{{\"step\":{n}}}"),
            ..TrainStepRow::default()
        }
    }

    #[test]
    fn steps_are_replaced_truncated_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        {
            let mut db = Db::open(&path).unwrap();
            let run = TrainRunRow {
                run: "runs/a".into(),
                algo: "grpo".into(),
                gym: "g".into(),
                model: "m".into(),
                config: "{}".into(),
                started_at: 5,
            };
            db.add_train_run(&run).unwrap();
            db.add_train_run(&TrainRunRow { started_at: 9, config: "{\"steps\":9}".into(), ..run }).unwrap();
            for n in 0..4 {
                db.record_train_step("runs/a", &step(n, n as f64)).unwrap();
            }
            // A resumed run redoes steps 2 and 3 with other numbers.
            db.truncate_train_steps("runs/a", 2).unwrap();
            assert_eq!(db.train_steps("runs/a").unwrap().len(), 2);
            db.record_train_step("runs/a", &step(2, 20.0)).unwrap();
            db.record_train_step("runs/a", &step(2, 21.0)).unwrap();
        }
        let db = Db::open(&path).unwrap();
        let run = db.train_run("runs/a").unwrap().unwrap();
        assert_eq!((run.started_at, run.config.as_str()), (5, "{\"steps\":9}"));
        let steps = db.train_steps("runs/a").unwrap();
        assert_eq!(steps.iter().map(|s| s.step).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(steps[2].reward_mean, 21.0);
        assert_eq!(steps[2].rewards.len(), 2, "rewards of a replaced step are not doubled");
        assert_eq!(steps[2].rewards[1], ("r_category".to_string(), 21.0, 0.1));
        assert!(db.train_steps("runs/none").unwrap().is_empty());
    }
}
