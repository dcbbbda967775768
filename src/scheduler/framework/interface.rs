//! The plugin interfaces (upstream framework/interface.go): the outcome of
//! a plugin call ([`Code`], [`Status`]) and one trait per extension point.

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use super::cycle_state::CycleState;
use super::types::{NodeInfo, Snapshot};

/// Highest score a plugin may give a node after normalisation.
pub const MAX_NODE_SCORE: i64 = 100;
/// Below this many nodes every node is examined.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Floor for the adaptive percentage of nodes to score.
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;
/// The `spec.schedulerName` this scheduler answers to by default.
pub const DEFAULT_SCHEDULER_NAME: &str = "dlite-scheduler";
/// The failure message when the cluster has no nodes at all.
pub const NO_NODES_AVAILABLE_MSG: &str = "no nodes available to schedule pods";

/// Outcome class of a plugin call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Code {
    Success,
    /// The node is unsuitable now; evicting lower-priority pods might help.
    Unschedulable,
    /// The node is unsuitable and no preemption on it could change that.
    UnschedulableAndUnresolvable,
    /// From PreFilter/PreScore: this plugin has nothing to do for this pod,
    /// so its Filter/Score is not run.
    Skip,
}

/// A plugin's verdict with the human-readable reasons that end up in the
/// `FailedScheduling` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    code: Code,
    reasons: Vec<String>,
    plugin: Option<&'static str>,
}

impl Status {
    pub fn new(code: Code, reasons: Vec<String>) -> Status {
        Status {
            code,
            reasons,
            plugin: None,
        }
    }

    pub fn success() -> Status {
        Status::new(Code::Success, Vec::new())
    }

    pub fn skip() -> Status {
        Status::new(Code::Skip, Vec::new())
    }

    pub fn unschedulable(reason: impl Into<String>) -> Status {
        Status::new(Code::Unschedulable, vec![reason.into()])
    }

    pub fn unschedulable_and_unresolvable(reason: impl Into<String>) -> Status {
        Status::new(Code::UnschedulableAndUnresolvable, vec![reason.into()])
    }

    /// Records which plugin produced this status.
    pub fn with_plugin(mut self, plugin: &'static str) -> Status {
        self.plugin = Some(plugin);
        self
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }

    pub fn plugin(&self) -> Option<&'static str> {
        self.plugin
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    pub fn is_skip(&self) -> bool {
        self.code == Code::Skip
    }

    /// Unschedulable or UnschedulableAndUnresolvable.
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }

    /// The reasons joined as one sentence.
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;
}

/// Runs once per pod before any node is examined.
pub trait PreFilterPlugin: Plugin {
    /// Success, Skip (this plugin's Filter is then not run for this pod), or
    /// a rejection that applies to every node.
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot) -> Status;
}

/// Judges one node. Must only read `state`, so nodes can be filtered in
/// parallel.
pub trait FilterPlugin: Plugin {
    fn filter(&self, state: &CycleState, pod: &Pod, node_info: &NodeInfo) -> Status;
}

/// Runs once per pod before scoring, with the feasible nodes known.
pub trait PreScorePlugin: Plugin {
    /// Success, or Skip (this plugin's Score is then not run for this pod).
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        snapshot: &Snapshot,
        feasible_nodes: &[usize],
    ) -> Status;
}

/// A plugin's score for one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeScore {
    /// Position of the node in the snapshot.
    pub node_index: usize,
    pub score: i64,
}

pub trait ScorePlugin: Plugin {
    /// Raw score of one node; [`ScorePlugin::normalize_score`] brings the
    /// raw scores of all feasible nodes into 0..=100.
    fn score(&self, state: &CycleState, pod: &Pod, node_info: &NodeInfo) -> i64;

    fn normalize_score(&self, _state: &CycleState, _pod: &Pod, _scores: &mut [NodeScore]) {}
}

/// Scales raw scores to 0..=`max_priority` by the highest one; with
/// `reverse`, fewer is better. All-zero raw scores mean "no preference":
/// 0 everywhere, or `max_priority` everywhere when reversed.
pub fn default_normalize_score(max_priority: i64, reverse: bool, scores: &mut [NodeScore]) {
    let max_count = scores.iter().map(|s| s.score).max().unwrap_or(0).max(0);
    if max_count == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| s.score = max_priority);
        }
        return;
    }
    for s in scores {
        let scaled = max_priority * s.score / max_count;
        s.score = if reverse {
            max_priority - scaled
        } else {
            scaled
        };
    }
}
