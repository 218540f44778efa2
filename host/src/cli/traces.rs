//! `assay traces ...`: send production traces from a file, read them, add
//! feedback, set a project's retention.

use super::client::{Client, ClientArgs, encode};
use super::dataset::{print, text};
use super::{EXIT_FAILED, EXIT_USAGE};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

/// Most bytes of traces in one request, well under the server's body limit.
const BATCH_BYTES_MAX: usize = 32 << 20;

#[derive(Debug, Args)]
pub struct TracesArgs {
    #[command(subcommand)]
    command: TracesCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum TracesCommand {
    /// Send a JSONL file (one trace per line) or a JSON list of traces, in
    /// batches. Re-sending is safe: ingest is idempotent by (project, id).
    /// Exits 1 if any trace was refused (each is listed with its line).
    Ingest {
        file: PathBuf,
        /// The project of traces that name none.
        #[arg(long)]
        project: Option<String>,
        /// Traces per request (at most 10,000).
        #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        batch_size: u64,
    },
    /// One trace, with its conversation.
    Show { project: String, id: String },
    /// Traces of a project, newest first.
    List {
        #[arg(long)]
        project: String,
        /// How far back: 7d, 24h, 30m, 2w, or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Traces that started before this (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        /// At most this many (up to 1,000).
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Add feedback to a trace (kept until the trace arrives if it has not).
    Feedback {
        project: String,
        id: String,
        /// The feedback key, e.g. user_score.
        #[arg(long)]
        key: String,
        #[arg(long)]
        score: Option<f64>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Keep a project's traces for DAYS days (or `forever`).
    Retention { project: String, days: String },
    /// Projects with their trace counts and retention.
    Projects,
}

pub fn run(arguments: TracesArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&arguments.client);
    let json_output = arguments.client.json;
    match arguments.command {
        TracesCommand::Ingest { file, project, batch_size } => {
            let batch_size = usize::try_from(batch_size).context("--batch-size is too large")?;
            return ingest(&client, json_output, &file, project.as_deref(), batch_size);
        }
        TracesCommand::Show { project, id } => {
            let trace = client.get(&format!("/api/v1/traces/{}/{}", encode(&project), encode(&id)))?;
            print(json_output, &trace, || describe_trace(&trace));
        }
        TracesCommand::List { project, since, until, limit } => {
            let mut path = format!("/api/v1/traces?project={}&limit={limit}", encode(&project));
            for (name, value) in [("since", since), ("until", until)] {
                if let Some(value) = value {
                    path.push_str(&format!("&{name}={}", encode(&value)));
                }
            }
            let listed = client.get(&path)?;
            print(json_output, &listed, || {
                let mut table = format!(
                    "{:<24} {:<36} {:<20} {:>9} {:<5} {:<24} TAGS\n",
                    "START", "ID", "NAME", "LATENCY", "ERROR", "FEEDBACK"
                );
                for trace in listed["traces"].as_array().into_iter().flatten() {
                    let feedback: Vec<String> = trace["feedback"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|entry| format!("{}={}", text(&entry["key"]), text(&entry["score"])))
                        .collect();
                    let tags: Vec<String> = trace["tags"].as_array().into_iter().flatten().map(text).collect();
                    table.push_str(&format!(
                        "{:<24} {:<36} {:<20} {:>9} {:<5} {:<24} {}\n",
                        text(&trace["start_time"]),
                        text(&trace["id"]),
                        text(&trace["name"]),
                        trace["latency_ms"].as_u64().map(|ms| format!("{ms} ms")).unwrap_or_default(),
                        if trace["error"].is_null() { "" } else { "yes" },
                        feedback.join(","),
                        tags.join(",")
                    ));
                }
                if listed["more"] == true {
                    table.push_str("(more traces; raise --limit or narrow --since/--until)\n");
                }
                table.trim_end().to_owned()
            });
        }
        TracesCommand::Feedback { project, id, key, score, comment } => {
            if score.is_none() && comment.is_none() {
                eprintln!("error: give --score, --comment, or both");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            let mut entry = json!({"key": key});
            if let Some(score) = score {
                entry["score"] = json!(score);
            }
            if let Some(comment) = comment {
                entry["comment"] = json!(comment);
            }
            let path = format!("/api/v1/traces/{}/{}/feedback", encode(&project), encode(&id));
            let outcome = client.send_json("POST", &path, &json!({"feedback": [entry]}))?;
            print(json_output, &outcome, || match outcome["status"].as_str() {
                Some("pending") => format!("trace {id} has not arrived; the feedback waits for it"),
                _ => format!("added {} feedback entr(ies) to {id}", text(&outcome["added"])),
            });
        }
        TracesCommand::Retention { project, days } => {
            let days: Value = if days == "forever" {
                Value::Null
            } else {
                json!(
                    days.parse::<u32>()
                        .with_context(|| format!("DAYS must be a number of days or `forever`, got {days:?}"))?
                )
            };
            let path = format!("/api/v1/projects/{}/retention", encode(&project));
            let updated = client.send_json("PUT", &path, &json!({"days": days}))?;
            print(json_output, &updated, || match updated["retention_days"].as_u64() {
                Some(days) => format!("{project}: traces are kept {days} days"),
                None => format!("{project}: traces are kept forever"),
            });
        }
        TracesCommand::Projects => {
            let listed = client.get("/api/v1/projects")?;
            print(json_output, &listed, || {
                let mut table =
                    format!("{:<32} {:>9} {:>10}  {:<24} NEWEST\n", "PROJECT", "TRACES", "RETENTION", "OLDEST");
                for project in listed["projects"].as_array().into_iter().flatten() {
                    table.push_str(&format!(
                        "{:<32} {:>9} {:>10}  {:<24} {}\n",
                        text(&project["name"]),
                        text(&project["trace_count"]),
                        project["retention_days"].as_u64().map_or("forever".to_owned(), |days| format!("{days} d")),
                        text(&project["oldest_start_time"]),
                        text(&project["newest_start_time"])
                    ));
                }
                table.trim_end().to_owned()
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One trace read from the file: where it was, and its text.
struct FileItem {
    /// `line 7` (JSONL) or `item 7` (JSON list), 1-based.
    place: String,
    body: String,
}

fn ingest(
    client: &Client,
    json_output: bool,
    file: &std::path::Path,
    project: Option<&str>,
    batch_size: usize,
) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("could not read {}", file.display()))?;
    let contents = String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", file.display()))?;
    let contents = contents.strip_prefix('\u{feff}').unwrap_or(&contents);
    let is_list = contents.trim_start().starts_with('[');
    let items: Vec<FileItem> = if is_list {
        let list: Vec<Value> = serde_json::from_str(contents)
            .with_context(|| format!("{} is not a JSON list of traces", file.display()))?;
        list.iter()
            .enumerate()
            .map(|(index, value)| FileItem { place: format!("item {}", index + 1), body: value.to_string() })
            .collect()
    } else {
        // The server skips the same lines (all ASCII whitespace), so indices agree.
        contents
            .split('\n')
            .enumerate()
            .map(|(index, line)| (index + 1, line.strip_suffix('\r').unwrap_or(line)))
            .filter(|(_, line)| !line.bytes().all(|byte| byte.is_ascii_whitespace()))
            .map(|(line_number, line)| FileItem { place: format!("line {line_number}"), body: line.to_owned() })
            .collect()
    };
    if items.is_empty() {
        eprintln!("error: {} holds no trace", file.display());
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let progress = indicatif::ProgressBar::new(items.len() as u64).with_message(format!("sending {}", file.display()));
    let (mut accepted, mut duplicates, mut updated) = (0u64, 0u64, 0u64);
    let mut rejected = Vec::new();
    let mut sent = 0usize;
    let mut start = 0;
    while start < items.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < items.len()
            && end - start < batch_size
            && (end == start || bytes + items[end].body.len() < BATCH_BYTES_MAX)
        {
            bytes += items[end].body.len() + 1;
            end += 1;
        }
        let batch = &items[start..end];
        let report = if is_list {
            let traces: Vec<Value> = batch
                .iter()
                .map(|item| serde_json::from_str(&item.body))
                .collect::<Result<_, _>>()
                .context("re-reading a trace of the list")?;
            let mut body = json!({"traces": traces});
            if let Some(project) = project {
                body["project"] = json!(project);
            }
            client.post_for_report("/api/v1/traces", "application/json", body.to_string().as_bytes())
        } else {
            let body: String = batch.iter().map(|item| item.body.as_str()).collect::<Vec<_>>().join("\n");
            let path = match project {
                Some(project) => format!("/api/v1/traces?project={}", encode(project)),
                None => "/api/v1/traces".to_owned(),
            };
            client.post_for_report(&path, "application/x-ndjson", body.as_bytes())
        };
        let report = report.with_context(|| {
            format!("sending traces after {sent} were stored (sending the file again is safe: ingest is idempotent)")
        })?;
        accepted += report["accepted"].as_u64().unwrap_or(0);
        duplicates += report["duplicates"].as_u64().unwrap_or(0);
        updated += report["updated"].as_u64().unwrap_or(0);
        for entry in report["rejected"].as_array().into_iter().flatten() {
            let place = entry["index"]
                .as_u64()
                .and_then(|index| batch.get(usize::try_from(index).ok()?))
                .map_or_else(|| "?".to_owned(), |item| item.place.clone());
            rejected.push(json!({"at": place, "id": entry["id"], "field": entry["field"], "reason": entry["reason"]}));
        }
        sent += batch.len();
        progress.inc(batch.len() as u64);
        start = end;
    }
    progress.finish_and_clear();
    let summary = json!({"accepted": accepted, "duplicates": duplicates, "updated": updated, "rejected": rejected});
    print(json_output, &summary, || {
        let mut lines = vec![format!(
            "accepted {accepted}, duplicates {duplicates}, updated {updated}, rejected {}",
            rejected.len()
        )];
        for entry in &rejected {
            lines.push(format!("{}: {}: {}", text(&entry["at"]), text(&entry["field"]), text(&entry["reason"])));
        }
        lines.join("\n")
    });
    Ok(if rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
}

/// A trace for people: what, when, how it went, then the conversation.
fn describe_trace(trace: &Value) -> String {
    let mut lines = vec![format!(
        "{} / {}  {}  started {}{}",
        text(&trace["project"]),
        text(&trace["id"]),
        text(&trace["name"]),
        text(&trace["start_time"]),
        trace["latency_ms"].as_u64().map(|ms| format!(", {ms} ms")).unwrap_or_default()
    )];
    if !trace["error"].is_null() {
        lines.push(format!("error: {}", text(&trace["error"])));
    }
    if let Some(tokens) = trace["total_tokens"].as_u64() {
        lines.push(format!("tokens: {tokens}"));
    }
    let tags: Vec<String> = trace["tags"].as_array().into_iter().flatten().map(text).collect();
    if !tags.is_empty() {
        lines.push(format!("tags: {}", tags.join(", ")));
    }
    if let Some(metadata) = trace["metadata"].as_object().filter(|metadata| !metadata.is_empty()) {
        let pairs: Vec<String> = metadata.iter().map(|(key, value)| format!("{key}={}", text(value))).collect();
        lines.push(format!("metadata: {}", pairs.join(", ")));
    }
    for entry in trace["feedback"].as_array().into_iter().flatten() {
        lines.push(format!("feedback: {} {} {}", text(&entry["key"]), text(&entry["score"]), text(&entry["comment"])));
    }
    for (side, messages) in [("in", &trace["inputs"]["messages"]), ("out", &trace["outputs"]["messages"])] {
        for message in messages.as_array().into_iter().flatten() {
            let mut line = format!("[{side}] {}: {}", text(&message["role"]), text(&message["content"]));
            for call in message["tool_calls"].as_array().into_iter().flatten() {
                line.push_str(&format!(" → {}({})", text(&call["name"]), call["args"]));
            }
            lines.push(line);
        }
    }
    for call in trace["outputs"]["tool_calls"].as_array().into_iter().flatten() {
        lines.push(format!("tool call: {}({})", text(&call["name"]), call["args"]));
    }
    lines.join("\n")
}
