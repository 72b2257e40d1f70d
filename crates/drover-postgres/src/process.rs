//! The postmaster process: spawning it, watching it, stopping it, and
//! stopping one left over from a previous run.

use std::io;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::PostgresError;

/// How often a process we cannot wait for (not our child) is checked.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A running postmaster, spawned by [`spawn`].
#[derive(Debug)]
pub(crate) struct Postmaster {
    pub pid: Pid,
    /// `Some(description of the exit status)` once the process has exited
    /// and been reaped.
    exited: watch::Receiver<Option<String>>,
}

impl Postmaster {
    /// The exit status, if the process has exited.
    pub fn exit_status(&self) -> Option<String> {
        self.exited.borrow().clone()
    }

    /// Resolves once the process has exited; returns its exit status.
    pub async fn exited(&mut self) -> String {
        match self.exited.wait_for(Option::is_some).await {
            Ok(status) => status.clone().unwrap_or_default(),
            // The waiter thread is gone without reporting: it can only have
            // panicked, and the child is then unknown; report it as such.
            Err(_) => "unknown (waiter thread ended)".to_string(),
        }
    }

    /// Sends `signal` unless the process has already exited.
    pub fn signal(&self, signal: Signal) {
        if self.exit_status().is_some() {
            return;
        }
        match kill(self.pid, signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(error) => {
                tracing::warn!(pid = %self.pid, %signal, %error, "could not signal PostgreSQL");
            }
        }
    }

    /// SIGINT (fast shutdown), wait up to `grace`; then SIGKILL and wait up to
    /// `kill_grace`.
    pub async fn shutdown(
        &mut self,
        grace: Duration,
        kill_grace: Duration,
    ) -> Result<String, PostgresError> {
        self.signal(Signal::SIGINT);
        if let Ok(status) = tokio::time::timeout(grace, self.exited()).await {
            return Ok(status);
        }
        tracing::warn!(pid = %self.pid, ?grace, "PostgreSQL did not finish its fast shutdown in time; sending SIGKILL");
        self.signal(Signal::SIGKILL);
        tokio::time::timeout(kill_grace, self.exited())
            .await
            .map_err(|_| PostgresError::StopTimeout {
                pid: self.pid.as_raw(),
                waited: grace + kill_grace,
            })
    }
}

/// Spawns `cmd` from a dedicated thread that then waits for the child.
///
/// The thread lives exactly as long as the child, which makes
/// `PR_SET_PDEATHSIG` (which fires when the spawning *thread* exits) mean
/// "when our process dies": the child then gets SIGINT, PostgreSQL's fast
/// shutdown. The thread also reaps the child, so it never lingers as a zombie.
pub(crate) async fn spawn(mut cmd: Command) -> io::Result<Postmaster> {
    set_parent_death_signal(&mut cmd, Signal::SIGINT);
    let (spawned_tx, spawned_rx) = oneshot::channel();
    let (exit_tx, exit_rx) = watch::channel(None);
    std::thread::Builder::new()
        .name("drover-postgres".to_string())
        .spawn(move || match cmd.spawn() {
            Err(error) => {
                let _ = spawned_tx.send(Err(error));
            }
            Ok(mut child) => {
                let _ = spawned_tx.send(Ok(child.id()));
                let status = match child.wait() {
                    Ok(status) => status.to_string(),
                    Err(error) => format!("unknown (waiting for it failed: {error})"),
                };
                exit_tx.send_replace(Some(status));
            }
        })?;
    let pid = spawned_rx
        .await
        .map_err(|_| io::Error::other("the thread spawning PostgreSQL ended unexpectedly"))??;
    let pid = i32::try_from(pid).map_err(io::Error::other)?;
    Ok(Postmaster {
        pid: Pid::from_raw(pid),
        exited: exit_rx,
    })
}

#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut Command, signal: Signal) {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec. It only makes
    // the async-signal-safe system calls prctl(2) and getppid(2) and builds an
    // io::Error from a raw errno, which does not allocate; it takes no locks
    // and touches no state shared with the parent. std runs it after setuid,
    // which would otherwise clear the setting.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(signal)?;
            // If our process died before prctl, the signal will never come.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from(Errno::ESRCH));
            }
            Ok(())
        });
    }
}

/// What /proc and kill(2) tell about a pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProcState {
    Gone,
    /// Exited but not yet reaped by its parent: not running any more.
    Zombie,
    Running,
}

fn proc_state(pid: Pid) -> ProcState {
    match kill(pid, None) {
        Err(Errno::ESRCH) => ProcState::Gone,
        // EPERM: it exists but belongs to someone we may not signal.
        Ok(()) | Err(_) => match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                // "pid (comm) S ...": comm may contain spaces and parentheses.
                let state = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.trim_start().chars().next());
                match state {
                    Some('Z' | 'X' | 'x') => ProcState::Zombie,
                    _ => ProcState::Running,
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => ProcState::Gone,
            Err(_) => ProcState::Running,
        },
    }
}

/// Whether `pid` looks like the postmaster of `data_dir`: its command is
/// postgres and, where we may see it, its working directory (the postmaster
/// changes into its data directory) is `data_dir`.
fn is_postmaster_of(pid: Pid, data_dir: &Path) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let comm = comm.trim();
    if comm != "postgres" && comm != "postmaster" {
        return false;
    }
    match std::fs::read_link(format!("/proc/{pid}/cwd")) {
        Ok(cwd) => cwd == data_dir,
        // Not allowed to look: trust the command name.
        Err(_) => true,
    }
}

/// The pid on the first line of a postmaster.pid or socket lock file.
fn read_lock_pid(path: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    // Negative pids are written by a standalone backend; 0 is meaningless.
    (pid > 0).then(|| Pid::from_raw(pid))
}

/// Removes the lock files of `data_dir` (and of the socket in `socket_dir`)
/// that still name `pid`, a process that is not running any more or is not a
/// postmaster of ours. PostgreSQL would otherwise refuse to start because
/// kill(pid, 0) succeeds (zombie, or a reused pid).
fn remove_lock_files_of(pid: Pid, data_dir: &Path, socket_lock: &Path) {
    for path in [data_dir.join("postmaster.pid"), socket_lock.to_path_buf()] {
        if read_lock_pid(&path) == Some(pid) {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), %pid, "removed stale PostgreSQL lock file")
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "could not remove stale PostgreSQL lock file")
                }
            }
        }
    }
}

/// Waits until `pid` is not running any more, polling (it is not our child,
/// or its waiter is gone, so there is nothing to wait on).
async fn wait_not_running(pid: Pid, deadline: Instant) -> bool {
    loop {
        if proc_state(pid) != ProcState::Running {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// If `data_dir/postmaster.pid` names a live postmaster of `data_dir` (a
/// previous droverd was killed and left its server running), stops it: SIGINT,
/// wait up to `grace`, then SIGKILL and wait up to `kill_grace`.
///
/// A pid file of a dead process is left to PostgreSQL, which handles it; one
/// naming a zombie or an unrelated process (a reused pid) is removed, since
/// PostgreSQL would take such a process for a running server.
pub(crate) async fn stop_leftover(
    data_dir: &Path,
    socket_lock: &Path,
    grace: Duration,
    kill_grace: Duration,
) -> Result<(), PostgresError> {
    let Some(pid) = read_lock_pid(&data_dir.join("postmaster.pid")) else {
        return Ok(());
    };
    if pid == nix::unistd::getpid() {
        return Ok(());
    }
    match proc_state(pid) {
        ProcState::Gone => return Ok(()),
        ProcState::Zombie => {
            remove_lock_files_of(pid, data_dir, socket_lock);
            return Ok(());
        }
        ProcState::Running => {}
    }
    if !is_postmaster_of(pid, data_dir) {
        tracing::warn!(%pid, data_dir = %data_dir.display(), "postmaster.pid names a process that is not this cluster's PostgreSQL; treating the pid file as stale");
        remove_lock_files_of(pid, data_dir, socket_lock);
        return Ok(());
    }

    tracing::info!(%pid, data_dir = %data_dir.display(), "stopping PostgreSQL left over from a previous run");
    let leftover_error = |reason: String| PostgresError::LeftoverServer {
        pid: pid.as_raw(),
        data_dir: data_dir.to_path_buf(),
        reason,
    };
    match kill(pid, Signal::SIGINT) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => return Err(leftover_error(format!("sending it SIGINT failed: {error}"))),
    }
    if !wait_not_running(pid, Instant::now() + grace).await {
        tracing::warn!(%pid, ?grace, "leftover PostgreSQL did not finish its fast shutdown in time; sending SIGKILL");
        match kill(pid, Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(error) => {
                return Err(leftover_error(format!(
                    "sending it SIGKILL failed: {error}"
                )));
            }
        }
        if !wait_not_running(pid, Instant::now() + kill_grace).await {
            return Err(leftover_error(format!(
                "it did not exit within {:?} of SIGINT and SIGKILL",
                grace + kill_grace
            )));
        }
    }
    // After a fast shutdown the postmaster removes its own lock files; after a
    // SIGKILL, or while it is an unreaped zombie, they remain.
    if proc_state(pid) != ProcState::Gone
        || read_lock_pid(&data_dir.join("postmaster.pid")) == Some(pid)
    {
        remove_lock_files_of(pid, data_dir, socket_lock);
    }
    tracing::info!(%pid, "leftover PostgreSQL stopped");
    Ok(())
}
