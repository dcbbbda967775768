//! The RollingUpdate strategy's arithmetic (docs/controller.md §3): how far the new
//! ReplicaSet may grow, and how far the old ones may shrink, without leaving
//! the band [replicas - maxUnavailable, replicas + maxSurge].
//!
//! The sizes returned are decisions only; the reconciler writes them, each
//! with the resourceVersion the decision was based on.

use super::{RsState, available_sum, by_creation, spec_sum};

/// The new ReplicaSet's next spec.replicas.
///
/// `all_rses` includes `new_rs`. Upstream's rule: a new ReplicaSet at or
/// above `replicas` is simply set to `replicas` (it may have been scaled
/// past it by a scaling event that shrank the DeploymentLite). Below that it
/// may grow only into the room the surge leaves: with
/// maxTotal = replicas + maxSurge and current = the pods all ReplicaSets
/// want, it grows by min(maxTotal - current, replicas - new); when there is
/// no room it keeps its size.
pub fn new_rs_new_replicas(
    replicas: i32,
    max_surge: i32,
    all_rses: &[RsState],
    new_rs: &RsState,
) -> i32 {
    if new_rs.spec_replicas >= replicas {
        return replicas;
    }
    let max_total = replicas.saturating_add(max_surge);
    let current = spec_sum(all_rses);
    if current >= max_total {
        return new_rs.spec_replicas;
    }
    let scale_up = (max_total - current).min(replicas - new_rs.spec_replicas);
    new_rs.spec_replicas + scale_up
}

/// Step 2 of the old-ReplicaSet scale-down: drop pods that are not available
/// anyway, oldest ReplicaSet first, at most `max_cleanup` in total.
///
/// Removing an unavailable pod never lowers availability, which is why this
/// runs before the healthy scale-down and why its budget is the room left
/// by step 1 rather than the availability margin. A ReplicaSet that reports
/// as many (or more) available pods than it wants has nothing unhealthy to
/// drop. Returns the changed ReplicaSets with their new size, and the total.
pub fn cleanup_unhealthy_replicas(
    old_rses: &[RsState],
    max_cleanup: i32,
) -> (Vec<(String, i32)>, i32) {
    let mut changes = Vec::new();
    let mut total_scaled_down = 0;
    for rs in oldest_first(old_rses) {
        if total_scaled_down >= max_cleanup {
            break;
        }
        let unhealthy = rs.spec_replicas - rs.available_replicas;
        if rs.spec_replicas == 0 || unhealthy <= 0 {
            continue;
        }
        let scaled_down = unhealthy.min(max_cleanup - total_scaled_down);
        changes.push((rs.name.clone(), rs.spec_replicas - scaled_down));
        total_scaled_down += scaled_down;
    }
    (changes, total_scaled_down)
}

/// Step 3 of the old-ReplicaSet scale-down: take healthy pods away, oldest
/// ReplicaSet first, as long as the available pods stay at or above
/// minAvailable = replicas - maxUnavailable.
///
/// `old_rses` carry their sizes after step 2; `all_rses` are only counted for
/// their available pods, as read before step 2 (step 2 removed only
/// unavailable pods, so the count still holds). The budget is
/// available - minAvailable: each pod taken away costs at most one
/// available pod. Returns the changed ReplicaSets with their new size, and
/// the total.
pub fn scale_down_old_replica_sets_for_rolling_update(
    all_rses: &[RsState],
    old_rses: &[RsState],
    replicas: i32,
    max_unavailable: i32,
) -> (Vec<(String, i32)>, i32) {
    let min_available = replicas - max_unavailable;
    // Capped per ReplicaSet at its spec (see available_sum): a scaling
    // event followed by this step could otherwise take every old pod away,
    // below minAvailable.
    let available = available_sum(all_rses);
    if available <= min_available {
        return (Vec::new(), 0);
    }
    let total_scale_down = available - min_available;
    let mut changes = Vec::new();
    let mut total_scaled_down = 0;
    for rs in oldest_first(old_rses) {
        if total_scaled_down >= total_scale_down {
            break;
        }
        if rs.spec_replicas <= 0 {
            continue;
        }
        let scale_down = rs.spec_replicas.min(total_scale_down - total_scaled_down);
        changes.push((rs.name.clone(), rs.spec_replicas - scale_down));
        total_scaled_down += scale_down;
    }
    (changes, total_scaled_down)
}

/// The whole old-ReplicaSet scale-down of one RollingUpdate sync (docs/controller.md §3,
/// steps 1-3). Returns the final size of every old ReplicaSet whose spec
/// changes, oldest first.
///
/// `max_unavailable` is the resolved, capped value (see
/// [`super::bounds::bounds_for`]). `all_rses` is every ReplicaSet of the
/// DeploymentLite (new included); only active old ReplicaSets are touched.
///
/// Step 1 bounds the whole step: pods may only go away while
/// sum(spec) - minAvailable exceeds the new ReplicaSet's not-yet-available
/// pods. Those pods are counted as if they might never become available, so
/// a new ReplicaSet that cannot start (bad image, no capacity) does not drag
/// the old ones down with it.
pub fn reconcile_old_replica_sets(
    replicas: i32,
    max_unavailable: i32,
    all_rses: &[RsState],
    old_rses: &[RsState],
    new_rs: Option<&RsState>,
) -> Vec<(String, i32)> {
    let mut active_old: Vec<RsState> = old_rses
        .iter()
        .filter(|rs| rs.is_active())
        .cloned()
        .collect();
    if active_old.is_empty() {
        return Vec::new();
    }
    active_old.sort_by(by_creation);

    // Step 1.
    let min_available = replicas - max_unavailable;
    let new_rs_unavailable = new_rs.map_or(0, |rs| rs.spec_replicas - rs.available_replicas);
    let max_scaled_down = spec_sum(all_rses) - min_available - new_rs_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }

    // Step 2.
    let (cleaned, _) = cleanup_unhealthy_replicas(&active_old, max_scaled_down);
    let after_cleanup: Vec<RsState> = active_old
        .iter()
        .map(|rs| {
            let mut rs = rs.clone();
            if let Some((_, size)) = cleaned.iter().find(|(name, _)| *name == rs.name) {
                rs.spec_replicas = *size;
            }
            rs
        })
        .collect();

    // Step 3. Upstream counts the available pods of the active old
    // ReplicaSets and the new one only: pods of an old ReplicaSet already
    // scaled to 0 are on their way out and must not pay for more scale-down.
    //
    // Each ReplicaSet's available pods count only up to its size. A
    // ReplicaSet just scaled down still reports its old availability until
    // its controller has deleted the excess pods and written its status
    // again; counting those pods, which are going, let the next sync scale
    // down again on their account (seen after an API server outage, when
    // statuses lag: 13 Ready pods for a minimum of 15). Upstream counts the
    // stale figure; with fresh statuses the two agree.
    let counted: Vec<RsState> = active_old
        .iter()
        .chain(new_rs)
        .cloned()
        .map(|mut rs| {
            rs.available_replicas = rs.available_replicas.min(rs.spec_replicas);
            rs
        })
        .collect();
    let (scaled, _) = scale_down_old_replica_sets_for_rolling_update(
        &counted,
        &after_cleanup,
        replicas,
        max_unavailable,
    );

    after_cleanup
        .iter()
        .zip(&active_old)
        .filter_map(|(after, before)| {
            let size = scaled
                .iter()
                .find(|(name, _)| *name == after.name)
                .map_or(after.spec_replicas, |(_, size)| *size);
            (size != before.spec_replicas).then(|| (after.name.clone(), size))
        })
        .collect()
}

fn oldest_first(rses: &[RsState]) -> Vec<&RsState> {
    let mut sorted: Vec<&RsState> = rses.iter().collect();
    sorted.sort_by(|a, b| by_creation(a, b));
    sorted
}

#[cfg(test)]
mod tests {
    use super::super::bounds::bounds_for;
    use super::super::fixture::{rs, size_of};
    use super::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use proptest::prelude::*;

    // Rows 1-5: the new ReplicaSet's size, maxUnavailable 0.

    fn new_size(replicas: i32, max_surge: i32, old: i32, new: i32) -> i32 {
        let old = rs("foo-v1", 0, old);
        let new = rs("foo-v2", 1, new);
        new_rs_new_replicas(replicas, max_surge, &[old, new.clone()], &new)
    }

    #[test]
    fn row_01_no_surge_room_no_scale() {
        assert_eq!(new_size(10, 0, 10, 0), 0);
    }

    #[test]
    fn row_02_surge_2_scales_new_to_2() {
        assert_eq!(new_size(10, 2, 10, 0), 2);
    }

    #[test]
    fn row_03_surge_2_with_old_at_5_scales_new_to_7() {
        assert_eq!(new_size(10, 2, 5, 0), 7);
    }

    #[test]
    fn row_04_surge_used_up_no_scale() {
        assert_eq!(new_size(10, 2, 10, 2), 2);
    }

    #[test]
    fn row_05_new_above_replicas_scales_down_to_10() {
        assert_eq!(new_size(10, 2, 2, 11), 10);
    }

    #[test]
    fn new_rs_never_grows_past_replicas() {
        // Plenty of surge room, but the new ReplicaSet alone is capped at replicas.
        assert_eq!(new_size(3, 10, 0, 1), 3);
        assert_eq!(new_size(3, 10, 0, 3), 3);
    }

    // Rows 7-11: the old ReplicaSets' scale-down, one old and one new
    // ReplicaSet; "avail" is the old ReplicaSet's available pods.

    fn old_size(
        replicas: i32,
        max_unavailable: i32,
        old: (i32, i32),
        new: (i32, i32),
    ) -> Option<i32> {
        let old = rs("foo-v1", 0, old.0).with_available(old.1);
        let new = rs("foo-v2", 1, new.0).with_available(new.1);
        let plan = reconcile_old_replica_sets(
            replicas,
            max_unavailable,
            &[old.clone(), new.clone()],
            &[old],
            Some(&new),
        );
        assert!(plan.len() <= 1);
        size_of(&plan, "foo-v1")
    }

    #[test]
    fn row_07_unav_zero_resolves_to_one_and_old_goes_to_9() {
        let zero = IntOrString::Int(0);
        let bounds = bounds_for(false, Some(&zero), Some(&zero), 10).unwrap();
        assert_eq!(bounds.max_unavailable, 1);
        assert_eq!(
            old_size(10, bounds.max_unavailable, (10, 10), (0, 0)),
            Some(9)
        );
    }

    #[test]
    fn row_08_unav_2_all_available_old_goes_to_8() {
        assert_eq!(old_size(10, 2, (10, 10), (0, 0)), Some(8));
    }

    #[test]
    fn row_09_unav_2_two_unhealthy_removed_old_goes_to_8() {
        assert_eq!(old_size(10, 2, (10, 8), (0, 0)), Some(8));
        // Both pods went in step 2; step 3 had no margin left.
        let old = rs("foo-v1", 0, 10).with_available(8);
        assert_eq!(
            cleanup_unhealthy_replicas(std::slice::from_ref(&old), 2),
            (vec![("foo-v1".into(), 8)], 2)
        );
        assert_eq!(
            scale_down_old_replica_sets_for_rolling_update(
                std::slice::from_ref(&old),
                &[rs("foo-v1", 0, 8)],
                10,
                2
            ),
            (vec![], 0)
        );
    }

    #[test]
    fn row_10_unav_2_one_unhealthy_one_healthy_old_goes_to_8() {
        assert_eq!(old_size(10, 2, (10, 9), (0, 0)), Some(8));
        // One unhealthy pod in step 2, then one healthy pod in step 3.
        let old = rs("foo-v1", 0, 10).with_available(9);
        assert_eq!(
            cleanup_unhealthy_replicas(std::slice::from_ref(&old), 2),
            (vec![("foo-v1".into(), 9)], 1)
        );
        assert_eq!(
            scale_down_old_replica_sets_for_rolling_update(
                &[old],
                &[rs("foo-v1", 0, 9).with_available(9)],
                10,
                2
            ),
            (vec![("foo-v1".into(), 8)], 1)
        );
    }

    #[test]
    fn row_11_unavailable_new_pods_block_scale_down() {
        assert_eq!(old_size(10, 2, (8, 8), (2, 0)), None);
    }

    // Row 12: the unhealthy clean-up alone, old 10 with 8 available.

    #[test]
    fn row_12_cleanup_unhealthy_budget_1_removes_1() {
        let old = rs("foo-v1", 0, 10).with_available(8);
        assert_eq!(
            cleanup_unhealthy_replicas(&[old], 1),
            (vec![("foo-v1".into(), 9)], 1)
        );
    }

    #[test]
    fn row_12_cleanup_unhealthy_budget_3_removes_2() {
        let old = rs("foo-v1", 0, 10).with_available(8);
        assert_eq!(
            cleanup_unhealthy_replicas(&[old], 3),
            (vec![("foo-v1".into(), 8)], 2)
        );
    }

    #[test]
    fn row_12_cleanup_unhealthy_budget_0_removes_0() {
        let old = rs("foo-v1", 0, 10).with_available(8);
        assert_eq!(cleanup_unhealthy_replicas(&[old], 0), (vec![], 0));
    }

    #[test]
    fn row_12_cleanup_unhealthy_all_healthy_removes_0() {
        let old = rs("foo-v1", 0, 10);
        assert_eq!(cleanup_unhealthy_replicas(&[old], 3), (vec![], 0));
    }

    #[test]
    fn cleanup_unhealthy_goes_oldest_first_and_skips_inactive_and_overreporting() {
        let old = [
            rs("c", 3, 5).with_available(2),
            rs("b", 2, 0).with_available(0),
            rs("a", 1, 4).with_available(1),
            rs("z", 0, 2).with_available(3), // reports more available than wanted
        ];
        assert_eq!(
            cleanup_unhealthy_replicas(&old, 4),
            (vec![("a".into(), 1), ("c".into(), 4)], 4)
        );
    }

    #[test]
    fn healthy_scale_down_goes_oldest_first_and_spreads_over_several() {
        let old = [rs("v2", 2, 3), rs("v1", 1, 2)];
        let new = rs("v3", 3, 5);
        let all = [old[0].clone(), old[1].clone(), new];
        // available 10, min 6: 4 pods may go, v1 (oldest) loses both, v2 two.
        assert_eq!(
            scale_down_old_replica_sets_for_rolling_update(&all, &old, 8, 2),
            (vec![("v1".into(), 0), ("v2".into(), 1)], 4)
        );
    }

    #[test]
    fn inactive_old_replica_sets_are_neither_touched_nor_counted() {
        // foo-v0 is at 0 but still reports available pods (terminating):
        // they must not buy scale-down of foo-v1.
        let gone = rs("foo-v0", 0, 0).with_available(5);
        let old = rs("foo-v1", 1, 10);
        let new = rs("foo-v2", 2, 0);
        let all = [gone.clone(), old.clone(), new.clone()];
        assert_eq!(
            reconcile_old_replica_sets(10, 2, &all, &[gone, old], Some(&new)),
            vec![("foo-v1".into(), 8)]
        );
    }

    #[test]
    fn without_a_new_rs_old_ones_still_respect_min_available() {
        let old = [rs("v1", 0, 6), rs("v2", 1, 6)];
        assert_eq!(
            reconcile_old_replica_sets(10, 1, &old, &old, None),
            vec![("v1".into(), 3)]
        );
    }

    // Property tests over random ReplicaSet sets. Available pods never
    // exceed spec here: a ReplicaSet controller counts only pods it keeps.

    fn arb_rs(name: String, minute: i64) -> impl Strategy<Value = RsState> {
        (0i32..30).prop_flat_map(move |spec| {
            let name = name.clone();
            (0..=spec).prop_map(move |available| rs(&name, minute, spec).with_available(available))
        })
    }

    fn arb_scenario() -> impl Strategy<Value = (i32, i32, i32, Vec<RsState>, RsState)> {
        (
            0i32..60,
            0i32..20,
            0i32..60,
            proptest::collection::vec(any::<u8>(), 0..5),
        )
            .prop_flat_map(|(replicas, surge, unavailable, olds)| {
                let unavailable = unavailable.min(replicas);
                let unavailable = if surge == 0 && unavailable == 0 {
                    1.min(replicas)
                } else {
                    unavailable
                };
                let old: Vec<_> = olds
                    .iter()
                    .enumerate()
                    .map(|(i, m)| arb_rs(format!("old-{i}"), i64::from(*m)))
                    .collect();
                (
                    Just(replicas),
                    Just(surge),
                    Just(unavailable),
                    old,
                    arb_rs("new".into(), 1000),
                )
            })
    }

    proptest! {
        #[test]
        fn new_rs_stays_within_max_surge((replicas, surge, _unav, old, new) in arb_scenario()) {
            let mut all = old.clone();
            all.push(new.clone());
            let before = spec_sum(&all);
            let size = new_rs_new_replicas(replicas, surge, &all, &new);
            let after = before - new.spec_replicas + size;
            if before <= replicas + surge {
                prop_assert!(after <= replicas + surge, "{} -> {} > {}", before, after, replicas + surge);
            }
            prop_assert!(size >= 0 && size <= new.spec_replicas.max(replicas));
        }

        #[test]
        fn old_scale_down_keeps_min_available((replicas, _surge, unavailable, old, new) in arb_scenario()) {
            let mut all = old.clone();
            all.push(new.clone());
            let min_available = replicas - unavailable;
            let before = available_sum(&all);
            let plan = reconcile_old_replica_sets(replicas, unavailable, &all, &old, Some(&new));
            let after: i32 = all
                .iter()
                .map(|rs| size_of(&plan, &rs.name).map_or(rs.available_replicas, |size| rs.available_replicas.min(size)))
                .sum();
            if before >= min_available {
                prop_assert!(after >= min_available, "{} -> {} < {}: {:?}", before, after, min_available, plan);
            } else {
                prop_assert_eq!(after, before, "below minAvailable only unavailable pods may go");
            }
            for (name, size) in &plan {
                let rs = old.iter().find(|rs| &rs.name == name).unwrap();
                prop_assert!(rs.is_active() && *size >= 0 && *size < rs.spec_replicas);
            }
        }
    }
}
