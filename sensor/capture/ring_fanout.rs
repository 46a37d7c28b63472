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
//! nothing, joins, and only once every handle has joined and each has read and thrown away
//! what its ring took in before its filter was set (libpcap judges the frames in a ring by
//! the filter in place when they are read, and a partly filled block shows only once the
//! kernel retires it, after the read timeout) does each get the real filter. So no frame is
//! read twice, and none reaches a handle other than the one the flow hash picks; frames of
//! the moments between the first and the last switch are not captured by the handles not
//! yet switched, as if the capture had started later.
//!
//! `--buffer-mb` is the interface's: each member's ring gets an equal share, at least
//! `MIN_MEMBER_RING_MB` (a ring is reserved in full when the handle opens, so N full-size
//! rings would pin N times the memory asked for).
//!
//! A member is never reopened on its own: a handle on a re-created interface cannot join
//! the old group (the group is bound to the old interface), so, as with `fanout`, a removed
//! interface ends the group's capture.

use crate::capture::fanout;
use crate::capture::live::{LiveCapture, LiveOptions, OpenError, DRAIN_AFTER_STOP, IDLE_PAUSE_MS};

/// A filter no frame passes (a length is never negative): the filter of a handle until
/// every member has joined. (`less 1` would keep a 1-byte frame, which a raw-IP link can
/// carry; `1 = 0` does not compile: libpcap refuses a filter it can tell rejects all.)
const KEEP_NOTHING: &str = "len < 0";

/// The smallest ring a member gets, in MiB.
pub const MIN_MEMBER_RING_MB: u32 = 8;

/// One libpcap handle of a fanout group.
pub struct RingMember {
    capture: LiveCapture,
    group: u16,
}

impl RingMember {
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

/// Opens `members` libpcap handles on `opts.interface` in one fanout group that the kernel
/// numbers (so no other capture on the interface joins it), member `i` at index `i`, each
/// with its share of `opts`' ring size and `opts`' filter. IPv4 fragments
/// reach the handles as they were (no kernel reassembly): the sensor's own defragmenter
/// sees them, overlaps included, in the dispatcher of the handle that reads them.
pub fn open(opts: &LiveOptions, members: usize) -> Result<Vec<RingMember>, OpenError> {
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
        buffer_mb: member_ring_mb(opts.buffer_mb, members),
        ..opts.clone()
    };
    let mut joined: Vec<RingMember> = Vec::with_capacity(members);
    let mut group = None;
    for _ in 0..members {
        let capture = LiveCapture::open(&closed)?;
        let id =
            fanout::join_group(capture.socket(), &opts.interface, group, false).map_err(|e| {
                OpenError::Other {
                    interface: opts.interface.clone(),
                    reason: e.to_string(),
                }
            })?;
        group = Some(id);
        joined.push(RingMember { capture, group: id });
    }
    discard_what_came_before(&mut joined);
    for member in &mut joined {
        member.capture.set_filter(opts.bpf.as_deref())?;
    }
    Ok(joined)
}

/// Each member's share of the interface's `buffer_mb`.
pub fn member_ring_mb(buffer_mb: u32, members: usize) -> u32 {
    let members = u32::try_from(members.max(1)).unwrap_or(u32::MAX);
    (buffer_mb / members).max(MIN_MEMBER_RING_MB)
}

/// Reads every member's ring empty of what came in before its keep-nothing filter, until
/// none has shown a frame for longer than the kernel takes to hand over a partly filled
/// block.
fn discard_what_came_before(members: &mut [RingMember]) {
    let mut quiet_since = std::time::Instant::now();
    while quiet_since.elapsed() < DRAIN_AFTER_STOP {
        let mut any = false;
        for member in members.iter_mut() {
            while member.capture.discard_one() {
                any = true;
            }
        }
        if any {
            quiet_since = std::time::Instant::now();
        } else {
            std::thread::sleep(std::time::Duration::from_millis(IDLE_PAUSE_MS));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interface_buffer_is_shared_out_with_a_floor() {
        assert_eq!(member_ring_mb(64, 1), 64);
        assert_eq!(member_ring_mb(256, 4), 64);
        assert_eq!(member_ring_mb(64, 4), 16);
        assert_eq!(member_ring_mb(16, 4), MIN_MEMBER_RING_MB);
        assert_eq!(member_ring_mb(64, 0), 64);
    }
}
