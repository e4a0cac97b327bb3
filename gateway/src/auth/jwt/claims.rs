//! The claims of a verified token: the registered claims checked against the issuer and the
//! clock (`iss`, `aud`, `exp`, `iat`, `nbf`, `jti`, `sub`), typed into [`Claims`] with every claim
//! kept for the provider-specific checks.

use serde_json::{Map, Value};
use sha2::Digest as _;

use super::{echo, IssuerKeys, TokenError, LEEWAY_SECS};

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

/// Step 6 and 7 of the checks: the registered claims of a token whose signature verified.
pub(super) fn check_claims(
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

/// A required string claim.
pub(super) fn required_str(claims: &Map<String, Value>, claim: &'static str) -> Result<String, TokenError> {
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
