//! Evaluations: grade every (example, agent run) pair of a dataset with a set
//! of graders, summarise the scores, hold them against gates, and report them
//! for CI (JUnit XML, Markdown).
//!
//! This module knows the wire model and the runtime's public API only: no
//! Wasmtime, sled or HTTP. It is shared by the offline `assay eval` and, later,
//! by server-side experiments, so the grader that gates a pull request is the
//! very artifact the server runs.

pub mod gate;
pub mod inputs;
pub mod junit;
pub mod markdown;
pub mod shadow;
pub mod summary;

pub use gate::{Gate, GateResult, GateSyntaxError, Operator, Slice};
pub use inputs::{LineError, Pairing, pair_runs, parse_examples, parse_runs};
pub use summary::{KeySummary, SeverityWeights, SliceSummary, Summary, SummaryConfig};

use crate::model::{AgentRun, Example};
use crate::runtime::{GradeFailure, Graded, GraderCall, JudgeExchange, Outcome, Runtime, Score, to_case};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// The graders run when none is named, by `assay eval` and by experiments.
pub const DEFAULT_GRADERS: &[&str] = &["must_not_say", "must_call"];

/// Cases graded per call of [`Runtime::grade_batch`]: small enough for a
/// progress bar to move smoothly, large enough that spawning the batch's
/// worker threads costs nothing next to the grading.
pub const CASES_PER_BATCH: usize = 64;

/// A grader as it was pinned for an evaluation: what produced the scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraderPin {
    pub name: String,
    pub version: String,
    /// `sha256:` and the component digest in lowercase hex.
    pub digest: String,
    /// The configuration given to every call, a JSON object.
    pub config: serde_json::Value,
    /// The score keys the grader declares, in its order.
    pub score_keys: Vec<String>,
}

impl GraderPin {
    /// Pins a loaded grader with the configuration it will be called with.
    pub fn of(grader: &crate::runtime::LoadedGrader, config: &serde_json::Value) -> GraderPin {
        GraderPin {
            name: grader.info.name.clone(),
            version: grader.info.version.clone(),
            digest: format!("sha256:{}", grader.digest),
            config: config.clone(),
            score_keys: grader.info.score_keys.clone(),
        }
    }
}

/// Everything an evaluation produced: the graders and every example's grades.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// The WIT world the graders implement.
    pub world: String,
    pub graders: Vec<GraderPin>,
    /// One entry per example, in dataset order.
    pub examples: Vec<ExampleResult>,
}

/// One example's grades, one per grader in [`Evaluation::graders`] order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExampleResult {
    pub example_id: String,
    /// The example's metadata values that are strings: the slicing keys.
    pub metadata: BTreeMap<String, String>,
    /// The agent's error for this example, when it had one (or produced no run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_error: Option<String>,
    pub grades: Vec<Graded>,
}

/// What one example got for one score key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyOutcome<'a> {
    /// The grader returned this score.
    Scored(&'a Score),
    /// The grader failed on this example, so none of its keys has a score.
    Error(&'a GradeFailure),
    /// The grader ran but did not return this key (it does not apply here).
    NotScored,
}

/// Judge exchanges recorded by an earlier evaluation, by example id and
/// grader name, for a re-grade to replay instead of asking the model again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JudgeReplay {
    recorded: HashMap<(String, String), Vec<JudgeExchange>>,
}

impl JudgeReplay {
    /// Offers `exchanges` to `grader` when it grades the example `example_id`.
    pub fn insert(&mut self, example_id: &str, grader: &str, exchanges: Vec<JudgeExchange>) {
        if !exchanges.is_empty() {
            self.recorded.insert((example_id.to_owned(), grader.to_owned()), exchanges);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.recorded.is_empty()
    }

    /// The exchanges offered to `grader` on `example_id`.
    pub fn get(&self, example_id: &str, grader: &str) -> &[JudgeExchange] {
        self.recorded.get(&(example_id.to_owned(), grader.to_owned())).map_or(&[], Vec::as_slice)
    }
}

/// The judge exchanges of an evaluation, `[example][grader]`, in the order
/// of its examples and graders (empty for graders that made none).
pub type JudgeRecords = Vec<Vec<Vec<JudgeExchange>>>;

impl Evaluation {
    /// Grades every pair with every grader. `on_progress` is told how many
    /// examples have been graded so far, after each batch.
    pub fn run(
        runtime: &Runtime,
        graders: Vec<GraderPin>,
        calls: &[GraderCall],
        pairs: &[(Example, AgentRun)],
        on_progress: &mut dyn FnMut(usize),
    ) -> Evaluation {
        Evaluation::run_recorded(runtime, graders, calls, pairs, &JudgeReplay::default(), on_progress).0
    }

    /// [`Evaluation::run`], also returning every judge exchange the graders
    /// made, and answering judge requests from `replay` where it has an
    /// equal recorded request (see [`Runtime::grade_recorded`]).
    pub fn run_recorded(
        runtime: &Runtime,
        graders: Vec<GraderPin>,
        calls: &[GraderCall],
        pairs: &[(Example, AgentRun)],
        replay: &JudgeReplay,
        on_progress: &mut dyn FnMut(usize),
    ) -> (Evaluation, JudgeRecords) {
        let mut examples = Vec::with_capacity(pairs.len());
        let mut judge = Vec::with_capacity(pairs.len());
        for batch in pairs.chunks(CASES_PER_BATCH) {
            let cases: Vec<_> = batch.iter().map(|(example, run)| to_case(example, run)).collect();
            let offered: Vec<Vec<Vec<JudgeExchange>>> = if replay.is_empty() {
                Vec::new()
            } else {
                batch
                    .iter()
                    .map(|(example, _)| {
                        let example_id = example.id.as_deref().unwrap_or_default();
                        calls.iter().map(|call| replay.get(example_id, &call.grader.info.name).to_vec()).collect()
                    })
                    .collect()
            };
            let rows = runtime.grade_batch_recorded(calls, &cases, &offered);
            for ((example, run), row) in batch.iter().zip(rows) {
                let (grades, exchanges) = row.into_iter().map(|recorded| (recorded.graded, recorded.judge)).unzip();
                judge.push(exchanges);
                examples.push(ExampleResult {
                    example_id: example.id.clone().unwrap_or_default(),
                    metadata: example
                        .metadata
                        .iter()
                        .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
                        .collect(),
                    agent_error: run.error.clone(),
                    grades,
                });
            }
            on_progress(examples.len());
        }
        (Evaluation { world: crate::runtime::WIT_WORLD.to_owned(), graders, examples }, judge)
    }

    /// The index of the grader that declares `key`.
    pub fn grader_of(&self, key: &str) -> Option<usize> {
        self.graders.iter().position(|grader| grader.score_keys.iter().any(|declared| declared == key))
    }

    /// Every declared score key with its grader's index, in grader order.
    pub fn score_keys(&self) -> impl Iterator<Item = (usize, &str)> {
        self.graders
            .iter()
            .enumerate()
            .flat_map(|(index, grader)| grader.score_keys.iter().map(move |key| (index, key.as_str())))
    }

    /// What `example` got for `key` from the grader at `grader_index`.
    pub fn outcome<'a>(example: &'a ExampleResult, grader_index: usize, key: &str) -> KeyOutcome<'a> {
        match example.grades.get(grader_index).map(|graded| &graded.outcome) {
            Some(Outcome::Scores(scores)) => {
                scores.iter().find(|score| score.key == key).map_or(KeyOutcome::NotScored, KeyOutcome::Scored)
            }
            Some(Outcome::Failure(failure)) => KeyOutcome::Error(failure),
            None => KeyOutcome::NotScored,
        }
    }
}

/// True when a score counts as a pass: graders report a pass as 1.0, and
/// anything less (a partial `required_tools_called`, a `token_f1` of 0.8) is
/// not a full pass. The tolerance absorbs rounding in graders that compute
/// fractions.
pub fn is_pass(value: f64) -> bool {
    value >= 1.0 - PASS_TOLERANCE
}

/// How far below 1.0 a score may be and still count as a pass.
pub const PASS_TOLERANCE: f64 = 1e-9;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeConfig;

    #[test]
    fn evaluation_grades_every_pair_in_order_with_real_graders() {
        let runtime = Runtime::new(RuntimeConfig { pooling: false, ..RuntimeConfig::default() }).unwrap();
        let grader = runtime.load(crate::graders::reference_grader("must_not_say").unwrap()).unwrap();
        let pin = GraderPin {
            name: grader.info.name.clone(),
            version: grader.info.version.clone(),
            digest: format!("sha256:{}", grader.digest),
            config: serde_json::json!({}),
            score_keys: grader.info.score_keys.clone(),
        };
        let calls = [GraderCall { grader: std::sync::Arc::new(grader), config: "{}".into() }];
        let example = |id: usize| {
            Example::from_json(&format!(
                r#"{{"id": "e{id}", "inputs": {{"messages": [{{"role": "user", "content": "hi"}}]}},
                    "outputs": {{"must_not_say": ["forbidden"]}}, "metadata": {{"severity": "p1", "rank": {id}}}}}"#
            ))
            .unwrap()
        };
        let run = |text: &str| {
            AgentRun::from_json(
                &serde_json::json!({"outputs": {"messages": [{"role": "assistant", "content": text}]}}).to_string(),
            )
            .unwrap()
        };
        // More pairs than one batch, so the batches are stitched together in order.
        let pairs: Vec<_> = (0..CASES_PER_BATCH + 3)
            .map(|index| (example(index), run(if index % 10 == 0 { "a forbidden word" } else { "fine" })))
            .collect();
        let mut progress = Vec::new();
        let evaluation = Evaluation::run(&runtime, vec![pin], &calls, &pairs, &mut |done| progress.push(done));
        assert_eq!(progress, [CASES_PER_BATCH, CASES_PER_BATCH + 3]);
        assert_eq!(evaluation.examples.len(), CASES_PER_BATCH + 3);
        for (index, result) in evaluation.examples.iter().enumerate() {
            assert_eq!(result.example_id, format!("e{index}"));
            assert_eq!(result.metadata.get("severity").map(String::as_str), Some("p1"));
            assert!(!result.metadata.contains_key("rank"), "only string metadata is kept");
            let KeyOutcome::Scored(score) = Evaluation::outcome(result, 0, "policy_violations") else {
                panic!("example {index} has no score")
            };
            assert_eq!(score.value, if index % 10 == 0 { 0.0 } else { 1.0 }, "example {index}");
        }
        assert_eq!(evaluation.grader_of("policy_violations"), Some(0));
        assert_eq!(evaluation.grader_of("token_f1"), None);
    }

    #[test]
    fn pass_means_a_full_score() {
        assert!(is_pass(1.0) && is_pass(1.0 - 1e-12));
        assert!(!is_pass(0.999) && !is_pass(0.5) && !is_pass(0.0));
    }
}
