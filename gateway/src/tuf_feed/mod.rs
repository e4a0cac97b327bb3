//! The TUF feed: every upload a backend committed and every file deletion it performed, for a
//! registry with `[registry.tuf]`, submitted to a Repository Service for TUF (RSTUF), which
//! signs the TUF metadata clients verify downloads against (PEP 458).
//!
//! The proxy queues events in the state store's outbox (`state::feed`) in the same
//! transaction that records the commit or deletion, so nothing waits on RSTUF. This
//! background service sends them: one replica per registry at a time (a lease in the store),
//! in id order, in batches, each RSTUF task followed until it reports success or failure.
//! An unreachable API or backend is retried with backoff without limit; a failure RSTUF
//! reports counts towards `max_attempts`, after which the event is set aside as failed for an
//! operator (`GET /tuf`, `POST /tuf/retry` on the admin listener). Reconciliation closes the
//! gaps a crash can leave: uploads still pending in the ledger are checked against the
//! backend, and deletions whose events were never queued are queued.
//!
//! Before it is submitted, a committed file is read back from the backend at its target path
//! and hashed: the metadata vouches for the bytes clients will download, and only when they
//! are the bytes the gateway let through (the ledger's length and SHA-256).

pub mod artifact;
pub mod batch;
pub mod queue;
mod reconcile;
pub mod rstuf;

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::Notify;

use self::artifact::Served;
use self::batch::Step;
use self::rstuf::{Artifact, RstufClient, RstufError, TaskOutcome};
use crate::clock::unix_now;
use crate::config::Registry;
use crate::metrics::Metrics;
use crate::state::{FeedAction, FeedEvent, FeedSettlement, StateStore};
use crate::trusted_publishing::backend::ProjectProbe;

/// How long a replica's lease on a registry's feed lasts without renewal.
const LEASE_SECONDS: i64 = 30;
/// How often the service looks for work when nothing wakes it.
const TICK: Duration = Duration::from_secs(1);
/// How often reconciliation runs.
const RECONCILE_SECONDS: i64 = 60;
/// How long a task may stay unfinished before its events are submitted again (RSTUF's add
/// and delete are idempotent; Celery reports a task it lost as pending forever).
const TASK_DEADLINE: Duration = Duration::from_secs(600);
/// How long reads of committed files back from the backend may take.
const BACKEND_READ_TIMEOUT: Duration = Duration::from_secs(600);

/// One fed registry and what the service keeps about it.
struct Fed {
    registry: Arc<Registry>,
    client: RstufClient,
    /// Consecutive passes that found the API or backend unreachable.
    outage: AtomicU32,
    /// When reconciliation is due next (Unix seconds).
    next_reconcile: AtomicI64,
}

/// The background service that sends the outbox to RSTUF.
pub struct TufFeeder {
    fed: Vec<Fed>,
    state: Arc<dyn StateStore>,
    probe: ProjectProbe,
    metrics: Arc<Metrics>,
    owner: String,
    wake: Arc<Notify>,
}

/// Why the feed could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("TUF feed of registry {registry}: {why}")]
pub struct FeedSetupError {
    registry: String,
    why: String,
}

impl TufFeeder {
    /// A feeder for every registry in `registries` with a feed; `None` when none has one.
    pub fn new(
        registries: &[Arc<Registry>],
        state: Arc<dyn StateStore>,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Result<Option<TufFeeder>, FeedSetupError> {
        let mut fed = Vec::new();
        for registry in registries {
            let Some(feed) = &registry.tuf else { continue };
            let client = RstufClient::new(feed).map_err(|e| FeedSetupError {
                registry: registry.name.clone(),
                why: e.to_string(),
            })?;
            metrics.tuf_feed_leader.with_label_values(&[&registry.name]).set(0);
            fed.push(Fed {
                registry: registry.clone(),
                client,
                outage: AtomicU32::new(0),
                next_reconcile: AtomicI64::new(0),
            });
        }
        if fed.is_empty() {
            return Ok(None);
        }
        let probe =
            ProjectProbe::new(fed.iter().map(|f| &f.registry), BACKEND_READ_TIMEOUT).map_err(|e| FeedSetupError {
                registry: fed[0].registry.name.clone(),
                why: e.to_string(),
            })?;
        let owner = format!(
            "{}-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "portcullis".to_owned()),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Ok(Some(TufFeeder {
            fed,
            state,
            probe,
            metrics,
            owner,
            wake,
        }))
    }

    /// One pass over `fed`: lease, reconcile when due, one step. Whether it did something
    /// (so the next pass should follow at once).
    async fn pass(&self, fed: &Fed, shutdown: &ShutdownWatch) -> bool {
        let name = fed.registry.name.as_str();
        let now = unix_now();
        let leader = match self.state.feed_lease(name, &self.owner, now + LEASE_SECONDS, now).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(registry = name, error = %e, "TUF feed: the lease could not be taken");
                false
            }
        };
        self.metrics
            .tuf_feed_leader
            .with_label_values(&[name])
            .set(i64::from(leader));
        if !leader {
            return false;
        }
        if fed.next_reconcile.load(Ordering::Relaxed) <= now {
            fed.next_reconcile.store(now + RECONCILE_SECONDS, Ordering::Relaxed);
            reconcile::run(self, fed, now).await;
        }
        let progressed = self.step(fed, shutdown).await;
        self.refresh_status(fed).await;
        progressed
    }

    async fn step(&self, fed: &Fed, shutdown: &ShutdownWatch) -> bool {
        let Some(feed) = &fed.registry.tuf else { return false };
        let name = fed.registry.name.as_str();
        // Index events ride along with files, so a batch of `batch` targets spans more events.
        let limit = u32::try_from(feed.batch.saturating_mul(4)).unwrap_or(u32::MAX);
        let open = match self.state.feed_open(name, limit).await {
            Ok(open) => open,
            Err(e) => {
                tracing::warn!(registry = name, error = %e, "TUF feed: the outbox could not be read");
                return false;
            }
        };
        match batch::next_step(feed, fed.registry.protocol, &open, unix_now()) {
            Step::Idle | Step::Wait { .. } => false,
            Step::Resume { task_id, events } => {
                let events: Vec<&FeedEvent> = events.into_iter().map(|(e, _)| e).collect();
                self.follow(fed, &task_id, &events, shutdown).await;
                true
            }
            Step::Add(chosen) => {
                self.send_adds(fed, &chosen, shutdown).await;
                true
            }
            Step::Delete(chosen) => {
                let paths: Vec<String> = chosen.iter().map(|(_, p)| p.clone()).collect();
                let events: Vec<&FeedEvent> = chosen.iter().map(|(e, _)| *e).collect();
                self.submit(fed, Submission::Delete(&paths), &events, shutdown).await;
                true
            }
        }
    }

    /// Reads the files and pages of an add batch back from the backend and submits them; an
    /// index page the backend no longer serves is removed instead.
    async fn send_adds(&self, fed: &Fed, chosen: &[(&FeedEvent, String)], shutdown: &ShutdownWatch) {
        let registry = &fed.registry;
        let mut artifacts: Vec<Artifact> = Vec::new();
        let mut adding: Vec<&FeedEvent> = Vec::new();
        let mut gone_paths: Vec<String> = Vec::new();
        let mut gone: Vec<&FeedEvent> = Vec::new();
        for (event, path) in chosen {
            if artifacts.iter().any(|a| a.path == *path) {
                // Another index event of the same page: the one read covers both.
                adding.push(event);
                continue;
            }
            if gone_paths.contains(path) {
                gone.push(event);
                continue;
            }
            let served = match (&event.action, &event.file) {
                (FeedAction::Add, Some(file)) => {
                    artifact::file(&self.probe, registry, &event.project, file, path).await
                }
                _ => artifact::index_page(&self.probe, registry, event, path).await,
            };
            match served {
                Ok(Served::Artifact(a)) => {
                    artifacts.push(a);
                    adding.push(event);
                }
                Ok(Served::Missing) if event.action == FeedAction::Index => {
                    gone_paths.push(path.clone());
                    gone.push(event);
                }
                Ok(Served::Missing) => {
                    let why = format!("the backend does not serve the committed file at /{path}");
                    self.give_up(fed, event, &why).await;
                }
                Ok(Served::Differs(why)) => self.give_up(fed, event, &why).await,
                Err(e) => {
                    // The backend is unreachable: the whole batch waits (order is kept).
                    let events: Vec<&FeedEvent> = chosen.iter().map(|(e, _)| *e).collect();
                    self.outage(fed, &events, &format!("reading back from the backend: {e}"))
                        .await;
                    return;
                }
            }
        }
        if !artifacts.is_empty() {
            self.submit(fed, Submission::Add(&artifacts), &adding, shutdown).await;
        }
        if !gone.is_empty() {
            self.submit(fed, Submission::Delete(&gone_paths), &gone, shutdown).await;
        }
    }

    /// Submits one task and follows it to its end.
    async fn submit(&self, fed: &Fed, submission: Submission<'_>, events: &[&FeedEvent], shutdown: &ShutdownWatch) {
        let answer = match submission {
            Submission::Add(artifacts) => fed.client.add(artifacts).await,
            Submission::Delete(paths) => fed.client.delete(paths).await,
        };
        let task_id = match answer {
            Ok(task_id) => task_id,
            Err(RstufError::Unavailable(why)) => {
                self.outage(fed, events, &format!("submitting to RSTUF: {why}")).await;
                return;
            }
            Err(RstufError::Refused(why)) => {
                self.reported_failure(fed, events, &why).await;
                return;
            }
        };
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        if let Err(e) = self.state.feed_submitted(&ids, &task_id).await {
            // The task runs anyway; the events stay queued and are submitted again (RSTUF's
            // add and delete are idempotent).
            tracing::warn!(registry = %fed.registry.name, task_id, error = %e, "TUF feed: a submission could not be recorded");
            return;
        }
        tracing::debug!(registry = %fed.registry.name, task_id, events = ids.len(), "TUF feed: submitted");
        self.follow(fed, &task_id, events, shutdown).await;
    }

    /// Polls `task_id` until it finishes (or the deadline passes: the events are submitted
    /// again), then settles `events`. Returns early, leaving them submitted, on shutdown.
    async fn follow(&self, fed: &Fed, task_id: &str, events: &[&FeedEvent], shutdown: &ShutdownWatch) {
        let Some(feed) = &fed.registry.tuf else { return };
        let name = fed.registry.name.as_str();
        let deadline = tokio::time::Instant::now() + TASK_DEADLINE;
        let mut last;
        let mut renewed = unix_now();
        let mut shutdown = shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(feed.poll_interval) => {}
            }
            let now = unix_now();
            if now - renewed >= LEASE_SECONDS / 3 {
                renewed = now;
                if let Err(e) = self.state.feed_lease(name, &self.owner, now + LEASE_SECONDS, now).await {
                    tracing::warn!(registry = name, error = %e, "TUF feed: the lease could not be renewed");
                }
            }
            match fed.client.task(task_id).await {
                Ok(TaskOutcome::Succeeded) => {
                    fed.outage.store(0, Ordering::Relaxed);
                    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
                    match self.state.feed_settle(&ids, &FeedSettlement::Done, unix_now()).await {
                        Ok(()) => {
                            for event in events {
                                self.count(name, event, "done");
                            }
                            tracing::info!(
                                registry = name,
                                task_id,
                                events = ids.len(),
                                "TUF feed: RSTUF published"
                            );
                        }
                        Err(e) => {
                            tracing::warn!(registry = name, task_id, error = %e, "TUF feed: could not record a finished task; its events are sent again")
                        }
                    }
                    return;
                }
                Ok(TaskOutcome::Failed(why)) => {
                    self.reported_failure(fed, events, &why).await;
                    return;
                }
                Ok(TaskOutcome::Running(state)) => last = format!("the task was still {state}"),
                Err(e) => {
                    self.metrics.tuf_feed_unavailable.with_label_values(&[name]).inc();
                    last = e.to_string();
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let why = format!("RSTUF task {task_id} did not finish in {TASK_DEADLINE:?} ({last})");
                self.outage(fed, events, &why).await;
                return;
            }
        }
    }

    /// RSTUF said no: each event is retried after a growing pause, or set aside once it has
    /// failed `max_attempts` times.
    async fn reported_failure(&self, fed: &Fed, events: &[&FeedEvent], why: &str) {
        let Some(feed) = &fed.registry.tuf else { return };
        let name = fed.registry.name.as_str();
        tracing::warn!(
            registry = name,
            events = events.len(),
            why,
            "TUF feed: RSTUF reported a failure"
        );
        let now = unix_now();
        for event in events {
            let (settlement, outcome) = if event.attempts + 1 >= feed.max_attempts {
                (
                    FeedSettlement::Failed {
                        error: format!("{why} ({} attempts)", event.attempts + 1),
                    },
                    "failed",
                )
            } else {
                (
                    FeedSettlement::Retry {
                        error: why.to_owned(),
                        at: now + batch::retry_after_failure(event.attempts),
                        counted: true,
                    },
                    "retried",
                )
            };
            self.settle(fed, event, &settlement, outcome).await;
        }
    }

    /// The API or the backend could not be reached: every event waits, uncounted, for a
    /// growing pause.
    async fn outage(&self, fed: &Fed, events: &[&FeedEvent], why: &str) {
        let name = fed.registry.name.as_str();
        self.metrics.tuf_feed_unavailable.with_label_values(&[name]).inc();
        let streak = fed.outage.fetch_add(1, Ordering::Relaxed);
        let pause = batch::retry_after_outage(streak);
        tracing::warn!(
            registry = name,
            events = events.len(),
            retry_in_seconds = pause,
            why,
            "TUF feed: waiting for RSTUF or the backend"
        );
        let settlement = FeedSettlement::Retry {
            error: why.to_owned(),
            at: unix_now() + pause,
            counted: false,
        };
        for event in events {
            self.settle(fed, event, &settlement, "retried").await;
        }
    }

    /// Sets one event aside: what the backend serves must never be signed.
    async fn give_up(&self, fed: &Fed, event: &FeedEvent, why: &str) {
        tracing::error!(registry = %fed.registry.name, event = event.id, why, "TUF feed: event set aside");
        let settlement = FeedSettlement::Failed { error: why.to_owned() };
        self.settle(fed, event, &settlement, "failed").await;
    }

    async fn settle(&self, fed: &Fed, event: &FeedEvent, settlement: &FeedSettlement, outcome: &str) {
        match self.state.feed_settle(&[event.id], settlement, unix_now()).await {
            Ok(()) => self.count(&fed.registry.name, event, outcome),
            Err(e) => {
                tracing::warn!(registry = %fed.registry.name, event = event.id, error = %e, "TUF feed: an event could not be settled")
            }
        }
    }

    fn count(&self, registry: &str, event: &FeedEvent, outcome: &str) {
        self.metrics
            .tuf_feed_events
            .with_label_values(&[registry, event.action.as_str(), outcome])
            .inc();
    }

    async fn refresh_status(&self, fed: &Fed) {
        let name = fed.registry.name.as_str();
        match self.state.feed_status(name).await {
            Ok(status) => {
                let open = status.queued + status.submitted;
                self.metrics
                    .tuf_feed_open
                    .with_label_values(&[name])
                    .set(i64::try_from(open).unwrap_or(i64::MAX));
                self.metrics
                    .tuf_feed_failed
                    .with_label_values(&[name])
                    .set(i64::try_from(status.failed).unwrap_or(i64::MAX));
                let lag = status.oldest_open_at.map_or(0, |at| (unix_now() - at).max(0));
                self.metrics.tuf_feed_lag.with_label_values(&[name]).set(lag);
            }
            Err(e) => tracing::warn!(registry = name, error = %e, "TUF feed: the outbox could not be counted"),
        }
    }
}

/// What one RSTUF task asks for.
enum Submission<'a> {
    Add(&'a [Artifact]),
    Delete(&'a [String]),
}

#[async_trait]
impl BackgroundService for TufFeeder {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tracing::info!(owner = %self.owner, registries = self.fed.len(), "TUF feed started");
        loop {
            let mut progressed = false;
            for fed in &self.fed {
                if *shutdown.borrow() {
                    return;
                }
                progressed |= self.pass(fed, &shutdown).await;
            }
            if progressed {
                continue;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }
}
