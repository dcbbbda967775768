//! NodePorts: two pods cannot bind the same host port and protocol on one
//! node, unless they bind different specific addresses.

use k8s_openapi::api::core::v1::Pod;

use crate::scheduler::framework::types::{HostPort, NodeInfo, Snapshot, pod_host_ports};
use crate::scheduler::framework::{CycleState, FilterPlugin, Plugin, PreFilterPlugin, Status};

use super::names;

pub const ERR_REASON_NODE_PORTS: &str =
    "node(s) didn't have free ports for the requested pod ports";

const PRE_FILTER_STATE_KEY: &str = "PreFilterNodePorts";

struct PreFilterState {
    wanted: Vec<HostPort>,
}

pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        names::NODE_PORTS
    }
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, _snapshot: &Snapshot) -> Status {
        let wanted = pod_host_ports(pod);
        if wanted.is_empty() {
            return Status::skip();
        }
        state.write(PRE_FILTER_STATE_KEY, PreFilterState { wanted });
        Status::success()
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, state: &CycleState, pod: &Pod, node_info: &NodeInfo) -> Status {
        let wanted = state.read_or_compute(
            PRE_FILTER_STATE_KEY,
            |s: &PreFilterState| &s.wanted,
            || pod_host_ports(pod),
        );
        if wanted
            .iter()
            .any(|p| node_info.used_ports.conflicts_with(p))
        {
            // Resolvable: evicting the pod holding the port frees it.
            Status::unschedulable(ERR_REASON_NODE_PORTS)
        } else {
            Status::success()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::testing::{node, pod};

    fn run(existing: &[(&str, &str, i32)], wanted: &[(&str, &str, i32)]) -> Status {
        let mut e = pod("old").on("a");
        for (proto, ip, port) in existing {
            e = e.host_port(proto, ip, *port);
        }
        let snapshot = Snapshot::new(&[node("a").build()], &[e.build()]);
        let mut p = pod("new");
        for (proto, ip, port) in wanted {
            p = p.host_port(proto, ip, *port);
        }
        let p = p.build();
        let mut state = CycleState::default();
        NodePorts.pre_filter(&mut state, &p, &snapshot);
        NodePorts.filter(&state, &p, &snapshot[0])
    }

    #[test]
    fn conflicts() {
        assert_eq!(
            run(&[("TCP", "", 80)], &[("TCP", "", 80)]).code(),
            Code::Unschedulable
        );
        assert!(run(&[("TCP", "", 80)], &[("TCP", "", 81)]).is_success());
        assert!(run(&[("TCP", "10.0.0.1", 80)], &[("TCP", "10.0.0.2", 80)]).is_success());
        assert!(!run(&[("TCP", "10.0.0.1", 80)], &[("TCP", "10.0.0.1", 80)]).is_success());
        assert!(!run(&[("UDP", "", 53)], &[("UDP", "10.0.0.1", 53)]).is_success());
        assert!(run(&[("UDP", "", 53)], &[("TCP", "", 53)]).is_success());
    }

    #[test]
    fn pods_without_host_ports_skip_the_filter() {
        let mut state = CycleState::default();
        let status = NodePorts.pre_filter(&mut state, &pod("p").build(), &Snapshot::default());
        assert!(status.is_skip());
    }
}
