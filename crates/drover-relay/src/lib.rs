//! The relay between droverd replicas.
//!
//! A machine's WireGuard tunnel ends on one replica; the others reach that machine's API (or its
//! Kubernetes API server) by asking that replica's relay to open a TCP connection through the
//! tunnel and splice it to theirs. What flows through is the caller's own end-to-end TLS to the
//! machine; the relay only authenticates who may ask.
//!
//! The exchange, on a plain TCP connection:
//! 1. the relay sends a fresh 32-byte nonce;
//! 2. the caller sends the target (16 bytes of IPv6 address, 2 bytes of port, big-endian) and
//!    HMAC-SHA256 over [`PROTOCOL_LABEL`], the nonce and the target, keyed by the installation's
//!    relay key (every replica has it; see `drover_service::secrets::installation_secret`);
//! 3. the relay checks the MAC (in constant time), dials the target and answers one status byte:
//!    [`STATUS_OK`], then both directions are spliced; or [`STATUS_REFUSED`] /
//!    [`STATUS_UNREACHABLE`] followed by a reason (2-byte length, UTF-8), then it closes.
//!
//! The nonce makes a recorded request useless on another connection.

use std::future::Future;
use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the MAC is computed over first, naming the protocol and its version.
pub const PROTOCOL_LABEL: &[u8] = b"drover-relay-v1";
/// The relay connected the target; the stream is spliced from here on.
pub const STATUS_OK: u8 = 0;
/// The request's MAC is wrong: the caller does not have this installation's relay key.
pub const STATUS_REFUSED: u8 = 1;
/// The relay could not reach the target.
pub const STATUS_UNREACHABLE: u8 = 2;

const NONCE_LEN: usize = 32;
const MAC_LEN: usize = 32;
const TARGET_LEN: usize = 18;
/// The longest a caller or the relay may take over its part of the exchange (the relay's dial
/// of the target included).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The installation's relay key: 32 bytes every replica shares.
#[derive(Clone)]
pub struct RelayKey(Arc<[u8; 32]>);

impl std::fmt::Debug for RelayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayKey(..)")
    }
}

impl RelayKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RelayError> {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| RelayError::KeyLength(bytes.len()))?;
        Ok(Self(Arc::new(key)))
    }

    /// 32 random bytes for a new installation.
    pub fn generate_bytes() -> [u8; 32] {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        key
    }

    fn mac(&self, nonce: &[u8; NONCE_LEN], target: &[u8; TARGET_LEN]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0[..]).expect("HMAC takes any key");
        mac.update(PROTOCOL_LABEL);
        mac.update(nonce);
        mac.update(target);
        mac
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot reach the relay at {relay}: {source}")]
    Connect {
        relay: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("the relay at {relay} broke off the exchange: {source}")]
    Exchange {
        relay: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("the relay at {relay} refused the request: {reason}")]
    Refused { relay: SocketAddr, reason: String },
    #[error("the relay at {relay} cannot reach {target}: {reason}")]
    Unreachable {
        relay: SocketAddr,
        target: SocketAddrV6,
        reason: String,
    },
    #[error("a relay key is 32 bytes, not {0}")]
    KeyLength(usize),
}

impl From<RelayError> for io::Error {
    fn from(err: RelayError) -> Self {
        let kind = match &err {
            RelayError::Connect { source, .. } | RelayError::Exchange { source, .. } => {
                source.kind()
            }
            RelayError::Refused { .. } => io::ErrorKind::PermissionDenied,
            RelayError::Unreachable { .. } => io::ErrorKind::HostUnreachable,
            RelayError::KeyLength(_) => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, err)
    }
}

fn encode_target(target: SocketAddrV6) -> [u8; TARGET_LEN] {
    let mut out = [0u8; TARGET_LEN];
    out[..16].copy_from_slice(&target.ip().octets());
    out[16..].copy_from_slice(&target.port().to_be_bytes());
    out
}

fn decode_target(bytes: &[u8; TARGET_LEN]) -> SocketAddrV6 {
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&bytes[..16]);
    let port = u16::from_be_bytes([bytes[16], bytes[17]]);
    SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0)
}

/// Opens a stream to `target` through the relay at `relay`.
pub async fn dial(
    relay: SocketAddr,
    key: &RelayKey,
    target: SocketAddrV6,
) -> Result<TcpStream, RelayError> {
    let mut stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(relay))
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
        .map_err(|source| RelayError::Connect { relay, source })?;
    let _ = stream.set_nodelay(true);
    let exchange = |source| RelayError::Exchange { relay, source };
    let status = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut nonce = [0u8; NONCE_LEN];
        stream.read_exact(&mut nonce).await?;
        let target_bytes = encode_target(target);
        let tag = key.mac(&nonce, &target_bytes).finalize().into_bytes();
        let mut request = Vec::with_capacity(TARGET_LEN + MAC_LEN);
        request.extend_from_slice(&target_bytes);
        request.extend_from_slice(&tag);
        stream.write_all(&request).await?;
        let status = stream.read_u8().await?;
        if status == STATUS_OK {
            return Ok((status, String::new()));
        }
        let len = stream.read_u16().await?;
        let mut reason = vec![0u8; usize::from(len)];
        stream.read_exact(&mut reason).await?;
        Ok((status, String::from_utf8_lossy(&reason).into_owned()))
    })
    .await
    .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    .map_err(exchange)?;
    match status {
        (STATUS_OK, _) => Ok(stream),
        (STATUS_UNREACHABLE, reason) => Err(RelayError::Unreachable {
            relay,
            target,
            reason,
        }),
        (_, reason) => Err(RelayError::Refused { relay, reason }),
    }
}

/// Serves the relay on `listener` until `cancel`: each authenticated request is connected with
/// `dial` and spliced. Connections in progress end with `cancel` too.
pub async fn serve<D, F, S>(
    listener: TcpListener,
    key: RelayKey,
    dial: D,
    cancel: CancellationToken,
) where
    D: Fn(SocketAddrV6) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = io::Result<S>> + Send,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "the relay cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (key, dial, cancel) = (key.clone(), dial.clone(), cancel.clone());
        connections.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = relay_one(stream, peer, &key, dial) => {}
            }
        });
    }
    connections.close();
    connections.wait().await;
}

async fn relay_one<D, F, S>(mut stream: TcpStream, peer: SocketAddr, key: &RelayKey, dial: D)
where
    D: Fn(SocketAddrV6) -> F,
    F: Future<Output = io::Result<S>>,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = stream.set_nodelay(true);
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept(&mut stream, key, dial)).await;
    let mut target = match accepted {
        Ok(Ok(target)) => target,
        Ok(Err(err)) => {
            tracing::debug!(%peer, error = %err, "relay request not served");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "relay request timed out");
            return;
        }
    };
    if let Err(err) = tokio::io::copy_bidirectional(&mut stream, &mut target).await {
        tracing::debug!(%peer, error = %err, "relayed connection ended");
    }
}

/// Checks a request and connects its target, answering the caller either way.
async fn accept<D, F, S>(stream: &mut TcpStream, key: &RelayKey, dial: D) -> io::Result<S>
where
    D: Fn(SocketAddrV6) -> F,
    F: Future<Output = io::Result<S>>,
{
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    stream.write_all(&nonce).await?;
    let mut request = [0u8; TARGET_LEN + MAC_LEN];
    stream.read_exact(&mut request).await?;
    let (target_bytes, tag) = request.split_at(TARGET_LEN);
    let target_bytes: &[u8; TARGET_LEN] = target_bytes.try_into().expect("split at its length");
    if key.mac(&nonce, target_bytes).verify_slice(tag).is_err() {
        answer(
            stream,
            STATUS_REFUSED,
            "the request is not signed with this installation's relay key",
        )
        .await?;
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "bad relay MAC",
        ));
    }
    let target = decode_target(target_bytes);
    match dial(target).await {
        Ok(connected) => {
            stream.write_all(&[STATUS_OK]).await?;
            Ok(connected)
        }
        Err(err) => {
            answer(stream, STATUS_UNREACHABLE, &err.to_string()).await?;
            Err(err)
        }
    }
}

async fn answer(stream: &mut TcpStream, status: u8, reason: &str) -> io::Result<()> {
    let reason = &reason.as_bytes()[..reason.len().min(usize::from(u16::MAX))];
    let mut out = Vec::with_capacity(3 + reason.len());
    out.push(status);
    out.extend_from_slice(&u16::try_from(reason.len()).expect("capped").to_be_bytes());
    out.extend_from_slice(reason);
    stream.write_all(&out).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A relay whose targets are all one echo server on loopback; records what it was asked.
    async fn relay(
        key: RelayKey,
    ) -> (SocketAddr, Arc<Mutex<Vec<SocketAddrV6>>>, CancellationToken) {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let asked = Arc::new(Mutex::new(Vec::new()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let record = asked.clone();
        tokio::spawn(serve(
            listener,
            key,
            move |target: SocketAddrV6| {
                record.lock().unwrap().push(target);
                async move {
                    if target.port() == 50000 {
                        TcpStream::connect(echo_addr).await
                    } else {
                        Err(io::Error::new(
                            io::ErrorKind::ConnectionRefused,
                            "no such peer",
                        ))
                    }
                }
            },
            cancel.clone(),
        ));
        (addr, asked, cancel)
    }

    fn target(port: u16) -> SocketAddrV6 {
        SocketAddrV6::new("fdae:41e4:649b:9303::7".parse().unwrap(), port, 0, 0)
    }

    #[tokio::test]
    async fn an_authenticated_request_is_spliced_to_its_target() {
        let key = RelayKey::from_bytes(&RelayKey::generate_bytes()).unwrap();
        let (addr, asked, cancel) = relay(key.clone()).await;
        let mut stream = dial(addr, &key, target(50000)).await.unwrap();
        stream.write_all(b"hello through the relay").await.unwrap();
        let mut back = [0u8; 23];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello through the relay");
        assert_eq!(*asked.lock().unwrap(), [target(50000)]);
        cancel.cancel();
    }

    #[tokio::test]
    async fn a_wrong_key_is_refused_before_anything_is_dialled() {
        let (addr, asked, cancel) =
            relay(RelayKey::from_bytes(&RelayKey::generate_bytes()).unwrap()).await;
        let other = RelayKey::from_bytes(&RelayKey::generate_bytes()).unwrap();
        let err = dial(addr, &other, target(50000)).await.unwrap_err();
        assert!(
            matches!(&err, RelayError::Refused { reason, .. } if reason.contains("relay key")),
            "{err}"
        );
        assert_eq!(io::Error::from(err).kind(), io::ErrorKind::PermissionDenied);
        assert!(asked.lock().unwrap().is_empty());
        cancel.cancel();
    }

    #[tokio::test]
    async fn a_request_signed_for_another_target_or_nonce_is_refused() {
        let key = RelayKey::from_bytes(&RelayKey::generate_bytes()).unwrap();
        let (addr, asked, cancel) = relay(key.clone()).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut nonce = [0u8; NONCE_LEN];
        stream.read_exact(&mut nonce).await.unwrap();
        // Signed for port 50000, asks for 6443.
        let tag = key
            .mac(&nonce, &encode_target(target(50000)))
            .finalize()
            .into_bytes();
        stream
            .write_all(&encode_target(target(6443)))
            .await
            .unwrap();
        stream.write_all(&tag).await.unwrap();
        assert_eq!(stream.read_u8().await.unwrap(), STATUS_REFUSED);
        // The same request replayed on a new connection meets a new nonce.
        let mut again = TcpStream::connect(addr).await.unwrap();
        let mut fresh = [0u8; NONCE_LEN];
        again.read_exact(&mut fresh).await.unwrap();
        assert_ne!(fresh, nonce);
        let tag = key
            .mac(&nonce, &encode_target(target(50000)))
            .finalize()
            .into_bytes();
        again
            .write_all(&encode_target(target(50000)))
            .await
            .unwrap();
        again.write_all(&tag).await.unwrap();
        assert_eq!(again.read_u8().await.unwrap(), STATUS_REFUSED);
        assert!(asked.lock().unwrap().is_empty());
        cancel.cancel();
    }

    #[tokio::test]
    async fn an_unreachable_target_is_reported_with_the_reason() {
        let key = RelayKey::from_bytes(&RelayKey::generate_bytes()).unwrap();
        let (addr, _, cancel) = relay(key.clone()).await;
        let err = dial(addr, &key, target(6443)).await.unwrap_err();
        assert!(
            matches!(&err, RelayError::Unreachable { reason, target: t, .. } if reason.contains("no such peer") && *t == target(6443)),
            "{err}"
        );
        cancel.cancel();
    }

    #[test]
    fn keys_are_32_bytes_and_targets_round_trip() {
        assert!(matches!(
            RelayKey::from_bytes(&[0; 16]),
            Err(RelayError::KeyLength(16))
        ));
        assert_eq!(decode_target(&encode_target(target(50000))), target(50000));
        assert_eq!(
            format!("{:?}", RelayKey::from_bytes(&[7; 32]).unwrap()),
            "RelayKey(..)"
        );
    }
}
