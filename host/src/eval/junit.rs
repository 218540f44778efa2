//! JUnit XML for CI systems: one test case per example × grader × score key,
//! one test suite per grader, and a `gates` suite with one case per gate.
//!
//! A score below 1 fails its case, with the grader's comment; a grader failure
//! fails every case of that grader and example, with the failure's kind as the
//! type. A key the grader did not return for an example is skipped. The
//! output is deterministic (no timestamps, no durations), so the same
//! evaluation writes the same bytes.

use super::gate::GateResult;
use super::{Evaluation, ExampleResult, KeyOutcome, is_pass};
use std::fmt::Write as _;

/// The JUnit XML document of an evaluation and its gates.
pub fn junit(evaluation: &Evaluation, gates: &[GateResult]) -> String {
    let mut suites = String::new();
    let (mut tests_total, mut failures_total, mut skipped_total) = (0, 0, 0);
    for (grader_index, grader) in evaluation.graders.iter().enumerate() {
        let mut cases = String::new();
        let (mut tests, mut failures, mut skipped) = (0, 0, 0);
        for example in &evaluation.examples {
            for key in &grader.score_keys {
                tests += 1;
                let name = format!("{}: {key}", example.example_id);
                let _ = write!(
                    cases,
                    "    <testcase classname=\"{}\" name=\"{}\"",
                    attribute(&grader.name),
                    attribute(&name)
                );
                match Evaluation::outcome(example, grader_index, key) {
                    KeyOutcome::Scored(score) if is_pass(score.value) => cases.push_str("/>\n"),
                    KeyOutcome::Scored(score) => {
                        failures += 1;
                        let comment = score.comment.as_deref().unwrap_or("no comment");
                        let message = format!("{key} = {} (below 1): {comment}", score.value);
                        let _ = write!(
                            cases,
                            ">\n      <failure type=\"score\" message=\"{}\">{}</failure>\n    </testcase>\n",
                            attribute(&message),
                            text(&with_agent_error(comment, example)),
                        );
                    }
                    KeyOutcome::Error(failure) => {
                        failures += 1;
                        let message = format!("the grader failed: {failure}");
                        let _ = write!(
                            cases,
                            ">\n      <failure type=\"{}\" message=\"{}\">{}</failure>\n    </testcase>\n",
                            attribute(failure.kind.as_str()),
                            attribute(&message),
                            text(&with_agent_error(&message, example)),
                        );
                    }
                    KeyOutcome::NotScored => {
                        skipped += 1;
                        cases.push_str(">\n      <skipped message=\"the grader returned no score for this key\"/>\n    </testcase>\n");
                    }
                }
            }
        }
        let _ = write!(
            suites,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">\n{cases}  </testsuite>\n",
            attribute(&format!("{} {}", grader.name, grader.version)),
        );
        tests_total += tests;
        failures_total += failures;
        skipped_total += skipped;
    }
    if !gates.is_empty() {
        let failures = gates.iter().filter(|gate| !gate.holds).count();
        let _ = writeln!(
            suites,
            "  <testsuite name=\"gates\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">",
            gates.len()
        );
        for gate in gates {
            let _ = write!(suites, "    <testcase classname=\"gate\" name=\"{}\"", attribute(&gate.gate));
            if gate.holds {
                suites.push_str("/>\n");
            } else {
                let mut details = String::new();
                for worst in &gate.worst {
                    let value = worst.value.map_or_else(|| "error".to_owned(), |value| value.to_string());
                    let _ =
                        write!(details, "{} ({value}): {}", worst.example_id, worst.comment.as_deref().unwrap_or(""));
                    if let Some(error) = &worst.agent_error {
                        let _ = write!(details, " (agent error: {error})");
                    }
                    details.push('\n');
                }
                let _ = write!(
                    suites,
                    ">\n      <failure type=\"gate\" message=\"{}\">{}</failure>\n    </testcase>\n",
                    attribute(&gate.describe_failure()),
                    text(&details),
                );
            }
        }
        suites.push_str("  </testsuite>\n");
        tests_total += gates.len();
        failures_total += failures;
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"assay eval\" tests=\"{tests_total}\" failures=\"{failures_total}\" errors=\"0\" skipped=\"{skipped_total}\">\n{suites}</testsuites>\n"
    )
}

fn with_agent_error(message: &str, example: &ExampleResult) -> String {
    match &example.agent_error {
        Some(error) => format!("{message}\nagent error: {error}"),
        None => message.to_owned(),
    }
}

/// Escapes text for an attribute value in double quotes. Tabs and line breaks
/// become character references, which attribute normalisation would
/// otherwise turn into spaces.
fn attribute(value: &str) -> String {
    escape(value, true)
}

/// Escapes text for element content.
fn text(value: &str) -> String {
    escape(value, false)
}

fn escape(value: &str, in_attribute: bool) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\r' => escaped.push_str("&#13;"),
            '\t' if in_attribute => escaped.push_str("&#9;"),
            '\n' if in_attribute => escaped.push_str("&#10;"),
            '\t' | '\n' => escaped.push(character),
            // XML 1.0 cannot carry these at all, not even as references.
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => escaped.push('\u{fffd}'),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{ExampleResult, Gate, GraderPin};
    use crate::runtime::{FailureKind, GradeFailure, Graded, Outcome, Score};

    const HOSTILE: &str = "<&>\"' \u{0}\u{1b}\u{7}\r\n\t]]></failure>\u{fffe}é";

    fn evaluation() -> Evaluation {
        let graded = |scores: Vec<Score>| Graded { outcome: Outcome::Scores(scores), fuel_used: 0, log: String::new() };
        let score = |key: &str, value: f64, comment: Option<&str>| Score {
            key: key.into(),
            value,
            comment: comment.map(str::to_owned),
        };
        Evaluation {
            world: "w".into(),
            graders: vec![
                GraderPin {
                    name: "policy".into(),
                    version: "1.0.0".into(),
                    digest: "sha256:00".into(),
                    config: serde_json::json!({}),
                    score_keys: vec!["clean".into()],
                },
                GraderPin {
                    name: "tools".into(),
                    version: "2.0.0".into(),
                    digest: "sha256:01".into(),
                    config: serde_json::json!({}),
                    score_keys: vec!["called".into(), "order".into()],
                },
            ],
            examples: vec![
                ExampleResult {
                    example_id: format!("id {HOSTILE}"),
                    metadata: Default::default(),
                    agent_error: Some(HOSTILE.into()),
                    grades: vec![
                        graded(vec![score("clean", 0.0, Some(HOSTILE))]),
                        Graded {
                            outcome: Outcome::Failure(GradeFailure {
                                kind: FailureKind::OutOfFuel,
                                message: HOSTILE.into(),
                            }),
                            fuel_used: 0,
                            log: String::new(),
                        },
                    ],
                },
                ExampleResult {
                    example_id: "plain".into(),
                    metadata: Default::default(),
                    agent_error: None,
                    grades: vec![graded(vec![score("clean", 1.0, None)]), graded(vec![score("called", 1.0, None)])],
                },
            ],
        }
    }

    /// Every `<` opens a tag of the expected kinds, every `&` starts a known
    /// entity, and no character XML 1.0 forbids is left.
    fn assert_well_formed(xml: &str) {
        for character in xml.chars() {
            let allowed = matches!(character, '\t' | '\n' | '\r')
                || (character >= ' ' && character != '\u{fffe}' && character != '\u{ffff}');
            assert!(allowed, "forbidden character {character:?} in {xml}");
        }
        for (index, _) in xml.match_indices('&') {
            let rest = &xml[index..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#13;", "&#10;", "&#9;"]
                    .iter()
                    .any(|entity| rest.starts_with(entity)),
                "bad entity at {}",
                &rest[..rest.len().min(12)]
            );
        }
        let mut open: Vec<&str> = Vec::new();
        for piece in xml.split('<').skip(1) {
            let tag = &piece[..piece.find('>').expect("every tag closes")];
            if tag.starts_with('?') {
                continue;
            }
            let name_end = tag.find([' ', '/']).unwrap_or(tag.len());
            if let Some(closing) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(closing), "mismatched closing tag");
            } else if !tag.ends_with('/') {
                open.push(&tag[..name_end]);
            }
            // Attribute values are quoted and hold no quote or `<` of their own.
            assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in <{tag}>");
        }
        assert!(open.is_empty(), "unclosed {open:?}");
    }

    #[test]
    fn hostile_text_is_escaped_into_well_formed_xml() {
        let gates = [
            "clean>=0.9".parse::<Gate>().unwrap().check(&evaluation()),
            "called>=0.5".parse::<Gate>().unwrap().check(&evaluation()),
        ];
        let xml = junit(&evaluation(), &gates);
        assert_well_formed(&xml);
        assert!(xml.contains("name=\"id &lt;&amp;&gt;&quot;&apos; \u{fffd}\u{fffd}\u{fffd}&#13;&#10;&#9;]]&gt;&lt;/failure&gt;\u{fffd}é: clean\""), "{xml}");
        assert!(xml.contains("type=\"out_of_fuel\""), "{xml}");
        assert!(xml.contains("agent error: &lt;&amp;&gt;"), "{xml}");
    }

    #[test]
    fn one_case_per_example_grader_and_key_plus_one_per_gate() {
        let evaluation = evaluation();
        let gates = [
            "clean>=0.9".parse::<Gate>().unwrap().check(&evaluation),
            "called>=0.5".parse::<Gate>().unwrap().check(&evaluation),
        ];
        let xml = junit(&evaluation, &gates);
        // 2 examples × (1 + 2 keys) + 2 gates.
        assert_eq!(xml.matches("<testcase ").count(), 8);
        // Hostile example: clean 0 and both tools keys failed; gate clean>=0.9 fails (0.5).
        assert_eq!(xml.matches("<failure ").count(), 4, "{xml}");
        assert_eq!(xml.matches("<skipped ").count(), 1, "plain has no `order` score");
        assert!(xml.contains("<testsuites name=\"assay eval\" tests=\"8\" failures=\"4\" errors=\"0\" skipped=\"1\">"));
        assert!(xml.contains("<testsuite name=\"tools 2.0.0\" tests=\"4\" failures=\"2\""), "{xml}");
        assert!(xml.contains("<testcase classname=\"gate\" name=\"called&gt;=0.5\"/>"), "errors count as 0: 1/2 holds");
        assert!(xml.contains("clean = 0.5000, needs &gt;= 0.9: short by 0.4000"), "{xml}");
        assert_eq!(junit(&evaluation, &gates), xml, "deterministic");
    }
}
