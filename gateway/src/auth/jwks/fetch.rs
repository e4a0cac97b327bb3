//! Fetching an issuer's key set over HTTP: OIDC discovery (the document must name the issuer),
//! or a pinned JWKS URL, then the key set. Every URL is checked (absolute, with a host, https
//! unless plain http is allowed for tests); each response must be `200 OK` and its body is read
//! chunk by chunk, abandoned as soon as it passes its limit.

use reqwest::header::{HeaderValue, ACCEPT};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::{shorten, JwksCache, JwksFetchError, MAX_DISCOVERY_BYTES, MAX_ECHO_CHARS};
use crate::auth::jwt::{JwkSet, JwksError, MAX_JWKS_BYTES};

/// The discovery path appended to an issuer URL.
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// The OIDC discovery members this module reads (a duplicated one is an error).
#[derive(Deserialize)]
struct Discovery {
    issuer: Option<String>,
    jwks_uri: Option<String>,
}

impl JwksCache {
    /// One fetch: discovery (unless pinned), then the key set.
    pub(super) async fn fetch(
        &self,
        issuer_url: &str,
        pinned_jwks_url: Option<&str>,
    ) -> Result<JwkSet, JwksFetchError> {
        let jwks_url = match pinned_jwks_url {
            Some(url) => self.checked_url(url)?,
            None => self.discover(issuer_url).await?,
        };
        let body = self.get_limited(&jwks_url, MAX_JWKS_BYTES).await?;
        match JwkSet::from_json(&body) {
            Ok(set) if set.is_empty() => Err(JwksFetchError::EmptySet {
                url: shorten(jwks_url.as_str()),
            }),
            Ok(set) => Ok(set),
            Err(JwksError::Empty) => Err(JwksFetchError::EmptySet {
                url: shorten(jwks_url.as_str()),
            }),
            Err(JwksError::TooLarge { max, .. }) => Err(JwksFetchError::TooLarge {
                url: shorten(jwks_url.as_str()),
                max,
            }),
            Err(error) => Err(JwksFetchError::Parse {
                url: shorten(jwks_url.as_str()),
                error,
            }),
        }
    }

    /// OIDC discovery: the issuer's `jwks_uri`, after checking the document names the issuer.
    async fn discover(&self, issuer_url: &str) -> Result<Url, JwksFetchError> {
        let issuer = self.checked_url(issuer_url)?;
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(JwksFetchError::InvalidUrl {
                url: shorten(issuer_url),
                reason: "an issuer URL has no query or fragment",
            });
        }
        let discovery_url = self.checked_url(&format!("{}{DISCOVERY_PATH}", issuer_url.trim_end_matches('/')))?;
        let body = self.get_limited(&discovery_url, MAX_DISCOVERY_BYTES).await?;
        let invalid = |reason: String| JwksFetchError::InvalidDiscovery {
            url: shorten(discovery_url.as_str()),
            reason: shorten(&reason),
        };
        // serde would also read a struct from a JSON array: only an object is a discovery document.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(invalid("not a JSON object".to_owned()));
        }
        let document: Discovery = serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
        if document.issuer.as_deref() != Some(issuer_url) {
            return Err(JwksFetchError::IssuerMismatch {
                expected: shorten(issuer_url),
                found: document.issuer.as_deref().map(shorten),
            });
        }
        match document.jwks_uri.as_deref() {
            Some(jwks_uri) if !jwks_uri.is_empty() => self.checked_url(jwks_uri),
            _ => Err(JwksFetchError::MissingJwksUri {
                url: shorten(discovery_url.as_str()),
            }),
        }
    }

    /// Parses `text` as an absolute URL with a host, over https (or http when allowed).
    fn checked_url(&self, text: &str) -> Result<Url, JwksFetchError> {
        let url = Url::parse(text).map_err(|_| JwksFetchError::InvalidUrl {
            url: shorten(text),
            reason: "not an absolute URL",
        })?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(JwksFetchError::InsecureUrl { url: shorten(text) }),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(JwksFetchError::InvalidUrl {
                url: shorten(text),
                reason: "the URL has no host",
            });
        }
        Ok(url)
    }

    /// `GET url`, requiring 200 and reading at most `limit` bytes of body: the body is read
    /// chunk by chunk and the response dropped as soon as it passes the limit.
    async fn get_limited(&self, url: &Url, limit: usize) -> Result<Vec<u8>, JwksFetchError> {
        let shown = || shorten(url.as_str());
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                JwksFetchError::Timeout { url: shown() }
            } else {
                JwksFetchError::Transport {
                    url: shown(),
                    reason: error_chain(&e.without_url()),
                }
            }
        };
        let mut response = self
            .client
            .get(url.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .timeout(self.timeout)
            .send()
            .await
            .map_err(transport)?;
        if response.status() != StatusCode::OK {
            return Err(JwksFetchError::Status {
                url: shown(),
                status: response.status().as_u16(),
            });
        }
        let too_large = || JwksFetchError::TooLarge {
            url: shown(),
            max: limit,
        };
        // A declared length over the limit is refused at once; a smaller one is not trusted.
        if response.content_length().is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if chunk.len() > limit.saturating_sub(body.len()) {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// An error and its sources, `: `-separated, shortened.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let text = crate::error::chain(error);
    match text.char_indices().nth(4 * MAX_ECHO_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
