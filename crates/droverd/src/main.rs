use anyhow::Result;
use clap::Parser;
use droverd::{Args, Command, KeysCommand, LogFormat, Server, Settings};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    if let Err(err) = run().await {
        eprintln!("droverd: {err:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let settings = match Settings::resolve(Args::parse()) {
        Ok(s) => s,
        Err(err) => {
            eprintln!("droverd: {err}");
            std::process::exit(2);
        }
    };
    init_logging(settings.log_format);
    if let Some(command) = &settings.command {
        return maintenance(&settings, command).await;
    }
    let server = Server::start(settings).await?;
    if let Some(token) = server.initial_admin_token() {
        println!(
            "\nInitial admin API token (shown once; also saved to {}):\n\n    {token}\n",
            server
                .data_dir()
                .join(droverd::datadir::INITIAL_ADMIN_TOKEN_FILE)
                .display()
        );
    }
    println!("Drover is listening on {}", server.http_url());
    if let Some(ca) = server.http_ca() {
        println!(
            "Its certificate is signed by Drover's CA in {} (give it to clients: drover --ca-file {}):\n\n{}",
            ca.path.display(),
            ca.path.display(),
            ca.pem.trim_end()
        );
    }
    println!(
        "Replica {} (relay for the other replicas: {})",
        server.service().replica(),
        server.relay_addr()
    );
    println!("Metrics: http://{}/metrics", server.metrics_addr());
    println!("Machine API for nodes: {}", server.machine_api_url());

    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        () = server.stopped() => tracing::error!("a server task failed, shutting down"),
    }
    server.shutdown().await
}

/// Runs a maintenance command (droverd not serving).
async fn maintenance(settings: &Settings, command: &Command) -> Result<()> {
    match command {
        Command::Keys(KeysCommand::Rotate) => {
            let done = droverd::keys::rotate(settings).await?;
            println!(
                "key-encryption key rotated: {} -> {}; {} data key(s) re-wrapped",
                done.old_id, done.new_id, done.rewrapped
            );
        }
        Command::Tenant(command) => print!("{}", droverd::tenant::run(settings, command).await?),
        Command::Backup { out } => {
            droverd::backup::backup(settings, out).await?;
            println!(
                "database backed up to {}; keep the key-encryption key ({}) apart from it",
                out.display(),
                kek_location(settings)
            );
        }
        Command::ConfigReference => print!("{}", droverd::reference::markdown()),
        Command::Restore { file } => {
            droverd::backup::restore(settings, file).await?;
            println!(
                "{} restored; droverd needs the key-encryption key of the backup ({})",
                file.display(),
                kek_location(settings)
            );
        }
    }
    Ok(())
}

/// Where the key-encryption key comes from, for messages.
fn kek_location(settings: &Settings) -> String {
    match settings.master_key {
        Some(_) => "the master-key setting".to_owned(),
        None => settings
            .data_dir
            .join(drover_service::secrets::KEK_FILE)
            .display()
            .to_string(),
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,boringtun=error"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
