//! Break-glass access: admin credentials signed directly by a cluster's own CAs, which bypass
//! Drover, and the taint they leave on the cluster until its CAs are rotated.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which credential a break-glass request issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum BreakGlassKind {
    /// A kubeconfig with a `system:masters` client certificate from the Kubernetes CA.
    Kubeconfig,
    /// A talosconfig with an `os:admin` client certificate from the OS CA.
    Talosconfig,
}

impl BreakGlassKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kubeconfig => "kubeconfig",
            Self::Talosconfig => "talosconfig",
        }
    }
}

/// A cluster for which a break-glass credential was issued since its CAs were last rotated:
/// someone may hold admin access that Drover neither sees nor can revoke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterTaint {
    /// When the first break-glass credential was issued.
    pub since: DateTime<Utc>,
    /// Who asked for it (`user:<e-mail>`, `token:<name>`, ...).
    pub by: String,
    /// Which credential it was.
    pub kind: BreakGlassKind,
    /// How many break-glass credentials were issued since (this one included).
    pub credentials_issued: u32,
}

/// A break-glass credential, shown once: it holds a private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlassCredential {
    pub kind: BreakGlassKind,
    pub cluster: String,
    /// The context name in the file.
    pub context: String,
    /// Where the file points: the Kubernetes API URL (the cluster's control-plane endpoint),
    /// or the control planes' node addresses (`host:50000` is implied by talosctl). They work
    /// only from where the nodes are reachable directly.
    pub endpoints: Vec<String>,
    /// Serial (lower-case hex) of the client certificate.
    pub serial: String,
    pub expires_at: DateTime<Utc>,
    /// The kubeconfig or talosconfig (YAML), with the CA, the client certificate and its key.
    pub config: String,
    /// The cluster's taint, which this credential caused or extended.
    pub taint: ClusterTaint,
}
