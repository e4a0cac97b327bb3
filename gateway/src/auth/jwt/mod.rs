//! Verification of OIDC ID tokens (signed JWTs, JWS compact form) for trusted publishing: the
//! pure, synchronous core. No I/O and no clock: the caller passes the issuer's key set and the
//! current time.
//!
//! [`peek`] reads the *unverified* `iss`, `kid` and `alg`, only to choose which issuer's
//! [`IssuerKeys`] to verify against. [`verify`] then checks, in this order, failing on the first
//! problem with its own [`TokenError`] variant:
//!
//! 1. size ([`MAX_TOKEN_BYTES`]) before any parsing, then exactly three unpadded base64url
//!    segments;
//! 2. the header is one JSON object without duplicate members and without `crit`; its `alg` is
//!    never `none` or HMAC (`HS*`), is one this module implements, and is on the issuer's
//!    allow-list;
//! 3. `kid` is present and names a key of the issuer's [`JwkSet`] (an unknown `kid` is
//!    [`TokenError::UnknownKid`], so the caller may refresh the set at a bounded rate);
//! 4. the key's type and curve (and its `alg`, `use`, `key_ops` when present) fit the header
//!    `alg`: an RSA key never verifies an ES256 or HS256 token;
//! 5. the signature verifies; only then is the payload decoded and parsed;
//! 6. `iss` equals the issuer exactly; `aud` is a single string equal to the audience (a list is
//!    refused even when it contains the audience); `exp`, `iat` (integers) and `jti` (a
//!    non-empty string) are present — for issuers whose tokens have no `jti` (Google) the caller
//!    may waive it, and a replay id is derived from the signature; `nbf` (integer) and `sub`
//!    (string) are type-checked when present;
//! 7. `exp` is not before `iat`, and with exactly [`LEEWAY_SECS`] of leeway: `exp + 30 >= now`,
//!    `nbf - 30 <= now`, `iat - 30 <= now`.
//!
//! Unlike common JWT libraries' defaults, nothing here is optional or loose: no default leeway
//! beyond 30 s, `nbf` and `iat` always checked, `aud` lists refused.
//!
//! Callers still own: fetching the issuer's JWKS (`{iss}/.well-known/openid-configuration` →
//! `jwks_uri`) and caching it, refreshing it at a bounded rate on [`TokenError::UnknownKid`]
//! (keeping the previous set when a refresh fails to parse), the `jti` replay store (claim the
//! `jti` atomically, kept until `exp + 30` s), and the provider-specific claim checks.
//!
//! Parsing an issuer's key set (JWKS) is in `jwk.rs`, the claim checks (step 6 and 7) in
//! `claims.rs`; this module has the token format, the header and key checks and the signature.

mod claims;
mod jwk;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

pub use claims::Claims;
pub use jwk::{Jwk, JwkSet, JwksError};

use claims::{check_claims, required_str};
use jwk::KeyMaterial;

/// Largest token accepted, in bytes; longer tokens are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Largest number of keys accepted in one JWKS.
pub const MAX_JWKS_KEYS: usize = 100;
/// Clock-skew leeway applied to `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: i64 = 30;
/// Longest attacker-supplied string copied into an error.
const MAX_ECHO_CHARS: usize = 128;

/// A JWS signature algorithm this module can verify. `none` and the HMAC algorithms have no
/// variant, so an allow-list can never contain them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
}

impl Algorithm {
    /// The JOSE name (`"RS256"`, `"ES256"`, `"EdDSA"`…).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = TokenError;

    /// Parses a JOSE name exactly (case-sensitive). `none` and `HS*` (in any case) are
    /// [`TokenError::ForbiddenAlgorithm`]; other unknown names [`TokenError::UnsupportedAlgorithm`].
    fn from_str(name: &str) -> Result<Self, TokenError> {
        match name {
            "RS256" => Ok(Algorithm::Rs256),
            "RS384" => Ok(Algorithm::Rs384),
            "RS512" => Ok(Algorithm::Rs512),
            "ES256" => Ok(Algorithm::Es256),
            "ES384" => Ok(Algorithm::Es384),
            "EdDSA" => Ok(Algorithm::EdDsa),
            _ if is_forbidden_algorithm(name) => Err(TokenError::ForbiddenAlgorithm { alg: echo(name) }),
            _ => Err(TokenError::UnsupportedAlgorithm { alg: echo(name) }),
        }
    }
}

/// `none` (unsigned) and HMAC (shared-secret) algorithms, whatever their case.
fn is_forbidden_algorithm(name: &str) -> bool {
    name.eq_ignore_ascii_case("none") || name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS"))
}

/// Which segment of a token an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The JOSE header (first segment).
    Header,
    /// The claims (second segment).
    Payload,
    /// The signature (third segment).
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
        })
    }
}

/// Why a token was refused. Strings copied from the token are shortened to 128 characters and
/// shown escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is longer than [`MAX_TOKEN_BYTES`].
    #[error("the token is {len} bytes long, over the {max}-byte limit")]
    TooLarge {
        /// Length of the token.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token does not have exactly three `.`-separated segments.
    #[error("the token has {found} dot-separated segments; a signed JWT has exactly 3")]
    Segments {
        /// Number of segments found.
        found: usize,
    },
    /// A segment is not unpadded base64url.
    #[error("the token {part} is not unpadded base64url")]
    Base64 {
        /// The segment.
        part: Part,
    },
    /// The header or payload is not a single JSON object with unique member names.
    #[error("the token {part} is not a valid JSON object: {reason}")]
    Json {
        /// The segment.
        part: Part,
        /// The parser's complaint.
        reason: String,
    },
    /// The header is a JSON object but not an acceptable JOSE header.
    #[error("the token header is not acceptable: {reason}")]
    InvalidHeader {
        /// What is wrong.
        reason: String,
    },
    /// `alg` is `none` or an HMAC algorithm, never accepted.
    #[error("the algorithm {alg:?} is never accepted (unsigned and HMAC tokens are refused)")]
    ForbiddenAlgorithm {
        /// The header `alg`.
        alg: String,
    },
    /// `alg` is not an algorithm this gateway implements.
    #[error("the algorithm {alg:?} is not supported")]
    UnsupportedAlgorithm {
        /// The header `alg`.
        alg: String,
    },
    /// `alg` is supported but not allowed for this issuer.
    #[error("the algorithm {alg} is not allowed for this issuer")]
    AlgorithmNotAllowed {
        /// The header `alg`.
        alg: Algorithm,
    },
    /// The header has no `kid`.
    #[error("the token header has no key id (\"kid\")")]
    MissingKid,
    /// No key of the issuer's key set has this `kid`; the set may need refreshing.
    #[error("the issuer's key set has no key with id {kid:?}")]
    UnknownKid {
        /// The header `kid`.
        kid: String,
    },
    /// The key named by `kid` cannot verify a token of this algorithm (key confusion, or a key
    /// restricted to another algorithm or use).
    #[error("key {kid:?} cannot verify a {alg} token: {reason}")]
    KeyMismatch {
        /// The header `kid`.
        kid: String,
        /// The header `alg`.
        alg: Algorithm,
        /// Why the key does not fit.
        reason: String,
    },
    /// The signature does not verify with the key.
    #[error("the token signature does not verify")]
    BadSignature,
    /// A required claim is absent.
    #[error("the token has no {claim:?} claim")]
    MissingClaim {
        /// The claim name.
        claim: &'static str,
    },
    /// A claim has the wrong JSON type or an empty value.
    #[error("the {claim:?} claim must be {expected}")]
    InvalidClaim {
        /// The claim name.
        claim: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// `iss` is not exactly the issuer.
    #[error("the token was issued by {found:?}, not {expected:?}")]
    IssuerMismatch {
        /// The token's `iss`.
        found: String,
        /// The configured issuer.
        expected: String,
    },
    /// `aud` is a list; a single string is required even if the list holds the audience.
    #[error("the \"aud\" claim must be a single string, not a list")]
    AudienceNotSingle,
    /// `aud` is not exactly the audience.
    #[error("the token is for audience {found:?}, not {expected:?}")]
    AudienceMismatch {
        /// The token's `aud`.
        found: String,
        /// The configured audience.
        expected: String,
    },
    /// `exp + 30 < now`.
    #[error("the token expired at {exp} (now {now}, leeway 30 s)")]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The time of the check.
        now: i64,
    },
    /// `nbf - 30 > now`.
    #[error("the token is not valid before {nbf} (now {now}, leeway 30 s)")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
        /// The time of the check.
        now: i64,
    },
    /// `iat - 30 > now`.
    #[error("the token claims to be issued at {iat}, in the future (now {now}, leeway 30 s)")]
    IssuedInFuture {
        /// The token's `iat`.
        iat: i64,
        /// The time of the check.
        now: i64,
    },
    /// `exp < iat`.
    #[error("the token expires ({exp}) before it was issued ({iat})")]
    ExpiresBeforeIssued {
        /// The token's `exp`.
        exp: i64,
        /// The token's `iat`.
        iat: i64,
    },
}

impl TokenError {
    /// The stable code logs, metrics and scripts may match on.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::TooLarge { .. } => "token_too_large",
            TokenError::Segments { .. } => "token_segments",
            TokenError::Base64 { .. } => "token_base64",
            TokenError::Json { .. } => "token_json",
            TokenError::InvalidHeader { .. } => "header_invalid",
            TokenError::ForbiddenAlgorithm { .. } => "alg_forbidden",
            TokenError::UnsupportedAlgorithm { .. } => "alg_unsupported",
            TokenError::AlgorithmNotAllowed { .. } => "alg_not_allowed",
            TokenError::MissingKid => "kid_missing",
            TokenError::UnknownKid { .. } => "kid_unknown",
            TokenError::KeyMismatch { .. } => "key_mismatch",
            TokenError::BadSignature => "signature_invalid",
            TokenError::MissingClaim { .. } => "claim_missing",
            TokenError::InvalidClaim { .. } => "claim_invalid",
            TokenError::IssuerMismatch { .. } => "iss_mismatch",
            TokenError::AudienceNotSingle => "aud_not_single",
            TokenError::AudienceMismatch { .. } => "aud_mismatch",
            TokenError::Expired { .. } => "token_expired",
            TokenError::NotYetValid { .. } => "token_not_yet_valid",
            TokenError::IssuedInFuture { .. } => "iat_in_future",
            TokenError::ExpiresBeforeIssued { .. } => "exp_before_iat",
        }
    }
}

/// An issuer's verification settings (from the rules).
#[derive(Debug, Clone)]
pub struct IssuerKeys {
    /// The exact `iss` value.
    pub issuer: String,
    /// The single accepted `aud` value.
    pub audience: String,
    /// The algorithms accepted from this issuer (`none` and HMAC cannot be listed).
    pub algorithms: Vec<Algorithm>,
    /// The issuer's current public keys, shared with the key-set cache (not cloned per token).
    pub jwks: Arc<JwkSet>,
    /// Whether tokens must carry a `jti`. Providers whose ID tokens have none (Google) set it
    /// false: [`Claims::jti`] is then derived from the token's signature, so a replayed token is
    /// still recognised.
    pub require_jti: bool,
}

/// What [`peek`] reads from a token whose signature has *not* been checked. Use it only to pick
/// the issuer to verify against; never trust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// The payload `iss`.
    pub iss: String,
    /// The header `kid`, if any.
    pub kid: Option<String>,
    /// The header `alg`, if any (not checked against anything).
    pub alg: Option<String>,
}

/// The three segments of a compact JWS.
struct Segments<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// `header.payload`, the signed bytes.
    signing_input: &'a str,
}

fn split(token: &str) -> Result<Segments<'_>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge {
            len: token.len(),
            max: MAX_TOKEN_BYTES,
        });
    }
    let found = token.bytes().filter(|b| *b == b'.').count() + 1;
    if found != 3 {
        return Err(TokenError::Segments { found });
    }
    token
        .rsplit_once('.')
        .and_then(|(signing_input, signature)| {
            signing_input.split_once('.').map(|(header, payload)| Segments {
                header,
                payload,
                signature,
                signing_input,
            })
        })
        .ok_or(TokenError::Segments { found })
}

fn decode(segment: &str, part: Part) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| TokenError::Base64 { part })
}

/// Decodes and parses a header or payload segment into a JSON object.
fn object(segment: &str, part: Part) -> Result<Map<String, Value>, TokenError> {
    let bytes = decode(segment, part)?;
    super::unique_json::object(&bytes).map_err(|e| TokenError::Json {
        part,
        reason: e.to_string(),
    })
}

/// An optional string member of the header.
fn header_str<'a>(header: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, TokenError> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(TokenError::InvalidHeader {
            reason: format!("\"{name}\" is not a string"),
        }),
    }
}

/// Reads the *unverified* `iss` of a token (and its header `kid` and `alg`), only to choose the
/// issuer whose keys [`verify`] will use. Checks the size, the segments and that the header and
/// payload are JSON objects; checks no signature.
pub fn peek(token: &str) -> Result<Unverified, TokenError> {
    let segments = split(token)?;
    let header = object(segments.header, Part::Header)?;
    let alg = header_str(&header, "alg")?.map(str::to_owned);
    let kid = header_str(&header, "kid")?.map(str::to_owned);
    let payload = object(segments.payload, Part::Payload)?;
    let iss = required_str(&payload, "iss")?;
    Ok(Unverified { iss, kid, alg })
}

/// Fully verifies `token` against one issuer at time `now` (Unix seconds) and returns its claims.
/// See the module documentation for the checks and their order.
pub fn verify(token: &str, issuer: &IssuerKeys, now: i64) -> Result<Claims, TokenError> {
    let segments = split(token)?;
    let header = object(segments.header, Part::Header)?;

    let alg_name = header_str(&header, "alg")?.ok_or_else(|| TokenError::InvalidHeader {
        reason: "\"alg\" is missing".to_owned(),
    })?;
    let alg = Algorithm::from_str(alg_name)?;
    if !issuer.algorithms.contains(&alg) {
        return Err(TokenError::AlgorithmNotAllowed { alg });
    }
    if header.contains_key("crit") {
        return Err(TokenError::InvalidHeader {
            reason: "\"crit\" extensions are not supported".to_owned(),
        });
    }
    let kid = match header_str(&header, "kid")? {
        Some(kid) if !kid.is_empty() => kid,
        _ => return Err(TokenError::MissingKid),
    };
    let jwk = issuer
        .jwks
        .get(kid)
        .ok_or_else(|| TokenError::UnknownKid { kid: echo(kid) })?;
    let verifier = verifier(alg, jwk).map_err(|reason| TokenError::KeyMismatch {
        kid: echo(kid),
        alg,
        reason,
    })?;

    let signature = decode(segments.signature, Part::Signature)?;
    let message = segments.signing_input.as_bytes();
    let verified = match verifier {
        Verifier::Rsa { params, n, e } => RsaPublicKeyComponents { n, e }.verify(params, message, &signature),
        Verifier::Parsed(key) => key.verify_sig(message, &signature),
    };
    verified.map_err(|_| TokenError::BadSignature)?;

    let payload = object(segments.payload, Part::Payload)?;
    check_claims(payload, issuer, now, &signature)
}

/// How a key verifies: chosen from the header algorithm and the key together, so a key is only
/// ever used with an algorithm of its own type.
enum Verifier<'a> {
    Rsa {
        params: &'static RsaParameters,
        n: &'a [u8],
        e: &'a [u8],
    },
    Parsed(&'a ParsedPublicKey),
}

fn verifier(alg: Algorithm, jwk: &Jwk) -> Result<Verifier<'_>, String> {
    if let KeyMaterial::Unusable(reason) = &jwk.material {
        return Err(format!("the key is not usable: {reason}"));
    }
    if let Some(key_alg) = &jwk.alg {
        if key_alg != alg.as_str() {
            return Err(format!("the key is restricted to {:?}", echo(key_alg)));
        }
    }
    match (&jwk.material, alg) {
        (KeyMaterial::Rsa { n, e }, Algorithm::Rs256) => Ok(Verifier::Rsa {
            params: &sig::RSA_PKCS1_2048_8192_SHA256,
            n,
            e,
        }),
        (KeyMaterial::Rsa { n, e }, Algorithm::Rs384) => Ok(Verifier::Rsa {
            params: &sig::RSA_PKCS1_2048_8192_SHA384,
            n,
            e,
        }),
        (KeyMaterial::Rsa { n, e }, Algorithm::Rs512) => Ok(Verifier::Rsa {
            params: &sig::RSA_PKCS1_2048_8192_SHA512,
            n,
            e,
        }),
        (KeyMaterial::P256(key), Algorithm::Es256)
        | (KeyMaterial::P384(key), Algorithm::Es384)
        | (KeyMaterial::Ed25519(key), Algorithm::EdDsa) => Ok(Verifier::Parsed(key)),
        (material, _) => Err(format!("it is an {} key", material.kind())),
    }
}

/// A token-supplied string, shortened for an error message.
fn echo(text: &str) -> String {
    super::shorten(text, MAX_ECHO_CHARS)
}
