//! How clients reach a cluster's own APIs through Drover.

/// How clients reach the Kubernetes proxy: what a kubeconfig needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeProxyEndpoint {
    /// The cluster's server URL: the proxy's URL plus `/clusters/<name>`.
    pub server: String,
    /// The PEM of the CA that signed the proxy's certificate.
    pub certificate_authority: String,
}
