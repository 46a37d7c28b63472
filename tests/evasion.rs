//! Crafted segments that a receiver would drop must not steer the sensor. Frames are built
//! here (etherparse) and written as a pcap; the expectation is the protocol's: the receiver
//! drops a segment with a bad checksum and a packet whose IP length runs past the frame.

use std::io::Write;
use std::process::Command;

const CLIENT: [u8; 4] = [10, 40, 0, 11];
const SERVER: [u8; 4] = [10, 40, 0, 80];

fn frame(from_client: bool, seq: u32, ack: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sport, dport) = if from_client {
        (CLIENT, SERVER, 40123, 80)
    } else {
        (SERVER, CLIENT, 80, 40123)
    };
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 64240);
    let b = if syn { b.syn() } else { b.ack(ack).psh() };
    let b = if syn && !from_client { b.ack(ack) } else { b };
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("build");
    v
}

fn write_pcap(path: &std::path::Path, frames: &[Vec<u8>]) {
    let mut f = std::fs::File::create(path).expect("create");
    let mut h = Vec::new();
    h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&0i32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&65535u32.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    for (i, fr) in frames.iter().enumerate() {
        h.extend_from_slice(&1_800_000_000u32.to_le_bytes());
        h.extend_from_slice(&(i as u32 * 1000).to_le_bytes());
        h.extend_from_slice(&(fr.len() as u32).to_le_bytes());
        h.extend_from_slice(&(fr.len() as u32).to_le_bytes());
        h.extend_from_slice(fr);
    }
    f.write_all(&h).expect("write");
}

/// The IPv4 header checksum of an Ethernet frame, recomputed.
fn fix_ip_checksum(f: &mut [u8]) {
    f[24] = 0;
    f[25] = 0;
    let mut s: u32 = f[14..34]
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(c[1]))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    f[24..26].copy_from_slice(&(!(s as u16)).to_be_bytes());
}

#[test]
fn a_segment_whose_ip_length_runs_past_the_frame_does_not_end_the_flow() {
    let request = b"GET / HTTP/1.1\r\nHost: dnl-01.geo.kaspersky.com\r\n\r\n";
    // Junk at the request's sequence number, its TCP checksum wrong (the server drops it) and
    // its IP total length 1,000 bytes longer than the frame (a snap-length cut, if believed).
    let mut forged = frame(true, 1001, 5001, false, b"XXXX");
    forged[50] ^= 0xff;
    let total = u16::from_be_bytes([forged[16], forged[17]]) + 1000;
    forged[16..18].copy_from_slice(&total.to_be_bytes());
    fix_ip_checksum(&mut forged);
    let frames = vec![
        frame(true, 1000, 0, true, b""),
        frame(false, 5000, 1001, true, b""),
        forged,
        frame(true, 1001, 5001, false, request),
    ];
    let tmp = tempfile::tempdir().expect("tmp");
    let pcap = tmp.path().join("forged-length.pcap");
    write_pcap(&pcap, &frames);
    let alerts = tmp.path().join("a.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_vendorwatch"))
        .args(["replay", "--state", "none", "--alerts"])
        .arg(&alerts)
        .arg(&pcap)
        .output()
        .expect("runs vendorwatch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = std::fs::read_to_string(&alerts).expect("alerts");
    assert!(
        text.contains("\"http_host\"") && text.contains("dnl-01.geo.kaspersky.com"),
        "the real request must be read: {stderr}"
    );
    assert!(stderr.contains("ip_length_exceeds_frame 1"), "{stderr}");
}
