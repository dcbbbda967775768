//! Tests on hack/testenv's real node: a kubelet with containerd and runc
//! (node `localhost`, tainted testenv.dlite.dev/real-node=true:NoSchedule),
//! where pods are real containers with real probes and real termination,
//! which the kwok nodes only simulate.
//!
//! The node has no pod network, so every pod here is hostNetwork and all
//! traffic stays on 127.0.0.1 (see the README, "The real node"). The
//! images are imported by hack/test: the chart's (`make image`) and the
//! test server's (`hack/testserver-image --import`, src/bin/dlite-testserver.rs).
//!
//! On a cluster that is not a hack/testenv one (e.g. kind via KUBECONFIG)
//! these tests print why and pass without running; on a hack/testenv
//! cluster without a real node they fail, saying how to get one.
mod support;

use std::process::Command;
use std::time::Duration;

use dlite::api::DeploymentLite;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use support::dl::{
    Sampler, install_crd, is_pod_ready, kubectl, manifest, start_controller, wait_complete,
};
use support::realnode::{
    chart_image, on_real_node, real_node, testserver_image, testserver_pod_spec,
};
use support::{Process, TestNamespace, http_get, kubeconfig_path, repo_root, wait_for};

const ROLLOUT: Duration = Duration::from_secs(120);

/// Pods of a selector, with where they run and their phase, for messages.
async fn describe_pods(ns: &TestNamespace, selector: &str) -> String {
    let pods: Api<Pod> = ns.api();
    match pods.list(&ListParams::default().labels(selector)).await {
        Ok(l) => l
            .items
            .iter()
            .map(|p| {
                let st = p.status.clone().unwrap_or_default();
                format!(
                    "{} node={} phase={} ready={} deleting={}",
                    p.name_any(),
                    p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.clone())
                        .unwrap_or_default(),
                    st.phase.unwrap_or_default(),
                    is_pod_ready(p),
                    p.metadata.deletion_timestamp.is_some()
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(e) => e.to_string(),
    }
}

/// Waits until only the `want` pods of `app` exist: the old ones have
/// drained and gone, so the next step's sampler starts from a clean slate.
async fn wait_settled(ns: &TestNamespace, app: &str, want: usize) {
    let pods: Api<Pod> = ns.api();
    let sel = format!("app={app}");
    wait_for(
        &format!("only {want} pods of {app}, none terminating"),
        ROLLOUT,
        || async {
            let l = pods
                .list(&ListParams::default().labels(&sel))
                .await
                .map_err(|e| e.to_string())?;
            if l.items.len() == want
                && l.items
                    .iter()
                    .all(|p| p.metadata.deletion_timestamp.is_none())
            {
                Ok(())
            } else {
                Err(describe_pods(ns, &sel).await)
            }
        },
    )
    .await;
}

/// `kubectl logs` of a pod (through the API server and the kubelet's
/// authenticated API).
fn logs(ns: &str, pod: &str) -> String {
    kubectl(&["logs", "-n", ns, pod])
}

/// The live pods of a DeploymentLite that are Ready, each with the VERSION
/// its server reported at start (from its log).
async fn ready_versions(ns: &TestNamespace, app: &str) -> Vec<String> {
    let pods: Api<Pod> = ns.api();
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap();
    list.items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_pod_ready(p))
        .map(|p| {
            let l = logs(&ns.name, &p.name_any());
            l.split("version=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

fn dlite(ns: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-dlite"))
        .args(args)
        .args(["-n", ns])
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .expect("running kubectl-dlite");
    assert!(
        out.status.success(),
        "kubectl dlite {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn set_version(api: &Api<DeploymentLite>, name: &str, version: &str, extra: Value) {
    let dl = api.get(name).await.unwrap();
    let mut containers =
        serde_json::to_value(dl.spec.template.spec.clone().unwrap().containers).unwrap();
    for e in containers[0]["env"].as_array_mut().unwrap() {
        if e["name"] == "VERSION" {
            e["value"] = json!(version);
        }
    }
    let mut patch = json!({"metadata": {"resourceVersion": dl.resource_version()},
                           "spec": {"template": {"spec": {"containers": containers}}}});
    // (merge() lets an empty object replace: {} means nothing to add here.)
    if extra.as_object().is_some_and(|o| !o.is_empty()) {
        support::dl::merge(&mut patch["spec"], &extra);
    }
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("changing the template's VERSION");
}

// ---------------------------------------------------------------------------

/// (b) A rolling update, a Recreate and a rollback of a DeploymentLite whose
/// pods are real containers: readiness comes from a real probe of a server
/// that needs READY_DELAY_SECONDS, and old pods take DRAIN_SECONDS to stop.
#[tokio::test]
async fn deploymentlite_rolls_real_containers_within_bounds() {
    let client = support::client().await;
    if real_node(&client, &[testserver_image()]).await.is_none() {
        return;
    }
    install_crd(&client).await;
    let ns = TestNamespace::new("t-real-roll").await;
    let _controller = start_controller(&ns, "");
    let api: Api<DeploymentLite> = ns.api();
    let name = "web";
    let replicas = 3;
    let dl = manifest(
        name,
        replicas,
        &testserver_image(),
        json!({
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "template": {"spec": testserver_pod_spec("v1", "2", "2")}
        }),
    );
    api.create(&PostParams::default(), &dl).await.unwrap();
    wait_complete(&api, name, ROLLOUT).await;
    assert_eq!(ready_versions(&ns, name).await, ["v1"; 3]);

    // 1. Rolling update v1 -> v2: at most 4 pods, at least 2 Ready, at
    // every sample, while each new pod takes 2 s to be Ready and each old
    // one 2 s to drain.
    let sampler = Sampler::start(&ns, name, (replicas + 1) as usize, (replicas - 1) as usize);
    set_version(&api, name, "v2", json!({})).await;
    wait_complete(&api, name, ROLLOUT).await;
    let s = sampler.finish().await;
    assert!(
        s.violations.is_empty(),
        "rolling update broke its bounds: {:?}",
        s.violations
    );
    assert!(s.count > 10, "too few samples ({})", s.count);
    assert!(
        !s.overlaps.is_empty(),
        "a rolling update has old and new pods at once; the sampler never saw both"
    );
    let versions = wait_for("every Ready pod at v2", ROLLOUT, || async {
        let v = ready_versions(&ns, name).await;
        if v == ["v2"; 3] {
            Ok(v)
        } else {
            Err(format!("{v:?}"))
        }
    })
    .await;
    wait_settled(&ns, name, replicas as usize).await;
    eprintln!(
        "rolling update: {} samples, max {} pods, min {} Ready; now {versions:?}",
        s.count, s.max_pods, s.min_ready
    );

    // 2. Recreate v2 -> v3: no new pod until every old one has stopped
    // (drained and gone, not merely deleting), so never two templates at once.
    let sampler = Sampler::start(&ns, name, replicas as usize, 0);
    set_version(
        &api,
        name,
        "v3",
        json!({"strategy": {"type": "Recreate", "rollingUpdate": null}}),
    )
    .await;
    wait_complete(&api, name, ROLLOUT).await;
    let s = sampler.finish().await;
    assert!(s.violations.is_empty(), "Recreate: {:?}", s.violations);
    assert!(
        s.overlaps.is_empty(),
        "Recreate ran pods of two templates at once: {:?}",
        s.overlaps
    );
    assert_eq!(s.min_ready, 0, "Recreate takes every pod down at one point");
    wait_for("every Ready pod at v3", ROLLOUT, || async {
        let v = ready_versions(&ns, name).await;
        if v == ["v3"; 3] {
            Ok(v)
        } else {
            Err(format!("{v:?}"))
        }
    })
    .await;
    wait_settled(&ns, name, replicas as usize).await;

    // 3. Rollback (kubectl dlite rollout undo) to v2's template, Recreate
    // still: the same bounds, and the servers report v2 again.
    let sampler = Sampler::start(&ns, name, replicas as usize, 0);
    let out = dlite(&ns.name, &["rollout", "undo", name]);
    assert!(out.contains("rolled back"), "{out}");
    let dl = wait_complete(&api, name, ROLLOUT).await;
    let s = sampler.finish().await;
    assert!(s.violations.is_empty(), "rollback: {:?}", s.violations);
    assert!(
        s.overlaps.is_empty(),
        "rollback (Recreate): {:?}",
        s.overlaps
    );
    let env =
        serde_json::to_value(&dl.spec.template.spec.as_ref().unwrap().containers[0].env).unwrap();
    assert!(env.to_string().contains("\"v2\""), "rolled back to {env}");
    wait_for("every Ready pod at v2 again", ROLLOUT, || async {
        let v = ready_versions(&ns, name).await;
        if v == ["v2"; 3] {
            Ok(v)
        } else {
            Err(format!("{v:?}"))
        }
    })
    .await;
    ns.cleanup().await;
}

/// (d) dlite-scheduler binds a pod to the real node only when the pod
/// tolerates the node's taint, and the bound pod really runs there.
#[tokio::test]
async fn dlite_scheduler_binds_to_the_real_node_only_with_the_toleration() {
    let client = support::client().await;
    let Some(node) = real_node(&client, &[testserver_image()]).await else {
        return;
    };
    let ns = TestNamespace::new("t-real-sched").await;
    let sched_name = format!("dlite-scheduler-{}", ns.name);
    let _scheduler = Process::start(
        env!("CARGO_BIN_EXE_dlite-scheduler"),
        &format!("{}-scheduler", ns.name),
        &[
            "--scheduler-name",
            &sched_name,
            "--metrics-bind-address",
            "0",
            "--health-probe-bind-address",
            "0",
        ],
    );
    let pods: Api<Pod> = ns.api();
    let pod = |name: &str, tolerate: bool| -> Pod {
        let mut spec = testserver_pod_spec("v1", "0", "0");
        spec["schedulerName"] = json!(sched_name);
        if !tolerate {
            spec.as_object_mut().unwrap().remove("tolerations");
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": spec
        }))
        .unwrap()
    };
    pods.create(&PostParams::default(), &pod("intolerant", false))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("tolerant", true))
        .await
        .unwrap();

    // The tolerant pod: bound to the real node, Running and Ready through
    // its real readiness probe.
    wait_for(
        "the tolerant pod Ready on the real node",
        ROLLOUT,
        || async {
            let p = pods.get("tolerant").await.map_err(|e| e.to_string())?;
            let on = p.spec.as_ref().and_then(|s| s.node_name.clone());
            if on.as_deref() == Some(node.name_any().as_str()) && is_pod_ready(&p) {
                Ok(())
            } else {
                Err(describe_pods(&ns, "app=tolerant").await)
            }
        },
    )
    .await;
    let log = logs(&ns.name, "tolerant");
    assert!(log.contains("listening on @dlite-testserver/"), "{log}");

    // The intolerant one: the only node its selector admits is tainted, so
    // dlite-scheduler says why and leaves it unbound.
    let msg = ns
        .wait_for_event("FailedScheduling", Duration::from_secs(60), |e| {
            e.involved_object.name.as_deref() == Some("intolerant")
        })
        .await
        .message
        .unwrap_or_default();
    assert!(
        // Only the real node carries the label the pod selects, so exactly
        // one node is turned away by its taint (kube-scheduler v1.36 no
        // longer names the taint in this message).
        msg.contains("1 node(s) had untolerated taint(s)"),
        "FailedScheduling message: {msg}"
    );
    let p = pods.get("intolerant").await.unwrap();
    assert_eq!(
        p.spec.as_ref().and_then(|s| s.node_name.clone()),
        None,
        "the intolerant pod was bound"
    );
    ns.cleanup().await;
}

/// (a) The chart, for real: both components on the real node from the
/// image `make image` built, everything but the placement and the network
/// the chart's defaults; Available through their own /healthz and /readyz,
/// each holding its Lease, reconciling a DeploymentLite, logging.
#[tokio::test]
async fn chart_runs_on_the_real_node() {
    let client = support::client().await;
    let image = chart_image();
    if real_node(&client, std::slice::from_ref(&image))
        .await
        .is_none()
    {
        return;
    }
    install_crd(&client).await;
    // No Pod Security label: hostNetwork is outside even the baseline
    // profile (restricted Pod Security is tested on kwok, tests/chart.rs).
    let ns = TestNamespace::new("t-real-chart").await;
    let release = ns.name.clone();
    let sched_name = format!("{release}-sched");
    let server = support::config().await.cluster_url;
    let api_port = server.port_u16().unwrap_or(443).to_string();
    let free = support::dl::free_port;
    let (repo, tag) = image.rsplit_once(':').unwrap();
    let env = json!([
        {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
        {"name": "KUBERNETES_SERVICE_PORT", "value": api_port}
    ]);
    let mut values = json!({
        "crds": {"enabled": false},
        "image": {"repository": repo, "tag": tag, "pullPolicy": "Never"},
        "hostNetwork": true,
        "bindAddress": "127.0.0.1",
        "probeHost": "127.0.0.1",
        "controller": {"watchNamespace": ns.name, "extraEnv": env,
                       "ports": {"metrics": free(), "health": free()}},
        "scheduler": {"schedulerName": sched_name, "extraEnv": env,
                      "ports": {"metrics": free(), "health": free()}}
    });
    for c in ["controller", "scheduler"] {
        support::dl::merge(&mut values[c], &on_real_node());
    }
    let dir = repo_root().join("target/test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    let values_file = dir.join(format!("{release}-values.json"));
    std::fs::write(&values_file, values.to_string()).unwrap();
    let out = Command::new(support::helm_bin())
        .args([
            "install",
            &release,
            "charts/deploymentlite",
            "--namespace",
            &ns.name,
            "-f",
        ])
        .arg(&values_file)
        .current_dir(repo_root())
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .expect("running helm");
    assert!(
        out.status.success(),
        "helm install failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let sel = format!("app.kubernetes.io/instance={release}");
    let deploys: Api<Deployment> = ns.api();
    wait_for("both Deployments Available", ROLLOUT, || async {
        let list = deploys
            .list(&ListParams::default().labels(&sel))
            .await
            .map_err(|e| e.to_string())?;
        let available = list
            .items
            .iter()
            .filter(|d| {
                d.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "Available" && c.status == "True")
            })
            .count();
        if list.items.len() == 2 && available == 2 {
            Ok(())
        } else {
            Err(describe_pods(&ns, &sel).await)
        }
    })
    .await;

    let pods: Api<Pod> = ns.api();
    let list = pods
        .list(&ListParams::default().labels(&sel))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 2, "{}", describe_pods(&ns, &sel).await);
    for p in &list.items {
        let spec = p.spec.as_ref().unwrap();
        let c = &spec.containers[0];
        assert_eq!(
            spec.node_name.as_deref(),
            Some("localhost"),
            "{}",
            p.name_any()
        );
        // The chart's defaults, in force on a real runtime.
        let psc = spec.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_user, Some(65532));
        assert_eq!(
            psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault")
        );
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()])
        );
        assert!(
            c.resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .is_some()
        );
        // Ready through the chart's own httpGet probes, on loopback.
        let probe = c
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap();
        assert_eq!(probe.path.as_deref(), Some("/readyz"));
        assert_eq!(probe.host.as_deref(), Some("127.0.0.1"));
        assert!(is_pod_ready(p), "{} is not Ready", p.name_any());
    }
    // The endpoints answer on the node's loopback (the test runs on it).
    for (component, v) in [
        ("controller", &values["controller"]),
        ("scheduler", &values["scheduler"]),
    ] {
        let port = v["ports"]["health"].as_u64().unwrap() as u16;
        let (code, body) = http_get(port, "/readyz").unwrap_or_else(|e| panic!("{component}: {e}"));
        assert_eq!(code, 200, "{component} /readyz: {body}");
    }

    // Each holds its Lease, under its pod's name.
    let leases: Api<Lease> = ns.api();
    let seen = describe_pods(&ns, &sel).await;
    for component in ["controller", "scheduler"] {
        let pod = list
            .items
            .iter()
            .find(|p| {
                p.labels()
                    .get("app.kubernetes.io/component")
                    .map(String::as_str)
                    == Some(component)
            })
            .unwrap_or_else(|| panic!("no {component} pod: {seen}"))
            .name_any();
        let lease = format!("{release}-deploymentlite-{component}");
        wait_for(
            &format!("{component} to hold Lease {lease}"),
            ROLLOUT,
            || async {
                let l = leases.get_opt(&lease).await.map_err(|e| e.to_string())?;
                let holder = l.and_then(|l| l.spec).and_then(|s| s.holder_identity);
                if holder.as_deref() == Some(pod.as_str()) {
                    Ok(())
                } else {
                    Err(format!("holder {holder:?}, want {pod}"))
                }
            },
        )
        .await;
        let log = logs(&ns.name, &pod);
        assert!(
            log.contains(&format!("starting dlite-{component}"))
                || log.contains("became the leader"),
            "kubectl logs {pod} shows no startup line:\n{log}"
        );
        assert!(
            log.contains("became the leader"),
            "kubectl logs {pod}:\n{log}"
        );
    }

    // They reconcile: a DeploymentLite (its pods on the kwok nodes, through
    // the release's dlite-scheduler) becomes complete.
    let dls: Api<DeploymentLite> = ns.api();
    let dl = manifest(
        "reconciled",
        2,
        "registry.example/app:1",
        json!({"template": {"spec": {"schedulerName": sched_name}}}),
    );
    dls.create(&PostParams::default(), &dl).await.unwrap();
    wait_complete(&dls, "reconciled", ROLLOUT).await;
    let bound = pods
        .list(&ListParams::default().labels("app=reconciled"))
        .await
        .unwrap();
    assert!(
        bound.items.iter().all(|p| p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| n.starts_with("kwok-node-"))),
        "{}",
        describe_pods(&ns, "app=reconciled").await
    );

    let _ = Command::new(support::helm_bin())
        .args([
            "uninstall",
            &release,
            "--namespace",
            &ns.name,
            "--wait",
            "--timeout",
            "120s",
        ])
        .env("KUBECONFIG", kubeconfig_path())
        .output();
    let _ = Api::<DeploymentLite>::namespaced(client.clone(), &ns.name)
        .delete("reconciled", &DeleteParams::default())
        .await;
    ns.cleanup().await;
}
