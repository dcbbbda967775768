//! The DeploymentLite controller: pure rollout rules in [`rollout`], the
//! [`planner`] that orders them into one sync, and the [`reconciler`] that
//! executes plans against the API server.

pub mod defaulting;
pub mod expectations;
pub mod hash;
pub(crate) mod planner;
pub mod reconciler;
pub(crate) mod rollout;
