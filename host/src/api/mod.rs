//! The HTTP API: the only code that knows axum. `router(state)` builds every
//! route under `/api/v1`; `serve` runs it on a listener until a shutdown
//! future resolves, so tests bind `127.0.0.1:0` and stop it cleanly.

mod auth;
mod datasets;
mod error;
mod experiments;
mod openapi;

pub use auth::AuthMode;
pub use error::ApiError;

use crate::runtime::{LoadError, LoadedGrader, Runtime};
use crate::store::Store;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use std::collections::BTreeMap;
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
    /// The reference graders by name, loaded (checked and compiled) once at
    /// start so an experiment pays no compile time.
    pub graders: Arc<BTreeMap<String, Arc<LoadedGrader>>>,
}

impl AppState {
    /// Loads every embedded reference grader into `runtime`. A refused grader
    /// is a broken build, reported rather than served around.
    pub fn new(store: Store, auth: AuthMode, runtime: Arc<Runtime>) -> Result<AppState, LoadError> {
        let mut graders = BTreeMap::new();
        for (name, bytes) in crate::graders::REFERENCE_GRADERS {
            graders.insert((*name).to_owned(), Arc::new(runtime.load(bytes)?));
        }
        Ok(AppState { store, auth: Arc::new(auth), runtime, graders: Arc::new(graders) })
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
        // An experiment carries every agent run, so it may be as large as an import; the
        // route's own limit is applied after (and so overrides) the router-wide one.
        .route(
            "/api/v1/experiments",
            get(experiments::list).post(experiments::create).layer(DefaultBodyLimit::max(IMPORT_BODY_BYTES_MAX)),
        )
        .route("/api/v1/experiments/compare", get(experiments::compare))
        .route("/api/v1/experiments/{id}", get(experiments::show))
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .merge(imports)
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
