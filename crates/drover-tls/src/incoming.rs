//! Accepting TLS connections: the handshakes of a listener's connections, each on its own task.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS connections accepted on `listener` (named `what` in logs) until `cancel`. Each
/// handshake runs on its own task, so a slow client holds up no other; failed and timed-out
/// handshakes are dropped. The stream ends once `cancel` fired and the handshakes under way
/// are done.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    cancel: CancellationToken,
    what: &'static str,
) -> ReceiverStream<TlsStream<TcpStream>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    let acceptor = TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                () = cancel.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(err) => {
                        tracing::warn!(error = %err, "{what} could not accept a connection");
                        continue;
                    }
                },
            };
            let (acceptor, sender) = (acceptor.clone(), sender.clone());
            tokio::spawn(async move {
                if let Ok(Ok(stream)) =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    let _ = sender.send(stream).await;
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}
