//! Tenants, plans and quotas.
//!
//! A tenant owns its machines, join tokens, clusters, users and service accounts, and is on a
//! plan. Plans are configuration (built-in `hobby` and `unlimited`, plus a plans file); a
//! tenant row records only its plan's name. Limits are checked where they are crossed, inside
//! the transaction that inserts, after locking the tenant row ([`Drover::lock_quota`]), so two
//! replicas or concurrent requests cannot both pass a check at the boundary.

use std::collections::BTreeMap;

use drover_model::{ApiTokenId, PlanLimits, Resource, Role, TenantId, TenantUsage, UsageItem};
use drover_store::{Store, StoreError, api_tokens, tenants};
use secrecy::SecretString;
use serde::Deserialize;

use crate::secret_token::{self, TokenKind};
use crate::{Drover, RequestContext, Result, ServiceError};

/// The plan with small limits that multi-tenant sign-ups get unless configured otherwise.
pub const HOBBY_PLAN: &str = "hobby";
/// The plan without limits: the single-tenant default.
pub const UNLIMITED_PLAN: &str = "unlimited";
const INITIAL_ADMIN_TOKEN_NAME: &str = "initial-admin";
/// Serialises sign-ups (tenant creation at a first login) across replicas.
const SIGNUP_LOCK: i64 = 0x6472_6f76_6572_0002;

/// How an installation is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TenancyMode {
    /// One organisation: everyone logs into the default tenant (self-hosted).
    #[default]
    SingleTenant,
    /// Many tenants: a first login of a person who is no user anywhere creates a tenant on the
    /// default plan, with that person as its Admin (sign-up).
    MultiTenant,
}

/// The plans an installation offers and the one new tenants get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plans {
    plans: BTreeMap<String, PlanLimits>,
    default_plan: String,
}

/// A plans file, TOML:
///
/// ```toml
/// default-plan = "hobby"          # optional
/// [plans.team]
/// machines = 100
/// clusters = 10
/// users = 25
/// service-accounts = 10           # an absent limit is unlimited
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PlansFile {
    pub default_plan: Option<String>,
    #[serde(default)]
    pub plans: BTreeMap<String, PlanLimits>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlansError {
    #[error("the plans file is not valid: {0}")]
    Parse(String),
    #[error("the default plan {name:?} is not defined; plans are: {known}")]
    UnknownDefault { name: String, known: String },
    #[error("plan name {0:?}: use 1 to 63 lower-case letters, digits and '-'")]
    BadName(String),
}

impl Plans {
    /// `hobby` (10 machines, 2 clusters, 3 users, 2 service accounts) and `unlimited`.
    pub fn builtin() -> BTreeMap<String, PlanLimits> {
        BTreeMap::from([
            (
                HOBBY_PLAN.to_owned(),
                PlanLimits {
                    machines: Some(10),
                    clusters: Some(2),
                    users: Some(3),
                    service_accounts: Some(2),
                },
            ),
            (UNLIMITED_PLAN.to_owned(), PlanLimits::default()),
        ])
    }

    /// The built-in plans, overridden and extended by `file`; the default plan is `default`
    /// (a setting), else the file's, else `hobby` in multi-tenant mode and `unlimited` in
    /// single-tenant mode.
    pub fn new(
        mode: TenancyMode,
        file: Option<PlansFile>,
        default: Option<String>,
    ) -> Result<Self, PlansError> {
        let file = file.unwrap_or_default();
        let mut plans = Self::builtin();
        for (name, limits) in file.plans {
            if !valid_name(&name, 63) || name.contains('@') || name.contains('.') {
                return Err(PlansError::BadName(name));
            }
            plans.insert(name, limits);
        }
        let default_plan = default.or(file.default_plan).unwrap_or_else(|| match mode {
            TenancyMode::SingleTenant => UNLIMITED_PLAN.to_owned(),
            TenancyMode::MultiTenant => HOBBY_PLAN.to_owned(),
        });
        if !plans.contains_key(&default_plan) {
            return Err(PlansError::UnknownDefault {
                name: default_plan,
                known: plans.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        Ok(Self {
            plans,
            default_plan,
        })
    }

    pub fn parse_file(text: &str) -> Result<PlansFile, PlansError> {
        toml::from_str(text).map_err(|e| PlansError::Parse(e.to_string()))
    }

    pub fn get(&self, name: &str) -> Option<&PlanLimits> {
        self.plans.get(name)
    }

    pub fn default_plan(&self) -> &str {
        &self.default_plan
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.plans.keys().map(String::as_str)
    }

    fn require(&self, name: &str) -> Result<&PlanLimits> {
        self.get(name).ok_or_else(|| {
            ServiceError::invalid(
                "plan",
                format!(
                    "there is no plan {name:?}; plans are: {}",
                    self.names().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }
}

/// Tenancy settings of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenancy {
    pub mode: TenancyMode,
    pub plans: Plans,
}

impl Default for Tenancy {
    fn default() -> Self {
        Self {
            mode: TenancyMode::SingleTenant,
            plans: Plans::new(TenancyMode::SingleTenant, None, None)
                .expect("the built-in plans are valid"),
        }
    }
}

/// A tenant's plan and one of its limits, with the tenant row locked until the transaction
/// that [`Drover::lock_quota`] was given ends.
#[derive(Debug, Clone)]
#[must_use = "call admit() with the current count"]
pub struct Quota {
    pub resource: Resource,
    pub plan: String,
    pub limit: Option<u64>,
}

impl Quota {
    /// Whether one more can be added to `used`; [`ServiceError::QuotaExceeded`] if not.
    pub fn admit(&self, used: u64) -> Result<()> {
        match self.limit {
            Some(limit) if used >= limit => Err(ServiceError::QuotaExceeded {
                resource: self.resource,
                plan: self.plan.clone(),
                limit,
            }),
            _ => Ok(()),
        }
    }
}

/// A tenant as the operator sees it (`droverd tenant list`).
#[derive(Debug, Clone)]
pub struct TenantSummary {
    pub usage: TenantUsage,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// What `droverd tenant create` made.
pub struct CreatedTenant {
    pub id: TenantId,
    pub name: String,
    pub plan: String,
    /// The tenant's initial admin API token, shown once.
    pub admin_token: SecretString,
}

impl Drover {
    pub fn with_tenancy(mut self, tenancy: Tenancy) -> Self {
        self.tenancy = std::sync::Arc::new(tenancy);
        self
    }

    pub fn tenancy(&self) -> &Tenancy {
        &self.tenancy
    }

    /// Locks the tenant row (until `tx` ends) and returns its plan's limit on `resource`. Call
    /// it in the transaction that inserts, before counting: every transaction that may cross
    /// a limit takes the same lock, so a count taken under it stays true until commit.
    pub async fn lock_quota(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant: TenantId,
        resource: Resource,
    ) -> Result<Quota> {
        let row = tenants::lock(&mut *tx, tenant)
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("tenant {tenant} is gone").into()))?;
        let limits = self.tenancy.plans.get(&row.plan).ok_or_else(|| {
            ServiceError::Internal(
                format!(
                    "tenant {tenant} is on plan {:?}, which the configuration does not define",
                    row.plan
                )
                .into(),
            )
        })?;
        Ok(Quota {
            resource,
            limit: limits.get(resource),
            plan: row.plan,
        })
    }

    /// Fails with [`ServiceError::QuotaExceeded`] unless the tenant may add one more
    /// `resource`; machines, clusters and users are counted here (service accounts: see
    /// [`Drover::lock_quota`]). The tenant stays locked until `tx` ends, so insert in `tx`.
    pub async fn check_quota(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant: TenantId,
        resource: Resource,
    ) -> Result<()> {
        let quota = self.lock_quota(&mut *tx, tenant, resource).await?;
        if quota.limit.is_none() {
            return Ok(());
        }
        let usage = tenants::usage(&mut *tx, tenant).await?;
        let used = match resource {
            Resource::Machines => usage.machines,
            Resource::Clusters => usage.clusters,
            Resource::Users => usage.users,
            Resource::ServiceAccounts => usage.service_accounts,
        };
        quota.admit(used)
    }

    /// The caller's tenant, its plan and its usage against each limit. Any role may read it.
    pub async fn tenant_usage(&self, ctx: &RequestContext) -> Result<TenantUsage> {
        ctx.require(Role::Reader, "reading the tenant's usage")?;
        let row = tenants::get(self.store.pool(), ctx.tenant())
            .await?
            .ok_or_else(|| ServiceError::not_found("tenant", ctx.tenant()))?;
        self.usage_of(row).await
    }

    async fn usage_of(&self, row: tenants::TenantRow) -> Result<TenantUsage> {
        usage_of(&self.store, &self.tenancy, row).await
    }

    /// The operator's view of tenants (`droverd tenant ...`, tests): not reachable from the
    /// APIs, which only ever see the caller's own tenant.
    pub fn tenant_admin(&self) -> TenantAdmin {
        TenantAdmin::new(self.store.clone(), (*self.tenancy).clone())
    }

    pub(crate) async fn insert_initial_admin_token(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant: TenantId,
    ) -> Result<SecretString> {
        insert_initial_admin_token(tx, tenant).await
    }

    /// Multi-tenant sign-up, inside the login's transaction: a new tenant named after `email`
    /// (made unique) on the default plan. The caller adds the person as its Admin.
    pub(crate) async fn sign_up_tenant(
        &self,
        tx: &mut sqlx::PgConnection,
        email: &str,
    ) -> Result<TenantId> {
        let taken = tenants::names_taken(&mut *tx, email).await?;
        let name = unique_name(email, &taken);
        let plan = self.tenancy.plans.default_plan();
        let id = TenantId::new_random();
        tenants::insert(&mut *tx, id, &name, plan).await?;
        tracing::info!(tenant = %id, name, plan, "tenant created at sign-up");
        Ok(id)
    }

    /// Serialises sign-ups so that two first logins of one person make one tenant.
    pub(crate) async fn lock_sign_ups(&self, tx: &mut sqlx::PgConnection) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SIGNUP_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }
}

async fn usage_of(
    store: &Store,
    tenancy: &Tenancy,
    row: tenants::TenantRow,
) -> Result<TenantUsage> {
    let used = tenants::usage(store.pool(), row.tenant_id()).await?;
    let limits = tenancy.plans.get(&row.plan).cloned().unwrap_or_default();
    let usage = Resource::ALL
        .into_iter()
        .map(|resource| UsageItem {
            resource,
            used: match resource {
                Resource::Machines => used.machines,
                Resource::Clusters => used.clusters,
                Resource::Users => used.users,
                Resource::ServiceAccounts => used.service_accounts,
            },
            limit: limits.get(resource),
        })
        .collect();
    Ok(TenantUsage {
        id: row.tenant_id(),
        name: row.name,
        plan: row.plan,
        usage,
    })
}

/// Operator commands over tenants: create, list, change plans. Needs only the database.
#[derive(Debug, Clone)]
pub struct TenantAdmin {
    store: Store,
    tenancy: Tenancy,
}

impl TenantAdmin {
    pub fn new(store: Store, tenancy: Tenancy) -> Self {
        Self { store, tenancy }
    }

    async fn usage_of(&self, row: tenants::TenantRow) -> Result<TenantUsage> {
        usage_of(&self.store, &self.tenancy, row).await
    }

    /// Operator: creates a tenant on `plan` (default: the default plan) with an initial admin
    /// API token, returned once.
    pub async fn create(&self, name: &str, plan: Option<&str>) -> Result<CreatedTenant> {
        if !valid_name(name, 100) {
            return Err(ServiceError::invalid(
                "name",
                format!(
                    "{name:?} is not a tenant name: use 1 to 100 lower-case letters, digits and \
                     '-', '.', '_', '@'"
                ),
            ));
        }
        let plan = plan.unwrap_or(self.tenancy.plans.default_plan());
        self.tenancy.plans.require(plan)?;
        let mut tx = self.store.begin().await?;
        let id = TenantId::new_random();
        tenants::insert(&mut *tx, id, name, plan)
            .await
            .map_err(|e| match e.conflict_constraint() {
                Some("tenants_name_unique") => {
                    ServiceError::Conflict(format!("a tenant named {name:?} already exists"))
                }
                _ => e.into(),
            })?;
        let token = insert_initial_admin_token(&mut tx, id).await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(tenant = %id, name, plan, "tenant created");
        Ok(CreatedTenant {
            id,
            name: name.to_owned(),
            plan: plan.to_owned(),
            admin_token: token,
        })
    }

    /// Operator: every tenant with its plan and usage.
    pub async fn list(&self) -> Result<Vec<TenantSummary>> {
        let rows = tenants::list_all(self.store.pool()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let created_at = row.created_at;
            out.push(TenantSummary {
                usage: self.usage_of(row).await?,
                created_at,
            });
        }
        Ok(out)
    }

    /// Operator: moves a tenant to another plan. What it has already stays; limits apply to
    /// what is added from now on.
    pub async fn set_plan(&self, name: &str, plan: &str) -> Result<TenantUsage> {
        self.tenancy.plans.require(plan)?;
        let row = tenants::set_plan(self.store.pool(), name, plan)
            .await?
            .ok_or_else(|| ServiceError::not_found("tenant", name))?;
        tracing::info!(tenant = %row.id, name, plan, "tenant plan changed");
        self.usage_of(row).await
    }
}

async fn insert_initial_admin_token(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
) -> Result<SecretString> {
    let minted = secret_token::mint(TokenKind::Api);
    api_tokens::insert(
        &mut *tx,
        tenant,
        api_tokens::NewApiToken {
            id: ApiTokenId::from_uuid(minted.id),
            name: INITIAL_ADMIN_TOKEN_NAME,
            role: Role::Admin.as_str(),
            secret_hash: &minted.hash,
            expires_at: None,
        },
    )
    .await?;
    Ok(SecretString::from(secret_token::reveal(&minted)))
}

fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_' | b'@')
        })
        && !name.starts_with('-')
}

/// `base`, or `base-2`, `base-3`, ... whichever is not in `taken`.
fn unique_name(base: &str, taken: &[String]) -> String {
    if !taken.iter().any(|t| t == base) {
        return base.to_owned();
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|candidate| !taken.contains(candidate))
        .expect("some suffix is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_plans_and_defaults_per_mode() {
        let single = Plans::new(TenancyMode::SingleTenant, None, None).unwrap();
        assert_eq!(single.default_plan(), UNLIMITED_PLAN);
        let multi = Plans::new(TenancyMode::MultiTenant, None, None).unwrap();
        assert_eq!(multi.default_plan(), HOBBY_PLAN);
        let hobby = multi.get(HOBBY_PLAN).unwrap();
        assert_eq!(hobby.get(Resource::Machines), Some(10));
        assert_eq!(hobby.get(Resource::Clusters), Some(2));
        assert_eq!(hobby.get(Resource::Users), Some(3));
        assert_eq!(hobby.get(Resource::ServiceAccounts), Some(2));
        assert_eq!(multi.get(UNLIMITED_PLAN), Some(&PlanLimits::default()));
    }

    #[test]
    fn a_plans_file_adds_and_overrides_plans() {
        let file = Plans::parse_file(
            "default-plan = \"team\"\n[plans.team]\nmachines = 100\nservice-accounts = 5\n\
             [plans.hobby]\nmachines = 3\n",
        )
        .unwrap();
        let plans = Plans::new(TenancyMode::MultiTenant, Some(file), None).unwrap();
        assert_eq!(plans.default_plan(), "team");
        let team = plans.get("team").unwrap();
        assert_eq!(team.machines, Some(100));
        assert_eq!(team.service_accounts, Some(5));
        assert_eq!(team.clusters, None);
        assert_eq!(plans.get(HOBBY_PLAN).unwrap().machines, Some(3));
        // A setting wins over the file.
        let file = Plans::parse_file("default-plan = \"team\"\n[plans.team]\n").unwrap();
        let plans = Plans::new(TenancyMode::MultiTenant, Some(file), Some("hobby".into())).unwrap();
        assert_eq!(plans.default_plan(), HOBBY_PLAN);
    }

    #[test]
    fn bad_plans_name_what_is_wrong() {
        let err = Plans::parse_file("[plans.x]\nmachine = 1\n").unwrap_err();
        assert!(err.to_string().contains("machine"), "{err}");
        let err = Plans::new(TenancyMode::SingleTenant, None, Some("gold".into())).unwrap_err();
        assert_eq!(
            err,
            PlansError::UnknownDefault {
                name: "gold".into(),
                known: "hobby, unlimited".into()
            }
        );
        let file = Plans::parse_file("[plans.\"Big Plan\"]\n").unwrap();
        assert_eq!(
            Plans::new(TenancyMode::SingleTenant, Some(file), None).unwrap_err(),
            PlansError::BadName("Big Plan".into())
        );
    }

    #[test]
    fn quotas_admit_below_the_limit_only() {
        let quota = Quota {
            resource: Resource::Machines,
            plan: "hobby".into(),
            limit: Some(10),
        };
        assert!(quota.admit(9).is_ok());
        let err = quota.admit(10).unwrap_err();
        assert!(matches!(err, ServiceError::QuotaExceeded { limit: 10, .. }));
        let message = err.to_string();
        assert!(
            message.contains("hobby") && message.contains("10 machines"),
            "{message}"
        );
        let unlimited = Quota {
            limit: None,
            ..quota
        };
        assert!(unlimited.admit(1_000_000).is_ok());
    }

    #[test]
    fn sign_up_names_are_made_unique() {
        assert_eq!(unique_name("a@x.io", &[]), "a@x.io");
        assert_eq!(
            unique_name("a@x.io", &["a@x.io".into(), "a@x.io-2".into()]),
            "a@x.io-3"
        );
        assert!(valid_name("a@x.io-3", 100));
        assert!(!valid_name("Acme", 100));
        assert!(!valid_name("", 100));
    }
}
