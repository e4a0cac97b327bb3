//! Request smuggling and HTTP abuse, over raw sockets, against the real gateway in front of the
//! recording sink. Every case checks what the client got (status and refusal `code`, or a
//! closed connection) and what the backend saw: no second (smuggled) request, no altered
//! request, and nothing at all where the request is refused on its head.
//!
//! One gateway serves an npm registry under `/npm` and a PyPI registry at `/`, both over the
//! sink; projects named `blocked-*` are denied on both. Body-carrying requests that the gateway
//! forwards without inspecting use npm's `POST /-/npm/v1/security/advisories/bulk` (an account
//! request), tagged with `?case=<name>` so the sink's record can be matched to the case.
//! docs/hardening/http-abuse.md lists every case and its outcome.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use portcullis_e2e::gateway::{Gateway, RegistrySpec};
use portcullis_e2e::sink::{Ending, Seen, Sink};
use portcullis_e2e::{http, sha256_hex, wait_until};

const RULES: &str = r#"
[registries.pypi]
max_upload_bytes = "1 MiB"
[[registries.pypi.projects]]
id = "deny-blocked"
names = ["blocked-*"]
action = "deny"

[registries.npm]
max_upload_bytes = "1 MiB"
[[registries.npm.projects]]
id = "deny-blocked"
names = ["blocked-*"]
action = "deny"
"#;

/// The npm account endpoint whose body the gateway forwards untouched.
const BULK: &str = "/npm/-/npm/v1/security/advisories/bulk";
/// The same path as the backend sees it (the `/npm` prefix is stripped).
const BULK_UPSTREAM: &str = "/-/npm/v1/security/advisories/bulk";

struct Setup {
    sink: Sink,
    gateway: Gateway,
    _dir: tempfile::TempDir,
}

fn setup(config: &str) -> Setup {
    let sink = Sink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = Gateway::builder()
        .registry({
            let mut r = RegistrySpec::new("npm", "npm", sink.addr());
            r.extra = "path_prefix = \"/npm\"".into();
            r
        })
        .registry(RegistrySpec::new("pypi", "pypi", sink.addr()))
        .rules(RULES)
        .config(config)
        .start(dir.path());
    Setup {
        sink,
        gateway,
        _dir: dir,
    }
}

impl Setup {
    fn addr(&self) -> SocketAddr {
        self.gateway.addr()
    }

    /// Sends a normal request on a new connection and waits until the sink has it: what
    /// earlier cases forwarded has then been recorded too.
    fn settle(&self, tag: &str) -> Vec<Seen> {
        let path = format!("/simple/settle-{tag}/");
        let r = http::get(self.addr(), &path);
        assert_eq!(r.status, 200, "settle request: {}", r.text());
        assert!(wait_until(Duration::from_secs(5), || !self
            .sink
            .seen_at(&path)
            .is_empty()));
        // A refused body that was partly forwarded ends (reset) just after the refusal.
        std::thread::sleep(Duration::from_millis(100));
        self.sink.seen()
    }

    /// What the sink recorded for requests whose target contains `needle`.
    fn seen_with(&self, needle: &str) -> Vec<Seen> {
        self.sink
            .seen()
            .into_iter()
            .filter(|s| s.path.contains(needle))
            .collect()
    }

    /// Nothing smuggled ever reached the backend, and no request it saw was malformed.
    fn assert_nothing_smuggled(&self) {
        let seen = self.sink.seen();
        for s in &seen {
            assert!(
                !s.path.contains("smuggled") && !s.method.contains("smuggled"),
                "a smuggled request reached the backend: {s:?}"
            );
            assert!(
                matches!(
                    s.method.as_str(),
                    "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "OPTIONS"
                ),
                "the backend saw a request with method {:?} (a desync?): {s:?}",
                s.method
            );
            assert!(s.path.starts_with('/'), "the backend saw a target {:?}: {s:?}", s.path);
        }
    }
}

/// One response as the client read it.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    /// The refusal `code` when the body is the gateway's JSON refusal.
    fn code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v.get("code")?.as_str().map(str::to_owned)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Everything the client got on one connection.
#[derive(Debug)]
struct Exchange {
    replies: Vec<Reply>,
    /// The gateway closed (or reset) the connection.
    closed: bool,
}

impl Exchange {
    fn statuses(&self) -> Vec<u16> {
        self.replies.iter().map(|r| r.status).collect()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses one response from the front of `buf`; `None` while incomplete. A response without
/// framing runs to the close, so it is complete only once `closed`.
fn parse_reply(buf: &[u8], closed: bool) -> Option<(Reply, usize)> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let rest = &buf[head_end..];
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Some((
            Reply {
                status,
                headers,
                body: Vec::new(),
            },
            head_end,
        ));
    }
    if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if rest.len() < len {
            return None;
        }
        return Some((
            Reply {
                status,
                headers,
                body: rest[..len].to_vec(),
            },
            head_end + len,
        ));
    }
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = find(&rest[at..], b"\r\n")?;
            let size_text = String::from_utf8_lossy(&rest[at..at + line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at += line_end + 2;
            if size == 0 {
                let trailer_end = find(&rest[at..], b"\r\n")?;
                at += trailer_end + 2;
                return Some((Reply { status, headers, body }, head_end + at));
            }
            if rest.len() < at + size + 2 {
                return None;
            }
            body.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
    }
    closed.then(|| {
        (
            Reply {
                status,
                headers,
                body: rest.to_vec(),
            },
            buf.len(),
        )
    })
}

fn parse_replies(buf: &[u8], closed: bool) -> Vec<Reply> {
    let mut replies = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match parse_reply(&buf[at..], closed) {
            Some((reply, used)) => {
                replies.push(reply);
                at += used;
            }
            None => break,
        }
    }
    replies
}

/// Reads replies until the connection closes, or `expect` replies have come and nothing more
/// for 300 ms, or `limit` passes.
fn read_replies(stream: &mut TcpStream, expect: usize, limit: Duration) -> Exchange {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    let started = Instant::now();
    let mut idle_since = Instant::now();
    let mut buf = Vec::new();
    let mut closed = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                idle_since = Instant::now();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
        if parse_replies(&buf, false).len() >= expect && idle_since.elapsed() >= Duration::from_millis(300) {
            break;
        }
        if started.elapsed() >= limit {
            break;
        }
    }
    Exchange {
        replies: parse_replies(&buf, closed),
        closed,
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .expect("write timeout");
    stream
}

/// Writes `bytes` on a new connection (stopping at the first write error: the gateway may
/// answer and close early) and reads what comes back.
fn exchange(addr: SocketAddr, bytes: &[u8], expect: usize) -> Exchange {
    let mut stream = connect(addr);
    for piece in bytes.chunks(64 * 1024) {
        if stream.write_all(piece).is_err() {
            break;
        }
    }
    read_replies(&mut stream, expect, Duration::from_secs(10))
}

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Refused by the gateway with this status and JSON `code`, connection closed.
    Refused(u16, &'static str),
    /// Refused before the gateway could read the head: pingora's own `400` (no JSON body: there
    /// is no request to attach a refusal to), connection closed.
    Unparseable,
    /// Refused with a 400 or just closed (the gateway may stop reading before the client has
    /// finished writing, and the client may then see a reset instead of the answer).
    BadOrClosed,
    /// Forwarded: the sink answered 200 to the single request.
    Forwarded,
}

fn check_reply(name: &str, got: &Exchange, want: Want) {
    match want {
        Want::Refused(status, code) => {
            assert_eq!(got.statuses(), vec![status], "{name}: {got:?}");
            assert_eq!(got.replies[0].code().as_deref(), Some(code), "{name}: {got:?}");
            assert!(got.replies[0].header("x-request-id").is_some(), "{name}: {got:?}");
            // Closed at once, or (with body bytes still coming) after a lingering drain.
            assert!(
                got.closed || got.replies[0].header("connection") == Some("close"),
                "{name}: the connection must be closed after the refusal: {got:?}"
            );
        }
        Want::Unparseable => {
            assert_eq!(got.statuses(), vec![400], "{name}: {got:?}");
            assert!(got.closed, "{name}: the connection must be closed");
        }
        Want::BadOrClosed => {
            assert!(
                got.statuses().is_empty() || got.statuses() == vec![400],
                "{name}: {got:?}"
            );
            assert!(got.closed, "{name}: the connection must be closed");
        }
        Want::Forwarded => {
            assert_eq!(got.statuses(), vec![200], "{name}: {got:?}");
            assert_eq!(
                got.replies[0].header("via"),
                Some("1.1 portcullis"),
                "{name}: the answer must come from the backend"
            );
        }
    }
}

/// A request to the untouched-body endpoint for case `name`, with extra head lines (each
/// ending in CRLF) and raw body bytes.
fn bulk(name: &str, head_lines: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("POST {BULK}?case={name} HTTP/1.1\r\nHost: registry.test\r\n{head_lines}\r\n").into_bytes();
    out.extend_from_slice(body);
    out
}

/// A smuggled request in the bytes after a body.
fn smuggled(name: &str) -> String {
    format!("GET /npm/smuggled-{name} HTTP/1.1\r\nHost: registry.test\r\n\r\n")
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    want: Want,
    /// For `Forwarded`: the body the backend must receive, whole.
    body: &'static [u8],
}

/// Runs cases, each on its own connection, then checks the sink: a forwarded case arrived
/// once with its method, path and body unchanged; a refused one never arrived whole.
fn run_cases(s: &Setup, cases: &[Case]) {
    let mut outcomes = Vec::new();
    for case in cases {
        let got = exchange(s.addr(), &case.bytes, 1);
        eprintln!(
            "{}: {:?} {:?} closed={}",
            case.name,
            got.statuses(),
            got.replies.iter().map(Reply::code).collect::<Vec<_>>(),
            got.closed
        );
        outcomes.push(got);
    }
    for seen in s.settle(cases[0].name) {
        eprintln!(
            "backend saw: {} {} {:?} {} bytes {:?}",
            seen.method, seen.path, seen.headers, seen.body_bytes, seen.ending
        );
    }
    for (case, got) in cases.iter().zip(&outcomes) {
        check_reply(case.name, got, case.want);
        let tag = format!("case={}", case.name);
        let seen = s.seen_with(&tag);
        match case.want {
            Want::Forwarded => {
                assert_eq!(seen.len(), 1, "{}: forwarded once: {seen:?}", case.name);
                let seen = &seen[0];
                assert_eq!(seen.method, "POST", "{}", case.name);
                assert_eq!(seen.path, format!("{BULK_UPSTREAM}?{tag}"), "{}", case.name);
                assert_eq!(seen.ending, Ending::Complete, "{}", case.name);
                assert_eq!(seen.body_bytes, case.body.len() as u64, "{}: body length", case.name);
                assert_eq!(seen.body_sha256, sha256_hex(case.body), "{}: body changed", case.name);
                // Framing reaches the backend in one unambiguous form.
                let framing: Vec<_> = seen
                    .headers
                    .iter()
                    .filter(|(n, _)| n == "content-length" || n == "transfer-encoding")
                    .collect();
                assert_eq!(
                    framing.len(),
                    1,
                    "{}: one framing header upstream: {framing:?}",
                    case.name
                );
                if framing[0].0 == "transfer-encoding" {
                    assert_eq!(framing[0].1, "chunked", "{}", case.name);
                }
            }
            _ => assert!(
                seen.iter().all(|r| r.ending != Ending::Complete),
                "{}: a refused request reached the backend whole: {seen:?}",
                case.name
            ),
        }
    }
    s.assert_nothing_smuggled();
}

#[test]
fn ambiguous_framing_is_refused_and_never_desyncs_the_backend() {
    let s = setup("");
    let te_cl_chunk = "GET /npm/smuggled-tecl HTTP/1.1\r\nHost: registry.test\r\nContent-Length: 15\r\n\r\nx=1";
    let te_cl_body = format!("{:x}\r\n{te_cl_chunk}\r\n0\r\n\r\n", te_cl_chunk.len());
    let hello_chunked = b"5\r\nhello\r\n0\r\n\r\n";
    let with_tail = |body: &[u8], name: &str| {
        let mut b = body.to_vec();
        b.extend_from_slice(smuggled(name).as_bytes());
        b
    };
    let cases = vec![
        // CL.TE: a front end framing by Content-Length forwards the smuggled request inside
        // the body; one framing by Transfer-Encoding reads it as the next request.
        Case {
            name: "cl-te",
            bytes: bulk(
                "cl-te",
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                &with_tail(b"0\r\n\r\n", "cl-te"),
            ),
            want: Want::Refused(400, "bad_request"),
            body: b"",
        },
        // TE.CL: the chunk carries a whole request; a backend framing by Content-Length: 4
        // would read it as the next request.
        Case {
            name: "te-cl",
            bytes: bulk(
                "te-cl",
                "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                te_cl_body.as_bytes(),
            ),
            want: Want::Refused(400, "bad_request"),
            body: b"",
        },
        Case {
            name: "te-cl-reversed-order",
            bytes: bulk(
                "te-cl-reversed-order",
                "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                te_cl_body.as_bytes(),
            ),
            want: Want::Refused(400, "bad_request"),
            body: b"",
        },
        // CL.TE carrying a second upload, to a denied project: neither request goes anywhere.
        Case {
            name: "cl-te-upload",
            bytes: bulk(
                "cl-te-upload",
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                b"0\r\n\r\nPUT /npm/blocked-smuggled HTTP/1.1\r\nHost: registry.test\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            ),
            want: Want::Refused(400, "bad_request"),
            body: b"",
        },
        // TE.TE: obfuscated Transfer-Encoding.
        Case {
            name: "te-xchunked",
            bytes: bulk(
                "te-xchunked",
                "Transfer-Encoding: xchunked\r\n",
                &with_tail(hello_chunked, "te-xchunked"),
            ),
            want: Want::Unparseable,
            body: b"",
        },
        Case {
            name: "te-leading-space",
            bytes: bulk("te-leading-space", "Transfer-Encoding:   chunked\r\n", hello_chunked),
            want: Want::Forwarded,
            body: b"hello",
        },
        Case {
            name: "te-leading-tab",
            bytes: bulk("te-leading-tab", "Transfer-Encoding:\tchunked\r\n", hello_chunked),
            want: Want::Forwarded,
            body: b"hello",
        },
        Case {
            name: "te-mixed-case",
            bytes: bulk("te-mixed-case", "transfer-ENCODING: ChUnKeD\r\n", hello_chunked),
            want: Want::Forwarded,
            body: b"hello",
        },
        Case {
            name: "te-chunked-identity",
            bytes: bulk(
                "te-chunked-identity",
                "Transfer-Encoding: chunked, identity\r\n",
                &with_tail(hello_chunked, "te-chunked-identity"),
            ),
            want: Want::Unparseable,
            body: b"",
        },
        // Valid for the gateway (chunked is last) but read differently by backends that look
        // at the first coding: refused rather than forwarded.
        Case {
            name: "te-identity-chunked",
            bytes: bulk(
                "te-identity-chunked",
                "Transfer-Encoding: identity, chunked\r\n",
                &with_tail(hello_chunked, "te-identity-chunked"),
            ),
            want: Want::Refused(400, "bad_request"),
            body: b"",
        },
        Case {
            name: "te-two-headers",
            bytes: bulk(
                "te-two-headers",
                "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
                &with_tail(hello_chunked, "te-two-headers"),
            ),
            want: Want::Refused(400, "bad_request"),
            body: b"",
        },
        Case {
            name: "te-two-chunked-headers",
            bytes: bulk(
                "te-two-chunked-headers",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                &with_tail(b"5\r\nhello\r\n0\r\n\r\n", "te-two-chunked-headers"),
            ),
            want: Want::Refused(400, "bad_request"),
            body: b"",
        },
        Case {
            name: "te-space-before-colon",
            bytes: bulk(
                "te-space-before-colon",
                "Transfer-Encoding : chunked\r\n",
                &with_tail(hello_chunked, "te-space-before-colon"),
            ),
            want: Want::Unparseable,
            body: b"",
        },
        Case {
            name: "te-obs-fold",
            bytes: bulk(
                "te-obs-fold",
                "Transfer-Encoding:\r\n chunked\r\n",
                &with_tail(hello_chunked, "te-obs-fold"),
            ),
            want: Want::Unparseable,
            body: b"",
        },
        // Content-Length variants.
        Case {
            name: "cl-plain",
            bytes: bulk("cl-plain", "Content-Length: 5\r\n", b"hello"),
            want: Want::Forwarded,
            body: b"hello",
        },
        Case {
            name: "cl-duplicate-equal",
            bytes: bulk(
                "cl-duplicate-equal",
                "Content-Length: 5\r\nContent-Length: 5\r\n",
                &with_tail(b"hello", "cl-duplicate-equal"),
            ),
            want: Want::Refused(400, "bad_request"),
            body: b"",
        },
        Case {
            name: "cl-duplicate-conflicting",
            bytes: bulk(
                "cl-duplicate-conflicting",
                "Content-Length: 5\r\nContent-Length: 50\r\n",
                &with_tail(b"hello", "cl-duplicate-conflicting"),
            ),
            want: Want::Unparseable,
            body: b"",
        },
        Case {
            name: "cl-list",
            bytes: bulk("cl-list", "Content-Length: 5, 5\r\n", &with_tail(b"hello", "cl-list")),
            want: Want::Refused(400, "bad_request"),
            body: b"",
        },
        Case {
            name: "cl-plus",
            bytes: bulk("cl-plus", "Content-Length: +5\r\n", &with_tail(b"hello", "cl-plus")),
            want: Want::Unparseable,
            body: b"",
        },
        Case {
            name: "cl-minus",
            bytes: bulk("cl-minus", "Content-Length: -1\r\n", &with_tail(b"hello", "cl-minus")),
            want: Want::Unparseable,
            body: b"",
        },
        Case {
            name: "cl-padded",
            bytes: bulk("cl-padded", "Content-Length:  5  \r\n", b"hello"),
            want: Want::Forwarded,
            body: b"hello",
        },
        Case {
            name: "cl-hex",
            bytes: bulk("cl-hex", "Content-Length: 0x05\r\n", &with_tail(b"hello", "cl-hex")),
            want: Want::Unparseable,
            body: b"",
        },
        Case {
            name: "cl-huge",
            bytes: bulk(
                "cl-huge",
                "Content-Length: 184467440737095516160\r\n",
                &with_tail(b"hello", "cl-huge"),
            ),
            want: Want::Unparseable,
            body: b"",
        },
        Case {
            name: "cl-over-limit",
            bytes: bulk("cl-over-limit", "Content-Length: 18446744073709551615\r\n", b"hello"),
            want: Want::Refused(413, "upload_too_large"),
            body: b"",
        },
    ];
    run_cases(&s, &cases);
}

#[test]
fn malformed_heads_are_refused_before_anything_is_forwarded() {
    let s = setup("");
    let get = |name: &str, head_lines: &str| {
        format!("GET /simple/{name}/ HTTP/1.1\r\nHost: registry.test\r\n{head_lines}Connection: close\r\n\r\n")
            .into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, Want)> = vec![
        ("obs-fold", get("obs-fold", "X-Note: one\r\n two\r\n"), Want::Unparseable),
        ("nul-in-value", get("nul-in-value", "X-Note: a\0b\r\n"), Want::Unparseable),
        ("cr-in-value", get("cr-in-value", "X-Note: a\rb\r\n"), Want::Unparseable),
        ("space-in-name", get("space-in-name", "X Note: a\r\n"), Want::Unparseable),
        ("empty-name", get("empty-name", ": a\r\n"), Want::Unparseable),
        (
            "huge-header",
            get("huge-header", &format!("X-Big: {}\r\n", "a".repeat(2 << 20))),
            Want::BadOrClosed,
        ),
        (
            "many-headers",
            get(
                "many-headers",
                &(0..300).map(|i| format!("X-H{i}: v\r\n")).collect::<String>(),
            ),
            Want::Unparseable,
        ),
        (
            "huge-request-line",
            format!(
                "GET /simple/huge-request-line/{} HTTP/1.1\r\nHost: registry.test\r\n\r\n",
                "a".repeat(2 << 20)
            )
            .into_bytes(),
            Want::BadOrClosed,
        ),
        (
            "two-hosts",
            get("two-hosts", "Host: other.test\r\n"),
            Want::Unparseable,
        ),
        (
            "absolute-form-other-host",
            b"POST http://other-host/?case=absolute-form-other-host HTTP/1.1\r\nHost: registry.test\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
            Want::Unparseable,
        ),
        (
            "absolute-form-userinfo",
            b"GET http://user@registry.test/simple/absolute-form-userinfo/ HTTP/1.1\r\nHost: registry.test\r\n\r\n"
                .to_vec(),
            Want::Unparseable,
        ),
        (
            "http10-with-te",
            format!("POST {BULK}?case=http10-with-te HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
                .into_bytes(),
            Want::Unparseable,
        ),
    ];
    let mut outcomes = Vec::new();
    for (name, bytes, _) in &cases {
        let got = exchange(s.addr(), bytes, 1);
        eprintln!("{name}: {:?} closed={}", got.statuses(), got.closed);
        outcomes.push(got);
    }
    s.settle("heads");
    for ((name, _, want), got) in cases.iter().zip(&outcomes) {
        check_reply(name, got, *want);
        assert!(
            s.seen_with(name).is_empty(),
            "{name}: reached the backend: {:?}",
            s.seen_with(name)
        );
    }
    assert!(
        s.sink.seen().iter().all(|r| r.path.starts_with("/simple/settle-")),
        "only the settle request reached the backend: {:?}",
        s.sink.seen()
    );
    // The gateway still answers normally.
    assert_eq!(http::get(s.addr(), "/simple/after/").status, 200);
}

#[test]
fn methods_paths_and_hosts_reach_the_backend_unaltered_or_not_at_all() {
    let s = setup("");
    let req = |method: &str, target: &str| {
        format!("{method} {target} HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n").into_bytes()
    };
    // (name, bytes, what the client gets, the exact target the backend must see, if any)
    let cases: Vec<(&str, Vec<u8>, Want, Option<&str>)> = vec![
        (
            "lower-case-method",
            req("get", "/simple/lower-case-method/"),
            Want::Refused(405, "unclassified_write"),
            None,
        ),
        (
            "split-method",
            req("GE T", "/simple/split-method/"),
            Want::Refused(405, "unclassified_write"),
            None,
        ),
        (
            "long-method",
            req(&"A".repeat(8192), "/simple/long-method/"),
            Want::Refused(405, "unclassified_write"),
            None,
        ),
        (
            "dot-dot",
            req("GET", "/simple/../dot-dot/"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        (
            "npm-dotdot",
            req("GET", "/npm/../simple/npm-dotdot/"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        (
            "encoded-dots",
            req("GET", "/simple/%2e%2e/encoded-dots/"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        (
            "upper-escaped-dots",
            req("GET", "/simple/%2E%2E/upper-escaped-dots/"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        (
            "encoded-nul",
            req("GET", "/simple/encoded-nul%00/"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        (
            "raw-nul",
            req("GET", "/simple/raw-nul\0x/"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        (
            "raw-backslash",
            req("GET", "/simple/raw-backslash\\..\\admin/"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        (
            "escaped-backslash",
            req("GET", "/simple/escaped-backslash%5c/"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        (
            "bad-escape",
            req("GET", "/simple/bad-escape%zz/"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        ("asterisk-form", req("GET", "*"), Want::Refused(400, "bad_path"), None),
        // One reading of every path (docs/one-reading.md): what some backend would decode or
        // merge into another path is refused, before routing.
        (
            "encoded-slash",
            req("GET", "/simple/encoded-slash%2fx/"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        (
            "slash-escape-dots",
            req("GET", "/npm/..%2fsimple%2fslash-escape-dots/"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        (
            "double-slash",
            req("GET", "//simple//double-slash/"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        (
            "twice-escaped-dots",
            req("GET", "/simple/%252e%252e/twice-escaped-dots/"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        (
            "twice-escaped-slash",
            req("GET", "/npm/@scope%252ftwice-escaped-slash"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        (
            "path-parameter",
            req("GET", "/simple/..;/path-parameter/"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        (
            "encoded-semicolon",
            req("GET", "/simple/x%3b/encoded-semicolon/"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        (
            "escaped-letter",
            req("GET", "/simple/%61/escaped-letter/"),
            Want::Refused(400, "bad_path"),
            None,
        ),
        (
            "prefix-without-boundary",
            req("GET", "/npmx/prefix-without-boundary"),
            Want::Forwarded,
            Some("/npmx/prefix-without-boundary"),
        ),
        // Passed on exactly as sent: the gateway never decodes or merges.
        (
            "encoded-plus",
            req("GET", "/packages/encoded-plus-1.0%2Blocal.tar.gz"),
            Want::Forwarded,
            Some("/packages/encoded-plus-1.0%2Blocal.tar.gz"),
        ),
        (
            "npm-scoped-name",
            req("GET", "/npm/@scope%2fnpm-scoped-name"),
            Want::Forwarded,
            Some("/@scope%2fnpm-scoped-name"),
        ),
        (
            "bare-lf",
            b"GET /simple/bare-lf/ HTTP/1.1\nHost: registry.test\nConnection: close\n\n".to_vec(),
            Want::Forwarded,
            Some("/simple/bare-lf/"),
        ),
        (
            "absolute-form-same-host",
            req("GET", "http://registry.test/simple/absolute-form-same-host/"),
            Want::Forwarded,
            Some("/simple/absolute-form-same-host/"),
        ),
    ];
    let mut outcomes = Vec::new();
    for (name, bytes, _, _) in &cases {
        let got = exchange(s.addr(), bytes, 1);
        eprintln!(
            "{name}: {:?} closed={} {:?}",
            got.statuses(),
            got.closed,
            got.replies.first().map(Reply::code)
        );
        outcomes.push(got);
    }
    s.settle("paths");
    for ((name, _, want, target), got) in cases.iter().zip(&outcomes) {
        check_reply(name, got, *want);
        let seen = s.seen_with(name);
        match target {
            Some(target) => {
                assert_eq!(seen.len(), 1, "{name}: {seen:?}");
                assert_eq!(seen[0].path, *target, "{name}: the path changed on the way");
                assert_eq!(seen[0].method, "GET", "{name}");
                assert_eq!(seen[0].header("host"), Some("registry.test"), "{name}");
            }
            None => assert!(seen.is_empty(), "{name}: reached the backend: {seen:?}"),
        }
    }
    s.assert_nothing_smuggled();
}

#[test]
fn refusals_on_the_head_come_before_the_body_with_expect_continue() {
    let s = setup("");
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "npm-denied-project",
            "PUT /npm/blocked-expect HTTP/1.1\r\nHost: registry.test\r\nContent-Type: application/json\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n".into(),
            403,
            "project_denied",
        ),
        (
            "npm-over-limit",
            "PUT /npm/fine-expect HTTP/1.1\r\nHost: registry.test\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\nExpect: 100-continue\r\n\r\n".into(),
            413,
            "upload_too_large",
        ),
        (
            "pypi-over-limit",
            "POST /?case=pypi-over-limit HTTP/1.1\r\nHost: registry.test\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 2097152\r\nExpect: 100-continue\r\n\r\n".into(),
            413,
            "upload_too_large",
        ),
        (
            "pypi-not-a-form",
            "POST /?case=pypi-not-a-form HTTP/1.1\r\nHost: registry.test\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n".into(),
            405,
            "unclassified_write",
        ),
    ];
    for (name, head, status, code) in &cases {
        let mut stream = connect(s.addr());
        stream.write_all(head.as_bytes()).expect("head");
        // The body is never sent: the answer must come on the head alone.
        let started = Instant::now();
        let got = read_replies(&mut stream, 1, Duration::from_secs(5));
        eprintln!(
            "{name}: {:?} closed={} after {:?}",
            got.statuses(),
            got.closed,
            started.elapsed()
        );
        assert_eq!(
            got.statuses(),
            vec![*status],
            "{name}: no 100 Continue, just the refusal: {got:?}"
        );
        assert_eq!(got.replies[0].code().as_deref(), Some(*code), "{name}");
        assert!(started.elapsed() < Duration::from_secs(5), "{name}");
    }
    let seen = s.settle("expect");
    assert!(
        seen.iter().all(|r| r.path.starts_with("/simple/settle-")),
        "nothing but the settle request reached the backend: {seen:?}"
    );
}

#[test]
fn http10_keepalive_and_pipelining_never_forward_a_request_twice_or_from_a_body() {
    let s = setup("");
    let addr = s.addr();

    // HTTP/1.0 without keep-alive: one answer, then the close.
    let got = exchange(addr, b"GET /blob/1001 HTTP/1.0\r\n\r\n", 1);
    assert_eq!(got.statuses(), vec![200], "{got:?}");
    assert_eq!(got.replies[0].body.len(), 1001);
    assert!(got.closed, "HTTP/1.0 without keep-alive closes");

    // HTTP/1.0 with keep-alive, and HTTP/1.1: requests one after the other on one connection.
    let mut stream = connect(addr);
    for (request, size) in [
        ("GET /blob/1002 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1002),
        ("GET /blob/1003 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1003),
        ("GET /blob/1004 HTTP/1.1\r\nHost: registry.test\r\n\r\n", 1004),
        ("GET /blob/1005 HTTP/1.1\r\nHost: registry.test\r\n\r\n", 1005),
    ] {
        stream.write_all(request.as_bytes()).expect("write");
        let got = read_replies(&mut stream, 1, Duration::from_secs(5));
        assert_eq!(got.statuses(), vec![200], "{request}: {got:?}");
        assert_eq!(got.replies[0].body.len(), size);
        assert!(!got.closed, "{request}: kept alive");
    }
    drop(stream);

    // Pipelining is off (pingora's default, kept on purpose): requests written at once get
    // the first answer, then the close; the others never reach the backend, so the client can
    // retry them without doubles.
    let mut batch = Vec::new();
    for size in 1011..1016 {
        batch.extend_from_slice(format!("GET /blob/{size} HTTP/1.1\r\nHost: registry.test\r\n\r\n").as_bytes());
    }
    batch.extend_from_slice(b"GET /blob/1016 HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n");
    let got = exchange(addr, &batch, 1);
    assert_eq!(got.statuses(), vec![200], "{got:?}");
    assert_eq!(got.replies[0].body.len(), 1011);
    assert!(got.closed, "closed after the first of several pipelined requests");

    // A body that looks like a request is a body: forwarded whole, not parsed; the request
    // pipelined after it is not served.
    let inner = smuggled("in-body");
    let mut bytes = bulk(
        "body-looks-like-request",
        &format!("Content-Length: {}\r\n", inner.len()),
        inner.as_bytes(),
    );
    bytes.extend_from_slice(b"GET /blob/1021 HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n\r\n");
    let got = exchange(addr, &bytes, 1);
    assert_eq!(got.statuses(), vec![200], "{got:?}");
    assert!(got.closed);

    // A refused upload (on its head): its body is drained, never read as requests, and the
    // connection closes; the pipelined request after it is not served (the client retries).
    let inner = smuggled("refused-body");
    let mut bytes = format!(
        "PUT /npm/blocked-pipelined HTTP/1.1\r\nHost: registry.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{inner}",
        inner.len()
    )
    .into_bytes();
    bytes.extend_from_slice(b"GET /blob/1031 HTTP/1.1\r\nHost: registry.test\r\n\r\n");
    let got = exchange(addr, &bytes, 1);
    assert_eq!(got.statuses(), vec![403], "{got:?}");
    assert_eq!(got.replies[0].code().as_deref(), Some("project_denied"));
    assert!(got.closed, "closed after a refusal with a body");

    // A refused PyPI upload (decided at the end of its body) followed by a pipelined request.
    let form = http::Form::pypi_upload("blocked-pipelined", "1.0", "blocked_pipelined-1.0.tar.gz", b"payload");
    let mut bytes = format!(
        "POST /?case=pypi-refused-pipelined HTTP/1.1\r\nHost: registry.test\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        form.content_type(),
        form.body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&form.body);
    bytes.extend_from_slice(smuggled("after-pypi-refusal").as_bytes());
    let got = exchange(addr, &bytes, 1);
    assert_eq!(got.statuses(), vec![403], "{got:?}");
    assert_eq!(got.replies[0].code().as_deref(), Some("project_denied"));
    assert!(got.closed);

    let seen = s.settle("pipelining");
    let blobs: Vec<&str> = seen
        .iter()
        .filter(|r| r.path.starts_with("/blob/"))
        .map(|r| r.path.as_str())
        .collect();
    let mut expected: Vec<String> = (1001..1006).map(|n| format!("/blob/{n}")).collect();
    expected.push("/blob/1011".into());
    let mut sorted = blobs.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
    sorted.sort();
    assert_eq!(sorted, expected, "each answered request reached the backend once");
    let in_body = s.seen_with("case=body-looks-like-request");
    assert_eq!(in_body.len(), 1);
    assert_eq!(in_body[0].body_sha256, sha256_hex(smuggled("in-body").as_bytes()));
    assert_eq!(in_body[0].ending, Ending::Complete);
    assert!(
        s.seen_with("blocked-pipelined").is_empty(),
        "refused on its head: nothing upstream"
    );
    let pypi = s.seen_with("case=pypi-refused-pipelined");
    assert!(
        pypi.iter()
            .all(|r| r.ending != Ending::Complete && r.body_bytes < form.body.len() as u64),
        "the refused form never reached the backend whole: {pypi:?}"
    );
    s.assert_nothing_smuggled();
}

#[test]
fn chunked_edge_cases_are_forwarded_exactly_or_refused() {
    let s = setup("");
    let tail = |name: &str| smuggled(name);
    let cases = vec![
        Case {
            name: "chunk-extensions",
            bytes: bulk(
                "chunk-extensions",
                "Transfer-Encoding: chunked\r\n",
                b"5;name=value;x=\"q\"\r\nhello\r\n0;last\r\n\r\n",
            ),
            want: Want::Forwarded,
            body: b"hello",
        },
        Case {
            name: "chunk-size-overflow",
            bytes: bulk(
                "chunk-size-overflow",
                "Transfer-Encoding: chunked\r\n",
                format!("10000000000000005\r\nhello\r\n0\r\n\r\n{}", tail("chunk-size-overflow")).as_bytes(),
            ),
            want: Want::Refused(400, "bad_request"),
            body: b"",
        },
        Case {
            name: "chunk-size-not-hex",
            bytes: bulk(
                "chunk-size-not-hex",
                "Transfer-Encoding: chunked\r\n",
                format!("zz\r\nhello\r\n0\r\n\r\n{}", tail("chunk-size-not-hex")).as_bytes(),
            ),
            want: Want::Refused(400, "bad_request"),
            body: b"",
        },
        Case {
            name: "chunk-longer-than-size",
            bytes: bulk(
                "chunk-longer-than-size",
                "Transfer-Encoding: chunked\r\n",
                format!("3\r\nhello\r\n0\r\n\r\n{}", tail("chunk-longer-than-size")).as_bytes(),
            ),
            want: Want::Refused(400, "bad_request"),
            body: b"",
        },
        Case {
            name: "trailer-framing-fields",
            bytes: bulk(
                "trailer-framing-fields",
                "Transfer-Encoding: chunked\r\n",
                b"5\r\nhello\r\n0\r\nContent-Length: 60\r\nHost: evil.test\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
            want: Want::Forwarded,
            body: b"hello",
        },
    ];
    run_cases(&s, &cases);
    // Trailers are not passed on: the backend saw no second Host or framing header.
    let trailer = &s.seen_with("case=trailer-framing-fields")[0];
    assert!(
        trailer.headers.iter().all(|(_, v)| v != "evil.test"),
        "trailer fields reached the backend: {trailer:?}"
    );

    // A last chunk without its final CRLF, then the client stops sending: the body never
    // completes at the backend, and nothing after it is read as a request.
    let mut stream = connect(s.addr());
    stream
        .write_all(&bulk(
            "missing-final-crlf",
            "Transfer-Encoding: chunked\r\n",
            b"5\r\nhello\r\n0\r\n",
        ))
        .expect("write");
    stream.shutdown(std::net::Shutdown::Write).expect("half close");
    let got = read_replies(&mut stream, 1, Duration::from_secs(5));
    eprintln!("missing-final-crlf: {:?} closed={}", got.statuses(), got.closed);
    assert!(got.closed, "the gateway closes");
    s.settle("missing-final-crlf");
    let seen = s.seen_with("case=missing-final-crlf");
    eprintln!("missing-final-crlf at the backend: {seen:?}");
    assert!(seen.len() <= 1, "{seen:?}");
    for r in &seen {
        assert!(r.body_bytes <= 5, "{r:?}");
        assert_ne!(
            r.ending,
            Ending::Complete,
            "an unfinished body reached the backend whole: {r:?}"
        );
    }
    s.assert_nothing_smuggled();
}

/// Short client time limits, so the slow-client cases end in about a second.
const SHORT_CLIENT_LIMITS: &str =
    "[client]\nheader_timeout = \"1s\"\nidle_timeout = \"1s\"\nread_timeout = \"1s\"\nmin_body_rate = \"1 KiB\"\n";

/// What a trickling client saw.
#[derive(Debug)]
struct Trickled {
    /// When the gateway closed the connection (or when the client gave up, after 6 s).
    closed_after: Duration,
    /// When the first byte of an answer came.
    answered_after: Option<Duration>,
    /// The answer.
    answer: Vec<u8>,
}

/// Sends `prefix`, then one byte of `drip` every 50 ms until the gateway closes the connection
/// (or 6 s pass).
fn trickle(addr: SocketAddr, prefix: &[u8], drip: u8) -> Trickled {
    trickle_on(connect(addr), prefix, drip)
}

/// [`trickle`] on an open connection.
fn trickle_on(mut stream: TcpStream, prefix: &[u8], drip: u8) -> Trickled {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    let started = Instant::now();
    let mut answered_after = None;
    let mut answer = Vec::new();
    let done = |answer: Vec<u8>, answered_after| Trickled {
        closed_after: started.elapsed(),
        answered_after,
        answer,
    };
    if stream.write_all(prefix).is_err() {
        return done(answer, answered_after);
    }
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(6) {
        // The read timeout paces the drip: one byte per 50 ms of silence from the gateway.
        match stream.read(&mut buf) {
            Ok(0) => return done(answer, answered_after),
            Ok(n) => {
                answered_after.get_or_insert(started.elapsed());
                answer.extend_from_slice(&buf[..n]);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return done(answer, answered_after),
        }
        if stream.write_all(&[drip]).is_err() {
            return done(answer, answered_after);
        }
    }
    done(answer, answered_after)
}

/// How long the gateway keeps a connection on which nothing is sent (at most 6 s).
fn idle_connection(addr: SocketAddr) -> Duration {
    let mut stream = connect(addr);
    let started = Instant::now();
    let got = read_replies(&mut stream, 1, Duration::from_secs(6));
    assert!(got.replies.is_empty(), "no answer to nothing: {got:?}");
    started.elapsed()
}

#[test]
fn slow_clients_are_cut_off_while_others_are_served() {
    let s = setup(SHORT_CLIENT_LIMITS);
    let addr = s.addr();
    let limit = Duration::from_secs(1);
    let attacks = std::thread::scope(|scope| {
        // A head trickled byte by byte.
        let head = scope.spawn(|| {
            trickle(
                addr,
                b"GET /simple/slow-head/ HTTP/1.1\r\nHost: registry.test\r\nX-Pad: ",
                b'a',
            )
        });
        // A connection that never sends anything.
        let idle = scope.spawn(|| idle_connection(addr));
        // A quick first request, then the second head trickled on the kept-alive connection.
        let second_head = scope.spawn(|| {
            let mut stream = connect(addr);
            stream
                .write_all(b"GET /simple/slow-second-first/ HTTP/1.1\r\nHost: registry.test\r\n\r\n")
                .expect("first request");
            let first = read_replies(&mut stream, 1, Duration::from_secs(5));
            let second = trickle_on(
                stream,
                b"GET /simple/slow-second-head/ HTTP/1.1\r\nHost: registry.test\r\nX-Pad: ",
                b'a',
            );
            (first, second)
        });
        // A body trickled byte by byte.
        let body = scope.spawn(|| trickle(addr, &bulk("slow-body", "Content-Length: 100000\r\n", b"x"), b'x'));
        // A body that stops.
        let stalled = scope.spawn(|| {
            let mut stream = connect(addr);
            stream
                .write_all(&bulk("stalled-body", "Content-Length: 100\r\n", b"0123456789"))
                .expect("write");
            let started = Instant::now();
            let got = read_replies(&mut stream, 1, Duration::from_secs(6));
            (started.elapsed(), got)
        });
        // Meanwhile, ordinary requests are served at once.
        let mut served = Vec::new();
        for i in 0..5 {
            let started = Instant::now();
            let r = http::get(addr, &format!("/simple/during-attack-{i}/"));
            served.push((r.status, started.elapsed()));
            std::thread::sleep(Duration::from_millis(150));
        }
        (
            head.join().expect("head"),
            idle.join().expect("idle"),
            second_head.join().expect("second head"),
            body.join().expect("body"),
            stalled.join().expect("stalled"),
            served,
        )
    });
    let (head, idle, second_head, body, stalled, served) = attacks;
    eprintln!(
        "head trickle cut after {:?}, idle connection after {idle:?}, second head after {:?}, \
         body trickle answered after {:?} and closed after {:?}, stalled body closed after {:?}",
        head.closed_after, second_head.1.closed_after, body.answered_after, body.closed_after, stalled.0
    );
    for (status, took) in &served {
        assert_eq!(*status, 200);
        assert!(
            *took < Duration::from_secs(1),
            "a normal request took {took:?} during the attack"
        );
    }
    let within = |took: Duration| took >= limit && took < limit + Duration::from_millis(1500);
    assert!(within(head.closed_after), "a trickled head: {head:?}");
    assert!(head.answer.is_empty(), "no answer to a head that never completed");
    assert!(within(idle), "an idle connection was closed after {idle:?}");
    assert_eq!(second_head.0.statuses(), vec![200]);
    assert!(
        second_head.1.closed_after < limit + Duration::from_millis(1500),
        "a trickled second head: {:?}",
        second_head.1
    );
    assert!(second_head.1.answer.is_empty());
    // The trickled body: refused with 408 once it has taken longer than the limit, then the
    // connection closes after the lingering drain (2 s).
    assert!(
        body.answered_after.is_some_and(within),
        "a trickled body was answered after {:?}",
        body.answered_after
    );
    assert!(
        body.closed_after < limit + Duration::from_secs(4),
        "{:?}",
        body.closed_after
    );
    let replies = parse_replies(&body.answer, true);
    assert_eq!(
        replies.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![408],
        "{replies:?}"
    );
    assert_eq!(replies[0].code().as_deref(), Some("request_timeout"));
    // The stalled body: the read timeout closes it, without an answer.
    assert!(stalled.1.closed, "a stalled body is closed");
    assert!(stalled.1.replies.is_empty(), "{:?}", stalled.1);
    assert!(within(stalled.0), "a stalled body was closed after {:?}", stalled.0);

    // The backend connection of each slow body was ended, short of a whole body.
    for tag in ["case=slow-body", "case=stalled-body"] {
        let mut seen = Vec::new();
        assert!(
            wait_until(Duration::from_secs(5), || {
                seen = s.seen_with(tag);
                !seen.is_empty()
            }),
            "{tag}: the backend connection is still open"
        );
        assert_eq!(seen.len(), 1, "{tag}: {seen:?}");
        assert_ne!(seen[0].ending, Ending::Complete, "{tag}: {seen:?}");
    }
    assert!(s.seen_with("slow-head").is_empty() && s.seen_with("slow-second-head").is_empty());
    assert_eq!(s.seen_with("slow-second-first").len(), 1);
    // A slow client's time is its own: the gateway still answers after the attack.
    assert_eq!(http::get(addr, "/simple/after-attack/").status, 200);
}

/// A keep-alive client connection that reconnects when the gateway closes it.
struct Client {
    addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client { addr, stream: None }
    }

    /// Sends one request and reads its reply (on a fresh connection if the last one closed).
    fn send(&mut self, request: &[u8]) -> Reply {
        for _attempt in 0..2 {
            let stream = self.stream.get_or_insert_with(|| connect(self.addr));
            if stream.write_all(request).is_ok() {
                let got = read_one(stream);
                if got.1 {
                    self.stream = None;
                }
                if let Some(reply) = got.0 {
                    return reply;
                }
            }
            self.stream = None;
        }
        panic!("no reply to {}", String::from_utf8_lossy(request));
    }
}

/// Reads exactly one reply; returns it and whether the connection closed.
fn read_one(stream: &mut TcpStream) -> (Option<Reply>, bool) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        if let Some((reply, _)) = parse_reply(&buf, false) {
            let closed = reply.header("connection") == Some("close");
            return (Some(reply), closed);
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return (parse_reply(&buf, true).map(|(r, _)| r), true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn a_request_flood_is_answered_exactly_and_the_gateway_keeps_serving() {
    let s = setup("[client]\nheader_timeout = \"2s\"\n");
    let addr = s.addr();
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 250;
    let started = Instant::now();
    // Idle connections held open through the flood (the gateway must not wait on them).
    let idle: Vec<TcpStream> = (0..200).map(|_| connect(addr)).collect();
    let results: Vec<Vec<(String, u16, Option<String>)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|c| {
                scope.spawn(move || {
                    let mut client = Client::new(addr);
                    let mut out = Vec::with_capacity(PER_CLIENT);
                    for i in 0..PER_CLIENT {
                        // Every tenth request is one the gateway refuses on its head.
                        let target = if i % 10 == 9 {
                            format!("/simple/flood-{c}-{i}/../x/")
                        } else {
                            format!("/simple/flood-{c}-{i}/")
                        };
                        let reply =
                            client.send(format!("GET {target} HTTP/1.1\r\nHost: registry.test\r\n\r\n").as_bytes());
                        out.push((target, reply.status, reply.code()));
                    }
                    out
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("client")).collect()
    });
    // Then a connection flood: one new connection per request.
    let connections: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|c| {
                scope.spawn(move || {
                    (0..250)
                        .map(|i| {
                            let target = format!("/simple/conn-{c}-{i}/");
                            let r = http::get(addr, &target);
                            assert_eq!(r.status, 200, "{target}");
                            target
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("client")).collect()
    });
    let flood_took = started.elapsed();
    let total: usize = results.iter().map(Vec::len).sum::<usize>() + connections.len();
    assert_eq!(total, CLIENTS * PER_CLIENT + 1000);
    let mut expected = connections;
    for (target, status, code) in results.iter().flatten() {
        if target.contains("..") {
            assert_eq!((*status, code.as_deref()), (400, Some("bad_path")), "{target}");
        } else {
            assert_eq!(*status, 200, "{target}");
            expected.push(target.clone());
        }
    }
    // The backend saw exactly the requests meant to pass, once each.
    assert!(wait_until(Duration::from_secs(10), || s.sink.seen().len() >= expected.len()));
    let mut seen: Vec<String> = s.sink.seen().into_iter().map(|r| r.path).collect();
    seen.sort();
    expected.sort();
    assert_eq!(seen.len(), expected.len(), "one backend request per accepted request");
    assert_eq!(seen, expected);
    eprintln!(
        "{total} requests ({} on {CLIENTS} keep-alive connections, 1000 on their own connections; 200 idle connections held) in {flood_took:?} ({:.0} requests/s)",
        CLIENTS * PER_CLIENT,
        total as f64 / flood_took.as_secs_f64()
    );

    // The idle connections are closed by the head timeout; the gateway still answers.
    let deadline = Instant::now() + Duration::from_secs(5);
    for mut conn in idle {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(10));
        conn.set_read_timeout(Some(left)).expect("timeout");
        let mut byte = [0u8; 1];
        assert!(
            matches!(conn.read(&mut byte), Ok(0) | Err(_)),
            "an idle connection got bytes"
        );
    }
    assert!(Instant::now() < deadline, "the idle connections were closed in time");
    let r = http::get(addr, "/simple/after-flood/");
    assert_eq!(r.status, 200);
}

/// Header names with `_` are what a CGI/WSGI backend reads as the `-` spelling
/// (`Transfer_Encoding` becomes `HTTP_TRANSFER_ENCODING`, `Content_Length` shadows
/// `CONTENT_LENGTH` in some servers): the gateway, which reads only the `-` spellings, drops
/// them all before forwarding, as nginx does by default.
#[test]
fn header_names_with_underscores_never_reach_the_backend() {
    let s = setup("");
    let read = b"GET /simple/underscored-read/ HTTP/1.1\r\nHost: registry.test\r\nContent_Length: 5\r\n\
                 Transfer_Encoding: chunked\r\nX_Forwarded_For: 10.0.0.1\r\nX-Kept: yes\r\nConnection: close\r\n\r\n";
    check_reply("underscored-read", &exchange(s.addr(), read, 1), Want::Forwarded);
    let body = b"name=underscored-post";
    let post = [
        format!(
            "PUT /npm/-/underscored-post HTTP/1.1\r\nHost: registry.test\r\nContent-Length: {}\r\n\
             Transfer_Encoding: chunked\r\nContent_Length: 1\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
        body,
    ]
    .concat();
    check_reply("underscored-post", &exchange(s.addr(), &post, 1), Want::Forwarded);
    s.settle("underscores");
    let read_seen = s.seen_with("underscored-read");
    assert_eq!(read_seen.len(), 1, "{read_seen:?}");
    let post_seen = s.seen_with("underscored-post");
    assert_eq!(post_seen.len(), 1, "{post_seen:?}");
    for seen in read_seen.iter().chain(&post_seen) {
        let underscored: Vec<&String> = seen
            .headers
            .iter()
            .map(|(n, _)| n)
            .filter(|n| n.contains('_'))
            .collect();
        assert!(underscored.is_empty(), "{}: forwarded {underscored:?}", seen.path);
    }
    assert_eq!(read_seen[0].header("x-kept"), Some("yes"));
    assert_eq!(post_seen[0].body_bytes, body.len() as u64);
    assert_eq!(post_seen[0].ending, Ending::Complete);
    s.assert_nothing_smuggled();
}
