//! The pure rollout arithmetic of the Deployment controller, ported as rules
//! from docs/controller.md. Nothing here does I/O: every
//! function takes plain values and returns plain values, so the scenario
//! table of docs/controller.md §11 can be tested row by row.
//!
//! A ReplicaSet is seen through [`RsState`], which the reconciler builds
//! from the real apps/v1 ReplicaSet.

use k8s_openapi::jiff::Timestamp;

pub mod bounds;
pub mod cleanup;
pub mod progress;
pub mod rolling;
pub mod scaling;

/// What the rollout rules need to know of one ReplicaSet.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RsState {
    pub name: String,
    /// creationTimestamp; `None` sorts first.
    pub created: Option<Timestamp>,
    /// `dlite.dev/revision`, 0 when absent or unparsable.
    pub revision: i64,
    /// spec.replicas
    pub spec_replicas: i32,
    /// status.replicas
    pub status_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    /// `dlite.dev/desired-replicas`
    pub desired_replicas: Option<i32>,
    /// `dlite.dev/max-replicas`
    pub max_replicas: Option<i32>,
    /// metadata.generation and status.observedGeneration
    pub generation: i64,
    pub observed_generation: i64,
    /// metadata.deletionTimestamp is set
    pub deleting: bool,
}

impl RsState {
    /// Whether the ReplicaSet is active: it wants at least one pod. Only
    /// active ReplicaSets take part in scale-down and proportional scaling
    /// (upstream's "FilterActiveReplicaSets").
    pub fn is_active(&self) -> bool {
        self.spec_replicas > 0
    }
}

/// Oldest first: creationTimestamp, then name. This is the order in which
/// upstream scales old ReplicaSets down and picks among equals
/// ("ReplicaSetsByCreationTimestamp"); the name makes it total, so the
/// result never depends on the order the API server listed them in.
pub fn by_creation(a: &RsState, b: &RsState) -> std::cmp::Ordering {
    (a.created, &a.name).cmp(&(b.created, &b.name))
}

/// Sum of spec.replicas ("GetReplicaCountForReplicaSets").
pub(crate) fn spec_sum<'a>(rses: impl IntoIterator<Item = &'a RsState>) -> i32 {
    rses.into_iter().map(|rs| rs.spec_replicas).sum()
}

/// Sum of status.availableReplicas ("GetAvailableReplicaCountForReplicaSets"),
/// each capped at the ReplicaSet's spec.replicas: a ReplicaSet just scaled
/// down still reports pods its controller is about to delete, and those
/// must not pay for taking more pods away (found by the planner fuzzer;
/// upstream counts them).
pub(crate) fn available_sum<'a>(rses: impl IntoIterator<Item = &'a RsState>) -> i32 {
    rses.into_iter()
        .map(|rs| rs.available_replicas.min(rs.spec_replicas.max(0)))
        .sum()
}

/// Builders for the scenario tests of the submodules.
#[cfg(test)]
pub(crate) mod fixture {
    use super::RsState;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};

    /// A fixed clock for tests: 2016-05-20 00:00 UTC plus `minutes`.
    pub(crate) fn at(minutes: i64) -> Timestamp {
        "2016-05-20T00:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_mins(minutes)
    }

    /// A settled ReplicaSet created `minutes` after the test epoch: `spec`
    /// replicas, all of them created, ready and available, generation
    /// observed, no annotations.
    pub(crate) fn rs(name: &str, minutes: i64, spec: i32) -> RsState {
        RsState {
            name: name.to_string(),
            created: Some(at(minutes)),
            revision: 0,
            spec_replicas: spec,
            status_replicas: spec,
            ready_replicas: spec,
            available_replicas: spec,
            desired_replicas: None,
            max_replicas: None,
            generation: 1,
            observed_generation: 1,
            deleting: false,
        }
    }

    impl RsState {
        pub(crate) fn with_available(mut self, available: i32) -> Self {
            self.ready_replicas = available;
            self.available_replicas = available;
            self
        }
        pub(crate) fn with_status_replicas(mut self, replicas: i32) -> Self {
            self.status_replicas = replicas;
            self
        }
        /// The `desired-replicas` / `max-replicas` annotations.
        pub(crate) fn with_annotations(mut self, desired: i32, max: i32) -> Self {
            self.desired_replicas = Some(desired);
            self.max_replicas = Some(max);
            self
        }
        pub(crate) fn with_revision(mut self, revision: i64) -> Self {
            self.revision = revision;
            self
        }
    }

    /// The new size the plan gives `name`, if it writes that ReplicaSet.
    pub(crate) fn size_of(plan: &[(String, i32)], name: &str) -> Option<i32> {
        plan.iter().find(|(n, _)| n == name).map(|(_, size)| *size)
    }
}
