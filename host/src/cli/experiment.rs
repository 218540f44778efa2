//! `assay experiment`: list, show, follow and re-grade experiments on a server.

use super::EXIT_FAILED;
use super::client::{Client, ClientArgs, encode};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ExperimentArgs {
    #[command(subcommand)]
    command: ExperimentCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum ExperimentCommand {
    /// Experiments, newest first.
    List {
        /// Only those of this dataset.
        #[arg(long)]
        dataset: Option<String>,
    },
    /// One experiment: provenance, summary and gates (`--json` adds every result).
    Show { id: String },
    /// Whether an experiment is running, completed or failed, and how far it got.
    Status { id: String },
    /// Grade the runs stored with an experiment again, without calling the agent. With no --grader, the
    /// same graders and configurations (the scores come out identical); exit 1 when a gate fails.
    Regrade {
        id: String,
        /// A reference grader to run instead of the original ones. Repeat for several.
        #[arg(long = "grader", value_name = "GRADER")]
        graders: Vec<String>,
        /// A grader's configuration as GRADER=JSON (e.g. a new must_not_say list).
        #[arg(long = "grader-config", value_name = "GRADER=JSON")]
        grader_configs: Vec<String>,
        /// A gate, as for `assay eval`. Repeat for several.
        #[arg(long = "gate", value_name = "GATE")]
        gates: Vec<String>,
        /// The new experiment's name prefix.
        #[arg(long)]
        name: Option<String>,
    },
}

pub fn run(arguments: ExperimentArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&arguments.client);
    let json_output = arguments.client.json;
    match arguments.command {
        ExperimentCommand::List { dataset } => {
            let path = match &dataset {
                Some(dataset) => format!("/api/v1/experiments?dataset={}", encode(dataset)),
                None => "/api/v1/experiments".to_owned(),
            };
            let reply = client.get(&path)?;
            if json_output {
                println!("{}", serde_json::to_string_pretty(&reply)?);
                return Ok(ExitCode::SUCCESS);
            }
            for experiment in reply["experiments"].as_array().into_iter().flatten() {
                println!(
                    "{}  {:9}  {}@{}  {} examples  {}",
                    experiment["id"].as_str().unwrap_or("?"),
                    experiment["status"].as_str().unwrap_or("?"),
                    experiment["dataset"].as_str().unwrap_or("?"),
                    experiment["dataset_version"],
                    experiment["example_count"],
                    experiment["name"].as_str().unwrap_or("?"),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ExperimentCommand::Show { id } => {
            let reply = client.get(&format!("/api/v1/experiments/{}", encode(&id)))?;
            if json_output {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                print!("{}", super::eval::human_from_server(&reply));
            }
            Ok(ExitCode::SUCCESS)
        }
        ExperimentCommand::Status { id } => {
            let reply = client.get(&format!("/api/v1/experiments/{}/status", encode(&id)))?;
            if json_output {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                println!(
                    "{} {}: {}/{} examples{}",
                    id,
                    reply["status"].as_str().unwrap_or("?"),
                    reply["done"],
                    reply["total"],
                    reply["phase"].as_str().map(|phase| format!(" ({phase})")).unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ExperimentCommand::Regrade { id, graders, grader_configs, gates, name } => {
            let mut configs = super::eval::parse_grader_configs(&grader_configs)?;
            let mut body = json!({"gates": gates});
            if !graders.is_empty() {
                let requests: Vec<Value> = graders
                    .iter()
                    .map(
                        |grader| json!({"name": grader, "config": configs.remove(grader).unwrap_or_else(|| json!({}))}),
                    )
                    .collect();
                body["graders"] = json!(requests);
            }
            if let Some(unused) = configs.keys().next() {
                anyhow::bail!("--grader-config names {unused:?}; name it with --grader too");
            }
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            let reply = client
                .send_json("POST", &format!("/api/v1/experiments/{}/regrade", encode(&id)), &body)
                .map_err(|error| anyhow::anyhow!("{error:#}"))?;
            let passed = reply["passed"].as_bool().context("the server's answer has no verdict")?;
            if json_output {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                print!("{}", super::eval::human_from_server(&reply));
            }
            Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
        }
    }
}
