//! The inputs of an offline evaluation: a dataset JSONL file and an outputs
//! JSONL file (SPEC "Wire formats"), and the matching of runs to examples.
//!
//! Every bad line is reported, by line number and field, before any grading:
//! a CI job that feeds a broken file should learn everything wrong with it at
//! once, not one line per push.

use crate::model::{AgentRun, Example, FieldError};
use std::collections::HashMap;
use std::fmt;

/// Bad lines reported for one file; past this the rest are counted.
pub const LINE_ERRORS_MAX: usize = 50;

/// The agent error recorded for an example the outputs file has no run for.
pub const NO_OUTPUT: &str = "no output for this example";

/// A refused line: its 1-based number, the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}: {}", self.line, self.field, self.reason)
    }
}

/// Examples matched with their runs.
#[derive(Debug, Clone)]
pub struct Pairing {
    /// Every example, in file order, with its run (or a stand-in agent error run).
    pub pairs: Vec<(Example, AgentRun)>,
    /// Ids of the examples that had no run; each is graded as an agent error.
    pub missing_runs: Vec<String>,
    /// Runs naming no example of the dataset: their line and example id.
    pub unknown_runs: Vec<(usize, String)>,
}

/// Parses a dataset JSONL file. Every example needs a unique `id`, since runs
/// are matched to examples by it. Blank lines are skipped; a leading byte
/// order mark is ignored.
pub fn parse_examples(text: &str) -> Result<Vec<(usize, Example)>, Vec<LineError>> {
    let mut errors = Vec::new();
    let mut examples = Vec::new();
    let mut line_of_id: HashMap<String, usize> = HashMap::new();
    for (line, text) in lines(text) {
        let example = match Example::from_json(text) {
            Ok(example) => example,
            Err(error) => {
                errors.extend(error.field_errors().into_iter().map(|error| at_line(line, error)));
                continue;
            }
        };
        let Some(id) = example.id.clone() else {
            errors.push(LineError {
                line,
                field: "id".into(),
                reason: "missing: an evaluated example needs an id to be matched with its run".into(),
            });
            continue;
        };
        if let Some(first_line) = line_of_id.insert(id.clone(), line) {
            errors.push(LineError {
                line,
                field: "id".into(),
                reason: format!("repeats the id {id:?} of line {first_line}"),
            });
            continue;
        }
        examples.push((line, example));
    }
    if errors.is_empty() { Ok(examples) } else { Err(errors) }
}

/// Parses an outputs JSONL file: one agent run per line, each naming its
/// example by `example_id`, at most one run per example.
pub fn parse_runs(text: &str) -> Result<Vec<(usize, AgentRun)>, Vec<LineError>> {
    parse_run_items(lines(text))
}

/// [`parse_runs`] over JSON texts already split, each with its 1-based
/// position (a line, or an index + 1 in a JSON array).
pub fn parse_run_items<'a>(
    items: impl IntoIterator<Item = (usize, &'a str)>,
) -> Result<Vec<(usize, AgentRun)>, Vec<LineError>> {
    let mut errors = Vec::new();
    let mut runs = Vec::new();
    let mut line_of_id: HashMap<String, usize> = HashMap::new();
    for (line, text) in items {
        let run = match AgentRun::from_json(text) {
            Ok(run) => run,
            Err(error) => {
                errors.extend(error.field_errors().into_iter().map(|error| at_line(line, error)));
                continue;
            }
        };
        let id = match run.example_id.as_deref() {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => {
                errors.push(LineError {
                    line,
                    field: "example_id".into(),
                    reason: "missing: every run must name the example it answers".into(),
                });
                continue;
            }
        };
        if let Some(first_line) = line_of_id.insert(id.clone(), line) {
            errors.push(LineError {
                line,
                field: "example_id".into(),
                reason: format!("a second run for example {id:?} (the first is on line {first_line})"),
            });
            continue;
        }
        runs.push((line, run));
    }
    if errors.is_empty() { Ok(runs) } else { Err(errors) }
}

/// Matches every example with its run by id. An example without a run gets an
/// agent error run ([`NO_OUTPUT`]) so it is graded, and fails, rather than
/// silently dropping out of the scores.
pub fn pair_runs(examples: Vec<(usize, Example)>, runs: Vec<(usize, AgentRun)>) -> Pairing {
    let mut runs_by_id: HashMap<String, (usize, AgentRun)> =
        runs.into_iter().map(|(line, run)| (run.example_id.clone().unwrap_or_default(), (line, run))).collect();
    let mut pairs = Vec::with_capacity(examples.len());
    let mut missing_runs = Vec::new();
    for (_, example) in examples {
        let id = example.id.clone().unwrap_or_default();
        let run = match runs_by_id.remove(&id) {
            Some((_, run)) => run,
            None => {
                missing_runs.push(id.clone());
                AgentRun { example_id: Some(id), error: Some(NO_OUTPUT.into()), ..Default::default() }
            }
        };
        pairs.push((example, run));
    }
    let mut unknown_runs: Vec<(usize, String)> = runs_by_id.into_iter().map(|(id, (line, _))| (line, id)).collect();
    unknown_runs.sort();
    Pairing { pairs, missing_runs, unknown_runs }
}

/// The non-blank lines with their 1-based numbers.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines().enumerate().map(|(index, line)| (index + 1, line)).filter(|(_, line)| !line.trim().is_empty())
}

fn at_line(line: usize, error: FieldError) -> LineError {
    LineError { line, field: error.field, reason: error.reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(id: &str) -> String {
        format!(r#"{{"id": "{id}", "inputs": {{"messages": [{{"role": "user", "content": "hi"}}]}}}}"#)
    }

    #[test]
    fn every_bad_example_line_is_named() {
        let text = [
            example("a"),
            String::new(),
            r#"{"inputs": {"messages": [{"role": "user", "content": "x"}]}, "metadata": {"severity": "p7"}, "id": "b"}"#
                .into(),
            r#"{"inputs": {"messages": [{"role": "user", "content": "no id"}]}}"#.into(),
            example("a"),
            "{not json".into(),
        ]
        .join("\n");
        let errors = parse_examples(&text).unwrap_err();
        let named: Vec<(usize, &str)> = errors.iter().map(|error| (error.line, error.field.as_str())).collect();
        assert_eq!(named, [(3, "metadata.severity"), (4, "id"), (5, "id"), (6, "$")]);
        assert!(errors[2].reason.contains("line 1"), "{}", errors[2]);
        assert_eq!(errors[0].to_string().split(": ").next(), Some("3"));
    }

    #[test]
    fn runs_need_a_unique_example_id() {
        let text = "\u{feff}{\"example_id\": \"a\"}\n{\"outputs\": {}}\n{\"example_id\": \"a\"}\n{\"example_id\": \"b\", \"latency_ms\": -1}\n";
        let errors = parse_runs(text).unwrap_err();
        let named: Vec<(usize, &str)> = errors.iter().map(|error| (error.line, error.field.as_str())).collect();
        assert_eq!(named, [(2, "example_id"), (3, "example_id"), (4, "latency_ms")]);
        assert_eq!(parse_runs("{\"example_id\": \"a\"}\n\n{\"example_id\": \"b\"}").unwrap().len(), 2);
    }

    #[test]
    fn pairing_fills_missing_runs_and_reports_unknown_ones() {
        let examples = parse_examples(&[example("a"), example("b"), example("c")].join("\n")).unwrap();
        let runs = parse_runs(
            "{\"example_id\": \"z\"}\n{\"example_id\": \"c\", \"latency_ms\": 5}\n{\"example_id\": \"a\", \"error\": \"boom\"}",
        )
        .unwrap();
        let pairing = pair_runs(examples, runs);
        let ids: Vec<&str> = pairing.pairs.iter().map(|(example, _)| example.id.as_deref().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(pairing.pairs[0].1.error.as_deref(), Some("boom"));
        assert_eq!(pairing.pairs[1].1.error.as_deref(), Some(NO_OUTPUT));
        assert_eq!(pairing.pairs[2].1.latency_ms, Some(5));
        assert_eq!(pairing.missing_runs, ["b"]);
        assert_eq!(pairing.unknown_runs, [(1, "z".to_owned())]);
    }
}
