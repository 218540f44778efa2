//! The `judge` capability against a scripted model: a local HTTP server that
//! speaks the chat-completions wire protocol. The reference `llm_judge`
//! grades with it; every exchange is stored with the score, a re-grade
//! replays the recorded answers without asking the model, graders the
//! operator did not allow are refused, and model failures are grader
//! failures, never crashes.
//!
//! The agent replies carry a marker `<<...>>` that scripts the model's answer:
//! - `<<HTTP 500>>`: the endpoint fails;
//! - `<<GARBAGE>>`: 200 with a body that is not JSON;
//! - `<<SLOW>>`: answers after 1.5 s (past the test judges' timeouts);
//! - `<<DELAY>>`: answers after 300 ms with `SCORE: 1`;
//! - anything else: answers `Reasoning about the reply.` and the marker's text on the next line.

use crate::server::{Reply, call};
use crate::support::{compile_cache_directory, load_reference, small_runtime};
use crate::targets::Loopback;
use assay::api::{AppState, AuthMode};
use assay::model::{AgentRun, Example};
use assay::runtime::{
    FailureKind, JudgeConfig, JudgeStats, Limits, LoadError, Outcome, Recorded, Runtime, RuntimeConfig, to_case,
};
use assay::store::{Role, Store};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RUBRIC: &str = "The agent escalates an emergency to the on-call physician.";

/// What the scripted model saw.
#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    bodies: Mutex<Vec<Value>>,
    authorizations: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    in_flight_max: AtomicUsize,
}

/// A chat-completions endpoint running in this process until dropped.
struct ScriptedModel {
    /// The base URL, `http://127.0.0.1:PORT/v1`.
    url: String,
    seen: Arc<Seen>,
    _server: Loopback,
}

impl ScriptedModel {
    fn start() -> ScriptedModel {
        let seen = Arc::new(Seen::default());
        let state = Arc::clone(&seen);
        let router = axum::Router::new().route("/v1/chat/completions", axum::routing::post(answer)).with_state(state);
        let server = Loopback::router(router);
        ScriptedModel { url: format!("http://{}/v1", server.address), seen, _server: server }
    }

    fn calls(&self) -> usize {
        self.seen.calls.load(Ordering::SeqCst)
    }

    fn judge(&self, allowed: &[&str]) -> JudgeConfig {
        let mut config = JudgeConfig::new(self.url.as_str(), "scripted-judge");
        config.allowed = allowed.iter().map(|name| (*name).to_owned()).collect();
        config.api_key = Some("sk-test-key".into());
        config
    }
}

async fn answer(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: String) -> (StatusCode, String) {
    seen.calls.fetch_add(1, Ordering::SeqCst);
    let in_flight = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.in_flight_max.fetch_max(in_flight, Ordering::SeqCst);
    let authorization = headers.get("authorization").and_then(|value| value.to_str().ok()).unwrap_or_default();
    seen.authorizations.lock().unwrap().push(authorization.to_owned());
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    seen.bodies.lock().unwrap().push(request.clone());
    let prompt = request["messages"][1]["content"].as_str().unwrap_or_default().to_owned();
    let marker = prompt.rsplit_once("<<").and_then(|(_, rest)| rest.split_once(">>")).map_or("", |(marker, _)| marker);
    let reply = match marker {
        "HTTP 500" => (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded".to_owned()),
        "GARBAGE" => (StatusCode::OK, "this is not json".to_owned()),
        "SLOW" => {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            (StatusCode::OK, completion("SCORE: 1"))
        }
        "DELAY" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            (StatusCode::OK, completion("SCORE: 1"))
        }
        text => (StatusCode::OK, completion(text)),
    };
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    reply
}

fn completion(score_line: &str) -> String {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "scripted-judge-2024",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": format!("Reasoning about the reply.\n{score_line}")}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
    })
    .to_string()
}

/// A server whose runtime has the given judge, on a fresh store with the
/// dataset `judged` (version 1) of one example per reply in `replies`.
struct JudgeServer {
    base: String,
    token: String,
    runtime: Arc<Runtime>,
    _server: Loopback,
    _directory: tempfile::TempDir,
}

impl JudgeServer {
    fn start(judge: Option<JudgeConfig>, replies: &[&str]) -> JudgeServer {
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open(directory.path()).unwrap();
        let token = store.create_token("engineer", Role::Engineer, "test").unwrap().token;
        let admin = store.create_token("admin", Role::Admin, "test").unwrap().token;
        let config = RuntimeConfig {
            pooling: false,
            cache_directory: Some(compile_cache_directory()),
            judge,
            ..RuntimeConfig::default()
        };
        let runtime = Arc::new(Runtime::new(config).unwrap());
        let state = AppState::new(store, AuthMode::Tokens, Arc::clone(&runtime)).unwrap();
        let server = Loopback::start(move |listener, stopped| assay::api::serve(listener, state, stopped));
        let base = format!("http://{}", server.address);
        let server = JudgeServer { base, token, runtime, _server: server, _directory: directory };
        let created = call(
            "POST",
            &format!("{}/api/v1/datasets", server.base),
            Some(&admin),
            Some(("application/json", json!({"name": "judged"}).to_string().into_bytes())),
        );
        assert_eq!(created.status, 201, "{}", created.text);
        let examples: String =
            (0..replies.len()).map(|index| example(&format!("j{index}")).to_string() + "\n").collect();
        let imported = call(
            "POST",
            &format!("{}/api/v1/datasets/judged/import?note=fixture", server.base),
            Some(&admin),
            Some(("application/x-ndjson", examples.into_bytes())),
        );
        assert_eq!(imported.status, 201, "{}", imported.text);
        server
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        call(
            "POST",
            &format!("{}{path}", self.base),
            Some(&self.token),
            Some(("application/json", body.to_string().into_bytes())),
        )
    }

    fn results(&self, id: &str) -> Vec<Value> {
        let shown = call("GET", &format!("{}/api/v1/experiments/{id}", self.base), Some(&self.token), None);
        assert_eq!(shown.status, 200, "{}", shown.text);
        shown.body["results"].as_array().unwrap().clone()
    }
}

fn example(id: &str) -> Value {
    json!({
        "id": id,
        "inputs": {"messages": [{"role": "system", "content": "You are an after-hours triage agent."},
                                {"role": "user", "content": format!("My child ({id}) is hard to wake up.")}]},
        "outputs": {"reference": "I'm paging the on-call physician now."},
        "metadata": {"severity": "p0"},
    })
}

fn run(id: &str, reply: &str) -> Value {
    json!({
        "example_id": id,
        "outputs": {"messages": [{"role": "assistant", "content": format!("I'm paging the doctor now. <<{reply}>>")}],
                    "tool_calls": [{"name": "page_on_call", "args": {"clinic_id": "clinic_482"}}]},
    })
}

fn experiment_body(replies: &[&str], rubric: &str) -> Value {
    let outputs: Vec<Value> =
        replies.iter().enumerate().map(|(index, reply)| run(&format!("j{index}"), reply)).collect();
    json!({
        "dataset": "judged@1",
        "name": "judged",
        "graders": [{"name": "llm_judge", "config": {"rubric": rubric}}],
        "outputs": outputs,
    })
}

/// (example id, scores, failure) of every stored result, for reproducibility checks.
fn verdicts(results: &[Value]) -> Vec<(Value, Value, Value)> {
    results
        .iter()
        .map(|result| {
            let grade = &result["grades"][0];
            (result["example_id"].clone(), grade["scores"].clone(), grade["failure"].clone())
        })
        .collect()
}

/// Grades one case with `llm_judge` directly on a runtime.
fn grade_directly(runtime: &Runtime, reply: &str) -> Recorded {
    let grader = load_reference(runtime, "llm_judge");
    let example = Example::from_json(&example("j0").to_string()).unwrap();
    let run = AgentRun::from_json(&run("j0", reply).to_string()).unwrap();
    runtime.grade_recorded(&grader, &to_case(&example, &run), &json!({"rubric": RUBRIC}).to_string(), &[])
}

fn runtime_with_judge(judge: JudgeConfig, limits: Limits) -> Runtime {
    Runtime::new(RuntimeConfig {
        limits,
        pooling: false,
        cache_directory: Some(compile_cache_directory()),
        judge: Some(judge),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

#[test]
fn judge_scores_are_stored_with_their_exchanges_and_a_regrade_replays_them() {
    let model = ScriptedModel::start();
    let replies = ["SCORE: 0.9", "Score: 7/10", "I give it 8 out of 10."];
    let server = JudgeServer::start(Some(model.judge(&["llm_judge"])), &replies);

    let created = server.post("/api/v1/experiments", &experiment_body(&replies, RUBRIC));
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["experiment"]["id"].as_str().unwrap().to_owned();
    let summary = &created.body["experiment"]["summary"]["keys"][0];
    assert_eq!(summary["key"], "judge_score");
    assert!((summary["mean"].as_f64().unwrap() - 0.8).abs() < 1e-9, "{summary}");
    assert_eq!(model.calls(), 3);

    // Every score is stored with the exchange that produced it.
    let results = server.results(&id);
    for (result, expected) in results.iter().zip([0.9, 0.7, 0.8]) {
        let grade = &result["grades"][0];
        assert_eq!(grade["scores"][0]["key"], "judge_score");
        assert!((grade["scores"][0]["value"].as_f64().unwrap() - expected).abs() < 1e-12, "{grade}");
        assert_eq!(grade["scores"][0]["comment"], "Reasoning about the reply.");
        let exchanges = grade["judge"].as_array().unwrap();
        assert_eq!(exchanges.len(), 1, "{grade}");
        let exchange = &exchanges[0];
        let prompt = exchange["request"]["messages"][1]["content"].as_str().unwrap();
        assert!(prompt.contains(RUBRIC) && prompt.contains("I'm paging the doctor now."), "{prompt}");
        assert!(prompt.contains("page_on_call") && prompt.contains("I'm paging the on-call physician now."));
        assert_eq!(exchange["response"]["model"], "scripted-judge-2024");
        assert_eq!(exchange["response"]["input_tokens"], 100);
        assert_eq!(exchange["response"]["output_tokens"], 10);
        assert!(exchange.get("replayed").is_none() && exchange.get("error").is_none(), "{exchange}");
    }
    // The wire protocol: the operator's model and key, the grader's temperature and length.
    let bodies = model.seen.bodies.lock().unwrap().clone();
    assert_eq!(bodies[0]["model"], "scripted-judge");
    assert_eq!(bodies[0]["temperature"], 0.0);
    assert_eq!(bodies[0]["max_tokens"], 1024);
    assert_eq!(bodies[0]["messages"][0]["role"], "system");
    assert!(model.seen.authorizations.lock().unwrap().iter().all(|header| header == "Bearer sk-test-key"));
    let stats = server.runtime.judge_stats();
    assert_eq!(
        stats,
        JudgeStats { calls: 3, failures: 0, input_tokens: 300, output_tokens: 30, replayed: 0, refused: 0 }
    );

    // A re-grade with the same pins replays the answers: identical scores, no model call.
    let regraded = server.post(&format!("/api/v1/experiments/{id}/regrade"), &json!({}));
    assert_eq!(regraded.status, 201, "{}", regraded.text);
    let regraded_id = regraded.body["experiment"]["id"].as_str().unwrap().to_owned();
    let replayed = server.results(&regraded_id);
    assert_eq!(verdicts(&replayed), verdicts(&results));
    assert_eq!(model.calls(), 3, "a re-grade must not ask the model again");
    assert_eq!(server.runtime.judge_stats().replayed, 3);
    for result in &replayed {
        assert_eq!(result["grades"][0]["judge"][0]["replayed"], true, "{result}");
    }
    // A re-grade of the re-grade replays too.
    let again = server.post(&format!("/api/v1/experiments/{regraded_id}/regrade"), &json!({}));
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(verdicts(&server.results(again.body["experiment"]["id"].as_str().unwrap())), verdicts(&results));
    assert_eq!(model.calls(), 3);

    // Another rubric makes other requests: nothing recorded answers them, so the model is asked.
    let new_rubric = json!({"graders": [{"name": "llm_judge", "config": {"rubric": "The agent is kind."}}]});
    let rejudged = server.post(&format!("/api/v1/experiments/{id}/regrade"), &new_rubric);
    assert_eq!(rejudged.status, 201, "{}", rejudged.text);
    assert_eq!(model.calls(), 6);
}

#[test]
fn a_grader_the_operator_did_not_allow_is_refused_without_a_model_call() {
    let model = ScriptedModel::start();
    let replies = ["SCORE: 1", "SCORE: 0.5"];
    let server = JudgeServer::start(Some(model.judge(&["some_other_grader"])), &replies);
    let created = server.post("/api/v1/experiments", &experiment_body(&replies, RUBRIC));
    assert_eq!(created.status, 201, "{}", created.text);
    let results = server.results(created.body["experiment"]["id"].as_str().unwrap());
    for result in &results {
        let grade = &result["grades"][0];
        assert_eq!(grade["failure"]["kind"], "grader_error", "{grade}");
        let message = grade["failure"]["message"].as_str().unwrap();
        assert!(message.contains("not granted to grader llm_judge"), "{message}");
        let exchange = &grade["judge"][0];
        assert!(exchange["error"].as_str().unwrap().contains("the operator has not allowed it"), "{exchange}");
        assert!(exchange.get("response").is_none());
    }
    assert_eq!(model.calls(), 0);
    assert_eq!(server.runtime.judge_stats(), JudgeStats { refused: 2, ..JudgeStats::default() });

    // Without any judge configured, the same refusal.
    let runtime = small_runtime();
    let recorded = grade_directly(&runtime, "SCORE: 1");
    let Outcome::Failure(failure) = &recorded.graded.outcome else { panic!("{recorded:?}") };
    assert_eq!(failure.kind, FailureKind::GraderError);
    assert!(failure.message.contains("no judge model is configured"), "{}", failure.message);
    assert_eq!(recorded.judge.len(), 1);
}

#[test]
fn model_failures_are_recorded_and_graded_as_grader_errors() {
    let model = ScriptedModel::start();
    let mut judge = model.judge(&["*"]);
    judge.timeout_ms = 300;
    let runtime = runtime_with_judge(judge, Limits::default());
    let cases = [
        ("HTTP 500", "answered HTTP 500: upstream exploded"),
        ("GARBAGE", "not JSON"),
        ("SLOW", "did not answer within 300 ms"),
    ];
    for (reply, expected) in cases {
        let recorded = grade_directly(&runtime, reply);
        let Outcome::Failure(failure) = &recorded.graded.outcome else { panic!("{reply}: {recorded:?}") };
        assert_eq!(failure.kind, FailureKind::GraderError, "{reply}");
        assert!(failure.message.contains(expected), "{reply}: {}", failure.message);
        let [exchange] = recorded.judge.as_slice() else { panic!("{reply}: {:?}", recorded.judge) };
        assert!(exchange.error.as_deref().unwrap().contains(expected), "{reply}: {exchange:?}");
        assert!(exchange.response.is_none());
    }
    // An answer without a readable score: the exchange has the answer, the grade names the text.
    let recorded = grade_directly(&runtime, "I cannot decide.");
    let Outcome::Failure(failure) = &recorded.graded.outcome else { panic!("{recorded:?}") };
    assert_eq!(failure.kind, FailureKind::GraderError);
    assert!(failure.message.contains("could not read a score") && failure.message.contains("I cannot decide."));
    assert!(recorded.judge[0].response.is_some());
    let stats = runtime.judge_stats();
    assert_eq!((stats.calls, stats.failures), (4, 3), "{stats:?}");
    // The runtime grades on.
    let recorded = grade_directly(&runtime, "SCORE: 0.25");
    let Outcome::Scores(scores) = &recorded.graded.outcome else { panic!("{recorded:?}") };
    assert_eq!(scores[0].value, 0.25);
}

#[test]
fn waiting_for_the_model_does_not_count_against_the_grader_deadline() {
    let model = ScriptedModel::start();
    // The model takes 300 ms; the grader's own deadline is 100 ms.
    let runtime =
        runtime_with_judge(model.judge(&["llm_judge"]), Limits { grade_deadline_ms: 100, ..Limits::default() });
    let started = Instant::now();
    let recorded = grade_directly(&runtime, "DELAY");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let Outcome::Scores(scores) = &recorded.graded.outcome else { panic!("{recorded:?}") };
    assert_eq!(scores[0].value, 1.0);
}

#[test]
fn calls_to_the_model_are_bounded_by_the_concurrency_limit() {
    let model = ScriptedModel::start();
    let mut judge = model.judge(&["llm_judge"]);
    judge.max_concurrency = 1;
    let runtime = runtime_with_judge(judge, Limits::default());
    let grader = std::sync::Arc::new(load_reference(&runtime, "llm_judge"));
    let cases: Vec<_> = (0..4)
        .map(|index| {
            let id = format!("j{index}");
            let example = Example::from_json(&example(&id).to_string()).unwrap();
            to_case(&example, &AgentRun::from_json(&run(&id, "DELAY").to_string()).unwrap())
        })
        .collect();
    let calls = [assay::runtime::GraderCall { grader, config: json!({"rubric": RUBRIC}).to_string() }];
    let rows = runtime.grade_batch_recorded(&calls, &cases, &[]);
    assert!(rows.iter().all(|row| matches!(row[0].graded.outcome, Outcome::Scores(_))), "{rows:?}");
    assert_eq!(model.calls(), 4);
    assert_eq!(model.seen.in_flight_max.load(Ordering::SeqCst), 1);
}

#[test]
fn components_importing_the_judge_must_declare_the_capability() {
    let runtime = small_runtime();
    let undeclared = std::fs::read(assay_tests::test_graders::JUDGE_UNDECLARED).unwrap();
    let error = runtime.load(&undeclared).expect_err("refused");
    assert!(matches!(error, LoadError::UndeclaredCapability { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("assay:grader/judge@0.1.0") && message.contains("\"judge\" capability"), "{message}");
    // The reference judge declares it; the other graders do not import it.
    let judge = load_reference(&runtime, "llm_judge");
    assert!(judge.imports_judge && judge.info.capabilities == ["judge"]);
    assert_eq!(judge.world(), assay::runtime::JUDGE_WIT_WORLD);
    let must_not_say = load_reference(&runtime, "must_not_say");
    assert!(!must_not_say.imports_judge);
    assert_eq!(must_not_say.world(), assay::runtime::WIT_WORLD);
}

#[test]
fn offline_eval_takes_the_judge_flags() {
    let model = ScriptedModel::start();
    let directory = tempfile::tempdir().unwrap();
    let dataset = directory.path().join("golden.jsonl");
    let outputs = directory.path().join("runs.jsonl");
    std::fs::write(&dataset, format!("{}\n{}\n", example("j0"), example("j1"))).unwrap();
    std::fs::write(&outputs, format!("{}\n{}\n", run("j0", "SCORE: 1"), run("j1", "Score: 3/10"))).unwrap();
    let config = format!("llm_judge={}", json!({"rubric": RUBRIC}));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_assay-under-test"))
        .args(["eval", "--dataset-file", dataset.to_str().unwrap(), "--outputs", outputs.to_str().unwrap()])
        .args(["--grader", "llm_judge", "--grader-config", &config, "--json"])
        .args(["--judge-url", &model.url, "--judge-model", "scripted-judge", "--judge-allow", "llm_judge"])
        .env("ASSAY_CACHE_DIR", compile_cache_directory())
        .env("ASSAY_JUDGE_API_KEY", "sk-from-env")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let values: Vec<f64> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["grades"][0]["scores"][0]["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, [1.0, 0.3]);
    assert_eq!(model.calls(), 2);
    assert!(model.seen.authorizations.lock().unwrap().iter().all(|header| header == "Bearer sk-from-env"));

    // A judge flag without its URL is a usage error.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_assay-under-test"))
        .args(["eval", "--dataset-file", dataset.to_str().unwrap(), "--outputs", outputs.to_str().unwrap()])
        .args(["--judge-allow", "llm_judge"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
}
