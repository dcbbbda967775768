//! DeploymentLite: apps/v1 Deployment semantics for the `DeploymentLite`
//! custom resource, with a from-scratch controller.
//!
//! Layout: [`api`] holds the resource types, [`controller`] the rollout
//! planner (pure) and the reconciler that executes its plans.

pub mod api;
pub mod cli;
pub mod controller;
pub mod flags;
pub mod runtime;
pub mod scheduler;
pub mod telemetry;
