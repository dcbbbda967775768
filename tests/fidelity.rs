//! Template identity and schema fidelity against a real API server: the
//! templates users copy from their Deployments, which the API server
//! defaults and canonicalises when it stores a ReplicaSet.

mod support;

use std::time::{Duration, Instant};

use dlite::api::DeploymentLite;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use support::dl::{install_crd, manifest, replica_sets, start_controller, wait_complete};
use support::{TestNamespace, wait_for};

const ROLLOUT: Duration = Duration::from_secs(90);

async fn setup(prefix: &str) -> (TestNamespace, support::Process, Api<DeploymentLite>) {
    let ns = TestNamespace::new(prefix).await;
    install_crd(&ns.client).await;
    let ctrl = start_controller(&ns, "");
    let api: Api<DeploymentLite> = ns.api();
    (ns, ctrl, api)
}

/// A manifest whose only container is `container` (name and image added).
fn with_container(name: &str, container: Value, pod_spec: Value) -> DeploymentLite {
    // Plain key-by-key merges: support::dl::merge replaces with `{}`.
    let mut c = json!({"name": "app", "image": "app:v1"});
    c.as_object_mut()
        .unwrap()
        .extend(container.as_object().unwrap().clone());
    let mut spec = json!({"containers": [c]});
    spec.as_object_mut()
        .unwrap()
        .extend(pod_spec.as_object().unwrap().clone());
    manifest(name, 2, "app:v1", json!({"template": {"spec": spec}}))
}

/// Watches `name` for `period` after its rollout completed: it must keep
/// exactly `want` ReplicaSets and no collision count. Fails at the first
/// sample that breaks this, with what it saw.
async fn stays_settled(
    ns: &TestNamespace,
    api: &Api<DeploymentLite>,
    name: &str,
    want: usize,
    period: Duration,
) {
    let start = Instant::now();
    let mut samples = 0;
    while start.elapsed() < period {
        let rses = replica_sets(ns, name).await;
        let dl = api.get(name).await.unwrap();
        let collisions = dl.status.as_ref().and_then(|s| s.collision_count);
        assert!(
            rses.len() == want && collisions.unwrap_or(0) == 0,
            "{name} after {:?} ({samples} samples): {} ReplicaSets {:?}, collisionCount {collisions:?}",
            start.elapsed(),
            rses.len(),
            rses.iter().map(|r| r.name_any()).collect::<Vec<_>>()
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The manifests from issue 9: each made a new ReplicaSet every sync,
/// forever, because the stored ReplicaSet's template (canonical
/// quantities, defaulted probe and mount fields) never compared equal to
/// the object's.
#[tokio::test]
async fn templates_the_server_rewrites_make_exactly_one_replica_set() {
    let (ns, ctrl, api) = setup("t-defaults").await;
    let cases = [
        with_container(
            "quantities",
            json!({"resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}}}),
            json!({}),
        ),
        with_container(
            "probe-mount",
            json!({"readinessProbe": {"httpGet": {"port": 80}},
                   "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": false}]}),
            json!({"volumes": [{"name": "data", "emptyDir": {}}]}),
        ),
        with_container(
            "zeros-and-defaults",
            json!({"imagePullPolicy": "IfNotPresent", "ports": [{"containerPort": 8080}],
                   "resources": {"limits": {"cpu": "0.25", "memory": "1e3"}},
                   "livenessProbe": {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 0},
                   "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}),
            json!({"terminationGracePeriodSeconds": 30, "hostNetwork": false,
                   "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}]}),
        ),
    ];
    for dl in &cases {
        api.create(&PostParams::default(), dl).await.unwrap();
    }
    for dl in &cases {
        wait_complete(&api, &dl.name_any(), ROLLOUT).await;
    }
    for dl in &cases {
        stays_settled(&ns, &api, &dl.name_any(), 1, Duration::from_secs(3)).await;
    }
    // Each template defaulted once, however many syncs the rollouts took:
    // learnt from the create of its ReplicaSet, so no dry run at all.
    let log = std::fs::read_to_string(&ctrl.log).unwrap();
    let learnt = log
        .matches("pod template defaulted by the API server")
        .count();
    // (The field's name and value may be apart: the log can be coloured.)
    let from_create = log
        .lines()
        .filter(|l| l.contains("pod template defaulted by the API server"))
        .filter(|l| l.ends_with(r#""create""#))
        .count();
    let syncs = log.matches("reconciled").count();
    assert_eq!(learnt, cases.len(), "{syncs} syncs logged");
    assert_eq!(
        from_create, learnt,
        "{syncs} syncs logged; the rest were dry runs"
    );
    assert!(syncs > cases.len(), "{syncs} syncs logged");
    ns.cleanup().await;
}

/// Removing fields the API server would also fill in (imagePullPolicy, a
/// container securityContext) is a template change, as for a Deployment:
/// the defaulted template then differs from the stored one.
#[tokio::test]
async fn removing_a_field_the_server_defaults_rolls_out() {
    let (ns, _ctrl, api) = setup("t-removal").await;
    let dl = with_container(
        "removal",
        json!({"imagePullPolicy": "Always", "securityContext": {"allowPrivilegeEscalation": false}}),
        json!({}),
    );
    api.create(&PostParams::default(), &dl).await.unwrap();
    wait_complete(&api, "removal", ROLLOUT).await;
    let patch = json!([{"op": "replace", "path": "/spec/template/spec/containers",
                        "value": [{"name": "app", "image": "app:v1"}]}]);
    api.patch(
        "removal",
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(patch).unwrap()),
    )
    .await
    .unwrap();
    let done = wait_complete(&api, "removal", ROLLOUT).await;
    let rses = replica_sets(&ns, "removal").await;
    assert_eq!(rses.len(), 2, "a second revision: {rses:?}");
    assert_eq!(
        done.annotations()
            .get("dlite.dev/revision")
            .map(String::as_str),
        Some("2")
    );
    let new = &rses[1];
    let c = &new
        .spec
        .as_ref()
        .unwrap()
        .template
        .as_ref()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(c.security_context, None);
    stays_settled(&ns, &api, "removal", 2, Duration::from_secs(2)).await;
    ns.cleanup().await;
}

/// A rollback to a revision whose template the server rewrote reuses that
/// revision's ReplicaSet (the copied template defaults to itself) instead
/// of creating a twin.
#[tokio::test]
async fn rollback_to_a_defaulted_revision_reuses_its_replica_set() {
    let (ns, _ctrl, api) = setup("t-rb-defaulted").await;
    let dl = with_container(
        "rbd",
        json!({"resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}},
               "readinessProbe": {"httpGet": {"port": 80}}}),
        json!({}),
    );
    api.create(&PostParams::default(), &dl).await.unwrap();
    wait_complete(&api, "rbd", ROLLOUT).await;
    let first = replica_sets(&ns, "rbd").await[0].name_any();
    support::dl::set_image(&api, "rbd", "app:v2").await;
    wait_complete(&api, "rbd", ROLLOUT).await;
    let patch = json!({"spec": {"rollbackTo": {"revision": 1}}});
    api.patch("rbd", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let done = wait_for(
        "the rollback to revision 1 to complete",
        ROLLOUT,
        || async {
            let d = api.get("rbd").await.map_err(|e| e.to_string())?;
            let st = d.status.clone().unwrap_or_default();
            let rev = d.annotations().get("dlite.dev/revision").cloned();
            if d.spec.rollback_to.is_none()
                && rev.as_deref() == Some("3")
                && st.updated_replicas == 2
                && st.available_replicas == 2
                && st.replicas == 2
            {
                Ok(d)
            } else {
                Err(format!(
                    "revision {rev:?}, rollbackTo {:?}, status {st:?}",
                    d.spec.rollback_to
                ))
            }
        },
    )
    .await;
    assert_eq!(done.status.as_ref().unwrap().collision_count, None);
    let rses = replica_sets(&ns, "rbd").await;
    assert_eq!(
        rses.len(),
        2,
        "{:?}",
        rses.iter().map(|r| r.name_any()).collect::<Vec<_>>()
    );
    let revision_of = |n: &str| {
        rses.iter()
            .find(|r| r.name_any() == n)
            .and_then(|r| r.annotations().get("dlite.dev/revision").cloned())
    };
    assert_eq!(revision_of(&first).as_deref(), Some("3"));
    stays_settled(&ns, &api, "rbd", 2, Duration::from_secs(2)).await;
    ns.cleanup().await;
}

/// `containers: []` is refused by the API server naming the field, in the
/// words it uses for a Deployment (`spec.template.spec.containers: Required
/// value`), instead of being stored and failing every sync.
#[tokio::test]
async fn a_template_without_containers_is_refused_naming_the_field() {
    let ns = TestNamespace::new("t-no-containers").await;
    install_crd(&ns.client).await;
    let api: Api<DeploymentLite> = ns.api();
    let mut dl = manifest("empty", 1, "app:v1", json!({}));
    dl.spec.template.spec.as_mut().unwrap().containers.clear();
    let err = api
        .create(&PostParams::default(), &dl)
        .await
        .expect_err("a template without containers must be refused");
    let msg = match &err {
        kube::Error::Api(s) => s.message.clone(),
        other => panic!("expected a refusal by the API server, got {other}"),
    };
    assert!(
        msg.contains("spec.template.spec.containers: Required value"),
        "{msg}"
    );
    // The same object as a Deployment is refused with the same field and
    // words: the oracle for the message above.
    let deployment: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "metadata": {"name": "empty"},
        "spec": {"selector": {"matchLabels": {"app": "empty"}},
                 "template": {"metadata": {"labels": {"app": "empty"}}, "spec": {"containers": []}}}
    }))
    .unwrap();
    let native = ns
        .api::<k8s_openapi::api::apps::v1::Deployment>()
        .create(&PostParams::default(), &deployment)
        .await
        .expect_err("the Deployment is refused too");
    assert!(
        native
            .to_string()
            .contains("spec.template.spec.containers: Required value"),
        "{native}"
    );
    ns.cleanup().await;
}

/// A template the schema accepts but ReplicaSet validation refuses (an
/// invalid container name): upstream's ReplicaSetCreateError, with the
/// server's message and no client debug dump, on the event and on the
/// Progressing condition; without a progress deadline (2147483647 means
/// none) no condition.
#[tokio::test]
async fn a_refused_replica_set_is_reported_as_upstream_does() {
    let (ns, _ctrl, api) = setup("t-create-error").await;
    let mut with_deadline = manifest("refused", 1, "app:v1", json!({}));
    with_deadline
        .spec
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .name = "Bad_Name".into();
    let mut without = with_deadline.clone();
    without.metadata.name = Some("refused-nodeadline".into());
    without.spec.progress_deadline_seconds = Some(i32::MAX);
    api.create(&PostParams::default(), &with_deadline)
        .await
        .unwrap();
    api.create(&PostParams::default(), &without).await.unwrap();
    let cond = wait_for(
        "Progressing=False ReplicaSetCreateError",
        ROLLOUT,
        || async {
            let d = api.get("refused").await.map_err(|e| e.to_string())?;
            let c = d
                .status
                .clone()
                .unwrap_or_default()
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Progressing");
            match c {
                Some(c) if c.reason.as_deref() == Some("ReplicaSetCreateError") => Ok(c),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(cond.status, "False");
    let msg = cond.message.unwrap_or_default();
    assert!(
        msg.starts_with("Failed to create new replica set \"refused-"),
        "{msg}"
    );
    assert!(
        msg.contains(
            "is invalid: spec.template.spec.containers[0].name: Invalid value: \"Bad_Name\""
        ),
        "{msg}"
    );
    assert!(
        !msg.contains("Status {") && !msg.contains("ApiError"),
        "{msg}"
    );
    let events: k8s_openapi::api::core::v1::Event = wait_for(
        "a ReplicaSetCreateError event for refused-nodeadline",
        ROLLOUT,
        || async {
            let list = ns
                .api::<k8s_openapi::api::core::v1::Event>()
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .into_iter()
                .find(|e| {
                    e.involved_object.name.as_deref() == Some("refused-nodeadline")
                        && e.reason.as_deref() == Some("ReplicaSetCreateError")
                })
                .ok_or_else(|| "no such event yet".to_string())
        },
    )
    .await;
    assert_eq!(events.type_.as_deref(), Some("Warning"));
    let d = api.get("refused-nodeadline").await.unwrap();
    let conditions = d.status.unwrap_or_default().conditions;
    assert!(
        conditions.iter().all(|c| c.type_ != "Progressing"),
        "no progress deadline, no Progressing condition: {conditions:?}"
    );
    ns.cleanup().await;
}

/// autoRollback: revisions 1 and 2 complete, revision 3 never becomes
/// Ready. Revision 3 is rolled back exactly once, to revision 2 (the newest
/// that completed other than the failed one), and nothing moves afterwards:
/// the restored revision, which starts without pods and under the failure's
/// Progressing=False condition, is not rolled back in turn. Both strategies.
#[tokio::test]
async fn auto_rollback_restores_the_last_good_revision_once() {
    let (ns, _ctrl, api) = setup("t-autorollback").await;
    let names = ["auto-rolling", "auto-recreate"];
    for name in names {
        let mut extra = json!({"autoRollback": true, "progressDeadlineSeconds": 5});
        if name == "auto-recreate" {
            extra["strategy"] = json!({"type": "Recreate"});
        }
        api.create(&PostParams::default(), &manifest(name, 2, "app:v1", extra))
            .await
            .unwrap();
    }
    for name in names {
        wait_complete(&api, name, ROLLOUT).await;
        support::dl::set_image(&api, name, "app:v2").await;
    }
    for name in names {
        wait_complete(&api, name, ROLLOUT).await;
        let broken = json!({"spec": {"template": {
            "metadata": {"labels": {"app": name, "testenv.dlite.dev/never-ready": "true"}},
            "spec": {"containers": [{"name": "app", "image": "app:v3-broken"}]}}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&broken))
            .await
            .unwrap();
    }
    let events_of = |name: &'static str| {
        let ns = &ns;
        async move {
            let list = ns
                .api::<k8s_openapi::api::core::v1::Event>()
                .list(&Default::default())
                .await
                .unwrap();
            list.items
                .into_iter()
                .filter(|e| {
                    e.involved_object.name.as_deref() == Some(name)
                        && e.reason.as_deref() == Some("DeploymentAutoRollback")
                })
                .map(|e| (e.message.unwrap_or_default(), e.count.unwrap_or(1)))
                .collect::<Vec<_>>()
        }
    };
    for name in names {
        wait_for(
            &format!("{name} rolled back automatically"),
            ROLLOUT,
            || async {
                let e = events_of(name).await;
                if e.iter().any(|(m, _)| m.contains("rolled back to revision")) {
                    Ok(())
                } else {
                    Err(format!("{e:?}"))
                }
            },
        )
        .await;
        let done = wait_complete(&api, name, ROLLOUT).await;
        let image = done.spec.template.spec.as_ref().unwrap().containers[0]
            .image
            .clone();
        assert_eq!(image.as_deref(), Some("app:v2"), "{name}");
    }
    // Three progress deadlines later, nothing has moved: same revision,
    // same template, one rollback.
    let settled: Vec<_> = revisions_and_images(&api, &names).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        let now = revisions_and_images(&api, &names).await;
        assert_eq!(now, settled, "after {:?}", start.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for name in names {
        let e = events_of(name).await;
        assert_eq!(e.len(), 1, "{name}: {e:?}");
        assert_eq!(e[0].1, 1, "{name}: {e:?}");
        assert!(
            e[0].0.contains(
                "Revision 3 exceeded its progress deadline of 5s; rolled back to revision 2"
            ),
            "{name}: {e:?}"
        );
        let rses = replica_sets(&ns, name).await;
        assert_eq!(
            rses.len(),
            3,
            "{name}: the failed revision stays in history"
        );
    }
    ns.cleanup().await;
}

/// (revision annotation, image) of each object.
async fn revisions_and_images(
    api: &Api<DeploymentLite>,
    names: &[&str],
) -> Vec<(Option<String>, Option<String>)> {
    let mut out = vec![];
    for name in names {
        let d = api.get(name).await.unwrap();
        out.push((
            d.annotations().get("dlite.dev/revision").cloned(),
            d.spec.template.spec.as_ref().unwrap().containers[0]
                .image
                .clone(),
        ));
    }
    out
}

/// A refusal, reduced to whether it names the image field (the rest of the
/// text differs by kind and by who refused: apps/v1 validation or the CRD
/// schema).
fn refusal(e: &kube::Error) -> String {
    let text = e.to_string();
    if text.contains("spec.template.spec.containers[0].image") {
        "refused, naming spec.template.spec.containers[0].image".into()
    } else {
        format!("refused: {text}")
    }
}

/// The defaulting policy picks `imagePullPolicy` as the API server does for
/// a Deployment, for every shape of image reference: each image goes to a
/// Deployment and a DeploymentLite (server-side dry runs, so admission and
/// defaulting run but nothing is stored) and the two must agree.
#[tokio::test]
async fn image_pull_policy_is_defaulted_as_for_a_deployment() {
    use k8s_openapi::api::apps::v1::Deployment;
    let ns = TestNamespace::new("fd-pull").await;
    install_crd(&ns.client).await;
    let dls: Api<DeploymentLite> = ns.api();
    let deployments: Api<Deployment> = ns.api();
    let digest = "sha256:".to_string() + &"0123456789abcdef".repeat(4);
    let images = [
        "nginx".to_string(),
        "nginx:latest".into(),
        "nginx:1.27".into(),
        "nginx:Latest".into(),
        "library/nginx:latest".into(),
        "registry.example:5000/team/app".into(),
        "registry.example:5000/team/app:2.0".into(),
        "localhost/app".into(),
        "localhost:latest".into(),
        format!("nginx@{digest}"),
        format!("nginx:latest@{digest}"),
        format!("nginx:1.27@{digest}"),
        "nginx@sha256:abc".into(),
        "[::1]:5000/app".into(),
        "Nginx".into(),
        "MyRegistry/app".into(),
        "my_registry/app:latest".into(),
        "app--name__x.y:latest".into(),
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
        // Refused by both, naming the field.
        "".into(),
    ];
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut rows = vec![];
    for (i, image) in images.iter().enumerate() {
        let name = format!("pull-{i}");
        let dl = manifest(&name, 1, image, json!({}));
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": serde_json::to_value(&dl.spec).unwrap(),
        }))
        .unwrap();
        let want = match deployments.create(&dry_run, &deployment).await {
            Ok(d) => d.spec.unwrap().template.spec.unwrap().containers[0]
                .image_pull_policy
                .clone(),
            Err(e) => Some(refusal(&e)),
        };
        let got = match dls.create(&dry_run, &dl).await {
            Ok(d) => d.spec.template.spec.unwrap().containers[0]
                .image_pull_policy
                .clone(),
            Err(e) => Some(refusal(&e)),
        };
        rows.push((image.clone(), want, got));
    }
    let table: Vec<String> = rows
        .iter()
        .map(|(image, want, got)| format!("{image:70} Deployment {want:?}  DeploymentLite {got:?}"))
        .collect();
    println!("{}", table.join("\n"));
    let differ: Vec<&String> = rows
        .iter()
        .zip(&table)
        .filter(|((_, want, got), _)| want != got)
        .map(|(_, line)| line)
        .collect();
    assert!(differ.is_empty(), "imagePullPolicy differs:\n{differ:#?}");
    ns.cleanup().await;
}
