//! The Recreate strategy (upstream recreate.go): every old pod gone before
//! the new ReplicaSet is scaled up.

use super::*;

impl<'a> Sync<'a> {
    /// docs/controller.md §4.
    pub(super) fn rollout_recreate(mut self) -> Plan {
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
    pub(super) fn old_pods_running(&self) -> bool {
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
}
