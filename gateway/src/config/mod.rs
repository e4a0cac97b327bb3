//! Configuration: the TOML file ([`raw`]) and the validated form the gateway runs on ([`validated`]).
//!
//! Listener and registry settings live here; policy lives in separate rules files that
//! `portcullis_rules` compiles and [`crate::reload`] swaps in at run time.

pub mod raw;
pub mod secret;
pub mod validated;

use std::path::{Path, PathBuf};

pub use secret::Secret;
pub use validated::{BackendCredential, Config, Registry, Route, TrustSettings, TufFeed, Upstream};

/// A configuration that cannot be used: the file, the field and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A value is missing, malformed or inconsistent.
    #[error("{file}: {field}: {reason}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The field path, e.g. `registry[0].upstream.address`, or a line and column.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Validates configuration `text` as if read from `path` (relative paths resolve against its folder).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid {
        file: path.to_path_buf(),
        field: portcullis_rules::compile::toml_error_location(text, &e),
        reason: e.message().to_owned(),
    })?;
    validated::validate(path, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[listener]]
address = "127.0.0.1:8080"
[rules]
files = ["rules.toml"]
[[registry]]
name = "pypi"
protocol = "pypi"
[registry.upstream]
address = "127.0.0.1:8081"
"#;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("/etc/portcullis/portcullis.toml"), text)
    }

    #[test]
    fn minimal_config_gets_defaults_and_absolute_paths() {
        let config = parse_str(MINIMAL).expect("valid");
        assert_eq!(config.admin_address.to_string(), "127.0.0.1:9090");
        assert_eq!(config.rules.files, vec![PathBuf::from("/etc/portcullis/rules.toml")]);
        let registry = &config.registries[0];
        assert_eq!(registry.route.prefix, "");
        assert_eq!(registry.max_body_bytes, 1 << 30);
        assert_eq!(registry.upstream.read_timeout.as_secs(), 60);
    }

    #[test]
    fn the_trusted_root_comes_from_public_good_tuf_by_default_and_sigstore_is_checked_by_field() {
        let config = parse_str(MINIMAL).expect("valid");
        let TrustSettings::Tuf(tuf) = &config.provenance.trust else {
            panic!("default is TUF: {:?}", config.provenance.trust);
        };
        assert_eq!(tuf.repository, "https://tuf-repo-cdn.sigstore.dev");
        assert_eq!(tuf.anchor_source, "shipped production root v16");
        assert_eq!(
            tuf.cache_dir,
            PathBuf::from("/etc/portcullis/data/sigstore-tuf/tuf-repo-cdn.sigstore.dev")
        );
        assert_eq!(tuf.refresh_interval.as_secs(), 3600);
        assert_eq!(tuf.timeout.as_secs(), 30);

        let text = format!(
            "{MINIMAL}[sigstore]\ninstance = \"staging\"\nrepository = \"http://127.0.0.1:8000/mirror/\"\nrefresh_interval = \"5m\"\n"
        );
        let config = parse_str(&text).expect("valid");
        let TrustSettings::Tuf(tuf) = &config.provenance.trust else {
            panic!("TUF");
        };
        assert_eq!(tuf.anchor_source, "shipped staging root v14");
        assert_eq!(
            tuf.cache_dir,
            PathBuf::from("/etc/portcullis/data/sigstore-tuf/127.0.0.1_8000_mirror")
        );
        assert_eq!(tuf.refresh_interval.as_secs(), 300);

        let root = crate::test_fixtures::dir().join("trusted-roots/public-good-production.trusted_root.json");
        let legacy = format!(
            "{MINIMAL}[provenance]\ntrusted_root = {:?}\n",
            root.display().to_string()
        );
        assert!(matches!(
            parse_str(&legacy).expect("valid").provenance.trust,
            TrustSettings::File { .. }
        ));
        let file = format!(
            "{MINIMAL}[sigstore]\ntrust = \"file\"\ntrusted_root = {:?}\n",
            root.display().to_string()
        );
        match parse_str(&file).expect("valid").provenance.trust {
            TrustSettings::File { path, root } => {
                assert!(path.ends_with("public-good-production.trusted_root.json"));
                assert!(!root.tlogs.is_empty());
            }
            other => panic!("{other:?}"),
        }

        for (section, field) in [
            ("trust = \"magic\"", "sigstore.trust"),
            ("instance = \"prod\"", "sigstore.instance"),
            ("repository = \"ftp://tuf.example\"", "sigstore.repository"),
            ("repository = \"not a url\"", "sigstore.repository"),
            ("refresh_interval = \"10s\"", "sigstore.refresh_interval"),
            ("refresh_interval = \"2d\"", "sigstore.refresh_interval"),
            ("timeout = \"0s\"", "sigstore.timeout"),
            ("root = \"/nonexistent/root.json\"", "sigstore.root"),
            ("trust = \"file\"", "sigstore.trusted_root"),
            ("trust = \"file\"\ninstance = \"staging\"", "sigstore.instance"),
            ("trusted_root = \"x.json\"", "sigstore.trusted_root"),
        ] {
            match parse_str(&format!("{MINIMAL}[sigstore]\n{section}\n")) {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field, "{section}"),
                other => panic!("{section}: {other:?}"),
            }
        }
        match parse_str(&format!("{legacy}[sigstore]\n")) {
            Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, "provenance.trusted_root"),
            other => panic!("{other:?}"),
        }
        // A root that is not a TUF root signed by its own keys is refused.
        match parse_str(&format!(
            "{MINIMAL}[sigstore]\nroot = {:?}\n",
            root.display().to_string()
        )) {
            Err(ConfigError::Invalid { field, reason, .. }) => {
                assert_eq!(field, "sigstore.root");
                assert!(reason.contains("not a TUF root"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn client_limits_default_and_are_checked_by_field() {
        let config = parse_str(MINIMAL).expect("valid");
        assert_eq!(config.client, validated::ClientLimits::default());
        assert_eq!(config.client.header_timeout.as_secs(), 30);
        let text =
            format!("{MINIMAL}[client]\nheader_timeout = \"2s\"\nidle_timeout = \"5s\"\nmax_connections = 100\nread_timeout = \"500ms\"\nmin_body_rate = \"0\"\n");
        let config = parse_str(&text).expect("valid");
        assert_eq!(config.client.header_timeout.as_secs(), 2);
        assert_eq!(config.client.idle_timeout.as_secs(), 5);
        assert_eq!(config.client.max_connections, 100);
        assert_eq!(config.client.read_timeout.as_millis(), 500);
        assert_eq!(config.client.min_body_rate, 0);
        for (line, field) in [
            ("header_timeout = \"0s\"", "client.header_timeout"),
            ("idle_timeout = \"0s\"", "client.idle_timeout"),
            ("max_connections = 0", "client.max_connections"),
            ("read_timeout = \"later\"", "client.read_timeout"),
        ] {
            match parse_str(&format!("{MINIMAL}[client]\n{line}\n")) {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected an error on {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn scheduler_and_backend_keepalive_default_and_are_checked() {
        let config = parse_str(MINIMAL).expect("valid");
        assert!(!config.server.work_stealing);
        assert_eq!(config.server.backend_keepalive, 1024);
        let with_server =
            |lines: &str| MINIMAL.replacen("[[listener]]", &format!("[server]\n{lines}\n\n[[listener]]"), 1);
        let config = parse_str(&with_server("work_stealing = true\nbackend_keepalive = 16")).expect("valid");
        assert!(config.server.work_stealing);
        assert_eq!(config.server.backend_keepalive, 16);
        for value in ["0", "65537"] {
            match parse_str(&with_server(&format!("backend_keepalive = {value}"))) {
                Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, "server.backend_keepalive"),
                other => panic!("expected an error on backend_keepalive = {value}, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_pypi_deletion_api_defaults_to_remove_pkg_and_devpi_is_opted_into() {
        use crate::protocol::pypi::DeletionApi;
        let config = parse_str(MINIMAL).expect("valid");
        assert_eq!(config.registries[0].pypi_deletion_api, DeletionApi::RemovePkg);
        let with = |line: &str| MINIMAL.replace("[registry.upstream]", &format!("{line}\n[registry.upstream]"));
        let config = parse_str(&with("deletion_api = \"devpi\"")).expect("valid");
        assert_eq!(config.registries[0].pypi_deletion_api, DeletionApi::Devpi);
        assert!(parse_str(&with("deletion_api = \"warehouse\"")).is_err());
        let npm = with("deletion_api = \"devpi\"").replace("protocol = \"pypi\"", "protocol = \"npm\"");
        match parse_str(&npm) {
            Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, "registry[0].deletion_api"),
            other => panic!("expected an error on deletion_api, got {other:?}"),
        }
    }

    #[test]
    fn unknown_fields_report_line_and_reason() {
        let text = MINIMAL.replace("protocol = \"pypi\"", "protocol = \"pypi\"\nprotocl = 1");
        let err = parse_str(&text).expect_err("unknown field");
        let msg = err.to_string();
        assert!(
            msg.contains("portcullis.toml") && msg.contains("line 9") && msg.contains("unknown field"),
            "{msg}"
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (MINIMAL.replace("127.0.0.1:8080", "nowhere"), "listener[0].address"),
            (
                MINIMAL.replace("name = \"pypi\"", "name = \"PyPI!\""),
                "registry[0].name",
            ),
            (
                MINIMAL.replace("[registry.upstream]", "path_prefix = \"/a/../b\"\n[registry.upstream]"),
                "registry[0].path_prefix",
            ),
            (
                MINIMAL.replace(
                    "address = \"127.0.0.1:8081\"",
                    "address = \"127.0.0.1:8081\"\nread_timeout = \"soon\"",
                ),
                "registry[0].upstream.read_timeout",
            ),
            (MINIMAL.replace("files = [\"rules.toml\"]", "files = []"), "rules.files"),
        ];
        for (text, field) in cases {
            match parse_str(&text) {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected an error on {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_state_backend_defaults_to_sqlite_and_postgres_settings_are_checked_by_field() {
        let config = parse_str(MINIMAL).expect("valid");
        assert!(matches!(config.state_backend, validated::StateBackend::Sqlite));

        let dir = tempfile::tempdir().expect("tempdir");
        let dsn = dir.path().join("dsn");
        std::fs::write(&dsn, "postgres://portcullis:hunter2@db.internal:5432/portcullis\n").expect("dsn");
        let with = |state: &str| format!("{MINIMAL}\n[state]\n{state}\n");
        let file = format!("url_file = {:?}", dsn.display().to_string());
        let config = parse_str(&with(&format!(
            "backend = \"postgres\"\n{file}\npool_size = 3\nacquire_timeout = \"750ms\""
        )))
        .expect("valid postgres settings");
        match &config.state_backend {
            validated::StateBackend::Postgres(pg) => {
                assert_eq!(pg.url, "postgres://portcullis:hunter2@db.internal:5432/portcullis");
                assert_eq!(pg.pool_size, 3);
                assert_eq!(pg.acquire_timeout, std::time::Duration::from_millis(750));
                assert_eq!(pg.statement_timeout, std::time::Duration::from_secs(5));
            }
            other => panic!("expected postgres, got {other:?}"),
        }
        assert!(
            !format!("{config:?}").contains("hunter2"),
            "the DSN is redacted in Debug"
        );

        let missing = dir.path().join("absent");
        let cases = [
            (with("backend = \"mysql\""), "state.backend"),
            (with("backend = \"postgres\""), "state.url_file"),
            (
                with(&format!(
                    "backend = \"postgres\"\nurl_file = {:?}",
                    missing.display().to_string()
                )),
                "state.url_file",
            ),
            (
                with("backend = \"postgres\"\nurl_env = \"PORTCULLIS_TEST_UNSET_DSN_VARIABLE\""),
                "state.url_env",
            ),
            (
                with(&format!("backend = \"postgres\"\n{file}\npool_size = 0")),
                "state.pool_size",
            ),
            (
                with(&format!(
                    "backend = \"postgres\"\n{file}\nstatement_timeout = \"later\""
                )),
                "state.statement_timeout",
            ),
            (
                with(&format!("backend = \"postgres\"\n{file}\nacquire_timeout = \"0s\"")),
                "state.acquire_timeout",
            ),
            (with(&file), "state.url_file"),
        ];
        for (text, field) in cases {
            match parse_str(&text) {
                Err(ConfigError::Invalid { field: f, reason, .. }) => {
                    assert_eq!(f, field, "{reason}");
                    assert!(!reason.contains("hunter2"), "{reason}");
                }
                other => panic!("expected an error on {field}, got {other:?}"),
            }
        }
        std::fs::write(&dsn, "mysql://root:hunter2@db/x\n").expect("dsn");
        match parse_str(&with(&format!("backend = \"postgres\"\n{file}"))) {
            Err(ConfigError::Invalid { field, reason, .. }) => {
                assert_eq!(field, "state.url_file");
                assert!(!reason.contains("hunter2"), "{reason}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn duplicate_routes_are_refused() {
        let text = format!("{MINIMAL}\n[[registry]]\nname = \"other\"\nprotocol = \"npm\"\n[registry.upstream]\naddress = \"127.0.0.1:8082\"\n");
        let err = parse_str(&text).expect_err("same route");
        assert!(err.to_string().contains("same host and path prefix"), "{err}");
    }
}
