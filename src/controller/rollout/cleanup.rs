//! History cleanup (docs/controller.md §9): old ReplicaSets are the revision history
//! that rollbacks go back to; `revisionHistoryLimit` says how many to keep.

use super::{RsState, by_creation};

/// The names of the old ReplicaSets to delete, oldest revision first.
///
/// No limit set: keep everything. Otherwise, of the old ReplicaSets not
/// already being deleted, the `count - limit` lowest revisions (ties by
/// creationTimestamp, then name) are candidates, and each is deleted only if
/// it is really empty: spec 0, no pods left (status.replicas 0), and a
/// status that has caught up with its spec (observedGeneration >=
/// generation), so a scale-down the ReplicaSet controller has not yet acted
/// on does not count as empty. A candidate that is not empty is skipped, not
/// replaced by the next one: the history only shrinks from its old end.
pub fn history_to_delete(old_rses: &[RsState], revision_history_limit: Option<i32>) -> Vec<String> {
    let Some(limit) = revision_history_limit else {
        return Vec::new();
    };
    let mut cleanable: Vec<&RsState> = old_rses.iter().filter(|rs| !rs.deleting).collect();
    // A negative limit is refused by validation; read it as 0.
    let diff = cleanable
        .len()
        .saturating_sub(usize::try_from(limit).unwrap_or(0));
    if diff == 0 {
        return Vec::new();
    }
    cleanable.sort_by(|a, b| a.revision.cmp(&b.revision).then_with(|| by_creation(a, b)));
    cleanable
        .into_iter()
        .take(diff)
        .filter(|rs| {
            rs.spec_replicas == 0
                && rs.status_replicas == 0
                && rs.observed_generation >= rs.generation
        })
        .map(|rs| rs.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixture::rs;
    use super::*;

    /// An old ReplicaSet with `spec` wanted and `status` existing pods.
    fn old_rs(name: &str, minute: i64, spec: i32, status: i32) -> RsState {
        rs(name, minute, spec)
            .with_status_replicas(status)
            .with_available(status.min(spec))
    }

    #[test]
    fn row_31_three_empty_limit_1_deletes_2() {
        let old = [
            old_rs("foo-1", 1, 0, 0),
            old_rs("foo-2", 2, 0, 0),
            old_rs("foo-3", 3, 0, 0),
        ];
        assert_eq!(history_to_delete(&old, Some(1)), vec!["foo-1", "foo-2"]);
    }

    #[test]
    fn row_32_only_the_fully_empty_one_is_deleted() {
        let old = [
            old_rs("foo-1", 1, 0, 0),
            old_rs("foo-2", 2, 0, 1),
            old_rs("foo-3", 3, 1, 0),
            old_rs("foo-4", 4, 1, 1),
        ];
        assert_eq!(history_to_delete(&old, Some(0)), vec!["foo-1"]);
    }

    #[test]
    fn row_33_lowest_revisions_go_first() {
        let old = [
            old_rs("rev-3", 1, 0, 0).with_revision(3),
            old_rs("rev-1", 2, 0, 0).with_revision(1),
            old_rs("rev-4", 3, 0, 0).with_revision(4),
            old_rs("rev-2", 4, 0, 0).with_revision(2),
        ];
        assert_eq!(history_to_delete(&old, Some(2)), vec!["rev-1", "rev-2"]);
    }

    #[test]
    fn row_34_a_busy_candidate_is_skipped_not_replaced() {
        let old = [
            old_rs("rev-1", 1, 1, 1).with_revision(1),
            old_rs("rev-2", 2, 0, 0).with_revision(2),
            old_rs("rev-3", 3, 0, 0).with_revision(3),
        ];
        assert_eq!(history_to_delete(&old, Some(1)), vec!["rev-2"]);
    }

    #[test]
    fn no_limit_keeps_everything() {
        let old = [
            old_rs("foo-1", 1, 0, 0),
            old_rs("foo-2", 2, 0, 0),
            old_rs("foo-3", 3, 0, 0),
        ];
        assert_eq!(history_to_delete(&old, None), Vec::<String>::new());
        assert_eq!(
            history_to_delete(&old, Some(i32::MAX)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn limit_0_deletes_every_empty_one() {
        let old = [old_rs("foo-1", 1, 0, 0), old_rs("foo-2", 2, 0, 0)];
        assert_eq!(history_to_delete(&old, Some(0)), vec!["foo-1", "foo-2"]);
        let busy = [old_rs("foo-1", 1, 1, 1), old_rs("foo-2", 2, 1, 1)];
        assert_eq!(history_to_delete(&busy, Some(0)), Vec::<String>::new());
    }

    #[test]
    fn replica_sets_being_deleted_are_not_counted_or_deleted_again() {
        let gone = RsState {
            deleting: true,
            ..old_rs("foo-1", 1, 0, 0)
        };
        assert_eq!(
            history_to_delete(std::slice::from_ref(&gone), Some(0)),
            Vec::<String>::new()
        );
        // foo-1 does not count against the limit of 1: foo-2 stays.
        assert_eq!(
            history_to_delete(&[gone, old_rs("foo-2", 2, 0, 0)], Some(1)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_unobserved_scale_down_is_not_empty_yet() {
        let stale = RsState {
            generation: 2,
            observed_generation: 1,
            ..old_rs("foo-1", 1, 0, 0)
        };
        assert_eq!(history_to_delete(&[stale], Some(0)), Vec::<String>::new());
    }

    #[test]
    fn equal_revisions_go_by_creation_time() {
        let old = [
            old_rs("b", 1, 0, 0).with_revision(1),
            old_rs("a", 2, 0, 0).with_revision(1),
        ];
        assert_eq!(history_to_delete(&old, Some(1)), vec!["b"]);
    }
}
