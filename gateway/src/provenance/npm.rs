//! npm provenance on publishes: the `<name>-<version>.sigstore` attachment (a Sigstore bundle
//! whose DSSE statement names the tarball) verified against the tarball's digests (cached), with
//! the checks the npm registry makes: one subject, `pkg:npm/<name>@<version>` with the tarball's
//! SHA-512, and the package's `repository.url` matching the provenance's source repository.

use std::sync::Arc;

use portcullis_rules::provenance::AttestationFacts;
use portcullis_verify::{Artifact, Policy, TrustedRoot};

use super::cache::VerificationCache;
use super::pep740::Checked;
use super::signer::signer_identity;

/// The purl the npm CLI puts in the statement's subject: `pkg:npm/<name>@<version>`, with a
/// scope's `@` written `%40`.
pub fn purl(name: &str, version: &str) -> String {
    let name = name
        .strip_prefix('@')
        .map_or_else(|| name.to_owned(), |rest| format!("%40{rest}"));
    format!("pkg:npm/{name}@{version}")
}

/// `git+https://github.com/a/b.git`, `https://github.com/a/b/` and `github.com/A/b` compare equal.
pub fn normalize_repository(url: &str) -> String {
    let url = url.trim();
    let url = url.strip_prefix("git+").unwrap_or(url);
    let url = url.split_once("://").map_or(url, |(_, rest)| rest);
    let url = url.trim_end_matches('/');
    let url = url.strip_suffix(".git").unwrap_or(url);
    url.to_ascii_lowercase()
}

/// Checks an npm publish's provenance bundle for tarball `sha256`/`sha512` of `name@version`.
#[allow(clippy::too_many_arguments)]
pub async fn check(
    cache: &VerificationCache,
    root: &Arc<TrustedRoot>,
    bundle: &[u8],
    name: &str,
    version: &str,
    sha256: [u8; 32],
    sha512: [u8; 64],
    repository_url: Option<&str>,
    now: i64,
) -> Checked {
    let outcome = cache
        .verify(
            Arc::from(bundle),
            Artifact::from_digests(sha256, sha512),
            root.clone(),
            Policy::AnyIdentity,
            now,
        )
        .await;
    let signer = match outcome.as_ref() {
        Ok(signer) => signer,
        Err(e) => return Checked::Invalid(format!("Error verifying sigstore provenance bundle: {e}")),
    };
    let expected = purl(name, version);
    let [(subject, digests)] = signer.subjects.as_slice() else {
        return Checked::Invalid(format!(
            "the provenance statement has {} subjects; exactly one ({expected}) is required",
            signer.subjects.len()
        ));
    };
    if *subject != expected {
        return Checked::Invalid(format!(
            "the provenance's subject is {:?}, not {expected:?}",
            subject.chars().take(200).collect::<String>()
        ));
    }
    let sha512_hex = hex::encode(sha512);
    if !digests
        .iter()
        .any(|(alg, value)| alg == "sha512" && *value == sha512_hex)
    {
        return Checked::Invalid("the provenance's subject digest is not the tarball's SHA-512".into());
    }
    let Some(predicate_type) = signer.predicate_type.clone() else {
        return Checked::Invalid("the provenance is not an in-toto statement".into());
    };
    let identity = signer_identity(&signer.identity);
    let source = identity.source_repository_uri.clone().unwrap_or_default();
    let declared = repository_url.unwrap_or_default();
    if normalize_repository(declared) != normalize_repository(&source) {
        return Checked::Invalid(format!(
            "Failed to validate repository information: package.json: \"repository.url\" is {:?}, expected to match {:?} from provenance",
            declared.chars().take(200).collect::<String>(),
            source
        ));
    }
    Checked::Verified(vec![AttestationFacts {
        predicate_type,
        signer: identity,
    }])
}

#[cfg(test)]
mod tests;
