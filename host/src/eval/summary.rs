//! Summaries of an evaluation: per score key, per metadata slice, and
//! severity-weighted.
//!
//! Definitions, for one key over a set of examples:
//!
//! - `count`: examples the key's grader scored (with this key);
//! - `errors`: examples where the key's grader failed (timeout, trap, bad
//!   config, ...); a failure is an error for every key of that grader;
//! - `mean`: the mean score over the `count` scored examples. Errors are
//!   excluded here, so the mean describes the answers that were graded;
//! - `pass_rate`: examples that passed ([`is_pass`]: a full 1.0) over
//!   `count + errors`. An error counts as a fail;
//! - `mean_counting_errors`: the mean over `count + errors` with every error
//!   as 0. This is what gates hold against, so a grader that crashes can
//!   never hold a gate; it equals `mean` when there are no errors;
//! - `severity_weighted`: like `mean_counting_errors`, each example weighted
//!   by its severity ([`SeverityWeights`]; p0 heaviest).
//!
//! Examples whose grader ran but did not return the key (it does not apply)
//! are in none of these counts.

use super::{Evaluation, ExampleResult, KeyOutcome, is_pass};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Metadata keys always sliced, in this order, when examples carry them.
pub const STANDARD_SLICE_KEYS: &[&str] = &["source", "severity", "persona"];

/// How to summarise.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryConfig {
    pub severity_weights: SeverityWeights,
    /// Other metadata keys are sliced only when they have at most this many
    /// distinct values, so an identifier such as `trace_id` does not produce
    /// one slice per example.
    pub slice_values_max: usize,
}

impl Default for SummaryConfig {
    fn default() -> SummaryConfig {
        SummaryConfig { severity_weights: SeverityWeights::default(), slice_values_max: 50 }
    }
}

/// The weight of each severity in the severity-weighted score. Examples with
/// no severity, or one not listed, weigh [`SeverityWeights::OTHER_WEIGHT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SeverityWeights {
    pub weights: BTreeMap<String, f64>,
}

/// A `SEVERITY=WEIGHT` text that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("severity weight {text:?}: {reason}")]
pub struct WeightError {
    pub text: String,
    pub reason: String,
}

/// The summary of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub example_count: usize,
    /// Examples whose agent run carried an error (including missing runs).
    pub agent_errors: usize,
    pub severity_weights: SeverityWeights,
    /// One entry per declared score key, in grader order.
    pub keys: Vec<KeySummary>,
    /// The same per metadata value, standard keys first, values sorted.
    pub slices: Vec<SliceSummary>,
}

/// The statistics of one score key over a set of examples (see the module
/// documentation for the definitions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeySummary {
    pub key: String,
    pub grader: String,
    pub count: usize,
    pub passed: usize,
    pub errors: usize,
    pub mean: Option<f64>,
    pub pass_rate: Option<f64>,
    pub mean_counting_errors: Option<f64>,
    pub severity_weighted: Option<f64>,
}

/// The key statistics of the examples whose `metadata[metadata_key]` is `value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceSummary {
    pub metadata_key: String,
    pub value: String,
    pub example_count: usize,
    pub keys: Vec<KeySummary>,
}

impl Summary {
    /// Summarises an evaluation.
    pub fn new(evaluation: &Evaluation, config: &SummaryConfig) -> Summary {
        let weights = &config.severity_weights;
        let keys_over = |examples: &[&ExampleResult]| -> Vec<KeySummary> {
            evaluation
                .score_keys()
                .map(|(grader_index, key)| {
                    KeySummary::collect(evaluation, grader_index, key, examples.iter().copied(), weights)
                })
                .collect()
        };
        let all: Vec<&ExampleResult> = evaluation.examples.iter().collect();
        let mut slices = Vec::new();
        for metadata_key in slice_keys(evaluation, config.slice_values_max) {
            let mut by_value: BTreeMap<&str, Vec<&ExampleResult>> = BTreeMap::new();
            for example in &all {
                if let Some(value) = example.metadata.get(&metadata_key) {
                    by_value.entry(value).or_default().push(example);
                }
            }
            for (value, examples) in by_value {
                slices.push(SliceSummary {
                    metadata_key: metadata_key.clone(),
                    value: value.to_owned(),
                    example_count: examples.len(),
                    keys: keys_over(&examples),
                });
            }
        }
        Summary {
            example_count: all.len(),
            agent_errors: all.iter().filter(|example| example.agent_error.is_some()).count(),
            severity_weights: weights.clone(),
            keys: keys_over(&all),
            slices,
        }
    }
}

impl KeySummary {
    /// The statistics of `key`, produced by the grader at `grader_index`, over `examples`.
    pub fn collect<'a>(
        evaluation: &Evaluation,
        grader_index: usize,
        key: &str,
        examples: impl Iterator<Item = &'a ExampleResult>,
        weights: &SeverityWeights,
    ) -> KeySummary {
        let grader = evaluation.graders.get(grader_index).map_or("", |grader| grader.name.as_str());
        let mut summary = KeySummary::empty(key, grader);
        let (mut sum, mut weighted_sum, mut weight_total) = (0.0, 0.0, 0.0);
        for example in examples {
            let weight = weights.weight(example.metadata.get("severity").map(String::as_str));
            match Evaluation::outcome(example, grader_index, key) {
                KeyOutcome::Scored(score) => {
                    summary.count += 1;
                    summary.passed += usize::from(is_pass(score.value));
                    sum += score.value;
                    weighted_sum += weight * score.value;
                    weight_total += weight;
                }
                KeyOutcome::Error(_) => {
                    summary.errors += 1;
                    weight_total += weight;
                }
                KeyOutcome::NotScored => {}
            }
        }
        let graded = summary.count + summary.errors;
        let ratio = |numerator: f64, denominator: f64| (denominator > 0.0).then(|| numerator / denominator);
        summary.mean = ratio(sum, summary.count as f64);
        summary.pass_rate = ratio(summary.passed as f64, graded as f64);
        summary.mean_counting_errors = ratio(sum, graded as f64);
        summary.severity_weighted = ratio(weighted_sum, weight_total);
        summary
    }

    /// A key with no examples.
    pub fn empty(key: &str, grader: &str) -> KeySummary {
        KeySummary {
            key: key.to_owned(),
            grader: grader.to_owned(),
            count: 0,
            passed: 0,
            errors: 0,
            mean: None,
            pass_rate: None,
            mean_counting_errors: None,
            severity_weighted: None,
        }
    }
}

impl SeverityWeights {
    /// The weight of an example whose severity is absent or not listed.
    pub const OTHER_WEIGHT: f64 = 1.0;

    /// The weight of an example of this severity.
    pub fn weight(&self, severity: Option<&str>) -> f64 {
        severity.and_then(|severity| self.weights.get(severity)).copied().unwrap_or(Self::OTHER_WEIGHT)
    }

    /// Sets one weight from `SEVERITY=WEIGHT` text, e.g. `p0=10`.
    pub fn set(&mut self, text: &str) -> Result<(), WeightError> {
        let refuse = |reason: &str| WeightError { text: text.to_owned(), reason: reason.to_owned() };
        let (severity, weight) = text.split_once('=').ok_or_else(|| refuse("expected SEVERITY=WEIGHT, as in p0=5"))?;
        let severity = severity.trim();
        if severity.is_empty() {
            return Err(refuse("the severity is empty"));
        }
        let weight: f64 = weight.trim().parse().map_err(|_| refuse("the weight is not a number"))?;
        if !weight.is_finite() || weight < 0.0 {
            return Err(refuse("the weight must be a finite number, 0 or more"));
        }
        self.weights.insert(severity.to_owned(), weight);
        Ok(())
    }
}

impl Default for SeverityWeights {
    /// p0 = 5, p1 = 2, p2 = 1: a missed p0 (a patient not escalated) costs far
    /// more than a clumsy p2 answer.
    fn default() -> SeverityWeights {
        SeverityWeights { weights: [("p0".to_owned(), 5.0), ("p1".to_owned(), 2.0), ("p2".to_owned(), 1.0)].into() }
    }
}

/// The metadata keys to slice by: the standard ones present, then the others
/// with few enough distinct values and at least one value shared by two
/// examples (a key whose every value is unique is an identifier).
fn slice_keys(evaluation: &Evaluation, slice_values_max: usize) -> Vec<String> {
    let mut values: BTreeMap<&str, (BTreeSet<&str>, usize)> = BTreeMap::new();
    for example in &evaluation.examples {
        for (key, value) in &example.metadata {
            let (distinct, total) = values.entry(key).or_default();
            distinct.insert(value);
            *total += 1;
        }
    }
    let standard = STANDARD_SLICE_KEYS.iter().filter(|key| values.contains_key(**key)).map(|key| key.to_string());
    let others = values
        .iter()
        .filter(|(key, (distinct, total))| {
            !STANDARD_SLICE_KEYS.contains(key) && distinct.len() <= slice_values_max && distinct.len() < *total
        })
        .map(|(key, _)| key.to_string());
    standard.chain(others).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::GraderPin;
    use crate::runtime::{FailureKind, GradeFailure, Graded, Outcome, Score};

    fn graded(scores: &[(&str, f64)]) -> Graded {
        Graded {
            outcome: Outcome::Scores(
                scores
                    .iter()
                    .map(|(key, value)| Score { key: key.to_string(), value: *value, comment: None })
                    .collect(),
            ),
            fuel_used: 0,
            log: String::new(),
        }
    }

    fn failed() -> Graded {
        Graded {
            outcome: Outcome::Failure(GradeFailure { kind: FailureKind::Trap, message: "panic".into() }),
            fuel_used: 0,
            log: String::new(),
        }
    }

    fn example(id: &str, metadata: &[(&str, &str)], grades: Vec<Graded>) -> ExampleResult {
        ExampleResult {
            example_id: id.into(),
            metadata: metadata.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect(),
            agent_error: (id == "e4").then(|| "no output for this example".into()),
            grades,
        }
    }

    fn evaluation() -> Evaluation {
        let pin = |name: &str, keys: &[&str]| GraderPin {
            name: name.into(),
            version: "1.0.0".into(),
            digest: "sha256:00".into(),
            config: serde_json::json!({}),
            score_keys: keys.iter().map(|key| key.to_string()).collect(),
        };
        Evaluation {
            world: "w".into(),
            graders: vec![pin("policy", &["clean"]), pin("tools", &["called", "order"])],
            examples: vec![
                example(
                    "e1",
                    &[("severity", "p0"), ("source", "production"), ("trace_id", "t1"), ("team", "a")],
                    vec![graded(&[("clean", 1.0)]), graded(&[("called", 1.0), ("order", 1.0)])],
                ),
                example(
                    "e2",
                    &[("severity", "p0"), ("source", "synthetic"), ("trace_id", "t2"), ("team", "a")],
                    vec![graded(&[("clean", 0.0)]), graded(&[("called", 0.5)])],
                ),
                example(
                    "e3",
                    &[("severity", "p2"), ("source", "production"), ("trace_id", "t3"), ("team", "b")],
                    vec![graded(&[("clean", 1.0)]), failed()],
                ),
                example("e4", &[("trace_id", "t4")], vec![graded(&[("clean", 1.0)]), graded(&[("called", 0.0)])]),
            ],
        }
    }

    fn key<'a>(keys: &'a [KeySummary], name: &str) -> &'a KeySummary {
        keys.iter().find(|key| key.key == name).unwrap()
    }

    #[test]
    fn key_statistics_follow_the_documented_definitions() {
        let summary = Summary::new(&evaluation(), &SummaryConfig::default());
        assert_eq!((summary.example_count, summary.agent_errors), (4, 1));
        let keys: Vec<&str> = summary.keys.iter().map(|key| key.key.as_str()).collect();
        assert_eq!(keys, ["clean", "called", "order"]);

        let clean = key(&summary.keys, "clean");
        assert_eq!((clean.count, clean.passed, clean.errors, clean.grader.as_str()), (4, 3, 0, "policy"));
        assert_eq!((clean.mean, clean.pass_rate, clean.mean_counting_errors), (Some(0.75), Some(0.75), Some(0.75)));
        // Weights p0 = 5, p0 = 5, p2 = 1, none = 1: (5 + 0 + 1 + 1) / 12.
        assert_eq!(clean.severity_weighted, Some(7.0 / 12.0));

        let called = key(&summary.keys, "called");
        assert_eq!((called.count, called.passed, called.errors), (3, 1, 1));
        assert_eq!(called.mean, Some(0.5), "errors are left out of the mean");
        assert_eq!(called.pass_rate, Some(0.25), "an error counts as a fail");
        assert_eq!(called.mean_counting_errors, Some(1.5 / 4.0));
        assert_eq!(called.severity_weighted, Some((5.0 + 2.5) / 12.0));

        let order = key(&summary.keys, "order");
        assert_eq!((order.count, order.errors, order.mean), (1, 1, Some(1.0)), "not returned = not counted");
    }

    #[test]
    fn slices_cover_standard_keys_and_shared_values_but_not_identifiers() {
        let summary = Summary::new(&evaluation(), &SummaryConfig::default());
        let slices: Vec<(&str, &str, usize)> = summary
            .slices
            .iter()
            .map(|slice| (slice.metadata_key.as_str(), slice.value.as_str(), slice.example_count))
            .collect();
        assert_eq!(
            slices,
            [
                ("source", "production", 2),
                ("source", "synthetic", 1),
                ("severity", "p0", 2),
                ("severity", "p2", 1),
                ("team", "a", 2),
                ("team", "b", 1),
            ]
        );
        let p0 = &summary.slices[2];
        assert_eq!(key(&p0.keys, "clean").mean, Some(0.5));
        assert_eq!(key(&p0.keys, "called").mean, Some(0.75));
        let only_two = Summary::new(&evaluation(), &SummaryConfig { slice_values_max: 1, ..SummaryConfig::default() });
        assert!(only_two.slices.iter().all(|slice| slice.metadata_key != "team"));
    }

    #[test]
    fn severity_weights_are_configurable() {
        let mut weights = SeverityWeights::default();
        weights.set("p0 = 10").unwrap();
        weights.set("p3=0").unwrap();
        assert_eq!((weights.weight(Some("p0")), weights.weight(Some("p3"))), (10.0, 0.0));
        assert_eq!((weights.weight(Some("p9")), weights.weight(None)), (1.0, 1.0));
        for (bad, reason) in
            [("p0", "SEVERITY=WEIGHT"), ("=3", "empty"), ("p0=x", "not a number"), ("p0=-1", "0 or more")]
        {
            let error = weights.set(bad).unwrap_err();
            assert!(error.to_string().contains(reason), "{bad}: {error}");
        }
        for bad in ["p0=inf", "p0=NaN"] {
            assert!(weights.set(bad).is_err(), "{bad}");
        }
        let summary = Summary::new(&evaluation(), &SummaryConfig { severity_weights: weights, slice_values_max: 50 });
        // p0 = 10, p0 = 10, p2 = 1, none = 1: (10 + 0 + 1 + 1) / 22.
        assert_eq!(key(&summary.keys, "clean").severity_weighted, Some(12.0 / 22.0));
    }

    #[test]
    fn an_empty_evaluation_has_no_means() {
        let mut empty = evaluation();
        empty.examples.clear();
        let summary = Summary::new(&empty, &SummaryConfig::default());
        assert!(summary.slices.is_empty());
        assert!(summary.keys.iter().all(|key| key.mean.is_none() && key.pass_rate.is_none() && key.count == 0));
    }
}
