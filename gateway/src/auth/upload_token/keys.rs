//! Upload token keys: the [`KeyMaterial`] read from the configured key files, turned into the
//! verifying keys and the signing key by [`UploadTokenKeys::new`], and new key pairs for
//! `portcullis keygen` ([`generate_key_pem`]). Only Ed25519 is accepted; any other key is refused
//! with a message naming what it is, and messages never quote a key file beyond its labels.
//!
//! Two small readers are hand-written: the scan of a PEM file's `-----BEGIN` labels and the DER
//! walk to a key's algorithm OID. Both exist only to say what a refused key is. aws-lc-rs parses
//! the keys (and decides whether they are valid), but of a key of another algorithm it says only
//! that the algorithm is wrong; rustls-pki-types' PEM reader silently skips a section whose label
//! it does not know (`OPENSSH PRIVATE KEY` among them), so the labels are read first. The DER
//! walk reads one OID two or three headers deep, for that message only; the `spki` and `pkcs8`
//! crates could read it too, but they are not dependencies of the gateway itself (`spki` comes in
//! only through portcullis-verify), and the walk is some 40 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{self as sig, Ed25519KeyPair, KeyPair as _, ParsedPublicKey};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rustls_pki_types::pem::{self, PemObject as _, SectionKind};

use super::{echo, is_valid_key_id, UploadTokenKeys, MAX_LIFETIME, MIN_LIFETIME};

/// The DER `SubjectPublicKeyInfo` of an Ed25519 key, up to the 32 key bytes (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

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
pub(super) fn pem_encode(label: &str, der: &[u8]) -> String {
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
