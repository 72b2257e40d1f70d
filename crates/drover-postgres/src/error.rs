use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while running the private PostgreSQL server.
///
/// Every message is meant to be shown to an operator as is: it names the path,
/// process or package involved and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// A client program (`pg_dump`, `pg_restore`) was not found.
    #[error(
        "the PostgreSQL program {name} was not found {searched}; install it with \
         `apt-get install postgresql-client` (Debian/Ubuntu)"
    )]
    ClientNotFound {
        name: &'static str,
        searched: String,
    },

    /// `initdb` and `postgres` were not found.
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found {searched}; install them with \
         `apt-get install postgresql` (Debian/Ubuntu) or set --database-url"
    )]
    BinariesNotFound {
        /// Where we looked, e.g. "on PATH or under /usr/lib/postgresql/*/bin".
        searched: String,
    },

    /// The existing cluster was made by a PostgreSQL major version whose
    /// server binaries are not installed.
    #[error(
        "the PostgreSQL cluster in {data_dir} was created by PostgreSQL {data_version}, but only \
         server binaries of PostgreSQL {found} were found; install PostgreSQL {data_version} \
         (`apt-get install postgresql-{data_version}` on Debian/Ubuntu) or upgrade the cluster \
         with pg_upgrade"
    )]
    VersionMismatch {
        data_dir: PathBuf,
        data_version: String,
        found: String,
    },

    /// The unix socket path would not fit in `sockaddr_un.sun_path`.
    #[error(
        "unix socket path {path} is {len} bytes long, over the {max}-byte limit of unix socket \
         paths; choose a data directory with a shorter path"
    )]
    SocketPathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },

    /// Running as root, and neither the `postgres` nor the `nobody` user exists.
    #[error(
        "PostgreSQL refuses to run as root, and no unprivileged user to run it as exists \
         (tried `postgres` and `nobody`); create a `postgres` system user or set --database-url"
    )]
    NoUnprivilegedUser,

    /// Running as root, and a parent of the postgres directory cannot be
    /// entered by the unprivileged user the server runs as.
    #[error(
        "directory {path} is not traversable by user `{user}`, which runs the private PostgreSQL \
         server because PostgreSQL refuses to run as root; make it traversable \
         (e.g. `chmod o+x {path}`) or choose a data directory elsewhere"
    )]
    ParentNotTraversable { path: PathBuf, user: String },

    /// An entry of `extra_settings` is malformed or would change how the
    /// server is reached (it must only ever listen on its unix socket).
    #[error("invalid PostgreSQL setting `{name}`: {reason}")]
    InvalidSetting { name: String, reason: String },

    /// A path we must put into a connection URL is not UTF-8.
    #[error("path {path} is not valid UTF-8, so it cannot be used in a connection URL")]
    NonUtf8Path { path: PathBuf },

    /// A file-system or process operation failed.
    #[error("{context}: {error}")]
    Io {
        context: String,
        error: std::io::Error,
    },

    /// `initdb` exited unsuccessfully.
    #[error("initdb failed ({status}); last lines of {}:\n{log_tail}", log.display())]
    Initdb {
        status: String,
        log: PathBuf,
        log_tail: String,
    },

    /// The server exited or did not accept connections in time.
    #[error("PostgreSQL failed to start: {reason}; last lines of {}:\n{log_tail}", log.display())]
    StartFailed {
        reason: String,
        log: PathBuf,
        log_tail: String,
    },

    /// A server left over from a previous run could not be stopped.
    #[error(
        "a PostgreSQL server left over from a previous run (pid {pid}) is still using {}: {reason}",
        data_dir.display()
    )]
    LeftoverServer {
        pid: i32,
        data_dir: PathBuf,
        reason: String,
    },

    /// A query against the freshly started server failed.
    #[error("{context}: {error}")]
    Database { context: String, error: sqlx::Error },

    /// The server did not exit after SIGINT and then SIGKILL.
    #[error(
        "PostgreSQL (pid {pid}) did not exit within {waited:?} of being asked to stop, even after SIGKILL"
    )]
    StopTimeout { pid: i32, waited: Duration },
}

impl PostgresError {
    pub(crate) fn io(context: impl Into<String>, error: std::io::Error) -> Self {
        PostgresError::Io {
            context: context.into(),
            error,
        }
    }

    pub(crate) fn db(context: impl Into<String>, error: sqlx::Error) -> Self {
        PostgresError::Database {
            context: context.into(),
            error,
        }
    }
}
