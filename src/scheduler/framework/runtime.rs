//! The [`Framework`]: a profile's plugins, instantiated and run at their
//! extension points (upstream framework/runtime/framework.go). Which
//! plugins a default framework holds, and their default weights, is the
//! plugin registry's business (plugins/registry.rs): the framework knows
//! only the interfaces.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use super::cycle_state::CycleState;
use super::interface::{
    DEFAULT_SCHEDULER_NAME, FilterPlugin, PreFilterPlugin, PreScorePlugin, ScorePlugin, Status,
};
use super::types::{NodeInfo, Snapshot};
use crate::scheduler::util::resource::{RESOURCE_CPU, RESOURCE_MEMORY};

/// How NodeResourcesFit scores: prefer emptier nodes (spreading) or fuller
/// ones (bin packing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScoringStrategyType {
    #[default]
    LeastAllocated,
    MostAllocated,
}

/// A resource NodeResourcesFit scores on, with its weight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSpec {
    pub name: String,
    pub weight: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoringStrategy {
    #[serde(rename = "type")]
    pub type_: ScoringStrategyType,
    pub resources: Vec<ResourceSpec>,
}

impl Default for ScoringStrategy {
    fn default() -> Self {
        ScoringStrategy {
            type_: ScoringStrategyType::LeastAllocated,
            resources: vec![
                ResourceSpec {
                    name: RESOURCE_CPU.into(),
                    weight: 1,
                },
                ResourceSpec {
                    name: RESOURCE_MEMORY.into(),
                    weight: 1,
                },
            ],
        }
    }
}

/// The configurable part of a scheduler profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub scheduler_name: String,
    /// Score plugin weights that differ from the defaults, by plugin name.
    /// A weight of 0 keeps the plugin from influencing the choice.
    #[serde(default)]
    pub plugin_weights: BTreeMap<String, i64>,
    #[serde(default)]
    pub scoring_strategy: ScoringStrategy,
    /// Percentage of nodes to look at in large clusters; None or 0 means
    /// adaptive (see [`num_feasible_nodes_to_find`](crate::scheduler::schedule_one::num_feasible_nodes_to_find)).
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<u32>,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
            plugin_weights: BTreeMap::new(),
            scoring_strategy: ScoringStrategy::default(),
            percentage_of_nodes_to_score: None,
        }
    }
}

impl Profile {
    /// The weight of a score plugin: the profile's own, or `default` (the
    /// registry's) when the profile does not set one.
    pub fn weight_or(&self, plugin: &str, default: i64) -> i64 {
        self.plugin_weights.get(plugin).copied().unwrap_or(default)
    }
}

/// A profile with its plugins instantiated, in the order they run.
pub struct Framework {
    profile: Profile,
    pre_filter_plugins: Vec<Arc<dyn PreFilterPlugin>>,
    filter_plugins: Vec<Arc<dyn FilterPlugin>>,
    pre_score_plugins: Vec<Arc<dyn PreScorePlugin>>,
    score_plugins: Vec<(Arc<dyn ScorePlugin>, i64)>,
}

impl Framework {
    /// A framework without plugins; the registry
    /// (`plugins::registry::default_framework`) adds the default set.
    pub fn empty(profile: Profile) -> Framework {
        Framework {
            profile,
            pre_filter_plugins: Vec::new(),
            filter_plugins: Vec::new(),
            pre_score_plugins: Vec::new(),
            score_plugins: Vec::new(),
        }
    }

    pub fn with_pre_filter(mut self, plugin: Arc<dyn PreFilterPlugin>) -> Framework {
        self.pre_filter_plugins.push(plugin);
        self
    }

    pub fn with_filter(mut self, plugin: Arc<dyn FilterPlugin>) -> Framework {
        self.filter_plugins.push(plugin);
        self
    }

    pub fn with_pre_score(mut self, plugin: Arc<dyn PreScorePlugin>) -> Framework {
        self.pre_score_plugins.push(plugin);
        self
    }

    /// Adds a score plugin with the profile's weight for it, or
    /// `default_weight` when the profile sets none.
    pub fn with_score(mut self, plugin: Arc<dyn ScorePlugin>, default_weight: i64) -> Framework {
        let weight = self.profile.weight_or(plugin.name(), default_weight);
        self.score_plugins.push((plugin, weight));
        self
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The score plugins with their weights, in the order they run.
    pub fn score_plugins(&self) -> &[(Arc<dyn ScorePlugin>, i64)] {
        &self.score_plugins
    }

    /// Runs every PreScore plugin; a plugin that answers Skip has its Score
    /// left out for this pod.
    pub fn run_pre_score_plugins(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        snapshot: &Snapshot,
        feasible_nodes: &[usize],
    ) {
        for plugin in &self.pre_score_plugins {
            if plugin
                .pre_score(state, pod, snapshot, feasible_nodes)
                .is_skip()
            {
                state.skip_score(plugin.name());
            }
        }
    }

    pub fn filter_plugin_names(&self) -> Vec<&'static str> {
        self.filter_plugins.iter().map(|p| p.name()).collect()
    }

    pub fn score_plugin_weights(&self) -> Vec<(&'static str, i64)> {
        self.score_plugins
            .iter()
            .map(|(p, w)| (p.name(), *w))
            .collect()
    }
}

impl fmt::Debug for Framework {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Framework")
            .field("profile", &self.profile)
            .field("filter_plugins", &self.filter_plugin_names())
            .field("score_plugins", &self.score_plugin_weights())
            .finish()
    }
}

/// Runs every PreFilter plugin. A rejection ends the cycle for all nodes.
pub fn run_pre_filter_plugins(
    framework: &Framework,
    pod: &Pod,
    snapshot: &Snapshot,
) -> (CycleState, Status) {
    let mut state = CycleState::default();
    for plugin in &framework.pre_filter_plugins {
        let status = plugin.pre_filter(&mut state, pod, snapshot);
        if status.is_skip() {
            state.skip_filter(plugin.name());
        } else if !status.is_success() {
            return (state, status.with_plugin(plugin.name()));
        }
    }
    (state, Status::success())
}

/// Runs the filter plugins on one node, stopping at the first rejection
/// (its reasons are the node's reasons). Pure: safe to call in parallel.
pub fn filter_node(
    framework: &Framework,
    state: &CycleState,
    pod: &Pod,
    node_info: &NodeInfo,
) -> Status {
    for plugin in &framework.filter_plugins {
        if state.skips_filter(plugin.name()) {
            continue;
        }
        let status = plugin.filter(state, pod, node_info);
        if !status.is_success() {
            return status.with_plugin(plugin.name());
        }
    }
    Status::success()
}
