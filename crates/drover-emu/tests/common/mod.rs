//! A small fake control plane: a real tonic server implementing `sidero.link.ProvisionService`
//! on 127.0.0.1, recording what nodes send.

#![allow(dead_code)] // each test binary uses a different part

pub mod cluster;
pub mod plane;

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use drover_emu::{CancellationToken, JoinUrl, KeyPair};
use drover_proto::sidero::link::provision_service_server::{
    ProvisionService, ProvisionServiceServer,
};
use drover_proto::sidero::link::{ProvisionRequest, ProvisionResponse};
use drover_siderolink::addressing::AddressPlan;
use drover_siderolink::keys::PublicKey;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// The token the fake refuses with `PERMISSION_DENIED`.
pub const BAD_TOKEN: &str = "bad";

/// The server endpoints as the fake puts them on the wire: the primary one last.
pub const WIRE_ENDPOINTS: [&str; 3] =
    ["203.0.113.9:51820", "198.51.100.2:51820", "192.0.2.1:51820"];
/// The same endpoints as a current node must read them: primary first.
pub const PRIMARY_FIRST: [&str; 3] = ["192.0.2.1:51820", "198.51.100.2:51820", "203.0.113.9:51820"];

#[derive(Debug, Default, Clone, Copy)]
pub struct Options {
    /// Answer this many calls with `UNAVAILABLE` before serving normally.
    pub unavailable_first: usize,
    /// Hold every call until this many are in flight at once (then let all through).
    pub hold_until_in_flight: Option<usize>,
}

struct State {
    options: Options,
    server_keys: KeyPair,
    plan: AddressPlan,
    requests: Mutex<Vec<ProvisionRequest>>,
    request_count: watch::Sender<usize>,
    unavailable_left: AtomicUsize,
    addresses: Mutex<HashMap<String, Ipv6Addr>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    gate_open: watch::Sender<bool>,
    connections: AtomicUsize,
}

pub struct FakeControlPlane {
    pub addr: SocketAddr,
    state: Arc<State>,
    shutdown: CancellationToken,
}

impl FakeControlPlane {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let state = Arc::new(State {
            options,
            server_keys: KeyPair::generate(),
            plan: AddressPlan::default(),
            requests: Mutex::new(Vec::new()),
            request_count: watch::Sender::new(0),
            unavailable_left: AtomicUsize::new(options.unavailable_first),
            addresses: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            gate_open: watch::Sender::new(options.hold_until_in_flight.is_none()),
            connections: AtomicUsize::new(0),
        });
        // Bound before returning: clients may connect at once, the backlog holds them.
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let counter = state.clone();
        let incoming = TcpListenerStream::new(listener).inspect(move |accepted| {
            if accepted.is_ok() {
                counter.connections.fetch_add(1, Ordering::SeqCst);
            }
        });
        let shutdown = CancellationToken::new();
        let service = ProvisionServiceServer::new(Fake(state.clone()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned()),
        );
        Self {
            addr,
            state,
            shutdown,
        }
    }

    /// The `siderolink.api` URL of this server with a join token.
    pub fn api(&self, token: &str) -> JoinUrl {
        JoinUrl::parse(&format!("grpc://{}?jointoken={token}", self.addr)).unwrap()
    }

    pub fn server_public_key(&self) -> PublicKey {
        self.state.server_keys.public()
    }

    pub fn server_address(&self) -> Ipv6Addr {
        self.state.plan.server_address()
    }

    /// Every request received, failed ones included, in arrival order.
    pub fn requests(&self) -> Vec<ProvisionRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        let mut count = self.state.request_count.subscribe();
        count.wait_for(|c| *c >= n).await.unwrap();
    }

    /// The most calls that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeControlPlane {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct Fake(Arc<State>);

#[tonic::async_trait]
impl ProvisionService for Fake {
    async fn provision(
        &self,
        request: Request<ProvisionRequest>,
    ) -> Result<Response<ProvisionResponse>, Status> {
        let state = &self.0;
        let request = request.into_inner();
        state.requests.lock().unwrap().push(request.clone());
        state.request_count.send_modify(|c| *c += 1);

        let in_flight = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
        if state
            .options
            .hold_until_in_flight
            .is_some_and(|n| in_flight >= n)
        {
            state.gate_open.send_replace(true);
        }
        let mut gate = state.gate_open.subscribe();
        gate.wait_for(|open| *open).await.unwrap();
        let answer = answer(state, request);
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        answer.map(Response::new)
    }
}

fn answer(state: &State, request: ProvisionRequest) -> Result<ProvisionResponse, Status> {
    let take_failure =
        state
            .unavailable_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            });
    if take_failure.is_ok() {
        return Err(Status::unavailable("the fake is not ready yet"));
    }
    if request.join_token.as_deref() == Some(BAD_TOKEN) {
        return Err(Status::permission_denied("invalid join token"));
    }
    PublicKey::from_base64(&request.node_public_key)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;

    let mut addresses = state.addresses.lock().unwrap();
    let next = addresses.len() as u64;
    let address = *addresses
        .entry(request.node_uuid)
        .or_insert_with(|| state.plan.siderolink.address(0x100 + next));
    Ok(ProvisionResponse {
        server_endpoint: WIRE_ENDPOINTS.map(String::from).to_vec(),
        server_public_key: state.server_keys.public().to_base64(),
        node_address_prefix: format!("{address}/64"),
        server_address: state.plan.server_address().to_string(),
        grpc_peer_addr_port: String::new(),
    })
}
