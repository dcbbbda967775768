//! One sync of a DeploymentLite, as a pure function.
//!
//! [`plan`] takes the object, the ReplicaSets it controls, their pods and the
//! time, and returns the writes one upstream sync would make (section 2 of
//! the spec) plus the status to record. The reconciler executes the actions
//! in order; each ReplicaSet write carries the resourceVersion the decision
//! was taken on, so a decision made from stale state fails instead of
//! applying.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{DeploymentCondition, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::api::{
    CHANGE_CAUSE_ANNOTATION, DESIRED_REPLICAS_ANNOTATION, DeploymentLite, DeploymentLiteStatus,
    MAX_REPLICAS_ANNOTATION, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION, StrategyType,
};
use crate::controller::hash::{pod_template_hash, templates_match};
use crate::controller::rollout::bounds::{self, Bounds, BoundsError};
use crate::controller::rollout::progress::{self, from_time, get_condition, new_condition};
use crate::controller::rollout::{RsState, cleanup, rolling, scaling};

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

fn to_rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
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
    /// Finish a rollback request: optionally replace the template, and clear
    /// `spec.rollbackTo`.
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
    pub now: DateTime<Utc>,
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
    now: DateTime<Utc>,
    replicas: i32,
    bounds: Bounds,
    new_rs: Option<Rs<'a>>,
    old_rses: Vec<Rs<'a>>,
    pods: &'a [Pod],
    status: DeploymentLiteStatus,
    actions: Vec<Action>,
}

/// Plans one sync (spec section 2).
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
    let (new_rs, old_rses) = split_new_and_old(dl, all);
    let mut s = Sync {
        dl,
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

/// Finds the ReplicaSet of the current template: by hash label first, then
/// by semantic comparison (a rollback copies a defaulted template into the
/// spec, whose hash then differs from the label). Oldest wins among several.
fn split_new_and_old<'a>(
    dl: &DeploymentLite,
    mut all: Vec<Rs<'a>>,
) -> (Option<Rs<'a>>, Vec<Rs<'a>>) {
    all.sort_by(|a, b| {
        a.state
            .created
            .cmp(&b.state.created)
            .then_with(|| a.state.name.cmp(&b.state.name))
    });
    let hash = pod_template_hash(
        &dl.spec.template,
        dl.status.as_ref().and_then(|s| s.collision_count),
    );
    let by_label = all.iter().position(|rs| {
        rs.obj
            .and_then(|o| o.labels().get(POD_TEMPLATE_HASH_LABEL))
            .is_some_and(|h| *h == hash)
            && rs
                .template()
                .is_some_and(|t| templates_match(&dl.spec.template, t))
    });
    let idx = by_label.or_else(|| {
        all.iter().position(|rs| {
            rs.template()
                .is_some_and(|t| templates_match(&dl.spec.template, t))
        })
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
        self.dl.spec.progress_deadline_seconds.is_some()
    }

    fn set_condition(&mut self, c: DeploymentCondition) {
        progress::set_condition(&mut self.status.conditions, c);
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
        let min_ready = self.dl.spec.min_ready_seconds;
        let rs = match which {
            RsRef::New => self.new_rs.as_mut().expect("new RS exists"),
            RsRef::Old(i) => &mut self.old_rses[i],
        };
        let mut annotations = rs.annotations.clone();
        for (k, v) in ann {
            annotations.insert(k, v);
        }
        let from = rs.state.spec_replicas;
        if from == to && annotations == rs.annotations && rs.min_ready_seconds == min_ready {
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
        rs.min_ready_seconds = min_ready;
    }

    fn scale_by_name(&mut self, name: &str, to: i32) {
        if self.new_rs.as_ref().is_some_and(|n| n.state.name == name) {
            self.scale_rs(RsRef::New, to);
        } else if let Some(i) = self.old_rses.iter().position(|r| r.state.name == name) {
            self.scale_rs(RsRef::Old(i), to);
        }
    }

    /// Section 5: the new ReplicaSet's revision is max(old)+1 (only ever
    /// raised); its annotations, minReadySeconds and the object's own
    /// revision annotation follow. With `create`, a missing new ReplicaSet
    /// is created at its computed size.
    fn sync_revision_and_new_rs(&mut self, create: bool) {
        let new_revision = self.max_old_revision() + 1;
        let change_cause = self.dl.annotations().get(CHANGE_CAUSE_ANNOTATION).cloned();
        if let Some(new_rs) = &self.new_rs {
            let mut annotations = new_rs.annotations.clone();
            let old_revision = new_rs.state.revision;
            let mut revision = old_revision;
            if old_revision < new_revision {
                revision = new_revision;
                annotations.insert(REVISION_ANNOTATION.into(), new_revision.to_string());
                if old_revision > 0 {
                    let history = match annotations.get(REVISION_HISTORY_ANNOTATION) {
                        Some(h) if !h.is_empty() => format!("{h},{old_revision}"),
                        _ => old_revision.to_string(),
                    };
                    annotations.insert(REVISION_HISTORY_ANNOTATION.into(), trim_history(&history));
                }
            }
            if let Some(cause) = &change_cause {
                annotations.insert(CHANGE_CAUSE_ANNOTATION.into(), cause.clone());
            }
            // desired/max annotations are only written together with a size
            // decision (scale_rs), except on a fresh revision bump.
            let min_ready = self.dl.spec.min_ready_seconds;
            if annotations != new_rs.annotations || new_rs.min_ready_seconds != min_ready {
                let (name, rv, size) = (
                    new_rs.state.name.clone(),
                    new_rs.resource_version.clone(),
                    new_rs.state.spec_replicas,
                );
                self.actions.push(Action::UpdateReplicaSet {
                    name,
                    resource_version: rv,
                    from: size,
                    replicas: size,
                    annotations: annotations.clone(),
                    min_ready_seconds: min_ready,
                });
                let n = self.new_rs.as_mut().expect("new RS exists");
                n.annotations = annotations;
                n.min_ready_seconds = min_ready;
                n.state.revision = revision;
            }
            let name = self
                .new_rs
                .as_ref()
                .map(|n| n.state.name.clone())
                .unwrap_or_default();
            if self.has_progress_deadline()
                && get_condition(&self.status.conditions, reason::PROGRESSING).is_none()
            {
                let c = new_condition(
                    reason::PROGRESSING,
                    "True",
                    reason::FOUND_NEW_RS,
                    format!("Found new replica set \"{name}\""),
                    self.now,
                );
                self.set_condition(c);
            }
            self.annotate_deployment(revision);
            return;
        }
        if !create {
            return;
        }
        self.create_new_rs(new_revision, change_cause);
    }

    /// Mirrors the current revision on the object, as upstream does.
    fn annotate_deployment(&mut self, revision: i64) {
        let mut want = BTreeMap::new();
        let have = self.dl.annotations();
        if have.get(REVISION_ANNOTATION) != Some(&revision.to_string()) {
            want.insert(REVISION_ANNOTATION.to_string(), revision.to_string());
        }
        if !want.is_empty() {
            self.actions
                .push(Action::AnnotateDeployment { annotations: want });
        }
    }

    fn create_new_rs(&mut self, revision: i64, change_cause: Option<String>) {
        let dl = self.dl;
        let collision_count = self.status.collision_count;
        let hash = pod_template_hash(&dl.spec.template, collision_count);
        let name = format!("{}-{}", dl.name_any(), hash);

        let mut template = dl.spec.template.clone();
        let meta = template.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let labels = meta.labels.clone().unwrap_or_default();
        let mut selector = dl.spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());

        let size = match dl.spec.strategy.type_ {
            StrategyType::Recreate => self.replicas,
            StrategyType::RollingUpdate => {
                let mut all = self.all_states();
                let new_state = RsState {
                    name: name.clone(),
                    ..Default::default()
                };
                all.push(new_state.clone());
                rolling::new_rs_new_replicas(self.replicas, self.bounds.max_surge, &all, &new_state)
            }
        };
        let mut annotations: BTreeMap<String, String> =
            self.replicas_annotations().into_iter().collect();
        annotations.insert(REVISION_ANNOTATION.into(), revision.to_string());
        if let Some(cause) = &change_cause {
            annotations.insert(CHANGE_CAUSE_ANNOTATION.into(), cause.clone());
        }
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: dl.namespace(),
                labels: Some(labels),
                annotations: Some(annotations.clone()),
                owner_references: Some(vec![controller_ref(dl)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(size),
                min_ready_seconds: Some(dl.spec.min_ready_seconds),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        self.actions.push(Action::CreateReplicaSet(Box::new(rs)));
        self.new_rs = Some(Rs {
            obj: None,
            state: RsState {
                name: name.clone(),
                created: Some(self.now),
                revision,
                spec_replicas: size,
                desired_replicas: Some(self.replicas),
                max_replicas: Some(self.replicas + self.bounds.max_surge),
                ..Default::default()
            },
            uid: String::new(),
            resource_version: String::new(),
            annotations,
            min_ready_seconds: dl.spec.min_ready_seconds,
        });
        if self.has_progress_deadline() {
            let c = new_condition(
                reason::PROGRESSING,
                "True",
                reason::NEW_RS_CREATED,
                format!("Created new replica set \"{name}\""),
                self.now,
            );
            self.set_condition(c);
        }
        self.annotate_deployment(revision);
    }

    /// Section 6: Progressing=Unknown DeploymentPaused / DeploymentResumed.
    fn check_paused_conditions(&mut self) {
        if !self.has_progress_deadline() {
            return;
        }
        // Fix: as upstream's checkPausedConditions, a reported lack of
        // progress is not overwritten by the paused condition.
        if get_condition(&self.status.conditions, reason::PROGRESSING)
            .is_some_and(|c| c.reason.as_deref() == Some(reason::TIMED_OUT))
        {
            return;
        }
        let paused_cond_exists = get_condition(&self.status.conditions, reason::PROGRESSING)
            .is_some_and(|c| c.reason.as_deref() == Some(reason::PAUSED));
        if self.dl.spec.paused && !paused_cond_exists {
            let c = new_condition(
                reason::PROGRESSING,
                "Unknown",
                reason::PAUSED,
                "Deployment is paused".into(),
                self.now,
            );
            self.set_condition(c);
        } else if !self.dl.spec.paused && paused_cond_exists {
            let c = new_condition(
                reason::PROGRESSING,
                "Unknown",
                reason::RESUMED,
                "Deployment is resumed".into(),
                self.now,
            );
            self.set_condition(c);
        }
    }

    /// An active ReplicaSet whose desired-replicas annotation differs from
    /// spec.replicas means the object was scaled (section 2, step 7).
    fn is_scaling_event(&self) -> bool {
        self.all()
            .filter(|r| r.state.spec_replicas > 0)
            .any(|r| r.state.desired_replicas.is_some_and(|d| d != self.replicas))
    }

    /// Section 8.
    fn proportional_scale(&mut self) {
        let new_state = self.new_rs.as_ref().map(|r| r.state.clone());
        let old_states: Vec<RsState> = self.old_rses.iter().map(|r| r.state.clone()).collect();
        let writes = scaling::scale(
            self.replicas,
            self.bounds.max_surge,
            self.dl.spec.strategy.type_ == StrategyType::RollingUpdate,
            new_state.as_ref(),
            &old_states,
        );
        for (name, size) in writes {
            self.scale_by_name(&name, size);
        }
    }

    /// Section 9.
    fn cleanup_history(&mut self) {
        let old: Vec<RsState> = self.old_rses.iter().map(|r| r.state.clone()).collect();
        for name in cleanup::history_to_delete(&old, self.dl.spec.revision_history_limit) {
            if let Some(i) = self.old_rses.iter().position(|r| r.state.name == name) {
                let rs = self.old_rses.remove(i);
                self.actions.push(Action::DeleteReplicaSet {
                    name: rs.state.name,
                    uid: rs.uid,
                    resource_version: rs.resource_version,
                });
            }
        }
    }

    /// Section 3.
    fn rollout_rolling(mut self) -> Plan {
        self.sync_revision_and_new_rs(true);
        if self.reconcile_new_rs() {
            return self.finish_rollout_status();
        }
        if self.reconcile_old_rses() {
            return self.finish_rollout_status();
        }
        if self.stored_status_complete() {
            self.cleanup_history();
        }
        self.finish_rollout_status()
    }

    fn reconcile_new_rs(&mut self) -> bool {
        let Some(new_rs) = &self.new_rs else {
            return false;
        };
        let current = new_rs.state.spec_replicas;
        if current == self.replicas {
            return false;
        }
        let to = if current > self.replicas {
            self.replicas
        } else {
            rolling::new_rs_new_replicas(
                self.replicas,
                self.bounds.max_surge,
                &self.all_states(),
                &new_rs.state,
            )
        };
        if to == current {
            return false;
        }
        self.scale_rs(RsRef::New, to);
        true
    }

    fn reconcile_old_rses(&mut self) -> bool {
        let active_old: Vec<RsState> = self
            .old_rses
            .iter()
            .filter(|r| r.state.spec_replicas > 0)
            .map(|r| r.state.clone())
            .collect();
        if active_old.is_empty() {
            return false;
        }
        let all = self.all_states();
        let new_state = self.new_rs.as_ref().map(|r| r.state.clone());
        let writes = rolling::reconcile_old_replica_sets(
            self.replicas,
            self.bounds.max_unavailable,
            &all,
            &active_old,
            new_state.as_ref(),
        );
        let mut changed = false;
        for (name, size) in writes {
            if let Some(i) = self.old_rses.iter().position(|r| r.state.name == name)
                && self.old_rses[i].state.spec_replicas != size
            {
                self.scale_rs(RsRef::Old(i), size);
                changed = true;
            }
        }
        changed
    }

    /// Section 4.
    fn rollout_recreate(mut self) -> Plan {
        self.sync_revision_and_new_rs(false);
        let mut scaled_down = false;
        for i in 0..self.old_rses.len() {
            if self.old_rses[i].state.spec_replicas > 0 {
                self.scale_rs(RsRef::Old(i), 0);
                scaled_down = true;
            }
        }
        if scaled_down || self.old_pods_running() {
            return self.finish_rollout_status();
        }
        if self.new_rs.is_none() {
            self.sync_revision_and_new_rs(true);
        } else if self
            .new_rs
            .as_ref()
            .is_some_and(|n| n.state.spec_replicas != self.replicas)
        {
            self.scale_rs(RsRef::New, self.replicas);
        }
        if self.stored_status_complete() {
            self.cleanup_history();
        }
        self.finish_rollout_status()
    }

    /// Old pods still run while any old ReplicaSet reports replicas, or any
    /// pod of an old ReplicaSet is not Failed or Succeeded.
    fn old_pods_running(&self) -> bool {
        if self
            .old_rses
            .iter()
            .map(|r| r.state.status_replicas)
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let old_uids: Vec<&str> = self.old_rses.iter().map(|r| r.uid.as_str()).collect();
        self.pods.iter().any(|p| {
            let owner = p
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.as_str());
            let phase = p
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("Pending");
            owner.is_some_and(|u| old_uids.contains(&u)) && !matches!(phase, "Failed" | "Succeeded")
        })
    }

    /// Section 5: a rollback request. The request is cleared in every case.
    fn rollback(&mut self, revision: i64) {
        let kind = "DeploymentLite";
        let name = self.dl.name_any();
        let mut target = revision;
        if target == 0 {
            target = last_revision(self.all().map(|r| r.state.revision));
            if target == 0 {
                self.event(
                    EventType::Warning,
                    reason::ROLLBACK_NOT_FOUND,
                    "Unable to find last revision.".into(),
                );
                self.actions.push(Action::Rollback {
                    template: None,
                    annotations: BTreeMap::new(),
                });
                return;
            }
        }
        let found = self.all().find(|r| r.state.revision == target).cloned();
        // Fix: the target is the current template when it is the new
        // ReplicaSet (found as section 1 says, ignoring defaulted fields).
        // The exact comparison below alone never matched a real
        // ReplicaSet's defaulted template against the user's, so a rollback
        // to the current revision "succeeded" by copying the defaulted
        // template into the spec instead of being refused as unchanged.
        let is_current = found.as_ref().is_some_and(|r| {
            self.new_rs
                .as_ref()
                .is_some_and(|n| n.state.name == r.state.name)
        });
        match found.and_then(|r| r.template().map(|t| (t, r.annotations.clone()))) {
            None => {
                self.event(
                    EventType::Warning,
                    reason::ROLLBACK_NOT_FOUND,
                    "Unable to find the revision to rollback to.".into(),
                );
                self.actions.push(Action::Rollback {
                    template: None,
                    annotations: BTreeMap::new(),
                });
            }
            Some((template, rs_annotations)) => {
                if is_current
                    || (templates_match(template, &self.dl.spec.template)
                        && templates_match(&self.dl.spec.template, template))
                {
                    self.event(
                        EventType::Warning,
                        reason::ROLLBACK_UNCHANGED,
                        format!("The rollback revision contains the same template as current deployment \"{name}\""),
                    );
                    self.actions.push(Action::Rollback {
                        template: None,
                        annotations: BTreeMap::new(),
                    });
                    return;
                }
                self.actions
                    .push(rollback_to_revision(template, rs_annotations));
                self.event(
                    EventType::Normal,
                    reason::ROLLBACK_DONE,
                    format!("Rolled back {kind} {name} to revision {target}"),
                );
            }
        }
    }

    /// Was the status as stored before this sync complete? (Cleanup runs
    /// only then, as upstream.)
    fn stored_status_complete(&self) -> bool {
        let s = self.dl.status.clone().unwrap_or_default();
        progress::is_complete(
            self.replicas,
            s.updated_replicas,
            s.replicas,
            s.available_replicas,
            s.observed_generation.unwrap_or(0) >= self.dl.metadata.generation.unwrap_or(0),
        )
    }

    /// Section 7: counts and the Available condition.
    fn calculate_status(&mut self) {
        let all: Vec<RsState> = self.all_states();
        let spec_total: i32 = all.iter().map(|r| r.spec_replicas).sum();
        let s = &mut self.status;
        s.observed_generation = self.dl.metadata.generation;
        s.replicas = all.iter().map(|r| r.status_replicas).sum();
        s.updated_replicas = self
            .new_rs
            .as_ref()
            .map(|r| r.state.status_replicas)
            .unwrap_or(0);
        s.ready_replicas = all.iter().map(|r| r.ready_replicas).sum();
        s.available_replicas = all.iter().map(|r| r.available_replicas).sum();
        s.unavailable_replicas = (spec_total - s.available_replicas).max(0);
        s.selector = Some(selector_string(&self.dl.spec.selector));
        s.ready = Some(format!("{}/{}", s.ready_replicas, self.replicas));
        let min_available = bounds::min_available(self.replicas, &self.bounds);
        let c = if s.available_replicas >= min_available {
            new_condition(
                reason::AVAILABLE,
                "True",
                reason::MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                self.now,
            )
        } else {
            new_condition(
                reason::AVAILABLE,
                "False",
                reason::MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                self.now,
            )
        };
        self.set_condition(c);
        self.sync_replica_failure();
    }

    /// ReplicaFailure mirrors the first failure any ReplicaSet reports.
    fn sync_replica_failure(&mut self) {
        let failure = self.all().filter_map(|r| r.obj).find_map(|rs| {
            rs.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
                .cloned()
        });
        match failure {
            Some(f) => {
                let c = new_condition(
                    reason::REPLICA_FAILURE,
                    "True",
                    f.reason.as_deref().unwrap_or("FailedCreate"),
                    f.message.unwrap_or_default(),
                    self.now,
                );
                self.set_condition(c);
            }
            None => {
                progress::remove_condition(&mut self.status.conditions, reason::REPLICA_FAILURE)
            }
        }
    }

    /// Status for syncs that do not move the rollout (paused, scaling,
    /// rollback, deletion): Progressing is left as it is.
    fn finish_status_only(mut self) -> Plan {
        self.calculate_status();
        let requeue_after = self.requeue_after();
        Plan {
            actions: coalesce_rs_writes(self.actions),
            status: self.status,
            requeue_after,
        }
    }

    /// Section 7 and 10: status plus the Progressing condition and the
    /// progress deadline.
    fn finish_rollout_status(mut self) -> Plan {
        let previous = self.dl.status.clone().unwrap_or_default();
        self.calculate_status();
        if !self.has_progress_deadline() {
            progress::remove_condition(&mut self.status.conditions, reason::PROGRESSING);
        } else {
            let current = get_condition(&self.status.conditions, reason::PROGRESSING).cloned();
            let already_complete = self.status.replicas == self.status.updated_replicas
                && current
                    .as_ref()
                    .is_some_and(|c| c.reason.as_deref() == Some(reason::NEW_RS_AVAILABLE));
            let rs_name = self.new_rs.as_ref().map(|r| r.state.name.clone());
            let what = match &rs_name {
                Some(n) => format!("ReplicaSet \"{n}\""),
                None => format!("Deployment \"{}\"", self.dl.name_any()),
            };
            if !already_complete {
                let st = self.status.clone();
                let complete = progress::is_complete(
                    self.replicas,
                    st.updated_replicas,
                    st.replicas,
                    st.available_replicas,
                    true,
                );
                if complete {
                    let c = new_condition(
                        reason::PROGRESSING,
                        "True",
                        reason::NEW_RS_AVAILABLE,
                        format!("{what} has successfully progressed."),
                        self.now,
                    );
                    self.set_condition(c);
                } else if made_progress(&previous, &st) {
                    let mut c = new_condition(
                        reason::PROGRESSING,
                        "True",
                        reason::RS_UPDATED,
                        format!("{what} is progressing."),
                        self.now,
                    );
                    // Progress refreshes lastUpdateTime (the deadline clock)
                    // but a True condition keeps its transition time.
                    if let Some(cur) = &current
                        && cur.status == "True"
                    {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    progress::remove_condition(&mut self.status.conditions, reason::PROGRESSING);
                    self.set_condition(c);
                } else if self.timed_out(current.as_ref()) {
                    let c = new_condition(
                        reason::PROGRESSING,
                        "False",
                        reason::TIMED_OUT,
                        format!("{what} has timed out progressing."),
                        self.now,
                    );
                    self.set_condition(c);
                }
            }
            self.mark_completed_revision();
            self.auto_rollback();
        }
        let requeue_after = self.requeue_after();
        Plan {
            actions: coalesce_rs_writes(self.actions),
            status: self.status,
            requeue_after,
        }
    }

    /// Remembers on the new ReplicaSet that its rollout once completed, so
    /// automatic rollback knows which revisions were good.
    fn mark_completed_revision(&mut self) {
        // Judge by the status just computed, not only by the condition: a
        // rollback re-activating an old ReplicaSet inherits a stale
        // NewReplicaSetAvailable from the previous rollout.
        let st = &self.status;
        let complete = get_condition(&st.conditions, reason::PROGRESSING)
            .is_some_and(|c| c.reason.as_deref() == Some(reason::NEW_RS_AVAILABLE))
            && progress::is_complete(
                self.replicas,
                st.updated_replicas,
                st.replicas,
                st.available_replicas,
                true,
            );
        let Some(new_rs) = &self.new_rs else { return };
        if !complete
            || new_rs.obj.is_none()
            || new_rs.annotations.contains_key(COMPLETED_ANNOTATION)
        {
            return;
        }
        let mut annotations = new_rs.annotations.clone();
        annotations.insert(COMPLETED_ANNOTATION.into(), to_rfc3339(self.now));
        self.actions.push(Action::UpdateReplicaSet {
            name: new_rs.state.name.clone(),
            resource_version: new_rs.resource_version.clone(),
            from: new_rs.state.spec_replicas,
            replicas: new_rs.state.spec_replicas,
            annotations: annotations.clone(),
            min_ready_seconds: new_rs.min_ready_seconds,
        });
        self.new_rs.as_mut().expect("new RS exists").annotations = annotations;
    }

    /// Beyond apps/v1 (opt-in `spec.autoRollback`): a rollout that exceeded
    /// its progress deadline is rolled back to the newest revision whose
    /// rollout once completed. The failed revision stays in history.
    fn auto_rollback(&mut self) {
        if !self.dl.spec.auto_rollback {
            return;
        }
        let Some(c) = get_condition(&self.status.conditions, reason::PROGRESSING) else {
            return;
        };
        if c.reason.as_deref() != Some(reason::TIMED_OUT) {
            return;
        }
        let just_timed_out = get_condition(
            &self.dl.status.clone().unwrap_or_default().conditions,
            reason::PROGRESSING,
        )
        .is_none_or(|old| old.reason.as_deref() != Some(reason::TIMED_OUT));
        let failed_revision = self.new_rs.as_ref().map(|r| r.state.revision).unwrap_or(0);
        let deadline = self.dl.spec.progress_deadline_seconds.unwrap_or(0);
        let target = self
            .old_rses
            .iter()
            .filter(|r| r.annotations.contains_key(COMPLETED_ANNOTATION))
            .max_by_key(|r| r.state.revision)
            .and_then(|r| {
                r.template()
                    .map(|t| (r.state.revision, t, r.annotations.clone()))
            });
        match target {
            Some((revision, template, rs_annotations)) if !templates_match(&self.dl.spec.template, template) => {
                self.actions.push(rollback_to_revision(template, rs_annotations));
                self.event(
                    EventType::Warning,
                    reason::AUTO_ROLLBACK,
                    format!(
                        "Revision {failed_revision} exceeded its progress deadline of {deadline}s; rolled back to revision {revision}, the newest revision that completed"
                    ),
                );
            }
            Some(_) => {}
            None if just_timed_out => self.event(
                EventType::Warning,
                reason::AUTO_ROLLBACK,
                format!(
                    "Revision {failed_revision} exceeded its progress deadline of {deadline}s, but no earlier revision ever completed: nothing to roll back to"
                ),
            ),
            None => {}
        }
    }

    fn timed_out(&self, progressing: Option<&DeploymentCondition>) -> bool {
        let Some(c) = progressing else { return false };
        match c.reason.as_deref() {
            Some(reason::NEW_RS_AVAILABLE) => false,
            Some(reason::TIMED_OUT) => true,
            _ => c.last_update_time.as_ref().is_some_and(|t| {
                progress::timed_out(
                    self.dl.spec.progress_deadline_seconds,
                    from_time(t),
                    self.now,
                )
            }),
        }
    }

    /// Requeue when the progress deadline would pass, so it is reported on
    /// time without polling (section 10: at that moment, plus one second).
    fn requeue_after(&self) -> Option<Duration> {
        if self.dl.spec.paused {
            return None;
        }
        let c = get_condition(&self.status.conditions, reason::PROGRESSING)?;
        if matches!(
            c.reason.as_deref(),
            Some(reason::NEW_RS_AVAILABLE) | Some(reason::TIMED_OUT)
        ) {
            return None;
        }
        let last = from_time(c.last_update_time.as_ref()?);
        let after =
            progress::requeue_after(self.dl.spec.progress_deadline_seconds, last, self.now)?;
        Some(after + Duration::from_secs(1))
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

/// A rollout made progress when more pods are updated, fewer old ones
/// remain, or more are ready or available than the stored status says.
fn made_progress(old: &DeploymentLiteStatus, new: &DeploymentLiteStatus) -> bool {
    new.updated_replicas > old.updated_replicas
        || (new.replicas - new.updated_replicas) < (old.replicas - old.updated_replicas)
        || new.ready_replicas > old.ready_replicas
        || new.available_replicas > old.available_replicas
}

/// The rollback that puts a revision's template (without its hash label)
/// back into the spec. The change cause travels with the revision, as
/// kubectl's rollback copies the ReplicaSet's annotations back.
fn rollback_to_revision(
    template: &PodTemplateSpec,
    rs_annotations: BTreeMap<String, String>,
) -> Action {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    let annotations = rs_annotations
        .into_iter()
        .filter(|(k, _)| k == CHANGE_CAUSE_ANNOTATION)
        .collect();
    Action::Rollback {
        template: Some(Box::new(t)),
        annotations,
    }
}

/// The revision before the newest one (0 if there is none).
fn last_revision(revisions: impl Iterator<Item = i64>) -> i64 {
    let (mut max, mut second) = (0, 0);
    for v in revisions {
        if v >= max {
            second = max;
            max = v;
        } else if v > second {
            second = v;
        }
    }
    second
}

fn trim_history(history: &str) -> String {
    let mut h = history.to_string();
    while h.len() > MAX_REVISION_HISTORY_LEN {
        match h.find(',') {
            Some(i) => h = h[i + 1..].to_string(),
            None => break,
        }
    }
    h
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
    let mut parts: Vec<String> = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        parts.push(format!("{k}={v}"));
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
        parts.push(part);
    }
    parts.sort();
    parts.join(",")
}

#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;
