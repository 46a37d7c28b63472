//! Recognises the second copy of a packet that a SPAN port mirrored twice.
//!
//! A switch that mirrors both the ingress and the egress of a port, or two mirrored ports on
//! one path, delivers every packet twice, microseconds apart, sometimes with a different (or
//! no) 802.1Q tag. The copies are the same IP packet: same addresses, same IPv4 ID, same
//! transport header and payload. A copy seen again within `WINDOW_MICROS` is dropped and
//! counted (`duplicates`). The fingerprint leaves out what a router on the way changes (the
//! TTL or hop limit, and so the IPv4 header checksum) and everything below IP (MACs, tags,
//! tunnels): the flow hash that picks the worker ignores those too, so both copies reach the
//! same worker and its table.
//!
//! **Twins of a decoy.** What the fingerprint leaves out (the TTL, the IPv4 header checksum,
//! the bytes of a TCP segment past `FINGERPRINT_BYTES`) a sender can change at will in a copy
//! of its own packet: a decoy that the receiver drops (a TTL that expires on the way, a wrong
//! checksum) sent just before the real packet, identical in the fingerprinted bytes, would have
//! the real one dropped here as its copy. So a UDP datagram is fingerprinted whole (each is
//! read on its own: a datagram dropped is lost to its parser), and a packet is remembered only
//! once the flow logic took it (`Deduplicator::record`): a segment it refused as one the
//! receiver never takes leaves no fingerprint behind. A TCP segment taken whose copy differs
//! past the fingerprinted bytes is then what any later segment over the same sequence numbers
//! is: a retransmission of bytes the receiver already has.
//!
//! The table is direct-mapped, `SLOTS` entries: constant memory and time. A collision of
//! slots only forgets an earlier packet (a duplicate counted twice); a packet is a duplicate
//! only when its full 64-bit fingerprint is in its slot. Bare TCP ACKs are left out (duplicate
//! ACKs of IPv6, which has no IP ID, can be byte for byte the same, and an ACK carries
//! nothing to read). Retransmissions are not duplicates: TCP retransmits after at
//! least 200 ms (Linux's minimum RTO) and with a new IPv4 ID; resolvers retry after a second.

use crate::decode::{Packet, Transport};
use crate::time::Timestamp;
use std::hash::{BuildHasher, Hasher};

/// How long after the first copy a second one is taken as a mirror's duplicate.
pub const WINDOW_MICROS: u64 = 5_000;
/// Table entries (a power of two): the packets of the last few milliseconds of one worker.
const SLOTS: usize = 4096;
/// Bytes of a TCP segment's IP packet fingerprinted: the IP header, the TCP header and its
/// checksum, and the start of the payload (128 bytes hold an IPv6 header and a TCP header with
/// every option). Hashing bulk segments whole would cost a tenth more; what
/// a copy may differ in past these bytes the reassembly judges (see the module's doc).
const FINGERPRINT_BYTES: usize = 128;

/// What a packet is recognised by: a 64-bit hash of its IP packet, leaving out what a router
/// changes. Zero is never a fingerprint (it marks an empty slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(u64);

/// Computes fingerprints, where a packet is first read for its worker (see
/// `pipeline::Dispatcher::reads_dns`). Every thread of a sensor shares one seed (the pool's), so the copy a second interface delivers is
/// recognised too.
#[derive(Clone, Default)]
pub struct Fingerprinter {
    /// Seeded at random: the fingerprint hashes what the wire says, and fixed seeds (they
    /// are in the source) would let a sender craft a packet whose fingerprint matches one it
    /// expects, so that the real one is dropped as its duplicate. foldhash rather than
    /// ahash: keyed alike, and a fifth fewer instructions over these 128 bytes without
    /// AES-NI in the build (`bench/callgrind.sh`).
    hasher: foldhash::fast::RandomState,
}

impl Fingerprinter {
    /// The fingerprint of `pkt`; `None` for what is never taken as a copy. A bare TCP ACK
    /// changes nothing downstream, and duplicate ACKs of IPv6 (no IP ID) without timestamps
    /// are byte for byte the same: they are not taken for a mirror's copies.
    pub fn of(&self, pkt: &Packet<'_>) -> Option<Fingerprint> {
        let bare_ack = matches!(&pkt.transport, Transport::Tcp(t)
            if t.payload.is_empty() && !(t.syn || t.fin || t.rst));
        if bare_ack {
            return None;
        }
        let ip = pkt.ip;
        let mut h = self.hasher.build_hasher();
        let end = match pkt.transport {
            Transport::Udp(_) => ip.len(),
            _ => ip.len().min(FINGERPRINT_BYTES),
        };
        match ip.first()? >> 4 {
            4 if ip.len() >= 20 => {
                // Everything but the TTL (8) and the header checksum (10..12).
                h.write(&ip[..8]);
                h.write(&ip[9..10]);
                h.write(&ip[12..end]);
            }
            6 if ip.len() >= 40 => {
                // Everything but the hop limit (7).
                h.write(&ip[..7]);
                h.write(&ip[8..end]);
            }
            _ => return None,
        }
        h.write_usize(ip.len());
        Some(Fingerprint(h.finish().max(1)))
    }
}

/// The fingerprints of one worker's last few milliseconds of packets.
pub struct Deduplicator {
    slots: Box<[(u64, Timestamp)]>,
}

impl Default for Deduplicator {
    fn default() -> Self {
        Deduplicator {
            slots: vec![(0, Timestamp::default()); SLOTS].into_boxed_slice(),
        }
    }
}

impl Deduplicator {
    /// Whether a packet of this fingerprint was taken within the window. A packet without
    /// one is never a copy.
    pub fn seen(&self, ts: Timestamp, fingerprint: Option<Fingerprint>) -> bool {
        let Some(Fingerprint(fp)) = fingerprint else {
            return false;
        };
        let slot = &self.slots[(fp as usize) & (SLOTS - 1)];
        slot.0 == fp && ts >= slot.1 && micros_between(slot.1, ts) <= WINDOW_MICROS
    }

    /// Remembers a packet that was taken (not one refused as never reaching its receiver:
    /// see the module's doc), so that its copies are recognised.
    pub fn record(&mut self, ts: Timestamp, fingerprint: Option<Fingerprint>) {
        if let Some(Fingerprint(fp)) = fingerprint {
            self.slots[(fp as usize) & (SLOTS - 1)] = (fp, ts);
        }
    }
}

fn micros_between(a: Timestamp, b: Timestamp) -> u64 {
    let micros = |t: Timestamp| i128::from(t.secs()) * 1_000_000 + i128::from(t.nanos() / 1_000);
    u64::try_from(micros(b) - micros(a)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, LinkType};

    /// A fingerprinter and a window together: what the extractor does with a packet.
    #[derive(Default)]
    struct Mirror {
        fingerprinter: Fingerprinter,
        window: Deduplicator,
    }

    impl Mirror {
        fn is_duplicate(&mut self, ts: Timestamp, pkt: &Packet<'_>) -> bool {
            let fingerprint = self.fingerprinter.of(pkt);
            let seen = self.window.seen(ts, fingerprint);
            if !seen {
                self.window.record(ts, fingerprint);
            }
            seen
        }
    }

    /// An Ethernet/IPv4/UDP DNS query for example.com (the decoder's fixture), untagged and
    /// with an 802.1Q tag.
    fn frames() -> (Vec<u8>, Vec<u8>) {
        let plain = [
            &[2u8, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0][..],
            &[
                0x45, 0, 0, 0x39, 0x12, 0x34, 0, 0, 0x40, 0x11, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
            ],
            &[
                0xc3, 0x50, 0, 0x35, 0, 0x25, 0, 0, 0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
            ],
            b"\x07example\x03com\x00\x00\x01\x00\x01",
        ]
        .concat();
        let mut tagged = plain[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        tagged.extend_from_slice(&plain[12..]);
        (plain, tagged)
    }

    #[test]
    fn a_copy_within_the_window_is_a_duplicate_whatever_its_tag() {
        let (plain, tagged) = frames();
        let mut d = Mirror::default();
        let t0 = Timestamp::from_parts(100, 0);
        let first = decode(LinkType::Ethernet, &plain).expect("decodes");
        let copy = decode(LinkType::Ethernet, &tagged).expect("decodes");
        assert!(!d.is_duplicate(t0, &first));
        assert!(d.is_duplicate(Timestamp::from_parts(100, 7_000), &copy));
        // Long after: the same bytes again are a new packet (a retry), not a mirror's copy.
        assert!(!d.is_duplicate(Timestamp::from_parts(101, 0), &first));
    }

    #[test]
    fn another_ip_id_or_a_changed_ttl() {
        let (plain, _) = frames();
        let mut d = Mirror::default();
        let t = Timestamp::from_parts(5, 0);
        assert!(!d.is_duplicate(t, &decode(LinkType::Ethernet, &plain).expect("decodes")));
        let mut other_id = plain.clone();
        other_id[19] ^= 1;
        assert!(!d.is_duplicate(t, &decode(LinkType::Ethernet, &other_id).expect("decodes")));
        let mut routed = plain.clone();
        routed[22] -= 1; // TTL
        assert!(d.is_duplicate(t, &decode(LinkType::Ethernet, &routed).expect("decodes")));
    }

    #[test]
    fn ipv6_copies_are_recognised_by_their_bytes() {
        // An IPv6/UDP DNS query (raw IP), then the same with another hop limit, then another
        // query id: IPv6 has no ID, the payload tells the packets apart.
        let query = |id: u8, hops: u8| {
            let mut f = vec![0x60, 0, 0, 0, 0, 37, 17, hops];
            f.extend_from_slice(&[0xfd, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11]);
            f.extend_from_slice(&[0xfd, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53]);
            f.extend_from_slice(&[0xc3, 0x50, 0, 0x35, 0, 37, 0, 0, id, 0xcd, 1, 0, 0, 1]);
            f.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            f.extend_from_slice(b"\x07example\x03com\x00\x00\x1c\x00\x01");
            f
        };
        let mut d = Mirror::default();
        let t = Timestamp::from_parts(9, 0);
        let first = query(1, 64);
        assert!(!d.is_duplicate(t, &decode(LinkType::RawIp, &first).expect("decodes")));
        let routed = query(1, 63);
        assert!(d.is_duplicate(t, &decode(LinkType::RawIp, &routed).expect("decodes")));
        let other = query(2, 64);
        assert!(!d.is_duplicate(t, &decode(LinkType::RawIp, &other).expect("decodes")));
    }

    /// A raw IPv4 packet of `proto` (6 or 17) from 10.0.0.1:50000 to 10.0.0.2:443 with ID 7,
    /// `ttl`, and 300 bytes of payload, the byte at `marked` (an offset in the IP packet) set
    /// to `mark`; checksums are not filled in (the fingerprint does not check them).
    fn long_packet(proto: u8, ttl: u8, marked: usize, mark: u8) -> Vec<u8> {
        let header = if proto == 6 { 20 } else { 8 };
        let total = 20 + header + 300;
        let mut f = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            7,
            0x40,
            0,
            ttl,
            proto,
            0,
            0,
        ];
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        if proto == 6 {
            f.extend_from_slice(&[0xc3, 0x50, 1, 0xbb, 0, 0, 0x10, 0, 0, 0, 0x20, 0]);
            f.extend_from_slice(&[0x50, 0x18, 0xfa, 0xf0, 0x12, 0x34, 0, 0]);
        } else {
            let len = (8 + 300) as u16;
            f.extend_from_slice(&[0xc3, 0x50, 1, 0xbb]);
            f.extend_from_slice(&len.to_be_bytes());
            f.extend_from_slice(&[0x12, 0x34]);
        }
        f.resize(total, 0xaa);
        f[marked] = mark;
        f
    }

    #[test]
    fn a_datagram_is_fingerprinted_whole_and_a_segment_by_its_first_bytes() {
        // A decoy that is the real packet but for a byte far past the headers (and its TTL):
        // for UDP a packet of its own; for TCP the same fingerprint (what the reassembly then
        // judges), which the flow logic keeps out of the window when it refuses the decoy.
        let t = Timestamp::from_parts(7, 0);
        let mut d = Mirror::default();
        let decoy = long_packet(17, 1, 250, 0x01);
        let real = long_packet(17, 64, 250, 0x02);
        assert!(!d.is_duplicate(t, &decode(LinkType::RawIp, &decoy).expect("decodes")));
        assert!(!d.is_duplicate(t, &decode(LinkType::RawIp, &real).expect("decodes")));
        let fingerprint = |f: &[u8]| {
            d.fingerprinter
                .of(&decode(LinkType::RawIp, f).expect("decodes"))
        };
        let (decoy, real) = (long_packet(6, 1, 250, 0x01), long_packet(6, 64, 250, 0x02));
        assert_eq!(fingerprint(&decoy), fingerprint(&real));
        assert_ne!(
            fingerprint(&long_packet(6, 64, 100, 0x01)),
            fingerprint(&long_packet(6, 64, 100, 0x02))
        );
    }

    #[test]
    fn only_a_packet_recorded_has_its_copies_recognised() {
        let mut window = Deduplicator::default();
        let fingerprinter = Fingerprinter::default();
        let real = long_packet(6, 64, 250, 0x02);
        let fp = fingerprinter.of(&decode(LinkType::RawIp, &real).expect("decodes"));
        let t = Timestamp::from_parts(7, 0);
        // A decoy with this fingerprint was refused (never recorded): the real one is new.
        assert!(!window.seen(t, fp));
        window.record(t, fp);
        assert!(window.seen(Timestamp::from_parts(7, 1_000), fp));
        assert!(!window.seen(Timestamp::from_parts(7, 6_000_000), fp));
    }
}
