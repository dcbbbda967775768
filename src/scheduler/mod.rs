//! dlite-scheduler: a filter -> score -> bind scheduler in the shape of
//! kube-scheduler's default profile.
//!
//! The pure core is a set of functions over a [`Snapshot`] of nodes and
//! pods, with no I/O, so the rules are unit-tested without a cluster (see
//! `scenarios.rs` for the spec's scenario table):
//!
//! - [`quantity`], [`resource`] and [`labels`] read resource quantities,
//!   pod requests and label selectors.
//! - [`snapshot`] has [`NodeInfo`] (a node with its pods and precomputed
//!   sums) and [`Snapshot`] (all nodes, plus `assume` for a pod being bound).
//! - [`framework`] has the extension points, [`CycleState`], and the
//!   cycle's steps [`find_nodes_that_fit`], [`prioritize_nodes`],
//!   [`select_host`], [`fit_error_message`]; the `_with` variants fan the
//!   nodes out over a [`parallelize::Parallelizer`].
//! - [`plugins`] has one file per default plugin.
//!
//! Around it, still without I/O:
//!
//! - [`cache`]: the watches' nodes and assigned pods plus assumed pods, kept
//!   as one snapshot updated in place.
//! - [`queue`]: activeQ (PrioritySort), backoffQ, unschedulable and gated
//!   pods; [`cluster_event`] decides which changes retry which pods.
//! - [`diagnosis`]: the `dlite.dev/scheduling-diagnosis` annotation (also
//!   read by `kubectl dlite why-pending`).
//! - [`config`]: flags and the YAML file, validated.
//! - [`rate_limit`]: the client-side QPS/burst token bucket.
//!
//! And the I/O, kept thin: [`binder`] (bindings, failure records, events),
//! [`schedule_one`] (the loop that owns cache and queue), [`run`]
//! (clients, watches, shutdown) and [`metrics`].

pub mod binder;
pub mod cache;
pub mod cluster_event;
pub mod config;
pub mod diagnosis;
pub mod framework;
pub mod labels;
pub mod metrics;
pub mod parallelize;
pub mod plugins;
pub mod quantity;
pub mod queue;
pub mod rate_limit;
pub mod resource;
pub mod run;
pub mod schedule_one;
pub mod snapshot;

#[cfg(test)]
mod scenarios;
#[cfg(test)]
pub(crate) mod testing;

pub use framework::{
    Code, CycleState, Diagnosis, FilterOutcome, FitError, Framework, NodeDiagnosis,
    NodePluginScores, Profile, ScheduleResult, ScoringStrategy, ScoringStrategyType, Status,
    filter_node, find_nodes_that_fit, find_nodes_that_fit_with, fit_error_message,
    prioritize_nodes, prioritize_nodes_with, schedule_pod, schedule_pod_with, select_host,
};
pub use plugins::priority_sort;
pub use plugins::scheduling_gates::is_gated;
pub use snapshot::{NodeInfo, PodInfo, Snapshot, SnapshotError};
