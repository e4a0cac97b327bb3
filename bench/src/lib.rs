//! Measurements for Portcullis; each binary in `src/bin` is one measurement, and `bench` runs
//! them side by side with the direct backend and nginx (see bench/README.md).

pub mod load;
pub mod procfs;
pub mod report;
pub mod sink;
pub mod stats;
pub mod targets;

use std::time::Duration;

pub use procfs::cpu_seconds;

/// The `p` quantile (0 to 1) of sorted durations, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}
