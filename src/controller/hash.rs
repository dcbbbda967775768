//! Identity of a revision: the pod-template hash (docs/controller.md §1).
//!
//! Upstream hashes a Go-specific dump of the template, which no other
//! language can reproduce. DeploymentLite hashes a canonical JSON form
//! instead: keys sorted, and nulls, empty lists and empty maps dropped, so a
//! template hashes the same whether or not optional empty fields were written.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use crate::api::{DeploymentLite, POD_TEMPLATE_HASH_LABEL};

/// The alphabet upstream uses so that hashes never spell words and never
/// look like numbers.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Removes nulls, empty lists and empty maps, recursively. Returns `None`
/// when the value itself is empty after normalisation.
pub fn normalize(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Array(items) => {
            let items: Vec<Value> = items
                .iter()
                .map(|i| normalize(i).unwrap_or(Value::Null))
                .collect();
            if items.is_empty() {
                None
            } else {
                Some(Value::Array(items))
            }
        }
        Value::Object(map) => {
            let map: serde_json::Map<String, Value> = map
                .iter()
                .filter_map(|(k, v)| normalize(v).map(|v| (k.clone(), v)))
                .collect();
            if map.is_empty() {
                None
            } else {
                Some(Value::Object(map))
            }
        }
        other => Some(other.clone()),
    }
}

/// The template as canonical JSON, without the pod-template-hash label.
pub fn canonical_template(template: &PodTemplateSpec) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    let v = serde_json::to_value(&t).expect("a PodTemplateSpec serializes");
    normalize(&v).unwrap_or(Value::Object(Default::default()))
}

fn fnv1a_32(bytes: impl IntoIterator<Item = u8>) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Maps each character through [`SAFE_ALPHABET`] by its code, as upstream's
/// safe encoding does.
fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// The pod-template hash of a template, folded with the collision count.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // serde_json's Map is a BTreeMap here, so to_string prints sorted keys.
    let json = canonical_template(template).to_string();
    let mut bytes: Vec<u8> = json.into_bytes();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&(c as u32).to_le_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0]);
    }
    safe_encode(&fnv1a_32(bytes).to_string())
}

/// The template without the pod-template-hash label (and without a label
/// map that the removal left empty, which the API server would not store).
/// The object's template and selector as a ReplicaSet of hash `hash`
/// carries them: both with the `pod-template-hash` label, so the
/// ReplicaSet selects only its own pods.
pub fn with_hash_label(dl: &DeploymentLite, hash: &str) -> (PodTemplateSpec, LabelSelector) {
    let mut template = dl.spec.template.clone();
    template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.to_string());
    let mut selector = dl.spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.to_string());
    (template, selector)
}

pub fn without_hash_label(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(meta) = t.metadata.as_mut()
        && let Some(labels) = meta.labels.as_mut()
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
        if labels.is_empty() {
            meta.labels = None;
        }
    }
    if t.metadata
        .as_ref()
        .is_some_and(|m| *m == Default::default())
    {
        t.metadata = None;
    }
    t
}

/// Upstream's EqualIgnoreHash: two templates are the same revision when they
/// are equal except for the pod-template-hash label. Both sides must come
/// from the same API server's defaulting (a stored ReplicaSet's template,
/// and the object's template as a server-side dry run defaults it): then
/// plain equality is right by construction, with no list of defaulted
/// fields to keep up to date.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash_label(a) == without_hash_label(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(v: Value) -> PodTemplateSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn hash_uses_only_the_safe_digits_alphabet() {
        let t = template(
            json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        );
        let h = pod_template_hash(&t, None);
        assert!(!h.is_empty() && h.len() <= 10, "{h}");
        assert!(h.chars().all(|c| "456789bcdf".contains(c)), "{h}");
    }

    #[test]
    fn digits_map_through_the_alphabet_by_ascii_code() {
        // '0' is 48, 48 % 27 = 21 -> '4'; '9' is 57, 57 % 27 = 3 -> 'f'.
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a_32(*b""), 0x811c9dc5);
        assert_eq!(fnv1a_32(*b"a"), 0xe40c292c);
        assert_eq!(fnv1a_32(*b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn empty_fields_and_the_hash_label_do_not_change_the_hash() {
        let a = template(
            json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        );
        let b = template(
            json!({"metadata": {"labels": {"app": "x", "pod-template-hash": "abc"}, "annotations": {}},
            "spec": {"containers": [{"name": "c", "image": "i", "env": [], "ports": null}], "volumes": []}}),
        );
        assert_eq!(pod_template_hash(&a, None), pod_template_hash(&b, None));
    }

    #[test]
    fn a_different_image_or_collision_count_changes_the_hash() {
        let a = template(json!({"spec": {"containers": [{"name": "c", "image": "i:1"}]}}));
        let b = template(json!({"spec": {"containers": [{"name": "c", "image": "i:2"}]}}));
        assert_ne!(pod_template_hash(&a, None), pod_template_hash(&b, None));
        assert_ne!(pod_template_hash(&a, None), pod_template_hash(&a, Some(1)));
        assert_ne!(
            pod_template_hash(&a, Some(1)),
            pod_template_hash(&a, Some(2))
        );
    }

    #[test]
    fn equality_ignores_only_the_hash_label() {
        let stored = template(
            json!({"metadata": {"labels": {"app": "x", "pod-template-hash": "h"}},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicy": "Always"}]}}),
        );
        let defaulted = template(json!({"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicy": "Always"}]}}));
        assert!(equal_ignore_hash(&defaulted, &stored));
        assert!(equal_ignore_hash(&stored, &defaulted));
        // A field present on one side only is a different template, in
        // either direction: no field is assumed to be a server default.
        let user = template(json!({"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}));
        assert!(!equal_ignore_hash(&user, &stored));
        assert!(!equal_ignore_hash(&stored, &user));
    }

    #[test]
    fn a_label_map_holding_only_the_hash_equals_no_labels() {
        let a = template(json!({"metadata": {"labels": {"pod-template-hash": "h"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}));
        let b = template(json!({"spec": {"containers": [{"name": "c", "image": "i"}]}}));
        assert!(equal_ignore_hash(&a, &b));
    }
    /// Pinned values: a change of the canonical form, the hash function,
    /// the collision-count folding or the alphabet renames every
    /// ReplicaSet a controller upgrade would then create, so it must show
    /// up here, on purpose.
    #[test]
    fn golden_hashes_are_pinned() {
        let t1 = template(json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}));
        let t2 = template(json!({
            "metadata": {"labels": {"app": "api", "tier": "backend"}, "annotations": {"team": "payments"}},
            "spec": {"containers": [{"name": "api", "image": "registry.example/api:2.1",
                                     "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                     "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
                                     "env": [{"name": "MODE", "value": "prod"}]}],
                     "terminationGracePeriodSeconds": 30}}));
        assert_eq!(
            canonical_template(&t1).to_string(),
            r#"{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"image":"nginx:1.27","name":"app"}]}}"#
        );
        let want = [
            (&t1, None, "66764b56c4"),
            (&t1, Some(0), "7bfcb597d6"),
            (&t1, Some(1), "fbf75495f"),
            (&t1, Some(7), "59f6c4957"),
            (&t1, Some(i32::MAX), "7b6b9bffc4"),
            (&t2, None, "6f84d78cbd"),
            (&t2, Some(0), "6459cc6556"),
            (&t2, Some(1), "79d6878989"),
            (&t2, Some(7), "fc94c699"),
            (&t2, Some(i32::MAX), "bc9c85dd"),
        ];
        for (t, collisions, hash) in want {
            assert_eq!(
                pod_template_hash(t, collisions),
                hash,
                "collisionCount {collisions:?}"
            );
        }
        // The hash label never takes part.
        let mut labelled = t1.clone();
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH_LABEL.into(), "x".into());
        assert_eq!(pod_template_hash(&labelled, None), "66764b56c4");
    }
}
