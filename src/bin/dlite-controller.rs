//! dlite-controller: reconciles DeploymentLites into ReplicaSets.
//! All logic lives in the library; this only wires flags, logs, endpoints,
//! leader election and signals.

use std::sync::Arc;

use clap::Parser;
use dlite::controller::reconciler::{self, Options};
use dlite::runtime::args::RuntimeArgs;
use dlite::runtime::metrics::ControllerMetrics;
use dlite::runtime::{leader, server};
use futures::FutureExt;

#[derive(Parser, Debug)]
#[command(
    name = "dlite-controller",
    version,
    about = "Reconciles DeploymentLite objects into ReplicaSets"
)]
struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "DLITE_NAMESPACE")]
    namespace: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text", env = "DLITE_LOG_FORMAT")]
    log_format: dlite::telemetry::LogFormat,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    dlite::telemetry::init(args.log_format);
    let metrics_addr =
        RuntimeArgs::addr("metrics-bind-address", &args.runtime.metrics_bind_address)?;
    let health_addr = RuntimeArgs::addr(
        "health-probe-bind-address",
        &args.runtime.health_probe_bind_address,
    )?;
    let client = kube::Client::try_default().await?;

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ControllerMetrics::register(&mut registry);
    let health = server::Health::new();
    server::start(
        metrics_addr,
        health_addr,
        Arc::new(registry),
        health.clone(),
    )
    .await?;

    tracing::info!(namespace = ?args.namespace, leader_elect = args.runtime.leader_elect, "starting dlite-controller");
    let shutdown = dlite::telemetry::shutdown_signal().boxed().shared();
    let work = reconciler::run(
        client.clone(),
        Options {
            namespace: args.namespace,
        },
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
    );
    leader::run_as_leader(
        client,
        &args.runtime,
        "dlite-controller",
        health,
        metrics.leader.clone(),
        shutdown,
        work,
    )
    .await?;
    tracing::info!("dlite-controller stopped");
    Ok(())
}
