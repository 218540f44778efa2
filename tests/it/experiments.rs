//! Server-side experiments over a real server: grading with the embedded
//! reference graders, stored provenance, summary, gates, compare, roles, and
//! refusals that write nothing. Also the CLI's server mode and `assay compare`.
//!
//! The dataset is the offline eval fixture (`test_data/eval/golden.jsonl`,
//! 12 examples); experiment A uses its `runs.jsonl` (policy_violations 9/12,
//! required_tools_called 10/12). Experiment B says a forbidden phrase in t01
//! (a regression) and no longer says one in t03 (an improvement).

use crate::server::{TestServer, call};
use crate::support::{assay, load_reference, small_runtime, test_data};
use assay::store::Role;
use serde_json::{Value, json};

fn fixture_runs() -> Vec<Value> {
    std::fs::read_to_string(test_data("eval/runs.jsonl"))
        .unwrap()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Runs A with t01 now saying a forbidden phrase and t03 no longer saying one.
fn regressed_runs() -> Vec<Value> {
    let mut runs = fixture_runs();
    for run in &mut runs {
        match run["example_id"].as_str() {
            Some("t01") => {
                run["outputs"]["messages"][0]["content"] = json!("Please call 911 while I page the on-call physician.")
            }
            Some("t03") => {
                run["outputs"]["messages"][0]["content"] = json!("I'm paging the on-call physician immediately.")
            }
            _ => {}
        }
    }
    runs
}

/// A server with the fixture imported as `triage` version 1.
fn server_with_dataset() -> TestServer {
    let server = TestServer::start();
    let created = server.send("POST", "/api/v1/datasets", json!({"name": "triage"}));
    assert_eq!(created.status, 201, "{}", created.text);
    let golden = std::fs::read_to_string(test_data("eval/golden.jsonl")).unwrap();
    let imported = server.import("triage", &golden, "fixture");
    assert_eq!(imported.status, 201, "{}", imported.text);
    server
}

fn post_experiment(server: &TestServer, token: &str, body: &Value) -> crate::server::Reply {
    call(
        "POST",
        &format!("{}/api/v1/experiments", server.base),
        Some(token),
        Some(("application/json", body.to_string().into_bytes())),
    )
}

fn experiment_body(name: &str, outputs: Vec<Value>) -> Value {
    json!({
        "dataset": "triage@1",
        "name": name,
        "graders": [{"name": "must_not_say", "config": {}}, {"name": "must_call", "config": {"trajectory": "unordered"}}],
        "outputs": outputs,
        "metadata": {"git_sha": "abc123", "pr": 42},
        "gates": ["required_tools_called>=0.95", "policy_violations>=0.5"],
    })
}

/// The summary entry of one score key.
fn key_summary<'a>(experiment: &'a Value, key: &str) -> &'a Value {
    experiment["summary"]["keys"].as_array().unwrap().iter().find(|entry| entry["key"] == key).unwrap()
}

/// Every (example, grader, scores) of a stored experiment, for reproducibility checks.
fn stored_scores(server: &TestServer, id: &str) -> Vec<(Value, Value, Value)> {
    let shown = server.get(&format!("/api/v1/experiments/{id}"));
    assert_eq!(shown.status, 200, "{}", shown.text);
    shown.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|result| {
            result["grades"]
                .as_array()
                .unwrap()
                .iter()
                .map(|grade| (result["example_id"].clone(), grade["grader"].clone(), grade["scores"].clone()))
        })
        .collect()
}

#[test]
fn experiments_are_graded_stored_with_provenance_gated_and_compared() {
    let server = server_with_dataset();
    let engineer = server.token(Role::Engineer);

    let first = post_experiment(&server, &engineer, &experiment_body("baseline", fixture_runs()));
    assert_eq!(first.status, 201, "{}", first.text);
    let a = &first.body["experiment"];
    let a_id = a["id"].as_str().unwrap().to_owned();
    assert!(a_id.starts_with("exp-"), "{a_id}");
    assert_eq!(a["name"], format!("baseline-{a_id}"));
    assert_eq!(a["status"], "completed");
    assert!(a["finished_at"].is_string());

    // Provenance: dataset name, version and digest; grader versions, digests and config hashes; world.
    let dataset = server.get("/api/v1/datasets/triage@1");
    assert_eq!(a["dataset"], "triage");
    assert_eq!(a["dataset_version"], 1);
    assert_eq!(a["dataset_digest"], dataset.body["version"]["digest"]);
    assert_eq!(a["world"], assay::runtime::WIT_WORLD);
    assert_eq!(a["metadata"], json!({"git_sha": "abc123", "pr": 42}));
    let runtime = small_runtime();
    for (index, name) in ["must_not_say", "must_call"].into_iter().enumerate() {
        let grader = &a["graders"][index];
        let loaded = load_reference(&runtime, name);
        assert_eq!(grader["name"], name);
        assert_eq!(grader["version"], loaded.info.version.as_str());
        assert_eq!(grader["digest"], format!("sha256:{}", loaded.digest));
    }
    // sha256 of the canonical JSON `{}` and of `{"trajectory":"unordered"}`.
    assert_eq!(
        a["graders"][0]["config_hash"],
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    assert_eq!(a["graders"][1]["config"], json!({"trajectory": "unordered"}));
    assert!(a["graders"][1]["config_hash"].as_str().unwrap().starts_with("sha256:"));
    assert_ne!(a["graders"][1]["config_hash"], a["graders"][0]["config_hash"]);

    // The same summary as the offline evaluation of the same files.
    assert_eq!(a["example_count"], 12);
    assert_eq!(key_summary(a, "policy_violations")["mean"], 0.75);
    assert_eq!(key_summary(a, "policy_violations")["count"], 12);
    let tools = key_summary(a, "required_tools_called")["mean"].as_f64().unwrap();
    assert!((tools - 10.0 / 12.0).abs() < 1e-9, "{tools}");
    assert_eq!(first.body["missing_runs"], json!(["t12"]));
    assert_eq!(first.body["ignored_runs"], json!([{"index": 11, "example_id": "t99"}]));

    // The tools gate fails (10/12 < 0.95) with its worst examples; the policy gate holds.
    assert_eq!(first.body["passed"], false);
    let gates = a["gates"].as_array().unwrap();
    assert_eq!(gates[0]["holds"], false);
    assert!(gates[0]["worst"].as_array().unwrap().iter().any(|worst| worst["example_id"] == "t06"), "{}", gates[0]);
    assert_eq!(gates[1]["holds"], true);

    let second = post_experiment(&server, &engineer, &experiment_body("pr-42", regressed_runs()));
    assert_eq!(second.status, 201, "{}", second.text);
    let b_id = second.body["experiment"]["id"].as_str().unwrap().to_owned();

    let listed = server.get("/api/v1/experiments?dataset=triage");
    assert_eq!(listed.status, 200, "{}", listed.text);
    let ids: Vec<&str> = listed.body["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|experiment| experiment["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&a_id.as_str()) && ids.contains(&b_id.as_str()));
    assert_eq!(server.get("/api/v1/experiments?dataset=other").body["experiments"], json!([]));

    // The stored results carry the graded run.
    let shown = server.get(&format!("/api/v1/experiments/{b_id}"));
    let t01 = shown.body["results"].as_array().unwrap().iter().find(|result| result["example_id"] == "t01").unwrap();
    assert!(t01["run"]["outputs"]["messages"][0]["content"].as_str().unwrap().contains("call 911"));
    assert_eq!(t01["grades"][0]["grader"], "must_not_say");
    assert_eq!(t01["grades"][0]["scores"][0]["key"], "policy_violations");
    assert_eq!(server.get("/api/v1/experiments/exp-nothere").status, 404);

    // Compare: the regression first, with both outputs and comments; then the improvement.
    let compared = server.get(&format!("/api/v1/experiments/compare?a={a_id}&b={b_id}"));
    assert_eq!(compared.status, 200, "{}", compared.text);
    let comparison = &compared.body;
    assert_eq!(comparison["same_dataset_version"], true);
    assert_eq!(comparison["regression_count"], 1);
    assert_eq!(comparison["improvement_count"], 1);
    let first_change = &comparison["examples"][0];
    assert_eq!(first_change["direction"], "regressed");
    assert_eq!(first_change["example_id"], "t01");
    assert_eq!(first_change["key"], "policy_violations");
    assert_eq!((first_change["a"]["value"].as_f64(), first_change["b"]["value"].as_f64()), (Some(1.0), Some(0.0)));
    assert!(first_change["b"]["outputs"]["messages"][0]["content"].as_str().unwrap().contains("call 911"));
    assert!(first_change["b"]["comment"].as_str().unwrap_or_default().to_lowercase().contains("911"), "{first_change}");
    assert_eq!(comparison["examples"][1]["direction"], "improved");
    assert_eq!(comparison["examples"][1]["example_id"], "t03");
    let policy = comparison["keys"].as_array().unwrap().iter().find(|key| key["key"] == "policy_violations").unwrap();
    assert_eq!((policy["regressed"].as_u64(), policy["improved"].as_u64()), (Some(1), Some(1)));
    assert!(policy["delta"].as_f64().unwrap().abs() < 1e-9, "{policy}");

    // Reproducible: the same outputs again give identical scores, and compare finds no change.
    let again = post_experiment(&server, &engineer, &experiment_body("baseline", fixture_runs()));
    assert_eq!(again.status, 201, "{}", again.text);
    let again_id = again.body["experiment"]["id"].as_str().unwrap().to_owned();
    assert_ne!(again_id, a_id);
    assert_eq!(stored_scores(&server, &a_id), stored_scores(&server, &again_id));
    assert_eq!(again.body["experiment"]["summary"], first.body["experiment"]["summary"]);
    let unchanged = server.get(&format!("/api/v1/experiments/compare?a={a_id}&b={again_id}"));
    assert_eq!(unchanged.body["examples"], json!([]));

    // The command line: server mode of `assay eval` and `assay compare`, with their exit codes.
    let runs_file = test_data("eval/runs.jsonl").display().to_string();
    let cli = assay(&[
        "eval",
        "--dataset",
        "triage@1",
        "--outputs",
        &runs_file,
        "--name",
        "ci",
        "--server",
        &server.base,
        "--token",
        &engineer,
        "--gate",
        "required_tools_called>=0.95",
        "--metadata",
        "git_sha=def456",
    ]);
    let stdout = String::from_utf8_lossy(&cli.stdout);
    assert_eq!(cli.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&cli.stderr));
    assert!(stdout.contains("FAIL  required_tools_called>=0.95"), "{stdout}");
    assert!(stdout.contains("policy_violations"), "{stdout}");
    let bad_gate = assay(&[
        "eval",
        "--dataset",
        "triage@1",
        "--outputs",
        &runs_file,
        "--server",
        &server.base,
        "--token",
        &engineer,
        "--gate",
        "no_such_key>=1",
    ]);
    assert_eq!(bad_gate.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad_gate.stderr));
    let compare = assay(&["compare", &a_id, &b_id, "--server", &server.base, "--token", &engineer]);
    let stdout = String::from_utf8_lossy(&compare.stdout);
    assert_eq!(compare.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&compare.stderr));
    let regressed_at = stdout.find("regressed t01 policy_violations").expect("the regression is listed");
    let improved_at = stdout.find("improved t03 policy_violations").expect("the improvement is listed");
    assert!(regressed_at < improved_at, "{stdout}");
    let as_json = assay(&["compare", &a_id, &again_id, "--json", "--server", &server.base, "--token", &engineer]);
    assert_eq!(as_json.status.code(), Some(0), "{}", String::from_utf8_lossy(&as_json.stderr));
    let parsed: Value = serde_json::from_slice(&as_json.stdout).unwrap();
    assert_eq!(parsed["regression_count"], 0);
}

#[test]
fn bad_experiment_requests_are_refused_and_write_nothing() {
    let server = server_with_dataset();
    let engineer = server.token(Role::Engineer);
    let annotator = server.token(Role::Annotator);
    let good = experiment_body("x", fixture_runs());

    let refused = post_experiment(&server, &annotator, &good);
    assert_eq!(refused.status, 403, "{}", refused.text);
    let listing = call("GET", &format!("{}/api/v1/experiments", server.base), Some(&annotator), None);
    assert_eq!(listing.status, 403, "{}", listing.text);

    let mut body = good.clone();
    body["dataset"] = json!("nothere@1");
    assert_eq!(post_experiment(&server, &engineer, &body).status, 404);
    body["dataset"] = json!("triage@7");
    assert_eq!(post_experiment(&server, &engineer, &body).status, 404);
    body["dataset"] = json!("triage@no-such-tag");
    assert_eq!(post_experiment(&server, &engineer, &body).status, 404);

    let mut body = good.clone();
    body["gates"] = json!(["required_tools_called >= lots"]);
    let reply = post_experiment(&server, &engineer, &body);
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], "bad_gate");
    body["gates"] = json!(["no_such_key>=0.5"]);
    let reply = post_experiment(&server, &engineer, &body);
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("no_such_key"), "{}", reply.text);

    let mut body = good.clone();
    body["outputs"] = json!([{"example_id": "t01"}, {"outputs": {}}, {"example_id": "t02", "latency_ms": -5}]);
    let reply = post_experiment(&server, &engineer, &body);
    assert_eq!(reply.status, 422, "{}", reply.text);
    let fields: Vec<&str> = reply.body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["outputs[1].example_id", "outputs[2].latency_ms"], "{}", reply.text);
    body["outputs"] = json!("not a list of runs");
    assert_eq!(post_experiment(&server, &engineer, &body).status, 422);

    let mut body = good.clone();
    body["graders"] = json!([{"name": "no_such_grader"}]);
    assert_eq!(post_experiment(&server, &engineer, &body).status, 422);
    body["graders"] = json!([{"name": "must_call", "config": [1]}]);
    assert_eq!(post_experiment(&server, &engineer, &body).status, 422);
    let mut body = good.clone();
    body["name"] = json!("has spaces/and slashes");
    assert_eq!(post_experiment(&server, &engineer, &body).status, 422);

    let compared = server.get("/api/v1/experiments/compare?a=exp-1");
    assert_eq!(compared.status, 400, "{}", compared.text);

    assert_eq!(server.get("/api/v1/experiments").body["experiments"], json!([]));
}
