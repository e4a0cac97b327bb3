//! One TUF client of a Sigstore repository, on `sigstore-tuf`: the library walks the root
//! chain (each version signed by a threshold of the one before), refuses rollbacks and frozen
//! (expired) metadata, pins snapshot and targets versions, and checks the target's length and
//! hash. This module only chooses the transport (the network, or the cache alone at start-up),
//! names the failure for metrics and operators, and reads the verified `trusted_root.json` out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sigstore_tuf::{FileStore, HttpRepository, StoreRepository, TrustedMetadataSet, Updater};

/// The target that carries the Sigstore trusted root.
pub const TRUSTED_ROOT_TARGET: &str = "trusted_root.json";

/// How the gateway reaches one TUF repository, validated from `[sigstore]`.
#[derive(Debug, Clone)]
pub struct TufSettings {
    /// The repository's base URL (metadata at `<url>/`, targets at `<url>/targets/`).
    pub repository: String,
    /// The initial `root.json` (the trust anchor).
    pub anchor: Vec<u8>,
    /// Where the anchor came from, for `/trust` (`embedded production root v16`, a path).
    pub anchor_source: String,
    /// Where verified metadata and the target are cached between runs.
    pub cache_dir: PathBuf,
    /// How often the repository is asked for new metadata.
    pub refresh_interval: Duration,
    /// Bound on each request to the repository (the slow-retrieval attack).
    pub timeout: Duration,
    /// Extra CA certificates (DER) trusted for an `https` mirror.
    pub extra_roots_der: Vec<Vec<u8>>,
}

/// One TUF role's version and expiry as verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RoleVersion {
    /// The role's version.
    pub version: u64,
    /// When it expires (Unix seconds).
    pub expires: i64,
}

/// The four top-level roles that vouch for a trusted root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TufRoles {
    /// `root`.
    pub root: RoleVersion,
    /// `timestamp`.
    pub timestamp: RoleVersion,
    /// `snapshot`.
    pub snapshot: RoleVersion,
    /// `targets`.
    pub targets: RoleVersion,
}

impl TufRoles {
    /// The roles of a refreshed metadata set; `None` before a refresh has verified all four.
    fn of(trusted: &TrustedMetadataSet) -> Option<TufRoles> {
        let root = trusted.root();
        let timestamp = trusted.timestamp()?;
        let snapshot = trusted.snapshot()?;
        let targets = trusted.targets_role("targets")?;
        Some(TufRoles {
            root: role(root.version, root.expires),
            timestamp: role(timestamp.version, timestamp.expires),
            snapshot: role(snapshot.version, snapshot.expires),
            targets: role(targets.version, targets.expires),
        })
    }

    /// The role that expires first and when: past that instant the metadata may no longer be
    /// relied on (TUF's freeze protection), whatever the trusted root itself says.
    pub fn first_expiry(&self) -> (&'static str, i64) {
        [
            ("root", self.root.expires),
            ("timestamp", self.timestamp.expires),
            ("snapshot", self.snapshot.expires),
            ("targets", self.targets.expires),
        ]
        .into_iter()
        .min_by_key(|(_, at)| *at)
        .unwrap_or(("timestamp", self.timestamp.expires))
    }

    /// `(role, version)` of each role, for metrics.
    pub fn versions(&self) -> [(&'static str, u64); 4] {
        [
            ("root", self.root.version),
            ("timestamp", self.timestamp.version),
            ("snapshot", self.snapshot.version),
            ("targets", self.targets.version),
        ]
    }
}

fn role(version: u64, expires: jiff::Timestamp) -> RoleVersion {
    RoleVersion {
        version,
        expires: expires.as_second(),
    }
}

/// What a successful refresh verified.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The `trusted_root.json` target's bytes (length and hash checked against `targets`).
    pub trusted_root: Vec<u8>,
    /// The roles that vouched for it.
    pub roles: TufRoles,
}

/// Why a refresh failed, as a stable label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The repository (or the cache) could not be read.
    Unreachable,
    /// Start-up from the cache alone, and there is no cache yet.
    NoCache,
    /// Metadata past its expiry (a freeze attack, or a repository not kept up).
    Expired,
    /// A role's version went backwards (a rollback attack).
    Rollback,
    /// A target's or a metadata file's length or hash differs from what was pinned.
    Integrity,
    /// Too few valid signatures, or keys that cannot be used.
    Signature,
    /// Anything else the library refused (malformed metadata, a missing target).
    Malformed,
    /// The verified `trusted_root.json` target is not a trusted root this gateway can use.
    InvalidRoot,
}

impl FailureKind {
    /// The label used in metrics, `/trust` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Unreachable => "unreachable",
            FailureKind::NoCache => "no_cache",
            FailureKind::Expired => "expired",
            FailureKind::Rollback => "rollback",
            FailureKind::Integrity => "integrity",
            FailureKind::Signature => "signature",
            FailureKind::Malformed => "malformed",
            FailureKind::InvalidRoot => "invalid_root",
        }
    }

    fn of(error: &sigstore_tuf::Error) -> FailureKind {
        use sigstore_tuf::Error as E;
        match error {
            E::Transport { .. } | E::Io { .. } => FailureKind::Unreachable,
            E::Expired { .. } => FailureKind::Expired,
            E::Rollback { .. } | E::BadRootVersion { .. } => FailureKind::Rollback,
            E::IntegrityMismatch(_) => FailureKind::Integrity,
            E::ThresholdNotMet { .. }
            | E::DuplicateSignature { .. }
            | E::Crypto(_)
            | E::UnusableKey { .. }
            | E::UnsupportedScheme { .. } => FailureKind::Signature,
            _ => FailureKind::Malformed,
        }
    }
}

/// A failed refresh: what kind, and the library's words (with their causes).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TufError {
    /// The kind, for metrics.
    pub kind: FailureKind,
    /// What happened.
    pub message: String,
}

impl From<sigstore_tuf::Error> for TufError {
    fn from(error: sigstore_tuf::Error) -> Self {
        TufError {
            kind: FailureKind::of(&error),
            message: crate::error::chain(&error),
        }
    }
}

/// A TUF client of one repository. It keeps what it verified between refreshes (the newest
/// root, the version floors), and writes every verified file through to the cache directory,
/// from which a later run starts.
pub struct TufClient {
    updater: Updater,
}

impl std::fmt::Debug for TufClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TufClient").field("updater", &self.updater).finish()
    }
}

impl TufClient {
    /// A client that fetches from the repository over HTTP(S).
    pub fn online(settings: &TufSettings) -> Result<TufClient, TufError> {
        let mut http = reqwest::Client::builder()
            .connect_timeout(settings.timeout)
            .read_timeout(settings.timeout)
            .timeout(settings.timeout.saturating_mul(4))
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")));
        for der in &settings.extra_roots_der {
            let cert = reqwest::Certificate::from_der(der).map_err(|e| setup(format!("[sigstore] ca_file: {e}")))?;
            http = http.add_root_certificate(cert);
        }
        let http = http
            .build()
            .map_err(|e| setup(format!("an HTTP client for TUF: {e}")))?;
        let repository = HttpRepository::new(&settings.repository)?.with_http_client(http);
        let updater = Updater::new(repository, &settings.anchor)?.with_store(FileStore::new(&settings.cache_dir));
        Ok(TufClient { updater })
    }

    /// A client that reads only the cache directory: every file is verified again from the
    /// anchor, and metadata past its expiry is refused, so a cache is used while it is valid.
    pub fn cache_only(settings: &TufSettings) -> Result<TufClient, TufError> {
        if !has_cache(&settings.cache_dir) {
            return Err(TufError {
                kind: FailureKind::NoCache,
                message: format!("no cached TUF metadata in {}", settings.cache_dir.display()),
            });
        }
        let repository = StoreRepository::new(FileStore::new(&settings.cache_dir));
        let updater = Updater::new(repository, &settings.anchor)?.with_store(FileStore::new(&settings.cache_dir));
        Ok(TufClient { updater })
    }

    /// Runs the TUF refresh workflow at `now` (Unix seconds) and reads the verified
    /// `trusted_root.json` target (from the cache when its hash still matches).
    pub async fn refresh(&mut self, now: i64) -> Result<Fetched, TufError> {
        let now = jiff::Timestamp::from_second(now).map_err(|e| setup(format!("the clock: {e}")))?;
        self.updater.refresh(now).await?;
        let trusted_root = self.updater.get_target(TRUSTED_ROOT_TARGET, now).await?;
        let roles = TufRoles::of(self.updater.trusted()).ok_or_else(|| TufError {
            kind: FailureKind::Malformed,
            message: "the refresh left a role unverified".to_owned(),
        })?;
        Ok(Fetched { trusted_root, roles })
    }
}

/// Whether `dir` holds metadata from an earlier refresh.
fn has_cache(dir: &Path) -> bool {
    dir.join("timestamp.json").is_file()
}

fn setup(message: String) -> TufError {
    TufError {
        kind: FailureKind::Unreachable,
        message,
    }
}
