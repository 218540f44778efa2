//! Experiments: one evaluation of an agent's outputs on a pinned dataset
//! version with pinned graders, stored with the provenance of every score.
//!
//! An experiment and all its per-example results are written in one sled
//! transaction and flushed before `save_experiment` returns, so an
//! acknowledged experiment is whole or absent, never partial. Records are
//! never rewritten: re-grading makes a new experiment.
//!
//! The store keeps summaries, gate results and agent runs as JSON it does not
//! interpret, so it stays free of the evaluation and runtime types.

use super::layout;
use super::{Store, StoreError, digest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use sled::Transactional;

/// The state of an experiment. Experiments graded from outputs sent with the
/// request are stored once grading has finished, so they are always
/// `completed`; one that calls a target endpoint is `running` until its
/// results are stored, and `failed` when it could not finish (the server
/// stopped, the store refused the write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExperimentStatus {
    Running,
    Completed,
    Failed,
}

/// A grader as pinned for an experiment: everything needed to say which code
/// with which configuration produced a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraderProvenance {
    pub name: String,
    pub version: String,
    /// `sha256:` and the component digest in lowercase hex.
    pub digest: String,
    pub config: Value,
    /// `sha256:` of the configuration's canonical JSON (keys sorted, no spaces).
    pub config_hash: String,
    pub score_keys: Vec<String>,
}

/// An experiment without its per-example results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// `exp-` and 16 random hex digits.
    pub id: String,
    /// The user's prefix, a dash and the id.
    pub name: String,
    pub dataset: String,
    pub dataset_version: u64,
    /// The content digest of that dataset version.
    pub dataset_digest: String,
    /// The WIT world the graders implement.
    pub world: String,
    pub graders: Vec<GraderProvenance>,
    /// Free JSON from the caller: git sha, pull request number, prompt revision.
    pub metadata: Value,
    /// Where the agent's runs came from: `{"kind": "outputs"}`, `{"kind":
    /// "target", "target": {...}}` or `{"kind": "regrade", "experiment": ID}`.
    #[serde(default)]
    pub runs_from: Value,
    pub status: ExperimentStatus,
    /// Who started it (the token's name).
    pub created_by: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub finished_at: Option<String>,
    pub example_count: u64,
    /// The evaluation summary (per key, per slice, severity-weighted).
    pub summary: Value,
    /// The gates held against it, as given at creation.
    pub gates: Value,
    /// Why a `failed` experiment did not finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One example's results: the agent run that was graded and what each grader said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleResultRecord {
    pub example_id: String,
    /// The example's string metadata (the slicing keys).
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// The agent run as graded (wire format).
    pub run: Value,
    /// One entry per grader, in the experiment's grader order.
    pub grades: Vec<GradeRecord>,
}

/// One grader's verdict on one example: its scores, or its failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradeRecord {
    pub grader: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<Vec<ScoreRecord>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureRecord>,
    pub fuel_used: u64,
    /// The judge exchanges of the call (request, and answer or error), as the
    /// runtime recorded them; a re-grade replays their answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub judge: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecord {
    pub key: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// `timeout`, `trap`, `grader_error`, ...
    pub kind: String,
    pub message: String,
}

/// `sha256:` of a configuration's canonical JSON, so equal configurations
/// written with different key order or spacing hash alike.
pub fn config_hash(config: &Value) -> String {
    let canonical = digest::sorted(config.clone()).to_string();
    format!("sha256:{}", hex::encode(Sha256::digest(canonical.as_bytes())))
}

/// A fresh experiment id, `exp-` and 16 hex digits from the same sources as
/// example ids (unique, not secret).
pub fn new_experiment_id() -> String {
    let uuid = super::new_example_id().replace('-', "");
    format!("exp-{}", &uuid[..16])
}

impl Store {
    /// Records an experiment that has started and has no results yet (status
    /// `running`), flushed before returning. An id that exists already is a
    /// `Conflict`.
    pub fn start_experiment(&self, experiment: &Experiment) -> Result<(), StoreError> {
        check_experiment_id(&experiment.id)?;
        let record = layout::encode_json(experiment, "experiment record")?;
        let id = experiment.id.as_bytes();
        self.trees
            .experiments
            .compare_and_swap(id, None::<&[u8]>, Some(record))?
            .map_err(|_| StoreError::Conflict(format!("experiment `{}` already exists", experiment.id)))?;
        self.flush()
    }

    /// Marks a `running` experiment `failed` with the reason. Returns false
    /// when it was not running (it finished or failed meanwhile).
    pub fn fail_experiment(&self, id: &str, reason: &str) -> Result<bool, StoreError> {
        let mut experiment = self.experiment(id)?;
        if experiment.status != ExperimentStatus::Running {
            return Ok(false);
        }
        let before = layout::encode_json(&experiment, "experiment record")?;
        experiment.status = ExperimentStatus::Failed;
        experiment.finished_at = Some(super::now_rfc3339());
        experiment.error = Some(reason.to_owned());
        let after = layout::encode_json(&experiment, "experiment record")?;
        let swapped = self.trees.experiments.compare_and_swap(id.as_bytes(), Some(before), Some(after))?.is_ok();
        self.flush()?;
        Ok(swapped)
    }

    /// Marks every experiment still `running` as `failed`: called when the
    /// server starts, since nothing can be running in a process that just
    /// began. Returns how many were marked.
    pub fn fail_interrupted_experiments(&self, reason: &str) -> Result<usize, StoreError> {
        let mut marked = 0;
        for experiment in self.list_experiments(None)? {
            if experiment.status == ExperimentStatus::Running && self.fail_experiment(&experiment.id, reason)? {
                marked += 1;
            }
        }
        Ok(marked)
    }

    /// Stores a finished experiment and all its results in one transaction,
    /// flushed before returning. It may replace the `running` record of the
    /// same id written by [`Store::start_experiment`]; any other existing id
    /// is a `Conflict`.
    pub fn save_experiment(&self, experiment: &Experiment, results: &[ExampleResultRecord]) -> Result<(), StoreError> {
        check_experiment_id(&experiment.id)?;
        let record = layout::encode_json(experiment, "experiment record")?;
        let encoded_results = results
            .iter()
            .enumerate()
            .map(|(index, result)| {
                Ok((
                    layout::experiment_result_key(&experiment.id, index as u64),
                    layout::encode_json(result, "experiment result")?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let id = experiment.id.as_str();
        (&self.trees.experiments, &self.trees.experiment_results)
            .transaction(|(experiments, experiment_results)| {
                if let Some(existing) = experiments.get(id.as_bytes())? {
                    let existing: Experiment = layout::decode_json(&existing, "experiment record")
                        .map_err(sled::transaction::ConflictableTransactionError::Abort)?;
                    if existing.status != ExperimentStatus::Running {
                        return Err(StoreError::Conflict(format!("experiment `{id}` already exists")).into());
                    }
                }
                for (key, value) in &encoded_results {
                    experiment_results.insert(key.as_slice(), value.as_slice())?;
                }
                experiments.insert(id.as_bytes(), record.as_slice())?;
                Ok(())
            })
            .map_err(super::from_transaction)?;
        self.flush()
    }

    /// Every experiment, or those of one dataset, newest first.
    pub fn list_experiments(&self, dataset: Option<&str>) -> Result<Vec<Experiment>, StoreError> {
        let mut experiments = Vec::new();
        for entry in self.trees.experiments.iter() {
            let (_, value) = entry?;
            let experiment: Experiment = layout::decode_json(&value, "experiment record")?;
            if dataset.is_none_or(|name| experiment.dataset == name) {
                experiments.push(experiment);
            }
        }
        experiments.sort_by(|left, right| right.created_at.cmp(&left.created_at).then(left.id.cmp(&right.id)));
        Ok(experiments)
    }

    /// One experiment without its results.
    pub fn experiment(&self, id: &str) -> Result<Experiment, StoreError> {
        match self.trees.experiments.get(id.as_bytes())? {
            Some(value) => layout::decode_json(&value, "experiment record"),
            None => Err(StoreError::NotFound { what: format!("experiment `{id}`") }),
        }
    }

    /// One experiment's results, in dataset order.
    pub fn experiment_results(&self, id: &str) -> Result<Vec<ExampleResultRecord>, StoreError> {
        self.experiment(id)?;
        let mut results = Vec::new();
        for entry in self.trees.experiment_results.scan_prefix(layout::dataset_prefix(id)) {
            let (_, value) = entry?;
            results.push(layout::decode_json(&value, "experiment result")?);
        }
        Ok(results)
    }
}

fn check_experiment_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.as_bytes().contains(&0) {
        return Err(StoreError::Invalid(vec![crate::model::FieldError {
            field: "id".into(),
            reason: "must be non-empty and hold no zero byte".into(),
        }]));
    }
    Ok(())
}

/// Two experiments compared example by example.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub a: Experiment,
    pub b: Experiment,
    /// False when the two graded different dataset versions: deltas then mix
    /// agent changes with dataset changes.
    pub same_dataset_version: bool,
    /// Per score key, in the order the graders of `a` (then `b`) declare them.
    pub keys: Vec<KeyDelta>,
    pub regression_count: usize,
    pub improvement_count: usize,
    /// Every (example, key) whose score changed: regressions first (largest
    /// drop first), then improvements (largest gain first).
    pub examples: Vec<ExampleChange>,
}

/// How one score key moved between two experiments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyDelta {
    pub key: String,
    /// Mean over the examples the key was scored on (grader failures excluded).
    pub mean_a: Option<f64>,
    pub mean_b: Option<f64>,
    /// `mean_b - mean_a`.
    pub delta: Option<f64>,
    pub regressed: usize,
    pub improved: usize,
}

/// Whether a score went down or up from `a` to `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Regressed,
    Improved,
}

/// One example whose score for one key differs, with both sides to read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExampleChange {
    pub example_id: String,
    pub key: String,
    pub direction: Direction,
    pub delta: f64,
    pub a: SideOfChange,
    pub b: SideOfChange,
}

/// One experiment's side of an [`ExampleChange`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideOfChange {
    /// The score, a grader failure counting as 0 (as in gates).
    pub value: f64,
    /// The grader's comment, or its failure as `kind: message`.
    pub comment: Option<String>,
    /// The agent's outputs (messages and tool calls) that were graded.
    pub outputs: Value,
    /// The agent's error on this example, if any.
    pub agent_error: Option<Value>,
}

/// Differences smaller than this are rounding, not change.
const CHANGE_TOLERANCE: f64 = 1e-9;

/// Compares experiment `b` against experiment `a`, example by example.
/// Examples present in only one of them, and keys not scored on both sides,
/// are left out: there is nothing to compare them with.
pub fn compare(
    a: Experiment,
    a_results: &[ExampleResultRecord],
    b: Experiment,
    b_results: &[ExampleResultRecord],
) -> Comparison {
    let mut keys: Vec<String> = Vec::new();
    for grader in a.graders.iter().chain(&b.graders) {
        for key in &grader.score_keys {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
    }
    let b_by_id: std::collections::HashMap<&str, &ExampleResultRecord> =
        b_results.iter().map(|result| (result.example_id.as_str(), result)).collect();
    let mut examples = Vec::new();
    for a_result in a_results {
        let Some(b_result) = b_by_id.get(a_result.example_id.as_str()) else { continue };
        for key in &keys {
            let (Some(a_grader), Some(b_grader)) = (grader_of(&a, key), grader_of(&b, key)) else { continue };
            let (Some(a_side), Some(b_side)) = (side_of(a_result, a_grader, key), side_of(b_result, b_grader, key))
            else {
                continue;
            };
            let delta = b_side.value - a_side.value;
            let direction = if delta < -CHANGE_TOLERANCE {
                Direction::Regressed
            } else if delta > CHANGE_TOLERANCE {
                Direction::Improved
            } else {
                continue;
            };
            examples.push(ExampleChange {
                example_id: a_result.example_id.clone(),
                key: key.clone(),
                direction,
                delta,
                a: a_side,
                b: b_side,
            });
        }
    }
    examples.sort_by(|left, right| {
        let rank = |change: &ExampleChange| match change.direction {
            Direction::Regressed => (0, change.delta),
            Direction::Improved => (1, -change.delta),
        };
        rank(left)
            .partial_cmp(&rank(right))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| left.example_id.cmp(&right.example_id))
            .then_with(|| left.key.cmp(&right.key))
    });
    let key_deltas = keys
        .iter()
        .map(|key| {
            let (mean_a, mean_b) = (scored_mean(a_results, key), scored_mean(b_results, key));
            let count = |direction: Direction| {
                examples.iter().filter(|change| change.key == *key && change.direction == direction).count()
            };
            KeyDelta {
                key: key.clone(),
                mean_a,
                mean_b,
                delta: mean_a.zip(mean_b).map(|(mean_a, mean_b)| mean_b - mean_a),
                regressed: count(Direction::Regressed),
                improved: count(Direction::Improved),
            }
        })
        .collect();
    let regression_count = examples.iter().filter(|change| change.direction == Direction::Regressed).count();
    Comparison {
        same_dataset_version: a.dataset == b.dataset && a.dataset_version == b.dataset_version,
        improvement_count: examples.len() - regression_count,
        regression_count,
        keys: key_deltas,
        examples,
        a,
        b,
    }
}

/// What `result` got for `key` from `grader`: the score, or 0 when that
/// grader failed on the example; `None` when the key was not scored.
fn side_of(result: &ExampleResultRecord, grader: &str, key: &str) -> Option<SideOfChange> {
    let grade = result.grades.iter().find(|grade| grade.grader == grader)?;
    let (value, comment) = match (&grade.scores, &grade.failure) {
        (Some(scores), _) => {
            let score = scores.iter().find(|score| score.key == key)?;
            (score.value, score.comment.clone())
        }
        (None, Some(failure)) => (0.0, Some(format!("{}: {}", failure.kind, failure.message))),
        (None, None) => return None,
    };
    Some(SideOfChange {
        value,
        comment,
        outputs: result.run.get("outputs").cloned().unwrap_or(Value::Null),
        agent_error: result.run.get("error").filter(|error| !error.is_null()).cloned(),
    })
}

/// The name of the grader of `experiment` that declares `key`.
fn grader_of<'a>(experiment: &'a Experiment, key: &str) -> Option<&'a str> {
    experiment
        .graders
        .iter()
        .find(|grader| grader.score_keys.iter().any(|declared| declared == key))
        .map(|grader| grader.name.as_str())
}

/// The mean of `key` over the examples that have a score for it.
fn scored_mean(results: &[ExampleResultRecord], key: &str) -> Option<f64> {
    let values: Vec<f64> = results
        .iter()
        .flat_map(|result| result.grades.iter().flat_map(|grade| grade.scores.iter().flatten()))
        .filter(|score| score.key == key)
        .map(|score| score.value)
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn experiment(id: &str, dataset: &str, created_at: &str) -> Experiment {
        Experiment {
            id: id.into(),
            name: format!("run-{id}"),
            dataset: dataset.into(),
            dataset_version: 1,
            dataset_digest: "digest".into(),
            world: "assay:grader/grader@0.1.0".into(),
            graders: vec![GraderProvenance {
                name: "must_not_say".into(),
                version: "0.1.0".into(),
                digest: "sha256:00".into(),
                config: json!({}),
                config_hash: config_hash(&json!({})),
                score_keys: vec!["policy_violations".into()],
            }],
            metadata: json!({"pr": 1}),
            status: ExperimentStatus::Completed,
            created_by: "ci".into(),
            created_at: created_at.into(),
            finished_at: Some(created_at.into()),
            example_count: 2,
            summary: json!({}),
            gates: json!([]),
            runs_from: json!({"kind": "outputs"}),
            error: None,
        }
    }

    fn result(example_id: &str, score: Option<f64>, content: &str) -> ExampleResultRecord {
        ExampleResultRecord {
            example_id: example_id.into(),
            metadata: Default::default(),
            run: json!({"example_id": example_id, "outputs": {"messages": [{"role": "assistant", "content": content}]}}),
            grades: vec![GradeRecord {
                grader: "must_not_say".into(),
                scores: score.map(|value| vec![ScoreRecord { key: "policy_violations".into(), value, comment: None }]),
                failure: score.is_none().then(|| FailureRecord { kind: "trap".into(), message: "boom".into() }),
                fuel_used: 1,
                judge: Vec::new(),
            }],
        }
    }

    #[test]
    fn experiments_are_saved_whole_listed_newest_first_and_never_overwritten() {
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open(directory.path()).unwrap();
        let results = [result("b", Some(1.0), "fine"), result("a", Some(0.0), "bad")];
        store.save_experiment(&experiment("exp-1", "triage", "2026-01-01T00:00:00Z"), &results).unwrap();
        store.save_experiment(&experiment("exp-2", "triage", "2026-01-02T00:00:00Z"), &results[..1]).unwrap();
        store.save_experiment(&experiment("exp-3", "other", "2026-01-03T00:00:00Z"), &[]).unwrap();
        let duplicate = store.save_experiment(&experiment("exp-1", "triage", "2026-01-04T00:00:00Z"), &[]);
        assert!(matches!(duplicate, Err(StoreError::Conflict(_))), "{duplicate:?}");

        let listed: Vec<String> = store.list_experiments(Some("triage")).unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(listed, ["exp-2", "exp-1"]);
        assert_eq!(store.list_experiments(None).unwrap().len(), 3);
        // Results keep their stored (dataset) order, and the duplicate left them untouched.
        let stored = store.experiment_results("exp-1").unwrap();
        assert_eq!(stored, results);
        assert_eq!(store.experiment("exp-1").unwrap().created_at, "2026-01-01T00:00:00Z");
        assert!(matches!(store.experiment_results("exp-9"), Err(StoreError::NotFound { .. })));
        drop(store);
        let reopened = Store::open(directory.path()).unwrap();
        assert_eq!(reopened.experiment_results("exp-1").unwrap(), results);
    }

    #[test]
    fn a_running_experiment_is_completed_once_or_marked_failed() {
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open(directory.path()).unwrap();
        let running = Experiment {
            status: ExperimentStatus::Running,
            finished_at: None,
            ..experiment("exp-run", "triage", "2026-01-01T00:00:00Z")
        };
        store.start_experiment(&running).unwrap();
        assert!(matches!(store.start_experiment(&running), Err(StoreError::Conflict(_))));
        assert_eq!(store.experiment("exp-run").unwrap().status, ExperimentStatus::Running);
        assert!(store.experiment_results("exp-run").unwrap().is_empty());
        // Completing replaces the running record, with the results, once.
        let results = [result("a", Some(1.0), "fine")];
        let completed = experiment("exp-run", "triage", "2026-01-01T00:00:00Z");
        store.save_experiment(&completed, &results).unwrap();
        assert_eq!(store.experiment("exp-run").unwrap(), completed);
        assert_eq!(store.experiment_results("exp-run").unwrap(), results);
        assert!(matches!(store.save_experiment(&completed, &[]), Err(StoreError::Conflict(_))));
        assert!(!store.fail_experiment("exp-run", "late").unwrap(), "a completed experiment stays completed");
        assert_eq!(store.experiment_results("exp-run").unwrap(), results);

        // A server that starts finds the running ones of the last process and marks them failed.
        let cut_short = Experiment { id: "exp-cut".into(), ..running.clone() };
        store.start_experiment(&cut_short).unwrap();
        drop(store);
        let reopened = Store::open(directory.path()).unwrap();
        assert_eq!(reopened.fail_interrupted_experiments("the server stopped").unwrap(), 1);
        let failed = reopened.experiment("exp-cut").unwrap();
        assert_eq!(failed.status, ExperimentStatus::Failed);
        assert_eq!(failed.error.as_deref(), Some("the server stopped"));
        assert!(failed.finished_at.is_some());
        assert_eq!(reopened.fail_interrupted_experiments("again").unwrap(), 0);
        assert_eq!(reopened.experiment("exp-run").unwrap().status, ExperimentStatus::Completed);
    }

    #[test]
    fn config_hashes_ignore_key_order_and_spacing() {
        let spaced: Value = serde_json::from_str(r#"{ "b": 1, "a": {"y": 2, "x": 3} }"#).unwrap();
        let tight: Value = serde_json::from_str(r#"{"a":{"x":3,"y":2},"b":1}"#).unwrap();
        assert_eq!(config_hash(&spaced), config_hash(&tight));
        assert_ne!(config_hash(&spaced), config_hash(&json!({"b": 2})));
        assert!(new_experiment_id().starts_with("exp-") && new_experiment_id().len() == 20);
    }

    #[test]
    fn comparison_lists_regressions_first_and_counts_grader_failures_as_zero() {
        let a = [result("e1", Some(1.0), "a1"), result("e2", Some(0.0), "a2"), result("e3", Some(1.0), "a3")];
        let b = [result("e1", None, "b1"), result("e2", Some(1.0), "b2"), result("e3", Some(0.5), "b3")];
        let comparison = compare(
            experiment("exp-a", "triage", "2026-01-01T00:00:00Z"),
            &a,
            experiment("exp-b", "triage", "2026-01-01T00:00:00Z"),
            &b,
        );
        let order: Vec<(&str, Direction)> =
            comparison.examples.iter().map(|change| (change.example_id.as_str(), change.direction)).collect();
        assert_eq!(order, [("e1", Direction::Regressed), ("e3", Direction::Regressed), ("e2", Direction::Improved)]);
        assert_eq!(comparison.examples[0].b.comment.as_deref(), Some("trap: boom"));
        assert_eq!(comparison.examples[0].b.outputs["messages"][0]["content"], "b1");
        assert_eq!(comparison.examples[0].a.outputs["messages"][0]["content"], "a1");
        assert_eq!((comparison.regression_count, comparison.improvement_count), (2, 1));
        let key = &comparison.keys[0];
        assert_eq!((key.mean_a, key.mean_b), (Some(2.0 / 3.0), Some(0.75)));
        assert!(comparison.same_dataset_version);
    }
}
