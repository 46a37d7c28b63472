//! DHCPv4 (RFC 2131 BOOTP header, RFC 2132 options) and DHCPv6 (RFC 8415) message
//! parsers, pure: bytes in, a borrowed view out. They own one question besides the parse:
//! which message of the exchange ties which address to which machine
//! (`Message::binding`, `MessageV6::bindings`).
//!
//! Only the fields that identify a machine are read: the client hardware address
//! (`chaddr`), `ciaddr` / `yiaddr`, and the options message type (53), host name (12),
//! client FQDN (81), client identifier (61), requested address (50) and option overload
//! (52, whose `file` / `sname` fields then hold more options). The first occurrence of an
//! option wins (RFC 3396 long-option concatenation is not needed for these). A truncated
//! option ends the options and is flagged, never an error: the header is still worth having.
//!
//! DHCPv6 likewise reads only the client DUID (option 1), the addresses (5) inside IA_NA (3)
//! and IA_TA (4), and the client FQDN (39); relay envelopes (12, 13) are unwrapped through
//! their relay-message option (9), at most `V6_MAX_RELAY_DEPTH` deep.

use crate::decode::bytes::be16;
use std::net::{Ipv4Addr, Ipv6Addr};

/// BOOTP fixed header, up to and including the magic cookie.
pub const HEADER_LEN: usize = 240;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
const CHADDR: std::ops::Range<usize> = 28..44;
const SNAME: std::ops::Range<usize> = 44..108;
const FILE: std::ops::Range<usize> = 108..236;

pub const OP_REQUEST: u8 = 1;
pub const OP_REPLY: u8 = 2;
/// `htype` of Ethernet (and of every IEEE 802 MAC).
pub const HTYPE_ETHERNET: u8 = 1;

const OPT_PAD: u8 = 0;
const OPT_HOST_NAME: u8 = 12;
const OPT_REQUESTED_ADDRESS: u8 = 50;
const OPT_OVERLOAD: u8 = 52;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_CLIENT_ID: u8 = 61;
const OPT_CLIENT_FQDN: u8 = 81;
const OPT_END: u8 = 255;

/// DHCP message types (option 53).
pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const DECLINE: u8 = 4;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;
pub const RELEASE: u8 = 7;
pub const INFORM: u8 = 8;

/// Client FQDN flag E (RFC 4702 §2.1): the name is in DNS wire encoding.
const FQDN_FLAG_E: u8 = 0x04;

/// Why a datagram is not a DHCP message we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum DhcpError {
    #[error("shorter than a BOOTP header")]
    TooShort,
    #[error("BOOTP op is neither request nor reply")]
    BadOp,
    #[error("no DHCP magic cookie (plain BOOTP or not BOOTP)")]
    NoMagic,
    #[error("DHCPv6 relay messages nested deeper than we follow")]
    RelayTooDeep,
}

impl DhcpError {
    /// Metric label.
    pub fn reason(self) -> &'static str {
        match self {
            DhcpError::TooShort => "dhcp_too_short",
            DhcpError::BadOp => "dhcp_bad_op",
            DhcpError::NoMagic => "dhcp_no_magic",
            DhcpError::RelayTooDeep => "dhcpv6_relay_too_deep",
        }
    }
}

/// Client FQDN: DHCPv4 option 81 (RFC 4702) or DHCPv6 option 39 (RFC 4704): flags and
/// the name, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFqdn<'a> {
    pub flags: u8,
    pub name: &'a [u8],
    /// The name is in DNS wire encoding: flag E in DHCPv4, always in DHCPv6.
    pub wire: bool,
}

impl ClientFqdn<'_> {
    /// The name, normalised (labels joined by dots when it is in wire encoding).
    /// `None` when empty or unreadable.
    pub fn name(&self) -> Option<String> {
        if !self.wire {
            return super::names::normalize(self.name);
        }
        let mut text = Vec::with_capacity(self.name.len());
        let mut rest = self.name;
        while let Some((&len, tail)) = rest.split_first() {
            // A pointer or reserved label type: compression is not allowed here (RFC 4702 §2.3.1).
            if len == 0 || len & 0xc0 != 0 {
                break;
            }
            // A label cut short still names something: keep what is there.
            let label = tail.get(..usize::from(len)).unwrap_or(tail);
            if !text.is_empty() {
                text.push(b'.');
            }
            text.extend_from_slice(label);
            rest = tail.get(usize::from(len)..).unwrap_or_default();
        }
        super::names::normalize(&text)
    }
}

/// Recoverable problems, each a counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Anomalies {
    /// An option ran past the end of its area; the options after it are unread.
    pub options_truncated: bool,
}

/// One DHCPv4 message, borrowed from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub op: u8,
    pub htype: u8,
    pub xid: u32,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    /// The client hardware address, `hlen` octets (at most 16).
    pub chaddr: &'a [u8],
    pub message_type: Option<u8>,
    pub host_name: Option<&'a [u8]>,
    pub client_fqdn: Option<ClientFqdn<'a>>,
    pub client_id: Option<&'a [u8]>,
    pub requested_address: Option<Ipv4Addr>,
    pub anomalies: Anomalies,
}

/// What one message says about an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingSource {
    /// A client asked for (or renews) this address: its own claim, before the server agreed.
    Request,
    /// A client configured by other means asked for parameters: it holds `ciaddr`.
    Inform,
    /// The server bound the address to this client.
    Ack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub address: Ipv4Addr,
    pub source: BindingSource,
}

fn ipv4(b: &[u8], at: usize) -> Ipv4Addr {
    match b.get(at..at + 4) {
        Some(&[a, b, c, d]) => Ipv4Addr::new(a, b, c, d),
        _ => Ipv4Addr::UNSPECIFIED,
    }
}

/// Parses one DHCPv4 message (the UDP payload).
pub fn parse(d: &[u8]) -> Result<Message<'_>, DhcpError> {
    let header = d.get(..HEADER_LEN).ok_or(DhcpError::TooShort)?;
    let op = header[0];
    if op != OP_REQUEST && op != OP_REPLY {
        return Err(DhcpError::BadOp);
    }
    if header[236..240] != MAGIC {
        return Err(DhcpError::NoMagic);
    }
    let hlen = usize::from(header[2]).min(CHADDR.len());
    let mut m = Message {
        op,
        htype: header[1],
        xid: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
        ciaddr: ipv4(header, 12),
        yiaddr: ipv4(header, 16),
        giaddr: ipv4(header, 24),
        chaddr: &header[CHADDR.start..CHADDR.start + hlen],
        message_type: None,
        host_name: None,
        client_fqdn: None,
        client_id: None,
        requested_address: None,
        anomalies: Anomalies::default(),
    };
    let overload = read_options(&d[HEADER_LEN..], &mut m);
    // RFC 2132 §9.3: 1 = `file` holds options, 2 = `sname`, 3 = both (file first).
    if matches!(overload, Some(1 | 3)) {
        read_options(&header[FILE], &mut m);
    }
    if matches!(overload, Some(2 | 3)) {
        read_options(&header[SNAME], &mut m);
    }
    Ok(m)
}

/// Reads one options area into `m`; returns the overload option's value, if present.
fn read_options<'a>(mut area: &'a [u8], m: &mut Message<'a>) -> Option<u8> {
    let mut overload = None;
    while let Some((&code, rest)) = area.split_first() {
        match code {
            OPT_PAD => {
                area = rest;
                continue;
            }
            OPT_END => break,
            _ => {}
        }
        let Some((&len, rest)) = rest.split_first() else {
            m.anomalies.options_truncated = true;
            break;
        };
        let Some(value) = rest.get(..usize::from(len)) else {
            m.anomalies.options_truncated = true;
            break;
        };
        area = &rest[usize::from(len)..];
        match (code, value) {
            (OPT_MESSAGE_TYPE, &[t]) => {
                m.message_type.get_or_insert(t);
            }
            (OPT_HOST_NAME, v) if !v.is_empty() => {
                m.host_name.get_or_insert(v);
            }
            (OPT_CLIENT_ID, v) if !v.is_empty() => {
                m.client_id.get_or_insert(v);
            }
            (OPT_REQUESTED_ADDRESS, &[a, b, c, d]) => {
                m.requested_address.get_or_insert(Ipv4Addr::new(a, b, c, d));
            }
            (OPT_CLIENT_FQDN, &[flags, _rcode1, _rcode2, ref name @ ..]) => {
                m.client_fqdn.get_or_insert(ClientFqdn {
                    flags,
                    name,
                    wire: flags & FQDN_FLAG_E != 0,
                });
            }
            (OPT_OVERLOAD, &[v]) => overload = Some(v),
            _ => {}
        }
    }
    overload
}

impl Message<'_> {
    /// The client's MAC address, when the hardware is Ethernet.
    pub fn client_mac(&self) -> Option<crate::mac::MacAddr> {
        if self.htype != HTYPE_ETHERNET {
            return None;
        }
        self.chaddr.try_into().ok()
    }

    /// The host name the message carries: option 12, else the name of option 81.
    pub fn hostname(&self) -> Option<String> {
        self.host_name
            .and_then(super::names::normalize)
            .or_else(|| self.client_fqdn.and_then(|f| f.name()))
    }

    /// The client identifier as colon-separated hex (how tshark and dhcpd leases write it).
    pub fn client_id_hex(&self) -> Option<String> {
        self.client_id
            .map(|id| colon_hex(&id[..id.len().min(MAX_CLIENT_ID)]))
    }

    /// Which address this message ties to its client (`chaddr`, client id, host name).
    ///
    /// - REQUEST: `ciaddr` when the client renews or rebinds an address it holds, else the
    ///   requested address (option 50) when it selects an offer or reboots. Its host name is
    ///   usually only here: servers need not echo it.
    /// - INFORM: `ciaddr`, which the client already uses.
    /// - ACK: `yiaddr`, the address the server bound to `chaddr` (`ciaddr` for an ACK to an
    ///   INFORM, whose `yiaddr` is zero).
    ///
    /// DISCOVER and OFFER bind nothing yet, DECLINE / NAK / RELEASE undo a binding: `None`.
    pub fn binding(&self) -> Option<Binding> {
        let usable = |a: Ipv4Addr| (!a.is_unspecified() && !a.is_broadcast()).then_some(a);
        let (address, source) = match (self.op, self.message_type?) {
            (OP_REQUEST, REQUEST) => (
                usable(self.ciaddr).or(self.requested_address.and_then(usable))?,
                BindingSource::Request,
            ),
            (OP_REQUEST, INFORM) => (usable(self.ciaddr)?, BindingSource::Inform),
            (OP_REPLY, ACK) => (
                usable(self.yiaddr).or(usable(self.ciaddr))?,
                BindingSource::Ack,
            ),
            _ => return None,
        };
        Some(Binding { address, source })
    }
}

/// Client identifier octets kept: a DUID is at most 130 (RFC 8415 §11.1), and a DHCPv4
/// client identifier is one in practice (or a type and a MAC).
pub const MAX_CLIENT_ID: usize = 130;

/// Bytes as colon-separated lower-case hex.
pub fn colon_hex(id: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(id.len() * 3);
    for (i, &b) in id.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

// ---------------------------------------------------------------------------------------
// DHCPv6
// ---------------------------------------------------------------------------------------

/// DHCPv6 message types read here (RFC 8415 §7.3; a SOLICIT carries no address yet).
pub const V6_REQUEST: u8 = 3;
pub const V6_CONFIRM: u8 = 4;
pub const V6_RENEW: u8 = 5;
pub const V6_REBIND: u8 = 6;
pub const V6_REPLY: u8 = 7;
pub const V6_RELAY_FORW: u8 = 12;
pub const V6_RELAY_REPL: u8 = 13;

const V6_OPT_CLIENTID: u16 = 1;
const V6_OPT_IA_NA: u16 = 3;
const V6_OPT_IA_TA: u16 = 4;
const V6_OPT_IAADDR: u16 = 5;
const V6_OPT_RELAY_MSG: u16 = 9;
const V6_OPT_CLIENT_FQDN: u16 = 39;

/// Relay-message nesting followed; deeper ones are flagged (RFC 8415 allows 32 hops, a
/// real network has one or two).
pub const V6_MAX_RELAY_DEPTH: usize = 4;
/// Addresses read per message; the rest are flagged, not read.
pub const V6_MAX_ADDRESSES: usize = 8;

/// One DHCPv6 message, borrowed from the datagram (relay envelopes unwrapped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageV6<'a> {
    /// The type of the innermost message.
    pub msg_type: u8,
    pub transaction_id: u32,
    /// The message came through this many relays.
    pub relayed: u8,
    /// The client's DUID (option 1).
    pub client_duid: Option<&'a [u8]>,
    pub client_fqdn: Option<ClientFqdn<'a>>,
    /// (address, valid lifetime) of the IAADDR options inside IA_NA and IA_TA.
    pub addresses: smallvec::SmallVec<[(Ipv6Addr, u32); 2]>,
    pub anomalies: AnomaliesV6,
}

/// Recoverable problems of a DHCPv6 message, each a counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnomaliesV6 {
    pub options_truncated: bool,
    pub addresses_truncated: bool,
}

/// What a DHCPv6 message says about one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingV6 {
    pub address: Ipv6Addr,
    /// `Request` for the client's own REQUEST / RENEW / REBIND / CONFIRM, `Ack` for the
    /// server's REPLY (the binding it granted).
    pub source: BindingSource,
}

/// Walks an options area: (code, value) until its end or a truncated option, which ends
/// the walk and sets `truncated`.
struct V6Options<'a> {
    area: &'a [u8],
    truncated: bool,
}

impl<'a> V6Options<'a> {
    fn new(area: &'a [u8]) -> Self {
        V6Options {
            area,
            truncated: false,
        }
    }
}

impl<'a> Iterator for V6Options<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.area.is_empty() {
            return None;
        }
        let parsed = be16(self.area, 0).zip(be16(self.area, 2));
        let value = parsed.and_then(|(_, len)| self.area.get(4..4 + usize::from(len)));
        let (Some((code, _)), Some(value)) = (parsed, value) else {
            self.truncated = true;
            self.area = &[];
            return None;
        };
        self.area = &self.area[4 + value.len()..];
        Some((code, value))
    }
}

/// Parses one DHCPv6 message (the UDP payload), unwrapping relay envelopes.
pub fn parse_v6(d: &[u8]) -> Result<MessageV6<'_>, DhcpError> {
    let mut anomalies = AnomaliesV6::default();
    let (msg, relayed) = unwrap_relays(d, &mut anomalies)?;
    let header = msg.get(..4).ok_or(DhcpError::TooShort)?;
    let msg_type = header[0];
    if msg_type == 0 || msg_type > 35 {
        return Err(DhcpError::BadOp);
    }
    let mut m = MessageV6 {
        msg_type,
        transaction_id: u32::from_be_bytes([0, header[1], header[2], header[3]]),
        relayed,
        client_duid: None,
        client_fqdn: None,
        addresses: smallvec::SmallVec::new(),
        anomalies,
    };
    let mut truncated = false;
    let mut options = V6Options::new(&msg[4..]);
    for (code, value) in options.by_ref() {
        match code {
            V6_OPT_CLIENTID if !value.is_empty() => {
                m.client_duid.get_or_insert(value);
            }
            V6_OPT_CLIENT_FQDN => {
                if let Some((&flags, name)) = value.split_first() {
                    m.client_fqdn.get_or_insert(ClientFqdn {
                        flags,
                        name,
                        wire: true,
                    });
                }
            }
            V6_OPT_IA_NA | V6_OPT_IA_TA => truncated |= m.read_ia(code, value),
            _ => {}
        }
    }
    m.anomalies.options_truncated |= truncated || options.truncated;
    Ok(m)
}

/// The message inside relay-forward / relay-reply envelopes (at most `V6_MAX_RELAY_DEPTH`
/// of them), and how many there were.
fn unwrap_relays<'a>(
    d: &'a [u8],
    anomalies: &mut AnomaliesV6,
) -> Result<(&'a [u8], u8), DhcpError> {
    let mut msg = d;
    let mut relayed = 0u8;
    // Relay-forward / relay-reply: hop count, link address, peer address, then options
    // holding the relayed message (option 9).
    while matches!(msg.first(), Some(&(V6_RELAY_FORW | V6_RELAY_REPL))) {
        if usize::from(relayed) >= V6_MAX_RELAY_DEPTH {
            return Err(DhcpError::RelayTooDeep);
        }
        let mut opts = V6Options::new(msg.get(34..).ok_or(DhcpError::TooShort)?);
        let inner = opts
            .find(|(code, _)| *code == V6_OPT_RELAY_MSG)
            .map(|(_, v)| v);
        anomalies.options_truncated |= opts.truncated;
        msg = inner.ok_or(DhcpError::TooShort)?;
        relayed += 1;
    }
    Ok((msg, relayed))
}

impl<'a> MessageV6<'a> {
    /// Reads the addresses of an IA_NA or IA_TA option (`code`) into `addresses`; whether
    /// the option or one of its own options was truncated.
    fn read_ia(&mut self, code: u16, value: &'a [u8]) -> bool {
        // IA_NA: IAID, T1, T2, options; IA_TA: IAID, options.
        let skip = if code == V6_OPT_IA_NA { 12 } else { 4 };
        let Some(inner) = value.get(skip..) else {
            return true;
        };
        let mut truncated = false;
        let mut ia = V6Options::new(inner);
        for (c, v) in ia.by_ref() {
            if c != V6_OPT_IAADDR {
                continue;
            }
            let (Some(addr), Some(valid)) = (v.get(..16), v.get(20..24)) else {
                truncated = true;
                continue;
            };
            if self.addresses.len() >= V6_MAX_ADDRESSES {
                self.anomalies.addresses_truncated = true;
                break;
            }
            let mut octets = [0u8; 16];
            octets.copy_from_slice(addr);
            let valid = u32::from_be_bytes([valid[0], valid[1], valid[2], valid[3]]);
            self.addresses.push((Ipv6Addr::from(octets), valid));
        }
        truncated | ia.truncated
    }
}

impl MessageV6<'_> {
    /// The MAC address in the client's DUID, when it is DUID-LLT or DUID-LL of Ethernet.
    pub fn client_mac(&self) -> Option<crate::mac::MacAddr> {
        let duid = self.client_duid?;
        let (duid_type, hw) = (be16(duid, 0)?, be16(duid.get(2..)?, 0)?);
        let lladdr = match duid_type {
            1 => duid.get(8..)?, // DUID-LLT: type, hardware type, time, address
            3 => duid.get(4..)?, // DUID-LL: type, hardware type, address
            _ => return None,
        };
        if hw != u16::from(HTYPE_ETHERNET) {
            return None;
        }
        lladdr.try_into().ok()
    }

    /// The client's DUID as colon-separated hex.
    pub fn client_id_hex(&self) -> Option<String> {
        self.client_duid
            .map(|id| colon_hex(&id[..id.len().min(MAX_CLIENT_ID)]))
    }

    pub fn hostname(&self) -> Option<String> {
        self.client_fqdn.and_then(|f| f.name())
    }

    /// The addresses this message ties to its client (DUID, FQDN):
    ///
    /// - REQUEST, RENEW, REBIND, CONFIRM: the addresses in the client's IAs, which it asks
    ///   for or holds (a SOLICIT's are hints only, and bind nothing).
    /// - REPLY: the addresses the server granted; a valid lifetime of 0 withdraws one and
    ///   binds nothing.
    pub fn bindings(&self) -> impl Iterator<Item = BindingV6> + '_ {
        let source = match self.msg_type {
            V6_REQUEST | V6_RENEW | V6_REBIND | V6_CONFIRM => Some(BindingSource::Request),
            V6_REPLY => Some(BindingSource::Ack),
            _ => None,
        };
        self.addresses
            .iter()
            .filter(move |(a, valid)| {
                source.is_some()
                    && !a.is_unspecified()
                    && !a.is_multicast()
                    && (source != Some(BindingSource::Ack) || *valid > 0)
            })
            .filter_map(move |(a, _)| {
                Some(BindingV6 {
                    address: *a,
                    source: source?,
                })
            })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A BOOTP header with the magic cookie, then `options` (caller adds the end option).
    pub(crate) fn message(
        op: u8,
        chaddr: [u8; 6],
        ciaddr: [u8; 4],
        yiaddr: [u8; 4],
        options: &[u8],
    ) -> Vec<u8> {
        let mut m = vec![0u8; HEADER_LEN];
        m[0] = op;
        m[1] = HTYPE_ETHERNET;
        m[2] = 6;
        m[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        m[12..16].copy_from_slice(&ciaddr);
        m[16..20].copy_from_slice(&yiaddr);
        m[28..34].copy_from_slice(&chaddr);
        m[236..240].copy_from_slice(&MAGIC);
        m.extend_from_slice(options);
        m
    }

    const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x11];

    /// A real message from `pcaps/dhcp-ptr.pcap`: its first 44 octets (up to and including
    /// chaddr), the all-zero `sname` and `file`, the magic cookie, then its options.
    pub(crate) fn real(header_hex: &str, options_hex: &str, trailing_zeros: usize) -> Vec<u8> {
        let hex = |h: &str| -> Vec<u8> {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
                .collect()
        };
        let mut m = hex(header_hex);
        m.resize(236, 0);
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&hex(options_hex));
        m.resize(m.len() + trailing_zeros, 0);
        m
    }

    /// Frame 3: ISC dhclient 4.4.3 REQUEST (selecting), host name and FQDN, no client id.
    pub(crate) fn dhclient_request() -> Vec<u8> {
        real(
            "010106007d6db875000000000000000000000000000000000000000002005e10031100000000000000000000",
            "35010336040a0a030132040a0a03650c0877732d616c69636551110400000877732d616c696365036c616200370401060f0cff",
            9,
        )
    }

    /// Frame 4: dnsmasq 2.90's ACK to it.
    pub(crate) fn dnsmasq_ack() -> Vec<u8> {
        real(
            "020106007d6db87500000000000000000a0a03650a0a03010000000002005e10031100000000000000000000",
            "35010536040a0a0301330400000e103a04000007083b0400000c4e0104ffff00001c040a0affff06040a0a03010f036c61620c0877732d616c696365511107ffff0877732d616c696365036c616200ff",
            0,
        )
    }

    /// Frame 7: busybox 1.35 udhcpc REQUEST, host name and client identifier 01:MAC.
    pub(crate) fn udhcpc_request() -> Vec<u8> {
        real(
            "01010600fe783556000100000000000000000000000000000000000002005e10031200000000000000000000",
            "35010332040a0a036636040a0a03013902024037070103060c0f1c2a0c0677732d626f623c0c756468637020312e33352e303d070102005e100312ff",
            0,
        )
    }

    /// Expected values: tshark 4.0 on pcaps/dhcp-ptr.pcap (dhcp.option.dhcp, dhcp.hw.mac_addr,
    /// dhcp.option.requested_ip_address, dhcp.ip.your, dhcp.option.hostname, dhcp.fqdn.name,
    /// option 61's dhcp.option.value).
    #[test]
    fn real_messages_from_dhclient_udhcpc_and_dnsmasq() {
        let d = dhclient_request();
        let m = parse(&d).expect("dhclient request");
        assert_eq!(
            (m.op, m.message_type, m.xid),
            (OP_REQUEST, Some(REQUEST), 0x7d6d_b875)
        );
        assert_eq!(
            m.client_mac(),
            Some(crate::mac::MacAddr([0x02, 0x00, 0x5e, 0x10, 0x03, 0x11]))
        );
        assert_eq!(m.requested_address, Some(Ipv4Addr::new(10, 10, 3, 101)));
        assert_eq!(m.host_name, Some(&b"ws-alice"[..]));
        assert_eq!(
            m.client_fqdn.and_then(|f| f.name()).as_deref(),
            Some("ws-alice.lab")
        );
        assert_eq!(m.client_id, None);
        assert_eq!(
            m.binding(),
            Some(Binding {
                address: Ipv4Addr::new(10, 10, 3, 101),
                source: BindingSource::Request
            })
        );

        let d = dnsmasq_ack();
        let m = parse(&d).expect("dnsmasq ack");
        assert_eq!(
            (m.op, m.message_type, m.xid),
            (OP_REPLY, Some(ACK), 0x7d6d_b875)
        );
        assert_eq!(m.yiaddr, Ipv4Addr::new(10, 10, 3, 101));
        assert_eq!(
            m.client_mac(),
            Some(crate::mac::MacAddr([0x02, 0x00, 0x5e, 0x10, 0x03, 0x11]))
        );
        assert_eq!(m.hostname().as_deref(), Some("ws-alice"));
        assert_eq!(
            m.client_fqdn.and_then(|f| f.name()).as_deref(),
            Some("ws-alice.lab")
        );
        assert_eq!(
            m.binding().map(|b| (b.address, b.source)),
            Some((Ipv4Addr::new(10, 10, 3, 101), BindingSource::Ack))
        );

        let d = udhcpc_request();
        let m = parse(&d).expect("udhcpc request");
        assert_eq!(
            m.client_mac(),
            Some(crate::mac::MacAddr([0x02, 0x00, 0x5e, 0x10, 0x03, 0x12]))
        );
        assert_eq!(m.hostname().as_deref(), Some("ws-bob"));
        assert_eq!(m.client_id_hex().as_deref(), Some("01:02:00:5e:10:03:12"));
        assert_eq!(
            m.binding().map(|b| b.address),
            Some(Ipv4Addr::new(10, 10, 3, 102))
        );
        assert!(!m.anomalies.options_truncated);
        // Every prefix of a real message is an error or a view, never a panic.
        for n in 0..d.len() {
            let _ = parse(&d[..n]).map(|m| m.binding());
        }
    }

    #[test]
    fn request_with_host_name_client_id_and_requested_address() {
        let opts = [
            53, 1, REQUEST, 0, 0, // pads are skipped
            50, 4, 10, 10, 3, 101, 12, 8, b'W', b's', b'-', b'A', b'l', b'i', b'c', b'e', 61, 7, 1,
            0x02, 0x00, 0x5e, 0x10, 0x00, 0x11, 255,
        ];
        let d = message(OP_REQUEST, MAC, [0; 4], [0; 4], &opts);
        let m = parse(&d).expect("parses");
        assert_eq!(m.message_type, Some(REQUEST));
        assert_eq!(m.client_mac(), Some(crate::mac::MacAddr(MAC)));
        assert_eq!(m.hostname().as_deref(), Some("ws-alice"));
        assert_eq!(m.client_id_hex().as_deref(), Some("01:02:00:5e:10:00:11"));
        assert_eq!(
            m.binding(),
            Some(Binding {
                address: Ipv4Addr::new(10, 10, 3, 101),
                source: BindingSource::Request
            })
        );
        assert!(!m.anomalies.options_truncated);
    }

    fn unhex(h: &str) -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// pcaps/dhcp-ptr.pcap frame 40: ISC dhclient 4.4.3 `-6 -D LL` REQUEST.
    pub(crate) fn dhclient6_request() -> Vec<u8> {
        unhex("03cead8f0001000a0003000102005e1003130002000e0001000132a2280502005e1003010008000200000027000f000877732d6361726f6c036c616200000300285e10031300000e100000151800050018fd00001000000000000000000003010300001c2000001d4c")
    }

    /// Frame 41: dnsmasq 2.90's REPLY to it.
    pub(crate) fn dnsmasq6_reply() -> Vec<u8> {
        unhex("07cead8f0001000a0003000102005e1003130002000e0001000132a2280502005e100301000300285e1003130000070800000c4e00050018fd00001000000000000000000003010300000e1000000e10000d000900007375636365737300170010fd0000100000000000000000000300010027000f030877732d6361726f6c036c616200")
    }

    /// Expected values: tshark 4.0 on the same frames (dhcpv6.msgtype, dhcpv6.duid.bytes,
    /// dhcpv6.duidll.link_layer_addr, dhcpv6.iaaddr.ip, dhcpv6.iaaddr.valid_lifetime,
    /// dhcpv6.client_domain).
    #[test]
    fn real_dhcpv6_request_and_reply() {
        let carol: Ipv6Addr = "fd00:10::3:103".parse().expect("v6");
        let d = dhclient6_request();
        let m = parse_v6(&d).expect("request");
        assert_eq!(
            (m.msg_type, m.transaction_id, m.relayed),
            (V6_REQUEST, 0xcead8f, 0)
        );
        assert_eq!(
            m.client_id_hex().as_deref(),
            Some("00:03:00:01:02:00:5e:10:03:13")
        );
        assert_eq!(
            m.client_mac(),
            Some(crate::mac::MacAddr([0x02, 0x00, 0x5e, 0x10, 0x03, 0x13]))
        );
        assert_eq!(m.hostname().as_deref(), Some("ws-carol.lab"));
        assert_eq!(m.addresses.as_slice(), &[(carol, 7500)]);
        assert_eq!(
            m.bindings().collect::<Vec<_>>(),
            [BindingV6 {
                address: carol,
                source: BindingSource::Request
            }]
        );
        let d = dnsmasq6_reply();
        let m = parse_v6(&d).expect("reply");
        assert_eq!(m.msg_type, V6_REPLY);
        assert_eq!(m.addresses.as_slice(), &[(carol, 3600)]);
        assert_eq!(
            m.bindings().collect::<Vec<_>>(),
            [BindingV6 {
                address: carol,
                source: BindingSource::Ack
            }]
        );
        assert!(!m.anomalies.options_truncated);
        // Valid lifetime 0: the server withdraws the address, which binds nothing.
        let mut withdrawn = d.clone();
        let at = withdrawn
            .windows(16)
            .position(|w| w == carol.octets())
            .expect("IAADDR")
            + 20;
        withdrawn[at..at + 4].copy_from_slice(&[0; 4]);
        assert_eq!(parse_v6(&withdrawn).expect("reply").bindings().count(), 0);
        // Every prefix: an error or a view, never a panic.
        for n in 0..d.len() {
            let _ = parse_v6(&d[..n]).map(|m| m.bindings().count());
        }
    }

    #[test]
    fn dhcpv6_relay_envelopes_are_unwrapped_up_to_a_bound() {
        let relay = |inner: &[u8]| {
            let mut r = vec![V6_RELAY_FORW, 0];
            r.extend_from_slice(&[0u8; 32]); // link and peer address
            r.extend_from_slice(&9u16.to_be_bytes());
            r.extend_from_slice(&(inner.len() as u16).to_be_bytes());
            r.extend_from_slice(inner);
            r
        };
        let mut d = dhclient6_request();
        for depth in 1..=V6_MAX_RELAY_DEPTH {
            d = relay(&d);
            let m = parse_v6(&d).expect("relayed");
            assert_eq!((m.relayed as usize, m.msg_type), (depth, V6_REQUEST));
            assert_eq!(m.bindings().count(), 1);
        }
        assert_eq!(parse_v6(&relay(&d)), Err(DhcpError::RelayTooDeep));
        // A relay message without its inner message, and garbage message types.
        assert_eq!(parse_v6(&d[..40]), Err(DhcpError::TooShort));
        assert_eq!(parse_v6(&[0, 1, 2, 3]), Err(DhcpError::BadOp));
        assert_eq!(parse_v6(&[200, 1, 2, 3]), Err(DhcpError::BadOp));
    }

    #[test]
    fn renewing_request_binds_ciaddr_and_ack_binds_yiaddr() {
        let d = message(
            OP_REQUEST,
            MAC,
            [10, 0, 0, 7],
            [0; 4],
            &[53, 1, REQUEST, 255],
        );
        let b = parse(&d).expect("parses").binding().expect("binds");
        assert_eq!(b.address, Ipv4Addr::new(10, 0, 0, 7));
        let d = message(OP_REPLY, MAC, [0; 4], [10, 0, 0, 8], &[53, 1, ACK, 255]);
        let b = parse(&d).expect("parses").binding().expect("binds");
        assert_eq!(
            (b.address, b.source),
            (Ipv4Addr::new(10, 0, 0, 8), BindingSource::Ack)
        );
        // An ACK to an INFORM: yiaddr is zero, the client's address is ciaddr.
        let d = message(OP_REPLY, MAC, [10, 0, 0, 9], [0; 4], &[53, 1, ACK, 255]);
        assert_eq!(
            parse(&d).expect("parses").binding().map(|b| b.address),
            Some(Ipv4Addr::new(10, 0, 0, 9))
        );
    }

    #[test]
    fn offers_discovers_naks_and_releases_bind_nothing() {
        for (op, t) in [
            (OP_REPLY, OFFER),
            (OP_REQUEST, DISCOVER),
            (OP_REPLY, NAK),
            (OP_REQUEST, RELEASE),
            (OP_REQUEST, DECLINE),
        ] {
            let d = message(
                op,
                MAC,
                [10, 0, 0, 1],
                [10, 0, 0, 2],
                &[53, 1, t, 50, 4, 10, 0, 0, 3, 255],
            );
            assert_eq!(parse(&d).expect("parses").binding(), None, "type {t}");
        }
        // A REQUEST without any address says nothing about one.
        let d = message(OP_REQUEST, MAC, [0; 4], [0; 4], &[53, 1, REQUEST, 255]);
        assert_eq!(parse(&d).expect("parses").binding(), None);
    }

    #[test]
    fn client_fqdn_in_wire_and_ascii_encoding() {
        // flags: S|E, rcode1, rcode2, then "ws-bob.lab" in DNS wire encoding.
        let opts = [
            81, 15, 0x05, 0, 0, 6, b'W', b's', b'-', b'b', b'o', b'b', 3, b'l', b'a', b'b', 0, 255,
        ];
        let d = message(OP_REQUEST, MAC, [0; 4], [0; 4], &opts);
        assert_eq!(
            parse(&d).expect("parses").hostname().as_deref(),
            Some("ws-bob.lab")
        );
        let opts = [
            81, 13, 0x00, 0, 0, b'w', b's', b'-', b'b', b'o', b'b', b'.', b'l', b'a', b'b', 255,
        ];
        let d = message(OP_REQUEST, MAC, [0; 4], [0; 4], &opts);
        assert_eq!(
            parse(&d).expect("parses").hostname().as_deref(),
            Some("ws-bob.lab")
        );
        // Option 12 wins over option 81.
        let opts = [12, 2, b'h', b'1', 81, 5, 0, 0, 0, b'h', b'2', 255];
        let d = message(OP_REQUEST, MAC, [0; 4], [0; 4], &opts);
        assert_eq!(parse(&d).expect("parses").hostname().as_deref(), Some("h1"));
    }

    #[test]
    fn overloaded_file_field_holds_options() {
        let mut d = message(
            OP_REQUEST,
            MAC,
            [0; 4],
            [0; 4],
            &[52, 1, 1, 53, 1, REQUEST, 255],
        );
        d[FILE.start..FILE.start + 7].copy_from_slice(&[12, 4, b'f', b'i', b'l', b'e', 255]);
        let m = parse(&d).expect("parses");
        assert_eq!(m.hostname().as_deref(), Some("file"));
    }

    #[test]
    fn broken_inputs_are_errors_or_flags() {
        assert_eq!(parse(&[1u8; 100]), Err(DhcpError::TooShort));
        let mut d = message(OP_REQUEST, MAC, [0; 4], [0; 4], &[]);
        d[0] = 9;
        assert_eq!(parse(&d), Err(DhcpError::BadOp));
        d[0] = OP_REQUEST;
        d[236] = 0;
        assert_eq!(parse(&d), Err(DhcpError::NoMagic));
        // A host name option that claims more bytes than there are.
        let d = message(
            OP_REQUEST,
            MAC,
            [0; 4],
            [0; 4],
            &[53, 1, REQUEST, 12, 200, b'x'],
        );
        let m = parse(&d).expect("header still read");
        assert!(m.anomalies.options_truncated);
        assert_eq!((m.message_type, m.host_name), (Some(REQUEST), None));
        // hlen beyond the 16 octets of chaddr is clamped; a non-Ethernet chaddr is no MAC.
        let mut d = message(OP_REQUEST, MAC, [0; 4], [0; 4], &[255]);
        d[2] = 255;
        assert_eq!(parse(&d).expect("parses").chaddr.len(), 16);
        d[1] = 6;
        d[2] = 6;
        assert_eq!(parse(&d).expect("parses").client_mac(), None);
    }
}
