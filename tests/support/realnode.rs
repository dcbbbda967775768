//! hack/testenv's real node (kubelet, containerd, runc; node `localhost`,
//! tainted testenv.dlite.dev/real-node=true:NoSchedule): finding it, the
//! placement its pods need, and the test server's pod template
//! (examples/testserver.rs), for tests/realnode.rs and tests/conformance.rs.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use super::{kubeconfig_path, wait_for};

pub const REAL_NODE_LABEL: &str = "testenv.dlite.dev/real-node";

pub fn testserver_image() -> String {
    std::env::var("DLITE_TESTSERVER_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| "localhost/dlite-testserver:dev".into())
}

pub fn chart_image() -> String {
    std::env::var("DLITE_CHART_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| {
            format!(
                "ghcr.io/dlite-dev/deploymentlite:{}",
                env!("CARGO_PKG_VERSION")
            )
        })
}

/// The real node, Ready, with `images` present in its containerd; None (and
/// a printed reason) on a cluster hack/testenv did not make.
pub async fn real_node(client: &Client, images: &[String]) -> Option<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    let real = nodes
        .list(&ListParams::default().labels(&format!("{REAL_NODE_LABEL}=true")))
        .await
        .expect("listing nodes");
    let Some(node) = real.items.into_iter().next() else {
        let testenv = nodes
            .list(&ListParams::default().labels("testenv.dlite.dev/node=true"))
            .await
            .expect("listing nodes");
        if testenv.items.is_empty() {
            eprintln!(
                "SKIPPED: {} is not a hack/testenv cluster (no testenv.dlite.dev/node nodes), so it has no real node",
                kubeconfig_path().display()
            );
            return None;
        }
        panic!(
            "this hack/testenv cluster has no real node (no node labelled {REAL_NODE_LABEL}=true): \
             `hack/testenv up` starts one when run as root without --no-real-node/DLITE_REAL_NODE=0, \
             and says why it did not otherwise (e.g. a control plane started by an older hack/testenv: \
             `hack/testenv down` and `up` again)"
        );
    };
    assert!(
        super::nodes::is_ready(&node),
        "the real node {} is not Ready: {:?}",
        node.name_any(),
        node.status.as_ref().map(|s| &s.conditions)
    );
    // The kubelet lists its images in the node's status from a cache it
    // refreshes every 30 s or so: an image imported just now shows up late.
    let name = node.name_any();
    let node = wait_for(
        &format!("images {images:?} on the real node (hack/test imports them: `hack/image` then `hack/testenv import-image REF`, and `hack/testserver-image --import`)"),
        Duration::from_secs(90),
        || async {
            let node = nodes.get(&name).await.map_err(|e| e.to_string())?;
            let present: BTreeSet<String> = node
                .status
                .as_ref()
                .and_then(|s| s.images.clone())
                .unwrap_or_default()
                .into_iter()
                .flat_map(|i| i.names.unwrap_or_default())
                .collect();
            if images.iter().all(|i| present.contains(i)) {
                Ok(node)
            } else {
                Err(format!("the node lists {present:?}"))
            }
        },
    )
    .await;
    Some(node)
}

/// Placement on the real node: its label and its taint.
pub fn on_real_node() -> Value {
    json!({
        "nodeSelector": {REAL_NODE_LABEL: "true"},
        "tolerations": [{"key": REAL_NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    })
}

/// The pod template spec of the test server: hostNetwork on the real node,
/// restricted-style security, a readiness exec probe that asks the pod's
/// own server (see examples/testserver.rs for why exec: hostNetwork pods
/// of one template would share any fixed TCP port). Three failures to turn
/// NotReady: on a loaded machine an exec probe may be slow once, and a
/// flapping pod would be the machine's doing, not the controller's. Every
/// 2 s and no liveness probe: each exec is a runc exec, and with a dozen
/// pods on a 2-core machine more of them time out and restart containers
/// (seen: a liveness probe every 5 s restarted pods mid-rollout).
pub fn testserver_pod_spec(version: &str, ready_delay: &str, drain: &str) -> Value {
    let mut spec = json!({
        "hostNetwork": true,
        "terminationGracePeriodSeconds": 10,
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "app",
            "image": testserver_image(),
            "imagePullPolicy": "Never",
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "VERSION", "value": version},
                {"name": "READY_DELAY_SECONDS", "value": ready_delay},
                {"name": "DRAIN_SECONDS", "value": drain}
            ],
            "readinessProbe": {"exec": {"command": ["/testserver", "probe", "/readyz"]},
                               "periodSeconds": 2, "failureThreshold": 3, "timeoutSeconds": 5},
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                          "limits": {"cpu": "200m", "memory": "64Mi"}},
            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}}
        }]
    });
    super::dl::merge(&mut spec, &on_real_node());
    spec
}
