//! Shadow grading: the version a grader name serves and a candidate version,
//! run side by side on the same (example, agent run) pairs, and where they
//! agree. A promotion can require a report whose agreement is high enough.

use super::{Evaluation, KeyOutcome};
use serde::{Deserialize, Serialize};

/// Disagreements listed in a report; the counts cover all of them.
pub const DISAGREEMENTS_LISTED_MAX: usize = 200;
/// Scores closer than this agree.
const AGREEMENT_TOLERANCE: f64 = 1e-9;

/// How the candidate compares with the current version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowComparison {
    pub examples: usize,
    /// (example, key) pairs compared.
    pub compared: usize,
    pub agreements: usize,
    /// `agreements / compared`; 1 when nothing was compared.
    pub agreement_rate: f64,
    pub keys: Vec<ShadowKey>,
    /// Where they differ, largest difference first (at most [`DISAGREEMENTS_LISTED_MAX`]).
    pub disagreements: Vec<Disagreement>,
}

/// One score key under both versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowKey {
    pub key: String,
    /// Means over the examples each version scored.
    pub mean_current: Option<f64>,
    pub mean_candidate: Option<f64>,
    pub delta: Option<f64>,
    pub disagreements: usize,
}

/// One (example, key) the two versions scored differently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disagreement {
    pub example_id: String,
    pub key: String,
    pub current: ShadowSide,
    pub candidate: ShadowSide,
}

/// One version's verdict on one (example, key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowSide {
    /// The score; `None` when the grader failed or did not score the key.
    pub value: Option<f64>,
    /// The grader's comment, or its failure as `kind: message`.
    pub comment: Option<String>,
}

impl ShadowComparison {
    /// Compares two evaluations of the same pairs, each with one grader (the
    /// current version first). Keys are those either version declares.
    pub fn new(current: &Evaluation, candidate: &Evaluation) -> ShadowComparison {
        let mut keys: Vec<String> = Vec::new();
        for (_, key) in current.score_keys().chain(candidate.score_keys()) {
            if !keys.iter().any(|known| known == key) {
                keys.push(key.to_owned());
            }
        }
        let mut compared = 0;
        let mut agreements = 0;
        let mut disagreements = Vec::new();
        let mut sums: Vec<[(f64, usize); 2]> = vec![[(0.0, 0); 2]; keys.len()];
        for (current_example, candidate_example) in current.examples.iter().zip(&candidate.examples) {
            for (key_index, key) in keys.iter().enumerate() {
                let sides =
                    [(current, current_example), (candidate, candidate_example)].map(|(evaluation, example)| {
                        match evaluation.grader_of(key).map(|grader| Evaluation::outcome(example, grader, key)) {
                            Some(KeyOutcome::Scored(score)) => {
                                ShadowSide { value: Some(score.value), comment: score.comment.clone() }
                            }
                            Some(KeyOutcome::Error(failure)) => ShadowSide {
                                value: None,
                                comment: Some(format!("{}: {}", failure.kind.as_str(), failure.message)),
                            },
                            Some(KeyOutcome::NotScored) | None => ShadowSide { value: None, comment: None },
                        }
                    });
                for (side_index, side) in sides.iter().enumerate() {
                    if let Some(value) = side.value {
                        sums[key_index][side_index].0 += value;
                        sums[key_index][side_index].1 += 1;
                    }
                }
                compared += 1;
                let agree = match (sides[0].value, sides[1].value) {
                    (Some(a), Some(b)) => (a - b).abs() <= AGREEMENT_TOLERANCE,
                    (None, None) => true,
                    _ => false,
                };
                if agree {
                    agreements += 1;
                } else {
                    let [current, candidate] = sides;
                    disagreements.push(Disagreement {
                        example_id: current_example.example_id.clone(),
                        key: key.clone(),
                        current,
                        candidate,
                    });
                }
            }
        }
        let keys: Vec<ShadowKey> = keys
            .into_iter()
            .zip(&sums)
            .map(|(key, [current, candidate])| {
                let mean = |(sum, count): (f64, usize)| (count > 0).then(|| sum / count as f64);
                let (mean_current, mean_candidate) = (mean(*current), mean(*candidate));
                ShadowKey {
                    disagreements: disagreements.iter().filter(|disagreement| disagreement.key == key).count(),
                    delta: mean_current.zip(mean_candidate).map(|(current, candidate)| candidate - current),
                    mean_current,
                    mean_candidate,
                    key,
                }
            })
            .collect();
        let gap = |disagreement: &Disagreement| match (disagreement.current.value, disagreement.candidate.value) {
            (Some(a), Some(b)) => (a - b).abs(),
            _ => f64::INFINITY,
        };
        disagreements.sort_by(|left, right| {
            gap(right).total_cmp(&gap(left)).then_with(|| left.example_id.cmp(&right.example_id))
        });
        disagreements.truncate(DISAGREEMENTS_LISTED_MAX);
        ShadowComparison {
            examples: current.examples.len(),
            compared,
            agreements,
            agreement_rate: if compared == 0 { 1.0 } else { agreements as f64 / compared as f64 },
            keys,
            disagreements,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{ExampleResult, GraderPin};
    use crate::runtime::{FailureKind, GradeFailure, Graded, Outcome, Score};

    fn evaluation(version: &str, values: &[Option<f64>]) -> Evaluation {
        Evaluation {
            world: "w".into(),
            graders: vec![GraderPin {
                name: "must_not_say".into(),
                version: version.into(),
                digest: format!("sha256:{version}"),
                config: serde_json::json!({}),
                score_keys: vec!["policy_violations".into()],
            }],
            examples: values
                .iter()
                .enumerate()
                .map(|(index, value)| ExampleResult {
                    example_id: format!("e{index}"),
                    metadata: Default::default(),
                    agent_error: None,
                    grades: vec![Graded {
                        outcome: match value {
                            Some(value) => Outcome::Scores(vec![Score {
                                key: "policy_violations".into(),
                                value: *value,
                                comment: Some(format!("v{version}")),
                            }]),
                            None => Outcome::Failure(GradeFailure { kind: FailureKind::Trap, message: "boom".into() }),
                        },
                        fuel_used: 1,
                        log: String::new(),
                    }],
                })
                .collect(),
        }
    }

    #[test]
    fn agreement_counts_every_example_and_lists_the_largest_differences_first() {
        let current = evaluation("1", &[Some(1.0), Some(1.0), Some(0.0), None, Some(1.0)]);
        let candidate = evaluation("2", &[Some(1.0), Some(0.0), Some(0.0), Some(1.0), Some(0.5)]);
        let report = ShadowComparison::new(&current, &candidate);
        assert_eq!((report.examples, report.compared, report.agreements), (5, 5, 2));
        assert!((report.agreement_rate - 0.4).abs() < 1e-12);
        let order: Vec<&str> = report.disagreements.iter().map(|entry| entry.example_id.as_str()).collect();
        assert_eq!(order, ["e3", "e1", "e4"], "a failure on one side first, then by the size of the gap");
        assert_eq!(report.disagreements[0].current.comment.as_deref(), Some("trap: boom"));
        assert_eq!(report.disagreements[1].candidate.comment.as_deref(), Some("v2"));
        let key = &report.keys[0];
        assert_eq!(key.disagreements, 3);
        assert!((key.mean_current.unwrap() - 0.75).abs() < 1e-12);
        assert!((key.mean_candidate.unwrap() - 0.5).abs() < 1e-12);
        assert!((key.delta.unwrap() + 0.25).abs() < 1e-12);
        let same = ShadowComparison::new(&current, &current);
        assert_eq!(same.agreement_rate, 1.0);
        assert!(same.disagreements.is_empty());
    }
}
