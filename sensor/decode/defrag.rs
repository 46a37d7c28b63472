//! IPv4 and IPv6 fragment reassembly, bounded.
//!
//! Policy on overlaps: an exact duplicate of a fragment already held is ignored (a
//! retransmission); any other overlap drops the whole datagram and is counted. RFC 5722
//! requires this for IPv6, and Linux applies it to IPv4 too since 2018 (FragmentSmack):
//! a sensor that picked one side of an overlap could read something the receiver never did.
//!
//! Bounds: datagrams in progress, bytes held, datagrams per source, and a timeout in packet
//! time. Everything shed is counted by reason.

use super::Fragment;
use crate::time::Timestamp;
use std::collections::{BTreeMap, HashMap};
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
            max_datagrams: 8192,
            max_bytes: 32 << 20,
            max_per_source: 256,
            timeout_secs: 30,
        }
    }
}

/// Largest IP datagram (the 16-bit length field).
const MAX_DATAGRAM: usize = 65_535;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    protocol: u8,
}

#[derive(Debug)]
struct Partial {
    first_seen: Timestamp,
    ipv4_header: Option<Vec<u8>>,
    pieces: Vec<(usize, Vec<u8>)>,
    total: Option<usize>,
    held: usize,
}

/// What adding a fragment did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    /// The whole IP datagram (header rebuilt, no fragmentation), ready to decode as raw IP.
    Complete(Vec<u8>),
    Dropped(&'static str),
}

pub struct Defragmenter {
    limits: DefragLimits,
    table: HashMap<Key, Partial, ahash::RandomState>,
    per_source: HashMap<IpAddr, usize, ahash::RandomState>,
    held: usize,
    last_sweep: Timestamp,
    /// Counts by reason: `defrag_overlap`, `defrag_timeout`, `defrag_memory_cap`, …
    pub counts: BTreeMap<&'static str, u64>,
}

impl Defragmenter {
    pub fn new(limits: DefragLimits) -> Self {
        Defragmenter {
            limits,
            table: HashMap::default(),
            per_source: HashMap::default(),
            held: 0,
            last_sweep: Timestamp::default(),
            counts: BTreeMap::new(),
        }
    }

    pub fn in_progress(&self) -> usize {
        self.table.len()
    }

    pub fn bytes_held(&self) -> usize {
        self.held
    }

    fn count(&mut self, reason: &'static str) {
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
            self.count("defrag_timeout");
        }
    }

    pub fn add(&mut self, ts: Timestamp, f: &Fragment<'_>) -> Outcome {
        if ts.secs() != self.last_sweep.secs() {
            self.sweep(ts);
            self.last_sweep = ts;
        }
        let end = f.offset + f.payload.len();
        if end > MAX_DATAGRAM {
            return self.drop_new("defrag_too_large");
        }
        if f.more && f.payload.len() % 8 != 0 {
            return self.drop_new("defrag_bad_length");
        }
        let key = Key {
            src: f.src,
            dst: f.dst,
            id: f.id,
            protocol: f.protocol,
        };
        if !self.table.contains_key(&key) {
            if self.table.len() >= self.limits.max_datagrams {
                return self.drop_new("defrag_table_full");
            }
            if self.per_source.get(&f.src).copied().unwrap_or(0) >= self.limits.max_per_source {
                return self.drop_new("defrag_source_cap");
            }
            *self.per_source.entry(f.src).or_default() += 1;
            self.table.insert(
                key,
                Partial {
                    first_seen: ts,
                    ipv4_header: None,
                    pieces: Vec::new(),
                    total: None,
                    held: 0,
                },
            );
        }
        if self.held + f.payload.len() > self.limits.max_bytes {
            self.remove(&key);
            return self.drop_new("defrag_memory_cap");
        }
        let verdict = {
            let Some(p) = self.table.get_mut(&key) else {
                return Outcome::Pending;
            };
            insert_piece(p, f, end)
        };
        match verdict {
            Insert::Duplicate => Outcome::Pending,
            Insert::Conflict(reason) => {
                self.remove(&key);
                self.drop_new(reason)
            }
            Insert::Added(bytes) => {
                self.held += bytes;
                let complete = self.table.get(&key).is_some_and(|p| {
                    p.total
                        .is_some_and(|t| p.pieces.iter().map(|(_, d)| d.len()).sum::<usize>() == t)
                });
                if !complete {
                    return Outcome::Pending;
                }
                match self.remove(&key) {
                    Some(p) => match rebuild(&key, p) {
                        Some(datagram) => {
                            self.count("defrag_reassembled");
                            Outcome::Complete(datagram)
                        }
                        None => self.drop_new("defrag_no_first_fragment"),
                    },
                    None => Outcome::Pending,
                }
            }
        }
    }

    fn drop_new(&mut self, reason: &'static str) -> Outcome {
        self.count(reason);
        Outcome::Dropped(reason)
    }
}

enum Insert {
    Added(usize),
    Duplicate,
    Conflict(&'static str),
}

fn insert_piece(p: &mut Partial, f: &Fragment<'_>, end: usize) -> Insert {
    for (off, data) in &p.pieces {
        let (a, b) = (*off, off + data.len());
        if f.offset < b && a < end {
            return if *off == f.offset && data.as_slice() == f.payload {
                Insert::Duplicate
            } else {
                Insert::Conflict("defrag_overlap")
            };
        }
    }
    if !f.more {
        if p.total.is_some_and(|t| t != end) {
            return Insert::Conflict("defrag_inconsistent_length");
        }
        p.total = Some(end);
    }
    if p.total.is_some_and(|t| end > t) {
        return Insert::Conflict("defrag_inconsistent_length");
    }
    if f.offset == 0 {
        p.ipv4_header = f.ipv4_header.map(<[u8]>::to_vec);
    }
    p.pieces.push((f.offset, f.payload.to_vec()));
    p.held += f.payload.len();
    Insert::Added(f.payload.len())
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
            Outcome::Dropped("defrag_overlap")
        );
        assert_eq!(d.in_progress(), 0);
        assert_eq!(d.counts.get("defrag_overlap"), Some(&1));
    }

    #[test]
    fn bounded_by_count_source_memory_and_time() {
        let data = [0u8; 16];
        let limits = DefragLimits {
            max_datagrams: 4,
            max_per_source: 3,
            max_bytes: 50,
            timeout_secs: 30,
        };
        let mut d = Defragmenter::new(limits);
        let t = Timestamp::from_parts(1, 0);
        for id in 0..3 {
            let mut f = frag(16, true, &data, &HDR);
            f.id = id;
            assert_eq!(d.add(t, &f), Outcome::Pending);
        }
        let mut f = frag(16, true, &data, &HDR);
        f.id = 99;
        assert_eq!(d.add(t, &f), Outcome::Dropped("defrag_source_cap"));
        f.src = "10.9.9.9".parse().unwrap();
        assert_eq!(d.add(t, &f), Outcome::Dropped("defrag_memory_cap"));
        assert!(d.bytes_held() <= 50);
        d.add(Timestamp::from_parts(40, 0), &frag(0, false, &[], &HDR));
        assert_eq!(d.counts.get("defrag_timeout"), Some(&3));
    }
}
