//! `[registry.tuf]`: where a registry's committed uploads and deletions are fed for TUF
//! metadata (a Repository Service for TUF API), validated into [`TufFeed`].

use std::path::PathBuf;
use std::time::Duration;

use portcullis_rules::Protocol;

use super::{raw, ConfigError, Ctx, Secret};

/// A registry's TUF feed, validated.
#[derive(Debug, Clone)]
pub struct TufFeed {
    /// The RSTUF API's base URL, without a trailing slash (`http://rstuf.internal:8080`).
    pub api: String,
    /// The target path of an uploaded file, with `{project}`, `{version}` and `{filename}`
    /// placeholders.
    pub target_path: String,
    /// PyPI: the target path of a project's simple index page, with `{project}`; `None` signs
    /// no pages.
    pub index_path: Option<String>,
    /// A header (name, value) sent with every API request.
    pub header: Option<(http::HeaderName, Secret)>,
    /// DER certificates of the CAs that sign the API's certificate, instead of the system roots.
    pub ca_certificates: Option<Vec<Vec<u8>>>,
    /// PEM of the client certificate chain and key, for mTLS.
    pub client_identity: Option<Secret>,
    /// Most artifacts in one RSTUF task.
    pub batch: usize,
    /// Longest wait for one API call.
    pub timeout: Duration,
    /// How often a submitted task is polled.
    pub poll_interval: Duration,
    /// How many failures RSTUF may report for an event before it is set aside.
    pub max_attempts: u32,
    /// Age after which an upload still pending in the ledger is checked against the backend.
    pub reconcile_after: Duration,
}

impl TufFeed {
    /// The target path of a file of `project`.
    pub fn file_target(&self, project: &str, version: &str, filename: &str) -> String {
        fill(&self.target_path, project, version, filename)
    }

    /// The target path of `project`'s index page, when pages are signed.
    pub fn index_target(&self, project: &str) -> Option<String> {
        self.index_path.as_deref().map(|p| fill(p, project, "", ""))
    }
}

/// `template` with its placeholders filled in.
fn fill(template: &str, project: &str, version: &str, filename: &str) -> String {
    template
        .replace("{project}", project)
        .replace("{version}", version)
        .replace("{filename}", filename)
}

const DEFAULT_BATCH: usize = 64;
const MAX_BATCH: usize = 1000;
const PLACEHOLDERS: [&str; 3] = ["{project}", "{version}", "{filename}"];

pub(super) fn validate(
    ctx: &Ctx<'_>,
    field: &str,
    protocol: Protocol,
    raw: raw::RawTufFeed,
) -> Result<TufFeed, ConfigError> {
    let api = raw.api.trim_end_matches('/').to_owned();
    let url = reqwest::Url::parse(&api).map_err(|e| ctx.err(format!("{field}.api"), format!("{api:?}: {e}")))?;
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        other => {
            return Err(ctx.err(
                format!("{field}.api"),
                format!("scheme {other:?}: must be http or https"),
            ))
        }
    };
    if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(ctx.err(
            format!("{field}.api"),
            "must be a base URL such as \"http://rstuf.internal:8080\", without user, query or fragment",
        ));
    }
    let target_path = match raw.target_path {
        Some(t) => template(ctx, &format!("{field}.target_path"), t, "{filename}")?,
        None => match protocol {
            Protocol::Pypi => "packages/{filename}".to_owned(),
            Protocol::Npm => "{project}/-/{filename}".to_owned(),
        },
    };
    let index_path = match (protocol, raw.index_path) {
        (Protocol::Npm, Some(_)) => {
            return Err(ctx.err(
                format!("{field}.index_path"),
                "applies to PyPI registries only (npm package documents are not signed: docs/tuf.md)",
            ))
        }
        (Protocol::Npm, None) => None,
        (Protocol::Pypi, None) => Some("simple/{project}/index.html".to_owned()),
        (Protocol::Pypi, Some(t)) if t.is_empty() => None,
        (Protocol::Pypi, Some(t)) => {
            let t = template(ctx, &format!("{field}.index_path"), t, "{project}")?;
            if t.contains("{version}") || t.contains("{filename}") {
                return Err(ctx.err(format!("{field}.index_path"), "may use {project} only"));
            }
            Some(t)
        }
    };
    let header = match (raw.header, raw.header_value_file) {
        (None, None) => None,
        (Some(name), Some(file)) => {
            let header_name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ctx.err(format!("{field}.header"), format!("{name:?} is not a header name")))?;
            let path = ctx.readable(&format!("{field}.header_value_file"), &file)?;
            let value =
                Secret::read(&path, true).map_err(|e| ctx.err(format!("{field}.header_value_file"), e.to_string()))?;
            if value.expose().is_empty() || http::HeaderValue::from_bytes(value.expose()).is_err() {
                return Err(ctx.err(
                    format!("{field}.header_value_file"),
                    "must hold a non-empty header value (visible ASCII and spaces)",
                ));
            }
            Some((header_name, value))
        }
        _ => return Err(ctx.err(format!("{field}.header"), "header and header_value_file go together")),
    };
    if !https && (raw.ca_file.is_some() || raw.client_identity.is_some()) {
        return Err(ctx.err(field, "ca_file and client_identity need an https api"));
    }
    let ca_certificates = match &raw.ca_file {
        None => None,
        Some(p) => {
            let path = ctx.readable(&format!("{field}.ca_file"), p)?;
            Some(
                crate::tls::read_pem_certificates(&path)
                    .map_err(|e| ctx.err(format!("{field}.ca_file"), e.to_string()))?,
            )
        }
    };
    let client_identity = match &raw.client_identity {
        None => None,
        Some(p) => Some(identity(ctx, &format!("{field}.client_identity"), p)?),
    };
    let batch = raw.batch.unwrap_or(DEFAULT_BATCH);
    if !(1..=MAX_BATCH).contains(&batch) {
        return Err(ctx.err(format!("{field}.batch"), format!("must be 1 to {MAX_BATCH}")));
    }
    let max_attempts = raw.max_attempts.unwrap_or(5);
    if max_attempts == 0 {
        return Err(ctx.err(format!("{field}.max_attempts"), "must be at least 1"));
    }
    let timeout = ctx.duration(
        &format!("{field}.timeout"),
        raw.timeout.as_deref(),
        Duration::from_secs(30),
    )?;
    let poll_interval = ctx.duration(
        &format!("{field}.poll_interval"),
        raw.poll_interval.as_deref(),
        Duration::from_secs(1),
    )?;
    let reconcile_after = ctx.duration(
        &format!("{field}.reconcile_after"),
        raw.reconcile_after.as_deref(),
        Duration::from_secs(600),
    )?;
    for (name, value) in [
        ("timeout", timeout),
        ("poll_interval", poll_interval),
        ("reconcile_after", reconcile_after),
    ] {
        if value.is_zero() {
            return Err(ctx.err(format!("{field}.{name}"), "must be longer than zero"));
        }
    }
    Ok(TufFeed {
        api,
        target_path,
        index_path,
        header,
        ca_certificates,
        client_identity,
        batch,
        timeout,
        poll_interval,
        max_attempts,
        reconcile_after,
    })
}

/// A target path template: relative, `/`-separated, no `.`/`..` segments, only known
/// placeholders, and `required` among them.
fn template(ctx: &Ctx<'_>, field: &str, template: String, required: &str) -> Result<String, ConfigError> {
    let mut rest = template.clone();
    for p in PLACEHOLDERS {
        rest = rest.replace(p, "x");
    }
    let well_formed = !template.starts_with('/')
        && !template.contains("//")
        && !rest.contains(['{', '}', '?', '#', '%', '\\', ' '])
        && !template.split('/').any(|s| s.is_empty() || s == "." || s == "..")
        && template.contains(required);
    if well_formed {
        Ok(template)
    } else {
        Err(ctx.err(
            field,
            format!(
                "{template:?} must be a relative path such as \"packages/{{filename}}\" using {required}, \
                 without '.', '..', empty segments, '%', '?', '#' or placeholders other than {{project}}, {{version}}, {{filename}}"
            ),
        ))
    }
}

/// The client identity file, checked to hold a certificate and a private key.
fn identity(ctx: &Ctx<'_>, field: &str, path: &std::path::Path) -> Result<Secret, ConfigError> {
    let path: PathBuf = ctx.readable(field, path)?;
    let pem = Secret::read(&path, false).map_err(|e| ctx.err(field, e.to_string()))?;
    reqwest::Identity::from_pem(pem.expose())
        .map_err(|e| ctx.err(field, format!("not a PEM certificate chain with its private key: {e}")))?;
    Ok(pem)
}

#[cfg(test)]
#[path = "tuf_feed_tests.rs"]
mod tests;
