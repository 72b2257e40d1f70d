//! What a machine reports about itself through the machine API.

/// The facts an emulated machine reports (and what [`crate::client`] reads back).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineFacts {
    /// Reported in every reply's `metadata.hostname`.
    pub hostname: String,
    /// Talos version tag, e.g. `v1.13.8` (`Version.version.tag`).
    pub talos_version: String,
    /// `amd64` or `arm64` (`Version.version.arch`).
    pub arch: String,
    /// Platform name, e.g. `metal`, `aws`, `container` (`Version.platform.name`).
    pub platform: String,
    /// Logical processors (`MachineService.CPUInfo`: one `CPUInfo` each).
    pub cores: u32,
    /// Memory in MiB (`MachineService.Memory`: `meminfo.memtotal`, which is in KiB).
    pub memory_mib: u64,
    /// Disks (`StorageService.Disks`).
    pub disks: Vec<DiskFact>,
    /// Services as `(id, state, healthy)` (`MachineService.ServiceList`), e.g.
    /// `("apid", "Running", true)`.
    pub services: Vec<(String, String, bool)>,
}

/// One disk as reported by `storage.StorageService/Disks`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskFact {
    /// Device path, e.g. `/dev/sda`.
    pub device_name: String,
    /// Size in bytes.
    pub size: u64,
    pub model: String,
    pub serial: String,
    /// The disk Talos runs from.
    pub system_disk: bool,
}

/// The `PlatformInfo.mode` Talos reports for a platform name.
pub fn platform_mode(platform: &str) -> &'static str {
    match platform {
        "metal" => "metal",
        "container" => "container",
        _ => "cloud",
    }
}
