//! DeploymentLite: apps/v1 Deployment semantics for the `DeploymentLite`
//! custom resource, with a from-scratch controller.
//!
//! Layout: [`api`] holds the resource types, [`controller`] the rollout
//! planner (pure) and the reconciler that executes its plans,
//! [`scheduler`] dlite-scheduler, [`cli`] kubectl-dlite, [`runtime`] the
//! plumbing both components share (leader election, metrics, health).
//!
//! The public API is what the binaries, the benchmark and the cluster tests
//! use; everything else is `pub(crate)`, so unused code is reported by the
//! compiler instead of hiding behind an export.

pub mod api;
pub mod cli;
pub mod controller;
pub mod flags;
pub mod runtime;
pub mod scheduler;
pub mod telemetry;

#[cfg(test)]
mod fake_api;
#[cfg(test)]
mod fuzzing;
