//! Which changes in the cluster could make a rejected pod fit, and which
//! plugins' rejections each of them can resolve.
//!
//! A pod that fit nowhere waits among the unschedulable pods; retrying it on
//! every watch event would burn the scheduler on hopeless pods (kwok and
//! kubelets update node status all the time). So each watch event is first
//! reduced to the [`ClusterEvent`]s it amounts to, and a parked pod moves back
//! to the active queue only when one of them concerns a plugin that rejected
//! it. Heartbeats and other status noise reduce to nothing.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use crate::scheduler::framework::types::node_labels;
use crate::scheduler::plugins::names;
use crate::scheduler::util::resource::pod_requests;

/// A change that may let a rejected pod fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClusterEvent {
    NodeAdd,
    /// `status.allocatable` changed.
    NodeAllocatableChange,
    NodeLabelChange,
    /// A taint was removed or changed (a new taint never helps).
    NodeTaintChange,
    /// The node was uncordoned.
    NodeSchedulableChange,
    /// The node reports a different set of images (ImageLocality only
    /// scores, so this never unblocks a pod; it is listed for completeness).
    NodeImagesChange,
    /// A pod was assigned to a node (it may satisfy affinity or raise a
    /// topology domain's count).
    AssignedPodAdd,
    /// An assigned pod's labels changed.
    AssignedPodLabelChange,
    /// An assigned pod's requests went down (in-place resize).
    AssignedPodScaleDown,
    /// An assigned pod was deleted or reached Succeeded/Failed: its
    /// resources, ports and affinity claims are free.
    AssignedPodDelete,
}

const ALL_FILTER_PLUGINS: &[&str] = &[
    names::NODE_UNSCHEDULABLE,
    names::NODE_NAME,
    names::TAINT_TOLERATION,
    names::NODE_AFFINITY,
    names::NODE_PORTS,
    names::NODE_RESOURCES_FIT,
    names::POD_TOPOLOGY_SPREAD,
    names::INTER_POD_AFFINITY,
];

impl ClusterEvent {
    /// The plugins whose rejections this event may resolve.
    pub fn interested_plugins(self) -> &'static [&'static str] {
        use ClusterEvent::*;
        match self {
            // A new node can be anything: any rejection may not apply to it.
            NodeAdd => ALL_FILTER_PLUGINS,
            NodeAllocatableChange => &[names::NODE_RESOURCES_FIT],
            NodeLabelChange => &[
                names::NODE_AFFINITY,
                names::POD_TOPOLOGY_SPREAD,
                names::INTER_POD_AFFINITY,
            ],
            NodeTaintChange => &[names::TAINT_TOLERATION],
            NodeSchedulableChange => &[names::NODE_UNSCHEDULABLE],
            NodeImagesChange => &[],
            AssignedPodAdd | AssignedPodLabelChange => {
                &[names::POD_TOPOLOGY_SPREAD, names::INTER_POD_AFFINITY]
            }
            AssignedPodScaleDown => &[names::NODE_RESOURCES_FIT],
            AssignedPodDelete => &[
                names::NODE_RESOURCES_FIT,
                names::NODE_PORTS,
                names::POD_TOPOLOGY_SPREAD,
                names::INTER_POD_AFFINITY,
            ],
        }
    }

    /// Whether a pod rejected by `rejected_by` should be retried after this
    /// event. A pod with no recorded plugin is always retried: nothing
    /// says the event is irrelevant to it.
    pub fn may_help(self, rejected_by: &BTreeSet<String>) -> bool {
        rejected_by.is_empty()
            || self
                .interested_plugins()
                .iter()
                .any(|p| rejected_by.contains(*p))
    }
}

fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

fn unschedulable(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

fn same_taint(a: &Taint, b: &Taint) -> bool {
    // timeAdded is bookkeeping; it does not change who tolerates the taint.
    a.key == b.key && a.value == b.value && a.effect == b.effect
}

/// The cluster events a node update amounts to (empty for heartbeats and
/// condition changes).
pub fn node_update_events(old: &Node, new: &Node) -> Vec<ClusterEvent> {
    let mut events = Vec::new();
    let allocatable = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
    if allocatable(old) != allocatable(new) {
        events.push(ClusterEvent::NodeAllocatableChange);
    }
    if node_labels(old) != node_labels(new) {
        events.push(ClusterEvent::NodeLabelChange);
    }
    let new_taints = taints(new);
    if taints(old)
        .iter()
        .any(|t| !new_taints.iter().any(|n| same_taint(t, n)))
    {
        events.push(ClusterEvent::NodeTaintChange);
    }
    if unschedulable(old) && !unschedulable(new) {
        events.push(ClusterEvent::NodeSchedulableChange);
    }
    let images = |n: &Node| n.status.as_ref().and_then(|s| s.images.clone());
    if images(old) != images(new) {
        events.push(ClusterEvent::NodeImagesChange);
    }
    events
}

/// Whether `new` needs to be counted anew in the cache: anything the
/// plugins read from an assigned pod (labels, spec) changed. Status-only
/// updates (Running, Ready) do not count.
pub fn assigned_pod_changed(old: &Pod, new: &Pod) -> bool {
    old.metadata.labels != new.metadata.labels || old.spec != new.spec
}

/// The cluster events an assigned pod's update amounts to.
pub fn assigned_pod_update_events(old: &Pod, new: &Pod) -> Vec<ClusterEvent> {
    let mut events = Vec::new();
    if old.metadata.labels != new.metadata.labels {
        events.push(ClusterEvent::AssignedPodLabelChange);
    }
    let (before, after) = (pod_requests(old, false), pod_requests(new, false));
    if after.milli_cpu < before.milli_cpu
        || after.memory < before.memory
        || after.ephemeral_storage < before.ephemeral_storage
    {
        events.push(ClusterEvent::AssignedPodScaleDown);
    }
    events
}

/// Whether an update to a pending pod of ours may change its own
/// scheduling result: its labels or spec changed (tolerations added,
/// gates removed, requests resized). Status and annotation updates, such
/// as the scheduler's own PodScheduled condition and diagnosis, do not
/// count, or every failure would retrigger itself.
pub fn pending_pod_changed(old: &Pod, new: &Pod) -> bool {
    old.metadata.labels != new.metadata.labels || old.spec != new.spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::{node, pod};
    use k8s_openapi::api::core::v1::NodeCondition;

    fn set(plugins: &[&str]) -> BTreeSet<String> {
        plugins.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn heartbeats_are_not_events() {
        let old = node("a").allocatable("4", "8Gi", "110").build();
        let mut new = old.clone();
        new.status.as_mut().unwrap().conditions = Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]);
        new.metadata.resource_version = Some("42".into());
        assert!(node_update_events(&old, &new).is_empty());
    }

    #[test]
    fn node_changes() {
        let base = node("a").allocatable("4", "8Gi", "110").label("zone", "a");
        let old = base.build();
        let bigger = node("a")
            .allocatable("8", "8Gi", "110")
            .label("zone", "a")
            .build();
        assert_eq!(
            node_update_events(&old, &bigger),
            [ClusterEvent::NodeAllocatableChange]
        );
        let relabelled = node("a")
            .allocatable("4", "8Gi", "110")
            .label("zone", "b")
            .build();
        assert_eq!(
            node_update_events(&old, &relabelled),
            [ClusterEvent::NodeLabelChange]
        );

        let tainted = node("a")
            .allocatable("4", "8Gi", "110")
            .label("zone", "a")
            .taint("k", "v", "NoSchedule")
            .build();
        assert!(
            node_update_events(&old, &tainted).is_empty(),
            "a new taint cannot help anyone"
        );
        assert_eq!(
            node_update_events(&tainted, &old),
            [ClusterEvent::NodeTaintChange]
        );
        let changed = node("a")
            .allocatable("4", "8Gi", "110")
            .label("zone", "a")
            .taint("k", "w", "NoSchedule")
            .build();
        assert_eq!(
            node_update_events(&tainted, &changed),
            [ClusterEvent::NodeTaintChange]
        );

        let cordoned = node("a")
            .allocatable("4", "8Gi", "110")
            .label("zone", "a")
            .unschedulable()
            .build();
        assert!(node_update_events(&old, &cordoned).is_empty());
        assert_eq!(
            node_update_events(&cordoned, &old),
            [ClusterEvent::NodeSchedulableChange]
        );
    }

    #[test]
    fn events_wake_only_pods_they_can_help() {
        let fit = set(&[names::NODE_RESOURCES_FIT]);
        let taint = set(&[names::TAINT_TOLERATION]);
        let spread = set(&[names::POD_TOPOLOGY_SPREAD, names::NODE_AFFINITY]);
        assert!(ClusterEvent::NodeAdd.may_help(&fit));
        assert!(ClusterEvent::NodeAdd.may_help(&taint));
        assert!(ClusterEvent::AssignedPodDelete.may_help(&fit));
        assert!(!ClusterEvent::AssignedPodDelete.may_help(&taint));
        assert!(ClusterEvent::NodeTaintChange.may_help(&taint));
        assert!(!ClusterEvent::NodeTaintChange.may_help(&fit));
        assert!(ClusterEvent::NodeLabelChange.may_help(&spread));
        assert!(ClusterEvent::AssignedPodAdd.may_help(&spread));
        assert!(!ClusterEvent::AssignedPodAdd.may_help(&fit));
        assert!(!ClusterEvent::NodeImagesChange.may_help(&fit));
        assert!(
            ClusterEvent::NodeImagesChange.may_help(&BTreeSet::new()),
            "no recorded plugin: always retried"
        );
    }

    #[test]
    fn pod_updates() {
        let p = pod("p")
            .label("app", "x")
            .container(&[("cpu", "1")])
            .build();
        let mut status_only = p.clone();
        status_only.status = Some(Default::default());
        status_only
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("dlite.dev/scheduling-diagnosis".into(), "{}".into());
        assert!(!pending_pod_changed(&p, &status_only));
        assert!(!assigned_pod_changed(&p, &status_only));
        let relabelled = pod("p")
            .label("app", "y")
            .container(&[("cpu", "1")])
            .build();
        assert!(pending_pod_changed(&p, &relabelled));
        assert_eq!(
            assigned_pod_update_events(&p, &relabelled),
            [ClusterEvent::AssignedPodLabelChange]
        );
        let smaller = pod("p")
            .label("app", "x")
            .container(&[("cpu", "500m")])
            .build();
        assert!(assigned_pod_changed(&p, &smaller));
        assert_eq!(
            assigned_pod_update_events(&p, &smaller),
            [ClusterEvent::AssignedPodScaleDown]
        );
        assert!(assigned_pod_update_events(&smaller, &p).is_empty());
    }
}
