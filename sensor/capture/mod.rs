//! Capture sources: where packets come from.
//!
//! `file` streams pcap and pcapng files (and standard input) with `pcap-parser`; the
//! input list (files, directories of rotated captures, `-`) is expanded by `inputs`.
//! A source hands out `RawPacket`s that borrow its buffer, one record at a time.
//! `chunked` reads classic pcap files for replay in shared 256 KiB chunks that batches
//! reference instead of copying each frame (anything it does not take goes to `file`).
//! `live` captures through libpcap; `ring_fanout` (Linux) opens one interface as several
//! libpcap handles joined in an AF_PACKET fanout group, one per capture thread, and
//! `fanout` as several plain AF_PACKET sockets (the fallback); `privileges` and
//! `sandbox` take away what the process no longer needs once its capture handles are
//! open (root, capabilities, system calls).

pub mod chunked;
#[cfg(target_os = "linux")]
pub mod fanout;
pub mod file;
pub mod inputs;
pub mod live;
pub mod privileges;
#[cfg(target_os = "linux")]
pub mod ring_fanout;
pub mod sandbox;

use crate::decode::LinkType;
use crate::time::Timestamp;

/// One captured frame as the source delivered it.
#[derive(Debug, Clone, Copy)]
pub struct RawPacket<'a> {
    pub ts: Timestamp,
    pub link: LinkType,
    pub data: &'a [u8],
    /// Length on the wire (may exceed `data.len()` when the snap length cut the frame).
    pub wire_len: u32,
}
