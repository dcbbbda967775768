//! DeploymentLite against a real API server: the controller binary runs as
//! a process scoped to each test's namespace.

mod support;

use std::time::Duration;

use dlite::api::DeploymentLite;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::dl::{
    Sampler, condition, install_crd, kubectl, manifest, replica_sets, rs_replicas, set_image,
    start_controller, wait_complete,
};
use support::{TestNamespace, wait_for};

const ROLLOUT: Duration = Duration::from_secs(90);

async fn setup(prefix: &str) -> (TestNamespace, support::Process, Api<DeploymentLite>) {
    let ns = TestNamespace::new(prefix).await;
    install_crd(&ns.client).await;
    let ctrl = start_controller(&ns, "");
    let api: Api<DeploymentLite> = ns.api();
    (ns, ctrl, api)
}

#[tokio::test]
async fn a_new_deploymentlite_looks_like_a_deployment() {
    let (ns, _ctrl, api) = setup("t-create").await;
    api.create(
        &PostParams::default(),
        &manifest("web", 2, "auto-serve:latest", json!({})),
    )
    .await
    .unwrap();
    let dl = wait_complete(&api, "web", ROLLOUT).await;

    let rses = replica_sets(&ns, "web").await;
    assert_eq!(
        rses.len(),
        1,
        "one ReplicaSet: {:?}",
        rses.iter().map(|r| r.name_any()).collect::<Vec<_>>()
    );
    let rs = &rses[0];
    let hash = rs
        .labels()
        .get("pod-template-hash")
        .expect("hash label")
        .clone();
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(
        hash,
        dlite::controller::hash::pod_template_hash(&dl.spec.template, None),
        "the hash is the one the library computes"
    );
    let owner = rs
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .expect("controller ref");
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("DeploymentLite", "web")
    );
    assert_eq!(owner.block_owner_deletion, Some(true));
    let ann = rs.annotations();
    assert_eq!(ann.get("dlite.dev/revision").map(String::as_str), Some("1"));
    assert_eq!(
        ann.get("dlite.dev/desired-replicas").map(String::as_str),
        Some("2")
    );
    assert_eq!(
        ann.get("dlite.dev/max-replicas").map(String::as_str),
        Some("3"),
        "2 + ceil(25% of 2)"
    );
    assert_eq!(
        dl.annotations()
            .get("dlite.dev/revision")
            .map(String::as_str),
        Some("1")
    );
    let sel = rs
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .clone()
        .unwrap();
    assert_eq!(sel.get("pod-template-hash"), Some(&hash));

    let pods: Api<Pod> = ns.api();
    let pods = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(pods.len(), 2);
    for p in &pods {
        assert!(
            p.name_any().starts_with(&format!("web-{hash}-")),
            "pod name {}",
            p.name_any()
        );
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    }

    assert_eq!(
        condition(&dl, "Available"),
        Some(("True".into(), "MinimumReplicasAvailable".into()))
    );
    assert_eq!(
        condition(&dl, "Progressing"),
        Some(("True".into(), "NewReplicaSetAvailable".into()))
    );

    let table = kubectl(&["get", "dl", "-n", &ns.name]);
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "2/2", "2", "2"], "{table}");
    let wide = kubectl(&["get", "dlite", "-n", &ns.name, "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header[5..], ["CONTAINERS", "IMAGES", "SELECTOR"], "{wide}");
    assert!(
        wide.contains("auto-serve:latest") && wide.contains("app=web"),
        "{wide}"
    );

    // The scale subresource works as for Deployments.
    kubectl(&["scale", "-n", &ns.name, "dl/web", "--replicas=3"]);
    let dl = wait_complete(&api, "web", ROLLOUT).await;
    assert_eq!(dl.spec.replicas, 3);
    let scale = kubectl(&[
        "get",
        "--raw",
        &format!(
            "/apis/apps.dlite.dev/v1/namespaces/{}/deploymentlites/web/scale",
            ns.name
        ),
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["status"]["replicas"], 3, "{scale}");
    assert_eq!(scale["status"]["selector"], "app=web", "{scale}");
    ns.cleanup().await;
}

/// A rolling update through slow-starting pods, for several bounds, with a
/// sampler checking live and ready pods all along.
#[tokio::test]
async fn rolling_updates_never_break_their_bounds() {
    let (ns, _ctrl, api) = setup("t-rolling").await;
    // (replicas, maxSurge, maxUnavailable, resolved surge, resolved unavailable)
    let cases = [
        (4, json!(1), json!(0), 1, 0),
        (4, json!(0), json!(1), 0, 1),
        (4, json!("25%"), json!("25%"), 1, 1),
        (5, json!(2), json!("40%"), 2, 2),
    ];
    let mut samplers = Vec::new();
    for (i, (replicas, surge, unavailable, _, _)) in cases.iter().enumerate() {
        let name = format!("roll{i}");
        let spec = json!({
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            "template": {"metadata": {"annotations": {"testenv.dlite.dev/ready-after": "1"}}}
        });
        api.create(
            &PostParams::default(),
            &manifest(&name, *replicas, "app:v1", spec),
        )
        .await
        .unwrap();
    }
    for (i, (replicas, _, _, surge, unavailable)) in cases.iter().enumerate() {
        let name = format!("roll{i}");
        wait_complete(&api, &name, ROLLOUT).await;
        let max_total = (replicas + surge) as usize;
        let min_ready = (replicas - unavailable) as usize;
        samplers.push((
            name.clone(),
            Sampler::start(&ns, &name, max_total, min_ready),
        ));
        set_image(&api, &name, "app:v2").await;
    }
    for (name, sampler) in samplers {
        let dl = wait_complete(&api, &name, ROLLOUT).await;
        let samples = sampler.finish().await;
        assert!(samples.count > 5, "{name}: too few samples: {samples:?}");
        assert!(
            samples.violations.is_empty(),
            "{name}: bounds broken: {:?}",
            samples.violations
        );
        let rses = replica_sets(&ns, &name).await;
        assert_eq!(rses.len(), 2, "{name}");
        assert_eq!(
            rs_replicas(&rses[0]),
            0,
            "{name}: old ReplicaSet scaled to 0"
        );
        assert_eq!(rs_replicas(&rses[1]), dl.spec.replicas, "{name}");
        assert_eq!(
            rses[1]
                .annotations()
                .get("dlite.dev/revision")
                .map(String::as_str),
            Some("2")
        );
        assert_eq!(
            dl.annotations()
                .get("dlite.dev/revision")
                .map(String::as_str),
            Some("2")
        );
    }
    ns.cleanup().await;
}

#[tokio::test]
async fn recreate_never_runs_old_and_new_pods_together() {
    let (ns, _ctrl, api) = setup("t-recreate").await;
    let spec = json!({"strategy": {"type": "Recreate"}});
    api.create(&PostParams::default(), &manifest("rec", 3, "app:v1", spec))
        .await
        .unwrap();
    wait_complete(&api, "rec", ROLLOUT).await;
    let sampler = Sampler::start(&ns, "rec", 3, 0);
    set_image(&api, "rec", "app:v2").await;
    wait_complete(&api, "rec", ROLLOUT).await;
    let samples = sampler.finish().await;
    assert!(samples.count > 3, "{samples:?}");
    assert!(
        samples.overlaps.is_empty(),
        "old and new pods existed together: {:?}",
        samples.overlaps
    );
    assert!(samples.violations.is_empty(), "{:?}", samples.violations);
    assert_eq!(samples.min_ready, 0, "Recreate goes through zero pods");
    ns.cleanup().await;
}

/// A release whose pods never become Ready: the rollout stops at its
/// bounds, reports ProgressDeadlineExceeded after progressDeadlineSeconds,
/// and scaling meanwhile is proportional (10 -> 15 gives old 11, new 7).
#[tokio::test]
async fn a_stuck_rollout_times_out_and_scales_proportionally() {
    let (ns, _ctrl, api) = setup("t-stuck").await;
    let spec = json!({
        "progressDeadlineSeconds": 8,
        "strategy": {"rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}}
    });
    api.create(
        &PostParams::default(),
        &manifest("stuck", 10, "app:v1", spec),
    )
    .await
    .unwrap();
    wait_complete(&api, "stuck", ROLLOUT).await;

    let broken = json!({"spec": {"template": {"metadata": {"labels": {"app": "stuck", "testenv.dlite.dev/never-ready": "true"}}}}});
    api.patch("stuck", &PatchParams::default(), &Patch::Merge(&broken))
        .await
        .unwrap();

    // Old 10 -> 8 (maxUnavailable 2), new 3 -> 5 (maxSurge 3): 13 in all.
    wait_for("the rollout to stop at old 8 / new 5", ROLLOUT, || async {
        let sizes: Vec<i32> = replica_sets(&ns, "stuck")
            .await
            .iter()
            .map(rs_replicas)
            .collect();
        if sizes == [8, 5] {
            Ok(())
        } else {
            Err(format!("sizes {sizes:?}"))
        }
    })
    .await;

    // Watch Progressing until it turns False, remembering the last moment
    // the rollout made progress.
    let last_progress = std::sync::Arc::new(std::sync::Mutex::new(None));
    let timed_out = wait_for("ProgressDeadlineExceeded", Duration::from_secs(40), || {
        let api = api.clone();
        let last = last_progress.clone();
        async move {
            let dl = api.get("stuck").await.map_err(|e| e.to_string())?;
            let c = dl
                .status
                .unwrap_or_default()
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Progressing");
            match c {
                Some(c) if c.reason.as_deref() == Some("ProgressDeadlineExceeded") => Ok(c),
                Some(c) => {
                    *last.lock().unwrap() = c.last_update_time.clone();
                    Err(format!("{:?} {:?}", c.status, c.reason))
                }
                None => Err("no Progressing condition".into()),
            }
        }
    })
    .await;
    assert_eq!(timed_out.status, "False");
    let at = timed_out.last_transition_time.unwrap().0;
    let progressed = last_progress
        .lock()
        .unwrap()
        .clone()
        .expect("saw the rollout progressing")
        .0;
    let waited = at.duration_since(progressed).as_secs_f64();
    // Times are whole seconds; the deadline is 8 s and the requeue lands
    // one second after it.
    assert!(
        (8.0..=12.0).contains(&waited),
        "reported {waited}s after the last progress (deadline 8 s)"
    );

    // Scaling a stuck rollout: proportional, old 11 / new 7.
    kubectl(&["scale", "-n", &ns.name, "dl/stuck", "--replicas=15"]);
    wait_for(
        "proportional scaling to old 11 / new 7",
        ROLLOUT,
        || async {
            let sizes: Vec<i32> = replica_sets(&ns, "stuck")
                .await
                .iter()
                .map(rs_replicas)
                .collect();
            if sizes == [11, 7] {
                Ok(())
            } else {
                Err(format!("sizes {sizes:?}"))
            }
        },
    )
    .await;
    ns.cleanup().await;
}

/// Killing the controller (SIGKILL) in the middle of a rollout and starting
/// it again finishes the rollout without ever breaking the bounds.
#[tokio::test]
async fn a_killed_controller_resumes_the_rollout_within_bounds() {
    let ns = TestNamespace::new("t-kill").await;
    install_crd(&ns.client).await;
    let api: Api<DeploymentLite> = ns.api();
    let mut ctrl = start_controller(&ns, "-1");
    let spec = json!({
        "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
        "template": {"metadata": {"annotations": {"testenv.dlite.dev/ready-after": "1"}}}
    });
    api.create(&PostParams::default(), &manifest("kill", 6, "app:v1", spec))
        .await
        .unwrap();
    wait_complete(&api, "kill", ROLLOUT).await;
    let sampler = Sampler::start(&ns, "kill", 7, 5);
    set_image(&api, "kill", "app:v2").await;

    for (round, at_least) in [(2, 2), (3, 4)] {
        wait_for(
            &format!("the new ReplicaSet to reach {at_least}"),
            ROLLOUT,
            || async {
                let rses = replica_sets(&ns, "kill").await;
                let new = rses.last().map(rs_replicas).unwrap_or(0);
                if rses.len() == 2 && new >= at_least {
                    Ok(())
                } else {
                    Err(format!("{rses:?}").chars().take(200).collect())
                }
            },
        )
        .await;
        ctrl.kill();
        ctrl = start_controller(&ns, &format!("-{round}"));
    }
    let dl = wait_complete(&api, "kill", ROLLOUT).await;
    let samples = sampler.finish().await;
    assert!(
        samples.violations.is_empty(),
        "bounds broken across restarts: {:?}",
        samples.violations
    );
    assert_eq!(dl.status.unwrap().updated_replicas, 6);
    drop(ctrl);
    ns.cleanup().await;
}

/// Revisions count up; revisionHistoryLimit keeps only that many old
/// ReplicaSets.
#[tokio::test]
async fn revision_history_is_numbered_and_trimmed() {
    let (ns, _ctrl, api) = setup("t-history").await;
    api.create(
        &PostParams::default(),
        &manifest("hist", 1, "app:v1", json!({"revisionHistoryLimit": 1})),
    )
    .await
    .unwrap();
    wait_complete(&api, "hist", ROLLOUT).await;
    for v in 2..=4 {
        set_image(&api, "hist", &format!("app:v{v}")).await;
        wait_complete(&api, "hist", ROLLOUT).await;
    }
    let rses = wait_for("old ReplicaSets trimmed to 1", ROLLOUT, || async {
        let rses = replica_sets(&ns, "hist").await;
        if rses.len() == 2 {
            Ok(rses)
        } else {
            Err(format!("{} ReplicaSets", rses.len()))
        }
    })
    .await;
    // The list comes in name order, and names are hashes: sort by revision.
    let mut revisions: Vec<String> = rses
        .iter()
        .map(|r| {
            r.annotations()
                .get("dlite.dev/revision")
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    revisions.sort();
    assert_eq!(revisions, ["3", "4"]);
    ns.cleanup().await;
}

/// An orphan ReplicaSet that matches the selector is adopted; one of ours
/// that stops matching is released.
#[tokio::test]
async fn replica_sets_are_adopted_and_released_by_selector() {
    let (ns, _ctrl, api) = setup("t-adopt").await;
    let rs_api: Api<ReplicaSet> = ns.api();
    let orphan: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "adopt", "pod-template-hash": "orphan"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "adopt", "pod-template-hash": "orphan"}},
            "template": {"metadata": {"labels": {"app": "adopt", "pod-template-hash": "orphan"}},
                         "spec": {"containers": [{"name": "app", "image": "app:old"}]}}
        }
    }))
    .unwrap();
    rs_api
        .create(&PostParams::default(), &orphan)
        .await
        .unwrap();
    let dl = api
        .create(
            &PostParams::default(),
            &manifest("adopt", 1, "app:v1", json!({})),
        )
        .await
        .unwrap();
    wait_complete(&api, "adopt", ROLLOUT).await;
    wait_for("the orphan to be adopted", ROLLOUT, || async {
        let rs = rs_api.get("orphan").await.map_err(|e| e.to_string())?;
        match rs
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
        {
            Some(o) if Some(&o.uid) == dl.uid().as_ref() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let relabel = json!({"metadata": {"labels": {"app": "elsewhere"}}});
    rs_api
        .patch("orphan", &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .unwrap();
    wait_for(
        "the non-matching ReplicaSet to be released",
        ROLLOUT,
        || async {
            let rs = rs_api.get("orphan").await.map_err(|e| e.to_string())?;
            if rs.owner_references().is_empty() {
                Ok(())
            } else {
                Err(format!("{:?}", rs.owner_references()))
            }
        },
    )
    .await;
    ns.cleanup().await;
}

/// A ReplicaSet that someone else created under the name our hash gives:
/// collisionCount goes up, a Warning says why, and the rollout goes on
/// under another name.
#[tokio::test]
async fn a_name_collision_bumps_collision_count() {
    let (ns, _ctrl, api) = setup("t-collide").await;
    let dl = manifest("col", 1, "app:v1", json!({}));
    // The hash is over the template as stored (the defaulting policy adds
    // imagePullPolicy on write): a dry-run create shows it.
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let stored = api.create(&dry_run, &dl).await.unwrap();
    let hash = dlite::controller::hash::pod_template_hash(&stored.spec.template, None);
    let squatter: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": format!("col-{hash}"), "labels": {"owner": "someone-else"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"owner": "someone-else"}},
            "template": {"metadata": {"labels": {"owner": "someone-else"}},
                         "spec": {"containers": [{"name": "x", "image": "x"}]}}
        }
    }))
    .unwrap();
    ns.api::<ReplicaSet>()
        .create(&PostParams::default(), &squatter)
        .await
        .unwrap();
    api.create(&PostParams::default(), &dl).await.unwrap();
    let dl = wait_complete(&api, "col", ROLLOUT).await;
    assert_eq!(dl.status.as_ref().unwrap().collision_count, Some(1));
    let rses = replica_sets(&ns, "col").await;
    assert_eq!(rses.len(), 1);
    assert_ne!(rses[0].name_any(), format!("col-{hash}"));
    let events = kubectl(&[
        "get",
        "events",
        "-n",
        &ns.name,
        "--field-selector",
        "reason=ReplicaSetNameCollision",
    ]);
    assert!(events.contains("collisionCount raised to 1"), "{events}");
    ns.cleanup().await;
}

/// What the schema can catch, the API server rejects, naming the field.
#[tokio::test]
async fn bad_input_is_rejected_by_the_api_server() {
    let ns = TestNamespace::new("t-invalid").await;
    install_crd(&ns.client).await;
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &kube::discovery::ApiResource::erase::<DeploymentLite>(&()),
    );
    let base = serde_json::to_value(manifest("bad", 2, "app:v1", json!({}))).unwrap();
    let cases: Vec<(&str, serde_json::Value, &[&str])> = vec![
        (
            "negative replicas",
            json!({"spec": {"replicas": -1}}),
            &["spec.replicas", "greater than or equal to 0"],
        ),
        (
            "negative minReadySeconds",
            json!({"spec": {"minReadySeconds": -5}}),
            &["spec.minReadySeconds", "greater than or equal to 0"],
        ),
        (
            "negative revisionHistoryLimit",
            json!({"spec": {"revisionHistoryLimit": -1}}),
            &["spec.revisionHistoryLimit"],
        ),
        (
            "percentage without %",
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "25"}}}}),
            &["spec.strategy.rollingUpdate.maxSurge", "percentage"],
        ),
        (
            "maxUnavailable above 100%",
            json!({"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": "150%"}}}}),
            &[
                "spec.strategy.rollingUpdate.maxUnavailable",
                "must not be greater than 100%",
            ],
        ),
        (
            "both zero",
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}}}),
            &[
                "spec.strategy.rollingUpdate.maxUnavailable",
                "may not be 0 when `maxSurge` is 0",
            ],
        ),
        (
            "rollingUpdate with Recreate",
            json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}}),
            &[
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            ],
        ),
        (
            "unknown strategy type",
            json!({"spec": {"strategy": {"type": "BlueGreen"}}}),
            &["spec.strategy.type", "Unsupported value"],
        ),
        (
            "selector not matching the labels",
            json!({"spec": {"selector": {"matchLabels": {"app": "other"}}}}),
            &[
                "spec.template.metadata.labels",
                "`selector` does not match template `labels`",
            ],
        ),
        (
            "empty selector",
            json!({"spec": {"selector": {}}}),
            &["spec.selector", "empty selector is invalid for deployment"],
        ),
        (
            "progressDeadlineSeconds not above minReadySeconds",
            json!({"spec": {"minReadySeconds": 30, "progressDeadlineSeconds": 30}}),
            &[
                "spec.progressDeadlineSeconds",
                "must be greater than minReadySeconds",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (what, patch, expect) in &cases {
        let mut obj = base.clone();
        support::dl::merge(&mut obj, patch);
        obj["metadata"]["name"] = json!(format!(
            "bad-{}",
            what.replace(' ', "-").replace('%', "pct").to_lowercase()
        ));
        let obj: kube::api::DynamicObject = serde_json::from_value(obj).unwrap();
        match api.create(&PostParams::default(), &obj).await {
            Err(kube::Error::Api(s)) if s.code == 422 => {
                if !expect.iter().all(|e| s.message.contains(e)) {
                    failures.push(format!("{what}: message {:?} lacks {expect:?}", s.message));
                }
            }
            other => failures.push(format!(
                "{what}: expected 422, got {:?}",
                other.map(|_| "created")
            )),
        }
    }
    // The selector is immutable after creation.
    let base: kube::api::DynamicObject = serde_json::from_value(base).unwrap();
    api.create(&PostParams::default(), &base)
        .await
        .expect("the valid base object is accepted");
    let change = json!({"spec": {"selector": {"matchLabels": {"app": "bad", "tier": "x"}},
                                 "template": {"metadata": {"labels": {"app": "bad", "tier": "x"}}}}});
    match api
        .patch("bad", &PatchParams::default(), &Patch::Merge(&change))
        .await
    {
        Err(kube::Error::Api(s))
            if s.code == 422
                && s.message.contains("spec.selector")
                && s.message.contains("field is immutable") => {}
        other => failures.push(format!("selector change: {:?}", other.map(|_| "accepted"))),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    ns.cleanup().await;
}
