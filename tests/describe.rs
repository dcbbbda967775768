//! `kubectl dlite describe` against `kubectl describe deployment`: a native
//! apps/v1 Deployment (run by the real kube-controller-manager) and a
//! DeploymentLite (run by dlite-controller) with the same template, side by
//! side in one namespace, through the same rollout; the two descriptions
//! must agree line by line once names, hashes, ages and timestamps are
//! normalised.
//!
//! The deliberate differences, kept to the reporting identity:
//! - the revision annotation is `dlite.dev/revision`, not
//!   `deployment.kubernetes.io/revision` (a DeploymentLite is not in the
//!   apps group, and its controller must not claim that group's keys);
//! - events come `From` dlite-controller, not deployment-controller.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use dlite::api::DeploymentLite;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use support::dl::{install_crd, kubectl_bin, start_controller};
use support::{TestNamespace, kubeconfig_path, wait_for};

const NATIVE: &str = "nat-web";
const DLITE: &str = "dlt-web";
const ROLLOUT: Duration = Duration::from_secs(120);

/// The template both objects share: ports, env, resources and a probe
/// without its periods (the API server defaults them for the Deployment;
/// the describer must print the same defaults for the DeploymentLite).
fn spec(app: &str, image: &str) -> Value {
    json!({
        "replicas": 2,
        "selector": {"matchLabels": {"app": app}},
        "template": {
            "metadata": {"labels": {"app": app, "tier": "web"}},
            "spec": {"containers": [{
                "name": "app",
                "image": image,
                "ports": [{"containerPort": 8080, "name": "http"}],
                "env": [{"name": "MODE", "value": "demo"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                              "limits": {"memory": "128Mi"}},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}
            }]}
        }
    })
}

fn run(bin: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(bin)
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .map_err(|e| format!("running {bin}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{bin} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// ReplicaSet name -> `NAME-rev<N>`, by the revision annotation each
/// controller keeps.
async fn rs_names(ns: &TestNamespace, owner: &str, key: &str) -> BTreeMap<String, String> {
    let api: Api<ReplicaSet> = ns.api();
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|rs| rs.owner_references().iter().any(|o| o.name == owner))
        .filter_map(|rs| {
            let rev = rs.annotations().get(key)?.clone();
            Some((rs.name_any(), format!("NAME-rev{rev}")))
        })
        .collect()
}

/// Names, hashes, timestamps and ages out; the two deliberate differences
/// mapped onto one spelling.
fn normalise(text: &str, name: &str, rses: &BTreeMap<String, String>) -> Vec<String> {
    let mut in_events = false;
    text.lines()
        .map(|line| {
            let mut l = line.to_string();
            // Longest first: a ReplicaSet name contains the object's name.
            for (rs, label) in rses {
                l = l.replace(rs, label);
            }
            l = l.replace(name, "NAME");
            l = l.replace("deployment.kubernetes.io/revision", "dlite.dev/revision");
            if l.starts_with("CreationTimestamp:") {
                l = format!("CreationTimestamp: {}", "<timestamp>");
            }
            if l == "Events:" {
                in_events = true;
            } else if in_events && !l.trim_start().starts_with("Type") {
                // Type, Reason, Age, From, Message: Age and From differ by
                // design, and their widths move the columns after them.
                let cells: Vec<&str> = l
                    .trim_start()
                    .split("  ")
                    .filter(|c| !c.is_empty())
                    .map(str::trim)
                    .collect();
                if cells.len() >= 5 && !cells[0].starts_with("----") {
                    let from = match cells[3] {
                        "deployment-controller" | "dlite-controller" => "<controller>",
                        other => other,
                    };
                    l = format!(
                        "  {} | {} | <age> | {from} | {}",
                        cells[0],
                        cells[1],
                        cells[4..].join("  ")
                    );
                } else if cells.first().is_some_and(|c| c.starts_with("----")) {
                    l = "  ----".into();
                }
            } else if in_events {
                l = "  Type | Reason | Age | From | Message".into();
            }
            l
        })
        .collect()
}

fn diff(a: &[String], b: &[String]) -> String {
    let mut out = String::new();
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i).map(String::as_str), b.get(i).map(String::as_str));
        let mark = if x == y { " " } else { "!" };
        out.push_str(&format!(
            "{mark} {:<70} | {}\n",
            x.unwrap_or("<missing>"),
            y.unwrap_or("<missing>")
        ));
    }
    out
}

async fn wait_native_complete(api: &Api<Deployment>, name: &str, replicas: i32) {
    wait_for(
        &format!("Deployment {name} to finish its rollout"),
        ROLLOUT,
        || async {
            let d = api.get(name).await.map_err(|e| e.to_string())?;
            let st = d.status.clone().unwrap_or_default();
            let done = st.observed_generation == d.metadata.generation
                && st.updated_replicas == Some(replicas)
                && st.replicas == Some(replicas)
                && st.available_replicas == Some(replicas)
                && st.conditions.iter().flatten().any(|c| {
                    c.type_ == "Progressing"
                        && c.reason.as_deref() == Some("NewReplicaSetAvailable")
                });
            if done { Ok(()) } else { Err(format!("{st:?}")) }
        },
    )
    .await
}

/// Describes both until their normalised texts agree (events arrive a
/// moment after the status); fails showing the last difference. Returns
/// the normalised lines.
async fn compare(ns: &TestNamespace, native: &str, dlite: &str) -> Vec<String> {
    let n = ns.name.as_str();
    let kubectl = kubectl_bin();
    let plugin = env!("CARGO_BIN_EXE_kubectl-dlite");
    let (native_text, dlite_text, normalised) = wait_for(
        &format!("the descriptions of {native} and {dlite} to agree"),
        Duration::from_secs(60),
        || async {
            let native_text = run(&kubectl, &["describe", "deployment", native, "-n", n])?;
            let dlite_text = run(plugin, &["describe", dlite, "-n", n])?;
            let a = normalise(
                &native_text,
                native,
                &rs_names(ns, native, "deployment.kubernetes.io/revision").await,
            );
            let b = normalise(
                &dlite_text,
                dlite,
                &rs_names(ns, dlite, "dlite.dev/revision").await,
            );
            if a == b {
                Ok((native_text, dlite_text, a))
            } else {
                Err(format!(
                    "\n--- kubectl describe deployment | kubectl dlite describe (normalised)\n{}\n--- raw kubectl:\n{native_text}\n--- raw dlite:\n{dlite_text}",
                    diff(&a, &b)
                ))
            }
        },
    )
    .await;
    eprintln!(
        "kubectl describe deployment {native}:\n{native_text}\nkubectl dlite describe {dlite}:\n{dlite_text}"
    );
    normalised
}

#[tokio::test]
async fn describe_matches_kubectls_deployment_describer() {
    let ns = TestNamespace::new("t-describe").await;
    install_crd(&ns.client).await;
    let _ctrl = start_controller(&ns, "");
    let deployments: Api<Deployment> = ns.api();
    let dls: Api<DeploymentLite> = ns.api();

    let native: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NATIVE, "labels": {"team": "a"}},
        "spec": spec(NATIVE, "auto-serve:1.1.1"),
    }))
    .unwrap();
    let dl: DeploymentLite = serde_json::from_value(json!({
        "apiVersion": "apps.dlite.dev/v1", "kind": "DeploymentLite",
        "metadata": {"name": DLITE, "labels": {"team": "a"}},
        "spec": spec(DLITE, "auto-serve:1.1.1"),
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &native)
        .await
        .unwrap();
    dls.create(&PostParams::default(), &dl).await.unwrap();
    wait_native_complete(&deployments, NATIVE, 2).await;
    support::dl::wait_complete(&dls, DLITE, ROLLOUT).await;

    // One rolling update each, so there is an old ReplicaSet and a history
    // of scaling events to describe.
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "auto-serve:latest"}]}}}});
    deployments
        .patch(NATIVE, &PatchParams::default(), &Patch::Strategic(image))
        .await
        .unwrap();
    // A DeploymentLite takes merge patches: the whole container list.
    let mut containers = dls
        .get(DLITE)
        .await
        .unwrap()
        .spec
        .template
        .spec
        .unwrap()
        .containers;
    containers[0].image = Some("auto-serve:latest".into());
    dls.patch(
        DLITE,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": containers}}}})),
    )
    .await
    .unwrap();
    wait_native_complete(&deployments, NATIVE, 2).await;
    support::dl::wait_complete(&dls, DLITE, ROLLOUT).await;

    let normalised = compare(&ns, NATIVE, DLITE).await;
    // The comparison covered the whole description, both ReplicaSets and
    // the five scaling steps of the rollout (not an empty or cut text).
    for want in [
        "Replicas:               2 desired | 2 updated | 2 total | 2 available | 0 unavailable",
        "OldReplicaSets:  NAME-rev1 (0/0 replicas created)",
        "NewReplicaSet:   NAME-rev2 (2/2 replicas created)",
        "  Normal | ScalingReplicaSet | <age> | <controller> | Scaled down replica set NAME-rev1 from 1 to 0",
    ] {
        assert!(
            normalised.iter().any(|l| l == want),
            "{want:?} not in {normalised:#?}"
        );
    }
    assert!(normalised.len() >= 45, "{normalised:#?}");
    ns.cleanup().await;
}

/// Every part of the pod template the describer prints (init containers,
/// several ports, command and args, env from fields, secrets, config maps
/// and envFrom, three probe kinds, mounts, volumes, a seccomp profile,
/// topology spread, node selector, tolerations, annotations) and the
/// Recreate strategy, on both kinds.
#[tokio::test]
async fn describe_matches_for_a_rich_template_and_recreate() {
    let ns = TestNamespace::new("t-describe-rich").await;
    install_crd(&ns.client).await;
    let _ctrl = start_controller(&ns, "");
    let deployments: Api<Deployment> = ns.api();
    let dls: Api<DeploymentLite> = ns.api();
    let spec = |app: &str| {
        json!({
            "replicas": 1,
            "minReadySeconds": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}, "annotations": {"note": "same template"}},
                "spec": {
                    "serviceAccountName": "default",
                    "nodeSelector": {"type": "kwok"},
                    "tolerations": [
                        {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"},
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}
                    ],
                    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": app}}}],
                    "initContainers": [{"name": "init", "image": "busybox:1", "command": ["sh", "-c", "true"]}],
                    "containers": [{
                        "name": "app",
                        "image": "auto-serve:1.1.1",
                        "command": ["/serve"],
                        "args": ["--port=8080", "--verbose"],
                        "ports": [{"containerPort": 8080, "name": "http"}, {"containerPort": 9090, "name": "metrics", "protocol": "TCP"}],
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        "envFrom": [{"configMapRef": {"name": "settings"}}, {"secretRef": {"name": "creds", "optional": true}, "prefix": "S_"}],
                        "env": [
                            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token", "optional": true}}},
                            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}}
                        ],
                        "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 20},
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 2},
                        "startupProbe": {"httpGet": {"path": "/up", "port": "http", "scheme": "HTTPS"}, "failureThreshold": 30},
                        "volumeMounts": [
                            {"name": "scratch", "mountPath": "/tmp"},
                            {"name": "config", "mountPath": "/etc/serve", "readOnly": true, "subPath": "serve"}
                        ]
                    }],
                    "volumes": [
                        {"name": "scratch", "emptyDir": {}},
                        {"name": "config", "configMap": {"name": "settings"}},
                        {"name": "creds", "secret": {"secretName": "creds", "optional": true}}
                    ]
                }
            }
        })
    };
    let (native, dlite) = ("nat-all", "dlt-all");
    let meta = |name: &str| json!({"name": name, "annotations": {"owner": "team-a"}});
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": meta(native), "spec": spec(native)}))
            .unwrap(),
        )
        .await
        .unwrap();
    dls.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"apiVersion": "apps.dlite.dev/v1", "kind": "DeploymentLite",
            "metadata": meta(dlite), "spec": spec(dlite)}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    wait_native_complete(&deployments, native, 1).await;
    support::dl::wait_complete(&dls, dlite, ROLLOUT).await;
    let normalised = compare(&ns, native, dlite).await;
    for want in [
        "StrategyType:       Recreate",
        "    Ports:           8080/TCP (http), 9090/TCP (metrics)",
        "      TOKEN:  <set to the key 'token' in secret 'creds'>         Optional: true",
        "                                node.kubernetes.io/unreachable:NoExecute op=Exists for 30s",
    ] {
        assert!(
            normalised.iter().any(|l| l == want),
            "{want:?} not in {normalised:#?}"
        );
    }
    ns.cleanup().await;
}
