//! Request-target checks shared by every protocol, made before routing and prefix matching:
//! a path is forwarded only if every backend, whatever decoding or normalising it applies,
//! reads the path the gateway routed and classified. So these are refused (never normalised,
//! since a rewritten path would be a request the client did not send):
//!
//! - dot segments (`.`, `..`), also encoded (`%2e`), and empty segments (`//`), which some
//!   servers merge and others keep;
//! - backslashes and `;` (path parameters: Java servlet containers drop `;…` from a segment, so
//!   `/a/..;/b` is `/b` to them), also encoded (`%5c`, `%3b`);
//! - encoded `%` (`%25`, so double-encoded separators and dots such as `%252f` never decode to
//!   one), encoded unreserved characters (`%61` is `a` to a decoding backend and `%61` to one
//!   that does not), control characters and NUL, malformed escapes;
//! - encoded `/` (`%2f`) except in npm's one-segment scoped names, `@scope%2fname` (what the
//!   npm CLI sends), whose two halves must be plain names (not dot segments).

use crate::error::Refusal;

/// Checks a request path (without query) and returns it unchanged when acceptable.
pub fn check(path: &str) -> Result<&str, Refusal> {
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| Refusal::BadPath("the request target must be an absolute path".into()))?;
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.into_iter().enumerate() {
        if segment.is_empty() && i != last {
            return Err(Refusal::BadPath(
                "empty path segments ('//') are not allowed: servers differ on merging them".into(),
            ));
        }
        check_segment(segment)?;
    }
    Ok(path)
}

fn bad(message: &str) -> Refusal {
    Refusal::BadPath(message.to_owned())
}

/// One segment: no dot segment, no forbidden byte, only escapes every backend decodes alike.
fn check_segment(segment: &str) -> Result<(), Refusal> {
    if segment == "." || segment == ".." {
        return Err(bad("'.' and '..' path segments are not allowed"));
    }
    let bytes = segment.as_bytes();
    let mut slashes = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let decoded = bytes
                    .get(i + 1..i + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| bad("malformed %-escape in path"))?;
                match decoded {
                    b'/' => slashes += 1,
                    b'%' => {
                        return Err(bad(
                            "encoded '%' (%25) is not allowed in paths: it hides double encoding",
                        ))
                    }
                    b'.' | b'\\' | b';' => {
                        return Err(bad("encoded dots, backslashes and ';' are not allowed in paths"))
                    }
                    c if c < 0x20 || c == 0x7f => {
                        return Err(bad("encoded control characters and NUL are not allowed in paths"))
                    }
                    c if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'~' => return Err(bad(
                        "letters, digits and '-_~' must not be %-encoded in paths: backends differ on decoding them",
                    )),
                    _ => {}
                }
                i += 3;
            }
            b'\\' => return Err(bad("backslashes are not allowed in paths")),
            b';' => return Err(bad("';' (path parameters) is not allowed in paths")),
            c if c < 0x20 || c == 0x7f => return Err(bad("control characters are not allowed in paths")),
            _ => i += 1,
        }
    }
    if slashes > 0 && !is_scoped_npm_name(segment) {
        return Err(bad(
            "an encoded '/' (%2f) is allowed only in an npm scoped name (@scope%2fname)",
        ));
    }
    Ok(())
}

/// `@scope%2fname` (or `%40scope%2fname`), one `%2f`, both halves non-empty and not starting
/// with a dot.
fn is_scoped_npm_name(segment: &str) -> bool {
    let Some(scoped) = segment.strip_prefix('@').or_else(|| segment.strip_prefix("%40")) else {
        return false;
    };
    let lower = scoped.to_ascii_lowercase();
    let mut halves = lower.split("%2f");
    match (halves.next(), halves.next(), halves.next()) {
        (Some(scope), Some(name), None) => [scope, name].iter().all(|h| !h.is_empty() && !h.starts_with('.')),
        _ => false,
    }
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
            "/@scope%2Fname/-rev/1-a",
            "/%40scope%2fname",
            "/-/package/@scope%2fname/dist-tags/latest",
            "/packages/foo-1.0.tar.gz",
            "/packages/foo-1.0%2Blocal.tar.gz",
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
            "/a/.%2e/b",
            "/%00",
            "/a\\b",
            "/a%5cb",
            "/a%",
            "/a%zz",
            "/a\tb",
            "/a//b",
            "//a",
            "/a%2fb",
            "/..%2fadmin",
            "/simple/%2e%2e%2fadmin",
            "/a%252fb",
            "/a%252e%252e/b",
            "/a;b",
            "/a/..;/b",
            "/a%3bb",
            "/%61dmin",
            "/left%2Dpad",
            "/@scope%2f..",
            "/@..%2fname",
            "/@scope%2fa%2fb",
            "/@%2fname",
            "/x@scope%2fname",
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
