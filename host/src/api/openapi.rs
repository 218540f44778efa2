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
        "/api/v1/experiments",
        "engineer",
        "Run an experiment {dataset: name@ref, name, graders: [{name, config}], outputs: [agent runs], metadata, gates}: grade with the reference graders, store every score with provenance, answer with summary and gate results",
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
];

/// The kind of request body an operation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Json,
    Jsonl,
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
