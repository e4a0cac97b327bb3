//! Fault injection: what breaks around the gateway (the backend, the state store, the OIDC
//! issuer, the gateway process itself, a storm of reload signals) and what the gateway does
//! about it. The promise: nothing refused reaches the backend's commit, nothing accepted is
//! lost, every failure is a JSON refusal with its documented code, and the gateway recovers by
//! itself, without a restart. docs/hardening/faults.md has the table of cases.
//!
//! The backend faults are made by [`FaultProxy`], a TCP relay in front of a real pypiserver
//! whose behaviour is switched per connection: relay, refuse connections, close at once, read
//! everything and never answer, stop reading, reset after N body bytes, answer 500 after the
//! whole body, withhold the last body byte. The ledger is read straight from the gateway's
//! SQLite file, read-only, with the test tools' Python.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_e2e::gateway::{admin_token_config, trusted_publishing_config, Gateway, RegistrySpec};
use portcullis_e2e::http::{self, Form};
use portcullis_e2e::oidc::Issuer;
use portcullis_e2e::pypiserver::{self, Pypiserver};
use portcullis_e2e::tools::tools;
use portcullis_e2e::wait_until;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// The fault proxy
// ---------------------------------------------------------------------------------------------

/// What the fault proxy does with the connections it accepts from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Relay to the real backend, one request per connection (`Connection: close`).
    Forward,
    /// Not listening: connections are refused.
    Down,
    /// Accept, then close at once without reading a byte.
    CloseAtOnce,
    /// Read the whole request, then never answer (until the gateway hangs up).
    Hang,
    /// Read the request head, then stop reading: the gateway's writes stall.
    Stall,
    /// Relay the head and the first N body bytes to the backend, then reset both connections.
    ResetAfter(u64),
    /// Read the whole request and answer `500` (every method).
    Answer500,
    /// Read a POST whole and answer `500`; relay every other method.
    Answer500ToPosts,
    /// Relay all but the last body byte; when the gateway's side goes away, reset the backend's
    /// connection (the gateway dies after releasing the upload, before the backend has it all).
    WithholdLastByte,
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    /// Body bytes read from the gateway.
    body_bytes: u64,
    /// The declared Content-Length.
    declared: u64,
}

impl Seen {
    fn complete(&self) -> bool {
        self.body_bytes == self.declared
    }
}

struct ProxyState {
    fault: Mutex<Fault>,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
    backend: SocketAddr,
    /// Backend connections cut off mid-body by `WithholdLastByte`.
    withheld: AtomicU64,
}

/// A TCP relay in front of a backend whose behaviour is switched per connection.
struct FaultProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
}

impl FaultProxy {
    fn start(backend: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(ProxyState {
            fault: Mutex::new(Fault::Forward),
            seen: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            backend,
            withheld: AtomicU64::new(0),
        });
        let shared = state.clone();
        std::thread::spawn(move || accept_loop(listener, addr, &shared));
        FaultProxy { addr, state }
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the behaviour for new connections; for `Down` (and back) waits until the
    /// listener is closed (open again).
    fn set(&self, fault: Fault) {
        *self.state.fault.lock().expect("fault lock") = fault;
        let down = fault == Fault::Down;
        let settled = wait_until(Duration::from_secs(5), || {
            let refused = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err();
            refused == down
        });
        assert!(settled, "the fault proxy did not switch to {fault:?}");
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn seen_method(&self, method: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.method == method).collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
    }
}

fn accept_loop(listener: TcpListener, addr: SocketAddr, state: &Arc<ProxyState>) {
    let mut listener = Some(listener);
    while !state.stop.load(Ordering::SeqCst) {
        let fault = *state.fault.lock().expect("fault lock");
        if fault == Fault::Down {
            listener = None;
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let Some(l) = listener.as_ref() else {
            // Back up on the same port (std sets SO_REUSEADDR).
            listener = TcpListener::bind(addr).ok();
            if let Some(l) = &listener {
                l.set_nonblocking(true).expect("nonblocking listener");
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        l.set_nonblocking(true).expect("nonblocking listener");
        match l.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking stream");
                let state = state.clone();
                std::thread::spawn(move || handle(stream, fault, &state));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Reads a request head; `None` when the connection closes first (a health probe).
fn read_head(reader: &mut impl BufRead) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            return Some(lines);
        }
        lines.push(line);
    }
}

/// Copies up to `n` bytes; returns how many were copied.
fn copy_n(from: &mut impl Read, to: Option<&mut TcpStream>, n: u64) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    let mut to = to;
    while done < n {
        let want = (n - done).min(buf.len() as u64) as usize;
        let got = match from.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(got) => got,
        };
        if let Some(to) = to.as_deref_mut() {
            if to.write_all(&buf[..got]).is_err() {
                break;
            }
        }
        done += got as u64;
    }
    done
}

fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
    let _ = stream.shutdown(Shutdown::Both);
}

fn handle(client: TcpStream, fault: Fault, state: &ProxyState) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    if fault == Fault::CloseAtOnce {
        drop(client);
        return;
    }
    let Ok(mut writer) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(client);
    let Some(head) = read_head(&mut reader) else {
        return;
    };
    let mut request_line = head.first().map(String::as_str).unwrap_or("").split_whitespace();
    let method = request_line.next().unwrap_or("").to_owned();
    let path = request_line.next().unwrap_or("").to_owned();
    let declared: u64 = head
        .iter()
        .find_map(|h| {
            let (name, value) = h.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let record = |body_bytes: u64| {
        if let Ok(mut seen) = state.seen.lock() {
            seen.push(Seen {
                method: method.clone(),
                path: path.clone(),
                body_bytes,
                declared,
            });
        }
    };
    let answer500 = |writer: &mut TcpStream| {
        let body = "the backend failed";
        let _ = write!(
            writer,
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = writer.shutdown(Shutdown::Write);
    };
    match fault {
        Fault::Hang => {
            record(copy_n(&mut reader, None, declared));
            // Never answer; hold the connection until the gateway hangs up.
            let _ = copy_n(&mut reader, None, u64::MAX);
            return;
        }
        Fault::Stall => {
            record(0);
            let until = Instant::now() + Duration::from_secs(20);
            while !state.stop.load(Ordering::SeqCst) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        Fault::Answer500 => {
            record(copy_n(&mut reader, None, declared));
            answer500(&mut writer);
            return;
        }
        Fault::Answer500ToPosts if method == "POST" => {
            record(copy_n(&mut reader, None, declared));
            answer500(&mut writer);
            return;
        }
        _ => {}
    }
    // Relay to the real backend, one request per connection.
    let Ok(mut backend) = TcpStream::connect(state.backend) else {
        return;
    };
    let mut out = String::new();
    for line in &head {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    if backend.write_all(out.as_bytes()).is_err() {
        return;
    }
    match fault {
        Fault::ResetAfter(n) => {
            let relayed = copy_n(&mut reader, Some(&mut backend), n.min(declared));
            record(relayed);
            reset(&backend);
            reset(&writer);
        }
        Fault::WithholdLastByte => {
            let mut relayed = copy_n(&mut reader, Some(&mut backend), declared.saturating_sub(1));
            relayed += copy_n(&mut reader, None, 1);
            record(relayed);
            // Wait for the gateway to go away, then cut the backend off mid-body.
            let _ = copy_n(&mut reader, None, u64::MAX);
            reset(&backend);
            state.withheld.fetch_add(1, Ordering::SeqCst);
        }
        _ => {
            let relayed = copy_n(&mut reader, Some(&mut backend), declared);
            record(relayed);
            let _ = backend.set_read_timeout(Some(Duration::from_secs(30)));
            let _ = std::io::copy(&mut backend, &mut writer);
            let _ = writer.shutdown(Shutdown::Write);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// pypiserver, the fault proxy in front of it, and a gateway (SQLite state in `dir/gw/data`)
/// with short upstream timeouts in front of the proxy.
struct Setup {
    _dir: tempfile::TempDir,
    work: PathBuf,
    backend: Pypiserver,
    proxy: FaultProxy,
    gateway: Gateway,
}

const TIMEOUTS: &str = "connect_timeout = \"1s\"\nread_timeout = \"1s\"\nwrite_timeout = \"1s\"\n";

fn gateway_over(work: &Path, upstream: SocketAddr, extra_config: &str) -> Gateway {
    gateway_over_with(work, upstream, extra_config, TIMEOUTS)
}

fn gateway_over_with(work: &Path, upstream: SocketAddr, extra_config: &str, timeouts: &str) -> Gateway {
    let dir = work.join("gw");
    let mut registry = RegistrySpec::new("pypi", "pypi", upstream);
    registry.upstream_extra = timeouts.into();
    Gateway::builder()
        .registry(registry)
        .rules("")
        .admin_config(&admin_token_config(&dir))
        .config(extra_config)
        .start(&dir)
}

fn setup_with(extra_config: impl FnOnce(&Path) -> String) -> Setup {
    setup_with_timeouts(extra_config, TIMEOUTS)
}

fn setup_with_timeouts(extra_config: impl FnOnce(&Path) -> String, timeouts: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().to_path_buf();
    let backend = Pypiserver::start(&work.join("pypiserver"));
    let proxy = FaultProxy::start(backend.addr());
    let config = extra_config(&work);
    let gateway = gateway_over_with(&work, proxy.addr(), &config, timeouts);
    Setup {
        _dir: dir,
        work,
        backend,
        proxy,
        gateway,
    }
}

fn setup() -> Setup {
    setup_with(|_| String::new())
}

fn auth() -> String {
    http::basic_auth(pypiserver::USER, pypiserver::PASSWORD)
}

fn upload_form(name: &str, version: &str, size: usize) -> Form {
    let content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    Form::pypi_upload(name, version, &format!("{name}-{version}.tar.gz"), &content)
}

fn upload_head(addr: SocketAddr, form: &Form) -> String {
    http::upload_head(
        addr,
        "POST",
        "/",
        &[
            ("content-type", form.content_type()),
            ("content-length", form.body.len().to_string()),
            ("authorization", auth()),
        ],
    )
}

/// Sends an upload (tolerating a gateway that answers before the whole body is written).
fn upload(gateway: &Gateway, form: &Form) -> http::Response {
    http::send_framed(gateway.addr(), &upload_head(gateway.addr(), form), &form.body).expect("a response")
}

fn upload_small(gateway: &Gateway, name: &str, version: &str) -> http::Response {
    upload(gateway, &upload_form(name, version, 2000))
}

fn remove(gateway: &Gateway, name: &str, version: &str) -> http::Response {
    let form = Form::pypi_remove(name, version);
    http::request(
        gateway.addr(),
        "POST",
        "/",
        &[("content-type", &form.content_type()), ("authorization", &auth())],
        &form.body,
    )
}

/// Asserts a JSON refusal with this status and code, and returns its body.
fn assert_refusal(r: &http::Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status, status, "{} {}", r.reason, r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{}", r.text());
    let body = r.json();
    assert_eq!(body["code"], code, "{body}");
    for field in ["message", "error", "request_id"] {
        assert!(body[field].as_str().is_some_and(|s| !s.is_empty()), "{field} in {body}");
    }
    body
}

/// Runs read-only SQL on the gateway's SQLite file with the tools' Python; rows as JSON arrays.
fn sql(db: &Path, query: &str) -> Vec<Value> {
    let out = Command::new(tools().python())
        .arg("-c")
        .arg(
            "import sqlite3, sys, json\n\
             c = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True, timeout=10)\n\
             print(json.dumps(c.execute(sys.argv[2]).fetchall()))",
        )
        .arg(db)
        .arg(query)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "sql {query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("rows as JSON")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn state_db(gateway: &Gateway) -> PathBuf {
    gateway.dir.join("data").join("portcullis.sqlite3")
}

/// The ledger rows of a project as `(state, detail)`, oldest first.
fn ledger(db: &Path, project: &str) -> Vec<(String, String)> {
    sql(
        db,
        &format!("SELECT state, detail FROM ledger WHERE project = '{project}' ORDER BY id"),
    )
    .into_iter()
    .map(|row| {
        (
            row[0].as_str().unwrap_or_default().to_owned(),
            row[1].as_str().unwrap_or_default().to_owned(),
        )
    })
    .collect()
}

/// The ledger rows once `count` are finished (rows are finished as the request ends, just after
/// the client has its answer).
fn ledger_settled(db: &Path, project: &str, count: usize) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    wait_until(Duration::from_secs(5), || {
        rows = ledger(db, project);
        rows.iter().filter(|(state, _)| state != "pending").count() >= count
    });
    rows
}

/// Asserts a normal upload through the unchanged gateway succeeds, lands whole in pypiserver
/// and is committed in the ledger.
fn assert_recovers(s: &Setup, name: &str) {
    s.proxy.set(Fault::Forward);
    let form = upload_form(name, "1.0", 3000);
    let r = upload(&s.gateway, &form);
    assert_eq!(r.status, 200, "recovery upload {name}: {} {}", r.reason, r.text());
    let file = format!("{name}-1.0.tar.gz");
    assert!(
        s.backend.stored().contains(&file),
        "{file} stored: {:?}",
        s.backend.stored()
    );
    let project = name.replace('_', "-");
    assert_eq!(
        ledger_settled(&state_db(&s.gateway), &project, 1),
        [("committed".to_owned(), "backend answered 200".to_owned())]
    );
}

/// Nothing of `name` in pypiserver, and no committed or pending ledger row for it.
fn assert_nothing_kept(s: &Setup, name: &str) {
    let stored = s.backend.stored();
    assert!(
        !stored.iter().any(|f| f.starts_with(name)),
        "nothing of {name} in the backend: {stored:?}"
    );
    let project = name.replace('_', "-");
    for (state, detail) in ledger(&state_db(&s.gateway), &project) {
        assert_eq!(state, "failed", "{project}: {state} ({detail})");
    }
}

/// No POST after the first `before` reached the backend whole.
fn assert_no_complete_post(proxy: &FaultProxy, before: usize) {
    let posts = proxy.seen_method("POST");
    let later = posts.get(before..).unwrap_or_default();
    assert!(later.iter().all(|p| !p.complete()), "{later:?}");
}

// ---------------------------------------------------------------------------------------------
// 1. Backend faults
// ---------------------------------------------------------------------------------------------

#[test]
fn backend_down_refusing_or_resetting_leaves_nothing_and_the_gateway_recovers() {
    let s = setup();
    let db = state_db(&s.gateway);

    // Down (connection refused): upload and read get a JSON 502; nothing stored.
    s.proxy.set(Fault::Down);
    let r = upload_small(&s.gateway, "down_pkg", "1.0");
    assert_refusal(&r, 502, "upstream_unavailable");
    assert_refusal(&http::get(s.gateway.addr(), "/simple/"), 502, "upstream_unavailable");
    assert_nothing_kept(&s, "down_pkg");
    assert!(
        ledger(&db, "down-pkg").is_empty(),
        "the upload was refused before its decision: no ledger row"
    );
    assert_recovers(&s, "after_down");
    assert_eq!(http::get(s.gateway.addr(), "/simple/").status, 200);

    // Refusing: accepts the connection and closes it at once.
    s.proxy.set(Fault::CloseAtOnce);
    let r = upload_small(&s.gateway, "closed_pkg", "1.0");
    assert_refusal(&r, 502, "upstream_failed");
    assert_refusal(&http::get(s.gateway.addr(), "/simple/"), 502, "upstream_failed");
    assert_nothing_kept(&s, "closed_pkg");
    assert_recovers(&s, "after_close");

    // Reset mid-upload, after 64 KiB of a 512 KiB body reached the backend.
    s.proxy.set(Fault::ResetAfter(64 * 1024));
    let form = upload_form("reset_pkg", "1.0", 512 * 1024);
    let r = upload(&s.gateway, &form);
    assert_refusal(&r, 502, "upstream_failed");
    let seen = s.proxy.seen_method("POST");
    let cut = seen.last().expect("the upload reached the proxy");
    assert_eq!(cut.body_bytes, 64 * 1024, "{cut:?}");
    assert!(!cut.complete());
    assert_nothing_kept(&s, "reset_pkg");
    assert_recovers(&s, "after_reset");
    assert!(
        s.gateway.metric_reaching(
            "portcullis_upstream_errors_total{kind=\"connect\",registry=\"pypi\"}",
            1.0
        ) >= 1.0
    );
}

#[test]
fn backend_slower_than_the_timeouts_gets_a_json_504_and_leaves_nothing() {
    let s = setup();
    let db = state_db(&s.gateway);

    // Never answers: reads and uploads time out after read_timeout (1 s), as JSON 504.
    s.proxy.set(Fault::Hang);
    let started = Instant::now();
    assert_refusal(&http::get(s.gateway.addr(), "/simple/"), 504, "upstream_timeout");
    let form = upload_form("hang_pkg", "1.0", 4000);
    let r = upload(&s.gateway, &form);
    assert_refusal(&r, 504, "upstream_timeout");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(6), "bounded by the timeouts: {elapsed:?}");
    // The whole upload went out (the decision allowed it, so the ledger row was written and
    // the tail released); the backend never confirmed it: the row is failed, not committed.
    let post = s
        .proxy
        .seen_method("POST")
        .pop()
        .expect("the upload reached the backend");
    assert!(post.complete(), "{post:?}");
    let rows = ledger_settled(&db, "hang-pkg", 1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "failed");
    assert!(rows[0].1.starts_with("no backend answer (status 504)"), "{rows:?}");
    assert_nothing_kept(&s, "hang_pkg");
    assert_recovers(&s, "after_hang");

    // Stops reading mid-body: the gateway's upstream writes stall, write_timeout (1 s) ends it.
    s.proxy.set(Fault::Stall);
    let form = upload_form("stall_pkg", "1.0", 24 << 20);
    let started = Instant::now();
    let r = upload(&s.gateway, &form);
    assert_refusal(&r, 504, "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    assert_nothing_kept(&s, "stall_pkg");
    assert_recovers(&s, "after_stall");
}

#[test]
fn backend_5xx_after_the_whole_body_is_failed_in_the_ledger_and_a_failed_delete_leaves_no_tombstone() {
    let s = setup();
    let db = state_db(&s.gateway);

    // The backend reads the whole upload and answers 500: the client gets the backend's own
    // answer (status and body passed through, not a gateway refusal), the row is failed.
    s.proxy.set(Fault::Answer500);
    let r = upload_small(&s.gateway, "five_pkg", "1.0");
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.text(), "the backend failed");
    assert!(r.header("x-request-id").is_some());
    let post = s
        .proxy
        .seen_method("POST")
        .pop()
        .expect("the upload reached the backend");
    assert!(post.complete(), "{post:?}");
    assert_eq!(
        ledger_settled(&db, "five-pkg", 1),
        [("failed".to_owned(), "backend answered 500".to_owned())]
    );
    assert_nothing_kept(&s, "five_pkg");
    assert_recovers(&s, "after_five");

    // A removal the backend answers 500 to: no tombstone; the audit record says the rules
    // allowed it and the client got 500. The retry succeeds and leaves its tombstone.
    let r = upload_small(&s.gateway, "gone_pkg", "1.0");
    assert_eq!(r.status, 200, "{}", r.text());
    s.proxy.set(Fault::Answer500ToPosts);
    let r = remove(&s.gateway, "gone_pkg", "1.0");
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        s.proxy
            .seen_method("GET")
            .iter()
            .any(|g| g.path.starts_with("/simple/gone")),
        "the removal was decided on the backend's index: {:?}",
        s.proxy.seen()
    );
    assert_eq!(s.backend.stored(), ["after_five-1.0.tar.gz", "gone_pkg-1.0.tar.gz"]);
    let tombstones = "SELECT kind, version FROM tombstones WHERE project = 'gone-pkg' ORDER BY id";
    assert!(sql(&db, tombstones).is_empty());
    let audit = s.gateway.audit("pypi", "gone-pkg", 2);
    let failed_delete = audit
        .iter()
        .find(|a| a["action"] == "delete_version")
        .expect("the removal is audited");
    assert_eq!(failed_delete["outcome"], "allow", "{failed_delete}");
    assert_eq!(failed_delete["status"], 500, "{failed_delete}");
    // Not tombstoned, so the same version could still be uploaded again: nothing was deleted.
    s.proxy.set(Fault::Forward);
    let r = remove(&s.gateway, "gone_pkg", "1.0");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.backend.stored(), ["after_five-1.0.tar.gz"]);
    // The version, and (its last version gone) the project name, reserved.
    assert_eq!(
        sql(&db, tombstones),
        [json!(["version", "1.0"]), json!(["project", null])]
    );
    let audit = s.gateway.audit("pypi", "gone-pkg", 3);
    assert_eq!(audit[0]["action"], "delete_version");
    assert_eq!(audit[0]["status"], 200, "{}", audit[0]);
    let again = upload_small(&s.gateway, "gone_pkg", "1.0");
    assert_refusal(&again, 409, "version_deleted");
}

// ---------------------------------------------------------------------------------------------
// 2. State store faults
// ---------------------------------------------------------------------------------------------

/// Another process holding SQLite's write lock on the gateway's database (`BEGIN EXCLUSIVE`)
/// until dropped.
struct Locker {
    child: Child,
}

impl Locker {
    fn lock(db: &Path) -> Locker {
        let mut child = Command::new(tools().python())
            .arg("-c")
            .arg(
                "import sqlite3, sys\n\
                 c = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)\n\
                 c.execute('BEGIN EXCLUSIVE')\n\
                 print('locked', flush=True)\n\
                 sys.stdin.read()\n\
                 c.execute('ROLLBACK')",
            )
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line.trim(), "locked");
        Locker { child }
    }

    fn release(mut self) {
        drop(self.child.stdin.take());
        let finished = wait_until(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten().is_some()
        });
        assert!(finished, "the locker did not let go");
    }
}

impl Drop for Locker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_locked_state_store_refuses_uploads_and_removals_with_503_after_the_busy_timeout_and_recovers() {
    // Upstream timeouts longer than SQLite's busy timeout: the backend waits for the held-back
    // tail meanwhile (with 1 s the backend's read timeout could fire first: 504
    // upstream_timeout, still refused, but not this fault's code).
    let s = setup_with_timeouts(|_| String::new(), "read_timeout = \"20s\"\nwrite_timeout = \"20s\"\n");
    let db = state_db(&s.gateway);
    let r = upload_small(&s.gateway, "locked_rm", "1.0");
    assert_eq!(r.status, 200, "{}", r.text());
    let locker = Locker::lock(&db);
    let posts_before = s.proxy.seen_method("POST").len();
    let started = Instant::now();
    let r = upload_small(&s.gateway, "locked_pkg", "1.0");
    let waited = started.elapsed();
    assert_refusal(&r, 503, "state_unavailable");
    // Bounded by SQLite's 5 s busy timeout (gateway/src/state/sqlite.rs).
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(9),
        "{waited:?}"
    );
    // The upload streamed to the backend but its tail was held back and the connection was
    // reset: the backend saw an incomplete body or (the reset discarding what it had not read
    // yet) nothing at all, and stores nothing.
    assert_no_complete_post(&s.proxy, posts_before);
    // Reads do not need the store's write lock.
    assert_eq!(http::get(s.gateway.addr(), "/simple/").status, 200);
    // A removal: its tombstone cannot be written, so it is refused before it reaches the
    // backend (without the tombstone the version could be uploaded again).
    let posts_before = s.proxy.seen_method("POST").len();
    let r = remove(&s.gateway, "locked_rm", "1.0");
    assert_refusal(&r, 503, "state_unavailable");
    assert_no_complete_post(&s.proxy, posts_before);
    assert_eq!(s.backend.stored(), ["locked_rm-1.0.tar.gz"]);
    locker.release();
    let tombstones = "SELECT kind, version FROM tombstones WHERE project = 'locked-rm' ORDER BY id";
    assert!(sql(&db, tombstones).is_empty());
    let r = remove(&s.gateway, "locked_rm", "1.0");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        sql(&db, tombstones),
        [json!(["version", "1.0"]), json!(["project", null])]
    );
    assert!(s.backend.stored().is_empty());
    assert!(ledger(&db, "locked-pkg").is_empty(), "the row was never written");
    assert_nothing_kept(&s, "locked_pkg");
    assert_recovers(&s, "after_lock");
}

/// A small tmpfs mounted at `path` (the tests run as root), unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill (needs root / CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Writes a filler file until the file system is full.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 64 * 1024];
        for _ in 0..100_000 {
            if file.write_all(&block).is_err() {
                break;
            }
        }
        // Byte by byte for the last partial block.
        while file.write_all(&[0]).is_ok() {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_under_the_state_store_fails_uploads_closed_and_a_full_audit_file_loses_no_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = Tmpfs::mount(&dir.path().join("state"), "4m");
    let audit_fs = Tmpfs::mount(&dir.path().join("audit"), "1m");
    let audit_file = audit_fs.path.join("audit.jsonl");
    let state_path = state.path.clone();
    let audit_path = audit_file.clone();
    let s = setup_with(move |_| {
        format!(
            "[state]\ndir = {:?}\n[audit]\nfile = {:?}\n",
            state_path.display().to_string(),
            audit_path.display().to_string()
        )
    });
    let db = state.path.join("portcullis.sqlite3");
    // The audit file's disk is full from the start (while the file is still empty: a file
    // with a partly used page could still grow into it).
    assert_eq!(std::fs::metadata(&audit_file).map(|m| m.len()).ok(), Some(0));
    let audit_filler = audit_fs.fill();

    // The state store's disk is full: the ledger row cannot be written, the upload is refused
    // and its tail never reaches the backend.
    let filler = state.fill();
    let posts_before = s.proxy.seen_method("POST").len();
    let r = upload_small(&s.gateway, "full_pkg", "1.0");
    assert_refusal(&r, 503, "state_unavailable");
    assert_no_complete_post(&s.proxy, posts_before);
    std::fs::remove_file(&filler).expect("free the space");
    assert!(ledger(&db, "full-pkg").is_empty());
    let stored = s.backend.stored();
    assert!(stored.is_empty(), "{stored:?}");

    // Space is back: the next upload succeeds without a restart.
    s.proxy.set(Fault::Forward);
    let r = upload_small(&s.gateway, "after_full", "1.0");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = upload_small(&s.gateway, "after_full", "2.0");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.backend.stored(), ["after_full-1.0.tar.gz", "after_full-2.0.tar.gz"]);
    assert_eq!(
        ledger_settled(&db, "after-full", 2),
        [
            ("committed".to_owned(), "backend answered 200".to_owned()),
            ("committed".to_owned(), "backend answered 200".to_owned())
        ]
    );

    let tombstones = "SELECT kind, version FROM tombstones WHERE project = 'after-full' ORDER BY id";
    let r = remove(&s.gateway, "after_full", "2.0");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(sql(&db, tombstones), [json!(["version", "2.0"])]);
    assert_refusal(&upload_small(&s.gateway, "after_full", "2.0"), 409, "version_deleted");

    // Audit records are written after the answer, to the state store and the file: with the
    // file's disk full the file misses the lines (an error is logged for each), the store keeps
    // them. A removal goes through the same way.
    // Newest first.
    let audit = s.gateway.audit("pypi", "after-full", 4);
    let actions: Vec<(String, String, u64)> = audit
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap_or_default().to_owned(),
                a["code"].as_str().unwrap_or_default().to_owned(),
                a["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    let expected = [
        ("upload", "version_deleted", 409),
        ("delete_version", "", 200),
        ("upload", "", 200),
        ("upload", "", 200),
    ]
    .map(|(a, c, st)| (a.to_owned(), c.to_owned(), st));
    assert_eq!(actions, expected);
    assert!(wait_until(Duration::from_secs(5), || s
        .gateway
        .log()
        .matches("the audit record could not be written to the file")
        .count()
        >= 5));
    assert_eq!(
        std::fs::metadata(&audit_file).map(|m| m.len()).ok(),
        Some(0),
        "no partial line was appended"
    );
    std::fs::remove_file(&audit_filler).expect("free the space");
    let r = upload_small(&s.gateway, "after_audit", "1.0");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&audit_file).is_ok_and(|t| t.lines().any(|l| l.contains("after-audit")))
    }));
    for line in std::fs::read_to_string(&audit_file).expect("audit file").lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("a whole JSON line ({e}): {line}"));
    }
    drop(s);
}

// ---------------------------------------------------------------------------------------------
// 3. The OIDC issuer down or slow during an exchange
// ---------------------------------------------------------------------------------------------

const AUDIENCE: &str = "portcullis-test";

fn exchange_rules(issuer: &Issuer) -> String {
    format!(
        "[issuers.gha]\nurl = \"{}\"\nkind = \"github\"\nalgorithms = [\"RS256\"]\n\n[registries.pypi]\naudience = \"{AUDIENCE}\"\n\n\
         [[registries.pypi.publishers]]\nid = \"widgets\"\nissuer = \"gha\"\nprojects = [\"demo-pkg\"]\nrepository = \"acme/widgets\"\n\
         repository_owner_id = \"1234\"\nworkflow = \"release.yml\"\npending = true\n",
        issuer.url()
    )
}

fn mint(gateway: &Gateway, token: &str) -> (http::Response, Duration) {
    let started = Instant::now();
    let r = http::mint_pypi_token(gateway.addr(), token);
    (r, started.elapsed())
}

#[test]
fn an_issuer_down_or_slow_fails_the_exchange_within_the_timeout_and_the_same_token_works_once_it_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::start(&dir.path().join("issuer"));
    let sink = portcullis_e2e::sink::Sink::start();
    let config = format!(
        "{}jwks_timeout = \"1s\"\njwks_refresh_cooldown = \"1s\"\n",
        trusted_publishing_config(&dir.path().join("keys"), issuer.ca_file())
    );
    let gateway = Gateway::builder()
        .registry(RegistrySpec::new("pypi", "pypi", sink.addr()))
        .rules(&exchange_rules(&issuer))
        .config(&config)
        .start(&dir.path().join("gw"));
    let claims = issuer.github_claims(AUDIENCE, "acme/widgets", "1234", "release.yml");
    let token = issuer.token(claims.clone());

    // Down (the connection closes without an answer) and nothing cached: refused at once.
    issuer.set_unreachable(true);
    let (r, took) = mint(&gateway, &token);
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["errors"][0]["code"], "issuer-unreachable", "{}", r.text());
    assert!(r.json()["token"].is_null(), "no token minted: {}", r.text());
    assert!(took < Duration::from_secs(2), "{took:?}");

    // Slow (accepts, never answers while stalled): refused after jwks_timeout (1 s), not later.
    issuer.set_unreachable(false);
    issuer.set_stalled(true);
    std::thread::sleep(Duration::from_millis(1100)); // past the 1 s refresh cooldown
    let asked = issuer.requests("/.well-known/openid-configuration");
    let (r, took) = mint(&gateway, &token);
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["errors"][0]["code"], "issuer-unreachable", "{}", r.text());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "bounded by jwks_timeout: {took:?}"
    );
    assert_eq!(issuer.requests("/.well-known/openid-configuration"), asked + 1);
    assert!(gateway.metric("portcullis_oidc_jwks_fetches_total{outcome=\"failed\"}") >= 2.0);

    // Back: once the cooldown has passed, the same token (its jti was never claimed) is
    // exchanged.
    issuer.set_stalled(false);
    let mut minted = None;
    wait_until(Duration::from_secs(5), || {
        let (r, _) = mint(&gateway, &token);
        let ok = r.status == 200;
        minted = Some(r);
        ok
    });
    let r = minted.expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["token"].as_str().is_some_and(|t| t.starts_with("pcul_")));
    // And a replay of it is refused: recovery did not loosen anything.
    let (replay, _) = mint(&gateway, &token);
    assert_eq!(
        replay.json()["errors"][0]["code"],
        "invalid-reuse-token",
        "{}",
        replay.text()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. The gateway killed mid-upload
// ---------------------------------------------------------------------------------------------

#[test]
fn a_gateway_killed_after_releasing_an_upload_leaves_a_pending_row_nothing_stored_and_a_retry_succeeds() {
    let mut s = setup();
    let db = state_db(&s.gateway);
    s.proxy.set(Fault::WithholdLastByte);
    let form = upload_form("killed_pkg", "1.0", 256 * 1024);
    let mut stream = http::connect(s.gateway.addr());
    stream
        .write_all(upload_head(s.gateway.addr(), &form).as_bytes())
        .expect("head");
    stream.write_all(&form.body).expect("body");
    // The decision is made and the tail released once the proxy has the whole body.
    assert!(
        wait_until(Duration::from_secs(10), || s
            .proxy
            .seen_method("POST")
            .iter()
            .any(Seen::complete)),
        "the upload was released: {:?}",
        s.proxy.seen()
    );
    let pending = ledger(&db, "killed-pkg");
    assert_eq!(pending, [("pending".to_owned(), String::new())]);
    s.gateway.process().signal("KILL");
    assert!(s.gateway.process().wait_exit(Duration::from_secs(5)).is_some());
    let client_saw = http::read_response(&mut stream);
    assert!(client_saw.is_err(), "the client got no answer: {client_saw:?}");
    // The backend never got the last byte, and its connection was reset: nothing stored.
    assert!(wait_until(Duration::from_secs(5), || s
        .proxy
        .state
        .withheld
        .load(Ordering::SeqCst)
        == 1));
    assert!(s.backend.stored().is_empty(), "{:?}", s.backend.stored());

    // Restart on the same state dir: the row stays pending (it explains itself), and it does
    // not block the retry.
    s.proxy.set(Fault::Forward);
    let gateway = gateway_over(&s.work, s.proxy.addr(), "");
    assert_eq!(ledger(&db, "killed-pkg"), pending);
    let r = upload(&gateway, &form);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.backend.stored(), ["killed_pkg-1.0.tar.gz"]);
    let r = http::get(gateway.addr(), "/packages/killed_pkg-1.0.tar.gz");
    assert_eq!(r.status, 200);
    let content: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    assert!(
        r.body == content,
        "the stored file is the whole upload ({} bytes)",
        r.body.len()
    );
    assert_eq!(
        ledger_settled(&db, "killed-pkg", 1),
        [
            ("pending".to_owned(), String::new()),
            ("committed".to_owned(), "backend answered 200".to_owned())
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// 5. SIGHUP storms
// ---------------------------------------------------------------------------------------------

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

#[test]
fn a_storm_of_sighups_under_traffic_fails_no_request_and_ends_on_the_last_rules() {
    let rules = |variant: &str| {
        format!("# {variant}\n[registries.npm]\n[[registries.npm.projects]]\nid = \"deny\"\nnames = [\"x-{variant}-*\"]\naction = \"deny\"\n")
    };
    let (_sink, _dir, mut gateway) = portcullis_e2e::gateway::npm_over_sink(&rules("a"));
    let addr = gateway.addr();
    let pid = gateway.process().pid();
    let traffic = |stop: Arc<AtomicBool>, ok: Arc<AtomicU64>, failed: Arc<AtomicU64>, w: u32| {
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                i += 1;
                let r = if i.is_multiple_of(2) {
                    http::get(addr, "/some-pkg")
                } else {
                    let name = format!("pkg-{w}-{i}");
                    http::request(
                        addr,
                        "PUT",
                        &format!("/{name}"),
                        &[],
                        &http::npm_publish_doc(&name, 2000),
                    )
                };
                if r.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed: {} {}", r.status, r.text());
                }
            }
        })
    };
    // Warm up, then measure.
    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let warm = traffic(stop.clone(), ok.clone(), failed.clone(), 0);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    warm.join().expect("warm-up");
    let rss_before = gateway.process().rss_kib().expect("VmRSS");
    let fds_before = fd_count(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (1..=2)
        .map(|w| traffic(stop.clone(), ok.clone(), failed.clone(), w))
        .collect();
    let reloads_before = gateway.metric("portcullis_rules_reloads_total{result=\"ok\"}");
    // 200 SIGHUPs in 5 bursts of 40, each as fast as `kill` goes, with the rules rewritten
    // before each burst; the last burst follows the last rewrite.
    let burst = |variant: &str| {
        gateway.write_rules(&rules(variant));
        let delivered = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "i=0; while [ $i -lt 40 ]; do kill -HUP {pid} || exit 1; i=$((i+1)); done"
            ))
            .status()
            .expect("storm")
            .success();
        assert!(delivered, "every SIGHUP was delivered to a live gateway");
        std::thread::sleep(Duration::from_millis(60));
    };
    for variant in ["b", "c", "b", "c", "final"] {
        burst(variant);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    assert!(gateway.process().try_exit().is_none(), "the gateway is up");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{ok} succeeded");
    assert!(ok > 50, "too little traffic to mean anything: {ok}");

    // The rules in force are the last ones written, and they stay.
    let revision = gateway.revision();
    let refused = http::request(addr, "PUT", "/x-final-1", &[], &http::npm_publish_doc("x-final-1", 10));
    assert_refusal(&refused, 403, "project_denied");
    let allowed = http::request(addr, "PUT", "/x-b-1", &[], &http::npm_publish_doc("x-b-1", 10));
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let decided: Vec<Value> = gateway.decisions(1);
    let last = decided
        .iter()
        .rev()
        .find(|d| d["project"] == "x-final-1")
        .expect("decision line");
    assert_eq!(last["rules_revision"], revision.as_str());
    let reloads = gateway.metric("portcullis_rules_reloads_total{result=\"ok\"}") - reloads_before;
    assert!(reloads >= 1.0, "{}", gateway.metrics());

    // No growth: file descriptors and memory after the storm (idle again).
    let settled_fds = wait_until(Duration::from_secs(5), || fd_count(pid) <= fds_before + 8);
    let fds_after = fd_count(pid);
    let rss_after = gateway.process().rss_kib().expect("VmRSS");
    eprintln!(
        "SIGHUP storm: {ok} requests ok, {reloads} reloads; fds {fds_before} -> {fds_after}; VmRSS {rss_before} KiB -> {rss_after} KiB"
    );
    assert!(settled_fds, "fds grew: {fds_before} -> {fds_after}");
    assert!(
        rss_after < rss_before + 32 * 1024,
        "memory grew: {rss_before} KiB -> {rss_after} KiB"
    );
}

// ---------------------------------------------------------------------------------------------
// 2b. PostgreSQL frozen (SIGSTOP)
// ---------------------------------------------------------------------------------------------

/// The server process and every process below it (PostgreSQL's backends and workers).
fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() && all.len() < 1000 {
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", all[i])).unwrap_or_default();
        all.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        i += 1;
    }
    all
}

fn signal_all(pids: &[u32], signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pids:?}");
}

#[test]
fn a_frozen_postgresql_refuses_uploads_within_the_acquire_timeout_and_recovers_when_it_thaws() {
    use portcullis_e2e::postgres::Postgres;

    let pg = Postgres::start();
    let url = pg.create_database("frozen");
    let s = setup_with(|work| {
        let dsn = work.join("dsn");
        std::fs::write(&dsn, format!("{url}\n")).expect("dsn file");
        format!(
            "[state]\nbackend = \"postgres\"\nurl_file = {:?}\nacquire_timeout = \"1s\"\nstatement_timeout = \"1s\"\n",
            dsn.display().to_string()
        )
    });
    let r = upload_small(&s.gateway, "before_freeze", "1.0");
    assert_eq!(r.status, 200, "{}", r.text());

    let frozen = process_tree(pg.pid().expect("postgres runs"));
    signal_all(&frozen, "STOP");
    let posts_before = s.proxy.seen_method("POST").len();
    let started = Instant::now();
    let r = upload_small(&s.gateway, "frozen_pkg", "1.0");
    let took = started.elapsed();
    signal_all(&frozen, "CONT");
    assert_refusal(&r, 503, "state_unavailable");
    assert!(took < Duration::from_secs(5), "bounded by acquire_timeout: {took:?}");
    assert_no_complete_post(&s.proxy, posts_before);
    assert!(!s.backend.stored().iter().any(|f| f.starts_with("frozen_pkg")));

    // Thawed: the next upload succeeds and is committed, without a restart.
    let r = upload_small(&s.gateway, "after_thaw", "1.0");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        pg.query(
            "frozen",
            "SELECT state FROM ledger WHERE project IN ('after-thaw', 'frozen-pkg') ORDER BY id"
        ),
        "committed"
    );
}

#[test]
fn a_removal_the_gateway_refuses_after_its_tombstones_were_written_leaves_none() {
    // The deletion rules let the removal through (its tombstones are written then), the write
    // rules refuse the request afterwards: it never reaches the backend, and the tombstones go.
    let s = setup();
    let db = state_db(&s.gateway);
    let r = upload_small(&s.gateway, "denied_later", "1.0");
    assert_eq!(r.status, 200, "{}", r.text());
    let before = s.gateway.revision();
    s.gateway.write_rules(
        "[registries.pypi]\n[[registries.pypi.projects]]\nid = \"frozen\"\nnames = [\"denied-later\"]\naction = \"deny\"\n",
    );
    assert!(wait_until(Duration::from_secs(10), || s.gateway.revision() != before));
    let posts_before = s.proxy.seen_method("POST").len();
    let r = remove(&s.gateway, "denied_later", "1.0");
    assert_refusal(&r, 403, "project_denied");
    assert_no_complete_post(&s.proxy, posts_before);
    assert_eq!(s.backend.stored(), ["denied_later-1.0.tar.gz"]);
    let tombstones = "SELECT kind, version FROM tombstones WHERE project = 'denied-later'";
    assert!(
        wait_until(Duration::from_secs(5), || sql(&db, tombstones).is_empty()),
        "{:?}",
        sql(&db, tombstones)
    );
}
