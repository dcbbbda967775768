//! Fake kwok nodes, shared by the cluster tests and the scheduler
//! benchmark (benches/scheduler.rs includes this support module).

use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};

/// A node kwok manages (annotation `kwok.x-k8s.io/node: fake`), with the
/// given allocatable cpu and memory, extra labels and taints (taint JSON
/// objects). The hostname label is set as the kubelet would.
pub fn kwok_node(name: &str, cpu: &str, memory: &str, labels: Value, taints: Value) -> Node {
    let mut all_labels = json!({"type": "kwok", "kubernetes.io/hostname": name});
    if let (Some(all), Some(extra)) = (all_labels.as_object_mut(), labels.as_object()) {
        all.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"}, "labels": all_labels},
        "spec": {"taints": taints},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                   "capacity": {"cpu": cpu, "memory": memory, "pods": "110"}}
    }))
    .expect("a well-formed node")
}

/// The node's Ready condition is True.
pub fn is_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The node carries a taint whose key `matches`.
pub fn has_taint(n: &Node, matches: impl Fn(&str) -> bool) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .any(|t| matches(&t.key))
}

/// The node is Ready and the node lifecycle controller has lifted the
/// `node.kubernetes.io/*` taints it puts on new nodes: pods can land.
pub fn is_ready_and_untainted(n: &Node) -> bool {
    is_ready(n) && !has_taint(n, |k| k.starts_with("node.kubernetes.io/"))
}
