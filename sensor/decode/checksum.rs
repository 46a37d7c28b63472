//! Internet checksums (RFC 1071) of a decoded packet: the IPv4 header's and the TCP segment's.
//!
//! Verified only where the whole packet was captured: a frame cut by the snap length, or a
//! packet whose lengths do not add up, is `Unknown`, never `Bad`. An IPv4 header checksum of
//! zero is `Unknown` too: reassembled datagrams carry one (the defragmenter does not
//! recompute it), as do packets written by tools that leave checksums to the NIC.
//! Nothing here allocates; the work is one pass over the bytes, done only for the segments
//! a flow still reads.

use super::{Packet, TcpSegment};

/// Whether a checksum holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Good,
    Bad,
    /// Not verifiable: the packet was not captured whole.
    Unknown,
}

/// IPv4 header length field and total length field offsets.
const IPV4_TOTAL_LEN: std::ops::Range<usize> = 2..4;
const IPV4_CHECKSUM: std::ops::Range<usize> = 10..12;
const IPV6_HEADER_LEN: usize = 40;
const IPPROTO_TCP: u8 = 6;

/// Ones' complement sum of `bytes` (big-endian 16-bit words, an odd byte padded with zero),
/// added to `sum`, not folded.
///
/// Eight bytes at a time, read in the machine's order and added with end-around carry (a
/// ones' complement sum in 64-bit words folds to the one in 16-bit words: RFC 1071 §2(C)),
/// four words per step so that the additions do not wait on each other's carries. That sum,
/// folded, is byte-swapped into the big-endian one: swapping the bytes of every word swaps
/// the bytes of their ones' complement sum (RFC 1071 §2(B)). Short inputs (an IP header,
/// the pseudo-header's addresses, an acknowledgment) take `add_short` instead: the set-up and
/// the fold of the long way cost more than their bytes.
fn add(sum: u64, bytes: &[u8]) -> u64 {
    if bytes.len() < SHORT {
        return add_short(sum, bytes);
    }
    let word = |q: &[u8]| u64::from_le_bytes([q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]]);
    let mut blocks = bytes.chunks_exact(32);
    let mut lanes = [0u64; 4];
    for block in &mut blocks {
        for (lane, q) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = add_carry(*lane, word(q));
        }
    }
    let mut le = lanes.into_iter().fold(0, add_carry);
    let mut quads = blocks.remainder().chunks_exact(8);
    for q in &mut quads {
        le = add_carry(le, word(q));
    }
    // What is left (under eight bytes) starts at an even offset: read as one more word,
    // padded with zeros, its 16-bit words are the packet's and an odd last byte is the high
    // byte of a word whose low byte is zero, as RFC 1071 pads it.
    let rest = quads.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        le = add_carry(le, u64::from_le_bytes(last));
    }
    sum + u64::from(fold(le).swap_bytes())
}

/// Inputs shorter than this take `add_short`.
const SHORT: usize = 64;

/// `add` for a short input: big-endian 32-bit words summed in 64 bits (a sum of 32-bit words
/// folds to the sum of their 16-bit halves, 2^16 being 1 in ones' complement arithmetic),
/// the last one to three bytes padded with zeros. Nothing carries out of 64 bits below
/// 2^32 words (the sums passed in, a pseudo-header's at most, are far smaller).
fn add_short(mut sum: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(4);
    for w in &mut words {
        sum += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let byte = |i: usize| rest.get(i).copied().unwrap_or(0);
    if !rest.is_empty() {
        sum += u64::from(u32::from_be_bytes([byte(0), byte(1), byte(2), 0]));
    }
    sum
}

/// `a + b` with the carry out added back in (ones' complement addition).
fn add_carry(a: u64, b: u64) -> u64 {
    let (sum, carried) = a.overflowing_add(b);
    sum + u64::from(carried)
}

/// `sum` in 16 bits, the carries added back in: the same value as adding the high bits to
/// the low 16 until nothing is left above them, in four steps and no branch (a 33-bit value
/// after the first, at most 0x2fffe after the second, 0x10001 after the third).
fn fold(sum: u64) -> u16 {
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The IPv4 header checksum of `pkt` (IPv6 has none: `Unknown`).
pub fn ipv4_header(pkt: &Packet<'_>) -> Validity {
    let ip = pkt.ip;
    match ip.first() {
        Some(b) if b >> 4 == 4 => {}
        _ => return Validity::Unknown,
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let (Some(header), Some(stored)) = (ip.get(..header_len), ip.get(IPV4_CHECKSUM)) else {
        return Validity::Unknown;
    };
    if header_len < 20 || stored == [0, 0] {
        return Validity::Unknown;
    }
    if fold(add(0, header)) == 0xffff {
        Validity::Good
    } else {
        Validity::Bad
    }
}

/// The TCP checksum of `seg`, carried by `pkt`.
pub fn tcp(pkt: &Packet<'_>, seg: &TcpSegment<'_>) -> Validity {
    let ip = pkt.ip;
    let mut sum = 0u64;
    // The pseudo-header: addresses, protocol and the segment's length as the IP header says.
    let declared = match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let header_len = usize::from(ip[0] & 0x0f) * 4;
            let Some(total) = ip
                .get(IPV4_TOTAL_LEN)
                .map(|t| usize::from(u16::from_be_bytes([t[0], t[1]])))
            else {
                return Validity::Unknown;
            };
            let Some(addrs) = ip.get(12..20) else {
                return Validity::Unknown;
            };
            if ip.len() < total {
                return Validity::Unknown;
            }
            sum = add(sum, addrs);
            total.checked_sub(header_len)
        }
        Some(6) => {
            let Some(addrs) = ip.get(8..40) else {
                return Validity::Unknown;
            };
            let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if ip.len() < IPV6_HEADER_LEN + payload_len {
                return Validity::Unknown;
            }
            sum = add(sum, addrs);
            // Extension headers sit between the fixed header and TCP: the segment is what
            // the payload length leaves after them, and the decoder has sliced it so.
            Some(seg.segment.len())
        }
        _ => None,
    };
    let Some(len) = declared else {
        return Validity::Unknown;
    };
    // A jumbogram, or a segment the decoder cut differently from the IP lengths.
    if len != seg.segment.len() || len < 20 {
        return Validity::Unknown;
    }
    let Ok(len) = u32::try_from(len) else {
        return Validity::Unknown;
    };
    sum += u64::from(IPPROTO_TCP);
    sum += u64::from(len >> 16) + u64::from(len & 0xffff);
    if fold(add(sum, seg.segment)) == 0xffff {
        Validity::Good
    } else {
        Validity::Bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, LinkType, Transport};

    /// An IPv4 SYN with Linux's usual options (MSS, SACK, timestamps, window scale); the test
    /// sets both checksums with the reference algorithm before checking the others against it.
    const SYN: &[u8] = &[
        0x45, 0x00, 0x00, 0x3c, 0x6e, 0x5a, 0x40, 0x00, 0x40, 0x06, 0xb4, 0xa6, 0x0a, 0x0a, 0x01,
        0x0b, 0x0a, 0x0a, 0x02, 0x50, 0xb3, 0x6c, 0x01, 0xbb, 0x4d, 0x1f, 0x6e, 0x2b, 0x00, 0x00,
        0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x1a, 0x4e, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04,
        0x02, 0x08, 0x0a, 0x9c, 0x3b, 0x1f, 0x0d, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    fn check(frame: &[u8]) -> (Validity, Validity) {
        let pkt = decode(LinkType::RawIp, frame).expect("decodes");
        let Transport::Tcp(seg) = &pkt.transport else {
            panic!("not TCP")
        };
        (ipv4_header(&pkt), tcp(&pkt, seg))
    }

    #[test]
    fn good_bad_and_unknown() {
        let mut good = SYN.to_vec();
        good[10..12].fill(0);
        let c = !fold(add(0, &good[..20]));
        good[10..12].copy_from_slice(&c.to_be_bytes());
        good[36..38].fill(0);
        let mut pseudo = good[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 6, 0, 40]);
        let c = !fold(add(add(0, &pseudo), &good[20..]));
        good[36..38].copy_from_slice(&c.to_be_bytes());
        assert_eq!(check(&good), (Validity::Good, Validity::Good));

        let mut bad_tcp = good.clone();
        bad_tcp[37] ^= 0x01;
        assert_eq!(check(&bad_tcp), (Validity::Good, Validity::Bad));
        let mut bad_ip = good.clone();
        bad_ip[11] ^= 0x01;
        assert_eq!(check(&bad_ip).0, Validity::Bad);
        // A payload byte changed: the TCP checksum no longer holds.
        let mut changed = good.clone();
        changed[50] ^= 0x40;
        assert_eq!(check(&changed).1, Validity::Bad);
        // Cut by a snap length (the IP header says there was more): not verifiable.
        let mut cut = good.clone();
        cut[2..4].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(check(&cut).1, Validity::Unknown);
        // A zero IPv4 checksum (a reassembled datagram) is not verified.
        let mut zero = good;
        zero[10..12].fill(0);
        assert_eq!(check(&zero).0, Validity::Unknown);
    }

    /// The reference: 16-bit words one at a time, as RFC 1071 states it.
    fn add_words(mut sum: u64, bytes: &[u8]) -> u64 {
        for w in bytes.chunks(2) {
            sum += u64::from(w[0]) << 8 | u64::from(*w.get(1).unwrap_or(&0));
        }
        sum
    }

    #[test]
    fn eight_bytes_at_a_time_folds_as_sixteen_bit_words() {
        // Every length up to three quads past a frame, over bytes that carry often
        // (0xff runs) and seldom, from a start sum of zero and of a pseudo-header's size.
        let mut bytes: Vec<u8> = (0..1600u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        bytes[100..400].fill(0xff);
        for len in 0..bytes.len() {
            for start in [0u64, 0x2_fffd] {
                let b = &bytes[..len];
                assert_eq!(fold(add(start, b)), fold(add_words(start, b)), "len {len}");
            }
        }
        assert_eq!(fold(add(0, &[0xff; 64])), 0xffff);
        assert_eq!(fold(add(0, &[])), 0);
    }

    #[test]
    fn fold_is_the_carry_loop() {
        let by_loop = |mut sum: u64| {
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            sum as u16
        };
        let edges = [
            0,
            1,
            0xffff,
            0x1_0000,
            0x1_fffe,
            0x2_fffe,
            0xffff_ffff,
            1 << 32,
            u64::MAX,
        ];
        let spread = (0..100_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 48));
        for sum in edges.into_iter().chain(spread) {
            assert_eq!(fold(sum), by_loop(sum), "{sum:#x}");
        }
    }
}
