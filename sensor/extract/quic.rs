//! QUIC Initial packets: removes the protection any observer can remove and returns the
//! CRYPTO frames, which carry the client's TLS ClientHello.
//!
//! Initial keys come from the client's Destination Connection ID and a salt fixed by the
//! version (RFC 9001 §5.2; RFC 9369 for v2; draft-29 for the last draft still deployed).
//! Keys are derived per packet and nothing is cached: from the packet's own DCID (the
//! client's first flight, and its first Initial after a Retry), or with
//! `client_initials_keyed` from the DCID the flow's earlier Initials were keyed by, which the
//! client keeps once its Initials carry the server's connection ID. Only client keys are
//! derived: a server Initial fails to decrypt and is skipped (`server_handshake_began` reads a
//! server datagram's headers only). AES, AES-GCM and HKDF are
//! RustCrypto's.
//!
//! `client_initials` is pure (one datagram in, owned plaintext out); `CryptoStream` is the
//! per-flow state that joins CRYPTO frames by offset, because clients split the ClientHello
//! across frames and packets and reorder the pieces on purpose.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::Aes128Gcm;
use hkdf::Hkdf;
use sha2::Sha256;
use smallvec::SmallVec;

pub const VERSION_1: u32 = 1;
pub const VERSION_2: u32 = 0x6b33_43cf;
pub const VERSION_DRAFT29: u32 = 0xff00_001d;

/// Cap on CRYPTO bytes reassembled per flow: a ClientHello with a post-quantum key share is
/// ~2 KB and spans two Initial packets, but a client may pad its hello far past that to get
/// it out of a sensor's reach, so the cap is the one a TCP stream has (what is held counts
/// in the worker's reassembly budget).
pub const MAX_CRYPTO_BYTES: usize = 64 * 1024;
/// How far past the bytes received in order CRYPTO bytes are kept (see `CryptoStream::add`):
/// a client that sends its hello's frames out of order (Chromium does, within its first two
/// Initials) stays well inside it.
pub const MAX_CRYPTO_AHEAD: usize = 4 * 1024;

/// Longest connection ID in QUIC v1 and v2 (RFC 9000 §17.2); longer is not a version we read.
pub const MAX_CID_LEN: usize = 20;

/// Header form bit: set on long headers, clear on short ones (RFC 9000 §17).
const LONG_HEADER: u8 = 0x80;
/// On a long header, the bits of the first byte that header protection hides (RFC 9001 §5.4.1):
/// two reserved bits and the packet number length.
const LONG_PROTECTED_BITS: u8 = 0x0f;
const PN_LEN_BITS: u8 = 0x03;

/// AEAD_AES_128_GCM, the cipher suite of every Initial packet (RFC 9001 §5.3).
const KEY_LEN: usize = 16;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
const SECRET_LEN: usize = 32;
/// The header protection sample starts 4 bytes past the packet number offset, as if the
/// packet number were 4 bytes long, since its real length is still masked (RFC 9001 §5.4.2).
const SAMPLE_OFFSET: usize = 4;
const SAMPLE_LEN: usize = 16;

/// HKDF-Expand-Label prefixes every label with this (RFC 8446 §7.1).
const TLS13_LABEL_PREFIX: &[u8] = b"tls13 ";

/// Largest value of a variable-length integer (RFC 9000 §16); CRYPTO data may not reach past it.
const MAX_VARINT: u64 = (1 << 62) - 1;

const FRAME_PADDING: u64 = 0x00;
const FRAME_PING: u64 = 0x01;
const FRAME_ACK: u64 = 0x02;
const FRAME_ACK_ECN: u64 = 0x03;
const FRAME_CRYPTO: u64 = 0x06;

/// One client Initial packet, decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initial {
    pub version: u32,
    /// The Destination Connection ID its keys were derived from: the packet's own, except
    /// when `client_initials_keyed` opened it with the flow's.
    pub dcid: Vec<u8>,
    /// CRYPTO frames in packet order: (stream offset, data).
    pub crypto: Vec<(u64, Vec<u8>)>,
}

/// Why a datagram yielded no client Initial. Each variant's `reason()` is a stable metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum QuicError {
    #[error("packet shorter than its header or Length field says")]
    Truncated,
    #[error("QUIC version without Initial keys we know")]
    UnknownVersion,
    #[error("connection ID longer than 20 bytes")]
    CidTooLong,
    #[error("Initial packet did not decrypt with the client keys of its DCID")]
    DecryptFailed,
}

impl QuicError {
    pub const ALL: [QuicError; 4] = [
        QuicError::Truncated,
        QuicError::UnknownVersion,
        QuicError::CidTooLong,
        QuicError::DecryptFailed,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            QuicError::Truncated => "quic_truncated",
            QuicError::UnknownVersion => "quic_unknown_version",
            QuicError::CidTooLong => "quic_cid_too_long",
            QuicError::DecryptFailed => "quic_decrypt_failed",
        }
    }
}

/// Long-header packet types, whatever bits a version gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PacketType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

/// What differs between the versions we read.
struct Version {
    salt: [u8; 20],
    key_label: &'static [u8],
    iv_label: &'static [u8],
    hp_label: &'static [u8],
    /// Packet type by the two type bits of the first byte.
    types: [PacketType; 4],
}

const V1_TYPES: [PacketType; 4] = [
    PacketType::Initial,
    PacketType::ZeroRtt,
    PacketType::Handshake,
    PacketType::Retry,
];

/// RFC 9001 §5.2.
const V1: Version = Version {
    salt: [
        0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c,
        0xad, 0xcc, 0xbb, 0x7f, 0x0a,
    ],
    key_label: b"quic key",
    iv_label: b"quic iv",
    hp_label: b"quic hp",
    types: V1_TYPES,
};

/// RFC 9369 §3.2 and §3.3: new salt, new labels, and the type bits rotated by one so that
/// middleboxes cannot ossify on v1's.
const V2: Version = Version {
    salt: [
        0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d,
        0xcb, 0xf9, 0xbd, 0x2e, 0xd9,
    ],
    key_label: b"quicv2 key",
    iv_label: b"quicv2 iv",
    hp_label: b"quicv2 hp",
    types: [
        PacketType::Retry,
        PacketType::Initial,
        PacketType::ZeroRtt,
        PacketType::Handshake,
    ],
};

/// draft-ietf-quic-tls-29 §5.2: v1's packet layout and labels with its own salt.
const DRAFT29: Version = Version {
    salt: [
        0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11,
        0xe0, 0x43, 0x90, 0xa8, 0x99,
    ],
    ..V1
};

impl Version {
    fn of(version: u32) -> Option<&'static Version> {
        match version {
            VERSION_1 => Some(&V1),
            VERSION_2 => Some(&V2),
            VERSION_DRAFT29 => Some(&DRAFT29),
            _ => None,
        }
    }

    fn packet_type(&self, first: u8) -> PacketType {
        self.types[usize::from((first >> 4) & 0x03)]
    }
}

/// Cheap probe: does this UDP payload start with a long-header Initial packet of a version
/// we read?
pub fn looks_like_client_initial(datagram: &[u8]) -> bool {
    match datagram {
        [first, v0, v1, v2, v3, dcid_len, rest @ ..] if first & LONG_HEADER != 0 => {
            let dcid_len = usize::from(*dcid_len);
            Version::of(u32::from_be_bytes([*v0, *v1, *v2, *v3]))
                .is_some_and(|v| v.packet_type(*first) == PacketType::Initial)
                && dcid_len <= MAX_CID_LEN
                // The DCID and the SCID length byte must fit.
                && rest.len() > dcid_len
        }
        _ => false,
    }
}

/// The connection IDs of the long-header packet at the start of `datagram`, and whether it
/// is a Retry: `(dcid, scid, is_retry)`. `None` for a short header, an unknown version or a
/// header cut short.
pub fn long_header_cids(datagram: &[u8]) -> Option<(&[u8], &[u8], bool)> {
    let mut r = Reader::new(datagram);
    let first = r.u8()?;
    if first & LONG_HEADER == 0 {
        return None;
    }
    let version = Version::of(r.u32()?)?;
    let dcid = r.cid().ok()?;
    let scid = r.cid().ok()?;
    Some((dcid, scid, version.packet_type(first) == PacketType::Retry))
}

/// Whether a server's datagram carries a Handshake packet to the client's connection ID
/// `client_scid`: the server took a ClientHello and answered it with a ServerHello (a
/// HelloRetryRequest, a Retry or a Version Negotiation comes without one, and 1-RTT packets
/// only after one). Coalesced packets are walked by their Length.
pub fn server_handshake_began(datagram: &[u8], client_scid: &[u8]) -> bool {
    let mut rest = datagram;
    while rest.first().is_some_and(|b| b & LONG_HEADER != 0) {
        let Ok(header) = LongHeader::parse(rest) else {
            return false;
        };
        match header.kind {
            PacketType::Handshake if header.dcid == client_scid => return true,
            PacketType::Retry => return false,
            PacketType::Initial | PacketType::ZeroRtt | PacketType::Handshake => {}
        }
        let Some((_, after)) = rest.split_at_checked(header.end) else {
            return false;
        };
        rest = after;
    }
    false
}

/// Whether `datagram` opens a new QUIC connection: a client Initial keyed by its own DCID
/// (only the first flight of a connection, or the one after a Retry, is) whose CRYPTO data
/// starts at offset 0 with a ClientHello. A client's later Initials (ACKs of the server's,
/// a second ClientHello after a HelloRetryRequest) are keyed by its first DCID, which they
/// no longer carry, so they are not read as a new connection.
pub fn opens_connection(datagram: &[u8]) -> bool {
    const CLIENT_HELLO: u8 = 1;
    client_initials(datagram).is_ok_and(|initials| {
        initials.iter().any(|i| {
            i.crypto
                .iter()
                .any(|(offset, data)| *offset == 0 && data.first() == Some(&CLIENT_HELLO))
        })
    })
}

/// Decrypts every client Initial packet in one UDP datagram.
///
/// Coalesced packets are walked by their Length field; 0-RTT and Handshake packets are
/// skipped, and a short header or a Retry (neither has a Length) ends the walk. `Ok` with no
/// Initial is ordinary traffic (the client's later Handshake and 1-RTT datagrams). An error is
/// returned only when no Initial in the datagram decrypted: the first problem met.
///
/// Each packet is opened with keys from its own DCID, which is right for every Initial a
/// client sends before it hears from the server (the whole first flight, so the ClientHello).
pub fn client_initials(datagram: &[u8]) -> Result<SmallVec<[Initial; 2]>, QuicError> {
    initials(datagram, None)
}

/// As `client_initials`, for a flow that already gave up an Initial keyed by `key_dcid`
/// (the `dcid` of the latest `Initial` returned for the flow).
///
/// Once the server has answered, the client's Initials carry the connection ID the server
/// chose, but keep the keys of the client's first DCID (RFC 9001 §5.2): an ACK of the
/// server's Initial, or a second ClientHello after a HelloRetryRequest. Those packets are
/// opened with `key_dcid`'s keys; a packet they do not open is tried with its own DCID (the
/// first Initial after a Retry is keyed by the DCID the Retry gave it).
pub fn client_initials_keyed(
    datagram: &[u8],
    key_dcid: &[u8],
) -> Result<SmallVec<[Initial; 2]>, QuicError> {
    initials(datagram, Some(key_dcid))
}

fn initials(datagram: &[u8], key_dcid: Option<&[u8]>) -> Result<SmallVec<[Initial; 2]>, QuicError> {
    if datagram.is_empty() {
        return Err(QuicError::Truncated);
    }
    let mut found = SmallVec::new();
    let mut first_error = None;
    let mut rest = datagram;
    // Whatever follows a short header belongs to it, and clients may pad a datagram with
    // zero bytes after its last packet (RFC 9000 §14.1): both read as a short header.
    while rest.first().is_some_and(|b| b & LONG_HEADER != 0) {
        let header = match LongHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => {
                // Without a header there is no Length, so no way to the next packet.
                first_error.get_or_insert(e);
                break;
            }
        };
        let Some((packet, after)) = rest.split_at_checked(header.end) else {
            first_error.get_or_insert(QuicError::Truncated);
            break;
        };
        match header.kind {
            PacketType::Initial => {
                let opened = match key_dcid {
                    Some(key) if key != header.dcid => open_initial(&header, packet, key)
                        .or_else(|_| open_initial(&header, packet, header.dcid)),
                    _ => open_initial(&header, packet, header.dcid),
                };
                match opened {
                    Ok(initial) => found.push(initial),
                    // A server Initial (or a corrupt one): the next packet may still be readable.
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            PacketType::ZeroRtt | PacketType::Handshake => {}
            PacketType::Retry => break,
        }
        rest = after;
    }
    match first_error {
        Some(e) if found.is_empty() => Err(e),
        _ => Ok(found),
    }
}

/// The parts of a long header that locate and unprotect the packet.
struct LongHeader<'a> {
    number: u32,
    version: &'static Version,
    kind: PacketType,
    dcid: &'a [u8],
    /// Offset of the (protected) packet number from the start of the packet.
    pn_offset: usize,
    /// Offset just past the packet: within the datagram, checked by `parse`.
    end: usize,
}

impl<'a> LongHeader<'a> {
    /// Reads the long header at the start of `packet` (RFC 9000 §17.2).
    fn parse(packet: &'a [u8]) -> Result<LongHeader<'a>, QuicError> {
        let mut r = Reader::new(packet);
        let first = r.u8().ok_or(QuicError::Truncated)?;
        let number = r.u32().ok_or(QuicError::Truncated)?;
        // Version Negotiation (version 0) lands here too: it is the server's, with no Length.
        let version = Version::of(number).ok_or(QuicError::UnknownVersion)?;
        let dcid = r.cid()?;
        r.cid()?;
        let kind = version.packet_type(first);
        if kind == PacketType::Retry {
            // A Retry has no Length: it runs to the end of the datagram.
            return Ok(LongHeader {
                number,
                version,
                kind,
                dcid,
                pn_offset: r.at,
                end: packet.len(),
            });
        }
        if kind == PacketType::Initial {
            let token_len = r.varint().ok_or(QuicError::Truncated)?;
            let token_len = usize::try_from(token_len).map_err(|_| QuicError::Truncated)?;
            r.take(token_len).ok_or(QuicError::Truncated)?;
        }
        let length = r.varint().ok_or(QuicError::Truncated)?;
        let pn_offset = r.at;
        let end = usize::try_from(length)
            .ok()
            .and_then(|len| pn_offset.checked_add(len))
            .filter(|&end| end <= packet.len())
            .ok_or(QuicError::Truncated)?;
        Ok(LongHeader {
            number,
            version,
            kind,
            dcid,
            pn_offset,
            end,
        })
    }
}

/// Removes header and packet protection from one client Initial (RFC 9001 §5.3, §5.4) and
/// reads its frames. `packet` is exactly the packet, as delimited by its Length.
fn open_initial(
    header: &LongHeader<'_>,
    packet: &[u8],
    key_dcid: &[u8],
) -> Result<Initial, QuicError> {
    let pn_offset = header.pn_offset;
    let sample_at = pn_offset + SAMPLE_OFFSET;
    let sample = packet
        .get(sample_at..sample_at + SAMPLE_LEN)
        .ok_or(QuicError::Truncated)?;
    let keys = Keys::client(header.version, key_dcid).ok_or(QuicError::DecryptFailed)?;
    let mask = header_mask(&keys.hp, sample).ok_or(QuicError::DecryptFailed)?;

    let mut buf = packet.to_vec();
    let first = buf.first_mut().ok_or(QuicError::Truncated)?;
    *first ^= mask[0] & LONG_PROTECTED_BITS;
    let pn_len = usize::from(*first & PN_LEN_BITS) + 1;
    // The sample starts 4 bytes past `pn_offset`, so the packet number (1 to 4 bytes) is in
    // the buffer. Initials number from 0 and a client never sends enough of them to wrap the
    // truncated value, so the truncated number is the packet number.
    let mut pn = 0u64;
    for (byte, m) in buf
        .get_mut(pn_offset..pn_offset + pn_len)
        .ok_or(QuicError::Truncated)?
        .iter_mut()
        .zip(&mask[1..])
    {
        *byte ^= m;
        pn = pn << 8 | u64::from(*byte);
    }

    // The AAD is the header as sent once unmasked, packet number included (RFC 9001 §5.3).
    let (aad, sealed) = buf.split_at_mut(pn_offset + pn_len);
    let tag_at = sealed
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(QuicError::Truncated)?;
    let (payload, tag) = sealed.split_at_mut(tag_at);
    let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| QuicError::Truncated)?;
    let mut nonce = keys.iv;
    for (n, p) in nonce[IV_LEN - 8..].iter_mut().zip(pn.to_be_bytes()) {
        *n ^= p;
    }
    Aes128Gcm::new(&keys.key.into())
        .decrypt_in_place_detached(&nonce.into(), aad, payload, &tag.into())
        .map_err(|_| QuicError::DecryptFailed)?;

    Ok(Initial {
        version: header.number,
        dcid: key_dcid.to_vec(),
        crypto: crypto_frames(payload),
    })
}

/// Packet protection keys of one direction of one connection's Initials.
#[derive(Debug, PartialEq, Eq)]
struct Keys {
    key: [u8; KEY_LEN],
    iv: [u8; IV_LEN],
    hp: [u8; KEY_LEN],
}

impl Keys {
    /// The client's Initial keys for a DCID (RFC 9001 §5.2). `None` only if HKDF refused an
    /// output length, which the constant lengths here never trigger.
    fn client(version: &Version, dcid: &[u8]) -> Option<Keys> {
        let initial = Hkdf::<Sha256>::new(Some(&version.salt), dcid);
        let mut secret = [0u8; SECRET_LEN];
        expand_label(&initial, b"client in", &mut secret)?;
        let client = Hkdf::<Sha256>::from_prk(&secret).ok()?;
        let mut keys = Keys {
            key: [0; KEY_LEN],
            iv: [0; IV_LEN],
            hp: [0; KEY_LEN],
        };
        expand_label(&client, version.key_label, &mut keys.key)?;
        expand_label(&client, version.iv_label, &mut keys.iv)?;
        expand_label(&client, version.hp_label, &mut keys.hp)?;
        Some(keys)
    }
}

/// HKDF-Expand-Label of TLS 1.3 (RFC 8446 §7.1) with an empty context, filling `out`.
fn expand_label(hkdf: &Hkdf<Sha256>, label: &[u8], out: &mut [u8]) -> Option<()> {
    let out_len = u16::try_from(out.len()).ok()?.to_be_bytes();
    let label_len = [u8::try_from(TLS13_LABEL_PREFIX.len() + label.len()).ok()?];
    let empty_context = [0u8];
    hkdf.expand_multi_info(
        &[
            &out_len,
            &label_len,
            TLS13_LABEL_PREFIX,
            label,
            &empty_context,
        ],
        out,
    )
    .ok()
}

/// AES-128-ECB of the sample under the header protection key (RFC 9001 §5.4.3).
fn header_mask(hp: &[u8; KEY_LEN], sample: &[u8]) -> Option<[u8; SAMPLE_LEN]> {
    let sample: [u8; SAMPLE_LEN] = sample.try_into().ok()?;
    let mut block = aes::Block::from(sample);
    aes::Aes128::new(&(*hp).into()).encrypt_block(&mut block);
    Some(block.into())
}

/// The CRYPTO frames of a decrypted Initial payload, in order.
///
/// Initial packets may carry only PADDING, PING, ACK, CRYPTO and CONNECTION_CLOSE
/// (RFC 9000 §12.4). The walk stops at the first frame it does not read, or at a malformed
/// one: the frame's length is unknown, so nothing after it can be found.
fn crypto_frames(payload: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut r = Reader::new(payload);
    while !r.is_empty() {
        match next_frame(&mut r) {
            Some(Frame::Crypto(offset, data)) => frames.push((offset, data.to_vec())),
            Some(Frame::Skipped) => {}
            None => break,
        }
    }
    frames
}

enum Frame<'a> {
    Crypto(u64, &'a [u8]),
    /// A frame read past and ignored.
    Skipped,
}

/// Reads one frame (RFC 9000 §19); `None` on a type we do not read or a malformed frame.
fn next_frame<'a>(r: &mut Reader<'a>) -> Option<Frame<'a>> {
    // Frame types are varints; a longer encoding than needed is tolerated, as it decodes the same.
    match r.varint()? {
        FRAME_PADDING | FRAME_PING => Some(Frame::Skipped),
        kind @ (FRAME_ACK | FRAME_ACK_ECN) => {
            let _largest = r.varint()?;
            let _delay = r.varint()?;
            let ranges = r.varint()?;
            let _first_range = r.varint()?;
            // Every range is two varints, at least two bytes: a hostile count runs out of
            // bytes (and ends the loop) after at most half the payload.
            for _ in 0..ranges {
                let _gap = r.varint()?;
                let _len = r.varint()?;
            }
            if kind == FRAME_ACK_ECN {
                let _ect0 = r.varint()?;
                let _ect1 = r.varint()?;
                let _ce = r.varint()?;
            }
            Some(Frame::Skipped)
        }
        FRAME_CRYPTO => {
            let offset = r.varint()?;
            let len = r.varint()?;
            if offset.checked_add(len)? > MAX_VARINT {
                return None;
            }
            let data = r.take(usize::try_from(len).ok()?)?;
            Some(Frame::Crypto(offset, data))
        }
        _ => None,
    }
}

/// A read position over a byte slice: every read is bounds-checked and `None` past the end.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, at: 0 }
    }

    fn is_empty(&self) -> bool {
        self.at >= self.buf.len()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let bytes = self.buf.get(self.at..end)?;
        self.at = end;
        Some(bytes)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    /// A variable-length integer (RFC 9000 §16): the top two bits of the first byte give
    /// its length, 1, 2, 4 or 8 bytes.
    fn varint(&mut self) -> Option<u64> {
        let first = *self.buf.get(self.at)?;
        let bytes = self.take(1 << (first >> 6))?;
        Some(
            bytes[1..]
                .iter()
                .fold(u64::from(first & 0x3f), |v, &b| v << 8 | u64::from(b)),
        )
    }

    /// A length-prefixed connection ID of a long header.
    fn cid(&mut self) -> Result<&'a [u8], QuicError> {
        let len = usize::from(self.u8().ok_or(QuicError::Truncated)?);
        if len > MAX_CID_LEN {
            return Err(QuicError::CidTooLong);
        }
        self.take(len).ok_or(QuicError::Truncated)
    }
}

/// Per-flow reassembly of the CRYPTO stream by offset: out of order, overlapping,
/// duplicated, with gaps; bounded by `MAX_CRYPTO_BYTES` (bytes beyond are dropped and
/// `dropped` counts them).
///
/// The first copy of a byte wins, so the contiguous prefix, once returned, never changes:
/// a retransmission that disagrees with it cannot rewrite what was already read.
#[derive(Debug, Clone, Default)]
pub struct CryptoStream {
    /// Stream bytes `0..data.len()`, holes zero until filled; never longer than the cap.
    data: Vec<u8>,
    /// One bit per byte of `data`: received. A bitmap rather than a range list keeps every
    /// `add` linear in its length, however a sender fragments the stream.
    received: Vec<u64>,
    /// Length of the received prefix.
    contiguous: usize,
    dropped: u64,
}

impl CryptoStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the data of one CRYPTO frame at its stream offset. Of a frame that starts past
    /// the received prefix, bytes more than `MAX_CRYPTO_AHEAD` past it are dropped like those
    /// past the cap: the stream is held densely, and one byte far ahead would otherwise cost
    /// as much memory as everything before it (a flood of such Initials would fill the
    /// reassembly budget).
    pub fn add(&mut self, offset: u64, data: &[u8]) {
        let cap = if offset <= self.contiguous as u64 {
            MAX_CRYPTO_BYTES
        } else {
            MAX_CRYPTO_BYTES.min(self.contiguous + MAX_CRYPTO_AHEAD)
        } as u64;
        let len = data.len() as u64;
        let kept_end = offset.saturating_add(len).min(cap);
        let kept = kept_end.saturating_sub(offset);
        self.dropped = self.dropped.saturating_add(len - kept);
        if kept == 0 {
            return;
        }
        // Both below the cap, so they fit in usize.
        let (start, end) = (offset as usize, kept_end as usize);
        if self.data.len() < end {
            self.data.resize(end, 0);
            self.received.resize(end.div_ceil(64), 0);
        }
        for (pos, &byte) in (start..end).zip(data) {
            if !self.has(pos) {
                self.received[pos / 64] |= 1 << (pos % 64);
                self.data[pos] = byte;
            }
        }
        while self.contiguous < self.data.len() && self.has(self.contiguous) {
            self.contiguous += 1;
        }
    }

    /// The bytes received without a gap from offset 0.
    pub fn contiguous(&self) -> &[u8] {
        self.data.get(..self.contiguous).unwrap_or_default()
    }

    /// Whether bytes already received differ from `data` at `offset`.
    pub fn contradicts(&self, offset: u64, data: &[u8]) -> bool {
        let Ok(start) = usize::try_from(offset) else {
            return false;
        };
        (start..self.data.len())
            .zip(data)
            .any(|(pos, &byte)| self.has(pos) && self.data[pos] != byte)
    }

    /// The stream's bytes laid over `under`: where a byte was received it is taken, elsewhere
    /// `under`'s, up to the first position that has neither.
    pub fn overlay(&self, under: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len().max(under.len()));
        let mut pos = 0;
        loop {
            // Whole words of the bitmap at a time where they are all received or all not: a
            // replacement hello is laid over up to 64 KiB once per datagram that adds to it.
            if pos % 64 == 0 {
                let word = self.received.get(pos / 64).copied().unwrap_or(0);
                let from = match word {
                    u64::MAX => self.data.get(pos..pos + 64),
                    0 => under.get(pos..pos + 64),
                    _ => None,
                };
                if let Some(bytes) = from {
                    out.extend_from_slice(bytes);
                    pos += 64;
                    continue;
                }
            }
            let byte = if self.has(pos) {
                self.data.get(pos)
            } else {
                under.get(pos)
            };
            match byte {
                Some(&b) => out.push(b),
                None => return out,
            }
            pos += 1;
        }
    }

    /// Bytes of memory the stream holds (its bytes and its bitmap).
    pub fn held(&self) -> usize {
        self.data.capacity() + self.received.capacity() * 8
    }

    /// Bytes dropped because they lay past `MAX_CRYPTO_BYTES`.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn has(&self, pos: usize) -> bool {
        self.received
            .get(pos / 64)
            .is_some_and(|word| word & (1 << (pos % 64)) != 0)
    }
}

/// Packet builders the flow tests share.
#[cfg(test)]
pub(crate) use tests::{crypto_frame, seal_keyed};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::file::CaptureReader;
    use crate::decode::{decode, Transport};
    use crate::extract::tls::{parse_client_hello, Parse};
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::IpAddr;
    use std::path::Path;

    /// The DCID of every RFC 9001 / RFC 9369 Appendix A sample.
    const RFC_DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

    /// RFC 9001 Appendix A.2: the protected client Initial (1200 bytes).
    const RFC9001_CLIENT_INITIAL: &str = "\
        c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11\
        d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399\
        1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c\
        8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212\
        30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5\
        457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208\
        4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec\
        4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3\
        485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db\
        059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c\
        7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8\
        9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556\
        be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74\
        68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a\
        c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00\
        f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632\
        291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964\
        25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd\
        14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff\
        ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198\
        e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd\
        c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73\
        203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f\
        cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e\
        fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade\
        a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047\
        90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2\
        162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4\
        40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0\
        6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e\
        8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0\
        be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400\
        54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab\
        760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9\
        f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4\
        056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064\
        7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241\
        e221af44860018ab0856972e194cd934";
    /// RFC 9001 Appendix A.2 (and RFC 9369 A.2): the CRYPTO frame of the unprotected payload.
    const RFC9001_CRYPTO_FRAME: &str = "\
        060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868\
        04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578\
        616d706c652e636f6dff01000100000a00080006001d00170018001000070005\
        04616c706e000500050100000000003300260024001d00209370b2c9caa47fba\
        baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400\
        0d0010000e0403050306030203080408050806002d00020101001c0002400100\
        3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000\
        75300901100f088394c8f03e51570806048000ffff";
    /// RFC 9001 Appendix A.3: the protected server Initial.
    const RFC9001_SERVER_INITIAL: &str = "\
        cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a\
        5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3\
        dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84\
        022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4\
        2158407dd074ee";
    /// RFC 9369 Appendix A.2: the protected QUIC v2 client Initial (1200 bytes).
    const RFC9369_CLIENT_INITIAL: &str = "\
        d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485\
        dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04\
        9f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d21f57c5d\
        250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a\
        12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500\
        cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd68\
        18f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff33\
        12ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3\
        d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd\
        6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520\
        bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045\
        636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1f\
        ac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c12\
        16ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e5\
        4df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4\
        fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b\
        8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de7\
        14d19d61370f8149748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff9\
        9c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151adfeceb51b91\
        abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd\
        80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db\
        848265e3e5eb72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18\
        d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15\
        c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc\
        7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61\
        f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e70710\
        10d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b\
        3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e\
        06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce\
        8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1\
        34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1\
        e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd\
        5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e3\
        8d209d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89\
        d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53\
        6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb19\
        9a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96b\
        a18b2faa745b6fe189cf772a9f84cbfc";
    /// RFC 9369 Appendix A.3: the protected QUIC v2 server Initial.
    const RFC9369_SERVER_INITIAL: &str = "\
        dc6b3343cf0008f067a5502a4262b5004075d92faaf16f05d8a4398c47089698\
        baeea26b91eb761d9b89237bbf87263017915358230035f7fd3945d88965cf17\
        f9af6e16886c61bfc703106fbaf3cb4cfa52382dd16a393e42757507698075b2\
        c984c707f0a0812d8cd5a6881eaf21ceda98f4bd23f6fe1a3e2c43edd9ce7ca8\
        4bed8521e2e140";
    const CONFORMANCE: &str = "/work/shared/conformance";

    fn unhex(s: &str) -> Vec<u8> {
        let compact: String = s.split_whitespace().collect();
        hex::decode(compact).expect("test vector is hex")
    }

    /// The data of the RFC's CRYPTO frame: type 0x06, offset 0, 2-byte length 0x40f1 (241).
    fn rfc_client_hello() -> Vec<u8> {
        let frame = unhex(RFC9001_CRYPTO_FRAME);
        assert_eq!(&frame[..4], &[0x06, 0x00, 0x40, 0xf1]);
        frame[4..].to_vec()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// Protects an Initial the way a client does (RFC 9001 §5), to build the packets the RFCs
    /// have no sample of. `first` is the unprotected first byte (type bits and packet number
    /// length); the SCID is empty and the token shorter than 64 bytes.
    fn seal(number: u32, first: u8, dcid: &[u8], token: &[u8], pn: u32, payload: &[u8]) -> Vec<u8> {
        seal_keyed(number, first, dcid, dcid, token, pn, payload)
    }

    /// As `seal`, with keys from `key_dcid` rather than the packet's DCID.
    pub(crate) fn seal_keyed(
        number: u32,
        first: u8,
        dcid: &[u8],
        key_dcid: &[u8],
        token: &[u8],
        pn: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let version = Version::of(number).expect("known version");
        let keys = Keys::client(version, key_dcid).expect("keys");
        let pn_len = usize::from(first & PN_LEN_BITS) + 1;
        let mut out = vec![first];
        out.extend(number.to_be_bytes());
        out.push(dcid.len() as u8);
        out.extend(dcid);
        out.push(0);
        out.push(token.len() as u8);
        out.extend(token);
        let length = (pn_len + payload.len() + TAG_LEN) as u16;
        out.extend((0x4000 | length).to_be_bytes());
        let pn_offset = out.len();
        out.extend(&pn.to_be_bytes()[4 - pn_len..]);
        let mut nonce = keys.iv;
        for (n, p) in nonce[IV_LEN - 8..]
            .iter_mut()
            .zip(u64::from(pn).to_be_bytes())
        {
            *n ^= p;
        }
        let mut body = payload.to_vec();
        let tag = Aes128Gcm::new(&keys.key.into())
            .encrypt_in_place_detached(&nonce.into(), &out, &mut body)
            .expect("seal");
        out.extend(body);
        out.extend(tag);
        let sample_at = pn_offset + SAMPLE_OFFSET;
        let mask = header_mask(&keys.hp, &out[sample_at..sample_at + SAMPLE_LEN]).expect("mask");
        out[0] ^= mask[0] & LONG_PROTECTED_BITS;
        for i in 0..pn_len {
            out[pn_offset + i] ^= mask[1 + i];
        }
        out
    }

    /// A CRYPTO frame with a 2-byte length field and a 2-byte offset field (4 bytes for an
    /// offset of 16,384 or more).
    pub(crate) fn crypto_frame(offset: u16, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x06];
        if offset < 0x4000 {
            f.extend((0x4000 | offset).to_be_bytes());
        } else {
            f.extend((0x8000_0000 | u32::from(offset)).to_be_bytes());
        }
        f.extend((0x4000 | data.len() as u16).to_be_bytes());
        f.extend(data);
        f
    }

    #[test]
    fn rfc9001_client_keys() {
        let keys = Keys::client(&V1, &RFC_DCID).expect("keys");
        assert_eq!(keys.key.to_vec(), unhex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(keys.iv.to_vec(), unhex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(keys.hp.to_vec(), unhex("9f50449e04a0e810283a1e9933adedd2"));
    }

    #[test]
    fn rfc9369_client_keys() {
        let keys = Keys::client(&V2, &RFC_DCID).expect("keys");
        assert_eq!(keys.key.to_vec(), unhex("8b1a0bc121284290a29e0971b5cd045d"));
        assert_eq!(keys.iv.to_vec(), unhex("91f73e2351d8fa91660e909f"));
        assert_eq!(keys.hp.to_vec(), unhex("45b95e15235d6f45a6b19cbcb0294ba9"));
    }

    #[test]
    fn rfc9001_header_mask() {
        let keys = Keys::client(&V1, &RFC_DCID).expect("keys");
        let mask = header_mask(&keys.hp, &unhex("d1b1c98dd7689fb8ec11d242b123dc9b")).expect("mask");
        assert_eq!(mask[..5].to_vec(), unhex("437b9aec36"));
    }

    #[test]
    fn rfc9001_client_initial() {
        let packet = unhex(RFC9001_CLIENT_INITIAL);
        assert_eq!(packet.len(), 1200);
        assert!(looks_like_client_initial(&packet));
        let initials = client_initials(&packet).expect("decrypts");
        assert_eq!(initials.len(), 1);
        let initial = &initials[0];
        assert_eq!(initial.version, VERSION_1);
        assert_eq!(initial.dcid, RFC_DCID);
        // One CRYPTO frame, then PADDING to 1162 bytes.
        assert_eq!(initial.crypto, vec![(0, rfc_client_hello())]);
        let hello = &initial.crypto[0].1;
        assert_eq!(hello.len(), 241);
        assert_eq!(hello[0], 0x01, "a ClientHello");
        assert!(contains(hello, b"example.com"));
    }

    #[test]
    fn rfc9369_client_initial() {
        let packet = unhex(RFC9369_CLIENT_INITIAL);
        assert_eq!(packet.len(), 1200);
        assert!(looks_like_client_initial(&packet));
        let initials = client_initials(&packet).expect("decrypts");
        assert_eq!(initials.len(), 1);
        assert_eq!(initials[0].version, VERSION_2);
        assert_eq!(initials[0].dcid, RFC_DCID);
        // The same payload as RFC 9001's, under v2 protection.
        assert_eq!(initials[0].crypto, vec![(0, rfc_client_hello())]);
        assert_eq!(initials[0].crypto[0].1[0], 0x01);
        assert!(contains(&initials[0].crypto[0].1, b"example.com"));
    }

    #[test]
    fn seal_reproduces_rfc9001_sample() {
        // The helper the other tests build packets with, checked against the RFC's bytes.
        let mut payload = unhex(RFC9001_CRYPTO_FRAME);
        payload.resize(1162, 0);
        assert_eq!(
            seal(VERSION_1, 0xc3, &RFC_DCID, &[], 2, &payload),
            unhex(RFC9001_CLIENT_INITIAL)
        );
        assert_eq!(
            seal(VERSION_2, 0xd3, &RFC_DCID, &[], 2, &payload),
            unhex(RFC9369_CLIENT_INITIAL)
        );
    }

    #[test]
    fn server_initials_fail_alone_and_are_skipped_when_coalesced() {
        for (server, client, version) in [
            (RFC9001_SERVER_INITIAL, RFC9001_CLIENT_INITIAL, VERSION_1),
            (RFC9369_SERVER_INITIAL, RFC9369_CLIENT_INITIAL, VERSION_2),
        ] {
            let server = unhex(server);
            assert_eq!(client_initials(&server), Err(QuicError::DecryptFailed));
            // A server Initial first, a client Initial after it: the client's is still read.
            let mut datagram = server.clone();
            datagram.extend(unhex(client));
            let initials = client_initials(&datagram).expect("client packet decrypts");
            assert_eq!(initials.len(), 1);
            assert_eq!(initials[0].version, version);
        }
    }

    #[test]
    fn coalesced_packets_are_walked_by_length() {
        let dcid = [0x11; 8];
        let hello = rfc_client_hello();
        let (part1, part2) = hello.split_at(100);
        // Initial 1: an ACK with two extra ranges, the second half of the hello, PING, PADDING.
        let mut p1 = vec![0x02, 0x05, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00, 0x01];
        p1.extend(crypto_frame(100, part2));
        p1.extend([0x01, 0x00, 0x00, 0x00]);
        // Initial 2 (packet number 1, a token as after a Retry): ACK_ECN, then the first half.
        let mut p2 = vec![0x03, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03];
        p2.extend(crypto_frame(0, part1));
        let mut datagram = seal(VERSION_1, 0xc0, &dcid, &[], 0, &p1);
        // A Handshake packet between them: skipped by its Length, never decrypted.
        datagram.extend([0xe0, 0, 0, 0, 1, 8]);
        datagram.extend(dcid);
        datagram.extend([0, 0x40, 20]);
        datagram.extend([0xaa; 20]);
        datagram.extend(seal(VERSION_1, 0xc1, &dcid, b"retry-token", 1, &p2));
        // Then a short-header packet, which runs to the end of the datagram.
        datagram.extend([0x40, 0x11, 0x11, 0x80, 0x00]);
        let initials = client_initials(&datagram).expect("decrypts");
        assert_eq!(initials.len(), 2);
        assert_eq!(initials[0].crypto, vec![(100, part2.to_vec())]);
        assert_eq!(initials[1].crypto, vec![(0, part1.to_vec())]);
        let mut stream = CryptoStream::new();
        for (offset, data) in initials.iter().flat_map(|i| &i.crypto) {
            stream.add(*offset, data);
        }
        assert_eq!(stream.contiguous(), &hello[..]);
    }

    #[test]
    fn unknown_frame_ends_the_walk() {
        let mut payload = crypto_frame(0, b"first");
        payload.extend([0x1c, 0x00, 0x00, 0x00]); // CONNECTION_CLOSE: not read
        payload.extend(crypto_frame(5, b"second"));
        let initials =
            client_initials(&seal(VERSION_1, 0xc1, &[7; 8], &[], 0, &payload)).expect("decrypts");
        assert_eq!(initials[0].crypto, vec![(0, b"first".to_vec())]);
        // A CRYPTO frame longer than the payload is malformed: what came before it stays.
        let mut payload = crypto_frame(0, b"ok");
        payload.extend([0x06, 0x00, 0x40, 0xff, b'x']);
        let initials =
            client_initials(&seal(VERSION_1, 0xc1, &[7; 8], &[], 0, &payload)).expect("decrypts");
        assert_eq!(initials[0].crypto, vec![(0, b"ok".to_vec())]);
    }

    #[test]
    fn draft29_uses_its_own_salt() {
        let payload = crypto_frame(0, &rfc_client_hello());
        let packet = seal(VERSION_DRAFT29, 0xc3, &RFC_DCID, &[], 0, &payload);
        assert!(looks_like_client_initial(&packet));
        let initials = client_initials(&packet).expect("decrypts");
        assert_eq!(initials[0].version, VERSION_DRAFT29);
        assert_eq!(initials[0].crypto, vec![(0, rfc_client_hello())]);
        // The v1 sample relabelled draft-29 gets draft-29 keys, which do not open it.
        let mut relabelled = unhex(RFC9001_CLIENT_INITIAL);
        relabelled[1..5].copy_from_slice(&VERSION_DRAFT29.to_be_bytes());
        assert_eq!(client_initials(&relabelled), Err(QuicError::DecryptFailed));
    }

    #[test]
    fn keys_follow_each_packets_dcid() {
        // After a Retry the client's Initials carry a new DCID: each packet is opened with its own.
        let payload = crypto_frame(0, b"\x01hello");
        let mut datagram = seal(VERSION_1, 0xc0, &[1; 8], &[], 0, &payload);
        datagram.extend(seal(VERSION_1, 0xc0, &[2; 5], b"token", 1, &payload));
        let initials = client_initials(&datagram).expect("decrypts");
        assert_eq!(initials.len(), 2);
        assert_eq!(initials[0].dcid, vec![1; 8]);
        assert_eq!(initials[1].dcid, vec![2; 5]);
    }

    #[test]
    fn later_initials_are_opened_with_the_flows_keys() {
        // The client's first DCID keys every Initial it sends; once the server has answered,
        // they carry the server's connection ID (RFC 9001 §5.2).
        let original = [0x0a; 8];
        let server_cid = [0x5e; 4];
        let ack = [0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];
        let later = seal_keyed(VERSION_2, 0xd0, &server_cid, &original, &[], 1, &ack);
        assert!(looks_like_client_initial(&later));
        assert_eq!(client_initials(&later), Err(QuicError::DecryptFailed));
        let initials = client_initials_keyed(&later, &original).expect("flow keys open it");
        assert_eq!(initials.len(), 1);
        assert_eq!(initials[0].dcid, original);
        assert!(initials[0].crypto.is_empty());
        // After a Retry the new DCID keys the client's next Initial: its own DCID opens it.
        let after_retry = seal(VERSION_2, 0xd0, &server_cid, b"token", 2, &ack);
        let initials = client_initials_keyed(&after_retry, &original).expect("own keys open it");
        assert_eq!(initials[0].dcid, server_cid);
        // A server Initial fails with either.
        let server = unhex(RFC9369_SERVER_INITIAL);
        assert_eq!(
            client_initials_keyed(&server, &RFC_DCID),
            Err(QuicError::DecryptFailed)
        );
    }

    /// A long-header packet other than an Initial (it has no token field), unprotected: only
    /// its header matters to the tests that use it.
    fn plain_long(first: u8, version: u32, dcid: &[u8], body_len: u16) -> Vec<u8> {
        let mut out = vec![first];
        out.extend(version.to_be_bytes());
        out.push(dcid.len() as u8);
        out.extend(dcid);
        out.extend([4, 1, 2, 3, 4]);
        out.extend((0x4000 | body_len).to_be_bytes());
        out.resize(out.len() + usize::from(body_len), 0x5a);
        out
    }

    #[test]
    fn a_server_handshake_is_told_from_its_first_answers() {
        let client = [7u8; 4];
        let began = |datagram: &[u8]| server_handshake_began(datagram, &client);
        let server_initial = seal(VERSION_1, 0xc0, &client, b"", 0, &[0; 60]);
        let handshake = plain_long(0xe0, VERSION_1, &client, 80);
        // A HelloRetryRequest comes in an Initial alone.
        assert!(!began(&server_initial));
        // A ServerHello: its Initial coalesced with Handshake packets, or a Handshake alone.
        assert!(began(&[server_initial.clone(), handshake.clone()].concat()));
        assert!(began(&handshake));
        // To another connection ID: not this client's handshake.
        assert!(!server_handshake_began(&handshake, &[8u8; 4]));
        // v2's Handshake type bits are v1's Retry bits, and the reverse.
        assert!(began(&plain_long(0xf0, VERSION_2, &client, 80)));
        assert!(!began(&plain_long(0xf0, VERSION_1, &client, 80)));
        // A short header alone proves nothing (anyone can send five bytes); zero padding
        // after the last packet is not a packet.
        assert!(!began(&[0x43, 1, 2, 3, 4]));
        assert!(!began(&[server_initial.clone(), vec![0; 40]].concat()));
        // A Retry, a Version Negotiation, a header cut short, nothing.
        let retry =
            unhex("cf6b3343cf0008f067a5502a4262b5746f6b656ec8646ce8bfe33952d955543665dcc7b6");
        assert!(!began(&retry));
        let mut negotiation = handshake.clone();
        negotiation[1..5].copy_from_slice(&0u32.to_be_bytes());
        assert!(!began(&negotiation));
        assert!(!began(&handshake[..handshake.len() - 1]));
        assert!(!began(&[]));
    }

    #[test]
    fn headers_we_do_not_read() {
        let packet = unhex(RFC9001_CLIENT_INITIAL);
        // Short header, 0-RTT only, Retry only: no Initial, and nothing wrong.
        assert!(client_initials(&[0x40, 1, 2, 3]).expect("short").is_empty());
        assert!(!looks_like_client_initial(&[0x40, 0, 0, 0, 1, 0, 0]));
        let mut zero_rtt = packet.clone();
        zero_rtt[0] = 0xd0;
        assert!(client_initials(&zero_rtt).expect("0-RTT").is_empty());
        assert!(!looks_like_client_initial(&zero_rtt));
        let retry =
            unhex("cf6b3343cf0008f067a5502a4262b5746f6b656ec8646ce8bfe33952d955543665dcc7b6");
        assert!(client_initials(&retry).expect("v2 Retry").is_empty());
        // v2's Initial bits under the v1 version number are 0-RTT, and the reverse.
        let mut v1_as_v2 = packet.clone();
        v1_as_v2[1..5].copy_from_slice(&VERSION_2.to_be_bytes());
        assert!(!looks_like_client_initial(&v1_as_v2));
        assert!(client_initials(&v1_as_v2)
            .expect("v2 Retry bits")
            .is_empty());
        // Unknown versions (and Version Negotiation, version 0).
        for version in [0u32, 0xff00_001c, 0x1a2a_3a4a] {
            let mut other = packet.clone();
            other[1..5].copy_from_slice(&version.to_be_bytes());
            assert!(!looks_like_client_initial(&other));
            assert_eq!(client_initials(&other), Err(QuicError::UnknownVersion));
        }
        // A 21-byte connection ID is not v1 or v2.
        let mut long_cid = vec![0xc0, 0, 0, 0, 1, 21];
        long_cid.extend([0; 40]);
        assert!(!looks_like_client_initial(&long_cid));
        assert_eq!(client_initials(&long_cid), Err(QuicError::CidTooLong));
        long_cid[5] = 0;
        long_cid[6] = 21;
        assert_eq!(client_initials(&long_cid), Err(QuicError::CidTooLong));
        assert_eq!(client_initials(&[]), Err(QuicError::Truncated));
    }

    #[test]
    fn every_truncation_is_handled() {
        for sample in [RFC9001_CLIENT_INITIAL, RFC9369_CLIENT_INITIAL] {
            let packet = unhex(sample);
            for n in 0..packet.len() {
                assert_eq!(
                    client_initials(&packet[..n]),
                    Err(QuicError::Truncated),
                    "prefix {n}"
                );
                let _ = looks_like_client_initial(&packet[..n]);
            }
        }
    }

    #[test]
    fn every_corrupted_byte_is_handled() {
        let packet = unhex(RFC9001_CLIENT_INITIAL);
        for at in 0..packet.len() {
            let mut bad = packet.clone();
            bad[at] ^= 0x5a;
            // The AEAD covers the whole packet: no corruption may yield a different hello.
            if let Ok(initials) = client_initials(&bad) {
                for initial in &initials {
                    assert_eq!(initial.crypto, vec![(0, rfc_client_hello())], "byte {at}");
                }
            }
        }
    }

    #[test]
    fn crypto_stream_reassembles_out_of_order_with_overlap_and_gaps() {
        let hello: Vec<u8> = (0..=255u8).cycle().take(2000).collect();
        let mut s = CryptoStream::new();
        s.add(1500, &hello[1500..]);
        assert_eq!(s.contiguous(), b"");
        s.add(100, &hello[100..700]);
        s.add(0, &hello[..50]);
        assert_eq!(s.contiguous(), &hello[..50]);
        s.add(600, &hello[600..1600]); // overlaps both neighbours
        s.add(0, &hello[..50]); // duplicate
        assert_eq!(s.contiguous(), &hello[..50], "gap at 50..100");
        s.add(50, &hello[50..100]);
        assert_eq!(s.contiguous(), &hello[..]);
        assert_eq!(s.dropped(), 0);
        // The first copy of a byte wins: what was read is never rewritten.
        s.add(10, b"XXXX");
        assert_eq!(s.contiguous(), &hello[..]);
    }

    #[test]
    fn crypto_stream_is_bounded() {
        let mut s = CryptoStream::new();
        s.add(0, &[1; 100]);
        // Far past the received prefix: dropped.
        s.add(MAX_CRYPTO_BYTES as u64 - 10, &[2; 30]);
        assert_eq!(s.dropped(), 30);
        s.add(u64::MAX - 3, &[3; 10]);
        s.add(1 << 40, &[4; 5]);
        assert_eq!(s.dropped(), 45);
        // Up to `MAX_CRYPTO_AHEAD` past it: kept.
        s.add((100 + MAX_CRYPTO_AHEAD - 10) as u64, &[2; 30]);
        assert_eq!(s.dropped(), 45 + 20);
        assert_eq!(s.contiguous().len(), 100);
        // From the prefix on, up to the cap.
        s.add(100, &vec![5; MAX_CRYPTO_BYTES]);
        assert_eq!(s.contiguous().len(), MAX_CRYPTO_BYTES);
        assert_eq!(s.dropped(), 45 + 20 + 100);
        let kept_ahead = 100 + MAX_CRYPTO_AHEAD - 10;
        assert_eq!(&s.contiguous()[kept_ahead..kept_ahead + 10], &[2; 10]);
    }

    /// Source address and port, destination address and port.
    type Ends = (IpAddr, u16, IpAddr, u16);

    /// The UDP datagrams of a capture with their addresses: `None` when the file is absent.
    fn udp_datagrams(path: &Path) -> Option<Vec<(Ends, Vec<u8>)>> {
        if !path.exists() {
            return None;
        }
        let mut out = Vec::new();
        // A capture the reader cannot read (the quic-go interop traces are PPP) is skipped.
        let Ok(mut reader) = CaptureReader::open(path) else {
            eprintln!("skipped: {} cannot be opened", path.display());
            return None;
        };
        loop {
            let step = reader.next_packet(|raw| {
                if let Ok(p) = decode(raw.link, raw.data) {
                    if let Transport::Udp(u) = p.transport {
                        out.push(((p.src, u.src_port, p.dst, u.dst_port), u.payload.to_vec()));
                    }
                }
            });
            match step {
                Ok(crate::capture::file::Step::Packet | crate::capture::file::Step::Idle) => {}
                Ok(crate::capture::file::Step::End) => break,
                Err(e) => {
                    eprintln!("skipped: {e}");
                    return None;
                }
            }
        }
        Some(out)
    }

    /// The server name of the ClientHello at the start of a CRYPTO stream, read by the TLS
    /// parser once a record header is put in front of it.
    fn server_name(stream: &[u8]) -> Option<Vec<u8>> {
        let hello = stream.get(
            ..4 + (usize::from(stream[1]) << 16
                | usize::from(stream[2]) << 8
                | usize::from(stream[3])),
        )?;
        let mut record = vec![0x16, 0x03, 0x01];
        record.extend((hello.len() as u16).to_be_bytes());
        record.extend(hello);
        match parse_client_hello(&record) {
            Parse::Hello(h) => h.server_name.map(|n| n.into_owned()),
            other => panic!("{other:?}"),
        }
    }

    /// Feeds a capture's client datagrams to port 443 into one CRYPTO stream.
    fn reassemble_port_443(file: &str) -> Option<CryptoStream> {
        let datagrams = udp_datagrams(&Path::new(CONFORMANCE).join("pcaps").join(file))?;
        let mut stream = CryptoStream::new();
        let mut key_dcid: Option<Vec<u8>> = None;
        let mut initials = 0;
        for (_, payload) in datagrams.iter().filter(|((.., port), _)| *port == 443) {
            if !looks_like_client_initial(payload) {
                continue;
            }
            let opened = match &key_dcid {
                Some(key) => client_initials_keyed(payload, key),
                None => client_initials(payload),
            };
            for initial in opened.expect("every client Initial decrypts") {
                initials += 1;
                for (offset, data) in &initial.crypto {
                    stream.add(*offset, data);
                }
                key_dcid = Some(initial.dcid);
            }
        }
        assert!(initials > 0, "{file}: no client Initial");
        Some(stream)
    }

    fn assert_capture_sni(file: &str, sni: &str) {
        let Some(stream) = reassemble_port_443(file) else {
            eprintln!("skipped: {file} is not here");
            return;
        };
        let hello = stream.contiguous();
        assert_eq!(hello.first(), Some(&0x01), "{file}: a ClientHello");
        assert!(
            contains(hello, sni.as_bytes()),
            "{file}: {sni} not in the stream"
        );
        assert_eq!(server_name(hello).as_deref(), Some(sni.as_bytes()));
        assert_eq!(stream.dropped(), 0);
    }

    #[test]
    fn capture_crypto_frames_out_of_order() {
        assert_capture_sni(
            "suricata__quic-frag-unordered__input.pcap",
            "mastodon.social",
        );
    }

    #[test]
    fn capture_quic_v2() {
        assert_capture_sni("zeek__quic__quicv2-echo-443.pcap", "localhost");
    }

    #[test]
    fn capture_crypto_frames_with_a_gap_in_the_middle() {
        assert_capture_sni(
            "suricata__quic-frag-middle-gap__input.pcap",
            "optimizationguide-pa.googleapis.com",
        );
    }

    /// Every QUIC capture of the conformance corpus: per flow, the server names read from
    /// the reassembled CRYPTO stream equal the peer's `quic_sni`.
    #[test]
    fn conformance_quic_sni() {
        let Ok(expected) = std::fs::read_to_string(Path::new(CONFORMANCE).join("expected.jsonl"))
        else {
            eprintln!("skipped: no conformance corpus");
            return;
        };
        let mut checked = 0;
        for line in expected.lines() {
            let entry: serde_json::Value = serde_json::from_str(line).expect("json line");
            let pcap = entry["pcap"].as_str().expect("pcap");
            if !pcap.contains("quic") {
                continue;
            }
            let want: BTreeSet<String> = entry["quic_sni"]
                .as_array()
                .expect("quic_sni")
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let Some(datagrams) = udp_datagrams(&Path::new(CONFORMANCE).join(pcap)) else {
                continue;
            };
            let mut flows: BTreeMap<_, (CryptoStream, Option<Vec<u8>>)> = BTreeMap::new();
            for (flow, payload) in &datagrams {
                let (stream, key_dcid) = flows.entry(*flow).or_default();
                let opened = match key_dcid {
                    Some(key) => client_initials_keyed(payload, key),
                    None => client_initials(payload),
                };
                // Server datagrams fail to decrypt with client keys: errors are expected here.
                for initial in opened.unwrap_or_default() {
                    for (offset, data) in &initial.crypto {
                        stream.add(*offset, data);
                    }
                    *key_dcid = Some(initial.dcid);
                }
            }
            let got: BTreeSet<String> = flows
                .values()
                .map(|(s, _)| s)
                .filter(|s| s.contiguous().first() == Some(&0x01))
                .filter_map(|s| server_name(s.contiguous()))
                .map(|n| String::from_utf8_lossy(&n).into_owned())
                .collect();
            assert_eq!(got, want, "{pcap}");
            checked += 1;
        }
        eprintln!("{checked} QUIC captures checked");
    }

    const NEAR_CAP: u64 = MAX_CRYPTO_BYTES as u64;
    const AHEAD: u64 = MAX_CRYPTO_AHEAD as u64;

    /// A naive reference for `CryptoStream`: one slot per byte under the cap (or, for a frame
    /// that starts past the received prefix, under `MAX_CRYPTO_AHEAD` past it), first write wins.
    fn naive_contiguous(frames: &[(u64, Vec<u8>)]) -> (Vec<u8>, u64) {
        let mut slots = vec![None; MAX_CRYPTO_BYTES];
        let mut dropped = 0;
        for (offset, data) in frames {
            let prefix = slots.iter().take_while(|s| s.is_some()).count();
            let limit = if *offset <= prefix as u64 {
                MAX_CRYPTO_BYTES
            } else {
                MAX_CRYPTO_BYTES.min(prefix + MAX_CRYPTO_AHEAD)
            };
            for (i, &b) in data.iter().enumerate() {
                match usize::try_from(offset + i as u64)
                    .ok()
                    .filter(|&p| p < limit)
                    .and_then(|p| slots.get_mut(p))
                {
                    Some(slot) => {
                        slot.get_or_insert(b);
                    }
                    None => dropped += 1,
                }
            }
        }
        (slots.iter().map_while(|s| *s).collect(), dropped)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = looks_like_client_initial(&data);
            let _ = client_initials(&data);
        }

        #[test]
        fn random_bytes_after_an_initial_header_never_panic(
            version in prop_oneof![Just(VERSION_1), Just(VERSION_2), Just(VERSION_DRAFT29)],
            first in any::<u8>(),
            dcid_len in 0u8..=20,
            rest in proptest::collection::vec(any::<u8>(), 0..1400),
        ) {
            let mut data = vec![first | LONG_HEADER];
            data.extend(version.to_be_bytes());
            data.push(dcid_len);
            data.extend(rest);
            let _ = looks_like_client_initial(&data);
            let _ = client_initials(&data);
        }

        #[test]
        fn random_payloads_decrypt_and_never_panic(
            payload in proptest::collection::vec(any::<u8>(), 4..1200),
            dcid in proptest::collection::vec(any::<u8>(), 0..=20),
        ) {
            let initials = client_initials(&seal(VERSION_1, 0xc1, &dcid, &[], 0, &payload));
            prop_assert_eq!(initials.map(|i| i.len()), Ok(1));
        }

        #[test]
        fn overlay_is_the_stream_laid_byte_by_byte_over_what_is_under(
            frames in proptest::collection::vec(
                (0u64..600, proptest::collection::vec(any::<u8>(), 0..200)),
                0..12,
            ),
            under in proptest::collection::vec(any::<u8>(), 0..900),
        ) {
            let mut stream = CryptoStream::new();
            for (offset, data) in &frames {
                stream.add(*offset, data);
            }
            let naive: Vec<u8> = (0..)
                .map_while(|pos| {
                    if stream.has(pos) {
                        stream.data.get(pos).copied()
                    } else {
                        under.get(pos).copied()
                    }
                })
                .collect();
            prop_assert_eq!(stream.overlay(&under), naive);
        }

        #[test]
        fn crypto_stream_matches_naive_reference(
            frames in proptest::collection::vec(
                (
                    prop_oneof![
                        0u64..3000,
                        AHEAD - 200..AHEAD + 3000,
                        NEAR_CAP - 200..NEAR_CAP + 200
                    ],
                    proptest::collection::vec(any::<u8>(), 0..600),
                ),
                0..24,
            ),
        ) {
            let mut stream = CryptoStream::new();
            for (offset, data) in &frames {
                stream.add(*offset, data);
            }
            let (contiguous, dropped) = naive_contiguous(&frames);
            prop_assert_eq!(stream.contiguous(), &contiguous[..]);
            prop_assert_eq!(stream.dropped(), dropped);
        }
    }
}
