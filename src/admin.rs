//! The admin HTTP server: `/metrics` (OpenMetrics), `/healthz` (the process is alive),
//! `/readyz` (a pass succeeded recently) and `POST /reconcile` (start a pass now; with
//! `controller.reconcile_token_file`, only for `Authorization: Bearer <token>`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ring::digest::{Digest, SHA256, digest};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE};
use crate::trigger::{Cause, Trigger};

/// Shared between the controller loop and the HTTP handlers.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    last_success: Mutex<Option<Instant>>,
    /// How old the last successful pass may be for `/readyz` to answer 200.
    ready_window: Mutex<Duration>,
    /// Where `POST /reconcile` asks for a pass.
    trigger: Trigger,
    /// The SHA-256 of the token `POST /reconcile` requires: requests are compared by their
    /// digests, so the comparison's time tells nothing about the token, and the token itself
    /// is not kept.
    token: Mutex<Option<Digest>>,
}

impl AdminState {
    pub fn new(metrics: Arc<Metrics>, ready_window: Duration, trigger: Trigger) -> AdminState {
        AdminState {
            metrics,
            last_success: Mutex::new(None),
            ready_window: Mutex::new(ready_window),
            trigger,
            token: Mutex::new(None),
        }
    }

    /// The bearer token `POST /reconcile` requires from now on; `None`: none.
    pub fn set_reconcile_token(&self, token: Option<&str>) {
        *self.token.lock().expect("lock") = token.map(|t| digest(&SHA256, t.as_bytes()));
    }

    /// Whether the request may ask for a pass: no token is configured, or it carries it.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = *self.token.lock().expect("lock") else {
            return true;
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        presented.is_some_and(|t| digest(&SHA256, t.as_bytes()).as_ref() == expected.as_ref())
    }

    pub fn mark_success(&self) {
        *self.last_success.lock().expect("lock") = Some(Instant::now());
    }

    pub fn set_ready_window(&self, window: Duration) {
        *self.ready_window.lock().expect("lock") = window;
    }

    fn is_ready(&self) -> bool {
        let window = *self.ready_window.lock().expect("lock");
        self.last_success
            .lock()
            .expect("lock")
            .is_some_and(|t| t.elapsed() <= window)
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if state.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no successful pass recently\n",
        )
    }
}

/// `POST /reconcile`: 202 with the number of the pass that will serve the request
/// (`{"pass": 7}`), or 401 without the configured bearer token.
async fn reconcile(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if !state.authorized(&headers) {
        tracing::warn!("POST /reconcile refused: no valid bearer token");
        return (
            StatusCode::UNAUTHORIZED,
            [
                (header::WWW_AUTHENTICATE, "Bearer"),
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            ],
            "send the token of controller.reconcile_token_file as `Authorization: Bearer TOKEN`\n",
        )
            .into_response();
    }
    let pass = state.trigger.fire(Cause::Request);
    tracing::info!(pass, "POST /reconcile: pass requested");
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{}\n", serde_json::json!({ "pass": pass })),
    )
        .into_response()
}

/// Binds the admin server's address (`controller.listen`); the error says what to change.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen).await.with_context(|| {
        format!("cannot listen on {listen} for /metrics; change controller.listen or free the port")
    })
}

/// Serves on `listener` (see [`bind`]; tests bind port 0) until `shutdown` turns true.
pub fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/reconcile", post(reconcile))
        .with_state(state);
    tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "admin server failed");
        }
    })
}
