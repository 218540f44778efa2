//! Annotation queue routes: engineers create queues and add traces; domain
//! experts (the `annotator` role) take the next item, see the whole trace with
//! a draft example prefilled from it, and accept (into the dataset as a new
//! version), reject with a reason (the discard log) or skip.

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::model::{Example, FieldError};
use crate::store::{Queue, QueueItem, ReviewError, Role, StoreError, now_ms};
use crate::traces::Trace;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Who manages queues.
const MANAGERS: &[Role] = &[Role::Engineer];
/// Who reviews.
const REVIEWERS: &[Role] = &[Role::Annotator];
/// Who may read queues.
const READERS: &[Role] = &[Role::Engineer, Role::Annotator];

impl From<ReviewError> for ApiError {
    fn from(error: ReviewError) -> ApiError {
        match error {
            ReviewError::Store(error) => error.into(),
            other => ApiError::new(StatusCode::CONFLICT, other.code(), other.to_string()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateQueue {
    name: String,
    #[serde(default)]
    description: String,
    dataset: String,
    #[serde(default)]
    instructions: String,
    #[serde(default)]
    required_metadata: Vec<String>,
    #[serde(default)]
    reservation_seconds: Option<u64>,
}

/// `POST /api/v1/queues`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateQueue>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(MANAGERS)?;
    let Json(request) = body?;
    let queue = Queue {
        name: request.name,
        description: request.description,
        dataset: request.dataset,
        instructions: request.instructions,
        required_metadata: request.required_metadata,
        reservation_seconds: request.reservation_seconds.unwrap_or(crate::store::RESERVATION_SECONDS_DEFAULT),
        created_by: String::new(),
        created_at: String::new(),
    };
    let created = state.store.create_queue(queue, &caller.name)?;
    Ok((StatusCode::CREATED, Json(json!(created))))
}

/// `GET /api/v1/queues`: every queue with its progress.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(READERS)?;
    Ok(Json(json!({"queues": state.store.list_queues(now_ms())?})))
}

/// `GET /api/v1/queues/{name}`: progress by state and by reviewer.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(READERS)?;
    Ok(Json(json!(state.store.queue_status(&name, now_ms())?)))
}

/// `GET /api/v1/queues/{name}/items`: every item, in queue order.
pub async fn items(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(READERS)?;
    state.store.queue(&name)?;
    Ok(Json(json!({"items": state.store.queue_items(&name)?})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddItems {
    items: Vec<TraceRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRef {
    project: String,
    trace_id: String,
}

/// `POST /api/v1/queues/{name}/items`: queue stored traces by hand; unknown
/// traces are refused by index, traces already queued are counted.
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<AddItems>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(MANAGERS)?;
    let Json(request) = body?;
    state.store.queue(&name)?;
    let mut errors = Vec::new();
    let mut traces = Vec::new();
    for (index, item) in request.items.into_iter().enumerate() {
        match state.store.trace(&item.project, &item.trace_id) {
            Ok(_) => traces.push((item.project, item.trace_id)),
            Err(StoreError::NotFound { .. }) => errors.push(FieldError {
                field: format!("items[{index}]"),
                reason: format!("no trace {:?} in project {:?}", item.trace_id, item.project),
            }),
            Err(error) => return Err(error.into()),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    Ok(Json(json!(state.store.add_to_queue(&name, &traces, &caller.name)?)))
}

/// `POST /api/v1/queues/{name}/next`: reserves the next item for the caller
/// and answers it with its whole trace and a draft example; `{"item": null}`
/// when the queue has nothing for this reviewer.
pub async fn next(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(REVIEWERS)?;
    let queue = state.store.queue(&name)?;
    let Some(item) = state.store.next_in_queue(&name, &caller.name, now_ms())? else {
        return Ok(Json(json!({"item": null})));
    };
    Ok(Json(json!({"item": with_trace(&state, &queue, item)?})))
}

/// An item as a reviewer sees it: the item, its trace and a draft example.
fn with_trace(state: &AppState, queue: &Queue, item: QueueItem) -> Result<Value, ApiError> {
    let trace = state.store.trace(&item.project, &item.trace_id)?;
    let mut value = json!(item);
    if let Some(until) = item.reserved_until_ms {
        value["reserved_until"] = json!(rfc3339_of_ms(until));
    }
    value["draft"] = draft(&trace, queue);
    value["trace"] = json!(trace);
    Ok(value)
}

/// The example a reviewer starts from: the trace's inputs, its final answer
/// as the reference, the tools it called as `must_call`, and the metadata the
/// trace already carries for the queue's required fields.
pub fn draft(trace: &Trace, queue: &Queue) -> Value {
    let reference = trace
        .outputs
        .messages
        .iter()
        .rev()
        .find(|message| message.role == "assistant" && !message.content.is_empty())
        .map(|message| message.content.clone());
    let available: Vec<&str> = trace.inputs.tools.iter().map(|tool| tool.name()).collect();
    let called: Vec<&str> = match &trace.outputs.tool_calls {
        Some(calls) => calls.iter().map(|call| call.name.as_str()).collect(),
        None => trace
            .outputs
            .messages
            .iter()
            .flat_map(|message| &message.tool_calls)
            .map(|call| call.name.as_str())
            .collect(),
    };
    let mut must_call: Vec<&str> = Vec::new();
    for name in called {
        if (available.is_empty() || available.contains(&name)) && !must_call.contains(&name) {
            must_call.push(name);
        }
    }
    let mut metadata = Map::new();
    metadata.insert("source".into(), json!("production"));
    metadata.insert("trace_id".into(), json!(trace.id));
    for key in queue.required_metadata.iter().map(String::as_str).chain(["severity", "persona"]) {
        if let Some(value) = trace.metadata.get(key).filter(|value| value.is_string()) {
            metadata.insert(key.to_owned(), value.clone());
        }
    }
    json!({
        "inputs": trace.inputs,
        "outputs": {"reference": reference, "must_call": must_call, "must_not_say": []},
        "metadata": metadata,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accept {
    example: Value,
    #[serde(default)]
    note: String,
}

/// `POST /api/v1/queues/{name}/items/{item}/accept`: the corrected example
/// becomes a new version of the queue's dataset.
pub async fn accept(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, item)): Path<(String, String)>,
    body: Result<Json<Accept>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(REVIEWERS)?;
    let Json(request) = body?;
    let example = parse_example(&request.example)?;
    let accepted = state.store.accept_item(&name, &item, &caller.name, example, &request.note, now_ms())?;
    Ok(Json(json!(accepted)))
}

/// The reviewer's example, every bad field named under `example.`.
fn parse_example(value: &Value) -> Result<Example, ApiError> {
    let prefixed = |error: FieldError| FieldError {
        field: format!("example.{}", error.field.trim_start_matches('$')),
        reason: error.reason,
    };
    let example = crate::model::Example::from_json(&value.to_string())
        .map_err(|error| ApiError::invalid(error.field_errors().into_iter().map(prefixed).collect()))?;
    Ok(example)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reject {
    reason: String,
}

/// `POST /api/v1/queues/{name}/items/{item}/reject`.
pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, item)): Path<(String, String)>,
    body: Result<Json<Reject>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(REVIEWERS)?;
    let Json(request) = body?;
    let rejected = state.store.reject_item(&name, &item, &caller.name, &request.reason, now_ms())?;
    Ok(Json(json!({"item": rejected})))
}

/// `POST /api/v1/queues/{name}/items/{item}/skip`.
pub async fn skip(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, item)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require(REVIEWERS)?;
    let released = state.store.skip_item(&name, &item, &caller.name, now_ms())?;
    Ok(Json(json!({"item": released})))
}

/// `GET /api/v1/queues/{name}/log`: the discard log.
pub async fn log(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(READERS)?;
    Ok(Json(json!({"entries": state.store.discard_log(&name)?})))
}

/// RFC 3339 UTC with millisecond precision.
fn rfc3339_of_ms(ms: i64) -> String {
    let seconds = ms.div_euclid(1_000).max(0) as u64;
    let text = crate::store::format_rfc3339(seconds);
    format!("{}.{:03}Z", text.trim_end_matches('Z'), ms.rem_euclid(1_000))
}
