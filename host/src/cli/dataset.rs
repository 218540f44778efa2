//! `assay dataset ...`: create, list, show, history, diff, tag, export, import.

use super::client::{Client, ClientArgs, encode};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DatasetArgs {
    #[command(subcommand)]
    command: DatasetCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum DatasetCommand {
    /// Create an empty dataset.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// golden (curated, pinned in CI) or drift (refreshed from production).
        #[arg(long, default_value = "golden")]
        kind: String,
        /// A JSON file `{"inputs": <JSON Schema>, "outputs": <JSON Schema>}`
        /// (either optional): examples must also pass these schemas.
        #[arg(long, value_name = "FILE.json")]
        schema: Option<PathBuf>,
    },
    /// List datasets.
    List,
    /// Show a dataset at a reference: NAME, NAME@17, NAME@v3.4, NAME@prod.
    Show { reference: String },
    /// Version history with release notes, newest first.
    History { name: String },
    /// Examples added, removed and modified between two versions or tags.
    Diff { name: String, from: String, to: String },
    /// Set or move a tag to a version (or delete it with --delete).
    Tag {
        name: String,
        tag: String,
        #[arg(value_name = "VERSION")]
        target: Option<u64>,
        #[arg(long, conflicts_with = "target")]
        delete: bool,
    },
    /// Write a version as JSONL to a file or stdout.
    Export {
        reference: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Import a JSONL file as one new version: every line or none.
    Import {
        name: String,
        file: PathBuf,
        /// The release note of the new version.
        #[arg(long, default_value = "")]
        note: String,
    },
}

pub fn run(arguments: DatasetArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&arguments.client);
    let json_output = arguments.client.json;
    match arguments.command {
        DatasetCommand::Create { name, description, kind, schema } => {
            let mut body = json!({"name": name, "description": description, "kind": kind});
            if let Some(path) = schema {
                body["schema"] = read_schema_file(&path)?;
            }
            let dataset = client.send_json("POST", "/api/v1/datasets", &body)?;
            print(json_output, &dataset, || {
                format!(
                    "created {} ({})",
                    dataset["name"].as_str().unwrap_or(""),
                    dataset["kind"].as_str().unwrap_or("")
                )
            });
        }
        DatasetCommand::List => {
            let listed = client.get("/api/v1/datasets")?;
            print(json_output, &listed, || {
                let mut table =
                    format!("{:<32} {:<7} {:>8} {:>9}  DESCRIPTION\n", "NAME", "KIND", "VERSION", "EXAMPLES");
                for dataset in listed["datasets"].as_array().into_iter().flatten() {
                    table.push_str(&format!(
                        "{:<32} {:<7} {:>8} {:>9}  {}\n",
                        text(&dataset["name"]),
                        text(&dataset["kind"]),
                        text(&dataset["latest_version"]),
                        text(&dataset["example_count"]),
                        text(&dataset["description"])
                    ));
                }
                table.trim_end().to_owned()
            });
        }
        DatasetCommand::Show { reference } => {
            let shown = client.get(&format!("/api/v1/datasets/{}", encode(&reference)))?;
            print(json_output, &shown, || {
                let version = &shown["version"];
                let tags: Vec<String> = shown["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|tag| format!("{}→{}", text(&tag["name"]), tag["version"]))
                    .collect();
                format!(
                    "{} ({}) version {} of {}: {} examples, digest {}\nnote: {}\ntags: {}",
                    text(&shown["dataset"]["name"]),
                    text(&shown["dataset"]["kind"]),
                    text(&version["version"]),
                    shown["dataset"]["latest_version"],
                    text(&version["example_count"]),
                    text(&version["digest"]),
                    text(&version["note"]),
                    if tags.is_empty() { "none".to_owned() } else { tags.join(", ") }
                )
            });
        }
        DatasetCommand::History { name } => {
            let history = client.get(&format!("/api/v1/datasets/{}/versions", encode(&name)))?;
            print(json_output, &history, || {
                let mut table = format!(
                    "{:>7} {:<20} {:<16} {:>8} {:>6} {:>6} {:>6}  NOTE\n",
                    "VERSION", "CREATED", "AUTHOR", "EXAMPLES", "+", "~", "-"
                );
                for version in history["versions"].as_array().into_iter().flatten() {
                    table.push_str(&format!(
                        "{:>7} {:<20} {:<16} {:>8} {:>6} {:>6} {:>6}  {}\n",
                        text(&version["version"]),
                        text(&version["created_at"]),
                        text(&version["author"]),
                        text(&version["example_count"]),
                        text(&version["added"]),
                        text(&version["modified"]),
                        text(&version["removed"]),
                        text(&version["note"])
                    ));
                }
                table.trim_end().to_owned()
            });
        }
        DatasetCommand::Diff { name, from, to } => {
            let diff = client.get(&format!(
                "/api/v1/datasets/{}/diff?from={}&to={}",
                encode(&name),
                encode(&from),
                encode(&to)
            ))?;
            print(json_output, &diff, || {
                let mut lines = Vec::new();
                for id in diff["added"].as_array().into_iter().flatten() {
                    lines.push(format!("+ {}", text(id)));
                }
                for id in diff["removed"].as_array().into_iter().flatten() {
                    lines.push(format!("- {}", text(id)));
                }
                for modified in diff["modified"].as_array().into_iter().flatten() {
                    let fields: Vec<&str> =
                        modified["changed_fields"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    lines.push(format!("~ {} ({})", text(&modified["id"]), fields.join(", ")));
                }
                if lines.is_empty() { "no differences".to_owned() } else { lines.join("\n") }
            });
        }
        DatasetCommand::Tag { name, tag, target, delete } => {
            let path = format!("/api/v1/datasets/{}/tags/{}", encode(&name), encode(&tag));
            let result = if delete {
                client.delete(&path)?
            } else {
                let version = target.context("give the VERSION to point the tag at, or --delete")?;
                client.send_json("PUT", &path, &json!({"version": version}))?
            };
            print(json_output, &result, || {
                if delete {
                    format!("deleted tag {tag}")
                } else {
                    format!("{name}@{tag} → version {}", result["version"])
                }
            });
        }
        DatasetCommand::Export { reference, output } => {
            let body = client.get_text(&format!("/api/v1/datasets/{}/export", encode(&reference)))?;
            match output {
                Some(path) => {
                    std::fs::write(&path, &body).with_context(|| format!("could not write {}", path.display()))?;
                    eprintln!("wrote {} examples to {}", body.lines().count(), path.display());
                }
                None => print!("{body}"),
            }
        }
        DatasetCommand::Import { name, file, note } => {
            let body = std::fs::read(&file).with_context(|| format!("could not read {}", file.display()))?;
            let lines = body.split(|byte| *byte == b'\n').filter(|line| !line.is_empty()).count();
            let progress = indicatif::ProgressBar::new_spinner().with_message(format!(
                "importing {lines} examples ({:.1} MiB) into {name}",
                body.len() as f64 / (1 << 20) as f64
            ));
            progress.enable_steady_tick(std::time::Duration::from_millis(100));
            let result = client.post_text(
                &format!("/api/v1/datasets/{}/import?note={}", encode(&name), encode(&note)),
                "application/x-ndjson",
                &body,
            );
            progress.finish_and_clear();
            let version = result?;
            print(json_output, &version, || {
                format!(
                    "{name}@{}: {} examples (+{} ~{} -{}), digest {}",
                    text(&version["version"]),
                    text(&version["example_count"]),
                    text(&version["added"]),
                    text(&version["modified"]),
                    text(&version["removed"]),
                    text(&version["digest"])
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a `--schema` file: a JSON object with `inputs` and/or `outputs`.
/// The server checks its keys and the schemas themselves.
fn read_schema_file(path: &std::path::Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))?;
    let schema: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let Some(object) = schema.as_object() else {
        anyhow::bail!("{} must hold a JSON object {{\"inputs\": ..., \"outputs\": ...}}", path.display());
    };
    if object.is_empty() {
        anyhow::bail!("{} holds no schema; give \"inputs\" and/or \"outputs\"", path.display());
    }
    Ok(schema)
}

/// Prints JSON or the human form.
pub fn print(json_output: bool, value: &Value, human: impl FnOnce() -> String) {
    if json_output {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    } else {
        println!("{}", human());
    }
}

/// A JSON string's text, or the JSON itself for other values.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
