//! Tests of the strict reader: the canonical form reads, every deviation is refused, and the
//! streaming reader agrees with a whole-body reference at every split point.

use super::*;

const BOUNDARY: &str = "b0undary-XyZ";

fn content_type() -> FormContentType {
    FormContentType::parse(&format!("multipart/form-data; boundary={BOUNDARY}")).expect("content type")
}

/// A part as read: head and all its data.
type ReadPart = (PartHead, Vec<u8>);

/// Records what the reader hands over, merging each part's data slices.
#[derive(Default)]
struct Recorder {
    parts: Vec<ReadPart>,
    open: bool,
}

impl PartSink for Recorder {
    type Error = MultipartError;

    fn start_part(&mut self, head: PartHead) -> Result<(), MultipartError> {
        assert!(!self.open, "a part started inside another");
        self.parts.push((head, Vec::new()));
        self.open = true;
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), MultipartError> {
        assert!(self.open && !bytes.is_empty(), "data outside a part or empty");
        self.parts.last_mut().expect("part").1.extend_from_slice(bytes);
        Ok(())
    }

    fn end_part(&mut self) -> Result<(), MultipartError> {
        assert!(self.open, "a part ended twice");
        self.open = false;
        Ok(())
    }
}

/// Reads `body` fed in `pieces`.
fn read_pieces(pieces: &[&[u8]]) -> Result<Vec<ReadPart>, MultipartError> {
    let mut reader = StrictMultipart::new(&content_type());
    let mut recorder = Recorder::default();
    for piece in pieces {
        reader.feed(piece, &mut recorder)?;
    }
    reader.finish()?;
    Ok(recorder.parts)
}

fn read(body: &[u8]) -> Result<Vec<ReadPart>, MultipartError> {
    read_pieces(&[body])
}

/// An independent whole-body reading of the same grammar, for the split tests.
fn reference(body: &[u8]) -> Result<Vec<ReadPart>, MultipartError> {
    let dash = format!("--{BOUNDARY}").into_bytes();
    let occurrences: Vec<usize> = (0..body.len().saturating_sub(dash.len() - 1))
        .filter(|&i| body[i..].starts_with(&dash))
        .collect();
    let bad = || MultipartError::Ambiguous("reference".into());
    if body.is_empty() || !body.starts_with(&dash) && !dash.starts_with(body) {
        return if body.is_empty() {
            Err(MultipartError::Truncated("empty".into()))
        } else {
            Err(bad())
        };
    }
    let mut parts = Vec::new();
    for (n, &at) in occurrences.iter().enumerate() {
        if at > 0 && (at < 2 || &body[at - 2..at] != b"\r\n") {
            return Err(bad());
        }
        let after = at + dash.len();
        let next = &body[after..body.len().min(after + 2)];
        if n > 0 {
            // The part between the previous delimiter line and this delimiter's CRLF.
            let start = occurrences[n - 1] + dash.len() + 2;
            let part = &body[start..at - 2];
            let Some(end) = part.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Err(bad());
            };
            if part.starts_with(b"\r\n") {
                return Err(bad());
            }
            let head = PartHead::parse(&part[..end + 2])?;
            parts.push((head, part[end + 4..].to_vec()));
        }
        if n == 0 && next != b"\r\n" {
            return if b"\r\n".starts_with(next) {
                Err(MultipartError::Truncated("reference".into()))
            } else {
                Err(bad())
            };
        }
        match next {
            b"\r\n" => {}
            b"--" => {
                let tail = &body[after + 2..];
                if n + 1 != occurrences.len() || !b"\r\n".starts_with(tail) {
                    return Err(bad());
                }
                return Ok(parts);
            }
            b"\r" | b"-" | b"" => return Err(MultipartError::Truncated("reference".into())),
            _ => return Err(bad()),
        }
    }
    // No closing delimiter: the body ends inside the form (or inside a part's headers).
    if let Some(&last) = occurrences.last() {
        let start = last + dash.len() + 2;
        let head_end = body[start..].windows(4).position(|w| w == b"\r\n\r\n");
        let rest = &body[start..];
        if rest.starts_with(b"\r\n") {
            return Err(bad());
        }
        match head_end {
            Some(end) => {
                PartHead::parse(&rest[..end + 2])?;
                // A trailing partial delimiter in the data is only a prefix: still truncated.
            }
            None if rest.len() > MAX_PART_HEAD_BYTES => return Err(bad()),
            None => {}
        }
    }
    Err(MultipartError::Truncated("reference".into()))
}

fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    test_form::canonical_form(BOUNDARY, parts)
}

fn is_ambiguous<T: std::fmt::Debug>(result: &Result<T, MultipartError>, needle: &str) -> bool {
    matches!(result, Err(MultipartError::Ambiguous(m)) if m.contains(needle))
}

#[test]
fn the_canonical_form_reads_part_by_part() {
    let body = form(&[
        (":action", None, b"file_upload"),
        ("name", None, b"demo"),
        ("empty", None, b""),
        ("content", Some("demo-1.0.tar.gz"), b"\r\n--not the boundary\r\n-"),
    ]);
    let parts = read(&body).expect("read");
    let seen: Vec<(&str, Option<&str>, &[u8])> = parts
        .iter()
        .map(|(h, d)| (h.name.as_str(), h.filename.as_deref(), d.as_slice()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (":action", None, &b"file_upload"[..]),
            ("name", None, b"demo"),
            ("empty", None, b""),
            ("content", Some("demo-1.0.tar.gz"), b"\r\n--not the boundary\r\n-"),
        ]
    );
    assert_eq!(parts[3].0.content_type.as_deref(), Some("application/octet-stream"));
    // The final CRLF after the closing delimiter is optional.
    assert!(read(&body[..body.len() - 2]).is_ok());
}

#[test]
fn framing_outside_the_canonical_form_is_refused() {
    let good = form(&[("name", None, b"demo")]);
    let text = String::from_utf8(good.clone()).expect("ascii");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("preamble", [b"hello\r\n".as_slice(), &good].concat(), "preamble"),
        ("leading CRLF", [b"\r\n".as_slice(), &good].concat(), "preamble"),
        ("epilogue", [good.as_slice(), b"more"].concat(), "epilogue"),
        (
            "a part after the close",
            [good.as_slice(), &form(&[("name", None, b"evil")])].concat(),
            "epilogue",
        ),
        ("LF-only body", text.replace("\r\n", "\n").into_bytes(), "preamble"),
        (
            "LF-only delimiter",
            text.replace(&format!("\r\n--{BOUNDARY}--"), &format!("\n--{BOUNDARY}--"))
                .into_bytes(),
            "without a CRLF",
        ),
        (
            "transport padding",
            text.replace(&format!("--{BOUNDARY}--"), &format!("--{BOUNDARY} \r\n--{BOUNDARY}--"))
                .into_bytes(),
            "after the boundary",
        ),
        (
            "boundary inside data",
            form(&[("name", None, format!("x--{BOUNDARY}").as_bytes())]),
            "without a CRLF",
        ),
        (
            "boundary right after the head",
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n--{BOUNDARY}--\r\n")
                .into_bytes(),
            "without a CRLF",
        ),
        (
            "boundary in a header",
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"--{BOUNDARY}\"\r\n\r\nx\r\n--{BOUNDARY}--")
                .into_bytes(),
            "",
        ),
        (
            "no headers",
            format!("--{BOUNDARY}\r\n\r\nx\r\n--{BOUNDARY}--").into_bytes(),
            "no headers",
        ),
    ];
    for (what, body, needle) in cases {
        let result = read(&body);
        assert!(is_ambiguous(&result, needle), "{what}: {result:?}");
    }
    assert!(matches!(
        read(&good[..good.len() - 10]),
        Err(MultipartError::Truncated(_))
    ));
    assert!(matches!(read(b""), Err(MultipartError::Truncated(m)) if m.contains("empty")));
}

#[test]
fn part_headers_outside_the_canonical_form_are_refused() {
    let part = |head: &str| format!("--{BOUNDARY}\r\n{head}\r\n\r\nv\r\n--{BOUNDARY}--\r\n").into_bytes();
    let refused = [
        (
            "Content-Disposition: form-data; name=\"a\"\r\nContent-Disposition: form-data; name=\"b\"",
            "two",
        ),
        ("Content-Disposition: form-data; name=\"a\"; name=\"b\"", "twice"),
        (
            "Content-Disposition: form-data; name=\"content\"; filename=\"a\"; filename=\"b\"",
            "twice",
        ),
        (
            "Content-Disposition: form-data; name=\"content\"; filename*=UTF-8''a.tar.gz",
            "filename*",
        ),
        (
            "Content-Disposition: form-data; name=\"content\"; filename=\"a\"; filename*=UTF-8''b",
            "filename*",
        ),
        ("Content-Disposition: form-data; name=content", "quoted"),
        ("Content-Disposition: form-data; name='content'", "quoted"),
        ("Content-Disposition: form-data; name=\"a\\\"b\"", "quoted"),
        ("Content-Disposition: form-data; name=\"a%22b\"", "quoted"),
        ("Content-Disposition: form-data; name=\"a;b\"", "quoted"),
        ("Content-Disposition: form-data; name=\"\"", "quoted"),
        ("Content-Disposition: form-data; NAME=\"a\"", "lower case"),
        ("Content-Disposition: form-data; name = \"a\"", "lower case"),
        ("Content-Disposition: form-data; name=\"a\"; size=\"3\"", "size"),
        ("Content-Disposition: attachment; name=\"a\"", "form-data"),
        ("Content-Disposition: form-data", "no name"),
        ("Content-Type: text/plain", "no Content-Disposition"),
        (
            "Content-Disposition: form-data; name=\"a\"\r\nContent-Transfer-Encoding: base64",
            "Content-Transfer-Encoding",
        ),
        ("Content-Disposition: form-data;\r\n name=\"a\"", "folded"),
        ("Content-Disposition : form-data; name=\"a\"", "plain name"),
        ("Content-Disposition:\tform-data; name=\"a\"", "tab"),
        ("Content-Disposition: form-data; name=\"a\"\nX: y", "lone CR or LF"),
        ("Content-Disposition: form-data; name=\"caf\u{e9}\"", "non-ASCII"),
        (
            "Content-Disposition: form-data; name=\"a\"\r\nContent-Type: text/plain; charset=utf-16",
            "Content-Type",
        ),
        (
            "Content-Disposition: form-data; name=\"a\"\r\nContent-Type: multipart/mixed",
            "Content-Type",
        ),
        (
            "Content-Disposition: form-data; name=\"f\"; filename=\"f\"\r\nContent-Type: message/rfc822",
            "Content-Type",
        ),
        (
            "Content-Disposition: form-data; name=\"f\"; filename=\"f\"\r\nContent-Type: a/b; x=y",
            "Content-Type",
        ),
        (
            "Content-Disposition: form-data; name=\"a\"\r\nContent-Type: text/plain\r\ncontent-type: text/plain",
            "two",
        ),
    ];
    for (head, needle) in refused {
        let result = read(&part(head));
        assert!(is_ambiguous(&result, needle), "{head:?}: {result:?}");
    }
    let accepted = [
        "content-disposition: FORM-DATA; name=\"a\"",
        "Content-Disposition: form-data;name=\"a\"",
        "Content-Disposition: form-data; name=\"a\"\r\nContent-Type: text/plain; charset=utf-8",
        "Content-Type: application/x-tar\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f.tar\"",
    ];
    for head in accepted {
        assert!(read(&part(head)).is_ok(), "{head:?}");
    }
}

#[test]
fn content_types_read_one_way_and_are_forwarded_in_one_spelling() {
    for (sent, canonical) in [
        ("multipart/form-data; boundary=abc", "multipart/form-data; boundary=abc"),
        ("Multipart/Form-Data; Boundary=abc", "multipart/form-data; boundary=abc"),
        (
            "multipart/form-data;boundary=\"abc\"",
            "multipart/form-data; boundary=abc",
        ),
        (
            "multipart/form-data; boundary=\"a:b=c\"",
            "multipart/form-data; boundary=\"a:b=c\"",
        ),
    ] {
        let parsed = FormContentType::parse(sent).expect(sent);
        assert_eq!(parsed.canonical(), canonical, "{sent}");
        assert_eq!(FormContentType::parse(&parsed.canonical()), Ok(parsed));
    }
    for sent in [
        "multipart/form-data; boundary=a; boundary=b",
        "multipart/form-data; boundary=a; Boundary=a",
        "multipart/form-data; boundary*=UTF-8''a",
        "multipart/form-data; boundary=a; charset=utf-8",
        "multipart/form-data; boundary=\"a\\\"b\"",
        "multipart/form-data; boundary=\"a",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=a b",
        "multipart/form-data; boundary=a;",
        "multipart/form-data",
        "multipart/mixed; boundary=a",
    ] {
        assert!(FormContentType::parse(sent).is_err(), "{sent}");
    }
    assert!(FormContentType::parse(&format!("multipart/form-data; boundary={}", "a".repeat(70))).is_ok());
    assert!(FormContentType::parse(&format!("multipart/form-data; boundary={}", "a".repeat(71))).is_err());
}

/// Bodies that exercise every state: valid, truncated anywhere, and refused in each way.
fn split_corpus() -> Vec<Vec<u8>> {
    let good = form(&[
        (":action", None, b"file_upload"),
        (
            "content",
            Some("f.tar.gz"),
            format!("\r\n--{}\r\r\n-", &BOUNDARY[..5]).as_bytes(),
        ),
        ("e", None, b""),
    ]);
    let text = String::from_utf8(good.clone()).expect("ascii");
    let mut corpus = vec![
        good.clone(),
        [good.as_slice(), b"x"].concat(),
        [b"x".as_slice(), &good].concat(),
        text.replacen("\r\n\r\n", "\n\r\n", 1).into_bytes(),
        text.replace(&format!("\r\n--{BOUNDARY}\r\n"), &format!("\r\n--{BOUNDARY}\t\r\n"))
            .into_bytes(),
        form(&[("a", None, format!("\n--{BOUNDARY}").as_bytes())]),
        form(&[("a", None, format!("\r--{BOUNDARY}").as_bytes())]),
    ];
    corpus.extend((0..good.len()).step_by(7).map(|n| good[..n].to_vec()));
    corpus
}

/// Same outcome kind (parts, truncated, ambiguous) whether the body comes whole or in pieces.
fn outcome(result: &Result<Vec<ReadPart>, MultipartError>) -> Result<&Vec<ReadPart>, bool> {
    match result {
        Ok(parts) => Ok(parts),
        Err(MultipartError::Truncated(_)) => Err(true),
        Err(MultipartError::Ambiguous(_)) => Err(false),
    }
}

#[test]
fn every_split_reads_like_the_whole_and_like_the_reference() {
    for body in split_corpus() {
        let whole = read(&body);
        assert_eq!(
            outcome(&whole),
            outcome(&reference(&body)),
            "reference disagrees on {:?}",
            String::from_utf8_lossy(&body)
        );
        for split in 0..=body.len() {
            let (a, b) = body.split_at(split);
            let pieces = read_pieces(&[a, b]);
            assert_eq!(
                outcome(&pieces),
                outcome(&whole),
                "split {split} of {:?}",
                String::from_utf8_lossy(&body)
            );
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(outcome(&read_pieces(&bytes)), outcome(&whole), "byte by byte");
    }
}

#[test]
fn a_refused_reader_stays_refused() {
    let mut reader = StrictMultipart::new(&content_type());
    let mut recorder = Recorder::default();
    assert!(reader.feed(b"nope", &mut recorder).is_err());
    let again = reader.feed(form(&[("a", None, b"b")]).as_slice(), &mut recorder);
    assert!(again.is_err());
    assert!(reader.finish().is_err());
}

#[test]
fn oversized_heads_and_too_many_parts_are_refused() {
    let long = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\nx\r\n--{BOUNDARY}--",
        "a".repeat(MAX_PART_HEAD_BYTES)
    );
    assert!(is_ambiguous(&read(long.as_bytes()), "longer than"));
    let many: Vec<(&str, Option<&str>, &[u8])> = vec![("a", None, b"1"); MAX_PARTS + 1];
    assert!(is_ambiguous(&read(&form(&many)), "parts"));
}
