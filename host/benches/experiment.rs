//! Experiments end to end, against baselines measured in the same run.
//!
//! 1. The standard 1,500-example workload (`shared/bench/peers/gen.py`) graded
//!    by the 3 reference graders with outputs from a file, as whole processes
//!    like the peers' figures: `assay eval` offline (no storage), and `assay
//!    eval --dataset` against a running server, which stores the experiment
//!    (every score, flushed) before answering. The baseline is the bare CPython
//!    loop of `baseline_cpython.py` (2 graders, no sandbox, no storage).
//! 2. The target runner's overhead: N examples against an agent with a fixed
//!    latency L at concurrency C, against the ideal N·L/C.
//!
//! Run: `cargo bench -p assay --bench experiment` (set `ASSAY_PEERS_DIR` if
//! `shared/bench/peers` is elsewhere).

use assay::agent::Target;
use assay::api::{AppState, AuthMode};
use assay::model::Example;
use assay::store::{DatasetKind, NewDataset, Store};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const REPEATS: usize = 5;
const NODELAY: bool = true;
/// Calls of the sequential run that measures the agent's latency as a caller sees it.
const SEQUENTIAL_CALLS: usize = 50;

fn main() {
    let peers = peers_directory();
    let work = tempfile::tempdir().unwrap();
    let generated = Command::new("python3").arg(peers.join("gen.py")).arg(work.path()).output().unwrap();
    assert!(generated.status.success(), "gen.py failed: {}", String::from_utf8_lossy(&generated.stderr));
    let dataset = work.path().join("dataset.jsonl");
    let runs = work.path().join("runs.jsonl");
    let cache = tempfile::tempdir().unwrap();

    let server = BenchServer::start();
    server
        .store
        .create_dataset(NewDataset { name: "golden".into(), kind: DatasetKind::Golden, ..new_dataset() })
        .unwrap();
    server.store.import("golden", &std::fs::read_to_string(&dataset).unwrap(), "bench", "standard workload").unwrap();

    let graders = ["--grader", "must_not_say", "--grader", "must_call", "--grader", "reference_match"];
    let offline = |_: usize| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_assay"));
        command.args(["eval", "--dataset-file"]).arg(&dataset).arg("--outputs").arg(&runs).args(graders);
        command
    };
    let stored = |_: usize| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_assay"));
        command.args(["eval", "--dataset", "golden@1", "--outputs"]).arg(&runs).args(graders);
        command.args(["--server", &server.base]);
        command
    };
    let cpython = |_: usize| {
        let mut command = Command::new("python3");
        command.arg(peers.join("baseline_cpython.py")).arg(work.path());
        command
    };
    let cache_path = cache.path().to_owned();
    let time = |make: &dyn Fn(usize) -> Command| {
        median_seconds(|index| {
            let mut command = make(index);
            command.env("ASSAY_CACHE_DIR", &cache_path);
            let output = command.output().unwrap();
            // Exit 1 is a failed gate or check, which is fine here; 2 and up is not.
            assert!(output.status.code().is_some_and(|code| code <= 1), "{}", String::from_utf8_lossy(&output.stderr));
        })
    };
    let python_seconds = time(&cpython);
    let offline_seconds = time(&offline);
    let stored_seconds = time(&stored);
    let experiments = server.store.list_experiments(Some("golden")).unwrap();
    assert_eq!(experiments.len(), REPEATS + 1, "every server run stored its experiment");
    assert_eq!(server.store.experiment_results(&experiments[0].id).unwrap().len(), 1_500);

    println!(
        "experiments, standard workload: 1,500 examples, outputs from a file, whole processes (median of {REPEATS})"
    );
    println!("  {:<76} {:>8}", "run", "seconds");
    println!(
        "  {:<76} {:>8.3}",
        "CPython bare loop, 2 graders, no sandbox, no storage (baseline_cpython.py)", python_seconds
    );
    println!("  {:<76} {:>8.3}", "assay eval --dataset-file, 3 sandboxed graders, no storage", offline_seconds);
    println!(
        "  {:<76} {:>8.3}",
        "assay eval --dataset golden@1 on a server, 3 sandboxed graders, stored", stored_seconds
    );
    println!("  offline / CPython bare loop   {:>6.2}x", offline_seconds / python_seconds);
    println!(
        "  stored  / CPython bare loop   {:>6.2}x   (target: experiment with stored results well under 1 s)",
        stored_seconds / python_seconds
    );

    println!("\ntarget runner overhead: N calls to an agent with fixed latency L at concurrency C, vs N·L/C");
    println!("  L' is the agent's latency as one sequential caller sees it (timer granularity, HTTP, loopback),");
    println!("  measured in the same run over {SEQUENTIAL_CALLS} calls");
    println!(
        "  {:>6} {:>6} {:>4} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "N", "L ms", "C", "L' ms", "N·L/C s", "N·L'/C s", "actual s", "vs N·L'/C"
    );
    let examples = examples_of(&dataset);
    for (count, latency_ms, concurrency) in [(400, 20, 16), (1_500, 20, 64), (256, 100, 8)] {
        let agent = FixedLatencyAgent::start(Duration::from_millis(latency_ms));
        let target = |max_concurrency| Target {
            max_concurrency,
            timeout_ms: 10_000,
            retries: 0,
            ..Target::new(agent.url.clone())
        };
        let sequential: Vec<Example> = examples.iter().take(SEQUENTIAL_CALLS).cloned().collect();
        let start = Instant::now();
        let (_, stats) = target(1).run(&sequential, &|_| {});
        assert_eq!(stats.agent_errors, 0);
        let effective_ms = start.elapsed().as_secs_f64() * 1e3 / SEQUENTIAL_CALLS as f64;
        let cases: Vec<Example> = examples.iter().cycle().take(count).cloned().collect();
        let start = Instant::now();
        let (answers, stats) = target(concurrency).run(&cases, &|_| {});
        let actual = start.elapsed().as_secs_f64();
        assert_eq!(stats.agent_errors, 0, "{:?}", answers.iter().find_map(|run| run.error.clone()));
        let ideal = count as f64 * latency_ms as f64 / 1_000.0 / concurrency as f64;
        let effective = count as f64 * effective_ms / 1_000.0 / concurrency as f64;
        println!(
            "  {:>6} {:>6} {:>4} {:>8.2} {:>10.3} {:>10.3} {:>10.3} {:>9.1}%",
            count,
            latency_ms,
            concurrency,
            effective_ms,
            ideal,
            effective,
            actual,
            (actual / effective - 1.0) * 100.0
        );
    }
    println!("  (target: within 5% of N·L/C)");
}

fn new_dataset() -> NewDataset {
    NewDataset {
        name: String::new(),
        description: String::new(),
        kind: DatasetKind::Golden,
        schema: Default::default(),
    }
}

fn examples_of(dataset: &Path) -> Vec<Example> {
    std::fs::read_to_string(dataset).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// Runs `run` once to warm up, then `REPEATS` times; the median in seconds.
fn median_seconds(mut run: impl FnMut(usize)) -> f64 {
    run(0);
    let mut seconds: Vec<f64> = (1..=REPEATS)
        .map(|index| {
            let start = Instant::now();
            run(index);
            start.elapsed().as_secs_f64()
        })
        .collect();
    seconds.sort_by(f64::total_cmp);
    seconds[REPEATS / 2]
}

/// An Assay server in this process, authentication off, on loopback.
struct BenchServer {
    base: String,
    store: Store,
    _directory: tempfile::TempDir,
}

impl BenchServer {
    fn start() -> BenchServer {
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open(directory.path()).unwrap();
        let runtime = assay::runtime::Runtime::new(assay::runtime::RuntimeConfig::default()).unwrap();
        let state = AppState::new(store.clone(), AuthMode::Development, std::sync::Arc::new(runtime)).unwrap();
        let (ready_sender, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready_sender.send(listener.local_addr().unwrap()).unwrap();
                assay::api::serve(listener, state, std::future::pending()).await.unwrap();
            });
        });
        let address = ready.recv().unwrap();
        BenchServer { base: format!("http://{address}"), store, _directory: directory }
    }
}

/// An agent that answers every call with the same run after a fixed latency.
struct FixedLatencyAgent {
    url: String,
}

impl FixedLatencyAgent {
    fn start(latency: Duration) -> FixedLatencyAgent {
        let (ready_sender, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready_sender.send(listener.local_addr().unwrap()).unwrap();
                let answer = move || async move {
                    tokio::time::sleep(latency).await;
                    r#"{"outputs": {"messages": [{"role": "assistant", "content": "I'm paging the on-call physician now."}], "tool_calls": [{"name": "page_on_call", "args": {}}]}}"#
                };
                let router = axum::Router::new().route("/", axum::routing::post(answer));
                let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    let _ = tcp.set_nodelay(NODELAY);
                });
                axum::serve(listener, router).await.unwrap();
            });
        });
        FixedLatencyAgent { url: format!("http://{}/", ready.recv().unwrap()) }
    }
}

fn peers_directory() -> PathBuf {
    if let Some(directory) = std::env::var_os("ASSAY_PEERS_DIR") {
        return PathBuf::from(directory);
    }
    let candidate = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/peers");
    assert!(
        candidate.join("gen.py").exists(),
        "set ASSAY_PEERS_DIR to shared/bench/peers (not found at {})",
        candidate.display()
    );
    candidate
}
