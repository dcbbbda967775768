//! The plugin registry (upstream framework/plugins/registry.go and the
//! default profile): the default plugins, the order they run in and their
//! default score weights. The framework depends on none of this.

use std::sync::Arc;

use super::{
    balanced_allocation, image_locality, inter_pod_affinity, node_affinity, node_name, node_ports,
    node_resources_fit, node_unschedulable, pod_topology_spread, taint_toleration,
};
use crate::scheduler::framework::{Framework, Profile, ScorePlugin};

/// Plugin names as they appear in configuration, diagnoses and logs.
pub mod names {
    pub const NODE_UNSCHEDULABLE: &str = "NodeUnschedulable";
    pub const NODE_NAME: &str = "NodeName";
    pub const TAINT_TOLERATION: &str = "TaintToleration";
    pub const NODE_AFFINITY: &str = "NodeAffinity";
    pub const NODE_PORTS: &str = "NodePorts";
    pub const NODE_RESOURCES_FIT: &str = "NodeResourcesFit";
    pub const NODE_RESOURCES_BALANCED_ALLOCATION: &str = "NodeResourcesBalancedAllocation";
    pub const POD_TOPOLOGY_SPREAD: &str = "PodTopologySpread";
    pub const INTER_POD_AFFINITY: &str = "InterPodAffinity";
    pub const IMAGE_LOCALITY: &str = "ImageLocality";
}

/// Default score weights of the default profile. Taints weigh most because
/// PreferNoSchedule is an explicit operator wish; affinity and spreading
/// are explicit user wishes; resource balance and image locality are
/// heuristics.
pub fn default_weight(plugin: &str) -> i64 {
    match plugin {
        names::TAINT_TOLERATION => 3,
        names::NODE_AFFINITY | names::POD_TOPOLOGY_SPREAD | names::INTER_POD_AFFINITY => 2,
        _ => 1,
    }
}

/// A framework with the default plugins, configured by `profile`, in the
/// default profile's order. Filters run
/// cheapest and most decisive first, so most rejected nodes are rejected
/// before the expensive topology plugins look at them.
pub fn default_framework(profile: Profile) -> Framework {
    let strategy = profile.scoring_strategy.clone();
    let framework = Framework::empty(profile);
    let node_unschedulable = Arc::new(node_unschedulable::NodeUnschedulable);
    let node_name = Arc::new(node_name::NodeName);
    let taint_toleration = Arc::new(taint_toleration::TaintToleration);
    let node_affinity = Arc::new(node_affinity::NodeAffinity);
    let node_ports = Arc::new(node_ports::NodePorts);
    let fit = Arc::new(node_resources_fit::NodeResourcesFit::new(strategy));
    let balanced = Arc::new(balanced_allocation::BalancedAllocation);
    let spread = Arc::new(pod_topology_spread::PodTopologySpread);
    let inter_pod = Arc::new(inter_pod_affinity::InterPodAffinity::default());
    let image_locality = Arc::new(image_locality::ImageLocality);

    let framework = framework
        .with_pre_filter(node_affinity.clone())
        .with_pre_filter(node_ports.clone())
        .with_pre_filter(fit.clone())
        .with_pre_filter(spread.clone())
        .with_pre_filter(inter_pod.clone())
        .with_filter(node_unschedulable)
        .with_filter(node_name)
        .with_filter(taint_toleration.clone())
        .with_filter(node_affinity.clone())
        .with_filter(node_ports)
        .with_filter(fit.clone())
        .with_filter(spread.clone())
        .with_filter(inter_pod.clone())
        .with_pre_score(taint_toleration.clone())
        .with_pre_score(node_affinity.clone())
        .with_pre_score(fit.clone())
        .with_pre_score(balanced.clone())
        .with_pre_score(spread.clone())
        .with_pre_score(inter_pod.clone())
        .with_pre_score(image_locality.clone());
    // Score plugins in the order their breakdown is reported.
    let score_plugins: [Arc<dyn ScorePlugin>; 7] = [
        taint_toleration,
        node_affinity,
        fit,
        spread,
        inter_pod,
        balanced,
        image_locality,
    ];
    score_plugins.into_iter().fold(framework, |fw, plugin| {
        let weight = default_weight(plugin.name());
        fw.with_score(plugin, weight)
    })
}

#[cfg(test)]
/// A score plugin's weight under `profile`: the profile's own, else the
/// default.
pub fn weight(profile: &Profile, plugin: &str) -> i64 {
    profile.weight_or(plugin, default_weight(plugin))
}
