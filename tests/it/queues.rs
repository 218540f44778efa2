//! The closed loop on a real server: production traces (a JSONL batch and an
//! OTLP payload) mined by rules into an annotation queue, reviewed by two
//! reviewers at once, into new dataset versions and the discard log; duplicate
//! protection, the reviewers' conflicts, and bad requests.

use crate::server::{Reply, TestServer, call};
use crate::support::{assay, test_data};
use assay::store::Role;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The fixture traces start on 2025-06-02; windows reach back far enough.
const SINCE: &str = "2025-06-01T00:00:00Z";
const WINDOW: &str = "100000d";

fn post(server: &TestServer, token: &str, path: &str, body: Value) -> Reply {
    server.post_as(token, path, &body)
}

fn get(server: &TestServer, token: &str, path: &str) -> Reply {
    server.get_as(token, path)
}

/// A server with the fixture traces ingested, a golden dataset that already
/// holds tri-0008, and a queue feeding it.
fn loop_server() -> (TestServer, String) {
    let server = TestServer::start();
    let ingest = server.token(Role::Ingest);
    let jsonl = std::fs::read(test_data("traces/production.jsonl")).unwrap();
    let ingested =
        call("POST", &format!("{}/api/v1/traces", server.base), Some(&ingest), Some(("application/x-ndjson", jsonl)));
    assert_eq!(ingested.status, 200, "{}", ingested.text);
    assert_eq!(ingested.body["accepted"], 40, "{}", ingested.text);
    let otlp = std::fs::read(test_data("traces/otlp_genai.json")).unwrap();
    let exported = call("POST", &format!("{}/v1/traces", server.base), Some(&ingest), Some(("application/json", otlp)));
    assert_eq!(exported.status, 200, "{}", exported.text);

    let engineer = server.token(Role::Engineer);
    assert_eq!(post(&server, &engineer, "/api/v1/datasets", json!({"name": "triage-golden"})).status, 201);
    let existing = json!({"example": {"id": "seed", "inputs": {"messages": [{"role": "user", "content": "fever"}]},
        "metadata": {"trace_id": "tri-0008", "severity": "p1"}}, "note": "seed"});
    assert_eq!(post(&server, &engineer, "/api/v1/datasets/triage-golden/examples", existing).status, 201);
    let queue = post(
        &server,
        &engineer,
        "/api/v1/queues",
        json!({"name": "triage-review", "dataset": "triage-golden", "description": "negative feedback and errors",
               "instructions": "Escalations must page the on-call physician.", "required_metadata": ["severity", "persona"]}),
    );
    assert_eq!(queue.status, 201, "{}", queue.text);
    (server, engineer)
}

#[test]
fn traces_are_mined_by_rules_into_a_queue_and_reviewed_into_the_dataset() {
    let (server, engineer) = loop_server();

    // A dry run counts and queues nothing: tri-0003, tri-0008 (already in the dataset) and tri-0015.
    let filter = r#"and(eq(feedback_key, "user_score"), lt(feedback_score, 3))"#;
    let dry = post(
        &server,
        &engineer,
        "/api/v1/mine",
        json!({"project": "triage-agent", "filter": filter, "since": SINCE, "queue": "triage-review", "dry_run": true}),
    );
    assert_eq!(dry.status, 200, "{}", dry.text);
    assert_eq!(
        (dry.body["matched"].as_u64(), dry.body["skipped_in_dataset"].as_u64()),
        (Some(3), Some(1)),
        "{}",
        dry.text
    );
    assert_eq!(dry.body["queued"], 2);
    assert_eq!(dry.body["trace_ids"], json!(["tri-0003", "tri-0015"]));
    assert_eq!(get(&server, &engineer, "/api/v1/queues/triage-review").body["counts"]["pending"], 0);

    // The standard rules as templates: negative feedback, then errors (tri-0006, tri-0015 and the OTLP trace).
    for (name, template) in [("negative", "negative-feedback"), ("failures", "errors")] {
        let rule = post(
            &server,
            &engineer,
            "/api/v1/mining/rules",
            json!({"name": name, "project": "triage-agent", "template": template, "window": WINDOW, "queue": "triage-review", "schedule": "1h"}),
        );
        assert_eq!(rule.status, 201, "{}", rule.text);
    }
    let negative = post(&server, &engineer, "/api/v1/mining/rules/negative/run", json!({}));
    assert_eq!(
        (negative.body["queued"].as_u64(), negative.body["matched"].as_u64()),
        (Some(2), Some(3)),
        "{}",
        negative.text
    );
    let failures = post(&server, &engineer, "/api/v1/mining/rules/failures/run", json!({}));
    assert_eq!(failures.body["matched"], 3, "{}", failures.text);
    assert_eq!(
        (failures.body["queued"].as_u64(), failures.body["skipped_already_queued"].as_u64()),
        (Some(2), Some(1))
    );
    // Never queued twice.
    let again = post(&server, &engineer, "/api/v1/mining/rules/negative/run", json!({}));
    assert_eq!((again.body["queued"].as_u64(), again.body["skipped_already_queued"].as_u64()), (Some(0), Some(2)));
    let rules = get(&server, &engineer, "/api/v1/mining/rules");
    let negative_rule = rules.body["rules"].as_array().unwrap().iter().find(|rule| rule["name"] == "negative").unwrap();
    assert_eq!(negative_rule["last_report"]["skipped_already_queued"], 2, "the last run is recorded: {}", rules.text);

    let queued: Vec<String> = get(&server, &engineer, "/api/v1/queues/triage-review/items").body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["trace_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(queued.len(), 4, "{queued:?}");
    assert!(queued.contains(&"0af7651916cd43dd8448eb211c80319c".to_owned()), "the OTLP trace: {queued:?}");

    // Two reviewers at once: every item decided exactly once; tri-0006 is rejected.
    let reviewers: Vec<String> = ["rn_kelly", "dr_ames"]
        .iter()
        .map(|name| server.store.create_token(name, Role::Annotator, "test").unwrap().token)
        .collect();
    let threads: Vec<_> = reviewers
        .iter()
        .cloned()
        .map(|token| {
            let base = server.base.clone();
            std::thread::spawn(move || {
                let mut decided = Vec::new();
                loop {
                    let next = call("POST", &format!("{base}/api/v1/queues/triage-review/next"), Some(&token), None);
                    assert_eq!(next.status, 200, "{}", next.text);
                    let item = &next.body["item"];
                    if item.is_null() {
                        return decided;
                    }
                    assert!(item["trace"]["inputs"]["messages"].is_array(), "the whole trace: {item}");
                    assert!(item["reserved_until"].is_string());
                    let id = item["id"].as_str().unwrap();
                    let trace_id = item["trace_id"].as_str().unwrap().to_owned();
                    let (path, body) = if trace_id == "tri-0006" {
                        ("reject", json!({"reason": "the clinic line was down, not an agent fault"}))
                    } else {
                        let mut example = item["draft"].clone();
                        example["outputs"]["reference"] = json!("I'm paging the on-call physician now.");
                        example["metadata"]["severity"] = json!("p0");
                        example["metadata"]["persona"] = json!("worried_parent");
                        ("accept", json!({"example": example, "note": format!("reviewed {trace_id}")}))
                    };
                    let decision = call(
                        "POST",
                        &format!("{base}/api/v1/queues/triage-review/items/{id}/{path}"),
                        Some(&token),
                        Some(("application/json", body.to_string().into_bytes())),
                    );
                    assert_eq!(decision.status, 200, "{trace_id}: {}", decision.text);
                    decided.push(trace_id);
                }
            })
        })
        .collect();
    let decided: Vec<String> = threads.into_iter().flat_map(|thread| thread.join().unwrap()).collect();
    let unique: BTreeSet<&String> = decided.iter().collect();
    assert_eq!((decided.len(), unique.len()), (4, 4), "{decided:?}");

    // The dataset grew by the three accepted traces, each with its provenance.
    let dataset = get(&server, &engineer, "/api/v1/datasets/triage-golden");
    assert_eq!(dataset.body["dataset"]["latest_version"], 4, "{}", dataset.text);
    assert_eq!(dataset.body["dataset"]["example_count"], 4);
    let accepted = get(&server, &engineer, "/api/v1/datasets/triage-golden/examples/tri-0003");
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    let metadata = &accepted.body["example"]["metadata"];
    assert_eq!(metadata["trace_id"], "tri-0003");
    assert_eq!(metadata["source"], "production");
    assert!(metadata["annotator"] == "rn_kelly" || metadata["annotator"] == "dr_ames", "{metadata}");
    assert_eq!(accepted.body["example"]["outputs"]["reference"], "I'm paging the on-call physician now.");
    let log = get(&server, &engineer, "/api/v1/queues/triage-review/log");
    assert_eq!(log.body["entries"].as_array().unwrap().len(), 1, "{}", log.text);
    assert_eq!(log.body["entries"][0]["trace_id"], "tri-0006");
    let status = get(&server, &engineer, "/api/v1/queues/triage-review");
    assert_eq!(
        status.body["counts"],
        json!({"pending": 0, "reserved": 0, "accepted": 3, "rejected": 1}),
        "{}",
        status.text
    );
    let by_reviewer: u64 = status.body["reviewers"]
        .as_object()
        .unwrap()
        .values()
        .map(|counts| counts["accepted"].as_u64().unwrap() + counts["rejected"].as_u64().unwrap())
        .sum();
    assert_eq!(by_reviewer, 4);

    // A new mining run skips what the dataset now holds.
    let later = post(&server, &engineer, "/api/v1/mining/rules/negative/run", json!({"dry_run": true}));
    assert_eq!(later.body["skipped_in_dataset"], 3, "tri-0003, tri-0008 and tri-0015: {}", later.text);

    // The CLI: queue list, a dry mining run, the templates.
    let cli = assay(&["queue", "list", "--server", &server.base, "--token", &engineer]);
    assert_eq!(cli.status.code(), Some(0), "{}", String::from_utf8_lossy(&cli.stderr));
    assert!(
        String::from_utf8_lossy(&cli.stdout)
            .contains("triage-review → triage-golden: 0 pending, 0 reserved, 3 accepted, 1 rejected")
    );
    let mined = assay(&[
        "mine",
        "--project",
        "support-agent",
        "--since",
        SINCE,
        "--filter",
        "eq(error, true)",
        "--dry-run",
        "--server",
        &server.base,
        "--token",
        &engineer,
    ]);
    assert_eq!(mined.status.code(), Some(0), "{}", String::from_utf8_lossy(&mined.stderr));
    assert!(String::from_utf8_lossy(&mined.stdout).contains("2 matched"), "{}", String::from_utf8_lossy(&mined.stdout));
    let templates = assay(&["rule", "templates", "--server", &server.base, "--token", &engineer]);
    assert!(String::from_utf8_lossy(&templates.stdout).contains("negative-feedback"));
}

#[test]
fn reviewers_conflict_cleanly_and_bad_requests_write_nothing() {
    let (server, engineer) = loop_server();
    let added = post(
        &server,
        &engineer,
        "/api/v1/queues/triage-review/items",
        json!({"items": [{"project": "triage-agent", "trace_id": "tri-0001"}, {"project": "triage-agent", "trace_id": "tri-0002"}]}),
    );
    assert_eq!(added.body["queued"], 2, "{}", added.text);
    let duplicate = post(
        &server,
        &engineer,
        "/api/v1/queues/triage-review/items",
        json!({"items": [{"project": "triage-agent", "trace_id": "tri-0001"}]}),
    );
    assert_eq!(duplicate.body["already_queued"], 1, "{}", duplicate.text);
    let unknown = post(
        &server,
        &engineer,
        "/api/v1/queues/triage-review/items",
        json!({"items": [{"project": "triage-agent", "trace_id": "nope"}]}),
    );
    assert_eq!(unknown.status, 422, "{}", unknown.text);

    let kelly = server.token(Role::Annotator);
    let ames = server.store.create_token("dr_ames", Role::Annotator, "test").unwrap().token;
    let held = post(&server, &kelly, "/api/v1/queues/triage-review/next", json!({}));
    let item = held.body["item"]["id"].as_str().unwrap().to_owned();
    let draft = held.body["item"]["draft"].clone();
    // The draft is prefilled from the trace: its answer, the tools it called, its metadata.
    assert!(draft["outputs"]["reference"].as_str().unwrap().contains("paging the on-call physician"), "{draft}");
    assert_eq!(draft["outputs"]["must_call"], json!(["page_on_call"]));
    assert_eq!(draft["metadata"]["severity"], "p0");
    assert_eq!(draft["metadata"]["trace_id"], "tri-0001");

    // Another reviewer cannot decide it; missing required metadata and bad examples are refused by field.
    let stolen =
        post(&server, &ames, &format!("/api/v1/queues/triage-review/items/{item}/accept"), json!({"example": draft}));
    assert_eq!(
        (stolen.status, stolen.body["error"]["code"].as_str()),
        (409, Some("not_reserved_by_you")),
        "{}",
        stolen.text
    );
    let mut no_persona = draft.clone();
    no_persona["metadata"].as_object_mut().unwrap().remove("persona");
    let missing = post(
        &server,
        &kelly,
        &format!("/api/v1/queues/triage-review/items/{item}/accept"),
        json!({"example": no_persona}),
    );
    assert_eq!(missing.status, 422, "{}", missing.text);
    assert!(missing.text.contains("example.metadata.persona"), "{}", missing.text);
    let broken = post(
        &server,
        &kelly,
        &format!("/api/v1/queues/triage-review/items/{item}/accept"),
        json!({"example": {"inputs": {"messages": []}}}),
    );
    assert_eq!(broken.status, 422, "{}", broken.text);
    assert!(broken.text.contains("example.inputs.messages"), "{}", broken.text);
    let empty_reason =
        post(&server, &kelly, &format!("/api/v1/queues/triage-review/items/{item}/reject"), json!({"reason": ""}));
    assert_eq!(empty_reason.status, 422, "{}", empty_reason.text);
    // An engineer manages queues but does not review.
    assert_eq!(post(&server, &engineer, "/api/v1/queues/triage-review/next", json!({})).status, 403);
    assert_eq!(
        server.get("/api/v1/datasets/triage-golden").body["dataset"]["latest_version"],
        1,
        "nothing was written"
    );

    // Accepted once; the second accept is a conflict.
    let mut example = draft.clone();
    example["metadata"]["persona"] = json!("worried_parent");
    let accepted = post(
        &server,
        &kelly,
        &format!("/api/v1/queues/triage-review/items/{item}/accept"),
        json!({"example": example.clone()}),
    );
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert_eq!((accepted.body["version"].as_u64(), accepted.body["example_id"].as_str()), (Some(2), Some("tri-0001")));
    let again = post(
        &server,
        &kelly,
        &format!("/api/v1/queues/triage-review/items/{item}/accept"),
        json!({"example": example}),
    );
    assert_eq!((again.status, again.body["error"]["code"].as_str()), (409, Some("already_decided")), "{}", again.text);

    // Skip releases; the skipper is not offered it again; the other reviewer is.
    let second = post(&server, &kelly, "/api/v1/queues/triage-review/next", json!({}));
    let second_id = second.body["item"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        post(&server, &kelly, &format!("/api/v1/queues/triage-review/items/{second_id}/skip"), json!({})).status,
        200
    );
    assert!(post(&server, &kelly, "/api/v1/queues/triage-review/next", json!({})).body["item"].is_null());
    assert_eq!(
        post(&server, &ames, "/api/v1/queues/triage-review/next", json!({})).body["item"]["id"],
        second_id.as_str()
    );

    // Malformed requests.
    for (path, body, status) in [
        ("/api/v1/queues", json!({"name": "bad name!", "dataset": "triage-golden"}), 422),
        ("/api/v1/queues", json!({"name": "q", "dataset": "missing"}), 422),
        ("/api/v1/queues", json!({"name": "q", "dataset": "triage-golden", "surprise": 1}), 422),
        ("/api/v1/mine", json!({"project": "triage-agent", "filter": "and(eq(error, true)"}), 400),
        ("/api/v1/mine", json!({"project": "triage-agent", "since": "last tuesday"}), 422),
        ("/api/v1/mine", json!({"project": "triage-agent", "sample": 0}), 422),
        ("/api/v1/mine", json!({"project": "nowhere"}), 404),
        ("/api/v1/mining/rules", json!({"name": "r", "project": "triage-agent", "template": "nope"}), 422),
        ("/api/v1/mining/rules", json!({"name": "r", "project": "triage-agent", "schedule": "1s"}), 422),
        ("/api/v1/queues/missing/next", json!({}), 403),
    ] {
        let reply = post(&server, &engineer, path, body.clone());
        assert_eq!(reply.status, status, "{path} {body}: {}", reply.text);
    }
    let filter_error =
        post(&server, &engineer, "/api/v1/mine", json!({"project": "triage-agent", "filter": "and(eq(error, true)"}));
    assert!(filter_error.text.contains("column"), "the position is named: {}", filter_error.text);
    assert_eq!(post(&server, &kelly, "/api/v1/queues/missing/next", json!({})).status, 404);
    assert!(get(&server, &engineer, "/api/v1/mining/rules").body["rules"].as_array().unwrap().is_empty());
}
