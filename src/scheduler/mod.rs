//! dlite-scheduler: a filter -> score -> bind scheduler in the shape of
//! kube-scheduler's default profile.
//!
//! This folder holds the pure core: everything is a function over a
//! [`Snapshot`] of nodes and pods, with no I/O, so the rules are unit-tested
//! without a cluster (see `scenarios.rs` for the spec's scenario table).
//! The watches, queue and binder wrap around it.
//!
//! - [`quantity`], [`resource`] and [`labels`] read resource quantities,
//!   pod requests and label selectors.
//! - [`snapshot`] has [`NodeInfo`] (a node with its pods and precomputed
//!   sums) and [`Snapshot`] (all nodes, plus `assume` for a pod being bound).
//! - [`framework`] has the extension points, [`CycleState`], and the
//!   cycle's steps [`find_nodes_that_fit`], [`prioritize_nodes`],
//!   [`select_host`], [`fit_error_message`].
//! - [`plugins`] has one file per default plugin.

pub mod framework;
pub mod labels;
pub mod plugins;
pub mod quantity;
pub mod resource;
pub mod snapshot;

#[cfg(test)]
mod scenarios;
#[cfg(test)]
pub(crate) mod testing;

pub use framework::{
    Code, CycleState, Diagnosis, FilterOutcome, FitError, Framework, NodeDiagnosis,
    NodePluginScores, Profile, ScheduleResult, ScoringStrategy, ScoringStrategyType, Status,
    filter_node, find_nodes_that_fit, fit_error_message, prioritize_nodes, schedule_pod,
    select_host,
};
pub use plugins::priority_sort;
pub use plugins::scheduling_gates::is_gated;
pub use snapshot::{NodeInfo, PodInfo, Snapshot, SnapshotError};
