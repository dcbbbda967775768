//! One scheduling cycle for one pod (upstream schedule_one.go): find the
//! nodes that fit, prioritise them, select the host, and explain a failure.
//!
//! [`filter_node`] and the Score plugins only read shared state, so the
//! `_with` variants fan nodes out over a [`Parallelizer`] and give the same
//! answer as the sequential functions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use super::framework::parallelize::Parallelizer;
use super::framework::types::Snapshot;
use super::framework::{
    Code, CycleState, Framework, MAX_NODE_SCORE, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND,
    MIN_FEASIBLE_NODES_TO_FIND, NO_NODES_AVAILABLE_MSG, NodeScore, ScorePlugin, Status,
    filter_node, run_pre_filter_plugins,
};
use super::preemption::{Candidate, Preemption, preempt};

/// Why one node was rejected: the first failing filter plugin and its
/// reasons. Small enough to list per node in an annotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDiagnosis {
    pub node: String,
    pub plugin: String,
    pub reasons: Vec<String>,
    /// Set when preemption on this node could not help.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unresolvable: bool,
}

/// Everything learnt about a pod that did not fit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    /// One entry per rejected node, in the order they were examined.
    pub nodes: Vec<NodeDiagnosis>,
    /// Plugins that rejected at least one node: the cluster events that
    /// could make the pod fit are the ones these plugins care about.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub unschedulable_plugins: BTreeSet<String>,
    /// Set when a PreFilter plugin rejected the pod for all nodes at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_filter_msg: Option<String>,
    /// Appended after the filter reasons: what the PostFilter plugins
    /// say ([`post_filter_message`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_filter_msg: Option<String>,
}

impl Diagnosis {
    fn record(&mut self, node: &str, status: &Status) {
        let plugin = status.plugin().unwrap_or_default();
        self.unschedulable_plugins.insert(plugin.to_string());
        self.nodes.push(NodeDiagnosis {
            node: node.to_string(),
            plugin: plugin.to_string(),
            reasons: status.reasons().to_vec(),
            unresolvable: status.code() == Code::UnschedulableAndUnresolvable,
        });
    }
}

/// Result of the filter phase.
#[derive(Debug)]
pub struct FilterOutcome {
    /// The cycle state PreFilter produced; scoring continues with it.
    pub state: CycleState,
    /// Snapshot positions of the nodes that passed every filter, in the
    /// order they were found.
    pub feasible_nodes: Vec<usize>,
    pub diagnosis: Diagnosis,
    /// Nodes examined (feasible + rejected).
    pub evaluated_nodes: usize,
    /// Where the next pod's search should start.
    pub next_start_index: usize,
}

/// How many feasible nodes are enough. Small clusters are searched fully;
/// in large ones a percentage is, adaptively `max(5, 50 - N/125)` %, but
/// never fewer than 100 nodes: scoring every node of a 5000-node cluster
/// costs more than a slightly better placement is worth.
pub fn num_feasible_nodes_to_find(
    percentage_of_nodes_to_score: Option<u32>,
    num_all_nodes: usize,
) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let percentage = match percentage_of_nodes_to_score {
        Some(p) if p > 0 => (p as usize).min(100),
        _ => 50usize
            .saturating_sub(num_all_nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND),
    };
    (num_all_nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

#[cfg(test)]
/// The filter phase: PreFilter, then nodes from `start_index` onwards
/// (wrapping) until enough feasible nodes are found or all were examined.
/// Starting where the previous pod stopped gives every node its turn in
/// large clusters.
pub fn find_nodes_that_fit(
    framework: &Framework,
    pod: &Pod,
    snapshot: &Snapshot,
    start_index: usize,
) -> FilterOutcome {
    find_nodes_that_fit_with(
        framework,
        pod,
        snapshot,
        start_index,
        &Parallelizer::sequential(),
    )
}

/// `find_nodes_that_fit` with the nodes filtered on `parallelizer`'s
/// threads; the outcome is the same as the sequential one (same nodes
/// examined, same order, same diagnosis).
pub fn find_nodes_that_fit_with(
    framework: &Framework,
    pod: &Pod,
    snapshot: &Snapshot,
    start_index: usize,
    parallelizer: &Parallelizer,
) -> FilterOutcome {
    let num_all_nodes = snapshot.len();
    let start_index = if num_all_nodes == 0 {
        0
    } else {
        start_index % num_all_nodes
    };
    let (state, status) = run_pre_filter_plugins(framework, pod, snapshot);
    let mut diagnosis = Diagnosis::default();

    if !status.is_success() {
        // The same verdict holds for every node; the event quotes it once.
        for node_info in snapshot.node_infos() {
            diagnosis.record(node_info.name(), &status);
        }
        diagnosis.pre_filter_msg = Some(status.message());
        return FilterOutcome {
            state,
            feasible_nodes: Vec::new(),
            diagnosis,
            evaluated_nodes: 0,
            next_start_index: start_index,
        };
    }

    // Nominated by an earlier preemption: that node first, and if the pod
    // fits there now it goes there (upstream's evaluateNominatedNode).
    let nominated = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .and_then(|n| snapshot.index_of(n));
    if let Some(i) = nominated
        && filter_node(framework, &state, pod, &snapshot[i]).is_success()
    {
        return FilterOutcome {
            state,
            feasible_nodes: vec![i],
            diagnosis,
            evaluated_nodes: 1,
            next_start_index: start_index,
        };
    }

    let num_nodes_to_find = num_feasible_nodes_to_find(
        framework.profile().percentage_of_nodes_to_score,
        num_all_nodes,
    );
    let statuses = parallelizer.until_enough(
        num_all_nodes,
        num_nodes_to_find,
        |offset| {
            let index = (start_index + offset) % num_all_nodes;
            filter_node(framework, &state, pod, &snapshot[index])
        },
        Status::is_success,
    );
    let mut feasible_nodes = Vec::with_capacity(num_nodes_to_find);
    let mut evaluated_nodes = 0;
    // Read in node order and stop where a sequential search would have:
    // nodes a parallel worker examined past that point do not count.
    for (offset, status) in statuses.into_iter().enumerate() {
        if feasible_nodes.len() >= num_nodes_to_find {
            break;
        }
        let index = (start_index + offset) % num_all_nodes;
        evaluated_nodes += 1;
        if status.is_success() {
            feasible_nodes.push(index);
        } else {
            diagnosis.record(snapshot[index].name(), &status);
        }
    }
    let next_start_index = if num_all_nodes == 0 {
        0
    } else {
        (start_index + evaluated_nodes) % num_all_nodes
    };
    FilterOutcome {
        state,
        feasible_nodes,
        diagnosis,
        evaluated_nodes,
        next_start_index,
    }
}

/// One plugin's weighted contribution to a node's total.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginScore {
    pub plugin: String,
    pub score: i64,
}

/// A feasible node's total and its breakdown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePluginScores {
    pub node_index: usize,
    pub name: String,
    pub scores: Vec<PluginScore>,
    pub total_score: i64,
}

#[cfg(test)]
/// Scores the feasible nodes: each score plugin's raw scores are
/// normalised to 0..=100, multiplied by the plugin's weight and summed.
/// With a single feasible node there is nothing to rank and scoring is
/// skipped (total 0, no breakdown).
pub fn prioritize_nodes(
    framework: &Framework,
    state: &mut CycleState,
    pod: &Pod,
    snapshot: &Snapshot,
    feasible_nodes: &[usize],
) -> Vec<NodePluginScores> {
    prioritize_nodes_with(
        framework,
        state,
        pod,
        snapshot,
        feasible_nodes,
        &Parallelizer::sequential(),
    )
}

/// `prioritize_nodes` with the raw scores of the nodes computed on
/// `parallelizer`'s threads (normalising needs all of them, so it stays
/// sequential); same result.
pub fn prioritize_nodes_with(
    framework: &Framework,
    state: &mut CycleState,
    pod: &Pod,
    snapshot: &Snapshot,
    feasible_nodes: &[usize],
    parallelizer: &Parallelizer,
) -> Vec<NodePluginScores> {
    let mut result: Vec<NodePluginScores> = feasible_nodes
        .iter()
        .map(|&i| NodePluginScores {
            node_index: i,
            name: snapshot[i].name().to_string(),
            scores: Vec::new(),
            total_score: 0,
        })
        .collect();
    if feasible_nodes.len() <= 1 {
        return result;
    }

    framework.run_pre_score_plugins(state, pod, snapshot, feasible_nodes);

    let state: &CycleState = state;
    let active: Vec<&(Arc<dyn ScorePlugin>, i64)> = framework
        .score_plugins()
        .iter()
        .filter(|(plugin, _)| !state.skips_score(plugin.name()))
        .collect();
    // One pass per node computing every plugin's raw score, so the nodes
    // fan out once per cycle rather than once per plugin.
    let raw: Vec<Vec<i64>> = parallelizer.map(feasible_nodes.len(), |k| {
        let node_info = &snapshot[feasible_nodes[k]];
        active
            .iter()
            .map(|(plugin, _)| plugin.score(state, pod, node_info))
            .collect()
    });
    for (p, (plugin, weight)) in active.into_iter().enumerate() {
        let mut scores: Vec<NodeScore> = feasible_nodes
            .iter()
            .zip(&raw)
            .map(|(&i, node_raw)| NodeScore {
                node_index: i,
                score: node_raw[p],
            })
            .collect();
        plugin.normalize_score(state, pod, &mut scores);
        for (entry, s) in result.iter_mut().zip(&scores) {
            debug_assert_eq!(entry.node_index, s.node_index);
            // Out-of-range scores can only come from objects the API
            // server would reject (e.g. negative preference weights); clamp
            // rather than let one such pod stop the scheduler.
            let weighted = s.score.clamp(0, MAX_NODE_SCORE) * weight;
            entry.scores.push(PluginScore {
                plugin: plugin.name().to_string(),
                score: weighted,
            });
            entry.total_score += weighted;
        }
    }
    result
}

/// The node with the highest total; among equals, the `random`-th one
/// (modulo their count), so a uniformly random `random` gives a uniform
/// choice. Returns the node's snapshot position.
pub fn select_host(scores: &[NodePluginScores], random: u64) -> Option<usize> {
    let best = scores.iter().map(|s| s.total_score).max()?;
    let ties: Vec<usize> = scores
        .iter()
        .filter(|s| s.total_score == best)
        .map(|s| s.node_index)
        .collect();
    Some(ties[(random % ties.len() as u64) as usize])
}

/// The `FailedScheduling` message: `0/N nodes are available: ` then
/// `<count> <reason>` for every distinct reason, sorted as strings,
/// comma-joined, ending with `.`. A PreFilter rejection is quoted instead
/// of the per-node reasons (they would all repeat it).
pub fn fit_error_message(total_nodes: usize, diagnosis: &Diagnosis) -> String {
    if total_nodes == 0 {
        return NO_NODES_AVAILABLE_MSG.to_string();
    }
    let mut msg = format!("0/{total_nodes} nodes are available:");
    match &diagnosis.pre_filter_msg {
        Some(pre_filter_msg) if !pre_filter_msg.is_empty() => {
            msg.push_str(&format!(" {pre_filter_msg}."));
        }
        _ => {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for node in &diagnosis.nodes {
                for reason in &node.reasons {
                    *counts.entry(reason.as_str()).or_default() += 1;
                }
            }
            push_histogram(&mut msg, &counts);
        }
    }
    // Upstream appends the PostFilter plugins' message as it is, with no
    // period of its own.
    if let Some(post_filter_msg) = diagnosis
        .post_filter_msg
        .as_deref()
        .filter(|m| !m.is_empty())
    {
        msg.push_str(&format!(" {post_filter_msg}"));
    }
    msg
}

/// ` <count> <reason>, ...` and a period, sorted as whole strings, count
/// first, as upstream's message is: "10 x" sorts before "2 y".
pub(crate) fn push_histogram(msg: &mut String, counts: &BTreeMap<&str, usize>) {
    let mut entries: Vec<String> = counts
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    entries.sort();
    if !entries.is_empty() {
        msg.push_str(&format!(" {}.", entries.join(", ")));
    }
}

/// The PostFilter part of the message: what upstream's default PostFilter
/// plugins say when they cannot help, joined with `, ` in their order.
///
/// - DynamicResources: `no new claims to deallocate` for a pod without
///   resource claims (dlite-scheduler does not schedule claims; a pod with
///   claims gets nothing from it).
/// - DefaultPreemption: `preemption: ` and why it cannot help
///   ([`crate::scheduler::preemption`]).
///
/// Empty when preemption found a node: upstream's PostFilter then
/// succeeded, and a success says nothing.
pub fn post_filter_message(pod: &Pod, preemption: &Preemption) -> String {
    if matches!(preemption, Preemption::Nominate(_)) {
        return String::new();
    }
    let mut parts = Vec::new();
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.resource_claims.as_ref())
        .is_none_or(Vec::is_empty)
    {
        parts.push("no new claims to deallocate".to_string());
    }
    parts.push(preemption.message());
    parts.join(", ")
}

/// A successful cycle's choice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleResult {
    pub suggested_host: String,
    pub node_index: usize,
    pub evaluated_nodes: usize,
    pub feasible_nodes: usize,
    pub next_start_index: usize,
}

/// The pod fits nowhere; `Display` gives the event message.
#[derive(Clone, Debug, PartialEq)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub diagnosis: Diagnosis,
    pub next_start_index: usize,
    /// Where preemption would make room, and the pods to evict there.
    pub nominate: Option<Box<Candidate>>,
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&fit_error_message(self.num_all_nodes, &self.diagnosis))
    }
}

impl std::error::Error for FitError {}

#[cfg(test)]
/// Filter, score and select for one pod: the pure middle of a cycle.
/// `random` breaks ties between equally scored nodes.
pub fn schedule_pod(
    framework: &Framework,
    pod: &Pod,
    snapshot: &Snapshot,
    start_index: usize,
    random: u64,
) -> Result<ScheduleResult, FitError> {
    schedule_pod_with(
        framework,
        pod,
        snapshot,
        start_index,
        random,
        &Parallelizer::sequential(),
    )
}

/// `schedule_pod` with filtering and scoring fanned out over
/// `parallelizer`; same answer.
pub fn schedule_pod_with(
    framework: &Framework,
    pod: &Pod,
    snapshot: &Snapshot,
    start_index: usize,
    random: u64,
    parallelizer: &Parallelizer,
) -> Result<ScheduleResult, FitError> {
    let mut outcome = find_nodes_that_fit_with(framework, pod, snapshot, start_index, parallelizer);
    if outcome.feasible_nodes.is_empty() {
        let mut nominate = None;
        if !snapshot.is_empty() {
            let preemption = preempt(
                framework,
                pod,
                snapshot,
                &outcome.diagnosis,
                snapshot.pdbs(),
            );
            outcome.diagnosis.post_filter_msg =
                Some(post_filter_message(pod, &preemption)).filter(|m| !m.is_empty());
            if let Preemption::Nominate(c) = preemption {
                nominate = Some(Box::new(c));
            }
        }
        return Err(FitError {
            num_all_nodes: snapshot.len(),
            diagnosis: outcome.diagnosis,
            next_start_index: outcome.next_start_index,
            nominate,
        });
    }
    let scores = prioritize_nodes_with(
        framework,
        &mut outcome.state,
        pod,
        snapshot,
        &outcome.feasible_nodes,
        parallelizer,
    );
    let node_index = select_host(&scores, random).expect("feasible nodes were scored");
    Ok(ScheduleResult {
        suggested_host: snapshot[node_index].name().to_string(),
        node_index,
        evaluated_nodes: outcome.evaluated_nodes,
        feasible_nodes: outcome.feasible_nodes.len(),
        next_start_index: outcome.next_start_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::{Plugin, PreFilterPlugin, Profile};
    use crate::scheduler::plugins::{default_framework, names};
    use crate::scheduler::testing::{node, pod};
    use proptest::prelude::*;

    #[test]
    fn nodes_to_find() {
        assert_eq!(num_feasible_nodes_to_find(None, 0), 0);
        assert_eq!(num_feasible_nodes_to_find(None, 99), 99);
        assert_eq!(num_feasible_nodes_to_find(None, 100), 100);
        assert_eq!(num_feasible_nodes_to_find(None, 1000), 420);
        assert_eq!(num_feasible_nodes_to_find(None, 5000), 500);
        assert_eq!(num_feasible_nodes_to_find(None, 6000), 300, "the 5% floor");
        assert_eq!(num_feasible_nodes_to_find(Some(0), 1000), 420);
        assert_eq!(num_feasible_nodes_to_find(Some(100), 1000), 1000);
        assert_eq!(num_feasible_nodes_to_find(Some(150), 1000), 1000);
        assert_eq!(num_feasible_nodes_to_find(Some(1), 1000), 100);
        assert_eq!(num_feasible_nodes_to_find(Some(30), 1000), 300);
    }

    fn nodes(n: usize) -> Vec<k8s_openapi::api::core::v1::Node> {
        (0..n)
            .map(|i| {
                node(&format!("n{i:04}"))
                    .allocatable("1", "1Gi", "110")
                    .build()
            })
            .collect()
    }

    #[test]
    fn small_clusters_are_searched_fully() {
        let snapshot = Snapshot::new(&nodes(10), &[]);
        let fw = default_framework(Profile::default());
        let out = find_nodes_that_fit(&fw, &pod("p").build(), &snapshot, 7);
        assert_eq!(out.feasible_nodes.len(), 10);
        assert_eq!(out.feasible_nodes[0], 7, "the search starts at start_index");
        assert_eq!(out.evaluated_nodes, 10);
        assert_eq!(out.next_start_index, 7);
    }

    #[test]
    fn large_clusters_stop_early_and_rotate() {
        let snapshot = Snapshot::new(&nodes(1000), &[]);
        let fw = default_framework(Profile::default());
        let p = pod("p").build();
        let first = find_nodes_that_fit(&fw, &p, &snapshot, 0);
        assert_eq!(first.feasible_nodes.len(), 420);
        assert_eq!(first.next_start_index, 420);
        let second = find_nodes_that_fit(&fw, &p, &snapshot, first.next_start_index);
        assert_eq!(second.feasible_nodes[0], 420);
        assert_eq!(second.next_start_index, 840);
        let third = find_nodes_that_fit(&fw, &p, &snapshot, second.next_start_index);
        assert_eq!(third.feasible_nodes[0], 840);
        assert_eq!(third.feasible_nodes[160], 0, "wraps around");
        assert_eq!(third.next_start_index, 260);
    }

    #[test]
    fn rejected_nodes_count_as_examined() {
        let mut ns = nodes(200);
        for n in ns.iter_mut().take(50) {
            n.spec.get_or_insert_with(Default::default).unschedulable = Some(true);
        }
        let snapshot = Snapshot::new(&ns, &[]);
        let fw = default_framework(Profile::default());
        // 200 nodes: pct 49 -> 98 -> at least 100 feasible to find.
        let out = find_nodes_that_fit(&fw, &pod("p").build(), &snapshot, 0);
        assert_eq!(out.feasible_nodes.len(), 100);
        assert_eq!(out.diagnosis.nodes.len(), 50);
        assert_eq!(out.evaluated_nodes, 150);
        assert_eq!(out.next_start_index, 150);
    }

    #[test]
    fn select_host_breaks_ties_with_the_random_number() {
        let mk = |i: usize, total: i64| NodePluginScores {
            node_index: i,
            name: format!("n{i}"),
            scores: Vec::new(),
            total_score: total,
        };
        let scores = vec![mk(0, 10), mk(1, 30), mk(2, 5), mk(3, 30)];
        assert_eq!(select_host(&scores, 0), Some(1));
        assert_eq!(select_host(&scores, 1), Some(3));
        assert_eq!(select_host(&scores, 2), Some(1));
        assert_eq!(select_host(&[], 0), None);
    }

    #[test]
    fn one_feasible_node_skips_scoring() {
        let snapshot = Snapshot::new(&nodes(1), &[]);
        let fw = default_framework(Profile::default());
        let p = pod("p").build();
        let mut out = find_nodes_that_fit(&fw, &p, &snapshot, 0);
        let scores = prioritize_nodes(&fw, &mut out.state, &p, &snapshot, &out.feasible_nodes);
        assert_eq!(scores.len(), 1);
        assert!(scores[0].scores.is_empty());
        let result = schedule_pod(&fw, &p, &snapshot, 0, 0).unwrap();
        assert_eq!(result.suggested_host, "n0000");
    }

    #[test]
    fn weights_come_from_the_profile() {
        let fw = default_framework(Profile::default());
        assert_eq!(
            fw.score_plugin_weights(),
            vec![
                (names::TAINT_TOLERATION, 3),
                (names::NODE_AFFINITY, 2),
                (names::NODE_RESOURCES_FIT, 1),
                (names::POD_TOPOLOGY_SPREAD, 2),
                (names::INTER_POD_AFFINITY, 2),
                (names::NODE_RESOURCES_BALANCED_ALLOCATION, 1),
                (names::IMAGE_LOCALITY, 1),
            ]
        );
        let mut profile = Profile::default();
        profile
            .plugin_weights
            .insert(names::IMAGE_LOCALITY.into(), 5);
        let fw = default_framework(profile);
        assert!(
            fw.score_plugin_weights()
                .contains(&(names::IMAGE_LOCALITY, 5))
        );
    }

    #[test]
    fn no_nodes_message() {
        let err = schedule_pod(
            &default_framework(Profile::default()),
            &pod("p").build(),
            &Snapshot::default(),
            3,
            0,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "no nodes available to schedule pods");
    }

    #[test]
    fn message_sorts_as_strings_and_counts_every_reason() {
        let d = Diagnosis {
            nodes: vec![
                NodeDiagnosis {
                    node: "a".into(),
                    plugin: names::NODE_RESOURCES_FIT.into(),
                    reasons: vec!["Insufficient cpu".into(), "Insufficient memory".into()],
                    unresolvable: false,
                },
                NodeDiagnosis {
                    node: "b".into(),
                    plugin: names::NODE_RESOURCES_FIT.into(),
                    reasons: vec!["Insufficient cpu".into()],
                    unresolvable: false,
                },
            ],
            ..Default::default()
        };
        // Whole strings are sorted, so the count leads.
        assert_eq!(
            fit_error_message(2, &d),
            "0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu."
        );
        let mut many = Diagnosis::default();
        for i in 0..12 {
            let reason = if i < 10 { "x" } else { "y" };
            many.nodes.push(NodeDiagnosis {
                node: format!("n{i}"),
                plugin: "P".into(),
                reasons: vec![reason.into()],
                unresolvable: false,
            });
        }
        assert_eq!(
            fit_error_message(12, &many),
            "0/12 nodes are available: 10 x, 2 y."
        );
    }

    /// The whole message of a pod that fits nowhere, PostFilter part
    /// included.
    fn failure(p: &Pod, nodes: &[k8s_openapi::api::core::v1::Node], pods: &[Pod]) -> String {
        let fw = default_framework(Profile::default());
        let snapshot = Snapshot::new(nodes, pods);
        schedule_pod(&fw, p, &snapshot, 0, 0)
            .expect_err("fits nowhere")
            .to_string()
    }

    #[test]
    fn post_filter_part_as_upstream_v1_36_words_it() {
        let two = [
            node("a").allocatable("4", "8Gi", "110").build(),
            node("b")
                .allocatable("4", "8Gi", "110")
                .taint("k", "v", "NoSchedule")
                .build(),
        ];
        // Larger than a whole node: no eviction can help anywhere.
        let huge = pod("p").container(&[("cpu", "100")]).build();
        assert_eq!(
            failure(&huge, &two, &[]),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint(s). \
             no new claims to deallocate, preemption: 0/2 nodes are available: \
             2 Preemption is not helpful for scheduling."
        );
        // Room taken by a pod of the same priority: nothing to evict.
        let busy = pod("busy").on("a").container(&[("cpu", "3")]).build();
        let p = pod("p").container(&[("cpu", "2")]).build();
        assert_eq!(
            failure(&p, &two, std::slice::from_ref(&busy)),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint(s). \
             no new claims to deallocate, preemption: 0/2 nodes are available: \
             1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
        );
        // preemptionPolicy: Never.
        let mut never = p.clone();
        never.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
        assert_eq!(
            failure(&never, &two, std::slice::from_ref(&busy)),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint(s). \
             no new claims to deallocate, preemption: not eligible due to preemptionPolicy=Never."
        );
        // A lower-priority pod where room is short: preempted. Success says
        // nothing after the filters' sentence.
        let high = pod("p").container(&[("cpu", "2")]).priority(100).build();
        assert_eq!(
            failure(&high, &two, std::slice::from_ref(&busy)),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint(s)."
        );
        let fw = default_framework(Profile::default());
        let snapshot = Snapshot::new(&two, std::slice::from_ref(&busy));
        let fit = schedule_pod(&fw, &high, &snapshot, 0, 0).unwrap_err();
        let c = fit.nominate.expect("a candidate");
        assert_eq!(c.node, "a");
        assert_eq!(c.victims.len(), 1);
        // With resource claims, DynamicResources says nothing here.
        let mut claims = huge.clone();
        claims.spec.as_mut().unwrap().resource_claims = Some(vec![
            serde_json::from_value(serde_json::json!({"name": "gpu", "resourceClaimName": "c"}))
                .unwrap(),
        ]);
        assert!(
            failure(&claims, &two, &[]).contains(". preemption: 0/2 nodes are available:"),
            "{}",
            failure(&claims, &two, &[])
        );
    }

    #[test]
    fn a_nominated_node_is_tried_first() {
        let nodes = [
            node("a").allocatable("4", "8Gi", "110").build(),
            node("b").allocatable("8", "8Gi", "110").build(),
        ];
        let snapshot = Snapshot::new(&nodes, &[]);
        let fw = default_framework(Profile::default());
        let mut p = pod("p").container(&[("cpu", "1")]).build();
        // Unnominated, the emptier b wins.
        assert_eq!(
            schedule_pod(&fw, &p, &snapshot, 0, 0)
                .unwrap()
                .suggested_host,
            "b"
        );
        p.status.get_or_insert_default().nominated_node_name = Some("a".into());
        let r = schedule_pod(&fw, &p, &snapshot, 0, 0).unwrap();
        assert_eq!((r.suggested_host.as_str(), r.evaluated_nodes), ("a", 1));
        // Where it does not fit, the search goes on as usual.
        let mut big = pod("big").container(&[("cpu", "6")]).build();
        big.status.get_or_insert_default().nominated_node_name = Some("a".into());
        assert_eq!(
            schedule_pod(&fw, &big, &snapshot, 0, 0)
                .unwrap()
                .suggested_host,
            "b"
        );
    }

    #[test]
    fn pre_filter_and_post_filter_messages() {
        let d = Diagnosis {
            pre_filter_msg: Some("node(s) didn't match Pod's node affinity/selector".into()),
            post_filter_msg: Some("preemption: not eligible".into()),
            ..Default::default()
        };
        assert_eq!(
            fit_error_message(3, &d),
            "0/3 nodes are available: node(s) didn't match Pod's node affinity/selector. preemption: not eligible"
        );
    }

    #[test]
    fn node_diagnosis_serialises_compactly() {
        let d = NodeDiagnosis {
            node: "a".into(),
            plugin: "NodeName".into(),
            reasons: vec!["node(s) didn't match the requested node name".into()],
            unresolvable: true,
        };
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(
            json,
            r#"{"node":"a","plugin":"NodeName","reasons":["node(s) didn't match the requested node name"],"unresolvable":true}"#
        );
        let back: NodeDiagnosis = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        let resolvable = NodeDiagnosis {
            unresolvable: false,
            ..d
        };
        assert!(
            !serde_json::to_string(&resolvable)
                .unwrap()
                .contains("unresolvable")
        );
        let diag = Diagnosis {
            nodes: vec![resolvable],
            ..Default::default()
        };
        let back: Diagnosis = serde_json::from_str(&serde_json::to_string(&diag).unwrap()).unwrap();
        assert_eq!(back, diag);
    }

    #[test]
    fn diagnosis_records_the_first_failing_plugin_only() {
        // Cordoned *and* tainted: NodeUnschedulable runs first.
        let n = node("a")
            .unschedulable()
            .taint("k", "v", "NoSchedule")
            .build();
        let snapshot = Snapshot::new(&[n], &[]);
        let fw = default_framework(Profile::default());
        let out = find_nodes_that_fit(&fw, &pod("p").build(), &snapshot, 0);
        assert_eq!(out.diagnosis.nodes.len(), 1);
        assert_eq!(out.diagnosis.nodes[0].plugin, names::NODE_UNSCHEDULABLE);
        assert!(out.diagnosis.nodes[0].unresolvable);
        assert_eq!(
            out.diagnosis.unschedulable_plugins,
            BTreeSet::from([names::NODE_UNSCHEDULABLE.to_string()])
        );
    }

    /// A PreFilter that turns every pod away, to exercise that path.
    struct RejectAll;

    impl Plugin for RejectAll {
        fn name(&self) -> &'static str {
            "RejectAll"
        }
    }

    impl PreFilterPlugin for RejectAll {
        fn pre_filter(&self, _: &mut CycleState, _: &Pod, _: &Snapshot) -> Status {
            Status::unschedulable_and_unresolvable("pod is not welcome")
        }
    }

    #[test]
    fn pre_filter_rejection_applies_to_every_node_and_is_quoted_once() {
        let fw = Framework::empty(Profile::default()).with_pre_filter(Arc::new(RejectAll));
        let snapshot = Snapshot::new(&nodes(3), &[]);
        let out = find_nodes_that_fit(&fw, &pod("p").build(), &snapshot, 2);
        assert!(out.feasible_nodes.is_empty());
        assert_eq!(out.diagnosis.nodes.len(), 3);
        assert!(
            out.diagnosis
                .nodes
                .iter()
                .all(|n| n.plugin == "RejectAll" && n.unresolvable)
        );
        assert_eq!(out.next_start_index, 2, "no node was examined");
        assert_eq!(
            fit_error_message(3, &out.diagnosis),
            "0/3 nodes are available: pod is not welcome."
        );
    }

    #[test]
    fn assumed_pods_are_seen_by_the_next_cycle() {
        // Two nodes with room for one 600m pod each: the first pod's
        // assumption must push the second onto the other node, and a third
        // finds no room.
        let mut snapshot = Snapshot::new(&nodes(2), &[]);
        let fw = default_framework(Profile::default());
        let mut start = 0;
        let mut hosts = Vec::new();
        for name in ["p1", "p2"] {
            let p = pod(name).container(&[("cpu", "600m")]).build();
            let result = schedule_pod(&fw, &p, &snapshot, start, 0).unwrap();
            start = result.next_start_index;
            snapshot.assume(&p, &result.suggested_host).unwrap();
            hosts.push(result.suggested_host);
        }
        hosts.sort();
        assert_eq!(hosts, ["n0000", "n0001"]);
        let p3 = pod("p3").container(&[("cpu", "600m")]).build();
        let err = schedule_pod(&fw, &p3, &snapshot, start, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/2 nodes are available: 2 Insufficient cpu. no new claims to deallocate, \
             preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        );
        assert_eq!(
            err.diagnosis.unschedulable_plugins,
            BTreeSet::from([names::NODE_RESOURCES_FIT.to_string()])
        );
    }

    #[test]
    fn parallel_filtering_and_scoring_give_the_sequential_answer() {
        use crate::scheduler::testing::{affinity_term, spread};
        // A mixed cluster: some nodes full, some tainted, some cordoned, three
        // zones, so filters reject in different ways and scores differ.
        let mut ns = Vec::new();
        let mut pods = Vec::new();
        for i in 0..700 {
            let mut b = node(&format!("n{i:04}"))
                .allocatable(if i % 5 == 0 { "1" } else { "4" }, "8Gi", "110")
                .label("zone", ["a", "b", "c"][i % 3]);
            if i % 11 == 0 {
                b = b.taint("k", "v", "NoSchedule");
            }
            if i % 13 == 0 {
                b = b.unschedulable();
            }
            ns.push(b.build());
            if i % 4 == 0 {
                pods.push(
                    pod(&format!("e{i}"))
                        .on(&format!("n{i:04}"))
                        .label("app", "web")
                        .container(&[("cpu", "700m")])
                        .build(),
                );
            }
        }
        let snapshot = Snapshot::new(&ns, &pods);
        let fw = default_framework(Profile::default());
        let parallel = Parallelizer::new(4).unwrap();
        let candidates = [
            pod("plain").container(&[("cpu", "500m")]).build(),
            pod("big").container(&[("cpu", "3500m")]).build(),
            pod("huge").container(&[("cpu", "64")]).build(),
            pod("spread")
                .label("app", "web")
                .spread(spread(1, "zone", "DoNotSchedule", &[("app", "web")]))
                .build(),
            pod("anti")
                .label("app", "web")
                .anti_affinity(affinity_term("zone", &[("app", "other")]))
                .build(),
        ];
        for p in &candidates {
            for start in [0, 123, 699] {
                let seq = find_nodes_that_fit(&fw, p, &snapshot, start);
                let par = find_nodes_that_fit_with(&fw, p, &snapshot, start, &parallel);
                assert_eq!(
                    par.feasible_nodes, seq.feasible_nodes,
                    "{:?}",
                    p.metadata.name
                );
                assert_eq!(par.diagnosis, seq.diagnosis);
                assert_eq!(par.evaluated_nodes, seq.evaluated_nodes);
                assert_eq!(par.next_start_index, seq.next_start_index);
                let (mut s1, mut s2) = (seq.state, par.state);
                let a = prioritize_nodes(&fw, &mut s1, p, &snapshot, &seq.feasible_nodes);
                let b = prioritize_nodes_with(
                    &fw,
                    &mut s2,
                    p,
                    &snapshot,
                    &par.feasible_nodes,
                    &parallel,
                );
                assert_eq!(a, b);
                assert_eq!(
                    schedule_pod(&fw, p, &snapshot, start, 7),
                    schedule_pod_with(&fw, p, &snapshot, start, 7, &parallel)
                );
            }
        }
    }

    const REASONS: &[&str] = &[
        "Insufficient cpu",
        "Insufficient memory",
        "Too many pods",
        "node(s) were unschedulable",
        "node(s) had untolerated taint(s)",
        "node(s) didn't match Pod's node affinity/selector",
        "node(s) didn't match pod topology spread constraints (missing required label)",
    ];

    proptest! {
        #[test]
        fn fit_error_message_counts_every_reason(
            picks in proptest::collection::vec(proptest::collection::btree_set(0..REASONS.len(), 1..4), 1..40)
        ) {
            let diagnosis = Diagnosis {
                nodes: picks.iter().enumerate().map(|(i, set)| NodeDiagnosis {
                    node: format!("n{i}"),
                    plugin: "P".into(),
                    reasons: set.iter().map(|&r| REASONS[r].to_string()).collect(),
                    unresolvable: false,
                }).collect(),
                ..Default::default()
            };
            let n = picks.len();
            let msg = fit_error_message(n, &diagnosis);
            let prefix = format!("0/{n} nodes are available: ");
            prop_assert!(msg.starts_with(&prefix), "{}", msg);
            prop_assert!(msg.ends_with('.'));
            let body = &msg[prefix.len()..msg.len() - 1];
            let entries: Vec<&str> = body.split(", ").collect();
            let mut sorted = entries.clone();
            sorted.sort();
            prop_assert_eq!(&entries, &sorted);
            let mut total = 0;
            for entry in &entries {
                let (count, reason) = entry.split_once(' ').unwrap();
                prop_assert!(REASONS.contains(&reason));
                total += count.parse::<usize>().unwrap();
            }
            let failing: usize = picks.iter().map(|s| s.len()).sum();
            prop_assert_eq!(total, failing);
        }
    }
}
