//! InterPodAffinity: place pods near (affinity) or away from (anti-affinity)
//! other pods, per topology domain.
//!
//! Required rules work in both directions: the incoming pod's affinity
//! needs a matching pod in the node's domain, its anti-affinity forbids
//! one, and an existing pod's anti-affinity forbids the incoming pod from
//! its domain too (otherwise the first pod's rule would be broken by the
//! second). Preferred rules, of the incoming pod and of existing pods,
//! add or subtract their weights per domain; existing pods' required
//! affinity counts with weight 1 as well, so pods are drawn to where they
//! are wanted.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::scheduler::framework::types::{
    AffinityTerm, NodeInfo, PodInfo, Snapshot, WeightedAffinityTerm, pod_namespace,
};
use crate::scheduler::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin, PreFilterPlugin, PreScorePlugin,
    ScorePlugin, Status,
};
use crate::scheduler::util::labels::Labels;

use super::names;

pub const ERR_REASON_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
pub const ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't match pod anti-affinity rules";
pub const ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Weight given to an existing pod's *required* affinity term that the
/// incoming pod matches, when scoring.
pub const DEFAULT_HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Topology key -> value -> count (or weight). Nested so that a node's
/// labels can be looked up without building owned keys.
#[derive(Debug, Default)]
struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    /// Adds `delta` to the domain of `node_info` under `topology_key`, if
    /// the node has that key.
    fn add(&mut self, node_info: &NodeInfo, topology_key: &str, delta: i64) {
        if let Some(value) = node_info.labels().get(topology_key) {
            *self
                .0
                .entry(topology_key.to_string())
                .or_default()
                .entry(value.clone())
                .or_insert(0) += delta;
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|values| values.get(value))
            .copied()
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub struct InterPodAffinity {
    pub hard_pod_affinity_weight: i64,
    /// When set, existing pods' preferences are only looked at if the
    /// incoming pod has preferences of its own (a speed-up for clusters
    /// that use few affinities).
    pub ignore_preferred_terms_of_existing_pods: bool,
}

impl Default for InterPodAffinity {
    fn default() -> Self {
        InterPodAffinity {
            hard_pod_affinity_weight: DEFAULT_HARD_POD_AFFINITY_WEIGHT,
            ignore_preferred_terms_of_existing_pods: false,
        }
    }
}

/// True when `pod` matches every term (and there is at least one).
fn matches_all_terms(terms: &[AffinityTerm], pod: &Pod, namespace_labels: &Labels) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod, namespace_labels))
}

/// Preferred terms with their weight, negated for anti-affinity.
fn weighted(
    terms: &[WeightedAffinityTerm],
    sign: i64,
) -> impl Iterator<Item = (&AffinityTerm, i64)> {
    terms
        .iter()
        .map(move |t| (&t.term, sign * i64::from(t.weight)))
}

const PRE_FILTER_STATE_KEY: &str = "PreFilterInterPodAffinity";
const PRE_SCORE_STATE_KEY: &str = "PreScoreInterPodAffinity";

struct PreFilterState {
    pod_info: PodInfo,
    own_ns_labels: Labels,
    /// Domains holding an existing pod whose required anti-affinity the
    /// incoming pod matches.
    existing_anti_affinity_counts: TopologyCounts,
    /// Domains holding pods that match *all* the incoming pod's required
    /// affinity terms, per term key.
    affinity_counts: TopologyCounts,
    /// Domains holding pods that match one of the incoming pod's required
    /// anti-affinity terms.
    anti_affinity_counts: TopologyCounts,
}

fn pre_filter_state(pod: &Pod, snapshot: &Snapshot) -> PreFilterState {
    let pod_info = PodInfo::new(Arc::new(pod.clone()));
    let own_ns_labels = snapshot.namespace_labels(pod_namespace(pod)).into_owned();
    let mut existing_anti_affinity_counts = TopologyCounts::default();
    let mut affinity_counts = TopologyCounts::default();
    let mut anti_affinity_counts = TopologyCounts::default();
    let has_own_terms = !(pod_info.required_affinity_terms.is_empty()
        && pod_info.required_anti_affinity_terms.is_empty());

    for node_info in snapshot.node_infos() {
        for existing in &node_info.pods {
            for term in &existing.required_anti_affinity_terms {
                if term.matches(pod, &own_ns_labels) {
                    existing_anti_affinity_counts.add(node_info, &term.topology_key, 1);
                }
            }
            if !has_own_terms {
                continue;
            }
            let existing_ns_labels = snapshot.namespace_labels(existing.namespace());
            if matches_all_terms(
                &pod_info.required_affinity_terms,
                &existing.pod,
                &existing_ns_labels,
            ) {
                for term in &pod_info.required_affinity_terms {
                    affinity_counts.add(node_info, &term.topology_key, 1);
                }
            }
            for term in &pod_info.required_anti_affinity_terms {
                if term.matches(&existing.pod, &existing_ns_labels) {
                    anti_affinity_counts.add(node_info, &term.topology_key, 1);
                }
            }
        }
    }
    PreFilterState {
        pod_info,
        own_ns_labels,
        existing_anti_affinity_counts,
        affinity_counts,
        anti_affinity_counts,
    }
}

impl PreFilterState {
    fn satisfies_pod_affinity(&self, node_info: &NodeInfo) -> bool {
        let terms = &self.pod_info.required_affinity_terms;
        let labels = node_info.labels();
        let mut pods_exist = true;
        for term in terms {
            let Some(value) = labels.get(&term.topology_key) else {
                // Every topology key must be present on the node.
                return false;
            };
            if self.affinity_counts.get(&term.topology_key, value) <= 0 {
                pods_exist = false;
            }
        }
        if pods_exist {
            return true;
        }
        // The first pod of a group that wants to be together: if no pod
        // anywhere matches yet and the pod matches its own terms, it may
        // start the group on any node with the keys. Otherwise such a
        // group could never be scheduled.
        self.affinity_counts.is_empty()
            && matches_all_terms(terms, &self.pod_info.pod, &self.own_ns_labels)
    }

    fn satisfies_pod_anti_affinity(&self, node_info: &NodeInfo) -> bool {
        let labels = node_info.labels();
        self.pod_info
            .required_anti_affinity_terms
            .iter()
            .all(|term| match labels.get(&term.topology_key) {
                Some(value) => self.anti_affinity_counts.get(&term.topology_key, value) <= 0,
                None => true,
            })
    }

    fn satisfies_existing_pods_anti_affinity(&self, node_info: &NodeInfo) -> bool {
        if self.existing_anti_affinity_counts.is_empty() {
            return true;
        }
        node_info
            .labels()
            .iter()
            .all(|(k, v)| self.existing_anti_affinity_counts.get(k, v) <= 0)
    }
}

struct PreScoreState {
    /// Summed weights per domain.
    topology_score: TopologyCounts,
}

impl InterPodAffinity {
    fn pre_score_state(&self, pod: &Pod, snapshot: &Snapshot) -> Option<PreScoreState> {
        let pod_info = PodInfo::new(Arc::new(pod.clone()));
        let has_constraints = !(pod_info.preferred_affinity_terms.is_empty()
            && pod_info.preferred_anti_affinity_terms.is_empty());
        if self.ignore_preferred_terms_of_existing_pods && !has_constraints {
            return None;
        }
        let own_ns_labels = snapshot.namespace_labels(pod_namespace(pod));
        let mut topology_score = TopologyCounts::default();
        let mut credit = |term: &AffinityTerm,
                          target: &Pod,
                          ns_labels: &Labels,
                          node_info: &NodeInfo,
                          weight: i64| {
            if term.matches(target, ns_labels) {
                topology_score.add(node_info, &term.topology_key, weight);
            }
        };
        for node_info in snapshot.node_infos() {
            if node_info.labels().is_empty() {
                continue;
            }
            for existing in &node_info.pods {
                if !has_constraints && !existing.has_affinity() {
                    continue;
                }
                let existing_ns_labels = snapshot.namespace_labels(existing.namespace());
                // The incoming pod's preferences about the existing pod.
                for (term, w) in weighted(&pod_info.preferred_affinity_terms, 1)
                    .chain(weighted(&pod_info.preferred_anti_affinity_terms, -1))
                {
                    credit(term, &existing.pod, &existing_ns_labels, node_info, w);
                }
                // The existing pod's wishes about the incoming pod.
                if self.hard_pod_affinity_weight > 0 {
                    for term in &existing.required_affinity_terms {
                        credit(
                            term,
                            pod,
                            &own_ns_labels,
                            node_info,
                            self.hard_pod_affinity_weight,
                        );
                    }
                }
                for (term, w) in weighted(&existing.preferred_affinity_terms, 1)
                    .chain(weighted(&existing.preferred_anti_affinity_terms, -1))
                {
                    credit(term, pod, &own_ns_labels, node_info, w);
                }
            }
        }
        if topology_score.is_empty() {
            return None;
        }
        Some(PreScoreState { topology_score })
    }
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        names::INTER_POD_AFFINITY
    }
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &Snapshot) -> Status {
        let s = pre_filter_state(pod, snapshot);
        if s.pod_info.required_affinity_terms.is_empty()
            && s.pod_info.required_anti_affinity_terms.is_empty()
            && s.existing_anti_affinity_counts.is_empty()
        {
            return Status::skip();
        }
        state.write(PRE_FILTER_STATE_KEY, s);
        Status::success()
    }
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, _pod: &Pod, node_info: &NodeInfo) -> Status {
        // The rules are about the whole cluster; without PreFilter's counts
        // there is nothing to judge by.
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_STATE_KEY) else {
            return Status::success();
        };
        if !s.satisfies_pod_affinity(node_info) {
            // Evicting pods never creates the pod this one wants to be near.
            return Status::unschedulable_and_unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH);
        }
        if !s.satisfies_pod_anti_affinity(node_info) {
            return Status::unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        if !s.satisfies_existing_pods_anti_affinity(node_info) {
            return Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        Status::success()
    }
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        snapshot: &Snapshot,
        _feasible_nodes: &[usize],
    ) -> Status {
        match self.pre_score_state(pod, snapshot) {
            Some(s) => {
                state.write(PRE_SCORE_STATE_KEY, s);
                Status::success()
            }
            // No preference anywhere: every node would score the same.
            None => Status::skip(),
        }
    }
}

impl ScorePlugin for InterPodAffinity {
    /// Raw score: the summed weights of every domain the node is in (may be
    /// negative).
    fn score(&self, state: &CycleState, _pod: &Pod, node_info: &NodeInfo) -> i64 {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) else {
            return 0;
        };
        s.topology_score
            .0
            .iter()
            .filter_map(|(key, values)| node_info.labels().get(key).and_then(|v| values.get(v)))
            .sum()
    }

    /// Min-max scaling: the least wanted node gets 0, the most wanted 100;
    /// if all are equal, all get 0.
    fn normalize_score(&self, state: &CycleState, _pod: &Pod, scores: &mut [NodeScore]) {
        if state.read::<PreScoreState>(PRE_SCORE_STATE_KEY).is_none() {
            return;
        }
        let min = scores.iter().map(|s| s.score).min().unwrap_or(0);
        let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
        let diff = max - min;
        for s in scores {
            s.score = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((s.score - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::testing::{affinity_term, node, pod};
    use k8s_openapi::api::core::v1::Node;

    fn filter_all(p: &Pod, nodes: &[Node], pods: &[Pod]) -> Vec<Status> {
        let snapshot = Snapshot::new(nodes, pods);
        let plugin = InterPodAffinity::default();
        let mut state = CycleState::default();
        let pre = plugin.pre_filter(&mut state, p, &snapshot);
        (0..snapshot.len())
            .map(|i| {
                if pre.is_skip() {
                    Status::success()
                } else {
                    plugin.filter(&state, p, &snapshot[i])
                }
            })
            .collect()
    }

    fn zones() -> Vec<Node> {
        vec![
            node("a").label("zone", "z1").build(),
            node("b").label("zone", "z1").build(),
            node("c").label("zone", "z2").build(),
            node("d").build(),
        ]
    }

    #[test]
    fn required_affinity_needs_a_matching_pod_in_the_domain() {
        let pods = [pod("db").on("a").label("app", "db").build()];
        let p = pod("p")
            .affinity(affinity_term("zone", &[("app", "db")]))
            .build();
        let s = filter_all(&p, &zones(), &pods);
        assert!(s[0].is_success() && s[1].is_success());
        assert_eq!(s[2].reasons(), [ERR_REASON_AFFINITY_RULES_NOT_MATCH]);
        assert_eq!(s[2].code(), Code::UnschedulableAndUnresolvable);
        assert!(!s[3].is_success(), "node without the key");
    }

    #[test]
    fn required_affinity_only_looks_in_the_terms_namespaces() {
        let pods = [pod("db").ns("other").on("a").label("app", "db").build()];
        let p = pod("p")
            .affinity(affinity_term("zone", &[("app", "db")]))
            .build();
        // A matching pod exists, but in another namespace: no pod matches,
        // and the pod does not match its own term -> nowhere.
        assert!(
            filter_all(&p, &zones(), &pods)
                .iter()
                .all(|s| !s.is_success())
        );
        let mut term = affinity_term("zone", &[("app", "db")]);
        term.namespaces = Some(vec!["other".into()]);
        let p = pod("p").affinity(term).build();
        assert!(filter_all(&p, &zones(), &pods)[0].is_success());
        // An empty namespace selector means every namespace.
        let mut term = affinity_term("zone", &[("app", "db")]);
        term.namespace_selector = Some(Default::default());
        let p = pod("p").affinity(term).build();
        assert!(filter_all(&p, &zones(), &pods)[1].is_success());
    }

    #[test]
    fn required_anti_affinity_of_the_incoming_pod() {
        let pods = [pod("web1").on("a").label("app", "web").build()];
        let p = pod("p")
            .label("app", "web")
            .anti_affinity(affinity_term("zone", &[("app", "web")]))
            .build();
        let s = filter_all(&p, &zones(), &pods);
        assert_eq!(s[0].reasons(), [ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH]);
        assert_eq!(s[0].code(), Code::Unschedulable);
        assert!(!s[1].is_success(), "same zone");
        assert!(s[2].is_success());
        assert!(
            s[3].is_success(),
            "a node without the key is no domain to avoid"
        );
    }

    #[test]
    fn required_anti_affinity_of_existing_pods() {
        let pods = [pod("loner")
            .on("c")
            .anti_affinity(affinity_term("zone", &[("app", "web")]))
            .build()];
        let p = pod("p").label("app", "web").build();
        let s = filter_all(&p, &zones(), &pods);
        assert!(s[0].is_success());
        assert_eq!(
            s[2].reasons(),
            [ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH]
        );
        // Pods it does not match are not kept away.
        let s = filter_all(&pod("q").label("app", "db").build(), &zones(), &pods);
        assert!(s.iter().all(Status::is_success));
    }

    fn scores(
        plugin: &InterPodAffinity,
        p: &Pod,
        nodes: &[Node],
        pods: &[Pod],
    ) -> Option<Vec<i64>> {
        let snapshot = Snapshot::new(nodes, pods);
        let feasible: Vec<usize> = (0..snapshot.len()).collect();
        let mut state = CycleState::default();
        if plugin
            .pre_score(&mut state, p, &snapshot, &feasible)
            .is_skip()
        {
            return None;
        }
        let mut s: Vec<NodeScore> = feasible
            .iter()
            .map(|&i| NodeScore {
                node_index: i,
                score: plugin.score(&state, p, &snapshot[i]),
            })
            .collect();
        plugin.normalize_score(&state, p, &mut s);
        Some(s.iter().map(|n| n.score).collect())
    }

    #[test]
    fn preferred_terms_are_min_max_normalised() {
        let pods = [
            pod("db").on("a").label("app", "db").build(),
            pod("cache").on("c").label("app", "cache").build(),
        ];
        let p = pod("p")
            .preferred_affinity(5, affinity_term("zone", &[("app", "db")]))
            .preferred_anti_affinity(3, affinity_term("zone", &[("app", "cache")]))
            .build();
        // Raw: z1 +5, z2 -3, d 0 -> (x+3)/8.
        assert_eq!(
            scores(&InterPodAffinity::default(), &p, &zones(), &pods),
            Some(vec![100, 100, 0, 37])
        );
    }

    #[test]
    fn existing_pods_preferences_and_hard_affinity_count() {
        let pods = [
            pod("likes-web")
                .on("a")
                .preferred_affinity(4, affinity_term("zone", &[("app", "web")]))
                .build(),
            pod("needs-web")
                .on("c")
                .affinity(affinity_term("zone", &[("app", "web")]))
                .build(),
        ];
        let p = pod("p").label("app", "web").build();
        // z1 +4, z2 +1 (hard affinity weight), d 0.
        assert_eq!(
            scores(&InterPodAffinity::default(), &p, &zones(), &pods),
            Some(vec![100, 100, 25, 0])
        );
        let ignoring = InterPodAffinity {
            ignore_preferred_terms_of_existing_pods: true,
            ..Default::default()
        };
        assert_eq!(scores(&ignoring, &p, &zones(), &pods), None);
    }

    #[test]
    fn no_preferences_anywhere_skips() {
        let pods = [pod("x").on("a").label("app", "db").build()];
        assert_eq!(
            scores(
                &InterPodAffinity::default(),
                &pod("p").build(),
                &zones(),
                &pods
            ),
            None
        );
    }
}
