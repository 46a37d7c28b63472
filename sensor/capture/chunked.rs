//! Classic pcap files read in large shared chunks, for replay without a copy per packet.
//!
//! The general reader (`file`) hands out each record borrowed from its own buffer, so the
//! pipeline had to copy every frame into a batch before the buffer moved on. This reader
//! reads a classic pcap file 1 MiB at a time into reference-counted chunks and hands out
//! records as (chunk, offset, length): a batch keeps the chunk alive until its worker is done
//! with it, and the chunk is then reused for a later read. Nothing here is `unsafe`.
//!
//! It reads only the ordinary case: a regular file, classic pcap (micro- or nanosecond, either
//! byte order) of a link type vendorwatch decodes, records no larger than `MAX_RECORD`. For
//! anything else it says `Irregular` and the caller goes on with `file::CaptureReader`, which
//! knows pcapng and reports every kind of damage with its record number and byte offset.

use crate::decode::LinkType;
use crate::time::Timestamp;
use std::io::Read;
use std::sync::Arc;

/// Bytes read at a time, and the size of a chunk: small enough that what one read brings in
/// is still in the core's L2 cache when the records in it are framed and decoded (with 1 MiB
/// chunks every frame header was a cache miss).
pub const CHUNK: usize = 1 << 18;
/// The largest capture length libpcap writes or reads for any link type vendorwatch decodes.
pub const MAX_CAPLEN: usize = 262_144;
/// Largest record read here (the largest capture length plus its header); a larger one, or a
/// corrupt length, is left to the general reader.
pub const MAX_RECORD: usize = 16 + MAX_CAPLEN;
/// Chunks kept for reuse once every batch that referenced them is done.
const POOL: usize = 16;

/// A chunk of the file: bytes that batches share.
pub type Chunk = Arc<Vec<u8>>;

/// One record, as a range of a chunk.
pub struct Record<'a> {
    pub ts: Timestamp,
    pub wire_len: u32,
    pub chunk: &'a Chunk,
    pub start: usize,
    pub len: usize,
}

/// What `next_record` found.
pub enum Next<'a> {
    Packet(Record<'a>),
    End,
    /// Something this reader leaves to the general one (a truncated or oversized record, a
    /// read error): `packets` records were handed out before it.
    Irregular,
}

/// What `frame` found at the read position.
enum Framed {
    Record {
        ts: Timestamp,
        wire_len: u32,
        start: usize,
        len: usize,
    },
    NeedMore,
    Irregular,
}

pub struct ChunkedReader {
    file: std::fs::File,
    big_endian: bool,
    /// Nanoseconds per unit of a record's fraction of a second: 1,000 (microsecond pcap) or
    /// 1 (nanosecond pcap), the only resolutions classic pcap has.
    nanos_per_tick: u64,
    offset_secs: i64,
    pub link: LinkType,
    /// The chunk being read, and where its unread bytes are.
    chunk: Chunk,
    pos: usize,
    end: usize,
    /// File offset of `chunk[0]`.
    chunk_offset: u64,
    eof: bool,
    /// Records handed out.
    pub packets: u64,
    pool: Vec<Chunk>,
}

impl ChunkedReader {
    /// Opens `path` if it is a classic pcap file this reader takes; `None` otherwise (the
    /// general reader then opens it and says what it is).
    pub fn open(path: &std::path::Path) -> Option<ChunkedReader> {
        // Only regular files: opening a FIFO would wait for a writer (the general reader opens
        // those without blocking).
        if !std::fs::metadata(path).ok()?.is_file() {
            return None;
        }
        let mut file = std::fs::File::open(path).ok()?;
        if !file.metadata().ok()?.is_file() {
            return None;
        }
        let mut header = [0u8; 24];
        file.read_exact(&mut header).ok()?;
        let (big_endian, nanos_per_tick) = match header[..4] {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, 1_000),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, 1_000),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, 1),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, 1),
            _ => return None,
        };
        let word = |at: usize| {
            let b = [header[at], header[at + 1], header[at + 2], header[at + 3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let link = LinkType::from_code(word(20))?;
        let offset_secs = i64::from(word(8) as i32);
        Some(ChunkedReader {
            file,
            big_endian,
            nanos_per_tick,
            offset_secs,
            link,
            chunk: Arc::new(Vec::new()),
            pos: 0,
            end: 0,
            chunk_offset: 24,
            eof: false,
            packets: 0,
            pool: Vec::new(),
        })
    }

    /// Bytes of the file consumed so far.
    pub fn offset(&self) -> u64 {
        self.chunk_offset + self.pos as u64
    }

    /// The next record.
    pub fn next_record(&mut self) -> Next<'_> {
        loop {
            match self.frame() {
                Framed::Record {
                    ts,
                    wire_len,
                    start,
                    len,
                } => {
                    return Next::Packet(Record {
                        ts,
                        wire_len,
                        chunk: &self.chunk,
                        start,
                        len,
                    })
                }
                Framed::Irregular => return Next::Irregular,
                Framed::NeedMore if self.eof => {
                    return if self.pos == self.end {
                        Next::End
                    } else {
                        Next::Irregular
                    };
                }
                Framed::NeedMore => {
                    if self.refill().is_err() {
                        return Next::Irregular;
                    }
                }
            }
        }
    }

    /// Frames the record at `pos`, if the chunk holds all of it.
    fn frame(&mut self) -> Framed {
        let avail = self.end - self.pos;
        let Some(h) = self.chunk.get(self.pos..self.pos + 16) else {
            return Framed::NeedMore;
        };
        let word = |at: usize| {
            let b = [h[at], h[at + 1], h[at + 2], h[at + 3]];
            if self.big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (secs, frac, caplen, wire_len) = (word(0), word(4), word(8) as usize, word(12));
        if avail < 16 {
            return Framed::NeedMore;
        }
        if 16 + caplen > MAX_RECORD {
            return Framed::Irregular;
        }
        if avail < 16 + caplen {
            return Framed::NeedMore;
        }
        // A multiplication, not a division per record (a u32 times 1,000 fits a u64).
        let nanos = u64::from(frac) * self.nanos_per_tick;
        let ts = Timestamp::from_parts(
            i64::from(secs) + self.offset_secs,
            u32::try_from(nanos.min(999_999_999)).unwrap_or(999_999_999),
        );
        let start = self.pos + 16;
        self.pos = start + caplen;
        self.packets += 1;
        Framed::Record {
            ts,
            wire_len,
            start,
            len: caplen,
        }
    }

    /// Moves on to a fresh chunk: the unread tail of the current one first, then as much of
    /// the file as fits.
    fn refill(&mut self) -> std::io::Result<()> {
        let mut fresh = self.spare();
        let buf = Arc::get_mut(&mut fresh).ok_or_else(|| std::io::Error::other("chunk shared"))?;
        // The unread tail is less than one record (`frame` took every whole one).
        let tail = self.end - self.pos;
        let size = CHUNK.max(tail + MAX_RECORD);
        if buf.len() < size {
            buf.resize(size, 0);
        }
        buf[..tail].copy_from_slice(&self.chunk[self.pos..self.end]);
        let mut filled = tail;
        while filled < buf.len() {
            match self.file.read(&mut buf[filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.chunk_offset += self.pos as u64;
        let old = std::mem::replace(&mut self.chunk, fresh);
        if self.pool.len() < POOL {
            self.pool.push(old);
        }
        self.pos = 0;
        self.end = filled;
        Ok(())
    }

    /// A chunk no batch holds any more, or a new one.
    fn spare(&mut self) -> Chunk {
        match self.pool.iter().position(|c| Arc::strong_count(c) == 1) {
            Some(i) => self.pool.swap_remove(i),
            None => Arc::new(Vec::with_capacity(CHUNK + MAX_RECORD)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(records: &[(u32, &[u8])]) -> Vec<u8> {
        let mut v = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65535u32.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        for (i, (usec, data)) in records.iter().enumerate() {
            v.extend_from_slice(&(i as u32).to_le_bytes());
            v.extend_from_slice(&usec.to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32 + 4).to_le_bytes());
            v.extend_from_slice(data);
        }
        v
    }

    fn read(bytes: &[u8]) -> (Vec<(Timestamp, Vec<u8>, u32)>, bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pcap");
        std::fs::write(&path, bytes).unwrap();
        let mut r = ChunkedReader::open(&path).unwrap();
        let mut out = Vec::new();
        let mut held = Vec::new();
        loop {
            match r.next_record() {
                Next::Packet(rec) => {
                    out.push((
                        rec.ts,
                        rec.chunk[rec.start..rec.start + rec.len].to_vec(),
                        rec.wire_len,
                    ));
                    // Hold some chunks as batches would: the reader must not reuse them.
                    held.push(Arc::clone(rec.chunk));
                }
                Next::End => return (out, true),
                Next::Irregular => return (out, false),
            }
        }
    }

    #[test]
    fn records_across_chunk_boundaries_are_whole() {
        // Records of varied sizes, enough to cross several chunks at odd offsets.
        let frames: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| (0..(i * 7919 % 1500 + 1)).map(|b| (b ^ i) as u8).collect())
            .collect();
        let records: Vec<(u32, &[u8])> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| (i as u32, f.as_slice()))
            .collect();
        let mut bytes = pcap(&records);
        // Pad past a chunk with more of the same.
        while bytes.len() < 3 * CHUNK {
            let more = pcap(&records);
            bytes.extend_from_slice(&more[24..]);
        }
        let (got, ended) = read(&bytes);
        assert!(ended);
        let n = got.len();
        assert!(n >= 3000 && bytes.len() >= 3 * CHUNK);
        for (i, (ts, data, wire)) in got.iter().enumerate() {
            let f = &frames[i % 3000];
            assert_eq!(data, f, "record {i}");
            assert_eq!(*wire, f.len() as u32 + 4);
            assert_eq!(ts.nanos(), (i % 3000) as u32 * 1000);
        }
    }

    #[test]
    fn a_truncated_last_record_is_left_to_the_general_reader() {
        let bytes = pcap(&[(1, b"abcdef"), (2, b"ghijkl")]);
        let (got, ended) = read(&bytes[..bytes.len() - 2]);
        assert_eq!(got.len(), 1);
        assert!(!ended);
    }

    #[test]
    fn pcapng_and_unknown_link_types_are_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pcap");
        std::fs::write(&path, [0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0]).unwrap();
        assert!(ChunkedReader::open(&path).is_none());
        let mut bytes = pcap(&[(1, b"abc")]);
        bytes[20..24].copy_from_slice(&147u32.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        assert!(ChunkedReader::open(&path).is_none());
    }
}
