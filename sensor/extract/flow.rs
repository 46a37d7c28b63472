//! Per-flow state and the dispatch of bytes to the parsers.
//!
//! A flow is inspected until its names are known or its byte budget is spent; then its
//! buffers are freed and later packets only refresh its timestamp (bypass). The table is
//! bounded: idle flows expire, and when it is full the longest-idle ones are evicted and
//! counted.
//!
//! A TCP flow keeps its state until it ends; a new connection on the same 4-tuple (a SYN
//! with another ISN after a FIN or RST, after a half-open or stale flow) closes it and
//! starts a fresh one, and so does a new QUIC Initial with another DCID on the same UDP
//! 4-tuple (counted: `transport_tuple_reused`). A TCP segment whose IP or TCP checksum is
//! wrong, in a direction that has shown right checksums, is what the receiver dropped: it is
//! not read (counted: `transport_checksum_bad`), so a crafted segment cannot take the place
//! of the real one in reassembly. A direction whose checksums were never right is a capture
//! made on a host with checksum offload (its own packets leave with the checksum left to
//! the NIC): its segments are read as they are. Mid-stream flows wait for a short window
//! before reading (see `stream`).

use super::dedup::Deduplicator;
use super::stream::{Pushed, StreamBuf, MIDSTREAM_WINDOW_SEGMENTS};
use super::{
    cert, dhcp, dns, http, names, quic, tls, Detail, DnsDetail, Extracted, FlowId, Identity,
    IdentitySource, NameEvent, NameKind,
};
use crate::decode::checksum::{self, Validity};
use crate::decode::{Packet, Proto, TcpSegment, Transport, UdpDatagram};
use crate::time::Timestamp;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Ports on which UDP and TCP payloads are read as DNS: DNS, mDNS, LLMNR.
const DNS_PORTS: [u16; 3] = [53, 5353, 5355];
/// DHCPv4 server and client ports.
const DHCP_SERVER_PORT: u16 = 67;
const DHCP_CLIENT_PORT: u16 = 68;
/// DHCPv6 client and server (and relay) ports.
const DHCPV6_CLIENT_PORT: u16 = 546;
const DHCPV6_SERVER_PORT: u16 = 547;
/// Client bytes looked at before deciding a stream carries nothing we read.
const PROBE_BUDGET: usize = 4096;
/// Segment starts tried as possible message starts (STARTTLS, RDP-then-TLS, …).
const PROBE_SEGMENTS: usize = 12;
/// HTTP requests read per connection by default (a proxy or keep-alive connection carries
/// many hosts); `--http-max-requests` changes it.
pub const HTTP_MAX_REQUESTS: u32 = 1000;
/// A flow idle this long is stale: a SYN with a new ISN on its 4-tuple starts a new
/// connection even if the old one never closed (a half-open flow, a capture that missed the
/// FIN). A live connection is never idle this long between segments of one exchange, and an
/// established one is not taken over by a stray SYN before then.
const REUSE_STALE_SECS: u64 = 30;
/// A mid-stream window quiet this long (packet time) is settled at the next sweep (every
/// 5 s), so a one-direction tap that never sees the answer still reads the request soon.
const MIDSTREAM_WINDOW_SECS: u64 = 1;

#[derive(Debug, Clone, Copy)]
pub struct ExtractorLimits {
    pub max_flows: usize,
    /// Bytes buffered per direction while a flow is inspected.
    pub stream_cap: usize,
    /// Client bytes inspected per flow before it is bypassed.
    pub inspect_budget: u64,
    pub tcp_idle_secs: u64,
    pub udp_idle_secs: u64,
    pub max_dns_transactions: usize,
    /// Bytes all of a worker's TCP reassembly buffers may hold together; beyond it the
    /// flows that started buffering first give theirs up (and are no longer inspected).
    pub reassembly_budget: usize,
    /// HTTP requests read per connection (keep-alive, proxies); past it the connection is
    /// no longer inspected (counted).
    pub http_max_requests: u32,
    /// Verify IP and TCP checksums (see the module doc); off for captures whose checksums
    /// are known to be meaningless.
    pub verify_checksums: bool,
}

impl Default for ExtractorLimits {
    fn default() -> Self {
        ExtractorLimits {
            max_flows: 262_144,
            stream_cap: 16 * 1024,
            inspect_budget: 256 * 1024,
            tcp_idle_secs: 600,
            udp_idle_secs: 120,
            max_dns_transactions: 65_536,
            reassembly_budget: 64 << 20,
            http_max_requests: HTTP_MAX_REQUESTS,
            verify_checksums: true,
        }
    }
}

type Endpoint = (IpAddr, u16);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    proto: Proto,
    lo: Endpoint,
    hi: Endpoint,
}

impl FlowKey {
    fn new(proto: Proto, a: Endpoint, b: Endpoint) -> FlowKey {
        if a <= b {
            FlowKey {
                proto,
                lo: a,
                hi: b,
            }
        } else {
            FlowKey {
                proto,
                lo: b,
                hi: a,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum App {
    /// Not yet known what the client speaks.
    Probe,
    Tls,
    /// ClientHello read; waiting for the server's certificate (TLS 1.2 and earlier).
    TlsServer,
    Http {
        requests: u32,
        next: HttpNext,
    },
    /// DNS over TCP, both directions.
    Dns,
    /// QUIC: reading the client's Initial packets.
    Quic,
    /// Nothing more to read: bypassed.
    Done,
}

/// What the next client bytes of an HTTP connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HttpNext {
    /// A request head.
    Head,
    /// The body of the last request, passed over to reach the next head.
    Body(http::BodySkip),
    /// Unknown: a head or body was cut short by the capture. The next request is looked
    /// for where a segment starts with a method.
    Resync,
}

#[derive(Debug)]
struct Flow {
    id: FlowId,
    last_seen: Timestamp,
    client_mac: Option<crate::mac::MacAddr>,
    app: App,
    to_server: StreamBuf,
    to_client: StreamBuf,
    client_bytes: u64,
    named: bool,
    unnamed_reported: bool,
    closing: bool,
    drops_reported: bool,
    /// Queued in `Extractor::buffering` (holds reassembly bytes the budget counts).
    buffering: bool,
    /// Only for QUIC flows, while their ClientHello is being read.
    quic: Option<Box<QuicState>>,
    /// TCP: the client's ISN, when its SYN was seen.
    client_isn: Option<u32>,
    /// TCP: a packet from the server was seen (the connection got an answer).
    server_seen: bool,
    /// TCP: a segment with right checksums was seen, to the server and to the client.
    checksums_good: [bool; 2],
    /// QUIC: the client's first Destination Connection ID, and the one a server's Retry gave
    /// it: a client Initial opening a connection with any other DCID is a new connection.
    quic_dcids: Option<Box<QuicDcids>>,
}

/// A QUIC flow's client DCIDs: its first, and the one a server's Retry gave it.
#[derive(Debug)]
struct QuicDcids {
    first: Vec<u8>,
    after_retry: Option<Vec<u8>>,
}

impl Flow {
    fn held(&self) -> usize {
        self.to_server.held() + self.to_client.held()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DnsTxn {
    client: Endpoint,
    server: IpAddr,
    id: u16,
}

/// One worker's extraction state.
pub struct Extractor {
    limits: ExtractorLimits,
    flows: HashMap<FlowKey, Flow, ahash::RandomState>,
    dns_txns: HashMap<DnsTxn, Timestamp, ahash::RandomState>,
    last_sweep: Timestamp,
    /// Bytes held by every flow's reassembly buffers.
    buffered: usize,
    /// Flows holding reassembly bytes, in the order they started: under a flood of stalled
    /// streams the oldest give way, so new connections are still read.
    buffering: std::collections::VecDeque<FlowKey>,
    /// SPAN duplicates of the last few milliseconds.
    dedup: Deduplicator,
}

impl Extractor {
    pub fn new(limits: ExtractorLimits) -> Self {
        Extractor {
            limits,
            flows: HashMap::default(),
            dns_txns: HashMap::default(),
            last_sweep: Timestamp::default(),
            buffered: 0,
            buffering: std::collections::VecDeque::new(),
            dedup: Deduplicator::default(),
        }
    }

    /// Reassembly bytes held now, by all flows of this worker.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    pub fn active_flows(&self) -> usize {
        self.flows.len()
    }

    /// Reads one packet; everything it reveals goes to `out`.
    pub fn process(&mut self, ts: Timestamp, pkt: &Packet<'_>, out: &mut impl FnMut(Extracted)) {
        // A bare TCP ACK changes nothing here, and duplicate ACKs of IPv6 (no IP ID) without
        // timestamps are byte for byte the same: they are not taken for a mirror's copies.
        let bare_ack = matches!(&pkt.transport, Transport::Tcp(t)
            if t.payload.is_empty() && !(t.syn || t.fin || t.rst));
        if !bare_ack && self.dedup.is_duplicate(ts, pkt) {
            out(Extracted::Anomaly("duplicates"));
            return;
        }
        if ts.secs() >= self.last_sweep.secs() + 5 || ts < self.last_sweep {
            self.expire(ts, out);
            self.last_sweep = ts;
        }
        match &pkt.transport {
            Transport::Tcp(seg) => self.tcp(ts, pkt, seg, out),
            Transport::Udp(dgram) => self.udp(ts, pkt, dgram, out),
            Transport::Other { .. } => {}
        }
    }

    /// Ends every flow (end of a replay): unnamed flows are reported.
    pub fn finish(&mut self, out: &mut impl FnMut(Extracted)) {
        let limits = self.limits;
        for (_, mut flow) in self.flows.drain() {
            retire(&mut flow, &mut self.dns_txns, &limits, out);
        }
        self.dns_txns.clear();
        self.buffered = 0;
        self.buffering.clear();
    }

    fn expire(&mut self, now: Timestamp, out: &mut impl FnMut(Extracted)) {
        let limits = self.limits;
        let buffered = &mut self.buffered;
        let txns = &mut self.dns_txns;
        self.flows.retain(|_, flow| {
            let idle = match flow.id.proto {
                Proto::Tcp if flow.closing => 10,
                Proto::Tcp => limits.tcp_idle_secs,
                Proto::Udp => limits.udp_idle_secs,
            };
            let keep = now < flow.last_seen.saturating_add_secs(idle);
            if !keep {
                *buffered = buffered.saturating_sub(flow.held());
                retire(flow, txns, &limits, out);
            } else if now >= flow.last_seen.saturating_add_secs(MIDSTREAM_WINDOW_SECS) {
                // A mid-stream window that went quiet (a one-direction tap sees no answer).
                let before = flow.held();
                settle_windows(flow, txns, &limits, out);
                *buffered = (*buffered + flow.held()).saturating_sub(before);
            }
            keep
        });
        let horizon = limits.udp_idle_secs;
        self.dns_txns
            .retain(|_, seen| now < seen.saturating_add_secs(horizon));
    }

    /// Makes room for one more flow: evicts the longest-idle tenth of the table.
    fn make_room(&mut self, out: &mut impl FnMut(Extracted)) {
        let mut ages: Vec<Timestamp> = self.flows.values().map(|f| f.last_seen).collect();
        if ages.is_empty() {
            return;
        }
        let n = (ages.len() / 10).max(1).min(ages.len() - 1);
        let (_, cutoff, _) = ages.select_nth_unstable(n);
        let cutoff = *cutoff;
        let buffered = &mut self.buffered;
        let txns = &mut self.dns_txns;
        let limits = self.limits;
        self.flows.retain(|_, flow| {
            let keep = flow.last_seen > cutoff;
            if !keep {
                *buffered = buffered.saturating_sub(flow.held());
                retire(flow, txns, &limits, out);
                out(Extracted::Evicted);
            }
            keep
        });
    }

    fn flow_entry(
        &mut self,
        key: FlowKey,
        ts: Timestamp,
        make_id: impl FnOnce() -> FlowId,
        client_mac: Option<crate::mac::MacAddr>,
        out: &mut impl FnMut(Extracted),
    ) {
        if !self.flows.contains_key(&key) {
            if self.flows.len() >= self.limits.max_flows {
                self.make_room(out);
            }
            let id = make_id();
            let dns = id.proto == Proto::Tcp
                && (DNS_PORTS.contains(&id.server.port()) || DNS_PORTS.contains(&id.client.port()));
            let cap = self.limits.stream_cap;
            out(Extracted::FlowStart {
                ts,
                flow: id,
                client_mac,
            });
            self.flows.insert(
                key,
                Flow {
                    id,
                    last_seen: ts,
                    client_mac,
                    app: if dns { App::Dns } else { App::Probe },
                    to_server: StreamBuf::new(cap),
                    to_client: StreamBuf::new(cap),
                    client_bytes: 0,
                    named: false,
                    unnamed_reported: false,
                    closing: false,
                    drops_reported: false,
                    buffering: false,
                    quic: None,
                    client_isn: None,
                    server_seen: false,
                    checksums_good: [false; 2],
                    quic_dcids: None,
                },
            );
        }
    }

    /// Accounts for what a segment changed in `key`'s buffers, and when the worker's
    /// buffers together pass the budget, takes them from the flows that began buffering
    /// first (not `key`'s: the segment just read may be the one that completes a hello).
    fn account(&mut self, key: FlowKey, before: usize, out: &mut impl FnMut(Extracted)) {
        let Some(flow) = self.flows.get_mut(&key) else {
            self.buffered = self.buffered.saturating_sub(before);
            return;
        };
        let after = flow.held();
        self.buffered = (self.buffered + after).saturating_sub(before);
        if after > 0 && !flow.buffering {
            flow.buffering = true;
            self.buffering.push_back(key);
        }
        while self.buffered > self.limits.reassembly_budget {
            let Some(oldest) = self.buffering.pop_front() else {
                break;
            };
            if oldest == key {
                // The newest flow is the last to give way; if it alone is over budget,
                // its own per-flow cap bounds it.
                if self.buffering.is_empty() {
                    self.buffering.push_back(oldest);
                    break;
                }
                self.buffering.push_back(oldest);
                continue;
            }
            let Some(victim) = self.flows.get_mut(&oldest) else {
                continue;
            };
            victim.buffering = false;
            let held = victim.held();
            if held == 0 {
                continue;
            }
            self.buffered = self.buffered.saturating_sub(held);
            out(Extracted::Anomaly("reassembly_budget"));
            finish_inspection(victim, out);
        }
        // Entries of flows that left the table are skipped when reached; keep the queue
        // from growing with churn all the same.
        if self.buffering.len() > 2 * self.flows.len() + 1024 {
            let flows = &self.flows;
            let mut seen = std::collections::HashSet::with_capacity(flows.len());
            self.buffering
                .retain(|k| flows.get(k).is_some_and(|f| f.buffering) && seen.insert(*k));
        }
    }

    fn tcp(
        &mut self,
        ts: Timestamp,
        pkt: &Packet<'_>,
        seg: &TcpSegment<'_>,
        out: &mut impl FnMut(Extracted),
    ) {
        let src = (pkt.src, seg.src_port);
        let dst = (pkt.dst, seg.dst_port);
        let key = FlowKey::new(Proto::Tcp, src, dst);
        let verify = self.limits.verify_checksums;
        let validity = || {
            if !verify {
                return Validity::Unknown;
            }
            match checksum::ipv4_header(pkt) {
                Validity::Bad => Validity::Bad,
                _ => checksum::tcp(pkt, seg),
            }
        };
        let mut checked = None;
        if let Some(flow) = self.flows.get_mut(&key) {
            let dir = usize::from(flow.id.client != SocketAddr::new(src.0, src.1));
            // Only what can change the flow's state is checked: data it still reads, and
            // the flags that open or close it.
            if flow.app != App::Done || seg.syn || seg.fin || seg.rst {
                let v = *checked.get_or_insert_with(validity);
                if v == Validity::Bad && flow.checksums_good[dir] {
                    out(Extracted::Anomaly("transport_checksum_bad"));
                    return;
                }
                if v == Validity::Good {
                    flow.checksums_good[dir] = true;
                }
            }
            if seg.syn && !seg.ack && is_new_connection(flow, src, seg, ts) {
                self.close_reused(key, out);
            }
        }
        let known = self.flows.contains_key(&key);
        if !known && (seg.rst || (seg.fin && seg.payload.is_empty())) {
            // The tail of a flow we never saw: nothing to learn.
            return;
        }
        let make_id = || {
            let src_is_client = tcp_src_is_client(seg);
            let (client, server) = if src_is_client {
                (src, dst)
            } else {
                (dst, src)
            };
            FlowId {
                proto: Proto::Tcp,
                client: SocketAddr::new(client.0, client.1),
                server: SocketAddr::new(server.0, server.1),
            }
        };
        let mac = pkt.src_mac;
        let mac_for_new = if tcp_src_is_client(seg) { mac } else { None };
        self.flow_entry(key, ts, make_id, mac_for_new, out);
        if !known {
            if let Some(flow) = self.flows.get_mut(&key) {
                let dir = usize::from(flow.id.client != SocketAddr::new(src.0, src.1));
                flow.checksums_good[dir] = checked.unwrap_or_else(validity) == Validity::Good;
            }
        }
        let before = self.flows.get(&key).map_or(0, Flow::held);
        self.tcp_segment(key, ts, src, mac, seg, out);
        self.account(key, before, out);
    }

    /// Ends the flow on `key` because a new connection reuses its 4-tuple.
    fn close_reused(&mut self, key: FlowKey, out: &mut impl FnMut(Extracted)) {
        let Some(mut flow) = self.flows.remove(&key) else {
            return;
        };
        self.buffered = self.buffered.saturating_sub(flow.held());
        let limits = self.limits;
        retire(&mut flow, &mut self.dns_txns, &limits, out);
        out(Extracted::Anomaly("transport_tuple_reused"));
    }

    fn tcp_segment(
        &mut self,
        key: FlowKey,
        ts: Timestamp,
        src: Endpoint,
        mac: Option<crate::mac::MacAddr>,
        seg: &TcpSegment<'_>,
        out: &mut impl FnMut(Extracted),
    ) {
        let budget = self.limits.inspect_budget;
        let limits = self.limits;
        let txns = &mut self.dns_txns;
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        flow.last_seen = ts;
        let from_client = flow.id.client == SocketAddr::new(src.0, src.1);
        if from_client && flow.client_mac.is_none() {
            flow.client_mac = mac;
        }
        if !from_client {
            flow.server_seen = true;
        }
        if seg.syn && !seg.ack && from_client {
            flow.client_isn.get_or_insert(seg.seq);
        }
        if seg.fin || seg.rst {
            flow.closing = true;
        }
        // The peer answered, or the flow ends: what the other side sent before is whole, so
        // a direction still in its mid-stream window starts now.
        if flow.app != App::Done && (!seg.payload.is_empty() || flow.closing) {
            let peer = if from_client {
                &mut flow.to_client
            } else {
                &mut flow.to_server
            };
            if peer.settle() == Pushed::Data {
                inspect(flow, !from_client, ts, txns, &limits, 0, out);
            }
        }
        let dir = if from_client {
            &mut flow.to_server
        } else {
            &mut flow.to_client
        };
        let mut pushed = Pushed::Nothing;
        if seg.syn && flow.app != App::Done {
            pushed = dir.start_at(seg.seq.wrapping_add(1));
        }
        // SYN data (TCP Fast Open) starts one after the SYN's sequence number.
        let seq = if seg.syn {
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        if flow.app != App::Done && !seg.payload.is_empty() {
            if from_client {
                flow.client_bytes += seg.payload.len() as u64;
            }
            if dir.push(seq, seg.payload) == Pushed::Data {
                pushed = Pushed::Data;
            }
        }
        // A segment cut by the snap length ends what can be read in order here: a direction
        // still waiting for its start takes it now, or the cut would leave a gap that never fills.
        if dir.is_unanchored()
            && (dir.parked_segments() >= MIDSTREAM_WINDOW_SEGMENTS || flow.closing || seg.cut > 0)
            && dir.settle() == Pushed::Data
        {
            pushed = Pushed::Data;
        }
        // The cut applies only when the in-order bytes end where this segment's captured bytes
        // end (not when it was parked, or bytes after it were delivered).
        let cut_end = seq.wrapping_add(seg.payload.len() as u32);
        let cut = if seg.cut > 0 && dir.next_seq() == Some(cut_end) {
            seg.cut
        } else {
            0
        };
        if pushed == Pushed::Data && flow.app != App::Done {
            // The buffer now ends where the capture stopped keeping bytes: the parsers read it
            // as far as it goes.
            inspect(flow, from_client, ts, txns, &limits, cut, out);
        }
        if cut > 0 && flow.app != App::Done {
            // The next segment follows the bytes that were never captured: go on there, with
            // what is parked beyond (what was left of the cut message is unreadable anyway).
            let dir = if from_client {
                &mut flow.to_server
            } else {
                &mut flow.to_client
            };
            if dir.skip_to(cut_end.wrapping_add(cut)) == Pushed::Data {
                inspect(flow, from_client, ts, txns, &limits, 0, out);
            }
        }
        if flow.app != App::Done && flow.client_bytes > budget {
            finish_inspection(flow, out);
        }
        if flow.closing {
            report_unnamed(flow, out);
        }
    }

    fn udp(
        &mut self,
        ts: Timestamp,
        pkt: &Packet<'_>,
        dgram: &UdpDatagram<'_>,
        out: &mut impl FnMut(Extracted),
    ) {
        let src = SocketAddr::new(pkt.src, dgram.src_port);
        let dst = SocketAddr::new(pkt.dst, dgram.dst_port);
        // Client to server, server (or relay) to client, relay to server.
        let ports = (dgram.src_port, dgram.dst_port);
        if matches!(
            ports,
            (DHCP_CLIENT_PORT, DHCP_SERVER_PORT)
                | (DHCP_SERVER_PORT, DHCP_CLIENT_PORT)
                | (DHCP_SERVER_PORT, DHCP_SERVER_PORT)
        ) {
            on_dhcp_message(dgram.payload, ts, out);
            return;
        }
        if matches!(
            ports,
            (DHCPV6_CLIENT_PORT, DHCPV6_SERVER_PORT)
                | (DHCPV6_SERVER_PORT, DHCPV6_CLIENT_PORT)
                | (DHCPV6_SERVER_PORT, DHCPV6_SERVER_PORT)
        ) {
            on_dhcpv6_message(dgram.payload, ts, out);
            return;
        }
        if DNS_PORTS.contains(&dgram.dst_port) || DNS_PORTS.contains(&dgram.src_port) {
            on_dns_message(
                dgram.payload,
                dgram.cut > 0,
                src,
                dst,
                Proto::Udp,
                pkt.src_mac,
                ts,
                &mut self.dns_txns,
                self.limits.max_dns_transactions,
                out,
            );
            return;
        }
        let key = FlowKey::new(Proto::Udp, (src.ip(), src.port()), (dst.ip(), dst.port()));
        if let Some(flow) = self.flows.get_mut(&key) {
            if new_quic_connection(flow, src, dgram.payload) {
                self.close_reused(key, out);
            }
        }
        let make_id = || {
            // The sender of the first datagram is the client, unless it came from a
            // well-known port to a high one (we joined mid-conversation).
            let src_is_client = !(dgram.src_port < 1024 && dgram.dst_port >= 1024);
            let (client, server) = if src_is_client {
                (src, dst)
            } else {
                (dst, src)
            };
            FlowId {
                proto: Proto::Udp,
                client,
                server,
            }
        };
        let mac = pkt.src_mac;
        self.flow_entry(key, ts, make_id, mac, out);
        if let Some(flow) = self.flows.get_mut(&key) {
            flow.last_seen = ts;
            let from_client = flow.id.client == src;
            match flow.app {
                App::Done => {}
                App::Probe if from_client && quic::looks_like_client_initial(dgram.payload) => {
                    flow.app = App::Quic;
                    flow.quic = Some(Box::default());
                    inspect_quic(flow, ts, dgram.payload, out);
                }
                App::Quic if from_client => inspect_quic(flow, ts, dgram.payload, out),
                App::Quic => {}
                // A capture can start with 0-RTT or Handshake packets before the Initial
                // that names the server: look at a few client datagrams before giving up.
                App::Probe if from_client && flow.client_bytes < UDP_PROBE_DATAGRAMS => {
                    flow.client_bytes += 1
                }
                App::Probe if !from_client => {}
                // Nothing else is read from UDP.
                _ => finish_inspection(flow, out),
            }
        }
    }
}

/// Whether a datagram from `src` opens another QUIC connection on `flow`'s UDP 4-tuple (and
/// notes the DCID a server's Retry gives the client, which is the same connection's).
fn new_quic_connection(flow: &mut Flow, src: SocketAddr, datagram: &[u8]) -> bool {
    let Some(cids) = flow.quic_dcids.as_mut() else {
        return false;
    };
    let Some((dcid, scid, retry)) = quic::long_header_cids(datagram) else {
        return false;
    };
    if src != flow.id.client {
        if retry {
            cids.after_retry = Some(scid.to_vec());
        }
        return false;
    }
    if dcid == cids.first.as_slice() || cids.after_retry.as_deref() == Some(dcid) {
        return false;
    }
    quic::looks_like_client_initial(datagram) && quic::opens_connection(datagram)
}

/// Client datagrams of an unknown UDP flow looked at before it is bypassed.
const UDP_PROBE_DATAGRAMS: u64 = 4;

/// Client datagrams of a QUIC flow read before giving up on its ClientHello.
const QUIC_MAX_DATAGRAMS: u8 = 16;

/// A QUIC flow's Initial keys and CRYPTO stream, until its ClientHello is read.
#[derive(Debug, Default)]
struct QuicState {
    /// The client's first Destination Connection ID: RFC 9001 keys every Initial from it.
    key_dcid: Option<Vec<u8>>,
    crypto: quic::CryptoStream,
    datagrams: u8,
}

fn inspect_quic(flow: &mut Flow, ts: Timestamp, datagram: &[u8], out: &mut impl FnMut(Extracted)) {
    let Some(state) = flow.quic.as_mut() else {
        return;
    };
    state.datagrams += 1;
    let initials = match &state.key_dcid {
        None => quic::client_initials(datagram),
        Some(key) => quic::client_initials_keyed(datagram, key),
    };
    match initials {
        Ok(initials) => {
            for initial in initials {
                if state.key_dcid.is_none() {
                    flow.quic_dcids = Some(Box::new(QuicDcids {
                        first: initial.dcid.clone(),
                        after_retry: None,
                    }));
                }
                state.key_dcid.get_or_insert_with(|| initial.dcid.clone());
                for (offset, data) in &initial.crypto {
                    state.crypto.add(*offset, data);
                }
            }
        }
        Err(e) => out(Extracted::Anomaly(e.reason())),
    }
    let hello = match tls::parse_client_hello_message(state.crypto.contiguous()) {
        tls::Parse::Hello(hello) => hello.into_owned(),
        tls::Parse::NeedMore
            if state.datagrams < QUIC_MAX_DATAGRAMS && state.crypto.dropped() == 0 =>
        {
            return
        }
        tls::Parse::NeedMore => {
            out(Extracted::Anomaly("quic_client_hello_incomplete"));
            finish_inspection(flow, out);
            return;
        }
        tls::Parse::NotTls | tls::Parse::Malformed(_) => {
            out(Extracted::Anomaly("quic_client_hello_malformed"));
            finish_inspection(flow, out);
            return;
        }
    };
    let detail = Detail::Tls {
        version: hello.max_version(),
        ech: hello.ech,
        ja4: Some(hello.ja4(true)),
    };
    match hello.server_name.as_deref() {
        Some(sni) => {
            // With ECH too: the outer name is the server the host talks to (the real name
            // under GREASE ECH, the provider's public name under real ECH).
            emit_name(flow, ts, NameKind::QuicSni, sni, detail, out);
        }
        None => out(Extracted::Fingerprint {
            ts,
            flow: flow.id,
            detail,
        }),
    }
    finish_inspection(flow, out);
}

/// Whether a SYN (without ACK) from `src` opens a new connection on `flow`'s 4-tuple rather
/// than retransmitting the SYN that opened it (or arriving late in a capture that began
/// mid-stream): it carries another ISN, and the old connection closed, never got an answer,
/// or went stale. A SYN into a live, answered connection does not take it over.
fn is_new_connection(flow: &Flow, src: Endpoint, seg: &TcpSegment<'_>, now: Timestamp) -> bool {
    let stale = now >= flow.last_seen.saturating_add_secs(REUSE_STALE_SECS);
    let from_client = flow.id.client == SocketAddr::new(src.0, src.1);
    match flow.client_isn {
        Some(isn) if from_client && isn == seg.seq => false,
        // Another ISN than the one seen: a connection that never got an answer is over too.
        Some(_) => flow.closing || stale || !flow.server_seen,
        // The old flow began mid-stream: its SYN may be this one, arriving late.
        None => flow.closing || stale,
    }
}

fn tcp_src_is_client(seg: &TcpSegment<'_>) -> bool {
    if seg.syn {
        return !seg.ack;
    }
    // Joined mid-flow: the side on the lower, well-known port is the server.
    !(seg.src_port < seg.dst_port && seg.src_port < 1024)
}

fn report_unnamed(flow: &mut Flow, out: &mut impl FnMut(Extracted)) {
    if !flow.named && !flow.unnamed_reported {
        flow.unnamed_reported = true;
        out(Extracted::Unnamed {
            ts: flow.last_seen,
            flow: flow.id,
        });
    }
}

/// Counts, once per flow, that its reassembly buffers hit their cap and shed bytes.
fn count_reassembly_drops(flow: &mut Flow, out: &mut impl FnMut(Extracted)) {
    let quic_dropped = flow.quic.as_ref().is_some_and(|q| q.crypto.dropped() > 0);
    if !flow.drops_reported
        && (flow.to_server.dropped_bytes + flow.to_client.dropped_bytes > 0 || quic_dropped)
    {
        flow.drops_reported = true;
        out(Extracted::Anomaly("reassembly_cap"));
    }
}

/// Ends the mid-stream window of both directions, and reads what that delivers.
fn settle_windows(
    flow: &mut Flow,
    txns: &mut HashMap<DnsTxn, Timestamp, ahash::RandomState>,
    limits: &ExtractorLimits,
    out: &mut impl FnMut(Extracted),
) {
    let ts = flow.last_seen;
    for from_client in [true, false] {
        let dir = if from_client {
            &mut flow.to_server
        } else {
            &mut flow.to_client
        };
        if flow.app != App::Done && dir.is_unanchored() && dir.settle() == Pushed::Data {
            inspect(flow, from_client, ts, txns, limits, 0, out);
        }
    }
}

/// A flow leaves the table: what it still held in a mid-stream window is read, then its
/// drops and, if it never named anything, its address are reported.
fn retire(
    flow: &mut Flow,
    txns: &mut HashMap<DnsTxn, Timestamp, ahash::RandomState>,
    limits: &ExtractorLimits,
    out: &mut impl FnMut(Extracted),
) {
    settle_windows(flow, txns, limits, out);
    count_reassembly_drops(flow, out);
    report_unnamed(flow, out);
}

fn finish_inspection(flow: &mut Flow, out: &mut impl FnMut(Extracted)) {
    count_reassembly_drops(flow, out);
    flow.app = App::Done;
    flow.quic = None;
    flow.to_server.release();
    flow.to_client.release();
    report_unnamed(flow, out);
}

fn emit_name(
    flow: &mut Flow,
    ts: Timestamp,
    kind: NameKind,
    raw: &[u8],
    detail: Detail,
    out: &mut impl FnMut(Extracted),
) {
    if let Some(value) = names::normalize(raw) {
        flow.named = true;
        out(Extracted::Name(NameEvent {
            ts,
            kind,
            value,
            flow: flow.id,
            client_mac: flow.client_mac,
            detail,
        }));
    }
}

/// Runs the parsers over whatever new bytes a direction has.
///
/// `cut` is the number of bytes the capture did not keep right after the direction's
/// buffered bytes (0 when none): the buffer then holds all there will be of the message
/// it ends in.
fn inspect(
    flow: &mut Flow,
    from_client: bool,
    ts: Timestamp,
    txns: &mut HashMap<DnsTxn, Timestamp, ahash::RandomState>,
    limits: &ExtractorLimits,
    cut: u32,
    out: &mut impl FnMut(Extracted),
) {
    let max_txns = limits.max_dns_transactions;
    loop {
        match flow.app {
            // QUIC is read datagram by datagram in `inspect_quic`, never from a stream.
            App::Done | App::Quic => return,
            App::Dns => {
                let dir = if from_client {
                    &mut flow.to_server
                } else {
                    &mut flow.to_client
                };
                let data = dir.data();
                let (src, dst) = if from_client {
                    (flow.id.client, flow.id.server)
                } else {
                    (flow.id.server, flow.id.client)
                };
                let Some(len) = data
                    .get(..2)
                    .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
                else {
                    if cut > 0 {
                        // A message starts among the bytes that were not captured: where
                        // the next one starts is unknown.
                        out(Extracted::Anomaly("dns_tcp_cut"));
                        finish_inspection(flow, out);
                    }
                    return;
                };
                let Some(msg) = data.get(2..2 + len) else {
                    if cut > 0 {
                        // Cut by the snap length: its whole questions are still read, and
                        // the stream stays in step only if the message ends with the cut.
                        let in_step = 2 + len == data.len() + cut as usize;
                        let named = on_dns_message(
                            &data[2..],
                            true,
                            src,
                            dst,
                            Proto::Tcp,
                            flow.client_mac,
                            ts,
                            txns,
                            max_txns,
                            out,
                        );
                        flow.named |= named;
                        if in_step {
                            let n = data.len();
                            dir.consume(n);
                        } else {
                            out(Extracted::Anomaly("dns_tcp_cut"));
                            finish_inspection(flow, out);
                        }
                    } else if dir.is_full() {
                        out(Extracted::Anomaly("dns_tcp_message_too_large"));
                        finish_inspection(flow, out);
                    }
                    return;
                };
                let named = on_dns_message(
                    msg,
                    false,
                    src,
                    dst,
                    Proto::Tcp,
                    flow.client_mac,
                    ts,
                    txns,
                    max_txns,
                    out,
                );
                flow.named |= named;
                dir.consume(2 + len);
            }
            App::TlsServer if !from_client => {
                inspect_server(flow, ts, out);
                return;
            }
            App::TlsServer => return,
            _ if !from_client => {
                // Before the client is read, the server's bytes are kept (bounded) for later.
                if flow.app != App::Tls && flow.app != App::Probe {
                    flow.to_client.release();
                }
                return;
            }
            App::Probe => {
                let data = flow.to_server.data();
                let starts = flow.to_server.segment_starts();
                let mut found = None;
                let mut undecided = false;
                for &s in starts.iter().take(PROBE_SEGMENTS) {
                    let bytes = &data[s..];
                    if tls::looks_like_handshake(bytes) {
                        found = Some((s, App::Tls));
                        break;
                    }
                    if http::looks_like_request(bytes) {
                        if bytes.len() < 8 {
                            undecided = true;
                            continue;
                        }
                        found = Some((
                            s,
                            App::Http {
                                requests: 0,
                                next: HttpNext::Head,
                            },
                        ));
                        break;
                    }
                    if bytes.len() < 3 && bytes.first() == Some(&0x16) {
                        undecided = true;
                    }
                }
                match found {
                    Some((start, app)) => {
                        flow.to_server.consume(start);
                        flow.app = app;
                    }
                    None if undecided => return,
                    None => {
                        if flow.client_bytes as usize > PROBE_BUDGET
                            || starts.len() >= PROBE_SEGMENTS
                        {
                            finish_inspection(flow, out);
                        } else {
                            let n = flow.to_server.data().len();
                            flow.to_server.consume(n);
                        }
                        return;
                    }
                }
            }
            App::Tls => {
                let data = flow.to_server.data();
                match tls::parse_client_hello(data) {
                    tls::Parse::NeedMore if cut > 0 => {
                        // The hello runs into bytes the capture did not keep: its
                        // extensions (the server name among them) are not whole.
                        out(Extracted::Anomaly("tls_client_hello_cut"));
                        finish_inspection(flow, out);
                        return;
                    }
                    tls::Parse::NeedMore => {
                        if flow.to_server.is_full() {
                            out(Extracted::Anomaly("tls_client_hello_too_large"));
                            finish_inspection(flow, out);
                        }
                        return;
                    }
                    tls::Parse::NotTls => {
                        flow.app = App::Probe;
                        let n = flow.to_server.data().len();
                        flow.to_server.consume(n);
                        return;
                    }
                    tls::Parse::Malformed(reason) => {
                        out(Extracted::Anomaly(reason));
                        finish_inspection(flow, out);
                        return;
                    }
                    tls::Parse::Hello(hello) => {
                        let ech = hello.ech;
                        let detail = Detail::Tls {
                            version: hello.max_version(),
                            ech,
                            ja4: Some(hello.ja4(false)),
                        };
                        let sni = hello.server_name.as_deref().map(<[u8]>::to_vec);
                        match sni {
                            Some(sni) => {
                                // With ECH too: the outer name is the server the host talks
                                // to (the real name under GREASE ECH, the provider's public
                                // name under real ECH).
                                emit_name(flow, ts, NameKind::TlsSni, &sni, detail, out);
                            }
                            None => out(Extracted::Fingerprint {
                                ts,
                                flow: flow.id,
                                detail,
                            }),
                        }
                        flow.to_server.release();
                        flow.app = App::TlsServer;
                        // The server may have answered before we got here.
                        if !flow.to_client.data().is_empty() {
                            inspect_server(flow, ts, out);
                        }
                        return;
                    }
                }
            }
            App::Http { requests, next } => {
                if inspect_http(flow, ts, requests, next, limits.http_max_requests, cut, out) {
                    return;
                }
            }
        }
    }
}

/// Reads the client bytes of an HTTP connection: request heads, and between them the
/// bodies passed over (Content-Length or chunked, across any number of segments), for up
/// to `max_requests` requests. Returns `true` when it has read all it can for now.
fn inspect_http(
    flow: &mut Flow,
    ts: Timestamp,
    requests: u32,
    next: HttpNext,
    max_requests: u32,
    cut: u32,
    out: &mut impl FnMut(Extracted),
) -> bool {
    if flow.to_server.data().is_empty() {
        if cut > 0 {
            // Bytes the capture did not keep follow: body bytes to pass over, or (after a
            // head) the start of something we cannot see.
            let next = match next {
                HttpNext::Body(mut body) => {
                    if body.skip_missing(u64::from(cut)) {
                        HttpNext::Body(body)
                    } else {
                        HttpNext::Resync
                    }
                }
                _ => HttpNext::Resync,
            };
            flow.app = App::Http { requests, next };
        }
        return true;
    }
    match next {
        HttpNext::Body(mut body) => {
            match body.skip(flow.to_server.data()) {
                Err(e) => {
                    out(Extracted::Anomaly(e.reason()));
                    finish_inspection(flow, out);
                    return true;
                }
                Ok((n, done)) => {
                    flow.to_server.consume(n);
                    // Body bytes are passed over, not inspected: they do not spend the
                    // connection's inspection budget (MAX_BODY_SKIP bounds each body).
                    flow.client_bytes = flow.client_bytes.saturating_sub(n as u64);
                    let next = if done {
                        HttpNext::Head
                    } else {
                        HttpNext::Body(body)
                    };
                    flow.app = App::Http { requests, next };
                }
            }
            false
        }
        HttpNext::Resync => {
            let data = flow.to_server.data();
            let start = flow
                .to_server
                .segment_starts()
                .iter()
                .copied()
                .find(|&s| data.get(s..).is_some_and(http::starts_request));
            match start {
                Some(s) => {
                    flow.to_server.consume(s);
                    flow.app = App::Http {
                        requests,
                        next: HttpNext::Head,
                    };
                }
                None => {
                    let n = data.len();
                    flow.to_server.consume(n);
                }
            }
            false
        }
        HttpNext::Head => inspect_http_head(flow, ts, requests, max_requests, cut, out),
    }
}

/// Reads one request head at the start of the client's buffer (see `inspect_http`).
fn inspect_http_head(
    flow: &mut Flow,
    ts: Timestamp,
    requests: u32,
    max_requests: u32,
    cut: u32,
    out: &mut impl FnMut(Extracted),
) -> bool {
    let full = flow.to_server.is_full();
    let data = flow.to_server.data();
    // Nothing more of this head will come: read the lines that are whole.
    let parsed = if cut > 0 || full {
        http::parse_request_cut(data)
    } else {
        http::parse_request(data)
    };
    let req = match parsed {
        http::Parse::NeedMore => return true,
        http::Parse::NotHttp => {
            finish_inspection(flow, out);
            return true;
        }
        http::Parse::LineCut if cut > 0 => {
            out(Extracted::Anomaly("http_request_line_cut"));
            let n = data.len();
            flow.to_server.consume(n);
            flow.app = App::Http {
                requests,
                next: HttpNext::Resync,
            };
            return false;
        }
        http::Parse::LineCut => {
            out(Extracted::Anomaly("http_request_head_too_large"));
            finish_inspection(flow, out);
            return true;
        }
        http::Parse::Request(req) => req,
    };
    match req.head {
        http::Head::Whole => {}
        http::Head::ManyHeaders => out(Extracted::Anomaly("http_too_many_headers")),
        http::Head::Cut if cut > 0 => out(Extracted::Anomaly("http_head_cut")),
        http::Head::Cut => out(Extracted::Anomaly("http_request_head_too_large")),
    }
    let detail = Detail::Http {
        method: req.method.to_string(),
        target: String::from_utf8_lossy(&req.target.as_bytes()[..req.target.len().min(512)])
            .into_owned(),
        user_agent: req
            .user_agent
            .map(|u| String::from_utf8_lossy(&u[..u.len().min(512)]).into_owned()),
    };
    let mut found: Vec<(NameKind, Vec<u8>)> = Vec::with_capacity(3);
    if let Some(h) = req.host {
        found.push((NameKind::HttpHost, h.to_vec()));
    }
    if let Some(h) = req.target_host {
        if req.host != Some(h) {
            found.push((NameKind::HttpHost, h.to_vec()));
        }
    }
    if let Some(h) = req.connect_host {
        found.push((NameKind::HttpConnect, h.to_vec()));
    }
    let head_len = req.head_len;
    let body = req.body();
    // After CONNECT the client speaks the tunnelled protocol (TLS, usually).
    let tunnel = req.connect_host.is_some();
    for (kind, raw) in found {
        emit_name(flow, ts, kind, &raw, detail.clone(), out);
    }
    let requests = requests + 1;
    if requests >= max_requests {
        out(Extracted::Anomaly("http_max_requests"));
        finish_inspection(flow, out);
        return true;
    }
    let next = match body {
        Some(body) => HttpNext::Body(body),
        // A head too large for the buffer: the rest of the connection is not followed.
        None if cut == 0 => {
            finish_inspection(flow, out);
            return true;
        }
        // Cut short: the rest of this request is unknown.
        None => HttpNext::Resync,
    };
    flow.to_server.consume(head_len);
    flow.app = if tunnel {
        if next == HttpNext::Resync {
            flow.to_server.consume(usize::MAX);
        }
        App::Probe
    } else {
        App::Http { requests, next }
    };
    false
}

/// Reads the server's first flight of a TLS flow: its certificate, when sent in clear.
fn inspect_server(flow: &mut Flow, ts: Timestamp, out: &mut impl FnMut(Extracted)) {
    match tls::parse_server_flight(flow.to_client.data()) {
        tls::ServerParse::NeedMore => {
            if flow.to_client.is_full() {
                out(Extracted::Anomaly("tls_server_flight_too_large"));
                finish_inspection(flow, out);
            }
        }
        tls::ServerParse::Done { leaf, .. } => {
            if let Some(der) = leaf {
                match cert::summarize(&der) {
                    Some(summary) => {
                        let value = summary
                            .common_name
                            .clone()
                            .or_else(|| summary.sans.first().cloned())
                            .unwrap_or_default();
                        let named_before = flow.named;
                        emit_name(
                            flow,
                            ts,
                            NameKind::TlsCert,
                            value.as_bytes(),
                            Detail::Cert(Box::new(summary)),
                            out,
                        );
                        // A certificate names the server, but does not stand in for a client's own name.
                        flow.named = named_before;
                    }
                    None => out(Extracted::Anomaly("tls_certificate_unparsable")),
                }
            }
            finish_inspection(flow, out);
        }
        tls::ServerParse::NotTls => finish_inspection(flow, out),
        tls::ServerParse::Malformed(reason) => {
            out(Extracted::Anomaly(reason));
            finish_inspection(flow, out);
        }
    }
}

/// Reads one DHCPv4 message: the address it binds to a machine becomes an identity. DHCP
/// datagrams are not flows (broadcasts, from 0.0.0.0): no flow state is kept for them.
fn on_dhcp_message(payload: &[u8], ts: Timestamp, out: &mut impl FnMut(Extracted)) {
    let msg = match dhcp::parse(payload) {
        Ok(m) => m,
        Err(e) => {
            out(Extracted::Anomaly(e.reason()));
            return;
        }
    };
    if msg.anomalies.options_truncated {
        out(Extracted::Anomaly("dhcp_options_truncated"));
    }
    let Some(binding) = msg.binding() else {
        return;
    };
    out(Extracted::Identity(Identity {
        ts,
        ip: IpAddr::V4(binding.address),
        mac: msg.client_mac(),
        hostname: msg.hostname(),
        client_id: msg.client_id_hex(),
        source: match binding.source {
            dhcp::BindingSource::Request => IdentitySource::DhcpRequest,
            dhcp::BindingSource::Inform => IdentitySource::DhcpInform,
            dhcp::BindingSource::Ack => IdentitySource::DhcpAck,
        },
    }));
}

/// Reads one DHCPv6 message: each address it binds becomes an identity.
fn on_dhcpv6_message(payload: &[u8], ts: Timestamp, out: &mut impl FnMut(Extracted)) {
    let msg = match dhcp::parse_v6(payload) {
        Ok(m) => m,
        Err(e) => {
            out(Extracted::Anomaly(e.reason()));
            return;
        }
    };
    if msg.anomalies.options_truncated {
        out(Extracted::Anomaly("dhcpv6_options_truncated"));
    }
    if msg.anomalies.addresses_truncated {
        out(Extracted::Anomaly("dhcpv6_addresses_truncated"));
    }
    let (mac, hostname, client_id) = (msg.client_mac(), msg.hostname(), msg.client_id_hex());
    for b in msg.bindings() {
        out(Extracted::Identity(Identity {
            ts,
            ip: IpAddr::V6(b.address),
            mac,
            hostname: hostname.clone(),
            client_id: client_id.clone(),
            source: match b.source {
                dhcp::BindingSource::Ack => IdentitySource::Dhcpv6Reply,
                _ => IdentitySource::Dhcpv6Request,
            },
        }));
    }
}

/// Reads one DNS message between `src` and `dst`. Returns whether it named anything.
#[allow(clippy::too_many_arguments)]
fn on_dns_message(
    msg: &[u8],
    cut: bool,
    src: SocketAddr,
    dst: SocketAddr,
    proto: Proto,
    src_mac: Option<crate::mac::MacAddr>,
    ts: Timestamp,
    txns: &mut HashMap<DnsTxn, Timestamp, ahash::RandomState>,
    max_txns: usize,
    out: &mut impl FnMut(Extracted),
) -> bool {
    // A message the capture cut short is read as far as it goes (whole names only).
    let parsed = match if cut {
        dns::parse_cut(msg)
    } else {
        dns::parse(msg)
    } {
        Ok(m) => m,
        Err(e) => {
            out(Extracted::Anomaly(e.reason()));
            return false;
        }
    };
    for reason in parsed.anomalies.reasons() {
        out(Extracted::Anomaly(reason));
    }
    // UPDATE is zone maintenance, not a lookup: its "question" is the zone being changed.
    if parsed.opcode == dns::OPCODE_UPDATE {
        out(Extracted::Anomaly("dns_update_ignored"));
        return false;
    }
    // The client is the one who asked: the sender of a query, the receiver of a response.
    let (client, server, client_mac) = if parsed.is_response {
        (dst, src, None)
    } else {
        (src, dst, src_mac)
    };
    let txn = DnsTxn {
        client: (client.ip(), client.port()),
        server: server.ip(),
        id: parsed.id,
    };
    let query_seen = if parsed.is_response {
        txns.remove(&txn).is_some()
    } else {
        if txns.len() >= max_txns {
            out(Extracted::Anomaly("dns_transaction_table_full"));
            txns.clear();
        }
        txns.insert(txn, ts);
        false
    };
    let flow = FlowId {
        proto,
        client,
        server,
    };
    if parsed.is_response && parsed.rcode == 0 {
        // A PTR answer names the machine behind an address (the pipeline keeps home-net ones).
        for a in &parsed.answers {
            if let (dns::RData::Ptr(target), Some(ip)) =
                (&a.data, dns::reverse_name_address(&a.name))
            {
                if !target.is_empty() {
                    out(Extracted::Identity(Identity {
                        ts,
                        ip,
                        mac: None,
                        hostname: Some(target.clone()),
                        client_id: None,
                        source: IdentitySource::Ptr,
                    }));
                }
            }
        }
    }
    let mut named = false;
    // mDNS announcements carry answers and no question: their owner names are what is named.
    let mut names: Vec<(&str, u16)> = parsed
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
            value: (*name).to_string(),
            flow,
            client_mac,
            detail: Detail::Dns(DnsDetail {
                is_response: parsed.is_response,
                qtype: *qtype,
                rcode: parsed.rcode,
                // Answers belong to the first question (the only one in practice).
                answers: if i == 0 {
                    parsed.answers.clone()
                } else {
                    Vec::new()
                },
                query_seen,
            }),
        }));
    }
    named
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, LinkType};

    fn collect(ex: &mut Extractor, frames: &[(u32, Vec<u8>)]) -> Vec<Extracted> {
        let mut got = Vec::new();
        for (t, f) in frames {
            let pkt = decode(LinkType::RawIp, f).expect("test frame decodes");
            ex.process(Timestamp::from_parts(i64::from(*t), 0), &pkt, &mut |e| {
                got.push(e)
            });
        }
        ex.finish(&mut |e| got.push(e));
        got
    }

    /// IPv4/TCP frame from 10.0.0.1:40000 to 10.0.0.2:443 (or reversed) with flags and payload.
    fn tcp(reverse: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (a, b, pa, pb) = if reverse {
            ([10, 0, 0, 2], [10, 0, 0, 1], 443u16, 40000u16)
        } else {
            ([10, 0, 0, 1], [10, 0, 0, 2], 40000, 443)
        };
        let mut f = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0];
        f.extend_from_slice(&a);
        f.extend_from_slice(&b);
        let total = (20 + 20 + payload.len()) as u16;
        f[2..4].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&pa.to_be_bytes());
        f.extend_from_slice(&pb.to_be_bytes());
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(payload);
        f
    }

    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const SYNACK: u8 = 0x12;

    fn names(got: &[Extracted]) -> Vec<(NameKind, String)> {
        got.iter()
            .filter_map(|e| match e {
                Extracted::Name(n) => Some((n.kind, n.value.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn client_hello_split_out_of_order_and_retransmitted() {
        let hello = tls::tests::records(
            &tls::tests::client_hello("S05.upd.kaspersky.com", 900),
            16384,
        );
        let (a, b) = hello.split_at(700);
        let mut ex = Extractor::new(ExtractorLimits::default());
        let got = collect(
            &mut ex,
            &[
                (1, tcp(false, 99, SYN, b"")),
                (1, tcp(true, 5000, SYNACK, b"")),
                (2, tcp(false, 100 + 700, ACK, b)), // second half first
                (2, tcp(false, 100, ACK, a)),
                (2, tcp(false, 100, ACK, a)), // retransmission
            ],
        );
        assert_eq!(
            names(&got),
            vec![(NameKind::TlsSni, "s05.upd.kaspersky.com".to_string())]
        );
        let Some(Extracted::Name(n)) = got.iter().find(|e| matches!(e, Extracted::Name(_))) else {
            unreachable!()
        };
        assert_eq!(n.flow.client.to_string(), "10.0.0.1:40000");
        assert!(!got.iter().any(|e| matches!(e, Extracted::Unnamed { .. })));
    }

    const FIN: u8 = 0x11;

    fn tls_names(got: &[Extracted]) -> Vec<String> {
        names(got)
            .into_iter()
            .filter(|(k, _)| *k == NameKind::TlsSni)
            .map(|(_, v)| v)
            .collect()
    }

    fn reused(got: &[Extracted]) -> usize {
        got.iter()
            .filter(|e| matches!(e, Extracted::Anomaly("transport_tuple_reused")))
            .count()
    }

    /// `frame` (from `tcp`) with its IPv4 header and TCP checksums set right (RFC 1071).
    fn checksummed(mut f: Vec<u8>) -> Vec<u8> {
        fn sum(bytes: &[u8]) -> u32 {
            bytes
                .chunks(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
                .sum()
        }
        fn fold(mut s: u32) -> u16 {
            while s > 0xffff {
                s = (s & 0xffff) + (s >> 16);
            }
            !(s as u16)
        }
        let c = fold(sum(&f[..20]));
        f[10..12].copy_from_slice(&c.to_be_bytes());
        let tcp_len = (f.len() - 20) as u32;
        let pseudo = sum(&f[12..20]) + 6 + tcp_len;
        let c = fold(pseudo + sum(&f[20..]));
        f[36..38].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn segments_with_bad_checksums_are_not_read_once_a_direction_showed_good_ones() {
        let benign = tls::tests::records(&tls::tests::client_hello("www.example.org", 0), 16384);
        let vendor =
            tls::tests::records(&tls::tests::client_hello("s05.upd.kaspersky.com", 0), 16384);
        let frames = [
            (1, checksummed(tcp(false, 1000, SYN, b""))),
            (1, checksummed(tcp(true, 5000, SYNACK, b""))),
            // The insertion: a benign hello at the real one's sequence number, bad checksum,
            // and a bad-checksum RST that would end the inspection.
            (2, tcp(false, 1001, ACK, &benign)),
            (2, tcp(false, 1001, 0x14, b"")),
            (3, checksummed(tcp(false, 1001, ACK, &vendor))),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["s05.upd.kaspersky.com"]);
        let bad = got
            .iter()
            .filter(|e| matches!(e, Extracted::Anomaly("transport_checksum_bad")))
            .count();
        assert_eq!(bad, 2);
        // A capture from a host with checksum offload: its own segments never carry a right
        // checksum, and are read all the same (every `tcp` frame has a zero checksum).
        let frames = [
            (1, tcp(false, 1000, SYN, b"")),
            (1, checksummed(tcp(true, 5000, SYNACK, b""))),
            (2, tcp(false, 1001, ACK, &vendor)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["s05.upd.kaspersky.com"]);
    }

    #[test]
    fn a_mid_stream_request_seen_from_one_side_is_read_after_a_quiet_second() {
        let mut ex = Extractor::new(ExtractorLimits::default());
        let mut got = Vec::new();
        let req = b"GET / HTTP/1.1\r\nHost: dnl-01.geo.kaspersky.com\r\n\r\n";
        let mut feed = |ex: &mut Extractor, f: Vec<u8>, t: i64| {
            let pkt = decode(LinkType::RawIp, &f).expect("decodes");
            ex.process(Timestamp::from_parts(t, 0), &pkt, &mut |e| got.push(e));
        };
        feed(&mut ex, tcp(false, 5000, ACK, req), 1);
        // Another flow's packet, later: the sweep settles the quiet window.
        let mut other = tcp(false, 1, SYN, b"");
        other[20..22].copy_from_slice(&40001u16.to_be_bytes());
        feed(&mut ex, other, 7);
        assert_eq!(
            names(&got),
            [(NameKind::HttpHost, "dnl-01.geo.kaspersky.com".to_string())]
        );
    }

    #[test]
    fn a_syn_with_a_new_isn_on_a_reused_tuple_starts_a_fresh_flow() {
        let benign = tls::tests::records(&tls::tests::client_hello("www.example.org", 0), 16384);
        let vendor =
            tls::tests::records(&tls::tests::client_hello("s05.upd.kaspersky.com", 0), 16384);
        let end = 1001 + benign.len() as u32;
        let first = |t: u32| {
            vec![
                (t, tcp(false, 1000, SYN, b"")),
                (t, tcp(true, 5000, SYNACK, b"")),
                (t + 1, tcp(false, 1001, ACK, &benign)),
            ]
        };
        let second = |t: u32| {
            vec![
                (t, tcp(false, 90_000, SYN, b"")),
                (t, tcp(true, 70_000, SYNACK, b"")),
                (t + 1, tcp(false, 90_001, ACK, &vendor)),
            ]
        };
        // After the first connection closed (FIN), one second later.
        let mut frames = first(1);
        frames.push((3, tcp(false, end, FIN, b"")));
        frames.extend(second(4));
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(
            tls_names(&got),
            ["www.example.org", "s05.upd.kaspersky.com"]
        );
        assert_eq!(reused(&got), 1);
        // After a lone SYN that never got an answer.
        let frames = [vec![(1, tcp(false, 1000, SYN, b""))], second(2)].concat();
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["s05.upd.kaspersky.com"]);
        assert_eq!(reused(&got), 1);
        // After a half-open flow with partial data, 300 s earlier (stale, not yet expired).
        let frames = [
            vec![
                (1, tcp(false, 1000, SYN, b"")),
                (1, tcp(true, 5000, SYNACK, b"")),
                (2, tcp(false, 1001, ACK, &benign[..20])),
            ],
            second(302),
        ]
        .concat();
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["s05.upd.kaspersky.com"]);
        assert_eq!(reused(&got), 1);
    }

    #[test]
    fn a_retransmitted_or_stray_syn_does_not_take_over_a_live_connection() {
        let vendor =
            tls::tests::records(&tls::tests::client_hello("s05.upd.kaspersky.com", 0), 16384);
        let (head, tail) = vendor.split_at(vendor.len() / 2);
        let frames = [
            (1, tcp(false, 1000, SYN, b"")),
            (2, tcp(false, 1000, SYN, b"")), // the SYN again: same ISN
            (2, tcp(true, 5000, SYNACK, b"")),
            (3, tcp(false, 1001, ACK, head)),
            (4, tcp(false, 424_242, SYN, b"")), // another ISN into an answered, live flow
            (5, tcp(false, 1001 + head.len() as u32, ACK, tail)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["s05.upd.kaspersky.com"]);
        assert_eq!(reused(&got), 0);
    }

    #[test]
    fn http_requests_on_one_connection_and_starttls_style_tls_later() {
        let mut ex = Extractor::new(ExtractorLimits::default());
        let got = collect(
            &mut ex,
            &[
                (1, tcp(false, 0, SYN, b"")),
                (
                    1,
                    tcp(
                        false,
                        1,
                        ACK,
                        b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
                    ),
                ),
                (
                    1,
                    tcp(
                        false,
                        52,
                        ACK,
                        b"CONNECT b.example:443 HTTP/1.1\r\nHost: b.example:443\r\n\r\n",
                    ),
                ),
            ],
        );
        assert!(names(&got).contains(&(NameKind::HttpConnect, "b.example".into())));
        assert!(names(&got).contains(&(NameKind::HttpHost, "a.example".into())));

        let hello = tls::tests::records(&tls::tests::client_hello("ftp.example", 0), 16384);
        let mut ex = Extractor::new(ExtractorLimits::default());
        let got = collect(
            &mut ex,
            &[
                (1, tcp(false, 0, SYN, b"")),
                (1, tcp(false, 1, ACK, b"AUTH TLS\r\n")),
                (2, tcp(false, 11, ACK, &hello)),
            ],
        );
        assert_eq!(
            names(&got),
            vec![(NameKind::TlsSni, "ftp.example".to_string())]
        );
    }

    #[test]
    fn reassembly_cap_is_counted_once_per_flow() {
        let mut ex = Extractor::new(ExtractorLimits {
            stream_cap: 64,
            ..ExtractorLimits::default()
        });
        let mut head = b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Pad: ".to_vec();
        head.extend_from_slice(&[b'a'; 200]);
        let got = collect(
            &mut ex,
            &[
                (1, tcp(false, 0, SYN, b"")),
                (1, tcp(false, 1, ACK, &head)),
                (2, tcp(false, 300, ACK, b"more")),
            ],
        );
        let caps = got
            .iter()
            .filter(|e| matches!(e, Extracted::Anomaly("reassembly_cap")))
            .count();
        assert_eq!(caps, 1, "{got:?}");
    }

    #[test]
    fn unnamed_flow_is_reported_once() {
        let mut ex = Extractor::new(ExtractorLimits::default());
        let got = collect(
            &mut ex,
            &[
                (1, tcp(false, 0, SYN, b"")),
                (1, tcp(false, 1, ACK, &[0u8; 5000])),
            ],
        );
        let unnamed = got
            .iter()
            .filter(|e| matches!(e, Extracted::Unnamed { .. }))
            .count();
        assert_eq!(unnamed, 1);
        assert_eq!(
            got.iter()
                .filter(|e| matches!(e, Extracted::FlowStart { .. }))
                .count(),
            1
        );
    }

    #[test]
    fn table_is_bounded_and_evictions_counted() {
        let mut ex = Extractor::new(ExtractorLimits {
            max_flows: 100,
            ..ExtractorLimits::default()
        });
        let mut got = Vec::new();
        for i in 0..1000u32 {
            let f = tcp(false, i, SYN, b"");
            let mut f = f;
            f[20..22].copy_from_slice(&((i % 60000) as u16 + 1024).to_be_bytes());
            let pkt = decode(LinkType::RawIp, &f).expect("decodes");
            ex.process(Timestamp::from_parts(1, i), &pkt, &mut |e| got.push(e));
            assert!(ex.active_flows() <= 100);
        }
        assert!(
            got.iter()
                .filter(|e| matches!(e, Extracted::Evicted))
                .count()
                >= 900
        );
    }

    #[test]
    fn stalled_streams_give_way_to_the_reassembly_budget_and_new_hellos_are_still_read() {
        let budget = 256 * 1024;
        let mut ex = Extractor::new(ExtractorLimits {
            reassembly_budget: budget,
            ..ExtractorLimits::default()
        });
        let hello = tls::tests::records(
            &tls::tests::client_hello("s05.upd.kaspersky.com", 900),
            16384,
        );
        let (head, tail) = hello.split_at(700);
        let on_port = |mut f: Vec<u8>, port: u16, reverse: bool| {
            let at = if reverse { 22 } else { 20 };
            f[at..at + 2].copy_from_slice(&port.to_be_bytes());
            f
        };
        let mut got = Vec::new();
        let feed = |ex: &mut Extractor, got: &mut Vec<Extracted>, f: Vec<u8>, t: u32| {
            let pkt = decode(LinkType::RawIp, &f).expect("decodes");
            ex.process(Timestamp::from_parts(1, t), &pkt, &mut |e| got.push(e));
        };
        // 2,000 connections that send the first part of a hello and a parked segment far
        // ahead, and never the rest: without a budget about 2,000 x 16 KiB would be held.
        let stalled = 2_000u16;
        for i in 0..stalled {
            let port = 20_000 + i;
            feed(
                &mut ex,
                &mut got,
                on_port(tcp(false, 99, SYN, b""), port, false),
                1,
            );
            feed(
                &mut ex,
                &mut got,
                on_port(tcp(false, 100, ACK, head), port, false),
                2,
            );
            feed(
                &mut ex,
                &mut got,
                on_port(tcp(false, 9_000, ACK, &[0u8; 8_000]), port, false),
                3,
            );
            assert!(
                ex.buffered_bytes() <= budget + 64 * 1024,
                "{} bytes held after {i} stalled streams",
                ex.buffered_bytes()
            );
        }
        let shed = got
            .iter()
            .filter(|e| matches!(e, Extracted::Anomaly("reassembly_budget")))
            .count();
        assert!(
            shed >= usize::from(stalled) - 100,
            "{shed} streams gave way"
        );
        assert_eq!(
            ex.buffered_bytes(),
            ex.flows.values().map(Flow::held).sum::<usize>(),
            "the account matches what the flows hold"
        );
        // A new connection's hello, split in two, is still read.
        feed(
            &mut ex,
            &mut got,
            on_port(tcp(false, 99, SYN, b""), 50_000, false),
            4,
        );
        feed(
            &mut ex,
            &mut got,
            on_port(tcp(false, 100, ACK, head), 50_000, false),
            5,
        );
        feed(
            &mut ex,
            &mut got,
            on_port(tcp(false, 800, ACK, tail), 50_000, false),
            6,
        );
        assert!(names(&got).contains(&(NameKind::TlsSni, "s05.upd.kaspersky.com".to_string())));
        ex.finish(&mut |_| {});
        assert_eq!(ex.buffered_bytes(), 0);
    }

    /// IPv4/UDP frame (checksum zero: not checked).
    fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        let total = (20 + 8 + payload.len()) as u16;
        f[2..4].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    fn identities(got: &[Extracted]) -> Vec<Identity> {
        got.iter()
            .filter_map(|e| match e {
                Extracted::Identity(i) => Some(i.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn dhcp_request_and_ack_become_identities_and_keep_no_flow() {
        let frames = [
            (
                1,
                udp([0; 4], [255; 4], 68, 67, &dhcp::tests::dhclient_request()),
            ),
            (
                1,
                udp(
                    [10, 10, 3, 1],
                    [10, 10, 3, 101],
                    67,
                    68,
                    &dhcp::tests::dnsmasq_ack(),
                ),
            ),
            (
                2,
                udp([0; 4], [255; 4], 68, 67, &dhcp::tests::udhcpc_request()),
            ),
            // Not DHCP on the DHCP ports: counted, not a crash.
            (3, udp([0; 4], [255; 4], 68, 67, b"hello")),
        ];
        let mut ex = Extractor::new(ExtractorLimits::default());
        let got = collect(&mut ex, &frames);
        let ids = identities(&got);
        let row = |i: &Identity| {
            (
                i.ip.to_string(),
                i.mac.map(|m| m.to_string()),
                i.hostname.clone(),
                i.client_id.clone(),
                i.source,
            )
        };
        assert_eq!(
            ids.iter().map(row).collect::<Vec<_>>(),
            [
                (
                    "10.10.3.101".into(),
                    Some("02:00:5e:10:03:11".into()),
                    Some("ws-alice".into()),
                    None,
                    IdentitySource::DhcpRequest
                ),
                (
                    "10.10.3.101".into(),
                    Some("02:00:5e:10:03:11".into()),
                    Some("ws-alice".into()),
                    None,
                    IdentitySource::DhcpAck
                ),
                (
                    "10.10.3.102".into(),
                    Some("02:00:5e:10:03:12".into()),
                    Some("ws-bob".into()),
                    Some("01:02:00:5e:10:03:12".into()),
                    IdentitySource::DhcpRequest
                ),
            ]
        );
        assert!(got
            .iter()
            .any(|e| matches!(e, Extracted::Anomaly("dhcp_too_short"))));
        assert_eq!(ex.active_flows(), 0);
        assert!(names(&got).is_empty());
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

    /// IPv6/UDP frame (checksum zero: not checked).
    fn udp6(src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let (src, dst): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
            (src.parse().expect("v6"), dst.parse().expect("v6"));
        let len = (8 + payload.len()) as u16;
        let mut f = vec![0x60, 0, 0, 0];
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(&[17, 64]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn dhcpv6_request_and_reply_become_identities() {
        let (client, server) = ("fe80::5eff:fe10:313", "fe80::5eff:fe10:301");
        let frames = [
            (
                1,
                udp6(
                    client,
                    "ff02::1:2",
                    546,
                    547,
                    &dhcp::tests::dhclient6_request(),
                ),
            ),
            (
                1,
                udp6(server, client, 547, 546, &dhcp::tests::dnsmasq6_reply()),
            ),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        let ids = identities(&got);
        let sources: Vec<IdentitySource> = ids.iter().map(|i| i.source).collect();
        assert_eq!(
            sources,
            [IdentitySource::Dhcpv6Request, IdentitySource::Dhcpv6Reply]
        );
        for i in &ids {
            assert_eq!(i.ip.to_string(), "fd00:10::3:103");
            assert_eq!(
                i.mac,
                Some(crate::mac::MacAddr([0x02, 0x00, 0x5e, 0x10, 0x03, 0x13]))
            );
            assert_eq!(i.hostname.as_deref(), Some("ws-carol.lab"));
            assert_eq!(
                i.client_id.as_deref(),
                Some("00:03:00:01:02:00:5e:10:03:13")
            );
        }
    }

    fn anomaly_count(got: &[Extracted], reason: &str) -> usize {
        got.iter()
            .filter(|e| matches!(e, Extracted::Anomaly(r) if *r == reason))
            .count()
    }

    /// A frame as a capture with snap length `keep` (bytes of IP packet) stores it.
    fn snap(frame: Vec<u8>, keep: usize) -> Vec<u8> {
        frame[..keep.min(frame.len())].to_vec()
    }

    #[test]
    fn keep_alive_is_followed_across_bodies_that_span_segments() {
        // python http.client: a 5,000-byte POST in four segments, a chunked PUT, then a
        // GET to a vendor host on the same connection.
        let mut frames = vec![(1, tcp(false, 0, SYN, b""))];
        let mut seq = 1u32;
        let mut send = |frames: &mut Vec<(u32, Vec<u8>)>, bytes: &[u8]| {
            for chunk in bytes.chunks(1448) {
                frames.push((1, tcp(false, seq, ACK, chunk)));
                seq += chunk.len() as u32;
            }
        };
        let mut post =
            b"POST /upload HTTP/1.1\r\nHost: www.example.org\r\nContent-Length: 5000\r\n\r\n"
                .to_vec();
        post.extend_from_slice(&[b'G'; 5000]);
        send(&mut frames, &post);
        let mut put =
            b"PUT /c HTTP/1.1\r\nHost: www.example.org\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        for _ in 0..4 {
            put.extend_from_slice(b"5dc\r\n");
            put.extend_from_slice(&[b'G'; 1500]);
            put.extend_from_slice(b"\r\n");
        }
        put.extend_from_slice(b"0\r\n\r\n");
        send(&mut frames, &put);
        send(
            &mut frames,
            b"GET /index/u0607g.xml HTTP/1.1\r\nHost: dnl-01.geo.kaspersky.com\r\n\r\n",
        );
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(
            names(&got),
            [
                (NameKind::HttpHost, "www.example.org".to_string()),
                (NameKind::HttpHost, "www.example.org".to_string()),
                (NameKind::HttpHost, "dnl-01.geo.kaspersky.com".to_string()),
            ]
        );
        // With a limit of two requests, the third is not read, and that is counted.
        let limits = ExtractorLimits {
            http_max_requests: 2,
            ..ExtractorLimits::default()
        };
        let got = collect(&mut Extractor::new(limits), &frames);
        assert_eq!(names(&got).len(), 2);
        assert_eq!(anomaly_count(&got, "http_max_requests"), 1);
    }

    #[test]
    fn a_request_with_seventy_headers_still_names_its_host() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..70 {
            head.extend_from_slice(format!("X-Pad-{i}: {i}\r\n").as_bytes());
        }
        head.extend_from_slice(b"Host: dnl-01.geo.kaspersky.com\r\n\r\n");
        let got = collect(
            &mut Extractor::new(ExtractorLimits::default()),
            &[(1, tcp(false, 0, SYN, b"")), (1, tcp(false, 1, ACK, &head))],
        );
        assert_eq!(
            names(&got),
            [(NameKind::HttpHost, "dnl-01.geo.kaspersky.com".to_string())]
        );
        assert_eq!(anomaly_count(&got, "http_too_many_headers"), 1);
    }

    #[test]
    fn a_head_cut_by_the_snap_length_is_read_and_the_next_request_still_found() {
        // Snap length 128 on Ethernet keeps 114 bytes of IP: 74 of each request's 120+.
        let first = b"GET / HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let second = b"GET /x HTTP/1.1\r\nHost: dnl-01.geo.kaspersky.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
        // 16 + 28 bytes of lines, then `Host: dnl-02.geo.kaspersky.com` fills the 74 bytes kept.
        let decoy = b"GET / HTTP/1.1\r\nUser-Agent: curl/7.88.1 ab\r\nHost: dnl-02.geo.kaspersky.com.example.net\r\n\r\n";
        let (s2, s3) = (
            1 + first.len() as u32,
            1 + (first.len() + second.len()) as u32,
        );
        let got = collect(
            &mut Extractor::new(ExtractorLimits::default()),
            &[
                (1, tcp(false, 0, SYN, b"")),
                (1, snap(tcp(false, 1, ACK, first), 114)),
                (1, snap(tcp(false, s2, ACK, second), 114)),
                (1, snap(tcp(false, s3, ACK, decoy), 114)),
            ],
        );
        assert_eq!(
            names(&got),
            [
                (NameKind::HttpHost, "www.example.org".to_string()),
                (NameKind::HttpHost, "dnl-01.geo.kaspersky.com".to_string()),
            ]
        );
        // The decoy's Host line is cut after `.com`: never read.
        assert_eq!(anomaly_count(&got, "http_head_cut"), 3);
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

    #[test]
    fn a_client_hello_cut_by_the_snap_length_is_counted_not_read() {
        let hello = tls::tests::records(
            &tls::tests::client_hello("dnl-01.geo.kaspersky.com", 0),
            16384,
        );
        let got = collect(
            &mut Extractor::new(ExtractorLimits::default()),
            &[
                (1, tcp(false, 0, SYN, b"")),
                (1, snap(tcp(false, 1, ACK, &hello), 40 + hello.len() - 10)),
            ],
        );
        assert_eq!(names(&got), []);
        assert_eq!(anomaly_count(&got, "tls_client_hello_cut"), 1);
    }

    #[test]
    fn a_cut_segment_ends_the_mid_stream_window_and_later_heads_are_still_read() {
        let first = b"GET / HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let second = b"GET /x HTTP/1.1\r\nHost: dnl-01.geo.kaspersky.com\r\n\r\n";
        let base = 1000u32;
        let vendor = (NameKind::HttpHost, "dnl-01.geo.kaspersky.com".to_string());
        // No SYN: the first segment seen is cut by the snap length.
        let got = collect(
            &mut Extractor::new(ExtractorLimits::default()),
            &[
                (1, snap(tcp(false, base, ACK, first), 114)),
                (1, tcp(false, base + first.len() as u32, ACK, second)),
            ],
        );
        assert!(names(&got).contains(&vendor), "{:?}", names(&got));
        // Eight cut heads in a row, then the vendor request: every head is counted cut (none
        // vanishes with a parked segment) and the last request is still read.
        let mut frames = Vec::new();
        for i in 0..8u32 {
            frames.push((
                1,
                snap(tcp(false, base + i * first.len() as u32, ACK, first), 114),
            ));
        }
        frames.push((1, tcp(false, base + 8 * first.len() as u32, ACK, second)));
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert!(names(&got).contains(&vendor), "{:?}", names(&got));
        assert_eq!(anomaly_count(&got, "http_head_cut"), 8);
    }
}
