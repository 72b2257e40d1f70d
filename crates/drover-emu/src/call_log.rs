//! A record of the mutating machine API calls the machines received, in the order they arrived,
//! for tests to check how a control plane drove them (which call, on which machine, when it
//! started and when what it started was over).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use drover_talos::{ApplyMode, version_of_installer_image};
use tokio::sync::watch;

use crate::config::KubernetesImages;

/// A mutating call, with what it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    ApplyConfiguration {
        mode: ApplyMode,
        /// The configuration's Kubernetes components; `None` when it did not parse.
        kubernetes: Option<KubernetesImages>,
    },
    Bootstrap,
    EtcdRemoveMemberById {
        id: u64,
    },
    EtcdLeaveCluster,
    Reset {
        graceful: bool,
    },
    /// `MachineService.Upgrade`.
    Upgrade {
        image: String,
    },
    /// `LifecycleService.Upgrade`.
    LifecycleUpgrade {
        image: String,
    },
}

impl Call {
    /// The call's name: `ApplyConfiguration`, `Bootstrap`, `EtcdRemoveMemberByID`,
    /// `EtcdLeaveCluster`, `Reset`, `Upgrade`, `LifecycleService.Upgrade`.
    pub fn name(&self) -> &'static str {
        match self {
            Call::ApplyConfiguration { .. } => "ApplyConfiguration",
            Call::Bootstrap => "Bootstrap",
            Call::EtcdRemoveMemberById { .. } => "EtcdRemoveMemberByID",
            Call::EtcdLeaveCluster => "EtcdLeaveCluster",
            Call::Reset { .. } => "Reset",
            Call::Upgrade { .. } => "Upgrade",
            Call::LifecycleUpgrade { .. } => "LifecycleService.Upgrade",
        }
    }

    /// The installer image of an upgrade, by either call.
    pub fn upgrade_image(&self) -> Option<&str> {
        match self {
            Call::Upgrade { image } | Call::LifecycleUpgrade { image } => Some(image),
            _ => None,
        }
    }

    /// The Talos version an upgrade installs, without the `v` (`1.13.8`).
    pub fn upgrade_version(&self) -> Option<String> {
        self.upgrade_image().and_then(version_of_installer_image)
    }
}

/// One call a machine received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// Position in the log, from 1.
    pub seq: u64,
    /// The machine's SMBIOS UUID.
    pub uuid: String,
    pub hostname: String,
    pub call: Call,
    pub started: Instant,
    /// When what the call started was over: when the machine answered, for a call that needs no
    /// reboot (or failed); when it runs again after its reboot for an upgrade, a configuration
    /// installed or applied with a reboot, and a reset (back in maintenance). `None` until then
    /// (forever for an upgrade that hangs).
    pub finished: Option<Instant>,
    /// The error the machine answered with.
    pub error: Option<String>,
}

impl CallRecord {
    /// Whether the two calls were under way at the same time at some point (one that has not
    /// finished is under way from its start on).
    pub fn overlaps(&self, other: &CallRecord) -> bool {
        let before = |a: &CallRecord, b: &CallRecord| a.finished.is_some_and(|f| f <= b.started);
        !before(self, other) && !before(other, self)
    }

    /// An upgrade the machine accepted.
    pub fn is_accepted_upgrade(&self) -> bool {
        self.call.upgrade_image().is_some() && self.error.is_none()
    }
}

/// The calls of every machine sharing a [`ClusterRegistry`](crate::ClusterRegistry). Cheap to
/// clone: clones share the log.
#[derive(Clone, Default)]
pub struct CallLog {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    records: Mutex<Vec<CallRecord>>,
    /// Bumped on every change, for whoever waits for one.
    changes: watch::Sender<u64>,
}

impl std::fmt::Debug for CallLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.lock().iter()).finish()
    }
}

impl CallLog {
    /// Every call so far, in arrival order.
    pub fn records(&self) -> Vec<CallRecord> {
        self.lock().clone()
    }

    /// The calls machine `uuid` received, in arrival order.
    pub fn of(&self, uuid: &str) -> Vec<CallRecord> {
        self.lock()
            .iter()
            .filter(|r| r.uuid == uuid)
            .cloned()
            .collect()
    }

    /// Waits until `done` holds for the records (checked now and after every change) and
    /// returns them. Wrap it in a timeout.
    pub async fn wait_until(&self, mut done: impl FnMut(&[CallRecord]) -> bool) -> Vec<CallRecord> {
        let mut changes = self.inner.changes.subscribe();
        loop {
            let records = self.records();
            if done(&records) {
                return records;
            }
            changes.changed().await.expect("the log holds the sender");
        }
    }

    /// Records a call that just arrived; its sequence number.
    pub(crate) fn start(&self, uuid: &str, hostname: &str, call: Call) -> u64 {
        let seq = {
            let mut records = self.lock();
            let seq = records.len() as u64 + 1;
            records.push(CallRecord {
                seq,
                uuid: uuid.to_owned(),
                hostname: hostname.to_owned(),
                call,
                started: Instant::now(),
                finished: None,
                error: None,
            });
            seq
        };
        self.changed();
        seq
    }

    /// What call `seq` started is over (the first time only).
    pub(crate) fn finish(&self, seq: u64) {
        self.update(seq, |record| {
            record.finished.get_or_insert_with(Instant::now);
        });
    }

    /// Call `seq` failed with `error`.
    pub(crate) fn fail(&self, seq: u64, error: &tonic::Status) {
        self.update(seq, |record| {
            record.finished.get_or_insert_with(Instant::now);
            record.error = Some(format!("{:?}: {}", error.code(), error.message()));
        });
    }

    fn update(&self, seq: u64, f: impl FnOnce(&mut CallRecord)) {
        {
            let mut records = self.lock();
            let index = usize::try_from(seq).ok().and_then(|s| s.checked_sub(1));
            if let Some(record) = index.and_then(|i| records.get_mut(i)) {
                f(record);
            }
        }
        self.changed();
    }

    fn changed(&self) {
        self.inner.changes.send_modify(|n| *n += 1);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<CallRecord>> {
        self.inner
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record(started: Instant, finished: Option<Instant>) -> CallRecord {
        CallRecord {
            seq: 1,
            uuid: "u".into(),
            hostname: "h".into(),
            call: Call::Bootstrap,
            started,
            finished,
            error: None,
        }
    }

    #[test]
    fn intervals_overlap_until_one_finishes_before_the_other_starts() {
        let t = Instant::now();
        let s = |secs| t + Duration::from_secs(secs);
        let a = record(s(0), Some(s(10)));
        assert!(a.overlaps(&record(s(5), Some(s(20)))));
        assert!(a.overlaps(&record(s(5), None)));
        assert!(!a.overlaps(&record(s(10), Some(s(20)))));
        assert!(!record(s(20), None).overlaps(&a));
        assert!(record(s(0), None).overlaps(&record(s(30), None)));
    }

    #[test]
    fn calls_are_numbered_finished_once_and_named() {
        let log = CallLog::default();
        let image = drover_talos::installer_image("1.13.1");
        let first = log.start(
            "u1",
            "h1",
            Call::Upgrade {
                image: image.clone(),
            },
        );
        let second = log.start("u2", "h2", Call::Bootstrap);
        assert_eq!((first, second), (1, 2));
        log.finish(first);
        let finished = log.records()[0].finished;
        log.finish(first);
        assert_eq!(log.records()[0].finished, finished);
        log.fail(second, &tonic::Status::failed_precondition("no"));
        let records = log.records();
        assert_eq!(records[1].error.as_deref(), Some("FailedPrecondition: no"));
        assert!(records[0].is_accepted_upgrade() && !records[1].is_accepted_upgrade());
        assert_eq!(records[0].call.name(), "Upgrade");
        assert_eq!(records[0].call.upgrade_version().as_deref(), Some("1.13.1"));
        assert_eq!(log.of("u2").len(), 1);
    }
}
