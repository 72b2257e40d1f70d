//! The HTTP API over TLS: axum's router behind rustls, HTTP/1.1 and HTTP/2 (gRPC) by ALPN.

use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;

/// The protocols offered: gRPC needs HTTP/2, browsers and the CLI take either.
pub const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Serves `router` over TLS on `listener` until `cancel`; then stops accepting and waits for the
/// open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    cancel: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let mut incoming = drover_tls::incoming(listener, tls, cancel.clone(), "the HTTP server");
    loop {
        let stream = tokio::select! {
            () = cancel.cancelled() => break,
            next = incoming.next() => match next {
                Some(stream) => stream,
                None => break,
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(err) = watcher.watch(connection).await {
                tracing::debug!(error = %err, "an HTTPS connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}
