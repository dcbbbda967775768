//! Status and the progress deadline (upstream progress.go and the status
//! half of sync.go): counters, Available, ReplicaFailure, Progressing and
//! when to look again.

use super::*;

impl<'a> Sync<'a> {
    /// Was the status as stored before this sync complete? (Cleanup runs
    /// only then, as upstream.)
    pub(super) fn stored_status_complete(&self) -> bool {
        let s = self.dl.status.clone().unwrap_or_default();
        rollout::progress::is_complete(
            self.replicas,
            s.updated_replicas,
            s.replicas,
            s.available_replicas,
            s.observed_generation.unwrap_or(0) >= self.dl.metadata.generation.unwrap_or(0),
        )
    }

    /// docs/controller.md §7: counts and the Available condition.
    pub(super) fn calculate_status(&mut self) {
        let all: Vec<RsState> = self.all_states();
        let spec_total: i32 = all.iter().map(|r| r.spec_replicas).sum();
        let terminating = terminating_replicas(self.all().filter_map(|r| r.obj));
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
        s.terminating_replicas = terminating;
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
    pub(super) fn sync_replica_failure(&mut self) {
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
            None => rollout::progress::remove_condition(
                &mut self.status.conditions,
                reason::REPLICA_FAILURE,
            ),
        }
    }

    /// Status for syncs that do not move the rollout (paused, scaling,
    /// rollback, deletion): Progressing is left as it is.
    pub(super) fn finish_status_only(mut self) -> Plan {
        self.calculate_status();
        let requeue_after = self.requeue_after();
        Plan {
            actions: coalesce_rs_writes(self.actions),
            status: self.status,
            requeue_after,
        }
    }

    /// docs/controller.md §7 and §10: status plus the Progressing condition and the
    /// progress deadline.
    pub(super) fn finish_rollout_status(mut self) -> Plan {
        let previous = self.dl.status.clone().unwrap_or_default();
        self.calculate_status();
        if !self.has_progress_deadline() {
            rollout::progress::remove_condition(&mut self.status.conditions, reason::PROGRESSING);
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
                let complete = rollout::progress::is_complete(
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
                        completed_message(&what),
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
                    rollout::progress::remove_condition(
                        &mut self.status.conditions,
                        reason::PROGRESSING,
                    );
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

    pub(super) fn timed_out(&self, progressing: Option<&DeploymentCondition>) -> bool {
        let Some(c) = progressing else { return false };
        match c.reason.as_deref() {
            Some(reason::NEW_RS_AVAILABLE) => false,
            Some(reason::TIMED_OUT) => true,
            _ => c.last_update_time.as_ref().is_some_and(|t| {
                rollout::progress::timed_out(
                    self.dl.spec.progress_deadline_seconds,
                    from_time(t),
                    self.now,
                )
            }),
        }
    }

    /// Requeue when the progress deadline would pass, so it is reported on
    /// time without polling (docs/controller.md §10: at that moment, plus one second).
    pub(super) fn requeue_after(&self) -> Option<Duration> {
        if self.dl.spec.paused || !self.has_progress_deadline() {
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
        let after = rollout::progress::requeue_after(
            self.dl.spec.progress_deadline_seconds,
            last,
            self.now,
        )?;
        Some(after + Duration::from_secs(1))
    }
}

/// The sum of the ReplicaSets' terminating pods, as upstream 1.36 counts
/// it: a ReplicaSet its controller never synced (observedGeneration 0) and
/// that reports nothing adds nothing; one that was synced but reports
/// nothing makes the sum unknown.
pub(super) fn terminating_replicas<'r>(rses: impl Iterator<Item = &'r ReplicaSet>) -> Option<i32> {
    let mut sum = 0;
    for rs in rses {
        let status = rs.status.as_ref();
        let observed = status.and_then(|s| s.observed_generation).unwrap_or(0);
        match status.and_then(|s| s.terminating_replicas) {
            Some(n) => sum += n,
            None if observed == 0 => {}
            None => return None,
        }
    }
    Some(sum)
}

/// The Progressing message of a completed rollout; `what` names the new
/// ReplicaSet (or the object, when there is none).
pub(super) fn completed_message(what: &str) -> String {
    format!("{what} has successfully progressed.")
}

/// A rollout made progress when more pods are updated, fewer old ones
/// remain, or more are ready or available than the stored status says.
pub(super) fn made_progress(old: &DeploymentLiteStatus, new: &DeploymentLiteStatus) -> bool {
    new.updated_replicas > old.updated_replicas
        || (new.replicas - new.updated_replicas) < (old.replicas - old.updated_replicas)
        || new.ready_replicas > old.ready_replicas
        || new.available_replicas > old.available_replicas
}
