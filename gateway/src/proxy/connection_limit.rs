//! A bound on open client connections.
//!
//! pingora accepts every connection its listeners see and keeps each kept-alive one with its
//! buffers and task: memory grows with the number of clients until the kernel kills the process
//! (the Kubernetes base limits the pod's memory). [`ConnectionLimit`] wraps the proxy application
//! and counts the connections it serves. Past `max_connections` a new connection is answered at
//! once with `503 too_many_connections` (JSON, `Retry-After`, `Connection: close`) instead of
//! being served, and counted; the connections already open keep being served.
//!
//! The answer is written before the request is read (HTTP/1.1 lets a server answer early and
//! close, as nginx does for `limit_conn`), then the connection is closed gracefully: the write
//! side is shut and what the client sends is read and dropped for a short while, so that its
//! request bytes do not turn the close into a reset that would hide the answer from it. At most
//! [`MAX_LINGERING`] refused connections linger at once; beyond that they are closed at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::Refusal;

/// How long a refused connection is drained before it is closed.
const LINGER: Duration = Duration::from_millis(500);
/// How many bytes of a refused connection are read and dropped at most.
const LINGER_BYTES: usize = 64 * 1024;
/// How many refused connections may linger at once.
pub const MAX_LINGERING: usize = 256;

/// The counters the limit reports to.
#[derive(Clone)]
pub struct ConnectionGauges {
    /// Client connections open (served).
    pub open: IntGauge,
    /// Client connections refused at the limit.
    pub refused: IntCounter,
}

/// A [`ServerApp`] that serves at most `max` client connections at once.
pub struct ConnectionLimit<A> {
    inner: Arc<A>,
    max: usize,
    open: AtomicUsize,
    lingering: AtomicUsize,
    gauges: ConnectionGauges,
}

impl<A> ConnectionLimit<A> {
    /// Wraps `inner`; at most `max` connections are served at once.
    pub fn new(inner: A, max: usize, gauges: ConnectionGauges) -> Self {
        ConnectionLimit {
            inner: Arc::new(inner),
            max,
            open: AtomicUsize::new(0),
            lingering: AtomicUsize::new(0),
            gauges,
        }
    }
}

/// A place taken in a bounded count, given back when dropped (however the task ends).
struct Place<'a>(&'a AtomicUsize);

impl<'a> Place<'a> {
    /// Takes a place in `count` if it is below `max`.
    fn take(count: &'a AtomicUsize, max: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Place(count))
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Keeps the open-connections gauge in step with a served connection.
struct Counted<'a>(&'a IntGauge);

impl<'a> Counted<'a> {
    fn new(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        Counted(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionLimit<A> {
    async fn process_new(self: &Arc<Self>, session: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let Some(_place) = Place::take(&self.open, self.max) else {
            self.gauges.refused.inc();
            tracing::debug!(max = self.max, "connection limit reached; refusing a new connection");
            // Boxed: its drain buffer would otherwise sit in every served connection's future.
            Box::pin(refuse(session, &self.lingering)).await;
            return None;
        };
        let _counted = Counted::new(&self.gauges.open);
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// The answer a refused connection gets.
fn refusal_response() -> Vec<u8> {
    let refusal = Refusal::TooManyConnections;
    let body = refusal.body("");
    let mut response = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        refusal.status(),
        refusal.reason_phrase(),
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}

/// Answers a connection refused at the limit and closes it gracefully (see the module's doc).
async fn refuse(mut session: Stream, lingering: &AtomicUsize) {
    if session.write_all(&refusal_response()).await.is_err() || session.flush().await.is_err() {
        return;
    }
    let Some(_lingers) = Place::take(lingering, MAX_LINGERING) else {
        return;
    };
    let _ = session.shutdown().await;
    let mut buffer = [0u8; 4096];
    let mut drained = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while drained < LINGER_BYTES {
            match session.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_and_given_back_when_dropped() {
        let count = AtomicUsize::new(0);
        let first = Place::take(&count, 2).expect("first");
        let second = Place::take(&count, 2).expect("second");
        assert!(Place::take(&count, 2).is_none(), "the third is over the limit");
        drop(first);
        let third = Place::take(&count, 2).expect("a place was given back");
        drop((second, third));
        assert_eq!(count.load(Ordering::Acquire), 0);
    }

    #[test]
    fn the_refusal_is_a_whole_http_response_with_a_json_code() {
        let response = refusal_response();
        let text = String::from_utf8(response).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(json["code"], "too_many_connections");
    }
}
