//! The identity facts Fulcio puts in a signing certificate: subject alternative names and the
//! `1.3.6.1.4.1.57264.1.*` extensions (Fulcio's `docs/oid-info.md`).
//!
//! Before its 2023 CI extensions (`.8` to `.22`), Fulcio described a GitHub Actions signer
//! with the now deprecated GitHub Workflow extensions `.2` to `.6` (trigger, commit SHA,
//! workflow name, repository, ref; raw strings, not DER) and the workflow URI in the SAN
//! (`https://github.com/{job_workflow_ref}`, what Build Signer URI `.9` says since). Early-2023
//! npm provenance of several Sigstore and TUF releases is signed with such certificates. Each
//! CI field below is read from its own extension first; only when that extension is absent is
//! it taken from its deprecated counterpart, and when both are present and disagree the
//! certificate is refused.

use der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

use super::{err, extension};
use crate::error::{Result, Step, VerifyError};

const SUBJECT_ALT_NAME: const_oid::ObjectIdentifier = const_oid::ObjectIdentifier::new_unwrap("2.5.29.17");
const FULCIO: &str = "1.3.6.1.4.1.57264.1";

/// Identity facts from a Fulcio certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CertificateIdentity {
    /// Subject alternative names (URIs, emails, other names), in order.
    pub sans: Vec<String>,
    /// The OIDC issuer (extension .8, or the deprecated .1).
    pub issuer: Option<String>,
    /// Build Signer URI (.9; for certificates that predate it, the GitHub workflow SAN).
    pub build_signer_uri: Option<String>,
    /// Build Signer Digest (.10).
    pub build_signer_digest: Option<String>,
    /// Runner Environment (.11).
    pub runner_environment: Option<String>,
    /// Source Repository URI (.12, or the SAN's server and the deprecated repository .5).
    pub source_repository_uri: Option<String>,
    /// Source Repository Digest (.13, or the deprecated commit SHA .3).
    pub source_repository_digest: Option<String>,
    /// Source Repository Ref (.14, or the deprecated ref .6).
    pub source_repository_ref: Option<String>,
    /// Source Repository Identifier (.15).
    pub source_repository_identifier: Option<String>,
    /// Source Repository Owner URI (.16).
    pub source_repository_owner_uri: Option<String>,
    /// Source Repository Owner Identifier (.17).
    pub source_repository_owner_identifier: Option<String>,
    /// Build Config URI (.18).
    pub build_config_uri: Option<String>,
    /// Build Config Digest (.19).
    pub build_config_digest: Option<String>,
    /// Build Trigger (.20, or the deprecated trigger .2).
    pub build_trigger: Option<String>,
    /// Run Invocation URI (.21).
    pub run_invocation_uri: Option<String>,
    /// Source Repository Visibility At Signing (.22).
    pub source_repository_visibility: Option<String>,
    /// The deprecated GitHub Workflow extensions, as the certificate carries them.
    pub github_workflow: GithubWorkflowExtensions,
    /// The certificate carries deprecated GitHub Workflow extensions and none of the CI
    /// extensions `.9` to `.22` (Fulcio before 2023): the fields above were filled from the
    /// deprecated ones, and the caller workflow (`.18`), the repository owner's id (`.17`) and
    /// the runner environment (`.11`) are not known.
    pub predates_ci_extensions: bool,
}

/// The deprecated GitHub Workflow extensions (`1.3.6.1.4.1.57264.1.2` to `.6`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GithubWorkflowExtensions {
    /// GitHub Workflow Trigger (.2): the `event_name` claim.
    pub trigger: Option<String>,
    /// GitHub Workflow SHA (.3): the `sha` claim.
    pub sha: Option<String>,
    /// GitHub Workflow Name (.4): the (mutable) `workflow` name claim.
    pub name: Option<String>,
    /// GitHub Workflow Repository (.5): `owner/name`.
    pub repository: Option<String>,
    /// GitHub Workflow Ref (.6): the `ref` claim.
    pub git_ref: Option<String>,
}

impl GithubWorkflowExtensions {
    fn is_empty(&self) -> bool {
        self == &GithubWorkflowExtensions::default()
    }
}

fn identity_err(reason: impl Into<String>) -> VerifyError {
    VerifyError::new(Step::Identity, reason)
}

/// Reads the SANs and Fulcio extensions of a certificate, the deprecated GitHub Workflow
/// extensions standing in for absent CI extensions (see the module documentation).
pub fn identity(cert: &Certificate) -> Result<CertificateIdentity> {
    let mut id = CertificateIdentity::default();
    if let Some(value) = extension(cert, SUBJECT_ALT_NAME) {
        let san = SubjectAltName::from_der(value).map_err(|e| err(format!("subject alternative name: {e}")))?;
        for name in san.0 {
            match name {
                GeneralName::UniformResourceIdentifier(uri) => id.sans.push(uri.to_string()),
                GeneralName::Rfc822Name(email) => id.sans.push(email.to_string()),
                GeneralName::OtherName(other) => {
                    if let Ok(text) = other.value.decode_as::<der::asn1::Utf8StringRef<'_>>() {
                        id.sans.push(text.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let Some(extensions) = cert.tbs_certificate.extensions.as_ref() else {
        return Ok(id);
    };
    let mut legacy_issuer = None;
    let mut ci_extensions = false;
    for ext in extensions {
        let oid = ext.extn_id.to_string();
        let Some(arc) = oid.strip_prefix(FULCIO).and_then(|rest| rest.strip_prefix('.')) else {
            continue;
        };
        let raw = ext.extn_value.as_bytes();
        let Ok(number) = arc.parse::<u32>() else {
            continue;
        };
        // Arcs 1 to 6 are the deprecated extensions with raw string values (7 is an OtherName
        // SAN type, not an extension); from 8 on the value is a DER UTF8String.
        if number < 8 {
            let slot = match number {
                1 => &mut legacy_issuer,
                2 => &mut id.github_workflow.trigger,
                3 => &mut id.github_workflow.sha,
                4 => &mut id.github_workflow.name,
                5 => &mut id.github_workflow.repository,
                6 => &mut id.github_workflow.git_ref,
                _ => continue,
            };
            let text =
                std::str::from_utf8(raw).map_err(|_| err(format!("Fulcio extension {oid} is not UTF-8 text")))?;
            *slot = Some(text.to_owned());
            continue;
        }
        let value = der::asn1::Utf8StringRef::from_der(raw)
            .map(|s| s.to_string())
            .map_err(|e| err(format!("Fulcio extension {oid}: {e}")))?;
        ci_extensions |= (9..=22).contains(&number);
        let slot = match arc {
            "8" => &mut id.issuer,
            "9" => &mut id.build_signer_uri,
            "10" => &mut id.build_signer_digest,
            "11" => &mut id.runner_environment,
            "12" => &mut id.source_repository_uri,
            "13" => &mut id.source_repository_digest,
            "14" => &mut id.source_repository_ref,
            "15" => &mut id.source_repository_identifier,
            "16" => &mut id.source_repository_owner_uri,
            "17" => &mut id.source_repository_owner_identifier,
            "18" => &mut id.build_config_uri,
            "19" => &mut id.build_config_digest,
            "20" => &mut id.build_trigger,
            "21" => &mut id.run_invocation_uri,
            "22" => &mut id.source_repository_visibility,
            _ => continue,
        };
        *slot = Some(value);
    }
    match (&id.issuer, legacy_issuer) {
        (None, legacy) => id.issuer = legacy,
        (Some(v2), Some(v1)) if *v2 != v1 => {
            return Err(identity_err(format!(
                "the certificate names two different OIDC issuers ({v1:?} and {v2:?})"
            )))
        }
        _ => {}
    }
    if !id.github_workflow.is_empty() {
        apply_github_workflow(&mut id)?;
        id.predates_ci_extensions = !ci_extensions;
    }
    Ok(id)
}

/// Fills absent CI fields from the deprecated GitHub Workflow extensions; refuses a certificate
/// whose deprecated and current extensions disagree.
fn apply_github_workflow(id: &mut CertificateIdentity) -> Result<()> {
    let legacy = id.github_workflow.clone();
    fallback(&mut id.build_trigger, legacy.trigger, "build trigger (.20 and .2)")?;
    fallback(
        &mut id.source_repository_digest,
        legacy.sha,
        "source repository digest (.13 and .3)",
    )?;
    fallback(
        &mut id.source_repository_ref,
        legacy.git_ref,
        "source repository ref (.14 and .6)",
    )?;
    // Fulcio wrote the SAN as `{server}/{job_workflow_ref}`, and writes Build Signer URI and
    // Source Repository URI on the same server.
    let workflow_san = id
        .sans
        .iter()
        .find(|san| san.contains("://") && san.contains("/.github/workflows/"))
        .cloned();
    if let Some(repository) = legacy.repository {
        match (&id.source_repository_uri, workflow_san.as_deref().and_then(origin)) {
            (Some(current), _) => {
                let current_lower = current.to_ascii_lowercase();
                let same = current_lower
                    .strip_suffix(&format!("/{}", repository.to_ascii_lowercase()))
                    .is_some_and(is_origin);
                if !same {
                    return Err(identity_err(format!(
                        "the certificate's source repository (.12) {current:?} and its deprecated GitHub workflow repository (.5) {repository:?} disagree"
                    )));
                }
            }
            (None, Some(server)) => id.source_repository_uri = Some(format!("{server}/{repository}")),
            (None, None) => {}
        }
    }
    if id.build_signer_uri.is_none() {
        id.build_signer_uri = workflow_san;
    }
    Ok(())
}

/// Sets `current` from `legacy` when absent; both present must agree.
fn fallback(current: &mut Option<String>, legacy: Option<String>, what: &str) -> Result<()> {
    match (current.as_deref(), legacy) {
        (None, legacy) => *current = legacy,
        (Some(now), Some(before)) if now != before => {
            return Err(identity_err(format!(
                "the certificate's {what} disagree: {now:?} and {before:?}"
            )))
        }
        _ => {}
    }
    Ok(())
}

/// `scheme://host` of a URL.
fn origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let host_end = rest.find('/').unwrap_or(rest.len());
    (!scheme.is_empty() && host_end > 0).then(|| &url[..scheme.len() + 3 + host_end])
}

/// Whether `text` is exactly `scheme://host`.
fn is_origin(text: &str) -> bool {
    origin(text) == Some(text)
}

#[cfg(test)]
mod tests;
