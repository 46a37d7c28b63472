//! TLS ClientHello reader (SSL 3.0 to TLS 1.3) over the first bytes a client sent.
//!
//! Records and the ClientHello body are parsed by `tls-parser`; this module only joins a
//! handshake message that spans several records (RFC 8446 §5.1 allows any split) and walks
//! the extension list to find `server_name`. Pure: bytes in, borrowed or owned view out.

use std::borrow::Cow;
use tls_parser::{TlsRecordType, TlsVersion};

/// Largest ClientHello we join from records. A post-quantum key share makes them ~2 KB;
/// anything near this cap is not a real client.
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
const SNI_HOST_NAME: u8 = 0;

/// What the bytes so far say.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    /// Could still be a ClientHello: call again with more bytes.
    NeedMore,
    /// Not a TLS handshake starting with a ClientHello.
    NotTls,
    /// A TLS handshake whose ClientHello is malformed (`reason` is a metric label).
    Malformed(&'static str),
    Hello(ClientHello<'a>),
}

#[derive(Debug, PartialEq, Eq)]
pub struct ClientHello<'a> {
    /// Version from the record layer header of the first record.
    pub record_version: u16,
    /// `legacy_version` of the ClientHello.
    pub hello_version: u16,
    /// The `host_name` of the server_name extension, raw.
    pub server_name: Option<Cow<'a, [u8]>>,
    /// The ClientHello carries `encrypted_client_hello`: its server name is only the outer, public one.
    pub ech: bool,
}

/// Whether `data` starts like a TLS record carrying a handshake (cheap protocol probe).
pub fn looks_like_handshake(data: &[u8]) -> bool {
    matches!(data, [0x16, 0x03, 0x00..=0x04, ..])
}

/// Reads a ClientHello from the start of a client's byte stream.
pub fn parse_client_hello(stream: &[u8]) -> Parse<'_> {
    if stream.len() < 5 {
        return if stream.is_empty() || looks_like_handshake_prefix(stream) {
            Parse::NeedMore
        } else {
            Parse::NotTls
        };
    }
    if !looks_like_handshake(stream) {
        return Parse::NotTls;
    }
    let record_version = u16::from_be_bytes([stream[1], stream[2]]);
    // The handshake is borrowed when it sits in one record, joined into a copy otherwise.
    match join_handshake(stream) {
        Joined::Complete(Cow::Borrowed(h)) => {
            read_hello(record_version, h).map_or_else(Parse::Malformed, Parse::Hello)
        }
        Joined::Complete(Cow::Owned(h)) => match read_hello(record_version, &h) {
            Ok(hello) => Parse::Hello(ClientHello {
                server_name: hello.server_name.map(|n| Cow::Owned(n.into_owned())),
                ..hello
            }),
            Err(reason) => Parse::Malformed(reason),
        },
        Joined::NeedMore => Parse::NeedMore,
        Joined::Bad(reason) => Parse::Malformed(reason),
        Joined::NotTls => Parse::NotTls,
    }
}

fn looks_like_handshake_prefix(data: &[u8]) -> bool {
    match data {
        [0x16] => true,
        [0x16, 0x03, ..] => data.get(2).is_none_or(|v| *v <= 0x04),
        _ => false,
    }
}

enum Joined<'a> {
    Complete(Cow<'a, [u8]>),
    NeedMore,
    NotTls,
    Bad(&'static str),
}

/// Collects the first handshake message (4-byte header plus body) from consecutive records.
fn join_handshake(stream: &[u8]) -> Joined<'_> {
    let mut rest = stream;
    let mut joined: Option<Vec<u8>> = None;
    let mut first: Option<&[u8]> = None;
    loop {
        let record = match tls_parser::parse_tls_raw_record(rest) {
            Ok((after, record)) => {
                rest = after;
                record
            }
            Err(tls_parser::nom::Err::Incomplete(_)) => return Joined::NeedMore,
            Err(_) => return Joined::Bad("tls_record_malformed"),
        };
        if record.hdr.record_type != TlsRecordType::Handshake {
            return if first.is_none() {
                Joined::NotTls
            } else {
                Joined::Bad("tls_handshake_interrupted")
            };
        }
        let so_far: &[u8] = match (&mut joined, first) {
            (None, None) => {
                first = Some(record.data);
                record.data
            }
            (None, Some(f)) => {
                let mut v = Vec::with_capacity(f.len() + record.data.len());
                v.extend_from_slice(f);
                v.extend_from_slice(record.data);
                joined = Some(v);
                joined.as_deref().unwrap_or_default()
            }
            (Some(v), _) => {
                v.extend_from_slice(record.data);
                v
            }
        };
        if so_far.len() >= 4 {
            if so_far[0] != HANDSHAKE_CLIENT_HELLO {
                return Joined::NotTls;
            }
            let body_len =
                usize::from(so_far[1]) << 16 | usize::from(so_far[2]) << 8 | usize::from(so_far[3]);
            if body_len + 4 > MAX_CLIENT_HELLO {
                return Joined::Bad("tls_client_hello_too_large");
            }
            if so_far.len() >= body_len + 4 {
                return Joined::Complete(match joined {
                    Some(mut v) => {
                        v.truncate(body_len + 4);
                        Cow::Owned(v)
                    }
                    None => Cow::Borrowed(&first.unwrap_or_default()[..body_len + 4]),
                });
            }
        }
        if so_far.len() > MAX_CLIENT_HELLO {
            return Joined::Bad("tls_client_hello_too_large");
        }
    }
}

fn read_hello(record_version: u16, handshake: &[u8]) -> Result<ClientHello<'_>, &'static str> {
    let body = handshake.get(4..).ok_or("tls_client_hello_malformed")?;
    let (_, hello) = tls_parser::parse_tls_handshake_client_hello(body)
        .map_err(|_| "tls_client_hello_malformed")?;
    let mut server_name = None;
    let mut ech = false;
    let mut ext = hello.ext.unwrap_or_default();
    while ext.len() >= 4 {
        let kind = u16::from_be_bytes([ext[0], ext[1]]);
        let len = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        let Some(data) = ext.get(4..4 + len) else {
            return Err("tls_extension_truncated");
        };
        match kind {
            EXT_SERVER_NAME => server_name = first_host_name(data).map(Cow::Borrowed),
            EXT_ENCRYPTED_CLIENT_HELLO => ech = true,
            _ => {}
        }
        ext = &ext[4 + len..];
    }
    Ok(ClientHello {
        record_version,
        hello_version: u16::from(hello.version),
        server_name,
        ech,
    })
}

/// server_name extension: a 2-byte list length, then (type, 2-byte length, name) entries.
fn first_host_name(data: &[u8]) -> Option<&[u8]> {
    let mut list = data.get(2..)?;
    while list.len() >= 3 {
        let kind = list[0];
        let len = usize::from(u16::from_be_bytes([list[1], list[2]]));
        let name = list.get(3..3 + len)?;
        if kind == SNI_HOST_NAME {
            return Some(name);
        }
        list = &list[3 + len..];
    }
    None
}

/// A readable name for a TLS version number, for events (`"tls1.2"`).
pub fn version_name(v: u16) -> &'static str {
    match TlsVersion(v) {
        TlsVersion::Ssl30 => "ssl3.0",
        TlsVersion::Tls10 => "tls1.0",
        TlsVersion::Tls11 => "tls1.1",
        TlsVersion::Tls12 => "tls1.2",
        TlsVersion::Tls13 => "tls1.3",
        _ => "other",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a ClientHello the way OpenSSL lays it out, with `sni` and padding `pad` bytes.
    pub(crate) fn client_hello(sni: &str, pad: usize) -> Vec<u8> {
        let mut ext = Vec::new();
        let name = sni.as_bytes();
        ext.extend_from_slice(&[0, 0]);
        ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
        ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        // padding extension (21)
        ext.extend_from_slice(&[0, 21]);
        ext.extend_from_slice(&(pad as u16).to_be_bytes());
        ext.extend(std::iter::repeat_n(0u8, pad));
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0x11; 32]); // random
        body.push(0); // session id
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0xc0, 0x2f]); // ciphers
        body.extend_from_slice(&[1, 0]); // compression
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        hs
    }

    pub(crate) fn records(hs: &[u8], split: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in hs.chunks(split) {
            out.extend_from_slice(&[0x16, 0x03, 0x01]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn sni_from_single_record() {
        let bytes = records(&client_hello("S07.upd.kaspersky.com", 0), 16384);
        match parse_client_hello(&bytes) {
            Parse::Hello(h) => {
                assert_eq!(
                    h.server_name.as_deref(),
                    Some(&b"S07.upd.kaspersky.com"[..])
                );
                assert_eq!(h.record_version, 0x0301);
                assert_eq!(h.hello_version, 0x0303);
                assert!(!h.ech);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sni_from_handshake_split_across_records() {
        let bytes = records(&client_hello("dnl-01.geo.kaspersky.com", 600), 100);
        match parse_client_hello(&bytes) {
            Parse::Hello(h) => assert_eq!(
                h.server_name.as_deref(),
                Some(&b"dnl-01.geo.kaspersky.com"[..])
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn prefixes_ask_for_more_and_other_protocols_are_not_tls() {
        let bytes = records(&client_hello("a.example", 300), 120);
        for n in 0..bytes.len() {
            assert_eq!(
                parse_client_hello(&bytes[..n]),
                Parse::NeedMore,
                "prefix {n}"
            );
        }
        assert_eq!(parse_client_hello(b"GET / HTTP/1.1\r\n"), Parse::NotTls);
        assert_eq!(
            parse_client_hello(b"\x17\x03\x03\x00\x10abcdefghijklmnop"),
            Parse::NotTls
        );
    }
}
