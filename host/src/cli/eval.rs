//! `assay eval`: grade an agent's outputs against a golden dataset and gate
//! on the scores. The offline mode reads both from files and needs no server,
//! so a CI job gates a pull request with the very graders the server runs.

use super::client::encode;
use super::{EXIT_FAILED, SandboxArgs};
use crate::agent::Target;
use crate::eval::gate::metadata_values;
use crate::eval::junit::junit;
use crate::eval::markdown::markdown;
use crate::eval::summary::KeySummary;
use crate::eval::{
    Evaluation, Gate, GateResult, GraderPin, LineError, SeverityWeights, Summary, SummaryConfig, inputs,
};
use crate::model::Example;
use crate::runtime::{GraderCall, Outcome, WIT_WORLD};
use anyhow::Context as _;
use clap::Args;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

pub use crate::eval::DEFAULT_GRADERS;
/// Bytes of the dataset file and of the outputs file.
pub const INPUT_FILE_BYTES_MAX: u64 = 256 << 20;

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 when every gate holds, 1 when a gate fails, 2 on bad input or infrastructure errors.\n\n\
Example:\n  assay eval --dataset-file golden.jsonl --outputs runs.jsonl \\\n    \
--gate 'required_tools_called>=0.95' --gate 'severity=p0:policy_violations==1.0' \\\n    \
--junit report.xml --summary report.md"
)]
pub struct EvalArgs {
    /// The golden dataset: a JSONL file, one example per line, each with a unique `id` (offline mode).
    #[arg(long, value_name = "FILE", required_unless_present = "dataset", conflicts_with = "dataset")]
    dataset_file: Option<PathBuf>,
    /// A dataset on the server, `NAME@REF` (`triage-golden@v1.0`, `name@17`): the server grades with its
    /// reference graders and stores the experiment (server mode; see --server and --token).
    #[arg(long, value_name = "NAME@REF")]
    dataset: Option<String>,
    /// Server mode: the experiment's name prefix; the server appends the experiment id.
    #[arg(long, value_name = "PREFIX", requires = "dataset")]
    name: Option<String>,
    /// Server mode: free metadata stored with the experiment, as KEY=VALUE (git sha, PR number). Repeat.
    #[arg(long = "metadata", value_name = "KEY=VALUE", requires = "dataset")]
    metadata: Vec<String>,
    /// Server mode: the Assay server.
    #[arg(long, env = "ASSAY_URL", default_value = "http://127.0.0.1:7777")]
    server: String,
    /// Server mode: a bearer token with the engineer role.
    #[arg(long, env = "ASSAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The agent's outputs: a JSONL file, one agent run per line, matched to its example by `example_id`.
    /// An example with no run is graded as an agent error.
    #[arg(long, value_name = "FILE", required_unless_present = "target", conflicts_with = "target")]
    outputs: Option<PathBuf>,
    /// The agent's endpoint instead of a file: called once per example with POST {"example_id", "inputs"},
    /// answering with an agent run. In server mode the server calls it. A call that fails after every retry
    /// is recorded as that example's agent error.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// Calls to the target in flight at once.
    #[arg(long, value_name = "N", default_value_t = 8, requires = "target")]
    max_concurrency: usize,
    /// Deadline of one call to the target, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000, requires = "target")]
    target_timeout_ms: u64,
    /// Retries of a call to the target on 5xx, 429, timeouts and broken connections.
    #[arg(long, value_name = "N", default_value_t = 2, requires = "target")]
    retries: u32,
    /// Wait before the first retry, in milliseconds; doubled for each further one.
    #[arg(long, value_name = "MS", default_value_t = 200, requires = "target")]
    backoff_ms: u64,
    /// Server mode: an experiment to compare with; the evaluation fails when more than --max-regressions
    /// examples score lower on some key than they did there.
    #[arg(long, value_name = "EXPERIMENT", requires = "dataset")]
    baseline: Option<String>,
    /// Examples that may regress against --baseline [default: 0].
    #[arg(long, value_name = "N", requires = "baseline")]
    max_regressions: Option<usize>,
    /// A grader to run: a reference grader's name or the path of a component (.wasm). Repeat for several
    /// [default: must_not_say and must_call].
    #[arg(long = "grader", value_name = "GRADER")]
    graders: Vec<String>,
    /// A grader's configuration as GRADER=JSON, e.g. must_call='{"trajectory": "strict"}'. GRADER is as
    /// given to --grader, or the grader's name.
    #[arg(long = "grader-config", value_name = "GRADER=JSON")]
    grader_configs: Vec<String>,
    /// A gate, KEY OP NUMBER with OP one of >=, >, <=, <, ==, optionally restricted to a metadata slice:
    /// 'required_tools_called>=0.95', 'severity=p0:policy_violations==1.0'. The value is the key's mean,
    /// with grader failures counted as 0. Repeat for several.
    #[arg(long = "gate", value_name = "GATE")]
    gates: Vec<String>,
    /// The weight of a severity in the severity-weighted score, as SEVERITY=WEIGHT. Repeat for several
    /// [default: p0=5 p1=2 p2=1; others weigh 1].
    #[arg(long = "severity-weight", value_name = "SEVERITY=WEIGHT")]
    severity_weights: Vec<String>,
    /// Write a JUnit XML report here: one test case per example × grader × score key, and one per gate.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write a Markdown summary here, for a CI step summary or a pull-request comment.
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// Print the full result as JSON (graders, summary, gates and every score) instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

/// Exit 0 when every gate holds, 1 when one fails, 2 on bad input.
pub fn run(arguments: EvalArgs) -> anyhow::Result<ExitCode> {
    // Everything the user typed is checked before any file is read or grader compiled.
    let mut gates: Vec<Gate> = arguments.gates.iter().map(|text| text.parse::<Gate>()).collect::<Result<_, _>>()?;
    let mut severity_weights = SeverityWeights::default();
    for text in &arguments.severity_weights {
        severity_weights.set(text)?;
    }
    let mut configs = parse_grader_configs(&arguments.grader_configs)?;
    let target = arguments.target.as_ref().map(|url| Target {
        url: url.clone(),
        max_concurrency: arguments.max_concurrency,
        timeout_ms: arguments.target_timeout_ms,
        retries: arguments.retries,
        backoff_ms: arguments.backoff_ms,
    });
    if let Some(target) = &target
        && let Some((field, reason)) = target.problems().into_iter().next()
    {
        let option = match field {
            "url" => "--target",
            "timeout_ms" => "--target-timeout-ms",
            "max_concurrency" => "--max-concurrency",
            "backoff_ms" => "--backoff-ms",
            _ => "--retries",
        };
        anyhow::bail!("{option}: {reason}");
    }
    let Some(dataset_file) = arguments.dataset_file.clone() else {
        return run_on_server(arguments, configs, target, severity_weights);
    };

    let dataset = InputFile::read(&dataset_file)?;
    let examples = inputs::parse_examples(&dataset.text).map_err(|errors| dataset.refused(errors))?;
    let (pairing, outputs) = match (&arguments.outputs, &target) {
        (Some(path), _) => {
            let outputs = InputFile::read(path)?;
            let runs = inputs::parse_runs(&outputs.text).map_err(|errors| outputs.refused(errors))?;
            let pairing = inputs::pair_runs(examples, runs);
            for (line, example_id) in &pairing.unknown_runs {
                eprintln!(
                    "warning: {}:{line}: a run for example {example_id:?}, which is not in {}; ignored",
                    outputs.shown, dataset.shown
                );
            }
            if !pairing.missing_runs.is_empty() {
                eprintln!(
                    "warning: {} has no run for {} example(s) ({}); graded as agent errors",
                    outputs.shown,
                    pairing.missing_runs.len(),
                    shortened_list(&pairing.missing_runs)
                );
            }
            (pairing, outputs.provenance())
        }
        (None, Some(target)) => {
            let examples: Vec<Example> = examples.into_iter().map(|(_, example)| example).collect();
            let bar = progress_bar(
                examples.len() as u64,
                "calling the agent {bar:40.cyan/blue} {pos}/{len} examples ({eta} left)",
            );
            let (runs, stats) = target.run(&examples, &|done| bar.set_position(done as u64));
            bar.finish_and_clear();
            if stats.agent_errors > 0 {
                eprintln!(
                    "warning: the agent failed on {} of {} example(s) after {} attempt(s) in all; graded as agent errors",
                    stats.agent_errors, stats.calls, stats.attempts
                );
            }
            let pairs = examples.into_iter().zip(runs).collect();
            (inputs::Pairing { pairs, missing_runs: Vec::new(), unknown_runs: Vec::new() }, json!({"target": target}))
        }
        (None, None) => anyhow::bail!("give the agent's runs with --outputs FILE or --target URL"),
    };

    let runtime = arguments.sandbox.runtime()?;
    let grader_names: Vec<String> = if arguments.graders.is_empty() {
        DEFAULT_GRADERS.iter().map(|name| name.to_string()).collect()
    } else {
        arguments.graders.clone()
    };
    let mut pins = Vec::new();
    let mut calls = Vec::new();
    for given in &grader_names {
        let grader = super::load_grader(&runtime, given)?;
        let config = configs
            .remove(given)
            .or_else(|| configs.remove(&grader.info.name))
            .unwrap_or_else(|| Value::Object(Default::default()));
        for key in &grader.info.score_keys {
            if let Some(other) = pins.iter().find(|pin: &&GraderPin| pin.score_keys.contains(key)) {
                anyhow::bail!(
                    "graders {} and {} both produce the score key {key:?}; give each key to one grader",
                    other.name,
                    grader.info.name
                );
            }
        }
        pins.push(GraderPin::of(&grader, &config));
        calls.push(GraderCall { grader: Arc::new(grader), config: config.to_string() });
    }
    if let Some(unused) = configs.keys().next() {
        anyhow::bail!(
            "--grader-config names {unused:?}, which is not one of the graders ({})",
            grader_names.join(", ")
        );
    }
    let metadata = metadata_values(pairing.pairs.iter().map(|(example, _)| example));
    for gate in &mut gates {
        gate.resolve(&pins, &metadata)?;
    }

    let progress = progress_bar(
        pairing.pairs.len() as u64,
        "grading {bar:40.cyan/blue} {pos}/{len} examples × {msg} graders ({eta} left)",
    );
    progress.set_message(calls.len().to_string());
    let evaluation =
        Evaluation::run(&runtime, pins, &calls, &pairing.pairs, &mut |done| progress.set_position(done as u64));
    progress.finish_and_clear();

    let summary = Summary::new(&evaluation, &SummaryConfig { severity_weights, ..SummaryConfig::default() });
    let results: Vec<GateResult> = gates.iter().map(|gate| gate.check(&evaluation)).collect();
    warn_about_grader_failures(&evaluation);
    if let Some(path) = &arguments.junit {
        std::fs::write(path, junit(&evaluation, &results))
            .with_context(|| format!("could not write the JUnit report {}", path.display()))?;
    }
    if let Some(path) = &arguments.summary {
        std::fs::write(path, markdown(&evaluation, &summary, &results))
            .with_context(|| format!("could not write the Markdown summary {}", path.display()))?;
    }
    let passed = results.iter().all(|gate| gate.holds);
    if arguments.json {
        let report = json!({
            "passed": passed,
            "dataset_file": dataset.provenance(),
            "outputs": outputs,
            "world": WIT_WORLD,
            "graders": evaluation.graders,
            "gates": results,
            "summary": summary,
            "missing_runs": pairing.missing_runs,
            "ignored_runs": pairing.unknown_runs.iter()
                .map(|(line, example_id)| json!({"line": line, "example_id": example_id}))
                .collect::<Vec<_>>(),
            "results": evaluation.examples,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&evaluation, &summary, &results));
    }
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
}

/// Server mode: send the outputs (or the target) to the server, which grades,
/// stores and gates them as an experiment. Same exit codes as offline: a
/// refusal of the input (unknown dataset, bad gate) is a usage error (2), a
/// failed gate is 1.
fn run_on_server(
    arguments: EvalArgs,
    mut configs: BTreeMap<String, Value>,
    target: Option<Target>,
    severity_weights: SeverityWeights,
) -> anyhow::Result<ExitCode> {
    let dataset = arguments.dataset.clone().context("--dataset or --dataset-file is required")?;
    let grader_names: Vec<String> = if arguments.graders.is_empty() {
        DEFAULT_GRADERS.iter().map(|name| name.to_string()).collect()
    } else {
        arguments.graders.clone()
    };
    let graders: Vec<Value> = grader_names
        .iter()
        .map(|name| json!({"name": name, "config": configs.remove(name).unwrap_or_else(|| json!({}))}))
        .collect();
    if let Some(unused) = configs.keys().next() {
        anyhow::bail!(
            "--grader-config names {unused:?}, which is not one of the graders ({})",
            grader_names.join(", ")
        );
    }
    let mut metadata = serde_json::Map::new();
    for text in &arguments.metadata {
        let (key, value) = text.split_once('=').with_context(|| format!("--metadata {text:?}: expected KEY=VALUE"))?;
        metadata.insert(key.trim().to_owned(), Value::String(value.to_owned()));
    }
    let mut body = json!({
        "dataset": dataset,
        "graders": graders,
        "metadata": metadata,
        "gates": arguments.gates,
        "severity_weights": severity_weights,
    });
    match (&arguments.outputs, target) {
        (Some(path), _) => {
            let outputs = InputFile::read(path)?;
            let runs = inputs::parse_runs(&outputs.text).map_err(|errors| outputs.refused(errors))?;
            let runs: Vec<Value> =
                runs.into_iter().map(|(_, run)| serde_json::to_value(run)).collect::<Result<_, _>>()?;
            body["outputs"] = json!(runs);
        }
        (None, Some(target)) => body["target"] = serde_json::to_value(target)?,
        (None, None) => anyhow::bail!("give the agent's runs with --outputs FILE or --target URL"),
    }
    if let Some(name) = &arguments.name {
        body["name"] = json!(name);
    }
    if let Some(baseline) = &arguments.baseline {
        body["baseline"] = json!(baseline);
        body["max_regressions"] = json!(arguments.max_regressions.unwrap_or(0));
    }
    let client = super::client::Client::new(&super::client::ClientArgs {
        server: arguments.server.clone(),
        token: arguments.token.clone(),
        json: arguments.json,
    });
    // The input was refused: that is bad usage here, not a gate verdict.
    let mut reply =
        client.send_json("POST", "/api/v1/experiments", &body).map_err(|error| anyhow::anyhow!("{error:#}"))?;
    let id = reply["experiment"]["id"].as_str().context("the server answered without an experiment id")?.to_owned();
    if reply["experiment"]["status"] == "running" {
        let experiment = follow(&client, &id)?;
        reply = json!({"experiment": experiment});
    }
    let experiment = &reply["experiment"];
    if experiment["status"] != "completed" {
        anyhow::bail!(
            "experiment {id} {}: {}",
            experiment["status"].as_str().unwrap_or("did not complete"),
            experiment["error"].as_str().unwrap_or("no reason given")
        );
    }
    let passed = experiment["gates"].as_array().is_some_and(|gates| gates.iter().all(|gate| gate["holds"] == true));
    for (path, format, what) in
        [(&arguments.junit, "junit", "JUnit report"), (&arguments.summary, "markdown", "Markdown summary")]
    {
        if let Some(path) = path {
            let text = client.get_text(&format!("/api/v1/experiments/{}/report?format={format}", encode(&id)))?;
            std::fs::write(path, text).with_context(|| format!("could not write the {what} {}", path.display()))?;
        }
    }
    reply["passed"] = json!(passed);
    if arguments.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        print!("{}", human_from_server(&reply));
    }
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
}

/// Follows a running experiment with a progress bar until it completes or
/// fails, and returns its record.
fn follow(client: &super::client::Client, id: &str) -> anyhow::Result<Value> {
    // The server answers as soon as the experiment finishes, or after this long with its progress.
    const UPDATE_MS: u64 = 250;
    let bar = progress_bar(0, "{msg} {bar:40.cyan/blue} {pos}/{len} examples");
    loop {
        let status = client.get(&format!("/api/v1/experiments/{}/status?wait_ms={UPDATE_MS}", encode(id)))?;
        if status["status"] != "running" {
            bar.finish_and_clear();
            return Ok(client.get(&format!("/api/v1/experiments/{}", encode(id)))?["experiment"].take());
        }
        bar.set_length(status["total"].as_u64().unwrap_or(0));
        bar.set_position(status["done"].as_u64().unwrap_or(0));
        bar.set_message(match status["phase"].as_str() {
            Some("calling_agent") => "calling the agent",
            Some("grading") => "grading",
            _ => "storing",
        });
    }
}

/// A progress bar on stderr when it is a terminal, else a hidden one.
fn progress_bar(length: u64, template: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(length);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// The terminal report of a server experiment: its name, scores per key and gates.
pub(super) fn human_from_server(reply: &Value) -> String {
    use std::fmt::Write as _;
    let experiment = &reply["experiment"];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "experiment {} ({}) on {}@{}: {} examples",
        experiment["name"].as_str().unwrap_or("?"),
        experiment["id"].as_str().unwrap_or("?"),
        experiment["dataset"].as_str().unwrap_or("?"),
        experiment["dataset_version"],
        experiment["example_count"]
    );
    let cell = |value: &Value| value.as_f64().map_or_else(|| "-".to_owned(), |value| format!("{value:.3}"));
    let _ = writeln!(out, "\n{:28}  {:>6}  {:>9}  {:>5}  {:>6}", "key", "mean", "pass rate", "count", "errors");
    for key in experiment["summary"]["keys"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:28}  {:>6}  {:>9}  {:>5}  {:>6}",
            key["key"].as_str().unwrap_or("?"),
            cell(&key["mean"]),
            key["pass_rate"].as_f64().map_or_else(|| "-".to_owned(), |rate| format!("{:.1}%", rate * 100.0)),
            key["count"].to_string(),
            key["errors"].to_string()
        );
    }
    let gates = experiment["gates"].as_array().cloned().unwrap_or_default();
    if !gates.is_empty() {
        out.push_str("\ngates\n");
        for gate in &gates {
            let holds = gate["holds"].as_bool().unwrap_or(false);
            let _ = writeln!(
                out,
                "  {}  {}  ({} = {}, margin {})",
                if holds { "ok  " } else { "FAIL" },
                gate["gate"].as_str().unwrap_or("?"),
                gate["key"].as_str().unwrap_or("?"),
                cell(&gate["actual"]),
                gate["margin"].as_f64().map_or_else(|| "-".to_owned(), |margin| format!("{margin:+.4}"))
            );
            if !holds {
                for worst in gate["worst"].as_array().into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "          {} ({}): {}",
                        worst["example_id"].as_str().unwrap_or("?"),
                        cell(&worst["value"]),
                        worst["comment"].as_str().unwrap_or("").replace(['\n', '\r'], " ")
                    );
                }
            }
        }
    }
    out
}

/// An input file's text, with what is needed to name it in messages and provenance.
struct InputFile {
    shown: String,
    text: String,
    sha256: String,
}

impl InputFile {
    fn read(path: &Path) -> anyhow::Result<InputFile> {
        let shown = path.display().to_string();
        let metadata = std::fs::metadata(path).with_context(|| format!("could not read {shown}"))?;
        anyhow::ensure!(
            metadata.len() <= INPUT_FILE_BYTES_MAX,
            "{shown} is {} bytes, over the limit of {INPUT_FILE_BYTES_MAX} bytes",
            metadata.len()
        );
        let bytes = std::fs::read(path).with_context(|| format!("could not read {shown}"))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let text = String::from_utf8(bytes).with_context(|| format!("{shown} is not UTF-8 text"))?;
        Ok(InputFile { shown, text, sha256 })
    }

    /// Every bad line as `FILE:LINE: FIELD: REASON`, up to [`inputs::LINE_ERRORS_MAX`].
    fn refused(&self, errors: Vec<LineError>) -> anyhow::Error {
        let mut message = format!("{} has {} problem(s):", self.shown, errors.len());
        for error in errors.iter().take(inputs::LINE_ERRORS_MAX) {
            message.push_str(&format!("\n  {}:{error}", self.shown));
        }
        if errors.len() > inputs::LINE_ERRORS_MAX {
            message.push_str(&format!("\n  ... and {} more", errors.len() - inputs::LINE_ERRORS_MAX));
        }
        anyhow::anyhow!(message)
    }

    fn provenance(&self) -> Value {
        json!({"path": self.shown, "sha256": format!("sha256:{}", self.sha256)})
    }
}

/// `GRADER=JSON` pairs; each JSON must be an object, each grader named once.
pub(super) fn parse_grader_configs(texts: &[String]) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut configs = BTreeMap::new();
    for text in texts {
        let (grader, config) =
            text.split_once('=').with_context(|| format!("--grader-config {text:?}: expected GRADER=JSON"))?;
        let config: Value = serde_json::from_str(config)
            .with_context(|| format!("--grader-config for {grader}: the configuration is not JSON"))?;
        anyhow::ensure!(config.is_object(), "--grader-config for {grader}: the configuration must be a JSON object");
        anyhow::ensure!(
            configs.insert(grader.trim().to_owned(), config).is_none(),
            "--grader-config names {grader} twice"
        );
    }
    Ok(configs)
}

/// Grader failures are data, but a CI log should say so loudly.
fn warn_about_grader_failures(evaluation: &Evaluation) {
    let mut by_kind: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for example in &evaluation.examples {
        for (grader, graded) in evaluation.graders.iter().zip(&example.grades) {
            if let Outcome::Failure(failure) = &graded.outcome {
                *by_kind.entry((grader.name.as_str(), failure.kind.as_str())).or_default() += 1;
            }
        }
    }
    for ((grader, kind), count) in by_kind {
        eprintln!("warning: grader {grader} failed on {count} example(s) ({kind}); they count as 0 in gates");
    }
}

fn shortened_list(items: &[String]) -> String {
    const SHOWN_MAX: usize = 5;
    let mut shown = items.iter().take(SHOWN_MAX).map(|item| format!("{item:?}")).collect::<Vec<_>>().join(", ");
    if items.len() > SHOWN_MAX {
        shown.push_str(&format!(", ... {} more", items.len() - SHOWN_MAX));
    }
    shown
}

/// The terminal report: scores per key, slices, gates, and the worst examples of failed gates.
fn human(evaluation: &Evaluation, summary: &Summary, gates: &[GateResult]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let graders: Vec<String> =
        evaluation.graders.iter().map(|grader| format!("{} {}", grader.name, grader.version)).collect();
    let _ = writeln!(
        out,
        "graded {} examples with {} ({} agent errors)\n",
        summary.example_count,
        graders.join(", "),
        summary.agent_errors
    );
    let width = summary.keys.iter().map(|key| key.key.len()).max().unwrap_or(3).max(3);
    let _ = writeln!(
        out,
        "{:width$}  {:>6}  {:>9}  {:>5}  {:>6}  {:>8}",
        "key", "mean", "pass rate", "count", "errors", "weighted"
    );
    let cell = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |value| format!("{value:.3}"));
    let row = |out: &mut String, label: &str, key: &KeySummary| {
        let _ = writeln!(
            out,
            "{label:width$}  {:>6}  {:>9}  {:>5}  {:>6}  {:>8}",
            cell(key.mean),
            key.pass_rate.map_or_else(|| "-".to_owned(), |rate| format!("{:.1}%", rate * 100.0)),
            key.count,
            key.errors,
            cell(key.severity_weighted),
        );
    };
    for key in &summary.keys {
        row(&mut out, &key.key, key);
    }
    let mut current = "";
    for slice in &summary.slices {
        if slice.metadata_key != current {
            current = &slice.metadata_key;
            let _ = writeln!(out, "\nby {current} (mean per key)");
        }
        let means: Vec<String> = slice.keys.iter().map(|key| format!("{} {}", key.key, cell(key.mean))).collect();
        let _ = writeln!(out, "  {} ({} examples): {}", slice.value, slice.example_count, means.join("  "));
    }
    if !gates.is_empty() {
        out.push_str("\ngates\n");
        for gate in gates {
            if gate.holds {
                let _ = writeln!(
                    out,
                    "  ok    {}  ({} = {}, margin {:+.4})",
                    gate.gate,
                    gate.key,
                    cell(gate.actual),
                    gate.margin.unwrap_or(0.0)
                );
            } else {
                let _ = writeln!(out, "  FAIL  {}  ({})", gate.gate, gate.describe_failure());
                for worst in &gate.worst {
                    let value = worst.value.map_or_else(|| "grader error".to_owned(), |value| format!("{value:.3}"));
                    let mut comment = worst.comment.as_deref().unwrap_or("").replace(['\n', '\r'], " ");
                    if let Some(error) = &worst.agent_error {
                        comment.push_str(&format!(" (agent error: {})", error.replace(['\n', '\r'], " ")));
                    }
                    let _ = writeln!(out, "          {} ({value}): {comment}", worst.example_id);
                }
            }
        }
        let failed = gates.iter().filter(|gate| !gate.holds).count();
        if failed == 0 {
            let _ = writeln!(out, "\nall {} gates hold", gates.len());
        } else {
            let _ = writeln!(out, "\n{failed} of {} gates failed", gates.len());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grader_configs_are_objects_named_once() {
        let configs =
            parse_grader_configs(&["must_call={\"trajectory\": \"strict\"}".into(), "x.wasm={}".into()]).unwrap();
        assert_eq!(configs["must_call"], json!({"trajectory": "strict"}));
        assert_eq!(configs["x.wasm"], json!({}));
        for (bad, message) in [
            (vec!["must_call"], "GRADER=JSON"),
            (vec!["must_call={"], "not JSON"),
            (vec!["must_call=[1]"], "JSON object"),
            (vec!["a={}", "a={}"], "twice"),
        ] {
            let texts: Vec<String> = bad.iter().map(|text| text.to_string()).collect();
            let error = parse_grader_configs(&texts).unwrap_err();
            assert!(format!("{error:#}").contains(message), "{bad:?}: {error:#}");
        }
    }
}
