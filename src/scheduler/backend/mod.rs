//! What the scheduling loop keeps between cycles (upstream
//! pkg/scheduler/backend), still without I/O:
//!
//! - [`cache`]: the watches' nodes and assigned pods plus assumed pods,
//!   kept as one [`Snapshot`](crate::scheduler::framework::types::Snapshot)
//!   updated in place.
//! - [`queue`]: activeQ (PrioritySort), backoffQ, unschedulable and gated
//!   pods.
//! - [`cluster_event`]: which cluster changes move which unschedulable pods
//!   back to be retried.

pub mod cache;
pub mod cluster_event;
pub mod queue;
