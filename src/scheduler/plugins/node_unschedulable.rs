//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes no new
//! pods, except those that tolerate the taint the node lifecycle
//! controller puts on cordoned nodes (DaemonSet pods do).

use k8s_openapi::api::core::v1::{Pod, Taint};

use crate::scheduler::framework::types::NodeInfo;
use crate::scheduler::framework::{CycleState, FilterPlugin, Plugin, Status};

use super::names;
use super::taint_toleration::{EFFECT_NO_SCHEDULE, pod_tolerations, tolerations_tolerate_taint};

pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        names::NODE_UNSCHEDULABLE
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _state: &CycleState, pod: &Pod, node_info: &NodeInfo) -> Status {
        let cordoned = node_info
            .node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        if !cordoned {
            return Status::success();
        }
        // The check is made against the taint even if the node does not
        // carry it (yet): tolerating it is how a pod opts in to cordoned nodes.
        let taint = Taint {
            key: TAINT_NODE_UNSCHEDULABLE.into(),
            effect: EFFECT_NO_SCHEDULE.into(),
            value: None,
            time_added: None,
        };
        if tolerations_tolerate_taint(pod_tolerations(pod), &taint) {
            Status::success()
        } else {
            Status::unschedulable_and_unresolvable(ERR_REASON_UNSCHEDULABLE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::{node, pod, toleration};

    #[test]
    fn schedulable_nodes_pass() {
        let n = NodeInfo::new(node("a").build());
        assert!(
            NodeUnschedulable
                .filter(&CycleState::default(), &pod("p").build(), &n)
                .is_success()
        );
    }

    #[test]
    fn toleration_with_exists_and_any_effect_passes() {
        let n = NodeInfo::new(node("a").unschedulable().build());
        let p = pod("p")
            .toleration(toleration(TAINT_NODE_UNSCHEDULABLE, "Exists", "", ""))
            .build();
        assert!(
            NodeUnschedulable
                .filter(&CycleState::default(), &p, &n)
                .is_success()
        );
        let p = pod("p")
            .toleration(toleration(
                TAINT_NODE_UNSCHEDULABLE,
                "Exists",
                "",
                "NoExecute",
            ))
            .build();
        assert!(
            !NodeUnschedulable
                .filter(&CycleState::default(), &p, &n)
                .is_success()
        );
    }
}
