//! The npm CLI, run the way the tests need it: its own cache and configuration file, no update
//! notifier, audit or funding messages, no colour.

use std::path::Path;
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
