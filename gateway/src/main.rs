//! The `portcullis` command: run the gateway, check a configuration, make upload-token keys,
//! verify bundles.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portcullis::config::{self, raw::LogFormat};
use portcullis::{build_server, reload, RunOptions};

/// mimalloc instead of glibc's malloc: a proxy allocates and frees small buffers and header
/// maps for every request, and glibc's allocator took a sixth of the gateway's CPU on small
/// reads (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "portcullis", version, about = "An upload gateway for package registries")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// The configuration file.
        #[arg(short, long, default_value = "/etc/portcullis/portcullis.toml")]
        config: PathBuf,
        /// Log format (overrides the configuration).
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
        /// Take over the listeners of a running instance (graceful upgrade).
        #[arg(short, long)]
        upgrade: bool,
    },
    /// Validate a configuration file and its rules files; exit non-zero with file, field and reason.
    CheckConfig {
        /// The configuration file.
        config: PathBuf,
    },
    /// Write a new Ed25519 upload-token signing key (PKCS#8 PEM, mode 0600) and its public key
    /// (`<file>.pub`), for `[upload_tokens]` key rotation.
    Keygen {
        /// Where to write the private key; refused if the file exists.
        out: PathBuf,
    },
    /// Verify a Sigstore bundle offline (the Sigstore conformance command line); exit 0 when
    /// verified, otherwise print the failed step and why.
    VerifyBundle {
        /// The bundle (JSON).
        #[arg(long)]
        bundle: PathBuf,
        /// The certificate identity (SAN) that must have signed.
        #[arg(long, requires = "certificate_oidc_issuer", conflicts_with = "key")]
        certificate_identity: Option<String>,
        /// The OIDC issuer of that identity.
        #[arg(long, requires = "certificate_identity")]
        certificate_oidc_issuer: Option<String>,
        /// A managed public key (PEM) that must have signed, instead of a certificate identity.
        #[arg(long)]
        key: Option<PathBuf>,
        /// The Sigstore trusted root (JSON).
        #[arg(long)]
        trusted_root: PathBuf,
        /// The artifact: a path, or `sha256:<hex>`.
        file_or_digest: String,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match check_config(&config) {
            Ok(summary) => {
                println!("{summary}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("portcullis: {e:#}");
                std::process::ExitCode::from(2)
            }
        },
        Command::Keygen { out } => match keygen(&out) {
            Ok(summary) => {
                println!("{summary}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("portcullis: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::VerifyBundle {
            bundle,
            certificate_identity,
            certificate_oidc_issuer,
            key,
            trusted_root,
            file_or_digest,
        } => match verify_bundle(
            &bundle,
            certificate_identity,
            certificate_oidc_issuer,
            key.as_deref(),
            &trusted_root,
            &file_or_digest,
        ) {
            Ok(summary) => {
                println!("{summary}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("portcullis: verification failed: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::Run {
            config,
            log_format,
            upgrade,
        } => {
            if let Err(e) = run(&config, log_format, upgrade) {
                eprintln!("portcullis: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
            std::process::ExitCode::SUCCESS
        }
    }
}

fn keygen(out: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let (private_pem, public_pem) = portcullis::auth::upload_token::generate_key_pem()?;
    let public_path = {
        let mut p = out.as_os_str().to_owned();
        p.push(".pub");
        PathBuf::from(p)
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    file.write_all(private_pem.as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    std::fs::write(&public_path, public_pem).with_context(|| format!("writing {}", public_path.display()))?;
    Ok(format!(
        "wrote {} (private, keep secret) and {} (public)",
        out.display(),
        public_path.display()
    ))
}

fn check_config(path: &std::path::Path) -> anyhow::Result<String> {
    let config = config::load(path)?;
    let rules = reload::load_rules(&config.rules.files, &config.known_registries())?;
    let trust = match &config.provenance.trust {
        config::TrustSettings::File { path, root } => format!(
            "file {} (revision {})",
            path.display(),
            hex::encode(&root.revision[..8])
        ),
        config::TrustSettings::Tuf(tuf) => format!(
            "tuf {} from the {}, cache {}, refreshed every {}s",
            tuf.repository,
            tuf.anchor_source,
            tuf.cache_dir.display(),
            tuf.refresh_interval.as_secs()
        ),
    };
    Ok(format!(
        "{}: ok ({} registries, {} listeners, rules revision {}; Sigstore trusted root: {trust})",
        path.display(),
        config.registries.len(),
        config.listeners.len(),
        rules.revision()
    ))
}

fn verify_bundle(
    bundle: &std::path::Path,
    identity: Option<String>,
    issuer: Option<String>,
    key: Option<&std::path::Path>,
    trusted_root: &std::path::Path,
    file_or_digest: &str,
) -> anyhow::Result<String> {
    use portcullis_verify::{keys, Artifact, Bundle, Policy, TrustedRoot};
    let root = TrustedRoot::from_json(
        &std::fs::read(trusted_root).with_context(|| format!("reading {}", trusted_root.display()))?,
    )?;
    let bundle = Bundle::from_json(&std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?)?;
    let artifact = match file_or_digest.strip_prefix("sha256:") {
        Some(hex_digest) => {
            let digest: [u8; 32] = hex::decode(hex_digest)
                .ok()
                .and_then(|d| d.try_into().ok())
                .context("the digest must be sha256:<64 hex digits>")?;
            Artifact::from_sha256(digest)
        }
        None => {
            Artifact::from_bytes(std::fs::read(file_or_digest).with_context(|| format!("reading {file_or_digest}"))?)
        }
    };
    let policy = match (identity, issuer, key) {
        (Some(san), Some(issuer), None) => Policy::Identity { san, issuer },
        (None, None, Some(key)) => {
            let pem = std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
            let (_, spki_der) = keys::pem_decode(&pem).context("the key is not PEM")?;
            Policy::Key { spki_der }
        }
        _ => anyhow::bail!("give either --certificate-identity with --certificate-oidc-issuer, or --key"),
    };
    let facts = portcullis_verify::verify(&bundle, &artifact, &root, &policy, portcullis::clock::unix_now())?;
    Ok(format!(
        "verified: signer {:?} issuer {:?} at {} ({}){}",
        facts.identity.sans.first().map(String::as_str).unwrap_or("managed key"),
        facts.identity.issuer.as_deref().unwrap_or("-"),
        facts.verified_time,
        facts
            .time_sources
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>()
            .join(", "),
        facts
            .predicate_type
            .map(|p| format!(", predicate {p}"))
            .unwrap_or_default()
    ))
}

fn run(path: &std::path::Path, log_format: Option<LogFormat>, upgrade: bool) -> anyhow::Result<()> {
    let config = config::load(path)?;
    portcullis::logging::init(log_format.unwrap_or(config.logging.format), &config.logging.level);
    let portcullis = build_server(&config, RunOptions { upgrade }).context("building the server")?;
    tracing::info!(
        config = %path.display(),
        rules_revision = portcullis.rules.current().rules.revision(),
        listeners = ?config.listeners.iter().map(|l| l.address).collect::<Vec<_>>(),
        admin = %config.admin_address,
        "portcullis starting"
    );
    portcullis.server.run_forever()
}
