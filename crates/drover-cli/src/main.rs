//! `drover`, the command-line client of Drover.

mod access;
mod clusters;
mod output;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use drover_client::Client;
use drover_model::{CreateJoinToken, JoinToken, Machine};
use output::Format;

#[derive(Parser)]
#[command(
    name = "drover",
    version,
    about = "Manage a Drover control plane for Talos Linux fleets"
)]
struct Cli {
    /// droverd's HTTP address.
    #[arg(
        long,
        global = true,
        env = "DROVER_ENDPOINT",
        default_value = "http://127.0.0.1:8080"
    )]
    endpoint: String,
    /// API token (e.g. the initial admin token from <data-dir>/initial-admin-token).
    #[arg(long, global = true, env = "DROVER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show resources.
    Get {
        #[command(subcommand)]
        what: Get,
    },
    /// Delete resources.
    Delete {
        #[command(subcommand)]
        what: Delete,
    },
    /// Print a machine's kernel log.
    Logs {
        /// Machine id.
        machine: String,
        /// Keep printing new lines as they arrive.
        #[arg(short, long)]
        follow: bool,
        /// Start with the newest N lines (at most 1000).
        #[arg(long, default_value_t = 100)]
        tail: u32,
    },
    /// Inspect and manage clusters, and keep them in git as templates.
    Cluster {
        #[command(subcommand)]
        action: clusters::ClusterCmd,
    },
    /// Manage machine classes (named label selectors).
    #[command(name = "machineclass")]
    MachineClass {
        #[command(subcommand)]
        action: clusters::MachineClassCmd,
    },
    /// Set a machine's user labels: `drover label ID zone=a rack=3` (`key-` removes one).
    Label {
        machine: String,
        #[arg(required = true)]
        labels: Vec<String>,
    },
    /// Manage join tokens, which nodes present to join.
    #[command(name = "jointoken")]
    JoinToken {
        #[command(subcommand)]
        action: JoinTokenCmd,
    },
    /// Manage service accounts and their keys (Admin).
    #[command(name = "serviceaccount")]
    ServiceAccount {
        #[command(subcommand)]
        action: access::ServiceAccountCmd,
    },
    /// Manage users, their roles and invitations (Admin).
    User {
        #[command(subcommand)]
        action: access::UserCmd,
    },
}

#[derive(Subcommand)]
enum Get {
    /// List machines.
    Machines {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Show one machine.
    Machine {
        id: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// List clusters.
    Clusters {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// List machine classes.
    #[command(name = "machineclasses")]
    MachineClasses {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
}

#[derive(Subcommand)]
enum Delete {
    /// Remove a machine from the inventory: its tunnel closes and its logs are dropped.
    Machine { id: String },
}

#[derive(Subcommand)]
enum JoinTokenCmd {
    /// Create a join token and print its secret (shown only now) with the kernel arguments.
    Create {
        /// Lower-case letters, digits and '-'.
        name: String,
        /// Expire after this long, e.g. `24h`, `7days`.
        #[arg(long, conflicts_with = "expires_at")]
        ttl: Option<humantime::Duration>,
        /// Expire at this RFC 3339 time.
        #[arg(long)]
        expires_at: Option<DateTime<Utc>>,
        /// Make it the default token.
        #[arg(long)]
        default: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// List join tokens (secrets are never shown again).
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Revoke a join token by name or id: nodes presenting it are refused.
    Revoke {
        #[arg(value_name = "NAME|ID")]
        join_token: String,
    },
    /// Make a join token the default one.
    MakeDefault {
        #[arg(value_name = "NAME|ID")]
        join_token: String,
    },
    /// Print the kernel arguments (or join-config documents) for a join token secret.
    KernelArgs {
        /// The token secret printed by `create`.
        #[arg(long, env = "DROVER_JOIN_TOKEN", hide_env_values = true)]
        secret: String,
        /// Print the equivalent machine config documents instead.
        #[arg(long)]
        join_config: bool,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli).await {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let client = Client::new(&cli.endpoint, cli.token).context("--endpoint")?;
    match cli.command {
        Command::Get {
            what: Get::Machines { output },
        } => {
            let machines = client.all_machines().await?;
            output::print(
                output,
                &machines,
                MACHINE_HEADERS,
                machines.iter().map(machine_row).collect(),
            )
        }
        Command::Get {
            what: Get::Machine { id, output },
        } => {
            let m = client.get_machine(&id).await?;
            if output == Format::Table {
                print!("{}", describe_machine(&m));
                return Ok(());
            }
            output::print(output, &m, MACHINE_HEADERS, vec![machine_row(&m)])
        }
        Command::Delete {
            what: Delete::Machine { id },
        } => {
            client.delete_machine(&id).await?;
            println!("machine {id} deleted");
            Ok(())
        }
        Command::Logs {
            machine,
            follow,
            tail,
        } => logs(&client, &machine, follow, tail).await,
        Command::JoinToken { action } => join_token(&client, action).await,
        Command::ServiceAccount { action } => access::service_account(&client, action).await,
        Command::User { action } => access::user(&client, action).await,
        Command::Get {
            what: Get::Clusters { output },
        } => {
            let list = client.list_clusters().await?;
            output::print(
                output,
                &list,
                clusters::CLUSTER_HEADERS,
                list.iter().map(clusters::cluster_row).collect(),
            )
        }
        Command::Get {
            what: Get::MachineClasses { output },
        } => {
            let list = client.list_machine_classes().await?;
            output::print(
                output,
                &list,
                clusters::CLASS_HEADERS,
                list.iter().map(clusters::class_row).collect(),
            )
        }
        Command::Cluster { action } => clusters::cluster(&client, action).await,
        Command::MachineClass { action } => clusters::machine_class(&client, action).await,
        Command::Label { machine, labels } => {
            let mut current = client.get_machine(&machine).await?.labels;
            current.retain(|k, _| !k.starts_with(drover_model::labels::automatic::PREFIX));
            for label in labels {
                match label.split_once('=') {
                    Some((k, v)) => {
                        current.insert(k.to_owned(), v.to_owned());
                    }
                    None => match label.strip_suffix('-') {
                        Some(k) => {
                            current.remove(k);
                        }
                        None => {
                            bail!("{label:?}: write key=value to set a label, key- to remove it")
                        }
                    },
                }
            }
            let m = client.set_machine_labels(&machine, &current).await?;
            println!("machine {} labels: {:?}", m.id, m.labels);
            Ok(())
        }
    }
}

const MACHINE_HEADERS: &[&str] = &["ID", "ADDRESS", "TALOS", "CONNECTED", "LAST PROVISIONED"];

fn machine_row(m: &Machine) -> Vec<String> {
    vec![
        m.id.to_string(),
        m.address.clone(),
        m.talos_version.clone(),
        m.connected.to_string(),
        m.last_provisioned_at
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
    ]
}

/// `drover get machine ID`: everything known about one machine, one fact a line.
fn describe_machine(m: &Machine) -> String {
    let time = |t: Option<DateTime<Utc>>| t.map_or("-".to_owned(), |t| t.to_rfc3339());
    let mut rows: Vec<(&str, String)> = vec![
        ("ID", m.id.to_string()),
        ("Address", m.address.clone()),
        ("Connected", m.connected.to_string()),
        ("Last seen", time(m.last_seen_at)),
        ("Talos", m.talos_version.clone()),
        ("Stage", m.stage.clone().unwrap_or_else(|| "-".into())),
        ("Ready", m.ready.to_string()),
    ];
    for u in &m.unmet_conditions {
        rows.push(("Unmet", format!("{}: {}", u.name, u.reason)));
    }
    if let Some(e) = &m.last_error {
        rows.push(("Last error", e.clone()));
    }
    if let Some(f) = &m.facts {
        rows.push(("Hostname", f.hostname.clone()));
        rows.push(("Arch", f.arch.clone()));
        rows.push(("Platform", format!("{} ({})", f.platform, f.platform_mode)));
        for d in &f.disks {
            let system = if d.system_disk { ", system disk" } else { "" };
            rows.push((
                "Disk",
                format!(
                    "{} {} GB {} {}{system}",
                    d.device_name,
                    d.size / 1_000_000_000,
                    d.model,
                    d.serial
                ),
            ));
        }
        rows.push(("Facts read", f.collected_at.to_rfc3339()));
    }
    rows.push(("WireGuard key", m.wireguard_public_key.clone()));
    rows.push(("Over gRPC", m.wireguard_over_grpc.to_string()));
    rows.push(("First joined", m.first_provisioned_at.to_rfc3339()));
    rows.push(("Last joined", m.last_provisioned_at.to_rfc3339()));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    rows.iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}

async fn logs(client: &Client, machine: &str, follow: bool, tail: u32) -> Result<()> {
    let mut page = client
        .machine_logs(machine, None, Some(tail.clamp(1, 1000)))
        .await?;
    loop {
        for line in &page.lines {
            let time = line
                .talos_time
                .clone()
                .unwrap_or_else(|| line.received_at.to_rfc3339());
            let level = line.level.as_deref().unwrap_or("-");
            println!("{time} {level}: {}", line.message);
        }
        if !follow {
            return Ok(());
        }
        if page.lines.is_empty() {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        page = client.machine_logs(machine, Some(page.after), None).await?;
    }
}

const TOKEN_HEADERS: &[&str] = &[
    "NAME",
    "ID",
    "STATE",
    "DEFAULT",
    "USES",
    "EXPIRES",
    "LAST USED",
];

fn token_row(t: &JoinToken) -> Vec<String> {
    let time = |t: Option<DateTime<Utc>>| {
        t.map_or("-".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string())
    };
    vec![
        t.name.clone(),
        t.id.to_string(),
        t.state.as_str().to_owned(),
        if t.is_default { "yes" } else { "" }.to_owned(),
        t.use_count.to_string(),
        time(t.expires_at),
        time(t.last_used_at),
    ]
}

async fn join_token(client: &Client, action: JoinTokenCmd) -> Result<()> {
    match action {
        JoinTokenCmd::Create {
            name,
            ttl,
            expires_at,
            default,
            output,
        } => {
            let expires_at = match (ttl, expires_at) {
                (Some(ttl), _) => Some(
                    Utc::now() + chrono::Duration::from_std(*ttl).context("--ttl is too long")?,
                ),
                (None, at) => at,
            };
            let created = client
                .create_join_token(&CreateJoinToken {
                    name,
                    expires_at,
                    make_default: default,
                })
                .await?;
            if output != Format::Table {
                return output::print(output, &created, &[], vec![]);
            }
            println!(
                "Join token {:?} created (id {}).",
                created.token.name, created.token.id
            );
            println!("Its secret is shown only now:\n\n    {}\n", created.secret);
            println!("Kernel arguments:\n");
            for arg in &created.join.kernel_args {
                println!("    {arg}");
            }
            println!(
                "\nOr, as machine config documents:\n\n{}",
                created.join.join_config
            );
            Ok(())
        }
        JoinTokenCmd::List { output } => {
            let tokens = client.list_join_tokens().await?;
            output::print(
                output,
                &tokens,
                TOKEN_HEADERS,
                tokens.iter().map(token_row).collect(),
            )
        }
        JoinTokenCmd::Revoke { join_token } => {
            let t = client.revoke_join_token(&join_token).await?;
            println!("join token {:?} revoked", t.name);
            Ok(())
        }
        JoinTokenCmd::MakeDefault { join_token } => {
            let t = client.make_default_join_token(&join_token).await?;
            println!("join token {:?} is now the default", t.name);
            Ok(())
        }
        JoinTokenCmd::KernelArgs {
            secret,
            join_config,
        } => {
            if secret.trim().is_empty() {
                bail!("--secret is empty");
            }
            let join = client.join_instructions(&secret).await?;
            if join_config {
                print!("{}", join.join_config);
            } else {
                println!("{}", join.kernel_args.join(" "));
            }
            Ok(())
        }
    }
}
