//! Access to a cluster's Talos API through Drover's Talos API proxy.
//!
//! A caller gets a talosconfig whose client certificate Drover's talos-proxy CA signed for that
//! caller and one cluster (CN = the actor, O = the tenant id). The proxy checks the chain; here
//! every call looks the certificate's serial up again ([`Drover::talos_proxy_caller`]), so an
//! expired or revoked certificate, or one whose principal is gone, is refused at once, and the
//! caller's role is the one it has now.

use std::net::Ipv6Addr;
use std::time::Duration;

use chrono::Utc;
use drover_model::{
    ApiTokenId, ClusterMachinePhase, IssuedTalosconfig, MachineId, RevokedTalosCerts, Role,
    ServiceAccountId, ServiceAccountKeyId, TenantId, UserId,
};
use drover_pki::CertAndKey;
use drover_store::talos_client_certs::{self, NewTalosClientCert};
use drover_store::{api_tokens, cluster_machines, machines, service_accounts, users};
use secrecy::ExposeSecret as _;

use crate::{Drover, Principal, RequestContext, Result, ServiceError, parse_phase};

/// Lifetime of a talosconfig's certificate unless the caller asks for another.
pub const DEFAULT_TALOSCONFIG_TTL: Duration = Duration::from_secs(8 * 3600);
/// The longest a talosconfig's certificate may live.
pub const MAX_TALOSCONFIG_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The Talos API proxy, when it runs: where clients reach it and the CA that signs (and
/// serves) its certificates.
#[derive(Debug, Clone)]
pub struct TalosProxyInfo {
    /// `host:port`, put into talosconfigs as the endpoint.
    pub endpoint: String,
    pub ca: CertAndKey,
}

/// Who a certificate presented to the Talos API proxy speaks for, and for which cluster.
#[derive(Debug, Clone)]
pub struct TalosCaller {
    pub ctx: RequestContext,
    pub cluster: String,
    pub serial: String,
}

/// The node a proxied call goes to.
#[derive(Debug, Clone)]
pub struct TalosTarget {
    pub tenant: TenantId,
    pub cluster: String,
    pub cluster_uid: uuid::Uuid,
    /// The node's tunnel address.
    pub address: Ipv6Addr,
    /// The Talos role the call is made with: `os:reader` for Readers, `os:operator` for
    /// Operators and Admins.
    pub talos_role: &'static str,
}

/// How the principal behind a certificate is found again.
fn principal_key(principal: &Principal) -> (&'static str, uuid::Uuid) {
    match principal {
        Principal::ApiToken { id, .. } => ("api_token", id.as_uuid()),
        Principal::User { id, .. } => ("user", id.as_uuid()),
        Principal::ServiceAccount { key_id, .. } => ("service_account_key", key_id.as_uuid()),
    }
}

/// The Talos role a Drover role maps to.
pub fn talos_role(role: Role) -> &'static str {
    if role >= Role::Operator {
        "os:operator"
    } else {
        "os:reader"
    }
}

fn revoked_or_gone(serial: &str, why: &str) -> ServiceError {
    ServiceError::Unauthenticated(format!("the client certificate {serial} is refused: {why}"))
}

impl Drover {
    fn talos_proxy(&self) -> Result<&TalosProxyInfo> {
        self.config()
            .talos_proxy
            .as_ref()
            .ok_or_else(|| ServiceError::Unavailable("the Talos API proxy is not running".into()))
    }

    /// Issues a client certificate of the Talos API proxy for the caller and cluster `name`
    /// (any role that reads the cluster), valid for `ttl`, as a talosconfig.
    pub async fn issue_talosconfig(
        &self,
        ctx: &RequestContext,
        name: &str,
        ttl: Option<Duration>,
    ) -> Result<IssuedTalosconfig> {
        let ttl = ttl.unwrap_or(DEFAULT_TALOSCONFIG_TTL);
        if ttl.is_zero() || ttl > MAX_TALOSCONFIG_TTL {
            return Err(ServiceError::invalid(
                "ttl",
                format!(
                    "must be more than 0s and at most {}",
                    humanize(MAX_TALOSCONFIG_TTL)
                ),
            ));
        }
        self.cluster_access(ctx, name).await?;
        let proxy = self.talos_proxy()?;
        let actor = ctx.principal().actor();
        let now = Utc::now();
        let cert = drover_pki::service_client_cert(
            &proxy.ca,
            &actor,
            &ctx.tenant().as_uuid().to_string(),
            ttl,
            now,
        )
        .map_err(|e| ServiceError::Internal(Box::new(e)))?;
        let serial = drover_pki::serial_hex(&cert.cert_pem)
            .map_err(|e| ServiceError::Internal(Box::new(e)))?;
        let expires_at = now
            + chrono::Duration::from_std(ttl).map_err(|e| ServiceError::Internal(Box::new(e)))?;
        let (kind, id) = principal_key(ctx.principal());
        talos_client_certs::insert(
            self.store().pool(),
            ctx.tenant(),
            NewTalosClientCert {
                serial: &serial,
                cluster_name: name,
                actor: &actor,
                principal_kind: kind,
                principal_id: id,
                expires_at,
            },
        )
        .await?;
        self.record(
            ctx.tenant(),
            &actor,
            "talosconfig.issue",
            &format!("{name}/{serial}"),
            "ok",
        )
        .await;
        let context = format!("drover-{name}");
        let talosconfig = render_talosconfig(&context, &proxy.endpoint, &proxy.ca.cert_pem, &cert)?;
        Ok(IssuedTalosconfig {
            serial,
            cluster: name.to_owned(),
            context,
            endpoint: proxy.endpoint.clone(),
            expires_at,
            talosconfig,
        })
    }

    /// Who the certificate with `serial` (already verified as signed by the proxy CA) speaks
    /// for now: refused once expired or revoked, or when its principal is gone.
    pub async fn talos_proxy_caller(&self, serial: &str) -> Result<TalosCaller> {
        let pool = self.store().pool();
        let row = talos_client_certs::find_for_auth(pool, serial)
            .await?
            .ok_or_else(|| revoked_or_gone(serial, "Drover did not issue it"))?;
        if row.revoked_at.is_some() {
            return Err(revoked_or_gone(serial, "it has been revoked"));
        }
        if row.expires_at <= Utc::now() {
            return Err(revoked_or_gone(
                serial,
                &format!("it expired at {}", row.expires_at.to_rfc3339()),
            ));
        }
        let tenant = TenantId::from_uuid(row.tenant_id);
        let gone = |what: &str| revoked_or_gone(serial, &format!("{} {what}", row.actor));
        let (principal, role) = match row.principal_kind.as_str() {
            "api_token" => {
                let id = ApiTokenId::from_uuid(row.principal_id);
                let token = api_tokens::find_by_id(pool, id)
                    .await?
                    .filter(|t| t.tenant_id == row.tenant_id)
                    .ok_or_else(|| gone("no longer exists"))?;
                if token.revoked_at.is_some() {
                    return Err(gone("has been revoked"));
                }
                if token.expires_at.is_some_and(|e| e <= Utc::now()) {
                    return Err(gone("has expired"));
                }
                (
                    Principal::ApiToken {
                        id,
                        name: token.name,
                    },
                    token.role,
                )
            }
            "user" => {
                let id = UserId::from_uuid(row.principal_id);
                let user = users::find_by_id(pool, tenant, id)
                    .await?
                    .ok_or_else(|| gone("no longer exists"))?;
                (
                    Principal::User {
                        id,
                        email: user.email,
                        name: user.name,
                    },
                    user.role,
                )
            }
            "service_account_key" => {
                let key = service_accounts::find_key_for_auth(pool, row.principal_id)
                    .await?
                    .filter(|k| k.tenant_id == row.tenant_id)
                    .ok_or_else(|| gone("no longer exists"))?;
                if key.revoked_at.is_some() {
                    return Err(gone("has been revoked"));
                }
                if key.expires_at.is_some_and(|e| e <= Utc::now()) {
                    return Err(gone("has expired"));
                }
                (
                    Principal::ServiceAccount {
                        id: ServiceAccountId::from_uuid(key.service_account_id),
                        name: key.name,
                        key_id: ServiceAccountKeyId::from_uuid(row.principal_id),
                    },
                    key.role,
                )
            }
            other => {
                return Err(ServiceError::Internal(
                    format!("unknown principal kind {other:?} of client certificate {serial}")
                        .into(),
                ));
            }
        };
        let role: Role = role
            .parse()
            .map_err(|e: drover_model::UnknownRole| ServiceError::Internal(Box::new(e)))?;
        Ok(TalosCaller {
            ctx: RequestContext::new(tenant, principal, role),
            cluster: row.cluster_name,
            serial: row.serial,
        })
    }

    /// The node of cluster `name` a proxied call goes to: `node` by machine id, tunnel address
    /// or hostname; none = a control plane (ready ones first). A node outside the cluster is
    /// not found.
    pub async fn talos_target(
        &self,
        ctx: &RequestContext,
        name: &str,
        node: Option<&str>,
    ) -> Result<TalosTarget> {
        let access = self.cluster_access(ctx, name).await?;
        let talos_role = talos_role(self.role_on_cluster(ctx, name).await?);
        let address = match node.map(str::trim).filter(|n| !n.is_empty()) {
            None => *access.control_planes.first().ok_or_else(|| {
                ServiceError::Unavailable(format!(
                    "no control plane of cluster {name} is connected right now"
                ))
            })?,
            Some(node) => self.cluster_node_address(ctx, name, node).await?,
        };
        Ok(TalosTarget {
            tenant: access.tenant,
            cluster: access.cluster,
            cluster_uid: access.cluster_uid,
            address,
            talos_role,
        })
    }

    async fn cluster_node_address(
        &self,
        ctx: &RequestContext,
        cluster: &str,
        node: &str,
    ) -> Result<Ipv6Addr> {
        let pool = self.store().pool();
        let wanted_address: Option<Ipv6Addr> = node.trim_matches(['[', ']']).parse().ok();
        for member in cluster_machines::list_for_cluster(pool, ctx.tenant(), cluster).await? {
            if parse_phase(&member.phase) != ClusterMachinePhase::Running {
                continue;
            }
            let Ok(id) = member.machine_id.parse::<MachineId>() else {
                continue;
            };
            let Some(machine) = machines::get(pool, ctx.tenant(), &id).await? else {
                continue;
            };
            let Ok(address) = machine.address.parse::<Ipv6Addr>() else {
                continue;
            };
            let hostname = machine
                .facts
                .as_ref()
                .and_then(|f| f.get("hostname"))
                .and_then(|h| h.as_str());
            if machine.id == node || wanted_address == Some(address) || hostname == Some(node) {
                if !machine.connected {
                    return Err(ServiceError::Unavailable(format!(
                        "node {node} of cluster {cluster} is not connected right now"
                    )));
                }
                return Ok(address);
            }
        }
        Err(ServiceError::NotFound {
            kind: "node",
            id: format!("{node} in cluster {cluster}"),
        })
    }

    /// Revokes the talosconfig certificate `serial`: its owner or an Admin.
    pub async fn revoke_talos_client_cert(&self, ctx: &RequestContext, serial: &str) -> Result<()> {
        let serial = serial.trim().to_ascii_lowercase();
        let actor = ctx.principal().actor();
        let row = talos_client_certs::get(self.store().pool(), ctx.tenant(), &serial)
            .await?
            .ok_or_else(|| ServiceError::not_found("talosconfig certificate", &serial))?;
        if row.actor != actor {
            ctx.require(
                Role::Admin,
                "revoke another principal's talosconfig certificate",
            )?;
        }
        talos_client_certs::revoke(self.store().pool(), ctx.tenant(), &serial).await?;
        self.record(ctx.tenant(), &actor, "talosconfig.revoke", &serial, "ok")
            .await;
        Ok(())
    }

    /// Revokes every talosconfig certificate of `principal` (an actor such as
    /// `user:ops@example.com`): the principal itself or an Admin.
    pub async fn revoke_talos_client_certs_of(
        &self,
        ctx: &RequestContext,
        principal: &str,
    ) -> Result<RevokedTalosCerts> {
        let actor = ctx.principal().actor();
        if principal != actor {
            ctx.require(
                Role::Admin,
                "revoke another principal's talosconfig certificates",
            )?;
        }
        let revoked =
            talos_client_certs::revoke_all_of(self.store().pool(), ctx.tenant(), principal).await?;
        self.record(
            ctx.tenant(),
            &actor,
            "talosconfig.revoke-all",
            principal,
            &format!("ok: {revoked} revoked"),
        )
        .await;
        Ok(RevokedTalosCerts { revoked })
    }
}

fn humanize(d: Duration) -> String {
    format!("{}h", d.as_secs() / 3600)
}

/// A talosconfig as talosctl reads it, with one context.
fn render_talosconfig(
    context: &str,
    endpoint: &str,
    ca_pem: &str,
    cert: &CertAndKey,
) -> Result<String> {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let config = serde_json::json!({
        "context": context,
        "contexts": {
            context: {
                "endpoints": [endpoint],
                "ca": b64(ca_pem),
                "crt": b64(&cert.cert_pem),
                "key": b64(cert.key_pem.expose_secret()),
            }
        }
    });
    serde_yaml_ng::to_string(&config).map_err(|e| ServiceError::Internal(Box::new(e)))
}
