//! Public keys and signature checks on RustCrypto primitives: ECDSA P-256 and P-384 (with
//! SHA-256 or SHA-384), and Ed25519. Keys come as DER SubjectPublicKeyInfo.

use const_oid::ObjectIdentifier;
use sha2::{Digest, Sha256, Sha384, Sha512};
use spki::{DecodePublicKey, SubjectPublicKeyInfoRef};

/// A hash function used with a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlg {
    /// Hashes `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha256 => Sha256::digest(data).to_vec(),
            HashAlg::Sha384 => Sha384::digest(data).to_vec(),
            HashAlg::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// A verification key.
#[derive(Debug, Clone)]
pub enum PublicKey {
    /// ECDSA over P-256 (the SEC1 uncompressed point).
    P256(EcPoint),
    /// ECDSA over P-384 (the SEC1 uncompressed point).
    P384(EcPoint),
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// RSA (PKCS#1 v1.5 signatures), as some private CAs use.
    Rsa(rsa::RsaPublicKey),
}

/// A validated elliptic-curve public point (SEC1 encoding); ECDSA runs on aws-lc-rs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcPoint(Vec<u8>);

/// Why a key or signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is malformed or of an unsupported type.
    #[error("unsupported or malformed public key: {0}")]
    Key(String),
    /// The signature is malformed.
    #[error("malformed signature")]
    MalformedSignature,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The hash/key combination is not allowed.
    #[error("{0}")]
    Unsupported(&'static str),
}

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const P256_CURVE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384_CURVE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

fn ecdsa_algorithm(p384: bool, hash: HashAlg) -> &'static aws_lc_rs::signature::EcdsaVerificationAlgorithm {
    use aws_lc_rs::signature as sig;
    match (p384, hash) {
        (false, HashAlg::Sha256) => &sig::ECDSA_P256_SHA256_ASN1,
        (false, HashAlg::Sha384) => &sig::ECDSA_P256_SHA384_ASN1,
        (false, HashAlg::Sha512) => &sig::ECDSA_P256_SHA512_ASN1,
        (true, HashAlg::Sha256) => &sig::ECDSA_P384_SHA256_ASN1,
        (true, HashAlg::Sha384) => &sig::ECDSA_P384_SHA384_ASN1,
        (true, HashAlg::Sha512) => &sig::ECDSA_P384_SHA512_ASN1,
    }
}

fn ec_point(info: &SubjectPublicKeyInfoRef<'_>, p384: bool) -> Result<EcPoint, KeyError> {
    let point = info
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| KeyError::Key("the EC public key is not a whole number of bytes".into()))?;
    aws_lc_rs::signature::UnparsedPublicKey::new(ecdsa_algorithm(p384, HashAlg::Sha256), point)
        .parse()
        .map_err(|_| KeyError::Key("the EC public key is not a valid point on its curve".into()))?;
    Ok(EcPoint(point.to_vec()))
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let info = SubjectPublicKeyInfoRef::try_from(der).map_err(|e| KeyError::Key(e.to_string()))?;
        let alg = info.algorithm.oid;
        if alg == EC_PUBLIC_KEY {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|e| KeyError::Key(format!("EC key without a named curve: {e}")))?;
            if curve == P256_CURVE {
                return ec_point(&info, false).map(PublicKey::P256);
            }
            if curve == P384_CURVE {
                return ec_point(&info, true).map(PublicKey::P384);
            }
            return Err(KeyError::Key(format!("unsupported curve {curve}")));
        }
        if alg == ED25519 {
            return ed25519_dalek::VerifyingKey::from_public_key_der(der)
                .map(PublicKey::Ed25519)
                .map_err(|e| KeyError::Key(e.to_string()));
        }
        if alg == RSA_ENCRYPTION {
            let key = rsa::RsaPublicKey::from_public_key_der(der).map_err(|e| KeyError::Key(e.to_string()))?;
            if rsa::traits::PublicKeyParts::size(&key) < 256 {
                return Err(KeyError::Key("RSA keys shorter than 2048 bits are not accepted".into()));
            }
            return Ok(PublicKey::Rsa(key));
        }
        Err(KeyError::Key(format!("unsupported key algorithm {alg}")))
    }

    /// Parses a PEM `PUBLIC KEY`.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = pem_decode(pem).ok_or_else(|| KeyError::Key("not a PEM document".into()))?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::Key(format!("expected a PUBLIC KEY, found {label}")));
        }
        Self::from_spki_der(&der)
    }

    /// The hash this key's signatures use by default (P-256: SHA-256, P-384: SHA-384).
    pub fn default_hash(&self) -> HashAlg {
        match self {
            PublicKey::P256(_) => HashAlg::Sha256,
            PublicKey::P384(_) => HashAlg::Sha384,
            PublicKey::Ed25519(_) => HashAlg::Sha512,
            PublicKey::Rsa(_) => HashAlg::Sha256,
        }
    }

    /// Verifies a signature over `message` (ECDSA signatures DER-encoded, hashed with `hash`;
    /// Ed25519 signs the message itself and ignores `hash`).
    pub fn verify(&self, hash: HashAlg, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        match self {
            PublicKey::P256(point) | PublicKey::P384(point) => {
                let p384 = matches!(self, PublicKey::P384(_));
                aws_lc_rs::signature::UnparsedPublicKey::new(ecdsa_algorithm(p384, hash), &point.0)
                    .verify(message, signature)
                    .map_err(|_| KeyError::BadSignature)
            }
            PublicKey::Ed25519(key) => {
                let sig = ed25519_dalek::Signature::from_slice(signature).map_err(|_| KeyError::MalformedSignature)?;
                key.verify_strict(message, &sig).map_err(|_| KeyError::BadSignature)
            }
            PublicKey::Rsa(_) => self.verify_prehash(&hash.digest(message), signature),
        }
    }

    /// Verifies a signature over a precomputed digest (ECDSA and RSA; Ed25519 cannot).
    pub fn verify_prehash(&self, digest: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        let hash = match digest.len() {
            32 => HashAlg::Sha256,
            48 => HashAlg::Sha384,
            64 => HashAlg::Sha512,
            _ => return Err(KeyError::Unsupported("unsupported digest length")),
        };
        match self {
            PublicKey::P256(point) | PublicKey::P384(point) => {
                let p384 = matches!(self, PublicKey::P384(_));
                let algorithm = match hash {
                    HashAlg::Sha256 => &aws_lc_rs::digest::SHA256,
                    HashAlg::Sha384 => &aws_lc_rs::digest::SHA384,
                    HashAlg::Sha512 => &aws_lc_rs::digest::SHA512,
                };
                let digest = aws_lc_rs::digest::Digest::import_less_safe(digest, algorithm)
                    .map_err(|_| KeyError::Unsupported("unsupported digest length"))?;
                aws_lc_rs::signature::UnparsedPublicKey::new(ecdsa_algorithm(p384, hash), &point.0)
                    .verify_digest(&digest, signature)
                    .map_err(|_| KeyError::BadSignature)
            }
            PublicKey::Rsa(key) => {
                let scheme = match hash {
                    HashAlg::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                    HashAlg::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                    HashAlg::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
                };
                key.verify(scheme, digest, signature)
                    .map_err(|_| KeyError::BadSignature)
            }
            PublicKey::Ed25519(_) => Err(KeyError::Unsupported(
                "Ed25519 signatures cannot be checked against a digest",
            )),
        }
    }
}

/// A signature algorithm as certificates and CMS name it (`AlgorithmIdentifier` OID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// ECDSA with this hash; `None` is a bare `id-ecPublicKey` (CMS: "with the signer's digest
    /// algorithm"), which certificates never use.
    Ecdsa(Option<HashAlg>),
    /// Ed25519.
    Ed25519,
    /// RSA PKCS#1 v1.5 with this hash.
    Rsa(HashAlg),
}

impl SignatureAlgorithm {
    /// The algorithm an OID names, if supported.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Some(match *oid {
            o if o == ECDSA_SHA256 => SignatureAlgorithm::Ecdsa(Some(HashAlg::Sha256)),
            o if o == ECDSA_SHA384 => SignatureAlgorithm::Ecdsa(Some(HashAlg::Sha384)),
            o if o == ECDSA_SHA512 => SignatureAlgorithm::Ecdsa(Some(HashAlg::Sha512)),
            o if o == EC_PUBLIC_KEY => SignatureAlgorithm::Ecdsa(None),
            o if o == ED25519 => SignatureAlgorithm::Ed25519,
            o if o == RSA_SHA256 => SignatureAlgorithm::Rsa(HashAlg::Sha256),
            o if o == RSA_SHA384 => SignatureAlgorithm::Rsa(HashAlg::Sha384),
            o if o == RSA_SHA512 => SignatureAlgorithm::Rsa(HashAlg::Sha512),
            _ => return None,
        })
    }

    /// Verifies `signature` over `message` with `key`, which must be of the algorithm's type;
    /// `fallback` is the hash of a bare ECDSA algorithm.
    pub fn verify(
        self,
        key: &PublicKey,
        fallback: Option<HashAlg>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), KeyError> {
        let hash = match (self, key) {
            (SignatureAlgorithm::Ecdsa(hash), PublicKey::P256(_) | PublicKey::P384(_)) => hash
                .or(fallback)
                .ok_or(KeyError::Unsupported("no hash algorithm for the ECDSA signature"))?,
            (SignatureAlgorithm::Ed25519, PublicKey::Ed25519(_)) => HashAlg::Sha512,
            (SignatureAlgorithm::Rsa(hash), PublicKey::Rsa(_)) => hash,
            _ => {
                return Err(KeyError::Unsupported(
                    "the signature algorithm does not match the key type",
                ))
            }
        };
        key.verify(hash, message, signature)
    }
}

/// Decodes the first PEM block: (label, DER bytes).
pub fn pem_decode(text: &str) -> Option<(String, Vec<u8>)> {
    use base64::Engine;
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_owned();
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let body_end = rest.find(&end_marker)?;
    let body: String = rest[body_start..body_end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).ok()?;
    Some((label, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rekor_production_key_and_rejects_junk() {
        let pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2G2Y+2tabdTV5BcGiBIx0a9fAFwr\nkBbmLSGtks4L3qX6yYY0zufBnhC8Ur/iy55GhWP/9A/bY2LhC30M9+RYtw==\n-----END PUBLIC KEY-----\n";
        let key = PublicKey::from_pem(pem).expect("rekor key");
        assert!(matches!(key, PublicKey::P256(_)));
        assert_eq!(key.default_hash(), HashAlg::Sha256);
        assert!(PublicKey::from_spki_der(b"junk").is_err());
        // aws-lc reports malformed and wrong signatures alike.
        assert_eq!(
            key.verify(HashAlg::Sha256, b"m", b"\x30\x00"),
            Err(KeyError::BadSignature)
        );
    }
}
