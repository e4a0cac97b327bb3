//! Authentication: OIDC ID tokens from CI providers (trusted publishing), the gateway's own
//! upload tokens, and the credential a client presents.

pub mod credentials;
pub mod jwks;
pub mod jwt;
pub mod unique_json;
pub mod upload_token;

/// `text` cut to `max` characters, with an ellipsis when cut: how much of an attacker-supplied
/// or foreign string (a token, a URL, a response) may appear in an error message.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Compares two secrets in time independent of where they differ (aws-lc's comparison).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_whole() {
        assert!(super::constant_time_eq(b"secret", b"secret"));
        assert!(!super::constant_time_eq(b"secret", b"secreT"));
        assert!(!super::constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn shorten_cuts_on_character_boundaries() {
        assert_eq!(super::shorten("abc", 3), "abc");
        assert_eq!(super::shorten("abcd", 3), "abc…");
        assert_eq!(super::shorten("ééé", 2), "éé…");
    }
}
