//! The `DeploymentLite` resource (`apps.dlite.dev/v1`).
//!
//! `spec` and `status` mirror apps/v1 `DeploymentSpec` / `DeploymentStatus`
//! field for field, so manifests move between the two by changing
//! `apiVersion` and `kind`. What the schema can reject, it rejects: the
//! OpenAPI bounds and the CEL rules below carry the messages users see from
//! `kubectl apply`.

use k8s_openapi::api::apps::v1::DeploymentCondition;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub mod admission;
pub mod schema;

/// Prefix of the annotations DeploymentLite writes on its ReplicaSets (and
/// `revision` on itself). Deliberately not `deployment.kubernetes.io/`, so
/// the built-in Deployment controller and kubectl never mistake them.
pub const ANNOTATION_PREFIX: &str = "dlite.dev/";
pub const REVISION_ANNOTATION: &str = "dlite.dev/revision";
pub const REVISION_HISTORY_ANNOTATION: &str = "dlite.dev/revision-history";
pub const DESIRED_REPLICAS_ANNOTATION: &str = "dlite.dev/desired-replicas";
pub const MAX_REPLICAS_ANNOTATION: &str = "dlite.dev/max-replicas";
/// kubectl's own annotation; copied from the DeploymentLite to its
/// ReplicaSets so `rollout history` can show it.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
/// The label that ties a ReplicaSet and its pods to one pod template.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Desired state of a DeploymentLite; the same fields as apps/v1 DeploymentSpec.
// Repeated `shortname` / `printcolumn` keys are how kube-derive takes lists.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "apps.dlite.dev",
    version = "v1",
    kind = "DeploymentLite",
    plural = "deploymentlites",
    shortname = "dl",
    shortname = "dlite",
    category = "all",
    namespaced,
    status = "DeploymentLiteStatus",
    derive = "PartialEq",
    doc = "DeploymentLite gives a custom resource the rollout behaviour of apps/v1 Deployment: ReplicaSets per pod template, RollingUpdate and Recreate, revision history, rollback, pause and proportional scaling.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.ready",
        description = "Ready replicas out of desired"
    ),
    printcolumn(
        name = "Up-to-date",
        type_ = "integer",
        json_path = ".status.updatedReplicas",
        description = "Replicas of the current pod template"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas",
        description = "Replicas available for at least minReadySeconds"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Containers",
        type_ = "string",
        json_path = ".spec.template.spec.containers[*].name",
        priority = 1
    ),
    printcolumn(
        name = "Images",
        type_ = "string",
        json_path = ".spec.template.spec.containers[*].image",
        priority = 1
    ),
    printcolumn(
        name = "Selector",
        type_ = "string",
        json_path = ".status.selector",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.progressDeadlineSeconds) || self.progressDeadlineSeconds > self.minReadySeconds")
        .message("must be greater than minReadySeconds")
        .field_path(".progressDeadlineSeconds"),
    validation = Rule::new(schema::SELECTOR_MATCHES_TEMPLATE)
        .message("`selector` does not match template `labels`")
        .field_path(".template.metadata.labels"),
    // As apps/v1 validation: a pod needs a container. Reported as a
    // missing value, the way a Deployment is refused.
    validation = Rule::new("has(self.template.spec) && size(self.template.spec.containers) > 0")
        .message("a pod template needs at least one container")
        .field_path(".template.spec.containers")
        .reason(kube::core::Reason::FieldValueRequired)
)]
pub struct DeploymentLiteSpec {
    /// Number of desired pods. Defaults to 1.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,

    /// Label query over pods that should match the replica count. Must match
    /// the template's labels; immutable after creation.
    #[x_kube(
        validation = Rule::new("self == oldSelf").message("field is immutable"),
        validation = Rule::new("(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)")
            .message("empty selector is invalid for deployment")
    )]
    pub selector: LabelSelector,

    /// Template describes the pods that will be created.
    pub template: PodTemplateSpec,

    /// The deployment strategy used to replace existing pods with new ones.
    #[serde(default)]
    pub strategy: DeploymentLiteStrategy,

    /// Minimum number of seconds a newly created pod must be ready, without
    /// any of its containers crashing, to count as available. Defaults to 0.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub min_ready_seconds: i32,

    /// The number of old ReplicaSets to retain to allow rollback. Defaults to 10.
    #[serde(
        default = "default_revision_history_limit",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0))]
    pub revision_history_limit: Option<i32>,

    /// Indicates that the deployment is paused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,

    /// The maximum time in seconds for a rollout to make progress before it is
    /// considered failed (condition Progressing=False ProgressDeadlineExceeded).
    /// Defaults to 600; must be greater than minReadySeconds.
    #[serde(
        default = "default_progress_deadline_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: Option<i32>,

    /// A one-shot rollback request: the controller rolls back to this
    /// revision (0 = the previous one) and clears the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<RollbackConfig>,

    /// Beyond apps/v1: when a rollout exceeds its progress deadline, roll back
    /// to the newest revision that completed while this was on. Off by
    /// default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_rollback: bool,
}

fn default_replicas() -> i32 {
    1
}
fn default_revision_history_limit() -> Option<i32> {
    Some(10)
}
fn default_progress_deadline_seconds() -> Option<i32> {
    Some(600)
}

/// How to replace old pods by new ones.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.rollingUpdate) || self.type == 'RollingUpdate'")
    .message("may not be specified when strategy `type` is 'Recreate'")
    .field_path(".rollingUpdate"))]
pub struct DeploymentLiteStrategy {
    /// "Recreate" or "RollingUpdate". Defaults to RollingUpdate.
    #[serde(rename = "type", default)]
    pub type_: StrategyType,

    /// Rolling update parameters; only with type RollingUpdate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdateDeploymentLite>,
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum StrategyType {
    /// Kill all existing pods before creating new ones.
    Recreate,
    /// Replace the old ReplicaSet by the new one using rolling update.
    #[default]
    RollingUpdate,
}

/// Bounds of a rolling update, as in apps/v1 RollingUpdateDeployment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(schema::NOT_BOTH_ZERO)
    .message("may not be 0 when `maxSurge` is 0")
    .field_path(".maxUnavailable"))]
pub struct RollingUpdateDeploymentLite {
    /// The maximum number of pods that can be unavailable during the update:
    /// an absolute number or a percentage of desired pods (rounded down).
    /// Defaults to 25%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new(schema::INT_OR_PERCENT).message(schema::INT_OR_PERCENT_MESSAGE),
        validation = Rule::new("type(self) == int || int(self.substring(0, self.size() - 1)) <= 100 || !self.matches('^[0-9]+%$')")
            .message("must not be greater than 100%")
    )]
    #[schemars(schema_with = "schema::int_or_string")]
    pub max_unavailable: Option<IntOrString>,

    /// The maximum number of pods that can be scheduled above the desired
    /// number: an absolute number or a percentage (rounded up). Defaults to 25%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(schema::INT_OR_PERCENT).message(schema::INT_OR_PERCENT_MESSAGE))]
    #[schemars(schema_with = "schema::int_or_string")]
    pub max_surge: Option<IntOrString>,
}

/// A rollback request.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RollbackConfig {
    /// The revision to roll back to; 0 means the previous revision.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub revision: i64,
}

/// Observed state; the same fields as apps/v1 DeploymentStatus plus what the
/// scale subresource and the READY column need.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentLiteStatus {
    /// The generation observed by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Total number of pods targeted by this DeploymentLite.
    #[serde(default)]
    pub replicas: i32,
    /// Pods that have the desired template.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Pods with a Ready condition.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods ready for at least minReadySeconds.
    #[serde(default)]
    pub available_replicas: i32,
    /// Pods still needed for 100% availability.
    #[serde(default)]
    pub unavailable_replicas: i32,
    /// Pods of this object's ReplicaSets that are terminating (being
    /// deleted, not yet gone), as the ReplicaSets report it. Unset while a
    /// ReplicaSet that has been synced does not report the count, as in
    /// apps/v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminating_replicas: Option<i32>,
    /// Counts hash collisions; folded into the pod-template hash so a new
    /// ReplicaSet name is found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
    /// Available, Progressing, ReplicaFailure: same types, reasons and
    /// timestamp rules as apps/v1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<DeploymentCondition>,
    /// The label selector in string form, for the scale subresource (and so
    /// HorizontalPodAutoscalers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// "ready/desired", the READY column of `kubectl get dl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
}

impl DeploymentLiteSpec {
    /// The rolling-update bounds with apps/v1's defaulting applied: a
    /// RollingUpdate strategy without parameters, or with one of them unset,
    /// gets 25%. Recreate has none.
    pub fn rolling_update_bounds(&self) -> Option<(IntOrString, IntOrString)> {
        if self.strategy.type_ != StrategyType::RollingUpdate {
            return None;
        }
        let default = || IntOrString::String("25%".into());
        let ru = self.strategy.rolling_update.clone().unwrap_or_default();
        Some((
            ru.max_surge.unwrap_or_else(default),
            ru.max_unavailable.unwrap_or_else(default),
        ))
    }
}

/// The CRD, with the embedded pod template's field descriptions dropped:
/// they are apps/v1's own (`kubectl explain pod.spec` has them) and would
/// make the CRD too large for a client-side `kubectl apply`, whose
/// last-applied annotation is limited to 256 KiB.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut v = serde_json::to_value(DeploymentLite::crd()).expect("the CRD serializes");
    for version in v["spec"]["versions"].as_array_mut().into_iter().flatten() {
        let spec = &mut version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        if let Some(props) = spec["template"].get_mut("properties") {
            strip_descriptions(props);
        }
        schema::bound_for_cel(spec);
        schema::require_images(spec);
    }
    serde_json::from_value(v).expect("the CRD deserializes")
}

fn strip_descriptions(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            // A property may itself be called "description"; only drop the
            // schema keyword (a string), never a property schema (an object).
            if map.get("description").is_some_and(|d| d.is_string()) {
                map.remove("description");
            }
            map.values_mut().for_each(strip_descriptions);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}

/// The CRD as YAML, exactly as committed under `crd/`.
pub fn crd_yaml() -> String {
    let mut out = String::from(
        "# Generated from src/api by `make crd` (cargo run --bin crdgen). Do not edit.\n",
    );
    // Multi-line descriptions as literal `|-` blocks, long lines left whole
    // rather than folded, so the file reads (and diffs) like the source.
    let mut options = serde_saphyr::SerializerOptions::default();
    options.folded_wrap_chars = usize::MAX;
    out.push_str(
        &serde_saphyr::to_string_with_options(&crd(), options).expect("the CRD serializes"),
    );
    out
}

#[cfg(test)]
mod tests {
    /// The committed CRD is what the types generate; `make crd` fixes a
    /// mismatch.
    #[test]
    fn committed_crd_matches_the_types() {
        let committed = include_str!("../../crd/deploymentlite.yaml");
        assert!(
            committed == super::crd_yaml(),
            "crd/deploymentlite.yaml is stale: run `make crd` and commit the result"
        );
    }

    #[test]
    fn crd_fits_a_client_side_apply() {
        assert!(
            super::crd_yaml().len() < 200 * 1024,
            "CRD is {} bytes",
            super::crd_yaml().len()
        );
    }
}
