//! The common case, read directly: an unfragmented IPv4 packet, or an IPv6 packet without
//! extension headers, carrying TCP or UDP.
//!
//! Nearly every packet an office tap carries is one of these, and etherparse's general
//! slicing (every IP version, extension header and transport it knows, with an error value
//! for each way to fail) was a fifth of what the capture thread spent per packet. Anything
//! else (fragments, extension headers, other protocols, a header that does not parse) is
//! `None` here and goes to etherparse as before, so what this module reads is exactly what
//! etherparse's lax slicing reads: the same lengths, the same payloads, the same snap-length
//! cuts (a test compares both on every frame of the committed captures, and on those frames
//! mutated).

use super::bytes::be16;
use super::{link::LinkInfo, Packet, TcpSegment, Transport, UdpDatagram};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPV4_MIN_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TCP_MIN_HEADER: usize = 20;
const UDP_HEADER: usize = 8;

/// `ip` read as an unfragmented IPv4 packet, or an IPv6 packet without extension headers,
/// with a whole TCP or UDP header; `None` when it is anything else.
#[inline]
pub(super) fn tcp_or_udp<'a>(ip: &'a [u8], info: &LinkInfo) -> Option<Packet<'a>> {
    match *ip.first()? >> 4 {
        4 => ipv4(ip, info),
        6 => ipv6(ip, info),
        _ => None,
    }
}

#[inline]
fn ipv4<'a>(ip: &'a [u8], info: &LinkInfo) -> Option<Packet<'a>> {
    let first = *ip.first()?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < IPV4_MIN_HEADER || ip.len() < header_len {
        return None;
    }
    let flags_and_offset = be16(ip, 6)?;
    // More fragments, or a fragment offset: the reassembler's, through etherparse.
    if flags_and_offset & 0x3fff != 0 {
        return None;
    }
    let protocol = ip[9];
    if protocol != IPPROTO_TCP && protocol != IPPROTO_UDP {
        return None;
    }
    // A total length below the header's own is ignored and the frame read to its end (no
    // cut known); one above what was captured is a snap-length cut.
    let total_len = usize::from(be16(ip, 2)?);
    let (end, ip_cut) = if total_len < header_len {
        (ip.len(), 0)
    } else if total_len > ip.len() {
        (ip.len(), (total_len - ip.len()) as u32)
    } else {
        (total_len, 0)
    };
    let payload = ip.get(header_len..end)?;
    Some(Packet {
        src_mac: info.src_mac,
        src: IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])),
        dst: IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])),
        transport: transport(protocol, payload, ip_cut)?,
        vlan_tags: info.vlan_tags,
        encaps: info.encaps,
        ip,
    })
}

#[inline]
fn ipv6<'a>(ip: &'a [u8], info: &LinkInfo) -> Option<Packet<'a>> {
    if ip.len() < IPV6_HEADER {
        return None;
    }
    // The next header is the transport's: no extension header (a fragment header among them).
    let next_header = ip[6];
    if next_header != IPPROTO_TCP && next_header != IPPROTO_UDP {
        return None;
    }
    // A payload length of zero (a jumbogram's) leaves the length to the frame; one above what
    // was captured is a snap-length cut.
    let payload_len = usize::from(be16(ip, 4)?);
    let (end, ip_cut) = if payload_len == 0 && ip.len() > IPV6_HEADER {
        (ip.len(), 0)
    } else if ip.len() < IPV6_HEADER + payload_len {
        (ip.len(), (IPV6_HEADER + payload_len - ip.len()) as u32)
    } else {
        (IPV6_HEADER + payload_len, 0)
    };
    let payload = ip.get(IPV6_HEADER..end)?;
    let address = |at: usize| -> Option<IpAddr> {
        let octets: [u8; 16] = ip.get(at..at + 16)?.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(octets)))
    };
    Some(Packet {
        src_mac: info.src_mac,
        src: address(8)?,
        dst: address(24)?,
        transport: transport(next_header, payload, ip_cut)?,
        vlan_tags: info.vlan_tags,
        encaps: info.encaps,
        ip,
    })
}

#[inline]
fn transport(protocol: u8, payload: &[u8], ip_cut: u32) -> Option<Transport<'_>> {
    if protocol == IPPROTO_TCP {
        Some(Transport::Tcp(tcp(payload, ip_cut)?))
    } else {
        Some(Transport::Udp(udp(payload, ip_cut)?))
    }
}

#[inline]
fn tcp(segment: &[u8], cut: u32) -> Option<TcpSegment<'_>> {
    let header_len = usize::from(*segment.get(12)? >> 4) * 4;
    if header_len < TCP_MIN_HEADER || segment.len() < header_len {
        return None;
    }
    let flags = segment[13];
    Some(TcpSegment {
        src_port: be16(segment, 0)?,
        dst_port: be16(segment, 2)?,
        seq: u32::from_be_bytes([segment[4], segment[5], segment[6], segment[7]]),
        syn: flags & 0x02 != 0,
        ack: flags & 0x10 != 0,
        fin: flags & 0x01 != 0,
        rst: flags & 0x04 != 0,
        payload: &segment[header_len..],
        cut,
        segment,
    })
}

/// UDP as etherparse's lax slicing reads it: the length field bounds the datagram when it
/// is plausible (at least the header, at most what was captured), else the bytes captured do.
#[inline]
fn udp(datagram: &[u8], ip_cut: u32) -> Option<UdpDatagram<'_>> {
    if datagram.len() < UDP_HEADER {
        return None;
    }
    let length = be16(datagram, 4)?;
    let len = usize::from(length);
    let datagram = if datagram.len() < len || len < UDP_HEADER {
        datagram
    } else {
        &datagram[..len]
    };
    Some(UdpDatagram {
        src_port: be16(datagram, 0)?,
        dst_port: be16(datagram, 2)?,
        payload: &datagram[UDP_HEADER..],
        cut: ip_cut.max(u32::from(length).saturating_sub(datagram.len() as u32)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{from_sliced, link, Decoded, LinkType};

    /// What etherparse's lax slicing makes of `ip`, as the decoder read it before this module.
    fn by_etherparse<'a>(ip: &'a [u8], info: &LinkInfo) -> Option<Packet<'a>> {
        let sliced = etherparse::LaxSlicedPacket::from_ip(ip).ok()?;
        match from_sliced(ip, &sliced, info) {
            Ok(Decoded::Packet(p)) => Some(p),
            _ => None,
        }
    }

    /// Every IP packet inside the frames of the committed captures (link layers stripped).
    fn captured_ip_packets() -> Vec<(Vec<u8>, LinkInfo)> {
        let mut packets = Vec::new();
        for (link_type, frame) in crate::decode::tests::committed_frames() {
            let mut info = LinkInfo::default();
            if let Ok(link::L3::Ip(ip)) = link::strip(link_type, &frame, &mut info) {
                packets.push((ip.to_vec(), info));
            }
        }
        packets
    }

    /// A small deterministic generator (xorshift64*), so a failure replays.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn reads_what_etherparse_reads_on_every_captured_packet_and_its_mutations() {
        let packets = captured_ip_packets();
        let mut rng = Rng(0x7665_6e64_6f72);
        let (mut direct, mut compared) = (0usize, 0usize);
        let mut check = |ip: &[u8], info: &LinkInfo| {
            compared += 1;
            if let Some(fast) = tcp_or_udp(ip, info) {
                direct += 1;
                let slow = by_etherparse(ip, info);
                assert_eq!(
                    format!("{:?}", Some(fast)),
                    format!("{slow:?}"),
                    "{ip:02x?}"
                );
            }
        };
        // The fields this module reads, and where a cut may fall.
        const FIELDS: [usize; 17] = [0, 2, 3, 4, 5, 6, 7, 9, 20, 24, 25, 32, 33, 40, 44, 45, 52];
        for (ip, info) in &packets {
            check(ip, info);
            for _ in 0..8 {
                let mut mutated = ip.clone();
                let at = FIELDS[rng.below(FIELDS.len())];
                if let Some(b) = mutated.get_mut(at) {
                    *b = rng.next() as u8;
                }
                let keep = rng.below(mutated.len() + 1);
                check(&mutated, info);
                check(&mutated[..keep], info);
            }
        }
        assert!(packets.len() > 1000, "only {} packets", packets.len());
        // Most packets of the captures take this path; the mutations hit every branch.
        assert!(
            direct > compared / 4,
            "{direct} of {compared} read directly"
        );
    }

    #[test]
    fn leaves_fragments_extension_headers_and_other_protocols_to_etherparse() {
        let info = LinkInfo::default();
        let frame = crate::decode::tests::ETH_IPV4_UDP_DNS;
        let ip = &frame[14..];
        assert!(tcp_or_udp(ip, &info).is_some());
        let mut fragment = ip.to_vec();
        fragment[6] = 0x20; // more fragments
        assert!(tcp_or_udp(&fragment, &info).is_none());
        let mut icmp = ip.to_vec();
        icmp[9] = 1;
        assert!(tcp_or_udp(&icmp, &info).is_none());
        // IPv6 with a hop-by-hop options header before UDP goes to etherparse; the same
        // datagram without it is read here.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 16, 0, 64];
        v6.extend_from_slice(&[0xfd; 16]);
        v6.extend_from_slice(&[0xfe; 16]);
        v6.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        v6.extend_from_slice(&[0xc3, 0x50, 0, 0x35, 0, 8, 0, 0]);
        assert!(tcp_or_udp(&v6, &info).is_none());
        let mut plain_v6 = v6[..40].to_vec();
        (plain_v6[5], plain_v6[6]) = (8, 17);
        plain_v6.extend_from_slice(&v6[48..]);
        let read = tcp_or_udp(&plain_v6, &info).expect("read directly");
        assert!(matches!(&read.transport, Transport::Udp(u) if u.dst_port == 53));
        assert_eq!(
            format!("{:?}", Some(read)),
            format!("{:?}", by_etherparse(&plain_v6, &info))
        );
        // The decoder still decodes each of them (fragments as fragments).
        let mut framed = frame[..14].to_vec();
        framed.extend_from_slice(&fragment);
        assert!(matches!(
            crate::decode::decode_full(LinkType::Ethernet, &framed),
            Ok(Decoded::Fragment(_))
        ));
    }
}
