//! A fake control plane with a real tunnel hub, standing in for droverd: `Provision` answers
//! with the hub's UDP endpoint and key and makes the machine a hub peer; an event sink inside
//! the tunnel records what each machine reports; tests reach the machines' apid and Kubernetes
//! API through the hub, as droverd does.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_emu::{CancellationToken, JoinUrl, KeyPair, NodeBehaviour, RetryPolicy};
use drover_proto::sidero::link::provision_service_server::{
    ProvisionService, ProvisionServiceServer,
};
use drover_proto::sidero::link::{ProvisionRequest, ProvisionResponse};
use drover_proto::talos::events::event_sink_service_server::{
    EventSinkService, EventSinkServiceServer,
};
use drover_proto::talos::events::{EventRequest, EventResponse};
use drover_siderolink::addressing::AddressPlan;
use drover_siderolink::keys::PublicKey;
use drover_talos::events::{NodeEvent, Stage};
use drover_tunnel::{Hub, HubConfig, TunnelConnectInfo};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use secrecy::ExposeSecret as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Node timings for tests: quick keepalives, no kernel log.
pub fn fast_node() -> NodeBehaviour {
    NodeBehaviour {
        keepalive: Duration::from_secs(1),
        handshake_check: Duration::from_secs(1),
        endpoint_timeout: Duration::from_secs(30),
        rehandshake_after: None,
        boot_log_lines: 0,
    }
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(200),
        max_attempts: None,
    }
}

/// A safety net so a broken emulator hangs no test run; never used to wait for something.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

#[derive(Default)]
struct Recorded {
    addresses: Mutex<HashMap<String, Ipv6Addr>>,
    stages: Mutex<HashMap<Ipv6Addr, Vec<Stage>>>,
    /// Bumped on every recorded stage.
    events: tokio::sync::watch::Sender<u64>,
}

pub struct TunnelPlane {
    pub hub: Hub,
    addr: SocketAddr,
    recorded: Arc<Recorded>,
    stop: CancellationToken,
}

impl Drop for TunnelPlane {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TunnelPlane {
    pub async fn start() -> Self {
        let plan = AddressPlan::new("drover-emu-tests");
        let mut config = HubConfig::new(KeyPair::generate(), plan.server_address());
        config.udp_bind = Some("127.0.0.1:0".parse().unwrap());
        let hub = Hub::start(config).await.unwrap();
        let recorded = Arc::new(Recorded::default());
        let stop = CancellationToken::new();

        let sink = hub.listen(drover_talos::EVENT_SINK_PORT).await.unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(EventSinkServiceServer::new(Sink(recorded.clone())))
                .serve_with_incoming_shutdown(sink.into_incoming(), stop.clone().cancelled_owned()),
        );

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let provision = Provision {
            hub: hub.clone(),
            plan,
            recorded: recorded.clone(),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ProvisionServiceServer::new(provision))
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    stop.clone().cancelled_owned(),
                ),
        );
        Self {
            hub,
            addr,
            recorded,
            stop,
        }
    }

    pub fn api(&self) -> JoinUrl {
        JoinUrl::parse(&format!("grpc://{}?jointoken=t", self.addr)).unwrap()
    }

    /// The stages a machine reported, in order, over all its boots, once they satisfy `done`.
    pub async fn stages_until(
        &self,
        address: Ipv6Addr,
        mut done: impl FnMut(&[Stage]) -> bool,
    ) -> Vec<Stage> {
        let mut events = self.recorded.events.subscribe();
        within("the sink to hear the stages", async {
            loop {
                let stages = self.stages(address);
                if done(&stages) {
                    return stages;
                }
                events.changed().await.unwrap();
            }
        })
        .await
    }

    fn stages(&self, address: Ipv6Addr) -> Vec<Stage> {
        let stages = self.recorded.stages.lock().unwrap();
        stages.get(&address).cloned().unwrap_or_default()
    }

    fn dial(&self, address: Ipv6Addr, port: u16) -> impl Fn() -> DialFuture + Clone + use<> {
        let hub = self.hub.clone();
        let target = SocketAddrV6::new(address, port, 0, 0);
        move || {
            let hub = hub.clone();
            Box::pin(async move { hub.connect(target).await })
        }
    }

    /// apid of a machine in maintenance mode.
    pub fn maintenance_apid(&self, address: Ipv6Addr) -> Channel {
        drover_talos::client::maintenance_channel(
            self.dial(address, drover_talos::APID_PORT),
            &format!("[{address}]:{}", drover_talos::APID_PORT),
        )
        .unwrap()
    }

    /// apid of a configured machine, as a client with `cert` (signed by `os_ca`).
    pub fn apid(
        &self,
        address: Ipv6Addr,
        os_ca: &drover_pki::CertAndKey,
        cert: &drover_pki::CertAndKey,
    ) -> Channel {
        drover_talos::client::mtls_channel(
            self.dial(address, drover_talos::APID_PORT),
            &format!("[{address}]:{}", drover_talos::APID_PORT),
            &os_ca.cert_pem,
            &cert.cert_pem,
            cert.key_pem.expose_secret(),
        )
        .unwrap()
    }

    /// One HTTP/1.1 request to a machine's Kubernetes API, trusting `kubernetes_ca`, with
    /// `client` as the client certificate if any. Returns the status code and the body.
    pub async fn kube(
        &self,
        address: Ipv6Addr,
        kubernetes_ca: &drover_pki::CertAndKey,
        client: Option<&drover_pki::CertAndKey>,
        request: &str,
    ) -> Result<(u16, String), String> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(kubernetes_ca.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match client {
            Some(cert) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(cert.key_pem.expose_secret().as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = (self.dial(address, drover_emu::KUBERNETES_API_PORT))()
            .await
            .map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        // The name of the API's certificate (the address is in it too).
        let name = ServerName::try_from("kubernetes").unwrap();
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        tls.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
        Ok(parse_response(&raw))
    }
}

type DialFuture =
    std::pin::Pin<Box<dyn Future<Output = std::io::Result<drover_tunnel::TunnelStream>> + Send>>;

/// `GET path` with extra header lines, closing the connection after the answer.
pub fn get(path: &str, headers: &[(&str, &str)]) -> String {
    request("GET", path, headers, "")
}

pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut text = format!(
        "{method} {path} HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text
}

/// Status code and body of an HTTP/1.1 response (plain or chunked).
fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    if !chunked {
        return (code, body.to_owned());
    }
    let mut rest = body;
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    (code, out)
}

struct Provision {
    hub: Hub,
    plan: AddressPlan,
    recorded: Arc<Recorded>,
}

#[tonic::async_trait]
impl ProvisionService for Provision {
    async fn provision(
        &self,
        request: Request<ProvisionRequest>,
    ) -> Result<Response<ProvisionResponse>, Status> {
        let request = request.into_inner();
        let key = PublicKey::from_base64(&request.node_public_key)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let address = {
            let mut addresses = self.recorded.addresses.lock().unwrap();
            let next = addresses.len() as u64;
            *addresses
                .entry(request.node_uuid)
                .or_insert_with(|| self.plan.siderolink.address(0x100 + next))
        };
        self.hub.upsert_peer(key, address);
        Ok(Response::new(ProvisionResponse {
            server_endpoint: vec![self.hub.udp_local_addr().unwrap().to_string()],
            server_public_key: self.hub.public_key().to_base64(),
            node_address_prefix: format!("{address}/64"),
            server_address: self.hub.server_address().to_string(),
            grpc_peer_addr_port: String::new(),
        }))
    }
}

struct Sink(Arc<Recorded>);

#[tonic::async_trait]
impl EventSinkService for Sink {
    async fn publish(
        &self,
        request: Request<EventRequest>,
    ) -> Result<Response<EventResponse>, Status> {
        let from = *request
            .extensions()
            .get::<TunnelConnectInfo>()
            .expect("tunnel connection")
            .remote
            .ip();
        if let Ok(NodeEvent::MachineStatus { stage, .. }) =
            drover_talos::events::decode_request(request.get_ref())
        {
            self.0
                .stages
                .lock()
                .unwrap()
                .entry(from)
                .or_default()
                .push(stage);
            self.0.events.send_modify(|n| *n += 1);
        }
        Ok(Response::new(EventResponse {}))
    }
}
