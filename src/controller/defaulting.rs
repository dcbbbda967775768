//! The object's pod template as the API server defaults it.
//!
//! A Deployment's template is defaulted and canonicalised by the API server
//! when it is stored (quantities such as `0.5` become `500m`, explicit zero
//! values vanish, probes, volumes and containers gain their defaults), so
//! upstream compares it with its ReplicaSets' templates by plain equality.
//! A DeploymentLite is a custom resource: its template is stored as
//! written. Rather than guess what the server would change, the controller
//! asks it: a server-side dry-run create of the ReplicaSet it would create
//! returns the template exactly as a real create would store it. The answer
//! depends only on the template and the namespace (admission may differ per
//! namespace), so it is cached by both: one request per template change,
//! not one per sync, and one for many objects that share a template.
//!
//! A ReplicaSet the controller creates from a template answers the same
//! question for free: the server stored that template with the same
//! defaulting a dry run applies (the two differ only in the hash label's
//! value, which no defaulting reads). [`ServerDefaults::learn`] caches it,
//! so a new object, whose first sync needs no defaulted template (there is
//! no ReplicaSet to compare with), costs no dry run at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};

use crate::api::DeploymentLite;
use crate::controller::hash::{pod_template_hash, with_hash_label, without_hash_label};

/// Beyond this many cached templates the cache starts over. Far above one
/// template per object for the object counts a controller serves; it only
/// bounds memory when templates churn.
const MAX_ENTRIES: usize = 8192;

/// What the API server made of a template.
#[derive(Clone, Debug, PartialEq)]
pub enum Defaulted {
    /// The template as a created ReplicaSet would store it (without the
    /// hash label).
    Template(Arc<PodTemplateSpec>),
    /// The server refuses a ReplicaSet with this template (invalid,
    /// forbidden by admission): creating it would fail the same way. The
    /// message is the server's.
    Refused(String),
}

/// Cache of defaulted templates, keyed by namespace and the template's exact
/// serialisation.
#[derive(Default)]
pub struct ServerDefaults {
    cache: Mutex<HashMap<(String, String), Arc<PodTemplateSpec>>>,
}

impl ServerDefaults {
    /// The object's template as the API server defaults it, from the cache
    /// or from one dry-run create. A transient failure (timeouts, 5xx,
    /// throttling) is an error for the caller to retry; a refusal of the
    /// template itself is an answer.
    pub async fn template(
        &self,
        client: &Client,
        dl: &DeploymentLite,
    ) -> Result<Defaulted, kube::Error> {
        let ns = dl.namespace().unwrap_or_default();
        let key = cache_key(&ns, &dl.spec.template);
        if let Some(t) = self.cache.lock().expect("cache lock").get(&key) {
            return Ok(Defaulted::Template(t.clone()));
        }
        let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
        let pp = PostParams {
            dry_run: true,
            ..Default::default()
        };
        match api.create(&pp, &dry_run_replica_set(dl)).await {
            Ok(rs) => Ok(Defaulted::Template(self.insert(key, &rs, "dry run"))),
            Err(kube::Error::Api(s)) if is_refusal(s.code) => Ok(Defaulted::Refused(s.message)),
            Err(e) => Err(e),
        }
    }

    /// Remembers what the server stored for `rs`, a ReplicaSet just created
    /// from `written` (the object's template as written): the answer a dry
    /// run of `written` would give.
    pub fn learn(&self, ns: &str, written: &PodTemplateSpec, rs: &ReplicaSet) {
        let key = cache_key(ns, written);
        if !self.cache.lock().expect("cache lock").contains_key(&key) {
            self.insert(key, rs, "create");
        }
    }

    fn insert(&self, key: (String, String), rs: &ReplicaSet, from: &str) -> Arc<PodTemplateSpec> {
        let template = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .map(without_hash_label)
            .unwrap_or_default();
        let template = Arc::new(template);
        // Once per namespace and template: tests count these lines.
        tracing::debug!(namespace = %key.0, from, "pod template defaulted by the API server");
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        cache.insert(key, template.clone());
        template
    }

    /// Number of cached templates (for tests and metrics).
    pub fn len(&self) -> usize {
        self.cache.lock().expect("cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The cache key: the namespace and the template exactly as written.
fn cache_key(ns: &str, template: &PodTemplateSpec) -> (String, String) {
    (
        ns.to_string(),
        serde_json::to_string(template).expect("a PodTemplateSpec serializes"),
    )
}

/// A client error about the request itself, which a retry would not change.
/// 409 (a generated name taken) and 429 (throttled) are worth a retry.
fn is_refusal(code: u16) -> bool {
    (400..500).contains(&code) && code != 409 && code != 429
}

/// The ReplicaSet a create would send, reduced to what defaulting and
/// validation of the template need: the template with its hash label, a
/// selector that selects it, and a generated name so the dry run never
/// collides with a real ReplicaSet. No owner reference: the dry run must
/// not depend on the owner's state.
pub fn dry_run_replica_set(dl: &DeploymentLite) -> ReplicaSet {
    let (template, selector) = with_hash_label(dl, &pod_template_hash(&dl.spec.template, None));
    ReplicaSet {
        metadata: ObjectMeta {
            generate_name: Some("dlite-dry-run-".into()),
            namespace: dl.namespace(),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: None,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::POD_TEMPLATE_HASH_LABEL;

    #[test]
    fn only_request_errors_are_refusals() {
        assert!(is_refusal(422));
        assert!(is_refusal(403));
        assert!(is_refusal(400));
        assert!(!is_refusal(409));
        assert!(!is_refusal(429));
        assert!(!is_refusal(500));
        assert!(!is_refusal(503));
    }

    #[test]
    fn the_dry_run_replica_set_selects_its_template() {
        let dl: DeploymentLite = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps.dlite.dev/v1", "kind": "DeploymentLite",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}
        }))
        .unwrap();
        let rs = dry_run_replica_set(&dl);
        let spec = rs.spec.unwrap();
        let labels = spec.template.unwrap().metadata.unwrap().labels.unwrap();
        let selector = spec.selector.match_labels.unwrap();
        assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
        assert!(labels.contains_key(POD_TEMPLATE_HASH_LABEL));
        assert_eq!(rs.metadata.namespace.as_deref(), Some("ns"));
        assert!(rs.metadata.owner_references.is_none());
    }
}
