//! Plan-level tests: real objects (built from JSON, as the API server would
//! return them) go through [`plan`], and the actions and status that come
//! out are asserted exactly. The arithmetic itself is tested row by row in
//! `rollout/`; here the question is whether one sync orders it as
//! docs/controller.md §2 says, with the right objects, annotations, preconditions,
//! events and conditions.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DeploymentCondition, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{Action, EventType, Plan, SyncInput, plan, resolve_bounds};
use crate::api::{DeploymentLite, DeploymentLiteStatus, RollbackConfig};
use crate::controller::hash::pod_template_hash;
use crate::controller::rollout::progress::to_time;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// "Now" of every sync in these tests.
fn t0() -> Timestamp {
    "2024-03-01T12:00:00Z".parse().unwrap()
}

fn secs_ago(s: i64) -> Timestamp {
    t0() - SignedDuration::from_secs(s)
}

fn ts(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The DeploymentLite's pod template for `image`, as a user writes it.
fn template(image: &str) -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": image}]}})
}

/// The same template as the API server stores it inside a ReplicaSet:
/// defaulted, and labelled with the hash.
fn rs_template(image: &str, hash: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": "web", "pod-template-hash": hash}},
        "spec": {
            "containers": [{
                "name": "app", "image": image, "imagePullPolicy": "IfNotPresent",
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "resources": {}
            }],
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "terminationGracePeriodSeconds": 30,
            "schedulerName": "default-scheduler", "securityContext": {}
        }
    })
}

fn pod_template(v: Value) -> PodTemplateSpec {
    serde_json::from_value(v).expect("PodTemplateSpec fixture")
}

/// The hash the planner gives the user's template for `image`.
fn hash_of(image: &str) -> String {
    pod_template_hash(&pod_template(template(image)), None)
}

fn rs_name(image: &str) -> String {
    format!("web-{}", hash_of(image))
}

fn rv(image: &str) -> String {
    format!("rv-{image}")
}

fn uid(image: &str) -> String {
    format!("uid-{image}")
}

/// A DeploymentLite `web` in `default` (generation 1) with `replicas` of
/// `image`; every other field is defaulted by deserialization.
fn dl_json(replicas: i32, image: &str) -> Value {
    json!({
        "apiVersion": "apps.dlite.dev/v1", "kind": "DeploymentLite",
        "metadata": {"name": "web", "namespace": "default", "uid": "dl-uid", "generation": 1, "resourceVersion": "500"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": template(image)}
    })
}

fn rolling(mut v: Value, surge: Value, unavailable: Value) -> Value {
    v["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}});
    v
}

fn recreate(mut v: Value) -> Value {
    v["spec"]["strategy"] = json!({"type": "Recreate"});
    v
}

fn with_generation(mut v: Value, generation: i64) -> Value {
    v["metadata"]["generation"] = json!(generation);
    v
}

/// The DeploymentLite's own `dlite.dev/revision` annotation.
fn at_revision(mut v: Value, revision: i64) -> Value {
    v["metadata"]["annotations"] = json!({"dlite.dev/revision": revision.to_string()});
    v
}

fn dl(v: Value) -> DeploymentLite {
    serde_json::from_value(v).expect("DeploymentLite fixture")
}

/// A ReplicaSet of `image` controlled by `web`: revision annotation,
/// created `minute` minutes into the hour before now, `spec` replicas, all
/// created (status.replicas = spec), `available` of them ready and
/// available, generation observed. Name, uid and resourceVersion derive from
/// the image.
fn rs_json(image: &str, revision: i64, minute: i64, spec: i32, available: i32) -> Value {
    let hash = hash_of(image);
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": format!("web-{hash}"), "namespace": "default", "uid": uid(image),
            "resourceVersion": rv(image), "generation": 1,
            "creationTimestamp": ts(secs_ago(3600) + SignedDuration::from_mins(minute)),
            "labels": {"app": "web", "pod-template-hash": hash},
            "annotations": {"dlite.dev/revision": revision.to_string()},
            "ownerReferences": [{
                "apiVersion": "apps.dlite.dev/v1", "kind": "DeploymentLite", "name": "web", "uid": "dl-uid",
                "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "replicas": spec, "minReadySeconds": 0,
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": hash}},
            "template": rs_template(image, &hash)
        },
        "status": {"replicas": spec, "readyReplicas": available, "availableReplicas": available, "observedGeneration": 1,
                   "terminatingReplicas": 0}
    })
}

/// The `desired-replicas` / `max-replicas` annotations of the size the
/// ReplicaSet was last scaled for.
fn scaled_for(mut v: Value, desired: i32, max: i32) -> Value {
    v["metadata"]["annotations"]["dlite.dev/desired-replicas"] = json!(desired.to_string());
    v["metadata"]["annotations"]["dlite.dev/max-replicas"] = json!(max.to_string());
    v
}

/// The mark the planner leaves on a ReplicaSet whose rollout completed
/// (what automatic rollback goes back to); fixtures of revisions that
/// completed before carry it.
const COMPLETED_AT: &str = "dlite.dev/completed-at";

fn completed(mut v: Value) -> Value {
    v["metadata"]["annotations"][COMPLETED_AT] = json!(ts(secs_ago(86_400)));
    v
}

fn rs(v: Value) -> ReplicaSet {
    serde_json::from_value(v).expect("ReplicaSet fixture")
}

/// A pod of the ReplicaSet of `image` in `phase`.
fn pod(name: &str, image: &str, phase: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": name, "namespace": "default",
            "labels": {"app": "web", "pod-template-hash": hash_of(image)},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name(image), "uid": uid(image),
                "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {"containers": [{"name": "app", "image": image}]},
        "status": {"phase": phase}
    }))
    .expect("Pod fixture")
}

/// `template` with the fields [`rs_template`] shows the API server adding,
/// where absent: the fixture's stand-in for the dry-run answer the
/// reconciler passes in, consistent with the stored ReplicaSet fixtures.
fn server_defaulted(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut v = serde_json::to_value(template).expect("template serializes");
    let spec = &mut v["spec"];
    for (k, d) in [
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
    ] {
        if spec.get(k).is_none() {
            spec[k] = d;
        }
    }
    for c in spec["containers"].as_array_mut().into_iter().flatten() {
        for (k, d) in [
            ("imagePullPolicy", json!("IfNotPresent")),
            ("terminationMessagePath", json!("/dev/termination-log")),
            ("terminationMessagePolicy", json!("File")),
            ("resources", json!({})),
        ] {
            if c.get(k).is_none() {
                c[k] = d;
            }
        }
    }
    pod_template(v)
}

fn run(dl: &DeploymentLite, rses: &[ReplicaSet], pods: &[Pod]) -> Plan {
    plan(SyncInput {
        dl,
        rses,
        pods,
        template: &server_defaulted(&dl.spec.template),
        now: t0(),
    })
}

fn cond(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    last_update: Timestamp,
    last_transition: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(to_time(last_update)),
        last_transition_time: Some(to_time(last_transition)),
    }
}

fn available_true(at: Timestamp) -> DeploymentCondition {
    cond(
        "Available",
        "True",
        "MinimumReplicasAvailable",
        "Deployment has minimum availability.",
        at,
        at,
    )
}

fn get<'a>(status: &'a DeploymentLiteStatus, type_: &str) -> &'a DeploymentCondition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

/// (status, reason) of a condition.
fn sr(status: &DeploymentLiteStatus, type_: &str) -> (String, String) {
    let c = get(status, type_);
    (c.status.clone(), c.reason.clone().unwrap_or_default())
}

/// A stored status with these counts and conditions.
fn stored(
    observed_generation: i64,
    (replicas, updated, ready, available): (i32, i32, i32, i32),
    desired: i32,
    conditions: Vec<DeploymentCondition>,
) -> DeploymentLiteStatus {
    DeploymentLiteStatus {
        observed_generation: Some(observed_generation),
        replicas,
        updated_replicas: updated,
        ready_replicas: ready,
        available_replicas: available,
        unavailable_replicas: (replicas - available).max(0),
        terminating_replicas: Some(0),
        collision_count: None,
        conditions,
        selector: Some("app=web".into()),
        ready: Some(format!("{ready}/{desired}")),
    }
}

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `revision`, `desired-replicas`, `max-replicas`.
fn rs_annotations(revision: i64, desired: i32, max: i32) -> BTreeMap<String, String> {
    annotations(&[
        ("dlite.dev/revision", &revision.to_string()),
        ("dlite.dev/desired-replicas", &desired.to_string()),
        ("dlite.dev/max-replicas", &max.to_string()),
    ])
}

/// The write of a ReplicaSet of `image`, conditional on the resourceVersion
/// the fixture was read with.
fn update(image: &str, from: i32, replicas: i32, annotations: BTreeMap<String, String>) -> Action {
    Action::UpdateReplicaSet {
        name: rs_name(image),
        resource_version: rv(image),
        from,
        replicas,
        annotations,
        min_ready_seconds: 0,
    }
}

fn annotate_revision(revision: i64) -> Action {
    Action::AnnotateDeployment {
        annotations: annotations(&[("dlite.dev/revision", &revision.to_string())]),
    }
}

/// The ReplicaSet the planner should create for the user's template of
/// `image`: hash everywhere, revision/desired/max annotations, controller
/// owner reference that blocks the owner's deletion.
fn expected_new_rs(image: &str, size: i32, revision: i64, desired: i32, max: i32) -> ReplicaSet {
    let hash = hash_of(image);
    rs(json!({
        "metadata": {
            "name": format!("web-{hash}"), "namespace": "default",
            "labels": {"app": "web", "pod-template-hash": hash},
            "annotations": {
                "dlite.dev/revision": revision.to_string(),
                "dlite.dev/desired-replicas": desired.to_string(),
                "dlite.dev/max-replicas": max.to_string()
            },
            "ownerReferences": [{
                "apiVersion": "apps.dlite.dev/v1", "kind": "DeploymentLite", "name": "web", "uid": "dl-uid",
                "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "replicas": size, "minReadySeconds": 0,
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": hash}},
            "template": {
                "metadata": {"labels": {"app": "web", "pod-template-hash": hash}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        }
    }))
}

fn created(p: &Plan) -> Vec<&ReplicaSet> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateReplicaSet(rs) => Some(&**rs),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// 1. A fresh object
// ---------------------------------------------------------------------------

#[test]
fn fresh_object_creates_the_first_replica_set_at_full_size() {
    // replicas 2, default 25%/25%: maxSurge ceil(0.5) = 1, maxUnavailable 0.
    let d = dl(dl_json(2, "nginx:1"));
    let p = run(&d, &[], &[]);
    let name = rs_name("nginx:1");
    assert_eq!(
        p.actions,
        vec![
            Action::CreateReplicaSet(Box::new(expected_new_rs("nginx:1", 2, 1, 2, 3))),
            annotate_revision(1),
        ]
    );
    assert_eq!(
        p.status,
        DeploymentLiteStatus {
            observed_generation: Some(1),
            replicas: 0,
            updated_replicas: 0,
            ready_replicas: 0,
            available_replicas: 0,
            unavailable_replicas: 2,
            terminating_replicas: Some(0),
            collision_count: None,
            conditions: vec![
                cond(
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    &format!("Created new replica set \"{name}\""),
                    t0(),
                    t0()
                ),
                cond(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                    t0(),
                    t0()
                ),
            ],
            selector: Some("app=web".into()),
            ready: Some("0/2".into()),
        }
    );
    // The progress deadline (default 600 s) is watched from now.
    assert_eq!(p.requeue_after, Some(Duration::from_secs(601)));
}

#[test]
fn fresh_object_size_follows_the_surge_rule() {
    // With nothing else running the new ReplicaSet may take all of
    // `replicas` whatever the surge; Recreate also starts at full size.
    for (strategy, size, max) in [
        (rolling(dl_json(10, "nginx:1"), json!(3), json!(2)), 10, 13),
        (rolling(dl_json(10, "nginx:1"), json!(0), json!(1)), 10, 10),
        (recreate(dl_json(10, "nginx:1")), 10, 10),
    ] {
        let p = run(&dl(strategy), &[], &[]);
        assert_eq!(
            created(&p),
            vec![&expected_new_rs("nginx:1", size, 1, 10, max)]
        );
    }
    // replicas 0: created empty.
    let p = run(&dl(dl_json(0, "nginx:1")), &[], &[]);
    assert_eq!(created(&p), vec![&expected_new_rs("nginx:1", 0, 1, 0, 0)]);
}

#[test]
fn selector_string_and_expressions() {
    let mut v = dl_json(1, "nginx:1");
    v["spec"]["selector"] = json!({
        "matchLabels": {"app": "web", "tier": "fe"},
        "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}, {"key": "canary", "operator": "DoesNotExist"}]
    });
    let p = run(&dl(v), &[], &[]);
    assert_eq!(
        p.status.selector.as_deref(),
        Some("app=web,!canary,env in (dev,prod),tier=fe")
    );
}

// ---------------------------------------------------------------------------
// 2. RollingUpdate through plan()
// ---------------------------------------------------------------------------

/// replicas 10, maxSurge 3, maxUnavailable 2 (minAvailable 8, maxTotal 13),
/// rolling from nginx:1 (revision 1) to nginx:2 (revision 2). Both
/// ReplicaSets were last scaled for 10 (max 13).
fn rolling_10_3_2(old: (i32, i32), new: Option<(i32, i32)>) -> (DeploymentLite, Vec<ReplicaSet>) {
    let mut d = dl(at_revision(
        with_generation(rolling(dl_json(10, "nginx:2"), json!(3), json!(2)), 2),
        2,
    ));
    d.status = Some(stored(1, (10, 10, 10, 10), 10, vec![]));
    let mut rses = vec![rs(scaled_for(
        rs_json("nginx:1", 1, 0, old.0, old.1),
        10,
        13,
    ))];
    if let Some((spec, available)) = new {
        rses.push(rs(scaled_for(
            rs_json("nginx:2", 2, 30, spec, available),
            10,
            13,
        )));
    }
    (d, rses)
}

#[test]
fn rolling_update_first_sync_creates_at_surge_and_scales_old_down() {
    let (mut d, rses) = rolling_10_3_2((10, 10), None);
    // The previous rollout completed ten minutes ago.
    let long_ago = secs_ago(600);
    d.status = Some(stored(
        1,
        (10, 10, 10, 10),
        10,
        vec![
            available_true(long_ago),
            cond(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                "ReplicaSet \"web-x\" has successfully progressed.",
                long_ago,
                long_ago,
            ),
        ],
    ));
    d.metadata.annotations = Some(annotations(&[("dlite.dev/revision", "1")]));
    let p = run(&d, &rses, &[]);
    let new_name = rs_name("nginx:2");
    // maxTotal 13 - current 10 = 3. The same sync then takes the old
    // ReplicaSet to 8: sum(spec) 13 - minAvailable 8 - new unavailable 3 =
    // 2 may go, and 10 available - 8 = 2 are spare (as upstream's
    // rolloutRolling, which reconciles old ReplicaSets right after the
    // creation).
    assert_eq!(
        p.actions,
        vec![
            Action::CreateReplicaSet(Box::new(expected_new_rs("nginx:2", 3, 2, 10, 13))),
            annotate_revision(2),
            update("nginx:1", 10, 8, rs_annotations(1, 10, 13)),
        ]
    );
    assert_eq!(
        p.status,
        DeploymentLiteStatus {
            observed_generation: Some(2),
            replicas: 10,
            updated_replicas: 0,
            ready_replicas: 10,
            available_replicas: 10,
            // sum(spec) as decided (8 + 3) - available 10
            unavailable_replicas: 1,
            terminating_replicas: Some(0),
            collision_count: None,
            conditions: vec![
                available_true(long_ago),
                // Same status, new reason: lastTransitionTime kept.
                cond(
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    &format!("Created new replica set \"{new_name}\""),
                    t0(),
                    long_ago
                ),
            ],
            selector: Some("app=web".into()),
            ready: Some("10/10".into()),
        }
    );
    assert_eq!(p.requeue_after, Some(Duration::from_secs(601)));
}

#[test]
fn rolling_update_steps_through_plan() {
    // (old spec, old available), (new spec, new available) -> the writes.
    let n = rs_annotations(2, 10, 13);
    let o = rs_annotations(1, 10, 13);
    type Step = ((i32, i32), (i32, i32), Vec<Action>);
    let steps: Vec<Step> = vec![
        // 13 - 11 = 2 more surge room.
        ((8, 8), (3, 0), vec![update("nginx:2", 3, 5, n.clone())]),
        // At maxTotal, and 13 - 8 - 5 unavailable = 0 may go: wait.
        ((8, 8), (5, 0), vec![]),
        // The new pods are available: 13 available - minAvailable 8 = 5 spare.
        ((8, 8), (5, 5), vec![update("nginx:1", 8, 3, o.clone())]),
        ((3, 3), (5, 5), vec![update("nginx:2", 5, 10, n.clone())]),
        ((3, 3), (10, 5), vec![]),
        ((3, 3), (10, 10), vec![update("nginx:1", 3, 0, o.clone())]),
        // Complete: nothing to write (no autoRollback, so no mark).
        ((0, 0), (10, 10), vec![]),
    ];
    for (old, new, want) in steps {
        let (d, rses) = rolling_10_3_2(old, Some(new));
        let p = run(&d, &rses, &[]);
        assert_eq!(p.actions, want, "old {old:?} new {new:?}");
    }
}

#[test]
fn auto_rollback_turned_on_with_a_new_release_marks_the_revision_before_it() {
    // nginx:1 completed (the stored status says so) while autoRollback was
    // off, so it carries no mark; the change that brought nginx:2 also
    // turned autoRollback on. Mid-rollout: nginx:2 at 3 of 10, not ready.
    let completed_at = secs_ago(600);
    let completion = cond(
        "Progressing",
        "True",
        "NewReplicaSetAvailable",
        &format!(
            "ReplicaSet \"{}\" has successfully progressed.",
            rs_name("nginx:1")
        ),
        completed_at,
        secs_ago(900),
    );
    for auto_rollback in [false, true] {
        let (mut d, rses) = rolling_10_3_2((8, 8), Some((3, 0)));
        d.spec.auto_rollback = auto_rollback;
        d.status = Some(stored(1, (10, 10, 10, 10), 10, vec![completion.clone()]));
        let p = run(&d, &rses, &[]);
        let marks: Vec<&Action> = p
            .actions
            .iter()
            .filter(|a| matches!(a, Action::UpdateReplicaSet { annotations, .. } if annotations.contains_key(COMPLETED_AT)))
            .collect();
        if !auto_rollback {
            assert!(marks.is_empty(), "{:?}", p.actions);
            continue;
        }
        let mut want = rs_annotations(1, 10, 13);
        want.insert(COMPLETED_AT.into(), ts(completed_at));
        assert_eq!(marks, [&update("nginx:1", 8, 8, want)], "{:?}", p.actions);
    }
}

#[test]
fn a_completed_revision_is_marked_only_for_auto_rollback() {
    let marked = {
        let mut n = rs_annotations(2, 10, 13);
        n.insert(COMPLETED_AT.into(), ts(t0()));
        n
    };
    for auto_rollback in [false, true] {
        let (mut d, rses) = rolling_10_3_2((0, 0), Some((10, 10)));
        d.spec.auto_rollback = auto_rollback;
        let p = run(&d, &rses, &[]);
        let want = if auto_rollback {
            vec![update("nginx:2", 10, 10, marked.clone())]
        } else {
            vec![]
        };
        assert_eq!(p.actions, want, "autoRollback {auto_rollback}");
        // Once marked, never written again.
        let (mut d, mut rses) = rolling_10_3_2((0, 0), Some((10, 10)));
        d.spec.auto_rollback = auto_rollback;
        rses[1].metadata.annotations = Some(marked.clone());
        assert_eq!(
            run(&d, &rses, &[]).actions,
            vec![],
            "autoRollback {auto_rollback}, marked"
        );
    }
}

#[test]
fn scenario_table_rows_through_plan() {
    // Rows 2-5 (maxUnavailable 0) and 7-11 of the scenario table, as whole
    // syncs: (row, replicas, surge, unavailable, (old spec, avail),
    // (new spec, avail), old size written, new size written).
    type Row = (
        u32,
        i32,
        i32,
        i32,
        (i32, i32),
        (i32, i32),
        Option<i32>,
        Option<i32>,
    );
    let rows: Vec<Row> = vec![
        (2, 10, 2, 0, (10, 10), (0, 0), None, Some(2)),
        (3, 10, 2, 0, (5, 5), (0, 0), None, Some(7)),
        (4, 10, 2, 0, (10, 10), (2, 0), None, None),
        (5, 10, 2, 0, (2, 2), (11, 11), None, Some(10)),
        (7, 10, 0, 0, (10, 10), (0, 0), Some(9), None),
        (8, 10, 0, 2, (10, 10), (0, 0), Some(8), None),
        (9, 10, 0, 2, (10, 8), (0, 0), Some(8), None),
        (10, 10, 0, 2, (10, 9), (0, 0), Some(8), None),
        (11, 10, 0, 2, (8, 8), (2, 0), None, None),
    ];
    for (row, replicas, surge, unavailable, old, new, old_to, new_to) in rows {
        let d = dl(at_revision(
            rolling(
                dl_json(replicas, "nginx:2"),
                json!(surge),
                json!(unavailable),
            ),
            2,
        ));
        let max = replicas + surge;
        let rses = vec![
            rs(scaled_for(
                rs_json("nginx:1", 1, 0, old.0, old.1),
                replicas,
                max,
            )),
            rs(scaled_for(
                rs_json("nginx:2", 2, 30, new.0, new.1),
                replicas,
                max,
            )),
        ];
        let p = run(&d, &rses, &[]);
        let mut want = vec![];
        if let Some(to) = new_to {
            want.push(update(
                "nginx:2",
                new.0,
                to,
                rs_annotations(2, replicas, max),
            ));
        }
        if let Some(to) = old_to {
            want.push(update(
                "nginx:1",
                old.0,
                to,
                rs_annotations(1, replicas, max),
            ));
        }
        assert_eq!(p.actions, want, "row {row}");
    }
}

#[test]
fn a_write_refreshes_stale_annotations_and_keeps_the_read_resource_version() {
    // The old ReplicaSet was scaled for maxSurge 2 (max 12); the object now
    // says 3. Its next write carries the current values.
    let d = dl(at_revision(
        rolling(dl_json(10, "nginx:2"), json!(3), json!(2)),
        2,
    ));
    let rses = vec![
        rs(scaled_for(rs_json("nginx:1", 1, 0, 10, 10), 10, 12)),
        rs(scaled_for(rs_json("nginx:2", 2, 30, 3, 0), 10, 13)),
    ];
    let p = run(&d, &rses, &[]);
    // maxTotal 13, current 13: new stays; old: 13 - 8 - 3 = 2.
    assert_eq!(
        p.actions,
        vec![Action::UpdateReplicaSet {
            name: rs_name("nginx:1"),
            resource_version: "rv-nginx:1".into(),
            from: 10,
            replicas: 8,
            annotations: rs_annotations(1, 10, 13),
            min_ready_seconds: 0,
        }]
    );
}

#[test]
fn min_ready_seconds_follows_the_object_on_the_new_replica_set() {
    let mut v = at_revision(rolling(dl_json(3, "nginx:1"), json!(1), json!(0)), 1);
    v["spec"]["minReadySeconds"] = json!(5);
    let rses = vec![rs(completed(scaled_for(
        rs_json("nginx:1", 1, 0, 3, 3),
        3,
        4,
    )))];
    let p = run(&dl(v), &rses, &[]);
    let mut want = rs_annotations(1, 3, 4);
    want.insert(COMPLETED_AT.into(), ts(secs_ago(86_400)));
    assert_eq!(
        p.actions,
        vec![Action::UpdateReplicaSet {
            name: rs_name("nginx:1"),
            resource_version: rv("nginx:1"),
            from: 3,
            replicas: 3,
            annotations: want,
            min_ready_seconds: 5,
        }]
    );
}

// ---------------------------------------------------------------------------
// 3. Scaling events: proportional scaling
// ---------------------------------------------------------------------------

#[test]
fn scaling_event_scales_proportionally() {
    // Row 30: 10 (surge 3, unavailable 2) -> 15 with old 8 / new 5: allowed
    // 18, 5 to add; old round(8*18/13) = 11, new round(5*18/13) = 7.
    // Row 28: 10 (surge 3) -> 50 (surge 6): allowed 56; old 34, new 22.
    for (replicas, surge, old_to, new_to) in [(15, 3, 11, 7), (50, 6, 34, 22)] {
        let mut d = dl(at_revision(
            rolling(dl_json(replicas, "nginx:2"), json!(surge), json!(2)),
            2,
        ));
        let progressing = cond(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            "ReplicaSet \"x\" is progressing.",
            secs_ago(30),
            secs_ago(90),
        );
        d.status = Some(stored(
            1,
            (13, 5, 8, 8),
            10,
            vec![available_true(secs_ago(90)), progressing.clone()],
        ));
        let rses = vec![
            rs(scaled_for(rs_json("nginx:1", 1, 0, 8, 8), 10, 13)),
            rs(scaled_for(rs_json("nginx:2", 2, 30, 5, 0), 10, 13)),
        ];
        let p = run(&d, &rses, &[]);
        let max = replicas + surge;
        // Largest first; every active ReplicaSet is written with the new
        // annotations.
        assert_eq!(
            p.actions,
            vec![
                update("nginx:1", 8, old_to, rs_annotations(1, replicas, max)),
                update("nginx:2", 5, new_to, rs_annotations(2, replicas, max)),
            ]
        );
        // A scaling sync does not touch Progressing.
        assert_eq!(get(&p.status, "Progressing"), &progressing);
        assert_eq!(p.requeue_after, Some(Duration::from_secs(600 - 30 + 1)));
    }
}

#[test]
fn scaling_a_settled_object_scales_its_only_replica_set() {
    // Row 16: 10 -> 12 with only the new ReplicaSet active.
    let d = dl(at_revision(dl_json(12, "nginx:2"), 2));
    let rses = vec![
        rs(scaled_for(rs_json("nginx:1", 1, 0, 0, 0), 10, 13)),
        rs(scaled_for(rs_json("nginx:2", 2, 30, 10, 10), 10, 13)),
    ];
    let p = run(&d, &rses, &[]);
    // 25% of 12: surge 3.
    assert_eq!(
        p.actions,
        vec![update("nginx:2", 10, 12, rs_annotations(2, 12, 15))]
    );
}

// ---------------------------------------------------------------------------
// 4-5. Pause and resume
// ---------------------------------------------------------------------------

#[test]
fn paused_object_creates_nothing_but_still_scales() {
    // Template changed to nginx:2 and replicas 3 -> 5 while paused.
    let mut v = at_revision(dl_json(5, "nginx:2"), 1);
    v["spec"]["paused"] = json!(true);
    let mut d = dl(with_generation(v, 3));
    let done = secs_ago(600);
    d.status = Some(stored(
        1,
        (3, 3, 3, 3),
        3,
        vec![
            available_true(done),
            cond(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                "done",
                done,
                done,
            ),
        ],
    ));
    let rses = vec![rs(scaled_for(rs_json("nginx:1", 1, 0, 3, 3), 3, 4))];
    let p = run(&d, &rses, &[]);
    // 25% of 5: surge 2.
    assert_eq!(
        p.actions,
        vec![update("nginx:1", 3, 5, rs_annotations(1, 5, 7))]
    );
    assert!(created(&p).is_empty());
    assert_eq!(
        get(&p.status, "Progressing"),
        &cond(
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            t0(),
            t0()
        )
    );
    assert_eq!(p.status.observed_generation, Some(3));
    // The deadline does not tick while paused.
    assert_eq!(p.requeue_after, None);

    // The next sync (condition already there) changes nothing more.
    let mut d2 = d.clone();
    d2.status = Some(p.status.clone());
    let rses = vec![rs(scaled_for(rs_json("nginx:1", 1, 0, 5, 5), 5, 7))];
    let p2 = run(&d2, &rses, &[]);
    assert_eq!(p2.actions, vec![]);
    assert_eq!(
        get(&p2.status, "Progressing"),
        get(&p.status, "Progressing")
    );
}

#[test]
fn paused_object_scales_a_rollout_proportionally() {
    // Row 30 again, but paused: docs/controller.md §8 runs while paused.
    let mut v = at_revision(rolling(dl_json(15, "nginx:2"), json!(3), json!(2)), 2);
    v["spec"]["paused"] = json!(true);
    let rses = vec![
        rs(scaled_for(rs_json("nginx:1", 1, 0, 8, 8), 10, 13)),
        rs(scaled_for(rs_json("nginx:2", 2, 30, 5, 0), 10, 13)),
    ];
    let p = run(&dl(v), &rses, &[]);
    assert_eq!(
        p.actions,
        vec![
            update("nginx:1", 8, 11, rs_annotations(1, 15, 18)),
            update("nginx:2", 5, 7, rs_annotations(2, 15, 18)),
        ]
    );
}

#[test]
fn pausing_a_timed_out_rollout_keeps_the_failure() {
    // Upstream's checkPausedConditions: a reported lack of progress is not
    // overwritten by the paused condition.
    let mut v = at_revision(dl_json(3, "nginx:2"), 2);
    v["spec"]["paused"] = json!(true);
    let mut d = dl(v);
    let timed_out = cond(
        "Progressing",
        "False",
        "ProgressDeadlineExceeded",
        "timed out",
        secs_ago(60),
        secs_ago(60),
    );
    d.status = Some(stored(1, (3, 3, 0, 0), 3, vec![timed_out.clone()]));
    let rses = vec![rs(scaled_for(rs_json("nginx:2", 2, 0, 3, 0), 3, 4))];
    let p = run(&d, &rses, &[]);
    assert_eq!(get(&p.status, "Progressing"), &timed_out);
}

#[test]
fn resume_sets_progressing_unknown_resumed_and_restarts_the_clock() {
    // replicas 3, surge 1, unavailable 0: new 2 (unavailable) + old 2 = 4 =
    // maxTotal, and nothing may go: the rollout waits.
    let mut d = dl(at_revision(
        with_generation(rolling(dl_json(3, "nginx:2"), json!(1), json!(0)), 2),
        2,
    ));
    let paused_at = secs_ago(3000);
    d.status = Some(stored(
        2,
        (4, 2, 2, 2),
        3,
        vec![
            cond(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                paused_at,
                paused_at,
            ),
            cond(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                paused_at,
                paused_at,
            ),
        ],
    ));
    let rses = vec![
        rs(scaled_for(rs_json("nginx:1", 1, 0, 2, 2), 3, 4)),
        rs(scaled_for(rs_json("nginx:2", 2, 30, 2, 0), 3, 4)),
    ];
    let p = run(&d, &rses, &[]);
    assert_eq!(p.actions, vec![]);
    assert_eq!(
        get(&p.status, "Progressing"),
        // Same status (Unknown), new reason: new lastUpdateTime only.
        &cond(
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed",
            t0(),
            paused_at
        )
    );
    // The deadline counts from the resume, not from the pause.
    assert_eq!(p.requeue_after, Some(Duration::from_secs(601)));
}

#[test]
fn resume_then_rollout_proceeds() {
    let mut d = dl(at_revision(with_generation(dl_json(3, "nginx:2"), 2), 1));
    let paused_at = secs_ago(3000);
    d.status = Some(stored(
        2,
        (3, 3, 3, 3),
        3,
        vec![
            available_true(paused_at),
            cond(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                paused_at,
                paused_at,
            ),
        ],
    ));
    let rses = vec![rs(scaled_for(rs_json("nginx:1", 1, 0, 3, 3), 3, 4))];
    let p = run(&d, &rses, &[]);
    // 25% of 3: surge 1 -> the new ReplicaSet starts at 1.
    assert_eq!(created(&p), vec![&expected_new_rs("nginx:2", 1, 2, 3, 4)]);
    assert_eq!(
        sr(&p.status, "Progressing"),
        ("True".into(), "NewReplicaSetCreated".into())
    );
}

// ---------------------------------------------------------------------------
// 6. Rollback
// ---------------------------------------------------------------------------

/// Revisions 1, 2, 3 (nginx:1..3), each completed in its time; the object
/// runs revision 3.
fn history_123() -> Vec<ReplicaSet> {
    vec![
        rs(completed(scaled_for(rs_json("nginx:1", 1, 0, 0, 0), 3, 4))),
        rs(completed(scaled_for(rs_json("nginx:2", 2, 10, 0, 0), 3, 4))),
        rs(completed(scaled_for(rs_json("nginx:3", 3, 20, 3, 3), 3, 4))),
    ]
}

fn rollback_to(image: &str, revision: i64) -> DeploymentLite {
    let mut d = dl(at_revision(dl_json(3, image), 3));
    d.spec.rollback_to = Some(RollbackConfig { revision });
    d
}

/// The template a rollback to the ReplicaSet of `image` writes: the stored
/// (defaulted) template without the hash label.
fn rolled_back_template(image: &str) -> PodTemplateSpec {
    let mut t = rs_template(image, "x");
    t["metadata"]["labels"] = json!({"app": "web"});
    pod_template(t)
}

#[test]
fn rollback_to_previous_revision() {
    let p = run(&rollback_to("nginx:3", 0), &history_123(), &[]);
    assert_eq!(
        p.actions,
        vec![
            Action::Rollback {
                template: Some(Box::new(rolled_back_template("nginx:2"))),
                annotations: BTreeMap::new()
            },
            Action::Event {
                type_: EventType::Normal,
                reason: "DeploymentRollback",
                message: "Rolled back deployment \"web\" to revision 2".into(),
            },
        ]
    );
}

#[test]
fn rollback_to_an_explicit_revision_carries_its_change_cause() {
    let mut rses = history_123();
    rses[0]
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("kubernetes.io/change-cause".into(), "v1 release".into());
    let p = run(&rollback_to("nginx:3", 1), &rses, &[]);
    assert_eq!(
        p.actions,
        vec![
            Action::Rollback {
                template: Some(Box::new(rolled_back_template("nginx:1"))),
                annotations: annotations(&[("kubernetes.io/change-cause", "v1 release")]),
            },
            Action::Event {
                type_: EventType::Normal,
                reason: "DeploymentRollback",
                message: "Rolled back deployment \"web\" to revision 1".into(),
            },
        ]
    );
}

#[test]
fn rollback_to_a_missing_revision_is_refused_and_cleared() {
    let p = run(&rollback_to("nginx:3", 9), &history_123(), &[]);
    assert_eq!(
        p.actions,
        vec![
            Action::Event {
                type_: EventType::Warning,
                reason: "DeploymentRollbackRevisionNotFound",
                message: "Unable to find the revision to rollback to.".into(),
            },
            Action::Rollback {
                template: None,
                annotations: BTreeMap::new()
            },
        ]
    );
    // Only one revision: there is no previous one.
    let only = vec![rs(scaled_for(rs_json("nginx:3", 1, 0, 3, 3), 3, 4))];
    let p = run(&rollback_to("nginx:3", 0), &only, &[]);
    assert_eq!(
        p.actions,
        vec![
            // The revision is synced first (the object said 3, its only
            // ReplicaSet says 1), as upstream's rollback does.
            annotate_revision(1),
            Action::Event {
                type_: EventType::Warning,
                reason: "DeploymentRollbackRevisionNotFound",
                message: "Unable to find last revision.".into(),
            },
            Action::Rollback {
                template: None,
                annotations: BTreeMap::new()
            },
        ]
    );
}

#[test]
fn rollback_to_the_current_template_is_refused_and_cleared() {
    // The object holds the user's template, its ReplicaSet the defaulted
    // copy: still the same template (docs/controller.md §1).
    let unchanged = vec![
        Action::Event {
            type_: EventType::Warning,
            reason: "DeploymentRollbackTemplateUnchanged",
            message:
                "The rollback revision contains the same template as current deployment \"web\""
                    .into(),
        },
        Action::Rollback {
            template: None,
            annotations: BTreeMap::new(),
        },
    ];
    let p = run(&rollback_to("nginx:3", 3), &history_123(), &[]);
    assert_eq!(p.actions, unchanged);
    // After a rollback the object holds the defaulted copy itself.
    let mut d = rollback_to("nginx:3", 3);
    d.spec.template = rolled_back_template("nginx:3");
    let p = run(&d, &history_123(), &[]);
    assert_eq!(p.actions, unchanged);
}

#[test]
fn paused_object_is_not_rolled_back_and_keeps_its_history() {
    // Upstream cleans up while paused only when no rollback is pending:
    // the revision to go back to must survive until the resume.
    let mut d = rollback_to("nginx:3", 1);
    d.spec.paused = true;
    d.spec.revision_history_limit = Some(0);
    let p = run(&d, &history_123(), &[]);
    assert_eq!(p.actions, vec![]);
    // Without the request, paused cleanup does run.
    d.spec.rollback_to = None;
    let p = run(&d, &history_123(), &[]);
    assert_eq!(
        p.actions,
        vec![
            Action::DeleteReplicaSet {
                name: rs_name("nginx:1"),
                uid: uid("nginx:1"),
                resource_version: rv("nginx:1")
            },
            Action::DeleteReplicaSet {
                name: rs_name("nginx:2"),
                uid: uid("nginx:2"),
                resource_version: rv("nginx:2")
            },
        ]
    );
}

#[test]
fn after_a_rollback_the_old_replica_set_is_reactivated_under_a_new_revision() {
    // The spec now holds revision 2's (defaulted) template: its hash differs
    // from RS-2's label, so RS-2 is found by the semantic comparison.
    let mut d = dl(at_revision(with_generation(dl_json(3, "nginx:3"), 2), 3));
    d.spec.template = rolled_back_template("nginx:2");
    assert_ne!(
        pod_template_hash(&d.spec.template, None),
        hash_of("nginx:2")
    );
    let done = secs_ago(600);
    d.status = Some(stored(
        1,
        (3, 3, 3, 3),
        3,
        vec![
            available_true(done),
            cond(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                "done",
                done,
                done,
            ),
        ],
    ));
    let p = run(&d, &history_123(), &[]);
    // History 1, 2, 3 -> 1, 3, 4: RS-2 becomes revision 4 with history "2",
    // and scales up by the surge (25% of 3 = 1) in the same, single write:
    // both changes are conditional on the resourceVersion as read, so two
    // writes would see the second refused.
    let mut want = rs_annotations(4, 3, 4);
    want.insert("dlite.dev/revision-history".into(), "2".into());
    want.insert(COMPLETED_AT.into(), ts(secs_ago(86_400)));
    assert_eq!(
        p.actions,
        vec![update("nginx:2", 0, 1, want), annotate_revision(4)]
    );
    assert!(created(&p).is_empty());
    assert_eq!(p.status.updated_replicas, 0);
    assert_eq!(
        sr(&p.status, "Progressing"),
        ("True".into(), "NewReplicaSetAvailable".into())
    );

    // A second rollback ("undo" again) finds revision 3 as the previous one.
    let mut rses = history_123();
    let anns = rses[1].metadata.annotations.as_mut().unwrap();
    anns.insert("dlite.dev/revision".into(), "4".into());
    anns.insert("dlite.dev/revision-history".into(), "2".into());
    let mut d2 = d.clone();
    d2.spec.rollback_to = Some(RollbackConfig { revision: 0 });
    let p = run(&d2, &rses, &[]);
    // The object's revision annotation is brought to 4 first, as
    // upstream's rollback syncs the revision before rolling back.
    assert_eq!(p.actions[0], annotate_revision(4));
    assert_eq!(
        p.actions[1],
        Action::Rollback {
            template: Some(Box::new(rolled_back_template("nginx:3"))),
            annotations: BTreeMap::new()
        }
    );

    // Re-activated again later: the history grows.
    let mut d3 = d.clone();
    d3.spec.template = rolled_back_template("nginx:3");
    let mut rses = history_123();
    rses[1]
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("dlite.dev/revision".into(), "4".into());
    rses[2]
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("dlite.dev/revision-history".into(), "1".into());
    let p = run(&d3, &rses, &[]);
    let mut want = rs_annotations(5, 3, 4);
    want.insert("dlite.dev/revision-history".into(), "1,3".into());
    want.insert(COMPLETED_AT.into(), ts(secs_ago(86_400)));
    assert_eq!(
        p.actions,
        vec![update("nginx:3", 3, 3, want), annotate_revision(5)]
    );
}

// ---------------------------------------------------------------------------
// 7. Recreate
// ---------------------------------------------------------------------------

fn recreate_dl() -> DeploymentLite {
    dl(at_revision(
        with_generation(recreate(dl_json(3, "nginx:2")), 2),
        1,
    ))
}

#[test]
fn recreate_scales_old_down_first() {
    let rses = vec![rs(scaled_for(rs_json("nginx:1", 1, 0, 3, 3), 3, 3))];
    let pods: Vec<Pod> = (0..3)
        .map(|i| pod(&format!("old-{i}"), "nginx:1", "Running"))
        .collect();
    let p = run(&recreate_dl(), &rses, &pods);
    assert_eq!(
        p.actions,
        vec![update("nginx:1", 3, 0, rs_annotations(1, 3, 3))]
    );
}

#[test]
fn recreate_creates_the_new_replica_set_once_old_pods_are_gone() {
    let empty_old = vec![rs(scaled_for(rs_json("nginx:1", 1, 0, 0, 0), 3, 3))];
    let want = vec![
        Action::CreateReplicaSet(Box::new(expected_new_rs("nginx:2", 3, 2, 3, 3))),
        annotate_revision(2),
    ];
    // No pods at all.
    assert_eq!(run(&recreate_dl(), &empty_old, &[]).actions, want);
    // Only finished pods.
    let finished = vec![
        pod("a", "nginx:1", "Succeeded"),
        pod("b", "nginx:1", "Failed"),
    ];
    let p = run(&recreate_dl(), &empty_old, &finished);
    assert_eq!(p.actions, want);
    assert_eq!(
        sr(&p.status, "Progressing"),
        ("True".into(), "NewReplicaSetCreated".into())
    );
}

#[test]
fn recreate_waits_while_old_pods_may_run() {
    let empty_old = vec![rs(scaled_for(rs_json("nginx:1", 1, 0, 0, 0), 3, 3))];
    for phase in ["Pending", "Running", "Unknown"] {
        let pods = vec![pod("a", "nginx:1", "Succeeded"), pod("b", "nginx:1", phase)];
        let p = run(&recreate_dl(), &empty_old, &pods);
        assert_eq!(p.actions, vec![], "{phase}");
    }
    // The old ReplicaSet still reports a pod that the cache has not shown.
    let mut reporting = rs_json("nginx:1", 1, 0, 0, 0);
    reporting["status"]["replicas"] = json!(1);
    let p = run(&recreate_dl(), &[rs(scaled_for(reporting, 3, 3))], &[]);
    assert_eq!(p.actions, vec![]);
}

#[test]
fn recreate_scales_an_existing_new_replica_set_to_full_size() {
    let rses = vec![
        rs(scaled_for(rs_json("nginx:1", 1, 0, 0, 0), 3, 3)),
        rs(scaled_for(rs_json("nginx:2", 2, 30, 0, 0), 3, 3)),
    ];
    let d = dl(at_revision(recreate(dl_json(3, "nginx:2")), 2));
    let p = run(&d, &rses, &[]);
    assert_eq!(
        p.actions,
        vec![update("nginx:2", 0, 3, rs_annotations(2, 3, 3))]
    );
}

/// A Recreate rollout whose new ReplicaSet (nginx:2) exists, scaled up but
/// with no pods yet, and the old one is empty: the Progressing condition
/// still reads `completion`, as when the creating sync's status write was
/// refused with a 409 (seen in the autoRollback cluster test: the rollout
/// then never timed out).
fn recreate_after_completion(completion: DeploymentCondition, new_created_minute: i64) -> Plan {
    let mut d = recreate_dl();
    d.status = Some(stored(
        2,
        (0, 0, 0, 0),
        3,
        vec![available_true(secs_ago(7200)), completion],
    ));
    let mut new = scaled_for(rs_json("nginx:2", 2, new_created_minute, 3, 0), 3, 3);
    new["status"]["replicas"] = json!(0);
    let rses = vec![
        rs(completed(scaled_for(rs_json("nginx:1", 1, 0, 0, 0), 3, 3))),
        rs(new),
    ];
    run(&d, &rses, &[])
}

fn completion_of(image: &str, at: Timestamp) -> DeploymentCondition {
    let msg = format!(
        "ReplicaSet \"{}\" has successfully progressed.",
        rs_name(image)
    );
    cond(
        "Progressing",
        "True",
        "NewReplicaSetAvailable",
        &msg,
        at,
        at,
    )
}

#[test]
fn a_lost_creation_record_is_restored_and_the_deadline_runs_from_the_creation() {
    // Completed (nginx:1) an hour and a half ago; nginx:2 created 60 s ago.
    let p = recreate_after_completion(completion_of("nginx:1", secs_ago(5400)), 59);
    let c = get(&p.status, "Progressing");
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("True", Some("NewReplicaSetCreated"))
    );
    let msg = format!("Created new replica set \"{}\"", rs_name("nginx:2"));
    assert_eq!(c.message.as_deref(), Some(msg.as_str()));
    assert_eq!(c.last_update_time, Some(to_time(secs_ago(60))));
    // True before and after: the transition time stays.
    assert_eq!(c.last_transition_time, Some(to_time(secs_ago(5400))));
    assert_eq!(p.requeue_after, Some(Duration::from_secs(600 - 60 + 1)));

    // Created 20 minutes ago with no pod since: past the 600 s deadline.
    let p = recreate_after_completion(completion_of("nginx:1", secs_ago(5400)), 40);
    assert_eq!(
        sr(&p.status, "Progressing"),
        ("False".into(), "ProgressDeadlineExceeded".into())
    );
}

#[test]
fn a_completion_after_the_new_replica_set_was_created_is_left_as_upstream_leaves_it() {
    // A rollback to an existing, older ReplicaSet: created (minute 30)
    // before the recorded completion of another one (60 s ago). Upstream
    // keeps NewReplicaSetAvailable while status.replicas == updatedReplicas.
    let completion = completion_of("nginx:1", secs_ago(60));
    let p = recreate_after_completion(completion.clone(), 30);
    assert_eq!(get(&p.status, "Progressing"), &completion);
    assert_eq!(p.requeue_after, None);
    // The completion of the new ReplicaSet itself is its own record.
    let own = completion_of("nginx:2", secs_ago(5400));
    let p = recreate_after_completion(own.clone(), 59);
    assert_eq!(get(&p.status, "Progressing"), &own);
}

// ---------------------------------------------------------------------------
// 8. Progress deadline
// ---------------------------------------------------------------------------

/// A stuck rollout (replicas 10, surge 3, unavailable 2; new 5 of which
/// none available, old 8): nothing may move, and the stored status already
/// says so.
fn stuck(last_update_secs_ago: i64) -> (DeploymentLite, Vec<ReplicaSet>) {
    let mut v = at_revision(
        with_generation(rolling(dl_json(10, "nginx:2"), json!(3), json!(2)), 2),
        2,
    );
    v["spec"]["progressDeadlineSeconds"] = json!(10);
    let mut d = dl(v);
    d.status = Some(stored(
        2,
        (13, 5, 8, 8),
        10,
        vec![
            available_true(secs_ago(60)),
            cond(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                "progressing",
                secs_ago(last_update_secs_ago),
                secs_ago(60),
            ),
        ],
    ));
    let rses = vec![
        rs(scaled_for(rs_json("nginx:1", 1, 0, 8, 8), 10, 13)),
        rs(scaled_for(rs_json("nginx:2", 2, 30, 5, 0), 10, 13)),
    ];
    (d, rses)
}

#[test]
fn deadline_exceeded_without_progress() {
    let (d, rses) = stuck(20);
    let p = run(&d, &rses, &[]);
    assert_eq!(p.actions, vec![]);
    let name = rs_name("nginx:2");
    assert_eq!(
        get(&p.status, "Progressing"),
        &cond(
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            &format!("ReplicaSet \"{name}\" has timed out progressing."),
            t0(),
            t0()
        )
    );
    assert_eq!(p.requeue_after, None);
    // Reported once; the next sync keeps it as it is.
    let mut d2 = d.clone();
    d2.status = Some(p.status.clone());
    let p2 = run(&d2, &rses, &[]);
    assert_eq!(p2.status, p.status);
}

#[test]
fn deadline_not_yet_exceeded_requeues_at_the_deadline() {
    let (d, rses) = stuck(3);
    let p = run(&d, &rses, &[]);
    assert_eq!(p.actions, vec![]);
    // Unchanged: no progress, no timeout.
    assert_eq!(p.status, d.status.clone().unwrap());
    // 7 s left, plus one so the strict comparison holds.
    assert_eq!(p.requeue_after, Some(Duration::from_secs(8)));
}

#[test]
fn progress_refreshes_the_deadline_clock() {
    let (mut d, mut rses) = stuck(20);
    // Two new pods became ready and available since the stored status.
    rses[1] = rs(scaled_for(rs_json("nginx:2", 2, 30, 5, 2), 10, 13));
    d.status.as_mut().unwrap().conditions[1].last_update_time = Some(to_time(secs_ago(20)));
    let p = run(&d, &rses, &[]);
    assert_eq!(
        get(&p.status, "Progressing"),
        &cond(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{}\" is progressing.", rs_name("nginx:2")),
            t0(),
            secs_ago(60)
        )
    );
    assert_eq!(p.requeue_after, Some(Duration::from_secs(11)));
}

#[test]
fn no_deadline_means_no_progressing_condition() {
    // Unset, and the largest int32 as upstream's HasProgressDeadline says.
    for deadline in [None, Some(i32::MAX)] {
        let mut d = dl(dl_json(2, "nginx:1"));
        d.spec.progress_deadline_seconds = deadline;
        let p = run(&d, &[], &[]);
        assert_eq!(
            p.status
                .conditions
                .iter()
                .map(|c| c.type_.as_str())
                .collect::<Vec<_>>(),
            vec!["Available"],
            "progressDeadlineSeconds {deadline:?}"
        );
        assert_eq!(p.requeue_after, None);
    }
    // A stuck rollout with the largest deadline never times out.
    let (mut d, rses) = stuck(100_000);
    d.spec.progress_deadline_seconds = Some(i32::MAX);
    let p = run(&d, &rses, &[]);
    assert!(
        p.status.conditions.iter().all(|c| c.type_ != "Progressing"),
        "{:?}",
        p.status.conditions
    );
    assert_eq!(p.requeue_after, None);
}

// ---------------------------------------------------------------------------
// 9. Completion and history cleanup
// ---------------------------------------------------------------------------

fn complete_object(stored_available: i32) -> (DeploymentLite, Vec<ReplicaSet>) {
    let mut d = dl(at_revision(dl_json(3, "nginx:3"), 3));
    d.spec.revision_history_limit = Some(1);
    d.status = Some(stored(
        1,
        (3, 3, stored_available, stored_available),
        3,
        vec![
            available_true(secs_ago(60)),
            cond(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                "progressing",
                secs_ago(30),
                secs_ago(60),
            ),
        ],
    ));
    (d, history_123())
}

#[test]
fn complete_rollout_reports_and_cleans_history() {
    let (d, rses) = complete_object(3);
    let p = run(&d, &rses, &[]);
    // Two old ReplicaSets, limit 1: the lowest revision goes, conditional
    // on its uid and resourceVersion.
    assert_eq!(
        p.actions,
        vec![Action::DeleteReplicaSet {
            name: rs_name("nginx:1"),
            uid: "uid-nginx:1".into(),
            resource_version: "rv-nginx:1".into(),
        }]
    );
    let name = rs_name("nginx:3");
    assert_eq!(
        p.status,
        DeploymentLiteStatus {
            observed_generation: Some(1),
            replicas: 3,
            updated_replicas: 3,
            ready_replicas: 3,
            available_replicas: 3,
            unavailable_replicas: 0,
            terminating_replicas: Some(0),
            collision_count: None,
            conditions: vec![
                available_true(secs_ago(60)),
                cond(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    &format!("ReplicaSet \"{name}\" has successfully progressed."),
                    t0(),
                    secs_ago(60)
                ),
            ],
            selector: Some("app=web".into()),
            ready: Some("3/3".into()),
        }
    );
    assert_eq!(p.requeue_after, None);
}

#[test]
fn cleanup_waits_for_a_complete_stored_status() {
    // The ReplicaSets are complete, but the stored status is not yet: no
    // cleanup this sync (it runs on the next one).
    let (d, rses) = complete_object(2);
    let p = run(&d, &rses, &[]);
    assert_eq!(p.actions, vec![]);
    assert_eq!(
        sr(&p.status, "Progressing"),
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    assert_eq!(
        sr(&p.status, "Available"),
        ("True".into(), "MinimumReplicasAvailable".into())
    );
    // Stored status of an older generation: not complete either.
    let (mut d, rses) = complete_object(3);
    d.metadata.generation = Some(2);
    assert_eq!(run(&d, &rses, &[]).actions, vec![]);
}

#[test]
fn cleanup_skips_replica_sets_that_still_have_pods() {
    let (d, mut rses) = complete_object(3);
    // Revision 1 still reports a pod: it is skipped, not replaced by 2.
    rses[0].status.as_mut().unwrap().replicas = 1;
    let p = run(&d, &rses, &[]);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::DeleteReplicaSet { .. })),
        "{:?}",
        p.actions
    );
}

#[test]
fn replica_failure_is_copied_from_the_replica_sets() {
    let (d, mut rses) = complete_object(3);
    rses[2].status.as_mut().unwrap().conditions = Some(vec![
        serde_json::from_value(json!({
            "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "quota exceeded"
        }))
        .unwrap(),
    ]);
    let p = run(&d, &rses, &[]);
    assert_eq!(
        get(&p.status, "ReplicaFailure"),
        &cond(
            "ReplicaFailure",
            "True",
            "FailedCreate",
            "quota exceeded",
            t0(),
            t0()
        )
    );
}

// ---------------------------------------------------------------------------
// 10. Finding the new ReplicaSet
// ---------------------------------------------------------------------------

#[test]
fn new_replica_set_found_by_template_when_the_hash_label_differs() {
    // e.g. created under another collision count or copied by a rollback.
    let mut v = completed(scaled_for(rs_json("nginx:2", 2, 30, 3, 3), 3, 4));
    v["metadata"]["labels"]["pod-template-hash"] = json!("5f4d8c9b7");
    let rses = vec![rs(scaled_for(rs_json("nginx:1", 1, 0, 0, 0), 3, 4)), rs(v)];
    let d = dl(at_revision(dl_json(3, "nginx:2"), 2));
    let p = run(&d, &rses, &[]);
    assert_eq!(p.actions, vec![]);
    assert_eq!(p.status.updated_replicas, 3);
}

#[test]
fn among_several_matches_the_oldest_is_new() {
    // Two ReplicaSets with the same template (e.g. one adopted): the older
    // one is the new ReplicaSet, the other counts as old.
    let mut twin = scaled_for(rs_json("nginx:2", 1, 40, 0, 0), 3, 4);
    twin["metadata"]["name"] = json!("web-twin");
    twin["metadata"]["uid"] = json!("uid-twin");
    twin["metadata"]["labels"]["pod-template-hash"] = json!("twin");
    let rses = vec![
        rs(twin),
        rs(completed(scaled_for(rs_json("nginx:2", 2, 30, 3, 3), 3, 4))),
    ];
    let d = dl(at_revision(dl_json(3, "nginx:2"), 2));
    let p = run(&d, &rses, &[]);
    assert_eq!(p.actions, vec![]);
    assert_eq!(p.status.updated_replicas, 3);
}

#[test]
fn removing_a_field_from_the_template_is_a_new_revision() {
    // Revision 1 ran with an env var; the user removes it. The old
    // ReplicaSet's template is a superset of the new one, so the semantic
    // fallback ("want contained in have") takes it for the new ReplicaSet
    // and the change never rolls out.
    let mut old = scaled_for(rs_json("nginx:1", 1, 0, 3, 3), 3, 4);
    old["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "DEBUG", "value": "1"}]);
    let p = run(&dl(at_revision(dl_json(3, "nginx:1"), 1)), &[rs(old)], &[]);
    assert_eq!(created(&p).len(), 1, "{:?}", p.actions);
}

#[test]
fn the_new_replica_set_is_found_by_the_defaulted_template() {
    // The user wrote cpu "0.5"; the API server stored the ReplicaSet with
    // "500m" and the dry run of the object's template says the same.
    let mut stored = completed(scaled_for(rs_json("nginx:1", 1, 0, 3, 3), 3, 4));
    stored["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"requests": {"cpu": "500m"}});
    let mut v = at_revision(dl_json(3, "nginx:1"), 1);
    v["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"requests": {"cpu": "0.5"}});
    let d = dl(v);
    let mut defaulted = server_defaulted(&d.spec.template);
    defaulted.spec.as_mut().unwrap().containers[0].resources =
        Some(serde_json::from_value(json!({"requests": {"cpu": "500m"}})).unwrap());
    let p = plan(SyncInput {
        dl: &d,
        rses: &[rs(stored)],
        pods: &[],
        template: &defaulted,
        now: t0(),
    });
    assert!(created(&p).is_empty(), "{:?}", p.actions);
    assert_eq!(p.status.updated_replicas, 3);
}

#[test]
fn removing_a_field_the_server_defaults_is_a_new_revision() {
    // Revision 1 said imagePullPolicy: Always; the user removes it, and the
    // server would default IfNotPresent: a different template, in either
    // direction of comparison.
    let mut old = completed(scaled_for(rs_json("nginx:1", 1, 0, 3, 3), 3, 4));
    old["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
    let p = run(&dl(at_revision(dl_json(3, "nginx:1"), 1)), &[rs(old)], &[]);
    assert_eq!(created(&p).len(), 1, "{:?}", p.actions);
}

#[test]
fn the_hash_label_alone_does_not_make_a_replica_set_new() {
    // An adopted ReplicaSet that carries the hash the object's template
    // would get, with another template: not the new ReplicaSet.
    let mut squatter = scaled_for(rs_json("other:1", 1, 0, 3, 3), 3, 4);
    squatter["metadata"]["labels"]["pod-template-hash"] = json!(hash_of("nginx:2"));
    squatter["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] =
        json!(hash_of("nginx:2"));
    let p = run(
        &dl(at_revision(dl_json(3, "nginx:2"), 1)),
        &[rs(squatter)],
        &[],
    );
    assert_eq!(p.status.updated_replicas, 0);
    assert_eq!(created(&p).len(), 1, "{:?}", p.actions);
}

// ---------------------------------------------------------------------------
// 11. Refusals
// ---------------------------------------------------------------------------

#[test]
fn empty_selector_is_refused() {
    let mut v = dl_json(3, "nginx:1");
    v["spec"]["selector"] = json!({});
    let p = run(&dl(v), &history_123(), &[]);
    assert_eq!(
        p.actions,
        vec![Action::Event {
            type_: EventType::Warning,
            reason: "SelectingAll",
            message: "This deployment is selecting all pods. A non-empty selector is required."
                .into(),
        }]
    );
    assert_eq!(
        p.status,
        DeploymentLiteStatus {
            observed_generation: Some(1),
            ..Default::default()
        }
    );
    assert_eq!(p.requeue_after, None);
}

#[test]
fn malformed_bounds_are_refused() {
    let d = dl(rolling(dl_json(3, "nginx:1"), json!("oops"), json!(1)));
    let p = run(&d, &[], &[]);
    assert!(
        matches!(
            &p.actions[..],
            [Action::Event {
                type_: EventType::Warning,
                reason: "InvalidSpec",
                ..
            }]
        ),
        "{:?}",
        p.actions
    );
}

#[test]
fn being_deleted_only_reports_status() {
    let mut v = dl_json(3, "nginx:2");
    v["metadata"]["deletionTimestamp"] = json!(ts(secs_ago(5)));
    let rses = vec![rs(scaled_for(rs_json("nginx:1", 1, 0, 3, 3), 3, 4))];
    let p = run(&dl(v), &rses, &[]);
    assert_eq!(p.actions, vec![]);
    assert_eq!(p.status.replicas, 3);
}

// ---------------------------------------------------------------------------
// 12. Simulated rollouts
// ---------------------------------------------------------------------------

const NEW_IMAGE: &str = "img:new";
const MAX_DELAY: u32 = 3;

/// The cluster: the object, its ReplicaSets, and for each ReplicaSet the
/// pods of the new template that are not yet available (steps to go).
struct World {
    dl: DeploymentLite,
    rses: Vec<ReplicaSet>,
    pending: BTreeMap<String, Vec<u32>>,
    delays: Vec<u32>,
    next_delay: usize,
    next_rv: u64,
    now: Timestamp,
}

fn spec_of(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn is_new_template(rs: &ReplicaSet) -> bool {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers[0].image.as_deref())
        == Some(Some(NEW_IMAGE))
}

impl World {
    fn next_rv(&mut self) -> String {
        self.next_rv += 1;
        self.next_rv.to_string()
    }

    /// Executes a plan as the reconciler would, asserting that every
    /// conditional write would be accepted.
    fn apply(&mut self, p: &Plan) -> Result<(), TestCaseError> {
        for a in &p.actions {
            match a {
                Action::CreateReplicaSet(new) => {
                    let name = new.metadata.name.clone().unwrap();
                    prop_assert!(
                        !self
                            .rses
                            .iter()
                            .any(|r| r.metadata.name.as_ref() == Some(&name)),
                        "{name} exists"
                    );
                    let mut new = (**new).clone();
                    // Stored as the API server stores it: defaulted.
                    let spec = new.spec.as_mut().unwrap();
                    spec.template = spec.template.as_ref().map(server_defaulted);
                    new.metadata.uid = Some(format!("uid-{name}"));
                    new.metadata.resource_version = Some(self.next_rv());
                    new.metadata.creation_timestamp = Some(to_time(self.now));
                    new.metadata.generation = Some(1);
                    self.rses.push(new);
                }
                Action::UpdateReplicaSet {
                    name,
                    resource_version,
                    from,
                    replicas,
                    annotations,
                    min_ready_seconds,
                } => {
                    let rv = self.next_rv();
                    let rs = self
                        .rses
                        .iter_mut()
                        .find(|r| r.metadata.name.as_ref() == Some(name));
                    let rs =
                        rs.ok_or_else(|| TestCaseError::fail(format!("no ReplicaSet {name}")))?;
                    prop_assert_eq!(
                        rs.metadata.resource_version.as_ref(),
                        Some(resource_version),
                        "409 on {}",
                        name
                    );
                    prop_assert_eq!(spec_of(rs), *from);
                    rs.metadata.resource_version = Some(rv);
                    rs.metadata.annotations = Some(annotations.clone());
                    let spec = rs.spec.as_mut().unwrap();
                    spec.replicas = Some(*replicas);
                    spec.min_ready_seconds = Some(*min_ready_seconds);
                }
                Action::DeleteReplicaSet {
                    name,
                    uid,
                    resource_version,
                } => {
                    let i = self
                        .rses
                        .iter()
                        .position(|r| r.metadata.name.as_ref() == Some(name))
                        .unwrap();
                    prop_assert_eq!(self.rses[i].metadata.uid.as_ref(), Some(uid));
                    prop_assert_eq!(
                        self.rses[i].metadata.resource_version.as_ref(),
                        Some(resource_version)
                    );
                    self.rses.remove(i);
                }
                Action::AnnotateDeployment { annotations } => {
                    self.dl
                        .metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .extend(annotations.clone());
                }
                Action::Rollback { .. } => prop_assert!(false, "unexpected rollback"),
                Action::Event { .. } => {}
            }
        }
        self.dl.status = Some(p.status.clone());
        Ok(())
    }

    /// The ReplicaSet controller: old pods go at once; new pods are created
    /// at once and become available after their delay.
    fn settle(&mut self) {
        for rs in &mut self.rses {
            let name = rs.metadata.name.clone().unwrap();
            let spec = spec_of(rs);
            let new_template = is_new_template(rs);
            let status = rs.status.get_or_insert_with(Default::default);
            let mut available = status.available_replicas.unwrap_or(0);
            let pending = self.pending.entry(name).or_default();
            if new_template {
                let have = available + pending.len() as i32;
                for _ in have..spec {
                    pending.push(self.delays[self.next_delay % self.delays.len()]);
                    self.next_delay += 1;
                }
                let mut excess = (available + pending.len() as i32 - spec).max(0);
                while excess > 0 && !pending.is_empty() {
                    pending.pop();
                    excess -= 1;
                }
                available -= excess;
                pending.retain_mut(|d| {
                    if *d == 0 {
                        available += 1;
                        false
                    } else {
                        *d -= 1;
                        true
                    }
                });
                status.replicas = available + pending.len() as i32;
            } else {
                // Old pods never come back; unready ones are deleted first.
                status.replicas = status.replicas.min(spec);
                available = available.min(spec);
            }
            status.available_replicas = Some(available);
            status.ready_replicas = Some(available);
            status.observed_generation = rs.metadata.generation;
        }
        self.now += SignedDuration::from_secs(1);
    }
}

fn arb_int_or_percent() -> impl Strategy<Value = IntOrString> {
    prop_oneof![
        (0..=5i32).prop_map(IntOrString::Int),
        (0..=100i32).prop_map(|p| IntOrString::String(format!("{p}%")))
    ]
}

fn is_zero(v: &IntOrString) -> bool {
    matches!(v, IntOrString::Int(0)) || matches!(v, IntOrString::String(s) if s == "0%")
}

/// Old ReplicaSets: (spec, available, annotated with the current size?).
fn arb_old() -> impl Strategy<Value = Vec<(i32, i32, bool)>> {
    prop::collection::vec((0..=25i32, 0..=100i32, any::<bool>()), 1..=3).prop_map(|v| {
        v.into_iter()
            .map(|(spec, pct, ann)| (spec, spec * pct / 100, ann))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn simulated_rollouts_stay_within_bounds_and_complete(
        replicas in 1..=20i32,
        surge in arb_int_or_percent(),
        unavailable in arb_int_or_percent(),
        old in arb_old(),
        new in prop::option::of((0..=25i32, 0..=100i32, any::<bool>())),
        delays in prop::collection::vec(0..=MAX_DELAY, 1..=8),
    ) {
        prop_assume!(!(is_zero(&surge) && is_zero(&unavailable)));
        let d = dl(with_generation(rolling(dl_json(replicas, NEW_IMAGE), json!(surge), json!(unavailable)), 2));
        let b = resolve_bounds(&d).unwrap();
        let (max_total, min_available) = (replicas + b.max_surge, replicas - b.max_unavailable);

        let mut rses = vec![];
        let mut pending = BTreeMap::new();
        for (i, (spec, available, annotated)) in old.iter().enumerate() {
            let mut v = rs_json(&format!("img:{i}"), i as i64 + 1, i as i64, *spec, *available);
            if *annotated {
                v = scaled_for(v, replicas, max_total);
            }
            rses.push(rs(v));
        }
        if let Some((spec, pct, current_revision)) = new {
            let available = spec * pct / 100;
            // Either at the current revision, or an old revision brought
            // back (its revision is raised in the same sync as a scale).
            let revision = if current_revision { old.len() as i64 + 1 } else { 1 };
            let v = scaled_for(rs_json(NEW_IMAGE, revision, 50, spec, available), replicas, max_total);
            // Its unavailable pods become available in time too.
            pending.insert(rs_name(NEW_IMAGE), vec![MAX_DELAY; (spec - available) as usize]);
            rses.push(rs(v));
        }
        let mut w = World { dl: d, rses, pending, delays, next_delay: 0, next_rv: 1000, now: t0() };

        let spec_sum = |w: &World| w.rses.iter().map(spec_of).sum::<i32>();
        let available_sum = |w: &World| {
            w.rses.iter().map(|r| r.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)).sum::<i32>()
        };
        let mut surge_held = spec_sum(&w) <= max_total;
        let mut availability_held = available_sum(&w) >= min_available;
        // Each new pod needs at most a write, its delay and a scale-down
        // of an old one; the old excess goes in a few steps.
        let bound = (replicas as usize + 2) * (MAX_DELAY as usize + 4) + 10;
        let mut done_at = None;
        for step in 0..bound {
            let p = plan(SyncInput { dl: &w.dl, rses: &w.rses, pods: &[], template: &server_defaulted(&w.dl.spec.template), now: w.now });
            w.apply(&p)?;
            let total = spec_sum(&w);
            if surge_held {
                prop_assert!(total <= max_total, "step {}: sum(spec) {} > {}: {:?}", step, total, max_total, p.actions);
            }
            surge_held |= total <= max_total;
            w.settle();
            let available = available_sum(&w);
            if availability_held {
                prop_assert!(available >= min_available, "step {}: available {} < {}: {:?}", step, available, min_available, p.actions);
            }
            availability_held |= available >= min_available;

            let new_size = w.rses.iter().filter(|r| is_new_template(r)).map(spec_of).sum::<i32>();
            let old_size = w.rses.iter().filter(|r| !is_new_template(r)).map(spec_of).sum::<i32>();
            if new_size == replicas && old_size == 0 {
                done_at = Some(step);
                break;
            }
        }
        prop_assert!(done_at.is_some(), "not complete after {} steps: {:?}", bound, w.rses.iter().map(|r| (spec_of(r), r.status.clone())).collect::<Vec<_>>());
        prop_assert_eq!(w.rses.iter().filter(|r| is_new_template(r)).count(), 1);

        // Once the last new pods are available the status says so.
        for _ in 0..=MAX_DELAY + 2 {
            let p = plan(SyncInput { dl: &w.dl, rses: &w.rses, pods: &[], template: &server_defaulted(&w.dl.spec.template), now: w.now });
            prop_assert!(p.actions.iter().all(|a| !matches!(a, Action::CreateReplicaSet(_))));
            w.apply(&p)?;
            w.settle();
        }
        let p = plan(SyncInput { dl: &w.dl, rses: &w.rses, pods: &[], template: &server_defaulted(&w.dl.spec.template), now: w.now });
        let progressing = p.status.conditions.iter().find(|c| c.type_ == "Progressing").and_then(|c| c.reason.clone());
        prop_assert_eq!(progressing.as_deref(), Some("NewReplicaSetAvailable"));
        prop_assert_eq!(p.status.available_replicas, replicas);
    }
}

// ---------------------------------------------------------------------------
// 13. terminatingReplicas
// ---------------------------------------------------------------------------

#[test]
fn terminating_replicas_sum_as_upstream_counts_them() {
    let with = |mut v: Value, observed: i64, terminating: Option<i32>| {
        v["status"]["observedGeneration"] = json!(observed);
        v["status"]["terminatingReplicas"] = json!(terminating);
        rs(v)
    };
    let d = dl(at_revision(dl_json(3, "nginx:2"), 2));
    let old = || scaled_for(rs_json("nginx:1", 1, 0, 0, 0), 3, 4);
    let new = || completed(scaled_for(rs_json("nginx:2", 2, 30, 3, 3), 3, 4));
    // Both report: the sum.
    let p = run(&d, &[with(old(), 1, Some(2)), with(new(), 1, Some(1))], &[]);
    assert_eq!(p.status.terminating_replicas, Some(3));
    // A ReplicaSet never synced and silent adds nothing.
    let p = run(&d, &[with(old(), 0, None), with(new(), 1, Some(1))], &[]);
    assert_eq!(p.status.terminating_replicas, Some(1));
    // A synced one that does not report makes the sum unknown.
    let p = run(&d, &[with(old(), 1, None), with(new(), 1, Some(1))], &[]);
    assert_eq!(p.status.terminating_replicas, None);
}

// ---------------------------------------------------------------------------
// 14. Upstream details: annotations, names, minReadySeconds, rollbackTo
// ---------------------------------------------------------------------------

#[test]
fn the_objects_annotations_are_copied_to_the_new_replica_set_except_bookkeeping() {
    let mut v = dl_json(3, "nginx:1");
    v["metadata"]["annotations"] = json!({
        "team": "payments",
        "kubernetes.io/change-cause": "first",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "dlite.dev/revision": "7"
    });
    let p = run(&dl(v.clone()), &[], &[]);
    let new = created(&p)[0];
    let a = new.metadata.annotations.clone().unwrap();
    assert_eq!(a.get("team").map(String::as_str), Some("payments"));
    assert_eq!(
        a.get("kubernetes.io/change-cause").map(String::as_str),
        Some("first")
    );
    assert!(!a.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
    assert_eq!(a.get("dlite.dev/revision").map(String::as_str), Some("1"));

    // An existing new ReplicaSet gets added and changed annotations.
    let existing = completed(scaled_for(rs_json("nginx:1", 1, 0, 3, 3), 3, 4));
    v["metadata"]["annotations"]["dlite.dev/revision"] = json!("1");
    let p = run(&dl(v), &[rs(existing)], &[]);
    let Some(Action::UpdateReplicaSet { annotations, .. }) = p.actions.first() else {
        panic!("{:?}", p.actions)
    };
    assert_eq!(
        annotations.get("team").map(String::as_str),
        Some("payments")
    );
    assert!(!annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
}

#[test]
fn a_rollback_restores_the_revisions_annotations() {
    let mut rses = history_123();
    rses[0]
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("team".into(), "old-team".into());
    let mut d = rollback_to("nginx:3", 1);
    d.metadata.annotations = Some(annotations(&[
        ("team", "new-team"),
        ("dlite.dev/revision", "3"),
    ]));
    let p = run(&d, &rses, &[]);
    let Some(Action::Rollback { annotations, .. }) = p
        .actions
        .iter()
        .find(|a| matches!(a, Action::Rollback { .. }))
    else {
        panic!("{:?}", p.actions)
    };
    // Everything but the bookkeeping comes from the revision.
    assert_eq!(
        annotations.get("team").map(String::as_str),
        Some("old-team")
    );
    assert!(
        annotations.keys().all(|k| !k.starts_with("dlite.dev/")),
        "{annotations:?}"
    );
}

#[test]
fn replica_set_names_fit_253_characters() {
    let long = "a".repeat(253);
    let d = dl(json!({
        "apiVersion": "apps.dlite.dev/v1", "kind": "DeploymentLite",
        "metadata": {"name": long, "namespace": "default", "uid": "dl-uid", "generation": 1},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template("nginx:1")}
    }));
    let p = run(&d, &[], &[]);
    let name = created(&p)[0].metadata.name.clone().unwrap();
    let hash = hash_of("nginx:1");
    assert_eq!(name.len(), 253, "{name}");
    assert!(name.ends_with(&format!("-{hash}")), "{name}");
    assert_eq!(super::sync::replica_set_name("web", "abc"), "web-abc");
}

#[test]
fn an_old_replica_sets_min_ready_seconds_is_not_rewritten() {
    // The old ReplicaSet ran with minReadySeconds 5; the object now says 0.
    // Scaling it down leaves its own value, as upstream's scaleReplicaSet.
    let mut old = scaled_for(rs_json("nginx:1", 1, 0, 3, 3), 3, 4);
    old["spec"]["minReadySeconds"] = json!(5);
    let d = dl(at_revision(
        rolling(dl_json(3, "nginx:2"), json!(0), json!(1)),
        1,
    ));
    let p = run(&d, &[rs(old)], &[]);
    let scaled_old = p
        .actions
        .iter()
        .find_map(|a| match a {
            Action::UpdateReplicaSet {
                name,
                min_ready_seconds,
                ..
            } if *name == rs_name("nginx:1") => Some(*min_ready_seconds),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the old ReplicaSet is scaled down: {:?}", p.actions));
    assert_eq!(scaled_old, 5);
}

#[test]
fn a_new_template_with_rollback_to_previous_becomes_a_revision_first() {
    // As upstream: the new template (nginx:4) gets its ReplicaSet as
    // revision 4, then "previous" is revision 3 (nginx:3).
    let p = run(&rollback_to("nginx:4", 0), &history_123(), &[]);
    let new = created(&p);
    assert_eq!(new.len(), 1, "{:?}", p.actions);
    assert_eq!(
        new[0].metadata.annotations.as_ref().unwrap()["dlite.dev/revision"],
        "4"
    );
    assert!(
        p.actions.contains(&Action::Rollback {
            template: Some(Box::new(rolled_back_template("nginx:3"))),
            annotations: BTreeMap::new(),
        }),
        "{:?}",
        p.actions
    );
    assert!(p.actions.contains(&Action::Event {
        type_: EventType::Normal,
        reason: "DeploymentRollback",
        message: "Rolled back deployment \"web\" to revision 3".into(),
    }));
}

// ---------------------------------------------------------------------------
// 15. autoRollback
// ---------------------------------------------------------------------------

/// Revisions 1 and 2 completed; revision 3 (nginx:3) never became ready.
/// `rev3_spec` pods of revision 3 exist, `rev2_spec` of revision 2 remain.
fn failed_third(rev2_spec: i32, rev3_spec: i32) -> Vec<ReplicaSet> {
    vec![
        rs(completed(scaled_for(rs_json("nginx:1", 1, 0, 0, 0), 3, 4))),
        rs(completed(scaled_for(
            rs_json("nginx:2", 2, 10, rev2_spec, rev2_spec),
            3,
            4,
        ))),
        rs(scaled_for(rs_json("nginx:3", 3, 20, rev3_spec, 0), 3, 4)),
    ]
}

fn auto_rollback_dl(
    image: &str,
    recreate_strategy: bool,
    progressing: DeploymentCondition,
) -> DeploymentLite {
    // The status of failed_third as the last sync recorded it.
    let counts = if recreate_strategy {
        (3, 3, 0, 0)
    } else {
        (4, 1, 3, 3)
    };
    let mut v = with_generation(dl_json(3, image), 3);
    v["spec"]["autoRollback"] = json!(true);
    v["spec"]["progressDeadlineSeconds"] = json!(10);
    if recreate_strategy {
        v = recreate(v);
    }
    let mut d = dl(at_revision(v, 3));
    d.status = Some(stored(
        3,
        counts,
        3,
        vec![available_true(secs_ago(600)), progressing],
    ));
    d
}

fn rollbacks(p: &Plan) -> Vec<&Action> {
    p.actions
        .iter()
        .filter(|a| matches!(a, Action::Rollback { .. }))
        .collect()
}

#[test]
fn auto_rollback_goes_to_the_newest_completed_revision_once() {
    for recreate_strategy in [false, true] {
        let stale = cond(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            "progressing",
            secs_ago(20),
            secs_ago(20),
        );
        let (rev2, rev3) = if recreate_strategy { (0, 3) } else { (3, 1) };
        let d = auto_rollback_dl("nginx:3", recreate_strategy, stale);
        let p = run(&d, &failed_third(rev2, rev3), &[]);
        assert_eq!(
            sr(&p.status, "Progressing"),
            ("False".into(), "ProgressDeadlineExceeded".into())
        );
        assert_eq!(
            rollbacks(&p),
            vec![&Action::Rollback {
                template: Some(Box::new(rolled_back_template("nginx:2"))),
                annotations: BTreeMap::new(),
            }],
            "recreate {recreate_strategy}: {:?}",
            p.actions
        );
        assert!(
            p.actions.iter().any(
                |a| matches!(a, Action::Event { reason: "DeploymentAutoRollback", message, .. }
            if message.contains("Revision 3") && message.contains("revision 2"))
            ),
            "{:?}",
            p.actions
        );
    }
}

#[test]
fn the_restored_revision_is_never_rolled_back_in_turn() {
    // The sync after the rollback: the template is revision 2's again, its
    // ReplicaSet has no pods yet, and the Progressing=False condition of
    // the failure is still there. Revision 1 also completed once; going
    // there would be the oscillation. Several syncs, both strategies.
    for recreate_strategy in [false, true] {
        let failed = cond(
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            "ReplicaSet \"web-x\" has timed out progressing.",
            secs_ago(5),
            secs_ago(5),
        );
        let mut d = auto_rollback_dl("nginx:2", recreate_strategy, failed);
        d.spec.template = rolled_back_template("nginx:2");
        let rses = failed_third(0, 1);
        for step in 0..3 {
            let p = run(&d, &rses, &[]);
            assert!(
                rollbacks(&p).is_empty(),
                "recreate {recreate_strategy}, sync {step}: {:?}",
                p.actions
            );
            assert!(
                !p.actions.iter().any(|a| matches!(
                    a,
                    Action::Event {
                        reason: "DeploymentAutoRollback",
                        ..
                    }
                )),
                "{:?}",
                p.actions
            );
            d.status = Some(p.status);
        }
    }
}

#[test]
fn without_a_completed_revision_the_failure_is_reported_once() {
    let stale = cond(
        "Progressing",
        "True",
        "ReplicaSetUpdated",
        "progressing",
        secs_ago(20),
        secs_ago(20),
    );
    let d = auto_rollback_dl("nginx:3", false, stale);
    let rses = vec![
        rs(scaled_for(rs_json("nginx:2", 2, 10, 3, 3), 3, 4)),
        rs(scaled_for(rs_json("nginx:3", 3, 20, 1, 0), 3, 4)),
    ];
    let p = run(&d, &rses, &[]);
    assert!(rollbacks(&p).is_empty(), "{:?}", p.actions);
    let reported = |p: &Plan| {
        p.actions
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::Event {
                        reason: "DeploymentAutoRollback",
                        ..
                    }
                )
            })
            .count()
    };
    assert_eq!(reported(&p), 1);
    let mut d2 = d.clone();
    d2.status = Some(p.status);
    assert_eq!(reported(&run(&d2, &rses, &[])), 0);
}
