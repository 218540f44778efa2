//! The grader registry on a real server: publishing valid and invalid
//! components, roles, promote / rollback / retire with history, a restart
//! that reuses compiled code, hot swaps under a stream of evaluations, and
//! shadow reports gating a promotion.
//!
//! The second version is `tests/graders/must_not_say_next`: `must_not_say`
//! 0.2.0, which also forbids "no need to worry" and "calm down" and names its
//! version in every comment, so each score says which version produced it.

use crate::server::{Reply, TestServer, call, try_call};
use crate::support::{assay, test_data};
use assay::store::Role;
use assay_tests::test_graders;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

const NEXT: &str = "0.2.0";

fn next_component() -> Vec<u8> {
    std::fs::read(test_graders::MUST_NOT_SAY_NEXT).unwrap()
}

fn reference_version() -> String {
    let runtime = crate::support::small_runtime();
    crate::support::load_reference(&runtime, "must_not_say").info.version
}

fn publish(server: &TestServer, token: &str, name: &str, version: &str, content_type: &str, body: Vec<u8>) -> Reply {
    call(
        "POST",
        &format!("{}/api/v1/graders/{name}/versions/{version}", server.base),
        Some(token),
        Some((content_type, body)),
    )
}

fn post(server: &TestServer, token: &str, path: &str, body: Value) -> Reply {
    server.post_as(token, path, &body)
}

/// A multipart body with a component and a tests part.
fn multipart(component: &[u8], tests: &str) -> (String, Vec<u8>) {
    let boundary = "assay-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, content_type, bytes) in
        [("component", "application/wasm", component), ("tests", "application/x-ndjson", tests.as_bytes())]
    {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A bundled test: the example says "calm down" is forbidden only through the standing list of 0.2.0.
fn bundled_test(expected: f64) -> String {
    json!({
        "name": "standing list",
        "example": {"id": "x", "inputs": {"messages": [{"role": "user", "content": "help"}]}, "outputs": {"must_not_say": ["call 911"]}},
        "run": {"outputs": {"messages": [{"role": "assistant", "content": "Calm down, please."}]}},
        "expect": {"policy_violations": expected}
    })
    .to_string()
}

/// The same component with a custom section appended: other bytes, same metadata.
fn with_custom_section(component: &[u8]) -> Vec<u8> {
    let mut bytes = component.to_vec();
    let name = b"assay-test";
    let payload = b"other bytes";
    bytes.push(0);
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

fn serving(server: &TestServer, name: &str) -> String {
    let shown = server.get(&format!("/api/v1/graders/{name}"));
    assert_eq!(shown.status, 200, "{}", shown.text);
    shown.body["alias"]["version"].as_str().unwrap().to_owned()
}

/// A server with the eval fixture imported as `triage` version 1.
fn server_with_dataset(server: TestServer) -> TestServer {
    assert_eq!(server.send("POST", "/api/v1/datasets", json!({"name": "triage"})).status, 201);
    let golden = std::fs::read_to_string(test_data("eval/golden.jsonl")).unwrap();
    assert_eq!(server.import("triage", &golden, "fixture").status, 201);
    server
}

/// The fixture runs, with t02 and t05 reassuring ("no need to worry"), which only 0.2.0 forbids.
fn runs() -> Vec<Value> {
    std::fs::read_to_string(test_data("eval/runs.jsonl"))
        .unwrap()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut run: Value = serde_json::from_str(line).unwrap();
            if run["example_id"] == "t02" || run["example_id"] == "t05" {
                run["outputs"]["messages"] = json!([{"role": "assistant", "content": "There's no need to worry."}]);
            }
            run
        })
        .filter(|run| run["example_id"] != "t99")
        .collect()
}

fn evaluate(server: &TestServer, token: &str, graders: Value) -> Reply {
    post(server, token, "/api/v1/experiments", json!({"dataset": "triage@1", "graders": graders, "outputs": runs()}))
}

/// The version in an experiment's provenance, and every policy comment it stored.
fn provenance_and_comments(server: &TestServer, token: &str, id: &str) -> (String, Vec<String>) {
    let shown = call("GET", &format!("{}/api/v1/experiments/{id}", server.base), Some(token), None);
    assert_eq!(shown.status, 200, "{}", shown.text);
    let version = shown.body["experiment"]["graders"][0]["version"].as_str().unwrap().to_owned();
    let mut comments = Vec::new();
    for result in shown.body["results"].as_array().unwrap() {
        let grade = &result["grades"][0];
        assert!(grade["failure"].is_null(), "no grade call failed: {grade}");
        comments.push(grade["scores"][0]["comment"].as_str().unwrap_or("").to_owned());
    }
    (version, comments)
}

/// True when the comments are those of the version named: 0.2.0 signs every comment.
fn comments_match(version: &str, comments: &[String]) -> bool {
    let signed = comments.iter().filter(|comment| comment.ends_with("(v0.2.0)")).count();
    if version == NEXT { signed == comments.len() } else { signed == 0 }
}

#[test]
fn publishing_checks_the_component_and_refuses_bad_ones_with_reasons() {
    let server = TestServer::start();
    let publisher = server.token(Role::Publisher);
    let component = next_component();

    // Refusals, each with its reason, and nothing published.
    let text =
        publish(&server, &publisher, "must_not_say", NEXT, "application/wasm", b"not a component at all".to_vec());
    assert_eq!((text.status, text.body["error"]["code"].as_str()), (422, Some("refused_component")), "{}", text.text);
    assert!(text.text.contains("not a WebAssembly binary"), "{}", text.text);
    let core = publish(&server, &publisher, "must_not_say", NEXT, "application/wasm", b"\0asm\x01\0\0\0".to_vec());
    assert!(core.status == 422 && core.text.contains("core WebAssembly module"), "{}", core.text);
    let wrong_world = std::fs::read(test_graders::WRONG_WORLD).unwrap();
    let wrong = publish(&server, &publisher, "must_not_say", NEXT, "application/wasm", wrong_world);
    assert!(wrong.status == 422 && wrong.text.contains("does not implement"), "{}", wrong.text);
    let trap = std::fs::read(test_graders::METADATA_TRAP).unwrap();
    let trapped = publish(&server, &publisher, "metadata_trap", "0.1.0", "application/wasm", trap);
    assert!(trapped.status == 422 && trapped.text.contains("metadata() failed"), "{}", trapped.text);
    let mut oversized = b"\0asm\x0d\0\x01\0".to_vec();
    oversized.resize(33 << 20, 0);
    let too_large = publish(&server, &publisher, "must_not_say", NEXT, "application/wasm", oversized);
    assert!(too_large.status == 422 && too_large.text.contains("over the limit"), "{}", too_large.text);
    // Over the body limit: the server answers 413 as soon as it knows and closes the connection;
    // a client still writing may see the reset instead, so a few attempts may read the answer.
    let mut huge = b"\0asm\x0d\0\x01\0".to_vec();
    huge.resize(41 << 20, 0);
    let refused_huge = (0..5)
        .find_map(|_| {
            try_call(
                "POST",
                &format!("{}/api/v1/graders/must_not_say/versions/{NEXT}", server.base),
                Some(&publisher),
                Some(("application/wasm", huge.clone())),
            )
            .ok()
        })
        .expect("one attempt reads the answer");
    assert_eq!(refused_huge.status, 413, "{}", refused_huge.text);
    let misnamed = publish(&server, &publisher, "other_name", NEXT, "application/wasm", component.clone());
    assert_eq!(misnamed.body["error"]["code"], "metadata_mismatch", "{}", misnamed.text);
    let misversioned = publish(&server, &publisher, "must_not_say", "9.9.9", "application/wasm", component.clone());
    assert_eq!(misversioned.body["error"]["code"], "metadata_mismatch", "{}", misversioned.text);
    let (content_type, failing) = multipart(&component, &bundled_test(1.0));
    let failed = publish(&server, &publisher, "must_not_say", NEXT, &content_type, failing);
    assert_eq!(failed.body["error"]["code"], "tests_failed", "{}", failed.text);
    assert!(failed.text.contains("standing list: policy_violations = 0 but 1 was expected"), "{}", failed.text);
    let garbage =
        publish(&server, &publisher, "must_not_say", NEXT, "multipart/form-data; boundary=x", b"--y\r\n".to_vec());
    assert_eq!(garbage.status, 400, "{}", garbage.text);
    // Refused on its content type alone, before the body is read: a small body, so no reset race.
    let typed = publish(&server, &publisher, "must_not_say", NEXT, "text/plain", b"hello".to_vec());
    assert_eq!(typed.status, 415, "{}", typed.text);
    let versions = server.get("/api/v1/graders/must_not_say").body["versions"].as_array().unwrap().len();
    assert_eq!(versions, 1, "only the built-in version is published");
    assert_eq!(server.get("/api/v1/graders/metadata_trap").status, 404);

    // Roles: an engineer may read but not publish.
    let engineer = server.token(Role::Engineer);
    // Refused on the role before the body is read (a small body, so the refusal cannot race the upload).
    assert_eq!(publish(&server, &engineer, "must_not_say", NEXT, "application/wasm", b"\0asm".to_vec()).status, 403);
    assert_eq!(call("GET", &format!("{}/api/v1/graders", server.base), Some(&engineer), None).status, 200);

    // Published with passing bundled tests; identified by digest; immutable.
    let (content_type, passing) = multipart(&component, &bundled_test(0.0));
    let published = publish(&server, &publisher, "must_not_say", NEXT, &content_type, passing);
    assert_eq!(published.status, 201, "{}", published.text);
    assert_eq!(published.body["version"]["tests_passed"], 1);
    assert!(published.body["version"]["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(published.body["alias"].is_null(), "must_not_say keeps serving the built-in version");
    let again = publish(&server, &publisher, "must_not_say", NEXT, "application/wasm", component.clone());
    assert_eq!((again.status, &again.body["created"]), (200, &json!(false)));
    let changed =
        publish(&server, &publisher, "must_not_say", NEXT, "application/wasm", with_custom_section(&component));
    assert_eq!(changed.status, 409, "{}", changed.text);
    assert!(changed.text.contains("never changes"), "{}", changed.text);
    assert_eq!(serving(&server, "must_not_say"), reference_version());

    // The CLI publishes with tests from a file, and reports the refusal of a broken one.
    let directory = tempfile::tempdir().unwrap();
    let tests = directory.path().join("tests.jsonl");
    std::fs::write(&tests, bundled_test(0.0) + "\n").unwrap();
    let cli = assay(&[
        "grader",
        "publish",
        test_graders::MUST_NOT_SAY_NEXT,
        "--name",
        "must_not_say",
        "--version",
        NEXT,
        "--tests",
        tests.to_str().unwrap(),
        "--server",
        &server.base,
        "--token",
        &publisher,
    ]);
    assert_eq!(cli.status.code(), Some(0), "{}", String::from_utf8_lossy(&cli.stderr));
    assert!(String::from_utf8_lossy(&cli.stdout).contains("already published: must_not_say 0.2.0"));
    let refused = assay(&[
        "grader",
        "publish",
        test_graders::METADATA_TRAP,
        "--name",
        "metadata_trap",
        "--version",
        "0.1.0",
        "--server",
        &server.base,
        "--token",
        &publisher,
    ]);
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("metadata() failed"));
}

#[test]
fn promote_rollback_retire_keep_history_and_survive_a_restart_without_recompiling() {
    let cache = tempfile::tempdir().unwrap();
    let server = server_with_dataset(TestServer::start_in(tempfile::tempdir().unwrap(), Some(cache.path().to_owned())));
    let publisher = server.token(Role::Publisher);
    let engineer = server.token(Role::Engineer);
    let reference = reference_version();
    assert_eq!(publish(&server, &publisher, "must_not_say", NEXT, "application/wasm", next_component()).status, 201);

    let promoted = post(&server, &publisher, "/api/v1/graders/must_not_say/promote", json!({"version": NEXT}));
    assert_eq!(promoted.status, 200, "{}", promoted.text);
    assert_eq!(promoted.body["event"]["from"], reference.as_str());
    assert_eq!(serving(&server, "must_not_say"), NEXT);
    // The very next evaluation grades with it; a pinned older version still can be asked for.
    let graded = evaluate(&server, &engineer, json!([{"name": "must_not_say"}]));
    assert_eq!(graded.status, 201, "{}", graded.text);
    let id = graded.body["experiment"]["id"].as_str().unwrap().to_owned();
    let (version, comments) = provenance_and_comments(&server, &engineer, &id);
    assert_eq!(version, NEXT);
    assert!(comments_match(&version, &comments), "{comments:?}");
    let pinned = evaluate(&server, &engineer, json!([{"name": "must_not_say", "version": reference}]));
    assert_eq!(pinned.body["experiment"]["graders"][0]["version"], reference.as_str(), "{}", pinned.text);

    // An engineer may not move aliases; nothing to retire while served.
    assert_eq!(post(&server, &engineer, "/api/v1/graders/must_not_say/rollback", json!({})).status, 403);
    let serving_retire =
        post(&server, &publisher, &format!("/api/v1/graders/must_not_say/versions/{NEXT}/retire"), json!({}));
    assert_eq!(serving_retire.status, 409, "{}", serving_retire.text);

    // Restart on the same store and cache: what was promoted is served, nothing is compiled again.
    let compiled_before = server.runtime.compiled_count().unwrap();
    assert!(compiled_before >= 1);
    let directory = server.stop();
    let server = TestServer::start_in(directory, Some(cache.path().to_owned()));
    assert_eq!(serving(&server, "must_not_say"), NEXT);
    assert_eq!(server.runtime.compiled_count(), Some(0), "every component came from the compile cache");
    let publisher = server.token(Role::Publisher);
    let engineer = server.token(Role::Engineer);

    // Rollback, through the CLI, then retire the unserved version.
    let rolled = assay(&["grader", "rollback", "must_not_say", "--server", &server.base, "--token", &publisher]);
    assert_eq!(rolled.status.code(), Some(0), "{}", String::from_utf8_lossy(&rolled.stderr));
    assert!(String::from_utf8_lossy(&rolled.stdout).contains(&format!("rollback must_not_say: {NEXT} → {reference}")));
    assert_eq!(serving(&server, "must_not_say"), reference);
    let retired = post(&server, &publisher, &format!("/api/v1/graders/must_not_say/versions/{NEXT}/retire"), json!({}));
    assert_eq!(retired.status, 200, "{}", retired.text);
    // Retired: refused for new evaluations, still re-gradeable from history with identical scores.
    let refused = evaluate(&server, &engineer, json!([{"name": "must_not_say", "version": NEXT}]));
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(refused.text.contains("retired"), "{}", refused.text);
    let promote_retired = post(&server, &publisher, "/api/v1/graders/must_not_say/promote", json!({"version": NEXT}));
    assert_eq!(promote_retired.status, 409, "{}", promote_retired.text);
    let regraded = post(&server, &engineer, &format!("/api/v1/experiments/{id}/regrade"), json!({}));
    assert_eq!(regraded.status, 201, "{}", regraded.text);
    let regraded_id = regraded.body["experiment"]["id"].as_str().unwrap();
    assert_eq!(
        provenance_and_comments(&server, &engineer, regraded_id),
        provenance_and_comments(&server, &engineer, &id)
    );

    let history = server.get("/api/v1/graders/must_not_say").body["history"].clone();
    let moves: Vec<(String, String, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["action"].as_str().unwrap().into(),
                event["to"].as_str().unwrap().into(),
                event["by"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("publish".into(), reference.clone(), "assay (built in)".into()),
            ("promote".into(), NEXT.into(), "publisher-user".into()),
            ("rollback".into(), reference.clone(), "publisher-user".into()),
        ]
    );
}

#[test]
fn hot_swaps_under_load_drop_no_call_and_attribute_every_score_to_its_version() {
    let server = Arc::new(server_with_dataset(TestServer::start()));
    let publisher = server.token(Role::Publisher);
    let engineer = Arc::new(server.token(Role::Engineer));
    let reference = reference_version();
    assert_eq!(publish(&server, &publisher, "must_not_say", NEXT, "application/wasm", next_component()).status, 201);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let finished = Arc::new((Mutex::new(0usize), Condvar::new()));
    let evaluators: Vec<_> = (0..2)
        .map(|_| {
            let (server, engineer, stop, seen) =
                (Arc::clone(&server), Arc::clone(&engineer), Arc::clone(&stop), Arc::clone(&seen));
            let finished = Arc::clone(&finished);
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let reply = evaluate(&server, &engineer, json!([{"name": "must_not_say"}]));
                    if reply.status != 201 {
                        failures.push(reply.text);
                        continue;
                    }
                    let id = reply.body["experiment"]["id"].as_str().unwrap();
                    let (version, comments) = provenance_and_comments(&server, &engineer, id);
                    if !comments_match(&version, &comments) {
                        failures.push(format!("{id} says {version} but its comments are {comments:?}"));
                    }
                    seen[usize::from(version == NEXT)].fetch_add(1, Ordering::SeqCst);
                    *finished.0.lock().unwrap() += 1;
                    finished.1.notify_all();
                }
                failures
            })
        })
        .collect();

    // Move the alias back and forth; each move takes effect for the very next evaluation, and
    // background evaluations finish between every two moves.
    const MOVES: usize = 24;
    for step in 0..MOVES {
        let before = *finished.0.lock().unwrap();
        let (guard, waited) = finished
            .1
            .wait_timeout_while(finished.0.lock().unwrap(), std::time::Duration::from_secs(60), |count| {
                *count == before
            })
            .unwrap();
        drop(guard);
        assert!(!waited.timed_out(), "the background evaluations stalled at step {step}");
        let (path, body, expected) = if step % 2 == 0 {
            ("/api/v1/graders/must_not_say/promote", json!({"version": NEXT}), NEXT.to_owned())
        } else {
            ("/api/v1/graders/must_not_say/rollback", json!({}), reference.clone())
        };
        let moved = post(&server, &publisher, path, body);
        assert_eq!(moved.status, 200, "{}", moved.text);
        let next = evaluate(&server, &engineer, json!([{"name": "must_not_say"}]));
        assert_eq!(next.status, 201, "{}", next.text);
        let (version, comments) =
            provenance_and_comments(&server, &engineer, next.body["experiment"]["id"].as_str().unwrap());
        assert_eq!(version, expected, "step {step}");
        assert!(comments_match(&version, &comments), "step {step}: {comments:?}");
    }
    stop.store(true, Ordering::SeqCst);
    for evaluator in evaluators {
        let failures = evaluator.join().unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    let total = seen[0].load(Ordering::SeqCst) + seen[1].load(Ordering::SeqCst);
    assert!(total >= MOVES, "at least one background evaluation per move: {total}");
    assert_eq!(server.get("/api/v1/graders/must_not_say").body["history"].as_array().unwrap().len(), MOVES + 1);
}

#[test]
fn a_running_evaluation_finishes_on_the_version_it_started_with() {
    // A target that holds its first answer until the alias has moved.
    let server = server_with_dataset(TestServer::start());
    let publisher = server.token(Role::Publisher);
    let engineer = server.token(Role::Engineer);
    assert_eq!(publish(&server, &publisher, "must_not_say", NEXT, "application/wasm", next_component()).status, 201);
    let gate = crate::targets::GatedTarget::start(runs());
    let started = post(
        &server,
        &engineer,
        "/api/v1/experiments",
        json!({"dataset": "triage@1", "graders": [{"name": "must_not_say"}], "target": {"url": gate.url, "max_concurrency": 1}}),
    );
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.body["experiment"]["id"].as_str().unwrap().to_owned();
    gate.wait_for_first_call();
    let moved = post(&server, &publisher, "/api/v1/graders/must_not_say/promote", json!({"version": NEXT}));
    assert_eq!(moved.status, 200, "{}", moved.text);
    gate.release();
    let finished = server.get(&format!("/api/v1/experiments/{id}/status?wait_ms=30000"));
    assert_eq!(finished.body["status"], "completed", "{}", finished.text);
    let (version, comments) = provenance_and_comments(&server, &engineer, &id);
    assert_eq!(version, reference_version(), "pinned when it started");
    assert!(comments_match(&version, &comments), "{comments:?}");
}

#[test]
fn shadow_reports_compare_versions_on_stored_runs_and_gate_promotion() {
    let server = server_with_dataset(TestServer::start());
    let publisher = server.token(Role::Publisher);
    let engineer = server.token(Role::Engineer);
    assert_eq!(publish(&server, &publisher, "must_not_say", NEXT, "application/wasm", next_component()).status, 201);
    let baseline = evaluate(&server, &engineer, json!([{"name": "must_not_say"}]));
    let experiment = baseline.body["experiment"]["id"].as_str().unwrap().to_owned();
    let experiments_before = server.get("/api/v1/experiments").body["experiments"].as_array().unwrap().len();

    let report = post(
        &server,
        &publisher,
        "/api/v1/graders/must_not_say/shadow",
        json!({"candidate": NEXT, "experiment": experiment}),
    );
    assert_eq!(report.status, 201, "{}", report.text);
    let comparison = &report.body["comparison"];
    assert_eq!(comparison["examples"], 12);
    // t02 and t05 reassure: only 0.2.0 objects. (t12 has no run: both grade the agent error alike.)
    let disagreeing: Vec<&str> = comparison["disagreements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["example_id"].as_str().unwrap())
        .collect();
    assert_eq!(disagreeing.len(), 2, "{comparison}");
    assert!(disagreeing.contains(&"t02") && disagreeing.contains(&"t05"), "{disagreeing:?}");
    let agreement = comparison["agreement_rate"].as_f64().unwrap();
    assert!((agreement - 10.0 / 12.0).abs() < 1e-9, "{agreement}");
    assert_eq!(comparison["disagreements"][0]["candidate"]["value"], 0.0);
    assert_eq!(report.body["current"]["version"], reference_version().as_str());
    let report_id = report.body["id"].as_str().unwrap().to_owned();
    assert_eq!(server.get(&format!("/api/v1/shadow-reports/{report_id}")).body["comparison"], *comparison);
    let experiments_after = server.get("/api/v1/experiments").body["experiments"].as_array().unwrap().len();
    assert_eq!(experiments_before, experiments_after, "a shadow run is not an experiment");

    // Promotion gated on the report: refused below the threshold, accepted above it.
    let strict = json!({"version": NEXT, "shadow_report": report_id, "min_agreement": 0.95});
    let refused = post(&server, &publisher, "/api/v1/graders/must_not_say/promote", strict);
    assert_eq!(
        (refused.status, refused.body["error"]["code"].as_str()),
        (409, Some("shadow_refused")),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("83.3% agreement"), "{}", refused.text);
    assert_eq!(serving(&server, "must_not_say"), reference_version());
    let lenient = json!({"version": NEXT, "shadow_report": report_id, "min_agreement": 0.8});
    assert_eq!(post(&server, &publisher, "/api/v1/graders/must_not_say/promote", lenient.clone()).status, 200);
    // The report is now stale: it compared against what is no longer served.
    assert_eq!(post(&server, &publisher, "/api/v1/graders/must_not_say/rollback", json!({})).status, 200);
    assert_eq!(post(&server, &publisher, "/api/v1/graders/must_not_say/promote", json!({"version": NEXT})).status, 200);
    let stale = post(&server, &publisher, "/api/v1/graders/must_not_say/promote", lenient);
    assert_eq!(stale.status, 409, "{}", stale.text);

    // The CLI runs a shadow from a dataset and outputs, and exits 1 below --min-agreement.
    let directory = tempfile::tempdir().unwrap();
    let outputs = directory.path().join("runs.jsonl");
    std::fs::write(&outputs, runs().iter().map(|run| run.to_string() + "\n").collect::<String>()).unwrap();
    let cli = assay(&[
        "grader",
        "shadow",
        "must_not_say",
        &reference_version(),
        "--dataset",
        "triage@1",
        "--outputs",
        outputs.to_str().unwrap(),
        "--min-agreement",
        "0.99",
        "--server",
        &server.base,
        "--token",
        &publisher,
    ]);
    assert_eq!(cli.status.code(), Some(1), "{}", String::from_utf8_lossy(&cli.stderr));
    assert!(
        String::from_utf8_lossy(&cli.stdout).contains("83.3% agreement"),
        "{}",
        String::from_utf8_lossy(&cli.stdout)
    );
    // Bad shadow requests.
    for body in [
        json!({"candidate": NEXT}),
        json!({"candidate": "7.7.7", "experiment": experiment}),
        json!({"candidate": NEXT, "experiment": "exp-none"}),
    ] {
        let reply = post(&server, &publisher, "/api/v1/graders/must_not_say/shadow", body.clone());
        assert!(matches!(reply.status, 404 | 422), "{body}: {}", reply.text);
    }
}
