//! Proportional scaling (docs/controller.md §8): when `spec.replicas` changes in
//! the middle of a rollout (or while paused), the change is spread over the
//! active ReplicaSets in proportion to their size, so the rollout carries on
//! from the same relative position instead of restarting.
//!
//! Each ReplicaSet remembers the size of the DeploymentLite it was last
//! scaled for in its `max-replicas` annotation (replicas + maxSurge at that
//! time); its share of the new size is its size scaled by
//! new allowed / old allowed.

use super::{RsState, by_creation, spec_sum};

/// Whether `rs` (the new ReplicaSet) has finished the rollout at `replicas`:
/// it wants, was last scaled for, and has available exactly `replicas` pods.
///
/// Every condition matters: spec alone can be reached before any pod runs,
/// and the `desired-replicas` annotation shows the size was chosen for this
/// very `spec.replicas`, not an earlier one. Missing annotation: not
/// saturated.
pub fn is_saturated(replicas: i32, rs: &RsState) -> bool {
    rs.spec_replicas == replicas
        && rs.desired_replicas == Some(replicas)
        && rs.available_replicas == replicas
}

#[cfg(test)]
/// How many replicas `rs` should gain (positive) or lose (negative) when its
/// DeploymentLite now allows `replicas + max_surge` pods, with the
/// ReplicaSet's own status.replicas standing in when it lacks a
/// `max-replicas` annotation. [`scale`] uses [`replica_set_fraction_of`]
/// with the DeploymentLite's status.replicas instead, as upstream does.
pub fn replica_set_fraction(rs: &RsState, replicas: i32, max_surge: i32) -> i32 {
    replica_set_fraction_of(rs, replicas, max_surge, rs.status_replicas)
}

/// The proportional share rule: round-half-away-from-zero(spec * allowed /
/// maxAnnotation) - spec, where allowed = replicas + maxSurge and
/// maxAnnotation is the `max-replicas` annotation.
///
/// - Scaling to 0 takes everything: -spec.
/// - Without the annotation (or with a 0 in it, e.g. removed or mangled by
///   a third party) the previous total is unknown; `fallback_total` (the
///   DeploymentLite's status.replicas) stands in, and if that is 0 too the
///   ReplicaSet gets no share at all rather than a wild guess.
pub fn replica_set_fraction_of(
    rs: &RsState,
    replicas: i32,
    max_surge: i32,
    fallback_total: i32,
) -> i32 {
    if replicas == 0 {
        return -rs.spec_replicas;
    }
    let allowed = i64::from(replicas) + i64::from(max_surge);
    let before = match rs.max_replicas {
        Some(max) if max > 0 => max,
        _ => fallback_total,
    };
    if before <= 0 {
        return 0;
    }
    let new_size =
        div_round_half_away_from_zero(i64::from(rs.spec_replicas) * allowed, i64::from(before));
    clamp_i32(new_size - i64::from(rs.spec_replicas))
}

/// The proportion `rs` actually gets: its fraction, but never more than is
/// still left to hand out (`deployment_replicas_to_add -
/// deployment_replicas_added`), in the direction of the scaling.
///
/// An empty ReplicaSet gets nothing: proportional scaling never brings a
/// ReplicaSet back from zero (that is the rollout's job), and with nothing
/// left to distribute nobody gets anything. `max_surge` and
/// `deployment_status_replicas` (the fallback of
/// [`replica_set_fraction_of`]) are needed for the fraction.
pub fn get_proportion(
    rs: &RsState,
    desired_replicas: i32,
    deployment_replicas_to_add: i32,
    deployment_replicas_added: i32,
    max_surge: i32,
    deployment_status_replicas: i32,
) -> i32 {
    if rs.spec_replicas == 0
        || deployment_replicas_to_add == 0
        || deployment_replicas_to_add == deployment_replicas_added
    {
        return 0;
    }
    let fraction =
        replica_set_fraction_of(rs, desired_replicas, max_surge, deployment_status_replicas);
    let remaining = deployment_replicas_to_add - deployment_replicas_added;
    if deployment_replicas_to_add > 0 {
        fraction.min(remaining)
    } else {
        fraction.max(remaining)
    }
}

/// The whole scaling step of docs/controller.md §8. Returns the spec size of every
/// ReplicaSet to write.
///
/// `old_rses` are all old ReplicaSets, active or not; `new_rs` is absent
/// while paused before a new template got its ReplicaSet.
///
/// 1. At most one active ReplicaSet: it takes all of `replicas` (with none
///    active, the new one, else the newest old one). Nothing is written when
///    it is already there, unless its `desired-replicas` annotation is stale:
///    a stale annotation makes every sync a scaling event, and only a write
///    (which refreshes the annotations) ends that. Upstream writes nothing in
///    that case; DeploymentLite refreshes rather than stalling the rollout.
/// 2. A saturated new ReplicaSet (e.g. after adopting old ones): the old
///    active ReplicaSets go to 0.
/// 3. RollingUpdate only: every active ReplicaSet gets its proportion of
///    toAdd = allowed - sum(spec), largest first; among equals newer first
///    when adding (the rollout is heading there) and older first when
///    removing (they were going away anyway). Rounding leftovers go to the
///    first, floored at 0. Every active ReplicaSet is returned, changed or
///    not, so its annotations are rewritten for the new size. Recreate has
///    no case 3: its old and new ReplicaSets are never active together
///    except while it is switching, and then the old ones are going to 0.
pub fn scale(
    replicas: i32,
    max_surge: i32,
    is_rolling_update: bool,
    new_rs: Option<&RsState>,
    old_rses: &[RsState],
) -> Vec<(String, i32)> {
    if let Some(target) = active_or_latest(new_rs, old_rses) {
        let stale = target
            .desired_replicas
            .is_some_and(|desired| desired != replicas);
        if target.spec_replicas != replicas || (target.is_active() && stale) {
            return vec![(target.name.clone(), replicas)];
        }
        return Vec::new();
    }

    let mut old_active: Vec<&RsState> = old_rses.iter().filter(|rs| rs.is_active()).collect();
    old_active.sort_by(|a, b| by_creation(a, b));

    if new_rs.is_some_and(|rs| is_saturated(replicas, rs)) {
        return old_active.iter().map(|rs| (rs.name.clone(), 0)).collect();
    }

    if !is_rolling_update {
        return Vec::new();
    }

    let mut active: Vec<&RsState> = old_active
        .into_iter()
        .chain(new_rs.filter(|rs| rs.is_active()))
        .collect();
    // The DeploymentLite's status.replicas is the sum of its ReplicaSets'
    // (docs/controller.md §7); it is the fraction's fallback for a missing annotation.
    let status_replicas: i32 = old_rses
        .iter()
        .chain(new_rs)
        .map(|rs| rs.status_replicas)
        .sum();
    let allowed = if replicas > 0 {
        replicas.saturating_add(max_surge)
    } else {
        0
    };
    let to_add = allowed - spec_sum(active.iter().copied());

    if to_add > 0 {
        active.sort_by(|a, b| {
            b.spec_replicas
                .cmp(&a.spec_replicas)
                .then_with(|| by_creation(b, a))
        });
    } else {
        active.sort_by(|a, b| {
            b.spec_replicas
                .cmp(&a.spec_replicas)
                .then_with(|| by_creation(a, b))
        });
    }

    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = active
        .iter()
        .map(|rs| {
            let proportion =
                get_proportion(rs, replicas, to_add, added, max_surge, status_replicas);
            added += proportion;
            (rs.name.clone(), rs.spec_replicas + proportion)
        })
        .collect();
    if to_add != 0
        && let Some((_, size)) = sizes.first_mut()
    {
        *size = (*size + to_add - added).max(0);
    }
    sizes
}

/// Case 1's target: the only active ReplicaSet, or, with none active, the
/// new one or else the newest old one. `None` when several are active.
fn active_or_latest<'a>(
    new_rs: Option<&'a RsState>,
    old_rses: &'a [RsState],
) -> Option<&'a RsState> {
    let mut active = old_rses.iter().chain(new_rs).filter(|rs| rs.is_active());
    match (active.next(), active.next()) {
        (Some(only), None) => Some(only),
        (Some(_), Some(_)) => None,
        (None, _) => new_rs.or_else(|| old_rses.iter().max_by(|a, b| by_creation(a, b))),
    }
}

/// n / d rounded to the nearest integer, halves away from zero (as Go's
/// math.Round, which upstream applies to the share), exactly.
fn div_round_half_away_from_zero(n: i64, d: i64) -> i64 {
    let (n, d) = if d < 0 { (-n, -d) } else { (n, d) };
    let magnitude = (2 * n.abs() + d) / (2 * d);
    if n < 0 { -magnitude } else { magnitude }
}

fn clamp_i32(v: i64) -> i32 {
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{rs, size_of};
    use super::*;
    use proptest::prelude::*;

    /// Upstream's scaling scenarios: every ReplicaSet was last scaled for the
    /// previous size `from` (with `from_surge`), i.e. carries desired = from
    /// and max = from + from_surge; ReplicaSets are named v1 (oldest) to v3.
    fn scaled_for(rs: RsState, from: i32, from_surge: i32) -> RsState {
        rs.with_annotations(from, from + from_surge)
    }

    struct Case {
        to: i32,
        surge: i32,
        new: Option<RsState>,
        old: Vec<RsState>,
    }

    impl Case {
        fn run(&self) -> Vec<(String, i32)> {
            scale(self.to, self.surge, true, self.new.as_ref(), &self.old)
        }
    }

    /// A DeploymentLite scaled from `from` to `to` (surge `(before, after)`) with a new
    /// ReplicaSet v3 of size `new` and old ones named v2 / v1, created at minutes 3, 2, 1.
    fn case(from: i32, to: i32, surge: (i32, i32), new: Option<i32>, old: &[(&str, i32)]) -> Case {
        let minute = |name: &str| i64::from(name.as_bytes()[1] - b'0');
        Case {
            to,
            surge: surge.1,
            new: new.map(|n| scaled_for(rs("v3", 3, n), from, surge.0)),
            old: old
                .iter()
                .map(|(name, n)| scaled_for(rs(name, minute(name), *n), from, surge.0))
                .collect(),
        }
    }

    #[test]
    fn row_16_scaling_event_10_to_12_new_to_12() {
        let plan = case(10, 12, (0, 0), Some(10), &[]).run();
        assert_eq!(plan, vec![("v3".into(), 12)]);
    }

    #[test]
    fn row_16_scaling_event_10_to_5_new_to_5() {
        let plan = case(10, 5, (0, 0), Some(10), &[]).run();
        assert_eq!(plan, vec![("v3".into(), 5)]);
    }

    #[test]
    fn row_17_5_to_10_new_4_old_6() {
        let plan = case(5, 10, (0, 0), Some(2), &[("v1", 3)]).run();
        assert_eq!(
            (size_of(&plan, "v3"), size_of(&plan, "v1")),
            (Some(4), Some(6))
        );
    }

    #[test]
    fn row_18_5_to_3_new_1_old_2() {
        let plan = case(5, 3, (0, 0), Some(2), &[("v1", 3)]).run();
        assert_eq!(
            (size_of(&plan, "v3"), size_of(&plan, "v1")),
            (Some(1), Some(2))
        );
    }

    #[test]
    fn row_19_9_to_4_new_4_old_0() {
        let plan = case(9, 4, (0, 0), Some(8), &[("v1", 1)]).run();
        assert_eq!(
            (size_of(&plan, "v3"), size_of(&plan, "v1")),
            (Some(4), Some(0))
        );
    }

    #[test]
    fn row_20_7_to_10_three_rses_3_4_3() {
        let plan = case(7, 10, (0, 0), Some(2), &[("v2", 3), ("v1", 2)]).run();
        assert_eq!(
            (
                size_of(&plan, "v3"),
                size_of(&plan, "v2"),
                size_of(&plan, "v1")
            ),
            (Some(3), Some(4), Some(3))
        );
    }

    #[test]
    fn row_21_13_to_8_three_rses_1_5_2() {
        let plan = case(13, 8, (0, 0), Some(2), &[("v2", 8), ("v1", 3)]).run();
        assert_eq!(
            (
                size_of(&plan, "v3"),
                size_of(&plan, "v2"),
                size_of(&plan, "v1")
            ),
            (Some(1), Some(5), Some(2))
        );
    }

    #[test]
    fn row_22_3_to_4_leftover_goes_to_newest() {
        let plan = case(3, 4, (0, 0), Some(1), &[("v2", 1), ("v1", 1)]).run();
        assert_eq!(
            (
                size_of(&plan, "v3"),
                size_of(&plan, "v2"),
                size_of(&plan, "v1")
            ),
            (Some(2), Some(1), Some(1))
        );
    }

    #[test]
    fn row_23_3_to_2_leftover_taken_from_oldest() {
        let plan = case(3, 2, (0, 0), Some(1), &[("v2", 1), ("v1", 1)]).run();
        assert_eq!(
            (
                size_of(&plan, "v3"),
                size_of(&plan, "v2"),
                size_of(&plan, "v1")
            ),
            (Some(1), Some(1), Some(0))
        );
    }

    #[test]
    fn row_24_4_to_5_without_new_rs_newest_old_gets_it() {
        let plan = case(4, 5, (0, 0), None, &[("v2", 2), ("v1", 2)]).run();
        assert_eq!(
            (size_of(&plan, "v2"), size_of(&plan, "v1")),
            (Some(3), Some(2))
        );
    }

    #[test]
    fn row_25_6_to_0_all_to_0() {
        let plan = case(6, 0, (0, 0), Some(3), &[("v2", 2), ("v1", 1)]).run();
        assert_eq!(
            (
                size_of(&plan, "v3"),
                size_of(&plan, "v2"),
                size_of(&plan, "v1")
            ),
            (Some(0), Some(0), Some(0))
        );
    }

    #[test]
    fn row_26_0_to_6_new_gets_6_old_untouched() {
        let plan = case(6, 6, (0, 0), Some(0), &[("v2", 0), ("v1", 0)]).run();
        assert_eq!(plan, vec![("v3".into(), 6)]);
    }

    #[test]
    fn row_27_10_to_20_surge_2_both_to_11() {
        let plan = case(10, 20, (2, 2), Some(6), &[("v1", 6)]).run();
        assert_eq!(
            (size_of(&plan, "v3"), size_of(&plan, "v1")),
            (Some(11), Some(11))
        );
    }

    #[test]
    fn row_28_10_surge_3_to_50_surge_6_new_22_old_34() {
        let plan = case(10, 50, (3, 6), Some(5), &[("v1", 8)]).run();
        assert_eq!(
            (size_of(&plan, "v3"), size_of(&plan, "v1")),
            (Some(22), Some(34))
        );
    }

    #[test]
    fn row_29_saturated_but_broken_new_rs_leaves_sizes_unchanged() {
        let mut c = case(2, 2, (1, 1), Some(2), &[("v1", 1)]);
        c.new = c.new.map(|rs| rs.with_available(0));
        let plan = c.run();
        // Written (annotations refresh), but with the sizes they had.
        assert_eq!(plan, vec![("v3".into(), 2), ("v1".into(), 1)]);
    }

    #[test]
    fn row_30_10_to_15_surge_3_old_11_new_7() {
        let plan = case(10, 15, (3, 3), Some(5), &[("v1", 8)]).run();
        assert_eq!(
            (size_of(&plan, "v3"), size_of(&plan, "v1")),
            (Some(7), Some(11))
        );
    }

    #[test]
    fn change_both_size_and_template_without_new_rs() {
        // Upstream's companion of row 24: 10 -> 14, no new ReplicaSet yet.
        let plan = case(10, 14, (0, 0), None, &[("v2", 7), ("v1", 3)]).run();
        assert_eq!(
            (size_of(&plan, "v2"), size_of(&plan, "v1")),
            (Some(10), Some(4))
        );
    }

    #[test]
    fn case_1_writes_nothing_when_the_only_rs_is_already_there() {
        assert_eq!(case(10, 10, (0, 0), Some(10), &[("v1", 0)]).run(), vec![]);
        assert_eq!(scale(3, 0, true, None, &[]), vec![]);
    }

    #[test]
    fn case_1_refreshes_a_stale_desired_annotation() {
        // spec already 10, but last scaled "for 8": without a write every
        // sync would be a scaling event again.
        let new = scaled_for(rs("v3", 3, 10), 8, 0);
        assert_eq!(scale(10, 0, true, Some(&new), &[]), vec![("v3".into(), 10)]);
    }

    #[test]
    fn case_1_without_new_rs_and_none_active_picks_the_newest_old() {
        let old = [rs("v1", 1, 0), rs("v2", 2, 0)];
        assert_eq!(scale(4, 0, true, None, &old), vec![("v2".into(), 4)]);
    }

    #[test]
    fn case_2_saturated_new_rs_scales_old_active_to_0() {
        let new = scaled_for(rs("v3", 3, 5), 5, 1);
        let old = [rs("v2", 2, 2), rs("v1", 1, 0)];
        assert!(is_saturated(5, &new));
        assert_eq!(scale(5, 1, true, Some(&new), &old), vec![("v2".into(), 0)]);
    }

    #[test]
    fn recreate_has_no_proportional_case() {
        let c = case(5, 10, (0, 0), Some(2), &[("v1", 3)]);
        assert_eq!(scale(c.to, 0, false, c.new.as_ref(), &c.old), vec![]);
    }

    #[test]
    fn missing_annotation_falls_back_to_the_deployment_status_replicas() {
        // Upstream's rule: 5 -> 10, v1 lost its annotation; the
        // DeploymentLite had 5 pods (status 2 + 3), so v1's share is
        // 3 * 10 / 5 - 3 = 3, not 3 * 10 / 3 - 3 = 7.
        let new = scaled_for(rs("v3", 3, 2), 5, 0);
        let old = [rs("v1", 1, 3)];
        let plan = scale(10, 0, true, Some(&new), &old);
        assert_eq!(
            (size_of(&plan, "v3"), size_of(&plan, "v1")),
            (Some(4), Some(6))
        );
    }

    #[test]
    fn is_saturated_needs_spec_annotation_and_availability() {
        let rs5 = scaled_for(rs("v3", 3, 5), 5, 0);
        assert!(is_saturated(5, &rs5));
        assert!(!is_saturated(6, &rs5));
        assert!(!is_saturated(5, &rs5.clone().with_available(4)));
        assert!(!is_saturated(5, &rs("v3", 3, 5)));
        assert!(!is_saturated(5, &scaled_for(rs("v3", 3, 5), 4, 0)));
    }

    // Row 38: the fraction alone.

    fn fraction_rs(spec: i32, max: Option<i32>, status: i32) -> RsState {
        RsState {
            max_replicas: max,
            ..rs("rs", 0, spec).with_status_replicas(status)
        }
    }

    #[test]
    fn row_38_scaling_to_zero_takes_everything() {
        assert_eq!(replica_set_fraction(&fraction_rs(10, None, 10), 0, 0), -10);
    }

    #[test]
    fn row_38_d120_rs50_max100_gains_10() {
        assert_eq!(
            replica_set_fraction(&fraction_rs(50, Some(100), 50), 120, 0),
            10
        );
    }

    #[test]
    fn row_38_d120_surge10_rs50_max110_gains_9() {
        assert_eq!(
            replica_set_fraction(&fraction_rs(50, Some(110), 50), 120, 10),
            9
        );
    }

    #[test]
    fn row_38_d10_rs6_max12_loses_1() {
        assert_eq!(
            replica_set_fraction(&fraction_rs(6, Some(12), 6), 10, 0),
            -1
        );
    }

    #[test]
    fn row_38_d100_surge10_rs50_max130_loses_8() {
        assert_eq!(
            replica_set_fraction(&fraction_rs(50, Some(130), 50), 100, 10),
            -8
        );
    }

    #[test]
    fn row_38_no_annotation_and_status_0_is_0() {
        assert_eq!(replica_set_fraction(&fraction_rs(5, None, 0), 10, 0), 0);
        // An annotation mangled to 0 counts as missing.
        assert_eq!(replica_set_fraction(&fraction_rs(5, Some(0), 0), 10, 0), 0);
    }

    #[test]
    fn row_38_missing_annotation_uses_the_fallback_total() {
        // Upstream: d120, status 100, rs50, no (or 0) annotation -> +10.
        assert_eq!(
            replica_set_fraction_of(&fraction_rs(50, None, 50), 120, 0, 100),
            10
        );
        assert_eq!(
            replica_set_fraction_of(&fraction_rs(50, Some(0), 50), 120, 0, 100),
            10
        );
    }

    #[test]
    fn get_proportion_is_capped_by_what_is_left() {
        let r = fraction_rs(50, Some(100), 50);
        assert_eq!(get_proportion(&r, 120, 20, 0, 0, 100), 10);
        assert_eq!(get_proportion(&r, 120, 20, 15, 0, 100), 5);
        assert_eq!(get_proportion(&r, 120, 20, 20, 0, 100), 0);
        assert_eq!(get_proportion(&r, 80, -20, -15, 0, 100), -5);
        assert_eq!(get_proportion(&r, 120, 0, 0, 0, 100), 0);
        assert_eq!(
            get_proportion(&fraction_rs(0, Some(100), 0), 120, 20, 0, 0, 100),
            0
        );
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(div_round_half_away_from_zero(5, 2), 3);
        assert_eq!(div_round_half_away_from_zero(-5, 2), -3);
        assert_eq!(div_round_half_away_from_zero(7, 3), 2);
        assert_eq!(div_round_half_away_from_zero(8, 3), 3);
        assert_eq!(div_round_half_away_from_zero(-8, 3), -3);
        assert_eq!(div_round_half_away_from_zero(0, 3), 0);
    }

    fn arb_annotated(name: &'static str, minute: i64) -> impl Strategy<Value = RsState> {
        (0i32..40, proptest::option::of(0i32..60), 0i32..40).prop_map(move |(spec, max, status)| {
            RsState {
                max_replicas: max,
                desired_replicas: max,
                ..rs(name, minute, spec).with_status_replicas(status)
            }
        })
    }

    proptest! {
        #[test]
        fn proportional_scaling_hands_out_exactly_the_difference(
            replicas in 0i32..60,
            surge in 0i32..10,
            new in arb_annotated("v3", 3),
            v2 in arb_annotated("v2", 2),
            v1 in arb_annotated("v1", 1),
        ) {
            let old = [v2, v1];
            let active: Vec<&RsState> = old.iter().chain([&new]).filter(|rs| rs.is_active()).collect();
            prop_assume!(active.len() >= 2 && !is_saturated(replicas, &new));
            let plan = scale(replicas, surge, true, Some(&new), &old);
            // Every active ReplicaSet and nothing else is written.
            prop_assert_eq!(plan.len(), active.len());
            prop_assert!(active.iter().all(|rs| size_of(&plan, &rs.name).is_some()));
            prop_assert!(plan.iter().all(|(_, size)| *size >= 0));
            let allowed = if replicas > 0 { replicas + surge } else { 0 };
            let total: i32 = plan.iter().map(|(_, size)| size).sum();
            // The total lands on allowed unless the leftover would have made
            // the first ReplicaSet negative.
            prop_assert!(total == allowed || plan[0].1 == 0, "total {} allowed {} plan {:?}", total, allowed, plan);
        }
    }
}
