//! PodTopologySpread: keep matching pods evenly spread over topology
//! domains (zones, hosts, ...).
//!
//! Skew of a domain = matching pods in it (plus one if the incoming pod
//! matches its own selector, as it would be there too) minus the global
//! minimum over eligible domains. `DoNotSchedule` constraints filter nodes
//! whose domain would exceed `maxSkew`; `ScheduleAnyway` constraints score.
//!
//! Eligible domains are those of nodes that carry every constraint's key and
//! pass the node inclusion policies (by default: the pod's node affinity is
//! honoured, taints are not). When fewer than `minDomains` domains are
//! eligible the global minimum is taken as 0, which forces pods into new
//! domains as they appear.
//!
//! Cluster-level default constraints (which need the Services and
//! ReplicaSets selecting the pod) are not applied: pods without
//! constraints are not spread by this plugin.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::Pod;

use crate::scheduler::framework::types::{NodeInfo, PodInfo, Snapshot, pod_labels, pod_namespace};
use crate::scheduler::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin, PreFilterPlugin, PreScorePlugin,
    ScorePlugin, Status,
};
use crate::scheduler::util::labels::{Labels, Selector};

use super::names;
use super::node_affinity::RequiredNodeAffinity;
use super::taint_toleration::{
    find_matching_untolerated_taint, is_do_not_schedule_taint, node_taints, pod_tolerations,
};

pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
/// Every node is its own domain under this key; counts are per node.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";

const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";

#[derive(Clone, Debug)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: Selector,
    min_domains: usize,
    honor_node_affinity: bool,
    honor_node_taints: bool,
}

impl Constraint {
    /// Whether `node`'s domain takes part in this constraint's counting.
    fn includes_node(
        &self,
        pod: &Pod,
        node_info: &NodeInfo,
        required: &RequiredNodeAffinity,
    ) -> bool {
        if self.honor_node_affinity && !required.matches(&node_info.node) {
            return false;
        }
        if self.honor_node_taints
            && find_matching_untolerated_taint(
                node_taints(node_info),
                pod_tolerations(pod),
                is_do_not_schedule_taint,
            )
            .is_some()
        {
            return false;
        }
        true
    }
}

/// The pod's constraints with the given `whenUnsatisfiable`.
fn constraints(pod: &Pod, when_unsatisfiable: &str) -> Vec<Constraint> {
    let own_labels = pod_labels(pod);
    pod.spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when_unsatisfiable)
        .map(|c| {
            let mut selector = Selector::from_label_selector(c.label_selector.as_ref());
            // matchLabelKeys narrow the selector to pods sharing the
            // incoming pod's values (e.g. the same rollout revision).
            let keys: Labels = c
                .match_label_keys
                .iter()
                .flatten()
                .filter_map(|k| own_labels.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            if !keys.is_empty() {
                selector = selector.with_label_set(&keys);
            }
            Constraint {
                max_skew: i64::from(c.max_skew),
                topology_key: c.topology_key.clone(),
                selector,
                min_domains: c.min_domains.map_or(1, |m| m.max(1) as usize),
                honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

fn has_all_keys(labels: &Labels, constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .all(|c| labels.contains_key(&c.topology_key))
}

/// Pods on a node counted by a selector: same namespace as the incoming
/// pod, not terminating (a pod being deleted is about to leave its
/// domain). The select-everything selector counts nothing, as upstream.
fn count_pods_match_selector(pods: &[PodInfo], selector: &Selector, namespace: &str) -> i64 {
    if selector.is_empty() {
        return 0;
    }
    pods.iter()
        .filter(|p| p.pod.metadata.deletion_timestamp.is_none() && p.namespace() == namespace)
        .filter(|p| selector.matches(pod_labels(&p.pod)))
        .count() as i64
}

pub struct PodTopologySpread;

const PRE_FILTER_STATE_KEY: &str = "PreFilterPodTopologySpread";
const PRE_SCORE_STATE_KEY: &str = "PreScorePodTopologySpread";

struct PreFilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: domain value -> matching pods.
    match_num: Vec<HashMap<String, i64>>,
    /// Per constraint: the global minimum used for skew.
    min_match_num: Vec<i64>,
}

fn pre_filter_state(pod: &Pod, snapshot: &Snapshot) -> PreFilterState {
    let constraints = constraints(pod, DO_NOT_SCHEDULE);
    let mut match_num = vec![HashMap::new(); constraints.len()];
    if !constraints.is_empty() {
        let required = RequiredNodeAffinity::from_pod(pod);
        let namespace = pod_namespace(pod);
        for node_info in snapshot.node_infos() {
            let labels = node_info.labels();
            if !has_all_keys(labels, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !c.includes_node(pod, node_info, &required) {
                    continue;
                }
                let count = count_pods_match_selector(&node_info.pods, &c.selector, namespace);
                *match_num[i]
                    .entry(labels[&c.topology_key].clone())
                    .or_insert(0) += count;
            }
        }
    }
    let min_match_num = constraints
        .iter()
        .zip(&match_num)
        .map(|(c, counts)| {
            if counts.len() < c.min_domains {
                0
            } else {
                counts.values().copied().min().unwrap_or(0)
            }
        })
        .collect();
    PreFilterState {
        constraints,
        match_num,
        min_match_num,
    }
}

struct PreScoreState {
    constraints: Vec<Constraint>,
    /// Feasible nodes lacking a constraint key: they score 0.
    ignored_names: HashSet<String>,
    ignored_indices: HashSet<usize>,
    /// Per constraint: domain value -> matching pods, for the domains of
    /// feasible nodes (hostname constraints count per node instead).
    pair_counts: Vec<HashMap<String, i64>>,
    /// Per constraint: ln(domains + 2), so a pod in a constraint with many
    /// domains weighs more than one with few.
    weights: Vec<f64>,
}

fn pre_score_state(
    pod: &Pod,
    snapshot: &Snapshot,
    feasible_nodes: &[usize],
) -> Option<PreScoreState> {
    let constraints = constraints(pod, SCHEDULE_ANYWAY);
    if constraints.is_empty() {
        return None;
    }
    let mut ignored_names = HashSet::new();
    let mut ignored_indices = HashSet::new();
    let mut pair_counts = vec![HashMap::new(); constraints.len()];
    for &i in feasible_nodes {
        let node_info = &snapshot[i];
        let labels = node_info.labels();
        if !has_all_keys(labels, &constraints) {
            ignored_names.insert(node_info.name().to_string());
            ignored_indices.insert(i);
            continue;
        }
        for (ci, c) in constraints.iter().enumerate() {
            if c.topology_key != LABEL_HOSTNAME {
                pair_counts[ci]
                    .entry(labels[&c.topology_key].clone())
                    .or_insert(0);
            }
        }
    }
    let weights = constraints
        .iter()
        .zip(&pair_counts)
        .map(|(c, pairs)| {
            let size = if c.topology_key == LABEL_HOSTNAME {
                feasible_nodes.len() - ignored_indices.len()
            } else {
                pairs.len()
            };
            ((size + 2) as f64).ln()
        })
        .collect();

    // Counts come from every node (not only feasible ones): spreading is
    // about where matching pods are, wherever this pod may go.
    let required = RequiredNodeAffinity::from_pod(pod);
    let namespace = pod_namespace(pod);
    for node_info in snapshot.node_infos() {
        let labels = node_info.labels();
        if !has_all_keys(labels, &constraints) {
            continue;
        }
        for (ci, c) in constraints.iter().enumerate() {
            if c.topology_key == LABEL_HOSTNAME || !c.includes_node(pod, node_info, &required) {
                continue;
            }
            if let Some(count) = pair_counts[ci].get_mut(&labels[&c.topology_key]) {
                *count += count_pods_match_selector(&node_info.pods, &c.selector, namespace);
            }
        }
    }
    Some(PreScoreState {
        constraints,
        ignored_names,
        ignored_indices,
        pair_counts,
        weights,
    })
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        names::POD_TOPOLOGY_SPREAD
    }
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot) -> Status {
        let s = pre_filter_state(pod, snapshot);
        if s.constraints.is_empty() {
            return Status::skip();
        }
        state.write(PRE_FILTER_STATE_KEY, s);
        Status::success()
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, pod: &Pod, node_info: &NodeInfo) -> Status {
        // Filter needs the whole cluster's counts: without PreFilter there
        // is nothing to compare with, so the constraint cannot be judged.
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_STATE_KEY) else {
            return Status::success();
        };
        let own_labels = pod_labels(pod);
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node_info.labels().get(&c.topology_key) else {
                // Labels are the node's business: preemption cannot help.
                return Status::unschedulable_and_unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            let self_match = i64::from(c.selector.matches(own_labels));
            let match_num = s.match_num[i].get(value.as_str()).copied().unwrap_or(0);
            let skew = match_num + self_match - s.min_match_num[i];
            if skew > c.max_skew {
                return Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        snapshot: &Snapshot,
        feasible_nodes: &[usize],
    ) -> Status {
        match pre_score_state(pod, snapshot, feasible_nodes) {
            Some(s) => {
                state.write(PRE_SCORE_STATE_KEY, s);
                Status::success()
            }
            None => Status::skip(),
        }
    }
}

impl ScorePlugin for PodTopologySpread {
    /// Raw score (lower is better): per constraint, matching pods in the
    /// node's domain times the constraint's weight, plus `maxSkew - 1` so
    /// a looser constraint flattens the differences.
    fn score(&self, state: &CycleState, pod: &Pod, node_info: &NodeInfo) -> i64 {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) else {
            return 0;
        };
        if s.ignored_names.contains(node_info.name()) {
            return 0;
        }
        let namespace = pod_namespace(pod);
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node_info.labels().get(&c.topology_key) else {
                continue;
            };
            let count = if c.topology_key == LABEL_HOSTNAME {
                count_pods_match_selector(&node_info.pods, &c.selector, namespace)
            } else {
                s.pair_counts[i].get(value.as_str()).copied().unwrap_or(0)
            };
            score += count as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    /// Reverses and scales: the least crowded node gets 100, and nodes
    /// without the keys get 0.
    fn normalize_score(&self, state: &CycleState, _pod: &Pod, scores: &mut [NodeScore]) {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) else {
            return;
        };
        let considered = || {
            scores
                .iter()
                .filter(|n| !s.ignored_indices.contains(&n.node_index))
                .map(|n| n.score)
        };
        let min_score = considered().min().unwrap_or(0);
        let max_score = considered().max().unwrap_or(0).max(0);
        for n in scores.iter_mut() {
            n.score = if s.ignored_indices.contains(&n.node_index) {
                0
            } else if max_score == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max_score + min_score - n.score) / max_score
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::testing::{node, pod, spread};
    use k8s_openapi::api::core::v1::Node;

    fn filter_all(p: &Pod, nodes: &[Node], pods: &[Pod]) -> Vec<Status> {
        let snapshot = Snapshot::new(nodes, pods);
        let mut state = CycleState::default();
        PodTopologySpread.pre_filter(&mut state, p, &snapshot);
        (0..snapshot.len())
            .map(|i| PodTopologySpread.filter(&state, p, &snapshot[i]))
            .collect()
    }

    fn zone_nodes() -> Vec<Node> {
        vec![
            node("a").label("zone", "z1").build(),
            node("b").label("zone", "z1").build(),
            node("c").label("zone", "z2").build(),
        ]
    }

    #[test]
    fn skew_counts_the_pod_itself_only_if_it_matches() {
        let pods = [pod("x").on("c").label("app", "web").build()];
        // The incoming pod does not match its own selector: adding it
        // changes no count, so z2 (1 pod, min 0) is still within skew 1.
        let p = pod("p")
            .label("app", "other")
            .spread(spread(1, "zone", DO_NOT_SCHEDULE, &[("app", "web")]))
            .build();
        assert!(
            filter_all(&p, &zone_nodes(), &pods)
                .iter()
                .all(Status::is_success)
        );
        let p = pod("p")
            .label("app", "web")
            .spread(spread(1, "zone", DO_NOT_SCHEDULE, &[("app", "web")]))
            .build();
        let s = filter_all(&p, &zone_nodes(), &pods);
        assert!(s[0].is_success() && s[1].is_success());
        assert_eq!(s[2].code(), Code::Unschedulable);
    }

    #[test]
    fn min_domains_forces_new_domains() {
        // One pod in each zone: min 1, skew of any zone is 1 -> fits.
        let pods = [
            pod("x").on("a").label("app", "web").build(),
            pod("y").on("c").label("app", "web").build(),
        ];
        let mut c = spread(1, "zone", DO_NOT_SCHEDULE, &[("app", "web")]);
        let p = pod("p").label("app", "web").spread(c.clone()).build();
        assert!(
            filter_all(&p, &zone_nodes(), &pods)
                .iter()
                .all(Status::is_success)
        );
        // minDomains 3 with 2 zones: the minimum counts as 0, skew 2 > 1.
        c.min_domains = Some(3);
        let p = pod("p").label("app", "web").spread(c).build();
        assert!(
            filter_all(&p, &zone_nodes(), &pods)
                .iter()
                .all(|s| !s.is_success())
        );
    }

    #[test]
    fn other_namespaces_and_terminating_pods_are_not_counted() {
        let mut deleting = pod("y").on("c").label("app", "web").build();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let pods = [
            pod("x").ns("other").on("c").label("app", "web").build(),
            deleting,
        ];
        let p = pod("p")
            .label("app", "web")
            .spread(spread(1, "zone", DO_NOT_SCHEDULE, &[("app", "web")]))
            .build();
        assert!(
            filter_all(&p, &zone_nodes(), &pods)
                .iter()
                .all(Status::is_success)
        );
    }

    #[test]
    fn node_affinity_policy_decides_eligible_domains() {
        // Pods only in z1; the pod may only go to z1 nodes. With the
        // default (Honor) z2 is not a domain at all: min over {z1} = 1.
        let nodes = vec![
            node("a").label("zone", "z1").label("pool", "x").build(),
            node("c").label("zone", "z2").build(),
        ];
        let pods = [pod("x").on("a").label("app", "web").build()];
        let c = spread(1, "zone", DO_NOT_SCHEDULE, &[("app", "web")]);
        let p = pod("p")
            .label("app", "web")
            .node_selector(&[("pool", "x")])
            .spread(c.clone())
            .build();
        assert!(filter_all(&p, &nodes, &pods)[0].is_success());
        // Ignore: z2 counts with 0 pods, so z1 would reach skew 2.
        let mut ignore = c;
        ignore.node_affinity_policy = Some("Ignore".into());
        let p = pod("p")
            .label("app", "web")
            .node_selector(&[("pool", "x")])
            .spread(ignore)
            .build();
        assert!(!filter_all(&p, &nodes, &pods)[0].is_success());
    }

    #[test]
    fn node_taints_policy_honor_drops_tainted_domains() {
        let nodes = vec![
            node("a").label("zone", "z1").build(),
            node("c")
                .label("zone", "z2")
                .taint("k", "v", "NoSchedule")
                .build(),
        ];
        let pods = [pod("x").on("a").label("app", "web").build()];
        let mut c = spread(1, "zone", DO_NOT_SCHEDULE, &[("app", "web")]);
        let p = pod("p").label("app", "web").spread(c.clone()).build();
        assert!(
            !filter_all(&p, &nodes, &pods)[0].is_success(),
            "Ignore: z2 counts, skew 2"
        );
        c.node_taints_policy = Some("Honor".into());
        let p = pod("p").label("app", "web").spread(c).build();
        assert!(
            filter_all(&p, &nodes, &pods)[0].is_success(),
            "Honor: only z1 is a domain"
        );
    }

    #[test]
    fn match_label_keys_narrow_the_selector() {
        let pods = [pod("x")
            .on("c")
            .label("app", "web")
            .label("rev", "1")
            .build()];
        let mut c = spread(1, "zone", DO_NOT_SCHEDULE, &[("app", "web")]);
        c.match_label_keys = Some(vec!["rev".into()]);
        // A new revision does not count the old one's pods.
        let p = pod("p")
            .label("app", "web")
            .label("rev", "2")
            .spread(c.clone())
            .build();
        assert!(
            filter_all(&p, &zone_nodes(), &pods)
                .iter()
                .all(Status::is_success)
        );
        let p = pod("p")
            .label("app", "web")
            .label("rev", "1")
            .spread(c)
            .build();
        assert!(!filter_all(&p, &zone_nodes(), &pods)[2].is_success());
    }

    fn scores(p: &Pod, nodes: &[Node], pods: &[Pod]) -> Vec<i64> {
        let snapshot = Snapshot::new(nodes, pods);
        let feasible: Vec<usize> = (0..snapshot.len()).collect();
        let mut state = CycleState::default();
        assert!(
            PodTopologySpread
                .pre_score(&mut state, p, &snapshot, &feasible)
                .is_success()
        );
        let mut s: Vec<NodeScore> = feasible
            .iter()
            .map(|&i| NodeScore {
                node_index: i,
                score: PodTopologySpread.score(&state, p, &snapshot[i]),
            })
            .collect();
        PodTopologySpread.normalize_score(&state, p, &mut s);
        s.iter().map(|n| n.score).collect()
    }

    #[test]
    fn schedule_anyway_prefers_less_crowded_domains() {
        let nodes = vec![
            node("a").label("zone", "z1").build(),
            node("b").label("zone", "z1").build(),
            node("c").label("zone", "z2").build(),
            node("d").build(),
        ];
        let pods = [
            pod("x1").on("a").label("app", "web").build(),
            pod("x2").on("a").label("app", "web").build(),
            pod("x3").on("c").label("app", "web").build(),
        ];
        let p = pod("p")
            .label("app", "web")
            .spread(spread(1, "zone", SCHEDULE_ANYWAY, &[("app", "web")]))
            .build();
        // weight ln(2+2); raw z1 = round(2*1.386) = 3, z2 = round(1.386) = 1.
        // 100*(3+1-3)/3 = 33 for z1, 100*(3+1-1)/3 = 100 for z2; d lacks the key.
        assert_eq!(scores(&p, &nodes, &pods), [33, 33, 100, 0]);
    }

    #[test]
    fn hostname_constraints_count_per_node() {
        let nodes = vec![
            node("a").label(LABEL_HOSTNAME, "a").build(),
            node("b").label(LABEL_HOSTNAME, "b").build(),
            node("c").label(LABEL_HOSTNAME, "c").build(),
        ];
        let pods = [
            pod("x1").on("a").label("app", "web").build(),
            pod("x2").on("a").label("app", "web").build(),
            pod("x3").on("b").label("app", "web").build(),
        ];
        let p = pod("p")
            .label("app", "web")
            .spread(spread(
                2,
                LABEL_HOSTNAME,
                SCHEDULE_ANYWAY,
                &[("app", "web")],
            ))
            .build();
        // weight ln(3+2) = 1.609; raw a = round(2*1.609 + 1) = 4,
        // b = round(1.609 + 1) = 3, c = 1. min 1, max 4.
        assert_eq!(scores(&p, &nodes, &pods), [25, 50, 100]);
    }

    #[test]
    fn no_soft_constraints_skips_scoring() {
        let snapshot = Snapshot::new(&zone_nodes(), &[]);
        let p = pod("p")
            .spread(spread(1, "zone", DO_NOT_SCHEDULE, &[("app", "web")]))
            .build();
        assert!(
            PodTopologySpread
                .pre_score(&mut CycleState::default(), &p, &snapshot, &[0, 1])
                .is_skip()
        );
    }
}
