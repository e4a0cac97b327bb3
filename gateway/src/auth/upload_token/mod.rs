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
mod tests {
    use std::collections::BTreeSet;
    use std::sync::LazyLock;

    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _};
    use serde_json::{json, Value};

    use super::*;

    const NOW: i64 = 1_750_000_000;
    const ISS: &str = "https://token.actions.githubusercontent.com";
    const LIFETIME: Duration = Duration::from_secs(15 * 60);

    /// (private PEM, public PEM) pairs.
    static KEY_A: LazyLock<(String, String)> = LazyLock::new(|| generate_key_pem().expect("key generation"));
    static KEY_B: LazyLock<(String, String)> = LazyLock::new(|| generate_key_pem().expect("key generation"));

    fn private(id: &str, key: &(String, String)) -> KeyMaterial {
        KeyMaterial::private(id, key.0.as_bytes())
    }

    fn public(id: &str, key: &(String, String)) -> KeyMaterial {
        KeyMaterial::public(id, key.1.as_bytes())
    }

    fn keys() -> UploadTokenKeys {
        UploadTokenKeys::new(vec![private("k1", &KEY_A)], "k1", LIFETIME).expect("keys")
    }

    fn key_error(keys: Vec<KeyMaterial>, signing: &str) -> KeyError {
        UploadTokenKeys::new(keys, signing, LIFETIME).expect_err("the keys must be refused")
    }

    fn scope(registry: &str, projects: &[&str], create: &[&str]) -> Scope {
        Scope {
            registry: registry.to_owned(),
            publisher: format!("{registry}-publisher"),
            projects: projects.iter().map(|p| (*p).to_owned()).collect(),
            create: create.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn a_registry_may_have_one_scope_per_publisher_and_each_project_once() {
        let keys = keys();
        let mut second = scope("pypi", &["b"], &["c"]);
        second.publisher = "other-publisher".into();
        let two = Grant {
            scopes: vec![scope("pypi", &["a"], &[]), second.clone()],
            ..grant()
        };
        let minted = keys.mint(&two, NOW).expect("mint");
        let token = keys.verify(&minted.token, NOW).expect("verify");
        assert_eq!(
            token.scope_for_project("pypi", "b").map(|s| s.publisher.as_str()),
            Some("other-publisher")
        );
        assert_eq!(
            token.scope_for_project("pypi", "a").map(|s| s.publisher.as_str()),
            Some("pypi-publisher")
        );
        assert!(token.allows("pypi", "c") && token.may_create("pypi", "c") && !token.may_create("pypi", "b"));
        second.projects = vec!["a".into()];
        let overlapping = Grant {
            scopes: vec![scope("pypi", &["a"], &[]), second],
            ..grant()
        };
        let err = keys.mint(&overlapping, NOW).expect_err("a project in two scopes");
        assert!(err.to_string().contains("more than one scope"), "{err}");
    }

    fn grant() -> Grant {
        Grant {
            issuer: ISS.to_owned(),
            subject: "repo:octo-org/octo-repo:ref:refs/heads/main".to_owned(),
            scopes: vec![
                scope("pypi", &["sampleproject", "sampleproject-extras"], &[]),
                scope("npm", &["@octo/lib"], &["@octo/new-lib"]),
            ],
        }
    }

    fn mint(keys: &UploadTokenKeys) -> String {
        keys.mint(&grant(), NOW).expect("minting").token
    }

    fn refused(keys: &UploadTokenKeys, token: &str) -> UploadTokenError {
        keys.verify(token, NOW).expect_err("the token must be refused")
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// (key id, payload, signature) of a token.
    fn segments(token: &str) -> (String, String, String) {
        let body = token.strip_prefix(PREFIX).expect("prefix");
        let parts: Vec<&str> = body.split('.').collect();
        assert_eq!(parts.len(), 3, "three segments");
        (parts[0].to_owned(), parts[1].to_owned(), parts[2].to_owned())
    }

    /// A payload as the gateway would mint it, as JSON to modify.
    fn payload() -> Value {
        json!({
            "v": 1,
            "jti": "0123456789abcdef0123456789abcdef",
            "iat": NOW,
            "exp": NOW + 900,
            "iss": ISS,
            "sub": "repo:octo-org/octo-repo:ref:refs/heads/main",
            "scopes": [{"registry": "pypi", "publisher": "p1", "projects": ["sampleproject"], "create": []}],
        })
    }

    /// Signs raw payload bytes with the keys' real signing key, as a properly signed token.
    fn sign_raw(keys: &UploadTokenKeys, payload: &[u8]) -> String {
        let input = format!("{PREFIX}{}.{}", keys.signing_key_id, b64(payload));
        let signature = keys.signing_key.sign(input.as_bytes());
        format!("{input}.{}", b64(signature.as_ref()))
    }

    fn signed(keys: &UploadTokenKeys, payload: &Value) -> String {
        sign_raw(keys, payload.to_string().as_bytes())
    }

    /// A payload written by hand (to hold what `json!` cannot, such as duplicate members), with
    /// `scope_extra` appended inside its scope and `extra` at its top level.
    fn handwritten(scope_extra: &str, extra: &str) -> String {
        let scope = format!(r#"{{"registry":"pypi","publisher":"p","projects":["a"],"create":[]{scope_extra}}}"#);
        let exp = NOW + 60;
        let head = format!(r#""v":1,"jti":"0123456789abcdef0123456789abcdef","iat":{NOW},"exp":{exp}"#);
        format!(r#"{{{head},"iss":"{ISS}","sub":"","scopes":[{scope}]{extra}}}"#)
    }

    fn with(member: &str, value: Value) -> Value {
        let mut p = payload();
        p[member] = value;
        p
    }

    #[test]
    fn mint_then_verify_round_trips() {
        let keys = keys();
        let minted = keys.mint(&grant(), NOW).expect("minting");
        assert!(minted.token.starts_with("pcul_k1."));
        assert!(looks_like_upload_token(&minted.token));
        assert!(minted.token.len() <= MAX_TOKEN_BYTES);
        assert_eq!(minted.expires_at, NOW + 900);
        assert_eq!(minted.id.len(), 32);
        assert!(minted
            .id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));

        let verified = keys.verify(&minted.token, NOW).expect("verification");
        assert_eq!(
            verified,
            UploadToken {
                id: minted.id.clone(),
                key_id: "k1".to_owned(),
                issued_at: NOW,
                expires_at: NOW + 900,
                issuer: ISS.to_owned(),
                subject: grant().subject,
                scopes: grant().scopes,
            }
        );
        // The payload is exactly the documented JSON.
        let (_, payload, _) = segments(&minted.token);
        let json: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json");
        let members: BTreeSet<&str> = json.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(
            members,
            BTreeSet::from(["v", "jti", "iat", "exp", "iss", "sub", "scopes"])
        );
        assert_eq!(json["v"], json!(1));
        assert_eq!(json["jti"], json!(minted.id));
        assert_eq!(
            json["scopes"][1],
            json!({
                "registry": "npm",
                "publisher": "npm-publisher",
                "projects": ["@octo/lib"],
                "create": ["@octo/new-lib"],
            })
        );
    }

    #[test]
    fn every_token_has_its_own_id_and_an_empty_subject_is_kept() {
        let keys = keys();
        let first = keys.mint(&grant(), NOW).expect("minting");
        let second = keys.mint(&grant(), NOW).expect("minting");
        assert_ne!(first.id, second.id);
        assert_ne!(first.token, second.token);
        let anonymous = Grant {
            subject: String::new(),
            ..grant()
        };
        let verified = keys
            .verify(&keys.mint(&anonymous, NOW).expect("minting").token, NOW)
            .expect("verification");
        assert_eq!(verified.subject, "");
    }

    #[test]
    fn tampered_payload_is_refused_by_the_signature() {
        let keys = keys();
        let token = mint(&keys);
        let (kid, payload, signature) = segments(&token);
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("utf-8");
        let edited = text.replace("\"sampleproject\"", "\"otherproject\"");
        assert_ne!(edited, text);
        let tampered = format!("{PREFIX}{kid}.{}.{signature}", b64(edited.as_bytes()));
        assert_eq!(refused(&keys, &tampered), UploadTokenError::BadSignature);
        // Changing the key id, or the prefix's case, also breaks the signature or the prefix.
        let renamed =
            UploadTokenKeys::new(vec![private("k1", &KEY_A), public("k2", &KEY_A)], "k1", LIFETIME).expect("keys");
        let relabelled = token.replacen("pcul_k1.", "pcul_k2.", 1);
        assert_eq!(refused(&renamed, &relabelled), UploadTokenError::BadSignature);
        assert_eq!(
            refused(&keys, &token.replacen("pcul_", "PCUL_", 1)),
            UploadTokenError::WrongPrefix
        );
    }

    #[test]
    fn payload_and_signature_of_two_tokens_do_not_mix() {
        let keys = keys();
        let narrow = Grant {
            scopes: vec![scope("pypi", &["harmless"], &[])],
            ..grant()
        };
        let (kid, narrow_payload, narrow_signature) = segments(&keys.mint(&narrow, NOW).expect("minting").token);
        let (_, wide_payload, wide_signature) = segments(&mint(&keys));
        for swapped in [
            format!("{PREFIX}{kid}.{wide_payload}.{narrow_signature}"),
            format!("{PREFIX}{kid}.{narrow_payload}.{wide_signature}"),
        ] {
            assert_eq!(refused(&keys, &swapped), UploadTokenError::BadSignature);
        }
    }

    #[test]
    fn a_signature_by_another_key_under_the_same_id_is_refused() {
        let keys = keys();
        let impostor = UploadTokenKeys::new(vec![private("k1", &KEY_B)], "k1", LIFETIME).expect("keys");
        let forged = mint(&impostor);
        assert!(impostor.verify(&forged, NOW).is_ok());
        assert_eq!(refused(&keys, &forged), UploadTokenError::BadSignature);
    }

    #[test]
    fn damaged_signatures_are_refused() {
        let keys = keys();
        let token = mint(&keys);
        let (kid, payload, signature) = segments(&token);
        let mut bytes = URL_SAFE_NO_PAD.decode(&signature).expect("base64");
        assert_eq!(bytes.len(), 64);
        bytes[5] ^= 1;
        for bad in [
            b64(&bytes),
            b64(&bytes[..63]),
            b64(&[bytes.as_slice(), &[0]].concat()),
            String::new(),
        ] {
            let damaged = format!("{PREFIX}{kid}.{payload}.{bad}");
            assert_eq!(refused(&keys, &damaged), UploadTokenError::BadSignature);
        }
    }

    #[test]
    fn non_canonical_base64_is_refused() {
        let keys = keys();
        let (kid, payload, signature) = segments(&mint(&keys));
        // The last character of an 86-character encoding of 64 bytes carries 2 data bits and 4
        // spare bits; setting a spare bit keeps the bytes but must not be accepted.
        let last = signature.as_bytes()[signature.len() - 1];
        let index = URL_ALPHABET.iter().position(|c| *c == last).expect("alphabet");
        assert!(index.is_multiple_of(16), "spare bits of a canonical encoding are zero");
        let respelled = format!(
            "{}{}",
            &signature[..signature.len() - 1],
            char::from(URL_ALPHABET[index + 1])
        );
        assert_eq!(
            refused(&keys, &format!("{PREFIX}{kid}.{payload}.{respelled}")),
            UploadTokenError::Base64 { part: Part::Signature }
        );
        for bad in [
            format!("{PREFIX}{kid}.{payload}=.{signature}"),
            format!("{PREFIX}{kid}.{payload}.{signature}=="),
            format!("{PREFIX}{kid}.{payload}+/.{signature}"),
            format!("{PREFIX}{kid}.{payload}.{signature}!"),
            format!("{PREFIX}{kid}.{payload}*.{signature}"),
        ] {
            assert_eq!(refused(&keys, &bad).code(), "base64", "{bad}");
        }
        assert_eq!(
            refused(&keys, &format!("{PREFIX}{kid}.{payload}!.{signature}")),
            UploadTokenError::Base64 { part: Part::Payload }
        );
    }

    const URL_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    #[test]
    fn unknown_and_malformed_key_ids_are_refused() {
        let keys = keys();
        let (_, payload, signature) = segments(&mint(&keys));
        assert_eq!(
            refused(&keys, &format!("{PREFIX}k9.{payload}.{signature}")),
            UploadTokenError::UnknownKey {
                key_id: "k9".to_owned()
            }
        );
        for bad in ["", "k 1", "k/1", "ké", &"k".repeat(33)] {
            assert_eq!(
                refused(&keys, &format!("{PREFIX}{bad}.{payload}.{signature}")).code(),
                "key_id_malformed",
                "{bad:?}"
            );
        }
        let long = "x".repeat(1000);
        match refused(&keys, &format!("{PREFIX}{long}.{payload}.{signature}")) {
            UploadTokenError::MalformedKeyId { key_id } => assert_eq!(key_id.chars().count(), MAX_ECHO_CHARS + 1),
            other => panic!("expected a malformed key id, got {other:?}"),
        }
        // The longest valid id is accepted as syntax (and then unknown).
        let longest = "K".repeat(MAX_KEY_ID_LEN);
        assert_eq!(
            refused(&keys, &format!("{PREFIX}{longest}.{payload}.{signature}")).code(),
            "unknown_key"
        );
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_while_the_old_key_is_listed() {
        let old = keys();
        let old_token = mint(&old);

        // The new key signs; the old one is still listed, by its public key only.
        let rotated =
            UploadTokenKeys::new(vec![public("k1", &KEY_A), private("k2", &KEY_B)], "k2", LIFETIME).expect("keys");
        assert_eq!(rotated.signing_key_id(), "k2");
        assert_eq!(rotated.key_ids().collect::<Vec<_>>(), ["k1", "k2"]);
        assert_eq!(rotated.verify(&old_token, NOW).expect("old token").key_id, "k1");
        let new_token = mint(&rotated);
        assert!(new_token.starts_with("pcul_k2."));
        assert_eq!(rotated.verify(&new_token, NOW).expect("new token").key_id, "k2");
        // The old configuration does not know the new key.
        assert_eq!(refused(&old, &new_token).code(), "unknown_key");

        // Once the old key is removed its tokens are refused.
        let retired = UploadTokenKeys::new(vec![private("k2", &KEY_B)], "k2", LIFETIME).expect("keys");
        assert_eq!(
            refused(&retired, &old_token),
            UploadTokenError::UnknownKey {
                key_id: "k1".to_owned()
            }
        );
        assert!(retired.verify(&new_token, NOW).is_ok());

        // A key listed with its private key but not signing also only verifies.
        let both_private =
            UploadTokenKeys::new(vec![private("k1", &KEY_A), private("k2", &KEY_B)], "k2", LIFETIME).expect("keys");
        assert!(both_private.verify(&old_token, NOW).is_ok());
        assert!(mint(&both_private).starts_with("pcul_k2."));
    }

    #[test]
    fn tokens_expire_at_exactly_exp() {
        let keys = keys();
        let minted = keys.mint(&grant(), NOW).expect("minting");
        assert!(keys.verify(&minted.token, minted.expires_at - 1).is_ok());
        assert_eq!(
            keys.verify(&minted.token, minted.expires_at),
            Err(UploadTokenError::Expired {
                exp: minted.expires_at,
                now: minted.expires_at
            })
        );
        assert_eq!(
            keys.verify(&minted.token, i64::MAX).map_err(|e| e.code()),
            Err("expired")
        );
    }

    #[test]
    fn tokens_from_the_future_have_sixty_seconds_of_skew() {
        let keys = keys();
        let ahead = |secs: i64| keys.mint(&grant(), NOW + secs).expect("minting").token;
        assert!(keys.verify(&ahead(ISSUED_AT_SKEW_SECS), NOW).is_ok());
        assert_eq!(
            keys.verify(&ahead(ISSUED_AT_SKEW_SECS + 1), NOW),
            Err(UploadTokenError::NotYetValid {
                iat: NOW + 61,
                now: NOW
            })
        );
    }

    #[test]
    fn inconsistent_times_are_refused() {
        let keys = keys();
        let times = |iat: i64, exp: i64| {
            let mut p = with("iat", json!(iat));
            p["exp"] = json!(exp);
            keys.verify(&signed(&keys, &p), NOW)
        };
        assert_eq!(
            times(NOW, NOW),
            Err(UploadTokenError::InvalidLifetime { iat: NOW, exp: NOW })
        );
        assert_eq!(times(NOW, NOW - 1).map_err(|e| e.code()), Err("invalid_lifetime"));
        assert_eq!(
            times(NOW - 10, NOW + MAX_LIFETIME_SECS).map_err(|e| e.code()),
            Err("invalid_lifetime")
        );
        assert!(times(NOW - 10, NOW - 10 + MAX_LIFETIME_SECS).is_ok());
        assert_eq!(times(i64::MIN, i64::MAX).map_err(|e| e.code()), Err("invalid_lifetime"));
        for (member, value) in [
            ("iat", json!(1.75e9)),
            ("exp", json!((NOW + 60).to_string())),
            ("exp", json!(u64::MAX)),
            ("iat", json!(null)),
        ] {
            assert_eq!(
                refused(&keys, &signed(&keys, &with(member, value.clone()))).code(),
                "malformed",
                "{member} = {value}"
            );
        }
    }

    #[test]
    fn the_prefix_is_required() {
        let keys = keys();
        let token = mint(&keys);
        for bad in [
            token.strip_prefix(PREFIX).expect("prefix").to_owned(),
            format!("pypi-{}", token.strip_prefix(PREFIX).expect("prefix")),
            format!(" {token}"),
            "pcul".to_owned(),
            String::new(),
        ] {
            assert_eq!(refused(&keys, &bad), UploadTokenError::WrongPrefix);
            assert!(!looks_like_upload_token(&bad));
        }
        assert!(looks_like_upload_token("pcul_"));
        assert!(!looks_like_upload_token("Pcul_k1.x.y"));
    }

    #[test]
    fn exactly_three_segments_are_required() {
        let keys = keys();
        let token = mint(&keys);
        let (kid, payload, signature) = segments(&token);
        for (bad, found) in [
            (format!("{PREFIX}{kid}.{payload}"), 2),
            (format!("{PREFIX}{kid}.{payload}{signature}"), 2),
            (format!("{token}.x"), 4),
            (format!("{PREFIX}{kid}.{payload}.{signature}."), 4),
            (format!("{PREFIX}{kid}..{payload}.{signature}"), 4),
            (PREFIX.to_owned(), 1),
            (format!("{PREFIX}{kid}"), 1),
        ] {
            assert_eq!(refused(&keys, &bad), UploadTokenError::Segments { found }, "{bad}");
        }
    }

    #[test]
    fn oversized_tokens_are_refused_before_anything_else() {
        let keys = keys();
        let token = mint(&keys);
        let padded = format!("{token}{}", "A".repeat(MAX_TOKEN_BYTES));
        assert_eq!(
            refused(&keys, &padded),
            UploadTokenError::TooLarge {
                len: padded.len(),
                max: MAX_TOKEN_BYTES
            }
        );
        assert_eq!(refused(&keys, &"!".repeat(MAX_TOKEN_BYTES + 1)).code(), "too_large");
        // A properly signed token of exactly the limit is parsed.
        let mut p = payload();
        let base = signed(&keys, &p).len();
        // Each 3 bytes of JSON take 4 characters of base64; fill up to the limit exactly.
        let filler = (MAX_TOKEN_BYTES - base) / 4 * 3;
        p["scopes"][0]["projects"] = json!(["sampleproject", "x".repeat(filler - 3)]);
        let near = signed(&keys, &p);
        assert!(
            near.len() <= MAX_TOKEN_BYTES && near.len() > MAX_TOKEN_BYTES - 8,
            "{}",
            near.len()
        );
        assert!(keys.verify(&near, NOW).is_ok());
    }

    #[test]
    fn minting_refuses_grants_too_large_for_a_token() {
        let keys = keys();
        let projects: Vec<String> = (0..200).map(|i| format!("project-with-a-long-name-{i}")).collect();
        let huge = Grant {
            scopes: vec![Scope {
                projects,
                ..scope("pypi", &[], &[])
            }],
            ..grant()
        };
        let err = keys.mint(&huge, NOW).expect_err("too large");
        assert_eq!(err.code(), "invalid_grant");
        assert!(err.to_string().contains("4096-byte limit"), "{err}");
    }

    #[test]
    fn duplicate_json_members_are_refused_even_when_signed() {
        let keys = keys();
        // Correctly signed with the real key: only the duplicate check can refuse these.
        let top = handwritten("", r#","iss":"https://evil.example""#);
        let nested = handwritten(r#","projects":["everything"]"#, "");
        for payload in [top, nested] {
            let err = refused(&keys, &sign_raw(&keys, payload.as_bytes()));
            assert!(
                matches!(err, UploadTokenError::Malformed { ref reason } if reason.contains("duplicate member")),
                "{err:?}"
            );
        }
        // The same payload without the duplicate verifies: the signature was fine.
        let single = handwritten("", "");
        assert!(keys.verify(&sign_raw(&keys, single.as_bytes()), NOW).is_ok());
    }

    #[test]
    fn unknown_and_missing_payload_members_are_refused() {
        let keys = keys();
        assert!(keys.verify(&signed(&keys, &payload()), NOW).is_ok());
        let mut unknown_scope_member = payload();
        unknown_scope_member["scopes"][0]["admin"] = json!(true);
        for bad in [with("admin", json!(true)), unknown_scope_member] {
            let err = refused(&keys, &signed(&keys, &bad));
            assert!(
                matches!(err, UploadTokenError::Malformed { ref reason } if reason.contains("unknown field")),
                "{err:?}"
            );
        }
        for member in ["jti", "iat", "exp", "iss", "sub", "scopes"] {
            let mut p = payload();
            p.as_object_mut().expect("object").remove(member);
            assert_eq!(refused(&keys, &signed(&keys, &p)).code(), "malformed", "{member}");
        }
        let mut no_create = payload();
        no_create["scopes"][0].as_object_mut().expect("object").remove("create");
        assert_eq!(refused(&keys, &signed(&keys, &no_create)).code(), "malformed");
    }

    #[test]
    fn only_version_one_is_accepted() {
        let keys = keys();
        assert_eq!(
            refused(&keys, &signed(&keys, &with("v", json!(2)))),
            UploadTokenError::UnsupportedVersion { version: 2 }
        );
        assert_eq!(
            refused(&keys, &signed(&keys, &with("v", json!(0)))),
            UploadTokenError::UnsupportedVersion { version: 0 }
        );
        // A future version with members this one does not know is still reported as a version.
        let mut v2 = with("v", json!(2));
        v2["audience"] = json!("somewhere");
        assert_eq!(refused(&keys, &signed(&keys, &v2)).code(), "unsupported_version");
        let mut no_version = payload();
        no_version.as_object_mut().expect("object").remove("v");
        for bad in [
            no_version,
            with("v", json!("1")),
            with("v", json!(1.0)),
            with("v", json!(-1)),
        ] {
            assert_eq!(refused(&keys, &signed(&keys, &bad)).code(), "malformed", "{bad}");
        }
    }

    #[test]
    fn payloads_that_are_not_one_object_are_refused() {
        let keys = keys();
        let as_array = json!([1, "0123456789abcdef0123456789abcdef", NOW, NOW + 60, ISS, "", []]);
        for bad in [
            as_array.to_string(),
            "\"text\"".to_owned(),
            "{}".to_owned(),
            format!("{} {{}}", payload()),
            "{".to_owned(),
            String::new(),
        ] {
            assert_eq!(
                refused(&keys, &sign_raw(&keys, bad.as_bytes())).code(),
                "malformed",
                "{bad}"
            );
        }
    }

    #[test]
    fn jti_and_iss_must_be_well_formed() {
        let keys = keys();
        for jti in [
            "",
            "0123456789ABCDEF0123456789ABCDEF",
            "01234567-89ab-cdef-0123-456789abcdef",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdeg",
        ] {
            assert_eq!(
                refused(&keys, &signed(&keys, &with("jti", json!(jti)))).code(),
                "malformed",
                "{jti}"
            );
        }
        assert_eq!(
            refused(&keys, &signed(&keys, &with("iss", json!("")))).code(),
            "malformed"
        );
    }

    #[test]
    fn signed_payloads_must_have_valid_scopes() {
        let keys = keys();
        let pypi = json!({"registry": "pypi", "publisher": "p", "projects": ["a"], "create": []});
        for scopes in [
            json!([]),
            json!([pypi.clone(), pypi.clone()]),
            json!([{"registry": "", "publisher": "p", "projects": ["a"], "create": []}]),
            json!([{"registry": "pypi", "publisher": "", "projects": ["a"], "create": []}]),
            json!([{"registry": "pypi", "publisher": "p", "projects": [], "create": []}]),
            json!([{"registry": "pypi", "publisher": "p", "projects": [""], "create": []}]),
        ] {
            let err = refused(&keys, &signed(&keys, &with("scopes", scopes.clone())));
            assert_eq!(err.code(), "invalid_scopes", "{scopes}");
        }
        // A pending-publisher scope may name its project only in "create".
        let pending = json!([{"registry": "pypi", "publisher": "p", "projects": [], "create": ["new"]}]);
        let token = keys
            .verify(&signed(&keys, &with("scopes", pending)), NOW)
            .expect("pending scope");
        assert!(token.may_create("pypi", "new"));
    }

    #[test]
    fn minting_refuses_invalid_grants() {
        let keys = keys();
        let with_scopes = |scopes: Vec<Scope>| Grant { scopes, ..grant() };
        let mut no_publisher = scope("pypi", &["a"], &[]);
        no_publisher.publisher.clear();
        for (bad, fragment) in [
            (with_scopes(vec![]), "no scopes"),
            (with_scopes(vec![scope("pypi", &[], &[])]), "names no project"),
            (with_scopes(vec![scope("pypi", &["a", ""], &[])]), "empty project name"),
            (with_scopes(vec![scope("pypi", &["a"], &[""])]), "empty project name"),
            (with_scopes(vec![scope("", &["a"], &[])]), "empty registry"),
            (with_scopes(vec![no_publisher]), "empty publisher"),
            (
                with_scopes(vec![scope("pypi", &["a"], &[]), scope("pypi", &["b"], &[])]),
                "more than one scope for publisher",
            ),
            (
                Grant {
                    issuer: String::new(),
                    ..grant()
                },
                "issuer is empty",
            ),
        ] {
            let err = keys.mint(&bad, NOW).expect_err("refused");
            assert_eq!(err.code(), "invalid_grant");
            assert!(err.to_string().contains(fragment), "{err}");
        }
        assert_eq!(
            keys.mint(&grant(), i64::MAX).map_err(|e| e.code()),
            Err("invalid_grant")
        );
    }

    #[test]
    fn allows_and_may_create_follow_the_scopes() {
        let keys = keys();
        let token = keys.verify(&mint(&keys), NOW).expect("verification");
        assert_eq!(
            token.scope_for("npm").map(|s| s.publisher.as_str()),
            Some("npm-publisher")
        );
        assert_eq!(token.scope_for("cargo"), None);
        // Existing projects: upload, not create.
        assert!(token.allows("pypi", "sampleproject"));
        assert!(token.allows("pypi", "sampleproject-extras"));
        assert!(!token.may_create("pypi", "sampleproject"));
        // Projects to create: both.
        assert!(token.allows("npm", "@octo/new-lib"));
        assert!(token.may_create("npm", "@octo/new-lib"));
        assert!(token.allows("npm", "@octo/lib"));
        assert!(!token.may_create("npm", "@octo/lib"));
        // Never across registries, never by prefix or case, never unlisted.
        assert!(!token.allows("npm", "sampleproject"));
        assert!(!token.allows("pypi", "@octo/lib"));
        assert!(!token.may_create("pypi", "@octo/new-lib"));
        assert!(!token.allows("pypi", "SampleProject"));
        assert!(!token.allows("pypi", "sample"));
        assert!(!token.allows("pypi", ""));
        assert!(!token.allows("cargo", "sampleproject"));
        assert!(!token.may_create("cargo", "sampleproject"));
    }

    #[test]
    fn the_signing_key_needs_its_private_key() {
        assert_eq!(
            key_error(vec![public("k1", &KEY_A)], "k1"),
            KeyError::SigningKeyNotPrivate { id: "k1".to_owned() }
        );
        assert_eq!(
            key_error(vec![private("k1", &KEY_A)], "k2"),
            KeyError::UnknownSigningKey { id: "k2".to_owned() }
        );
        assert_eq!(key_error(vec![], "k1").code(), "signing_key_unknown");
    }

    #[test]
    fn key_ids_must_be_valid_and_unique() {
        assert_eq!(
            key_error(vec![private("k1", &KEY_A), public("k1", &KEY_B)], "k1"),
            KeyError::DuplicateId { id: "k1".to_owned() }
        );
        for bad in ["", "k.1", "k 1", "clé", &"k".repeat(33)] {
            assert_eq!(
                key_error(vec![private(bad, &KEY_A)], bad).code(),
                "key_id_invalid",
                "{bad:?}"
            );
        }
        let longest = "a-Z_0".repeat(6) + "xy";
        assert_eq!(longest.len(), MAX_KEY_ID_LEN);
        let keys = UploadTokenKeys::new(vec![private(&longest, &KEY_A)], &longest, LIFETIME).expect("keys");
        assert!(keys.verify(&mint(&keys), NOW).is_ok());
    }

    #[test]
    fn each_key_has_exactly_one_kind_of_material() {
        let none = KeyMaterial {
            id: "k1".to_owned(),
            ..KeyMaterial::default()
        };
        assert_eq!(
            key_error(vec![none], "k1"),
            KeyError::NoMaterial { id: "k1".to_owned() }
        );
        let both = KeyMaterial {
            public_spki_pem: Some(KEY_A.1.as_bytes().to_vec()),
            ..private("k1", &KEY_A)
        };
        assert_eq!(
            key_error(vec![both], "k1"),
            KeyError::BothMaterials { id: "k1".to_owned() }
        );
    }

    #[test]
    fn lifetime_is_whole_seconds_from_one_minute_to_a_day() {
        for ok in [MIN_LIFETIME, MAX_LIFETIME, Duration::from_secs(3600)] {
            let keys = UploadTokenKeys::new(vec![private("k1", &KEY_A)], "k1", ok).expect("lifetime");
            assert_eq!(keys.lifetime(), ok);
            let minted = keys.mint(&grant(), NOW).expect("minting");
            assert_eq!(minted.expires_at, NOW + i64::try_from(ok.as_secs()).expect("small"));
            assert!(keys.verify(&minted.token, NOW).is_ok());
        }
        for bad in [
            Duration::ZERO,
            Duration::from_secs(59),
            MAX_LIFETIME + Duration::from_secs(1),
            Duration::from_millis(90_500),
        ] {
            assert_eq!(
                UploadTokenKeys::new(vec![private("k1", &KEY_A)], "k1", bad).map(|_| ()),
                Err(KeyError::Lifetime { lifetime: bad })
            );
        }
    }

    #[test]
    fn keys_of_other_types_are_refused_with_a_clear_message() {
        let ec = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256");
        let ec_private = pem_encode("PRIVATE KEY", ec.to_pkcs8v1().expect("PKCS#8").as_ref());
        let ec_public = pem_encode("PUBLIC KEY", ec.public_key().as_der().expect("SPKI").as_ref());
        let err = key_error(vec![KeyMaterial::private("k1", ec_private)], "k1");
        assert_eq!(
            err,
            KeyError::WrongKeyType {
                id: "k1".to_owned(),
                part: KeyPart::Private,
                found: "an EC key"
            }
        );
        assert!(err.to_string().contains("not an Ed25519 key"), "{err}");
        assert_eq!(
            key_error(vec![private("k1", &KEY_A), KeyMaterial::public("k0", ec_public)], "k1"),
            KeyError::WrongKeyType {
                id: "k0".to_owned(),
                part: KeyPart::Public,
                found: "an EC key"
            }
        );
        // Labels of other key formats are recognised without decoding them.
        for (label, found) in [
            ("RSA PRIVATE KEY", "an RSA key (PKCS#1)"),
            ("EC PRIVATE KEY", "an EC key (SEC1)"),
        ] {
            let pem = pem_encode(label, b"not really a key");
            assert_eq!(
                key_error(vec![KeyMaterial::private("k1", pem)], "k1"),
                KeyError::WrongKeyType {
                    id: "k1".to_owned(),
                    part: KeyPart::Private,
                    found
                }
            );
        }
        // An RSA SubjectPublicKeyInfo (the OID is enough to name it).
        let rsa_spki: &[u8] = &[
            0x30, 0x12, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00, 0x03,
            0x01, 0x00,
        ];
        let err = key_error(
            vec![
                private("k1", &KEY_A),
                KeyMaterial::public("k0", pem_encode("PUBLIC KEY", rsa_spki)),
            ],
            "k1",
        );
        assert!(
            matches!(
                err,
                KeyError::WrongKeyType {
                    found: "an RSA key",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_key_files_are_refused() {
        let cases: Vec<(KeyMaterial, &str)> = vec![
            // The public key in the private key's place, and the reverse.
            (KeyMaterial::private("k1", KEY_A.1.as_bytes()), "key_pem_invalid"),
            (KeyMaterial::public("k0", KEY_A.0.as_bytes()), "key_pem_invalid"),
            (KeyMaterial::private("k1", "not a PEM file"), "key_pem_invalid"),
            (KeyMaterial::private("k1", ""), "key_pem_invalid"),
            (
                KeyMaterial::private("k1", format!("{}{}", KEY_A.0, KEY_B.0)),
                "key_pem_invalid",
            ),
            (
                KeyMaterial::private("k1", KEY_A.0.replace("-----END PRIVATE KEY-----\n", "")),
                "key_pem_invalid",
            ),
            (
                KeyMaterial::private("k1", KEY_A.0.replacen("MC", "M!", 1)),
                "key_pem_invalid",
            ),
            (
                KeyMaterial::private("k1", pem_encode("CERTIFICATE", b"x")),
                "key_pem_invalid",
            ),
            (
                KeyMaterial::private("k1", pem_encode("OPENSSH PRIVATE KEY", b"x")),
                "key_pem_invalid",
            ),
            (
                KeyMaterial::private("k1", pem_encode("PRIVATE KEY", b"\x30\x00")),
                "key_invalid",
            ),
            (
                KeyMaterial::public("k0", pem_encode("PUBLIC KEY", b"\x04\x01")),
                "key_invalid",
            ),
        ];
        for (material, code) in cases {
            let keys = if material.id == "k0" {
                vec![private("k1", &KEY_A), material.clone()]
            } else {
                vec![material.clone()]
            };
            let err = key_error(keys, "k1");
            assert_eq!(err.code(), code, "{material:?}: {err}");
            // Messages never quote the key file.
            assert!(!err.to_string().contains(&KEY_A.0[28..60]), "{err}");
        }
        // A truncated Ed25519 private key and a public key with a byte too many.
        let der = |pem: &str| {
            rustls_pki_types::pem::from_buf(&mut pem.as_bytes())
                .expect("pem")
                .expect("section")
                .1
        };
        let private_der = der(&KEY_A.0);
        let short = pem_encode("PRIVATE KEY", &private_der[..private_der.len() - 1]);
        assert_eq!(
            key_error(vec![KeyMaterial::private("k1", short)], "k1").code(),
            "key_invalid"
        );
        let mut public_der = der(&KEY_A.1);
        public_der.push(0);
        let long = pem_encode("PUBLIC KEY", &public_der);
        assert_eq!(
            key_error(vec![private("k1", &KEY_A), KeyMaterial::public("k0", long)], "k1").code(),
            "key_invalid"
        );
    }

    #[test]
    fn generated_keys_load_back_and_interoperate() {
        let (private_pem, public_pem) = generate_key_pem().expect("generation");
        for (pem, label) in [(&private_pem, "PRIVATE KEY"), (&public_pem, "PUBLIC KEY")] {
            let lines: Vec<&str> = pem.lines().collect();
            assert_eq!(
                lines.first().copied(),
                Some(format!("-----BEGIN {label}-----").as_str())
            );
            assert_eq!(lines.last().copied(), Some(format!("-----END {label}-----").as_str()));
            assert!(lines.iter().all(|line| line.len() <= 64), "{pem}");
            assert!(pem.ends_with('\n'));
        }
        // Sizes of the RFC 8410 encodings: PKCS#8 v1 (as openssl writes) and SPKI.
        assert_eq!(private_pem.lines().count(), 3);
        assert!(private_pem.contains("\nMC4CAQAwBQYDK2VwBCIEI"), "{private_pem}");
        assert!(public_pem.contains("\nMCowBQYDK2VwAyEA"), "{public_pem}");

        let signer = UploadTokenKeys::new(
            vec![KeyMaterial::private("gen", private_pem.as_bytes())],
            "gen",
            LIFETIME,
        )
        .expect("private key loads");
        let token = signer.mint(&grant(), NOW).expect("minting");
        // A gateway holding only the public key verifies it (CRLF line endings too).
        let verifier = UploadTokenKeys::new(
            vec![
                KeyMaterial::public("gen", public_pem.replace('\n', "\r\n")),
                private("k1", &KEY_A),
            ],
            "k1",
            LIFETIME,
        )
        .expect("public key loads");
        assert_eq!(verifier.verify(&token.token, NOW).expect("verification").id, token.id);
        // PKCS#8 v2 (with the public key) loads too.
        let v2 = signer.signing_key.to_pkcs8().expect("PKCS#8 v2");
        let v2_keys = UploadTokenKeys::new(
            vec![KeyMaterial::private("gen", pem_encode("PRIVATE KEY", v2.as_ref()))],
            "gen",
            LIFETIME,
        )
        .expect("v2 loads");
        assert!(v2_keys.verify(&token.token, NOW).is_ok());
    }

    #[test]
    fn debug_output_holds_no_key_material_or_token() {
        let keys =
            UploadTokenKeys::new(vec![private("k1", &KEY_A), public("k2", &KEY_B)], "k1", LIFETIME).expect("keys");
        let debug = format!("{keys:?}");
        assert!(debug.contains("k1") && debug.contains("k2"), "{debug}");
        let public_hex = hex::encode(keys.signing_key.public_key().as_ref());
        for pem in [&KEY_A.0, &KEY_A.1, &KEY_B.1] {
            for line in pem.lines().filter(|l| !l.starts_with("-----")) {
                assert!(!debug.contains(&line[..16]), "{debug}");
            }
        }
        assert!(!debug.contains(&public_hex[..16]), "{debug}");

        let material = format!("{:?}", private("k1", &KEY_A));
        assert!(
            material.contains("<redacted>") && !material.contains("BEGIN"),
            "{material}"
        );
        let minted = keys.mint(&grant(), NOW).expect("minting");
        let minted_debug = format!("{minted:?}");
        assert!(minted_debug.contains(&minted.id), "{minted_debug}");
        assert!(!minted_debug.contains(PREFIX), "{minted_debug}");
        let verified = format!("{:?}", keys.verify(&minted.token, NOW).expect("verification"));
        let (_, _, signature) = segments(&minted.token);
        assert!(!verified.contains(&signature[..16]));
    }

    #[test]
    fn error_codes_are_distinct_and_messages_bounded() {
        let token_errors = [
            UploadTokenError::TooLarge { len: 0, max: 0 },
            UploadTokenError::WrongPrefix,
            UploadTokenError::Segments { found: 0 },
            UploadTokenError::MalformedKeyId { key_id: String::new() },
            UploadTokenError::UnknownKey { key_id: String::new() },
            UploadTokenError::Base64 { part: Part::Payload },
            UploadTokenError::BadSignature,
            UploadTokenError::Malformed { reason: String::new() },
            UploadTokenError::UnsupportedVersion { version: 0 },
            UploadTokenError::InvalidLifetime { iat: 0, exp: 0 },
            UploadTokenError::Expired { exp: 0, now: 0 },
            UploadTokenError::NotYetValid { iat: 0, now: 0 },
            UploadTokenError::InvalidScopes { reason: String::new() },
            UploadTokenError::InvalidGrant { reason: String::new() },
            UploadTokenError::Signing,
        ];
        let key_errors = [
            KeyError::InvalidId { id: String::new() },
            KeyError::DuplicateId { id: String::new() },
            KeyError::NoMaterial { id: String::new() },
            KeyError::BothMaterials { id: String::new() },
            KeyError::Pem {
                id: String::new(),
                part: KeyPart::Private,
                reason: String::new(),
            },
            KeyError::WrongKeyType {
                id: String::new(),
                part: KeyPart::Private,
                found: "",
            },
            KeyError::InvalidKey {
                id: String::new(),
                part: KeyPart::Public,
                format: "",
            },
            KeyError::UnknownSigningKey { id: String::new() },
            KeyError::SigningKeyNotPrivate { id: String::new() },
            KeyError::Lifetime {
                lifetime: Duration::ZERO,
            },
            KeyError::Generation,
        ];
        let codes: BTreeSet<&str> = token_errors
            .iter()
            .map(UploadTokenError::code)
            .chain(key_errors.iter().map(KeyError::code))
            .collect();
        assert_eq!(codes.len(), token_errors.len() + key_errors.len());
        assert!(codes.iter().all(|c| c
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')));
        assert!(token_errors.iter().all(|e| !e.to_string().is_empty()));
        assert!(key_errors.iter().all(|e| !e.to_string().is_empty()));

        // Attacker-supplied member names are shortened too.
        let keys = keys();
        let long = "m".repeat(500);
        let payload = format!(r#"{{"{long}":1,"{long}":2}}"#);
        let err = refused(&keys, &sign_raw(&keys, payload.as_bytes()));
        assert!(err.to_string().chars().count() < 400, "{err}");
        assert!(!err.to_string().contains(&"m".repeat(MAX_ECHO_CHARS + 1)), "{err}");
    }
}
