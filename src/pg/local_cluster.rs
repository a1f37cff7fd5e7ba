//! Throwaway and dev PostgreSQL clusters built from the system binaries.
//!
//! Role: every integration test and benchmark gets its own cluster
//! ([`LocalCluster::start_temp`]); the binary's dev mode (no `DATABASE_URL`)
//! keeps a persistent one inside its storage dir ([`ClusterOptions::data_dir`]).
//! Synchronous `std::process` API: call it from `spawn_blocking` in async code.
//!
//! Invariants:
//! * Clusters listen on 127.0.0.1 only, TCP only (`unix_socket_directories = ''`,
//!   so long data-dir paths never hit the 107-byte socket-path limit), trust
//!   auth, user `postgres`, `wal_level = logical`.
//! * Our settings live in `<data_dir>/ampere.conf`, rewritten before every
//!   start and included from `postgresql.conf`; the port is passed on the
//!   command line so a retry on a port collision never rewrites config.
//!   `ALTER SYSTEM` values (`postgresql.auto.conf`) still override ours.
//! * The server log is `<data_dir>/server.log` (`logging_collector = off`);
//!   every start/stop failure carries its tail.
//! * Postgres refuses to run as root: when our effective uid is 0, every
//!   server-side binary (initdb, pg_ctl, pg_resetwal) runs as the `postgres`
//!   OS user through `Command::uid/gid` (no runuser/su needed), and the dirs
//!   we create are chowned to it. `psql` is a plain client and runs as us.
//! * A handle stops only the postmaster it started. A persistent data dir
//!   whose postmaster is already alive is reused (not started twice) and left
//!   running on drop; one we started is stopped `fast` on drop and never
//!   deleted. A temp cluster is stopped `immediate` and its dir removed.
//! * With `high_lsn_and_xid_epoch`, a freshly initialised cluster gets
//!   `pg_resetwal -l 00000001000000AB00000000 -e 1` before its first start, so
//!   LSNs and xid8 values both exceed 2^32 (exposing 32-bit truncation bugs);
//!   this is verified after start.
//! * Temp roots are named `ampere-pg-<creator pid>-…`; starting a temp
//!   cluster first stops and removes those whose creator is dead (a test
//!   binary killed by a timeout never runs `Drop`, and `pg_ctl` daemonises
//!   the postmaster, so nothing else would clean them up).

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Seconds `pg_ctl` waits for start/stop (generous: CI boxes have 2 cores
/// and crash recovery after an immediate stop can take a while).
const PG_CTL_TIMEOUT_SECS: &str = "120";
/// Attempts at finding a free port when the caller did not fix one.
const PORT_ATTEMPTS: usize = 6;
/// How long to wait for a reused postmaster to report "ready".
const REUSE_READY_TIMEOUT: Duration = Duration::from_secs(60);
const SERVER_LOG: &str = "server.log";
/// Temp roots are `<tmp>/ampere-pg-<pid>-<n>-<nanos>`; the pid lets a later
/// run reap clusters whose creator died without dropping them.
const TEMP_PREFIX: &str = "ampere-pg-";
const CONF_FILE: &str = "ampere.conf";
const CONF_INCLUDE: &str = "include_if_exists = 'ampere.conf'";
/// Segment 0xAB of timeline 1: the first LSN is `AB/00000000` > 2^32.
const HIGH_WAL_FILE: &str = "00000001000000AB00000000";
const LOG_TAIL_LINES: usize = 40;
/// Environment variables that would silently redirect or alter our
/// commands (e.g. `PGOPTIONS` injecting settings into psql sessions).
const SCRUBBED_ENV: &[&str] = &[
    "PGDATA",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGOPTIONS",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSSLMODE",
    "PGTARGETSESSIONATTRS",
    "PGCLIENTENCODING",
    "LC_ALL",
];
/// Database names are identifiers, but keep the URL valid for any of them.
const DB_NAME_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'-').remove(b'.');

/// How to stop the server (`pg_ctl stop -m …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Roll back sessions, checkpoint, exit cleanly.
    Fast,
    /// Exit without checkpoint; the next start runs crash recovery.
    Immediate,
}

impl StopMode {
    fn as_arg(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// How to create or open a cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Persistent data dir (initialised if it has no `PG_VERSION`); `None`
    /// means a fresh temp dir removed on drop.
    pub data_dir: Option<PathBuf>,
    /// Fixed port; `None` picks a free one (retrying on collisions).
    pub port: Option<u16>,
    /// Push LSNs and xid8 past 2^32 at initialisation (see module docs).
    pub high_lsn_and_xid_epoch: bool,
    /// Extra `postgresql.conf` settings, applied after (and overriding) ours.
    pub extra_settings: Vec<(String, String)>,
    /// Extra `initdb` arguments (e.g. `--wal-segsize=1`).
    pub initdb_args: Vec<String>,
    /// Replaces `pg_hba.conf` (written before every start) — e.g. TLS-only access rules.
    pub hba: Option<String>,
    /// Files written into the data dir before every start, owned by the server's OS user:
    /// (name, contents, mode) — e.g. a TLS certificate and key for `ssl_cert_file`.
    pub files: Vec<(String, Vec<u8>, u32)>,
}

/// Errors of cluster management. Command failures carry stderr and the
/// server-log tail, since that is where Postgres explains itself.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A required PostgreSQL binary is missing.
    #[error("`{name}` not found on PATH (the PostgreSQL server binaries are required)")]
    BinaryNotFound {
        /// Binary name.
        name: &'static str,
    },
    /// Running as root, but there is no `postgres` OS user to drop to.
    #[error(
        "running as root but the `postgres` OS user does not exist (Postgres refuses to run as root)"
    )]
    NoPostgresUser,
    /// The `postgres` OS user cannot reach the data dir (a parent dir is
    /// not traversable, typically something under `/root`).
    #[error("data directory {} is not writable by the `postgres` OS user; check the permissions of its parent directories", .path.display())]
    DataDirNotAccessible {
        /// The data dir.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("could not {action} {}", .path.display())]
    Io {
        /// What we were doing.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A child process could not be spawned or waited for.
    #[error("could not run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A child process exited unsuccessfully.
    #[error("{program} failed ({status}): {stderr}{tail}", tail = log_suffix(.log_tail))]
    CommandFailed {
        /// The program and its key arguments.
        program: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its stderr (trimmed).
        stderr: String,
        /// Tail of `server.log`, empty when irrelevant.
        log_tail: String,
    },
    /// An `extra_settings` entry would not survive being written to a
    /// config file (bad name, or a newline in the value).
    #[error("invalid setting {name:?}")]
    InvalidSetting {
        /// The setting name.
        name: String,
    },
    /// A command printed something we could not interpret.
    #[error("unexpected output from {what}: {output:?}")]
    UnexpectedOutput {
        /// What was run.
        what: &'static str,
        /// What it printed.
        output: String,
    },
    /// `high_lsn_and_xid_epoch` was requested and applied, yet the running
    /// server reports low values.
    #[error(
        "pg_resetwal did not take effect: pg_current_wal_lsn = {lsn:#x}, pg_current_xact_id = {xid}"
    )]
    HighPositionsMissing {
        /// Current WAL LSN.
        lsn: u64,
        /// Current 64-bit xid.
        xid: u64,
    },
    /// A reused postmaster did not become ready in time.
    #[error("postmaster in {} did not become ready within {timeout:?}{tail}", .data_dir.display(), tail = log_suffix(.log_tail))]
    NotReady {
        /// The data dir.
        data_dir: PathBuf,
        /// How long we waited.
        timeout: Duration,
        /// Tail of `server.log`.
        log_tail: String,
    },
}

fn log_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("\n--- server.log (tail) ---\n{tail}")
    }
}

/// A running (or stopped-by-request) local cluster. See the module docs for
/// ownership and drop behaviour.
#[derive(Debug)]
pub struct LocalCluster {
    tools: Tools,
    run_as: Option<PgUser>,
    data_dir: PathBuf,
    /// `Some` for temp clusters: the dir (containing `data_dir`) removed on drop.
    temp_root: Option<PathBuf>,
    port: u16,
    /// Whether this handle started the postmaster and has not stopped it.
    running: bool,
    /// What it was created with (reinitialisation repeats it).
    opts: ClusterOptions,
}

impl LocalCluster {
    /// Creates (if needed) and starts a cluster.
    ///
    /// # Errors
    /// Missing binaries, filesystem failures, `initdb`/`pg_ctl` failures
    /// (with the server-log tail), or the high LSN/xid check failing.
    pub fn start(opts: ClusterOptions) -> Result<LocalCluster, ClusterError> {
        let tools = Tools::locate()?;
        let run_as = if effective_uid_is_root() {
            Some(PgUser::lookup()?)
        } else {
            None
        };
        let settings = render_settings(&opts)?;

        let (data_dir, temp_root) = match &opts.data_dir {
            Some(dir) => {
                create_private_dir(dir, run_as.as_ref(), true)?;
                (dir.clone(), None)
            }
            None => {
                reap_stale_temp_clusters(&tools, run_as.as_ref());
                let root = create_temp_root(run_as.as_ref())?;
                let data = root.join("data");
                if let Err(e) = create_private_dir(&data, run_as.as_ref(), false) {
                    let _ = fs::remove_dir_all(&root);
                    return Err(e);
                }
                (data, Some(root))
            }
        };
        // From here on, dropping `cluster` cleans up the temp dir on error.
        let mut cluster = LocalCluster {
            tools,
            run_as,
            data_dir,
            temp_root,
            port: 0,
            running: false,
            opts: opts.clone(),
        };
        cluster.check_accessible()?;

        let fresh = !cluster.data_dir.join("PG_VERSION").exists();
        let mut high_applied = false;
        if fresh {
            cluster.initdb(opts.data_dir.is_none())?;
            if opts.high_lsn_and_xid_epoch {
                high_applied = cluster.raise_lsn_and_xid_epoch()?;
            }
        }
        cluster.write_conf(&settings)?;
        cluster.write_files()?;

        if let Some(port) = cluster.live_postmaster_port()? {
            if opts.port.is_some_and(|p| p != port) {
                tracing::warn!(
                    data_dir = %cluster.data_dir.display(),
                    port,
                    "reusing the postmaster already running in the data dir on its own port"
                );
            }
            cluster.port = port;
            cluster.wait_reused_ready()?;
        } else {
            cluster.start_with_port(opts.port)?;
        }
        if high_applied {
            cluster.verify_high_positions()?;
        }
        Ok(cluster)
    }

    /// A throwaway cluster: temp dir, free port, high LSN and xid epoch.
    ///
    /// # Errors
    /// As [`LocalCluster::start`].
    pub fn start_temp() -> Result<LocalCluster, ClusterError> {
        Self::start(ClusterOptions {
            high_lsn_and_xid_epoch: true,
            ..ClusterOptions::default()
        })
    }

    /// The TCP port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL for the `postgres` database.
    #[must_use]
    pub fn url(&self) -> String {
        self.url_for_db("postgres")
    }

    /// Connection URL for database `db` (percent-encoded as needed).
    #[must_use]
    pub fn url_for_db(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            self.port,
            utf8_percent_encode(db, DB_NAME_ENCODE)
        )
    }

    /// The data directory.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Path of the server log.
    #[must_use]
    pub fn server_log(&self) -> PathBuf {
        self.data_dir.join(SERVER_LOG)
    }

    /// Stops the server if this handle started it (no-op otherwise).
    ///
    /// # Errors
    /// `pg_ctl stop` failed (server-log tail included).
    pub fn stop(&mut self, mode: StopMode) -> Result<(), ClusterError> {
        if !self.running {
            return Ok(());
        }
        let mut cmd = self.server_command(&self.tools.pg_ctl);
        cmd.arg("stop")
            .arg("-w")
            .args(["-t", PG_CTL_TIMEOUT_SECS])
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", mode.as_arg()]);
        self.run(cmd, "pg_ctl stop", true)?;
        self.running = false;
        Ok(())
    }

    /// Stops (fast) and starts again on the same port with the same data.
    /// Also takes over a reused postmaster: afterwards this handle owns it.
    ///
    /// # Errors
    /// As [`LocalCluster::stop`] and start.
    pub fn restart(&mut self) -> Result<(), ClusterError> {
        if !self.running && self.live_postmaster_port()?.is_some() {
            // A reused postmaster: take ownership so it can be stopped.
            self.running = true;
        }
        self.stop(StopMode::Fast)?;
        self.start_with_port(Some(self.port))
    }

    /// Replaces the cluster by a freshly initialised one in the same data dir and on the same
    /// port (a new system identifier: "another database at the same URL"). Temp clusters only.
    ///
    /// # Errors
    /// As [`LocalCluster::start`].
    pub fn reinitialize(&mut self) -> Result<(), ClusterError> {
        self.stop(StopMode::Immediate)?;
        fs::remove_dir_all(&self.data_dir).map_err(io_err("remove", &self.data_dir))?;
        create_private_dir(&self.data_dir, self.run_as.as_ref(), false)?;
        self.initdb(self.temp_root.is_some())?;
        let high = self.opts.high_lsn_and_xid_epoch && self.raise_lsn_and_xid_epoch()?;
        self.write_conf(&render_settings(&self.opts)?)?;
        self.write_files()?;
        self.start_with_port(Some(self.port))?;
        if high {
            self.verify_high_positions()?;
        }
        Ok(())
    }

    /// Runs `sql` (a script; `;`-separated statements and psql meta-commands
    /// allowed) against `db` with `psql -X -A -t -q -v ON_ERROR_STOP=1` and
    /// returns stdout without trailing newlines. Rows are `|`-separated.
    ///
    /// # Errors
    /// psql failed (its stderr is included).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, ClusterError> {
        let mut cmd = Command::new(&self.tools.psql);
        scrub_env(&mut cmd);
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", "postgres"])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(db)
            .args(["-f", "-"])
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let program = "psql";
        let mut child = cmd.spawn().map_err(|source| ClusterError::Spawn {
            program: program.into(),
            source,
        })?;
        // Feed stdin from a thread: writing a large script while psql blocks
        // on a full stdout pipe would otherwise deadlock.
        let writer = child.stdin.take().map(|mut stdin| {
            let sql = sql.to_owned();
            std::thread::spawn(move || stdin.write_all(sql.as_bytes()))
        });
        let output = child
            .wait_with_output()
            .map_err(|source| ClusterError::Spawn {
                program: program.into(),
                source,
            })?;
        if let Some(writer) = writer {
            // A write error just means psql exited early; its status says why.
            let _ = writer.join();
        }
        let stdout = check_output(program, output, String::new())?;
        Ok(stdout.trim_end_matches('\n').to_owned())
    }

    // ---- internals ----

    /// A command for a server-side binary: as the `postgres` user when we
    /// are root, in a cwd it can access, with a scrubbed environment.
    fn server_command(&self, program: &Path) -> Command {
        server_command(program, &self.data_dir, self.run_as.as_ref())
    }

    fn run(&self, mut cmd: Command, what: &str, with_log: bool) -> Result<String, ClusterError> {
        let output = cmd.output().map_err(|source| ClusterError::Spawn {
            program: what.into(),
            source,
        })?;
        let tail = if with_log && !output.status.success() {
            self.log_tail()
        } else {
            String::new()
        };
        check_output(what, output, tail)
    }

    fn log_tail(&self) -> String {
        let Ok(log) = fs::read(self.server_log()) else {
            return String::new();
        };
        let log = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(LOG_TAIL_LINES);
        lines.get(from..).unwrap_or_default().join("\n")
    }

    /// Root can write anywhere, so probe as the user that will actually run
    /// Postgres; a `/root/...` storage dir would otherwise fail much later
    /// with an obscure initdb error.
    fn check_accessible(&self) -> Result<(), ClusterError> {
        if self.run_as.is_none() {
            return Ok(());
        }
        let mut cmd = Command::new("test");
        scrub_env(&mut cmd);
        if let Some(user) = &self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        let ok = cmd
            .arg("-w")
            .arg(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Ok(())
        } else {
            Err(ClusterError::DataDirNotAccessible {
                path: self.data_dir.clone(),
            })
        }
    }

    fn initdb(&self, temp: bool) -> Result<(), ClusterError> {
        let attempt = |locale: &str| {
            let mut cmd = self.server_command(&self.tools.initdb);
            cmd.arg("-D").arg(&self.data_dir).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                locale,
            ]);
            if temp {
                // Nothing in a throwaway cluster needs to survive power loss.
                cmd.arg("--no-sync");
            }
            cmd.args(&self.opts.initdb_args);
            self.run(cmd, "initdb", false)
        };
        match attempt("--locale=C.UTF-8") {
            Ok(_) => Ok(()),
            Err(ClusterError::CommandFailed { ref stderr, .. })
                if stderr.to_ascii_lowercase().contains("locale") =>
            {
                tracing::warn!("C.UTF-8 locale unavailable; initialising with --no-locale");
                attempt("--no-locale").map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// Returns whether pg_resetwal ran (false: unavailable, warned).
    fn raise_lsn_and_xid_epoch(&self) -> Result<bool, ClusterError> {
        let Some(resetwal) = self.tools.pg_resetwal(&self.data_dir) else {
            tracing::warn!("pg_resetwal not found; LSNs and xids of this cluster stay below 2^32");
            return Ok(false);
        };
        let mut cmd = self.server_command(&resetwal);
        cmd.args(["-l", HIGH_WAL_FILE, "-e", "1", "-D"])
            .arg(&self.data_dir);
        self.run(cmd, "pg_resetwal", false)?;
        Ok(true)
    }

    fn verify_high_positions(&self) -> Result<(), ClusterError> {
        let out = self.psql(
            "postgres",
            "SELECT pg_current_wal_lsn(), pg_current_xact_id()",
        )?;
        let unexpected = || ClusterError::UnexpectedOutput {
            what: "pg_current_wal_lsn/pg_current_xact_id",
            output: out.clone(),
        };
        let (lsn, xid) = out.split_once('|').ok_or_else(unexpected)?;
        let lsn = parse_lsn(lsn).ok_or_else(unexpected)?;
        let xid: u64 = xid.trim().parse().map_err(|_| unexpected())?;
        let floor = u64::from(u32::MAX);
        if lsn > floor && xid > floor {
            Ok(())
        } else {
            Err(ClusterError::HighPositionsMissing { lsn, xid })
        }
    }

    /// Writes our settings file and makes sure `postgresql.conf` includes it.
    fn write_conf(&self, settings: &str) -> Result<(), ClusterError> {
        let conf = self.data_dir.join(CONF_FILE);
        fs::write(&conf, settings).map_err(io_err("write", &conf))?;
        self.give_to_pg_user(&conf)?;

        let main = self.data_dir.join("postgresql.conf");
        let text = fs::read_to_string(&main).map_err(io_err("read", &main))?;
        if !text.lines().any(|l| l.trim() == CONF_INCLUDE) {
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(&main)
                .map_err(io_err("open", &main))?;
            writeln!(
                f,
                "\n# Added by Ampere; settings are rewritten on every start.\n{CONF_INCLUDE}"
            )
            .map_err(io_err("append to", &main))?;
        }
        Ok(())
    }

    /// Writes `pg_hba.conf` (when replaced) and the extra files.
    fn write_files(&self) -> Result<(), ClusterError> {
        let hba = self
            .opts
            .hba
            .as_ref()
            .map(|h| ("pg_hba.conf".to_owned(), h.clone().into_bytes(), 0o600));
        for (name, contents, mode) in hba.iter().chain(&self.opts.files) {
            let path = self.data_dir.join(name);
            fs::write(&path, contents).map_err(io_err("write", &path))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(*mode))
                .map_err(io_err("chmod", &path))?;
            self.give_to_pg_user(&path)?;
        }
        Ok(())
    }

    fn give_to_pg_user(&self, path: &Path) -> Result<(), ClusterError> {
        match &self.run_as {
            Some(user) => {
                chown(path, Some(user.uid), Some(user.gid)).map_err(io_err("chown", path))
            }
            None => Ok(()),
        }
    }

    /// Port of a live postmaster already serving this data dir, if any.
    /// A `postmaster.pid` naming a dead (or non-postgres) process is stale:
    /// Postgres itself replaces it on start.
    fn live_postmaster_port(&self) -> Result<Option<u16>, ClusterError> {
        let pid_file = self.data_dir.join("postmaster.pid");
        let text = match fs::read_to_string(&pid_file) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &pid_file)(e)),
        };
        let mut lines = text.lines();
        let Some(pid) = lines.next().and_then(|l| l.trim().parse::<u32>().ok()) else {
            return Ok(None);
        };
        if !is_postgres_process(pid) {
            return Ok(None);
        }
        // Lines: pid, data dir, start time, port, socket dir, listen addr, shm key, status.
        Ok(lines.nth(2).and_then(|l| l.trim().parse::<u16>().ok()))
    }

    fn wait_reused_ready(&self) -> Result<(), ClusterError> {
        let pid_file = self.data_dir.join("postmaster.pid");
        let deadline = Instant::now() + REUSE_READY_TIMEOUT;
        loop {
            let status = fs::read_to_string(&pid_file).unwrap_or_default();
            if status.lines().nth(7).is_some_and(|l| l.trim() == "ready") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::NotReady {
                    data_dir: self.data_dir.clone(),
                    timeout: REUSE_READY_TIMEOUT,
                    log_tail: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `pg_ctl start -w`; with no fixed port, retries on a fresh free port
    /// when the chosen one was taken between probing and binding.
    fn start_with_port(&mut self, fixed: Option<u16>) -> Result<(), ClusterError> {
        let attempts = if fixed.is_some() { 1 } else { PORT_ATTEMPTS };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = match fixed {
                Some(port) => port,
                None => free_port()?,
            };
            let log = self.server_log();
            let log_start = fs::metadata(&log).map_or(0, |m| m.len());
            let mut cmd = self.server_command(&self.tools.pg_ctl);
            cmd.arg("start")
                .arg("-w")
                .args(["-t", PG_CTL_TIMEOUT_SECS])
                .arg("-D")
                .arg(&self.data_dir)
                .arg("-l")
                .arg(&log)
                .arg("-o")
                .arg(format!("-p {port}"));
            match self.run(cmd, "pg_ctl start", true) {
                Ok(_) => {
                    self.port = port;
                    self.running = true;
                    return Ok(());
                }
                Err(_) if attempt < attempts && port_collision_since(&log, log_start) => {
                    tracing::debug!(port, "port taken while starting postgres; retrying");
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let mode = if self.temp_root.is_some() {
            StopMode::Immediate
        } else {
            StopMode::Fast
        };
        if let Err(error) = self.stop(mode) {
            tracing::warn!(%error, data_dir = %self.data_dir.display(), "could not stop local postgres");
        }
        if let Some(root) = &self.temp_root
            && let Err(error) = fs::remove_dir_all(root)
        {
            tracing::warn!(%error, dir = %root.display(), "could not remove temp cluster dir");
        }
    }
}

/// Paths of the PostgreSQL binaries we use.
#[derive(Debug, Clone)]
struct Tools {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    psql: PathBuf,
    /// Real directory of `initdb` (symlinks resolved): sibling tools of the
    /// same major version live here.
    bindir: Option<PathBuf>,
}

impl Tools {
    fn locate() -> Result<Tools, ClusterError> {
        let initdb = which("initdb").ok_or(ClusterError::BinaryNotFound { name: "initdb" })?;
        let pg_ctl = which("pg_ctl").ok_or(ClusterError::BinaryNotFound { name: "pg_ctl" })?;
        // pg_ctl runs the `postgres` next to its own real path, but a missing
        // one on PATH is the clearest early sign of a broken install.
        which("postgres").ok_or(ClusterError::BinaryNotFound { name: "postgres" })?;
        let bindir = fs::canonicalize(&initdb)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        // Prefer the psql of the same install over a distro wrapper.
        let psql = bindir
            .as_ref()
            .map(|d| d.join("psql"))
            .filter(|p| p.is_file())
            .or_else(|| which("psql"))
            .ok_or(ClusterError::BinaryNotFound { name: "psql" })?;
        Ok(Tools {
            initdb,
            pg_ctl,
            psql,
            bindir,
        })
    }

    /// pg_resetwal must match the cluster's major version: look next to
    /// initdb, then in `pg_config --bindir`, then in Debian's per-major dir.
    fn pg_resetwal(&self, data_dir: &Path) -> Option<PathBuf> {
        let beside_initdb = self.bindir.as_ref().map(|d| d.join("pg_resetwal"));
        let from_pg_config = || {
            let out = Command::new("pg_config").arg("--bindir").output().ok()?;
            let dir = String::from_utf8(out.stdout).ok()?;
            Some(PathBuf::from(dir.trim()).join("pg_resetwal"))
        };
        let debian = || {
            let major = fs::read_to_string(data_dir.join("PG_VERSION")).ok()?;
            Some(PathBuf::from(format!(
                "/usr/lib/postgresql/{}/bin/pg_resetwal",
                major.trim()
            )))
        };
        beside_initdb
            .filter(|p| p.is_file())
            .or_else(|| debian().filter(|p| p.is_file()))
            .or_else(|| from_pg_config().filter(|p| p.is_file()))
    }
}

/// The OS user Postgres runs as when we are root.
#[derive(Debug, Clone)]
struct PgUser {
    uid: u32,
    gid: u32,
    home: PathBuf,
}

impl PgUser {
    fn lookup() -> Result<PgUser, ClusterError> {
        // getent covers NSS sources; /etc/passwd is the fallback when it is missing.
        let from_getent = Command::new("getent")
            .args(["passwd", "postgres"])
            .stdin(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok());
        let line = from_getent.or_else(|| {
            fs::read_to_string("/etc/passwd")
                .ok()?
                .lines()
                .find(|l| l.starts_with("postgres:"))
                .map(str::to_owned)
        });
        line.as_deref()
            .and_then(parse_passwd_line)
            .ok_or(ClusterError::NoPostgresUser)
    }
}

fn parse_passwd_line(line: &str) -> Option<PgUser> {
    let fields: Vec<&str> = line.trim().split(':').collect();
    Some(PgUser {
        uid: fields.get(2)?.parse().ok()?,
        gid: fields.get(3)?.parse().ok()?,
        home: PathBuf::from(fields.get(5)?),
    })
}

/// Reads the effective uid from `/proc/self/status` (Linux), avoiding an
/// `unsafe` libc call; if unreadable we assume non-root and let Postgres
/// complain if that was wrong.
fn effective_uid_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Whether `pid` is a live (non-zombie) postgres process. The postmaster
/// is daemonised by `pg_ctl` and reparented to pid 1, which may reap it
/// late, so an exited server can linger as a zombie still named `postgres`.
fn is_postgres_process(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Format: `pid (comm) state …`; comm may itself contain ')' or spaces.
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let comm = stat.get(open + 1..close).unwrap_or_default();
    let state = stat
        .get(close + 1..)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default();
    matches!(comm, "postgres" | "postmaster") && !matches!(state, "Z" | "X" | "x")
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A command for a server-side binary: as the `postgres` user when we are
/// root, in a cwd it can access (std changes directory after dropping
/// privileges), with a scrubbed environment.
fn server_command(program: &Path, data_dir: &Path, run_as: Option<&PgUser>) -> Command {
    let mut cmd = Command::new(program);
    scrub_env(&mut cmd);
    cmd.current_dir(data_dir)
        .env("LC_MESSAGES", "C")
        .stdin(Stdio::null());
    if let Some(user) = run_as {
        // std drops supplementary groups when switching from root.
        cmd.uid(user.uid).gid(user.gid).env("HOME", &user.home);
    }
    cmd
}

/// Stops and removes temp clusters whose creating process is gone.
///
/// `pg_ctl` daemonises the postmaster, so a test binary killed by a timeout
/// (no `Drop`) leaves a server and its dir behind; on a 2-core CI box those
/// pile up across runs. Temp roots are named `ampere-pg-<pid>-…`, and a root
/// whose pid is not alive cannot be in use by anyone. A recycled pid only
/// delays the cleanup to a later run.
fn reap_stale_temp_clusters(tools: &Tools, run_as: Option<&PgUser>) {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMP_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let root = entry.path();
        let data = root.join("data");
        if data.join("postmaster.pid").exists() {
            let mut cmd = server_command(&tools.pg_ctl, &data, run_as);
            cmd.arg("stop")
                .arg("-w")
                .args(["-t", PG_CTL_TIMEOUT_SECS])
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // Best effort: a dir whose server cannot be stopped is still removed.
            let _ = cmd.status();
        }
        match fs::remove_dir_all(&root) {
            Ok(()) => tracing::info!(dir = %root.display(), "removed stale temp postgres cluster"),
            Err(error) => {
                tracing::debug!(%error, dir = %root.display(), "could not remove stale temp cluster")
            }
        }
    }
}

fn scrub_env(cmd: &mut Command) {
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
}

fn check_output(what: &str, output: Output, log_tail: String) -> Result<String, ClusterError> {
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(ClusterError::CommandFailed {
            program: what.into(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            log_tail,
        })
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ClusterError {
    let path = path.to_path_buf();
    move |source| ClusterError::Io {
        action,
        path,
        source,
    }
}

/// Creates `dir` with mode 0700 owned by the Postgres user. For a
/// persistent dir that already exists only ownership/mode of an empty dir
/// are fixed: an existing cluster's files are never touched.
fn create_private_dir(
    dir: &Path,
    run_as: Option<&PgUser>,
    allow_existing: bool,
) -> Result<(), ClusterError> {
    let created = match fs::create_dir(dir) {
        Ok(()) => true,
        Err(e) if allow_existing && e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) if allow_existing && e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
            true
        }
        Err(e) => return Err(io_err("create", dir)(e)),
    };
    let empty = created
        || fs::read_dir(dir)
            .map_err(io_err("list", dir))?
            .next()
            .is_none();
    if empty {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err("chmod", dir))?;
        if let Some(user) = run_as {
            chown(dir, Some(user.uid), Some(user.gid)).map_err(io_err("chown", dir))?;
        }
    }
    Ok(())
}

/// A fresh uniquely named dir under the system temp dir, private to the
/// Postgres user (root can still remove it).
fn create_temp_root(run_as: Option<&PgUser>) -> Result<PathBuf, ClusterError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!(
            "{TEMP_PREFIX}{}-{n}-{nanos:08x}",
            std::process::id()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(io_err("chmod", &dir))?;
                if let Some(user) = run_as {
                    chown(&dir, Some(user.uid), Some(user.gid)).map_err(io_err("chown", &dir))?;
                }
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("create", &dir)(e)),
        }
    }
}

fn free_port() -> Result<u16, ClusterError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|source| ClusterError::Io {
        action: "bind a probe socket on",
        path: PathBuf::from("127.0.0.1:0"),
        source,
    })?;
    let port = listener
        .local_addr()
        .map_err(|source| ClusterError::Io {
            action: "read the probe socket address of",
            path: PathBuf::from("127.0.0.1:0"),
            source,
        })?
        .port();
    Ok(port)
}

/// Whether the server log written since `offset` reports a bind failure.
fn port_collision_since(log: &Path, offset: u64) -> bool {
    let Ok(bytes) = fs::read(log) else {
        return false;
    };
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let fresh = bytes.get(start..).unwrap_or_default();
    let text = String::from_utf8_lossy(fresh);
    text.contains("Address already in use") || text.contains("could not bind")
}

/// Renders our settings plus the caller's into `ampere.conf` text.
fn render_settings(opts: &ClusterOptions) -> Result<String, ClusterError> {
    let fsync = if opts.data_dir.is_some() { "on" } else { "off" };
    let ours: [(&str, &str); 10] = [
        ("wal_level", "logical"),
        ("max_wal_senders", "20"),
        ("max_replication_slots", "20"),
        ("listen_addresses", "127.0.0.1"),
        ("unix_socket_directories", ""),
        ("fsync", fsync),
        ("logging_collector", "off"),
        ("shared_buffers", "128MB"),
        ("max_connections", "200"),
        ("lc_messages", "C"),
    ];
    let mut out = String::from("# Written by Ampere before every start; edits are lost.\n");
    let extra = opts
        .extra_settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()));
    for (name, value) in ours.into_iter().chain(extra) {
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        if !name_ok || value.contains(['\n', '\r', '\0']) {
            return Err(ClusterError::InvalidSetting { name: name.into() });
        }
        // Quoted form is valid for every setting type; escape ' and \.
        let value = value.replace('\\', "\\\\").replace('\'', "''");
        let _ = writeln!(out, "{name} = '{value}'");
    }
    Ok(out)
}

/// Parses `X/Y` (hex halves) into a 64-bit LSN.
fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_parsing() {
        assert_eq!(parse_lsn("AB/1F0"), Some(0xAB_0000_01F0));
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("nope"), None);
        assert_eq!(parse_lsn("1/"), None);
    }

    #[test]
    fn passwd_parsing() {
        let user =
            parse_passwd_line("postgres:x:101:104:PostgreSQL,,,:/var/lib/postgresql:/bin/bash\n");
        let user = user.expect("parses");
        assert_eq!((user.uid, user.gid), (101, 104));
        assert_eq!(user.home, PathBuf::from("/var/lib/postgresql"));
        assert!(parse_passwd_line("postgres:x").is_none());
    }

    #[test]
    fn settings_are_quoted_and_validated() {
        let opts = ClusterOptions {
            extra_settings: vec![("application_name".into(), r"it's a \ test".into())],
            ..ClusterOptions::default()
        };
        let text = render_settings(&opts).expect("renders");
        assert!(text.contains("wal_level = 'logical'\n"));
        assert!(text.contains("fsync = 'off'\n"));
        assert!(text.contains(r"application_name = 'it''s a \\ test'"));
        let bad = ClusterOptions {
            extra_settings: vec![("x = 1\nwal_level".into(), "minimal".into())],
            ..ClusterOptions::default()
        };
        assert!(matches!(
            render_settings(&bad),
            Err(ClusterError::InvalidSetting { .. })
        ));
    }

    #[test]
    fn url_encodes_database_names() {
        let encoded = utf8_percent_encode("my db/x_1", DB_NAME_ENCODE).to_string();
        assert_eq!(encoded, "my%20db%2Fx_1");
    }

    #[test]
    fn temp_cluster_lifecycle() {
        let mut cluster = LocalCluster::start_temp().expect("start temp cluster");
        let root = cluster.temp_root.clone().expect("temp root");
        assert!(cluster.data_dir().starts_with(&root));
        assert_eq!(
            cluster.url(),
            format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port())
        );
        assert_eq!(
            cluster.psql("postgres", "SHOW wal_level").unwrap(),
            "logical"
        );
        assert_eq!(cluster.psql("postgres", "SHOW fsync").unwrap(), "off");

        let positions = cluster
            .psql(
                "postgres",
                "SELECT pg_current_wal_lsn() > '1/0'::pg_lsn, \
                 pg_current_xact_id()::text::numeric > 4294967295",
            )
            .unwrap();
        assert_eq!(positions, "t|t");

        // Data survives an immediate stop (crash recovery) and a restart.
        cluster
            .psql(
                "postgres",
                "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);",
            )
            .unwrap();
        let port = cluster.port();
        cluster.stop(StopMode::Immediate).unwrap();
        assert!(cluster.psql("postgres", "SELECT 1").is_err());
        cluster.restart().unwrap();
        assert_eq!(cluster.port(), port);
        assert_eq!(
            cluster.psql("postgres", "SELECT count(*) FROM t").unwrap(),
            "2"
        );
        cluster.restart().unwrap();
        assert_eq!(
            cluster.psql("postgres", "SELECT sum(id) FROM t").unwrap(),
            "3"
        );

        let err = cluster
            .psql("postgres", "SELECT * FROM missing")
            .unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");

        cluster.psql("postgres", "CREATE DATABASE other").unwrap();
        assert_eq!(
            cluster.psql("other", "SELECT current_database()").unwrap(),
            "other"
        );

        cluster.stop(StopMode::Fast).unwrap();
        // Stopping twice is a no-op.
        cluster.stop(StopMode::Fast).unwrap();
        drop(cluster);
        assert!(!root.exists(), "temp dir {} survived drop", root.display());
    }

    #[test]
    fn stale_temp_clusters_are_reaped() {
        let cluster = LocalCluster::start_temp().expect("start temp cluster");
        let tools = cluster.tools.clone();
        let run_as = cluster.run_as.clone();
        let root = cluster.temp_root.clone().expect("temp root");
        let pid_file = cluster.data_dir().join("postmaster.pid");
        let pid_text = fs::read_to_string(&pid_file).expect("postmaster.pid");
        let pid: u32 = pid_text.lines().next().unwrap().parse().unwrap();
        // Simulate a creator killed without Drop: forget the handle and
        // rename the root so its pid (above any pid_max) is not alive.
        std::mem::forget(cluster);
        let orphan = root.with_file_name(format!("{TEMP_PREFIX}4294967294-0-{pid}"));
        fs::rename(&root, &orphan).unwrap();
        assert!(is_postgres_process(pid));

        reap_stale_temp_clusters(&tools, run_as.as_ref());
        assert!(!orphan.exists(), "stale dir survived");
        // pg_ctl returns once postmaster.pid is gone, a moment before exit.
        let deadline = Instant::now() + Duration::from_secs(10);
        while is_postgres_process(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!is_postgres_process(pid), "stale postmaster survived");
    }

    #[test]
    fn persistent_cluster_is_reused_and_kept() {
        let base = std::env::temp_dir().join(format!("ampere-pg-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let data = base.join("nested").join("pgdata");
        // Parents we create are root's and 0755 by default umask: traversable.
        let opts = ClusterOptions {
            data_dir: Some(data.clone()),
            extra_settings: vec![("application_name".into(), "ampere-dev".into())],
            ..ClusterOptions::default()
        };
        let first = LocalCluster::start(opts.clone()).expect("start dev cluster");
        assert_eq!(first.psql("postgres", "SHOW fsync").unwrap(), "on");
        first.psql("postgres", "CREATE TABLE kept (x int)").unwrap();
        let port = first.port();

        // A second handle on a live postmaster reuses it and does not stop it.
        let second = LocalCluster::start(opts.clone()).expect("reuse dev cluster");
        assert_eq!(second.port(), port);
        drop(second);
        assert_eq!(first.psql("postgres", "SELECT 1").unwrap(), "1");

        drop(first);
        assert!(
            data.join("PG_VERSION").exists(),
            "dev cluster must not be deleted"
        );
        assert!(
            !data.join("postmaster.pid").exists(),
            "dev cluster must be stopped"
        );

        // Reopening does not re-run initdb.
        let third = LocalCluster::start(opts).expect("reopen dev cluster");
        assert_eq!(
            third.psql("postgres", "SELECT count(*) FROM kept").unwrap(),
            "0"
        );
        drop(third);
        fs::remove_dir_all(&base).unwrap();
    }
}
