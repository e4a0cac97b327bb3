//! An issuer's key set: parsing a JWKS document (RFC 7517) into the [`JwkSet`] that verifies
//! its tokens. The whole set is refused when it is too large, has keys without or with a shared
//! `kid`, a symmetric key, private material, or a malformed or weak key of a supported type; keys
//! of other types, curves or uses are kept (their `kid` known) but verify nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use super::{echo, Algorithm, MAX_JWKS_BYTES, MAX_JWKS_KEYS};

/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (the limit of the aws-lc-rs verifiers used).
const MAX_RSA_BITS: usize = 8192;

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
pub(super) enum KeyMaterial {
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
    /// The key's type and curve, for messages.
    pub(super) fn kind(&self) -> &'static str {
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
    pub(super) alg: Option<String>,
    pub(super) material: KeyMaterial,
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

/// The big-endian integer without its leading zero octets.
pub(super) fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
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
