//! `assay graders`: the reference graders and what they say about themselves.

use super::SandboxArgs;
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct GradersArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

pub fn run(arguments: GradersArgs) -> anyhow::Result<ExitCode> {
    let runtime = arguments.sandbox.runtime()?;
    let mut graders = Vec::new();
    for (name, _) in crate::graders::REFERENCE_GRADERS {
        let grader = super::load_grader(&runtime, name)?;
        graders.push(serde_json::json!({
            "name": grader.info.name,
            "version": grader.info.version,
            "description": grader.info.description,
            "score_keys": grader.info.score_keys,
            "config_schema": grader.info.config_schema,
            "digest": format!("sha256:{}", grader.digest),
            "size_bytes": grader.size_bytes,
        }));
    }
    if arguments.json {
        println!("{}", serde_json::to_string_pretty(&graders)?);
    } else {
        println!("{:<16} {:<8} {:<56} DESCRIPTION", "NAME", "VERSION", "SCORE KEYS");
        for grader in &graders {
            let keys: Vec<&str> =
                grader["score_keys"].as_array().into_iter().flatten().filter_map(|key| key.as_str()).collect();
            println!(
                "{:<16} {:<8} {:<56} {}",
                grader["name"].as_str().unwrap_or_default(),
                grader["version"].as_str().unwrap_or_default(),
                keys.join(", "),
                grader["description"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
