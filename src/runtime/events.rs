//! Kubernetes Events (events.k8s.io/v1) for the controllers.
//!
//! kube-runtime's `Recorder` keys its de-duplication cache on the reason and
//! the object but not the message, so a second "Scaled up replica set X
//! from 1 to 2" is folded into the first event's "from 0 to 1" and the
//! rollout history users read with `kubectl get events` is lost. This
//! recorder keys on the message too: identical events become a series
//! (count + lastObservedTime), different ones stay separate, as with the
//! upstream controllers.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::Mutex;

/// How long an identical event is folded into a series rather than created
/// anew (the API server's event TTL is one hour; upstream uses minutes).
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    type_: EventType,
    reason: String,
    note: String,
    regarding_uid: String,
}

struct Seen {
    name: String,
    count: i32,
    last: Timestamp,
}

/// Publishes events as one reporting controller; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    seen: Arc<Mutex<HashMap<Key, Seen>>>,
}

impl Recorder {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Recorder {
            client,
            controller: controller.into(),
            instance: instance.unwrap_or_else(|| controller.into()),
            seen: Default::default(),
        }
    }

    /// Records `note` about `regarding`. `action` is the machine-readable
    /// verb (e.g. "Scale"); `reason` the CamelCase reason users filter on.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = Timestamp::now();
        let key = Key {
            type_,
            reason: reason.into(),
            note: note.into(),
            regarding_uid: regarding.uid.clone().unwrap_or_default(),
        };
        let mut seen = self.seen.lock().await;
        seen.retain(|_, s| s.last + SERIES_WINDOW > now);
        if let Some(s) = seen.get_mut(&key) {
            s.count += 1;
            s.last = now;
            let series = EventSeries {
                count: s.count,
                last_observed_time: MicroTime(now),
            };
            let patch = serde_json::json!({"series": series});
            match api
                .patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // Expired or deleted meanwhile: fall through and create anew.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(action.into()),
            reason: Some(reason.into()),
            note: Some(note.chars().take(1024).collect()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(type_.as_str().into()),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        seen.insert(
            key,
            Seen {
                name,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fake_api::{FakeApi, echo, status};

    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";

    fn regarding(uid: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("DeploymentLite".into()),
            namespace: Some("ns".into()),
            name: Some("web".into()),
            uid: Some(uid.into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn an_identical_event_becomes_a_series_and_a_new_message_a_new_event() {
        let api = FakeApi::start(|r| echo(r, "1"));
        let recorder = Recorder::new(api.client.clone(), "dlite-controller", None);
        let web = regarding("u1");
        let scale = |note: &'static str| {
            let recorder = recorder.clone();
            let web = web.clone();
            async move {
                recorder
                    .publish(&web, EventType::Normal, "ScalingReplicaSet", "Scale", note)
                    .await
                    .unwrap()
            }
        };
        scale("Scaled up replica set web-1 from 0 to 1").await;
        scale("Scaled up replica set web-1 from 1 to 2").await;
        scale("Scaled up replica set web-1 from 1 to 2").await;
        scale("Scaled up replica set web-1 from 1 to 2").await;

        let r = api.requests();
        let lines: Vec<String> = r.iter().map(|r| r.line()).collect();
        let second = r[1].body["metadata"]["name"].as_str().unwrap().to_string();
        assert_eq!(
            lines,
            [
                format!("POST {EVENTS}"),
                format!("POST {EVENTS}"),
                format!("PATCH {EVENTS}/{second}"),
                format!("PATCH {EVENTS}/{second}"),
            ],
            "a different message is a new event (the rollout history), the same one a series"
        );
        assert_eq!(r[0].body["note"], "Scaled up replica set web-1 from 0 to 1");
        assert_eq!(r[0].body["type"], "Normal");
        assert_eq!(r[0].body["reportingController"], "dlite-controller");
        assert_eq!(r[0].body["regarding"]["uid"], "u1");
        assert_eq!(r[2].body["series"]["count"], 2);
        assert_eq!(r[3].body["series"]["count"], 3);
    }

    #[tokio::test]
    async fn the_same_message_about_another_object_is_its_own_event() {
        let api = FakeApi::start(|r| echo(r, "1"));
        let recorder = Recorder::new(api.client.clone(), "dlite-controller", None);
        for uid in ["u1", "u2"] {
            recorder
                .publish(
                    &regarding(uid),
                    EventType::Warning,
                    "R",
                    "Reconcile",
                    "same",
                )
                .await
                .unwrap();
        }
        let r = api.requests();
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|r| r.method == "POST"));
        assert_eq!(r[1].body["type"], "Warning");
    }

    #[tokio::test]
    async fn a_series_whose_event_expired_starts_a_new_event() {
        let api = FakeApi::start(|r| {
            if r.method == "PATCH" {
                return status(404, "NotFound", "events.events.k8s.io not found");
            }
            echo(r, "1")
        });
        let recorder = Recorder::new(api.client.clone(), "dlite-controller", None);
        for _ in 0..2 {
            recorder
                .publish(
                    &regarding("u1"),
                    EventType::Normal,
                    "R",
                    "Reconcile",
                    "note",
                )
                .await
                .unwrap();
        }
        let methods: Vec<String> = api.requests().iter().map(|r| r.method.clone()).collect();
        assert_eq!(methods, ["POST", "PATCH", "POST"]);
        assert!(json!(api.requests()[2].body["series"]).is_null());
    }

    #[tokio::test]
    async fn a_failure_other_than_404_is_returned_to_the_caller() {
        let api = FakeApi::start(|_| status(403, "Forbidden", "events is forbidden"));
        let recorder = Recorder::new(api.client.clone(), "dlite-controller", None);
        let err = recorder
            .publish(
                &regarding("u1"),
                EventType::Normal,
                "R",
                "Reconcile",
                "note",
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 403),
            "{err:?}"
        );
    }
}
