//! An emulated Talos machine API server (apid) in **maintenance mode**.
//!
//! A Talos node without a configuration serves its machine API on the tunnel address, port
//! 50000, with a freshly generated self-signed certificate and no client-certificate check.
//! [`MaintenanceApid`] does the same for the emulator: it answers `MachineService.Version`,
//! `MachineService.ServiceList` and `StorageService.Disks` from its [`MachineFacts`] and
//! `UNIMPLEMENTED` for every other call. It serves any stream of connections (not only kernel
//! sockets), so the emulator can run it on a userspace TCP stack inside a WireGuard tunnel.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use crate::facts::platform_mode;
pub use crate::facts::{DiskFact, MachineFacts};
use crate::proto::common::Metadata;
use crate::proto::machine::machine_service_server::{MachineService, MachineServiceServer};
use crate::proto::machine::{
    ApplyConfigurationRequest, ApplyConfigurationResponse, BootstrapRequest, BootstrapResponse,
    EtcdForfeitLeadershipRequest, EtcdForfeitLeadershipResponse, EtcdLeaveClusterRequest,
    EtcdLeaveClusterResponse, EtcdMemberListRequest, EtcdMemberListResponse,
    EtcdRemoveMemberByIdRequest, EtcdRemoveMemberByIdResponse, EtcdStatusResponse, FeaturesInfo,
    PlatformInfo, RebootRequest, RebootResponse, ResetRequest, ResetResponse, ServiceHealth,
    ServiceInfo, ServiceList, ServiceListResponse, ShutdownRequest, ShutdownResponse,
    UpgradeRequest, UpgradeResponse, Version, VersionInfo, VersionResponse,
};
use crate::proto::storage::storage_service_server::{StorageService, StorageServiceServer};
use crate::proto::storage::{Disk, Disks, DisksResponse};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of [`MaintenanceApid`].
#[derive(Debug, thiserror::Error)]
pub enum ApidError {
    /// The self-signed certificate could not be generated.
    #[error("generating the self-signed certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The gRPC server failed (TLS setup or the incoming stream ended with an error).
    #[error("machine API server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// An emulated maintenance-mode apid. Cheap to clone: clones share the facts and the
/// certificate, so a handle kept by the emulator can change what a running server reports.
#[derive(Clone)]
pub struct MaintenanceApid {
    inner: Arc<Inner>,
}

struct Inner {
    facts: RwLock<MachineFacts>,
    cert_pem: String,
    cert_der: Vec<u8>,
    key_pem: String,
}

impl std::fmt::Debug for MaintenanceApid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaintenanceApid")
            .field("facts", &self.facts())
            .finish_non_exhaustive()
    }
}

impl MaintenanceApid {
    /// Creates the server and generates its self-signed certificate (Ed25519, like Talos'
    /// OS CA; subject alternative name = the hostname when it is a valid DNS name).
    pub fn new(facts: MachineFacts) -> Result<Self, ApidError> {
        let san = if is_dns_name(&facts.hostname) {
            facts.hostname.clone()
        } else {
            "talos-maintenance".to_string()
        };
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let mut params = rcgen::CertificateParams::new(vec![san.clone()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, san);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            inner: Arc::new(Inner {
                facts: RwLock::new(facts),
                cert_pem: cert.pem(),
                cert_der: cert.der().to_vec(),
                key_pem: key.serialize_pem(),
            }),
        })
    }

    /// A copy of the facts currently reported.
    pub fn facts(&self) -> MachineFacts {
        self.read_facts().clone()
    }

    /// Changes the reported Talos version tag (e.g. after an emulated upgrade); takes effect
    /// for the next call, also on a server already running.
    pub fn set_talos_version(&self, tag: impl Into<String>) {
        self.update_facts(|f| f.talos_version = tag.into());
    }

    /// Changes any of the reported facts; takes effect for the next call.
    pub fn update_facts(&self, update: impl FnOnce(&mut MachineFacts)) {
        let mut facts = self
            .inner
            .facts
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        update(&mut facts);
    }

    /// The self-signed server certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.inner.cert_pem
    }

    /// The self-signed server certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.inner.cert_der
    }

    /// Serves the machine API over TLS (ALPN `h2`, no client certificate requested) on every
    /// connection `incoming` yields, until `shutdown` completes (then in-flight calls drain).
    ///
    /// Connections whose TLS handshake fails or takes longer than 10 s are dropped without
    /// stopping the server. An `Err` item from `incoming` stops the server unless it is an
    /// `io::Error` of a transient kind (connection aborted/reset, broken pipe, interrupted,
    /// would block, timed out), which is skipped.
    pub async fn serve<I, IO, E>(
        self,
        incoming: I,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ApidError>
    where
        I: Stream<Item = Result<IO, E>>,
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        ensure_crypto_provider();
        let identity = Identity::from_pem(&self.inner.cert_pem, &self.inner.key_pem);
        let tls = ServerTlsConfig::new()
            .identity(identity)
            .timeout(HANDSHAKE_TIMEOUT);
        Server::builder()
            .tls_config(tls)?
            .add_service(MachineServiceServer::new(MachineApi {
                inner: self.inner.clone(),
            }))
            .add_service(StorageServiceServer::new(StorageApi {
                inner: self.inner.clone(),
            }))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        Ok(())
    }

    fn read_facts(&self) -> std::sync::RwLockReadGuard<'_, MachineFacts> {
        self.inner
            .facts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Adapts any connection type to tonic's [`Connected`] (with no connect info), for transports
/// that do not implement it themselves, e.g. a userspace TCP stack's sockets:
/// `apid.serve(incoming.map_ok(AnyIo), shutdown)`.
#[derive(Debug)]
pub struct AnyIo<IO>(pub IO);

impl<IO> Connected for AnyIo<IO> {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl<IO: AsyncRead + Unpin> AsyncRead for AnyIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AnyIo<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// tonic builds its rustls server config with the process-wide default crypto provider; make
/// sure there is one (ring, the only backend this workspace compiles) instead of panicking
/// should another dependency ever enable a second backend.
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing the race to another thread installing one is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn metadata(facts: &MachineFacts) -> Option<Metadata> {
    Some(Metadata {
        hostname: facts.hostname.clone(),
        ..Default::default()
    })
}

fn unimplemented<T>(method: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "{method} is not available in maintenance mode"
    )))
}

fn read(inner: &Inner) -> std::sync::RwLockReadGuard<'_, MachineFacts> {
    inner.facts.read().unwrap_or_else(PoisonError::into_inner)
}

struct MachineApi {
    inner: Arc<Inner>,
}

#[tonic::async_trait]
impl MachineService for MachineApi {
    async fn apply_configuration(
        &self,
        _: Request<ApplyConfigurationRequest>,
    ) -> Result<Response<ApplyConfigurationResponse>, Status> {
        unimplemented("ApplyConfiguration")
    }

    async fn bootstrap(
        &self,
        _: Request<BootstrapRequest>,
    ) -> Result<Response<BootstrapResponse>, Status> {
        unimplemented("Bootstrap")
    }

    async fn etcd_member_list(
        &self,
        _: Request<EtcdMemberListRequest>,
    ) -> Result<Response<EtcdMemberListResponse>, Status> {
        unimplemented("EtcdMemberList")
    }

    async fn etcd_remove_member_by_id(
        &self,
        _: Request<EtcdRemoveMemberByIdRequest>,
    ) -> Result<Response<EtcdRemoveMemberByIdResponse>, Status> {
        unimplemented("EtcdRemoveMemberByID")
    }

    async fn etcd_leave_cluster(
        &self,
        _: Request<EtcdLeaveClusterRequest>,
    ) -> Result<Response<EtcdLeaveClusterResponse>, Status> {
        unimplemented("EtcdLeaveCluster")
    }

    async fn etcd_forfeit_leadership(
        &self,
        _: Request<EtcdForfeitLeadershipRequest>,
    ) -> Result<Response<EtcdForfeitLeadershipResponse>, Status> {
        unimplemented("EtcdForfeitLeadership")
    }

    async fn etcd_status(&self, _: Request<()>) -> Result<Response<EtcdStatusResponse>, Status> {
        unimplemented("EtcdStatus")
    }

    async fn reboot(&self, _: Request<RebootRequest>) -> Result<Response<RebootResponse>, Status> {
        unimplemented("Reboot")
    }

    async fn reset(&self, _: Request<ResetRequest>) -> Result<Response<ResetResponse>, Status> {
        unimplemented("Reset")
    }

    async fn service_list(&self, _: Request<()>) -> Result<Response<ServiceListResponse>, Status> {
        let facts = read(&self.inner);
        let services = facts
            .services
            .iter()
            .map(|(id, state, healthy)| ServiceInfo {
                id: id.clone(),
                state: state.clone(),
                events: None,
                health: Some(ServiceHealth {
                    unknown: false,
                    healthy: *healthy,
                    last_message: String::new(),
                    last_change: None,
                }),
            })
            .collect();
        Ok(Response::new(ServiceListResponse {
            messages: vec![ServiceList {
                metadata: metadata(&facts),
                services,
            }],
        }))
    }

    async fn shutdown(
        &self,
        _: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownResponse>, Status> {
        unimplemented("Shutdown")
    }

    async fn upgrade(
        &self,
        _: Request<UpgradeRequest>,
    ) -> Result<Response<UpgradeResponse>, Status> {
        unimplemented("Upgrade")
    }

    async fn version(&self, _: Request<()>) -> Result<Response<VersionResponse>, Status> {
        let facts = read(&self.inner);
        Ok(Response::new(VersionResponse {
            messages: vec![Version {
                metadata: metadata(&facts),
                version: Some(VersionInfo {
                    tag: facts.talos_version.clone(),
                    sha: String::new(),
                    built: String::new(),
                    go_version: String::new(),
                    os: "linux".to_string(),
                    arch: facts.arch.clone(),
                }),
                platform: Some(PlatformInfo {
                    name: facts.platform.clone(),
                    mode: platform_mode(&facts.platform).to_string(),
                }),
                features: Some(FeaturesInfo { rbac: true }),
            }],
        }))
    }
}

struct StorageApi {
    inner: Arc<Inner>,
}

#[tonic::async_trait]
impl StorageService for StorageApi {
    async fn disks(&self, _: Request<()>) -> Result<Response<DisksResponse>, Status> {
        let facts = read(&self.inner);
        let disks = facts
            .disks
            .iter()
            .map(|d| Disk {
                size: d.size,
                model: d.model.clone(),
                device_name: d.device_name.clone(),
                name: d
                    .device_name
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                serial: d.serial.clone(),
                system_disk: d.system_disk,
            })
            .collect();
        Ok(Response::new(DisksResponse {
            messages: vec![Disks {
                metadata: metadata(&facts),
                disks,
            }],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns_name("talos-abc-123"));
        assert!(is_dns_name("node.example.org"));
        assert!(!is_dns_name(""));
        assert!(!is_dns_name("bad_name"));
        assert!(!is_dns_name("-x"));
    }

    #[test]
    fn version_can_change_on_a_clone() {
        let apid = MaintenanceApid::new(MachineFacts {
            hostname: "n1".into(),
            talos_version: "v1.12.0".into(),
            ..Default::default()
        })
        .unwrap();
        let handle = apid.clone();
        handle.set_talos_version("v1.13.8");
        assert_eq!(apid.facts().talos_version, "v1.13.8");
        assert!(
            apid.certificate_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
    }
}
