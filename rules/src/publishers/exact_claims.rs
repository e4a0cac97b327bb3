//! Publishers checked by exact claim values: Buildkite, CircleCI and generic OIDC issuers.
//! A token matches when every claim the publisher names has exactly that value. Signing
//! certificates are matched in `signer`, per provider.

use super::Claims;

/// Checks that every claim in `expected` has exactly its value in `claims`; `Err` names the
/// first that does not.
pub(super) fn check_claims(expected: &[(String, String)], claims: &dyn Claims) -> Result<(), String> {
    for (name, value) in expected {
        if claims.string(name) != Some(value.as_str()) {
            return Err(format!("the claim {name:?} is not {value:?}"));
        }
    }
    Ok(())
}
