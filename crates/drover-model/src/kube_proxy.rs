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

/// The client-go credential plugin a kubeconfig runs to get the caller's Drover credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecPlugin {
    pub command: String,
    pub args: Vec<String>,
    /// Environment variables set for the plugin, in order.
    pub env: Vec<(String, String)>,
}

impl KubeProxyEndpoint {
    /// A kubeconfig with one cluster, user and context named `context_name`, its user
    /// authenticated by `plugin`.
    pub fn kubeconfig(&self, context_name: &str, plugin: &ExecPlugin) -> serde_json::Value {
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.certificate_authority);
        let env: Vec<_> = plugin
            .env
            .iter()
            .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
            .collect();
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context_name, "cluster": {
                "server": self.server,
                "certificate-authority-data": ca,
            }}],
            "users": [{"name": context_name, "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": plugin.command,
                "args": plugin.args,
                "env": env,
                "interactiveMode": "Never",
                "provideClusterInfo": false,
            }}}],
            "contexts": [{"name": context_name, "context": {
                "cluster": context_name,
                "user": context_name,
            }}],
            "current-context": context_name,
        })
    }
}
