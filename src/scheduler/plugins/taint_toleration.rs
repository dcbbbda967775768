//! TaintToleration: a node's NoSchedule/NoExecute taints keep out pods that
//! do not tolerate them; PreferNoSchedule taints only cost score.

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};

use crate::scheduler::framework::types::{NodeInfo, Snapshot};
use crate::scheduler::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin, PreScorePlugin, ScorePlugin,
    Status, default_normalize_score,
};

use super::names;

pub const EFFECT_NO_SCHEDULE: &str = "NoSchedule";
pub const EFFECT_PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";
pub const EFFECT_NO_EXECUTE: &str = "NoExecute";

/// Whether one toleration covers `taint`. An empty effect covers every
/// effect, an empty key with `Exists` covers every taint, and an empty
/// operator means `Equal`.
pub fn toleration_tolerates_taint(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = toleration.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

pub fn tolerations_tolerate_taint(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations
        .iter()
        .any(|t| toleration_tolerates_taint(t, taint))
}

pub(crate) fn pod_tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

pub(crate) fn node_taints(node_info: &NodeInfo) -> &[Taint] {
    node_info
        .node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

/// Taints that keep pods off a node (as opposed to PreferNoSchedule).
pub fn is_do_not_schedule_taint(taint: &Taint) -> bool {
    taint.effect == EFFECT_NO_SCHEDULE || taint.effect == EFFECT_NO_EXECUTE
}

/// The first taint (in the node's order) accepted by `relevant` that no
/// toleration covers.
pub fn find_matching_untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    relevant: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| relevant(t))
        .find(|t| !tolerations_tolerate_taint(tolerations, t))
}

/// kube-scheduler v1.36's reason names no taint (it logs the taint at
/// verbosity 4 only), so the counts in a FailedScheduling message merge
/// every tainted node into one entry.
pub const UNTOLERATED_TAINT: &str = "node(s) had untolerated taint(s)";

pub struct TaintToleration;

const PRE_SCORE_STATE_KEY: &str = "PreScoreTaintToleration";

/// The pod's tolerations that can cover a PreferNoSchedule taint.
struct PreScoreState {
    tolerations_prefer_no_schedule: Vec<Toleration>,
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        names::TAINT_TOLERATION
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _state: &CycleState, pod: &Pod, node_info: &NodeInfo) -> Status {
        match find_matching_untolerated_taint(
            node_taints(node_info),
            pod_tolerations(pod),
            is_do_not_schedule_taint,
        ) {
            // Tolerations are part of the pod spec and taints belong to the
            // node: evicting other pods cannot change either.
            Some(_) => Status::unschedulable_and_unresolvable(UNTOLERATED_TAINT),
            None => Status::success(),
        }
    }
}

impl PreScorePlugin for TaintToleration {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        _snapshot: &Snapshot,
        _feasible_nodes: &[usize],
    ) -> Status {
        let tolerations_prefer_no_schedule = pod_tolerations(pod)
            .iter()
            .filter(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some(EFFECT_PREFER_NO_SCHEDULE)
                )
            })
            .cloned()
            .collect();
        state.write(
            PRE_SCORE_STATE_KEY,
            PreScoreState {
                tolerations_prefer_no_schedule,
            },
        );
        Status::success()
    }
}

impl ScorePlugin for TaintToleration {
    /// Raw score: how many PreferNoSchedule taints the pod does not
    /// tolerate (fewer is better).
    fn score(&self, state: &CycleState, pod: &Pod, node_info: &NodeInfo) -> i64 {
        let owned;
        let tolerations: &[Toleration] = match state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) {
            Some(s) => &s.tolerations_prefer_no_schedule,
            None => {
                owned = pod_tolerations(pod).to_vec();
                &owned
            }
        };
        node_taints(node_info)
            .iter()
            .filter(|t| {
                t.effect == EFFECT_PREFER_NO_SCHEDULE && !tolerations_tolerate_taint(tolerations, t)
            })
            .count() as i64
    }

    fn normalize_score(&self, _state: &CycleState, _pod: &Pod, scores: &mut [NodeScore]) {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::{node, pod, toleration};

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn toleration_matching() {
        let t = taint("foo", "bar", "NoSchedule");
        assert!(toleration_tolerates_taint(
            &toleration("foo", "Equal", "bar", "NoSchedule"),
            &t
        ));
        assert!(
            toleration_tolerates_taint(&toleration("foo", "", "bar", ""), &t),
            "empty operator is Equal"
        );
        assert!(toleration_tolerates_taint(
            &toleration("foo", "Exists", "", ""),
            &t
        ));
        assert!(
            toleration_tolerates_taint(&toleration("", "Exists", "", ""), &t),
            "tolerates everything"
        );
        assert!(!toleration_tolerates_taint(
            &toleration("foo", "Equal", "baz", "NoSchedule"),
            &t
        ));
        assert!(!toleration_tolerates_taint(
            &toleration("other", "Exists", "", ""),
            &t
        ));
        assert!(!toleration_tolerates_taint(
            &toleration("foo", "Exists", "", "NoExecute"),
            &t
        ));
        assert!(
            !toleration_tolerates_taint(&toleration("foo", "Lt", "bar", ""), &t),
            "unknown operator"
        );
    }

    #[test]
    fn prefer_no_schedule_taints_do_not_filter() {
        let n = NodeInfo::new(node("a").taint("k", "v", "PreferNoSchedule").build());
        assert!(
            TaintToleration
                .filter(&CycleState::default(), &pod("p").build(), &n)
                .is_success()
        );
    }

    #[test]
    fn first_untolerated_taint_is_reported() {
        let n = NodeInfo::new(
            node("a")
                .taint("a", "1", "NoSchedule")
                .taint("b", "", "NoExecute")
                .build(),
        );
        let p = pod("p")
            .toleration(toleration("a", "Equal", "1", "NoSchedule"))
            .build();
        let s = TaintToleration.filter(&CycleState::default(), &p, &n);
        assert_eq!(s.reasons(), ["node(s) had untolerated taint(s)"]);
        assert_eq!(
            s.code(),
            crate::scheduler::framework::Code::UnschedulableAndUnresolvable
        );
    }

    #[test]
    fn tolerated_prefer_no_schedule_taints_cost_nothing() {
        let n = NodeInfo::new(
            node("a")
                .taint("k", "v", "PreferNoSchedule")
                .taint("j", "w", "PreferNoSchedule")
                .build(),
        );
        let p = pod("p")
            .toleration(toleration("k", "Equal", "v", "PreferNoSchedule"))
            .build();
        let mut state = CycleState::default();
        TaintToleration.pre_score(&mut state, &p, &Snapshot::default(), &[]);
        assert_eq!(TaintToleration.score(&state, &p, &n), 1);
        // A NoSchedule-only toleration does not help against PreferNoSchedule.
        let p = pod("p")
            .toleration(toleration("k", "Exists", "", "NoSchedule"))
            .build();
        let mut state = CycleState::default();
        TaintToleration.pre_score(&mut state, &p, &Snapshot::default(), &[]);
        assert_eq!(TaintToleration.score(&state, &p, &n), 2);
    }

    #[test]
    fn no_taints_anywhere_scores_all_nodes_100() {
        let mut scores = vec![
            NodeScore {
                node_index: 0,
                score: 0,
            },
            NodeScore {
                node_index: 1,
                score: 0,
            },
        ];
        TaintToleration.normalize_score(&CycleState::default(), &pod("p").build(), &mut scores);
        assert!(scores.iter().all(|s| s.score == 100));
    }
}
