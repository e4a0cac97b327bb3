//! A bounded soak run: the real gateway in front of a real pypiserver with trusted publishing,
//! upload tokens, deletion rules and a denied project, under mixed traffic from a few client
//! threads for a given duration, with the rules rewritten every second, one backend crash and
//! restart in the middle, and the gateway's RSS and open file descriptors sampled throughout.
//! At the end the gateway's ledger (SQLite), the files pypiserver holds and the client's own
//! record of accepted uploads and deletions are reconciled.
//!
//! Used by `src/bin/soak.rs` (the long run, `scripts/soak`) and `tests/soak.rs` (the CI
//! variant). Loopback only; every loop ends at the deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::gateway::{trusted_publishing_config, Gateway, RegistrySpec};
use crate::http::{self, Form, Response};
use crate::oidc::Issuer;
use crate::pypiserver::{self, Pypiserver};
use crate::sha256_hex;

const AUDIENCE: &str = "portcullis-soak";
const REPOSITORY: &str = "acme/soak";
const OWNER_ID: &str = "4242";
/// Projects uploaded with upload tokens from trusted publishing: `soak-tp-<worker>-<n>`.
const TP_PREFIX: &str = "soak-tp";
/// Projects uploaded with the backend's basic credential (legacy pass-through):
/// `soak-basic-<worker>-<n>`.
const BASIC_PREFIX: &str = "soak-basic";
/// Uploads a worker makes into one project before it moves on to the next, so that no
/// project's index grows without bound (pypiserver hashes every file of a project it lists).
const PER_PROJECT: u64 = 150;
/// Projects per worker the trusted publisher covers (the upload token names them all, and
/// tokens are limited to 4 KiB); a worker wraps around after them.
const TP_PROJECTS_PER_WORKER: u64 = 10;
/// Project whose deletion rule is `never`: every removal is refused.
const FROZEN_PROJECT: &str = "soak-frozen";
/// Project a rule denies.
const DENIED_PROJECT: &str = "soak-denied";
/// The rules' `max_upload_bytes`.
const MAX_UPLOAD: usize = 64 * 1024;
/// Size of the uploads meant to be refused as too large.
const OVERSIZED: usize = 80 * 1024;
/// Lifetime of the gateway's upload tokens is 15 minutes; a worker mints a new one after this.
const TOKEN_REFRESH: Duration = Duration::from_secs(240);

/// What a soak run does.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// How long traffic runs.
    pub duration: Duration,
    /// Concurrent client threads.
    pub workers: usize,
    /// How often the rules file is rewritten (each rewrite is a new revision).
    pub reload_every: Duration,
    /// How often RSS, fds and request counts are sampled.
    pub sample_every: Duration,
    /// How long the backend stays down in the middle of the run.
    pub outage: Duration,
    /// Pause of each worker between two requests (pacing; 0 for none).
    pub pause: Duration,
    /// Gateway proxy threads.
    pub gateway_threads: usize,
    /// Print progress lines on stderr.
    pub progress: bool,
}

impl SoakConfig {
    /// The defaults for a run of `duration`.
    pub fn for_duration(duration: Duration) -> SoakConfig {
        SoakConfig {
            duration,
            workers: 4,
            reload_every: Duration::from_secs(1),
            sample_every: Duration::from_secs(10),
            outage: Duration::from_secs(4),
            pause: Duration::from_millis(5),
            gateway_threads: 2,
            progress: false,
        }
    }
}

/// One sample of the gateway process.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds since traffic started.
    pub t: f64,
    /// Resident set size (VmRSS), KiB.
    pub rss_kib: u64,
    /// Its anonymous part (RssAnon: heap, stacks), KiB.
    pub rss_anon_kib: u64,
    /// Its file-backed part (RssFile: binary, libraries, the memory-mapped SQLite file), KiB.
    pub rss_file_kib: u64,
    /// Size of the SQLite database plus its write-ahead log, KiB.
    pub db_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Threads.
    pub threads: u64,
    /// Requests answered so far (all kinds).
    pub requests: u64,
    /// Unexpected answers so far.
    pub errors: u64,
}

/// Counts of one request kind.
#[derive(Debug, Clone, Default)]
pub struct KindCounts {
    /// Answered as expected for the kind (success or the intended refusal).
    pub expected: u64,
    /// Answered with the backend-outage refusal while the backend was down.
    pub outage: u64,
    /// Anything else (wrong status or code, transport failure, wrong bytes).
    pub errors: u64,
    /// Latencies of the expected answers, microseconds.
    pub latencies_us: Vec<u64>,
}

/// The reconciliation of ledger, backend disk and client record.
#[derive(Debug, Clone, Default)]
pub struct Reconciliation {
    /// Uploads the client saw accepted (200), setup included.
    pub client_accepted: usize,
    /// Removals the client saw accepted.
    pub client_deleted: usize,
    /// Files the client expects on disk (accepted minus deleted).
    pub client_expected_on_disk: usize,
    /// Files pypiserver holds.
    pub disk_files: usize,
    /// Ledger rows by state.
    pub ledger_by_state: BTreeMap<String, usize>,
    /// Version tombstones in the state store.
    pub tombstones: usize,
    /// Uploads refused while in flight at the backend's kill whose file the backend stored
    /// before dying: not confirmed, so refused, and on disk (allowed only for those).
    pub unconfirmed_stored: usize,
    /// Removals refused while in flight at the backend's kill: the backend may or may not have
    /// removed the file; when it did, its tombstone must be there.
    pub removals_unknown: usize,
    /// Problems found (empty when everything matches).
    pub problems: Vec<String>,
}

impl Reconciliation {
    /// Whether ledger, disk and client record agree exactly.
    pub fn exact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What a soak run measured.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// The gateway binary used.
    pub gateway_binary: PathBuf,
    /// The configuration.
    pub config: SoakConfig,
    /// How long traffic actually ran, seconds.
    pub traffic_seconds: f64,
    /// Counts per request kind.
    pub kinds: BTreeMap<String, KindCounts>,
    /// The first unexpected answers (at most 50).
    pub error_samples: Vec<String>,
    /// RSS / fd samples.
    pub samples: Vec<Sample>,
    /// Peak RSS (VmHWM) at the end, KiB.
    pub peak_rss_kib: u64,
    /// Rules rewrites made.
    pub rule_rewrites: u64,
    /// Rewrites whose new revision `/rules` showed within the poll bound.
    pub rule_revisions_seen: u64,
    /// `portcullis_rules_reloads_total` by result at the end.
    pub reloads_metric: BTreeMap<String, f64>,
    /// When the backend was killed (seconds since traffic start).
    pub outage_start: Option<f64>,
    /// When the gateway was ready again after the restart.
    pub outage_end: Option<f64>,
    /// Codes of the outage answers, counted.
    pub outage_codes: BTreeMap<String, u64>,
    /// The reconciliation.
    pub reconciliation: Reconciliation,
}

impl SoakReport {
    /// Requests answered, all kinds.
    pub fn total_requests(&self) -> u64 {
        self.kinds.values().map(|k| k.expected + k.outage + k.errors).sum()
    }

    /// Unexpected answers, all kinds.
    pub fn total_errors(&self) -> u64 {
        self.kinds.values().map(|k| k.errors).sum()
    }

    /// Growth of a series: mean of the last quarter of the samples over the mean of the second
    /// quarter (the first quarter is warm-up). `None` with fewer than 4 samples.
    pub fn growth(&self, value: impl Fn(&Sample) -> u64) -> Option<(f64, f64)> {
        let n = self.samples.len();
        if n < 4 {
            return None;
        }
        let mean = |range: std::ops::Range<usize>| {
            let len = range.len().max(1) as f64;
            self.samples[range].iter().map(&value).sum::<u64>() as f64 / len
        };
        let q = n / 4;
        Some((mean(q..(2 * q).max(q + 1)), mean(n - q.max(1)..n)))
    }

    fn growth_verdict(&self, what: &str, value: impl Fn(&Sample) -> u64, tolerance: f64, slack: f64) -> Value {
        match self.growth(value) {
            None => json!({"verdict": "too few samples"}),
            Some((second, last)) => {
                let grew = last > second * (1.0 + tolerance) + slack;
                json!({
                    "second_quarter_mean": round1(second),
                    "last_quarter_mean": round1(last),
                    "change_percent": if second > 0.0 { round1((last - second) / second * 100.0) } else { 0.0 },
                    "verdict": if grew { format!("{what} grows") } else { "no growth".to_owned() },
                })
            }
        }
    }

    /// The RSS verdict (growth over 10% + 1 MiB counts as growth).
    pub fn rss_verdict(&self) -> Value {
        self.growth_verdict("RSS", |s| s.rss_kib, 0.10, 1024.0)
    }

    /// The verdict on the anonymous part of RSS (the heap: what a leak would grow), growth over
    /// 10% + 1 MiB counts as growth.
    pub fn rss_anon_verdict(&self) -> Value {
        self.growth_verdict("RssAnon", |s| s.rss_anon_kib, 0.10, 1024.0)
    }

    /// The fd verdict (growth over 10% + 4 counts as growth).
    pub fn fd_verdict(&self) -> Value {
        self.growth_verdict("fds", |s| s.fds, 0.10, 4.0)
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        let kinds: serde_json::Map<String, Value> = self
            .kinds
            .iter()
            .map(|(kind, c)| {
                let mut l = c.latencies_us.clone();
                l.sort_unstable();
                (
                    kind.clone(),
                    json!({
                        "expected": c.expected, "outage": c.outage, "errors": c.errors,
                        "p50_ms": quantile_ms(&l, 0.50), "p99_ms": quantile_ms(&l, 0.99),
                    }),
                )
            })
            .collect();
        let series = |f: &dyn Fn(&Sample) -> u64| {
            let values: Vec<u64> = self.samples.iter().map(f).collect();
            json!({
                "first": values.first(), "last": values.last(), "max": values.iter().max(),
            })
        };
        json!({
            "gateway_binary": self.gateway_binary.display().to_string(),
            "config": {
                "duration_s": self.config.duration.as_secs_f64(),
                "workers": self.config.workers,
                "reload_every_s": self.config.reload_every.as_secs_f64(),
                "sample_every_s": self.config.sample_every.as_secs_f64(),
                "outage_s": self.config.outage.as_secs_f64(),
                "pause_ms": self.config.pause.as_millis() as u64,
                "gateway_threads": self.config.gateway_threads,
            },
            "traffic_seconds": round1(self.traffic_seconds),
            "requests": {
                "total": self.total_requests(),
                "errors": self.total_errors(),
                "outage_refusals": self.kinds.values().map(|k| k.outage).sum::<u64>(),
                "by_kind": kinds,
            },
            "error_samples": self.error_samples,
            "samples": self.samples.iter().map(|s| json!({
                "t_s": round1(s.t), "rss_kib": s.rss_kib, "rss_anon_kib": s.rss_anon_kib,
                "rss_file_kib": s.rss_file_kib, "db_kib": s.db_kib, "fds": s.fds, "threads": s.threads,
                "requests": s.requests, "errors": s.errors,
            })).collect::<Vec<_>>(),
            "rss_kib": series(&|s| s.rss_kib),
            "fds": series(&|s| s.fds),
            "peak_rss_kib": self.peak_rss_kib,
            "rss_growth": self.rss_verdict(),
            "rss_anon_kib": series(&|s| s.rss_anon_kib),
            "rss_anon_growth": self.rss_anon_verdict(),
            "fd_growth": self.fd_verdict(),
            "reloads": {
                "rewrites": self.rule_rewrites,
                "revisions_seen": self.rule_revisions_seen,
                "metric": self.reloads_metric,
            },
            "outage": {
                "start_s": self.outage_start.map(round1),
                "end_s": self.outage_end.map(round1),
                "codes": self.outage_codes,
            },
            "reconciliation": {
                "exact": self.reconciliation.exact(),
                "client_accepted": self.reconciliation.client_accepted,
                "client_deleted": self.reconciliation.client_deleted,
                "client_expected_on_disk": self.reconciliation.client_expected_on_disk,
                "disk_files": self.reconciliation.disk_files,
                "ledger_by_state": self.reconciliation.ledger_by_state,
                "tombstones": self.reconciliation.tombstones,
                "unconfirmed_stored": self.reconciliation.unconfirmed_stored,
                "removals_unknown": self.reconciliation.removals_unknown,
                "problems": self.reconciliation.problems,
            },
        })
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let j = self.to_json();
        let mut md = String::new();
        let r = &self.reconciliation;
        md.push_str(&format!(
            "# Soak run\n\nGateway binary: `{}`. Traffic: {:.0} s, {} client threads (pause {} ms), gateway {} proxy threads; \
             rules rewritten every {:.0} s; backend killed and restarted once ({:.0} s down); samples every {:.0} s.\n\n",
            self.gateway_binary.display(),
            self.traffic_seconds,
            self.config.workers,
            self.config.pause.as_millis(),
            self.config.gateway_threads,
            self.config.reload_every.as_secs_f64(),
            self.config.outage.as_secs_f64(),
            self.config.sample_every.as_secs_f64(),
        ));
        md.push_str(&format!(
            "**Requests: {} — unexpected answers (errors): {}** (outage refusals, expected: {}).\n\n",
            self.total_requests(),
            self.total_errors(),
            j["requests"]["outage_refusals"]
        ));
        md.push_str("| kind | expected answer | expected | outage 502/503 | errors | p50 ms | p99 ms |\n|---|---|---:|---:|---:|---:|---:|\n");
        for (kind, c) in &self.kinds {
            let k = &j["requests"]["by_kind"][kind];
            md.push_str(&format!(
                "| {kind} | {} | {} | {} | {} | {} | {} |\n",
                expected_answer(kind),
                c.expected,
                c.outage,
                c.errors,
                k["p50_ms"],
                k["p99_ms"]
            ));
        }
        if !self.error_samples.is_empty() {
            md.push_str("\nFirst unexpected answers:\n\n");
            for e in &self.error_samples {
                md.push_str(&format!("- `{}`\n", e.replace('`', "'")));
            }
        }
        md.push_str(&format!(
            "\n## Rules reloads\n\n{} rewrites; the new revision was visible on `/rules` after {} of them; \
             `portcullis_rules_reloads_total`: {}.\n",
            self.rule_rewrites,
            self.rule_revisions_seen,
            serde_json::to_string(&self.reloads_metric).unwrap_or_default()
        ));
        md.push_str(&format!(
            "\n## Backend outage\n\npypiserver killed at {} s, gateway ready again at {} s; outage answers by code: {}.\n",
            j["outage"]["start_s"],
            j["outage"]["end_s"],
            serde_json::to_string(&self.outage_codes).unwrap_or_default()
        ));
        md.push_str(
            "\n## Gateway RSS and open fds\n\nRSS = RssAnon (heap, stacks) + RssFile (binary, libraries and the \
             memory-mapped SQLite file, which grows with the ledger and audit log); db = SQLite file + WAL.\n\n\
             | t (s) | RSS (MiB) | RssAnon (MiB) | RssFile (MiB) | db (MiB) | fds | threads | requests | errors |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for s in &self.samples {
            md.push_str(&format!(
                "| {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |\n",
                s.t,
                s.rss_kib as f64 / 1024.0,
                s.rss_anon_kib as f64 / 1024.0,
                s.rss_file_kib as f64 / 1024.0,
                s.db_kib as f64 / 1024.0,
                s.fds,
                s.threads,
                s.requests,
                s.errors
            ));
        }
        md.push_str(&format!(
            "\nRSS first/last/max: {}/{}/{} KiB, peak (VmHWM) {} KiB; growth: {}.\n\
             RssAnon first/last/max: {}/{}/{} KiB; growth: {}.\n\
             fds first/last/max: {}/{}/{}; growth: {}.\n",
            j["rss_kib"]["first"],
            j["rss_kib"]["last"],
            j["rss_kib"]["max"],
            self.peak_rss_kib,
            j["rss_growth"],
            j["rss_anon_kib"]["first"],
            j["rss_anon_kib"]["last"],
            j["rss_anon_kib"]["max"],
            j["rss_anon_growth"],
            j["fds"]["first"],
            j["fds"]["last"],
            j["fds"]["max"],
            j["fd_growth"],
        ));
        md.push_str(&format!(
            "\n## Reconciliation: {}\n\n| what | count |\n|---|---:|\n\
             | uploads the client saw accepted | {} |\n| removals the client saw accepted | {} |\n\
             | files expected on disk (accepted − removed) | {} |\n| files pypiserver holds | {} |\n\
             | ledger rows by state | {} |\n| version tombstones | {} |\n\
             | refused in flight at the kill, stored unconfirmed | {} |\n\
             | removals refused in flight at the kill (outcome unknown) | {} |\n",
            if r.exact() { "exact" } else { "MISMATCH" },
            r.client_accepted,
            r.client_deleted,
            r.client_expected_on_disk,
            r.disk_files,
            serde_json::to_string(&r.ledger_by_state).unwrap_or_default(),
            r.tombstones,
            r.unconfirmed_stored,
            r.removals_unknown
        ));
        md.push_str(
            "\nChecked: every accepted upload has exactly one `committed` ledger row with the sha256 and size the \
             client sent; no other row is committed; no row is left `pending`; every `failed` row is an upload the \
             client saw refused during the outage; the files on disk are exactly the accepted minus the removed ones (plus any upload refused while in flight at \
             the kill that the backend stored before dying), each byte-identical (sha256) to what was sent; the version tombstones are exactly the removals \
             (plus those of removals in flight at the kill, which the gateway keeps; a file such a removal took must have its tombstone).\n",
        );
        for p in &r.problems {
            md.push_str(&format!("- problem: {p}\n"));
        }
        md
    }
}

fn expected_answer(kind: &str) -> &'static str {
    match kind {
        "read_index" => "200 `/simple/<project>/` listing the first release",
        "download" => "200, body sha256 = what was uploaded",
        "upload_token" => "200 (upload token from an OIDC exchange)",
        "upload_basic" => "200 (basic auth, legacy pass-through)",
        "exchange" => "200 with a `pcul_` token",
        "exchange_refused" => "422 `invalid-publisher`",
        "upload_denied" => "403 `project_denied`",
        "upload_digest_mismatch" => "400 `digest_mismatch`",
        "upload_oversized" => "413 `upload_too_large`",
        "upload_deleted_version" => "409 `version_deleted`",
        "delete_allowed" => "200 (inside the window)",
        "delete_refused" => "403 `deletion_never`",
        _ => "",
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn quantile_ms(sorted_us: &[u64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let idx = ((sorted_us.len() - 1) as f64 * q).round() as usize;
    (sorted_us[idx] as f64 / 10.0).round() / 100.0
}

fn rules(issuer: &Issuer, workers: usize, revision: u64) -> String {
    let tp_projects: Vec<String> = std::iter::once(format!("\"{TP_PREFIX}-first\""))
        .chain(
            (0..workers.max(1) as u64)
                .flat_map(|w| (0..TP_PROJECTS_PER_WORKER).map(move |n| format!("\"{TP_PREFIX}-{w}-{n}\""))),
        )
        .collect();
    format!(
        r#"# soak rules, rewrite {revision}
[issuers.gha]
url = "{url}"
kind = "github"
algorithms = ["RS256", "ES256"]

[registries.pypi]
audience = "{AUDIENCE}"
max_upload_bytes = "{max} KiB"

[[registries.pypi.publishers]]
id = "soak-release"
issuer = "gha"
projects = [{tp_projects}]
repository = "{REPOSITORY}"
repository_owner_id = "{OWNER_ID}"
workflow = "release.yml"
pending = true

[[registries.pypi.projects]]
id = "deny-internal"
names = ["{DENIED_PROJECT}"]
action = "deny"
message = "internal packages go to the private index"

[[registries.pypi.deletion_rules]]
id = "frozen"
names = ["{FROZEN_PROJECT}"]
mode = "never"
"#,
        url = issuer.url(),
        max = MAX_UPLOAD / 1024,
        tp_projects = tp_projects.join(", "),
    )
}

/// An accepted upload, as the client recorded it.
#[derive(Debug, Clone)]
struct Accepted {
    project: String,
    version: String,
    sha256: String,
    size: usize,
}

#[derive(Default)]
struct Record {
    accepted: BTreeMap<String, Accepted>,
    /// Files downloads may pick (never removed).
    readable: Vec<String>,
    /// Files a removal may pick (removed at most once).
    deletable: Vec<String>,
    /// Files of the frozen project (removals refused).
    frozen: Vec<String>,
    /// Removed files: filename -> (project, version).
    deleted: BTreeMap<String, (String, String)>,
    /// Uploads answered with an outage refusal.
    refused_in_outage: BTreeSet<String>,
    /// Of those, the uploads in flight at the kill: the backend may have stored the file and
    /// died before answering, so the gateway could not confirm it (docs/hardening/faults.md).
    in_flight_at_kill: BTreeSet<String>,
    /// Removals in flight at the kill, answered with an outage refusal: the backend may have
    /// removed the file and died before answering, and the gateway then keeps the tombstones
    /// (fail closed, docs/hardening/faults.md). Filename -> (project, version); never picked
    /// again.
    removal_unknown: BTreeMap<String, (String, String)>,
    /// Projects with their first release (never removed): (project, its file).
    projects: Vec<(String, String)>,
    /// Per project: index reads share it, a removal takes it alone (see [`Record::gate`]).
    gates: BTreeMap<String, std::sync::Arc<std::sync::RwLock<()>>>,
}

impl Record {
    /// The project's gate. pypiserver 2.4.2 answers 500 to `/simple/<project>/` when a file
    /// it listed is removed before it hashes it (`FileNotFoundError` in `digest_file`), and
    /// the gateway reads that index to decide a removal: so the client never lists a project
    /// while it removes from it, nor removes twice at once from one project.
    fn gate(&mut self, project: &str) -> std::sync::Arc<std::sync::RwLock<()>> {
        self.gates.entry(project.to_owned()).or_default().clone()
    }
}

struct Window {
    start: Instant,
    end: Option<Instant>,
}

struct Shared<'a> {
    addr: SocketAddr,
    issuer: &'a Issuer,
    started: Instant,
    deadline: Instant,
    stop: AtomicBool,
    requests: AtomicU64,
    errors: AtomicU64,
    record: Mutex<Record>,
    kinds: Mutex<BTreeMap<String, KindCounts>>,
    error_samples: Mutex<Vec<String>>,
    outage: Mutex<Option<Window>>,
    outage_codes: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one request should have got.
enum Expect {
    Status(u16),
    Refusal(u16, &'static str),
}

/// How an answer was judged.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Verdict {
    Expected,
    Outage,
    Error,
}

impl Shared<'_> {
    fn in_outage(&self, start: Instant, end: Instant) -> bool {
        match &*lock(&self.outage) {
            None => false,
            Some(w) => end >= w.start && w.end.is_none_or(|e| start <= e),
        }
    }

    fn in_flight_at_kill(&self, start: Instant, end: Instant) -> bool {
        lock(&self.outage)
            .as_ref()
            .is_some_and(|w| start <= w.start && w.start <= end)
    }

    fn judge(
        &self,
        kind: &str,
        started: Instant,
        result: &Result<Response, String>,
        expect: Expect,
        check: impl FnOnce(&Response) -> Result<(), String>,
    ) -> Verdict {
        let ended = Instant::now();
        let verdict = match result {
            // A response the backend was streaming when it was killed can only be cut short
            // (its head is already sent): expected for requests in flight at the kill.
            Err(e) if self.in_flight_at_kill(started, ended) => {
                *lock(&self.outage_codes)
                    .entry(format!("cut in flight: {e}"))
                    .or_default() += 1;
                Ok(Verdict::Outage)
            }
            Err(e) => Err(format!("transport: {e}")),
            Ok(r) => {
                let code = refusal_code(r);
                let matches = match expect {
                    Expect::Status(s) => r.status == s,
                    Expect::Refusal(s, c) => r.status == s && code.as_deref() == Some(c),
                };
                if matches {
                    check(r).map(|()| Verdict::Expected)
                } else if self.in_outage(started, ended)
                    && matches!(
                        (r.status, code.as_deref()),
                        (502, Some("upstream_unavailable" | "upstream_failed"))
                            | (503, Some("deletion_facts_unavailable"))
                            | (504, Some("upstream_timeout"))
                    )
                {
                    *lock(&self.outage_codes)
                        .entry(format!("{} {}", r.status, code.unwrap_or_default()))
                        .or_default() += 1;
                    Ok(Verdict::Outage)
                } else {
                    Err(format!(
                        "{} {}: {}",
                        r.status,
                        r.reason,
                        String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
                    ))
                }
            }
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut kinds = lock(&self.kinds);
        let counts = kinds.entry(kind.to_owned()).or_default();
        match verdict {
            Ok(Verdict::Expected) => {
                counts.expected += 1;
                counts
                    .latencies_us
                    .push(ended.duration_since(started).as_micros() as u64);
                Verdict::Expected
            }
            Ok(_) => {
                counts.outage += 1;
                Verdict::Outage
            }
            Err(e) => {
                counts.errors += 1;
                self.errors.fetch_add(1, Ordering::Relaxed);
                let mut samples = lock(&self.error_samples);
                if samples.len() < 50 {
                    samples.push(format!(
                        "t={:.1}s {kind}: {e}",
                        started.duration_since(self.started).as_secs_f64()
                    ));
                }
                Verdict::Error
            }
        }
    }
}

/// The `code` of a gateway refusal (or `errors[0].code` of an exchange refusal).
fn refusal_code(r: &Response) -> Option<String> {
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    v["code"]
        .as_str()
        .or_else(|| v["errors"][0]["code"].as_str())
        .map(str::to_owned)
}

/// One request over a fresh connection; every failure is returned, never a panic. A refusal
/// may come before the whole body is written: writing stops then and the answer is read.
fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(30))))
        .map_err(|e| e.to_string())?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("write head: {e}"))?;
    let mut write_error = None;
    for piece in body.chunks(16 * 1024) {
        if let Err(e) = stream.write_all(piece) {
            write_error = Some(e);
            break;
        }
    }
    http::read_response(&mut stream).map_err(|e| match write_error {
        Some(w) => format!("write body: {w}; read: {e}"),
        None => format!("read: {e}"),
    })
}

/// A small deterministic PRNG (xorshift64*), one per worker.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

fn filename(project: &str, version: &str) -> String {
    format!("{}-{version}.tar.gz", project.replace('-', "_"))
}

fn upload_request(
    addr: SocketAddr,
    auth: &str,
    project: &str,
    version: &str,
    content: &[u8],
    wrong_digest: bool,
) -> Result<Response, String> {
    let file = filename(project, version);
    let mut form = Form::pypi_upload(&project.replace('-', "_"), version, &file, content);
    if wrong_digest {
        let right = sha256_hex(content);
        let wrong = sha256_hex(b"not the file");
        let at = form
            .body
            .windows(right.len())
            .position(|w| w == right.as_bytes())
            .ok_or("digest field not found")?;
        form.body[at..at + right.len()].copy_from_slice(wrong.as_bytes());
    }
    send(
        addr,
        "POST",
        "/",
        &[("content-type", &form.content_type()), ("authorization", auth)],
        &form.body,
    )
}

fn remove_request(addr: SocketAddr, project: &str, version: &str) -> Result<Response, String> {
    let form = Form::pypi_remove(&project.replace('-', "_"), version);
    send(
        addr,
        "POST",
        "/",
        &[("content-type", &form.content_type()), ("authorization", &basic())],
        &form.body,
    )
}

fn basic() -> String {
    http::basic_auth(pypiserver::USER, pypiserver::PASSWORD)
}

fn exchange_request(addr: SocketAddr, issuer: &Issuer, repository: &str) -> Result<Response, String> {
    let claims = issuer.github_claims(AUDIENCE, repository, OWNER_ID, "release.yml");
    let body = serde_json::to_vec(&json!({ "token": issuer.token(claims) })).map_err(|e| e.to_string())?;
    send(
        addr,
        "POST",
        "/_/oidc/mint-token",
        &[("content-type", "application/json")],
        &body,
    )
}

fn minted_token(r: &Response) -> Result<String, String> {
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("exchange answer is not JSON: {e}"))?;
    v["token"]
        .as_str()
        .filter(|t| t.starts_with("pcul_"))
        .map(str::to_owned)
        .ok_or_else(|| format!("no pcul_ token in {v}"))
}

/// The kinds of request and their weights in the mix.
const MIX: &[(&str, usize)] = &[
    ("read_index", 18),
    ("download", 18),
    ("upload_token", 14),
    ("upload_basic", 12),
    ("exchange", 6),
    ("exchange_refused", 2),
    ("upload_denied", 5),
    ("upload_digest_mismatch", 5),
    ("upload_oversized", 4),
    ("upload_deleted_version", 3),
    ("delete_allowed", 8),
    ("delete_refused", 5),
];

struct Worker<'s, 'a> {
    shared: &'s Shared<'a>,
    id: usize,
    rng: Rng,
    seq: u64,
    tp_uploads: u64,
    basic_uploads: u64,
    token: Option<(String, Instant)>,
}

impl Worker<'_, '_> {
    fn run(&mut self, pause: Duration) {
        let total: usize = MIX.iter().map(|(_, w)| w).sum();
        while !self.shared.stop.load(Ordering::Relaxed) && Instant::now() < self.shared.deadline {
            let mut pick = self.rng.below(total);
            let kind = MIX
                .iter()
                .find(|(_, w)| {
                    if pick < *w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                })
                .map_or("read_index", |(k, _)| k);
            self.one(kind);
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
    }

    fn version(&mut self) -> String {
        self.seq += 1;
        format!("1.{}.{}", self.id + 1, self.seq)
    }

    /// The worker's upload token, minted through an exchange when it has none or it is old.
    fn token(&mut self) -> Option<String> {
        if let Some((t, at)) = &self.token {
            if at.elapsed() < TOKEN_REFRESH {
                return Some(t.clone());
            }
        }
        self.exchange();
        self.token.as_ref().map(|(t, _)| t.clone())
    }

    fn exchange(&mut self) {
        let s = self.shared;
        let started = Instant::now();
        let result = exchange_request(s.addr, s.issuer, REPOSITORY);
        let mut token = None;
        s.judge("exchange", started, &result, Expect::Status(200), |r| {
            token = Some(minted_token(r)?);
            Ok(())
        });
        if let Some(t) = token {
            self.token = Some((t, Instant::now()));
        }
    }

    fn upload(&mut self, kind: &str, project: &str, auth: &str) {
        let s = self.shared;
        let version = self.version();
        let size = 512 + self.rng.below(16 * 1024);
        let content = self.rng.bytes(size);
        let started = Instant::now();
        let result = upload_request(s.addr, auth, project, &version, &content, false);
        let file = filename(project, &version);
        match s.judge(kind, started, &result, Expect::Status(200), |_| Ok(())) {
            Verdict::Expected => {
                let mut record = lock(&s.record);
                record.accepted.insert(
                    file.clone(),
                    Accepted {
                        project: project.to_owned(),
                        version,
                        sha256: sha256_hex(&content),
                        size,
                    },
                );
                if project == FROZEN_PROJECT {
                    record.frozen.push(file);
                } else if !record.projects.iter().any(|(p, _)| p == project) {
                    // The project's first release: listed by index reads, never removed.
                    record.projects.push((project.to_owned(), file.clone()));
                    record.readable.push(file);
                } else if self.rng.below(3) == 0 {
                    record.deletable.push(file);
                } else {
                    record.readable.push(file);
                }
            }
            Verdict::Outage => {
                let mut record = lock(&s.record);
                if s.in_flight_at_kill(started, Instant::now()) {
                    record.in_flight_at_kill.insert(file.clone());
                }
                record.refused_in_outage.insert(file);
            }
            Verdict::Error => {}
        }
    }

    fn one(&mut self, kind: &str) {
        let s = self.shared;
        match kind {
            "read_index" => {
                let (project, first, gate) = {
                    let mut record = lock(&s.record);
                    let n = record.projects.len();
                    let Some((project, first)) = record.projects.get(self.rng.below(n)).cloned() else {
                        return;
                    };
                    let gate = record.gate(&project);
                    (project, first, gate)
                };
                let _shared_gate = gate.read().unwrap_or_else(|p| p.into_inner());
                let started = Instant::now();
                let result = send(s.addr, "GET", &format!("/simple/{project}/"), &[], b"");
                s.judge(kind, started, &result, Expect::Status(200), |r| {
                    if r.text().contains(&first) {
                        Ok(())
                    } else {
                        Err(format!("index of {project} does not list {first}"))
                    }
                });
            }
            "download" => {
                let picked = {
                    let record = lock(&s.record);
                    let file = record.readable.get(self.rng.below(record.readable.len())).cloned();
                    file.and_then(|f| record.accepted.get(&f).map(|a| (f, a.sha256.clone())))
                };
                let Some((file, sha)) = picked else { return };
                let started = Instant::now();
                let result = send(s.addr, "GET", &format!("/packages/{file}"), &[], b"");
                s.judge(kind, started, &result, Expect::Status(200), |r| {
                    if sha256_hex(&r.body) == sha {
                        Ok(())
                    } else {
                        Err(format!("{file}: downloaded bytes differ from the upload"))
                    }
                });
            }
            "upload_token" => {
                if let Some(token) = self.token() {
                    let n = (self.tp_uploads / PER_PROJECT) % TP_PROJECTS_PER_WORKER;
                    self.tp_uploads += 1;
                    let project = format!("{TP_PREFIX}-{}-{n}", self.id);
                    self.upload(kind, &project, &http::basic_auth("__token__", &token));
                }
            }
            "upload_basic" => {
                let project = if self.rng.below(10) == 0 {
                    FROZEN_PROJECT.to_owned()
                } else {
                    self.basic_uploads += 1;
                    format!("{BASIC_PREFIX}-{}-{}", self.id, (self.basic_uploads - 1) / PER_PROJECT)
                };
                self.upload(kind, &project, &basic());
            }
            "exchange" => self.exchange(),
            "exchange_refused" => {
                let started = Instant::now();
                let result = exchange_request(s.addr, s.issuer, "acme/not-soak");
                s.judge(
                    kind,
                    started,
                    &result,
                    Expect::Refusal(422, "invalid-publisher"),
                    |_| Ok(()),
                );
            }
            "upload_denied" | "upload_digest_mismatch" | "upload_oversized" => {
                let version = self.version();
                let (project, size, wrong, expect) = match kind {
                    "upload_denied" => (DENIED_PROJECT, 1024, false, Expect::Refusal(403, "project_denied")),
                    "upload_digest_mismatch" => (FROZEN_PROJECT, 2048, true, Expect::Refusal(400, "digest_mismatch")),
                    _ => (
                        FROZEN_PROJECT,
                        OVERSIZED,
                        false,
                        Expect::Refusal(413, "upload_too_large"),
                    ),
                };
                let content = self.rng.bytes(size);
                let started = Instant::now();
                let result = upload_request(s.addr, &basic(), project, &version, &content, wrong);
                s.judge(kind, started, &result, expect, |_| Ok(()));
            }
            "upload_deleted_version" => {
                let picked = {
                    let record = lock(&s.record);
                    let n = record.deleted.len();
                    record.deleted.values().nth(self.rng.below(n)).cloned()
                };
                let Some((project, version)) = picked else { return };
                let content = self.rng.bytes(700);
                let started = Instant::now();
                let result = upload_request(s.addr, &basic(), &project, &version, &content, false);
                s.judge(kind, started, &result, Expect::Refusal(409, "version_deleted"), |_| {
                    Ok(())
                });
            }
            "delete_allowed" => {
                let picked = {
                    let mut record = lock(&s.record);
                    let n = record.deletable.len();
                    if n == 0 {
                        None
                    } else {
                        let file = record.deletable.swap_remove(self.rng.below(n));
                        record
                            .accepted
                            .get(&file)
                            .map(|a| (file, a.project.clone(), a.version.clone()))
                    }
                };
                let Some((file, project, version)) = picked else { return };
                let gate = lock(&s.record).gate(&project);
                let alone = gate.write().unwrap_or_else(|p| p.into_inner());
                let started = Instant::now();
                let result = remove_request(s.addr, &project, &version);
                drop(alone);
                let verdict = s.judge(kind, started, &result, Expect::Status(200), |_| Ok(()));
                let mut record = lock(&s.record);
                match verdict {
                    Verdict::Expected => {
                        record.deleted.insert(file, (project, version));
                    }
                    Verdict::Outage if s.in_flight_at_kill(started, Instant::now()) => {
                        record.removal_unknown.insert(file, (project, version));
                    }
                    // Refused before it reached the backend: not removed, it may be picked again.
                    Verdict::Outage => record.deletable.push(file),
                    Verdict::Error => {}
                }
            }
            "delete_refused" => {
                let picked = {
                    let record = lock(&s.record);
                    let file = record.frozen.get(self.rng.below(record.frozen.len())).cloned();
                    file.and_then(|f| record.accepted.get(&f).map(|a| a.version.clone()))
                };
                let Some(version) = picked else { return };
                let started = Instant::now();
                let result = remove_request(s.addr, FROZEN_PROJECT, &version);
                s.judge(kind, started, &result, Expect::Refusal(403, "deletion_never"), |_| {
                    Ok(())
                });
            }
            _ => {}
        }
    }
}

fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn sample(pid: u32, db: &Path, shared: &Shared<'_>) -> Sample {
    Sample {
        t: shared.started.elapsed().as_secs_f64(),
        rss_kib: proc_status(pid, "VmRSS:"),
        rss_anon_kib: proc_status(pid, "RssAnon:"),
        rss_file_kib: proc_status(pid, "RssFile:"),
        db_kib: ["", "-wal"]
            .iter()
            .map(|suffix| {
                let mut path = db.as_os_str().to_owned();
                path.push(suffix);
                std::fs::metadata(path).map_or(0, |m| m.len() / 1024)
            })
            .sum(),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64),
        threads: proc_status(pid, "Threads:"),
        requests: shared.requests.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
    }
}

/// Ledger rows and tombstones read from the gateway's SQLite file (read-only, with Python's
/// sqlite3 module: the database stays in WAL mode and the gateway keeps running).
fn read_state(db: &Path) -> Result<Value, String> {
    let script = r#"
import json, sqlite3, sys
con = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
ledger = [dict(zip(["registry", "project", "version", "filename", "sha256", "size", "state", "detail"], row))
          for row in con.execute("SELECT registry, project, version, filename, sha256, size, state, detail FROM ledger ORDER BY id")]
tombs = [dict(zip(["registry", "project", "kind", "version", "filename"], row))
         for row in con.execute("SELECT registry, project, kind, version, filename FROM tombstones ORDER BY id")]
print(json.dumps({"ledger": ledger, "tombstones": tombs}))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(db)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "reading {}: {}",
            db.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

fn normalise(project: &str) -> String {
    project.to_ascii_lowercase().replace(['_', '.'], "-")
}

fn reconcile(record: &Record, db: &Path, packages: &Path) -> Reconciliation {
    let mut rec = Reconciliation {
        client_accepted: record.accepted.len(),
        client_deleted: record.deleted.len(),
        ..Reconciliation::default()
    };
    // Rows finish just after the answer: wait (bounded) until none is pending.
    let mut state = Value::Null;
    let settled = crate::wait_until(Duration::from_secs(10), || match read_state(db) {
        Ok(v) => {
            let pending = v["ledger"]
                .as_array()
                .is_some_and(|rows| rows.iter().any(|r| r["state"] == "pending"));
            state = v;
            !pending
        }
        Err(e) => {
            state = json!({"error": e});
            false
        }
    });
    if let Some(e) = state["error"].as_str() {
        rec.problems.push(format!("the ledger could not be read: {e}"));
        return rec;
    }
    if !settled {
        rec.problems
            .push("ledger rows still pending 10 s after the traffic stopped".to_owned());
    }
    let rows = state["ledger"].as_array().cloned().unwrap_or_default();
    let mut committed: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for row in &rows {
        let st = row["state"].as_str().unwrap_or("?").to_owned();
        *rec.ledger_by_state.entry(st.clone()).or_default() += 1;
        let file = row["filename"].as_str().unwrap_or_default().to_owned();
        match st.as_str() {
            "committed" => committed.entry(file).or_default().push(row),
            "failed" => {
                if record.accepted.contains_key(&file) {
                    rec.problems.push(format!(
                        "{file}: ledger row failed ({}) but the client saw it accepted",
                        row["detail"]
                    ));
                } else if !record.refused_in_outage.contains(&file) {
                    rec.problems.push(format!(
                        "{file}: ledger row failed ({}) for an upload not refused by the outage",
                        row["detail"]
                    ));
                }
            }
            "pending" => rec.problems.push(format!("{file}: ledger row still pending")),
            other => rec
                .problems
                .push(format!("{file}: ledger row in unknown state {other}")),
        }
    }
    for (file, a) in &record.accepted {
        match committed.get(file).map(Vec::as_slice) {
            None | Some([]) => rec
                .problems
                .push(format!("{file}: accepted but no committed ledger row")),
            Some([row]) => {
                if row["sha256"] != a.sha256.as_str() || row["size"] != a.size as u64 {
                    rec.problems.push(format!(
                        "{file}: ledger sha256/size {}/{} differ from the upload's {}/{}",
                        row["sha256"], row["size"], a.sha256, a.size
                    ));
                }
                if row["project"] != normalise(&a.project).as_str() || row["version"] != a.version.as_str() {
                    rec.problems.push(format!(
                        "{file}: ledger names {}@{}, the upload was {}@{}",
                        row["project"], row["version"], a.project, a.version
                    ));
                }
            }
            Some(more) => rec
                .problems
                .push(format!("{file}: {} committed ledger rows", more.len())),
        }
    }
    for file in committed.keys() {
        if !record.accepted.contains_key(file) {
            rec.problems.push(format!(
                "{file}: committed in the ledger but the client never saw it accepted"
            ));
        }
    }
    // Disk: exactly accepted minus deleted, byte-identical.
    let expected: BTreeMap<&String, &Accepted> = record
        .accepted
        .iter()
        .filter(|(f, _)| !record.deleted.contains_key(*f) && !record.removal_unknown.contains_key(*f))
        .collect();
    rec.client_expected_on_disk = expected.len();
    let on_disk = crate::list_files(packages);
    rec.disk_files = on_disk.len();
    for file in &on_disk {
        match expected.get(file) {
            None if record.in_flight_at_kill.contains(file) => rec.unconfirmed_stored += 1,
            None if record.removal_unknown.contains_key(file) => {}
            None => {
                let why = if record.deleted.contains_key(file) {
                    "removed (200) but still on disk"
                } else if record.refused_in_outage.contains(file) {
                    "refused during the outage but stored"
                } else {
                    "on disk but never accepted"
                };
                rec.problems.push(format!("{file}: {why}"));
            }
            Some(a) => match std::fs::read(packages.join(file)) {
                Ok(bytes) if sha256_hex(&bytes) == a.sha256 => {}
                Ok(_) => rec
                    .problems
                    .push(format!("{file}: stored bytes differ from the upload")),
                Err(e) => rec.problems.push(format!("{file}: unreadable: {e}")),
            },
        }
    }
    let disk: BTreeSet<&String> = on_disk.iter().collect();
    for file in expected.keys() {
        if !disk.contains(file) {
            rec.problems
                .push(format!("{file}: accepted, not removed, but missing on disk"));
        }
    }
    // Tombstones: exactly the removals.
    let tombstones: BTreeSet<(String, String)> = state["tombstones"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["kind"] == "version")
        .map(|t| {
            (
                t["project"].as_str().unwrap_or_default().to_owned(),
                t["version"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    rec.tombstones = tombstones.len();
    let removed: BTreeSet<(String, String)> = record
        .deleted
        .values()
        .map(|(p, v)| (normalise(p), v.clone()))
        .collect();
    // A removal in flight at the kill: if the file is gone, the backend removed it and the
    // tombstone must be there; if it is still there, a kept tombstone is the gateway failing
    // closed and none is fine too.
    let mut maybe_removed = BTreeSet::new();
    for (file, (project, version)) in &record.removal_unknown {
        let key = (normalise(project), version.clone());
        rec.removals_unknown += 1;
        if disk.contains(file) {
            let sent = record.accepted.get(file).map(|a| a.sha256.as_str());
            match std::fs::read(packages.join(file)) {
                Ok(bytes) if Some(sha256_hex(&bytes).as_str()) == sent => {}
                Ok(_) => rec
                    .problems
                    .push(format!("{file}: stored bytes differ from the upload")),
                Err(e) => rec.problems.push(format!("{file}: unreadable: {e}")),
            }
            maybe_removed.insert(key);
        } else if !tombstones.contains(&key) {
            rec.problems.push(format!(
                "{file}: removed while the backend was killed, but no tombstone {}@{}",
                key.0, key.1
            ));
        } else {
            maybe_removed.insert(key);
        }
    }
    for t in tombstones.difference(&removed).filter(|t| !maybe_removed.contains(*t)) {
        rec.problems
            .push(format!("tombstone {}@{} without a removal the client saw", t.0, t.1));
    }
    for t in removed.difference(&tombstones) {
        rec.problems
            .push(format!("removal of {}@{} left no tombstone", t.0, t.1));
    }
    rec
}

/// Runs a soak in `work` (created if needed) and returns what it measured.
pub fn run(config: &SoakConfig, work: &Path) -> SoakReport {
    let log = |msg: String| {
        if config.progress {
            eprintln!("[soak] {msg}");
        }
    };
    std::fs::create_dir_all(work).expect("work folder");
    let issuer = Issuer::start(&work.join("issuer"));
    let mut backend = Pypiserver::start(&work.join("pypiserver"));
    let gw_dir = work.join("gateway");
    std::fs::create_dir_all(&gw_dir).expect("gateway folder");
    std::fs::write(gw_dir.join("backend-password"), format!("{}\n", pypiserver::PASSWORD)).expect("password");
    let mut gateway = Gateway::builder()
        .registry(RegistrySpec {
            extra: format!(
                "client_credentials = \"pass\"\nbackend_credentials = {{ kind = \"basic\", username = \"{}\", password_file = {:?} }}\n",
                pypiserver::USER,
                gw_dir.join("backend-password").display().to_string()
            ),
            ..RegistrySpec::new("pypi", "pypi", backend.addr())
        })
        .rules(&rules(&issuer, config.workers, 0))
        .config(&trusted_publishing_config(&gw_dir.join("keys"), issuer.ca_file()))
        .threads(config.gateway_threads)
        .start(&gw_dir);
    let pid = gateway.process().pid();
    let db = gw_dir.join("data").join("portcullis.sqlite3");
    let addr = gateway.addr();
    let admin = gateway.admin();
    log(format!(
        "gateway {} pid {pid} on {addr}, pypiserver on {}",
        crate::gateway::binary().display(),
        backend.addr()
    ));

    let shared = Shared {
        addr,
        issuer: &issuer,
        started: Instant::now(),
        deadline: Instant::now() + config.duration,
        stop: AtomicBool::new(false),
        requests: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        record: Mutex::new(Record::default()),
        kinds: Mutex::new(BTreeMap::new()),
        error_samples: Mutex::new(Vec::new()),
        outage: Mutex::new(None),
        outage_codes: Mutex::new(BTreeMap::new()),
    };
    // First releases, so indexes list something and no removal ever takes a project's last
    // release (which would reserve its name).
    {
        let mut setup = Worker {
            shared: &shared,
            id: 0,
            rng: Rng(0x5eed),
            seq: 0,
            tp_uploads: 0,
            basic_uploads: 0,
            token: None,
        };
        let Some(token) = setup.token() else {
            panic!(
                "the setup exchange minted no upload token: {:?}",
                lock(&shared.error_samples)
            );
        };
        let tp_first = format!("{TP_PREFIX}-first");
        for (project, auth) in [
            (tp_first.as_str(), http::basic_auth("__token__", &token)),
            (FROZEN_PROJECT, basic()),
        ] {
            let content = setup.rng.bytes(1000);
            let r = upload_request(addr, &auth, project, "0.0.1", &content, false).expect("setup upload");
            assert_eq!(r.status, 200, "setup upload of {project}: {}", r.text());
            let file = filename(project, "0.0.1");
            let mut record = lock(&shared.record);
            record.accepted.insert(
                file.clone(),
                Accepted {
                    project: project.to_owned(),
                    version: "0.0.1".to_owned(),
                    sha256: sha256_hex(&content),
                    size: content.len(),
                },
            );
            if project == FROZEN_PROJECT {
                record.frozen.push(file.clone());
            } else {
                record.readable.push(file.clone());
            }
            record.projects.push((project.to_owned(), file));
        }
    }

    let rewrites = AtomicU64::new(0);
    let seen = AtomicU64::new(0);
    let mut samples = Vec::new();
    let mut outage_start = None;
    let mut outage_end = None;
    let traffic_start = Instant::now();
    std::thread::scope(|scope| {
        let shared = &shared;
        for id in 0..config.workers {
            scope.spawn(move || {
                Worker {
                    shared,
                    id,
                    rng: Rng(0x9E37_79B9_7F4A_7C15 ^ ((id as u64 + 1) << 17)),
                    seq: 0,
                    tp_uploads: 0,
                    basic_uploads: 0,
                    token: None,
                }
                .run(config.pause);
            });
        }
        // Rules rewritten every `reload_every`, each a new revision; every fifth also SIGHUP.
        let gateway_ref = &gateway;
        let (rewrites, seen) = (&rewrites, &seen);
        scope.spawn(move || {
            let mut n = 0u64;
            while Instant::now() + config.reload_every < shared.deadline {
                std::thread::sleep(config.reload_every);
                n += 1;
                let before = revision(admin);
                gateway_ref.write_rules(&rules(shared.issuer, config.workers, n));
                if n.is_multiple_of(5) {
                    gateway_ref.signal_hup();
                }
                rewrites.fetch_add(1, Ordering::Relaxed);
                if crate::wait_until(Duration::from_millis(900), || {
                    revision(admin).is_some_and(|r| Some(&r) != before.as_ref())
                }) {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // The backend crash and restart, in the middle.
        let restart = scope.spawn(|| {
            let at = shared.started + config.duration / 2 - config.outage / 2;
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            *lock(&shared.outage) = Some(Window {
                start: Instant::now(),
                end: None,
            });
            let start = shared.started.elapsed().as_secs_f64();
            backend.kill();
            log(format!("t={start:.1}s pypiserver killed"));
            std::thread::sleep(config.outage);
            backend.start_again();
            let ready = crate::wait_until(Duration::from_secs(20), || {
                let r = send(admin, "GET", "/readyz", &[], b"");
                r.is_ok_and(|r| r.status == 200)
            });
            if let Some(w) = lock(&shared.outage).as_mut() {
                w.end = Some(Instant::now());
            }
            let end = shared.started.elapsed().as_secs_f64();
            log(format!("t={end:.1}s pypiserver back (gateway ready: {ready})"));
            (start, end)
        });
        // Samples every `sample_every`, on this thread.
        samples.push(sample(pid, &db, shared));
        loop {
            let next = shared.started + config.sample_every.mul_f64(samples.len() as f64);
            if next >= shared.deadline {
                break;
            }
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            let s = sample(pid, &db, shared);
            log(format!(
                "t={:.0}s rss={} KiB (anon {}) db={} KiB fds={} threads={} requests={} errors={}",
                s.t, s.rss_kib, s.rss_anon_kib, s.db_kib, s.fds, s.threads, s.requests, s.errors
            ));
            samples.push(s);
        }
        std::thread::sleep(shared.deadline.saturating_duration_since(Instant::now()));
        shared.stop.store(true, Ordering::Relaxed);
        if let Ok((start, end)) = restart.join() {
            outage_start = Some(start);
            outage_end = Some(end);
        }
    });
    let traffic_seconds = traffic_start.elapsed().as_secs_f64();
    samples.push(sample(pid, &db, &shared));
    let peak_rss_kib = proc_status(pid, "VmHWM:");
    let reloads_metric: BTreeMap<String, f64> = ["ok", "unchanged", "error"]
        .iter()
        .map(|r| {
            (
                (*r).to_owned(),
                gateway.metric(&format!("portcullis_rules_reloads_total{{result=\"{r}\"}}")),
            )
        })
        .collect();
    let record = shared.record.into_inner().unwrap_or_else(|p| p.into_inner());
    let reconciliation = reconcile(&record, &db, &backend.packages);
    log(format!(
        "reconciliation: {}",
        if reconciliation.exact() { "exact" } else { "MISMATCH" }
    ));
    SoakReport {
        gateway_binary: crate::gateway::binary(),
        config: config.clone(),
        traffic_seconds,
        kinds: shared.kinds.into_inner().unwrap_or_else(|p| p.into_inner()),
        error_samples: shared.error_samples.into_inner().unwrap_or_else(|p| p.into_inner()),
        samples,
        peak_rss_kib,
        rule_rewrites: rewrites.load(Ordering::Relaxed),
        rule_revisions_seen: seen.load(Ordering::Relaxed),
        reloads_metric,
        outage_start,
        outage_end,
        outage_codes: shared.outage_codes.into_inner().unwrap_or_else(|p| p.into_inner()),
        reconciliation,
    }
}

fn revision(admin: SocketAddr) -> Option<String> {
    let r = send(admin, "GET", "/rules", &[], b"").ok()?;
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    v["revision"].as_str().map(str::to_owned)
}
