//! The npm CLI, run the way the tests need it: its own cache and configuration file, no update
//! notifier, audit or funding messages, no colour; and what npm-side tests share: a minimal
//! package, `npm pack`, the `dist` digests of a tarball, Verdaccio behind a gateway.

use std::path::{Path, PathBuf};
use std::process::Command;

/// An `npm` command in `cwd` with `npmrc` as its user configuration and its cache under `work`.
pub fn npm(work: &Path, npmrc: &Path, cwd: &Path) -> Command {
    let mut command = Command::new("npm");
    command
        .current_dir(cwd)
        .env("npm_config_userconfig", npmrc)
        .env("npm_config_cache", work.join("npm-cache"))
        .env("npm_config_update_notifier", "false")
        .env("npm_config_audit", "false")
        .env("npm_config_fund", "false")
        .env("NO_COLOR", "1");
    command
}

/// Writes an npm user configuration at `path` that publishes to `gateway` with `token`.
pub fn write_npmrc(path: &Path, gateway: &crate::gateway::Gateway, token: &str) {
    std::fs::write(
        path,
        format!(
            "registry={}/\n//{}/:_authToken={token}\n",
            gateway.url(),
            gateway.addr()
        ),
    )
    .expect("npmrc");
}

/// Writes a minimal publishable package — `package.json` (name, version, `main`, MIT licence,
/// no dependencies) and `index.js` — into `<root>/src-<name>` (`/` of a scope as `_`) and
/// returns its folder.
pub fn write_package(root: &Path, name: &str, version: &str) -> PathBuf {
    let dir = root.join(format!("src-{}", name.replace('/', "_")));
    std::fs::create_dir_all(&dir).expect("package dir");
    std::fs::write(
        dir.join("package.json"),
        serde_json::json!({"name": name, "version": version, "main": "index.js", "license": "MIT"}).to_string(),
    )
    .expect("package.json");
    std::fs::write(dir.join("index.js"), format!("module.exports = {name:?};\n")).expect("index.js");
    dir
}

/// `npm pack` of the package in `dir` into `<work>/packed` (outside the package, so a later
/// `npm publish` of the folder does not pack the tarball too); returns the tarball's path.
/// npm packs reproducibly (fixed mtimes, sorted entries), so this is byte for byte what
/// `npm publish` of the same folder sends.
pub fn pack(work: &Path, npmrc: &Path, dir: &Path) -> PathBuf {
    let destination = work.join("packed");
    std::fs::create_dir_all(&destination).expect("pack destination");
    let out = npm(work, npmrc, dir)
        .args(["pack", "--json", "--pack-destination"])
        .arg(&destination)
        .output()
        .expect("run npm pack");
    assert!(
        out.status.success(),
        "npm pack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).expect("npm pack --json");
    destination.join(listing[0]["filename"].as_str().expect("filename"))
}

/// The `dist` digests npm clients put in a version's manifest for a tarball, as Verdaccio
/// serves them back: `integrity` (`sha512-<base64>`) and `shasum` (hex SHA-1).
pub fn dist_digests(tarball: &[u8]) -> (String, String) {
    use base64::Engine as _;
    use sha1::Digest as _;
    let sha512 = sha2::Sha512::digest(tarball);
    let integrity = format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(sha512));
    (integrity, hex::encode(sha1::Sha1::digest(tarball)))
}

/// Verdaccio behind a gateway with one npm registry named `npm`, a Verdaccio token asked for
/// through the gateway (as `npm login` would) and an npm configuration (`npmrc`) publishing
/// with it through the gateway. Everything lives in a temporary folder removed on drop.
pub struct GatedVerdaccio {
    /// The work folder (inside the temporary folder).
    pub work: PathBuf,
    /// The backend.
    pub backend: crate::verdaccio::Verdaccio,
    /// The gateway in front of it.
    pub gateway: crate::gateway::Gateway,
    /// The Verdaccio token the clients publish with.
    pub token: String,
    /// An npm user configuration: `registry` and the token for the gateway.
    pub npmrc: PathBuf,
    _dir: tempfile::TempDir,
}

impl GatedVerdaccio {
    /// Starts Verdaccio and a gateway with `rules` in front of it.
    pub fn start(rules: &str) -> GatedVerdaccio {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().to_path_buf();
        let backend = crate::verdaccio::Verdaccio::start(&work.join("verdaccio"));
        let gateway = crate::gateway::Gateway::builder()
            .registry(crate::gateway::RegistrySpec::new("npm", "npm", backend.addr()))
            .rules(rules)
            .start(&work.join("gateway"));
        let token = backend.token(gateway.addr());
        let npmrc = work.join("npmrc");
        write_npmrc(&npmrc, &gateway, &token);
        GatedVerdaccio {
            work,
            backend,
            gateway,
            token,
            npmrc,
            _dir: dir,
        }
    }

    /// An `npm` command in `cwd` with [`GatedVerdaccio::npmrc`] (see [`npm`]).
    pub fn npm(&self, cwd: &Path) -> Command {
        npm(&self.work, &self.npmrc, cwd)
    }
}
