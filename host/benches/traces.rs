//! Trace storage costs: ingest rate through the store and through the HTTP
//! API (JSONL batches of 5,000), and a time-window scan over every stored
//! trace, summaries only (what a mining filter that reads no message text
//! needs) and whole.
//!
//! Run: `cargo bench -p assay --bench traces` (`ASSAY_BENCH_TRACES`, default
//! 1,000,000, sets how many traces are stored; the API part sends 100,000).

use assay::store::{Role, Store, TraceScan};
use assay::traces::Trace;
use serde_json::Value;
use std::ops::ControlFlow;
use std::time::Instant;

const BATCH: usize = 5_000;
const API_TRACES: usize = 100_000;
/// 2025-06-02T08:00:00Z.
const START_MS: i64 = 1_748_851_200_000;

fn main() {
    let total: usize = std::env::var("ASSAY_BENCH_TRACES").ok().and_then(|text| text.parse().ok()).unwrap_or(1_000_000);
    let fixture =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/test_data/traces/production.jsonl"))
            .expect("the production traces fixture");
    let templates: Vec<Value> = fixture.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let directory = tempfile::tempdir().unwrap();
    let store = Store::open(directory.path()).unwrap();

    // Store ingest: batches of traces already parsed (the API's parse is measured below).
    let mut ingest_seconds = 0.0;
    let mut written = 0;
    while written < total {
        let batch: Vec<Trace> = (written..(written + BATCH).min(total))
            .map(|index| serde_json::from_value(variant(&templates, index, "bench")).unwrap())
            .collect();
        written += batch.len();
        let started = Instant::now();
        let report = store.ingest_traces(None, batch).unwrap();
        ingest_seconds += started.elapsed().as_secs_f64();
        assert_eq!(report.accepted, report.outcomes.len());
    }
    println!("store ingest: {total} traces in {ingest_seconds:.1} s = {:.0} traces/s", total as f64 / ingest_seconds);

    for (label, summary_only) in [("summaries", true), ("whole traces", false)] {
        let started = Instant::now();
        let mut matched = 0usize;
        let scan = TraceScan { summary_only, ..TraceScan::default() };
        for project in ["bench-triage-agent", "bench-support-agent"] {
            store
                .scan_traces(project, &scan, |trace| {
                    if trace.error.is_some() || trace.feedback.iter().any(|entry| entry.score.is_some_and(|s| s < 3.0))
                    {
                        matched += 1;
                    }
                    ControlFlow::Continue(())
                })
                .unwrap();
        }
        let seconds = started.elapsed().as_secs_f64();
        println!("scan of {total} traces, {label}: {seconds:.2} s ({matched} with an error or a low score)");
    }
    // A mining query: the LangSmith filter of the negative-feedback rule over every stored trace.
    let filter =
        assay::traces::filter::Filter::parse(r#"and(eq(feedback_key, "user_score"), lt(feedback_score, 3))"#).unwrap();
    let started = Instant::now();
    let (mut scanned, mut matched) = (0, 0);
    for project in ["bench-triage-agent", "bench-support-agent"] {
        let request = assay::mining::MineRequest {
            rule: "bench",
            project,
            filter: Some(&filter),
            since_ms: None,
            until_ms: None,
            sample_rate: 1.0,
            queue: None,
            dry_run: true,
        };
        let report = assay::mining::mine(&store, &request).unwrap();
        scanned += report.scanned;
        matched += report.matched;
    }
    println!(
        "mining query (negative-feedback filter) over {scanned} traces: {:.2} s ({matched} matched)",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let window = TraceScan {
        since_ms: Some(START_MS),
        until_ms: Some(START_MS + 3_600_000),
        summary_only: true,
        ..TraceScan::default()
    };
    let mut in_window = 0usize;
    store
        .scan_traces("bench-triage-agent", &window, |_| {
            in_window += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    println!("one-hour window: {in_window} traces in {:.3} s", started.elapsed().as_secs_f64());

    // Through the API: a real server, JSONL bodies of 5,000 traces.
    let runtime = std::sync::Arc::new(assay::runtime::Runtime::new(assay::runtime::RuntimeConfig::default()).unwrap());
    let token = store.create_token("bench", Role::Ingest, "bench").unwrap().token;
    let state = assay::api::AppState::new(store.clone(), assay::api::AuthMode::Tokens, runtime).unwrap();
    let server = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let listener = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    server.spawn(assay::api::serve(listener, state, std::future::pending()));
    let bodies: Vec<String> = (0..API_TRACES / BATCH)
        .map(|batch| {
            (batch * BATCH..(batch + 1) * BATCH)
                .map(|index| variant(&templates, index, "api").to_string() + "\n")
                .collect()
        })
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(true).build().into();
    let started = Instant::now();
    for body in &bodies {
        let mut response = agent
            .post(&format!("http://{address}/api/v1/traces"))
            .header("authorization", &format!("Bearer {token}"))
            .header("content-type", "application/x-ndjson")
            .send(body.as_bytes())
            .unwrap();
        let report: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(report["accepted"], BATCH, "{report}");
    }
    let seconds = started.elapsed().as_secs_f64();
    let megabytes = bodies.iter().map(String::len).sum::<usize>() as f64 / (1 << 20) as f64;
    println!(
        "API ingest: {API_TRACES} traces ({megabytes:.0} MiB of JSONL) in {seconds:.1} s = {:.0} traces/s",
        API_TRACES as f64 / seconds
    );
}

/// The `index`-th trace: a fixture trace with a fresh id and a start time
/// spread over days, in a project named after `prefix`.
fn variant(templates: &[Value], index: usize, prefix: &str) -> Value {
    let mut trace = templates[index % templates.len()].clone();
    let project = format!("{prefix}-{}", trace["project"].as_str().unwrap());
    trace["project"] = Value::String(project);
    trace["id"] = Value::String(format!("{prefix}-{index:08}"));
    let start = START_MS + (index as i64) * 337;
    trace["start_time"] = Value::String(assay::traces::format_rfc3339_ms(start));
    trace["end_time"] = Value::String(assay::traces::format_rfc3339_ms(start + 1_200 + (index as i64 % 7) * 900));
    trace
}
