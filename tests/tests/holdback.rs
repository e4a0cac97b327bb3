//! What the backend sees, recorded by the sink: accepted uploads arrive whole, refused ones
//! end with a TCP reset before their last bytes, whatever the framing; memory stays flat.

use std::time::Duration;

use portcullis_e2e::gateway::{Gateway, RegistrySpec};
use portcullis_e2e::http::{self, Form};
use portcullis_e2e::sink::{Ending, Sink};
use portcullis_e2e::{sha256_hex, wait_until};

const RULES: &str = r#"
[registries.pypi]
max_upload_bytes = "300 MiB"
[[registries.pypi.projects]]
id = "deny-blocked"
names = ["blocked-*"]
action = "deny"
"#;

fn start(sink: &Sink, dir: &std::path::Path) -> Gateway {
    Gateway::builder()
        .registry(RegistrySpec::new("pypi", "pypi", sink.addr()))
        .rules(RULES)
        .start(dir)
}

fn headers(form: &Form, length: Option<usize>) -> Vec<(&'static str, String)> {
    let mut h = vec![("Content-Type", form.content_type())];
    match length {
        Some(n) => h.push(("Content-Length", n.to_string())),
        None => h.push(("Transfer-Encoding", "chunked".to_owned())),
    }
    h
}

fn send(gateway: &Gateway, form: &Form, chunked: bool) -> http::Response {
    let addr = gateway.addr();
    if chunked {
        let head = http::upload_head(addr, "POST", "/", &headers(form, None));
        http::send_framed(addr, &head, &http::chunked(&form.body, 8 * 1024)).expect("response")
    } else {
        let head = http::upload_head(addr, "POST", "/", &headers(form, Some(form.body.len())));
        http::send_framed(addr, &head, &form.body).expect("response")
    }
}

#[test]
fn accepted_uploads_arrive_whole_and_refused_ones_end_in_a_reset() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = start(&sink, dir.path());
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    for chunked in [false, true] {
        let path_marker = if chunked { "chunked" } else { "length" };
        let ok = Form::pypi_upload(
            &format!("fine-{path_marker}"),
            "1.0",
            &format!("fine_{path_marker}-1.0.tar.gz"),
            &content,
        );
        let r = send(&gateway, &ok, chunked);
        assert_eq!(r.status, 200, "{}", r.text());

        let refused = Form::pypi_upload(
            &format!("blocked-{path_marker}"),
            "1.0",
            &format!("blocked_{path_marker}-1.0.tar.gz"),
            &content,
        );
        let r = send(&gateway, &refused, chunked);
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(r.json()["code"], "project_denied");

        assert!(wait_until(Duration::from_secs(3), || sink.seen().len()
            >= if chunked { 4 } else { 2 }));
        let seen = sink.seen();
        let accepted = &seen[seen.len() - 2];
        let aborted = &seen[seen.len() - 1];
        assert_eq!(accepted.ending, Ending::Complete, "chunked={chunked}");
        assert_eq!(
            accepted.body_sha256,
            sha256_hex(&ok.body),
            "chunked={chunked}: body changed on the way"
        );
        assert_eq!(
            aborted.ending,
            Ending::Reset,
            "chunked={chunked}: a refused upload must end with a reset"
        );
        assert!(
            aborted.body_bytes < refused.body.len() as u64,
            "chunked={chunked}: the tail was not held back"
        );
        // Forwarding headers are set, and the gateway's request id travels upstream.
        assert_eq!(accepted.header("via"), Some("1.1 portcullis"));
        assert_eq!(accepted.header("x-forwarded-proto"), Some("http"));
        assert_eq!(accepted.header("x-forwarded-for"), Some("127.0.0.1"));
        assert!(accepted.header("x-request-id").is_some_and(|id| id.len() == 32));
    }
}

#[test]
fn memory_stays_flat_while_a_large_upload_streams() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gateway = start(&sink, dir.path());
    let baseline_kib = gateway.process().rss_kib().expect("rss");

    // 256 MiB, generated as it is sent, never held by the test either.
    let size: u64 = 256 << 20;
    let (response, total) = http::stream_pypi_upload(gateway.addr(), "big", size);
    assert_eq!(response.status, 200, "{}", response.text());
    let peak_kib = gateway.process().peak_rss_kib().expect("peak rss");
    eprintln!(
        "gateway RSS: {baseline_kib} KiB before, {peak_kib} KiB peak during a {} MiB upload",
        size >> 20
    );
    assert!(
        peak_kib < baseline_kib + 64 * 1024,
        "peak RSS {peak_kib} KiB grew by more than 64 MiB over {baseline_kib} KiB for a 256 MiB body: the body is being buffered"
    );
    let seen = sink.seen();
    assert_eq!(
        seen.last().map(|s| (s.ending, s.body_bytes)),
        Some((Ending::Complete, total))
    );
}
