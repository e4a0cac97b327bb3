//! The one place the gateway reads the wall clock for decisions (token lifetimes, replay
//! records, revocations, the ledger): Unix seconds, passed on to pure code as a value.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch; a clock before 1970 reads as 0, one past `i64` as `i64::MAX`.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_reads_after_2020() {
        assert!(super::unix_now() > 1_577_836_800);
    }
}
