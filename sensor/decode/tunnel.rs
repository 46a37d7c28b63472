//! Encapsulations a tap delivers traffic in: header views that find the inner frame or IP
//! packet, in the manner of smoltcp's `wire` module (named offsets, one checked reader).
//!
//! Each function takes the bytes after the outer header that announced the tunnel and
//! returns what is inside, or `Malformed` with a metric label. Nothing here allocates.

use super::bytes::be16;
/// What a tunnel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inner<'a> {
    Ethernet(&'a [u8]),
    Ip(&'a [u8]),
}

/// A tunnel header that does not parse; the label is the metric reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// The encapsulations, as bits, so a packet can say which it came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum Encap {
    Vlan = 1,
    Qinq = 1 << 1,
    Mpls = 1 << 2,
    Pppoe = 1 << 3,
    Gre = 1 << 4,
    Erspan = 1 << 5,
    Vxlan = 1 << 6,
    Geneve = 1 << 7,
    IpInIp = 1 << 8,
    Teredo = 1 << 9,
    Ayiya = 1 << 10,
    Gtp = 1 << 11,
}

impl Encap {
    pub const ALL: [Encap; 12] = [
        Encap::Vlan,
        Encap::Qinq,
        Encap::Mpls,
        Encap::Pppoe,
        Encap::Gre,
        Encap::Erspan,
        Encap::Vxlan,
        Encap::Geneve,
        Encap::IpInIp,
        Encap::Teredo,
        Encap::Ayiya,
        Encap::Gtp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Encap::Vlan => "vlan",
            Encap::Qinq => "qinq",
            Encap::Mpls => "mpls",
            Encap::Pppoe => "pppoe",
            Encap::Gre => "gre",
            Encap::Erspan => "erspan",
            Encap::Vxlan => "vxlan",
            Encap::Geneve => "geneve",
            Encap::IpInIp => "ip_in_ip",
            Encap::Teredo => "teredo",
            Encap::Ayiya => "ayiya",
            Encap::Gtp => "gtp",
        }
    }
}

/// A set of `Encap`s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Encaps(pub u16);

impl Encaps {
    pub fn add(&mut self, e: Encap) {
        self.0 |= e as u16;
    }

    pub fn iter(self) -> impl Iterator<Item = Encap> {
        Encap::ALL
            .into_iter()
            .filter(move |e| self.0 & (*e as u16) != 0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_TEB: u16 = 0x6558;
const ETHERTYPE_ERSPAN_2: u16 = 0x88be;
const ETHERTYPE_ERSPAN_3: u16 = 0x22eb;
const ETHERTYPE_PPP: u16 = 0x880b;

/// UDP ports whose payload is a tunnel. VXLAN 4789 (RFC 7348), Geneve 6081 (RFC 8926),
/// GRE-in-UDP 4754 (RFC 8086), Teredo 3544 (RFC 4380), AYIYA 5072, GTP-U 2152.
pub const VXLAN_PORT: u16 = 4789;
pub const GENEVE_PORT: u16 = 6081;
pub const GRE_UDP_PORT: u16 = 4754;
pub const TEREDO_PORT: u16 = 3544;
pub const AYIYA_PORT: u16 = 5072;
pub const GTPU_PORT: u16 = 2152;

fn short(reason: &'static str) -> Malformed {
    Malformed(reason)
}

/// The inner packet by EtherType-style protocol number.
fn by_protocol<'a>(
    proto: u16,
    rest: &'a [u8],
    reason: &'static str,
) -> Result<(Inner<'a>, Encap), Malformed> {
    match proto {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Ok((Inner::Ip(rest), Encap::Gre)),
        ETHERTYPE_TEB => Ok((Inner::Ethernet(rest), Encap::Gre)),
        _ => Err(Malformed(reason)),
    }
}

/// GRE (RFC 2784/2890, and PPTP's enhanced GRE, RFC 2637), with ERSPAN types I, II and III.
pub fn gre(b: &[u8]) -> Result<(Inner<'_>, Encap), Malformed> {
    let flags = be16(b, 0).ok_or(short("gre_truncated"))?;
    let proto = be16(b, 2).ok_or(short("gre_truncated"))?;
    let checksum = flags & 0x8000 != 0;
    let key = flags & 0x2000 != 0;
    let seq = flags & 0x1000 != 0;
    let version = flags & 0x7;
    let ack = version == 1 && flags & 0x0080 != 0;
    let len =
        4 + 4 * (usize::from(checksum) + usize::from(key) + usize::from(seq) + usize::from(ack));
    let rest = b.get(len..).ok_or(short("gre_truncated"))?;
    match (version, proto) {
        (1, ETHERTYPE_PPP) => ppp(rest).map(|ip| (Inner::Ip(ip), Encap::Gre)),
        (0, ETHERTYPE_ERSPAN_2) if !seq => Ok((Inner::Ethernet(rest), Encap::Erspan)),
        (0, ETHERTYPE_ERSPAN_2) => {
            // Type II: 8-byte header, version 1 in its top nibble.
            let inner = rest.get(8..).ok_or(short("erspan_truncated"))?;
            Ok((Inner::Ethernet(inner), Encap::Erspan))
        }
        (0, ETHERTYPE_ERSPAN_3) => {
            // Type III: 12-byte header; its last bit (O) says an 8-byte subheader follows.
            let o = rest.get(11).ok_or(short("erspan_truncated"))? & 0x01 != 0;
            let inner = rest
                .get(if o { 20 } else { 12 }..)
                .ok_or(short("erspan_truncated"))?;
            Ok((Inner::Ethernet(inner), Encap::Erspan))
        }
        (0, p) => by_protocol(p, rest, "gre_unknown_protocol"),
        _ => Err(Malformed("gre_unknown_version")),
    }
}

/// PPP: optional address/control (FF 03), then a 1- or 2-byte protocol. Returns the IP packet.
pub fn ppp(b: &[u8]) -> Result<&[u8], Malformed> {
    let b = b.strip_prefix(&[0xff, 0x03]).unwrap_or(b);
    match b {
        [0x21, rest @ ..]
        | [0x00, 0x21, rest @ ..]
        | [0x57, rest @ ..]
        | [0x00, 0x57, rest @ ..] => Ok(rest),
        [] | [_] => Err(Malformed("ppp_truncated")),
        _ => Err(Malformed("ppp_not_ip")),
    }
}

/// VXLAN (RFC 7348): 8 bytes, the I flag set, then an Ethernet frame.
pub fn vxlan(b: &[u8]) -> Result<(Inner<'_>, Encap), Malformed> {
    let flags = *b.first().ok_or(short("vxlan_truncated"))?;
    if flags & 0x08 == 0 {
        return Err(Malformed("vxlan_no_vni"));
    }
    Ok((
        Inner::Ethernet(b.get(8..).ok_or(short("vxlan_truncated"))?),
        Encap::Vxlan,
    ))
}

/// Geneve (RFC 8926): 8 bytes plus options, protocol type says what follows.
pub fn geneve(b: &[u8]) -> Result<(Inner<'_>, Encap), Malformed> {
    let first = *b.first().ok_or(short("geneve_truncated"))?;
    if first >> 6 != 0 {
        return Err(Malformed("geneve_unknown_version"));
    }
    let opt_len = usize::from(first & 0x3f) * 4;
    let proto = be16(b, 2).ok_or(short("geneve_truncated"))?;
    let rest = b.get(8 + opt_len..).ok_or(short("geneve_truncated"))?;
    by_protocol(proto, rest, "geneve_unknown_protocol").map(|(i, _)| (i, Encap::Geneve))
}

/// Teredo (RFC 4380): optional authentication and origin-indication headers, then IPv6.
pub fn teredo(b: &[u8]) -> Result<(Inner<'_>, Encap), Malformed> {
    let mut rest = b;
    if let [0x00, 0x01, id_len, au_len, ..] = rest {
        let skip = 4 + usize::from(*id_len) + usize::from(*au_len) + 8 + 1;
        rest = rest.get(skip..).ok_or(short("teredo_truncated"))?;
    }
    if let [0x00, 0x00, ..] = rest {
        rest = rest.get(8..).ok_or(short("teredo_truncated"))?;
    }
    match rest.first() {
        Some(v) if v >> 4 == 6 && rest.len() >= 40 => Ok((Inner::Ip(rest), Encap::Teredo)),
        _ => Err(Malformed("teredo_not_ipv6")),
    }
}

/// Teredo on a port other than 3544: the payload must be exactly one IPv6 packet (its
/// payload length fills the datagram) with a Teredo (2001::/32) or link-local end.
pub fn teredo_by_content(b: &[u8]) -> Option<(Inner<'_>, Encap)> {
    if b.len() < 40 || b[0] >> 4 != 6 {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([b[4], b[5]]));
    if payload_len + 40 != b.len() {
        return None;
    }
    let teredo_or_link_local =
        |a: &[u8]| a[..4] == [0x20, 0x01, 0x00, 0x00] || (a[0] == 0xfe && a[1] & 0xc0 == 0x80);
    (teredo_or_link_local(&b[8..24]) || teredo_or_link_local(&b[24..40]))
        .then_some((Inner::Ip(b), Encap::Teredo))
}

/// AYIYA ("anything in anything"): identity and signature of announced lengths, then the packet.
pub fn ayiya(b: &[u8]) -> Result<(Inner<'_>, Encap), Malformed> {
    let [id, sig, op, next, ..] = b else {
        return Err(Malformed("ayiya_truncated"));
    };
    const OPCODE_FORWARD: u8 = 1;
    if op & 0x0f != OPCODE_FORWARD || !matches!(next, 4 | 41) {
        return Err(Malformed("ayiya_not_forward"));
    }
    let id_len = 1usize << (id >> 4);
    let sig_len = usize::from(sig >> 4) * 4;
    let rest = b
        .get(8 + id_len + sig_len..)
        .ok_or(short("ayiya_truncated"))?;
    Ok((Inner::Ip(rest), Encap::Ayiya))
}

/// GTP-U v1 (3GPP TS 29.281) G-PDU: 8 bytes, optional 4, extension headers, then IP.
pub fn gtpu(b: &[u8]) -> Result<(Inner<'_>, Encap), Malformed> {
    let [flags, msg_type, ..] = b else {
        return Err(Malformed("gtp_truncated"));
    };
    const G_PDU: u8 = 0xff;
    if flags >> 5 != 1 || flags & 0x10 == 0 || *msg_type != G_PDU {
        return Err(Malformed("gtp_not_gpdu"));
    }
    let mut at = 8;
    if flags & 0x07 != 0 {
        at = 12;
        let mut next = *b.get(11).ok_or(short("gtp_truncated"))?;
        let mut hops = 0;
        while next != 0 {
            let len = usize::from(*b.get(at).ok_or(short("gtp_truncated"))?) * 4;
            if len == 0 || hops > 8 {
                return Err(Malformed("gtp_bad_extension"));
            }
            next = *b.get(at + len - 1).ok_or(short("gtp_truncated"))?;
            at += len;
            hops += 1;
        }
    }
    let rest = b.get(at..).ok_or(short("gtp_truncated"))?;
    match rest.first() {
        Some(v) if matches!(v >> 4, 4 | 6) => Ok((Inner::Ip(rest), Encap::Gtp)),
        _ => Err(Malformed("gtp_not_ip")),
    }
}

/// MPLS label stack, then a guess of the payload as peers make it: IPv4 or IPv6 by the first
/// nibble, a pseudowire control word (nibble 0) before Ethernet, otherwise Ethernet.
pub fn mpls(b: &[u8]) -> Result<Inner<'_>, Malformed> {
    let mut at = 0;
    for _ in 0..16 {
        let bottom = b.get(at + 2).ok_or(short("mpls_truncated"))? & 0x01 != 0;
        at += 4;
        if bottom {
            let rest = &b[at.min(b.len())..];
            return match rest.first().map(|v| v >> 4) {
                Some(4) | Some(6) => Ok(Inner::Ip(rest)),
                Some(0) => Ok(Inner::Ethernet(
                    rest.get(4..).ok_or(short("mpls_truncated"))?,
                )),
                Some(_) => Ok(Inner::Ethernet(rest)),
                None => Err(Malformed("mpls_truncated")),
            };
        }
    }
    Err(Malformed("mpls_stack_too_deep"))
}

/// PPPoE session stage (RFC 2516): 6-byte header, then PPP.
pub fn pppoe(b: &[u8]) -> Result<&[u8], Malformed> {
    match b {
        [0x11, 0x00, _, _, _, _, rest @ ..] => ppp(rest),
        [_, _, _, _, _, _, ..] => Err(Malformed("pppoe_not_session_data")),
        _ => Err(Malformed("pppoe_truncated")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gre_variants() {
        let ip = [0x45u8, 0, 0, 20];
        let mut plain = vec![0, 0, 0x08, 0];
        plain.extend_from_slice(&ip);
        assert_eq!(gre(&plain), Ok((Inner::Ip(&ip), Encap::Gre)));
        // Key and sequence present.
        let mut keyed = vec![0x30, 0, 0x65, 0x58, 0, 0, 0, 1, 0, 0, 0, 2];
        keyed.extend_from_slice(&ip);
        assert_eq!(gre(&keyed), Ok((Inner::Ethernet(&ip), Encap::Gre)));
        // ERSPAN II: sequence present, 8-byte ERSPAN header.
        let mut e2 = vec![0x10, 0, 0x88, 0xbe, 0, 0, 0, 9, 0x10, 0, 0, 1, 0, 0, 0, 0];
        e2.extend_from_slice(&ip);
        assert_eq!(gre(&e2), Ok((Inner::Ethernet(&ip), Encap::Erspan)));
        // PPTP: version 1, PPP with address/control, IPv4.
        let mut pptp = vec![
            0x30, 0x01, 0x88, 0x0b, 0, 4, 0, 1, 0, 0, 0, 1, 0xff, 0x03, 0x00, 0x21,
        ];
        pptp.extend_from_slice(&ip);
        assert_eq!(gre(&pptp), Ok((Inner::Ip(&ip), Encap::Gre)));
        assert!(gre(&[0x80, 0]).is_err());
    }

    #[test]
    fn mpls_guesses_payload() {
        let stack = [0, 0x01, 0x00, 64, 0, 0x02, 0x01, 64, 0x45, 0];
        assert_eq!(mpls(&stack), Ok(Inner::Ip(&stack[8..])));
        let cw = [0, 0x01, 0x01, 64, 0, 0, 0, 0, 0xaa];
        assert_eq!(mpls(&cw), Ok(Inner::Ethernet(&cw[8..])));
        assert!(mpls(&[0, 1, 0]).is_err());
    }

    #[test]
    fn udp_tunnels() {
        assert_eq!(
            vxlan(&[8, 0, 0, 0, 0, 0, 1, 0, 0xaa]),
            Ok((Inner::Ethernet(&[0xaa][..]), Encap::Vxlan))
        );
        assert!(vxlan(&[0, 0, 0, 0, 0, 0, 1, 0]).is_err());
        assert_eq!(
            geneve(&[0, 0, 0x65, 0x58, 0, 0, 1, 0, 0xbb]),
            Ok((Inner::Ethernet(&[0xbb][..]), Encap::Geneve))
        );
        let mut ipv6 = vec![0x60u8];
        ipv6.resize(40, 0);
        assert_eq!(teredo(&ipv6).map(|r| r.1), Ok(Encap::Teredo));
        let mut gtp = vec![0x30, 0xff, 0, 20, 0, 0, 0, 1];
        gtp.push(0x45);
        assert_eq!(gtpu(&gtp), Ok((Inner::Ip(&[0x45][..]), Encap::Gtp)));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let samples: [&[u8]; 3] = [
            &[
                0x30, 0x01, 0x88, 0x0b, 0, 4, 0, 1, 0, 0, 0, 1, 0xff, 0x03, 0x00, 0x21, 0x45,
            ],
            &[
                0x34, 0xff, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0x85, 1, 0, 0, 0, 0x45,
            ],
            &[0x11, 0x00, 0, 1, 0, 10, 0x00, 0x21, 0x45],
        ];
        for s in samples {
            for n in 0..s.len() {
                let _ = (
                    gre(&s[..n]),
                    gtpu(&s[..n]),
                    pppoe(&s[..n]),
                    mpls(&s[..n]),
                    ayiya(&s[..n]),
                    teredo(&s[..n]),
                    geneve(&s[..n]),
                    vxlan(&s[..n]),
                );
            }
        }
    }
}
