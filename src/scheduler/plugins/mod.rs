//! The default plugins, one module each, with the rules of the default
//! kube-scheduler profile (docs/scheduler.md). Plugins that only shape the
//! queue ([`scheduling_gates`], [`priority_sort`]) are plain functions.
//! [`registry`] knows the default set, its order and its weights.

pub mod balanced_allocation;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod priority_sort;
pub mod registry;
pub mod scheduling_gates;
pub mod taint_toleration;

pub use registry::{default_framework, names};
