//! Time limits on slow clients (slowloris).
//!
//! pingora times out each read of a request on its own (60 s by default): a client that sends
//! one byte of its head every few seconds, or trickles its body, holds a connection (and, for
//! a body, a backend connection) for as long as it likes. Two limits close that:
//!
//! - [`HeadTimeout`] wraps the proxy application and drops a connection whose request head has
//!   not fully arrived `header_timeout` after the accept, or `idle_timeout` after the end of
//!   the previous request on it (the keep-alive idle timeout, which pingora does not have for
//!   downstream HTTP/1.1 connections). The proxy tells it when a head has arrived
//!   ([`HeadClocks::head_received`], from `early_request_filter`) and when a request has ended
//!   ([`HeadClocks::request_done`], from `logging`). Only a whole head is visible from here, so
//!   on a kept-alive connection the next head must be complete within `idle_timeout`.
//! - [`body_too_slow`] is checked on every body chunk: once a body has taken longer than
//!   `header_timeout`, its average rate must be at least `min_body_rate`, or the request is
//!   refused with `408 request_timeout` (and the partial body upstream ends in a reset).
//!
//! A body that stops altogether runs into the per-read `read_timeout` the proxy sets on each
//! request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Stream, UniqueIDType};
use pingora::server::ShutdownWatch;
use tokio::sync::Notify;

/// One connection's head clock: `Some(deadline)` while a request head is awaited.
#[derive(Debug)]
struct Clock {
    deadline: Mutex<Option<Instant>>,
    changed: Notify,
}

impl Clock {
    fn set(&self, value: Option<Instant>) {
        if let Ok(mut state) = self.deadline.lock() {
            *state = value;
        }
        self.changed.notify_one();
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline.lock().map(|s| *s).unwrap_or(None)
    }

    /// Resolves once a head awaited is past its deadline.
    async fn expired(&self) {
        loop {
            match self.deadline() {
                Some(deadline) => {
                    if Instant::now() >= deadline {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline.into()) => {}
                        _ = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

/// The head clocks of the open client connections, by connection id.
#[derive(Debug)]
pub struct HeadClocks {
    clocks: Mutex<HashMap<UniqueIDType, Arc<Clock>>>,
    /// How long a new connection has for its first head.
    head_limit: Duration,
    /// How long a kept-alive connection has for its next head.
    idle_limit: Duration,
}

impl HeadClocks {
    /// No connections yet; a first head must arrive within `head_limit` of the accept, the
    /// next one on a kept-alive connection within `idle_limit` of the previous request's end.
    pub fn new(head_limit: Duration, idle_limit: Duration) -> Arc<Self> {
        Arc::new(HeadClocks {
            clocks: Mutex::default(),
            head_limit,
            idle_limit,
        })
    }

    fn register(&self, id: UniqueIDType) -> Arc<Clock> {
        let clock = Arc::new(Clock {
            deadline: Mutex::new(Some(Instant::now() + self.head_limit)),
            changed: Notify::new(),
        });
        if let Ok(mut clocks) = self.clocks.lock() {
            clocks.insert(id, clock.clone());
        }
        clock
    }

    fn unregister(&self, id: UniqueIDType, clock: &Arc<Clock>) {
        if let Ok(mut clocks) = self.clocks.lock() {
            // The id (a file descriptor) may already belong to a newer connection.
            if clocks.get(&id).is_some_and(|c| Arc::ptr_eq(c, clock)) {
                clocks.remove(&id);
            }
        }
    }

    fn get(&self, id: UniqueIDType) -> Option<Arc<Clock>> {
        self.clocks.lock().ok().and_then(|c| c.get(&id).cloned())
    }

    /// The head of a request on connection `id` has arrived: stop its clock.
    pub fn head_received(&self, id: UniqueIDType) {
        if let Some(clock) = self.get(id) {
            clock.set(None);
        }
    }

    /// A request on connection `id` has ended: the next head is awaited from now, for at most
    /// the idle limit.
    pub fn request_done(&self, id: UniqueIDType) {
        if let Some(clock) = self.get(id) {
            clock.set(Some(Instant::now() + self.idle_limit));
        }
    }

    /// How many connections are tracked (for tests).
    pub fn len(&self) -> usize {
        self.clocks.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Whether no connection is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A [`ServerApp`] that drops connections whose request head does not arrive in time.
pub struct HeadTimeout<A> {
    inner: Arc<A>,
    clocks: Arc<HeadClocks>,
}

impl<A> HeadTimeout<A> {
    /// Wraps `inner`; heads must arrive within the limits of `clocks`, as the proxy tells it.
    pub fn new(inner: A, clocks: Arc<HeadClocks>) -> Self {
        HeadTimeout {
            inner: Arc::new(inner),
            clocks,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeadTimeout<A> {
    async fn process_new(self: &Arc<Self>, session: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let id = session.id();
        let clock = self.clocks.register(id);
        let served = tokio::select! {
            biased;
            served = self.inner.process_new(session, shutdown) => served,
            () = clock.expired() => {
                tracing::debug!(connection = id, "no request head in time (header or idle timeout); closing");
                None
            }
        };
        self.clocks.unregister(id, &clock);
        served
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// Whether a body that has received `bytes` since `started` is too slow: it has taken longer
/// than `grace` and its average rate is below `min_rate` bytes per second (0: never).
pub fn body_too_slow(bytes: u64, started: Instant, now: Instant, grace: Duration, min_rate: u64) -> bool {
    let elapsed = now.saturating_duration_since(started);
    if min_rate == 0 || elapsed <= grace {
        return false;
    }
    (bytes as f64) < (min_rate as f64) * elapsed.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_bodies_are_judged_only_after_the_grace() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(2);
        assert!(!body_too_slow(0, t0, t0 + Duration::from_secs(1), grace, 1024));
        assert!(body_too_slow(100, t0, t0 + Duration::from_secs(3), grace, 1024));
        assert!(!body_too_slow(4096, t0, t0 + Duration::from_secs(3), grace, 1024));
        assert!(
            !body_too_slow(0, t0, t0 + Duration::from_secs(300), grace, 0),
            "0 turns it off"
        );
    }

    #[tokio::test]
    async fn a_clock_expires_only_while_a_head_is_awaited_after_the_limit_of_its_kind() {
        let head = Duration::from_secs(1);
        let idle = Duration::from_millis(60);
        let clocks = HeadClocks::new(head, idle);
        let started = Instant::now();
        let clock = clocks.register(7);
        tokio::time::timeout(Duration::from_secs(5), clock.expired())
            .await
            .expect("a first head not in time expires");
        assert!(started.elapsed() >= head, "the first head has the header limit");
        clocks.head_received(7);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), clock.expired())
                .await
                .is_err(),
            "no head awaited: no expiry"
        );
        clocks.request_done(7);
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(2), clock.expired())
            .await
            .expect("expires after the request ended");
        let waited = started.elapsed();
        assert!(
            waited >= idle && waited < head,
            "the next head has the idle limit: {waited:?}"
        );
        clocks.unregister(7, &clock);
        assert!(clocks.is_empty());
    }

    #[test]
    fn a_reused_id_is_not_unregistered_by_the_old_connection() {
        let clocks = HeadClocks::new(Duration::from_secs(1), Duration::from_secs(1));
        let old = clocks.register(3);
        let new = clocks.register(3);
        clocks.unregister(3, &old);
        assert_eq!(clocks.len(), 1);
        clocks.unregister(3, &new);
        assert!(clocks.is_empty());
    }
}
