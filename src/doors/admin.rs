//! The admin HTTP port: `/healthz` (process up), `/readyz` (config loaded, every key set loaded
//! once, not draining) and `/metrics` (Prometheus text format). Nothing here decides a request.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::ops::state::ServerState;

pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<ServerState>>) -> impl IntoResponse {
    let r = state.readiness();
    let body = serde_json::json!({
        "ready": r.ready,
        "draining": r.draining,
        "waiting_for_key_sets": r.waiting_for,
    })
    .to_string();
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

async fn metrics(State(state): State<Arc<ServerState>>) -> impl IntoResponse {
    for ks in state.snapshot().key_sets() {
        let age = ks
            .state()
            .last_success
            .map_or(f64::INFINITY, |t| t.elapsed().as_secs_f64());
        state.metrics.set_jwks_age(ks.id(), age);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
