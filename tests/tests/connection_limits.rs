//! `[client] max_connections` and `idle_timeout` against the real gateway in front of the
//! recording sink: more idle connections than the limit are held; the ones past it are
//! answered `503 too_many_connections` and closed (and reach no backend), the connections
//! already open keep being served, the gateway stays up, and idle kept-alive connections are
//! closed after the idle timeout, after which new connections are served again.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use portcullis_e2e::gateway::{Gateway, RegistrySpec};
use portcullis_e2e::sink::Sink;
use portcullis_e2e::{http, wait_until};

const LIMIT: usize = 40;
/// Kept-alive connections that have made one request and then idle.
const KEPT: usize = 30;
/// Connections that never send anything.
const SILENT: usize = LIMIT - KEPT;
/// Connections opened past the limit.
const OVER: usize = 60;

fn get_on(stream: &mut TcpStream, path: &str) -> http::Response {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: registry.test\r\n\r\n").as_bytes())
        .expect("write request");
    http::read_response(stream).expect("a response")
}

/// Whether the gateway closed `stream` (EOF or reset) within `limit`, sending nothing.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

fn connections(gateway: &Gateway) -> f64 {
    gateway.metric("portcullis_client_connections")
}

#[test]
fn idle_connections_past_the_limit_are_refused_and_the_gateway_keeps_serving() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gateway = Gateway::builder()
        .registry(RegistrySpec::new("pypi", "pypi", sink.addr()))
        .config(&format!(
            "[client]\nmax_connections = {LIMIT}\nheader_timeout = \"5s\"\nidle_timeout = \"5s\"\n"
        ))
        .start(dir.path());
    let addr: SocketAddr = gateway.addr();

    // Up to the limit: kept-alive connections after one request each, then silent ones.
    let mut kept: Vec<TcpStream> = (0..KEPT)
        .map(|i| {
            let mut stream = http::connect(addr);
            let r = get_on(&mut stream, &format!("/simple/kept-{i}/"));
            assert_eq!(r.status, 200, "kept-{i}");
            stream
        })
        .collect();
    let mut silent: Vec<TcpStream> = (0..SILENT).map(|_| http::connect(addr)).collect();
    assert!(
        wait_until(Duration::from_secs(5), || connections(&gateway) == LIMIT as f64),
        "the gateway serves {} connections, expected {LIMIT}",
        connections(&gateway)
    );

    // Past the limit: each new connection is answered at once and closed; its request never
    // reaches the backend.
    let started = Instant::now();
    for i in 0..OVER {
        let mut stream = http::connect(addr);
        let r = get_on(&mut stream, &format!("/simple/over-{i}/"));
        assert_eq!(r.status, 503, "over-{i}: {r:?}");
        assert_eq!(r.json()["code"], "too_many_connections", "over-{i}");
        assert_eq!(r.header("retry-after"), Some("1"), "over-{i}");
        assert_eq!(r.header("connection"), Some("close"), "over-{i}");
        assert!(closed_within(&mut stream, Duration::from_secs(2)), "over-{i} is closed");
    }
    eprintln!("{OVER} connections past the limit refused in {:?}", started.elapsed());
    assert_eq!(
        gateway.metric("portcullis_client_connections_refused_total"),
        OVER as f64
    );
    assert_eq!(connections(&gateway), LIMIT as f64);

    // The connections already open keep being served, on the same sockets.
    for (i, stream) in kept.iter_mut().enumerate() {
        let r = get_on(stream, &format!("/simple/kept-again-{i}/"));
        assert_eq!(r.status, 200, "kept-again-{i}");
    }
    let first = get_on(&mut silent[0], "/simple/silent-0/");
    assert_eq!(
        first.status, 200,
        "a silent connection admitted before the limit is served"
    );
    assert!(gateway.process().try_exit().is_none(), "the gateway is up");

    // The backend saw exactly the admitted requests.
    let mut seen: Vec<String> = sink.seen().into_iter().map(|s| s.path).collect();
    seen.sort();
    let mut expected: Vec<String> = (0..KEPT)
        .flat_map(|i| [format!("/simple/kept-{i}/"), format!("/simple/kept-again-{i}/")])
        .chain(["/simple/silent-0/".to_owned()])
        .collect();
    expected.sort();
    assert_eq!(seen, expected);

    // Idle kept-alive connections are closed after the idle timeout, silent ones after the
    // header timeout; then the gateway serves new connections again.
    let idle_started = Instant::now();
    for (i, stream) in kept.iter_mut().chain(silent.iter_mut()).enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(15)),
            "connection {i} still open after {:?}",
            idle_started.elapsed()
        );
    }
    let closed_after = idle_started.elapsed();
    eprintln!("idle connections closed {closed_after:?} after their last request");
    assert!(
        closed_after >= Duration::from_secs(4),
        "closed by the idle timeout, not before: {closed_after:?}"
    );
    assert!(wait_until(Duration::from_secs(5), || connections(&gateway) == 0.0));
    assert_eq!(http::get(addr, "/simple/after-idle/").status, 200);
}
