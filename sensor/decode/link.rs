//! Link layers: find where the network layer starts and what it is.
//!
//! Header layouts follow the tcpdump.org link-type registry (LINKTYPE_*).

use super::bytes::be16;
use super::tunnel::{self, Encap, Encaps};
use super::DecodeError;

/// The link types vendorwatch reads, from the pcap / pcapng link-type registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1); also carries 802.3 frames with LLC/SNAP.
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113), Linux "cooked" capture v1.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276), Linux "cooked" capture v2.
    LinuxSll2,
    /// LINKTYPE_RAW (101, and DLT_RAW 12/14): the frame starts with an IPv4 or IPv6 header.
    RawIp,
    /// LINKTYPE_IPV4 (228) / LINKTYPE_IPV6 (229).
    Ipv4,
    Ipv6,
    /// LINKTYPE_NULL (0): 4-byte address family in the capturing host's byte order.
    Null,
    /// LINKTYPE_LOOP (108): like NULL, but the family is always big-endian.
    Loop,
    /// LINKTYPE_NFLOG (239): Linux netfilter log TLVs, one of which holds the IP packet.
    Nflog,
    /// LINKTYPE_C_HDLC (104): Cisco HDLC, 4-byte header ending in an EtherType.
    CiscoHdlc,
    /// LINKTYPE_PPP (9) and LINKTYPE_PPP_HDLC (50): PPP, optionally with HDLC address/control.
    Ppp,
}

impl LinkType {
    /// Maps a pcap/pcapng link-type code; `None` for the ones we cannot read.
    pub fn from_code(code: u32) -> Option<LinkType> {
        Some(match code {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            101 | 12 | 14 => LinkType::RawIp,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            239 => LinkType::Nflog,
            104 => LinkType::CiscoHdlc,
            9 | 50 => LinkType::Ppp,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            LinkType::Ethernet => "ethernet",
            LinkType::LinuxSll => "linux_sll",
            LinkType::LinuxSll2 => "linux_sll2",
            LinkType::RawIp => "raw",
            LinkType::Ipv4 => "ipv4",
            LinkType::Ipv6 => "ipv6",
            LinkType::Null => "null",
            LinkType::Loop => "loop",
            LinkType::Nflog => "nflog",
            LinkType::CiscoHdlc => "c_hdlc",
            LinkType::Ppp => "ppp",
        }
    }
}

/// Where the network layer starts.
pub(super) enum L3<'a> {
    /// An IP header, version read from its first nibble.
    Ip(&'a [u8]),
    /// Another Ethernet frame inside this one (an MPLS pseudowire).
    Ethernet(&'a [u8]),
}

/// What the link layers told about the frame.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct LinkInfo {
    pub src_mac: Option<crate::mac::MacAddr>,
    pub vlan_tags: u8,
    pub encaps: Encaps,
}

/// EtherType values below this are 802.3 length fields, followed by an LLC header.
const ETHERTYPE_MIN: u16 = 0x0600;
/// 802.1Q, 802.1ad, and the two pre-standard QinQ tags.
fn is_vlan_tag(ether_type: u16) -> bool {
    matches!(ether_type, 0x8100 | 0x88a8 | 0x9100 | 0x9200)
}
const ETHERTYPE_MPLS_UNICAST: u16 = 0x8847;
const ETHERTYPE_MPLS_MULTICAST: u16 = 0x8848;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
/// More tags than this is not a real frame.
const MAX_VLAN_TAGS: u8 = 8;

#[inline]
pub(super) fn strip<'a>(
    link: LinkType,
    frame: &'a [u8],
    info: &mut LinkInfo,
) -> Result<L3<'a>, DecodeError> {
    let short = DecodeError::LinkTruncated;
    match link {
        LinkType::Ethernet => {
            let src_mac = frame
                .get(6..12)
                .and_then(|b| crate::mac::MacAddr::try_from(b).ok())
                .ok_or(short)?;
            info.src_mac = Some(src_mac);
            let ether_type = be16(frame, 12).ok_or(short)?;
            if ether_type < ETHERTYPE_MIN {
                return llc_snap(&frame[14..], info);
            }
            by_ether_type(ether_type, &frame[14..], info)
        }
        LinkType::LinuxSll => {
            // packet type(2) ARPHRD(2) addr len(2) addr(8) protocol(2)
            let proto = be16(frame, 14).ok_or(short)?;
            info.src_mac = sll_mac(frame.get(4..6), frame.get(6..14));
            by_ether_type(proto, &frame[16..], info)
        }
        LinkType::LinuxSll2 => {
            // protocol(2) reserved(2) ifindex(4) ARPHRD(2) packet type(1) addr len(1) addr(8)
            let proto = be16(frame, 0).ok_or(short)?;
            if frame.len() < 20 {
                return Err(short);
            }
            let addr_len = [0, frame[11]];
            info.src_mac = sll_mac(Some(&addr_len[..]), frame.get(12..20));
            by_ether_type(proto, &frame[20..], info)
        }
        LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 => Ok(L3::Ip(frame)),
        LinkType::Null | LinkType::Loop => {
            let family: [u8; 4] = frame.get(..4).ok_or(short)?.try_into().map_err(|_| short)?;
            // NULL stores the family in the writer's byte order; it is a small number, so
            // whichever reading is small is the right one.
            let le = u32::from_le_bytes(family);
            let be = u32::from_be_bytes(family);
            let af = if link == LinkType::Loop || be < le {
                be
            } else {
                le
            };
            match af {
                // AF_INET everywhere; AF_INET6 on BSDs (24, 28, 30) and Linux (10).
                2 | 24 | 28 | 30 | 10 => Ok(L3::Ip(&frame[4..])),
                _ => Err(DecodeError::NotIp),
            }
        }
        LinkType::CiscoHdlc => {
            let proto = be16(frame, 2).ok_or(short)?;
            by_ether_type(proto, &frame[4..], info)
        }
        LinkType::Nflog => nflog_payload(frame).map(L3::Ip),
        LinkType::Ppp => tunnel::ppp(frame).map(L3::Ip).map_err(|m| match m.0 {
            "ppp_not_ip" => DecodeError::NotIp,
            _ => DecodeError::LinkTruncated,
        }),
    }
}

/// Walks VLAN tags, MPLS and PPPoE to the network layer.
fn by_ether_type<'a>(
    mut ether_type: u16,
    mut rest: &'a [u8],
    info: &mut LinkInfo,
) -> Result<L3<'a>, DecodeError> {
    // Untagged IP, nearly every frame of a tap, goes straight through.
    if matches!(ether_type, tunnel::ETHERTYPE_IPV4 | tunnel::ETHERTYPE_IPV6) {
        return Ok(L3::Ip(rest));
    }
    while is_vlan_tag(ether_type) {
        info.vlan_tags += 1;
        if info.vlan_tags > MAX_VLAN_TAGS {
            return Err(DecodeError::TooManyVlanTags);
        }
        ether_type = be16(rest, 2).ok_or(DecodeError::LinkTruncated)?;
        rest = &rest[4..];
    }
    if info.vlan_tags == 1 {
        info.encaps.add(Encap::Vlan);
    } else if info.vlan_tags > 1 {
        info.encaps.add(Encap::Qinq);
    }
    match ether_type {
        tunnel::ETHERTYPE_IPV4 | tunnel::ETHERTYPE_IPV6 => Ok(L3::Ip(rest)),
        ETHERTYPE_MPLS_UNICAST | ETHERTYPE_MPLS_MULTICAST => {
            info.encaps.add(Encap::Mpls);
            match tunnel::mpls(rest).map_err(|m| DecodeError::Tunnel(m.0))? {
                tunnel::Inner::Ip(ip) => Ok(L3::Ip(ip)),
                tunnel::Inner::Ethernet(eth) => Ok(L3::Ethernet(eth)),
            }
        }
        ETHERTYPE_PPPOE_SESSION => {
            info.encaps.add(Encap::Pppoe);
            tunnel::pppoe(rest)
                .map(L3::Ip)
                .map_err(|m| DecodeError::Tunnel(m.0))
        }
        _ => Err(DecodeError::NotIp),
    }
}

/// Link-layer source address of a cooked capture, when it is a 6-byte MAC.
fn sll_mac(len: Option<&[u8]>, addr: Option<&[u8]>) -> Option<crate::mac::MacAddr> {
    let len = be16(len?, 0)?;
    if len != 6 {
        return None;
    }
    addr?.get(..6)?.try_into().ok()
}

/// 802.3 frame: LLC, and for SNAP (AA-AA-03) an OUI and the real EtherType.
fn llc_snap<'a>(rest: &'a [u8], info: &mut LinkInfo) -> Result<L3<'a>, DecodeError> {
    match rest {
        [0xaa, 0xaa, 0x03, _, _, _, t0, t1, payload @ ..] => {
            by_ether_type(u16::from_be_bytes([*t0, *t1]), payload, info)
        }
        [_, _, _, ..] => Err(DecodeError::NotIp),
        _ => Err(DecodeError::LinkTruncated),
    }
}

/// NFLOG: family(1) version(1) resource id(2), then TLVs of length(2, host order, includes
/// the 4-byte TLV header) type(2), each padded to 4 bytes. Type 9 (NFULA_PAYLOAD) is the packet.
fn nflog_payload(frame: &[u8]) -> Result<&[u8], DecodeError> {
    const NFULA_PAYLOAD: u16 = 9;
    let mut at = 4;
    while at < frame.len() {
        if at + 4 > frame.len() {
            return Err(DecodeError::LinkTruncated);
        }
        let len = usize::from(u16::from_le_bytes([frame[at], frame[at + 1]]));
        let kind = u16::from_le_bytes([frame[at + 2], frame[at + 3]]);
        if len < 4 {
            return Err(DecodeError::LinkTruncated);
        }
        let value = frame
            .get(at + 4..at + len)
            .ok_or(DecodeError::LinkTruncated)?;
        if kind == NFULA_PAYLOAD {
            return Ok(value);
        }
        at += (len + 3) & !3;
    }
    Err(DecodeError::NotIp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_family_in_either_byte_order() {
        let mut info = LinkInfo::default();
        let le = [2, 0, 0, 0, 0x45];
        assert!(matches!(
            strip(LinkType::Null, &le, &mut info),
            Ok(L3::Ip(_))
        ));
        let be = [0, 0, 0, 24, 0x60];
        assert!(matches!(
            strip(LinkType::Null, &be, &mut info),
            Ok(L3::Ip(_))
        ));
        assert_eq!(
            strip(LinkType::Null, &[0, 0, 0, 7], &mut info).err(),
            Some(DecodeError::NotIp)
        );
    }

    #[test]
    fn nflog_finds_payload_tlv() {
        // header, a 8-byte TLV of type 1, then the payload TLV (type 9) with 4 bytes.
        let frame = [
            2, 0, 0, 0, 8, 0, 1, 0, 0, 0, 0, 0, 8, 0, 9, 0, 0x45, 1, 2, 3,
        ];
        assert_eq!(nflog_payload(&frame), Ok(&[0x45, 1, 2, 3][..]));
        assert_eq!(nflog_payload(&frame[..14]), Err(DecodeError::LinkTruncated));
    }
}
