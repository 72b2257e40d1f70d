//! Benchmark: one TCP stream from a node to the hub through the userspace tunnel over loopback
//! UDP, next to this machine's raw ChaCha20-Poly1305 speed on the same bytes in MTU-sized
//! packets, measured in the same run.
//!
//!     cargo run --release -p drover-tunnel --example throughput [MIB]

use std::net::SocketAddrV6;
use std::time::Instant;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use drover_siderolink::addressing::AddressPlan;
use drover_siderolink::keys::KeyPair;
use drover_tunnel::{Hub, HubConfig, NodeConfig, NodeEndpoint, NodeLink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PACKET: usize = 1280 - 40 - 20; // TCP payload of one MTU-sized IPv6 packet

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64);
    let total = mib * 1024 * 1024;

    // Raw AEAD: seal every packet once, as WireGuard does on the sending side.
    let cipher = ChaCha20Poly1305::new(&[7u8; 32].into());
    let mut packet = vec![0u8; PACKET];
    let started = Instant::now();
    for n in 0..total / PACKET {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&(n as u64).to_le_bytes());
        let tag = cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &[], &mut packet)
            .expect("seal");
        std::hint::black_box(tag);
    }
    let raw = total as f64 / started.elapsed().as_secs_f64() / 1048576.0;

    let plan = AddressPlan::default();
    let (server_key, node_key) = (KeyPair::generate(), KeyPair::generate());
    let mut config = HubConfig::new(server_key.clone(), plan.server_address());
    config.udp_bind = Some("127.0.0.1:0".parse().expect("addr"));
    let hub = Hub::start(config).await?;
    let node_address = plan.siderolink.address(0x1234);
    hub.upsert_peer(node_key.public(), node_address);
    let node = NodeLink::start(NodeConfig::new(
        node_key,
        node_address,
        server_key.public(),
        plan.server_address(),
        NodeEndpoint::Udp(hub.udp_local_addr().expect("udp")),
    ))
    .await?;
    let listener = hub.listen(7000).await?;
    let reader = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < total {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got += n;
        }
        std::io::Result::Ok(got)
    });
    let mut stream = node
        .connect(SocketAddrV6::new(plan.server_address(), 7000, 0, 0))
        .await?;
    let chunk = vec![0x5au8; 64 * 1024];
    let started = Instant::now();
    let mut sent = 0;
    while sent < total {
        let n = (total - sent).min(chunk.len());
        stream.write_all(&chunk[..n]).await?;
        sent += n;
    }
    stream.flush().await?;
    let got = reader.await.expect("reader")?;
    let tunnel = got as f64 / started.elapsed().as_secs_f64() / 1048576.0;
    println!("raw ChaCha20-Poly1305 seal, {PACKET}-byte packets: {raw:.0} MiB/s");
    println!(
        "one TCP stream through the tunnel ({mib} MiB):      {tunnel:.1} MiB/s ({:.1}% of raw)",
        100.0 * tunnel / raw
    );
    node.shutdown().await;
    hub.shutdown().await;
    Ok(())
}
