//! NodeAffinity: `spec.nodeSelector` and required node affinity filter;
//! preferred node affinity scores.
//!
//! Required terms are ORed, the expressions inside one term ANDed. A term
//! with no expressions, or with one that is malformed, matches no node:
//! a rule the scheduler cannot read must not open every node to the pod.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod};

use crate::scheduler::framework::types::{NodeInfo, Snapshot, node_labels, node_name};
use crate::scheduler::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin, PreFilterPlugin, PreScorePlugin,
    ScorePlugin, Status, default_normalize_score,
};
use crate::scheduler::util::labels::Labels;

use super::names;

pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";

/// The only node field a `matchFields` requirement may name.
pub const FIELD_METADATA_NAME: &str = "metadata.name";

#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelOp {
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct LabelRequirement {
    key: String,
    op: LabelOp,
}

impl LabelRequirement {
    fn compile(req: &NodeSelectorRequirement) -> Option<LabelRequirement> {
        let values: BTreeSet<String> = req.values.iter().flatten().cloned().collect();
        let single_int = || -> Option<i64> {
            match req.values.as_deref() {
                Some([v]) => v.parse().ok(),
                _ => None,
            }
        };
        let op = match req.operator.as_str() {
            "In" if !values.is_empty() => LabelOp::In(values),
            "NotIn" if !values.is_empty() => LabelOp::NotIn(values),
            "Exists" if values.is_empty() => LabelOp::Exists,
            "DoesNotExist" if values.is_empty() => LabelOp::DoesNotExist,
            "Gt" => LabelOp::Gt(single_int()?),
            "Lt" => LabelOp::Lt(single_int()?),
            _ => return None,
        };
        Some(LabelRequirement {
            key: req.key.clone(),
            op,
        })
    }

    fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match &self.op {
            LabelOp::In(values) => value.is_some_and(|v| values.contains(v)),
            LabelOp::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
            LabelOp::Exists => value.is_some(),
            LabelOp::DoesNotExist => value.is_none(),
            // A label that is not an integer satisfies neither comparison.
            LabelOp::Gt(bound) => value
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *bound),
            LabelOp::Lt(bound) => value
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *bound),
        }
    }
}

/// `metadata.name In/NotIn [...]`. The API allows exactly one value; a set
/// is accepted here as the natural reading.
#[derive(Clone, Debug, PartialEq, Eq)]
struct NameRequirement {
    names: BTreeSet<String>,
    negate: bool,
}

impl NameRequirement {
    fn compile(req: &NodeSelectorRequirement) -> Option<NameRequirement> {
        if req.key != FIELD_METADATA_NAME {
            return None;
        }
        let names: BTreeSet<String> = req.values.iter().flatten().cloned().collect();
        if names.is_empty() {
            return None;
        }
        let negate = match req.operator.as_str() {
            "In" => false,
            "NotIn" => true,
            _ => return None,
        };
        Some(NameRequirement { names, negate })
    }

    fn matches(&self, name: &str) -> bool {
        self.names.contains(name) != self.negate
    }
}

/// One node selector term, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledTerm {
    labels: Vec<LabelRequirement>,
    fields: Vec<NameRequirement>,
}

impl CompiledTerm {
    /// None when the term is empty or malformed: it then matches nothing.
    pub fn compile(term: &NodeSelectorTerm) -> Option<CompiledTerm> {
        let labels = term
            .match_expressions
            .iter()
            .flatten()
            .map(LabelRequirement::compile)
            .collect::<Option<Vec<_>>>()?;
        let fields = term
            .match_fields
            .iter()
            .flatten()
            .map(NameRequirement::compile)
            .collect::<Option<Vec<_>>>()?;
        if labels.is_empty() && fields.is_empty() {
            return None;
        }
        Some(CompiledTerm { labels, fields })
    }

    pub fn matches(&self, node: &Node) -> bool {
        let labels = node_labels(node);
        self.labels.iter().all(|r| r.matches(labels))
            && self.fields.iter().all(|r| r.matches(node_name(node)))
    }
}

/// `spec.nodeSelector` AND required node affinity of a pod, compiled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequiredNodeAffinity {
    node_selector: Option<Labels>,
    /// None: no required affinity. Some: the terms (invalid ones dropped,
    /// since they match nothing).
    required_terms: Option<Vec<CompiledTerm>>,
}

impl RequiredNodeAffinity {
    pub fn from_pod(pod: &Pod) -> RequiredNodeAffinity {
        let spec = pod.spec.as_ref();
        let node_selector = spec
            .and_then(|s| s.node_selector.clone())
            .filter(|s| !s.is_empty());
        let required_terms = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|sel| {
                sel.node_selector_terms
                    .iter()
                    .filter_map(CompiledTerm::compile)
                    .collect()
            });
        RequiredNodeAffinity {
            node_selector,
            required_terms,
        }
    }

    /// True when the pod places no node constraint at all.
    pub fn is_empty(&self) -> bool {
        self.node_selector.is_none() && self.required_terms.is_none()
    }

    pub fn matches(&self, node: &Node) -> bool {
        if let Some(selector) = &self.node_selector {
            let labels = node_labels(node);
            if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                return false;
            }
        }
        match &self.required_terms {
            Some(terms) => terms.iter().any(|t| t.matches(node)),
            None => true,
        }
    }
}

/// Preferred terms with their weights (zero weights dropped).
fn preferred_terms(pod: &Pod) -> Vec<(i64, CompiledTerm)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|t| t.weight != 0)
        .filter_map(|t| CompiledTerm::compile(&t.preference).map(|c| (i64::from(t.weight), c)))
        .collect()
}

pub struct NodeAffinity;

const PRE_FILTER_STATE_KEY: &str = "PreFilterNodeAffinity";
const PRE_SCORE_STATE_KEY: &str = "PreScoreNodeAffinity";

struct PreScoreState {
    preferred: Vec<(i64, CompiledTerm)>,
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        names::NODE_AFFINITY
    }
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, _snapshot: &Snapshot) -> Status {
        let required = RequiredNodeAffinity::from_pod(pod);
        if required.is_empty() {
            return Status::skip();
        }
        state.write(PRE_FILTER_STATE_KEY, required);
        Status::success()
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, state: &CycleState, pod: &Pod, node_info: &NodeInfo) -> Status {
        let required = state.read_or_compute(
            PRE_FILTER_STATE_KEY,
            |r: &RequiredNodeAffinity| r,
            || RequiredNodeAffinity::from_pod(pod),
        );
        if required.matches(&node_info.node) {
            Status::success()
        } else {
            Status::unschedulable_and_unresolvable(ERR_REASON_POD)
        }
    }
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        _snapshot: &Snapshot,
        _feasible_nodes: &[usize],
    ) -> Status {
        let preferred = preferred_terms(pod);
        if preferred.is_empty() {
            return Status::skip();
        }
        state.write(PRE_SCORE_STATE_KEY, PreScoreState { preferred });
        Status::success()
    }
}

impl ScorePlugin for NodeAffinity {
    /// Raw score: the sum of the weights of the preferred terms the node
    /// matches.
    fn score(&self, state: &CycleState, pod: &Pod, node_info: &NodeInfo) -> i64 {
        let preferred = state.read_or_compute(
            PRE_SCORE_STATE_KEY,
            |s: &PreScoreState| &s.preferred,
            || preferred_terms(pod),
        );
        preferred
            .iter()
            .filter(|(_, term)| term.matches(&node_info.node))
            .map(|(w, _)| w)
            .sum()
    }

    fn normalize_score(&self, _state: &CycleState, _pod: &Pod, scores: &mut [NodeScore]) {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::{node, pod, term};

    fn fits(p: &Pod, n: Node) -> bool {
        NodeAffinity
            .filter(&CycleState::default(), p, &NodeInfo::new(n))
            .is_success()
    }

    #[test]
    fn operators() {
        let n = || node("n").label("zone", "a").label("gen", "5").build();
        assert!(fits(
            &pod("p")
                .required_terms(vec![term(&[("zone", "In", &["a", "b"])])])
                .build(),
            n()
        ));
        assert!(!fits(
            &pod("p")
                .required_terms(vec![term(&[("zone", "NotIn", &["a"])])])
                .build(),
            n()
        ));
        assert!(fits(
            &pod("p")
                .required_terms(vec![term(&[("missing", "NotIn", &["a"])])])
                .build(),
            n()
        ));
        assert!(fits(
            &pod("p")
                .required_terms(vec![term(&[("zone", "Exists", &[])])])
                .build(),
            n()
        ));
        assert!(fits(
            &pod("p")
                .required_terms(vec![term(&[("missing", "DoesNotExist", &[])])])
                .build(),
            n()
        ));
        assert!(fits(
            &pod("p")
                .required_terms(vec![term(&[("gen", "Gt", &["4"])])])
                .build(),
            n()
        ));
        assert!(!fits(
            &pod("p")
                .required_terms(vec![term(&[("gen", "Gt", &["5"])])])
                .build(),
            n()
        ));
        assert!(fits(
            &pod("p")
                .required_terms(vec![term(&[("gen", "Lt", &["6"])])])
                .build(),
            n()
        ));
        assert!(
            !fits(
                &pod("p")
                    .required_terms(vec![term(&[("zone", "Lt", &["6"])])])
                    .build(),
                n()
            ),
            "not a number"
        );
        assert!(
            !fits(
                &pod("p")
                    .required_terms(vec![term(&[("gen", "Gt", &["x"])])])
                    .build(),
                n()
            ),
            "bad bound"
        );
    }

    #[test]
    fn expressions_are_anded_terms_ored() {
        let n = || node("n").label("zone", "a").label("disk", "ssd").build();
        let both = term(&[("zone", "In", &["a"]), ("disk", "In", &["hdd"])]);
        assert!(!fits(
            &pod("p").required_terms(vec![both.clone()]).build(),
            n()
        ));
        let either = vec![both, term(&[("disk", "In", &["ssd"])])];
        assert!(fits(&pod("p").required_terms(either).build(), n()));
    }

    #[test]
    fn empty_or_malformed_terms_match_nothing() {
        let n = || node("n").label("zone", "a").build();
        assert!(!fits(
            &pod("p")
                .required_terms(vec![NodeSelectorTerm::default()])
                .build(),
            n()
        ));
        assert!(!fits(&pod("p").required_terms(vec![]).build(), n()));
        assert!(!fits(
            &pod("p")
                .required_terms(vec![term(&[("zone", "In", &[])])])
                .build(),
            n()
        ));
        assert!(!fits(
            &pod("p")
                .required_terms(vec![term(&[("zone", "Near", &["a"])])])
                .build(),
            n()
        ));
    }

    #[test]
    fn node_selector_and_affinity_must_both_hold() {
        let n = || node("n").label("zone", "a").label("disk", "ssd").build();
        let p = pod("p")
            .node_selector(&[("disk", "ssd")])
            .required_terms(vec![term(&[("zone", "In", &["b"])])]);
        assert!(!fits(&p.build(), n()));
        assert!(fits(
            &pod("p").node_selector(&[("disk", "ssd")]).build(),
            n()
        ));
    }

    #[test]
    fn match_fields_not_in() {
        let t = NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: FIELD_METADATA_NAME.into(),
                operator: "NotIn".into(),
                values: Some(vec!["n1".into()]),
            }]),
            ..Default::default()
        };
        let p = pod("p").required_terms(vec![t]).build();
        assert!(!fits(&p, node("n1").build()));
        assert!(fits(&p, node("n2").build()));
    }

    #[test]
    fn pods_without_constraints_skip_the_filter() {
        let mut state = CycleState::default();
        assert!(
            NodeAffinity
                .pre_filter(&mut state, &pod("p").build(), &Snapshot::default())
                .is_skip()
        );
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let p = pod("p")
            .preferred_term(5, term(&[("zone", "In", &["a"])]))
            .preferred_term(3, term(&[("disk", "In", &["ssd"])]))
            .preferred_term(0, term(&[("zone", "Exists", &[])]))
            .build();
        let nodes = [
            node("n1").label("zone", "a").label("disk", "ssd").build(),
            node("n2").label("zone", "a").build(),
            node("n3").build(),
        ];
        let snapshot = Snapshot::new(&nodes, &[]);
        let mut state = CycleState::default();
        assert!(
            NodeAffinity
                .pre_score(&mut state, &p, &snapshot, &[0, 1, 2])
                .is_success()
        );
        let mut scores: Vec<NodeScore> = (0..3)
            .map(|i| NodeScore {
                node_index: i,
                score: NodeAffinity.score(&state, &p, &snapshot[i]),
            })
            .collect();
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [8, 5, 0]
        );
        NodeAffinity.normalize_score(&state, &p, &mut scores);
        assert_eq!(
            scores.iter().map(|s| s.score).collect::<Vec<_>>(),
            [100, 62, 0]
        );
    }
}
