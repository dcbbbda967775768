//! The pure decisions of kubectl-dlite, message for message: kubectl's
//! wording is part of the contract, so every assertion is on exact text.

use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use serde_json::{Value, json};

use super::args::{Cli, Command, DryRun, OutputFormat, Rollout, Set, WriteFlags};
use super::*;
use crate::api::DeploymentLite;

// ---------------------------------------------------------------- fixtures

fn template(image: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": image}]}
    })
}

fn dl(name: &str, spec_extra: Value, status: Value) -> DeploymentLite {
    let mut spec = json!({
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": template("nginx:3"),
    });
    for (k, v) in spec_extra.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    serde_json::from_value(json!({
        "apiVersion": "apps.dlite.dev/v1",
        "kind": "DeploymentLite",
        "metadata": {"name": name, "namespace": "default", "generation": 2},
        "spec": spec,
        "status": status,
    }))
    .unwrap()
}

fn plain(name: &str) -> DeploymentLite {
    dl(name, json!({}), json!({}))
}

fn paused(name: &str) -> DeploymentLite {
    dl(name, json!({"paused": true}), json!({}))
}

/// A ReplicaSet of revision `rev` (None: no annotation), with an optional
/// change-cause, running `tmpl`.
fn rs_with(name: &str, rev: Option<&str>, cause: Option<&str>, tmpl: Value) -> ReplicaSet {
    let mut annotations = serde_json::Map::new();
    if let Some(r) = rev {
        annotations.insert(REVISION_ANNOTATION.into(), json!(r));
    }
    if let Some(c) = cause {
        annotations.insert(CHANGE_CAUSE_ANNOTATION.into(), json!(c));
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": tmpl},
    }))
    .unwrap()
}

fn rs(rev: i64, image: &str) -> ReplicaSet {
    rs_with(
        &format!("web-{rev}"),
        Some(&rev.to_string()),
        None,
        template(image),
    )
}

fn err(e: CliError) -> String {
    e.to_string()
}

// ---------------------------------------------------------------- CliError

#[test]
fn cli_error_display_forms_and_exit_code() {
    let nf = CliError::not_found("x");
    assert_eq!(
        nf.to_string(),
        r#"Error from server (NotFound): deploymentlites.apps.dlite.dev "x" not found"#
    );
    assert_eq!(nf.exit_code(), 1);
    let server = CliError::Server {
        reason: "Forbidden".into(),
        message: "nope".into(),
    };
    assert_eq!(server.to_string(), "Error from server (Forbidden): nope");
    assert_eq!(server.exit_code(), 1);
    let m = CliError::msg("something failed");
    assert_eq!(m.to_string(), "error: something failed");
    assert_eq!(m, CliError::Message("something failed".into()));
    assert_eq!(m.exit_code(), 1);
}

// ---------------------------------------------------------------- parse_name

#[test]
fn parse_name_accepts_plain_and_every_known_kind() {
    for arg in [
        "web",
        "dl/web",
        "dlite/web",
        "deploymentlite/web",
        "deploymentlites/web",
        "deploymentlite.apps.dlite.dev/web",
        "deploymentlites.apps.dlite.dev/web",
        "DL/web",
        "DeploymentLite/web",
        "DeploymentLite.apps.dlite.dev/web",
    ] {
        assert_eq!(parse_name(arg), Ok("web".to_string()), "{arg}");
    }
}

#[test]
fn parse_name_rejects_unknown_kinds() {
    for (arg, kind) in [
        ("deployment/x", "deployment"),
        ("pods/x", "pods"),
        ("/x", ""),
        ("Deployment/x", "Deployment"),
    ] {
        assert_eq!(
            err(parse_name(arg).unwrap_err()),
            format!(
                "error: the server doesn't have a resource type \"{kind}\" for this command; kubectl dlite works on deploymentlites (dl)"
            ),
            "{arg}"
        );
    }
}

#[test]
fn parse_name_rejects_empty_names_and_extra_slashes() {
    assert_eq!(
        err(parse_name("").unwrap_err()),
        r#"error: invalid resource name """#
    );
    assert_eq!(
        err(parse_name("dl/").unwrap_err()),
        r#"error: invalid resource name """#
    );
    assert_eq!(
        err(parse_name("dl/x/y").unwrap_err()),
        r#"error: invalid resource name "x/y""#
    );
    assert_eq!(
        err(parse_name("dl//").unwrap_err()),
        r#"error: invalid resource name "/""#
    );
}

// ---------------------------------------------------------------- rollout status

#[test]
fn status_waits_for_the_spec_update_to_be_observed() {
    let d = dl(
        "x",
        json!({}),
        json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
    );
    assert_eq!(
        rollout_status(&d),
        Ok((
            "Waiting for deployment spec update to be observed...".into(),
            false
        ))
    );
    // No status at all: generation 2 > 0.
    assert_eq!(
        rollout_status(&plain("x")),
        Ok((
            "Waiting for deployment spec update to be observed...".into(),
            false
        ))
    );
}

#[test]
fn status_counts_updated_replicas() {
    let d = dl(
        "x",
        json!({}),
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1}),
    );
    assert_eq!(
        rollout_status(&d),
        Ok((r#"Waiting for deployment "x" rollout to finish: 1 out of 3 new replicas have been updated..."#.into(), false))
    );
}

#[test]
fn status_waits_for_old_replicas_to_terminate() {
    let d = dl(
        "x",
        json!({}),
        json!({"observedGeneration": 2, "replicas": 5, "updatedReplicas": 3, "availableReplicas": 3}),
    );
    assert_eq!(
        rollout_status(&d),
        Ok((r#"Waiting for deployment "x" rollout to finish: 2 old replicas are pending termination..."#.into(), false))
    );
}

#[test]
fn status_waits_for_availability() {
    let d = dl(
        "x",
        json!({}),
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 1}),
    );
    assert_eq!(
        rollout_status(&d),
        Ok((r#"Waiting for deployment "x" rollout to finish: 1 of 3 updated replicas are available..."#.into(), false))
    );
}

#[test]
fn status_reports_success() {
    let d = dl(
        "x",
        json!({}),
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
    );
    assert_eq!(
        rollout_status(&d),
        Ok((r#"deployment "x" successfully rolled out"#.into(), true))
    );
    // Scaled to zero, nothing to wait for.
    let zero = dl(
        "z",
        json!({"replicas": 0}),
        json!({"observedGeneration": 2}),
    );
    assert_eq!(
        rollout_status(&zero),
        Ok((r#"deployment "z" successfully rolled out"#.into(), true))
    );
}

#[test]
fn status_fails_past_the_progress_deadline() {
    let cond = |reason: &str| {
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "False", "reason": reason}]})
    };
    let d = dl("x", json!({}), cond("ProgressDeadlineExceeded"));
    let e = rollout_status(&d).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"error: deployment "x" exceeded its progress deadline"#
    );
    assert_eq!(e.exit_code(), 1);
    // Another reason is just progress.
    let d = dl("x", json!({}), cond("ReplicaSetUpdated"));
    assert_eq!(
        rollout_status(&d).unwrap().0,
        r#"Waiting for deployment "x" rollout to finish: 1 out of 3 new replicas have been updated..."#
    );
    // The deadline only counts once the spec is observed, as in kubectl.
    let mut st = cond("ProgressDeadlineExceeded");
    st["observedGeneration"] = json!(1);
    let d = dl("x", json!({}), st);
    assert_eq!(
        rollout_status(&d).unwrap().0,
        "Waiting for deployment spec update to be observed..."
    );
}

// ---------------------------------------------------------------- rollout history

#[test]
fn history_table_sorts_revisions_numerically_and_shows_causes() {
    let rses = vec![
        rs_with(
            "a",
            Some("10"),
            Some("kubectl set image nginx=nginx:10"),
            template("nginx:10"),
        ),
        rs_with("b", Some("2"), None, template("nginx:2")),
        rs_with(
            "c",
            None,
            Some("no revision, not history"),
            template("nginx:0"),
        ),
        rs_with("d", Some("garbage"), None, template("nginx:0")),
        rs_with("e", Some("9"), Some(""), template("nginx:9")),
    ];
    assert_eq!(
        history_table("web", &rses),
        "deploymentlite.apps.dlite.dev/web \n\
         REVISION  CHANGE-CAUSE\n\
         2         <none>\n\
         9         \n\
         10        kubectl set image nginx=nginx:10\n"
    );
}

#[test]
fn history_table_without_replica_sets_is_just_the_header() {
    assert_eq!(
        history_table("web", &[]),
        "deploymentlite.apps.dlite.dev/web \nREVISION  CHANGE-CAUSE\n"
    );
}

#[test]
fn history_revision_describes_that_template() {
    let rses = vec![rs(1, "nginx:1"), rs(2, "nginx:2"), rs(3, "nginx:3")];
    let out = history_revision("web", &rses, 2).unwrap();
    assert!(
        out.starts_with("deploymentlite.apps.dlite.dev/web with revision #2\nPod Template:\n"),
        "{out}"
    );
    assert!(out.contains("with revision #2"), "{out}");
    assert!(out.contains("Image:"), "{out}");
    assert!(out.contains("nginx:2"), "{out}");
    assert!(
        !out.contains("nginx:1") && !out.contains("nginx:3"),
        "{out}"
    );
}

#[test]
fn history_revision_not_found() {
    let rses = vec![rs(1, "nginx:1"), rs(2, "nginx:2")];
    assert_eq!(
        err(history_revision("web", &rses, 9).unwrap_err()),
        "error: unable to find the specified revision"
    );
    assert_eq!(
        err(history_revision("web", &[], 1).unwrap_err()),
        "error: unable to find the specified revision"
    );
}

// ---------------------------------------------------------------- rollout undo

#[test]
fn undo_refuses_a_paused_object() {
    let rses = vec![rs(1, "nginx:1"), rs(2, "nginx:3")];
    assert_eq!(
        err(plan_undo(&paused("web"), &rses, 0).unwrap_err()),
        "error: you cannot rollback a paused deployment; resume it first with 'kubectl dlite rollout resume dl/web' and try again"
    );
}

#[test]
fn undo_rejects_a_negative_revision() {
    let rses = vec![rs(1, "nginx:1"), rs(2, "nginx:3")];
    assert_eq!(
        err(plan_undo(&plain("web"), &rses, -1).unwrap_err()),
        "error: unable to find specified revision -1 in history"
    );
    // As in kubectl, the revision is checked before the pause.
    assert_eq!(
        err(plan_undo(&paused("web"), &rses, -3).unwrap_err()),
        "error: unable to find specified revision -3 in history"
    );
}

#[test]
fn undo_to_the_previous_revision_needs_two() {
    let want = r#"error: no rollout history found for deployment "web""#;
    assert_eq!(err(plan_undo(&plain("web"), &[], 0).unwrap_err()), want);
    assert_eq!(
        err(plan_undo(&plain("web"), &[rs(1, "nginx:3")], 0).unwrap_err()),
        want
    );
    // A ReplicaSet without a revision is not history.
    let rses = vec![
        rs(1, "nginx:3"),
        rs_with("old", None, None, template("nginx:0")),
    ];
    assert_eq!(err(plan_undo(&plain("web"), &rses, 0).unwrap_err()), want);
}

#[test]
fn undo_to_zero_picks_the_second_highest_revision() {
    let rses = vec![
        rs(10, "nginx:3"),
        rs(2, "nginx:2"),
        rs(9, "nginx:9"),
        rs(1, "nginx:1"),
    ];
    assert_eq!(
        plan_undo(&plain("web"), &rses, 0),
        Ok(UndoPlan::RollBack(9))
    );
}

#[test]
fn undo_to_an_explicit_revision() {
    let rses = vec![rs(1, "nginx:1"), rs(2, "nginx:2"), rs(3, "nginx:3")];
    assert_eq!(
        plan_undo(&plain("web"), &rses, 1),
        Ok(UndoPlan::RollBack(1))
    );
    assert_eq!(
        plan_undo(&plain("web"), &rses, 2),
        Ok(UndoPlan::RollBack(2))
    );
}

#[test]
fn undo_to_an_unknown_revision() {
    let rses = vec![rs(1, "nginx:1"), rs(2, "nginx:3")];
    assert_eq!(
        err(plan_undo(&plain("web"), &rses, 9).unwrap_err()),
        "error: unable to find specified revision 9 in history"
    );
}

#[test]
fn undo_skips_when_the_template_already_matches() {
    // Revision 3 is the current template (nginx:3).
    let rses = vec![rs(1, "nginx:1"), rs(3, "nginx:3")];
    assert_eq!(
        plan_undo(&plain("web"), &rses, 3),
        Ok(UndoPlan::Skip(
            "deploymentlite.apps.dlite.dev/web skipped rollback (current template already matches revision 3)".into()
        ))
    );
    // The previous revision may hold the same template too.
    let rses = vec![rs(1, "nginx:3"), rs(2, "nginx:2")];
    assert_eq!(
        plan_undo(&plain("web"), &rses, 0),
        Ok(UndoPlan::Skip(
            "deploymentlite.apps.dlite.dev/web skipped rollback (current template already matches revision 1)".into()
        ))
    );
}

#[test]
fn undo_skip_compares_the_defaulted_template_ignoring_the_hash_label() {
    let served = json!({
        "metadata": {"labels": {"app": "web", "pod-template-hash": "5d8f9c7b4"}},
        "spec": {
            "containers": [{
                "name": "web", "image": "nginx:3",
                "imagePullPolicy": "IfNotPresent",
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "resources": {}
            }],
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "terminationGracePeriodSeconds": 30,
            "schedulerName": "default-scheduler",
            "securityContext": {}
        }
    });
    let rses = vec![
        rs_with("web-a", Some("1"), None, served.clone()),
        rs(2, "nginx:2"),
    ];
    // The caller passes the object with its template as the API server
    // defaults it (a dry run), which is the revision's without the label.
    let mut defaulted = plain("web");
    let mut t = served;
    t["metadata"]["labels"] = json!({"app": "web"});
    defaulted.spec.template = serde_json::from_value(t).unwrap();
    assert_eq!(
        plan_undo(&defaulted, &rses, 1),
        Ok(UndoPlan::Skip(
            "deploymentlite.apps.dlite.dev/web skipped rollback (current template already matches revision 1)".into()
        ))
    );
    // A template that differs from the stored one in any field, defaulted
    // or not, is a real rollback.
    assert_eq!(
        plan_undo(&plain("web"), &rses, 1),
        Ok(UndoPlan::RollBack(1))
    );
}

#[test]
fn undo_does_not_skip_when_a_field_was_added_since() {
    // Revision 1 had no args; the current template added some: rolling back
    // removes them, it is not a no-op.
    let mut current = template("nginx:1");
    current["spec"]["containers"][0]["args"] = json!(["--debug"]);
    let d = dl("web", json!({"template": current.clone()}), json!({}));
    let rses = vec![rs(1, "nginx:1"), rs_with("web-2", Some("2"), None, current)];
    assert_eq!(plan_undo(&d, &rses, 0), Ok(UndoPlan::RollBack(1)));
}

#[test]
fn undo_does_not_skip_when_a_field_was_removed_since() {
    // Revision 1 had args the current template dropped: rolling back adds
    // them again.
    let mut other = template("nginx:3");
    other["spec"]["containers"][0]["args"] = json!(["--debug"]);
    other["metadata"]["labels"]["pod-template-hash"] = json!("abc");
    let rses = vec![rs_with("web-b", Some("1"), None, other), rs(2, "nginx:3")];
    assert_eq!(
        plan_undo(&plain("web"), &rses, 1),
        Ok(UndoPlan::RollBack(1))
    );
}

#[test]
fn undo_to_a_revision_without_a_template_rolls_back() {
    let bare: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "bare", "annotations": {REVISION_ANNOTATION: "1"}},
        "spec": {"selector": {}}
    }))
    .unwrap();
    assert_eq!(
        plan_undo(&plain("web"), &[bare, rs(2, "nginx:3")], 0),
        Ok(UndoPlan::RollBack(1))
    );
}

// ---------------------------------------------------------------- set image

fn two_containers() -> PodTemplateSpec {
    serde_json::from_value(json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {
            "initContainers": [{"name": "init", "image": "busybox:1"}],
            "containers": [{"name": "web", "image": "nginx:1"}, {"name": "sidecar", "image": "envoy:1"}]
        }
    }))
    .unwrap()
}

fn images(t: &PodTemplateSpec) -> (Vec<String>, Vec<String>) {
    let spec = t.spec.as_ref().unwrap();
    let of = |cs: &[k8s_openapi::api::core::v1::Container]| {
        cs.iter()
            .map(|c| format!("{}={}", c.name, c.image.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
    };
    (
        of(&spec.init_containers.clone().unwrap_or_default()),
        of(&spec.containers),
    )
}

fn a(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn set_image_one_container() {
    let t = set_images(&two_containers(), &a(&["web=nginx:2"])).unwrap();
    assert_eq!(
        images(&t),
        (
            a(&["init=busybox:1"]),
            a(&["web=nginx:2", "sidecar=envoy:1"])
        )
    );
    // Nothing else changes.
    let mut back = t.clone();
    back.spec.as_mut().unwrap().containers[0].image = Some("nginx:1".into());
    assert_eq!(back, two_containers());
}

#[test]
fn set_image_several_assignments_including_an_init_container() {
    let t = set_images(
        &two_containers(),
        &a(&["web=nginx:2", "sidecar=envoy:2", "init=busybox:2"]),
    )
    .unwrap();
    assert_eq!(
        images(&t),
        (
            a(&["init=busybox:2"]),
            a(&["web=nginx:2", "sidecar=envoy:2"])
        )
    );
}

#[test]
fn set_image_star_sets_every_container() {
    let t = set_images(&two_containers(), &a(&["*=registry/app:7"])).unwrap();
    assert_eq!(
        images(&t),
        (
            a(&["init=registry/app:7"]),
            a(&["web=registry/app:7", "sidecar=registry/app:7"])
        )
    );
}

#[test]
fn set_image_keeps_equals_signs_in_the_image() {
    let t = set_images(&two_containers(), &a(&["web=nginx@sha256:ab=cd"])).unwrap();
    assert_eq!(images(&t).1[0], "web=nginx@sha256:ab=cd");
}

#[test]
fn set_image_unknown_container() {
    assert_eq!(
        err(set_images(&two_containers(), &a(&["foo=nginx:2"])).unwrap_err()),
        r#"error: unable to find container named "foo""#
    );
    // One unknown name fails the whole command.
    assert_eq!(
        err(set_images(&two_containers(), &a(&["web=nginx:2", "foo=x"])).unwrap_err()),
        r#"error: unable to find container named "foo""#
    );
    // A template without containers has none to match, not even `*`.
    assert_eq!(
        err(set_images(&PodTemplateSpec::default(), &a(&["*=x"])).unwrap_err()),
        r#"error: unable to find container named "*""#
    );
}

#[test]
fn set_image_malformed_assignments() {
    for bad in ["nginx", "=img", "c=", "="] {
        let e = err(set_images(&two_containers(), &a(&[bad])).unwrap_err());
        assert_eq!(
            e,
            format!("error: invalid image update {bad:?}: expected CONTAINER=IMAGE")
        );
        assert!(e.contains("CONTAINER=IMAGE"));
    }
}

#[test]
fn set_image_needs_an_assignment() {
    assert_eq!(
        err(set_images(&two_containers(), &[]).unwrap_err()),
        "error: at least one image update is required"
    );
}

// ---------------------------------------------------------------- pause / resume / restart

#[test]
fn pause_and_resume_refuse_no_ops() {
    assert_eq!(
        err(check_pause(&paused("web"), true).unwrap_err()),
        r#"error: deploymentlites.apps.dlite.dev "web" is already paused"#
    );
    assert_eq!(
        err(check_pause(&plain("web"), false).unwrap_err()),
        r#"error: deploymentlites.apps.dlite.dev "web" is not paused"#
    );
    assert_eq!(check_pause(&plain("web"), true), Ok(()));
    assert_eq!(check_pause(&paused("web"), false), Ok(()));
}

#[test]
fn restart_refuses_a_paused_object() {
    assert_eq!(
        err(check_restart(&paused("web")).unwrap_err()),
        r#"error: deploymentlites.apps.dlite.dev "web" can't restart paused deployment (run rollout resume first)"#
    );
    assert_eq!(check_restart(&plain("web")), Ok(()));
}

// ---------------------------------------------------------------- why-pending

fn pod(node: Option<&str>, annotation: Option<&str>) -> Pod {
    let mut v = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c"}]}});
    if let Some(n) = node {
        v["spec"]["nodeName"] = json!(n);
    }
    if let Some(a) = annotation {
        v["metadata"]["annotations"] = json!({DIAGNOSIS_ANNOTATION: a});
    }
    serde_json::from_value(v).unwrap()
}

const DIAGNOSIS: &str = r#"{"message": "0/4 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint.",
    "nodes": [
        {"node": "n1", "plugin": "NodeResourcesFit", "reasons": ["Insufficient cpu"]},
        {"node": "node-2", "plugin": "TaintToleration", "reasons": ["node(s) had untolerated taint(s)", "second"]}
    ],
    "omitted": 2}"#;

const TABLE: &str = "0/4 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint.\n\
    NODE     PLUGIN             REASON\n\
    n1       NodeResourcesFit   Insufficient cpu\n\
    node-2   TaintToleration    node(s) had untolerated taint(s); second\n\
    ... and 2 more node(s) not recorded\n";

#[test]
fn why_pending_refuses_a_bound_pod() {
    assert_eq!(
        err(why_pending(&pod(Some("n1"), Some(DIAGNOSIS))).unwrap_err()),
        r#"error: pod "p" is not pending: it is bound to a node"#
    );
}

#[test]
fn why_pending_needs_the_annotation() {
    let e = err(why_pending(&pod(None, None)).unwrap_err());
    assert_eq!(
        e,
        r#"error: pod "p" has no dlite.dev/scheduling-diagnosis annotation: dlite-scheduler has not failed to place it (does its schedulerName name dlite-scheduler?)"#
    );
    assert!(e.contains(DIAGNOSIS_ANNOTATION));
    // An empty nodeName is not a binding.
    assert_eq!(err(why_pending(&pod(Some(""), None)).unwrap_err()), e);
}

#[test]
fn why_pending_rejects_invalid_json() {
    let raw = "{not json";
    let serde_err = serde_json::from_str::<Value>(raw).unwrap_err().to_string();
    assert_eq!(
        err(why_pending(&pod(None, Some(raw))).unwrap_err()),
        format!(
            "error: pod \"p\": unreadable dlite.dev/scheduling-diagnosis annotation: {serde_err}"
        )
    );
    assert_eq!(
        err(why_pending(&pod(None, Some(r#"{"message": "m"}"#))).unwrap_err()),
        r#"error: pod "p": unreadable dlite.dev/scheduling-diagnosis annotation: no "nodes" list"#
    );
}

#[test]
fn why_pending_renders_the_table() {
    assert_eq!(why_pending(&pod(None, Some(DIAGNOSIS))).unwrap(), TABLE);
    assert_eq!(render_diagnosis(DIAGNOSIS).unwrap(), TABLE);
}

#[test]
fn render_diagnosis_minimal_forms() {
    // No message, no omitted count (0 is not printed), missing fields.
    let raw = r#"{"nodes": [{"node": "a"}, {"plugin": "P", "reasons": []}], "omitted": 0}"#;
    assert_eq!(
        render_diagnosis(raw).unwrap(),
        "NODE   PLUGIN   REASON\n\
         a               \n\
         ?      P        \n"
    );
    assert_eq!(
        render_diagnosis(r#"{"nodes": []}"#).unwrap(),
        "NODE   PLUGIN   REASON\n"
    );
    assert_eq!(
        render_diagnosis(r#"{"nodes": 3}"#).unwrap_err(),
        r#"no "nodes" list"#
    );
    assert!(render_diagnosis("").is_err());
}

// ---------------------------------------------------------------- args

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("kubectl-dlite").chain(args.iter().copied()))
}

#[test]
fn clap_definition_is_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn args_rollout_status_defaults() {
    let cli = parse(&["rollout", "status", "web"]).unwrap();
    assert!(
        cli.global.namespace.is_none()
            && cli.global.client.kubeconfig.is_none()
            && cli.global.client.context.is_none()
    );
    match cli.command {
        Command::Rollout(Rollout::Status {
            name,
            watch,
            timeout,
            revision,
        }) => {
            assert_eq!(name, "web");
            assert!(watch);
            assert_eq!(timeout, Duration::ZERO);
            assert_eq!(revision, 0);
        }
        other => panic!("{other:?}"),
    }
}

fn status_flags(argv: &[&str]) -> Result<(bool, Duration, i64), clap::Error> {
    match parse(argv)?.command {
        Command::Rollout(Rollout::Status {
            watch,
            timeout,
            revision,
            ..
        }) => Ok((watch, timeout, revision)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn args_watch_is_a_bool_flag_like_kubectls() {
    let watch = |extra: &[&str]| {
        let mut argv = vec!["rollout", "status", "web"];
        argv.extend_from_slice(extra);
        status_flags(&argv).map(|(w, _, _)| w)
    };
    for (extra, want) in [
        (&[][..], true),
        (&["-w"][..], true),
        (&["--watch"][..], true),
        (&["-w=true"][..], true),
        (&["-w=false"][..], false),
        (&["--watch=false"][..], false),
        (&["--watch=true"][..], true),
        (&["--watch=0"][..], false),
        (&["--watch=F"][..], false),
        (&["--watch=TRUE"][..], true),
    ] {
        assert_eq!(watch(extra).unwrap(), want, "{extra:?}");
    }
    // As in pflag, a separate word is not the flag's value but an argument.
    assert_eq!(
        watch(&["-w", "false"]).unwrap_err().kind(),
        clap::error::ErrorKind::UnknownArgument
    );
    let e = watch(&["--watch=maybe"]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
    assert!(e.to_string().contains(r#"invalid boolean "maybe""#), "{e}");
    // Bare -w before the name, as users type it.
    let cli = parse(&["rollout", "status", "-w", "web"]).unwrap();
    assert!(
        matches!(cli.command, Command::Rollout(Rollout::Status { watch: true, ref name, .. }) if name == "web")
    );
}

#[test]
fn args_rollout_status_timeout_is_a_go_duration() {
    for (text, want) in [
        ("30s", Duration::from_secs(30)),
        ("500ms", Duration::from_millis(500)),
        ("1.5m", Duration::from_secs(90)),
        ("1h2m3s", Duration::from_secs(3723)),
        ("0", Duration::ZERO),
    ] {
        let (_, timeout, _) =
            status_flags(&["rollout", "status", "web", "--timeout", text]).unwrap();
        assert_eq!(timeout, want, "{text}");
        let eq = format!("--timeout={text}");
        let (_, timeout, _) = status_flags(&["rollout", "status", "web", &eq]).unwrap();
        assert_eq!(timeout, want, "{eq}");
    }
    for bad in ["5x", "45", "-1s"] {
        let arg = format!("--timeout={bad}");
        let e = status_flags(&["rollout", "status", "web", &arg]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        assert!(e.to_string().contains("time: "), "{e}");
    }
}

#[test]
fn args_rollout_status_revision() {
    let (_, _, revision) = status_flags(&["rollout", "status", "web", "--revision=3"]).unwrap();
    assert_eq!(revision, 3);
    let (_, _, revision) = status_flags(&["rollout", "status", "web", "--revision", "7"]).unwrap();
    assert_eq!(revision, 7);
    assert!(status_flags(&["rollout", "status", "web", "--revision=x"]).is_err());
}

fn write_flags(argv: &[&str]) -> Result<WriteFlags, clap::Error> {
    Ok(match parse(argv)?.command {
        Command::Rollout(
            Rollout::Undo { write, .. }
            | Rollout::Pause { write, .. }
            | Rollout::Resume { write, .. }
            | Rollout::Restart { write, .. },
        )
        | Command::Set(Set::Image { write, .. }) => write,
        other => panic!("{other:?}"),
    })
}

#[test]
fn args_output_and_dry_run_on_every_writing_verb() {
    for verb in [
        &["rollout", "undo", "web"][..],
        &["rollout", "pause", "web"][..],
        &["rollout", "resume", "web"][..],
        &["rollout", "restart", "web"][..],
        &["set", "image", "web", "app=img:2"][..],
    ] {
        let with = |extra: &[&str]| {
            let mut argv = verb.to_vec();
            argv.extend_from_slice(extra);
            write_flags(&argv)
        };
        assert_eq!(with(&[]).unwrap(), WriteFlags::default(), "{verb:?}");
        for (extra, output, dry_run) in [
            (&["-o", "yaml"][..], Some(OutputFormat::Yaml), DryRun::None),
            (&["-ojson"][..], Some(OutputFormat::Json), DryRun::None),
            (
                &["--output=name"][..],
                Some(OutputFormat::Name),
                DryRun::None,
            ),
            (&["--dry-run=client"][..], None, DryRun::Client),
            (
                &["--dry-run=server", "-o", "name"][..],
                Some(OutputFormat::Name),
                DryRun::Server,
            ),
            (&["--dry-run=none"][..], None, DryRun::None),
            // kubectl's bare --dry-run means client.
            (&["--dry-run"][..], None, DryRun::Client),
        ] {
            assert_eq!(
                with(extra).unwrap_or_else(|e| panic!("{verb:?} {extra:?}: {e}")),
                WriteFlags { output, dry_run },
                "{verb:?} {extra:?}"
            );
        }
        for bad in [&["-o", "wide"][..], &["--dry-run=yes"][..]] {
            assert_eq!(
                with(bad).unwrap_err().kind(),
                clap::error::ErrorKind::InvalidValue,
                "{verb:?} {bad:?}"
            );
        }
    }
    // Read-only verbs have no -o here.
    assert!(parse(&["rollout", "status", "web", "-o", "yaml"]).is_err());
}

#[test]
fn args_describe_and_completion() {
    assert!(
        matches!(parse(&["describe", "dl/web", "-n", "x"]).unwrap().command, Command::Describe { ref name } if name == "dl/web")
    );
    for (shell, want) in [
        ("bash", super::args::CompletionShell::Bash),
        ("zsh", super::args::CompletionShell::Zsh),
    ] {
        assert!(
            matches!(parse(&["completion", shell]).unwrap().command, Command::Completion { shell } if shell == want)
        );
    }
    assert!(parse(&["completion", "tcsh"]).is_err());
}

#[test]
fn args_global_flags_anywhere() {
    for argv in [
        &[
            "-n",
            "prod",
            "--kubeconfig",
            "/tmp/kc",
            "--context",
            "kind",
            "rollout",
            "history",
            "web",
        ][..],
        &[
            "rollout",
            "-n",
            "prod",
            "history",
            "--context=kind",
            "web",
            "--kubeconfig=/tmp/kc",
        ][..],
        &[
            "rollout",
            "history",
            "web",
            "--namespace",
            "prod",
            "--context",
            "kind",
            "--kubeconfig",
            "/tmp/kc",
        ][..],
    ] {
        let cli = parse(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        assert_eq!(cli.global.namespace.as_deref(), Some("prod"), "{argv:?}");
        assert_eq!(
            cli.global.client.context.as_deref(),
            Some("kind"),
            "{argv:?}"
        );
        assert_eq!(
            cli.global.client.kubeconfig.as_deref(),
            Some(std::path::Path::new("/tmp/kc")),
            "{argv:?}"
        );
        assert!(
            matches!(cli.command, Command::Rollout(Rollout::History { ref name, revision: None }) if name == "web")
        );
    }
}

#[test]
fn args_rollout_history_revision() {
    let cli = parse(&["rollout", "history", "web", "--revision=3"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Rollout(Rollout::History {
            revision: Some(3),
            ..
        })
    ));
}

#[test]
fn args_rollout_undo() {
    let cli = parse(&["rollout", "undo", "web", "--to-revision=2"]).unwrap();
    assert!(
        matches!(cli.command, Command::Rollout(Rollout::Undo { ref name, to_revision: 2, .. }) if name == "web")
    );
    let cli = parse(&["rollout", "undo", "web"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Rollout(Rollout::Undo { to_revision: 0, .. })
    ));
    let cli = parse(&["rollout", "undo", "web", "--to-revision=-1"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Rollout(Rollout::Undo {
            to_revision: -1,
            ..
        })
    ));
}

#[test]
fn args_pause_resume_restart() {
    assert!(
        matches!(parse(&["rollout", "pause", "web"]).unwrap().command, Command::Rollout(Rollout::Pause { ref name, .. }) if name == "web")
    );
    assert!(
        matches!(parse(&["rollout", "resume", "web"]).unwrap().command, Command::Rollout(Rollout::Resume { ref name, .. }) if name == "web")
    );
    assert!(
        matches!(parse(&["rollout", "restart", "web"]).unwrap().command, Command::Rollout(Rollout::Restart { ref name, .. }) if name == "web")
    );
}

#[test]
fn args_set_image() {
    let cli = parse(&["set", "image", "web", "a=b", "c=d", "-n", "ns"]).unwrap();
    assert_eq!(cli.global.namespace.as_deref(), Some("ns"));
    match cli.command {
        Command::Set(Set::Image { name, images, .. }) => {
            assert_eq!(name, "web");
            assert_eq!(images, ["a=b", "c=d"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn args_why_pending() {
    let cli = parse(&["why-pending", "p-123", "-n", "ns"]).unwrap();
    assert!(matches!(cli.command, Command::WhyPending { ref pod } if pod == "p-123"));
}

#[test]
fn args_missing_arguments_fail() {
    use clap::error::ErrorKind;
    for argv in [
        &["rollout", "status"][..],
        &["rollout", "history"][..],
        &["rollout", "undo"][..],
        &["rollout", "pause"][..],
        &["rollout", "resume"][..],
        &["rollout", "restart"][..],
        &["set", "image"][..],
        &["set", "image", "web"][..],
        &["why-pending"][..],
    ] {
        let e = parse(argv).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument, "{argv:?}");
        assert!(e.use_stderr(), "{argv:?}");
    }
    for argv in [&[][..], &["rollout"][..], &["set"][..]] {
        assert!(parse(argv).is_err(), "{argv:?}");
    }
    assert_eq!(
        parse(&["rollout", "frobnicate", "web"]).unwrap_err().kind(),
        ErrorKind::InvalidSubcommand
    );
    assert!(parse(&["rollout", "undo", "web", "--to-revision=two"]).is_err());
    assert!(parse(&["rollout", "status", "web", "extra"]).is_err());
    assert!(parse(&["-n"]).is_err());
}

#[test]
fn args_help_and_version_are_not_errors_for_the_user() {
    for argv in [
        &["--help"][..],
        &["rollout", "--help"][..],
        &["--version"][..],
    ] {
        let e = parse(argv).unwrap_err();
        assert!(!e.use_stderr(), "{argv:?}");
    }
}

// ---------------------------------------------------------------- template::describe

#[test]
fn describe_a_full_template() {
    let t: PodTemplateSpec = serde_json::from_value(json!({
        "metadata": {
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"a": "1", "kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}
        },
        "spec": {
            "initContainers": [{"name": "init", "image": "busybox:1", "command": ["sh", "-c"], "args": ["true"]}],
            "containers": [{
                "name": "web",
                "image": "nginx:1",
                "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}},
                "env": [
                    {"name": "MODE", "value": "prod"},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
                ],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "cfg", "mountPath": "/etc/app"}]
            }],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "app"}}],
            "nodeSelector": {"disk": "ssd", "zone": "a"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"},
                {"key": "spot", "operator": "Exists"}
            ]
        }
    }))
    .unwrap();
    assert_eq!(
        template::describe(&t),
        "Pod Template:\n\
         \x20 Labels:         app=web\n\
         \x20                 tier=front\n\
         \x20 Annotations:    a: 1\n\
         \x20                 kubectl.kubernetes.io/restartedAt: 2024-01-01T00:00:00Z\n\
         \x20 Init Containers:\n\
         \x20  init:\n\
         \x20   Image:        busybox:1\n\
         \x20   Port:         <none>\n\
         \x20   Command:\n\
         \x20     sh\n\
         \x20     -c\n\
         \x20   Args:\n\
         \x20     true\n\
         \x20   Environment:  <none>\n\
         \x20   Mounts:       <none>\n\
         \x20 Containers:\n\
         \x20  web:\n\
         \x20   Image:        nginx:1\n\
         \x20   Port:         80/TCP, 53/UDP\n\
         \x20   Limits:\n\
         \x20     memory:  128Mi\n\
         \x20   Requests:\n\
         \x20     cpu:  100m\n\
         \x20     memory:  64Mi\n\
         \x20   Environment:\n\
         \x20     MODE:  prod\n\
         \x20     TOKEN:  <set to a reference>\n\
         \x20   Mounts:       /data from data, /etc/app from cfg\n\
         \x20 Volumes:        data, cfg\n\
         \x20 Node-Selectors: disk=ssd\n\
         \x20                 zone=a\n\
         \x20 Tolerations:    dedicated=web:NoSchedule, spot\n"
    );
}

#[test]
fn describe_an_empty_template() {
    assert_eq!(
        template::describe(&PodTemplateSpec::default()),
        "Pod Template:\n\
         \x20 Labels:         <none>\n\
         \x20 Annotations:    <none>\n\
         \x20 Containers:\n\
         \x20 Volumes:        <none>\n\
         \x20 Node-Selectors: <none>\n\
         \x20 Tolerations:    <none>\n"
    );
    // Empty maps and lists read as <none> too; a container without an image says so.
    let t: PodTemplateSpec = serde_json::from_value(json!({
        "metadata": {"labels": {}, "annotations": {}},
        "spec": {"initContainers": [], "containers": [{"name": "c", "ports": [], "env": [], "command": []}], "nodeSelector": {}}
    }))
    .unwrap();
    assert_eq!(
        template::describe(&t),
        "Pod Template:\n\
         \x20 Labels:         <none>\n\
         \x20 Annotations:    <none>\n\
         \x20 Containers:\n\
         \x20  c:\n\
         \x20   Image:        <none>\n\
         \x20   Port:         <none>\n\
         \x20   Environment:  <none>\n\
         \x20   Mounts:       <none>\n\
         \x20 Volumes:        <none>\n\
         \x20 Node-Selectors: <none>\n\
         \x20 Tolerations:    <none>\n"
    );
}

// ---------------------------------------------------------------- rollout status --revision

fn at_revision(rev: Option<&str>) -> DeploymentLite {
    let mut d = plain("x");
    if let Some(r) = rev {
        d.metadata.annotations = Some([(REVISION_ANNOTATION.to_string(), r.to_string())].into());
    }
    d
}

#[test]
fn status_revision_must_be_the_running_one() {
    assert_eq!(check_status_revision(&at_revision(Some("3")), 0), Ok(()));
    assert_eq!(check_status_revision(&at_revision(None), 0), Ok(()));
    assert_eq!(check_status_revision(&at_revision(Some("3")), 3), Ok(()));
    assert_eq!(
        err(check_status_revision(&at_revision(Some("3")), 2).unwrap_err()),
        "error: desired revision (2) is different from the running revision (3)"
    );
    assert_eq!(
        err(check_status_revision(&at_revision(None), 1).unwrap_err()),
        "error: desired revision (1) is different from the running revision (0)"
    );
    assert!(
        err(check_status_revision(&at_revision(Some("x")), 1).unwrap_err())
            .starts_with(r#"error: cannot get the revision of deployment "x""#)
    );
}

// ---------------------------------------------------------------- rollout undo (client side)

#[test]
fn undo_patch_writes_the_revisions_template_without_the_hash_label() {
    let mut current = plain("web");
    current.metadata.annotations = Some(
        [
            ("team".to_string(), "a".to_string()),
            (CHANGE_CAUSE_ANNOTATION.to_string(), "now".to_string()),
            (REVISION_ANNOTATION.to_string(), "3".to_string()),
        ]
        .into(),
    );
    let mut tmpl = template("nginx:1");
    tmpl["metadata"]["labels"]["pod-template-hash"] = json!("abc");
    let old = rs_with("web-abc", Some("1"), Some("first"), tmpl);
    let mut old_with_bookkeeping = old.clone();
    old_with_bookkeeping
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("dlite.dev/completed-at".into(), "t".into());
    let patch = undo_patch(&current, &[old_with_bookkeeping, rs(3, "nginx:3")], 1).unwrap();
    assert_eq!(
        patch,
        json!([
            {"op": "replace", "path": "/spec/template", "value": template("nginx:1")},
            {"op": "add", "path": "/metadata/annotations", "value": {
                "team": "a",
                CHANGE_CAUSE_ANNOTATION: "first",
                REVISION_ANNOTATION: "3"
            }},
        ])
    );
    // A revision without a change-cause takes the current one away.
    let patch = undo_patch(&current, &[rs(1, "nginx:1")], 1).unwrap();
    assert_eq!(
        patch[1]["value"],
        json!({"team": "a", REVISION_ANNOTATION: "3"})
    );
    assert_eq!(
        err(undo_patch(&current, &[rs(1, "nginx:1")], 5).unwrap_err()),
        "error: unable to find specified revision 5 in history"
    );
}

// ---------------------------------------------------------------- -o

#[test]
fn output_forms() {
    use super::output::render;
    let mut d = plain("web");
    d.metadata.managed_fields = Some(vec![Default::default()]);
    assert_eq!(
        render(&d, "web", "paused", None, DryRun::None).unwrap(),
        "deploymentlite.apps.dlite.dev/web paused\n"
    );
    assert_eq!(
        render(&d, "web", "paused", None, DryRun::Client).unwrap(),
        "deploymentlite.apps.dlite.dev/web paused (dry run)\n"
    );
    assert_eq!(
        render(&d, "web", "image updated", None, DryRun::Server).unwrap(),
        "deploymentlite.apps.dlite.dev/web image updated (server dry run)\n"
    );
    assert_eq!(
        render(
            &d,
            "web",
            "paused",
            Some(OutputFormat::Name),
            DryRun::Client
        )
        .unwrap(),
        "deploymentlite.apps.dlite.dev/web\n"
    );
    let j = render(&d, "web", "paused", Some(OutputFormat::Json), DryRun::None).unwrap();
    assert!(
        j.starts_with(
            "{\n    \"apiVersion\": \"apps.dlite.dev/v1\",\n    \"kind\": \"DeploymentLite\",\n"
        ),
        "{j}"
    );
    let back: Value = serde_json::from_str(&j).unwrap();
    assert_eq!(back["spec"]["replicas"], 3);
    assert!(back["metadata"].get("managedFields").is_none(), "{j}");
    let y = render(&d, "web", "paused", Some(OutputFormat::Yaml), DryRun::None).unwrap();
    assert!(
        y.starts_with("apiVersion: apps.dlite.dev/v1\nkind: DeploymentLite\nmetadata:\n"),
        "{y}"
    );
    assert!(!y.contains("managedFields"), "{y}");
    let back: Value = serde_saphyr::from_str(&y).unwrap();
    assert_eq!(back["metadata"]["name"], "web");
    assert_eq!(
        back["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:3"
    );
}

#[test]
fn completion_scripts_name_the_verbs() {
    use super::args::CompletionShell;
    for (shell, marker) in [
        (CompletionShell::Bash, "complete -F"),
        (CompletionShell::Zsh, "#compdef kubectl-dlite"),
    ] {
        let mut out = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let cli = Cli {
            global: Default::default(),
            command: Command::Completion { shell },
        };
        rt.block_on(super::run::run(cli, &mut out)).unwrap();
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains(marker), "{shell:?}: {script}");
        for verb in ["rollout", "describe", "why-pending", "--dry-run", "--watch"] {
            assert!(script.contains(verb), "{shell:?} lacks {verb}");
        }
    }
}

/// The bash script really completes subcommands and flags below the top
/// level (clap_complete's own script for a hyphenated name does not).
#[test]
fn bash_completion_completes_nested_words() {
    use super::args::CompletionShell;
    let mut out = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cli = Cli {
        global: Default::default(),
        command: Command::Completion {
            shell: CompletionShell::Bash,
        },
    };
    rt.block_on(super::run::run(cli, &mut out)).unwrap();
    let dir = std::env::temp_dir().join(format!("dlite-completion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("kubectl-dlite.bash");
    std::fs::write(&script, &out).unwrap();
    let complete = |words: &str| {
        let probe = format!(
            r#"source {script}; f=$(complete -p kubectl-dlite | sed 's/.*-F \([^ ]*\).*/\1/'); COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); $f kubectl-dlite "${{COMP_WORDS[-1]}}" "${{COMP_WORDS[-2]}}"; echo "${{COMPREPLY[@]}}""#,
            script = script.display()
        );
        let o = std::process::Command::new("bash")
            .arg("-c")
            .arg(&probe)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(complete("kubectl-dlite rollout st"), "status");
    assert_eq!(complete("kubectl-dlite rollout status web --wa"), "--watch");
    assert_eq!(complete("kubectl-dlite set image web --dry"), "--dry-run");
    assert_eq!(complete("kubectl-dlite desc"), "describe");
    std::fs::remove_dir_all(&dir).unwrap();
}
