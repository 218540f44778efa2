//! `assay compare A B`: how experiment B differs from experiment A, per score
//! key and example by example, regressions first.

use super::EXIT_FAILED;
use super::client::{Client, ClientArgs, encode};
use clap::Args;
use serde_json::Value;
use std::process::ExitCode;

/// Changed examples printed in the terminal report; `--json` has them all.
const EXAMPLES_SHOWN_MAX: usize = 20;

#[derive(Debug, Args)]
#[command(after_help = "Exit status: 0 when B has no regression against A, 1 when it has, 2 on errors.")]
pub struct CompareArgs {
    /// The baseline experiment's id.
    a: String,
    /// The experiment compared with it.
    b: String,
    #[command(flatten)]
    client: ClientArgs,
}

pub fn run(arguments: CompareArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&arguments.client);
    let comparison =
        client.get(&format!("/api/v1/experiments/compare?a={}&b={}", encode(&arguments.a), encode(&arguments.b)))?;
    if arguments.client.json {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        print!("{}", human(&comparison));
    }
    let regressions = comparison["regression_count"].as_u64().unwrap_or(0);
    Ok(if regressions == 0 { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
}

/// Per key means and deltas, then the changed examples, regressions first.
fn human(comparison: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let side = |experiment: &Value| {
        format!(
            "{} ({}@{})",
            experiment["name"].as_str().unwrap_or("?"),
            experiment["dataset"].as_str().unwrap_or("?"),
            experiment["dataset_version"]
        )
    };
    let _ = writeln!(out, "A: {}\nB: {}", side(&comparison["a"]), side(&comparison["b"]));
    if comparison["same_dataset_version"] == Value::Bool(false) {
        out.push_str("warning: A and B graded different dataset versions\n");
    }
    let cell = |value: &Value| value.as_f64().map_or_else(|| "-".to_owned(), |value| format!("{value:.3}"));
    let _ = writeln!(
        out,
        "\n{:28}  {:>7}  {:>7}  {:>7}  {:>9}  {:>8}",
        "key", "mean A", "mean B", "delta", "regressed", "improved"
    );
    for key in comparison["keys"].as_array().into_iter().flatten() {
        let delta = key["delta"].as_f64().map_or_else(|| "-".to_owned(), |delta| format!("{delta:+.3}"));
        let _ = writeln!(
            out,
            "{:28}  {:>7}  {:>7}  {:>7}  {:>9}  {:>8}",
            key["key"].as_str().unwrap_or("?"),
            cell(&key["mean_a"]),
            cell(&key["mean_b"]),
            delta,
            key["regressed"].to_string(),
            key["improved"].to_string()
        );
    }
    let _ = writeln!(
        out,
        "\n{} regression(s), {} improvement(s)",
        comparison["regression_count"], comparison["improvement_count"]
    );
    let changes = comparison["examples"].as_array().cloned().unwrap_or_default();
    for change in changes.iter().take(EXAMPLES_SHOWN_MAX) {
        let one_line =
            |value: &Value| value.as_str().map_or_else(|| "-".to_owned(), |text| text.replace(['\n', '\r'], " "));
        let _ = writeln!(
            out,
            "\n{} {} {}: {} -> {} ({:+.3})",
            change["direction"].as_str().unwrap_or("?"),
            change["example_id"].as_str().unwrap_or("?"),
            change["key"].as_str().unwrap_or("?"),
            cell(&change["a"]["value"]),
            cell(&change["b"]["value"]),
            change["delta"].as_f64().unwrap_or(0.0)
        );
        let _ = writeln!(out, "  A says: {}", last_message(&change["a"]["outputs"]));
        let _ = writeln!(out, "     comment: {}", one_line(&change["a"]["comment"]));
        let _ = writeln!(out, "  B says: {}", last_message(&change["b"]["outputs"]));
        let _ = writeln!(out, "     comment: {}", one_line(&change["b"]["comment"]));
    }
    if changes.len() > EXAMPLES_SHOWN_MAX {
        let _ = writeln!(out, "\n... {} more (use --json)", changes.len() - EXAMPLES_SHOWN_MAX);
    }
    out
}

/// The agent's last message and its tool calls, on one line.
fn last_message(outputs: &Value) -> String {
    let text = outputs["messages"]
        .as_array()
        .and_then(|messages| messages.last())
        .and_then(|message| message["content"].as_str())
        .unwrap_or("")
        .replace(['\n', '\r'], " ");
    let tools: Vec<&str> =
        outputs["tool_calls"].as_array().into_iter().flatten().filter_map(|call| call["name"].as_str()).collect();
    if tools.is_empty() { format!("{text:?}") } else { format!("{text:?} [tools: {}]", tools.join(", ")) }
}
