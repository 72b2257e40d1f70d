//! The UI's server functions: thin shells over droverd's service layer (`drover_service::Drover`),
//! so the browser can do what REST, gRPC and the CLI do, with the same rules. Each one
//! authenticates the browser's session (or the API token it signed in with) on every call.
//! Each has a fixed endpoint, `/ui/fn/<name>`, so a bundle and a server built from different
//! checkouts agree.

use std::collections::BTreeMap;

use drover_model::{
    AuditEntry, Cluster, ClusterChanges, ClusterEvent, CreatedJoinToken, IssuedServiceAccountKey,
    JoinToken, LogPage, Machine, MachineClass, MachineSearch, MachineSearchPage, Role,
    ServiceAccount, TenantUsage, Upgrade, User,
};
use leptos::prelude::*;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use crate::server::{caller, changing_caller};

/// Why a server function failed, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiError {
    pub kind: UiErrorKind,
    pub message: String,
    /// Problems tied to form fields (`field`, `message`), shown next to them.
    #[serde(default)]
    pub fields: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UiErrorKind {
    SignedOut,
    Denied,
    NotFound,
    Invalid,
    Conflict,
    Failed,
}

impl UiError {
    pub fn new(kind: UiErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// The message of the problem with `field`, if there is one.
    pub fn field(&self, field: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.clone())
    }
}

impl std::fmt::Display for UiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UiError {}

impl FromServerFnError for UiError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        Self::new(UiErrorKind::Failed, value.to_string())
    }
}

#[cfg(feature = "ssr")]
impl From<drover_service::ServiceError> for UiError {
    fn from(error: drover_service::ServiceError) -> Self {
        use drover_service::ServiceError as E;
        let kind = match &error {
            E::Unauthenticated(_) => UiErrorKind::SignedOut,
            E::PermissionDenied(_) | E::QuotaExceeded { .. } => UiErrorKind::Denied,
            E::NotFound { .. } => UiErrorKind::NotFound,
            E::InvalidArgument { .. } => UiErrorKind::Invalid,
            E::Conflict(_) | E::FailedPrecondition(_) | E::ResourceExhausted(_) => {
                UiErrorKind::Conflict
            }
            E::Unavailable(_) | E::Internal(_) => UiErrorKind::Failed,
        };
        if let E::Internal(source) = &error {
            tracing::error!(error = %source, "a UI call failed");
        }
        let mut out = Self::new(kind, error.to_string());
        if let E::InvalidArgument { field, message } = &error {
            out.fields.push(((*field).to_owned(), message.clone()));
        }
        out
    }
}

/// Who is signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    /// `user:alice@example.com`, `token:admin`, ...
    pub actor: String,
    pub display_name: String,
    pub role: Role,
    pub tenant: String,
    /// The tenants this person can switch between (`id`, `name`), when there are several.
    pub tenants: Vec<(String, String)>,
}

/// The signed-in caller, or `None` when nobody is.
#[server(prefix = "/ui/fn", endpoint = "get_viewer")]
pub async fn get_viewer() -> Result<Option<Viewer>, UiError> {
    let (drover, ctx) = match caller().await {
        Ok(found) => found,
        Err(e) if e.kind == UiErrorKind::SignedOut => return Ok(None),
        Err(e) => return Err(e),
    };
    let usage = drover.tenant_usage(&ctx).await?;
    let display_name = match ctx.principal() {
        drover_service::Principal::User { name, email, .. } if !name.is_empty() => {
            format!("{name} <{email}>")
        }
        other => other.actor(),
    };
    let choices = drover.tenant_choices(&ctx).await?;
    let tenants = if choices.len() > 1 {
        choices
            .into_iter()
            .map(|c| (c.id.to_string(), c.name))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Some(Viewer {
        tenants,
        actor: ctx.principal().actor(),
        display_name,
        role: ctx.role(),
        tenant: usage.name,
    }))
}

/// What the dashboard shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dashboard {
    pub machines: u64,
    pub connected: u64,
    pub available: u64,
    /// Clusters per phase, phases in their order.
    pub clusters_by_phase: Vec<(String, u32)>,
    pub clusters: u32,
    pub upgrades: Vec<Upgrade>,
    pub usage: TenantUsage,
}

#[server(prefix = "/ui/fn", endpoint = "get_dashboard")]
pub async fn get_dashboard() -> Result<Dashboard, UiError> {
    let (drover, ctx) = caller().await?;
    let count = |connected: Option<bool>, available: Option<bool>| {
        let drover = drover.clone();
        let ctx = ctx.clone();
        async move {
            let query = MachineSearch {
                connected,
                available,
                limit: 1,
                ..MachineSearch::default()
            };
            drover.search_machines(&ctx, &query).await.map(|p| p.total)
        }
    };
    let machines = count(None, None).await?;
    let connected = count(Some(true), None).await?;
    let available = count(None, Some(true)).await?;
    let clusters = drover.list_clusters(&ctx).await?;
    let mut by_phase: BTreeMap<String, u32> = BTreeMap::new();
    let mut upgrades = Vec::new();
    for cluster in &clusters {
        *by_phase
            .entry(drover_model::variant_name(cluster.status.phase))
            .or_default() += 1;
        if let Ok(upgrade) = drover.get_upgrade(&ctx, &cluster.spec.name).await
            && upgrade.state.is_active()
        {
            upgrades.push(upgrade);
        }
    }
    Ok(Dashboard {
        machines,
        connected,
        available,
        clusters_by_phase: by_phase.into_iter().collect(),
        clusters: u32::try_from(clusters.len()).unwrap_or(u32::MAX),
        upgrades,
        usage: drover.tenant_usage(&ctx).await?,
    })
}

#[server(prefix = "/ui/fn", endpoint = "search_machines")]
pub async fn search_machines(query: MachineSearch) -> Result<MachineSearchPage, UiError> {
    let (drover, ctx) = caller().await?;
    Ok(drover.search_machines(&ctx, &query).await?)
}

/// A machine and whether it is locked in its cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineDetail {
    pub machine: Machine,
    pub locked: bool,
}

#[server(prefix = "/ui/fn", endpoint = "get_machine")]
pub async fn get_machine(id: String) -> Result<MachineDetail, UiError> {
    let (drover, ctx) = caller().await?;
    let machine = drover.get_machine(&ctx, &id).await?;
    let locked = match &machine.cluster {
        Some(cluster) => drover
            .get_cluster(&ctx, cluster)
            .await?
            .spec
            .machines
            .iter()
            .any(|m| m.id == machine.id && m.locked),
        None => false,
    };
    Ok(MachineDetail { machine, locked })
}

/// The machine's kernel log lines after `after` (0: from the start).
#[server(prefix = "/ui/fn", endpoint = "machine_logs")]
pub async fn machine_logs(id: String, after: i64) -> Result<LogPage, UiError> {
    let (drover, ctx) = caller().await?;
    Ok(drover
        .machine_logs(&ctx, &id, (after > 0).then_some(after), Some(500))
        .await?)
}

/// Replaces the machine's user labels with `labels`: `key=value` pairs, one per line or
/// separated by commas.
#[server(prefix = "/ui/fn", endpoint = "set_machine_labels")]
pub async fn set_machine_labels(id: String, labels: String) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    let labels = parse_labels(&labels)?;
    drover.set_machine_labels(&ctx, &id, labels).await?;
    Ok(())
}

/// Holds (or releases) the machine in its cluster: no config change or upgrade touches it.
#[server(prefix = "/ui/fn", endpoint = "set_machine_locked")]
pub async fn set_machine_locked(id: String, locked: bool) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    drover.set_machine_locked(&ctx, &id, locked).await?;
    Ok(())
}

#[server(prefix = "/ui/fn", endpoint = "remove_machine")]
pub async fn remove_machine(id: String) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    drover.delete_machine(&ctx, &id).await?;
    leptos_axum::redirect("/machines");
    Ok(())
}

#[server(prefix = "/ui/fn", endpoint = "join_tokens")]
pub async fn join_tokens() -> Result<Vec<JoinToken>, UiError> {
    let (drover, ctx) = caller().await?;
    Ok(drover.list_join_tokens(&ctx).await?)
}

/// Creates a join token; `expires_in` is empty (never) or a duration such as `30d`.
#[server(prefix = "/ui/fn", endpoint = "create_join_token")]
pub async fn create_join_token(
    name: String,
    expires_in: String,
    make_default: Option<String>,
) -> Result<CreatedJoinToken, UiError> {
    let (drover, ctx) = changing_caller().await?;
    let expires_at = crate::server::expiry("expires_in", &expires_in)?;
    let req = drover_model::CreateJoinToken {
        name: name.trim().to_owned(),
        expires_at,
        make_default: make_default.is_some(),
    };
    Ok(drover.create_join_token(&ctx, req).await?)
}

#[server(prefix = "/ui/fn", endpoint = "revoke_join_token")]
pub async fn revoke_join_token(id: String) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    drover.revoke_join_token(&ctx, &id).await?;
    Ok(())
}

#[server(prefix = "/ui/fn", endpoint = "make_default_join_token")]
pub async fn make_default_join_token(id: String) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    drover.make_default_join_token(&ctx, &id).await?;
    Ok(())
}

#[server(prefix = "/ui/fn", endpoint = "machine_classes")]
pub async fn machine_classes() -> Result<Vec<MachineClass>, UiError> {
    let (drover, ctx) = caller().await?;
    Ok(drover.list_machine_classes(&ctx).await?)
}

/// Creates or replaces a machine class; `selectors` holds one selector per line.
#[server(prefix = "/ui/fn", endpoint = "save_machine_class")]
pub async fn save_machine_class(name: String, selectors: String) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    let spec = drover_model::MachineClassSpec {
        name: name.trim().to_owned(),
        selectors: lines(&selectors),
    };
    drover.put_machine_class(&ctx, spec).await?;
    Ok(())
}

#[server(prefix = "/ui/fn", endpoint = "delete_machine_class")]
pub async fn delete_machine_class(name: String) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    drover.delete_machine_class(&ctx, &name).await?;
    Ok(())
}

/// The machines that selectors (one per line) match: a class's live preview.
#[server(prefix = "/ui/fn", endpoint = "preview_selectors")]
pub async fn preview_selectors(selectors: String) -> Result<Vec<Machine>, UiError> {
    let (drover, ctx) = caller().await?;
    Ok(drover.machines_matching(&ctx, &lines(&selectors)).await?)
}

#[server(prefix = "/ui/fn", endpoint = "clusters")]
pub async fn clusters() -> Result<Vec<Cluster>, UiError> {
    let (drover, ctx) = caller().await?;
    Ok(drover.list_clusters(&ctx).await?)
}

/// A cluster with its upgrade and recent events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterDetail {
    pub cluster: Cluster,
    pub upgrade: Option<Upgrade>,
    pub events: Vec<ClusterEvent>,
    /// The cluster's template (for editing patches and scale as a whole).
    pub template: String,
    /// The caller's role on this cluster.
    pub role: Role,
}

#[server(prefix = "/ui/fn", endpoint = "get_cluster")]
pub async fn get_cluster(name: String) -> Result<ClusterDetail, UiError> {
    let (drover, ctx) = caller().await?;
    let cluster = drover.get_cluster(&ctx, &name).await?;
    let upgrade = drover.get_upgrade(&ctx, &name).await.ok();
    let mut events = drover.cluster_events(&ctx, &name, 0).await?;
    let keep = events.len().saturating_sub(30);
    events.drain(..keep);
    events.reverse();
    Ok(ClusterDetail {
        template: drover_template::export(&cluster.spec),
        role: drover.role_on_cluster(&ctx, &name).await?,
        cluster,
        upgrade,
        events,
    })
}

/// Creates a cluster from the form: control planes and workers taken from machine classes (or
/// given machine ids).
#[server(prefix = "/ui/fn", endpoint = "create_cluster")]
pub async fn create_cluster(
    name: String,
    talos_version: String,
    kubernetes_version: String,
    control_plane_class: String,
    control_planes: String,
    worker_class: String,
    workers: String,
) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    let spec = crate::server::form_spec(&crate::server::ClusterForm {
        name: &name,
        talos_version: &talos_version,
        kubernetes_version: &kubernetes_version,
        control_plane_class: &control_plane_class,
        control_planes: &control_planes,
        worker_class: &worker_class,
        workers: &workers,
    })?;
    crate::server::check_spec(&spec)?;
    drover.create_cluster(&ctx, spec).await?;
    leptos_axum::redirect(&format!("/clusters/{}", name.trim()));
    Ok(())
}

/// Validates a template and, unless `preview` is set, creates or updates its cluster. The
/// changes are returned either way; problems come back one per document and field.
#[server(prefix = "/ui/fn", endpoint = "apply_template")]
pub async fn apply_template(
    template: String,
    preview: Option<String>,
) -> Result<ClusterChanges, UiError> {
    let (drover, ctx) = changing_caller().await?;
    let spec = crate::server::parse_template(&template)?;
    Ok(drover.apply_cluster(&ctx, spec, preview.is_some()).await?)
}

/// Sets how many machines a machine set takes from its class.
#[server(prefix = "/ui/fn", endpoint = "scale_machine_set")]
pub async fn scale_machine_set(cluster: String, set: String, size: String) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    let mut spec = drover.get_cluster(&ctx, &cluster).await?.spec;
    crate::server::scale(&mut spec, &set, &size)?;
    drover.update_cluster(&ctx, spec).await?;
    Ok(())
}

/// Replaces the cluster-wide config patches with the YAML documents in `patches` (each a
/// strategic merge patch, separated by `---`).
#[server(prefix = "/ui/fn", endpoint = "set_cluster_patches")]
pub async fn set_cluster_patches(cluster: String, patches: String) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    let mut spec = drover.get_cluster(&ctx, &cluster).await?.spec;
    spec.patches = crate::server::parse_patches(&patches)?;
    crate::server::check_spec(&spec)?;
    drover.update_cluster(&ctx, spec).await?;
    Ok(())
}

/// Plans (`dry_run`) or starts a Talos (`kind` = `talos`) or Kubernetes upgrade.
#[server(prefix = "/ui/fn", endpoint = "upgrade_cluster")]
pub async fn upgrade_cluster(
    cluster: String,
    kind: String,
    version: String,
    dry_run: Option<String>,
) -> Result<Upgrade, UiError> {
    let (drover, ctx) = changing_caller().await?;
    let kind = drover_model::parse_variant(&kind)
        .ok_or_else(|| UiError::new(UiErrorKind::Invalid, format!("unknown kind {kind:?}")))?;
    let req = drover_model::StartUpgrade {
        kind,
        version: version.trim().to_owned(),
        dry_run: dry_run.is_some(),
    };
    Ok(drover.start_upgrade(&ctx, &cluster, req).await?)
}

/// Pauses, resumes or cancels the cluster's upgrade (`action`: `paused`, `running`, `cancelled`).
#[server(prefix = "/ui/fn", endpoint = "set_upgrade_state")]
pub async fn set_upgrade_state(cluster: String, action: String) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    let to = drover_model::parse_variant(&action)
        .ok_or_else(|| UiError::new(UiErrorKind::Invalid, format!("unknown action {action:?}")))?;
    drover.set_upgrade_state(&ctx, &cluster, to).await?;
    Ok(())
}

/// Deletes a cluster once `confirm` repeats its name.
#[server(prefix = "/ui/fn", endpoint = "delete_cluster")]
pub async fn delete_cluster(name: String, confirm: String) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    if confirm.trim() != name {
        let mut error = UiError::new(
            UiErrorKind::Invalid,
            format!("type the cluster's name, {name}, to delete it"),
        );
        error.fields.push(("confirm".into(), error.message.clone()));
        return Err(error);
    }
    drover.delete_cluster(&ctx, &name).await?;
    leptos_axum::redirect("/clusters");
    Ok(())
}

/// Everything the settings page lists (what the caller's role may see).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub users: Vec<User>,
    pub invitations: Vec<User>,
    pub service_accounts: Vec<ServiceAccount>,
}

#[server(prefix = "/ui/fn", endpoint = "get_settings")]
pub async fn get_settings() -> Result<Settings, UiError> {
    let (drover, ctx) = caller().await?;
    Ok(Settings {
        users: drover.list_users(&ctx).await?,
        invitations: drover.list_invitations(&ctx).await?,
        service_accounts: drover.list_service_accounts(&ctx).await?,
    })
}

#[server(prefix = "/ui/fn", endpoint = "invite_user")]
pub async fn invite_user(email: String, role: String) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    let role = crate::server::role("role", &role)?;
    let req = drover_model::InviteUser {
        email: email.trim().to_owned(),
        role,
    };
    drover.invite_user(&ctx, req).await?;
    Ok(())
}

#[server(prefix = "/ui/fn", endpoint = "cancel_invitation")]
pub async fn cancel_invitation(email: String) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    drover.cancel_invitation(&ctx, &email).await?;
    Ok(())
}

#[server(prefix = "/ui/fn", endpoint = "set_user_role")]
pub async fn set_user_role(email: String, role: String) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    let role = crate::server::role("role", &role)?;
    drover.set_user_role(&ctx, &email, role).await?;
    Ok(())
}

#[server(prefix = "/ui/fn", endpoint = "remove_user")]
pub async fn remove_user(email: String) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    drover.remove_user(&ctx, &email).await?;
    Ok(())
}

/// Creates a service account with its first key, shown once.
#[server(prefix = "/ui/fn", endpoint = "create_service_account")]
pub async fn create_service_account(
    name: String,
    role: String,
    expires_in: String,
) -> Result<IssuedServiceAccountKey, UiError> {
    let (drover, ctx) = changing_caller().await?;
    let req = drover_model::CreateServiceAccount {
        name: name.trim().to_owned(),
        role: crate::server::role("role", &role)?,
        expires_at: crate::server::expiry("expires_in", &expires_in)?,
    };
    Ok(drover.create_service_account(&ctx, req).await?)
}

#[server(prefix = "/ui/fn", endpoint = "delete_service_account")]
pub async fn delete_service_account(name: String) -> Result<(), UiError> {
    let (drover, ctx) = changing_caller().await?;
    drover.delete_service_account(&ctx, &name).await?;
    Ok(())
}

/// Audit log entries after `after` (0: the newest ones), filtered by action prefix and actor.
#[server(prefix = "/ui/fn", endpoint = "audit_log")]
pub async fn audit_log(
    action: String,
    actor: String,
    after: i64,
) -> Result<Vec<AuditEntry>, UiError> {
    let (drover, ctx) = caller().await?;
    let query = drover_service::audit::AuditQuery {
        after,
        since: None,
        action: Some(action.trim().to_owned()).filter(|a| !a.is_empty()),
        actor: Some(actor.trim().to_owned()).filter(|a| !a.is_empty()),
        limit: Some(200),
    };
    Ok(drover.audit_log(&ctx, &query).await?)
}

/// Non-empty trimmed lines (or comma-separated items).
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `key=value` pairs, one per line or separated by commas.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, UiError> {
    let mut out = BTreeMap::new();
    for item in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        let (key, value) = item.split_once('=').unwrap_or((item, ""));
        if key.trim().is_empty() {
            let mut error = UiError::new(
                UiErrorKind::Invalid,
                format!("{item:?} has no key: write key=value"),
            );
            error.fields.push(("labels".into(), error.message.clone()));
            return Err(error);
        }
        out.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_pairs_by_line_or_comma() {
        let labels = parse_labels("zone=a, rack = r1\nssd").unwrap();
        assert_eq!(labels["zone"], "a");
        assert_eq!(labels["rack"], "r1");
        assert_eq!(labels["ssd"], "");
        let error = parse_labels("=x").unwrap_err();
        assert_eq!(error.kind, UiErrorKind::Invalid);
        assert!(error.field("labels").unwrap().contains("no key"));
    }
}
