//! The real `assay` binary: output shapes and exit codes.

use crate::support::{assay, test_data};
use assay_tests::test_graders::HOSTILE;
use std::process::{Command, Output};

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {}", String::from_utf8_lossy(&output.stdout)))
}

fn path(name: &str) -> String {
    test_data(name).display().to_string()
}

#[test]
fn graders_lists_the_reference_graders() {
    let output = assay(&["graders", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let listed = json(&output);
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|grader| grader["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["must_not_say", "must_call", "reference_match", "llm_judge"]);
    assert!(listed[0]["digest"].as_str().unwrap().starts_with("sha256:"));

    let table = assay(&["graders"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("required_tools_called, forbidden_tools_avoided, trajectory_match"), "{text}");
}

#[test]
fn grade_prints_scores_and_exits_zero() {
    let example = path("triage_example.json");
    for (run, expected) in [("triage_run_clean.json", 1.0), ("triage_run_violation.json", 0.0)] {
        let output = assay(&["grade", "--grader", "must_not_say", "--example", &example, "--run", &path(run)]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let report = json(&output);
        assert_eq!(report["result"]["scores"][0]["key"], "policy_violations");
        assert_eq!(report["result"]["scores"][0]["value"], expected, "{run}");
        assert_eq!(report["grader"]["world"], "assay:grader/grader@0.1.0");
    }
    let output = assay(&[
        "grade",
        "--grader",
        "must_not_say",
        "--example",
        &example,
        "--run",
        &path("triage_run_clean.json"),
        "--config",
        r#"{"phrases": ["physician"]}"#,
    ]);
    let report = json(&output);
    assert_eq!(report["result"]["scores"][0]["value"], 0.0);
    assert!(report["result"]["scores"][0]["comment"].as_str().unwrap().contains("physician"));
}

#[test]
fn a_grader_failure_exits_one_with_its_classification() {
    let output = assay(&[
        "grade",
        "--grader",
        HOSTILE,
        "--example",
        &path("triage_example.json"),
        "--run",
        &path("triage_run_clean.json"),
        "--config",
        r#"{"attack": "infinite_loop"}"#,
        "--fuel-max",
        "1000000",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let report = json(&output);
    assert_eq!(report["result"]["failure"]["kind"], "out_of_fuel");
}

#[test]
fn bad_input_exits_two_with_a_clear_message() {
    let directory = tempfile::tempdir().unwrap();
    let bad_example = directory.path().join("bad.json");
    std::fs::write(
        &bad_example,
        r#"{"inputs": {"messages": [{"role": "user", "content": "x"}]}, "metadata": {"severity": "p7"}}"#,
    )
    .unwrap();
    let not_json = directory.path().join("not.json");
    std::fs::write(&not_json, "{\"inputs\": {\"messages\": [}").unwrap();
    let bad_example = bad_example.display().to_string();
    let not_json = not_json.display().to_string();
    let example = path("triage_example.json");
    let run = path("triage_run_clean.json");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["grade", "--grader", "must_not_say", "--example", &bad_example, "--run", &run], "metadata.severity"),
        (vec!["grade", "--grader", "must_not_say", "--example", &not_json, "--run", &run], "line 1"),
        (vec!["grade", "--grader", "no_such_grader", "--example", &example, "--run", &run], "no grader called"),
        (
            vec!["grade", "--grader", "must_not_say", "--example", &example, "--run", &run, "--config", "[1]"],
            "JSON object",
        ),
        (vec!["grade", "--grader", "must_not_say", "--example", "/nonexistent.json", "--run", &run], "could not read"),
        (vec!["grade", "--grader", &example, "--example", &example, "--run", &run], "not a WebAssembly binary"),
        (vec!["grade", "--example", &example], "--grader"),
    ];
    for (arguments, message_part) in cases {
        let output = assay(&arguments);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{arguments:?}: {stderr}");
        assert!(stderr.contains(message_part), "{arguments:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{arguments:?} printed {}", String::from_utf8_lossy(&output.stdout));
    }
}

#[test]
fn help_is_everywhere() {
    for arguments in [vec!["--help"], vec!["grade", "--help"], vec!["graders", "--help"]] {
        let output = assay(&arguments);
        assert!(output.status.success(), "{arguments:?}");
        assert!(String::from_utf8_lossy(&output.stdout).contains("Usage"), "{arguments:?}");
    }
}

#[test]
fn dataset_commands_talk_to_the_server() {
    let server = crate::server::TestServer::start();
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("golden.jsonl");
    let lines: String =
        (0..3).map(|index| crate::server::example(&format!("e{index}"), "p0", "x").to_string() + "\n").collect();
    std::fs::write(&file, lines).unwrap();
    let file = file.display().to_string();
    let client = |arguments: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_assay-under-test"))
            .args(arguments)
            .env("ASSAY_URL", &server.base)
            .env("ASSAY_TOKEN", &server.admin_token)
            .output()
            .unwrap()
    };
    assert!(client(&["dataset", "create", "golden", "--description", "demo"]).status.success());
    let imported = client(&["dataset", "import", "golden", &file, "--note", "seed"]);
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    assert!(
        String::from_utf8_lossy(&imported.stdout).starts_with("golden@1: 3 examples"),
        "{}",
        String::from_utf8_lossy(&imported.stdout)
    );
    let listed = json(&client(&["dataset", "list", "--json"]));
    assert_eq!(listed["datasets"][0]["example_count"], 3);
    assert!(client(&["dataset", "tag", "golden", "v1.0", "1"]).status.success());
    let bad = directory.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"inputs": {"messages": [{"role": "user", "content": "x"}]}, "metadata": {"severity": "p5"}}"#,
    )
    .unwrap();
    let refused = client(&["example", "add", "golden", &bad.display().to_string()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("metadata.severity"));
    let exported = client(&["dataset", "export", "golden@v1.0"]);
    assert_eq!(String::from_utf8_lossy(&exported.stdout).lines().count(), 3);
    let history = client(&["dataset", "history", "golden"]);
    assert!(String::from_utf8_lossy(&history.stdout).contains("seed"));
    let unreachable = Command::new(env!("CARGO_BIN_EXE_assay-under-test"))
        .args(["dataset", "list", "--server", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("could not reach"));
}
