//! Extraction: from decoded packets to the names they reveal.
//!
//! Parsers (`dns`, `dhcp`, `tls`, `http`) are pure functions over bytes; `flow` owns the per-flow
//! state (who is the client, the small reassembly buffers, which protocol a stream is, when
//! to stop looking) and calls them. One `Extractor` per worker, never shared.

pub mod anomaly;
pub mod cert;
pub mod dedup;
pub mod dhcp;
pub mod dns;
pub mod ech;
pub mod flow;
pub mod http;
pub mod ja4;
pub mod names;
pub mod quic;
pub mod stream;
pub mod tls;

pub use flow::{DnsParse, Extractor, ExtractorLimits, Prepared};

use crate::decode::Proto;
use crate::time::Timestamp;
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

/// The kinds of names and fingerprints, as they appear in events and alerts.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum NameKind {
    Dns,
    TlsSni,
    QuicSni,
    HttpHost,
    HttpConnect,
    TlsCert,
    Ip,
    Port,
    Ja4,
    UserAgent,
    /// A client fingerprint learned from the vendor's visible traffic, seen on a hidden-name flow.
    Fingerprint,
}

impl NameKind {
    pub const ALL: [NameKind; 11] = [
        NameKind::Dns,
        NameKind::TlsSni,
        NameKind::QuicSni,
        NameKind::HttpHost,
        NameKind::HttpConnect,
        NameKind::TlsCert,
        NameKind::Ip,
        NameKind::Port,
        NameKind::Ja4,
        NameKind::UserAgent,
        NameKind::Fingerprint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NameKind::Dns => "dns",
            NameKind::TlsSni => "tls_sni",
            NameKind::QuicSni => "quic_sni",
            NameKind::HttpHost => "http_host",
            NameKind::HttpConnect => "http_connect",
            NameKind::TlsCert => "tls_cert",
            NameKind::Ip => "ip",
            NameKind::Port => "port",
            NameKind::Ja4 => "ja4",
            NameKind::UserAgent => "user_agent",
            NameKind::Fingerprint => "fingerprint",
        }
    }
}

/// The two ends of a flow, oriented: `client` opened it (or asked the DNS question).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowId {
    pub proto: Proto,
    pub client: SocketAddr,
    pub server: SocketAddr,
}

impl FlowId {
    /// Whether `ip` and `port` are the client's end: the ports first, which differ in all but
    /// a few flows, so that most packets compare no address (`SocketAddr`'s own comparison
    /// takes the family, address, port and, for IPv6, flow label and scope every time).
    pub fn is_client(&self, (ip, port): (IpAddr, u16)) -> bool {
        self.client.port() == port && self.client.ip() == ip
    }
}

/// What a DNS message contributes besides its question name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsDetail<'a> {
    pub is_response: bool,
    pub qtype: u16,
    pub rcode: u8,
    /// Borrowed from the parsed message while the event is handled (no copy per response).
    pub answers: Cow<'a, [dns::Answer]>,
    /// For a response: the query of the same transaction was seen earlier in this capture.
    pub query_seen: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail<'a> {
    Dns(DnsDetail<'a>),
    Tls {
        version: u16,
        ech: bool,
        ja4: Option<String>,
    },
    /// The server's leaf certificate (TLS 1.2 and earlier).
    Cert(Box<cert::CertSummary>),
    Http {
        method: String,
        target: String,
        user_agent: Option<String>,
    },
}

/// One name seen on the wire. It may borrow from the packet's parsed message: it lives as
/// long as the call that reports it, and `into_owned` keeps it longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameEvent<'a> {
    pub ts: Timestamp,
    pub kind: NameKind,
    /// Normalised: lower case, no trailing dot, non-printable bytes escaped.
    pub value: Cow<'a, str>,
    pub flow: FlowId,
    /// MAC address of the client, when the client sent this frame on an Ethernet segment.
    pub client_mac: Option<crate::mac::MacAddr>,
    pub detail: Detail<'a>,
}

/// Where an identity (address ↔ machine) was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// A DHCP REQUEST: the client's own claim on the address, with its host name.
    DhcpRequest,
    /// A DHCP INFORM: a client that already uses the address.
    DhcpInform,
    /// A DHCP ACK: the server bound the address to the client's hardware address.
    DhcpAck,
    /// A DHCPv6 REQUEST, RENEW, REBIND or CONFIRM: addresses the client asks for or holds.
    Dhcpv6Request,
    /// A DHCPv6 REPLY: addresses the server granted to the client's DUID.
    Dhcpv6Reply,
    /// A DNS PTR answer seen on the wire.
    Ptr,
}

impl IdentitySource {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentitySource::DhcpRequest => "dhcp_request",
            IdentitySource::DhcpInform => "dhcp_inform",
            IdentitySource::DhcpAck => "dhcp_ack",
            IdentitySource::Dhcpv6Request => "dhcpv6_request",
            IdentitySource::Dhcpv6Reply => "dhcpv6_reply",
            IdentitySource::Ptr => "ptr",
        }
    }

    pub fn from_label(s: &str) -> Option<IdentitySource> {
        [
            IdentitySource::DhcpRequest,
            IdentitySource::DhcpInform,
            IdentitySource::DhcpAck,
            IdentitySource::Dhcpv6Request,
            IdentitySource::Dhcpv6Reply,
            IdentitySource::Ptr,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// What the wire says about which machine holds an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub ts: Timestamp,
    pub ip: IpAddr,
    pub mac: Option<crate::mac::MacAddr>,
    /// Normalised like every name (lower case, escaped, no trailing dot).
    pub hostname: Option<String>,
    /// DHCP client identifier, colon-separated hex.
    pub client_id: Option<String>,
    pub source: IdentitySource,
}

/// Everything an extractor reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Extracted<'a> {
    Name(NameEvent<'a>),
    /// A ClientHello without a server name: its JA4 is still worth logging and matching.
    Fingerprint {
        ts: Timestamp,
        flow: FlowId,
        detail: Detail<'a>,
    },
    /// A flow began: rules on addresses and ports look at it.
    FlowStart {
        ts: Timestamp,
        flow: FlowId,
        client_mac: Option<crate::mac::MacAddr>,
    },
    /// A flow ended its inspection without revealing any name: passive-DNS attribution
    /// looks at its server address.
    Unnamed {
        ts: Timestamp,
        flow: FlowId,
    },
    /// An address tied to a machine (DHCP) or a name (PTR).
    Identity(Identity),
    /// A recoverable anomaly (metric label).
    Anomaly(anomaly::Anomaly),
    /// A flow was evicted from a full table before it ended.
    Evicted,
}

impl Detail<'_> {
    /// The same detail, owning what it borrowed.
    pub fn into_owned(self) -> Detail<'static> {
        match self {
            Detail::Dns(d) => Detail::Dns(DnsDetail {
                answers: Cow::Owned(d.answers.into_owned()),
                ..d
            }),
            Detail::Tls { version, ech, ja4 } => Detail::Tls { version, ech, ja4 },
            Detail::Cert(c) => Detail::Cert(c),
            Detail::Http {
                method,
                target,
                user_agent,
            } => Detail::Http {
                method,
                target,
                user_agent,
            },
        }
    }
}

impl NameEvent<'_> {
    /// The same event, owning what it borrowed (to keep it past the call that reported it).
    pub fn into_owned(self) -> NameEvent<'static> {
        NameEvent {
            ts: self.ts,
            kind: self.kind,
            value: Cow::Owned(self.value.into_owned()),
            flow: self.flow,
            client_mac: self.client_mac,
            detail: self.detail.into_owned(),
        }
    }
}

impl Extracted<'_> {
    /// The same report, owning what it borrowed.
    pub fn into_owned(self) -> Extracted<'static> {
        match self {
            Extracted::Name(ev) => Extracted::Name(ev.into_owned()),
            Extracted::Fingerprint { ts, flow, detail } => Extracted::Fingerprint {
                ts,
                flow,
                detail: detail.into_owned(),
            },
            Extracted::FlowStart {
                ts,
                flow,
                client_mac,
            } => Extracted::FlowStart {
                ts,
                flow,
                client_mac,
            },
            Extracted::Unnamed { ts, flow } => Extracted::Unnamed { ts, flow },
            Extracted::Identity(id) => Extracted::Identity(id),
            Extracted::Anomaly(a) => Extracted::Anomaly(a),
            Extracted::Evicted => Extracted::Evicted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_kind_is_listed_at_its_own_index() {
        // `metrics::Local` counts names in an array indexed by the kind.
        for (i, kind) in NameKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "{kind:?}");
        }
    }

    #[test]
    fn the_client_end_is_its_address_and_port_together() {
        let v4: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let v6: IpAddr = "fd00::a00:1".parse().expect("address");
        let id = FlowId {
            proto: Proto::Tcp,
            client: SocketAddr::new(v4, 53),
            server: SocketAddr::new(other, 53),
        };
        for ip in [
            v4,
            other,
            v6,
            v4.to_canonical(),
            "::ffff:10.0.0.1".parse().expect("address"),
        ] {
            for port in [0, 53, 54] {
                let expected = id.client == SocketAddr::new(ip, port);
                assert_eq!(id.is_client((ip, port)), expected, "{ip} {port}");
            }
        }
        assert!(id.is_client((v4, 53)));
        assert!(!id.is_client((other, 53)));
    }
}
