//! The scheduler's view of the cluster for one cycle: every node with the
//! pods assigned to it and the sums the filters need, computed once.
//!
//! A [`Snapshot`] is plain data. The cache that later work wraps around it
//! keeps one up to date from watches; [`Snapshot::assume`] is how a pod
//! chosen in this cycle is counted before its binding is confirmed, so the
//! next pod sees the node's resources as used.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Index;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, WeightedPodAffinityTerm};
use thiserror::Error;

use crate::scheduler::util::labels::{Labels, NO_LABELS, Selector};
use crate::scheduler::util::resource::{Resource, pod_requests};

/// Label every namespace carries with its own name; with it a
/// `namespaceSelector` can be evaluated even when the snapshot was given no
/// namespace objects.
pub const LABEL_NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

pub(crate) fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

pub(crate) fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

pub(crate) fn pod_labels(pod: &Pod) -> &Labels {
    pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

pub(crate) fn node_name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or("")
}

pub(crate) fn node_labels(node: &Node) -> &Labels {
    node.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

/// A pod's `spec.nodeName`, if set and non-empty.
pub(crate) fn assigned_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Succeeded and Failed pods hold no resources; the scheduler's pod watch
/// leaves them out entirely.
pub(crate) fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// One inter-pod (anti-)affinity term, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AffinityTerm {
    /// Namespaces named by the term, or the owning pod's own namespace when
    /// the term names none and has no namespace selector.
    pub namespaces: BTreeSet<String>,
    pub namespace_selector: Selector,
    pub selector: Selector,
    pub topology_key: String,
}

impl AffinityTerm {
    /// Compiles `term` as written in `owner`'s spec.
    pub fn new(owner: &Pod, term: &PodAffinityTerm) -> AffinityTerm {
        let listed: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() {
            BTreeSet::from([pod_namespace(owner).to_string()])
        } else {
            listed
        };
        AffinityTerm {
            namespaces,
            namespace_selector: Selector::from_label_selector(term.namespace_selector.as_ref()),
            selector: Selector::from_label_selector(term.label_selector.as_ref()),
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether `pod` (living in a namespace labelled `namespace_labels`) is
    /// one of the pods this term is about.
    pub fn matches(&self, pod: &Pod, namespace_labels: &Labels) -> bool {
        (self.namespaces.contains(pod_namespace(pod))
            || self.namespace_selector.matches(namespace_labels))
            && self.selector.matches(pod_labels(pod))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedAffinityTerm {
    pub term: AffinityTerm,
    pub weight: i32,
}

/// A pod with the facts the plugins read from it over and over, computed
/// once when it enters a snapshot.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    /// Requests as the filters see them.
    pub requested: Resource,
    /// Requests with the 100m / 200Mi defaults, as the scorers see them.
    pub non_zero_requested: Resource,
    pub required_affinity_terms: Vec<AffinityTerm>,
    pub required_anti_affinity_terms: Vec<AffinityTerm>,
    pub preferred_affinity_terms: Vec<WeightedAffinityTerm>,
    pub preferred_anti_affinity_terms: Vec<WeightedAffinityTerm>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let anti_affinity = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(&pod, t))
                .collect()
        };
        let preferred =
            |terms: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<WeightedAffinityTerm> {
                terms
                    .into_iter()
                    .flatten()
                    // A zero weight cannot move a score; dropping it saves work.
                    .filter(|t| t.weight != 0)
                    .map(|t| WeightedAffinityTerm {
                        term: AffinityTerm::new(&pod, &t.pod_affinity_term),
                        weight: t.weight,
                    })
                    .collect()
            };
        PodInfo {
            requested: pod_requests(&pod, false),
            non_zero_requested: pod_requests(&pod, true),
            required_affinity_terms: required(pod_affinity.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity_terms: required(anti_affinity.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity_terms: preferred(pod_affinity.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity_terms: preferred(anti_affinity.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            pod,
        }
    }

    pub fn namespace(&self) -> &str {
        pod_namespace(&self.pod)
    }

    pub fn name(&self) -> &str {
        pod_name(&self.pod)
    }

    pub fn has_affinity(&self) -> bool {
        !(self.required_affinity_terms.is_empty()
            && self.required_anti_affinity_terms.is_empty()
            && self.preferred_affinity_terms.is_empty()
            && self.preferred_anti_affinity_terms.is_empty())
    }
}

/// Protocol and address of a host port, as used for conflict checks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

/// Bind-all address: a port bound here conflicts with the same port on any
/// address.
pub const DEFAULT_BIND_ALL_HOST_IP: &str = "0.0.0.0";

impl HostPort {
    /// An empty host IP means all addresses and an empty protocol means TCP,
    /// as the API defaults them.
    pub fn new(ip: Option<&str>, protocol: Option<&str>, port: i32) -> HostPort {
        HostPort {
            ip: ip
                .filter(|s| !s.is_empty())
                .unwrap_or(DEFAULT_BIND_ALL_HOST_IP)
                .to_string(),
            protocol: protocol
                .filter(|s| !s.is_empty())
                .unwrap_or("TCP")
                .to_string(),
            port,
        }
    }
}

/// The host ports a pod asks for: those of its containers and of its
/// sidecars (init containers with `restartPolicy: Always`), which stay up
/// beside them. Entries without a host port are not bound on the node.
pub fn pod_host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.unwrap_or(0);
            (port > 0).then(|| HostPort::new(p.host_ip.as_deref(), p.protocol.as_deref(), port))
        })
        .collect()
}

/// Host ports in use on a node, counted so removing one pod of two that
/// (wrongly) share a port does not free it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostPortInfo {
    used: BTreeMap<HostPort, usize>,
}

impl HostPortInfo {
    pub fn add(&mut self, port: HostPort) {
        *self.used.entry(port).or_default() += 1;
    }

    pub fn remove(&mut self, port: &HostPort) {
        if let Some(n) = self.used.get_mut(port) {
            *n -= 1;
            if *n == 0 {
                self.used.remove(port);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }

    /// Whether `wanted` clashes with a port in use: same protocol and port,
    /// and the same address or either side bound to all addresses.
    pub fn conflicts_with(&self, wanted: &HostPort) -> bool {
        if wanted.port <= 0 {
            return false;
        }
        self.used.keys().any(|used| {
            used.port == wanted.port
                && used.protocol == wanted.protocol
                && (used.ip == wanted.ip
                    || used.ip == DEFAULT_BIND_ALL_HOST_IP
                    || wanted.ip == DEFAULT_BIND_ALL_HOST_IP)
        })
    }
}

/// A node and everything assigned to it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub pods: Vec<PodInfo>,
    /// Sum of the filter-view requests of `pods`.
    pub requested: Resource,
    /// Sum of the scoring-view requests of `pods` (100m / 200Mi defaults).
    pub non_zero_requested: Resource,
    /// `status.allocatable`, including the pod count.
    pub allocatable: Resource,
    pub used_ports: HostPortInfo,
    /// Image name -> size in bytes, from `status.images` (every name of an
    /// image maps to its size).
    pub image_sizes: BTreeMap<String, i64>,
}

impl NodeInfo {
    pub fn new(node: Node) -> NodeInfo {
        let allocatable = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .map(Resource::from_list)
            .unwrap_or_default();
        let mut image_sizes = BTreeMap::new();
        for image in node
            .status
            .as_ref()
            .and_then(|s| s.images.as_ref())
            .into_iter()
            .flatten()
        {
            for name in image.names.iter().flatten() {
                image_sizes.insert(name.clone(), image.size_bytes.unwrap_or(0));
            }
        }
        NodeInfo {
            node: Arc::new(node),
            pods: Vec::new(),
            requested: Resource::default(),
            non_zero_requested: Resource::default(),
            allocatable,
            used_ports: HostPortInfo::default(),
            image_sizes,
        }
    }

    pub fn name(&self) -> &str {
        node_name(&self.node)
    }

    pub fn labels(&self) -> &Labels {
        node_labels(&self.node)
    }

    pub fn add_pod(&mut self, pod_info: PodInfo) {
        self.requested.add(&pod_info.requested);
        self.non_zero_requested.add(&pod_info.non_zero_requested);
        for port in pod_host_ports(&pod_info.pod) {
            self.used_ports.add(port);
        }
        self.pods.push(pod_info);
    }

    /// Removes the pod `namespace/name`, undoing its accounting.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> Option<PodInfo> {
        let pos = self
            .pods
            .iter()
            .position(|p| p.namespace() == namespace && p.name() == name)?;
        let pod_info = self.pods.remove(pos);
        self.requested.sub(&pod_info.requested);
        self.non_zero_requested.sub(&pod_info.non_zero_requested);
        for port in pod_host_ports(&pod_info.pod) {
            self.used_ports.remove(&port);
        }
        Some(pod_info)
    }

    pub fn has_pod(&self, namespace: &str, name: &str) -> bool {
        self.pods
            .iter()
            .any(|p| p.namespace() == namespace && p.name() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    #[error("node {0:?} is not in the snapshot")]
    UnknownNode(String),
    #[error("pod {namespace}/{name} is already on node {node:?}")]
    AlreadyAssigned {
        namespace: String,
        name: String,
        node: String,
    },
}

fn default_namespace_labels(namespace: &str) -> Labels {
    Labels::from([(LABEL_NAMESPACE_NAME.to_string(), namespace.to_string())])
}

/// All nodes, in a stable order, indexable by position and by name.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    node_infos: Vec<NodeInfo>,
    index_by_name: HashMap<String, usize>,
    /// Image name -> number of nodes that have it.
    image_num_nodes: HashMap<String, usize>,
    /// Namespace name -> labels, for `namespaceSelector`s.
    namespace_labels: HashMap<String, Labels>,
    /// The cluster's PodDisruptionBudgets, which preemption respects
    /// where it can.
    pdbs: Vec<k8s_openapi::api::policy::v1::PodDisruptionBudget>,
}

impl Snapshot {
    /// Builds the snapshot: every node, and every non-terminal pod with a
    /// `spec.nodeName` placed on its node. Pods naming a node that is not in
    /// `nodes` are left out (nothing could be scheduled beside them anyway).
    pub fn new(nodes: &[Node], pods: &[Pod]) -> Snapshot {
        let mut node_infos: Vec<NodeInfo> = nodes.iter().cloned().map(NodeInfo::new).collect();
        let index_by_name: HashMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (node_name(n), i))
            .collect();
        for pod in pods.iter().filter(|p| !is_terminal(p)) {
            if let Some(node) = assigned_node(pod)
                && let Some(&i) = index_by_name.get(node)
            {
                node_infos[i].add_pod(PodInfo::new(Arc::new(pod.clone())));
            }
        }
        Snapshot::from_node_infos(node_infos)
    }

    /// Builds the snapshot from node infos kept up to date elsewhere (the
    /// scheduler cache), in their order.
    pub fn from_node_infos(node_infos: Vec<NodeInfo>) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for (i, info) in node_infos.iter().enumerate() {
            snapshot.index_by_name.insert(info.name().to_string(), i);
            for name in info.image_sizes.keys() {
                *snapshot.image_num_nodes.entry(name.clone()).or_default() += 1;
            }
        }
        for pod_info in node_infos.iter().flat_map(|n| &n.pods) {
            snapshot.note_namespace(pod_info.namespace());
        }
        snapshot.node_infos = node_infos;
        snapshot
    }

    /// Makes sure `namespace` has a label entry, so lookups need not build
    /// one per pod.
    fn note_namespace(&mut self, namespace: &str) {
        if !self.namespace_labels.contains_key(namespace) {
            self.namespace_labels
                .insert(namespace.to_string(), default_namespace_labels(namespace));
        }
    }

    /// Supplies namespace labels for `namespaceSelector`s in affinity terms.
    /// Namespaces not given here are assumed to carry only
    /// `kubernetes.io/metadata.name`, which the API server sets on every
    /// namespace.
    pub fn with_namespace_labels(
        mut self,
        labels: impl IntoIterator<Item = (String, Labels)>,
    ) -> Snapshot {
        for (namespace, mut l) in labels {
            l.entry(LABEL_NAMESPACE_NAME.to_string())
                .or_insert_with(|| namespace.clone());
            self.namespace_labels.insert(namespace, l);
        }
        self
    }

    /// The labels of `namespace` (borrowed for every namespace that has
    /// pods in the snapshot or was supplied).
    pub fn namespace_labels(&self, namespace: &str) -> Cow<'_, Labels> {
        match self.namespace_labels.get(namespace) {
            Some(l) => Cow::Borrowed(l),
            None => Cow::Owned(default_namespace_labels(namespace)),
        }
    }

    pub fn pdbs(&self) -> &[k8s_openapi::api::policy::v1::PodDisruptionBudget] {
        &self.pdbs
    }

    pub fn set_pdbs(&mut self, pdbs: Vec<k8s_openapi::api::policy::v1::PodDisruptionBudget>) {
        self.pdbs = pdbs;
    }

    pub fn node_infos(&self) -> &[NodeInfo] {
        &self.node_infos
    }

    pub fn len(&self) -> usize {
        self.node_infos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.node_infos.is_empty()
    }

    pub fn index_of(&self, node_name: &str) -> Option<usize> {
        self.index_by_name.get(node_name).copied()
    }

    pub fn get(&self, node_name: &str) -> Option<&NodeInfo> {
        self.index_of(node_name).map(|i| &self.node_infos[i])
    }

    /// How many nodes report having the image `name`.
    pub fn image_num_nodes(&self, name: &str) -> usize {
        self.image_num_nodes.get(name).copied().unwrap_or(0)
    }

    /// Counts `pod` on `node_name` from now on, as if bound there. The stored
    /// copy has `spec.nodeName` set.
    pub fn assume(&mut self, pod: &Pod, node_name: &str) -> Result<(), SnapshotError> {
        let i = self
            .index_of(node_name)
            .ok_or_else(|| SnapshotError::UnknownNode(node_name.to_string()))?;
        let (namespace, name) = (pod_namespace(pod), pod_name(pod));
        if let Some(holder) = self.node_infos.iter().find(|n| n.has_pod(namespace, name)) {
            return Err(SnapshotError::AlreadyAssigned {
                namespace: namespace.to_string(),
                name: name.to_string(),
                node: holder.name().to_string(),
            });
        }
        self.note_namespace(namespace);
        let mut assumed = pod.clone();
        assumed.spec.get_or_insert_with(Default::default).node_name = Some(node_name.to_string());
        self.node_infos[i].add_pod(PodInfo::new(Arc::new(assumed)));
        Ok(())
    }

    /// Adds `node`, or replaces the node object of the same name while
    /// keeping the pods counted on it (a label, taint or allocatable
    /// change). Returns the node object it replaced.
    ///
    /// With this and the pod methods below the scheduler cache keeps one
    /// snapshot up to date in place instead of rebuilding it per cycle.
    pub fn upsert_node(&mut self, node: Node) -> Option<Arc<Node>> {
        let mut fresh = NodeInfo::new(node);
        match self.index_of(fresh.name()) {
            Some(i) => {
                let old = &mut self.node_infos[i];
                for name in old.image_sizes.keys() {
                    decrement(&mut self.image_num_nodes, name);
                }
                for name in fresh.image_sizes.keys() {
                    *self.image_num_nodes.entry(name.clone()).or_default() += 1;
                }
                // The pods stay; only what the node object says is new.
                old.allocatable = std::mem::take(&mut fresh.allocatable);
                old.image_sizes = std::mem::take(&mut fresh.image_sizes);
                Some(std::mem::replace(&mut old.node, fresh.node))
            }
            None => {
                for name in fresh.image_sizes.keys() {
                    *self.image_num_nodes.entry(name.clone()).or_default() += 1;
                }
                self.index_by_name
                    .insert(fresh.name().to_string(), self.node_infos.len());
                self.node_infos.push(fresh);
                None
            }
        }
    }

    /// Removes the node `name` with the pods counted on it (returned in
    /// its [`NodeInfo`]). The last node takes its position, so positions
    /// of other nodes may change.
    pub fn remove_node(&mut self, name: &str) -> Option<NodeInfo> {
        let i = self.index_by_name.remove(name)?;
        let removed = self.node_infos.swap_remove(i);
        if let Some(moved) = self.node_infos.get(i) {
            self.index_by_name.insert(moved.name().to_string(), i);
        }
        for image in removed.image_sizes.keys() {
            decrement(&mut self.image_num_nodes, image);
        }
        Some(removed)
    }

    /// Counts `pod_info` on `node_name`. Unlike [`Snapshot::assume`] this
    /// does not look for the pod on other nodes: the caller (the cache)
    /// knows where every pod is.
    pub fn add_pod_to_node(
        &mut self,
        node_name: &str,
        pod_info: PodInfo,
    ) -> Result<(), SnapshotError> {
        let i = self
            .index_of(node_name)
            .ok_or_else(|| SnapshotError::UnknownNode(node_name.to_string()))?;
        self.note_namespace(pod_info.namespace());
        self.node_infos[i].add_pod(pod_info);
        Ok(())
    }

    /// Removes the pod `namespace/name` from the node `node_name`.
    pub fn remove_pod_from_node(
        &mut self,
        node_name: &str,
        namespace: &str,
        name: &str,
    ) -> Option<PodInfo> {
        let i = self.index_of(node_name)?;
        self.node_infos[i].remove_pod(namespace, name)
    }

    /// Sets (or with `None` forgets) the labels of one namespace for
    /// `namespaceSelector`s; see [`Snapshot::with_namespace_labels`].
    pub fn set_namespace_labels(&mut self, namespace: &str, labels: Option<Labels>) {
        match labels {
            Some(mut l) => {
                l.entry(LABEL_NAMESPACE_NAME.to_string())
                    .or_insert_with(|| namespace.to_string());
                self.namespace_labels.insert(namespace.to_string(), l);
            }
            None => {
                self.namespace_labels.remove(namespace);
            }
        }
    }

    /// Removes the pod `namespace/name` from whichever node holds it (a
    /// failed binding, a deleted pod). Returns the node's name.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> Option<String> {
        self.node_infos
            .iter_mut()
            .find_map(|n| n.remove_pod(namespace, name).map(|_| n.name().to_string()))
    }
}

fn decrement(counts: &mut HashMap<String, usize>, key: &str) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

impl Index<usize> for Snapshot {
    type Output = NodeInfo;

    fn index(&self, i: usize) -> &NodeInfo {
        &self.node_infos[i]
    }
}

/// By node name; panics if the node is not in the snapshot (use
/// [`Snapshot::get`] when that is possible).
impl Index<&str> for Snapshot {
    type Output = NodeInfo;

    fn index(&self, node_name: &str) -> &NodeInfo {
        self.get(node_name)
            .unwrap_or_else(|| panic!("node {node_name:?} is not in the snapshot"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::{node, pod};

    #[test]
    fn places_pods_and_sums_requests() {
        let nodes = [
            node("a").allocatable("4", "8Gi", "110").build(),
            node("b").build(),
        ];
        let pods = [
            pod("p1")
                .on("a")
                .container(&[("cpu", "1"), ("memory", "1Gi")])
                .build(),
            pod("p2")
                .on("a")
                .container(&[])
                .host_port("TCP", "", 80)
                .build(),
            pod("p3").on("missing").container(&[("cpu", "1")]).build(),
            pod("done")
                .on("a")
                .container(&[("cpu", "1")])
                .phase("Succeeded")
                .build(),
            pod("pending").container(&[("cpu", "1")]).build(),
        ];
        let s = Snapshot::new(&nodes, &pods);
        assert_eq!(s.len(), 2);
        let a = s.get("a").unwrap();
        assert_eq!(a.pods.len(), 2);
        assert_eq!(a.requested.milli_cpu, 1000);
        assert_eq!(a.requested.memory, 1 << 30);
        assert_eq!(a.non_zero_requested.milli_cpu, 1100);
        assert_eq!(a.non_zero_requested.memory, (1 << 30) + (200 << 20));
        assert_eq!(a.allocatable.milli_cpu, 4000);
        assert_eq!(a.allocatable.allowed_pod_number, 110);
        assert!(a.used_ports.conflicts_with(&HostPort::new(None, None, 80)));
        assert!(s.get("b").unwrap().pods.is_empty());
        assert_eq!(s[1].name(), "b");
        assert_eq!(s["b"].name(), "b");
        assert_eq!(s.index_of("b"), Some(1));
    }

    #[test]
    fn assume_and_remove() {
        let mut s = Snapshot::new(&[node("a").build()], &[]);
        let p = pod("p").container(&[("cpu", "250m")]).build();
        s.assume(&p, "a").unwrap();
        assert_eq!(s.get("a").unwrap().requested.milli_cpu, 250);
        assert_eq!(assigned_node(&s.get("a").unwrap().pods[0].pod), Some("a"));
        assert!(matches!(
            s.assume(&p, "a"),
            Err(SnapshotError::AlreadyAssigned { .. })
        ));
        assert_eq!(
            s.assume(&p, "zz"),
            Err(SnapshotError::UnknownNode("zz".into()))
        );
        assert_eq!(s.remove_pod("default", "p").as_deref(), Some("a"));
        assert_eq!(s.get("a").unwrap().requested, Resource::default());
        assert_eq!(s.remove_pod("default", "p"), None);
    }

    #[test]
    fn nodes_and_pods_are_updated_in_place() {
        let mut s = Snapshot::new(
            &[
                node("a")
                    .allocatable("4", "8Gi", "110")
                    .image(&["img:1"], 10)
                    .build(),
                node("b").image(&["img:1"], 10).build(),
                node("c").build(),
            ],
            &[],
        );
        let p = PodInfo::new(Arc::new(
            pod("p").on("a").container(&[("cpu", "1")]).build(),
        ));
        s.add_pod_to_node("a", p).unwrap();
        assert_eq!(
            s.add_pod_to_node("zz", PodInfo::new(Arc::new(pod("q").build()))),
            Err(SnapshotError::UnknownNode("zz".into()))
        );

        // A changed node object keeps its pods; image counts follow.
        let old = s.upsert_node(
            node("a")
                .allocatable("8", "8Gi", "110")
                .label("x", "y")
                .build(),
        );
        assert!(old.is_some());
        assert_eq!(s["a"].pods.len(), 1);
        assert_eq!(s["a"].requested.milli_cpu, 1000);
        assert_eq!(s["a"].allocatable.milli_cpu, 8000);
        assert_eq!(s["a"].labels().get("x").map(String::as_str), Some("y"));
        assert_eq!(s.image_num_nodes("img:1"), 1);

        assert!(
            s.upsert_node(node("d").image(&["img:2"], 5).build())
                .is_none()
        );
        assert_eq!(s.index_of("d"), Some(3));
        assert_eq!(s.image_num_nodes("img:2"), 1);

        // Removing a node moves the last one into its place.
        let removed = s.remove_node("a").unwrap();
        assert_eq!(removed.pods.len(), 1);
        assert_eq!(s.len(), 3);
        assert_eq!(s.index_of("a"), None);
        assert_eq!(s.index_of("d"), Some(0));
        assert_eq!(s[0].name(), "d");
        assert_eq!(s["b"].name(), "b");
        assert_eq!(s.image_num_nodes("img:1"), 1);
        assert!(s.remove_node("a").is_none());

        let q = PodInfo::new(Arc::new(pod("q").on("b").build()));
        s.add_pod_to_node("b", q).unwrap();
        assert!(s.remove_pod_from_node("c", "default", "q").is_none());
        assert!(s.remove_pod_from_node("b", "default", "q").is_some());
        assert!(s["b"].pods.is_empty());

        s.set_namespace_labels("team", Some(Labels::from([("t".into(), "1".into())])));
        assert_eq!(
            s.namespace_labels("team")
                .get(LABEL_NAMESPACE_NAME)
                .map(String::as_str),
            Some("team")
        );
        s.set_namespace_labels("team", None);
        assert!(s.namespace_labels("team").get("t").is_none());
    }

    #[test]
    fn image_counts() {
        let s = Snapshot::new(
            &[
                node("a").image(&["img:1", "img:latest"], 10).build(),
                node("b").image(&["img:1"], 10).build(),
                node("c").build(),
            ],
            &[],
        );
        assert_eq!(s.image_num_nodes("img:1"), 2);
        assert_eq!(s.image_num_nodes("img:latest"), 1);
        assert_eq!(s.image_num_nodes("other"), 0);
        assert_eq!(s[0].image_sizes.get("img:latest"), Some(&10));
    }

    #[test]
    fn host_port_conflicts() {
        let mut used = HostPortInfo::default();
        used.add(HostPort::new(Some("127.0.0.1"), Some("TCP"), 8001));
        assert!(used.conflicts_with(&HostPort::new(Some("0.0.0.0"), Some("TCP"), 8001)));
        assert!(used.conflicts_with(&HostPort::new(Some("127.0.0.1"), None, 8001)));
        assert!(!used.conflicts_with(&HostPort::new(Some("127.0.0.2"), Some("TCP"), 8001)));
        assert!(!used.conflicts_with(&HostPort::new(Some("0.0.0.0"), Some("UDP"), 8001)));
        assert!(!used.conflicts_with(&HostPort::new(None, None, 8002)));
        used.add(HostPort::new(None, Some("UDP"), 53));
        assert!(used.conflicts_with(&HostPort::new(Some("10.0.0.1"), Some("UDP"), 53)));
        used.remove(&HostPort::new(None, Some("UDP"), 53));
        assert!(!used.conflicts_with(&HostPort::new(Some("10.0.0.1"), Some("UDP"), 53)));
    }

    #[test]
    fn namespace_labels_default_to_the_name_label() {
        let s = Snapshot::default().with_namespace_labels([(
            "team-a".to_string(),
            Labels::from([("team".to_string(), "a".to_string())]),
        )]);
        assert_eq!(
            s.namespace_labels("team-a").get("team").map(String::as_str),
            Some("a")
        );
        assert_eq!(
            s.namespace_labels("x")
                .get(LABEL_NAMESPACE_NAME)
                .map(String::as_str),
            Some("x")
        );
    }
}
