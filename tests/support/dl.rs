//! DeploymentLite helpers: the CRD, a controller process per test, object
//! builders, and a sampler that checks rollout bounds while a rollout runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dlite::api::DeploymentLite;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use super::{Process, TestNamespace, wait_for};

/// Installs (server-side applies) the CRD generated from the types and the
/// MutatingAdmissionPolicy that defaults its pod template on write, and
/// waits until the CRD is served and the policy acts.
pub async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = dlite::api::crd();
    let name = crd.metadata.name.clone().unwrap();
    let apply = PatchParams::apply("dlite-tests").force();
    crds.patch(&name, &apply, &Patch::Apply(&crd))
        .await
        .expect("applying the CRD");
    let (policy, binding) = dlite::api::admission::defaulting_policy();
    let policies: Api<MutatingAdmissionPolicy> = Api::all(client.clone());
    policies
        .patch(&policy.name_any(), &apply, &Patch::Apply(&policy))
        .await
        .expect("applying the defaulting policy");
    let bindings: Api<MutatingAdmissionPolicyBinding> = Api::all(client.clone());
    bindings
        .patch(&binding.name_any(), &apply, &Patch::Apply(&binding))
        .await
        .expect("applying the defaulting policy's binding");
    wait_for(
        "the CRD to be Established",
        Duration::from_secs(30),
        || async {
            let c = crds.get(&name).await.map_err(|e| e.to_string())?;
            let ok = c
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if ok {
                Ok(())
            } else {
                Err("not Established".into())
            }
        },
    )
    .await;
    // The API server loads admission policies asynchronously: a dry-run
    // create shows when an untagged image starts getting `Always`.
    let probe = manifest("defaulting-probe", 0, "example.com/untagged", json!({}));
    let dls: Api<DeploymentLite> = Api::namespaced(client.clone(), "default");
    wait_for(
        "the defaulting policy to act on a dry-run create",
        Duration::from_secs(30),
        || async {
            let created = dls
                .create(
                    &kube::api::PostParams {
                        dry_run: true,
                        ..Default::default()
                    },
                    &probe,
                )
                .await
                .map_err(|e| e.to_string())?;
            let policy = created.spec.template.spec.as_ref().and_then(|s| {
                s.containers
                    .first()
                    .and_then(|c| c.image_pull_policy.clone())
            });
            match policy.as_deref() {
                Some("Always") => Ok(()),
                other => Err(format!("imagePullPolicy {other:?}")),
            }
        },
    )
    .await;
}

/// A dlite-controller watching only the test's namespace (endpoints on
/// ports the OS picks, so parallel tests never collide).
pub fn start_controller(ns: &TestNamespace, tag: &str) -> Process {
    start_controller_with(ns, tag, &[])
}

pub fn start_controller_with(ns: &TestNamespace, tag: &str, extra: &[&str]) -> Process {
    let mut args = vec!["--namespace", ns.name.as_str()];
    for flag in ["--metrics-bind-address", "--health-probe-bind-address"] {
        if !extra.contains(&flag) {
            args.extend([flag, "127.0.0.1:0"]);
        }
    }
    // The client limits hack/testenv gives kube-controller-manager, so
    // rollout times compare with the native Deployment's (conformance) and
    // the scale test measures the controller, not its default QPS.
    for (flag, value) in [("--kube-api-qps", "300"), ("--kube-api-burst", "600")] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    Process::start(
        env!("CARGO_BIN_EXE_dlite-controller"),
        &format!("{}-controller{tag}", ns.name),
        &args,
    )
}

/// A free port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A DeploymentLite manifest with one container; `spec` is merged on top.
pub fn manifest(name: &str, replicas: i32, image: &str, spec: Value) -> DeploymentLite {
    let mut v = json!({
        "apiVersion": "apps.dlite.dev/v1",
        "kind": "DeploymentLite",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        }
    });
    if spec.as_object().is_some_and(|o| !o.is_empty()) {
        merge(&mut v["spec"], &spec);
    }
    serde_json::from_value(v).expect("a valid DeploymentLite")
}

/// Merges `patch` into `base` like a JSON merge patch, except that an
/// empty object replaces (so a test can set `selector: {}`).
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) if !p.is_empty() => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

pub async fn set_image(api: &Api<DeploymentLite>, name: &str, image: &str) {
    let dl = api.get(name).await.unwrap();
    let mut containers = dl.spec.template.spec.clone().unwrap().containers;
    containers[0].image = Some(image.into());
    let patch = json!({"spec": {"template": {"spec": {"containers": containers}}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("changing the image");
}

pub fn condition(dl: &DeploymentLite, type_: &str) -> Option<(String, String)> {
    dl.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

/// Whether the rollout of the current generation is complete, as `kubectl
/// rollout status` judges it.
pub fn rollout_complete(dl: &DeploymentLite) -> bool {
    let st = dl.status.clone().unwrap_or_default();
    let r = dl.spec.replicas;
    st.observed_generation >= dl.metadata.generation
        && st.updated_replicas == r
        && st.replicas == r
        && st.available_replicas == r
        && condition(dl, "Progressing")
            .is_some_and(|(_, reason)| reason == "NewReplicaSetAvailable")
}

/// Waits until the rollout of the current generation is complete, as
/// `kubectl rollout status` judges it.
pub async fn wait_complete(
    api: &Api<DeploymentLite>,
    name: &str,
    timeout: Duration,
) -> DeploymentLite {
    wait_for(
        &format!("DeploymentLite {name} to finish its rollout"),
        timeout,
        || async {
            let dl = api.get(name).await.map_err(|e| e.to_string())?;
            if rollout_complete(&dl) {
                Ok(dl)
            } else {
                Err(format!("status {:?}", dl.status.unwrap_or_default()))
            }
        },
    )
    .await
}

/// The ReplicaSets controlled by a DeploymentLite, oldest first.
pub async fn replica_sets(ns: &TestNamespace, dl: &str) -> Vec<ReplicaSet> {
    let rses: Api<ReplicaSet> = ns.api();
    let mut list: Vec<ReplicaSet> = rses
        .list(&ListParams::default().labels(&format!("app={dl}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|rs| {
            rs.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.name == dl)
        })
        .collect();
    // By revision: creation timestamps have whole seconds, and a fast
    // rollout creates both ReplicaSets within one (the list's own order,
    // by name, then decided which came "first").
    list.sort_by_key(|rs| {
        let revision = rs
            .annotations()
            .get("dlite.dev/revision")
            .and_then(|r| r.parse::<i64>().ok())
            .unwrap_or(0);
        (revision, rs.metadata.creation_timestamp.clone())
    });
    list
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

pub fn is_pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// What a sampler saw over a rollout.
#[derive(Debug, Default)]
pub struct Samples {
    pub count: usize,
    pub violations: Vec<String>,
    pub max_pods: usize,
    pub min_ready: usize,
    /// The most live pods seen at once that had been Ready and no longer
    /// were (counted towards the floor: readiness is the pod's, not the
    /// controller's).
    pub lost_readiness: usize,
    /// Distinct pod-template-hash sets seen at once (for Recreate).
    pub overlaps: Vec<String>,
}

/// Samples the pods (and ReplicaSets) of a DeploymentLite every 100 ms and
/// records every moment the rollout bounds are broken: ReplicaSet sizes
/// summing above replicas + maxSurge, fewer Ready pods than replicas -
/// maxUnavailable (a pod that was Ready and lost its readiness while live
/// still counts: the controller took nothing down), or more live pods than
/// replicas + maxSurge while no ReplicaSet is still scaling down. Works for
/// a Deployment too (the selector is `app=<name>`).
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Samples>,
}

impl Sampler {
    pub fn start(ns: &TestNamespace, dl: &str, max_total: usize, min_ready: usize) -> Self {
        let pods: Api<Pod> = ns.api();
        let rses: Api<ReplicaSet> = ns.api();
        let selector = format!("app={dl}");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let task = tokio::spawn(async move {
            let mut s = Samples {
                min_ready: usize::MAX,
                ..Default::default()
            };
            // Pods seen Ready at some sample: one that is later live and
            // not Ready lost its readiness by itself (a probe, a node marked
            // NotReady), which no controller can cause or prevent, so it
            // counts towards the floor as upstream's own guarantee does
            // (maxUnavailable bounds what the controller takes down).
            let mut was_ready = std::collections::HashSet::new();
            while !stop2.load(Ordering::Relaxed) {
                let lp = ListParams::default().labels(&selector);
                // ReplicaSets first: a scale-down they still show as pending
                // (status.replicas above spec.replicas) explains pods listed
                // right after.
                let rl = rses.list(&lp).await;
                let pl = pods.list(&lp).await;
                if let (Ok(pl), Ok(rl)) = (pl, rl) {
                    let live: Vec<&Pod> = pl
                        .items
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .collect();
                    let ready = live.iter().filter(|p| is_pod_ready(p)).count();
                    let lost = live
                        .iter()
                        .filter(|p| !is_pod_ready(p) && was_ready.contains(&p.name_any()))
                        .count();
                    was_ready.extend(
                        live.iter()
                            .filter(|p| is_pod_ready(p))
                            .map(|p| p.name_any()),
                    );
                    // Live and Ready pods per owning ReplicaSet (uid).
                    let mut owned: std::collections::HashMap<String, (i32, i32)> =
                        Default::default();
                    for p in &live {
                        if let Some(o) = p
                            .owner_references()
                            .iter()
                            .find(|o| o.controller == Some(true))
                        {
                            let e = owned.entry(o.uid.clone()).or_default();
                            e.0 += 1;
                            e.1 += i32::from(is_pod_ready(p));
                        }
                    }
                    let owned_of = |rs: &ReplicaSet| {
                        owned
                            .get(rs.metadata.uid.as_deref().unwrap_or(""))
                            .copied()
                            .unwrap_or_default()
                    };
                    // Each ReplicaSet: size/status.replicas/status.available,
                    // then the live and Ready pods it owns as listed.
                    let rs_view = || -> Vec<String> {
                        rl.items
                            .iter()
                            .map(|rs| {
                                let st = rs.status.clone().unwrap_or_default();
                                let (l, r) = owned_of(rs);
                                format!(
                                    "{}={}/{}/{} pods {l}/{r}",
                                    rs.metadata.name.as_deref().unwrap_or(""),
                                    rs_replicas(rs),
                                    st.replicas,
                                    st.available_replicas.unwrap_or(0)
                                )
                            })
                            .collect()
                    };
                    let rs_total: i32 = rl.items.iter().map(rs_replicas).sum();
                    s.count += 1;
                    s.max_pods = s.max_pods.max(live.len());
                    s.min_ready = s.min_ready.min(ready);
                    s.lost_readiness = s.lost_readiness.max(lost);
                    // The bound is on ReplicaSet sizes (checked below), as
                    // upstream's: a new ReplicaSet may grow once an old one's
                    // size is lowered, before the ReplicaSet controller has
                    // deleted the pod. Live pods above the bound are a
                    // violation only when no ReplicaSet is still scaling
                    // down: none reports more replicas than its size, and
                    // none owns more live pods than its size (the
                    // ReplicaSet controller may not have counted them yet,
                    // as after an outage, when pods whose create answer was
                    // lost turn up).
                    let scaling_down = rl.items.iter().any(|rs| {
                        let size = rs_replicas(rs);
                        rs.status.as_ref().map_or(0, |st| st.replicas) > size
                            || owned_of(rs).0 > size
                    });
                    if live.len() > max_total && !scaling_down {
                        s.violations.push(format!(
                            "{} live pods > {max_total} (ReplicaSets size/replicas/available pods live/ready: {:?})",
                            live.len(),
                            rs_view()
                        ));
                    }
                    if ready + lost < min_ready {
                        s.violations.push(format!(
                            "{ready} ready pods (+{lost} that lost readiness) < {min_ready} (ReplicaSets size/replicas/available pods live/ready: {:?})",
                            rs_view()
                        ));
                    }
                    if rs_total as usize > max_total {
                        s.violations
                            .push(format!("ReplicaSet sizes sum to {rs_total} > {max_total}"));
                    }
                    // Pods of different templates present at the same time.
                    // A pod in a terminal phase no longer runs: a real
                    // kubelet marks a stopped pod Succeeded or Failed before
                    // it is removed, and Recreate (upstream's
                    // oldPodsRunning too) rightly goes on once it is.
                    let hashes: std::collections::BTreeSet<String> = pl
                        .items
                        .iter()
                        .filter(|p| {
                            !matches!(
                                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                                Some("Succeeded" | "Failed")
                            )
                        })
                        .filter_map(|p| p.labels().get("pod-template-hash").cloned())
                        .collect();
                    if hashes.len() > 1 {
                        s.overlaps.push(format!("{hashes:?}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            s
        });
        Sampler { stop, task }
    }

    pub async fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("sampler task")
    }
}

/// The kubectl to use: $KUBECTL, else the test environment's (1.36), else
/// the one on PATH (a kind setup).
pub fn kubectl_bin() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| {
        let out = std::process::Command::new(super::repo_root().join("hack/testenv"))
            .arg("bin-dir")
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let dir = String::from_utf8_lossy(&o.stdout).trim().to_string();
                let p = std::path::Path::new(&dir).join("kubectl");
                if p.exists() {
                    p.display().to_string()
                } else {
                    "kubectl".into()
                }
            }
            _ => "kubectl".into(),
        }
    })
}

/// Runs kubectl against the cluster under test and returns its stdout.
pub fn kubectl(args: &[&str]) -> String {
    let bin = kubectl_bin();
    let out = std::process::Command::new(&bin)
        .args(args)
        .env("KUBECONFIG", super::kubeconfig_path())
        .output()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
