//! dlite-scheduler: a filter -> score -> bind scheduler in the shape of
//! kube-scheduler's default profile, laid out as upstream's
//! pkg/scheduler is (docs/scheduler.md describes the cycle and the queue).
//!
//! The pure core, with no I/O, so the rules are unit-tested without a
//! cluster (`scenarios.rs` holds the scenario table):
//!
//! - [`framework`]: the plugin interfaces, [`CycleState`](framework::CycleState), the
//!   [`Framework`](framework::Framework) that runs a profile's plugins, and the data they read
//!   ([`NodeInfo`](framework::types::NodeInfo), [`Snapshot`](framework::types::Snapshot)).
//! - [`plugins`]: one module per default plugin, and the registry that
//!   knows the default set and weights.
//! - [`schedule_one`]: one cycle for one pod: [`find_nodes_that_fit`](schedule_one::find_nodes_that_fit_with),
//!   [`prioritize_nodes`](schedule_one::prioritize_nodes_with), [`select_host`](schedule_one::select_host), [`fit_error_message`](schedule_one::fit_error_message); the
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
//! - the client-side QPS/burst token bucket is `runtime::rate_limit`,
//!   shared with dlite-controller.
//!
//! And the I/O, kept thin: [`binder`] (bindings, failure records, events),
//! [`eventhandlers`] (the loop that owns cache and queue, applies watch
//! events between cycles and runs one cycle at a time), [`run`] (clients,
//! watches, shutdown) and [`metrics`].

pub(crate) mod backend;
pub mod binder;
pub mod config;
pub mod diagnosis;
pub mod eventhandlers;
pub(crate) mod framework;
pub mod metrics;
pub(crate) mod plugins;
pub(crate) mod preemption;
pub mod run;
pub(crate) mod schedule_one;
pub(crate) mod util;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
pub(crate) mod testing;
