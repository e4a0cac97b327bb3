//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary directory, the
//! server on a free loopback port with its Unix socket in that directory, stopped (immediate
//! shutdown, then SIGKILL) when the handle drops; `fsync` is off, so only a clean
//! [`Postgres::stop`] keeps the data. Uses the system's PostgreSQL
//! (`/usr/lib/postgresql/<version>/bin`, Debian's `postgresql` package, which
//! `scripts/env.sh` installs). `initdb` and `postgres` refuse to run as root, so when the
//! tests run as root both run as the `postgres` system user.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Managed;

/// The database user every test connects as (trust authentication on loopback).
pub const USER: &str = "portcullis";

/// A running throwaway PostgreSQL server.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    owner: Option<(u32, u32)>,
    server: Option<Managed>,
}

/// The directory of the newest installed PostgreSQL's programs.
pub fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (/usr/lib/postgresql; scripts/env.sh installs it)")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

/// The uid and gid of the `postgres` system user when running as root; `None` otherwise.
fn owner() -> Option<(u32, u32)> {
    let id = |args: &[&str]| -> u32 {
        let out = Command::new("id").args(args).output().expect("run id");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("numeric id")
    };
    (id(&["-u"]) == 0).then(|| (id(&["-u", "postgres"]), id(&["-g", "postgres"])))
}

impl Postgres {
    /// Creates a cluster and starts it; panics (with the logs) when that fails.
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-pg-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let owner = owner();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the cluster directory");
        }
        let bin = bin_dir();
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(dir.path().join("data")).args([
            "-U",
            USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        if let Some((uid, gid)) = owner {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            dir,
            bin,
            port: crate::free_port(),
            owner,
            server: None,
        };
        pg.resume();
        pg
    }

    /// Starts the server again (after [`Postgres::stop`]) on the same port and data.
    pub fn resume(&mut self) {
        assert!(self.server.is_none(), "already running");
        let mut command = Command::new(self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=100",
            ]);
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        let log = self.dir.path().join("postgres.log");
        let server = Managed::spawn("postgres", command, &log);
        self.server = Some(server);
        let ready = crate::wait_until(Duration::from_secs(30), || self.is_ready());
        assert!(ready, "postgres did not start: {}", self.log());
    }

    /// Stops the server: fast shutdown (clients disconnected, committed data kept), bounded
    /// wait, then SIGKILL.
    pub fn stop(&mut self) {
        self.shut_down("INT");
    }

    fn shut_down(&mut self, signal: &str) {
        if let Some(mut server) = self.server.take() {
            server.signal(signal);
            if server.wait_exit(Duration::from_secs(10)).is_none() {
                drop(server);
            }
        }
    }

    /// Whether the server accepts connections (`pg_isready`).
    pub fn is_ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-d",
                "postgres",
                "-t",
                "1",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's process id while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Managed::pid)
    }

    /// The server log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Creates a database and returns its connection string.
    pub fn create_database(&self, name: &str) -> String {
        let out = self
            .psql("postgres")
            .arg("-c")
            .arg(format!("CREATE DATABASE \"{name}\""))
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "CREATE DATABASE {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(name)
    }

    /// The connection string of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs one SQL statement in database `name` and returns its unaligned, tuples-only output.
    pub fn query(&self, name: &str, sql: &str) -> String {
        let out = self
            .psql(name)
            .args(["-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn psql(&self, database: &str) -> Command {
        let mut command = Command::new(self.bin.join("psql"));
        command.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            USER,
            "-d",
            database,
            "-X",
            "-q",
        ]);
        command
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate shutdown: nothing of a throwaway cluster needs keeping.
        self.shut_down("QUIT");
    }
}
