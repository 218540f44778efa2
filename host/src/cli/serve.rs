//! `assay serve`: the API on the embedded store.

use crate::api::{AppState, AuthMode};
use crate::store::{Role, Store};
use anyhow::Context as _;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory of the embedded store (created if missing).
    #[arg(long, env = "ASSAY_DATA", default_value = "assay-data")]
    data: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "ASSAY_ADDR", default_value = "127.0.0.1:7777")]
    addr: SocketAddr,
    /// Run without authentication (every request is an admin). Loopback addresses only.
    #[arg(long)]
    dev: bool,
    /// Seed the demo golden dataset `triage-golden` (after-hours medical triage) if it is missing.
    #[arg(long)]
    demo: bool,
}

/// The demo golden dataset: after-hours triage examples across severities and personas.
const DEMO_DATASET: &str = include_str!("../../demo/triage-golden.jsonl");

pub fn run(arguments: ServeArgs) -> anyhow::Result<ExitCode> {
    if arguments.dev && !arguments.addr.ip().is_loopback() {
        anyhow::bail!(
            "--dev turns authentication off and is only allowed on a loopback address, not {}",
            arguments.addr
        );
    }
    let store = Store::open(&arguments.data)
        .with_context(|| format!("could not open the store in {}", arguments.data.display()))?;
    if arguments.demo {
        seed_demo(&store)?;
    }
    let auth = if arguments.dev {
        eprintln!("WARNING: --dev: authentication is OFF; every request acts as an admin. Never expose this server.");
        AuthMode::Development
    } else {
        if store.token_count()? == 0 {
            let token = store.create_token("first-admin", Role::Admin, "assay serve")?;
            eprintln!("First start: an admin token was created. It is shown only this once:\n\n    {}\n", token.token);
            eprintln!("Make more with: ASSAY_TOKEN=<admin token> assay token create --role engineer --name ci");
        }
        AuthMode::Tokens
    };
    // The reference graders are checked and compiled once, here, not per experiment.
    let grading = crate::runtime::Runtime::new(crate::runtime::RuntimeConfig::default())
        .context("could not start the grader runtime")?;
    let state = AppState::new(store, auth, std::sync::Arc::new(grading))
        .context("a reference grader built into this binary was refused")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(arguments.addr)
            .await
            .with_context(|| format!("could not listen on {}", arguments.addr))?;
        eprintln!(
            "assay {} serving http://{} (data in {})",
            env!("CARGO_PKG_VERSION"),
            listener.local_addr()?,
            arguments.data.display()
        );
        crate::api::serve(listener, state, shutdown_signal()).await?;
        eprintln!("assay: stopped");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn seed_demo(store: &Store) -> anyhow::Result<()> {
    use crate::store::{DatasetKind, NewDataset, StoreError};
    match store.dataset("triage-golden") {
        Ok(_) => return Ok(()),
        Err(StoreError::NotFound { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    store.create_dataset(NewDataset {
        name: "triage-golden".into(),
        description: "Demo: an after-hours medical triage voice agent".into(),
        kind: DatasetKind::Golden,
        schema: Default::default(),
    })?;
    let version = store.import("triage-golden", DEMO_DATASET, "assay serve --demo", "demo golden dataset")?;
    store.set_tag("triage-golden", "v1.0", version.version, "assay serve --demo")?;
    eprintln!("seeded demo dataset triage-golden@v1.0 ({} examples)", version.example_count);
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
