//! Access to a cluster's own APIs through Drover: who a caller is inside the cluster, which
//! nodes serve it, and how clients reach the proxy.
//!
//! Inside the cluster a caller acts by impersonation: as `drover:<actor>` (e.g.
//! `drover:user:ops@example.com`), in `system:masters` for Operators and Admins and in the
//! read-only group [`READERS_GROUP`] for Readers (bound to the `view` ClusterRole by the
//! cluster's config), plus `system:authenticated`. What the client asks to impersonate is never
//! passed on.

use std::net::Ipv6Addr;

use drover_model::{
    ClusterMachinePhase, KubeProxyEndpoint, MachineId, MachineRole, Role, TenantId,
};
use drover_store::{cluster_machines, clusters, machines};

use crate::{Drover, RequestContext, Result, ServiceError, parse_phase, parse_role};

/// The Kubernetes group of Drover's Readers: the cluster binds it to the `view` ClusterRole.
pub const READERS_GROUP: &str = "drover:readers";
/// The group of Drover's Operators and Admins.
pub const MASTERS_GROUP: &str = "system:masters";

/// Who a caller is in one cluster, and where its API is.
#[derive(Debug, Clone)]
pub struct ClusterAccess {
    pub tenant: TenantId,
    pub cluster: String,
    pub cluster_uid: uuid::Uuid,
    /// `Impersonate-User`.
    pub user: String,
    /// `Impersonate-Group`s.
    pub groups: Vec<String>,
    /// Readers may only read.
    pub read_only: bool,
    /// Tunnel addresses of the control planes that run and are connected, first the ready ones.
    pub control_planes: Vec<Ipv6Addr>,
}

impl Drover {
    /// The caller's access to the cluster `name`: 404 for a cluster the caller's tenant lacks.
    pub async fn cluster_access(&self, ctx: &RequestContext, name: &str) -> Result<ClusterAccess> {
        let pool = self.store().pool();
        let row = clusters::get(pool, ctx.tenant(), name)
            .await?
            .ok_or_else(|| ServiceError::not_found("cluster", name))?;
        // Every role reads; a grant on the cluster may lift a Reader to Operator here.
        let read_only = self.role_on_cluster(ctx, name).await? < Role::Operator;
        let mut control_planes = Vec::new();
        for member in cluster_machines::list_for_cluster(pool, ctx.tenant(), name).await? {
            if parse_role(&member.role) != MachineRole::ControlPlane
                || parse_phase(&member.phase) != ClusterMachinePhase::Running
            {
                continue;
            }
            let Ok(id) = member.machine_id.parse::<MachineId>() else {
                continue;
            };
            let Some(machine) = machines::get(pool, ctx.tenant(), &id).await? else {
                continue;
            };
            if let (true, Ok(address)) = (machine.connected, machine.address.parse()) {
                control_planes.push((!machine.ready, address));
            }
        }
        control_planes.sort();
        Ok(ClusterAccess {
            tenant: ctx.tenant(),
            cluster: name.to_owned(),
            cluster_uid: row.uid,
            user: format!("drover:{}", ctx.principal().actor()),
            groups: vec![
                if read_only {
                    READERS_GROUP
                } else {
                    MASTERS_GROUP
                }
                .to_owned(),
                "system:authenticated".to_owned(),
            ],
            read_only,
            control_planes: control_planes.into_iter().map(|(_, a)| a).collect(),
        })
    }

    /// Records a request a proxy passed on (or refused) in the audit log.
    pub async fn record_proxied(
        &self,
        ctx: &RequestContext,
        action: &str,
        target: &str,
        result: &str,
    ) {
        self.record(
            ctx.tenant(),
            &ctx.principal().actor(),
            action,
            target,
            result,
        )
        .await;
    }

    /// What a kubeconfig for the cluster `name` needs (the cluster must be the caller's).
    pub async fn kube_proxy_endpoint(
        &self,
        ctx: &RequestContext,
        name: &str,
    ) -> Result<KubeProxyEndpoint> {
        self.cluster_access(ctx, name).await?;
        let proxy = self.config().kube_proxy.as_ref().ok_or_else(|| {
            ServiceError::Unavailable("the Kubernetes proxy is not running".into())
        })?;
        Ok(KubeProxyEndpoint {
            server: format!(
                "{}/clusters/{name}",
                proxy.url.as_str().trim_end_matches('/')
            ),
            certificate_authority: proxy.ca_pem.clone(),
        })
    }
}

/// Where the Kubernetes proxy listens, as clients reach it.
#[derive(Debug, Clone)]
pub struct KubeProxyInfo {
    pub url: url::Url,
    pub ca_pem: String,
}
