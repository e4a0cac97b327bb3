//! Authenticate: which credential a request carries and what that allows.
//!
//! - A gateway upload token on a write is verified (signature, expiry, revocation), checked
//!   against its scope (registry, project, uploads only) and swapped for the backend's own
//!   credential upstream; on a read it is swapped when valid for the registry and removed
//!   otherwise. An upload token never reaches a backend.
//! - Any other credential on a write passes unchanged in legacy mode (logged and counted) or is
//!   refused, as the registry's `client_credentials` says.
//! - A write without a credential is refused when the registry refuses client credentials, and
//!   whenever this client's trusted-publishing exchange for the package just failed, with that
//!   exchange's reason.

use std::net::IpAddr;

use pingora::proxy::Session;
use portcullis_rules::{ProjectName, WriteAction};

use super::ctx::{Auth, CredentialAction, RequestCtx};
use super::Gateway;
use crate::auth::credentials::{client_credential, ClientCredential};
use crate::auth::upload_token::UploadToken;
use crate::clock::unix_now;
use crate::config::raw::ClientCredentials;
use crate::config::Registry;
use crate::error::Refusal;
use crate::protocol::RequestClass;

/// The client's IP address, when the connection has one.
pub(crate) fn client_ip(session: &Session) -> Option<IpAddr> {
    session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip())
}

impl Gateway {
    /// Authenticates a routed request; see the module documentation.
    pub(super) async fn authenticate(&self, session: &Session, ctx: &mut RequestCtx) -> Result<(), Refusal> {
        let registry = self.registry(ctx).ok_or(Refusal::Internal)?.clone();
        let headers = &session.req_header().headers;
        let credential = client_credential(
            headers
                .get_all(http::header::AUTHORIZATION)
                .iter()
                .map(|v| v.as_bytes()),
        );
        let is_write = ctx.write.is_some();
        match credential {
            ClientCredential::UploadToken(token) => {
                let verified = self.verify_upload_token(&registry, &token).await;
                if !is_write {
                    // Reads: swap a token valid for this registry, never forward one.
                    ctx.credential = match verified {
                        Ok(t) if t.scope_for(&registry.name).is_some() => CredentialAction::SwapForBackend,
                        _ => CredentialAction::Remove,
                    };
                    return Ok(());
                }
                let token = match verified {
                    Ok(t) => t,
                    Err(refusal) => {
                        self.count_token_use(&registry.name, refusal.code());
                        return Err(refusal);
                    }
                };
                if token.scope_for(&registry.name).is_none() {
                    let refusal = Refusal::TokenScope(format!(
                        "this upload token was minted for {}, not for registry {:?}",
                        describe_scopes(&token),
                        registry.name
                    ));
                    self.count_token_use(&registry.name, refusal.code());
                    return Err(refusal);
                }
                if let RequestClass::Write { action, project } = &ctx.class {
                    let result = scope_allows(&token, &registry, *action, project);
                    self.count_token_use(&registry.name, result.as_ref().err().map_or("accepted", Refusal::code));
                    result?;
                }
                ctx.auth = Auth::UploadToken(Box::new(token));
                ctx.credential = CredentialAction::SwapForBackend;
                Ok(())
            }
            ClientCredential::Other if is_write => match registry.client_credentials {
                ClientCredentials::Pass => {
                    ctx.auth = Auth::Legacy;
                    self.metrics
                        .legacy_credentials
                        .with_label_values(&[&registry.name])
                        .inc();
                    Ok(())
                }
                ClientCredentials::Refuse => {
                    let base = format!(
                        "registry {:?} accepts writes only with an upload token from trusted publishing \
                         (exchange your CI's OIDC token at /_/oidc/mint-token or, for npm, let `npm publish` \
                         exchange it); other credentials are refused",
                        registry.name
                    );
                    Err(Refusal::CredentialsRefused(
                        self.with_failed_exchange(session, ctx, base).await,
                    ))
                }
            },
            ClientCredential::None if is_write => {
                if let Some(reason) = self.recall_failed_exchange(session, ctx).await {
                    return Err(Refusal::TrustedPublishingFailed(reason));
                }
                match registry.client_credentials {
                    ClientCredentials::Pass => Ok(()),
                    ClientCredentials::Refuse => Err(Refusal::CredentialsMissing(format!(
                        "registry {:?} needs an upload token from trusted publishing for writes, and this \
                         request carries no credential",
                        registry.name
                    ))),
                }
            }
            ClientCredential::Other | ClientCredential::None => Ok(()),
        }
    }

    /// Verifies an upload token's signature, expiry and revocation.
    async fn verify_upload_token(&self, registry: &Registry, token: &str) -> Result<UploadToken, Refusal> {
        let keys = self.exchanger.token_keys().ok_or_else(|| {
            Refusal::UploadTokenInvalid(format!(
                "registry {:?}: this gateway has no upload-token keys configured, so it cannot accept upload tokens",
                registry.name
            ))
        })?;
        let now = unix_now();
        let verified = keys
            .verify(token, now)
            .map_err(|e| Refusal::UploadTokenInvalid(format!("the upload token is not valid: {e}")))?;
        match self.state().is_revoked(&verified.id, now).await {
            Ok(false) => Ok(verified),
            Ok(true) => Err(Refusal::UploadTokenRevoked(format!(
                "the upload token {} was revoked; mint a new one through trusted publishing",
                verified.id
            ))),
            Err(e) => {
                tracing::warn!(error = %e, "state store unavailable while checking a revocation");
                Err(Refusal::StateUnavailable)
            }
        }
    }

    /// Checks, once the project of a PyPI upload is known, that the request's upload token
    /// covers it.
    pub(super) fn check_token_scope(
        &self,
        ctx: &RequestCtx,
        registry: &Registry,
        action: WriteAction,
        project: &ProjectName,
    ) -> Result<(), Refusal> {
        let Auth::UploadToken(token) = &ctx.auth else {
            return Ok(());
        };
        let result = scope_allows(token, registry, action, project);
        self.count_token_use(&registry.name, result.as_ref().err().map_or("accepted", Refusal::code));
        result
    }

    fn count_token_use(&self, registry: &str, outcome: &str) {
        self.metrics.upload_tokens.with_label_values(&[registry, outcome]).inc();
    }

    /// The remembered failed exchange of this client for the request's npm package, as text.
    async fn recall_failed_exchange(&self, session: &Session, ctx: &RequestCtx) -> Option<String> {
        let RequestClass::Write {
            action: WriteAction::Upload,
            project,
        } = &ctx.class
        else {
            return None;
        };
        let ip = client_ip(session)?;
        let (reason, ago) = self.failed_exchanges.recall(project.as_str(), ip).await?;
        Some(format!(
            "the trusted publishing exchange for {} failed {} s ago: {reason}",
            project.as_str(),
            ago.as_secs()
        ))
    }

    async fn with_failed_exchange(&self, session: &Session, ctx: &RequestCtx, base: String) -> String {
        match self.recall_failed_exchange(session, ctx).await {
            Some(reason) => format!("{reason}. {base}"),
            None => base,
        }
    }
}

/// Whether a valid token for the registry may perform `action` on `project`.
fn scope_allows(
    token: &UploadToken,
    registry: &Registry,
    action: WriteAction,
    project: &ProjectName,
) -> Result<(), Refusal> {
    if action != WriteAction::Upload {
        return Err(Refusal::TokenScope(format!(
            "upload tokens from trusted publishing may only upload; this request would {} {:?}",
            action.as_str(),
            project.as_str()
        )));
    }
    if !token.allows(&registry.name, project.as_str()) {
        return Err(Refusal::TokenScope(format!(
            "this upload token is not valid for project {:?}; it was minted for {}",
            project.as_str(),
            describe_scopes(token)
        )));
    }
    Ok(())
}

/// `registry pypi: a, b (publisher p)` for messages.
fn describe_scopes(token: &UploadToken) -> String {
    token
        .scopes
        .iter()
        .map(|s| {
            format!(
                "registry {:?}: {} (publisher {})",
                s.registry,
                s.projects.join(", "),
                s.publisher
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
