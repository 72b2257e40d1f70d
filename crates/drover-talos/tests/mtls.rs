//! A configured node's apid (mutual TLS against the cluster's OS CA, roles from the client
//! certificate) against the mTLS client and its typed calls, over loopback TCP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_pki::{CertAndKey, generate_os_ca, server_cert, talos_client_cert};
use drover_talos::apid::{Apid, Machine, MachineFacts, ProgressStream, ServerIdentity};
use drover_talos::client::{self, ChannelError};
use drover_talos::proto::machine::BootstrapRequest;
use drover_talos::proto::machine::machine_service_client::MachineServiceClient;
use drover_talos::{Applied, ApplyMode, EtcdMember, InstallProgress, ResetOptions};
use futures::StreamExt as _;
use secrecy::ExposeSecret as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

const HOUR: Duration = Duration::from_secs(3600);

/// Records what apid hands it; bootstraps once.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    bootstrapped: AtomicBool,
}

impl Recorder {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Machine for Recorder {
    fn facts(&self) -> MachineFacts {
        MachineFacts {
            hostname: "cp-1".into(),
            talos_version: "v1.13.8".into(),
            cores: 6,
            memory_mib: 12288,
            ..Default::default()
        }
    }

    fn apply_configuration(
        &self,
        config: &[u8],
        mode: ApplyMode,
        dry_run: bool,
    ) -> Result<Applied, tonic::Status> {
        self.record(format!(
            "apply {mode} dry_run={dry_run} {}",
            String::from_utf8_lossy(config)
        ));
        Ok(Applied {
            mode: ApplyMode::NoReboot,
            details: "applied without a reboot".into(),
            warnings: vec!["emulated".into()],
        })
    }

    fn bootstrap(&self) -> Result<(), tonic::Status> {
        self.record("bootstrap".into());
        if self.bootstrapped.swap(true, Ordering::SeqCst) {
            return Err(tonic::Status::failed_precondition(
                "etcd data directory is not empty",
            ));
        }
        Ok(())
    }

    fn etcd_members(&self) -> Result<Vec<EtcdMember>, tonic::Status> {
        Ok(vec![EtcdMember {
            id: 7,
            hostname: "cp-1".into(),
            peer_urls: vec!["https://[fdae::7]:2380".into()],
            client_urls: vec!["https://[fdae::7]:2379".into()],
            is_learner: false,
        }])
    }

    fn etcd_remove_member(&self, id: u64) -> Result<(), tonic::Status> {
        self.record(format!("remove {id}"));
        if id == 7 {
            Ok(())
        } else {
            Err(tonic::Status::not_found(format!("member {id} not found")))
        }
    }

    fn etcd_leave_cluster(&self) -> Result<(), tonic::Status> {
        self.record("leave".into());
        Ok(())
    }

    fn reset(&self, options: &ResetOptions) -> Result<(), tonic::Status> {
        self.record(format!(
            "reset graceful={} reboot={} wipe={:?}",
            options.graceful, options.reboot, options.wipe_partitions
        ));
        Ok(())
    }

    fn upgrade(&self, image: &str, force: bool) -> Result<(), tonic::Status> {
        self.record(format!("upgrade {image} force={force}"));
        Ok(())
    }

    /// The image's tag says how the installer ends: `:v1.13.1` installs, `:fail` exits with
    /// 1, `:cut` ends without an exit code, `:refused` is refused before any progress.
    fn lifecycle_upgrade(&self, image: &str) -> Result<ProgressStream, tonic::Status> {
        self.record(format!("lifecycle {image}"));
        let pulling = InstallProgress::Message(format!("pulling {image}"));
        let progress = match image.rsplit(':').next() {
            Some("refused") => {
                return Err(tonic::Status::failed_precondition(
                    "etcd member 7 is not healthy",
                ));
            }
            Some("fail") => vec![
                pulling,
                InstallProgress::Message("error: no such image".into()),
                InstallProgress::ExitCode(1),
            ],
            Some("cut") => vec![pulling],
            _ => vec![
                pulling,
                InstallProgress::Message("installed".into()),
                InstallProgress::ExitCode(0),
            ],
        };
        Ok(futures::stream::iter(progress).boxed())
    }
}

struct Node {
    addr: SocketAddr,
    ca: CertAndKey,
    machine: Arc<Recorder>,
    stop: CancellationToken,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A configured node whose server certificate is signed by `signer` (normally its own CA).
async fn start_signed_by(ca: CertAndKey, signer: &CertAndKey) -> Node {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cert = server_cert(signer, "cp-1", &["cp-1"], &[addr.ip()], HOUR).unwrap();
    let identity = ServerIdentity {
        cert_pem: cert.cert_pem,
        key_pem: cert.key_pem.expose_secret().to_owned(),
        ca_pem: ca.cert_pem.clone(),
    };
    let machine = Arc::new(Recorder::default());
    let apid = Apid::configured(machine.clone(), &identity).unwrap();
    assert!(!apid.is_maintenance());
    let stop = CancellationToken::new();
    tokio::spawn(apid.serve(
        TcpListenerStream::new(listener),
        stop.clone().cancelled_owned(),
    ));
    Node {
        addr,
        ca,
        machine,
        stop,
    }
}

async fn start() -> Node {
    let ca = generate_os_ca("mtls-tests", chrono::Utc::now()).unwrap();
    start_signed_by(ca.clone(), &ca).await
}

/// A client of `node` with a certificate for `role` signed by `ca`.
fn channel_as(node: &Node, ca: &CertAndKey, role: &str) -> Channel {
    let cert = talos_client_cert(ca, "drover", role, HOUR).unwrap();
    let addr = node.addr;
    client::mtls_channel(
        move || TcpStream::connect(addr),
        // A name the server certificate does not carry: only the chain is checked.
        &format!("not-the-node.example:{}", addr.port()),
        &node.ca.cert_pem,
        &cert.cert_pem,
        cert.key_pem.expose_secret(),
    )
    .unwrap()
}

fn admin(node: &Node) -> Channel {
    channel_as(node, &node.ca, "os:admin")
}

#[tokio::test]
async fn an_admin_reads_facts_and_drives_the_node() {
    let node = start().await;
    let channel = admin(&node);

    let version = client::version(&channel).await.unwrap();
    assert_eq!(
        (version.tag.as_str(), version.hostname.as_str()),
        ("v1.13.8", "cp-1")
    );
    assert_eq!(client::memory_mib(&channel).await.unwrap(), 12288);
    assert_eq!(client::cpu_cores(&channel).await.unwrap(), 6);

    let applied = client::apply_configuration(&channel, b"cfg", ApplyMode::Auto)
        .await
        .unwrap();
    assert_eq!(applied.mode, ApplyMode::NoReboot);
    assert_eq!(applied.details, "applied without a reboot");
    assert_eq!(applied.warnings, ["emulated"]);

    client::bootstrap(&channel).await.unwrap();
    let err = client::bootstrap(&channel).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "etcd data directory is not empty");
    assert_eq!(err.call(), "Bootstrap");

    let members = client::etcd_member_list(&channel).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!((members[0].id, members[0].hostname.as_str()), (7, "cp-1"));
    assert!(!members[0].is_learner);
    client::etcd_remove_member_by_id(&channel, 7).await.unwrap();
    let err = client::etcd_remove_member_by_id(&channel, 8)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    client::etcd_leave_cluster(&channel).await.unwrap();
    client::reset(&channel, true).await.unwrap();

    assert_eq!(
        node.machine.calls(),
        [
            "apply auto dry_run=false cfg",
            "bootstrap",
            "bootstrap",
            "remove 7",
            "remove 8",
            "leave",
            "reset graceful=true reboot=true wipe=[\"STATE\", \"EPHEMERAL\"]",
        ]
    );
}

#[tokio::test]
async fn a_reader_reads_but_cannot_change_anything() {
    let node = start().await;
    let reader = channel_as(&node, &node.ca, "os:reader");

    client::version(&reader).await.unwrap();
    client::etcd_member_list(&reader).await.unwrap();
    for err in [
        client::bootstrap(&reader).await.unwrap_err(),
        client::apply_configuration(&reader, b"cfg", ApplyMode::Auto)
            .await
            .unwrap_err(),
        client::reset(&reader, false).await.unwrap_err(),
        client::etcd_remove_member_by_id(&reader, 7)
            .await
            .unwrap_err(),
        client::etcd_leave_cluster(&reader).await.unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        assert_eq!(err.message(), "not authorized");
    }
    assert!(
        node.machine.calls().is_empty(),
        "{:?}",
        node.machine.calls()
    );

    // A role Talos does not know grants nothing.
    let nobody = channel_as(&node, &node.ca, "os:nobody");
    let err = client::version(&nobody).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn upgrades_through_either_call() {
    let node = start().await;
    let channel = admin(&node);
    let image = drover_talos::installer_image("1.13.1");

    client::upgrade(&channel, &image).await.unwrap();
    client::lifecycle_upgrade(&channel, &image).await.unwrap();
    // By the node's current version.
    client::upgrade_for(&channel, "v1.12.4", &image)
        .await
        .unwrap();
    client::upgrade_for(&channel, "1.13.0", &image)
        .await
        .unwrap();

    let err = client::lifecycle_upgrade(&channel, "installer:fail")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert_eq!(err.call(), "LifecycleService.Upgrade");
    assert_eq!(
        err.message(),
        "the installer exited with code 1; last progress: error: no such image"
    );
    let err = client::lifecycle_upgrade(&channel, "installer:cut")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
    assert_eq!(
        err.message(),
        "the progress stream ended without an exit code; last progress: pulling installer:cut"
    );
    let err = client::lifecycle_upgrade(&channel, "installer:refused")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "etcd member 7 is not healthy");

    assert_eq!(
        node.machine.calls(),
        [
            format!("upgrade {image} force=false"),
            format!("lifecycle {image}"),
            format!("upgrade {image} force=false"),
            format!("lifecycle {image}"),
            "lifecycle installer:fail".to_owned(),
            "lifecycle installer:cut".to_owned(),
            "lifecycle installer:refused".to_owned(),
        ]
    );
}

#[tokio::test]
async fn only_an_admin_upgrades() {
    let node = start().await;
    let image = drover_talos::installer_image("1.13.1");
    for role in ["os:operator", "os:reader"] {
        let channel = channel_as(&node, &node.ca, role);
        for err in [
            client::upgrade(&channel, &image).await.unwrap_err(),
            client::lifecycle_upgrade(&channel, &image)
                .await
                .unwrap_err(),
        ] {
            assert_eq!(err.code(), Code::PermissionDenied, "{role}: {err}");
        }
    }
    assert!(node.machine.calls().is_empty());
}

#[tokio::test]
async fn an_impersonator_acts_with_the_roles_in_the_metadata() {
    let node = start().await;
    let proxy = channel_as(&node, &node.ca, "os:impersonator");
    let bootstrap_as = |role: &'static str| {
        let mut client = MachineServiceClient::new(proxy.clone());
        async move {
            let mut request = tonic::Request::new(BootstrapRequest::default());
            request
                .metadata_mut()
                .insert(drover_talos::apid::ROLE_METADATA, role.parse().unwrap());
            client.bootstrap(request).await
        }
    };
    let err = bootstrap_as("os:reader").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    bootstrap_as("os:admin").await.unwrap();
    // Without the metadata, an impersonator has no role of its own.
    let err = client::version(&proxy).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn clients_without_a_certificate_of_the_cluster_are_refused() {
    let node = start().await;
    let addr = node.addr;

    // No client certificate (a maintenance-mode client).
    let anonymous =
        client::maintenance_channel(move || TcpStream::connect(addr), &addr.to_string()).unwrap();
    let err = client::version(&anonymous).await.unwrap_err();
    assert_ne!(err.code(), Code::Ok);

    // An admin certificate from another cluster's OS CA.
    let other = generate_os_ca("other", chrono::Utc::now()).unwrap();
    let foreign = channel_as(&node, &other, "os:admin");
    assert!(client::version(&foreign).await.is_err());

    // The node still serves its own clients.
    client::version(&admin(&node)).await.unwrap();
}

#[tokio::test]
async fn the_client_refuses_a_server_certificate_from_another_ca() {
    let ca = generate_os_ca("mtls-tests", chrono::Utc::now()).unwrap();
    let impostor = generate_os_ca("impostor", chrono::Utc::now()).unwrap();
    let node = start_signed_by(ca, &impostor).await;
    let err = client::version(&admin(&node)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
}

#[test]
fn unusable_credentials_are_reported() {
    let ca = generate_os_ca("mtls-tests", chrono::Utc::now()).unwrap();
    let cert = talos_client_cert(&ca, "drover", "os:admin", HOUR).unwrap();
    let dial = || async { TcpStream::connect("127.0.0.1:9").await };
    let err = client::mtls_channel(
        dial,
        "[fdae::1]:50000",
        &ca.cert_pem,
        &cert.cert_pem,
        "junk",
    )
    .unwrap_err();
    assert!(matches!(err, ChannelError::Credentials(_)), "{err}");
    let err = client::mtls_channel(
        dial,
        "bad authority/",
        &ca.cert_pem,
        &cert.cert_pem,
        cert.key_pem.expose_secret(),
    )
    .unwrap_err();
    assert!(matches!(err, ChannelError::Authority(_)), "{err}");
}
