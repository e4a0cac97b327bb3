//! A minimal HTTP/1.1 client over raw sockets, so tests control every byte: framing,
//! early disconnects (FIN or RST), and what exactly reaches the gateway.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase as sent.
    pub reason: String,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first error code of a Warehouse-style refusal (`{"errors": [{"code": …}]}`), as the
    /// PyPI trusted-publishing exchange answers; empty when there is none.
    pub fn warehouse_code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// Sends an OIDC ID token to the PyPI trusted-publishing exchange (`POST /_/oidc/mint-token`).
pub fn mint_pypi_token(addr: SocketAddr, oidc_token: &str) -> Response {
    let body = serde_json::to_vec(&serde_json::json!({ "token": oidc_token })).expect("json");
    request(
        addr,
        "POST",
        "/_/oidc/mint-token",
        &[("content-type", "application/json")],
        &body,
    )
}

/// Connects with a 10 s read/write timeout.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream
}

/// Sends a whole request and reads the response.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut stream = connect(addr);
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(body).expect("write body");
    read_response(&mut stream).expect("read response")
}

/// GET with no body.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], b"")
}

/// Reads one response from `stream` (Content-Length, chunked, or until close).
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    if status_line.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no response"));
    }
    let mut parts = status_line.trim_end().splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let reason = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(std::io::Error::other)?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if status != 204 && status != 304 {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        reason,
        headers,
        body,
    })
}

/// Encodes `body` as chunked transfer-encoding with chunks of `size` bytes.
pub fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / size.max(1) * 8 + 8);
    for chunk in body.chunks(size.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A multipart/form-data body built from fields and one file part.
pub struct Form {
    /// The boundary.
    pub boundary: String,
    /// The encoded body.
    pub body: Vec<u8>,
}

impl Form {
    /// A PyPI `file_upload` form for `name`/`version` carrying `content` as `filename`.
    pub fn pypi_upload(name: &str, version: &str, filename: &str, content: &[u8]) -> Form {
        Self::pypi_upload_with(name, version, filename, content, &[])
    }

    /// [`Form::pypi_upload`] with extra text fields (e.g. `attestations`) before the file part.
    pub fn pypi_upload_with(name: &str, version: &str, filename: &str, content: &[u8], extra: &[(&str, &str)]) -> Form {
        let boundary = "portcullis-test-boundary-7f3a".to_owned();
        let mut body = Vec::new();
        let mut field = |n: &str, v: &str| {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n").as_bytes(),
            );
        };
        field(":action", "file_upload");
        field("protocol_version", "1");
        field("name", name);
        field("version", version);
        field("filetype", "sdist");
        field("pyversion", "source");
        field("metadata_version", "2.1");
        field("sha256_digest", &crate::sha256_hex(content));
        for (n, v) in extra {
            field(n, v);
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        Form { boundary, body }
    }

    /// A PyPI `remove_pkg` form (the legacy API's release removal) for `name`/`version`.
    pub fn pypi_remove(name: &str, version: &str) -> Form {
        let boundary = "portcullis-remove-boundary".to_owned();
        let mut body = Vec::new();
        for (field, value) in [(":action", "remove_pkg"), ("name", name), ("version", version)] {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        Form { boundary, body }
    }

    /// The Content-Type header value.
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }
}

/// Basic auth header value.
pub fn basic_auth(user: &str, password: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let bytes = input.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_encodes_like_rfc_7617() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_auth("a", "b"), "Basic YTpi");
    }

    #[test]
    fn chunked_encoding_ends_with_the_last_chunk() {
        assert_eq!(chunked(b"hello", 2), b"2\r\nhe\r\n2\r\nll\r\n1\r\no\r\n0\r\n\r\n");
    }
}

/// How a client ends a connection it abandons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// Half-close with FIN after the bytes sent.
    Fin,
    /// Reset (SO_LINGER 0, then close).
    Reset,
}

/// Sends `head` and the first `sent` bytes of `body`, then abandons the connection.
/// Returns the response if the gateway answered before the abort (FIN case only).
pub fn send_and_abort(addr: SocketAddr, head: &str, body: &[u8], sent: usize, abort: Abort) -> Option<Response> {
    let mut stream = connect(addr);
    stream.write_all(head.as_bytes()).expect("write head");
    stream
        .write_all(&body[..sent.min(body.len())])
        .expect("write body prefix");
    stream.flush().expect("flush");
    // Give the gateway time to forward what it has before the abort.
    std::thread::sleep(Duration::from_millis(200));
    match abort {
        Abort::Fin => {
            stream.shutdown(std::net::Shutdown::Write).expect("shutdown");
            stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            read_response(&mut stream).ok()
        }
        Abort::Reset => {
            let socket = socket2::SockRef::from(&stream);
            socket.set_linger(Some(Duration::ZERO)).expect("SO_LINGER 0");
            drop(stream);
            None
        }
    }
}

/// Request head for an upload with the given framing headers.
pub fn upload_head(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, String)]) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Sends a complete request whose body bytes are already framed (e.g. chunked), tolerating a
/// gateway that answers and closes before the body is fully written.
pub fn send_framed(addr: SocketAddr, head: &str, framed_body: &[u8]) -> std::io::Result<Response> {
    let mut stream = connect(addr);
    stream.write_all(head.as_bytes())?;
    // A refusal may come before the whole body is written: stop writing then, read the answer.
    for piece in framed_body.chunks(64 * 1024) {
        if stream.write_all(piece).is_err() {
            break;
        }
    }
    read_response(&mut stream)
}

/// Streams a PyPI upload form whose file is `size` generated bytes (never held in memory),
/// with a Content-Length, and returns the response and the total body size.
pub fn stream_pypi_upload(addr: SocketAddr, name: &str, size: u64) -> (Response, u64) {
    let head = format!(
        "--b\r\nContent-Disposition: form-data; name=\":action\"\r\n\r\nfile_upload\r\n\
         --b\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n\
         --b\r\nContent-Disposition: form-data; name=\"version\"\r\n\r\n1.0\r\n\
         --b\r\nContent-Disposition: form-data; name=\"content\"; filename=\"{name}-1.0.tar.gz\"\r\n\r\n"
    );
    let tail = "\r\n--b--\r\n";
    let total = head.len() as u64 + size + tail.len() as u64;
    let mut stream = connect(addr);
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n{head}"
    )
    .expect("head");
    let block = vec![0x5au8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        stream.write_all(&block[..n]).expect("body");
        left -= n as u64;
    }
    stream.write_all(tail.as_bytes()).expect("tail");
    (read_response(&mut stream).expect("response"), total)
}

/// GETs `path` and reads the body without keeping it; returns the status and byte count.
pub fn stream_download(addr: SocketAddr, path: &str) -> (u16, u64) {
    let mut stream = connect(addr);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("header") == 0 || line.trim_end().is_empty() {
            break;
        }
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).expect("body");
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    (status, total)
}

/// A valid npm publish document for `name@1.0.0` with a tarball of `tarball_bytes` bytes, as
/// libnpmpublish builds it (integrity, shasum, base64 attachment).
pub fn npm_publish_doc(name: &str, tarball_bytes: usize) -> Vec<u8> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let tarball: Vec<u8> = (0..tarball_bytes).map(|i| (i % 251) as u8).collect();
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&tarball))
    );
    let shasum = hex::encode(<sha1::Sha1 as sha1::Digest>::digest(&tarball));
    let file = format!("{name}-1.0.0.tgz");
    serde_json::to_vec(&serde_json::json!({
        "_id": name,
        "name": name,
        "dist-tags": {"latest": "1.0.0"},
        "versions": {"1.0.0": {"name": name, "version": "1.0.0", "dist": {"integrity": integrity, "shasum": shasum}}},
        "_attachments": {file: {
            "content_type": "application/octet-stream",
            "data": base64::engine::general_purpose::STANDARD.encode(&tarball),
            "length": tarball.len(),
        }},
    }))
    .expect("json")
}
