//! dlite-scheduler against kube-scheduler v1.36.3, the oracle: the same
//! pending pod, on the same nodes with the same pods already running, is
//! sent to kube-scheduler and then to dlite-scheduler (the first one's pod
//! deleted in between), and what a user sees is compared: the node it was
//! bound to, or the `PodScheduled=False` condition (reason and message) and
//! the FailedScheduling event.
//!
//! "0/N nodes are available" counts every node of the cluster, so the suite
//! runs on a control plane of its own (hack/testenv, no node but the ones a
//! scenario makes), one scenario at a time. Against a cluster the suite
//! does not own (KUBECONFIG set and no testenv binaries built) it skips,
//! saying why.
//!
//! A difference fails the suite unless it is on [`KNOWN`] with its reason
//! (and a known difference that has gone away fails it too, so the list
//! stays true).

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use support::Process;
use support::nodes::{has_taint, is_ready, kwok_node};
use support::plane::{ControlPlane, skip_reason};

const DLITE: &str = "dlite-scheduler";
const KUBE: &str = "default-scheduler";
const WAIT: Duration = Duration::from_secs(30);

/// Differences known and not yet fixed: (scenario, what differs, why).
/// Each is a part of issue 10 still open.
const KNOWN: &[(&str, Aspect, &str)] = &[(
    "required-node-affinity-match-fields",
    Aspect::Filter,
    "no NodeAffinity PreFilter: upstream narrows the nodes to those matchFields names and \
         counts the rest as `node(s) didn't satisfy plugin(s) [NodeAffinity]`",
)];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aspect {
    /// Which node, or bound against unschedulable.
    Placement,
    /// The condition's reason, or the message up to the PostFilter part.
    Filter,
    /// What PostFilter plugins (DefaultPreemption, DynamicResources) add.
    PostFilter,
    /// The FailedScheduling event's note against the condition's message.
    Event,
}

// ---------------------------------------------------------------- scenarios

struct Scenario {
    name: &'static str,
    nodes: Vec<Node>,
    /// Pods already running: (node, pod JSON without nodeName).
    running: Vec<(&'static str, Value)>,
    /// The pod to schedule (metadata and spec; no schedulerName).
    pod: Value,
    /// PodDisruptionBudgets (metadata and spec) in the scenario's namespace.
    pdbs: Vec<Value>,
}

fn node(name: &str, cpu: &str) -> Node {
    kwok_node(
        name,
        cpu,
        "16Gi",
        json!({"topology.kubernetes.io/zone": "zone-a"}),
        json!([]),
    )
}

fn with(mut n: Node, patch: Value) -> Node {
    let mut v = serde_json::to_value(&n).unwrap();
    support::dl::merge(&mut v, &patch);
    n = serde_json::from_value(v).unwrap();
    n
}

fn tainted(n: Node, key: &str, value: &str, effect: &str) -> Node {
    let mut taints = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    taints.push(
        serde_json::from_value(json!({"key": key, "value": value, "effect": effect})).unwrap(),
    );
    let mut n = n;
    n.spec.get_or_insert_default().taints = Some(taints);
    n
}

fn cordoned(n: Node) -> Node {
    with(n, json!({"spec": {"unschedulable": true}}))
}

fn labelled(n: Node, labels: Value) -> Node {
    with(n, json!({"metadata": {"labels": labels}}))
}

fn max_pods(n: Node, pods: &str) -> Node {
    with(
        n,
        json!({"status": {"allocatable": {"pods": pods}, "capacity": {"pods": pods}}}),
    )
}

/// A pod with one container requesting `cpu`; `spec` is merged in.
fn pod(labels: Value, cpu: &str, spec: Value) -> Value {
    let mut p = json!({
        "metadata": {"labels": labels},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]
        }
    });
    // (merge replaces with an empty object: nothing to merge, no merge)
    if spec.as_object().is_some_and(|o| !o.is_empty()) {
        support::dl::merge(&mut p["spec"], &spec);
    }
    p
}

/// A pod of PriorityClass `class` requesting `cpu`.
fn of_class(labels: Value, cpu: &str, class: &str) -> Value {
    pod(labels, cpu, json!({"priorityClassName": class}))
}

fn scenarios() -> Vec<Scenario> {
    let small = |name| node(name, "2");
    vec![
        Scenario {
            name: "cpu-beyond-every-node",
            pdbs: vec![],
            nodes: vec![small("n1"), small("n2"), small("n3")],
            running: vec![],
            pod: pod(json!({}), "100", json!({})),
        },
        Scenario {
            // The example: a taint, a cordon, and no room.
            name: "taint-cordon-no-room",
            pdbs: vec![],
            nodes: vec![
                tainted(node("n1", "200"), "k", "v", "NoSchedule"),
                cordoned(node("n2", "200")),
                small("n3"),
                small("n4"),
                small("n5"),
            ],
            running: vec![],
            pod: pod(json!({}), "100", json!({})),
        },
        Scenario {
            name: "cpu-taken-by-equal-priority-pods",
            pdbs: vec![],
            nodes: vec![node("n1", "4"), node("n2", "4")],
            running: vec![
                ("n1", pod(json!({"app": "busy"}), "3", json!({}))),
                ("n2", pod(json!({"app": "busy"}), "3", json!({}))),
            ],
            pod: pod(json!({}), "2", json!({})),
        },
        Scenario {
            name: "no-execute-taint",
            pdbs: vec![],
            nodes: vec![tainted(node("n1", "4"), "dedicated", "db", "NoExecute")],
            running: vec![],
            pod: pod(json!({}), "1", json!({})),
        },
        Scenario {
            name: "tolerated-taint-binds",
            pdbs: vec![],
            nodes: vec![tainted(node("n1", "4"), "dedicated", "db", "NoSchedule")],
            running: vec![],
            pod: pod(
                json!({}),
                "1",
                json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}),
            ),
        },
        Scenario {
            name: "node-selector-matches-nothing",
            pdbs: vec![],
            nodes: vec![node("n1", "4"), node("n2", "4")],
            running: vec![],
            pod: pod(json!({}), "1", json!({"nodeSelector": {"disk": "ssd"}})),
        },
        Scenario {
            name: "required-node-affinity-match-fields",
            pdbs: vec![],
            nodes: vec![node("n1", "4"), node("n2", "4"), node("n3", "4")],
            running: vec![],
            pod: pod(
                json!({}),
                "1",
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}]}]}}}}),
            ),
        },
        Scenario {
            name: "host-port-taken",
            pdbs: vec![],
            nodes: vec![node("n1", "4")],
            running: vec![(
                "n1",
                pod(
                    json!({"app": "web"}),
                    "100m",
                    json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                        "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
                ),
            )],
            pod: pod(
                json!({}),
                "100m",
                json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                    "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
            ),
        },
        Scenario {
            name: "too-many-pods",
            pdbs: vec![],
            nodes: vec![max_pods(node("n1", "4"), "1")],
            running: vec![("n1", pod(json!({"app": "one"}), "100m", json!({})))],
            pod: pod(json!({}), "100m", json!({})),
        },
        Scenario {
            name: "pod-anti-affinity-to-running-pod",
            pdbs: vec![],
            nodes: vec![
                labelled(node("n1", "4"), json!({"kubernetes.io/hostname": "n1"})),
                labelled(node("n2", "4"), json!({"kubernetes.io/hostname": "n2"})),
            ],
            running: vec![
                ("n1", pod(json!({"app": "db"}), "100m", json!({}))),
                ("n2", pod(json!({"app": "db"}), "100m", json!({}))),
            ],
            pod: pod(
                json!({"app": "db"}),
                "100m",
                json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}}),
            ),
        },
        Scenario {
            name: "least-allocated-picks-the-emptiest",
            pdbs: vec![],
            nodes: vec![node("n1", "8"), node("n2", "8"), node("n3", "8")],
            running: vec![
                ("n1", pod(json!({"app": "a"}), "4", json!({}))),
                ("n2", pod(json!({"app": "b"}), "2", json!({}))),
            ],
            pod: pod(json!({}), "1", json!({})),
        },
        Scenario {
            name: "prefer-no-schedule-taint-avoided",
            pdbs: vec![],
            nodes: vec![
                tainted(node("n1", "4"), "spot", "true", "PreferNoSchedule"),
                node("n2", "4"),
            ],
            running: vec![],
            pod: pod(json!({}), "1", json!({})),
        },
        Scenario {
            name: "preferred-node-affinity",
            pdbs: vec![],
            nodes: vec![
                node("n1", "4"),
                labelled(node("n2", "4"), json!({"disk": "ssd"})),
                node("n3", "4"),
            ],
            running: vec![],
            pod: pod(
                json!({}),
                "1",
                json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}}),
            ),
        },
        Scenario {
            // Equal cpu headroom; n2 keeps cpu and memory in balance.
            name: "balanced-allocation",
            pdbs: vec![],
            nodes: vec![node("n1", "4"), node("n2", "4")],
            running: vec![
                (
                    "n1",
                    pod(
                        json!({"app": "a"}),
                        "2",
                        json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}]}),
                    ),
                ),
                (
                    "n2",
                    pod(
                        json!({"app": "b"}),
                        "2",
                        json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "2", "memory": "8Gi"}}}]}),
                    ),
                ),
            ],
            pod: pod(
                json!({}),
                "1",
                json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "1", "memory": "4Gi"}}}]}),
            ),
        },
        Scenario {
            name: "topology-spread-picks-the-emptier-zone",
            pdbs: vec![],
            nodes: vec![
                labelled(
                    node("n1", "8"),
                    json!({"topology.kubernetes.io/zone": "zone-a"}),
                ),
                labelled(
                    node("n2", "8"),
                    json!({"topology.kubernetes.io/zone": "zone-b"}),
                ),
            ],
            running: vec![
                ("n1", pod(json!({"app": "s"}), "100m", json!({}))),
                ("n1", pod(json!({"app": "s"}), "100m", json!({}))),
                ("n2", pod(json!({"app": "s"}), "100m", json!({}))),
            ],
            pod: pod(
                json!({"app": "s"}),
                "100m",
                json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "s"}}}]}),
            ),
        },
        Scenario {
            name: "preempts-a-lower-priority-pod",
            pdbs: vec![],
            nodes: vec![node("n1", "4")],
            running: vec![(
                "n1",
                of_class(json!({"app": "low"}), "3", "conformance-low"),
            )],
            pod: of_class(json!({}), "2", "conformance-high"),
        },
        Scenario {
            // Two ways to make room: evicting the priority-10 pod on n1
            // would break its budget; the priority-20 pod on n2 has none.
            name: "preemption-respects-a-disruption-budget",
            pdbs: vec![json!({"metadata": {"name": "db"},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}})],
            nodes: vec![node("n1", "4"), node("n2", "4")],
            running: vec![
                ("n1", of_class(json!({"app": "db"}), "3", "conformance-low")),
                (
                    "n2",
                    of_class(json!({"app": "web"}), "3", "conformance-mid"),
                ),
            ],
            pod: of_class(json!({}), "2", "conformance-high"),
        },
        Scenario {
            // The fewest victims of the lowest priority: n2's one pod.
            name: "preemption-picks-the-cheapest-node",
            pdbs: vec![],
            nodes: vec![node("n1", "4"), node("n2", "4")],
            running: vec![
                ("n1", of_class(json!({"app": "a"}), "2", "conformance-low")),
                ("n1", of_class(json!({"app": "b"}), "2", "conformance-low")),
                ("n2", of_class(json!({"app": "c"}), "3", "conformance-low")),
            ],
            pod: of_class(json!({}), "3", "conformance-high"),
        },
        Scenario {
            name: "preemption-policy-never",
            pdbs: vec![],
            nodes: vec![node("n1", "4")],
            running: vec![("n1", pod(json!({"app": "busy"}), "3", json!({})))],
            pod: of_class(json!({}), "2", "conformance-never"),
        },
    ]
}

// ---------------------------------------------------------------- outcomes

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Bound(String),
    Unschedulable {
        reason: String,
        message: String,
        /// The FailedScheduling event's note, if one came within the wait.
        event: Option<String>,
    },
}

impl Outcome {
    fn short(&self) -> String {
        match self {
            Outcome::Bound(n) => format!("bound to {n}"),
            Outcome::Unschedulable {
                reason, message, ..
            } => format!("{reason}: {message}"),
        }
    }
}

/// The message as (filter part, PostFilter part): upstream's FitError puts
/// the PostFilter plugins' message after the filters' sentence.
fn split_post_filter(message: &str) -> (&str, &str) {
    for marker in [". no new claims to deallocate", ". preemption: "] {
        if let Some(i) = message.find(marker) {
            return (&message[..=i], message[i + 2..].trim());
        }
    }
    (message, "")
}

/// The aspects in which two outcomes differ.
fn differences(kube: &Outcome, dlite: &Outcome) -> Vec<Aspect> {
    match (kube, dlite) {
        (Outcome::Bound(a), Outcome::Bound(b)) if a == b => vec![],
        (
            Outcome::Unschedulable {
                reason: r1,
                message: m1,
                event: e1,
            },
            Outcome::Unschedulable {
                reason: r2,
                message: m2,
                event: e2,
            },
        ) => {
            let (f1, p1) = split_post_filter(m1);
            let (f2, p2) = split_post_filter(m2);
            let mut d = vec![];
            if r1 != r2 || f1 != f2 {
                d.push(Aspect::Filter);
            }
            if p1 != p2 {
                d.push(Aspect::PostFilter);
            }
            // Each side's event says what its condition says (cut to
            // 1024 bytes as the events API requires).
            let note_ok = |m: &str, e: &Option<String>| {
                e.as_deref().is_some_and(|e| {
                    e == m
                        || (m.len() > 1024
                            && e.ends_with(" ...")
                            && m.starts_with(&e[..e.len() - 4]))
                })
            };
            if note_ok(m1, e1) != note_ok(m2, e2) {
                d.push(Aspect::Event);
            }
            d
        }
        _ => vec![Aspect::Placement],
    }
}

// ---------------------------------------------------------------- running

async fn wait<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    support::wait_for(what, WAIT, &mut probe).await
}

async fn create_nodes(client: &Client, nodes: &[Node]) {
    let api: Api<Node> = Api::all(client.clone());
    for n in nodes {
        api.create(&PostParams::default(), n)
            .await
            .unwrap_or_else(|e| panic!("creating node {}: {e}", n.name_any()));
    }
    for n in nodes {
        let name = n.name_any();
        wait(
            &format!("node {name} Ready, its not-ready taint lifted"),
            || async {
                let n = api.get(&name).await.map_err(|e| e.to_string())?;
                let ready = is_ready(&n);
                let not_ready_taint = has_taint(&n, |k| k == "node.kubernetes.io/not-ready");
                // A cordoned node also gets the unschedulable taint; both
                // schedulers stop at NodeUnschedulable before looking at it.
                if ready && !not_ready_taint {
                    Ok(())
                } else {
                    Err(format!("{:?}", n.spec.and_then(|s| s.taints)))
                }
            },
        )
        .await;
    }
}

async fn delete_all_nodes(client: &Client) {
    let api: Api<Node> = Api::all(client.clone());
    for n in api.list(&ListParams::default()).await.unwrap().items {
        let _ = api.delete(&n.name_any(), &DeleteParams::default()).await;
    }
    wait("no node left", || async {
        let left = api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        if left.items.is_empty() {
            Ok(())
        } else {
            Err(format!("{} left", left.items.len()))
        }
    })
    .await;
}

fn pod_object(name: &str, mut p: Value, scheduler: Option<&str>, node: Option<&str>) -> Pod {
    p["apiVersion"] = json!("v1");
    p["kind"] = json!("Pod");
    p["metadata"]["name"] = json!(name);
    if let Some(s) = scheduler {
        p["spec"]["schedulerName"] = json!(s);
    }
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    serde_json::from_value(p).unwrap()
}

/// Sends the scenario's pod to `scheduler`; what became of it. The pod is
/// deleted (and gone) before this returns.
async fn attempt(client: &Client, ns: &str, pod: &Value, scheduler: &str) -> Outcome {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let created = pods
        .create(
            &PostParams::default(),
            &pod_object("p", pod.clone(), Some(scheduler), None),
        )
        .await
        .unwrap();
    let uid = created.uid().unwrap();
    let outcome = wait(&format!("{scheduler} to bind p or say why not"), || async {
        let p = pods.get("p").await.map_err(|e| e.to_string())?;
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            return Ok(Outcome::Bound(n));
        }
        let cond = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled")
            .cloned();
        let nominated = p
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        match cond {
            // Nominated after preempting: what a user sees is the binding
            // that follows once the victims are gone.
            Some(_) if nominated => Err("nominated; waiting for the binding".to_string()),
            Some(c) if c.status == "False" => Ok(Outcome::Unschedulable {
                reason: c.reason.unwrap_or_default(),
                message: c.message.unwrap_or_default(),
                event: None,
            }),
            other => Err(format!("PodScheduled {other:?}")),
        }
    })
    .await;
    let outcome = match outcome {
        Outcome::Unschedulable {
            reason, message, ..
        } => {
            let events: Api<Event> = Api::namespaced(client.clone(), ns);
            let start = Instant::now();
            let event = loop {
                let found = events
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|e| {
                        e.reason.as_deref() == Some("FailedScheduling")
                            && e.regarding.as_ref().and_then(|r| r.uid.as_deref())
                                == Some(uid.as_str())
                    });
                if let Some(e) = found {
                    break e.note;
                }
                if start.elapsed() > Duration::from_secs(15) {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            Outcome::Unschedulable {
                reason,
                message,
                event,
            }
        }
        bound => bound,
    };
    pods.delete("p", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait("p gone", || async {
        match pods.get_opt("p").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(p) => Err(format!("still there: {:?}", p.metadata.deletion_timestamp)),
        }
    })
    .await;
    outcome
}

/// A binding that took evictions names them: which pods a preemption
/// chose is part of what a user sees.
async fn with_evictions(outcome: Outcome, pods: &Api<Pod>, running: usize) -> Outcome {
    let Outcome::Bound(node) = outcome else {
        return outcome;
    };
    let mut evicted = Vec::new();
    for i in 0..running {
        let name = format!("running-{i}");
        let gone = pods
            .get_opt(&name)
            .await
            .unwrap()
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some());
        if gone {
            evicted.push(name);
        }
    }
    if evicted.is_empty() {
        Outcome::Bound(node)
    } else {
        Outcome::Bound(format!("{node}, evicting {}", evicted.join(" ")))
    }
}

async fn run_scenario(client: &Client, index: usize, s: &Scenario) -> (Outcome, Outcome) {
    delete_all_nodes(client).await;
    let ns = format!("sc-{index:02}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    // Node names of their own: pods of the scenario before, still being
    // deleted with their namespace, name their nodes, and both schedulers
    // would count them on a new node of the same name.
    let node_name = |n: &str| format!("s{index:02}-{n}");
    let nodes: Vec<Node> = s
        .nodes
        .iter()
        .map(|n| {
            let mut n = n.clone();
            n.metadata.name = Some(node_name(&n.name_any()));
            n
        })
        .collect();
    create_nodes(client, &nodes).await;
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    for b in &s.pdbs {
        budgets
            .create(
                &PostParams::default(),
                &serde_json::from_value(b.clone()).unwrap(),
            )
            .await
            .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for (i, (node, p)) in s.running.iter().enumerate() {
        let name = format!("running-{i}");
        pods.create(
            &PostParams::default(),
            &pod_object(&name, p.clone(), None, Some(&node_name(node))),
        )
        .await
        .unwrap();
        // Running: both schedulers' caches have had the time kwok took.
        wait(&format!("{name} Running on {node}"), || async {
            let p = pods.get(&name).await.map_err(|e| e.to_string())?;
            let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
            if phase == "Running" {
                Ok(())
            } else {
                Err(phase)
            }
        })
        .await;
    }
    // The disruption controller has counted the running pods: both
    // schedulers read the same budgets.
    for b in &s.pdbs {
        let name = b["metadata"]["name"].as_str().unwrap().to_string();
        wait(&format!("PodDisruptionBudget {name} counted"), || async {
            let b = budgets.get(&name).await.map_err(|e| e.to_string())?;
            match b.status {
                Some(st) if st.expected_pods.unwrap_or(0) > 0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
    let kube = attempt(client, &ns, &s.pod, KUBE).await;
    let kube = with_evictions(kube, &pods, s.running.len()).await;
    // kube-scheduler may have preempted some: the same pods again.
    for (i, (node, p)) in s.running.iter().enumerate() {
        let name = format!("running-{i}");
        wait(&format!("{name} gone or Running"), || async {
            match pods.get_opt(&name).await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(p) if p.metadata.deletion_timestamp.is_none() => Ok(()),
                Some(_) => Err("terminating".to_string()),
            }
        })
        .await;
        if pods.get_opt(&name).await.unwrap().is_none() {
            pods.create(
                &PostParams::default(),
                &pod_object(&name, p.clone(), None, Some(&node_name(node))),
            )
            .await
            .unwrap();
            wait(&format!("{name} Running again"), || async {
                let p = pods.get(&name).await.map_err(|e| e.to_string())?;
                match p.status.and_then(|s| s.phase).as_deref() {
                    Some("Running") => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
        }
    }
    let dlite = attempt(client, &ns, &s.pod, DLITE).await;
    let dlite = with_evictions(dlite, &pods, s.running.len()).await;
    let prefix = node_name("");
    let strip = |o: Outcome| match o {
        Outcome::Bound(n) => Outcome::Bound(n.trim_start_matches(&prefix).to_string()),
        other => other,
    };
    let (kube, dlite) = (strip(kube), strip(dlite));
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    (kube, dlite)
}

#[tokio::test]
async fn dlite_scheduler_decides_and_explains_as_kube_scheduler_does() {
    if let Some(why) =
        skip_reason("the scheduler conformance suite counts every node of the cluster")
    {
        eprintln!("{why}");
        return;
    }
    let cp = ControlPlane::up("scheduler-conformance", "main", 0, vec![]);
    let client = cp.client().await;
    let priority_classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> =
        Api::all(client.clone());
    for (name, value, policy) in [
        ("conformance-never", 1000, "Never"),
        ("conformance-high", 1000, "PreemptLowerPriority"),
        ("conformance-mid", 20, "PreemptLowerPriority"),
        ("conformance-low", 10, "PreemptLowerPriority"),
    ] {
        priority_classes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name},
                    "value": value, "preemptionPolicy": policy}))
                .unwrap(),
            )
            .await
            .unwrap();
    }
    let _scheduler = Process::start_against(
        env!("CARGO_BIN_EXE_dlite-scheduler"),
        "scheduler-conformance-dlite-scheduler",
        &[
            "--scheduler-name",
            DLITE,
            "--metrics-bind-address",
            "0",
            "--health-probe-bind-address",
            "0",
        ],
        &cp.kubeconfig,
    );

    let all = scenarios();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (i, s) in all.iter().enumerate() {
        let (kube, dlite) = run_scenario(&client, i, s).await;
        let diffs = differences(&kube, &dlite);
        let known: Vec<Aspect> = KNOWN
            .iter()
            .filter(|(name, _, _)| *name == s.name)
            .map(|(_, a, _)| *a)
            .collect();
        let verdict = if diffs.is_empty() && known.is_empty() {
            "same".to_string()
        } else if !diffs.is_empty() && diffs.iter().all(|d| known.contains(d)) {
            format!("known: {diffs:?}")
        } else if diffs.is_empty() {
            failures.push(format!(
                "{}: listed as a known difference ({known:?}) but the same now: take it off KNOWN",
                s.name
            ));
            "same, but listed as known".to_string()
        } else {
            failures.push(format!(
                "{}: {diffs:?}\n  kube-scheduler:  {kube:?}\n  dlite-scheduler: {dlite:?}",
                s.name
            ));
            format!("DIFFERS: {diffs:?}")
        };
        rows.push((s.name, kube, dlite, verdict));
    }

    println!("\n| scenario | kube-scheduler v1.36.3 | dlite-scheduler | verdict |");
    println!("|---|---|---|---|");
    for (name, kube, dlite, verdict) in &rows {
        let cell = |o: &Outcome| o.short().replace('|', "\\|");
        println!("| {name} | {} | {} | {verdict} |", cell(kube), cell(dlite));
    }
    let same = rows.iter().filter(|r| r.3 == "same").count();
    println!(
        "\n{} scenarios: {same} the same, {} known differences, {} failing",
        rows.len(),
        rows.iter().filter(|r| r.3.starts_with("known")).count(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
