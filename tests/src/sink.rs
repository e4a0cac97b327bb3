//! A recording backend: accepts any request, reads and hashes the body without keeping it,
//! records how the request ended (complete, closed with FIN, or reset), and answers 200.
//! Tests use it where a real backend cannot say what it saw, e.g. to prove that a refused
//! upload ended upstream with a TCP reset rather than a clean close. `GET /slow/<ms>` answers
//! after a delay, `GET /blob/<bytes>` answers with that many bytes, and a path with a segment
//! starting with `absent` answers 404 (a project the backend does not have).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// How a request's body ended at the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The whole body arrived (per Content-Length or the final chunk).
    Complete,
    /// The connection was closed cleanly (FIN) before the body was complete.
    Fin,
    /// The connection was reset (RST) before the body was complete.
    Reset,
    /// Another read error or timeout.
    Error,
}

/// One request as the backend saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Request target.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body bytes received.
    pub body_bytes: u64,
    /// SHA-256 of the body bytes received.
    pub body_sha256: String,
    /// How the body ended.
    pub ending: Ending,
}

impl Seen {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The running sink.
pub struct Sink {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Sink {
    /// Starts a sink on a loopback port; its threads end with the test process.
    pub fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind sink");
        let addr = listener.local_addr().expect("sink address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = record.clone();
                std::thread::spawn(move || serve(stream, record));
            }
        });
        Sink { addr, seen }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Requests seen for a path.
    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

fn classify(e: &std::io::Error) -> Ending {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => Ending::Reset,
        std::io::ErrorKind::UnexpectedEof => Ending::Fin,
        _ => Ending::Error,
    }
}

fn serve(stream: TcpStream, record: Arc<Mutex<Vec<Seen>>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v): &(String, String)| v.clone())
        };
        let mut hasher = Sha256::new();
        let mut body_bytes = 0u64;
        let result = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            read_chunked(&mut reader, &mut hasher, &mut body_bytes)
        } else {
            let length: u64 = find("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            read_exact_hashing(&mut reader, length, &mut hasher, &mut body_bytes)
        };
        let ending = match &result {
            Ok(()) => Ending::Complete,
            Err(e) => classify(e),
        };
        if let Ok(mut seen) = record.lock() {
            seen.push(Seen {
                method: method.clone(),
                path: path.clone(),
                headers: headers.clone(),
                body_bytes,
                body_sha256: hex::encode(hasher.finalize()),
                ending,
            });
        }
        if result.is_err() {
            return;
        }
        // `/slow/<ms>` answers late; `/blob/<bytes>` answers with that many bytes.
        if let Some(ms) = path.strip_prefix("/slow/").and_then(|m| m.parse::<u64>().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        if let Some(size) = path.strip_prefix("/blob/").and_then(|m| m.parse::<u64>().ok()) {
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n");
            if writer.write_all(head.as_bytes()).is_err() {
                return;
            }
            let block = vec![0xa5u8; 256 * 1024];
            let mut left = size;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                if writer.write_all(&block[..n]).is_err() {
                    return;
                }
                left -= n as u64;
            }
            continue;
        }
        let absent = path.split('/').any(|segment| segment.starts_with("absent"));
        let (status, body) = if absent {
            ("404 Not Found", "{\"sink\":\"absent\"}".to_owned())
        } else {
            ("200 OK", format!("{{\"sink\":\"ok\",\"bytes\":{body_bytes}}}"))
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn read_exact_hashing(
    reader: &mut impl Read,
    mut remaining: u64,
    hasher: &mut Sha256,
    total: &mut u64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    while remaining > 0 {
        let want = remaining.min(buf.len() as u64) as usize;
        let n = reader.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed mid-body",
            ));
        }
        hasher.update(&buf[..n]);
        *total += n as u64;
        remaining -= n as u64;
    }
    Ok(())
}

fn read_chunked(reader: &mut impl BufRead, hasher: &mut Sha256, total: &mut u64) -> std::io::Result<()> {
    loop {
        let mut size_line = String::new();
        if reader.read_line(&mut size_line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed mid-body",
            ));
        }
        let size = u64::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        if size == 0 {
            let mut trailer = String::new();
            reader.read_line(&mut trailer)?;
            return Ok(());
        }
        read_exact_hashing(reader, size, hasher, total)?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}
