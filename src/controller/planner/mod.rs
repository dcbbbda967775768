//! One sync of a DeploymentLite, as a pure function.
//!
//! Split as upstream's deployment controller is: this file holds the entry
//! point [`plan`], the types it returns and the shared bookkeeping; the
//! steps live in `sync`, `rolling`, `recreate`, `rollback` and `progress`.
//!
//! [`plan`] takes the object, the ReplicaSets it controls, their pods and the
//! time, and returns the writes one upstream sync would make
//! (docs/controller.md §2) plus the status to record. The reconciler
//! executes the actions
//! in order; each ReplicaSet write carries the resourceVersion the decision
//! was taken on, so a decision made from stale state fails instead of
//! applying.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DeploymentCondition, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use crate::api::{
    DESIRED_REPLICAS_ANNOTATION, DeploymentLite, DeploymentLiteStatus, MAX_REPLICAS_ANNOTATION,
    REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION, StrategyType,
};
use crate::controller::hash::{equal_ignore_hash, pod_template_hash};
use crate::controller::rollout::bounds::{self, Bounds, BoundsError};
use crate::controller::rollout::progress::{from_time, get_condition, new_condition};
use crate::controller::rollout::{self, RsState, cleanup, scaling};

/// Condition types and reasons, in apps/v1's words.
pub mod reason {
    pub const AVAILABLE: &str = "Available";
    pub const PROGRESSING: &str = "Progressing";
    pub const REPLICA_FAILURE: &str = "ReplicaFailure";
    pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
    pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
    pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    pub const CREATE_ERROR: &str = "ReplicaSetCreateError";
    pub const PAUSED: &str = "DeploymentPaused";
    pub const RESUMED: &str = "DeploymentResumed";
    pub const SCALING_RS: &str = "ScalingReplicaSet";
    pub const SELECTING_ALL: &str = "SelectingAll";
    pub const ROLLBACK_DONE: &str = "DeploymentRollback";
    pub const ROLLBACK_NOT_FOUND: &str = "DeploymentRollbackRevisionNotFound";
    pub const ROLLBACK_UNCHANGED: &str = "DeploymentRollbackTemplateUnchanged";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const AUTO_ROLLBACK: &str = "DeploymentAutoRollback";
}

/// Set on a ReplicaSet when its rollout first completed (automatic
/// rollback goes back only to such revisions).
pub const COMPLETED_ANNOTATION: &str = "dlite.dev/completed-at";

fn to_rfc3339(t: Timestamp) -> String {
    // Whole seconds, as the API server writes its own timestamps.
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// kubectl's client-side apply record: never copied between the object and
/// its ReplicaSets.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Annotations that stay where they are: the controller's own bookkeeping
/// and kubectl's apply record (upstream's annotationsToSkip, with
/// DeploymentLite's prefix). Every other annotation of the object is
/// copied to its new ReplicaSet, and restored from a revision on rollback.
pub fn skip_copy_annotation(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED_ANNOTATION
            | REVISION_ANNOTATION
            | REVISION_HISTORY_ANNOTATION
            | DESIRED_REPLICAS_ANNOTATION
            | MAX_REPLICAS_ANNOTATION
            | COMPLETED_ANNOTATION
    )
}

/// Copies the object's annotations onto a ReplicaSet's (adding and
/// overwriting, never removing), as upstream's
/// copyDeploymentAnnotationsToReplicaSet.
fn copy_object_annotations(dl: &DeploymentLite, to: &mut BTreeMap<String, String>) {
    for (k, v) in dl.annotations() {
        if !skip_copy_annotation(k) {
            to.insert(k.clone(), v.clone());
        }
    }
}

/// Longest `revision-history` annotation kept; oldest entries go first.
const MAX_REVISION_HISTORY_LEN: usize = 2000;

pub use crate::runtime::events::EventType;

/// One write (or event) of a sync, in the order it must happen.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the new ReplicaSet, already at its computed size.
    CreateReplicaSet(Box<ReplicaSet>),
    /// Set a ReplicaSet's size, annotations and minReadySeconds, conditional
    /// on `resource_version`. A size change is reported as a
    /// `ScalingReplicaSet` event once the write succeeded.
    UpdateReplicaSet {
        name: String,
        resource_version: String,
        from: i32,
        replicas: i32,
        annotations: BTreeMap<String, String>,
        min_ready_seconds: i32,
    },
    /// Delete an old ReplicaSet (history cleanup), conditional on its
    /// resourceVersion.
    DeleteReplicaSet {
        name: String,
        uid: String,
        resource_version: String,
    },
    /// Mirror the current revision (and its change cause) on the object.
    AnnotateDeployment {
        annotations: BTreeMap<String, String>,
    },
    /// Finish a rollback request: clear `spec.rollbackTo`; with a template,
    /// also replace the template, and every annotation of the object that
    /// [`skip_copy_annotation`] does not keep by `annotations` (upstream's
    /// SetDeploymentAnnotationsTo).
    Rollback {
        template: Option<Box<PodTemplateSpec>>,
        annotations: BTreeMap<String, String>,
    },
    Event {
        type_: EventType,
        reason: &'static str,
        message: String,
    },
}

/// The outcome of one sync.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The status to record (the reconciler skips the write when unchanged).
    pub status: DeploymentLiteStatus,
    /// When to look again even if nothing changes: the progress deadline.
    pub requeue_after: Option<Duration>,
}

/// What a sync reads.
pub struct SyncInput<'a> {
    pub dl: &'a DeploymentLite,
    /// The ReplicaSets this object controls (after adoption and release).
    pub rses: &'a [ReplicaSet],
    /// Pods controlled by those ReplicaSets (Recreate waits on them).
    pub pods: &'a [Pod],
    /// The object's pod template as the API server defaults and
    /// canonicalises it (the reconciler asks with a server-side dry run of
    /// the ReplicaSet it would create). The object itself is a custom
    /// resource, so its stored template is not defaulted; this one compares
    /// with stored ReplicaSets' templates like with like, as a Deployment's
    /// template does upstream.
    pub template: &'a PodTemplateSpec,
    pub now: Timestamp,
}

/// A ReplicaSet as the sync sees it: the object as read, and the state the
/// plan has decided for it so far.
#[derive(Clone, Debug)]
struct Rs<'a> {
    obj: Option<&'a ReplicaSet>,
    state: RsState,
    uid: String,
    resource_version: String,
    annotations: BTreeMap<String, String>,
    min_ready_seconds: i32,
}

impl<'a> Rs<'a> {
    fn from_obj(rs: &'a ReplicaSet) -> Self {
        let annotations = rs.annotations().clone();
        let status = rs.status.clone().unwrap_or_default();
        let parse = |k: &str| annotations.get(k).and_then(|v| v.parse::<i32>().ok());
        let state = RsState {
            name: rs.name_any(),
            created: rs.metadata.creation_timestamp.as_ref().map(from_time),
            revision: annotations
                .get(REVISION_ANNOTATION)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            spec_replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            status_replicas: status.replicas,
            ready_replicas: status.ready_replicas.unwrap_or(0),
            available_replicas: status.available_replicas.unwrap_or(0),
            desired_replicas: parse(DESIRED_REPLICAS_ANNOTATION),
            max_replicas: parse(MAX_REPLICAS_ANNOTATION),
            generation: rs.metadata.generation.unwrap_or(0),
            observed_generation: status.observed_generation.unwrap_or(0),
            deleting: rs.metadata.deletion_timestamp.is_some(),
        };
        Rs {
            obj: Some(rs),
            state,
            uid: rs.uid().unwrap_or_default(),
            resource_version: rs.resource_version().unwrap_or_default(),
            annotations,
            min_ready_seconds: rs
                .spec
                .as_ref()
                .and_then(|s| s.min_ready_seconds)
                .unwrap_or(0),
        }
    }

    fn template(&self) -> Option<&'a PodTemplateSpec> {
        self.obj
            .and_then(|o| o.spec.as_ref())
            .and_then(|s| s.template.as_ref())
    }
}

/// The sync in progress: state as decided so far, and what it wrote.
struct Sync<'a> {
    dl: &'a DeploymentLite,
    /// See [`SyncInput::template`].
    template: &'a PodTemplateSpec,
    now: Timestamp,
    replicas: i32,
    bounds: Bounds,
    new_rs: Option<Rs<'a>>,
    old_rses: Vec<Rs<'a>>,
    pods: &'a [Pod],
    status: DeploymentLiteStatus,
    actions: Vec<Action>,
}

/// Plans one sync (docs/controller.md §2).
pub fn plan(input: SyncInput<'_>) -> Plan {
    let dl = input.dl;
    let mut status = dl.status.clone().unwrap_or_default();
    let replicas = dl.spec.replicas;

    // 1. An empty selector would select every pod in the namespace. The CRD
    // rejects it; an object stored before that rule existed is refused here.
    if selector_is_empty(&dl.spec.selector) {
        status.observed_generation = dl.metadata.generation;
        return Plan {
            actions: vec![Action::Event {
                type_: EventType::Warning,
                reason: reason::SELECTING_ALL,
                message: "This deployment is selecting all pods. A non-empty selector is required."
                    .into(),
            }],
            status,
            requeue_after: None,
        };
    }

    // Bounds the schema could not check (e.g. a percentage over a large
    // count is fine, but a malformed value stored before validation is not).
    let bounds = match resolve_bounds(dl) {
        Ok(b) => b,
        Err(e) => {
            status.observed_generation = dl.metadata.generation;
            return Plan {
                actions: vec![Action::Event {
                    type_: EventType::Warning,
                    reason: reason::INVALID_SPEC,
                    message: format!("spec.strategy.rollingUpdate: {e}"),
                }],
                status,
                requeue_after: None,
            };
        }
    };

    let all: Vec<Rs<'_>> = input.rses.iter().map(Rs::from_obj).collect();
    let (new_rs, old_rses) = split_new_and_old(input.template, all);
    let mut s = Sync {
        dl,
        template: input.template,
        now: input.now,
        replicas,
        bounds,
        new_rs,
        old_rses,
        pods: input.pods,
        status,
        actions: vec![],
    };

    // 3. Being deleted: the garbage collector removes the children; only
    // report status.
    if dl.metadata.deletion_timestamp.is_some() {
        return s.finish_status_only();
    }

    // 4. Paused / resumed condition.
    s.check_paused_conditions();

    // 5. Paused: scaling and cleanup still run, nothing else.
    if dl.spec.paused {
        s.sync_revision_and_new_rs(false);
        s.proportional_scale();
        // Fix: as upstream (`d.Spec.Paused && getRollbackTo(d) == nil`), no
        // cleanup while a rollback waits for the resume: it could delete
        // the very revision to roll back to.
        if dl.spec.rollback_to.is_none() {
            s.cleanup_history();
        }
        return s.finish_status_only();
    }

    // 6. Rollback request.
    if let Some(rollback_to) = &dl.spec.rollback_to {
        s.rollback(rollback_to.revision);
        return s.finish_status_only();
    }

    // 7. A scaling event: spec.replicas changed under an ongoing rollout.
    if s.is_scaling_event() {
        s.sync_revision_and_new_rs(false);
        s.proportional_scale();
        return s.finish_status_only();
    }

    // 8. The strategy.
    match dl.spec.strategy.type_ {
        StrategyType::RollingUpdate => s.rollout_rolling(),
        StrategyType::Recreate => s.rollout_recreate(),
    }
}

fn selector_is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// maxSurge / maxUnavailable resolved against spec.replicas, with apps/v1
/// defaulting.
pub fn resolve_bounds(dl: &DeploymentLite) -> Result<Bounds, BoundsError> {
    match dl.spec.rolling_update_bounds() {
        None => bounds::bounds_for(true, None, None, dl.spec.replicas),
        Some((surge, unavailable)) => {
            bounds::bounds_for(false, Some(&surge), Some(&unavailable), dl.spec.replicas)
        }
    }
}

/// Finds the ReplicaSet of the current template, as upstream's
/// FindNewReplicaSet: the oldest ReplicaSet whose template equals the
/// defaulted template except for the hash label. The hash label is not
/// consulted: it is a name, not proof of identity (a rollback brings back a
/// ReplicaSet whose label came from another collision count, and an adopted
/// orphan may carry any label).
fn split_new_and_old<'a>(
    template: &PodTemplateSpec,
    mut all: Vec<Rs<'a>>,
) -> (Option<Rs<'a>>, Vec<Rs<'a>>) {
    all.sort_by(|a, b| {
        a.state
            .created
            .cmp(&b.state.created)
            .then_with(|| a.state.name.cmp(&b.state.name))
    });
    let idx = all.iter().position(|rs| {
        rs.template()
            .is_some_and(|t| equal_ignore_hash(template, t))
    });
    match idx {
        Some(i) => {
            let new = all.remove(i);
            (Some(new), all)
        }
        None => (None, all),
    }
}

impl<'a> Sync<'a> {
    fn all(&self) -> impl Iterator<Item = &Rs<'a>> {
        self.old_rses.iter().chain(self.new_rs.iter())
    }

    fn all_states(&self) -> Vec<RsState> {
        self.all().map(|r| r.state.clone()).collect()
    }

    fn has_progress_deadline(&self) -> bool {
        has_progress_deadline(self.dl)
    }

    fn set_condition(&mut self, c: DeploymentCondition) {
        rollout::progress::set_condition(&mut self.status.conditions, c);
    }

    fn event(&mut self, type_: EventType, reason: &'static str, message: String) {
        self.actions.push(Action::Event {
            type_,
            reason,
            message,
        });
    }

    /// The annotations a ReplicaSet should carry for this object now.
    fn replicas_annotations(&self) -> [(String, String); 2] {
        [
            (
                DESIRED_REPLICAS_ANNOTATION.to_string(),
                self.replicas.to_string(),
            ),
            (
                MAX_REPLICAS_ANNOTATION.to_string(),
                (self.replicas + self.bounds.max_surge).to_string(),
            ),
        ]
    }

    fn max_old_revision(&self) -> i64 {
        self.old_rses
            .iter()
            .map(|r| r.state.revision)
            .max()
            .unwrap_or(0)
    }

    /// Writes a ReplicaSet's size (and refreshes its annotations); records
    /// the decision in the planned state.
    fn scale_rs(&mut self, which: RsRef, to: i32) {
        let ann = self.replicas_annotations();
        let rs = match which {
            RsRef::New => self.new_rs.as_mut().expect("new RS exists"),
            RsRef::Old(i) => &mut self.old_rses[i],
        };
        let mut annotations = rs.annotations.clone();
        for (k, v) in ann {
            annotations.insert(k, v);
        }
        let from = rs.state.spec_replicas;
        // As upstream's scaleReplicaSet: size and the replicas annotations
        // only. minReadySeconds follows the object on the new ReplicaSet
        // alone (sync_revision_and_new_rs); an old one keeps its own.
        let min_ready = rs.min_ready_seconds;
        if from == to && annotations == rs.annotations {
            return;
        }
        self.actions.push(Action::UpdateReplicaSet {
            name: rs.state.name.clone(),
            resource_version: rs.resource_version.clone(),
            from,
            replicas: to,
            annotations: annotations.clone(),
            min_ready_seconds: min_ready,
        });
        rs.state.spec_replicas = to;
        rs.state.desired_replicas = Some(self.replicas);
        rs.state.max_replicas = Some(self.replicas + self.bounds.max_surge);
        rs.annotations = annotations;
    }

    fn scale_by_name(&mut self, name: &str, to: i32) {
        if self.new_rs.as_ref().is_some_and(|n| n.state.name == name) {
            self.scale_rs(RsRef::New, to);
        } else if let Some(i) = self.old_rses.iter().position(|r| r.state.name == name) {
            self.scale_rs(RsRef::Old(i), to);
        }
    }
}

#[derive(Clone, Copy)]
enum RsRef {
    New,
    Old(usize),
}

/// One write per ReplicaSet per sync (fix). Every `UpdateReplicaSet` is
/// conditional on the resourceVersion the ReplicaSet was read with, so a
/// second write to the same ReplicaSet in one plan (e.g. a revision bump of
/// a re-activated ReplicaSet, then its scale-up) was refused with 409 once
/// the first had been applied, failing every such sync. Later writes are
/// built on the state the earlier ones decided, so the last one carries
/// everything: it is folded into the first, which keeps `from` as read.
fn coalesce_rs_writes(actions: Vec<Action>) -> Vec<Action> {
    let mut out: Vec<Action> = Vec::with_capacity(actions.len());
    for action in actions {
        if let Action::UpdateReplicaSet {
            name,
            replicas,
            annotations,
            min_ready_seconds,
            ..
        } = &action
            && let Some(Action::UpdateReplicaSet {
                replicas: first_replicas,
                annotations: first_annotations,
                min_ready_seconds: first_min_ready,
                ..
            }) = out
                .iter_mut()
                .find(|a| matches!(a, Action::UpdateReplicaSet { name: n, .. } if n == name))
        {
            *first_replicas = *replicas;
            *first_annotations = annotations.clone();
            *first_min_ready = *min_ready_seconds;
            continue;
        }
        out.push(action);
    }
    out
}

/// Whether the object has a progress deadline: as upstream, unset and
/// the largest int32 (2147483647) both mean none.
pub fn has_progress_deadline(dl: &DeploymentLite) -> bool {
    dl.spec
        .progress_deadline_seconds
        .is_some_and(|s| s != i32::MAX)
}

/// The controller owner reference a ReplicaSet gets.
pub fn controller_ref(dl: &DeploymentLite) -> OwnerReference {
    let mut r = dl
        .controller_owner_ref(&())
        .expect("a stored DeploymentLite has a uid");
    // The garbage collector's foreground deletion waits for children that
    // block their owner's deletion, as for a Deployment's ReplicaSets.
    r.block_owner_deletion = Some(true);
    r
}

/// The selector in the string form of the scale subresource
/// (`app=web,tier in (a,b)`), as labels.Selector.String() prints it.
pub fn selector_string(sel: &LabelSelector) -> String {
    // (key, requirement) in the order upstream builds them; requirements
    // are then ordered by key alone (labels.ByKey), not by their text.
    let mut parts: Vec<(&str, String)> = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        parts.push((k, format!("{k}={v}")));
    }
    for e in sel.match_expressions.iter().flatten() {
        let mut values = e.values.clone().unwrap_or_default();
        values.sort();
        let part = match e.operator.as_str() {
            "In" => format!("{} in ({})", e.key, values.join(",")),
            "NotIn" => format!("{} notin ({})", e.key, values.join(",")),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => format!("{} {other}", e.key),
        };
        parts.push((&e.key, part));
    }
    parts.sort_by(|a, b| a.0.cmp(b.0));
    parts
        .into_iter()
        .map(|(_, p)| p)
        .collect::<Vec<_>>()
        .join(",")
}

mod progress;
mod recreate;
mod rollback;
mod rolling;
mod sync;

#[cfg(test)]
pub(crate) mod fuzz;
#[cfg(test)]
mod tests;
