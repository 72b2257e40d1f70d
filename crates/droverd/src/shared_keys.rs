//! The installation's secrets every replica shares, kept sealed in the database: the first
//! replica to start makes each one (adopting what an older droverd left in its data dir), the
//! others read it.

use anyhow::{Context, Result};
use drover_pki::CertAndKey;
use drover_service::Keyring;
use drover_service::secrets::installation_secret;
use drover_siderolink::keys::KeyPair;
use drover_store::Store;
use secrecy::ExposeSecret;
use secrecy::zeroize::Zeroizing;

use crate::datadir;

/// The installation's secrets every replica shares, from the database (the first replica to
/// start makes them).
pub(crate) struct SharedKeys {
    /// The WireGuard key every replica answers machines with, so a machine may move between
    /// them.
    pub wireguard: KeyPair,
    /// Authenticates the replicas' relay requests to each other.
    pub relay: drover_relay::RelayKey,
    /// The CAs of the Kubernetes proxy, the Talos API proxy and a self-signed HTTPS
    /// certificate: the same on every replica, so credentials from one work with all.
    pub kube_proxy_ca: CertAndKey,
    pub talos_proxy_ca: CertAndKey,
    pub http_ca: CertAndKey,
}

const WIREGUARD_KEY_SECRET: &str = "wireguard-key";
const RELAY_KEY_SECRET: &str = "relay-key";

impl SharedKeys {
    pub async fn load(
        store: &Store,
        keyring: &Keyring,
        data_dir: &std::path::Path,
    ) -> Result<Self> {
        // An installation from before the key moved into the database keeps its key, so its
        // machines keep their tunnels.
        let legacy = datadir::legacy_wireguard_key(data_dir)?;
        let made = legacy.clone();
        let wireguard = installation_secret(store, keyring, WIREGUARD_KEY_SECRET, move || {
            Zeroizing::new(
                made.unwrap_or_else(KeyPair::generate)
                    .secret_bytes()
                    .to_vec(),
            )
        })
        .await
        .context("the installation's WireGuard key")?;
        let wireguard = KeyPair::from_secret_bytes(
            wireguard[..]
                .try_into()
                .context("the stored WireGuard key is not 32 bytes")?,
        );
        if let Some(legacy) = legacy
            && legacy.public() != wireguard.public()
        {
            tracing::warn!(
                file = %data_dir.join(datadir::WIREGUARD_KEY_FILE).display(),
                "this data dir's WireGuard key is not the installation's (the database's is used); delete the file"
            );
        }
        let relay = installation_secret(store, keyring, RELAY_KEY_SECRET, || {
            Zeroizing::new(drover_relay::RelayKey::generate_bytes().to_vec())
        })
        .await
        .context("the installation's relay key")?;
        Ok(Self {
            wireguard,
            relay: drover_relay::RelayKey::from_bytes(&relay)?,
            kube_proxy_ca: service_ca(
                store,
                keyring,
                data_dir,
                "kube-proxy",
                "drover kube proxy CA",
            )
            .await?,
            talos_proxy_ca: service_ca(
                store,
                keyring,
                data_dir,
                "talos-proxy",
                "drover talos proxy CA",
            )
            .await?,
            http_ca: service_ca(
                store,
                keyring,
                data_dir,
                crate::server::HTTP_TLS_DIR,
                "drover HTTP API CA",
            )
            .await?,
        })
    }
}

/// The installation's CA for service `name` (secret `<name>-ca`): the stored one, or one an
/// older droverd left in `<data-dir>/<name>`, or a new one with CN `common_name`.
async fn service_ca(
    store: &Store,
    keyring: &Keyring,
    data_dir: &std::path::Path,
    name: &str,
    common_name: &str,
) -> Result<CertAndKey> {
    let candidate = match drover_pki::read_service_ca(&data_dir.join(name))? {
        Some(ca) => ca,
        None => drover_pki::generate_service_ca(common_name, chrono::Utc::now())?,
    };
    let stored = installation_secret(store, keyring, &format!("{name}-ca"), move || {
        let pair = [
            candidate.cert_pem.as_str(),
            candidate.key_pem.expose_secret(),
        ];
        Zeroizing::new(serde_json::to_vec(&pair).expect("strings serialize"))
    })
    .await
    .with_context(|| format!("the installation's {name} CA"))?;
    let [cert_pem, key_pem]: [String; 2] =
        serde_json::from_slice(&stored).context("the stored CA is not a certificate and key")?;
    Ok(CertAndKey {
        cert_pem,
        key_pem: key_pem.into(),
    })
}
