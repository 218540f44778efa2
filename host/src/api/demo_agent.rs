//! The HTTP face of the scripted demo agent (`crate::demo`): a target
//! endpoint answering `POST {"example_id", "inputs"}` with an agent run, on
//! any path, so `assay eval --target` has an agent to call in the README tour.

use super::ApiError;
use crate::model::Inputs;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::Deserialize;
use std::future::Future;
use std::time::Duration;

/// How the demo agent behaves.
#[derive(Debug, Clone)]
pub struct DemoAgent {
    /// `v1` or `v2` (see `crate::demo`).
    pub revision: String,
    /// Added to every answer, to watch progress and concurrency at work.
    pub latency: Duration,
}

#[derive(Debug, Deserialize)]
struct Call {
    #[serde(default)]
    example_id: Option<String>,
    inputs: Inputs,
}

/// Serves the demo agent on `listener` until `shutdown` resolves.
pub async fn serve_demo_agent(
    listener: tokio::net::TcpListener,
    agent: DemoAgent,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = axum::Router::new().fallback(axum::routing::post(answer)).with_state(agent);
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

async fn answer(
    State(agent): State<DemoAgent>,
    call: Result<Json<Call>, JsonRejection>,
) -> Result<Json<crate::model::AgentRun>, ApiError> {
    let Json(call) = call?;
    if !agent.latency.is_zero() {
        tokio::time::sleep(agent.latency).await;
    }
    Ok(Json(crate::demo::answer(&agent.revision, call.example_id, &call.inputs)))
}
