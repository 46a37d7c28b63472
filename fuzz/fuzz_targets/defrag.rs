//! The IPv4/IPv6 reassembler fed a sequence of fragments cut from the input; whatever it
//! completes is decoded as raw IP, as the capture loop does.
//!
//! Input: limits selector (u8), then records, each starting with a flags byte:
//! - `flags & 0x80`: a raw IP packet — length (u16), bytes — decoded with `decode_full`;
//!   a fragment goes to the reassembler.
//! - otherwise a fragment built directly: source (u8: two IPv4 and two IPv6 hosts), id (u8),
//!   IHL (u8, IPv4 only), fragment offset (u16, in 8-byte units as on the wire), length
//!   (u16); then, for IPv4, the header (IHL × 4 bytes, 20 to 60 as the decoder yields), and
//!   the payload. `flags & 1`: more fragments; `flags & 0x40`: TCP, else UDP.
//!
//! `flags & 0x30` moves the packet clock: +1 s, +31 s (past the timeout), or −5 s.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vendorwatch::decode::defrag::{DefragLimits, Defragmenter, Outcome};
use vendorwatch::decode::{decode, decode_full, Decoded, Encaps, Fragment, LinkType};
use vendorwatch::time::Timestamp;
use vendorwatch_fuzz::Cursor;

const V4: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)];
const V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
];

fn feed(defrag: &mut Defragmenter, limits: &DefragLimits, ts: Timestamp, f: &Fragment<'_>) {
    if let Outcome::Complete(datagram) = defrag.add(ts, f) {
        let _ = decode(LinkType::RawIp, &datagram);
    }
    assert!(
        defrag.bytes_held() <= limits.max_bytes,
        "held {} bytes",
        defrag.bytes_held()
    );
    assert!(
        defrag.in_progress() <= limits.max_datagrams,
        "{} in progress",
        defrag.in_progress()
    );
}

fuzz_target!(|d: &[u8]| {
    let mut c = Cursor::new(d);
    let Some(selector) = c.u8() else { return };
    // Tight limits reach every shedding path; the defaults are what the sensor runs with.
    let limits = if selector & 1 == 0 {
        DefragLimits {
            max_datagrams: 8,
            max_bytes: 8 * 1024,
            max_per_source: 4,
            timeout_secs: 30,
        }
    } else {
        DefragLimits::default()
    };
    let mut defrag = Defragmenter::new(limits);
    let mut ts = Timestamp::from_parts(1_700_000_000, 0);
    while let Some(flags) = c.u8() {
        ts = match flags & 0x30 {
            0x00 => ts,
            0x10 => ts.saturating_add_secs(1),
            0x20 => ts.saturating_add_secs(31),
            _ => Timestamp(ts.0.saturating_sub(5_000_000_000)),
        };
        if flags & 0x80 != 0 {
            let Some(len) = c.u16() else { break };
            let packet = c.take_up_to(usize::from(len));
            if let Ok(Decoded::Fragment(f)) = decode_full(LinkType::RawIp, packet) {
                feed(&mut defrag, &limits, ts, &f);
            }
            continue;
        }
        let (Some(host), Some(id), Some(ihl), Some(offset), Some(len)) =
            (c.u8(), c.u8(), c.u8(), c.u16(), c.u16())
        else {
            break;
        };
        let v6 = host & 2 != 0;
        let (src, dst) = match (v6, host & 1) {
            (false, i) => (
                IpAddr::V4(V4[usize::from(i)]),
                IpAddr::V4(V4[usize::from(1 - i)]),
            ),
            (true, i) => (
                IpAddr::V6(V6[usize::from(i)]),
                IpAddr::V6(V6[usize::from(1 - i)]),
            ),
        };
        let ipv4_header = if v6 {
            None
        } else {
            let Some(h) = c.take(usize::from(5 + ihl % 11) * 4) else {
                break;
            };
            Some(h)
        };
        let f = Fragment {
            src,
            dst,
            id: u32::from(id),
            protocol: if flags & 0x40 != 0 { 6 } else { 17 },
            offset: usize::from(offset & 0x1fff) * 8,
            more: flags & 1 != 0,
            payload: c.take_up_to(usize::from(len)),
            ipv4_header,
            encaps: Encaps::default(),
        };
        feed(&mut defrag, &limits, ts, &f);
    }
});
