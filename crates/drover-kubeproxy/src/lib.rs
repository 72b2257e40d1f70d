//! The Kubernetes proxy: `kubectl` talks to `https://<proxy>/clusters/<name>`, authenticated with
//! a Drover credential (`Authorization: Bearer`: an API or service-account token, or the session
//! of `drover login`, which `drover kube-token` hands kubectl as an exec credential), and the
//! proxy passes the request on through the tunnel to a control plane's API server with the
//! cluster's admin client certificate, as the caller ([`ClusterAccess`]: `Impersonate-User` and
//! `Impersonate-Group` set by Drover, any the client sent dropped).
//!
//! - A cluster the caller's tenant lacks is `404`, as if it did not exist.
//! - Readers only read: any other request (but the self-subject reviews `kubectl auth` makes)
//!   is refused here with `403`, before it reaches the cluster, which also binds their group
//!   to the `view` role.
//! - Requests and responses stream (watches, logs). Connection upgrades (exec, attach,
//!   port-forward) are not passed on yet.
//! - Every request that is not a read is recorded in the audit log with its outcome.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use drover_cluster_keys::ClusterKeyring;
use drover_dataplane::MachineDialer;
use drover_service::cluster_access::ClusterAccess;
use drover_service::{Credential, Drover, ServiceError};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;

/// The port the proxy listens on unless configured.
pub const DEFAULT_PORT: u16 = 8095;

type Body = BoxBody<Bytes, hyper::Error>;

/// What the proxy needs: the service (authentication, access, audit), the way to the machines
/// (this replica's tunnels or another's), and the clusters' admin credentials.
#[derive(Clone)]
pub struct KubeProxy {
    pub drover: Drover,
    pub machines: MachineDialer,
    pub keyring: ClusterKeyring,
}

/// Serves the proxy on `listener` until `cancel`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    proxy: KubeProxy,
    cancel: CancellationToken,
) {
    let proxy = Arc::new(proxy);
    let mut incoming = drover_tls::incoming(listener, tls, cancel.clone(), "the Kubernetes proxy");
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
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(proxy.handle(request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A Kubernetes `Status` answer.
fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn refusal(err: &ServiceError) -> Response<Body> {
    match err {
        ServiceError::Unauthenticated(m) => status(StatusCode::UNAUTHORIZED, "Unauthorized", m),
        ServiceError::PermissionDenied(m) => status(StatusCode::FORBIDDEN, "Forbidden", m),
        ServiceError::NotFound { .. } => {
            status(StatusCode::NOT_FOUND, "NotFound", &err.to_string())
        }
        other => {
            tracing::warn!(error = %other, "the Kubernetes proxy could not serve a request");
            status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "Drover could not serve this request",
            )
        }
    }
}

/// Whether a request only reads (what a Reader may do).
fn only_reads(method: &Method, path: &str) -> bool {
    const REVIEWS: [&str; 3] = [
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
    ];
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || (*method == Method::POST && REVIEWS.contains(&path))
}

/// Headers that belong to one connection, never passed on.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The headers to send upstream: the client's, without its credential, its impersonation and
/// the hop-by-hop ones, plus Drover's impersonation of the caller.
fn upstream_headers(client: &HeaderMap, access: &ClusterAccess) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in client {
        if hop_by_hop(name)
            || name == header::AUTHORIZATION
            || name == header::HOST
            || name.as_str().starts_with("impersonate-")
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    headers.insert(header::HOST, HeaderValue::from_static("kubernetes"));
    if let Ok(user) = HeaderValue::from_str(&access.user) {
        headers.insert("impersonate-user", user);
    }
    for group in &access.groups {
        if let Ok(group) = HeaderValue::from_str(group) {
            headers.append("impersonate-group", group);
        }
    }
    headers
}

impl KubeProxy {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let path = request.uri().path().to_owned();
        let Some((cluster, rest)) = path
            .strip_prefix("/clusters/")
            .map(|p| {
                p.split_once('/')
                    .map_or((p, "/".to_owned()), |(c, r)| (c, format!("/{r}")))
            })
            .filter(|(c, _)| !c.is_empty())
        else {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the Drover Kubernetes proxy serves /clusters/<name>/...: use the kubeconfig `drover kubeconfig` writes",
            );
        };
        let bearer = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ctx = match self
            .drover
            .authenticate(bearer.map_or(Credential::None, Credential::Bearer))
            .await
        {
            Ok(ctx) => ctx,
            Err(err) => return refusal(&err),
        };
        let access = match self.drover.cluster_access(&ctx, cluster).await {
            Ok(access) => access,
            Err(err) => return refusal(&err),
        };
        let reads = only_reads(request.method(), &rest);
        let action = format!("kube.{}", request.method().as_str().to_lowercase());
        let target = format!("{cluster}{rest}");
        if access.read_only && !reads {
            let message = format!(
                "the reader role may only read cluster {cluster}; {} {rest} needs the operator role",
                request.method()
            );
            self.drover
                .record_proxied(&ctx, &action, &target, &format!("denied: {message}"))
                .await;
            return status(StatusCode::FORBIDDEN, "Forbidden", &message);
        }
        if request.headers().contains_key(header::UPGRADE) {
            return status(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "exec, attach and port-forward through the Drover proxy are not supported yet",
            );
        }
        let response = self.forward(request, &access, &rest).await;
        if !reads {
            let result = if response.status().is_success() {
                "ok".to_owned()
            } else {
                format!("status {}", response.status().as_u16())
            };
            self.drover
                .record_proxied(&ctx, &action, &target, &result)
                .await;
        }
        response
    }

    /// Sends the request to a control plane of the cluster and streams its answer back.
    async fn forward(
        &self,
        request: Request<Incoming>,
        access: &ClusterAccess,
        rest: &str,
    ) -> Response<Body> {
        let keys = match self
            .keyring
            .get(access.tenant, &access.cluster, access.cluster_uid)
            .await
        {
            Ok(keys) => keys,
            Err(err) => {
                tracing::warn!(cluster = %access.cluster, error = %err, "no credentials for the cluster");
                return status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "Drover cannot open this cluster's credentials",
                );
            }
        };
        let mut stream = None;
        for address in &access.control_planes {
            match drover_dataplane::kube::connect(&self.machines, *address, &keys.kubernetes).await
            {
                Ok(connected) => {
                    stream = Some(connected);
                    break;
                }
                Err(err) => {
                    tracing::debug!(cluster = %access.cluster, %address, error = %err, "control plane unreachable");
                }
            }
        }
        let Some(stream) = stream else {
            return status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &format!(
                    "no control plane of cluster {} is reachable right now",
                    access.cluster
                ),
            );
        };
        let (mut sender, connection) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(pair) => pair,
                Err(err) => return upstream_failed(&access.cluster, &err),
            };
        // Lives as long as the response streams; ends when either side closes.
        tokio::spawn(connection);
        let (parts, body) = request.into_parts();
        let uri = match parts.uri.query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        };
        let mut upstream = Request::new(body);
        *upstream.method_mut() = parts.method;
        *upstream.uri_mut() = match uri.parse() {
            Ok(uri) => uri,
            Err(_) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "invalid request path",
                );
            }
        };
        *upstream.headers_mut() = upstream_headers(&parts.headers, access);
        match sender.send_request(upstream).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                let names: Vec<HeaderName> = parts
                    .headers
                    .keys()
                    .filter(|n| hop_by_hop(n))
                    .cloned()
                    .collect();
                for name in names {
                    parts.headers.remove(name);
                }
                Response::from_parts(parts, body.boxed())
            }
            Err(err) => upstream_failed(&access.cluster, &err),
        }
    }
}

fn upstream_failed(cluster: &str, err: &hyper::Error) -> Response<Body> {
    tracing::warn!(%cluster, error = %err, "the cluster's API server did not answer");
    status(
        StatusCode::BAD_GATEWAY,
        "BadGateway",
        &format!("the API server of cluster {cluster} did not answer"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(read_only: bool) -> ClusterAccess {
        ClusterAccess {
            tenant: drover_model::TenantId::from_uuid(Default::default()),
            cluster: "prod".into(),
            cluster_uid: Default::default(),
            user: "drover:user:ops@example.com".into(),
            groups: vec!["drover:readers".into(), "system:authenticated".into()],
            read_only,
            control_planes: vec![],
        }
    }

    #[test]
    fn client_credentials_and_impersonation_are_replaced() {
        let mut client = HeaderMap::new();
        client.insert(header::AUTHORIZATION, "Bearer drv_secret".parse().unwrap());
        client.insert("Impersonate-User", "admin".parse().unwrap());
        client.append("Impersonate-Group", "system:masters".parse().unwrap());
        client.insert("impersonate-extra-scopes", "x".parse().unwrap());
        client.insert(header::CONNECTION, "keep-alive".parse().unwrap());
        client.insert(header::ACCEPT, "application/json".parse().unwrap());
        let sent = upstream_headers(&client, &access(true));
        assert!(sent.get(header::AUTHORIZATION).is_none());
        assert!(sent.get(header::CONNECTION).is_none());
        assert!(sent.get("impersonate-extra-scopes").is_none());
        assert_eq!(sent["impersonate-user"], "drover:user:ops@example.com");
        let groups: Vec<&str> = sent
            .get_all("impersonate-group")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(groups, ["drover:readers", "system:authenticated"]);
        assert_eq!(sent[header::ACCEPT], "application/json");
        assert_eq!(sent[header::HOST], "kubernetes");
    }

    #[test]
    fn readers_read_and_review_themselves_only() {
        assert!(only_reads(&Method::GET, "/api/v1/pods"));
        assert!(only_reads(
            &Method::POST,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews"
        ));
        assert!(!only_reads(&Method::POST, "/api/v1/namespaces"));
        assert!(!only_reads(
            &Method::DELETE,
            "/api/v1/namespaces/kube-system/pods/x"
        ));
        assert!(!only_reads(&Method::PATCH, "/api/v1/nodes/a"));
    }
}
