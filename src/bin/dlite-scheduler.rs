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
    #[command(flatten)]
    log: dlite::telemetry::LogArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    dlite::telemetry::init(&args.log)?;
    let config = SchedulerConfig::load(&args.flags)?;
    let metrics_addr =
        RuntimeArgs::addr("metrics-bind-address", &args.runtime.metrics_bind_address)?;
    let health_addr = RuntimeArgs::addr(
        "health-probe-bind-address",
        &args.runtime.health_probe_bind_address,
    )?;
    // The file's clientConnection.kubeconfig counts when --kubeconfig is
    // absent; --context applies to whichever kubeconfig is read.
    let client_args = dlite::runtime::args::ClientArgs {
        kubeconfig: config.kubeconfig.clone(),
        context: args.flags.client.context.clone(),
    };
    let kube_config = client_args.config().await?;

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
    // Readiness also needs the API server to answer (see Health).
    let _probe = server::probe_api_server(lease_client.clone(), health.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("bin").chain(args.iter().copied()))
    }

    /// Every boolean flag works bare and with `=value`; client and log
    /// flags are the shared ones.
    #[test]
    fn flags_parse_in_every_form() {
        assert!(!parse(&[]).unwrap().runtime.leader_elect);
        assert!(parse(&["--leader-elect"]).unwrap().runtime.leader_elect);
        assert!(
            parse(&["--leader-elect=true"])
                .unwrap()
                .runtime
                .leader_elect
        );
        assert!(
            !parse(&["--leader-elect=false"])
                .unwrap()
                .runtime
                .leader_elect
        );
        let a = parse(&[
            "--kubeconfig=/k",
            "--context",
            "ctx",
            "--log-level=debug",
            "--log-format=json",
            "--leader-elect",
        ])
        .unwrap();
        assert_eq!(a.log.log_level.as_deref(), Some("debug"));
        assert_eq!(a.log.log_format, dlite::telemetry::LogFormat::Json);
        assert!(a.runtime.leader_elect);
        let client = &a.flags.client;
        assert_eq!(
            client.kubeconfig.as_deref(),
            Some(std::path::Path::new("/k"))
        );
        assert_eq!(client.context.as_deref(), Some("ctx"));
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
