//! A minimal Kubernetes API server, as a control plane running its configuration serves it on
//! its tunnel address, port 6443, once etcd is bootstrapped.
//!
//! - TLS with a server certificate signed by the cluster's Kubernetes CA (`cluster.ca`),
//!   names: the tunnel address, `localhost`, `kubernetes` (and its `.default[.svc]` forms).
//! - Authentication by client certificate from the same CA: user = Subject CN, groups =
//!   Subject Organizations (+ `system:authenticated`). Without one, only `/healthz`,
//!   `/livez`, `/readyz` and `/version` answer; everything else is `401`.
//! - Impersonation: `Impersonate-User` (and `Impersonate-Group`, repeated) act as that user,
//!   allowed only to members of `system:masters` (others get `403`). No other authorization
//!   is emulated: any authenticated user may read.
//! - Read-only resources: discovery (`/api`, `/api/v1`, `/apis`), `nodes` (one per machine
//!   running the cluster's configuration, `Ready` while it runs) and the `kube-system` `pods`
//!   (see [`pods`]) as JSON or as a `meta.k8s.io/v1` `Table` when asked (what `kubectl get`
//!   prints), filtered by equality-based label and field selectors ([`selector`]), and
//!   `selfsubjectreviews` (`kubectl auth whoami`).
//! - The add-ons' `kube-proxy` DaemonSet and `coredns` Deployment ([`addons`]): read, and
//!   patched (their image), which is how an upgrade moves them.
//! - Watches of `nodes` (`?watch=true`): a stream of `ADDED` events for every node, then
//!   `ADDED`, `MODIFIED` (readiness or versions changed) and `DELETED` as the cluster changes,
//!   one JSON object a line, until the client goes.
//! - `/version` is the answering control plane's API server version (its configuration's
//!   `cluster.apiServer.image` tag).

mod addons;
mod objects;
mod pods;
mod selector;

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::{IncomingStream, Listener};
use drover_pki::CertAndKey;
use drover_tunnel::{TunnelListener, TunnelStream};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use secrecy::ExposeSecret as _;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use x509_parser::prelude::{FromDer, X509Certificate};

use self::selector::{Filter, ListParams};
use crate::cluster::{ClusterNode, ClusterRegistry, SERVING_CERT_VALIDITY};
use crate::config::image_tag;

/// Port of the Kubernetes API on a control plane.
pub const KUBERNETES_API_PORT: u16 = 6443;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const MASTERS: &str = "system:masters";
const AUTHENTICATED: &str = "system:authenticated";

/// What the API serves: one cluster's view, through one control plane.
#[derive(Clone)]
pub(crate) struct KubeApi {
    pub cluster_id: String,
    pub clusters: ClusterRegistry,
    /// The serving node's tunnel address.
    pub address: Ipv6Addr,
    /// The serving node's UUID (its API server's version is `/version`).
    pub uuid: String,
}

/// Errors setting the server up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KubeError {
    #[error("server certificate: {0}")]
    Certificate(#[from] drover_pki::PkiError),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS credentials: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("serving: {0}")]
    Io(#[from] io::Error),
}

impl KubeApi {
    /// Serves the API on `listener` until `stop`, with a server certificate signed by
    /// `kubernetes_ca` (its key is needed).
    pub async fn serve(
        self,
        listener: TunnelListener,
        kubernetes_ca: &CertAndKey,
        stop: CancellationToken,
    ) -> Result<(), KubeError> {
        let tls = Arc::new(self.tls_config(kubernetes_ca)?);
        let listener = TlsListener {
            tunnel: listener,
            acceptor: TlsAcceptor::from(tls),
            handshakes: JoinSet::new(),
        };
        let app = router(self).into_make_service_with_connect_info::<Caller>();
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await?;
        Ok(())
    }

    fn tls_config(&self, kubernetes_ca: &CertAndKey) -> Result<ServerConfig, KubeError> {
        let cert = drover_pki::server_cert(
            kubernetes_ca,
            "kube-apiserver",
            &[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
            ],
            &[IpAddr::V6(self.address)],
            SERVING_CERT_VALIDITY,
        )?;
        let chain = vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes())?];
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.expose_secret().as_bytes())?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(
            kubernetes_ca.cert_pem.as_bytes(),
        )?)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let clients = WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            // Unauthenticated clients get 401 from the API (and may read /healthz, /version).
            .allow_unauthenticated()
            .build()?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(clients)
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn router(api: KubeApi) -> Router {
    Router::new()
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .route("/version", get(version))
        .route("/api", get(objects::api_versions))
        .route("/api/v1", get(objects::core_resources))
        .route("/apis", get(objects::api_groups))
        .route(
            "/apis/authentication.k8s.io/v1",
            get(objects::authentication_resources),
        )
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            post(whoami),
        )
        .route("/api/v1/nodes", get(list_nodes))
        .route("/api/v1/nodes/{name}", get(get_node))
        .route("/api/v1/pods", get(all_pods))
        .route("/api/v1/namespaces/{namespace}/pods", get(list_pods))
        .route("/api/v1/namespaces/{namespace}/pods/{name}", get(get_pod))
        .route(
            "/apis/apps/v1/namespaces/{namespace}/{kind}/{name}",
            get(addons::get).patch(addons::patch),
        )
        .fallback(not_found)
        .layer(middleware::from_fn(authenticate))
        .with_state(api)
}

/// The authenticated client of a connection: its verified certificate's CN and Organizations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// Who is at the other end of a connection: a verified client certificate's user, or nobody.
#[derive(Debug, Clone)]
struct Caller(Option<User>);

impl axum::extract::connect_info::Connected<IncomingStream<'_, TlsListener>> for Caller {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let (_, session) = stream.io().get_ref();
        let user = session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|leaf| X509Certificate::from_der(leaf).ok())
            .map(|(_, cert)| {
                let subject = cert.subject();
                User {
                    name: subject
                        .iter_common_name()
                        .find_map(|v| v.as_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    groups: subject
                        .iter_organization()
                        .filter_map(|v| v.as_str().ok().map(str::to_owned))
                        .collect(),
                }
            });
        Caller(user)
    }
}

/// Paths anyone may read (Kubernetes' `system:public-info-viewer`).
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version")
}

/// Establishes the request's [`User`] (impersonated when asked and allowed), or answers
/// 401/403.
async fn authenticate(
    ConnectInfo(caller): ConnectInfo<Caller>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(mut user) = caller.0 else {
        if is_public(request.uri().path()) {
            return next.run(request).await;
        }
        return objects::status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    };
    user.groups.push(AUTHENTICATED.to_owned());
    match impersonation(request.headers(), &user) {
        Ok(Some(impersonated)) => user = impersonated,
        Ok(None) => {}
        Err(refusal) => return refusal.response(),
    }
    request.extensions_mut().insert(user);
    next.run(request).await
}

/// An impersonation request that is refused.
struct Refusal {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl Refusal {
    fn response(self) -> Response {
        objects::status(self.code, self.reason, &self.message)
    }
}

/// The user `headers` ask to act as, if any; refused unless `user` is in `system:masters`.
fn impersonation(headers: &HeaderMap, user: &User) -> Result<Option<User>, Refusal> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    };
    let mut groups = values("impersonate-group");
    let Some(name) = values("impersonate-user").into_iter().next() else {
        if groups.is_empty() {
            return Ok(None);
        }
        return Err(Refusal {
            code: StatusCode::BAD_REQUEST,
            reason: "BadRequest",
            message: "requested impersonation of groups without impersonating a user".into(),
        });
    };
    if !user.groups.iter().any(|g| g == MASTERS) {
        return Err(Refusal {
            code: StatusCode::FORBIDDEN,
            reason: "Forbidden",
            message: format!(
                "users \"{name}\" is forbidden: User \"{}\" cannot impersonate resource \
                 \"users\" in API group \"\" at the cluster scope",
                user.name
            ),
        });
    }
    groups.push(AUTHENTICATED.to_owned());
    Ok(Some(User { name, groups }))
}

async fn ok() -> &'static str {
    "ok"
}

async fn version(State(api): State<KubeApi>) -> Response {
    match api.clusters.node(&api.cluster_id, &api.uuid) {
        Some(node) => objects::version(image_tag(&node.images.api_server)),
        None => objects::status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the API server is shutting down",
        ),
    }
}

async fn whoami(axum::Extension(user): axum::Extension<User>) -> Response {
    objects::self_subject_review(&user)
}

async fn list_nodes(
    State(api): State<KubeApi>,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
) -> Response {
    let filter = match Filter::new(&params, objects::NODE_FIELDS) {
        Ok(filter) => filter,
        Err(message) => return bad_request(&message),
    };
    if params.watch == Some(true) {
        return watch_nodes(api, filter, wants_table(&headers));
    }
    let mut nodes = api.clusters.nodes(&api.cluster_id);
    nodes.retain(|n| filter.matches(&objects::node_object(n)));
    objects::node_list(&nodes, wants_table(&headers))
}

/// What a watch compares to tell a node changed (not its heartbeat).
fn fingerprint(node: &ClusterNode) -> String {
    format!(
        "{}|{}|{}",
        node.running,
        node.kubelet_version(),
        node.talos_version
    )
}

/// A watch of the nodes `filter` selects: every one `ADDED` first, then the changes.
fn watch_nodes(api: KubeApi, filter: Filter, table: bool) -> Response {
    struct State {
        api: KubeApi,
        filter: Filter,
        changes: tokio::sync::watch::Receiver<u64>,
        /// name -> (fingerprint, node) of what the client has been told.
        known: std::collections::BTreeMap<String, (String, ClusterNode)>,
        pending: std::collections::VecDeque<bytes::Bytes>,
        started: bool,
    }
    let event = |kind: &str, node: &ClusterNode, table: bool| {
        let object = if table {
            objects::node_table(std::slice::from_ref(node))
        } else {
            objects::node_object(node)
        };
        let mut line = serde_json::json!({"type": kind, "object": object}).to_string();
        line.push('\n');
        bytes::Bytes::from(line)
    };
    let state = State {
        changes: api.clusters.subscribe(),
        api,
        filter,
        known: Default::default(),
        pending: Default::default(),
        started: false,
    };
    let stream = futures::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(next) = st.pending.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(next), st));
            }
            if st.started && st.changes.changed().await.is_err() {
                return None;
            }
            st.started = true;
            let mut now: std::collections::BTreeMap<String, ClusterNode> = Default::default();
            for node in st.api.clusters.nodes(&st.api.cluster_id) {
                if st.filter.matches(&objects::node_object(&node)) {
                    now.insert(node.hostname.clone(), node);
                }
            }
            let gone: Vec<String> = (st.known.keys())
                .filter(|name| !now.contains_key(*name))
                .cloned()
                .collect();
            for name in gone {
                if let Some((_, node)) = st.known.remove(&name) {
                    st.pending.push_back(event("DELETED", &node, table));
                }
            }
            for (name, node) in now {
                let print = fingerprint(&node);
                let kind = match st.known.get(&name) {
                    None => "ADDED",
                    Some((seen, _)) if *seen != print => "MODIFIED",
                    Some(_) => continue,
                };
                st.pending.push_back(event(kind, &node, table));
                st.known.insert(name, (print, node));
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from_stream(stream))
        .expect("a valid response")
}

async fn get_node(
    State(api): State<KubeApi>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let nodes = api.clusters.nodes(&api.cluster_id);
    match nodes.into_iter().find(|n| n.hostname == name) {
        Some(node) => objects::node(&node, wants_table(&headers)),
        None => objects::status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("nodes \"{name}\" not found"),
        ),
    }
}

impl KubeApi {
    fn pods(&self) -> Vec<pods::Pod> {
        let nodes = self.clusters.nodes(&self.cluster_id);
        pods::kube_system(&nodes, self.clusters.addons(&self.cluster_id).as_ref())
    }

    /// The pods in `namespace` (every namespace: `None`) that `params` select.
    fn list_pods(
        &self,
        namespace: Option<&str>,
        params: &ListParams,
        headers: &HeaderMap,
    ) -> Response {
        let filter = match Filter::new(params, pods::FIELDS) {
            Ok(filter) => filter,
            Err(message) => return bad_request(&message),
        };
        let mut pods = if namespace.is_none_or(|n| n == pods::NAMESPACE) {
            self.pods()
        } else {
            Vec::new()
        };
        pods.retain(|p| filter.matches(&pods::object(p)));
        pods::list(&pods, wants_table(headers))
    }
}

async fn all_pods(
    State(api): State<KubeApi>,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
) -> Response {
    api.list_pods(None, &params, &headers)
}

async fn list_pods(
    State(api): State<KubeApi>,
    Path(namespace): Path<String>,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
) -> Response {
    api.list_pods(Some(&namespace), &params, &headers)
}

fn bad_request(message: &str) -> Response {
    objects::status(StatusCode::BAD_REQUEST, "BadRequest", message)
}

async fn get_pod(
    State(api): State<KubeApi>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let pod = (namespace == pods::NAMESPACE)
        .then(|| api.pods().into_iter().find(|p| p.name == name))
        .flatten();
    match pod {
        Some(pod) => pods::get(&pod, wants_table(&headers)),
        None => objects::status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("pods \"{name}\" not found"),
        ),
    }
}

async fn not_found(request: Request) -> Response {
    objects::status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!(
            "the server could not find the requested resource ({})",
            request.uri().path()
        ),
    )
}

/// `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` (what kubectl asks for).
fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=Table"))
}

/// Accepts tunnel connections and completes their TLS handshakes concurrently (a slow client
/// holds up nobody), for `axum::serve`.
struct TlsListener {
    tunnel: TunnelListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TunnelStream>, SocketAddrV6)>>,
}

impl Listener for TlsListener {
    type Io = TlsStream<TunnelStream>;
    type Addr = SocketAddrV6;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tunnel.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let acceptor = self.acceptor.clone();
                        self.handshakes.spawn(async move {
                            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                            Some((tls.await.ok()?.ok()?, peer))
                        });
                    }
                    // The tunnel is gone; the server is about to be stopped.
                    Err(_) => std::future::pending::<()>().await,
                },
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.tunnel.local_addr())
    }
}
