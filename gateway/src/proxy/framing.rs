//! Request framing the gateway accepts: one unambiguous way to find where the body ends.
//!
//! pingora already refuses what it cannot frame (conflicting or malformed `Content-Length`,
//! a `Transfer-Encoding` whose last coding is not `chunked`, `Transfer-Encoding` on HTTP/1.0).
//! It accepts, and frames in its own way, some requests that other HTTP parsers read
//! differently: both `Content-Length` and `Transfer-Encoding` (pingora drops the length),
//! repeated or comma-listed equal lengths (`Content-Length: 5, 5`, which pingora then forwards
//! as it came: a backend that does not parse the list reads the body as the next request on a
//! pooled connection), and codings before `chunked` (`identity, chunked`, two
//! `Transfer-Encoding` fields). A load balancer in front of the gateway or the backend behind
//! it may frame such a request otherwise, which is how requests get smuggled. The gateway
//! refuses them all with `400 bad_request`, as nginx does.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::HeaderMap;

use crate::error::Refusal;

/// Checks the framing fields of a request head. `raw_head` is the head as received: pingora
/// removes `Content-Length` from the parsed headers when `Transfer-Encoding` is present, so
/// the raw bytes are the only place left to see both.
pub fn check(raw_head: &[u8], headers: &HeaderMap) -> Result<(), Refusal> {
    let raw_lengths = raw_fields(raw_head, "content-length");
    let codings: Vec<&[u8]> = headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if !codings.is_empty() && raw_lengths > 0 {
        return Err(bad("both Content-Length and Transfer-Encoding are present"));
    }
    match codings.as_slice() {
        [] => {}
        [coding] if coding.trim_ascii().eq_ignore_ascii_case(b"chunked") => {}
        [_] => return Err(bad("the only Transfer-Encoding accepted is \"chunked\"")),
        _ => return Err(bad("Transfer-Encoding is sent more than once")),
    }
    let lengths: Vec<&[u8]> = headers.get_all(CONTENT_LENGTH).iter().map(|v| v.as_bytes()).collect();
    if raw_lengths > 1 || lengths.len() > 1 {
        return Err(bad("Content-Length is sent more than once"));
    }
    if let Some(length) = lengths.first() {
        let digits = length.trim_ascii();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad("Content-Length must be a single decimal number"));
        }
    }
    Ok(())
}

fn bad(why: &str) -> Refusal {
    Refusal::BadRequest(format!("ambiguous request framing: {why}"))
}

/// How many header lines of `raw_head` have this (lower-case) field name.
fn raw_fields(raw_head: &[u8], name: &str) -> usize {
    raw_head
        .split(|b| *b == b'\n')
        .skip(1)
        .filter_map(|line| line.iter().position(|b| *b == b':').map(|colon| &line[..colon]))
        .filter(|field| field.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &[(&str, &str)]) -> (Vec<u8>, HeaderMap) {
        let mut raw = b"POST /x HTTP/1.1\r\nHost: h\r\n".to_vec();
        let mut map = HeaderMap::new();
        for (n, v) in lines {
            raw.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            let name = http::HeaderName::from_bytes(n.as_bytes()).expect("name");
            // As pingora does: with Transfer-Encoding present, Content-Length is dropped.
            map.append(name, http::HeaderValue::from_str(v).expect("value"));
        }
        if map.contains_key(TRANSFER_ENCODING) {
            map.remove(CONTENT_LENGTH);
        }
        raw.extend_from_slice(b"\r\n");
        (raw, map)
    }

    fn verdict(lines: &[(&str, &str)]) -> Result<(), Refusal> {
        let (raw, map) = head(lines);
        check(&raw, &map)
    }

    #[test]
    fn one_length_or_one_chunked_coding_passes() {
        assert_eq!(verdict(&[]), Ok(()));
        assert_eq!(verdict(&[("Content-Length", "5")]), Ok(()));
        assert_eq!(verdict(&[("Transfer-Encoding", "chunked")]), Ok(()));
        assert_eq!(verdict(&[("transfer-encoding", "ChUnKeD")]), Ok(()));
    }

    #[test]
    fn length_and_coding_together_are_refused_whatever_the_order() {
        for lines in [
            [("Content-Length", "6"), ("Transfer-Encoding", "chunked")],
            [("Transfer-Encoding", "chunked"), ("content-length", "4")],
        ] {
            let refusal = verdict(&lines).expect_err("refused");
            assert_eq!(refusal.code(), "bad_request");
            assert!(refusal
                .to_string()
                .contains("both Content-Length and Transfer-Encoding"));
        }
    }

    #[test]
    fn codings_other_than_a_single_chunked_are_refused() {
        for lines in [
            vec![("Transfer-Encoding", "identity, chunked")],
            vec![("Transfer-Encoding", "gzip, chunked")],
            vec![("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")],
            vec![("Transfer-Encoding", "identity"), ("Transfer-Encoding", "chunked")],
        ] {
            assert!(verdict(&lines).is_err(), "{lines:?}");
        }
    }

    #[test]
    fn repeated_or_listed_lengths_are_refused_even_when_equal() {
        assert!(verdict(&[("Content-Length", "5"), ("Content-Length", "5")]).is_err());
        assert!(verdict(&[("Content-Length", "5, 5")]).is_err());
        assert!(verdict(&[("Content-Length", "+5")]).is_err());
    }

    #[test]
    fn raw_fields_match_names_only() {
        let raw = b"POST /content-length:1 HTTP/1.1\nX-Note: content-length: 3\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(raw_fields(raw, "content-length"), 1);
    }
}
