//! TLS ClientHello reader (SSL 3.0 to TLS 1.3) over the first bytes a client sent.
//!
//! Records and the ClientHello body are parsed by `tls-parser`; this module only joins a
//! handshake message that spans several records (RFC 8446 §5.1 allows any split) and walks
//! the extension list to find `server_name`. Pure: bytes in, borrowed or owned view out.

use crate::extract::anomaly::FlowAnomaly;
use std::borrow::Cow;
use tls_parser::{TlsRecordType, TlsVersion};

/// Largest ClientHello we join from records: what fits the stream cap (64 KiB) with its
/// record headers. A post-quantum key share makes them ~2 KB, but OpenSSL and nginx answer one
/// padded to 60 KB in four records, so a hello that large must still be read.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024 - 64;

const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
const SNI_HOST_NAME: u8 = 0;

/// What the bytes so far say.
#[derive(Debug, PartialEq, Eq)]
// A hello is returned and matched at once, never stored in this form: its lists stay inline.
#[allow(clippy::large_enum_variant)]
pub enum Parse<'a> {
    /// Could still be a ClientHello: call again with more bytes.
    NeedMore,
    /// Not a TLS handshake starting with a ClientHello.
    NotTls,
    /// A TLS handshake whose ClientHello is malformed (`reason` is a metric label).
    Malformed(FlowAnomaly),
    Hello(ClientHello<'a>),
}

#[derive(Debug, PartialEq, Eq)]
pub struct ClientHello<'a> {
    /// Version from the record layer header of the first record (0 inside QUIC, which has no records).
    pub record_version: u16,
    /// `legacy_version` of the ClientHello.
    pub hello_version: u16,
    /// The first `host_name` of the server_name extension, raw (up to a NUL, if it has one).
    pub server_name: Option<Cow<'a, [u8]>>,
    /// Other names of a malformed server_name extension (a second extension, a second entry),
    /// each once and none equal to `server_name`. Empty in every hello a TLS library sends.
    pub more_names: Vec<Cow<'a, [u8]>>,
    /// The server_name extension is one no TLS library accepts (see `read_server_names`).
    pub server_name_malformed: bool,
    /// The ClientHello carries `encrypted_client_hello`: its server name is only the outer, public one.
    pub ech: bool,
    /// What a JA4 fingerprint is made of, in wire order (GREASE included).
    pub ciphers: HelloList,
    pub extensions: HelloList,
    pub supported_versions: HelloList,
    pub alpn_first: Option<Cow<'a, [u8]>>,
    pub signature_algorithms: HelloList,
}

/// A list of 16-bit values of a hello (cipher suites, extension types, versions, signature
/// algorithms): inline up to 32, as many as browsers and TLS libraries send in any of them
/// (a longer list moves to the heap), so reading a hello allocates none of its lists (it did
/// five to ten, on every hello).
pub type HelloList = smallvec::SmallVec<[u16; 32]>;

impl ClientHello<'_> {
    /// The JA4 fingerprint of this hello (`quic`: it came in a QUIC Initial).
    pub fn ja4(&self, quic: bool) -> String {
        super::ja4::ja4(&super::ja4::HelloFields {
            quic,
            legacy_version: self.hello_version,
            supported_versions: &self.supported_versions,
            ciphers: &self.ciphers,
            extensions: &self.extensions,
            sni_present: self.extensions.contains(&EXT_SERVER_NAME),
            alpn_first: self.alpn_first.as_deref(),
            signature_algorithms: &self.signature_algorithms,
        })
    }

    /// The same hello, owning its server name.
    pub fn into_owned(self) -> ClientHello<'static> {
        ClientHello {
            server_name: self.server_name.map(|n| Cow::Owned(n.into_owned())),
            more_names: self
                .more_names
                .into_iter()
                .map(|n| Cow::Owned(n.into_owned()))
                .collect(),
            server_name_malformed: self.server_name_malformed,
            record_version: self.record_version,
            hello_version: self.hello_version,
            ech: self.ech,
            ciphers: self.ciphers,
            extensions: self.extensions,
            supported_versions: self.supported_versions,
            alpn_first: self.alpn_first.map(|a| Cow::Owned(a.into_owned())),
            signature_algorithms: self.signature_algorithms,
        }
    }

    /// The highest version offered (supported_versions, else legacy_version), GREASE ignored.
    pub fn max_version(&self) -> u16 {
        self.supported_versions
            .iter()
            .copied()
            .filter(|v| v & 0x0f0f != 0x0a0a)
            .max()
            .unwrap_or(self.hello_version)
    }
}

/// Whether `data` starts like a TLS record carrying a handshake (cheap protocol probe). Any
/// record version of major 3 passes: OpenSSL and nginx check only the major byte of a first
/// record's version (a hello in a record marked 0x03ff is answered), so a sender may use any.
pub fn looks_like_handshake(data: &[u8]) -> bool {
    matches!(data, [0x16, 0x03, ..])
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
            Ok(hello) => Parse::Hello(hello.into_owned()),
            Err(reason) => Parse::Malformed(reason),
        },
        Joined::NeedMore => Parse::NeedMore,
        Joined::Bad(reason) => Parse::Malformed(reason),
        Joined::NotTls => Parse::NotTls,
    }
}

/// A TLS record's header: content type, version, length.
const RECORD_HEADER_LEN: usize = 5;

/// Bytes of the TLS record at the start of `stream`, header and body, or `None` while it is
/// not all there.
pub fn record_len(stream: &[u8]) -> Option<usize> {
    let header = stream.get(..RECORD_HEADER_LEN)?;
    let len = RECORD_HEADER_LEN + usize::from(u16::from_be_bytes([header[3], header[4]]));
    (stream.len() >= len).then_some(len)
}

/// Bytes at the start of `stream` taken by the TLS records that carry its first handshake
/// message (what `parse_client_hello` reads a ClientHello from), or `None` while they are not
/// all there. Bytes after those records (a second hello, early data) are not the hello's.
pub fn hello_records_len(stream: &[u8]) -> Option<usize> {
    let (mut at, mut carried) = (0, 0);
    let mut head = [0u8; 4];
    loop {
        let record = stream.get(at..).and_then(record_len)?;
        let body = stream.get(at + RECORD_HEADER_LEN..at + record)?;
        for (slot, &byte) in head.iter_mut().skip(carried.min(4)).zip(body) {
            *slot = byte;
        }
        at += record;
        carried += body.len();
        let message =
            4 + (usize::from(head[1]) << 16 | usize::from(head[2]) << 8 | usize::from(head[3]));
        if carried >= 4 && carried >= message {
            return Some(at);
        }
    }
}

fn looks_like_handshake_prefix(data: &[u8]) -> bool {
    matches!(data, [0x16] | [0x16, 0x03, ..])
}

enum Joined<'a> {
    Complete(Cow<'a, [u8]>),
    NeedMore,
    NotTls,
    Bad(FlowAnomaly),
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
            Err(_) => return Joined::Bad(FlowAnomaly::TlsRecordMalformed),
        };
        if record.hdr.record_type != TlsRecordType::Handshake {
            return if first.is_none() {
                Joined::NotTls
            } else {
                Joined::Bad(FlowAnomaly::TlsHandshakeInterrupted)
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
                return Joined::Bad(FlowAnomaly::TlsClientHelloTooLarge);
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
            return Joined::Bad(FlowAnomaly::TlsClientHelloTooLarge);
        }
    }
}

/// Reads a ClientHello handshake message (4-byte header and body), as QUIC carries it in
/// CRYPTO frames: no record layer.
pub fn parse_client_hello_message(handshake: &[u8]) -> Parse<'_> {
    match handshake {
        [] => Parse::NeedMore,
        [HANDSHAKE_CLIENT_HELLO, ..] if handshake.len() < 4 => Parse::NeedMore,
        [HANDSHAKE_CLIENT_HELLO, a, b, c, ..] => {
            let len = usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c);
            if handshake.len() < len + 4 {
                return Parse::NeedMore;
            }
            read_hello(0, &handshake[..len + 4]).map_or_else(Parse::Malformed, Parse::Hello)
        }
        _ => Parse::NotTls,
    }
}

fn u16_list(data: &[u8], len_bytes: usize) -> HelloList {
    let body = data.get(len_bytes..).unwrap_or_default();
    body.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

fn read_hello(record_version: u16, handshake: &[u8]) -> Result<ClientHello<'_>, FlowAnomaly> {
    const EXT_SUPPORTED_VERSIONS: u16 = 43;
    const EXT_ALPN: u16 = 16;
    const EXT_SIGNATURE_ALGORITHMS: u16 = 13;
    let body = handshake
        .get(4..)
        .ok_or(FlowAnomaly::TlsClientHelloMalformed)?;
    let (_, hello) = tls_parser::parse_tls_handshake_client_hello(body)
        .map_err(|_| FlowAnomaly::TlsClientHelloMalformed)?;
    let mut out = ClientHello {
        record_version,
        hello_version: u16::from(hello.version),
        server_name: None,
        more_names: Vec::new(),
        server_name_malformed: false,
        ech: false,
        ciphers: hello.ciphers.iter().map(|c| c.0).collect(),
        extensions: HelloList::new(),
        supported_versions: HelloList::new(),
        alpn_first: None,
        signature_algorithms: HelloList::new(),
    };
    let mut ext = hello.ext.unwrap_or_default();
    let mut server_name_seen = false;
    while ext.len() >= 4 {
        let kind = u16::from_be_bytes([ext[0], ext[1]]);
        let len = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        let Some(data) = ext.get(4..4 + len) else {
            return Err(FlowAnomaly::TlsExtensionTruncated);
        };
        out.extensions.push(kind);
        match kind {
            EXT_SERVER_NAME => {
                read_server_names(data, server_name_seen, &mut out);
                server_name_seen = true;
            }
            EXT_ENCRYPTED_CLIENT_HELLO => out.ech = true,
            EXT_SUPPORTED_VERSIONS => out.supported_versions = u16_list(data, 1),
            EXT_SIGNATURE_ALGORITHMS => out.signature_algorithms = u16_list(data, 2),
            EXT_ALPN => {
                // list length (2), then (length (1), protocol) entries.
                out.alpn_first = data
                    .get(2)
                    .and_then(|&n| data.get(3..3 + usize::from(n)))
                    .map(Cow::Borrowed);
            }
            _ => {}
        }
        ext = &ext[4 + len..];
    }
    Ok(out)
}

/// Other names kept from one malformed server_name extension: enough for any decoy layout,
/// and no flood of events from one hello.
const MAX_MORE_NAMES: usize = 8;

/// Reads a server_name extension: a 2-byte list length, then (type, 2-byte length, name)
/// entries (RFC 6066 §3). Clients send one extension with one `host_name` and nothing after
/// it. Anything else (a second extension, a second name, a name type other than `host_name`, a
/// NUL in a name, bytes past the list) is marked malformed and its names kept (up to
/// `MAX_MORE_NAMES` besides the first), a name with a NUL both whole and up to the NUL:
/// OpenSSL refuses such a hello, but a server built on another library may take the first
/// name, the last, or a name read as a C string, and a decoy must not hide the one it takes.
fn read_server_names<'a>(data: &'a [u8], seen_before: bool, out: &mut ClientHello<'a>) {
    let listed = data
        .get(..2)
        .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])));
    let mut list = data.get(2..).unwrap_or_default();
    let mut malformed = seen_before || listed != Some(list.len());
    let mut host_names = 0;
    while let [kind, len_hi, len_lo, rest @ ..] = list {
        let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo]));
        let Some((name, after)) = rest.split_at_checked(len) else {
            malformed = true;
            break;
        };
        list = after;
        if *kind != SNI_HOST_NAME {
            malformed = true;
            continue;
        }
        host_names += 1;
        malformed |= host_names > 1;
        if let Some(nul) = name.iter().position(|&b| b == 0) {
            malformed = true;
            add_server_name(out, &name[..nul]);
        }
        add_server_name(out, name);
    }
    out.server_name_malformed |= malformed || !list.is_empty();
}

/// Adds a name of the server_name extension: the first is `server_name`, the others go to
/// `more_names`, each once and at most `MAX_MORE_NAMES`.
fn add_server_name<'a>(out: &mut ClientHello<'a>, name: &'a [u8]) {
    match &out.server_name {
        None => out.server_name = Some(Cow::Borrowed(name)),
        Some(first) if first.as_ref() == name => {}
        Some(_) => {
            if out.more_names.len() < MAX_MORE_NAMES
                && !out.more_names.iter().any(|n| n.as_ref() == name)
            {
                out.more_names.push(Cow::Borrowed(name));
            }
        }
    }
}

/// What the server's first flight says (TLS 1.2 and earlier send the certificate in clear).
#[derive(Debug, PartialEq, Eq)]
pub enum ServerParse<'a> {
    NeedMore,
    NotTls,
    /// The handshake is as far as we read it: the negotiated version and, before TLS 1.3,
    /// the leaf certificate (DER).
    Done {
        version: u16,
        leaf: Option<Cow<'a, [u8]>>,
    },
    Malformed(FlowAnomaly),
    /// A TLS 1.3 HelloRetryRequest: the client sends a second ClientHello, which is the one
    /// the server goes on with.
    HelloRetry,
}

/// The `random` of a ServerHello that is a HelloRetryRequest (RFC 8446 §4.1.3: the SHA-256
/// of "HelloRetryRequest").
pub(crate) const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Reads ServerHello and Certificate from the start of a server's byte stream.
pub fn parse_server_flight(stream: &[u8]) -> ServerParse<'_> {
    const SERVER_HELLO: u8 = 2;
    const CERTIFICATE: u8 = 11;
    const SERVER_HELLO_DONE: u8 = 14;
    if stream.len() < 5 {
        return if stream.is_empty() || looks_like_handshake_prefix(stream) {
            ServerParse::NeedMore
        } else {
            ServerParse::NotTls
        };
    }
    if !looks_like_handshake(stream) {
        return ServerParse::NotTls;
    }
    let (joined, complete) = match server_handshake_bytes(stream) {
        Ok(joined) => joined,
        Err(anomaly) => return ServerParse::Malformed(anomaly),
    };
    let mut version = 0u16;
    let mut msgs = joined.as_slice();
    while msgs.len() >= 4 {
        let kind = msgs[0];
        let len = usize::from(msgs[1]) << 16 | usize::from(msgs[2]) << 8 | usize::from(msgs[3]);
        let Some(body) = msgs.get(4..4 + len) else {
            break;
        };
        match kind {
            SERVER_HELLO => {
                if body.get(2..34) == Some(&HELLO_RETRY_RANDOM[..]) {
                    return ServerParse::HelloRetry;
                }
                version = server_hello_version(body);
                if version >= 0x0304 {
                    return ServerParse::Done {
                        version,
                        leaf: None,
                    };
                }
            }
            CERTIFICATE => {
                return ServerParse::Done {
                    version,
                    leaf: certificate_leaf(body).map(|d| Cow::Owned(d.to_vec())),
                };
            }
            SERVER_HELLO_DONE => {
                return ServerParse::Done {
                    version,
                    leaf: None,
                }
            }
            _ => {}
        }
        msgs = &msgs[4 + len..];
    }
    if complete {
        ServerParse::Done {
            version,
            leaf: None,
        }
    } else {
        ServerParse::NeedMore
    }
}

/// The handshake payloads of the whole records at the start of `stream`, joined: handshake
/// messages may span records and records may hold several messages. The flag says whether a
/// record of another type (ChangeCipherSpec, application data) ended the clear handshake.
fn server_handshake_bytes(stream: &[u8]) -> Result<(Vec<u8>, bool), FlowAnomaly> {
    let mut joined: Vec<u8> = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        match tls_parser::parse_tls_raw_record(rest) {
            Ok((after, record)) => {
                rest = after;
                if record.hdr.record_type != TlsRecordType::Handshake {
                    // ChangeCipherSpec or application data: no certificate is coming in clear.
                    return Ok((joined, true));
                }
                joined.extend_from_slice(record.data);
            }
            Err(tls_parser::nom::Err::Incomplete(_)) => break,
            Err(_) => return Err(FlowAnomaly::TlsRecordMalformed),
        }
    }
    Ok((joined, false))
}

/// The version a ServerHello body negotiates: its supported_versions extension (TLS 1.3)
/// or else its legacy_version; 0 when the body is too short to say.
fn server_hello_version(body: &[u8]) -> u16 {
    const EXT_SUPPORTED_VERSIONS: u16 = 43;
    let mut version = body
        .get(..2)
        .map_or(0, |v| u16::from_be_bytes([v[0], v[1]]));
    // legacy_version(2) random(32) session_id(1+n) cipher(2) compression(1) extensions(2+…)
    let sid = usize::from(*body.get(34).unwrap_or(&0));
    let mut ext = body.get(35 + sid + 3 + 2..).unwrap_or_default();
    while ext.len() >= 4 {
        let t = u16::from_be_bytes([ext[0], ext[1]]);
        let l = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        if t == EXT_SUPPORTED_VERSIONS && l == 2 {
            version = ext
                .get(4..6)
                .map_or(version, |v| u16::from_be_bytes([v[0], v[1]]));
        }
        ext = ext.get(4 + l..).unwrap_or_default();
    }
    version
}

/// The leaf certificate (DER) of a Certificate message body.
fn certificate_leaf(body: &[u8]) -> Option<&[u8]> {
    // certificate_list length (3), then (length (3), DER) entries: the first is the leaf.
    body.get(3..6).and_then(|l| {
        let n = usize::from(l[0]) << 16 | usize::from(l[1]) << 8 | usize::from(l[2]);
        body.get(6..6 + n)
    })
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
        let mut ext = server_name_extension(&[(SNI_HOST_NAME, sni.as_bytes())], b"");
        // padding extension (21)
        ext.extend_from_slice(&[0, 21]);
        ext.extend_from_slice(&(pad as u16).to_be_bytes());
        ext.extend(std::iter::repeat_n(0u8, pad));
        client_hello_with_extensions(&ext)
    }

    /// A server_name extension whose list holds `entries` (name type, name), followed by
    /// `trailing` bytes inside the extension but past the list.
    pub(crate) fn server_name_extension(entries: &[(u8, &[u8])], trailing: &[u8]) -> Vec<u8> {
        let mut list = Vec::new();
        for (kind, name) in entries {
            list.push(*kind);
            list.extend_from_slice(&(name.len() as u16).to_be_bytes());
            list.extend_from_slice(name);
        }
        let mut ext = vec![0, 0];
        ext.extend_from_slice(&((list.len() + 2 + trailing.len()) as u16).to_be_bytes());
        ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
        ext.extend_from_slice(&list);
        ext.extend_from_slice(trailing);
        ext
    }

    /// A ClientHello handshake message (TLS 1.2 layout) with these extension bytes.
    pub(crate) fn client_hello_with_extensions(ext: &[u8]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0x11; 32]); // random
        body.push(0); // session id
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0xc0, 0x2f]); // ciphers
        body.extend_from_slice(&[1, 0]); // compression
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(ext);
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
    fn the_records_of_a_hello_end_where_its_message_does() {
        let hello = client_hello("dnl-01.geo.kaspersky.com", 0);
        for split in [3, 100, 16384] {
            let stream = records(&hello, split);
            assert_eq!(
                hello_records_len(&stream),
                Some(stream.len()),
                "split {split}"
            );
            let mut more = stream.clone();
            more.extend_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
            assert_eq!(
                hello_records_len(&more),
                Some(stream.len()),
                "split {split}"
            );
            assert_eq!(hello_records_len(&stream[..stream.len() - 1]), None);
        }
        assert_eq!(hello_records_len(&[0x16, 0x03, 0x01, 0x00, 0x00]), None);
    }

    /// The server names a hello with these extensions gives: (first, others, malformed).
    fn server_names(ext: &[u8]) -> (Option<Vec<u8>>, Vec<Vec<u8>>, bool) {
        match parse_client_hello_message(&client_hello_with_extensions(ext)) {
            Parse::Hello(h) => (
                h.server_name.map(Cow::into_owned),
                h.more_names.into_iter().map(Cow::into_owned).collect(),
                h.server_name_malformed,
            ),
            other => panic!("not a hello: {other:?}"),
        }
    }

    #[test]
    fn a_malformed_server_name_extension_gives_every_name_it_holds() {
        const REAL: &[u8] = b"dnl-01.geo.kaspersky.com";
        const DECOY: &[u8] = b"www.example.org";
        let one = |name| server_name_extension(&[(SNI_HOST_NAME, name)], b"");
        assert_eq!(
            server_names(&one(REAL)),
            (Some(REAL.to_vec()), vec![], false)
        );
        // An entry of another name type is skipped, and refused by OpenSSL and BoringSSL.
        let other_type = server_name_extension(&[(7, DECOY), (SNI_HOST_NAME, REAL)], b"");
        assert_eq!(
            server_names(&other_type),
            (Some(REAL.to_vec()), vec![], true)
        );
        // Two extensions, two names in one list, the same name twice.
        let two_extensions = [one(DECOY), one(REAL)].concat();
        let two_names =
            server_name_extension(&[(SNI_HOST_NAME, DECOY), (SNI_HOST_NAME, REAL)], b"");
        for ext in [two_extensions, two_names] {
            assert_eq!(
                server_names(&ext),
                (Some(DECOY.to_vec()), vec![REAL.to_vec()], true)
            );
        }
        let same_twice =
            server_name_extension(&[(SNI_HOST_NAME, REAL), (SNI_HOST_NAME, REAL)], b"");
        assert_eq!(
            server_names(&same_twice),
            (Some(REAL.to_vec()), vec![], true)
        );
        // A NUL: the name up to it (as a C string) and the whole name.
        let with_nul = [DECOY, b"\0", REAL].concat();
        assert_eq!(
            server_names(&one(&with_nul)),
            (Some(DECOY.to_vec()), vec![with_nul.clone()], true)
        );
        // Bytes past the list, or an entry longer than the list.
        let trailing = server_name_extension(&[(SNI_HOST_NAME, REAL)], b"\0\0");
        assert_eq!(server_names(&trailing), (Some(REAL.to_vec()), vec![], true));
        let len = REAL.len() as u16;
        let mut cut = vec![0, 0];
        cut.extend_from_slice(&(len + 5).to_be_bytes()); // the extension's length
        cut.extend_from_slice(&(len + 3).to_be_bytes()); // the list's
        cut.push(SNI_HOST_NAME);
        cut.extend_from_slice(&(len + 1).to_be_bytes()); // the name's: one byte too long
        cut.extend_from_slice(REAL);
        assert_eq!(server_names(&cut), (None, vec![], true));
        // At most MAX_MORE_NAMES others, however many the list holds.
        let many: Vec<Vec<u8>> = (0..100)
            .map(|i| format!("n{i}.example").into_bytes())
            .collect();
        let entries: Vec<(u8, &[u8])> = many.iter().map(|n| (SNI_HOST_NAME, &n[..])).collect();
        let (first, others, malformed) = server_names(&server_name_extension(&entries, b""));
        assert_eq!(first.as_deref(), Some(&b"n0.example"[..]));
        assert_eq!(others, many[1..=MAX_MORE_NAMES].to_vec());
        assert!(malformed);
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
    fn any_record_version_of_major_three_is_read() {
        // OpenSSL and nginx answer a hello whose record says 0x03ff or 0x0305: so must we.
        for minor in [0x05u8, 0x80, 0xff] {
            let mut bytes = records(&client_hello("dnl-01.geo.kaspersky.com", 0), 16384);
            bytes[2] = minor;
            assert!(looks_like_handshake(&bytes));
            assert!(matches!(parse_client_hello(&bytes[..2]), Parse::NeedMore));
            match parse_client_hello(&bytes) {
                Parse::Hello(h) => assert_eq!(
                    h.server_name.as_deref(),
                    Some(&b"dnl-01.geo.kaspersky.com"[..])
                ),
                other => panic!("{minor:#x}: {other:?}"),
            }
        }
        assert!(!looks_like_handshake(&[0x16, 0x02, 0x00]));
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
