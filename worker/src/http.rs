//! `/metrics` and `/healthz`, and the client side of `radio-worker healthcheck` (containers without curl).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::metrics::WorkerMetrics;

/// What the HTTP endpoints read.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// Encoded on every scrape.
    pub metrics: WorkerMetrics,
    /// False once the claim loop has stopped or Redis has been unreachable for a while.
    pub healthy: Arc<AtomicBool>,
}

/// Serves until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    state
        .metrics
        .resident_bytes
        .set(crate::metrics::resident_bytes() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn healthz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.healthy.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "unhealthy: the claim loop stopped or Redis is unreachable\n",
        )
    }
}

/// `GET /healthz` on `addr`: Ok when it answers 200 within `timeout`.
pub async fn check_health(addr: &str, timeout: Duration) -> Result<(), String> {
    let probe = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        stream
            .write_all(format!("GET /healthz HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        let response = String::from_utf8_lossy(&response);
        let status = response.lines().next().unwrap_or_default().to_string();
        if status.split_whitespace().nth(1) == Some("200") {
            Ok(())
        } else {
            Err(format!("{addr}/healthz answered {status:?}"))
        }
    };
    tokio::time::timeout(timeout, probe)
        .await
        .map_err(|_| format!("{addr}/healthz did not answer within {timeout:?}"))?
}
