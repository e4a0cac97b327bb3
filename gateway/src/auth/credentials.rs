//! What credential a client sent: a gateway upload token, something else, or nothing.
//!
//! Upload tokens arrive as PyPI clients send API tokens (HTTP basic `__token__:<token>`, or
//! `Authorization: token <token>` / `bearer <token>`) and as the npm CLI sends its auth token
//! (`Authorization: Bearer <token>`). Whatever the form, a value with the upload-token prefix is
//! recognised as ours, so it is never forwarded to a backend.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::upload_token::looks_like_upload_token;

/// The credential on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCredential {
    /// No `Authorization` header.
    None,
    /// A gateway upload token (not yet verified).
    UploadToken(String),
    /// Any other credential (a backend password or token).
    Other,
}

/// Reads the credential from the `Authorization` header values (all of them: a second header
/// is refused as `Other`, never silently ignored).
pub fn client_credential<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> ClientCredential {
    let Some(first) = values.next() else {
        return ClientCredential::None;
    };
    if values.next().is_some() {
        return ClientCredential::Other;
    }
    let Ok(value) = std::str::from_utf8(first) else {
        return ClientCredential::Other;
    };
    let value = value.trim();
    let Some((scheme, rest)) = value.split_once(' ') else {
        return ClientCredential::Other;
    };
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        if looks_like_upload_token(rest) {
            return ClientCredential::UploadToken(rest.to_owned());
        }
        return ClientCredential::Other;
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD
            .decode(rest)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        if let Some((_user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
            // twine sends `__token__`; any user name with an upload token as the password is
            // treated as an upload token, so it never reaches the backend.
            let password = password.trim();
            if looks_like_upload_token(password) {
                return ClientCredential::UploadToken(password.to_owned());
            }
        }
    }
    ClientCredential::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: &str) -> ClientCredential {
        client_credential(std::iter::once(value.as_bytes()))
    }

    #[test]
    fn upload_tokens_are_found_in_every_client_form() {
        let basic = format!("Basic {}", STANDARD.encode("__token__:pcul_k1.abc.def"));
        assert_eq!(one(&basic), ClientCredential::UploadToken("pcul_k1.abc.def".into()));
        assert_eq!(
            one("Bearer pcul_k1.abc.def"),
            ClientCredential::UploadToken("pcul_k1.abc.def".into())
        );
        assert_eq!(
            one("token pcul_k1.abc.def"),
            ClientCredential::UploadToken("pcul_k1.abc.def".into())
        );
        assert_eq!(
            one("bearer  pcul_k1.abc.def "),
            ClientCredential::UploadToken("pcul_k1.abc.def".into())
        );
    }

    #[test]
    fn other_credentials_and_oddities() {
        assert_eq!(client_credential(std::iter::empty()), ClientCredential::None);
        let basic = format!("Basic {}", STANDARD.encode("alice:secret"));
        assert_eq!(one(&basic), ClientCredential::Other);
        assert_eq!(one("Bearer npm_abcdef"), ClientCredential::Other);
        assert_eq!(one("Basic !!!"), ClientCredential::Other);
        assert_eq!(one("pcul_k1.abc.def"), ClientCredential::Other);
        let two = [b"Bearer pcul_k1.a.b".as_slice(), b"Bearer pcul_k1.c.d".as_slice()];
        assert_eq!(client_credential(two.into_iter()), ClientCredential::Other);
    }
}
