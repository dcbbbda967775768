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
use k8s_openapi::api::core::v1::Node;
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

/// Makes sure the cluster has room for `pods` more pods: on a kwok-backed
/// cluster by adding fake nodes (labelled so they can be told apart);
/// elsewhere the capacity must already be there.
async fn ensure_capacity(client: &kube::Client, pods: usize) {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default()).await.unwrap().items;
    let capacity: usize = list
        .iter()
        .filter(|n| {
            !n.spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false)
        })
        .filter_map(|n| {
            n.status
                .as_ref()?
                .allocatable
                .as_ref()?
                .get("pods")?
                .0
                .parse::<usize>()
                .ok()
        })
        .sum();
    let needed = pods + 100;
    if capacity >= needed {
        return;
    }
    let kwok = list.iter().any(|n| {
        n.annotations()
            .get("kwok.x-k8s.io/node")
            .map(String::as_str)
            == Some("fake")
    });
    assert!(
        kwok,
        "the cluster has room for {capacity} pods, the scale test needs {needed}: lower DLITE_SCALE_OBJECTS"
    );
    let extra = (needed - capacity).div_ceil(110);
    for i in 0..extra {
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
        "the added nodes to be Ready and untainted",
        Duration::from_secs(120),
        || async {
            let list = nodes
                .list(&ListParams::default().labels("testenv.dlite.dev/node=scale"))
                .await
                .map_err(|e| e.to_string())?;
            let ready = list
                .items
                .iter()
                .filter(|n| is_ready_and_untainted(n))
                .count();
            if ready >= extra {
                Ok(())
            } else {
                Err(format!("{ready}/{extra} ready"))
            }
        },
    )
    .await;
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
    ensure_capacity(&ns.client, objects * replicas as usize).await;
    let ctrl = start_controller(&ns, "");
    let api: Api<DeploymentLite> = ns.api();

    let start = Instant::now();
    let creates = (0..objects).map(|i| {
        let api = api.clone();
        async move {
            api.create(
                &PostParams::default(),
                &manifest(&format!("s{i:03}"), replicas, "app:v1", json!({})),
            )
            .await
            .map(|_| ())
        }
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
