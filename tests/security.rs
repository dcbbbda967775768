//! Security, against the real API server: who may create DeploymentLites,
//! and that pods created through one are still subject to the namespace's
//! Pod Security admission.
//!
//! - With the chart's aggregated ClusterRoles in place, a user bound to the
//!   built-in `view` role in a namespace reads DeploymentLites there but may
//!   not create one (403); bound to `edit`, they may. Creating a
//!   DeploymentLite creates pods through the controller, so it belongs with
//!   edit, as Deployments do.
//! - In a namespace enforcing the restricted Pod Security Standard, a
//!   DeploymentLite with a privileged template gets no pods: its ReplicaSet
//!   records FailedCreate and the DeploymentLite reports ReplicaFailure with
//!   the same condition, word for word, as a native Deployment with the same
//!   template in the same namespace; a compliant DeploymentLite there, under
//!   the same controller, rolls out.
//!
//! Each test has its own namespace; the two ClusterRoles get names unique
//! to the test and are deleted at the end.

mod support;

use std::time::Duration;

use dlite::api::DeploymentLite;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use support::dl::{install_crd, manifest, start_controller, wait_complete};
use support::{TestNamespace, impersonating, repo_root, wait_for};

/// The chart's aggregated ClusterRoles, rendered with a release name of
/// the test's own so they never collide with an installed chart's.
fn aggregated_roles(release: &str) -> Vec<ClusterRole> {
    let out = std::process::Command::new(support::helm_bin())
        .args([
            "template",
            release,
            "charts/deploymentlite",
            "--show-only",
            "templates/aggregated-clusterroles.yaml",
        ])
        .current_dir(repo_root())
        .env_remove("KUBECONFIG")
        .output()
        .expect("running helm (set $HELM or run hack/testenv build)");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> =
        serde_saphyr::from_str_multiple(&String::from_utf8_lossy(&out.stdout)).unwrap();
    docs.into_iter()
        .filter(|d| !d.is_null())
        .map(|d| serde_json::from_value(d).unwrap())
        .collect()
}

fn role_binding(name: &str, cluster_role: &str, user: &str) -> RoleBinding {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    }))
    .unwrap()
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test]
async fn view_reads_deploymentlites_but_only_edit_creates_them() {
    let client = support::client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new("t-sec-rbac").await;
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let release = ns.name.clone();
    let mut created = vec![];
    for role in aggregated_roles(&release) {
        created.push(role.name_any());
        roles
            .create(&PostParams::default(), &role)
            .await
            .expect("creating an aggregated ClusterRole");
    }
    assert_eq!(created.len(), 2, "{created:?}");

    let user = format!("dlite-test-{}", ns.name);
    let as_user = impersonating(&user, &["system:authenticated"]).await;
    let theirs: Api<DeploymentLite> = Api::namespaced(as_user, &ns.name);
    ns.api::<DeploymentLite>()
        .create(
            &PostParams::default(),
            &manifest("existing", 0, "app:1", json!({})),
        )
        .await
        .unwrap();
    let bindings: Api<RoleBinding> = ns.api();
    bindings
        .create(
            &PostParams::default(),
            &role_binding("viewer", "view", &user),
        )
        .await
        .unwrap();

    // The clusterrole-aggregation controller copies the rules into view
    // shortly after the ClusterRole appears.
    wait_for(
        "view to read DeploymentLites",
        Duration::from_secs(30),
        || async {
            let got = theirs.get("existing").await.map_err(|e| e.to_string())?;
            theirs
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            Ok(got)
        },
    )
    .await;
    let refused = theirs
        .create(
            &PostParams::default(),
            &manifest("mine", 1, "app:1", json!({})),
        )
        .await
        .expect_err("view must not create a DeploymentLite");
    assert_eq!(status_code(&refused), Some(403), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("cannot create resource \"deploymentlites\""),
        "{refused}"
    );
    let scale = json!({"spec": {"replicas": 3}});
    let refused = theirs
        .patch_scale("existing", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .expect_err("view must not scale");
    assert_eq!(status_code(&refused), Some(403), "{refused}");

    bindings
        .create(
            &PostParams::default(),
            &role_binding("editor", "edit", &user),
        )
        .await
        .unwrap();
    wait_for(
        "edit to create a DeploymentLite",
        Duration::from_secs(30),
        || async {
            theirs
                .create(
                    &PostParams::default(),
                    &manifest("mine", 1, "app:1", json!({})),
                )
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await;
    theirs
        .patch_scale("existing", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .expect("edit scales through /scale");
    theirs
        .delete("mine", &DeleteParams::default())
        .await
        .expect("edit deletes");

    for name in created {
        roles.delete(&name, &DeleteParams::default()).await.unwrap();
    }
    ns.cleanup().await;
}

/// A namespace enforcing the restricted Pod Security Standard.
async fn restricted_namespace(prefix: &str) -> TestNamespace {
    let ns = TestNamespace::new(prefix).await;
    let labels = json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }}});
    Api::<Namespace>::all(ns.client.clone())
        .patch(&ns.name, &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .expect("labelling the namespace restricted");
    ns
}

fn replica_failure(conditions: &[DeploymentCondition]) -> Option<DeploymentCondition> {
    conditions
        .iter()
        .find(|c| c.type_ == "ReplicaFailure")
        .cloned()
}

/// (status, reason, message with the ReplicaSet's name and the refused
/// pod's generated suffix replaced).
fn comparable(c: &DeploymentCondition, rs_name: &str) -> (String, String, String) {
    let message = c
        .message
        .clone()
        .unwrap_or_default()
        .replace(rs_name, "<rs>");
    let suffix = regex::Regex::new(r#"<rs>-[a-z0-9]{5}""#).unwrap();
    (
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        suffix.replace_all(&message, "<rs>-<suffix>\"").into_owned(),
    )
}

async fn only_replica_set(ns: &TestNamespace, owner_uid: &str) -> Result<ReplicaSet, String> {
    let all = ns
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    let mine: Vec<ReplicaSet> = all
        .items
        .into_iter()
        .filter(|rs| rs.owner_references().iter().any(|o| o.uid == owner_uid))
        .collect();
    match mine.as_slice() {
        [rs] => Ok(rs.clone()),
        other => Err(format!("{} ReplicaSets", other.len())),
    }
}

#[tokio::test]
async fn pod_security_admission_applies_to_pods_made_through_a_deploymentlite() {
    let client = support::client().await;
    install_crd(&client).await;
    let ns = restricted_namespace("t-sec-pss").await;
    let _controller = start_controller(&ns, "");
    let privileged = json!({"template": {"spec": {"containers": [{
        "name": "app", "image": "app:1", "securityContext": {"privileged": true}}]}}});
    let compliant = json!({"template": {"spec": {
        "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "app", "image": "app:1", "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}}});
    let dls: Api<DeploymentLite> = ns.api();
    let dl = dls
        .create(
            &PostParams::default(),
            &manifest("priv", 2, "app:1", privileged),
        )
        .await
        .expect("the API server takes the object; admission judges pods");
    dls.create(
        &PostParams::default(),
        &manifest("fine", 2, "app:1", compliant),
    )
    .await
    .unwrap();
    // The native Deployment with the same template, as the oracle.
    let mut native: Value = serde_json::to_value(manifest(
        "priv-native",
        2,
        "app:1",
        json!({"template": {"spec": {"containers": [{
            "name": "app", "image": "app:1", "securityContext": {"privileged": true}}]}}}),
    ))
    .unwrap();
    native["apiVersion"] = json!("apps/v1");
    native["kind"] = json!("Deployment");
    let native: Deployment = serde_json::from_value(native).unwrap();
    let deploy = ns
        .api::<Deployment>()
        .create(&PostParams::default(), &native)
        .await
        .unwrap();

    let dl_uid = dl.uid().unwrap();
    let (dl_cond, dl_rs) = wait_for(
        "the DeploymentLite to report ReplicaFailure",
        Duration::from_secs(60),
        || async {
            let dl = dls.get("priv").await.map_err(|e| e.to_string())?;
            let rs = only_replica_set(&ns, &dl_uid).await?;
            let conditions = dl.status.clone().unwrap_or_default().conditions;
            replica_failure(&conditions)
                .map(|c| (c, rs.name_any()))
                .ok_or_else(|| format!("conditions {conditions:?}"))
        },
    )
    .await;
    let deploy_uid = deploy.uid().unwrap();
    let (native_cond, native_rs) = wait_for(
        "the native Deployment to report ReplicaFailure",
        Duration::from_secs(60),
        || async {
            let d = ns
                .api::<Deployment>()
                .get("priv-native")
                .await
                .map_err(|e| e.to_string())?;
            let rs = only_replica_set(&ns, &deploy_uid).await?;
            let conditions = d
                .status
                .clone()
                .unwrap_or_default()
                .conditions
                .unwrap_or_default();
            replica_failure(&conditions)
                .map(|c| (c, rs.name_any()))
                .ok_or_else(|| format!("conditions {conditions:?}"))
        },
    )
    .await;
    let (status, reason, message) = comparable(&dl_cond, &dl_rs);
    assert_eq!((status.as_str(), reason.as_str()), ("True", "FailedCreate"));
    assert!(
        message.contains("violates PodSecurity \"restricted:latest\"")
            && message.contains("privileged"),
        "a clear message: {message}"
    );
    assert_eq!(
        (status, reason, message),
        comparable(&native_cond, &native_rs),
        "the DeploymentLite's condition is the native Deployment's"
    );
    // No pod of it exists: admission refused every one.
    let pods = ns
        .api::<k8s_openapi::api::core::v1::Pod>()
        .list(&ListParams::default().labels("app=priv"))
        .await
        .unwrap();
    assert!(
        pods.items.is_empty(),
        "{} privileged pods",
        pods.items.len()
    );

    // Nothing else breaks: the compliant one rolls out under the same
    // controller.
    wait_complete(&dls, "fine", Duration::from_secs(90)).await;
    ns.cleanup().await;
}
