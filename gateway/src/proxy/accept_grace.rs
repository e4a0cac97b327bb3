//! Shutdown without dropping connections that were just accepted.
//!
//! When pingora stops a listening service it ends the accept loops and at once tells the
//! proxy to abandon every connection still waiting for a request head. That includes a
//! connection accepted a moment before the signal whose head is still on the wire: its
//! client sees the connection close without an answer (found by the graceful-upgrade test,
//! 1 request in ~7,000). [`AcceptGrace`] wraps the proxy application and lets such
//! connections have their head read first: abandonment comes a short while after the
//! listeners have stopped, not in the same instant. Requests that arrive in that while are
//! served with keep-alive off, so their clients reconnect to the new process.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

/// How long, at most, a connection accepted just before shutdown has to send its head.
pub const DEFAULT_ACCEPT_GRACE: Duration = Duration::from_secs(1);

/// A [`ServerApp`] that delays the wrapped application's cleanup (abandoning connections
/// idle in their head) by a grace period after the listeners stop.
pub struct AcceptGrace<A> {
    inner: Arc<A>,
    grace: Duration,
}

impl<A> AcceptGrace<A> {
    /// Wraps `inner`; its cleanup runs `grace` after the listeners stop.
    pub fn new(inner: A, grace: Duration) -> Self {
        AcceptGrace {
            inner: Arc::new(inner),
            grace,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for AcceptGrace<A> {
    async fn process_new(self: &Arc<Self>, session: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(self.grace).await;
        self.inner.cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    struct Recorder(AtomicBool);

    #[async_trait]
    impl ServerApp for Recorder {
        async fn process_new(self: &Arc<Self>, _session: Stream, _shutdown: &ShutdownWatch) -> Option<Stream> {
            None
        }
        async fn cleanup(&self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn cleanup_reaches_the_inner_application_after_the_grace() {
        let app = AcceptGrace::new(Recorder(AtomicBool::new(false)), Duration::from_millis(150));
        let started = Instant::now();
        app.cleanup().await;
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert!(app.inner.0.load(Ordering::SeqCst), "inner cleanup ran");
    }
}
