//! Typed machine API calls on a channel from [`super::maintenance_channel`] or
//! [`super::mtls_channel`].
//!
//! Every unary Talos reply is `XxxResponse { repeated Xxx messages = 1 }` with one item per
//! node (one, for a direct call), and an item can carry the node's own failure in
//! `metadata.error` / `metadata.status` instead of a gRPC error: both become a [`TalosError`].

use tonic::Code;
use tonic::transport::Channel;

use crate::calls::{Applied, ApplyMode, EtcdMember, ResetOptions};
use crate::facts::DiskFact;
use crate::proto::common::Metadata;
use crate::proto::machine::machine_service_client::MachineServiceClient;
use crate::proto::machine::{
    ApplyConfigurationRequest, BootstrapRequest, EtcdLeaveClusterRequest, EtcdMemberListRequest,
    EtcdRemoveMemberByIdRequest, ResetPartitionSpec, ResetRequest,
};
use crate::proto::storage::storage_service_client::StorageServiceClient;

/// A failed machine API call: which call, and the gRPC code and message (from the transport,
/// the server, or the reply item's metadata).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call} failed: {code:?}: {message}")]
pub struct TalosError {
    call: &'static str,
    code: Code,
    message: String,
}

impl TalosError {
    pub(super) fn new(call: &'static str, code: Code, message: impl Into<String>) -> Self {
        Self {
            call,
            code,
            message: message.into(),
        }
    }

    pub(super) fn from_status(call: &'static str, status: tonic::Status) -> Self {
        Self::new(call, status.code(), status.message())
    }

    /// The call, e.g. `Bootstrap`.
    pub fn call(&self) -> &'static str {
        self.call
    }

    /// The gRPC code: `UNAVAILABLE` when the node could not be reached, the node's own code
    /// otherwise (`FAILED_PRECONDITION`, `PERMISSION_DENIED`, ...), `UNKNOWN` for a per-node
    /// error without one.
    pub fn code(&self) -> Code {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<TalosError> for tonic::Status {
    fn from(err: TalosError) -> Self {
        tonic::Status::new(err.code, format!("{}: {}", err.call, err.message))
    }
}

/// The one item of a reply, once its metadata says it succeeded.
pub(super) fn item<T>(
    call: &'static str,
    messages: Vec<T>,
    metadata: impl Fn(&T) -> Option<&Metadata>,
) -> Result<T, TalosError> {
    let item = messages
        .into_iter()
        .next()
        .ok_or_else(|| TalosError::new(call, Code::Internal, "the node sent an empty reply"))?;
    check(call, metadata(&item))?;
    Ok(item)
}

/// Turns a per-node error carried in `metadata` into a [`TalosError`].
fn check(call: &'static str, metadata: Option<&Metadata>) -> Result<(), TalosError> {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    if let Some(status) = &metadata.status
        && status.code != 0
    {
        return Err(TalosError::new(
            call,
            Code::from_i32(status.code),
            status.message.clone(),
        ));
    }
    if !metadata.error.is_empty() {
        return Err(TalosError::new(call, Code::Unknown, metadata.error.clone()));
    }
    Ok(())
}

pub(super) fn machine(channel: &Channel) -> MachineServiceClient<Channel> {
    MachineServiceClient::new(channel.clone())
}

/// What `MachineService.Version` says about a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeVersion {
    /// Talos version tag, e.g. `v1.13.8`.
    pub tag: String,
    pub sha: String,
    pub arch: String,
    /// Platform name, e.g. `metal`.
    pub platform_name: String,
    /// `metal`, `cloud` or `container`.
    pub platform_mode: String,
    /// `metadata.hostname` of the reply.
    pub hostname: String,
}

/// `MachineService.Version` of the node behind `channel`.
pub async fn version(channel: &Channel) -> Result<NodeVersion, TalosError> {
    const CALL: &str = "Version";
    let reply = machine(channel)
        .version(())
        .await
        .map_err(|s| TalosError::from_status(CALL, s))?
        .into_inner();
    let item = item(CALL, reply.messages, |i| i.metadata.as_ref())?;
    let version = item.version.unwrap_or_default();
    let platform = item.platform.unwrap_or_default();
    Ok(NodeVersion {
        tag: version.tag,
        sha: version.sha,
        arch: version.arch,
        platform_name: platform.name,
        platform_mode: platform.mode,
        hostname: item.metadata.map(|m| m.hostname).unwrap_or_default(),
    })
}

/// `StorageService.Disks` of the node behind `channel`.
pub async fn disks(channel: &Channel) -> Result<Vec<DiskFact>, TalosError> {
    const CALL: &str = "Disks";
    let reply = StorageServiceClient::new(channel.clone())
        .disks(())
        .await
        .map_err(|s| TalosError::from_status(CALL, s))?
        .into_inner();
    let item = item(CALL, reply.messages, |i| i.metadata.as_ref())?;
    Ok(item
        .disks
        .into_iter()
        .map(|d| DiskFact {
            device_name: d.device_name,
            size: d.size,
            model: d.model,
            serial: d.serial,
            system_disk: d.system_disk,
        })
        .collect())
}

/// `MachineService.ServiceList` of the node behind `channel`, as `(id, state, healthy)`.
pub async fn service_list(channel: &Channel) -> Result<Vec<(String, String, bool)>, TalosError> {
    const CALL: &str = "ServiceList";
    let reply = machine(channel)
        .service_list(())
        .await
        .map_err(|s| TalosError::from_status(CALL, s))?
        .into_inner();
    let item = item(CALL, reply.messages, |i| i.metadata.as_ref())?;
    Ok(item
        .services
        .into_iter()
        .map(|s| {
            let healthy = s.health.is_some_and(|h| h.healthy);
            (s.id, s.state, healthy)
        })
        .collect())
}

/// Total memory in MiB (`MachineService.Memory`, `meminfo.memtotal` / 1024). A configured
/// node only: Talos's maintenance API does not serve it (`UNIMPLEMENTED`).
pub async fn memory_mib(channel: &Channel) -> Result<u64, TalosError> {
    const CALL: &str = "Memory";
    let reply = machine(channel)
        .memory(())
        .await
        .map_err(|s| TalosError::from_status(CALL, s))?
        .into_inner();
    let item = item(CALL, reply.messages, |i| i.metadata.as_ref())?;
    Ok(item.meminfo.unwrap_or_default().memtotal / 1024)
}

/// Logical processors (`MachineService.CPUInfo`: one entry each). A configured node only, like
/// [`memory_mib`].
pub async fn cpu_cores(channel: &Channel) -> Result<u32, TalosError> {
    const CALL: &str = "CPUInfo";
    let reply = machine(channel)
        .cpu_info(())
        .await
        .map_err(|s| TalosError::from_status(CALL, s))?
        .into_inner();
    let item = item(CALL, reply.messages, |i| i.metadata.as_ref())?;
    Ok(u32::try_from(item.cpu_info.len()).unwrap_or(u32::MAX))
}

/// `MachineService.ApplyConfiguration` of `config` (the machine configuration YAML). A node in
/// maintenance mode accepts `Reboot` and `Auto`, installs and reboots; a configured node also
/// `NoReboot`.
pub async fn apply_configuration(
    channel: &Channel,
    config: &[u8],
    mode: ApplyMode,
) -> Result<Applied, TalosError> {
    const CALL: &str = "ApplyConfiguration";
    let request = ApplyConfigurationRequest {
        data: config.to_vec(),
        mode: mode.to_proto() as i32,
        dry_run: false,
        try_mode_timeout: None,
    };
    let reply = machine(channel)
        .apply_configuration(request)
        .await
        .map_err(|s| TalosError::from_status(CALL, s))?
        .into_inner();
    let item = item(CALL, reply.messages, |i| i.metadata.as_ref())?;
    Ok(Applied {
        mode: ApplyMode::from_proto(item.mode).unwrap_or(mode),
        details: item.mode_details,
        warnings: item.warnings,
    })
}

/// `MachineService.Bootstrap`: creates etcd on this control plane. Once per cluster: a second
/// call fails with `FAILED_PRECONDITION` ("etcd data directory is not empty").
pub async fn bootstrap(channel: &Channel) -> Result<(), TalosError> {
    const CALL: &str = "Bootstrap";
    let reply = machine(channel)
        .bootstrap(BootstrapRequest::default())
        .await
        .map_err(|s| TalosError::from_status(CALL, s))?
        .into_inner();
    item(CALL, reply.messages, |i| i.metadata.as_ref())?;
    Ok(())
}

/// `MachineService.EtcdMemberList` (the cluster's view, not only the local member).
pub async fn etcd_member_list(channel: &Channel) -> Result<Vec<EtcdMember>, TalosError> {
    const CALL: &str = "EtcdMemberList";
    let reply = machine(channel)
        .etcd_member_list(EtcdMemberListRequest { query_local: false })
        .await
        .map_err(|s| TalosError::from_status(CALL, s))?
        .into_inner();
    let item = item(CALL, reply.messages, |i| i.metadata.as_ref())?;
    Ok(item
        .members
        .into_iter()
        .map(|m| EtcdMember {
            id: m.id,
            hostname: m.hostname,
            peer_urls: m.peer_urls,
            client_urls: m.client_urls,
            is_learner: m.is_learner,
        })
        .collect())
}

/// `MachineService.EtcdRemoveMemberByID`: removes a member that has no node any more (a
/// running node should leave with [`etcd_leave_cluster`] instead). `NOT_FOUND` when there is
/// no such member.
pub async fn etcd_remove_member_by_id(channel: &Channel, id: u64) -> Result<(), TalosError> {
    const CALL: &str = "EtcdRemoveMemberByID";
    let reply = machine(channel)
        .etcd_remove_member_by_id(EtcdRemoveMemberByIdRequest { member_id: id })
        .await
        .map_err(|s| TalosError::from_status(CALL, s))?
        .into_inner();
    item(CALL, reply.messages, |i| i.metadata.as_ref())?;
    Ok(())
}

/// `MachineService.EtcdLeaveCluster`: the node behind `channel` leaves etcd.
pub async fn etcd_leave_cluster(channel: &Channel) -> Result<(), TalosError> {
    const CALL: &str = "EtcdLeaveCluster";
    let reply = machine(channel)
        .etcd_leave_cluster(EtcdLeaveClusterRequest {})
        .await
        .map_err(|s| TalosError::from_status(CALL, s))?
        .into_inner();
    item(CALL, reply.messages, |i| i.metadata.as_ref())?;
    Ok(())
}

/// `MachineService.Reset` wiping `STATE` and `EPHEMERAL`, then rebooting (see
/// [`ResetOptions::wipe_config_and_reboot`]): the node forgets its configuration and comes back
/// in maintenance mode. `graceful`: leave etcd first (a control plane).
pub async fn reset(channel: &Channel, graceful: bool) -> Result<(), TalosError> {
    const CALL: &str = "Reset";
    let options = ResetOptions::wipe_config_and_reboot(graceful);
    let request = ResetRequest {
        graceful: options.graceful,
        reboot: options.reboot,
        system_partitions_to_wipe: options
            .wipe_partitions
            .into_iter()
            .map(|label| ResetPartitionSpec { label, wipe: true })
            .collect(),
        user_disks_to_wipe: vec![],
        mode: 0,
    };
    let reply = machine(channel)
        .reset(request)
        .await
        .map_err(|s| TalosError::from_status(CALL, s))?
        .into_inner();
    item(CALL, reply.messages, |i| i.metadata.as_ref())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::google::rpc::Status as RpcStatus;

    #[test]
    fn metadata_errors_become_talos_errors() {
        assert!(check("X", None).is_ok());
        assert!(check("X", Some(&Metadata::default())).is_ok());
        let err = check(
            "X",
            Some(&Metadata {
                error: "boom".into(),
                ..Default::default()
            }),
        )
        .unwrap_err();
        assert_eq!(err.code(), Code::Unknown);
        assert_eq!(err.message(), "boom");
        assert_eq!(err.call(), "X");
        let err = check(
            "Bootstrap",
            Some(&Metadata {
                status: Some(RpcStatus {
                    code: Code::PermissionDenied as i32,
                    message: "no".into(),
                    details: vec![],
                }),
                ..Default::default()
            }),
        )
        .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert_eq!(err.to_string(), "Bootstrap failed: PermissionDenied: no");
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(status.message(), "Bootstrap: no");
    }

    #[test]
    fn an_empty_reply_is_an_error() {
        let err = item::<Metadata>("Version", vec![], |m| Some(m)).unwrap_err();
        assert_eq!(err.code(), Code::Internal);
    }
}
