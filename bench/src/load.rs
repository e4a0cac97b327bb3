//! The load generator: keep-alive HTTP/1.1 connections (hyper's client connection API), each a
//! task on one thread, sending requests back to back, with bodies sent either with
//! `Content-Length` or chunked (a body stream without a known size). Every answer must be a
//! 2xx, read to its end; anything else counts as a failure and the connection is opened again.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Chunk size of chunked bodies (what a client streaming a file sends at a time).
const CHUNK: usize = 64 * 1024;

/// One kind of request to send.
#[derive(Clone, Debug)]
pub struct RequestSpec {
    /// Method.
    pub method: http::Method,
    /// Path and query.
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Body (empty for reads).
    pub body: Bytes,
    /// Send the body chunked instead of with `Content-Length`.
    pub chunked: bool,
}

impl RequestSpec {
    /// A GET.
    pub fn get(path: &str) -> RequestSpec {
        RequestSpec {
            method: http::Method::GET,
            path: path.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
            chunked: false,
        }
    }

    /// A POST of `body` with that content type.
    pub fn post(path: &str, content_type: &str, body: Bytes, chunked: bool) -> RequestSpec {
        let mut headers = Vec::new();
        if let Ok(value) = http::HeaderValue::from_str(content_type) {
            headers.push((http::header::CONTENT_TYPE, value));
        }
        RequestSpec {
            method: http::Method::POST,
            path: path.to_owned(),
            headers,
            body,
            chunked,
        }
    }

    fn build(&self, host: &str) -> Result<Request<BoxBody<Bytes, Infallible>>, http::Error> {
        let body = if self.body.is_empty() && !self.chunked {
            Full::new(Bytes::new()).boxed()
        } else if self.chunked {
            let data = self.body.clone();
            let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..data.len())
                .step_by(CHUNK)
                .map(|at| Ok(Frame::data(data.slice(at..(at + CHUNK).min(data.len())))))
                .collect();
            StreamBody::new(futures::stream::iter(chunks)).boxed()
        } else {
            Full::new(self.body.clone()).boxed()
        };
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .header(http::header::HOST, host);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder.body(body)
    }
}

/// When a run stops.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    /// After this long (requests in flight then finish).
    For(Duration),
    /// After this many requests in all.
    Requests(u64),
}

/// What a run measured.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Requests answered with a 2xx.
    pub ok: u64,
    /// Requests that failed (error, or not a 2xx).
    pub failed: u64,
    /// The first failure, for the report.
    pub first_failure: Option<String>,
    /// Latency of each successful request, µs.
    pub latencies_us: Vec<u32>,
    /// Request body bytes of the successful requests.
    pub body_bytes: u64,
    /// Wall time of the run.
    pub wall: Duration,
}

impl Outcome {
    /// The `q` quantile (0 to 1) of latency, ms.
    pub fn latency_ms(&mut self, q: f64) -> f64 {
        self.latencies_us.sort_unstable();
        crate::stats::quantile_ms(&self.latencies_us, q)
    }

    /// Successful requests per second.
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn merge(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.failed += other.failed;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        self.latencies_us.extend(other.latencies_us);
        self.body_bytes += other.body_bytes;
    }
}

/// An open client connection.
pub struct Connection {
    sender: SendRequest<BoxBody<Bytes, Infallible>>,
    host: String,
}

impl Connection {
    /// Opens a connection.
    pub async fn open(addr: SocketAddr) -> Result<Connection, String> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection {
            sender,
            host: addr.to_string(),
        })
    }

    /// Sends one request and reads the whole answer; its latency, or why it failed.
    pub async fn send(&mut self, spec: &RequestSpec) -> Result<Duration, String> {
        let request = spec.build(&self.host).map_err(|e| format!("request: {e}"))?;
        let started = Instant::now();
        self.sender.ready().await.map_err(|e| format!("connection: {e}"))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("answer body: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
        Ok(started.elapsed())
    }
}

async fn client(
    addr: SocketAddr,
    specs: Arc<Vec<RequestSpec>>,
    first: usize,
    limit: Limit,
    started: Instant,
    issued: Arc<AtomicU64>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut next = first;
    let mut connection: Option<Connection> = None;
    loop {
        match limit {
            Limit::For(duration) if started.elapsed() >= duration => break,
            Limit::Requests(n) if issued.fetch_add(1, Ordering::Relaxed) >= n => break,
            _ => {}
        }
        let spec = &specs[next % specs.len()];
        next += 1;
        if connection.is_none() {
            match Connection::open(addr).await {
                Ok(c) => connection = Some(c),
                Err(e) => {
                    outcome.failed += 1;
                    outcome.first_failure.get_or_insert(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(open) = connection.as_mut() else { continue };
        match open.send(spec).await {
            Ok(took) => {
                outcome.ok += 1;
                outcome.body_bytes += spec.body.len() as u64;
                outcome
                    .latencies_us
                    .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
            }
            Err(e) => {
                outcome.failed += 1;
                outcome.first_failure.get_or_insert(e);
                connection = None;
            }
        }
    }
    outcome
}

/// Runs `concurrency` keep-alive clients against `addr` until `limit`, client `i` sending
/// `specs[i], specs[i + 1], …` in turn. Runs on the calling thread's runtime.
pub async fn run(addr: SocketAddr, specs: Vec<RequestSpec>, concurrency: usize, limit: Limit) -> Outcome {
    let specs = Arc::new(specs);
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| tokio::spawn(client(addr, specs.clone(), i, limit, started, issued.clone())))
        .collect();
    let mut total = Outcome::default();
    for task in tasks {
        match task.await {
            Ok(outcome) => total.merge(outcome),
            Err(e) => {
                total.failed += 1;
                total.first_failure.get_or_insert(format!("client task: {e}"));
            }
        }
    }
    total.wall = started.elapsed();
    total
}

/// Opens `count` connections (at most `parallel` opening at once), each sending one read of
/// `path`, and keeps them open; also returns how many failed to open or answer.
pub async fn open_idle(addr: SocketAddr, count: usize, parallel: usize, path: &str) -> (Vec<Connection>, u64) {
    let spec = Arc::new(RequestSpec::get(path));
    let mut open = Vec::with_capacity(count);
    let mut failed = 0;
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut started = 0;
    use futures::StreamExt;
    loop {
        while started < count && pending.len() < parallel {
            let spec = spec.clone();
            pending.push(async move {
                let mut connection = Connection::open(addr).await?;
                connection.send(&spec).await?;
                Ok::<_, String>(connection)
            });
            started += 1;
        }
        match pending.next().await {
            Some(Ok(connection)) => open.push(connection),
            Some(Err(_)) => failed += 1,
            None => break,
        }
    }
    (open, failed)
}

/// Sends one more read on each held connection; how many were answered.
pub async fn probe_idle(connections: &mut [Connection], path: &str) -> u64 {
    let spec = RequestSpec::get(path);
    let mut answered = 0;
    for chunk in connections.chunks_mut(512) {
        let results = futures::future::join_all(chunk.iter_mut().map(|c| c.send(&spec))).await;
        answered += results.iter().filter(|r| r.is_ok()).count() as u64;
    }
    answered
}
