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
//! **Overlaps: the first copy wins.** Bytes already delivered are never replaced by a later
//! segment that covers them (a retransmission, or an overlap with other bytes), and among
//! parked segments that cover the same bytes the one that arrived first is used (Suricata's
//! `first` policy, which is what Linux and BSD receivers do with an overlap of data they
//! already queued). Segments that the receiver would have dropped (bad checksums) are kept
//! out by the caller, so an insertion cannot be the first copy.

/// Parked out-of-order segments per direction; more are dropped (and counted).
const MAX_PARKED_SEGMENTS: usize = 16;
/// Segments an unanchored direction collects before it starts at the lowest of them: a
/// ClientHello of Chromium's size (about 2 KB) in 536-byte segments, with room for re-ordering.
pub const MIDSTREAM_WINDOW_SEGMENTS: usize = 8;

#[derive(Debug, Default)]
pub struct StreamBuf {
    /// Sequence number of the next in-order byte (the one after `data`'s end); `None` while
    /// the direction is unanchored.
    next_seq: Option<u32>,
    data: Vec<u8>,
    /// Offsets in `data` where a segment began: where a new message is likely to start.
    segment_starts: Vec<usize>,
    parked: Vec<(u32, Vec<u8>)>,
    parked_bytes: usize,
    cap: usize,
    /// Bytes dropped because a cap was reached.
    pub dropped_bytes: u64,
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
        self.data.clear();
        self.segment_starts.clear();
        self.next_seq = Some(seq);
        self.deliver_parked()
    }

    /// Whether the direction still waits for its start (no SYN, not settled yet).
    pub fn is_unanchored(&self) -> bool {
        self.next_seq.is_none()
    }

    /// Segments parked while unanchored (the caller settles after a window of them).
    pub fn parked_segments(&self) -> usize {
        self.parked.len()
    }

    /// Ends the mid-stream window of an unanchored direction: it starts at the lowest
    /// sequence number parked. Returns whether bytes are now deliverable.
    pub fn settle(&mut self) -> Pushed {
        if self.next_seq.is_some() {
            return Pushed::Nothing;
        }
        let Some(&(base, _)) = self.parked.first() else {
            return Pushed::Nothing;
        };
        // Sequence numbers are compared relative to the first parked, so a window that
        // spans the wrap of the sequence space still finds its lowest.
        let lowest = self
            .parked
            .iter()
            .map(|(s, _)| *s)
            .min_by_key(|s| s.wrapping_sub(base) as i32)
            .unwrap_or(base);
        self.next_seq = Some(lowest);
        self.deliver_parked()
    }

    fn deliver_parked(&mut self) -> Pushed {
        let before = self.data.len();
        self.unpark();
        if self.data.len() > before {
            Pushed::Data
        } else {
            Pushed::Nothing
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Heap bytes this buffer holds (what the worker's reassembly budget counts).
    pub fn held(&self) -> usize {
        self.data.capacity()
            + self.segment_starts.capacity() * std::mem::size_of::<usize>()
            + self.parked.iter().map(|(_, p)| p.capacity()).sum::<usize>()
    }

    /// The in-order window reached its cap: a message that has not ended by now never will here.
    pub fn is_full(&self) -> bool {
        self.data.len() >= self.cap
    }

    pub fn segment_starts(&self) -> &[usize] {
        &self.segment_starts
    }

    /// Drops the first `n` bytes (an extractor has read them).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.data.len());
        self.data.drain(..n);
        self.segment_starts.retain_mut(|s| {
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
        self.data = Vec::new();
        self.segment_starts = Vec::new();
        self.parked = Vec::new();
        self.parked_bytes = 0;
    }

    /// Passes over in-order bytes that nothing will read (the direction's protocol ignores
    /// it): the sequence number moves on, nothing is copied. Does that, and returns true,
    /// only where `push` followed by `release` would leave the same state: the bytes come
    /// right where an empty, anchored buffer with nothing parked expects them. Otherwise it
    /// does nothing and returns false, and the caller pushes.
    pub fn pass_in_order(&mut self, seq: u32, len: usize) -> bool {
        if self.next_seq != Some(seq) || !self.data.is_empty() || !self.parked.is_empty() {
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

    fn append(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.data.len());
        let take = bytes.len().min(room);
        if take > 0 {
            self.segment_starts.push(self.data.len());
            self.data.extend_from_slice(&bytes[..take]);
        }
        self.dropped_bytes += (bytes.len() - take) as u64;
        // Sequence space advances by everything in order, kept or not.
        if let Some(next) = self.next_seq.as_mut() {
            *next = next.wrapping_add(bytes.len() as u32);
        }
    }

    fn park(&mut self, seq: u32, payload: &[u8]) {
        if self.parked.len() >= MAX_PARKED_SEGMENTS || self.parked_bytes + payload.len() > self.cap
        {
            self.dropped_bytes += payload.len() as u64;
            return;
        }
        if self
            .parked
            .iter()
            .any(|(s, p)| *s == seq && p.len() >= payload.len())
        {
            return;
        }
        self.parked_bytes += payload.len();
        self.parked.push((seq, payload.to_vec()));
    }

    fn unpark(&mut self) {
        while let Some(next) = self.next_seq {
            let Some(i) = self.parked.iter().position(|(s, p)| {
                (s.wrapping_sub(next) as i32) <= 0
                    && s.wrapping_add(p.len() as u32).wrapping_sub(next) as i32 > 0
            }) else {
                // Also drop parked segments that are now entirely old.
                self.parked
                    .retain(|(s, p)| s.wrapping_add(p.len() as u32).wrapping_sub(next) as i32 > 0);
                self.parked_bytes = self.parked.iter().map(|(_, p)| p.len()).sum();
                return;
            };
            // `remove`, not `swap_remove`: the parked list stays in arrival order, so the
            // first copy of overlapping bytes is the one found first.
            let (seq, bytes) = self.parked.remove(i);
            self.parked_bytes -= bytes.len();
            let already = next.wrapping_sub(seq) as usize;
            self.append(&bytes[already..]);
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
    fn overlaps_keep_the_first_copy() {
        // Delivered bytes are never replaced.
        let mut s = StreamBuf::new(64);
        s.start_at(0);
        s.push(0, b"GET /a");
        s.push(0, b"XXXXXX/b");
        assert_eq!(s.data(), b"GET /a/b");
        // Among parked copies of the same bytes, the one that came first is used.
        let mut s = StreamBuf::new(64);
        s.push(10, b"first");
        s.push(10, b"other");
        s.push(5, b"01234");
        s.settle();
        assert_eq!(s.data(), b"01234first");
    }
}
