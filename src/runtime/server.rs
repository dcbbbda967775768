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

/// What the probes report. /readyz is 200 only when the component says it
/// is ready (caches synced, or standing by as a healthy follower) *and* the
/// API server answers its probe *and* no watch is failing: a component cut
/// off from the API server acts on stale state, so it must not look ready.
#[derive(Default)]
pub struct Health {
    /// Caches synced and the component is doing its work (or standing by
    /// as a healthy follower).
    ready: AtomicBool,
    reason: std::sync::Mutex<String>,
    /// Why the last probe of the API server failed (None: it answered).
    api_problem: std::sync::Mutex<Option<String>>,
    /// Watches whose last item was an error, with that error. A watch
    /// leaves this map with its next event (relist or watch resumed).
    failing_watches: std::sync::Mutex<std::collections::BTreeMap<&'static str, String>>,
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
        self.readiness().is_ok()
    }

    /// Records the outcome of one probe of the API server.
    pub fn set_api_reachable(&self, problem: Option<String>) {
        let mut p = self.api_problem.lock().unwrap();
        match (&*p, &problem) {
            (None, Some(why)) => tracing::warn!(error = %why, "API server unreachable; not ready"),
            (Some(_), None) => tracing::info!("API server answers again"),
            _ => {}
        }
        *p = problem;
    }

    /// Records what a watch last yielded: `Some(error)` or `None` for an
    /// event. Logged only on a change, so a watch retrying in a loop does
    /// not flood the log.
    pub fn watch_outcome(&self, watch: &'static str, error: Option<String>) {
        let mut w = self.failing_watches.lock().unwrap();
        match error {
            Some(e) => {
                if w.insert(watch, e.clone()).is_none() {
                    tracing::warn!(watch, error = %e, "watch failing; not ready until it resumes");
                }
            }
            None => {
                if w.remove(watch).is_some() {
                    tracing::info!(watch, "watch resumed");
                }
            }
        }
    }

    /// Ok(why ready) or Err(why not).
    pub fn readiness(&self) -> Result<String, String> {
        let reason = self.reason.lock().unwrap().clone();
        if !self.ready.load(Ordering::SeqCst) {
            return Err(reason);
        }
        if let Some(why) = &*self.api_problem.lock().unwrap() {
            return Err(format!("the API server does not answer: {why}"));
        }
        if let Some((watch, e)) = self.failing_watches.lock().unwrap().iter().next() {
            return Err(format!("the {watch} watch is failing: {e}"));
        }
        Ok(reason)
    }
}

/// How often the API server is probed, and how long one probe may take.
pub const API_PROBE_PERIOD: std::time::Duration = std::time::Duration::from_secs(2);
pub const API_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Probes the API server's /readyz every [`API_PROBE_PERIOD`] for as long as
/// the returned task lives, and records the outcome in `health`. A watch
/// alone cannot tell: against a frozen API server (or one whose etcd is
/// gone) the connection stays open and simply goes quiet. /readyz is open
/// to every identity (the system:public-info-viewer ClusterRole) and is
/// exempt from API Priority and Fairness (the "probes" FlowSchema), so
/// throttling never reads as unreachable.
pub fn probe_api_server(client: kube::Client, health: Arc<Health>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let req = axum::http::Request::get("/readyz")
                .body(Vec::new())
                .expect("a static request");
            let outcome = match tokio::time::timeout(API_PROBE_TIMEOUT, client.request_text(req))
                .await
            {
                Ok(Ok(_)) => None,
                // Its body lists every check; the status says enough.
                Ok(Err(kube::Error::Api(s))) => Some(format!("GET /readyz answered {}", s.code)),
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!(
                    "no answer to GET /readyz within {API_PROBE_TIMEOUT:?}"
                )),
            };
            health.set_api_reachable(outcome);
            tokio::time::sleep(API_PROBE_PERIOD).await;
        }
    })
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(h): State<Arc<Health>>) -> impl IntoResponse {
    match h.readiness() {
        Ok(reason) => (StatusCode::OK, format!("ok: {reason}")),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}"),
        ),
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
