//! dlite-controller: reconciles DeploymentLites into ReplicaSets.
//! All logic lives in the library; this only wires flags, logs, endpoints,
//! leader election and signals.

use std::sync::Arc;

use clap::Parser;
use dlite::controller::reconciler::{self, Options};
use dlite::runtime::args::{ClientArgs, RuntimeArgs};
use dlite::runtime::metrics::ControllerMetrics;
use dlite::runtime::rate_limit::{RateLimitArgs, rate_limited_client};
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
    #[command(flatten)]
    log: dlite::telemetry::LogArgs,
    #[command(flatten)]
    client: ClientArgs,
    /// --kube-api-qps / --kube-api-burst, as dlite-scheduler takes them.
    #[command(flatten)]
    rate: RateLimitArgs,
    /// DeploymentLites synced at once (kube-controller-manager's
    /// --concurrent-deployment-syncs, same default). One object is never
    /// synced twice at once, whatever the value.
    #[arg(long, env = "DLITE_CONCURRENT_DEPLOYMENT_SYNCS", default_value_t = reconciler::DEFAULT_CONCURRENT_SYNCS,
          value_parser = clap::value_parser!(u16).range(1..))]
    concurrent_deployment_syncs: u16,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    dlite::telemetry::init(&args.log)?;
    let metrics_addr =
        RuntimeArgs::addr("metrics-bind-address", &args.runtime.metrics_bind_address)?;
    let health_addr = RuntimeArgs::addr(
        "health-probe-bind-address",
        &args.runtime.health_probe_bind_address,
    )?;
    // Every request (watches, writes, events, the Lease) passes one token
    // bucket, as kube-controller-manager's client does.
    let (qps, burst) = args.rate.resolve()?;
    let client = rate_limited_client(args.client.config().await?, qps, burst)?;

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

    // Readiness also needs the API server to answer (see Health).
    let _probe = server::probe_api_server(client.clone(), health.clone());
    tracing::info!(
        namespace = ?args.namespace,
        leader_elect = args.runtime.leader_elect,
        qps,
        burst,
        concurrent_deployment_syncs = args.concurrent_deployment_syncs,
        "starting dlite-controller"
    );
    let shutdown = dlite::telemetry::shutdown_signal().boxed().shared();
    let work = reconciler::run(
        client.clone(),
        Options {
            namespace: args.namespace,
            concurrent_syncs: args.concurrent_deployment_syncs,
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
        let client = &a.client;
        assert_eq!(
            client.kubeconfig.as_deref(),
            Some(std::path::Path::new("/k"))
        );
        assert_eq!(client.context.as_deref(), Some("ctx"));
    }

    #[test]
    fn client_rate_limit_flags() {
        assert_eq!(parse(&[]).unwrap().rate.resolve().unwrap(), (50.0, 100));
        let a = parse(&["--kube-api-qps=5.5", "--kube-api-burst", "7"]).unwrap();
        assert_eq!(a.rate.resolve().unwrap(), (5.5, 7));
        for (args, want) in [
            (
                &["--kube-api-qps=0"][..],
                "--kube-api-qps: Invalid value: 0: must be greater than 0",
            ),
            (
                &["--kube-api-burst=-1"][..],
                "--kube-api-burst: Invalid value: -1: must be at least 1",
            ),
        ] {
            let e = parse(args).unwrap().rate.resolve().unwrap_err().to_string();
            assert_eq!(e, want, "{args:?}");
        }
    }

    /// Upstream's default of 5 workers; 0 would run nothing, so it is
    /// refused with the flag named rather than taken as "unbounded".
    #[test]
    fn concurrent_deployment_syncs_flag() {
        assert_eq!(parse(&[]).unwrap().concurrent_deployment_syncs, 5);
        assert_eq!(
            parse(&["--concurrent-deployment-syncs=20"])
                .unwrap()
                .concurrent_deployment_syncs,
            20
        );
        let e = parse(&["--concurrent-deployment-syncs=0"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--concurrent-deployment-syncs"), "{e}");
        assert!(e.contains("0 is not in 1..=65535"), "{e}");
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
