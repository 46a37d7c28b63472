//! QUIC on a UDP flow, one record per flow: the client's connection IDs (which tell a new
//! connection on the same 4-tuple from this one's packets, for the flow's whole life), and
//! while its ClientHello is read the Initial packets' CRYPTO stream. Initials are keyed by the
//! client's first Destination Connection ID, or after a Retry by the one the Retry gave it
//! (RFC 9001 §5.2). Once a hello is read, later client Initials are held against it (a decoy
//! sent first, the hello after a Retry or a HelloRetryRequest) until the server answers with
//! its handshake.

use super::tls::{emit_hello, name_key};
use super::{Conn, Step};
use crate::extract::anomaly::FlowAnomaly;
use crate::extract::{quic, tls, Extracted, NameKind};
use crate::time::Timestamp;
use std::net::SocketAddr;

/// Client datagrams of a QUIC flow read before giving up on its ClientHello: enough for a
/// hello of `quic::MAX_CRYPTO_BYTES` in full-size Initials (about 1,150 CRYPTO bytes each).
const QUIC_MAX_DATAGRAMS: u8 = 64;

/// A QUIC flow's state.
#[derive(Debug)]
pub(super) struct QuicState {
    /// The client's connection IDs, from its first Initial on.
    ids: Option<ConnectionIds>,
    /// The Initials' CRYPTO stream while the ClientHello is read; `None` once the flow is no
    /// longer inspected.
    hello: Option<HelloReader>,
}

/// The client's first Destination Connection ID, the one a server's Retry gave it, and the
/// client's own (Source) connection ID: a client Initial opening a connection with another
/// DCID is a new connection, and the server's Handshake packets carry the client's SCID.
#[derive(Debug)]
struct ConnectionIds {
    first: Vec<u8>,
    after_retry: Option<Vec<u8>>,
    client_scid: Vec<u8>,
}

impl ConnectionIds {
    /// The DCID the client's Initials are keyed by now (RFC 9001 §5.2): after a Retry, the
    /// connection ID the Retry gave it, even once its Initials carry another.
    fn key(&self) -> &[u8] {
        self.after_retry.as_deref().unwrap_or(&self.first)
    }
}

/// The CRYPTO stream of the client's Initials, and how many datagrams it took so far.
#[derive(Debug, Default)]
struct HelloReader {
    crypto: quic::CryptoStream,
    datagrams: u8,
    /// Once a hello is read: the stream bytes read as hellos. Later client Initials are held
    /// against them, since the one read first may have been a decoy the server never took.
    read: Option<Vec<u8>>,
    /// CRYPTO bytes of later Initials that differ from those read: another hello.
    other: Option<OtherHello>,
    /// `name_key`s of the names reported for the flow (`name_key(None)` for a hello without
    /// one), so that each is reported once.
    reported: Vec<u64>,
}

/// Another hello in the client's later Initials: one that replaces the hello read (it starts
/// at offset 0), or the second ClientHello after a HelloRetryRequest (it starts where the
/// hellos read end, since the Initials' CRYPTO stream goes on).
#[derive(Debug)]
struct OtherHello {
    /// Stream offset of the hello's first byte.
    base: u64,
    crypto: quic::CryptoStream,
}

impl Default for QuicState {
    /// A flow whose first client Initial was just seen: its ClientHello is to be read.
    fn default() -> Self {
        QuicState {
            ids: None,
            hello: Some(HelloReader::default()),
        }
    }
}

impl QuicState {
    /// Whether the ClientHello is still being read.
    pub(super) fn reading(&self) -> bool {
        self.hello.is_some()
    }

    /// Stops reading: the CRYPTO stream is freed, the connection IDs are kept.
    pub(super) fn finish(&mut self) {
        self.hello = None;
    }

    /// Bytes of memory held for reading the hello (counted in the reassembly budget).
    pub(super) fn held(&self) -> usize {
        self.hello.as_ref().map_or(0, |h| {
            h.crypto.held()
                + h.read.as_ref().map_or(0, Vec::capacity)
                + h.other.as_ref().map_or(0, |o| o.crypto.held())
        })
    }

    /// Bytes the CRYPTO stream had to shed (its cap).
    pub(super) fn dropped_bytes(&self) -> u64 {
        self.hello.as_ref().map_or(0, |h| h.crypto.dropped())
    }

    /// Whether a datagram from `src` opens another QUIC connection on the flow's UDP
    /// 4-tuple (and notes the DCID a server's Retry gives the client, which is the same
    /// connection's).
    pub(super) fn new_connection(
        &mut self,
        client: SocketAddr,
        src: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        let Some(ids) = self.ids.as_mut() else {
            return false;
        };
        let Some((dcid, scid, retry)) = quic::long_header_cids(datagram) else {
            return false;
        };
        if src != client {
            if retry {
                ids.after_retry = Some(scid.to_vec());
            }
            return false;
        }
        if dcid == ids.first.as_slice() || ids.after_retry.as_deref() == Some(dcid) {
            return false;
        }
        quic::looks_like_client_initial(datagram) && quic::opens_connection(datagram)
    }

    /// Looks at a server datagram: once the server answers a hello read with its handshake
    /// (a Handshake packet to the client's connection ID), the client sends no other hello on
    /// the connection, so reading stops.
    pub(super) fn server_datagram(&self, datagram: &[u8]) -> Step {
        match (&self.hello, &self.ids) {
            (Some(HelloReader { read: Some(_), .. }), Some(ids))
                if quic::server_handshake_began(datagram, &ids.client_scid) =>
            {
                Step::Finish
            }
            _ => Step::Wait,
        }
    }

    /// Reads a client datagram's Initial packets, until the ClientHello they carry is whole.
    pub(super) fn inspect(
        &mut self,
        conn: &mut Conn,
        ts: Timestamp,
        datagram: &[u8],
        out: &mut impl FnMut(Extracted),
    ) -> Step {
        let Some(reader) = self.hello.as_mut() else {
            return Step::Wait;
        };
        if reader.read.is_some() {
            reader.datagrams += 1;
            return match &self.ids {
                Some(ids) => recheck(reader, ids.key(), conn, ts, datagram, out),
                None => Step::Finish,
            };
        }
        let initials = match &self.ids {
            None => quic::client_initials(datagram),
            Some(ids) => quic::client_initials_keyed(datagram, ids.key()),
        };
        match initials {
            Ok(initials) => {
                // Only datagrams that decrypt count toward the hello's datagrams: junk that
                // looks like Initials (which the server drops: a wrong checksum, keys it does
                // not derive) must not use them up before the real one.
                if !initials.is_empty() {
                    reader.datagrams += 1;
                }
                for initial in initials {
                    self.ids.get_or_insert_with(|| ConnectionIds {
                        first: initial.dcid.clone(),
                        after_retry: None,
                        client_scid: quic::long_header_cids(datagram)
                            .map(|(_, scid, _)| scid.to_vec())
                            .unwrap_or_default(),
                    });
                    for (offset, data) in &initial.crypto {
                        reader.crypto.add(*offset, data);
                    }
                }
            }
            Err(e) => out(Extracted::Anomaly(e.into())),
        }
        let hello = match tls::parse_client_hello_message(reader.crypto.contiguous()) {
            tls::Parse::Hello(hello) => hello.into_owned(),
            tls::Parse::NeedMore
                if reader.datagrams < QUIC_MAX_DATAGRAMS && reader.crypto.dropped() == 0 =>
            {
                return Step::Wait
            }
            tls::Parse::NeedMore => {
                out(Extracted::Anomaly(
                    FlowAnomaly::QuicClientHelloIncomplete.into(),
                ));
                return Step::Finish;
            }
            tls::Parse::NotTls | tls::Parse::Malformed(_) => {
                out(Extracted::Anomaly(
                    FlowAnomaly::QuicClientHelloMalformed.into(),
                ));
                return Step::Finish;
            }
        };
        report(reader, conn, ts, &hello, out);
        // A few more client datagrams are looked at: an Initial that repeats the hello's
        // offsets with other bytes is another hello (see `recheck`).
        let hello_len = message_len(reader.crypto.contiguous());
        reader.read = Some(reader.crypto.contiguous()[..hello_len].to_vec());
        more_datagrams(reader)
    }
}

/// Reports a hello's names (or its fingerprint) that the flow has not reported yet.
fn report(
    reader: &mut HelloReader,
    conn: &mut Conn,
    ts: Timestamp,
    hello: &tls::ClientHello<'_>,
    out: &mut impl FnMut(Extracted),
) {
    let reported = &mut reader.reported;
    emit_hello(
        conn,
        ts,
        NameKind::QuicSni,
        hello,
        |name| {
            let key = name_key(name);
            let fresh = !reported.contains(&key);
            if fresh {
                reported.push(key);
            }
            fresh
        },
        out,
    );
}

/// The length of the handshake message at the start of `bytes` (4-byte header and body),
/// which a parsed ClientHello guarantees are there.
fn message_len(bytes: &[u8]) -> usize {
    match bytes {
        [_, a, b, c, ..] => {
            (4 + (usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c))).min(bytes.len())
        }
        _ => bytes.len(),
    }
}

fn more_datagrams(reader: &HelloReader) -> Step {
    if reader.datagrams < QUIC_MAX_DATAGRAMS {
        Step::Wait
    } else {
        Step::Finish
    }
}

/// After a hello is read: a client Initial whose CRYPTO bytes differ from it at the same
/// offsets carries another hello. A decoy sent first (a bad UDP checksum or a TTL that
/// expires before the server, so the server never takes it) would otherwise hide the real
/// one, whose bytes repeat offsets already read. CRYPTO bytes past the hellos read are the
/// second ClientHello after a HelloRetryRequest. Either is read on its own (a replacement
/// over the bytes read, for the frames it repeats unchanged), its new names reported, and it
/// becomes what later Initials are held against. Bytes that contradict the other hello being
/// gathered start it again, so one junk frame cannot block the real one. A retransmitted
/// Initial repeats the same bytes; the ACKs a client sends once the server answered carry
/// none.
fn recheck(
    reader: &mut HelloReader,
    key_dcid: &[u8],
    conn: &mut Conn,
    ts: Timestamp,
    datagram: &[u8],
    out: &mut impl FnMut(Extracted),
) -> Step {
    let Some(read) = reader.read.as_ref() else {
        return Step::Finish;
    };
    let read_end = read.len() as u64;
    let mut gathered = false;
    if let Ok(initials) = quic::client_initials_keyed(datagram, key_dcid) {
        for (offset, data) in initials.iter().flat_map(|i| &i.crypto) {
            let replacing = reader.other.as_ref().is_some_and(|o| o.base == 0);
            // The part of the frame over the bytes read, and the part past them.
            let over = usize::try_from(read_end.saturating_sub(*offset))
                .unwrap_or(usize::MAX)
                .min(data.len());
            let (under, past) = data.split_at(over);
            let same = under.is_empty()
                || usize::try_from(*offset)
                    .ok()
                    .and_then(|at| read.get(at..at.checked_add(under.len())?))
                    == Some(under);
            if replacing || !same {
                gather(&mut reader.other, 0, *offset, data);
                gathered = true;
            } else if !past.is_empty() {
                gather(&mut reader.other, read_end, offset + over as u64, past);
                gathered = true;
            }
        }
    }
    // Nothing added to the other hello: it reads as it did after the last datagram.
    let Some(other) = reader.other.as_ref().filter(|_| gathered) else {
        return more_datagrams(reader);
    };
    // A replacement is read over the bytes read: frames it repeats unchanged were not kept.
    let view = if other.base == 0 {
        std::borrow::Cow::Owned(other.crypto.overlay(read))
    } else {
        std::borrow::Cow::Borrowed(other.crypto.contiguous())
    };
    if let tls::Parse::Hello(hello) = tls::parse_client_hello_message(&view) {
        let hello = hello.into_owned();
        let hello_bytes = &view[..message_len(&view)];
        let now_read = if other.base == 0 {
            hello_bytes.to_vec()
        } else {
            [read.as_slice(), hello_bytes].concat()
        };
        report(reader, conn, ts, &hello, out);
        reader.read = Some(now_read);
        reader.other = None;
    }
    more_datagrams(reader)
}

/// Adds a frame to the other hello being gathered from `base`, starting it again when it was
/// gathered from another base or holds other bytes where the frame's go.
fn gather(other: &mut Option<OtherHello>, base: u64, offset: u64, data: &[u8]) {
    let Some(at) = offset.checked_sub(base) else {
        return;
    };
    if other
        .as_ref()
        .is_some_and(|o| o.base != base || o.crypto.contradicts(at, data))
    {
        *other = None;
    }
    other
        .get_or_insert_with(|| OtherHello {
            base,
            crypto: quic::CryptoStream::new(),
        })
        .crypto
        .add(at, data);
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Extractor, ExtractorLimits};
    use crate::extract::quic::{crypto_frame, seal_keyed};
    use crate::extract::{tls, NameKind};

    /// A client datagram: one QUIC v1 Initial for `dcid` whose CRYPTO frame is a ClientHello
    /// naming `sni`, padded to 1,200 bytes.
    fn initial(dcid: &[u8], pn: u32, sni: &str) -> Vec<u8> {
        initial_at(dcid, pn, 0, sni)
    }

    /// As `initial`, with the hello at CRYPTO stream offset `offset`.
    fn initial_at(dcid: &[u8], pn: u32, offset: u16, sni: &str) -> Vec<u8> {
        crypto_at(dcid, pn, offset, &hello(sni, 0))
    }

    /// A client datagram of one Initial for `dcid`, keyed by it, whose one CRYPTO frame holds
    /// `bytes` at `offset`.
    fn crypto_at(dcid: &[u8], pn: u32, offset: u16, bytes: &[u8]) -> Vec<u8> {
        initial_frames(dcid, dcid, pn, &crypto_frame(offset, bytes))
    }

    /// A client datagram of one Initial holding `frames` (CRYPTO frames and the like), for
    /// `dcid` and keyed by `key`, padded to 1,200 bytes.
    fn initial_frames(dcid: &[u8], key: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
        let mut payload = frames.to_vec();
        payload.resize(1162, 0);
        let packet = seal_keyed(1, 0xc3, dcid, key, b"", pn, &payload);
        udp([10, 0, 0, 1], [10, 0, 0, 2], 40000, 443, &packet)
    }

    fn hello(sni: &str, pad: usize) -> Vec<u8> {
        tls::tests::client_hello(sni, pad)
    }

    /// A server datagram of the flow: `first` is the first byte of a long header whose
    /// contents do not matter (0xc0 an Initial, 0xe0 a Handshake packet, in v1), to the
    /// client's (empty) connection ID.
    fn server_packet(first: u8) -> Vec<u8> {
        let mut packet = vec![first, 0, 0, 0, 1, 0, 8];
        packet.extend([9; 8]);
        if first == 0xc0 {
            packet.push(0); // no token
        }
        packet.extend([0x40, 100]);
        packet.resize(packet.len() + 100, 0x5a);
        udp([10, 0, 0, 2], [10, 0, 0, 1], 443, 40000, &packet)
    }

    fn quic_names(frames: &[(u32, Vec<u8>)]) -> Vec<String> {
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), frames);
        names_of_kind(&got, NameKind::QuicSni)
    }

    #[test]
    fn a_decoy_initial_before_the_real_one_does_not_hide_it() {
        // A DPI-evasion "fake": the same DCID, a decoy name, sent first with a bad UDP
        // checksum or a TTL that expires before the server; then the real Initial.
        let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
        let frames = [
            (1, initial(&dcid, 0, "www.example.org")),
            (1, initial(&dcid, 0, "dnl-01.geo.kaspersky.com")),
        ];
        assert_eq!(
            quic_names(&frames),
            ["www.example.org", "dnl-01.geo.kaspersky.com"]
        );
        // A retransmitted Initial repeats the hello: one name.
        let frames = [
            (1, initial(&dcid, 0, "dnl-01.geo.kaspersky.com")),
            (1, initial(&dcid, 1, "dnl-01.geo.kaspersky.com")),
        ];
        assert_eq!(quic_names(&frames), ["dnl-01.geo.kaspersky.com"]);
    }

    #[test]
    fn the_second_hello_after_a_hello_retry_request_is_read() {
        // The server's HelloRetryRequest (an Initial alone), then the client's second
        // ClientHello, which goes on with the Initials' CRYPTO stream where the first ended.
        let dcid = [0x5e, 0x11, 0x0c, 0x2d, 0x7a, 0x93, 0x04, 0xbb];
        let first_len = tls::tests::client_hello("www.example.org", 0).len() as u16;
        let frames = [
            (1, initial(&dcid, 0, "www.example.org")),
            (1, server_packet(0xc0)),
            (
                1,
                initial_at(&dcid, 1, first_len, "dnl-01.geo.kaspersky.com"),
            ),
        ];
        assert_eq!(
            quic_names(&frames),
            ["www.example.org", "dnl-01.geo.kaspersky.com"]
        );
    }

    #[test]
    fn a_hello_padded_over_dozens_of_initials_is_read() {
        // 40,000 bytes of padding: 35 datagrams of 1,150 CRYPTO bytes, each pair swapped.
        let dcid = [0x4b, 0x1d, 0x7e, 0x02, 0x93, 0xaa, 0x5c, 0x61];
        let big = hello("dnl-01.geo.kaspersky.com", 40_000);
        let mut frames: Vec<_> = big
            .chunks(1_150)
            .enumerate()
            .map(|(i, chunk)| {
                let pn = i as u32;
                (1, crypto_at(&dcid, pn, (i * 1_150) as u16, chunk))
            })
            .collect();
        assert!(frames.len() > 32);
        for pair in frames.chunks_mut(2) {
            pair.reverse();
        }
        assert_eq!(quic_names(&frames), ["dnl-01.geo.kaspersky.com"]);
    }

    #[test]
    fn crypto_streams_count_in_the_reassembly_budget() {
        let dcid = [0x0f; 8];
        let lone_byte_at = |offset: u16, port: u16| {
            let mut payload = crypto_frame(offset, b"x");
            payload.resize(1162, 0);
            let packet = seal_keyed(1, 0xc3, &dcid, &dcid, b"", 0, &payload);
            (1, udp([10, 0, 1, 1], [10, 0, 0, 2], port, 443, &packet))
        };
        // A byte far past the bytes received is dropped: it would cost the stream up to it.
        let mut ex = Extractor::new(ExtractorLimits::default());
        collect(&mut ex, &[lone_byte_at(60_000, 20_000)]);
        assert_eq!(ex.buffered_bytes(), 0);
        // Initials from 400 clients with one byte as far ahead as is kept: each flow holds
        // ~4 KiB for a hello it never gets, and the budget gives the oldest up.
        let budget = 1 << 20;
        let limits = ExtractorLimits {
            reassembly_budget: budget,
            ..ExtractorLimits::default()
        };
        let mut ex = Extractor::new(limits);
        let frames: Vec<_> = (0..400u16)
            .map(|i| lone_byte_at(4_000, 20_000 + i))
            .collect();
        let got = collect(&mut ex, &frames);
        assert!(
            ex.buffered_bytes() <= budget + 8_000,
            "{} bytes held",
            ex.buffered_bytes()
        );
        assert!(anomaly_count(&got, "reassembly_budget") > 100);
    }

    #[test]
    fn reading_stops_once_the_server_answers_with_its_handshake() {
        // After the server's Handshake packets the client sends no other hello: a later
        // Initial is not decrypted, whatever it holds.
        let dcid = [0x21, 0x43, 0x65, 0x87, 0xa9, 0xcb, 0xed, 0x0f];
        let frames = [
            (1, initial(&dcid, 0, "dnl-01.geo.kaspersky.com")),
            (1, server_packet(0xe0)),
            (1, initial(&dcid, 1, "www.example.org")),
        ];
        assert_eq!(quic_names(&frames), ["dnl-01.geo.kaspersky.com"]);
        // Before it, the same Initial is another hello.
        let frames = [
            (1, initial(&dcid, 0, "dnl-01.geo.kaspersky.com")),
            (1, server_packet(0xc0)),
            (1, initial(&dcid, 1, "www.example.org")),
        ];
        assert_eq!(
            quic_names(&frames),
            ["dnl-01.geo.kaspersky.com", "www.example.org"]
        );
    }

    #[test]
    fn initials_that_do_not_decrypt_do_not_use_up_the_hellos_datagrams() {
        // 80 datagrams shaped as Initials for the DCID whose ciphertext was altered (the
        // server's kernel drops them for their checksum, or its TLS stack for their tag),
        // then the real Initial: read.
        let dcid = [0x5a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];
        let real = initial(&dcid, 0, "dnl-01.geo.kaspersky.com");
        let mut frames: Vec<(u32, Vec<u8>)> = (0..80)
            .map(|n| {
                let mut junk = real.clone();
                let at = junk.len() - 100 - n;
                junk[at] ^= 0xff;
                (1, junk)
            })
            .collect();
        frames.push((1, real));
        assert_eq!(quic_names(&frames), ["dnl-01.geo.kaspersky.com"]);
    }

    #[test]
    fn decoys_and_junk_before_the_real_hello_do_not_hide_it() {
        let dcid = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];
        let decoy = hello("www.example.org", 0);
        let real = hello("dnl-01.geo.kaspersky.com", 0);
        // Two decoys naming the same server (the second with other bytes), then the real one.
        let frames = [
            (1, crypto_at(&dcid, 0, 0, &decoy)),
            (1, crypto_at(&dcid, 1, 0, &hello("www.example.org", 9))),
            (1, crypto_at(&dcid, 2, 0, &real)),
        ];
        assert_eq!(
            quic_names(&frames),
            ["www.example.org", "dnl-01.geo.kaspersky.com"]
        );
        // One byte of junk at offset 0, then the real hello: the junk is dropped.
        let frames = [
            (1, crypto_at(&dcid, 0, 0, &decoy)),
            (1, crypto_at(&dcid, 1, 0, &[0])),
            (1, crypto_at(&dcid, 2, 0, &real)),
        ];
        assert_eq!(
            quic_names(&frames),
            ["www.example.org", "dnl-01.geo.kaspersky.com"]
        );
        // The real hello in two frames, the second of which repeats the decoy's bytes (a
        // same-length name, so everything after it is the same): read over the decoy's.
        let decoy = hello("www.example-corp.com", 0);
        let real = hello("dnl-01.kaspersky.com", 0);
        assert_eq!(decoy.len(), real.len());
        let half = (real.len() / 2) as u16;
        let frames = [
            (1, crypto_at(&dcid, 0, 0, &decoy)),
            (1, crypto_at(&dcid, 1, half, &real[usize::from(half)..])),
            (1, crypto_at(&dcid, 2, 0, &real[..usize::from(half)])),
        ];
        assert_eq!(
            quic_names(&frames),
            ["www.example-corp.com", "dnl-01.kaspersky.com"]
        );
    }

    #[test]
    fn a_second_hello_that_straddles_the_first_ones_end_is_read() {
        // After a HelloRetryRequest, the second hello in one frame that starts one byte early,
        // repeating the first hello's last byte.
        let dcid = [0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11];
        let first = hello("www.example.org", 0);
        let second = hello("dnl-01.geo.kaspersky.com", 0);
        let straddling = [&first[first.len() - 1..], &second[..]].concat();
        let frames = [
            (1, crypto_at(&dcid, 0, 0, &first)),
            (1, server_packet(0xc0)),
            (1, crypto_at(&dcid, 1, first.len() as u16 - 1, &straddling)),
        ];
        assert_eq!(
            quic_names(&frames),
            ["www.example.org", "dnl-01.geo.kaspersky.com"]
        );
    }

    #[test]
    fn a_second_hello_whose_later_half_comes_first_is_read() {
        let dcid = [0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38];
        let first = hello("www.example.org", 0);
        let second = hello("dnl-01.geo.kaspersky.com", 0);
        let (end, half) = (first.len() as u16, (second.len() / 2) as u16);
        let frames = [
            (1, crypto_at(&dcid, 0, 0, &first)),
            (1, server_packet(0xc0)),
            (
                1,
                crypto_at(&dcid, 1, end + half, &second[usize::from(half)..]),
            ),
            (1, crypto_at(&dcid, 2, end, &second[..usize::from(half)])),
        ];
        assert_eq!(
            quic_names(&frames),
            ["www.example.org", "dnl-01.geo.kaspersky.com"]
        );
    }

    #[test]
    fn after_a_retry_initials_are_keyed_by_the_retry_connection_id() {
        // The hello, the server's Retry (its SCID `retry_cid`), the hello again to that ID,
        // the server's HelloRetryRequest, then the second hello: to the server's new ID, still
        // keyed by the Retry's.
        let first_cid = [0x21; 8];
        let retry_cid = [0x42; 8];
        let server_cid = [0x63; 8];
        let first = hello("www.example.org", 0);
        let second = hello("dnl-01.geo.kaspersky.com", 0);
        let mut retry = vec![0xf0, 0, 0, 0, 1, 0, 8];
        retry.extend(retry_cid);
        retry.extend(b"token");
        retry.extend([0; 16]);
        let frames = [
            (1, crypto_at(&first_cid, 0, 0, &first)),
            (1, udp([10, 0, 0, 2], [10, 0, 0, 1], 443, 40000, &retry)),
            (1, crypto_at(&retry_cid, 0, 0, &first)),
            (1, server_packet(0xc0)),
            (
                1,
                initial_frames(
                    &server_cid,
                    &retry_cid,
                    1,
                    &crypto_frame(first.len() as u16, &second),
                ),
            ),
        ];
        assert_eq!(
            quic_names(&frames),
            ["www.example.org", "dnl-01.geo.kaspersky.com"]
        );
    }
}
