//! dlite-scheduler: binds pods whose spec.schedulerName names it.
//! All logic lives in the library (src/scheduler); this only wires flags,
//! logs and signals.

use clap::Parser;
use dlite::scheduler::config::{Flags, SchedulerConfig};

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    dlite::telemetry::init(args.log_format);
    let config = SchedulerConfig::load(&args.flags)?;
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    dlite::scheduler::run::run(config, kube_config, dlite::telemetry::shutdown_signal()).await?;
    Ok(())
}
