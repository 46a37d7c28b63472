//! QUIC on a UDP flow, one record per flow: the client's connection IDs (which tell a new
//! connection on the same 4-tuple from this one's packets, for the flow's whole life), and
//! until its ClientHello is read, the Initial packets' CRYPTO stream (RFC 9001 keys every
//! Initial from the client's first Destination Connection ID).

use super::{Conn, Step};
use crate::extract::anomaly::FlowAnomaly;
use crate::extract::{quic, tls, Detail, Extracted, NameKind};
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
        let detail = Detail::Tls {
            version: hello.max_version(),
            ech: hello.ech,
            ja4: Some(hello.ja4(true)),
        };
        match hello.server_name.as_deref() {
            Some(sni) => {
                // With ECH too: the outer name is the server the host talks to (the real name
                // under GREASE ECH, the provider's public name under real ECH).
                conn.emit_name(ts, NameKind::QuicSni, sni, detail, out);
            }
            None => out(Extracted::Fingerprint {
                ts,
                flow: conn.id,
                detail,
            }),
        }
        Step::Finish
    }
}
