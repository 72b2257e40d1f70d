//! Cluster secrets, sealed at rest: a key-encryption key (KEK) wraps one data key per tenant,
//! which seals each secret bound to tenant, cluster and purpose.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use drover_model::TenantId;
use drover_pki::{CertAndKey, SecretsBundle};
use drover_seal::{Binding, Dek, Kek, SealError, Sealed, WrappedDek};
use drover_store::{PgExecutor, Store, clusters, installation_secrets, tenant_keys};
use parking_lot::RwLock;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::{Drover, Result, ServiceError};

/// The purpose a cluster's secrets bundle is sealed for.
pub const PURPOSE_SECRETS_BUNDLE: &str = "secrets-bundle";

/// The file names, in a data directory, of the current KEK and of the ones a rotation leaves.
pub const KEK_FILE: &str = "master.key";
pub const NEXT_KEK_FILE: &str = "master.key.next";
pub const PREVIOUS_KEK_FILE: &str = "master.key.previous";

/// The KEKs this process knows: the current one wraps new data keys; the others (a rotation's
/// previous or next key) still open data keys wrapped by them. When a data key names a KEK
/// that is not known, the key files are read again, so a rotation done by another process
/// (`droverd keys rotate`) is picked up online.
#[derive(Debug, Clone)]
pub struct Keyring {
    inner: Arc<RwLock<Keys>>,
    dir: Option<PathBuf>,
}

#[derive(Debug)]
struct Keys {
    current: Arc<Kek>,
    others: Vec<Arc<Kek>>,
}

impl Keyring {
    /// A keyring with one fixed KEK (e.g. from configuration).
    pub fn fixed(kek: Kek) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Keys {
                current: Arc::new(kek),
                others: Vec::new(),
            })),
            dir: None,
        }
    }

    /// The KEKs of a data directory: `master.key` (created 0600 when missing) plus
    /// `master.key.next` / `master.key.previous` when present.
    pub fn from_dir(dir: &Path) -> Result<Self, SealError> {
        let keys = read_dir_keys(dir)?;
        Ok(Self {
            inner: Arc::new(RwLock::new(keys)),
            dir: Some(dir.to_owned()),
        })
    }

    pub fn current(&self) -> Arc<Kek> {
        self.inner.read().current.clone()
    }

    /// Whether this keyring holds the key-encryption key `id`.
    pub fn has(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    fn find(&self, id: &str) -> Option<Arc<Kek>> {
        let keys = self.inner.read();
        std::iter::once(&keys.current)
            .chain(&keys.others)
            .find(|k| k.id() == id)
            .cloned()
    }

    /// The KEK with this id, reading the key files again if it is not known yet.
    fn kek(&self, id: &str) -> Result<Arc<Kek>, SealError> {
        if let Some(kek) = self.find(id) {
            return Ok(kek);
        }
        if let Some(dir) = &self.dir {
            *self.inner.write() = read_dir_keys(dir)?;
            if let Some(kek) = self.find(id) {
                return Ok(kek);
            }
        }
        Err(SealError::Malformed(format!(
            "data key is wrapped by key-encryption key {id}, which this server does not have"
        )))
    }

    fn unwrap_dek(&self, tenant: TenantId, stored: &[u8]) -> Result<Dek, SealError> {
        self.unwrap_labelled(&tenant.to_string(), stored)
    }

    /// Opens a data key wrapped for `label` (a tenant id, or [`INSTALLATION_LABEL`]).
    fn unwrap_labelled(&self, label: &str, stored: &[u8]) -> Result<Dek, SealError> {
        let wrapped = WrappedDek::from_bytes(stored)?;
        self.kek(&wrapped.kek_id)?.unwrap_dek(label, &wrapped)
    }
}

fn read_dir_keys(dir: &Path) -> Result<Keys, SealError> {
    let current = Arc::new(Kek::load_or_create(&dir.join(KEK_FILE))?);
    let mut others = Vec::new();
    for name in [NEXT_KEK_FILE, PREVIOUS_KEK_FILE] {
        let path = dir.join(name);
        if path.exists() {
            others.push(Arc::new(Kek::load(&path)?));
        }
    }
    Ok(Keys { current, others })
}

/// What the installation's own data keys are wrapped for (tenants' are wrapped for their id).
const INSTALLATION_LABEL: &str = "installation";
/// The purpose installation secrets are sealed for.
const PURPOSE_INSTALLATION_SECRET: &str = "installation-secret";

/// The installation's secret `name`, shared by every replica: the stored one, or `make()`'s,
/// sealed and stored by whichever replica gets there first (the others then read that one).
pub async fn installation_secret(
    store: &Store,
    keyring: &Keyring,
    name: &str,
    make: impl FnOnce() -> Zeroizing<Vec<u8>>,
) -> Result<Zeroizing<Vec<u8>>> {
    let binding = Binding::new(INSTALLATION_LABEL, name, PURPOSE_INSTALLATION_SECRET);
    let kek = keyring.current();
    let (dek, wrapped) = kek.new_dek(INSTALLATION_LABEL);
    let sealed = dek.seal(&binding, &make());
    let row = installation_secrets::insert_or_get(
        store.pool(),
        name,
        kek.id(),
        &wrapped.to_bytes(),
        &sealed.to_bytes(),
    )
    .await?;
    let dek = keyring
        .unwrap_labelled(INSTALLATION_LABEL, &row.wrapped_dek)
        .map_err(internal)?;
    let sealed = Sealed::from_bytes(&row.sealed).map_err(internal)?;
    let plain = dek.open(&binding, &sealed).map_err(internal)?;
    Ok(Zeroizing::new(plain.expose_secret().to_vec()))
}

/// Re-wraps every data key (the tenants' and the installation's) under `new`, in one
/// transaction; sealed values are not touched. Returns how many keys were re-wrapped. Safe to
/// run again after a crash.
pub async fn rewrap_all(store: &Store, keyring: &Keyring, new: &Kek) -> Result<usize> {
    let mut tx = store.begin().await?;
    let mut count = 0;
    for row in installation_secrets::all_for_update(&mut *tx).await? {
        if row.kek_id == new.id() {
            continue;
        }
        let wrapped = WrappedDek::from_bytes(&row.wrapped_dek).map_err(internal)?;
        let old = keyring.kek(&wrapped.kek_id).map_err(internal)?;
        let rewrapped = new
            .rewrap(&old, INSTALLATION_LABEL, &wrapped)
            .map_err(internal)?;
        installation_secrets::rewrap(&mut *tx, &row.name, new.id(), &rewrapped.to_bytes()).await?;
        count += 1;
    }
    let rows = tenant_keys::all_for_update(&mut *tx).await?;
    for row in rows {
        if row.kek_id == new.id() {
            continue;
        }
        let tenant = TenantId::from_uuid(row.tenant_id);
        let wrapped = WrappedDek::from_bytes(&row.wrapped_dek).map_err(internal)?;
        let old = keyring.kek(&wrapped.kek_id).map_err(internal)?;
        let rewrapped = new
            .rewrap(&old, &tenant.to_string(), &wrapped)
            .map_err(internal)?;
        tenant_keys::rewrap(&mut *tx, row.tenant_id, new.id(), &rewrapped.to_bytes()).await?;
        count += 1;
    }
    tx.commit().await.map_err(drover_store::StoreError::from)?;
    Ok(count)
}

fn internal(err: SealError) -> ServiceError {
    ServiceError::Internal(Box::new(err))
}

/// The bundle as sealed: every field as text.
#[derive(Serialize, Deserialize)]
struct BundleDoc {
    cluster_id: String,
    cluster_secret: String,
    bootstrap_token: String,
    trustd_token: String,
    secretbox_secret: String,
    os_ca: [String; 2],
    etcd_ca: [String; 2],
    kubernetes_ca: [String; 2],
    aggregator_ca: [String; 2],
    service_account_key: String,
}

fn pair(ca: &CertAndKey) -> [String; 2] {
    [ca.cert_pem.clone(), ca.key_pem.expose_secret().to_owned()]
}

fn unpair([cert_pem, key]: [String; 2]) -> CertAndKey {
    CertAndKey {
        cert_pem,
        key_pem: SecretString::from(key),
    }
}

impl Drover {
    /// The tenant's data key, created on first use.
    async fn tenant_dek(&self, e: impl PgExecutor<'_>, tenant: TenantId) -> Result<Dek> {
        let kek = self.keyring().current();
        let (_, wrapped) = kek.new_dek(&tenant.to_string());
        let row = tenant_keys::insert_or_get(e, tenant, kek.id(), &wrapped.to_bytes()).await?;
        self.keyring()
            .unwrap_dek(tenant, &row.wrapped_dek)
            .map_err(internal)
    }

    /// Generates a new cluster's secrets (slow: an RSA-4096 key) off the async threads.
    pub(crate) async fn generate_bundle(cluster: &str) -> Result<SecretsBundle> {
        let name = cluster.to_owned();
        tokio::task::spawn_blocking(move || SecretsBundle::generate(&name, Utc::now()))
            .await
            .map_err(|e| ServiceError::Internal(Box::new(e)))?
            .map_err(|e| ServiceError::Internal(Box::new(e)))
    }

    /// Seals and stores a cluster's secrets bundle (inside the caller's transaction).
    pub(crate) async fn store_bundle(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant: TenantId,
        cluster: &str,
        uid: uuid::Uuid,
        bundle: &SecretsBundle,
    ) -> Result<()> {
        let doc = BundleDoc {
            cluster_id: bundle.cluster_id.clone(),
            cluster_secret: bundle.cluster_secret.expose_secret().to_owned(),
            bootstrap_token: bundle.bootstrap_token.expose_secret().to_owned(),
            trustd_token: bundle.trustd_token.expose_secret().to_owned(),
            secretbox_secret: bundle.secretbox_secret.expose_secret().to_owned(),
            os_ca: pair(&bundle.os_ca),
            etcd_ca: pair(&bundle.etcd_ca),
            kubernetes_ca: pair(&bundle.kubernetes_ca),
            aggregator_ca: pair(&bundle.aggregator_ca),
            service_account_key: bundle.service_account_key.expose_secret().to_owned(),
        };
        let plain = Zeroizing::new(
            serde_json::to_vec(&doc).map_err(|e| ServiceError::Internal(Box::new(e)))?,
        );
        let dek = self.tenant_dek(&mut *tx, tenant).await?;
        let scope = cluster_scope(uid);
        let sealed = dek.seal(
            &Binding::new(&tenant.to_string(), &scope, PURPOSE_SECRETS_BUNDLE),
            &plain,
        );
        clusters::insert_secret(
            &mut *tx,
            tenant,
            cluster,
            PURPOSE_SECRETS_BUNDLE,
            &sealed.to_bytes(),
        )
        .await?;
        Ok(())
    }

    /// Opens a cluster's secrets bundle. Fails if the stored row was sealed for another tenant,
    /// cluster or purpose.
    pub async fn open_bundle(
        &self,
        tenant: TenantId,
        cluster: &str,
        uid: uuid::Uuid,
    ) -> Result<SecretsBundle> {
        let pool = self.store().pool();
        let stored = clusters::get_secret(pool, tenant, cluster, PURPOSE_SECRETS_BUNDLE)
            .await?
            .ok_or_else(|| ServiceError::not_found("secrets bundle of cluster", cluster))?;
        let dek = self.tenant_dek(pool, tenant).await?;
        let sealed = Sealed::from_bytes(&stored).map_err(internal)?;
        let scope = cluster_scope(uid);
        let plain = dek
            .open(
                &Binding::new(&tenant.to_string(), &scope, PURPOSE_SECRETS_BUNDLE),
                &sealed,
            )
            .map_err(internal)?;
        let doc: BundleDoc = serde_json::from_slice(plain.expose_secret())
            .map_err(|e| ServiceError::Internal(Box::new(e)))?;
        Ok(SecretsBundle {
            cluster_id: doc.cluster_id,
            cluster_secret: doc.cluster_secret.into(),
            bootstrap_token: doc.bootstrap_token.into(),
            trustd_token: doc.trustd_token.into(),
            secretbox_secret: doc.secretbox_secret.into(),
            os_ca: unpair(doc.os_ca),
            etcd_ca: unpair(doc.etcd_ca),
            kubernetes_ca: unpair(doc.kubernetes_ca),
            aggregator_ca: unpair(doc.aggregator_ca),
            service_account_key: doc.service_account_key.into(),
        })
    }
}

fn cluster_scope(uid: uuid::Uuid) -> String {
    format!("cluster/{uid}")
}
