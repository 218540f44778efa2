//! `assay token create`: a new bearer token for a role.

use super::client::{Client, ClientArgs};
use crate::store::{Role, Store};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token (through the server with an admin token, or with --data while the server is stopped).
    Create {
        /// admin, engineer, annotator, publisher or ingest.
        #[arg(long)]
        role: Role,
        /// A label for people, recorded as the author of what the token writes.
        #[arg(long)]
        name: String,
        /// Write straight into this store directory instead of asking the server.
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

pub fn run(arguments: TokenArgs) -> anyhow::Result<ExitCode> {
    let TokenCommand::Create { role, name, data } = arguments.command;
    let token = match data {
        Some(directory) => {
            let store = Store::open(&directory)?;
            serde_json::to_value(store.create_token(&name, role, "assay token create --data")?)?
        }
        None => Client::new(&arguments.client).send_json(
            "POST",
            "/api/v1/tokens",
            &serde_json::json!({"name": name, "role": role}),
        )?,
    };
    if arguments.client.json {
        println!("{}", serde_json::to_string_pretty(&token)?);
    } else {
        println!("{}", token["token"].as_str().unwrap_or_default());
        eprintln!("(role {role}, name {name:?}; the token is shown only this once)");
    }
    Ok(ExitCode::SUCCESS)
}
