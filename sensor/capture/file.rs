//! Streaming reader for pcap (micro- and nanosecond, either byte order) and pcapng
//! (any number of sections and interfaces, each with its own link type and clock).
//!
//! Memory is one read buffer, whatever the size of the file. A record that cannot be read
//! ends the file with a `CaptureError` naming the record number and byte offset; everything
//! before it has already been handed out.

use super::RawPacket;
use crate::decode::LinkType;
use crate::time::Timestamp;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};
use std::io::Read;

/// Initial read buffer; grows (up to `MAX_BUFFER`) for pcapng blocks larger than it.
const INITIAL_BUFFER: usize = 1 << 20;
/// No sane record is larger: 256 KiB snap length plus pcapng options, with room to spare.
const MAX_BUFFER: usize = 16 << 20;

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

pub fn is_capture_magic(magic: [u8; 4]) -> bool {
    magic == PCAPNG_MAGIC || PCAP_MAGICS.contains(&magic)
}

/// Why a capture stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureErrorKind {
    #[error("not a pcap or pcapng file (unknown magic number); convert it with `editcap -F pcap`")]
    NotACapture,
    #[error("empty file")]
    Empty,
    #[error("truncated: the file ends in the middle of a record")]
    Truncated,
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("read error: {0}")]
    Io(String),
    #[error("unsupported link type {0}; vendorwatch reads Ethernet, Linux cooked v1/v2, raw IP, BSD null/loop, NFLOG and Cisco HDLC")]
    UnsupportedLinkType(i32),
}

/// Where a capture broke: `record` is the 1-based number of the record that could not be
/// read, `offset` the byte offset where it starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: record {record} at byte offset {offset}: {kind}")]
pub struct CaptureError {
    pub file: String,
    pub record: u64,
    pub offset: u64,
    pub kind: CaptureErrorKind,
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link: Option<LinkType>,
    code: i32,
    /// Clock units per second.
    resolution: u64,
    offset_secs: i64,
}

/// A pcap or pcapng stream.
pub struct CaptureReader {
    name: String,
    inner: Box<dyn PcapReaderIterator + Send>,
    /// Legacy pcap: the file's one interface, known after its header.
    interfaces: Vec<Interface>,
    legacy: bool,
    buffer_size: usize,
    records: u64,
    /// Packets on pcapng interfaces whose link type we cannot read.
    pub unsupported: Unsupported,
}

/// What `next_packet` found.
pub enum Next<'a> {
    Packet(RawPacket<'a>),
    /// A record with no packet in it (pcapng statistics, name resolution, …).
    Skip,
    End,
}

impl CaptureReader {
    /// Opens a stream; `name` is used in error messages.
    pub fn new(name: String, source: Box<dyn Read + Send>) -> Result<CaptureReader, CaptureError> {
        let err = |kind| CaptureError {
            file: name.clone(),
            record: 1,
            offset: 0,
            kind,
        };
        let inner = match pcap_parser::create_reader(INITIAL_BUFFER, source) {
            Ok(r) => r,
            Err(PcapError::Eof) => return Err(err(CaptureErrorKind::Empty)),
            Err(PcapError::HeaderNotRecognized) => return Err(err(CaptureErrorKind::NotACapture)),
            Err(PcapError::Incomplete(_)) | Err(PcapError::UnexpectedEof) => {
                return Err(err(CaptureErrorKind::Truncated))
            }
            Err(PcapError::ReadError) => {
                return Err(err(CaptureErrorKind::Io("could not read".to_string())))
            }
            Err(e) => return Err(err(CaptureErrorKind::Corrupt(format!("{e:?}")))),
        };
        Ok(CaptureReader {
            name,
            inner,
            interfaces: Vec::new(),
            legacy: false,
            buffer_size: INITIAL_BUFFER,
            records: 0,
            unsupported: Unsupported::default(),
        })
    }

    pub fn open(path: &std::path::Path) -> Result<CaptureReader, CaptureError> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| CaptureError {
            file: name.clone(),
            record: 0,
            offset: 0,
            kind: CaptureErrorKind::Io(e.to_string()),
        })?;
        CaptureReader::new(name, Box::new(file))
    }

    /// Number of records read so far (headers included).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes of the file consumed so far.
    pub fn offset(&self) -> u64 {
        self.inner.consumed() as u64
    }

    /// Hands the next packet to `on_packet`. Returns `Ok(false)` at the end of the stream.
    pub fn next_packet<F: FnOnce(RawPacket<'_>)>(
        &mut self,
        on_packet: F,
    ) -> Result<bool, CaptureError> {
        let mut on_packet = Some(on_packet);
        loop {
            let record_offset = self.inner.consumed() as u64;
            // Everything that borrows the reader's buffer happens inside this match; what
            // comes out is owned, so the buffer can then be consumed or refilled.
            let outcome = match self.inner.next() {
                Ok((size, block)) => {
                    let delivered = match block {
                        PcapBlockOwned::LegacyHeader(hdr) => {
                            self.legacy = true;
                            let code = hdr.network.0;
                            let link = u32::try_from(code).ok().and_then(LinkType::from_code);
                            if link.is_none() {
                                return Err(error_at(
                                    &self.name,
                                    self.records,
                                    record_offset,
                                    CaptureErrorKind::UnsupportedLinkType(code),
                                ));
                            }
                            let resolution = if hdr.is_nanosecond_precision() {
                                1_000_000_000
                            } else {
                                1_000_000
                            };
                            self.interfaces = vec![Interface {
                                link,
                                code,
                                resolution,
                                offset_secs: i64::from(hdr.thiszone),
                            }];
                            false
                        }
                        PcapBlockOwned::Legacy(rec) => match self.interfaces.first() {
                            Some(&Interface {
                                link: Some(link),
                                resolution,
                                offset_secs,
                                ..
                            }) => {
                                let ts = Timestamp::from_parts(
                                    i64::from(rec.ts_sec) + offset_secs,
                                    fraction_to_nanos(u64::from(rec.ts_usec), resolution),
                                );
                                let caplen = (rec.caplen as usize).min(rec.data.len());
                                if let Some(f) = on_packet.take() {
                                    f(RawPacket {
                                        ts,
                                        link,
                                        data: &rec.data[..caplen],
                                        wire_len: rec.origlen,
                                    });
                                }
                                true
                            }
                            _ => false,
                        },
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                            // A new section starts its own interface numbering.
                            self.interfaces.clear();
                            false
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            let code = idb.linktype.0;
                            let link = u32::try_from(code).ok().and_then(LinkType::from_code);
                            self.interfaces.push(Interface {
                                link,
                                code,
                                resolution: idb.ts_resolution().unwrap_or(1_000_000),
                                offset_secs: idb.ts_offset(),
                            });
                            false
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            match self.interfaces.get(epb.if_id as usize).copied() {
                                Some(iface) => {
                                    let raw =
                                        (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                    let res = iface.resolution.max(1);
                                    let secs = i64::try_from(raw / res)
                                        .unwrap_or(i64::MAX)
                                        .saturating_add(iface.offset_secs);
                                    let ts = Timestamp::from_parts(
                                        secs,
                                        fraction_to_nanos(raw % res, res),
                                    );
                                    let caplen = (epb.caplen as usize).min(epb.data.len());
                                    deliver_ng(
                                        &mut self.unsupported,
                                        iface,
                                        ts,
                                        &epb.data[..caplen],
                                        epb.origlen,
                                        &mut on_packet,
                                    )
                                }
                                None => {
                                    return Err(error_at(
                                        &self.name,
                                        self.records,
                                        record_offset,
                                        CaptureErrorKind::Corrupt(format!(
                                        "packet on interface {} that no interface block described",
                                        epb.if_id
                                    )),
                                    ))
                                }
                            }
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            // Simple packets carry no timestamp and belong to interface 0.
                            match self.interfaces.first().copied() {
                                Some(iface) => {
                                    let caplen = (spb.origlen as usize).min(spb.data.len());
                                    deliver_ng(
                                        &mut self.unsupported,
                                        iface,
                                        Timestamp::default(),
                                        &spb.data[..caplen],
                                        spb.origlen,
                                        &mut on_packet,
                                    )
                                }
                                None => false,
                            }
                        }
                        PcapBlockOwned::NG(_) => false,
                    };
                    Outcome::Consumed(size, delivered)
                }
                Err(PcapError::Eof) => Outcome::End,
                Err(PcapError::Incomplete(_)) => Outcome::Refill,
                Err(PcapError::BufferTooSmall) => Outcome::Grow,
                Err(PcapError::UnexpectedEof) => Outcome::Fail(CaptureErrorKind::Truncated),
                Err(PcapError::ReadError) => Outcome::Fail(CaptureErrorKind::Io(
                    "could not read from the source".into(),
                )),
                Err(e) => Outcome::Fail(CaptureErrorKind::Corrupt(describe(&e))),
            };
            match outcome {
                Outcome::Consumed(size, delivered) => {
                    self.records += 1;
                    self.inner.consume(size);
                    if delivered {
                        return Ok(true);
                    }
                }
                Outcome::End => return Ok(false),
                Outcome::Refill => {
                    if self.inner.refill().is_err() {
                        return Err(self.error(
                            record_offset,
                            CaptureErrorKind::Io("could not read from the source".into()),
                        ));
                    }
                }
                Outcome::Grow => {
                    let wanted = self.buffer_size * 2;
                    if wanted > MAX_BUFFER || !self.inner.grow(wanted) {
                        return Err(self.error(
                            record_offset,
                            CaptureErrorKind::Corrupt(format!(
                                "record larger than {} MiB (a corrupt length field)",
                                MAX_BUFFER >> 20
                            )),
                        ));
                    }
                    self.buffer_size = wanted;
                    if self.inner.refill().is_err() {
                        return Err(self.error(
                            record_offset,
                            CaptureErrorKind::Io("could not read from the source".into()),
                        ));
                    }
                }
                Outcome::Fail(kind) => return Err(self.error(record_offset, kind)),
            }
        }
    }

    fn error(&self, offset: u64, kind: CaptureErrorKind) -> CaptureError {
        error_at(&self.name, self.records, offset, kind)
    }
}

fn error_at(name: &str, records: u64, offset: u64, kind: CaptureErrorKind) -> CaptureError {
    CaptureError {
        file: name.to_string(),
        record: records + 1,
        offset,
        kind,
    }
}

/// Packets seen on interfaces whose link type we cannot read.
#[derive(Debug, Default)]
pub struct Unsupported {
    pub packets: u64,
    pub codes: Vec<i32>,
}

fn deliver_ng<F: FnOnce(RawPacket<'_>)>(
    unsupported: &mut Unsupported,
    iface: Interface,
    ts: Timestamp,
    data: &[u8],
    wire_len: u32,
    on_packet: &mut Option<F>,
) -> bool {
    match iface.link {
        Some(link) => {
            if let Some(f) = on_packet.take() {
                f(RawPacket {
                    ts,
                    link,
                    data,
                    wire_len,
                });
            }
            true
        }
        None => {
            unsupported.packets += 1;
            if !unsupported.codes.contains(&iface.code) {
                unsupported.codes.push(iface.code);
            }
            false
        }
    }
}

enum Outcome {
    Consumed(usize, bool),
    End,
    Refill,
    Grow,
    Fail(CaptureErrorKind),
}

fn describe(e: &PcapError<&[u8]>) -> String {
    match e {
        PcapError::NomError(_, kind) => format!("unparsable record ({kind:?})"),
        PcapError::OwnedNomError(_, kind) => format!("unparsable record ({kind:?})"),
        PcapError::HeaderNotRecognized => "unrecognised block".to_string(),
        other => format!("{other:?}"),
    }
}

/// Converts a fraction of a second in `resolution` units per second to nanoseconds.
fn fraction_to_nanos(fraction: u64, resolution: u64) -> u32 {
    let nanos = u128::from(fraction) * 1_000_000_000 / u128::from(resolution.max(1));
    u32::try_from(nanos.min(999_999_999)).unwrap_or(999_999_999)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy_pcap(magic: [u8; 4], big_endian: bool, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let w16 = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let w32 = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut f = magic.to_vec();
        f.extend_from_slice(&w16(2));
        f.extend_from_slice(&w16(4));
        f.extend_from_slice(&w32(0));
        f.extend_from_slice(&w32(0));
        f.extend_from_slice(&w32(65535));
        f.extend_from_slice(&w32(1));
        for (sec, frac, data) in records {
            f.extend_from_slice(&w32(*sec));
            f.extend_from_slice(&w32(*frac));
            f.extend_from_slice(&w32(data.len() as u32));
            f.extend_from_slice(&w32(data.len() as u32));
            f.extend_from_slice(data);
        }
        f
    }

    fn read_all(bytes: Vec<u8>) -> (Vec<(Timestamp, usize)>, Option<CaptureError>) {
        let mut r = match CaptureReader::new("t.pcap".into(), Box::new(std::io::Cursor::new(bytes)))
        {
            Ok(r) => r,
            Err(e) => return (vec![], Some(e)),
        };
        let mut got = vec![];
        loop {
            match r.next_packet(|p| got.push((p.ts, p.data.len()))) {
                Ok(true) => {}
                Ok(false) => return (got, None),
                Err(e) => return (got, Some(e)),
            }
        }
    }

    #[test]
    fn micro_and_nano_in_both_byte_orders() {
        let frame = [0u8; 60];
        for (magic, be, frac, nanos) in [
            ([0xd4, 0xc3, 0xb2, 0xa1], false, 5u32, 5_000u32),
            ([0xa1, 0xb2, 0xc3, 0xd4], true, 5, 5_000),
            ([0x4d, 0x3c, 0xb2, 0xa1], false, 5, 5),
            ([0xa1, 0xb2, 0x3c, 0x4d], true, 5, 5),
        ] {
            let (got, err) = read_all(legacy_pcap(
                magic,
                be,
                &[(100, frac, &frame), (101, 0, &frame)],
            ));
            assert!(err.is_none(), "{err:?}");
            assert_eq!(
                got,
                vec![
                    (Timestamp::from_parts(100, nanos), 60),
                    (Timestamp::from_parts(101, 0), 60)
                ]
            );
        }
    }

    #[test]
    fn truncation_names_record_and_offset_after_delivering_the_rest() {
        let frame = [0u8; 60];
        let mut bytes = legacy_pcap(
            [0xd4, 0xc3, 0xb2, 0xa1],
            false,
            &[(1, 0, &frame), (2, 0, &frame)],
        );
        bytes.truncate(bytes.len() - 10);
        let (got, err) = read_all(bytes);
        assert_eq!(got.len(), 1);
        let err = err.expect("truncation is reported");
        assert_eq!(err.kind, CaptureErrorKind::Truncated);
        // Header (record 1) and first packet (record 2) were read; record 3 broke at 24+16+60.
        assert_eq!((err.record, err.offset), (3, 100));
    }

    #[test]
    fn garbage_is_not_a_capture() {
        let (_, err) = read_all(b"hello world, not a capture at all".to_vec());
        assert_eq!(err.map(|e| e.kind), Some(CaptureErrorKind::NotACapture));
        let (_, err) = read_all(vec![]);
        assert_eq!(err.map(|e| e.kind), Some(CaptureErrorKind::Empty));
    }

    #[test]
    fn unsupported_link_type_is_named() {
        let mut bytes = legacy_pcap([0xd4, 0xc3, 0xb2, 0xa1], false, &[]);
        bytes[20] = 147;
        let (_, err) = read_all(bytes);
        assert_eq!(
            err.map(|e| e.kind),
            Some(CaptureErrorKind::UnsupportedLinkType(147))
        );
    }
}
