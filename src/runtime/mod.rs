//! Runtime plumbing shared by the controller and the scheduler: events,
//! leader election, metrics, the metrics/health endpoints, and the
//! client-side rate limit on API requests.

pub mod args;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod rate_limit;
pub mod server;
