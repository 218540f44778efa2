//! `assay grade`: one example, one agent run, one grader; prints the scores as JSON.

use super::{EXIT_FAILED, SandboxArgs};
use crate::model::{AgentRun, Example};
use crate::runtime::{Outcome, WIT_WORLD, to_case};
use anyhow::Context as _;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct GradeArgs {
    /// A reference grader's name (see `assay graders`) or the path of a grader component (.wasm).
    #[arg(long)]
    grader: String,
    /// The example, as a JSON file in the wire format.
    #[arg(long)]
    example: PathBuf,
    /// The agent run, as a JSON file in the wire format.
    #[arg(long)]
    run: PathBuf,
    /// The grader's configuration, a JSON object.
    #[arg(long, default_value = "{}")]
    config: String,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

/// Exit 0 with scores, 1 when the grader failed on the case, 2 on bad input.
pub fn run(arguments: GradeArgs) -> anyhow::Result<ExitCode> {
    let example_text = read(&arguments.example)?;
    let example = Example::from_json(&example_text)
        .with_context(|| format!("{} is not a valid example", arguments.example.display()))?;
    let run_text = read(&arguments.run)?;
    let run = AgentRun::from_json(&run_text)
        .with_context(|| format!("{} is not a valid agent run", arguments.run.display()))?;
    let config: serde_json::Value = serde_json::from_str(&arguments.config).context("--config is not JSON")?;
    anyhow::ensure!(config.is_object(), "--config must be a JSON object");
    let runtime = arguments.sandbox.runtime()?;
    let grader = super::load_grader(&runtime, &arguments.grader)?;
    let graded = runtime.grade(&grader, &to_case(&example, &run), &config.to_string());
    let failed = matches!(graded.outcome, Outcome::Failure(_));
    let report = serde_json::json!({
        "grader": {
            "name": grader.info.name,
            "version": grader.info.version,
            "digest": format!("sha256:{}", grader.digest),
            "world": WIT_WORLD,
        },
        "example_id": example.id,
        "result": graded,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if failed { ExitCode::from(EXIT_FAILED) } else { ExitCode::SUCCESS })
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    let metadata = std::fs::metadata(path).with_context(|| format!("could not read {}", path.display()))?;
    anyhow::ensure!(metadata.len() <= 16 << 20, "{} is over 16 MiB", path.display());
    std::fs::read_to_string(path).with_context(|| format!("could not read {} as UTF-8 text", path.display()))
}
