//! The rules' view of a verified signing certificate: the Fulcio identity the verifier read
//! (with the deprecated GitHub Workflow extensions already standing in for absent CI ones)
//! as the [`SignerIdentity`] that trusted publishers are matched against.

use portcullis_rules::provenance::SignerIdentity;
use portcullis_verify::cert::CertificateIdentity;

/// The rules' view of a certificate identity.
pub fn signer_identity(identity: &CertificateIdentity) -> SignerIdentity {
    SignerIdentity {
        issuer: identity.issuer.clone(),
        sans: identity.sans.clone(),
        build_signer_uri: identity.build_signer_uri.clone(),
        runner_environment: identity.runner_environment.clone(),
        source_repository_uri: identity.source_repository_uri.clone(),
        source_repository_digest: identity.source_repository_digest.clone(),
        source_repository_ref: identity.source_repository_ref.clone(),
        source_repository_owner_identifier: identity.source_repository_owner_identifier.clone(),
        build_config_uri: identity.build_config_uri.clone(),
        build_trigger: identity.build_trigger.clone(),
        predates_ci_extensions: identity.predates_ci_extensions,
    }
}

#[cfg(test)]
mod tests;
