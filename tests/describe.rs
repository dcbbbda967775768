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

async fn wait_native_complete(api: &Api<Deployment>) {
    wait_for("the Deployment to finish its rollout", ROLLOUT, || async {
        let d = api.get(NATIVE).await.map_err(|e| e.to_string())?;
        let st = d.status.clone().unwrap_or_default();
        let done = st.observed_generation == d.metadata.generation
            && st.updated_replicas == Some(2)
            && st.replicas == Some(2)
            && st.available_replicas == Some(2)
            && st.conditions.iter().flatten().any(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")
            });
        if done { Ok(()) } else { Err(format!("{st:?}")) }
    })
    .await
}

#[tokio::test]
async fn describe_matches_kubectls_deployment_describer() {
    let ns = TestNamespace::new("t-describe").await;
    install_crd(&ns.client).await;
    let _ctrl = start_controller(&ns, "");
    let n = ns.name.as_str();
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
    wait_native_complete(&deployments).await;
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
    wait_native_complete(&deployments).await;
    support::dl::wait_complete(&dls, DLITE, ROLLOUT).await;

    let kubectl = kubectl_bin();
    let plugin = env!("CARGO_BIN_EXE_kubectl-dlite");
    // Events arrive a moment after the status; compare until both sides
    // have settled (or show the last difference).
    let (native_text, dlite_text, normalised) = wait_for(
        "the two descriptions to agree",
        Duration::from_secs(60),
        || async {
            let native_text = run(&kubectl, &["describe", "deployment", NATIVE, "-n", n])?;
            let dlite_text = run(plugin, &["describe", DLITE, "-n", n])?;
            let a = normalise(
                &native_text,
                NATIVE,
                &rs_names(&ns, NATIVE, "deployment.kubernetes.io/revision").await,
            );
            let b = normalise(
                &dlite_text,
                DLITE,
                &rs_names(&ns, DLITE, "dlite.dev/revision").await,
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
        "kubectl describe deployment {NATIVE}:\n{native_text}\nkubectl dlite describe {DLITE}:\n{dlite_text}"
    );
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
