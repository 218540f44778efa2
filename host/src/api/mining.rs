//! Mining routes: an ad hoc mining run, and saved rules (create from a
//! template or a filter, list, run now, delete). The server also runs
//! scheduled rules on its own (see `cli/serve.rs`).

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::mining::{self, MineRequest, MiningError, TEMPLATES};
use crate::model::FieldError;
use crate::store::{MiningRule, Role, now_ms};
use crate::traces::filter::Filter;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

/// Who mines.
const MINERS: &[Role] = &[Role::Engineer];

impl From<MiningError> for ApiError {
    fn from(error: MiningError) -> ApiError {
        match error {
            MiningError::Store(error) => error.into(),
            MiningError::Filter(error) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_filter", format!("filter {error}"))
            }
            MiningError::Invalid(message) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mine {
    project: String,
    #[serde(default)]
    filter: Option<String>,
    /// A duration back from now (`7d`) or an RFC 3339 instant.
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    sample: Option<f64>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/v1/mine`: one mining run over a window of a project.
pub async fn mine(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<Mine>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(MINERS)?;
    let Json(request) = body?;
    let filter = request.filter.as_deref().map(Filter::parse).transpose().map_err(MiningError::from)?;
    let now = now_ms();
    let instant = |field: &str, text: &Option<String>| -> Result<Option<i64>, ApiError> {
        text.as_deref()
            .map(|text| {
                mining::instant_ms(text, now).ok_or_else(|| {
                    ApiError::invalid(vec![FieldError {
                        field: field.into(),
                        reason: format!("{text:?} is neither a duration (7d, 24h) nor an RFC 3339 time"),
                    }])
                })
            })
            .transpose()
    };
    let (since_ms, until_ms) = (instant("since", &request.since)?, instant("until", &request.until)?);
    let store = state.store.clone();
    let report = tokio::task::spawn_blocking(move || {
        mining::mine(
            &store,
            &MineRequest {
                rule: "adhoc",
                project: &request.project,
                filter: filter.as_ref(),
                since_ms,
                until_ms,
                sample_rate: request.sample.unwrap_or(1.0),
                queue: request.queue.as_deref(),
                dry_run: request.dry_run,
            },
        )
    })
    .await
    .map_err(internal)??;
    Ok(Json(json!(report)))
}

/// `GET /api/v1/mining/templates`: the playbook's standard rules.
pub async fn templates(caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(MINERS)?;
    let templates: Vec<Value> = TEMPLATES
        .iter()
        .map(|(name, filter, rate, description)| {
            json!({"name": name, "filter": filter, "sample_rate": rate, "description": description})
        })
        .collect();
    Ok(Json(json!({"templates": templates})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRule {
    name: String,
    project: String,
    /// A template's name: its filter and sample rate, unless given here.
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    sample_rate: Option<f64>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    schedule: Option<String>,
}

/// `POST /api/v1/mining/rules`.
pub async fn create_rule(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateRule>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(MINERS)?;
    let Json(request) = body?;
    let template = match &request.template {
        Some(name) => Some(TEMPLATES.iter().find(|(candidate, ..)| candidate == name).ok_or_else(|| {
            let known: Vec<&str> = TEMPLATES.iter().map(|(name, ..)| *name).collect();
            ApiError::invalid(vec![FieldError {
                field: "template".into(),
                reason: format!("no template {name:?}; there are {}", known.join(", ")),
            }])
        })?),
        None => None,
    };
    let mut rule = MiningRule {
        name: request.name,
        project: request.project,
        filter: request.filter.or_else(|| template.and_then(|(_, filter, ..)| filter.map(str::to_owned))),
        window: request.window.unwrap_or_else(|| "7d".into()),
        sample_rate: request.sample_rate.or(template.map(|(_, _, rate, _)| *rate)).unwrap_or(1.0),
        queue: request.queue,
        schedule: request.schedule,
        created_by: caller.name.clone(),
        created_at: crate::store::now_rfc3339(),
        last_run_ms: None,
        last_report: None,
    };
    mining::check_rule(&state.store, &mut rule)?;
    state.store.create_rule(&rule)?;
    Ok((StatusCode::CREATED, Json(json!(rule))))
}

/// `GET /api/v1/mining/rules`.
pub async fn rules(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(MINERS)?;
    Ok(Json(json!({"rules": state.store.rules()?})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRule {
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/v1/mining/rules/{name}/run`: run a saved rule now.
pub async fn run_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<RunRule>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(MINERS)?;
    let Json(request) = body?;
    let rule = state.store.rule(&name)?;
    let store = state.store.clone();
    let report = tokio::task::spawn_blocking(move || mining::run_rule(&store, &rule, now_ms(), request.dry_run))
        .await
        .map_err(internal)??;
    Ok(Json(json!(report)))
}

/// `DELETE /api/v1/mining/rules/{name}`.
pub async fn delete_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(MINERS)?;
    state.store.delete_rule(&name)?;
    Ok(Json(json!({"deleted": name})))
}

fn internal(error: tokio::task::JoinError) -> ApiError {
    tracing::error!(%error, "a mining task failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "mining failed; see the server log")
}
