//! `droverd tenant create|list|set-plan`: the operator's tenant commands, straight on the
//! database (a running droverd's private PostgreSQL, or one started for the command).

use std::fmt::Write as _;

use anyhow::{Context, Result};
use drover_model::TenantUsage;
use drover_service::{TenantAdmin, TenantSummary};
use secrecy::ExposeSecret;

use crate::settings::{Settings, TenantCommand};

/// Runs `command` and returns what to print.
pub async fn run(settings: &Settings, command: &TenantCommand) -> Result<String> {
    let (store, postgres) = crate::keys::connect(settings).await?;
    let admin = TenantAdmin::new(store.clone(), settings.tenancy.clone());
    let outcome = execute(&admin, command).await;
    store.close().await;
    if let Some(pg) = postgres {
        pg.stop().await.context("stopping the private PostgreSQL")?;
    }
    outcome
}

/// The command on `admin`, formatted for a person.
pub async fn execute(admin: &TenantAdmin, command: &TenantCommand) -> Result<String> {
    match command {
        TenantCommand::Create { name, plan } => {
            let created = admin
                .create(name, plan.as_deref())
                .await
                .with_context(|| format!("cannot create tenant {name:?}"))?;
            Ok(format!(
                "Tenant {} created on plan {} (id {}).\n\nInitial admin API token (shown once):\n\n    {}\n",
                created.name,
                created.plan,
                created.id,
                created.admin_token.expose_secret()
            ))
        }
        TenantCommand::List => {
            let tenants = admin.list().await.context("cannot list the tenants")?;
            Ok(format_list(&tenants))
        }
        TenantCommand::SetPlan { name, plan } => {
            let usage = admin
                .set_plan(name, plan)
                .await
                .with_context(|| format!("cannot move tenant {name:?} to plan {plan:?}"))?;
            Ok(format!(
                "Tenant {} is now on plan {}: {}\n",
                usage.name,
                usage.plan,
                usage_line(&usage)
            ))
        }
    }
}

fn format_list(tenants: &[TenantSummary]) -> String {
    let mut out = format!("{:<32} {:<12} USAGE\n", "NAME", "PLAN");
    for t in tenants {
        let _ = writeln!(
            out,
            "{:<32} {:<12} {}",
            t.usage.name,
            t.usage.plan,
            usage_line(&t.usage)
        );
    }
    out
}

/// `machines 3/10, clusters 1/2, users 1/3, service-accounts 0/2` (`/-` when unlimited).
pub fn usage_line(usage: &TenantUsage) -> String {
    usage
        .usage
        .iter()
        .map(|u| match u.limit {
            Some(limit) => format!("{} {}/{limit}", u.resource, u.used),
            None => format!("{} {}/-", u.resource, u.used),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
