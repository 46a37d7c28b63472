//! A small, bounded TCP reassembly buffer for one direction of a flow.
//!
//! It keeps only the bytes an extractor still needs: in-order data from SYN+1, retransmissions
//! trimmed, out-of-order segments parked until the gap fills. Both the in-order window and
//! the parked bytes are capped, so a flood of segments costs at most `cap` bytes per direction.
//!
//! **Mid-stream starts.** When the SYN was not seen (the capture began after it, or it was
//! lost), the first segment seen need not be the first of a message: a re-ordered capture
//! can show the second half of a ClientHello before the first. Such a direction is
//! *unanchored*: its segments are parked, nothing is delivered, until the caller `settle`s
//! it (after `MIDSTREAM_WINDOW_SEGMENTS` segments, when the peer answers, or when the flow
//! ends); then it starts at the lowest sequence number parked and delivers what is
//! contiguous from there. A late SYN anchors it at SYN+1 instead.
//!
//! **Overlaps: what a Linux receiver keeps.** Bytes already delivered are never replaced by a
//! later segment that covers them (a retransmission, or an overlap with other bytes). Among
//! parked segments that cover the same bytes, the one that starts at the lower sequence number
//! wins; of two that start at the same one, the longer; of two alike, the first to arrive.
//! That is what Linux's out-of-order queue does (`tcp_data_queue_ofo`: a segment that starts
//! at a queued one's start and ends after it replaces it, one that starts before a queued one
//! and covers it removes it, one inside a queued one is dropped; the queue is then delivered
//! in sequence order), and Suricata's `linux` overlap policy. It matters because the receiver
//! of what this sensor reads (a ClientHello, a request, a DNS query) is the vendor's server, and
//! a sender who shows the sensor one version of overlapping bytes and the server another must
//! not choose which one the sensor reads. Linux also merges a queued segment with the one that
//! follows it right after; that is not modelled (it only decides the case of a segment that
//! starts exactly where such a pair's first half ended). Segments that the receiver would have
//! dropped (bad checksums) are kept out by the caller, so an insertion cannot win an overlap.
//!
//! Parked bytes are kept as runs that do not overlap, in sequence order, each remembering the
//! segment it came from (what decides an overlap with a later one). When the runs or their
//! bytes reach their caps, the highest runs go first, as Linux prunes its out-of-order queue
//! from the end: what is kept is what fills the gap soonest.

/// Parked runs per direction, at most; beyond it the highest are dropped (and counted). A
/// Linux receiver holds about this many small out-of-order segments in its default receive
/// buffer before it prunes; a 2 KB ClientHello sent in 8-byte segments in reverse order fits.
const MAX_PARKED_RUNS: usize = 256;
/// Parked bytes per direction, at most (and at most the in-order cap): what waits for a gap
/// is bounded tighter than the in-order window, which a large hello or request head fills.
const MAX_PARKED_BYTES: usize = 16 * 1024;
/// Segments an unanchored direction collects before it starts at the lowest of them: a
/// ClientHello of Chromium's size (about 2 KB) in 536-byte segments, with room for re-ordering.
pub const MIDSTREAM_WINDOW_SEGMENTS: usize = 8;

#[derive(Debug, Default)]
pub struct StreamBuf {
    /// Sequence number of the next in-order byte (the one after `data`'s end); `None` while
    /// the direction is unanchored.
    next_seq: Option<u32>,
    /// The bytes held, boxed: most directions never hold one (an in-order hello is read
    /// from its segment), and every flow of a worker's table carries two of these, so the
    /// three vectors inline cost 144 bytes a flow for nothing. `None` until something is
    /// held, and again after `release`.
    buffers: Option<Box<Buffers>>,
    parked_bytes: usize,
    /// Segments that added bytes to `parked` (an unanchored direction settles after a window).
    segments_parked: usize,
    cap: usize,
    /// Bytes dropped because a cap was reached.
    pub dropped_bytes: u64,
    /// Sequence number of an urgent byte not delivered yet (see `mark_urgent`).
    urgent: Option<u32>,
}

/// What a direction holds (see `StreamBuf::buffers`).
#[derive(Debug, Default)]
struct Buffers {
    data: Vec<u8>,
    /// Offsets in `data` where a segment began: where a new message is likely to start.
    segment_starts: Vec<usize>,
    /// Out-of-order bytes, in sequence order, not overlapping.
    parked: Vec<Run>,
}

/// What a direction that holds nothing reads as.
static NOTHING_HELD: Buffers = Buffers {
    data: Vec::new(),
    segment_starts: Vec::new(),
    parked: Vec::new(),
};

/// Parked bytes: `bytes` start at `seq`, and came from the segment `from` (what decides an
/// overlap with a later segment; `bytes` may be only part of it).
#[derive(Debug)]
struct Run {
    seq: u32,
    bytes: Vec<u8>,
    from: Origin,
}

/// The segment a run's bytes came from: its first sequence number and its length.
#[derive(Debug, Clone, Copy)]
struct Origin {
    seq: u32,
    len: u32,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// New in-order bytes are available.
    Data,
    /// Nothing new in order (retransmission, or parked until a gap fills).
    Nothing,
}

impl StreamBuf {
    pub fn new(cap: usize) -> Self {
        StreamBuf {
            cap,
            ..StreamBuf::default()
        }
    }

    fn bufs(&self) -> &Buffers {
        self.buffers.as_deref().unwrap_or(&NOTHING_HELD)
    }

    fn bufs_mut(&mut self) -> &mut Buffers {
        self.buffers.get_or_insert_with(Box::default)
    }

    /// Sets the first sequence number (SYN's sequence number + 1). Returns whether that made
    /// parked bytes deliverable.
    pub fn start_at(&mut self, seq: u32) -> Pushed {
        if self.next_seq.is_some() {
            return Pushed::Nothing;
        }
        self.next_seq = Some(seq);
        self.deliver_parked()
    }

    /// Sequence number of the next in-order byte (`None` while unanchored).
    pub fn next_seq(&self) -> Option<u32> {
        self.next_seq
    }

    /// Skips bytes the capture never kept (a segment cut by the snap length): the in-order
    /// bytes held so far are dropped (the parsers read what they could of them) and the stream
    /// goes on at `seq`. Parked segments are kept, and delivered if they follow. Returns
    /// whether bytes are now deliverable.
    pub fn skip_to(&mut self, seq: u32) -> Pushed {
        if let Some(b) = self.buffers.as_mut() {
            b.data.clear();
            b.segment_starts.clear();
        }
        self.next_seq = Some(seq);
        self.deliver_parked()
    }

    /// Whether the direction still waits for its start (no SYN, not settled yet).
    pub fn is_unanchored(&self) -> bool {
        self.next_seq.is_none()
    }

    /// Segments parked while unanchored (the caller settles after a window of them).
    pub fn parked_segments(&self) -> usize {
        self.segments_parked
    }

    /// Ends the mid-stream window of an unanchored direction: it starts at the lowest
    /// sequence number parked. Returns whether bytes are now deliverable.
    pub fn settle(&mut self) -> Pushed {
        if self.next_seq.is_some() {
            return Pushed::Nothing;
        }
        // The runs are in sequence order (relative to the lowest, so a window that spans the
        // wrap of the sequence space still starts at its lowest).
        let Some(lowest) = self.bufs().parked.first().map(|r| r.seq) else {
            return Pushed::Nothing;
        };
        self.next_seq = Some(lowest);
        self.deliver_parked()
    }

    fn deliver_parked(&mut self) -> Pushed {
        let before = self.bufs().data.len();
        self.unpark();
        if self.bufs().data.len() > before {
            Pushed::Data
        } else {
            Pushed::Nothing
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.bufs().data
    }

    /// Heap bytes this buffer holds (what the worker's reassembly budget counts: the bytes
    /// and their bookkeeping, not the box, which the flow's own cost covers).
    pub fn held(&self) -> usize {
        let b = self.bufs();
        b.data.capacity()
            + b.segment_starts.capacity() * std::mem::size_of::<usize>()
            + b.parked.capacity() * std::mem::size_of::<Run>()
            + b.parked.iter().map(|r| r.bytes.capacity()).sum::<usize>()
    }

    /// The in-order window reached its cap: a message that has not ended by now never will here.
    pub fn is_full(&self) -> bool {
        self.bufs().data.len() >= self.cap
    }

    pub fn segment_starts(&self) -> &[usize] {
        &self.bufs().segment_starts
    }

    /// Drops the first `n` bytes (an extractor has read them).
    pub fn consume(&mut self, n: usize) {
        let Some(b) = self.buffers.as_mut() else {
            return;
        };
        let n = n.min(b.data.len());
        b.data.drain(..n);
        b.segment_starts.retain_mut(|s| {
            if *s >= n {
                *s -= n;
                true
            } else {
                false
            }
        });
    }

    /// Frees everything: the flow is no longer inspected.
    pub fn release(&mut self) {
        self.buffers = None;
        self.parked_bytes = 0;
    }

    /// Passes over in-order bytes that nothing will read (the direction's protocol ignores
    /// it): the sequence number moves on, nothing is copied. Does that, and returns true,
    /// only where `push` followed by `release` would leave the same state: the bytes come
    /// right where an empty, anchored buffer with nothing parked expects them. Otherwise it
    /// does nothing and returns false, and the caller pushes.
    pub fn pass_in_order(&mut self, seq: u32, len: usize) -> bool {
        let b = self.bufs();
        if self.next_seq != Some(seq) || !b.data.is_empty() || !b.parked.is_empty() {
            return false;
        }
        // What `append` would have shed for the cap, and counted.
        self.dropped_bytes += len.saturating_sub(self.cap) as u64;
        self.next_seq = Some(seq.wrapping_add(len as u32));
        true
    }

    pub fn push(&mut self, seq: u32, payload: &[u8]) -> Pushed {
        if payload.is_empty() {
            return Pushed::Nothing;
        }
        let Some(next) = self.next_seq else {
            // Unanchored: held until `settle` or a SYN says where the stream starts.
            self.park(seq, payload);
            return Pushed::Nothing;
        };
        let offset = seq.wrapping_sub(next) as i32;
        if offset > 0 {
            self.park(seq, payload);
            return Pushed::Nothing;
        }
        // Retransmission or overlap: keep only what is new.
        let already = offset.unsigned_abs() as usize;
        if already >= payload.len() {
            return Pushed::Nothing;
        }
        self.append(&payload[already..]);
        self.unpark();
        Pushed::Data
    }

    /// The receiver takes the byte at `seq` out of the stream: TCP urgent data, which a
    /// socket reads out of band unless it asked for it inline (`SO_OOBINLINE`), and no server
    /// of TLS or HTTP does. The byte is left out when the in-order bytes reach it, as a
    /// server waiting in a read takes them. As Linux does (`tcp_check_urg`), a pointer to a
    /// byte already delivered is not replayed and one not after the pending one is ignored;
    /// a later one replaces the pending one, whose byte then stays in the stream.
    pub fn mark_urgent(&mut self, seq: u32) {
        let frame = self.frame_at(seq);
        if self.next_seq.is_some() && frame(seq) < 0 {
            return;
        }
        if let Some(pending) = self.urgent {
            if frame(pending) >= 0 && frame(seq) <= frame(pending) {
                return;
            }
        }
        self.urgent = Some(seq);
    }

    fn append(&mut self, bytes: &[u8]) {
        // The urgent byte, when it is one of these, is not part of the stream.
        let urgent_at = match (self.urgent, self.next_seq) {
            (Some(urgent), Some(next)) => {
                Some(urgent.wrapping_sub(next) as usize).filter(|&at| at < bytes.len())
            }
            _ => None,
        };
        let (head, tail) = match urgent_at {
            Some(at) => {
                self.urgent = None;
                let (head, rest) = bytes.split_at(at);
                (head, rest.get(1..).unwrap_or_default())
            }
            None => (bytes, &[][..]),
        };
        let kept = head.len() + tail.len();
        let room = self.cap.saturating_sub(self.bufs().data.len());
        let take = kept.min(room);
        if take > 0 {
            let b = self.bufs_mut();
            b.segment_starts.push(b.data.len());
            let from_head = take.min(head.len());
            b.data.extend_from_slice(&head[..from_head]);
            b.data.extend_from_slice(&tail[..take - from_head]);
        }
        self.dropped_bytes += (kept - take) as u64;
        // Sequence space advances by everything in order, kept or not.
        if let Some(next) = self.next_seq.as_mut() {
            *next = next.wrapping_add(bytes.len() as u32);
        }
    }

    /// Sequence numbers as offsets from a point near them (they compare only that way): the
    /// next in-order byte, or while unanchored the lowest run (or `seq` when there is none).
    fn frame_at(&self, seq: u32) -> impl Fn(u32) -> i64 {
        let reference = match (self.next_seq, self.bufs().parked.first()) {
            (Some(next), _) => next,
            (None, Some(lowest)) => lowest.seq,
            (None, None) => seq,
        };
        move |s: u32| i64::from(s.wrapping_sub(reference) as i32)
    }

    /// Parks an out-of-order segment: merges it into the runs by the overlap policy (see the
    /// module doc), then holds the runs to their caps.
    fn park(&mut self, seq: u32, payload: &[u8]) {
        let Ok(len) = u32::try_from(payload.len()) else {
            self.dropped_bytes += payload.len() as u64;
            return;
        };
        let new = Origin { seq, len };
        let rel = self.frame_at(seq);
        let start = rel(seq);
        let end = start + i64::from(len);
        let run_end = |r: &Run| rel(r.seq) + r.bytes.len() as i64;
        let parked = &mut self.buffers.get_or_insert_with(Box::default).parked;
        // The runs the segment overlaps: `first..last`.
        let first = parked.partition_point(|r| run_end(r) <= start);
        let last = first
            + parked[first..]
                .iter()
                .take_while(|r| rel(r.seq) < end)
                .count();
        let mut added = false;
        let mut piece_of_new = |from: i64, to: i64| {
            added = true;
            Run {
                seq: seq.wrapping_add((from - start) as u32),
                bytes: payload[(from - start) as usize..(to - start) as usize].to_vec(),
                from: new,
            }
        };
        let mut pieces: Vec<Run> = Vec::with_capacity(last - first + 2);
        // The new segment's first byte not placed yet.
        let mut cursor = start;
        let mut tail = None;
        let mut removed = 0;
        for run in parked.drain(first..last) {
            removed += run.bytes.len();
            let (theirs, run_start) = (rel(run.from.seq), rel(run.seq));
            let new_wins = start < theirs || (start == theirs && new.len > run.from.len);
            if new_wins {
                // The run keeps only what lies outside the segment.
                if run_start < start {
                    pieces.push(run.head((start - run_start) as usize));
                }
                if run_end(&run) > end {
                    tail = Some(run.after((end - run_start) as usize));
                }
            } else {
                if cursor < run_start {
                    pieces.push(piece_of_new(cursor, run_start));
                }
                cursor = cursor.max(run_end(&run));
                pieces.push(run);
            }
        }
        if cursor < end {
            pieces.push(piece_of_new(cursor, end));
        }
        pieces.extend(tail);
        let kept: usize = pieces.iter().map(|r| r.bytes.len()).sum();
        parked.splice(first..first, pieces);
        if parked.len() > MAX_PARKED_RUNS {
            collapse(parked);
        }
        self.parked_bytes = (self.parked_bytes + kept).saturating_sub(removed);
        self.segments_parked += usize::from(added);
        // Over a cap: the highest runs go, as a Linux receiver prunes its queue from the end.
        let parked_cap = self.cap.min(MAX_PARKED_BYTES);
        let parked = &mut self.buffers.get_or_insert_with(Box::default).parked;
        while parked.len() > MAX_PARKED_RUNS || self.parked_bytes > parked_cap {
            let Some(highest) = parked.pop() else {
                break;
            };
            self.parked_bytes -= highest.bytes.len();
            self.dropped_bytes += highest.bytes.len() as u64;
        }
    }

    /// Delivers the runs that now follow the in-order bytes, each as a segment (the part of
    /// a run that the in-order bytes already cover is theirs: it came from a segment that
    /// started lower).
    fn unpark(&mut self) {
        let Some(b) = self.buffers.as_mut().filter(|b| !b.parked.is_empty()) else {
            return;
        };
        let mut parked = std::mem::take(&mut b.parked);
        let mut delivered = 0;
        for run in &parked {
            let Some(next) = self.next_seq else {
                break;
            };
            let offset = run.seq.wrapping_sub(next) as i32;
            if offset > 0 {
                break;
            }
            delivered += 1;
            let already = offset.unsigned_abs() as usize;
            if let Some(fresh) = run.bytes.get(already..).filter(|b| !b.is_empty()) {
                self.append(fresh);
            }
        }
        for run in parked.drain(..delivered) {
            self.parked_bytes -= run.bytes.len();
        }
        self.bufs_mut().parked = parked;
    }
}

/// Joins runs that follow each other without a gap into one, as a Linux receiver
/// collapses its out-of-order queue when it holds too many segments (`tcp_collapse_ofo_queue`):
/// a ClientHello in one-byte segments sent backwards is then a few runs, not hundreds.
/// A joined run counts as one segment from its start in later overlaps, as there.
fn collapse(parked: &mut Vec<Run>) {
    // In place: a queue at its cap that has nothing to join is scanned, not rebuilt.
    parked.dedup_by(|run, prev| {
        if prev.seq.wrapping_add(prev.bytes.len() as u32) != run.seq {
            return false;
        }
        prev.bytes.append(&mut run.bytes);
        prev.from = Origin {
            seq: prev.seq,
            len: prev.bytes.len() as u32,
        };
        true
    });
}

impl Run {
    /// Its first `n` bytes.
    fn head(&self, n: usize) -> Run {
        Run {
            seq: self.seq,
            bytes: self.bytes[..n.min(self.bytes.len())].to_vec(),
            from: self.from,
        }
    }

    /// Its bytes after the first `n`.
    fn after(&self, n: usize) -> Run {
        let n = n.min(self.bytes.len());
        Run {
            seq: self.seq.wrapping_add(n as u32),
            bytes: self.bytes[n..].to_vec(),
            from: self.from,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_retransmitted_and_out_of_order() {
        let mut s = StreamBuf::new(1024);
        s.start_at(1000);
        assert_eq!(s.push(1000, b"hello "), Pushed::Data);
        assert_eq!(s.push(1000, b"hello "), Pushed::Nothing); // retransmission
        assert_eq!(s.push(1011, b"!"), Pushed::Nothing); // parked: gap 1006..1011
        assert_eq!(s.push(1003, b"lo world"), Pushed::Data); // overlaps 3 bytes, fills the gap
        assert_eq!(s.data(), b"hello world!");
        assert_eq!(s.segment_starts(), &[0, 6, 11]);
    }

    #[test]
    fn the_urgent_byte_is_left_out_where_the_in_order_bytes_reach_it() {
        // In the segment that marks it.
        let mut s = StreamBuf::new(1024);
        s.start_at(1000);
        s.mark_urgent(1003);
        s.push(1000, b"helXlo");
        assert_eq!(s.data(), b"hello");
        assert_eq!(s.next_seq(), Some(1006));
        // In a later segment, and in one that was parked until a gap filled.
        let mut s = StreamBuf::new(1024);
        s.start_at(1000);
        s.mark_urgent(1008);
        s.push(1000, b"hello");
        s.push(1006, b" wXorld");
        assert_eq!(s.data(), b"hello");
        s.push(1005, b",");
        assert_eq!(s.data(), b"hello, world");
        // Only once: the same bytes again are a retransmission, and the next segment is
        // whole.
        s.push(1006, b" wXorld");
        s.push(1013, b"!");
        assert_eq!(s.data(), b"hello, world!");
    }

    #[test]
    fn urgent_pointers_follow_linux() {
        // A pointer to a byte already delivered is not replayed.
        let mut s = StreamBuf::new(1024);
        s.start_at(1000);
        s.push(1000, b"hello");
        s.mark_urgent(1002);
        s.push(1005, b" world");
        assert_eq!(s.data(), b"hello world");
        // One not after the pending one is ignored; a later one replaces it, and the byte of
        // the one replaced stays in the stream.
        let mut s = StreamBuf::new(1024);
        s.start_at(1000);
        s.mark_urgent(1004);
        s.mark_urgent(1002);
        s.mark_urgent(1006);
        s.push(1000, b"abcdefgh");
        assert_eq!(s.data(), b"abcdefh");
        // The cap counts what is kept: the urgent byte is neither kept nor dropped.
        let mut s = StreamBuf::new(4);
        s.start_at(0);
        s.mark_urgent(1);
        s.push(0, b"aXbcde");
        assert_eq!((s.data(), s.dropped_bytes), (&b"abcd"[..], 1));
    }

    #[test]
    fn passing_over_in_order_bytes_is_pushing_then_releasing_them() {
        let mut passed = StreamBuf::new(8);
        let mut pushed = StreamBuf::new(8);
        for s in [&mut passed, &mut pushed] {
            s.start_at(100);
        }
        for (seq, bytes) in [(100, &b"abc"[..]), (103, b"0123456789"), (113, b"x")] {
            assert!(passed.pass_in_order(seq, bytes.len()));
            pushed.push(seq, bytes);
            pushed.release();
        }
        assert_eq!(passed.next_seq(), pushed.next_seq());
        assert_eq!(passed.dropped_bytes, pushed.dropped_bytes);
        assert_eq!(passed.held(), 0);
        // Out of order, or into a buffer that holds bytes: left to `push`.
        assert!(!passed.pass_in_order(200, 1));
        assert!(!StreamBuf::new(8).pass_in_order(0, 1));
        passed.push(114, b"y");
        assert!(!passed.pass_in_order(115, 1));
    }

    #[test]
    fn cap_bounds_memory_and_counts() {
        let mut s = StreamBuf::new(8);
        s.start_at(0);
        s.push(0, b"0123456789");
        assert_eq!(s.data(), b"01234567");
        assert_eq!(s.dropped_bytes, 2);
        s.push(100, &[0; 100]);
        assert_eq!(s.dropped_bytes, 102);
    }

    #[test]
    fn sequence_wraps() {
        let mut s = StreamBuf::new(64);
        s.start_at(u32::MAX - 1);
        s.push(u32::MAX - 1, b"ab");
        s.push(0, b"cd");
        assert_eq!(s.data(), b"abcd");
    }

    #[test]
    fn consume_shifts_segment_starts() {
        let mut s = StreamBuf::new(64);
        s.start_at(0);
        s.push(0, b"abc");
        s.push(3, b"def");
        s.consume(4);
        assert_eq!(s.data(), b"ef");
        assert_eq!(s.segment_starts(), &[] as &[usize]);
        s.push(6, b"g");
        assert_eq!(s.segment_starts(), &[2]);
    }

    #[test]
    fn mid_stream_starts_at_the_lowest_sequence_of_the_window() {
        // No SYN; the second segment of a message is seen first, then a retransmission of
        // it, then the first.
        let mut s = StreamBuf::new(64);
        assert!(s.is_unanchored());
        assert_eq!(s.push(5006, b"world"), Pushed::Nothing);
        assert_eq!(s.push(5006, b"world"), Pushed::Nothing);
        assert_eq!(s.push(5000, b"hello "), Pushed::Nothing);
        assert_eq!(s.parked_segments(), 2);
        assert_eq!(s.settle(), Pushed::Data);
        assert_eq!(s.data(), b"hello world");
        assert_eq!(s.segment_starts(), &[0, 6]);
        // Later segments flow in order as usual.
        assert_eq!(s.push(5011, b"!"), Pushed::Data);
        assert_eq!(s.data(), b"hello world!");
    }

    #[test]
    fn the_window_finds_its_lowest_across_the_sequence_wrap() {
        let mut s = StreamBuf::new(64);
        s.push(0, b"cd");
        s.push(u32::MAX - 1, b"ab");
        s.settle();
        assert_eq!(s.data(), b"abcd");
    }

    #[test]
    fn a_late_syn_anchors_the_parked_segments() {
        let mut s = StreamBuf::new(64);
        s.push(101, b"def");
        s.push(98, b"abc");
        assert_eq!(s.start_at(98), Pushed::Data);
        assert_eq!(s.data(), b"abcdef");
    }

    #[test]
    fn delivered_bytes_and_equal_copies_keep_the_first() {
        // Delivered bytes are never replaced.
        let mut s = StreamBuf::new(64);
        s.start_at(0);
        s.push(0, b"GET /a");
        s.push(0, b"XXXXXX/b");
        assert_eq!(s.data(), b"GET /a/b");
        // Of two parked copies of the same bytes from the same start, the first is used.
        let mut s = StreamBuf::new(64);
        s.push(10, b"first");
        s.push(10, b"other");
        s.push(5, b"01234");
        s.settle();
        assert_eq!(s.data(), b"01234first");
    }

    #[test]
    fn a_longer_segment_from_the_same_start_replaces_a_parked_one() {
        // The evasion a Linux server does not fall for: a decoy parked first, then the real
        // bytes from the same start and longer, then the gap before them.
        let mut s = StreamBuf::new(64);
        s.start_at(0);
        s.push(4, b"decoy");
        s.push(4, b"real-bytes");
        s.push(0, b"0123");
        assert_eq!(s.data(), b"0123real-bytes");
        // The other way round the decoy, shorter and second, is dropped.
        let mut s = StreamBuf::new(64);
        s.start_at(0);
        s.push(4, b"real-bytes");
        s.push(4, b"decoy");
        s.push(0, b"0123");
        assert_eq!(s.data(), b"0123real-bytes");
    }

    #[test]
    fn the_segment_that_starts_lower_wins_an_overlap() {
        let mut s = StreamBuf::new(64);
        s.start_at(0);
        s.push(8, b"AAAA"); // 8..12, parked first
        s.push(6, b"bbbbbb"); // 6..12: starts lower, covers it
        s.push(10, b"CCCC"); // 10..14: starts inside a parked one, only 12..14 is new
        s.push(0, b"012345");
        assert_eq!(s.data(), b"012345bbbbbbCC");
        assert_eq!(s.segment_starts(), &[0, 6, 12]);
        // In-order bytes beat parked ones they reach into.
        let mut s = StreamBuf::new(64);
        s.start_at(0);
        s.push(4, b"xxxxyy");
        s.push(0, b"012345");
        assert_eq!(s.data(), b"012345xxyy");
    }

    #[test]
    fn a_hello_in_many_segments_with_the_first_held_back_is_whole() {
        // Twenty or two hundred segments waiting for the first one (the cap was 16 once, and
        // an evader only had to send its first segment last).
        for count in [20usize, 200] {
            let message: Vec<u8> = (0..count * 8).map(|i| (i % 251) as u8).collect();
            let mut s = StreamBuf::new(4096);
            s.start_at(1000);
            for (i, part) in message.chunks(8).enumerate().skip(1) {
                assert_eq!(s.push(1000 + 8 * i as u32, part), Pushed::Nothing);
            }
            assert_eq!(s.push(1000, &message[..8]), Pushed::Data);
            assert_eq!(s.data(), &message[..]);
            assert_eq!(s.dropped_bytes, 0);
            // In reverse order too.
            let mut s = StreamBuf::new(4096);
            s.start_at(1000);
            for (i, part) in message.chunks(8).enumerate().rev() {
                s.push(1000 + 8 * i as u32, part);
            }
            assert_eq!(s.data(), &message[..]);
        }
    }

    #[test]
    fn one_byte_segments_backwards_are_collapsed_not_dropped() {
        let message: Vec<u8> = (0..1500u32).map(|i| (i % 253) as u8).collect();
        let mut s = StreamBuf::new(4096);
        s.start_at(7);
        for (i, b) in message.iter().enumerate().rev() {
            s.push(7 + i as u32, std::slice::from_ref(b));
            assert!(s.bufs().parked.len() <= MAX_PARKED_RUNS);
        }
        assert_eq!(s.data(), &message[..]);
        assert_eq!(s.dropped_bytes, 0);
    }

    #[test]
    fn the_highest_runs_go_when_a_cap_is_reached() {
        // Every other byte, far more runs than the cap: the lowest are kept.
        let mut s = StreamBuf::new(4096);
        s.start_at(0);
        for i in 0..(MAX_PARKED_RUNS as u32 + 50) {
            s.push(1 + 2 * i, b"x");
        }
        assert_eq!(s.bufs().parked.len(), MAX_PARKED_RUNS);
        assert_eq!(s.dropped_bytes, 50);
        assert_eq!(
            s.bufs().parked.last().map(|r| r.seq),
            Some(2 * MAX_PARKED_RUNS as u32 - 1)
        );
        // Bytes: the cap holds too.
        let mut s = StreamBuf::new(16);
        s.start_at(0);
        s.push(20, &[1; 10]);
        s.push(5, &[2; 10]);
        assert_eq!(s.parked_bytes, 10);
        assert_eq!(s.dropped_bytes, 10);
        assert!(s.held() > 0);
    }

    /// What a receiver keeps, byte by byte: each byte not yet delivered is held with the
    /// segment it came from; a later segment takes it if it starts lower, or at the same
    /// place and is longer. Delivered bytes never change.
    fn model(segments: &[(u32, Vec<u8>)], anchored: bool) -> Vec<u8> {
        use std::collections::BTreeMap;
        let mut held: BTreeMap<u32, (u8, u32, usize)> = BTreeMap::new();
        let mut next = anchored.then_some(0u32);
        let mut out = Vec::new();
        let deliver =
            |held: &mut BTreeMap<u32, (u8, u32, usize)>, next: &mut u32, out: &mut Vec<u8>| {
                while let Some((b, _, _)) = held.remove(next) {
                    out.push(b);
                    *next += 1;
                }
            };
        for (start, bytes) in segments {
            for (i, &b) in bytes.iter().enumerate() {
                let at = start + i as u32;
                if next.is_some_and(|n| at < n) {
                    continue;
                }
                let take = match held.get(&at) {
                    None => true,
                    Some(&(_, from, len)) => *start < from || (*start == from && bytes.len() > len),
                };
                if take {
                    held.insert(at, (b, *start, bytes.len()));
                }
            }
            if let Some(n) = next.as_mut() {
                deliver(&mut held, n, &mut out);
            }
        }
        if next.is_none() {
            if let Some(&lowest) = held.keys().next() {
                let mut n = lowest;
                deliver(&mut held, &mut n, &mut out);
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn delivers_what_a_linux_receiver_keeps(
            segments in proptest::collection::vec(
                (0u32..48, proptest::collection::vec(proptest::num::u8::ANY, 1..12)),
                1..24,
            ),
            anchored in proptest::bool::ANY,
        ) {
            // Sequence numbers just below the wrap, so that it is crossed too.
            let base = u32::MAX - 20;
            let mut s = StreamBuf::new(4096);
            if anchored {
                s.start_at(base);
            }
            for (start, bytes) in &segments {
                s.push(base.wrapping_add(*start), bytes);
                // The runs stay in order, apart, and counted.
                let rel = s.frame_at(base);
                let apart = s
                    .bufs()
                    .parked
                    .windows(2)
                    .all(|w| rel(w[0].seq) + w[0].bytes.len() as i64 <= rel(w[1].seq));
                proptest::prop_assert!(apart, "runs overlap or are out of order");
                proptest::prop_assert_eq!(
                    s.parked_bytes,
                    s.bufs().parked.iter().map(|r| r.bytes.len()).sum::<usize>()
                );
            }
            if !anchored {
                s.settle();
            }
            proptest::prop_assert_eq!(s.data(), &model(&segments, anchored)[..]);
            proptest::prop_assert_eq!(
                s.parked_bytes,
                s.bufs().parked.iter().map(|r| r.bytes.len()).sum::<usize>()
            );
            proptest::prop_assert_eq!(s.dropped_bytes, 0);
        }
    }
}
