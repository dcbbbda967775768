//! Leader election on a coordination.k8s.io Lease.
//!
//! kube-lease-manager acquires and renews the Lease. On top of it a
//! watchdog re-reads the Lease: if another identity holds it, or our own
//! renewal is about to lapse (the API server unreachable, say), the work is
//! stopped at once, before a standby may take over, so two leaders never
//! write at the same time. The process then exits non-zero, as
//! kube-controller-manager does, and comes back as a candidate.

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use prometheus_client::metrics::gauge::Gauge;
use tracing::{error, info, warn};

use super::args::RuntimeArgs;
use super::server::Health;

/// Why leading ended.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lost the lease {0}: stopped work at once")]
    Lost(String),
    #[error("leader election on lease {lease}: {source}")]
    Election {
        lease: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
}

/// Seconds before the lease expires at which a leader that has not renewed
/// gives up; also the renewal margin the lease manager keeps.
const GRACE_SECONDS: u64 = 5;

/// Runs `work` (which must itself stop when `shutdown` resolves) only while
/// this process leads. Without `--leader-elect` it just runs `work`.
pub async fn run_as_leader<W, S>(
    client: Client,
    args: &RuntimeArgs,
    component: &str,
    health: std::sync::Arc<Health>,
    leading: Gauge,
    shutdown: S,
    work: W,
) -> Result<(), LeaderError>
where
    W: Future<Output = ()>,
    S: Future<Output = ()> + Clone,
{
    if !args.leader_elect {
        leading.set(1);
        work.await;
        return Ok(());
    }
    let lease_name = args
        .leader_election_id
        .clone()
        .unwrap_or_else(|| component.to_string());
    let namespace = args.lease_namespace();
    let identity = args.identity();
    let duration = args.lease_duration_seconds;
    let grace = GRACE_SECONDS.min(duration / 3).max(1);
    let election = |source| LeaderError::Election {
        lease: format!("{namespace}/{lease_name}"),
        source,
    };
    let manager = LeaseManagerBuilder::new(client.clone(), &lease_name)
        .with_namespace(&namespace)
        .with_parameters(LeaseParams::new(&identity, duration, grace))
        .build()
        .await
        .map_err(election)?;
    let (mut is_leader, task) = manager.watch().await;

    health.set_ready(true, "standing by for the lease");
    info!(lease = %format!("{namespace}/{lease_name}"), %identity, "waiting to become the leader");
    let mut stopped = shutdown.clone().boxed_local();
    loop {
        if *is_leader.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = is_leader.changed() => {
                if changed.is_err() {
                    return match task.await {
                        Ok(Err(e)) => Err(election(e)),
                        _ => Err(LeaderError::Lost(lease_name)),
                    };
                }
            }
            _ = &mut stopped => {
                drop(is_leader);
                let _ = task.await;
                return Ok(());
            }
        }
    }
    info!(lease = %format!("{namespace}/{lease_name}"), %identity, "became the leader");
    leading.set(1);
    health.set_ready(false, "leading; waiting for caches to sync");

    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    let lost_flag = async {
        loop {
            if is_leader.changed().await.is_err() || !*is_leader.borrow() {
                return;
            }
        }
    };
    let outcome = tokio::select! {
        _ = work => Ok(()),
        _ = lost_flag => Err(LeaderError::Lost(lease_name.clone())),
        _ = watchdog(&leases, &lease_name, &identity, duration, grace) => Err(LeaderError::Lost(lease_name.clone())),
    };
    leading.set(0);
    match outcome {
        Ok(()) => {
            // A clean stop hands the lease over at once instead of making
            // the standby wait for it to expire.
            drop(is_leader);
            let _ = task.await;
            info!("released the lease");
            Ok(())
        }
        Err(e) => {
            error!(error = %e, "leadership lost");
            health.set_ready(false, "lost the lease");
            Err(e)
        }
    }
}

/// Resolves when the Lease no longer shows us as a holder with a renewal
/// that keeps it valid for at least `grace` more seconds.
async fn watchdog(leases: &Api<Lease>, name: &str, identity: &str, duration: u64, grace: u64) {
    let period = Duration::from_secs(grace.max(1)) / 2;
    let mut confirmed = Timestamp::now();
    loop {
        tokio::time::sleep(period).await;
        match leases.get_opt(name).await {
            Ok(Some(lease)) => {
                let spec = lease.spec.unwrap_or_default();
                if spec.holder_identity.as_deref() != Some(identity) {
                    warn!(holder = ?spec.holder_identity, "the lease names another holder");
                    return;
                }
                if let Some(renew) = spec.renew_time {
                    confirmed = renew.0;
                }
            }
            Ok(None) => {
                warn!("the lease is gone");
                return;
            }
            // Unreadable: judge by the last confirmed renewal below.
            Err(e) => warn!(error = %e, "reading the lease"),
        }
        let valid_for = duration as i64 - Timestamp::now().duration_since(confirmed).as_secs();
        if valid_for < grace as i64 {
            warn!(valid_for, "the lease was not renewed in time");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::SignedDuration;
    use serde_json::json;

    use super::*;
    use crate::fake_api::{FakeApi, status};

    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/dlite";

    fn lease(holder: &str, renewed: Timestamp) -> serde_json::Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "dlite", "namespace": "ns"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "renewTime": MicroTime(renewed)}
        })
    }

    /// A 3 s lease with a 1 s grace: the watchdog reads every 0.5 s and
    /// gives up when less than 1 s of validity is left.
    const DURATION: u64 = 3;
    const GRACE: u64 = 1;

    /// `Some` with the number of Lease reads when the watchdog fired within
    /// `limit`, `None` when it did not.
    async fn watchdog_fires_within(api: &FakeApi, limit: Duration) -> Option<usize> {
        let leases: Api<Lease> = Api::namespaced(api.client.clone(), "ns");
        match tokio::time::timeout(limit, watchdog(&leases, "dlite", "me", DURATION, GRACE)).await {
            Ok(()) => Some(api.requests().len()),
            Err(_) => None,
        }
    }

    #[tokio::test]
    async fn stops_the_work_when_another_identity_holds_the_lease() {
        let api = FakeApi::start(|_| (200, lease("someone-else", Timestamp::now())));
        let reads = watchdog_fires_within(&api, Duration::from_secs(5)).await;
        assert_eq!(
            reads,
            Some(1),
            "fires on the first read naming another holder"
        );
        assert!(api.lines().iter().all(|l| l == &format!("GET {LEASE}")));
    }

    #[tokio::test]
    async fn stops_the_work_when_the_lease_is_gone() {
        let api = FakeApi::start(|_| status(404, "NotFound", "leases \"dlite\" not found"));
        assert_eq!(
            watchdog_fires_within(&api, Duration::from_secs(5)).await,
            Some(1)
        );
    }

    #[tokio::test]
    async fn keeps_working_while_our_renewals_keep_the_lease_valid() {
        // Renewed "now" at every read, as the lease manager does; the lease
        // is checked for longer than it lasts.
        let api = FakeApi::start(|_| (200, lease("me", Timestamp::now())));
        assert_eq!(
            watchdog_fires_within(&api, Duration::from_secs(DURATION + 1)).await,
            None
        );
        assert!(api.requests().len() >= 6, "it kept checking");
    }

    #[tokio::test]
    async fn stops_the_work_before_an_unrenewed_lease_could_pass_to_a_standby() {
        // Ours, but last renewed 2.5 s ago: 0.5 s of validity left, under
        // the grace, so a standby may take it over soon.
        let stale = Timestamp::now() - SignedDuration::from_millis(2500);
        let api = FakeApi::start(move |_| (200, lease("me", stale)));
        assert_eq!(
            watchdog_fires_within(&api, Duration::from_secs(5)).await,
            Some(1)
        );
    }

    #[tokio::test]
    async fn an_unreadable_lease_is_judged_by_the_last_confirmed_renewal() {
        // The API server is unreachable: the watchdog must not wait forever,
        // only as long as the lease stays usable (duration - grace).
        let api = FakeApi::start(|_| status(503, "ServiceUnavailable", "etcd is down"));
        let start = std::time::Instant::now();
        let reads = watchdog_fires_within(&api, Duration::from_secs(10)).await;
        let waited = start.elapsed();
        assert!(reads.is_some_and(|n| n >= 3), "reads: {reads:?}");
        assert!(
            (Duration::from_millis(1500)..Duration::from_secs(4)).contains(&waited),
            "gave up after {waited:?}"
        );
    }
}
