//! Flag values the way Kubernetes' Go tools read them, so a command line
//! that works for kubectl or a controller-runtime manager works here too.
//!
//! - Booleans follow pflag: `--flag` alone means true, `--flag=false` (or
//!   any value Go's `strconv.ParseBool` takes) sets it; `--flag false` is
//!   not a value but the next argument, as in pflag. Every boolean flag of
//!   the binaries and the plugin is declared with the same attributes:
//!   `num_args = 0..=1, require_equals = true, default_missing_value =
//!   "true", action = Set, value_parser = parse_bool`.
//! - Durations follow Go's `time.ParseDuration`: `500ms`, `1.5m`, `1h2m3s`.

use std::time::Duration;

/// Go's `strconv.ParseBool`: 1, t, T, TRUE, true, True, 0, f, F, FALSE,
/// false, False.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "invalid boolean {s:?}: use true or false (or 1, t, T, TRUE, True, 0, f, F, FALSE, False)"
        )),
    }
}

/// Nanoseconds per unit, as Go's `time` package names them.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go's `time.ParseDuration`, with its error texts: a sequence of decimal
/// numbers, each with an optional fraction and a unit (`ns`, `us`/`µs`,
/// `ms`, `s`, `m`, `h`); `0` alone needs no unit. Negative durations are
/// refused because no flag here has a meaning for them; the upper bound is
/// Go's (about 292 years).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let mut rest = s;
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    } else if rest.starts_with('-') {
        return Err(format!(
            "time: invalid duration {s:?}: must not be negative"
        ));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(n)
            }
            None => ("", after),
        };
        // Go accepts "1." and ".5" but not "." alone.
        if int.is_empty() && frac.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {s:?}"));
        }
        let per = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, n)| *n)
            .ok_or_else(|| format!("time: unknown unit {unit:?} in duration {s:?}"))?;
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| invalid())?
        };
        // The fraction's digits beyond nanosecond precision only round down,
        // as in Go; 30 digits keep the arithmetic inside u128.
        let frac = &frac[..frac.len().min(30)];
        let frac_ns = if frac.is_empty() {
            0
        } else {
            let digits: u128 = frac.parse().map_err(|_| invalid())?;
            digits * per / 10u128.pow(frac.len() as u32)
        };
        total = whole
            .checked_mul(per)
            .and_then(|n| n.checked_add(frac_ns))
            .and_then(|n| n.checked_add(total))
            .filter(|n| *n <= i64::MAX as u128)
            .ok_or_else(invalid)?;
        rest = after;
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Go's `Duration.String()` form for messages (`1m30s`, `500ms`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let (value, unit) = match ns {
            n if n < 1_000 => (n as f64, "ns"),
            n if n < 1_000_000 => (n as f64 / 1e3, "µs"),
            n => (n as f64 / 1e6, "ms"),
        };
        return format!("{value}{unit}");
    }
    let secs = d.as_secs();
    let (h, m) = (secs / 3600, secs / 60 % 60);
    let s = (secs % 60) as f64 + f64::from(d.subsec_nanos()) / 1e9;
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools_as_go_parses_them() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["", "yes", "no", "tRUE", "2", " true"] {
            let e = parse_bool(bad).unwrap_err();
            assert!(e.starts_with(&format!("invalid boolean {bad:?}")), "{e}");
        }
    }

    #[test]
    fn durations_as_go_parses_them() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("+5s", ms(5_000)),
            ("500ms", ms(500)),
            ("1.5m", ms(90_000)),
            ("1h2m3s", ms(3_723_000)),
            ("1m30s", ms(90_000)),
            ("2h", ms(7_200_000)),
            (".5s", ms(500)),
            ("1.s", ms(1_000)),
            ("1.25h", ms(4_500_000)),
            ("100us", Duration::from_micros(100)),
            ("100µs", Duration::from_micros(100)),
            ("100μs", Duration::from_micros(100)),
            ("7ns", Duration::from_nanos(7)),
            ("1s500ms", ms(1_500)),
            ("0.000000001s", Duration::from_nanos(1)),
            // Below nanosecond precision: rounded down, as in Go.
            ("1.0000000009s", Duration::from_secs(1)),
            ("2562047h", Duration::from_secs(2_562_047 * 3600)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn duration_errors_carry_gos_wording() {
        for (text, want) in [
            ("", r#"time: invalid duration """#),
            ("45", r#"time: missing unit in duration "45""#),
            ("1h30", r#"time: missing unit in duration "1h30""#),
            ("5x", r#"time: unknown unit "x" in duration "5x""#),
            ("5 s", r#"time: unknown unit " s" in duration "5 s""#),
            ("1d", r#"time: unknown unit "d" in duration "1d""#),
            ("s", r#"time: invalid duration "s""#),
            (".s", r#"time: invalid duration ".s""#),
            ("+", r#"time: invalid duration "+""#),
            (
                "-5s",
                r#"time: invalid duration "-5s": must not be negative"#,
            ),
            // Past Go's limit of 2^63-1 nanoseconds.
            ("2562048h", r#"time: invalid duration "2562048h""#),
            (
                "99999999999999999999999999999999999999999s",
                r#"time: invalid duration "99999999999999999999999999999999999999999s""#,
            ),
        ] {
            assert_eq!(parse_duration(text), Err(want.to_string()), "{text}");
        }
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        for (d, want) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3723), "1h2m3s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(1500), "1.5s"),
        ] {
            assert_eq!(format_duration(d), want);
        }
    }
}
