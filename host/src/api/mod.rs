//! The HTTP API: the only code that knows axum. `router(state)` builds every
//! route under `/api/v1`; `serve` runs it on a listener until a shutdown
//! future resolves, so tests bind `127.0.0.1:0` and stop it cleanly.

mod auth;
mod datasets;
mod demo_agent;
mod error;
mod experiments;
mod graders;
mod mining;
mod openapi;
mod queues;
mod traces;
mod ui;

pub use auth::AuthMode;
pub use demo_agent::{DemoAgent, serve_demo_agent};
pub use error::ApiError;
pub use traces::{TRACE_BODY_BYTES_MAX, TRACES_PER_BATCH_MAX};

use crate::registry::{Registry, RegistryError};
use crate::runtime::Runtime;
use crate::store::Store;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use std::future::Future;
use std::sync::Arc;

/// Largest request body accepted anywhere but imports.
pub const REQUEST_BODY_BYTES_MAX: usize = 2 << 20;
/// Largest bulk import body (JSONL).
pub const IMPORT_BODY_BYTES_MAX: usize = 256 << 20;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub auth: Arc<AuthMode>,
    /// The Wasm runtime experiments grade with.
    pub runtime: Arc<Runtime>,
    /// Published graders and what each name serves (hot-swappable).
    pub registry: Arc<Registry>,
    /// Experiments evaluating in the background, with their progress.
    pub running: Arc<experiments::Running>,
}

impl AppState {
    /// Opens the grader registry on `store` (publishing the reference graders
    /// on first start) and loads what every grader name serves, so an
    /// experiment pays no compile time. A refused built-in grader is a broken
    /// build, reported rather than served around.
    pub fn new(store: Store, auth: AuthMode, runtime: Arc<Runtime>) -> Result<AppState, RegistryError> {
        let registry = Arc::new(Registry::open(Arc::clone(&runtime), store.clone())?);
        Ok(AppState { store, auth: Arc::new(auth), runtime, registry, running: Arc::default() })
    }
}

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    let imports = Router::new()
        .route("/api/v1/datasets/{reference}/import", post(datasets::import))
        .layer(DefaultBodyLimit::max(IMPORT_BODY_BYTES_MAX));
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/tokens", post(auth::create_token))
        .route("/api/v1/whoami", get(auth::whoami))
        .route("/api/v1/datasets", get(datasets::list).post(datasets::create))
        .route("/api/v1/datasets/{reference}", get(datasets::show))
        .route("/api/v1/datasets/{reference}/versions", get(datasets::history))
        .route("/api/v1/datasets/{reference}/commits", post(datasets::commit))
        .route("/api/v1/datasets/{reference}/examples", get(datasets::list_examples).post(datasets::add_example))
        .route(
            "/api/v1/datasets/{reference}/examples/{id}",
            get(datasets::show_example).put(datasets::edit_example).delete(datasets::delete_example),
        )
        .route("/api/v1/datasets/{reference}/export", get(datasets::export))
        .route("/api/v1/datasets/{reference}/diff", get(datasets::diff))
        .route("/api/v1/datasets/{reference}/tags", get(datasets::tags))
        .route("/api/v1/datasets/{reference}/tags/{tag}", put(datasets::set_tag).delete(datasets::delete_tag))
        // Trace batches and OTLP requests carry up to ten thousand traces.
        .route(
            "/api/v1/traces",
            get(traces::list).post(traces::ingest).layer(DefaultBodyLimit::max(TRACE_BODY_BYTES_MAX)),
        )
        .route("/api/v1/traces/{project}/{id}", get(traces::show))
        .route("/api/v1/traces/{project}/{id}/feedback", post(traces::add_feedback))
        .route("/api/v1/projects", get(traces::projects))
        .route("/api/v1/projects/{project}/retention", put(traces::set_retention))
        // The OTLP/HTTP default path, outside /api/v1 so exporters need only the base URL.
        .route("/v1/traces", post(traces::otlp_ingest).layer(DefaultBodyLimit::max(TRACE_BODY_BYTES_MAX)))
        // An experiment carries every agent run, so it may be as large as an import; the
        // route's own limit is applied after (and so overrides) the router-wide one.
        .route(
            "/api/v1/experiments",
            get(experiments::list).post(experiments::create).layer(DefaultBodyLimit::max(IMPORT_BODY_BYTES_MAX)),
        )
        .route("/api/v1/experiments/compare", get(experiments::compare))
        .route("/api/v1/experiments/{id}", get(experiments::show))
        .route("/api/v1/experiments/{id}/status", get(experiments::status))
        .route("/api/v1/experiments/{id}/report", get(experiments::report))
        .route("/api/v1/experiments/{id}/regrade", post(experiments::regrade))
        .route("/api/v1/graders", get(graders::list))
        .route("/api/v1/graders/{name}", get(graders::show))
        .route(
            "/api/v1/graders/{name}/versions/{version}",
            post(graders::publish).layer(DefaultBodyLimit::max(graders::PUBLISH_BODY_BYTES_MAX)),
        )
        .route("/api/v1/graders/{name}/versions/{version}/retire", post(graders::retire))
        .route("/api/v1/graders/{name}/promote", post(graders::promote))
        .route("/api/v1/graders/{name}/rollback", post(graders::rollback))
        .route(
            "/api/v1/graders/{name}/shadow",
            post(graders::shadow).layer(DefaultBodyLimit::max(IMPORT_BODY_BYTES_MAX)),
        )
        .route("/api/v1/shadow-reports/{id}", get(graders::shadow_report))
        .route("/api/v1/queues", get(queues::list).post(queues::create))
        .route("/api/v1/queues/{name}", get(queues::show))
        .route("/api/v1/queues/{name}/items", get(queues::items).post(queues::add))
        .route("/api/v1/queues/{name}/next", post(queues::next))
        .route("/api/v1/queues/{name}/items/{item}/accept", post(queues::accept))
        .route("/api/v1/queues/{name}/items/{item}/reject", post(queues::reject))
        .route("/api/v1/queues/{name}/items/{item}/skip", post(queues::skip))
        .route("/api/v1/queues/{name}/log", get(queues::log))
        .route("/api/v1/mine", post(mining::mine))
        .route("/api/v1/mining/templates", get(mining::templates))
        .route("/api/v1/mining/rules", get(mining::rules).post(mining::create_rule))
        .route("/api/v1/mining/rules/{name}", delete(mining::delete_rule))
        .route("/api/v1/mining/rules/{name}/run", post(mining::run_rule))
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .merge(imports)
        // The web UI at `/` and `/ui/*`; unknown `/api/...` paths still get the JSON 404.
        .merge(ui::routes())
        .fallback(not_found)
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes the
/// requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}
