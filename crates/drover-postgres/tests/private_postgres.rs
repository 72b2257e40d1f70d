//! Tests against the real PostgreSQL server binaries of this machine
//! (Debian: `apt-get install postgresql`). Each test starts its own server in
//! its own temporary directory and stops it before returning.

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use drover_postgres::{PostgresError, PrivatePostgres, PrivatePostgresOptions};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use sqlx::{Connection, PgConnection};
use tokio::io::AsyncBufReadExt;
use tokio::time::Instant;

/// Options for a small, fast, throwaway server.
fn test_options(dir: impl AsRef<Path>) -> PrivatePostgresOptions {
    PrivatePostgresOptions::new(dir.as_ref())
        .with_setting("fsync", "off")
        .with_setting("shared_buffers", "16MB")
        .with_setting("max_connections", "20")
}

async fn connect(pg: &PrivatePostgres) -> PgConnection {
    PgConnection::connect(pg.database_url())
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", pg.database_url()))
}

/// Whether `pid` is still a running process (a zombie counts as gone).
fn running(pid: u32) -> bool {
    let pid = Pid::from_raw(pid as i32);
    if kill(pid, None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z' | 'X'))
        }
        Err(_) => false,
    }
}

/// Polls until `pid` is gone; panics after `timeout`.
async fn wait_until_gone(pid: u32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while running(pid) {
        assert!(
            Instant::now() < deadline,
            "process {pid} still running after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn start_query_stop_and_restart_reuses_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = PrivatePostgres::start(test_options(tmp.path()))
        .await
        .unwrap();
    assert!(pg.created_cluster(), "first start must run initdb");
    assert_eq!(pg.socket_dir(), tmp.path().canonicalize().unwrap());
    assert!(pg.data_dir().join("PG_VERSION").is_file());
    assert!(
        pg.database_url()
            .starts_with("postgres://drover@localhost:5432/drover?host=%2F")
    );

    let mut conn = connect(&pg).await;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let (user, db): (String, String) =
        sqlx::query_as("SELECT current_user::text, current_database()::text")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((user.as_str(), db.as_str()), ("drover", "drover"));
    sqlx::query("CREATE TABLE machines (id int PRIMARY KEY, name text NOT NULL)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO machines VALUES (1, 'cp-1')")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    if nix::unistd::geteuid().is_root() {
        // PostgreSQL refuses root: it must run as the postgres user (or nobody).
        let expected = nix::unistd::User::from_name("postgres")
            .unwrap()
            .or_else(|| nix::unistd::User::from_name("nobody").unwrap())
            .unwrap();
        let owner = std::fs::metadata(pg.data_dir()).unwrap().uid();
        assert_eq!(owner, expected.uid.as_raw());
        let status = std::fs::read_to_string(format!("/proc/{}/status", pg.pid())).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid_line
                .split_whitespace()
                .skip(1)
                .all(|uid| uid == expected.uid.to_string()),
            "{uid_line}"
        );
    }

    let first_pid = pg.pid();
    pg.stop().await.unwrap();
    assert!(
        !running(first_pid),
        "stop() must wait for the server to exit"
    );
    assert!(!tmp.path().join("data/postmaster.pid").exists());

    let pg = PrivatePostgres::start(test_options(tmp.path()))
        .await
        .unwrap();
    assert!(!pg.created_cluster(), "second start must reuse the cluster");
    let mut conn = connect(&pg).await;
    let name: String = sqlx::query_scalar("SELECT name FROM machines WHERE id = 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(name, "cp-1");
    conn.close().await.unwrap();
    pg.stop().await.unwrap();

    let log = std::fs::read_to_string(tmp.path().join("postgres.log")).unwrap();
    assert_eq!(
        log.matches("=== drover-postgres: initdb").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("=== drover-postgres: starting postgres")
            .count(),
        2,
        "{log}"
    );
}

/// The socket inodes a process holds open.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| {
            let target = std::fs::read_link(entry.ok()?.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Inodes of the TCP sockets of the machine (this network namespace).
fn tcp_socket_inodes() -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            if let Some(inode) = line.split_whitespace().nth(9).and_then(|s| s.parse().ok()) {
                inodes.insert(inode);
            }
        }
    }
    inodes
}

#[tokio::test]
async fn listens_only_on_its_unix_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = PrivatePostgres::start(test_options(tmp.path()))
        .await
        .unwrap();
    let mut conn = connect(&pg).await;
    let listen: String = sqlx::query_scalar("SHOW listen_addresses")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(listen, "");
    let perms: String = sqlx::query_scalar("SHOW unix_socket_permissions")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(perms, "0700");
    let dirs: String = sqlx::query_scalar("SHOW unix_socket_directories")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(Path::new(&dirs), pg.socket_dir());
    // Our extra settings are applied.
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(fsync, "off");
    let buffers: String = sqlx::query_scalar("SHOW shared_buffers")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(buffers, "16MB");
    // We are on the unix socket, not TCP.
    let addr: Option<String> = sqlx::query_scalar("SELECT inet_server_addr()::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(addr, None);
    conn.close().await.unwrap();

    let socket = pg.socket_dir().join(".s.PGSQL.5432");
    assert!(
        std::fs::symlink_metadata(&socket)
            .unwrap()
            .file_type()
            .is_socket()
    );

    // The postmaster holds no TCP socket at all.
    let held = socket_inodes(pg.pid());
    assert!(
        !held.is_empty(),
        "the postmaster should hold its unix socket"
    );
    let tcp = tcp_socket_inodes();
    assert!(
        held.is_disjoint(&tcp),
        "postmaster holds TCP sockets: {:?}",
        held.intersection(&tcp).collect::<Vec<_>>()
    );

    pg.stop().await.unwrap();
}

#[tokio::test]
async fn leftover_server_is_stopped_and_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = PrivatePostgres::start(test_options(tmp.path()))
        .await
        .unwrap();
    let mut conn = connect(&pg).await;
    sqlx::query("CREATE TABLE kept (v text)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO kept VALUES ('survives')")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    // Lose our handle without stopping: the server keeps running, as when
    // droverd is killed with SIGKILL.
    let old_pid = pg.pid();
    std::mem::forget(pg);
    assert!(running(old_pid));

    let pg = PrivatePostgres::start(test_options(tmp.path()))
        .await
        .unwrap();
    assert!(!pg.created_cluster());
    assert_ne!(pg.pid(), old_pid);
    assert!(
        !running(old_pid),
        "the leftover server must have been stopped"
    );
    let mut conn = connect(&pg).await;
    let v: String = sqlx::query_scalar("SELECT v FROM kept")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, "survives");
    conn.close().await.unwrap();
    pg.stop().await.unwrap();
}

const HELPER_DIR_ENV: &str = "DROVER_POSTGRES_TEST_HELPER_DIR";
const HELPER_READY: &str = "DROVER_POSTGRES_HELPER_READY";

/// Not a test by itself: run in a child process by
/// `killed_owner_takes_its_server_down`, it starts a server and then waits to
/// be killed.
#[tokio::test]
#[ignore = "helper process for killed_owner_takes_its_server_down"]
async fn helper_hold_server_until_killed() {
    let Some(dir) = std::env::var_os(HELPER_DIR_ENV) else {
        return;
    };
    let pg = PrivatePostgres::start(test_options(dir)).await.unwrap();
    println!("{HELPER_READY} {}", pg.pid());
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn killed_owner_takes_its_server_down() {
    let tmp = tempfile::tempdir().unwrap();
    let mut helper = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "helper_hold_server_until_killed",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_DIR_ENV, tmp.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(helper.stdout.take().unwrap()).lines();
    let server_pid: u32 = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            // libtest may have written "test name ... " before it on the line.
            if let Some((_, pid)) = line.split_once(HELPER_READY) {
                return pid.trim().parse().unwrap();
            }
        }
        panic!("helper exited without starting a server");
    })
    .await
    .expect("helper did not start its server in time");
    assert!(running(server_pid));

    // SIGKILL: no destructor runs in the helper.
    helper.kill().await.unwrap();

    // PR_SET_PDEATHSIG asks the orphaned server to shut down.
    wait_until_gone(server_pid, Duration::from_secs(60)).await;

    // And the directory is usable again.
    let pg = PrivatePostgres::start(test_options(tmp.path()))
        .await
        .unwrap();
    assert!(!pg.created_cluster());
    let mut conn = connect(&pg).await;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    conn.close().await.unwrap();
    pg.stop().await.unwrap();
}

#[tokio::test]
async fn dropping_without_stop_shuts_the_server_down() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = PrivatePostgres::start(test_options(tmp.path()))
        .await
        .unwrap();
    let pid = pg.pid();
    drop(pg);
    wait_until_gone(pid, Duration::from_secs(60)).await;
    assert!(
        !tmp.path().join("data/postmaster.pid").exists(),
        "fast shutdown removes the pid file"
    );
}

#[tokio::test]
async fn missing_binaries_name_the_package_to_install() {
    let tmp = tempfile::tempdir().unwrap();
    let empty_bin = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pg");
    let err = PrivatePostgres::start(test_options(&dir).with_bin_dir(empty_bin.path()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PostgresError::BinariesNotFound { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("apt-get install postgresql"), "{message}");
    assert!(message.contains("initdb, postgres"), "{message}");
    assert!(
        !dir.exists(),
        "nothing is created when the binaries are missing"
    );
}

#[tokio::test]
async fn too_long_socket_path_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("x".repeat(110));
    let err = PrivatePostgres::start(test_options(&dir))
        .await
        .unwrap_err();
    match &err {
        PostgresError::SocketPathTooLong { path, .. } => assert!(path.starts_with(&dir)),
        other => panic!("unexpected error: {other:?}"),
    }
    assert!(err.to_string().contains(&*dir.to_string_lossy()), "{err}");
}

#[tokio::test]
async fn reserved_settings_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let err =
        PrivatePostgres::start(test_options(tmp.path()).with_setting("listen_addresses", "*"))
            .await
            .unwrap_err();
    assert!(
        matches!(err, PostgresError::InvalidSetting { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn untraversable_parent_is_named() {
    if !nix::unistd::geteuid().is_root() {
        // Only root hands the server to another user.
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let locked = tmp.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = PrivatePostgres::start(test_options(locked.join("pg")))
        .await
        .unwrap_err();
    match &err {
        PostgresError::ParentNotTraversable { path, .. } => {
            assert_eq!(path, &locked.canonicalize().unwrap())
        }
        other => panic!("unexpected error: {other:?}"),
    }
    assert!(
        err.to_string().contains(&*locked.to_string_lossy()),
        "{err}"
    );
}

#[tokio::test]
async fn failed_start_quotes_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let err =
        PrivatePostgres::start(test_options(tmp.path()).with_setting("shared_buffers", "lots"))
            .await
            .unwrap_err();
    match &err {
        PostgresError::StartFailed { log_tail, .. } => {
            assert!(log_tail.contains("shared_buffers"), "{log_tail}");
        }
        other => panic!("unexpected error: {other:?}"),
    }
    // The cluster was still created and a correct start works.
    let pg = PrivatePostgres::start(test_options(tmp.path()))
        .await
        .unwrap();
    assert!(!pg.created_cluster());
    pg.stop().await.unwrap();
}
