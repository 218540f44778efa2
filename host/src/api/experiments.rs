//! Experiment routes: grade an agent's outputs on a pinned dataset version
//! with pinned reference graders, store every score with its provenance,
//! summarise, gate, list and compare.
//!
//! Grading reuses the offline evaluation (`eval`): the same pairing of runs to
//! examples, the same summary and the same gates, so a server experiment and
//! `assay eval --dataset-file` agree on the same inputs.

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::eval::gate::metadata_values;
use crate::eval::{Evaluation, Gate, GateResult, GraderPin, Summary, SummaryConfig, inputs};
use crate::model::{AgentRun, FieldError};
use crate::runtime::{GraderCall, Outcome};
use crate::store::{
    ExampleResultRecord, Experiment, ExperimentStatus, FailureRecord, GradeRecord, GraderProvenance, Role, ScoreRecord,
    config_hash, new_experiment_id, now_rfc3339,
};
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Who may run and read experiments.
const ENGINEERS: &[Role] = &[Role::Engineer];
/// Longest experiment name prefix.
const NAME_PREFIX_BYTES_MAX: usize = 100;
/// The prefix of an experiment's name when none is given.
const DEFAULT_NAME_PREFIX: &str = "experiment";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateExperiment {
    /// `name`, `name@17` or `name@tag`.
    dataset: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    graders: Option<Vec<GraderRequest>>,
    /// Agent runs (SPEC "Wire formats"), each naming its example.
    outputs: Vec<Value>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    gates: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraderRequest {
    name: String,
    #[serde(default)]
    config: Option<Value>,
}

/// `POST /api/v1/experiments`: grade, store, and answer with the experiment,
/// its summary and its gates. Everything the caller sent is checked before
/// anything is graded or written.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateExperiment>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(ENGINEERS)?;
    let Json(request) = body?;
    let mut gates: Vec<Gate> = request
        .gates
        .iter()
        .map(|text| {
            text.parse::<Gate>().map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, "bad_gate", error.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let name_prefix = request.name.as_deref().unwrap_or(DEFAULT_NAME_PREFIX);
    if let Some(reason) = name_prefix_problem(name_prefix) {
        return Err(ApiError::invalid(vec![FieldError { field: "name".into(), reason }]));
    }
    let runs = parse_outputs(&request.outputs)?;
    let (pins, calls) = pin_graders(&state, request.graders)?;

    let store = state.store.clone();
    let (dataset, version) = store.resolve(&request.dataset)?;
    let version_info = store.version_info(&dataset, version)?;
    let examples: Vec<(usize, crate::model::Example)> = store
        .read_version(&dataset, version)?
        .into_iter()
        .enumerate()
        .map(|(index, stored)| (index + 1, stored.example))
        .collect();
    let pairing = inputs::pair_runs(examples, runs);
    let metadata = metadata_values(pairing.pairs.iter().map(|(example, _)| example));
    for gate in &mut gates {
        gate.resolve(&pins, &metadata)
            .map_err(|error| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_gate", error.to_string()))?;
    }

    // Reported back so a caller notices outputs meant for another dataset version.
    let missing_runs = pairing.missing_runs.clone();
    let ignored_runs: Vec<Value> = pairing
        .unknown_runs
        .iter()
        .map(|(line, example_id)| json!({"index": line - 1, "example_id": example_id}))
        .collect();
    let runtime = Arc::clone(&state.runtime);
    let id = new_experiment_id();
    let experiment_name = format!("{name_prefix}-{id}");
    let created_at = now_rfc3339();
    let created_by = caller.name.clone();
    let caller_metadata = Value::Object(request.metadata.unwrap_or_default());
    let graded = tokio::task::spawn_blocking(move || {
        let evaluation = Evaluation::run(&runtime, pins, &calls, &pairing.pairs, &mut |_| {});
        let summary = Summary::new(&evaluation, &SummaryConfig::default());
        let gate_results: Vec<GateResult> = gates.iter().map(|gate| gate.check(&evaluation)).collect();
        let results = result_records(&evaluation, &pairing.pairs);
        let experiment = Experiment {
            id,
            name: experiment_name,
            dataset,
            dataset_version: version,
            dataset_digest: version_info.digest,
            world: evaluation.world.clone(),
            graders: evaluation
                .graders
                .iter()
                .map(|pin| GraderProvenance {
                    name: pin.name.clone(),
                    version: pin.version.clone(),
                    digest: pin.digest.clone(),
                    config_hash: config_hash(&pin.config),
                    config: pin.config.clone(),
                    score_keys: pin.score_keys.clone(),
                })
                .collect(),
            metadata: caller_metadata,
            status: ExperimentStatus::Completed,
            created_by,
            created_at,
            finished_at: Some(now_rfc3339()),
            example_count: results.len() as u64,
            // Both are plain data with string keys: encoding them to JSON cannot fail.
            summary: serde_json::to_value(&summary).unwrap_or(Value::Null),
            gates: serde_json::to_value(&gate_results).unwrap_or(Value::Null),
        };
        store.save_experiment(&experiment, &results)?;
        let passed = gate_results.iter().all(|gate| gate.holds);
        Ok::<_, crate::store::StoreError>((experiment, passed))
    })
    .await
    .map_err(|error| {
        tracing::error!(%error, "the grading task failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "grading failed; see the server log")
    })??;
    let (experiment, passed) = graded;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "experiment": experiment,
            "passed": passed,
            "missing_runs": missing_runs,
            "ignored_runs": ignored_runs,
        })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    dataset: Option<String>,
}

/// `GET /api/v1/experiments[?dataset=NAME]`: newest first, without results.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(ENGINEERS)?;
    let Query(query) = query?;
    Ok(Json(json!({"experiments": state.store.list_experiments(query.dataset.as_deref())?})))
}

/// `GET /api/v1/experiments/{id}`: the experiment with every result.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(ENGINEERS)?;
    let experiment = state.store.experiment(&id)?;
    let results = state.store.experiment_results(&id)?;
    Ok(Json(json!({"experiment": experiment, "results": results})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareQuery {
    a: String,
    b: String,
}

/// `GET /api/v1/experiments/compare?a=ID&b=ID`: per key deltas, then the
/// examples that regressed from `a` to `b`, then those that improved.
pub async fn compare(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<CompareQuery>, QueryRejection>,
) -> Result<Json<crate::store::Comparison>, ApiError> {
    caller.require(ENGINEERS)?;
    let Query(query) = query?;
    let (a, b) = (state.store.experiment(&query.a)?, state.store.experiment(&query.b)?);
    let a_results = state.store.experiment_results(&query.a)?;
    let b_results = state.store.experiment_results(&query.b)?;
    Ok(Json(crate::store::compare_experiments(a, &a_results, b, &b_results)))
}

/// Reads the outputs with the offline evaluation's rules (every run names
/// its example, once), reporting every bad run as `outputs[i].field`.
fn parse_outputs(outputs: &[Value]) -> Result<Vec<(usize, AgentRun)>, ApiError> {
    let text: String = outputs.iter().map(|run| run.to_string() + "\n").collect();
    inputs::parse_runs(&text).map_err(|errors| {
        ApiError::invalid(
            errors
                .into_iter()
                .map(|error| {
                    let separator = if error.field.starts_with('$') || error.field.is_empty() { "" } else { "." };
                    let field = error.field.trim_start_matches('$');
                    FieldError { field: format!("outputs[{}]{separator}{field}", error.line - 1), reason: error.reason }
                })
                .collect(),
        )
    })
}

/// Pins the requested reference graders (default: [`crate::eval::DEFAULT_GRADERS`]) with their configs.
fn pin_graders(
    state: &AppState,
    requested: Option<Vec<GraderRequest>>,
) -> Result<(Vec<GraderPin>, Vec<GraderCall>), ApiError> {
    let requested = requested.unwrap_or_else(|| {
        crate::eval::DEFAULT_GRADERS
            .iter()
            .map(|name| GraderRequest { name: (*name).to_owned(), config: None })
            .collect()
    });
    let mut errors = Vec::new();
    let mut pins: Vec<GraderPin> = Vec::new();
    let mut calls = Vec::new();
    for (index, request) in requested.into_iter().enumerate() {
        let Some(grader) = state.graders.get(&request.name) else {
            let known: Vec<&str> = state.graders.keys().map(String::as_str).collect();
            errors.push(FieldError {
                field: format!("graders[{index}].name"),
                reason: format!("no grader called {:?}; the server has {}", request.name, known.join(", ")),
            });
            continue;
        };
        let config = request.config.unwrap_or_else(|| Value::Object(Map::new()));
        if !config.is_object() {
            errors
                .push(FieldError { field: format!("graders[{index}].config"), reason: "must be a JSON object".into() });
            continue;
        }
        if let Some(key) = grader.info.score_keys.iter().find(|key| pins.iter().any(|pin| pin.score_keys.contains(key)))
        {
            errors.push(FieldError {
                field: format!("graders[{index}].name"),
                reason: format!("another grader already produces the score key {key:?}; give each key to one grader"),
            });
            continue;
        }
        pins.push(GraderPin::of(grader, &config));
        calls.push(GraderCall { grader: Arc::clone(grader), config: config.to_string() });
    }
    if pins.is_empty() && errors.is_empty() {
        errors.push(FieldError { field: "graders".into(), reason: "name at least one grader".into() });
    }
    if errors.is_empty() { Ok((pins, calls)) } else { Err(ApiError::invalid(errors)) }
}

/// The stored form of every example's grades, with the run that was graded.
fn result_records(evaluation: &Evaluation, pairs: &[(crate::model::Example, AgentRun)]) -> Vec<ExampleResultRecord> {
    evaluation
        .examples
        .iter()
        .zip(pairs)
        .map(|(example, (_, run))| ExampleResultRecord {
            example_id: example.example_id.clone(),
            metadata: example.metadata.clone(),
            run: serde_json::to_value(run).unwrap_or(Value::Null),
            grades: evaluation
                .graders
                .iter()
                .zip(&example.grades)
                .map(|(pin, graded)| {
                    let (scores, failure) = match &graded.outcome {
                        Outcome::Scores(scores) => (
                            Some(
                                scores
                                    .iter()
                                    .map(|score| ScoreRecord {
                                        key: score.key.clone(),
                                        value: score.value,
                                        comment: score.comment.clone(),
                                    })
                                    .collect(),
                            ),
                            None,
                        ),
                        Outcome::Failure(failure) => (
                            None,
                            Some(FailureRecord {
                                kind: failure.kind.as_str().to_owned(),
                                message: failure.message.clone(),
                            }),
                        ),
                    };
                    GradeRecord { grader: pin.name.clone(), scores, failure, fuel_used: graded.fuel_used }
                })
                .collect(),
        })
        .collect()
}

/// Why an experiment name prefix is refused: it becomes part of a name shown
/// in CI logs and URLs, so it is kept to a plain word.
fn name_prefix_problem(prefix: &str) -> Option<String> {
    if prefix.is_empty() || prefix.len() > NAME_PREFIX_BYTES_MAX {
        return Some(format!("must be 1 to {NAME_PREFIX_BYTES_MAX} bytes"));
    }
    if !prefix.chars().all(|character| character.is_ascii_alphanumeric() || "-_.".contains(character)) {
        return Some("may hold only ASCII letters, digits, `-`, `_` and `.`".into());
    }
    None
}
