//! Flags every long-running component shares: where to serve metrics and
//! health, and how to elect a leader.

use std::net::SocketAddr;

#[derive(clap::Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// Address of the Prometheus /metrics endpoint ("0" disables it).
    #[arg(
        long,
        default_value = "0.0.0.0:8080",
        env = "DLITE_METRICS_BIND_ADDRESS"
    )]
    pub metrics_bind_address: String,
    /// Address of the /healthz and /readyz endpoints ("0" disables them).
    #[arg(
        long,
        default_value = "0.0.0.0:8081",
        env = "DLITE_HEALTH_PROBE_BIND_ADDRESS"
    )]
    pub health_probe_bind_address: String,
    /// Elect a leader on a coordination.k8s.io Lease; only the leader acts.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, env = "DLITE_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else "default").
    #[arg(long, env = "DLITE_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease (default: the component's name).
    #[arg(long, env = "DLITE_LEADER_ELECTION_ID")]
    pub leader_election_id: Option<String>,
    /// How long a leader's claim lasts without renewal; a standby takes
    /// over at most this long after the leader stops renewing.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lease_duration_seconds: u64,
    /// This process's identity in the Lease (default: $POD_NAME, else host and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

impl RuntimeArgs {
    /// Parses an address flag; "0" (or empty) turns the endpoint off.
    pub fn addr(flag: &str, value: &str) -> anyhow::Result<Option<SocketAddr>> {
        if value.is_empty() || value == "0" {
            return Ok(None);
        }
        value.parse().map(Some).map_err(|e| {
            anyhow::anyhow!("--{flag}: {value:?} is not an address like 0.0.0.0:8080: {e}")
        })
    }

    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_else(|_| "localhost".into());
            format!("{}-{}", host.trim(), std::process::id())
        })
    }

    pub fn lease_namespace(&self) -> String {
        self.leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into())
    }
}
