//! Just enough IPv6/TCP header parsing to police and route packets.

use std::net::Ipv6Addr;

/// Fixed IPv6 header length.
pub(crate) const IPV6_HEADER_LEN: usize = 40;
const NEXT_HEADER_TCP: u8 = 6;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;

/// Source and destination of an IPv6 packet, or `None` if it is not one.
pub(crate) fn ipv6_addresses(packet: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr)> {
    if packet.len() < IPV6_HEADER_LEN || packet[0] >> 4 != 6 {
        return None;
    }
    let src: [u8; 16] = packet[8..24].try_into().ok()?;
    let dst: [u8; 16] = packet[24..40].try_into().ok()?;
    Some((Ipv6Addr::from(src), Ipv6Addr::from(dst)))
}

/// Destination of an IPv6 packet.
pub(crate) fn ipv6_destination(packet: &[u8]) -> Option<Ipv6Addr> {
    ipv6_addresses(packet).map(|(_, dst)| dst)
}

/// A TCP segment that opens a connection (SYN without ACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syn {
    pub src: Ipv6Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// The connection-opening SYN carried directly in an IPv6 packet, if this is one.
pub(crate) fn tcp_syn(packet: &[u8]) -> Option<Syn> {
    let (src, _) = ipv6_addresses(packet)?;
    if packet[6] != NEXT_HEADER_TCP || packet.len() < IPV6_HEADER_LEN + 20 {
        return None;
    }
    let tcp = &packet[IPV6_HEADER_LEN..];
    let flags = tcp[13];
    if flags & TCP_FLAG_SYN == 0 || flags & TCP_FLAG_ACK != 0 {
        return None;
    }
    Some(Syn {
        src,
        src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(src: Ipv6Addr, dst: Ipv6Addr, flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 60];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&20u16.to_be_bytes());
        p[6] = NEXT_HEADER_TCP;
        p[8..24].copy_from_slice(&src.octets());
        p[24..40].copy_from_slice(&dst.octets());
        p[40..42].copy_from_slice(&40000u16.to_be_bytes());
        p[42..44].copy_from_slice(&8090u16.to_be_bytes());
        p[53] = flags;
        p
    }

    #[test]
    fn parses_addresses_and_syns() {
        let a: Ipv6Addr = "fd00::2".parse().unwrap();
        let b: Ipv6Addr = "fd00::1".parse().unwrap();
        let syn = packet(a, b, TCP_FLAG_SYN);
        assert_eq!(ipv6_addresses(&syn), Some((a, b)));
        assert_eq!(
            tcp_syn(&syn),
            Some(Syn {
                src: a,
                src_port: 40000,
                dst_port: 8090
            })
        );
        assert_eq!(tcp_syn(&packet(a, b, TCP_FLAG_SYN | TCP_FLAG_ACK)), None);
        assert_eq!(tcp_syn(&packet(a, b, TCP_FLAG_ACK)), None);
        assert_eq!(ipv6_addresses(&[0x45; 40]), None);
        assert_eq!(ipv6_addresses(&[0x60; 39]), None);
    }
}
