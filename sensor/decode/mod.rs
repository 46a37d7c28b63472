//! Decoding of one captured frame down to its transport payload.
//!
//! Owns the link layers (`link`), and the view of IP and TCP/UDP that later stages read
//! (`Packet`). TCP and UDP over unfragmented IPv4, or IPv6 without extension headers, most of
//! any capture, are read directly (`direct`); the rest of IP and its transports are parsed by
//! `etherparse`; the link
//! types it does not know (Linux cooked v2, BSD null/loop, NFLOG, Cisco HDLC, 802.3 LLC/SNAP)
//! are parsed here. Decoding never allocates and never panics; whatever cannot be read
//! becomes a `DecodeError` whose `reason()` is a metric label.

pub mod bytes;
pub mod checksum;
pub mod defrag;
mod direct;
mod link;
pub mod tunnel;

pub use link::LinkType;
pub use tunnel::{Encap, Encaps};

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use std::net::IpAddr;

/// Tunnels inside tunnels beyond this depth are not followed (triple VXLAN is depth 3).
pub const MAX_TUNNEL_DEPTH: u8 = 6;

/// One decoded frame: addresses, ports and the transport payload of the innermost IP
/// packet, borrowed from the frame.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    /// Source MAC of the innermost Ethernet frame, when there is one.
    pub src_mac: Option<crate::mac::MacAddr>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport<'a>,
    /// Number of 802.1Q / 802.1ad tags seen (0, 1 for VLAN, 2+ for QinQ).
    pub vlan_tags: u8,
    /// The encapsulations the packet came through.
    pub encaps: Encaps,
    /// The innermost IP packet as captured (header included; cut short by a snap length):
    /// what checksums are verified on and duplicates recognised by.
    pub ip: &'a [u8],
}

#[derive(Debug, Clone)]
pub enum Transport<'a> {
    Tcp(TcpSegment<'a>),
    Udp(UdpDatagram<'a>),
    /// Any other IP protocol (ICMP, ESP, …): counted, carries nothing we read.
    Other {
        proto: u8,
        payload: &'a [u8],
    },
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
    /// Payload bytes the capture did not keep (snap length): the segment carried
    /// `payload.len() + cut` bytes on the wire. 0 when the payload is whole.
    pub cut: u32,
    /// The TCP header and payload as captured (for checksum verification).
    pub segment: &'a [u8],
}

impl TcpSegment<'_> {
    /// The acknowledgment number of a segment with the ACK flag, read from its header.
    pub fn ack_number(&self) -> Option<u32> {
        if !self.ack {
            return None;
        }
        let field = self.segment.get(8..12)?;
        Some(u32::from_be_bytes(field.try_into().ok()?))
    }

    /// The urgent pointer of a segment with the URG flag, read from its header.
    pub fn urgent_pointer(&self) -> Option<u16> {
        const URG: u8 = 0x20;
        let header = self.segment;
        if header.get(13)? & URG == 0 {
            return None;
        }
        Some(u16::from_be_bytes([*header.get(18)?, *header.get(19)?]))
    }
}

#[derive(Debug, Clone)]
pub struct UdpDatagram<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
    /// Payload bytes the capture did not keep (snap length); 0 when the payload is whole.
    pub cut: u32,
}

/// Transport protocol of a flow, as it appears in alerts (`"transport":"tcp"`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl Packet<'_> {
    /// Transport payload bytes the capture did not keep, as the IP length fields tell it.
    pub fn cut(&self) -> u32 {
        match &self.transport {
            Transport::Tcp(t) => t.cut,
            Transport::Udp(u) => u.cut,
            Transport::Other { .. } => 0,
        }
    }

    /// Source and destination ports, for TCP and UDP.
    pub fn ports(&self) -> Option<(Proto, u16, u16)> {
        match &self.transport {
            Transport::Tcp(t) => Some((Proto::Tcp, t.src_port, t.dst_port)),
            Transport::Udp(u) => Some((Proto::Udp, u.src_port, u.dst_port)),
            Transport::Other { .. } => None,
        }
    }
}

/// A decoded packet without its frame: what `decode` found, with each byte view kept as a
/// range of the frame instead of a borrow. The dispatcher decodes a frame once, stores this
/// beside the frame's bytes in a batch, and the worker `attach`es it to the same bytes again
/// instead of decoding them a second time. It is kept small (84 bytes; a `Packet` with empty
/// views was 136): every batch crosses from one core's cache to another's.
///
/// A field added to `Packet`, `TcpSegment` or `UdpDatagram` is carried by `detach` and
/// `attach` below (the compiler points there: they build the structs field by field).
#[derive(Debug, Clone)]
pub struct Detached {
    src_mac: Option<crate::mac::MacAddr>,
    src: IpAddr,
    dst: IpAddr,
    header: Header,
    vlan_tags: u8,
    encaps: Encaps,
    /// Where the transport payload, the IP packet and the TCP segment lie in the frame.
    payload: Span,
    ip: Span,
    segment: Span,
}

/// The transport header's fields, without the byte views.
#[derive(Debug, Clone, Copy)]
enum Header {
    Tcp {
        src_port: u16,
        dst_port: u16,
        seq: u32,
        flags: TcpFlags,
        cut: u32,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
        cut: u32,
    },
    Other {
        proto: u8,
    },
}

/// SYN, ACK, FIN and RST, one bit each.
#[derive(Debug, Clone, Copy)]
struct TcpFlags(u8);

impl TcpFlags {
    const SYN: u8 = 1;
    const ACK: u8 = 2;
    const FIN: u8 = 4;
    const RST: u8 = 8;

    fn of(t: &TcpSegment<'_>) -> TcpFlags {
        let bit = |on: bool, b: u8| if on { b } else { 0 };
        TcpFlags(
            bit(t.syn, Self::SYN)
                | bit(t.ack, Self::ACK)
                | bit(t.fin, Self::FIN)
                | bit(t.rst, Self::RST),
        )
    }

    fn has(self, b: u8) -> bool {
        self.0 & b != 0
    }
}

/// A byte range of a frame (start, length).
#[derive(Debug, Clone, Copy, Default)]
struct Span(u32, u32);

impl Span {
    /// Where `part` lies in `frame`; `None` when it does not lie in it.
    fn of(part: &[u8], frame: &[u8]) -> Option<Span> {
        if part.is_empty() {
            return Some(Span::default());
        }
        let start = (part.as_ptr() as usize).checked_sub(frame.as_ptr() as usize)?;
        if start.checked_add(part.len())? > frame.len() {
            return None;
        }
        Some(Span(
            u32::try_from(start).ok()?,
            u32::try_from(part.len()).ok()?,
        ))
    }

    fn slice(self, frame: &[u8]) -> &[u8] {
        let start = self.0 as usize;
        frame
            .get(start..start + self.1 as usize)
            .unwrap_or_default()
    }
}

impl Packet<'_> {
    /// Detaches the packet from `frame`, the bytes it was decoded from; `None` when its
    /// byte views do not lie in `frame` (they always do for a packet decoded from `frame`).
    pub fn detach(&self, frame: &[u8]) -> Option<Detached> {
        let (header, payload, segment): (Header, &[u8], &[u8]) = match &self.transport {
            Transport::Tcp(t) => (
                Header::Tcp {
                    src_port: t.src_port,
                    dst_port: t.dst_port,
                    seq: t.seq,
                    flags: TcpFlags::of(t),
                    cut: t.cut,
                },
                t.payload,
                t.segment,
            ),
            Transport::Udp(u) => (
                Header::Udp {
                    src_port: u.src_port,
                    dst_port: u.dst_port,
                    cut: u.cut,
                },
                u.payload,
                &[],
            ),
            Transport::Other { proto, payload } => (Header::Other { proto: *proto }, payload, &[]),
        };
        Some(Detached {
            src_mac: self.src_mac,
            src: self.src,
            dst: self.dst,
            header,
            vlan_tags: self.vlan_tags,
            encaps: self.encaps,
            payload: Span::of(payload, frame)?,
            ip: Span::of(self.ip, frame)?,
            segment: Span::of(segment, frame)?,
        })
    }
}

impl Detached {
    /// The packet again, its payload borrowed from `frame` (the bytes it was detached from;
    /// other bytes give an empty payload rather than a panic).
    pub fn attach<'f>(&self, frame: &'f [u8]) -> Packet<'f> {
        let payload = self.payload.slice(frame);
        let transport = match self.header {
            Header::Tcp {
                src_port,
                dst_port,
                seq,
                flags,
                cut,
            } => Transport::Tcp(TcpSegment {
                src_port,
                dst_port,
                seq,
                syn: flags.has(TcpFlags::SYN),
                ack: flags.has(TcpFlags::ACK),
                fin: flags.has(TcpFlags::FIN),
                rst: flags.has(TcpFlags::RST),
                payload,
                cut,
                segment: self.segment.slice(frame),
            }),
            Header::Udp {
                src_port,
                dst_port,
                cut,
            } => Transport::Udp(UdpDatagram {
                src_port,
                dst_port,
                payload,
                cut,
            }),
            Header::Other { proto } => Transport::Other { proto, payload },
        };
        Packet {
            src_mac: self.src_mac,
            src: self.src,
            dst: self.dst,
            transport,
            vlan_tags: self.vlan_tags,
            encaps: self.encaps,
            ip: self.ip.slice(frame),
        }
    }
}

/// One IP fragment, for the reassembler.
#[derive(Debug, Clone)]
pub struct Fragment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Identification (16 bits for IPv4, 32 for IPv6).
    pub id: u32,
    /// Protocol of the reassembled payload.
    pub protocol: u8,
    /// Byte offset of `payload` in the datagram.
    pub offset: usize,
    pub more: bool,
    pub payload: &'a [u8],
    /// IPv4 header (options included), to rebuild the datagram; `None` for IPv6.
    pub ipv4_header: Option<&'a [u8]>,
    pub encaps: Encaps,
}

/// A frame's content: a packet, or a fragment of one.
#[derive(Debug, Clone)]
pub enum Decoded<'a> {
    Packet(Packet<'a>),
    Fragment(Fragment<'a>),
}

/// Why a frame yielded no IP packet. `reason()` is a stable metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum DecodeError {
    #[error("link header truncated")]
    LinkTruncated,
    #[error("more VLAN tags than we follow")]
    TooManyVlanTags,
    #[error("frame carries no IP (ARP, LLDP, STP, …)")]
    NotIp,
    #[error("IP header malformed or truncated")]
    IpMalformed,
    #[error("IP fragment")]
    IpFragment,
    #[error("transport header malformed or truncated")]
    TransportMalformed,
    #[error("tunnel header malformed: {0}")]
    Tunnel(&'static str),
    #[error("tunnels nested deeper than the limit")]
    TunnelTooDeep,
}

impl DecodeError {
    pub fn reason(self) -> &'static str {
        match self {
            DecodeError::LinkTruncated => "link_truncated",
            DecodeError::TooManyVlanTags => "vlan_too_many_tags",
            DecodeError::NotIp => "not_ip",
            DecodeError::IpMalformed => "ip_malformed",
            DecodeError::IpFragment => "ip_fragment",
            DecodeError::TransportMalformed => "transport_malformed",
            DecodeError::Tunnel(reason) => reason,
            DecodeError::TunnelTooDeep => "tunnel_too_deep",
        }
    }

    /// `NotIp` is ordinary traffic, not an anomaly; the rest are.
    pub fn is_anomaly(self) -> bool {
        self != DecodeError::NotIp
    }
}

/// Decodes one frame that is known not to be a fragment (reassembled datagrams, and every
/// frame a worker gets): a fragment is an error here.
pub fn decode(link: LinkType, frame: &[u8]) -> Result<Packet<'_>, DecodeError> {
    decode_with(link, frame, &DecodeOptions::default())
}

/// What the decoder is told by the configuration (`--vxlan-ports`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions {
    /// UDP ports read as VXLAN (IANA's 4789 unless configured; Linux's legacy default is 8472).
    pub vxlan_ports: Vec<u16>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            vxlan_ports: vec![tunnel::VXLAN_PORT],
        }
    }
}

/// [`decode`] with the configured options.
pub fn decode_with<'a>(
    link: LinkType,
    frame: &'a [u8],
    opts: &DecodeOptions,
) -> Result<Packet<'a>, DecodeError> {
    match decode_full_with(link, frame, opts)? {
        Decoded::Packet(p) => Ok(p),
        Decoded::Fragment(_) => Err(DecodeError::IpFragment),
    }
}

/// Decodes one frame down to the innermost IP packet, through every tunnel.
///
/// A UDP datagram that does not decode as the tunnel its port suggests is returned as it is,
/// not as a broken tunnel, when it is only *from* a tunnel port (VXLAN, Geneve and GRE-in-UDP
/// send to the tunnel's port, from an entropy source port) or has a DNS port at either end
/// (no tunnel runs on those): a DNS query from port 4789, or its answer, is still DNS.
pub fn decode_full(link: LinkType, frame: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    decode_full_with(link, frame, &DecodeOptions::default())
}

/// [`decode_full`] with the configured options.
pub fn decode_full_with<'a>(
    link: LinkType,
    frame: &'a [u8],
    opts: &DecodeOptions,
) -> Result<Decoded<'a>, DecodeError> {
    let mut outer = None;
    let decoded = decode_layers(link, frame, opts, &mut outer);
    if decoded.is_err() {
        if let Some(outer) = outer {
            return Ok(Decoded::Packet(outer));
        }
    }
    decoded
}

/// Ports on which UDP and TCP payloads are DNS: DNS, mDNS, LLMNR (the decoder's tunnel
/// decision and the extractor's DNS reading both go by them).
pub fn is_dns_port(port: u16) -> bool {
    matches!(port, 53 | 5353 | 5355)
}

/// UDP that may be ordinary UDP though a port says tunnel: to none of the tunnel ports (so
/// a tunnel port is its source), or to or from a DNS port.
fn may_be_plain_udp(pkt: &Packet<'_>, opts: &DecodeOptions) -> bool {
    let Transport::Udp(u) = &pkt.transport else {
        return false;
    };
    if is_dns_port(u.src_port) || is_dns_port(u.dst_port) {
        return true;
    }
    let fixed = [
        tunnel::GENEVE_PORT,
        tunnel::GRE_UDP_PORT,
        tunnel::GTPU_PORT,
        tunnel::AYIYA_PORT,
        tunnel::TEREDO_PORT,
    ];
    !opts.vxlan_ports.contains(&u.dst_port) && !fixed.contains(&u.dst_port)
}

fn decode_layers<'a>(
    link: LinkType,
    frame: &'a [u8],
    opts: &DecodeOptions,
    outer: &mut Option<Packet<'a>>,
) -> Result<Decoded<'a>, DecodeError> {
    let mut info = link::LinkInfo::default();
    let mut layer = (link, frame);
    let mut depth = 0u8;
    loop {
        let ip = match link::strip(layer.0, layer.1, &mut info)? {
            link::L3::Ip(ip) => ip,
            link::L3::Ethernet(eth) => {
                depth += 1;
                if depth > MAX_TUNNEL_DEPTH {
                    return Err(DecodeError::TunnelTooDeep);
                }
                layer = (LinkType::Ethernet, eth);
                continue;
            }
        };
        let pkt = match direct::tcp_or_udp(ip, &info) {
            // TCP carries no tunnel (`tunnel_inside`): the common case returns at once.
            Some(pkt) if matches!(pkt.transport, Transport::Tcp(_)) => {
                return Ok(Decoded::Packet(pkt))
            }
            Some(pkt) => pkt,
            None => {
                let sliced = LaxSlicedPacket::from_ip(ip).map_err(|_| DecodeError::IpMalformed)?;
                match from_sliced(ip, &sliced, &info)? {
                    Decoded::Packet(pkt) => pkt,
                    fragment => return Ok(fragment),
                }
            }
        };
        let tunnel = tunnel_inside(&pkt, opts);
        if tunnel.is_some() && outer.is_none() && may_be_plain_udp(&pkt, opts) {
            *outer = Some(pkt.clone());
        }
        let inner = match tunnel {
            None => return Ok(Decoded::Packet(pkt)),
            Some(Err(m)) => return Err(DecodeError::Tunnel(m.0)),
            Some(Ok((inner, encap))) => {
                info.encaps.add(encap);
                inner
            }
        };
        depth += 1;
        if depth > MAX_TUNNEL_DEPTH {
            return Err(DecodeError::TunnelTooDeep);
        }
        layer = match inner {
            tunnel::Inner::Ethernet(eth) => (LinkType::Ethernet, eth),
            tunnel::Inner::Ip(ip) => (LinkType::RawIp, ip),
        };
    }
}

/// The tunnel a packet carries, if it is one: by IP protocol or by UDP port.
fn tunnel_inside<'a>(
    pkt: &Packet<'a>,
    opts: &DecodeOptions,
) -> Option<Result<(tunnel::Inner<'a>, Encap), tunnel::Malformed>> {
    const IPPROTO_IPIP: u8 = 4;
    const IPPROTO_IPV6: u8 = 41;
    const IPPROTO_GRE: u8 = 47;
    match &pkt.transport {
        Transport::Other {
            proto: IPPROTO_GRE,
            payload,
        } => Some(tunnel::gre(payload)),
        Transport::Other {
            proto: IPPROTO_IPIP | IPPROTO_IPV6,
            payload,
        } => Some(Ok((tunnel::Inner::Ip(payload), Encap::IpInIp))),
        Transport::Udp(u) => {
            let on = |port: u16| u.dst_port == port || u.src_port == port;
            if opts.vxlan_ports.iter().any(|p| on(*p)) {
                Some(tunnel::vxlan(u.payload))
            } else if on(tunnel::GENEVE_PORT) {
                Some(tunnel::geneve(u.payload))
            } else if on(tunnel::GRE_UDP_PORT) {
                Some(tunnel::gre(u.payload))
            } else if on(tunnel::GTPU_PORT) {
                Some(tunnel::gtpu(u.payload))
            } else if on(tunnel::AYIYA_PORT) {
                Some(tunnel::ayiya(u.payload))
            } else if on(tunnel::TEREDO_PORT) {
                // Teredo also carries bubbles and its own control traffic: only IPv6 inside counts.
                tunnel::teredo(u.payload).ok().map(Ok)
            } else {
                // After qualification, Teredo clients talk to relays and peers on any port:
                // recognised by content, as Zeek does (a well-formed IPv6 packet to or from a
                // Teredo 2001::/32 address).
                tunnel::teredo_by_content(u.payload).map(Ok)
            }
        }
        _ => None,
    }
}

/// What the network layer of a whole (unfragmented) IP packet gives the transport layer.
struct Network<'a> {
    src: IpAddr,
    dst: IpAddr,
    /// The IP payload's protocol number and bytes.
    ip_number: etherparse::IpNumber,
    payload: &'a [u8],
    /// Bytes of the IP packet the capture left out (its length field says more than we have).
    ip_cut: u32,
}

impl<'a> Network<'a> {
    #[inline]
    fn new(
        src: IpAddr,
        dst: IpAddr,
        payload: &etherparse::LaxIpPayloadSlice<'a>,
        ip_cut: u32,
    ) -> Network<'a> {
        Network {
            src,
            dst,
            ip_number: payload.ip_number,
            payload: payload.payload,
            ip_cut,
        }
    }
}

/// An IP packet's network layer: whole, or one fragment to reassemble.
enum NetLayer<'a> {
    Whole(Network<'a>),
    Fragment(Fragment<'a>),
}

fn from_sliced<'a>(
    raw_ip: &'a [u8],
    sliced: &LaxSlicedPacket<'a>,
    info: &link::LinkInfo,
) -> Result<Decoded<'a>, DecodeError> {
    let layer = match &sliced.net {
        Some(LaxNetSlice::Ipv4(ip)) => ipv4_layer(raw_ip, ip, info),
        Some(LaxNetSlice::Ipv6(ip)) => ipv6_layer(raw_ip, ip, info)?,
        Some(LaxNetSlice::Arp(_)) => return Err(DecodeError::NotIp),
        None => return Err(DecodeError::IpMalformed),
    };
    let net = match layer {
        NetLayer::Whole(net) => net,
        NetLayer::Fragment(fragment) => return Ok(Decoded::Fragment(fragment)),
    };
    Ok(Decoded::Packet(Packet {
        src_mac: info.src_mac,
        src: net.src,
        dst: net.dst,
        transport: transport_of(sliced, &net)?,
        vlan_tags: info.vlan_tags,
        encaps: info.encaps,
        ip: raw_ip,
    }))
}

#[inline]
fn ipv4_layer<'a>(
    raw_ip: &'a [u8],
    ip: &etherparse::LaxIpv4Slice<'a>,
    info: &link::LinkInfo,
) -> NetLayer<'a> {
    let h = ip.header();
    let payload = ip.payload();
    let ip_cut = if payload.incomplete {
        u32::from(h.total_len()).saturating_sub(raw_ip.len() as u32)
    } else {
        0
    };
    let (src, dst) = (
        IpAddr::V4(h.source_addr()),
        IpAddr::V4(h.destination_addr()),
    );
    if payload.fragmented {
        let header_len = usize::from(h.ihl()) * 4;
        return NetLayer::Fragment(Fragment {
            src,
            dst,
            id: u32::from(h.identification()),
            protocol: payload.ip_number.0,
            offset: usize::from(h.fragments_offset().byte_offset()),
            more: h.more_fragments(),
            payload: payload.payload,
            ipv4_header: raw_ip.get(..header_len),
            encaps: info.encaps,
        });
    }
    NetLayer::Whole(Network::new(src, dst, payload, ip_cut))
}

#[inline]
fn ipv6_layer<'a>(
    raw_ip: &'a [u8],
    ip: &etherparse::LaxIpv6Slice<'a>,
    info: &link::LinkInfo,
) -> Result<NetLayer<'a>, DecodeError> {
    let h = ip.header();
    let payload = ip.payload();
    let ip_cut = if payload.incomplete {
        (40 + u32::from(h.payload_length())).saturating_sub(raw_ip.len() as u32)
    } else {
        0
    };
    let (src, dst) = (
        IpAddr::V6(h.source_addr()),
        IpAddr::V6(h.destination_addr()),
    );
    if payload.fragmented {
        let frag = ip.extensions().clone().into_iter().find_map(|e| match e {
            etherparse::Ipv6ExtensionSlice::Fragment(f) => Some(f),
            _ => None,
        });
        let Some(frag) = frag else {
            return Err(DecodeError::IpMalformed);
        };
        return Ok(NetLayer::Fragment(Fragment {
            src,
            dst,
            id: frag.identification(),
            protocol: payload.ip_number.0,
            offset: usize::from(frag.fragment_offset().byte_offset()),
            more: frag.more_fragments(),
            payload: payload.payload,
            ipv4_header: None,
            encaps: info.encaps,
        }));
    }
    Ok(NetLayer::Whole(Network::new(src, dst, payload, ip_cut)))
}

/// The transport layer of a whole IP packet.
#[inline]
fn transport_of<'a>(
    sliced: &LaxSlicedPacket<'a>,
    net: &Network<'a>,
) -> Result<Transport<'a>, DecodeError> {
    Ok(match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => Transport::Tcp(TcpSegment {
            src_port: tcp.source_port(),
            dst_port: tcp.destination_port(),
            seq: tcp.sequence_number(),
            syn: tcp.syn(),
            ack: tcp.ack(),
            fin: tcp.fin(),
            rst: tcp.rst(),
            payload: tcp.payload(),
            cut: net.ip_cut,
            segment: tcp.slice(),
        }),
        Some(TransportSlice::Udp(udp)) => Transport::Udp(UdpDatagram {
            src_port: udp.source_port(),
            dst_port: udp.destination_port(),
            payload: udp.payload(),
            // The UDP length field may say more than was captured even when IP's does not.
            cut: net
                .ip_cut
                .max(u32::from(udp.length()).saturating_sub(udp.slice().len() as u32)),
        }),
        Some(_) => Transport::Other {
            proto: net.ip_number.0,
            payload: net.payload,
        },
        None => {
            let proto = net.ip_number;
            if proto == etherparse::IpNumber::TCP || proto == etherparse::IpNumber::UDP {
                return Err(DecodeError::TransportMalformed);
            }
            Transport::Other {
                proto: proto.0,
                payload: net.payload,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet/IPv4/UDP DNS query for example.com, as dig sent it (checksums real).
    pub(super) const ETH_IPV4_UDP_DNS: &[u8] = &[
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
    fn a_dns_query_from_a_tunnel_port_is_read_as_dns() {
        // dig's query with its source port set to each tunnel port in turn: the payload is
        // no tunnel, so the datagram is what it says at its destination, DNS.
        for port in [4789u16, 6081, 4754, 2152, 5072] {
            let mut frame = ETH_IPV4_UDP_DNS.to_vec();
            frame[34..36].copy_from_slice(&port.to_be_bytes());
            let p = decode(LinkType::Ethernet, &frame).expect("decodes");
            let Transport::Udp(u) = p.transport else {
                panic!("not UDP")
            };
            assert_eq!((u.src_port, u.dst_port), (port, 53));
        }
        // The answer, from 53 back to that port, is DNS too.
        let mut frame = ETH_IPV4_UDP_DNS.to_vec();
        frame[34..36].copy_from_slice(&53u16.to_be_bytes());
        frame[36..38].copy_from_slice(&5072u16.to_be_bytes());
        let p = decode(LinkType::Ethernet, &frame).expect("decodes");
        assert!(matches!(p.transport, Transport::Udp(u) if u.dst_port == 5072));
        // Between other ports, to a tunnel port, the same bytes are a broken tunnel.
        let mut frame = ETH_IPV4_UDP_DNS.to_vec();
        frame[34..36].copy_from_slice(&40000u16.to_be_bytes());
        frame[36..38].copy_from_slice(&6081u16.to_be_bytes());
        assert!(decode(LinkType::Ethernet, &frame).is_err());
    }

    /// Every frame of the committed captures in `pcaps/`, with its link type.
    pub(super) fn committed_frames() -> Vec<(LinkType, Vec<u8>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps");
        let mut frames = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("pcaps/") {
            let path = entry.expect("entry").path();
            let Ok(mut reader) = crate::capture::file::CaptureReader::open(&path) else {
                continue;
            };
            loop {
                let mut frame = None;
                match reader.next_packet(|raw| frame = Some((raw.link, raw.data.to_vec()))) {
                    Ok(crate::capture::file::Step::Packet) => {}
                    _ => break,
                }
                frames.extend(frame);
            }
        }
        frames
    }

    #[test]
    fn a_detached_packet_attaches_to_what_decode_gave() {
        // The worker reads `attach`'s packet instead of decoding the frame again: it must be
        // the same packet, field for field, payload included, for every frame of the committed
        // captures (plain, VLAN, QinQ, tunnels, IPv6, fragments' reassembly aside).
        let mut checked = 0;
        for (link, frame) in committed_frames() {
            if let Ok(Decoded::Packet(p)) = decode_full(link, &frame) {
                let d = p.detach(&frame).expect("payload lies in the frame");
                assert_eq!(format!("{:?}", d.attach(&frame)), format!("{p:?}"));
                checked += 1;
            }
        }
        assert!(checked > 1000, "only {checked} packets checked");
        // Bytes that are not the frame give an empty payload, not a panic.
        let p = decode(LinkType::Ethernet, ETH_IPV4_UDP_DNS).expect("decodes");
        let d = p.detach(ETH_IPV4_UDP_DNS).expect("detaches");
        assert!(matches!(d.attach(&[]).transport, Transport::Udp(u) if u.payload.is_empty()));
        assert!(p.detach(&ETH_IPV4_UDP_DNS[..10]).is_none());
    }

    #[test]
    fn ethernet_ipv4_udp() {
        let p = decode(LinkType::Ethernet, ETH_IPV4_UDP_DNS).expect("decodes");
        assert_eq!(p.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(p.src_mac, Some(crate::mac::MacAddr([2, 0, 0, 0, 0, 1])));
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
    fn a_payload_cut_by_the_snap_length_says_how_much_is_missing() {
        let whole = decode(LinkType::Ethernet, ETH_IPV4_UDP_DNS).expect("decodes");
        assert!(matches!(
            whole.transport,
            Transport::Udp(UdpDatagram { cut: 0, .. })
        ));
        // `editcap -s 60` keeps 60 of the frame's 71 bytes: 11 bytes of DNS are missing.
        let cut = decode(LinkType::Ethernet, &ETH_IPV4_UDP_DNS[..60]).expect("decodes");
        match cut.transport {
            Transport::Udp(u) => assert_eq!((u.payload.len(), u.cut), (18, 11)),
            other => panic!("expected UDP, got {other:?}"),
        }
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
