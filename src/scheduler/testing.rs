//! Terse builders for nodes and pods in the scheduler's unit tests.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerImage, ContainerPort, Node, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, NodeStatus, Pod, PodAffinity,
    PodAffinityTerm, PodAntiAffinity, PodSchedulingGate, PodSpec, PodStatus,
    PreferredSchedulingTerm, ResourceRequirements, Taint, Toleration, TopologySpreadConstraint,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

fn resource_list(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub struct NodeBuilder(Node);

pub fn node(name: &str) -> NodeBuilder {
    let mut n = Node::default();
    n.metadata.name = Some(name.to_string());
    n.spec = Some(NodeSpec::default());
    n.status = Some(NodeStatus::default());
    NodeBuilder(n)
}

impl NodeBuilder {
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let spec = self.0.spec.as_mut().unwrap();
        spec.taints.get_or_insert_with(Vec::new).push(Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.into()),
            effect: effect.into(),
            time_added: None,
        });
        self
    }

    pub fn unschedulable(mut self) -> Self {
        self.0.spec.as_mut().unwrap().unschedulable = Some(true);
        self
    }

    pub fn allocatable(self, cpu: &str, memory: &str, pods: &str) -> Self {
        self.alloc("cpu", cpu)
            .alloc("memory", memory)
            .alloc("pods", pods)
    }

    pub fn alloc(mut self, name: &str, quantity: &str) -> Self {
        let status = self.0.status.as_mut().unwrap();
        status
            .allocatable
            .get_or_insert_with(Default::default)
            .insert(name.into(), Quantity(quantity.into()));
        self
    }

    pub fn image(mut self, names: &[&str], size_bytes: i64) -> Self {
        let status = self.0.status.as_mut().unwrap();
        status
            .images
            .get_or_insert_with(Vec::new)
            .push(ContainerImage {
                names: Some(names.iter().map(|n| n.to_string()).collect()),
                size_bytes: Some(size_bytes),
            });
        self
    }

    pub fn build(self) -> Node {
        self.0
    }
}

pub struct PodBuilder(Pod);

pub fn pod(name: &str) -> PodBuilder {
    let mut p = Pod::default();
    p.metadata.name = Some(name.to_string());
    p.metadata.namespace = Some("default".into());
    p.spec = Some(PodSpec::default());
    PodBuilder(p)
}

fn container(index: usize, requests: &[(&str, &str)]) -> Container {
    Container {
        name: format!("c{index}"),
        resources: (!requests.is_empty()).then(|| ResourceRequirements {
            requests: Some(resource_list(requests)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl PodBuilder {
    fn spec(&mut self) -> &mut PodSpec {
        self.0.spec.as_mut().unwrap()
    }

    fn affinity_mut(&mut self) -> &mut Affinity {
        self.spec().affinity.get_or_insert_with(Default::default)
    }

    fn node_affinity(&mut self) -> &mut NodeAffinity {
        self.affinity_mut()
            .node_affinity
            .get_or_insert_with(Default::default)
    }

    fn pod_affinity(&mut self) -> &mut PodAffinity {
        self.affinity_mut()
            .pod_affinity
            .get_or_insert_with(Default::default)
    }

    fn pod_anti_affinity(&mut self) -> &mut PodAntiAffinity {
        self.affinity_mut()
            .pod_anti_affinity
            .get_or_insert_with(Default::default)
    }

    pub fn ns(mut self, namespace: &str) -> Self {
        self.0.metadata.namespace = Some(namespace.into());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(key.into(), value.into());
        self
    }

    /// Sets `spec.nodeName`.
    pub fn on(mut self, node: &str) -> Self {
        self.spec().node_name = Some(node.into());
        self
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.0.status = Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        self
    }

    /// Adds a container with these requests (none: a best-effort container).
    pub fn container(mut self, requests: &[(&str, &str)]) -> Self {
        let i = self.spec().containers.len();
        self.spec().containers.push(container(i, requests));
        self
    }

    /// Adds a container running `image`.
    pub fn image(mut self, image: &str) -> Self {
        let i = self.spec().containers.len();
        let mut c = container(i, &[]);
        c.image = Some(image.into());
        self.spec().containers.push(c);
        self
    }

    pub fn init_container(mut self, requests: &[(&str, &str)]) -> Self {
        let inits = self.spec().init_containers.get_or_insert_with(Vec::new);
        let mut c = container(inits.len(), requests);
        c.name = format!("init{}", inits.len());
        inits.push(c);
        self
    }

    /// An init container with `restartPolicy: Always`.
    pub fn sidecar(mut self, requests: &[(&str, &str)]) -> Self {
        let inits = self.spec().init_containers.get_or_insert_with(Vec::new);
        let mut c = container(inits.len(), requests);
        c.name = format!("sidecar{}", inits.len());
        c.restart_policy = Some("Always".into());
        inits.push(c);
        self
    }

    pub fn overhead(mut self, overhead: &[(&str, &str)]) -> Self {
        self.spec().overhead = Some(resource_list(overhead));
        self
    }

    pub fn pod_level(mut self, requests: &[(&str, &str)]) -> Self {
        self.spec().resources = Some(ResourceRequirements {
            requests: Some(resource_list(requests)),
            ..Default::default()
        });
        self
    }

    /// Adds a host port to the last container (creating one if needed).
    pub fn host_port(mut self, protocol: &str, ip: &str, port: i32) -> Self {
        if self.spec().containers.is_empty() {
            self = self.container(&[]);
        }
        let c = self.spec().containers.last_mut().unwrap();
        c.ports.get_or_insert_with(Vec::new).push(ContainerPort {
            container_port: port,
            host_port: Some(port),
            host_ip: (!ip.is_empty()).then(|| ip.into()),
            protocol: (!protocol.is_empty()).then(|| protocol.into()),
            ..Default::default()
        });
        self
    }

    pub fn toleration(mut self, toleration: Toleration) -> Self {
        self.spec()
            .tolerations
            .get_or_insert_with(Vec::new)
            .push(toleration);
        self
    }

    pub fn node_selector(mut self, pairs: &[(&str, &str)]) -> Self {
        self.spec().node_selector = Some(labels(pairs));
        self
    }

    pub fn required_terms(mut self, terms: Vec<NodeSelectorTerm>) -> Self {
        self.node_affinity()
            .required_during_scheduling_ignored_during_execution = Some(NodeSelector {
            node_selector_terms: terms,
        });
        self
    }

    pub fn preferred_term(mut self, weight: i32, preference: NodeSelectorTerm) -> Self {
        self.node_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(PreferredSchedulingTerm { weight, preference });
        self
    }

    pub fn spread(mut self, constraint: TopologySpreadConstraint) -> Self {
        self.spec()
            .topology_spread_constraints
            .get_or_insert_with(Vec::new)
            .push(constraint);
        self
    }

    pub fn affinity(mut self, term: PodAffinityTerm) -> Self {
        self.pod_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
        self
    }

    pub fn anti_affinity(mut self, term: PodAffinityTerm) -> Self {
        self.pod_anti_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
        self
    }

    pub fn preferred_affinity(mut self, weight: i32, term: PodAffinityTerm) -> Self {
        self.pod_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                weight,
                pod_affinity_term: term,
            });
        self
    }

    pub fn preferred_anti_affinity(mut self, weight: i32, term: PodAffinityTerm) -> Self {
        self.pod_anti_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                weight,
                pod_affinity_term: term,
            });
        self
    }

    pub fn gate(mut self, name: &str) -> Self {
        self.spec()
            .scheduling_gates
            .get_or_insert_with(Vec::new)
            .push(PodSchedulingGate { name: name.into() });
        self
    }

    pub fn priority(mut self, priority: i32) -> Self {
        self.spec().priority = Some(priority);
        self
    }

    pub fn build(self) -> Pod {
        self.0
    }
}

/// A toleration; empty strings leave the field unset.
pub fn toleration(key: &str, operator: &str, value: &str, effect: &str) -> Toleration {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Toleration {
        key: opt(key),
        operator: opt(operator),
        value: opt(value),
        effect: opt(effect),
        toleration_seconds: None,
    }
}

/// A node selector term from `(key, operator, values)` label expressions.
pub fn term(expressions: &[(&str, &str, &[&str])]) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: Some(
            expressions
                .iter()
                .map(|(key, operator, values)| NodeSelectorRequirement {
                    key: key.to_string(),
                    operator: operator.to_string(),
                    values: (!values.is_empty())
                        .then(|| values.iter().map(|v| v.to_string()).collect()),
                })
                .collect(),
        ),
        match_fields: None,
    }
}

/// A topology spread constraint selecting pods by `match_labels`.
pub fn spread(
    max_skew: i32,
    topology_key: &str,
    when_unsatisfiable: &str,
    match_labels: &[(&str, &str)],
) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew,
        topology_key: topology_key.into(),
        when_unsatisfiable: when_unsatisfiable.into(),
        label_selector: Some(LabelSelector {
            match_labels: Some(labels(match_labels)),
            match_expressions: None,
        }),
        ..Default::default()
    }
}

/// A pod (anti-)affinity term selecting pods by `match_labels`.
pub fn affinity_term(topology_key: &str, match_labels: &[(&str, &str)]) -> PodAffinityTerm {
    PodAffinityTerm {
        topology_key: topology_key.into(),
        label_selector: Some(LabelSelector {
            match_labels: Some(labels(match_labels)),
            match_expressions: None,
        }),
        ..Default::default()
    }
}
