//! The admin HTTP server: `/metrics` (OpenMetrics), `/healthz` (the process is alive) and
//! `/readyz` (a pass succeeded recently).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE};

/// Shared between the controller loop and the HTTP handlers.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    last_success: Mutex<Option<Instant>>,
    /// How old the last successful pass may be for `/readyz` to answer 200.
    ready_window: Mutex<Duration>,
}

impl AdminState {
    pub fn new(metrics: Arc<Metrics>, ready_window: Duration) -> AdminState {
        AdminState {
            metrics,
            last_success: Mutex::new(None),
            ready_window: Mutex::new(ready_window),
        }
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
