//! Validated configuration: what the gateway runs on. Every value here has been checked, every
//! default applied and every path made absolute, so the hot path never second-guesses it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portcullis_rules::schema::ByteSize;
use portcullis_rules::{KnownRegistry, Protocol};

use super::raw::{self, LogFormat};
use super::ConfigError;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Process-wide settings.
    pub server: Server,
    /// Public listeners.
    pub listeners: Vec<Listener>,
    /// The admin listener's address.
    pub admin_address: SocketAddr,
    /// Rules files and reload settings.
    pub rules: RulesSettings,
    /// Log settings.
    pub logging: Logging,
    /// Registries, in the order written.
    pub registries: Vec<Arc<Registry>>,
}

impl Config {
    /// The registries as the rules compiler knows them.
    pub fn known_registries(&self) -> Vec<KnownRegistry> {
        self.registries
            .iter()
            .map(|r| KnownRegistry {
                name: r.name.clone(),
                protocol: r.protocol,
            })
            .collect()
    }
}

/// Process-wide settings.
#[derive(Debug, Clone)]
pub struct Server {
    /// Proxy worker threads.
    pub threads: usize,
    /// Grace period for in-flight requests on shutdown.
    pub grace_period: Duration,
    /// Hard shutdown limit after the grace period.
    pub shutdown_timeout: Duration,
    /// PID file for graceful upgrade.
    pub pid_file: Option<PathBuf>,
    /// Socket for listener hand-over on graceful upgrade.
    pub upgrade_socket: Option<PathBuf>,
}

/// A public listener.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Bound address.
    pub address: SocketAddr,
    /// TLS material, when the listener speaks HTTPS.
    pub tls: Option<ListenerTls>,
}

/// Certificate and key files for a TLS listener (checked readable at validation).
#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Rules files and reload behaviour.
#[derive(Debug, Clone)]
pub struct RulesSettings {
    /// Absolute paths of the rules files.
    pub files: Vec<PathBuf>,
    /// Whether file changes trigger a reload.
    pub watch: bool,
    /// Quiet time before a reload after a change.
    pub debounce: Duration,
}

/// Log settings.
#[derive(Debug, Clone)]
pub struct Logging {
    /// Line format.
    pub format: LogFormat,
    /// `tracing` filter directive.
    pub level: String,
}

/// How requests are matched to a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Lower-case host name to match, without port; any host when `None`.
    pub host: Option<String>,
    /// Path prefix without a trailing slash; empty for the root.
    pub prefix: String,
}

impl Route {
    /// If `host` and `path` fall under this route, the path to send upstream.
    pub fn strip<'p>(&self, host: Option<&str>, path: &'p str) -> Option<&'p str> {
        if let Some(expected) = &self.host {
            if !host.is_some_and(|h| h.eq_ignore_ascii_case(expected)) {
                return None;
            }
        }
        if self.prefix.is_empty() {
            return Some(path);
        }
        let rest = path.strip_prefix(self.prefix.as_str())?;
        if rest.is_empty() {
            Some("/")
        } else if rest.starts_with('/') {
            Some(rest)
        } else {
            None
        }
    }

    /// Ordering key: more specific routes (with a host, longer prefixes) are tried first.
    fn specificity(&self) -> (bool, usize) {
        (self.host.is_some(), self.prefix.len())
    }
}

/// A registry behind the gateway.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Unique name.
    pub name: String,
    /// Protocol it speaks.
    pub protocol: Protocol,
    /// How requests reach it.
    pub route: Route,
    /// Hard limit on request bodies.
    pub max_body_bytes: u64,
    /// Its backend.
    pub upstream: Upstream,
}

/// A registry's backend.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port` as configured (for logs).
    pub display: String,
    /// Resolved address.
    pub address: SocketAddr,
    /// TLS settings, when the backend speaks HTTPS.
    pub tls: Option<UpstreamTls>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Read timeout.
    pub read_timeout: Duration,
    /// Write timeout.
    pub write_timeout: Duration,
    /// Idle pooled connection lifetime.
    pub idle_timeout: Duration,
    /// Readiness probe interval.
    pub health_check_interval: Duration,
}

/// TLS towards a backend.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// SNI and expected certificate name.
    pub sni: String,
    /// DER certificates of the CAs to trust instead of the system roots.
    pub ca_certificates: Option<Arc<Vec<Vec<u8>>>>,
}

const DEFAULT_ADMIN: &str = "127.0.0.1:9090";
const DEFAULT_MAX_BODY: u64 = 1 << 30;

struct Ctx<'a> {
    file: &'a Path,
    base: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn duration(&self, field: &str, value: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(text) => parse_duration(text).map_err(|reason| self.err(field, reason)),
        }
    }

    fn readable(&self, field: &str, path: &Path) -> Result<PathBuf, ConfigError> {
        let path = self.path(path);
        std::fs::metadata(&path).map_err(|e| self.err(field, format!("cannot read {}: {e}", path.display())))?;
        Ok(path)
    }
}

/// Parses `"250ms"`, `"5s"`, `"2m"`, `"1h"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as \"5s\" or \"250ms\""))?;
    let millis = match unit.trim() {
        "ms" => Some(number),
        "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        other => return Err(format!("unknown duration unit {other:?} (use ms, s, m or h)")),
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is out of range"))
}

fn socket_addr(ctx: &Ctx<'_>, field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| ctx.err(field, format!("{text:?} is not an IP:port address")))
}

/// Validates a raw configuration read from `file`.
pub fn validate(file: &Path, raw: raw::RawConfig) -> Result<Config, ConfigError> {
    let base = file.parent().unwrap_or(Path::new("."));
    let ctx = Ctx { file, base };

    let threads = raw
        .server
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 || threads > 1024 {
        return Err(ctx.err("server.threads", "must be between 1 and 1024"));
    }
    let server = Server {
        threads,
        grace_period: ctx.duration(
            "server.grace_period",
            raw.server.grace_period.as_deref(),
            Duration::from_secs(30),
        )?,
        shutdown_timeout: ctx.duration(
            "server.shutdown_timeout",
            raw.server.shutdown_timeout.as_deref(),
            Duration::from_secs(10),
        )?,
        pid_file: raw.server.pid_file.as_deref().map(|p| ctx.path(p)),
        upgrade_socket: raw.server.upgrade_socket.as_deref().map(|p| ctx.path(p)),
    };

    if raw.listeners.is_empty() {
        return Err(ctx.err("listener", "at least one [[listener]] is required"));
    }
    let mut listeners = Vec::with_capacity(raw.listeners.len());
    for (i, l) in raw.listeners.iter().enumerate() {
        let field = format!("listener[{i}]");
        let address = socket_addr(&ctx, &format!("{field}.address"), &l.address)?;
        if listeners.iter().any(|o: &Listener| o.address == address) {
            return Err(ctx.err(format!("{field}.address"), "another listener uses this address"));
        }
        let tls = match &l.tls {
            None => None,
            Some(t) => Some(ListenerTls {
                certificate: ctx.readable(&format!("{field}.tls.certificate"), &t.certificate)?,
                key: ctx.readable(&format!("{field}.tls.key"), &t.key)?,
            }),
        };
        listeners.push(Listener { address, tls });
    }

    let admin_address = socket_addr(
        &ctx,
        "admin.address",
        raw.admin.address.as_deref().unwrap_or(DEFAULT_ADMIN),
    )?;
    if listeners.iter().any(|l| l.address == admin_address) {
        return Err(ctx.err(
            "admin.address",
            "the admin listener must not share a public listener's address",
        ));
    }

    if raw.rules.files.is_empty() {
        return Err(ctx.err("rules.files", "at least one rules file is required"));
    }
    let rules = RulesSettings {
        files: raw.rules.files.iter().map(|p| ctx.path(p)).collect(),
        watch: raw.rules.watch.unwrap_or(true),
        debounce: ctx.duration(
            "rules.debounce",
            raw.rules.debounce.as_deref(),
            Duration::from_millis(250),
        )?,
    };

    let logging = Logging {
        format: raw.logging.format.unwrap_or(LogFormat::Human),
        level: raw.logging.level.unwrap_or_else(|| "info".to_owned()),
    };

    if raw.registries.is_empty() {
        return Err(ctx.err("registry", "at least one [[registry]] is required"));
    }
    let mut registries: Vec<Arc<Registry>> = Vec::with_capacity(raw.registries.len());
    for (i, r) in raw.registries.into_iter().enumerate() {
        let registry = validate_registry(&ctx, &format!("registry[{i}]"), r)?;
        if registries.iter().any(|o| o.name == registry.name) {
            return Err(ctx.err(
                format!("registry[{i}].name"),
                format!("duplicate registry name {:?}", registry.name),
            ));
        }
        if let Some(o) = registries.iter().find(|o| o.route == registry.route) {
            return Err(ctx.err(
                format!("registry[{i}]"),
                format!("same host and path prefix as registry {:?}", o.name),
            ));
        }
        registries.push(Arc::new(registry));
    }
    // Most specific first, so routing can take the first match.
    registries.sort_by_key(|r| std::cmp::Reverse(r.route.specificity()));

    Ok(Config {
        path: file.to_path_buf(),
        server,
        listeners,
        admin_address,
        rules,
        logging,
        registries,
    })
}

fn validate_registry(ctx: &Ctx<'_>, field: &str, raw: raw::RawRegistry) -> Result<Registry, ConfigError> {
    let name_ok = !raw.name.is_empty()
        && raw.name.len() <= 64
        && raw
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'));
    if !name_ok {
        return Err(ctx.err(
            format!("{field}.name"),
            "must be 1 to 64 characters of a-z, 0-9, '-' or '_'",
        ));
    }
    let host = match raw.host {
        None => None,
        Some(h) => {
            let h = h.to_ascii_lowercase();
            if h.is_empty() || h.contains(['/', ':', ' ']) {
                return Err(ctx.err(format!("{field}.host"), "must be a bare host name without port or path"));
            }
            Some(h)
        }
    };
    let prefix = raw.path_prefix.unwrap_or_else(|| "/".to_owned());
    if !prefix.starts_with('/')
        || prefix.contains("//")
        || prefix.split('/').any(|s| s == "." || s == "..")
        || prefix.contains(['?', '#', '%', ' '])
    {
        return Err(ctx.err(
            format!("{field}.path_prefix"),
            "must be an absolute path such as \"/pypi\" without '.', '..', '%', '?' or '#'",
        ));
    }
    let prefix = prefix.trim_end_matches('/').to_owned();
    let max_body_bytes = raw.max_body_bytes.map_or(DEFAULT_MAX_BODY, |ByteSize(b)| b);
    if max_body_bytes == 0 {
        return Err(ctx.err(format!("{field}.max_body_bytes"), "must be greater than zero"));
    }
    let upstream = validate_upstream(ctx, &format!("{field}.upstream"), raw.upstream)?;
    Ok(Registry {
        name: raw.name,
        protocol: raw.protocol,
        route: Route { host, prefix },
        max_body_bytes,
        upstream,
    })
}

fn validate_upstream(ctx: &Ctx<'_>, field: &str, raw: raw::RawUpstream) -> Result<Upstream, ConfigError> {
    let address = raw
        .address
        .to_socket_addrs()
        .map_err(|e| {
            ctx.err(
                format!("{field}.address"),
                format!("{:?} does not resolve: {e}", raw.address),
            )
        })?
        .next()
        .ok_or_else(|| {
            ctx.err(
                format!("{field}.address"),
                format!("{:?} resolves to nothing", raw.address),
            )
        })?;
    let host_part = raw
        .address
        .rsplit_once(':')
        .map_or(raw.address.as_str(), |(h, _)| h)
        .trim_matches(['[', ']'])
        .to_owned();
    let tls = if raw.tls.unwrap_or(false) {
        let ca_certificates = match &raw.ca_file {
            None => None,
            Some(p) => {
                let path = ctx.readable(&format!("{field}.ca_file"), p)?;
                let certs = crate::tls::read_pem_certificates(&path)
                    .map_err(|e| ctx.err(format!("{field}.ca_file"), e.to_string()))?;
                Some(Arc::new(certs))
            }
        };
        Some(UpstreamTls {
            sni: raw.sni.unwrap_or(host_part),
            ca_certificates,
        })
    } else {
        if raw.sni.is_some() || raw.ca_file.is_some() {
            return Err(ctx.err(field, "sni and ca_file need tls = true"));
        }
        None
    };
    Ok(Upstream {
        display: raw.address.clone(),
        address,
        tls,
        connect_timeout: ctx.duration(
            &format!("{field}.connect_timeout"),
            raw.connect_timeout.as_deref(),
            Duration::from_secs(5),
        )?,
        read_timeout: ctx.duration(
            &format!("{field}.read_timeout"),
            raw.read_timeout.as_deref(),
            Duration::from_secs(60),
        )?,
        write_timeout: ctx.duration(
            &format!("{field}.write_timeout"),
            raw.write_timeout.as_deref(),
            Duration::from_secs(60),
        )?,
        idle_timeout: ctx.duration(
            &format!("{field}.idle_timeout"),
            raw.idle_timeout.as_deref(),
            Duration::from_secs(60),
        )?,
        health_check_interval: ctx.duration(
            &format!("{field}.health_check_interval"),
            raw.health_check_interval.as_deref(),
            Duration::from_secs(5),
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn routes_strip_prefixes_on_segment_boundaries() {
        let r = Route {
            host: None,
            prefix: "/pypi".into(),
        };
        assert_eq!(r.strip(None, "/pypi/simple/"), Some("/simple/"));
        assert_eq!(r.strip(None, "/pypi"), Some("/"));
        assert_eq!(r.strip(None, "/pypix/simple"), None);
        let root = Route {
            host: Some("npm.example".into()),
            prefix: String::new(),
        };
        assert_eq!(root.strip(Some("NPM.example"), "/left-pad"), Some("/left-pad"));
        assert_eq!(root.strip(Some("other"), "/left-pad"), None);
        assert_eq!(root.strip(None, "/left-pad"), None);
    }
}
