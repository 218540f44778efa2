//! Gates: thresholds on score keys that decide whether a CI job passes.
//!
//! A gate reads `KEY OP NUMBER`, with OP one of `>=`, `>`, `<=`, `<`, `==`,
//! and an optional slice prefix `META_KEY=VALUE:` that restricts it to the
//! examples whose metadata has that value: `required_tools_called>=0.95`,
//! `severity=p0:policy_violations==1.0`. Spaces between the parts are allowed.
//! KEY may also name a grader that has exactly one score key
//! (`severity=p0: must_not_say == 1.0`, as the SPEC writes it).
//!
//! The gate's value is the mean of the key over the examples in scope, where a
//! grader failure on an example counts as a score of 0: an error is a failure,
//! so a crashing or misconfigured grader can never hold a gate. Comparisons
//! allow [`COMPARISON_TOLERANCE`] so that a mean computed by adding fractions
//! still equals 1.0 when every score is 1.0.

use super::summary::KeySummary;
use super::{Evaluation, ExampleResult, GraderPin, KeyOutcome, is_pass};
use crate::model::Example;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Bytes of one gate expression.
pub const GATE_BYTES_MAX: usize = 1024;
/// Examples listed as the worst of a gate.
pub const WORST_EXAMPLES_MAX: usize = 5;
/// Slack allowed in comparisons, for rounding in means.
pub const COMPARISON_TOLERANCE: f64 = 1e-9;

/// A parsed gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// The expression as written, for reports.
    pub text: String,
    pub slice: Option<Slice>,
    /// The score key; after [`Gate::resolve`], always one a grader declares.
    pub key: String,
    pub operator: Operator,
    pub threshold: f64,
}

/// A restriction to the examples whose `metadata[key]` is `value`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Slice {
    pub key: String,
    pub value: String,
}

/// A comparison of a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    AtLeast,
    Above,
    AtMost,
    Below,
    Equal,
}

/// Why a gate expression could not be read: where (1-based column, in
/// characters) and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gate {}: column {column}: {reason}", shown(gate))]
pub struct GateSyntaxError {
    pub gate: String,
    pub column: usize,
    pub reason: String,
}

/// A well-formed gate that does not fit the evaluation it is given to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateUsageError {
    #[error("gate {}: no grader produces the score key {key:?}; the graders produce {}", shown(gate), known.join(", "))]
    UnknownKey { gate: String, key: String, known: Vec<String> },
    #[error("gate {}: grader {grader:?} has several score keys ({}); name one of them", shown(gate), keys.join(", "))]
    AmbiguousGrader { gate: String, grader: String, keys: Vec<String> },
    #[error("gate {}: no example has the metadata key {key:?}", shown(gate))]
    UnknownSliceKey { gate: String, key: String },
    #[error("gate {}: no example has metadata {key}={value:?} (values seen: {})", shown(gate), seen.join(", "))]
    UnknownSliceValue { gate: String, key: String, value: String, seen: Vec<String> },
}

/// A gate held against an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// The expression as written.
    pub gate: String,
    pub slice: Option<Slice>,
    pub key: String,
    pub operator: String,
    pub threshold: f64,
    /// The key's mean over the examples in scope, errors counted as 0; `None`
    /// when no example in scope has the key (the gate then does not hold).
    pub actual: Option<f64>,
    pub holds: bool,
    /// How far the actual value is on the holding side of the threshold:
    /// positive when the gate holds with room, negative by how much it fails.
    pub margin: Option<f64>,
    /// Examples in scope with a score for the key.
    pub scored: usize,
    /// Examples in scope where the key's grader failed.
    pub errors: usize,
    /// The lowest-scoring examples in scope that did not pass, lowest first.
    pub worst: Vec<WorstExample>,
}

/// One of the examples that pulled a gate down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorstExample {
    pub example_id: String,
    /// The score, or `None` when the grader failed on this example.
    pub value: Option<f64>,
    /// The grader's comment, or its failure (`kind: message`).
    pub comment: Option<String>,
    /// The agent's error on this example, which often explains the score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_error: Option<String>,
}

impl FromStr for Gate {
    type Err = GateSyntaxError;

    fn from_str(text: &str) -> Result<Gate, GateSyntaxError> {
        let mut parser = Parser { text, characters: text.chars().collect(), position: 0 };
        if text.len() > GATE_BYTES_MAX {
            return Err(parser.error(format!("the gate is {} bytes, over the limit of {GATE_BYTES_MAX}", text.len())));
        }
        parser.skip_spaces();
        // A colon can only belong to a slice prefix: keys and numbers have none.
        let slice = if parser.characters.contains(&':') {
            let key = parser.word(is_metadata_key_character, "a metadata key (as in severity=p0:)")?;
            parser.skip_spaces();
            parser.expect('=', "`=` between the metadata key and its value (as in severity=p0:)")?;
            parser.skip_spaces();
            let value = parser.word(
                |character| character != ':' && !character.is_whitespace() && !character.is_control(),
                "a metadata value (as in severity=p0:)",
            )?;
            parser.skip_spaces();
            parser.expect(':', "`:` after the slice (as in severity=p0:)")?;
            parser.skip_spaces();
            Some(Slice { key, value })
        } else {
            None
        };
        let key = parser.word(is_score_key_character, "a score key (a-z, 0-9, `_`, `-`, `.`)")?;
        parser.skip_spaces();
        let operator = parser.operator()?;
        parser.skip_spaces();
        let number_position = parser.position;
        let number = parser.word(
            |character| character.is_ascii_digit() || ".eE+-".contains(character),
            "a threshold between 0 and 1",
        )?;
        let threshold: f64 = number.parse().map_err(|_| {
            parser.error_at(number_position, format!("{number:?} is not a number; write a threshold such as 0.95"))
        })?;
        if !(0.0..=1.0).contains(&threshold) {
            return Err(parser.error_at(
                number_position,
                format!("the threshold {number} is outside [0, 1], the range of scores (write 0.95, not 95)"),
            ));
        }
        parser.skip_spaces();
        if let Some(character) = parser.peek() {
            return Err(parser.error(format!("unexpected {character:?} after the threshold")));
        }
        Ok(Gate { text: text.trim().to_owned(), slice, key, operator, threshold })
    }
}

impl Gate {
    /// Checks the gate against the graders and the dataset before any grading,
    /// so a typo costs a second, not a whole evaluation. A key that names a
    /// grader with a single score key is replaced by that key.
    pub fn resolve(
        &mut self,
        graders: &[GraderPin],
        metadata_values: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<(), GateUsageError> {
        let declared = graders.iter().any(|grader| grader.score_keys.contains(&self.key));
        if !declared {
            match graders.iter().find(|grader| grader.name == self.key) {
                Some(grader) if grader.score_keys.len() == 1 => self.key = grader.score_keys[0].clone(),
                Some(grader) => {
                    return Err(GateUsageError::AmbiguousGrader {
                        gate: self.text.clone(),
                        grader: grader.name.clone(),
                        keys: grader.score_keys.clone(),
                    });
                }
                None => {
                    return Err(GateUsageError::UnknownKey {
                        gate: self.text.clone(),
                        key: self.key.clone(),
                        known: graders.iter().flat_map(|grader| grader.score_keys.iter().cloned()).collect(),
                    });
                }
            }
        }
        if let Some(slice) = &self.slice {
            let Some(values) = metadata_values.get(&slice.key) else {
                return Err(GateUsageError::UnknownSliceKey { gate: self.text.clone(), key: slice.key.clone() });
            };
            if !values.contains(&slice.value) {
                return Err(GateUsageError::UnknownSliceValue {
                    gate: self.text.clone(),
                    key: slice.key.clone(),
                    value: slice.value.clone(),
                    seen: values.iter().cloned().collect(),
                });
            }
        }
        Ok(())
    }

    /// Holds the gate against an evaluation. The key must be one a grader
    /// declares (see [`Gate::resolve`]); otherwise nothing is in scope and
    /// the gate does not hold.
    pub fn check(&self, evaluation: &Evaluation) -> GateResult {
        let in_scope = |metadata: &BTreeMap<String, String>| match &self.slice {
            None => true,
            Some(slice) => metadata.get(&slice.key) == Some(&slice.value),
        };
        let statistics = match evaluation.grader_of(&self.key) {
            Some(grader_index) => KeySummary::collect(
                evaluation,
                grader_index,
                &self.key,
                evaluation.examples.iter().filter(|example| in_scope(&example.metadata)),
                &super::SeverityWeights::default(),
            ),
            None => KeySummary::empty(&self.key, ""),
        };
        let actual = statistics.mean_counting_errors;
        let margin = actual.map(|actual| self.operator.margin(actual, self.threshold));
        let holds = margin.is_some_and(|margin| self.operator.holds(margin));
        let worst = match evaluation.grader_of(&self.key) {
            Some(grader_index) => worst_examples(
                grader_index,
                &self.key,
                evaluation.examples.iter().filter(|example| in_scope(&example.metadata)),
            ),
            None => Vec::new(),
        };
        GateResult {
            gate: self.text.clone(),
            slice: self.slice.clone(),
            key: self.key.clone(),
            operator: self.operator.as_str().to_owned(),
            threshold: self.threshold,
            actual,
            holds,
            margin,
            scored: statistics.count,
            errors: statistics.errors,
            worst,
        }
    }
}

impl GateResult {
    /// One line saying how the gate failed: actual against threshold, and by how much.
    pub fn describe_failure(&self) -> String {
        match (self.actual, self.margin) {
            (Some(actual), Some(margin)) => format!(
                "{} = {actual:.4}, needs {} {}: short by {:.4} ({} scored, {} errors)",
                self.key,
                self.operator,
                self.threshold,
                margin.abs(),
                self.scored,
                self.errors
            ),
            _ => format!("no example in scope has a {} score", self.key),
        }
    }
}

impl Operator {
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::AtLeast => ">=",
            Operator::Above => ">",
            Operator::AtMost => "<=",
            Operator::Below => "<",
            Operator::Equal => "==",
        }
    }

    /// Signed distance of `actual` from `threshold`, positive on the holding side.
    fn margin(self, actual: f64, threshold: f64) -> f64 {
        match self {
            Operator::AtLeast | Operator::Above => actual - threshold,
            Operator::AtMost | Operator::Below => threshold - actual,
            // `0.0 -` rather than `-`: an exact match has a margin of 0, not -0.
            Operator::Equal => 0.0 - (actual - threshold).abs(),
        }
    }

    fn holds(self, margin: f64) -> bool {
        match self {
            Operator::AtLeast | Operator::AtMost | Operator::Equal => margin >= -COMPARISON_TOLERANCE,
            Operator::Above | Operator::Below => margin > COMPARISON_TOLERANCE,
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Every string metadata value of the examples, by key: what slices exist.
pub fn metadata_values<'a>(examples: impl IntoIterator<Item = &'a Example>) -> BTreeMap<String, BTreeSet<String>> {
    let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for example in examples {
        for (key, value) in &example.metadata {
            if let Some(value) = value.as_str() {
                values.entry(key.clone()).or_default().insert(value.to_owned());
            }
        }
    }
    values
}

/// The examples that did not pass `key` (graded by the grader at
/// `grader_index`), lowest score first, at most
/// [`WORST_EXAMPLES_MAX`]. A grader failure counts as 0 and comes before real
/// scores of 0; other ties keep dataset order.
pub fn worst_examples<'a>(
    grader_index: usize,
    key: &str,
    examples: impl Iterator<Item = &'a ExampleResult>,
) -> Vec<WorstExample> {
    let mut worst: Vec<WorstExample> = Vec::new();
    for example in examples {
        match Evaluation::outcome(example, grader_index, key) {
            KeyOutcome::Scored(score) if !is_pass(score.value) => worst.push(WorstExample {
                example_id: example.example_id.clone(),
                value: Some(score.value),
                comment: score.comment.clone(),
                agent_error: example.agent_error.clone(),
            }),
            KeyOutcome::Error(failure) => worst.push(WorstExample {
                example_id: example.example_id.clone(),
                value: None,
                comment: Some(failure.to_string()),
                agent_error: example.agent_error.clone(),
            }),
            KeyOutcome::Scored(_) | KeyOutcome::NotScored => {}
        }
    }
    // A stable sort, so ties keep dataset order.
    worst.sort_by(|left, right| {
        let lowest = left.value.unwrap_or(0.0).total_cmp(&right.value.unwrap_or(0.0));
        lowest.then(left.value.is_some().cmp(&right.value.is_some()))
    });
    worst.truncate(WORST_EXAMPLES_MAX);
    worst
}

struct Parser<'a> {
    text: &'a str,
    characters: Vec<char>,
    position: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.characters.get(self.position).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|character| character == ' ' || character == '\t') {
            self.position += 1;
        }
    }

    /// One or more characters accepted by `accept`.
    fn word(&mut self, accept: impl Fn(char) -> bool, expected: &str) -> Result<String, GateSyntaxError> {
        let start = self.position;
        while self.peek().is_some_and(&accept) {
            self.position += 1;
        }
        if start == self.position {
            return Err(self.error(format!("expected {expected}, found {}", self.found())));
        }
        Ok(self.characters[start..self.position].iter().collect())
    }

    fn expect(&mut self, wanted: char, expected: &str) -> Result<(), GateSyntaxError> {
        if self.peek() == Some(wanted) {
            self.position += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected {expected}, found {}", self.found())))
        }
    }

    fn operator(&mut self) -> Result<Operator, GateSyntaxError> {
        let next = self.characters.get(self.position + 1).copied();
        let (operator, length) = match (self.peek(), next) {
            (Some('>'), Some('=')) => (Operator::AtLeast, 2),
            (Some('<'), Some('=')) => (Operator::AtMost, 2),
            (Some('='), Some('=')) => (Operator::Equal, 2),
            (Some('>'), _) => (Operator::Above, 1),
            (Some('<'), _) => (Operator::Below, 1),
            (Some('='), Some('>')) => return Err(self.error("`=>` is not a comparison; write `>=`".into())),
            (Some('='), Some('<')) => return Err(self.error("`=<` is not a comparison; write `<=`".into())),
            (Some('='), _) => return Err(self.error("a single `=` is not a comparison; write `==`".into())),
            (Some('!'), Some('=')) => {
                return Err(self.error("`!=` is not supported; use >=, >, <=, < or ==".into()));
            }
            _ => {
                return Err(self.error(format!("expected a comparison (>=, >, <=, <, ==), found {}", self.found())));
            }
        };
        self.position += length;
        Ok(operator)
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(character) => format!("{character:?}"),
            None => "the end".into(),
        }
    }

    fn error(&self, reason: String) -> GateSyntaxError {
        self.error_at(self.position, reason)
    }

    fn error_at(&self, position: usize, reason: String) -> GateSyntaxError {
        GateSyntaxError { gate: self.text.to_owned(), column: position + 1, reason }
    }
}

fn is_metadata_key_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || "_-.".contains(character)
}

/// The characters of a score key, as the runtime accepts them.
fn is_score_key_character(character: char) -> bool {
    character.is_ascii_lowercase() || character.is_ascii_digit() || "_-.".contains(character)
}

/// A gate's text for an error message: quoted with escapes, cut to a readable length.
fn shown(gate: &str) -> String {
    const SHOWN_CHARACTERS_MAX: usize = 80;
    if gate.chars().count() > SHOWN_CHARACTERS_MAX {
        let start: String = gate.chars().take(SHOWN_CHARACTERS_MAX).collect();
        format!("{start:?}…")
    } else {
        format!("{gate:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::ExampleResult;
    use crate::runtime::{FailureKind, GradeFailure, Graded, Outcome, Score};

    fn gate(text: &str) -> Gate {
        text.parse().unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    #[test]
    fn well_formed_gates_parse() {
        let parsed = gate("required_tools_called>=0.95");
        assert_eq!(
            (parsed.key.as_str(), parsed.operator, parsed.threshold, parsed.slice),
            ("required_tools_called", Operator::AtLeast, 0.95, None)
        );
        let sliced = gate("severity=p0:policy_violations==1.0");
        assert_eq!(sliced.slice, Some(Slice { key: "severity".into(), value: "p0".into() }));
        assert_eq!(
            (sliced.key.as_str(), sliced.operator, sliced.threshold),
            ("policy_violations", Operator::Equal, 1.0)
        );
        let spaced = gate("  severity = p0 :  must_not_say == 1 ");
        assert_eq!((spaced.key.as_str(), spaced.threshold), ("must_not_say", 1.0));
        assert_eq!(spaced.text, "severity = p0 :  must_not_say == 1");
        for (text, operator) in [
            ("k>0.5", Operator::Above),
            ("k<0.5", Operator::Below),
            ("k<=0.5", Operator::AtMost),
            ("k>=0", Operator::AtLeast),
            ("persona=angry_customer:k.v-2==5e-1", Operator::Equal),
        ] {
            assert_eq!(gate(text).operator, operator, "{text}");
        }
        assert_eq!(gate("persona=angry_customer:k.v-2==5e-1").threshold, 0.5);
    }

    #[test]
    fn malformed_gates_are_refused_with_their_column() {
        // (gate, column, part of the reason)
        let cases: &[(&str, usize, &str)] = &[
            ("", 1, "expected a score key"),
            ("   ", 4, "expected a score key"),
            (">=0.9", 1, "expected a score key"),
            ("policy_violations", 18, "expected a comparison"),
            ("policy_violations 0.9", 19, "expected a comparison"),
            ("policy_violations=0.9", 18, "single `=`"),
            ("policy_violations=>0.9", 18, "write `>=`"),
            ("policy_violations=<0.9", 18, "write `<=`"),
            ("policy_violations!=0.9", 18, "not supported"),
            ("policy_violations>=", 20, "expected a threshold"),
            ("policy_violations>=abc", 20, "expected a threshold"),
            ("policy_violations>=0.9.9", 20, "not a number"),
            ("policy_violations>=95", 20, "outside [0, 1]"),
            ("policy_violations>=-0.5", 20, "outside [0, 1]"),
            ("policy_violations>=1e400", 20, "outside [0, 1]"),
            ("policy_violations>=0.9 and more", 24, "unexpected 'a'"),
            ("policy_violations>>0.9", 19, "expected a threshold"),
            ("policy_violations>=0.9;rm -rf /", 23, "unexpected ';'"),
            ("Policy_Violations>=0.9", 1, "expected a score key"),
            ("severity p0:policy_violations>=1", 10, "expected `=`"),
            ("severity=:policy_violations>=1", 10, "expected a metadata value"),
            ("=p0:policy_violations>=1", 1, "expected a metadata key"),
            ("severity=p0 policy_violations:>=1", 13, "expected `:`"),
            ("severity=p0::policy_violations>=1", 13, "expected a score key"),
            ("severity=p0:", 13, "expected a score key"),
            ("a=b:c=d:k>=1", 6, "single `=`"),
            ("pölicy>=1", 2, "expected a comparison"),
            ("😀>=1", 1, "expected a score key"),
            ("policy_violations>=0.9\u{0}", 23, "unexpected '\\0'"),
            ("policy\nviolations>=1", 7, "expected a comparison"),
            ("k>=NaN", 4, "expected a threshold"),
            ("k>=inf", 4, "expected a threshold"),
            ("k>=.", 4, "not a number"),
            ("k>=e", 4, "not a number"),
        ];
        for (text, column, reason) in cases {
            let error = text.parse::<Gate>().expect_err(text);
            assert_eq!(error.column, *column, "{text:?}: {error}");
            assert!(error.reason.contains(reason), "{text:?}: {error}");
            assert!(error.to_string().contains(&format!("column {column}")), "{error}");
        }
        let long = format!("k>={}", "1".repeat(GATE_BYTES_MAX));
        let error = long.parse::<Gate>().unwrap_err();
        assert!(error.reason.contains("over the limit"), "{error}");
        assert!(error.to_string().len() < 300, "the message quotes a cut gate: {error}");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic spray of short strings over the characters that matter.
        let alphabet: Vec<char> = "ab=:<>!.-+e0159 \t\n\u{0}é😀".chars().collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let length = (state % 14) as usize;
            let text: String =
                (0..length).map(|index| alphabet[((state >> (index * 4)) % alphabet.len() as u64) as usize]).collect();
            if let Err(error) = text.parse::<Gate>() {
                assert!(error.column >= 1 && error.column <= text.chars().count() + 1, "{text:?}: {error}");
            }
        }
    }

    fn pin(name: &str, keys: &[&str]) -> GraderPin {
        GraderPin {
            name: name.into(),
            version: "1.0.0".into(),
            digest: "sha256:00".into(),
            config: serde_json::json!({}),
            score_keys: keys.iter().map(|key| key.to_string()).collect(),
        }
    }

    #[test]
    fn resolve_checks_keys_and_slices_before_grading() {
        let graders = [pin("must_not_say", &["policy_violations"]), pin("must_call", &["a", "b"])];
        let metadata: BTreeMap<String, BTreeSet<String>> =
            [("severity".to_owned(), ["p0".to_owned(), "p1".to_owned()].into())].into();
        let mut by_grader = gate("severity=p0: must_not_say == 1.0");
        by_grader.resolve(&graders, &metadata).unwrap();
        assert_eq!(by_grader.key, "policy_violations");
        let refusals = [
            ("toxicity>=0.5", "no grader produces the score key \"toxicity\""),
            ("must_call>=0.5", "several score keys (a, b)"),
            ("sevrity=p0:a>=0.5", "no example has the metadata key \"sevrity\""),
            ("severity=P0:a>=0.5", "values seen: p0, p1"),
        ];
        for (text, message) in refusals {
            let error = gate(text).resolve(&graders, &metadata).unwrap_err();
            assert!(error.to_string().contains(message), "{text}: {error}");
        }
    }

    fn scored(value: f64, comment: &str) -> Graded {
        let comment = (!comment.is_empty()).then(|| comment.to_owned());
        Graded {
            outcome: Outcome::Scores(vec![Score { key: "k".into(), value, comment }]),
            fuel_used: 1,
            log: String::new(),
        }
    }

    fn evaluation(rows: Vec<(&str, &str, Graded)>) -> Evaluation {
        Evaluation {
            world: "w".into(),
            graders: vec![pin("g", &["k"])],
            examples: rows
                .into_iter()
                .map(|(id, severity, graded)| ExampleResult {
                    example_id: id.into(),
                    metadata: [("severity".to_owned(), severity.to_owned())].into(),
                    agent_error: None,
                    grades: vec![graded],
                })
                .collect(),
        }
    }

    #[test]
    fn gates_use_the_mean_with_errors_as_zero_and_list_the_worst() {
        let failure = Graded {
            outcome: Outcome::Failure(GradeFailure { kind: FailureKind::Timeout, message: "too slow".into() }),
            fuel_used: 0,
            log: String::new(),
        };
        let evaluation = evaluation(vec![
            ("a", "p0", scored(1.0, "")),
            ("b", "p0", scored(0.5, "half")),
            ("c", "p1", scored(0.0, "said <it>")),
            ("d", "p1", failure),
            ("e", "p1", scored(1.0, "")),
            ("f", "p2", scored(0.25, "quarter")),
        ]);
        let result = gate("k>=0.5").check(&evaluation);
        // (1 + 0.5 + 0 + 0 + 1 + 0.25) / 6
        assert!((result.actual.unwrap() - 2.75 / 6.0).abs() < 1e-12, "{result:?}");
        assert!(!result.holds);
        assert!((result.margin.unwrap() - (2.75 / 6.0 - 0.5)).abs() < 1e-12);
        assert_eq!((result.scored, result.errors), (5, 1));
        let worst: Vec<(&str, Option<f64>)> =
            result.worst.iter().map(|worst| (worst.example_id.as_str(), worst.value)).collect();
        assert_eq!(worst, [("d", None), ("c", Some(0.0)), ("f", Some(0.25)), ("b", Some(0.5))]);
        assert_eq!(result.worst[0].comment.as_deref(), Some("timeout: too slow"));

        let p0 = gate("severity=p0:k>=0.75").check(&evaluation);
        assert_eq!((p0.actual, p0.holds, p0.margin), (Some(0.75), true, Some(0.0)));
        let p1_equal = gate("severity=p1:k==1").check(&evaluation);
        assert!(!p1_equal.holds && p1_equal.margin.unwrap() < 0.0);
        assert!(gate("severity=p2:k<0.3").check(&evaluation).holds);
        assert!(!gate("severity=p2:k<0.25").check(&evaluation).holds, "< is strict");
        assert!(gate("severity=p2:k<=0.25").check(&evaluation).holds);
        assert!(!gate("severity=p0:k>0.75").check(&evaluation).holds, "> is strict");
        let nobody = gate("severity=p9:k>=0").check(&evaluation);
        assert_eq!((nobody.actual, nobody.holds), (None, false));
    }

    #[test]
    fn a_mean_of_ones_equals_one_despite_rounding() {
        let thirds: Vec<_> = (0..3).map(|index| (["a", "b", "c"][index], "p0", scored(1.0 / 3.0, "third"))).collect();
        let result = gate("k==0.3333333333333333").check(&evaluation(thirds));
        assert!(result.holds, "{result:?}");
        let ones: Vec<_> = (0..7).map(|_| ("x", "p0", scored(1.0, ""))).collect();
        let result = gate("k==1.0").check(&evaluation(ones));
        assert!(result.holds && result.worst.is_empty(), "{result:?}");
    }
}
