//! The scheduler's writes: bindings, the failure record (PodScheduled
//! condition, diagnosis annotation) and events. The only code here that
//! talks to the API server on behalf of the scheduling loop; everything it
//! decides comes from the pure core.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::runtime::events::{EventType, Recorder};

use super::diagnosis::ANNOTATION;
use super::framework::types::{pod_name, pod_namespace};

pub const REASON_SCHEDULED: &str = "Scheduled";
pub const REASON_FAILED_SCHEDULING: &str = "FailedScheduling";
pub const CONDITION_POD_SCHEDULED: &str = "PodScheduled";
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";

/// The object reference events are about.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: Some(pod_namespace(pod).to_string()),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// How a binding attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindOutcome {
    Bound,
    /// The pod is gone or was recreated (404, or the uid precondition
    /// failed): nothing to retry, the watch will say what happened.
    PodGone(String),
    /// The pod already has a node (409): someone bound it; never retried.
    AlreadyBound(String),
    /// Anything else (throttling, timeouts, a node that vanished): retry
    /// with backoff.
    Failed(String),
}

/// POSTs a Binding to `pods/<name>/binding`. The pod's uid rides along as
/// a precondition, so a pod deleted and recreated under the same name is
/// never bound by a decision made for its predecessor.
pub async fn bind(client: &Client, pod: &Pod, node: &str) -> BindOutcome {
    let (namespace, name) = (pod_namespace(pod), pod_name(pod));
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => BindOutcome::Bound,
        Err(kube::Error::Api(e)) if e.code == 404 => BindOutcome::PodGone(e.message),
        Err(kube::Error::Api(e)) if e.code == 409 && e.message.contains("UID") => {
            BindOutcome::PodGone(e.message)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => BindOutcome::AlreadyBound(e.message),
        Err(e) => BindOutcome::Failed(e.to_string()),
    }
}

/// What to record about a pod that fit nowhere.
#[derive(Clone, Debug)]
pub struct FailureRecord {
    pub message: String,
    /// The annotation's value, or None when the pod already carries it.
    pub annotation: Option<String>,
    /// Write the condition (it is not already False/Unschedulable with
    /// this message).
    pub condition: bool,
    /// Set lastTransitionTime: PodScheduled was not False before.
    pub transition: bool,
    /// `status.nominatedNodeName` to write: `Some(Some(node))` after a
    /// preemption, `Some(None)` to clear a nomination that no longer holds,
    /// `None` to leave it as it is.
    pub nominated_node: Option<Option<String>>,
}

impl FailureRecord {
    /// Decides which writes a failure needs, from the pod as last seen:
    /// unchanged facts are not written again (an unschedulable pod is
    /// retried after every relevant cluster event).
    pub fn for_pod(
        pod: &Pod,
        message: &str,
        annotation: String,
        nominate: Option<&str>,
    ) -> FailureRecord {
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == CONDITION_POD_SCHEDULED));
        let same_condition = current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some(REASON_UNSCHEDULABLE)
                && c.message.as_deref() == Some(message)
        });
        let was_false = current.is_some_and(|c| c.status == "False");
        let same_annotation = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION))
            .is_some_and(|a| *a == annotation);
        let nominated = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty());
        FailureRecord {
            message: message.to_string(),
            annotation: (!same_annotation).then_some(annotation),
            condition: !same_condition,
            transition: !was_false,
            nominated_node: (nominated != nominate).then(|| nominate.map(String::from)),
        }
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        !self.condition && self.annotation.is_none() && self.nominated_node.is_none()
    }
}

/// Writes the PodScheduled=False condition (status subresource) and the
/// diagnosis annotation. Both carry the pod's uid so a recreated pod of
/// the same name is left alone.
pub async fn record_failure(
    client: &Client,
    pod: &Pod,
    record: &FailureRecord,
) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), pod_namespace(pod));
    let name = pod_name(pod);
    if record.condition || record.nominated_node.is_some() {
        let mut status = json!({});
        if let Some(nominated) = &record.nominated_node {
            status["nominatedNodeName"] = json!(nominated);
        }
        if record.condition {
            let mut condition = json!({
                "type": CONDITION_POD_SCHEDULED,
                "status": "False",
                "reason": REASON_UNSCHEDULABLE,
                "message": record.message,
                "lastProbeTime": null,
            });
            if record.transition {
                condition["lastTransitionTime"] = json!(
                    k8s_openapi::jiff::Timestamp::now()
                        .strftime("%Y-%m-%dT%H:%M:%SZ")
                        .to_string()
                );
            }
            status["conditions"] = json!([condition]);
        }
        let patch = json!({
            "metadata": {"uid": pod.metadata.uid},
            "status": status,
        });
        api.patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await?;
    }
    if let Some(annotation) = &record.annotation {
        let patch =
            json!({"metadata": {"uid": pod.metadata.uid, "annotations": {ANNOTATION: annotation}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
    }
    Ok(())
}

pub const REASON_PREEMPTED: &str = "Preempted";
pub const CONDITION_DISRUPTION_TARGET: &str = "DisruptionTarget";
pub const REASON_PREEMPTION_BY_SCHEDULER: &str = "PreemptionByScheduler";

/// Evicts one preemption victim as upstream does: the `DisruptionTarget`
/// condition first (so its owner and the PodDisruptionBudget controller
/// know why it goes), then a graceful delete, both for this very pod (uid).
/// A victim already gone is no error.
pub async fn preempt_victim(
    client: &Client,
    victim: &Pod,
    scheduler_name: &str,
) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), pod_namespace(victim));
    let name = pod_name(victim);
    let patch = json!({
        "metadata": {"uid": victim.metadata.uid},
        "status": {"conditions": [{
            "type": CONDITION_DISRUPTION_TARGET,
            "status": "True",
            "reason": REASON_PREEMPTION_BY_SCHEDULER,
            "message": format!("{scheduler_name}: preempting to accommodate a higher priority pod"),
            "lastTransitionTime": k8s_openapi::jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        }]},
    });
    let gone = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409);
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Err(e) if gone(&e) => return Ok(()),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let params = kube::api::DeleteParams {
        preconditions: victim
            .metadata
            .uid
            .clone()
            .map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}

/// One event to publish.
#[derive(Clone, Debug)]
pub struct EventRecord {
    pub regarding: ObjectReference,
    pub type_: EventType,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

/// Publishes events off the scheduling path through the project's
/// [`Recorder`].
///
/// A Recorder publishes one event at a time (its series cache is locked
/// across the request), which at hundreds of bindings per second would
/// make events lag ever further behind. So events are spread over several
/// recorders by the uid of the object they are about: each object's
/// events still go through one recorder, in order, and repeats still fold
/// into a series. Queues are bounded; when full, events are dropped with a
/// warning rather than holding up scheduling (as client-go's broadcaster
/// does).
#[derive(Clone)]
pub struct EventSink {
    shards: Arc<Vec<mpsc::Sender<EventRecord>>>,
}

pub struct EventWorkers(Vec<JoinHandle<()>>);

impl EventSink {
    pub fn new(
        client: Client,
        controller: &str,
        instance: &str,
        shards: usize,
        capacity: usize,
    ) -> (EventSink, EventWorkers) {
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        for _ in 0..shards.max(1) {
            let (tx, mut rx) = mpsc::channel::<EventRecord>(capacity.max(1));
            let recorder = Recorder::new(client.clone(), controller, Some(instance.to_string()));
            workers.push(tokio::spawn(async move {
                while let Some(e) = rx.recv().await {
                    if let Err(err) = recorder
                        .publish(&e.regarding, e.type_, e.reason, e.action, &e.note)
                        .await
                    {
                        tracing::warn!(reason = e.reason, object = ?e.regarding.name, error = %err, "publishing an event failed");
                    }
                }
            }));
            senders.push(tx);
        }
        (
            EventSink {
                shards: Arc::new(senders),
            },
            EventWorkers(workers),
        )
    }

    pub fn publish(&self, event: EventRecord) {
        let mut h = DefaultHasher::new();
        event.regarding.uid.hash(&mut h);
        let shard = (h.finish() % self.shards.len() as u64) as usize;
        if let Err(e) = self.shards[shard].try_send(event) {
            tracing::warn!(error = %e, "event queue full; dropping an event");
        }
    }
}

impl EventWorkers {
    /// Waits (bounded) for queued events to go out once every
    /// [`EventSink`] clone is dropped.
    pub async fn drain(self, timeout: std::time::Duration) {
        let all = futures::future::join_all(self.0);
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!("events still queued at shutdown were dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::pod;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    fn with_condition(status: &str, reason: &str, message: &str) -> Pod {
        let mut p = pod("p").build();
        p.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: CONDITION_POD_SCHEDULED.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        p
    }

    #[test]
    fn unchanged_facts_are_not_written_again() {
        let fresh = FailureRecord::for_pod(&pod("p").build(), "m", "{}".into(), None);
        assert!(fresh.condition && fresh.transition);
        assert_eq!(fresh.annotation.as_deref(), Some("{}"));

        let mut same = with_condition("False", REASON_UNSCHEDULABLE, "m");
        same.metadata.annotations = Some([(ANNOTATION.to_string(), "{}".to_string())].into());
        let r = FailureRecord::for_pod(&same, "m", "{}".into(), None);
        assert!(!r.condition);
        assert!(r.annotation.is_none());

        let r = FailureRecord::for_pod(&same, "other message", "{\"x\":1}".into(), None);
        assert!(r.condition, "a new message is written");
        assert!(!r.transition, "still False: the transition time stays");
        assert!(r.annotation.is_some());
    }

    #[test]
    fn pod_reference_names_the_pod() {
        let mut p = pod("web-1").ns("team").build();
        p.metadata.uid = Some("u-1".into());
        let r = pod_reference(&p);
        assert_eq!(
            (
                r.kind.as_deref(),
                r.name.as_deref(),
                r.namespace.as_deref(),
                r.uid.as_deref()
            ),
            (Some("Pod"), Some("web-1"), Some("team"), Some("u-1"))
        );
    }
}
