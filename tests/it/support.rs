//! Helpers shared by the tests.

use assay::model::{AgentRun, Example};
use assay::runtime::{Case, Graded, Limits, LoadedGrader, Outcome, Runtime, RuntimeConfig, Score, to_case};
use std::path::PathBuf;

/// A file under `tests/test_data/`.
pub fn test_data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test_data").join(name)
}

/// A runtime with limits small enough that the hostile tests finish fast.
pub fn small_runtime() -> Runtime {
    runtime_with(Limits {
        memory_bytes_max: 16 << 20,
        grade_fuel_max: 50_000_000,
        log_bytes_max: 4096,
        ..Limits::default()
    })
}

pub fn runtime_with(limits: Limits) -> Runtime {
    let config = RuntimeConfig {
        limits,
        instances_max: 32,
        cache_directory: Some(compile_cache_directory()),
        ..RuntimeConfig::default()
    };
    Runtime::new(config).expect("the runtime starts")
}

/// One compile cache for the whole test run, so each component is compiled once.
pub fn compile_cache_directory() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compiled-graders")
}

pub fn load_reference(runtime: &Runtime, name: &str) -> LoadedGrader {
    let bytes = assay::graders::reference_grader(name).expect("a reference grader");
    runtime.load(bytes).expect("the reference grader loads")
}

pub fn load_file(runtime: &Runtime, path: &str) -> LoadedGrader {
    runtime.load(&std::fs::read(path).expect("the component was built")).expect("the component loads")
}

/// Builds a case from wire-format JSON values.
pub fn case(example: serde_json::Value, run: serde_json::Value) -> Case {
    let example = Example::from_json(&example.to_string()).expect("valid example");
    let run = AgentRun::from_json(&run.to_string()).expect("valid run");
    to_case(&example, &run)
}

/// The SPEC's after-hours triage example with the given agent run.
pub fn triage_case(run_file: &str) -> Case {
    let example = Example::from_json(&std::fs::read_to_string(test_data("triage_example.json")).unwrap()).unwrap();
    let run = AgentRun::from_json(&std::fs::read_to_string(test_data(run_file)).unwrap()).unwrap();
    to_case(&example, &run)
}

/// The scores of a successful call; fails the test with the failure otherwise.
#[track_caller]
pub fn scores(graded: &Graded) -> &[Score] {
    match &graded.outcome {
        Outcome::Scores(scores) => scores,
        Outcome::Failure(failure) => panic!("expected scores, got {failure}"),
    }
}

/// The value of one score key.
#[track_caller]
pub fn score(graded: &Graded, key: &str) -> f64 {
    scores(graded).iter().find(|score| score.key == key).unwrap_or_else(|| panic!("no {key} in {graded:?}")).value
}

/// Runs the real `assay` binary with the shared compile cache.
pub fn assay(arguments: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_assay-under-test"))
        .args(arguments)
        .env("ASSAY_CACHE_DIR", compile_cache_directory())
        .output()
        .expect("the assay binary runs")
}
