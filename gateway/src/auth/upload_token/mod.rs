//! Upload tokens: the short-lived credentials the gateway mints after a successful
//! trusted-publishing exchange, and verifies when a client uploads with one (PyPI: HTTP basic
//! `__token__:<token>`; npm: `Authorization: Bearer <token>`), before checking its scope and
//! swapping it for the backend's own credential. Only the gateway mints and verifies them, so
//! they are signed with the gateway's own Ed25519 keys ([`UploadTokenKeys`]).
//!
//! A token is [`PREFIX`] followed by three `.`-separated segments:
//!
//! ```text
//! pcul_<key id>.<base64url-nopad(payload JSON)>.<base64url-nopad(Ed25519 signature)>
//! ```
//!
//! The signature covers the exact bytes before the last `.`, prefix and key id included (the
//! prefix separates these signatures from anything else the key could sign). The payload is
//!
//! ```text
//! {"v":1,"jti":"<uuid, simple form>","iat":<unix s>,"exp":<unix s>,"iss":"<CI token issuer>",
//!  "sub":"<CI token subject or empty>","scopes":[{"registry":"pypi","publisher":"<publisher id>",
//!  "projects":["<normalised name>",...],"create":["<name it may create>",...]}]}
//! ```
//!
//! [`UploadTokenKeys::verify`] checks, in this order, failing on the first problem with its own
//! [`UploadTokenError`] variant:
//!
//! 1. the size ([`MAX_TOKEN_BYTES`]) before anything else, then the [`PREFIX`], then exactly
//!    three segments;
//! 2. the key id's syntax (1 to [`MAX_KEY_ID_LEN`] characters of `A-Z a-z 0-9 - _`), then that
//!    it names a configured key ([`UploadTokenError::UnknownKey`] once a key is retired);
//! 3. both segments are unpadded, canonical base64url;
//! 4. the signature verifies; only then is the payload parsed;
//! 5. the payload is one JSON object without duplicate members (at any depth), with version
//!    [`VERSION`], then exactly the known members, a `jti` in UUID simple form and an `iss`;
//! 6. `iat < exp` and the lifetime is at most [`MAX_LIFETIME`]; `now < exp` (no leeway: the
//!    gateway set `exp` itself); `iat <= now + 60` ([`ISSUED_AT_SKEW_SECS`], for replicas whose
//!    clocks differ a little);
//! 7. the scopes: at least one, one per registry, each with a registry, a publisher and at
//!    least one project (in `projects` or `create`).
//!
//! Key rotation: configure the new key, make it the signing key, and keep the old key listed
//! (its public key is enough) until the tokens it signed have expired ([`MAX_LIFETIME`] at most).
//!
//! Loading the keys from their PEM files, and generating new ones, is in `keys.rs`.

mod keys;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use aws_lc_rs::signature::{Ed25519KeyPair, ParsedPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub use keys::{generate_key_pem, KeyError, KeyMaterial, KeyPart};

use super::shorten;

/// The prefix every upload token starts with; part of the signed bytes.
pub const PREFIX: &str = "pcul_";
/// Largest token accepted (and minted), in bytes; longer tokens are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 4 * 1024;
/// Longest key id, in characters.
pub const MAX_KEY_ID_LEN: usize = 32;
/// Shortest token lifetime [`UploadTokenKeys::new`] accepts.
pub const MIN_LIFETIME: Duration = Duration::from_secs(60);
/// Longest token lifetime [`UploadTokenKeys::new`] accepts, and longest `exp - iat` a token may
/// claim.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// How far in the future a token's `iat` may be, in seconds (clock differences between replicas).
pub const ISSUED_AT_SKEW_SECS: i64 = 60;
/// The payload version this module mints and accepts.
pub const VERSION: u32 = 1;

/// Longest attacker- or configuration-supplied string copied into an error.
const MAX_ECHO_CHARS: usize = 64;
/// Longest parser complaint copied into an error.
const MAX_REASON_CHARS: usize = 200;
/// `MAX_LIFETIME` in seconds, for the checks on token times.
const MAX_LIFETIME_SECS: i64 = 24 * 60 * 60;

/// What a token lets its holder do on one registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// The registry name (as in the configuration), e.g. `pypi`.
    pub registry: String,
    /// The id of the trusted publisher that matched the CI token.
    pub publisher: String,
    /// Existing projects the token may upload to, normalised the way the registry does.
    pub projects: Vec<String>,
    /// Projects the token may create (a pending publisher), normalised likewise.
    pub create: Vec<String>,
}

/// What to mint a token for: the outcome of a successful trusted-publishing exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The OIDC issuer URL of the CI token.
    pub issuer: String,
    /// The subject of the CI token, or empty.
    pub subject: String,
    /// One scope per registry; at least one.
    pub scopes: Vec<Scope>,
}

/// A verified upload token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadToken {
    /// The token id (`jti`, UUID simple form), for logs and revocation.
    pub id: String,
    /// The id of the key that signed it.
    pub key_id: String,
    /// When it was minted, Unix seconds.
    pub issued_at: i64,
    /// When it expires, Unix seconds; it is refused from this second on.
    pub expires_at: i64,
    /// The OIDC issuer URL of the CI token it was minted for.
    pub issuer: String,
    /// The subject of that CI token, or empty.
    pub subject: String,
    /// What it allows, one scope per registry.
    pub scopes: Vec<Scope>,
}

impl UploadToken {
    /// The scope for this registry, if the token has one.
    pub fn scope_for(&self, registry: &str) -> Option<&Scope> {
        self.scopes.iter().find(|scope| scope.registry == registry)
    }

    /// The scope of `registry` that covers `project` (already normalised), in `projects` or
    /// `create`; its publisher is the one the upload is attributed to.
    pub fn scope_for_project(&self, registry: &str, project: &str) -> Option<&Scope> {
        self.scopes.iter().find(|scope| {
            scope.registry == registry && scope.projects.iter().chain(&scope.create).any(|p| p == project)
        })
    }

    /// Whether the token may upload to `project` (already normalised) on `registry`: the project
    /// is in a scope's `projects` or `create`.
    pub fn allows(&self, registry: &str, project: &str) -> bool {
        self.scope_for_project(registry, project).is_some()
    }

    /// Whether the token may create `project` (already normalised) on `registry`: the project is
    /// in a scope's `create`.
    pub fn may_create(&self, registry: &str, project: &str) -> bool {
        self.scopes
            .iter()
            .any(|scope| scope.registry == registry && scope.create.iter().any(|p| p == project))
    }
}

/// A freshly minted token. Its `Debug` form leaves the token itself out.
#[derive(Clone, PartialEq, Eq)]
pub struct MintedToken {
    /// The token to hand to the client (a bearer credential: never log it).
    pub token: String,
    /// Its id (`jti`).
    pub id: String,
    /// When it expires, Unix seconds.
    pub expires_at: i64,
}

impl fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedToken")
            .field("token", &"<redacted>")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Which segment of a token an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The payload (second segment).
    Payload,
    /// The signature (third segment).
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Payload => "payload",
            Part::Signature => "signature",
        })
    }
}

/// Why a token was refused by [`UploadTokenKeys::verify`], or could not be minted by
/// [`UploadTokenKeys::mint`]. Strings copied from a token are shortened to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadTokenError {
    /// The token is longer than [`MAX_TOKEN_BYTES`].
    #[error("the upload token is {len} bytes long, over the {max}-byte limit")]
    TooLarge {
        /// Length of the token.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The credential does not start with [`PREFIX`].
    #[error("the credential is not an upload token (it does not start with \"pcul_\")")]
    WrongPrefix,
    /// The token does not have exactly three `.`-separated segments after the prefix.
    #[error("the upload token has {found} dot-separated segments; it must have exactly 3")]
    Segments {
        /// Number of segments found.
        found: usize,
    },
    /// The key id is not 1 to 32 characters of `A-Z a-z 0-9 - _`.
    #[error("the upload token key id {key_id:?} is not 1 to 32 characters of A-Z, a-z, 0-9, '-' and '_'")]
    MalformedKeyId {
        /// The key id (shortened).
        key_id: String,
    },
    /// No configured key has this id (a retired key, or a token from elsewhere).
    #[error("no upload token key has id {key_id:?}")]
    UnknownKey {
        /// The key id.
        key_id: String,
    },
    /// A segment is not unpadded, canonical base64url.
    #[error("the upload token {part} is not unpadded base64url")]
    Base64 {
        /// The segment.
        part: Part,
    },
    /// The signature does not verify with the key.
    #[error("the upload token signature does not verify")]
    BadSignature,
    /// The (signed) payload is not the expected JSON object.
    #[error("the upload token payload is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The payload has a version other than [`VERSION`].
    #[error("the upload token payload has version {version}; only version 1 is supported")]
    UnsupportedVersion {
        /// The payload `v`.
        version: u64,
    },
    /// `exp` is not after `iat`, or `exp - iat` is over [`MAX_LIFETIME`].
    #[error("the upload token times are inconsistent (issued at {iat}, expires at {exp})")]
    InvalidLifetime {
        /// The payload `iat`.
        iat: i64,
        /// The payload `exp`.
        exp: i64,
    },
    /// `now >= exp`.
    #[error("the upload token expired at {exp} (now {now})")]
    Expired {
        /// The payload `exp`.
        exp: i64,
        /// The time of the check.
        now: i64,
    },
    /// `iat > now + 60`.
    #[error("the upload token was issued at {iat}, in the future (now {now}, allowed skew 60 s)")]
    NotYetValid {
        /// The payload `iat`.
        iat: i64,
        /// The time of the check.
        now: i64,
    },
    /// The (signed) scopes are not acceptable.
    #[error("the upload token scopes are invalid: {reason}")]
    InvalidScopes {
        /// What is wrong.
        reason: String,
    },
    /// [`UploadTokenKeys::mint`] was given a grant it cannot mint a token for.
    #[error("cannot mint an upload token for this grant: {reason}")]
    InvalidGrant {
        /// What is wrong.
        reason: String,
    },
    /// Signing failed in the cryptographic library.
    #[error("signing the upload token failed")]
    Signing,
}

impl UploadTokenError {
    /// The stable code logs, metrics and scripts may match on.
    pub fn code(&self) -> &'static str {
        match self {
            UploadTokenError::TooLarge { .. } => "too_large",
            UploadTokenError::WrongPrefix => "wrong_prefix",
            UploadTokenError::Segments { .. } => "segments",
            UploadTokenError::MalformedKeyId { .. } => "key_id_malformed",
            UploadTokenError::UnknownKey { .. } => "unknown_key",
            UploadTokenError::Base64 { .. } => "base64",
            UploadTokenError::BadSignature => "bad_signature",
            UploadTokenError::Malformed { .. } => "malformed",
            UploadTokenError::UnsupportedVersion { .. } => "unsupported_version",
            UploadTokenError::InvalidLifetime { .. } => "invalid_lifetime",
            UploadTokenError::Expired { .. } => "expired",
            UploadTokenError::NotYetValid { .. } => "not_yet_valid",
            UploadTokenError::InvalidScopes { .. } => "invalid_scopes",
            UploadTokenError::InvalidGrant { .. } => "invalid_grant",
            UploadTokenError::Signing => "signing_failed",
        }
    }
}

/// Whether a credential is meant to be one of our upload tokens (it starts with [`PREFIX`]), so
/// the caller verifies it rather than passing it on. Says nothing about its validity.
pub fn looks_like_upload_token(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// The gateway's upload token keys: one signing key and every key that still verifies, with the
/// lifetime of the tokens minted. Its `Debug` form shows only key ids and the lifetime.
#[derive(Clone)]
pub struct UploadTokenKeys {
    signing_key_id: String,
    signing_key: Ed25519KeyPair,
    verifying_keys: BTreeMap<String, ParsedPublicKey>,
    lifetime: Duration,
}

impl fmt::Debug for UploadTokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadTokenKeys")
            .field("signing_key_id", &self.signing_key_id)
            .field("key_ids", &self.verifying_keys.keys().collect::<Vec<_>>())
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl UploadTokenKeys {
    /// The lifetime of the tokens [`mint`](Self::mint) issues.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The id of the key new tokens are signed with.
    pub fn signing_key_id(&self) -> &str {
        &self.signing_key_id
    }

    /// The ids of the keys that verify tokens (the signing key included), in sorted order.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.verifying_keys.keys().map(String::as_str)
    }

    /// Mints a token for `grant`, issued at `now` (Unix seconds) and expiring [`lifetime`]
    /// later, signed with the signing key. Refuses ([`UploadTokenError::InvalidGrant`]) an empty
    /// issuer, no scopes, two scopes for one registry, a scope without registry, publisher or
    /// project (in `projects` or `create`), an empty project name, and a grant whose token would
    /// be over [`MAX_TOKEN_BYTES`].
    ///
    /// [`lifetime`]: Self::lifetime
    pub fn mint(&self, grant: &Grant, now: i64) -> Result<MintedToken, UploadTokenError> {
        let invalid = |reason: String| UploadTokenError::InvalidGrant { reason };
        if grant.issuer.is_empty() {
            return Err(invalid("the issuer is empty".to_owned()));
        }
        check_scopes(&grant.scopes).map_err(invalid)?;
        let lifetime = i64::try_from(self.lifetime.as_secs()).unwrap_or(MAX_LIFETIME_SECS);
        let exp = now
            .checked_add(lifetime)
            .ok_or_else(|| invalid(format!("the expiry of a token issued at {now} is out of range")))?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let payload = Payload {
            v: VERSION,
            jti: id.clone(),
            iat: now,
            exp,
            iss: grant.issuer.clone(),
            sub: grant.subject.clone(),
            scopes: grant.scopes.clone(),
        };
        let json = serde_json::to_vec(&payload).map_err(|e| invalid(shorten(&e.to_string(), MAX_REASON_CHARS)))?;
        let signing_input = format!("{PREFIX}{}.{}", self.signing_key_id, URL_SAFE_NO_PAD.encode(json));
        let signature = self
            .signing_key
            .try_sign(signing_input.as_bytes())
            .map_err(|_| UploadTokenError::Signing)?;
        let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid(format!(
                "the token would be {} bytes long, over the {MAX_TOKEN_BYTES}-byte limit",
                token.len()
            )));
        }
        Ok(MintedToken {
            token,
            id,
            expires_at: exp,
        })
    }

    /// Verifies `token` at `now` (Unix seconds) and returns what it grants. See the module
    /// documentation for the checks and their order. The caller still checks the scope
    /// ([`UploadToken::allows`]) and whether the token id has been revoked.
    pub fn verify(&self, token: &str, now: i64) -> Result<UploadToken, UploadTokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(UploadTokenError::TooLarge {
                len: token.len(),
                max: MAX_TOKEN_BYTES,
            });
        }
        let body = token.strip_prefix(PREFIX).ok_or(UploadTokenError::WrongPrefix)?;
        let found = body.bytes().filter(|b| *b == b'.').count() + 1;
        let mut segments = body.splitn(3, '.');
        let (Some(key_id), Some(payload_b64), Some(signature_b64), 3) =
            (segments.next(), segments.next(), segments.next(), found)
        else {
            return Err(UploadTokenError::Segments { found });
        };
        if !is_valid_key_id(key_id) {
            return Err(UploadTokenError::MalformedKeyId { key_id: echo(key_id) });
        }
        let key = self
            .verifying_keys
            .get(key_id)
            .ok_or_else(|| UploadTokenError::UnknownKey {
                key_id: key_id.to_owned(),
            })?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| UploadTokenError::Base64 { part: Part::Payload })?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| UploadTokenError::Base64 { part: Part::Signature })?;
        let signing_input = &token[..token.len() - signature_b64.len() - 1];
        key.verify_sig(signing_input.as_bytes(), &signature)
            .map_err(|_| UploadTokenError::BadSignature)?;

        let payload = parse_payload(&payload)?;
        check_times(payload.iat, payload.exp, now)?;
        check_scopes(&payload.scopes).map_err(|reason| UploadTokenError::InvalidScopes { reason })?;
        Ok(UploadToken {
            id: payload.jti,
            key_id: key_id.to_owned(),
            issued_at: payload.iat,
            expires_at: payload.exp,
            issuer: payload.iss,
            subject: payload.sub,
            scopes: payload.scopes,
        })
    }
}

/// The signed payload, exactly as minted.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    v: u32,
    jti: String,
    iat: i64,
    exp: i64,
    iss: String,
    sub: String,
    scopes: Vec<Scope>,
}

/// Only the version of a payload, read before the rest so a future version's members are not
/// reported as unknown.
#[derive(Deserialize)]
struct Versioned {
    v: u64,
}

/// Parses a verified payload: one JSON object without duplicate members, version 1, exactly the
/// known members, a well-formed `jti` and a non-empty `iss`.
fn parse_payload(bytes: &[u8]) -> Result<Payload, UploadTokenError> {
    let malformed = |e: serde_json::Error| UploadTokenError::Malformed {
        reason: shorten(&e.to_string(), MAX_REASON_CHARS),
    };
    let object = serde_json::Value::Object(super::unique_json::object(bytes).map_err(malformed)?);
    let version = Versioned::deserialize(&object).map_err(malformed)?.v;
    if version != u64::from(VERSION) {
        return Err(UploadTokenError::UnsupportedVersion { version });
    }
    let payload = Payload::deserialize(&object).map_err(malformed)?;
    if payload.jti.len() != 32 || !payload.jti.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(UploadTokenError::Malformed {
            reason: "\"jti\" is not a UUID in simple form (32 lowercase hex digits)".to_owned(),
        });
    }
    if payload.iss.is_empty() {
        return Err(UploadTokenError::Malformed {
            reason: "\"iss\" is empty".to_owned(),
        });
    }
    Ok(payload)
}

/// `iat < exp <= iat + MAX_LIFETIME`, `now < exp` (no leeway), `iat <= now + 60`.
fn check_times(iat: i64, exp: i64, now: i64) -> Result<(), UploadTokenError> {
    if exp <= iat || exp.checked_sub(iat).is_none_or(|lifetime| lifetime > MAX_LIFETIME_SECS) {
        return Err(UploadTokenError::InvalidLifetime { iat, exp });
    }
    if now >= exp {
        return Err(UploadTokenError::Expired { exp, now });
    }
    if iat > now.saturating_add(ISSUED_AT_SKEW_SECS) {
        return Err(UploadTokenError::NotYetValid { iat, now });
    }
    Ok(())
}

/// At least one scope, each with a registry, a publisher and at least one project, no empty
/// project name; a registry may have several scopes (one per publisher), but a publisher appears
/// once per registry and a project belongs to one scope of its registry only.
fn check_scopes(scopes: &[Scope]) -> Result<(), String> {
    if scopes.is_empty() {
        return Err("there are no scopes".to_owned());
    }
    let mut publishers = BTreeSet::new();
    let mut projects = BTreeSet::new();
    for scope in scopes {
        let registry = echo(&scope.registry);
        if scope.registry.is_empty() {
            return Err("a scope has an empty registry name".to_owned());
        }
        if !publishers.insert((scope.registry.as_str(), scope.publisher.as_str())) {
            return Err(format!(
                "registry {registry:?} has more than one scope for publisher {:?}",
                echo(&scope.publisher)
            ));
        }
        let mut own = BTreeSet::new();
        for project in scope.projects.iter().chain(&scope.create) {
            if own.insert(project.as_str()) && !projects.insert((scope.registry.as_str(), project.as_str())) {
                return Err(format!(
                    "project {:?} of registry {registry:?} is in more than one scope",
                    echo(project)
                ));
            }
        }
        if scope.publisher.is_empty() {
            return Err(format!("the scope for registry {registry:?} has an empty publisher id"));
        }
        if scope.projects.is_empty() && scope.create.is_empty() {
            return Err(format!("the scope for registry {registry:?} names no project"));
        }
        if scope.projects.iter().chain(&scope.create).any(String::is_empty) {
            return Err(format!("the scope for registry {registry:?} has an empty project name"));
        }
    }
    Ok(())
}

/// A key id: 1 to [`MAX_KEY_ID_LEN`] characters of `A-Z a-z 0-9 - _`.
fn is_valid_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A supplied string, shortened for an error message.
fn echo(text: &str) -> String {
    shorten(text, MAX_ECHO_CHARS)
}
