//! `assay mine` (one mining run) and `assay rule` (saved mining rules) on a server.

use super::client::{Client, ClientArgs, encode};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  assay mine --project prod-voice-agent --since 7d \\\n    \
--filter 'and(eq(feedback_key, \"user_score\"), lt(feedback_score, 3))' --queue triage-review --dry-run")]
pub struct MineArgs {
    /// The project whose traces are mined.
    #[arg(long)]
    project: String,
    /// A LangSmith run filter, e.g. 'eq(error, true)'. Every trace when absent.
    #[arg(long)]
    filter: Option<String>,
    /// How far back: a duration (7d, 24h) or an RFC 3339 time.
    #[arg(long, default_value = "7d")]
    since: String,
    /// Keep this fraction of the matches (a deterministic sample), e.g. 0.01.
    #[arg(long, default_value_t = 1.0)]
    sample: f64,
    /// Queue the kept traces here (skipping those already in its dataset or queue).
    #[arg(long)]
    queue: Option<String>,
    /// Count only; queue nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub fn run(arguments: MineArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&arguments.client);
    let body = json!({"project": arguments.project, "filter": arguments.filter, "since": arguments.since,
        "sample": arguments.sample, "queue": arguments.queue, "dry_run": arguments.dry_run});
    let report = client.send_json("POST", "/api/v1/mine", &body)?;
    print_report(&report, arguments.client.json)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct RuleArgs {
    #[command(subcommand)]
    command: RuleCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum RuleCommand {
    /// The standard rules to start from.
    Templates,
    /// Saved rules with their last run.
    List,
    /// Save a rule, from a template (--template negative-feedback) or a filter.
    Create {
        name: String,
        #[arg(long)]
        project: String,
        #[arg(long)]
        template: Option<String>,
        #[arg(long)]
        filter: Option<String>,
        /// How far back each run looks.
        #[arg(long, default_value = "7d")]
        window: String,
        #[arg(long)]
        sample: Option<f64>,
        #[arg(long)]
        queue: Option<String>,
        /// Run it on the server every so often (e.g. 1h, 1d).
        #[arg(long)]
        schedule: Option<String>,
    },
    /// Run a saved rule now.
    Run {
        name: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete a saved rule.
    Delete { name: String },
}

pub fn run_rule(arguments: RuleArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&arguments.client);
    let json_output = arguments.client.json;
    match arguments.command {
        RuleCommand::Templates => {
            let reply = client.get("/api/v1/mining/templates")?;
            if json_output {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                for template in reply["templates"].as_array().into_iter().flatten() {
                    println!(
                        "{:20} sample {:<5} {}  {}",
                        template["name"].as_str().unwrap_or("?"),
                        template["sample_rate"],
                        template["filter"].as_str().unwrap_or("(every trace)"),
                        template["description"].as_str().unwrap_or("")
                    );
                }
            }
        }
        RuleCommand::List => {
            let reply = client.get("/api/v1/mining/rules")?;
            if json_output {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                for rule in reply["rules"].as_array().into_iter().flatten() {
                    println!(
                        "{:20} {} → {}  window {}  sample {}  schedule {}  {}",
                        rule["name"].as_str().unwrap_or("?"),
                        rule["project"].as_str().unwrap_or("?"),
                        rule["queue"].as_str().unwrap_or("(report only)"),
                        rule["window"].as_str().unwrap_or("?"),
                        rule["sample_rate"],
                        rule["schedule"].as_str().unwrap_or("manual"),
                        rule["filter"].as_str().unwrap_or("(every trace)")
                    );
                }
            }
        }
        RuleCommand::Create { name, project, template, filter, window, sample, queue, schedule } => {
            let body = json!({"name": name, "project": project, "template": template, "filter": filter,
                "window": window, "sample_rate": sample, "queue": queue, "schedule": schedule});
            let rule = client.send_json("POST", "/api/v1/mining/rules", &body)?;
            println!("{}", serde_json::to_string_pretty(&rule)?);
        }
        RuleCommand::Run { name, dry_run } => {
            let path = format!("/api/v1/mining/rules/{}/run", encode(&name));
            let report = client.send_json("POST", &path, &json!({"dry_run": dry_run}))?;
            print_report(&report, json_output)?;
        }
        RuleCommand::Delete { name } => {
            client.delete(&format!("/api/v1/mining/rules/{}", encode(&name)))?;
            println!("deleted rule {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &Value, json_output: bool) -> anyhow::Result<()> {
    if json_output {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!(
        "{} on {}: {} scanned, {} matched, {} sampled, {} skipped (in dataset), {} skipped (already queued), {} {}",
        report["rule"].as_str().unwrap_or("?"),
        report["project"].as_str().unwrap_or("?"),
        report["scanned"],
        report["matched"],
        report["sampled"],
        report["skipped_in_dataset"],
        report["skipped_already_queued"],
        report["queued"],
        match (report["dry_run"].as_bool(), report["queue"].as_str()) {
            (Some(true), Some(queue)) => format!("would be queued in {queue} (dry run)"),
            (_, Some(queue)) => format!("queued in {queue}"),
            _ => "kept (no queue)".to_owned(),
        }
    );
    Ok(())
}
