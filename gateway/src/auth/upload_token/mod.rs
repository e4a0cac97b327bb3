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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{self as sig, Ed25519KeyPair, KeyPair as _, ParsedPublicKey};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rustls_pki_types::pem::{self, PemObject as _, SectionKind};
use serde::{Deserialize, Serialize};

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
/// The DER `SubjectPublicKeyInfo` of an Ed25519 key, up to the 32 key bytes (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
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

/// One configured signing key, as read from its files: a PKCS#8 private key PEM (the key may then
/// sign, and its public key is derived) or an SPKI public key PEM (the key only verifies), never
/// both. Its `Debug` form leaves the key material out.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeyMaterial {
    /// The key id written into the tokens it signs.
    pub id: String,
    /// A `-----BEGIN PRIVATE KEY-----` PEM (PKCS#8, Ed25519).
    pub private_pkcs8_pem: Option<Vec<u8>>,
    /// A `-----BEGIN PUBLIC KEY-----` PEM (SPKI, Ed25519).
    pub public_spki_pem: Option<Vec<u8>>,
}

impl KeyMaterial {
    /// A key given by its private key PEM.
    pub fn private(id: impl Into<String>, pem: impl Into<Vec<u8>>) -> Self {
        KeyMaterial {
            id: id.into(),
            private_pkcs8_pem: Some(pem.into()),
            public_spki_pem: None,
        }
    }

    /// A verify-only key given by its public key PEM.
    pub fn public(id: impl Into<String>, pem: impl Into<Vec<u8>>) -> Self {
        KeyMaterial {
            id: id.into(),
            private_pkcs8_pem: None,
            public_spki_pem: Some(pem.into()),
        }
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let presence = |pem: &Option<Vec<u8>>| if pem.is_some() { "<redacted>" } else { "none" };
        f.debug_struct("KeyMaterial")
            .field("id", &self.id)
            .field("private_pkcs8_pem", &presence(&self.private_pkcs8_pem))
            .field("public_spki_pem", &presence(&self.public_spki_pem))
            .finish()
    }
}

/// Which half of a key an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPart {
    /// The private key (PKCS#8).
    Private,
    /// The public key (SPKI).
    Public,
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyPart::Private => "private",
            KeyPart::Public => "public",
        })
    }
}

/// Why the upload token keys (or the lifetime) were refused, or a key could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A key id is not 1 to 32 characters of `A-Z a-z 0-9 - _`.
    #[error("upload token key id {id:?} is not 1 to 32 characters of A-Z, a-z, 0-9, '-' and '_'")]
    InvalidId {
        /// The key id (shortened).
        id: String,
    },
    /// Two keys have the same id.
    #[error("upload token key id {id:?} is configured more than once")]
    DuplicateId {
        /// The key id.
        id: String,
    },
    /// A key has neither a private nor a public key.
    #[error("upload token key {id:?} has neither a private nor a public key")]
    NoMaterial {
        /// The key id.
        id: String,
    },
    /// A key has both a private and a public key.
    #[error("upload token key {id:?} has both a private and a public key; give only the private key")]
    BothMaterials {
        /// The key id.
        id: String,
    },
    /// A key's PEM is not one well-formed section with the expected label.
    #[error("upload token key {id:?}: the {part} key is not usable PEM: {reason}")]
    Pem {
        /// The key id.
        id: String,
        /// Which half of the key.
        part: KeyPart,
        /// What is wrong.
        reason: String,
    },
    /// A key is not an Ed25519 key.
    #[error(
        "upload token key {id:?}: the {part} key is {found}, not an Ed25519 key (create one with `portcullis keygen`)"
    )]
    WrongKeyType {
        /// The key id.
        id: String,
        /// Which half of the key.
        part: KeyPart,
        /// What kind of key it is.
        found: &'static str,
    },
    /// A key is labelled and typed as Ed25519 but its encoding is not valid.
    #[error("upload token key {id:?}: the {part} key is not a valid Ed25519 {format}")]
    InvalidKey {
        /// The key id.
        id: String,
        /// Which half of the key.
        part: KeyPart,
        /// The expected encoding.
        format: &'static str,
    },
    /// The signing key id names no configured key.
    #[error("the upload token signing key {id:?} is not among the configured keys")]
    UnknownSigningKey {
        /// The signing key id.
        id: String,
    },
    /// The signing key has only a public key.
    #[error("the upload token signing key {id:?} has only a public key; signing needs its private key")]
    SigningKeyNotPrivate {
        /// The signing key id.
        id: String,
    },
    /// The lifetime is not a whole number of seconds from 1 minute to 24 hours.
    #[error("the upload token lifetime ({lifetime:?}) must be a whole number of seconds from 1 minute to 24 hours")]
    Lifetime {
        /// The refused lifetime.
        lifetime: Duration,
    },
    /// Generating or encoding a new key pair failed.
    #[error("generating an Ed25519 key pair failed")]
    Generation,
}

impl KeyError {
    /// The stable code logs, metrics and scripts may match on.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::InvalidId { .. } => "key_id_invalid",
            KeyError::DuplicateId { .. } => "key_id_duplicate",
            KeyError::NoMaterial { .. } => "key_material_missing",
            KeyError::BothMaterials { .. } => "key_material_ambiguous",
            KeyError::Pem { .. } => "key_pem_invalid",
            KeyError::WrongKeyType { .. } => "key_type_wrong",
            KeyError::InvalidKey { .. } => "key_invalid",
            KeyError::UnknownSigningKey { .. } => "signing_key_unknown",
            KeyError::SigningKeyNotPrivate { .. } => "signing_key_public_only",
            KeyError::Lifetime { .. } => "lifetime_out_of_range",
            KeyError::Generation => "key_generation_failed",
        }
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

/// Generates a new Ed25519 key pair for `portcullis keygen`: the private key as a PKCS#8 v1
/// `PRIVATE KEY` PEM (the form `openssl genpkey -algorithm ed25519` writes) and its public key as
/// an SPKI `PUBLIC KEY` PEM.
pub fn generate_key_pem() -> Result<(String, String), KeyError> {
    let pair = Ed25519KeyPair::generate().map_err(|_| KeyError::Generation)?;
    let private = pair.to_pkcs8v1().map_err(|_| KeyError::Generation)?;
    let public = pair.public_key().as_der().map_err(|_| KeyError::Generation)?;
    Ok((
        pem_encode("PRIVATE KEY", private.as_ref()),
        pem_encode("PUBLIC KEY", public.as_ref()),
    ))
}

/// Encodes DER as PEM: standard base64 in 64-character lines (RFC 7468).
fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    let mut rest = body.as_str();
    while !rest.is_empty() {
        // Base64 is ASCII: any byte index is a character boundary.
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
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
    /// Loads the keys. Every key verifies; the one named `signing_key_id` also signs and must have
    /// its private key. Refuses invalid or duplicate key ids, a key with neither or both of a
    /// private and a public key, keys that are not Ed25519 (RSA and EC keys included, with a
    /// message saying so), and a `lifetime` that is not a whole number of seconds from
    /// [`MIN_LIFETIME`] to [`MAX_LIFETIME`].
    pub fn new(keys: Vec<KeyMaterial>, signing_key_id: &str, lifetime: Duration) -> Result<Self, KeyError> {
        if !(MIN_LIFETIME..=MAX_LIFETIME).contains(&lifetime) || lifetime.subsec_nanos() != 0 {
            return Err(KeyError::Lifetime { lifetime });
        }
        let mut verifying_keys = BTreeMap::new();
        let mut signing = None;
        let mut public_only = BTreeSet::new();
        for key in keys {
            if !is_valid_key_id(&key.id) {
                return Err(KeyError::InvalidId { id: echo(&key.id) });
            }
            if verifying_keys.contains_key(&key.id) {
                return Err(KeyError::DuplicateId { id: key.id });
            }
            let public = match (&key.private_pkcs8_pem, &key.public_spki_pem) {
                (None, None) => return Err(KeyError::NoMaterial { id: key.id }),
                (Some(_), Some(_)) => return Err(KeyError::BothMaterials { id: key.id }),
                (Some(pem), None) => {
                    let pair = load_private_key(&key.id, pem)?;
                    let public = ParsedPublicKey::new(&sig::ED25519, pair.public_key().as_ref()).map_err(|_| {
                        KeyError::InvalidKey {
                            id: key.id.clone(),
                            part: KeyPart::Public,
                            format: "public key",
                        }
                    })?;
                    if key.id == signing_key_id {
                        signing = Some(pair);
                    }
                    public
                }
                (None, Some(pem)) => {
                    public_only.insert(key.id.clone());
                    load_public_key(&key.id, pem)?
                }
            };
            verifying_keys.insert(key.id, public);
        }
        let Some(signing_key) = signing else {
            return Err(if public_only.contains(signing_key_id) {
                KeyError::SigningKeyNotPrivate {
                    id: signing_key_id.to_owned(),
                }
            } else {
                KeyError::UnknownSigningKey {
                    id: echo(signing_key_id),
                }
            });
        };
        Ok(UploadTokenKeys {
            signing_key_id: signing_key_id.to_owned(),
            signing_key,
            verifying_keys,
            lifetime,
        })
    }

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

/// Parses a PKCS#8 Ed25519 private key PEM.
fn load_private_key(id: &str, pem: &[u8]) -> Result<Ed25519KeyPair, KeyError> {
    let der = single_pem_section(id, KeyPart::Private, pem)?;
    ensure_ed25519(id, KeyPart::Private, &der)?;
    Ed25519KeyPair::from_pkcs8(&der).map_err(|_| KeyError::InvalidKey {
        id: id.to_owned(),
        part: KeyPart::Private,
        format: "PKCS#8 private key",
    })
}

/// Parses an SPKI Ed25519 public key PEM (exactly the RFC 8410 encoding).
fn load_public_key(id: &str, pem: &[u8]) -> Result<ParsedPublicKey, KeyError> {
    let der = single_pem_section(id, KeyPart::Public, pem)?;
    ensure_ed25519(id, KeyPart::Public, &der)?;
    let invalid = || KeyError::InvalidKey {
        id: id.to_owned(),
        part: KeyPart::Public,
        format: "SubjectPublicKeyInfo public key",
    };
    let raw = der.strip_prefix(&ED25519_SPKI_PREFIX[..]).ok_or_else(invalid)?;
    if raw.len() != 32 {
        return Err(invalid());
    }
    ParsedPublicKey::new(&sig::ED25519, raw).map_err(|_| invalid())
}

/// The DER of the one PEM section of a key file, which must carry the label for `part`
/// (`PRIVATE KEY` or `PUBLIC KEY`). Messages never quote the file's contents beyond its labels.
fn single_pem_section(id: &str, part: KeyPart, pem: &[u8]) -> Result<Vec<u8>, KeyError> {
    let (expected_kind, expected_label) = match part {
        KeyPart::Private => (SectionKind::PrivateKey, "PRIVATE KEY"),
        KeyPart::Public => (SectionKind::PublicKey, "PUBLIC KEY"),
    };
    let pem_error = |reason: String| KeyError::Pem {
        id: id.to_owned(),
        part,
        reason,
    };
    let labels: Vec<&[u8]> = pem
        .split(|b| *b == b'\n')
        .filter_map(|line| line.trim_ascii().strip_prefix(b"-----BEGIN "))
        .map(|rest| rest.strip_suffix(b"-----").unwrap_or(rest))
        .collect();
    let label = match labels.as_slice() {
        [] => return Err(pem_error(format!("no \"-----BEGIN {expected_label}-----\" line"))),
        [label] => *label,
        more => return Err(pem_error(format!("{} PEM sections; exactly one expected", more.len()))),
    };
    if label != expected_label.as_bytes() {
        let found = match label {
            b"RSA PRIVATE KEY" | b"RSA PUBLIC KEY" => Some("an RSA key (PKCS#1)"),
            b"EC PRIVATE KEY" => Some("an EC key (SEC1)"),
            _ => None,
        };
        if label == b"OPENSSH PRIVATE KEY" {
            return Err(pem_error(
                "it is in OpenSSH format; PKCS#8 is required (`ssh-keygen -p -m PKCS8 -f <file>` converts it)"
                    .to_owned(),
            ));
        }
        return Err(match found {
            Some(found) => KeyError::WrongKeyType {
                id: id.to_owned(),
                part,
                found,
            },
            None => pem_error(format!(
                "its section is {:?}, not {expected_label:?}",
                echo(&String::from_utf8_lossy(label))
            )),
        });
    }
    let mut sections = <(SectionKind, Vec<u8>)>::pem_slice_iter(pem);
    match (sections.next(), sections.next()) {
        (Some(Ok((kind, der))), None) if kind == expected_kind => Ok(der),
        (Some(Err(e)), _) => Err(pem_error(pem_error_reason(&e).to_owned())),
        _ => Err(pem_error(format!(
            "it is not one well-formed \"{expected_label}\" section"
        ))),
    }
}

/// A fixed description of a PEM parsing error (the error's own text may quote the file).
fn pem_error_reason(error: &pem::Error) -> &'static str {
    match error {
        pem::Error::MissingSectionEnd { .. } => "the \"-----END\" line is missing",
        pem::Error::IllegalSectionStart { .. } => "the \"-----BEGIN\" line is malformed",
        pem::Error::Base64Decode(_) => "the section is not valid base64",
        pem::Error::SectionTooLarge => "the section is too large",
        _ => "it is not well-formed PEM",
    }
}

/// Refuses a key whose DER names an algorithm other than Ed25519, saying which one it is.
fn ensure_ed25519(id: &str, part: KeyPart, der: &[u8]) -> Result<(), KeyError> {
    let format = match part {
        KeyPart::Private => "PKCS#8 private key",
        KeyPart::Public => "SubjectPublicKeyInfo public key",
    };
    let oid = key_algorithm_oid(part, der).ok_or_else(|| KeyError::InvalidKey {
        id: id.to_owned(),
        part,
        format,
    })?;
    let found = match oid {
        [0x2b, 0x65, 0x70] => return Ok(()),
        [0x2b, 0x65, 0x71] => "an Ed448 key",
        [0x2b, 0x65, 0x6e] => "an X25519 key",
        [0x2b, 0x65, 0x6f] => "an X448 key",
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01] => "an EC key",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01] => "an RSA key",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a] => "an RSA-PSS key",
        _ => "a key of an unrecognised algorithm",
    };
    Err(KeyError::WrongKeyType {
        id: id.to_owned(),
        part,
        found,
    })
}

/// The algorithm OID (contents octets) of a PKCS#8 `PrivateKeyInfo` or an SPKI: the first
/// member of the `AlgorithmIdentifier`, after the version for PKCS#8.
fn key_algorithm_oid(part: KeyPart, der: &[u8]) -> Option<&[u8]> {
    let (0x30, mut body, []) = der_tlv(der)? else {
        return None;
    };
    if part == KeyPart::Private {
        let (0x02, _, rest) = der_tlv(body)? else {
            return None;
        };
        body = rest;
    }
    let (0x30, algorithm, _) = der_tlv(body)? else {
        return None;
    };
    match der_tlv(algorithm)? {
        (0x06, oid, _) => Some(oid),
        _ => None,
    }
}

/// One DER TLV: (tag, contents, rest). Lengths up to 65535 bytes.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        short if short < 0x80 => (usize::from(short), rest),
        0x81 => {
            let (&len, rest) = rest.split_first()?;
            (usize::from(len), rest)
        }
        0x82 => {
            let (&[high, low], rest) = rest.split_first_chunk::<2>()?;
            ((usize::from(high) << 8) | usize::from(low), rest)
        }
        _ => return None,
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// A supplied string, shortened for an error message.
fn echo(text: &str) -> String {
    shorten(text, MAX_ECHO_CHARS)
}

#[cfg(test)]
mod tests;
