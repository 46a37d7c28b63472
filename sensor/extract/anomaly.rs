//! What the extractor found wrong, typed: the protocol parsers' own errors (each with its
//! `reason()`), the flags a DNS message was read with, and the flow-level events of
//! reassembly and inspection. Each value's `reason()` is its metric label; the metrics layer
//! (`metrics::reason`) decides which family and which `layer` label it is counted under.
//!
//! The labels are the ones the sensor has always exported: Grafana dashboards and the tests
//! match them, so a variant's label never changes.

use super::dhcp::DhcpError;
use super::dns::{Anomalies as DnsAnomalies, DnsError};
use super::http::BodyError;
use super::quic::QuicError;

/// One recoverable anomaly the extractor met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Anomaly {
    /// A DNS message that could not be read at all.
    Dns(DnsError),
    /// A DNS message read with something wrong in it.
    DnsFlag(DnsFlag),
    Dhcp(DhcpError),
    Quic(QuicError),
    HttpBody(BodyError),
    /// Reassembly, TLS and the per-flow protocol state.
    Flow(FlowAnomaly),
}

impl Anomaly {
    /// The metric label (stable).
    pub fn reason(self) -> &'static str {
        match self {
            Anomaly::Dns(e) => e.reason(),
            Anomaly::DnsFlag(f) => f.reason(),
            Anomaly::Dhcp(e) => e.reason(),
            Anomaly::Quic(e) => e.reason(),
            Anomaly::HttpBody(e) => e.reason(),
            Anomaly::Flow(f) => f.reason(),
        }
    }

    /// Every anomaly the extractor can report.
    pub fn all() -> impl Iterator<Item = Anomaly> {
        let dns = [
            DnsError::TooShort,
            DnsError::BadQuestion,
            DnsError::Implausible,
        ];
        let dhcp = [
            DhcpError::TooShort,
            DhcpError::BadOp,
            DhcpError::NoMagic,
            DhcpError::RelayTooDeep,
        ];
        let body = [BodyError::TooLarge, BodyError::BadChunk];
        dns.into_iter()
            .map(Anomaly::Dns)
            .chain(DnsFlag::ALL.into_iter().map(Anomaly::DnsFlag))
            .chain(dhcp.into_iter().map(Anomaly::Dhcp))
            .chain(QuicError::ALL.into_iter().map(Anomaly::Quic))
            .chain(body.into_iter().map(Anomaly::HttpBody))
            .chain(FlowAnomaly::ALL.into_iter().map(Anomaly::Flow))
    }
}

impl From<DnsError> for Anomaly {
    fn from(e: DnsError) -> Anomaly {
        Anomaly::Dns(e)
    }
}

impl From<DnsFlag> for Anomaly {
    fn from(f: DnsFlag) -> Anomaly {
        Anomaly::DnsFlag(f)
    }
}

impl From<DhcpError> for Anomaly {
    fn from(e: DhcpError) -> Anomaly {
        Anomaly::Dhcp(e)
    }
}

impl From<QuicError> for Anomaly {
    fn from(e: QuicError) -> Anomaly {
        Anomaly::Quic(e)
    }
}

impl From<BodyError> for Anomaly {
    fn from(e: BodyError) -> Anomaly {
        Anomaly::HttpBody(e)
    }
}

impl From<FlowAnomaly> for Anomaly {
    fn from(f: FlowAnomaly) -> Anomaly {
        Anomaly::Flow(f)
    }
}

/// What a DNS message was read with ([`DnsAnomalies`] as values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DnsFlag {
    NamePointerLoop,
    NameTooLong,
    NameOutOfBounds,
    NameCut,
    AnswersTruncated,
    LabelWithDot,
    QuestionsOverstated,
}

impl DnsFlag {
    pub const ALL: [DnsFlag; 7] = [
        DnsFlag::NamePointerLoop,
        DnsFlag::NameTooLong,
        DnsFlag::NameOutOfBounds,
        DnsFlag::NameCut,
        DnsFlag::AnswersTruncated,
        DnsFlag::LabelWithDot,
        DnsFlag::QuestionsOverstated,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            DnsFlag::NamePointerLoop => "dns_name_pointer_loop",
            DnsFlag::NameTooLong => "dns_name_too_long",
            DnsFlag::NameOutOfBounds => "dns_name_out_of_bounds",
            DnsFlag::NameCut => "dns_name_cut",
            DnsFlag::AnswersTruncated => "dns_answers_truncated",
            DnsFlag::LabelWithDot => "dns_label_with_dot",
            DnsFlag::QuestionsOverstated => "dns_questions_overstated",
        }
    }

    /// Whether a message was read with this flag.
    pub fn is_set(self, a: &DnsAnomalies) -> bool {
        match self {
            DnsFlag::NamePointerLoop => a.name_pointer_loop,
            DnsFlag::NameTooLong => a.name_too_long,
            DnsFlag::NameOutOfBounds => a.name_out_of_bounds,
            DnsFlag::NameCut => a.name_cut,
            DnsFlag::AnswersTruncated => a.answers_truncated,
            DnsFlag::LabelWithDot => a.label_with_dot,
            DnsFlag::QuestionsOverstated => a.questions_overstated,
        }
    }

    /// The flags a message was read with, in a fixed order.
    pub fn present(a: &DnsAnomalies) -> impl Iterator<Item = DnsFlag> + '_ {
        // Nearly every message has none: one test of them all, not seven.
        let flags: &[DnsFlag] = if a.any() { &DnsFlag::ALL } else { &[] };
        flags.iter().copied().filter(|f| f.is_set(a))
    }
}

/// Reassembly, TLS and per-flow protocol events (the flow state's own, and the TLS parser's
/// `Malformed` labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FlowAnomaly {
    /// A SPAN copy of a packet already read (`dedup`).
    Duplicates,
    /// A segment not buffered: the worker's reassembly budget was spent.
    ReassemblyBudget,
    /// A segment not buffered: the flow's reassembly buffer was full.
    ReassemblyCap,
    TransportChecksumBad,
    /// A segment whose TTL (hop limit) is too short to reach the receiver its SYN reached.
    TransportTtlShort,
    /// A segment without ACK after the handshake, which a receiver discards.
    TransportAckMissing,
    /// A client segment acknowledging bytes the server never sent: every TCP discards it
    /// (RFC 9293 §3.10.7.4).
    TransportAckUnsent,
    /// A client segment acknowledging less than the server's SYN-ACK before the server sent
    /// anything else: Linux discards it (RFC 5961 §5.2), other stacks may take it.
    TransportAckOld,
    /// A segment signed with TCP-MD5 or TCP-AO on a connection whose SYN was not.
    TransportSignatureUnexpected,
    /// A segment with urgent data (the URG flag) in an inspected flow: its receiver takes the
    /// urgent byte out of the stream, and so does the reassembly (see `stream`). No TLS or
    /// HTTP client sends one; hiding a byte of a name from a sensor is what it is good for.
    TransportUrgentData,
    /// A segment whose timestamp is older than its receiver's latest from that side: PAWS
    /// drops it (RFC 7323), as it does the decoys of DPI-evasion tools that count on it.
    TransportTimestampOld,
    TransportTupleReused,
    /// A RST or FIN of an inspected flow away from the next sequence number its receiver
    /// expects: Linux answers such a RST with a challenge ACK (RFC 5961) and holds such a FIN
    /// until the bytes before it come, so the connection goes on, and so does the flow.
    TransportCloseIgnored,
    QuicClientHelloIncomplete,
    QuicClientHelloMalformed,
    DnsTcpCut,
    DnsTcpMessageTooLarge,
    DnsUpdateIgnored,
    DnsTransactionTableFull,
    TlsClientHelloCut,
    TlsClientHelloTooLarge,
    TlsClientHelloMalformed,
    TlsRecordMalformed,
    TlsHandshakeInterrupted,
    TlsExtensionTruncated,
    /// A server_name extension no TLS library accepts (two of them, two names, a NUL in a
    /// name, bytes past the list): every name in it is reported, since a server that is
    /// not OpenSSL may take any one of them.
    TlsServerNameMalformed,
    TlsServerFlightTooLarge,
    TlsCertificateUnparsable,
    HttpRequestLineCut,
    HttpRequestHeadTooLarge,
    HttpTooManyHeaders,
    HttpHeadCut,
    HttpMaxRequests,
    /// A request whose body framing is ambiguous (request smuggling's shape): the server
    /// closes the connection after it, and nothing after it is read.
    HttpFramingAmbiguous,
    /// A request with more than one Host header: each host it names is reported.
    HttpHostRepeated,
    /// Bytes after a request that no server reads as one: the next request is looked for.
    HttpRequestUnreadable,
    /// A request with a header folded onto a continuation line (obs-fold): a Host on it is
    /// read as a server that unfolds reads it.
    HttpHeaderFolded,
    DhcpOptionsTruncated,
    Dhcpv6OptionsTruncated,
    Dhcpv6AddressesTruncated,
}

impl FlowAnomaly {
    pub const ALL: [FlowAnomaly; 40] = [
        FlowAnomaly::Duplicates,
        FlowAnomaly::ReassemblyBudget,
        FlowAnomaly::ReassemblyCap,
        FlowAnomaly::TransportChecksumBad,
        FlowAnomaly::TransportTtlShort,
        FlowAnomaly::TransportAckMissing,
        FlowAnomaly::TransportAckUnsent,
        FlowAnomaly::TransportAckOld,
        FlowAnomaly::TransportSignatureUnexpected,
        FlowAnomaly::TransportUrgentData,
        FlowAnomaly::TransportTimestampOld,
        FlowAnomaly::TransportTupleReused,
        FlowAnomaly::TransportCloseIgnored,
        FlowAnomaly::QuicClientHelloIncomplete,
        FlowAnomaly::QuicClientHelloMalformed,
        FlowAnomaly::DnsTcpCut,
        FlowAnomaly::DnsTcpMessageTooLarge,
        FlowAnomaly::DnsUpdateIgnored,
        FlowAnomaly::DnsTransactionTableFull,
        FlowAnomaly::TlsClientHelloCut,
        FlowAnomaly::TlsClientHelloTooLarge,
        FlowAnomaly::TlsClientHelloMalformed,
        FlowAnomaly::TlsRecordMalformed,
        FlowAnomaly::TlsHandshakeInterrupted,
        FlowAnomaly::TlsExtensionTruncated,
        FlowAnomaly::TlsServerNameMalformed,
        FlowAnomaly::TlsServerFlightTooLarge,
        FlowAnomaly::TlsCertificateUnparsable,
        FlowAnomaly::HttpRequestLineCut,
        FlowAnomaly::HttpRequestHeadTooLarge,
        FlowAnomaly::HttpTooManyHeaders,
        FlowAnomaly::HttpHeadCut,
        FlowAnomaly::HttpMaxRequests,
        FlowAnomaly::HttpFramingAmbiguous,
        FlowAnomaly::HttpHostRepeated,
        FlowAnomaly::HttpRequestUnreadable,
        FlowAnomaly::HttpHeaderFolded,
        FlowAnomaly::DhcpOptionsTruncated,
        FlowAnomaly::Dhcpv6OptionsTruncated,
        FlowAnomaly::Dhcpv6AddressesTruncated,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            FlowAnomaly::Duplicates => "duplicates",
            FlowAnomaly::ReassemblyBudget => "reassembly_budget",
            FlowAnomaly::ReassemblyCap => "reassembly_cap",
            FlowAnomaly::TransportChecksumBad => "transport_checksum_bad",
            FlowAnomaly::TransportTtlShort => "transport_ttl_short",
            FlowAnomaly::TransportAckMissing => "transport_ack_missing",
            FlowAnomaly::TransportAckUnsent => "transport_ack_unsent",
            FlowAnomaly::TransportAckOld => "transport_ack_old",
            FlowAnomaly::TransportSignatureUnexpected => "transport_signature_unexpected",
            FlowAnomaly::TransportUrgentData => "transport_urgent_data",
            FlowAnomaly::TransportTimestampOld => "transport_timestamp_old",
            FlowAnomaly::TransportTupleReused => "transport_tuple_reused",
            FlowAnomaly::TransportCloseIgnored => "transport_close_ignored",
            FlowAnomaly::QuicClientHelloIncomplete => "quic_client_hello_incomplete",
            FlowAnomaly::QuicClientHelloMalformed => "quic_client_hello_malformed",
            FlowAnomaly::DnsTcpCut => "dns_tcp_cut",
            FlowAnomaly::DnsTcpMessageTooLarge => "dns_tcp_message_too_large",
            FlowAnomaly::DnsUpdateIgnored => "dns_update_ignored",
            FlowAnomaly::DnsTransactionTableFull => "dns_transaction_table_full",
            FlowAnomaly::TlsClientHelloCut => "tls_client_hello_cut",
            FlowAnomaly::TlsClientHelloTooLarge => "tls_client_hello_too_large",
            FlowAnomaly::TlsClientHelloMalformed => "tls_client_hello_malformed",
            FlowAnomaly::TlsRecordMalformed => "tls_record_malformed",
            FlowAnomaly::TlsHandshakeInterrupted => "tls_handshake_interrupted",
            FlowAnomaly::TlsExtensionTruncated => "tls_extension_truncated",
            FlowAnomaly::TlsServerNameMalformed => "tls_server_name_malformed",
            FlowAnomaly::TlsServerFlightTooLarge => "tls_server_flight_too_large",
            FlowAnomaly::TlsCertificateUnparsable => "tls_certificate_unparsable",
            FlowAnomaly::HttpRequestLineCut => "http_request_line_cut",
            FlowAnomaly::HttpRequestHeadTooLarge => "http_request_head_too_large",
            FlowAnomaly::HttpTooManyHeaders => "http_too_many_headers",
            FlowAnomaly::HttpHeadCut => "http_head_cut",
            FlowAnomaly::HttpMaxRequests => "http_max_requests",
            FlowAnomaly::HttpFramingAmbiguous => "http_framing_ambiguous",
            FlowAnomaly::HttpHostRepeated => "http_host_repeated",
            FlowAnomaly::HttpRequestUnreadable => "http_request_unreadable",
            FlowAnomaly::HttpHeaderFolded => "http_header_folded",
            FlowAnomaly::DhcpOptionsTruncated => "dhcp_options_truncated",
            FlowAnomaly::Dhcpv6OptionsTruncated => "dhcpv6_options_truncated",
            FlowAnomaly::Dhcpv6AddressesTruncated => "dhcpv6_addresses_truncated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `present` asks `DnsAnomalies::any` first: each flag alone must make it true.
    #[test]
    fn each_dns_flag_alone_is_present_and_alone() {
        for flag in DnsFlag::ALL {
            let mut a = DnsAnomalies::default();
            let set = [
                &mut a.name_pointer_loop,
                &mut a.name_too_long,
                &mut a.name_out_of_bounds,
                &mut a.name_cut,
                &mut a.answers_truncated,
                &mut a.label_with_dot,
                &mut a.questions_overstated,
            ];
            let at = DnsFlag::ALL
                .iter()
                .position(|f| *f == flag)
                .expect("listed");
            *set.into_iter().nth(at).expect("one field a flag") = true;
            assert_eq!(DnsFlag::present(&a).collect::<Vec<_>>(), vec![flag]);
        }
        assert_eq!(DnsFlag::present(&DnsAnomalies::default()).count(), 0);
    }

    #[test]
    fn every_label_names_exactly_one_anomaly() {
        let labels: Vec<&str> = Anomaly::all().map(Anomaly::reason).collect();
        let unique: std::collections::BTreeSet<&str> = labels.iter().copied().collect();
        assert_eq!(labels.len(), unique.len(), "a label is shared: {labels:?}");
    }

    #[test]
    fn dns_flags_are_the_flags_the_message_reports() {
        let a = DnsAnomalies {
            name_cut: true,
            label_with_dot: true,
            ..DnsAnomalies::default()
        };
        let typed: Vec<&str> = DnsFlag::present(&a).map(DnsFlag::reason).collect();
        assert_eq!(typed, a.reasons().collect::<Vec<_>>());
        assert_eq!(typed, ["dns_name_cut", "dns_label_with_dot"]);
    }
}
