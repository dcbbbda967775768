//! dlite-scheduler against a real API server. Each test runs its own
//! scheduler process under a name of its own (`dlite-scheduler-<ns>`), so
//! tests running in parallel never schedule each other's pods. Nodes a test
//! needs to shape (taints, labels, capacity) are fake kwok nodes it creates
//! under unique names and removes again; the shared `kwok-node-*` nodes are
//! never tainted or cordoned.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use dlite::scheduler::diagnosis;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use support::nodes::{is_ready_and_untainted, kwok_node};
use support::{Process, TestNamespace, http_get, metric, wait_for};

const BIND: Duration = Duration::from_secs(60);

fn scheduler_name(ns: &TestNamespace) -> String {
    format!("dlite-scheduler-{}", ns.name)
}

/// A dlite-scheduler answering to this test's scheduler name.
fn start_scheduler(ns: &TestNamespace, tag: &str, extra: &[&str]) -> Process {
    let name = scheduler_name(ns);
    // Endpoints off unless the test asks for one: tests run many schedulers
    // at once on one host (and a flag given twice is refused).
    let mut args = vec!["--scheduler-name", name.as_str()];
    for endpoint in ["--metrics-bind-address", "--health-probe-bind-address"] {
        if !extra.contains(&endpoint) {
            args.extend([endpoint, "0"]);
        }
    }
    args.extend_from_slice(extra);
    Process::start(
        env!("CARGO_BIN_EXE_dlite-scheduler"),
        &format!("{}-scheduler{tag}", ns.name),
        &args,
    )
}

/// Taint on every node a test creates: pods of other tests (which may land
/// anywhere) must stay off nodes that are deleted when the test ends, or
/// pod garbage collection would delete them under their tests.
const TEST_NODE_TAINT: &str = "dlite.dev/test-node";

/// The toleration a test's pods need for the nodes it created.
fn test_node_toleration(ns: &TestNamespace) -> Value {
    json!({"key": TEST_NODE_TAINT, "operator": "Equal", "value": ns.name, "effect": "NoSchedule"})
}

/// Fake kwok nodes a test created; deleted by `cleanup`, or when dropped
/// (a failed test must not leave odd nodes for the others).
struct TestNodes {
    client: Client,
    namespace: String,
    names: Vec<String>,
}

impl TestNodes {
    fn new(ns: &TestNamespace) -> Self {
        TestNodes {
            client: ns.client.clone(),
            namespace: ns.name.clone(),
            names: Vec::new(),
        }
    }

    /// Creates a node with `cpu` cores, `labels` and `taints` (taint JSON
    /// objects) besides the test-node taint, labelled so it can be told apart.
    async fn create(&mut self, name: &str, cpu: &str, labels: Value, taints: Value) {
        let mut taints = taints.as_array().cloned().unwrap_or_default();
        taints
            .push(json!({"key": TEST_NODE_TAINT, "value": self.namespace, "effect": "NoSchedule"}));
        let mut all_labels = json!({"testenv.dlite.dev/node": "scheduler-test"});
        if labels.as_object().is_some_and(|o| !o.is_empty()) {
            support::dl::merge(&mut all_labels, &labels);
        }
        let node = kwok_node(name, cpu, "32Gi", all_labels, Value::Array(taints));
        self.names.push(name.to_string());
        Api::<Node>::all(self.client.clone())
            .patch(
                name,
                &PatchParams::apply("dlite-scheduler-tests").force(),
                &Patch::Apply(&node),
            )
            .await
            .unwrap_or_else(|e| panic!("creating node {name}: {e}"));
    }

    /// Waits until kwok reports the nodes Ready and the node lifecycle
    /// controller has lifted its not-ready taint.
    async fn wait_ready(&self) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        for name in &self.names {
            wait_for(
                &format!("node {name} Ready without the not-ready taint"),
                Duration::from_secs(90),
                || async {
                    let n = nodes.get(name).await.map_err(|e| e.to_string())?;
                    if is_ready_and_untainted(&n) {
                        Ok(())
                    } else {
                        Err(format!(
                            "conditions {:?}, taints {:?}",
                            n.status.as_ref().and_then(|s| s.conditions.as_ref()),
                            n.spec.as_ref().and_then(|s| s.taints.as_ref())
                        ))
                    }
                },
            )
            .await;
        }
    }

    async fn cleanup(mut self) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        for name in std::mem::take(&mut self.names) {
            let _ = nodes.delete(&name, &DeleteParams::default()).await;
        }
    }
}

impl Drop for TestNodes {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.names);
        if names.is_empty() {
            return;
        }
        // Drop cannot await; a helper thread with its own runtime can.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let nodes: Api<Node> = Api::all(support::client().await);
                for name in names {
                    let _ = nodes.delete(&name, &DeleteParams::default()).await;
                }
            })
        })
        .join();
    }
}

/// A pod spec (JSON) naming `scheduler` with one container; `extra` is
/// merged into the spec.
fn pod_spec(scheduler: &str, cpu: &str, extra: Value) -> Value {
    let mut spec = json!({
        "schedulerName": scheduler,
        "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]
    });
    // `merge` replaces with an empty object, so only merge real overrides.
    if extra.as_object().is_some_and(|o| !o.is_empty()) {
        support::dl::merge(&mut spec, &extra);
    }
    spec
}

fn pod(name: &str, labels: Value, spec: Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": spec}))
        .unwrap()
}

fn deployment(name: &str, replicas: i32, spec: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec}
        }
    }))
    .unwrap()
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())
}

fn is_running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn pod_scheduled_condition(p: &Pod) -> Option<(String, String, String)> {
    let c = p
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")?;
    Some((
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

/// Waits until `count` pods labelled `app=<app>` are bound and Running.
async fn wait_running(pods: &Api<Pod>, app: &str, count: usize, timeout: Duration) -> Vec<Pod> {
    wait_for(
        &format!("{count} pods of {app} bound and Running"),
        timeout,
        || async {
            let list = pods
                .list(&ListParams::default().labels(&format!("app={app}")))
                .await
                .map_err(|e| e.to_string())?;
            let running = list
                .items
                .iter()
                .filter(|p| node_of(p).is_some() && is_running(p))
                .count();
            if running == count && list.items.len() == count {
                Ok(list.items)
            } else {
                Err(format!("{running} running of {} pods", list.items.len()))
            }
        },
    )
    .await
}

/// The events in the namespace, as (reason, note, reporting controller,
/// regarding pod uid).
async fn events(ns: &TestNamespace) -> Vec<Event> {
    let api: Api<Event> = ns.api();
    api.list(&ListParams::default()).await.unwrap().items
}

fn about(e: &Event, p: &Pod) -> bool {
    e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == p.metadata.uid.as_deref()
}

/// Every pod has exactly one `Scheduled` event from this test's scheduler,
/// naming the node it is bound to.
async fn assert_scheduled_once(ns: &TestNamespace, pods: &[Pod]) {
    let name = scheduler_name(ns);
    let all = wait_for(
        "a Scheduled event for every pod",
        Duration::from_secs(30),
        || async {
            let all = events(ns).await;
            let missing = pods
                .iter()
                .filter(|p| {
                    !all.iter()
                        .any(|e| about(e, p) && e.reason.as_deref() == Some("Scheduled"))
                })
                .count();
            if missing == 0 {
                Ok(all)
            } else {
                Err(format!("{missing} pods without one"))
            }
        },
    )
    .await;
    for p in pods {
        let scheduled: Vec<&Event> = all
            .iter()
            .filter(|e| about(e, p) && e.reason.as_deref() == Some("Scheduled"))
            .collect();
        assert_eq!(scheduled.len(), 1, "pod {}: {scheduled:?}", p.name_any());
        let e = scheduled[0];
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.reporting_controller.as_deref(), Some(name.as_str()));
        assert_eq!(e.series, None, "a pod is scheduled once: {e:?}");
        assert_eq!(
            e.note.as_deref(),
            Some(
                format!(
                    "Successfully assigned {}/{} to {}",
                    ns.name,
                    p.name_any(),
                    node_of(p).unwrap()
                )
                .as_str()
            )
        );
    }
}

#[tokio::test]
async fn a_deployment_naming_the_scheduler_gets_every_pod_bound_and_running() {
    let ns = TestNamespace::new("t-sched-deploy").await;
    let _scheduler = start_scheduler(&ns, "", &[]);
    let deployments: Api<Deployment> = ns.api();
    deployments
        .create(
            &PostParams::default(),
            &deployment("web", 6, pod_spec(&scheduler_name(&ns), "100m", json!({}))),
        )
        .await
        .unwrap();
    let pods = wait_running(&ns.api(), "web", 6, BIND).await;
    assert_scheduled_once(&ns, &pods).await;
    for p in &pods {
        let (status, _, _) = pod_scheduled_condition(p).expect("PodScheduled condition");
        assert_eq!(status, "True", "{}", p.name_any());
    }
    ns.cleanup().await;
}

#[tokio::test]
async fn node_selector_is_honoured() {
    let ns = TestNamespace::new("t-sched-selector").await;
    let mut nodes = TestNodes::new(&ns);
    let pool = format!("{}-pool", ns.name);
    for i in 0..2 {
        nodes
            .create(
                &format!("{}-n{i}", ns.name),
                "8",
                json!({"dlite.dev/pool": pool}),
                json!([]),
            )
            .await;
    }
    nodes.wait_ready().await;
    let _scheduler = start_scheduler(&ns, "", &[]);
    let spec = pod_spec(
        &scheduler_name(&ns),
        "100m",
        json!({"nodeSelector": {"dlite.dev/pool": pool}, "tolerations": [test_node_toleration(&ns)]}),
    );
    ns.api::<Deployment>()
        .create(&PostParams::default(), &deployment("sel", 6, spec))
        .await
        .unwrap();
    let pods = wait_running(&ns.api(), "sel", 6, BIND).await;
    let used: BTreeSet<String> = pods.iter().filter_map(node_of).collect();
    let ours: BTreeSet<String> = nodes.names.iter().cloned().collect();
    assert!(
        used.is_subset(&ours),
        "pods landed on {used:?}, only {ours:?} carry the label"
    );
    assert_eq!(
        used.len(),
        2,
        "LeastAllocated spreads six pods over both nodes: {used:?}"
    );
    ns.cleanup().await;
    nodes.cleanup().await;
}

#[tokio::test]
async fn taints_repel_pods_that_do_not_tolerate_them() {
    let ns = TestNamespace::new("t-sched-taint").await;
    let mut nodes = TestNodes::new(&ns);
    let node = format!("{}-tainted", ns.name);
    let key = format!("dlite.dev/{}", ns.name);
    nodes
        .create(
            &node,
            "8",
            json!({"dlite.dev/pool": ns.name}),
            json!([{"key": key, "value": "only", "effect": "NoSchedule"}]),
        )
        .await;
    nodes.wait_ready().await;
    let _scheduler = start_scheduler(&ns, "", &[]);
    let pods: Api<Pod> = ns.api();
    let select = json!({"nodeSelector": {"dlite.dev/pool": ns.name}, "tolerations": [test_node_toleration(&ns)]});
    pods.create(
        &PostParams::default(),
        &pod(
            "intolerant",
            json!({}),
            pod_spec(&scheduler_name(&ns), "100m", select.clone()),
        ),
    )
    .await
    .unwrap();
    let mut tolerant_spec = select.clone();
    tolerant_spec["tolerations"] = json!([test_node_toleration(&ns), {"key": key, "operator": "Equal", "value": "only", "effect": "NoSchedule"}]);
    pods.create(
        &PostParams::default(),
        &pod(
            "tolerant",
            json!({}),
            pod_spec(&scheduler_name(&ns), "100m", tolerant_spec),
        ),
    )
    .await
    .unwrap();

    let bound = wait_for("the tolerating pod bound", BIND, || async {
        let p = pods.get("tolerant").await.map_err(|e| e.to_string())?;
        node_of(&p).ok_or_else(|| format!("{:?}", pod_scheduled_condition(&p)))
    })
    .await;
    assert_eq!(bound, node);
    // v1.36's reason names no taint, so every tainted node of the cluster
    // (other tests' too) counts under it; the diagnosis annotation says
    // which plugin turned down this test's node.
    let (status, reason, message) = wait_for("the intolerant pod Unschedulable", BIND, || async {
        let p = pods.get("intolerant").await.map_err(|e| e.to_string())?;
        match pod_scheduled_condition(&p) {
            Some(c) if c.2.contains(" node(s) had untolerated taint(s)") => Ok(c),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "Unschedulable"),
        "{message}"
    );
    let d = diagnosis::from_annotations(
        pods.get("intolerant")
            .await
            .unwrap()
            .metadata
            .annotations
            .as_ref(),
    )
    .unwrap();
    let ours = d.nodes.iter().find(|n| n.node == node);
    assert_eq!(
        ours.map(|n| (n.plugin.as_str(), n.reasons.clone())),
        Some((
            "TaintToleration",
            vec!["node(s) had untolerated taint(s)".to_string()]
        )),
        "{d:?}"
    );
    assert!(node_of(&pods.get("intolerant").await.unwrap()).is_none());
    ns.cleanup().await;
    nodes.cleanup().await;
}

#[tokio::test]
async fn required_pod_anti_affinity_puts_one_pod_per_node() {
    let ns = TestNamespace::new("t-sched-anti").await;
    let mut nodes = TestNodes::new(&ns);
    for i in 0..3 {
        nodes
            .create(
                &format!("{}-n{i}", ns.name),
                "8",
                json!({"dlite.dev/pool": ns.name}),
                json!([]),
            )
            .await;
    }
    nodes.wait_ready().await;
    let _scheduler = start_scheduler(&ns, "", &[]);
    let spec = pod_spec(
        &scheduler_name(&ns),
        "100m",
        json!({
            "nodeSelector": {"dlite.dev/pool": ns.name},
            "tolerations": [test_node_toleration(&ns)],
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "solo"}}, "topologyKey": "kubernetes.io/hostname"}
            ]}}
        }),
    );
    let deployments: Api<Deployment> = ns.api();
    deployments
        .create(&PostParams::default(), &deployment("solo", 3, spec))
        .await
        .unwrap();
    let pods = wait_running(&ns.api(), "solo", 3, BIND).await;
    let used: BTreeSet<String> = pods.iter().filter_map(node_of).collect();
    assert_eq!(used.len(), 3, "one pod per node: {used:?}");

    // A fourth replica has nowhere to go.
    deployments
        .patch(
            "solo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    let pods_api: Api<Pod> = ns.api();
    let message = wait_for("the fourth replica Unschedulable", BIND, || async {
        let list = pods_api
            .list(&ListParams::default().labels("app=solo"))
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .iter()
            .filter(|p| node_of(p).is_none())
            .find_map(|p| {
                pod_scheduled_condition(p)
                    .filter(|c| c.1 == "Unschedulable")
                    .map(|c| c.2)
            })
            .ok_or_else(|| format!("{} pods, none reported Unschedulable yet", list.items.len()))
    })
    .await;
    assert!(
        message.contains("3 node(s) didn't match pod anti-affinity rules"),
        "{message}"
    );
    ns.cleanup().await;
    nodes.cleanup().await;
}

#[tokio::test]
async fn topology_spread_keeps_zones_within_max_skew() {
    let ns = TestNamespace::new("t-sched-spread").await;
    let mut nodes = TestNodes::new(&ns);
    let zones = ["a", "b", "c"];
    // Uneven: zone a has three nodes, b two, c one; spreading must still
    // count zones, not nodes.
    let mut count = 0;
    for (z, per_zone) in zones.iter().zip([3, 2, 1]) {
        for _ in 0..per_zone {
            let labels = json!({"dlite.dev/pool": ns.name, "topology.kubernetes.io/zone": format!("{}-{z}", ns.name)});
            nodes
                .create(&format!("{}-n{count}", ns.name), "8", labels, json!([]))
                .await;
            count += 1;
        }
    }
    nodes.wait_ready().await;
    let _scheduler = start_scheduler(&ns, "", &[]);
    let spec = pod_spec(
        &scheduler_name(&ns),
        "100m",
        json!({
            "nodeSelector": {"dlite.dev/pool": ns.name},
            "tolerations": [test_node_toleration(&ns)],
            "topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "spread"}}
            }]
        }),
    );
    ns.api::<Deployment>()
        .create(&PostParams::default(), &deployment("spread", 9, spec))
        .await
        .unwrap();
    let pods = wait_running(&ns.api(), "spread", 9, BIND).await;
    let node_zone: BTreeMap<String, String> = Api::<Node>::all(ns.client.clone())
        .list(&ListParams::default().labels(&format!("dlite.dev/pool={}", ns.name)))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| {
            (
                n.name_any(),
                n.labels()["topology.kubernetes.io/zone"].clone(),
            )
        })
        .collect();
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for p in &pods {
        *per_zone
            .entry(node_zone[&node_of(p).unwrap()].clone())
            .or_default() += 1;
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        [3, 3, 3],
        "{per_zone:?}"
    );
    ns.cleanup().await;
    nodes.cleanup().await;
}

#[tokio::test]
async fn a_pod_that_fits_nowhere_is_explained_and_bound_once_a_node_fits() {
    let ns = TestNamespace::new("t-sched-fit").await;
    let _scheduler = start_scheduler(&ns, "", &[]);
    let pods: Api<Pod> = ns.api();
    // Tolerating every taint (and so cordons) keeps the message down to
    // cpu on whatever nodes other tests have in the cluster meanwhile.
    let spec = pod_spec(
        &scheduler_name(&ns),
        "100",
        json!({"tolerations": [{"operator": "Exists"}]}),
    );
    pods.create(&PostParams::default(), &pod("big", json!({}), spec))
        .await
        .unwrap();

    // Other tests add and remove nodes; the scheduler retries on each, so
    // the message settles on the current count.
    let nodes_api: Api<Node> = Api::all(ns.client.clone());
    let (expected, pod) = wait_for(
        "PodScheduled=False with the exact message",
        BIND,
        || async {
            let n = nodes_api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            // 100 cpu is more than any node has: no eviction helps.
            let expected = format!(
                "0/{n} nodes are available: {n} Insufficient cpu. no new claims to deallocate, \
                 preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling."
            );
            let p = pods.get("big").await.map_err(|e| e.to_string())?;
            match pod_scheduled_condition(&p) {
                Some((s, r, m)) if s == "False" && r == "Unschedulable" && m == expected => {
                    Ok((expected, p))
                }
                other => Err(format!("expected {expected:?}, saw {other:?}")),
            }
        },
    )
    .await;
    let n: usize = expected
        .split('/')
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    wait_for(
        "a FailedScheduling event with that message",
        Duration::from_secs(30),
        || async {
            let all = events(&ns).await;
            let found = all.iter().any(|e| {
                about(e, &pod)
                    && e.reason.as_deref() == Some("FailedScheduling")
                    && e.type_.as_deref() == Some("Warning")
                    && e.note.as_deref() == Some(expected.as_str())
                    && e.reporting_controller.as_deref() == Some(scheduler_name(&ns).as_str())
            });
            if found {
                Ok(())
            } else {
                Err(format!(
                    "{:?}",
                    all.iter().map(|e| (&e.reason, &e.note)).collect::<Vec<_>>()
                ))
            }
        },
    )
    .await;
    let d = wait_for(
        "the diagnosis annotation of that attempt",
        Duration::from_secs(30),
        || async {
            let p = pods.get("big").await.map_err(|e| e.to_string())?;
            let d = diagnosis::from_annotations(p.metadata.annotations.as_ref())
                .map_err(|e| e.to_string())?;
            if d.message == expected {
                Ok(d)
            } else {
                Err(d.message)
            }
        },
    )
    .await;
    assert_eq!(d.num_all_nodes, n);
    assert_eq!(d.nodes.len() + d.omitted_nodes, n);
    for node in &d.nodes {
        assert_eq!(
            (node.plugin.as_str(), node.reasons.as_slice()),
            ("NodeResourcesFit", &["Insufficient cpu".to_string()][..])
        );
        assert!(
            node.unresolvable,
            "100 cpu exceeds the whole node: no eviction can help"
        );
    }
    let raw = pods.get("big").await.unwrap().annotations()[diagnosis::ANNOTATION].clone();
    assert!(raw.len() <= diagnosis::MAX_ANNOTATION_BYTES);
    assert!(diagnosis::render_table(&d).starts_with(&format!("{expected}\n\nNODE")));

    // A node big enough arrives (tainted like every test node, so no other
    // test's pods use it; this pod tolerates everything).
    let mut nodes = TestNodes::new(&ns);
    let big_node = format!("{}-big", ns.name);
    let added = Instant::now();
    nodes.create(&big_node, "128", json!({}), json!([])).await;
    let bound = wait_for(
        "the pod bound to the new node",
        Duration::from_secs(30),
        || async {
            let p = pods.get("big").await.map_err(|e| e.to_string())?;
            node_of(&p).ok_or_else(|| "not bound".to_string())
        },
    )
    .await;
    let took = added.elapsed();
    assert_eq!(bound, big_node);
    // The node event moves the pod back at once; at most its backoff (up
    // to 10 s after repeated attempts) delays it.
    assert!(
        took < Duration::from_secs(15),
        "bound {took:?} after the node was added"
    );
    println!("bound {took:?} after a fitting node was added");
    ns.cleanup().await;
    nodes.cleanup().await;
}

#[tokio::test]
async fn restarting_the_scheduler_loses_no_pod_and_binds_none_twice() {
    let ns = TestNamespace::new("t-sched-restart").await;
    // A low QPS keeps bindings trickling, so the kill lands mid-way.
    let mut first = start_scheduler(&ns, "-1", &["--kube-api-qps", "5", "--kube-api-burst", "1"]);
    let replicas = 40;
    ns.api::<Deployment>()
        .create(
            &PostParams::default(),
            &deployment(
                "restart",
                replicas,
                pod_spec(&scheduler_name(&ns), "10m", json!({})),
            ),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = ns.api();
    let bound_before = wait_for("some pods bound by the first scheduler", BIND, || async {
        let list = pods
            .list(&ListParams::default().labels("app=restart"))
            .await
            .map_err(|e| e.to_string())?;
        let bound = list.items.iter().filter(|p| node_of(p).is_some()).count();
        if bound >= 5 {
            Ok(bound)
        } else {
            Err(format!("{bound} bound"))
        }
    })
    .await;
    first.kill();
    let after_kill = pods
        .list(&ListParams::default().labels("app=restart"))
        .await
        .unwrap()
        .items;
    let bound_at_kill = after_kill.iter().filter(|p| node_of(p).is_some()).count();
    assert!(
        bound_at_kill < replicas as usize,
        "the kill must land mid-way ({bound_at_kill} bound)"
    );
    println!(
        "killed the first scheduler with {bound_at_kill} of {replicas} bound (saw {bound_before})"
    );

    let metrics_port = support::dl::free_port();
    let metrics_address = format!("127.0.0.1:{metrics_port}");
    let second = start_scheduler(&ns, "-2", &["--metrics-bind-address", &metrics_address]);
    let all = wait_running(&pods, "restart", replicas as usize, BIND).await;
    // A pod's binding is final: those bound before the kill kept their node.
    for p in &after_kill {
        if let Some(node) = node_of(p) {
            let now = all
                .iter()
                .find(|q| q.metadata.uid == p.metadata.uid)
                .expect("pod still there");
            assert_eq!(node_of(now), Some(node));
        }
    }
    // Scheduled events: never two for a pod, each naming the pod's node.
    // (Events the first scheduler had queued when it was killed are lost,
    // as with any crash.)
    let evs = events(&ns).await;
    let mut with_event = 0;
    for p in &all {
        let scheduled: Vec<&Event> = evs
            .iter()
            .filter(|e| about(e, p) && e.reason.as_deref() == Some("Scheduled"))
            .collect();
        assert!(
            scheduled.len() <= 1,
            "pod {} scheduled twice: {scheduled:?}",
            p.name_any()
        );
        if let Some(e) = scheduled.first() {
            with_event += 1;
            assert!(
                e.note
                    .as_deref()
                    .unwrap_or("")
                    .ends_with(&format!(" to {}", node_of(p).unwrap())),
                "{e:?}"
            );
            assert!(e.series.is_none());
        }
        let failed: Vec<&Event> = evs
            .iter()
            .filter(|e| about(e, p) && e.reason.as_deref() == Some("FailedScheduling"))
            .collect();
        assert!(failed.is_empty(), "pod {}: {failed:?}", p.name_any());
    }
    assert!(
        with_event >= replicas as usize - bound_at_kill,
        "{with_event} Scheduled events"
    );
    // The second scheduler bound exactly the pods that were still unbound:
    // it never posted a Binding for a pod the first one had bound (the API
    // server would refuse it, and the binding counter counts only successes,
    // so compare with what was left).
    let bindings = wait_for(
        "the second scheduler's binding count",
        Duration::from_secs(10),
        || async {
            let (_, body) = http_get(metrics_port, "/metrics")?;
            metric(&body, "dlite_scheduler_bindings_total")
                .ok_or_else(|| format!("no dlite_scheduler_bindings_total in:\n{body}"))
        },
    )
    .await;
    assert_eq!(
        bindings as usize,
        replicas as usize - bound_at_kill,
        "the second scheduler bound {bindings} pods; {} were unbound when the first was killed; log:\n{}",
        replicas as usize - bound_at_kill,
        second.log_tail(40)
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn pods_of_other_schedulers_are_never_touched() {
    let ns = TestNamespace::new("t-sched-other").await;
    let _scheduler = start_scheduler(&ns, "", &[]);
    let pods: Api<Pod> = ns.api();
    let other = format!("someone-else-{}", ns.name);
    // Fits anywhere, and would not if it were ours and asked for 100 cpu:
    // two pods of the other scheduler, one schedulable, one not.
    pods.create(
        &PostParams::default(),
        &pod("theirs", json!({}), pod_spec(&other, "10m", json!({}))),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("theirs-big", json!({}), pod_spec(&other, "100", json!({}))),
    )
    .await
    .unwrap();
    // Gated pods of ours are held back too; this one proves the scheduler
    // is working meanwhile once its gate goes.
    pods.create(
        &PostParams::default(),
        &pod(
            "ours",
            json!({}),
            pod_spec(
                &scheduler_name(&ns),
                "10m",
                json!({"schedulingGates": [{"name": "dlite.dev/hold"}]}),
            ),
        ),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod(
            "ours-2",
            json!({}),
            pod_spec(&scheduler_name(&ns), "10m", json!({})),
        ),
    )
    .await
    .unwrap();
    wait_for("our ungated pod bound", BIND, || async {
        let p = pods.get("ours-2").await.map_err(|e| e.to_string())?;
        node_of(&p).ok_or_else(|| "not bound".to_string())
    })
    .await;
    let gated = pods.get("ours").await.unwrap();
    assert!(node_of(&gated).is_none(), "a gated pod is not scheduled");
    assert!(
        events(&ns).await.iter().all(|e| !about(e, &gated)),
        "nor attempted"
    );
    pods.patch(
        "ours",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"schedulingGates": null}})),
    )
    .await
    .unwrap();
    wait_for("our pod bound once its gate is gone", BIND, || async {
        let p = pods.get("ours").await.map_err(|e| e.to_string())?;
        node_of(&p).ok_or_else(|| "not bound".to_string())
    })
    .await;

    for name in ["theirs", "theirs-big"] {
        let p = pods.get(name).await.unwrap();
        assert!(node_of(&p).is_none(), "{name} was bound");
        assert!(
            pod_scheduled_condition(&p).is_none(),
            "{name} got a condition: {:?}",
            p.status
        );
        assert!(
            !p.annotations().contains_key(diagnosis::ANNOTATION),
            "{name} was annotated"
        );
        let about_it: Vec<Event> = events(&ns)
            .await
            .into_iter()
            .filter(|e| about(e, &p))
            .collect();
        assert!(about_it.is_empty(), "{name}: {about_it:?}");
    }
    ns.cleanup().await;
}
