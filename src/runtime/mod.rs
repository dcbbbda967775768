//! Runtime plumbing shared by the controller and the scheduler: events,
//! leader election, metrics, and the metrics/health endpoints.

pub mod args;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod server;
