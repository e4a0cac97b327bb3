use std::path::Path;

use crate::config::{parse, ConfigError};

const BASE: &str = r#"
[[listener]]
address = "127.0.0.1:8080"
[rules]
files = ["rules.toml"]
[[registry]]
name = "pypi"
protocol = "PROTOCOL"
[registry.upstream]
address = "127.0.0.1:8081"
"#;

fn with_feed(protocol: &str, feed: &str) -> Result<crate::config::Config, ConfigError> {
    let text = format!("{}[registry.tuf]\n{feed}\n", BASE.replace("PROTOCOL", protocol));
    parse(Path::new("/etc/portcullis/portcullis.toml"), &text)
}

#[test]
fn defaults_follow_the_protocol() {
    let config = with_feed("pypi", "api = \"http://127.0.0.1:18080/\"").expect("valid");
    let feed = config.registries[0].tuf.as_ref().expect("a feed");
    assert_eq!(feed.api, "http://127.0.0.1:18080");
    assert_eq!(
        feed.file_target("demo", "1.0", "demo-1.0.tar.gz"),
        "packages/demo-1.0.tar.gz"
    );
    assert_eq!(feed.index_target("demo").as_deref(), Some("simple/demo/index.html"));
    assert_eq!((feed.batch, feed.max_attempts), (64, 5));
    assert_eq!(feed.reconcile_after.as_secs(), 600);
    assert!(feed.header.is_none() && feed.client_identity.is_none());

    let config = with_feed("npm", "api = \"http://127.0.0.1:18080\"").expect("valid");
    let feed = config.registries[0].tuf.as_ref().expect("a feed");
    assert_eq!(
        feed.file_target("@scope/pkg", "1.0.0", "pkg-1.0.0.tgz"),
        "@scope/pkg/-/pkg-1.0.0.tgz"
    );
    assert_eq!(feed.index_target("@scope/pkg"), None);

    let config = with_feed(
        "pypi",
        "api = \"http://h:1\"\nindex_path = \"\"\ntarget_path = \"files/{project}/{version}/{filename}\"",
    )
    .expect("valid");
    let feed = config.registries[0].tuf.as_ref().expect("a feed");
    assert_eq!(feed.index_target("demo"), None);
    assert_eq!(
        feed.file_target("demo", "1.0", "demo-1.0.tar.gz"),
        "files/demo/1.0/demo-1.0.tar.gz"
    );
}

#[test]
fn bad_feeds_name_their_field() {
    let cases = [
        ("pypi", "api = \"ftp://h/\"", "registry[0].tuf.api"),
        ("pypi", "api = \"http://user@h/\"", "registry[0].tuf.api"),
        ("pypi", "api = \"not a url\"", "registry[0].tuf.api"),
        (
            "pypi",
            "api = \"http://h\"\ntarget_path = \"/packages/{filename}\"",
            "registry[0].tuf.target_path",
        ),
        (
            "pypi",
            "api = \"http://h\"\ntarget_path = \"packages/../{filename}\"",
            "registry[0].tuf.target_path",
        ),
        (
            "pypi",
            "api = \"http://h\"\ntarget_path = \"packages/{name}\"",
            "registry[0].tuf.target_path",
        ),
        (
            "pypi",
            "api = \"http://h\"\ntarget_path = \"packages/x\"",
            "registry[0].tuf.target_path",
        ),
        (
            "pypi",
            "api = \"http://h\"\nindex_path = \"simple/{filename}\"",
            "registry[0].tuf.index_path",
        ),
        (
            "npm",
            "api = \"http://h\"\nindex_path = \"x/{project}\"",
            "registry[0].tuf.index_path",
        ),
        (
            "pypi",
            "api = \"http://h\"\nheader = \"X-Key\"",
            "registry[0].tuf.header",
        ),
        ("pypi", "api = \"http://h\"\nca_file = \"ca.pem\"", "registry[0].tuf"),
        ("pypi", "api = \"http://h\"\nbatch = 0", "registry[0].tuf.batch"),
        (
            "pypi",
            "api = \"http://h\"\nmax_attempts = 0",
            "registry[0].tuf.max_attempts",
        ),
        (
            "pypi",
            "api = \"http://h\"\npoll_interval = \"0s\"",
            "registry[0].tuf.poll_interval",
        ),
        (
            "pypi",
            "api = \"http://h\"\ntimeout = \"soon\"",
            "registry[0].tuf.timeout",
        ),
    ];
    for (protocol, feed, field) in cases {
        match with_feed(protocol, feed) {
            Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field, "{feed}"),
            other => panic!("expected an error on {field} for {feed:?}, got {other:?}"),
        }
    }
}

#[test]
fn the_header_value_is_read_from_its_file_and_kept_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("key"), "Bearer s3cret\n").expect("write");
    let text = format!(
        "{}[registry.tuf]\napi = \"http://h\"\nheader = \"Authorization\"\nheader_value_file = \"key\"\n",
        BASE.replace("PROTOCOL", "pypi")
    );
    let config = parse(&dir.path().join("portcullis.toml"), &text).expect("valid");
    let feed = config.registries[0].tuf.as_ref().expect("a feed");
    let (name, value) = feed.header.as_ref().expect("a header");
    assert_eq!(name.as_str(), "authorization");
    assert_eq!(value.expose(), b"Bearer s3cret");
    assert!(!format!("{feed:?}").contains("s3cret"));

    std::fs::write(dir.path().join("key"), "two\nlines\n").expect("write");
    match parse(&dir.path().join("portcullis.toml"), &text) {
        Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, "registry[0].tuf.header_value_file"),
        other => panic!("a value with a line break is refused, got {other:?}"),
    }
}

#[test]
fn a_client_identity_needs_its_certificate_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = rcgen::KeyPair::generate().expect("key");
    let certificate = rcgen::CertificateParams::new(vec!["portcullis".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    std::fs::write(
        dir.path().join("identity.pem"),
        format!("{}{}", certificate.pem(), key.serialize_pem()),
    )
    .expect("write");
    std::fs::write(dir.path().join("certificate-only.pem"), certificate.pem()).expect("write");
    let text = |file: &str| {
        format!(
            "{}[registry.tuf]\napi = \"https://rstuf.internal\"\nclient_identity = \"{file}\"\n",
            BASE.replace("PROTOCOL", "pypi")
        )
    };
    let config = parse(&dir.path().join("portcullis.toml"), &text("identity.pem")).expect("valid");
    let feed = config.registries[0].tuf.as_ref().expect("a feed");
    assert!(feed.client_identity.is_some());
    assert!(
        !format!("{feed:?}").contains("PRIVATE KEY"),
        "the key stays out of Debug"
    );
    match parse(&dir.path().join("portcullis.toml"), &text("certificate-only.pem")) {
        Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, "registry[0].tuf.client_identity"),
        other => panic!("a certificate without its key is refused, got {other:?}"),
    }
}
