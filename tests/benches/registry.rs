//! The grader registry's hot swap, measured: how long from publishing a new
//! version (compiled cold, or found in the compile cache) until it serves a
//! grading call, how long a promotion takes, and grading throughput while the
//! alias is moved back and forth continuously against the same run with no
//! moves, on the standard 1,500-case workload of `shared/bench/peers/gen.py`.
//!
//! Run: `cargo bench -p assay-tests --bench registry` (set `ASSAY_PEERS_DIR`
//! if `shared/bench/peers` is elsewhere). The second version is
//! `tests/graders/must_not_say_next`.

use assay::model::{AgentRun, Example};
use assay::registry::Registry;
use assay::runtime::{Case, GraderCall, Outcome, Runtime, RuntimeConfig, to_case};
use assay::store::Store;
use assay_tests::test_graders;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

const REPEATS: usize = 5;
/// Cases graded per resolve of the alias, as an evaluation batch does.
const CASES_PER_BATCH: usize = 64;
const PASSES: usize = 4;

fn main() {
    let component = std::fs::read(test_graders::MUST_NOT_SAY_NEXT).unwrap();
    let next_version = "0.2.0";
    let cases = workload_cases();
    let case = &cases[0];

    // Publish → serving: publish the new version, promote it, and grade one call with what the name serves.
    let (mut cold, mut cached, mut promote) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..REPEATS {
        // A fresh compile cache: the first server compiles the new version, a second one finds it cached.
        let cache = tempfile::tempdir().unwrap();
        for timings in [&mut cold, &mut cached] {
            let directory = tempfile::tempdir().unwrap();
            let registry = registry(directory.path(), cache.path());
            let start = Instant::now();
            registry.publish("must_not_say", next_version, &component, &[], "bench").unwrap();
            let promoted = Instant::now();
            registry.promote("must_not_say", next_version, "bench").unwrap();
            let served = registry.resolve("must_not_say", None, false).unwrap();
            assert_eq!(served.version, next_version);
            grade_one(registry.runtime(), &served.grader, case);
            timings.push(start.elapsed().as_secs_f64() * 1e3);
            promote.push(promoted.elapsed().as_secs_f64() * 1e3);
        }
    }

    // Throughput with and without continuous swaps.
    let directory = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let registry = Arc::new(registry(directory.path(), cache.path()));
    registry.publish("must_not_say", next_version, &component, &[], "bench").unwrap();
    let quiet = throughput(&registry, &cases);
    let stop = Arc::new(AtomicBool::new(false));
    let moves = Arc::new(AtomicUsize::new(0));
    let swapper = {
        let (registry, stop, moves) = (Arc::clone(&registry), Arc::clone(&stop), Arc::clone(&moves));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                registry.promote("must_not_say", next_version, "bench").unwrap();
                registry.rollback("must_not_say", "bench").unwrap();
                moves.fetch_add(2, Ordering::Relaxed);
            }
        })
    };
    let swapping = throughput(&registry, &cases);
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    let moved = moves.load(Ordering::Relaxed);

    println!("grader registry: publish → serving, hot swap ({} cases, must_not_say 0.1.0 ⇄ 0.2.0)", cases.len());
    println!("  {:<70} {:>9}", "measure", "ms");
    println!("  {:<70} {:>9.1}", "publish (check, compile cold, trial run) + promote + first call", median(&mut cold));
    println!("  {:<70} {:>9.1}", "publish (compile cache hit) + promote + first call", median(&mut cached));
    println!(
        "  {:<70} {:>9.2}",
        "promote (alias moved, flushed) + first call on the new version",
        median(&mut promote)
    );
    println!("  (target: a new grader serving within ~100 ms of publish)");
    println!(
        "\n  grading throughput, {PASSES} passes of {} cases, a resolve of the alias per {CASES_PER_BATCH} cases",
        cases.len()
    );
    println!("  {:<70} {:>9.0} cases/s", "no swaps", quiet.cases_per_second);
    println!(
        "  {:<70} {:>9.0} cases/s",
        format!("alias moved continuously ({moved} moves, {:.0}/s)", moved as f64 / swapping.seconds),
        swapping.cases_per_second
    );
    println!(
        "  with swaps / without          {:>6.2}x   failed calls: {} without, {} with (target: 0)",
        swapping.cases_per_second / quiet.cases_per_second,
        quiet.failures,
        swapping.failures
    );
}

fn registry(store_directory: &Path, cache_directory: &Path) -> Registry {
    let runtime =
        Runtime::new(RuntimeConfig { cache_directory: Some(cache_directory.to_owned()), ..RuntimeConfig::default() })
            .unwrap();
    Registry::open(Arc::new(runtime), Store::open(store_directory).unwrap()).unwrap()
}

fn grade_one(runtime: &Runtime, grader: &assay::runtime::LoadedGrader, case: &Case) {
    match runtime.grade(grader, case, "{}").outcome {
        Outcome::Scores(scores) => assert_eq!(scores[0].key, "policy_violations"),
        Outcome::Failure(failure) => panic!("{failure}"),
    }
}

struct Throughput {
    cases_per_second: f64,
    seconds: f64,
    failures: usize,
}

/// Grades every case `PASSES` times, resolving what the name serves once per batch.
fn throughput(registry: &Registry, cases: &[Case]) -> Throughput {
    let start = Instant::now();
    let mut failures = 0;
    for _ in 0..PASSES {
        for batch in cases.chunks(CASES_PER_BATCH) {
            let served = registry.resolve("must_not_say", None, false).unwrap();
            let calls = [GraderCall { grader: Arc::clone(&served.grader), config: "{}".into() }];
            for row in registry.runtime().grade_batch(&calls, batch) {
                failures += row.iter().filter(|graded| matches!(graded.outcome, Outcome::Failure(_))).count();
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Throughput { cases_per_second: (PASSES * cases.len()) as f64 / seconds, seconds, failures }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn workload_cases() -> Vec<Case> {
    let work = tempfile::tempdir().unwrap();
    let peers = peers_directory();
    let generated = std::process::Command::new("python3").arg(peers.join("gen.py")).arg(work.path()).output().unwrap();
    assert!(generated.status.success(), "gen.py failed: {}", String::from_utf8_lossy(&generated.stderr));
    let read = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(work.path().join(name))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    let runs: std::collections::HashMap<String, Value> =
        read("runs.jsonl").into_iter().map(|run| (run["example_id"].as_str().unwrap().to_owned(), run)).collect();
    read("dataset.jsonl")
        .into_iter()
        .map(|example| {
            let run = &runs[example["id"].as_str().unwrap()];
            let example = Example::from_json(&example.to_string()).unwrap();
            let run = AgentRun::from_json(&run.to_string()).unwrap();
            to_case(&example, &run)
        })
        .collect()
}

fn peers_directory() -> PathBuf {
    if let Some(directory) = std::env::var_os("ASSAY_PEERS_DIR") {
        return PathBuf::from(directory);
    }
    let candidate = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/peers");
    assert!(candidate.join("gen.py").exists(), "set ASSAY_PEERS_DIR to shared/bench/peers");
    candidate
}
