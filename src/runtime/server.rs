//! The HTTP side of a component: /metrics on one port, /healthz and
//! /readyz on another (so probes never compete with scrapes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

/// What the probes report.
#[derive(Default)]
pub struct Health {
    /// Caches synced and the component is doing its work (or standing by
    /// as a healthy follower).
    ready: AtomicBool,
    reason: std::sync::Mutex<String>,
}

impl Health {
    pub fn new() -> Arc<Self> {
        let h = Health::default();
        *h.reason.lock().unwrap() = "starting".into();
        Arc::new(h)
    }

    pub fn set_ready(&self, ready: bool, reason: &str) {
        self.ready.store(ready, Ordering::SeqCst);
        *self.reason.lock().unwrap() = reason.into();
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(h): State<Arc<Health>>) -> impl IntoResponse {
    let reason = h.reason.lock().unwrap().clone();
    if h.is_ready() {
        (StatusCode::OK, format!("ok: {reason}"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}"),
        )
    }
}

async fn metrics(State(r): State<Arc<Registry>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &r) {
        Ok(()) => (
            StatusCode::OK,
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
}

/// Starts the endpoints in the background. Binding errors are returned at
/// once so a misconfigured address fails the process at start-up.
pub async fn start(
    metrics_addr: Option<SocketAddr>,
    health_addr: Option<SocketAddr>,
    registry: Arc<Registry>,
    health: Arc<Health>,
) -> anyhow::Result<()> {
    if let Some(addr) = metrics_addr {
        let app = Router::new()
            .route("/metrics", get(metrics))
            .with_state(registry);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("--metrics-bind-address {addr}: {e}"))?;
        tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    if let Some(addr) = health_addr {
        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(health);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("--health-probe-bind-address {addr}: {e}"))?;
        tracing::info!(addr = %listener.local_addr()?, "serving /healthz and /readyz");
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    Ok(())
}
