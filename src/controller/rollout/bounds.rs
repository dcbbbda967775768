//! Resolving a rolling update's bounds (docs/controller.md §3, "Resolving the
//! bounds"): maxSurge and maxUnavailable are absolute numbers or percentages
//! of `spec.replicas`, and together they fence how far a rollout may go above
//! and below the desired size.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The field paths named in [`BoundsError`]s, so a user sees which field to fix.
pub const MAX_SURGE_FIELD: &str = "spec.strategy.rollingUpdate.maxSurge";
pub const MAX_UNAVAILABLE_FIELD: &str = "spec.strategy.rollingUpdate.maxUnavailable";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BoundsError {
    #[error("invalid value for {field}: {value:?}: a percentage must be a number followed by '%'")]
    InvalidPercent { field: &'static str, value: String },
    #[error("invalid value for {field}: {value}: must not be negative")]
    Negative { field: &'static str, value: i64 },
}

/// An int-or-percent resolved against `total`.
///
/// Absent counts as 0: defaulting (25%) is the API type's business, and an
/// explicitly absent bound must not silently become something else here.
/// A string must be an integer followed by `%`, as upstream's
/// int-or-percent rule demands; anything else (including a bare number in a
/// string) is refused rather than guessed at. Percentages round up when
/// `round_up` (maxSurge: never surge less than asked) and down otherwise
/// (maxUnavailable: never take down more than asked).
pub fn scaled_value(
    v: Option<&IntOrString>,
    total: i32,
    round_up: bool,
    field: &'static str,
) -> Result<i32, BoundsError> {
    let percent = match v {
        None => return Ok(0),
        Some(IntOrString::Int(n)) if *n < 0 => {
            return Err(BoundsError::Negative {
                field,
                value: i64::from(*n),
            });
        }
        Some(IntOrString::Int(n)) => return Ok(*n),
        Some(IntOrString::String(s)) => {
            let invalid = || BoundsError::InvalidPercent {
                field,
                value: s.clone(),
            };
            let digits = s.strip_suffix('%').ok_or_else(invalid)?;
            digits.parse::<i64>().map_err(|_| invalid())?
        }
    };
    if percent < 0 {
        return Err(BoundsError::Negative {
            field,
            value: percent,
        });
    }
    // Integer arithmetic: exact where upstream's float ceil/floor is exact
    // for every input that fits, and immune to float rounding.
    let product = percent * i64::from(total);
    let scaled = if round_up {
        product.div_euclid(100) + i64::from(product.rem_euclid(100) != 0)
    } else {
        product.div_euclid(100)
    };
    Ok(clamp_i32(scaled))
}

/// (maxSurge, maxUnavailable) against `replicas`.
///
/// maxSurge rounds up and maxUnavailable down; if both come out 0 the rollout
/// could never make a move (nothing may be added, nothing removed), so
/// upstream lets one pod be unavailable. That also applies when `replicas` is
/// 0 or a percentage rounds down to 0.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    replicas: i32,
) -> Result<(i32, i32), BoundsError> {
    let surge = scaled_value(max_surge, replicas, true, MAX_SURGE_FIELD)?;
    let unavailable = scaled_value(max_unavailable, replicas, false, MAX_UNAVAILABLE_FIELD)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// The bounds one sync works with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub max_surge: i32,
    pub max_unavailable: i32,
}

/// The bounds of a DeploymentLite's strategy at `replicas`.
///
/// Recreate neither surges nor keeps anything available during the switch,
/// so both are 0 and the rolling-update parameters are not even read.
/// For RollingUpdate, maxUnavailable is capped at `replicas`: more pods than
/// exist cannot be unavailable, and the cap keeps minAvailable >= 0 (this is
/// also what makes the "both 0 -> 1" rule give 0 at 0 replicas).
pub fn bounds_for(
    strategy_is_recreate: bool,
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    replicas: i32,
) -> Result<Bounds, BoundsError> {
    if strategy_is_recreate {
        return Ok(Bounds {
            max_surge: 0,
            max_unavailable: 0,
        });
    }
    let (max_surge, max_unavailable) = resolve_fenceposts(max_surge, max_unavailable, replicas)?;
    Ok(Bounds {
        max_surge,
        max_unavailable: max_unavailable.min(replicas.max(0)),
    })
}

/// The number of available pods a rollout must keep: replicas - maxUnavailable.
///
/// With Recreate bounds this is `replicas`, which is the threshold of the
/// `Available` condition (docs/controller.md §7) for both strategies.
pub fn min_available(replicas: i32, bounds: &Bounds) -> i32 {
    (replicas - bounds.max_unavailable).max(0)
}

fn clamp_i32(v: i64) -> i32 {
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn int(n: i32) -> IntOrString {
        IntOrString::Int(n)
    }
    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.to_string())
    }

    // Row 35: resolve bounds.

    #[test]
    fn row_35_zero_percent_of_zero_resolves_to_0_1() {
        assert_eq!(
            resolve_fenceposts(Some(&pct("0%")), Some(&pct("0%")), 0),
            Ok((0, 1))
        );
    }

    #[test]
    fn row_35_39_percent_of_10_resolves_to_4_3() {
        assert_eq!(
            resolve_fenceposts(Some(&pct("39%")), Some(&pct("39%")), 10),
            Ok((4, 3))
        );
    }

    #[test]
    fn row_35_absent_absent_of_10_resolves_to_0_1() {
        assert_eq!(resolve_fenceposts(None, None, 10), Ok((0, 1)));
    }

    #[test]
    fn row_35_oops_is_an_error() {
        assert_eq!(
            resolve_fenceposts(Some(&pct("oops")), Some(&pct("39%")), 10),
            Err(BoundsError::InvalidPercent {
                field: MAX_SURGE_FIELD,
                value: "oops".into()
            })
        );
        assert_eq!(
            resolve_fenceposts(Some(&pct("39%")), Some(&pct("oops")), 10),
            Err(BoundsError::InvalidPercent {
                field: MAX_UNAVAILABLE_FIELD,
                value: "oops".into()
            })
        );
    }

    #[test]
    fn row_35_error_messages_name_the_field() {
        let err = resolve_fenceposts(Some(&pct("oops")), None, 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for spec.strategy.rollingUpdate.maxSurge: \"oops\": a percentage must be a number followed by '%'"
        );
        let err = resolve_fenceposts(None, Some(&int(-1)), 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for spec.strategy.rollingUpdate.maxUnavailable: -1: must not be negative"
        );
    }

    // Row 36: maxUnavailable and minAvailable. Upstream's table gives every
    // deployment maxSurge 1, so "both 0 -> 1" never kicks in there.

    fn max_unavailable(replicas: i32, unavailable: IntOrString) -> i32 {
        bounds_for(false, Some(&int(1)), Some(&unavailable), replicas)
            .unwrap()
            .max_unavailable
    }

    #[test]
    fn row_36_max_unavailable_10_at_5_replicas_is_capped_to_5() {
        assert_eq!(max_unavailable(5, int(10)), 5);
    }

    #[test]
    fn row_36_max_unavailable_5_at_10_replicas_is_5() {
        assert_eq!(max_unavailable(10, int(5)), 5);
    }

    #[test]
    fn row_36_max_unavailable_0_at_10_replicas_is_0() {
        assert_eq!(max_unavailable(10, int(0)), 0);
    }

    #[test]
    fn row_36_max_unavailable_10_at_0_replicas_is_0() {
        // The other reading of "0 at 10": upstream's "replicas is 0" case.
        assert_eq!(max_unavailable(0, int(10)), 0);
        // And with nothing to surge either, the "both 0 -> 1" pod is capped away.
        assert_eq!(
            bounds_for(false, None, None, 0).unwrap(),
            Bounds {
                max_surge: 0,
                max_unavailable: 0
            }
        );
    }

    #[test]
    fn row_36_recreate_has_no_surge_and_no_unavailable() {
        // Not even parsed: Recreate ignores rolling-update parameters.
        assert_eq!(
            bounds_for(true, Some(&pct("oops")), Some(&int(5)), 10),
            Ok(Bounds {
                max_surge: 0,
                max_unavailable: 0
            })
        );
    }

    #[test]
    fn row_36_min_available_of_10_at_60_percent_is_4() {
        let bounds = bounds_for(false, Some(&int(1)), Some(&pct("60%")), 10).unwrap();
        assert_eq!(min_available(10, &bounds), 4);
    }

    #[test]
    fn row_36_min_available_at_100_percent_is_0() {
        let bounds = bounds_for(false, Some(&int(1)), Some(&pct("100%")), 10).unwrap();
        assert_eq!(min_available(10, &bounds), 0);
        let bounds = bounds_for(false, Some(&int(1)), Some(&pct("100%")), 5).unwrap();
        assert_eq!(min_available(5, &bounds), 0);
    }

    #[test]
    fn default_25_percent_of_10_is_surge_3_unavailable_2() {
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 10),
            Ok((3, 2))
        );
    }

    #[test]
    fn scaled_value_rounds_and_validates() {
        let f = MAX_SURGE_FIELD;
        assert_eq!(scaled_value(None, 10, true, f), Ok(0));
        assert_eq!(scaled_value(Some(&int(7)), 10, true, f), Ok(7));
        assert_eq!(scaled_value(Some(&pct("150%")), 3, true, f), Ok(5));
        assert_eq!(scaled_value(Some(&pct("150%")), 3, false, f), Ok(4));
        assert_eq!(scaled_value(Some(&pct("1%")), 1, true, f), Ok(1));
        assert_eq!(scaled_value(Some(&pct("1%")), 1, false, f), Ok(0));
        assert_eq!(
            scaled_value(Some(&pct("-5%")), 10, true, f),
            Err(BoundsError::Negative {
                field: f,
                value: -5
            })
        );
        assert_eq!(
            scaled_value(Some(&int(-2)), 10, true, f),
            Err(BoundsError::Negative {
                field: f,
                value: -2
            })
        );
        for bad in ["5", "%", "5.5%", " 5%", "5%%", ""] {
            assert_eq!(
                scaled_value(Some(&pct(bad)), 10, true, f),
                Err(BoundsError::InvalidPercent {
                    field: f,
                    value: bad.into()
                }),
                "{bad:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn percentages_match_ceil_and_floor(p in 0i64..1000, total in 0i32..100_000) {
            let v = pct(&format!("{p}%"));
            let exact = p as f64 * f64::from(total) / 100.0;
            prop_assert_eq!(scaled_value(Some(&v), total, true, MAX_SURGE_FIELD).unwrap(), exact.ceil() as i32);
            prop_assert_eq!(scaled_value(Some(&v), total, false, MAX_SURGE_FIELD).unwrap(), exact.floor() as i32);
        }

        #[test]
        fn rolling_bounds_always_allow_progress_and_keep_min_available_in_range(
            surge in 0i32..200, unavailable in 0i32..200, replicas in 0i32..1000, surge_pct: bool, unav_pct: bool,
        ) {
            let surge = if surge_pct { pct(&format!("{surge}%")) } else { int(surge) };
            let unavailable = if unav_pct { pct(&format!("{}%", unavailable.min(100))) } else { int(unavailable) };
            let b = bounds_for(false, Some(&surge), Some(&unavailable), replicas).unwrap();
            prop_assert!(b.max_surge >= 0);
            prop_assert!((0..=replicas).contains(&b.max_unavailable));
            if replicas > 0 {
                prop_assert!(b.max_surge > 0 || b.max_unavailable > 0);
            }
            prop_assert!((0..=replicas).contains(&min_available(replicas, &b)));
        }
    }
}
