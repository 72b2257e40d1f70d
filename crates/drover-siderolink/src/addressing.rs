//! The tunnel address plan.
//!
//! Prefixes are unique-local (ULA) /64s derived from an installation id, as Talos and Omni do:
//! `sha256(installation id)[16..32]`, byte 0 set to `0xfd`, byte 7 set to the purpose, masked to
//! /64. With an empty installation id SideroLink gets `fdae:41e4:649b:9303::/64` (server `::1`)
//! and WireGuard-over-gRPC virtual peers get `fdae:41e4:649b:9304::/64`.

use std::net::Ipv6Addr;

use rand::Rng;
use sha2::{Digest, Sha256};

/// Purpose byte of the SideroLink prefix.
pub const SIDEROLINK_PURPOSE: u8 = 0x03;
/// Purpose byte of the WireGuard-over-gRPC virtual peer prefix.
pub const GRPC_TUNNEL_PURPOSE: u8 = 0x04;

/// A /64 IPv6 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix64 {
    network: [u8; 8],
}

impl Prefix64 {
    /// The ULA prefix for an installation id and purpose.
    pub fn derive(installation_id: &str, purpose: u8) -> Self {
        let digest = Sha256::digest(installation_id.as_bytes());
        let mut network = [0u8; 8];
        network.copy_from_slice(&digest[16..24]);
        network[0] = 0xfd;
        network[7] = purpose;
        Self { network }
    }

    /// The address with this prefix and the given 64-bit interface id.
    pub fn address(&self, interface_id: u64) -> Ipv6Addr {
        let mut octets = [0u8; 16];
        octets[..8].copy_from_slice(&self.network);
        octets[8..].copy_from_slice(&interface_id.to_be_bytes());
        Ipv6Addr::from(octets)
    }

    /// The network address (interface id 0).
    pub fn network(&self) -> Ipv6Addr {
        self.address(0)
    }

    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        addr.octets()[..8] == self.network
    }

    /// A random address inside the prefix, never the network address or the server's `::1`.
    pub fn random_address(&self, rng: &mut impl Rng) -> Ipv6Addr {
        loop {
            let id: u64 = rng.r#gen();
            if id > 1 {
                return self.address(id);
            }
        }
    }
}

impl std::fmt::Display for Prefix64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/64", self.network())
    }
}

/// The addresses of one Drover installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPlan {
    /// Where machines' tunnel addresses live.
    pub siderolink: Prefix64,
    /// Where WireGuard-over-gRPC virtual peer addresses live.
    pub grpc_tunnel: Prefix64,
}

impl AddressPlan {
    pub fn new(installation_id: &str) -> Self {
        Self {
            siderolink: Prefix64::derive(installation_id, SIDEROLINK_PURPOSE),
            grpc_tunnel: Prefix64::derive(installation_id, GRPC_TUNNEL_PURPOSE),
        }
    }

    /// The server's own tunnel address (`::1` of the SideroLink prefix).
    pub fn server_address(&self) -> Ipv6Addr {
        self.siderolink.address(1)
    }
}

impl Default for AddressPlan {
    /// The plan of an empty installation id, which is what Talos documentation shows.
    fn default() -> Self {
        Self::new("")
    }
}

/// Whether Talos treats an address as a SideroLink peer: byte 0 is `0xfd` and byte 7 is `0x03`.
pub fn is_siderolink_peer(addr: Ipv6Addr) -> bool {
    let o = addr.octets();
    o[0] == 0xfd && o[7] == SIDEROLINK_PURPOSE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_installation_id_gives_the_documented_prefixes() {
        let plan = AddressPlan::default();
        assert_eq!(plan.siderolink.to_string(), "fdae:41e4:649b:9303::/64");
        assert_eq!(plan.grpc_tunnel.to_string(), "fdae:41e4:649b:9304::/64");
        assert_eq!(plan.server_address().to_string(), "fdae:41e4:649b:9303::1");
    }

    #[test]
    fn random_addresses_stay_inside_and_are_siderolink_peers() {
        let plan = AddressPlan::new("some-installation");
        let mut rng = rand::thread_rng();
        for _ in 0..1000 {
            let a = plan.siderolink.random_address(&mut rng);
            assert!(plan.siderolink.contains(a));
            assert!(is_siderolink_peer(a));
            assert_ne!(a, plan.server_address());
        }
        assert!(!plan.siderolink.contains(plan.grpc_tunnel.address(5)));
    }
}
