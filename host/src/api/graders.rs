//! Grader registry routes: publish a component as `name` `version` (checked,
//! compiled, with its bundled tests run), promote / roll back / retire, the
//! alias history, and shadow runs of a candidate beside the served version.

use super::auth::Caller;
use super::experiments::{numbered_examples, parse_outputs, stored_runs};
use super::{ApiError, AppState};
use crate::eval::shadow::ShadowComparison;
use crate::eval::{Evaluation, GraderPin, inputs};
use crate::model::FieldError;
use crate::registry::{GraderTest, Pinned};
use crate::runtime::GraderCall;
use crate::store::Role;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Largest publish body: the component and its bundled tests.
pub const PUBLISH_BODY_BYTES_MAX: usize = 40 << 20;
/// Who may publish and move graders.
const PUBLISHERS: &[Role] = &[Role::Publisher];
/// Who may read the registry.
const READERS: &[Role] = &[Role::Engineer, Role::Publisher, Role::Annotator];
/// Who may run a shadow comparison.
const SHADOWERS: &[Role] = &[Role::Publisher, Role::Engineer];

/// `GET /api/v1/graders`: every grader with what it serves and its versions.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(READERS)?;
    let graders = state.registry.list()?;
    Ok(Json(json!({"graders": graders})))
}

/// `GET /api/v1/graders/{name}`: versions, the alias, and its history.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(READERS)?;
    let versions = state.store.grader_versions(&name)?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!("grader {name} not found")));
    }
    Ok(Json(json!({
        "name": name,
        "alias": state.store.grader_alias(&name)?,
        "versions": versions,
        "history": state.store.alias_history(&name)?,
    })))
}

/// `POST /api/v1/graders/{name}/versions/{version}`: the component as the
/// body (`application/wasm`), or `multipart/form-data` with a `component`
/// part and an optional `tests` part (a JSON array or JSONL of test cases).
pub async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(PUBLISHERS)?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (component, tests) = if content_type.starts_with("multipart/form-data") {
        read_multipart(
            Multipart::from_request(request, &state)
                .await
                .map_err(|rejection| ApiError::new(rejection.status(), "bad_multipart", rejection.body_text()))?,
        )
        .await?
    } else if content_type.starts_with("application/wasm") || content_type.starts_with("application/octet-stream") {
        let component = Bytes::from_request(request, &state).await?;
        (component, Vec::new())
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the component as application/wasm, or multipart/form-data with `component` and `tests` parts",
        ));
    };
    let registry = Arc::clone(&state.registry);
    let by = caller.name.clone();
    // Loading compiles the component: seconds of CPU for a large one, off the async threads.
    let published = tokio::task::spawn_blocking(move || registry.publish(&name, &version, &component, &tests, &by))
        .await
        .map_err(|error| {
            tracing::error!(%error, "the publish task failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "publishing failed; see the server log")
        })??;
    let status = if published.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!(published))))
}

/// The `component` and `tests` parts of a multipart publish.
async fn read_multipart(mut multipart: Multipart) -> Result<(Bytes, Vec<GraderTest>), ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_multipart", message);
    let (mut component, mut tests) = (None, Vec::new());
    while let Some(field) = multipart.next_field().await.map_err(|error| bad(error.body_text()))? {
        match field.name().unwrap_or("") {
            "component" => component = Some(field.bytes().await.map_err(|error| bad(error.body_text()))?),
            "tests" => {
                let text = field.text().await.map_err(|error| bad(error.body_text()))?;
                tests = parse_tests(&text)?;
            }
            other => return Err(bad(format!("unknown part {other:?}; expected `component` and `tests`"))),
        }
    }
    let component = component.ok_or_else(|| bad("the `component` part is missing".into()))?;
    Ok((component, tests))
}

/// Test cases as a JSON array or JSONL, every bad one named by its index.
fn parse_tests(text: &str) -> Result<Vec<GraderTest>, ApiError> {
    let trimmed = text.trim_start();
    let items: Vec<(usize, &str)> = if trimmed.starts_with('[') {
        return serde_json::from_str::<Vec<GraderTest>>(trimmed)
            .map_err(|error| ApiError::invalid(vec![FieldError { field: "tests".into(), reason: error.to_string() }]));
    } else {
        text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()).collect()
    };
    let mut tests = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in items {
        match crate::model::parse::<GraderTest>(line) {
            Ok(test) => tests.push(test),
            Err(error) => {
                errors.push(FieldError { field: format!("tests line {}", index + 1), reason: error.to_string() })
            }
        }
    }
    if errors.is_empty() { Ok(tests) } else { Err(ApiError::invalid(errors)) }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promote {
    version: String,
    /// A shadow report of this candidate against what is served now.
    #[serde(default)]
    shadow_report: Option<String>,
    /// The agreement the report must show [default: 0.95 when a report is given].
    #[serde(default)]
    min_agreement: Option<f64>,
}

/// `POST /api/v1/graders/{name}/promote`: serve `version` from the next call on.
pub async fn promote(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<Promote>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(PUBLISHERS)?;
    let Json(request) = body?;
    if let Some(min) = request.min_agreement
        && !(0.0..=1.0).contains(&min)
    {
        return Err(ApiError::invalid(vec![FieldError {
            field: "min_agreement".into(),
            reason: "must be in [0, 1]".into(),
        }]));
    }
    if let Some(report_id) = &request.shadow_report {
        let report = state.store.shadow_report(report_id)?;
        let serving = state.registry.resolve(&name, None, false)?;
        let min = request.min_agreement.unwrap_or(0.95);
        let refuse = |message: String| ApiError::new(StatusCode::CONFLICT, "shadow_refused", message);
        if report["name"] != name.as_str() || report["candidate"]["version"] != request.version.as_str() {
            return Err(refuse(format!("shadow report {report_id} is not of {name} {}", request.version)));
        }
        if report["current"]["digest"] != serving.digest.as_str() {
            return Err(refuse(format!(
                "shadow report {report_id} compared against {} {}, but {name} serves {} now; shadow again",
                name,
                report["current"]["version"].as_str().unwrap_or("?"),
                serving.version
            )));
        }
        let agreement = report["comparison"]["agreement_rate"].as_f64().unwrap_or(0.0);
        if agreement < min {
            return Err(refuse(format!(
                "shadow report {report_id} shows {:.1}% agreement, below the required {:.1}%",
                agreement * 100.0,
                min * 100.0
            )));
        }
    } else if request.min_agreement.is_some() {
        return Err(ApiError::invalid(vec![FieldError {
            field: "min_agreement".into(),
            reason: "needs a `shadow_report` to hold the agreement against".into(),
        }]));
    }
    let event = state.registry.promote(&name, &request.version, &caller.name)?;
    Ok(Json(json!({"event": event})))
}

/// `POST /api/v1/graders/{name}/rollback`: serve what was served before.
pub async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(PUBLISHERS)?;
    let event = state.registry.rollback(&name, &caller.name)?;
    Ok(Json(json!({"event": event})))
}

/// `POST /api/v1/graders/{name}/versions/{version}/retire`.
pub async fn retire(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require(PUBLISHERS)?;
    let retired = state.registry.retire(&name, &version, &caller.name)?;
    Ok(Json(json!({"version": retired})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    /// The version to try beside the served one.
    candidate: String,
    /// Grade the runs stored with this experiment (no agent call)...
    #[serde(default)]
    experiment: Option<String>,
    /// ...or these `outputs` against this dataset reference.
    #[serde(default)]
    dataset: Option<String>,
    #[serde(default)]
    outputs: Option<Vec<Box<serde_json::value::RawValue>>>,
    /// The configuration both versions are called with [default: `{}`].
    #[serde(default)]
    config: Option<Value>,
}

/// `POST /api/v1/graders/{name}/shadow`: grade the same pairs with the served
/// version and a candidate; store and answer the agreement report.
pub async fn shadow(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<Shadow>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(SHADOWERS)?;
    let Json(request) = body?;
    let config = request.config.unwrap_or_else(|| json!({}));
    if !config.is_object() {
        return Err(ApiError::invalid(vec![FieldError {
            field: "config".into(),
            reason: "must be a JSON object".into(),
        }]));
    }
    let current = state.registry.resolve(&name, None, false)?;
    let candidate = state.registry.resolve(&name, Some(&request.candidate), false)?;
    let (dataset, version, examples, runs, source) = match (request.experiment, request.dataset, request.outputs) {
        (Some(experiment_id), None, None) => {
            let experiment = state.store.experiment(&experiment_id)?;
            let runs = stored_runs(state.store.experiment_results(&experiment_id)?);
            let examples = numbered_examples(&state.store, &experiment.dataset, experiment.dataset_version)?;
            let source = json!({"experiment": experiment_id});
            (experiment.dataset, experiment.dataset_version, examples, runs, source)
        }
        (None, Some(reference), Some(outputs)) => {
            let runs = parse_outputs(&outputs)?;
            let (dataset, version) = state.store.resolve(&reference)?;
            let examples = numbered_examples(&state.store, &dataset, version)?;
            (dataset, version, examples, runs, json!({"outputs": outputs.len()}))
        }
        _ => {
            return Err(ApiError::invalid(vec![FieldError {
                field: "experiment".into(),
                reason: "give either `experiment` (its stored runs are graded) or `dataset` with `outputs`".into(),
            }]));
        }
    };
    let pairing = inputs::pair_runs(examples, runs);
    let runtime = Arc::clone(&state.runtime);
    let store = state.store.clone();
    let created_by = caller.name.clone();
    let report = tokio::task::spawn_blocking(move || {
        let evaluate = |pinned: &Pinned| {
            let call = GraderCall { grader: Arc::clone(&pinned.grader), config: config.to_string() };
            Evaluation::run(
                &runtime,
                vec![GraderPin::of(&pinned.grader, &config)],
                &[call],
                &pairing.pairs,
                &mut |_| {},
            )
        };
        let comparison = ShadowComparison::new(&evaluate(&current), &evaluate(&candidate));
        let id = format!("shadow-{}", &crate::store::new_experiment_id()[4..]);
        let side = |pinned: &Pinned| json!({"version": pinned.version, "digest": pinned.digest});
        let report = json!({
            "id": id,
            "name": name,
            "current": side(&current),
            "candidate": side(&candidate),
            "config": config,
            "dataset": dataset,
            "dataset_version": version,
            "source": source,
            "comparison": comparison,
            "created_by": created_by,
            "created_at": crate::store::now_rfc3339(),
        });
        store.save_shadow_report(&id, &report)?;
        Ok::<_, crate::store::StoreError>(report)
    })
    .await
    .map_err(|error| {
        tracing::error!(%error, "the shadow task failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "shadow grading failed; see the server log")
    })??;
    Ok((StatusCode::CREATED, Json(report)))
}

/// `GET /api/v1/shadow-reports/{id}`.
pub async fn shadow_report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(SHADOWERS)?;
    Ok(Json(state.store.shadow_report(&id)?))
}
