//! IPv4 and IPv6 fragment reassembly, bounded.
//!
//! Policy on overlaps, Linux's (`inet_frag_queue_insert`, the same for IPv4 and IPv6 since
//! 2018, FragmentSmack): a fragment that lies wholly inside bytes already held is a duplicate
//! and is dropped, whatever its bytes, the datagram kept; any other overlap drops the whole
//! datagram and is counted (RFC 5722). "Held" is Linux's notion: runs of fragments, each run
//! one fragment or fragments that arrived one right after the end of the last, so a
//! fragment inside two adjacent fragments that arrived out of order is an overlap, not a
//! duplicate. A sensor that settled an overlap any other way could read bytes the receiver
//! never did: a decoy fragment inside a real one, or a real one inside a decoy.
//!
//! Bounds: datagrams in progress, bytes held (payload and the bookkeeping of every fragment,
//! so a flood of tiny fragments costs what it really costs), fragments per datagram,
//! datagrams per source, and a timeout in packet time. Everything shed is counted by reason.
//!
//! When the table or the bytes are full, the oldest datagrams in progress are shed to make
//! room, not the new one (Linux's evictor does the same): a flood of fragments that never
//! complete would otherwise hold the table for a whole timeout and refuse every legitimate
//! datagram behind it. A single source is held to its own cap and cannot evict the others'.

use super::Fragment;
use crate::time::Timestamp;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;

#[derive(Debug, Clone, Copy)]
pub struct DefragLimits {
    pub max_datagrams: usize,
    pub max_bytes: usize,
    pub max_per_source: usize,
    pub timeout_secs: u64,
}

impl Default for DefragLimits {
    fn default() -> Self {
        DefragLimits {
            max_datagrams: 1024,
            max_bytes: 4 << 20,
            max_per_source: 256,
            timeout_secs: 30,
        }
    }
}

/// Largest IP datagram (the 16-bit length field).
const MAX_DATAGRAM: usize = 65_535;

/// Fragments one datagram may have. The largest datagram over the smallest MTU IPv4 must
/// accept (576 bytes) takes 119; more is a flood of tiny fragments, whose every insertion
/// would scan all the fragments before it.
pub const MAX_FRAGMENTS_PER_DATAGRAM: usize = 128;

/// Bookkeeping charged to the byte cap per fragment held: its entry in the datagram's list
/// and the allocation of its bytes. An estimate, kept on the high side.
const PIECE_OVERHEAD: usize = std::mem::size_of::<(usize, Vec<u8>)>() + 16;

/// Bookkeeping charged per datagram in progress: its table entry and its place in the age order.
const DATAGRAM_OVERHEAD: usize =
    std::mem::size_of::<(Key, Partial)>() + std::mem::size_of::<(u64, Key)>() + 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    protocol: u8,
}

#[derive(Debug)]
struct Partial {
    /// Creation order: where this datagram stands in `Defragmenter::age`.
    serial: u64,
    first_seen: Timestamp,
    ipv4_header: Option<Vec<u8>>,
    pieces: Vec<(usize, Vec<u8>)>,
    /// Where the fragments held lie, as Linux groups them (see the module doc): runs of
    /// bytes, start and end, not overlapping.
    runs: Vec<(usize, usize)>,
    total: Option<usize>,
    /// Bytes charged to the cap: payload and bookkeeping.
    held: usize,
}

/// What the defragmenter counts: datagrams rebuilt, and each reason a datagram in progress
/// (or a new fragment) was shed. `reason()` is the drop label (`stage="defrag"`), `label()`
/// the anomaly label (`defrag_` and the reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Event {
    /// Not a drop: a datagram was rebuilt whole.
    Reassembled,
    /// Waited longer than the reassembly timeout.
    Timeout,
    /// Would be larger than an IP datagram can be.
    TooLarge,
    BadLength,
    /// The source already has its most datagrams in progress.
    SourceCap,
    TableFull,
    MemoryCap,
    TooManyFragments,
    NoFirstFragment,
    Overlap,
    /// Not a datagram shed: a fragment inside bytes already held, with other bytes than
    /// those (a duplicate is dropped, see the module doc). No retransmission does that; a
    /// decoy does.
    DuplicateDiffers,
    InconsistentLength,
    /// Still in progress when the input ended.
    IncompleteAtEnd,
}

impl Event {
    pub const ALL: [Event; 13] = [
        Event::Reassembled,
        Event::Timeout,
        Event::TooLarge,
        Event::BadLength,
        Event::SourceCap,
        Event::TableFull,
        Event::MemoryCap,
        Event::TooManyFragments,
        Event::NoFirstFragment,
        Event::Overlap,
        Event::DuplicateDiffers,
        Event::InconsistentLength,
        Event::IncompleteAtEnd,
    ];

    /// The reason label under `vendorwatch_dropped_total{stage="defrag"}`.
    pub fn reason(self) -> &'static str {
        match self {
            Event::Reassembled => "reassembled",
            Event::Timeout => "timeout",
            Event::TooLarge => "too_large",
            Event::BadLength => "bad_length",
            Event::SourceCap => "source_cap",
            Event::TableFull => "table_full",
            Event::MemoryCap => "memory_cap",
            Event::TooManyFragments => "too_many_fragments",
            Event::NoFirstFragment => "no_first_fragment",
            Event::Overlap => "overlap",
            Event::DuplicateDiffers => "duplicate_differs",
            Event::InconsistentLength => "inconsistent_length",
            Event::IncompleteAtEnd => "incomplete_at_end",
        }
    }

    /// The anomaly label (the summary's): `defrag_` and the reason.
    pub fn label(self) -> &'static str {
        match self {
            Event::Reassembled => "defrag_reassembled",
            Event::Timeout => "defrag_timeout",
            Event::TooLarge => "defrag_too_large",
            Event::BadLength => "defrag_bad_length",
            Event::SourceCap => "defrag_source_cap",
            Event::TableFull => "defrag_table_full",
            Event::MemoryCap => "defrag_memory_cap",
            Event::TooManyFragments => "defrag_too_many_fragments",
            Event::NoFirstFragment => "defrag_no_first_fragment",
            Event::Overlap => "defrag_overlap",
            Event::DuplicateDiffers => "defrag_duplicate_differs",
            Event::InconsistentLength => "defrag_inconsistent_length",
            Event::IncompleteAtEnd => "defrag_incomplete_at_end",
        }
    }
}

/// What adding a fragment did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    /// The whole IP datagram (header rebuilt, no fragmentation), ready to decode as raw IP.
    Complete(Vec<u8>),
    Dropped(Event),
}

pub struct Defragmenter {
    limits: DefragLimits,
    table: HashMap<Key, Partial, ahash::RandomState>,
    per_source: HashMap<IpAddr, usize, ahash::RandomState>,
    /// Datagrams in creation order, oldest first; entries whose datagram has gone (or was
    /// re-created under a new serial) are skipped when met and compacted away in bulk.
    age: VecDeque<(u64, Key)>,
    next_serial: u64,
    held: usize,
    last_sweep: Timestamp,
    /// Counts by event: datagrams reassembled, and every shed fragment by its reason.
    pub counts: BTreeMap<Event, u64>,
}

impl Defragmenter {
    pub fn new(limits: DefragLimits) -> Self {
        Defragmenter {
            limits,
            table: HashMap::default(),
            per_source: HashMap::default(),
            age: VecDeque::new(),
            next_serial: 0,
            held: 0,
            last_sweep: Timestamp::default(),
            counts: BTreeMap::new(),
        }
    }

    pub fn in_progress(&self) -> usize {
        self.table.len()
    }

    /// Bytes charged to the cap: the payload held and its bookkeeping.
    pub fn bytes_held(&self) -> usize {
        self.held
    }

    /// Sheds the oldest datagram in progress other than `keep`, counted as `reason`.
    /// Returns false when there is none.
    fn evict_oldest(&mut self, keep: Option<&Key>, reason: Event) -> bool {
        let mut skipped = None;
        while let Some((serial, key)) = self.age.pop_front() {
            if self.table.get(&key).map(|p| p.serial) != Some(serial) {
                continue;
            }
            if Some(&key) == keep {
                skipped = Some((serial, key));
                continue;
            }
            self.remove(&key);
            self.count(reason);
            if let Some(own) = skipped {
                self.age.push_front(own);
            }
            return true;
        }
        if let Some(own) = skipped {
            self.age.push_front(own);
        }
        false
    }

    fn count(&mut self, reason: Event) {
        *self.counts.entry(reason).or_default() += 1;
    }

    fn remove(&mut self, key: &Key) -> Option<Partial> {
        let p = self.table.remove(key)?;
        self.held -= p.held;
        if let Some(n) = self.per_source.get_mut(&key.src) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&key.src);
            }
        }
        Some(p)
    }

    fn sweep(&mut self, now: Timestamp) {
        let timeout = self.limits.timeout_secs;
        let expired: Vec<Key> = self
            .table
            .iter()
            .filter(|(_, p)| now >= p.first_seen.saturating_add_secs(timeout) || now < p.first_seen)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            self.remove(&k);
            self.count(Event::Timeout);
        }
    }

    pub fn add(&mut self, ts: Timestamp, f: &Fragment<'_>) -> Outcome {
        if ts.secs() != self.last_sweep.secs() {
            self.sweep(ts);
            self.last_sweep = ts;
        }
        let end = f.offset + f.payload.len();
        if end > MAX_DATAGRAM {
            return self.drop_new(Event::TooLarge);
        }
        if f.more && f.payload.len() % 8 != 0 {
            return self.drop_new(Event::BadLength);
        }
        let key = Key {
            src: f.src,
            dst: f.dst,
            id: f.id,
            protocol: f.protocol,
        };
        let charge = f.payload.len() + PIECE_OVERHEAD;
        if !self.table.contains_key(&key) {
            if let Err(reason) = self.start(key, ts, charge) {
                return self.drop_new(reason);
            }
        }
        if let Err(reason) = self.make_room(&key, charge) {
            self.remove(&key);
            return self.drop_new(reason);
        }
        let verdict = {
            let Some(p) = self.table.get_mut(&key) else {
                return Outcome::Pending;
            };
            insert_piece(p, f, end)
        };
        match verdict {
            Insert::Duplicate => Outcome::Pending,
            Insert::DuplicateDiffers => {
                self.count(Event::DuplicateDiffers);
                Outcome::Pending
            }
            Insert::Conflict(reason) => {
                self.remove(&key);
                self.drop_new(reason)
            }
            Insert::Added => {
                self.held += charge;
                self.complete(&key)
            }
        }
    }

    /// Opens a datagram in progress for `key` (first seen at `ts`), shedding the oldest
    /// others when the table is full. The reason, when the new fragment is shed instead: its
    /// source is at its cap, or no table or byte cap could ever hold it.
    fn start(&mut self, key: Key, ts: Timestamp, charge: usize) -> Result<(), Event> {
        if self.per_source.get(&key.src).copied().unwrap_or(0) >= self.limits.max_per_source {
            return Err(Event::SourceCap);
        }
        if self.limits.max_datagrams == 0 {
            return Err(Event::TableFull);
        }
        if charge + DATAGRAM_OVERHEAD > self.limits.max_bytes {
            return Err(Event::MemoryCap);
        }
        while self.table.len() >= self.limits.max_datagrams {
            if !self.evict_oldest(None, Event::TableFull) {
                break;
            }
        }
        *self.per_source.entry(key.src).or_default() += 1;
        let serial = self.next_serial;
        self.next_serial += 1;
        self.age.push_back((serial, key));
        if self.age.len() > 2 * self.table.len() + 1024 {
            let table = &self.table;
            self.age
                .retain(|(s, k)| table.get(k).is_some_and(|p| p.serial == *s));
        }
        self.held += DATAGRAM_OVERHEAD;
        self.table.insert(
            key,
            Partial {
                serial,
                first_seen: ts,
                ipv4_header: None,
                pieces: Vec::new(),
                runs: Vec::new(),
                total: None,
                held: DATAGRAM_OVERHEAD,
            },
        );
        Ok(())
    }

    /// Makes room for one more fragment of `charge` bytes in `key`'s datagram, shedding the
    /// oldest other datagrams when the bytes are full. The reason, when `key`'s datagram
    /// must go instead: it has its most fragments, or nothing else is left to shed.
    fn make_room(&mut self, key: &Key, charge: usize) -> Result<(), Event> {
        if self
            .table
            .get(key)
            .is_some_and(|p| p.pieces.len() >= MAX_FRAGMENTS_PER_DATAGRAM)
        {
            return Err(Event::TooManyFragments);
        }
        while self.held + charge > self.limits.max_bytes {
            if !self.evict_oldest(Some(key), Event::MemoryCap) {
                return Err(Event::MemoryCap);
            }
        }
        Ok(())
    }

    /// Hands over `key`'s datagram, rebuilt, once all its bytes are there.
    fn complete(&mut self, key: &Key) -> Outcome {
        let complete = self.table.get(key).is_some_and(|p| {
            p.total
                .is_some_and(|t| p.pieces.iter().map(|(_, d)| d.len()).sum::<usize>() == t)
        });
        if !complete {
            return Outcome::Pending;
        }
        match self.remove(key) {
            Some(p) => match rebuild(key, p) {
                Some(datagram) => {
                    self.count(Event::Reassembled);
                    Outcome::Complete(datagram)
                }
                None => self.drop_new(Event::NoFirstFragment),
            },
            None => Outcome::Pending,
        }
    }

    fn drop_new(&mut self, reason: Event) -> Outcome {
        self.count(reason);
        Outcome::Dropped(reason)
    }
}

enum Insert {
    Added,
    Duplicate,
    /// A duplicate whose bytes are not those held.
    DuplicateDiffers,
    Conflict(Event),
}

fn insert_piece(p: &mut Partial, f: &Fragment<'_>, end: usize) -> Insert {
    if !f.more {
        if p.total.is_some_and(|t| t != end) {
            return Insert::Conflict(Event::InconsistentLength);
        }
        p.total = Some(end);
    }
    if p.total.is_some_and(|t| end > t) {
        return Insert::Conflict(Event::InconsistentLength);
    }
    let offset = f.offset;
    // The run that ends highest: the last fragment's (Linux's `fragments_tail`).
    let last = p.runs.iter().enumerate().max_by_key(|(_, run)| run.1);
    match last {
        None => p.runs.push((offset, end)),
        // The common case: the fragment ends past everything held.
        Some((i, &(_, last_end))) if last_end < end => {
            if offset < last_end {
                return Insert::Conflict(Event::Overlap);
            }
            if offset == last_end {
                p.runs[i].1 = end;
            } else {
                p.runs.push((offset, end));
            }
        }
        Some(_) => {
            for &(start, run_end) in &p.runs {
                if end <= start || offset >= run_end {
                    continue;
                }
                return if offset >= start && end <= run_end {
                    if same_as_held(p, offset, f.payload) {
                        Insert::Duplicate
                    } else {
                        Insert::DuplicateDiffers
                    }
                } else {
                    Insert::Conflict(Event::Overlap)
                };
            }
            p.runs.push((offset, end));
        }
    }
    if f.offset == 0 {
        p.ipv4_header = f.ipv4_header.map(<[u8]>::to_vec);
    }
    p.pieces.push((f.offset, f.payload.to_vec()));
    p.held += f.payload.len() + PIECE_OVERHEAD;
    Insert::Added
}

/// Whether `bytes` at `offset` are what the fragments held have there.
fn same_as_held(p: &Partial, offset: usize, bytes: &[u8]) -> bool {
    let end = offset + bytes.len();
    p.pieces.iter().all(|(at, held)| {
        let (from, to) = (offset.max(*at), end.min(at + held.len()));
        from >= to || held.get(from - at..to - at) == bytes.get(from - offset..to - offset)
    })
}

/// The datagram with an unfragmented header: IPv4 keeps the first fragment's header
/// (options too) with the length fixed and the fragment fields cleared; IPv6 gets a plain
/// 40-byte header whose next header is the reassembled protocol.
fn rebuild(key: &Key, mut p: Partial) -> Option<Vec<u8>> {
    p.pieces.sort_by_key(|(off, _)| *off);
    let total = p.total?;
    if p.pieces.first().map(|(o, _)| *o) != Some(0) {
        return None;
    }
    let mut out;
    match (key.src, key.dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => {
            let header = p.ipv4_header?;
            out = Vec::with_capacity(header.len() + total);
            out.extend_from_slice(&header);
            let len = u16::try_from(header.len() + total).ok()?;
            out[2..4].copy_from_slice(&len.to_be_bytes());
            out[6] = 0;
            out[7] = 0;
            out[10] = 0;
            out[11] = 0;
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out = Vec::with_capacity(40 + total);
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&u16::try_from(total).ok()?.to_be_bytes());
            out.push(key.protocol);
            out.push(64);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => return None,
    }
    for (_, data) in p.pieces {
        out.extend_from_slice(&data);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, Encaps, LinkType, Transport};

    fn frag<'a>(offset: usize, more: bool, payload: &'a [u8], header: &'a [u8]) -> Fragment<'a> {
        Fragment {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            id: 7,
            protocol: 17,
            offset,
            more,
            payload,
            ipv4_header: (offset == 0).then_some(header),
            encaps: Encaps::default(),
        }
    }

    const HDR: [u8; 20] = [
        0x45, 0, 0, 0, 0, 7, 0x20, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];

    fn udp(len: usize) -> Vec<u8> {
        let mut u = vec![0x30, 0x39, 0, 53];
        u.extend_from_slice(&((len) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.resize(len, 0xab);
        u
    }

    #[test]
    fn out_of_order_fragments_rebuild_a_decodable_datagram() {
        let data = udp(40);
        let mut d = Defragmenter::new(DefragLimits::default());
        let t = Timestamp::from_parts(1, 0);
        assert_eq!(
            d.add(t, &frag(16, true, &data[16..32], &HDR)),
            Outcome::Pending
        );
        assert_eq!(
            d.add(t, &frag(32, false, &data[32..], &HDR)),
            Outcome::Pending
        );
        let Outcome::Complete(dgram) = d.add(t, &frag(0, true, &data[..16], &HDR)) else {
            panic!("incomplete")
        };
        let pkt = decode(LinkType::RawIp, &dgram).expect("decodes");
        let Transport::Udp(u) = pkt.transport else {
            panic!("not UDP")
        };
        assert_eq!((u.src_port, u.dst_port, u.payload.len()), (12345, 53, 32));
        assert_eq!(d.in_progress(), 0);
        assert_eq!(d.bytes_held(), 0);
    }

    #[test]
    fn duplicates_are_ignored_and_overlaps_drop_the_datagram() {
        let data = udp(40);
        let mut d = Defragmenter::new(DefragLimits::default());
        let t = Timestamp::from_parts(1, 0);
        d.add(t, &frag(0, true, &data[..16], &HDR));
        assert_eq!(
            d.add(t, &frag(0, true, &data[..16], &HDR)),
            Outcome::Pending
        );
        let other = [0u8; 16];
        assert_eq!(
            d.add(t, &frag(8, true, &other, &HDR)),
            Outcome::Dropped(Event::Overlap)
        );
        assert_eq!(d.in_progress(), 0);
        assert_eq!(d.counts.get(&Event::Overlap), Some(&1));
    }

    #[test]
    fn a_fragment_inside_what_is_held_is_dropped_whatever_its_bytes_as_linux_does() {
        let data = udp(40);
        let decoy = [0xeeu8; 8];
        let t = Timestamp::from_parts(1, 0);
        // Inside one fragment, and inside two that arrived one after the other (one run):
        // dropped, the first bytes kept.
        for held in [vec![(0, 24)], vec![(0, 16), (16, 24)]] {
            let mut d = Defragmenter::new(DefragLimits::default());
            for (a, b) in held {
                assert_eq!(
                    d.add(t, &frag(a, true, &data[a..b], &HDR)),
                    Outcome::Pending
                );
            }
            assert_eq!(d.add(t, &frag(8, true, &decoy, &HDR)), Outcome::Pending);
            assert_eq!(d.counts.get(&Event::DuplicateDiffers), Some(&1));
            // The same bytes again: a retransmission, not counted.
            assert_eq!(
                d.add(t, &frag(8, true, &data[8..16], &HDR)),
                Outcome::Pending
            );
            assert_eq!(d.counts.get(&Event::DuplicateDiffers), Some(&1));
            match d.add(t, &frag(24, false, &data[24..], &HDR)) {
                Outcome::Complete(datagram) => assert_eq!(&datagram[20..], &data[..]),
                other => panic!("{other:?}"),
            }
        }
        // Across two fragments that did not arrive in order (two runs), or around a small
        // one held first: an overlap, and the datagram is dropped.
        for held in [vec![(16, 24), (0, 16)], vec![(8, 16)]] {
            let mut d = Defragmenter::new(DefragLimits::default());
            for (a, b) in held {
                d.add(t, &frag(a, true, &data[a..b], &HDR));
            }
            assert_eq!(d.in_progress(), 1);
            assert_eq!(
                d.add(t, &frag(8, true, &data[8..24], &HDR)),
                Outcome::Dropped(Event::Overlap)
            );
        }
    }

    fn mid<'a>(src: &str, id: u32, payload: &'a [u8]) -> Fragment<'a> {
        Fragment {
            src: src.parse().unwrap(),
            id,
            ..frag(16, true, payload, &HDR)
        }
    }

    #[test]
    fn a_source_is_held_to_its_cap_and_time_expires_what_is_held() {
        let data = [0u8; 16];
        let limits = DefragLimits {
            max_per_source: 3,
            ..DefragLimits::default()
        };
        let mut d = Defragmenter::new(limits);
        let t = Timestamp::from_parts(1, 0);
        for id in 0..3 {
            assert_eq!(d.add(t, &mid("10.0.0.1", id, &data)), Outcome::Pending);
        }
        assert_eq!(
            d.add(t, &mid("10.0.0.1", 99, &data)),
            Outcome::Dropped(Event::SourceCap)
        );
        // Another source is not held back by the first one's cap.
        assert_eq!(d.add(t, &mid("10.9.9.9", 99, &data)), Outcome::Pending);
        d.add(Timestamp::from_parts(40, 0), &frag(0, false, &[], &HDR));
        assert_eq!(d.counts.get(&Event::Timeout), Some(&4));
    }

    #[test]
    fn a_full_table_sheds_its_oldest_datagram_and_a_new_one_still_completes() {
        let limits = DefragLimits {
            max_datagrams: 4,
            ..DefragLimits::default()
        };
        let mut d = Defragmenter::new(limits);
        let t = Timestamp::from_parts(1, 0);
        let junk = [0u8; 16];
        for id in 100..110 {
            assert_eq!(d.add(t, &mid("10.7.0.1", id, &junk)), Outcome::Pending);
            assert!(d.in_progress() <= 4);
        }
        assert_eq!(d.counts.get(&Event::TableFull), Some(&6));
        // A legitimate datagram arriving now is rebuilt, at the cost of the oldest junk.
        let data = udp(40);
        assert_eq!(
            d.add(t, &frag(0, true, &data[..16], &HDR)),
            Outcome::Pending
        );
        assert!(matches!(
            d.add(t, &frag(16, false, &data[16..], &HDR)),
            Outcome::Complete(_)
        ));
        assert_eq!(d.counts.get(&Event::TableFull), Some(&7));
        assert_eq!(d.in_progress(), 3);
    }

    #[test]
    fn the_byte_cap_charges_bookkeeping_and_sheds_the_oldest() {
        // Room for a few tiny fragments only once their bookkeeping is charged.
        let limits = DefragLimits {
            max_bytes: DATAGRAM_OVERHEAD * 2 + (8 + PIECE_OVERHEAD) * 6,
            ..DefragLimits::default()
        };
        let mut d = Defragmenter::new(limits);
        let t = Timestamp::from_parts(1, 0);
        let tiny = [0u8; 8];
        for j in 0..5 {
            let f = Fragment {
                id: 1,
                ..frag(8 * (1 + j), true, &tiny, &HDR)
            };
            assert_eq!(d.add(t, &f), Outcome::Pending);
        }
        for j in 0..5 {
            let f = Fragment {
                id: 2,
                ..frag(8 * (1 + j), true, &tiny, &HDR)
            };
            assert_eq!(d.add(t, &f), Outcome::Pending);
            assert!(d.bytes_held() <= limits.max_bytes);
        }
        // Datagram 1, the oldest, made room for datagram 2.
        assert_eq!(d.counts.get(&Event::MemoryCap), Some(&1));
        assert_eq!(d.in_progress(), 1);
        assert_eq!(d.bytes_held(), DATAGRAM_OVERHEAD + 5 * (8 + PIECE_OVERHEAD));
    }

    #[test]
    fn too_many_fragments_drop_the_datagram() {
        let mut d = Defragmenter::new(DefragLimits::default());
        let t = Timestamp::from_parts(1, 0);
        let tiny = [0u8; 8];
        for j in 0..MAX_FRAGMENTS_PER_DATAGRAM {
            assert_eq!(
                d.add(t, &frag(8 * (1 + j), true, &tiny, &HDR)),
                Outcome::Pending
            );
        }
        let next = frag(8 * (1 + MAX_FRAGMENTS_PER_DATAGRAM), true, &tiny, &HDR);
        assert_eq!(d.add(t, &next), Outcome::Dropped(Event::TooManyFragments));
        assert_eq!((d.in_progress(), d.bytes_held()), (0, 0));
    }
}
