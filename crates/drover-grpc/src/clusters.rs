//! `drover.v1.ClusterService` and `drover.v1.MachineClassService`: the same calls as the REST
//! routes, mapped field for field.

use drover_model as model;
use drover_proto::drover::v1 as pb;
use drover_proto::drover::v1::cluster_service_server::{ClusterService, ClusterServiceServer};
use drover_proto::drover::v1::machine_class_service_server::{
    MachineClassService, MachineClassServiceServer,
};
use drover_service::{Drover, ServiceError};
use tonic::{Request, Response, Status};

use crate::management::Management;
use crate::{status, timestamp};

pub(crate) fn cluster_service(drover: Drover) -> ClusterServiceServer<Management> {
    ClusterServiceServer::new(Management::new(drover))
}

pub(crate) fn machine_class_service(drover: Drover) -> MachineClassServiceServer<Management> {
    MachineClassServiceServer::new(Management::new(drover))
}

#[tonic::async_trait]
impl ClusterService for Management {
    async fn list_clusters(
        &self,
        request: Request<pb::ListClustersRequest>,
    ) -> Result<Response<pb::ListClustersResponse>, Status> {
        let ctx = self.context(&request).await?;
        let clusters = self.drover().list_clusters(&ctx).await.map_err(status)?;
        Ok(Response::new(pb::ListClustersResponse {
            clusters: clusters.into_iter().map(cluster).collect(),
        }))
    }

    async fn get_cluster(
        &self,
        request: Request<pb::ClusterRef>,
    ) -> Result<Response<pb::Cluster>, Status> {
        let ctx = self.context(&request).await?;
        let c = self
            .drover()
            .get_cluster(&ctx, &request.get_ref().name)
            .await
            .map_err(status)?;
        Ok(Response::new(cluster(c)))
    }

    async fn create_cluster(
        &self,
        request: Request<pb::ClusterSpec>,
    ) -> Result<Response<pb::Cluster>, Status> {
        let ctx = self.context(&request).await?;
        let spec = spec_from(request.into_inner()).map_err(status)?;
        let c = self
            .drover()
            .create_cluster(&ctx, spec)
            .await
            .map_err(status)?;
        Ok(Response::new(cluster(c)))
    }

    async fn update_cluster(
        &self,
        request: Request<pb::ClusterSpec>,
    ) -> Result<Response<pb::Cluster>, Status> {
        let ctx = self.context(&request).await?;
        let spec = spec_from(request.into_inner()).map_err(status)?;
        let c = self
            .drover()
            .update_cluster(&ctx, spec)
            .await
            .map_err(status)?;
        Ok(Response::new(cluster(c)))
    }

    async fn sync_cluster(
        &self,
        request: Request<pb::SyncClusterRequest>,
    ) -> Result<Response<pb::ClusterChanges>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.into_inner();
        let spec = spec_from(req.spec.unwrap_or_default()).map_err(status)?;
        let changes = self
            .drover()
            .apply_cluster(&ctx, spec, req.dry_run)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ClusterChanges {
            changes: changes.changes,
            created: changes.created,
            dry_run: changes.dry_run,
        }))
    }

    async fn delete_cluster(
        &self,
        request: Request<pb::ClusterRef>,
    ) -> Result<Response<pb::Cluster>, Status> {
        let ctx = self.context(&request).await?;
        let c = self
            .drover()
            .delete_cluster(&ctx, &request.get_ref().name)
            .await
            .map_err(status)?;
        Ok(Response::new(cluster(c)))
    }

    async fn get_machine_config(
        &self,
        request: Request<pb::MachineConfigRef>,
    ) -> Result<Response<pb::MachineConfigView>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.into_inner();
        let v = self
            .drover()
            .machine_config(&ctx, &req.cluster, &req.machine)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::MachineConfigView {
            machine: v.machine.to_string(),
            cluster: v.cluster,
            redacted: v.redacted,
            diff: v.diff,
            up_to_date: v.up_to_date,
        }))
    }

    async fn start_upgrade(
        &self,
        request: Request<pb::StartUpgradeRequest>,
    ) -> Result<Response<pb::Upgrade>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.into_inner();
        let kind = enum_from(&req.kind, "kind").map_err(status)?;
        let u = self
            .drover()
            .start_upgrade(
                &ctx,
                &req.cluster,
                model::StartUpgrade {
                    kind,
                    version: req.version,
                    dry_run: req.dry_run,
                },
            )
            .await
            .map_err(status)?;
        Ok(Response::new(upgrade(u)))
    }

    async fn get_upgrade(
        &self,
        request: Request<pb::ClusterRef>,
    ) -> Result<Response<pb::Upgrade>, Status> {
        let ctx = self.context(&request).await?;
        let u = self
            .drover()
            .get_upgrade(&ctx, &request.get_ref().name)
            .await
            .map_err(status)?;
        Ok(Response::new(upgrade(u)))
    }

    async fn set_upgrade_state(
        &self,
        request: Request<pb::SetUpgradeStateRequest>,
    ) -> Result<Response<pb::Upgrade>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.into_inner();
        let state = enum_from(&req.state, "state").map_err(status)?;
        let u = self
            .drover()
            .set_upgrade_state(&ctx, &req.cluster, state)
            .await
            .map_err(status)?;
        Ok(Response::new(upgrade(u)))
    }

    async fn list_cluster_events(
        &self,
        request: Request<pb::ListClusterEventsRequest>,
    ) -> Result<Response<pb::ListClusterEventsResponse>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.into_inner();
        let events = self
            .drover()
            .cluster_events(&ctx, &req.cluster, req.after)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListClusterEventsResponse {
            events: events
                .into_iter()
                .map(|e| pb::ClusterEvent {
                    seq: e.seq,
                    at: Some(timestamp(e.at)),
                    kind: e.kind,
                    message: e.message,
                })
                .collect(),
        }))
    }
}

/// A lower-camel-case enum value as the REST API spells it.
fn enum_from<T: serde::de::DeserializeOwned>(
    text: &str,
    field: &'static str,
) -> Result<T, ServiceError> {
    model::parse_variant(text)
        .ok_or_else(|| ServiceError::invalid(field, format!("{text:?} is not a valid {field}")))
}

fn upgrade(u: model::Upgrade) -> pb::Upgrade {
    pb::Upgrade {
        id: u.id.map(|id| id.to_string()).unwrap_or_default(),
        cluster: u.cluster,
        kind: u.kind.as_str().to_owned(),
        from_version: u.from_version,
        to_version: u.to_version,
        state: u.state.as_str().to_owned(),
        error: u.error.unwrap_or_default(),
        plan: u.plan,
        nodes: u
            .nodes
            .into_iter()
            .map(|n| pb::UpgradeNodeStatus {
                machine: n.machine.to_string(),
                step: n.step,
                state: n.state,
                error: n.error.unwrap_or_default(),
                started_at: Some(timestamp(n.started_at)),
                finished_at: n.finished_at.map(timestamp),
            })
            .collect(),
        created_at: u.created_at.map(timestamp),
        finished_at: u.finished_at.map(timestamp),
    }
}

#[tonic::async_trait]
impl MachineClassService for Management {
    async fn list_machine_classes(
        &self,
        request: Request<pb::ListMachineClassesRequest>,
    ) -> Result<Response<pb::ListMachineClassesResponse>, Status> {
        let ctx = self.context(&request).await?;
        let classes = self
            .drover()
            .list_machine_classes(&ctx)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListMachineClassesResponse {
            classes: classes.into_iter().map(class).collect(),
        }))
    }

    async fn get_machine_class(
        &self,
        request: Request<pb::MachineClassRef>,
    ) -> Result<Response<pb::MachineClass>, Status> {
        let ctx = self.context(&request).await?;
        let c = self
            .drover()
            .get_machine_class(&ctx, &request.get_ref().name)
            .await
            .map_err(status)?;
        Ok(Response::new(class(c)))
    }

    async fn put_machine_class(
        &self,
        request: Request<pb::MachineClassSpec>,
    ) -> Result<Response<pb::MachineClass>, Status> {
        let ctx = self.context(&request).await?;
        let req = request.into_inner();
        let c = self
            .drover()
            .put_machine_class(
                &ctx,
                model::MachineClassSpec {
                    name: req.name,
                    selectors: req.selectors,
                },
            )
            .await
            .map_err(status)?;
        Ok(Response::new(class(c)))
    }

    async fn delete_machine_class(
        &self,
        request: Request<pb::MachineClassRef>,
    ) -> Result<Response<pb::DeleteMachineClassResponse>, Status> {
        let ctx = self.context(&request).await?;
        self.drover()
            .delete_machine_class(&ctx, &request.get_ref().name)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteMachineClassResponse {}))
    }
}

fn class(c: model::MachineClass) -> pb::MachineClass {
    pb::MachineClass {
        name: c.name,
        selectors: c.selectors,
        created_at: Some(timestamp(c.created_at)),
        updated_at: Some(timestamp(c.updated_at)),
    }
}

pub(crate) fn patch_to(p: model::ConfigPatch) -> pb::ConfigPatch {
    pb::ConfigPatch {
        name: p.name,
        weight: p.weight,
        content: p.content,
    }
}

pub(crate) fn patch_from(p: pb::ConfigPatch) -> model::ConfigPatch {
    model::ConfigPatch {
        name: p.name,
        weight: p.weight,
        content: p.content,
    }
}

fn strategy_to(s: model::Strategy) -> pb::Strategy {
    pb::Strategy {
        r#type: match s.kind {
            model::StrategyKind::Rolling => "rolling",
            model::StrategyKind::Unset => "unset",
        }
        .into(),
        max_parallelism: s.max_parallelism,
    }
}

fn strategy_from(
    s: Option<pb::Strategy>,
    field: &'static str,
) -> Result<model::Strategy, ServiceError> {
    let Some(s) = s else {
        return Ok(model::Strategy::default());
    };
    let kind = match s.r#type.as_str() {
        "" | "rolling" => model::StrategyKind::Rolling,
        "unset" => model::StrategyKind::Unset,
        other => {
            return Err(ServiceError::invalid(
                field,
                format!("{other:?} is not a strategy: use \"rolling\" or \"unset\""),
            ));
        }
    };
    Ok(model::Strategy {
        kind,
        max_parallelism: if s.max_parallelism == 0 {
            1
        } else {
            s.max_parallelism
        },
    })
}

fn machine_id(id: String) -> Result<model::MachineId, ServiceError> {
    id.parse()
        .map_err(|e: model::InvalidId| ServiceError::invalid("machines", e.to_string()))
}

fn set_to(s: model::MachineSetSpec) -> pb::MachineSetSpec {
    pb::MachineSetSpec {
        name: s.name,
        machines: s.machines.into_iter().map(|m| m.to_string()).collect(),
        machine_class: s.machine_class.map(|c| pb::MachineClassAllocation {
            name: c.name,
            size: match c.size {
                model::ClassSize::Count(n) => n,
                model::ClassSize::Unlimited => 0,
            },
            unlimited: c.size == model::ClassSize::Unlimited,
        }),
        update_strategy: Some(strategy_to(s.update_strategy)),
        delete_strategy: Some(strategy_to(s.delete_strategy)),
        patches: s.patches.into_iter().map(patch_to).collect(),
    }
}

fn set_from(s: pb::MachineSetSpec) -> Result<model::MachineSetSpec, ServiceError> {
    Ok(model::MachineSetSpec {
        name: s.name,
        machines: s
            .machines
            .into_iter()
            .map(machine_id)
            .collect::<Result<_, _>>()?,
        machine_class: s.machine_class.map(|c| model::MachineClassAllocation {
            name: c.name,
            size: if c.unlimited {
                model::ClassSize::Unlimited
            } else {
                model::ClassSize::Count(c.size)
            },
        }),
        update_strategy: strategy_from(s.update_strategy, "updateStrategy")?,
        delete_strategy: strategy_from(s.delete_strategy, "deleteStrategy")?,
        patches: s.patches.into_iter().map(patch_from).collect(),
    })
}

fn spec_to(s: model::ClusterSpec) -> pb::ClusterSpec {
    pb::ClusterSpec {
        name: s.name,
        talos_version: s.talos_version,
        kubernetes_version: s.kubernetes_version,
        control_plane: Some(set_to(s.control_plane)),
        workers: s.workers.into_iter().map(set_to).collect(),
        patches: s.patches.into_iter().map(patch_to).collect(),
        machines: s
            .machines
            .into_iter()
            .map(|m| pb::ClusterMachineSpec {
                id: m.id.to_string(),
                install_disk: m.install_disk,
                patches: m.patches.into_iter().map(patch_to).collect(),
                labels: m.labels.into_iter().collect(),
                locked: m.locked,
            })
            .collect(),
    }
}

fn spec_from(s: pb::ClusterSpec) -> Result<model::ClusterSpec, ServiceError> {
    Ok(model::ClusterSpec {
        name: s.name,
        talos_version: s.talos_version,
        kubernetes_version: s.kubernetes_version,
        control_plane: set_from(s.control_plane.ok_or_else(|| {
            ServiceError::invalid(
                "controlPlane",
                "a cluster needs a control-plane machine set",
            )
        })?)?,
        workers: s
            .workers
            .into_iter()
            .map(set_from)
            .collect::<Result<_, _>>()?,
        patches: s.patches.into_iter().map(patch_from).collect(),
        machines: s
            .machines
            .into_iter()
            .map(|m| {
                Ok(model::ClusterMachineSpec {
                    id: machine_id(m.id)?,
                    install_disk: m.install_disk,
                    patches: m.patches.into_iter().map(patch_from).collect(),
                    labels: m.labels.into_iter().collect(),
                    locked: m.locked,
                })
            })
            .collect::<Result<_, ServiceError>>()?,
    })
}

fn cluster(c: model::Cluster) -> pb::Cluster {
    let s = c.status;
    pb::Cluster {
        spec: Some(spec_to(c.spec)),
        status: Some(pb::ClusterStatus {
            phase: model::variant_name(s.phase),
            ready: s.ready,
            machines_total: s.machines_total,
            machines_ready: s.machines_ready,
            machines_missing: s.machines_missing,
            bootstrapped: s.bootstrapped,
            etcd_members: s.etcd_members,
            kubernetes_api_ready: s.kubernetes_api_ready,
            control_plane_endpoint: s.control_plane_endpoint.unwrap_or_default(),
            last_error: s.last_error.unwrap_or_default(),
            tainted: s.tainted.map(|t| pb::ClusterTaint {
                since: Some(timestamp(t.since)),
                by: t.by,
                kind: model::variant_name(t.kind),
                credentials_issued: t.credentials_issued,
            }),
            machines: s
                .machines
                .into_iter()
                .map(|m| pb::ClusterMachineStatus {
                    id: m.id.to_string(),
                    machine_set: m.machine_set,
                    role: model::variant_name(m.role),
                    phase: m.phase.as_str().to_owned(),
                    stage: m.stage.unwrap_or_default(),
                    connected: m.connected,
                    ready: m.ready,
                    config_up_to_date: m.config_up_to_date,
                    locked: m.locked,
                    etcd_member_id: m.etcd_member_id.unwrap_or_default(),
                    last_error: m.last_error.unwrap_or_default(),
                })
                .collect(),
        }),
        created_at: Some(timestamp(c.created_at)),
        updated_at: Some(timestamp(c.updated_at)),
    }
}
