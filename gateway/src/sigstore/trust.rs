//! The Sigstore trusted root in force, swapped whole like the rules: a verification takes the
//! root once (an `Arc`) and keeps it to the end, whatever a refresh does meanwhile; the
//! verification cache is keyed by the root's revision, so outcomes under one root are never
//! served under another.
//!
//! A root that came over TUF is usable only while the TUF metadata that vouched for it is
//! unexpired (TUF's freeze protection): past that, provenance that needs it is refused with
//! `provenance_trust_expired` until a refresh succeeds, never silently accepted.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use portcullis_verify::TrustedRoot;
use serde_json::{json, Value};

use super::tuf::{Fetched, TufError, TufRoles};
use crate::clock::rfc3339;
use crate::metrics::Metrics;

/// Where the trusted root comes from.
#[derive(Debug, Clone)]
pub enum TrustSource {
    /// A `trusted_root.json` file (air-gapped sites).
    File {
        /// The file.
        path: PathBuf,
    },
    /// A TUF repository.
    Tuf {
        /// The repository's base URL.
        repository: String,
        /// Where the anchor came from.
        anchor_source: String,
        /// The cache directory.
        cache_dir: PathBuf,
    },
}

/// How a trusted root arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Read from the configured file.
    File,
    /// Verified from the TUF cache at start-up, with no network.
    Cache,
    /// Fetched from the TUF repository.
    Network,
}

impl Arrival {
    fn as_str(self) -> &'static str {
        match self {
            Arrival::File => "file",
            Arrival::Cache => "cache",
            Arrival::Network => "network",
        }
    }
}

/// A trusted root and what vouched for it.
#[derive(Debug)]
pub struct InForce {
    /// The parsed root.
    pub root: Arc<TrustedRoot>,
    /// The TUF roles, for a root that came over TUF.
    pub tuf: Option<TufRoles>,
    /// How it arrived.
    pub arrival: Arrival,
    /// When it was adopted (Unix seconds).
    pub adopted_at: i64,
}

/// Why no trusted root can be used now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustUnavailable {
    /// None has been loaded yet (the repository was not reached and nothing is cached).
    #[error("no Sigstore trusted root is available yet: {why}")]
    NotLoaded {
        /// The last refresh's failure.
        why: String,
    },
    /// The TUF metadata vouching for the last good root has expired and no refresh has
    /// succeeded since.
    #[error(
        "the Sigstore trusted root's TUF {role} metadata expired at {expired_at} and could not be refreshed: {why}"
    )]
    Expired {
        /// The role that expired first.
        role: &'static str,
        /// When (RFC 3339).
        expired_at: String,
        /// The last refresh's failure.
        why: String,
    },
}

/// What the last refresh attempts did.
#[derive(Debug, Default)]
struct Attempts {
    last_attempt: Option<i64>,
    last_success: Option<i64>,
    last_failure: Option<Failure>,
    consecutive_failures: u64,
}

#[derive(Debug, Clone)]
struct Failure {
    at: i64,
    kind: &'static str,
    message: String,
}

/// The trusted root in force and the state of its refreshes.
pub struct TrustHandle {
    source: TrustSource,
    in_force: ArcSwapOption<InForce>,
    attempts: Mutex<Attempts>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for TrustHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustHandle")
            .field("source", &self.source)
            .field(
                "in_force",
                &self.in_force.load().as_ref().map(|f| hex::encode(f.root.revision)),
            )
            .finish_non_exhaustive()
    }
}

impl TrustHandle {
    /// A handle with nothing loaded yet.
    pub fn new(source: TrustSource, metrics: Arc<Metrics>) -> TrustHandle {
        TrustHandle {
            source,
            in_force: ArcSwapOption::empty(),
            attempts: Mutex::new(Attempts::default()),
            metrics,
        }
    }

    /// A handle over a root read from a file; it never changes while the process runs.
    pub fn from_file(path: PathBuf, root: Arc<TrustedRoot>, metrics: Arc<Metrics>, now: i64) -> TrustHandle {
        let handle = TrustHandle::new(TrustSource::File { path }, metrics);
        handle.install(root, None, Arrival::File, now);
        handle
    }

    /// The trusted root to verify with at `now` (Unix seconds).
    pub fn current(&self, now: i64) -> Result<Arc<TrustedRoot>, TrustUnavailable> {
        let Some(in_force) = self.in_force.load_full() else {
            return Err(TrustUnavailable::NotLoaded {
                why: self.last_failure(),
            });
        };
        if let Some(tuf) = &in_force.tuf {
            let (role, expires) = tuf.first_expiry();
            if now >= expires {
                return Err(TrustUnavailable::Expired {
                    role,
                    expired_at: rfc3339(expires),
                    why: self.last_failure(),
                });
            }
        }
        Ok(in_force.root.clone())
    }

    /// Adopts what a TUF refresh verified, once its `trusted_root.json` parses; returns whether
    /// the root changed. A target that does not parse leaves the last good root in force.
    pub fn adopt(&self, fetched: Fetched, arrival: Arrival, now: i64) -> Result<bool, TufError> {
        let root = TrustedRoot::from_json(&fetched.trusted_root).map_err(|e| {
            let error = TufError {
                kind: super::tuf::FailureKind::InvalidRoot,
                message: format!(
                    "the repository's {} does not parse: {e}",
                    super::tuf::TRUSTED_ROOT_TARGET
                ),
            };
            self.failed(&error, now);
            error
        })?;
        let old = self.in_force.load_full();
        let root_changed = old.as_ref().is_none_or(|o| o.root.revision != root.revision);
        let roles_changed = old.as_ref().is_none_or(|o| o.tuf != Some(fetched.roles));
        if root_changed || roles_changed {
            self.install(Arc::new(root), Some(fetched.roles), arrival, now);
        } else {
            self.record_success(now);
        }
        self.metrics
            .trust_refreshes
            .with_label_values(&[if root_changed { "updated" } else { "unchanged" }])
            .inc();
        Ok(root_changed)
    }

    fn install(&self, root: Arc<TrustedRoot>, tuf: Option<TufRoles>, arrival: Arrival, now: i64) {
        let revision = hex::encode(root.revision);
        self.metrics.trust_root_info.reset();
        self.metrics
            .trust_root_info
            .with_label_values(&[arrival.as_str(), &revision])
            .set(1);
        self.metrics.trust_root_loaded.set(1);
        self.metrics.trust_expiry.set(tuf.map_or(0, |t| t.first_expiry().1));
        if let Some(roles) = &tuf {
            for (role, version) in roles.versions() {
                self.metrics
                    .trust_tuf_version
                    .with_label_values(&[role])
                    .set(i64::try_from(version).unwrap_or(i64::MAX));
            }
        }
        self.record_success(now);
        tracing::info!(
            target: "portcullis::trust",
            revision = %revision,
            arrival = arrival.as_str(),
            tuf_root = tuf.map(|t| t.root.version),
            tuf_timestamp = tuf.map(|t| t.timestamp.version),
            tlogs = root.tlogs.len(),
            certificate_authorities = root.certificate_authorities.len(),
            timestamp_authorities = root.timestamp_authorities.len(),
            "Sigstore trusted root in force"
        );
        self.in_force.store(Some(Arc::new(InForce {
            root,
            tuf,
            arrival,
            adopted_at: now,
        })));
    }

    /// Records a successful refresh (or the file read), whether or not it changed anything.
    fn record_success(&self, now: i64) {
        self.metrics.trust_last_success.set(now);
        if let Ok(mut attempts) = self.attempts.lock() {
            attempts.last_attempt = Some(now);
            attempts.last_success = Some(now);
            attempts.consecutive_failures = 0;
        }
    }

    /// Records a failed refresh; the last good root stays in force.
    pub fn failed(&self, error: &TufError, now: i64) {
        let label = error.kind.as_str();
        self.metrics.trust_refreshes.with_label_values(&[label]).inc();
        tracing::warn!(
            target: "portcullis::trust",
            kind = label,
            error = %error,
            in_force = self.in_force.load().is_some(),
            "Sigstore trusted root refresh failed; the last good root stays in force"
        );
        if let Ok(mut attempts) = self.attempts.lock() {
            attempts.last_attempt = Some(now);
            attempts.consecutive_failures = attempts.consecutive_failures.saturating_add(1);
            attempts.last_failure = Some(Failure {
                at: now,
                kind: label,
                message: error.message.clone(),
            });
        }
    }

    fn last_failure(&self) -> String {
        self.attempts
            .lock()
            .ok()
            .and_then(|a| a.last_failure.clone())
            .map_or_else(
                || "no refresh has completed yet".to_owned(),
                |f| format!("{} ({})", f.message, f.kind),
            )
    }

    /// What `/trust` shows: the source, whether provenance can be verified now and why not,
    /// the TUF role versions and expiries, and the logs, CAs and TSAs in force.
    pub fn describe(&self, now: i64) -> Value {
        let usable = self.current(now);
        let source = match &self.source {
            TrustSource::File { path } => json!({"kind": "file", "path": path.display().to_string()}),
            TrustSource::Tuf {
                repository,
                anchor_source,
                cache_dir,
            } => json!({
                "kind": "tuf",
                "repository": repository,
                "anchor": anchor_source,
                "cache_dir": cache_dir.display().to_string(),
            }),
        };
        let attempts = match self.attempts.lock() {
            Ok(a) => json!({
                "last_attempt": a.last_attempt.map(rfc3339),
                "last_success": a.last_success.map(rfc3339),
                "consecutive_failures": a.consecutive_failures,
                "last_failure": a.last_failure.as_ref().map(|f| json!({
                    "at": rfc3339(f.at), "kind": f.kind, "message": f.message,
                })),
            }),
            Err(_) => Value::Null,
        };
        let in_force = self.in_force.load_full().map(|f| {
            json!({
                "revision": hex::encode(f.root.revision),
                "arrival": f.arrival.as_str(),
                "adopted_at": rfc3339(f.adopted_at),
                "tuf": f.tuf.map(|t| roles_json(&t)),
                "transparency_logs": logs(&f.root.tlogs),
                "ct_logs": logs(&f.root.ctlogs),
                "certificate_authorities": authorities(&f.root.certificate_authorities),
                "timestamp_authorities": authorities(&f.root.timestamp_authorities),
                "skipped": f.root.skipped,
            })
        });
        json!({
            "source": source,
            "verifies": usable.is_ok(),
            "unavailable": usable.err().map(|e| json!({
                "code": e.code(),
                "message": e.to_string(),
            })),
            "in_force": in_force,
            "refresh": attempts,
        })
    }
}

impl TrustUnavailable {
    /// The stable refusal code for provenance that needed the root.
    pub fn code(&self) -> &'static str {
        self.refusal().code()
    }

    /// The provenance refusal it leads to.
    pub fn refusal(&self) -> portcullis_rules::ProvenanceRefusal {
        match self {
            TrustUnavailable::NotLoaded { .. } => portcullis_rules::ProvenanceRefusal::TrustUnavailable,
            TrustUnavailable::Expired { .. } => portcullis_rules::ProvenanceRefusal::TrustExpired,
        }
    }
}

fn roles_json(roles: &TufRoles) -> Value {
    let one = |r: &super::tuf::RoleVersion| json!({"version": r.version, "expires": rfc3339(r.expires)});
    json!({
        "root": one(&roles.root),
        "timestamp": one(&roles.timestamp),
        "snapshot": one(&roles.snapshot),
        "targets": one(&roles.targets),
    })
}

fn logs(list: &[portcullis_verify::trust_root::LogKey]) -> Vec<Value> {
    list.iter()
        .map(|l| {
            json!({
                "base_url": l.base_url,
                "log_id": hex::encode(&l.log_id),
                "valid_from": rfc3339(l.validity.start),
                "valid_until": l.validity.end.map(rfc3339),
            })
        })
        .collect()
}

fn authorities(list: &[portcullis_verify::trust_root::Authority]) -> Vec<Value> {
    list.iter()
        .map(|a| {
            json!({
                "uri": a.uri,
                "certificates": a.chain.len(),
                "valid_from": rfc3339(a.validity.start),
                "valid_until": a.validity.end.map(rfc3339),
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "trust_tests.rs"]
mod tests;
