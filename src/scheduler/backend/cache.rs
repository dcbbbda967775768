//! The scheduler cache: the watches' view of nodes and assigned pods, plus
//! the pods this scheduler has assumed, kept as one [`Snapshot`] that is
//! updated in place.
//!
//! Assume-then-bind: once a cycle picks a node, the pod is counted there at
//! once ([`SchedulerCache::assume_pod`]) so the next cycle sees the node's
//! resources as used, while the binding is still on its way. The watch
//! later shows the pod with its nodeName and the assumption is confirmed
//! ([`SchedulerCache::add_or_update_pod`]); if binding fails it is
//! forgotten ([`SchedulerCache::forget_pod`]).
//!
//! Pods can arrive before their node (two independent watches); they are
//! held aside and counted when the node appears.
//!
//! Plain data without I/O: the scheduling loop owns it and applies watch
//! events between cycles, so a cycle reads a consistent snapshot without
//! copying it.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use thiserror::Error;

use crate::scheduler::backend::cluster_event::{
    ClusterEvent, assigned_pod_changed, assigned_pod_update_events, node_update_events,
};
use crate::scheduler::backend::queue::{PodKey, pod_key};
use crate::scheduler::framework::types::{
    PodInfo, Snapshot, assigned_node, is_terminal, node_name,
};
use crate::scheduler::util::labels::Labels;

#[derive(Clone, Debug)]
struct PodState {
    node: String,
    pod: Arc<Pod>,
    /// Counted by this scheduler's decision; not yet seen bound by the watch.
    assumed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CacheError {
    #[error("pod {0} is already in the cache (on node {1:?})")]
    AlreadyCached(PodKey, String),
    #[error("node {0:?} is not in the cache")]
    UnknownNode(String),
}

#[derive(Debug, Default)]
pub struct SchedulerCache {
    snapshot: Snapshot,
    pods: HashMap<PodKey, PodState>,
    /// Pods assigned to nodes the node watch has not shown (yet), by node.
    waiting_for_node: HashMap<String, Vec<PodKey>>,
}

impl SchedulerCache {
    pub fn new() -> SchedulerCache {
        SchedulerCache::default()
    }

    /// The snapshot the next cycle reads.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn node_count(&self) -> usize {
        self.snapshot.len()
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|p| p.assumed)
    }

    pub fn pod_keys(&self) -> impl Iterator<Item = &PodKey> {
        self.pods.keys()
    }

    pub fn node_names(&self) -> Vec<String> {
        self.snapshot
            .node_infos()
            .iter()
            .map(|n| n.name().to_string())
            .collect()
    }

    /// A node as the watch shows it. Returns the cluster events it amounts
    /// to (none for a heartbeat).
    pub fn add_or_update_node(&mut self, node: Node) -> Vec<ClusterEvent> {
        let name = node_name(&node).to_string();
        let events = match self.snapshot.get(&name) {
            Some(old) => node_update_events(&old.node, &node),
            None => vec![ClusterEvent::NodeAdd],
        };
        let is_new = self.snapshot.upsert_node(node).is_none();
        if is_new {
            for key in self.waiting_for_node.remove(&name).unwrap_or_default() {
                if let Some(state) = self.pods.get(&key) {
                    let _ = self
                        .snapshot
                        .add_pod_to_node(&name, PodInfo::new(state.pod.clone()));
                }
            }
        }
        events
    }

    /// The node is gone. Its pods stay known (they will be deleted or
    /// rescheduled by their controllers) and are counted again if a node
    /// of that name returns.
    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.snapshot.remove_node(name) {
            let waiting = self.waiting_for_node.entry(name.to_string()).or_default();
            for p in info.pods {
                waiting.push(pod_key(&p.pod));
            }
        }
    }

    fn count(&mut self, key: &PodKey, node: &str, pod: Arc<Pod>) {
        if self.snapshot.get(node).is_some() {
            let _ = self.snapshot.add_pod_to_node(node, PodInfo::new(pod));
        } else {
            self.waiting_for_node
                .entry(node.to_string())
                .or_default()
                .push(key.clone());
        }
    }

    fn uncount(&mut self, key: &PodKey, state: &PodState) {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        if self
            .snapshot
            .remove_pod_from_node(&state.node, namespace, name)
            .is_none()
            && let Some(waiting) = self.waiting_for_node.get_mut(&state.node)
        {
            waiting.retain(|k| k != key);
            if waiting.is_empty() {
                self.waiting_for_node.remove(&state.node);
            }
        }
    }

    /// A pod with a nodeName as the watch shows it: added, updated, or the
    /// confirmation of an assumption. Terminal pods are removed (they hold
    /// nothing). Returns the cluster events it amounts to.
    pub fn add_or_update_pod(&mut self, pod: Arc<Pod>) -> Vec<ClusterEvent> {
        let key = pod_key(&pod);
        if is_terminal(&pod) {
            return self.remove_pod(&key);
        }
        let Some(node) = assigned_node(&pod).map(str::to_string) else {
            return Vec::new();
        };
        match self.pods.remove(&key) {
            None => {
                self.count(&key, &node, pod.clone());
                self.pods.insert(
                    key,
                    PodState {
                        node,
                        pod,
                        assumed: false,
                    },
                );
                vec![ClusterEvent::AssignedPodAdd]
            }
            Some(old) => {
                // Confirmation of an assumption, or an update. The stored
                // copy is replaced only when something the plugins read
                // changed (status updates are frequent and change nothing).
                let moved = old.node != node;
                let changed = moved || old.assumed || assigned_pod_changed(&old.pod, &pod);
                let events = if moved {
                    vec![
                        ClusterEvent::AssignedPodDelete,
                        ClusterEvent::AssignedPodAdd,
                    ]
                } else if old.assumed {
                    // Already counted when assumed; others learnt nothing new.
                    Vec::new()
                } else {
                    assigned_pod_update_events(&old.pod, &pod)
                };
                if changed {
                    self.uncount(&key, &old);
                    self.count(&key, &node, pod.clone());
                }
                self.pods.insert(
                    key,
                    PodState {
                        node,
                        pod,
                        assumed: false,
                    },
                );
                events
            }
        }
    }

    /// The pod is gone (or finished). Returns the cluster events that
    /// amounts to.
    pub fn remove_pod(&mut self, key: &str) -> Vec<ClusterEvent> {
        match self.pods.remove(key) {
            Some(state) => {
                self.uncount(&key.to_string(), &state);
                vec![ClusterEvent::AssignedPodDelete]
            }
            None => Vec::new(),
        }
    }

    /// Counts `pod` on `node` now, ahead of its binding.
    pub fn assume_pod(&mut self, pod: &Pod, node: &str) -> Result<(), CacheError> {
        let key = pod_key(pod);
        if let Some(existing) = self.pods.get(&key) {
            return Err(CacheError::AlreadyCached(key, existing.node.clone()));
        }
        if self.snapshot.get(node).is_none() {
            return Err(CacheError::UnknownNode(node.to_string()));
        }
        let mut assumed = pod.clone();
        assumed.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
        let assumed = Arc::new(assumed);
        self.count(&key, node, assumed.clone());
        self.pods.insert(
            key,
            PodState {
                node: node.to_string(),
                pod: assumed,
                assumed: true,
            },
        );
        Ok(())
    }

    /// Undoes an assumption whose binding failed. A pod the watch already
    /// confirmed is left alone: it is bound, whatever the binder thought.
    /// Returns whether an assumption was removed.
    pub fn forget_pod(&mut self, key: &str) -> bool {
        if !self.is_assumed(key) {
            return false;
        }
        self.remove_pod(key);
        true
    }

    /// Labels of a namespace, for `namespaceSelector`s in affinity terms.
    pub fn set_namespace_labels(&mut self, namespace: &str, labels: Option<Labels>) {
        self.snapshot.set_namespace_labels(namespace, labels);
    }

    pub fn set_pdbs(&mut self, pdbs: Vec<k8s_openapi::api::policy::v1::PodDisruptionBudget>) {
        self.snapshot.set_pdbs(pdbs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::{node, pod};

    fn cpu_on(cache: &SchedulerCache, node: &str) -> i64 {
        cache.snapshot()[node].requested.milli_cpu
    }

    #[test]
    fn assigned_pods_count_on_their_node() {
        let mut c = SchedulerCache::new();
        assert_eq!(
            c.add_or_update_node(node("a").allocatable("4", "8Gi", "110").build()),
            [ClusterEvent::NodeAdd]
        );
        let p = Arc::new(pod("p").on("a").container(&[("cpu", "1")]).build());
        assert_eq!(
            c.add_or_update_pod(p.clone()),
            [ClusterEvent::AssignedPodAdd]
        );
        assert_eq!(cpu_on(&c, "a"), 1000);
        // A status update changes nothing and wakes nobody.
        let mut running = (*p).clone();
        running.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        });
        assert!(c.add_or_update_pod(Arc::new(running.clone())).is_empty());
        assert_eq!(cpu_on(&c, "a"), 1000);
        assert_eq!(c.snapshot()["a"].pods.len(), 1);
        // Finished pods hold nothing.
        running.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert_eq!(
            c.add_or_update_pod(Arc::new(running)),
            [ClusterEvent::AssignedPodDelete]
        );
        assert_eq!(cpu_on(&c, "a"), 0);
        assert_eq!(c.pod_count(), 0);
    }

    #[test]
    fn pending_pods_are_not_cached() {
        let mut c = SchedulerCache::new();
        c.add_or_update_node(node("a").build());
        assert!(c.add_or_update_pod(Arc::new(pod("p").build())).is_empty());
        assert_eq!(c.pod_count(), 0);
    }

    #[test]
    fn assume_confirm_and_forget() {
        let mut c = SchedulerCache::new();
        c.add_or_update_node(node("a").allocatable("4", "8Gi", "110").build());
        c.add_or_update_node(node("b").allocatable("4", "8Gi", "110").build());
        let p = pod("p").container(&[("cpu", "1")]).build();
        c.assume_pod(&p, "a").unwrap();
        assert_eq!(cpu_on(&c, "a"), 1000, "counted at once");
        assert!(c.is_assumed("default/p"));
        assert_eq!(
            c.assume_pod(&p, "b"),
            Err(CacheError::AlreadyCached("default/p".into(), "a".into()))
        );
        assert_eq!(
            c.assume_pod(&pod("q").build(), "zz"),
            Err(CacheError::UnknownNode("zz".into()))
        );

        // The watch shows it bound: confirmed, still counted once.
        let bound = Arc::new(pod("p").on("a").container(&[("cpu", "1")]).build());
        assert!(c.add_or_update_pod(bound).is_empty());
        assert!(!c.is_assumed("default/p"));
        assert_eq!(cpu_on(&c, "a"), 1000);
        assert_eq!(c.snapshot()["a"].pods.len(), 1);
        assert!(
            !c.forget_pod("default/p"),
            "a confirmed pod is not forgotten"
        );

        // A failed binding is forgotten.
        let q = pod("q").container(&[("cpu", "2")]).build();
        c.assume_pod(&q, "b").unwrap();
        assert_eq!(cpu_on(&c, "b"), 2000);
        assert!(c.forget_pod("default/q"));
        assert_eq!(cpu_on(&c, "b"), 0);
        assert_eq!(c.pod_count(), 1);
    }

    #[test]
    fn a_pod_bound_elsewhere_moves() {
        let mut c = SchedulerCache::new();
        c.add_or_update_node(node("a").build());
        c.add_or_update_node(node("b").build());
        let p = pod("p").container(&[("cpu", "1")]).build();
        c.assume_pod(&p, "a").unwrap();
        let elsewhere = Arc::new(pod("p").on("b").container(&[("cpu", "1")]).build());
        c.add_or_update_pod(elsewhere);
        assert_eq!(cpu_on(&c, "a"), 0);
        assert_eq!(cpu_on(&c, "b"), 1000);
    }

    #[test]
    fn pods_may_arrive_before_their_node() {
        let mut c = SchedulerCache::new();
        c.add_or_update_pod(Arc::new(
            pod("p").on("late").container(&[("cpu", "1")]).build(),
        ));
        assert_eq!(c.node_count(), 0);
        c.add_or_update_node(node("late").build());
        assert_eq!(cpu_on(&c, "late"), 1000);
        // The node goes and comes back: its pods are counted again.
        c.remove_node("late");
        assert_eq!(c.node_count(), 0);
        c.add_or_update_node(node("late").build());
        assert_eq!(cpu_on(&c, "late"), 1000);
        // A pod removed while its node is away is not counted on return.
        c.remove_node("late");
        c.remove_pod("default/p");
        c.add_or_update_node(node("late").build());
        assert_eq!(cpu_on(&c, "late"), 0);
    }

    #[test]
    fn node_updates_report_their_events() {
        let mut c = SchedulerCache::new();
        c.add_or_update_node(node("a").allocatable("4", "8Gi", "110").build());
        c.add_or_update_pod(Arc::new(
            pod("p").on("a").container(&[("cpu", "1")]).build(),
        ));
        assert_eq!(
            c.add_or_update_node(node("a").allocatable("8", "8Gi", "110").build()),
            [ClusterEvent::NodeAllocatableChange]
        );
        assert_eq!(cpu_on(&c, "a"), 1000, "pods survive a node update");
        assert!(
            c.add_or_update_node(node("a").allocatable("8", "8Gi", "110").build())
                .is_empty()
        );
    }
}
