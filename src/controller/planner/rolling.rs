//! The RollingUpdate strategy (upstream rolling.go): scale the new
//! ReplicaSet up within maxSurge, then the old ones down within
//! maxUnavailable.

use super::*;

impl<'a> Sync<'a> {
    /// docs/controller.md §3.
    pub(super) fn rollout_rolling(mut self) -> Plan {
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

    pub(super) fn reconcile_new_rs(&mut self) -> bool {
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
            rollout::rolling::new_rs_new_replicas(
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

    pub(super) fn reconcile_old_rses(&mut self) -> bool {
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
        let writes = rollout::rolling::reconcile_old_replica_sets(
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
}
