//! TLS on a TCP flow: the client's ClientHello (its server name and JA4), then the server's
//! first flight (its certificate, when sent in clear: TLS 1.2 and earlier). Both are read
//! from the flow's reassembly buffers, each bounded by the stream cap.

use super::{Conn, Step};
use crate::extract::anomaly::FlowAnomaly;
use crate::extract::{cert, tls, Detail, Extracted, NameKind};
use crate::time::Timestamp;

/// Which flight of a TLS flow is read next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TlsState {
    /// The client's ClientHello.
    ClientHello,
    /// The ClientHello is read: the server's flight up to its certificate.
    ServerFlight,
}

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
            TlsState::ClientHello if from_client => self.client_hello(conn, ts, cut, out),
            TlsState::ServerFlight if !from_client => server_flight(conn, ts, out),
            _ => Step::Wait,
        }
    }

    fn client_hello(
        &mut self,
        conn: &mut Conn,
        ts: Timestamp,
        cut: u32,
        out: &mut impl FnMut(Extracted),
    ) -> Step {
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
            tls::Parse::Hello(hello) => hello,
        };
        let detail = Detail::Tls {
            version: hello.max_version(),
            ech: hello.ech,
            ja4: Some(hello.ja4(false)),
        };
        let sni = hello.server_name.as_deref().map(<[u8]>::to_vec);
        match sni {
            Some(sni) => {
                // With ECH too: the outer name is the server the host talks to (the real name
                // under GREASE ECH, the provider's public name under real ECH).
                conn.emit_name(ts, NameKind::TlsSni, &sni, detail, out);
            }
            None => out(Extracted::Fingerprint {
                ts,
                flow: conn.id,
                detail,
            }),
        }
        conn.to_server.release();
        *self = TlsState::ServerFlight;
        // The server may have answered before we got here.
        if conn.to_client.data().is_empty() {
            Step::Wait
        } else {
            server_flight(conn, ts, out)
        }
    }
}

/// Reads the server's first flight: its certificate, when sent in clear.
pub(super) fn server_flight(
    conn: &mut Conn,
    ts: Timestamp,
    out: &mut impl FnMut(Extracted),
) -> Step {
    match tls::parse_server_flight(conn.to_client.data()) {
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
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Extractor, ExtractorLimits};
    use crate::extract::tls;

    #[test]
    fn a_client_hello_cut_by_the_snap_length_is_counted_not_read() {
        let hello = tls::tests::records(
            &tls::tests::client_hello("dnl-01.geo.kaspersky.com", 0),
            16384,
        );
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
