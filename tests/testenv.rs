//! Proof that the cluster under test is a real, working control plane:
//! Ready nodes, the kube-controller-manager + kubelet (kwok) path, RBAC,
//! and the pod simulation conventions other tests rely on.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::{TestNamespace, client, impersonating, wait_for};

fn is_ready(conditions: Option<&Vec<k8s_openapi::api::core::v1::NodeCondition>>) -> bool {
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[tokio::test]
async fn nodes_are_ready_with_zone_labels() {
    let nodes: Api<Node> = Api::all(client().await);
    let ready = wait_for(
        "at least 3 Ready nodes",
        Duration::from_secs(60),
        || async {
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let ready: Vec<Node> = list
                .items
                .into_iter()
                .filter(|n| is_ready(n.status.as_ref().and_then(|s| s.conditions.as_ref())))
                .collect();
            if ready.len() >= 3 {
                Ok(ready)
            } else {
                Err(format!("{} Ready nodes", ready.len()))
            }
        },
    )
    .await;
    for n in &ready {
        let labels = n.labels();
        assert!(
            labels.contains_key("topology.kubernetes.io/zone"),
            "node {} has no zone label: {labels:?}",
            n.name_any()
        );
        assert!(
            labels.contains_key("kubernetes.io/hostname"),
            "node {} has no hostname label",
            n.name_any()
        );
        let alloc = n
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .expect("allocatable");
        assert!(
            alloc.contains_key("cpu") && alloc.contains_key("memory") && alloc.contains_key("pods"),
            "{alloc:?}"
        );
    }
}

#[tokio::test]
async fn server_reports_a_real_1_36_version() {
    let v = client()
        .await
        .apiserver_version()
        .await
        .expect("GET /version");
    assert_eq!(v.major, "1", "{v:?}");
    assert_eq!(v.minor.trim_end_matches('+'), "36", "{v:?}");
    assert!(v.git_version.starts_with("v1.36."), "{v:?}");
}

#[tokio::test]
async fn native_deployment_reaches_three_available_replicas() {
    let ns = TestNamespace::new("t-native").await;
    let deploys: Api<Deployment> = ns.api();
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
            }
        }
    }))
    .unwrap();
    deploys
        .create(&PostParams::default(), &d)
        .await
        .expect("creating the Deployment");
    wait_for("3 available replicas", Duration::from_secs(60), || async {
        let d = deploys.get("web").await.map_err(|e| e.to_string())?;
        let st = d.status.unwrap_or_default();
        match st.available_replicas {
            Some(3) => Ok(()),
            other => Err(format!(
                "availableReplicas {other:?}, status {:?}",
                st.conditions
            )),
        }
    })
    .await;
    let pods: Api<Pod> = ns.api();
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 3);
    for p in &list.items {
        let st = p.status.as_ref().unwrap();
        assert_eq!(st.phase.as_deref(), Some("Running"), "pod {}", p.name_any());
        assert!(
            p.spec
                .as_ref()
                .unwrap()
                .node_name
                .as_deref()
                .is_some_and(|n| !n.is_empty()),
            "pod {} unbound",
            p.name_any()
        );
    }
    ns.cleanup().await;
}

#[tokio::test]
async fn rbac_is_enforced_for_service_accounts() {
    let ns = TestNamespace::new("t-rbac").await;
    let sas: Api<ServiceAccount> = ns.api();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "nobody"}})).unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let user = format!("system:serviceaccount:{}:nobody", ns.name);
    let groups = ["system:serviceaccounts", "system:authenticated"];

    let as_sa: Api<Pod> = Api::namespaced(impersonating(&user, &groups).await, &ns.name);
    match as_sa.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "expected Forbidden, got {s:?}"),
        other => panic!("a ServiceAccount without a Role listed pods: {other:?}"),
    }

    // The same request succeeds once a Role grants it, so the 403 above was
    // the authorizer's decision and nothing else.
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    }))
    .unwrap();
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "pod-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": ns.name}]
    }))
    .unwrap();
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &rb)
        .await
        .unwrap();
    wait_for(
        "the RoleBinding to take effect",
        Duration::from_secs(20),
        || async {
            as_sa
                .list(&ListParams::default())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await;
    ns.cleanup().await;
}

fn pod(name: &str, labels: serde_json::Value, annotations: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap()
}

fn pod_condition(p: &Pod, t: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| c.status.clone())
}

#[tokio::test]
async fn simulated_pods_follow_the_readiness_conventions() {
    let ns = TestNamespace::new("t-sim").await;
    let pods: Api<Pod> = ns.api();
    let pp = PostParams::default();
    pods.create(&pp, &pod("plain", json!({}), json!({})))
        .await
        .unwrap();
    pods.create(
        &pp,
        &pod(
            "broken",
            json!({"testenv.dlite.dev/never-ready": "true"}),
            json!({}),
        ),
    )
    .await
    .unwrap();
    let created = Instant::now();
    pods.create(
        &pp,
        &pod(
            "slow",
            json!({}),
            json!({"testenv.dlite.dev/ready-after": "4"}),
        ),
    )
    .await
    .unwrap();

    let phase_and_ready = |name: &'static str| {
        let pods = pods.clone();
        async move {
            let p = pods.get(name).await.map_err(|e| e.to_string())?;
            let phase = p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            Ok::<_, String>((phase, pod_condition(&p, "Ready")))
        }
    };

    wait_for(
        "the plain pod Running and Ready",
        Duration::from_secs(30),
        || async {
            match phase_and_ready("plain").await? {
                (ph, Some(r)) if ph == "Running" && r == "True" => Ok(()),
                seen => Err(format!("{seen:?}")),
            }
        },
    )
    .await;
    wait_for(
        "the slow pod Running but not yet Ready",
        Duration::from_secs(30),
        || async {
            match phase_and_ready("slow").await? {
                (ph, Some(r)) if ph == "Running" && r == "False" => Ok(()),
                seen => Err(format!("{seen:?}")),
            }
        },
    )
    .await;
    wait_for("the slow pod Ready", Duration::from_secs(30), || async {
        match phase_and_ready("slow").await? {
            (_, Some(r)) if r == "True" => Ok(()),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;
    assert!(
        created.elapsed() >= Duration::from_secs(4),
        "ready-after: 4 turned Ready after {:?}",
        created.elapsed()
    );

    // By now the broken pod has had every chance to turn Ready.
    let (ph, r) = phase_and_ready("broken").await.unwrap();
    assert_eq!(ph, "Running", "the never-ready pod should run");
    assert_eq!(
        r.as_deref(),
        Some("False"),
        "the never-ready pod must not be Ready"
    );
    ns.cleanup().await;
}
