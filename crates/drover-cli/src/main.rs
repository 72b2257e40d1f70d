//! `drover`, the command-line client of Drover.

mod access;
mod apply;
mod audit;
mod clusters;
mod contexts;
mod kube;
mod login;
mod output;
mod talos;

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
    /// droverd's HTTP address [default: the context's, else http://127.0.0.1:8080].
    #[arg(long, global = true, env = "DROVER_ENDPOINT")]
    endpoint: Option<String>,
    /// PEM CA certificates to trust for droverd's HTTPS address, e.g. the CA droverd prints
    /// when it makes its own certificate (<data-dir>/http-tls/ca.crt) [default: the
    /// context's].
    #[arg(long, global = true, env = "DROVER_CA_FILE", value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// The context of the config file to use [default: its current context].
    #[arg(long, global = true, env = "DROVER_CONTEXT")]
    context: Option<String>,
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
    /// Delete resources, or what a manifest file describes (`-f FILE`).
    #[command(args_conflicts_with_subcommands = true)]
    Delete {
        #[command(subcommand)]
        what: Option<Delete>,
        /// A file of MachineClass documents and a cluster template.
        #[arg(short, long)]
        file: Option<std::path::PathBuf>,
    },
    /// Make the machine classes and the cluster in a file (MachineClass documents and a
    /// cluster template, as kept in git) what it says.
    Apply {
        #[arg(short, long)]
        file: std::path::PathBuf,
        /// Only print what would change.
        #[arg(long)]
        dry_run: bool,
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
    /// Log in through the browser; the session (refreshed as needed) is kept in the context.
    Login {
        /// Print the address to open instead of opening a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Forget the context's login.
    Logout,
    /// Print a shell completion script: `source <(drover completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write a kubeconfig that reaches the cluster through Drover's Kubernetes proxy, with
    /// this CLI as kubectl's credential plugin.
    Kubeconfig {
        cluster: String,
        /// Merge into $KUBECONFIG (or ~/.kube/config) and make it the current context.
        #[arg(long, conflicts_with = "file")]
        merge: bool,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        file: Option<std::path::PathBuf>,
        /// The name of the kubeconfig context [default: drover-<cluster>, or
        /// <cluster>-break-glass].
        #[arg(long)]
        context_name: Option<String>,
        /// Break glass: an admin kubeconfig signed directly by the cluster's Kubernetes CA that
        /// bypasses Drover (Admin, if the server allows it). Taints the cluster until its CAs
        /// are rotated.
        #[arg(long)]
        break_glass: bool,
        /// For automation: a new key of this service account goes into the kubeconfig (no
        /// plugin needed); revoke it any time with `drover serviceaccount key revoke`.
        #[arg(long, conflicts_with = "break_glass")]
        service_account: Option<String>,
        /// With --service-account: the key stops working after this long, e.g. 24h, 30days.
        #[arg(long, requires = "service_account")]
        ttl: Option<humantime::Duration>,
    },
    /// Write a talosconfig that reaches the cluster's nodes through Drover's Talos API proxy,
    /// with a client certificate Drover issues for you (revocable).
    Talosconfig {
        cluster: String,
        /// Merge into $TALOSCONFIG (or ~/.talos/config) and make it the current context.
        #[arg(long, conflicts_with = "file")]
        merge: bool,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        file: Option<std::path::PathBuf>,
        /// How long the certificate is valid, e.g. 8h (the server's default), 30m.
        #[arg(long, conflicts_with = "break_glass")]
        ttl: Option<String>,
        /// Break glass: an `os:admin` talosconfig signed directly by the cluster's OS CA that
        /// bypasses Drover (Admin, if the server allows it). Taints the cluster until its CAs
        /// are rotated.
        #[arg(long)]
        break_glass: bool,
    },
    /// Print an ExecCredential for kubectl (the credential plugin of `drover kubeconfig`).
    #[command(name = "kube-token")]
    KubeToken,
    /// Manage the contexts of the config file (endpoints and credentials).
    Config {
        #[command(subcommand)]
        action: ConfigCmd,
    },
    /// Show one object in detail: `drover describe machine|cluster|upgrade|machineclass|jointoken NAME`.
    Describe {
        #[arg(value_enum)]
        kind: DescribeKind,
        /// Its name (or id).
        name: String,
    },
    /// Show the audit log: every change, login and credential issued (Admin).
    #[command(name = "audit-log")]
    AuditLog {
        /// Keep printing new entries as they are recorded.
        #[arg(short, long)]
        follow: bool,
        /// Only entries since this RFC 3339 time or this long ago (`1h`, `7days`).
        #[arg(long, value_parser = audit::parse_since)]
        since: Option<DateTime<Utc>>,
        /// Only actions starting with this, e.g. `cluster.` or `joinToken.create`.
        #[arg(long)]
        action: Option<String>,
        /// Only this actor, e.g. `user:alice@example.com` or `token:ci`.
        #[arg(long)]
        actor: Option<String>,
    },
    /// Show your tenant: its plan and usage against each limit.
    #[command(alias = "usage")]
    Tenant {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DescribeKind {
    Machine,
    Cluster,
    /// A cluster's current or last upgrade.
    Upgrade,
    #[value(name = "machineclass")]
    MachineClass,
    #[value(name = "jointoken")]
    JoinToken,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// List the contexts; the current one is starred.
    Contexts,
    /// Make a context the current one.
    Use { name: String },
    /// Add or replace a context.
    Add {
        name: String,
        #[arg(long = "server", visible_alias = "url")]
        server: String,
        /// An API or service-account token (else log in with `drover login`).
        #[arg(long = "with-token")]
        with_token: Option<String>,
        /// PEM CA certificates to trust for the server (droverd's self-signed HTTP CA).
        #[arg(long = "ca-file", value_name = "FILE")]
        ca_file: Option<std::path::PathBuf>,
    },
    /// Remove a context.
    Delete { name: String },
}

#[derive(Subcommand)]
enum Get {
    /// List machines.
    Machines {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        /// Keep listing, printing again whenever something changed.
        #[arg(short, long)]
        watch: bool,
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
        /// Keep listing, printing again whenever something changed.
        #[arg(short, long)]
        watch: bool,
    },
    /// List machine classes.
    #[command(name = "machineclasses")]
    MachineClasses {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        /// Keep listing, printing again whenever something changed.
        #[arg(short, long)]
        watch: bool,
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
        /// Keep listing, printing again whenever something changed.
        #[arg(short, long)]
        watch: bool,
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
        if let Some(hint) = hint(&err) {
            eprintln!("hint: {hint}");
        }
        std::process::exit(1);
    }
}

/// What to try next after `err`, when there is something obvious.
fn hint(err: &anyhow::Error) -> Option<&'static str> {
    use drover_client::ClientError;
    match err.downcast_ref::<ClientError>()? {
        ClientError::Transport { .. } => Some(
            "is droverd running there? Pass --endpoint URL, or pick a context: drover config contexts",
        ),
        ClientError::Api { problem } if problem.status == 401 => Some(
            "log in with `drover login`, or pass an API or service-account token with --token / DROVER_TOKEN",
        ),
        ClientError::Api { problem } if problem.status == 403 => Some(
            "your role does not allow this; an Admin can change it (drover user set-role) or grant a role on the cluster (drover cluster grant)",
        ),
        _ => None,
    }
}

/// The completion script for `shell`.
fn completion(shell: clap_complete::Shell) -> String {
    use clap::CommandFactory as _;
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "drover", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A client of `endpoint` that also trusts the CA certificates in `ca_file`.
fn api_client(
    endpoint: &str,
    ca_file: Option<&std::path::Path>,
    token: Option<String>,
) -> Result<Client> {
    let ca = ca_file
        .map(|path| std::fs::read(path).with_context(|| format!("--ca-file {}", path.display())))
        .transpose()?;
    Ok(Client::with_ca(endpoint, token, ca.as_deref())?)
}

/// `path` made absolute, so a context keeps finding it from any directory.
fn absolute_ca_file(path: std::path::PathBuf) -> Result<std::path::PathBuf> {
    std::path::absolute(&path).with_context(|| format!("--ca-file {}", path.display()))
}

/// The endpoint when neither a flag, the environment nor a context names one.
const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";

async fn run(cli: Cli) -> Result<()> {
    let path = contexts::path()?;
    let mut file = contexts::ConfigFile::load(&path)?;
    let chosen = file
        .context(cli.context.as_deref())?
        .map(|(name, c)| (name.to_owned(), c.clone()));
    let endpoint = cli
        .endpoint
        .clone()
        .or_else(|| chosen.as_ref().map(|(_, c)| c.endpoint.clone()))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let ca_file = match cli.ca_file.clone() {
        Some(path) => Some(absolute_ca_file(path)?),
        None => chosen.as_ref().and_then(|(_, c)| c.ca_file.clone()),
    };
    let command = match cli.command {
        Command::Login { no_browser } => {
            let client = api_client(&endpoint, ca_file.as_deref(), None).context("--endpoint")?;
            let credential = login::login(&client, &endpoint, !no_browser).await?;
            let name = cli
                .context
                .or_else(|| chosen.map(|(name, _)| name))
                .unwrap_or_else(|| "default".to_owned());
            let email = credential.email.clone();
            let context = file.contexts.entry(name.clone()).or_default();
            context.endpoint = endpoint;
            context.ca_file = ca_file;
            context.token = None;
            context.login = Some(credential);
            file.current_context = Some(name.clone());
            file.save(&path)?;
            println!(
                "logged in as {email}; context {name:?} saved in {}",
                path.display()
            );
            return Ok(());
        }
        Command::Logout => {
            let Some((name, _)) = chosen else {
                bail!("no context to log out of");
            };
            if let Some(c) = file.contexts.get_mut(&name) {
                c.login = None;
            }
            file.save(&path)?;
            println!("logged out of context {name:?}");
            return Ok(());
        }
        Command::Config { action } => return config(&mut file, &path, action),
        Command::Completion { shell } => {
            print!("{}", completion(shell));
            return Ok(());
        }
        Command::KubeToken => {
            let (token, expires_at) = match (&cli.token, &chosen) {
                (Some(token), _) => (token.clone(), None),
                (None, Some((name, context))) => {
                    let token = context_token(&mut file, &path, name, context)
                        .await?
                        .with_context(|| {
                            format!("context {name:?} has no credential: run drover login")
                        })?;
                    let expires_at = file
                        .contexts
                        .get(name)
                        .and_then(|c| c.login.as_ref())
                        .map(|l| l.expires_at);
                    (token, expires_at)
                }
                (None, None) => bail!("no credential: run drover login, or pass --token"),
            };
            println!("{}", kube::exec_credential(&token, expires_at));
            return Ok(());
        }
        command => command,
    };
    let explicit_token = cli.token.clone();
    let chosen_name = chosen.as_ref().map(|(name, _)| name.clone());
    let token = match (cli.token, &chosen) {
        (Some(token), _) => Some(token),
        (None, Some((name, context))) => context_token(&mut file, &path, name, context).await?,
        (None, None) => None,
    };
    let client = api_client(&endpoint, ca_file.as_deref(), token).context("--endpoint")?;
    match command {
        Command::Get {
            what: Get::Machines { output, watch },
        } => {
            output::watch_list(
                watch,
                output,
                MACHINE_HEADERS,
                || client.all_machines(),
                |list| list.iter().map(machine_row).collect(),
            )
            .await
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
        Command::Describe { kind, name } => {
            print!("{}", describe(&client, kind, &name).await?);
            Ok(())
        }
        Command::Apply { file, dry_run } => apply::apply(&client, &file, dry_run).await,
        Command::Delete {
            what: None,
            file: Some(file),
        } => apply::delete(&client, &file).await,
        Command::Delete {
            what: None,
            file: None,
        } => bail!("say what to delete: drover delete machine ID, or drover delete -f FILE"),
        Command::Delete {
            what: Some(Delete::Machine { id }),
            ..
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
        Command::Kubeconfig {
            cluster,
            merge,
            file: out,
            context_name,
            break_glass: true,
            ..
        } => {
            let issued = client
                .break_glass(&cluster, drover_model::BreakGlassKind::Kubeconfig)
                .await?;
            break_glass_warning(&issued);
            let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&issued.config)?;
            if let Some(name) = &context_name {
                kube::rename_context(&mut config, name);
            }
            let name = context_name.unwrap_or(issued.context);
            if merge {
                let target = kube::default_path()?;
                kube::merge_into(&target, &config)?;
                println!(
                    "context {name:?} added to {} and made current",
                    target.display()
                );
            } else if let Some(out) = out {
                kube::write_private(&out, &serde_yaml_ng::to_string(&config)?)?;
                println!(
                    "break-glass kubeconfig for {cluster} written to {}",
                    out.display()
                );
            } else {
                print!("{}", serde_yaml_ng::to_string(&config)?);
            }
            Ok(())
        }
        Command::Talosconfig {
            cluster,
            merge,
            file: out,
            break_glass: true,
            ..
        } => {
            let issued = client
                .break_glass(&cluster, drover_model::BreakGlassKind::Talosconfig)
                .await?;
            break_glass_warning(&issued);
            if merge {
                let target = talos::default_path()?;
                talos::merge_into(&target, &issued.config)?;
                println!(
                    "context {:?} added to {} and made current",
                    issued.context,
                    target.display()
                );
            } else if let Some(out) = out {
                kube::write_private(&out, &issued.config)?;
                println!(
                    "break-glass talosconfig for {cluster} written to {}",
                    out.display()
                );
            } else {
                print!("{}", issued.config);
            }
            Ok(())
        }
        Command::Kubeconfig {
            cluster,
            merge,
            file: out,
            context_name,
            break_glass: false,
            service_account,
            ttl,
        } => {
            let endpoint = client.kube_proxy_endpoint(&cluster).await?;
            let plugin = kube::Plugin {
                config_file: path.clone(),
                context: chosen_name,
                token: explicit_token,
            };
            let name = context_name.unwrap_or_else(|| format!("drover-{cluster}"));
            let mut config = kube::kubeconfig(&endpoint, &name, &plugin);
            if let Some(account) = service_account {
                let expires_at = ttl
                    .map(|d| chrono::Duration::from_std(d.into()).map(|d| Utc::now() + d))
                    .transpose()?;
                let issued = client
                    .create_service_account_key(&account, expires_at)
                    .await?;
                kube::use_static_token(&mut config, &issued.secret);
                eprintln!(
                    "the kubeconfig holds key {} of service account {account}{}; revoke it with: drover serviceaccount key revoke {account} {}",
                    issued.key.id,
                    expires_at
                        .map(|at| format!(" (valid until {})", at.to_rfc3339()))
                        .unwrap_or_default(),
                    issued.key.id
                );
            }
            if merge {
                let target = kube::default_path()?;
                kube::merge_into(&target, &config)?;
                println!(
                    "context {name:?} added to {} and made current",
                    target.display()
                );
            } else if let Some(out) = out {
                kube::write_private(&out, &serde_yaml_ng::to_string(&config)?)?;
                println!("kubeconfig for {cluster} written to {}", out.display());
            } else {
                print!("{}", serde_yaml_ng::to_string(&config)?);
            }
            Ok(())
        }
        Command::Talosconfig {
            cluster,
            merge,
            file: out,
            ttl,
            break_glass: false,
        } => {
            let issued = client.issue_talosconfig(&cluster, ttl.as_deref()).await?;
            let expires = issued.expires_at.to_rfc3339();
            if merge {
                let target = talos::default_path()?;
                talos::merge_into(&target, &issued.talosconfig)?;
                println!(
                    "context {:?} added to {} and made current (certificate {}, valid until {expires})",
                    issued.context,
                    target.display(),
                    issued.serial
                );
            } else if let Some(out) = out {
                kube::write_private(&out, &issued.talosconfig)?;
                println!(
                    "talosconfig for {cluster} written to {} (certificate {}, valid until {expires})",
                    out.display(),
                    issued.serial
                );
            } else {
                print!("{}", issued.talosconfig);
            }
            Ok(())
        }
        Command::Login { .. }
        | Command::Logout
        | Command::Config { .. }
        | Command::KubeToken
        | Command::Completion { .. } => {
            unreachable!("handled before a client is made")
        }
        Command::AuditLog {
            follow,
            since,
            action,
            actor,
        } => {
            let filter = drover_client::AuditFilter {
                since,
                action,
                actor,
            };
            audit::print(&client, filter, follow).await
        }
        Command::Tenant { output } => {
            let tenant = client.tenant().await?;
            if output == Format::Table {
                print!("{}", describe_tenant(&tenant));
                return Ok(());
            }
            output::print(output, &tenant, &[], Vec::new())
        }
        Command::ServiceAccount { action } => access::service_account(&client, action).await,
        Command::User { action } => access::user(&client, action).await,
        Command::Get {
            what: Get::Clusters { output, watch },
        } => {
            output::watch_list(
                watch,
                output,
                clusters::CLUSTER_HEADERS,
                || client.list_clusters(),
                |list| list.iter().map(clusters::cluster_row).collect(),
            )
            .await
        }
        Command::Get {
            what: Get::MachineClasses { output, watch },
        } => {
            output::watch_list(
                watch,
                output,
                clusters::CLASS_HEADERS,
                || client.list_machine_classes(),
                |list| list.iter().map(clusters::class_row).collect(),
            )
            .await
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

/// `drover describe KIND NAME`.
async fn describe(client: &Client, kind: DescribeKind, name: &str) -> Result<String> {
    let fields = |rows: Vec<(&str, String)>| {
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
        rows.iter()
            .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
            .collect::<String>()
    };
    let when = |t: Option<DateTime<Utc>>| t.map_or("-".to_owned(), |t| t.to_rfc3339());
    Ok(match kind {
        DescribeKind::Machine => describe_machine(&client.get_machine(name).await?),
        DescribeKind::Cluster => clusters::describe(&client.get_cluster(name).await?),
        DescribeKind::Upgrade => clusters::describe_upgrade(&client.get_upgrade(name).await?),
        DescribeKind::MachineClass => {
            let class = (client.list_machine_classes().await?)
                .into_iter()
                .find(|c| c.name == name)
                .with_context(|| format!("machine class {name:?} not found"))?;
            fields(vec![
                ("Name", class.name),
                ("Selectors", class.selectors.join("  |  ")),
                ("Created", class.created_at.to_rfc3339()),
                ("Updated", class.updated_at.to_rfc3339()),
            ])
        }
        DescribeKind::JoinToken => {
            let token = (client.list_join_tokens().await?)
                .into_iter()
                .find(|t| t.name == name || t.id.to_string() == name)
                .with_context(|| format!("join token {name:?} not found"))?;
            fields(vec![
                ("Name", token.name),
                ("Id", token.id.to_string()),
                ("State", drover_model::variant_name(token.state)),
                ("Default", token.is_default.to_string()),
                ("Uses", token.use_count.to_string()),
                ("Last used", when(token.last_used_at)),
                ("Expires", when(token.expires_at)),
                ("Revoked", when(token.revoked_at)),
                ("Created", token.created_at.to_rfc3339()),
            ])
        }
    })
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

fn config(
    file: &mut contexts::ConfigFile,
    path: &std::path::Path,
    action: ConfigCmd,
) -> Result<()> {
    match action {
        ConfigCmd::Contexts => {
            print!("{}", file.listing());
            return Ok(());
        }
        ConfigCmd::Use { name } => file.use_context(&name)?,
        ConfigCmd::Add {
            name,
            server,
            with_token,
            ca_file,
        } => {
            url::Url::parse(&server).with_context(|| format!("--server {server:?}"))?;
            let ca_file = ca_file.map(absolute_ca_file).transpose()?;
            file.contexts.insert(
                name.clone(),
                contexts::Context {
                    endpoint: server,
                    ca_file,
                    token: with_token,
                    login: None,
                },
            );
            file.current_context.get_or_insert(name);
        }
        ConfigCmd::Delete { name } => file.delete(&name)?,
    }
    file.save(path)
}

/// The context's bearer token: its API token, or its login's session, refreshed (and saved)
/// when it expires within a minute.
async fn context_token(
    file: &mut contexts::ConfigFile,
    path: &std::path::Path,
    name: &str,
    context: &contexts::Context,
) -> Result<Option<String>> {
    if let Some(token) = &context.token {
        return Ok(Some(token.clone()));
    }
    let Some(login) = &context.login else {
        return Ok(None);
    };
    if login.expires_at > Utc::now() + chrono::Duration::minutes(1) {
        return Ok(Some(login.token.clone()));
    }
    if login.refresh_expires_at <= Utc::now() {
        bail!("the login of context {name:?} has expired: run drover login again");
    }
    let client = api_client(&context.endpoint, context.ca_file.as_deref(), None)
        .context("the context's endpoint")?;
    let fresh = client
        .cli_token_for_refresh(&login.refresh_token)
        .await
        .context("renewing the login (run drover login again if it keeps failing)")?;
    let token = fresh.token.clone();
    if let Some(c) = file.contexts.get_mut(name) {
        c.login = Some(fresh);
    }
    file.save(path)?;
    Ok(Some(token))
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
        JoinTokenCmd::List { output, watch } => {
            output::watch_list(
                watch,
                output,
                TOKEN_HEADERS,
                || client.list_join_tokens(),
                |list| list.iter().map(token_row).collect(),
            )
            .await
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

/// `drover tenant`: name and plan, then one line per limited resource.
fn describe_tenant(t: &drover_model::TenantUsage) -> String {
    let mut out = format!("Tenant: {}\nPlan:   {}\n\n", t.name, t.plan);
    let rows: Vec<Vec<String>> = t
        .usage
        .iter()
        .map(|u| {
            vec![
                u.resource.to_string(),
                u.used.to_string(),
                u.limit
                    .map_or_else(|| "unlimited".to_owned(), |l| l.to_string()),
            ]
        })
        .collect();
    out.push_str(&output::table(&["RESOURCE", "USED", "LIMIT"], &rows));
    out
}

/// The loud warning every break-glass credential comes with, on standard error.
fn break_glass_warning(issued: &drover_model::BreakGlassCredential) {
    eprintln!(
        "WARNING: BREAK-GLASS {kind} for cluster {cluster}.\n\
         WARNING: it bypasses Drover: no proxy sees its requests, no audit records them, and Drover \
         cannot revoke it (certificate {serial}, valid until {expires}).\n\
         WARNING: it reaches {endpoints} directly, so it works only where the nodes are reachable.\n\
         WARNING: cluster {cluster} is now TAINTED (since {since}, by {by}) until its CAs are rotated.\n\
         WARNING: keep the file safe and delete it when done.",
        kind = issued.kind.as_str().to_uppercase(),
        cluster = issued.cluster,
        serial = issued.serial,
        expires = issued.expires_at.to_rfc3339(),
        endpoints = issued.endpoints.join(", "),
        since = issued.taint.since.to_rfc3339(),
        by = issued.taint.by,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_scripts_know_the_commands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let script = completion(shell);
            for word in ["jointoken", "kubeconfig", "audit-log", "serviceaccount"] {
                assert!(script.contains(word), "{shell}: {word} missing");
            }
        }
    }

    #[test]
    fn failures_come_with_a_hint_where_one_helps() {
        let problem = |status| {
            anyhow::Error::from(drover_client::ClientError::Api {
                problem: drover_client::Problem {
                    status,
                    title: String::new(),
                    detail: String::new(),
                    field: None,
                },
            })
        };
        assert!(hint(&problem(401)).unwrap().contains("drover login"));
        assert!(hint(&problem(403)).unwrap().contains("grant"));
        assert_eq!(hint(&problem(404)), None);
        assert_eq!(hint(&anyhow::anyhow!("other")), None);
    }
}
