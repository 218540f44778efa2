//! Hostile graders are contained, classified, and leave the host grading normally.

use crate::support::{case, load_file, runtime_with, small_runtime};
use assay::runtime::{FIXED_WALL_CLOCK_SECONDS, FailureKind, Graded, GraderCall, Limits, Outcome};
use assay_tests::test_graders::HOSTILE;
use serde_json::json;
use std::sync::Arc;

fn simple_case() -> assay::runtime::Case {
    case(
        json!({"id": "e1", "inputs": {"messages": [{"role": "user", "content": "hello"}]}}),
        json!({"outputs": {"messages": [{"role": "assistant", "content": "hi"}]}}),
    )
}

fn attack(runtime: &assay::runtime::Runtime, grader: &assay::runtime::LoadedGrader, name: &str) -> Graded {
    runtime.grade(grader, &simple_case(), &json!({"attack": name}).to_string())
}

#[track_caller]
fn assert_failure(graded: &Graded, kind: FailureKind, message_part: &str) {
    match &graded.outcome {
        Outcome::Failure(failure) => {
            assert_eq!(failure.kind, kind, "{failure}");
            assert!(failure.message.contains(message_part), "{:?} lacks {message_part:?}", failure.message);
        }
        Outcome::Scores(scores) => panic!("expected {kind:?}, got scores {scores:?}"),
    }
}

#[track_caller]
fn comment(graded: &Graded) -> String {
    match &graded.outcome {
        Outcome::Scores(scores) => scores[0].comment.clone().unwrap_or_default(),
        Outcome::Failure(failure) => panic!("expected scores, got {failure}"),
    }
}

#[track_caller]
fn value(graded: &Graded) -> f64 {
    match &graded.outcome {
        Outcome::Scores(scores) => scores[0].value,
        Outcome::Failure(failure) => panic!("expected scores, got {failure}"),
    }
}

#[test]
fn every_crash_is_contained_and_classified() {
    let runtime = small_runtime();
    let grader = load_file(&runtime, HOSTILE);
    let expectations: &[(&str, FailureKind, &str)] = &[
        ("infinite_loop", FailureKind::OutOfFuel, "fuel"),
        ("allocate", FailureKind::MemoryLimit, "memory"),
        ("panic", FailureKind::Trap, "grader panicked on purpose"),
        ("many_scores", FailureKind::InvalidOutput, "10000 scores"),
        ("huge_comment", FailureKind::InvalidOutput, "over the limit"),
        ("undeclared_key", FailureKind::InvalidOutput, "undeclared score key \"not_declared\""),
        ("out_of_range", FailureKind::InvalidOutput, "outside [0, 1]"),
        ("nan", FailureKind::InvalidOutput, "outside [0, 1]"),
        ("grader_error", FailureKind::GraderError, "refused on purpose"),
        ("no_such_attack", FailureKind::GraderError, "invalid config: unknown attack"),
    ];
    for (name, kind, message_part) in expectations {
        let graded = attack(&runtime, &grader, name);
        assert_failure(&graded, *kind, message_part);
        // The host grades normally right after each attack.
        assert_eq!(value(&attack(&runtime, &grader, "none")), 1.0, "after {name}");
    }
}

#[test]
fn deep_recursion_is_a_trap() {
    let runtime = small_runtime();
    let grader = load_file(&runtime, HOSTILE);
    match attack(&runtime, &grader, "recurse").outcome {
        Outcome::Failure(failure) => {
            assert_eq!(failure.kind, FailureKind::Trap, "{failure}");
            assert!(
                failure.message.contains("stack overflow") || failure.message.contains("out of bounds"),
                "{}",
                failure.message
            );
        }
        Outcome::Scores(scores) => panic!("recursion returned {scores:?}"),
    }
}

#[test]
fn wall_clock_deadline_stops_a_grader_with_unlimited_fuel() {
    let runtime = runtime_with(Limits { grade_fuel_max: u64::MAX / 2, grade_deadline_ms: 100, ..Limits::default() });
    let grader = load_file(&runtime, HOSTILE);
    assert_failure(&attack(&runtime, &grader, "infinite_loop"), FailureKind::Timeout, "deadline");
    assert_eq!(value(&attack(&runtime, &grader, "none")), 1.0);
}

#[test]
fn no_filesystem_environment_stdin_or_network() {
    let runtime = small_runtime();
    let grader = load_file(&runtime, HOSTILE);
    for name in ["read_file", "list_directory", "read_env", "stdin"] {
        let graded = attack(&runtime, &grader, name);
        assert_eq!(value(&graded), 0.0, "{name} saw something: {}", comment(&graded));
    }
    assert!(comment(&attack(&runtime, &grader, "read_env")).contains("vars=[] args=[]"));

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let graded = runtime.grade(&grader, &simple_case(), &json!({"attack": "socket", "port": port}).to_string());
    assert_eq!(value(&graded), 0.0, "connected: {}", comment(&graded));
    assert!(comment(&graded).starts_with("denied"), "{}", comment(&graded));
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(error) if error.kind() == std::io::ErrorKind::WouldBlock),
        "the grader reached the listener: {accepted:?}"
    );
}

#[test]
fn clocks_and_randomness_are_fixed() {
    let runtime = small_runtime();
    let grader = load_file(&runtime, HOSTILE);
    let clock = comment(&attack(&runtime, &grader, "clock"));
    assert_eq!(clock, format!("wall={FIXED_WALL_CLOCK_SECONDS} elapsed_ns=0"));
    let first = comment(&attack(&runtime, &grader, "random"));
    let second = comment(&attack(&runtime, &grader, "random"));
    assert!(first.starts_with("hash="), "{first}");
    assert_eq!(first, second, "randomness differs between calls");
}

#[test]
fn every_call_gets_a_fresh_instance() {
    let runtime = small_runtime();
    let grader = load_file(&runtime, HOSTILE);
    for _ in 0..3 {
        assert_eq!(comment(&attack(&runtime, &grader, "counter")), "calls=1");
    }
}

#[test]
fn output_is_captured_into_a_bounded_log() {
    let runtime = small_runtime();
    let grader = load_file(&runtime, HOSTILE);
    let graded = attack(&runtime, &grader, "print");
    assert_eq!(value(&graded), 1.0, "printing must not fail the grader");
    assert!(graded.log.starts_with("line 0 of chatter"), "{}", &graded.log[..80.min(graded.log.len())]);
    assert!(graded.log.contains("more bytes dropped"), "the log was not truncated");
    assert!(graded.log.len() < 4096 + 64, "log of {} bytes", graded.log.len());
}

#[test]
fn oversized_input_is_refused_before_the_call() {
    let runtime = runtime_with(Limits { input_bytes_max: 10_000, ..Limits::default() });
    let grader = load_file(&runtime, HOSTILE);
    let big = crate::support::case(
        json!({"inputs": {"messages": [{"role": "user", "content": "x".repeat(20_000)}]}}),
        json!({"outputs": {"messages": []}}),
    );
    let graded = runtime.grade(&grader, &big, r#"{"attack": "none"}"#);
    assert_failure(&graded, FailureKind::InputTooLarge, "over the limit of 10000 bytes");
    assert_eq!(graded.fuel_used, 0);
}

#[test]
fn grading_is_deterministic_down_to_the_fuel() {
    let runtime = small_runtime();
    let grader = load_file(&runtime, HOSTILE);
    let first = attack(&runtime, &grader, "clock");
    let second = attack(&runtime, &grader, "clock");
    assert_eq!(first, second);
    assert!(first.fuel_used > 100_000, "fuel_used {}", first.fuel_used);
}

#[test]
fn a_batch_mixing_hostile_and_normal_calls_keeps_every_result_in_place() {
    let runtime = small_runtime();
    let hostile = Arc::new(load_file(&runtime, HOSTILE));
    let must_not_say = Arc::new(crate::support::load_reference(&runtime, "must_not_say"));
    let calls = vec![
        GraderCall { grader: hostile.clone(), config: r#"{"attack": "panic"}"#.into() },
        GraderCall { grader: must_not_say, config: "{}".into() },
        GraderCall { grader: hostile, config: r#"{"attack": "none"}"#.into() },
    ];
    let cases: Vec<_> = (0..40)
        .map(|index| {
            let said = if index % 3 == 0 { "please call 911" } else { "help is on the way" };
            case(
                json!({"id": format!("e{index}"), "inputs": {"messages": [{"role": "user", "content": "help"}]},
                       "outputs": {"must_not_say": ["call 911"]}}),
                json!({"outputs": {"messages": [{"role": "assistant", "content": said}]}}),
            )
        })
        .collect();
    let rows = runtime.grade_batch(&calls, &cases);
    assert_eq!(rows.len(), 40);
    for (index, row) in rows.iter().enumerate() {
        assert_failure(&row[0], FailureKind::Trap, "panicked");
        let expected = if index % 3 == 0 { 0.0 } else { 1.0 };
        assert_eq!(crate::support::score(&row[1], "policy_violations"), expected, "case {index}");
        assert_eq!(comment(&row[2]), format!("graded e{index}"));
    }
}
