//! Access to a cluster's Talos API through Drover's Talos API proxy.

/// A talosconfig Drover issued: a client certificate of the Talos API proxy for the caller and
/// one cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuedTalosconfig {
    /// The certificate's serial (lower-case hex): what `DELETE /api/v1/talosconfig-certs/{serial}`
    /// revokes.
    pub serial: String,
    pub cluster: String,
    /// The talosconfig's context name.
    pub context: String,
    /// The proxy as talosctl reaches it (`host:port`).
    pub endpoint: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// The talosconfig (YAML, as `talosctl` reads it): `context`, `contexts.<context>` with
    /// `endpoints`, `ca`, `crt` and `key` (base64 of PEM).
    pub talosconfig: String,
}

/// How many talosconfig certificates a revocation ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevokedTalosCerts {
    pub revoked: u64,
}
