//! The reference graders, run as real components through the runtime.

use crate::support::{case, load_reference, score, small_runtime, triage_case};
use assay::runtime::Outcome;
use serde_json::json;

#[test]
fn must_not_say_on_the_triage_example() {
    let runtime = small_runtime();
    let grader = load_reference(&runtime, "must_not_say");
    assert_eq!(score(&runtime.grade(&grader, &triage_case("triage_run_clean.json"), "{}"), "policy_violations"), 1.0);
    let graded = runtime.grade(&grader, &triage_case("triage_run_violation.json"), "{}");
    assert_eq!(score(&graded, "policy_violations"), 0.0);
    let Outcome::Scores(scores) = &graded.outcome else { unreachable!() };
    assert!(scores[0].comment.as_deref().unwrap().contains("I'm not a doctor"));
}

#[test]
fn must_call_on_the_triage_example() {
    let runtime = small_runtime();
    let grader = load_reference(&runtime, "must_call");
    let clean = runtime.grade(&grader, &triage_case("triage_run_clean.json"), "{}");
    for key in ["required_tools_called", "forbidden_tools_avoided", "trajectory_match"] {
        assert_eq!(score(&clean, key), 1.0, "{key}: {clean:?}");
    }
}

/// Greedy first-fit would give the first actual call to the unconstrained
/// expected call and then fail the second; optimal matching passes.
#[test]
fn must_call_matches_optimally_not_greedily() {
    let runtime = small_runtime();
    let grader = load_reference(&runtime, "must_call");
    let example = json!({"id": "t1",
        "inputs": {"messages": [{"role": "user", "content": "page twice"}], "tools": ["page_on_call"]},
        "outputs": {"reference": [{"name": "page_on_call", "args": {}},
                                  {"name": "page_on_call", "args": {"clinic_id": "c1"}}],
                    "must_call": ["page_on_call"]}});
    let run = |second: &str| {
        json!({"outputs": {"messages": [], "tool_calls": [
            {"name": "page_on_call", "args": {"clinic_id": "c1"}},
            {"name": "page_on_call", "args": {"clinic_id": second}}]}})
    };
    let config = r#"{"trajectory": "unordered", "arguments": "superset"}"#;
    let graded = runtime.grade(&grader, &case(example.clone(), run("c2")), config);
    assert_eq!(score(&graded, "trajectory_match"), 1.0, "{graded:?}");

    // Strict order: the unconstrained call must come first, and it does.
    let strict = runtime.grade(
        &grader,
        &case(example.clone(), run("c2")),
        r#"{"trajectory": "strict", "arguments": "superset"}"#,
    );
    assert_eq!(score(&strict, "trajectory_match"), 0.0, "{strict:?}");
}

#[test]
fn must_call_reports_forbidden_and_missing_tools() {
    let runtime = small_runtime();
    let grader = load_reference(&runtime, "must_call");
    let example = json!({"id": "t2",
        "inputs": {"messages": [{"role": "user", "content": "fever"}],
                   "tools": ["lookup_clinic_hours", "page_on_call", "schedule_callback"]},
        "outputs": {"must_call": ["page_on_call", "lookup_clinic_hours"], "must_not_call": ["schedule_callback"]}});
    let run = json!({"outputs": {"messages": [], "tool_calls": [{"name": "schedule_callback", "args": {}},
                                                                {"name": "lookup_clinic_hours", "args": {}}]}});
    let graded = runtime.grade(&grader, &case(example, run), "{}");
    assert_eq!(score(&graded, "required_tools_called"), 0.5);
    assert_eq!(score(&graded, "forbidden_tools_avoided"), 0.0);
    let Outcome::Scores(scores) = &graded.outcome else { unreachable!() };
    let comments: String = scores.iter().filter_map(|score| score.comment.clone()).collect::<Vec<_>>().join(" | ");
    assert!(comments.contains("page_on_call"), "{comments}");
    assert!(comments.contains("schedule_callback"), "{comments}");
}

#[test]
fn reference_match_scores_exact_and_f1() {
    let runtime = small_runtime();
    let grader = load_reference(&runtime, "reference_match");
    let clean = runtime.grade(&grader, &triage_case("triage_run_clean.json"), "{}");
    assert_eq!(score(&clean, "exact_match"), 1.0);
    assert_eq!(score(&clean, "token_f1"), 1.0);
    let partial = runtime.grade(&grader, &triage_case("triage_run_violation.json"), "{}");
    assert_eq!(score(&partial, "exact_match"), 0.0);
    let f1 = score(&partial, "token_f1");
    assert!(f1 > 0.0 && f1 < 1.0, "{f1}");
}

#[test]
fn reference_match_without_a_reference_is_a_grader_error() {
    let runtime = small_runtime();
    let grader = load_reference(&runtime, "reference_match");
    let graded = runtime.grade(
        &grader,
        &case(
            json!({"inputs": {"messages": [{"role": "user", "content": "hi"}]}}),
            json!({"outputs": {"messages": [{"role": "assistant", "content": "hello"}]}}),
        ),
        "{}",
    );
    match graded.outcome {
        Outcome::Failure(failure) => {
            assert_eq!(failure.kind, assay::runtime::FailureKind::GraderError);
            assert!(failure.message.contains("reference"), "{}", failure.message);
        }
        Outcome::Scores(scores) => panic!("{scores:?}"),
    }
}
