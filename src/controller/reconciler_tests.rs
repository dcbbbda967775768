//! The middle tier: the reconciler's execute path against a fake API
//! server (crate::fake_api), between the pure planner's unit tests and the
//! cluster tests. What is asserted is what the API server would see: which
//! writes, in which order, with which preconditions, and what a 404 or a
//! 409 does to the rest of the plan.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::runtime::reflector::store::Writer;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use super::*;
use crate::fake_api::{FakeApi, Recorded, echo, status};

const NS: &str = "ns";
const RS_PATH: &str = "/apis/apps/v1/namespaces/ns/replicasets";
const DL_PATH: &str = "/apis/apps.dlite.dev/v1/namespaces/ns/deploymentlites/web";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";

fn dl() -> DeploymentLite {
    serde_json::from_value(json!({
        "apiVersion": "apps.dlite.dev/v1", "kind": "DeploymentLite",
        "metadata": {"name": "web", "namespace": NS, "uid": "dl-uid", "resourceVersion": "10", "generation": 2},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}
        },
        "status": {"observedGeneration": 1, "replicas": 3}
    }))
    .unwrap()
}

fn replica_set(name: &str, replicas: i32, owner_uid: &str) -> ReplicaSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": NS, "uid": format!("{name}-uid"), "resourceVersion": "5",
                     "ownerReferences": [{"apiVersion": "apps.dlite.dev/v1", "kind": "DeploymentLite",
                                          "name": "other", "uid": owner_uid, "controller": true}]},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "other:1"}]}}}
    }))
    .unwrap()
}

fn context(api: &FakeApi) -> Context {
    Context {
        client: api.client.clone(),
        replica_sets: Writer::<ReplicaSet>::default().as_reader(),
        events: EventQueue::start(Recorder::new(api.client.clone(), CONTROLLER_NAME, None)),
        metrics: ControllerMetrics::register(&mut Registry::default()),
        defaults: ServerDefaults::default(),
        expectations: Default::default(),
        workers: Workers::new(1, Writer::<DeploymentLite>::default().as_reader()),
    }
}

/// Answers writes the way the API server does where the reply is decoded:
/// a ReplicaSet for ReplicaSet writes, the object for DeploymentLite writes
/// (with a new resourceVersion), the body for events.
fn well_behaved(r: &Recorded) -> (u16, Value) {
    if r.path.starts_with(RS_PATH) {
        let name = r.path.rsplit('/').next().unwrap_or("created");
        let mut rs = serde_json::to_value(replica_set(name, 1, "dl-uid")).unwrap();
        rs["metadata"]["resourceVersion"] = json!("6");
        return (200, rs);
    }
    if r.path.starts_with(DL_PATH) {
        let mut obj = serde_json::to_value(dl()).unwrap();
        if r.method == "PUT" {
            obj = r.body.clone();
        }
        obj["metadata"]["resourceVersion"] = json!(if r.path.ends_with("/status") {
            "12"
        } else {
            "11"
        });
        return (200, obj);
    }
    echo(r, "1")
}

/// Events are written by the event queue's own task, after the sync that
/// queued them: waits (up to 5 s) until `count` event requests arrived,
/// then returns the other requests and the events, each in the order the
/// API server saw them.
async fn writes_and_events(api: &FakeApi, count: usize) -> (Vec<Recorded>, Vec<Recorded>) {
    let start = std::time::Instant::now();
    loop {
        let (events, writes): (Vec<Recorded>, Vec<Recorded>) = api
            .requests()
            .into_iter()
            .partition(|r| r.path.starts_with(EVENTS_PATH));
        if events.len() >= count || start.elapsed() > Duration::from_secs(5) {
            assert_eq!(events.len(), count, "event requests: {events:?}");
            return (writes, events);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn lines(requests: &[Recorded]) -> Vec<String> {
    requests.iter().map(Recorded::line).collect()
}

fn status_with_replicas(replicas: i32) -> DeploymentLiteStatus {
    DeploymentLiteStatus {
        observed_generation: Some(2),
        replicas,
        ..Default::default()
    }
}

fn new_rs(size: i32) -> Box<ReplicaSet> {
    let mut rs = replica_set("web-abc", size, "dl-uid");
    rs.metadata.uid = None;
    rs.metadata.resource_version = None;
    Box::new(rs)
}

#[tokio::test]
async fn writes_go_out_in_plan_order_each_conditional_on_what_was_read() {
    let api = FakeApi::start(well_behaved);
    let plan = planner::Plan {
        actions: vec![
            Action::CreateReplicaSet(new_rs(1)),
            Action::UpdateReplicaSet {
                name: "web-old".into(),
                resource_version: "7".into(),
                from: 3,
                replicas: 2,
                annotations: BTreeMap::from([("dlite.dev/revision".into(), "1".into())]),
                min_ready_seconds: 0,
            },
            Action::AnnotateDeployment {
                annotations: BTreeMap::from([("dlite.dev/revision".into(), "2".into())]),
            },
        ],
        status: status_with_replicas(4),
        requeue_after: Some(Duration::from_secs(3)),
    };
    let requeue = execute(&context(&api), &dl(), NS, plan).await.unwrap();
    assert_eq!(requeue, Requeue::requeue(Duration::from_secs(3)));

    let (r, events) = writes_and_events(&api, 2).await;
    assert_eq!(
        lines(&r),
        [
            format!("POST {RS_PATH}"),
            format!("PATCH {RS_PATH}/web-old"),
            format!("PATCH {DL_PATH}"),
            format!("PUT {DL_PATH}/status"),
        ]
    );
    // The events, in the order of the writes they report.
    assert_eq!(
        events[0].body["note"],
        "Scaled up replica set web-abc from 0 to 1"
    );
    assert_eq!(events[0].body["reason"], "ScalingReplicaSet");
    assert_eq!(
        events[1].body["note"],
        "Scaled down replica set web-old from 3 to 2"
    );
    // The scale-down is conditional on the resourceVersion the plan read.
    assert_eq!(r[1].body["metadata"]["resourceVersion"], "7");
    assert_eq!(r[1].body["spec"]["replicas"], 2);
    // The object's annotation is conditional on the object as read, and the
    // status write on the object the annotation returned.
    assert_eq!(r[2].body["metadata"]["resourceVersion"], "10");
    assert_eq!(r[3].body["metadata"]["resourceVersion"], "11");
    assert_eq!(r[3].body["status"]["replicas"], 4);
}

#[tokio::test]
async fn a_conflict_ends_the_sync_before_any_later_write() {
    let api = FakeApi::start(|r| {
        if r.method == "PATCH" && r.path == format!("{RS_PATH}/web-old") {
            return status(
                409,
                "Conflict",
                "Operation cannot be fulfilled on replicasets.apps \"web-old\": the object has been modified",
            );
        }
        well_behaved(r)
    });
    let plan = planner::Plan {
        actions: vec![
            Action::UpdateReplicaSet {
                name: "web-old".into(),
                resource_version: "7".into(),
                from: 3,
                replicas: 2,
                annotations: BTreeMap::new(),
                min_ready_seconds: 0,
            },
            Action::UpdateReplicaSet {
                name: "web-new".into(),
                resource_version: "8".into(),
                from: 0,
                replicas: 1,
                annotations: BTreeMap::new(),
                min_ready_seconds: 0,
            },
        ],
        status: status_with_replicas(4),
        requeue_after: None,
    };
    let ctx = Arc::new(context(&api));
    let err = execute(&ctx, &dl(), NS, plan).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    // Nothing after the refused write: no scale-up, no event, no status.
    assert_eq!(api.lines(), [format!("PATCH {RS_PATH}/web-old")]);
    // The error policy retries a conflict soon, from fresh state.
    assert_eq!(
        error_policy(Arc::new(dl()), &err, ctx),
        Requeue::requeue(CONFLICT_RETRY)
    );
}

#[tokio::test]
async fn an_unchanged_status_is_not_written() {
    let api = FakeApi::start(well_behaved);
    let current = dl();
    let plan = planner::Plan {
        actions: vec![],
        status: current.status.clone().unwrap(),
        requeue_after: None,
    };
    let requeue = execute(&context(&api), &current, NS, plan).await.unwrap();
    assert_eq!(requeue, Requeue::await_change());
    assert!(api.lines().is_empty(), "{:?}", api.lines());
}

#[tokio::test]
async fn history_cleanup_deletes_with_uid_and_version_preconditions_and_tolerates_404() {
    let api = FakeApi::start(|r| {
        if r.method == "DELETE" && r.path.ends_with("/web-gone") {
            return status(404, "NotFound", "replicasets.apps \"web-gone\" not found");
        }
        well_behaved(r)
    });
    let delete = |name: &str| Action::DeleteReplicaSet {
        name: name.into(),
        uid: format!("{name}-uid"),
        resource_version: "9".into(),
    };
    let plan = planner::Plan {
        actions: vec![delete("web-gone"), delete("web-1")],
        status: dl().status.unwrap(),
        requeue_after: None,
    };
    execute(&context(&api), &dl(), NS, plan).await.unwrap();
    let r = api.requests();
    assert_eq!(
        api.lines(),
        [
            format!("DELETE {RS_PATH}/web-gone"),
            format!("DELETE {RS_PATH}/web-1")
        ]
    );
    assert_eq!(
        r[1].body["preconditions"],
        json!({"uid": "web-1-uid", "resourceVersion": "9"})
    );
    assert_eq!(r[1].body["propagationPolicy"], "Background");
}

#[tokio::test]
async fn a_name_taken_by_another_controller_raises_the_collision_count() {
    let api = FakeApi::start(|r| {
        if r.method == "POST" && r.path == RS_PATH {
            return status(
                409,
                "AlreadyExists",
                "replicasets.apps \"web-abc\" already exists",
            );
        }
        if r.method == "GET" && r.path == format!("{RS_PATH}/web-abc") {
            return (
                200,
                serde_json::to_value(replica_set("web-abc", 1, "someone-else")).unwrap(),
            );
        }
        well_behaved(r)
    });
    let plan = planner::Plan {
        actions: vec![
            Action::CreateReplicaSet(new_rs(1)),
            Action::Event {
                type_: EventType::Normal,
                reason: "NotReached",
                message: "the plan ends at the collision".into(),
            },
        ],
        status: status_with_replicas(3),
        requeue_after: None,
    };
    let requeue = execute(&context(&api), &dl(), NS, plan).await.unwrap();
    assert_eq!(requeue, Requeue::requeue(Duration::from_millis(100)));
    let (r, events) = writes_and_events(&api, 1).await;
    assert_eq!(
        lines(&r),
        [
            format!("POST {RS_PATH}"),
            format!("GET {RS_PATH}/web-abc"),
            format!("PUT {DL_PATH}/status"),
        ]
    );
    assert_eq!(events[0].body["reason"], "ReplicaSetNameCollision");
    assert_eq!(r[2].body["status"]["collisionCount"], 1);
    assert_eq!(r[2].body["metadata"]["resourceVersion"], "10");
}

#[tokio::test]
async fn a_rollback_replaces_the_object_and_the_status_follows_its_version() {
    let api = FakeApi::start(well_behaved);
    let mut object = dl();
    object.spec.rollback_to = Some(crate::api::RollbackConfig { revision: 1 });
    let mut template = object.spec.template.clone();
    template.spec.as_mut().unwrap().containers[0].image = Some("nginx:1.26".into());
    let plan = planner::Plan {
        actions: vec![Action::Rollback {
            template: Some(Box::new(template)),
            annotations: BTreeMap::new(),
        }],
        status: status_with_replicas(3),
        requeue_after: None,
    };
    execute(&context(&api), &object, NS, plan).await.unwrap();
    assert_eq!(
        api.lines(),
        [format!("PUT {DL_PATH}"), format!("PUT {DL_PATH}/status")]
    );
    let r = api.requests();
    // The whole object is replaced, conditional on the version read, with
    // the request cleared and the revision's template in place.
    assert_eq!(r[0].body["metadata"]["resourceVersion"], "10");
    assert_eq!(r[0].body["spec"].get("rollbackTo"), None);
    assert_eq!(
        r[0].body["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26"
    );
    assert_eq!(r[1].body["metadata"]["resourceVersion"], "11");
}

/// The ReplicaSet the server stored answers what a dry run of the same
/// template would: after a create, the defaulted template comes from the
/// cache, with no request (a new object's first sync needs no dry run).
#[tokio::test]
async fn a_created_replica_set_teaches_the_defaulted_template() {
    let api = FakeApi::start(well_behaved);
    let ctx = context(&api);
    let plan = planner::Plan {
        actions: vec![Action::CreateReplicaSet(new_rs(1))],
        status: status_with_replicas(1),
        requeue_after: None,
    };
    execute(&ctx, &dl(), NS, plan).await.unwrap();
    assert_eq!(ctx.defaults.len(), 1);
    let learnt = ctx.defaults.template(&ctx.client, &dl()).await.unwrap();
    // What the fake server stored (well_behaved answers every ReplicaSet
    // write with the same object), less the hash label.
    let stored = replica_set("replicasets", 1, "dl-uid")
        .spec
        .unwrap()
        .template
        .unwrap();
    assert_eq!(learnt, Defaulted::Template(Arc::new(stored)));
    let creates = api
        .lines()
        .iter()
        .filter(|l| *l == &format!("POST {RS_PATH}"))
        .count();
    assert_eq!(creates, 1, "{:?}", api.lines());
}

fn store_of(objects: &[DeploymentLite]) -> Store<DeploymentLite> {
    let mut writer = Writer::<DeploymentLite>::default();
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(o.clone()));
    }
    writer.as_reader()
}

fn named(name: &str, generation: i64) -> DeploymentLite {
    let mut d = dl();
    d.metadata.name = Some(name.into());
    d.metadata.generation = Some(generation);
    d
}

#[tokio::test]
async fn syncs_wait_for_a_worker_in_the_order_they_were_requested() {
    let names = ["a", "b", "c", "d", "e"];
    let objects: Vec<DeploymentLite> = names.iter().map(|n| named(n, 1)).collect();
    let workers = Arc::new(Workers::new(1, store_of(&objects)));
    let busy = workers.start(&named("a", 1)).await.expect("a is cached");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Requested in a known order: each waits before the next is requested.
    for name in ["e", "c", "d", "b"] {
        let (workers, tx) = (workers.clone(), tx.clone());
        tokio::spawn(async move {
            let (_permit, current) = workers.start(&named(name, 1)).await.expect("cached");
            tx.send(current.name_any()).unwrap();
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(busy);
    let mut order = Vec::new();
    for _ in 0..4 {
        order.push(rx.recv().await.unwrap());
    }
    assert_eq!(order, ["e", "c", "d", "b"]);
}

#[tokio::test]
async fn a_sync_that_waited_syncs_the_object_as_it_is_now() {
    let workers = Workers::new(1, store_of(&[named("web", 3)]));
    // Requested when the object was at generation 1: synced at 3.
    let (permit, current) = workers.start(&named("web", 1)).await.expect("cached");
    assert_eq!(current.metadata.generation, Some(3));
    drop(permit);
    // Deleted while it waited: nothing to sync.
    assert!(workers.start(&named("gone", 1)).await.is_none());
}
