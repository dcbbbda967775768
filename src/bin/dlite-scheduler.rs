//! dlite-scheduler: binds pods whose spec.schedulerName names it.
//! All logic lives in the library (src/scheduler); this only wires flags,
//! logs, endpoints, leader election and signals.

use std::sync::{Arc, Mutex};

use clap::Parser;
use dlite::runtime::args::RuntimeArgs;
use dlite::runtime::{leader, server};
use dlite::scheduler::config::{Flags, SchedulerConfig};
use dlite::scheduler::eventhandlers::Observability;
use dlite::scheduler::metrics::SchedulerMetrics;
use futures::FutureExt;

#[derive(Parser, Debug)]
#[command(
    name = "dlite-scheduler",
    version,
    about = "Schedules pods with kube-scheduler's default filters and scores"
)]
struct Args {
    #[command(flatten)]
    flags: Flags,
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
    let config = SchedulerConfig::load(&args.flags)?;
    let metrics_addr =
        RuntimeArgs::addr("metrics-bind-address", &args.runtime.metrics_bind_address)?;
    let health_addr = RuntimeArgs::addr(
        "health-probe-bind-address",
        &args.runtime.health_probe_bind_address,
    )?;
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = SchedulerMetrics::register(&mut registry);
    let health = server::Health::new();
    server::start(
        metrics_addr,
        health_addr,
        Arc::new(registry),
        health.clone(),
    )
    .await?;

    let shutdown = dlite::telemetry::shutdown_signal().boxed().shared();
    let outcome = Arc::new(Mutex::new(Ok(())));
    let work = {
        let outcome = outcome.clone();
        let observe = Observability {
            metrics: metrics.clone(),
            health: Some(health.clone()),
        };
        let (config, kube_config, shutdown) =
            (config.clone(), kube_config.clone(), shutdown.clone());
        async move {
            *outcome.lock().unwrap() =
                dlite::scheduler::run::run(config, kube_config, observe, shutdown).await;
        }
    };
    // The Lease is renewed on a client of its own, outside the scheduler's
    // QPS budget, so a busy scheduler never loses it for want of tokens.
    let lease_client = kube::Client::try_from(kube_config)?;
    leader::run_as_leader(
        lease_client,
        &args.runtime,
        "dlite-scheduler",
        health,
        metrics.leader.clone(),
        shutdown,
        work,
    )
    .await?;
    std::mem::replace(&mut *outcome.lock().unwrap(), Ok(()))?;
    Ok(())
}
