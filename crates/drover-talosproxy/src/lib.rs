//! The Talos API proxy: `talosctl` (or any gRPC client) talks to Drover with the talosconfig
//! `drover talosconfig` writes, and the proxy passes each call on, as raw HTTP/2 gRPC (any
//! method, unary or streaming, request and response bodies and trailers streamed), through the
//! tunnel to a node's apid.
//!
//! - Callers present a client certificate Drover's talos-proxy CA signed for them and one
//!   cluster; its serial is looked up on every call ([`Drover::talos_proxy_caller`]), so an
//!   expired or revoked certificate is refused at once (`UNAUTHENTICATED`).
//! - The node comes from the `node` metadata (machine id, tunnel address or hostname; talosctl's
//!   `nodes` with one value too); none = a control plane of the cluster. A node outside the
//!   certificate's cluster is `NOT_FOUND`. `node`, `nodes` and `talos-role` are never passed on.
//! - Upstream the call carries a client certificate from the cluster's OS CA whose Talos role
//!   (its Organization) follows the caller's role on the cluster now: Readers `os:reader`,
//!   Operators and Admins `os:operator`. The node itself refuses what the role may not do.
//! - Calls that are not reads are recorded in the audit log (`talos.<Method>`, target
//!   `<cluster>/<node>`). A read, by method name ([`only_reads`]): it starts with `List`, `Get`,
//!   `Read`, `Watch`, `Version`, `Logs`, `Stats`, `Info`, `Hostname`, `Memory`, `CPU`, `Disk`,
//!   `Mounts`, `NetworkDevice`, `LoadAvg`, `Processes`, `Containers`, `SystemStat`, `Dmesg`, or
//!   is `ServiceList`, `EtcdMemberList`, `EtcdStatus`, `EtcdAlarmList`; anything else (Reboot,
//!   Reset, Upgrade, ApplyConfiguration, methods Drover does not know...) is recorded. The
//!   outcome recorded is the status in the response's headers (a refusal comes there; a
//!   success's status comes in the trailers and is recorded as `ok`).

mod tls;

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_cluster_keys::ClusterKeyring;
use drover_dataplane::{MachineApi, TalosCredentials};
use drover_service::talos_access::{TalosCaller, TalosTarget};
use drover_service::{Drover, ServiceError};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::body::Body;

pub use tls::{ProxyTls, TlsError};

/// The port the proxy listens on unless configured.
pub const DEFAULT_PORT: u16 = 8096;

/// The upstream (impersonator) certificates: how long they are valid, and after how long the
/// proxy makes new ones.
const UPSTREAM_CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);
const UPSTREAM_CERT_RENEW: Duration = Duration::from_secs(6 * 3600);
/// The common name of the proxy's upstream certificates.
const UPSTREAM_CN: &str = "drover-talos-proxy";

/// What the proxy needs: the service (authentication, access, audit), the nodes' machine API
/// channels, and the clusters' OS CAs.
#[derive(Clone)]
pub struct TalosProxy {
    pub drover: Drover,
    pub machine_api: MachineApi,
    pub keyring: ClusterKeyring,
}

/// Serves the proxy on `listener` until `cancel`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    proxy: TalosProxy,
    cancel: CancellationToken,
) {
    let proxy = Arc::new(Proxy {
        shared: proxy,
        upstream: Mutex::default(),
    });
    let mut incoming = drover_tls::incoming(listener, tls, cancel.clone(), "the Talos API proxy");
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            () = cancel.cancelled() => break,
            next = incoming.next() => match next {
                Some(stream) => stream,
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let proxy = proxy.clone();
        let cancel = cancel.clone();
        connections.spawn(async move {
            // The verifier only lets certificates the proxy CA signed through.
            let serial = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| drover_pki::serial_hex_der(cert).ok());
            let Some(serial) = serial else {
                return;
            };
            let serial: Arc<str> = serial.into();
            let service = hyper::service::service_fn(move |request| {
                let proxy = proxy.clone();
                let serial = serial.clone();
                async move { Ok::<_, std::convert::Infallible>(proxy.handle(&serial, request).await) }
            });
            let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = cancel.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
}

/// Upstream credentials by cluster uid and Talos role, with when they were made.
type UpstreamCredentials = HashMap<(uuid::Uuid, &'static str), (Arc<TalosCredentials>, Instant)>;

struct Proxy {
    shared: TalosProxy,
    upstream: Mutex<UpstreamCredentials>,
}

/// A gRPC answer carrying only a status.
fn refusal(status: Status) -> Response<Body> {
    status.into_http()
}

fn status_of(err: &ServiceError) -> Status {
    match err {
        ServiceError::Unauthenticated(m) => Status::unauthenticated(m.clone()),
        ServiceError::PermissionDenied(m) => Status::permission_denied(m.clone()),
        ServiceError::NotFound { .. } => Status::not_found(err.to_string()),
        ServiceError::InvalidArgument { .. } => Status::invalid_argument(err.to_string()),
        ServiceError::Unavailable(m) => Status::unavailable(m.clone()),
        other => {
            tracing::warn!(error = %other, "the Talos API proxy could not serve a call");
            Status::unavailable("Drover could not serve this call")
        }
    }
}

/// Whether a Talos API method only reads (see the crate documentation).
pub fn only_reads(method: &str) -> bool {
    const READS: [&str; 24] = [
        "List",
        "Get",
        "Read",
        "Watch",
        "Version",
        "Logs",
        "LogsContainers",
        "Stats",
        "Info",
        "Hostname",
        "Memory",
        "CPU",
        "Disk",
        "Mounts",
        "NetworkDevice",
        "LoadAvg",
        "Processes",
        "Containers",
        "ServiceList",
        "EtcdMemberList",
        "EtcdStatus",
        "EtcdAlarmList",
        "Dmesg",
        "SystemStat",
    ];
    READS.iter().any(|prefix| method.starts_with(prefix))
}

/// Metadata the proxy reads and never passes on: the target, and roles a client may try to
/// set.
fn proxy_only(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "node"
            | "nodes"
            | "talos-role"
            | "authorization"
            | "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The node the client asked for: `node`, or `nodes` with one value; several are refused.
fn requested_node(headers: &HeaderMap) -> Result<Option<String>, Status> {
    let mut nodes: Vec<String> = headers
        .get_all("node")
        .iter()
        .chain(headers.get_all("nodes").iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    nodes.dedup();
    match nodes.len() {
        0 => Ok(None),
        1 => Ok(nodes.pop()),
        _ => Err(Status::invalid_argument(format!(
            "the Drover Talos API proxy calls one node at a time; got {}",
            nodes.join(", ")
        ))),
    }
}

impl Proxy {
    async fn handle(&self, serial: &str, request: Request<Incoming>) -> Response<Body> {
        let drover = &self.shared.drover;
        let caller: TalosCaller = match drover.talos_proxy_caller(serial).await {
            Ok(caller) => caller,
            Err(err) => return refusal(status_of(&err)),
        };
        let node = match requested_node(request.headers()) {
            Ok(node) => node,
            Err(status) => return refusal(status),
        };
        let target = match drover
            .talos_target(&caller.ctx, &caller.cluster, node.as_deref())
            .await
        {
            Ok(target) => target,
            Err(err) => return refusal(status_of(&err)),
        };
        let path = request.uri().path().to_owned();
        let method = path.rsplit('/').next().unwrap_or_default().to_owned();
        let response = self.forward(request, &target).await;
        if !only_reads(&method) {
            let result = match Status::from_header_map(response.headers()) {
                Some(status) if status.code() != tonic::Code::Ok => {
                    format!("{:?}: {}", status.code(), status.message())
                }
                _ => "ok".to_owned(),
            };
            let node = node.unwrap_or_else(|| target.address.to_string());
            drover
                .record_proxied(
                    &caller.ctx,
                    &format!("talos.{method}"),
                    &format!("{}/{node}", caller.cluster),
                    &result,
                )
                .await;
        }
        response
    }

    /// The upstream credentials for `target`'s cluster and role.
    async fn credentials(&self, target: &TalosTarget) -> Result<Arc<TalosCredentials>, Status> {
        let key = (target.cluster_uid, target.talos_role);
        if let Some((credentials, made)) = self.upstream.lock().get(&key)
            && made.elapsed() < UPSTREAM_CERT_RENEW
        {
            return Ok(credentials.clone());
        }
        let keys = self
            .shared
            .keyring
            .get(target.tenant, &target.cluster, target.cluster_uid)
            .await
            .map_err(|err| {
                tracing::warn!(cluster = %target.cluster, error = %err, "no credentials for the cluster");
                Status::unavailable("Drover cannot open this cluster's credentials")
            })?;
        let made = drover_pki::talos_client_cert(
            &keys.bundle.os_ca,
            UPSTREAM_CN,
            target.talos_role,
            UPSTREAM_CERT_VALIDITY,
        )
        .map_err(|err| {
            tracing::warn!(cluster = %target.cluster, error = %err, "cannot make an upstream certificate");
            Status::internal("Drover cannot make a certificate for this cluster")
        })?;
        let serial = drover_pki::serial_hex(&made.cert_pem).unwrap_or_default();
        let credentials = Arc::new(TalosCredentials {
            id: format!(
                "talos-proxy:{}:{}:{serial}",
                target.cluster_uid, target.talos_role
            ),
            ca_pem: keys.credentials.ca_pem.clone(),
            cert_pem: made.cert_pem,
            key_pem: made.key_pem,
        });
        self.upstream
            .lock()
            .insert(key, (credentials.clone(), Instant::now()));
        Ok(credentials)
    }

    /// Passes the call on to the node and streams its answer back.
    async fn forward(&self, request: Request<Incoming>, target: &TalosTarget) -> Response<Body> {
        let credentials = match self.credentials(target).await {
            Ok(credentials) => credentials,
            Err(status) => return refusal(status),
        };
        let mut channel = match self
            .shared
            .machine_api
            .authenticated(target.address, &credentials)
        {
            Ok(channel) => channel,
            Err(err) => return unreachable(target.address, &err),
        };
        let (parts, body) = request.into_parts();
        let mut upstream = Request::new(Body::new(body));
        *upstream.method_mut() = parts.method;
        *upstream.uri_mut() = match parts.uri.path_and_query() {
            Some(path) => match path.as_str().parse() {
                Ok(uri) => uri,
                Err(_) => return refusal(Status::invalid_argument("invalid method path")),
            },
            None => return refusal(Status::invalid_argument("no method path")),
        };
        let headers = upstream.headers_mut();
        for (name, value) in &parts.headers {
            if !proxy_only(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        use tower_service::Service as _;
        if let Err(err) = std::future::poll_fn(|cx| channel.poll_ready(cx)).await {
            return unreachable(target.address, &err);
        }
        match channel.call(upstream).await {
            Ok(response) => response,
            Err(err) => unreachable(target.address, &err),
        }
    }
}

fn unreachable(address: Ipv6Addr, err: &dyn std::fmt::Display) -> Response<Body> {
    tracing::warn!(%address, error = %err, "a node's Talos API did not answer");
    refusal(Status::unavailable(format!(
        "the Talos API of node {address} did not answer"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_told_from_changes_by_name() {
        for read in [
            "Version",
            "ServiceList",
            "Logs",
            "EtcdMemberList",
            "Dmesg",
            "List",
            "Get",
        ] {
            assert!(only_reads(read), "{read}");
        }
        for change in [
            "Reboot",
            "Reset",
            "Shutdown",
            "Upgrade",
            "ApplyConfiguration",
            "Bootstrap",
            "EtcdRemoveMemberByID",
            "SomethingNew",
        ] {
            assert!(!only_reads(change), "{change}");
        }
    }

    #[test]
    fn the_target_node_comes_from_one_node_or_nodes_value() {
        let mut headers = HeaderMap::new();
        assert_eq!(requested_node(&headers).unwrap(), None);
        headers.insert("nodes", "cp-0".parse().unwrap());
        assert_eq!(requested_node(&headers).unwrap().as_deref(), Some("cp-0"));
        headers.insert("node", "cp-0".parse().unwrap());
        assert_eq!(requested_node(&headers).unwrap().as_deref(), Some("cp-0"));
        headers.insert("nodes", "cp-1,cp-2".parse().unwrap());
        let err = requested_node(&headers).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("one node at a time"));
    }

    #[test]
    fn target_and_role_metadata_are_not_passed_on() {
        for name in ["node", "nodes", "talos-role", "authorization"] {
            assert!(proxy_only(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["content-type", "te", "grpc-timeout", "x-custom"] {
            assert!(!proxy_only(&HeaderName::from_static(name)), "{name}");
        }
    }
}
