//! dlite-controller: reconciles DeploymentLites into ReplicaSets.
//! All logic lives in the library; this only wires flags, logs and signals.

use clap::Parser;
use dlite::controller::reconciler::{self, Options};

#[derive(Parser, Debug)]
#[command(name = "dlite-controller", version, about = "Reconciles DeploymentLite objects into ReplicaSets")]
struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "DLITE_NAMESPACE")]
    namespace: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text", env = "DLITE_LOG_FORMAT")]
    log_format: dlite::telemetry::LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    dlite::telemetry::init(args.log_format);
    let client = kube::Client::try_default().await?;
    tracing::info!(namespace = ?args.namespace, "starting dlite-controller");
    reconciler::run(client, Options { namespace: args.namespace }, dlite::telemetry::shutdown_signal()).await;
    tracing::info!("dlite-controller stopped");
    Ok(())
}
