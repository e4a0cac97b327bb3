//! Rules at run time: read the rules files, compile them in `portcullis_rules`, and swap the
//! result in whole (`ArcSwap`). A request keeps the snapshot it started with. A bad file keeps
//! the last good rules, logs why and counts `result="error"`.
//!
//! [`ReloadService`] reloads on `SIGHUP` and, when watching is on, on changes in the folders
//! of the rules files (debounced; folder-level so editors' rename-into-place and Kubernetes
//! ConfigMap symlink swaps are seen).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use portcullis_rules::{compile, CompiledRules, KnownRegistry, RuleSource, RulesError};
use tokio::sync::Notify;

use crate::config::validated::RulesSettings;
use crate::metrics::Metrics;

/// Compiled rules plus when they were loaded.
#[derive(Debug)]
pub struct RulesSnapshot {
    /// The compiled rules.
    pub rules: CompiledRules,
    /// Load time, Unix seconds.
    pub loaded_at_unix: i64,
    /// Load time, RFC 3339.
    pub loaded_at: String,
}

/// Why rules could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RulesLoadError {
    /// A rules file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The rules are invalid.
    #[error(transparent)]
    Invalid(#[from] RulesError),
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// New rules are in force.
    Swapped {
        /// The new revision.
        revision: String,
    },
    /// The files compile to the revision already in force.
    Unchanged,
    /// The files are bad; the previous rules stay.
    Failed(String),
}

/// Reads every rules file.
pub fn read_sources(files: &[PathBuf]) -> Result<Vec<RuleSource>, RulesLoadError> {
    files
        .iter()
        .map(|file| {
            std::fs::read_to_string(file)
                .map(|text| RuleSource {
                    name: file.display().to_string(),
                    text,
                })
                .map_err(|source| RulesLoadError::Read {
                    file: file.clone(),
                    source,
                })
        })
        .collect()
}

/// Reads and compiles the rules files.
pub fn load_rules(files: &[PathBuf], known: &[KnownRegistry]) -> Result<CompiledRules, RulesLoadError> {
    let sources = read_sources(files)?;
    Ok(compile(&sources, known)?)
}

fn snapshot(rules: CompiledRules) -> RulesSnapshot {
    let now = SystemTime::now();
    let unix = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let loaded_at = time::OffsetDateTime::from(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    RulesSnapshot {
        rules,
        loaded_at_unix: unix,
        loaded_at,
    }
}

/// The rules in force, shared by every request and the admin listener.
pub struct RulesHandle {
    current: ArcSwap<RulesSnapshot>,
    files: Vec<PathBuf>,
    known: Vec<KnownRegistry>,
    metrics: Arc<Metrics>,
    reloading: Mutex<()>,
}

impl RulesHandle {
    /// Loads the rules for the first time; a failure here stops the gateway from starting.
    pub fn load(
        settings: &RulesSettings,
        known: Vec<KnownRegistry>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RulesLoadError> {
        let rules = load_rules(&settings.files, &known)?;
        let snap = snapshot(rules);
        metrics.set_rules_revision(snap.rules.revision(), snap.loaded_at_unix);
        Ok(RulesHandle {
            current: ArcSwap::from_pointee(snap),
            files: settings.files.clone(),
            known,
            metrics,
            reloading: Mutex::new(()),
        })
    }

    /// The snapshot in force now; a request holds it until it ends.
    pub fn current(&self) -> Arc<RulesSnapshot> {
        self.current.load_full()
    }

    /// The rules files.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Re-reads and recompiles the rules; swaps them in when they are valid and changed.
    pub fn reload(&self, trigger: &str) -> ReloadOutcome {
        let _serial = self.reloading.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let started = Instant::now();
        let result = load_rules(&self.files, &self.known);
        self.metrics.reload_duration.observe(started.elapsed().as_secs_f64());
        let outcome = match result {
            Err(e) => {
                tracing::error!(trigger, error = %e, revision = self.current().rules.revision(), "rules reload failed; keeping the last good rules");
                ReloadOutcome::Failed(e.to_string())
            }
            Ok(rules) if rules.revision() == self.current().rules.revision() => {
                tracing::debug!(trigger, revision = rules.revision(), "rules unchanged");
                ReloadOutcome::Unchanged
            }
            Ok(rules) => {
                let snap = snapshot(rules);
                let revision = snap.rules.revision().to_owned();
                let previous = self.current().rules.revision().to_owned();
                self.metrics.set_rules_revision(&revision, snap.loaded_at_unix);
                self.current.store(Arc::new(snap));
                tracing::info!(trigger, revision, previous, "rules reloaded");
                ReloadOutcome::Swapped { revision }
            }
        };
        let label = match outcome {
            ReloadOutcome::Swapped { .. } => "ok",
            ReloadOutcome::Unchanged => "unchanged",
            ReloadOutcome::Failed(_) => "error",
        };
        self.metrics.reloads.with_label_values(&[label]).inc();
        outcome
    }
}

/// Background service that reloads the rules on `SIGHUP` and on file changes.
pub struct ReloadService {
    handle: Arc<RulesHandle>,
    watch: bool,
    debounce: Duration,
}

impl ReloadService {
    /// A reload service for `handle` with the configured watch settings.
    pub fn new(handle: Arc<RulesHandle>, settings: &RulesSettings) -> Self {
        ReloadService {
            handle,
            watch: settings.watch,
            debounce: settings.debounce,
        }
    }

    fn start_watcher(&self, changed: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
        let files: Vec<PathBuf> = self.handle.files().to_vec();
        let relevant = move |event: &notify::Event| {
            !event.kind.is_access() && event.paths.iter().any(|p| is_rules_change(&files, p))
        };
        let mut watcher = match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| relevant(&e)) {
                changed.notify_one();
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the rules files; SIGHUP still reloads");
                return None;
            }
        };
        let mut folders: Vec<PathBuf> = self
            .handle
            .files()
            .iter()
            .filter_map(|f| f.parent().map(PathBuf::from))
            .collect();
        folders.sort();
        folders.dedup();
        for folder in folders {
            if let Err(e) = watcher.watch(&folder, RecursiveMode::NonRecursive) {
                tracing::warn!(folder = %folder.display(), error = %e, "cannot watch a rules folder");
            }
        }
        Some(watcher)
    }

    async fn reload(&self, trigger: &'static str) {
        let handle = self.handle.clone();
        let _ = tokio::task::spawn_blocking(move || handle.reload(trigger)).await;
    }
}

/// Whether a changed path can change the rules: a rules file itself, or a Kubernetes
/// ConfigMap's `..data` / `..<timestamp>` entries swapped beside it.
fn is_rules_change(files: &[PathBuf], changed: &Path) -> bool {
    files.iter().any(|f| f == changed)
        || (changed
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".."))
            && files.iter().any(|f| f.parent() == changed.parent()))
}

#[async_trait]
impl BackgroundService for ReloadService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP");
                None
            }
        };
        let changed = Arc::new(Notify::new());
        let _watcher = if self.watch {
            self.start_watcher(changed.clone())
        } else {
            None
        };
        // Debounce: reload once the files have been quiet for `debounce`, but never later than
        // `MAX_DEBOUNCE_FACTOR × debounce` after the first change of a burst.
        let mut quiet_at: Option<tokio::time::Instant> = None;
        let mut latest_at: Option<tokio::time::Instant> = None;
        loop {
            let deadline = match (quiet_at, latest_at) {
                (Some(q), Some(l)) => Some(q.min(l)),
                _ => None,
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    self.reload("sighup").await;
                }
                _ = changed.notified() => {
                    let now = tokio::time::Instant::now();
                    quiet_at = Some(now + self.debounce);
                    latest_at.get_or_insert(now + self.debounce * MAX_DEBOUNCE_FACTOR);
                }
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    quiet_at = None;
                    latest_at = None;
                    self.reload("file-change").await;
                }
            }
        }
    }
}

/// Upper bound on how long a burst of changes can postpone a reload, in debounce periods.
const MAX_DEBOUNCE_FACTOR: u32 = 10;

#[cfg(test)]
mod tests {
    use portcullis_rules::Protocol;

    use super::*;

    #[test]
    fn only_rules_files_and_configmap_swaps_count_as_changes() {
        let files = vec![PathBuf::from("/etc/p/rules.toml")];
        assert!(is_rules_change(&files, Path::new("/etc/p/rules.toml")));
        assert!(is_rules_change(&files, Path::new("/etc/p/..data")));
        assert!(is_rules_change(&files, Path::new("/etc/p/..2026_11_25_10_00_00.123")));
        assert!(!is_rules_change(&files, Path::new("/etc/p/portcullis.log")));
        assert!(!is_rules_change(&files, Path::new("/etc/p/.rules.toml.swp")));
        assert!(!is_rules_change(&files, Path::new("/other/..data")));
    }

    #[test]
    fn bad_rules_keep_the_last_good_and_count_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("rules.toml");
        std::fs::write(&file, "[registries.pypi]\ndefault = 'allow'\n").expect("write");
        let settings = RulesSettings {
            files: vec![file.clone()],
            watch: false,
            debounce: Duration::from_millis(10),
        };
        let known = vec![KnownRegistry {
            name: "pypi".into(),
            protocol: Protocol::Pypi,
        }];
        let metrics = Arc::new(Metrics::new());
        let handle = RulesHandle::load(&settings, known, metrics.clone()).expect("loads");
        let first = handle.current().rules.revision().to_owned();

        assert_eq!(handle.reload("test"), ReloadOutcome::Unchanged);
        std::fs::write(&file, "[registries.pypi]\ndefault = 'perhaps'\n").expect("write");
        assert!(matches!(handle.reload("test"), ReloadOutcome::Failed(m) if m.contains("rules.toml")));
        assert_eq!(handle.current().rules.revision(), first);
        std::fs::write(&file, "[registries.pypi]\ndefault = 'deny'\n").expect("write");
        let held = handle.current();
        assert!(matches!(handle.reload("test"), ReloadOutcome::Swapped { .. }));
        assert_ne!(handle.current().rules.revision(), first);
        assert_eq!(held.rules.revision(), first, "a snapshot taken earlier is unchanged");

        let text = String::from_utf8(metrics.render()).expect("utf-8");
        for result in ["ok", "unchanged", "error"] {
            assert!(
                text.contains(&format!("portcullis_rules_reloads_total{{result=\"{result}\"}} 1")),
                "{result}: {text}"
            );
        }
    }
}
