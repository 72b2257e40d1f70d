//! `drover cluster ...`, `drover get clusters|machineclasses`, `drover machineclass ...`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use drover_client::Client;
use drover_model::{
    Cluster, ClusterSpec, ConfigPatch, MachineClass, MachineClassSpec, StartUpgrade, UpgradeKind,
    UpgradeState,
};

use crate::output::{self, Format};

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Show a cluster's phase, machines and etcd.
    Status {
        name: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        /// Print the status again whenever it changes (Ctrl-C stops).
        #[arg(short, long)]
        watch: bool,
    },
    /// Delete a cluster: every machine is reset and returns to the pool.
    Delete { name: String },
    /// Show the config Drover renders for a machine of the cluster (secrets redacted), and
    /// its diff against what the machine runs.
    Config {
        name: String,
        machine: String,
        /// Print only the diff.
        #[arg(long)]
        diff: bool,
    },
    /// Roll a Talos upgrade through the cluster, node by node, and follow it.
    Upgrade {
        #[command(subcommand)]
        action: UpgradeCmd,
    },
    /// Print the cluster's events (upgrade started, node done, failed, finished, ...).
    Events {
        name: String,
        /// Keep printing new events.
        #[arg(short, long)]
        follow: bool,
    },
    /// Keep clusters in git: one YAML file of Cluster, ControlPlane, Workers and Machine
    /// documents.
    Template {
        #[command(subcommand)]
        action: TemplateCmd,
    },
    #[command(flatten)]
    Access(crate::access::GrantCmd),
}

#[derive(Subcommand)]
pub enum TemplateCmd {
    /// Check a template (documents, fields, versions, patches) without changing anything.
    Validate {
        #[arg(short, long)]
        file: PathBuf,
    },
    /// Show what `sync` would change.
    Diff {
        #[arg(short, long)]
        file: PathBuf,
    },
    /// Create the cluster or bring it to the template, printing each change.
    Sync {
        #[arg(short, long)]
        file: PathBuf,
        /// Only print what would change.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the status of the template's cluster.
    Status {
        #[arg(short, long)]
        file: PathBuf,
    },
    /// Write a live cluster as a template (to stdout, or to --file).
    Export {
        name: String,
        #[arg(short, long)]
        file: Option<PathBuf>,
    },
    /// Delete the template's cluster.
    Delete {
        #[arg(short, long)]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum UpgradeCmd {
    /// Upgrade Talos to VERSION: control planes first, one at a time and only with etcd quorum
    /// kept, then worker sets by their maxParallelism. `--dry-run` prints the per-node plan.
    Talos {
        name: String,
        version: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Upgrade Kubernetes to VERSION (one minor at a time): on each control plane the API
    /// server, controller manager and scheduler, then every kubelet, through the machine
    /// configs without reboots. `--dry-run` prints the per-node plan.
    Kubernetes {
        name: String,
        version: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the cluster's upgrade: state, per-node progress, the plan of what is left.
    Status {
        name: String,
        /// Print the progress again whenever it changes, until the upgrade ends.
        #[arg(short, long)]
        watch: bool,
    },
    /// Pause the upgrade: no node starts; steps under way finish.
    Pause { name: String },
    /// Resume a paused upgrade.
    Resume { name: String },
    /// Cancel the upgrade (nodes already upgraded stay upgraded; roll back with `talos`).
    Cancel { name: String },
}

#[derive(Subcommand)]
pub enum MachineClassCmd {
    /// Create or replace a machine class; a machine belongs to it when it matches any selector,
    /// e.g. `drover.dev/arch=amd64, drover.dev/cores>=4`.
    Set {
        name: String,
        #[arg(required = true)]
        selectors: Vec<String>,
    },
    /// Delete a machine class no cluster uses.
    Delete { name: String },
}

pub async fn cluster(client: &Client, action: ClusterCmd) -> Result<()> {
    match action {
        ClusterCmd::Access(action) => crate::access::grant(client, action).await,
        ClusterCmd::Status {
            name,
            output,
            watch,
        } => {
            let mut last = String::new();
            loop {
                let cluster = client.get_cluster(&name).await?;
                let text = match output {
                    Format::Table => {
                        let mut text = describe(&cluster);
                        // A rollout under way: its per-node progress too.
                        if let Ok(upgrade) = client.get_upgrade(&name).await
                            && upgrade.state.is_active()
                        {
                            text.push('\n');
                            text.push_str(&describe_upgrade(&upgrade));
                        }
                        text
                    }
                    Format::Json => serde_json::to_string_pretty(&cluster)? + "\n",
                    Format::Yaml => serde_yaml_ng::to_string(&cluster)?,
                };
                if text != last {
                    print!("{}{text}", if last.is_empty() { "" } else { "\n" });
                    last = text;
                }
                if !watch {
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
        ClusterCmd::Delete { name } => {
            client.delete_cluster(&name).await?;
            println!(
                "cluster {name} is being deleted: its machines are reset and return to the pool"
            );
            Ok(())
        }
        ClusterCmd::Config {
            name,
            machine,
            diff,
        } => {
            let view = client.machine_config(&name, &machine).await?;
            if diff {
                if view.up_to_date {
                    println!("machine {machine} runs its current config");
                } else {
                    print!("{}", view.diff);
                }
            } else {
                print!("{}", view.redacted);
            }
            Ok(())
        }
        ClusterCmd::Template { action } => template(client, action).await,
        ClusterCmd::Upgrade { action } => upgrade(client, action).await,
        ClusterCmd::Events { name, follow } => {
            let mut after = 0;
            loop {
                for e in client.cluster_events(&name, after).await? {
                    println!("{} {:<20} {}", e.at.to_rfc3339(), e.kind, e.message);
                    after = e.seq;
                }
                if !follow {
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

async fn template(client: &Client, action: TemplateCmd) -> Result<()> {
    match action {
        TemplateCmd::Validate { file } => {
            let spec = load(&file)?;
            println!(
                "{}: valid (cluster {}, {} worker set(s))",
                file.display(),
                spec.name,
                spec.workers.len()
            );
            Ok(())
        }
        TemplateCmd::Diff { file } => {
            let spec = load(&file)?;
            print_changes(&client.sync_cluster(&spec, true).await?.changes, &spec.name);
            Ok(())
        }
        TemplateCmd::Sync { file, dry_run } => {
            let spec = load(&file)?;
            let planned = client.sync_cluster(&spec, true).await?;
            print_changes(&planned.changes, &spec.name);
            if !dry_run && !planned.changes.is_empty() {
                client.sync_cluster(&spec, false).await?;
                println!("cluster {} synced", spec.name);
            }
            Ok(())
        }
        TemplateCmd::Status { file } => {
            let spec = load(&file)?;
            print!("{}", describe(&client.get_cluster(&spec.name).await?));
            Ok(())
        }
        TemplateCmd::Export { name, file } => {
            let cluster = client.get_cluster(&name).await?;
            let text = drover_template::export(&cluster.spec);
            match file {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display())),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
        TemplateCmd::Delete { file } => {
            let spec = load(&file)?;
            client.delete_cluster(&spec.name).await?;
            println!("cluster {} is being deleted", spec.name);
            Ok(())
        }
    }
}

/// An upgrade's state, per-node progress and, while it runs, the plan of what is left.
pub fn describe_upgrade(u: &drover_model::Upgrade) -> String {
    let mut out = format!(
        "{} upgrade of {}: {} -> {}: {}\n",
        match u.kind {
            UpgradeKind::Talos => "Talos",
            UpgradeKind::Kubernetes => "Kubernetes",
        },
        u.cluster,
        u.from_version,
        u.to_version,
        u.state.as_str()
    );
    if let Some(e) = &u.error {
        out.push_str(&format!("error: {e}\n"));
    }
    let rows: Vec<Vec<String>> = u
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.machine.to_string(),
                n.step.clone(),
                n.state.clone(),
                n.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&output::table(
            &["MACHINE", "STEP", "STATE", "ERROR"],
            &rows,
        ));
    }
    if u.state.is_active() {
        out.push_str(&format!("\n{}", u.plan));
    }
    out
}

async fn start(
    client: &Client,
    name: &str,
    kind: UpgradeKind,
    version: String,
    dry_run: bool,
) -> Result<()> {
    let u = client
        .start_upgrade(
            name,
            &StartUpgrade {
                kind,
                version,
                dry_run,
            },
        )
        .await?;
    if dry_run {
        print!("{}", u.plan);
    } else {
        print!("{}", describe_upgrade(&u));
    }
    Ok(())
}

async fn upgrade(client: &Client, action: UpgradeCmd) -> Result<()> {
    let (name, state) = match action {
        UpgradeCmd::Talos {
            name,
            version,
            dry_run,
        } => return start(client, &name, UpgradeKind::Talos, version, dry_run).await,
        UpgradeCmd::Kubernetes {
            name,
            version,
            dry_run,
        } => return start(client, &name, UpgradeKind::Kubernetes, version, dry_run).await,
        UpgradeCmd::Status { name, watch } => {
            let mut last = String::new();
            loop {
                let upgrade = client.get_upgrade(&name).await?;
                let text = describe_upgrade(&upgrade);
                if text != last {
                    print!("{}{text}", if last.is_empty() { "" } else { "\n" });
                    last = text;
                }
                if !watch || !upgrade.state.is_active() {
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
        UpgradeCmd::Pause { name } => (name, UpgradeState::Paused),
        UpgradeCmd::Resume { name } => (name, UpgradeState::Running),
        UpgradeCmd::Cancel { name } => (name, UpgradeState::Cancelled),
    };
    print!(
        "{}",
        describe_upgrade(&client.set_upgrade_state(&name, state).await?)
    );
    Ok(())
}

pub fn print_changes(changes: &[String], name: &str) {
    if changes.is_empty() {
        println!("cluster {name} matches the template: nothing to change");
    }
    for change in changes {
        println!("  {change}");
    }
}

/// Reads and checks a template; `file:` patches are read relative to its directory.
pub fn load(file: &Path) -> Result<ClusterSpec> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    parse_template(file, &text)
}

/// Checks the template `text` read from `file` (`file:` patches are read relative to it).
pub fn parse_template(file: &Path, text: &str) -> Result<ClusterSpec> {
    let dir = file.parent().unwrap_or(Path::new(".")).to_owned();
    let read = move |rel: &str| {
        std::fs::read_to_string(dir.join(rel)).map_err(|e| format!("cannot read {rel}: {e}"))
    };
    let check = |p: &ConfigPatch| {
        drover_config::Patch::parse(&p.name, &p.content)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    match drover_template::parse_with(text, &read, &check) {
        Ok(spec) => Ok(spec),
        Err(errors) => bail!(
            "{} is not a valid cluster template:\n{errors}",
            file.display()
        ),
    }
}

pub fn describe(c: &Cluster) -> String {
    let s = &c.status;
    let mut out = format!(
        "Cluster:     {}\nPhase:       {:?}\nReady:       {}\nMachines:    {}/{} ready{}\nTalos:       {}\nKubernetes:  {}\nEndpoint:    {}\netcd:        {} member(s), {}\n",
        c.spec.name,
        s.phase,
        s.ready,
        s.machines_ready,
        s.machines_total,
        if s.machines_missing > 0 {
            format!(", {} missing", s.machines_missing)
        } else {
            String::new()
        },
        c.spec.talos_version,
        c.spec.kubernetes_version,
        s.control_plane_endpoint.as_deref().unwrap_or("-"),
        s.etcd_members,
        if s.bootstrapped {
            "bootstrapped"
        } else {
            "not bootstrapped"
        },
    );
    if let Some(e) = &s.last_error {
        out.push_str(&format!("Last error:  {e}\n"));
    }
    if let Some(t) = &s.tainted {
        out.push_str(&format!(
            "Tainted:     since {} by {} (break-glass {}; {} issued): rotate the cluster's CAs\n",
            t.since.to_rfc3339(),
            t.by,
            t.kind.as_str(),
            t.credentials_issued,
        ));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = s
        .machines
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.machine_set.clone(),
                m.role.as_str().to_owned(),
                m.phase.as_str().to_owned(),
                m.stage.clone().unwrap_or_else(|| "-".into()),
                m.ready.to_string(),
                m.etcd_member_id.clone().unwrap_or_else(|| "-".into()),
                m.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&output::table(
        &[
            "MACHINE",
            "SET",
            "ROLE",
            "PHASE",
            "STAGE",
            "READY",
            "ETCD MEMBER",
            "LAST ERROR",
        ],
        &rows,
    ));
    out
}

pub const CLUSTER_HEADERS: &[&str] = &["NAME", "PHASE", "READY", "MACHINES", "TALOS", "KUBERNETES"];

pub fn cluster_row(c: &Cluster) -> Vec<String> {
    vec![
        c.spec.name.clone(),
        format!("{:?}", c.status.phase),
        c.status.ready.to_string(),
        format!("{}/{}", c.status.machines_ready, c.status.machines_total),
        c.spec.talos_version.clone(),
        c.spec.kubernetes_version.clone(),
    ]
}

pub const CLASS_HEADERS: &[&str] = &["NAME", "SELECTORS"];

pub fn class_row(c: &MachineClass) -> Vec<String> {
    vec![c.name.clone(), c.selectors.join(" | ")]
}

pub async fn machine_class(client: &Client, action: MachineClassCmd) -> Result<()> {
    match action {
        MachineClassCmd::Set { name, selectors } => {
            let class = client
                .put_machine_class(&MachineClassSpec { name, selectors })
                .await?;
            println!("machine class {} saved", class.name);
            Ok(())
        }
        MachineClassCmd::Delete { name } => {
            client.delete_machine_class(&name).await?;
            println!("machine class {name} deleted");
            Ok(())
        }
    }
}
