//! Evaluations that call a real agent endpoint on loopback: one that is slow,
//! flaky (5xx, timeouts), refuses, answers garbage and is sometimes wrong. Also
//! re-grading without calling the agent, the regression gate against a
//! baseline, the CI reports in server mode, and the demo agent's README tour.
//!
//! The scripted target answers with the runs of `test_data/eval/runs.jsonl`,
//! misbehaving per example:
//! - t01: 503 on the first attempt, then the answer;
//! - t02: 500 on every attempt;
//! - t03: answers after 2 s on the first attempt (past the deadline), then at once;
//! - t04: 400, which is not retried;
//! - t05: 200 with a body that is not an agent run;
//! - t06: a wrong answer: says a forbidden phrase;
//! - t07: waits (up to 5 s) until another call is in flight, to prove concurrency;
//! - t12: has no scripted answer: 404.

use crate::server::TestServer;
use crate::support::{assay, test_data};
use assay::store::Role;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the scripted target saw.
#[derive(Default)]
struct Seen {
    attempts: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    in_flight_max: AtomicUsize,
    arrivals: tokio::sync::Notify,
}

/// An agent endpoint running in this process until dropped.
struct ScriptedTarget {
    url: String,
    seen: Arc<Seen>,
    _server: Loopback,
}

#[derive(Clone)]
struct TargetState {
    runs: Arc<HashMap<String, Value>>,
    seen: Arc<Seen>,
}

impl ScriptedTarget {
    fn start() -> ScriptedTarget {
        let runs: HashMap<String, Value> = std::fs::read_to_string(test_data("eval/runs.jsonl"))
            .unwrap()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .map(|run| (run["example_id"].as_str().unwrap().to_owned(), run))
            .collect();
        let seen = Arc::new(Seen::default());
        let state = TargetState { runs: Arc::new(runs), seen: Arc::clone(&seen) };
        let server =
            Loopback::router(axum::Router::new().route("/agent", axum::routing::post(answer)).with_state(state));
        ScriptedTarget { url: format!("http://{}/agent", server.address), seen, _server: server }
    }

    fn attempts(&self) -> HashMap<String, usize> {
        self.seen.attempts.lock().unwrap().clone()
    }

    fn total_attempts(&self) -> usize {
        self.attempts().values().sum()
    }
}

async fn answer(State(state): State<TargetState>, Json(call): Json<Value>) -> (StatusCode, String) {
    let example_id = call["example_id"].as_str().unwrap_or_default().to_owned();
    assert!(call["inputs"]["messages"].is_array(), "the target receives the example's inputs: {call}");
    let attempt = {
        let mut attempts = state.seen.attempts.lock().unwrap();
        let count = attempts.entry(example_id.clone()).or_default();
        *count += 1;
        *count
    };
    let Some(run) = state.runs.get(&example_id).cloned() else {
        return (StatusCode::NOT_FOUND, format!("no answer scripted for {example_id}"));
    };
    if (example_id.as_str(), attempt) == ("t03", 1) {
        // Past the caller's deadline; not counted in flight, since the caller gives up on it.
        tokio::time::sleep(Duration::from_secs(2)).await;
        return (StatusCode::OK, run.to_string());
    }
    let in_flight = state.seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.seen.in_flight_max.fetch_max(in_flight, Ordering::SeqCst);
    state.seen.arrivals.notify_waiters();
    let reply = match (example_id.as_str(), attempt) {
        ("t01", 1) => (StatusCode::SERVICE_UNAVAILABLE, "warming up".to_owned()),
        ("t02", _) => (StatusCode::INTERNAL_SERVER_ERROR, "model backend down".to_owned()),
        ("t04", _) => (StatusCode::BAD_REQUEST, "unsupported locale".to_owned()),
        ("t05", _) => (StatusCode::OK, "<html>gateway</html>".to_owned()),
        ("t06", _) => {
            let mut wrong = run.clone();
            wrong["outputs"]["messages"] = json!([{"role": "assistant", "content": "Calm down, it is nothing."}]);
            (StatusCode::OK, wrong.to_string())
        }
        ("t07", 1) => {
            // Proceeds once another call arrives: with concurrency that is at once.
            let others = async {
                loop {
                    let arrival = state.seen.arrivals.notified();
                    tokio::pin!(arrival);
                    arrival.as_mut().enable();
                    if state.seen.in_flight.load(Ordering::SeqCst) >= 2 {
                        break;
                    }
                    arrival.await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), others).await;
            (StatusCode::OK, run.to_string())
        }
        _ => (StatusCode::OK, run.to_string()),
    };
    state.seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    reply
}

/// A server with the eval fixture imported as `triage` version 1.
fn server_with_dataset() -> TestServer {
    let server = TestServer::start();
    assert_eq!(server.send("POST", "/api/v1/datasets", json!({"name": "triage"})).status, 201);
    let golden = std::fs::read_to_string(test_data("eval/golden.jsonl")).unwrap();
    assert_eq!(server.import("triage", &golden, "fixture").status, 201);
    server
}

fn post(server: &TestServer, token: &str, path: &str, body: &Value) -> crate::server::Reply {
    server.post_as(token, path, body)
}

fn target_body(target: &ScriptedTarget) -> Value {
    json!({
        "dataset": "triage@1",
        "name": "nightly",
        "graders": [{"name": "must_not_say"}, {"name": "must_call", "config": {"trajectory": "unordered"}}],
        "target": {"url": target.url, "max_concurrency": 4, "timeout_ms": 500, "retries": 2, "backoff_ms": 10},
        "gates": ["policy_violations>=0.5"],
    })
}

/// Waits for a running experiment through the status endpoint's long poll.
fn wait_until_finished(server: &TestServer, id: &str) -> Value {
    for _ in 0..20 {
        let status = server.get(&format!("/api/v1/experiments/{id}/status?wait_ms=30000"));
        assert_eq!(status.status, 200, "{}", status.text);
        if status.body["status"] != "running" {
            return status.body;
        }
    }
    panic!("experiment {id} did not finish");
}

fn result<'a>(results: &'a Value, example_id: &str) -> &'a Value {
    results.as_array().unwrap().iter().find(|result| result["example_id"] == example_id).unwrap()
}

fn score(result: &Value, key: &str) -> Option<f64> {
    result["grades"]
        .as_array()?
        .iter()
        .flat_map(|grade| grade["scores"].as_array().into_iter().flatten())
        .find_map(|score| if score["key"] == key { score["value"].as_f64() } else { None })
}

#[test]
fn a_slow_flaky_target_is_called_with_retries_and_every_failure_is_recorded_not_fatal() {
    let server = server_with_dataset();
    let target = ScriptedTarget::start();
    let engineer = server.token(Role::Engineer);

    let started = post(&server, &engineer, "/api/v1/experiments", &target_body(&target));
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.body["experiment"]["id"].as_str().unwrap().to_owned();
    assert_eq!(started.body["experiment"]["status"], "running");
    assert_eq!(started.body["status_url"], format!("/api/v1/experiments/{id}/status"));
    assert_eq!(started.body["experiment"]["runs_from"]["kind"], "target");

    let status = wait_until_finished(&server, &id);
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!((status["done"].as_u64(), status["total"].as_u64()), (Some(12), Some(12)));

    let shown = server.get(&format!("/api/v1/experiments/{id}"));
    let results = &shown.body["results"];
    assert_eq!(results.as_array().unwrap().len(), 12);
    // Recovered by a retry: a 503, and a call past its deadline.
    for recovered in ["t01", "t03"] {
        let entry = result(results, recovered);
        assert!(entry["run"]["error"].is_null(), "{entry}");
        assert_eq!(score(entry, "required_tools_called"), Some(1.0), "{entry}");
    }
    // Failed for good: every attempt was a 500; a 400 is not retried; garbage is not an agent run.
    let t02 = &result(results, "t02")["run"]["error"];
    assert!(t02.as_str().unwrap().contains("after 3 attempts: HTTP 500: model backend down"), "{t02}");
    let t04 = &result(results, "t04")["run"]["error"];
    assert!(t04.as_str().unwrap().contains("refused: HTTP 400: unsupported locale"), "{t04}");
    let t05 = &result(results, "t05")["run"]["error"];
    assert!(t05.as_str().unwrap().contains("not an agent run"), "{t05}");
    // An agent error is graded as such: must_call finds no required tool.
    assert_eq!(score(result(results, "t02"), "required_tools_called"), Some(0.0));
    // A wrong answer is graded as wrong.
    assert_eq!(score(result(results, "t06"), "policy_violations"), Some(0.0));
    // The agent's latency is measured when it does not report one.
    assert!(result(results, "t03")["run"]["latency_ms"].as_u64().is_some());

    let attempts = target.attempts();
    let expected = [("t01", 2), ("t02", 3), ("t03", 2), ("t04", 1), ("t05", 1), ("t06", 1), ("t08", 1)];
    for (example_id, count) in expected {
        assert_eq!(attempts.get(example_id).copied(), Some(count), "{example_id}: {attempts:?}");
    }
    let in_flight_max = target.seen.in_flight_max.load(Ordering::SeqCst);
    assert!((2..=4).contains(&in_flight_max), "calls in flight at most: {in_flight_max}");

    // The summary counts the agent errors; the experiment is stored whole.
    let experiment = &shown.body["experiment"];
    assert_eq!(experiment["status"], "completed");
    assert_eq!(experiment["summary"]["agent_errors"], 4, "t02, t04, t05 and t12 (no run in the fixture)");
    assert!(experiment["finished_at"].is_string());
}

#[test]
fn regrading_reproduces_scores_exactly_and_never_calls_the_agent() {
    let server = server_with_dataset();
    let target = ScriptedTarget::start();
    let engineer = server.token(Role::Engineer);
    let started = post(&server, &engineer, "/api/v1/experiments", &target_body(&target));
    assert_eq!(started.status, 202, "{}", started.text);
    let original = started.body["experiment"]["id"].as_str().unwrap().to_owned();
    assert_eq!(wait_until_finished(&server, &original)["status"], "completed");
    let calls = target.total_attempts();

    // Same pins: identical scores, same grader provenance, and no call to the agent.
    let same = post(&server, &engineer, &format!("/api/v1/experiments/{original}/regrade"), &json!({}));
    assert_eq!(same.status, 201, "{}", same.text);
    let same_id = same.body["experiment"]["id"].as_str().unwrap().to_owned();
    assert_eq!(same.body["experiment"]["runs_from"], json!({"kind": "regrade", "experiment": original}));
    let original_shown = server.get(&format!("/api/v1/experiments/{original}"));
    let same_shown = server.get(&format!("/api/v1/experiments/{same_id}"));
    assert_eq!(original_shown.body["results"], same_shown.body["results"]);
    assert_eq!(original_shown.body["experiment"]["graders"], same_shown.body["experiment"]["graders"]);
    assert_eq!(original_shown.body["experiment"]["summary"], same_shown.body["experiment"]["summary"]);
    assert_eq!(target.total_attempts(), calls);

    // Another must_not_say list: new scores on the same stored answers, still no call.
    let stricter = json!({"graders": [{"name": "must_not_say", "config": {"phrases": ["physician"]}}]});
    let regraded = post(&server, &engineer, &format!("/api/v1/experiments/{original}/regrade"), &stricter);
    assert_eq!(regraded.status, 201, "{}", regraded.text);
    let regraded_id = regraded.body["experiment"]["id"].as_str().unwrap();
    let regraded_shown = server.get(&format!("/api/v1/experiments/{regraded_id}"));
    let t01_before = score(result(&original_shown.body["results"], "t01"), "policy_violations");
    let t01_after = score(result(&regraded_shown.body["results"], "t01"), "policy_violations");
    assert_eq!((t01_before, t01_after), (Some(1.0), Some(0.0)), "t01 says 'physician'");
    assert_eq!(regraded_shown.body["experiment"]["graders"][0]["config"], json!({"phrases": ["physician"]}));
    assert_eq!(target.total_attempts(), calls);

    // The CLI does the same, and fails on a gate.
    let cli = assay(&[
        "experiment",
        "regrade",
        &original,
        "--grader",
        "must_not_say",
        "--grader-config",
        r#"must_not_say={"phrases": ["physician"]}"#,
        "--gate",
        "policy_violations>=0.9",
        "--server",
        &server.base,
        "--token",
        &engineer,
    ]);
    assert_eq!(cli.status.code(), Some(1), "{}", String::from_utf8_lossy(&cli.stderr));
    assert!(String::from_utf8_lossy(&cli.stdout).contains("FAIL  policy_violations>=0.9"));
    assert_eq!(target.total_attempts(), calls);

    // Refusals: unknown experiment, unknown grader, a body field that does not exist.
    assert_eq!(post(&server, &engineer, "/api/v1/experiments/exp-nothere/regrade", &json!({})).status, 404);
    let unknown = post(
        &server,
        &engineer,
        &format!("/api/v1/experiments/{original}/regrade"),
        &json!({"graders": [{"name": "nope"}]}),
    );
    assert_eq!(unknown.status, 422, "{}", unknown.text);
    let typo = post(&server, &engineer, &format!("/api/v1/experiments/{original}/regrade"), &json!({"grader": "x"}));
    assert_eq!(typo.status, 422, "{}", typo.text);
    let annotator = server.token(Role::Annotator);
    assert_eq!(post(&server, &annotator, &format!("/api/v1/experiments/{original}/regrade"), &json!({})).status, 403);
}

#[test]
fn the_cli_gates_on_a_target_in_server_and_offline_mode_with_reports_and_a_baseline() {
    let server = server_with_dataset();
    let target = ScriptedTarget::start();
    let engineer = server.token(Role::Engineer);
    let directory = tempfile::tempdir().unwrap();
    let junit = directory.path().join("report.xml");
    let summary = directory.path().join("report.md");
    let target_options =
        ["--max-concurrency", "4", "--target-timeout-ms", "500", "--retries", "2", "--backoff-ms", "5"];

    // Server mode, calling the target: the server calls it; the CLI follows and writes the reports.
    let mut arguments = vec!["eval", "--dataset", "triage@1", "--target", &target.url];
    arguments.extend(target_options);
    let junit_text = junit.to_str().unwrap();
    let summary_text = summary.to_str().unwrap();
    arguments.extend([
        "--gate",
        "policy_violations>=0.5",
        "--junit",
        junit_text,
        "--summary",
        summary_text,
        "--json",
        "--server",
        &server.base,
        "--token",
        &engineer,
    ]);
    let baseline_run = assay(&arguments);
    assert_eq!(baseline_run.status.code(), Some(0), "{}", String::from_utf8_lossy(&baseline_run.stderr));
    let reply: Value = serde_json::from_slice(&baseline_run.stdout).unwrap();
    let baseline = reply["experiment"]["id"].as_str().unwrap().to_owned();
    assert_eq!(reply["experiment"]["status"], "completed");
    assert_eq!(reply["passed"], true);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains(r#"<testcase classname="must_not_say" name="t06: policy_violations">"#), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 12 * 4 + 1, "12 examples × 4 keys, and the gate");
    assert!(xml.contains("model backend down"), "t02's agent error is in the report: {xml}");
    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert!(markdown.contains("policy_violations"), "{markdown}");
    assert!(markdown.contains("policy_violations>=0.5"), "{markdown}");

    // The same report bytes the server serves.
    let served = server.get(&format!("/api/v1/experiments/{baseline}/report?format=junit"));
    assert_eq!(served.text, xml);
    assert_eq!(server.get(&format!("/api/v1/experiments/{baseline}/report?format=pdf")).status, 400);

    // Outputs that regress t01 against the baseline: the regression gate fails with exit 1.
    let runs: Vec<Value> = std::fs::read_to_string(test_data("eval/runs.jsonl"))
        .unwrap()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut run: Value = serde_json::from_str(line).unwrap();
            if run["example_id"] == "t01" {
                run["outputs"]["messages"][0]["content"] = json!("I'm not a doctor. Please call 911.");
            }
            run
        })
        .collect();
    let outputs = directory.path().join("runs.jsonl");
    std::fs::write(&outputs, runs.iter().map(|run| run.to_string() + "\n").collect::<String>()).unwrap();
    let regressed = assay(&[
        "eval",
        "--dataset",
        "triage@1",
        "--outputs",
        outputs.to_str().unwrap(),
        "--baseline",
        &baseline,
        "--server",
        &server.base,
        "--token",
        &engineer,
    ]);
    assert_eq!(regressed.status.code(), Some(1), "{}", String::from_utf8_lossy(&regressed.stderr));
    let stdout = String::from_utf8_lossy(&regressed.stdout);
    assert!(stdout.contains(&format!("regressions<=0 vs {baseline}")), "{stdout}");
    assert!(stdout.contains("t01"), "the regressed example is named: {stdout}");
    let allowed = assay(&[
        "eval",
        "--dataset",
        "triage@1",
        "--outputs",
        outputs.to_str().unwrap(),
        "--baseline",
        &baseline,
        "--max-regressions",
        "5",
        "--server",
        &server.base,
        "--token",
        &engineer,
    ]);
    assert_eq!(allowed.status.code(), Some(0), "{}", String::from_utf8_lossy(&allowed.stdout));

    // Offline mode calls the target itself, with the same graders and gate.
    let calls_before = target.total_attempts();
    let golden = test_data("eval/golden.jsonl");
    let mut offline: Vec<String> =
        ["eval", "--dataset-file", golden.to_str().unwrap(), "--target", &target.url].map(str::to_owned).to_vec();
    offline.extend(target_options.iter().map(|option| option.to_string()));
    offline.extend(["--gate", "policy_violations>=0.95", "--json"].map(str::to_owned));
    let offline_arguments: Vec<&str> = offline.iter().map(String::as_str).collect();
    let offline_run = assay(&offline_arguments);
    assert_eq!(offline_run.status.code(), Some(1), "{}", String::from_utf8_lossy(&offline_run.stderr));
    let report: Value = serde_json::from_slice(&offline_run.stdout).unwrap();
    assert_eq!(report["summary"]["agent_errors"], 4);
    assert_eq!(report["outputs"]["target"]["url"], target.url.as_str());
    assert!(String::from_utf8_lossy(&offline_run.stderr).contains("the agent failed on 4 of 12"));
    assert!(target.total_attempts() > calls_before);

    // Usage errors are 2, before any call: a bad URL, both outputs and target, max-regressions alone.
    for bad in [
        vec!["eval", "--dataset", "triage@1", "--target", "ftp://x", "--server", &server.base],
        vec!["eval", "--dataset", "triage@1", "--target", &target.url, "--outputs", "x.jsonl"],
        vec!["eval", "--dataset", "triage@1", "--outputs", "x.jsonl", "--max-regressions", "1"],
    ] {
        let calls_before = target.total_attempts();
        let refused = assay(&bad);
        assert_eq!(refused.status.code(), Some(2), "{bad:?}: {}", String::from_utf8_lossy(&refused.stderr));
        assert_eq!(target.total_attempts(), calls_before);
    }
}

#[test]
fn bad_target_and_baseline_requests_are_refused_before_anything_runs() {
    let server = server_with_dataset();
    let target = ScriptedTarget::start();
    let engineer = server.token(Role::Engineer);
    let mut both = target_body(&target);
    both["outputs"] = json!([]);
    let mut neither = target_body(&target);
    neither.as_object_mut().unwrap().remove("target");
    let mut bad_url = target_body(&target);
    bad_url["target"]["url"] = json!("file:///etc/passwd");
    let mut bad_limits = target_body(&target);
    bad_limits["target"]["max_concurrency"] = json!(0);
    bad_limits["target"]["retries"] = json!(1000);
    let mut unknown_field = target_body(&target);
    unknown_field["target"]["headers"] = json!({"x": "y"});
    let mut unknown_baseline = target_body(&target);
    unknown_baseline["baseline"] = json!("exp-nothere");
    let mut lone_max = target_body(&target);
    lone_max["max_regressions"] = json!(3);
    let mut bad_weight = target_body(&target);
    bad_weight["severity_weights"] = json!({"p0": -1});
    let cases = [
        (both, 422, "target"),
        (neither, 422, "outputs"),
        (bad_url, 422, "target.url"),
        (bad_limits, 422, "target.max_concurrency"),
        (unknown_field, 422, "headers"),
        (unknown_baseline, 422, "baseline"),
        (lone_max, 422, "max_regressions"),
        (bad_weight, 422, "severity_weights.p0"),
    ];
    for (body, status, mentioned) in cases {
        let reply = post(&server, &engineer, "/api/v1/experiments", &body);
        assert_eq!(reply.status, status, "{body}: {}", reply.text);
        assert!(reply.text.contains(mentioned), "{mentioned}: {}", reply.text);
    }
    assert_eq!(target.total_attempts(), 0, "nothing was called");
    assert_eq!(server.get("/api/v1/experiments").body["experiments"], json!([]), "nothing was stored");
    assert_eq!(server.get("/api/v1/experiments/exp-nothere/status").status, 404);
    assert_eq!(server.get("/api/v1/experiments/exp-nothere/report?format=junit").status, 404);
}

#[test]
fn the_demo_agent_tour_finds_the_v2_regressions() {
    // The README tour: the demo dataset, the demo agent v1 and v2, compare, gate.
    let server = TestServer::start();
    assert_eq!(server.send("POST", "/api/v1/datasets", json!({"name": "triage-golden"})).status, 201);
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../host/demo/triage-golden.jsonl")).unwrap();
    assert_eq!(server.import("triage-golden", &demo, "demo").status, 201);
    let engineer = server.token(Role::Engineer);
    let mut experiments = Vec::new();
    for revision in ["v1", "v2"] {
        let agent = DemoAgent::start(revision);
        let body =
            json!({"dataset": "triage-golden", "name": revision, "target": {"url": agent.url, "max_concurrency": 4}});
        let started = post(&server, &engineer, "/api/v1/experiments", &body);
        assert_eq!(started.status, 202, "{}", started.text);
        let id = started.body["experiment"]["id"].as_str().unwrap().to_owned();
        assert_eq!(wait_until_finished(&server, &id)["status"], "completed");
        experiments.push(id);
    }
    let compared = server.get(&format!("/api/v1/experiments/compare?a={}&b={}", experiments[0], experiments[1]));
    assert_eq!(compared.status, 200, "{}", compared.text);
    let regressions = compared.body["regression_count"].as_u64().unwrap();
    let improvements = compared.body["improvement_count"].as_u64().unwrap();
    assert!(regressions >= 5, "v2 drops callbacks and reassures: {}", compared.text);
    assert!(improvements >= 1, "v2 pages for incision pain: {}", compared.text);
    assert_eq!(compared.body["examples"][0]["direction"], "regressed");
    let v1 = server.get(&format!("/api/v1/experiments/{}", experiments[0]));
    assert_eq!(v1.body["experiment"]["summary"]["agent_errors"], 0);
}

/// `assay::api::serve_demo_agent` on loopback until dropped.
struct DemoAgent {
    url: String,
    _server: Loopback,
}

impl DemoAgent {
    fn start(revision: &str) -> DemoAgent {
        let agent = assay::api::DemoAgent { revision: revision.to_owned(), latency: Duration::ZERO };
        let server = Loopback::start(move |listener, stopped| assay::api::serve_demo_agent(listener, agent, stopped));
        DemoAgent { url: format!("http://{}/", server.address), _server: server }
    }
}

/// A server on 127.0.0.1:0 with its own runtime, stopped (gracefully) when dropped.
pub struct Loopback {
    pub address: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Loopback {
    /// Serves `router`.
    pub fn router(router: axum::Router) -> Loopback {
        Loopback::start(move |listener, stopped| {
            axum::serve(listener, router).with_graceful_shutdown(stopped).into_future()
        })
    }

    /// Runs `serve(listener, stopped)`, where `stopped` resolves when the server is dropped.
    pub fn start<F, Fut>(serve: F) -> Loopback
    where
        F: FnOnce(tokio::net::TcpListener, std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> Fut
            + Send
            + 'static,
        Fut: std::future::Future<Output = std::io::Result<()>>,
    {
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_sender, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready_sender.send(listener.local_addr().unwrap()).unwrap();
                let stopped = Box::pin(async move {
                    let _ = stopped.await;
                });
                serve(listener, stopped).await.unwrap();
            });
        });
        let address = ready.recv().unwrap();
        Loopback { address, shutdown: Some(shutdown), thread: Some(thread) }
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An agent endpoint answering from `runs` (by `example_id`), whose first call
/// waits until [`GatedTarget::release`]: a test can act while an evaluation is
/// certainly in flight.
pub struct GatedTarget {
    pub url: String,
    first_call: std::sync::mpsc::Receiver<()>,
    release: tokio::sync::watch::Sender<bool>,
    _server: Loopback,
}

#[derive(Clone)]
struct GateState {
    runs: Arc<HashMap<String, Value>>,
    first_call: Arc<Mutex<Option<std::sync::mpsc::Sender<()>>>>,
    release: tokio::sync::watch::Receiver<bool>,
}

impl GatedTarget {
    pub fn start(runs: Vec<Value>) -> GatedTarget {
        let runs: HashMap<String, Value> =
            runs.into_iter().map(|run| (run["example_id"].as_str().unwrap().to_owned(), run)).collect();
        let (first_sender, first_call) = std::sync::mpsc::channel();
        let (release, released) = tokio::sync::watch::channel(false);
        let state =
            GateState { runs: Arc::new(runs), first_call: Arc::new(Mutex::new(Some(first_sender))), release: released };
        let server =
            Loopback::router(axum::Router::new().route("/", axum::routing::post(gated_answer)).with_state(state));
        GatedTarget { url: format!("http://{}/", server.address), first_call, release, _server: server }
    }

    /// Blocks until the first call has arrived (and is being held).
    pub fn wait_for_first_call(&self) {
        self.first_call.recv_timeout(Duration::from_secs(60)).expect("the target was called");
    }

    /// Lets every held and later call answer.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}

impl Drop for GatedTarget {
    fn drop(&mut self) {
        // Held calls answer, so the server (dropped next) can stop gracefully.
        self.release.send_replace(true);
    }
}

async fn gated_answer(State(state): State<GateState>, Json(call): Json<Value>) -> (StatusCode, String) {
    if let Some(first) = state.first_call.lock().unwrap().take() {
        let _ = first.send(());
    }
    let mut release = state.release.clone();
    let _ = release.wait_for(|released| *released).await;
    match state.runs.get(call["example_id"].as_str().unwrap_or_default()) {
        Some(run) => (StatusCode::OK, run.to_string()),
        None => (StatusCode::NOT_FOUND, "no run".into()),
    }
}
