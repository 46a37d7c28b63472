//! Frames and event filters shared by the flow tests.

use super::Extractor;
use crate::decode::{decode, LinkType};
use crate::extract::{Extracted, Identity, NameKind};
use crate::time::Timestamp;

/// Feeds raw-IP frames (at their second) to `ex`, ends every flow, and returns all it reported.
pub(super) fn collect(ex: &mut Extractor, frames: &[(u32, Vec<u8>)]) -> Vec<Extracted<'static>> {
    let mut got = feed(ex, frames);
    ex.finish(&mut |e| got.push(e.into_owned()));
    got
}

/// What `frames` (at their second) reveal while the flows go on (`collect` without the end).
pub(super) fn feed(ex: &mut Extractor, frames: &[(u32, Vec<u8>)]) -> Vec<Extracted<'static>> {
    let mut got = Vec::new();
    for (t, f) in frames {
        let pkt = decode(LinkType::RawIp, f).expect("test frame decodes");
        ex.process(Timestamp::from_parts(i64::from(*t), 0), &pkt, &mut |e| {
            got.push(e.into_owned())
        });
    }
    got
}

/// The ISN of the server's SYN-ACK in the tests: the client's frames from `tcp` acknowledge
/// the byte after it (a client acknowledges nothing else before the server sends data).
pub(super) const SERVER_ISN: u32 = 5000;

/// IPv4/TCP frame from 10.0.0.1:40000 to 10.0.0.2:443 (or reversed) with flags and payload;
/// a client frame's acknowledgment number is `SERVER_ISN + 1` (a server frame's 0).
pub(super) fn tcp(reverse: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let (a, b, pa, pb) = if reverse {
        ([10, 0, 0, 2], [10, 0, 0, 1], 443u16, 40000u16)
    } else {
        ([10, 0, 0, 1], [10, 0, 0, 2], 40000, 443)
    };
    let mut f = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0];
    f.extend_from_slice(&a);
    f.extend_from_slice(&b);
    let total = (20 + 20 + payload.len()) as u16;
    f[2..4].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&pa.to_be_bytes());
    f.extend_from_slice(&pb.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    let ack = if reverse { 0 } else { SERVER_ISN + 1 };
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// `frame` (from `tcp`) with another acknowledgment number.
pub(super) fn with_ack(mut frame: Vec<u8>, ack: u32) -> Vec<u8> {
    frame[28..32].copy_from_slice(&ack.to_be_bytes());
    frame
}

/// A ClientHello naming `name`, in TLS records as a client sends it.
pub(super) fn hello_records(name: &str) -> Vec<u8> {
    crate::extract::tls::tests::records(&crate::extract::tls::tests::client_hello(name, 0), 16384)
}

/// `hello_records` padded by 900 bytes: long enough to split over two segments at 700.
pub(super) fn padded_hello_records(name: &str) -> Vec<u8> {
    crate::extract::tls::tests::records(&crate::extract::tls::tests::client_hello(name, 900), 16384)
}

/// `tcp` from the client, from client port `port` (one connection among many).
pub(super) fn tcp_from_port(port: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = tcp(false, seq, flags, payload);
    f[20..22].copy_from_slice(&port.to_be_bytes());
    f
}

/// `tcp` from the server to client port `port` (its answer on one connection among many).
pub(super) fn tcp_to_port(port: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = tcp(true, seq, flags, payload);
    f[22..24].copy_from_slice(&port.to_be_bytes());
    f
}

/// TCP flags for `tcp`.
pub(super) const SYN: u8 = 0x02;
pub(super) const ACK: u8 = 0x10;
pub(super) const SYNACK: u8 = 0x12;
/// FIN with ACK.
pub(super) const FIN: u8 = 0x11;

/// The names reported, in order.
pub(super) fn names(got: &[Extracted]) -> Vec<(NameKind, String)> {
    got.iter()
        .filter_map(|e| match e {
            Extracted::Name(n) => Some((n.kind, n.value.to_string())),
            _ => None,
        })
        .collect()
}

/// The TLS server names reported, in order.
pub(super) fn tls_names(got: &[Extracted]) -> Vec<String> {
    names_of_kind(got, NameKind::TlsSni)
}

/// The names of one kind reported, in order.
pub(super) fn names_of_kind(got: &[Extracted], kind: NameKind) -> Vec<String> {
    names(got)
        .into_iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, v)| v)
        .collect()
}

/// How many times an anomaly was counted.
pub(super) fn anomaly_count(got: &[Extracted], reason: &str) -> usize {
    got.iter()
        .filter(|e| matches!(e, Extracted::Anomaly(r) if r.reason() == reason))
        .count()
}

/// A frame as a capture with snap length `keep` (bytes of IP packet) stores it.
pub(super) fn snap(frame: Vec<u8>, keep: usize) -> Vec<u8> {
    frame[..keep.min(frame.len())].to_vec()
}

/// IPv4/UDP frame (checksum zero: not checked).
pub(super) fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let total = (20 + 8 + payload.len()) as u16;
    f[2..4].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// IPv6/UDP frame (checksum zero: not checked).
pub(super) fn udp6(src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let (src, dst): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        (src.parse().expect("v6"), dst.parse().expect("v6"));
    let len = (8 + payload.len()) as u16;
    let mut f = vec![0x60, 0, 0, 0];
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&[17, 64]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// The identities reported, in order.
pub(super) fn identities(got: &[Extracted]) -> Vec<Identity> {
    got.iter()
        .filter_map(|e| match e {
            Extracted::Identity(i) => Some(i.clone()),
            _ => None,
        })
        .collect()
}
