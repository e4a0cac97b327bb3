//! The request's `Content-Type` for a form, read strictly and forwarded in one canonical
//! spelling, so that the backend splits the body on the boundary the gateway split it on.
//!
//! Accepted: `multipart/form-data` (any case) with exactly one parameter, `boundary` (any
//! case), whose value is a token or a quoted string without escapes, 1 to 70 characters from
//! RFC 2046's boundary alphabet less the space. Refused: a second `boundary` (Python's `cgi`
//! takes the last, most Rust readers the first), any other parameter, RFC 2231 `boundary*=`,
//! escapes, empty or over-long values. The backend is sent `multipart/form-data; boundary=B`
//! (quoted only when B needs it), whatever spelling the client used.
//!
//! Hand-written, as the other readers of `multipart/`: general media-type parsers are built to
//! accept what clients send (the `mime` crate, which multer uses, returns the first of two equal
//! parameters and reads escapes), while this reader must refuse every spelling two backends
//! could read differently; that is a short grammar of its own.

use super::{ambiguous, MultipartError};

/// Most characters in a boundary (RFC 2046).
pub const MAX_BOUNDARY_LEN: usize = 70;

/// A form's `Content-Type`, validated; [`FormContentType::canonical`] is what the backend sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormContentType {
    boundary: String,
}

/// RFC 2046 `bcharsnospace`.
fn is_boundary_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"'()+_,-./:=?".contains(&c)
}

/// RFC 9110 `tchar`.
fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

impl FormContentType {
    /// Reads a `Content-Type` value; `Err` says why it is not one canonical form type.
    pub fn parse(value: &str) -> Result<Self, MultipartError> {
        let mut params = value.split(';');
        let media_type = params.next().unwrap_or("").trim_matches([' ', '\t']);
        if !media_type.eq_ignore_ascii_case("multipart/form-data") {
            return Err(ambiguous("PyPI uploads must be multipart/form-data POSTs"));
        }
        let mut boundary = None;
        for param in params {
            let param = param.trim_matches([' ', '\t']);
            let Some((key, raw)) = param.split_once('=') else {
                return Err(ambiguous(format!(
                    "the Content-Type parameter {:?} has no value; send only boundary=...",
                    truncate(param)
                )));
            };
            if !key.eq_ignore_ascii_case("boundary") {
                return Err(ambiguous(format!(
                    "the form's Content-Type has a parameter {:?}; send only boundary=... (readers differ on the others)",
                    truncate(key)
                )));
            }
            if boundary.is_some() {
                return Err(ambiguous(
                    "the form's Content-Type names boundary twice; readers differ on which one counts, send one",
                ));
            }
            boundary = Some(unquote(raw)?);
        }
        let boundary = boundary.ok_or_else(|| ambiguous("the form's Content-Type has no boundary"))?;
        if boundary.is_empty() || boundary.len() > MAX_BOUNDARY_LEN || !boundary.bytes().all(is_boundary_char) {
            return Err(ambiguous(format!(
                "the form's boundary must be 1 to {MAX_BOUNDARY_LEN} letters, digits or '()+_,-./:=? characters"
            )));
        }
        Ok(FormContentType { boundary })
    }

    /// The boundary.
    pub fn boundary(&self) -> &str {
        &self.boundary
    }

    /// `multipart/form-data; boundary=B`, with B quoted only when it is not a token.
    pub fn canonical(&self) -> String {
        if self.boundary.bytes().all(is_token_char) {
            format!("multipart/form-data; boundary={}", self.boundary)
        } else {
            format!("multipart/form-data; boundary=\"{}\"", self.boundary)
        }
    }
}

/// A parameter value: a token as is, or a quoted string without escapes.
fn unquote(raw: &str) -> Result<String, MultipartError> {
    let value = match raw.strip_prefix('"') {
        Some(inner) => inner
            .strip_suffix('"')
            .filter(|v| !v.contains(['"', '\\']))
            .ok_or_else(|| ambiguous("the form's boundary is quoted oddly; send boundary=B or boundary=\"B\""))?,
        None => raw,
    };
    Ok(value.to_owned())
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}
