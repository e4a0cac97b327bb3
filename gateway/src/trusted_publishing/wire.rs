//! The exchange endpoints as clients call them, byte-compatible with PyPI (Warehouse) and the
//! npm registry:
//!
//! - `GET /_/oidc/audience` → `200 {"audience": …}`, or `403 {"message": "Trusted publishing
//!   functionality not enabled"}`;
//! - `POST /_/oidc/mint-token` and its alias `POST /_/oidc/github/mint-token` with the body
//!   `{"token": "<JWT>"}` → `200 {"success": true, "token": …, "expires": <unix>}`; every
//!   failure `422 {"message": "Token request failed", "errors": [{"code", "description"}]}`;
//! - `POST /-/npm/v1/oidc/token/exchange/package/<name>` (`@scope%2fname`) with the ID token as
//!   `Authorization: Bearer` and no body → `201 {"token_type", "token", "created", "expires"}`;
//!   failures carry `message` (what the npm CLI logs) and `error`.
//!
//! All of them are served at the root of the host, whatever the registries' path prefixes:
//! the PyPA clients and the npm CLI drop the registry URL's path for these calls.

use serde::Serialize;
use serde_json::json;

use crate::protocol::path::percent_decode;

/// Largest request body read on an exchange endpoint.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An exchange endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /_/oidc/audience`.
    PypiAudience,
    /// `POST /_/oidc/mint-token` or `/_/oidc/github/mint-token`.
    PypiMint,
    /// `POST /-/npm/v1/oidc/token/exchange/package/<name>`, with the decoded name.
    NpmExchange {
        /// The package name, decoded (`@scope/name`).
        package: String,
    },
}

impl Endpoint {
    /// The endpoint at `path` (no query), if it is one.
    pub fn recognise(path: &str) -> Option<Endpoint> {
        match path {
            "/_/oidc/audience" => return Some(Endpoint::PypiAudience),
            "/_/oidc/mint-token" | "/_/oidc/github/mint-token" => return Some(Endpoint::PypiMint),
            _ => {}
        }
        let encoded = path.strip_prefix("/-/npm/v1/oidc/token/exchange/package/")?;
        // One segment: a scoped name arrives as @scope%2fname; accept @scope/name too.
        let package = percent_decode(encoded).unwrap_or_default();
        Some(Endpoint::NpmExchange { package })
    }

    /// The HTTP method the endpoint answers.
    pub fn method(&self) -> http::Method {
        match self {
            Endpoint::PypiAudience => http::Method::GET,
            Endpoint::PypiMint | Endpoint::NpmExchange { .. } => http::Method::POST,
        }
    }

    /// `pypi` or `npm`, for metrics.
    pub fn protocol(&self) -> &'static str {
        match self {
            Endpoint::PypiAudience | Endpoint::PypiMint => "pypi",
            Endpoint::NpmExchange { .. } => "npm",
        }
    }
}

/// Reads the ID token from a PyPI mint request body: exactly a JSON object with a string
/// `token` (other members are ignored, as Warehouse's model ignores them).
pub fn pypi_token_from_body(body: &[u8]) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    match value.get("token") {
        Some(serde_json::Value::String(token)) => Ok(token.clone()),
        Some(_) => Err("token: Input should be a valid string".to_owned()),
        None if value.is_object() => Err("token: Field required".to_owned()),
        None => Err("the body must be a JSON object {\"token\": \"<OIDC token>\"}".to_owned()),
    }
}

/// `{"audience": …}`.
pub fn pypi_audience(audience: &str) -> Vec<u8> {
    json_bytes(&json!({ "audience": audience }))
}

/// Warehouse's answer when trusted publishing is off.
pub fn pypi_disabled() -> Vec<u8> {
    json_bytes(&json!({ "message": "Trusted publishing functionality not enabled" }))
}

/// A successful PyPI mint.
pub fn pypi_minted(token: &str, expires: i64) -> Vec<u8> {
    json_bytes(&json!({ "success": true, "token": token, "expires": expires }))
}

/// A failed PyPI mint (sent with status 422).
pub fn pypi_refused(code: &str, description: &str) -> Vec<u8> {
    json_bytes(&json!({
        "message": "Token request failed",
        "errors": [{ "code": code, "description": description }],
    }))
}

/// A successful npm exchange (sent with status 201).
pub fn npm_minted(token: &str, created: i64, expires: i64) -> Vec<u8> {
    #[derive(Serialize)]
    struct Minted<'a> {
        token_type: &'a str,
        token: &'a str,
        created: String,
        expires: String,
    }
    json_bytes(&Minted {
        token_type: "oidc",
        token,
        created: iso8601(created),
        expires: iso8601(expires),
    })
}

/// A failed npm exchange: `message` is what the npm CLI logs.
pub fn npm_refused(code: &str, message: &str, request_id: &str) -> Vec<u8> {
    json_bytes(&json!({ "code": code, "message": message, "error": message, "request_id": request_id }))
}

/// The bearer token of an `Authorization` header value (scheme case-insensitive).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn iso8601(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_recognised_at_the_root_only() {
        assert_eq!(Endpoint::recognise("/_/oidc/audience"), Some(Endpoint::PypiAudience));
        assert_eq!(Endpoint::recognise("/_/oidc/mint-token"), Some(Endpoint::PypiMint));
        assert_eq!(
            Endpoint::recognise("/_/oidc/github/mint-token"),
            Some(Endpoint::PypiMint)
        );
        assert_eq!(
            Endpoint::recognise("/-/npm/v1/oidc/token/exchange/package/@acme%2fwidgets"),
            Some(Endpoint::NpmExchange {
                package: "@acme/widgets".into()
            })
        );
        assert_eq!(
            Endpoint::recognise("/-/npm/v1/oidc/token/exchange/package/left-pad"),
            Some(Endpoint::NpmExchange {
                package: "left-pad".into()
            })
        );
        assert_eq!(Endpoint::recognise("/pypi/_/oidc/audience"), None);
        assert_eq!(Endpoint::recognise("/_/oidc/mint-token/"), None);
        assert_eq!(Endpoint::recognise("/simple/"), None);
    }

    #[test]
    fn pypi_bodies_follow_warehouse() {
        assert_eq!(pypi_token_from_body(br#"{"token": "abc"}"#).as_deref(), Ok("abc"));
        assert!(pypi_token_from_body(br#"{"token": 1}"#).is_err());
        assert!(pypi_token_from_body(br#"{"jwt": "abc"}"#).is_err());
        assert!(pypi_token_from_body(br#"["abc"]"#).is_err());
        assert!(pypi_token_from_body(b"token=abc").is_err());
        let refused: serde_json::Value = serde_json::from_slice(&pypi_refused("invalid-token", "x")).expect("json");
        assert_eq!(refused["message"], "Token request failed");
        assert_eq!(refused["errors"][0]["code"], "invalid-token");
        assert_eq!(refused["errors"][0]["description"], "x");
        let minted: serde_json::Value = serde_json::from_slice(&pypi_minted("pcul_x", 1700000000)).expect("json");
        assert_eq!(minted["success"], true);
        assert_eq!(minted["expires"], 1700000000);
    }

    #[test]
    fn npm_bodies_follow_the_registry_api() {
        let minted: serde_json::Value = serde_json::from_slice(&npm_minted("pcul_x", 0, 900)).expect("json");
        assert_eq!(minted["token_type"], "oidc");
        assert_eq!(minted["token"], "pcul_x");
        assert_eq!(minted["created"], "1970-01-01T00:00:00Z");
        assert_eq!(minted["expires"], "1970-01-01T00:15:00Z");
        let refused: serde_json::Value = serde_json::from_slice(&npm_refused("c", "why", "r")).expect("json");
        assert_eq!(refused["message"], "why");
        assert_eq!(refused["error"], "why");
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
