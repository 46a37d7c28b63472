//! TLS on a TCP flow: the client's ClientHello (its server name and JA4), then the server's
//! first flight (its certificate, when sent in clear: TLS 1.2 and earlier). Both are read
//! from the flow's reassembly buffers, each bounded by the stream cap.

use super::{Conn, Step};
use crate::extract::anomaly::FlowAnomaly;
use crate::extract::{cert, tls, Detail, Extracted, NameKind};
use crate::time::Timestamp;

/// Which flight of a TLS flow is read next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TlsState {
    /// The client's ClientHello.
    ClientHello,
    /// The ClientHello is read: the server's flight up to its certificate, with what the
    /// hello named.
    ServerFlight { first_names: FirstNames },
    /// The server answered with a HelloRetryRequest: the client's second ClientHello, the
    /// one the server goes on with (its names, those the first one did not report, are
    /// reported too).
    RetriedClientHello { first_names: FirstNames },
    /// The second ClientHello is read: the server's flight (no second retry is followed).
    RetriedServerFlight,
}

/// The `name_key`s of what a first ClientHello reported: its server name (`name_key(None)`
/// for a hello without one) and the other names of a malformed server_name extension. Inline
/// for every hello a TLS library sends; at most 1 + `tls::MAX_MORE_NAMES` of them.
pub(super) type FirstNames = smallvec::SmallVec<[u64; 1]>;

impl TlsState {
    /// Reads what a direction of the flow holds; the other side's bytes wait in its buffer.
    pub(super) fn inspect(
        &mut self,
        conn: &mut Conn,
        from_client: bool,
        ts: Timestamp,
        cut: u32,
        out: &mut impl FnMut(Extracted),
    ) -> Step {
        match self {
            TlsState::ClientHello | TlsState::RetriedClientHello { .. } if from_client => {
                self.client_hello(conn, ts, cut, out)
            }
            TlsState::ServerFlight { .. } | TlsState::RetriedServerFlight if !from_client => {
                self.server_flight(conn, ts, cut, out)
            }
            TlsState::ServerFlight { .. } if !conn.server_seen => {
                self.client_goes_on_unanswered(conn, ts, cut, out)
            }
            _ => Step::Wait,
        }
    }

    /// Reads the server's flight; after a first HelloRetryRequest, goes back to the client's
    /// second ClientHello.
    fn server_flight(
        &mut self,
        conn: &mut Conn,
        ts: Timestamp,
        cut: u32,
        out: &mut impl FnMut(Extracted),
    ) -> Step {
        match server_flight(conn, ts, out) {
            Flight::Read(step) => step,
            Flight::Retry if matches!(self, TlsState::ServerFlight { .. }) => {
                // The server waits for the second hello: nothing else of its is buffered.
                let n = conn.to_client.data().len();
                conn.to_client.consume(n);
                self.retried();
                if conn.to_server.data().is_empty() {
                    Step::Wait
                } else {
                    self.client_hello(conn, ts, cut, out)
                }
            }
            Flight::Retry => {
                out(Extracted::Anomaly(FlowAnomaly::TlsRecordMalformed.into()));
                Step::Finish
            }
        }
    }

    /// The client sent more after its hello and nothing of the server's side was seen: a tap
    /// that carries only the client's direction. A second ClientHello in clear is then the
    /// answer to a HelloRetryRequest the tap did not carry (a client sends one at no other
    /// time), and is read as such: a decoy first hello that the server refuses must not hide
    /// the hello it goes on with. The records before it that hold no name (a ChangeCipherSpec,
    /// early data, the client's encrypted flight, a TLS 1.2 key exchange) are let go one by
    /// one, so a hello behind them is still found.
    fn client_goes_on_unanswered(
        &mut self,
        conn: &mut Conn,
        ts: Timestamp,
        cut: u32,
        out: &mut impl FnMut(Extracted),
    ) -> Step {
        loop {
            let data = conn.to_server.data();
            match tls::parse_client_hello(data) {
                tls::Parse::Hello(_) => {
                    self.retried();
                    return self.client_hello(conn, ts, cut, out);
                }
                tls::Parse::NeedMore if data.first() == Some(&HANDSHAKE_RECORD) => {
                    return Step::Wait
                }
                _ => match tls::record_len(data) {
                    Some(record) => conn.to_server.consume(record),
                    None => return Step::Wait,
                },
            }
        }
    }

    /// After the first hello: the client's second one is read next (a HelloRetryRequest
    /// sent it back), with what the first named.
    fn retried(&mut self) {
        if let TlsState::ServerFlight { first_names } = self {
            let first_names = std::mem::take(first_names);
            *self = TlsState::RetriedClientHello { first_names };
        }
    }

    fn client_hello(
        &mut self,
        conn: &mut Conn,
        ts: Timestamp,
        cut: u32,
        out: &mut impl FnMut(Extracted),
    ) -> Step {
        if matches!(self, TlsState::RetriedClientHello { .. }) {
            // A TLS 1.3 client sends a ChangeCipherSpec before its second hello (for
            // middleboxes, RFC 8446 §D.4), and may have sent early data (0-RTT) after its
            // first, which the retry request refused: neither is the hello.
            while let Some(&[CHANGE_CIPHER_SPEC_RECORD | APPLICATION_DATA_RECORD, 3, ..]) =
                conn.to_server.data().get(..2)
            {
                match tls::record_len(conn.to_server.data()) {
                    Some(record) => conn.to_server.consume(record),
                    None => return Step::Wait,
                }
            }
        }
        let hello = match tls::parse_client_hello(conn.to_server.data()) {
            tls::Parse::NeedMore if cut > 0 => {
                // The hello runs into bytes the capture did not keep: its extensions (the
                // server name among them) are not whole.
                out(Extracted::Anomaly(FlowAnomaly::TlsClientHelloCut.into()));
                return Step::Finish;
            }
            tls::Parse::NeedMore if conn.to_server.is_full() => {
                out(Extracted::Anomaly(
                    FlowAnomaly::TlsClientHelloTooLarge.into(),
                ));
                return Step::Finish;
            }
            tls::Parse::NeedMore => return Step::Wait,
            tls::Parse::NotTls => {
                let n = conn.to_server.data().len();
                conn.to_server.consume(n);
                return Step::Reprobe;
            }
            tls::Parse::Malformed(reason) => {
                out(Extracted::Anomaly(reason.into()));
                return Step::Finish;
            }
            // Owned: its name is reported through `conn`, whose buffer it borrowed.
            tls::Parse::Hello(hello) => hello.into_owned(),
        };
        // A second hello that names what the first did is the same client's retry: those
        // names were reported with the first.
        let skip = match self {
            TlsState::RetriedClientHello { first_names } => std::mem::take(first_names),
            _ => FirstNames::new(),
        };
        emit_hello(
            conn,
            ts,
            NameKind::TlsSni,
            &hello,
            |name| !skip.contains(&name_key(name)),
            out,
        );
        // The second hello's bytes come after this one's: they are kept (a HelloRetryRequest
        // sends the client back to them), the first one's are freed.
        let data = conn.to_server.data();
        let n = tls::hello_records_len(data).unwrap_or(data.len());
        conn.to_server.consume(n);
        *self = match self {
            TlsState::RetriedClientHello { .. } => TlsState::RetriedServerFlight,
            _ => TlsState::ServerFlight {
                first_names: std::iter::once(hello.server_name.as_deref())
                    .chain(hello.more_names.iter().map(|n| Some(&**n)))
                    .map(name_key)
                    .collect(),
            },
        };
        // The server may have answered before we got here; if nothing of its was seen, the
        // client's bytes after this hello may hold the next one.
        if !conn.to_client.data().is_empty() {
            self.server_flight(conn, ts, cut, out)
        } else if !conn.server_seen
            && !conn.to_server.data().is_empty()
            && matches!(self, TlsState::ServerFlight { .. })
        {
            self.client_goes_on_unanswered(conn, ts, cut, out)
        } else {
            Step::Wait
        }
    }
}

/// Reports a ClientHello (over TLS or QUIC, `kind` says): its server name and every other
/// name of a malformed server_name extension, or without a name its fingerprint; each only
/// when `fresh` says so of it (`None` for the fingerprint). A malformed server_name extension
/// is counted whatever `fresh` says.
pub(super) fn emit_hello(
    conn: &mut Conn,
    ts: Timestamp,
    kind: NameKind,
    hello: &tls::ClientHello<'_>,
    mut fresh: impl FnMut(Option<&[u8]>) -> bool,
    out: &mut impl FnMut(Extracted),
) {
    let detail = Detail::Tls {
        version: hello.max_version(),
        ech: hello.ech,
        ja4: Some(hello.ja4(kind == NameKind::QuicSni)),
    };
    if hello.server_name_malformed {
        out(Extracted::Anomaly(
            FlowAnomaly::TlsServerNameMalformed.into(),
        ));
    }
    let Some(sni) = hello.server_name.as_deref() else {
        if fresh(None) {
            out(Extracted::Fingerprint {
                ts,
                flow: conn.id,
                detail,
            });
        }
        return;
    };
    for other in &hello.more_names {
        if fresh(Some(other)) {
            conn.emit_name(ts, kind, other, detail.clone(), out);
        }
    }
    // With ECH too: the outer name is the server the host talks to (the real name under
    // GREASE ECH, the provider's public name under real ECH). Last, so that the detail moves.
    if fresh(Some(sni)) {
        conn.emit_name(ts, kind, sni, detail, out);
    }
}

/// A hello's server name as a number to compare with another's (0 for none). Keyed by a
/// secret chosen at start, so a client cannot pick a second name with the first one's key.
pub(super) fn name_key(name: Option<&[u8]>) -> u64 {
    use std::hash::BuildHasher;
    static KEYS: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    name.map_or(0, |n| {
        KEYS.get_or_init(std::hash::RandomState::new).hash_one(n) | 1
    })
}

/// TLS record content types (RFC 8446 §5.1).
const CHANGE_CIPHER_SPEC_RECORD: u8 = 20;
const HANDSHAKE_RECORD: u8 = 22;
const APPLICATION_DATA_RECORD: u8 = 23;

/// What reading a server's flight came to.
pub(super) enum Flight {
    Read(Step),
    /// A HelloRetryRequest.
    Retry,
}

/// Reads the server's first flight: its certificate, when sent in clear.
pub(super) fn server_flight(
    conn: &mut Conn,
    ts: Timestamp,
    out: &mut impl FnMut(Extracted),
) -> Flight {
    Flight::Read(match tls::parse_server_flight(conn.to_client.data()) {
        tls::ServerParse::HelloRetry => return Flight::Retry,
        tls::ServerParse::NeedMore if conn.to_client.is_full() => {
            out(Extracted::Anomaly(
                FlowAnomaly::TlsServerFlightTooLarge.into(),
            ));
            Step::Finish
        }
        tls::ServerParse::NeedMore => Step::Wait,
        tls::ServerParse::Done { leaf, .. } => {
            if let Some(der) = leaf {
                match cert::summarize(&der) {
                    Some(summary) => {
                        let value = summary
                            .common_name
                            .clone()
                            .or_else(|| summary.sans.first().cloned())
                            .unwrap_or_default();
                        let named_before = conn.named;
                        let detail = Detail::Cert(Box::new(summary));
                        conn.emit_name(ts, NameKind::TlsCert, value.as_bytes(), detail, out);
                        // A certificate names the server, but does not stand in for a client's
                        // own name.
                        conn.named = named_before;
                    }
                    None => out(Extracted::Anomaly(
                        FlowAnomaly::TlsCertificateUnparsable.into(),
                    )),
                }
            }
            Step::Finish
        }
        tls::ServerParse::NotTls => Step::Finish,
        tls::ServerParse::Malformed(reason) => {
            out(Extracted::Anomaly(reason.into()));
            Step::Finish
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Extractor, ExtractorLimits};
    use crate::extract::tls;

    /// A TLS 1.3 HelloRetryRequest record (RFC 8446 §4.1.4): a ServerHello with the
    /// retry random, TLS_AES_128_GCM_SHA256 and supported_versions 0x0304.
    fn hello_retry_request() -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&tls::HELLO_RETRY_RANDOM);
        body.extend_from_slice(&[0x00, 0x13, 0x01, 0x00]);
        body.extend_from_slice(&[0x00, 0x06, 0x00, 0x2b, 0x00, 0x02, 0x03, 0x04]);
        let mut hs = vec![0x02, 0x00, 0x00, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut record = vec![0x16, 0x03, 0x03, 0x00, hs.len() as u8];
        record.extend_from_slice(&hs);
        record
    }

    /// A ChangeCipherSpec record, as a TLS 1.3 client sends it before its second hello.
    const CHANGE_CIPHER_SPEC: [u8; 6] = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01];

    /// A first hello naming www.example.org, the second one (a ChangeCipherSpec, then a hello
    /// naming dnl-01.geo.kaspersky.com) and the sequence number it starts at.
    fn retried_hellos() -> (Vec<u8>, Vec<u8>, u32) {
        let first = hello_records("www.example.org");
        let second = [
            &CHANGE_CIPHER_SPEC[..],
            &hello_records("dnl-01.geo.kaspersky.com"),
        ]
        .concat();
        let after_first = 1 + first.len() as u32;
        (first, second, after_first)
    }

    /// A ClientHello with two server_name extensions, www.example.org and then
    /// dnl-01.geo.kaspersky.com, in TLS records.
    fn two_server_name_extensions() -> Vec<u8> {
        let ext = [
            tls::tests::server_name_extension(&[(0, b"www.example.org")], b""),
            tls::tests::server_name_extension(&[(0, b"dnl-01.geo.kaspersky.com")], b""),
        ]
        .concat();
        tls::tests::records(&tls::tests::client_hello_with_extensions(&ext), 16384)
    }

    #[test]
    fn every_name_of_a_malformed_server_name_extension_is_reported() {
        // Two server_name extensions: OpenSSL refuses the hello, another library may take
        // either name.
        let hello = two_server_name_extensions();
        let frames = [
            (1, tcp(false, 0, SYN, b"")),
            (1, tcp(true, SERVER_ISN, SYNACK, b"")),
            (1, tcp(false, 1, ACK, &hello)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        let mut names = tls_names(&got);
        names.sort();
        assert_eq!(names, ["dnl-01.geo.kaspersky.com", "www.example.org"]);
        assert_eq!(anomaly_count(&got, "tls_server_name_malformed"), 1);
    }

    #[test]
    fn the_second_client_hello_after_a_hello_retry_request_is_read() {
        // OpenSSL goes on with the second hello's name: a decoy in the first one must not hide
        // it. The client sends a ChangeCipherSpec before its second hello.
        let (first, second, after_first) = retried_hellos();
        let hrr = hello_retry_request();
        let frames = [
            (1, tcp(false, 0, SYN, b"")),
            (1, tcp(true, SERVER_ISN, SYNACK, b"")),
            (1, tcp(false, 1, ACK, &first)),
            (1, tcp(true, SERVER_ISN + 1, ACK, &hrr)),
            (1, tcp(false, after_first, ACK, &second)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(
            tls_names(&got),
            ["www.example.org", "dnl-01.geo.kaspersky.com"]
        );
        // The second hello already buffered when the retry request is read: the same.
        let frames = [
            (1, tcp(false, 0, SYN, b"")),
            (1, tcp(true, SERVER_ISN, SYNACK, b"")),
            (1, tcp(false, 1, ACK, &first)),
            (1, tcp(false, after_first, ACK, &second)),
            (1, tcp(true, SERVER_ISN + 1, ACK, &hrr)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(
            tls_names(&got),
            ["www.example.org", "dnl-01.geo.kaspersky.com"]
        );
    }

    #[test]
    fn a_second_hello_shown_before_the_retry_request_it_acknowledges_is_read() {
        // A tap that merges two ports can show the client's second hello (acknowledging the
        // retry request) before the request itself: after the first hello was read, client
        // acknowledgment numbers are not judged against what the tap has shown of the server.
        let (first, second, after_first) = retried_hellos();
        let hrr = hello_retry_request();
        let acked = SERVER_ISN + 1 + hrr.len() as u32;
        let frames = [
            (1, tcp(false, 0, SYN, b"")),
            (1, tcp(true, SERVER_ISN, SYNACK, b"")),
            (1, tcp(false, 1, ACK, &first)),
            (1, with_ack(tcp(false, after_first, ACK, &second), acked)),
            (1, tcp(true, SERVER_ISN + 1, ACK, &hrr)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(
            tls_names(&got),
            ["www.example.org", "dnl-01.geo.kaspersky.com"]
        );
        assert_eq!(anomaly_count(&got, "transport_ack_unsent"), 0);
    }

    #[test]
    fn a_second_client_hello_on_a_tap_of_the_client_side_only_is_read() {
        // The tap carries no packet of the server's: the retry request that sent the client
        // back is not seen, and its second hello is what the server goes on with.
        let (first, second, after_first) = retried_hellos();
        let frames = [
            (1, tcp(false, 0, SYN, b"")),
            (1, tcp(false, 1, ACK, &first)),
            (1, tcp(false, after_first, ACK, &second)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(
            tls_names(&got),
            ["www.example.org", "dnl-01.geo.kaspersky.com"]
        );
        // What a client sends next without a retry (a ChangeCipherSpec and its encrypted
        // flight) holds no name and is let go.
        let flight = [
            &CHANGE_CIPHER_SPEC[..],
            &[0x17, 0x03, 0x03, 0x00, 0x04, 1, 2, 3, 4],
        ]
        .concat();
        let after_flight = after_first + flight.len() as u32;
        let mut frames = vec![
            (1, tcp(false, 0, SYN, b"")),
            (1, tcp(false, 1, ACK, &first)),
            (1, tcp(false, after_first, ACK, &flight)),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), ["www.example.org"]);
        assert!(
            !got.iter()
                .any(|e| matches!(e, crate::extract::Extracted::Anomaly(_))),
            "an anomaly was counted"
        );
        // Those records may also be early data sent before any answer (0-RTT): a retry
        // request refuses it, and the second hello after it is still read.
        frames.push((1, tcp(false, after_flight, ACK, &second)));
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(
            tls_names(&got),
            ["www.example.org", "dnl-01.geo.kaspersky.com"]
        );
    }

    #[test]
    fn records_after_a_first_hello_are_stepped_over_one_by_one() {
        let first = hello_records("www.example.org");
        let ccs = CHANGE_CIPHER_SPEC;
        let early = [0x17, 0x03, 0x03, 0x00, 0x04, 9, 9, 9, 9];
        let second = hello_records("dnl-01.geo.kaspersky.com");
        let after_first = 1 + first.len() as u32;
        let both = ["www.example.org", "dnl-01.geo.kaspersky.com"];
        // One direction: the second hello in the same segment as the first, and behind early
        // data and a ChangeCipherSpec.
        for segments in [
            vec![[&first[..], &ccs, &second].concat()],
            vec![first.clone(), [&early[..], &ccs, &second].concat()],
        ] {
            let mut frames = vec![(1, tcp(false, 0, SYN, b""))];
            let mut seq = 1;
            for segment in &segments {
                frames.push((1, tcp(false, seq, ACK, segment)));
                seq += segment.len() as u32;
            }
            let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
            assert_eq!(tls_names(&got), both);
        }
        // Both directions: early data after the first hello, which the retry request refuses.
        let after_early = after_first + early.len() as u32;
        let frames = [
            (1, tcp(false, 0, SYN, b"")),
            (1, tcp(true, SERVER_ISN, SYNACK, b"")),
            (1, tcp(false, 1, ACK, &first)),
            (1, tcp(false, after_first, ACK, &early)),
            (1, tcp(true, SERVER_ISN + 1, ACK, &hello_retry_request())),
            (
                1,
                tcp(false, after_early, ACK, &[&ccs[..], &second].concat()),
            ),
        ];
        let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
        assert_eq!(tls_names(&got), both);
    }

    #[test]
    fn after_a_retry_request_only_names_the_first_hello_did_not_report_are_reported() {
        // A first hello with two server_name extensions reports both names; the second hello
        // names the first one's other name again (not reported twice) and then a new one.
        let first = two_server_name_extensions();
        let hrr = hello_retry_request();
        let after_first = 1 + first.len() as u32;
        for (second_name, expected) in [
            ("dnl-01.geo.kaspersky.com", &[][..]),
            ("www.example.org", &[][..]),
            ("ksn.kaspersky-labs.com", &["ksn.kaspersky-labs.com"][..]),
        ] {
            let second = hello_records(second_name);
            let frames = [
                (1, tcp(false, 0, SYN, b"")),
                (1, tcp(true, SERVER_ISN, SYNACK, b"")),
                (1, tcp(false, 1, ACK, &first)),
                (1, tcp(true, SERVER_ISN + 1, ACK, &hrr)),
                (1, tcp(false, after_first, ACK, &second)),
            ];
            let got = collect(&mut Extractor::new(ExtractorLimits::default()), &frames);
            let names = tls_names(&got);
            let (firsts, seconds) = names.split_at(2.min(names.len()));
            let mut firsts = firsts.to_vec();
            firsts.sort();
            assert_eq!(firsts, ["dnl-01.geo.kaspersky.com", "www.example.org"]);
            assert_eq!(seconds, expected, "second hello naming {second_name}");
        }
    }

    #[test]
    fn a_client_hello_cut_by_the_snap_length_is_counted_not_read() {
        let hello = hello_records("dnl-01.geo.kaspersky.com");
        let got = collect(
            &mut Extractor::new(ExtractorLimits::default()),
            &[
                (1, tcp(false, 0, SYN, b"")),
                (1, snap(tcp(false, 1, ACK, &hello), 40 + hello.len() - 10)),
            ],
        );
        assert_eq!(names(&got), []);
        assert_eq!(anomaly_count(&got, "tls_client_hello_cut"), 1);
    }
}
