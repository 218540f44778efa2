//! Production traces end to end: native and OTLP ingest on a real server
//! over a real sled store, feedback, reads, roles, retention, and the CLI.

use crate::server::{Reply, TestServer, call, try_call};
use crate::support::{assay, test_data};
use assay::store::Role;
use serde_json::{Value, json};

const DAY_MS: i64 = 86_400_000;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(test_data(&format!("traces/{name}"))).expect("the fixture exists")
}

fn production_lines() -> Vec<Value> {
    fixture("production.jsonl").lines().map(|line| serde_json::from_str(line).expect("fixture line")).collect()
}

fn post(server: &TestServer, path: &str, token: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
    call("POST", &format!("{}{path}", server.base), Some(token), Some((content_type, body.into())))
}

fn get(server: &TestServer, path: &str, token: &str) -> Reply {
    call("GET", &format!("{}{path}", server.base), Some(token), None)
}

#[track_caller]
fn assert_error(reply: &Reply, status: u16, code: &str, message_part: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], code, "{}", reply.text);
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(message_part), "{message:?} lacks {message_part:?}");
}

/// A small valid trace starting `start_ms` after the epoch.
fn trace(id: &str, project: Option<&str>, start_ms: i64) -> Value {
    let mut trace = json!({
        "id": id,
        "start_time": rfc3339(start_ms),
        "end_time": rfc3339(start_ms + 2_000),
        "inputs": {"messages": [{"role": "user", "content": format!("question {id}")}]},
        "outputs": {"messages": [{"role": "assistant", "content": "answer"}]}
    });
    if let Some(project) = project {
        trace["project"] = json!(project);
    }
    trace
}

fn rfc3339(milliseconds: i64) -> String {
    assay::traces::format_rfc3339_ms(milliseconds)
}

fn now_ms() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn project_counts(server: &TestServer) -> Vec<(String, u64)> {
    let projects = server.get("/api/v1/projects");
    assert_eq!(projects.status, 200, "{}", projects.text);
    projects.body["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|project| (project["name"].as_str().unwrap().to_owned(), project["trace_count"].as_u64().unwrap()))
        .collect()
}

#[test]
fn production_traces_are_stored_once_and_read_back() {
    let server = TestServer::start();
    let ingest = server.token(Role::Ingest);
    let body = fixture("production.jsonl");
    let first = post(&server, "/api/v1/traces", &ingest, "application/x-ndjson", body.clone());
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!((first.body["accepted"].as_u64(), first.body["duplicates"].as_u64()), (Some(40), Some(0)));
    assert_eq!(first.body["rejected"], json!([]));
    let expected_ids: Vec<Value> = production_lines().iter().map(|trace| trace["id"].clone()).collect();
    assert_eq!(first.body["ids"], Value::Array(expected_ids));
    assert_eq!(project_counts(&server), [("support-agent".to_owned(), 18), ("triage-agent".to_owned(), 22)]);

    // Sending the same traces again stores nothing new.
    let again = post(&server, "/api/v1/traces", &ingest, "application/jsonl", body);
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!((again.body["accepted"].as_u64(), again.body["duplicates"].as_u64()), (Some(0), Some(40)));
    assert_eq!(project_counts(&server), [("support-agent".to_owned(), 18), ("triage-agent".to_owned(), 22)]);

    // A trace reads back as sent, with its latency derived from the times.
    let stored = server.get("/api/v1/traces/triage-agent/tri-0004");
    assert_eq!(stored.status, 200, "{}", stored.text);
    let sent = production_lines().into_iter().find(|trace| trace["id"] == "tri-0004").unwrap();
    for field in ["start_time", "end_time", "inputs", "outputs", "tags", "metadata", "total_tokens", "name"] {
        assert_eq!(stored.body[field], sent[field], "{field}");
    }
    assert!(stored.body["latency_ms"].as_u64().unwrap() > 5_000, "tri-0004 is a slow call: {}", stored.text);
    assert_eq!(server.get("/api/v1/traces/triage-agent/tri-0003").body["feedback"][0]["score"], 2.0);
    assert_eq!(server.get("/api/v1/traces/triage-agent/sup-0001").status, 404, "projects keep their traces apart");

    // Newest first, within a window, bounded.
    let listed = server.get("/api/v1/traces?project=support-agent&since=2025-06-02T08:10:00Z&limit=3");
    assert_eq!(listed.status, 200, "{}", listed.text);
    let starts: Vec<&str> =
        listed.body["traces"].as_array().unwrap().iter().map(|trace| trace["start_time"].as_str().unwrap()).collect();
    assert_eq!(starts.len(), 3);
    assert!(starts.windows(2).all(|pair| pair[0] > pair[1]), "{starts:?}");
    assert_eq!(listed.body["traces"][0]["id"], "sup-0018");
    assert_eq!(listed.body["more"], true);
    let window =
        server.get("/api/v1/traces?project=support-agent&since=2025-06-02T08:10:00Z&until=2025-06-02T08:20:00Z");
    let ids: Vec<&str> =
        window.body["traces"].as_array().unwrap().iter().map(|trace| trace["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["sup-0006", "sup-0005", "sup-0004"], "{}", window.text);
    assert_error(&server.get("/api/v1/traces?project=nobody"), 404, "not_found", "nobody");
    assert_error(&server.get("/api/v1/traces?project=triage-agent&since=last+week"), 400, "bad_request", "since");
    assert_error(&server.get("/api/v1/traces?project=triage-agent&limit=5000"), 400, "bad_request", "limit");
    assert_error(&server.get("/api/v1/traces?project=triage-agent&colour=red"), 400, "bad_request", "colour");

    // The envelope form: a default project, and new feedback on a known trace is merged.
    let envelope = json!({"project": "support-agent", "traces": [
        {"id": "sup-0002", "start_time": "2025-06-02T08:04:16Z", "inputs": {"messages": []},
         "feedback": [{"key": "user_score", "score": 1, "comment": "came back angry"}]},
        trace("sup-new", None, 1_748_851_200_000)
    ]});
    let merged = post(&server, "/api/v1/traces", &ingest, "application/json", envelope.to_string());
    assert_eq!(merged.status, 200, "{}", merged.text);
    assert_eq!((merged.body["accepted"].as_u64(), merged.body["updated"].as_u64()), (Some(1), Some(1)));
    let updated = server.get("/api/v1/traces/support-agent/sup-0002");
    assert_eq!(updated.body["feedback"].as_array().unwrap().len(), 2, "{}", updated.text);
    assert_eq!(updated.body["inputs"], sent_inputs("sup-0002"), "the rest of a re-sent trace is ignored");
}

fn sent_inputs(id: &str) -> Value {
    production_lines().into_iter().find(|trace| trace["id"] == id).unwrap()["inputs"].clone()
}

#[test]
fn feedback_is_attached_before_and_after_its_trace_arrives() {
    let server = TestServer::start();
    let ingest = server.token(Role::Ingest);
    let path = "/api/v1/traces/triage-agent/late-1/feedback";
    let early = post(&server, path, &ingest, "application/json", json!({"key": "user_score", "score": 2}).to_string());
    assert_eq!(early.status, 202, "{}", early.text);
    assert_eq!(early.body, json!({"status": "pending", "waiting": 1}));
    assert_eq!(server.get("/api/v1/traces/triage-agent/late-1").status, 404);

    let stored = post(
        &server,
        "/api/v1/traces",
        &ingest,
        "application/json",
        json!([trace("late-1", Some("triage-agent"), 1_748_851_200_000)]).to_string(),
    );
    assert_eq!(stored.body["accepted"], 1, "{}", stored.text);
    let with_feedback = server.get("/api/v1/traces/triage-agent/late-1");
    assert_eq!(with_feedback.body["feedback"], json!([{"key": "user_score", "score": 2.0}]));

    let more = json!({"feedback": [{"key": "user_score", "score": 2}, {"key": "nurse_review", "value": "unsafe", "comment": "should page"}]});
    let after = post(&server, path, &ingest, "application/json", more.to_string());
    assert_eq!(after.status, 200, "{}", after.text);
    assert_eq!(after.body, json!({"status": "attached", "added": 1}));
    let repeated = post(&server, path, &ingest, "application/json", more.to_string());
    assert_eq!(repeated.body["added"], 0);
    let feedback = &server.get("/api/v1/traces/triage-agent/late-1").body["feedback"];
    assert_eq!(feedback.as_array().unwrap().len(), 2);
    assert_eq!(feedback[1]["value"], "unsafe");

    assert_error(&post(&server, path, &ingest, "application/json", r#"{"score": 1}"#), 422, "invalid", "feedback");
    assert_error(
        &post(&server, path, &ingest, "application/json", r#"{"feedback": [{"key": " ", "score": 1}]}"#),
        422,
        "invalid",
        "feedback[0].key",
    );
    assert_error(
        &post(&server, "/api/v1/traces/Bad%20Name/x/feedback", &ingest, "application/json", r#"{"key": "k"}"#),
        422,
        "invalid",
        "project",
    );
}

#[test]
fn malformed_items_are_reported_by_index_and_the_rest_stored() {
    let server = TestServer::start();
    let ingest = server.token(Role::Ingest);
    let mut bad_time = trace("bad-time", Some("triage-agent"), 0);
    bad_time["start_time"] = json!("yesterday at noon");
    let mut bad_role = trace("bad-role", Some("triage-agent"), 0);
    bad_role["inputs"]["messages"][0]["role"] = json!("robot");
    let batch = json!([
        trace("good-1", Some("triage-agent"), 0),
        "not a trace",
        bad_time,
        {"id": "bad-type", "project": "triage-agent", "start_time": "2025-06-02T08:00:00Z", "inputs": {"messages": "hi"}},
        trace("no-project", None, 0),
        bad_role,
        trace("good-2", Some("triage-agent"), 1_000),
    ]);
    let reply = post(&server, "/api/v1/traces", &ingest, "application/json", batch.to_string());
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["accepted"], 2);
    assert_eq!(reply.body["ids"], json!(["good-1", "good-2"]));
    let rejected: Vec<(u64, &str)> = reply.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["index"].as_u64().unwrap(), entry["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rejected,
        [(1, "$"), (2, "start_time"), (3, "inputs.messages"), (4, "project"), (5, "inputs.messages[0].role")]
    );
    assert!(reply.body["rejected"][1]["reason"].as_str().unwrap().contains("RFC 3339"), "{}", reply.text);
    for id in ["bad-time", "bad-type", "no-project", "bad-role"] {
        assert_eq!(server.get(&format!("/api/v1/traces/triage-agent/{id}")).status, 404, "{id} was stored");
    }
    assert_eq!(project_counts(&server), [("triage-agent".to_owned(), 2)]);

    // JSONL: a line that is not JSON is refused alone, by line number.
    let lines = format!(
        "{}\n\n{{\"id\": \"broken\",\n{}\n",
        trace("line-1", None, 0),
        trace("line-4", Some("support-agent"), 0)
    );
    let reply = post(&server, "/api/v1/traces?project=triage-agent", &ingest, "application/x-ndjson", lines);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["ids"], json!(["line-1", "line-4"]));
    assert_eq!(reply.body["rejected"][0]["index"], 1);
    assert_eq!(reply.body["rejected"][0]["line"], 3);
    assert_eq!(server.get("/api/v1/traces/triage-agent/line-1").status, 200, "?project= is the default project");
    assert_eq!(server.get("/api/v1/traces/support-agent/line-4").status, 200, "a trace's own project wins");

    // When every item is refused, the answer is 422 with the same report.
    let all_bad = post(&server, "/api/v1/traces", &ingest, "application/json", json!([bad_time_only()]).to_string());
    assert_error(&all_bad, 422, "invalid", "[0].start_time");
    assert_eq!(all_bad.body["accepted"], 0);
    assert_eq!(all_bad.body["rejected"][0]["field"], "start_time");
    assert_eq!(project_counts(&server), [("support-agent".to_owned(), 1), ("triage-agent".to_owned(), 3)]);
}

fn bad_time_only() -> Value {
    let mut trace = trace("all-bad", Some("triage-agent"), 0);
    trace["start_time"] = json!("2025-02-30T00:00:00Z");
    trace
}

#[test]
fn oversized_unreadable_and_unsupported_bodies_are_refused() {
    let server = TestServer::start();
    let ingest = server.token(Role::Ingest);
    let too_many: Vec<Value> = (0..10_001).map(|index| trace(&format!("t{index}"), Some("bulk"), index)).collect();
    let refused = (0..5)
        .find_map(|_| {
            try_call(
                "POST",
                &format!("{}/api/v1/traces", server.base),
                Some(&ingest),
                Some(("application/json", json!(too_many).to_string().into_bytes())),
            )
            .ok()
        })
        .expect("one attempt reads the answer");
    assert_error(&refused, 413, "too_many_traces", "10000");
    let lines: String = too_many.iter().map(|trace| format!("{trace}\n")).collect();
    assert_error(
        &post(&server, "/api/v1/traces", &ingest, "application/x-ndjson", lines),
        413,
        "too_many_traces",
        "at most 10000",
    );
    // The limit is inclusive: 10,000 traces are one batch.
    let most = &too_many[..10_000];
    let stored = post(&server, "/api/v1/traces", &ingest, "application/json", json!(most).to_string());
    assert_eq!(stored.body["accepted"], 10_000, "{}", &stored.text[..stored.text.len().min(300)]);
    assert_eq!(project_counts(&server), [("bulk".to_owned(), 10_000)]);

    assert_error(&post(&server, "/api/v1/traces", &ingest, "application/json", "{not json"), 400, "bad_json", "");
    assert_error(
        &post(&server, "/api/v1/traces", &ingest, "application/json", r#"{"project": "x", "items": []}"#),
        400,
        "bad_request",
        "items",
    );
    assert_error(&post(&server, "/api/v1/traces", &ingest, "application/json", "42"), 400, "bad_request", "list");
    assert_error(&post(&server, "/api/v1/traces", &ingest, "application/json", "[]"), 422, "invalid", "no trace");
    assert_error(
        &post(&server, "/api/v1/traces", &ingest, "text/plain", "hello"),
        415,
        "unsupported_media_type",
        "application/x-ndjson",
    );
    assert_error(
        &post(&server, "/v1/traces", &ingest, "application/x-protobuf", vec![0x0a, 0x02, 0x08, 0x01]),
        415,
        "unsupported_media_type",
        "http/json",
    );
    assert_error(&post(&server, "/v1/traces", &ingest, "text/plain", "x"), 415, "unsupported_media_type", "");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut gzip = agent
        .post(&format!("{}/v1/traces", server.base))
        .header("authorization", &format!("Bearer {ingest}"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .send(&b"\x1f\x8b\x08\x00"[..])
        .expect("the server answers");
    assert_eq!(gzip.status().as_u16(), 415);
    let text = gzip.body_mut().read_to_string().unwrap();
    assert!(text.contains("OTEL_EXPORTER_OTLP_COMPRESSION=none"), "{text}");
    assert_error(&post(&server, "/v1/traces", &ingest, "application/json", "{garbage"), 400, "bad_json", "");
    assert_error(
        &post(&server, "/v1/traces", &ingest, "application/json", r#"{"resourceSpans": 7}"#),
        400,
        "bad_request",
        "resourceSpans",
    );
    assert_eq!(project_counts(&server), [("bulk".to_owned(), 10_000)], "nothing else was written");
}

#[test]
fn otlp_genai_spans_become_traces_field_by_field() {
    let server = TestServer::start();
    let ingest = server.token(Role::Ingest);
    let reply = post(&server, "/v1/traces", &ingest, "application/json", fixture("otlp_genai.json"));
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body, json!({}));

    let support = server.get("/api/v1/traces/support-agent/5b8efff798038103d269b633813fc60c");
    assert_eq!(support.status, 200, "{}", support.text);
    let trace = &support.body;
    assert_eq!(trace["name"], "support-bot");
    assert_eq!(trace["start_time"], "2025-06-02T08:00:00.000Z");
    assert_eq!(trace["end_time"], "2025-06-02T08:00:06.500Z");
    assert_eq!(trace["latency_ms"], 6_500);
    assert_eq!(trace["total_tokens"], 595, "210 + 25 + 320 + 40 over the two chat spans");
    assert_eq!(trace["error"], Value::Null);
    assert_eq!(trace["tags"], json!(["otel", "billing"]));
    assert_eq!(
        trace["metadata"],
        json!({"persona": "frustrated_customer", "severity": "p1", "conversation_id": "conv-77"})
    );
    assert_eq!(
        trace["inputs"]["messages"],
        json!([
            {"role": "system", "content": "You are Acme's customer support agent."},
            {"role": "user", "content": "I was charged twice for order #4471."}
        ])
    );
    assert_eq!(
        trace["outputs"]["messages"],
        json!([
            {"role": "assistant", "tool_calls": [{"id": "call_1", "name": "lookup_order", "args": {"order_id": "4471"}}]},
            {"role": "tool", "content": "{\"charges\": 2, \"amount\": \"49.00\"}", "tool_call_id": "call_1", "name": "lookup_order"},
            {"role": "tool", "content": "refund r-981 issued", "tool_call_id": "call_2", "name": "issue_refund"},
            {"role": "assistant", "content": "I've refunded the duplicate charge; it will show in 3-5 days."}
        ])
    );
    assert_eq!(
        trace["outputs"]["tool_calls"],
        json!([
            {"id": "call_1", "name": "lookup_order", "args": {"order_id": "4471"}},
            {"id": "call_2", "name": "issue_refund", "args": {"order_id": "4471", "reason": "duplicate_charge"}}
        ])
    );
    assert_eq!(trace["feedback"], Value::Null, "feedback is not mapped");

    let triage = server.get("/api/v1/traces/triage-agent/0af7651916cd43dd8448eb211c80319c");
    assert_eq!(triage.status, 200, "assay.project wins over service.name: {}", triage.text);
    let trace = &triage.body;
    assert_eq!(trace["name"], "triage call");
    assert_eq!(trace["start_time"], "2025-06-02T08:01:00.000Z");
    assert_eq!(trace["latency_ms"], 8_200);
    assert_eq!(trace["error"], "page_on_call timed out");
    assert_eq!(trace["total_tokens"], 170);
    assert_eq!(trace["tags"], json!(["voice", "otel"]));
    assert_eq!(trace["metadata"], json!({"severity": "p0"}));
    assert_eq!(
        trace["inputs"]["messages"],
        json!([
            {"role": "system", "content": "You are an after-hours triage agent."},
            {"role": "user", "content": "My husband's speech is slurred since dinner."}
        ])
    );
    assert_eq!(
        trace["outputs"]["messages"],
        json!([{"role": "assistant", "content": "I'm paging the on-call physician now.",
                "tool_calls": [{"id": "toolu_9", "name": "page_on_call", "args": {"clinic_id": "clinic_482", "urgency": "high"}}]}])
    );
    assert_eq!(
        trace["outputs"]["tool_calls"],
        json!([{"id": "toolu_9", "name": "page_on_call", "args": {"clinic_id": "clinic_482", "urgency": "high"}}])
    );

    // An exporter's retry stores nothing twice.
    let retry = post(&server, "/v1/traces", &ingest, "application/json", fixture("otlp_genai.json"));
    assert_eq!(retry.body, json!({}));
    assert_eq!(project_counts(&server), [("support-agent".to_owned(), 1), ("triage-agent".to_owned(), 1)]);
}

/// The fixture's resource spans, keeping only the spans `keep` accepts.
fn otlp_subset(keep: impl Fn(&Value) -> bool) -> String {
    let mut document: Value = serde_json::from_str(&fixture("otlp_genai.json")).unwrap();
    for resource in document["resourceSpans"].as_array_mut().unwrap() {
        for scope in resource["scopeSpans"].as_array_mut().unwrap() {
            scope["spans"].as_array_mut().unwrap().retain(&keep);
        }
    }
    document.to_string()
}

fn is_root(span: &Value) -> bool {
    span.get("parentSpanId").and_then(Value::as_str).is_none_or(str::is_empty)
}

#[test]
fn otlp_spans_exported_before_their_root_wait_for_it() {
    let server = TestServer::start();
    let ingest = server.token(Role::Ingest);
    let children = post(&server, "/v1/traces", &ingest, "application/json", otlp_subset(|span| !is_root(span)));
    assert_eq!(children.body, json!({}), "{}", children.text);
    assert_eq!(server.get("/api/v1/traces/support-agent/5b8efff798038103d269b633813fc60c").status, 404);
    assert!(project_counts(&server).is_empty());

    let roots = post(&server, "/v1/traces", &ingest, "application/json", otlp_subset(is_root));
    assert_eq!(roots.body, json!({}), "{}", roots.text);
    let support = server.get("/api/v1/traces/support-agent/5b8efff798038103d269b633813fc60c");
    assert_eq!(support.body["outputs"]["tool_calls"].as_array().map(Vec::len), Some(2), "{}", support.text);
    assert_eq!(support.body["total_tokens"], 595);
    assert_eq!(server.store.pending_spans("5b8efff798038103d269b633813fc60c").unwrap(), None, "the wait is over");

    // A trace that cannot be stored is refused per the OTLP spec, its spans counted.
    let bad_project = fixture("otlp_genai.json").replace("\"assay.project\"", "\"other.attribute\"");
    let partial = post(&server, "/v1/traces", &ingest, "application/json", bad_project);
    assert_eq!(partial.status, 200, "{}", partial.text);
    assert_eq!(partial.body["partialSuccess"]["rejectedSpans"], 3, "{}", partial.text);
    let message = partial.body["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(message.contains("0af7651916cd43dd8448eb211c80319c") && message.contains("project"), "{message}");

    // With a default project (header), the same spans are stored.
    let with_default = call(
        "POST",
        &format!("{}/v1/traces?project=triage-fallback", server.base),
        Some(&ingest),
        Some((
            "application/json",
            fixture("otlp_genai.json")
                .replace("\"assay.project\"", "\"x\"")
                .replace("Triage Service", "unknown_service:python")
                .into_bytes(),
        )),
    );
    assert_eq!(with_default.body, json!({}), "{}", with_default.text);
    assert_eq!(server.get("/api/v1/traces/triage-fallback/0af7651916cd43dd8448eb211c80319c").status, 200);
}

#[test]
fn roles_decide_who_writes_and_who_reads_traces() {
    let server = TestServer::start();
    let ingest = server.token(Role::Ingest);
    let annotator = server.token(Role::Annotator);
    let engineer = server.token(Role::Engineer);
    let publisher = server.token(Role::Publisher);
    let one = json!([trace("r1", Some("triage-agent"), 0)]).to_string();
    for token in [&annotator, &engineer, &publisher] {
        assert_error(
            &post(&server, "/api/v1/traces", token, "application/json", one.clone()),
            403,
            "forbidden",
            "ingest",
        );
        assert_error(&post(&server, "/v1/traces", token, "application/json", "{}"), 403, "forbidden", "ingest");
        assert_error(
            &post(
                &server,
                "/api/v1/traces/triage-agent/r1/feedback",
                token,
                "application/json",
                r#"{"key": "k", "score": 1}"#,
            ),
            403,
            "forbidden",
            "ingest",
        );
    }
    assert_eq!(post(&server, "/api/v1/traces", &ingest, "application/json", one).status, 200);
    // An ingest token only writes: it cannot read conversations back.
    for path in ["/api/v1/traces/triage-agent/r1", "/api/v1/traces?project=triage-agent", "/api/v1/projects"] {
        assert_error(&get(&server, path, &ingest), 403, "forbidden", "engineer or annotator");
        assert_error(&get(&server, path, &publisher), 403, "forbidden", "");
        assert_eq!(get(&server, path, &annotator).status, 200, "{path}");
        assert_eq!(get(&server, path, &engineer).status, 200, "{path}");
    }
    let retention = |token: &str| {
        call(
            "PUT",
            &format!("{}/api/v1/projects/triage-agent/retention", server.base),
            Some(token),
            Some(("application/json", br#"{"days": 30}"#.to_vec())),
        )
    };
    assert_error(&retention(&annotator), 403, "forbidden", "engineer");
    assert_error(&retention(&ingest), 403, "forbidden", "engineer");
    assert_eq!(retention(&engineer).body["retention_days"], 30);
    assert_error(
        &call("POST", &format!("{}/v1/traces", server.base), None, Some(("application/json", b"{}".to_vec()))),
        401,
        "unauthorized",
        "Bearer",
    );
}

#[test]
fn retention_drops_old_traces_only() {
    let server = TestServer::start();
    let ingest = server.token(Role::Ingest);
    let now = now_ms();
    let batch: Vec<Value> = [(0, "today"), (2, "two-days"), (6, "six-days"), (8, "eight-days"), (40, "forty-days")]
        .iter()
        .map(|(age, id)| trace(id, Some("voice-agent"), now - age * DAY_MS - 60_000))
        .chain([trace("ancient", Some("keep-all"), now - 400 * DAY_MS)])
        .collect();
    assert_eq!(
        post(&server, "/api/v1/traces", &ingest, "application/json", json!(batch).to_string()).body["accepted"],
        6
    );
    let recent = server.get("/api/v1/traces?project=voice-agent&since=7d");
    let ids: Vec<&str> =
        recent.body["traces"].as_array().unwrap().iter().map(|trace| trace["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["today", "two-days", "six-days"], "since=7d: {}", recent.text);

    let set = server.send("PUT", "/api/v1/projects/voice-agent/retention", json!({"days": 7}));
    assert_eq!(set.status, 200, "{}", set.text);
    assert_error(
        &server.send("PUT", "/api/v1/projects/voice-agent/retention", json!({"days": 0})),
        422,
        "invalid",
        "days",
    );
    assert_error(
        &server.send("PUT", "/api/v1/projects/voice-agent/retention", json!({"weeks": 1})),
        422,
        "bad_json",
        "",
    );

    // What the server's hourly task does.
    let report = server.store.apply_retention(now_ms()).unwrap();
    assert_eq!(report.traces, 2);
    let remaining = server.get("/api/v1/traces?project=voice-agent");
    let ids: Vec<&str> =
        remaining.body["traces"].as_array().unwrap().iter().map(|trace| trace["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["today", "two-days", "six-days"]);
    assert_eq!(server.get("/api/v1/traces/voice-agent/eight-days").status, 404);
    assert_eq!(server.get("/api/v1/traces/keep-all/ancient").status, 200, "no retention keeps everything");
    let projects = server.get("/api/v1/projects");
    assert_eq!(projects.body["projects"][1]["name"], "voice-agent");
    assert_eq!(projects.body["projects"][1]["trace_count"], 3);
    assert_eq!(projects.body["projects"][1]["retention_days"], 7);
    assert_eq!(server.store.apply_retention(now_ms()).unwrap().traces, 0, "nothing more is old");
}

#[test]
fn the_cli_sends_files_in_batches_and_names_refused_lines() {
    let server = TestServer::start();
    let ingest = server.token(Role::Ingest);
    let engineer = server.token(Role::Engineer);
    let file = test_data("traces/production.jsonl").display().to_string();
    let as_ingest = |arguments: &[&str]| {
        let mut all = vec!["traces", "--server", &server.base, "--token", &ingest];
        all.extend_from_slice(arguments);
        assay(&all)
    };
    let as_engineer = |arguments: &[&str]| {
        let mut all = vec!["traces", "--server", &server.base, "--token", &engineer];
        all.extend_from_slice(arguments);
        assay(&all)
    };
    let stdout_json = |output: &std::process::Output| -> Value {
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!("{error}: {} / {}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
        })
    };

    let sent = as_ingest(&["ingest", &file, "--batch-size", "7", "--json"]);
    assert_eq!(sent.status.code(), Some(0), "{}", String::from_utf8_lossy(&sent.stderr));
    assert_eq!(stdout_json(&sent), json!({"accepted": 40, "duplicates": 0, "updated": 0, "rejected": []}));
    let again = as_ingest(&["ingest", &file]);
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains("accepted 0, duplicates 40"), "{again:?}");

    // Refused lines are named by their line in the file, across batches.
    let directory = tempfile::tempdir().unwrap();
    let mixed = directory.path().join("mixed.jsonl");
    let mut text = String::new();
    for index in 0..6 {
        if index == 2 {
            text.push_str("{\"id\": \"oops\"\n");
        }
        if index == 4 {
            text.push('\n');
            text.push_str(&trace("bad-role", None, 0).to_string().replace("\"user\"", "\"robot\""));
            text.push('\n');
        }
        text.push_str(&trace(&format!("cli-{index}"), None, index * 1_000).to_string());
        text.push('\n');
    }
    std::fs::write(&mixed, text).unwrap();
    let mixed = mixed.display().to_string();
    let refused = as_ingest(&["ingest", &mixed, "--project", "cli-agent", "--batch-size", "3", "--json"]);
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stderr));
    let report = stdout_json(&refused);
    assert_eq!(report["accepted"], 6);
    let places: Vec<&str> =
        report["rejected"].as_array().unwrap().iter().map(|entry| entry["at"].as_str().unwrap()).collect();
    assert_eq!(places, ["line 3", "line 7"], "{report}");
    assert_eq!(report["rejected"][1]["field"], "inputs.messages[0].role");

    // A JSON list with --project.
    let list = directory.path().join("list.json");
    std::fs::write(&list, json!([trace("listed-1", None, 0), trace("listed-2", None, 5_000)]).to_string()).unwrap();
    let listed = as_ingest(&["ingest", &list.display().to_string(), "--project", "list-agent", "--json"]);
    assert_eq!(stdout_json(&listed)["accepted"], 2, "{}", String::from_utf8_lossy(&listed.stderr));

    let shown = as_engineer(&["list", "--project", "triage-agent", "--limit", "3", "--json"]);
    assert_eq!(shown.status.code(), Some(0), "{}", String::from_utf8_lossy(&shown.stderr));
    assert_eq!(stdout_json(&shown)["traces"][0]["id"], "tri-0022");
    let table = as_engineer(&["list", "--project", "triage-agent", "--limit", "3"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("tri-0021"), "{table:?}");
    let one = as_engineer(&["show", "triage-agent", "tri-0001"]);
    let one = String::from_utf8_lossy(&one.stdout);
    assert!(one.contains("page_on_call") && one.contains("user_score 5"), "{one}");

    let feedback =
        as_ingest(&["feedback", "triage-agent", "tri-0002", "--key", "user_score", "--score", "1", "--json"]);
    assert_eq!(stdout_json(&feedback), json!({"status": "attached", "added": 1}));
    let retention = as_engineer(&["retention", "triage-agent", "30"]);
    assert!(String::from_utf8_lossy(&retention.stdout).contains("kept 30 days"), "{retention:?}");
    let projects = as_engineer(&["projects", "--json"]);
    let names: Vec<Value> =
        stdout_json(&projects)["projects"].as_array().unwrap().iter().map(|project| project["name"].clone()).collect();
    assert_eq!(names, [json!("cli-agent"), json!("list-agent"), json!("support-agent"), json!("triage-agent")]);

    // An ingest token may not read; a refusal exits 1, an unreachable server 2.
    assert_eq!(as_ingest(&["list", "--project", "triage-agent"]).status.code(), Some(1));
    let unreachable = assay(&["traces", "--server", "http://127.0.0.1:9", "ingest", &file]);
    assert_eq!(unreachable.status.code(), Some(2), "{}", String::from_utf8_lossy(&unreachable.stderr));
    assert_eq!(as_ingest(&["ingest", "/nonexistent/traces.jsonl"]).status.code(), Some(2));
}
