//! QUIC on a UDP flow, one record per flow: the client's connection IDs (which tell a new
//! connection on the same 4-tuple from this one's packets, for the flow's whole life), and
//! until its ClientHello is read, the Initial packets' CRYPTO stream (RFC 9001 keys every
//! Initial from the client's first Destination Connection ID).

use super::tls::emit_hello;
use super::{Conn, Step};
use crate::extract::anomaly::FlowAnomaly;
use crate::extract::{quic, tls, Extracted, NameKind};
use crate::time::Timestamp;
use std::net::SocketAddr;

/// Client datagrams of a QUIC flow read before giving up on its ClientHello.
const QUIC_MAX_DATAGRAMS: u8 = 16;

/// A QUIC flow's state.
#[derive(Debug)]
pub(super) struct QuicState {
    /// The client's connection IDs, from its first Initial on.
    ids: Option<ConnectionIds>,
    /// The Initials' CRYPTO stream while the ClientHello is read; `None` once the flow is no
    /// longer inspected.
    hello: Option<HelloReader>,
}

/// The client's first Destination Connection ID, and the one a server's Retry gave it: a
/// client Initial opening a connection with any other DCID is a new connection.
#[derive(Debug)]
struct ConnectionIds {
    first: Vec<u8>,
    after_retry: Option<Vec<u8>>,
}

/// The CRYPTO stream of the client's Initials, and how many datagrams it took so far.
#[derive(Debug, Default)]
struct HelloReader {
    crypto: quic::CryptoStream,
    datagrams: u8,
    /// Once the hello is read: its bytes and server name. Later client Initials are held
    /// against them, since the one read first may have been a decoy the server never took.
    read: Option<ReadHello>,
    /// CRYPTO bytes of later Initials that differ from the hello read: another hello.
    other: Option<OtherHello>,
}

/// Another hello in the client's later Initials: one that replaces the hello read (it starts
/// at offset 0), or the second ClientHello after a HelloRetryRequest (it starts where the
/// hello read ends, since the Initials' CRYPTO stream goes on).
#[derive(Debug)]
struct OtherHello {
    /// Stream offset of the hello's first byte.
    base: u64,
    crypto: quic::CryptoStream,
}

/// A ClientHello read from the Initials.
#[derive(Debug)]
struct ReadHello {
    bytes: Vec<u8>,
    name: Option<Vec<u8>>,
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

    /// Looks at a server datagram: once the server answers a hello read with its handshake,
    /// the client sends no other hello on the connection, so reading stops.
    pub(super) fn server_datagram(&self, datagram: &[u8]) -> Step {
        match &self.hello {
            Some(HelloReader { read: Some(_), .. }) if quic::server_handshake_began(datagram) => {
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
        reader.datagrams += 1;
        if reader.read.is_some() {
            return match &self.ids {
                Some(ids) => recheck(reader, &ids.first, conn, ts, datagram, out),
                None => Step::Finish,
            };
        }
        let initials = match &self.ids {
            None => quic::client_initials(datagram),
            Some(ids) => quic::client_initials_keyed(datagram, &ids.first),
        };
        match initials {
            Ok(initials) => {
                for initial in initials {
                    self.ids.get_or_insert_with(|| ConnectionIds {
                        first: initial.dcid.clone(),
                        after_retry: None,
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
        emit_hello(conn, ts, NameKind::QuicSni, &hello, out);
        // A few more client datagrams are looked at: an Initial that repeats the hello's
        // offsets with other bytes is another hello (see `recheck`).
        reader.read = Some(ReadHello {
            bytes: reader.crypto.contiguous().to_vec(),
            name: hello.server_name.as_deref().map(<[u8]>::to_vec),
        });
        if reader.datagrams < QUIC_MAX_DATAGRAMS {
            Step::Wait
        } else {
            Step::Finish
        }
    }
}

/// After the hello is read: a client Initial whose CRYPTO bytes differ from it at the same
/// offsets carries another hello. A decoy sent first (a bad UDP checksum or a TTL that
/// expires before the server, so the server never takes it) would otherwise hide the real
/// one, whose bytes repeat offsets already read. CRYPTO bytes past the hello are the second
/// ClientHello after a HelloRetryRequest. Either is read on its own, and its name reported
/// when it is not the first one's. A retransmitted Initial repeats the same bytes; the ACKs a
/// client sends once the server answered carry none.
fn recheck(
    reader: &mut HelloReader,
    first_dcid: &[u8],
    conn: &mut Conn,
    ts: Timestamp,
    datagram: &[u8],
    out: &mut impl FnMut(Extracted),
) -> Step {
    let Some(read) = reader.read.as_ref() else {
        return Step::Finish;
    };
    if let Ok(initials) = quic::client_initials_keyed(datagram, first_dcid) {
        let hello_end = read.bytes.len() as u64;
        for (offset, data) in initials.iter().flat_map(|i| &i.crypto) {
            let same = usize::try_from(*offset)
                .ok()
                .and_then(|at| read.bytes.get(at..at.checked_add(data.len())?))
                == Some(&data[..]);
            if reader.other.is_none() && same {
                continue;
            }
            let other = reader.other.get_or_insert_with(|| OtherHello {
                base: if *offset >= hello_end { hello_end } else { 0 },
                crypto: quic::CryptoStream::new(),
            });
            if let Some(at) = offset.checked_sub(other.base) {
                other.crypto.add(at, data);
            }
        }
    }
    let Some(other) = reader.other.as_ref() else {
        return if reader.datagrams < QUIC_MAX_DATAGRAMS {
            Step::Wait
        } else {
            Step::Finish
        };
    };
    match tls::parse_client_hello_message(other.crypto.contiguous()) {
        tls::Parse::Hello(hello) => {
            if hello.server_name.as_deref() != read.name.as_deref() {
                emit_hello(conn, ts, NameKind::QuicSni, &hello, out);
            }
            Step::Finish
        }
        tls::Parse::NeedMore if reader.datagrams < QUIC_MAX_DATAGRAMS => Step::Wait,
        _ => Step::Finish,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Extractor, ExtractorLimits};
    use crate::extract::quic::{crypto_frame, seal};
    use crate::extract::{tls, NameKind};

    /// A client datagram: one QUIC v1 Initial for `dcid` whose CRYPTO frame is a ClientHello
    /// naming `sni`, padded to 1,200 bytes.
    fn initial(dcid: &[u8], pn: u32, sni: &str) -> Vec<u8> {
        initial_at(dcid, pn, 0, sni)
    }

    /// As `initial`, with the hello at CRYPTO stream offset `offset`.
    fn initial_at(dcid: &[u8], pn: u32, offset: u16, sni: &str) -> Vec<u8> {
        let hello = tls::tests::client_hello(sni, 0);
        let mut payload = crypto_frame(offset, &hello);
        payload.resize(1162, 0);
        let packet = seal(1, 0xc3, dcid, b"", pn, &payload);
        udp([10, 0, 0, 1], [10, 0, 0, 2], 40000, 443, &packet)
    }

    /// A server datagram of the flow: `first` is the first byte of a long header whose
    /// contents do not matter (0xc0 an Initial, 0xe0 a Handshake packet, in v1).
    fn server_packet(first: u8) -> Vec<u8> {
        let mut packet = vec![first, 0, 0, 0, 1, 4, 1, 2, 3, 4, 8];
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
        names(&got)
            .into_iter()
            .filter(|(k, _)| *k == NameKind::QuicSni)
            .map(|(_, v)| v)
            .collect()
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
}
