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

/// Query parameter names whose value is a credential (compared ASCII-case-insensitively,
/// percent-decoded, with `-` read as `_`).
const CREDENTIAL_PARAMETERS: &[&str] = &[
    "token",
    "access_token",
    "id_token",
    "auth",
    "auth_token",
    "authtoken",
    "_authtoken",
    "authorization",
    "api_key",
    "apikey",
    "password",
    "passwd",
    "pass",
    "pwd",
    "secret",
    "client_secret",
    "private_token",
    "jwt",
];

/// Why a request URL carries a credential, or `None`. A credential in a URL ends up in access
/// logs, proxies and browser histories, and the gateway only ever reads credentials from the
/// `Authorization` header, so such requests are refused whole (never stripped and forwarded):
///
/// - userinfo in an absolute-form target (`http://user:pass@host/`);
/// - a query parameter named like a credential ([`CREDENTIAL_PARAMETERS`]);
/// - a query name or value that is an upload token (`pcul_…`) or looks like a JWT (`eyJ…` with
///   two dots), whatever the parameter is called.
///
/// The reason names the parameter (shortened), never its value.
pub fn credentials_in_url(uri: &http::Uri) -> Option<String> {
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Some("the request URL carries a user name or password (user:password@host)".to_owned());
    }
    let query = uri.query()?;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |text: &str| {
            let spaced = text.replace('+', " ");
            crate::protocol::path::percent_decode(&spaced).unwrap_or(spaced)
        };
        let (name, value) = (decode(name), decode(value));
        let normalised = name.trim().to_ascii_lowercase().replace('-', "_");
        let secret_looking = |text: &str| {
            let text = text.trim();
            looks_like_upload_token(text) || (text.starts_with("eyJ") && text.matches('.').count() == 2)
        };
        if CREDENTIAL_PARAMETERS.contains(&normalised.as_str()) || secret_looking(&name) || secret_looking(&value) {
            let shown = if secret_looking(&name) {
                "(a token)".to_owned()
            } else {
                format!("{:?}", super::shorten(&name, 32))
            };
            return Some(format!(
                "the request URL carries a credential in query parameter {shown}"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_url(target: &str) -> Option<String> {
        credentials_in_url(&target.parse::<http::Uri>().expect("uri"))
    }

    #[test]
    fn credentials_in_the_url_are_found() {
        for target in [
            "/?token=x",
            "/?a=1&password=hunter2",
            "/simple/p/?ACCESS-TOKEN=x",
            "/?pass%77ord=x",
            "/?x=1&pcul_k1.abc.def",
            "/?q=pcul_k1.abc.def",
            "/?q=eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln",
            "/?api_key",
            "http://user:secret@example.org/",
            "http://user@example.org/upload",
        ] {
            assert!(in_url(target).is_some(), "{target}");
        }
        let reason = in_url("/?password=hunter2").expect("found");
        assert!(
            reason.contains("\"password\"") && !reason.contains("hunter2"),
            "{reason}"
        );
        let reason = in_url("/?pcul_k1.abc.def").expect("found");
        assert!(!reason.contains("pcul_"), "{reason}");
    }

    #[test]
    fn ordinary_queries_pass() {
        for target in [
            "/",
            "/simple/p/?format=json&tokenized=1",
            "/-/v1/search?text=password-manager&size=20",
            "/?q=eyJ-not-a-jwt",
            "http://example.org/simple/",
            "/?%zz=1",
        ] {
            assert_eq!(in_url(target), None, "{target}");
        }
    }

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
