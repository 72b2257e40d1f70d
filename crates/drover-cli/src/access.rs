//! `drover serviceaccount`, `drover user`, and `drover cluster grant|grants|revoke`.

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use drover_client::Client;
use drover_model::{
    ClusterGrant, CreateServiceAccount, GrantClusterRole, GrantTarget, InviteUser,
    IssuedServiceAccountKey, Role, ServiceAccount, User,
};

use crate::output::{self, Format};

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: drover_model::UnknownRole| e.to_string())
}

#[derive(Subcommand)]
pub enum ServiceAccountCmd {
    /// Create a service account and print its first key (shown only now).
    Create {
        /// Lower-case letters, digits and '-'.
        name: String,
        /// reader, operator or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Expire after this long, e.g. `90days`; without it the account does not expire.
        #[arg(long)]
        expires_in: Option<humantime::Duration>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// List service accounts and their keys (secrets are never shown again).
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        /// Keep listing, printing again whenever something changed.
        #[arg(short, long)]
        watch: bool,
    },
    /// Revoke a service account: it and all its keys are refused from the next request on.
    Revoke { name: String },
    /// Issue or revoke single keys of a service account (to rotate without downtime).
    Key {
        #[command(subcommand)]
        action: KeyCmd,
    },
}

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Issue another key and print it (shown only now).
    Create {
        name: String,
        /// The key stops working after this long, e.g. `24h`; without it, with its account.
        #[arg(long)]
        expires_in: Option<humantime::Duration>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Revoke one key by its id (from `serviceaccount list`).
    Revoke { name: String, key: String },
}

#[derive(Subcommand)]
pub enum UserCmd {
    /// List the tenant's users, invited ones included.
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        /// Keep listing, printing again whenever something changed.
        #[arg(short, long)]
        watch: bool,
    },
    /// Invite a person by e-mail; they become a user with this role at their first login.
    Invite {
        email: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Change a user's role.
    SetRole {
        email: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Remove a user (their sessions end at once).
    Remove { email: String },
    /// List pending invitations.
    Invitations {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        /// Keep listing, printing again whenever something changed.
        #[arg(short, long)]
        watch: bool,
    },
    /// Cancel a pending invitation.
    CancelInvitation { email: String },
}

/// Exactly one grantee.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Grantee {
    /// A user, by e-mail.
    #[arg(long)]
    user: Option<String>,
    /// A service account, by name.
    #[arg(long)]
    service_account: Option<String>,
}

impl Grantee {
    fn target(self) -> GrantTarget {
        GrantTarget {
            user: self.user,
            service_account: self.service_account,
        }
    }
}

#[derive(Subcommand)]
pub enum GrantCmd {
    /// Grant a user or service account a role on one cluster, on top of its tenant role.
    Grant {
        cluster: String,
        #[command(flatten)]
        to: Grantee,
        /// reader, operator or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// List a cluster's grants.
    Grants {
        cluster: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        /// Keep listing, printing again whenever something changed.
        #[arg(short, long)]
        watch: bool,
    },
    /// Revoke a grant on a cluster.
    Revoke {
        cluster: String,
        #[command(flatten)]
        to: Grantee,
    },
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or("-".to_owned(), |t| {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    })
}

const ACCOUNT_HEADERS: &[&str] = &[
    "NAME",
    "ROLE",
    "EXPIRES",
    "KEY",
    "CREATED",
    "LAST USED",
    "REVOKED",
];

fn account_rows(a: &ServiceAccount) -> Vec<Vec<String>> {
    let expires = if a.expired {
        format!("{} (expired)", time(a.expires_at))
    } else {
        time(a.expires_at)
    };
    if a.keys.is_empty() {
        return vec![vec![
            a.name.clone(),
            a.role.to_string(),
            expires,
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ]];
    }
    a.keys
        .iter()
        .map(|k| {
            vec![
                a.name.clone(),
                a.role.to_string(),
                expires.clone(),
                k.id.to_string(),
                time(Some(k.created_at)),
                time(k.last_used_at),
                time(k.revoked_at),
            ]
        })
        .collect()
}

fn print_issued(output: Format, issued: &IssuedServiceAccountKey) -> Result<()> {
    if output != Format::Table {
        return output::print(output, issued, &[], vec![]);
    }
    let a = &issued.service_account;
    println!(
        "Service account {} ({}), key {}",
        a.name, a.role, issued.key.id
    );
    if let Some(e) = a.expires_at {
        println!("Expires: {}", e.to_rfc3339());
    }
    println!("Key (shown only now; send it as `Authorization: Bearer <key>` or DROVER_TOKEN):");
    println!("    {}", issued.secret);
    Ok(())
}

pub async fn service_account(client: &Client, action: ServiceAccountCmd) -> Result<()> {
    match action {
        ServiceAccountCmd::Create {
            name,
            role,
            expires_in,
            output,
        } => {
            let expires_at = expires_in
                .map(|d| chrono::Duration::from_std(d.into()).map(|d| Utc::now() + d))
                .transpose()?;
            let issued = client
                .create_service_account(&CreateServiceAccount {
                    name,
                    role,
                    expires_at,
                })
                .await?;
            print_issued(output, &issued)
        }
        ServiceAccountCmd::List { output, watch } => {
            output::watch_list(
                watch,
                output,
                ACCOUNT_HEADERS,
                || client.list_service_accounts(),
                |list| list.iter().flat_map(account_rows).collect(),
            )
            .await
        }
        ServiceAccountCmd::Revoke { name } => {
            client.revoke_service_account(&name).await?;
            println!("service account {name} revoked");
            Ok(())
        }
        ServiceAccountCmd::Key {
            action:
                KeyCmd::Create {
                    name,
                    expires_in,
                    output,
                },
        } => {
            let expires_at = expires_in
                .map(|d| chrono::Duration::from_std(d.into()).map(|d| Utc::now() + d))
                .transpose()?;
            let issued = client.create_service_account_key(&name, expires_at).await?;
            print_issued(output, &issued)
        }
        ServiceAccountCmd::Key {
            action: KeyCmd::Revoke { name, key },
        } => {
            client.revoke_service_account_key(&name, &key).await?;
            println!("key {key} of service account {name} revoked");
            Ok(())
        }
    }
}

const USER_HEADERS: &[&str] = &["EMAIL", "NAME", "ROLE", "STATUS", "LAST LOGIN"];

fn user_row(u: &User) -> Vec<String> {
    vec![
        u.email.clone(),
        u.name.clone(),
        u.role.to_string(),
        drover_model::variant_name(u.status),
        time(u.last_login_at),
    ]
}

pub async fn user(client: &Client, action: UserCmd) -> Result<()> {
    match action {
        UserCmd::List { output, watch } => {
            output::watch_list(
                watch,
                output,
                USER_HEADERS,
                || client.list_users(),
                |list| list.iter().map(user_row).collect(),
            )
            .await
        }
        UserCmd::Invitations { output, watch } => {
            output::watch_list(
                watch,
                output,
                USER_HEADERS,
                || client.list_invitations(),
                |list| list.iter().map(user_row).collect(),
            )
            .await
        }
        UserCmd::Invite { email, role } => {
            let u = client.invite_user(&InviteUser { email, role }).await?;
            println!(
                "invited {} as {}: they become a user at their first login",
                u.email, u.role
            );
            Ok(())
        }
        UserCmd::SetRole { email, role } => {
            let u = client.set_user_role(&email, role).await?;
            println!("{} is now {}", u.email, u.role);
            Ok(())
        }
        UserCmd::Remove { email } => {
            let u = client.remove_user(&email).await?;
            println!("user {} removed", u.email);
            Ok(())
        }
        UserCmd::CancelInvitation { email } => {
            let u = client.cancel_invitation(&email).await?;
            println!("invitation of {} cancelled", u.email);
            Ok(())
        }
    }
}

const GRANT_HEADERS: &[&str] = &["CLUSTER", "USER", "SERVICE ACCOUNT", "ROLE", "GRANTED"];

fn grant_row(g: &ClusterGrant) -> Vec<String> {
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    vec![
        g.cluster.clone(),
        dash(&g.user),
        dash(&g.service_account),
        g.role.to_string(),
        time(Some(g.created_at)),
    ]
}

pub async fn grant(client: &Client, action: GrantCmd) -> Result<()> {
    match action {
        GrantCmd::Grant { cluster, to, role } => {
            let to = to.target();
            let g = client
                .grant_cluster_role(
                    &cluster,
                    &GrantClusterRole {
                        user: to.user,
                        service_account: to.service_account,
                        role,
                    },
                )
                .await?;
            let who = g.user.or(g.service_account).unwrap_or_default();
            println!("{who} is {} on cluster {}", g.role, g.cluster);
            Ok(())
        }
        GrantCmd::Grants {
            cluster,
            output,
            watch,
        } => {
            output::watch_list(
                watch,
                output,
                GRANT_HEADERS,
                || client.list_cluster_grants(&cluster),
                |list| list.iter().map(grant_row).collect(),
            )
            .await
        }
        GrantCmd::Revoke { cluster, to } => {
            let to = to.target();
            client.revoke_cluster_grant(&cluster, &to).await?;
            let who = to.user.or(to.service_account).unwrap_or_default();
            println!("grant of {who} on cluster {cluster} revoked");
            Ok(())
        }
    }
}
