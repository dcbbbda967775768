//! Prometheus metrics of the controller (the scheduler registers its own
//! next to these in the same registry type).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub kind: String,
}

/// The controller's series (all prefixed `dlite_controller_`).
#[derive(Clone)]
pub struct ControllerMetrics {
    /// Reconciles by result (success, error).
    pub reconciles: Family<ResultLabel, Counter>,
    /// Failed reconciles by kind (conflict, api, invalid).
    pub errors: Family<ErrorLabel, Counter>,
    pub reconcile_duration: Histogram,
    /// Objects whose latest generation the controller has not yet
    /// observed: the work waiting for it.
    pub queue_depth: Gauge,
    /// 1 while this process leads (or runs without election).
    pub leader: Gauge,
}

impl ControllerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = ControllerMetrics {
            reconciles: Family::default(),
            errors: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            queue_depth: Gauge::default(),
            leader: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("dlite_controller");
        r.register(
            "reconciles",
            "Reconciles of DeploymentLites by result",
            m.reconciles.clone(),
        );
        r.register(
            "reconcile_errors",
            "Failed reconciles by kind of error",
            m.errors.clone(),
        );
        r.register_with_unit(
            "reconcile_duration",
            "Time one reconcile took",
            prometheus_client::registry::Unit::Seconds,
            m.reconcile_duration.clone(),
        );
        r.register(
            "queue_depth",
            "DeploymentLites whose latest generation is not yet observed",
            m.queue_depth.clone(),
        );
        r.register(
            "leader",
            "1 while this process is the leader",
            m.leader.clone(),
        );
        m
    }
}
