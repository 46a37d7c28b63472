//! A small, bounded TCP reassembly buffer for one direction of a flow.
//!
//! It keeps only the bytes an extractor still needs: in-order data from the first
//! sequence number seen (or SYN+1), retransmissions trimmed, out-of-order segments parked
//! until the gap fills. Both the in-order window and the parked bytes are capped, so a
//! flood of segments costs at most `cap` bytes per direction.

/// Parked out-of-order segments per direction; more are dropped (and counted).
const MAX_PARKED_SEGMENTS: usize = 16;

#[derive(Debug, Default)]
pub struct StreamBuf {
    /// Sequence number of the next in-order byte (the one after `data`'s end).
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

    /// Sets the first sequence number (SYN's sequence number + 1).
    pub fn start_at(&mut self, seq: u32) {
        if self.next_seq.is_none() {
            self.next_seq = Some(seq);
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

    pub fn push(&mut self, seq: u32, payload: &[u8]) -> Pushed {
        if payload.is_empty() {
            return Pushed::Nothing;
        }
        let next = *self.next_seq.get_or_insert(seq);
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
            let (seq, bytes) = self.parked.swap_remove(i);
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
    fn cap_bounds_memory_and_counts() {
        let mut s = StreamBuf::new(8);
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
        s.push(0, b"abc");
        s.push(3, b"def");
        s.consume(4);
        assert_eq!(s.data(), b"ef");
        assert_eq!(s.segment_starts(), &[] as &[usize]);
        s.push(6, b"g");
        assert_eq!(s.segment_starts(), &[2]);
    }
}
