//! Rollout progress (docs/controller.md §7 and §10): when a rollout is complete,
//! when it has missed its progress deadline, and the bookkeeping of the
//! `Available` / `Progressing` / `ReplicaFailure` conditions.

use k8s_openapi::api::apps::v1::DeploymentCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Whether the rollout is complete: every desired pod is updated and
/// available, there are no other pods left, and the status describes the
/// current generation. This is what makes `Progressing` say
/// `NewReplicaSetAvailable` and what gates history cleanup.
///
/// `total` is status.replicas: as long as old pods exist the rollout is not
/// done, even with enough new pods available.
pub fn is_complete(
    replicas: i32,
    updated: i32,
    total: i32,
    available: i32,
    observed_generation_current: bool,
) -> bool {
    updated == replicas && total == replicas && available == replicas && observed_generation_current
}

/// Whether the progress deadline has passed: `Progressing`'s lastUpdateTime
/// + deadline lies strictly before `now`.
///
/// No deadline, or the largest i32 (upstream's way of saying "never"), never
/// times out. The caller deals with the condition's reason (a complete or
/// already timed-out rollout needs no check) and with pause (docs/controller.md §6: the
/// clock does not run while paused).
pub fn timed_out(
    progress_deadline_seconds: Option<i32>,
    progressing_last_update: Timestamp,
    now: Timestamp,
) -> bool {
    match deadline(progress_deadline_seconds, progressing_last_update) {
        Some(at) => at < now,
        None => false,
    }
}

/// How long until the progress deadline passes, so the reconciler can come
/// back exactly then (it adds 1 s so that [`timed_out`]'s strict comparison
/// holds). `Some(ZERO)` once it has passed; `None` without a deadline.
///
/// Upstream requeues at the deadline instead of waiting for the next resync,
/// because a stuck rollout produces no events that would wake the
/// controller.
pub fn requeue_after(
    progress_deadline_seconds: Option<i32>,
    progressing_last_update: Timestamp,
    now: Timestamp,
) -> Option<std::time::Duration> {
    let at = deadline(progress_deadline_seconds, progressing_last_update)?;
    // Negative (the deadline has passed) does not convert: requeue now.
    Some(std::time::Duration::try_from(at.duration_since(now)).unwrap_or(std::time::Duration::ZERO))
}

fn deadline(progress_deadline_seconds: Option<i32>, last_update: Timestamp) -> Option<Timestamp> {
    match progress_deadline_seconds {
        None | Some(i32::MAX) => None,
        Some(seconds) => last_update
            .checked_add(SignedDuration::from_secs(i64::from(seconds)))
            .ok(),
    }
}

/// A condition as of `now`: both timestamps set to `now`.
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_update_time: Some(to_time(now)),
        last_transition_time: Some(to_time(now)),
    }
}

pub fn get_condition<'a>(
    conds: &'a [DeploymentCondition],
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// Sets `new` in `conds` with the apps/v1 timestamp rule:
/// - same status and same reason: nothing changes, not even the message or
///   lastUpdateTime (so a sync that finds nothing new writes nothing new,
///   and the progress deadline keeps counting from the last real progress);
/// - same status, new reason: it is progress of a kind, so lastUpdateTime
///   and the message are new, but lastTransitionTime stays;
/// - new status: both timestamps are new.
///
/// The condition keeps its place in the list (upstream moves it to the end),
/// so that status patches do not churn on order alone.
pub fn set_condition(conds: &mut Vec<DeploymentCondition>, mut new: DeploymentCondition) {
    match conds.iter_mut().find(|c| c.type_ == new.type_) {
        Some(current) if current.status == new.status && current.reason == new.reason => {}
        Some(current) => {
            if current.status == new.status {
                new.last_transition_time = current.last_transition_time.clone();
            }
            *current = new;
        }
        None => conds.push(new),
    }
}

pub fn remove_condition(conds: &mut Vec<DeploymentCondition>, type_: &str) {
    conds.retain(|c| c.type_ != type_);
}

/// A Timestamp as the API's Time (k8s-openapi 0.29 wraps a jiff Timestamp,
/// the one time type this crate uses).
pub fn to_time(t: Timestamp) -> Time {
    Time(t)
}

/// The API's Time as a Timestamp.
pub fn from_time(t: &Time) -> Timestamp {
    t.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    // Row 39: complete? (desired, current = status.replicas, updated, available).

    fn complete(desired: i32, current: i32, updated: i32, available: i32) -> bool {
        is_complete(desired, updated, current, available, true)
    }

    #[test]
    fn row_39_5_5_5_4_is_not_complete() {
        assert!(!complete(5, 5, 5, 4));
    }

    #[test]
    fn row_39_5_5_5_5_is_complete() {
        assert!(complete(5, 5, 5, 5));
    }

    #[test]
    fn row_39_5_5_4_5_is_not_complete() {
        assert!(!complete(5, 5, 4, 5));
    }

    #[test]
    fn row_39_1_2_1_1_is_not_complete() {
        assert!(!complete(1, 2, 1, 1));
    }

    #[test]
    fn row_39_a_stale_observed_generation_is_not_complete() {
        assert!(!is_complete(5, 5, 5, 5, false));
    }

    // Row 40: the deadline. Upstream's clock: 00:01:09 etc. on one day.

    fn t(min: i8, sec: i8) -> Timestamp {
        k8s_openapi::jiff::civil::date(2016, 1, 1)
            .at(0, min, sec, 0)
            .to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC)
            .unwrap()
            .timestamp()
    }

    #[test]
    fn row_40_deadline_10s_last_update_01_09_now_01_20_timed_out() {
        assert!(timed_out(Some(10), t(1, 9), t(1, 20)));
    }

    #[test]
    fn row_40_deadline_10s_not_timed_out_yet() {
        // now 01:11 after a last update at 01:09 ...
        assert!(!timed_out(Some(10), t(1, 9), t(1, 11)));
        // ... and upstream's own case: last update 01:11, now 01:20 (9 s).
        assert!(!timed_out(Some(10), t(1, 11), t(1, 20)));
    }

    #[test]
    fn row_40_deadline_is_strict() {
        assert!(!timed_out(Some(10), t(1, 10), t(1, 20)));
        assert!(timed_out(
            Some(10),
            t(1, 10),
            t(1, 20) + SignedDuration::from_nanos(1)
        ));
    }

    #[test]
    fn row_40_no_deadline_or_infinite_never_times_out() {
        assert!(!timed_out(None, t(1, 9), t(1, 20)));
        assert!(!timed_out(Some(i32::MAX), t(1, 9), t(1, 20)));
        assert_eq!(requeue_after(None, t(1, 9), t(1, 20)), None);
        assert_eq!(requeue_after(Some(i32::MAX), t(1, 9), t(1, 20)), None);
    }

    #[test]
    fn row_40_deadline_60s_last_18_49_now_plus_30s_requeues_in_30s() {
        let last: Timestamp = "2016-09-28T18:49:00Z".parse().unwrap();
        let now = last + SignedDuration::from_secs(30);
        assert_eq!(
            requeue_after(Some(60), last, now),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn row_40_past_the_deadline_requeues_now() {
        assert_eq!(
            requeue_after(Some(10), t(1, 9), t(1, 20)),
            Some(Duration::ZERO)
        );
    }

    // docs/controller.md §7: condition timestamps.

    fn at(sec: i8) -> Timestamp {
        t(2, sec)
    }

    #[test]
    fn set_condition_same_status_same_reason_changes_nothing() {
        let mut conds = vec![new_condition(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            "first".into(),
            at(0),
        )];
        let before = conds.clone();
        set_condition(
            &mut conds,
            new_condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                "second".into(),
                at(5),
            ),
        );
        assert_eq!(conds, before);
    }

    #[test]
    fn set_condition_same_status_new_reason_keeps_transition_time() {
        let mut conds = vec![new_condition(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            "a".into(),
            at(0),
        )];
        set_condition(
            &mut conds,
            new_condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                "b".into(),
                at(5),
            ),
        );
        let c = get_condition(&conds, "Progressing").unwrap();
        assert_eq!(c.reason.as_deref(), Some("NewReplicaSetAvailable"));
        assert_eq!(c.message.as_deref(), Some("b"));
        assert_eq!(c.last_update_time, Some(to_time(at(5))));
        assert_eq!(c.last_transition_time, Some(to_time(at(0))));
    }

    #[test]
    fn set_condition_status_change_renews_both_times_in_place() {
        let mut conds = vec![
            new_condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "ok".into(),
                at(0),
            ),
            new_condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                "a".into(),
                at(0),
            ),
        ];
        set_condition(
            &mut conds,
            new_condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "no".into(),
                at(7),
            ),
        );
        assert_eq!(conds[0].status, "False");
        assert_eq!(conds[0].last_update_time, Some(to_time(at(7))));
        assert_eq!(conds[0].last_transition_time, Some(to_time(at(7))));
        assert_eq!(conds[1].type_, "Progressing");
    }

    #[test]
    fn set_get_and_remove_condition() {
        let mut conds = Vec::new();
        assert!(get_condition(&conds, "ReplicaFailure").is_none());
        set_condition(
            &mut conds,
            new_condition(
                "ReplicaFailure",
                "True",
                "FailedCreate",
                "quota".into(),
                at(1),
            ),
        );
        assert_eq!(
            get_condition(&conds, "ReplicaFailure")
                .unwrap()
                .reason
                .as_deref(),
            Some("FailedCreate")
        );
        remove_condition(&mut conds, "ReplicaFailure");
        assert!(conds.is_empty());
        remove_condition(&mut conds, "ReplicaFailure");
        assert!(conds.is_empty());
    }

    #[test]
    fn api_time_keeps_nanoseconds_and_serializes_as_rfc3339_seconds() {
        let when: Timestamp = "2016-09-28T18:49:00.123456789Z".parse().unwrap();
        let time = to_time(when);
        assert_eq!(from_time(&time), when);
        assert_eq!(
            serde_json::to_string(&time).unwrap(),
            "\"2016-09-28T18:49:00Z\""
        );
    }

    proptest! {
        #[test]
        fn requeue_lands_on_the_deadline(deadline in 1i32..100_000, elapsed in 0i64..200_000) {
            let last = t(0, 0);
            let now = last + SignedDuration::from_secs(elapsed);
            let after = requeue_after(Some(deadline), last, now).unwrap();
            // Just past the requeue moment the deadline has passed; at it, not yet.
            let wake = now + SignedDuration::try_from(after).unwrap();
            prop_assert!(!timed_out(Some(deadline), last, wake) || after.is_zero());
            prop_assert!(timed_out(Some(deadline), last, wake + SignedDuration::from_secs(1)));
        }
    }
}
