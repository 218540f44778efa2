//! `assay eval` offline, as a CI job runs it: the real binary, the real
//! reference graders, a golden file and an outputs file from `test_data/eval/`.
//!
//! The fixture: 12 examples (4 each of p0, p1, p2). Against them the outputs
//! say a forbidden phrase in t03 (p0), t09 and t11 (p2); miss the required
//! tool in t06 (p1); call a tool twice in t07 (fails a strict trajectory
//! only); have no run for t12 (graded as an agent error); and answer an
//! unknown example t99. So: policy_violations 9/12, required_tools_called
//! 10/12, trajectory_match 10/12 (9/12 strict), forbidden_tools_avoided 12/12.

use crate::support::{assay, test_data};
use std::path::Path;
use std::process::Output;

fn fixture(name: &str) -> String {
    test_data(&format!("eval/{name}")).display().to_string()
}

/// `assay eval` on the fixture files with more arguments.
fn eval(more: &[&str]) -> Output {
    let (golden, runs) = (fixture("golden.jsonl"), fixture("runs.jsonl"));
    let mut arguments = vec!["eval", "--dataset-file", &golden, "--outputs", &runs];
    arguments.extend_from_slice(more);
    assay(&arguments)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {}", stdout(output)))
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

/// The JUnit report, checked well formed; returns (test cases, failures).
fn junit_counts(path: &Path) -> (usize, usize) {
    let xml = std::fs::read_to_string(path).expect("the JUnit report was written");
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites "), "{xml}");
    let mut open: Vec<String> = Vec::new();
    for piece in xml.split('<').skip(1) {
        let tag = &piece[..piece.find('>').expect("every tag closes")];
        assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in <{tag}>");
        if tag.starts_with('?') {
            continue;
        }
        let name: String = tag.chars().take_while(|character| !" />".contains(*character)).collect();
        if let Some(closing) = tag.strip_prefix('/') {
            assert_eq!(open.pop().as_deref(), Some(closing), "mismatched </{closing}>");
        } else if !tag.ends_with('/') {
            open.push(name);
        }
    }
    assert!(open.is_empty(), "unclosed elements {open:?}");
    for (index, _) in xml.match_indices('&') {
        let rest = &xml[index..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#"].iter().any(|entity| rest.starts_with(entity)),
            "a bare & in the XML"
        );
    }
    let testcases = xml.matches("<testcase ").count();
    let failures = xml.matches("<failure ").count();
    let totals = format!("<testsuites name=\"assay eval\" tests=\"{testcases}\" failures=\"{failures}\"");
    assert!(xml.contains(&totals), "the totals disagree with the cases: {}", xml.lines().nth(1).unwrap_or(""));
    (testcases, failures)
}

#[test]
fn every_gate_holding_exits_zero_and_warns_about_unmatched_runs() {
    let output = eval(&[
        "--gate",
        "forbidden_tools_avoided>=1.0",
        "--gate",
        "required_tools_called>=0.8",
        "--gate",
        "severity=p1:policy_violations==1.0",
        "--gate",
        "severity=p0: must_not_say >= 0.75",
    ]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains("all 4 gates hold"), "{out}");
    assert!(
        out.contains("ok    severity=p1:policy_violations==1.0  (policy_violations = 1.000, margin +0.0000)"),
        "{out}"
    );
    assert!(out.contains("graded 12 examples with must_not_say 0.1.0, must_call 0.1.0 (1 agent errors)"), "{out}");
    assert!(out.contains("policy_violations         0.750      75.0%     12       0     0.781"), "{out}");
    assert!(out.contains("p0 (4 examples): policy_violations 0.750"), "{out}");
    assert!(err.contains("runs.jsonl:12: a run for example \"t99\", which is not in"), "{err}");
    assert!(err.contains("no run for 1 example(s) (\"t12\")"), "{err}");
}

#[test]
fn a_failing_gate_exits_one_with_junit_and_markdown_reports() {
    let directory = tempfile::tempdir().unwrap();
    let (junit, summary) = (directory.path().join("report.xml"), directory.path().join("report.md"));
    let output = eval(&[
        "--gate",
        "required_tools_called>=0.95",
        "--gate",
        "policy_violations>=0.99",
        "--gate",
        "severity=p0:policy_violations==1.0",
        "--gate",
        "forbidden_tools_avoided>=1.0",
        "--junit",
        &path_text(&junit),
        "--summary",
        &path_text(&summary),
    ]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(1), "{out}\n{err}");
    assert!(
        out.contains("FAIL  policy_violations>=0.99  (policy_violations = 0.7500, needs >= 0.99: short by 0.2400"),
        "{out}"
    );
    assert!(out.contains("FAIL  severity=p0:policy_violations==1.0  (policy_violations = 0.7500, needs == 1: short by 0.2500 (4 scored"), "{out}");
    assert!(out.contains("t03 (0.000): said forbidden phrase(s): \"I'm not a doctor\""), "{out}");
    assert!(
        out.contains("t12 (0.000): did not call 1 of 1 required tools: lookup_clinic_hours (agent error: no output for this example)"),
        "{out}"
    );
    assert!(out.contains("ok    forbidden_tools_avoided>=1.0"), "{out}");
    assert!(out.contains("3 of 4 gates failed"), "{out}");

    // 12 examples × (1 + 3 keys) + 4 gates; failures: 3 phrases, 2 missing
    // tools, 2 trajectories, 3 gates.
    assert_eq!(junit_counts(&junit), (52, 10));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<testcase classname=\"must_not_say\" name=\"t03: policy_violations\">"), "{xml}");
    assert!(xml.contains("<testcase classname=\"must_call\" name=\"t01: trajectory_match\"/>"), "{xml}");
    assert!(xml.contains("<testcase classname=\"gate\" name=\"severity=p0:policy_violations==1.0\">"), "{xml}");
    assert!(xml.contains("said forbidden phrase(s): &quot;I&apos;m not a doctor&quot;"), "{xml}");

    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert!(markdown.starts_with("## ❌ Assay eval: 3 of 4 gates failed\n"), "{markdown}");
    assert!(markdown.contains("| ❌ | `policy_violations>=0.99` | 0.750 | >= 0.99 | -0.2400 |"), "{markdown}");
    assert!(markdown.contains("| ✅ | `forbidden_tools_avoided>=1.0` | 1.000 | >= 1 | +0.0000 |"), "{markdown}");
    assert!(markdown.contains("| `required_tools_called` | must\\_call | 0.833 | 83.3% | 12 | 0 |"), "{markdown}");
    assert!(markdown.contains("| p2 | 4 | 0.500 | 0.750 | 1.000 | 0.750 |"), "{markdown}");
    assert!(markdown.contains("- `t03` (0.000): said forbidden phrase(s): \"I'm not a doctor\""), "{markdown}");
}

#[test]
fn chosen_graders_and_their_config_are_what_runs() {
    let directory = tempfile::tempdir().unwrap();
    let junit = directory.path().join("report.xml");
    let output = eval(&[
        "--grader",
        "must_call",
        "--grader-config",
        r#"must_call={"trajectory": "strict"}"#,
        "--junit",
        &path_text(&junit),
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(0), "no gates, no verdict: {}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["graders"].as_array().unwrap().len(), 1);
    assert_eq!(report["graders"][0]["name"], "must_call");
    assert_eq!(report["graders"][0]["config"]["trajectory"], "strict");
    let keys: Vec<&str> =
        report["summary"]["keys"].as_array().unwrap().iter().map(|key| key["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["required_tools_called", "forbidden_tools_avoided", "trajectory_match"]);
    // Strict: t07's repeated call now fails the trajectory, beside t06 and t12.
    assert_eq!(report["summary"]["keys"][2]["mean"], 0.75);
    let t07 = &report["results"][6];
    assert_eq!(t07["example_id"], "t07");
    assert_eq!(t07["grades"][0]["scores"][2]["key"], "trajectory_match");
    assert_eq!(t07["grades"][0]["scores"][2]["value"], 0.0);
    // 12 examples × 3 keys; failures: 2 missing tools, 3 trajectories.
    assert_eq!(junit_counts(&junit), (36, 5));
}

#[test]
fn a_failing_grader_fails_its_cases_and_counts_as_zero_in_gates() {
    let directory = tempfile::tempdir().unwrap();
    let junit = directory.path().join("report.xml");
    let output = eval(&[
        "--grader-config",
        r#"must_call={"trajectory": "sideways"}"#,
        "--gate",
        "required_tools_called>=0.5",
        "--gate",
        "policy_violations>=0.7",
        "--junit",
        &path_text(&junit),
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("grader must_call failed on 12 example(s) (grader_error)"), "{}", stderr(&output));
    let report = json(&output);
    let gate = &report["gates"][0];
    assert_eq!((gate["holds"].as_bool(), gate["actual"].as_f64()), (Some(false), Some(0.0)));
    assert_eq!((gate["scored"].as_u64(), gate["errors"].as_u64()), (Some(0), Some(12)));
    assert!(gate["worst"][0]["comment"].as_str().unwrap().starts_with("grader_error: invalid config"), "{gate}");
    assert_eq!(report["gates"][1]["holds"], true, "the other grader is unaffected");
    let required = &report["summary"]["keys"][1];
    assert_eq!((required["errors"].as_u64(), required["pass_rate"].as_f64()), (Some(12), Some(0.0)));
    assert!(required["mean"].is_null(), "no score, no mean: {required}");
    // 12 × 4 keys + 2 gates; failures: 3 phrases, 36 must_call errors, 1 gate.
    assert_eq!(junit_counts(&junit), (50, 40));
    assert!(std::fs::read_to_string(&junit).unwrap().contains("<failure type=\"grader_error\""));
}

#[test]
fn bad_input_exits_two_naming_file_line_and_field() {
    let directory = tempfile::tempdir().unwrap();
    let golden = std::fs::read_to_string(test_data("eval/golden.jsonl")).unwrap();
    let write = |name: &str, text: String| {
        let path = directory.path().join(name);
        std::fs::write(&path, text).unwrap();
        path_text(&path)
    };
    let mut lines: Vec<String> = golden.lines().map(str::to_owned).collect();
    lines[2] = lines[2].replace("\"severity\": \"p0\"", "\"severity\": \"p7\"");
    let bad_golden = write("bad_golden.jsonl", lines.join("\n"));
    let bad_runs = write(
        "bad_runs.jsonl",
        "{\"example_id\": \"t01\"}\n{\"example_id\": \"t02\", \"latency_ms\": \"slow\"}\n{\"example_id\": \"t01\"}\n"
            .into(),
    );
    let (golden, runs) = (fixture("golden.jsonl"), fixture("runs.jsonl"));
    let junit = directory.path().join("never.xml");
    let junit_text = path_text(&junit);
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--dataset-file", &bad_golden, "--outputs", &runs],
            vec!["bad_golden.jsonl:3: metadata.severity: unknown severity"],
        ),
        (
            vec!["--dataset-file", &golden, "--outputs", &bad_runs],
            vec![
                "bad_runs.jsonl:2: latency_ms: invalid type",
                "bad_runs.jsonl:3: example_id: a second run for example \"t01\"",
            ],
        ),
        (
            vec!["--dataset-file", &golden, "--outputs", &runs, "--gate", "toxicity>=0.5"],
            vec!["no grader produces the score key \"toxicity\""],
        ),
        (
            vec!["--dataset-file", &golden, "--outputs", &runs, "--gate", "policy_violations=>0.9"],
            vec!["column 18", "write `>=`"],
        ),
        (
            vec!["--dataset-file", &golden, "--outputs", &runs, "--gate", "policy_violations>=95"],
            vec!["outside [0, 1]"],
        ),
        (
            vec!["--dataset-file", &golden, "--outputs", &runs, "--gate", "severity=P0:policy_violations==1"],
            vec!["values seen: p0, p1, p2"],
        ),
        (vec!["--dataset-file", &golden, "--outputs", &runs, "--grader", "no_such_grader"], vec!["no grader called"]),
        (
            vec![
                "--dataset-file",
                &golden,
                "--outputs",
                &runs,
                "--grader",
                "must_not_say",
                "--grader-config",
                "must_call={}",
            ],
            vec!["--grader-config names \"must_call\", which is not one of the graders"],
        ),
        (
            vec!["--dataset-file", &golden, "--outputs", &runs, "--grader", "must_call", "--grader", "must_call"],
            vec!["both produce the score key"],
        ),
        (vec!["--dataset-file", &golden, "--outputs", &runs, "--severity-weight", "p0"], vec!["SEVERITY=WEIGHT"]),
        (
            vec!["--dataset-file", "/nonexistent/golden.jsonl", "--outputs", &runs],
            vec!["could not read /nonexistent/golden.jsonl"],
        ),
        (vec!["--outputs", &runs], vec!["--dataset-file"]),
    ];
    for (arguments, message_parts) in cases {
        let mut full = vec!["eval"];
        full.extend_from_slice(&arguments);
        full.extend_from_slice(&["--junit", &junit_text]);
        let output = assay(&full);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{arguments:?}: {err}");
        for part in message_parts {
            assert!(err.contains(part), "{arguments:?}: expected {part:?} in {err}");
        }
        assert!(output.stdout.is_empty(), "{arguments:?} printed {}", stdout(&output));
        assert!(!junit.exists(), "{arguments:?} wrote a report");
    }
}

#[test]
fn the_same_inputs_give_byte_identical_json_and_junit() {
    let directory = tempfile::tempdir().unwrap();
    let runs: Vec<(Vec<u8>, String)> = (0..2)
        .map(|round| {
            let junit = directory.path().join(format!("report{round}.xml"));
            let output = eval(&["--gate", "policy_violations>=0.99", "--junit", &path_text(&junit), "--json"]);
            assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
            (output.stdout, std::fs::read_to_string(&junit).unwrap())
        })
        .collect();
    assert!(runs[0].0 == runs[1].0, "the JSON differs between two runs");
    assert_eq!(runs[0].1, runs[1].1, "the JUnit report differs between two runs");

    let report: serde_json::Value = serde_json::from_slice(&runs[0].0).unwrap();
    assert_eq!(report["passed"], false);
    assert_eq!(report["results"].as_array().unwrap().len(), 12);
    assert_eq!(report["results"][11]["example_id"], "t12");
    assert_eq!(report["results"][11]["agent_error"], "no output for this example");
    assert_eq!(report["missing_runs"], serde_json::json!(["t12"]));
    assert_eq!(report["ignored_runs"], serde_json::json!([{"line": 12, "example_id": "t99"}]));
    assert!(report["dataset_file"]["sha256"].as_str().unwrap().starts_with("sha256:"));
    assert!(report["graders"][0]["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(
        report["results"][0]["grades"][0]["fuel_used"].as_u64().unwrap() > 0,
        "fuel is part of the reproduced result"
    );
}
