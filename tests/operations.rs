//! Running the controller as operators do: two replicas with leader
//! election (exactly one acts; the standby takes over within the lease
//! duration and a rollout in progress completes within its bounds),
//! Prometheus metrics, and readiness that waits for the caches.

mod support;

use std::time::{Duration, Instant};

use dlite::api::DeploymentLite;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::dl::{
    Sampler, free_port, install_crd, manifest, replica_sets, rs_replicas, set_image,
    start_controller_with, wait_complete,
};
use support::{Process, TestNamespace, http_get, metric, wait_for};

const ROLLOUT: Duration = Duration::from_secs(90);
const LEASE_SECONDS: u64 = 6;

/// One replica of a component running with leader election.
struct Replica {
    process: Process,
    identity: String,
    metrics: u16,
    health: u16,
    /// The gauge that is 1 while it leads.
    leader_series: &'static str,
}

fn start_replica(ns: &TestNamespace, identity: &str) -> Replica {
    let (metrics, health) = (free_port(), free_port());
    let m = format!("127.0.0.1:{metrics}");
    let h = format!("127.0.0.1:{health}");
    let lease = LEASE_SECONDS.to_string();
    let process = start_controller_with(
        ns,
        &format!("-{identity}"),
        &[
            "--leader-elect=true",
            "--leader-election-namespace",
            &ns.name,
            "--lease-duration-seconds",
            &lease,
            "--identity",
            identity,
            "--metrics-bind-address",
            &m,
            "--health-probe-bind-address",
            &h,
        ],
    );
    Replica {
        process,
        identity: identity.into(),
        metrics,
        health,
        leader_series: "dlite_controller_leader",
    }
}

fn leading(r: &Replica) -> Option<bool> {
    let (_, body) = http_get(r.metrics, "/metrics").ok()?;
    metric(&body, r.leader_series).map(|v| v == 1.0)
}

/// Waits until exactly one of the two leads, by its metrics and by the
/// Lease's holder; returns (leader, standby).
async fn elect(leases: &Api<Lease>, lease: &str, a: Replica, b: Replica) -> (Replica, Replica) {
    let first = wait_for("exactly one leader", Duration::from_secs(30), || async {
        let holder = leases
            .get_opt(lease)
            .await
            .map_err(|e| e.to_string())?
            .and_then(|l| l.spec?.holder_identity)
            .ok_or("no holder yet")?;
        match (leading(&a), leading(&b)) {
            (Some(true), Some(false)) if holder == a.identity => Ok('a'),
            (Some(false), Some(true)) if holder == b.identity => Ok('b'),
            seen => Err(format!("holder {holder}, leading {seen:?}")),
        }
    })
    .await;
    if first == 'a' { (a, b) } else { (b, a) }
}

/// Waits for the standby to lead after the leader was SIGKILLed at
/// `killed`; the handover must take no longer than the lease duration (plus
/// the watchdog's slack), and the Lease must name the standby.
async fn wait_take_over(leases: &Api<Lease>, lease: &str, standby: &Replica, killed: Instant) {
    wait_for(
        "the standby to take over",
        Duration::from_secs(LEASE_SECONDS * 3),
        || async {
            match leading(standby) {
                Some(true) => Ok(()),
                seen => Err(format!("standby leading: {seen:?}")),
            }
        },
    )
    .await;
    let handover = killed.elapsed();
    assert!(
        handover <= Duration::from_secs(LEASE_SECONDS + 3),
        "handover took {handover:?}, lease duration {LEASE_SECONDS}s"
    );
    let holder = leases
        .get(lease)
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(holder.as_deref(), Some(standby.identity.as_str()));
}

#[tokio::test]
async fn one_of_two_controllers_leads_and_a_standby_takes_over_mid_rollout() {
    let ns = TestNamespace::new("t-ha").await;
    install_crd(&ns.client).await;
    let a = start_replica(&ns, "ctrl-a");
    let b = start_replica(&ns, "ctrl-b");
    let leases: Api<Lease> = ns.api();

    let (mut leader, standby) = elect(&leases, "dlite-controller", a, b).await;

    // Only the leader reconciles.
    let api: Api<DeploymentLite> = ns.api();
    let spec = json!({
        "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
        "template": {"metadata": {"annotations": {"testenv.dlite.dev/ready-after": "1"}}}
    });
    api.create(&PostParams::default(), &manifest("ha", 6, "app:v1", spec))
        .await
        .unwrap();
    wait_complete(&api, "ha", ROLLOUT).await;
    let (_, standby_metrics) = http_get(standby.metrics, "/metrics").unwrap();
    assert!(
        !standby_metrics.contains("dlite_controller_reconciles_total{"),
        "the standby reconciled while not leading:\n{standby_metrics}"
    );
    let (code, ready) = http_get(standby.health, "/readyz").unwrap();
    assert_eq!(code, 200, "a healthy standby is ready: {ready}");

    // Kill the leader in the middle of a rollout.
    let sampler = Sampler::start(&ns, "ha", 7, 5);
    set_image(&api, "ha", "app:v2").await;
    wait_for("the rollout to be under way", ROLLOUT, || async {
        let rses = replica_sets(&ns, "ha").await;
        let new = rses.last().map(rs_replicas).unwrap_or(0);
        if rses.len() == 2 && new >= 2 {
            Ok(())
        } else {
            Err(format!("{} ReplicaSets, new at {new}", rses.len()))
        }
    })
    .await;
    leader.process.kill();
    wait_take_over(&leases, "dlite-controller", &standby, Instant::now()).await;

    let dl = wait_complete(&api, "ha", ROLLOUT).await;
    let samples = sampler.finish().await;
    assert!(
        samples.violations.is_empty(),
        "bounds broken across the handover: {:?}",
        samples.violations
    );
    assert_eq!(dl.status.unwrap().updated_replicas, 6);

    // The new leader's metrics show its work.
    let (code, body) = http_get(standby.metrics, "/metrics").unwrap();
    assert_eq!(code, 200);
    for series in [
        "dlite_controller_reconciles_total{result=\"success\"}",
        "dlite_controller_reconcile_duration_seconds_bucket",
        "dlite_controller_reconcile_duration_seconds_count",
        "dlite_controller_queue_depth",
        "dlite_controller_leader 1",
    ] {
        assert!(body.contains(series), "/metrics lacks {series}:\n{body}");
    }
    drop(standby);
    ns.cleanup().await;
}

/// /readyz stays unavailable until every watch cache has synced: here the
/// controller runs as a ServiceAccount that may not list pods until a Role
/// grants it, so its pod cache cannot sync before.
#[tokio::test]
async fn readyz_waits_for_the_caches() {
    let ns = TestNamespace::new("t-readyz").await;
    install_crd(&ns.client).await;
    let n = ns.name.clone();
    let apply = |v: serde_json::Value| {
        let client = ns.client.clone();
        let n = n.clone();
        async move {
            let obj: kube::api::DynamicObject = serde_json::from_value(v).unwrap();
            let gvk = kube::api::GroupVersionKind::try_from(obj.types.as_ref().unwrap()).unwrap();
            let (ar, _) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
            let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client, &n, &ar);
            api.create(&PostParams::default(), &obj).await.unwrap();
        }
    };
    apply(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ctrl"}}))
        .await;
    apply(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "ctrl"},
        "rules": [
            {"apiGroups": ["apps.dlite.dev"], "resources": ["deploymentlites"], "verbs": ["get", "list", "watch", "update", "patch"]},
            {"apiGroups": ["apps.dlite.dev"], "resources": ["deploymentlites/status"], "verbs": ["update", "patch"]},
            {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}
        ]
    }))
    .await;
    apply(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "ctrl"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ctrl"},
        "subjects": [{"kind": "ServiceAccount", "name": "ctrl", "namespace": n}]
    }))
    .await;

    // A kubeconfig that acts as the ServiceAccount.
    let kubeconfig = support::repo_root().join(format!("target/test-logs/{n}.kubeconfig"));
    let mut kc: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(support::kubeconfig_path()).unwrap())
            .unwrap();
    for user in kc["users"].as_array_mut().unwrap() {
        user["user"]["as"] = format!("system:serviceaccount:{n}:ctrl").into();
        user["user"]["as-groups"] =
            serde_json::json!(["system:serviceaccounts", "system:authenticated"]);
    }
    std::fs::write(&kubeconfig, serde_saphyr::to_string(&kc).unwrap()).unwrap();

    let health = free_port();
    let h = format!("127.0.0.1:{health}");
    let mut args = vec![
        "--namespace",
        n.as_str(),
        "--metrics-bind-address",
        "0",
        "--health-probe-bind-address",
        h.as_str(),
    ];
    let dir = support::repo_root().join("target/test-logs");
    let log = dir.join(format!("{n}-controller-sa.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dlite-controller"))
        .args(args.drain(..))
        .env("KUBECONFIG", &kubeconfig)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();

    // Not ready while pods cannot be listed.
    let (code, body) = wait_for("/readyz to answer", Duration::from_secs(20), || async {
        http_get(health, "/readyz")
    })
    .await;
    assert_eq!(code, 503, "ready before the caches synced: {body}");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let (code, body) = http_get(health, "/readyz").unwrap();
        assert_eq!(code, 503, "ready without being able to list pods: {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        http_get(health, "/healthz").unwrap().0,
        200,
        "alive all the same"
    );

    apply(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "ctrl-pods"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    }))
    .await;
    apply(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "ctrl-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ctrl-pods"},
        "subjects": [{"kind": "ServiceAccount", "name": "ctrl", "namespace": n}]
    }))
    .await;
    wait_for(
        "/readyz to pass once pods can be listed",
        Duration::from_secs(60),
        || async {
            match http_get(health, "/readyz")? {
                (200, _) => Ok(()),
                (code, body) => Err(format!("{code} {body}")),
            }
        },
    )
    .await;

    // And the ServiceAccount's permissions are enough for a rollout.
    let api: Api<DeploymentLite> = ns.api();
    api.create(
        &PostParams::default(),
        &manifest("sa", 2, "app:v1", json!({})),
    )
    .await
    .unwrap();
    wait_complete(&api, "sa", ROLLOUT).await;
    let _ = child.kill();
    let _ = child.wait();
    ns.cleanup().await;
}

fn start_scheduler_replica(ns: &TestNamespace, scheduler_name: &str, identity: &str) -> Replica {
    let (metrics, health) = (free_port(), free_port());
    let m = format!("127.0.0.1:{metrics}");
    let h = format!("127.0.0.1:{health}");
    let lease = LEASE_SECONDS.to_string();
    let process = Process::start(
        env!("CARGO_BIN_EXE_dlite-scheduler"),
        &format!("{}-scheduler-{identity}", ns.name),
        &[
            "--scheduler-name",
            scheduler_name,
            "--leader-elect=true",
            "--leader-election-namespace",
            &ns.name,
            "--leader-election-id",
            scheduler_name,
            "--lease-duration-seconds",
            &lease,
            "--identity",
            identity,
            "--metrics-bind-address",
            &m,
            "--health-probe-bind-address",
            &h,
        ],
    );
    Replica {
        process,
        identity: identity.into(),
        metrics,
        health,
        leader_series: "dlite_scheduler_leader",
    }
}

async fn bound_pods(
    pods: &Api<k8s_openapi::api::core::v1::Pod>,
    app: &str,
) -> Result<usize, String> {
    let list = pods
        .list(&kube::api::ListParams::default().labels(&format!("app={app}")))
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
        .count())
}

/// Two dlite-scheduler replicas: exactly one binds; when it is killed the
/// standby takes over within the lease duration and binds the pods that
/// arrive after, each exactly once.
#[tokio::test]
async fn one_of_two_schedulers_leads_and_a_standby_takes_over() {
    let ns = TestNamespace::new("t-sched-ha").await;
    let name = format!("dlite-scheduler-{}", ns.name);
    let a = start_scheduler_replica(&ns, &name, "sched-a");
    let b = start_scheduler_replica(&ns, &name, "sched-b");
    let leases: Api<Lease> = ns.api();
    let (mut leader, standby) = elect(&leases, &name, a, b).await;

    let deploy = |app: &str, replicas: i32| -> k8s_openapi::api::apps::v1::Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": app},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                     "template": {"metadata": {"labels": {"app": app}},
                                  "spec": {"schedulerName": name, "containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .unwrap()
    };
    let deploys: Api<k8s_openapi::api::apps::v1::Deployment> = ns.api();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = ns.api();
    deploys
        .create(&PostParams::default(), &deploy("before", 6))
        .await
        .unwrap();
    wait_for(
        "6 pods bound by the leader",
        Duration::from_secs(60),
        || async {
            match bound_pods(&pods, "before").await? {
                6 => Ok(()),
                n => Err(format!("{n} bound")),
            }
        },
    )
    .await;
    let (_, standby_metrics) = http_get(standby.metrics, "/metrics").unwrap();
    assert!(
        !standby_metrics.contains("dlite_scheduler_schedule_attempts_total{"),
        "the standby scheduled while not leading:\n{standby_metrics}"
    );
    let (_, leader_metrics) = http_get(leader.metrics, "/metrics").unwrap();
    for series in [
        "dlite_scheduler_schedule_attempts_total{result=\"scheduled\"}",
        "dlite_scheduler_scheduling_attempt_duration_seconds_bucket",
        "dlite_scheduler_bindings_total",
        "dlite_scheduler_leader 1",
    ] {
        assert!(
            leader_metrics.contains(series),
            "/metrics lacks {series}:\n{leader_metrics}"
        );
    }

    leader.process.kill();
    let killed = Instant::now();
    // Created while no scheduler leads: the standby must pick them up.
    deploys
        .create(&PostParams::default(), &deploy("after", 6))
        .await
        .unwrap();
    wait_take_over(&leases, &name, &standby, killed).await;
    wait_for(
        "the pods created after the kill bound by the new leader",
        Duration::from_secs(60),
        || async {
            match bound_pods(&pods, "after").await? {
                6 => Ok(()),
                n => Err(format!("{n} bound")),
            }
        },
    )
    .await;
    // Events go out asynchronously after the binding: wait for them rather
    // than list once (a single list right after the last binding once saw
    // 5 of the 6). The killed leader may die between a binding and its
    // event; the pods bound after the handover must all get theirs.
    let events: Api<k8s_openapi::api::events::v1::Event> = ns.api();
    let scheduled: Vec<String> = wait_for(
        "a Scheduled event for each of the 6 pods bound by the new leader",
        Duration::from_secs(30),
        || async {
            let scheduled: Vec<String> = events
                .list(&kube::api::ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("Scheduled"))
                .filter_map(|e| e.regarding.and_then(|r| r.name))
                .collect();
            let after = scheduled.iter().filter(|n| n.starts_with("after-")).count();
            if after >= 6 {
                Ok(scheduled)
            } else {
                Err(format!("{after} of 6: {scheduled:?}"))
            }
        },
    )
    .await;
    // No pod got two Scheduled events (it would have been bound twice).
    let mut unique = scheduled.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        scheduled.len(),
        "a pod was scheduled twice: {scheduled:?}"
    );
    drop(standby);
    ns.cleanup().await;
}
