//! The scheduling framework (upstream pkg/scheduler/framework): what a
//! plugin is and how a profile's plugins run, and the data they read.
//!
//! - [`interface`]: [`Code`], [`Status`] and one trait per extension point
//!   (PreFilter, Filter, PreScore, Score).
//! - [`cycle_state`]: [`CycleState`], one pod's scratch space for a cycle.
//! - [`runtime`]: the [`Framework`] that runs a profile's plugins, and the
//!   configurable [`Profile`].
//! - [`types`]: [`NodeInfo`](types::NodeInfo) (a node with its pods and precomputed sums),
//!   [`PodInfo`](types::PodInfo) and the [`Snapshot`](types::Snapshot) of all nodes a cycle reads. Upstream
//!   keeps the snapshot type in its cache package; here it is plain data
//!   the plugins read, so it sits beside them, and `backend::cache` keeps
//!   it up to date.
//! - [`parallelize`]: fanning nodes out over a fixed thread pool.
//!
//! Nothing here knows the concrete plugins: the dependency runs one way,
//! from `plugins` to `framework`.

pub mod cycle_state;
pub mod interface;
pub mod parallelize;
pub mod runtime;
pub mod types;

pub use cycle_state::CycleState;
pub use interface::*;
pub use runtime::{
    Framework, Profile, ResourceSpec, ScoringStrategy, ScoringStrategyType, filter_node,
    run_pre_filter_plugins,
};
