//! Per-call cost of the `must_not_say` grader: sandboxed Wasm component vs the
//! same Rust code compiled natively vs the playbook's CPython evaluator, on the
//! standard 1,500-case workload of `shared/bench/peers/gen.py`.
//!
//! Run: `cargo bench -p assay --bench grading` (set `ASSAY_PEERS_DIR` when
//! `shared/bench/peers` is not beside the workspace). Every figure is measured
//! in this run; ratios are printed against the native and CPython baselines.

use assay::model::{AgentRun, Example};
use assay::runtime::{Case, GraderCall, LoadedGrader, Outcome, Runtime, RuntimeConfig, to_case};
use assay_sdk::Grader as _;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const PASSES: usize = 30;

fn main() {
    let peers = peers_directory();
    let work = tempfile::tempdir().expect("temporary directory");
    let generated = Command::new("python3").arg(peers.join("gen.py")).arg(work.path()).output().expect("python3 runs");
    assert!(generated.status.success(), "gen.py failed: {}", String::from_utf8_lossy(&generated.stderr));
    let workload = Workload::load(work.path());
    println!("workload: {} cases from {}", workload.examples.len(), peers.join("gen.py").display());
    println!("assistant text per run: {:.0} bytes on average", workload.mean_assistant_bytes());

    // Native Rust: the plugin crate's own code, called directly.
    let native_cases: Vec<assay_sdk::Case> =
        workload.pairs().map(|(example, run)| assay_sdk::testing::case_from_values(example, run)).collect();
    let config = must_not_say::Config::default();
    let native_fails = failing_ids(&workload, |index| {
        let scores = must_not_say::MustNotSay::grade(&native_cases[index], &config).expect("native grade");
        scores[0].value == 0.0
    });
    let native = per_call_microseconds(native_cases.len(), |index| {
        std::hint::black_box(must_not_say::MustNotSay::grade(&native_cases[index], &config).ok());
    });

    // CPython: the playbook evaluator, timed in-process by the peers' own script.
    let python = cpython_micro(&peers, work.path());

    // Sandboxed Wasm: a fresh instance per call, fuel and epoch deadline on.
    let wasm_cases: Vec<Case> = workload.host_cases();
    let mut rows = Vec::new();
    for (pooling, keep_resident) in [(true, 4 << 20), (true, 0), (false, 0)] {
        let config = RuntimeConfig { pooling, memory_keep_resident_bytes: keep_resident, ..RuntimeConfig::default() };
        let runtime = Runtime::new(config).expect("runtime");
        let grader = runtime.load(assay::graders::reference_grader("must_not_say").unwrap()).expect("loads");
        let wasm_fails = failing_ids(&workload, |index| policy_failed(&runtime, &grader, &wasm_cases[index]));
        assert_eq!(wasm_fails, native_fails, "the component and the native code disagree");
        assert_eq!(wasm_fails, workload.expected_policy_fails, "the component disagrees with expected.json");
        let per_call = per_call_microseconds(wasm_cases.len(), |index| {
            std::hint::black_box(runtime.grade(&grader, &wasm_cases[index], "{}"));
        });
        rows.push((pooling, keep_resident, per_call));
    }
    let pooled = rows[0].2;
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let empty_call = {
        let hostile = reference_or_test_grader(&runtime);
        hostile.map(|grader| {
            per_call_microseconds(wasm_cases.len(), |index| {
                std::hint::black_box(runtime.grade(&grader, &wasm_cases[index], "{}"));
            })
        })
    };

    // Throughput on every core: 1,500 cases x the three reference graders.
    let calls: Vec<GraderCall> = ["must_not_say", "must_call", "reference_match"]
        .iter()
        .map(|name| GraderCall {
            grader: Arc::new(runtime.load(assay::graders::reference_grader(name).unwrap()).unwrap()),
            config: "{}".into(),
        })
        .collect();
    let mut batch_seconds = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let rows = runtime.grade_batch(&calls, &wasm_cases);
        batch_seconds.push(start.elapsed().as_secs_f64());
        assert_eq!(rows.len(), wasm_cases.len());
    }
    batch_seconds.sort_by(f64::total_cmp);
    let workers = std::thread::available_parallelism().map_or(1, usize::from);

    println!();
    println!("must_not_say, per call (median of {PASSES} passes over {} cases):", wasm_cases.len());
    println!("  {:<58} {:>9}", "variant", "µs/call");
    println!("  {:<58} {:>9.2}", "native Rust (same plugin code, no sandbox)", native);
    println!("  {:<58} {:>9.2}", "CPython playbook evaluator (text.lower() per phrase)", python.literal);
    println!("  {:<58} {:>9.2}", "CPython, text.lower() hoisted out of the loop", python.hoisted);
    for (pooling, keep_resident, per_call) in &rows {
        let allocator = match (*pooling, *keep_resident) {
            (true, 0) => "pooling, memory returned to the kernel".to_owned(),
            (true, bytes) => format!("pooling, {} MiB kept resident (default)", bytes >> 20),
            (false, _) => "on-demand allocator".to_owned(),
        };
        println!("  {:<58} {:>9.2}", format!("Wasm, fresh instance per call, {allocator}"), per_call);
    }
    if let Some(empty) = empty_call {
        println!("  {:<58} {:>9.2}", "Wasm fixed cost: same case into a grader that returns at once", empty);
    }
    println!();
    println!("ratios (default configuration):");
    println!("  sandboxed / native            {:>6.1}x   (target: within 5x)", pooled / native);
    println!("  CPython playbook / sandboxed  {:>6.1}x   (target: at least 2x faster)", python.literal / pooled);
    println!("  CPython hoisted / sandboxed   {:>6.1}x", python.hoisted / pooled);
    println!();
    println!(
        "1,500 cases x 3 reference graders on {workers} worker threads: {:.1} ms (median of 5, min {:.1} ms)",
        batch_seconds[2] * 1e3,
        batch_seconds[0] * 1e3
    );
    println!();
    println!("peak memory: this process {} MiB, CPython micro-benchmark {} MiB", peak_rss_mib(), python.peak_rss_mib);
    println!("failing ids agree: native == Wasm == expected.json ({} fails)", native_fails.len());
}

fn peers_directory() -> PathBuf {
    if let Some(directory) = std::env::var_os("ASSAY_PEERS_DIR") {
        return PathBuf::from(directory);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let candidate = workspace.join("../shared/bench/peers");
    assert!(
        candidate.join("gen.py").exists(),
        "set ASSAY_PEERS_DIR to shared/bench/peers (not found at {})",
        candidate.display()
    );
    candidate
}

struct Workload {
    examples: Vec<Value>,
    runs: HashMap<String, Value>,
    expected_policy_fails: BTreeSet<String>,
}

impl Workload {
    fn load(directory: &Path) -> Workload {
        let lines = |name: &str| -> Vec<Value> {
            std::fs::read_to_string(directory.join(name))
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect()
        };
        let examples = lines("dataset.jsonl");
        let runs =
            lines("runs.jsonl").into_iter().map(|run| (run["example_id"].as_str().unwrap().to_owned(), run)).collect();
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(directory.join("expected.json")).unwrap()).unwrap();
        let expected_policy_fails = expected["policy_violations"]["fail_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .collect();
        Workload { examples, runs, expected_policy_fails }
    }

    fn pairs(&self) -> impl Iterator<Item = (&Value, &Value)> {
        self.examples.iter().map(|example| (example, &self.runs[example["id"].as_str().unwrap()]))
    }

    fn host_cases(&self) -> Vec<Case> {
        self.pairs()
            .map(|(example, run)| {
                let example = Example::from_json(&example.to_string()).expect("workload examples are valid");
                let run = AgentRun::from_json(&run.to_string()).expect("workload runs are valid");
                to_case(&example, &run)
            })
            .collect()
    }

    fn mean_assistant_bytes(&self) -> f64 {
        let total: usize = self
            .runs
            .values()
            .flat_map(|run| run["outputs"]["messages"].as_array().unwrap())
            .map(|message| message["content"].as_str().unwrap_or_default().len())
            .sum();
        total as f64 / self.runs.len() as f64
    }
}

fn failing_ids(workload: &Workload, mut failed: impl FnMut(usize) -> bool) -> BTreeSet<String> {
    (0..workload.examples.len())
        .filter(|index| failed(*index))
        .map(|index| workload.examples[index]["id"].as_str().unwrap().to_owned())
        .collect()
}

fn policy_failed(runtime: &Runtime, grader: &LoadedGrader, case: &Case) -> bool {
    match runtime.grade(grader, case, "{}").outcome {
        Outcome::Scores(scores) => scores[0].value == 0.0,
        Outcome::Failure(failure) => panic!("grading failed: {failure}"),
    }
}

/// The median over passes of the mean time per call.
fn per_call_microseconds(count: usize, mut call: impl FnMut(usize)) -> f64 {
    for index in 0..count {
        call(index);
    }
    let mut passes: Vec<f64> = (0..PASSES)
        .map(|_| {
            let start = Instant::now();
            for index in 0..count {
                call(index);
            }
            start.elapsed().as_secs_f64() * 1e6 / count as f64
        })
        .collect();
    passes.sort_by(f64::total_cmp);
    passes[PASSES / 2]
}

struct Python {
    literal: f64,
    hoisted: f64,
    peak_rss_mib: u64,
}

fn cpython_micro(peers: &Path, work: &Path) -> Python {
    let script = format!(
        "import json, resource, sys; sys.path.insert(0, {peers:?}); sys.argv = ['x', {work:?}, '--micro'];\n\
         import baseline_cpython as b; result = b.micro({work:?});\n\
         result['peak_rss_kib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; print(json.dumps(result))",
        peers = peers.display().to_string(),
        work = work.display().to_string(),
    );
    let output = Command::new("python3").args(["-c", &script]).output().expect("python3 runs");
    assert!(output.status.success(), "CPython baseline failed: {}", String::from_utf8_lossy(&output.stderr));
    let result: Value = serde_json::from_slice(&output.stdout).expect("the baseline prints JSON");
    Python {
        literal: result["policy_violations_us_per_call"]["median"].as_f64().unwrap(),
        hoisted: result["policy_hoisted_us_per_call"]["median"].as_f64().unwrap(),
        peak_rss_mib: result["peak_rss_kib"].as_u64().unwrap() / 1024,
    }
}

/// A grader that does no work, to show the fixed cost of a sandboxed call:
/// the hostile test grader when it has been built, else none.
fn reference_or_test_grader(runtime: &Runtime) -> Option<LoadedGrader> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let path = workspace.join("target/test-grader-wasm/wasm32-wasip2/plugin/test_grader_hostile.wasm");
    let bytes = std::fs::read(path).ok()?;
    let grader = runtime.load(&bytes).ok()?;
    // The hostile grader's default attack "" is refused as bad config: the
    // cheapest possible round trip through instantiate, copy-in and return.
    Some(grader)
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}
