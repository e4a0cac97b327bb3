//! One type for every refusal and failure a client can see, each with an HTTP status and a
//! stable machine-readable code (documented in `docs/refusals.md`).

use portcullis_rules::RefusalKind;
use serde::Serialize;

/// Why the gateway answered instead of (or after) the backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The rules deny writes to this project.
    #[error("{message}")]
    ProjectDenied {
        /// Message from the rules.
        message: String,
    },
    /// The upload is larger than the rules or the registry allow.
    #[error("{message}")]
    TooLarge {
        /// Message naming the limit.
        message: String,
    },
    /// The upload body is not a well-formed request of its protocol.
    #[error("{0}")]
    MalformedUpload(String),
    /// A digest the client sent does not match the bytes it sent.
    #[error("{0}")]
    DigestMismatch(String),
    /// A request body that another reader could read differently from the gateway: a PyPI
    /// form outside the one canonical encoding, an npm document with duplicate keys
    /// (`docs/one-reading.md`).
    #[error("{0}")]
    AmbiguousBody(String),
    /// A write the gateway cannot classify, so it refuses rather than guess.
    #[error("{0}")]
    UnclassifiedWrite(String),
    /// The request path is not acceptable (dot segments, NUL, bad encoding).
    #[error("{0}")]
    BadPath(String),
    /// No registry is configured for this host and path.
    #[error("no registry is configured at this address")]
    NoRoute,
    /// The backend could not be reached.
    #[error("the registry backend is unavailable; try again later")]
    UpstreamUnavailable,
    /// The backend did not answer in time.
    #[error("the registry backend did not answer in time; try again later")]
    UpstreamTimeout,
    /// The backend broke the exchange (reset, malformed response).
    #[error("the registry backend failed while handling the request; try again later")]
    UpstreamFailed,
    /// The gateway serves as many client connections as `[client] max_connections` allows.
    #[error("the gateway is serving as many connections as it allows; try again shortly")]
    TooManyConnections,
    /// The client sent a request the HTTP layer could not read.
    #[error("the request could not be read: {0}")]
    BadRequest(String),
    /// A write without any credential on a registry that needs one.
    #[error("{0}")]
    CredentialsMissing(String),
    /// A write with a client credential that this registry does not accept (not an upload
    /// token from trusted publishing).
    #[error("{0}")]
    CredentialsRefused(String),
    /// A credential in the request URL (userinfo, or a query parameter such as `token` or
    /// `password`): refused whole, never forwarded, since credentials are only read from the
    /// `Authorization` header.
    #[error(
        "{0}; send credentials only in the Authorization header (URLs end up in logs), and treat this one as exposed"
    )]
    CredentialsInUrl(String),
    /// An upload token that does not verify (bad signature, expired, unknown key, malformed).
    #[error("{0}")]
    UploadTokenInvalid(String),
    /// An upload token that was revoked.
    #[error("{0}")]
    UploadTokenRevoked(String),
    /// A valid upload token used outside its scope (another registry or project, or a
    /// write other than an upload).
    #[error("{0}")]
    TokenScope(String),
    /// A write that follows a failed trusted-publishing exchange of the same client and package,
    /// refused with that exchange's reason.
    #[error("{0}")]
    TrustedPublishingFailed(String),
    /// The upload's provenance is missing where required, does not verify, or was not made by
    /// the expected publisher.
    #[error("{message}")]
    Provenance {
        /// Why, as the rules named it (its stable code: `provenance_missing`,
        /// `provenance_invalid`, ...; the `provenance_trust_*` ones are temporary, 503).
        code: portcullis_rules::ProvenanceRefusal,
        /// What is wrong.
        message: String,
    },
    /// The deletion rules refuse a delete, unpublish or yank.
    #[error("{message}")]
    Deletion {
        /// The stable code (`deletion_refused`, `deletion_never`, `deletion_yank_only`,
        /// `deletion_unknown_facts`).
        code: &'static str,
        /// What the policy says, and the alternative.
        message: String,
    },
    /// An upload of a version or file that was deleted: deleted versions are never reused.
    #[error("{0}")]
    VersionDeleted(String),
    /// An upload to a project name that was deleted and stays reserved.
    #[error("{0}")]
    NameReserved(String),
    /// The facts a deletion decision needs could not be gathered from the backend.
    #[error("{0}")]
    DeletionFactsUnavailable(String),
    /// An admin override header with a wrong admin token.
    #[error("the admin override token is not valid")]
    AdminUnauthenticated,
    /// An admin override without the mandatory reason.
    #[error("{0}")]
    OverrideReasonRequired(String),
    /// The state store could not answer a question the decision needs (fail closed).
    #[error("the gateway's state store is unavailable, so the request was refused; try again later")]
    StateUnavailable,
    /// A failure inside the gateway.
    #[error("internal error in the gateway; the request was not forwarded")]
    Internal,
    /// The client sent its request body too slowly (`[client] min_body_rate`).
    #[error("{0}")]
    RequestTimeout(String),
}

impl Refusal {
    /// The stable code clients and scripts may match on.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::ProjectDenied { .. } => "project_denied",
            Refusal::TooLarge { .. } => "upload_too_large",
            Refusal::MalformedUpload(_) => "malformed_upload",
            Refusal::DigestMismatch(_) => "digest_mismatch",
            Refusal::AmbiguousBody(_) => "ambiguous_body",
            Refusal::UnclassifiedWrite(_) => "unclassified_write",
            Refusal::BadPath(_) => "bad_path",
            Refusal::NoRoute => "no_route",
            Refusal::UpstreamUnavailable => "upstream_unavailable",
            Refusal::UpstreamTimeout => "upstream_timeout",
            Refusal::UpstreamFailed => "upstream_failed",
            Refusal::BadRequest(_) => "bad_request",
            Refusal::CredentialsMissing(_) => "credentials_missing",
            Refusal::CredentialsRefused(_) => "credentials_refused",
            Refusal::CredentialsInUrl(_) => "credentials_in_url",
            Refusal::UploadTokenInvalid(_) => "upload_token_invalid",
            Refusal::UploadTokenRevoked(_) => "upload_token_revoked",
            Refusal::TokenScope(_) => "token_scope",
            Refusal::TrustedPublishingFailed(_) => "trusted_publishing_failed",
            Refusal::Provenance { code, .. } => code.code(),
            Refusal::Deletion { code, .. } => code,
            Refusal::VersionDeleted(_) => "version_deleted",
            Refusal::NameReserved(_) => "name_reserved",
            Refusal::DeletionFactsUnavailable(_) => "deletion_facts_unavailable",
            Refusal::AdminUnauthenticated => "admin_unauthenticated",
            Refusal::OverrideReasonRequired(_) => "override_reason_required",
            Refusal::StateUnavailable => "state_unavailable",
            Refusal::Internal => "internal_error",
            Refusal::RequestTimeout(_) => "request_timeout",
            Refusal::TooManyConnections => "too_many_connections",
        }
    }

    /// The HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::ProjectDenied { .. } => 403,
            Refusal::TooLarge { .. } => 413,
            Refusal::MalformedUpload(_)
            | Refusal::DigestMismatch(_)
            | Refusal::AmbiguousBody(_)
            | Refusal::BadPath(_)
            | Refusal::BadRequest(_)
            | Refusal::CredentialsInUrl(_) => 400,
            Refusal::UnclassifiedWrite(_) => 405,
            Refusal::NoRoute => 404,
            Refusal::UpstreamUnavailable | Refusal::UpstreamFailed => 502,
            Refusal::UpstreamTimeout => 504,
            Refusal::CredentialsMissing(_)
            | Refusal::CredentialsRefused(_)
            | Refusal::UploadTokenInvalid(_)
            | Refusal::UploadTokenRevoked(_)
            | Refusal::TrustedPublishingFailed(_) => 401,
            Refusal::TokenScope(_) => 403,
            Refusal::Provenance { code, .. } if code.is_temporary() => 503,
            Refusal::Provenance { .. } => 400,
            Refusal::Deletion { .. } | Refusal::NameReserved(_) => 403,
            Refusal::VersionDeleted(_) => 409,
            Refusal::DeletionFactsUnavailable(_) => 503,
            Refusal::AdminUnauthenticated => 401,
            Refusal::OverrideReasonRequired(_) => 400,
            Refusal::StateUnavailable | Refusal::TooManyConnections => 503,
            Refusal::Internal => 500,
            Refusal::RequestTimeout(_) => 408,
        }
    }

    /// Builds the refusal for a rules decision.
    pub fn from_rules(kind: RefusalKind, message: String) -> Self {
        match kind {
            RefusalKind::ProjectDenied => Refusal::ProjectDenied { message },
            RefusalKind::TooLarge => Refusal::TooLarge { message },
        }
    }

    /// The JSON body sent to the client.
    pub fn body(&self, request_id: &str) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            code: &'a str,
            message: &'a str,
            /// Same text as `message`: the npm CLI prints this field.
            error: &'a str,
            request_id: &'a str,
        }
        let message = self.to_string();
        serde_json::to_vec(&Body {
            code: self.code(),
            message: &message,
            error: &message,
            request_id,
        })
        .unwrap_or_default()
    }

    /// An HTTP/1.1 reason phrase carrying the message (twine prints the reason phrase, which is
    /// where PyPI puts its error text): visible ASCII only, at most 300 bytes.
    pub fn reason_phrase(&self) -> String {
        let mut phrase: String = self
            .to_string()
            .chars()
            .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
            .take(300)
            .collect();
        phrase.truncate(phrase.trim_end().len());
        if phrase.is_empty() {
            phrase.push_str("Refused");
        }
        phrase
    }
}

impl From<crate::protocol::multipart::MultipartError> for Refusal {
    fn from(e: crate::protocol::multipart::MultipartError) -> Self {
        use crate::protocol::multipart::MultipartError;
        match e {
            MultipartError::Ambiguous(m) => Refusal::AmbiguousBody(m),
            MultipartError::Truncated(m) => Refusal::MalformedUpload(m),
        }
    }
}

/// An error followed by each of its sources, `: `-separated (for errors whose `Display` does
/// not repeat their cause).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[path = "error_docs_tests.rs"]
mod docs_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_json_with_code_message_and_request_id() {
        let r = Refusal::ProjectDenied {
            message: "no \"quotes\" here".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&r.body("req-1")).expect("json");
        assert_eq!(v["code"], "project_denied");
        assert_eq!(v["message"], "no \"quotes\" here");
        assert_eq!(v["error"], v["message"]);
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(r.status(), 403);
    }

    #[test]
    fn reason_phrase_is_safe_for_a_status_line() {
        let r = Refusal::MalformedUpload("line\r\nInjected: yes ünï".into());
        let phrase = r.reason_phrase();
        assert!(!phrase.contains('\r') && !phrase.contains('\n'));
        assert!(phrase.is_ascii());
        let long = Refusal::MalformedUpload("x".repeat(1000));
        assert_eq!(long.reason_phrase().len(), 300);
    }
}
