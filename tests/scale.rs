//! Many DeploymentLites at once: 200 objects of 5 replicas (1000 pods)
//! created together must all become Available. The time and the
//! controller's peak memory are printed as a table and written to
//! target/test-logs/scale-report.md (the README quotes the latest run).
//! DLITE_SCALE_OBJECTS / DLITE_SCALE_REPLICAS change the size (e.g. for a
//! small kind cluster).

mod support;

use std::time::{Duration, Instant};

use dlite::api::DeploymentLite;
use futures::future::join_all;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::dl::{install_crd, manifest, start_controller};
use support::nodes::{is_ready_and_untainted, kwok_node};
use support::{TestNamespace, wait_for};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const SCALE_NODES: &str = "testenv.dlite.dev/node=scale";

/// Pods that hold a node's pod slot: bound there and not finished.
fn holds_a_slot(p: &Pod) -> Option<&str> {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return None;
    }
    p.spec.as_ref()?.node_name.as_deref()
}

/// A node that takes pods without tolerations: not cordoned and with no
/// NoSchedule/NoExecute taint (the real node's, a lifecycle taint).
fn schedulable(n: &Node) -> bool {
    let spec = n.spec.clone().unwrap_or_default();
    !spec.unschedulable.unwrap_or(false)
        && spec
            .taints
            .unwrap_or_default()
            .iter()
            .all(|t| t.effect == "PreferNoSchedule")
}

fn pod_slots(n: &Node) -> usize {
    n.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get("pods"))
        .and_then(|q| q.0.parse().ok())
        .unwrap_or(0)
}

/// The nodes `selector` picks (all when empty), and the free pod slots on
/// those of them that take untolerating pods: their allocatable pods minus
/// the pods bound there. One list of each per call.
async fn free_slots(client: &kube::Client, selector: &str) -> (Vec<Node>, usize) {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items;
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let usable: Vec<&Node> = nodes.iter().filter(|n| schedulable(n)).collect();
    let slots: usize = usable.iter().map(|n| pod_slots(n)).sum();
    let held = pods
        .iter()
        .filter_map(holds_a_slot)
        .filter(|on| usable.iter().any(|n| n.name_any() == *on))
        .count();
    (nodes, slots.saturating_sub(held))
}

/// Makes sure the cluster has room for `pods` more pods, and returns the
/// nodeSelector the test's pods should carry. On a kwok-backed cluster the
/// test gets fake nodes of its own (labelled `testenv.dlite.dev/node=scale`)
/// and its pods are pinned to them: a thousand pods must neither be starved
/// by the tests running beside it nor, if this test fails and its namespace
/// is kept for inspection, starve the tests after it. Elsewhere the room
/// must already be there, on nodes the pods need no toleration for.
async fn ensure_capacity(client: &kube::Client, pods: usize) -> serde_json::Value {
    let nodes: Api<Node> = Api::all(client.clone());
    let (all, free) = free_slots(client, "").await;
    let kwok = all.iter().any(|n| {
        n.annotations()
            .get("kwok.x-k8s.io/node")
            .map(String::as_str)
            == Some("fake")
    });
    if !kwok {
        assert!(
            free >= pods,
            "the cluster has room for {free} more pods on untainted nodes, the scale test needs {pods}: lower DLITE_SCALE_OBJECTS"
        );
        return json!({});
    }
    let (existing, free) = free_slots(client, SCALE_NODES).await;
    let existing = existing.len();
    let extra = pods.saturating_sub(free).div_ceil(110);
    for i in existing..existing + extra {
        let name = format!("kwok-scale-{i}");
        let node = kwok_node(
            &name,
            "8",
            "32Gi",
            json!({"testenv.dlite.dev/node": "scale", "topology.kubernetes.io/zone": (["zone-a", "zone-b", "zone-c"][i % 3])}),
            json!([]),
        );
        nodes
            .patch(
                &node.name_any(),
                &PatchParams::apply("dlite-tests").force(),
                &Patch::Apply(&node),
            )
            .await
            .unwrap();
    }
    wait_for(
        "room for the test's pods on Ready, untainted scale nodes",
        Duration::from_secs(120),
        || async {
            let (list, free) = free_slots(client, SCALE_NODES).await;
            let ready = list.iter().filter(|n| is_ready_and_untainted(n)).count();
            if ready == list.len() && free >= pods {
                Ok(())
            } else {
                Err(format!(
                    "{ready}/{} scale nodes ready, room for {free}/{pods} pods",
                    list.len()
                ))
            }
        },
    )
    .await;
    json!({"testenv.dlite.dev/node": "scale"})
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[tokio::test]
async fn two_hundred_deploymentlites_become_available() {
    let objects = env_or("DLITE_SCALE_OBJECTS", 200);
    let replicas = env_or("DLITE_SCALE_REPLICAS", 5) as i32;
    let ns = TestNamespace::new("t-scale").await;
    install_crd(&ns.client).await;
    let node_selector = ensure_capacity(&ns.client, objects * replicas as usize).await;
    let ctrl = start_controller(&ns, "");
    let api: Api<DeploymentLite> = ns.api();

    let start = Instant::now();
    let creates = (0..objects).map(|i| {
        let api = api.clone();
        let dl = manifest(
            &format!("s{i:03}"),
            replicas,
            "app:v1",
            json!({"template": {"spec": {"nodeSelector": node_selector}}}),
        );
        async move { api.create(&PostParams::default(), &dl).await.map(|_| ()) }
    });
    for r in join_all(creates).await {
        r.expect("creating a DeploymentLite");
    }
    let created = start.elapsed();

    wait_for(
        &format!("{objects} DeploymentLites Available"),
        Duration::from_secs(600),
        || async {
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let available = list
                .items
                .iter()
                .filter(|d| {
                    let st = d.status.clone().unwrap_or_default();
                    st.available_replicas == replicas
                        && st
                            .conditions
                            .iter()
                            .any(|c| c.type_ == "Available" && c.status == "True")
                })
                .count();
            if available == objects {
                Ok(())
            } else {
                Err(format!("{available}/{objects} available"))
            }
        },
    )
    .await;
    let all_available = start.elapsed();
    let rss = peak_rss_mib(ctrl.child.id());

    let report = format!(
        "| objects | replicas each | pods | all created | all Available | controller peak RSS |\n\
         |---|---|---|---|---|---|\n\
         | {objects} | {replicas} | {} | {:.1} s | {:.1} s | {rss:.1} MiB |\n",
        objects * replicas as usize,
        created.as_secs_f64(),
        all_available.as_secs_f64(),
    );
    println!("{report}");
    let dir = support::repo_root().join("target/test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("scale-report.md"), &report).unwrap();
    drop(ctrl);
    ns.cleanup().await;
}
