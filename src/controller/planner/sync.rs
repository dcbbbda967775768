//! Steps every sync shares (upstream sync.go): the new ReplicaSet found
//! or created with its revision, the paused condition, scaling events and
//! proportional scaling, and history cleanup.

use super::progress::completed_message;
use super::*;
use crate::controller::hash::with_hash_label;

impl<'a> Sync<'a> {
    /// docs/controller.md §5: the new ReplicaSet's revision is max(old)+1 (only ever
    /// raised); its annotations, minReadySeconds and the object's own
    /// revision annotation follow. With `create`, a missing new ReplicaSet
    /// is created at its computed size.
    pub(super) fn sync_revision_and_new_rs(&mut self, create: bool) {
        let new_revision = self.max_old_revision() + 1;
        if let Some(new_rs) = &self.new_rs {
            let mut annotations = new_rs.annotations.clone();
            copy_object_annotations(self.dl, &mut annotations);
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
            if self.has_progress_deadline() {
                let progressing = get_condition(&self.status.conditions, reason::PROGRESSING);
                if progressing.is_none() {
                    let c = new_condition(
                        reason::PROGRESSING,
                        "True",
                        reason::FOUND_NEW_RS,
                        format!("Found new replica set \"{name}\""),
                        self.now,
                    );
                    self.set_condition(c);
                } else if let Some(created) = self.lost_creation_record(progressing) {
                    // The sync that created this ReplicaSet had its status
                    // write refused (409 from a stale cache: the object's own
                    // previous write had not arrived yet). Its condition is
                    // recorded now, dated as it would have been. Without it
                    // a Recreate rollout stays "complete" under the previous
                    // revision's NewReplicaSetAvailable (status.replicas ==
                    // updatedReplicas, no old pods), and its progress
                    // deadline never runs out. Upstream has the same window
                    // (its create-time UpdateStatus can fail too); outside
                    // it, what is recorded is what upstream records.
                    let c = new_condition(
                        reason::PROGRESSING,
                        "True",
                        reason::NEW_RS_CREATED,
                        format!("Created new replica set \"{name}\""),
                        created,
                    );
                    self.set_condition(c);
                }
            }
            self.annotate_deployment(revision);
            return;
        }
        if !create {
            return;
        }
        self.create_new_rs(new_revision);
    }

    /// The new ReplicaSet's creation time, when the Progressing condition
    /// still reports the completion of another ReplicaSet from before that
    /// creation: the creating sync's `NewReplicaSetCreated` never reached
    /// the API server. A rollback to an existing, older ReplicaSet is not
    /// such a case (it was created before the completion), and keeps
    /// upstream's condition.
    fn lost_creation_record(&self, progressing: Option<&DeploymentCondition>) -> Option<Timestamp> {
        let c = progressing?;
        let new_rs = self.new_rs.as_ref()?;
        let created = new_rs.state.created?;
        let completed_at = from_time(c.last_update_time.as_ref()?);
        let of_this_rs = c.message.as_deref()
            == Some(completed_message(&format!("ReplicaSet \"{}\"", new_rs.state.name)).as_str());
        (c.reason.as_deref() == Some(reason::NEW_RS_AVAILABLE)
            && !of_this_rs
            && completed_at <= created)
            .then_some(created)
    }

    /// Mirrors the current revision on the object, as upstream does.
    pub(super) fn annotate_deployment(&mut self, revision: i64) {
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

    pub(super) fn create_new_rs(&mut self, revision: i64) {
        let dl = self.dl;
        let collision_count = self.status.collision_count;
        let hash = pod_template_hash(&dl.spec.template, collision_count);
        let name = replica_set_name(&dl.name_any(), &hash);

        let (template, selector) = with_hash_label(dl, &hash);
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();

        let size = match dl.spec.strategy.type_ {
            // Fix (found by the planner fuzzer): a rollback request creates
            // the current template's ReplicaSet first (as upstream's
            // rollback does), and upstream sizes it at spec.replicas even
            // for Recreate, so the new pods started next to the old ones.
            // Recreate never runs both (docs/controller.md §4): while an
            // old ReplicaSet wants pods or old pods run, the ReplicaSet is
            // created empty and the Recreate sync scales it up once they
            // are gone.
            StrategyType::Recreate
                if self.old_pods_running() || self.old_rses.iter().any(|r| r.state.is_active()) =>
            {
                0
            }
            StrategyType::Recreate => self.replicas,
            StrategyType::RollingUpdate => {
                let mut all = self.all_states();
                let new_state = RsState {
                    name: name.clone(),
                    ..Default::default()
                };
                all.push(new_state.clone());
                rollout::rolling::new_rs_new_replicas(
                    self.replicas,
                    self.bounds.max_surge,
                    &all,
                    &new_state,
                )
            }
        };
        let mut annotations = BTreeMap::new();
        copy_object_annotations(dl, &mut annotations);
        annotations.extend(self.replicas_annotations());
        annotations.insert(REVISION_ANNOTATION.into(), revision.to_string());
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

    /// docs/controller.md §6: Progressing=Unknown DeploymentPaused / DeploymentResumed.
    pub(super) fn check_paused_conditions(&mut self) {
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
    /// spec.replicas means the object was scaled (docs/controller.md §2, step 7).
    pub(super) fn is_scaling_event(&self) -> bool {
        // Fix (found by the planner fuzzer): upstream's scale() does
        // nothing for Recreate when more than one ReplicaSet is active (an
        // adopted one, or a switch from RollingUpdate mid-rollout), and
        // the stale desired-replicas annotations then make every later
        // sync a scaling event again: stuck, with old and new pods
        // running together. The Recreate rollout sizes them all instead.
        if self.dl.spec.strategy.type_ == StrategyType::Recreate
            && self.all().filter(|r| r.state.is_active()).count() > 1
        {
            return false;
        }
        self.all()
            .filter(|r| r.state.spec_replicas > 0)
            .any(|r| r.state.desired_replicas.is_some_and(|d| d != self.replicas))
    }

    /// docs/controller.md §8.
    pub(super) fn proportional_scale(&mut self) {
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

    /// docs/controller.md §9.
    pub(super) fn cleanup_history(&mut self) {
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
}

/// The new ReplicaSet's name: the object's name, cut so that with the
/// separator and the hash it fits the 253 characters of a DNS subdomain, as
/// upstream cuts it.
pub(super) fn replica_set_name(object: &str, hash: &str) -> String {
    const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
    let max = DNS1123_SUBDOMAIN_MAX_LENGTH.saturating_sub(1 + hash.len());
    // Object names are ASCII (DNS subdomains), so a byte cut is a
    // character cut.
    let object = if object.len() > max && max > 0 {
        &object[..max]
    } else {
        object
    };
    format!("{object}-{hash}")
}

pub(super) fn trim_history(history: &str) -> String {
    let mut h = history.to_string();
    while h.len() > MAX_REVISION_HISTORY_LEN {
        match h.find(',') {
            Some(i) => h = h[i + 1..].to_string(),
            None => break,
        }
    }
    h
}
