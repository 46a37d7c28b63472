//! DNS on the flow table: one message read from a UDP datagram or a TCP stream, the framing
//! of DNS over TCP (two-byte length prefixes, messages cut by the snap length), and the
//! worker's transaction table (queries waiting for their response, capped), which tells a
//! response whether its query was seen.

use super::{Conn, Endpoint, Step};
use crate::decode::Proto;
use crate::extract::anomaly::{DnsFlag, FlowAnomaly};
use crate::extract::{
    dns, Detail, DnsDetail, Extracted, FlowId, Identity, IdentitySource, NameEvent, NameKind,
};
use crate::mac::MacAddr;
use crate::time::Timestamp;
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// A transaction: the client's address and port, the server's address, the message ID. As
/// words, like the flow table's key (`FlowKey`), for one query's insert and one answer's
/// removal each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct TxnKey {
    client: u128,
    server: u128,
    /// The client's port and family, the server's family, the message ID.
    rest: u64,
}

impl TxnKey {
    fn new(client: Endpoint, server: IpAddr, id: u16) -> TxnKey {
        let (client, client_rest) = super::endpoint_word(client);
        // `endpoint_word`'s low word: the port, and the family at bit 16.
        let (server, server_family) = super::endpoint_word((server, 0));
        TxnKey {
            client,
            server,
            rest: u64::from(client_rest) << 32 | u64::from(server_family) | u64::from(id),
        }
    }
}

/// One worker's open DNS transactions: queries seen and not yet answered. At most `max`
/// (`ExtractorLimits::max_dns_transactions`); a full table is emptied (counted:
/// `dns_transaction_table_full`), so a flood of unanswered queries costs only `query_seen`.
pub(super) struct Transactions {
    open: HashMap<TxnKey, Timestamp, ahash::RandomState>,
    max: usize,
}

/// Where and when a DNS message was seen.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    pub(super) src: SocketAddr,
    pub(super) dst: SocketAddr,
    pub(super) proto: Proto,
    pub(super) src_mac: Option<MacAddr>,
    pub(super) ts: Timestamp,
}

impl Transactions {
    pub(super) fn new(max: usize) -> Transactions {
        Transactions {
            open: HashMap::default(),
            max,
        }
    }

    /// Forgets queries older than `horizon` seconds: their answers are not coming.
    pub(super) fn expire(&mut self, now: Timestamp, horizon: u64) {
        self.open
            .retain(|_, seen| now < seen.saturating_add_secs(horizon));
    }

    pub(super) fn clear(&mut self) {
        self.open.clear();
    }

    /// Reads one DNS message; `cut`: the capture kept only these bytes of it (snap length).
    /// Returns whether it named anything.
    pub(super) fn read(
        &mut self,
        bytes: &[u8],
        cut: bool,
        seen: &Seen,
        out: &mut impl FnMut(Extracted),
    ) -> bool {
        self.read_parsed(&dns::parse_message(bytes, cut), seen, out)
    }

    /// [`read`](Self::read) of a message already parsed (by the capture thread).
    pub(super) fn read_parsed(
        &mut self,
        parsed: &Result<dns::Message, dns::DnsError>,
        seen: &Seen,
        out: &mut impl FnMut(Extracted),
    ) -> bool {
        let parsed = match parsed {
            Ok(m) => m,
            Err(e) => {
                out(Extracted::Anomaly((*e).into()));
                return false;
            }
        };
        for reason in DnsFlag::present(&parsed.anomalies) {
            out(Extracted::Anomaly(reason.into()));
        }
        // UPDATE is zone maintenance, not a lookup: its "question" is the zone being changed.
        if parsed.opcode == dns::OPCODE_UPDATE {
            out(Extracted::Anomaly(FlowAnomaly::DnsUpdateIgnored.into()));
            return false;
        }
        // The client is the one who asked: the sender of a query, the receiver of a response.
        let (client, server, client_mac) = if parsed.is_response {
            (seen.dst, seen.src, None)
        } else {
            (seen.src, seen.dst, seen.src_mac)
        };
        let query_seen = self.track(parsed, client, server, seen.ts, out);
        if parsed.is_response && parsed.rcode == 0 {
            ptr_identities(parsed, seen.ts, out);
        }
        let flow = FlowId {
            proto: seen.proto,
            client,
            server,
        };
        emit_names(parsed, flow, client_mac, query_seen, seen.ts, out)
    }

    /// Opens the transaction of a query; closes that of a response, and returns whether
    /// its query was seen.
    fn track(
        &mut self,
        parsed: &dns::Message,
        client: SocketAddr,
        server: SocketAddr,
        ts: Timestamp,
        out: &mut impl FnMut(Extracted),
    ) -> bool {
        let txn = TxnKey::new((client.ip(), client.port()), server.ip(), parsed.id);
        if parsed.is_response {
            return self.open.remove(&txn).is_some();
        }
        if self.open.len() >= self.max {
            out(Extracted::Anomaly(
                FlowAnomaly::DnsTransactionTableFull.into(),
            ));
            self.open.clear();
        }
        self.open.insert(txn, ts);
        false
    }
}

/// A PTR answer names the machine behind an address (the pipeline keeps home-net ones).
fn ptr_identities(parsed: &dns::Message, ts: Timestamp, out: &mut impl FnMut(Extracted)) {
    for a in &parsed.answers {
        let dns::RData::Ptr(target) = &a.data else {
            continue;
        };
        if let Some(ip) = dns::reverse_name_address(&a.name) {
            if !target.is_empty() {
                out(Extracted::Identity(Identity {
                    ts,
                    ip,
                    mac: None,
                    hostname: Some(target.to_string()),
                    client_id: None,
                    source: IdentitySource::Ptr,
                }));
            }
        }
    }
}

/// One name event per question (or, for an mDNS announcement, its first answer's owner).
/// Returns whether any was named.
fn emit_names(
    parsed: &dns::Message,
    flow: FlowId,
    client_mac: Option<MacAddr>,
    query_seen: bool,
    ts: Timestamp,
    out: &mut impl FnMut(Extracted),
) -> bool {
    let mut named = false;
    // mDNS announcements carry answers and no question: their owner names are what is named.
    let mut names: smallvec::SmallVec<[(&str, u16); 1]> = parsed
        .questions
        .iter()
        .map(|q| (q.name.as_str(), q.qtype))
        .collect();
    if names.is_empty() && parsed.is_response {
        if let Some(a) = parsed.answers.first() {
            names.push((a.name.as_str(), a.rtype));
        }
    }
    for (i, (name, qtype)) in names.iter().enumerate() {
        if name.is_empty() {
            continue;
        }
        named = true;
        out(Extracted::Name(NameEvent {
            ts,
            kind: NameKind::Dns,
            value: Cow::Borrowed(name),
            flow,
            client_mac,
            detail: Detail::Dns(DnsDetail {
                is_response: parsed.is_response,
                qtype: *qtype,
                rcode: parsed.rcode,
                // Answers belong to the first question (the only one in practice).
                answers: Cow::Borrowed(if i == 0 { &parsed.answers } else { &[] }),
                query_seen,
            }),
        }));
    }
    named
}

/// Reads the whole DNS messages a direction of a DNS-over-TCP flow holds (RFC 7766 framing:
/// a two-byte length before each message).
pub(super) fn inspect_tcp(
    conn: &mut Conn,
    from_client: bool,
    ts: Timestamp,
    txns: &mut Transactions,
    cut: u32,
    out: &mut impl FnMut(Extracted),
) -> Step {
    let (src, dst) = if from_client {
        (conn.id.client, conn.id.server)
    } else {
        (conn.id.server, conn.id.client)
    };
    let seen = Seen {
        src,
        dst,
        proto: Proto::Tcp,
        src_mac: conn.client_mac,
        ts,
    };
    loop {
        let dir = conn.sent_by(from_client);
        let data = dir.data();
        let Some(len) = data
            .get(..2)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
        else {
            if cut > 0 {
                // A message starts among the bytes that were not captured: where the next
                // one starts is unknown.
                out(Extracted::Anomaly(FlowAnomaly::DnsTcpCut.into()));
                return Step::Finish;
            }
            return Step::Wait;
        };
        let Some(whole) = data.get(2..2 + len) else {
            if cut > 0 {
                // Cut by the snap length: its whole questions are still read, and the stream
                // stays in step only if the message ends with the cut.
                let in_step = 2 + len == data.len() + cut as usize;
                let named = txns.read(&data[2..], true, &seen, out);
                let n = data.len();
                conn.named |= named;
                if !in_step {
                    out(Extracted::Anomaly(FlowAnomaly::DnsTcpCut.into()));
                    return Step::Finish;
                }
                conn.sent_by(from_client).consume(n);
            } else if dir.is_full() {
                out(Extracted::Anomaly(
                    FlowAnomaly::DnsTcpMessageTooLarge.into(),
                ));
                return Step::Finish;
            }
            return Step::Wait;
        };
        let named = txns.read(whole, false, &seen, out);
        conn.named |= named;
        conn.sent_by(from_client).consume(2 + len);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Extractor, ExtractorLimits};
    use super::*;

    #[test]
    fn a_transaction_key_tells_every_part_apart() {
        let v4: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        // The IPv6 address with the IPv4 one's bits: only the family tells them apart.
        let low = IpAddr::V6(std::net::Ipv6Addr::from_bits(0x0a00_0001));
        let mut keys = std::collections::HashMap::new();
        let mut parts = Vec::new();
        for client in [v4, other, low] {
            for port in [0, 1, 53, 65535] {
                for server in [v4, other, low] {
                    for id in [0, 1, 0x8000, 65535] {
                        parts.push(((client, port), server, id));
                    }
                }
            }
        }
        for &(client, server, id) in &parts {
            let key = TxnKey::new(client, server, id);
            assert_eq!(key, TxnKey::new(client, server, id));
            let first = *keys.entry(key).or_insert((client, server, id));
            assert_eq!(first, (client, server, id), "two transactions, one key");
        }
        assert_eq!(keys.len(), parts.len());
    }

    #[test]
    fn ptr_answers_become_identities() {
        let mut answer = vec![0x70, 0xf2, 0x85, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        answer
            .extend_from_slice(b"\x03101\x013\x0210\x0210\x07in-addr\x04arpa\x00\x00\x0c\x00\x01");
        answer.extend_from_slice(&[0xc0, 12, 0, 12, 0, 1, 0, 0, 0, 0, 0, 14]);
        answer.extend_from_slice(b"\x08ws-alice\x03lab\x00");
        // A second PTR whose owner is not a host's reverse name (a /24 zone): no identity.
        answer.extend_from_slice(&[0xc0, 16, 0, 12, 0, 1, 0, 0, 0, 0, 0, 2, 0xc0, 12]);
        let frames = [(1, udp([10, 10, 3, 1], [10, 10, 3, 102], 53, 40000, &answer))];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        let ids = identities(&got);
        assert_eq!(ids.len(), 1, "{got:?}");
        assert_eq!(ids[0].ip.to_string(), "10.10.3.101");
        assert_eq!(ids[0].hostname.as_deref(), Some("ws-alice.lab"));
        assert_eq!((ids[0].mac, ids[0].source), (None, IdentitySource::Ptr));
        // The question is still a name event, as before.
        assert_eq!(
            names(&got),
            [(NameKind::Dns, "101.3.10.10.in-addr.arpa".to_string())]
        );
    }

    #[test]
    fn a_dns_query_cut_by_the_snap_length_names_nothing_it_does_not_hold() {
        let mut q = vec![0xbe, 0xef, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1];
        q.push(60);
        q.extend_from_slice(&[b'x'; 60]);
        q.extend_from_slice(b"\x09kaspersky\x03com\x07example\x03net\x00\x00\x01\x00\x01");
        let frame = udp([10, 0, 0, 1], [10, 0, 0, 53], 40000, 53, &q);
        // IP 20 + UDP 8 + DNS header 12 + 1 + 60 + `\x09kaspersky\x03com` 14.
        let got = collect(
            &mut Extractor::new(ExtractorLimits::default()),
            &[(1, snap(frame.clone(), 20 + 8 + 12 + 1 + 60 + 14))],
        );
        assert_eq!(names(&got), []);
        assert_eq!(anomaly_count(&got, "dns_name_cut"), 1);
        let got = collect(
            &mut Extractor::new(ExtractorLimits::default()),
            &[(1, frame)],
        );
        assert_eq!(names(&got).len(), 1);
    }
}
