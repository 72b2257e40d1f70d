//! Interoperability with a WireGuard implementation that is not ours: a standard userspace
//! WireGuard (`boringtun-cli`, configured with `wg` from wireguard-tools) runs in a network
//! namespace this test creates, with a key `wg genkey` made, and reaches droverd's event sink
//! through the tunnel.
//!
//! Needs root, `/dev/net/tun`, `ip`, `wg` and `boringtun-cli` (`scripts/install-prereqs` installs
//! them; set `BORINGTUN_CLI` to its path if it is not on PATH). Without them the test says so and
//! returns, except under `CI=true`, where missing prerequisites fail it.

use std::net::{Ipv6Addr, SocketAddrV6};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use drover_e2e::{Extra, TestDrover, eventually};
use drover_proto::sidero::link::ProvisionRequest;
use drover_proto::sidero::link::provision_service_client::ProvisionServiceClient;

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn run_with_input(args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

fn boringtun_cli() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BORINGTUN_CLI") {
        return Some(PathBuf::from(p));
    }
    [
        "/var/tmp/drover-tools/bin/boringtun-cli",
        "/usr/local/bin/boringtun-cli",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .or_else(|| {
        let out = Command::new("sh")
            .args(["-c", "command -v boringtun-cli"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })
}

/// What is missing to run this test, if anything.
fn missing_prerequisite() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("root".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun".into());
    }
    for tool in ["ip", "wg"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Some(tool.into());
        }
    }
    if boringtun_cli().is_none() {
        return Some("boringtun-cli".into());
    }
    None
}

/// The namespace, veth pair and boringtun process, removed on drop.
struct Namespace {
    name: String,
    host_veth: String,
    boringtun: Option<std::process::Child>,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(mut child) = self.boringtun.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_wireguard_implementation_reaches_the_event_sink() {
    if let Some(missing) = missing_prerequisite() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run the interop test, but {missing} is missing"
        );
        eprintln!("skipping the WireGuard interop test: {missing} is missing");
        return;
    }
    let tag = std::process::id() % 250;
    let ns = Namespace {
        name: format!("drover-it-{tag}"),
        host_veth: format!("drvh{tag}"),
        boringtun: None,
    };
    let (host_ip, ns_ip) = (format!("10.231.{tag}.1"), format!("10.231.{tag}.2"));
    let _ = Command::new("ip").args(["netns", "del", &ns.name]).output();
    let _ = Command::new("ip")
        .args(["link", "del", &ns.host_veth])
        .output();

    let drover = TestDrover::start_with(Extra {
        wireguard_addr: Some("0.0.0.0:0".parse().unwrap()),
        ..Extra::default()
    })
    .await;
    let wg_port = drover
        .server()
        .dataplane()
        .hub()
        .udp_local_addr()
        .unwrap()
        .port();

    // The node's key comes from wireguard-tools, not from us.
    let private = run(&["wg", "genkey"]);
    let public = run_with_input(&["wg", "pubkey"], &private);
    let token = drover.join_token("interop").await;
    let provisioned = ProvisionServiceClient::new(drover.machine_api_channel().await)
        .provision(ProvisionRequest {
            node_uuid: "0a0b0c0d-0000-4000-8000-00000000beef".into(),
            node_public_key: public.trim().into(),
            join_token: Some(token.secret.clone()),
            node_unique_token: Some("interop".into()),
            talos_version: Some("v1.13.8".into()),
            wireguard_over_grpc: Some(false),
        })
        .await
        .expect("provisioned")
        .into_inner();

    // A namespace with a veth to the host, and boringtun's interface in it.
    let ns_veth = format!("drvn{tag}");
    let wg_if = format!("wgd{tag}");
    run(&["ip", "netns", "add", &ns.name]);
    run(&[
        "ip",
        "link",
        "add",
        &ns.host_veth,
        "type",
        "veth",
        "peer",
        "name",
        &ns_veth,
    ]);
    run(&["ip", "link", "set", &ns_veth, "netns", &ns.name]);
    run(&[
        "ip",
        "addr",
        "add",
        &format!("{host_ip}/30"),
        "dev",
        &ns.host_veth,
    ]);
    run(&["ip", "link", "set", &ns.host_veth, "up"]);
    run(&[
        "ip",
        "-n",
        &ns.name,
        "addr",
        "add",
        &format!("{ns_ip}/30"),
        "dev",
        &ns_veth,
    ]);
    run(&["ip", "-n", &ns.name, "link", "set", &ns_veth, "up"]);
    run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);

    let mut ns = ns;
    ns.boringtun = Some(
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(boringtun_cli().unwrap())
            .args(["--foreground", "--disable-drop-privileges", &wg_if])
            .env("WG_LOG_FILE", "/dev/null")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (name, wg_if2) = (ns.name.clone(), wg_if.clone());
    eventually("boringtun's interface", Duration::from_secs(30), || {
        let (name, wg_if) = (name.clone(), wg_if2.clone());
        async move {
            let out = Command::new("ip")
                .args(["netns", "exec", &name, "wg", "show", &wg_if])
                .output()
                .ok()?;
            out.status.success().then_some(())
        }
    })
    .await;
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), private.trim()).unwrap();
    let server_address = provisioned.server_address.clone();
    // The primary endpoint is last on the wire; here the host is reached over the veth.
    let endpoint = format!("{host_ip}:{wg_port}");
    run(&[
        "ip",
        "netns",
        "exec",
        &ns.name,
        "wg",
        "set",
        &wg_if,
        "private-key",
        key_file.path().to_str().unwrap(),
        "peer",
        &provisioned.server_public_key,
        "endpoint",
        &endpoint,
        "allowed-ips",
        &format!("{server_address}/128"),
        "persistent-keepalive",
        "1",
    ]);
    run(&[
        "ip",
        "-n",
        &ns.name,
        "addr",
        "add",
        &provisioned.node_address_prefix,
        "dev",
        &wg_if,
    ]);
    run(&[
        "ip", "-n", &ns.name, "link", "set", &wg_if, "mtu", "1280", "up",
    ]);

    // Inside the namespace, publish an event to droverd's sink over the tunnel.
    let exe = std::env::current_exe().unwrap();
    let status = tokio::process::Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(exe)
        .args(["--exact", "publish_from_inside_the_namespace", "--ignored"])
        .env("DROVER_INTEROP_SINK", format!("[{server_address}]:8090"))
        .stdout(Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(
        status.success(),
        "publishing through the standard WireGuard tunnel failed"
    );

    let client = drover.client();
    let machine = eventually(
        "the event to be recorded and the machine connected",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            async move {
                let m = client
                    .get_machine("0a0b0c0d-0000-4000-8000-00000000beef")
                    .await
                    .ok()?;
                (m.stage.as_deref() == Some("running") && m.connected).then_some(m)
            }
        },
    )
    .await;
    assert!(machine.ready);
    assert!(
        drover
            .server()
            .dataplane()
            .hub()
            .peer_status(machine.address.parse::<Ipv6Addr>().unwrap())
            .unwrap()
            .last_handshake
            .is_some()
    );
    drop(ns);
    drover.stop().await;
}

/// Run by the test above inside the namespace (not on its own): publishes one
/// MachineStatusEvent over plain TCP through the kernel's routing into boringtun's interface.
#[tokio::test]
#[ignore = "run inside the namespace by a_standard_wireguard_implementation_reaches_the_event_sink"]
async fn publish_from_inside_the_namespace() {
    use drover_proto::talos::events::event_sink_service_client::EventSinkServiceClient;
    use drover_talos::events::{Stage, encode_machine_status, event_request};

    let Ok(sink) = std::env::var("DROVER_INTEROP_SINK") else {
        return;
    };
    let sink: SocketAddrV6 = sink.parse().unwrap();
    let channel = eventually(
        "the sink through the tunnel",
        Duration::from_secs(30),
        || async move {
            tonic::transport::Endpoint::from_shared(format!("http://{sink}"))
                .unwrap()
                .connect_timeout(Duration::from_secs(2))
                .connect()
                .await
                .ok()
        },
    )
    .await;
    EventSinkServiceClient::new(channel)
        .publish(event_request(
            encode_machine_status(Stage::Running, true, &[]),
            "interop-1",
            "",
        ))
        .await
        .expect("the sink answered through the tunnel");
}
