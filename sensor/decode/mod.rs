//! Decoding of one captured frame down to its transport payload.
//!
//! Owns the link layers (`link`), and the view of IP and TCP/UDP that later stages read
//! (`Packet`). IP, VLAN tags and transport headers are parsed by `etherparse`; the link
//! types it does not know (Linux cooked v2, BSD null/loop, NFLOG, Cisco HDLC, 802.3 LLC/SNAP)
//! are parsed here. Decoding never allocates and never panics; whatever cannot be read
//! becomes a `DecodeError` whose `reason()` is a metric label.

mod link;

pub use link::LinkType;

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use std::net::IpAddr;

/// One decoded frame: addresses, ports and the transport payload, borrowed from the frame.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    pub src_mac: Option<[u8; 6]>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport<'a>,
    /// Number of 802.1Q / 802.1ad tags seen (0, 1 for VLAN, 2+ for QinQ).
    pub vlan_tags: u8,
}

#[derive(Debug, Clone)]
pub enum Transport<'a> {
    Tcp(TcpSegment<'a>),
    Udp(UdpDatagram<'a>),
    /// Any other IP protocol (ICMP, ESP, …): counted, carries nothing we read.
    Other(u8),
}

#[derive(Debug, Clone)]
pub struct TcpSegment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone)]
pub struct UdpDatagram<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

/// Transport protocol of a flow, as it appears in alerts (`"transport":"tcp"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Packet<'_> {
    /// Source and destination ports, for TCP and UDP.
    pub fn ports(&self) -> Option<(Proto, u16, u16)> {
        match &self.transport {
            Transport::Tcp(t) => Some((Proto::Tcp, t.src_port, t.dst_port)),
            Transport::Udp(u) => Some((Proto::Udp, u.src_port, u.dst_port)),
            Transport::Other(_) => None,
        }
    }
}

/// Why a frame yielded no IP packet. Each variant's `reason()` is a stable metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("link header truncated")]
    LinkTruncated,
    #[error("frame carries no IP (ARP, LLDP, STP, …)")]
    NotIp,
    #[error("IP header malformed or truncated")]
    IpMalformed,
    #[error("IP fragment (reassembly not implemented yet)")]
    IpFragment,
    #[error("transport header malformed or truncated")]
    TransportMalformed,
}

impl DecodeError {
    pub const ALL: [DecodeError; 5] = [
        DecodeError::LinkTruncated,
        DecodeError::NotIp,
        DecodeError::IpMalformed,
        DecodeError::IpFragment,
        DecodeError::TransportMalformed,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            DecodeError::LinkTruncated => "link_truncated",
            DecodeError::NotIp => "not_ip",
            DecodeError::IpMalformed => "ip_malformed",
            DecodeError::IpFragment => "ip_fragment",
            DecodeError::TransportMalformed => "transport_malformed",
        }
    }

    /// `NotIp` is ordinary traffic, not an anomaly; the rest are.
    pub fn is_anomaly(self) -> bool {
        self != DecodeError::NotIp
    }
}

/// Decodes one frame of the given link type.
pub fn decode(link: LinkType, frame: &[u8]) -> Result<Packet<'_>, DecodeError> {
    let (l3, src_mac) = link::strip(link, frame)?;
    let sliced = match l3 {
        link::L3::EtherType(ether_type, payload) => {
            LaxSlicedPacket::from_ether_type(etherparse::EtherType(ether_type), payload)
        }
        link::L3::Ip(payload) => {
            LaxSlicedPacket::from_ip(payload).map_err(|_| DecodeError::IpMalformed)?
        }
    };
    from_sliced(&sliced, src_mac)
}

fn from_sliced<'a>(
    sliced: &LaxSlicedPacket<'a>,
    src_mac: Option<[u8; 6]>,
) -> Result<Packet<'a>, DecodeError> {
    let vlan_tags = sliced
        .link_exts
        .iter()
        .filter(|e| matches!(e, etherparse::LaxLinkExtSlice::Vlan(_)))
        .count() as u8;
    let (src, dst, payload) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                ip.payload(),
            )
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                ip.payload(),
            )
        }
        Some(LaxNetSlice::Arp(_)) => return Err(DecodeError::NotIp),
        None => {
            return Err(match sliced.stop_err {
                Some((_, etherparse::err::Layer::Ethernet2Header))
                | Some((_, etherparse::err::Layer::VlanHeader)) => DecodeError::LinkTruncated,
                Some(_) => DecodeError::IpMalformed,
                None => DecodeError::NotIp,
            })
        }
    };
    if payload.fragmented {
        return Err(DecodeError::IpFragment);
    }
    let transport = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => Transport::Tcp(TcpSegment {
            src_port: tcp.source_port(),
            dst_port: tcp.destination_port(),
            seq: tcp.sequence_number(),
            syn: tcp.syn(),
            ack: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
            payload: tcp.payload(),
        }),
        Some(TransportSlice::Udp(udp)) => Transport::Udp(UdpDatagram {
            src_port: udp.source_port(),
            dst_port: udp.destination_port(),
            payload: udp.payload(),
        }),
        Some(_) => Transport::Other(payload.ip_number.0),
        None => {
            let proto = payload.ip_number;
            if proto == etherparse::IpNumber::TCP || proto == etherparse::IpNumber::UDP {
                return Err(DecodeError::TransportMalformed);
            }
            Transport::Other(proto.0)
        }
    };
    Ok(Packet {
        src_mac,
        src,
        dst,
        transport,
        vlan_tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet/IPv4/UDP DNS query for example.com, as dig sent it (checksums real).
    pub(crate) const ETH_IPV4_UDP_DNS: &[u8] = &[
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08,
        0x00, // eth
        0x45, 0x00, 0x00, 0x39, 0x12, 0x34, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00, // ipv4 ..
        10, 0, 0, 1, 10, 0, 0, 2, // addrs
        0xc3, 0x50, 0x00, 0x35, 0x00, 0x25, 0x00, 0x00, // udp
        0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // dns header
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, 0x00, 0x01, 0x00,
        0x01,
    ];

    #[test]
    fn ethernet_ipv4_udp() {
        let p = decode(LinkType::Ethernet, ETH_IPV4_UDP_DNS).expect("decodes");
        assert_eq!(p.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(p.src_mac, Some([2, 0, 0, 0, 0, 1]));
        match p.transport {
            Transport::Udp(u) => {
                assert_eq!((u.src_port, u.dst_port), (50000, 53));
                assert_eq!(u.payload.len(), 29);
            }
            other => panic!("expected UDP, got {other:?}"),
        }
    }

    #[test]
    fn vlan_and_qinq_tags_are_counted() {
        let mut frame = ETH_IPV4_UDP_DNS[..12].to_vec();
        frame.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x0a]);
        frame.extend_from_slice(&ETH_IPV4_UDP_DNS[12..]);
        let p = decode(LinkType::Ethernet, &frame).expect("decodes");
        assert_eq!(p.vlan_tags, 2);
        assert!(matches!(p.transport, Transport::Udp(_)));
    }

    #[test]
    fn truncated_frames_are_errors_not_panics() {
        for n in 0..ETH_IPV4_UDP_DNS.len() {
            let _ = decode(LinkType::Ethernet, &ETH_IPV4_UDP_DNS[..n]);
        }
        assert_eq!(
            decode(LinkType::Ethernet, &ETH_IPV4_UDP_DNS[..10]).err(),
            Some(DecodeError::LinkTruncated)
        );
    }
}
