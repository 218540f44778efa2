//! Dataset routes: create, read any version, commit, import, export, diff, tags.

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::model::Example;
use crate::store::{Change, Commit, DatasetKind, DatasetSchema, ExampleFilter, NewDataset, Role};
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection, StringRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Who may read datasets.
const READERS: &[Role] = &[Role::Engineer, Role::Annotator, Role::Publisher];
/// Who may change them.
const WRITERS: &[Role] = &[Role::Engineer];

type JsonBody<T> = Result<Json<T>, JsonRejection>;
type QueryOf<T> = Result<Query<T>, QueryRejection>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDataset {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "golden")]
    kind: DatasetKind,
    /// `{"inputs": <JSON Schema>, "outputs": <JSON Schema>}`, either optional.
    #[serde(default)]
    schema: DatasetSchema,
}

fn golden() -> DatasetKind {
    DatasetKind::Golden
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<CreateDataset>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(WRITERS)?;
    let Json(request) = body?;
    let dataset = state.store.create_dataset(NewDataset {
        name: request.name,
        description: request.description,
        kind: request.kind,
        schema: request.schema,
    })?;
    Ok((StatusCode::CREATED, Json(dataset)))
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(READERS)?;
    Ok(Json(json!({"datasets": state.store.list_datasets()?})))
}

/// `GET /datasets/{reference}`: the dataset, the version the reference names, and its tags.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(READERS)?;
    let (name, version) = state.store.resolve(&reference)?;
    Ok(Json(json!({
        "dataset": state.store.dataset(&name)?,
        "version": state.store.version_info(&name, version)?,
        "tags": state.store.tags(&name)?,
    })))
}

pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(READERS)?;
    let name = bare_name(&reference)?;
    Ok(Json(json!({"versions": state.store.history(name)?})))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChangeRequest {
    Add { example: Example },
    Edit { id: String, example: Example },
    Delete { id: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    #[serde(default)]
    note: String,
    changes: Vec<ChangeRequest>,
}

/// `POST /datasets/{name}/commits`: several changes as one new version.
pub async fn commit(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    body: JsonBody<CommitRequest>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(WRITERS)?;
    let name = bare_name(&reference)?;
    let Json(request) = body?;
    let changes = request
        .changes
        .into_iter()
        .map(|change| match change {
            ChangeRequest::Add { example } => Change::Add(example),
            ChangeRequest::Edit { id, example } => Change::Edit { id, example },
            ChangeRequest::Delete { id } => Change::Delete { id },
        })
        .collect();
    let version = state.store.commit(name, Commit { author: caller.name, note: request.note, changes })?;
    Ok((StatusCode::CREATED, Json(version)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExampleRequest {
    example: Example,
    #[serde(default)]
    note: String,
}

/// `POST /datasets/{name}/examples`: adds one example as a new version.
pub async fn add_example(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    body: JsonBody<ExampleRequest>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(WRITERS)?;
    let name = bare_name(&reference)?;
    let Json(mut request) = body?;
    let id = request.example.id.get_or_insert_with(crate::store::new_example_id).clone();
    let note = default_note(request.note, || format!("add {id}"));
    commit_one(&state, caller, name, id, note, Change::Add(request.example))
}

/// `PUT /datasets/{name}/examples/{id}`: replaces one example as a new version.
pub async fn edit_example(
    State(state): State<AppState>,
    caller: Caller,
    Path((reference, id)): Path<(String, String)>,
    body: JsonBody<ExampleRequest>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(WRITERS)?;
    let name = bare_name(&reference)?;
    let Json(request) = body?;
    let note = default_note(request.note, || format!("edit {id}"));
    let change = Change::Edit { id: id.clone(), example: request.example };
    commit_one(&state, caller, name, id, note, change)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteQuery {
    #[serde(default)]
    note: String,
}

/// `DELETE /datasets/{name}/examples/{id}?note=...`: removes one example as a new version.
pub async fn delete_example(
    State(state): State<AppState>,
    caller: Caller,
    Path((reference, id)): Path<(String, String)>,
    query: QueryOf<NoteQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(WRITERS)?;
    let name = bare_name(&reference)?;
    let Query(query) = query?;
    let note = default_note(query.note, || format!("delete {id}"));
    let change = Change::Delete { id: id.clone() };
    commit_one(&state, caller, name, id, note, change)
}

/// `GET /datasets/{reference}/examples`: one page of a version, filtered by
/// `metadata.KEY=VALUE` (or the shortcuts `source`, `severity`, `persona`),
/// `split`, `offset` and `limit`.
pub async fn list_examples(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    query: QueryOf<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    caller.require(READERS)?;
    let Query(query) = query?;
    let (name, version) = state.store.resolve(&reference)?;
    let mut filter = ExampleFilter::default();
    for (key, value) in query {
        match key.as_str() {
            "split" => filter.split = Some(value),
            "offset" => filter.offset = parse_number(&key, &value)?,
            "limit" => filter.limit = Some(parse_number(&key, &value)?),
            "source" | "severity" | "persona" => filter.metadata.push((key, value)),
            other => match other.strip_prefix("metadata.") {
                Some(metadata_key) if !metadata_key.is_empty() => {
                    filter.metadata.push((metadata_key.to_owned(), value))
                }
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter {other:?}; use metadata.KEY=VALUE, source, severity, persona, split, offset or limit"
                    )));
                }
            },
        }
    }
    filter.metadata.sort();
    let page = state.store.list_examples(&name, version, filter)?;
    Ok(Json(json!({"dataset": name, "version": version, "total": page.total, "examples": page.examples})))
}

pub async fn show_example(
    State(state): State<AppState>,
    caller: Caller,
    Path((reference, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require(READERS)?;
    let (name, version) = state.store.resolve(&reference)?;
    Ok(Json(json!(state.store.example(&name, version, &id)?)))
}

/// `GET /datasets/{reference}/export`: the version as JSONL.
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    let (name, version) = state.store.resolve(&reference)?;
    let info = state.store.version_info(&name, version)?;
    let body = state.store.export_jsonl(&name, version)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_owned()),
            (header::HeaderName::from_static("x-assay-version"), version.to_string()),
            (header::HeaderName::from_static("x-assay-digest"), info.digest),
        ],
        body,
    ))
}

/// `POST /datasets/{name}/import?note=...`: a JSONL body, all or nothing.
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    query: QueryOf<NoteQuery>,
    body: Result<String, StringRejection>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(WRITERS)?;
    let name = bare_name(&reference)?.to_owned();
    let Query(query) = query?;
    let body = body?;
    let note = default_note(query.note, || "import".to_owned());
    // A large import parses and hashes for a while: keep it off the async workers.
    let store = state.store.clone();
    let version = tokio::task::spawn_blocking(move || store.import(&name, &body, &caller.name, &note))
        .await
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string()))??;
    Ok((StatusCode::CREATED, Json(version)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    from: String,
    to: String,
}

/// `GET /datasets/{name}/diff?from=3&to=v3.4`: added, removed and modified examples.
pub async fn diff(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    query: QueryOf<DiffQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(READERS)?;
    let name = bare_name(&reference)?;
    let Query(query) = query?;
    let (_, from) = state.store.resolve(&format!("{name}@{}", query.from))?;
    let (_, to) = state.store.resolve(&format!("{name}@{}", query.to))?;
    Ok(Json(json!(state.store.diff(name, from, to)?)))
}

pub async fn tags(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(READERS)?;
    let name = bare_name(&reference)?;
    Ok(Json(json!({"tags": state.store.tags(name)?, "history": state.store.tag_history(name)?})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagRequest {
    version: u64,
}

/// `PUT /datasets/{name}/tags/{tag}`: sets or moves a tag.
pub async fn set_tag(
    State(state): State<AppState>,
    caller: Caller,
    Path((reference, tag)): Path<(String, String)>,
    body: JsonBody<TagRequest>,
) -> Result<Json<Value>, ApiError> {
    caller.require(WRITERS)?;
    let name = bare_name(&reference)?;
    let Json(request) = body?;
    Ok(Json(json!(state.store.set_tag(name, &tag, request.version, &caller.name)?)))
}

pub async fn delete_tag(
    State(state): State<AppState>,
    caller: Caller,
    Path((reference, tag)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require(WRITERS)?;
    let name = bare_name(&reference)?;
    Ok(Json(json!(state.store.delete_tag(name, &tag, &caller.name)?)))
}

/// Commits one change to example `id` and answers with the id and the new version.
fn commit_one(
    state: &AppState,
    caller: Caller,
    name: &str,
    id: String,
    note: String,
    change: Change,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let version = state.store.commit(name, Commit { author: caller.name, note, changes: vec![change] })?;
    Ok((StatusCode::CREATED, Json(json!({"id": id, "version": version}))))
}

/// Routes that change a dataset take its bare name, never a pinned version.
fn bare_name(reference: &str) -> Result<&str, ApiError> {
    if reference.contains('@') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_reference",
            format!("{reference:?} pins a version; this route takes the dataset's bare name"),
        ));
    }
    Ok(reference)
}

fn parse_number(key: &str, value: &str) -> Result<usize, ApiError> {
    value.parse().map_err(|_| ApiError::bad_request(format!("{key} must be a non-negative integer, got {value:?}")))
}

fn default_note(note: String, default: impl FnOnce() -> String) -> String {
    if note.trim().is_empty() { default() } else { note }
}
