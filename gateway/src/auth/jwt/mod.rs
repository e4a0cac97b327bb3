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

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Digest as _;

/// Largest token accepted, in bytes; longer tokens are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Largest number of keys accepted in one JWKS.
pub const MAX_JWKS_KEYS: usize = 100;
/// Clock-skew leeway applied to `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: i64 = 30;

/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (the limit of the aws-lc-rs verifiers used).
const MAX_RSA_BITS: usize = 8192;
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

/// Why a JWKS document was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The document is longer than [`MAX_JWKS_BYTES`].
    #[error("the key set is {len} bytes long, over the {max}-byte limit")]
    TooLarge {
        /// Length of the document.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The document is not a JSON object with a `keys` array.
    #[error("the key set is not a JSON object with a \"keys\" array: {reason}")]
    Json {
        /// The parser's complaint.
        reason: String,
    },
    /// The `keys` array is empty (an empty set must never replace a cached one).
    #[error("the key set has no keys")]
    Empty,
    /// The `keys` array holds more than [`MAX_JWKS_KEYS`] keys.
    #[error("the key set has {count} keys, over the limit of {max}")]
    TooManyKeys {
        /// Number of keys.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A key has no (or an empty) `kid`.
    #[error("key #{index} of the key set has no \"kid\"")]
    MissingKid {
        /// Position of the key in `keys`, from 0.
        index: usize,
    },
    /// Two keys share a `kid`.
    #[error("the key set has more than one key with id {kid:?}")]
    DuplicateKid {
        /// The shared `kid`.
        kid: String,
    },
    /// A key is malformed, too weak, symmetric or carries private material.
    #[error("key #{index} of the key set is not acceptable: {reason}")]
    InvalidKey {
        /// Position of the key in `keys`, from 0.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

impl JwksError {
    /// The stable code logs, metrics and scripts may match on.
    pub fn code(&self) -> &'static str {
        match self {
            JwksError::TooLarge { .. } => "jwks_too_large",
            JwksError::Json { .. } => "jwks_json",
            JwksError::Empty => "jwks_empty",
            JwksError::TooManyKeys { .. } => "jwks_too_many_keys",
            JwksError::MissingKid { .. } => "jwk_kid_missing",
            JwksError::DuplicateKid { .. } => "jwk_kid_duplicate",
            JwksError::InvalidKey { .. } => "jwk_invalid",
        }
    }
}

/// The verification material of one key, already validated.
#[derive(Clone)]
enum KeyMaterial {
    /// RSA modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// A P-256 point, parsed for ES256.
    P256(ParsedPublicKey),
    /// A P-384 point, parsed for ES384.
    P384(ParsedPublicKey),
    /// An Ed25519 key, parsed for EdDSA.
    Ed25519(ParsedPublicKey),
    /// A key kept only so its `kid` is known: it verifies nothing (unknown type or curve, or
    /// meant for encryption).
    Unusable(String),
}

impl KeyMaterial {
    fn kind(&self) -> &'static str {
        match self {
            KeyMaterial::Rsa { .. } => "RSA",
            KeyMaterial::P256(_) => "EC P-256",
            KeyMaterial::P384(_) => "EC P-384",
            KeyMaterial::Ed25519(_) => "OKP Ed25519",
            KeyMaterial::Unusable(_) => "unusable",
        }
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMaterial::Rsa { n, .. } => write!(f, "RSA ({} bits)", bit_length(n)),
            KeyMaterial::Unusable(reason) => write!(f, "unusable ({reason})"),
            other => f.write_str(other.kind()),
        }
    }
}

/// One public key of an issuer's key set.
#[derive(Debug, Clone)]
pub struct Jwk {
    kid: String,
    alg: Option<String>,
    material: KeyMaterial,
}

impl Jwk {
    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Whether the key can verify some supported algorithm.
    pub fn is_usable(&self) -> bool {
        !matches!(self.material, KeyMaterial::Unusable(_))
    }
}

/// An issuer's public keys, by `kid`, parsed from a JWKS document with [`JwkSet::from_json`].
#[derive(Debug, Clone, Default)]
pub struct JwkSet {
    keys: BTreeMap<String, Jwk>,
}

/// The members of a JWK this module reads; others are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<IgnoredAny>,
}

/// A JWKS document: only `keys` is read.
#[derive(Deserialize)]
struct RawJwkSet {
    keys: Vec<Value>,
}

impl JwkSet {
    /// Parses a JWKS document (`{"keys": [...]}`). Refuses the whole document when it is over
    /// [`MAX_JWKS_BYTES`] or [`MAX_JWKS_KEYS`], empty, has a key without `kid` or two keys with
    /// the same `kid`, a symmetric key, a key with private material, or a malformed or weak
    /// (RSA under 2048 bits) key of a supported type. Keys of unknown type or curve, or not for
    /// signatures (`use` other than `sig`, `key_ops` without `verify`, an unsupported `alg`), are
    /// kept but never verify anything.
    pub fn from_json(document: &[u8]) -> Result<Self, JwksError> {
        if document.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge {
                len: document.len(),
                max: MAX_JWKS_BYTES,
            });
        }
        let raw: RawJwkSet = serde_json::from_slice(document).map_err(|e| JwksError::Json { reason: e.to_string() })?;
        if raw.keys.is_empty() {
            return Err(JwksError::Empty);
        }
        if raw.keys.len() > MAX_JWKS_KEYS {
            return Err(JwksError::TooManyKeys {
                count: raw.keys.len(),
                max: MAX_JWKS_KEYS,
            });
        }
        let mut keys = BTreeMap::new();
        for (index, value) in raw.keys.into_iter().enumerate() {
            let invalid = |reason: String| JwksError::InvalidKey { index, reason };
            let jwk = RawJwk::deserialize(value).map_err(|e| invalid(e.to_string()))?;
            let kid = match &jwk.kid {
                Some(kid) if !kid.is_empty() => kid.clone(),
                _ => return Err(JwksError::MissingKid { index }),
            };
            if keys.contains_key(&kid) {
                return Err(JwksError::DuplicateKid { kid: echo(&kid) });
            }
            let material = key_material(&jwk).map_err(invalid)?;
            let alg = jwk.alg.clone();
            keys.insert(kid.clone(), Jwk { kid, alg, material });
        }
        Ok(JwkSet { keys })
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Jwk> {
        self.keys.get(kid)
    }

    /// The key ids, in sorted order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Number of keys (usable or not).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Validates one JWK's material. `Err` refuses the whole set; `Ok(Unusable)` keeps the key inert.
fn key_material(jwk: &RawJwk) -> Result<KeyMaterial, String> {
    if jwk.kty == "oct" {
        return Err("symmetric (\"oct\") keys must never be in a public key set".to_owned());
    }
    if jwk.d.is_some() {
        return Err("the key carries private material (\"d\")".to_owned());
    }
    if let Some(key_use) = &jwk.key_use {
        if key_use != "sig" {
            return Ok(KeyMaterial::Unusable(format!(
                "its \"use\" is {:?}, not \"sig\"",
                echo(key_use)
            )));
        }
    }
    if let Some(ops) = &jwk.key_ops {
        if !ops.iter().any(|op| op == "verify") {
            return Ok(KeyMaterial::Unusable(
                "its \"key_ops\" do not include \"verify\"".to_owned(),
            ));
        }
    }
    if let Some(alg) = &jwk.alg {
        if Algorithm::from_str(alg).is_err() {
            return Ok(KeyMaterial::Unusable(format!("it is for algorithm {:?}", echo(alg))));
        }
    }
    match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => rsa_material(jwk),
        ("EC", Some("P-256")) => ec_material(jwk, 32, &sig::ECDSA_P256_SHA256_FIXED).map(KeyMaterial::P256),
        ("EC", Some("P-384")) => ec_material(jwk, 48, &sig::ECDSA_P384_SHA384_FIXED).map(KeyMaterial::P384),
        ("OKP", Some("Ed25519")) => {
            let x = member(&jwk.x, "x")?;
            if x.len() != 32 {
                return Err(format!("\"x\" is {} bytes, not 32", x.len()));
            }
            ParsedPublicKey::new(&sig::ED25519, &x)
                .map(KeyMaterial::Ed25519)
                .map_err(|_| "not a valid Ed25519 public key".to_owned())
        }
        ("EC" | "OKP", crv) => Ok(KeyMaterial::Unusable(format!(
            "curve {:?} is not supported",
            crv.map(echo).unwrap_or_default()
        ))),
        (kty, _) => Ok(KeyMaterial::Unusable(format!(
            "key type {:?} is not supported",
            echo(kty)
        ))),
    }
}

fn rsa_material(jwk: &RawJwk) -> Result<KeyMaterial, String> {
    // The value is what counts: leading zero octets (a common encoder slip) are dropped.
    let n = strip_leading_zeros(member(&jwk.n, "n")?);
    let e = strip_leading_zeros(member(&jwk.e, "e")?);
    let bits = bit_length(&n);
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(format!(
            "the RSA modulus has {bits} bits, outside {MIN_RSA_BITS}..={MAX_RSA_BITS}"
        ));
    }
    if e.is_empty() || e.len() > 4 || e.last().is_some_and(|b| b & 1 == 0) {
        return Err("the RSA exponent is not an odd number of at most 32 bits".to_owned());
    }
    RsaPublicKeyComponents { n: &n, e: &e }
        .to_parsed_public_key(&sig::RSA_PKCS1_2048_8192_SHA256)
        .map_err(|_| "not a valid RSA public key".to_owned())?;
    Ok(KeyMaterial::Rsa { n, e })
}

fn ec_material(
    jwk: &RawJwk,
    coordinate_len: usize,
    algorithm: &'static sig::EcdsaVerificationAlgorithm,
) -> Result<ParsedPublicKey, String> {
    let x = member(&jwk.x, "x")?;
    let y = member(&jwk.y, "y")?;
    if x.len() != coordinate_len || y.len() != coordinate_len {
        return Err(format!("\"x\" and \"y\" must be {coordinate_len} bytes each"));
    }
    let mut point = Vec::with_capacity(1 + 2 * coordinate_len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    ParsedPublicKey::new(algorithm, &point).map_err(|_| "the point is not on the curve".to_owned())
}

/// A required base64url member of a JWK.
fn member(value: &Option<String>, name: &str) -> Result<Vec<u8>, String> {
    let text = value.as_deref().ok_or_else(|| format!("\"{name}\" is missing"))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| format!("\"{name}\" is not unpadded base64url"))
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// Bit length of a big-endian unsigned integer without leading zero octets.
fn bit_length(bytes: &[u8]) -> usize {
    match bytes.first() {
        None => 0,
        Some(first) => (bytes.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
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

/// The claims of a verified token: the checked registered claims, typed, and every claim as
/// JSON for the provider-specific checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `iss`, equal to the issuer.
    pub iss: String,
    /// `aud`, equal to the audience.
    pub aud: String,
    /// `exp`, Unix seconds.
    pub exp: i64,
    /// `iat`, Unix seconds.
    pub iat: i64,
    /// `nbf`, Unix seconds, when present.
    pub nbf: Option<i64>,
    /// `jti`, non-empty (or, for issuers without `jti`, `sig-sha256:<digest of the signature>`);
    /// the caller must claim it in its replay store.
    pub jti: String,
    /// `sub`, when present.
    pub sub: Option<String>,
    /// Every claim of the payload, including the ones above.
    pub all: Map<String, Value>,
}

impl Claims {
    /// A claim by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.all.get(name)
    }

    /// A claim by name, when it is a string.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.all.get(name).and_then(Value::as_str)
    }
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

fn check_claims(
    all: Map<String, Value>,
    issuer: &IssuerKeys,
    now: i64,
    signature: &[u8],
) -> Result<Claims, TokenError> {
    let iss = required_str(&all, "iss")?;
    if iss != issuer.issuer {
        return Err(TokenError::IssuerMismatch {
            found: echo(&iss),
            expected: issuer.issuer.clone(),
        });
    }
    let aud = match all.get("aud") {
        None => return Err(TokenError::MissingClaim { claim: "aud" }),
        Some(Value::String(aud)) => aud.clone(),
        Some(Value::Array(_)) => return Err(TokenError::AudienceNotSingle),
        Some(_) => {
            return Err(TokenError::InvalidClaim {
                claim: "aud",
                expected: "a string",
            })
        }
    };
    if aud != issuer.audience {
        return Err(TokenError::AudienceMismatch {
            found: echo(&aud),
            expected: issuer.audience.clone(),
        });
    }
    let exp = optional_int(&all, "exp")?.ok_or(TokenError::MissingClaim { claim: "exp" })?;
    let iat = optional_int(&all, "iat")?.ok_or(TokenError::MissingClaim { claim: "iat" })?;
    let jti = match optional_str(&all, "jti")? {
        Some(jti) if jti.is_empty() => {
            return Err(TokenError::InvalidClaim {
                claim: "jti",
                expected: "a non-empty string",
            })
        }
        Some(jti) => jti,
        None if issuer.require_jti => return Err(TokenError::MissingClaim { claim: "jti" }),
        // The signature is unique to these exact claims: its digest identifies a replay.
        None => format!("sig-sha256:{}", hex::encode(sha2::Sha256::digest(signature))),
    };
    let nbf = optional_int(&all, "nbf")?;
    let sub = optional_str(&all, "sub")?;

    if exp < iat {
        return Err(TokenError::ExpiresBeforeIssued { exp, iat });
    }
    if exp.saturating_add(LEEWAY_SECS) < now {
        return Err(TokenError::Expired { exp, now });
    }
    if let Some(nbf) = nbf {
        if nbf.saturating_sub(LEEWAY_SECS) > now {
            return Err(TokenError::NotYetValid { nbf, now });
        }
    }
    if iat.saturating_sub(LEEWAY_SECS) > now {
        return Err(TokenError::IssuedInFuture { iat, now });
    }
    Ok(Claims {
        iss,
        aud,
        exp,
        iat,
        nbf,
        jti,
        sub,
        all,
    })
}

fn optional_str(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<String>, TokenError> {
    match claims.get(claim) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::InvalidClaim {
            claim,
            expected: "a string",
        }),
    }
}

fn required_str(claims: &Map<String, Value>, claim: &'static str) -> Result<String, TokenError> {
    optional_str(claims, claim)?.ok_or(TokenError::MissingClaim { claim })
}

/// An optional NumericDate claim: an integer (fractions and exponents are refused).
fn optional_int(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<i64>, TokenError> {
    match claims.get(claim) {
        None => Ok(None),
        Some(value) => value.as_i64().map(Some).ok_or(TokenError::InvalidClaim {
            claim,
            expected: "an integer number of seconds",
        }),
    }
}

/// A token-supplied string, shortened for an error message.
fn echo(text: &str) -> String {
    super::shorten(text, MAX_ECHO_CHARS)
}

#[cfg(test)]
mod tests;
