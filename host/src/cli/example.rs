//! `assay example add|edit|delete|show`: one example at a time, each a new version.

use super::client::{Client, ClientArgs, encode};
use super::dataset::print;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ExampleArgs {
    #[command(subcommand)]
    command: ExampleCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum ExampleCommand {
    /// Add the example in FILE (JSON, wire format) to a dataset.
    Add {
        dataset: String,
        file: PathBuf,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Replace example ID with the example in FILE.
    Edit {
        dataset: String,
        id: String,
        file: PathBuf,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Delete example ID.
    Delete {
        dataset: String,
        id: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Show example ID at a reference (NAME, NAME@17, NAME@tag).
    Show { reference: String, id: String },
}

pub fn run(arguments: ExampleArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&arguments.client);
    let json_output = arguments.client.json;
    let result = match arguments.command {
        ExampleCommand::Add { dataset, file, note } => client.send_json(
            "POST",
            &format!("/api/v1/datasets/{}/examples", encode(&dataset)),
            &json!({"example": read_json(&file)?, "note": note}),
        )?,
        ExampleCommand::Edit { dataset, id, file, note } => client.send_json(
            "PUT",
            &format!("/api/v1/datasets/{}/examples/{}", encode(&dataset), encode(&id)),
            &json!({"example": read_json(&file)?, "note": note}),
        )?,
        ExampleCommand::Delete { dataset, id, note } => client.delete(&format!(
            "/api/v1/datasets/{}/examples/{}?note={}",
            encode(&dataset),
            encode(&id),
            encode(&note)
        ))?,
        ExampleCommand::Show { reference, id } => {
            let shown = client.get(&format!("/api/v1/datasets/{}/examples/{}", encode(&reference), encode(&id)))?;
            println!("{}", serde_json::to_string_pretty(&shown)?);
            return Ok(ExitCode::SUCCESS);
        }
    };
    print(json_output, &result, || {
        format!("{} → version {}", result["id"].as_str().unwrap_or(""), result["version"]["version"])
    });
    Ok(ExitCode::SUCCESS)
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}
