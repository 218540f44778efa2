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
    #[command(flatten)]
    judge: super::JudgeArgs,
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
    // Nothing runs in a process that just started: an experiment still marked running was cut short.
    let interrupted = store.fail_interrupted_experiments("the server stopped while the experiment ran")?;
    if interrupted > 0 {
        eprintln!("marked {interrupted} experiment(s) cut short by the last stop as failed");
    }
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
    // Every served grader is checked and compiled once, here, not per experiment.
    // Compiled graders are cached beside the data, so a restart deserializes instead of recompiling.
    let judge = arguments.judge.config()?;
    if let Some(judge) = &judge {
        eprintln!("judge: model {} at {}, allowed to: {}", judge.model, judge.url, judge.allowed.join(", "));
    }
    let grading = crate::runtime::Runtime::new(crate::runtime::RuntimeConfig {
        cache_directory: Some(arguments.data.join("compiled")),
        judge,
        ..crate::runtime::RuntimeConfig::default()
    })
    .context("could not start the grader runtime")?;
    let state =
        AppState::new(store, auth, std::sync::Arc::new(grading)).context("could not open the grader registry")?;
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
        // Dropped with the runtime when the server stops.
        tokio::spawn(apply_retention_periodically(state.store.clone()));
        tokio::spawn(run_mining_rules_periodically(state.store.clone()));
        crate::api::serve(listener, state, shutdown_signal()).await?;
        eprintln!("assay: stopped");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// How often the server drops traces past their project's retention.
const RETENTION_INTERVAL_SECONDS: u64 = 3_600;
/// How often the server looks for scheduled mining rules that are due.
const MINING_CHECK_SECONDS: u64 = 60;

/// Applies trace retention and compacts trace segments at start and then
/// every hour (a first run on a large store walks many keys).
async fn apply_retention_periodically(store: Store) {
    periodically(store, RETENTION_INTERVAL_SECONDS, "trace retention", |store, now_ms| {
        let report = store.apply_retention(now_ms)?;
        if report != crate::store::RetentionReport::default() {
            tracing::info!(
                traces = report.traces,
                pending_feedback = report.pending_feedback,
                pending_spans = report.pending_spans,
                "retention removed expired traces"
            );
        }
        // Small ingest calls (OTLP exports) leave small segments: merge them so scans stay fast.
        let compaction = store.compact_traces()?;
        if compaction.segments_merged > 0 {
            tracing::info!(
                merged = compaction.segments_merged,
                written = compaction.segments_written,
                "compacted trace segments"
            );
        }
        Ok(())
    })
    .await
}

/// Runs every scheduled mining rule whose schedule has come round, checking once a minute.
async fn run_mining_rules_periodically(store: Store) {
    periodically(store, MINING_CHECK_SECONDS, "scheduled mining", |store, now_ms| {
        for report in crate::mining::run_due_rules(store, now_ms)? {
            tracing::info!(rule = %report.rule, matched = report.matched, queued = report.queued,
                "a scheduled mining rule ran");
        }
        Ok(())
    })
    .await
}

/// Runs `job` at start and then every `seconds`, on a blocking thread, logging its failures.
async fn periodically(
    store: Store,
    seconds: u64,
    what: &'static str,
    job: fn(&Store, i64) -> Result<(), crate::store::StoreError>,
) {
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(seconds));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let store = store.clone();
        let now_ms = crate::store::now_ms();
        match tokio::task::spawn_blocking(move || job(&store, now_ms)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "{what} failed"),
            Err(error) => tracing::error!(%error, "{what} stopped"),
        }
    }
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
pub(super) async fn shutdown_signal() {
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
