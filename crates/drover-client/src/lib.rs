//! A typed client for Drover's REST API, used by the `drover` CLI and the tests.

use drover_model::{
    AuditEntry, CliCredential, Cluster, ClusterChanges, ClusterEvent, ClusterGrant, ClusterSpec,
    CreateJoinToken, CreateServiceAccount, CreatedJoinToken, GrantClusterRole, GrantTarget,
    InviteUser, IssuedServiceAccountKey, JoinInstructions, JoinToken, KubeProxyEndpoint, LogPage,
    Machine, MachineClass, MachineClassSpec, MachineConfigView, Page, Role, ServiceAccount,
    SetRole, StartUpgrade, TenantUsage, Upgrade, UpgradeState, User,
};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A problem-details body returned by the server.
#[derive(Debug, Clone, Deserialize)]
pub struct Problem {
    pub status: u16,
    pub title: String,
    pub detail: String,
    pub field: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("endpoint {0:?} is not a valid http(s) URL")]
    Endpoint(String),
    #[error("the CA certificates are not valid PEM: {0}")]
    Ca(#[source] reqwest::Error),
    #[error("cannot reach Drover at {endpoint}: {source}")]
    Transport {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{} ({})", .problem.detail, .problem.status)]
    Api { problem: Problem },
    #[error("unexpected response from Drover ({status}): {body}")]
    Unexpected { status: StatusCode, body: String },
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { problem } => Some(problem.status),
            Self::Unexpected { status, .. } => Some(status.as_u16()),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// Which audit log entries to read (see [`Client::audit_log`]).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Actions starting with this, e.g. `cluster.`.
    pub action: Option<String>,
    /// e.g. `user:alice@example.com`.
    pub actor: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    token: Option<String>,
}

impl Client {
    /// `endpoint` is droverd's HTTP address, e.g. `http://127.0.0.1:8080`.
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Self> {
        Self::with_ca(endpoint, token, None)
    }

    /// Like [`Client::new`], also trusting the PEM certificates `ca_pem` (e.g. the CA of
    /// droverd's self-signed HTTP certificate) besides the system's.
    pub fn with_ca(endpoint: &str, token: Option<String>, ca_pem: Option<&[u8]>) -> Result<Self> {
        let base = url::Url::parse(endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| ClientError::Endpoint(endpoint.to_owned()))?;
        let mut builder =
            reqwest::Client::builder().user_agent(concat!("drover/", env!("CARGO_PKG_VERSION")));
        for ca in ca_pem
            .map(reqwest::Certificate::from_pem_bundle)
            .transpose()
            .map_err(ClientError::Ca)?
            .unwrap_or_default()
        {
            builder = builder.add_root_certificate(ca);
        }
        let http = builder.build().map_err(|source| ClientError::Transport {
            endpoint: endpoint.to_owned(),
            source,
        })?;
        Ok(Self { http, base, token })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = self.base.join(path).expect("API paths are relative URLs");
        let req = self.http.request(method, url);
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn send<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        let resp = req.send().await.map_err(|source| ClientError::Transport {
            endpoint: self.base.to_string(),
            source,
        })?;
        self.decode(resp).await
    }

    async fn decode<T: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T> {
        let transport = |source| ClientError::Transport {
            endpoint: self.base.to_string(),
            source,
        };
        let status = resp.status();
        let is_problem = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
        let body = resp.bytes().await.map_err(transport)?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|_| ClientError::Unexpected {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        match serde_json::from_slice::<Problem>(&body) {
            Ok(problem) if is_problem => Err(ClientError::Api { problem }),
            _ => Err(ClientError::Unexpected {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            }),
        }
    }

    pub async fn list_machines(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<Machine>> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        self.send(self.request(Method::GET, "api/v1/machines").query(&query))
            .await
    }

    /// Every machine, following the pages.
    pub async fn all_machines(&self) -> Result<Vec<Machine>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.list_machines(Some(1000), cursor.as_deref()).await?;
            all.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// The caller's tenant, its plan and usage against each limit.
    pub async fn tenant(&self) -> Result<TenantUsage> {
        self.send(self.request(Method::GET, "api/v1/tenant")).await
    }

    pub async fn get_machine(&self, id: &str) -> Result<Machine> {
        self.send(self.request(Method::GET, &format!("api/v1/machines/{}", segment(id))))
            .await
    }

    pub async fn delete_machine(&self, id: &str) -> Result<()> {
        self.send_empty(self.request(Method::DELETE, &format!("api/v1/machines/{}", segment(id))))
            .await
    }

    /// Kernel log lines after `after` (or the newest ones).
    pub async fn machine_logs(
        &self,
        id: &str,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<LogPage> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(a) = after {
            query.push(("after", a.to_string()));
        }
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        self.send(
            self.request(
                Method::GET,
                &format!("api/v1/machines/{}/logs", segment(id)),
            )
            .query(&query),
        )
        .await
    }

    pub async fn create_join_token(&self, req: &CreateJoinToken) -> Result<CreatedJoinToken> {
        self.send(self.request(Method::POST, "api/v1/jointokens").json(req))
            .await
    }

    pub async fn list_join_tokens(&self) -> Result<Vec<JoinToken>> {
        self.send(self.request(Method::GET, "api/v1/jointokens"))
            .await
    }

    pub async fn revoke_join_token(&self, token: &str) -> Result<JoinToken> {
        self.send(self.request(
            Method::POST,
            &format!("api/v1/jointokens/{}/revoke", segment(token)),
        ))
        .await
    }

    pub async fn make_default_join_token(&self, token: &str) -> Result<JoinToken> {
        self.send(self.request(
            Method::POST,
            &format!("api/v1/jointokens/{}/default", segment(token)),
        ))
        .await
    }

    pub async fn join_instructions(&self, secret: &str) -> Result<JoinInstructions> {
        self.send(
            self.request(Method::POST, "api/v1/join-instructions")
                .json(&serde_json::json!({ "secret": secret })),
        )
        .await
    }

    /// DELETE (or any body-less call) answered with no content on success.
    async fn send_empty(&self, req: RequestBuilder) -> Result<()> {
        let resp = req.send().await.map_err(|source| ClientError::Transport {
            endpoint: self.base.to_string(),
            source,
        })?;
        if resp.status().is_success() {
            return Ok(());
        }
        self.decode::<serde_json::Value>(resp).await.map(|_| ())
    }

    pub async fn list_clusters(&self) -> Result<Vec<Cluster>> {
        let page: Page<Cluster> = self
            .send(self.request(Method::GET, "api/v1/clusters"))
            .await?;
        Ok(page.items)
    }

    /// The cluster, or None when there is none of that name.
    pub async fn find_cluster(&self, name: &str) -> Result<Option<Cluster>> {
        match self
            .send(self.request(Method::GET, &format!("api/v1/clusters/{}", segment(name))))
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(ClientError::Api { problem }) if problem.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn get_cluster(&self, name: &str) -> Result<Cluster> {
        self.send(self.request(Method::GET, &format!("api/v1/clusters/{}", segment(name))))
            .await
    }

    pub async fn create_cluster(&self, spec: &ClusterSpec) -> Result<Cluster> {
        self.send(self.request(Method::POST, "api/v1/clusters").json(spec))
            .await
    }

    pub async fn update_cluster(&self, spec: &ClusterSpec) -> Result<Cluster> {
        self.send(
            self.request(
                Method::PUT,
                &format!("api/v1/clusters/{}", segment(&spec.name)),
            )
            .json(spec),
        )
        .await
    }

    /// Creates the cluster or brings it to `spec`; with `dry_run`, only says what would change.
    pub async fn sync_cluster(&self, spec: &ClusterSpec, dry_run: bool) -> Result<ClusterChanges> {
        self.send(
            self.request(
                Method::POST,
                &format!("api/v1/clusters/{}/sync", segment(&spec.name)),
            )
            .query(&[("dryRun", dry_run)])
            .json(spec),
        )
        .await
    }

    pub async fn delete_cluster(&self, name: &str) -> Result<Cluster> {
        self.send(self.request(
            Method::DELETE,
            &format!("api/v1/clusters/{}", segment(name)),
        ))
        .await
    }

    pub async fn machine_config(&self, cluster: &str, machine: &str) -> Result<MachineConfigView> {
        self.send(self.request(
            Method::GET,
            &format!(
                "api/v1/clusters/{}/machines/{}/config",
                segment(cluster),
                segment(machine)
            ),
        ))
        .await
    }

    pub async fn start_upgrade(&self, cluster: &str, req: &StartUpgrade) -> Result<Upgrade> {
        self.send(
            self.request(
                Method::POST,
                &format!("api/v1/clusters/{}/upgrades", segment(cluster)),
            )
            .json(req),
        )
        .await
    }

    pub async fn get_upgrade(&self, cluster: &str) -> Result<Upgrade> {
        self.send(self.request(
            Method::GET,
            &format!("api/v1/clusters/{}/upgrade", segment(cluster)),
        ))
        .await
    }

    pub async fn set_upgrade_state(&self, cluster: &str, state: UpgradeState) -> Result<Upgrade> {
        self.send(
            self.request(
                Method::PUT,
                &format!("api/v1/clusters/{}/upgrade/state", segment(cluster)),
            )
            .json(&state),
        )
        .await
    }

    pub async fn cluster_events(&self, cluster: &str, after: i64) -> Result<Vec<ClusterEvent>> {
        self.send(
            self.request(
                Method::GET,
                &format!("api/v1/clusters/{}/events", segment(cluster)),
            )
            .query(&[("after", after)]),
        )
        .await
    }

    /// `drover login`'s exchange of the one-time code its loopback listener received (with the
    /// verifier of its challenge) for a credential. Needs no token.
    pub async fn cli_token_for_code(&self, code: &str, verifier: &str) -> Result<CliCredential> {
        let body = serde_json::json!({"code": code, "verifier": verifier});
        self.send(
            self.request(Method::POST, "api/v1/auth/cli/token")
                .json(&body),
        )
        .await
    }

    /// A new CLI credential for a refresh token (which is used up). Needs no token.
    pub async fn cli_token_for_refresh(&self, refresh_token: &str) -> Result<CliCredential> {
        let body = serde_json::json!({"refreshToken": refresh_token});
        self.send(
            self.request(Method::POST, "api/v1/auth/cli/token")
                .json(&body),
        )
        .await
    }

    /// How kubectl reaches the cluster through the Kubernetes proxy.
    pub async fn kube_proxy_endpoint(&self, cluster: &str) -> Result<KubeProxyEndpoint> {
        self.send(self.request(
            Method::GET,
            &format!("api/v1/clusters/{}/kube-proxy", segment(cluster)),
        ))
        .await
    }

    /// Issues a talosconfig for the caller and `cluster` (a client certificate of the Talos API
    /// proxy), valid for `ttl` (e.g. `8h`; None = the server's default).
    pub async fn issue_talosconfig(
        &self,
        cluster: &str,
        ttl: Option<&str>,
    ) -> Result<drover_model::IssuedTalosconfig> {
        let mut request = self.request(
            Method::POST,
            &format!("api/v1/clusters/{}/talosconfig", segment(cluster)),
        );
        if let Some(ttl) = ttl {
            request = request.query(&[("ttl", ttl)]);
        }
        self.send(request).await
    }

    /// Break glass: an admin credential of `kind` signed directly by `cluster`'s own CAs, which
    /// bypasses Drover (Admin; the server must allow it). Taints the cluster.
    pub async fn break_glass(
        &self,
        cluster: &str,
        kind: drover_model::BreakGlassKind,
    ) -> Result<drover_model::BreakGlassCredential> {
        self.send(self.request(
            Method::POST,
            &format!(
                "api/v1/clusters/{}/break-glass/{}",
                segment(cluster),
                kind.as_str()
            ),
        ))
        .await
    }

    /// The audit log after entry `after`, oldest first, filtered as `filter` says.
    pub async fn audit_log(&self, after: i64, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut query: Vec<(&str, String)> = vec![("after", after.to_string())];
        if let Some(since) = filter.since {
            query.push(("since", since.to_rfc3339()));
        }
        if let Some(action) = &filter.action {
            query.push(("action", action.clone()));
        }
        if let Some(actor) = &filter.actor {
            query.push(("actor", actor.clone()));
        }
        self.send(self.request(Method::GET, "api/v1/audit-log").query(&query))
            .await
    }

    pub async fn list_machine_classes(&self) -> Result<Vec<MachineClass>> {
        self.send(self.request(Method::GET, "api/v1/machineclasses"))
            .await
    }

    pub async fn put_machine_class(&self, spec: &MachineClassSpec) -> Result<MachineClass> {
        self.send(
            self.request(
                Method::PUT,
                &format!("api/v1/machineclasses/{}", segment(&spec.name)),
            )
            .json(spec),
        )
        .await
    }

    pub async fn delete_machine_class(&self, name: &str) -> Result<()> {
        self.send_empty(self.request(
            Method::DELETE,
            &format!("api/v1/machineclasses/{}", segment(name)),
        ))
        .await
    }

    pub async fn set_machine_labels(
        &self,
        id: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<Machine> {
        self.send(
            self.request(
                Method::PUT,
                &format!("api/v1/machines/{}/labels", segment(id)),
            )
            .json(labels),
        )
        .await
    }
}

/// Percent-encodes one path segment.
fn segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Access management: service accounts, users and invitations, per-cluster grants.
impl Client {
    pub async fn create_service_account(
        &self,
        req: &CreateServiceAccount,
    ) -> Result<IssuedServiceAccountKey> {
        self.send(
            self.request(Method::POST, "api/v1/serviceaccounts")
                .json(req),
        )
        .await
    }

    pub async fn list_service_accounts(&self) -> Result<Vec<ServiceAccount>> {
        self.send(self.request(Method::GET, "api/v1/serviceaccounts"))
            .await
    }

    pub async fn get_service_account(&self, name: &str) -> Result<ServiceAccount> {
        self.send(self.request(
            Method::GET,
            &format!("api/v1/serviceaccounts/{}", segment(name)),
        ))
        .await
    }

    /// Revokes (deletes) a service account: all its keys are refused from now on.
    pub async fn revoke_service_account(&self, name: &str) -> Result<ServiceAccount> {
        self.send(self.request(
            Method::DELETE,
            &format!("api/v1/serviceaccounts/{}", segment(name)),
        ))
        .await
    }

    /// Another key for the service account; with `expires_at` it stops working then.
    pub async fn create_service_account_key(
        &self,
        name: &str,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<IssuedServiceAccountKey> {
        let mut request = self.request(
            Method::POST,
            &format!("api/v1/serviceaccounts/{}/keys", segment(name)),
        );
        if let Some(at) = expires_at {
            request = request.query(&[("expiresAt", at.to_rfc3339())]);
        }
        self.send(request).await
    }

    pub async fn revoke_service_account_key(
        &self,
        name: &str,
        key: &str,
    ) -> Result<ServiceAccount> {
        self.send(self.request(
            Method::POST,
            &format!(
                "api/v1/serviceaccounts/{}/keys/{}/revoke",
                segment(name),
                segment(key)
            ),
        ))
        .await
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        self.send(self.request(Method::GET, "api/v1/users")).await
    }

    pub async fn set_user_role(&self, email: &str, role: Role) -> Result<User> {
        self.send(
            self.request(
                Method::PUT,
                &format!("api/v1/users/{}/role", segment(email)),
            )
            .json(&SetRole { role }),
        )
        .await
    }

    pub async fn remove_user(&self, email: &str) -> Result<User> {
        self.send(self.request(Method::DELETE, &format!("api/v1/users/{}", segment(email))))
            .await
    }

    pub async fn invite_user(&self, req: &InviteUser) -> Result<User> {
        self.send(self.request(Method::POST, "api/v1/invitations").json(req))
            .await
    }

    pub async fn list_invitations(&self) -> Result<Vec<User>> {
        self.send(self.request(Method::GET, "api/v1/invitations"))
            .await
    }

    pub async fn cancel_invitation(&self, email: &str) -> Result<User> {
        self.send(self.request(
            Method::DELETE,
            &format!("api/v1/invitations/{}", segment(email)),
        ))
        .await
    }

    pub async fn grant_cluster_role(
        &self,
        cluster: &str,
        req: &GrantClusterRole,
    ) -> Result<ClusterGrant> {
        self.send(
            self.request(
                Method::POST,
                &format!("api/v1/clusters/{}/grants", segment(cluster)),
            )
            .json(req),
        )
        .await
    }

    pub async fn list_cluster_grants(&self, cluster: &str) -> Result<Vec<ClusterGrant>> {
        self.send(self.request(
            Method::GET,
            &format!("api/v1/clusters/{}/grants", segment(cluster)),
        ))
        .await
    }

    pub async fn revoke_cluster_grant(&self, cluster: &str, to: &GrantTarget) -> Result<()> {
        let grantee = match (&to.user, &to.service_account) {
            (Some(email), _) => format!("users/{}", segment(email)),
            (None, Some(name)) => format!("serviceaccounts/{}", segment(name)),
            (None, None) => format!("users/{}", segment("")),
        };
        self.send_empty(self.request(
            Method::DELETE,
            &format!("api/v1/clusters/{}/grants/{grantee}", segment(cluster)),
        ))
        .await
    }
}
