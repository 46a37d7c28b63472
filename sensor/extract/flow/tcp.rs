//! TCP on the flow table: which side is the client, which segments are read (checksums, and
//! segments the receiver would never take), when a SYN on a known 4-tuple opens a new
//! connection, and how each segment's bytes reach the reassembly buffers and, in order, the
//! flow's protocol (`inspect`).
//!
//! **Segments that do not reach the receiver.** A sender can put a decoy in front of the
//! real bytes that the tap sees but the receiver never takes, so that the sensor reads the
//! decoy and drops the real segment as its retransmission (the "fake" of DPI-evasion tools:
//! GoodbyeDPI, zapret). Besides a wrong checksum, these are recognised once a direction's SYN
//! was seen: from the client, a TTL (hop limit) more than `TTL_SLACK` below its SYN's (it
//! expires on the way: every segment of one connection takes the same path; the server's side
//! is not compared, see `SynMark::without_ttl`); no ACK flag after the handshake (Linux
//! discards it, RFC 9293 §3.10.7.4); a TCP-MD5 or TCP-AO signature on a connection whose SYN
//! had none (Linux discards it, RFC 2385 / 5925). Such a segment is not read and is counted
//! (`transport_ttl_short`, `transport_ack_missing`, `transport_signature_unexpected`). While
//! the server has sent nothing but its SYN-ACK, the client can acknowledge exactly the byte
//! after it: a client segment acknowledging more (bytes never sent) is discarded by every TCP
//! (RFC 9293 §3.10.7.4, `transport_ack_unsent`), one acknowledging less by Linux (RFC 5961
//! §5.2, `transport_ack_old`; another stack may take it). Such a segment is not read but held
//! back (one a flow, `HeldBack`), as is client data whose TTL is short (a client may raise its
//! SYN's TTL alone): a tap can lose the server segment the client acknowledges, or show it after
//! the client's (a server that speaks first), so the held segment is read on proof that the
//! server took it (`HeldWhy`), and dropped when a copy with an acceptable acknowledgment comes.
//! Data on a client's SYN is held back the same way: the server takes it only with a Fast Open
//! cookie, which its SYN-ACK shows by acknowledging it. Client data ahead of anything of the
//! server's (a decoy sent before the SYN-ACK came, which can only guess what to acknowledge) is
//! held back too, each segment as it came, and judged by the SYN-ACK; with no server segment
//! in `UNANSWERED_SECS` (a tap of the client's side) it is read unjudged (`release_unanswered`).
//! A SYN-ACK that comes later and is not what that data acknowledged shows the server refused
//! it (a client that kept its first SYN from the server, sent a decoy, and waited): the
//! client's stream is read again from its first byte (`ReadUnjudged`).
//! Once the server sent data or the flow
//! named something, the tap cannot tell what the client saw, and acknowledgment numbers are not
//! judged. On a
//! connection whose SYN and SYN-ACK both carried timestamps (on a tap that carries only the
//! client's side: whose SYN did), a segment whose timestamp is more than one below the latest
//! its receiver took from that side is dropped by PAWS (RFC 7323), and not read either
//! (`transport_timestamp_old`, see `check_timestamp`). A flow seen
//! mid-stream has no SYN to compare with, and is read as it comes.
//!
//! **Urgent data.** A segment with the URG flag marks one byte its receiver reads out of band
//! (BSD's pointer, Linux's default: the byte before the urgent pointer), so a server reads the
//! stream without it; a byte slipped into a server name that way shows the sensor another
//! name. The reassembly leaves that byte out as the receiver does (`StreamBuf::mark_urgent`),
//! and the segment is counted (`transport_urgent_data`): no TLS or HTTP client sends urgent data.

use super::{dns, finish_inspection, inspect, Conn, Endpoint, Extractor, Flow, FlowKey, Held};
use crate::decode::checksum::{self, Validity};
use crate::decode::{Packet, Proto, TcpSegment};
use crate::extract::anomaly::FlowAnomaly;
use crate::extract::stream::{Pushed, MIDSTREAM_WINDOW_SEGMENTS};
use crate::extract::ExtractorLimits;
use crate::extract::{Extracted, FlowId};
use crate::mac::MacAddr;
use crate::time::Timestamp;
use std::net::SocketAddr;

/// A flow idle this long is stale: a SYN with a new ISN on its 4-tuple starts a new
/// connection even if the old one never closed (a half-open flow, a capture that missed the
/// FIN). A live connection is never idle this long between segments of one exchange, and an
/// established one is not taken over by a stray SYN before then.
const REUSE_STALE_SECS: u64 = 30;

/// How far below its SYN's TTL a segment may arrive and still be taken as reaching the
/// receiver (Snort's `ttl_limit` default): a connection's segments share a path, give or take
/// a route change of a hop or two; a decoy meant to expire before the server is many below.
const TTL_SLACK: u8 = 5;

/// TCP option kinds of segment signatures: MD5 (RFC 2385) and TCP-AO (RFC 5925).
const OPTION_MD5: u8 = 19;
const OPTION_AO: u8 = 29;
/// The timestamps option (RFC 7323), and the length Linux takes it with only.
const OPTION_TIMESTAMP: u8 = 8;
const TIMESTAMP_DATA_LEN: usize = 8;

/// What a direction's SYN (or SYN-ACK) showed of its path: the TTL it arrived with (0: not
/// compared), whether it carried a signature option, and its timestamp value (RFC 7323).
#[derive(Debug, Clone, Copy)]
pub(super) struct SynMark {
    ttl: u8,
    signed: bool,
    tsval: Option<u32>,
}

impl SynMark {
    /// The mark of the server's direction: its TTL is not compared. A SYN proxy or load
    /// balancer in front of the server may answer the SYN itself, from another initial TTL
    /// and distance than the server's data that follows; a client's SYN and data come from
    /// one host. (It is the client's bytes a decoy would hide.)
    fn without_ttl(self) -> SynMark {
        SynMark { ttl: 0, ..self }
    }

    fn of(pkt: &Packet<'_>, seg: &TcpSegment<'_>) -> Option<SynMark> {
        Some(SynMark {
            ttl: ttl(pkt.ip)?,
            signed: signed(seg.segment),
            tsval: timestamp(seg.segment),
        })
    }

    /// Why `seg`, in the direction this SYN opened, would not reach the receiver, if so.
    fn unreachable(self, pkt: &Packet<'_>, seg: &TcpSegment<'_>) -> Option<FlowAnomaly> {
        // A bare ACK changes nothing read here, whether it arrives or not (but see
        // `check_timestamp`).
        if seg.syn || (seg.payload.is_empty() && !seg.fin && !seg.rst) {
            return None;
        }
        self.path_fault(pkt, seg)
    }

    /// Why any segment but a SYN, bare ACKs too, would not reach the receiver, if so.
    fn path_fault(self, pkt: &Packet<'_>, seg: &TcpSegment<'_>) -> Option<FlowAnomaly> {
        if !seg.ack && !seg.rst {
            return Some(FlowAnomaly::TransportAckMissing);
        }
        if ttl(pkt.ip).is_some_and(|t| t.saturating_add(TTL_SLACK) < self.ttl) {
            return Some(FlowAnomaly::TransportTtlShort);
        }
        if !self.signed && signed(seg.segment) {
            return Some(FlowAnomaly::TransportSignatureUnexpected);
        }
        None
    }
}

/// What the server has sent, as far as the tap shows: what the client's acknowledgment
/// numbers are judged by (see the module's doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ServerSent {
    /// No SYN-ACK seen (a tap of the client's side, a flow joined mid-stream).
    Unknown,
    /// Its SYN-ACK only; `next`: the sequence number after it.
    SynAck { next: u32 },
    /// Data or a FIN (a segment the tap lost may lie before what it showed), SYN-ACKs with
    /// two ISNs (one forged, and the tap cannot tell which), or the client's first message
    /// was read (the server may have answered it already: a tap that merges two ports can
    /// show the client's next segment before the answer it acknowledges). Not judged.
    More,
}

impl ServerSent {
    /// Notes a segment of the server's that reaches the client. Data or a FIN counts from
    /// the server's next byte on (a crafted segment out of sequence does not end the judging).
    fn note(&mut self, seg: &TcpSegment<'_>) {
        let only_syn = seg.syn && seg.payload.is_empty() && !seg.fin && !seg.rst;
        let sends = !seg.payload.is_empty() || seg.fin;
        *self = match *self {
            ServerSent::Unknown if only_syn => ServerSent::SynAck {
                next: seg.seq.wrapping_add(1),
            },
            ServerSent::SynAck { next } if only_syn && next != seg.seq.wrapping_add(1) => {
                ServerSent::More
            }
            ServerSent::SynAck { next } if sends && !seg.syn && seg.seq == next => ServerSent::More,
            ServerSent::Unknown if sends => ServerSent::More,
            unchanged => unchanged,
        };
    }

    /// Why the server discards a client segment for its acknowledgment number, if it does (as
    /// the reason to hold it back). A RST is judged by its sequence number alone (RFC 5961 §3).
    fn refuses(self, seg: &TcpSegment<'_>) -> Option<HeldWhy> {
        let ServerSent::SynAck { next } = self else {
            return None;
        };
        if seg.syn || seg.rst {
            return None;
        }
        let ack = seg.ack_number()?;
        match (ack.wrapping_sub(next) as i32).signum() {
            1 => Some(HeldWhy::AckUnsent { ack }),
            -1 => Some(HeldWhy::AckOld),
            _ => None,
        }
    }
}

/// A client segment with data refused for its acknowledgment number, or data on its SYN, kept
/// (a copy: one a flow, counted in what the flow holds) until the tap tells whether the server
/// took it.
#[derive(Debug)]
pub(super) struct HeldBack {
    why: HeldWhy,
    /// When the (first) held segment arrived.
    ts: Timestamp,
    seq: u32,
    fin: bool,
    cut: u32,
    /// The TCP header and payload as captured, and where the payload starts.
    segment: Box<[u8]>,
    payload_at: usize,
    /// The segments that followed it, each as it came (`HeldWhy::BeforeServer`: read one by
    /// one, as their receiver would, since a protocol may look for a message at a segment's
    /// start).
    later: Vec<HeldBack>,
}

/// Why a segment is held back, and what shows that the server took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeldWhy {
    /// It acknowledges bytes the tap has not shown of the server (lost, or shown late): taken
    /// once the server is seen to have sent as far as `ack`.
    AckUnsent { ack: u32 },
    /// It acknowledges less than the SYN-ACK (Linux drops it, another stack may take it):
    /// taken once the server acknowledges its bytes.
    AckOld,
    /// Data on the SYN (Fast Open): taken if the SYN-ACK acknowledges it.
    SynData,
    /// Its TTL (`ttl`) is well below the SYN's (a decoy that expires on the way, or a client
    /// that raised its SYN's TTL): taken once the server acknowledges its bytes.
    TtlShort { ttl: u8 },
    /// Client data the tap showed after the client's SYN and before anything of the server's.
    /// A client sends data only once the SYN-ACK came, acknowledging it (`ack`); sent earlier,
    /// it acknowledges a guess, and a server in SYN-RECEIVED refuses it (RFC 9293 §3.10.7.3:
    /// Linux answers with a RST at that number), so data ahead of the SYN-ACK is a decoy, or
    /// the tap merged the two directions out of order, or it carries only the client's side.
    /// Taken if the SYN-ACK is what it acknowledges (or the server acknowledges its bytes);
    /// read unjudged when the server stays silent (`release_unanswered`).
    BeforeServer { ack: Option<u32> },
}

impl HeldWhy {
    /// The anomaly a segment refused for this reason is counted as (SYN data is not an
    /// anomaly).
    fn anomaly(self) -> Option<FlowAnomaly> {
        match self {
            HeldWhy::AckUnsent { .. } => Some(FlowAnomaly::TransportAckUnsent),
            HeldWhy::AckOld => Some(FlowAnomaly::TransportAckOld),
            HeldWhy::TtlShort { .. } => Some(FlowAnomaly::TransportTtlShort),
            HeldWhy::SynData | HeldWhy::BeforeServer { .. } => None,
        }
    }

    /// Whether a segment held for this reason is likelier to have reached the server than one
    /// held for `other`.
    fn likelier_than(self, other: HeldWhy) -> bool {
        match (self, other) {
            (HeldWhy::AckUnsent { .. }, _) => false,
            (_, HeldWhy::AckUnsent { .. }) => true,
            (HeldWhy::TtlShort { ttl }, HeldWhy::TtlShort { ttl: held }) => ttl > held,
            _ => false,
        }
    }
}

impl HeldBack {
    /// `seg` held back; a SYN's data starts one after its sequence number.
    fn of(ts: Timestamp, seg: &TcpSegment<'_>, why: HeldWhy) -> HeldBack {
        HeldBack {
            why,
            ts,
            seq: seg.seq.wrapping_add(u32::from(seg.syn)),
            fin: seg.fin,
            cut: seg.cut,
            segment: seg.segment.into(),
            payload_at: seg.segment.len() - seg.payload.len(),
            later: Vec::new(),
        }
    }

    /// Bytes held, counted in the flow's buffers: each later segment with the room its record
    /// takes (a client sending one-byte segments must not hold far more than is counted).
    pub(super) fn len(&self) -> usize {
        let later = self.later.iter().map(HeldBack::len).sum::<usize>();
        self.segment.len() + later + self.later.len() * std::mem::size_of::<HeldBack>()
    }

    /// Adds `seg`, which follows the held bytes, as a segment of its own.
    fn push(&mut self, ts: Timestamp, seg: &TcpSegment<'_>) {
        self.later.push(HeldBack::of(ts, seg, self.why));
    }

    /// The last segment held.
    fn last_piece(&self) -> &HeldBack {
        self.later.last().unwrap_or(self)
    }

    /// Takes `seg`'s bytes too when they follow the held ones (a client's message in several
    /// segments, each refused alike), up to `cap` bytes.
    fn extend(&mut self, seg: &TcpSegment<'_>, cap: usize) {
        if seg.seq != self.end() || self.cut > 0 || self.len() + seg.payload.len() > cap {
            return;
        }
        let mut bytes = Vec::with_capacity(self.len() + seg.payload.len());
        bytes.extend_from_slice(&self.segment);
        bytes.extend_from_slice(seg.payload);
        self.segment = bytes.into();
        self.fin = seg.fin;
        self.cut = seg.cut;
    }

    /// The sequence number past the held bytes.
    fn end(&self) -> u32 {
        if let Some(last) = self.later.last() {
            return last.end();
        }
        let payload = self.segment.len() - self.payload_at;
        self.seq.wrapping_add(payload as u32)
    }

    /// Whether a server segment that reaches the client shows that the server took the held
    /// bytes.
    fn taken_by(&self, seg: &TcpSegment<'_>) -> bool {
        let at_or_past = |seq: u32, mark: u32| seq.wrapping_sub(mark) as i32 >= 0;
        let acks_them = seg
            .ack_number()
            .is_some_and(|ack| at_or_past(ack, self.end()));
        match self.why {
            HeldWhy::AckUnsent { ack } => {
                let sent_to = seg.seq.wrapping_add(seg.payload.len() as u32);
                !seg.syn && !seg.payload.is_empty() && at_or_past(sent_to, ack)
            }
            HeldWhy::AckOld | HeldWhy::TtlShort { .. } => acks_them,
            HeldWhy::SynData => seg.syn && acks_them,
            HeldWhy::BeforeServer { ack } if seg.syn => ack == Some(seg.seq.wrapping_add(1)),
            HeldWhy::BeforeServer { .. } => acks_them,
        }
    }

    /// Whether `seg`, which covers the first held byte, carries the held bytes where the two
    /// overlap (a copy the tap duplicated, or the client sent again).
    fn same_bytes(&self, seg: &TcpSegment<'_>) -> bool {
        let held = self.segment.get(self.payload_at..).unwrap_or_default();
        let Some(theirs) = seg.payload.get(self.seq.wrapping_sub(seg.seq) as usize..) else {
            return false;
        };
        let n = held.len().min(theirs.len());
        held.get(..n) == theirs.get(..n)
    }

    /// The segment as it arrived, from `client` to `server`.
    fn segment(&self, client: u16, server: u16) -> TcpSegment<'_> {
        TcpSegment {
            src_port: client,
            dst_port: server,
            seq: self.seq,
            syn: false,
            ack: true,
            fin: self.fin,
            rst: false,
            payload: self.segment.get(self.payload_at..).unwrap_or_default(),
            cut: self.cut,
            segment: &self.segment,
        }
    }
}

/// Whether a client segment ahead of the server's answer was held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holding {
    Held,
    /// Read it as any other.
    Read,
}

/// What a segment told of the flow's held-back client segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// Nothing yet: it stays held.
    Undecided,
    /// The server took it: read.
    Taken,
    /// A decoy: dropped.
    Dropped,
    /// This segment was the server's refusal of it (nothing else of it to read).
    RefusedBy,
}

/// How long client data held for the server's answer (`HeldWhy::BeforeServer`) waits for it
/// before it is read unjudged: a SYN-ACK comes within a round trip, or (the first one lost)
/// a second after the SYN (RFC 6298's initial retransmission timeout); a tap that carries only
/// the client's side never shows one. Checked at the extractor's sweeps (every 5 s of packet
/// time), and when the flow leaves the table.
pub(super) const UNANSWERED_SECS: u64 = 3;

/// Whether the tap showed the client's SYN and nothing of the server's yet: the client's data
/// is held until the server's answer tells whether it took it (`HeldWhy::BeforeServer`).
fn awaits_server(conn: &Conn) -> bool {
    conn.syn_marks[0].is_some() && !conn.server_seen
}

/// Whether `seg` is client data (or a FIN) ahead of anything of the server's: what is held for
/// the server's answer (`Extractor::hold_before_server`), and does not reach the server before.
fn ahead_of_server(conn: &Conn, dir: usize, seg: &TcpSegment<'_>) -> bool {
    dir == 0 && (!seg.payload.is_empty() || seg.fin) && awaits_server(conn)
}

/// Reads a held-back client segment (and those held after it) into its flow, as arrived at
/// `at`, or each when it came (`None`).
fn read_held(
    flow: &mut Flow,
    txns: &mut dns::Transactions,
    limits: ExtractorLimits,
    held_back: &HeldBack,
    at: Option<Timestamp>,
    out: &mut impl FnMut(Extracted),
) {
    let (client, server) = (flow.conn.id.client, flow.conn.id.server);
    let last_seen = flow.conn.last_seen;
    for piece in std::iter::once(held_back).chain(&held_back.later) {
        let segment = piece.segment(client.port(), server.port());
        let arrived = Arrival {
            src: (client.ip(), client.port()),
            seg: &segment,
            ts: at.unwrap_or(piece.ts),
            mac: None,
            mark: None,
        };
        read_segment(flow, txns, limits, &arrived, None, out);
    }
    // Read as of when it came, it does not make the flow look idle longer than it is.
    flow.conn.last_seen = flow.conn.last_seen.max(last_seen);
}

/// Reads client data held for the server's answer (`HeldWhy::BeforeServer`) that never came:
/// at `now`, once it has waited `UNANSWERED_SECS`, or whenever `now` is `None` (the flow leaves
/// the table). A tap that carries only the client's side shows no answer; where the server was
/// seen and did not take the data, it is not read.
pub(super) fn release_unanswered(
    flow: &mut Flow,
    txns: &mut dns::Transactions,
    limits: &ExtractorLimits,
    now: Option<Timestamp>,
    out: &mut impl FnMut(Extracted),
) {
    let Some(held_back) = flow.conn.held_back.as_deref() else {
        return;
    };
    let waited = now.is_none_or(|now| now >= held_back.ts.saturating_add_secs(UNANSWERED_SECS));
    if !matches!(held_back.why, HeldWhy::BeforeServer { .. }) || flow.conn.server_seen || !waited {
        return;
    }
    if let Some(held_back) = flow.conn.held_back.take() {
        let ack = match held_back.why {
            HeldWhy::BeforeServer { ack } => ack,
            _ => None,
        };
        // The first release marks where the stream started: a later one (more data held and
        // released while the server stays silent) starts past it.
        if flow.conn.read_unjudged.is_none() {
            flow.conn.read_unjudged = flow
                .conn
                .to_server
                .next_seq()
                .map(|from| ReadUnjudged { from, ack });
        }
        read_held(flow, txns, *limits, &held_back, None, out);
    }
}

/// Client data read unjudged ahead of the server's answer (`release_unanswered`): where the
/// client's stream stood before it, and what it acknowledged. A SYN-ACK that comes later and is
/// not what it acknowledged shows the server refused it: a decoy that acknowledged a guess,
/// whose SYN was kept from the server (a TTL that expires on the way) while the real SYN came
/// seconds later. The client then sends its real bytes at the same sequence numbers, which the
/// stream, already past them, would take for retransmissions: it is read again from `from`
/// (`Extractor::judge_read_unjudged`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReadUnjudged {
    from: u32,
    ack: Option<u32>,
}

/// Whether `seg`'s bytes include sequence number `seq`.
fn covers(seg: &TcpSegment<'_>, seq: u32) -> bool {
    (seq.wrapping_sub(seg.seq) as usize) < seg.payload.len()
}

/// The IPv4 TTL or IPv6 hop limit of an IP packet.
fn ttl(ip: &[u8]) -> Option<u8> {
    match ip.first()? >> 4 {
        4 => ip.get(8).copied(),
        6 => ip.get(7).copied(),
        _ => None,
    }
}

/// The options of a TCP header, each kind with its data (the bytes after its length), in
/// order, up to the end-of-list option or one whose length does not fit.
fn options(segment: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let header_len = segment.get(12).map_or(0, |b| usize::from(b >> 4) * 4);
    let mut rest = segment
        .get(20..header_len.min(segment.len()))
        .unwrap_or(&[]);
    std::iter::from_fn(move || loop {
        let (&kind, after) = rest.split_first()?;
        match kind {
            0 => return None,
            1 => rest = after,
            _ => {
                let len = usize::from(*after.first()?);
                // A length under 2 cannot step over the option: the list ends there.
                let data = rest.get(2..len)?;
                rest = rest.get(len..)?;
                return Some((kind, data));
            }
        }
    })
}

/// Whether a TCP header carries an MD5 or TCP-AO signature option.
fn signed(segment: &[u8]) -> bool {
    // Either takes at least 16 bytes of options (MD5 18; AO 4 and a MAC of 12 or more):
    // the common header with timestamps alone (12) is passed at once.
    const SIGNATURE_MIN: usize = 16;
    let header_len = segment.get(12).map_or(0, |b| usize::from(b >> 4) * 4);
    if header_len < 20 + SIGNATURE_MIN {
        return false;
    }
    options(segment).any(|(kind, _)| kind == OPTION_MD5 || kind == OPTION_AO)
}

/// The timestamp value (TSval) of a TCP header's timestamps option.
fn timestamp(segment: &[u8]) -> Option<u32> {
    // Nearly every segment after the handshake carries NOP, NOP, timestamps first (RFC 7323
    // appendix A; Linux, BSD, macOS): read it where it lies rather than walking the list. The
    // same value the walk finds, as the option is whole inside the header.
    let header_len = segment.get(12).map_or(0, |b| usize::from(b >> 4) * 4);
    if header_len >= 32 {
        if let Some(&[1, 1, OPTION_TIMESTAMP, 10, a, b, c, d, ..]) = segment.get(20..32) {
            return Some(u32::from_be_bytes([a, b, c, d]));
        }
    }
    timestamp_walked(segment)
}

/// `timestamp` by walking the option list.
fn timestamp_walked(segment: &[u8]) -> Option<u32> {
    let (_, data) = options(segment).find(|&(kind, _)| kind == OPTION_TIMESTAMP)?;
    match *data {
        [a, b, c, d, ..] if data.len() == TIMESTAMP_DATA_LEN => {
            Some(u32::from_be_bytes([a, b, c, d]))
        }
        _ => None,
    }
}

/// PAWS (RFC 7323 §5) as Linux applies it, on a connection whose SYN and SYN-ACK both carried
/// timestamps (or, on a tap that carries only the client's side, whose SYN did): a segment
/// with data or FIN whose TSval is more than one below the latest its receiver took from that
/// side is dropped (an RST is taken whatever its timestamp). Returns
/// why such a segment is not read. Otherwise notes the segment's TSval as the latest when
/// the receiver would: it is not older, the segment reaches the receiver (bare ACKs are
/// checked here too: a decoy ACK that expires on the way must not move the mark) and it
/// covers the next byte expected from that side. The SYN's is the first.
fn check_timestamp(
    conn: &mut Conn,
    dir: usize,
    pkt: &Packet<'_>,
    seg: &TcpSegment<'_>,
) -> Option<FlowAnomaly> {
    let agreed = match conn.syn_marks {
        [Some(client), Some(server)] => client.tsval.is_some() && server.tsval.is_some(),
        // A tap that carries only the client's side: its SYN offered timestamps, and a
        // client sends them on later segments (this one's are read below) only when the
        // server agreed (RFC 7323 §3.2).
        [Some(client), None] => dir == 0 && !conn.server_seen && client.tsval.is_some(),
        _ => false,
    };
    if seg.syn || !agreed {
        return None;
    }
    let tsval = timestamp(seg.segment)?;
    let latest = conn.ts_recent[dir];
    let older_by = |latest: u32| latest.wrapping_sub(tsval) as i32;
    if (!seg.payload.is_empty() || seg.fin) && !seg.rst && latest.is_some_and(|l| older_by(l) > 1) {
        return Some(FlowAnomaly::TransportTimestampOld);
    }
    // Client data held for the server's answer (`HeldWhy::BeforeServer`) has not reached it yet.
    let held = ahead_of_server(conn, dir, seg);
    let reaches = conn.syn_marks[dir]
        .and_then(|m| m.path_fault(pkt, seg))
        .is_none()
        && (dir != 0 || conn.server_sent.refuses(seg).is_none())
        && !held;
    let covers_next = conn.sent_by(dir == 0).next_seq().is_some_and(|next| {
        let into = next.wrapping_sub(seg.seq) as i32;
        into >= 0 && into as usize <= seg.payload.len()
    });
    if reaches && covers_next && latest.is_none_or(|l| older_by(l) <= 0) {
        conn.ts_recent[dir] = Some(tsval);
    }
    None
}

/// Reports the names of a ClientHello that `seg` holds whole, without reading it into the
/// stream (the segment may never have reached the server).
fn name_hello_alone(
    flow: &mut Flow,
    ts: Timestamp,
    seg: &TcpSegment<'_>,
    out: &mut impl FnMut(Extracted),
) {
    if !matches!(flow.app, super::App::Probe | super::App::Tls(_)) {
        return;
    }
    if let crate::extract::tls::Parse::Hello(hello) =
        crate::extract::tls::parse_client_hello(seg.payload)
    {
        let kind = crate::extract::NameKind::TlsSni;
        super::tls::emit_hello(&mut flow.conn, ts, kind, &hello, |_| true, out);
    }
}

impl Extractor {
    /// Reads a segment; false when it was refused as one its receiver never takes (a wrong
    /// checksum, a TTL that expires on the way, an old timestamp, ...).
    pub(super) fn tcp(
        &mut self,
        ts: Timestamp,
        pkt: &Packet<'_>,
        seg: &TcpSegment<'_>,
        out: &mut impl FnMut(Extracted),
    ) -> bool {
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
        let mac = pkt.src_mac;
        let mark = if seg.syn { SynMark::of(pkt, seg) } else { None };
        if let Some(flow) = self.flows.get_mut(&key) {
            let dir = usize::from(!flow.conn.id.is_client(src));
            // Only what can change the flow's state is checked: data it still reads, and
            // the flags that open or close it.
            if flow.app.inspecting() || seg.syn || seg.fin || seg.rst {
                let unreachable = flow.conn.syn_marks[dir].and_then(|m| m.unreachable(pkt, seg));
                if let Some(why) = unreachable {
                    out(Extracted::Anomaly(why.into()));
                    if why == FlowAnomaly::TransportTtlShort && dir == 0 {
                        // Judged by its acknowledgment first: that refusal holds on any path.
                        let held_why =
                            flow.conn
                                .server_sent
                                .refuses(seg)
                                .unwrap_or(HeldWhy::TtlShort {
                                    ttl: ttl(pkt.ip).unwrap_or(0),
                                });
                        self.hold_back(key, ts, seg, held_why, out);
                    }
                    return false;
                }
                // The server's bytes of an HTTP flow are dropped unread, and once its request
                // was read (`ServerSent::More`) with nothing held back, what else its segments
                // tell (the server's timestamps, that it was seen) judges nothing the flow
                // still reads: their checksum, a pass over most of a download's bytes, is
                // left out.
                let guards = flow.app.reads(dir == 0)
                    || seg.syn
                    || seg.fin
                    || seg.rst
                    || flow.conn.held_back.is_some()
                    || flow.conn.server_sent != ServerSent::More;
                let v = if guards {
                    *checked.get_or_insert_with(validity)
                } else {
                    Validity::Unknown
                };
                if v == Validity::Bad && flow.conn.checksums_good[dir] {
                    out(Extracted::Anomaly(FlowAnomaly::TransportChecksumBad.into()));
                    return false;
                }
                if v == Validity::Good {
                    flow.conn.checksums_good[dir] = true;
                }
                let judged = dir == 0 && (!seg.payload.is_empty() || seg.fin);
                if let Some(why) = flow.conn.server_sent.refuses(seg).filter(|_| judged) {
                    if let Some(anomaly) = why.anomaly() {
                        out(Extracted::Anomaly(anomaly.into()));
                    }
                    self.hold_back(key, ts, seg, why, out);
                    return false;
                }
                if let Some(why) = check_timestamp(&mut flow.conn, dir, pkt, seg) {
                    out(Extracted::Anomaly(why.into()));
                    if flow.conn.syn_marks[1].is_none() {
                        // Timestamps agreed is only inferred (no SYN-ACK on the tap): a server
                        // that refused them takes this segment, so a hello it holds is named.
                        name_hello_alone(flow, ts, seg, out);
                    }
                    return false;
                }
            }
            // (A first server segment's bad checksum may be the sender's offload, not a
            // receiver's refusal: `checksums_good`. A forged SYN-ACK is not told apart here.)
            let flow = if dir == 1 && seg.syn && flow.conn.read_unjudged.is_some() {
                self.judge_read_unjudged(key, seg, out);
                let Some(flow) = self.flows.get_mut(&key) else {
                    return true;
                };
                flow
            } else {
                flow
            };
            let holds = !seg.syn
                && !seg.rst
                && flow.app.inspecting()
                && ahead_of_server(&flow.conn, dir, seg);
            let flow = if holds {
                if self.hold_before_server(key, ts, seg, out) == Holding::Held {
                    return false;
                }
                let Some(flow) = self.flows.get_mut(&key) else {
                    return true;
                };
                flow
            } else {
                flow
            };
            let flow = if flow.conn.held_back.is_some() {
                if self.settle_held_back(key, ts, dir, seg, out) == Settled::RefusedBy {
                    return true;
                }
                let Some(flow) = self.flows.get_mut(&key) else {
                    return true;
                };
                flow
            } else {
                flow
            };
            if !(seg.syn && !seg.ack && is_new_connection(&flow.conn, src, seg, ts)) {
                // The common case: a segment of a known connection, read with this probe.
                let arrived = Arrival {
                    src,
                    seg,
                    ts,
                    mac,
                    mark,
                };
                let held = read_segment(flow, &mut self.dns_txns, self.limits, &arrived, None, out);
                self.account(key, held, out);
                return true;
            }
            self.close_reused(key, out);
        }
        if seg.rst || (seg.fin && seg.payload.is_empty()) {
            // The tail of a flow we never saw: nothing to learn.
            return true;
        }
        let good = checked.unwrap_or_else(validity) == Validity::Good;
        self.tcp_new_flow(ts, (src, dst), seg, (mac, mark), good, out);
        true
    }

    /// Holds back a client data segment refused for `why` (`HeldBack`), adds it to the one
    /// held when it follows it, or puts it in that one's place when it is likelier to have
    /// reached the server.
    #[cold]
    #[inline(never)]
    fn hold_back(
        &mut self,
        key: FlowKey,
        ts: Timestamp,
        seg: &TcpSegment<'_>,
        why: HeldWhy,
        out: &mut impl FnMut(Extracted),
    ) {
        let cap = self.limits.stream_cap;
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        if !flow.app.inspecting() || seg.payload.is_empty() {
            return;
        }
        let before = flow.held();
        match flow.conn.held_back.as_deref_mut() {
            None => flow.conn.held_back = Some(Box::new(HeldBack::of(ts, seg, why))),
            Some(held_back) if held_back.why == why => held_back.extend(seg, cap),
            // Over the same bytes, the copy likelier to reach the server is the better
            // candidate: every TCP discards one acknowledging unsent bytes, and of two whose
            // TTL is short the higher goes further.
            Some(held_back) if covers(seg, held_back.seq) && why.likelier_than(held_back.why) => {
                *held_back = HeldBack::of(ts, seg, why);
            }
            Some(_) => {}
        }
        let held = flow.held_since(before);
        self.account(key, held, out);
    }

    /// Holds back client data that the tap shows before anything of the server's
    /// (`HeldWhy::BeforeServer`): a segment over the next byte the stream expects, and each
    /// segment that follows it without a gap; `Read` when the segment is to be read as any
    /// other (one past a gap waits in the stream behind the held bytes). Until the server
    /// answers no copy of the client's bytes is judged, and a tap of the client's side never
    /// judges them: the held copy is read later (`release_unanswered`), and a hello in another
    /// copy of its first bytes is named now (`name_hello_alone`; a hello in one segment only).
    /// When the held bytes fill the stream's cap, they are read unjudged first.
    #[cold]
    #[inline(never)]
    fn hold_before_server(
        &mut self,
        key: FlowKey,
        ts: Timestamp,
        seg: &TcpSegment<'_>,
        out: &mut impl FnMut(Extracted),
    ) -> Holding {
        let cap = self.limits.stream_cap;
        let Some(flow) = self.flows.get_mut(&key) else {
            return Holding::Read;
        };
        let before = flow.held();
        let why = HeldWhy::BeforeServer {
            ack: seg.ack_number(),
        };
        let next = flow.conn.to_server.next_seq();
        let holding = match flow.conn.held_back.as_deref_mut() {
            // The first bytes the server would read: a later segment cannot decide them.
            None if !seg.payload.is_empty() && next.is_some_and(|n| covers(seg, n)) => {
                flow.conn.held_back = Some(Box::new(HeldBack::of(ts, seg, why)));
                Holding::Held
            }
            None => Holding::Read,
            Some(held_back) if matches!(held_back.why, HeldWhy::BeforeServer { .. }) => {
                let last = held_back.last_piece();
                // After the bytes the snap length left out of the last one, too.
                let follows = seg.seq == held_back.end().wrapping_add(last.cut);
                if follows && !last.fin {
                    if held_back.len() + seg.segment.len() <= cap {
                        // A FIN too: read with the bytes it ends, or not at all.
                        held_back.push(ts, seg);
                        Holding::Held
                    } else {
                        release_unanswered(flow, &mut self.dns_txns, &self.limits, None, out);
                        Holding::Read
                    }
                } else if covers(seg, held_back.seq) {
                    if !held_back.same_bytes(seg) {
                        name_hello_alone(flow, ts, seg, out);
                    }
                    Holding::Held
                } else {
                    Holding::Read
                }
            }
            // Held for another reason (data on the SYN, a short TTL), judged by the server's
            // answer already.
            Some(_) => Holding::Read,
        };
        let held = flow.held_since(before);
        self.account(key, held, out);
        holding
    }

    /// What a segment that reaches its receiver tells of the flow's held-back client segment
    /// (`HeldBack`): a client copy of its first byte that passed the checks makes it a decoy
    /// (dropped); a server segment that shows the server took it (`HeldBack::taken_by`) has it
    /// read now, first (SYN data: skipped, its hello was named when held); a SYN-ACK that
    /// data on or ahead of the SYN does not acknowledge, or a server RST at the number that
    /// data acknowledged (a listener's answer to it), shows the server refused it.
    #[cold]
    #[inline(never)]
    fn settle_held_back(
        &mut self,
        key: FlowKey,
        ts: Timestamp,
        dir: usize,
        seg: &TcpSegment<'_>,
        out: &mut impl FnMut(Extracted),
    ) -> Settled {
        let Some(flow) = self.flows.get_mut(&key) else {
            return Settled::Undecided;
        };
        let Some(held_back) = flow.conn.held_back.as_deref() else {
            return Settled::Undecided;
        };
        let (client, server) = (flow.conn.id.client, flow.conn.id.server);
        let before_server = matches!(held_back.why, HeldWhy::BeforeServer { .. });
        let mut settled = Settled::Undecided;
        if dir == 0 {
            if !seg.syn && covers(seg, held_back.seq) {
                settled = Settled::Dropped;
            }
        } else if held_back.taken_by(seg) {
            settled = Settled::Taken;
        } else if seg.syn && (held_back.why == HeldWhy::SynData || before_server) {
            // A SYN-ACK that does not acknowledge the SYN's data says it was dropped; one that
            // data sent ahead of it does not acknowledge, that the data acknowledged a guess.
            settled = Settled::Dropped;
            if before_server {
                let next = seg.seq.wrapping_add(1);
                let refusal = ServerSent::SynAck { next }
                    .refuses(&held_back.segment(client.port(), server.port()))
                    .and_then(HeldWhy::anomaly);
                if let Some(anomaly) = refusal {
                    out(Extracted::Anomaly(anomaly.into()));
                }
            }
        } else if seg.rst
            && !seg.syn
            && !seg.ack
            && held_back.why == (HeldWhy::BeforeServer { ack: Some(seg.seq) })
        {
            // The listener's answer to data that acknowledged what it never sent: a RST
            // without ACK at that number (RFC 9293 §3.10.7.3). It refuses the segment, not the
            // connection, whose SYN it still holds.
            out(Extracted::Anomaly(FlowAnomaly::TransportAckUnsent.into()));
            settled = Settled::RefusedBy;
        }
        if settled == Settled::Undecided {
            return settled;
        }
        let before = flow.held();
        let Some(held_back) = flow.conn.held_back.take() else {
            return Settled::Undecided;
        };
        if settled == Settled::Taken && held_back.why == HeldWhy::SynData {
            // Its hello was named when it was held (`read_segment`): the stream goes on after it.
            if flow.conn.to_server.skip_to(held_back.end()) == Pushed::Data {
                inspect(flow, true, ts, &mut self.dns_txns, &self.limits, 0, out);
            }
        } else if settled == Settled::Taken {
            // Data held for the server's answer is read as of when it came; the SYN-ACK that
            // proved it taken is noted next, as any other.
            let at = if before_server {
                None
            } else {
                flow.conn.server_sent = ServerSent::More;
                Some(ts)
            };
            read_held(flow, &mut self.dns_txns, self.limits, &held_back, at, out);
        }
        let held = flow.held_since(before);
        self.account(key, held, out);
        settled
    }

    /// Judges client data read unjudged (`ReadUnjudged`) by the SYN-ACK `seg`: if the data did
    /// not acknowledge it, the server refused the data, and the client's stream and protocol
    /// start again from the stream's first byte, as for a new connection (what the data named
    /// was reported when it was read, and stays so). Once a flow: the first SYN-ACK decides.
    #[cold]
    #[inline(never)]
    fn judge_read_unjudged(
        &mut self,
        key: FlowKey,
        seg: &TcpSegment<'_>,
        out: &mut impl FnMut(Extracted),
    ) {
        let cap = self.limits.stream_cap;
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        let Some(read) = flow.conn.read_unjudged.take() else {
            return;
        };
        let next = seg.seq.wrapping_add(1);
        let refused = match read.ack {
            Some(ack) if ack == next => return,
            Some(ack) if (ack.wrapping_sub(next) as i32) < 0 => FlowAnomaly::TransportAckOld,
            Some(_) => FlowAnomaly::TransportAckUnsent,
            None => FlowAnomaly::TransportAckMissing,
        };
        out(Extracted::Anomaly(refused.into()));
        let before = flow.held();
        flow.conn.to_server = crate::extract::stream::StreamBuf::new(cap);
        let _ = flow.conn.to_server.start_at(read.from);
        flow.conn.named = false;
        flow.conn.unnamed_reported = false;
        flow.conn.client_bytes = 0;
        // What the refused data did to the connection is undone too: its name ended the
        // judging of the client's acknowledgments, its FIN the connection.
        flow.conn.server_sent = ServerSent::Unknown;
        flow.conn.closing = false;
        flow.app = super::App::for_connection(&flow.conn.id);
        let held = flow.held_since(before);
        self.account(key, held, out);
    }

    /// Opens the flow a segment of an unknown connection starts, and reads the segment into
    /// it; `checksum_good`: whether the segment's checksum was.
    fn tcp_new_flow(
        &mut self,
        ts: Timestamp,
        (src, dst): (Endpoint, Endpoint),
        seg: &TcpSegment<'_>,
        (mac, mark): (Option<MacAddr>, Option<SynMark>),
        checksum_good: bool,
        out: &mut impl FnMut(Extracted),
    ) {
        let key = FlowKey::new(Proto::Tcp, src, dst);
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
        let mac_for_new = if tcp_src_is_client(seg) { mac } else { None };
        self.flow_entry(key, ts, make_id, mac_for_new, out);
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        let arrived = Arrival {
            src,
            seg,
            ts,
            mac,
            mark,
        };
        let good = Some(checksum_good);
        let held = read_segment(flow, &mut self.dns_txns, self.limits, &arrived, good, out);
        self.account(key, held, out);
    }
}

/// A segment as it arrived: from which end, when, from which MAC.
struct Arrival<'s, 'p> {
    src: Endpoint,
    seg: &'s TcpSegment<'p>,
    ts: Timestamp,
    mac: Option<MacAddr>,
    /// A SYN's mark of its direction's path.
    mark: Option<SynMark>,
}

/// Reads a segment into `flow`; what that changed in the flow's buffers (for `account`).
/// `first_checksum`: for the flow's first segment, whether its checksum was good.
fn read_segment(
    flow: &mut Flow,
    txns: &mut dns::Transactions,
    limits: ExtractorLimits,
    arrived: &Arrival<'_, '_>,
    first_checksum: Option<bool>,
    out: &mut impl FnMut(Extracted),
) -> Held {
    let Arrival {
        src, seg, ts, mac, ..
    } = *arrived;
    let from_client = flow.conn.id.is_client(src);
    if !flow.app.inspecting() && !seg.syn && first_checksum.is_none() {
        // A bypassed flow (most segments of an office's traffic: bulk transfers after the
        // hello) holds no bytes and reads none (`finish_inspection` released its buffers):
        // only when it was last active and whether it ends are noted.
        debug_assert_eq!(flow.held(), 0, "a bypassed flow holds nothing");
        note_segment(&mut flow.conn, ts, from_client, mac, seg, false, out);
        if flow.conn.closing {
            flow.conn.report_unnamed(out);
        }
        return Held {
            opened: flow.conn.opened,
            ..Held::default()
        };
    }
    let before = flow.held();
    let mut named_before = flow.conn.named;
    if let Some(good) = first_checksum {
        flow.conn.checksums_good[usize::from(!from_client)] = good;
    }
    let inspecting = flow.app.inspecting();
    note_segment(&mut flow.conn, ts, from_client, mac, seg, inspecting, out);
    if seg.syn {
        let dir = usize::from(!from_client);
        flow.conn.syn_marks[dir] = if from_client {
            arrived.mark
        } else {
            arrived.mark.map(SynMark::without_ttl)
        };
        flow.conn.ts_recent[dir] = arrived.mark.and_then(|m| m.tsval);
    }
    // The peer answered, or the flow ends: what the other side sent before is whole, so
    // a direction still in its mid-stream window starts now.
    if flow.app.inspecting()
        && (!seg.payload.is_empty() || flow.conn.closing)
        && flow.conn.sent_by(!from_client).settle() == Pushed::Data
    {
        inspect(flow, !from_client, ts, txns, &limits, 0, out);
    }
    if flow.app.inspecting() && !seg.syn {
        if let Some(pointer) = seg.urgent_pointer() {
            // BSD's reading, Linux's default: the pointer is one past the urgent byte (a
            // zero pointer marks the segment's first byte).
            let at = seg.seq.wrapping_add(u32::from(pointer.saturating_sub(1)));
            flow.conn.sent_by(from_client).mark_urgent(at);
            out(Extracted::Anomaly(FlowAnomaly::TransportUrgentData.into()));
        }
    }
    if seg.syn && from_client && !seg.payload.is_empty() && flow.app.inspecting() {
        // Data on a SYN is the server's only if its SYN-ACK acknowledges it (TCP Fast Open
        // with a valid cookie): without, the server drops it and the client sends it again.
        // Held back; a hello it holds is named now, for a tap that never shows the SYN-ACK.
        if flow.conn.held_back.is_none() {
            flow.conn.held_back = Some(Box::new(HeldBack::of(ts, seg, HeldWhy::SynData)));
            name_hello_alone(flow, ts, seg, out);
            // Not a message read from the stream: the client's acknowledgments are still judged.
            named_before = flow.conn.named;
        }
    }
    let reads = flow.app.reads(from_client);
    let delivered = push_segment(
        &mut flow.conn,
        flow.app.inspecting(),
        reads,
        from_client,
        seg,
    );
    if delivered.pushed == Pushed::Data && flow.app.inspecting() {
        // The buffer now ends where the capture stopped keeping bytes: the parsers read it
        // as far as it goes.
        inspect(flow, from_client, ts, txns, &limits, delivered.cut, out);
    }
    if delivered.cut > 0 && flow.app.inspecting() {
        // The next segment follows the bytes that were never captured: go on there, with
        // what is parked beyond (what was left of the cut message is unreadable anyway).
        if flow.conn.sent_by(from_client).skip_to(delivered.resume) == Pushed::Data {
            inspect(flow, from_client, ts, txns, &limits, 0, out);
        }
    }
    if flow.app.inspecting() && flow.conn.client_bytes > limits.inspect_budget {
        // Data held for the server's answer is read first, or bytes far ahead of it would
        // end the reading before the connection's first bytes were read.
        release_unanswered(flow, txns, &limits, None, out);
        if flow.app.inspecting() {
            finish_inspection(flow, out);
        }
    }
    if flow.conn.named && !named_before {
        flow.conn.server_sent = ServerSent::More;
    }
    if flow.conn.closing {
        flow.conn.report_unnamed(out);
    }
    flow.held_since(before)
}

/// What a segment tells of its connection: when it was last active, the client's MAC and
/// ISN, whether the server answered, whether it is closing.
fn note_segment(
    conn: &mut Conn,
    ts: Timestamp,
    from_client: bool,
    mac: Option<MacAddr>,
    seg: &TcpSegment<'_>,
    inspecting: bool,
    out: &mut impl FnMut(Extracted),
) {
    conn.last_seen = ts;
    if from_client && conn.client_mac.is_none() {
        conn.client_mac = mac;
    }
    if !from_client {
        conn.server_seen = true;
        conn.server_sent.note(seg);
    }
    if seg.syn && !seg.ack && from_client {
        conn.client_isn.get_or_insert(seg.seq);
    }
    if seg.fin || seg.rst {
        // Only a RST or FIN its receiver takes ends the connection: one at the next sequence
        // number it expects. While the flow is inspected its buffer knows that number, unless
        // a cap made it drop bytes (after inspection it does not, and the flow has been read).
        // A crafted one elsewhere must not end the flow: a SYN with a new ISN would then open
        // a fresh one, and the real hello, sent on the live connection, would go unread.
        let sent = conn.sent_by(from_client);
        let expected = sent
            .next_seq()
            .filter(|_| inspecting && !seg.syn && sent.dropped_bytes == 0);
        if expected.is_none_or(|next| next == seg.seq) {
            conn.closing = true;
        } else {
            out(Extracted::Anomaly(
                FlowAnomaly::TransportCloseIgnored.into(),
            ));
        }
    }
}

/// What `push_segment` made readable.
struct Delivered {
    /// New in-order bytes are in the buffer.
    pushed: Pushed,
    /// Bytes the capture cut right after the buffered ones (0 when none).
    cut: u32,
    /// With a cut: the sequence number of the first byte after the uncaptured ones.
    resume: u32,
}

/// Puts a segment's bytes (while the flow is inspected) in its direction's buffer; `reads`:
/// whether the flow's protocol reads this direction at all (bytes it ignores are passed
/// over, not copied, where that is the same as buffering and dropping them).
fn push_segment(
    conn: &mut Conn,
    inspecting: bool,
    reads: bool,
    from_client: bool,
    seg: &TcpSegment<'_>,
) -> Delivered {
    // SYN data (TCP Fast Open) starts one after the SYN's sequence number.
    let seq = if seg.syn {
        seg.seq.wrapping_add(1)
    } else {
        seg.seq
    };
    if inspecting && !seg.payload.is_empty() && from_client && !seg.syn {
        conn.client_bytes += new_bytes(conn.to_server.next_seq(), seq, seg.payload.len());
    }
    let closing = conn.closing;
    let dir = conn.sent_by(from_client);
    let mut pushed = Pushed::Nothing;
    if seg.syn && inspecting {
        pushed = dir.start_at(seg.seq.wrapping_add(1));
    }
    // A client's SYN data is held back (see `read_segment`).
    if inspecting && !seg.payload.is_empty() && !(seg.syn && from_client) {
        let passed_over = !reads && dir.pass_in_order(seq, seg.payload.len());
        if !passed_over && dir.push(seq, seg.payload) == Pushed::Data {
            pushed = Pushed::Data;
        }
    }
    // A segment cut by the snap length ends what can be read in order here: a direction
    // still waiting for its start takes it now, or the cut would leave a gap that never fills.
    if dir.is_unanchored()
        && (dir.parked_segments() >= MIDSTREAM_WINDOW_SEGMENTS || closing || seg.cut > 0)
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
    Delivered {
        pushed,
        cut,
        resume: cut_end.wrapping_add(cut),
    }
}

/// Bytes of a segment past what its direction already delivered in order: what it adds to
/// the inspection budget. Old bytes again (retransmissions, or segments far behind that a
/// receiver drops) spend nothing, or a client could run a flow's budget out with them before
/// its hello.
/// `seq`: where the segment's bytes start, `len` of them.
fn new_bytes(next_seq: Option<u32>, seq: u32, len: usize) -> u64 {
    let len = len as u64;
    let Some(next) = next_seq else {
        return len;
    };
    let end = seq.wrapping_add(len as u32);
    // How far the segment's end lies past `next`, in sequence space (negative: behind it).
    let past = end.wrapping_sub(next) as i32;
    u64::try_from(past).map_or(0, |p| p.min(len))
}

/// Whether a SYN (without ACK) from `src` opens a new connection on `flow`'s 4-tuple rather
/// than retransmitting the SYN that opened it (or arriving late in a capture that began
/// mid-stream): it carries another ISN, and the old connection closed, never got an answer,
/// or went stale. A SYN into a live, answered connection does not take it over.
fn is_new_connection(conn: &Conn, src: Endpoint, seg: &TcpSegment<'_>, now: Timestamp) -> bool {
    let stale = now >= conn.last_seen.saturating_add_secs(REUSE_STALE_SECS);
    let from_client = conn.id.is_client(src);
    match conn.client_isn {
        Some(isn) if from_client && isn == seg.seq => false,
        // Another ISN than the one seen: a connection that never got an answer is over too.
        Some(_) => conn.closing || stale || !conn.server_seen,
        // The old flow began mid-stream: its SYN may be this one, arriving late, if the
        // server answered what came before. Segments no server answered, before the client's
        // first SYN, were sent to no connection (a listener resets them, and takes data only
        // in a SYN): the SYN starts the flow afresh, or a decoy sent ahead of it would be
        // handed over as the connection's first bytes.
        None => conn.closing || stale || !conn.server_seen,
    }
}

fn tcp_src_is_client(seg: &TcpSegment<'_>) -> bool {
    if seg.syn {
        return !seg.ack;
    }
    // Joined mid-flow: the side on the lower, well-known port is the server.
    !(seg.src_port < seg.dst_port && seg.src_port < 1024)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::ExtractorLimits;
    use super::*;

    #[test]
    fn the_usual_timestamp_layout_reads_as_the_option_walk_does() {
        // Headers of 20 to 60 bytes whose options are the usual layout, a variant of it, or
        // bytes of a generator: the direct read and the walk agree on every one.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut byte = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        };
        let usual = [1u8, 1, 8, 10, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 1];
        for i in 0..20_000 {
            let header_len = 20 + 4 * (i % 11);
            let mut segment = vec![0u8; header_len + 4];
            segment[12] = ((header_len / 4) as u8) << 4;
            for b in &mut segment[20..] {
                *b = byte();
            }
            if i % 3 == 0 {
                let n = usual.len().min(segment.len() - 20);
                segment[20..20 + n].copy_from_slice(&usual[..n]);
                if i % 6 == 0 {
                    segment[20 + (i / 6) % n] = byte() % 12;
                }
            }
            if i % 5 == 0 {
                // Cut short by a snap length, inside the options or not.
                segment.truncate(20 + usize::from(byte()) % (segment.len() - 19));
            }
            assert_eq!(
                timestamp(&segment),
                timestamp_walked(&segment),
                "header {header_len}: {:02x?}",
                &segment[20..]
            );
        }
    }

    /// `tcp` with the URG flag and an urgent pointer.
    fn urgent(seq: u32, pointer: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = tcp(false, seq, ACK | 0x20, payload);
        f[38..40].copy_from_slice(&pointer.to_be_bytes());
        f
    }

    /// `tcp` with a timestamps option (NOP, NOP, TSval, TSecr 0), as Linux lays it out.
    fn stamped(reverse: bool, seq: u32, flags: u8, tsval: u32, payload: &[u8]) -> Vec<u8> {
        let plain = tcp(reverse, seq, flags, payload);
        let mut f = plain[..40].to_vec();
        f[32] = 0x80; // 32-byte header
        f.extend_from_slice(&[1, 1, 8, 10]);
        f.extend_from_slice(&tsval.to_be_bytes());
        f.extend_from_slice(&[0; 4]);
        f.extend_from_slice(payload);
        let total = f.len() as u16;
        f[2..4].copy_from_slice(&total.to_be_bytes());
        f
    }

    /// ClientHellos in records: the real one (a vendor's name) and a decoy.
    fn real_and_decoy() -> (Vec<u8>, Vec<u8>) {
        (
            hello_records("dnl-01.geo.kaspersky.com"),
            hello_records("updates.example-corp.com"),
        )
    }

    #[test]
    fn a_decoy_with_an_old_timestamp_is_not_read_as_paws_drops_it() {
        let (real, decoy) = real_and_decoy();
        let opening = |server_stamps: bool| {
            vec![
                (1, stamped(false, 0, SYN, 1000, b"")),
                (
                    1,
                    if server_stamps {
                        stamped(true, SERVER_ISN, SYNACK, 7000, b"")
                    } else {
                        tcp(true, SERVER_ISN, SYNACK, b"")
                    },
                ),
                (1, stamped(false, 1, ACK, 1010, b"")),
            ]
        };
        // The decoy's TSval is below the third ACK's: a Linux server drops it (PAWS) and
        // reads the real hello at the same sequence number.
        let mut frames = opening(true);
        frames.push((1, stamped(false, 1, ACK, 900, &decoy)));
        frames.push((1, stamped(false, 1, ACK, 1020, &real)));
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["dnl-01.geo.kaspersky.com"]);
        assert_eq!(anomaly_count(&got, "transport_timestamp_old"), 1);
        // One below the latest is still taken (PAWS's window is 1): the decoy is read.
        let mut frames = opening(true);
        frames.push((1, stamped(false, 1, ACK, 1009, &decoy)));
        frames.push((1, stamped(false, 1, ACK, 1020, &real)));
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["updates.example-corp.com"]);
        // Without timestamps agreed (the SYN-ACK had none) nothing is dropped for them.
        let mut frames = opening(false);
        frames.push((1, stamped(false, 1, ACK, 900, &decoy)));
        frames.push((1, stamped(false, 1, ACK, 1020, &real)));
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["updates.example-corp.com"]);
        assert_eq!(anomaly_count(&got, "transport_timestamp_old"), 0);
    }

    #[test]
    fn a_client_segment_acknowledging_what_the_server_never_sent_is_not_read() {
        let (real, decoy) = real_and_decoy();
        let opening = || {
            vec![
                (1, tcp(false, 1000, SYN, b"")),
                (1, tcp(true, SERVER_ISN, SYNACK, b"")),
                (1, tcp(false, 1001, ACK, b"")),
            ]
        };
        // Past the SYN-ACK: bytes never sent, every TCP discards the decoy.
        let mut frames = opening();
        frames.push((
            2,
            with_ack(tcp(false, 1001, ACK, &decoy), SERVER_ISN + 100_001),
        ));
        frames.push((2, tcp(false, 1001, ACK, &real)));
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["dnl-01.geo.kaspersky.com"]);
        assert_eq!(anomaly_count(&got, "transport_ack_unsent"), 1);
        // Before it: Linux discards the decoy (another stack may take it: the server's answer
        // tells, see `a_held_back_segment_is_read_once_the_server_shows_it_took_it`).
        let mut frames = opening();
        frames.push((
            2,
            with_ack(tcp(false, 1001, ACK, &decoy), SERVER_ISN - 1000),
        ));
        frames.push((2, tcp(false, 1001, ACK, &real)));
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["dnl-01.geo.kaspersky.com"]);
        assert_eq!(anomaly_count(&got, "transport_ack_old"), 1);
        // Two decoys refused alike, the second where the first ends, are held together and
        // dropped when the real hello comes.
        let half = decoy.len() / 2;
        let mut frames = opening();
        let bad = |seq: u32, part: &[u8]| with_ack(tcp(false, seq, ACK, part), SERVER_ISN + 2);
        frames.push((2, bad(1001, &decoy[..half])));
        frames.push((2, bad(1001 + half as u32, &decoy[half..])));
        frames.push((2, tcp(false, 1001, ACK, &real)));
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["dnl-01.geo.kaspersky.com"]);
        assert_eq!(anomaly_count(&got, "transport_ack_unsent"), 2);
        // Without the SYN-ACK (a tap of the client's side) or with two of them (one forged),
        // what the client may acknowledge is unknown: nothing is judged.
        let mut one_side = opening();
        one_side.remove(1);
        let mut two_synacks = opening();
        two_synacks.insert(2, (1, tcp(true, SERVER_ISN + 7, SYNACK, b"")));
        for mut frames in [one_side, two_synacks] {
            frames.push((2, with_ack(tcp(false, 1001, ACK, &decoy), SERVER_ISN + 2)));
            let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
            assert_eq!(anomaly_count(&got, "transport_ack_unsent"), 0);
        }
    }

    #[test]
    fn a_held_back_segment_is_read_once_the_server_shows_it_took_it() {
        // A server that speaks first (SMTP's banner), its greeting lost on the tap (or shown
        // after the client's answer): the client's first bytes acknowledge what the tap never
        // showed. They are held back, and read when the server's answer acknowledges them;
        // the hello after them is then read too.
        let (real, _) = real_and_decoy();
        let greeting = b"220 mail.example.org ESMTP\r\n";
        let reply = b"250 ok\r\n";
        let after_greeting = SERVER_ISN + 1 + greeting.len() as u32;
        let ehlo = b"EHLO client.example.org\r\n";
        let ehlo_end = 1001 + ehlo.len() as u32;
        for greeting_shown in [false, true] {
            let mut frames = vec![
                (1, tcp(false, 1000, SYN, b"")),
                (1, tcp(true, SERVER_ISN, SYNACK, b"")),
                (1, tcp(false, 1001, ACK, b"")),
                (2, with_ack(tcp(false, 1001, ACK, ehlo), after_greeting)),
            ];
            if greeting_shown {
                let greeting = with_ack(tcp(true, SERVER_ISN + 1, ACK, greeting), 1001);
                frames.push((2, greeting));
            }
            frames.push((3, with_ack(tcp(true, after_greeting, ACK, reply), ehlo_end)));
            let hello = with_ack(tcp(false, ehlo_end, ACK, &real), after_greeting);
            frames.push((4, hello));
            let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
            assert_eq!(
                tls_names(&got),
                ["dnl-01.geo.kaspersky.com"],
                "{greeting_shown}"
            );
        }
    }

    #[test]
    fn a_held_back_decoy_is_not_read_when_the_server_speaks_first() {
        // The decoy (acknowledging 100,000 bytes never sent) before the banner of a server that
        // speaks first: the banner does not make that acknowledgment right, so the decoy stays
        // held and the real hello after STARTTLS is read.
        let (real, decoy) = real_and_decoy();
        let banner = b"220 mail.example.org ESMTP\r\n";
        let after_banner = SERVER_ISN + 1 + banner.len() as u32;
        let frames = [
            (1, tcp(false, 1000, SYN, b"")),
            (1, tcp(true, SERVER_ISN, SYNACK, b"")),
            (1, tcp(false, 1001, ACK, b"")),
            (
                2,
                with_ack(tcp(false, 1001, ACK, &decoy), SERVER_ISN + 100_001),
            ),
            (2, with_ack(tcp(true, SERVER_ISN + 1, ACK, banner), 1001)),
            (3, with_ack(tcp(false, 1001, ACK, &real), after_banner)),
            (
                3,
                with_ack(tcp(true, after_banner, ACK, b""), 1001 + real.len() as u32),
            ),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["dnl-01.geo.kaspersky.com"]);
    }

    #[test]
    fn a_client_that_raised_its_syns_ttl_is_read_once_the_server_acknowledges_it() {
        // A client may send its SYN with TTL 255 and the rest with 64: every later segment looks
        // like a decoy that expires on the way. Held back, the hello is read when the server
        // acknowledges it; a decoy with a wrong acknowledgment in front of it does not win.
        let (real, decoy) = real_and_decoy();
        let low = |mut f: Vec<u8>| {
            f[8] = 64;
            f
        };
        let mut syn = tcp(false, 1000, SYN, b"");
        syn[8] = 255;
        let taken = 1001 + real.len() as u32;
        for with_decoy in [false, true] {
            let mut frames = vec![
                (1, syn.clone()),
                (1, tcp(true, SERVER_ISN, SYNACK, b"")),
                (1, low(tcp(false, 1001, ACK, b""))),
            ];
            if with_decoy {
                let decoy = with_ack(tcp(false, 1001, ACK, &decoy), SERVER_ISN + 9);
                frames.push((2, low(decoy)));
            }
            frames.push((2, low(tcp(false, 1001, ACK, &real))));
            frames.push((2, with_ack(tcp(true, SERVER_ISN + 1, ACK, b"x"), taken)));
            let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
            assert_eq!(
                tls_names(&got),
                ["dnl-01.geo.kaspersky.com"],
                "{with_decoy}"
            );
        }
    }

    #[test]
    fn data_on_a_syn_is_read_only_if_the_syn_ack_acknowledges_it() {
        // Without a Fast Open cookie the server drops a SYN's data and acknowledges the SYN
        // alone; the client sends its bytes again. A decoy on the SYN must not hide them. (A
        // hello on a SYN is named by itself when it arrives: a tap may never show the SYN-ACK.)
        let (real, decoy) = real_and_decoy();
        let real_name = "dnl-01.geo.kaspersky.com".to_string();
        let frames = [
            (1, tcp(false, 1000, SYN, &decoy)),
            (1, with_ack(tcp(true, SERVER_ISN, SYNACK, b""), 1001)),
            (2, tcp(false, 1001, ACK, &real)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(
            tls_names(&got),
            ["updates.example-corp.com", real_name.as_str()]
        );
        // The decoy's name on the SYN does not end the judging of acknowledgment numbers.
        let frames = [
            (1, tcp(false, 1000, SYN, &decoy)),
            (1, with_ack(tcp(true, SERVER_ISN, SYNACK, b""), 1001)),
            (2, with_ack(tcp(false, 1001, ACK, &decoy), SERVER_ISN + 9)),
            (2, tcp(false, 1001, ACK, &real)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert!(tls_names(&got).contains(&real_name));
        assert_eq!(anomaly_count(&got, "transport_ack_unsent"), 1);
        // With a cookie the SYN-ACK acknowledges the data: it is the connection's first bytes,
        // named once, and the stream goes on after it.
        let taken = 1001 + real.len() as u32;
        let frames = [
            (1, tcp(false, 1000, SYN, &real)),
            (1, with_ack(tcp(true, SERVER_ISN, SYNACK, b""), taken)),
            (2, with_ack(tcp(false, taken, ACK, b""), SERVER_ISN + 1)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), [real_name.as_str()]);
        // A decoy at the first byte before the SYN-ACK does not hide a hello the SYN carried.
        let frames = [
            (1, tcp(false, 1000, SYN, &real)),
            (1, tcp(false, 1001, ACK, &decoy)),
            (1, with_ack(tcp(true, SERVER_ISN, SYNACK, b""), taken)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert!(tls_names(&got).contains(&real_name));
    }

    #[test]
    fn data_ahead_of_the_syn_ack_is_read_only_if_it_acknowledges_it() {
        // A client sends data once the SYN-ACK came, acknowledging it. A decoy sent right after
        // the SYN acknowledges a guess (the server's ISN is not known yet); a server in
        // SYN-RECEIVED refuses it, and the real hello follows the handshake at the same
        // sequence number (pcaps/evasion-pre-synack.pcap is the same from real Linux).
        let (real, decoy) = real_and_decoy();
        let real_name = "dnl-01.geo.kaspersky.com";
        let guess = 0x5eed_1e55;
        let fake = with_ack(tcp(false, 1001, ACK, &decoy), guess);
        let syn_ack = with_ack(tcp(true, SERVER_ISN, SYNACK, b""), 1001);
        let mut refusal = tcp(true, guess, 0x04, b"");
        refusal[28..32].copy_from_slice(&[0; 4]);
        for refusal_shown in [false, true] {
            let mut frames = vec![(1, tcp(false, 1000, SYN, b"")), (1, fake.clone())];
            if refusal_shown {
                // Linux answers the fake with a RST at its acknowledgment number; the
                // connection lives on.
                frames.push((1, refusal.clone()));
            }
            frames.extend([
                (2, syn_ack.clone()),
                (2, tcp(false, 1001, ACK, b"")),
                (2, tcp(false, 1001, ACK, &real)),
            ]);
            let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
            assert_eq!(tls_names(&got), [real_name], "{refusal_shown}");
            assert_eq!(anomaly_count(&got, "transport_ack_unsent"), 1);
            assert_eq!(anomaly_count(&got, "transport_close_ignored"), 0);
        }
        // A byte past the decoy sent first: the decoy still holds the first bytes, and is
        // judged by the SYN-ACK.
        let frames = [
            (1, tcp(false, 1000, SYN, b"")),
            (1, tcp(false, 1001 + decoy.len() as u32, ACK, b"x")),
            (1, fake.clone()),
            (2, syn_ack.clone()),
            (2, tcp(false, 1001, ACK, &real)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), [real_name]);
        // A tap that merges the two directions may show the real data ahead of the SYN-ACK it
        // acknowledges: read once the SYN-ACK comes, once, as of when it came.
        let frames = [
            (1, tcp(false, 1000, SYN, b"")),
            (2, tcp(false, 1001, ACK, &real)),
            (2, tcp(false, 1001, ACK, &real)),
            (3, syn_ack.clone()),
        ];
        let got = feed(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), [real_name]);
        let ts = got.iter().find_map(|e| match e {
            Extracted::Name(n) => Some(n.ts),
            _ => None,
        });
        assert_eq!(ts, Some(Timestamp::from_parts(2, 0)));
    }

    #[test]
    fn data_on_a_tap_of_the_clients_side_is_read_though_no_answer_comes() {
        let (real, decoy) = real_and_decoy();
        let real_name = "dnl-01.geo.kaspersky.com".to_string();
        let other = |seq: u32, flags: u8| tcp_from_port(40001, seq, flags, b"");
        // No SYN-ACK comes: the held hello is read at the first sweep after it waited
        // `UNANSWERED_SECS` (here the one another flow's packet at second 7 brings).
        let frames = [
            (1, tcp(false, 1000, SYN, b"")),
            (1, tcp(false, 1001, ACK, b"")),
            (1, tcp(false, 1001, ACK, &real)),
            (7, other(7000, SYN)),
        ];
        let got = feed(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), [real_name.as_str()]);
        // A decoy ahead of the real hello (its SYN-ACK not on the tap): neither copy is
        // judged, and neither hides the other.
        let frames = [
            (1, tcp(false, 1000, SYN, b"")),
            (1, with_ack(tcp(false, 1001, ACK, &decoy), 0x5eed_1e55)),
            (2, tcp(false, 1001, ACK, b"")),
            (2, tcp(false, 1001, ACK, &real)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert!(tls_names(&got).contains(&real_name), "{got:?}");
        // The real hello first, then the decoy: the same.
        let frames = [
            (1, tcp(false, 1000, SYN, b"")),
            (1, tcp(false, 1001, ACK, &real)),
            (2, with_ack(tcp(false, 1001, ACK, &decoy), 0x5eed_1e55)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert!(tls_names(&got).contains(&real_name), "{got:?}");
        // Bytes far ahead of the held hello (past the inspection budget) do not end the
        // reading before the hello is read.
        let mut frames = vec![
            (1, tcp(false, 1000, SYN, b"")),
            (1, tcp(false, 1001, ACK, &real)),
        ];
        for i in 0..200u32 {
            frames.push((1, tcp(false, 100_000 + i * 1460, ACK, &[0u8; 1460])));
        }
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), [real_name.as_str()]);
        // A hello in two segments, the second ending with a FIN: held together, read at the
        // end, and the FIN ends the flow where it should.
        let (head, tail) = real.split_at(real.len() / 2);
        let after = 1001 + real.len() as u32;
        let frames = [
            (1, tcp(false, 1000, SYN, b"")),
            (1, tcp(false, 1001, ACK, head)),
            (1, tcp(false, 1001 + head.len() as u32, ACK, tail)),
            (1, tcp(false, after, FIN, b"")),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), [real_name.as_str()]);
        assert_eq!(anomaly_count(&got, "transport_close_ignored"), 0);
    }

    #[test]
    fn data_read_unjudged_is_read_again_when_a_late_syn_ack_refuses_it() {
        // A first SYN kept from the server (its TTL expires on the way), a decoy acknowledging a
        // guess, seconds of silence (the decoy is read unjudged at a sweep), then the SYN again,
        // the handshake and the real hello at the decoy's sequence number
        // (pcaps/evasion-pre-synack-late.pcap is the same from real Linux).
        let (real, decoy) = real_and_decoy();
        let real_name = "dnl-01.geo.kaspersky.com".to_string();
        let guess = 0x5eed_1e55;
        let other = |seq: u32, flags: u8| tcp_from_port(40001, seq, flags, b"");
        let syn_ack = with_ack(tcp(true, SERVER_ISN, SYNACK, b""), 1001);
        let late = |first: Vec<u8>| {
            vec![
                (1, tcp(false, 1000, SYN, b"")),
                (1, first),
                (7, other(7000, SYN)),
                (10, tcp(false, 1000, SYN, b"")),
                (10, syn_ack.clone()),
                (10, tcp(false, 1001, ACK, b"")),
                (10, tcp(false, 1001, ACK, &real)),
            ]
        };
        let got = feed(
            &mut Extractor::new(ExtractorLimits::default()),
            &late(with_ack(tcp(false, 1001, ACK, &decoy), guess)),
        );
        let names = tls_names(&got);
        assert_eq!(
            names.len(),
            2,
            "the decoy, read unjudged, then the real: {names:?}"
        );
        assert_eq!(names.last(), Some(&real_name));
        assert_eq!(anomaly_count(&got, "transport_ack_unsent"), 1);
        // Data that did acknowledge the SYN-ACK (a tap that showed it late) is not read again:
        // what follows it is the stream's next bytes, and the real hello's copy is no news.
        let got = feed(
            &mut Extractor::new(ExtractorLimits::default()),
            &late(tcp(false, 1001, ACK, &real)),
        );
        assert_eq!(tls_names(&got), [real_name.as_str()]);
        assert_eq!(anomaly_count(&got, "transport_ack_unsent"), 0);
        // More data after the decoy, held and read unjudged at a later sweep, does not move
        // where the stream is read again from.
        let fake = with_ack(tcp(false, 1001, ACK, &decoy), guess);
        let past = with_ack(tcp(false, 1001 + decoy.len() as u32, ACK, b"x"), guess);
        let frames = [
            (1, tcp(false, 1000, SYN, b"")),
            (1, fake.clone()),
            (7, other(7000, SYN)),
            (8, past),
            (14, other(7001, ACK)),
            (15, tcp(false, 1000, SYN, b"")),
            (15, syn_ack.clone()),
            (15, tcp(false, 1001, ACK, &real)),
        ];
        let got = feed(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got).last(), Some(&real_name), "{got:?}");
        // Read again, the client's acknowledgments are judged again: a second decoy after the
        // SYN-ACK, acknowledging bytes never sent, does not hide the real hello.
        let unsent = with_ack(tcp(false, 1001, ACK, &decoy), SERVER_ISN + 100_001);
        let mut frames = late(fake);
        frames.insert(6, (10, unsent));
        let got = feed(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got).last(), Some(&real_name), "{got:?}");
        assert_eq!(anomaly_count(&got, "transport_ack_unsent"), 2);
    }

    #[test]
    fn an_ack_the_server_discards_does_not_move_the_latest_timestamp() {
        // A bare ACK acknowledging bytes never sent, with a TSval far ahead: the server drops
        // it before taking its timestamp (RFC 7323 §4.3: only segments it accepts), so the
        // real hello after it is not too old.
        let (real, _) = real_and_decoy();
        let frames = [
            (1, stamped(false, 1000, SYN, 1000, b"")),
            (1, stamped(true, SERVER_ISN, SYNACK, 7000, b"")),
            (1, stamped(false, 1001, ACK, 1010, b"")),
            (
                2,
                with_ack(
                    stamped(false, 1001, ACK, 1_000_000, b""),
                    SERVER_ISN + 100_001,
                ),
            ),
            (2, stamped(false, 1001, ACK, 1020, &real)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["dnl-01.geo.kaspersky.com"]);
        assert_eq!(anomaly_count(&got, "transport_timestamp_old"), 0);
    }

    #[test]
    fn a_tap_of_the_client_side_only_judges_timestamps_by_the_clients_syn() {
        let (real, decoy) = real_and_decoy();
        let one_way = |syn_stamped: bool| {
            let syn = if syn_stamped {
                stamped(false, 0, SYN, 1000, b"")
            } else {
                tcp(false, 0, SYN, b"")
            };
            vec![
                (1, syn),
                (1, stamped(false, 1, ACK, 1010, b"")),
                (1, stamped(false, 1, ACK, 900, &decoy)),
                (1, stamped(false, 1, ACK, 1020, &real)),
            ]
        };
        // No SYN-ACK on the tap: the client's SYN offered timestamps and it goes on sending
        // them, so the server most likely agreed, and PAWS dropped the decoy: the stream is
        // read without it. The decoy's own hello is named too, since a server that refused
        // timestamps would have taken it.
        let got = collect(
            &mut Extractor::new(ExtractorLimits::default()),
            &one_way(true),
        );
        assert_eq!(
            tls_names(&got),
            ["updates.example-corp.com", "dnl-01.geo.kaspersky.com"]
        );
        assert_eq!(anomaly_count(&got, "transport_timestamp_old"), 1);
        // That server, and a client that sends its real hello with an old timestamp (and
        // nothing after it): the hello is named all the same.
        let mut frames = one_way(true);
        frames.truncate(2);
        frames.push((1, stamped(false, 1, ACK, 5, &real)));
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["dnl-01.geo.kaspersky.com"]);
        // A SYN without them: nothing to judge by. Neither copy of the first bytes is judged
        // on this tap (no SYN-ACK), so neither hides the other: the real hello, a second copy,
        // is named when it comes, the decoy, held, when the flow ends.
        let got = collect(
            &mut Extractor::new(ExtractorLimits::default()),
            &one_way(false),
        );
        assert_eq!(
            tls_names(&got),
            ["dnl-01.geo.kaspersky.com", "updates.example-corp.com"]
        );
        assert_eq!(anomaly_count(&got, "transport_timestamp_old"), 0);
        // The server's side seen (a SYN-ACK without timestamps): the server refused them.
        let mut frames = one_way(true);
        frames.insert(1, (1, tcp(true, SERVER_ISN, SYNACK, b"")));
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["updates.example-corp.com"]);
    }

    #[test]
    fn only_segments_that_reach_the_receiver_move_the_latest_timestamp() {
        let real = hello_records("dnl-01.geo.kaspersky.com");
        // A bare ACK with a far later TSval that expires on the way (TTL 1), and one with
        // the same that is not at the next byte (out of the window): the server never takes
        // their TSval, and the real hello's is not old to it.
        let mut expiring = stamped(false, 1, ACK, 1_000_000, b"");
        expiring[8] = 1;
        let out_of_window = stamped(false, 90_000, ACK, 1_000_000, b"");
        for decoy in [expiring, out_of_window] {
            let frames = [
                (1, stamped(false, 0, SYN, 1000, b"")),
                (1, stamped(true, SERVER_ISN, SYNACK, 7000, b"")),
                (1, decoy),
                (1, stamped(false, 1, ACK, 1010, &real)),
            ];
            let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
            assert_eq!(tls_names(&got), ["dnl-01.geo.kaspersky.com"]);
        }
    }

    #[test]
    fn an_urgent_byte_in_a_client_hello_is_left_out_as_the_server_does() {
        // One byte more in the server name, sent as urgent data: a Linux server reads the
        // hello without it (the byte is out of band), so must the sensor.
        let hello = hello_records("dnl-01.geo.kaspersky.com");
        let at = hello
            .windows(3)
            .position(|w| w == b"com")
            .expect("the name is in the hello")
            + 1;
        let mut sent = hello[..at].to_vec();
        sent.push(b'X');
        sent.extend_from_slice(&hello[at..]);
        let split = at - 10;
        for pointer_in_second in [false, true] {
            let frames = if pointer_in_second {
                // The pointer rides on the segment that carries the byte.
                vec![
                    (1, tcp(false, 0, SYN, b"")),
                    (1, tcp(true, SERVER_ISN, SYNACK, b"")),
                    (1, tcp(false, 1, ACK, &sent[..split])),
                    (1, urgent(1 + split as u32, 11, &sent[split..])),
                ]
            } else {
                // It comes ahead of the byte, on the first segment.
                vec![
                    (1, tcp(false, 0, SYN, b"")),
                    (1, tcp(true, SERVER_ISN, SYNACK, b"")),
                    (1, urgent(1, at as u16 + 1, &sent[..split])),
                    (1, tcp(false, 1 + split as u32, ACK, &sent[split..])),
                ]
            };
            let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
            assert_eq!(tls_names(&got), ["dnl-01.geo.kaspersky.com"]);
            assert_eq!(anomaly_count(&got, "transport_urgent_data"), 1);
        }
        // Without the URG flag the byte is part of the stream: the name is not that one.
        let frames = [
            (1, tcp(false, 0, SYN, b"")),
            (1, tcp(true, SERVER_ISN, SYNACK, b"")),
            (1, tcp(false, 1, ACK, &sent)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert!(!tls_names(&got).contains(&"dnl-01.geo.kaspersky.com".to_string()));
    }
    use crate::decode::{decode, LinkType};
    use crate::extract::NameKind;

    fn reused(got: &[Extracted]) -> usize {
        got.iter()
            .filter(
                |e| matches!(e, Extracted::Anomaly(a) if a.reason() == "transport_tuple_reused"),
            )
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
    fn client_hello_split_out_of_order_and_retransmitted() {
        let hello = padded_hello_records("S05.upd.kaspersky.com");
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

    #[test]
    fn segments_with_bad_checksums_are_not_read_once_a_direction_showed_good_ones() {
        let benign = hello_records("www.example.org");
        let vendor = hello_records("s05.upd.kaspersky.com");
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
            .filter(
                |e| matches!(e, Extracted::Anomaly(a) if a.reason() == "transport_checksum_bad"),
            )
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

    /// `frame` (from `tcp`) with `options` added to its TCP header (a multiple of 4 bytes).
    fn with_options(mut f: Vec<u8>, options: &[u8]) -> Vec<u8> {
        let doff = 5 + options.len() / 4;
        f[32] = (doff as u8) << 4;
        f.splice(40..40, options.iter().copied());
        let total = f.len() as u16;
        f[2..4].copy_from_slice(&total.to_be_bytes());
        f
    }

    #[test]
    fn decoys_that_would_not_reach_the_server_are_not_read() {
        // The "fake" of DPI-evasion tools: a benign hello at the real one's sequence number
        // that the tap sees and the server never takes, then the real hello.
        let benign = hello_records("www.example.org");
        let vendor = hello_records("s05.upd.kaspersky.com");
        let short_ttl = |mut f: Vec<u8>, ttl: u8| {
            f[8] = ttl;
            f
        };
        // MD5 signature option (kind 19, 18 bytes) and two NOPs.
        let mut md5 = vec![19, 18];
        md5.extend_from_slice(&[0xab; 16]);
        md5.extend_from_slice(&[1, 1]);
        let decoys = [
            (
                short_ttl(tcp(false, 1001, ACK, &benign), 3),
                "transport_ttl_short",
            ),
            (tcp(false, 1001, 0x08, &benign), "transport_ack_missing"),
            (
                with_options(tcp(false, 1001, ACK, &benign), &md5),
                "transport_signature_unexpected",
            ),
        ];
        for (decoy, reason) in decoys {
            let frames = [
                (1, tcp(false, 1000, SYN, b"")),
                (1, tcp(true, 5000, SYNACK, b"")),
                (2, decoy.clone()),
                (3, tcp(false, 1001, ACK, &vendor)),
            ];
            let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
            assert_eq!(tls_names(&got), ["s05.upd.kaspersky.com"], "{reason}");
            assert_eq!(anomaly_count(&got, reason), 1, "{reason}");
            // Seen mid-stream there is no SYN to compare with: the segment is read (the two
            // overlap, and the longer from the same start wins).
            let frames = [(2, decoy), (3, tcp(false, 1001, ACK, &vendor))];
            let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
            assert_eq!(anomaly_count(&got, reason), 0, "{reason} mid-stream");
        }
        // What a connection's own segments look like is read: a TTL a route change or two
        // lower, a signed connection's signed segments, a RST without ACK.
        let signed_syn = with_options(tcp(false, 1000, SYN, b""), &md5);
        let frames = [
            (1, signed_syn),
            (1, tcp(true, 5000, SYNACK, b"")),
            (
                2,
                with_options(short_ttl(tcp(false, 1001, ACK, &vendor), 61), &md5),
            ),
            (3, tcp(false, 1001 + vendor.len() as u32, 0x04, b"")),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["s05.upd.kaspersky.com"]);
        for reason in [
            "transport_ttl_short",
            "transport_ack_missing",
            "transport_signature_unexpected",
        ] {
            assert_eq!(anomaly_count(&got, reason), 0, "{reason}");
        }
    }

    #[test]
    fn the_server_side_ttl_is_not_compared() {
        // A SYN proxy answers the SYN from TTL 255; the server's data behind it arrives with
        // 50. Its certificate is still read (the client side is compared: see above).
        let syn_ack = {
            let mut f = tcp(true, 5000, SYNACK, b"");
            f[8] = 250;
            f
        };
        let mut ex = Extractor::new(ExtractorLimits::default());
        let mut got = Vec::new();
        for f in [
            tcp(false, 1000, SYN, b""),
            syn_ack,
            tcp(true, 5001, ACK, b"data"),
        ] {
            let pkt = decode(LinkType::RawIp, &f).expect("decodes");
            ex.process(Timestamp::from_parts(1, 0), &pkt, &mut |e| {
                got.push(e.into_owned())
            });
        }
        let flow = ex.flows.values().next().expect("one flow");
        assert!(flow.conn.syn_marks[1].is_some_and(|m| m.ttl == 0));
        assert!(flow.conn.syn_marks[0].is_some_and(|m| m.ttl == 64));
        assert_eq!(anomaly_count(&got, "transport_ttl_short"), 0);
    }

    #[test]
    fn signature_options_are_found_among_others() {
        let header = |options: &[u8]| with_options(tcp(false, 1, ACK, b""), options)[20..].to_vec();
        assert!(!signed(&header(&[])));
        // Timestamps (8, 10 bytes) and NOPs, then MD5.
        let mut o = vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        assert!(!signed(&header(&o)));
        o.extend_from_slice(&[19, 18]);
        o.extend_from_slice(&[0; 16]);
        o.extend_from_slice(&[0, 0]);
        assert!(signed(&header(&o)));
        // TCP-AO; an end-of-options before it; a zero length; options past the header.
        let padded = |o: &[u8]| {
            let mut o = o.to_vec();
            o.resize(16, 0);
            header(&o)
        };
        assert!(signed(&padded(&[29, 16])));
        assert!(!signed(&padded(&[0, 0, 29, 16])));
        assert!(!signed(&padded(&[8, 0, 29, 16])));
        // Fewer option bytes than a signature takes.
        assert!(!signed(&header(&[29, 4, 0, 0])));
        assert!(!signed(&[0u8; 12]));
        assert!(!signed(&[0x50; 13]));
    }

    #[test]
    fn a_mid_stream_request_seen_from_one_side_is_read_after_a_quiet_second() {
        let mut ex = Extractor::new(ExtractorLimits::default());
        let mut got = Vec::new();
        let req = b"GET / HTTP/1.1\r\nHost: dnl-01.geo.kaspersky.com\r\n\r\n";
        let mut feed = |ex: &mut Extractor, f: Vec<u8>, t: i64| {
            let pkt = decode(LinkType::RawIp, &f).expect("decodes");
            ex.process(Timestamp::from_parts(t, 0), &pkt, &mut |e| {
                got.push(e.into_owned())
            });
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
        let benign = hello_records("www.example.org");
        let vendor = hello_records("s05.upd.kaspersky.com");
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
                (t + 1, with_ack(tcp(false, 90_001, ACK, &vendor), 70_001)),
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
    fn a_rst_or_fin_away_from_the_next_sequence_number_does_not_end_the_flow() {
        // After the handshake a RST (or FIN) 1000 bytes past the next expected byte, which
        // Linux answers with a challenge ACK and otherwise ignores, then a SYN with another
        // ISN (which the live connection also ignores), then the real hello on the live
        // connection: it is read, and the stray RST or FIN is counted.
        let vendor = hello_records("s05.upd.kaspersky.com");
        for flag in [0x04, FIN] {
            let frames = [
                (1, tcp(false, 1000, SYN, b"")),
                (1, tcp(true, 5000, SYNACK, b"")),
                (2, tcp(false, 1001, ACK, b"")),
                (2, tcp(false, 2001, flag, b"")),
                (2, tcp(false, 90_000, SYN, b"")),
                (3, tcp(false, 1001, ACK, &vendor)),
            ];
            let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
            assert_eq!(
                tls_names(&got),
                ["s05.upd.kaspersky.com"],
                "flags {flag:#x}"
            );
            assert_eq!(anomaly_count(&got, "transport_close_ignored"), 1);
            assert_eq!(reused(&got), 0);
        }
        // At the next expected byte the RST (flags 0x04) is taken, and the SYN after it opens a new flow.
        let frames = [
            (1, tcp(false, 1000, SYN, b"")),
            (1, tcp(true, 5000, SYNACK, b"")),
            (2, tcp(false, 1001, 0x04, b"")),
            (2, tcp(false, 90_000, SYN, b"")),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(anomaly_count(&got, "transport_close_ignored"), 0);
        assert_eq!(reused(&got), 1);
    }

    #[test]
    fn data_no_server_answered_before_the_clients_syn_is_not_the_connections_start() {
        // A decoy hello where the connection's first byte will be, sent before the SYN (to no
        // connection: the server drops or resets it), then the handshake and the real hello.
        let (real, decoy) = real_and_decoy();
        let frames = [
            (1, tcp(false, 1001, ACK, &decoy)),
            (2, tcp(false, 1000, SYN, b"")),
            (2, tcp(true, 5000, SYNACK, b"")),
            (3, tcp(false, 1001, ACK, &real)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert!(
            tls_names(&got).contains(&"dnl-01.geo.kaspersky.com".to_string()),
            "{:?}",
            tls_names(&got)
        );
        assert_eq!(reused(&got), 1);
    }

    #[test]
    fn old_bytes_sent_again_do_not_spend_the_inspection_budget() {
        // 200 segments of 1,460 bytes far behind the next expected byte (a receiver drops them
        // as old), 292 KB in all, then the real hello: it is read.
        let (real, _) = real_and_decoy();
        let junk = vec![0u8; 1460];
        let mut frames = vec![
            (1, tcp(false, 1_000_000, SYN, b"")),
            (1, tcp(true, 5000, SYNACK, b"")),
        ];
        for _ in 0..200 {
            frames.push((2, tcp(false, 900_000, ACK, &junk)));
        }
        frames.push((3, tcp(false, 1_000_001, ACK, &real)));
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["dnl-01.geo.kaspersky.com"]);
    }

    #[test]
    fn a_retransmitted_or_stray_syn_does_not_take_over_a_live_connection() {
        let vendor = hello_records("s05.upd.kaspersky.com");
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
