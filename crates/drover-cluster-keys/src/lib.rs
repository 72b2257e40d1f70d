//! A cluster's secrets, opened from their sealed row, and the admin client credentials Drover
//! makes from them for its own calls (Talos `os:admin`, Kubernetes `system:masters`), cached per
//! cluster uid in this process and replaced well before they expire. The reconciler and the
//! access proxies share one [`ClusterKeyring`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_dataplane::{KubernetesCredentials, TalosCredentials};
use drover_model::TenantId;
use drover_pki::SecretsBundle;
use drover_service::{Drover, ServiceError};
use parking_lot::Mutex;

/// How long the admin client certificates are valid, and when they are replaced.
const CLIENT_CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);
const CLIENT_CERT_RENEW_AFTER: Duration = Duration::from_secs(12 * 3600);

/// One cluster's secrets and Drover's current admin credentials for it.
pub struct ClusterKeys {
    pub bundle: SecretsBundle,
    /// For the Talos API of the cluster's nodes (`os:admin`).
    pub credentials: TalosCredentials,
    /// For the cluster's Kubernetes API (`system:masters`).
    pub kubernetes: KubernetesCredentials,
    made: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Open(#[from] ServiceError),
    #[error("making a client certificate: {0}")]
    Certificate(#[from] drover_pki::PkiError),
}

/// The per-process cache of [`ClusterKeys`]; cheap to clone.
#[derive(Clone)]
pub struct ClusterKeyring {
    drover: Drover,
    cache: Arc<Mutex<HashMap<uuid::Uuid, Arc<ClusterKeys>>>>,
}

impl ClusterKeyring {
    pub fn new(drover: Drover) -> Self {
        Self {
            drover,
            cache: Arc::default(),
        }
    }

    /// The keys of the cluster `name` (whose uid is `uid`) of `tenant`.
    pub async fn get(
        &self,
        tenant: TenantId,
        name: &str,
        uid: uuid::Uuid,
    ) -> Result<Arc<ClusterKeys>, KeysError> {
        if let Some(keys) = self.cache.lock().get(&uid)
            && keys.made.elapsed() < CLIENT_CERT_RENEW_AFTER
        {
            return Ok(keys.clone());
        }
        let bundle = self.drover.open_bundle(tenant, name, uid).await?;
        let talos = drover_pki::talos_client_cert(
            &bundle.os_ca,
            "drover",
            "os:admin",
            CLIENT_CERT_VALIDITY,
        )?;
        let kube = drover_pki::kubernetes_client_cert(
            &bundle.kubernetes_ca,
            "drover",
            &["system:masters"],
            CLIENT_CERT_VALIDITY,
        )?;
        let keys = Arc::new(ClusterKeys {
            kubernetes: KubernetesCredentials {
                ca_pem: bundle.kubernetes_ca.cert_pem.clone(),
                cert_pem: kube.cert_pem,
                key_pem: kube.key_pem,
            },
            credentials: TalosCredentials {
                id: format!("{uid}/{}", uuid::Uuid::new_v4()),
                ca_pem: bundle.os_ca.cert_pem.clone(),
                cert_pem: talos.cert_pem,
                key_pem: talos.key_pem,
            },
            bundle,
            made: Instant::now(),
        });
        self.cache.lock().insert(uid, keys.clone());
        Ok(keys)
    }

    /// Drops a deleted cluster's keys.
    pub fn forget(&self, uid: uuid::Uuid) {
        self.cache.lock().remove(&uid);
    }
}
