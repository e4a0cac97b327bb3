//! The one duration syntax of the configuration and the rules: one or more numbers, each with
//! a unit (`d`, `h`, `m`, `s`, `ms`), each unit at most once and largest first: `"72h"`,
//! `"7d"`, `"1h30m"`, `"250ms"`. Empty, negative, unit-less and unknown-unit durations are
//! refused, and so are spaces, fractions and upper-case units.

use std::time::Duration;

const SHAPE: &str =
    "a duration is numbers with units d, h, m, s or ms, such as \"72h\", \"7d\", \"1h30m\" or \"250ms\"";

/// Parses a duration; see the module documentation.
pub fn parse(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err(format!("the duration is empty; {SHAPE}"));
    }
    if text.starts_with('-') {
        return Err(format!("{text:?} is negative; {SHAPE}"));
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    let mut previous_rank: Option<u8> = None;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("{text:?} is not a duration; {SHAPE}"));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let (rank, millis) = match unit {
            "d" => (0, 86_400_000),
            "h" => (1, 3_600_000),
            "m" => (2, 60_000),
            "s" => (3, 1_000),
            "ms" => (4, 1),
            "" if after.is_empty() => return Err(format!("{text:?}: {number} has no unit; {SHAPE}")),
            "" => return Err(format!("{text:?} is not a duration; {SHAPE}")),
            other => return Err(format!("{text:?}: unknown unit {other:?}; {SHAPE}")),
        };
        if previous_rank.is_some_and(|previous| rank <= previous) {
            return Err(format!(
                "{text:?}: write each unit once, largest first (such as \"1d12h\")"
            ));
        }
        previous_rank = Some(rank);
        total_ms = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(millis))
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("{text:?} is too long"))?;
        rest = after;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Parses a duration of whole seconds (the deletion rules count in seconds).
pub fn parse_seconds(text: &str) -> Result<u64, String> {
    let duration = parse(text)?;
    if duration.subsec_nanos() != 0 {
        return Err(format!("{text:?}: use whole seconds here"));
    }
    Ok(duration.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let secs = |s: &str| parse_seconds(s);
        assert_eq!(secs("72h"), Ok(72 * 3600));
        assert_eq!(secs("30m"), Ok(1800));
        assert_eq!(secs("7d"), Ok(7 * 86_400));
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("1d2h3m4s"), Ok(86_400 + 7200 + 180 + 4));
        assert_eq!(secs("0s"), Ok(0));
        assert_eq!(secs("007m"), Ok(420));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1s500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        for (bad, why) in [
            ("", "empty"),
            ("72", "has no unit"),
            ("h", "not a duration"),
            ("-5m", "negative"),
            ("5w", "unknown unit \"w\""),
            ("1H", "unknown unit \"H\""),
            ("5 fortnights", "not a duration"),
            ("1h 30m", "not a duration"),
            (" 1h", "not a duration"),
            ("1.5h", "not a duration"),
            ("30m1h", "largest first"),
            ("1h1h", "largest first"),
            ("5ms5s", "largest first"),
            ("99999999999999999999s", "too long"),
            ("213503982334602d", "too long"),
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(parse_seconds("1500ms").expect_err("ms").contains("whole seconds"));
    }
}
