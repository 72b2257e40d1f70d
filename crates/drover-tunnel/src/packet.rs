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

/// The fields of a TCP segment (carried directly in IPv6) that flow control cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpSegment {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub payload_len: usize,
}

pub(crate) const TCP_FLAG_FIN: u8 = 0x01;
pub(crate) const TCP_FLAG_RST: u8 = 0x04;
pub(crate) const TCP_ACK: u8 = TCP_FLAG_ACK;
pub(crate) const TCP_CONTROL: u8 = TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST;

pub(crate) fn tcp_segment(packet: &[u8]) -> Option<TcpSegment> {
    let (src, dst) = ipv6_addresses(packet)?;
    if packet[6] != NEXT_HEADER_TCP {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    let end = IPV6_HEADER_LEN + payload_len;
    if packet.len() < end || payload_len < 20 {
        return None;
    }
    let tcp = &packet[IPV6_HEADER_LEN..end];
    let header_len = usize::from(tcp[12] >> 4) * 4;
    if header_len < 20 || header_len > tcp.len() {
        return None;
    }
    Some(TcpSegment {
        src,
        dst,
        src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        ack: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
        flags: tcp[13],
        window: u16::from_be_bytes([tcp[14], tcp[15]]),
        payload_len: tcp.len() - header_len,
    })
}

/// Rewrites the sequence number of a TCP segment in IPv6 and fixes its checksum.
pub(crate) fn set_tcp_seq(packet: &mut [u8], seq: u32) {
    let payload_len = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    let end = IPV6_HEADER_LEN + payload_len;
    packet[IPV6_HEADER_LEN + 4..IPV6_HEADER_LEN + 8].copy_from_slice(&seq.to_be_bytes());
    packet[IPV6_HEADER_LEN + 16..IPV6_HEADER_LEN + 18].fill(0);
    let checksum = tcp_checksum(
        &packet[8..24],
        &packet[24..40],
        &packet[IPV6_HEADER_LEN..end],
    );
    packet[IPV6_HEADER_LEN + 16..IPV6_HEADER_LEN + 18].copy_from_slice(&checksum.to_be_bytes());
}

/// The TCP checksum over the IPv6 pseudo-header and the segment (checksum field zeroed).
fn tcp_checksum(src: &[u8], dst: &[u8], segment: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        let mut chunks = bytes.chunks_exact(2);
        for pair in &mut chunks {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    };
    add(src);
    add(dst);
    add(&(segment.len() as u32).to_be_bytes());
    add(&[0, 0, 0, NEXT_HEADER_TCP]);
    add(segment);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
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
        p[52] = 0x50; // data offset: 5 words
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
        let segment = tcp_segment(&syn).unwrap();
        assert_eq!(
            (segment.src_port, segment.dst_port, segment.payload_len),
            (40000, 8090, 0)
        );
        assert_eq!(ipv6_addresses(&[0x60; 39]), None);
    }
}

#[cfg(test)]
mod checksum_tests {
    use super::*;

    /// A segment produced by smoltcp keeps a valid checksum after its sequence number changes.
    #[test]
    fn rewritten_sequence_numbers_keep_valid_checksums() {
        use smoltcp::phy::ChecksumCapabilities;
        use smoltcp::wire::{
            IpAddress, Ipv6Packet, Ipv6Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
        };
        let src: Ipv6Addr = "fd00::2".parse().unwrap();
        let dst: Ipv6Addr = "fd00::1".parse().unwrap();
        let payload = b"hello";
        let tcp = TcpRepr {
            src_port: 1234,
            dst_port: 80,
            control: TcpControl::None,
            seq_number: TcpSeqNumber(1000),
            ack_number: Some(TcpSeqNumber(2000)),
            window_len: 0,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None, None, None],
            timestamp: None,
            payload,
        };
        let ip = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: smoltcp::wire::IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; IPV6_HEADER_LEN + tcp.buffer_len()];
        ip.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
        tcp.emit(
            &mut TcpPacket::new_unchecked(&mut buf[IPV6_HEADER_LEN..]),
            &IpAddress::from(src),
            &IpAddress::from(dst),
            &ChecksumCapabilities::default(),
        );
        let parsed = tcp_segment(&buf).unwrap();
        assert_eq!(
            (parsed.seq, parsed.ack, parsed.payload_len),
            (1000, 2000, 5)
        );
        set_tcp_seq(&mut buf, 999);
        let packet = TcpPacket::new_checked(&buf[IPV6_HEADER_LEN..]).unwrap();
        assert!(packet.verify_checksum(&IpAddress::from(src), &IpAddress::from(dst)));
        assert_eq!(packet.seq_number(), TcpSeqNumber(999));
    }
}
