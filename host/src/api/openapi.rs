//! The OpenAPI 3.1 description of the API, served at `/api/v1/openapi.json`.
//! A test checks that every operation listed here is routed.

use axum::Json;
use serde_json::{Value, json};

/// Every operation: method, path, required roles, summary, request body kind.
pub const OPERATIONS: &[(&str, &str, &str, &str, Body)] = &[
    ("get", "/api/v1/health", "", "Liveness and version", Body::None),
    ("get", "/api/v1/openapi.json", "", "This document", Body::None),
    ("post", "/api/v1/tokens", "admin", "Create a token for a role (the secret is returned once)", Body::Json),
    ("get", "/api/v1/whoami", "any", "The calling token's name and role", Body::None),
    ("get", "/api/v1/datasets", "engineer, annotator, publisher", "List datasets", Body::None),
    (
        "post",
        "/api/v1/datasets",
        "engineer",
        "Create a dataset {name, description, kind: golden|drift, schema: {inputs, outputs}} (optional JSON Schemas checked on every example)",
        Body::Json,
    ),
    (
        "get",
        "/api/v1/datasets/{reference}",
        "engineer, annotator, publisher",
        "A dataset at a reference (name, name@17, name@tag) with its tags",
        Body::None,
    ),
    (
        "get",
        "/api/v1/datasets/{reference}/versions",
        "engineer, annotator, publisher",
        "Version history with release notes",
        Body::None,
    ),
    (
        "post",
        "/api/v1/datasets/{reference}/commits",
        "engineer",
        "Commit {note, changes: [{op: add|edit|delete, ...}]} as one new version",
        Body::Json,
    ),
    (
        "get",
        "/api/v1/datasets/{reference}/examples",
        "engineer, annotator, publisher",
        "Examples of a version; filters metadata.KEY=VALUE, source, severity, persona, split, offset, limit",
        Body::None,
    ),
    (
        "post",
        "/api/v1/datasets/{reference}/examples",
        "engineer",
        "Add one example {example, note} as a new version",
        Body::Json,
    ),
    (
        "get",
        "/api/v1/datasets/{reference}/examples/{id}",
        "engineer, annotator, publisher",
        "One example of a version",
        Body::None,
    ),
    (
        "put",
        "/api/v1/datasets/{reference}/examples/{id}",
        "engineer",
        "Replace one example {example, note} as a new version",
        Body::Json,
    ),
    (
        "delete",
        "/api/v1/datasets/{reference}/examples/{id}",
        "engineer",
        "Delete one example (?note=) as a new version",
        Body::None,
    ),
    (
        "get",
        "/api/v1/datasets/{reference}/export",
        "engineer, annotator, publisher",
        "A version as JSONL (headers x-assay-version, x-assay-digest)",
        Body::None,
    ),
    (
        "post",
        "/api/v1/datasets/{reference}/import",
        "engineer",
        "Import JSONL (?note=): all lines or none, every bad line reported",
        Body::Jsonl,
    ),
    (
        "get",
        "/api/v1/datasets/{reference}/diff",
        "engineer, annotator, publisher",
        "Diff ?from=REF&to=REF: added, removed, modified with changed fields",
        Body::None,
    ),
    (
        "get",
        "/api/v1/datasets/{reference}/tags",
        "engineer, annotator, publisher",
        "Tags and their history",
        Body::None,
    ),
    ("put", "/api/v1/datasets/{reference}/tags/{tag}", "engineer", "Set or move a tag {version}", Body::Json),
    ("delete", "/api/v1/datasets/{reference}/tags/{tag}", "engineer", "Delete a tag", Body::None),
    (
        "post",
        "/api/v1/traces",
        "ingest",
        "Ingest production traces: {project, traces: [...]}, a JSON list, or JSONL (?project=); at most 10,000 per request; each refused trace reported by index, the others stored (422 when all are refused)",
        Body::Json,
    ),
    (
        "get",
        "/api/v1/traces",
        "engineer, annotator",
        "Traces of ?project=, newest first; since/until (7d, 24h, RFC 3339), limit (default 100, at most 1,000)",
        Body::None,
    ),
    ("get", "/api/v1/traces/{project}/{id}", "engineer, annotator", "One trace", Body::None),
    (
        "post",
        "/api/v1/traces/{project}/{id}/feedback",
        "ingest",
        "Add feedback {feedback: [{key, score, value, comment}]} or one object: 200 attached, 202 kept until the trace arrives",
        Body::Json,
    ),
    ("get", "/api/v1/projects", "engineer, annotator", "Trace projects with counts and retention", Body::None),
    (
        "put",
        "/api/v1/projects/{project}/retention",
        "engineer",
        "Set a project's retention {days} (null keeps traces forever)",
        Body::Json,
    ),
    (
        "post",
        "/v1/traces",
        "ingest",
        "OTLP/HTTP JSON trace export (GenAI semantic conventions); protobuf is refused with 415",
        Body::Json,
    ),
    (
        "post",
        "/api/v1/experiments",
        "engineer",
        "Run an experiment {dataset: name@ref, name, graders: [{name, config}], metadata, gates, severity_weights, baseline, max_regressions} with either outputs: [agent runs] (graded at once: 201 with summary and gate results) or target: {url, max_concurrency, timeout_ms, retries, backoff_ms} (the server calls the agent once per example: 202, then follow /status)",
        Body::Json,
    ),
    ("get", "/api/v1/experiments", "engineer", "List experiments, newest first (?dataset=NAME)", Body::None),
    (
        "get",
        "/api/v1/experiments/compare",
        "engineer",
        "Compare ?a=ID&b=ID: per key means and deltas, then examples that regressed (first) and improved, both outputs side by side",
        Body::None,
    ),
    ("get", "/api/v1/experiments/{id}", "engineer", "One experiment with every per-example result", Body::None),
    (
        "get",
        "/api/v1/experiments/{id}/status",
        "engineer",
        "Status (running, completed, failed) and, while running, the phase and examples done; ?wait_ms=N waits up to N ms for a running experiment to finish",
        Body::None,
    ),
    (
        "get",
        "/api/v1/experiments/{id}/report",
        "engineer",
        "The CI report of a completed experiment: ?format=junit (JUnit XML) or ?format=markdown",
        Body::None,
    ),
    (
        "post",
        "/api/v1/experiments/{id}/regrade",
        "engineer",
        "Grade the stored runs again without calling the agent {name, graders, metadata, gates, severity_weights, baseline, max_regressions}; with no graders named, the same pins (identical scores)",
        Body::Json,
    ),
    (
        "get",
        "/api/v1/graders",
        "engineer, publisher, annotator",
        "Every grader: the version its name serves and all published versions",
        Body::None,
    ),
    (
        "get",
        "/api/v1/graders/{name}",
        "engineer, publisher, annotator",
        "A grader's versions (digest, score keys, capabilities, retired), its alias and the alias history",
        Body::None,
    ),
    (
        "post",
        "/api/v1/graders/{name}/versions/{version}",
        "publisher",
        "Publish a component (application/wasm, or multipart/form-data with `component` and optional `tests` [{example, run, config, expect: {key: value}}]): checked against the world, trial-run, its metadata must say this name and version, its tests must pass; immutable once published (201; 200 for the same bytes again)",
        Body::Wasm,
    ),
    (
        "post",
        "/api/v1/graders/{name}/versions/{version}/retire",
        "publisher",
        "Retire a version that is not served: kept for provenance, refused for new evaluations",
        Body::None,
    ),
    (
        "post",
        "/api/v1/graders/{name}/promote",
        "publisher",
        "Serve {version} from the next grading call on, optionally only if {shadow_report} shows at least {min_agreement} (default 0.95) against what is served now",
        Body::Json,
    ),
    (
        "post",
        "/api/v1/graders/{name}/rollback",
        "publisher",
        "Serve what was served before the current version was promoted",
        Body::None,
    ),
    (
        "post",
        "/api/v1/graders/{name}/shadow",
        "publisher, engineer",
        "Grade the same pairs with the served version and {candidate} ({experiment} runs, or {dataset, outputs}); store and answer the agreement report",
        Body::Json,
    ),
    ("get", "/api/v1/shadow-reports/{id}", "publisher, engineer", "A stored shadow report", Body::None),
    (
        "get",
        "/api/v1/queues",
        "engineer, annotator",
        "Annotation queues with progress (pending, reserved, accepted, rejected)",
        Body::None,
    ),
    (
        "post",
        "/api/v1/queues",
        "engineer",
        "Create a queue {name, description, dataset, instructions, required_metadata: [keys], reservation_seconds}",
        Body::Json,
    ),
    (
        "get",
        "/api/v1/queues/{name}",
        "engineer, annotator",
        "A queue with progress by state and by reviewer",
        Body::None,
    ),
    ("get", "/api/v1/queues/{name}/items", "engineer, annotator", "Every item of a queue, in order", Body::None),
    (
        "post",
        "/api/v1/queues/{name}/items",
        "engineer",
        "Queue stored traces {items: [{project, trace_id}]}; a trace is queued once per queue",
        Body::Json,
    ),
    (
        "post",
        "/api/v1/queues/{name}/next",
        "annotator",
        "Reserve the next item for the caller: {item: {id, trace, draft, reserved_until}} or {item: null}",
        Body::None,
    ),
    (
        "post",
        "/api/v1/queues/{name}/items/{item}/accept",
        "annotator",
        "Accept a reserved item {example, note}: a new dataset version with source, trace_id and annotator; 409 reservation_expired | not_reserved_by_you | already_decided",
        Body::Json,
    ),
    (
        "post",
        "/api/v1/queues/{name}/items/{item}/reject",
        "annotator",
        "Reject a reserved item {reason}, kept in the discard log",
        Body::Json,
    ),
    (
        "post",
        "/api/v1/queues/{name}/items/{item}/skip",
        "annotator",
        "Release a reserved item; it is not offered to the caller again",
        Body::None,
    ),
    (
        "get",
        "/api/v1/queues/{name}/log",
        "engineer, annotator",
        "The discard log: rejected items with reviewer and reason",
        Body::None,
    ),
    (
        "post",
        "/api/v1/mine",
        "engineer",
        "Mine a project {project, filter (LangSmith grammar), since (7d | RFC 3339), until, sample (0-1], queue, dry_run}: matched, sampled, queued, skipped (in dataset, already queued)",
        Body::Json,
    ),
    (
        "get",
        "/api/v1/mining/templates",
        "engineer",
        "The standard rules: negative feedback, errors, latency outliers, low judge score, 1% sample",
        Body::None,
    ),
    ("get", "/api/v1/mining/rules", "engineer", "Saved mining rules with their last run", Body::None),
    (
        "post",
        "/api/v1/mining/rules",
        "engineer",
        "Save a rule {name, project, template | filter, window, sample_rate, queue, schedule (e.g. 1h)}",
        Body::Json,
    ),
    ("delete", "/api/v1/mining/rules/{name}", "engineer", "Delete a rule", Body::None),
    ("post", "/api/v1/mining/rules/{name}/run", "engineer", "Run a saved rule now {dry_run}", Body::Json),
];

/// The kind of request body an operation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Json,
    Jsonl,
    /// A WebAssembly component, or multipart/form-data with the component and its tests.
    Wasm,
}

pub async fn document() -> Json<Value> {
    Json(build())
}

/// The whole document.
pub fn build() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, roles, summary, body) in OPERATIONS {
        let mut operation = json!({
            "summary": summary,
            "parameters": path_parameters(path),
            "responses": {
                "200": {"description": "OK"},
                "201": {"description": "Created"},
                "4XX": {"description": "Refused", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if !roles.is_empty() {
            operation["security"] = json!([{"bearer": []}]);
            operation["description"] = json!(format!("Roles: {roles} (admin always)."));
        }
        match body {
            Body::None => {}
            Body::Json => {
                operation["requestBody"] =
                    json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}})
            }
            Body::Jsonl => {
                operation["requestBody"] =
                    json!({"required": true, "content": {"application/x-ndjson": {"schema": {"type": "string"}}}})
            }
            Body::Wasm => {
                operation["requestBody"] = json!({"required": true, "content": {
                    "application/wasm": {"schema": {"type": "string", "format": "binary"}},
                    "multipart/form-data": {"schema": {"type": "object", "properties": {
                        "component": {"type": "string", "format": "binary"},
                        "tests": {"type": "string"}
                    }, "required": ["component"]}}
                }})
            }
        }
        paths.entry(path.to_string()).or_insert_with(|| json!({}))[method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Assay API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"},
                        "fields": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "reason": {"type": "string"}}}}
                    }}}
                }
            }
        }
    })
}

fn path_parameters(path: &str) -> Value {
    let names: Vec<Value> = path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    Value::Array(names)
}
