//! Live capture across cores (Linux): one interface opened as N `AF_PACKET` sockets joined
//! in one fanout group, so that the kernel spreads the packets over N capture threads and
//! each can feed its own worker, instead of one libpcap thread hashing everything itself.
//! `live` first tries `ring_fanout` (libpcap's own handles, with their mapped rings, joined
//! to a group by this module's `join_group`); these plain sockets are its fallback.
//!
//! ## What the kernel is asked for, and why
//! - `PACKET_FANOUT_HASH`: the kernel picks a member by the packet's flow hash, which for
//!   fanout is the flow dissector's *symmetric* hash (`__skb_get_hash_symmetric`: the two
//!   addresses and the two ports are put in order before hashing), so both directions of a
//!   TCP or UDP flow reach the same socket. The veth test (`tests/fanout.rs`) checks it.
//! - `PACKET_FANOUT_FLAG_DEFRAG` (`FanoutOptions::kernel_defrag`, on by default): IPv4
//!   fragments are reassembled by the kernel before the hash is taken, so a fragmented
//!   datagram (a large DNS answer) goes to the socket of its flow; that socket then reads
//!   the *reassembled* datagram as one frame, and the sensor's own defragmenter, with its
//!   overlap anomalies, never sees the fragments (the kernel drops a datagram whose
//!   fragments overlap). Off, the fragments arrive as they were, hashed by their addresses
//!   only (no ports in a fragment): all fragments of a datagram on one socket, not
//!   necessarily the socket of their flow — right when each capture thread routes packets
//!   to workers itself (the dispatcher reassembles, then hashes). IPv6 fragments are never
//!   reassembled by the kernel and always hash that way.
//! - The group id: by default the kernel chooses an unused one
//!   (`PACKET_FANOUT_FLAG_UNIQUEID`), so two sensors (or a sensor and Suricata) on one
//!   interface never join each other's group; an explicit id is honoured when given.
//! - A BPF filter is compiled by libpcap (`pcap::Capture::dead`, link type Ethernet) and
//!   attached to every socket with `SO_ATTACH_FILTER`. Its "accept" returns (compiled for
//!   a dead handle's 65535 bytes) are set to the snap length; without a filter the socket
//!   gets a one-instruction "accept, cut at the snap length" program. A filter that
//!   names `vlan` is refused ([`OpenError::UnsupportedFilter`]): the kernel takes the
//!   outermost 802.1Q tag out of the frame before any filter runs, and libpcap compiles
//!   `vlan` for the tag in the frame only when it knows it is on a live Linux socket; the
//!   caller falls back to libpcap for such a filter.
//! - Exactly once: a socket must be bound before it can join a group, and a bound socket
//!   that is not yet a member receives every packet. Each socket therefore starts with a
//!   filter that accepts nothing, is bound and joins, and only once *all* N have joined is
//!   every socket's real filter attached. No packet is ever delivered twice; the packets
//!   of the few microseconds between the first and the last attach are simply not
//!   captured by the sockets not yet switched (as if the capture had started later).
//! - Loopback: a packet socket sees every frame sent on `lo` twice (outgoing, then
//!   incoming); like libpcap, which drops the outgoing copy on loopback, the filter of a
//!   loopback group starts by refusing `PACKET_OUTGOING` frames, so each is read once.
//! - VLAN tags: the kernel takes the outer tag out of the frame into metadata; it is read
//!   back from `PACKET_AUXDATA` and put back in place (as libpcap does), so a frame reads
//!   as it was on the wire. The frame is received in two pieces around a 4-byte gap for
//!   the tag, so putting it back, or closing the gap, moves 12 bytes, never the frame.
//! - Timestamps come from `SO_TIMESTAMPNS` (the kernel's receive time, nanoseconds), the
//!   length on the wire from `PACKET_AUXDATA` (`tp_len`).
//! - Counters: `PACKET_STATISTICS` per socket (`tp_packets`, which includes the drops, and
//!   `tp_drops`); the kernel zeroes them on every read, so they are kept here as 64-bit
//!   totals.
//!
//! ## How packets are read: `recvmsg` on a plain socket, not a TPACKET_V3 ring
//! Each read is one `recvmsg` into this socket's own buffer (no allocation per packet;
//! the buffer and the control-message buffer are allocated once at open). A memory-mapped
//! TPACKET_V3 ring would save that copy and one system call per packet; it is the next
//! step if the capture threads show up in a profile. It needs raw pointers into memory the
//! kernel writes concurrently, which is much more unsafe code than this module wants to
//! carry, and no crate offered it in a form worth depending on: `af_packet` is GPL-3.0
//! (refused by `deny.toml`) and unmaintained (nom 5); `pnet_datalink` has fanout options
//! but gives no timestamps, no original length, no BPF and no counters; `netring` does it
//! all, but is 53,000 lines (flow tracking, exporters, AF_XDP) released dozens of times in
//! a few months, with its own nix version: too large and too young to trust with the
//! sensor's input path.
//!
//! ## Why this file holds `unsafe`
//! `nix` 0.32 (already a dependency) has no `PACKET_FANOUT`, `PACKET_AUXDATA`,
//! `PACKET_STATISTICS` or `SO_ATTACH_FILTER`, and its `recvmsg` allocates for control
//! messages it does not know. So this module calls `libc` (through `nix::libc`, no new
//! dependency) for `socket`, `bind`, `getsockname`, `setsockopt`, `getsockopt`,
//! `recvmsg` and `if_nametoindex`, each in one small function with a SAFETY comment. It is
//! the only file of the crate allowed `unsafe` (`lib.rs` denies it everywhere else);
//! everything the kernel hands back (control messages, lengths) is parsed by safe code
//! that checks every offset, and is unit-tested below.

#![allow(unsafe_code)]

use crate::decode::LinkType;
use crate::time::Timestamp;
use nix::libc;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Most sockets one group may have here: more capture threads than this would not have
/// cores to run on (the kernel's own limit is 256 by default).
pub const MAX_SOCKETS: usize = 64;

/// Most bytes of a frame kept (libpcap's MAXIMUM_SNAPLEN): each socket's buffer is this
/// size, allocated once.
pub const MAX_SNAPLEN: u32 = 262_144;

/// Bytes of control messages one read can carry: a timestamp (16 bytes of data) and the
/// auxiliary data (20 bytes), each behind a 16-byte header, with room to spare.
const CONTROL_BYTES: usize = 128;

/// Room before the frame for a VLAN tag put back (see `recv`).
const TAG_LEN: usize = 4;
/// The two MAC addresses, which come before the tag.
const MACS_LEN: usize = 12;
/// Where the MAC addresses are received: after `TAG_LEN` bytes of slack, so that closing
/// the gap (no tag) moves them forward into it.
const MACS_AT: usize = TAG_LEN;
/// Where the rest of the frame is received: after the MAC addresses and the tag's gap.
const REST_AT: usize = MACS_AT + MACS_LEN + TAG_LEN;

// Linux ABI values nix's libc does not name, with where they come from.
/// `TP_STATUS_VLAN_VALID` (<linux/if_packet.h>): `tp_vlan_tci` holds a tag.
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
/// `TP_STATUS_VLAN_TPID_VALID`: `tp_vlan_tpid` holds the tag's type (802.1Q or 802.1ad).
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
/// `ETH_P_8021Q`: the tag type when the kernel does not say.
const ETH_P_8021Q: u16 = 0x8100;
/// Classic BPF `ret #k` (`BPF_RET | BPF_K`).
const BPF_RET_K: u16 = 0x06;
/// Classic BPF `ld [k]` (`BPF_LD | BPF_W | BPF_ABS`); with `k` past `SKF_AD_OFF` it loads
/// the kernel's metadata of the packet instead of its bytes.
const BPF_LD_W_ABS: u16 = 0x20;
/// Classic BPF `jeq #k, jt, jf` (`BPF_JMP | BPF_JEQ | BPF_K`).
const BPF_JEQ_K: u16 = 0x15;
/// `PACKET_OUTGOING` (<linux/if_packet.h>): a frame this host sent.
const PACKET_OUTGOING: u32 = 4;

/// How to open an interface for fanout capture.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    pub interface: String,
    /// How many sockets (capture threads), 1 to `MAX_SOCKETS`.
    pub sockets: usize,
    /// The fanout group id; `None` lets the kernel choose one nobody else uses.
    pub group: Option<u16>,
    /// A libpcap filter expression, applied by the kernel on every socket.
    pub bpf: Option<String>,
    /// Bytes of each frame kept (the rest only counted in its wire length), at most
    /// `MAX_SNAPLEN`.
    pub snaplen: u32,
    /// Receive buffer of each socket, in bytes (`SO_RCVBUFFORCE`, or `SO_RCVBUF` without
    /// CAP_NET_ADMIN, which the kernel caps at `net.core.rmem_max`).
    pub buffer_bytes: usize,
    pub promiscuous: bool,
    /// Let the kernel reassemble IPv4 fragments before hashing (`PACKET_FANOUT_FLAG_DEFRAG`),
    /// so they reach their flow's socket; see the module doc for what it costs.
    pub kernel_defrag: bool,
}

/// Why fanout capture could not be opened. Every one of them means "use libpcap instead"
/// to a caller that only asked for fanout because it was available (libpcap then says a
/// missing or down interface, or a bad filter, in its own words).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("interface {interface:?} does not exist")]
    NoSuchInterface { interface: String },
    /// Administratively down: a socket binds to it, but the kernel says `ENETDOWN`.
    #[error("interface {interface:?} is down: bring it up (`ip link set {interface} up`)")]
    InterfaceDown { interface: String },
    #[error("no permission to open packet sockets on {interface:?} ({reason}): run as root, or grant CAP_NET_RAW and CAP_NET_ADMIN")]
    Permission { interface: String, reason: String },
    #[error("the BPF filter {filter:?} does not compile: {reason}")]
    BadFilter { filter: String, reason: String },
    #[error("the BPF filter {filter:?} cannot be used with fanout capture: {why}")]
    UnsupportedFilter { filter: String, why: &'static str },
    #[error("interface {interface:?} has hardware type {hatype}; fanout capture reads Ethernet and loopback only")]
    UnsupportedLink { interface: String, hatype: u16 },
    #[error("asked for {asked} fanout sockets; 1 to {MAX_SOCKETS} are possible")]
    SocketCount { asked: usize },
    #[error("fanout group {group} on {interface:?} is in use with other settings, or full")]
    GroupInUse { interface: String, group: u16 },
    #[error("cannot open fanout capture on {interface:?}: {call}: {reason}")]
    Other {
        interface: String,
        call: &'static str,
        reason: String,
    },
}

impl OpenError {
    /// A short label for metrics and the start-up line.
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::NoSuchInterface { .. } => "no_such_interface",
            OpenError::InterfaceDown { .. } => "interface_down",
            OpenError::Permission { .. } => "permission",
            OpenError::BadFilter { .. } => "bad_filter",
            OpenError::UnsupportedFilter { .. } => "unsupported_filter",
            OpenError::UnsupportedLink { .. } => "unsupported_link",
            OpenError::SocketCount { .. } => "socket_count",
            OpenError::GroupInUse { .. } => "group_in_use",
            OpenError::Other { .. } => "other",
        }
    }
}

/// Why a read failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    /// The interface went down (`ENETDOWN`, reported once by the kernel). The socket stays
    /// bound: when the link is back, packets flow again on it. When the interface was
    /// deleted, reads just find nothing from then on (the caller's `LinkWatch` sees it).
    #[error("the interface went down")]
    LinkDown,
    #[error("reading the packet socket failed: {0}")]
    Other(String),
}

impl ReadError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ReadError::LinkDown => "link_down",
            ReadError::Other(_) => "read_failed",
        }
    }
}

/// One frame, borrowed from the socket's buffer until the next read.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    pub ts: Timestamp,
    pub data: &'a [u8],
    /// Length on the wire (more than `data.len()` when the snap length cut the frame).
    pub wire_len: u32,
}

/// The kernel's counters for one socket, as 64-bit totals since it was opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SocketTotals {
    /// Packets the group handed to this socket, dropped ones included (as libpcap counts).
    pub received: u64,
    /// Of those, dropped because the socket's receive buffer was full.
    pub dropped: u64,
}

/// One member of a fanout group, read by one thread.
pub struct FanoutSocket {
    fd: OwnedFd,
    interface: String,
    index: usize,
    group: u16,
    link: LinkType,
    /// `[slack TAG_LEN][MACs][tag gap][rest of the frame, snaplen - MACS_LEN]`.
    buf: Box<[u8]>,
    control: Box<[u8]>,
    snaplen: usize,
    totals: SocketTotals,
}

impl std::fmt::Debug for FanoutSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutSocket")
            .field("interface", &self.interface)
            .field("index", &self.index)
            .field("group", &self.group)
            .finish()
    }
}

/// Where a frame landed in the buffer (kept apart from the borrow, so that a read that
/// found nothing can poll and read again).
struct Landed {
    ts: Timestamp,
    start: usize,
    len: usize,
    wire_len: u32,
}

/// Opens `opts.sockets` sockets on the interface, joined in one fanout group, with the
/// filter attached. Socket `i` of the result is member `i`.
pub fn open(opts: &FanoutOptions) -> Result<Vec<FanoutSocket>, OpenError> {
    let iface = opts.interface.as_str();
    if opts.sockets == 0 || opts.sockets > MAX_SOCKETS {
        return Err(OpenError::SocketCount {
            asked: opts.sockets,
        });
    }
    // At least the two MAC addresses (the frame is received around them), at most the
    // buffer this module is willing to allocate per socket.
    let snaplen = opts.snaplen.clamp(MACS_LEN as u32, MAX_SNAPLEN);
    let program = match &opts.bpf {
        Some(filter) => compile_filter(filter, snaplen)?,
        None => vec![ret(snaplen)],
    };
    let ifindex = sys::if_index(iface).ok_or_else(|| OpenError::NoSuchInterface {
        interface: iface.to_string(),
    })?;
    let snaplen = snaplen as usize;
    let mut sockets = Vec::with_capacity(opts.sockets);
    let mut group = opts.group;
    let mut loopback = false;
    for index in 0..opts.sockets {
        let (fd, hatype) = member_socket(opts, ifindex)?;
        loopback = hatype == libc::ARPHRD_LOOPBACK;
        let link = link_for(hatype).ok_or_else(|| OpenError::UnsupportedLink {
            interface: iface.to_string(),
            hatype,
        })?;
        if opts.promiscuous {
            sys::promiscuous(fd.as_fd(), ifindex)
                .map_err(|e| classify(iface, "PACKET_ADD_MEMBERSHIP", e))?;
        }
        let id = join_group(fd.as_fd(), iface, group, opts.kernel_defrag)?;
        group = Some(id);
        sockets.push(FanoutSocket {
            fd,
            interface: iface.to_string(),
            index,
            group: id,
            link,
            buf: vec![0u8; REST_AT + snaplen - MACS_LEN].into_boxed_slice(),
            control: vec![0u8; CONTROL_BYTES].into_boxed_slice(),
            snaplen,
            totals: SocketTotals::default(),
        });
    }
    let program = if loopback {
        skip_outgoing(&program)
    } else {
        program
    };
    attach_program(&sockets, &program, opts)?;
    Ok(sockets)
}

/// One member's packet socket, set up and bound to the interface but not yet in the group,
/// with the interface's hardware type.
fn member_socket(opts: &FanoutOptions, ifindex: u32) -> Result<(OwnedFd, u16), OpenError> {
    let fail = |call: &'static str, e: std::io::Error| classify(&opts.interface, call, e);
    let fd = sys::packet_socket().map_err(|e| fail("socket", e))?;
    // Nothing is accepted until every member has joined (see the module doc).
    sys::attach_filter(fd.as_fd(), &[ret(0)]).map_err(|e| fail("SO_ATTACH_FILTER", e))?;
    sys::set_int(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)
        .map_err(|e| fail("PACKET_AUXDATA", e))?;
    sys::set_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
        .map_err(|e| fail("SO_TIMESTAMPNS", e))?;
    let buffer = i32::try_from(opts.buffer_bytes).unwrap_or(i32::MAX);
    if sys::set_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, buffer).is_err() {
        sys::set_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, buffer)
            .map_err(|e| fail("SO_RCVBUF", e))?;
    }
    sys::bind(fd.as_fd(), ifindex).map_err(|e| fail("bind", e))?;
    // A packet socket binds to a down interface without a word: the kernel leaves ENETDOWN
    // pending on it instead (libpcap looks for it too, and says "That device is not up").
    // Said here, a down interface is not taken for one that is merely quiet.
    if sys::pending_error(fd.as_fd()).map_err(|e| fail("SO_ERROR", e))? == Some(libc::ENETDOWN) {
        return Err(OpenError::InterfaceDown {
            interface: opts.interface.clone(),
        });
    }
    let hatype = sys::hardware_type(fd.as_fd()).map_err(|e| fail("getsockname", e))?;
    Ok((fd, hatype))
}

/// Joins `fd` to fanout group `group`, or to a new group the kernel numbers when `None`;
/// the group's id. Also joins the libpcap handles of `ring_fanout`.
pub(crate) fn join_group(
    fd: BorrowedFd<'_>,
    iface: &str,
    group: Option<u16>,
    kernel_defrag: bool,
) -> Result<u16, OpenError> {
    let joined = match group {
        Some(id) => sys::join(fd, id, kernel_defrag, false).map(|()| id),
        None => sys::join(fd, 0, kernel_defrag, true).and_then(|()| sys::fanout_id(fd)),
    };
    joined.map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSPC) | Some(libc::EALREADY) => OpenError::GroupInUse {
            interface: iface.to_string(),
            group: group.unwrap_or(0),
        },
        _ => classify(iface, "PACKET_FANOUT", e),
    })
}

/// Replaces every member's accept-nothing filter with `program`, once all have joined.
fn attach_program(
    sockets: &[FanoutSocket],
    program: &[libc::sock_filter],
    opts: &FanoutOptions,
) -> Result<(), OpenError> {
    for s in sockets {
        sys::attach_filter(s.fd.as_fd(), program).map_err(|e| match &opts.bpf {
            Some(filter) => OpenError::BadFilter {
                filter: filter.clone(),
                reason: format!("the kernel refused it: {e}"),
            },
            None => classify(&opts.interface, "SO_ATTACH_FILTER", e),
        })?;
    }
    Ok(())
}

impl FanoutSocket {
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// This socket's place in the group (0-based): the worker it feeds.
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    pub fn link(&self) -> LinkType {
        self.link
    }

    /// The next frame, waiting at most `timeout` for one; `Ok(None)` when none came.
    pub fn next_packet(&mut self, timeout: Duration) -> Result<Option<Packet<'_>>, ReadError> {
        let mut landed = self.recv()?;
        if landed.is_none() && self.wait(timeout)? {
            landed = self.recv()?;
        }
        Ok(landed.and_then(|l| {
            Some(Packet {
                ts: l.ts,
                data: self.buf.get(l.start..l.start + l.len)?,
                wire_len: l.wire_len,
            })
        }))
    }

    /// The kernel's counters for this socket, as totals since it was opened (reading them
    /// zeroes the kernel's; the totals here carry on).
    pub fn stats(&mut self) -> std::io::Result<SocketTotals> {
        let (packets, drops) = sys::statistics(self.fd.as_fd())?;
        self.totals.received += u64::from(packets);
        self.totals.dropped += u64::from(drops);
        Ok(self.totals)
    }

    /// Waits until the socket is readable (or has an error to report); false on timeout.
    fn wait(&self, timeout: Duration) -> Result<bool, ReadError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(n) => Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(ReadError::Other(e.to_string())),
        }
    }

    /// One read without waiting.
    fn recv(&mut self) -> Result<Option<Landed>, ReadError> {
        let (head, rest) = self.buf.split_at_mut(REST_AT);
        let got = sys::recv(
            self.fd.as_fd(),
            &mut head[MACS_AT..MACS_AT + MACS_LEN],
            rest,
            &mut self.control,
        );
        let (full_len, control_len) = match got {
            Ok(r) => r,
            Err(e) => {
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
                    Some(libc::ENETDOWN) => Err(ReadError::LinkDown),
                    _ => Err(ReadError::Other(e.to_string())),
                }
            }
        };
        let meta = parse_control(self.control.get(..control_len).unwrap_or_default());
        let copied = full_len.min(MACS_LEN + rest.len());
        let (start, len, tagged) = close_gap(&mut self.buf, copied, meta.vlan_tag());
        // The kernel cut the frame without its tag; with the tag back it is cut again, so
        // that the snap length counts from the frame's first byte, as libpcap counts it.
        let len = len.min(self.snaplen);
        let wire = meta
            .aux
            .map_or(full_len, |a| a.len as usize)
            .saturating_add(if tagged { TAG_LEN } else { 0 });
        Ok(Some(Landed {
            ts: meta.ts.unwrap_or_else(now),
            start,
            len,
            wire_len: u32::try_from(wire).unwrap_or(u32::MAX),
        }))
    }
}

/// The time now, for a read the kernel gave no timestamp (it always does with
/// `SO_TIMESTAMPNS` on; this is only the fallback).
fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_parts(
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        d.subsec_nanos(),
    )
}

/// Puts the frame together in `buf` after a read of `copied` bytes (MAC addresses at
/// `MACS_AT`, the rest at `REST_AT`): the tag goes into the gap, or the MAC addresses
/// move forward over it. Returns where the frame starts, its length, and whether a tag
/// was put back.
fn close_gap(buf: &mut [u8], copied: usize, tag: Option<[u8; TAG_LEN]>) -> (usize, usize, bool) {
    if copied <= MACS_LEN {
        // Too short to have anything after the addresses: no gap to close.
        return (MACS_AT, copied, false);
    }
    match tag {
        Some(tag) => {
            buf[MACS_AT + MACS_LEN..REST_AT].copy_from_slice(&tag);
            (MACS_AT, copied + TAG_LEN, true)
        }
        None => {
            buf.copy_within(MACS_AT..MACS_AT + MACS_LEN, MACS_AT + TAG_LEN);
            (MACS_AT + TAG_LEN, copied, false)
        }
    }
}

/// `struct tpacket_auxdata`, the fields used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AuxData {
    status: u32,
    /// Length on the wire (before any snap length).
    len: u32,
    vlan_tci: u16,
    vlan_tpid: u16,
}

/// What the control messages of one read said.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Meta {
    ts: Option<Timestamp>,
    aux: Option<AuxData>,
}

impl Meta {
    /// The 802.1Q/802.1ad tag the kernel took out of the frame, as it was on the wire.
    fn vlan_tag(&self) -> Option<[u8; TAG_LEN]> {
        let aux = self.aux?;
        if aux.status & TP_STATUS_VLAN_VALID == 0 {
            return None;
        }
        let tpid = if aux.status & TP_STATUS_VLAN_TPID_VALID != 0 && aux.vlan_tpid != 0 {
            aux.vlan_tpid
        } else {
            ETH_P_8021Q
        };
        let [a, b] = tpid.to_be_bytes();
        let [c, d] = aux.vlan_tci.to_be_bytes();
        Some([a, b, c, d])
    }
}

/// `struct cmsghdr` on Linux: `size_t cmsg_len; int cmsg_level; int cmsg_type;`, and
/// each message padded to the size of `size_t`.
const WORD: usize = std::mem::size_of::<usize>();
const CMSG_HEADER: usize = WORD + 8;

fn align_word(n: usize) -> usize {
    n.checked_add(WORD - 1)
        .map_or(usize::MAX, |n| n & !(WORD - 1))
}

fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn ne_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn ne_i64(b: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn ne_word(b: &[u8], at: usize) -> Option<usize> {
    Some(usize::from_ne_bytes(b.get(at..at + WORD)?.try_into().ok()?))
}

/// Reads the timestamp (`SCM_TIMESTAMPNS`: a `struct timespec`) and the auxiliary data
/// (`PACKET_AUXDATA`) out of a read's control messages; anything malformed or unknown is
/// skipped. Pure, so the tests feed it the bytes the kernel writes.
fn parse_control(control: &[u8]) -> Meta {
    let mut meta = Meta::default();
    let mut at = 0usize;
    while let Some(len) = ne_word(control, at) {
        if len < CMSG_HEADER || at.saturating_add(len) > control.len() {
            break;
        }
        let (Some(level), Some(kind)) =
            (ne_u32(control, at + WORD), ne_u32(control, at + WORD + 4))
        else {
            break;
        };
        let data = &control[at + CMSG_HEADER..at + len];
        // The levels and types are small non-negative constants: compare as u32.
        if level == libc::SOL_SOCKET as u32 && kind == libc::SO_TIMESTAMPNS as u32 {
            // struct timespec: time_t tv_sec (64-bit here), long tv_nsec.
            if WORD == 8 {
                if let (Some(sec), Some(nsec)) = (ne_i64(data, 0), ne_i64(data, 8)) {
                    let nsec = u32::try_from(nsec).unwrap_or(0).min(999_999_999);
                    meta.ts = Some(Timestamp::from_parts(sec, nsec));
                }
            } else if let (Some(sec), Some(nsec)) = (ne_u32(data, 0), ne_u32(data, 4)) {
                meta.ts = Some(Timestamp::from_parts(
                    i64::from(sec as i32),
                    nsec.min(999_999_999),
                ));
            }
        } else if level == libc::SOL_PACKET as u32 && kind == libc::PACKET_AUXDATA as u32 {
            // struct tpacket_auxdata: u32 status, len, snaplen; u16 mac, net, vlan_tci, vlan_tpid.
            if let (Some(status), Some(len), Some(vlan_tci), Some(vlan_tpid)) = (
                ne_u32(data, 0),
                ne_u32(data, 4),
                ne_u16(data, 16),
                ne_u16(data, 18),
            ) {
                meta.aux = Some(AuxData {
                    status,
                    len,
                    vlan_tci,
                    vlan_tpid,
                });
            }
        }
        at = at.saturating_add(align_word(len));
    }
    meta
}

/// The link type a socket bound to an interface of this hardware type reads (the
/// `ARPHRD_*` value from `getsockname`); `None` for what fanout capture does not read.
fn link_for(hatype: u16) -> Option<LinkType> {
    match hatype {
        // Loopback frames carry an Ethernet header with zero addresses, as libpcap says.
        libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK => Some(LinkType::Ethernet),
        _ => None,
    }
}

/// On loopback every frame passes a packet socket twice: outgoing as it is sent, incoming
/// as it is received. libpcap skips the outgoing copy on loopback (so each frame is read
/// once); these three instructions put before the program do the same in the kernel.
/// Classic BPF jumps are relative, so the program after them runs unchanged.
fn skip_outgoing(program: &[libc::sock_filter]) -> Vec<libc::sock_filter> {
    let mut out = vec![
        libc::sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32,
        },
        // Outgoing: fall through to the `ret #0`; anything else: skip it.
        libc::sock_filter {
            code: BPF_JEQ_K,
            jt: 0,
            jf: 1,
            k: PACKET_OUTGOING,
        },
        ret(0),
    ];
    out.extend_from_slice(program);
    out
}

fn ret(k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k,
    }
}

/// Compiles a libpcap filter expression for Ethernet frames into the classic BPF the
/// kernel runs, with every accepting return widened to `snaplen`.
fn compile_filter(filter: &str, snaplen: u32) -> Result<Vec<libc::sock_filter>, OpenError> {
    let bad = |reason: String| OpenError::BadFilter {
        filter: filter.to_string(),
        reason,
    };
    if names_vlan(filter) {
        return Err(OpenError::UnsupportedFilter {
            filter: filter.to_string(),
            why: "the kernel strips the VLAN tag before the filter runs (libpcap is used instead)",
        });
    }
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| bad(e.to_string()))?;
    let program = dead.compile(filter, true).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(program.get_instructions().len());
    for insn in program.get_instructions() {
        // The pcap crate shows an instruction only as "code jt jf k".
        let text = insn.to_string();
        let insn =
            parse_insn(&text).ok_or_else(|| bad(format!("unreadable instruction {text:?}")))?;
        out.push(insn);
    }
    widen_returns(&mut out, snaplen);
    Ok(out)
}

/// Whether a filter expression uses the `vlan` primitive.
fn names_vlan(filter: &str) -> bool {
    filter
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| w.eq_ignore_ascii_case("vlan"))
}

/// Reads "code jt jf k" (the pcap crate's `Display` of an instruction).
fn parse_insn(text: &str) -> Option<libc::sock_filter> {
    let mut it = text.split_ascii_whitespace();
    let insn = libc::sock_filter {
        code: it.next()?.parse().ok()?,
        jt: it.next()?.parse().ok()?,
        jf: it.next()?.parse().ok()?,
        k: it.next()?.parse().ok()?,
    };
    it.next().is_none().then_some(insn)
}

/// libpcap compiles for a dead handle's snap length (65535); an accepting `ret #k` keeps
/// `k` bytes. Make it keep `snaplen`, as libpcap does for its own live captures.
fn widen_returns(program: &mut [libc::sock_filter], snaplen: u32) {
    for insn in program {
        if insn.code == BPF_RET_K && insn.k != 0 {
            insn.k = snaplen;
        }
    }
}

fn classify(interface: &str, call: &'static str, e: std::io::Error) -> OpenError {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => OpenError::Permission {
            interface: interface.to_string(),
            reason: format!("{call}: {e}"),
        },
        Some(libc::ENODEV) | Some(libc::ENXIO) => OpenError::NoSuchInterface {
            interface: interface.to_string(),
        },
        _ => OpenError::Other {
            interface: interface.to_string(),
            call,
            reason: e.to_string(),
        },
    }
}

/// The system calls, one small function each; the only `unsafe` code of the crate.
mod sys {
    use super::*;
    use std::io;

    fn check(ret: libc::c_int) -> io::Result<()> {
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn socklen<T>() -> libc::socklen_t {
        // The structures passed are a few dozen bytes.
        libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
    }

    /// `ETH_P_ALL` in network byte order, as `socket` and `sockaddr_ll` want it.
    fn all_protocols() -> u16 {
        (libc::ETH_P_ALL as u16).to_be()
    }

    pub fn if_index(name: &str) -> Option<u32> {
        let name = std::ffi::CString::new(name).ok()?;
        // SAFETY: `name` is a valid NUL-terminated string that outlives the call, which
        // only reads it.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        (index != 0).then_some(index)
    }

    /// A packet socket that receives nothing until it is bound (protocol 0).
    pub fn packet_socket() -> io::Result<OwnedFd> {
        // SAFETY: plain system call with integer arguments.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        check(fd)?;
        // SAFETY: `fd` was just returned by socket(2), is valid and owned by nothing else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub fn set_int(
        fd: BorrowedFd<'_>,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: the option value points to a live c_int and its exact size is given.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast(),
                socklen::<libc::c_int>(),
            )
        })
    }

    pub fn attach_filter(fd: BorrowedFd<'_>, program: &[libc::sock_filter]) -> io::Result<()> {
        let len =
            u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let prog = libc::sock_fprog {
            len,
            filter: program.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` is a live sock_fprog of the given size whose `filter` points to
        // `len` instructions borrowed for the call; the kernel copies them and never
        // writes through the pointer.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&prog as *const libc::sock_fprog).cast(),
                socklen::<libc::sock_fprog>(),
            )
        })
    }

    pub fn bind(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = all_protocols();
        addr.sll_ifindex =
            i32::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
        // SAFETY: the address points to a live sockaddr_ll and its exact size is given.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                socklen::<libc::sockaddr_ll>(),
            )
        })
    }

    /// The bound interface's `ARPHRD_*` type.
    pub fn hardware_type(fd: BorrowedFd<'_>) -> io::Result<u16> {
        // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = socklen::<libc::sockaddr_ll>();
        // SAFETY: the kernel writes at most `len` bytes into the live `addr`, and the new
        // length into the live `len`.
        check(unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&mut addr as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        })?;
        Ok(addr.sll_hatype)
    }

    pub fn promiscuous(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
        // SAFETY: packet_mreq is plain old data; all zeroes is a valid value.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex =
            i32::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        // SAFETY: the option value points to a live packet_mreq and its exact size is given.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mreq as *const libc::packet_mreq).cast(),
                socklen::<libc::packet_mreq>(),
            )
        })
    }

    /// Joins fanout group `id` (flow hash, and IPv4 defragmentation with `defrag`); with
    /// `unique`, `id` is 0 and the kernel creates a group with an id nobody uses.
    pub fn join(fd: BorrowedFd<'_>, id: u16, defrag: bool, unique: bool) -> io::Result<()> {
        let mut mode = libc::PACKET_FANOUT_HASH;
        if defrag {
            mode |= libc::PACKET_FANOUT_FLAG_DEFRAG;
        }
        if unique {
            mode |= libc::PACKET_FANOUT_FLAG_UNIQUEID;
        }
        // Type and flags in the upper 16 bits, the group id in the lower.
        let arg = (mode << 16) | u32::from(id);
        set_int(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            arg as libc::c_int,
        )
    }

    /// The id of the group this socket is in.
    pub fn fanout_id(fd: BorrowedFd<'_>) -> io::Result<u16> {
        let mut value: u32 = 0;
        let mut len = socklen::<u32>();
        // SAFETY: the kernel writes at most `len` bytes into the live `value`.
        check(unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_FANOUT,
                (&mut value as *mut u32).cast(),
                &mut len,
            )
        })?;
        Ok((value & 0xffff) as u16)
    }

    /// `SO_ERROR`: the error pending on the socket, if any (reading it clears it).
    pub fn pending_error(fd: BorrowedFd<'_>) -> io::Result<Option<i32>> {
        let mut err: libc::c_int = 0;
        let mut len = socklen::<libc::c_int>();
        // SAFETY: the kernel writes at most `len` bytes into the live `err`.
        check(unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        })?;
        Ok((err != 0).then_some(err))
    }

    /// `PACKET_STATISTICS`: (packets, drops) since the last call.
    pub fn statistics(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
        // SAFETY: tpacket_stats is plain old data; all zeroes is a valid value.
        let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
        let mut len = socklen::<libc::tpacket_stats>();
        // SAFETY: the kernel writes at most `len` bytes into the live `st`.
        check(unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        })?;
        Ok((st.tp_packets, st.tp_drops))
    }

    /// One `recvmsg` without waiting, the frame scattered into `head` (its first bytes)
    /// and `rest`. Returns the frame's full length (`MSG_TRUNC`: more than was copied when
    /// it did not fit) and how many bytes of control messages were written.
    pub fn recv(
        fd: BorrowedFd<'_>,
        head: &mut [u8],
        rest: &mut [u8],
        control: &mut [u8],
    ) -> io::Result<(usize, usize)> {
        let mut iov = [
            libc::iovec {
                iov_base: head.as_mut_ptr().cast(),
                iov_len: head.len(),
            },
            libc::iovec {
                iov_base: rest.as_mut_ptr().cast(),
                iov_len: rest.len(),
            },
        ];
        // SAFETY: msghdr is plain old data; all zeroes is a valid value (no name).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len() as _;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len() as _;
        // SAFETY: every pointer in `msg` points into a buffer exclusively borrowed for the
        // call (`head`, `rest`, `control`, `iov`) with its true length; the kernel writes
        // at most those lengths and keeps no pointer after the call returns.
        let n = unsafe {
            libc::recvmsg(
                fd.as_raw_fd(),
                &mut msg,
                libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // size_t on glibc, socklen_t on musl.
        #[allow(clippy::useless_conversion)]
        let control_len = usize::try_from(msg.msg_controllen)
            .unwrap_or(0)
            .min(control.len());
        Ok((usize::try_from(n).unwrap_or(0), control_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One control message as the kernel lays it out (`put_cmsg`).
    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let len = CMSG_HEADER + data.len();
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&level.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(data);
        m.resize(align_word(len), 0);
        m
    }

    fn auxdata(status: u32, len: u32, snaplen: u32, tci: u16, tpid: u16) -> Vec<u8> {
        let mut d = Vec::new();
        for v in [status, len, snaplen] {
            d.extend_from_slice(&v.to_ne_bytes());
        }
        for v in [14u16, 14 + 20, tci, tpid] {
            d.extend_from_slice(&v.to_ne_bytes());
        }
        d
    }

    fn timespec(sec: i64, nsec: i64) -> Vec<u8> {
        let mut d = sec.to_ne_bytes().to_vec();
        d.extend_from_slice(&nsec.to_ne_bytes());
        d
    }

    #[test]
    fn control_messages_give_time_length_and_tag() {
        let mut c = cmsg(
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &timespec(1_764_892_800, 123_456_789),
        );
        c.extend(cmsg(
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            &auxdata(
                TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID,
                1514,
                1514,
                0x0064,
                0x88a8,
            ),
        ));
        let meta = parse_control(&c);
        assert_eq!(
            meta.ts,
            Some(Timestamp::from_parts(1_764_892_800, 123_456_789))
        );
        assert_eq!(meta.aux.map(|a| a.len), Some(1514));
        assert_eq!(meta.vlan_tag(), Some([0x88, 0xa8, 0x00, 0x64]));
    }

    #[test]
    fn a_tag_without_its_type_is_802_1q_and_no_tag_is_none() {
        let c = cmsg(
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            &auxdata(TP_STATUS_VLAN_VALID, 60, 60, 0x2005, 0),
        );
        assert_eq!(parse_control(&c).vlan_tag(), Some([0x81, 0x00, 0x20, 0x05]));
        let c = cmsg(
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            &auxdata(0, 60, 60, 0x2005, 0x8100),
        );
        assert_eq!(parse_control(&c).vlan_tag(), None);
    }

    #[test]
    fn malformed_control_messages_are_skipped_not_trusted() {
        // A length past the end, a length shorter than the header, an unknown message,
        // truncated data, and nothing at all: no panic, nothing invented.
        let mut past_end = cmsg(libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &timespec(1, 2));
        past_end[..WORD].copy_from_slice(&1000usize.to_ne_bytes());
        assert_eq!(parse_control(&past_end), Meta::default());
        let mut short = cmsg(libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &timespec(1, 2));
        short[..WORD].copy_from_slice(&4usize.to_ne_bytes());
        assert_eq!(parse_control(&short), Meta::default());
        let mut c = cmsg(99, 7, b"unknown");
        c.extend(cmsg(libc::SOL_PACKET, libc::PACKET_AUXDATA, &[1, 2, 3]));
        c.extend(cmsg(
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &timespec(5, 6),
        ));
        let meta = parse_control(&c);
        assert_eq!(meta.aux, None);
        assert_eq!(meta.ts, Some(Timestamp::from_parts(5, 6)));
        assert_eq!(parse_control(&[]), Meta::default());
        assert_eq!(parse_control(&[0xff; 7]), Meta::default());
        for cut in 0..c.len() {
            let _ = parse_control(&c[..cut]);
        }
    }

    /// The buffer as `recv` leaves it for a frame of `frame.len()` bytes.
    fn received(frame: &[u8], snaplen: usize) -> (Vec<u8>, usize) {
        let mut buf = vec![0xee; REST_AT + snaplen - MACS_LEN];
        let macs = frame.len().min(MACS_LEN);
        buf[MACS_AT..MACS_AT + macs].copy_from_slice(&frame[..macs]);
        let rest = &frame[macs..];
        let fits = rest.len().min(buf.len() - REST_AT);
        buf[REST_AT..REST_AT + fits].copy_from_slice(&rest[..fits]);
        (buf, macs + fits)
    }

    #[test]
    fn the_gap_closes_or_takes_the_tag_back() {
        let frame: Vec<u8> = (0u8..60).collect();
        let (mut buf, copied) = received(&frame, 1500);
        let (start, len, tagged) = close_gap(&mut buf, copied, None);
        assert!(!tagged);
        assert_eq!(&buf[start..start + len], &frame[..]);

        let (mut buf, copied) = received(&frame, 1500);
        let (start, len, tagged) = close_gap(&mut buf, copied, Some([0x81, 0, 0, 100]));
        assert!(tagged);
        let mut want = frame[..12].to_vec();
        want.extend_from_slice(&[0x81, 0, 0, 100]);
        want.extend_from_slice(&frame[12..]);
        assert_eq!(&buf[start..start + len], &want[..]);

        // Cut by the snap length: what fits, in order.
        let (mut buf, copied) = received(&frame, 40);
        let (start, len, _) = close_gap(&mut buf, copied, None);
        assert_eq!(&buf[start..start + len], &frame[..40]);

        // Shorter than the two addresses: returned as it is.
        let (mut buf, copied) = received(&frame[..5], 1500);
        let (start, len, tagged) = close_gap(&mut buf, copied, Some([0x81, 0, 0, 1]));
        assert!(!tagged);
        assert_eq!(&buf[start..start + len], &frame[..5]);
    }

    #[test]
    fn compiled_filters_keep_the_snap_length_and_drop_vlan() {
        let program = compile_filter("tcp port 443", 262_144).expect("compiles");
        assert!(program.len() > 3, "{}", program.len());
        let returns: Vec<u32> = program
            .iter()
            .filter(|i| i.code == BPF_RET_K)
            .map(|i| i.k)
            .collect();
        assert!(
            returns.contains(&262_144) && returns.contains(&0),
            "{returns:?}"
        );
        assert!(returns.iter().all(|&k| k == 0 || k == 262_144));
        assert!(matches!(
            compile_filter("tcp and (vlan 100 or port 53)", 65_535),
            Err(OpenError::UnsupportedFilter { .. })
        ));
        assert!(!names_vlan("host vlanhost.example"));
        let err = compile_filter("tcp port", 65_535).expect_err("does not compile");
        assert_eq!(err.reason(), "bad_filter");
    }

    #[test]
    fn instructions_read_back_exactly() {
        let i = parse_insn("21 0 5 2048").expect("four numbers");
        assert_eq!((i.code, i.jt, i.jf, i.k), (21, 0, 5, 2048));
        assert!(parse_insn("21 0 5").is_none());
        assert!(parse_insn("21 0 5 2048 1").is_none());
        assert!(parse_insn("21 0 300 1").is_none());
    }

    #[test]
    fn only_ethernet_and_loopback_are_read() {
        assert_eq!(link_for(1), Some(LinkType::Ethernet));
        assert_eq!(link_for(772), Some(LinkType::Ethernet));
        // ARPHRD_NONE (tun), ARPHRD_IEEE80211_RADIOTAP: libpcap reads those.
        assert_eq!(link_for(0xfffe), None);
        assert_eq!(link_for(803), None);
    }

    #[test]
    fn bad_socket_counts_and_missing_interfaces_are_refused() {
        let mut opts = FanoutOptions {
            interface: "vw-no-such-if0".into(),
            sockets: 0,
            group: None,
            bpf: None,
            snaplen: 262_144,
            buffer_bytes: 1 << 20,
            promiscuous: false,
            kernel_defrag: true,
        };
        assert_eq!(
            open(&opts).map(|_| ()).unwrap_err().reason(),
            "socket_count"
        );
        opts.sockets = MAX_SOCKETS + 1;
        assert_eq!(
            open(&opts).map(|_| ()).unwrap_err().reason(),
            "socket_count"
        );
        opts.sockets = 2;
        assert_eq!(
            open(&opts).map(|_| ()).unwrap_err().reason(),
            "no_such_interface"
        );
    }
}
