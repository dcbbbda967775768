//! Kubernetes resource quantities (`100m`, `1.5Gi`, `1e3`) read as integers.
//!
//! The scheduler only ever needs two readings of a quantity: CPU in
//! millicores and everything else as a whole number (bytes, pods, devices).
//! Both round up, as the API machinery's `MilliValue()` / `Value()` do, so a
//! request of `0.1m` still costs one millicore and can never be rounded away.

use thiserror::Error;

/// Why a quantity string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    #[error("empty quantity")]
    Empty,
    #[error("quantity {0:?} has no valid number")]
    InvalidNumber(String),
    #[error("quantity {0:?} has an unknown suffix")]
    InvalidSuffix(String),
}

/// CPU in millicores: `"100m"` -> 100, `"1"` -> 1000, `"0.5"` -> 500.
pub fn parse_cpu_millis(s: &str) -> Result<i64, QuantityError> {
    parse_scaled(s, 3)
}

/// A whole-number reading (bytes for memory, a count for pods and extended
/// resources): `"1Ki"` -> 1024, `"1k"` -> 1000, `"1e3"` -> 1000.
pub fn parse_bytes(s: &str) -> Result<i64, QuantityError> {
    parse_scaled(s, 0)
}

/// Parses `s` and returns `ceil(value * 10^scale_exp10)` (rounded away from
/// zero for negatives), saturating at the i64 range like the API's own
/// quantities do.
fn parse_scaled(s: &str, scale_exp10: i32) -> Result<i64, QuantityError> {
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let bytes = s.as_bytes();
    let mut pos = 0;
    let negative = match bytes[0] {
        b'-' => {
            pos = 1;
            true
        }
        b'+' => {
            pos = 1;
            false
        }
        _ => false,
    };

    // Mantissa: digits with at most one decimal point.
    let mut mantissa: i128 = 0;
    let mut frac_digits: i32 = 0;
    let mut digits = 0usize;
    let mut seen_point = false;
    // Digits beyond what i128 holds only shift the exponent (they cannot
    // change a result that is clamped to i64 anyway).
    let mut dropped_int_digits: i32 = 0;
    while pos < bytes.len() {
        let c = bytes[pos];
        if c.is_ascii_digit() {
            digits += 1;
            if mantissa < 10i128.pow(36) {
                mantissa = mantissa * 10 + i128::from(c - b'0');
                if seen_point {
                    frac_digits += 1;
                }
            } else if !seen_point {
                dropped_int_digits += 1;
            }
        } else if c == b'.' && !seen_point {
            seen_point = true;
        } else {
            break;
        }
        pos += 1;
    }
    if digits == 0 {
        return Err(QuantityError::InvalidNumber(s.to_string()));
    }

    let (exp10, exp2) = suffix_exponents(&s[pos..]).ok_or_else(|| {
        if s[pos..].starts_with('.') {
            QuantityError::InvalidNumber(s.to_string())
        } else {
            QuantityError::InvalidSuffix(s.to_string())
        }
    })?;

    let exp10 = exp10 + scale_exp10 - frac_digits + dropped_int_digits;
    let magnitude = scale(mantissa, exp10, exp2);
    let value = if negative { -magnitude } else { magnitude };
    Ok(value.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// The decimal and binary exponents a suffix stands for, or None if the
/// suffix is not one Kubernetes accepts.
fn suffix_exponents(suffix: &str) -> Option<(i32, u32)> {
    let known = match suffix {
        "" => Some((0, 0)),
        "n" => Some((-9, 0)),
        "u" => Some((-6, 0)),
        "m" => Some((-3, 0)),
        "k" => Some((3, 0)),
        "M" => Some((6, 0)),
        "G" => Some((9, 0)),
        "T" => Some((12, 0)),
        "P" => Some((15, 0)),
        "E" => Some((18, 0)),
        "Ki" => Some((0, 10)),
        "Mi" => Some((0, 20)),
        "Gi" => Some((0, 30)),
        "Ti" => Some((0, 40)),
        "Pi" => Some((0, 50)),
        "Ei" => Some((0, 60)),
        _ => None,
    };
    if known.is_some() {
        return known;
    }
    // Decimal exponent form: `1e3`, `5E-2`. A bare `E` is exa (handled above).
    let rest = suffix.strip_prefix(['e', 'E'])?;
    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 4 {
        return None;
    }
    let exp: i32 = rest.parse().ok()?;
    Some((exp, 0))
}

/// `ceil(mantissa * 10^exp10 * 2^exp2)` for a non-negative mantissa,
/// saturating on overflow.
fn scale(mantissa: i128, exp10: i32, exp2: u32) -> i128 {
    if mantissa == 0 {
        return 0;
    }
    let mut numerator = mantissa;
    for _ in 0..exp2 {
        numerator = match numerator.checked_mul(2) {
            Some(n) => n,
            None => return i128::MAX,
        };
    }
    if exp10 >= 0 {
        for _ in 0..exp10 {
            numerator = match numerator.checked_mul(10) {
                Some(n) => n,
                None => return i128::MAX,
            };
        }
        numerator
    } else {
        let shift = exp10.unsigned_abs();
        if shift > 38 {
            // Smaller than any unit we report but not zero: rounds up to 1.
            return 1;
        }
        let denominator = 10i128.pow(shift);
        let quotient = numerator / denominator;
        if numerator % denominator == 0 {
            quotient
        } else {
            quotient + 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_millis() {
        assert_eq!(parse_cpu_millis("100m"), Ok(100));
        assert_eq!(parse_cpu_millis("1"), Ok(1000));
        assert_eq!(parse_cpu_millis("0.5"), Ok(500));
        assert_eq!(parse_cpu_millis("1.5"), Ok(1500));
        assert_eq!(parse_cpu_millis(".5"), Ok(500));
        assert_eq!(parse_cpu_millis("2k"), Ok(2_000_000));
        assert_eq!(parse_cpu_millis("1e-3"), Ok(1));
        assert_eq!(parse_cpu_millis("0"), Ok(0));
        assert_eq!(parse_cpu_millis("0m"), Ok(0));
        assert_eq!(parse_cpu_millis("+4"), Ok(4000));
    }

    #[test]
    fn cpu_rounds_up_to_a_whole_millicore() {
        assert_eq!(parse_cpu_millis("0.1m"), Ok(1));
        assert_eq!(parse_cpu_millis("1001u"), Ok(2));
        assert_eq!(parse_cpu_millis("1n"), Ok(1));
        assert_eq!(parse_cpu_millis("0.0001"), Ok(1));
    }

    #[test]
    fn decimal_suffixes() {
        assert_eq!(parse_bytes("1k"), Ok(1_000));
        assert_eq!(parse_bytes("1M"), Ok(1_000_000));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("1T"), Ok(1_000_000_000_000));
        assert_eq!(parse_bytes("1P"), Ok(1_000_000_000_000_000));
        assert_eq!(parse_bytes("1E"), Ok(1_000_000_000_000_000_000));
        assert_eq!(parse_bytes("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("500m"), Ok(1), "half a byte rounds up");
        assert_eq!(parse_bytes("100n"), Ok(1));
    }

    #[test]
    fn binary_suffixes() {
        assert_eq!(parse_bytes("1Ki"), Ok(1024));
        assert_eq!(parse_bytes("1Mi"), Ok(1 << 20));
        assert_eq!(parse_bytes("200Mi"), Ok(200 << 20));
        assert_eq!(parse_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5Gi"), Ok(1_610_612_736));
        assert_eq!(parse_bytes("1Ti"), Ok(1 << 40));
        assert_eq!(parse_bytes("1Pi"), Ok(1 << 50));
        assert_eq!(parse_bytes("1Ei"), Ok(1 << 60));
        assert_eq!(parse_bytes("0.5Ki"), Ok(512));
    }

    #[test]
    fn exponents_and_plain_numbers() {
        assert_eq!(parse_bytes("1e3"), Ok(1000));
        assert_eq!(parse_bytes("5E3"), Ok(5000));
        assert_eq!(parse_bytes("1e+3"), Ok(1000));
        assert_eq!(parse_bytes("2.5e2"), Ok(250));
        assert_eq!(parse_bytes("1e-2"), Ok(1));
        assert_eq!(parse_bytes("123"), Ok(123));
        assert_eq!(parse_bytes("0.000"), Ok(0));
        assert_eq!(parse_bytes("-1"), Ok(-1));
        assert_eq!(parse_bytes("-1.5"), Ok(-2), "rounds away from zero");
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        assert_eq!(parse_bytes("8Ei"), Ok(i64::MAX));
        assert_eq!(parse_bytes("1e30"), Ok(i64::MAX));
        assert_eq!(
            parse_cpu_millis("99999999999999999999999999999999999999999999"),
            Ok(i64::MAX)
        );
        assert_eq!(parse_bytes("-9Ei"), Ok(i64::MIN));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse_bytes(""), Err(QuantityError::Empty));
        assert!(matches!(
            parse_bytes("abc"),
            Err(QuantityError::InvalidNumber(_))
        ));
        assert!(matches!(
            parse_bytes("-"),
            Err(QuantityError::InvalidNumber(_))
        ));
        assert!(matches!(
            parse_bytes("."),
            Err(QuantityError::InvalidNumber(_))
        ));
        assert!(matches!(
            parse_bytes("1.2.3"),
            Err(QuantityError::InvalidNumber(_))
        ));
        assert!(matches!(
            parse_bytes("1Qi"),
            Err(QuantityError::InvalidSuffix(_))
        ));
        assert!(matches!(
            parse_bytes("1 Gi"),
            Err(QuantityError::InvalidSuffix(_))
        ));
        assert!(matches!(
            parse_bytes("1e"),
            Err(QuantityError::InvalidSuffix(_))
        ));
        assert!(matches!(
            parse_bytes("1ki"),
            Err(QuantityError::InvalidSuffix(_))
        ));
        assert!(matches!(
            parse_bytes("1e3.5"),
            Err(QuantityError::InvalidSuffix(_))
        ));
    }
}
