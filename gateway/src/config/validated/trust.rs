//! `[sigstore]` (and the older `[provenance] trusted_root`): where the Sigstore trusted root
//! comes from, validated into [`TrustSettings`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{raw, ConfigError, Ctx};
use crate::sigstore::anchors::Instance;
use crate::sigstore::tuf::TufSettings;

/// Where the Sigstore trusted root comes from, validated.
#[derive(Debug, Clone)]
pub enum TrustSettings {
    /// A `trusted_root.json` file, read and parsed at validation; it changes with a restart.
    File {
        /// The file.
        path: PathBuf,
        /// Its root.
        root: Arc<portcullis_verify::TrustedRoot>,
    },
    /// A TUF repository, refreshed while the gateway runs.
    Tuf(TufSettings),
}

/// Shortest refresh interval accepted (the public-good timestamp changes daily at most).
const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// Longest refresh interval accepted (the public-good timestamp lives for days, not weeks).
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

pub(super) fn validate(
    ctx: &Ctx<'_>,
    provenance: &raw::RawProvenance,
    sigstore: Option<&raw::RawSigstore>,
    state_dir: &Path,
) -> Result<TrustSettings, ConfigError> {
    let default = raw::RawSigstore::default();
    let raw = match (sigstore, &provenance.trusted_root) {
        (Some(_), Some(_)) => {
            return Err(ctx.err(
                "provenance.trusted_root",
                "not allowed together with [sigstore]: write [sigstore] trust = \"file\" and trusted_root there",
            ))
        }
        (None, Some(path)) => return file(ctx, "provenance.trusted_root", path),
        (Some(raw), None) => raw,
        (None, None) => &default,
    };
    match raw.trust.as_deref().unwrap_or("tuf") {
        "file" => {
            for (field, set) in [
                ("instance", raw.instance.is_some()),
                ("repository", raw.repository.is_some()),
                ("root", raw.root.is_some()),
                ("cache_dir", raw.cache_dir.is_some()),
                ("refresh_interval", raw.refresh_interval.is_some()),
                ("timeout", raw.timeout.is_some()),
                ("ca_file", raw.ca_file.is_some()),
            ] {
                if set {
                    return Err(ctx.err(format!("sigstore.{field}"), "only with trust = \"tuf\""));
                }
            }
            let path = raw
                .trusted_root
                .as_deref()
                .ok_or_else(|| ctx.err("sigstore.trusted_root", "required with trust = \"file\""))?;
            file(ctx, "sigstore.trusted_root", path)
        }
        "tuf" => tuf(ctx, raw, state_dir).map(TrustSettings::Tuf),
        other => Err(ctx.err(
            "sigstore.trust",
            format!("unknown source {other:?}: \"tuf\" or \"file\""),
        )),
    }
}

fn file(ctx: &Ctx<'_>, field: &str, path: &Path) -> Result<TrustSettings, ConfigError> {
    let path = ctx.readable(field, path)?;
    let bytes = std::fs::read(&path).map_err(|e| ctx.err(field, e.to_string()))?;
    let root = portcullis_verify::TrustedRoot::from_json(&bytes).map_err(|e| ctx.err(field, e.to_string()))?;
    Ok(TrustSettings::File {
        path,
        root: Arc::new(root),
    })
}

fn tuf(ctx: &Ctx<'_>, raw: &raw::RawSigstore, state_dir: &Path) -> Result<TufSettings, ConfigError> {
    if raw.trusted_root.is_some() {
        return Err(ctx.err("sigstore.trusted_root", "only with trust = \"file\""));
    }
    let instance = match raw.instance.as_deref() {
        None => Instance::Production,
        Some(name) => Instance::from_name(name).ok_or_else(|| {
            ctx.err(
                "sigstore.instance",
                format!("unknown instance {name:?}: \"production\" or \"staging\""),
            )
        })?,
    };
    let repository = raw
        .repository
        .clone()
        .unwrap_or_else(|| instance.repository().to_owned());
    let url = reqwest::Url::parse(&repository).map_err(|e| ctx.err("sigstore.repository", e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ctx.err("sigstore.repository", "must be an http:// or https:// URL"));
    }
    let (anchor, field, anchor_from) = match &raw.root {
        None => (
            instance.anchor().to_vec(),
            "sigstore.instance",
            format!("shipped {} root", instance.name()),
        ),
        Some(path) => {
            let path = ctx.readable("sigstore.root", path)?;
            let anchor = std::fs::read(&path).map_err(|e| ctx.err("sigstore.root", e.to_string()))?;
            (anchor, "sigstore.root", path.display().to_string())
        }
    };
    let version = sigstore_tuf::TrustedMetadataSet::from_root(&anchor)
        .map(|t| t.root().version)
        .map_err(|e| ctx.err(field, format!("not a TUF root signed by its own keys: {e}")))?;
    let anchor_source = match &raw.root {
        None => format!("{anchor_from} v{version}"),
        Some(_) => format!("{anchor_from} (root v{version})"),
    };
    let refresh_interval = ctx.duration(
        "sigstore.refresh_interval",
        raw.refresh_interval.as_deref(),
        Duration::from_secs(3600),
    )?;
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&refresh_interval) {
        return Err(ctx.err("sigstore.refresh_interval", "must be between 1m and 24h"));
    }
    let timeout = ctx.duration("sigstore.timeout", raw.timeout.as_deref(), Duration::from_secs(30))?;
    if timeout.is_zero() || timeout > Duration::from_secs(300) {
        return Err(ctx.err("sigstore.timeout", "must be longer than zero and at most 5m"));
    }
    let extra_roots_der = match &raw.ca_file {
        None => Vec::new(),
        Some(p) => {
            let path = ctx.readable("sigstore.ca_file", p)?;
            crate::tls::read_pem_certificates(&path).map_err(|e| ctx.err("sigstore.ca_file", e.to_string()))?
        }
    };
    let cache_dir = match &raw.cache_dir {
        Some(dir) => ctx.path(dir),
        None => state_dir.join("sigstore-tuf").join(cache_name(&url)),
    };
    Ok(TufSettings {
        repository,
        anchor,
        anchor_source,
        cache_dir,
        refresh_interval,
        timeout,
        extra_roots_der,
    })
}

/// A directory name for a repository's cache: its host, port and path, so that two
/// repositories never share a cache.
fn cache_name(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("repository");
    let mut name = match url.port() {
        Some(port) => format!("{host}_{port}"),
        None => host.to_owned(),
    };
    name.push_str(url.path().trim_end_matches('/'));
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
