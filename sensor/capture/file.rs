//! Streaming reader for pcap (micro- and nanosecond, either byte order) and pcapng
//! (any number of sections and interfaces, each with its own link type and clock).
//!
//! Memory is one read buffer, whatever the size of the file. A record that cannot be read
//! ends the file with a `CaptureError` naming the record number and byte offset; everything
//! before it has already been handed out.

use super::chunked::MAX_CAPLEN;
use super::RawPacket;
use crate::decode::LinkType;
use crate::time::Timestamp;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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

/// The first two bytes of a gzip stream (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A capture file's bytes: as they are, or decompressed when the file is gzip (what
/// `tcpdump -z gzip` and most capture archives leave). Record numbers and offsets in errors
/// then count the decompressed bytes.
pub fn open_capture_file(path: &std::path::Path) -> std::io::Result<Box<dyn Read + Send>> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let mut head = [0u8; 2];
    let gzip = file.read_exact(&mut head).is_ok() && head == GZIP_MAGIC;
    file.seek(SeekFrom::Start(0))?;
    Ok(if gzip {
        // Concatenated members (a rotated file appended to) read as one stream.
        let decoder = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
        Box::new(EndsAtBadData(decoder))
    } else {
        Box::new(file)
    })
}

/// A decompressed stream that ends where its compressed data stops making sense (a gzip
/// file cut short, or corrupt from some point): what came before is read as usual, and a
/// record left half-read is reported as truncated, at its record and offset, as in a plain
/// capture cut short. (Failing the read instead would lose the packets already
/// decompressed but not yet handed over.) A failure to read the file itself stays an error.
struct EndsAtBadData<R>(R);

impl<R: Read> Read for EndsAtBadData<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::ErrorKind;
        match self.0.read(buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::InvalidData | ErrorKind::InvalidInput
                ) =>
            {
                Ok(0)
            }
            other => other,
        }
    }
}

/// A pipe's bytes (stdin, a FIFO): as they are, or decompressed when they start as gzip
/// (`zcat`-free `replay - < capture.pcap.gz`, or `gzip -c` into a pipe), as a file's are.
/// A pipe cannot be read twice, so its first two bytes decide when it is first read: on the
/// thread that reads it (`IdleSource`), so a pipe slow to start holds up no one else.
pub struct PipeBytes {
    raw: Option<Box<dyn Read + Send>>,
    bytes: Option<Box<dyn Read + Send>>,
}

impl PipeBytes {
    pub fn new(raw: impl Read + Send + 'static) -> PipeBytes {
        PipeBytes {
            raw: Some(Box::new(raw)),
            bytes: None,
        }
    }

    fn decide(&mut self) -> std::io::Result<()> {
        let Some(mut raw) = self.raw.take() else {
            return Ok(());
        };
        let mut head = [0u8; 2];
        let mut got = 0;
        while got < head.len() {
            match raw.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let whole = std::io::Cursor::new(head[..got].to_vec()).chain(raw);
        self.bytes = Some(if head[..got] == GZIP_MAGIC {
            let decoder = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(whole));
            Box::new(EndsAtBadData(decoder))
        } else {
            Box::new(whole)
        });
        Ok(())
    }
}

impl Read for PipeBytes {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.decide()?;
        match &mut self.bytes {
            Some(bytes) => bytes.read(buf),
            None => Ok(0),
        }
    }
}

/// Whether the file at `path` starts like a capture, or is gzip holding one.
pub fn starts_like_capture(path: &std::path::Path) -> bool {
    let mut magic = [0u8; 4];
    open_capture_file(path)
        .and_then(|mut r| r.read_exact(&mut magic))
        .is_ok()
        && is_capture_magic(magic)
}

/// Why a capture stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureErrorKind {
    #[error("not a pcap or pcapng file (unknown magic number); if it is a capture in another format, convert it with `editcap -F pcap IN OUT`")]
    NotACapture,
    #[error("not a pcap or pcapng file: a text file, not a capture")]
    Text,
    #[error("empty file")]
    Empty,
    #[error("truncated: the file ends in the middle of a record")]
    Truncated,
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("read error: {0}")]
    Io(String),
    #[error("unsupported link type {0}; vendorwatch reads Ethernet, Linux cooked v1/v2, raw IP, BSD null/loop, NFLOG and Cisco HDLC")]
    UnsupportedLinkType(u32),
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
    /// The interfaces and byte order the headers read so far describe.
    layout: Layout,
    buffer_size: usize,
    records: u64,
    /// Packets on pcapng interfaces whose link type we cannot read.
    pub unsupported: Unsupported,
    /// Set by a source that ran dry for a moment (`IdleSource`): a failed read is a pause.
    idle: Option<Arc<AtomicBool>>,
}

/// What `CaptureReader::next_packet` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A packet was handed over.
    Packet,
    /// The source (a pipe) has had nothing to give for a moment; call again.
    Idle,
    /// The end of the stream.
    End,
}

/// A pipe read on a thread of its own, so that a pause in the stream (tcpdump on a quiet
/// link) is noticed: a read that waits longer than `pause` fails and marks the source idle,
/// and the replay hands over the packets it holds instead of waiting for more.
pub struct IdleSource {
    chunks: crossbeam_channel::Receiver<std::io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
    pause: std::time::Duration,
    idle: Arc<AtomicBool>,
    /// Set once the capture header is read (see `read`).
    armed: Arc<AtomicBool>,
    delivered_any: bool,
    /// A stop request (SIGTERM) ends the wait for the capture header (see `until`).
    stop: Option<Arc<AtomicBool>>,
}

/// How often a wait for the first bytes of a pipe looks at the stop flag.
const STOP_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// How many bytes the file header at the start of `bytes` takes, once that can be told:
/// 24 for pcap, the section header block's length for pcapng, what there is for anything
/// else (the reader then says what it is not).
fn header_len(bytes: &[u8]) -> Option<usize> {
    let magic: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    if PCAP_MAGICS.contains(&magic) {
        return Some(24);
    }
    if magic != PCAPNG_MAGIC {
        return Some(bytes.len());
    }
    let len: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
    match bytes.get(8..12)? {
        [0x4d, 0x3c, 0x2b, 0x1a] => Some(u32::from_le_bytes(len) as usize),
        [0x1a, 0x2b, 0x3c, 0x4d] => Some(u32::from_be_bytes(len) as usize),
        _ => Some(bytes.len()),
    }
}

impl IdleSource {
    pub fn new(mut source: impl Read + Send + 'static, pause: std::time::Duration) -> IdleSource {
        let (tx, chunks) = crossbeam_channel::bounded(16);
        // The thread ends at the end of the stream, on an error, or when the reader is gone.
        let _ = std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || loop {
                let mut buf = vec![0u8; 64 * 1024];
                match source.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.send(Ok(buf)).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            });
        IdleSource {
            chunks,
            current: Vec::new(),
            at: 0,
            pause,
            idle: Arc::new(AtomicBool::new(false)),
            armed: Arc::new(AtomicBool::new(false)),
            delivered_any: false,
            stop: None,
        }
    }

    /// Gives up waiting for the capture header once `stop` is set: a pipe whose writer never
    /// writes (or never comes: a FIFO) does not hold up SIGTERM. After the header, every
    /// quiet `pause` is already handed back to the caller, which looks at its stop flag.
    pub fn until(mut self, stop: Arc<AtomicBool>) -> IdleSource {
        self.stop = Some(stop);
        self
    }

    /// The next chunk while the reader is being opened. pcap-parser's opening reads twice:
    /// once for the file header (which must all be there: so the first read waits for the
    /// whole header), then to fill its buffer, which must not wait for packets a quiet link
    /// may not send for minutes (so that read takes only what is already here).
    fn opening_chunk(&mut self) -> Option<std::io::Result<Vec<u8>>> {
        if self.delivered_any {
            return self.chunks.try_recv().ok().or(Some(Ok(Vec::new())));
        }
        let mut first: Vec<u8> = Vec::new();
        // A header claiming more than any record may be is read no further than that: the
        // reader then reports the bad block instead of this holding the whole stream.
        while header_len(&first).is_none_or(|need| first.len() < need.min(MAX_BUFFER)) {
            let next = match &self.stop {
                None => self.chunks.recv().ok(),
                Some(stop) => loop {
                    match self.chunks.recv_timeout(STOP_POLL) {
                        Ok(c) => break Some(c),
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break None,
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            if stop.load(Ordering::Relaxed) {
                                return Some(Err(std::io::Error::new(
                                    std::io::ErrorKind::Interrupted,
                                    "stopped before the capture header came",
                                )));
                            }
                        }
                    }
                },
            };
            match next {
                Some(Ok(more)) => first.extend_from_slice(&more),
                Some(Err(e)) => return Some(Err(e)),
                // The end of the stream: the reader says what is missing.
                None => break,
            }
        }
        Some(Ok(first))
    }
}

impl Read for IdleSource {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.current.len() {
            let next = if self.armed.load(Ordering::Relaxed) {
                match self.chunks.recv_timeout(self.pause) {
                    Ok(chunk) => Some(chunk),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        self.idle.store(true, Ordering::Relaxed);
                        return Err(std::io::ErrorKind::WouldBlock.into());
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => None,
                }
            } else {
                self.opening_chunk()
            };
            match next {
                Some(chunk) => {
                    self.current = chunk?;
                    self.at = 0;
                    self.delivered_any = true;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
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
            layout: Layout::default(),
            buffer_size: INITIAL_BUFFER,
            records: 0,
            unsupported: Unsupported::default(),
            idle: None,
        })
    }

    /// Reads a pipe whose pauses should hand over what was read (see `IdleSource`).
    pub fn from_pipe(name: String, source: IdleSource) -> Result<CaptureReader, CaptureError> {
        let (idle, armed) = (Arc::clone(&source.idle), Arc::clone(&source.armed));
        let mut reader = CaptureReader::new(name, Box::new(source))?;
        armed.store(true, Ordering::Relaxed);
        reader.idle = Some(idle);
        Ok(reader)
    }

    /// Whether the last failed read was only a pause of an `IdleSource`.
    fn paused(&self) -> bool {
        self.idle
            .as_ref()
            .is_some_and(|i| i.swap(false, Ordering::Relaxed))
    }

    pub fn open(path: &std::path::Path) -> Result<CaptureReader, CaptureError> {
        let name = crate::operator_input::shown(path);
        let file = open_capture_file(path).map_err(|e| CaptureError {
            file: name.clone(),
            record: 0,
            offset: 0,
            kind: CaptureErrorKind::Io(e.to_string()),
        })?;
        CaptureReader::new(name, file).map_err(|mut e| {
            if e.kind == CaptureErrorKind::NotACapture && looks_like_text(path) {
                e.kind = CaptureErrorKind::Text;
            }
            e
        })
    }

    /// Opens a replay input: a named pipe (FIFO) is read like standard input (its quiet
    /// moments hand over what was read; see `IdleSource`), opened without waiting for a
    /// writer, and `stop` ends the wait for its first bytes. Anything else is a file.
    pub fn open_input(
        path: &std::path::Path,
        pause: std::time::Duration,
        stop: Arc<AtomicBool>,
    ) -> Result<CaptureReader, CaptureError> {
        use std::os::unix::fs::FileTypeExt;
        let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
        if !fifo {
            return CaptureReader::open(path);
        }
        let name = crate::operator_input::shown(path);
        let source = FifoSource::open(path).map_err(|e| CaptureError {
            file: name.clone(),
            record: 0,
            offset: 0,
            kind: CaptureErrorKind::Io(e.to_string()),
        })?;
        CaptureReader::from_pipe(
            name,
            IdleSource::new(PipeBytes::new(source), pause).until(stop),
        )
    }

    /// Number of records read so far (headers included).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes of the file consumed so far.
    pub fn offset(&self) -> u64 {
        self.inner.consumed() as u64
    }

    /// Hands the next packet to `on_packet`.
    pub fn next_packet<F: FnOnce(RawPacket<'_>)>(
        &mut self,
        on_packet: F,
    ) -> Result<Step, CaptureError> {
        let mut on_packet = Some(on_packet);
        loop {
            let record_offset = self.inner.consumed() as u64;
            // pcapng blocks this reader does not need the parser for (see `own_block`).
            if !self.layout.legacy && self.records > 0 {
                if let Some(len) = undersized_block(self.inner.data(), self.layout.big_endian) {
                    return Err(self.error(
                        record_offset,
                        CaptureErrorKind::Corrupt(format!(
                            "block length {len} is below the {BLOCK_FRAME} bytes every pcapng \
                             block has"
                        )),
                    ));
                }
                if let Some((block_type, len)) =
                    own_block(self.inner.data(), self.layout.big_endian)
                {
                    let delivered = block_type == OPB_TYPE
                        && self.obsolete_packet(len, record_offset, &mut on_packet)?;
                    self.records += 1;
                    self.inner.consume(len);
                    if delivered {
                        return Ok(Step::Packet);
                    }
                    continue;
                }
            }
            if self.layout.legacy && self.records > 0 {
                if let Some(caplen) = self.layout.oversized_record(self.inner.data()) {
                    return Err(self.error(
                        record_offset,
                        CaptureErrorKind::Corrupt(format!(
                            "capture length {caplen} is over the file's snapshot length ({}) and \
                             libpcap's {MAX_CAPLEN}-byte maximum: a corrupt length field (the \
                             records before it were read)",
                            self.layout.snaplen
                        )),
                    ));
                }
            }
            // Everything that borrows the reader's buffer happens inside this match; what
            // comes out is owned, so the buffer can then be consumed or refilled.
            let outcome = match self.inner.next() {
                Ok((size, block)) => {
                    match self
                        .layout
                        .block(block, &mut self.unsupported, &mut on_packet)
                    {
                        Ok(delivered) => Outcome::Consumed(size, delivered),
                        Err(kind) => Outcome::Fail(kind),
                    }
                }
                Err(e) => Outcome::of_error(e),
            };
            if let Some(step) = self.settle(outcome, record_offset)? {
                return Ok(step);
            }
        }
    }

    /// Hands over the Obsolete Packet Block of `len` bytes at the start of the buffer (framed
    /// by `own_block`); whether a packet was delivered.
    #[inline]
    fn obsolete_packet<F: FnOnce(RawPacket<'_>)>(
        &mut self,
        len: usize,
        record_offset: u64,
        on_packet: &mut Option<F>,
    ) -> Result<bool, CaptureError> {
        let body = self.inner.data().get(8..len - 4).unwrap_or_default();
        let Some(opb) = read_obsolete_packet(body, self.layout.big_endian) else {
            return Err(self.error(
                record_offset,
                CaptureErrorKind::Corrupt("obsolete packet block too short for its header".into()),
            ));
        };
        let Some(iface) = self.layout.interfaces.get(usize::from(opb.if_id)).copied() else {
            return Err(self.error(record_offset, unknown_interface(u32::from(opb.if_id))));
        };
        let ts = ng_timestamp(iface, opb.ts);
        Ok(deliver_ng(
            &mut self.unsupported,
            iface,
            ts,
            opb.data,
            opb.origlen,
            on_packet,
        ))
    }

    /// Acts on what reading a record gave: consumes it, refills or grows the buffer, or
    /// fails. `Some` is the step to return; `None` means read the next record.
    #[inline]
    fn settle(
        &mut self,
        outcome: Outcome,
        record_offset: u64,
    ) -> Result<Option<Step>, CaptureError> {
        match outcome {
            Outcome::Consumed(size, delivered) => {
                self.records += 1;
                self.inner.consume(size);
                Ok(delivered.then_some(Step::Packet))
            }
            Outcome::End => Ok(Some(Step::End)),
            Outcome::Refill => self.refill(record_offset),
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
                self.refill(record_offset)
            }
            Outcome::Fail(kind) => Err(self.error(record_offset, kind)),
        }
    }

    /// Reads more of the source into the buffer; a failed read of a paused `IdleSource` is
    /// `Step::Idle`, any other an error.
    fn refill(&mut self, record_offset: u64) -> Result<Option<Step>, CaptureError> {
        if self.inner.refill().is_err() {
            if self.paused() {
                return Ok(Some(Step::Idle));
            }
            return Err(self.error(
                record_offset,
                CaptureErrorKind::Io("could not read from the source".into()),
            ));
        }
        Ok(None)
    }

    fn error(&self, offset: u64, kind: CaptureErrorKind) -> CaptureError {
        error_at(&self.name, self.records, offset, kind)
    }
}

/// Whether the start of the file at `path` reads as text (printable UTF-8, no NUL): a log or
/// a CSV export named `.pcap`, which no converter turns into a capture.
fn looks_like_text(path: &std::path::Path) -> bool {
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(512).read_to_end(&mut head));
    if read.is_err() || head.is_empty() || head.contains(&0) {
        return false;
    }
    let valid = match std::str::from_utf8(&head) {
        Ok(t) => t,
        // A character cut by the 512-byte window is fine; anything else is not text.
        Err(e) if head.len() - e.valid_up_to() < 4 => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    valid
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
}

/// A named pipe opened with `O_NONBLOCK`, so that `open` does not wait for a writer (a wait
/// no signal could end), read with `poll`: it waits until a writer has written (or come and
/// gone), so that a reader started before its writer does not take the empty pipe for the
/// end of the stream. Reads happen on `IdleSource`'s own thread.
struct FifoSource {
    file: std::fs::File,
}

impl FifoSource {
    fn open(path: &std::path::Path) -> std::io::Result<FifoSource> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path)?;
        Ok(FifoSource { file })
    }
}

impl Read for FifoSource {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        loop {
            // Until a writer has come, Linux reports neither data nor a hang-up: poll waits.
            // Once data is there it is readable; once the last writer is gone, POLLHUP and
            // the read gives 0, the end of the stream.
            let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            match self.file.read(out) {
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) => {}
                other => return other,
            }
        }
    }
}

/// pcapng block types the parser reads for us; every other type is framed here (`own_block`).
const SHB_TYPE: u32 = 0x0A0D_0D0A;
const IDB_TYPE: u32 = 1;
/// The Obsolete Packet Block (pcapng draft's "Packet Block"), still written by old tools and
/// read by tshark: a 16-bit interface id, a 16-bit drop count, then the EPB's fields.
const OPB_TYPE: u32 = 2;
const SPB_TYPE: u32 = 3;
const EPB_TYPE: u32 = 6;
/// Type, length and trailing length.
const BLOCK_FRAME: usize = 12;

/// The 32-bit word at `at` of a block, in the section's byte order.
fn block_word(data: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

/// A whole block at the start of `data` that this reader handles itself: any type but the
/// section header, interface description, simple and enhanced packets. Returns its type and
/// length when its framing is valid (a length of at least 12, a multiple of 4, repeated at
/// its end) and all of it is in `data`; otherwise `None`, and the parser reads it (and asks
/// for more bytes, or says what is wrong). So a block of a local or future type (the spec
/// reserves 0x80000000 and up for local use), statistics, name resolution or secrets blocks,
/// whatever their content, are skipped by their length, as tshark does.
fn own_block(data: &[u8], big_endian: bool) -> Option<(u32, usize)> {
    let word = |at: usize| block_word(data, at, big_endian);
    let block_type = word(0)?;
    if matches!(block_type, SHB_TYPE | IDB_TYPE | SPB_TYPE | EPB_TYPE) {
        return None;
    }
    let len = usize::try_from(word(4)?).ok()?;
    if len < BLOCK_FRAME || len % 4 != 0 || data.len() < len || word(len - 4)? != word(4)? {
        return None;
    }
    Some((block_type, len))
}

/// The length of the block at the start of `data` when it is below the 12 bytes of a
/// block's own framing. The parser must never see one: pcap-parser 0.17 subtracts 12 from
/// the length of a block whose minimum it takes as less (a process information block),
/// which overflows. A section header is left to the parser: its byte order is its own.
fn undersized_block(data: &[u8], big_endian: bool) -> Option<u32> {
    let word = |at: usize| block_word(data, at, big_endian);
    if word(0)? == SHB_TYPE {
        return None;
    }
    word(4).filter(|&len| (len as usize) < BLOCK_FRAME)
}

/// The fields of an Obsolete Packet Block that matter here.
struct ObsoletePacket<'a> {
    if_id: u16,
    /// Timestamp in the interface's units.
    ts: u64,
    origlen: u32,
    data: &'a [u8],
}

/// Reads an Obsolete Packet Block's body (after type and length, before the trailing length).
fn read_obsolete_packet(body: &[u8], big_endian: bool) -> Option<ObsoletePacket<'_>> {
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = body.get(at..at + 2)?.try_into().ok()?;
        Some(if big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |at: usize| block_word(body, at, big_endian);
    let if_id = u16_at(0)?;
    let ts = (u64::from(u32_at(4)?) << 32) | u64::from(u32_at(8)?);
    let caplen = usize::try_from(u32_at(12)?).ok()?;
    let origlen = u32_at(16)?;
    let packet = body.get(20..)?;
    Some(ObsoletePacket {
        if_id,
        ts,
        origlen,
        // A capture length past the block is cut to the block, as for enhanced packets.
        data: &packet[..caplen.min(packet.len())],
    })
}

/// A pcapng timestamp (in the interface's units since the epoch) as a packet time.
fn ng_timestamp(iface: Interface, raw: u64) -> Timestamp {
    let res = iface.resolution.max(1);
    let secs = i64::try_from(raw / res)
        .unwrap_or(i64::MAX)
        .saturating_add(iface.offset_secs);
    Timestamp::from_parts(secs, fraction_to_nanos(raw % res, res))
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

impl Outcome {
    /// What a failed read of the parser means for the reader.
    fn of_error(e: PcapError<&[u8]>) -> Outcome {
        match e {
            PcapError::Eof => Outcome::End,
            PcapError::Incomplete(_) => Outcome::Refill,
            PcapError::BufferTooSmall => Outcome::Grow,
            PcapError::UnexpectedEof => Outcome::Fail(CaptureErrorKind::Truncated),
            PcapError::ReadError => Outcome::Fail(CaptureErrorKind::Io(
                "could not read from the source".into(),
            )),
            e => Outcome::Fail(CaptureErrorKind::Corrupt(describe(&e))),
        }
    }
}

/// What the headers read so far say about the stream: legacy pcap's one interface, or the
/// interfaces and byte order of the current pcapng section.
#[derive(Debug, Default)]
struct Layout {
    /// The current pcapng section's interfaces, or legacy pcap's one (known after its header).
    interfaces: Vec<Interface>,
    legacy: bool,
    /// The byte order of the legacy file or of the current pcapng section.
    big_endian: bool,
    /// The legacy file's snapshot length.
    snaplen: u32,
}

impl Layout {
    /// Takes one record the parser read: a header updates the layout, a packet goes to
    /// `on_packet`. Whether a packet was delivered.
    #[inline]
    fn block<F: FnOnce(RawPacket<'_>)>(
        &mut self,
        block: PcapBlockOwned<'_>,
        unsupported: &mut Unsupported,
        on_packet: &mut Option<F>,
    ) -> Result<bool, CaptureErrorKind> {
        match block {
            PcapBlockOwned::LegacyHeader(hdr) => self.legacy_header(&hdr).map(|()| false),
            PcapBlockOwned::Legacy(rec) => Ok(self.legacy_record(&rec, on_packet)),
            PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                // A new section starts its own interface numbering.
                self.interfaces.clear();
                self.big_endian = shb.big_endian();
                Ok(false)
            }
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                self.interface_description(&idb);
                Ok(false)
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                let Some(iface) = self.interfaces.get(epb.if_id as usize).copied() else {
                    return Err(unknown_interface(epb.if_id));
                };
                let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                let caplen = (epb.caplen as usize).min(epb.data.len());
                let ts = ng_timestamp(iface, raw);
                let data = &epb.data[..caplen];
                Ok(deliver_ng(
                    unsupported,
                    iface,
                    ts,
                    data,
                    epb.origlen,
                    on_packet,
                ))
            }
            PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                // Simple packets carry no timestamp and belong to interface 0.
                let Some(iface) = self.interfaces.first().copied() else {
                    return Ok(false);
                };
                let caplen = (spb.origlen as usize).min(spb.data.len());
                let (ts, data) = (Timestamp::default(), &spb.data[..caplen]);
                Ok(deliver_ng(
                    unsupported,
                    iface,
                    ts,
                    data,
                    spb.origlen,
                    on_packet,
                ))
            }
            PcapBlockOwned::NG(_) => Ok(false),
        }
    }

    /// A legacy pcap file header: the one interface's link type and clock.
    fn legacy_header(&mut self, hdr: &pcap_parser::PcapHeader) -> Result<(), CaptureErrorKind> {
        self.legacy = true;
        self.big_endian = hdr.is_bigendian();
        self.snaplen = hdr.snaplen;
        let code = hdr.network.0;
        let link = u32::try_from(code).ok().and_then(LinkType::from_code);
        if link.is_none() {
            // The field is unsigned on the wire: 0xffffffff is 4294967295, not -1.
            return Err(CaptureErrorKind::UnsupportedLinkType(code as u32));
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
        Ok(())
    }

    /// The capture length of the legacy record at the start of `data` when no capture holds a
    /// record that long: larger than the file's snapshot length and than libpcap's maximum.
    /// Left to the parser, such a length reads as a file that ends in the middle of a record
    /// (or swallows the records after it); tcpdump calls it an invalid capture length. A
    /// record between the two is read: some writers put a smaller snapshot length in the
    /// header than the frames they store.
    fn oversized_record(&self, data: &[u8]) -> Option<u32> {
        let caplen = block_word(data, 8, self.big_endian)?;
        let limit = (self.snaplen as usize).max(MAX_CAPLEN);
        (caplen as usize > limit).then_some(caplen)
    }

    /// A pcapng interface description: the next interface of the section.
    fn interface_description(&mut self, idb: &pcap_parser::pcapng::InterfaceDescriptionBlock<'_>) {
        let code = idb.linktype.0;
        let link = u32::try_from(code).ok().and_then(LinkType::from_code);
        self.interfaces.push(Interface {
            link,
            code,
            resolution: idb.ts_resolution().unwrap_or(1_000_000),
            offset_secs: idb.ts_offset(),
        });
    }

    /// A legacy pcap packet record; whether it was delivered (not before the file header).
    #[inline]
    fn legacy_record<F: FnOnce(RawPacket<'_>)>(
        &self,
        rec: &pcap_parser::LegacyPcapBlock<'_>,
        on_packet: &mut Option<F>,
    ) -> bool {
        let Some(&Interface {
            link: Some(link),
            resolution,
            offset_secs,
            ..
        }) = self.interfaces.first()
        else {
            return false;
        };
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
}

/// A packet block naming an interface no interface description block of its section gave.
fn unknown_interface(if_id: u32) -> CaptureErrorKind {
    CaptureErrorKind::Corrupt(format!(
        "packet on interface {if_id} that no interface block described"
    ))
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
                Ok(Step::Packet | Step::Idle) => {}
                Ok(Step::End) => return (got, None),
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
    fn a_capture_length_no_capture_holds_is_corrupt_not_truncation_in_both_byte_orders() {
        let frame = [0u8; 60];
        for (magic, big_endian) in [
            ([0xd4, 0xc3, 0xb2, 0xa1], false),
            ([0xa1, 0xb2, 0xc3, 0xd4], true),
        ] {
            let three: [(u32, u32, &[u8]); 3] = [(1, 0, &frame), (2, 0, &frame), (3, 0, &frame)];
            let mut bytes = legacy_pcap(magic, big_endian, &three);
            // The second packet's capture length (at 24 + 76 + 8) says 300,000 bytes: over the
            // header's 65,535 and libpcap's maximum. The file goes on past it.
            let field = 24 + 76 + 8;
            let corrupt = if big_endian {
                300_000u32.to_be_bytes()
            } else {
                300_000u32.to_le_bytes()
            };
            bytes[field..field + 4].copy_from_slice(&corrupt);
            let (got, err) = read_all(bytes.clone());
            assert_eq!(got.len(), 1, "the packet before it is read");
            let err = err.expect("reported");
            assert!(
                matches!(&err.kind, CaptureErrorKind::Corrupt(m) if m.contains("capture length 300000")),
                "{err:?}"
            );
            assert_eq!((err.record, err.offset), (3, 100));
            // A length within the maximum is read as written (the file then ends inside it).
            let within = if big_endian {
                70_000u32.to_be_bytes()
            } else {
                70_000u32.to_le_bytes()
            };
            bytes[field..field + 4].copy_from_slice(&within);
            let (got, err) = read_all(bytes);
            assert_eq!(got.len(), 1);
            assert_eq!(err.map(|e| e.kind), Some(CaptureErrorKind::Truncated));
        }
    }

    /// A little-endian pcapng block of `block_type` around `body` (padded to 4 bytes).
    fn ng_block(block_type: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        body.resize(body.len().next_multiple_of(4), 0);
        let len = (body.len() + 12) as u32;
        [
            &block_type.to_le_bytes()[..],
            &len.to_le_bytes(),
            &body,
            &len.to_le_bytes(),
        ]
        .concat()
    }

    #[test]
    fn a_block_shorter_than_its_own_framing_is_corrupt_after_the_packets_before_it() {
        let shb = ng_block(
            SHB_TYPE,
            &[&0x1A2B_3C4Du32.to_le_bytes()[..], &[1, 0, 0, 0], &[0xff; 8]].concat(),
        );
        let idb = ng_block(IDB_TYPE, &[1, 0, 0, 0, 0xff, 0xff, 0, 0]);
        let frame = [0u8; 60];
        let epb_body = [
            &0u32.to_le_bytes()[..],
            &0u32.to_le_bytes(),
            &1u32.to_le_bytes(),
            &60u32.to_le_bytes(),
            &60u32.to_le_bytes(),
            &frame,
        ]
        .concat();
        let epb = ng_block(EPB_TYPE, &epb_body);
        // A process information block (0x80000001) claiming 4 bytes: the fuzzer's find,
        // which made pcap-parser 0.17 subtract past zero.
        let pib = [
            &0x8000_0001u32.to_le_bytes()[..],
            &4u32.to_le_bytes(),
            &[0; 16],
        ]
        .concat();
        let before = (shb.len() + idb.len() + epb.len()) as u64;
        let (got, err) = read_all([shb, idb, epb, pib].concat());
        assert_eq!(got.len(), 1);
        let err = err.expect("reported");
        assert!(
            matches!(&err.kind, CaptureErrorKind::Corrupt(m) if m.contains("block length 4")),
            "{err:?}"
        );
        assert_eq!((err.record, err.offset), (4, before));
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

    #[test]
    fn a_quiet_pipe_is_a_pause_not_an_end_and_the_stream_goes_on() {
        use std::io::Write;
        let frame = [0x45u8; 40];
        let whole = legacy_pcap(PCAP_MAGICS[0], false, &[(1, 0, &frame), (2, 0, &frame)]);
        let (reader, mut writer) = std::io::pipe().expect("pipe");
        // The header in two pieces, then one packet; the pipe stays open.
        let first_record_end = 24 + 16 + frame.len();
        writer.write_all(&whole[..10]).expect("write");
        let opener = std::thread::spawn(move || {
            CaptureReader::from_pipe(
                "<stdin>".into(),
                IdleSource::new(reader, std::time::Duration::from_millis(50)),
            )
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        writer
            .write_all(&whole[10..first_record_end])
            .expect("write");
        let mut r = opener.join().expect("joins").expect("opens");
        let mut step = || r.next_packet(|_| {}).expect("no error");
        let after_pauses = |step: &mut dyn FnMut() -> Step| {
            let mut next = step();
            while next == Step::Idle {
                next = step();
            }
            next
        };
        assert_eq!(step(), Step::Packet);
        assert_eq!(step(), Step::Idle, "nothing more yet: a pause");
        writer.write_all(&whole[first_record_end..]).expect("write");
        assert_eq!(after_pauses(&mut step), Step::Packet);
        drop(writer);
        assert_eq!(after_pauses(&mut step), Step::End);
    }

    #[test]
    fn blocks_of_other_types_are_framed_by_their_length() {
        let block = |t: u32, len: u32, trailer: u32, body: usize| {
            let mut b = t.to_le_bytes().to_vec();
            b.extend_from_slice(&len.to_le_bytes());
            b.extend(std::iter::repeat_n(0u8, body));
            b.extend_from_slice(&trailer.to_le_bytes());
            b
        };
        // A 12-byte local block, with more after it.
        let mut data = block(0x8000_0001, 12, 12, 0);
        data.extend_from_slice(&[1, 2, 3]);
        assert_eq!(own_block(&data, false), Some((0x8000_0001, 12)));
        // Big-endian sections read their lengths big-endian.
        let mut be = 0x8000_0001u32.to_be_bytes().to_vec();
        be.extend_from_slice(&16u32.to_be_bytes());
        be.extend_from_slice(&[0; 4]);
        be.extend_from_slice(&16u32.to_be_bytes());
        assert_eq!(own_block(&be, true), Some((0x8000_0001, 16)));
        // Statistics and obsolete packets are framed here too; the packet types are not.
        assert_eq!(own_block(&block(5, 16, 16, 4), false), Some((5, 16)));
        assert_eq!(own_block(&block(OPB_TYPE, 16, 16, 4), false), Some((2, 16)));
        for t in [SHB_TYPE, IDB_TYPE, SPB_TYPE, EPB_TYPE] {
            assert_eq!(own_block(&block(t, 16, 16, 4), false), None);
        }
        // Bad framing and blocks not yet whole are left to the parser.
        assert_eq!(
            own_block(&block(9, 8, 8, 0), false),
            None,
            "shorter than 12"
        );
        assert_eq!(
            own_block(&block(9, 14, 14, 2), false),
            None,
            "not a multiple of 4"
        );
        assert_eq!(
            own_block(&block(9, 16, 20, 4), false),
            None,
            "trailer differs"
        );
        assert_eq!(
            own_block(&block(9, 32, 32, 4)[..16], false),
            None,
            "incomplete"
        );
    }

    #[test]
    fn an_obsolete_packet_block_body_is_read() {
        let mut body = 1u16.to_le_bytes().to_vec();
        body.extend_from_slice(&7u16.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&2u32.to_le_bytes());
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(&60u32.to_le_bytes());
        body.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0, 0, 0, 0, 0]);
        let opb = read_obsolete_packet(&body, false).expect("reads");
        assert_eq!(
            (opb.if_id, opb.ts, opb.origlen, opb.data),
            (1, (1 << 32) | 2, 60, &[0xaa, 0xbb, 0xcc][..])
        );
        assert!(read_obsolete_packet(&body[..19], false).is_none());
    }

    #[test]
    fn header_length_is_known_once_its_bytes_are_there() {
        assert_eq!(header_len(&PCAP_MAGICS[1]), Some(24));
        assert_eq!(header_len(&PCAPNG_MAGIC), None);
        let mut shb = PCAPNG_MAGIC.to_vec();
        shb.extend_from_slice(&28u32.to_le_bytes());
        shb.extend_from_slice(&[0x4d, 0x3c, 0x2b, 0x1a]);
        assert_eq!(header_len(&shb), Some(28));
        assert_eq!(header_len(b"GET / HTTP/1.1"), Some(14));
    }
}
