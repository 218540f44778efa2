//! `assay grader`: the server's grader registry: publish, list, show,
//! promote, roll back, retire, shadow.

use super::EXIT_FAILED;
use super::client::{Client, ClientArgs, encode};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct GraderArgs {
    #[command(subcommand)]
    command: GraderCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum GraderCommand {
    /// Publish a component as NAME VERSION (the publisher role). The server checks it (a component of the
    /// grader world, a trial run of metadata(), which must say the same name and version), runs the bundled
    /// tests, and compiles it once. A published version never changes. The first version of a name is served.
    #[command(disable_version_flag = true)]
    Publish {
        /// The component (.wasm).
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: String,
        /// Test cases that travel with the grader: JSONL, one {example, run, config, expect: {KEY: VALUE}} per
        /// line. The publish is refused when one fails.
        #[arg(long, value_name = "FILE")]
        tests: Option<PathBuf>,
    },
    /// Every grader: what its name serves, and its versions.
    List,
    /// One grader: versions, what it serves, and the history of its alias.
    Show { name: String },
    /// Serve VERSION for NAME from the next grading call on, with no restart.
    #[command(disable_version_flag = true)]
    Promote {
        name: String,
        version: String,
        /// Refuse unless this shadow report shows the candidate agreeing with what is served now.
        #[arg(long, value_name = "REPORT_ID")]
        shadow_report: Option<String>,
        /// The agreement the shadow report must show [default: 0.95].
        #[arg(long, requires = "shadow_report")]
        min_agreement: Option<f64>,
    },
    /// Serve what NAME served before its current version was promoted.
    Rollback { name: String },
    /// Retire a version: kept for provenance, refused for new evaluations.
    #[command(disable_version_flag = true)]
    Retire { name: String, version: String },
    /// Grade the same pairs with what NAME serves and with CANDIDATE; report where they agree. Exit 1 when
    /// the agreement is below --min-agreement.
    Shadow {
        name: String,
        candidate: String,
        /// Grade the runs stored with this experiment (the agent is not called).
        #[arg(long, conflicts_with_all = ["dataset", "outputs"], required_unless_present = "dataset")]
        experiment: Option<String>,
        /// Or grade --outputs against this dataset reference.
        #[arg(long, requires = "outputs")]
        dataset: Option<String>,
        /// Agent runs, JSONL.
        #[arg(long, value_name = "FILE", requires = "dataset")]
        outputs: Option<PathBuf>,
        /// The configuration both versions get, as JSON.
        #[arg(long)]
        config: Option<String>,
        /// The agreement below which the command exits 1.
        #[arg(long)]
        min_agreement: Option<f64>,
    },
}

pub fn run(arguments: GraderArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&arguments.client);
    let json_output = arguments.client.json;
    let print = |value: &Value, human: &dyn Fn(&Value) -> String| -> anyhow::Result<()> {
        if json_output {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            print!("{}", human(value));
        }
        Ok(())
    };
    match arguments.command {
        GraderCommand::Publish { file, name, version, tests } => {
            let component =
                std::fs::read(&file).with_context(|| format!("could not read the component {}", file.display()))?;
            let path = format!("/api/v1/graders/{}/versions/{}", encode(&name), encode(&version));
            let reply = match tests {
                None => client.post_text(&path, "application/wasm", &component)?,
                Some(tests) => {
                    let tests = std::fs::read(&tests)
                        .with_context(|| format!("could not read the tests {}", tests.display()))?;
                    let (content_type, body) = multipart(&[
                        ("component", "application/wasm", &component),
                        ("tests", "application/x-ndjson", &tests),
                    ]);
                    client.post_text(&path, &content_type, &body)?
                }
            };
            print(&reply, &|reply| {
                let record = &reply["version"];
                let mut out = format!(
                    "{} {} {} ({}, {} bytes, {} test case(s) passed)\n",
                    if reply["created"] == true { "published" } else { "already published:" },
                    record["name"].as_str().unwrap_or("?"),
                    record["version"].as_str().unwrap_or("?"),
                    record["digest"].as_str().unwrap_or("?"),
                    record["size_bytes"],
                    record["tests_passed"]
                );
                if reply["alias"].is_object() {
                    out.push_str("it is the first version of this name, so the name serves it\n");
                }
                out
            })?;
        }
        GraderCommand::List => {
            let reply = client.get("/api/v1/graders")?;
            print(&reply, &|reply| {
                let mut out = String::new();
                for grader in reply["graders"].as_array().into_iter().flatten() {
                    let versions: Vec<String> = grader["versions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|version| {
                            let retired = if version["retired"].is_object() { " (retired)" } else { "" };
                            format!("{}{retired}", version["version"].as_str().unwrap_or("?"))
                        })
                        .collect();
                    out.push_str(&format!(
                        "{:24} serves {:12} versions: {}\n",
                        grader["name"].as_str().unwrap_or("?"),
                        grader["alias"]["version"].as_str().unwrap_or("-"),
                        versions.join(", ")
                    ));
                }
                out
            })?;
        }
        GraderCommand::Show { name } => {
            let reply = client.get(&format!("/api/v1/graders/{}", encode(&name)))?;
            print(&reply, &|reply| {
                let mut out =
                    format!("{} serves {}\n\nversions\n", name, reply["alias"]["version"].as_str().unwrap_or("-"));
                for version in reply["versions"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "  {:12} {}  by {} at {}{}\n",
                        version["version"].as_str().unwrap_or("?"),
                        version["digest"].as_str().unwrap_or("?"),
                        version["published_by"].as_str().unwrap_or("?"),
                        version["published_at"].as_str().unwrap_or("?"),
                        if version["retired"].is_object() { "  (retired)" } else { "" }
                    ));
                }
                out.push_str("\nalias history\n");
                for event in reply["history"].as_array().into_iter().flatten() {
                    out.push_str(&format!("  {}\n", describe_event(event)));
                }
                out
            })?;
        }
        GraderCommand::Promote { name, version, shadow_report, min_agreement } => {
            let mut body = json!({"version": version});
            if let Some(report) = shadow_report {
                body["shadow_report"] = json!(report);
            }
            if let Some(min) = min_agreement {
                body["min_agreement"] = json!(min);
            }
            let reply = client.send_json("POST", &format!("/api/v1/graders/{}/promote", encode(&name)), &body)?;
            print(&reply, &|reply| format!("{}\n", describe_event(&reply["event"])))?;
        }
        GraderCommand::Rollback { name } => {
            let reply = client.send_json("POST", &format!("/api/v1/graders/{}/rollback", encode(&name)), &json!({}))?;
            print(&reply, &|reply| format!("{}\n", describe_event(&reply["event"])))?;
        }
        GraderCommand::Retire { name, version } => {
            let path = format!("/api/v1/graders/{}/versions/{}/retire", encode(&name), encode(&version));
            let reply = client.send_json("POST", &path, &json!({}))?;
            print(&reply, &|_| format!("retired {name} {version}\n"))?;
        }
        GraderCommand::Shadow { name, candidate, experiment, dataset, outputs, config, min_agreement } => {
            let mut body = json!({"candidate": candidate});
            if let Some(experiment) = experiment {
                body["experiment"] = json!(experiment);
            }
            if let (Some(dataset), Some(outputs)) = (dataset, outputs) {
                let text = std::fs::read_to_string(&outputs)
                    .with_context(|| format!("could not read {}", outputs.display()))?;
                let runs: Vec<Value> = text
                    .lines()
                    .enumerate()
                    .filter(|(_, line)| !line.trim().is_empty())
                    .map(|(index, line)| {
                        serde_json::from_str(line)
                            .with_context(|| format!("{}:{}: not JSON", outputs.display(), index + 1))
                    })
                    .collect::<anyhow::Result<_>>()?;
                body["dataset"] = json!(dataset);
                body["outputs"] = json!(runs);
            }
            if let Some(config) = config {
                body["config"] = serde_json::from_str(&config).context("--config is not JSON")?;
            }
            let reply = client.send_json("POST", &format!("/api/v1/graders/{}/shadow", encode(&name)), &body)?;
            print(&reply, &|report| describe_shadow(report))?;
            let agreement = reply["comparison"]["agreement_rate"].as_f64().unwrap_or(0.0);
            if min_agreement.is_some_and(|min| agreement < min) {
                return Ok(ExitCode::from(EXIT_FAILED));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe_event(event: &Value) -> String {
    format!(
        "{} {}: {} → {} by {} at {}",
        event["action"].as_str().unwrap_or("?"),
        event["name"].as_str().unwrap_or("?"),
        event["from"].as_str().unwrap_or("(none)"),
        event["to"].as_str().unwrap_or("?"),
        event["by"].as_str().unwrap_or("?"),
        event["at"].as_str().unwrap_or("?")
    )
}

fn describe_shadow(report: &Value) -> String {
    let comparison = &report["comparison"];
    let mut out = format!(
        "shadow {}: {} {} (served) vs {} on {}@{}: {:.1}% agreement over {} (example, key) pairs\n",
        report["id"].as_str().unwrap_or("?"),
        report["name"].as_str().unwrap_or("?"),
        report["current"]["version"].as_str().unwrap_or("?"),
        report["candidate"]["version"].as_str().unwrap_or("?"),
        report["dataset"].as_str().unwrap_or("?"),
        report["dataset_version"],
        comparison["agreement_rate"].as_f64().unwrap_or(0.0) * 100.0,
        comparison["compared"]
    );
    let cell = |value: &Value| value.as_f64().map_or_else(|| "-".to_owned(), |value| format!("{value:.3}"));
    for key in comparison["keys"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:28} served {}  candidate {}  disagreements {}\n",
            key["key"].as_str().unwrap_or("?"),
            cell(&key["mean_current"]),
            cell(&key["mean_candidate"]),
            key["disagreements"]
        ));
    }
    for disagreement in comparison["disagreements"].as_array().into_iter().flatten().take(20) {
        out.push_str(&format!(
            "  {} {}: {} ({}) → {} ({})\n",
            disagreement["example_id"].as_str().unwrap_or("?"),
            disagreement["key"].as_str().unwrap_or("?"),
            cell(&disagreement["current"]["value"]),
            disagreement["current"]["comment"].as_str().unwrap_or(""),
            cell(&disagreement["candidate"]["value"]),
            disagreement["candidate"]["comment"].as_str().unwrap_or("")
        ));
    }
    out
}

/// A multipart/form-data body of `(name, content type, bytes)` parts.
fn multipart(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = format!("assay-{}", crate::store::new_example_id());
    let mut body = Vec::new();
    for (name, content_type, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
