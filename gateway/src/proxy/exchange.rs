//! Serves the trusted-publishing exchange endpoints ([`crate::trusted_publishing::wire`]) at
//! the root of every host, before routing: nothing of these requests reaches a backend.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use pingora::Result;
use portcullis_rules::{ProjectName, Protocol};

use super::authenticate::client_ip;
use super::ctx::RequestCtx;
use super::{Answer, Gateway};
use crate::clock::unix_now;
use crate::config::Registry;
use crate::trusted_publishing::wire::{self, Endpoint};
use crate::trusted_publishing::{ExchangeError, ExchangeRequest};

/// Longest time spent reading an exchange request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

impl Gateway {
    /// The registries of `protocol` served on the request's host.
    fn registries_on_host(&self, ctx: &RequestCtx, protocol: Protocol) -> Vec<Arc<Registry>> {
        self.routes
            .iter()
            .map(|r| &r.registry)
            .filter(|r| r.protocol == protocol)
            .filter(|r| match &r.route.host {
                None => true,
                Some(h) => ctx.host.as_deref() == Some(h.as_str()),
            })
            .cloned()
            .collect()
    }

    /// Answers one exchange endpoint.
    pub(super) async fn serve_exchange(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        endpoint: Endpoint,
    ) -> Result<()> {
        let host = session
            .req_header()
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| super::strip_port(h).to_ascii_lowercase());
        ctx.host = host;
        if session.req_header().method != endpoint.method() {
            let body = wire::npm_refused(
                "method_not_allowed",
                &format!("use {} for this endpoint", endpoint.method()),
                &ctx.id,
            );
            return self.respond(session, ctx, 405, body).await;
        }
        let Some(rules) = ctx.rules.clone() else {
            return self.respond(session, ctx, 500, Vec::new()).await;
        };
        match endpoint {
            Endpoint::PypiAudience => {
                let registries = self.registries_on_host(ctx, Protocol::Pypi);
                let audience = registries
                    .iter()
                    .filter(|r| rules.rules.has_publishers(&r.name))
                    .find_map(|r| rules.rules.registry_audience(&r.name));
                match (audience, self.exchanger.token_keys()) {
                    (Some(aud), Some(_)) => self.respond(session, ctx, 200, wire::pypi_audience(aud)).await,
                    _ => self.respond(session, ctx, 403, wire::pypi_disabled()).await,
                }
            }
            Endpoint::PypiMint => {
                let body = match read_body(session).await {
                    Ok(b) => b,
                    Err(reason) => {
                        return self
                            .respond(session, ctx, 422, wire::pypi_refused("invalid-payload", &reason))
                            .await
                    }
                };
                let token = match wire::pypi_token_from_body(&body) {
                    Ok(t) => t,
                    Err(reason) => {
                        self.metrics
                            .exchanges
                            .with_label_values(&["pypi", "unknown", "none", "malformed_request"])
                            .inc();
                        return self
                            .respond(session, ctx, 422, wire::pypi_refused("invalid-payload", &reason))
                            .await;
                    }
                };
                let registries = self.registries_on_host(ctx, Protocol::Pypi);
                let result = self
                    .exchanger
                    .exchange(
                        "pypi",
                        ExchangeRequest {
                            token: &token,
                            rules: &rules.rules,
                            registries: &registries,
                            package: None,
                            now: unix_now(),
                        },
                    )
                    .await;
                match result {
                    Ok(done) => {
                        self.log_exchange(ctx, "pypi", Ok(&done));
                        let body = wire::pypi_minted(&done.minted.token, done.minted.expires_at);
                        self.respond(session, ctx, 200, body).await
                    }
                    Err(e) => {
                        self.log_exchange(ctx, "pypi", Err(&e));
                        let body = wire::pypi_refused(e.pypi_code(), &e.to_string());
                        self.respond(session, ctx, 422, body).await
                    }
                }
            }
            Endpoint::NpmExchange { package } => {
                let ip = client_ip(session);
                let bearer = session
                    .req_header()
                    .headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(wire::bearer)
                    .map(str::to_owned);
                let outcome = match (ProjectName::parse(Protocol::Npm, &package), bearer) {
                    (Err(e), _) => Err(ExchangeError::MalformedToken(format!(
                        "{:?} is not a package name: {e}",
                        package.chars().take(128).collect::<String>()
                    ))),
                    (_, None) => Err(ExchangeError::MalformedToken(
                        "send the CI provider's OIDC ID token as \"Authorization: Bearer <token>\"".into(),
                    )),
                    (Ok(name), Some(token)) => {
                        let registries = self.registries_on_host(ctx, Protocol::Npm);
                        self.exchanger
                            .exchange(
                                "npm",
                                ExchangeRequest {
                                    token: &token,
                                    rules: &rules.rules,
                                    registries: &registries,
                                    package: Some(&name),
                                    now: unix_now(),
                                },
                            )
                            .await
                    }
                };
                match outcome {
                    Ok(done) => {
                        self.log_exchange(ctx, "npm", Ok(&done));
                        if let Some(ip) = ip {
                            self.failed_exchanges.forget(&package, ip).await;
                        }
                        let body = wire::npm_minted(&done.minted.token, unix_now(), done.minted.expires_at);
                        self.respond(session, ctx, 201, body).await
                    }
                    Err(e) => {
                        self.log_exchange(ctx, "npm", Err(&e));
                        let message = format!("trusted publishing exchange refused: {e}");
                        if let Some(ip) = ip {
                            self.failed_exchanges.remember(&package, ip, e.to_string()).await;
                        }
                        let body = wire::npm_refused(e.label(), &message, &ctx.id);
                        self.respond(session, ctx, e.npm_status(), body).await
                    }
                }
            }
        }
    }

    fn log_exchange(
        &self,
        ctx: &mut RequestCtx,
        protocol: &str,
        result: std::result::Result<&crate::trusted_publishing::Exchanged, &ExchangeError>,
    ) {
        match result {
            Ok(done) => {
                let publishers = done
                    .scopes
                    .iter()
                    .map(|s| format!("{}/{}", s.registry, s.publisher))
                    .collect::<Vec<_>>()
                    .join(",");
                let projects = done
                    .scopes
                    .iter()
                    .flat_map(|s| s.projects.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(",");
                tracing::info!(
                    target: "portcullis::exchange",
                    request_id = %ctx.id,
                    protocol,
                    outcome = "minted",
                    issuer = done.issuer.as_str(),
                    publishers = publishers.as_str(),
                    projects = projects.as_str(),
                    token_id = done.minted.id.as_str(),
                    expires_at = done.minted.expires_at,
                    claims = ?done.claims,
                    "trusted publishing exchange"
                );
                ctx.publisher = Some(publishers);
            }
            Err(e) => tracing::info!(
                target: "portcullis::exchange",
                request_id = %ctx.id,
                protocol,
                outcome = "refused",
                code = e.label(),
                reason = %e,
                "trusted publishing exchange"
            ),
        }
    }

    /// Writes a JSON response (never cached) and ends the request.
    async fn respond(&self, session: &mut Session, ctx: &RequestCtx, status: u16, body: Vec<u8>) -> Result<()> {
        let answer = Answer {
            status,
            reason: None,
            content_type: "application/json",
            no_store: true,
            body,
        };
        self.write_answer(session, ctx, answer).await.map(|_| ())
    }
}

/// Reads a small request body, bounded in size and time.
async fn read_body(session: &mut Session) -> std::result::Result<Bytes, String> {
    let mut body = BytesMut::new();
    let read = async {
        while let Some(chunk) = session
            .read_request_body()
            .await
            .map_err(|e| format!("the request body could not be read: {e}"))?
        {
            if body.len() + chunk.len() > wire::MAX_BODY_BYTES {
                return Err(format!("the request body is over {} bytes", wire::MAX_BODY_BYTES));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .map_err(|_| "the request body did not arrive in time".to_owned())??;
    Ok(body.freeze())
}
