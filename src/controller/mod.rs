//! The DeploymentLite controller: pure rollout rules in [`rollout`], the
//! [`planner`] that orders them into one sync, and the [`reconciler`] that
//! executes plans against the API server.

pub mod defaulting;
pub mod hash;
pub mod planner;
pub mod reconciler;
pub mod rollout;
