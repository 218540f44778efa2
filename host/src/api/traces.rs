//! Trace routes: batch ingest (JSON or JSONL), OTLP/HTTP JSON ingest at
//! `/v1/traces`, feedback, reads, projects and retention.
//!
//! Ingest answers per item: each trace is parsed and validated on its own,
//! the valid ones are stored (one transaction, flushed), and every refused
//! one is reported by index with its field and reason. Only when every item
//! is refused is the answer an error (422).

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::model::FieldError;
use crate::store::{FeedbackOutcome, IngestOutcome, Role, Store, TraceScan};
use crate::traces::otlp::{self, MappingError, SpanGroup};
use crate::traces::{Feedback, Trace};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::ops::ControlFlow;

/// Largest ingest body (a batch of traces, or an OTLP request), in bytes.
pub const TRACE_BODY_BYTES_MAX: usize = 64 << 20;
/// Most traces in one ingest request.
pub const TRACES_PER_BATCH_MAX: usize = 10_000;
/// Most traces one list request returns.
pub const TRACES_PER_PAGE_MAX: usize = 1_000;
/// Refusals listed in an OTLP `errorMessage`; the rest are counted.
const OTLP_REASONS_MAX: usize = 10;

/// Who may send traces and feedback.
const WRITERS: &[Role] = &[Role::Ingest];
/// Who may read them. An `ingest` token only writes: a leaked agent token
/// does not expose the conversations of every user.
const READERS: &[Role] = &[Role::Engineer, Role::Annotator];
/// Who may change a project's retention.
const OPERATORS: &[Role] = &[Role::Engineer];

type QueryOf<T> = Result<Query<T>, QueryRejection>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestQuery {
    /// The project of traces that name none (the only way JSONL can).
    #[serde(default)]
    project: Option<String>,
}

/// `POST /api/v1/traces`: `{"project", "traces": [...]}`, a bare JSON list,
/// or JSONL (`application/x-ndjson`, `application/jsonl`).
pub async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: QueryOf<IngestQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(WRITERS)?;
    let Query(query) = query?;
    let kind = body_kind(&headers)?;
    let body = body?;
    let store = state.store.clone();
    // Parsing and storing ten thousand traces is CPU and disk work: keep it
    // off the async workers.
    tokio::task::spawn_blocking(move || ingest_blocking(&store, kind, &body, query.project))
        .await
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string()))?
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    JsonLines,
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let content_type = media_type(headers);
    match content_type.as_str() {
        "application/json" | "" => Ok(BodyKind::Json),
        "application/x-ndjson" | "application/jsonl" | "application/json-lines" | "application/jsonlines" => {
            Ok(BodyKind::JsonLines)
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "content type {other:?} is not accepted; send application/json ({{\"project\", \"traces\": [...]}} or a list) or application/x-ndjson (one trace per line)"
            ),
        )),
    }
}

/// The media type of `Content-Type`, lowercase, without parameters.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// One item of a batch: where it was, and what it parsed to.
struct Item {
    /// Position in the batch (JSONL: among the non-blank lines).
    index: usize,
    /// Line number, for JSONL.
    line: Option<usize>,
    parsed: Result<Trace, Vec<FieldError>>,
}

fn ingest_blocking(
    store: &Store,
    kind: BodyKind,
    body: &[u8],
    query_project: Option<String>,
) -> Result<Response, ApiError> {
    let (body_project, items) = match kind {
        BodyKind::Json => parse_json_batch(body)?,
        BodyKind::JsonLines => (None, parse_json_lines(body)?),
    };
    if items.is_empty() {
        return Err(ApiError::invalid(vec![FieldError { field: "traces".into(), reason: "hold no trace".into() }]));
    }
    let default_project = body_project.or(query_project);
    let mut positions = Vec::new();
    let mut traces = Vec::new();
    let mut rejected = Vec::new();
    let mut ids: Vec<Option<String>> = vec![None; items.len()];
    for item in items {
        match item.parsed {
            Ok(trace) => {
                positions.push((item.index, item.line, trace.id.clone()));
                traces.push(trace);
            }
            Err(errors) => rejected.push(rejection(item.index, item.line, None, &errors)),
        }
    }
    let report = store.ingest_traces(default_project.as_deref(), traces)?;
    for ((index, line, id), outcome) in positions.into_iter().zip(&report.outcomes) {
        match outcome {
            IngestOutcome::Rejected(errors) => rejected.push(rejection(index, line, Some(&id), errors)),
            _ => ids[index] = Some(id),
        }
    }
    rejected.sort_by_key(|entry| entry["index"].as_u64());
    let stored = report.accepted + report.duplicates + report.updated;
    let mut answer = json!({
        "accepted": report.accepted,
        "duplicates": report.duplicates,
        "updated": report.updated,
        "rejected": rejected,
        "ids": ids.into_iter().flatten().collect::<Vec<_>>(),
    });
    if stored == 0 {
        let fields: Vec<Value> = answer["rejected"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|entry| json!({"field": format!("[{}].{}", entry["index"], text(&entry["field"])), "reason": entry["reason"]}))
            .collect();
        let message = format!(
            "every trace was refused: {}",
            fields
                .iter()
                .take(5)
                .map(|field| format!("{}: {}", text(&field["field"]), text(&field["reason"])))
                .collect::<Vec<_>>()
                .join("; ")
        );
        answer["error"] = json!({"code": "invalid", "message": message, "fields": fields});
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(answer)).into_response());
    }
    Ok(Json(answer).into_response())
}

fn text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}

fn rejection(index: usize, line: Option<usize>, id: Option<&str>, errors: &[FieldError]) -> Value {
    let first = errors.first();
    let mut entry = json!({
        "index": index,
        "field": first.map_or("$", |error| error.field.as_str()),
        "reason": first.map_or("refused", |error| error.reason.as_str()),
        "errors": errors,
    });
    if let Some(line) = line {
        entry["line"] = json!(line);
    }
    if let Some(id) = id {
        entry["id"] = json!(id);
    }
    entry
}

fn too_many_traces(count: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_traces",
        format!("{count} traces in one request; send at most {TRACES_PER_BATCH_MAX} per request"),
    )
}

/// `{"project", "traces": [...]}` or `[...]`; each item parsed on its own.
fn parse_json_batch(body: &[u8]) -> Result<(Option<String>, Vec<Item>), ApiError> {
    let document: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_json", format!("the body is not JSON: {error}"))
    })?;
    let shape_error =
        || ApiError::bad_request("the body must be a list of traces or {\"project\": \"...\", \"traces\": [...]}");
    let (project, list) = match document {
        Value::Array(list) => (None, list),
        Value::Object(mut object) => {
            if let Some(key) = object.keys().find(|key| *key != "project" && *key != "traces") {
                return Err(ApiError::bad_request(format!(
                    "unknown field {key:?}: the body must be a list of traces or {{\"project\": \"...\", \"traces\": [...]}}"
                )));
            }
            let project = match object.remove("project") {
                None | Some(Value::Null) => None,
                Some(Value::String(project)) => Some(project),
                Some(_) => return Err(ApiError::bad_request("project must be a string")),
            };
            match object.remove("traces") {
                Some(Value::Array(list)) => (project, list),
                _ => return Err(shape_error()),
            }
        }
        _ => return Err(shape_error()),
    };
    if list.len() > TRACES_PER_BATCH_MAX {
        return Err(too_many_traces(list.len()));
    }
    let items = list
        .into_iter()
        .enumerate()
        .map(|(index, value)| Item { index, line: None, parsed: trace_from_value(value) })
        .collect();
    Ok((project, items))
}

/// One trace per non-blank line; a line that is not JSON is refused alone.
fn parse_json_lines(body: &[u8]) -> Result<Vec<Item>, ApiError> {
    let body = body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(body);
    let lines: Vec<(usize, &[u8])> = body
        .split(|byte| *byte == b'\n')
        .enumerate()
        .map(|(index, line)| (index + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .collect();
    if lines.len() > TRACES_PER_BATCH_MAX {
        return Err(too_many_traces(lines.len()));
    }
    Ok(lines
        .into_iter()
        .enumerate()
        .map(|(index, (line, bytes))| Item {
            index,
            line: Some(line),
            parsed: match std::str::from_utf8(bytes) {
                // The plain parse is fast; only a refused line is parsed again to name its field.
                Ok(text) => serde_json::from_str::<Trace>(text)
                    .or_else(|_| crate::model::parse::<Trace>(text).map_err(|error| error.field_errors())),
                Err(_) => Err(vec![FieldError { field: "$".into(), reason: "the line is not UTF-8".into() }]),
            },
        })
        .collect())
}

/// A trace from a JSON value, naming the field of a type error.
fn trace_from_value(value: Value) -> Result<Trace, Vec<FieldError>> {
    let kind = match &value {
        Value::Object(_) => None,
        Value::Array(_) => Some("a list"),
        Value::String(_) => Some("a string"),
        Value::Number(_) => Some("a number"),
        Value::Bool(_) => Some("a boolean"),
        Value::Null => Some("null"),
    };
    if let Some(kind) = kind {
        return Err(vec![FieldError {
            field: "$".into(),
            reason: format!("a trace must be a JSON object, not {kind}"),
        }]);
    }
    // The plain conversion is fast; only a refused item is converted again to name its field.
    if let Ok(trace) = Trace::deserialize(&value) {
        return Ok(trace);
    }
    serde_path_to_error::deserialize::<_, Trace>(value).map_err(|error| {
        let path = error.path().to_string();
        vec![FieldError { field: if path == "." { "$".into() } else { path }, reason: error.into_inner().to_string() }]
    })
}

/// `{"feedback": [...]}` or one feedback object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FeedbackRequest {
    Many { feedback: Vec<Feedback> },
    One(Feedback),
}

/// `POST /api/v1/traces/{project}/{id}/feedback`: attached now (200) or when the trace arrives (202).
pub async fn add_feedback(
    State(state): State<AppState>,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(WRITERS)?;
    let Json(body) = body?;
    let feedback = match serde_json::from_value::<FeedbackRequest>(body) {
        Ok(FeedbackRequest::Many { feedback }) => feedback,
        Ok(FeedbackRequest::One(feedback)) => vec![feedback],
        Err(_) => {
            return Err(ApiError::invalid(vec![FieldError {
                field: "$".into(),
                reason:
                    "expected {\"feedback\": [{\"key\", \"score\", \"value\", \"comment\"}, ...]} or one such object"
                        .into(),
            }]));
        }
    };
    let store = state.store.clone();
    let outcome = tokio::task::spawn_blocking(move || store.add_feedback(&project, &id, feedback))
        .await
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string()))??;
    let status = match outcome {
        FeedbackOutcome::Attached { .. } => StatusCode::OK,
        FeedbackOutcome::Pending { .. } => StatusCode::ACCEPTED,
    };
    Ok((status, Json(json!(outcome))).into_response())
}

/// `GET /api/v1/traces/{project}/{id}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
) -> Result<Json<Trace>, ApiError> {
    caller.require(READERS)?;
    Ok(Json(state.store.trace(&project, &id)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    project: String,
    /// A duration back from now (`7d`, `24h`, `30m`, `90s`, `2w`) or an RFC 3339 time.
    #[serde(default)]
    since: Option<String>,
    /// Same forms as `since`; traces starting before it.
    #[serde(default)]
    until: Option<String>,
    /// At most this many (default 100, at most 1,000).
    #[serde(default)]
    limit: Option<usize>,
    // The mining work adds `filter` here (the LangSmith filter language):
    // `Filter::parse` it, scan with `summary_only: !filter.needs_body()`,
    // and keep the traces it `matches`.
}

/// `GET /api/v1/traces?project=P&since=7d&until=...&limit=100`: newest first.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryOf<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(READERS)?;
    let Query(query) = query?;
    let now = crate::store::now_ms();
    let since_ms = query.since.as_deref().map(|text| instant("since", text, now)).transpose()?;
    let until_ms = query.until.as_deref().map(|text| instant("until", text, now)).transpose()?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > TRACES_PER_PAGE_MAX {
        return Err(ApiError::bad_request(format!("limit must be 1 to {TRACES_PER_PAGE_MAX}")));
    }
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        store.trace_project(&query.project)?;
        let scan = TraceScan { since_ms, until_ms, newest_first: true, summary_only: false };
        let mut traces = Vec::new();
        let mut more = false;
        store.scan_traces(&query.project, &scan, |trace| {
            if traces.len() == limit {
                more = true;
                return ControlFlow::Break(());
            }
            traces.push(trace);
            ControlFlow::Continue(())
        })?;
        Ok(Json(json!({"project": query.project, "traces": traces, "more": more})))
    })
    .await
    .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string()))?
}

/// `GET /api/v1/projects`: every project with its trace count and retention.
pub async fn projects(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(READERS)?;
    Ok(Json(json!({"projects": state.store.list_projects()?})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRequest {
    /// Days to keep traces; `null` keeps them forever.
    days: Option<u32>,
}

/// `PUT /api/v1/projects/{project}/retention` `{"days": N}`.
pub async fn set_retention(
    State(state): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
    body: Result<Json<RetentionRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(OPERATORS)?;
    let Json(request) = body?;
    Ok(Json(json!(state.store.set_retention(&project, request.days)?)))
}

/// `POST /v1/traces`: an OTLP/HTTP JSON `ExportTraceServiceRequest` of
/// GenAI spans (see `traces::otlp`). The project is the resource's
/// `assay.project` or `service.name`, else the `x-assay-project` header or
/// `?project=`. Spans whose root has not arrived wait for it (up to
/// `PENDING_SPANS_SECONDS`). Answers per the OTLP spec: `{}`, or
/// `{"partialSuccess": {"rejectedSpans", "errorMessage"}}`.
pub async fn otlp_ingest(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: QueryOf<IngestQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(WRITERS)?;
    let Query(query) = query?;
    let unsupported =
        |message: &str| ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message);
    match media_type(&headers).as_str() {
        "application/json" => {}
        "application/x-protobuf" | "application/protobuf" => {
            return Err(unsupported(
                "OTLP/HTTP protobuf is not supported: configure the exporter for JSON (OTEL_EXPORTER_OTLP_PROTOCOL=http/json)",
            ));
        }
        other => {
            return Err(unsupported(&format!(
                "content type {other:?} is not accepted; OTLP/HTTP JSON is application/json"
            )));
        }
    }
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING).and_then(|value| value.to_str().ok())
        && !encoding.eq_ignore_ascii_case("identity")
    {
        return Err(unsupported(&format!(
            "content encoding {encoding:?} is not supported: send uncompressed JSON (OTEL_EXPORTER_OTLP_COMPRESSION=none)"
        )));
    }
    let default_project =
        headers.get("x-assay-project").and_then(|value| value.to_str().ok()).map(str::to_owned).or(query.project);
    let body = body?;
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || otlp_blocking(&store, &body, default_project.as_deref()))
        .await
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string()))?
}

fn otlp_blocking(store: &Store, body: &[u8], default_project: Option<&str>) -> Result<Response, ApiError> {
    let document: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_json", format!("the body is not JSON: {error}"))
    })?;
    let groups = otlp::group_spans(&document).map_err(ApiError::bad_request)?;
    if groups.len() > TRACES_PER_BATCH_MAX {
        return Err(too_many_traces(groups.len()));
    }
    let mut traces = Vec::new();
    let mut span_counts = Vec::new();
    let mut keep = Vec::new();
    let mut done = Vec::new();
    let mut rejected_spans = 0usize;
    let mut reasons = Vec::new();
    for group in groups {
        let trace_id = group.trace_id.clone();
        let mut group = group;
        let mut waited = false;
        if let Some(bytes) = store.pending_spans(&trace_id)? {
            // Spans that came earlier are read back; unreadable ones (from
            // another build) are dropped rather than failing this request.
            if let Ok(mut earlier) = serde_json::from_slice::<SpanGroup>(&bytes) {
                earlier.absorb(group);
                group = earlier;
            }
            waited = true;
        }
        match otlp::group_to_trace(&group, default_project) {
            Ok(trace) => {
                span_counts.push(group.spans.len());
                traces.push(trace);
                if waited {
                    done.push(trace_id);
                }
            }
            Err(MappingError::NoRootSpan) => {
                let bytes = serde_json::to_vec(&group)
                    .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string()))?;
                keep.push((trace_id, bytes));
            }
            Err(error) => {
                rejected_spans += group.spans.len();
                reasons.push(error.describe(&trace_id));
                if waited {
                    done.push(trace_id);
                }
            }
        }
    }
    let report = store.ingest_traces(default_project, traces)?;
    for (outcome, spans) in report.outcomes.iter().zip(span_counts) {
        if let IngestOutcome::Rejected(errors) = outcome {
            rejected_spans += spans;
            reasons.push(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
        }
    }
    store.keep_pending_spans(keep, done)?;
    if rejected_spans == 0 {
        return Ok(Json(json!({})).into_response());
    }
    let mut message = reasons.iter().take(OTLP_REASONS_MAX).cloned().collect::<Vec<_>>().join("; ");
    if reasons.len() > OTLP_REASONS_MAX {
        message.push_str(&format!("; and {} more", reasons.len() - OTLP_REASONS_MAX));
    }
    Ok(Json(json!({"partialSuccess": {"rejectedSpans": rejected_spans, "errorMessage": message}})).into_response())
}

/// `7d`, `24h`, `30m`, `90s`, `2w` back from `now_ms`, or an RFC 3339 time.
fn instant(parameter: &str, text: &str, now_ms: i64) -> Result<i64, ApiError> {
    crate::mining::instant_ms(text, now_ms).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{parameter} must be a duration back from now (7d, 24h, 30m, 90s, 2w) or an RFC 3339 time, got {text:?}"
        ))
    })
}
