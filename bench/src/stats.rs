//! Runs and their summaries: one [`Run`] per target per round, summarised per row as the
//! median with the spread (min and max) over rounds, and latency quantiles over all requests.

use serde::{Deserialize, Serialize};

/// The `q` quantile (0 to 1) of sorted latencies in µs, in ms; 0 when there are none.
pub fn quantile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let index = ((sorted_us.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted_us[index]) / 1000.0
}

/// One measured run of one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// Round number (runs of all targets are interleaved round by round).
    pub round: usize,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub failed: u64,
    /// The first failure's description.
    pub first_failure: Option<String>,
    /// Wall seconds.
    pub wall_s: f64,
    /// Successful requests per second.
    pub per_second: f64,
    /// Request body MiB sent in successful requests.
    pub mib: f64,
    /// CPU seconds of the target's process tree (for `direct`, the backend's).
    pub target_cpu_s: f64,
    /// CPU seconds of the backend behind the target.
    pub backend_cpu_s: f64,
    /// Peak resident memory of the target's process tree during the run, MiB.
    pub peak_rss_mib: f64,
    /// Context switches of the target's threads during the run (absent in older results).
    #[serde(default)]
    pub context_switches: u64,
}

impl Run {
    /// Context switches of the target per successful request.
    pub fn switches_per_request(&self) -> f64 {
        self.context_switches as f64 / (self.ok.max(1) as f64)
    }

    /// Target CPU µs per successful request.
    pub fn cpu_us_per_request(&self) -> f64 {
        self.target_cpu_s * 1e6 / (self.ok.max(1) as f64)
    }

    /// Target CPU ms per MiB of request body, when bodies were sent.
    pub fn cpu_ms_per_mib(&self) -> Option<f64> {
        (self.mib > 0.0).then(|| self.target_cpu_s * 1e3 / self.mib)
    }
}

/// Median, min and max of a set of values.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// Of `values` (zeros when empty).
    pub fn of(mut values: Vec<f64>) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Spread {
            median,
            min: values[0],
            max: values[n - 1],
        }
    }
}

/// One target in one scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// Target name.
    pub target: String,
    /// Concurrency (clients).
    pub concurrency: usize,
    /// Requests per second over rounds.
    pub per_second: Spread,
    /// Target CPU µs per request over rounds.
    pub cpu_us_per_request: Spread,
    /// Target CPU ms per MiB of body over rounds (uploads only).
    pub cpu_ms_per_mib: Option<Spread>,
    /// Target context switches per request over rounds (absent in older results).
    #[serde(default)]
    pub switches_per_request: Spread,
    /// Backend CPU µs per request over rounds.
    pub backend_cpu_us_per_request: Spread,
    /// Latency p50 over every request of every round, ms.
    pub p50_ms: f64,
    /// Latency p99 over every request of every round, ms.
    pub p99_ms: f64,
    /// Largest peak RSS of the target over rounds, MiB.
    pub peak_rss_mib: f64,
    /// Failed requests over all rounds.
    pub failed: u64,
    /// The first failure, if any.
    pub first_failure: Option<String>,
    /// Successful requests over all rounds.
    pub requests: u64,
    /// The runs.
    pub runs: Vec<Run>,
}

impl Row {
    /// Summarises runs; `latencies_us` are all of their requests' latencies.
    pub fn new(scenario: &str, target: &str, concurrency: usize, runs: Vec<Run>, mut latencies_us: Vec<u32>) -> Row {
        latencies_us.sort_unstable();
        let per_mib: Vec<f64> = runs.iter().filter_map(Run::cpu_ms_per_mib).collect();
        Row {
            scenario: scenario.to_owned(),
            target: target.to_owned(),
            concurrency,
            per_second: Spread::of(runs.iter().map(|r| r.per_second).collect()),
            cpu_us_per_request: Spread::of(runs.iter().map(Run::cpu_us_per_request).collect()),
            cpu_ms_per_mib: (!per_mib.is_empty()).then(|| Spread::of(per_mib)),
            switches_per_request: Spread::of(runs.iter().map(Run::switches_per_request).collect()),
            backend_cpu_us_per_request: Spread::of(
                runs.iter()
                    .map(|r| r.backend_cpu_s * 1e6 / (r.ok.max(1) as f64))
                    .collect(),
            ),
            p50_ms: quantile_ms(&latencies_us, 0.5),
            p99_ms: quantile_ms(&latencies_us, 0.99),
            peak_rss_mib: runs.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max),
            failed: runs.iter().map(|r| r.failed).sum(),
            first_failure: runs.iter().find_map(|r| r.first_failure.clone()),
            requests: runs.iter().map(|r| r.ok).sum(),
            runs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_median_min_max() {
        let s = Spread::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let even = Spread::of(vec![4.0, 1.0, 2.0, 3.0]);
        assert_eq!(even.median, 2.5);
        assert_eq!(Spread::of(Vec::new()).median, 0.0);
    }

    #[test]
    fn rows_summarise_runs() {
        let run = |round, ok, cpu| Run {
            round,
            ok,
            failed: 0,
            first_failure: None,
            wall_s: 1.0,
            per_second: ok as f64,
            mib: 10.0,
            target_cpu_s: cpu,
            backend_cpu_s: 0.0,
            peak_rss_mib: 20.0 + round as f64,
            context_switches: 0,
        };
        let row = Row::new(
            "s",
            "t",
            1,
            vec![run(0, 100, 0.01), run(1, 200, 0.02)],
            (1..=100).collect(),
        );
        assert_eq!(row.requests, 300);
        assert_eq!(row.per_second.median, 150.0);
        assert!((row.cpu_us_per_request.median - 100.0).abs() < 1e-9);
        assert!((row.cpu_ms_per_mib.expect("uploads").max - 2.0).abs() < 1e-9);
        assert_eq!(row.peak_rss_mib, 21.0);
        assert!((row.p50_ms - 0.051).abs() < 1e-9, "{}", row.p50_ms);
    }
}
