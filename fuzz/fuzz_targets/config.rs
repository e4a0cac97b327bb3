//! The gateway configuration: TOML text → `config::raw::RawConfig` (serde, `deny_unknown_fields`)
//! → `config::validated::validate` (addresses, durations, sizes, routes, registries, state,
//! trusted publishing, upload tokens, provenance), as `config::parse` does.
//!
//! Validation reads the files the configuration names (secrets, keys, CA bundles, the trusted
//! root). A fuzzed path could name `/dev/zero` or a FIFO, so every path that validation would
//! read is replaced by one that does not exist before validating: the file-reading branches
//! still run (and fail on the missing file), the reads themselves are not fuzzed. Everything
//! else validation does is pure and runs on the input as parsed.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use portcullis::config::raw::{RawBackendCredentials, RawConfig};
use portcullis::config::{validated, ConfigError};

/// The configuration file's path: relative paths resolve under a folder that does not exist.
const FILE: &str = "/nonexistent-portcullis-fuzz/portcullis.toml";

fn missing() -> PathBuf {
    PathBuf::from("/nonexistent-portcullis-fuzz/file")
}

fn scrub(path: &mut PathBuf) {
    *path = missing();
}

fn scrub_opt(path: &mut Option<PathBuf>) {
    if let Some(p) = path.as_mut() {
        scrub(p);
    }
}

/// Points every path validation reads at a missing file.
fn scrub_paths(raw: &mut RawConfig) {
    for listener in &mut raw.listeners {
        if let Some(tls) = listener.tls.as_mut() {
            scrub(&mut tls.certificate);
            scrub(&mut tls.key);
        }
    }
    scrub_opt(&mut raw.admin.token_file);
    scrub_opt(&mut raw.state.url_file);
    scrub_opt(&mut raw.provenance.trusted_root);
    if let Some(sigstore) = raw.sigstore.as_mut() {
        scrub_opt(&mut sigstore.trusted_root);
        scrub_opt(&mut sigstore.root);
        scrub_opt(&mut sigstore.ca_file);
        // Validation never writes the cache directory; it only names it.
    }
    scrub_opt(&mut raw.trusted_publishing.ca_file);
    if let Some(tokens) = raw.upload_tokens.as_mut() {
        for key in &mut tokens.keys {
            scrub_opt(&mut key.private_key_file);
            scrub_opt(&mut key.public_key_file);
        }
    }
    for registry in &mut raw.registries {
        scrub_opt(&mut registry.upstream.ca_file);
        match registry.backend_credentials.as_mut() {
            Some(RawBackendCredentials::Basic { password_file, .. }) => scrub(password_file),
            Some(RawBackendCredentials::Bearer { token_file }) => scrub(token_file),
            None => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(FILE);
    let mut raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            // The error location the gateway reports must be computable for any error.
            let _ = portcullis_rules::compile::toml_error_location(text, &e);
            return;
        }
    };
    scrub_paths(&mut raw);
    match validated::validate(path, raw) {
        Ok(config) => {
            assert!(!config.registries.is_empty());
            let _ = config.known_registries();
        }
        Err(ConfigError::Invalid { field, .. }) => assert!(!field.is_empty()),
        Err(ConfigError::Read { .. }) => {}
    }
});
