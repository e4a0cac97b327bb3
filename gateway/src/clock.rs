//! The one place the gateway reads the wall clock for decisions (token lifetimes, replay
//! records, revocations, the ledger, deletion windows, download days): Unix seconds, passed on
//! to pure code as a value.
//!
//! A deployment configured with `[testing] adjustable_clock = true` lets the admin listener
//! move this clock forward (`POST /testing/clock`), so end-to-end tests can step past a
//! deletion window without sleeping. Production configurations never set it; the offset is
//! zero otherwise.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds added to the system clock (tests only; see the module docs).
static OFFSET: AtomicI64 = AtomicI64::new(0);

/// Seconds since the Unix epoch; a clock before 1970 reads as 0, one past `i64` as `i64::MAX`.
pub fn unix_now() -> i64 {
    let system = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    system.saturating_add(OFFSET.load(Ordering::Relaxed))
}

/// Sets the offset added to the system clock; returns the previous one.
pub fn set_offset(seconds: i64) -> i64 {
    OFFSET.swap(seconds, Ordering::Relaxed)
}

/// The offset currently added to the system clock.
pub fn offset() -> i64 {
    OFFSET.load(Ordering::Relaxed)
}

/// `at` (Unix seconds) as an RFC 3339 UTC time, for logs and records.
pub fn rfc3339(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_reads_after_2020() {
        assert!(super::unix_now() > 1_577_836_800);
    }

    #[test]
    fn times_are_written_in_rfc3339() {
        assert_eq!(super::rfc3339(1_704_067_200), "2024-01-01T00:00:00Z");
    }
}
