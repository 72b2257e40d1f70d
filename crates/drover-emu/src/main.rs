//! `drover-emu`: runs N emulated Talos machines in one process and joins them to a control plane.

use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use drover_emu::{
    CancellationToken, ClusterRegistry, DEFAULT_CONCURRENCY, DEFAULT_SEED, DEFAULT_TALOS_VERSION,
    Fleet, FleetConfig, JoinUrl, Lifecycle, NodeBehaviour, NodeHandle, ProvisionError, RetryPolicy,
    UpgradeFault,
};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Emulated Talos machines that join a control plane over SideroLink, as real nodes do.
#[derive(Debug, Parser)]
#[command(name = "drover-emu", version)]
struct Args {
    /// The `siderolink.api` URL the machines join, e.g. grpc://HOST:PORT?jointoken=TOKEN.
    #[arg(long, env = "DROVER_EMU_API", value_parser = JoinUrl::parse)]
    api: JoinUrl,
    /// How many machines to run.
    #[arg(long, env = "DROVER_EMU_MACHINES")]
    machines: usize,
    /// Names the machines: the same seed gives the same UUIDs and node unique tokens.
    #[arg(long, env = "DROVER_EMU_SEED", default_value = DEFAULT_SEED)]
    seed: String,
    /// The Talos version the machines report.
    #[arg(long, env = "DROVER_EMU_TALOS_VERSION", default_value = DEFAULT_TALOS_VERSION)]
    talos_version: String,
    /// WireGuard persistent keepalive of each machine.
    #[arg(long, env = "DROVER_EMU_KEEPALIVE", default_value = "25s")]
    keepalive: humantime::Duration,
    /// How often a machine checks its last handshake.
    #[arg(long, env = "DROVER_EMU_HANDSHAKE_CHECK", default_value = "30s")]
    handshake_check: humantime::Duration,
    /// A handshake older than this moves a machine to the next endpoint (Talos: 275s).
    #[arg(long, env = "DROVER_EMU_ENDPOINT_TIMEOUT", default_value = "275s")]
    endpoint_timeout: humantime::Duration,
    /// At most this many Provision calls in flight.
    #[arg(long, env = "DROVER_EMU_CONCURRENCY", default_value_t = NonZeroUsize::new(DEFAULT_CONCURRENCY).expect("not 0"))]
    concurrency: NonZeroUsize,
    /// How long installing Talos takes after a configuration is applied in maintenance mode.
    #[arg(long, env = "DROVER_EMU_INSTALL_DURATION", default_value = "1s")]
    install_duration: humantime::Duration,
    /// How long a machine is down when it reboots.
    #[arg(long, env = "DROVER_EMU_REBOOT_DURATION", default_value = "1s")]
    reboot_duration: humantime::Duration,
    /// How long an upgrade pulls and installs the new version before its reboot.
    #[arg(long, env = "DROVER_EMU_UPGRADE_DURATION", default_value = "2s")]
    upgrade_duration: humantime::Duration,
    /// Makes a machine's upgrades go wrong: MACHINE=FAULT, MACHINE an index or a UUID, FAULT
    /// fail, boot-back-to-old or hang (repeat, or separate with commas).
    #[arg(long = "upgrade-fault", env = "DROVER_EMU_UPGRADE_FAULT", value_delimiter = ',', value_parser = parse_fault)]
    upgrade_faults: Vec<(String, UpgradeFault)>,
}

fn parse_fault(text: &str) -> Result<(String, UpgradeFault), String> {
    let (machine, fault) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not MACHINE=FAULT"))?;
    Ok((machine.to_owned(), fault.parse()?))
}

/// The machine of `fleet` an `--upgrade-fault` names, by index or UUID.
fn machine_named(fleet: &Fleet, machine: &str) -> anyhow::Result<NodeHandle> {
    let nodes = fleet.nodes();
    let by_index = machine.parse::<usize>().ok().and_then(|i| nodes.get(i));
    by_index
        .or_else(|| nodes.iter().find(|n| n.uuid() == machine))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("--upgrade-fault: no machine {machine:?} in the fleet"))
}

#[tokio::main]
async fn main() -> ExitCode {
    // A malformed argument (e.g. --api) prints clap's message with the reason and exits 2.
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,boringtun=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    // Before anything else, so a signal at any point stops the machines cleanly.
    let stop = stop_on_signal(cancel.clone())?;

    // Never print the URL itself: it carries the join token.
    let server = args.api.connect_uri();
    let total = args.machines;
    let mut fleet = Fleet::new(FleetConfig {
        api: args.api.clone(),
        machines: args.machines,
        seed: args.seed,
        talos_version: args.talos_version,
        concurrency: args.concurrency.get(),
        lifecycle: Lifecycle {
            install: args.install_duration.into(),
            reboot: args.reboot_duration.into(),
            upgrade: args.upgrade_duration.into(),
        },
        clusters: ClusterRegistry::new(),
    });
    for (machine, fault) in &args.upgrade_faults {
        let node = machine_named(&fleet, machine)?;
        tracing::info!(uuid = node.uuid(), %fault, "upgrades of this machine will go wrong");
        node.set_upgrade_fault(Some(*fault));
    }
    tracing::info!(machines = total, %server, "joining");
    let started = Instant::now();
    let mut joined = 0usize;
    let result = fleet
        .provision_all_reporting(&RetryPolicy::default(), &cancel, |machine| {
            joined += 1;
            if let Some(p) = machine.provisioned() {
                println!(
                    "{} joined: address {}, server {}",
                    machine.identity().uuid,
                    p.node_address,
                    p.server_address
                );
            }
        })
        .await;
    match result {
        Ok(()) => println!(
            "{joined} of {total} machines joined {server} in {:.3?}",
            started.elapsed()
        ),
        Err(ProvisionError::Cancelled) => {
            println!(
                "{joined} of {total} machines joined {server}; stopped before the rest joined"
            );
        }
        Err(err) => return Err(anyhow::Error::new(err).context("provisioning stopped")),
    }

    // The machines keep their tunnels and services up until a signal.
    let behaviour = NodeBehaviour {
        keepalive: args.keepalive.into(),
        handshake_check: args.handshake_check.into(),
        endpoint_timeout: args.endpoint_timeout.into(),
        // Shorter than WireGuard's own renewal would make healthy tunnels look stale.
        rehandshake_after: (Duration::from(args.endpoint_timeout) < Duration::from_secs(150))
            .then(|| Duration::from(args.endpoint_timeout) / 3),
        ..NodeBehaviour::default()
    };
    fleet
        .run(&RetryPolicy::default(), &behaviour, &cancel)
        .await?;
    stop.abort();
    tracing::info!("stopped");
    Ok(())
}

fn stop_on_signal(cancel: CancellationToken) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        cancel.cancel();
    }))
}
