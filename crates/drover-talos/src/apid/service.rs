//! The gRPC services of the emulated apid: roles checked, the call handed to the [`Machine`],
//! the answer wrapped the Talos way (`XxxResponse { repeated Xxx messages = 1 }`, each item
//! with `metadata.hostname`).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::{ADMIN, ETCD_READ, OPERATE, READ, Role, authorize};
use super::{Machine, not_emulated};
use crate::calls::{ApplyMode, ResetOptions};
use crate::facts::{MachineFacts, platform_mode};
use crate::proto::common::Metadata;
use crate::proto::machine::machine_service_server::MachineService;
use crate::proto::machine::{
    ApplyConfiguration, ApplyConfigurationRequest, ApplyConfigurationResponse, Bootstrap,
    BootstrapRequest, BootstrapResponse, CpUsInfo, CpuInfo, CpuInfoResponse,
    EtcdForfeitLeadershipRequest, EtcdForfeitLeadershipResponse, EtcdLeaveCluster,
    EtcdLeaveClusterRequest, EtcdLeaveClusterResponse, EtcdMember, EtcdMemberListRequest,
    EtcdMemberListResponse, EtcdMemberStatus, EtcdMembers, EtcdRemoveMemberById,
    EtcdRemoveMemberByIdRequest, EtcdRemoveMemberByIdResponse, EtcdStatus, EtcdStatusResponse,
    FeaturesInfo, MemInfo, Memory, MemoryResponse, PlatformInfo, RebootRequest, RebootResponse,
    Reset, ResetRequest, ResetResponse, ServiceHealth, ServiceInfo, ServiceList,
    ServiceListResponse, ShutdownRequest, ShutdownResponse, Upgrade, UpgradeRequest,
    UpgradeResponse, Version, VersionInfo, VersionResponse,
};
use crate::proto::storage::storage_service_server::StorageService;
use crate::proto::storage::{Disk, Disks, DisksResponse};

/// `machine.MachineService`.
pub(super) struct MachineApi {
    machine: Arc<dyn Machine>,
    maintenance: bool,
}

impl MachineApi {
    pub(super) fn new(machine: Arc<dyn Machine>, maintenance: bool) -> Self {
        Self {
            machine,
            maintenance,
        }
    }

    /// Checks the caller's roles, and that the method exists in the node's mode (the
    /// maintenance service has only a few).
    fn admit<T>(
        &self,
        request: &Request<T>,
        method: &str,
        allowed: &[Role],
        in_maintenance: bool,
    ) -> Result<(), Status> {
        authorize(request, self.maintenance, allowed)?;
        if self.maintenance && !in_maintenance {
            return Err(Status::unimplemented(format!(
                "{method} is not available in maintenance mode"
            )));
        }
        Ok(())
    }

    fn metadata(&self) -> Option<Metadata> {
        metadata(&self.machine.facts())
    }
}

fn metadata(facts: &MachineFacts) -> Option<Metadata> {
    Some(Metadata {
        hostname: facts.hostname.clone(),
        ..Default::default()
    })
}

#[tonic::async_trait]
impl MachineService for MachineApi {
    async fn apply_configuration(
        &self,
        request: Request<ApplyConfigurationRequest>,
    ) -> Result<Response<ApplyConfigurationResponse>, Status> {
        self.admit(&request, "ApplyConfiguration", ADMIN, true)?;
        let request = request.into_inner();
        let mode = ApplyMode::from_proto(request.mode).ok_or_else(|| {
            Status::invalid_argument(format!("unknown apply mode {}", request.mode))
        })?;
        if self.maintenance && !matches!(mode, ApplyMode::Reboot | ApplyMode::Auto) {
            return Err(Status::invalid_argument(format!(
                "apply configuration --mode='{mode}' is not supported in maintenance mode"
            )));
        }
        let applied = self
            .machine
            .apply_configuration(&request.data, mode, request.dry_run)?;
        Ok(Response::new(ApplyConfigurationResponse {
            messages: vec![ApplyConfiguration {
                metadata: self.metadata(),
                warnings: applied.warnings,
                mode: applied.mode.to_proto() as i32,
                mode_details: applied.details,
            }],
        }))
    }

    async fn bootstrap(
        &self,
        request: Request<BootstrapRequest>,
    ) -> Result<Response<BootstrapResponse>, Status> {
        self.admit(&request, "Bootstrap", ADMIN, false)?;
        if request.get_ref().recover_etcd {
            return Err(not_emulated("Bootstrap with etcd recovery"));
        }
        self.machine.bootstrap()?;
        Ok(Response::new(BootstrapResponse {
            messages: vec![Bootstrap {
                metadata: self.metadata(),
            }],
        }))
    }

    async fn cpu_info(&self, request: Request<()>) -> Result<Response<CpuInfoResponse>, Status> {
        self.admit(&request, "CPUInfo", READ, false)?;
        let facts = self.machine.facts();
        let cpu_info = (0..facts.cores)
            .map(|processor| CpuInfo {
                processor,
                vendor_id: "GenuineIntel".into(),
                model_name: "Drover Emulated CPU".into(),
                physical_id: "0".into(),
                core_id: processor.to_string(),
                siblings: facts.cores,
                cpu_cores: facts.cores,
                ..Default::default()
            })
            .collect();
        Ok(Response::new(CpuInfoResponse {
            messages: vec![CpUsInfo {
                metadata: metadata(&facts),
                cpu_info,
            }],
        }))
    }

    async fn etcd_member_list(
        &self,
        request: Request<EtcdMemberListRequest>,
    ) -> Result<Response<EtcdMemberListResponse>, Status> {
        self.admit(&request, "EtcdMemberList", ETCD_READ, false)?;
        let members = self.machine.etcd_members()?;
        Ok(Response::new(EtcdMemberListResponse {
            messages: vec![EtcdMembers {
                metadata: self.metadata(),
                legacy_members: members.iter().map(|m| m.hostname.clone()).collect(),
                members: members
                    .into_iter()
                    .map(|m| EtcdMember {
                        id: m.id,
                        hostname: m.hostname,
                        peer_urls: m.peer_urls,
                        client_urls: m.client_urls,
                        is_learner: m.is_learner,
                    })
                    .collect(),
            }],
        }))
    }

    async fn etcd_remove_member_by_id(
        &self,
        request: Request<EtcdRemoveMemberByIdRequest>,
    ) -> Result<Response<EtcdRemoveMemberByIdResponse>, Status> {
        self.admit(&request, "EtcdRemoveMemberByID", ADMIN, false)?;
        self.machine
            .etcd_remove_member(request.get_ref().member_id)?;
        Ok(Response::new(EtcdRemoveMemberByIdResponse {
            messages: vec![EtcdRemoveMemberById {
                metadata: self.metadata(),
            }],
        }))
    }

    async fn etcd_leave_cluster(
        &self,
        request: Request<EtcdLeaveClusterRequest>,
    ) -> Result<Response<EtcdLeaveClusterResponse>, Status> {
        self.admit(&request, "EtcdLeaveCluster", ADMIN, false)?;
        self.machine.etcd_leave_cluster()?;
        Ok(Response::new(EtcdLeaveClusterResponse {
            messages: vec![EtcdLeaveCluster {
                metadata: self.metadata(),
            }],
        }))
    }

    async fn etcd_forfeit_leadership(
        &self,
        request: Request<EtcdForfeitLeadershipRequest>,
    ) -> Result<Response<EtcdForfeitLeadershipResponse>, Status> {
        self.admit(&request, "EtcdForfeitLeadership", ADMIN, false)?;
        Err(not_emulated("EtcdForfeitLeadership"))
    }

    async fn etcd_status(
        &self,
        request: Request<()>,
    ) -> Result<Response<EtcdStatusResponse>, Status> {
        self.admit(&request, "EtcdStatus", ETCD_READ, false)?;
        let status = self.machine.etcd_status()?;
        Ok(Response::new(EtcdStatusResponse {
            messages: vec![EtcdStatus {
                metadata: self.metadata(),
                member_status: Some(EtcdMemberStatus {
                    member_id: status.member_id,
                    leader: status.leader,
                    protocol_version: status.protocol_version,
                    db_size: status.db_size,
                    db_size_in_use: status.db_size,
                    raft_index: status.raft_index,
                    raft_term: status.raft_term,
                    raft_applied_index: status.raft_index,
                    is_learner: status.is_learner,
                    ..Default::default()
                }),
            }],
        }))
    }

    async fn memory(&self, request: Request<()>) -> Result<Response<MemoryResponse>, Status> {
        self.admit(&request, "Memory", READ, false)?;
        let facts = self.machine.facts();
        let total_kib = facts.memory_mib * 1024;
        Ok(Response::new(MemoryResponse {
            messages: vec![Memory {
                metadata: metadata(&facts),
                meminfo: Some(MemInfo {
                    memtotal: total_kib,
                    memfree: total_kib / 2,
                    memavailable: total_kib * 3 / 4,
                    ..Default::default()
                }),
            }],
        }))
    }

    async fn reboot(
        &self,
        request: Request<RebootRequest>,
    ) -> Result<Response<RebootResponse>, Status> {
        self.admit(&request, "Reboot", OPERATE, false)?;
        Err(not_emulated("Reboot"))
    }

    async fn reset(
        &self,
        request: Request<ResetRequest>,
    ) -> Result<Response<ResetResponse>, Status> {
        self.admit(&request, "Reset", ADMIN, true)?;
        let request = request.into_inner();
        if !request.user_disks_to_wipe.is_empty() {
            return Err(not_emulated("Reset of user disks"));
        }
        self.machine.reset(&ResetOptions {
            graceful: request.graceful,
            reboot: request.reboot,
            wipe_partitions: request
                .system_partitions_to_wipe
                .into_iter()
                .filter(|p| p.wipe)
                .map(|p| p.label)
                .collect(),
        })?;
        Ok(Response::new(ResetResponse {
            messages: vec![Reset {
                metadata: self.metadata(),
                actor_id: String::new(),
            }],
        }))
    }

    async fn service_list(
        &self,
        request: Request<()>,
    ) -> Result<Response<ServiceListResponse>, Status> {
        self.admit(&request, "ServiceList", READ, true)?;
        let facts = self.machine.facts();
        let services = facts
            .services
            .iter()
            .map(|(id, state, healthy)| ServiceInfo {
                id: id.clone(),
                state: state.clone(),
                events: None,
                health: Some(ServiceHealth {
                    unknown: false,
                    healthy: *healthy,
                    last_message: String::new(),
                    last_change: None,
                }),
            })
            .collect();
        Ok(Response::new(ServiceListResponse {
            messages: vec![ServiceList {
                metadata: metadata(&facts),
                services,
            }],
        }))
    }

    async fn shutdown(
        &self,
        request: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownResponse>, Status> {
        self.admit(&request, "Shutdown", OPERATE, false)?;
        Err(not_emulated("Shutdown"))
    }

    async fn upgrade(
        &self,
        request: Request<UpgradeRequest>,
    ) -> Result<Response<UpgradeResponse>, Status> {
        self.admit(&request, "Upgrade", ADMIN, false)?;
        let request = request.into_inner();
        if request.stage {
            return Err(not_emulated("a staged Upgrade"));
        }
        if request.image.is_empty() {
            return Err(Status::invalid_argument(
                "an upgrade needs an installer image",
            ));
        }
        self.machine.upgrade(&request.image, request.force)?;
        Ok(Response::new(UpgradeResponse {
            messages: vec![Upgrade {
                metadata: self.metadata(),
                ack: "Upgrade request received".to_owned(),
                actor_id: String::new(),
            }],
        }))
    }

    async fn version(&self, request: Request<()>) -> Result<Response<VersionResponse>, Status> {
        self.admit(&request, "Version", READ, true)?;
        let facts = self.machine.facts();
        Ok(Response::new(VersionResponse {
            messages: vec![Version {
                metadata: metadata(&facts),
                version: Some(VersionInfo {
                    tag: facts.talos_version.clone(),
                    sha: String::new(),
                    built: String::new(),
                    go_version: String::new(),
                    os: "linux".to_string(),
                    arch: facts.arch.clone(),
                }),
                platform: Some(PlatformInfo {
                    name: facts.platform.clone(),
                    mode: platform_mode(&facts.platform).to_string(),
                }),
                features: Some(FeaturesInfo { rbac: true }),
            }],
        }))
    }
}

/// `storage.StorageService`.
pub(super) struct StorageApi {
    machine: Arc<dyn Machine>,
    maintenance: bool,
}

impl StorageApi {
    pub(super) fn new(machine: Arc<dyn Machine>, maintenance: bool) -> Self {
        Self {
            machine,
            maintenance,
        }
    }
}

#[tonic::async_trait]
impl StorageService for StorageApi {
    async fn disks(&self, request: Request<()>) -> Result<Response<DisksResponse>, Status> {
        authorize(&request, self.maintenance, READ)?;
        let facts = self.machine.facts();
        let disks = facts
            .disks
            .iter()
            .map(|d| Disk {
                size: d.size,
                model: d.model.clone(),
                device_name: d.device_name.clone(),
                name: d
                    .device_name
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                serial: d.serial.clone(),
                system_disk: d.system_disk,
            })
            .collect();
        Ok(Response::new(DisksResponse {
            messages: vec![Disks {
                metadata: metadata(&facts),
                disks,
            }],
        }))
    }
}
