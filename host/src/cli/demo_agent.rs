//! `assay demo-agent`: serve the scripted demo triage agent as a target
//! endpoint for `assay eval --target` (see README "A tour").

use anyhow::Context as _;
use clap::Args;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct DemoAgentArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8700")]
    addr: SocketAddr,
    /// Which revision of the agent answers: v1, or v2 (a "shorter prompt" with regressions).
    #[arg(long, default_value = "v1", value_parser = clap::builder::PossibleValuesParser::new(crate::demo::REVISIONS))]
    revision: String,
    /// Milliseconds added to every answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

pub fn run(arguments: DemoAgentArgs) -> anyhow::Result<ExitCode> {
    let agent = crate::api::DemoAgent {
        revision: arguments.revision.clone(),
        latency: Duration::from_millis(arguments.latency_ms),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(arguments.addr)
            .await
            .with_context(|| format!("could not listen on {}", arguments.addr))?;
        eprintln!("demo agent {} answering at http://{}/", arguments.revision, listener.local_addr()?);
        crate::api::serve_demo_agent(listener, agent, super::serve::shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
