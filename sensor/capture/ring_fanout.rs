//! Live capture across cores through libpcap's own rings (Linux): one interface opened as
//! N libpcap handles, each with its memory-mapped TPACKET_V3 ring, whose packet sockets
//! are joined in one `AF_PACKET` fanout group. The kernel spreads the frames over the
//! handles by the symmetric flow hash, so both directions of a flow reach the same handle,
//! and each handle feeds its own capture thread.
//!
//! Why libpcap's rings and not `fanout`'s own sockets: a `recvmsg` per frame cost two and
//! a half to three times libpcap's CPU (BENCHMARKS.md, the first live measurement), and a
//! ring of our own would be a few hundred lines of unsafe code reading memory the kernel
//! writes concurrently. libpcap already reads that ring (and puts VLAN tags back, drops the
//! outgoing copy of a loopback frame, compiles `vlan` filters for a live socket); all it
//! lacks is the fanout join, one `setsockopt` on its socket (`fanout::join_group`).
//!
//! Exactly once, as in `fanout`: a socket receives every frame from the moment libpcap
//! binds it until it joins the group, so each handle is opened with a filter that keeps
//! nothing (libpcap also filters what its ring already holds with it), joins, and only once
//! every handle has joined does each get the real filter. Frames of the few microseconds
//! between the first and the last switch are not captured by the handles not yet switched,
//! as if the capture had started later; none is read twice.
//!
//! A member is never reopened on its own: a handle on a re-created interface cannot join
//! the old group (the group is bound to the old interface), so, as with `fanout`, a removed
//! interface ends the group's capture.

use crate::capture::fanout;
use crate::capture::live::{LiveCapture, LiveOptions, OpenError};

/// A filter no frame passes (a frame of at most one byte): the filter of a handle until
/// every member has joined.
const KEEP_NOTHING: &str = "less 1";

/// One libpcap handle of a fanout group.
pub struct RingMember {
    capture: LiveCapture,
    index: usize,
    group: u16,
}

impl RingMember {
    /// This handle's place in the group (0-based).
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    pub fn capture(&mut self) -> &mut LiveCapture {
        &mut self.capture
    }

    pub fn capture_ref(&self) -> &LiveCapture {
        &self.capture
    }

    pub fn interface(&self) -> &str {
        &self.capture.interface
    }
}

/// Opens `members` libpcap handles on `opts.interface` in one fanout group (`group`, or one
/// the kernel numbers when `None`), each with `opts`' ring size and filter. IPv4 fragments
/// reach the handles as they were (no kernel reassembly): the sensor's own defragmenter
/// sees them, overlaps included, in the dispatcher of the handle that reads them.
pub fn open(
    opts: &LiveOptions,
    members: usize,
    group: Option<u16>,
) -> Result<Vec<RingMember>, OpenError> {
    if members == 0 || members > fanout::MAX_SOCKETS {
        return Err(OpenError::Other {
            interface: opts.interface.clone(),
            reason: format!(
                "asked for {members} capture threads; 1 to {} are possible",
                fanout::MAX_SOCKETS
            ),
        });
    }
    let closed = LiveOptions {
        bpf: Some(KEEP_NOTHING.into()),
        ..opts.clone()
    };
    let mut joined: Vec<RingMember> = Vec::with_capacity(members);
    let mut group = group;
    for index in 0..members {
        let capture = LiveCapture::open(&closed)?;
        let id =
            fanout::join_group(capture.socket(), &opts.interface, group, false).map_err(|e| {
                OpenError::Other {
                    interface: opts.interface.clone(),
                    reason: e.to_string(),
                }
            })?;
        group = Some(id);
        joined.push(RingMember {
            capture,
            index,
            group: id,
        });
    }
    for member in &mut joined {
        member.capture.set_filter(opts.bpf.as_deref())?;
    }
    Ok(joined)
}
