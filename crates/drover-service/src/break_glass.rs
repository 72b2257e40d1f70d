//! Break-glass access: when droverd's operator allows it (`--allow-break-glass`), an Admin may
//! take admin credentials signed directly by a cluster's own CAs, a kubeconfig
//! (`system:masters`) or a talosconfig (`os:admin`), for when Drover's proxies cannot be used.
//!
//! Such a credential bypasses Drover: no proxy sees its requests, Drover cannot revoke it, and
//! its holder is whoever has the file. So every issuance is recorded (table
//! `break_glass_credentials` and the audit log), and the cluster is *tainted* from the first one
//! on: its status says since when and by whom, until its CAs are rotated (not built yet, so
//! today the taint stays).
//!
//! The credentials point at the nodes themselves: the kubeconfig at the cluster's
//! control-plane endpoint, the talosconfig at the control planes' addresses as Drover knows
//! them (their tunnel addresses). They work only from where those are reachable directly.

use std::time::Duration;

use chrono::Utc;
use drover_model::{
    BreakGlassCredential, BreakGlassKind, ClusterMachinePhase, ClusterTaint, MachineId,
    MachineRole, Role,
};
use drover_pki::CertAndKey;
use drover_store::break_glass::{self, NewBreakGlassCredential, TaintRow};
use drover_store::{StoreError, cluster_machines, clusters, machines};
use secrecy::ExposeSecret as _;

use crate::{Drover, RequestContext, Result, ServiceError, parse_phase, parse_role};

/// How long a break-glass certificate is valid.
pub const BREAK_GLASS_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// The Talos API port on a node.
const APID_PORT: u16 = 50000;

fn internal(err: impl std::error::Error + Send + Sync + 'static) -> ServiceError {
    ServiceError::Internal(Box::new(err))
}

impl Drover {
    /// Issues a kubeconfig for cluster `name` with a `system:masters` client certificate signed
    /// by the cluster's Kubernetes CA (Admin; only with `--allow-break-glass`). Taints the
    /// cluster; audited as `cluster.breakGlass.kubeconfig`.
    pub async fn break_glass_kubeconfig(
        &self,
        ctx: &RequestContext,
        name: &str,
    ) -> Result<BreakGlassCredential> {
        self.audited(
            ctx,
            "cluster.breakGlass.kubeconfig",
            name,
            self.break_glass_unaudited(ctx, name, BreakGlassKind::Kubeconfig),
        )
        .await
    }

    /// Issues a talosconfig for cluster `name` with an `os:admin` client certificate signed by
    /// the cluster's OS CA (Admin; only with `--allow-break-glass`). Taints the cluster;
    /// audited as `cluster.breakGlass.talosconfig`.
    pub async fn break_glass_talosconfig(
        &self,
        ctx: &RequestContext,
        name: &str,
    ) -> Result<BreakGlassCredential> {
        self.audited(
            ctx,
            "cluster.breakGlass.talosconfig",
            name,
            self.break_glass_unaudited(ctx, name, BreakGlassKind::Talosconfig),
        )
        .await
    }

    async fn break_glass_unaudited(
        &self,
        ctx: &RequestContext,
        name: &str,
        kind: BreakGlassKind,
    ) -> Result<BreakGlassCredential> {
        let pool = self.store().pool();
        let row = clusters::get(pool, ctx.tenant(), name)
            .await?
            .ok_or_else(|| ServiceError::not_found("cluster", name))?;
        self.require_on_cluster(
            ctx,
            name,
            Role::Admin,
            &format!("issuing a break-glass {}", kind.as_str()),
        )
        .await?;
        if !self.config().allow_break_glass {
            return Err(ServiceError::FailedPrecondition(
                "break-glass access is off on this server: droverd's operator must allow it with \
                 --allow-break-glass (DROVER_ALLOW_BREAK_GLASS=true, or allow-break-glass = true \
                 in droverd's TOML file)"
                    .into(),
            ));
        }
        let bundle = self.open_bundle(ctx.tenant(), name, row.uid).await?;
        let actor = ctx.principal().actor();
        let context = format!("{name}-break-glass");
        let (endpoints, cert, config) = match kind {
            BreakGlassKind::Kubeconfig => {
                let server = row.control_plane_endpoint.clone().ok_or_else(|| {
                    ServiceError::Unavailable(format!(
                        "cluster {name} has no control-plane endpoint yet: no control plane \
                         was allocated"
                    ))
                })?;
                let cert = drover_pki::kubernetes_client_cert(
                    &bundle.kubernetes_ca,
                    &format!("break-glass:{actor}"),
                    &["system:masters"],
                    BREAK_GLASS_VALIDITY,
                )
                .map_err(internal)?;
                let config =
                    render_kubeconfig(&context, &server, &bundle.kubernetes_ca.cert_pem, &cert)?;
                (vec![server], cert, config)
            }
            BreakGlassKind::Talosconfig => {
                let endpoints = self.control_plane_addresses(ctx, name).await?;
                if endpoints.is_empty() {
                    return Err(ServiceError::Unavailable(format!(
                        "cluster {name} has no running control plane whose address Drover knows"
                    )));
                }
                let cert = drover_pki::talos_client_cert(
                    &bundle.os_ca,
                    &format!("break-glass:{actor}"),
                    "os:admin",
                    BREAK_GLASS_VALIDITY,
                )
                .map_err(internal)?;
                let config =
                    render_talosconfig(&context, &endpoints, &bundle.os_ca.cert_pem, &cert)?;
                (endpoints, cert, config)
            }
        };
        let serial = drover_pki::serial_hex(&cert.cert_pem).map_err(internal)?;
        let expires_at =
            Utc::now() + chrono::Duration::from_std(BREAK_GLASS_VALIDITY).map_err(internal)?;
        let mut tx = self.store().begin().await?;
        break_glass::insert(
            &mut *tx,
            ctx.tenant(),
            NewBreakGlassCredential {
                cluster_name: name,
                cluster_uid: row.uid,
                kind: kind.as_str(),
                actor: &actor,
                serial: &serial,
                expires_at,
            },
        )
        .await?;
        let taint = break_glass::taint(&mut *tx, ctx.tenant(), row.uid)
            .await?
            .ok_or_else(|| {
                ServiceError::Internal("a break-glass credential was recorded but no taint".into())
            })?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::warn!(
            cluster = name,
            actor,
            kind = kind.as_str(),
            serial,
            "break-glass credential issued: the cluster is tainted until its CAs are rotated"
        );
        Ok(BreakGlassCredential {
            kind,
            cluster: name.to_owned(),
            context,
            endpoints,
            serial,
            expires_at,
            config,
            taint: to_taint(taint),
        })
    }

    /// The cluster's taint, if a break-glass credential was issued since its CAs were rotated.
    pub(crate) async fn cluster_taint(
        &self,
        tenant: drover_model::TenantId,
        cluster_uid: uuid::Uuid,
    ) -> Result<Option<ClusterTaint>> {
        Ok(break_glass::taint(self.store().pool(), tenant, cluster_uid)
            .await?
            .map(to_taint))
    }

    /// `host:port` of the cluster's running control planes as Drover knows them (their tunnel
    /// addresses), connected and ready ones first.
    async fn control_plane_addresses(
        &self,
        ctx: &RequestContext,
        name: &str,
    ) -> Result<Vec<String>> {
        let pool = self.store().pool();
        let mut found = Vec::new();
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
            if let Ok(address) = machine.address.parse::<std::net::Ipv6Addr>() {
                found.push((
                    !(machine.connected && machine.ready),
                    format!("[{address}]:{APID_PORT}"),
                ));
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, a)| a).collect())
    }
}

fn to_taint(row: TaintRow) -> ClusterTaint {
    ClusterTaint {
        since: row.issued_at,
        by: row.actor,
        kind: if row.kind == "talosconfig" {
            BreakGlassKind::Talosconfig
        } else {
            BreakGlassKind::Kubeconfig
        },
        credentials_issued: u32::try_from(row.issued).unwrap_or(u32::MAX),
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn to_yaml(value: &serde_json::Value) -> Result<String> {
    serde_yaml_ng::to_string(value).map_err(internal)
}

/// A kubeconfig with one cluster, user and context.
fn render_kubeconfig(
    context: &str,
    server: &str,
    ca_pem: &str,
    cert: &CertAndKey,
) -> Result<String> {
    to_yaml(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": context,
            "cluster": {
                "server": server,
                "certificate-authority-data": b64(ca_pem),
            },
        }],
        "users": [{
            "name": context,
            "user": {
                "client-certificate-data": b64(&cert.cert_pem),
                "client-key-data": b64(cert.key_pem.expose_secret()),
            },
        }],
        "contexts": [{
            "name": context,
            "context": {"cluster": context, "user": context},
        }],
        "current-context": context,
    }))
}

/// A talosconfig as talosctl reads it, with one context.
fn render_talosconfig(
    context: &str,
    endpoints: &[String],
    ca_pem: &str,
    cert: &CertAndKey,
) -> Result<String> {
    to_yaml(&serde_json::json!({
        "context": context,
        "contexts": {
            context: {
                "endpoints": endpoints,
                "ca": b64(ca_pem),
                "crt": b64(&cert.cert_pem),
                "key": b64(cert.key_pem.expose_secret()),
            }
        }
    }))
}
