//! The emulated maintenance-mode apid against the maintenance client, over real TLS and
//! HTTP/2 on loopback TCP (standing in for the tunnel's userspace TCP stack).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use drover_talos::apid::{Apid, DiskFact, Machine, MachineFacts};
use drover_talos::proto::machine::lifecycle_service_client::LifecycleServiceClient;
use drover_talos::proto::machine::machine_service_client::MachineServiceClient;
use drover_talos::proto::machine::{
    ApplyConfigurationRequest, LifecycleServiceUpgradeRequest, RebootRequest,
};
use drover_talos::{ApplyMode, client};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::Channel;

fn facts() -> MachineFacts {
    MachineFacts {
        hostname: "talos-7f3-a1c".into(),
        talos_version: "v1.12.4".into(),
        arch: "arm64".into(),
        platform: "metal".into(),
        cores: 8,
        memory_mib: 16384,
        disks: vec![
            DiskFact {
                device_name: "/dev/nvme0n1".into(),
                size: 512 * 1024 * 1024 * 1024,
                model: "Emulated NVMe".into(),
                serial: "EMU-0001".into(),
                system_disk: true,
            },
            DiskFact {
                device_name: "/dev/sdb".into(),
                size: 2 * 1024 * 1024 * 1024 * 1024,
                model: "Emulated HDD".into(),
                serial: "EMU-0002".into(),
                system_disk: false,
            },
        ],
        services: vec![
            ("apid".into(), "Running".into(), true),
            ("machined".into(), "Running".into(), true),
            ("udevd".into(), "Waiting".into(), false),
        ],
    }
}

/// A machine whose facts a test can change while its server runs.
#[derive(Default)]
struct Changing(RwLock<MachineFacts>);

impl Machine for Changing {
    fn facts(&self) -> MachineFacts {
        self.0.read().unwrap().clone()
    }
}

struct Running {
    machine: Arc<Changing>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), drover_talos::apid::ApidError>>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops")
            .expect("server task")
            .expect("server result");
    }
}

async fn start() -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let machine = Arc::new(Changing(RwLock::new(facts())));
    let apid = Apid::maintenance(machine.clone()).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(apid.serve(TcpListenerStream::new(listener), async move {
        let _ = stopped.await;
    }));
    Running {
        machine,
        addr,
        stop: Some(stop),
        task,
    }
}

fn channel(addr: SocketAddr) -> Channel {
    client::maintenance_channel(move || TcpStream::connect(addr), &addr.to_string()).unwrap()
}

#[tokio::test]
async fn version_over_unverified_tls() {
    let server = start().await;
    let channel = channel(server.addr);

    let version = client::version(&channel).await.unwrap();
    assert_eq!(version.tag, "v1.12.4");
    assert_eq!(version.arch, "arm64");
    assert_eq!(version.platform_name, "metal");
    assert_eq!(version.platform_mode, "metal");
    assert_eq!(version.hostname, "talos-7f3-a1c");

    // The raw reply follows the `repeated Version messages = 1` convention.
    let raw = MachineServiceClient::new(channel.clone())
        .version(())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(raw.messages.len(), 1);
    let item = &raw.messages[0];
    assert_eq!(item.metadata.as_ref().unwrap().hostname, "talos-7f3-a1c");
    assert_eq!(item.version.as_ref().unwrap().os, "linux");
    assert!(item.features.as_ref().unwrap().rbac);

    server.stop().await;
}

#[tokio::test]
async fn disks_and_services() {
    let server = start().await;
    let channel = channel(server.addr);

    let disks = client::disks(&channel).await.unwrap();
    assert_eq!(disks, facts().disks);
    let system: Vec<_> = disks.iter().filter(|d| d.system_disk).collect();
    assert_eq!(system.len(), 1);
    assert_eq!(system[0].device_name, "/dev/nvme0n1");
    assert_eq!(system[0].size, 512 * 1024 * 1024 * 1024);

    let services = client::service_list(&channel).await.unwrap();
    assert_eq!(services, facts().services);

    // Not in maintenance mode: Talos's maintenance service has no Memory or CPUInfo.
    let err = client::memory_mib(&channel).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    let err = client::cpu_cores(&channel).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);

    server.stop().await;
}

#[tokio::test]
async fn other_calls_are_unimplemented() {
    let server = start().await;
    let channel = channel(server.addr);
    let mut machine = MachineServiceClient::new(channel.clone());

    let err = machine
        .reboot(RebootRequest::default())
        .await
        .expect_err("reboot is not served");
    assert_eq!(err.code(), Code::Unimplemented);
    assert_eq!(err.message(), "Reboot is not available in maintenance mode");

    // Served in maintenance mode, but this machine does nothing with it.
    let err = machine
        .apply_configuration(ApplyConfigurationRequest {
            data: b"version: v1alpha1\n".to_vec(),
            ..Default::default()
        })
        .await
        .expect_err("apply is not emulated by a facts-only machine");
    assert_eq!(err.code(), Code::Unimplemented);

    // Modes other than reboot and auto are refused in maintenance mode, as Talos does.
    let err = client::apply_configuration(&channel, b"version: v1alpha1\n", ApplyMode::NoReboot)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "apply configuration --mode='no-reboot' is not supported in maintenance mode"
    );

    // Upgrades need a configured node, whichever call.
    let image = drover_talos::installer_image("1.13.1");
    let err = client::upgrade(&channel, &image).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert_eq!(
        err.message(),
        "Upgrade is not available in maintenance mode"
    );
    let err = LifecycleServiceClient::new(channel.clone())
        .upgrade(LifecycleServiceUpgradeRequest::default())
        .await
        .expect_err("lifecycle is not served");
    assert_eq!(err.code(), Code::Unimplemented);

    // The connection is still good afterwards.
    client::version(&channel).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn version_updates_reach_a_running_server() {
    let server = start().await;
    let channel = channel(server.addr);
    assert_eq!(client::version(&channel).await.unwrap().tag, "v1.12.4");

    server.machine.0.write().unwrap().talos_version = "v1.13.8".into();
    assert_eq!(client::version(&channel).await.unwrap().tag, "v1.13.8");

    server.stop().await;
}

#[tokio::test]
async fn a_verifying_client_rejects_the_self_signed_certificate() {
    let server = start().await;

    // A normal rustls client: chain and name verification against a root store (empty here:
    // a self-signed certificate chains to no root anyone trusts).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("talos-7f3-a1c").unwrap();
    let err = connector
        .connect(name, tcp)
        .await
        .expect_err("a verifying client must refuse the self-signed certificate");
    let text = err.to_string();
    assert!(
        text.contains("invalid peer certificate") || text.contains("UnknownIssuer"),
        "unexpected error: {text}"
    );

    // tonic's own TLS client (verifying) fails the same way.
    let endpoint = tonic::transport::Endpoint::from_shared(format!(
        "https://talos-7f3-a1c:{}",
        server.addr.port()
    ))
    .unwrap()
    .tls_config(tonic::transport::ClientTlsConfig::new().domain_name("talos-7f3-a1c"))
    .unwrap();
    let addr = server.addr;
    let connect = endpoint
        .connect_with_connector(tower_fn(move || TcpStream::connect(addr)))
        .await;
    assert!(connect.is_err(), "verifying tonic client connected");

    // The server survived the failed handshakes.
    client::version(&channel(server.addr)).await.unwrap();
    server.stop().await;
}

/// A `Service<Uri>` dialing `f` (plain TCP; tonic adds TLS for `https://`).
fn tower_fn<F, Fut>(f: F) -> TowerFn<F>
where
    F: Fn() -> Fut,
{
    TowerFn(f)
}

#[derive(Clone)]
struct TowerFn<F>(F);

impl<F, Fut> tower_service::Service<tonic::transport::Uri> for TowerFn<F>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<TcpStream>> + Send + 'static,
{
    type Response = hyper_util::rt::TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Self::Response>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: tonic::transport::Uri) -> Self::Future {
        let connect = (self.0)();
        Box::pin(async move { Ok(hyper_util::rt::TokioIo::new(connect.await?)) })
    }
}

#[tokio::test]
async fn serves_any_connection_type() {
    use futures::TryStreamExt;
    // A transport whose connections do not implement tonic's `Connected`.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = TcpListenerStream::new(listener).map_ok(tokio::io::BufStream::new);
    let apid = Apid::maintenance(Arc::new(facts())).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(apid.serve(incoming, async move {
        let _ = stopped.await;
    }));
    assert_eq!(
        client::version(&channel(addr)).await.unwrap().tag,
        "v1.12.4"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn unreachable_node_is_unavailable() {
    // Bind then drop a listener so the port is (very likely) closed.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let err = client::version(&channel(addr)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
}
