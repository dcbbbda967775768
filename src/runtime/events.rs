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
