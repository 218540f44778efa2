//! `assay queue`: annotation queues on a server. Engineers create queues and
//! add traces; reviewers (the annotator role) take, accept, reject and skip
//! items (the web UI is the usual way; this is for scripts and terminals).

use super::client::{Client, ClientArgs, encode};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    command: QueueCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum QueueCommand {
    /// Create a queue feeding a dataset.
    Create {
        name: String,
        /// The dataset accepted examples go to.
        #[arg(long)]
        dataset: String,
        #[arg(long, default_value = "")]
        description: String,
        /// The rubric reviewers follow.
        #[arg(long, default_value = "")]
        instructions: String,
        /// A metadata field reviewers must set (repeat: --require severity --require persona).
        #[arg(long = "require", value_name = "FIELD")]
        required_metadata: Vec<String>,
        /// How long `next` reserves an item for its reviewer.
        #[arg(long, default_value_t = crate::store::RESERVATION_SECONDS_DEFAULT)]
        reservation_seconds: u64,
    },
    /// Queues with their progress.
    List,
    /// One queue: progress by state and by reviewer.
    Show { name: String },
    /// Queue stored traces by hand: PROJECT/TRACE_ID ...
    Add {
        name: String,
        #[arg(required = true, value_name = "PROJECT/TRACE_ID")]
        traces: Vec<String>,
    },
    /// Reserve the next item (printed as JSON: the item, its trace and a draft example).
    Next { name: String },
    /// Accept a reserved item with the corrected example (a JSON file, e.g. the edited draft).
    Accept {
        name: String,
        item: String,
        #[arg(long, value_name = "FILE")]
        example: PathBuf,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Reject a reserved item, with the reason kept in the discard log.
    Reject {
        name: String,
        item: String,
        #[arg(long)]
        reason: String,
    },
    /// Release a reserved item without deciding.
    Skip { name: String, item: String },
    /// The discard log.
    Log { name: String },
}

pub fn run(arguments: QueueArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&arguments.client);
    let json_output = arguments.client.json;
    let queue_path = |name: &str| format!("/api/v1/queues/{}", encode(name));
    let reply = match arguments.command {
        QueueCommand::Create { name, dataset, description, instructions, required_metadata, reservation_seconds } => {
            let body = json!({"name": name, "dataset": dataset, "description": description,
                "instructions": instructions, "required_metadata": required_metadata,
                "reservation_seconds": reservation_seconds});
            client.send_json("POST", "/api/v1/queues", &body)?
        }
        QueueCommand::List => {
            let reply = client.get("/api/v1/queues")?;
            if !json_output {
                for queue in reply["queues"].as_array().into_iter().flatten() {
                    println!("{}", progress_line(queue));
                }
                return Ok(ExitCode::SUCCESS);
            }
            reply
        }
        QueueCommand::Show { name } => {
            let reply = client.get(&queue_path(&name))?;
            if !json_output {
                println!("{}", progress_line(&reply));
                for (reviewer, counts) in reply["reviewers"].as_object().into_iter().flatten() {
                    println!(
                        "  {reviewer}: {} accepted, {} rejected, {} skipped",
                        counts["accepted"], counts["rejected"], counts["skipped"]
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            reply
        }
        QueueCommand::Add { name, traces } => {
            let items = traces
                .iter()
                .map(|text| {
                    let (project, trace_id) =
                        text.split_once('/').with_context(|| format!("{text:?}: expected PROJECT/TRACE_ID"))?;
                    Ok(json!({"project": project, "trace_id": trace_id}))
                })
                .collect::<anyhow::Result<Vec<Value>>>()?;
            client.send_json("POST", &format!("{}/items", queue_path(&name)), &json!({"items": items}))?
        }
        QueueCommand::Next { name } => client.send_json("POST", &format!("{}/next", queue_path(&name)), &json!({}))?,
        QueueCommand::Accept { name, item, example, note } => {
            let text = std::fs::read_to_string(&example)
                .with_context(|| format!("could not read the example {}", example.display()))?;
            let example: Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", example.display()))?;
            let path = format!("{}/items/{}/accept", queue_path(&name), encode(&item));
            client.send_json("POST", &path, &json!({"example": example, "note": note}))?
        }
        QueueCommand::Reject { name, item, reason } => {
            let path = format!("{}/items/{}/reject", queue_path(&name), encode(&item));
            client.send_json("POST", &path, &json!({"reason": reason}))?
        }
        QueueCommand::Skip { name, item } => {
            client.send_json("POST", &format!("{}/items/{}/skip", queue_path(&name), encode(&item)), &json!({}))?
        }
        QueueCommand::Log { name } => {
            let reply = client.get(&format!("{}/log", queue_path(&name)))?;
            if !json_output {
                for entry in reply["entries"].as_array().into_iter().flatten() {
                    println!(
                        "{}  item {}  {}/{}  by {}: {}",
                        entry["at"].as_str().unwrap_or("?"),
                        entry["item_id"].as_str().unwrap_or("?"),
                        entry["project"].as_str().unwrap_or("?"),
                        entry["trace_id"].as_str().unwrap_or("?"),
                        entry["reviewer"].as_str().unwrap_or("?"),
                        entry["reason"].as_str().unwrap_or("")
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            reply
        }
    };
    println!("{}", serde_json::to_string_pretty(&reply)?);
    Ok(ExitCode::SUCCESS)
}

fn progress_line(queue: &Value) -> String {
    let counts = &queue["counts"];
    format!(
        "{} → {}: {} pending, {} reserved, {} accepted, {} rejected",
        queue["name"].as_str().unwrap_or("?"),
        queue["dataset"].as_str().unwrap_or("?"),
        counts["pending"],
        counts["reserved"],
        counts["accepted"],
        counts["rejected"]
    )
}
