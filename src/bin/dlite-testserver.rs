//! testserver: the workload of the real-node tests (tests/realnode.rs), not
//! part of the product. An example rather than a bin, so `make build`, the
//! Dockerfile and the release never carry it; `hack/testserver-image` builds
//! it statically into an image on an empty base.
//!
//! It serves HTTP: `/healthz` always, `/readyz` only once READY_DELAY_SECONDS
//! have passed since start and until SIGTERM; `/` says which pod and version
//! answered. On SIGTERM (or SIGINT) it stops being ready, keeps serving for
//! DRAIN_SECONDS and then exits 0, so termination takes as long as a real
//! server's drain.
//!
//! Where it listens (LISTEN): `HOST:PORT` for TCP, or `@NAME` for an
//! abstract Unix socket. The default, `@dlite-testserver/<POD_NAMESPACE>/<POD_NAME>`,
//! is unique per pod, which matters on the real node: its pods share the
//! node's network namespace (hostNetwork), so every replica of a template,
//! and during a rollout the old and new ReplicaSets' pods, would fight over
//! one TCP port, while an httpGet probe's port is fixed by the template.
//! The readiness probe is therefore an exec probe that runs this binary as
//! `testserver probe /readyz`: inside the container, with the pod's own
//! environment, it asks that pod's server and exits 0 only on HTTP 200.
use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

struct Settings {
    listen: String,
    ready_delay: Duration,
    drain: Duration,
    pod: String,
    version: String,
}

fn seconds(var: &str) -> Result<Duration, String> {
    match std::env::var(var) {
        Err(_) => Ok(Duration::ZERO),
        Ok(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("{var}: want a number of seconds >= 0, got {v:?}")),
    }
}

fn settings() -> Result<Settings, String> {
    let pod_ns = std::env::var("POD_NAMESPACE").unwrap_or_default();
    let pod = std::env::var("POD_NAME").unwrap_or_default();
    let listen = match std::env::var("LISTEN") {
        Ok(l) if !l.is_empty() => l,
        _ if !pod.is_empty() => format!("@dlite-testserver/{pod_ns}/{pod}"),
        _ => return Err("LISTEN is unset and so is POD_NAME (set one of them)".into()),
    };
    Ok(Settings {
        listen,
        ready_delay: seconds("READY_DELAY_SECONDS")?,
        drain: seconds("DRAIN_SECONDS")?,
        pod,
        version: std::env::var("VERSION").unwrap_or_default(),
    })
}

fn now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", t.as_secs(), t.subsec_millis())
}

/// `testserver probe PATH`: one HTTP/1.0 GET to the server LISTEN names;
/// exit 0 on 200, 1 otherwise (what an exec probe wants).
fn probe(s: &Settings, path: &str) -> i32 {
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut response = String::new();
    let result = if let Some(name) = s.listen.strip_prefix('@') {
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| std::os::unix::net::UnixStream::connect_addr(&a))
            .and_then(|mut c| {
                c.set_read_timeout(Some(Duration::from_secs(2)))?;
                c.write_all(request.as_bytes())?;
                c.read_to_string(&mut response)
            })
    } else {
        std::net::TcpStream::connect(&s.listen).and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(2)))?;
            c.write_all(request.as_bytes())?;
            c.read_to_string(&mut response)
        })
    };
    match result {
        Ok(_) if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") => 0,
        Ok(_) => {
            println!("{}", response.lines().next().unwrap_or("(empty response)"));
            1
        }
        Err(e) => {
            println!("{}: {e}", s.listen);
            1
        }
    }
}

struct Served {
    started: Instant,
    ready_delay: Duration,
    terminating: AtomicBool,
    pod: String,
    version: String,
}

async fn readyz(State(st): State<Arc<Served>>) -> (StatusCode, &'static str) {
    if st.terminating.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if st.started.elapsed() < st.ready_delay {
        (StatusCode::SERVICE_UNAVAILABLE, "warming up\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

async fn root(State(st): State<Arc<Served>>) -> String {
    format!("pod={} version={}\n", st.pod, st.version)
}

async fn serve(s: Settings) -> Result<(), String> {
    let st = Arc::new(Served {
        started: Instant::now(),
        ready_delay: s.ready_delay,
        terminating: AtomicBool::new(false),
        pod: s.pod.clone(),
        version: s.version.clone(),
    });
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/", get(root))
        .with_state(st.clone());
    let drain = s.drain;
    // The handlers first of all: as PID 1 of its container the process
    // ignores a SIGTERM it has no handler for, and the kubelet would wait
    // out the whole grace period for a pod deleted right after it started.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let shutdown = {
        let st = st.clone();
        async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            st.terminating.store(true, Ordering::SeqCst);
            println!("{} {name}: not ready; draining for {drain:?}", now());
            tokio::time::sleep(drain).await;
            println!("{} drained; exiting", now());
        }
    };
    println!(
        "{} testserver version={:?} pod={:?} listening on {} (ready after {:?}, drain {:?})",
        now(),
        s.version,
        s.pod,
        s.listen,
        s.ready_delay,
        s.drain
    );
    if let Some(name) = s.listen.strip_prefix('@') {
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)
            .map_err(|e| format!("{}: {e}", s.listen))?;
        let l = std::os::unix::net::UnixListener::bind_addr(&addr)
            .map_err(|e| format!("listening on {}: {e}", s.listen))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        let l = tokio::net::UnixListener::from_std(l).map_err(|e| e.to_string())?;
        axum::serve(l, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| e.to_string())
    } else {
        let l = tokio::net::TcpListener::bind(&s.listen)
            .await
            .map_err(|e| format!("listening on {}: {e}", s.listen))?;
        axum::serve(l, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| e.to_string())
    }
}

fn main() {
    let s = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("testserver: {e}");
            std::process::exit(2);
        }
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("probe") {
        std::process::exit(probe(&s, args.get(1).map_or("/readyz", String::as_str)));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = rt.block_on(serve(s)) {
        eprintln!("testserver: {e}");
        std::process::exit(1);
    }
}
