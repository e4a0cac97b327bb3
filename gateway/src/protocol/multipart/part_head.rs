//! One form part's header block, read strictly: what every reader takes for the part's name,
//! file name and type, or a refusal.
//!
//! Accepted: CRLF-terminated `Name: value` lines of printable ASCII (no folding, no tabs, no
//! space before the colon); `Content-Disposition` once and `Content-Type` at most once (any
//! case); no other header (a `Content-Transfer-Encoding` is decoded by some readers and not
//! others). The disposition is `form-data` followed by `; name="…"` and optionally
//! `; filename="…"`, each once, in lower case, quoted, without `"`, `\`, `;` or `%` inside:
//! readers disagree on escapes, on RFC 2231 `filename*`, on unquoted values and on which of two
//! equal parameters counts. A part's type is a bare `type/subtype`, never `multipart/*` or
//! `message/*` (some readers descend into those); a text field's, if sent, is `text/plain`
//! with at most `charset=utf-8` (readers that honour a charset would decode another one
//! differently).
//!
//! Hand-written: header-line and `Content-Disposition` parsers (httparse, multer's, the
//! Python backends' own) each accept a different superset of this grammar; the gateway needs
//! the intersection, refusing the rest, which no library offers.

use super::{ambiguous, MultipartError};

/// What a part's headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHead {
    /// The `name` parameter: the form field.
    pub name: String,
    /// The `filename` parameter: set for file parts.
    pub filename: Option<String>,
    /// The part's `Content-Type`, as sent.
    pub content_type: Option<String>,
}

impl PartHead {
    /// Reads a header block: the lines up to and including the last one's CRLF, without the
    /// empty line that ends the block.
    pub fn parse(block: &[u8]) -> Result<Self, MultipartError> {
        let mut disposition = None;
        let mut content_type = None;
        let lines = block.strip_suffix(b"\r\n").unwrap_or(block);
        for line in split_crlf(lines) {
            let (name, value) = header_line(line)?;
            let slot = if name.eq_ignore_ascii_case("content-disposition") {
                &mut disposition
            } else if name.eq_ignore_ascii_case("content-type") {
                &mut content_type
            } else {
                return Err(ambiguous(format!(
                    "a form part has the header {:?}; send only Content-Disposition and Content-Type",
                    clip(name)
                )));
            };
            if slot.replace(value).is_some() {
                return Err(ambiguous(format!("a form part has two {name} headers; send one")));
            }
        }
        let disposition = disposition.ok_or_else(|| ambiguous("a form part has no Content-Disposition header"))?;
        let (name, filename) = parse_disposition(disposition)?;
        if let Some(value) = content_type {
            check_part_type(value, filename.is_some())?;
        }
        Ok(PartHead {
            name,
            filename,
            content_type: content_type.map(str::to_owned),
        })
    }
}

/// The lines of `text` between CRLFs (a lone CR or LF stays inside a line, to be refused).
fn split_crlf(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memmem::find(current, b"\r\n") {
            Some(i) => {
                rest = Some(&current[i + 2..]);
                Some(&current[..i])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// Splits `Name: value`; refuses folding, bare CR or LF, tabs, non-ASCII and odd names.
fn header_line(line: &[u8]) -> Result<(&str, &str), MultipartError> {
    if !line.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return Err(ambiguous(
            "a form part's header has a control character, a lone CR or LF, a tab or non-ASCII bytes; \
             part headers are CRLF-terminated printable ASCII lines",
        ));
    }
    // Printable ASCII throughout: valid UTF-8.
    let line = std::str::from_utf8(line).map_err(|_| ambiguous("a form part's header is not ASCII"))?;
    if line.starts_with(' ') {
        return Err(ambiguous(
            "a form part's header is folded over two lines; send each on one line",
        ));
    }
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| ambiguous(format!("a form part's header line {:?} has no colon", clip(line))))?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ambiguous(format!(
            "a form part's header name {:?} is not a plain name (no spaces before the colon)",
            clip(name)
        )));
    }
    Ok((name, value.trim_matches(' ')))
}

/// `form-data; name="…"[; filename="…"]` → (name, filename).
fn parse_disposition(value: &str) -> Result<(String, Option<String>), MultipartError> {
    let mut params = value.split(';');
    if !params
        .next()
        .is_some_and(|kind| kind.trim_matches(' ').eq_ignore_ascii_case("form-data"))
    {
        return Err(ambiguous("a form part's Content-Disposition must be form-data"));
    }
    let (mut name, mut filename) = (None, None);
    for param in params {
        let param = param.trim_start_matches(' ');
        let (key, raw) = param.split_once('=').unwrap_or((param, ""));
        let slot = match key {
            "name" => &mut name,
            "filename" => &mut filename,
            _ => {
                return Err(ambiguous(format!(
                "a form part's Content-Disposition has the parameter {:?}; send only name=\"…\" and filename=\"…\", \
                     in lower case (readers differ on the others, filename* included)",
                clip(key)
            )))
            }
        };
        let text = raw
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .filter(|v| !v.is_empty() && !v.contains(['"', '\\', ';', '%']))
            .ok_or_else(|| {
                ambiguous(format!(
                    "a form part's {key} must be a non-empty quoted value without quotes, backslashes, ';' or '%' inside"
                ))
            })?;
        if slot.replace(text.to_owned()).is_some() {
            return Err(ambiguous(format!(
                "a form part's Content-Disposition names the parameter {key:?} twice; send it once"
            )));
        }
    }
    let name = name.ok_or_else(|| ambiguous("a form part's Content-Disposition has no name"))?;
    Ok((name, filename))
}

/// A file part's type is a bare `type/subtype` (not multipart or message); a text field's is
/// `text/plain`, at most with `charset=utf-8`.
fn check_part_type(value: &str, is_file: bool) -> Result<(), MultipartError> {
    let lower = value.to_ascii_lowercase();
    let ok = if is_file {
        lower.split_once('/').is_some_and(|(kind, sub)| {
            let token = |t: &str| {
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
            };
            token(kind) && token(sub) && kind != "multipart" && kind != "message"
        })
    } else {
        matches!(
            lower.as_str(),
            "text/plain" | "text/plain; charset=utf-8" | "text/plain; charset=\"utf-8\"" | "text/plain;charset=utf-8"
        )
    };
    if ok {
        Ok(())
    } else {
        Err(ambiguous(format!(
            "a form part has the Content-Type {:?}; file parts take a bare type/subtype, other fields none or text/plain; charset=utf-8",
            clip(value)
        )))
    }
}

fn clip(text: &str) -> String {
    text.chars().take(40).collect()
}
