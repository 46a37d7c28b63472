//! Why something was counted, as types: every anomaly a stage reports ([`Anomaly`]) and every
//! reason anything is shed ([`DropReason`]), each with the label values it is exported under.
//!
//! A stage reports its own typed error (`DecodeError`, `defrag::Event`, the extractor's
//! `Anomaly`); [`Anomaly::stage`] says which family counts it, so the exporter never reads a
//! label to find out where it belongs. The label values are the ones the sensor has always
//! exported (dashboards and tests match them): a variant's labels never change.

use crate::decode::defrag::Event as DefragEvent;
use crate::decode::DecodeError;
use crate::extract::anomaly::{Anomaly as ExtractAnomaly, FlowAnomaly};

/// The `layer` label of `vendorwatch_decode_anomalies_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    Link,
    Ip,
    Transport,
    Tunnel,
    Dns,
    Tls,
    Quic,
    Http,
    /// DHCP, and what fits no layer above.
    Other,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Link => "link",
            Layer::Ip => "ip",
            Layer::Transport => "transport",
            Layer::Tunnel => "tunnel",
            Layer::Dns => "dns",
            Layer::Tls => "tls",
            Layer::Quic => "quic",
            Layer::Http => "http",
            Layer::Other => "other",
        }
    }
}

/// Why packets or items were shed: the `stage` and `reason` labels of
/// `vendorwatch_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// A worker's queue was full (live only; replay waits).
    QueueFull,
    /// A flow evicted from a full flow table.
    FlowEvicted,
    /// A packet on a pcapng interface whose link type we cannot read.
    UnsupportedLinkType,
    /// A finding for a new host while the host table was full (`--max-hosts`).
    HostTableFull,
    /// An identity of a not-yet-detected address evicted from its full map.
    IdentityEvicted,
    /// An older vendor answer passive DNS let go for a newer one (`--pdns-max`).
    PassiveDnsEvicted,
    /// A host pair the Security Center port tracker could not follow.
    PortPairsTableFull,
    /// A host that earned the resolver role beyond the resolver cap.
    ResolversTableFull,
    /// A client query the resolver evidence could not remember.
    ResolverQueriesTableFull,
    /// A judgement that reads the resolver roles made before every packet ahead of it was
    /// read (`pipeline::order`): too many were waiting, or live, one waited too long.
    ResolverJudgedEarly,
    /// Dropped by the kernel (per capture source).
    KernelDropped,
    /// Dropped by the interface (per capture source).
    InterfaceDropped,
    /// A SPAN copy of a packet already read.
    Duplicate,
    /// A segment the flow's reassembly buffer had no room for.
    ReassemblyBufferCap,
    /// A segment the worker's reassembly budget had no room for.
    ReassemblyWorkerBudget,
    /// A fragment (or datagram in progress) the defragmenter shed.
    Defrag(DefragEvent),
}

impl DropReason {
    /// The `stage` label.
    pub fn stage(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue",
            DropReason::FlowEvicted => "flow_table",
            DropReason::UnsupportedLinkType => "link",
            DropReason::HostTableFull => "hosts",
            DropReason::IdentityEvicted => "identities",
            DropReason::PassiveDnsEvicted => "passive_dns",
            DropReason::PortPairsTableFull => "port_pairs",
            DropReason::ResolversTableFull => "resolvers",
            DropReason::ResolverQueriesTableFull => "resolver_queries",
            DropReason::ResolverJudgedEarly => "resolver_order",
            DropReason::KernelDropped => "kernel",
            DropReason::InterfaceDropped => "interface",
            DropReason::Duplicate => "dedup",
            DropReason::ReassemblyBufferCap | DropReason::ReassemblyWorkerBudget => "reassembly",
            DropReason::Defrag(_) => "defrag",
        }
    }

    /// The `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::FlowEvicted
            | DropReason::IdentityEvicted
            | DropReason::PassiveDnsEvicted => "evicted",
            DropReason::UnsupportedLinkType => "unsupported_link_type",
            DropReason::HostTableFull
            | DropReason::PortPairsTableFull
            | DropReason::ResolversTableFull
            | DropReason::ResolverQueriesTableFull => "table_full",
            DropReason::KernelDropped | DropReason::InterfaceDropped => "dropped",
            DropReason::Duplicate => "duplicates",
            DropReason::ResolverJudgedEarly => "judged_early",
            DropReason::ReassemblyBufferCap => "buffer_cap",
            DropReason::ReassemblyWorkerBudget => "worker_budget",
            DropReason::Defrag(e) => e.reason(),
        }
    }
}

/// Which family counts an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `vendorwatch_decode_anomalies_total{layer, reason}`: malformed or unreadable input.
    Decode(Layer),
    /// `vendorwatch_dropped_total{stage, reason}`: something shed.
    Dropped(DropReason),
    /// `vendorwatch_ip_datagrams_reassembled_total`: not a fault, a datagram rebuilt.
    Reassembled,
}

/// Anything a stage counts as it goes: decode errors, defragmenter events, what the
/// extractor found, and the dispatcher's own checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Anomaly {
    Decode(DecodeError),
    Defrag(DefragEvent),
    Extract(ExtractAnomaly),
    /// The IP length says more bytes were cut than the capture left out: it lies.
    IpLengthExceedsFrame,
    /// A decoded payload that does not lie within its frame (a decoder bug, counted).
    PayloadOutsideFrame,
}

impl Anomaly {
    /// The label the replay summary lists it under (and the decode anomaly `reason`).
    pub fn reason(self) -> &'static str {
        match self {
            Anomaly::Decode(e) => e.reason(),
            Anomaly::Defrag(e) => e.label(),
            Anomaly::Extract(a) => a.reason(),
            Anomaly::IpLengthExceedsFrame => "ip_length_exceeds_frame",
            Anomaly::PayloadOutsideFrame => "payload_outside_frame",
        }
    }

    /// Which family counts it, with what labels.
    pub fn stage(self) -> Stage {
        match self {
            Anomaly::Decode(e) => Stage::Decode(decode_layer(e)),
            Anomaly::Defrag(DefragEvent::Reassembled) => Stage::Reassembled,
            Anomaly::Defrag(e) => Stage::Dropped(DropReason::Defrag(e)),
            Anomaly::Extract(a) => extract_stage(a),
            Anomaly::IpLengthExceedsFrame => Stage::Decode(Layer::Ip),
            Anomaly::PayloadOutsideFrame => Stage::Decode(Layer::Other),
        }
    }
}

fn decode_layer(e: DecodeError) -> Layer {
    match e {
        DecodeError::LinkTruncated | DecodeError::TooManyVlanTags => Layer::Link,
        DecodeError::IpMalformed | DecodeError::IpFragment => Layer::Ip,
        DecodeError::TransportMalformed => Layer::Transport,
        DecodeError::Tunnel(_) | DecodeError::TunnelTooDeep => Layer::Tunnel,
        // Not an anomaly (never counted); listed for completeness.
        DecodeError::NotIp => Layer::Other,
    }
}

fn extract_stage(a: ExtractAnomaly) -> Stage {
    use FlowAnomaly as F;
    let layer = match a {
        ExtractAnomaly::Dns(_) | ExtractAnomaly::DnsFlag(_) => Layer::Dns,
        ExtractAnomaly::Dhcp(_) => Layer::Other,
        ExtractAnomaly::Quic(_) => Layer::Quic,
        ExtractAnomaly::HttpBody(_) => Layer::Http,
        ExtractAnomaly::Flow(f) => match f {
            F::Duplicates => return Stage::Dropped(DropReason::Duplicate),
            F::ReassemblyCap => return Stage::Dropped(DropReason::ReassemblyBufferCap),
            F::ReassemblyBudget => return Stage::Dropped(DropReason::ReassemblyWorkerBudget),
            F::TransportChecksumBad
            | F::TransportTtlShort
            | F::TransportAckMissing
            | F::TransportAckUnsent
            | F::TransportAckOld
            | F::TransportSignatureUnexpected
            | F::TransportUrgentData
            | F::TransportTimestampOld
            | F::TransportTupleReused
            | F::TransportCloseIgnored => Layer::Transport,
            F::QuicClientHelloIncomplete | F::QuicClientHelloMalformed => Layer::Quic,
            F::DnsTcpCut
            | F::DnsTcpMessageTooLarge
            | F::DnsUpdateIgnored
            | F::DnsTransactionTableFull => Layer::Dns,
            F::TlsClientHelloCut
            | F::TlsClientHelloTooLarge
            | F::TlsClientHelloMalformed
            | F::TlsRecordMalformed
            | F::TlsHandshakeInterrupted
            | F::TlsExtensionTruncated
            | F::TlsServerNameMalformed
            | F::TlsServerFlightTooLarge
            | F::TlsCertificateUnparsable => Layer::Tls,
            F::HttpRequestLineCut
            | F::HttpRequestHeadTooLarge
            | F::HttpTooManyHeaders
            | F::HttpHeadCut
            | F::HttpMaxRequests
            | F::HttpFramingAmbiguous
            | F::HttpHostRepeated
            | F::HttpRequestUnreadable
            | F::HttpHeaderFolded => Layer::Http,
            F::DhcpOptionsTruncated | F::Dhcpv6OptionsTruncated | F::Dhcpv6AddressesTruncated => {
                Layer::Other
            }
        },
    };
    Stage::Decode(layer)
}

impl From<DecodeError> for Anomaly {
    fn from(e: DecodeError) -> Anomaly {
        Anomaly::Decode(e)
    }
}

impl From<DefragEvent> for Anomaly {
    fn from(e: DefragEvent) -> Anomaly {
        Anomaly::Defrag(e)
    }
}

impl From<ExtractAnomaly> for Anomaly {
    fn from(a: ExtractAnomaly) -> Anomaly {
        Anomaly::Extract(a)
    }
}

impl From<FlowAnomaly> for Anomaly {
    fn from(a: FlowAnomaly) -> Anomaly {
        Anomaly::Extract(a.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exporter before the reasons were typed: a label's layer by its prefix, and the
    /// drops picked out by name. The typed stages must give exactly these labels.
    fn stage_by_label(reason: &str) -> (&'static str, String, String) {
        match reason {
            "duplicates" => return ("drop", "dedup".into(), "duplicates".into()),
            "reassembly_cap" => return ("drop", "reassembly".into(), "buffer_cap".into()),
            "reassembly_budget" => return ("drop", "reassembly".into(), "worker_budget".into()),
            "defrag_reassembled" => return ("reassembled", String::new(), String::new()),
            _ => {}
        }
        if let Some(r) = reason.strip_prefix("defrag_") {
            return ("drop", "defrag".into(), r.into());
        }
        let layer = match reason.split('_').next().unwrap_or_default() {
            "link" | "vlan" => "link",
            "ip" => "ip",
            "transport" => "transport",
            "gre" | "erspan" | "vxlan" | "geneve" | "teredo" | "ayiya" | "gtp" | "mpls"
            | "pppoe" | "ppp" | "tunnel" => "tunnel",
            "dns" => "dns",
            "tls" => "tls",
            "quic" => "quic",
            "http" => "http",
            _ => "other",
        };
        ("decode", layer.into(), reason.into())
    }

    fn every_anomaly() -> Vec<Anomaly> {
        let decode = [
            DecodeError::LinkTruncated,
            DecodeError::TooManyVlanTags,
            DecodeError::IpMalformed,
            DecodeError::IpFragment,
            DecodeError::TransportMalformed,
            DecodeError::Tunnel("gre_truncated"),
            DecodeError::Tunnel("mpls_stack_too_deep"),
            DecodeError::Tunnel("pppoe_truncated"),
            DecodeError::TunnelTooDeep,
        ];
        let mut all: Vec<Anomaly> = decode.into_iter().map(Anomaly::from).collect();
        all.extend(DefragEvent::ALL.into_iter().map(Anomaly::from));
        all.extend(ExtractAnomaly::all().map(Anomaly::from));
        all.push(Anomaly::IpLengthExceedsFrame);
        all.push(Anomaly::PayloadOutsideFrame);
        all
    }

    #[test]
    fn typed_stages_give_the_labels_the_prefixes_gave() {
        for a in every_anomaly() {
            let got = match a.stage() {
                Stage::Decode(l) => ("decode", l.as_str().to_string(), a.reason().to_string()),
                Stage::Dropped(d) => ("drop", d.stage().to_string(), d.reason().to_string()),
                Stage::Reassembled => ("reassembled", String::new(), String::new()),
            };
            assert_eq!(got, stage_by_label(a.reason()), "{a:?}");
        }
    }

    #[test]
    fn no_two_anomalies_share_a_label() {
        let all = every_anomaly();
        let labels: std::collections::BTreeSet<&str> = all.iter().map(|a| a.reason()).collect();
        assert_eq!(labels.len(), all.len());
    }
}
