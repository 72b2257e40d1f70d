//! A provisioned machine at work: its WireGuard tunnel to the control plane (UDP, or carried
//! over gRPC), its services on the tunnel address (see [`crate::services`]), events to the sink
//! and kernel log lines to the receiver, Talos's reconnect rules (next endpoint when the
//! handshake is stale, Provision again when the endpoints run out), and reboots (installs,
//! resets) with a new key and a new boot.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use drover_proto::sidero::link::PeerPacket;
use drover_proto::sidero::link::wire_guard_over_grpc_service_client::WireGuardOverGrpcServiceClient;
use drover_siderolink::{EVENT_SINK_PORT, KERNEL_LOG_PORT};
use drover_talos::apid::{DiskFact, Machine, MachineFacts};
use drover_talos::kmsg::KmsgRecord;
use drover_tunnel::{NodeConfig, NodeEndpoint, NodeLink, TunnelStream};
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::link::Link;
use crate::runtime::Lifecycle;
use crate::{EmulatedMachine, MachineIdentity, Provisioned, RetryPolicy};

/// Header naming the virtual peer address of a WireGuard-over-gRPC stream.
const PEER_ADDRESS_HEADER: &str = "x-siderolink-ipv6-addr";

/// How long a tunnel's services may take to finish the calls in flight when it closes.
const SERVICES_DRAIN: Duration = Duration::from_secs(5);

/// How long a rebooting machine keeps its tunnel after its services stopped, for the last
/// replies to get out (what a kernel's TCP stack does for the closed sockets of a real node
/// whose reboot takes seconds anyway).
const REPLY_LINGER: Duration = Duration::from_millis(200);

/// Timings of a running node. The defaults are Talos's; tests shorten them.
#[derive(Debug, Clone)]
pub struct NodeBehaviour {
    /// WireGuard persistent keepalive (Talos: 25 s).
    pub keepalive: Duration,
    /// How often the last handshake is checked (Talos: 30 s).
    pub handshake_check: Duration,
    /// A handshake older than this moves the node to the next endpoint (Talos: 275 s).
    pub endpoint_timeout: Duration,
    /// Renew the session once its handshake is this old. WireGuard renews it every 120 s by
    /// itself, well inside Talos's 275 s; a test with a shorter endpoint timeout renews sooner,
    /// or its healthy tunnels would look stale. `None`: WireGuard's own schedule.
    pub rehandshake_after: Option<Duration>,
    /// Kernel log lines the machine sends when its tunnel first comes up.
    pub boot_log_lines: usize,
}

impl Default for NodeBehaviour {
    fn default() -> Self {
        Self {
            keepalive: Duration::from_secs(25),
            handshake_check: Duration::from_secs(30),
            endpoint_timeout: Duration::from_secs(275),
            rehandshake_after: None,
            boot_log_lines: 20,
        }
    }
}

/// How the tunnel reaches the server.
#[derive(Debug, Clone)]
enum Carrier {
    Udp(SocketAddr),
    /// WireGuard over gRPC, as the virtual peer `[ip]:port`.
    Grpc(String),
}

/// What a running machine reports about itself through its Talos API.
pub fn facts_of(machine: &EmulatedMachine) -> MachineFacts {
    machine.runtime.facts()
}

/// The facts of the machine `identity` running Talos `talos_version`.
pub(crate) fn facts(identity: &MachineIdentity, talos_version: &str) -> MachineFacts {
    let uuid = &identity.uuid;
    MachineFacts {
        hostname: format!("talos-{}", &uuid[..8]),
        talos_version: talos_version.to_owned(),
        arch: "amd64".into(),
        platform: "metal".into(),
        cores: 4,
        memory_mib: 8192,
        disks: vec![DiskFact {
            device_name: "/dev/sda".into(),
            size: 128_000_000_000,
            model: "Drover Emulated Disk".into(),
            serial: format!("EMU-{}", &uuid[..8]),
            system_disk: true,
        }],
        services: vec![("apid".into(), "Running".into(), true)],
    }
}

/// How a tunnel ended.
struct LinkEnd {
    /// The boot log was delivered.
    logs_sent: bool,
    /// The machine reboots (an install or reset finished).
    reboot: bool,
}

impl EmulatedMachine {
    /// Keeps the provisioned machine's tunnel up and its services running until `cancel`,
    /// moving to the next endpoint when the handshake goes stale, provisioning again when the
    /// endpoints run out, and rebooting when its machine API asked for it (provisioning again
    /// through `link`, with the new boot's key).
    pub(crate) async fn run_tunnel(
        &mut self,
        link: &Link<'_>,
        policy: &RetryPolicy,
        behaviour: &NodeBehaviour,
        lifecycle: &Lifecycle,
        cancel: &CancellationToken,
    ) {
        let grpc = link.channel().await.ok();
        let mut logs_sent = false;
        'boot: while !cancel.is_cancelled() {
            let Some(p) = self.provisioned().cloned() else {
                if self.provision_via(link, policy, cancel).await.is_err() {
                    break;
                }
                continue;
            };
            self.runtime.set_address(p.node_address);
            let carriers: Vec<Carrier> = match &p.grpc_peer_addr_port {
                Some(peer) => vec![Carrier::Grpc(peer.clone())],
                None => p
                    .server_endpoints
                    .iter()
                    .filter_map(|e| resolve(e))
                    .map(Carrier::Udp)
                    .collect(),
            };
            for carrier in carriers {
                if cancel.is_cancelled() {
                    break 'boot;
                }
                let boot_lines = if logs_sent {
                    0
                } else {
                    behaviour.boot_log_lines
                };
                let tunnel = self.connect_once(
                    &p,
                    carrier.clone(),
                    grpc.clone(),
                    behaviour,
                    lifecycle,
                    boot_lines,
                    cancel,
                );
                match tunnel.await {
                    Ok(end) if end.reboot => {
                        tracing::info!(uuid = %self.identity().uuid, "rebooting");
                        self.reboot();
                        logs_sent = false;
                        tokio::select! {
                            () = cancel.cancelled() => break 'boot,
                            () = tokio::time::sleep(lifecycle.reboot) => continue 'boot,
                        }
                    }
                    Ok(end) => logs_sent |= end.logs_sent,
                    Err(err) => {
                        tracing::warn!(uuid = %self.identity().uuid, ?carrier, error = %err, "tunnel failed")
                    }
                }
            }
            if cancel.is_cancelled() {
                break;
            }
            // Out of endpoints: Talos calls Provision again (same boot, same key).
            tracing::info!(uuid = %self.identity().uuid, "no endpoint answered; provisioning again");
            self.forget_provisioned();
        }
        self.runtime.power_off();
    }

    /// One tunnel over one carrier, until its handshake goes stale, `cancel`, or an action
    /// requested through the machine API that ends in a reboot.
    #[allow(clippy::too_many_arguments)]
    async fn connect_once(
        &self,
        p: &Provisioned,
        carrier: Carrier,
        grpc: Option<Channel>,
        behaviour: &NodeBehaviour,
        lifecycle: &Lifecycle,
        boot_lines: usize,
        cancel: &CancellationToken,
    ) -> std::io::Result<LinkEnd> {
        let stop = cancel.child_token();
        let endpoint = match &carrier {
            Carrier::Udp(addr) => NodeEndpoint::Udp(*addr),
            Carrier::Grpc(peer) => {
                let channel =
                    grpc.ok_or_else(|| std::io::Error::other("no connection to the machine API"))?;
                grpc_carrier(channel, peer.clone(), stop.clone()).await?
            }
        };
        let link = Arc::new(
            NodeLink::start(NodeConfig {
                key: self.keys().clone(),
                address: p.node_address,
                server_public_key: p.server_public_key,
                server_address: p.server_address,
                endpoint,
                persistent_keepalive: behaviour.keepalive,
                tcp_buffer_size: 16 * 1024,
            })
            .await?,
        );
        let started = SystemTime::now();

        let services = tokio::spawn(crate::services::run(
            self.runtime.clone(),
            link.clone(),
            stop.clone(),
        ));
        tokio::spawn(crate::events::publish(
            self.runtime.events(),
            tunnel_channel(link.clone(), p.server_address, EVENT_SINK_PORT),
            stop.clone(),
        ));
        let logs = tokio::spawn(send_kernel_log(
            link.clone(),
            p.server_address,
            self.identity().uuid.clone(),
            boot_lines,
            stop.clone(),
        ));

        let mut check = tokio::time::interval(behaviour.handshake_check);
        check.tick().await;
        let mut reboot = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.runtime.action_requested() => {
                    if let Some(action) = self.runtime.take_action() {
                        // Powered off mid-action (a hanging upgrade, say): abandoned.
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = self.runtime.perform(action, lifecycle) => {}
                        }
                        reboot = true;
                        break;
                    }
                    continue;
                }
                _ = check.tick() => {}
            }
            let last = link.last_handshake().unwrap_or(started);
            let age = SystemTime::now().duration_since(last).unwrap_or_default();
            if age >= behaviour.endpoint_timeout {
                tracing::info!(uuid = %self.identity().uuid, ?carrier, "handshake is stale; trying the next endpoint");
                break;
            }
            if behaviour
                .rehandshake_after
                .is_some_and(|after| age >= after)
            {
                link.rehandshake();
            }
        }
        stop.cancel();
        // In-flight machine API calls finish before the tunnel goes, and on a reboot their
        // replies (the one that asked for it, above all) get a moment to reach the client:
        // shutting the tunnel down resets its connections, data still queued included.
        let _ = tokio::time::timeout(SERVICES_DRAIN, services).await;
        if reboot {
            tokio::time::sleep(REPLY_LINGER).await;
        }
        link.shutdown().await;
        Ok(LinkEnd {
            logs_sent: logs.await.unwrap_or(false),
            reboot,
        })
    }
}

fn resolve(endpoint: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    endpoint.to_socket_addrs().ok()?.next()
}

/// Opens `CreateStream` for the virtual peer and returns the node's end of it.
async fn grpc_carrier(
    channel: Channel,
    peer: String,
    stop: CancellationToken,
) -> std::io::Result<NodeEndpoint> {
    let (outgoing, from_node) = mpsc::channel::<Bytes>(256);
    let (to_node, incoming) = mpsc::channel::<Bytes>(256);
    let mut request =
        tonic::Request::new(
            ReceiverStream::new(from_node).map(|data: Bytes| PeerPacket {
                data: data.to_vec(),
            }),
        );
    request.metadata_mut().insert(
        PEER_ADDRESS_HEADER,
        peer.parse()
            .map_err(|_| std::io::Error::other("virtual peer address is not a header value"))?,
    );
    let mut replies = WireGuardOverGrpcServiceClient::new(channel)
        .create_stream(request)
        .await
        .map_err(std::io::Error::other)?
        .into_inner();
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return,
                message = replies.message() => message,
            };
            match message {
                Ok(Some(packet)) => {
                    if to_node.send(Bytes::from(packet.data)).await.is_err() {
                        return;
                    }
                }
                Ok(None) | Err(_) => return,
            }
        }
    });
    Ok(NodeEndpoint::Channel { outgoing, incoming })
}

/// A plaintext HTTP/2 connector through the tunnel to one address.
#[derive(Clone)]
struct TunnelConnector {
    link: Arc<NodeLink>,
    target: SocketAddrV6,
}

impl tower_service::Service<Uri> for TunnelConnector {
    type Response = TokioIo<TunnelStream>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (link, target) = (self.link.clone(), self.target);
        Box::pin(async move { link.connect(target).await.map(TokioIo::new) })
    }
}

fn tunnel_channel(link: Arc<NodeLink>, server: Ipv6Addr, port: u16) -> Channel {
    Endpoint::from_shared(format!("http://[{server}]:{port}"))
        .expect("valid URI")
        .connect_with_connector_lazy(TunnelConnector {
            link,
            target: SocketAddrV6::new(server, port, 0, 0),
        })
}

/// Streams `lines` boot log lines to the kernel log receiver, then keeps the connection open.
/// Returns whether the lines were delivered.
async fn send_kernel_log(
    link: Arc<NodeLink>,
    server: Ipv6Addr,
    uuid: String,
    lines: usize,
    stop: CancellationToken,
) -> bool {
    if lines == 0 {
        return false;
    }
    let target = SocketAddrV6::new(server, KERNEL_LOG_PORT, 0, 0);
    let mut delay = Duration::from_millis(100);
    let mut stream = loop {
        let connected = tokio::select! {
            () = stop.cancelled() => return false,
            c = link.connect(target) => c,
        };
        match connected {
            Ok(s) => break s,
            Err(_) => {
                tokio::select! {
                    () = stop.cancelled() => return false,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    };
    let mut text = String::new();
    for seq in 0..lines {
        let mut record = KmsgRecord::new(boot_line(seq, &uuid), chrono::Utc::now());
        record.talos_level = Some("info".into());
        record.facility = Some("kern".into());
        record.seq = Some(seq as u64);
        text.push_str(&drover_talos::kmsg::encode_line(&record));
    }
    if stream.write_all(text.as_bytes()).await.is_err() || stream.flush().await.is_err() {
        return false;
    }
    stop.cancelled().await;
    let _ = stream.shutdown().await;
    true
}

fn boot_line(seq: usize, uuid: &str) -> String {
    match seq {
        0 => "Linux version 6.12.0-talos (emulated by drover-emu)".to_owned(),
        1 => format!("DMI: Drover Emulated Machine, UUID {uuid}"),
        2 => "[talos] boot sequence started".to_owned(),
        n => format!("[talos] emulated boot message {n}"),
    }
}
