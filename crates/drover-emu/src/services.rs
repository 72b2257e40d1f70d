//! What a machine serves on its tunnel address during a boot, and the boot sequence (events,
//! certificates, joining its cluster) that leads there:
//! - no configuration: the maintenance-mode apid;
//! - a configuration: apid with mutual TLS (its certificate signed by the OS CA: by the
//!   machine itself on a control plane, by trustd on a worker, see [`crate::cluster`]), and on a
//!   control plane the Kubernetes API once etcd is bootstrapped.

use std::sync::Arc;

use drover_siderolink::TALOS_API_PORT;
use drover_talos::apid::{Apid, ApidError, ServerIdentity};
use drover_talos::events::{SequenceAction, Stage};
use drover_tunnel::NodeLink;
use secrecy::ExposeSecret as _;
use tokio_util::sync::CancellationToken;

use crate::cluster::apid_cert;
use crate::config::{MachineConfig, MachineType};
use crate::kube::{KUBERNETES_API_PORT, KubeApi, KubeError};
use crate::runtime::NodeRuntime;

#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("machine API: {0}")]
    Apid(#[from] ApidError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] KubeError),
    #[error("listening in the tunnel: {0}")]
    Listen(#[from] std::io::Error),
    #[error("signing the apid certificate: {0}")]
    Certificate(#[from] drover_pki::PkiError),
}

/// Brings the boot up (once per boot; a new tunnel of the same boot only serves again) and
/// serves until `stop`.
pub(crate) async fn run(runtime: Arc<NodeRuntime>, link: Arc<NodeLink>, stop: CancellationToken) {
    let served = match runtime.installed() {
        None => maintenance(&runtime, &link, &stop).await,
        Some(config) => configured(&runtime, &config, &link, &stop).await,
    };
    if let Err(err) = served {
        tracing::warn!(hostname = runtime.hostname(), error = %err, "machine services stopped");
    }
}

async fn maintenance(
    runtime: &Arc<NodeRuntime>,
    link: &NodeLink,
    stop: &CancellationToken,
) -> Result<(), ServeError> {
    let apid = Apid::maintenance(runtime.clone())?;
    let listener = link.listen(TALOS_API_PORT).await?;
    if !runtime.is_up() {
        runtime.sequence("boot", SequenceAction::Start);
        runtime.stage(Stage::Booting, false, &[]);
        runtime.stage(Stage::Maintenance, true, &[]);
        runtime.sequence("boot", SequenceAction::Stop);
        runtime.mark_up();
    }
    apid.serve(listener.into_incoming(), stop.cancelled())
        .await?;
    Ok(())
}

async fn configured(
    runtime: &Arc<NodeRuntime>,
    config: &Arc<MachineConfig>,
    link: &Arc<NodeLink>,
    stop: &CancellationToken,
) -> Result<(), ServeError> {
    let first = !runtime.is_up();
    if first {
        runtime.sequence("boot", SequenceAction::Start);
        runtime.stage(Stage::Booting, false, &[]);
    }
    let identity = match runtime.identity() {
        Some(identity) => identity,
        None => {
            let Some(identity) = issue_identity(runtime, config, link, stop).await? else {
                return Ok(());
            };
            runtime.set_identity(identity.clone());
            identity
        }
    };
    let apid = Apid::configured(runtime.clone(), &identity)?;
    let listener = link.listen(TALOS_API_PORT).await?;
    let kubernetes = (config.machine_type == MachineType::ControlPlane).then(|| {
        tokio::spawn(kubernetes_api(
            runtime.clone(),
            config.clone(),
            link.clone(),
            stop.clone(),
        ))
    });
    if first {
        runtime.join_cluster(config, link.address());
        runtime.stage(Stage::Running, true, &[]);
        runtime.sequence("boot", SequenceAction::Stop);
        runtime.mark_up();
    } else {
        runtime.resume();
    }
    apid.serve(listener.into_incoming(), stop.cancelled())
        .await?;
    if let Some(kubernetes) = kubernetes {
        let _ = kubernetes.await;
    }
    Ok(())
}

/// apid's certificate for this boot; `None` when stopped before a worker got one.
async fn issue_identity(
    runtime: &NodeRuntime,
    config: &MachineConfig,
    link: &NodeLink,
    stop: &CancellationToken,
) -> Result<Option<ServerIdentity>, ServeError> {
    let (hostname, address) = (runtime.hostname(), link.address());
    let identity = |cert: drover_pki::CertAndKey| ServerIdentity {
        cert_pem: cert.cert_pem,
        key_pem: cert.key_pem.expose_secret().to_owned(),
        ca_pem: config.os_ca.cert_pem.clone(),
    };
    // A control plane holds the OS CA key and signs its own certificate.
    if let Some(os_ca) = config.os_ca.signer() {
        return Ok(Some(identity(apid_cert(&os_ca, hostname, address)?)));
    }
    // A worker asks trustd on a control plane, waiting until one runs.
    let clusters = runtime.clusters();
    let mut changes = clusters.subscribe();
    let mut announced = false;
    loop {
        if let Some(cert) = clusters.issue_apid_cert(&config.cluster_id, hostname, address) {
            return Ok(Some(identity(cert)));
        }
        if !announced {
            let reason = "waiting for a control plane (trustd) to issue the API certificate";
            runtime.stage(Stage::Booting, false, &[("apid".into(), reason.into())]);
            announced = true;
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(None),
            changed = changes.changed() => if changed.is_err() { return Ok(None) },
        }
    }
}

/// A control plane's Kubernetes API: up once etcd is bootstrapped, until `stop`.
async fn kubernetes_api(
    runtime: Arc<NodeRuntime>,
    config: Arc<MachineConfig>,
    link: Arc<NodeLink>,
    stop: CancellationToken,
) {
    let Some(kubernetes_ca) = config.kubernetes_ca.signer() else {
        return;
    };
    let clusters = runtime.clusters().clone();
    tokio::select! {
        () = stop.cancelled() => return,
        () = clusters.wait_until(|r| r.is_bootstrapped(&config.cluster_id)) => {}
    }
    let api = KubeApi {
        cluster_id: config.cluster_id.clone(),
        clusters,
        address: link.address(),
        uuid: runtime.uuid().to_owned(),
    };
    let served = match link.listen(KUBERNETES_API_PORT).await {
        Ok(listener) => api
            .serve(listener, &kubernetes_ca, stop)
            .await
            .map_err(ServeError::from),
        Err(err) => Err(err.into()),
    };
    if let Err(err) = served {
        tracing::warn!(hostname = runtime.hostname(), error = %err, "Kubernetes API stopped");
    }
}
