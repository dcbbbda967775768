//! NodeName: a pod that names a node in `spec.nodeName` fits only there.
//! (The scheduler normally never sees such pods; the rule matters for
//! callers that evaluate a pod against a snapshot, e.g. preemption.)

use k8s_openapi::api::core::v1::Pod;

use crate::scheduler::framework::types::{NodeInfo, assigned_node};
use crate::scheduler::framework::{CycleState, FilterPlugin, Plugin, Status};

use super::names;

pub const ERR_REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";

pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        names::NODE_NAME
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _state: &CycleState, pod: &Pod, node_info: &NodeInfo) -> Status {
        match assigned_node(pod) {
            Some(wanted) if wanted != node_info.name() => {
                Status::unschedulable_and_unresolvable(ERR_REASON_NODE_NAME)
            }
            _ => Status::success(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::{node, pod};

    #[test]
    fn pods_without_node_name_fit_anywhere() {
        let n = NodeInfo::new(node("a").build());
        assert!(
            NodeName
                .filter(&CycleState::default(), &pod("p").build(), &n)
                .is_success()
        );
        assert!(
            NodeName
                .filter(&CycleState::default(), &pod("p").on("a").build(), &n)
                .is_success()
        );
    }
}
