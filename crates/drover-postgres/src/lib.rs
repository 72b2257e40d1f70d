//! A private PostgreSQL server for droverd, run from the system's own
//! PostgreSQL binaries when no `--database-url` is configured.
//!
//! Given a directory `D` (droverd passes `<data-dir>/postgres`):
//!
//! * the cluster lives in `D/data`, created by `initdb` on first start and
//!   reused afterwards;
//! * the server listens only on the unix socket `D/.s.PGSQL.5432`, never on
//!   TCP (`listen_addresses=''`), with `unix_socket_permissions=0700`;
//! * its output is appended to `D/postgres.log`;
//! * when we are root, initdb and postgres run as the `postgres` system user
//!   (or `nobody`), which is given `D`;
//! * a server left running by a previous droverd that was killed is stopped
//!   before ours starts;
//! * the server gets SIGINT (fast shutdown) on [`PrivatePostgres::stop`], on
//!   drop, and, through `PR_SET_PDEATHSIG`, when our process dies.
//!
//! ```no_run
//! # async fn run() -> Result<(), drover_postgres::PostgresError> {
//! use drover_postgres::{PrivatePostgres, PrivatePostgresOptions};
//! let pg = PrivatePostgres::start(PrivatePostgresOptions::new("/var/lib/drover/postgres")).await?;
//! let pool = sqlx::PgPool::connect(pg.database_url()).await;
//! // ...
//! pg.stop().await?;
//! # Ok(()) }
//! ```

mod binaries;
mod error;
mod process;
mod user;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use tokio::time::Instant;

pub use binaries::find_client;
pub use error::PostgresError;

use process::Postmaster;
use user::RunAs;

/// The role initdb creates as the cluster's superuser, and that droverd uses.
pub const USER: &str = "drover";
/// The database droverd uses.
pub const DATABASE: &str = "drover";
/// The port; with no TCP listener it only names the socket, `.s.PGSQL.5432`.
pub const PORT: u16 = 5432;
/// The longest unix socket path the kernel accepts (`sun_path` is 108 bytes,
/// with a terminating NUL).
pub const MAX_SOCKET_PATH_LEN: usize = 107;

/// How long the server may take to accept connections after being spawned
/// (this includes crash recovery after an unclean stop).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for the process to go after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one connection attempt while waiting for the server.
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between connection attempts while waiting for the server.
const CONNECT_RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// Lines of postgres.log quoted in startup errors.
const LOG_TAIL_LINES: usize = 40;

/// Settings that would change how the server is reached or where its data
/// is; they are fixed by this crate.
const RESERVED_SETTINGS: &[&str] = &[
    "listen_addresses",
    "port",
    "unix_socket_directories",
    "unix_socket_permissions",
    "unix_socket_group",
    "data_directory",
    "hba_file",
    "config_file",
];

/// How to run the private server.
#[derive(Debug, Clone)]
pub struct PrivatePostgresOptions {
    /// The directory `D`: the cluster goes in `D/data`, the socket in `D`,
    /// the server's output in `D/postgres.log`.
    pub dir: PathBuf,
    /// The directory holding `initdb` and `postgres`; `None` searches PATH,
    /// then `/usr/lib/postgresql/*/bin`.
    pub bin_dir: Option<PathBuf>,
    /// Extra server settings, passed as `-c key=value` (e.g. `fsync=off`,
    /// `shared_buffers=16MB`). Settings that decide how the server is reached
    /// (`listen_addresses`, `port`, `unix_socket_*`, ...) are rejected.
    /// When `fsync` is turned off, `initdb` also runs with `--no-sync`.
    pub extra_settings: Vec<(String, String)>,
}

impl PrivatePostgresOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PrivatePostgresOptions {
            dir: dir.into(),
            bin_dir: None,
            extra_settings: Vec::new(),
        }
    }

    /// Uses the binaries in `bin_dir` instead of searching for them.
    pub fn with_bin_dir(mut self, bin_dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(bin_dir.into());
        self
    }

    /// Adds a `-c key=value` server setting.
    pub fn with_setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_settings.push((key.into(), value.into()));
        self
    }

    fn fsync_off(&self) -> bool {
        self.extra_settings
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case("fsync"))
            .is_some_and(|(_, v)| {
                matches!(
                    v.to_ascii_lowercase().as_str(),
                    "off" | "false" | "no" | "0"
                )
            })
    }
}

/// A running private PostgreSQL server. Stop it with [`PrivatePostgres::stop`];
/// dropping it asks the server to shut down without waiting.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    database_url: String,
    version: String,
    created_cluster: bool,
    run_as: Option<String>,
    /// `None` once stopped.
    postmaster: Option<Postmaster>,
}

impl PrivatePostgres {
    /// Starts the server (running `initdb` first if `D/data` holds no
    /// cluster), waits until it accepts connections, makes sure database
    /// `drover` exists, and checks that [`Self::database_url`] works.
    pub async fn start(opts: PrivatePostgresOptions) -> Result<Self, PostgresError> {
        validate_settings(&opts.extra_settings)?;

        let dir = std::path::absolute(&opts.dir).map_err(|error| {
            PostgresError::io(format!("resolving {}", opts.dir.display()), error)
        })?;
        check_socket_path(&dir)?;

        // An existing cluster decides which PostgreSQL version we need.
        let data_major = read_pg_version(&dir.join("data"))?;
        let bins = binaries::find(
            opts.bin_dir.as_deref(),
            &dir.join("data"),
            data_major.as_deref(),
        )
        .await?;

        std::fs::create_dir_all(&dir)
            .map_err(|error| PostgresError::io(format!("creating {}", dir.display()), error))?;
        let dir = dir
            .canonicalize()
            .map_err(|error| PostgresError::io(format!("resolving {}", dir.display()), error))?;
        check_socket_path(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |error| {
                PostgresError::io(
                    format!("restricting permissions of {}", dir.display()),
                    error,
                )
            },
        )?;
        let data_dir = dir.join("data");
        let log_path = dir.join("postgres.log");
        let socket_lock = dir.join(format!(".s.PGSQL.{PORT}.lock"));
        let database_url = database_url(&dir)?;

        let run_as = user::run_as()?;
        if let Some(user) = &run_as {
            user::check_parents_traversable(&dir, user)?;
        }

        process::stop_leftover(&data_dir, &socket_lock, STOP_TIMEOUT, KILL_TIMEOUT).await?;

        // A data directory without PG_VERSION is what an interrupted initdb
        // leaves behind; initdb refuses a non-empty directory, so clear it.
        let created_cluster = data_major.is_none();
        if created_cluster && data_dir.exists() && !dir_is_empty(&data_dir)? {
            tracing::warn!(data_dir = %data_dir.display(), "removing the remains of an interrupted initdb");
            std::fs::remove_dir_all(&data_dir).map_err(|error| {
                PostgresError::io(
                    format!("removing incomplete cluster {}", data_dir.display()),
                    error,
                )
            })?;
        }

        let mut log = open_log(&log_path)?;
        if let Some(user) = &run_as {
            user::chown_recursive(&dir, user)?;
        }

        if created_cluster {
            run_initdb(
                &bins,
                &dir,
                &data_dir,
                &log_path,
                &mut log,
                run_as.as_ref(),
                opts.fsync_off(),
            )
            .await?;
        }

        let (postmaster, log_offset) = spawn_postgres(
            &bins,
            &dir,
            &data_dir,
            &log_path,
            &mut log,
            run_as.as_ref(),
            &opts.extra_settings,
        )
        .await?;
        let mut pg = PrivatePostgres {
            database_url,
            dir,
            data_dir,
            log_path,
            version: bins.version.clone(),
            created_cluster,
            run_as: run_as.map(|user| user.name),
            postmaster: Some(postmaster),
        };
        match pg.finish_start(log_offset).await {
            Ok(()) => {
                tracing::info!(
                    pid = %pg.pid(),
                    version = %pg.version,
                    socket_dir = %pg.dir.display(),
                    user = pg.run_as.as_deref().unwrap_or("(ourselves)"),
                    "private PostgreSQL is ready"
                );
                Ok(pg)
            }
            Err(error) => {
                if let Some(mut postmaster) = pg.postmaster.take()
                    && let Err(stop_error) = postmaster.shutdown(STOP_TIMEOUT, KILL_TIMEOUT).await
                {
                    tracing::warn!(%stop_error, "could not stop PostgreSQL after a failed start");
                }
                Err(error)
            }
        }
    }

    /// The sqlx connection URL:
    /// `postgres://drover@localhost:5432/drover?host=<socket dir>&sslmode=disable`.
    /// The URL a private PostgreSQL in `dir` (the directory given to
    /// [`PrivatePostgresOptions::new`]) answers on while it runs, e.g. to reach the one a
    /// running server owns.
    pub fn url_for(dir: &Path) -> Result<String, PostgresError> {
        database_url(dir)
    }

    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The directory holding the server's unix socket (`D`).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster's data directory (`D/data`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log, `D/postgres.log`.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Connection options equivalent to [`Self::database_url`], unaffected by
    /// `PG*` environment variables.
    pub fn connect_options(&self) -> PgConnectOptions {
        connect_options(&self.dir, DATABASE)
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> u32 {
        self.postmaster
            .as_ref()
            .map(|p| p.pid.as_raw().unsigned_abs())
            .unwrap_or_default()
    }

    /// The server's PostgreSQL version, e.g. "15.18".
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether this start created the cluster (ran `initdb`) rather than
    /// reusing an existing one.
    pub fn created_cluster(&self) -> bool {
        self.created_cluster
    }

    /// Stops the server with a fast shutdown (SIGINT: active sessions are
    /// ended, the server checkpoints and exits), waiting up to 60 s before
    /// resorting to SIGKILL.
    pub async fn stop(mut self) -> Result<(), PostgresError> {
        let Some(mut postmaster) = self.postmaster.take() else {
            return Ok(());
        };
        if let Some(status) = postmaster.exit_status() {
            tracing::warn!(pid = %postmaster.pid, %status, "private PostgreSQL had already exited");
            return Ok(());
        }
        tracing::info!(pid = %postmaster.pid, "stopping private PostgreSQL");
        let status = postmaster.shutdown(STOP_TIMEOUT, KILL_TIMEOUT).await?;
        tracing::info!(pid = %postmaster.pid, %status, "private PostgreSQL stopped");
        Ok(())
    }

    /// Waits for the server to accept connections, then creates the database.
    async fn finish_start(&mut self, log_offset: u64) -> Result<(), PostgresError> {
        self.wait_until_ready(log_offset).await?;
        self.ensure_database().await?;
        // The URL handed out must work exactly as given.
        let conn = PgConnection::connect(&self.database_url)
            .await
            .map_err(|error| {
                PostgresError::db(format!("connecting to {}", self.database_url), error)
            })?;
        let _ = conn.close().await;
        Ok(())
    }

    async fn wait_until_ready(&mut self, log_offset: u64) -> Result<(), PostgresError> {
        let options = connect_options(&self.dir, "postgres");
        let deadline = Instant::now() + START_TIMEOUT;
        let postmaster = self.postmaster.as_mut().expect("postmaster is running");
        loop {
            if let Some(status) = postmaster.exit_status() {
                return Err(PostgresError::StartFailed {
                    reason: format!("postgres exited during startup ({status})"),
                    log_tail: log_tail(&self.log_path, log_offset),
                    log: self.log_path.clone(),
                });
            }
            let last_error = match tokio::time::timeout(
                CONNECT_ATTEMPT_TIMEOUT,
                PgConnection::connect_with(&options),
            )
            .await
            {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("connection attempt timed out after {CONNECT_ATTEMPT_TIMEOUT:?}"),
            };
            if Instant::now() >= deadline {
                return Err(PostgresError::StartFailed {
                    reason: format!(
                        "it did not accept connections on its socket in {} within {START_TIMEOUT:?} (last error: {last_error})",
                        self.dir.display()
                    ),
                    log_tail: log_tail(&self.log_path, log_offset),
                    log: self.log_path.clone(),
                });
            }
            // Retry soon, or at once if the server exits meanwhile.
            tokio::select! {
                _ = postmaster.exited() => {}
                _ = tokio::time::sleep(CONNECT_RETRY_INTERVAL) => {}
            }
        }
    }

    async fn ensure_database(&self) -> Result<(), PostgresError> {
        let mut conn = PgConnection::connect_with(&connect_options(&self.dir, "postgres"))
            .await
            .map_err(|error| PostgresError::db("connecting to database `postgres`", error))?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(DATABASE)
                .fetch_one(&mut conn)
                .await
                .map_err(|error| PostgresError::db("looking up database `drover`", error))?;
        if !exists {
            tracing::info!("creating database `{DATABASE}`");
            match sqlx::query(&format!("CREATE DATABASE \"{DATABASE}\""))
                .execute(&mut conn)
                .await
            {
                Ok(_) => {}
                // Someone else created it meanwhile.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
                Err(error) => return Err(PostgresError::db("creating database `drover`", error)),
            }
        }
        let _ = conn.close().await;
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(postmaster) = self.postmaster.take()
            && postmaster.exit_status().is_none()
        {
            tracing::info!(pid = %postmaster.pid, "private PostgreSQL dropped without stop(); asking it to shut down");
            postmaster.signal(nix::sys::signal::Signal::SIGINT);
        }
    }
}

fn validate_settings(settings: &[(String, String)]) -> Result<(), PostgresError> {
    for (key, value) in settings {
        let invalid = |reason: &str| PostgresError::InvalidSetting {
            name: key.clone(),
            reason: reason.to_string(),
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(invalid(
                "a setting name may only contain letters, digits, `_` and `.`",
            ));
        }
        if RESERVED_SETTINGS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(key))
        {
            return Err(invalid(
                "it is fixed by drover: the private server listens only on its unix socket",
            ));
        }
        if value.contains('\0') {
            return Err(invalid("the value contains a NUL byte"));
        }
    }
    Ok(())
}

fn socket_path(dir: &Path) -> PathBuf {
    dir.join(format!(".s.PGSQL.{PORT}"))
}

fn check_socket_path(dir: &Path) -> Result<(), PostgresError> {
    let path = socket_path(dir);
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH_LEN {
        return Err(PostgresError::SocketPathTooLong {
            path,
            len,
            max: MAX_SOCKET_PATH_LEN,
        });
    }
    Ok(())
}

/// The major version in `data_dir/PG_VERSION`, if a cluster is there.
fn read_pg_version(data_dir: &Path) -> Result<Option<String>, PostgresError> {
    let path = data_dir.join("PG_VERSION");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(PostgresError::io(
            format!("reading {}", path.display()),
            error,
        )),
    }
}

fn dir_is_empty(dir: &Path) -> Result<bool, PostgresError> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|error| PostgresError::io(format!("listing {}", dir.display()), error))?;
    Ok(entries.next().is_none())
}

fn open_log(path: &Path) -> Result<File, PostgresError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| PostgresError::io(format!("opening {}", path.display()), error))
}

/// Writes a marker line to the log and returns the log's length after it,
/// from where the output of the next command starts.
fn log_marker(log: &mut File, log_path: &Path, line: &str) -> Result<u64, PostgresError> {
    writeln!(log, "=== drover-postgres: {line} ===")
        .and_then(|()| log.metadata().map(|m| m.len()))
        .map_err(|error| PostgresError::io(format!("writing to {}", log_path.display()), error))
}

fn log_stdio(log: &File, log_path: &Path) -> Result<(Stdio, Stdio), PostgresError> {
    let clone = || {
        log.try_clone().map_err(|error| {
            PostgresError::io(
                format!("duplicating the handle of {}", log_path.display()),
                error,
            )
        })
    };
    Ok((Stdio::from(clone()?), Stdio::from(clone()?)))
}

/// The last lines written to the log since `offset`.
fn log_tail(path: &Path, offset: u64) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let start = offset.max(len.saturating_sub(MAX_BYTES)).min(len);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            if lines.is_empty() {
                return "(nothing was logged)".to_string();
            }
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(error) => format!("(could not read the log: {error})"),
    }
}

async fn initdb_supports(initdb: &Path, option: &str) -> bool {
    match tokio::process::Command::new(initdb)
        .arg("--help")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
    {
        Ok(output) => String::from_utf8_lossy(&output.stdout).contains(option),
        Err(_) => false,
    }
}

async fn run_initdb(
    bins: &binaries::Binaries,
    dir: &Path,
    data_dir: &Path,
    log_path: &Path,
    log: &mut File,
    run_as: Option<&RunAs>,
    no_sync: bool,
) -> Result<(), PostgresError> {
    tracing::info!(data_dir = %data_dir.display(), version = %bins.version, "creating PostgreSQL cluster with initdb");
    let mut cmd = tokio::process::Command::new(&bins.initdb);
    cmd.arg("-D")
        .arg(data_dir)
        .arg(format!("--username={USER}"))
        .args([
            "--auth-local=trust",
            "--auth-host=reject",
            "--encoding=UTF8",
            "--locale=C",
        ]);
    if initdb_supports(&bins.initdb, "--no-instructions").await {
        cmd.arg("--no-instructions");
    }
    if no_sync {
        cmd.arg("--no-sync");
    }
    let offset = log_marker(log, log_path, &format!("initdb {}", data_dir.display()))?;
    let (stdout, stderr) = log_stdio(log, log_path)?;
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .env_remove("PGDATA")
        .kill_on_drop(true);
    if let Some(user) = run_as {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    let status = cmd
        .status()
        .await
        .map_err(|error| PostgresError::io(format!("running {}", bins.initdb.display()), error))?;
    if !status.success() {
        return Err(PostgresError::Initdb {
            status: status.to_string(),
            log_tail: log_tail(log_path, offset),
            log: log_path.to_path_buf(),
        });
    }
    Ok(())
}

/// Spawns the postmaster; returns it and the log offset its output starts at.
async fn spawn_postgres(
    bins: &binaries::Binaries,
    dir: &Path,
    data_dir: &Path,
    log_path: &Path,
    log: &mut File,
    run_as: Option<&RunAs>,
    extra_settings: &[(String, String)],
) -> Result<(Postmaster, u64), PostgresError> {
    let mut cmd = std::process::Command::new(&bins.postgres);
    cmd.arg("-D").arg(data_dir);
    for (key, value) in extra_settings {
        cmd.arg("-c").arg(format!("{key}={value}"));
    }
    // Last, so that they win over anything else.
    cmd.arg("-k")
        .arg(dir)
        .args(["-c", "listen_addresses="])
        .arg("-c")
        .arg(format!("port={PORT}"))
        .args(["-c", "unix_socket_permissions=0700"]);

    let offset = log_marker(
        log,
        log_path,
        &format!("starting postgres {}", data_dir.display()),
    )?;
    let (stdout, stderr) = log_stdio(log, log_path)?;
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .env_remove("PGDATA")
        // Its own process group: a Ctrl-C in droverd's terminal must not stop
        // the database under droverd's feet; droverd stops it.
        .process_group(0);
    if let Some(user) = run_as {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    tracing::info!(
        postgres = %bins.postgres.display(),
        data_dir = %data_dir.display(),
        socket_dir = %dir.display(),
        "starting private PostgreSQL"
    );
    let postmaster = process::spawn(cmd).await.map_err(|error| {
        PostgresError::io(format!("starting {}", bins.postgres.display()), error)
    })?;
    Ok((postmaster, offset))
}

fn connect_options(socket_dir: &Path, database: &str) -> PgConnectOptions {
    PgConnectOptions::new_without_pgpass()
        .socket(socket_dir)
        .port(PORT)
        .username(USER)
        .database(database)
        .ssl_mode(PgSslMode::Disable)
}

fn database_url(socket_dir: &Path) -> Result<String, PostgresError> {
    let dir = socket_dir
        .to_str()
        .ok_or_else(|| PostgresError::NonUtf8Path {
            path: socket_dir.to_path_buf(),
        })?;
    let mut url = url::Url::parse(&format!("postgres://{USER}@localhost:{PORT}/{DATABASE}"))
        .expect("static URL is valid");
    url.query_pairs_mut()
        .append_pair("host", dir)
        .append_pair("sslmode", "disable");
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encodes_socket_dir() {
        let url = database_url(Path::new("/tmp/a b/pg")).unwrap();
        assert_eq!(
            url,
            "postgres://drover@localhost:5432/drover?host=%2Ftmp%2Fa+b%2Fpg&sslmode=disable"
        );
        let opts: PgConnectOptions = url.parse().unwrap();
        assert_eq!(opts.get_socket(), Some(&PathBuf::from("/tmp/a b/pg")));
        assert_eq!(opts.get_database(), Some(DATABASE));
        assert_eq!(opts.get_username(), USER);
        assert_eq!(opts.get_port(), PORT);
    }

    #[test]
    fn rejects_reserved_and_malformed_settings() {
        for key in [
            "listen_addresses",
            "PORT",
            "unix_socket_directories",
            "bad key",
            "a=b",
            "",
        ] {
            let err = validate_settings(&[(key.to_string(), "x".to_string())]).unwrap_err();
            assert!(
                matches!(err, PostgresError::InvalidSetting { .. }),
                "{key}: {err}"
            );
        }
        validate_settings(&[
            ("fsync".to_string(), "off".to_string()),
            ("shared_buffers".to_string(), "16MB".to_string()),
            (
                "auto_explain.log_min_duration".to_string(),
                "1s".to_string(),
            ),
        ])
        .unwrap();
    }

    #[test]
    fn socket_path_limit() {
        check_socket_path(Path::new("/var/lib/drover/postgres")).unwrap();
        // 107 bytes exactly is accepted, 108 is not.
        let suffix = "/.s.PGSQL.5432".len();
        let ok = format!("/{}", "a".repeat(MAX_SOCKET_PATH_LEN - suffix - 1));
        check_socket_path(Path::new(&ok)).unwrap();
        let long = format!("/{}", "a".repeat(MAX_SOCKET_PATH_LEN - suffix));
        let err = check_socket_path(Path::new(&long)).unwrap_err();
        assert!(
            matches!(err, PostgresError::SocketPathTooLong { len: 108, .. }),
            "{err}"
        );
        assert!(err.to_string().contains(&long), "{err}");
    }

    #[test]
    fn fsync_off_detection() {
        let opts = PrivatePostgresOptions::new("/x");
        assert!(!opts.fsync_off());
        assert!(opts.clone().with_setting("fsync", "off").fsync_off());
        assert!(
            !opts
                .with_setting("fsync", "off")
                .with_setting("fsync", "on")
                .fsync_off()
        );
    }
}
