//! Download counting: file downloads that pass through the gateway are counted per version
//! and UTC day, in memory first and flushed to the state store in batches, so the read path
//! never waits on a database write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use portcullis_rules::{ProjectName, Protocol};

use crate::protocol::npm::split_package;
use crate::protocol::pypi::split_filename;
use crate::state::{DownloadKey, StateError, StateStore};

/// Seconds in a UTC day.
pub const DAY: i64 = 86_400;

/// How often counts are written to the state store.
const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// The project and version a successful `GET` of `path` (below the registry's prefix)
/// downloads, when it is a package file: an npm tarball (`/<pkg>/-/<name>-<version>.tgz`) or
/// a PyPI distribution file (any path ending in a `.whl`, `.tar.gz` or `.zip` file name).
pub fn downloaded(protocol: Protocol, path: &str) -> Option<(ProjectName, String)> {
    let path = path.split('?').next()?;
    match protocol {
        Protocol::Npm => {
            let (package, rest) = split_package(path)?;
            let version = super::npm::tarball_version(&package, rest.strip_prefix("-/")?)?;
            let project = ProjectName::parse(Protocol::Npm, &package).ok()?;
            Some((project, version))
        }
        Protocol::Pypi => {
            let file = path.rsplit('/').next()?;
            let file = crate::protocol::path::percent_decode(file)?;
            let (name, version) = split_filename(&file)?;
            let project = ProjectName::parse(Protocol::Pypi, &name).ok()?;
            Some((project, version))
        }
    }
}

/// Download counts not yet in the state store.
#[derive(Default)]
pub struct DownloadCounter {
    pending: Mutex<HashMap<DownloadKey, u64>>,
}

impl DownloadCounter {
    /// An empty counter.
    pub fn new() -> Arc<Self> {
        Arc::new(DownloadCounter::default())
    }

    /// Counts one download of `version` of `project` on `registry` at `now` (Unix seconds).
    pub fn record(&self, registry: &str, project: &ProjectName, version: &str, now: i64) {
        let key = DownloadKey {
            registry: registry.to_owned(),
            project: project.as_str().to_owned(),
            version: version.to_owned(),
            day: now.div_euclid(DAY),
        };
        if let Ok(mut pending) = self.pending.lock() {
            *pending.entry(key).or_insert(0) += 1;
        }
    }

    /// Writes the pending counts to `store`; on failure they are kept for the next flush.
    pub async fn flush(&self, store: &dyn StateStore) -> Result<(), StateError> {
        let batch: Vec<(DownloadKey, u64)> = match self.pending.lock() {
            Ok(mut pending) => pending.drain().collect(),
            Err(_) => return Ok(()),
        };
        if batch.is_empty() {
            return Ok(());
        }
        let written = store.add_downloads(&batch).await;
        if written.is_err() {
            if let Ok(mut pending) = self.pending.lock() {
                for (key, count) in batch {
                    *pending.entry(key).or_insert(0) += count;
                }
            }
        }
        written
    }
}

/// Background service that flushes the counter now and then, and once more at shutdown.
pub struct DownloadFlusher {
    counter: Arc<DownloadCounter>,
    store: Arc<dyn StateStore>,
}

impl DownloadFlusher {
    /// A flusher of `counter` into `store`.
    pub fn new(counter: Arc<DownloadCounter>, store: Arc<dyn StateStore>) -> Self {
        DownloadFlusher { counter, store }
    }
}

#[async_trait]
impl BackgroundService for DownloadFlusher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if let Err(e) = self.counter.flush(self.store.as_ref()).await {
                        tracing::warn!(error = %e, "download counts could not be written at shutdown");
                    }
                    return;
                }
                _ = tick.tick() => {
                    if let Err(e) = self.counter.flush(self.store.as_ref()).await {
                        tracing::warn!(error = %e, "download counts could not be written; kept for the next try");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(protocol: Protocol, path: &str) -> Option<(String, String)> {
        downloaded(protocol, path).map(|(p, v)| (p.as_str().to_owned(), v))
    }

    #[test]
    fn npm_tarballs_name_their_package_and_version() {
        assert_eq!(
            found(Protocol::Npm, "/left-pad/-/left-pad-1.3.0.tgz"),
            Some(("left-pad".into(), "1.3.0".into()))
        );
        assert_eq!(
            found(Protocol::Npm, "/@acme/widget/-/widget-2.0.0-rc.1.tgz"),
            Some(("@acme/widget".into(), "2.0.0-rc.1".into()))
        );
        assert_eq!(
            found(Protocol::Npm, "/@acme%2fwidget/-/widget-2.0.0.tgz?x=1"),
            Some(("@acme/widget".into(), "2.0.0".into()))
        );
        for other in [
            "/left-pad",
            "/left-pad/-/other-1.0.0.tgz",
            "/left-pad/-/left-pad-.tgz",
            "/-/v1/search",
        ] {
            assert_eq!(found(Protocol::Npm, other), None, "{other}");
        }
    }

    #[test]
    fn pypi_files_name_their_project_and_version() {
        assert_eq!(
            found(Protocol::Pypi, "/packages/Demo_Pkg-1.0.tar.gz"),
            Some(("demo-pkg".into(), "1.0".into()))
        );
        assert_eq!(
            found(Protocol::Pypi, "/packages/demo_pkg-1.0-py3-none-any.whl"),
            Some(("demo-pkg".into(), "1.0".into()))
        );
        for other in ["/simple/demo/", "/packages/readme.txt", "/"] {
            assert_eq!(found(Protocol::Pypi, other), None, "{other}");
        }
    }

    #[test]
    fn counts_are_per_day_and_summed_in_memory() {
        let counter = DownloadCounter::default();
        let project = ProjectName::parse(Protocol::Npm, "left-pad").expect("name");
        counter.record("npm", &project, "1.0.0", 10 * DAY + 5);
        counter.record("npm", &project, "1.0.0", 10 * DAY + 99);
        counter.record("npm", &project, "1.0.0", 11 * DAY);
        let pending = counter.pending.lock().expect("lock");
        assert_eq!(pending.len(), 2);
        assert_eq!(pending.values().sum::<u64>(), 3);
    }
}
