//! Prometheus series of dlite-scheduler (all prefixed `dlite_scheduler_`),
//! named after kube-scheduler's where one exists.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::backend::queue::QueueLengths;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub queue: String,
}

/// Result of a scheduling attempt, as kube-scheduler labels it.
pub const RESULT_SCHEDULED: &str = "scheduled";
pub const RESULT_UNSCHEDULABLE: &str = "unschedulable";
pub const RESULT_ERROR: &str = "error";

#[derive(Clone)]
pub struct SchedulerMetrics {
    /// Attempts by result: scheduled (a node was chosen), unschedulable (no
    /// node fits), error (the cache or the binding failed).
    pub schedule_attempts: Family<ResultLabel, Counter>,
    /// Time of one cycle's filter and score (not the binding).
    pub scheduling_attempt_duration: Histogram,
    /// Bindings the API server accepted.
    pub bindings: Counter,
    /// Pending pods by queue: active, backoff, unschedulable, gated.
    pub pending_pods: Family<QueueLabel, Gauge>,
    /// 1 while this process leads (or runs without election).
    pub leader: Gauge,
}

impl SchedulerMetrics {
    pub fn register(registry: &mut Registry) -> SchedulerMetrics {
        let m = SchedulerMetrics {
            schedule_attempts: Family::default(),
            scheduling_attempt_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            bindings: Counter::default(),
            pending_pods: Family::default(),
            leader: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("dlite_scheduler");
        r.register(
            "schedule_attempts",
            "Scheduling attempts by result",
            m.schedule_attempts.clone(),
        );
        r.register_with_unit(
            "scheduling_attempt_duration",
            "Time one attempt took to filter and score",
            Unit::Seconds,
            m.scheduling_attempt_duration.clone(),
        );
        r.register(
            "bindings",
            "Bindings the API server accepted",
            m.bindings.clone(),
        );
        r.register(
            "pending_pods",
            "Pending pods by queue",
            m.pending_pods.clone(),
        );
        r.register(
            "leader",
            "1 while this process is the leader",
            m.leader.clone(),
        );
        m
    }

    pub fn attempt(&self, result: &str, seconds: f64) {
        self.schedule_attempts
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
        if result != RESULT_ERROR {
            self.scheduling_attempt_duration.observe(seconds);
        }
    }

    pub fn set_queue(&self, lengths: QueueLengths) {
        for (queue, n) in [
            ("active", lengths.active),
            ("backoff", lengths.backoff),
            ("unschedulable", lengths.unschedulable),
            ("gated", lengths.gated),
        ] {
            self.pending_pods
                .get_or_create(&QueueLabel {
                    queue: queue.to_string(),
                })
                .set(n as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_named_and_counted() {
        let mut registry = Registry::default();
        let m = SchedulerMetrics::register(&mut registry);
        m.attempt(RESULT_SCHEDULED, 0.001);
        m.attempt(RESULT_SCHEDULED, 0.002);
        m.attempt(RESULT_UNSCHEDULABLE, 0.001);
        m.bindings.inc();
        m.set_queue(QueueLengths {
            active: 2,
            unschedulable: 1,
            ..Default::default()
        });
        m.leader.set(1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "dlite_scheduler_schedule_attempts_total{result=\"scheduled\"} 2",
            "dlite_scheduler_schedule_attempts_total{result=\"unschedulable\"} 1",
            "dlite_scheduler_scheduling_attempt_duration_seconds_count 3",
            "dlite_scheduler_bindings_total 1",
            "dlite_scheduler_pending_pods{queue=\"active\"} 2",
            "dlite_scheduler_pending_pods{queue=\"unschedulable\"} 1",
            "dlite_scheduler_leader 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
