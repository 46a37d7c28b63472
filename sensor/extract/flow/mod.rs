//! The flow table and the dispatch of a flow's bytes to the protocol that reads them.
//!
//! A flow is inspected until its names are known or its byte budget is spent; then its
//! buffers are freed and later packets only refresh its timestamp (bypass). The table is
//! bounded: idle flows expire, and when it is full the longest-idle ones are evicted and
//! counted.
//!
//! Each flow is one record: its transport side (`Conn`: ends, reassembly buffers, what it
//! named) and the state of the protocol it carries (`App`), as Suricata keeps them. Each
//! protocol's state and its one inspect function live in their own file: `dns` (DNS over
//! UDP and TCP, the worker's transaction table), `tls` (client hello, server flight),
//! `http` (requests, bodies passed over), `quic` (Initial packets), `dhcp` (no flow state:
//! identities). `tcp` follows connections (client side, checksums, tuple reuse, reassembly)
//! and hands in-order bytes to `inspect`; this file probes what a stream carries.
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

use crate::extract::anomaly::FlowAnomaly;
mod dhcp;
mod dns;
mod http;
mod quic;
mod tcp;
#[cfg(test)]
mod testutil;
mod tls;

pub use http::HTTP_MAX_REQUESTS;

use super::dedup::{Deduplicator, Fingerprint, Fingerprinter};
use super::stream::{Pushed, StreamBuf};
use super::{names, Detail, Extracted, FlowId, NameEvent, NameKind};
use crate::decode::{is_dns_port, Packet, Proto, Transport, UdpDatagram};
use crate::mac::MacAddr;
use crate::time::Timestamp;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Client bytes looked at before deciding a stream carries nothing we read.
const PROBE_BUDGET: usize = 4096;
/// Segment starts tried as possible message starts (STARTTLS, RDP-then-TLS, …).
const PROBE_SEGMENTS: usize = 12;
/// Client datagrams of an unknown UDP flow looked at before it is bypassed.
const UDP_PROBE_DATAGRAMS: u64 = 4;
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
            max_flows: 8_192,
            stream_cap: 64 * 1024,
            inspect_budget: 256 * 1024,
            tcp_idle_secs: 600,
            udp_idle_secs: 120,
            max_dns_transactions: 16_384,
            reassembly_budget: 8 << 20,
            http_max_requests: HTTP_MAX_REQUESTS,
            verify_checksums: true,
        }
    }
}

/// An address and port.
type Endpoint = (IpAddr, u16);

/// A flow's place in the table: its two ends in order, so both directions find it.
///
/// Held as words, not as `IpAddr`s: ordering the two ends, hashing the key and comparing it
/// is done for every packet, and the derived versions over two address enums were a dozen
/// hasher writes and branches on the address family where this is three writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    /// The lower end's address (`endpoint_word`).
    lo: u128,
    hi: u128,
    /// The lower end's port and family, the higher end's, and the protocol.
    rest: u64,
}

/// An endpoint as one ordered value: the address's bits above, its family and port below.
/// An IPv4 address and the IPv6 address with the same low bits differ in the family bit.
/// Exact, as a table key must be; `pipeline::endpoint_key`, the flow hash's input, folds an
/// IPv6 address into 64 bits instead.
fn endpoint_word((ip, port): Endpoint) -> (u128, u32) {
    match ip {
        IpAddr::V4(v4) => (u128::from(v4.to_bits()), u32::from(port)),
        IpAddr::V6(v6) => (v6.to_bits(), 1 << 16 | u32::from(port)),
    }
}

impl FlowKey {
    fn new(proto: Proto, a: Endpoint, b: Endpoint) -> FlowKey {
        let (a, b) = (endpoint_word(a), endpoint_word(b));
        let ((lo, lo_rest), (hi, hi_rest)) = if a <= b { (a, b) } else { (b, a) };
        let proto = match proto {
            Proto::Tcp => 0,
            Proto::Udp => 1,
        };
        FlowKey {
            lo,
            hi,
            rest: u64::from(lo_rest) << 32 | u64::from(hi_rest) << 8 | proto,
        }
    }
}

/// Bytes a flow held in its buffers before and after a segment, and whether it began
/// buffering with it (its flag is set; `account` queues it).
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    before: usize,
    after: usize,
    started_buffering: bool,
    /// The flow's `Conn::opened`, for the queue entry `account` makes.
    opened: u64,
}

/// What a flow carries, with that protocol's state: the one per-protocol record of a flow.
#[derive(Debug)]
enum App {
    /// Not yet known what the client speaks.
    Probe,
    Tls(tls::TlsState),
    Http(http::HttpState),
    /// DNS over TCP, both directions (its transactions are the worker's: `dns::Transactions`).
    Dns,
    /// QUIC: its connection IDs, and its Initial packets until the ClientHello is read.
    Quic(Box<quic::QuicState>),
    /// Nothing more to read: bypassed.
    Done,
}

impl App {
    /// What a new connection is read as first: DNS by the server's port (a client may bind a
    /// DNS port as its own: TLS from port 53 to 443 is TLS), else what the client's first
    /// bytes look like.
    fn for_connection(id: &FlowId) -> App {
        if id.proto == Proto::Tcp && is_dns_port(id.server.port()) {
            App::Dns
        } else {
            App::Probe
        }
    }

    /// Whether the flow is still read (not bypassed).
    fn inspecting(&self) -> bool {
        match self {
            App::Done => false,
            App::Quic(quic) => quic.reading(),
            _ => true,
        }
    }

    /// Whether the protocol reads what the client (or the server) sends. HTTP reads only
    /// requests: the server's bytes are dropped as they come (`HttpState::inspect`).
    fn reads(&self, from_client: bool) -> bool {
        match self {
            App::Http(_) => from_client,
            _ => true,
        }
    }

    /// Bypasses the flow: what the protocol held for reading is freed. A QUIC flow keeps
    /// its connection IDs, which tell a new connection on its 4-tuple from its own packets.
    fn finish(&mut self) {
        match self {
            App::Quic(quic) => quic.finish(),
            _ => *self = App::Done,
        }
    }

    /// Bytes the protocol holds itself, outside the flow's stream buffers (QUIC's CRYPTO
    /// stream).
    fn held(&self) -> usize {
        match self {
            App::Quic(quic) => quic.held(),
            _ => 0,
        }
    }

    /// Bytes the protocol's own reassembly (QUIC's CRYPTO stream) had to shed.
    fn dropped_bytes(&self) -> u64 {
        match self {
            App::Quic(quic) => quic.dropped_bytes(),
            _ => 0,
        }
    }
}

/// What a protocol's inspect function tells the dispatcher to do next.
#[derive(Debug)]
enum Step {
    /// All that can be read now is read: wait for more bytes.
    Wait,
    /// The state moved on, and the buffer may hold more to read now.
    Again,
    /// From here the flow carries another protocol (what the probe found, the tunnel after
    /// a CONNECT): read on with it.
    Become(App),
    /// Not the protocol it looked like: probe again, from the client's next bytes.
    Reprobe,
    /// Nothing more to read on this flow: bypass it.
    Finish,
}

/// The transport side of a flow, which every protocol's inspect function reads and
/// writes: its two ends, its reassembly buffers, whether it named anything.
#[derive(Debug)]
struct Conn {
    id: FlowId,
    /// Which of the worker's flows this is, counted as they open: a later flow on the same
    /// 4-tuple has a larger number, so an entry of the reassembly queue left by a flow that
    /// closed is not taken for the one that replaced it.
    opened: u64,
    last_seen: Timestamp,
    client_mac: Option<MacAddr>,
    to_server: StreamBuf,
    to_client: StreamBuf,
    /// Client bytes inspected (UDP: client datagrams probed).
    client_bytes: u64,
    named: bool,
    unnamed_reported: bool,
    closing: bool,
    drops_reported: bool,
    /// Queued in `Extractor::buffering` (holds reassembly bytes the budget counts).
    buffering: bool,
    /// TCP: the client's ISN, when its SYN was seen.
    client_isn: Option<u32>,
    /// TCP: a packet from the server was seen (the connection got an answer).
    server_seen: bool,
    /// TCP: a segment with right checksums was seen, to the server and to the client.
    checksums_good: [bool; 2],
    /// TCP: what the SYN to the server and the SYN-ACK to the client showed of their path.
    syn_marks: [Option<tcp::SynMark>; 2],
    /// TCP: the latest timestamp value the server took from the client, and the client from
    /// the server (PAWS, see `tcp::check_timestamp`).
    ts_recent: [Option<u32>; 2],
    /// TCP: what the server sent, for judging the client's acknowledgment numbers.
    server_sent: tcp::ServerSent,
    /// TCP: a client segment held back for its acknowledgment number (`tcp::HeldBack`).
    held_back: Option<Box<tcp::HeldBack>>,
    /// TCP: client data read before any answer of the server's, until its SYN-ACK judges it.
    read_unjudged: Option<tcp::ReadUnjudged>,
}

impl Conn {
    fn new(
        id: FlowId,
        opened: u64,
        ts: Timestamp,
        client_mac: Option<MacAddr>,
        cap: usize,
    ) -> Conn {
        Conn {
            id,
            opened,
            last_seen: ts,
            client_mac,
            to_server: StreamBuf::new(cap),
            to_client: StreamBuf::new(cap),
            client_bytes: 0,
            named: false,
            unnamed_reported: false,
            closing: false,
            drops_reported: false,
            buffering: false,
            client_isn: None,
            server_seen: false,
            checksums_good: [false; 2],
            syn_marks: [None; 2],
            ts_recent: [None; 2],
            server_sent: tcp::ServerSent::Unknown,
            held_back: None,
            read_unjudged: None,
        }
    }

    #[inline]
    fn held(&self) -> usize {
        let held_back = self.held_back.as_ref().map_or(0, |h| h.len());
        self.to_server.held() + self.to_client.held() + held_back
    }

    /// The buffer of the bytes one side sends.
    fn sent_by(&mut self, client: bool) -> &mut StreamBuf {
        if client {
            &mut self.to_server
        } else {
            &mut self.to_client
        }
    }

    fn emit_name(
        &mut self,
        ts: Timestamp,
        kind: NameKind,
        raw: &[u8],
        detail: Detail,
        out: &mut impl FnMut(Extracted),
    ) {
        if let Some(value) = names::normalize(raw) {
            self.named = true;
            out(Extracted::Name(NameEvent {
                ts,
                kind,
                value: value.into(),
                flow: self.id,
                client_mac: self.client_mac,
                detail,
            }));
        }
    }

    fn report_unnamed(&mut self, out: &mut impl FnMut(Extracted)) {
        if !self.named && !self.unnamed_reported {
            self.unnamed_reported = true;
            out(Extracted::Unnamed {
                ts: self.last_seen,
                flow: self.id,
            });
        }
    }
}

/// One flow of the table.
#[derive(Debug)]
struct Flow {
    conn: Conn,
    app: App,
}

impl Flow {
    #[inline]
    fn held(&self) -> usize {
        self.conn.held() + self.app.held()
    }

    /// What the flow holds now against `before`, marking it buffering when it just began to
    /// (`Extractor::account` queues it).
    #[inline]
    fn held_since(&mut self, before: usize) -> Held {
        let after = self.held();
        let started_buffering = after > 0 && !self.conn.buffering;
        self.conn.buffering |= started_buffering;
        Held {
            before,
            after,
            started_buffering,
            opened: self.conn.opened,
        }
    }
}

/// One worker's extraction state.
pub struct Extractor {
    limits: ExtractorLimits,
    flows: HashMap<FlowKey, Flow, ahash::RandomState>,
    dns_txns: dns::Transactions,
    last_sweep: Timestamp,
    /// Bytes held by every flow's reassembly buffers.
    buffered: usize,
    /// Flows holding reassembly bytes (key and `Conn::opened`), in the order they started:
    /// under a flood of stalled streams the oldest give way, so new connections are still
    /// read. A flow that leaves the table leaves its entry behind, skipped when reached.
    buffering: std::collections::VecDeque<(FlowKey, u64)>,
    /// Flows opened so far (the next `Conn::opened`).
    opened: u64,
    /// SPAN duplicates of the last few milliseconds.
    dedup: Deduplicator,
    /// Fingerprints the packets handed to `process` (the pipeline's come fingerprinted).
    fingerprinter: Fingerprinter,
    /// `make_room`'s list of the flows' idle times, kept between calls: 64 KiB at the default
    /// table size, which glibc's malloc took from the top of its heap and, freed, made it
    /// consolidate every free chunk (a freed chunk of 64 KiB or more does that).
    ages: Vec<Timestamp>,
}

/// A DNS message as parsed, or why it could not be.
pub type DnsParse = Result<crate::extract::dns::Message, crate::extract::dns::DnsError>;

/// What is read of a packet before anything is extracted from it (by its worker, or with one
/// worker by the capture thread, `pipeline::Dispatcher::reads_dns`): the duplicate
/// fingerprint, and the DNS message of a UDP datagram on a DNS port (the resolver roles read
/// it first, `Detector::note_dns_packet`; parsed once, the extraction does not parse it
/// again).
#[derive(Debug, Default)]
pub struct Prepared {
    pub fingerprint: Option<Fingerprint>,
    pub dns: Option<Box<DnsParse>>,
}

/// Boxes of parsed DNS messages kept for reuse by the thread that allocated them, at most
/// this many: one allocation and free fewer per DNS message. A replay has at most ten batches
/// of 256 packets in flight per worker; in the enterprise mix (DNS a quarter of the packets)
/// that is about 600 DNS messages, so these are enough to reuse every box there.
pub const SPARE_DNS_BOXES: usize = 1024;

/// Room for answers a spare box keeps (see `SpareDnsBoxes::give_back`): what a vector grows to
/// first, enough for nearly every response.
const SPARE_ANSWER_CAPACITY: usize = 4;

/// Spare message boxes (see `Prepared::recycle`). The boxes, not the messages, are what is
/// reused, hence a vector of boxes.
#[derive(Default)]
#[allow(clippy::vec_box)]
pub struct SpareDnsBoxes(Vec<Box<DnsParse>>);

impl Prepared {
    /// `spare`: boxes of messages already read, reused for this one's (see `recycle`).
    pub fn read(
        pkt: &Packet<'_>,
        fingerprinter: &Fingerprinter,
        spare: &mut SpareDnsBoxes,
    ) -> Prepared {
        let dns = match &pkt.transport {
            Transport::Udp(u) if is_dns_port(u.dst_port) || is_dns_port(u.src_port) => {
                let mut reused = spare.0.pop();
                let answers = match reused.as_deref_mut() {
                    Some(Ok(m)) => std::mem::take(&mut m.answers),
                    _ => Vec::new(),
                };
                let parsed = super::dns::parse_message_into(u.payload, u.cut > 0, answers);
                Some(match reused {
                    Some(mut reused) => {
                        *reused = parsed;
                        reused
                    }
                    None => Box::new(parsed),
                })
            }
            _ => None,
        };
        Prepared {
            fingerprint: fingerprinter.of(pkt),
            dns,
        }
    }

    /// Gives back this packet's message box for a later `read` (see `SpareDnsBoxes::give_back`).
    pub fn recycle(&mut self, spare: &mut SpareDnsBoxes) {
        if let Some(boxed) = self.dns.take() {
            spare.give_back(boxed);
        }
    }
}

impl SpareDnsBoxes {
    /// Keeps a message box for a later `Prepared::read` (up to `SPARE_DNS_BOXES`). The
    /// message's names are freed now; the box keeps the message's vector of answers, emptied,
    /// when it holds at most `SPARE_ANSWER_CAPACITY` (the next message read into the box
    /// reuses it: an allocation and a free fewer per response). So the spares cost at most
    /// `SPARE_DNS_BOXES` times a box and four answers' room (88 + 4 x 112 bytes: about
    /// 540 KiB), whatever the messages.
    pub fn give_back(&mut self, mut boxed: Box<DnsParse>) {
        if self.0.len() < SPARE_DNS_BOXES {
            match boxed.as_mut() {
                Ok(m) if m.answers.capacity() <= SPARE_ANSWER_CAPACITY => {
                    m.answers.clear();
                    m.questions = Default::default();
                }
                _ => *boxed = Err(crate::extract::dns::DnsError::TooShort),
            }
            self.0.push(boxed);
        }
    }
}

impl Extractor {
    pub fn new(limits: ExtractorLimits) -> Self {
        Extractor {
            limits,
            flows: HashMap::default(),
            dns_txns: dns::Transactions::new(limits.max_dns_transactions),
            last_sweep: Timestamp::default(),
            buffered: 0,
            buffering: std::collections::VecDeque::new(),
            opened: 0,
            dedup: Deduplicator::default(),
            fingerprinter: Fingerprinter::default(),
            ages: Vec::new(),
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
        let prepared = Prepared::read(pkt, &self.fingerprinter, &mut SpareDnsBoxes::default());
        self.process_prepared(ts, pkt, &prepared, out);
    }

    /// [`process`](Self::process) for a packet already read in part ([`Prepared::read`]).
    /// Inlined into the worker's loop, its one caller on the packet path: the compiler's own
    /// choice there moves with unrelated changes, and a call costs the loop 50 instructions a
    /// packet (callgrind on the slice).
    #[inline(always)]
    pub fn process_prepared(
        &mut self,
        ts: Timestamp,
        pkt: &Packet<'_>,
        prepared: &Prepared,
        out: &mut impl FnMut(Extracted),
    ) {
        if self.dedup.seen(ts, prepared.fingerprint) {
            out(Extracted::Anomaly(FlowAnomaly::Duplicates.into()));
            return;
        }
        if ts.secs() >= self.last_sweep.secs() + 5 || ts < self.last_sweep {
            self.expire(ts, out);
            self.last_sweep = ts;
        }
        let taken = match &pkt.transport {
            Transport::Tcp(seg) => self.tcp(ts, pkt, seg, out),
            Transport::Udp(dgram) => {
                self.udp(ts, pkt, dgram, prepared.dns.as_deref(), out);
                true
            }
            Transport::Other { .. } => true,
        };
        // A segment refused as one its receiver never takes is no packet's first copy: the
        // real one may follow it with the same fingerprint (`dedup`'s module doc).
        if taken {
            self.dedup.record(ts, prepared.fingerprint);
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
            let idle = match flow.conn.id.proto {
                Proto::Tcp if flow.conn.closing => 10,
                Proto::Tcp => limits.tcp_idle_secs,
                Proto::Udp => limits.udp_idle_secs,
            };
            let keep = now < flow.conn.last_seen.saturating_add_secs(idle);
            if !keep {
                *buffered = buffered.saturating_sub(flow.held());
                retire(flow, txns, &limits, out);
                return keep;
            }
            if flow.conn.held_back.is_some() {
                // Client data the server never answered (a tap of the client's side).
                let before = flow.held();
                tcp::release_unanswered(flow, txns, &limits, Some(now), out);
                *buffered = (*buffered + flow.held()).saturating_sub(before);
            }
            if now
                >= flow
                    .conn
                    .last_seen
                    .saturating_add_secs(MIDSTREAM_WINDOW_SECS)
            {
                // A mid-stream window that went quiet (a one-direction tap sees no answer).
                let before = flow.held();
                settle_windows(flow, txns, &limits, out);
                *buffered = (*buffered + flow.held()).saturating_sub(before);
            }
            keep
        });
        self.dns_txns.expire(now, limits.udp_idle_secs);
    }

    /// Makes room for one more flow: evicts the longest-idle tenth of the table.
    fn make_room(&mut self, out: &mut impl FnMut(Extracted)) {
        let ages = &mut self.ages;
        ages.clear();
        ages.extend(self.flows.values().map(|f| f.conn.last_seen));
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
            let keep = flow.conn.last_seen > cutoff;
            if !keep {
                *buffered = buffered.saturating_sub(flow.held());
                retire(flow, txns, &limits, out);
                out(Extracted::Evicted);
            }
            keep
        });
    }

    /// Opens the flow on `key` (its callers found none there): makes room when the table is
    /// full, says the flow started, and puts it in with one probe.
    fn flow_entry(
        &mut self,
        key: FlowKey,
        ts: Timestamp,
        make_id: impl FnOnce() -> FlowId,
        client_mac: Option<MacAddr>,
        out: &mut impl FnMut(Extracted),
    ) {
        if self.flows.len() >= self.limits.max_flows {
            self.make_room(out);
        }
        let stream_cap = self.limits.stream_cap;
        if let std::collections::hash_map::Entry::Vacant(slot) = self.flows.entry(key) {
            let id = make_id();
            self.opened += 1;
            let app = App::for_connection(&id);
            out(Extracted::FlowStart {
                ts,
                flow: id,
                client_mac,
            });
            slot.insert(Flow {
                conn: Conn::new(id, self.opened, ts, client_mac, stream_cap),
                app,
            });
        }
    }

    /// Accounts for what a segment changed in `key`'s buffers, and when the worker's
    /// buffers together pass the budget, takes them from the flows that began buffering
    /// first (not `key`'s: the segment just read may be the one that completes a hello).
    fn account(&mut self, key: FlowKey, held: Held, out: &mut impl FnMut(Extracted)) {
        self.buffered = (self.buffered + held.after).saturating_sub(held.before);
        if held.started_buffering {
            self.buffering.push_back((key, held.opened));
        }
        while self.buffered > self.limits.reassembly_budget {
            let Some(oldest) = self.buffering.pop_front() else {
                break;
            };
            if oldest == (key, held.opened) {
                // The newest flow is the last to give way; if it alone is over budget,
                // its own per-flow cap bounds it.
                if self.buffering.is_empty() {
                    self.buffering.push_back(oldest);
                    break;
                }
                self.buffering.push_back(oldest);
                continue;
            }
            let Some(victim) = self
                .flows
                .get_mut(&oldest.0)
                .filter(|f| f.conn.opened == oldest.1)
            else {
                continue;
            };
            victim.conn.buffering = false;
            let held = victim.held();
            if held == 0 {
                continue;
            }
            self.buffered = self.buffered.saturating_sub(held);
            out(Extracted::Anomaly(FlowAnomaly::ReassemblyBudget.into()));
            // What it held for the server's answer is read before its buffers go.
            tcp::release_unanswered(victim, &mut self.dns_txns, &self.limits, None, out);
            finish_inspection(victim, out);
        }
        // Entries of flows that left the table are skipped when reached; keep the queue
        // from growing with churn all the same.
        if self.buffering.len() > 2 * self.flows.len() + 1024 {
            let flows = &self.flows;
            let mut seen = std::collections::HashSet::with_capacity(flows.len());
            self.buffering.retain(|&(k, opened)| {
                flows
                    .get(&k)
                    .is_some_and(|f| f.conn.buffering && f.conn.opened == opened)
                    && seen.insert(k)
            });
        }
    }

    /// Ends the flow on `key` because a new connection reuses its 4-tuple.
    fn close_reused(&mut self, key: FlowKey, out: &mut impl FnMut(Extracted)) {
        let Some(mut flow) = self.flows.remove(&key) else {
            return;
        };
        self.buffered = self.buffered.saturating_sub(flow.held());
        let limits = self.limits;
        retire(&mut flow, &mut self.dns_txns, &limits, out);
        out(Extracted::Anomaly(FlowAnomaly::TransportTupleReused.into()));
    }

    /// Reads a UDP datagram: DHCP and DNS are read message by message, without a flow;
    /// other datagrams belong to a flow of the table.
    fn udp(
        &mut self,
        ts: Timestamp,
        pkt: &Packet<'_>,
        dgram: &UdpDatagram<'_>,
        dns_message: Option<&DnsParse>,
        out: &mut impl FnMut(Extracted),
    ) {
        let src = SocketAddr::new(pkt.src, dgram.src_port);
        let dst = SocketAddr::new(pkt.dst, dgram.dst_port);
        if dhcp::inspect(dgram, ts, out) {
            return;
        }
        // A datagram on a DNS port comes parsed (`Prepared::read` decides which are DNS). A
        // client may bind a DNS port as its own: what does not parse as DNS and is a QUIC
        // client Initial, or belongs to a QUIC flow, is read as QUIC (a vendor's hello from
        // port 5353 to 443 is not hidden as a malformed DNS message).
        if let Some(parsed) =
            dns_message.filter(|p| p.is_ok() || !self.quic_on_dns_port(pkt, dgram))
        {
            let seen = dns::Seen {
                src,
                dst,
                proto: Proto::Udp,
                src_mac: pkt.src_mac,
                ts,
            };
            self.dns_txns.read_parsed(parsed, &seen, out);
            return;
        }
        let key = FlowKey::new(Proto::Udp, (src.ip(), src.port()), (dst.ip(), dst.port()));
        let mut known = false;
        if let Some(flow) = self.flows.get_mut(&key) {
            known = true;
            if let App::Quic(quic) = &mut flow.app {
                if quic.new_connection(flow.conn.id.client, src, dgram.payload) {
                    self.close_reused(key, out);
                    known = false;
                }
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
        if !known {
            self.flow_entry(key, ts, make_id, pkt.src_mac, out);
        }
        if let Some(flow) = self.flows.get_mut(&key) {
            flow.conn.last_seen = ts;
            let from_client = flow.conn.id.client == src;
            let before = flow.held();
            inspect_datagram(flow, from_client, ts, dgram.payload, out);
            let held = flow.held_since(before);
            self.account(key, held, out);
        }
    }
}

impl Extractor {
    /// Whether a datagram on a DNS port that is no DNS message is QUIC: a client Initial, or
    /// a datagram of a flow already read as QUIC (the server's answers to that port).
    fn quic_on_dns_port(&self, pkt: &Packet<'_>, dgram: &UdpDatagram<'_>) -> bool {
        if super::quic::looks_like_client_initial(dgram.payload) {
            return true;
        }
        let key = FlowKey::new(
            Proto::Udp,
            (pkt.src, dgram.src_port),
            (pkt.dst, dgram.dst_port),
        );
        self.flows
            .get(&key)
            .is_some_and(|f| matches!(f.app, App::Quic(_)))
    }
}

/// Reads one datagram of a UDP flow: QUIC is the only protocol read from UDP flows.
fn inspect_datagram(
    flow: &mut Flow,
    from_client: bool,
    ts: Timestamp,
    payload: &[u8],
    out: &mut impl FnMut(Extracted),
) {
    if from_client
        && matches!(flow.app, App::Probe)
        && super::quic::looks_like_client_initial(payload)
    {
        flow.app = App::Quic(Box::default());
    }
    let step = match &mut flow.app {
        App::Quic(quic) if from_client => quic.inspect(&mut flow.conn, ts, payload, out),
        App::Quic(quic) => quic.server_datagram(payload),
        // A capture can start with 0-RTT or Handshake packets before the Initial that names
        // the server: look at a few client datagrams before giving up.
        App::Probe if from_client && flow.conn.client_bytes < UDP_PROBE_DATAGRAMS => {
            flow.conn.client_bytes += 1;
            Step::Wait
        }
        // Nothing else is read from UDP.
        App::Probe if from_client => Step::Finish,
        _ => Step::Wait,
    };
    if matches!(step, Step::Finish) {
        finish_inspection(flow, out);
    }
}

/// Counts, once per flow, that its reassembly buffers hit their cap and shed bytes.
fn count_reassembly_drops(flow: &mut Flow, out: &mut impl FnMut(Extracted)) {
    let conn = &mut flow.conn;
    if !conn.drops_reported
        && (conn.to_server.dropped_bytes + conn.to_client.dropped_bytes > 0
            || flow.app.dropped_bytes() > 0)
    {
        conn.drops_reported = true;
        out(Extracted::Anomaly(FlowAnomaly::ReassemblyCap.into()));
    }
}

/// Ends the mid-stream window of both directions, and reads what that delivers.
fn settle_windows(
    flow: &mut Flow,
    txns: &mut dns::Transactions,
    limits: &ExtractorLimits,
    out: &mut impl FnMut(Extracted),
) {
    let ts = flow.conn.last_seen;
    for from_client in [true, false] {
        let inspecting = flow.app.inspecting();
        let dir = flow.conn.sent_by(from_client);
        if inspecting && dir.is_unanchored() && dir.settle() == Pushed::Data {
            inspect(flow, from_client, ts, txns, limits, 0, out);
        }
    }
}

/// A flow leaves the table: what it still held in a mid-stream window is read, then its
/// drops and, if it never named anything, its address are reported.
fn retire(
    flow: &mut Flow,
    txns: &mut dns::Transactions,
    limits: &ExtractorLimits,
    out: &mut impl FnMut(Extracted),
) {
    tcp::release_unanswered(flow, txns, limits, None, out);
    settle_windows(flow, txns, limits, out);
    read_server_side_only(flow, out);
    count_reassembly_drops(flow, out);
    flow.conn.report_unnamed(out);
}

/// A flow whose client never sent a byte (a tap that carries one direction, the server's):
/// its protocol was never probed, but a TLS server flight in clear still names the server by
/// its certificate, read when the flow ends, at the time of its last segment. Only then:
/// read earlier, a ServerHello captured ahead of its ClientHello (capture reordering) would
/// decide the flow before the client's name was read.
fn read_server_side_only(flow: &mut Flow, out: &mut impl FnMut(Extracted)) {
    let conn = &mut flow.conn;
    if matches!(flow.app, App::Probe)
        && conn.id.proto == Proto::Tcp
        && conn.client_bytes == 0
        && conn.to_server.data().is_empty()
        && super::tls::looks_like_handshake(conn.to_client.data())
    {
        let ts = conn.last_seen;
        tls::server_flight(conn, ts, out);
    }
}

fn finish_inspection(flow: &mut Flow, out: &mut impl FnMut(Extracted)) {
    count_reassembly_drops(flow, out);
    flow.app.finish();
    flow.conn.held_back = None;
    flow.conn.to_server.release();
    flow.conn.to_client.release();
    flow.conn.report_unnamed(out);
}

/// Runs the flow's protocol over whatever new bytes a direction has.
///
/// `cut` is the number of bytes the capture did not keep right after the direction's
/// buffered bytes (0 when none): the buffer then holds all there will be of the message
/// it ends in.
fn inspect(
    flow: &mut Flow,
    from_client: bool,
    ts: Timestamp,
    txns: &mut dns::Transactions,
    limits: &ExtractorLimits,
    cut: u32,
    out: &mut impl FnMut(Extracted),
) {
    loop {
        let conn = &mut flow.conn;
        let step = match &mut flow.app {
            // QUIC is read datagram by datagram (`inspect_datagram`), never from a stream.
            App::Done | App::Quic(_) => return,
            App::Dns => dns::inspect_tcp(conn, from_client, ts, txns, cut, out),
            App::Tls(tls) => tls.inspect(conn, from_client, ts, cut, out),
            App::Http(http) => {
                http.inspect(conn, from_client, ts, limits.http_max_requests, cut, out)
            }
            // Before the client is read, the server's bytes are kept (bounded) for later.
            App::Probe if !from_client => Step::Wait,
            App::Probe => probe(conn),
        };
        match step {
            Step::Wait => return,
            Step::Again => {}
            Step::Become(app) => flow.app = app,
            Step::Reprobe => {
                flow.app = App::Probe;
                return;
            }
            Step::Finish => {
                finish_inspection(flow, out);
                return;
            }
        }
    }
}

/// Looks for the start of a protocol we read among the client's first segments (a TLS
/// handshake, an HTTP request), past whatever came before (STARTTLS, a proxy preamble).
fn probe(conn: &mut Conn) -> Step {
    let data = conn.to_server.data();
    let starts = conn.to_server.segment_starts();
    let mut found = None;
    let mut undecided = false;
    for &s in starts.iter().take(PROBE_SEGMENTS) {
        let bytes = &data[s..];
        if super::tls::looks_like_handshake(bytes) {
            found = Some((s, App::Tls(tls::TlsState::ClientHello)));
            break;
        }
        // A request may follow empty lines (RFC 9112 §2.2), which its server skips.
        let lead = super::http::empty_lines(bytes);
        let request = &bytes[lead..];
        if super::http::looks_like_request(request) {
            if request.len() < 8 {
                undecided = true;
                continue;
            }
            found = Some((s + lead, App::Http(http::HttpState::default())));
            break;
        }
        if bytes.len() < 3 && bytes.first() == Some(&0x16) {
            undecided = true;
        }
    }
    match found {
        Some((start, app)) => {
            conn.to_server.consume(start);
            Step::Become(app)
        }
        None if undecided => Step::Wait,
        None if conn.client_bytes as usize > PROBE_BUDGET || starts.len() >= PROBE_SEGMENTS => {
            Step::Finish
        }
        None => {
            let n = conn.to_server.data().len();
            conn.to_server.consume(n);
            Step::Wait
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use crate::decode::{decode, LinkType};
    use crate::extract::tls;

    #[test]
    fn a_flow_key_is_both_directions_and_nothing_else() {
        use std::net::{Ipv4Addr, Ipv6Addr};
        let v4 = |a: u8, port| (IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)), port);
        let v6 = |a: u16, port| (IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, a)), port);
        let mapped = |a: u8, port| {
            (
                IpAddr::V6(Ipv4Addr::new(10, 0, 0, a).to_ipv6_mapped()),
                port,
            )
        };
        // The low bits of an IPv4 address in an IPv6 one: only the family tells them apart.
        let low = |a: u8, port| {
            (
                IpAddr::V6(Ipv6Addr::from_bits(0x0a00_0000 | u128::from(a))),
                port,
            )
        };
        let endpoints = [
            v4(1, 443),
            v4(1, 444),
            v4(2, 443),
            v4(2, 444),
            v6(1, 443),
            v6(2, 443),
            mapped(1, 443),
            low(1, 443),
            low(2, 443),
            v4(1, 0),
            v4(0, 443),
        ];
        let mut keys = std::collections::HashMap::new();
        for proto in [Proto::Tcp, Proto::Udp] {
            for (i, &a) in endpoints.iter().enumerate() {
                for (j, &b) in endpoints.iter().enumerate() {
                    let key = FlowKey::new(proto, a, b);
                    assert_eq!(key, FlowKey::new(proto, b, a), "{a:?} {b:?}");
                    let pair = (proto, i.min(j), i.max(j));
                    // Equal keys only for the same pair of ends (either way round).
                    assert_eq!(*keys.entry(key).or_insert(pair), pair, "{a:?} {b:?}");
                }
            }
        }
        assert_eq!(keys.len(), 2 * endpoints.len() * (endpoints.len() + 1) / 2);
    }

    #[test]
    fn a_recycled_dns_box_is_reused_and_keeps_no_names() {
        let response = b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x03www\x07example\x03org\x00\x00\x01\x00\x01\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x5d\xb8\xd8\x22";
        let frame = udp([10, 0, 0, 53], [10, 0, 0, 1], 53, 40000, response);
        let pkt = decode(LinkType::RawIp, &frame).expect("decodes");
        let mut spare = SpareDnsBoxes::default();
        let fingerprinter = Fingerprinter::default();
        let answered = |p: &Prepared| {
            matches!(p.dns.as_deref(), Some(Ok(m))
                if m.questions[0].name == "www.example.org" && m.answers.len() == 1)
        };
        let mut first = Prepared::read(&pkt, &fingerprinter, &mut spare);
        let first_box: *const DnsParse = first.dns.as_deref().expect("parsed");
        let first_answers = match first.dns.as_deref() {
            Some(Ok(m)) => m.answers.as_ptr(),
            _ => panic!("not parsed"),
        };
        assert!(answered(&first));
        first.recycle(&mut spare);
        assert!(first.dns.is_none());
        // The spare holds the box and the room for answers, not the names.
        assert!(matches!(spare.0.as_slice(),
            [b] if matches!(b.as_ref(), Ok(m) if m.questions.is_empty() && m.answers.is_empty())));
        let mut second = Prepared::read(&pkt, &fingerprinter, &mut spare);
        assert!(spare.0.is_empty());
        let second_box: *const DnsParse = second.dns.as_deref().expect("parsed");
        assert_eq!(first_box, second_box);
        assert!(
            matches!(second.dns.as_deref(), Some(Ok(m)) if m.answers.as_ptr() == first_answers)
        );
        assert!(answered(&second));
        // A box that held more room than a spare keeps gives its message up.
        if let Some(Ok(m)) = second.dns.as_deref_mut() {
            m.answers.reserve(4 * SPARE_ANSWER_CAPACITY);
        }
        second.recycle(&mut spare);
        assert!(matches!(spare.0.as_slice(), [b] if b.is_err()));
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
            .filter(|e| matches!(e, Extracted::Anomaly(a) if a.reason() == "reassembly_cap"))
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
            ex.process(Timestamp::from_parts(1, i), &pkt, &mut |e| {
                got.push(e.into_owned())
            });
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
        let hello = padded_hello_records("s05.upd.kaspersky.com");
        let (head, tail) = hello.split_at(700);
        let mut got = Vec::new();
        let feed = |ex: &mut Extractor, got: &mut Vec<Extracted>, f: Vec<u8>, t: u32| {
            let pkt = decode(LinkType::RawIp, &f).expect("decodes");
            ex.process(Timestamp::from_parts(1, t), &pkt, &mut |e| {
                got.push(e.into_owned())
            });
        };
        // 2,000 connections that send the first part of a hello and a parked segment far
        // ahead, and never the rest: without a budget about 2,000 x 16 KiB would be held.
        let stalled = 2_000u16;
        for i in 0..stalled {
            let port = 20_000 + i;
            feed(&mut ex, &mut got, tcp_from_port(port, 99, SYN, b""), 1);
            feed(&mut ex, &mut got, tcp_from_port(port, 100, ACK, head), 2);
            feed(
                &mut ex,
                &mut got,
                tcp_from_port(port, 9_000, ACK, &[0u8; 8_000]),
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
            .filter(|e| matches!(e, Extracted::Anomaly(a) if a.reason() == "reassembly_budget"))
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
        // A new connection's hello, split in two, is still read (as soon as it is whole: the
        // tap shows the SYN-ACK, so the client's data is not held for it).
        feed(&mut ex, &mut got, tcp_from_port(50_000, 99, SYN, b""), 4);
        feed(
            &mut ex,
            &mut got,
            tcp_to_port(50_000, SERVER_ISN, SYNACK, b""),
            4,
        );
        feed(&mut ex, &mut got, tcp_from_port(50_000, 100, ACK, head), 5);
        feed(&mut ex, &mut got, tcp_from_port(50_000, 800, ACK, tail), 6);
        assert!(names(&got).contains(&(NameKind::TlsSni, "s05.upd.kaspersky.com".to_string())));
        ex.finish(&mut |_| {});
        assert_eq!(ex.buffered_bytes(), 0);
    }
    /// A connection that reuses a closed one's 4-tuple holds its own place in the reassembly
    /// queue: the closed flow's entry, still queued, does not make the new one the first to
    /// give way when the budget is passed.
    #[test]
    fn a_reused_tuple_does_not_inherit_the_closed_flows_place_in_the_reassembly_queue() {
        let hello = padded_hello_records("s05.upd.kaspersky.com");
        let (head, tail) = hello.split_at(700);
        let parked = [0u8; 8_000];
        // A flow holding the hello's head and a segment parked far ahead: 8,700 bytes and
        // a little more.
        let held_per_flow = head.len() + parked.len();
        let mut ex = Extractor::new(ExtractorLimits {
            reassembly_budget: 4 * held_per_flow + held_per_flow / 2,
            ..ExtractorLimits::default()
        });
        let mut got = Vec::new();
        let feed =
            |ex: &mut Extractor, got: &mut Vec<Extracted>, segment: (u16, u32, u8, &[u8])| {
                let (port, seq, flags, payload) = segment;
                let f = tcp_from_port(port, seq, flags, payload);
                let pkt = decode(LinkType::RawIp, &f).expect("decodes");
                ex.process(Timestamp::from_parts(1, 0), &pkt, &mut |e| {
                    got.push(e.into_owned())
                });
            };
        let stall = |ex: &mut Extractor, got: &mut Vec<Extracted>, port: u16, isn: u32| {
            feed(ex, got, (port, isn, SYN, b""));
            feed(ex, got, (port, isn + 1, ACK, head));
            feed(ex, got, (port, isn + 9_000, ACK, &parked));
        };
        // The first connection on port 30000 stalls, then a SYN with another ISN (and no
        // answer to the first) closes it and opens the second.
        stall(&mut ex, &mut got, 30_000, 99);
        feed(&mut ex, &mut got, (30_000, 5_000, SYN, b""));
        assert_eq!(ex.buffered_bytes(), 0);
        // Three other connections stall, then the second one on port 30000 does.
        for port in 20_000..20_003 {
            stall(&mut ex, &mut got, port, 99);
        }
        // The server answers this one (its data is not held for the SYN-ACK).
        let syn_ack = tcp_to_port(30_000, SERVER_ISN, SYNACK, b"");
        let pkt = decode(LinkType::RawIp, &syn_ack).expect("decodes");
        ex.process(Timestamp::from_parts(1, 0), &pkt, &mut |e| {
            got.push(e.into_owned())
        });
        feed(&mut ex, &mut got, (30_000, 5_001, ACK, head));
        feed(&mut ex, &mut got, (30_000, 5_000 + 9_000, ACK, &parked));
        // A fifth passes the budget: the oldest stalled stream gives way (port 20000's).
        stall(&mut ex, &mut got, 20_003, 99);
        assert!(ex.buffered_bytes() < 5 * held_per_flow);
        // The rest of the second connection's hello completes it: it was still being read.
        let tail_seq = 5_001 + u32::try_from(head.len()).expect("small");
        feed(&mut ex, &mut got, (30_000, tail_seq, ACK, tail));
        let gave_way = got
            .iter()
            .filter(|e| matches!(e, Extracted::Anomaly(a) if a.reason() == "reassembly_budget"))
            .count();
        assert_eq!(gave_way, 1, "one stream gave way");
        assert!(names(&got).contains(&(NameKind::TlsSni, "s05.upd.kaspersky.com".to_string())));
    }
}
