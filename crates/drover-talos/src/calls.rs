//! What the machine API calls carry, as plain Rust types shared by the client
//! ([`crate::client`]) and the emulated server ([`crate::apid`]).

use crate::proto::machine::apply_configuration_request::Mode;

/// Label of the system partition holding the machine configuration.
pub const STATE_PARTITION: &str = "STATE";
/// Label of the system partition holding etcd data, container images and pods.
pub const EPHEMERAL_PARTITION: &str = "EPHEMERAL";

/// How a node applies a configuration (`ApplyConfigurationRequest.Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApplyMode {
    /// Apply, then reboot.
    Reboot,
    /// Without a reboot when the changes allow it, else with one (the node decides).
    Auto,
    /// Without a reboot; refused when a change needs one.
    NoReboot,
    /// Keep for the next boot.
    Staged,
    /// Apply without a reboot and roll back after a timeout unless confirmed.
    Try,
}

impl ApplyMode {
    /// `talosctl apply-config --mode` spelling: `reboot`, `auto`, `no-reboot`, `staged`, `try`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyMode::Reboot => "reboot",
            ApplyMode::Auto => "auto",
            ApplyMode::NoReboot => "no-reboot",
            ApplyMode::Staged => "staged",
            ApplyMode::Try => "try",
        }
    }

    /// From the wire value; `None` for a value this build does not know.
    pub fn from_proto(value: i32) -> Option<ApplyMode> {
        Some(match Mode::try_from(value).ok()? {
            Mode::Reboot => ApplyMode::Reboot,
            Mode::Auto => ApplyMode::Auto,
            Mode::NoReboot => ApplyMode::NoReboot,
            Mode::Staged => ApplyMode::Staged,
            Mode::Try => ApplyMode::Try,
        })
    }

    /// The wire enum.
    pub fn to_proto(self) -> Mode {
        match self {
            ApplyMode::Reboot => Mode::Reboot,
            ApplyMode::Auto => Mode::Auto,
            ApplyMode::NoReboot => Mode::NoReboot,
            ApplyMode::Staged => Mode::Staged,
            ApplyMode::Try => Mode::Try,
        }
    }
}

impl std::fmt::Display for ApplyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a node answered to `ApplyConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The mode the node actually used (e.g. `NoReboot` for an `Auto` request that needed no
    /// reboot).
    pub mode: ApplyMode,
    /// Human-readable explanation of the outcome.
    pub details: String,
    /// Configuration validation warnings.
    pub warnings: Vec<String>,
}

/// One etcd member (`machine.EtcdMember`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMember {
    pub id: u64,
    /// The member's name: the node's hostname.
    pub hostname: String,
    /// URLs other members reach it on (`https://[address]:2380`).
    pub peer_urls: Vec<String>,
    /// URLs clients reach it on (`https://[address]:2379`).
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// The local etcd member's status (`machine.EtcdMemberStatus`, the fields the emulator fills).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdStatus {
    pub member_id: u64,
    /// Member id of the current leader.
    pub leader: u64,
    pub protocol_version: String,
    pub db_size: i64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub is_learner: bool,
}

/// What a `Reset` asks for (`machine.ResetRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetOptions {
    /// Leave etcd (and run the usual checks) before wiping.
    pub graceful: bool,
    /// Reboot afterwards; otherwise power off.
    pub reboot: bool,
    /// Labels of the system partitions to wipe; empty means every system partition.
    pub wipe_partitions: Vec<String>,
}

impl ResetOptions {
    /// Wipe `STATE` (the configuration) and `EPHEMERAL` (etcd data, images), then reboot: the
    /// node comes back in maintenance mode, ready for a new configuration.
    pub fn wipe_config_and_reboot(graceful: bool) -> Self {
        Self {
            graceful,
            reboot: true,
            wipe_partitions: vec![STATE_PARTITION.to_owned(), EPHEMERAL_PARTITION.to_owned()],
        }
    }

    /// Whether the partition labelled `label` is wiped.
    pub fn wipes(&self, label: &str) -> bool {
        self.wipe_partitions.is_empty() || self.wipe_partitions.iter().any(|l| l == label)
    }
}

/// One item of a `LifecycleService.Upgrade` progress stream: a line of the installer's output,
/// or, last, its exit code (0: installed, the node reboots into it; anything else: nothing
/// changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallProgress {
    Message(String),
    ExitCode(i32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_modes_round_trip() {
        for mode in [
            ApplyMode::Reboot,
            ApplyMode::Auto,
            ApplyMode::NoReboot,
            ApplyMode::Staged,
            ApplyMode::Try,
        ] {
            assert_eq!(ApplyMode::from_proto(mode.to_proto() as i32), Some(mode));
        }
        assert_eq!(ApplyMode::from_proto(99), None);
        assert_eq!(ApplyMode::NoReboot.to_string(), "no-reboot");
    }

    #[test]
    fn an_empty_wipe_list_wipes_everything() {
        let all = ResetOptions {
            graceful: false,
            reboot: true,
            wipe_partitions: vec![],
        };
        assert!(all.wipes(STATE_PARTITION) && all.wipes("META"));
        let some = ResetOptions::wipe_config_and_reboot(true);
        assert!(some.wipes(STATE_PARTITION) && some.wipes(EPHEMERAL_PARTITION));
        assert!(!some.wipes("META"));
    }
}
