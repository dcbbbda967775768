//! dlite-scheduler: a filter -> score -> bind scheduler in the shape of
//! kube-scheduler's default profile, laid out as upstream's
//! pkg/scheduler is (docs/scheduler.md describes the cycle and the queue).
//!
//! The pure core, with no I/O, so the rules are unit-tested without a
//! cluster (`scenarios.rs` holds the scenario table):
//!
//! - [`framework`]: the plugin interfaces, [`CycleState`], the
//!   [`Framework`] that runs a profile's plugins, and the data they read
//!   ([`NodeInfo`], [`Snapshot`]).
//! - [`plugins`]: one module per default plugin, and the registry that
//!   knows the default set and weights.
//! - [`schedule_one`]: one cycle for one pod: [`find_nodes_that_fit`],
//!   [`prioritize_nodes`], [`select_host`], [`fit_error_message`]; the
//!   `_with` variants fan the nodes out over a
//!   [`framework::parallelize::Parallelizer`].
//! - [`util`]: resource quantities, pod requests, labels and selectors.
//!
//! Around it, still without I/O:
//!
//! - [`backend`]: the cache (nodes, assigned and assumed pods, kept as one
//!   snapshot updated in place), the scheduling queue, and which cluster
//!   events retry which pods.
//! - [`diagnosis`]: the `dlite.dev/scheduling-diagnosis` annotation (also
//!   read by `kubectl dlite why-pending`).
//! - [`config`]: flags and the YAML file, validated.
//! - [`rate_limit`]: the client-side QPS/burst token bucket.
//!
//! And the I/O, kept thin: [`binder`] (bindings, failure records, events),
//! [`eventhandlers`] (the loop that owns cache and queue, applies watch
//! events between cycles and runs one cycle at a time), [`run`] (clients,
//! watches, shutdown) and [`metrics`].

pub mod backend;
pub mod binder;
pub mod config;
pub mod diagnosis;
pub mod eventhandlers;
pub mod framework;
pub mod metrics;
pub mod plugins;
pub mod rate_limit;
pub mod run;
pub mod schedule_one;
pub mod util;

#[cfg(test)]
mod scenarios;
#[cfg(test)]
pub(crate) mod testing;

pub use framework::{
    Code, CycleState, Framework, NodeInfo, PodInfo, Profile, ScoringStrategy, ScoringStrategyType,
    Snapshot, SnapshotError, Status, filter_node,
};
pub use plugins::default_framework;
pub use plugins::priority_sort;
pub use plugins::scheduling_gates::is_gated;
pub use schedule_one::{
    Diagnosis, FilterOutcome, FitError, NodeDiagnosis, NodePluginScores, ScheduleResult,
    find_nodes_that_fit, find_nodes_that_fit_with, fit_error_message, prioritize_nodes,
    prioritize_nodes_with, schedule_pod, schedule_pod_with, select_host,
};
