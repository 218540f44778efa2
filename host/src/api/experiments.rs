//! Experiment routes: evaluate an agent on a pinned dataset version with
//! pinned reference graders, store every score with its provenance,
//! summarise, gate, list, compare, re-grade and report.
//!
//! The agent's runs come from the request (`outputs`), from a target endpoint
//! the server calls once per example (`target`, run in the background and
//! followed through `/status`), or from a stored experiment (`/regrade`, which
//! never calls the agent). Grading reuses the offline evaluation (`eval`): the
//! same pairing of runs to examples, the same summary and the same gates, so a
//! server experiment and `assay eval --dataset-file` agree on the same inputs.

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::agent::Target;
use crate::eval::gate::{WorstExample, metadata_values};
use crate::eval::{Evaluation, ExampleResult, Gate, GateResult, GraderPin, SeverityWeights, Summary, SummaryConfig};
use crate::eval::{JudgeRecords, JudgeReplay};
use crate::eval::{inputs, junit::junit, markdown::markdown};
use crate::model::{AgentRun, Example, FieldError};
use crate::registry::RegistryError;
use crate::runtime::{GradeFailure, Graded, GraderCall, Outcome, Score};
use crate::store::{
    Comparison, Direction, ExampleResultRecord, Experiment, ExperimentStatus, FailureRecord, GradeRecord,
    GraderProvenance, Role, ScoreRecord, Store, StoreError, config_hash, new_experiment_id, now_rfc3339,
};
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Who may run and read experiments.
const ENGINEERS: &[Role] = &[Role::Engineer];
/// Longest experiment name prefix.
const NAME_PREFIX_BYTES_MAX: usize = 100;
/// The prefix of an experiment's name when none is given.
const DEFAULT_NAME_PREFIX: &str = "experiment";
/// Regressions listed under a failed regression gate.
const REGRESSIONS_SHOWN_MAX: usize = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateExperiment {
    /// `name`, `name@17` or `name@tag`.
    dataset: String,
    /// Agent runs (SPEC "Wire formats"), each naming its example. Kept as
    /// raw JSON so each run is parsed once, straight into its type.
    #[serde(default)]
    outputs: Option<Vec<Box<serde_json::value::RawValue>>>,
    /// Or: the agent's endpoint, called once per example.
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    graders: Option<Vec<GraderRequest>>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    gates: Vec<String>,
    #[serde(default)]
    severity_weights: Option<BTreeMap<String, f64>>,
    #[serde(default)]
    baseline: Option<String>,
    #[serde(default)]
    max_regressions: Option<usize>,
}

impl CreateExperiment {
    fn options(&mut self) -> Options {
        Options {
            name: self.name.take(),
            graders: self.graders.take(),
            metadata: self.metadata.take(),
            gates: std::mem::take(&mut self.gates),
            severity_weights: self.severity_weights.take(),
            baseline: self.baseline.take(),
            max_regressions: self.max_regressions.take(),
        }
    }
}

/// What an evaluation is asked, whichever way its runs arrive; also the body
/// of `POST /api/v1/experiments/{id}/regrade`, which grades the stored runs anew.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    graders: Option<Vec<GraderRequest>>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    gates: Vec<String>,
    /// Weights of the severity-weighted score, e.g. `{"p0": 10}`; unnamed severities keep their defaults.
    #[serde(default)]
    severity_weights: Option<BTreeMap<String, f64>>,
    /// An experiment to compare with: the evaluation fails when more than
    /// `max_regressions` examples regressed against it.
    #[serde(default)]
    baseline: Option<String>,
    /// Examples that may regress against the baseline [default: 0].
    #[serde(default)]
    max_regressions: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraderRequest {
    name: String,
    /// A published version; what the name serves now when absent.
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    config: Option<Value>,
}

/// The experiments being evaluated right now, by id, with how far they got.
#[derive(Debug, Default)]
pub struct Running {
    experiments: Mutex<HashMap<String, Arc<Progress>>>,
}

/// How far one running experiment got.
#[derive(Debug)]
pub struct Progress {
    /// 0: calling the agent, 1: grading, 2: storing.
    phase: AtomicU8,
    done: AtomicUsize,
    total: usize,
    /// Becomes true once the experiment is stored as completed or failed.
    finished: tokio::sync::watch::Sender<bool>,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            phase: AtomicU8::new(0),
            done: AtomicUsize::new(0),
            total,
            finished: tokio::sync::watch::Sender::new(false),
        }
    }

    fn snapshot(&self) -> Value {
        let phase = match self.phase.load(Ordering::Relaxed) {
            0 => "calling_agent",
            1 => "grading",
            _ => "storing",
        };
        json!({"phase": phase, "done": self.done.load(Ordering::Relaxed), "total": self.total})
    }
}

impl Running {
    fn insert(&self, id: &str, progress: Arc<Progress>) {
        if let Ok(mut experiments) = self.experiments.lock() {
            experiments.insert(id.to_owned(), progress);
        }
    }

    fn remove(&self, id: &str) {
        if let Ok(mut experiments) = self.experiments.lock() {
            experiments.remove(id);
        }
    }

    fn get(&self, id: &str) -> Option<Arc<Progress>> {
        self.experiments.lock().ok()?.get(id).cloned()
    }
}

/// Everything an evaluation needs once the request has been checked.
struct Plan {
    experiment: Experiment,
    /// The dataset version's examples, in order, with their line number (1-based).
    examples: Vec<(usize, Example)>,
    calls: Vec<GraderCall>,
    pins: Vec<GraderPin>,
    gates: Vec<Gate>,
    summary: SummaryConfig,
    baseline: Option<(Experiment, Vec<ExampleResultRecord>, usize)>,
    /// Judge answers recorded by the experiment a re-grade grades again.
    replay: JudgeReplay,
}

/// `POST /api/v1/experiments`: with `outputs`, grade, store and answer with
/// the experiment (201); with `target`, answer at once with the running
/// experiment (202) and evaluate in the background. Everything the caller sent
/// is checked before the agent is called or anything graded.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateExperiment>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(ENGINEERS)?;
    let Json(mut request) = body?;
    let options = request.options();
    match (request.outputs, request.target) {
        (Some(outputs), None) => {
            let runs = parse_outputs(&outputs)?;
            let plan = plan(&state, &caller, &request.dataset, options, None, json!({"kind": "outputs"}))?;
            evaluate_now(&state, plan, runs).await
        }
        (None, Some(target)) => {
            let problems: Vec<FieldError> = target
                .problems()
                .into_iter()
                .map(|(field, reason)| FieldError { field: format!("target.{field}"), reason })
                .collect();
            if !problems.is_empty() {
                return Err(ApiError::invalid(problems));
            }
            let runs_from = json!({"kind": "target", "target": target});
            let plan = plan(&state, &caller, &request.dataset, options, None, runs_from)?;
            start_in_background(&state, plan, target)
        }
        (outputs, _) => Err(ApiError::invalid(vec![FieldError {
            field: if outputs.is_some() { "target" } else { "outputs" }.into(),
            reason: "give the agent's runs either as `outputs` or as a `target` endpoint to call, not both".into(),
        }])),
    }
}

/// `POST /api/v1/experiments/{id}/regrade`: grades the runs stored with an
/// experiment again, without calling the agent: with the same graders and
/// configurations when none are named (the scores are then identical), or
/// with others (a new `must_not_say` list).
pub async fn regrade(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Options>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(ENGINEERS)?;
    let Json(mut options) = body?;
    let original = state.store.experiment(&id)?;
    if original.status != ExperimentStatus::Completed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_completed",
            format!("experiment {id} is {:?}, and only a completed experiment has runs to re-grade", original.status),
        ));
    }
    let same_pins = options.graders.is_none();
    if same_pins {
        // Same pins: the very versions (and so components) that graded, with their configurations.
        options.graders = Some(
            original
                .graders
                .iter()
                .map(|grader| GraderRequest {
                    name: grader.name.clone(),
                    version: Some(grader.version.clone()),
                    config: Some(grader.config.clone()),
                })
                .collect(),
        );
    }
    let results = state.store.experiment_results(&id)?;
    // The judge's recorded answers are replayed, so the model is not asked again.
    let mut replay = JudgeReplay::default();
    for result in &results {
        for grade in &result.grades {
            let exchanges = grade.judge.iter().filter_map(|exchange| serde_json::from_value(exchange.clone()).ok());
            replay.insert(&result.example_id, &grade.grader, exchanges.collect());
        }
    }
    let runs = stored_runs(results);
    let reference = format!("{}@{}", original.dataset, original.dataset_version);
    let runs_from = json!({"kind": "regrade", "experiment": id});
    let mut plan = plan(&state, &caller, &reference, options, Some(&original.dataset_digest), runs_from)?;
    plan.replay = replay;
    if same_pins {
        for (pinned, graded) in plan.pins.iter().zip(&original.graders) {
            if pinned.digest != graded.digest {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "grader_changed",
                    format!(
                        "{} {} is now {}, not the {} that graded experiment {id}",
                        graded.name, graded.version, pinned.digest, graded.digest
                    ),
                ));
            }
        }
    }
    evaluate_now(&state, plan, runs).await
}

/// Checks everything and pins the graders, dataset version and baseline.
fn plan(
    state: &AppState,
    caller: &Caller,
    dataset_reference: &str,
    options: Options,
    expected_digest: Option<&str>,
    runs_from: Value,
) -> Result<Plan, ApiError> {
    let mut gates: Vec<Gate> = options
        .gates
        .iter()
        .map(|text| {
            text.parse::<Gate>().map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, "bad_gate", error.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let name_prefix = options.name.as_deref().unwrap_or(DEFAULT_NAME_PREFIX);
    if let Some(reason) = name_prefix_problem(name_prefix) {
        return Err(ApiError::invalid(vec![FieldError { field: "name".into(), reason }]));
    }
    let mut severity_weights = SeverityWeights::default();
    for (severity, weight) in options.severity_weights.unwrap_or_default() {
        severity_weights.set(&format!("{severity}={weight}")).map_err(|error| {
            ApiError::invalid(vec![FieldError {
                field: format!("severity_weights.{severity}"),
                reason: error.to_string(),
            }])
        })?;
    }
    // A re-grade may use a retired version: it reproduces history, it does not start anything new.
    let (pins, calls) = pin_graders(state, options.graders, runs_from["kind"] == "regrade")?;
    let store = &state.store;
    let (dataset, version) = store.resolve(dataset_reference)?;
    let version_info = store.version_info(&dataset, version)?;
    if let Some(expected) = expected_digest
        && expected != version_info.digest
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "dataset_changed",
            format!("{dataset}@{version} has digest {}, not {expected}", version_info.digest),
        ));
    }
    let examples = numbered_examples(store, &dataset, version)?;
    let metadata = metadata_values(examples.iter().map(|(_, example)| example));
    for gate in &mut gates {
        gate.resolve(&pins, &metadata)
            .map_err(|error| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_gate", error.to_string()))?;
    }
    let baseline = match options.baseline {
        Some(baseline_id) => {
            let refused = |reason: String| ApiError::invalid(vec![FieldError { field: "baseline".into(), reason }]);
            let baseline =
                store.experiment(&baseline_id).map_err(|_| refused(format!("no experiment {baseline_id:?}")))?;
            if baseline.status != ExperimentStatus::Completed {
                return Err(refused(format!("experiment {baseline_id} is {:?}, not completed", baseline.status)));
            }
            let results = store.experiment_results(&baseline_id)?;
            Some((baseline, results, options.max_regressions.unwrap_or(0)))
        }
        None if options.max_regressions.is_some() => {
            return Err(ApiError::invalid(vec![FieldError {
                field: "max_regressions".into(),
                reason: "needs a `baseline` experiment to count regressions against".into(),
            }]));
        }
        None => None,
    };
    let id = new_experiment_id();
    let experiment = Experiment {
        name: format!("{name_prefix}-{id}"),
        id,
        dataset,
        dataset_version: version,
        dataset_digest: version_info.digest,
        world: crate::runtime::WIT_WORLD.to_owned(),
        graders: pins
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
        metadata: Value::Object(options.metadata.unwrap_or_default()),
        runs_from,
        status: ExperimentStatus::Running,
        created_by: caller.name.clone(),
        created_at: now_rfc3339(),
        finished_at: None,
        example_count: examples.len() as u64,
        summary: Value::Null,
        gates: json!([]),
        error: None,
    };
    let summary = SummaryConfig { severity_weights, ..SummaryConfig::default() };
    Ok(Plan { experiment, examples, calls, pins, gates, summary, baseline, replay: JudgeReplay::default() })
}

/// Grades runs already in hand on a blocking thread and answers with the stored experiment.
async fn evaluate_now(
    state: &AppState,
    plan: Plan,
    runs: Vec<(usize, AgentRun)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let pairing = inputs::pair_runs(plan.examples.clone(), runs);
    // Reported back so a caller notices outputs meant for another dataset version.
    let missing_runs = pairing.missing_runs.clone();
    let ignored_runs: Vec<Value> = pairing
        .unknown_runs
        .iter()
        .map(|(line, example_id)| json!({"index": line - 1, "example_id": example_id}))
        .collect();
    let store = state.store.clone();
    let runtime = Arc::clone(&state.runtime);
    let progress = Progress::new(0);
    let (experiment, passed) =
        tokio::task::spawn_blocking(move || execute(&store, &runtime, plan, &pairing.pairs, &progress))
            .await
            .map_err(internal)??;
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

/// Stores the experiment as running and calls the target, grades and stores
/// on a blocking thread; answers 202 at once.
fn start_in_background(state: &AppState, plan: Plan, target: Target) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = plan.experiment.id.clone();
    let progress = Arc::new(Progress::new(plan.examples.len()));
    // Registered first, so a status request never sees a running record without its progress.
    state.running.insert(&id, Arc::clone(&progress));
    if let Err(error) = state.store.start_experiment(&plan.experiment) {
        state.running.remove(&id);
        return Err(error.into());
    }
    let reply = json!({"experiment": plan.experiment, "status_url": format!("/api/v1/experiments/{id}/status")});
    let (store, runtime, running) = (state.store.clone(), Arc::clone(&state.runtime), Arc::clone(&state.running));
    tokio::task::spawn_blocking(move || {
        let id = plan.experiment.id.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let examples: Vec<Example> = plan.examples.iter().map(|(_, example)| example.clone()).collect();
            let (runs, stats) = target.run(&examples, &|done| progress.done.store(done, Ordering::Relaxed));
            tracing::info!(experiment = %id, calls = stats.calls, attempts = stats.attempts,
                agent_errors = stats.agent_errors, "the target was called for every example");
            let pairs: Vec<(Example, AgentRun)> = examples.into_iter().zip(runs).collect();
            execute(&store, &runtime, plan, &pairs, &progress)
        }));
        let failure = match outcome {
            Ok(Ok(_)) => None,
            Ok(Err(error)) => Some(format!("could not store the results: {error}")),
            Err(_) => Some("the evaluation crashed; see the server log".to_owned()),
        };
        if let Some(reason) = failure {
            tracing::error!(experiment = %id, %reason, "a background experiment failed");
            if let Err(error) = store.fail_experiment(&id, &reason) {
                tracing::error!(experiment = %id, %error, "could not mark the experiment failed");
            }
        }
        running.remove(&id);
        progress.finished.send_replace(true);
    });
    Ok((StatusCode::ACCEPTED, Json(reply)))
}

/// Grades, summarises, gates and stores; returns the stored experiment and
/// whether every gate held.
fn execute(
    store: &Store,
    runtime: &crate::runtime::Runtime,
    plan: Plan,
    pairs: &[(Example, AgentRun)],
    progress: &Progress,
) -> Result<(Experiment, bool), crate::store::StoreError> {
    progress.phase.store(1, Ordering::Relaxed);
    progress.done.store(0, Ordering::Relaxed);
    let Plan { mut experiment, calls, pins, gates, summary, baseline, replay, .. } = plan;
    let (evaluation, judge) = Evaluation::run_recorded(runtime, pins, &calls, pairs, &replay, &mut |done| {
        progress.done.store(done, Ordering::Relaxed)
    });
    progress.phase.store(2, Ordering::Relaxed);
    let summary = Summary::new(&evaluation, &summary);
    let mut gate_results: Vec<GateResult> = gates.iter().map(|gate| gate.check(&evaluation)).collect();
    let results = result_records(&evaluation, &judge, pairs);
    experiment.status = ExperimentStatus::Completed;
    experiment.finished_at = Some(now_rfc3339());
    experiment.example_count = results.len() as u64;
    // Both are plain data with string keys: encoding them to JSON cannot fail.
    experiment.summary = serde_json::to_value(&summary).unwrap_or(Value::Null);
    if let Some((baseline, baseline_results, max_regressions)) = baseline {
        let comparison = crate::store::compare_experiments(baseline, &baseline_results, experiment.clone(), &results);
        gate_results.push(regression_gate(&comparison, max_regressions));
    }
    experiment.gates = serde_json::to_value(&gate_results).unwrap_or(Value::Null);
    store.save_experiment(&experiment, &results)?;
    let passed = gate_results.iter().all(|gate| gate.holds);
    Ok((experiment, passed))
}

/// The gate `regressions<=N vs BASELINE`: how many examples got a lower score
/// on some key than they had in the baseline.
fn regression_gate(comparison: &Comparison, max_regressions: usize) -> GateResult {
    let regressions: Vec<_> =
        comparison.examples.iter().filter(|change| change.direction == Direction::Regressed).collect();
    let regressed: BTreeSet<&str> = regressions.iter().map(|change| change.example_id.as_str()).collect();
    let count = regressed.len();
    let mut shown = BTreeSet::new();
    let worst = regressions
        .iter()
        .filter(|change| shown.insert(change.example_id.as_str()))
        .take(REGRESSIONS_SHOWN_MAX)
        .map(|change| WorstExample {
            example_id: change.example_id.clone(),
            value: Some(change.b.value),
            comment: Some(format!(
                "{} fell from {:.3} to {:.3}{}",
                change.key,
                change.a.value,
                change.b.value,
                change.b.comment.as_deref().map(|comment| format!(": {comment}")).unwrap_or_default()
            )),
            agent_error: change
                .b
                .agent_error
                .as_ref()
                .map(|error| error.as_str().map_or(error.to_string(), str::to_owned)),
        })
        .collect();
    GateResult {
        gate: format!("regressions<={max_regressions} vs {}", comparison.a.id),
        slice: None,
        key: "regressions".into(),
        operator: "<=".into(),
        threshold: max_regressions as f64,
        actual: Some(count as f64),
        holds: count <= max_regressions,
        margin: Some(max_regressions as f64 - count as f64),
        scored: comparison.b.example_count as usize,
        errors: 0,
        worst,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// Wait up to this many milliseconds for a running experiment to finish before answering.
    #[serde(default)]
    wait_ms: Option<u64>,
}

/// Longest `wait_ms` of a status request.
const STATUS_WAIT_MS_MAX: u64 = 60_000;

/// `GET /api/v1/experiments/{id}/status[?wait_ms=N]`: the status, and while
/// running, the phase and how many examples are done. With `wait_ms`, a
/// running experiment is waited for (up to that long) before answering.
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(ENGINEERS)?;
    let Query(query) = query?;
    if let Some(wait_ms) = query.wait_ms
        && let Some(progress) = state.running.get(&id)
    {
        let mut finished = progress.finished.subscribe();
        let wait = std::time::Duration::from_millis(wait_ms.min(STATUS_WAIT_MS_MAX));
        // Timing out is an answer too: the experiment is still running.
        let _ = tokio::time::timeout(wait, finished.wait_for(|finished| *finished)).await;
    }
    let experiment = state.store.experiment(&id)?;
    let mut reply = json!({
        "id": experiment.id,
        "status": experiment.status,
        "total": experiment.example_count,
        "done": if experiment.status == ExperimentStatus::Completed { experiment.example_count } else { 0 },
    });
    if let Some(error) = &experiment.error {
        reply["error"] = json!(error);
    }
    if experiment.status == ExperimentStatus::Running
        && let Some(progress) = state.running.get(&id)
        && let (Value::Object(snapshot), Some(reply)) = (progress.snapshot(), reply.as_object_mut())
    {
        reply.extend(snapshot);
    }
    Ok(Json(reply))
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
pub struct ReportQuery {
    format: ReportFormat,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum ReportFormat {
    Junit,
    Markdown,
}

/// `GET /api/v1/experiments/{id}/report?format=junit|markdown`: the CI
/// reports of a completed experiment, the same bytes `assay eval` writes
/// offline for the same scores and gates.
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(ENGINEERS)?;
    let Query(query) = query?;
    let experiment = state.store.experiment(&id)?;
    if experiment.status != ExperimentStatus::Completed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_completed",
            format!("experiment {id} is {:?}; reports exist once it has completed", experiment.status),
        ));
    }
    let results = state.store.experiment_results(&id)?;
    let evaluation = evaluation_of(&experiment, results);
    let gates: Vec<GateResult> = serde_json::from_value(experiment.gates.clone()).unwrap_or_default();
    let (content_type, body) = match query.format {
        ReportFormat::Junit => ("application/xml", junit(&evaluation, &gates)),
        ReportFormat::Markdown => {
            let summary: Summary = match serde_json::from_value(experiment.summary.clone()) {
                Ok(summary) => summary,
                Err(_) => Summary::new(&evaluation, &SummaryConfig::default()),
            };
            ("text/markdown; charset=utf-8", markdown(&evaluation, &summary, &gates))
        }
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// An evaluation rebuilt from a stored experiment, for its reports.
fn evaluation_of(experiment: &Experiment, results: Vec<ExampleResultRecord>) -> Evaluation {
    let graders: Vec<GraderPin> = experiment
        .graders
        .iter()
        .map(|grader| GraderPin {
            name: grader.name.clone(),
            version: grader.version.clone(),
            digest: grader.digest.clone(),
            config: grader.config.clone(),
            score_keys: grader.score_keys.clone(),
        })
        .collect();
    let examples = results
        .into_iter()
        .map(|result| ExampleResult {
            example_id: result.example_id,
            metadata: result.metadata,
            agent_error: result.run.get("error").and_then(Value::as_str).map(str::to_owned),
            grades: result
                .grades
                .into_iter()
                .map(|grade| Graded {
                    outcome: match (grade.scores, grade.failure) {
                        (Some(scores), _) => Outcome::Scores(
                            scores
                                .into_iter()
                                .map(|score| Score { key: score.key, value: score.value, comment: score.comment })
                                .collect(),
                        ),
                        (None, failure) => {
                            let failure = failure.unwrap_or(FailureRecord {
                                kind: "invalid_output".into(),
                                message: "no scores were stored".into(),
                            });
                            Outcome::Failure(GradeFailure {
                                kind: serde_json::from_value(Value::String(failure.kind))
                                    .unwrap_or(crate::runtime::FailureKind::InvalidOutput),
                                message: failure.message,
                            })
                        }
                    },
                    fuel_used: grade.fuel_used,
                    log: String::new(),
                })
                .collect(),
        })
        .collect();
    Evaluation { world: experiment.world.clone(), graders, examples }
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
) -> Result<Json<Comparison>, ApiError> {
    caller.require(ENGINEERS)?;
    let Query(query) = query?;
    let (a, b) = (state.store.experiment(&query.a)?, state.store.experiment(&query.b)?);
    let a_results = state.store.experiment_results(&query.a)?;
    let b_results = state.store.experiment_results(&query.b)?;
    Ok(Json(crate::store::compare_experiments(a, &a_results, b, &b_results)))
}

fn internal(error: tokio::task::JoinError) -> ApiError {
    tracing::error!(%error, "the grading task failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "grading failed; see the server log")
}

/// Reads the outputs with the offline evaluation's rules (every run names
/// its example, once), reporting every bad run as `outputs[i].field`.
/// The examples of a dataset version, in order, numbered from 1 (the
/// positions `pair_runs` reports).
pub(super) fn numbered_examples(store: &Store, dataset: &str, version: u64) -> Result<Vec<(usize, Example)>, ApiError> {
    Ok(store
        .read_version(dataset, version)?
        .into_iter()
        .enumerate()
        .map(|(index, stored)| (index + 1, stored.example))
        .collect())
}

/// The agent runs stored with an experiment's results, numbered from 1.
pub(super) fn stored_runs(results: Vec<ExampleResultRecord>) -> Vec<(usize, AgentRun)> {
    results
        .into_iter()
        .enumerate()
        .filter_map(|(index, result)| Some((index + 1, serde_json::from_value::<AgentRun>(result.run).ok()?)))
        .collect()
}

pub(super) fn parse_outputs(outputs: &[Box<serde_json::value::RawValue>]) -> Result<Vec<(usize, AgentRun)>, ApiError> {
    let items = outputs.iter().enumerate().map(|(index, run)| (index + 1, run.get()));
    inputs::parse_run_items(items).map_err(|errors| {
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
    allow_retired: bool,
) -> Result<(Vec<GraderPin>, Vec<GraderCall>), ApiError> {
    let requested = requested.unwrap_or_else(|| {
        crate::eval::DEFAULT_GRADERS
            .iter()
            .map(|name| GraderRequest { name: (*name).to_owned(), version: None, config: None })
            .collect()
    });
    let mut errors = Vec::new();
    let mut pins: Vec<GraderPin> = Vec::new();
    let mut calls = Vec::new();
    for (index, request) in requested.into_iter().enumerate() {
        let pinned = match state.registry.resolve(&request.name, request.version.as_deref(), allow_retired) {
            Ok(pinned) => pinned,
            Err(RegistryError::Store(StoreError::NotFound { .. })) if request.version.is_none() => {
                let known: Vec<String> = state.registry.served().into_keys().collect();
                errors.push(FieldError {
                    field: format!("graders[{index}].name"),
                    reason: format!("no grader called {:?}; the server has {}", request.name, known.join(", ")),
                });
                continue;
            }
            Err(RegistryError::Store(StoreError::Storage(message))) => {
                return Err(StoreError::Storage(message).into());
            }
            Err(error) => {
                errors.push(FieldError { field: format!("graders[{index}].version"), reason: error.to_string() });
                continue;
            }
        };
        let grader = &pinned.grader;
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

/// The stored form of every example's grades and judge exchanges, with the run that was graded.
fn result_records(
    evaluation: &Evaluation,
    judge: &JudgeRecords,
    pairs: &[(Example, AgentRun)],
) -> Vec<ExampleResultRecord> {
    evaluation
        .examples
        .iter()
        .zip(pairs)
        .enumerate()
        .map(|(index, (example, (_, run)))| ExampleResultRecord {
            example_id: example.example_id.clone(),
            metadata: example.metadata.clone(),
            run: serde_json::to_value(run).unwrap_or(Value::Null),
            grades: evaluation
                .graders
                .iter()
                .zip(&example.grades)
                .enumerate()
                .map(|(grader_index, (pin, graded))| {
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
                    let exchanges = judge.get(index).and_then(|row| row.get(grader_index));
                    // Plain data with string keys: encoding it to JSON cannot fail.
                    let judge = exchanges
                        .into_iter()
                        .flatten()
                        .filter_map(|exchange| serde_json::to_value(exchange).ok())
                        .collect();
                    GradeRecord { grader: pin.name.clone(), scores, failure, fuel_used: graded.fuel_used, judge }
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
