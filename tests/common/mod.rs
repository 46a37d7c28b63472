//! Flood captures: hostile traffic at scale, mixed with legitimate traffic copied from the
//! golden captures, for `tests/floods.rs` (small sizes) and `scripts/flood.sh` (millions).
//!
//! A flood capture is a classic pcap (Ethernet, microseconds). The legitimate traffic is
//! the packets of real captures in `pcaps/` (read with `pcap-parser`), grouped into
//! conversations (every packet between one pair of addresses, in capture order) and dealt
//! round-robin to the start, the middle and the end of the flood, so a test can assert that
//! what tshark found in them (`pcaps/expected/*.json`) is still found. Flood packets are
//! built with etherparse's `PacketBuilder`; each generator returns the numbers a test needs
//! to derive the shed counts it expects (datagrams started, flows opened, …).

#![allow(dead_code)] // each test binary uses part of it

use etherparse::{
    IpFragOffset, IpHeaders, IpNumber, Ipv4Header, Ipv6Extensions, Ipv6FragmentHeader, Ipv6Header,
    PacketBuilder,
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub fn pcap_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps")
        .join(name)
}

/// A small deterministic generator (splitmix64): floods are random, but the same every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// One legitimate conversation: frames with their time relative to the first.
pub type Unit = Vec<(u64, Vec<u8>)>;

/// Whether a frame is an IP fragment (IPv4 fragment fields or an IPv6 Fragment header).
fn is_fragment(frame: &[u8]) -> bool {
    match etherparse::LaxSlicedPacket::from_ethernet(frame).map(|p| p.net) {
        Ok(Some(etherparse::LaxNetSlice::Ipv4(ip))) => ip.is_payload_fragmented(),
        Ok(Some(etherparse::LaxNetSlice::Ipv6(ip))) => ip.is_payload_fragmented(),
        _ => false,
    }
}

/// Legitimate traffic from golden captures and what tshark found in it.
pub struct Legit {
    pub units: Vec<Unit>,
    /// Units pinned to a chunk (0 start, 1 middle, 2 end) whatever the round-robin says.
    pub pinned: Vec<Option<usize>>,
    /// The capture (index into `captures`) each unit came from.
    pub capture_of: Vec<usize>,
    /// (host, vendor, category) from `pcaps/expected/<capture>.json`.
    pub detections: BTreeSet<(String, String, String)>,
    /// Every host named in those expectations.
    pub hosts: BTreeSet<String>,
    pub captures: Vec<String>,
}

impl Legit {
    pub fn load(captures: &[&str]) -> Legit {
        let mut units = Vec::new();
        let mut capture_of = Vec::new();
        let mut detections = BTreeSet::new();
        let mut hosts = BTreeSet::new();
        for (ci, name) in captures.iter().enumerate() {
            let bytes = std::fs::read(pcap_path(name)).expect("golden capture");
            let (_, cap) = pcap_parser::parse_pcap(&bytes).expect("a classic pcap");
            assert_eq!(
                cap.header.network,
                pcap_parser::Linktype::ETHERNET,
                "{name}: the flood captures are Ethernet"
            );
            let nanos = matches!(cap.header.magic_number, 0xa1b2_3c4d | 0x4d3c_b2a1);
            let mut by_pair: BTreeMap<(IpAddr, IpAddr), usize> = BTreeMap::new();
            let mut mine: Vec<Vec<(u64, Vec<u8>)>> = Vec::new();
            for b in &cap.blocks {
                let sub = if nanos {
                    u64::from(b.ts_usec) / 1000
                } else {
                    u64::from(b.ts_usec)
                };
                let t = u64::from(b.ts_sec) * 1_000_000 + sub;
                let i = match ip_pair(b.data) {
                    Some(pair) => *by_pair.entry(pair).or_insert_with(|| {
                        mine.push(Vec::new());
                        mine.len() - 1
                    }),
                    None => {
                        mine.push(Vec::new());
                        mine.len() - 1
                    }
                };
                mine[i].push((t, b.data.to_vec()));
            }
            for mut unit in mine {
                let t0 = unit.first().map(|(t, _)| *t).unwrap_or(0);
                for (t, _) in &mut unit {
                    *t -= t0;
                }
                units.push(unit);
                capture_of.push(ci);
            }
            let expected: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(pcap_path(&format!("expected/{name}.json")))
                    .expect("expectation"),
            )
            .expect("json");
            for d in expected["detections"].as_array().into_iter().flatten() {
                let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
                hosts.insert(s("host"));
                detections.insert((s("host"), s("vendor"), s("category")));
            }
        }
        Legit {
            pinned: vec![None; units.len()],
            capture_of,
            units,
            detections,
            hosts,
            captures: captures.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Puts every conversation that carries IP fragments in the middle of the flood, where
    /// a fragment flood has filled the defragmenter.
    pub fn fragments_in_the_middle(mut self) -> Legit {
        for (i, u) in self.units.iter().enumerate() {
            if u.iter().any(|(_, f)| is_fragment(f)) {
                self.pinned[i] = Some(1);
            }
        }
        self
    }

    /// Puts every conversation of `capture` at the end, in its order: after the flood.
    pub fn at_the_end(mut self, capture: &str) -> Legit {
        if let Some(ci) = self.captures.iter().position(|c| c == capture) {
            for (i, c) in self.capture_of.iter().enumerate() {
                if *c == ci {
                    self.pinned[i] = Some(2);
                }
            }
        }
        self
    }

    /// Puts every conversation in one chunk (0 start, 1 middle, 2 end), in capture order.
    pub fn all_in(mut self, chunk: usize) -> Legit {
        self.pinned = vec![Some(chunk); self.units.len()];
        self
    }

    /// The legitimate traffic alone, laid out as a flood capture would lay it out.
    pub fn write_alone(&self, path: &Path) -> u64 {
        Mixer::create(path, self, 0).finish()
    }
}

/// The unordered pair of IP addresses of an Ethernet frame (fragments included).
fn ip_pair(frame: &[u8]) -> Option<(IpAddr, IpAddr)> {
    let p = etherparse::LaxSlicedPacket::from_ethernet(frame).ok()?;
    let (a, b): (IpAddr, IpAddr) = match p.net? {
        etherparse::LaxNetSlice::Ipv4(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        etherparse::LaxNetSlice::Ipv6(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return None,
    };
    Some(if a <= b { (a, b) } else { (b, a) })
}

/// Packet time of the first flood packet: 2026-12-02T23:50:00Z, days after the golden
/// captures were made (their own times are not kept, only their spacing).
const CLOCK_START_US: u64 = 1_796_255_400 * 1_000_000;

/// Writes a flood capture: legitimate chunk 0, half the flood, chunk 1, the rest, chunk 2.
pub struct Mixer {
    out: BufWriter<std::fs::File>,
    clock_us: u64,
    /// Packet time added per flood packet.
    pub step_us: u64,
    chunks: [Vec<Unit>; 3],
    flood_total: u64,
    pushed: u64,
    middle_done: bool,
    pub packets: u64,
    pub bytes: u64,
}

impl Mixer {
    /// `flood_total`: how many flood packets will be pushed (the middle chunk goes after half).
    pub fn create(path: &Path, legit: &Legit, flood_total: u64) -> Mixer {
        let file = std::fs::File::create(path).expect("create the flood capture");
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&0i32.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&262_144u32.to_le_bytes());
        header.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        out.write_all(&header).expect("write");
        let mut chunks: [Vec<Unit>; 3] = Default::default();
        let mut dealt = 0;
        for (u, pinned) in legit.units.iter().zip(&legit.pinned) {
            if let Some(chunk) = *pinned {
                chunks[chunk.min(2)].push(u.clone());
            } else {
                chunks[dealt % 3].push(u.clone());
                dealt += 1;
            }
        }
        let mut m = Mixer {
            out,
            clock_us: CLOCK_START_US,
            step_us: 1,
            chunks,
            flood_total,
            pushed: 0,
            middle_done: false,
            packets: 0,
            bytes: 0,
        };
        m.write_chunk(0);
        m
    }

    fn record(&mut self, ts_us: u64, frame: &[u8]) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out.write_all(&h).expect("write");
        self.out.write_all(frame).expect("write");
        self.packets += 1;
        self.bytes += frame.len() as u64;
    }

    fn write_chunk(&mut self, i: usize) {
        let units = std::mem::take(&mut self.chunks[i]);
        for unit in units {
            let start = self.clock_us;
            for (rel, frame) in &unit {
                self.record(start + rel, frame);
            }
            self.clock_us = start + unit.last().map_or(0, |(t, _)| *t) + 1;
        }
    }

    /// Packet time of the next flood packet, in microseconds since the epoch.
    pub fn now_us(&self) -> u64 {
        self.clock_us
    }

    /// Moves packet time forward (for timeouts).
    pub fn advance_us(&mut self, us: u64) {
        self.clock_us += us;
    }

    pub fn push(&mut self, frame: &[u8]) {
        if !self.middle_done && self.pushed >= self.flood_total / 2 {
            self.middle_done = true;
            self.write_chunk(1);
        }
        let t = self.clock_us;
        self.record(t, frame);
        self.clock_us += self.step_us;
        self.pushed += 1;
    }

    /// Flood packets pushed so far.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Writes the last legitimate chunks; returns the packets written.
    pub fn finish(mut self) -> u64 {
        if !self.middle_done {
            self.write_chunk(1);
        }
        self.write_chunk(2);
        self.out.flush().expect("flush");
        self.packets
    }
}

// ---------------------------------------------------------------------------------------
// Frames

/// A client port from Linux's ephemeral range (32768–60999), where real clients take theirs:
/// never DNS's, QUIC's or a tunnel's port.
pub fn ephemeral_port(rng: &mut Rng) -> u16 {
    32_768 + rng.below(28_232) as u16
}

pub const MAC_CLIENT: [u8; 6] = [0x02, 0x66, 0x6c, 0x6f, 0x6f, 0x64];
pub const MAC_ROUTER: [u8; 6] = [0x02, 0x72, 0x6f, 0x75, 0x74, 0x65];

/// A home-net IPv4 address for flood host `i` (10.64.0.0/10: never a golden-capture host).
pub fn home_v4(i: u32) -> [u8; 4] {
    let n = (64u32 << 16) + i % (1 << 22);
    [10, (n >> 16) as u8, (n >> 8) as u8, n as u8]
}

/// A home-net IPv6 address for flood host `i` (fd00:f100::/32).
pub fn home_v6(i: u32) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[2] = 0xf1;
    a[12..16].copy_from_slice(&i.to_be_bytes());
    a[15] |= if i == 0 { 1 } else { 0 };
    a
}

/// A far end for flood traffic: 198.18.0.0/15 (RFC 2544 benchmarking), in no vendor's ranges.
pub fn far_v4(i: u32) -> [u8; 4] {
    [198, 18 + ((i >> 16) & 1) as u8, (i >> 8) as u8, i as u8]
}

/// 2001:db8::/32 (documentation), in no vendor's ranges.
pub fn far_v6(i: u32) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a[12..16].copy_from_slice(&i.to_be_bytes());
    a
}

pub fn udp_v4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_CLIENT, MAC_ROUTER)
        .ipv4(src, dst, 64)
        .udp(sport, dport);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).expect("build");
    v
}

pub fn udp_v6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_CLIENT, MAC_ROUTER)
        .ipv6(src, dst, 64)
        .udp(sport, dport);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).expect("build");
    v
}

#[derive(Clone, Copy)]
pub struct Tcp {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
}

impl Tcp {
    pub fn reversed(self) -> Tcp {
        Tcp {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }

    pub fn syn(&self, seq: u32) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_CLIENT, MAC_ROUTER)
            .ipv4(self.src, self.dst, 64)
            .tcp(self.sport, self.dport, seq, 64240)
            .syn();
        let mut v = Vec::new();
        b.write(&mut v, &[]).expect("build");
        v
    }

    pub fn data(&self, seq: u32, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_CLIENT, MAC_ROUTER)
            .ipv4(self.src, self.dst, 64)
            .tcp(self.sport, self.dport, seq, 64240)
            .ack(1)
            .psh();
        let mut v = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut v, payload).expect("build");
        v
    }
}

/// An IPv4 fragment: `payload` at byte `offset` (a multiple of 8) of datagram `id`.
pub fn frag_v4(
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    offset: usize,
    more: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut ip = Ipv4Header::new(payload.len() as u16, 64, IpNumber::UDP, src, dst).expect("ipv4");
    ip.identification = id;
    ip.more_fragments = more;
    ip.fragment_offset = IpFragOffset::try_new((offset / 8) as u16).expect("offset");
    let b = PacketBuilder::ethernet2(MAC_CLIENT, MAC_ROUTER)
        .ip(IpHeaders::Ipv4(ip, Default::default()));
    let mut v = Vec::with_capacity(14 + 20 + payload.len());
    b.write(&mut v, IpNumber::UDP, payload).expect("build");
    v
}

/// An IPv6 fragment (a Fragment extension header, RFC 8200 §4.5).
pub fn frag_v6(
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    offset: usize,
    more: bool,
    payload: &[u8],
) -> Vec<u8> {
    let ip = Ipv6Header {
        hop_limit: 64,
        source: src,
        destination: dst,
        ..Default::default()
    };
    let exts = Ipv6Extensions {
        fragment: Some(Ipv6FragmentHeader::new(
            IpNumber::UDP,
            IpFragOffset::try_new((offset / 8) as u16).expect("offset"),
            more,
            id,
        )),
        ..Default::default()
    };
    let b = PacketBuilder::ethernet2(MAC_CLIENT, MAC_ROUTER).ip(IpHeaders::Ipv6(ip, exts));
    let mut v = Vec::with_capacity(14 + 48 + payload.len());
    b.write(&mut v, IpNumber::UDP, payload).expect("build");
    v
}

// ---------------------------------------------------------------------------------------
// DNS

/// A DNS query for `name` (wire labels built from the dotted text).
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut m = dns_header(id, 0x0100, 1, 0);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&[0, 1, 0, 1]);
    m
}

pub fn dns_header(id: u16, flags: u16, qd: u16, an: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(512);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&qd.to_be_bytes());
    m.extend_from_slice(&an.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m
}

/// A response for `name` with one A record (`addr`), the answer's owner a pointer to the question.
pub fn dns_answer(id: u16, name: &str, addr: [u8; 4], ttl: u32) -> Vec<u8> {
    let mut m = dns_query(id, name);
    m[2..4].copy_from_slice(&0x8180u16.to_be_bytes());
    m[6..8].copy_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    m.extend_from_slice(&ttl.to_be_bytes());
    m.extend_from_slice(&[0, 4]);
    m.extend_from_slice(&addr);
    m
}

/// What the hostile DNS flood sent, by kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct DnsFloodPlan {
    /// A question whose name is a pointer to itself.
    pub self_loops: u64,
    /// Two pointers pointing at each other, after a label.
    pub mutual_loops: u64,
    /// A chain of more pointers than the parser follows (each to the one before).
    pub long_chains: u64,
    /// Names of exactly 255 octets on the wire (four labels of 63), valid.
    pub max_names: u64,
    /// Names of 256 octets and more, built with pointers to 63-byte labels.
    pub overlong_names: u64,
    /// Label types 0x40 and 0x80 (obsolete extended labels).
    pub bad_label_types: u64,
    /// Names running past the end of the message.
    pub out_of_bounds: u64,
    /// Queries for names of the maximum length under a vendor domain.
    pub vendor_max_names: u64,
}

/// A name of exactly 255 wire octets: 63+63+63+61 label bytes, 4 length octets, the root.
pub fn max_name(tag: u64) -> String {
    let t = format!("{tag:020}");
    let l1 = format!("a{t}{}", "a".repeat(63 - 21));
    let l2 = "b".repeat(63);
    let l3 = "c".repeat(63);
    let l4 = "d".repeat(61);
    let n = format!("{l1}.{l2}.{l3}.{l4}");
    debug_assert_eq!(n.len() + 2, 255);
    n
}

/// Hostile DNS messages, `n` of them, cycling through the kinds of `DnsFloodPlan`.
pub fn dns_hostile(rng: &mut Rng, i: u64) -> (Vec<u8>, usize) {
    let id = rng.next() as u16;
    let kind = (i % 8) as usize;
    let m = match kind {
        0 => {
            let mut m = dns_header(id, 0x0100, 1, 0);
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
            m
        }
        1 => {
            // 12: "abc", 16: pointer to 22, 18: type and class, 22: pointer back to 16.
            let mut m = dns_header(id, 0x0100, 1, 0);
            m.extend_from_slice(&[3, b'a', b'b', b'c', 0xc0, 22, 0, 1, 0, 1, 0xc0, 16]);
            m
        }
        2 => {
            // The question points at the last of 40 pointers, each to the one before,
            // the first to a real label: a chain longer than any parser should follow.
            let mut m = dns_header(id, 0x0100, 1, 0);
            m.extend_from_slice(&[0, 0, 0, 1, 0, 1]);
            let mut prev = m.len();
            m.extend_from_slice(&[1, b'x', 0]);
            for _ in 0..40 {
                let at = m.len();
                m.extend_from_slice(&[0xc0 | (prev >> 8) as u8, prev as u8]);
                prev = at;
            }
            m[12] = 0xc0 | (prev >> 8) as u8;
            m[13] = prev as u8;
            m
        }
        3 => dns_query(id, &max_name(i)),
        4 => {
            // Question: a 63-byte label then a pointer to a block of 63-byte labels that
            // itself ends in a pointer back: more than 255 octets when followed.
            let mut m = dns_header(id, 0x0100, 1, 0);
            let block = 12 + 64 + 2 + 4;
            m.push(63);
            m.extend_from_slice(&[b'q'; 63]);
            m.extend_from_slice(&[0xc0 | (block >> 8) as u8, block as u8]);
            m.extend_from_slice(&[0, 1, 0, 1]);
            for c in [b'r', b's', b't', b'u'] {
                m.push(63);
                m.extend_from_slice(&[c; 63]);
            }
            m.push(0);
            m
        }
        5 => {
            let mut m = dns_header(id, 0x0100, 1, 0);
            m.extend_from_slice(&[0x41, b'z', 0, 0, 1, 0, 1]);
            m
        }
        6 => {
            let mut m = dns_header(id, 0x0100, 1, 0);
            m.extend_from_slice(&[60, b'a', b'b']);
            m.extend_from_slice(&[0; 4]);
            m
        }
        _ => {
            // The longest name under a vendor domain: 63-byte random labels, valid.
            let suffix = "ksn.kaspersky-labs.com";
            let mut name = String::new();
            while name.len() + 64 + suffix.len() + 2 <= 255 {
                let l: String = (0..63)
                    .map(|_| (b'a' + (rng.below(26) as u8)) as char)
                    .collect();
                name.push_str(&l);
                name.push('.');
            }
            name.push_str(suffix);
            dns_query(id, &name)
        }
    };
    (m, kind)
}

impl DnsFloodPlan {
    pub fn count(&mut self, kind: usize) {
        match kind {
            0 => self.self_loops += 1,
            1 => self.mutual_loops += 1,
            2 => self.long_chains += 1,
            3 => self.max_names += 1,
            4 => self.overlong_names += 1,
            5 => self.bad_label_types += 1,
            6 => self.out_of_bounds += 1,
            _ => self.vendor_max_names += 1,
        }
    }
}

// ---------------------------------------------------------------------------------------
// QUIC

/// A QUIC v1 Initial long header with `dcid` and a Length of `length`, then `payload`
/// (random: it is not encrypted with the Initial keys, so no AEAD tag verifies).
pub fn quic_garbage_initial(dcid: &[u8], length: u64, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0xc3]; // long header, fixed bit, Initial, 4-byte packet number
    p.extend_from_slice(&1u32.to_be_bytes());
    p.push(dcid.len() as u8);
    p.extend_from_slice(dcid);
    p.push(8);
    p.extend_from_slice(&[0x53; 8]);
    p.push(0); // no token
               // Length as a 2-byte varint (up to 16383) or a 4-byte one.
    if length < 16384 {
        p.extend_from_slice(&(0x4000u16 | length as u16).to_be_bytes());
    } else {
        p.extend_from_slice(&(0x8000_0000u32 | length as u32).to_be_bytes());
    }
    p.extend_from_slice(payload);
    p
}

// ---------------------------------------------------------------------------------------
// Running the sensor

pub fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_vendorwatch"));
    c.env("VENDORWATCH_STATE", "none");
    c
}

/// What one replay of a flood capture gave.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stderr: String,
    pub report: serde_json::Value,
    /// Summary counters: every anomaly and drop reason, plus `flow_table_evictions`.
    pub counts: BTreeMap<String, u64>,
    /// Largest resident set of any child of this process waited for so far, KiB.
    pub max_rss_kib: u64,
}

impl Run {
    pub fn count(&self, reason: &str) -> u64 {
        self.counts.get(reason).copied().unwrap_or(0)
    }

    /// (host, vendor, category) of every detection in the report.
    pub fn detections(&self) -> BTreeSet<(String, String, String)> {
        let mut out = BTreeSet::new();
        for h in self.report["hosts"].as_array().into_iter().flatten() {
            for d in h["detections"].as_array().into_iter().flatten() {
                let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                out.insert((s(&h["ip"]), s(&d["vendor"]), s(&d["category"])));
            }
        }
        out
    }

    /// The `ip` indicators of `host`: (address, the name it was learned from).
    pub fn ip_indicators(&self, host: &str) -> Vec<(String, String)> {
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        self.report["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| h["ip"] == host)
            .flat_map(|h| h["detections"].as_array().into_iter().flatten())
            .flat_map(|d| d["indicators"].as_array().into_iter().flatten())
            .filter(|i| i["kind"] == "ip")
            .map(|i| (s(&i["value"]), s(&i["name"])))
            .collect()
    }

    pub fn hosts_reported(&self) -> usize {
        self.report["hosts"].as_array().map_or(0, Vec::len)
    }
}

fn parse_number(s: &str) -> Option<u64> {
    s.trim().replace(',', "").parse().ok()
}

/// Reads the summary's `anomalies` and `dropped` lines.
pub fn summary_counts(stderr: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in stderr.lines() {
        let line = line.trim_start();
        if let Some(list) = line.strip_prefix("anomalies ") {
            for item in list.split(", ") {
                if let Some((k, v)) = item.trim().rsplit_once(' ') {
                    if let Some(n) = parse_number(v) {
                        out.insert(k.to_string(), n);
                    }
                }
            }
        }
        if let Some(rest) = line.strip_prefix("dropped ") {
            if let Some(n) = rest
                .split("flow table evictions ")
                .nth(1)
                .and_then(|s| s.split(", ").next())
                .and_then(parse_number)
            {
                out.insert("flow_table_evictions".into(), n);
            }
        }
    }
    out
}

/// The peak RSS of children of this process (KiB; Linux reports `ru_maxrss` in KiB).
pub fn children_max_rss_kib() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_CHILDREN)
        .map(|u| u.max_rss().max(0) as u64)
        .unwrap_or(0)
}

/// Replays `capture` with `args` (one worker unless given), the report read back.
pub fn replay(dir: &Path, capture: &Path, args: &[&str]) -> Run {
    let report = dir.join(format!(
        "{}.report.json",
        capture.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    let mut cmd = bin();
    cmd.arg("replay").arg("--report").arg(&report);
    if !args.contains(&"--workers") {
        cmd.args(["--workers", "1"]);
    }
    let out = cmd
        .args(args)
        .arg(capture)
        .output()
        .expect("runs vendorwatch");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    Run {
        code: out.status.code(),
        counts: summary_counts(&stderr),
        stderr,
        report,
        max_rss_kib: children_max_rss_kib(),
    }
}

// ---------------------------------------------------------------------------------------
// The floods. Each writes its packets through a `Mixer` and returns what it sent.

/// Random 5-tuples: `n` flows, each one packet (TCP SYNs, UDP datagrams over IPv4 and IPv6)
/// from a distinct home-net host to a random far end, on ordinary ports.
pub fn flood_flows(m: &mut Mixer, rng: &mut Rng, n: u32) -> u64 {
    for i in 0..n {
        let far = rng.next() as u32;
        let sport = ephemeral_port(rng);
        match i % 3 {
            0 | 1 => {
                let dport =
                    [80, 443, 8080, 30_000 + rng.below(30_000) as u16][rng.below(4) as usize];
                let t = Tcp {
                    src: home_v4(i),
                    dst: far_v4(far),
                    sport,
                    dport,
                };
                m.push(&t.syn(rng.next() as u32));
            }
            _ => {
                let dport = 30_000 + rng.below(30_000) as u16;
                let len = 16 + rng.below(64) as usize;
                let payload = rng.bytes(len);
                if i % 2 == 0 {
                    m.push(&udp_v4(home_v4(i), far_v4(far), sport, dport, &payload));
                } else {
                    m.push(&udp_v6(home_v6(i), far_v6(far), sport, dport, &payload));
                }
            }
        }
    }
    u64::from(n)
}

/// What a fragment flood sent: datagrams it started, by what should become of them.
#[derive(Debug, Default, Clone, Copy)]
pub struct FragPlan {
    /// Datagrams whose second fragment overlaps the first with other bytes.
    pub overlapping: u64,
    /// Datagrams sent as more tiny (8-byte) fragments than a datagram may have.
    pub tiny_datagrams: u64,
    pub tiny_fragments_each: u64,
    /// Sources of the never-completed flood, datagrams each, and the per-source cap.
    pub fill_sources: u64,
    pub fill_per_source: u64,
    /// Large never-completed datagrams (many 1,400-byte fragments each), sent to fill memory.
    pub big_datagrams: u64,
    pub big_fragments_each: u64,
    /// Never-completed datagrams sent after packet time jumped past the timeout.
    pub after_timeout: u64,
    /// Every fragment the flood sent.
    pub fragments: u64,
}

pub const BIG_FRAGMENT: usize = 1400;

/// IPv4 or IPv6 fragment floods: overlaps, tiny fragments, never-completed datagrams (many
/// per source), large datagrams that fill memory, and a timeout. No flood datagram can be
/// completed: every fragment has More Fragments set and none is at offset 0.
pub fn flood_fragments(m: &mut Mixer, rng: &mut Rng, v6: bool, plan: FragPlan) -> FragPlan {
    let mut plan = plan;
    let mut id: u32 = 1;
    let dst = |i: u32| (far_v4(i), far_v6(i));
    let send = |m: &mut Mixer, src: u32, id: u32, offset: usize, payload: &[u8]| {
        let frame = if v6 {
            frag_v6(home_v6(src), dst(7).1, id, offset, true, payload)
        } else {
            frag_v4(home_v4(src), dst(7).0, id as u16, offset, true, payload)
        };
        m.push(&frame);
    };
    let mut fragments = 0u64;
    // Overlaps: 64 bytes at 8, then 64 other bytes at 40.
    for k in 0..plan.overlapping {
        let src = 1_000 + (k % 50) as u32;
        send(m, src, id, 8, &rng.bytes(64));
        send(m, src, id, 40, &rng.bytes(64));
        fragments += 2;
        id += 1;
    }
    // Tiny fragments: 8 bytes each, consecutive offsets, never the first or the last.
    for k in 0..plan.tiny_datagrams {
        let src = 2_000 + (k % 50) as u32;
        for j in 0..plan.tiny_fragments_each {
            send(m, src, id, 8 * (1 + j as usize), &rng.bytes(8));
            fragments += 1;
        }
        id += 1;
    }
    // Never completed, many per source, source after source.
    for s in 0..plan.fill_sources {
        let src = 10_000 + s as u32;
        for _ in 0..plan.fill_per_source {
            send(m, src, id, 1024, &rng.bytes(1024));
            fragments += 1;
            id += 1;
        }
    }
    // Large datagrams: fragments of 1,400 bytes at 1,400 .. (never the first).
    for g in 0..plan.big_datagrams {
        let src = 100_000 + g as u32;
        for j in 0..plan.big_fragments_each {
            send(
                m,
                src,
                id,
                BIG_FRAGMENT * (1 + j as usize),
                &rng.bytes(BIG_FRAGMENT),
            );
            fragments += 1;
        }
        id += 1;
    }
    // Past every timeout: what is still held expires when the next fragment arrives.
    m.advance_us(31_000_000);
    for k in 0..plan.after_timeout {
        send(m, 200_000 + k as u32, id, 16, &rng.bytes(16));
        fragments += 1;
        id += 1;
    }
    plan.fragments = fragments;
    plan
}

impl FragPlan {
    pub fn flood_packets(&self) -> u64 {
        self.overlapping * 2
            + self.tiny_datagrams * self.tiny_fragments_each
            + self.fill_sources * self.fill_per_source
            + self.big_datagrams * self.big_fragments_each
            + self.after_timeout
    }
}

/// What the TCP segment flood sent per flow.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpPlan {
    pub flows: u64,
    /// Client segments parked out of order after a gap, per flow.
    pub out_of_order: u64,
    /// Server segments out of order, per flow.
    pub server_out_of_order: u64,
}

pub const SEGMENT: usize = 1400;

impl TcpPlan {
    pub fn flood_packets(&self) -> u64 {
        // SYN, record start + 3 in-order, out-of-order, two huge jumps, tiny ones, server.
        self.flows * (1 + 4 + self.out_of_order + 2 + 8 + 1 + self.server_out_of_order)
    }
}

/// TCP segments into reassembly on port 443: each flow starts a TLS record that claims
/// 16 KiB, sends part of it in order, then segments after a gap (out of order, more than
/// the buffer holds), segments a quarter and half the sequence space away, one-byte
/// segments, and the server's side out of order too. No flow ever completes its
/// ClientHello, so every one is held in reassembly until it leaves the table.
pub fn flood_tcp(m: &mut Mixer, rng: &mut Rng, plan: TcpPlan) -> TcpPlan {
    for f in 0..plan.flows {
        let c = Tcp {
            src: home_v4(50_000 + f as u32),
            dst: far_v4(rng.next() as u32),
            sport: ephemeral_port(rng),
            dport: 443,
        };
        let isn = rng.next() as u32;
        m.push(&c.syn(isn));
        let mut seq = isn.wrapping_add(1);
        // A handshake record claiming 16,384 bytes, a ClientHello claiming 16,380.
        let mut first = vec![
            0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x3f, 0xfc, 0x03, 0x03,
        ];
        first.extend_from_slice(&rng.bytes(SEGMENT - first.len()));
        m.push(&c.data(seq, &first));
        seq = seq.wrapping_add(SEGMENT as u32);
        for _ in 0..3 {
            m.push(&c.data(seq, &rng.bytes(SEGMENT)));
            seq = seq.wrapping_add(SEGMENT as u32);
        }
        let gap = seq.wrapping_add(4 * SEGMENT as u32);
        for k in 0..plan.out_of_order {
            m.push(&c.data(
                gap.wrapping_add((k as u32) * SEGMENT as u32),
                &rng.bytes(SEGMENT),
            ));
        }
        m.push(&c.data(seq.wrapping_add(0x4000_0000), &rng.bytes(SEGMENT)));
        m.push(&c.data(seq.wrapping_add(0x8000_0000), &rng.bytes(SEGMENT)));
        for k in 0..8u32 {
            m.push(&c.data(seq.wrapping_add(2 + 2 * k), &[0x42]));
        }
        let s = c.reversed();
        let sseq = rng.next() as u32;
        m.push(&s.data(sseq, &rng.bytes(SEGMENT)));
        let sgap = sseq.wrapping_add(3 * SEGMENT as u32);
        for k in 0..plan.server_out_of_order {
            m.push(&s.data(
                sgap.wrapping_add((k as u32) * SEGMENT as u32),
                &rng.bytes(SEGMENT),
            ));
        }
    }
    plan
}

/// Hostile DNS: `n` messages over UDP from `hosts` home-net hosts to a far resolver.
pub fn flood_dns(m: &mut Mixer, rng: &mut Rng, n: u64, hosts: u32) -> DnsFloodPlan {
    let mut plan = DnsFloodPlan::default();
    for i in 0..n {
        let (msg, kind) = dns_hostile(rng, i);
        plan.count(kind);
        let host = (i % u64::from(hosts.max(1))) as u32;
        m.push(&udp_v4(
            home_v4(host),
            [198, 18, 0, 53],
            ephemeral_port(rng),
            53,
            &msg,
        ));
    }
    plan
}

/// What the QUIC flood sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct QuicPlan {
    pub flows: u64,
    /// Valid long headers, random payload of the length the header gives.
    pub random_payload: u64,
    /// Valid long headers whose Length runs past the datagram.
    pub bogus_length: u64,
}

/// QUIC Initials with garbage: `flows` flows to port 443, each two datagrams (one with a
/// random payload, one with a Length past the end of the datagram).
pub fn flood_quic(m: &mut Mixer, rng: &mut Rng, flows: u64) -> QuicPlan {
    let mut plan = QuicPlan {
        flows,
        ..QuicPlan::default()
    };
    for f in 0..flows {
        let src = home_v4(70_000 + f as u32);
        let dst = far_v4(rng.next() as u32);
        let sport = ephemeral_port(rng);
        let dcid = rng.bytes(8);
        // 1,200 bytes of datagram: the header (26 bytes here) and a payload of the rest.
        let payload = rng.bytes(1200 - 26);
        m.push(&udp_v4(
            src,
            dst,
            sport,
            443,
            &quic_garbage_initial(&dcid, payload.len() as u64, &payload),
        ));
        plan.random_payload += 1;
        let payload = rng.bytes(1200 - 26);
        m.push(&udp_v4(
            src,
            dst,
            sport,
            443,
            &quic_garbage_initial(&dcid, 9_000, &payload),
        ));
        plan.bogus_length += 1;
    }
    plan
}

/// Vendor-like names and many hosts: `hosts` home-net hosts, each looking up `per_host`
/// distinct names (`x<N>.kaspersky.com` and random subdomains of the KSN zone) and getting
/// an answer with a distinct address for each (which passive DNS would remember).
pub fn flood_names(m: &mut Mixer, rng: &mut Rng, hosts: u32, per_host: u32) -> u64 {
    let mut n = 0u64;
    for k in 0..per_host {
        for h in 0..hosts {
            let name = if k % 2 == 0 {
                format!("x{n}.kaspersky.com")
            } else {
                let l: String = (0..12)
                    .map(|_| (b'a' + rng.below(26) as u8) as char)
                    .collect();
                format!("{l}{n}.ksn.kaspersky-labs.com")
            };
            let id = rng.next() as u16;
            let sport = ephemeral_port(rng);
            let client = home_v4(h);
            let resolver = [198, 18, 0, 53];
            m.push(&udp_v4(client, resolver, sport, 53, &dns_query(id, &name)));
            let addr = far_v4(n as u32 | 0x8000);
            m.push(&udp_v4(
                resolver,
                client,
                53,
                sport,
                &dns_answer(id, &name, addr, 300),
            ));
            n += 1;
        }
    }
    n
}

// ---------------------------------------------------------------------------------------
// Metrics

/// GET `target` from 127.0.0.1:`port` (HTTP/1.0): status and body.
pub fn http_get(port: u16, target: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(s, "GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Replays `capture` serving metrics, scrapes `/metrics` once the replay has finished
/// (`/healthz` says so while it lingers), then stops the lingering process.
pub fn replay_and_scrape(capture: &Path, args: &[&str]) -> String {
    let port = free_port();
    let mut child = bin()
        .args([
            "replay",
            "-q",
            "--workers",
            "1",
            "--linger",
            "120",
            "--metrics-addr",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .arg(capture)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let body = loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the replay ended before it could be scraped: {status}");
        }
        let done = http_get(port, "/healthz").is_some_and(|(_, b)| b.contains("replay finished"));
        if done {
            break http_get(port, "/metrics").expect("scrape").1;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    body
}

/// Samples of the metric `name` in a Prometheus text exposition: (labels, value).
pub fn samples<'a>(body: &'a str, name: &str) -> Vec<(&'a str, f64)> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (metric == name).then(|| (labels, value.parse().unwrap_or(f64::NAN)))
        })
        .collect()
}

// ---- The network lab shared by the live-capture tests (fanout, fanout_live, live, …) ----

/// Whether the tests run as root (namespaces, veth pairs and capture need it).
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// A command that runs `program` as an unprivileged user: `nobody` when the tests run as
/// root (as CI does), the test's own user otherwise.
pub fn as_unprivileged(program: &str) -> std::process::Command {
    if is_root() {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(program);
        c
    } else {
        std::process::Command::new(program)
    }
}

/// Whether a root-only test may go on; says, loudly, that it is skipped otherwise:
/// `SKIPPED: WHAT needs root (CI runs as root)`.
pub fn root_or_skip(what: &str) -> bool {
    let root = is_root();
    if !root {
        eprintln!("SKIPPED: {what} needs root (CI runs as root)");
    }
    root
}

/// Runs `cmd` (program and arguments) to completion; panics, with its stderr, unless it
/// succeeds.
pub fn run_ok(cmd: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` with its output thrown away, whatever its outcome (for best-effort steps).
fn run_quietly(cmd: &[&str]) {
    let _ = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// What differs between the labs of the test files: names and how the ends are set up.
pub struct VethSpec<'a> {
    /// Prefixes of the namespace, the inside end and the outside end; each test file has
    /// its own, so that files running in parallel do not collide.
    pub prefixes: [&'a str; 3],
    /// Unique per test within a file (may be empty where the prefixes are).
    pub tag: &'a str,
    /// Addresses with prefix length of the outside and the inside end; none leaves both
    /// without (nothing there sends).
    pub addresses: Option<(String, String)>,
    /// IPv6 off on both ends (no router or neighbour solicitations).
    pub no_ipv6: bool,
    /// The MTU of both ends, where the default is too small (QinQ frames are 1522 bytes).
    pub mtu: Option<u32>,
    /// The namespace's own loopback up (servers or metrics listen there).
    pub loopback: bool,
}

impl<'a> VethSpec<'a> {
    /// Quiet ends: no addresses, IPv6 off, room for 9000-byte frames, loopback down.
    pub fn quiet(prefixes: [&'a str; 3], tag: &'a str) -> VethSpec<'a> {
        VethSpec {
            prefixes,
            tag,
            addresses: None,
            no_ipv6: true,
            mtu: Some(9000),
            loopback: false,
        }
    }
}

/// A network namespace holding one end of a veth pair (`inside`), the other end
/// (`outside`) in the root namespace; names derived from the process id and the test's
/// tag. Dropping it kills its children and deletes the namespace and the pair.
pub struct VethLab {
    pub ns: String,
    pub inside: String,
    pub outside: String,
    /// Processes (servers) that live as long as the lab.
    pub children: Vec<std::process::Child>,
    addresses: Option<(String, String)>,
    no_ipv6: bool,
    mtu: Option<u32>,
}

impl VethLab {
    /// Makes the namespace and the pair as `spec` says.
    pub fn new(spec: VethSpec) -> VethLab {
        let id = std::process::id() % 100_000;
        let [ns, inside, outside] = spec.prefixes.map(|p| format!("{p}{id}{}", spec.tag));
        let lab = VethLab {
            ns,
            inside,
            outside,
            children: Vec::new(),
            addresses: spec.addresses,
            no_ipv6: spec.no_ipv6,
            mtu: spec.mtu,
        };
        run_ok(&["ip", "netns", "add", &lab.ns]);
        if spec.loopback {
            lab.in_ns(&["ip", "link", "set", "lo", "up"]);
        }
        lab.create_pair();
        lab
    }

    /// Runs `cmd` inside the namespace; panics unless it succeeds.
    pub fn in_ns(&self, cmd: &[&str]) -> std::process::Output {
        let mut c = vec!["ip", "netns", "exec", &self.ns];
        c.extend(cmd);
        run_ok(&c)
    }

    /// Creates (or creates again, after the inside end was deleted) the pair: addresses,
    /// links up, checksum and segmentation offloads off (frames as on a real wire).
    pub fn create_pair(&self) {
        let (ns, inside, outside) = (
            self.ns.as_str(),
            self.inside.as_str(),
            self.outside.as_str(),
        );
        run_ok(&[
            "ip", "link", "add", outside, "type", "veth", "peer", "name", inside,
        ]);
        run_ok(&["ip", "link", "set", inside, "netns", ns]);
        if self.no_ipv6 {
            let _ = std::fs::write(
                format!("/proc/sys/net/ipv6/conf/{outside}/disable_ipv6"),
                "1",
            );
            let off = format!("echo 1 > /proc/sys/net/ipv6/conf/{inside}/disable_ipv6");
            self.in_ns(&["sh", "-c", &off]);
        }
        if let Some((out_addr, in_addr)) = &self.addresses {
            run_ok(&["ip", "addr", "add", out_addr, "dev", outside]);
            self.in_ns(&["ip", "addr", "add", in_addr, "dev", inside]);
        }
        let mtu = self.mtu.map(|m| m.to_string());
        for (dev, in_ns) in [(outside, false), (inside, true)] {
            let mut c = if in_ns {
                vec!["ip", "netns", "exec", ns]
            } else {
                vec![]
            };
            let mut ethtool = c.clone();
            ethtool.extend([
                "ethtool", "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro",
                "off",
            ]);
            c.extend(["ip", "link", "set", dev]);
            if let Some(m) = mtu.as_deref() {
                c.extend(["mtu", m]);
            }
            c.push("up");
            run_ok(&c);
            run_quietly(&ethtool);
        }
    }

    /// Brings the inside end down or up again.
    pub fn set_inside_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        self.in_ns(&["ip", "link", "set", &self.inside, state]);
    }

    /// How many packets the inside end has received (its `rx_packets`).
    pub fn rx_packets(&self) -> u64 {
        let counter = format!("/sys/class/net/{}/statistics/rx_packets", self.inside);
        let out = self.in_ns(&["cat", &counter]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("rx_packets")
    }

    /// Sends `files` (captures) into the outside end with tcpreplay, 2000 packets a second.
    pub fn replay(&self, files: &[&str]) {
        let mut cmd = vec!["tcpreplay", "-q", "--pps=2000", "-i", &self.outside];
        cmd.extend(files);
        run_ok(&cmd);
    }
}

impl Drop for VethLab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        run_quietly(&["ip", "netns", "del", &self.ns]);
        run_quietly(&["ip", "link", "del", &self.outside]);
    }
}

/// The kinds of event that name a host (those tshark names directly, see
/// `pcaps/expected/*.json`).
pub const NAME_KINDS: [&str; 4] = ["dns", "tls_sni", "http_host", "http_connect"];

/// The names among `events`: (source address, kind, value).
pub fn name_triples<'a>(
    events: impl IntoIterator<Item = &'a serde_json::Value>,
) -> BTreeSet<(String, String, String)> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    events
        .into_iter()
        .filter(|e| NAME_KINDS.contains(&e["kind"].as_str().unwrap_or_default()))
        .map(|e| (s(&e["flow"]["src_ip"]), s(&e["kind"]), s(&e["value"])))
        .collect()
}

/// Starts `cmd` with its stderr collected as it comes (`collect_output`): the child, the
/// text so far, and the collecting thread (ends when the child closes its stderr).
pub fn spawn_collecting(
    cmd: &mut std::process::Command,
) -> (
    std::process::Child,
    std::sync::Arc<std::sync::Mutex<String>>,
    Option<std::thread::JoinHandle<()>>,
) {
    let mut child = cmd
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts vendorwatch");
    let collected = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = child
        .stderr
        .take()
        .map(|pipe| collect_output(pipe, std::sync::Arc::clone(&collected)));
    (child, collected, reader)
}

/// Appends what `pipe` (a child's stderr) says to `sink` as it comes, on a thread of its own,
/// until the pipe closes: a test can poll what a running process said so far.
pub fn collect_output(
    mut pipe: impl std::io::Read + Send + 'static,
    sink: std::sync::Arc<std::sync::Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    })
}
