//! The `portcullis` command: run the gateway, check a configuration, (later) verify bundles.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portcullis::config::{self, raw::LogFormat};
use portcullis::{build_server, reload, RunOptions};

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

fn check_config(path: &std::path::Path) -> anyhow::Result<String> {
    let config = config::load(path)?;
    let rules = reload::load_rules(&config.rules.files, &config.known_registries())?;
    Ok(format!(
        "{}: ok ({} registries, {} listeners, rules revision {})",
        path.display(),
        config.registries.len(),
        config.listeners.len(),
        rules.revision()
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
