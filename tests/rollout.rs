//! The rollout lifecycle a user drives with `kubectl dlite`, replayed
//! against a real API server with the real controller and the real plugin
//! binary (once through kubectl's plugin discovery).

mod support;

use std::process::Command;
use std::time::Duration;

use dlite::api::DeploymentLite;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::dl::{
    condition, install_crd, kubectl, manifest, replica_sets, rs_replicas, start_controller,
    wait_complete,
};
use support::{TestNamespace, kubeconfig_path, wait_for};

const ROLLOUT: Duration = Duration::from_secs(90);

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `kubectl-dlite ARGS -n NS` as a user would.
fn dlite(ns: &str, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-dlite"))
        .args(args)
        .args(["-n", ns])
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .expect("running kubectl-dlite");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(ns: &str, args: &[&str]) -> String {
    let o = dlite(ns, args);
    assert_eq!(
        o.code, 0,
        "kubectl dlite {args:?} failed: {}{}",
        o.stdout, o.stderr
    );
    o.stdout
}

fn revisions(history: &str) -> Vec<String> {
    history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// Waits until exactly `replicas` live pods run `image`.
async fn wait_pods_running(ns: &TestNamespace, image: &str, replicas: usize) -> Vec<Pod> {
    let pods: Api<Pod> = ns.api();
    wait_for(
        &format!("{replicas} Running pods of {image}"),
        ROLLOUT,
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=serve-deployment"))
                .await
                .map_err(|e| e.to_string())?;
            let live: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let images: Vec<String> = live
                .iter()
                .map(|p| {
                    p.spec.as_ref().unwrap().containers[0]
                        .image
                        .clone()
                        .unwrap_or_default()
                })
                .collect();
            let running = live
                .iter()
                .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
            if live.len() == replicas && running && images.iter().all(|i| i == image) {
                Ok(live)
            } else {
                Err(format!("images {images:?}, all running: {running}"))
            }
        },
    )
    .await
}

#[tokio::test]
async fn the_rollout_lifecycle_through_kubectl_dlite() {
    let ns = TestNamespace::new("t-lifecycle").await;
    install_crd(&ns.client).await;
    let _ctrl = start_controller(&ns, "");
    let api: Api<DeploymentLite> = ns.api();
    let n = ns.name.as_str();
    let name = "serve-deployment";

    // 1. Create; it looks like a Deployment; rollout status succeeds.
    api.create(
        &PostParams::default(),
        &manifest(name, 2, "auto-serve:latest", json!({})),
    )
    .await
    .unwrap();
    let status = ok(n, &["rollout", "status", name, "--timeout=60s"]);
    assert!(
        status.ends_with("deployment \"serve-deployment\" successfully rolled out\n"),
        "{status}"
    );
    let dls = kubectl(&["get", "dl", "-n", n]);
    assert!(
        dls.lines().nth(1).unwrap().split_whitespace().take(4).eq([
            "serve-deployment",
            "2/2",
            "2",
            "2"
        ]),
        "{dls}"
    );
    let rs = kubectl(&["get", "rs", "-n", n]);
    assert!(
        rs.lines().nth(1).unwrap().starts_with("serve-deployment-"),
        "{rs}"
    );
    let pods = kubectl(&["get", "pods", "-n", n]);
    assert_eq!(
        pods.lines()
            .filter(|l| l.contains("Running") && l.contains("1/1"))
            .count(),
        2,
        "{pods}"
    );

    // kubectl finds the plugin on PATH as `kubectl dlite`.
    let plugin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_kubectl-dlite"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        plugin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(support::dl::kubectl_bin())
        .args(["dlite", "rollout", "status", name, "-n", n])
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl dlite: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("successfully rolled out"));

    // 2. Two new images: revisions 2 and 3.
    assert_eq!(
        ok(
            n,
            &[
                "set",
                "image",
                &format!("dl/{name}"),
                "app=auto-serve:1.1.1"
            ]
        ),
        "deploymentlite.apps.dlite.dev/serve-deployment image updated\n"
    );
    ok(n, &["rollout", "status", name, "--timeout=60s"]);
    ok(n, &["set", "image", name, "app=auto-serve:2.2.2"]);
    let status = ok(n, &["rollout", "status", name, "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let history = ok(n, &["rollout", "history", name]);
    assert!(
        history.starts_with(
            "deploymentlite.apps.dlite.dev/serve-deployment \nREVISION  CHANGE-CAUSE\n"
        ),
        "{history}"
    );
    assert_eq!(revisions(&history), ["1", "2", "3"], "{history}");
    let rev2 = ok(n, &["rollout", "history", name, "--revision=2"]);
    assert!(
        rev2.contains("with revision #2") && rev2.contains("auto-serve:1.1.1"),
        "{rev2}"
    );

    // 3. Undo: back to 1.1.1, history 1, 3, 4.
    assert_eq!(
        ok(n, &["rollout", "undo", name]),
        "deploymentlite.apps.dlite.dev/serve-deployment rolled back\n"
    );
    ok(n, &["rollout", "status", name, "--timeout=60s"]);
    wait_pods_running(&ns, "auto-serve:1.1.1", 2).await;
    let history = wait_for("history 1, 3, 4", ROLLOUT, || async {
        let h = ok(n, &["rollout", "history", name]);
        if revisions(&h) == ["1", "3", "4"] {
            Ok(h)
        } else {
            Err(h)
        }
    })
    .await;
    assert!(history.contains("4"), "{history}");
    let events = kubectl(&[
        "get",
        "events",
        "-n",
        n,
        "--field-selector",
        "reason=DeploymentRollback",
    ]);
    assert!(
        // Upstream's words (kube-controller-manager v1.36.3 says exactly
        // this for a Deployment).
        events.contains("Rolled back deployment \"serve-deployment\" to revision 2"),
        "{events}"
    );

    // 4. Undo to revision 1: latest again.
    ok(n, &["rollout", "undo", name, "--to-revision=1"]);
    ok(n, &["rollout", "status", name, "--timeout=60s"]);
    wait_pods_running(&ns, "auto-serve:latest", 2).await;

    // 5. kubectl scale: 3 pods, old ReplicaSets at 0.
    kubectl(&["scale", "-n", n, &format!("dl/{name}"), "--replicas=3"]);
    ok(n, &["rollout", "status", name, "--timeout=60s"]);
    wait_pods_running(&ns, "auto-serve:latest", 3).await;
    let rses = replica_sets(&ns, name).await;
    let active: Vec<i32> = rses.iter().map(rs_replicas).filter(|r| *r > 0).collect();
    assert_eq!(active, [3], "only the current ReplicaSet has replicas");

    // 6. Pause: a new image makes no ReplicaSet; resume rolls it out.
    assert_eq!(
        ok(n, &["rollout", "pause", name]),
        "deploymentlite.apps.dlite.dev/serve-deployment paused\n"
    );
    let before = replica_sets(&ns, name).await.len();
    ok(n, &["set", "image", name, "app=auto-serve:1.1.1"]);
    let dl = wait_for("the paused condition", ROLLOUT, || async {
        let dl = api.get(name).await.map_err(|e| e.to_string())?;
        let observed =
            dl.status.as_ref().and_then(|s| s.observed_generation) == dl.metadata.generation;
        match condition(&dl, "Progressing") {
            Some((s, r)) if observed && s == "Unknown" && r == "DeploymentPaused" => Ok(dl),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(dl.spec.paused);
    assert_eq!(
        replica_sets(&ns, name).await.len(),
        before,
        "no new ReplicaSet while paused"
    );
    let undo_paused = dlite(n, &["rollout", "undo", name]);
    assert_eq!(undo_paused.code, 1);
    assert!(
        undo_paused
            .stderr
            .contains("you cannot rollback a paused deployment"),
        "{}",
        undo_paused.stderr
    );
    assert_eq!(
        ok(n, &["rollout", "resume", name]),
        "deploymentlite.apps.dlite.dev/serve-deployment resumed\n"
    );
    ok(n, &["rollout", "status", name, "--timeout=60s"]);
    wait_pods_running(&ns, "auto-serve:1.1.1", 3).await;

    // 7. Restart: a new ReplicaSet, fresh pods, same image.
    let old_pods: Vec<String> = wait_pods_running(&ns, "auto-serve:1.1.1", 3)
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    let rs_before = replica_sets(&ns, name).await.len();
    assert_eq!(
        ok(n, &["rollout", "restart", name]),
        "deploymentlite.apps.dlite.dev/serve-deployment restarted\n"
    );
    ok(n, &["rollout", "status", name, "--timeout=60s"]);
    let new_pods = wait_pods_running(&ns, "auto-serve:1.1.1", 3).await;
    assert!(
        new_pods.iter().all(|p| !old_pods.contains(&p.name_any())),
        "restart replaced every pod"
    );
    assert_eq!(
        replica_sets(&ns, name).await.len(),
        rs_before + 1,
        "restart made a new ReplicaSet"
    );
    let dl = api.get(name).await.unwrap();
    let restarted = dl
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get("kubectl.kubernetes.io/restartedAt").cloned());
    assert!(restarted.is_some(), "restartedAt stamped into the template");

    // 8. A never-ready release with autoRollback: back on the last good
    // revision, with an event saying so, the failed revision kept.
    let good_revision = dl.annotations().get("dlite.dev/revision").cloned().unwrap();
    let broken = json!({"spec": {
        "autoRollback": true,
        "progressDeadlineSeconds": 6,
        "template": {"metadata": {"labels": {"app": name, "testenv.dlite.dev/never-ready": "true"}},
                     "spec": {"containers": [{"name": "app", "image": "auto-serve:3.0.0-broken"}]}}
    }});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&broken))
        .await
        .unwrap();
    let events = wait_for("the automatic rollback event", ROLLOUT, || async {
        let e = kubectl(&[
            "get",
            "events",
            "-n",
            n,
            "--field-selector",
            "reason=DeploymentAutoRollback",
        ]);
        if e.contains("rolled back to revision") {
            Ok(e)
        } else {
            Err(e)
        }
    })
    .await;
    assert!(
        events.contains(&format!("rolled back to revision {good_revision}")),
        "{events}"
    );
    let done = wait_complete(&api, name, ROLLOUT).await;
    wait_pods_running(&ns, "auto-serve:1.1.1", 3).await;
    assert!(
        !done
            .spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap()
            .contains_key("testenv.dlite.dev/never-ready")
    );
    let history = ok(n, &["rollout", "history", name]);
    let revs = revisions(&history);
    assert!(
        revs.len() >= 3,
        "the failed revision stays in history: {history}"
    );
    ns.cleanup().await;
}

/// Error paths as a user meets them: one line, exit code 1.
#[tokio::test]
async fn plugin_errors_are_one_line_with_kubectl_exit_codes() {
    let ns = TestNamespace::new("t-plugin-errors").await;
    install_crd(&ns.client).await;
    let n = ns.name.as_str();
    let missing = dlite(n, &["rollout", "status", "nope"]);
    assert_eq!(missing.code, 1);
    assert_eq!(
        missing.stderr,
        "Error from server (NotFound): deploymentlites.apps.dlite.dev \"nope\" not found\n"
    );
    let wrong_kind = dlite(n, &["rollout", "history", "deployment/web"]);
    assert_eq!(wrong_kind.code, 1);
    assert!(
        wrong_kind
            .stderr
            .starts_with("error: the server doesn't have a resource type \"deployment\""),
        "{}",
        wrong_kind.stderr
    );
    let usage = dlite(n, &["rollout", "bogus", "x"]);
    assert_eq!(
        usage.code, 1,
        "usage errors exit 1 like kubectl: {}",
        usage.stderr
    );

    // An object with history but no controller acting: unknown revision
    // and unknown container are refused before anything is written.
    let api: Api<DeploymentLite> = ns.api();
    api.create(
        &PostParams::default(),
        &manifest("quiet", 1, "img:1", json!({})),
    )
    .await
    .unwrap();
    let unknown = dlite(n, &["rollout", "undo", "quiet", "--to-revision=7"]);
    assert_eq!(unknown.code, 1);
    assert_eq!(
        unknown.stderr,
        "error: unable to find specified revision 7 in history\n"
    );
    let container = dlite(n, &["set", "image", "quiet", "web=img:2"]);
    assert_eq!(container.code, 1);
    assert_eq!(
        container.stderr,
        "error: unable to find container named \"web\"\n"
    );
    let other_ctx = dlite(
        n,
        &["--context", "no-such-context", "rollout", "status", "quiet"],
    );
    assert_eq!(other_ctx.code, 1);
    assert!(
        other_ctx.stderr.contains("no-such-context"),
        "{}",
        other_ctx.stderr
    );
    ns.cleanup().await;
}
