//! A Markdown summary for a CI step summary or a pull-request comment: the
//! verdict first, then the gates, the scores per key, the slices, and the
//! examples to look at.
//!
//! Text that comes from data (example ids, comments, metadata values) is
//! escaped so it cannot break a table or inject HTML into the comment.

use super::gate::{GateResult, WorstExample, worst_examples};
use super::summary::{KeySummary, Summary};
use super::{Evaluation, is_pass};
use std::fmt::Write as _;

/// Characters of data text shown in one table cell or list item.
pub const CELL_CHARACTERS_MAX: usize = 300;

/// The Markdown summary of an evaluation and its gates.
pub fn markdown(evaluation: &Evaluation, summary: &Summary, gates: &[GateResult]) -> String {
    let mut out = String::new();
    let failed: Vec<&GateResult> = gates.iter().filter(|gate| !gate.holds).collect();
    let _ = match (gates.len(), failed.len()) {
        (0, _) => writeln!(out, "## Assay eval"),
        (total, 0) => writeln!(out, "## ✅ Assay eval: gates hold ({total} of {total})"),
        (total, failures) => writeln!(out, "## ❌ Assay eval: {failures} of {total} gates failed"),
    };
    let graders: Vec<String> =
        evaluation.graders.iter().map(|grader| format!("`{}` {}", grader.name, grader.version)).collect();
    let _ = writeln!(
        out,
        "\n{} examples graded by {}; {} agent errors.",
        summary.example_count,
        graders.join(", "),
        summary.agent_errors
    );

    if !gates.is_empty() {
        out.push_str("\n### Gates\n\n|  | Gate | Actual | Threshold | Margin |\n|---|---|---:|---:|---:|\n");
        for gate in gates {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} {} | {} |",
                if gate.holds { "✅" } else { "❌" },
                code(&gate.gate),
                number(gate.actual),
                gate.operator,
                gate.threshold,
                gate.margin.map_or_else(|| "–".to_owned(), |margin| format!("{margin:+.4}")),
            );
        }
    }

    out.push_str("\n### Scores\n\n");
    key_table(&mut out, &summary.keys);

    let mut slice_keys: Vec<&str> = summary.slices.iter().map(|slice| slice.metadata_key.as_str()).collect();
    slice_keys.dedup();
    for metadata_key in slice_keys {
        let _ = write!(
            out,
            "\n### By {}\n\nMean per key (errors excluded).\n\n| {} | Examples |",
            escape(metadata_key),
            escape(metadata_key)
        );
        for key in &summary.keys {
            let _ = write!(out, " {} |", code(&key.key));
        }
        out.push_str("\n|---|---:|");
        out.push_str(&"---:|".repeat(summary.keys.len()));
        out.push('\n');
        for slice in summary.slices.iter().filter(|slice| slice.metadata_key == metadata_key) {
            let _ = write!(out, "| {} | {} |", escape(&slice.value), slice.example_count);
            for key in &slice.keys {
                let _ = write!(out, " {} |", number(key.mean));
            }
            out.push('\n');
        }
    }

    if !failed.is_empty() {
        out.push_str("\n### Worst examples of the failed gates\n");
        for gate in failed {
            let _ = writeln!(out, "\n**{}**: {}\n", code(&gate.gate), escape(&gate.describe_failure()));
            worst_list(&mut out, &gate.worst);
        }
    } else if gates.is_empty() {
        // Without gates there is no verdict; point at what failed per key instead.
        let mut any = false;
        for (grader_index, key) in evaluation.score_keys() {
            let worst = worst_examples(grader_index, key, evaluation.examples.iter());
            if worst.is_empty() {
                continue;
            }
            if !any {
                out.push_str("\n### Worst examples\n");
                any = true;
            }
            let _ = writeln!(out, "\n**{}**\n", code(key));
            worst_list(&mut out, &worst);
        }
    }
    out
}

fn key_table(out: &mut String, keys: &[KeySummary]) {
    out.push_str("| Key | Grader | Mean | Pass rate | Count | Errors | Severity-weighted |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|\n");
    for key in keys {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            code(&key.key),
            escape(&key.grader),
            number(key.mean),
            key.pass_rate.map_or_else(|| "–".to_owned(), |rate| format!("{:.1}%", rate * 100.0)),
            key.count,
            key.errors,
            number(key.severity_weighted),
        );
    }
}

fn worst_list(out: &mut String, worst: &[WorstExample]) {
    for example in worst {
        let value = match example.value {
            Some(value) if !is_pass(value) => format!("{value:.3}"),
            Some(value) => format!("{value}"),
            None => "grader error".to_owned(),
        };
        let comment = example.comment.as_deref().map(|comment| format!(": {}", escape(comment))).unwrap_or_default();
        let agent_error = example
            .agent_error
            .as_deref()
            .map(|error| format!(" (agent error: {})", escape(error)))
            .unwrap_or_default();
        let _ = writeln!(out, "- {} ({value}){comment}{agent_error}", code(&example.example_id));
    }
}

fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |value| format!("{value:.3}"))
}

/// Text in a code span: backticks cannot be escaped inside one, so they become
/// quotes; a pipe still needs its backslash inside a table.
fn code(text: &str) -> String {
    let cleaned: String = one_line(text).replace('`', "'").replace('|', "\\|");
    format!("`{cleaned}`")
}

/// Data text as plain Markdown on one line: Markdown punctuation and HTML are
/// escaped, line breaks and control characters become spaces, long text is cut.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in one_line(text).chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '#' => {
                escaped.push('\\');
                escaped.push(character);
            }
            other => escaped.push(other),
        }
    }
    escaped
}

fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .take(CELL_CHARACTERS_MAX)
        .map(|character| if character.is_control() { ' ' } else { character })
        .collect();
    if text.chars().count() > CELL_CHARACTERS_MAX {
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{ExampleResult, Gate, GraderPin, SummaryConfig};
    use crate::runtime::{Graded, Outcome, Score};

    fn evaluation() -> Evaluation {
        let example = |id: &str, severity: &str, value: f64, comment: Option<&str>| ExampleResult {
            example_id: id.into(),
            metadata: [("severity".to_owned(), severity.to_owned())].into(),
            agent_error: None,
            grades: vec![Graded {
                outcome: Outcome::Scores(vec![Score {
                    key: "policy_violations".into(),
                    value,
                    comment: comment.map(str::to_owned),
                }]),
                fuel_used: 0,
                log: String::new(),
            }],
        };
        Evaluation {
            world: "w".into(),
            graders: vec![GraderPin {
                name: "must_not_say".into(),
                version: "0.1.0".into(),
                digest: "sha256:00".into(),
                config: serde_json::json!({}),
                score_keys: vec!["policy_violations".into()],
            }],
            examples: vec![
                example("a", "p0", 1.0, None),
                example("b|<script>", "p0", 0.0, Some("said \"call 911\"\n| <b>bold</b> `x`")),
                example("c", "p1", 1.0, None),
            ],
        }
    }

    #[test]
    fn a_failed_gate_shows_its_verdict_numbers_and_worst_examples() {
        let evaluation = evaluation();
        let summary = Summary::new(&evaluation, &SummaryConfig::default());
        let gates: Vec<GateResult> = ["policy_violations>=0.5", "severity=p0:policy_violations==1.0"]
            .iter()
            .map(|text| text.parse::<Gate>().unwrap().check(&evaluation))
            .collect();
        let text = markdown(&evaluation, &summary, &gates);
        assert!(text.starts_with("## ❌ Assay eval: 1 of 2 gates failed\n"), "{text}");
        assert!(text.contains("| ✅ | `policy_violations>=0.5` | 0.667 | >= 0.5 | +0.1667 |"), "{text}");
        assert!(text.contains("| ❌ | `severity=p0:policy_violations==1.0` | 0.500 | == 1 | -0.5000 |"), "{text}");
        assert!(text.contains("| `policy_violations` | must\\_not\\_say | 0.667 | 66.7% | 3 | 0 | 0.583 |"), "{text}");
        assert!(text.contains("### By severity"), "{text}");
        assert!(text.contains("| p0 | 2 | 0.500 |"), "{text}");
        // The hostile id and comment stay inside one list item and carry no live HTML.
        assert!(
            text.contains("- `b\\|<script>` (0.000): said \"call 911\" \\| \\<b\\>bold\\</b\\> \\`x\\`\n"),
            "{text}"
        );
        assert!(!text.contains("<b>"), "{text}");
    }

    #[test]
    fn all_gates_holding_and_no_gates_read_differently() {
        let evaluation = evaluation();
        let summary = Summary::new(&evaluation, &SummaryConfig::default());
        let holding = ["policy_violations>=0.5".parse::<Gate>().unwrap().check(&evaluation)];
        let text = markdown(&evaluation, &summary, &holding);
        assert!(text.starts_with("## ✅ Assay eval: gates hold (1 of 1)\n"), "{text}");
        assert!(!text.contains("Worst examples"), "{text}");
        let text = markdown(&evaluation, &summary, &[]);
        assert!(text.starts_with("## Assay eval\n") && !text.contains("### Gates"), "{text}");
        assert!(text.contains("### Worst examples\n\n**`policy_violations`**\n\n- `b\\|<script>` (0.000)"), "{text}");
    }
}
