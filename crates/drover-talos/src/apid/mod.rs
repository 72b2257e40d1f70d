//! An emulated Talos machine API server (apid), in both of a node's modes.
//!
//! - **Maintenance** (no configuration yet, [`Apid::maintenance`]): a freshly generated
//!   self-signed certificate, no client-certificate check, every caller is `os:admin`. Only
//!   what Talos's maintenance service offers is served: `Version`, `ApplyConfiguration` (modes
//!   `reboot` and `auto`), `Reset`, `StorageService.Disks` (and `ServiceList`); everything else
//!   is `UNIMPLEMENTED`.
//! - **Configured** ([`Apid::configured`]): a server certificate signed by the cluster's OS CA,
//!   and mutual TLS: a client must present a certificate chaining to the OS CA, and its roles
//!   (Subject Organization, see [`auth`]) decide what it may call. Every call of
//!   [`MachineService`](crate::proto::machine::machine_service_server::MachineService) the
//!   emulator knows is served, and `LifecycleService.Upgrade`.
//!
//! What the calls *do* is up to a [`Machine`] (the emulator's node state); this module is the
//! wire: TLS, roles, messages and their `metadata`. It serves any stream of connections (not
//! only kernel sockets), so the emulator can run it on a userspace TCP stack inside a WireGuard
//! tunnel.

mod auth;
mod lifecycle;
mod service;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::Status;
use tonic::transport::server::Connected;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use self::auth::{ROLE_METADATA, Role};
use self::lifecycle::LifecycleApi;
use self::service::{MachineApi, StorageApi};
use crate::calls::{Applied, ApplyMode, EtcdMember, EtcdStatus, InstallProgress, ResetOptions};
pub use crate::facts::{DiskFact, MachineFacts};
use crate::proto::machine::lifecycle_service_server::LifecycleServiceServer;
use crate::proto::machine::machine_service_server::MachineServiceServer;
use crate::proto::storage::storage_service_server::StorageServiceServer;
use crate::tls::{CredentialsError, ensure_crypto_provider, standard_key_pem};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of [`Apid`].
#[derive(Debug, thiserror::Error)]
pub enum ApidError {
    /// The self-signed certificate could not be generated.
    #[error("generating the self-signed certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The server identity of a configured node is unusable.
    #[error("server identity: {0}")]
    Credentials(#[from] CredentialsError),
    /// The gRPC server failed (TLS setup or the incoming stream ended with an error).
    #[error("machine API server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// What a machine does for the calls apid hands it. The emulator implements it with its node
/// state; [`MachineFacts`] alone implements it for a machine that only reports facts (every
/// action is then `UNIMPLEMENTED`).
///
/// Calls are synchronous: they change in-memory state and return; work that takes time (an
/// install, a reboot) is started and happens after the reply, as on a real node. Errors are
/// returned to the client as they are, so they carry Talos's codes (`FAILED_PRECONDITION`,
/// `NOT_FOUND`, ...).
pub trait Machine: Send + Sync + 'static {
    /// What `Version`, `Disks`, `Memory`, `CPUInfo` and `ServiceList` report, and the hostname
    /// in every reply's metadata.
    fn facts(&self) -> MachineFacts;

    /// `ApplyConfiguration` of `config` (the YAML bytes). In maintenance mode `mode` is `Reboot`
    /// or `Auto` (apid refuses the others, as Talos does). `dry_run`: validate only.
    fn apply_configuration(
        &self,
        _config: &[u8],
        _mode: ApplyMode,
        _dry_run: bool,
    ) -> Result<Applied, Status> {
        Err(not_emulated("ApplyConfiguration"))
    }

    /// `Bootstrap`: create etcd on this control plane.
    fn bootstrap(&self) -> Result<(), Status> {
        Err(not_emulated("Bootstrap"))
    }

    /// `EtcdMemberList`.
    fn etcd_members(&self) -> Result<Vec<EtcdMember>, Status> {
        Err(not_emulated("EtcdMemberList"))
    }

    /// `EtcdRemoveMemberByID`.
    fn etcd_remove_member(&self, _id: u64) -> Result<(), Status> {
        Err(not_emulated("EtcdRemoveMemberByID"))
    }

    /// `EtcdLeaveCluster`: this node's member leaves.
    fn etcd_leave_cluster(&self) -> Result<(), Status> {
        Err(not_emulated("EtcdLeaveCluster"))
    }

    /// `EtcdStatus` of this node's member.
    fn etcd_status(&self) -> Result<EtcdStatus, Status> {
        Err(not_emulated("EtcdStatus"))
    }

    /// `Reset`.
    fn reset(&self, _options: &ResetOptions) -> Result<(), Status> {
        Err(not_emulated("Reset"))
    }

    /// `Upgrade` (the legacy call): check the request and start upgrading to the installer
    /// `image`; the upgrade and its reboot happen after the acknowledgement. `force`: skip the
    /// etcd health check of a control plane.
    fn upgrade(&self, _image: &str, _force: bool) -> Result<(), Status> {
        Err(not_emulated("Upgrade"))
    }

    /// `LifecycleService.Upgrade` to the installer `image`: the installer's progress, ending
    /// with its exit code; on 0 the node then reboots into the new version.
    fn lifecycle_upgrade(&self, _image: &str) -> Result<ProgressStream, Status> {
        Err(not_emulated("LifecycleService.Upgrade"))
    }
}

/// What [`Machine::lifecycle_upgrade`] streams.
pub type ProgressStream = BoxStream<'static, InstallProgress>;

impl Machine for MachineFacts {
    fn facts(&self) -> MachineFacts {
        self.clone()
    }
}

pub(crate) fn not_emulated(method: &str) -> Status {
    Status::unimplemented(format!("{method} is not emulated"))
}

/// The server certificate of a configured node, and the CA its clients must chain to.
#[derive(Clone)]
pub struct ServerIdentity {
    /// The node's certificate, signed by the OS CA (PEM).
    pub cert_pem: String,
    /// Its private key, PEM as Talos writes it (`ED25519 PRIVATE KEY` is accepted).
    pub key_pem: String,
    /// The OS CA certificate (PEM): clients must present a certificate it signed.
    pub ca_pem: String,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("cert_pem", &self.cert_pem)
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

/// An emulated apid: a [`Machine`] behind the machine API, in maintenance or configured mode.
/// Cheap to clone.
#[derive(Clone)]
pub struct Apid {
    machine: Arc<dyn Machine>,
    tls: Arc<Tls>,
}

struct Tls {
    cert_pem: String,
    /// Readable by tonic (see [`standard_key_pem`]).
    key_pem: String,
    /// Configured mode: the OS CA client certificates must chain to.
    client_ca_pem: Option<String>,
}

impl std::fmt::Debug for Apid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apid")
            .field("maintenance", &self.is_maintenance())
            .field("facts", &self.machine.facts())
            .finish_non_exhaustive()
    }
}

impl Apid {
    /// Maintenance mode: generates a self-signed certificate (Ed25519, like Talos' OS CA;
    /// subject alternative name = the hostname when it is a valid DNS name).
    pub fn maintenance(machine: Arc<dyn Machine>) -> Result<Self, ApidError> {
        let hostname = machine.facts().hostname;
        let san = if is_dns_name(&hostname) {
            hostname
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
            machine,
            tls: Arc::new(Tls {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
                client_ca_pem: None,
            }),
        })
    }

    /// Configured mode: serves `identity`'s certificate and requires client certificates
    /// signed by its CA.
    pub fn configured(
        machine: Arc<dyn Machine>,
        identity: &ServerIdentity,
    ) -> Result<Self, ApidError> {
        // Fail here rather than at the first handshake.
        crate::tls::certificates(&identity.cert_pem)?;
        crate::tls::certificates(&identity.ca_pem)?;
        Ok(Self {
            machine,
            tls: Arc::new(Tls {
                cert_pem: identity.cert_pem.clone(),
                key_pem: standard_key_pem(&identity.key_pem)?,
                client_ca_pem: Some(identity.ca_pem.clone()),
            }),
        })
    }

    /// Whether this is the maintenance-mode server.
    pub fn is_maintenance(&self) -> bool {
        self.tls.client_ca_pem.is_none()
    }

    /// The server certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.tls.cert_pem
    }

    /// Serves the machine API over TLS (ALPN `h2`) on every connection `incoming` yields, until
    /// `shutdown` completes (then in-flight calls drain).
    ///
    /// Connections whose TLS handshake fails (e.g. no or a foreign client certificate in
    /// configured mode) or takes longer than 10 s are dropped without stopping the server. An
    /// `Err` item from `incoming` stops the server unless it is an `io::Error` of a transient
    /// kind (connection aborted/reset, broken pipe, interrupted, would block, timed out), which
    /// is skipped.
    pub async fn serve<I, IO, E>(
        self,
        incoming: I,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ApidError>
    where
        I: Stream<Item = Result<IO, E>>,
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        ensure_crypto_provider();
        let mut tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.tls.cert_pem, &self.tls.key_pem))
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(ca) = &self.tls.client_ca_pem {
            tls = tls.client_ca_root(Certificate::from_pem(ca));
        }
        let maintenance = self.is_maintenance();
        Server::builder()
            .tls_config(tls)?
            .add_service(MachineServiceServer::new(MachineApi::new(
                self.machine.clone(),
                maintenance,
            )))
            .add_service(LifecycleServiceServer::new(LifecycleApi::new(
                self.machine.clone(),
                maintenance,
            )))
            .add_service(StorageServiceServer::new(StorageApi::new(
                self.machine,
                maintenance,
            )))
            // One connection-info type whatever the transport, so the services find the peer
            // certificates under `TlsConnectInfo<()>`.
            .serve_with_incoming_shutdown(incoming.map_ok(AnyIo), shutdown)
            .await?;
        Ok(())
    }
}

/// Adapts any connection type to tonic's [`Connected`] with no connect info of its own.
struct AnyIo<IO>(IO);

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
    fn maintenance_certificate_is_self_signed_pem() {
        let apid = Apid::maintenance(Arc::new(MachineFacts {
            hostname: "n1".into(),
            ..Default::default()
        }))
        .unwrap();
        assert!(apid.is_maintenance());
        assert!(
            apid.certificate_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
    }

    #[test]
    fn a_configured_server_needs_usable_credentials() {
        let identity = ServerIdentity {
            cert_pem: "not a certificate".into(),
            key_pem: String::new(),
            ca_pem: String::new(),
        };
        let err = Apid::configured(Arc::new(MachineFacts::default()), &identity).unwrap_err();
        assert!(matches!(err, ApidError::Credentials(_)), "{err}");
    }
}
