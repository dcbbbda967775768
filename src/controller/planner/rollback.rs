//! Rollback (upstream rollback.go): `spec.rollbackTo` puts an earlier
//! revision's template back; and the opt-in automatic rollback of a
//! revision that exceeded its progress deadline.

use super::progress::completed_message;
use super::*;

impl<'a> Sync<'a> {
    /// docs/controller.md §5: a rollback request. The request is cleared in every case.
    pub(super) fn rollback(&mut self, revision: i64) {
        let name = self.dl.name_any();
        // As upstream (getAllReplicaSetsAndSyncRevision with create): the
        // current template gets its ReplicaSet and revision first, so a new
        // template sent together with rollbackTo becomes a revision of its
        // own, and "the previous revision" is counted from it.
        self.sync_revision_and_new_rs(true);
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
                // As upstream: the stored revision against the defaulted
                // current template, so a revision is "unchanged" exactly
                // when it is the new ReplicaSet.
                if equal_ignore_hash(template, self.template) {
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
                    .push(rollback_to_revision(template, &rs_annotations));
                // Upstream's words, "deployment" included.
                self.event(
                    EventType::Normal,
                    reason::ROLLBACK_DONE,
                    format!("Rolled back deployment \"{name}\" to revision {target}"),
                );
            }
        }
    }

    /// Remembers on the new ReplicaSet that its rollout once completed, so
    /// automatic rollback knows which revisions were good.
    ///
    /// Only with autoRollback on, the one reader of the mark: the write is a
    /// ReplicaSet PATCH upstream never makes, one per rollout, and it races
    /// the ReplicaSet controller's status write of the same moment (a 409,
    /// a GET and a second PUT on its side). The revision running when
    /// autoRollback is turned on is marked by the next sync, also when a
    /// new release comes in the same change (see
    /// [`Self::mark_previous_completion`]); revisions that completed
    /// before that are not known as good.
    pub(super) fn mark_completed_revision(&mut self) {
        if !self.dl.spec.auto_rollback {
            return;
        }
        self.mark_previous_completion();
        // Judge by the status just computed, not only by the condition: a
        // rollback re-activating an old ReplicaSet inherits a stale
        // NewReplicaSetAvailable from the previous rollout.
        let st = &self.status;
        let complete = get_condition(&st.conditions, reason::PROGRESSING)
            .is_some_and(|c| c.reason.as_deref() == Some(reason::NEW_RS_AVAILABLE))
            && rollout::progress::is_complete(
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

    /// The revision the stored status last reported complete
    /// (`NewReplicaSetAvailable` naming it), now an old ReplicaSet because
    /// the template changed since, and not marked: autoRollback turned on
    /// together with a new release. It completed; marked (at the time the
    /// status recorded it) so the release has something to go back to.
    fn mark_previous_completion(&mut self) {
        let stored = self.dl.status.as_ref().map(|s| s.conditions.as_slice());
        let Some(c) = get_condition(stored.unwrap_or_default(), reason::PROGRESSING) else {
            return;
        };
        if c.reason.as_deref() != Some(reason::NEW_RS_AVAILABLE) {
            return;
        }
        let message = c.message.as_deref().unwrap_or_default();
        let at = c.last_update_time.as_ref().map_or(self.now, |t| t.0);
        let Some(rs) = self.old_rses.iter_mut().find(|r| {
            r.obj.is_some()
                && !r.annotations.contains_key(COMPLETED_ANNOTATION)
                && message == completed_message(&format!("ReplicaSet \"{}\"", r.state.name))
        }) else {
            return;
        };
        rs.annotations
            .insert(COMPLETED_ANNOTATION.into(), to_rfc3339(at));
        self.actions.push(Action::UpdateReplicaSet {
            name: rs.state.name.clone(),
            resource_version: rs.resource_version.clone(),
            from: rs.state.spec_replicas,
            replicas: rs.state.spec_replicas,
            annotations: rs.annotations.clone(),
            min_ready_seconds: rs.min_ready_seconds,
        });
    }

    /// Beyond apps/v1 (opt-in `spec.autoRollback`): a rollout that exceeded
    /// its progress deadline is rolled back to the newest revision whose
    /// rollout once completed, other than the failed one. The failed
    /// revision stays in history.
    ///
    /// Only a revision that never completed is rolled back. That makes it
    /// happen once per failure and never oscillate: the revision restored
    /// has completed before (that is why it was chosen), so while it scales
    /// back up under the Progressing=False condition the failure left
    /// behind, with no pods yet and whatever the strategy, it is not rolled
    /// back in turn. A revision that once completed and later stalls (say,
    /// on a scale-up) is reported, not replaced.
    pub(super) fn auto_rollback(&mut self) {
        if !self.dl.spec.auto_rollback {
            return;
        }
        let Some(failed) = &self.new_rs else { return };
        if failed.annotations.contains_key(COMPLETED_ANNOTATION) {
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
            Some((revision, template, rs_annotations)) if !equal_ignore_hash(self.template, template) => {
                self.actions
                    .push(rollback_to_revision(template, &rs_annotations));
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
}

/// The rollback that puts a revision's template (without its hash label)
/// back into the spec, and with it the revision's annotations: the object
/// keeps only its bookkeeping annotations (those [`skip_copy_annotation`]
/// names, as they are when the rollback is written) and takes every other
/// one from the ReplicaSet (upstream's SetDeploymentAnnotationsTo), so the
/// change cause and the like travel with the revision.
pub(super) fn rollback_to_revision(
    template: &PodTemplateSpec,
    rs_annotations: &BTreeMap<String, String>,
) -> Action {
    let t = crate::controller::hash::without_hash_label(template);
    let annotations = rs_annotations
        .iter()
        .filter(|(k, _)| !skip_copy_annotation(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Action::Rollback {
        template: Some(Box::new(t)),
        annotations,
    }
}

/// The revision before the newest one (0 if there is none).
pub(super) fn last_revision(revisions: impl Iterator<Item = i64>) -> i64 {
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
