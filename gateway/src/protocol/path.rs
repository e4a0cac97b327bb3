//! Request-target checks shared by every protocol: refuse paths whose meaning differs between
//! the gateway and a backend (dot segments, encoded dots or NUL, backslashes, malformed escapes).

use crate::error::Refusal;

/// Checks a request path (without query) and returns it unchanged when acceptable.
pub fn check(path: &str) -> Result<&str, Refusal> {
    if !path.starts_with('/') {
        return Err(Refusal::BadPath("the request target must be an absolute path".into()));
    }
    if path.contains('\\') {
        return Err(Refusal::BadPath("backslashes are not allowed in paths".into()));
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or_else(|| Refusal::BadPath("truncated %-escape in path".into()))?;
            let decoded = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Refusal::BadPath("malformed %-escape in path".into()))?;
            if matches!(decoded, 0 | b'.' | b'\\') || decoded < 0x20 {
                return Err(Refusal::BadPath(
                    "encoded dots, backslashes and control characters are not allowed in paths".into(),
                ));
            }
            i += 3;
            continue;
        }
        if bytes[i] < 0x20 || bytes[i] == 0x7f {
            return Err(Refusal::BadPath("control characters are not allowed in paths".into()));
        }
        i += 1;
    }
    if path.split('/').any(|segment| segment == "." || segment == "..") {
        return Err(Refusal::BadPath("'.' and '..' path segments are not allowed".into()));
    }
    Ok(path)
}

/// Decodes `%XX` escapes; `None` when the result is not UTF-8 or an escape is malformed.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes a value for one path segment: unreserved characters and `@` stay, everything else
/// (including `/`, as in npm's `@scope%2fname`) becomes `%XX`.
pub fn percent_encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_scoped_npm_paths() {
        for ok in [
            "/",
            "/simple/foo/",
            "/@scope%2fname",
            "/packages/foo-1.0.tar.gz",
            "/a%20b",
        ] {
            assert!(check(ok).is_ok(), "{ok} refused");
        }
    }

    #[test]
    fn refuses_traversal_and_smuggled_bytes() {
        for bad in [
            "relative",
            "/../etc/passwd",
            "/a/./b",
            "/a/%2e%2e/b",
            "/a/%2E%2E/b",
            "/%00",
            "/a\\b",
            "/a%5cb",
            "/a%",
            "/a%zz",
            "/a\tb",
        ] {
            assert!(check(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn encodes_segments_round_trip() {
        assert_eq!(percent_encode_segment("@scope/name"), "@scope%2fname");
        assert_eq!(percent_encode_segment("left-pad"), "left-pad");
        let odd = "a b/c%d";
        assert_eq!(percent_decode(&percent_encode_segment(odd)).as_deref(), Some(odd));
    }

    #[test]
    fn decodes_escapes() {
        assert_eq!(percent_decode("@scope%2fname").as_deref(), Some("@scope/name"));
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
